/*
 * test_damage.c — "never make damage worse" (issue 14) on the memory
 * device: crafted damage of every class (the file header's length and
 * magic, each allocator's metadata, the catalog's header and records), and
 * for each the promises:
 *   - a refused image keeps every byte, after a mount's open and after a
 *     check's (no_write: fsck -n);
 *   - an image whose allocator fails its check never opens writable;
 *   - with repair (fsck -y) an image whose catalog is intact opens, every
 *     file's bytes unchanged, then checks clean, and a write/remove round
 *     and a reopen succeed with a clean check;
 *   - a catalog record that falls back to its older version is reported.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "volume.h"

#define NFILES 6

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

/* An image: its bytes and the files it holds (name i: "f<i>", content
 * h_pattern(tag i), sizes[i] bytes; removed[i] gone). */
struct image {
	enum bs_alloc_kind kind;
	uint8_t *buf;
	size_t len;
	size_t sizes[NFILES];
	bool removed[NFILES];
};

static struct vol *open_dev(struct bs_memdev *dev, const struct vol_opts *o, int *rc,
			    struct vol_error *err)
{
	struct bs_io *io;
	struct vol *v = NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	*rc = vol_open_io(io, o, &v, err);
	return *rc ? NULL : v;
}

static void fill(struct vol *v, uint64_t ino, uint64_t tag, size_t n)
{
	uint8_t *b = malloc(n);
	h_pattern(b, n, tag, 0);
	CU_ASSERT(vol_write(v, ino, b, n, 0) == (ssize_t)n);
	CU_ASSERT(vol_release(v, ino) == 0);
	free(b);
}

/* Six files, the 2nd and 4th removed again, so the allocators hold free
 * space between live files. */
static void make_image(enum bs_alloc_kind k, struct image *im)
{
	static const size_t sizes[NFILES] = { 3000, 700, 5000, 64, 9000, 1200 };
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { .allocator = k, .create = true };
	struct vol_error err;
	int rc;
	if (k == BS_ALLOC_SLAB)
		o.block_size = 512;
	struct vol *v = open_dev(dev, &o, &rc, &err);
	CU_ASSERT_FATAL(v != NULL);
	memset(im, 0, sizeof *im);
	im->kind = k;
	for (int i = 0; i < NFILES; i++) {
		char name[8];
		struct vol_attr a;
		snprintf(name, sizeof name, "f%d", i);
		CU_ASSERT_FATAL(vol_create(v, VOL_ROOT_INO, name, 0644, 0, 0, &a) == 0);
		fill(v, a.ino, 100 + (uint64_t)i, sizes[i]);
		im->sizes[i] = sizes[i];
	}
	for (int i = 1; i < NFILES; i += 2) {
		if (i == 5)
			break;   /* keep the last file: the tail stays allocated */
		char name[8];
		snprintf(name, sizeof name, "f%d", i);
		CU_ASSERT_FATAL(vol_unlink(v, VOL_ROOT_INO, name) == 0);
		im->removed[i] = true;
	}
	CU_ASSERT_FATAL(vol_close(v) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &im->buf, &im->len) == 0);
	bs_memdev_free(dev);
}

static struct bs_memdev *dev_of(const uint8_t *buf, size_t len)
{
	struct bs_memdev *dev = bs_memdev_new();
	CU_ASSERT_FATAL(bs_memdev_load(dev, buf, len) == 0);
	return dev;
}

static bool dev_is(struct bs_memdev *dev, const uint8_t *buf, size_t len)
{
	uint8_t *now;
	size_t n;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &now, &n) == 0);
	bool same = n == len && memcmp(now, buf, n) == 0;
	free(now);
	return same;
}

/* Payload offsets of the image (file byte 16 + off). */
static uint64_t get64(const uint8_t *buf, uint64_t poff)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | buf[16 + poff + (uint64_t)i];
	return v;
}

static void put64(uint8_t *buf, uint64_t poff, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		buf[16 + poff + (uint64_t)i] = (uint8_t)(v >> (8 * i));
}

