/*
 * rebuild.c — the C half of the seed walk (run.sh, issue 14): images that
 * bstackfs-fsck -y rebuilt, for the seed's own allocator to walk
 * (main.rs, `walk KIND IMAGE LIVE`).
 *
 *   seedcheck_rebuild KIND OUTDIR
 *
 * Makes a volume on the memory device with directories and files of
 * various sizes, some removed, one shrunk and one grown (so free space
 * lies between live files), unmounts it, then writes into OUTDIR, for
 * each case NAME, NAME.img (the image bytes) and NAME.live (the live
 * slices the catalog names, "off len" per line, payload offsets, the
 * catalog's own allocation included):
 *
 *   KIND-control          the image as unmounted, undamaged
 *   KIND-<damage>         the allocator's metadata damaged as in
 *                         tests/test_damage.c (a mount refuses it), then
 *                         repaired by vol_open with repair = true (fsck -y)
 *                         and closed
 *   KIND-neg-<what>       negative controls, which the walk must refuse:
 *                         a LIVE that also names every free block, or
 *                         damage left unrepaired (one the seed's open
 *                         refuses; the others it opens, and then hands
 *                         out live bytes, dirty or looping blocks, loses
 *                         free space or writes into a live file)
 *
 * Each case is announced on stdout as "NAME ok" (the walk must accept it)
 * or "NAME fail" (the walk must refuse it).  Exit 0 when every image was
 * made as described (the damage refused by a plain mount, the repair
 * reported, every file's bytes intact), 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heapmap.h"
#include "io.h"
#include "volume.h"

#define HDR 16              /* file bytes in front of payload offset 0 */
#define SLAB_BLOCK 512

static int failures;

static void fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *what, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "seedcheck_rebuild: %s: ", what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failures++;
}

/* ---- the files ---------------------------------------------------------- */

struct file {
	const char *dir;      /* "" = the root */
	const char *name;
	size_t size;          /* written */
	size_t final;         /* after the truncate (0: = size) */
	bool removed;
	bool zeros;           /* its bytes are zeros, not the pattern */
};

static struct file files[] = {
	{ "", "f0", 3000, 0, false, false },
	{ "", "f1", 700, 0, true, false },
	{ "", "f2", 5000, 0, false, false },
	{ "a", "g0", 64, 0, false, false },
	{ "a", "g1", 9000, 0, true, false },
	{ "a", "g2", 1, 0, false, false },
	{ "a/c", "h0", 1200, 0, false, false },
	{ "a/c", "h1", 31, 0, true, false },
	{ "a/c", "h2", 20000, 0, false, false },
	{ "b", "k0", 130, 0, true, false },
	{ "b", "k1", 4096, 0, false, false },
	{ "b", "k2", 0, 0, false, false },
	{ "b", "k3", 2500, 1000, false, false },   /* shrunk in place */
	{ "b", "k4", 600, 6000, false, false },    /* grown: moved */
	{ "b", "zeros", 4096, 0, false, true },
	{ "", "z", 800, 0, false, false },
};
#define ZEROS "zeros"   /* b/zeros: a negative control points a tree node at it */
#define NFILES (sizeof files / sizeof files[0])

static uint8_t pat(size_t i, uint64_t off)
{
	return (uint8_t)((i * 131 + off * 7 + off / 251) % 253 + 1);
}

static void fill_pat(uint8_t *b, size_t i, size_t n)
{
	for (size_t k = 0; k < n; k++)
		b[k] = files[i].zeros ? 0 : pat(i, k);
}

static size_t final_size(const struct file *f)
{
	return f->final ? f->final : f->size;
}

static int dir_ino(struct vol *v, const char *path, uint64_t *ino)
{
	char buf[64], *save, *tok;
	struct vol_attr a;
	*ino = VOL_ROOT_INO;
	snprintf(buf, sizeof buf, "%s", path);
	for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		int r = vol_lookup(v, *ino, tok, &a);
		if (r)
			return r;
		*ino = a.ino;
	}
	return 0;
}

