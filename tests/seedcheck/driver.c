/*
 * driver.c — the C half of the seed differential test (run.sh): applies an
 * operation script to our allocators (core/alloc.h) on a memory device and
 * prints, per step, the same line the seed driver (main.rs) prints: the
 * step, the op, the slices returned (off:len), and the image's length and
 * FNV-1a hash.  The image is the device's durable contents: every
 * allocator operation is durable when it returns (docs/design.md §2), so after a
 * step nothing may be pending; a step that leaves writes unsynced is
 * reported as an error.
 *
 *   seedcheck_driver SCRIPT IMAGE [UPTO]
 *
 * IMAGE gets the bytes after the last step applied (after step UPTO when
 * given), for cmp against the seed's image.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bstack.h"
#include "io.h"

#define MAX_WORDS 64
#define MAX_LINE 4096

struct drv {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
	enum bs_alloc_kind kind;
	struct bs_slice *live;   /* by id */
	size_t n_live, cap_live;
};

static uint64_t fnv(const uint8_t *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The bytes `write ID TAG` stores (main.rs pattern()). */
static void pattern(uint8_t *buf, uint64_t tag, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((tag * 31 + i * 7) % 251 + 1);
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return (errno || end == s || *end) ? -EINVAL : 0;
}

static int push_live(struct drv *d, struct bs_slice s)
{
	if (d->n_live == d->cap_live) {
		size_t cap = d->cap_live ? d->cap_live * 2 : 64;
		struct bs_slice *n = realloc(d->live, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->live = n;
		d->cap_live = cap;
	}
	d->live[d->n_live++] = s;
	return 0;
}

static int get_id(struct drv *d, const char *w, size_t *id)
{
	uint64_t v;

	if (parse_u64(w, &v) || v >= d->n_live)
		return -EINVAL;
	*id = (size_t)v;
	return 0;
}

static int reopen(struct drv *d)
{
	struct bs_io *io;
	int err;

	bs_alloc_close(d->a);
	d->a = NULL;
	bstack_close(d->bs);
	d->bs = NULL;
	err = bs_io_mem_open(d->dev, &io);
	if (!err)
		err = bstack_open(io, &d->bs);
	if (!err)
		err = bs_alloc_open(d->bs, d->kind, &d->a);
	if (!err)
		bs_alloc_set_seed_exact(d->a, true);   /* the seed's bytes, alloc.h */
	return err;
}

/* The op was skipped: a documented difference (main.rs, ff_known_difference). */
#define SKIPPED 1

/*
 * Our FirstFit's tail tests use the block size from the header, the
 * seed's the slice length rounded up; they disagree only for a tail block
 * larger than the slice rounded up (core/alloc_firstfit.c, "Beyond the
 * seed").  Both drivers skip a dealloc/realloc of such a slice, unless
 * BSTACKFS_SEEDCHECK_STRICT=1.
 */
static int ff_known_difference(struct drv *d, struct bs_slice s, bool *skip)
{
	const char *strict = getenv("BSTACKFS_SEEDCHECK_STRICT");
	uint8_t b[8];
	uint64_t size = 0, rounded;
	int err;

	*skip = false;
	if ((strict && !strcmp(strict, "1")) || s.len == 0 || s.off < 16)
		return 0;
	err = bstack_get(d->bs, s.off - 16, b, 8);
	if (err)
		return err;
	for (int i = 7; i >= 0; i--)
		size = size << 8 | b[i];
	rounded = s.len < 16 ? 16 : (s.len + 7) / 8 * 8;
	*skip = size != rounded && size <= UINT64_MAX - 8 - s.off &&
		s.off + size + 8 == bstack_len(d->bs);
	return 0;
}

/* Apply one op; the slices it returned go to out[0..*n_out).  SKIPPED
 * when the op was not applied (ff_known_difference). */
static int step(struct drv *d, char **w, int nw, struct bs_slice *out, int *n_out)
{
	uint64_t v, lens[MAX_WORDS];
	size_t id, ids[MAX_WORDS];
	struct bs_slice sl[MAX_WORDS];
	int err, i;

	*n_out = 0;
	if (d->kind == BS_ALLOC_FIRSTFIT && nw >= 2 &&
	    (!strcmp(w[0], "dealloc") || !strcmp(w[0], "realloc"))) {
		bool skip;

		if (get_id(d, w[1], &id))
			return -EINVAL;
		err = ff_known_difference(d, d->live[id], &skip);
		if (err || skip)
			return err ? err : SKIPPED;
	}
	if (!strcmp(w[0], "alloc") && nw == 2) {
		if (parse_u64(w[1], &v))
			return -EINVAL;
		err = bs_alloc(d->a, v, &out[0]);
		if (err)
			return err;
		*n_out = 1;
		return push_live(d, out[0]);
	}
	if (!strcmp(w[0], "realloc") && nw == 3) {
		if (get_id(d, w[1], &id) || parse_u64(w[2], &v))
			return -EINVAL;
		err = bs_realloc(d->a, d->live[id], v, &out[0]);
		if (err)
			return err;
		d->live[id] = out[0];
		*n_out = 1;
		return 0;
	}
	if (!strcmp(w[0], "dealloc") && nw == 2) {
		if (get_id(d, w[1], &id))
			return -EINVAL;
		err = bs_dealloc(d->a, d->live[id]);
		if (!err)
			d->live[id] = (struct bs_slice){ 0, 0 };
		return err;
	}
	if (!strcmp(w[0], "write") && nw == 3) {
		struct bs_slice s;
		uint8_t *buf;

		if (get_id(d, w[1], &id) || parse_u64(w[2], &v))
			return -EINVAL;
		s = d->live[id];
		if (s.len == 0)
			return 0;
		buf = malloc(s.len);
		if (!buf)
			return -ENOMEM;
		pattern(buf, v, s.len);
		err = bstack_set(d->bs, s.off, buf, s.len);
		free(buf);
		return err;
	}
	if (!strcmp(w[0], "bulk") && nw >= 2) {
		for (i = 1; i < nw; i++)
			if (parse_u64(w[i], &lens[i - 1]))
				return -EINVAL;
		err = bs_alloc_bulk(d->a, lens, (size_t)(nw - 1), out);
		if (err)
			return err;
		*n_out = nw - 1;
		for (i = 0; i < nw - 1 && !err; i++)
			err = push_live(d, out[i]);
		return err;
	}
	if (!strcmp(w[0], "dealloc_bulk") && nw >= 2) {
		for (i = 1; i < nw; i++) {
			if (get_id(d, w[i], &ids[i - 1]))
				return -EINVAL;
			sl[i - 1] = d->live[ids[i - 1]];
		}
		err = bs_dealloc_bulk(d->a, sl, (size_t)(nw - 1));
		for (i = 0; i < nw - 1 && !err; i++)
			d->live[ids[i]] = (struct bs_slice){ 0, 0 };
		return err;
	}
	if (!strcmp(w[0], "reopen") && nw == 1)
		return reopen(d);
	return -EINVAL;
}

static int split(char *line, char **w)
{
	int n = 0;

	for (char *t = strtok(line, " \t\r\n"); t && n < MAX_WORDS; t = strtok(NULL, " \t\r\n"))
		w[n++] = t;
	return n;
}

static int report(struct drv *d, unsigned long n, const char *op,
		  const struct bs_slice *out, int n_out)
{
	uint8_t *img;
	size_t len;
	uint64_t pending = bs_memdev_pending(d->dev);
	int err;

	if (pending) {
		fprintf(stderr, "seedcheck_driver: step %lu (%s) left %" PRIu64
			" writes unsynced\n", n, op, pending);
		return -EIO;
	}
	err = bs_memdev_snapshot(d->dev, &img, &len);
	if (err)
		return err;
	printf("%lu %s", n, op);
	for (int i = 0; i < n_out; i++)
		printf(" %" PRIu64 ":%" PRIu64, out[i].off, out[i].len);
	printf(" len=%zu h=%016" PRIx64 "\n", len, fnv(img, len));
	free(img);
	return 0;
}

static int save(struct drv *d, const char *path)
{
	uint8_t *img;
	size_t len;
	FILE *f;
	int err = bs_memdev_snapshot(d->dev, &img, &len);

	if (err)
		return err;
	f = fopen(path, "wb");
	if (!f) {
		err = -errno;
	} else {
		if (fwrite(img, 1, len, f) != len)
			err = -EIO;
		if (fclose(f))
			err = -EIO;
	}
	free(img);
	return err;
}

static int run(struct drv *d, FILE *script, unsigned long upto)
{
	char line[MAX_LINE], *w[MAX_WORDS];
	struct bs_slice out[MAX_WORDS];
	struct bs_alloc_opts opts = { 0 };
	struct bs_io *io;
	unsigned long n = 0;
	int nw, n_out, err;

	if (!fgets(line, sizeof(line), script))
		return -EINVAL;
	nw = split(line, w);
	if (nw < 2 || strcmp(w[0], "kind"))
		return -EINVAL;
	d->kind = bs_alloc_kind_parse(w[1]);
	if (d->kind == BS_ALLOC_SLAB && nw > 2 && parse_u64(w[2], &opts.block_size))
		return -EINVAL;
	err = bs_io_mem_open(d->dev, &io);
	if (!err)
		err = bstack_create(io, &d->bs);
	if (!err)
		err = bs_alloc_create(d->bs, d->kind, &opts, &d->a);
	if (!err)
		bs_alloc_set_seed_exact(d->a, true);   /* the seed's bytes, alloc.h */
	if (!err)
		err = report(d, 0, "create", NULL, 0);
	while (!err && fgets(line, sizeof(line), script)) {
		nw = split(line, w);
		if (nw == 0)
			continue;
		if (upto && ++n > upto)
			break;
		if (!upto)
			n++;
		err = step(d, w, nw, out, &n_out);
		if (err == SKIPPED) {
			char op[64];

			snprintf(op, sizeof(op), "skip-%s", w[0]);
			err = report(d, n, op, out, 0);
			continue;
		}
		if (err) {
			printf("%lu %s ERR\n", n, w[0]);
			fprintf(stderr, "seedcheck_driver: step %lu (%s): %s\n", n, w[0],
				strerror(-err));
			return 0;
		}
		err = report(d, n, w[0], out, n_out);
	}
	return err;
}

int main(int argc, char **argv)
{
	struct drv d = { 0 };
	unsigned long upto = 0;
	FILE *script;
	int err;

	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: seedcheck_driver SCRIPT IMAGE [UPTO]\n");
		return 2;
	}
	if (argc == 4)
		upto = strtoul(argv[3], NULL, 10);
	script = fopen(argv[1], "r");
	if (!script) {
		perror(argv[1]);
		return 2;
	}
	d.dev = bs_memdev_new();
	err = d.dev ? run(&d, script, upto) : -ENOMEM;
	fclose(script);
	if (!err)
		err = save(&d, argv[2]);
	if (d.a)
		bs_alloc_close(d.a);
	if (d.bs)
		bstack_close(d.bs);
	bs_memdev_free(d.dev);
	free(d.live);
	if (err) {
		fprintf(stderr, "seedcheck_driver: %s\n", strerror(-err));
		return 1;
	}
	return 0;
}