/* Every file of im is in v with its bytes; removed ones are absent. */
static void files_intact(struct vol *v, const struct image *im)
{
	for (int i = 0; i < NFILES; i++) {
		char name[8];
		struct vol_attr a;
		snprintf(name, sizeof name, "f%d", i);
		int r = vol_lookup(v, VOL_ROOT_INO, name, &a);
		if (im->removed[i]) {
			CU_ASSERT_EQUAL(r, -ENOENT);
			continue;
		}
		CU_ASSERT_FATAL(r == 0);
		CU_ASSERT_EQUAL(a.size, im->sizes[i]);
		uint8_t *b = malloc(im->sizes[i]);
		CU_ASSERT(vol_read(v, a.ino, b, im->sizes[i], 0) == (ssize_t)im->sizes[i]);
		CU_ASSERT(h_pattern_ok(b, im->sizes[i], 100 + (uint64_t)i, 0));
		free(b);
	}
}

static int count_violations(struct vol *v)
{
	return vol_check(v, NULL, NULL) < 0 ? -1 : vol_check(v, NULL, NULL);
}

static void no_report(void *ctx, const char *msg)
{
	(void)ctx;
	printf("\n    violation: %s", msg);
}

/* The open refuses buf, and neither the mount's open nor a check's
 * (no_write) nor a plain check's (allow_damaged) changes a byte. */
static void expect_refused_untouched(const uint8_t *buf, size_t len, const char *what)
{
	struct vol_opts mount = { 0 }, dry = { .no_write = true, .allow_damaged = true },
			plain = { .allow_damaged = true };
	struct vol_error err = { "" };
	struct bs_memdev *dev = dev_of(buf, len);
	int rc;
	struct vol *v = open_dev(dev, &mount, &rc, &err);
	if (v) {
		printf("\n%s: mounted although damaged", what);
		vol_close(v);
	}
	CU_ASSERT(rc < 0);
	CU_ASSERT(err.msg[0] != '\0');
	CU_ASSERT(strchr(err.msg, '\n') == NULL);
	CU_ASSERT(dev_is(dev, buf, len));
	/* the checks: they may open (for the report) but write nothing */
	const struct vol_opts *checks[] = { &dry, &plain };
	for (int c = 0; c < 2; c++) {
		v = open_dev(dev, checks[c], &rc, &err);
		if (v) {
			CU_ASSERT(vol_damaged(v) || checks[c]->no_write);
			CU_ASSERT(vol_close(v) == 0);
		}
		if (!dev_is(dev, buf, len))
			printf("\n%s: check %d wrote the image", what, c);
		CU_ASSERT(dev_is(dev, buf, len));
	}
	bs_memdev_free(dev);
}

/* repair (fsck -y) brings back every file; then the image mounts, checks
 * clean, takes a write/remove round and mounts again clean. */
static void expect_repaired(const uint8_t *buf, size_t len, const struct image *im,
			    const char *what)
{
	struct vol_opts fix = { .repair = true }, mount = { 0 };
	struct vol_error err = { "" };
	struct bs_memdev *dev = dev_of(buf, len);
	int rc;
	struct vol *v = open_dev(dev, &fix, &rc, &err);
	if (!v)
		printf("\n%s: repair refused: %s", what, err.msg);
	CU_ASSERT_FATAL(v != NULL);
	files_intact(v, im);
	int nv = vol_check(v, no_report, NULL);
	CU_ASSERT_EQUAL(nv, 0);
	CU_ASSERT(vol_close(v) == 0);

	v = open_dev(dev, &mount, &rc, &err);
	if (!v)
		printf("\n%s: mount after repair refused: %s", what, err.msg);
	CU_ASSERT_FATAL(v != NULL);
	files_intact(v, im);
	CU_ASSERT_EQUAL(count_violations(v), 0);
	struct vol_attr a;
	CU_ASSERT_FATAL(vol_create(v, VOL_ROOT_INO, "new", 0644, 0, 0, &a) == 0);
	fill(v, a.ino, 77, 2500);
	CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, "f0") == 0);
	CU_ASSERT_EQUAL(count_violations(v), 0);
	CU_ASSERT(vol_close(v) == 0);

	v = open_dev(dev, &mount, &rc, &err);
	CU_ASSERT_FATAL(v != NULL);
	CU_ASSERT_EQUAL(count_violations(v), 0);
	CU_ASSERT(vol_lookup(v, VOL_ROOT_INO, "f0", &a) == -ENOENT);
	CU_ASSERT(vol_lookup(v, VOL_ROOT_INO, "new", &a) == 0 && a.size == 2500);
	struct vol_open_report rep;
	vol_open_report(v, &rep);
	CU_ASSERT(!rep.len_recovered && !rep.alloc_recovered && !rep.leaked_bytes_reclaimed);
	CU_ASSERT(vol_close(v) == 0);
	bs_memdev_free(dev);
}