static struct vol *open_dev(struct bs_memdev *dev, const struct vol_opts *o, int *rc,
			    struct vol_error *err)
{
	struct bs_io *io;
	struct vol *v = NULL;
	err->msg[0] = '\0';
	if ((*rc = bs_io_mem_open(dev, &io)))
		return NULL;
	*rc = vol_open_io(io, o, &v, err);
	return *rc ? NULL : v;
}

/* The volume every case starts from: its image bytes in *buf. */
static int make_image(enum bs_alloc_kind k, uint8_t **buf, size_t *len)
{
	static const char *const dirs[][2] = { { "", "a" }, { "a", "c" }, { "", "b" } };
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { .allocator = k, .create = true };
	struct vol_error err;
	struct vol_attr a;
	uint64_t ino;
	int r;
	if (!dev)
		return -ENOMEM;
	if (k == BS_ALLOC_SLAB)
		o.block_size = SLAB_BLOCK;
	struct vol *v = open_dev(dev, &o, &r, &err);
	if (!v) {
		fail("make", "cannot create the volume: %s", err.msg);
		bs_memdev_free(dev);
		return r;
	}
	for (size_t i = 0; !r && i < sizeof dirs / sizeof dirs[0]; i++)
		if (!(r = dir_ino(v, dirs[i][0], &ino)))
			r = vol_mkdir(v, ino, dirs[i][1], 0755, 0, 0, &a);
	for (size_t i = 0; !r && i < NFILES; i++) {
		const struct file *f = &files[i];
		uint8_t *b = malloc(f->size ? f->size : 1);
		if (!b) {
			r = -ENOMEM;
			break;
		}
		fill_pat(b, i, f->size);
		if (!(r = dir_ino(v, f->dir, &ino)) &&
		    !(r = vol_create(v, ino, f->name, 0644, 0, 0, &a)) && f->size &&
		    vol_write(v, a.ino, b, f->size, 0) != (ssize_t)f->size)
			r = -EIO;
		if (!r)
			r = vol_release(v, a.ino);
		free(b);
	}
	/* then the changes that leave free space between live files */
	for (size_t i = 0; !r && i < NFILES; i++) {
		const struct file *f = &files[i];
		if (!(r = dir_ino(v, f->dir, &ino)) && !(r = vol_lookup(v, ino, f->name, &a))) {
			if (f->removed) {
				r = vol_unlink(v, ino, f->name);
			} else if (f->final && f->final < f->size) {
				r = vol_truncate(v, a.ino, f->final);
			} else if (f->final) {
				uint8_t *b = malloc(f->final);
				if (!b) {
					r = -ENOMEM;
					break;
				}
				fill_pat(b, i, f->final);
				if (vol_write(v, a.ino, b + f->size, f->final - f->size, f->size) !=
				    (ssize_t)(f->final - f->size))
					r = -EIO;
				if (!r)
					r = vol_release(v, a.ino);
				free(b);
			}
		}
	}
	if (r)
		fail("make", "building the files: %s", strerror(-r));
	int rc = vol_close(v);
	if (!r && rc)
		fail("make", "unmount: %s", strerror(-(r = rc)));
	if (!r)
		r = bs_memdev_snapshot(dev, buf, len);
	bs_memdev_free(dev);
	return r;
}

/* Every file of the table has its bytes (removed ones are gone). */
static bool files_intact(struct vol *v, const char *what)
{
	bool ok = true;
	for (size_t i = 0; i < NFILES; i++) {
		const struct file *f = &files[i];
		struct vol_attr a;
		uint64_t dir;
		int r = dir_ino(v, f->dir, &dir);
		if (!r)
			r = vol_lookup(v, dir, f->name, &a);
		if (f->removed) {
			if (r != -ENOENT) {
				fail(what, "removed file %s/%s is back", f->dir, f->name);
				ok = false;
			}
			continue;
		}
		size_t n = final_size(f);
		uint8_t *b = malloc(n + 1), *want = malloc(n + 1);
		if (!b || !want) {
			free(b);
			free(want);
			fail(what, "out of memory");
			return false;
		}
		fill_pat(want, i, n);
		if (r || a.size != n || vol_read(v, a.ino, b, n, 0) != (ssize_t)n ||
		    memcmp(b, want, n)) {
			fail(what, "file %s/%s lost its bytes", f->dir, f->name);
			ok = false;
		}
		free(b);
		free(want);
	}
	return ok;
}

