/*
 * fuzz_image.c — the libFuzzer target for the image readers (issue 14):
 * the input is an image file's bytes, loaded into the memory device, and
 * every reader runs on it — the file layer's open (both phases), the
 * allocator's detect, open and check, the catalog's load, and the volume's
 * open as a mount, as fsck -n and as fsck -y, each followed by the check.
 * Whatever the bytes, nothing may crash, hang, leak or trip a sanitizer;
 * an open that refuses must leave the device's bytes as they were, and a
 * volume that opens (other than for a damage report) must check clean.
 * The read-only view of the allocations (core/allocview.c, -o view) runs
 * too: it never writes, its lists are sorted, disjoint and inside the
 * payload, and it opens every image a mount accepts clean.
 *
 * Built and run by scripts/fuzz (clang, -fsanitize=fuzzer,address,undefined);
 * the seed corpus comes from make_corpus.c.  Crashes found become images
 * under tests/fuzz-regress/, which test_damage replays in every test run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "allocview.h"
#include "catalog.h"
#include "volume.h"

#define FUZZ_MAX (1u << 20)

static void ignore(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

static struct bs_memdev *load(const uint8_t *data, size_t size)
{
	struct bs_memdev *dev = bs_memdev_new();
	if (dev && bs_memdev_load(dev, data, size)) {
		bs_memdev_free(dev);
		return NULL;
	}
	return dev;
}

static int same(struct bs_memdev *dev, const uint8_t *data, size_t size)
{
	uint8_t *now;
	size_t n;
	if (bs_memdev_snapshot(dev, &now, &n))
		return 1;   /* out of memory: nothing to compare */
	int ok = n == size && (!n || memcmp(now, data, n) == 0);
	free(now);
	return ok;
}

/* The layers one by one, as fsck's pieces use them. */
static void layers(const uint8_t *data, size_t size)
{
	struct bs_memdev *dev = load(data, size);
	struct bs_io *io;
	struct bstack *bs;
	struct bstack_found found;
	if (!dev)
		return;
	if (bs_io_mem_open(dev, &io) == 0 && bstack_open_found(io, &bs, &found) == 0) {
		enum bs_alloc_kind kind;
		uint8_t ref[CAT_ROOT_REF_SIZE];
		if (bstack_len(bs) >= sizeof ref && bstack_get(bs, 0, ref, sizeof ref) == 0) {
			struct catalog *c = NULL;
			char msg[200];
			struct bs_slice root = cat_root_decode(ref);
			if (!cat_root_formatting(root) && cat_load(bs, root, &c, msg, sizeof msg) == 0) {
				struct bs_slice *live;
				size_t n;
				if (cat_live_slices(c, &live, &n) == 0)
					free(live);
			}
			cat_free(c);
		}
		/* the allocators open with recovery: on a scratch copy only */
		if (bstack_recover(bs) == 0 && bs_alloc_detect(bs, &kind) == 0) {
			struct bs_alloc *a;
			if (kind == BS_ALLOC_NONE)
				kind = BS_ALLOC_LINEAR;
			if (bs_alloc_open(bs, kind, &a) == 0) {
				struct bs_alloc_stats st;
				bs_alloc_check(a, ignore, NULL);
				bs_alloc_stats(a, &st);
				bs_alloc_close(a);
			}
		}
		bstack_close(bs);
	}
	bs_memdev_free(dev);
}

/* The volume's open in each of its modes; returns 1 when it opened
 * writable-clean (not for a damage report), 0 when it refused or opened
 * damaged. */
static int volume(const uint8_t *data, size_t size, const struct vol_opts *o)
{
	int clean = 0;
	struct bs_memdev *dev = load(data, size);
	struct vol_error err;
	struct bs_io *io;
	struct vol *v;
	if (!dev)
		return 0;
	if (bs_io_mem_open(dev, &io) == 0) {
		int r = vol_open_io(io, o, &v, &err);
		if (r == 0) {
			struct vol_summary sum;
			/* a volume that opens writable checks clean (the mount and
			 * fsck's summary agree) */
			int bad = vol_check(v, ignore, NULL);
			if (bad > 0 && !vol_damaged(v))
				abort();
			clean = !vol_damaged(v) && bad == 0;
			vol_summary(v, &sum);
			vol_close(v);
			if (o->no_write && !same(dev, data, size))
				abort();   /* fsck -n wrote the image */
		} else if (!same(dev, data, size)) {
			abort();   /* a refused image was written */
		}
	}
	bs_memdev_free(dev);
	return clean;
}

/* The view (any allocator, and Linear asked for): 1 when it opened. */
static int view(const uint8_t *data, size_t size, enum bs_alloc_kind want)
{
	struct bs_memdev *dev = load(data, size);
	struct bs_io *io;
	struct av_view *v;
	char why[1400];
	int opened = 0;
	if (!dev)
		return 0;
	if (bs_io_mem_open(dev, &io) == 0) {
		if (av_open_io(io, want, &v, why, sizeof why) == 0) {
			uint64_t at = 0;
			for (size_t i = 0; i < v->n_allocs; i++) {
				if (v->allocs[i].off < at || v->allocs[i].len == 0 ||
				    v->allocs[i].off + v->allocs[i].len > v->payload_bytes)
					abort();
				at = v->allocs[i].off + v->allocs[i].len;
			}
			char *text;
			size_t n;
			if (av_stats_text(v, &text, &n) == 0)
				free(text);
			av_close(v);
			opened = 1;
		} else if (why[0] == '\0') {
			abort();   /* a refusal without a reason */
		}
		if (bs_memdev_writes(dev) || !same(dev, data, size))
			abort();   /* the view wrote the image */
	}
	bs_memdev_free(dev);
	return opened;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vol_opts modes[] = {
		{ 0 },                                           /* mount */
		{ .no_write = true, .allow_damaged = true },     /* fsck -n */
		{ .allow_damaged = true },                       /* fsck */
		{ .repair = true },                              /* fsck -y */
	};
	if (size > FUZZ_MAX)
		return 0;
	int clean[4];
	layers(data, size);
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		clean[i] = volume(data, size, &modes[i]);
	/* the mount and fsck's check agree: the mount accepts exactly the
	 * images the check (with or without -n) finds clean */
	if (clean[0] != clean[1] || clean[0] != clean[2])
		abort();
	/* the view opens what the mount accepts clean */
	if (!view(data, size, BS_ALLOC_NONE) && clean[0])
		abort();
	view(data, size, BS_ALLOC_LINEAR);
	return 0;
}