static uint8_t *copy_of(const struct image *im)
{
	uint8_t *b = malloc(im->len);
	memcpy(b, im->buf, im->len);
	return b;
}

/* ---- the file header --------------------------------------------------- */

/* Issue 14 reproducer 1: a zeroed length field.  Refused, untouched; the
 * repair restores the length from the file. */
static void a_zeroed_length_is_refused_untouched_and_restored_by_repair(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		memset(b + 8, 0, 8);
		expect_refused_untouched(b, im.len, "clen 0");
		struct vol_error err;
		struct bs_memdev *dev = dev_of(b, im.len);
		struct vol_opts o = { 0 };
		int rc;
		CU_ASSERT(open_dev(dev, &o, &rc, &err) == NULL);
		CU_ASSERT(strstr(err.msg, "shorter than the catalog's allocations") != NULL);
		bs_memdev_free(dev);
		expect_repaired(b, im.len, &im, "clen 0");
		free(b);
		free(im.buf);
	}
}

/* A length short of the catalog's last allocation: the same. */
static void a_length_shorter_than_the_files_is_refused_and_restored(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		uint64_t clen = get64(b, -8ULL);   /* file bytes 8..16 */
		put64(b, -8ULL, clen - 700);        /* into the last file (f5) */
		expect_refused_untouched(b, im.len, "clen short");
		expect_repaired(b, im.len, &im, "clen short");
		free(b);
		free(im.buf);
	}
}

/* A length past the file's end (a shrink that lost its header update, or a
 * truncated image): the recovery adopts the file's size when nothing the
 * catalog needs is gone; a truncated image whose files are cut is refused
 * untouched. */
static void a_length_longer_than_the_file_is_recovered_or_refused_untouched(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		put64(b, -8ULL, get64(b, -8ULL) + 4096);
		struct bs_memdev *dev = dev_of(b, im.len);
		struct vol_opts o = { 0 };
		struct vol_error err;
		int rc;
		struct vol *v = open_dev(dev, &o, &rc, &err);
		CU_ASSERT_FATAL(v != NULL);
		struct vol_open_report rep;
		vol_open_report(v, &rep);
		CU_ASSERT(rep.len_recovered);
		files_intact(v, &im);
		CU_ASSERT(vol_close(v) == 0);
		bs_memdev_free(dev);
		/* cut into the last file: gone bytes are refused, not invented */
		expect_refused_untouched(im.buf, im.len - 700, "truncated");
		free(b);
		free(im.buf);
	}
}

/* Appended garbage past the length (a grow that lost its header update)
 * is cut by the recovery, as before. */
static void bytes_past_the_length_are_cut_and_the_files_kept(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = malloc(im.len + 333);
		memcpy(b, im.buf, im.len);
		memset(b + im.len, 0xEE, 333);
		struct bs_memdev *dev = dev_of(b, im.len + 333);
		struct vol_opts o = { 0 };
		struct vol_error err;
		int rc;
		struct vol *v = open_dev(dev, &o, &rc, &err);
		CU_ASSERT_FATAL(v != NULL);
		files_intact(v, &im);
		CU_ASSERT(vol_close(v) == 0);
		CU_ASSERT(dev_is(dev, im.buf, im.len));
		bs_memdev_free(dev);
		free(b);
		free(im.buf);
	}
}