/* ---- live slices and free blocks of an image ---------------------------- */

struct slices {
	struct bs_slice *v;
	size_t n, cap;
};

static int push(struct slices *s, uint64_t off, uint64_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct bs_slice *n = realloc(s->v, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		s->v = n;
		s->cap = cap;
	}
	s->v[s->n++] = (struct bs_slice){ off, len };
	return 0;
}

static int live_one(void *ctx, const struct vol_alloc_rec *rec)
{
	return rec->slice.len ? push(ctx, rec->slice.off, rec->slice.len) : 0;
}

static int free_one(void *ctx, const struct hm_free *f)
{
	return push(ctx, f->start, f->len);
}

/* The catalog's live slices (every allocation it references, its own
 * included) and the allocator's free blocks, read from a no_write open
 * of the image: nothing the open does reaches the bytes. */
static int image_slices(const uint8_t *buf, size_t len, struct slices *live,
			struct slices *freeb, struct bs_slice *zeros, const char *what)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { .no_write = true };
	struct vol_error err;
	int r;
	if (!dev)
		return -ENOMEM;
	if ((r = bs_memdev_load(dev, buf, len))) {
		bs_memdev_free(dev);
		return r;
	}
	struct vol *v = open_dev(dev, &o, &r, &err);
	if (!v) {
		fail(what, "the image does not reopen: %s", err.msg);
		bs_memdev_free(dev);
		return r;
	}
	r = vol_foreach_alloc(v, live_one, live);
	if (!r && freeb)
		r = hm_walk_free(vol_allocator(v), free_one, freeb);
	if (!r && zeros) {
		struct vol_alloc_rec rec;
		struct vol_attr a;
		uint64_t dir;
		if (!(r = dir_ino(v, "b", &dir)) && !(r = vol_lookup(v, dir, ZEROS, &a)) &&
		    !(r = vol_alloc_of(v, a.ino, &rec)))
			*zeros = rec.slice;
	}
	if (r)
		fail(what, "listing the slices: %s", strerror(-r));
	vol_close(v);
	bs_memdev_free(dev);
	return r;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int r = 0;
	if (!f)
		return -errno;
	if (len && fwrite(buf, 1, len, f) != len)
		r = -EIO;
	if (fclose(f) && !r)
		r = -EIO;
	return r;
}

static int emit(const char *outdir, const char *name, bool expect_ok, const uint8_t *buf,
		size_t len, const struct slices *live, const struct slices *extra)
{
	char path[4096];
	int r;
	snprintf(path, sizeof path, "%s/%s.img", outdir, name);
	if ((r = write_file(path, buf, len)))
		return r;
	snprintf(path, sizeof path, "%s/%s.live", outdir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "# %s: the live slices (payload off, len) the catalog names\n", name);
	for (size_t i = 0; i < live->n; i++)
		fprintf(f, "%" PRIu64 " %" PRIu64 "\n", live->v[i].off, live->v[i].len);
	if (extra && extra->n)
		fprintf(f, "# and, falsely, every free block\n");
	for (size_t i = 0; extra && i < extra->n; i++)
		fprintf(f, "%" PRIu64 " %" PRIu64 "\n", extra->v[i].off, extra->v[i].len);
	if (fclose(f))
		return -EIO;
	printf("%s %s\n", name, expect_ok ? "ok" : "fail");
	return 0;
}

/* ---- damage, in the spirit of tests/test_damage.c ----------------------- */

static uint64_t get64(const uint8_t *b, uint64_t poff)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[HDR + poff + (uint64_t)i];
	return v;
}