static void a_wrong_file_magic_is_refused_untouched(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		b[0] ^= 0x20;
		expect_refused_untouched(b, im.len, "magic");
		b[0] ^= 0x20;
		b[5] = 9;   /* version */
		expect_refused_untouched(b, im.len, "version");
		free(b);
		free(im.buf);
	}
}

/* ---- allocator metadata ------------------------------------------------ */

/* One crafted damage: poke(buf) changes the image; repairable when the
 * catalog proves the repair. */
struct damage {
	const char *what;
	enum bs_alloc_kind kind;
	void (*poke)(uint8_t *b, size_t len);
	bool repairable;
};

/* FirstFit: issue 14 reproducer 2 — the free list head lost (0). */
static void ff_head_lost(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 32, 0);
}

static void ff_head_elsewhere(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 32, get64(b, 32) ^ 0x40);
}

/* the first block's header size */
static void ff_first_header(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 48, get64(b, 48) + 8);
}

static void ff_first_footer(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 48 + 16 + get64(b, 48), 12345);
}

/* a free block's flag cleared: a block nobody holds */
static void ff_free_flag(uint8_t *b, size_t len)
{
	(void)len;
	uint64_t head = get64(b, 32);
	b[16 + head - 8] &= (uint8_t)~1u;
}

static void ff_recovery_flag(uint8_t *b, size_t len)
{
	(void)len;
	b[16 + 24] |= 1;
}

static void slab_head_outside(uint8_t *b, size_t len)
{
	put64(b, 40, len * 2);
}

static void slab_next_misaligned(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, get64(b, 40), 48 + 3);
}

static void slab_block_size(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 32, 500);
}

static void ghost_root_misaligned(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, 40, get64(b, 40) + 8);
}

static void ghost_root_size(uint8_t *b, size_t len)
{
	(void)len;
	put64(b, get64(b, 40), 1ULL << 40);
}

static void ghost_root_left_outside(uint8_t *b, size_t len)
{
	put64(b, get64(b, 40) + 16, len * 4 + 16);
}

static void ghost_dirty_free_byte(uint8_t *b, size_t len)
{
	(void)len;
	b[16 + get64(b, 40) + 40] = 0xA5;
}

static void alloc_magic(uint8_t *b, size_t len)
{
	(void)len;
	/* the allocator's tag, wherever it is: FF 16, Slab 24, Ghost 32 */
	for (uint64_t off = 16; off <= 32; off += 8)
		if (!memcmp(b + 16 + off, "ALFF", 4) || !memcmp(b + 16 + off, "ALSL", 4) ||
		    !memcmp(b + 16 + off, "ALGT", 4))
			b[16 + off + 1] ^= 0x01;
}

static const struct damage damages[] = {
	{ "firstfit free list head lost", BS_ALLOC_FIRSTFIT, ff_head_lost, true },
	{ "firstfit free list head moved", BS_ALLOC_FIRSTFIT, ff_head_elsewhere, true },
	{ "firstfit block header", BS_ALLOC_FIRSTFIT, ff_first_header, true },
	{ "firstfit block footer", BS_ALLOC_FIRSTFIT, ff_first_footer, true },
	{ "firstfit free flag", BS_ALLOC_FIRSTFIT, ff_free_flag, true },
	{ "slab free head outside", BS_ALLOC_SLAB, slab_head_outside, true },
	{ "slab next misaligned", BS_ALLOC_SLAB, slab_next_misaligned, true },
	{ "slab block size", BS_ALLOC_SLAB, slab_block_size, false },
	{ "ghost root misaligned", BS_ALLOC_GHOST, ghost_root_misaligned, true },
	{ "ghost root size", BS_ALLOC_GHOST, ghost_root_size, true },
	{ "ghost root's child outside", BS_ALLOC_GHOST, ghost_root_left_outside, true },
	{ "ghost dirty free byte", BS_ALLOC_GHOST, ghost_dirty_free_byte, true },
	{ "firstfit magic", BS_ALLOC_FIRSTFIT, alloc_magic, false },
	{ "slab magic", BS_ALLOC_SLAB, alloc_magic, false },
	{ "ghost magic", BS_ALLOC_GHOST, alloc_magic, false },
};

static void damaged_allocator_metadata_never_mounts_and_repair_rebuilds_it(void)
{
	enum bs_alloc_kind made = BS_ALLOC_NONE;
	struct image im = { 0 };
	for (size_t d = 0; d < sizeof damages / sizeof damages[0]; d++) {
		const struct damage *dm = &damages[d];
		if (dm->kind != made) {
			free(im.buf);
			make_image(dm->kind, &im);
			made = dm->kind;
		}
		uint8_t *b = copy_of(&im);
		dm->poke(b, im.len);
		CU_ASSERT_FATAL(memcmp(b, im.buf, im.len) != 0);
		expect_refused_untouched(b, im.len, dm->what);
		if (dm->repairable) {
			expect_repaired(b, im.len, &im, dm->what);
		} else {
			/* the repair cannot prove anything: refused, untouched */
			struct vol_opts fix = { .repair = true };
			struct vol_error err;
			struct bs_memdev *dev = dev_of(b, im.len);
			int rc;
			struct vol *v = open_dev(dev, &fix, &rc, &err);
			if (v) {
				printf("\n%s: repaired what it cannot know", dm->what);
				vol_close(v);
			}
			CU_ASSERT(v == NULL);
			CU_ASSERT(dev_is(dev, b, im.len));
			bs_memdev_free(dev);
		}
		free(b);
	}
	free(im.buf);
}

/* The check at mount and the check of fsck agree: a plain check
 * (allow_damaged) reports violations exactly when the mount refuses for
 * the allocator. */
static void the_mount_refusal_and_the_check_agree(void)
{
	enum bs_alloc_kind made = BS_ALLOC_NONE;
	struct image im = { 0 };
	for (size_t d = 0; d < sizeof damages / sizeof damages[0]; d++) {
		const struct damage *dm = &damages[d];
		if (dm->kind != made) {
			free(im.buf);
			make_image(dm->kind, &im);
			made = dm->kind;
		}
		uint8_t *b = copy_of(&im);
		dm->poke(b, im.len);
		struct bs_memdev *dev = dev_of(b, im.len);
		struct vol_opts mount = { 0 }, check = { .allow_damaged = true, .no_write = true };
		struct vol_error err;
		int rc, rc2;
		struct vol *v = open_dev(dev, &mount, &rc, &err);
		CU_ASSERT(v == NULL);
		v = open_dev(dev, &check, &rc2, &err);
		/* either both refuse outright, or the check opens and lists it */
		if (v) {
			CU_ASSERT(vol_damaged(v));
			CU_ASSERT(vol_check(v, NULL, NULL) > 0);
			vol_close(v);
		}
		bs_memdev_free(dev);
		free(b);
	}
	free(im.buf);
}

/* FirstFit's recovery flag set (a crash inside an operation): the seed's
 * recovery runs and the image mounts with every file — a crash, not damage. */
static void a_set_recovery_flag_is_recovered_not_refused(void)
{
	struct image im;
	make_image(BS_ALLOC_FIRSTFIT, &im);
	uint8_t *b = copy_of(&im);
	ff_recovery_flag(b, im.len);
	struct bs_memdev *dev = dev_of(b, im.len);
	struct vol_opts o = { 0 };
	struct vol_error err;
	int rc;
	struct vol *v = open_dev(dev, &o, &rc, &err);
	CU_ASSERT_FATAL(v != NULL);
	struct vol_open_report rep;
	vol_open_report(v, &rep);
	CU_ASSERT(rep.alloc_recovered);
	files_intact(v, &im);
	CU_ASSERT_EQUAL(count_violations(v), 0);
	CU_ASSERT(vol_close(v) == 0);
	bs_memdev_free(dev);
	free(b);
	free(im.buf);
}

/* ---- the catalog ------------------------------------------------------- */

static uint64_t cat_root_off(const uint8_t *b)
{
	return get64(b, 0);
}