static void put64(uint8_t *b, uint64_t poff, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[HDR + poff + (uint64_t)i] = (uint8_t)(v >> (8 * i));
}

/* What a poke may use: the control image's free blocks and live slices,
 * and the slice of the file of zeros. */
struct target {
	const struct slices *live, *freeb;
	struct bs_slice zeros;
	size_t len;
};

/* The biggest live slice that is not the catalog (the catalog is the
 * first of live): a file's bytes. */
static struct bs_slice big_file(const struct target *t)
{
	struct bs_slice best = { 0, 0 };
	for (size_t i = 1; i < t->live->n; i++)
		if (t->live->v[i].len > best.len)
			best = t->live->v[i];
	return best;
}

/* A poke returns false when the image offers nothing to damage. */
typedef bool (*poke_fn)(uint8_t *b, const struct target *t);

/* FirstFit: free_head at payload 32, a block's header 16 bytes before its
 * payload (size u64, flags u32 bit 0 = free), prev pointer at payload + 8. */
static bool ff_head_lost(uint8_t *b, const struct target *t)
{
	(void)t;
	if (!get64(b, 32))
		return false;
	put64(b, 32, 0);
	return true;
}

static bool ff_head_moved(uint8_t *b, const struct target *t)
{
	(void)t;
	if (!get64(b, 32))
		return false;
	put64(b, 32, get64(b, 32) ^ 0x40);
	return true;
}

static bool ff_free_flag(uint8_t *b, const struct target *t)
{
	uint64_t head = get64(b, 32);
	(void)t;
	if (!head)
		return false;
	b[HDR + head - 8] &= (uint8_t)~1u;
	return true;
}

static bool ff_block_header(uint8_t *b, const struct target *t)
{
	(void)t;
	put64(b, 48, get64(b, 48) + 8);
	return true;
}

static bool ff_block_footer(uint8_t *b, const struct target *t)
{
	uint64_t size = get64(b, 48);
	if (48 + 16 + size + 8 > t->len - HDR)
		return false;
	put64(b, 48 + 16 + size, 12345);
	return true;
}

/* not repaired: the list's head is a live file (the seed's open checks
 * only that it lies inside the stack) */
static bool ff_head_into_live(uint8_t *b, const struct target *t)
{
	struct bs_slice f = big_file(t);
	if (!f.len)
		return false;
	put64(b, 32, f.off);
	return true;
}

/* Slab: block size at 32, free head at 40, a free block's next at +0. */
static bool slab_head_outside(uint8_t *b, const struct target *t)
{
	if (!get64(b, 40))
		return false;
	put64(b, 40, (uint64_t)t->len * 2);
	return true;
}

static bool slab_next_misaligned(uint8_t *b, const struct target *t)
{
	uint64_t head = get64(b, 40);
	(void)t;
	if (!head)
		return false;
	put64(b, head, 48 + 3);
	return true;
}

static bool slab_head_into_live(uint8_t *b, const struct target *t)
{
	struct bs_slice f = big_file(t);
	if (!f.len)
		return false;
	put64(b, 40, f.off);
	return true;
}

/* not repaired: the list cut after its head (the rest is lost) */
static bool slab_list_cut(uint8_t *b, const struct target *t)
{
	uint64_t head = get64(b, 40);
	(void)t;
	if (!head || !get64(b, head))
		return false;
	put64(b, head, 0);
	return true;
}

/* not repaired: the head block's next is itself (the seed pops it twice) */
static bool slab_loop(uint8_t *b, const struct target *t)
{
	uint64_t head = get64(b, 40);
	(void)t;
	if (!head)
		return false;
	put64(b, head, head);
	return true;
}

/* GhostTree: root at 40; a free block's node: size +0, left +16, right +24;
 * the rest of a free block is zero. */
static bool gt_root_misaligned(uint8_t *b, const struct target *t)
{
	(void)t;
	if (!get64(b, 40))
		return false;
	put64(b, 40, get64(b, 40) + 8);
	return true;
}