static void a_damaged_catalog_header_is_refused_untouched(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		b[16 + cat_root_off(b) + 17] ^= 1;   /* n_pairs, under the CRC */
		expect_refused_untouched(b, im.len, "catalog header");
		memcpy(b, im.buf, im.len);
		put64(b, 0, cat_root_off(b) + 8);     /* the root reference */
		expect_refused_untouched(b, im.len, "root reference");
		free(b);
		free(im.buf);
	}
}

/* Offset of the slot of inode ino with the highest seq. */
static uint64_t newest_slot(const uint8_t *b, uint64_t ino, uint64_t *seq)
{
	uint64_t root = cat_root_off(b), len = get64(b, 8), best = 0;
	*seq = 0;
	for (uint64_t o = CAT_HDR_SIZE; o + CAT_SLOT_SIZE <= len; o += CAT_SLOT_SIZE) {
		struct cat_rec r;
		if (cat_rec_decode(b + 16 + root + o, &r) == 0 && r.ino == ino && r.seq > *seq) {
			*seq = r.seq;
			best = root + o;
		}
	}
	return best;
}

/* One torn record slot: the inode falls back to its older version, and
 * the open says which (guarantee 5: not silent).  Two: refused. */
static void a_record_falling_back_is_reported_and_two_bad_slots_refused(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		uint64_t seq, slot = newest_slot(b, 2, &seq);   /* f0 */
		CU_ASSERT_FATAL(slot != 0);
		b[16 + slot + 100] ^= 0x55;
		struct bs_memdev *dev = dev_of(b, im.len);
		struct vol_opts o = { 0 };
		struct vol_error err;
		int rc;
		struct vol *v = open_dev(dev, &o, &rc, &err);
		CU_ASSERT_FATAL(v != NULL);
		struct vol_open_report rep;
		vol_open_report(v, &rep);
		CU_ASSERT(strstr(rep.fallback, "inode 2") != NULL);
		CU_ASSERT(strstr(rep.fallback, "fails its checksum") != NULL);
		CU_ASSERT(rep.catalog_repaired);
		CU_ASSERT(vol_close(v) == 0);
		bs_memdev_free(dev);
		/* a second bad slot: more than a crash can do */
		uint64_t seq2, slot2 = newest_slot(b, 3, &seq2);
		CU_ASSERT_FATAL(slot2 != 0 && slot2 != slot);
		b[16 + slot2 + 100] ^= 0x55;
		expect_refused_untouched(b, im.len, "two bad slots");
		free(b);
		free(im.buf);
	}
}

/* A record that overlaps another's allocation: refused untouched (the
 * catalog is not intact, so nothing is rebuilt either). */
static void overlapping_records_are_refused_untouched_even_by_repair(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		uint8_t *b = copy_of(&im);
		uint64_t s2, s3, a = newest_slot(b, 2, &s2), c = newest_slot(b, 4, &s3);
		struct cat_rec r2, r4;
		CU_ASSERT_FATAL(cat_rec_decode(b + 16 + a, &r2) == 0);
		CU_ASSERT_FATAL(cat_rec_decode(b + 16 + c, &r4) == 0);
		r4.alloc = r2.alloc;
		r4.size = r2.alloc.len < r4.size ? r2.alloc.len : r4.size;
		cat_rec_encode(&r4, b + 16 + c);
		expect_refused_untouched(b, im.len, "overlap");
		struct vol_opts fix = { .repair = true };
		struct vol_error err;
		struct bs_memdev *dev = dev_of(b, im.len);
		int rc;
		CU_ASSERT(open_dev(dev, &fix, &rc, &err) == NULL);
		CU_ASSERT(dev_is(dev, b, im.len));
		bs_memdev_free(dev);
		free(b);
		free(im.buf);
	}
}

/* A clean image opened with no_write writes nothing, and neither does a
 * GhostTree open's routine maintenance count as a repair. */