static bool gt_root_size(uint8_t *b, const struct target *t)
{
	uint64_t root = get64(b, 40);
	(void)t;
	if (!root)
		return false;
	put64(b, root, 1ULL << 40);
	return true;
}

static bool gt_child_outside(uint8_t *b, const struct target *t)
{
	uint64_t root = get64(b, 40);
	if (!root)
		return false;
	put64(b, root + 16, (uint64_t)t->len * 4 + 16);
	return true;
}

/* a byte that must be zero, inside the first free block of 64 bytes or more */
static bool gt_dirty_free_byte(uint8_t *b, const struct target *t)
{
	for (size_t i = 0; i < t->freeb->n; i++)
		if (t->freeb->v[i].len >= 64) {
			b[HDR + t->freeb->v[i].off + 40] = 0xA5;
			return true;
		}
	return false;
}

/* not repaired: the last byte of every free block past its node is not
 * zero (a 32-byte block is all node) */
static bool gt_dirty_every_free_block(uint8_t *b, const struct target *t)
{
	bool any = false;
	for (size_t i = 0; i < t->freeb->n; i++)
		if (t->freeb->v[i].len > 32) {
			b[HDR + t->freeb->v[i].off + t->freeb->v[i].len - 1] = 0x5A;
			any = true;
		}
	return any;
}

/* not repaired: a node without a left child gets one, 1024 bytes into
 * the file of zeros (read as a node: size 0, no children; not where a
 * free block may end, which the seed's coalesce would merge it into);
 * the seed's open writes a node there */
static bool gt_child_into_live(uint8_t *b, const struct target *t)
{
	if (t->zeros.len < 1024 + 32)
		return false;
	for (size_t i = 0; i < t->freeb->n; i++)
		if (get64(b, t->freeb->v[i].off + 16) == 0) {
			put64(b, t->freeb->v[i].off + 16, t->zeros.off + 1024);
			return true;
		}
	return false;
}

struct damage {
	enum bs_alloc_kind kind;
	const char *name;
	poke_fn poke;
	bool repair;   /* false: a negative control, written unrepaired */
};

static const struct damage damages[] = {
	{ BS_ALLOC_FIRSTFIT, "head-lost", ff_head_lost, true },
	{ BS_ALLOC_FIRSTFIT, "head-moved", ff_head_moved, true },
	{ BS_ALLOC_FIRSTFIT, "free-flag", ff_free_flag, true },
	{ BS_ALLOC_FIRSTFIT, "block-header", ff_block_header, true },
	{ BS_ALLOC_FIRSTFIT, "block-footer", ff_block_footer, true },
	{ BS_ALLOC_FIRSTFIT, "neg-head-into-live", ff_head_into_live, false },
	{ BS_ALLOC_FIRSTFIT, "neg-head-lost", ff_head_lost, false },
	{ BS_ALLOC_SLAB, "head-outside", slab_head_outside, true },
	{ BS_ALLOC_SLAB, "next-misaligned", slab_next_misaligned, true },
	{ BS_ALLOC_SLAB, "neg-head-into-live", slab_head_into_live, false },
	{ BS_ALLOC_SLAB, "neg-loop", slab_loop, false },
	{ BS_ALLOC_SLAB, "neg-list-cut", slab_list_cut, false },
	{ BS_ALLOC_GHOST, "root-misaligned", gt_root_misaligned, true },
	{ BS_ALLOC_GHOST, "root-size", gt_root_size, true },
	{ BS_ALLOC_GHOST, "child-outside", gt_child_outside, true },
	{ BS_ALLOC_GHOST, "dirty-free-byte", gt_dirty_free_byte, true },
	{ BS_ALLOC_GHOST, "neg-child-outside", gt_child_outside, false },
	{ BS_ALLOC_GHOST, "neg-dirty", gt_dirty_every_free_block, false },
	{ BS_ALLOC_GHOST, "neg-child-into-live", gt_child_into_live, false },
};

/* Damage a copy of the image, check that a mount refuses it, repair it
 * (fsck -y) and return the repaired image's bytes. */