static void clean_images_open_without_repairs(void)
{
	for (size_t ki = 0; ki < N_KINDS; ki++) {
		struct image im;
		make_image(kinds[ki], &im);
		for (int pass = 0; pass < 2; pass++) {
			struct bs_memdev *dev = dev_of(im.buf, im.len);
			struct vol_opts o = { .no_write = pass == 0, .repair = pass == 1 };
			struct vol_error err;
			int rc;
			struct vol *v = open_dev(dev, &o, &rc, &err);
			CU_ASSERT_FATAL(v != NULL);
			struct vol_open_report rep;
			vol_open_report(v, &rep);
			CU_ASSERT(!rep.len_recovered && !rep.len_restored && !rep.alloc_recovered &&
				  !rep.alloc_rebuilt && !rep.catalog_repaired &&
				  !rep.files_trimmed && !rep.leaked_bytes_reclaimed &&
				  !rep.fallback[0]);
			CU_ASSERT_EQUAL(rep.alloc_violations, 0);
			files_intact(v, &im);
			CU_ASSERT(vol_close(v) == 0);
			if (pass == 0)
				CU_ASSERT(dev_is(dev, im.buf, im.len));
			bs_memdev_free(dev);
		}
		free(im.buf);
	}
}

/* ---- the fuzzer's regression images ------------------------------------ */

/* Every image in tests/fuzz-regress (found by scripts/fuzz) gives a clean
 * refusal (one line, image untouched) or a mount that checks clean, in
 * every mode of the open. */
static void fuzz_regression_images_refuse_cleanly_or_mount_clean(void)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/tests/fuzz-regress", BSTACKFS_SRCDIR);
	DIR *d = opendir(dir);
	CU_ASSERT_FATAL(d != NULL);
	int seen = 0;
	for (struct dirent *e; (e = readdir(d));) {
		size_t nl = strlen(e->d_name);
		if (nl < 5 || strcmp(e->d_name + nl - 4, ".img") != 0)
			continue;
		char path[8192];
		uint8_t *buf;
		size_t len;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		CU_ASSERT_FATAL(h_read_file(path, &buf, &len) == 0);
		seen++;
		static const struct vol_opts modes[] = {
			{ 0 }, { .no_write = true, .allow_damaged = true },
			{ .allow_damaged = true }, { .repair = true },
		};
		bool clean[4] = { false };
		for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
			struct bs_memdev *dev = dev_of(buf, len);
			struct vol_error err = { "" };
			int rc;
			struct vol *v = open_dev(dev, &modes[m], &rc, &err);
			if (v) {
				int bad = vol_check(v, NULL, NULL);
				if (!vol_damaged(v)) {
					if (bad != 0)
						printf("\n%s mode %zu: opened, %d violations", e->d_name, m, bad);
					CU_ASSERT_EQUAL(bad, 0);
					clean[m] = bad == 0;
				}
				CU_ASSERT(vol_close(v) == 0);
				if (modes[m].no_write)
					CU_ASSERT(dev_is(dev, buf, len));
			} else {
				CU_ASSERT(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
				CU_ASSERT(dev_is(dev, buf, len));
			}
			bs_memdev_free(dev);
		}
		/* the mount accepts exactly what the checks find clean */
		CU_ASSERT(clean[0] == clean[1] && clean[0] == clean[2]);
		free(buf);
	}
	closedir(d);
	CU_ASSERT(seen > 0);
}

static const struct h_test tests[] = {
	H_TEST(a_zeroed_length_is_refused_untouched_and_restored_by_repair),
	H_TEST(a_length_shorter_than_the_files_is_refused_and_restored),
	H_TEST(a_length_longer_than_the_file_is_recovered_or_refused_untouched),
	H_TEST(bytes_past_the_length_are_cut_and_the_files_kept),
	H_TEST(a_wrong_file_magic_is_refused_untouched),
	H_TEST(damaged_allocator_metadata_never_mounts_and_repair_rebuilds_it),
	H_TEST(the_mount_refusal_and_the_check_agree),
	H_TEST(a_set_recovery_flag_is_recovered_not_refused),
	H_TEST(a_damaged_catalog_header_is_refused_untouched),
	H_TEST(a_record_falling_back_is_reported_and_two_bad_slots_refused),
	H_TEST(overlapping_records_are_refused_untouched_even_by_repair),
	H_TEST(clean_images_open_without_repairs),
	H_TEST(fuzz_regression_images_refuse_cleanly_or_mount_clean),
};

H_MAIN("damage", tests)