static int repair(const char *what, const uint8_t *buf, size_t len, uint8_t **out,
		  size_t *outlen)
{
	struct vol_opts mount = { 0 }, fix = { .repair = true };
	struct vol_open_report rep;
	struct vol_error err;
	struct bs_memdev *dev = bs_memdev_new();
	int r;
	if (!dev)
		return -ENOMEM;
	if ((r = bs_memdev_load(dev, buf, len)))
		goto out;
	struct vol *v = open_dev(dev, &mount, &r, &err);
	if (v) {
		fail(what, "a mount accepts the damaged image");
		vol_close(v);
		r = -EINVAL;
		goto out;
	}
	v = open_dev(dev, &fix, &r, &err);
	if (!v) {
		fail(what, "the repair refuses: %s", err.msg);
		goto out;
	}
	vol_open_report(v, &rep);
	if (!rep.alloc_rebuilt)
		fail(what, "the repair did not rebuild the allocator");
	files_intact(v, what);
	if ((r = vol_check(v, NULL, NULL)) != 0)
		fail(what, "the repaired volume fails its check (%d)", r);
	r = vol_close(v);
	if (r)
		fail(what, "closing the repaired volume: %s", strerror(-r));
	else
		r = bs_memdev_snapshot(dev, out, outlen);
out:
	bs_memdev_free(dev);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: seedcheck_rebuild KIND OUTDIR\n");
		return 2;
	}
	enum bs_alloc_kind kind = bs_alloc_kind_parse(argv[1]);
	const char *outdir = argv[2], *kn = argv[1];
	if (kind != BS_ALLOC_GHOST && kind != BS_ALLOC_FIRSTFIT && kind != BS_ALLOC_SLAB) {
		fprintf(stderr, "seedcheck_rebuild: KIND is ghost, firstfit or slab\n");
		return 2;
	}
	struct slices live = { 0 }, freeb = { 0 };
	uint8_t *base;
	size_t len;
	char name[128];
	int r = make_image(kind, &base, &len);
	if (r)
		return 1;
	snprintf(name, sizeof name, "%s-control", kn);
	struct target t = { &live, &freeb, { 0, 0 }, len };
	if ((r = image_slices(base, len, &live, &freeb, &t.zeros, name)))
		return 1;
	if (freeb.n == 0)
		fail(name, "no free space between the live files: nothing to walk into");
	if ((r = emit(outdir, name, true, base, len, &live, NULL)))
		fail(name, "writing: %s", strerror(-r));
	/* the control's LIVE naming every free block too: the seed hands one
	 * out (or, FirstFit, finds its header free) */
	snprintf(name, sizeof name, "%s-neg-lie", kn);
	if ((r = emit(outdir, name, false, base, len, &live, &freeb)))
		fail(name, "writing: %s", strerror(-r));

	for (size_t d = 0; d < sizeof damages / sizeof damages[0]; d++) {
		const struct damage *dm = &damages[d];
		if (dm->kind != kind)
			continue;
		snprintf(name, sizeof name, "%s-%s", kn, dm->name);
		uint8_t *b = malloc(len), *fixed = NULL;
		size_t flen = 0;
		if (!b) {
			fail(name, "out of memory");
			break;
		}
		memcpy(b, base, len);
		if (!dm->poke(b, &t) || !memcmp(b, base, len)) {
			fail(name, "the image offers nothing to damage");
			free(b);
			continue;
		}
		if (!dm->repair) {
			if ((r = emit(outdir, name, false, b, len, &live, NULL)))
				fail(name, "writing: %s", strerror(-r));
			free(b);
			continue;
		}
		if (!repair(name, b, len, &fixed, &flen)) {
			struct slices fl = { 0 };
			if (!image_slices(fixed, flen, &fl, NULL, NULL, name) &&
			    (r = emit(outdir, name, true, fixed, flen, &fl, NULL)))
				fail(name, "writing: %s", strerror(-r));
			free(fl.v);
		}
		free(fixed);
		free(b);
	}
	free(base);
	free(live.v);
	free(freeb.v);
	return failures ? 1 : 0;
}
