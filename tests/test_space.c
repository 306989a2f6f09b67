/*
 * test_space.c — an image stays bounded under churn (issue 15), on the
 * memory device, through the volume as the mount uses it:
 *   - rewriting three files over and over (cp: truncate, sequential
 *     writes, close) and a seeded mix of small and large files created and
 *     removed at random: GhostTree and FirstFit images stop growing (after
 *     30 rounds no larger than after 5) and stay within 2.0x the peak live
 *     bytes; so does Slab when rewriting large files, and within 4x under
 *     the mix (its block rounding and runs cut by small files, README);
 *     Linear is reported, not bounded (README);
 *   - what bstackfs does beyond the seed to get there, each asserted to
 *     happen: a freed block merges with its free neighbours while mounted,
 *     free tail space is given back;
 *   - power loss at every write and sync of a merge and of a tail give-back
 *     (both unsynced writes lost and kept): the image reopens, check() is
 *     clean, no file changed, and after the mount's reclaim nothing is
 *     leaked and no byte is lost (the free figures equal those of the run
 *     that was not cut).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "harness.h"
#include "volume.h"

#define ROOT VOL_ROOT_INO

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static struct vol *vopen(struct bs_memdev *dev, enum bs_alloc_kind k, bool create)
{
	struct bs_io *io;
	struct vol *v = NULL;
	struct vol_error err = { "" };
	struct vol_opts o = { .allocator = create ? k : BS_ALLOC_NONE, .create = create };
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	int r = vol_open_io(io, &o, &v, &err);
	if (r)
		printf("\nvol_open_io(%s): %d %s\n", bs_alloc_kind_name(k), r, err.msg);
	CU_ASSERT_FATAL(r == 0);
	return v;
}

static uint64_t ino_of(struct vol *v, const char *name)
{
	struct vol_attr a;
	return vol_lookup(v, ROOT, name, &a) == 0 ? a.ino : 0;
}

/* What cp does: create or open, truncate to 0, write in chunks, close. */
static void cp_file(struct vol *v, const char *name, uint64_t tag, uint64_t size,
		    size_t chunk)
{
	static uint8_t buf[65536];
	struct vol_attr a;
	uint64_t ino = ino_of(v, name);
	if (!ino) {
		CU_ASSERT_FATAL(vol_create(v, ROOT, name, 0644, 0, 0, &a) == 0);
		ino = a.ino;
	}
	CU_ASSERT_FATAL(vol_open_file(v, ino) == 0);
	CU_ASSERT_FATAL(vol_truncate(v, ino, 0) == 0);
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		h_pattern(buf, n, tag, off);
		CU_ASSERT_FATAL(vol_write(v, ino, buf, n, off) == (ssize_t)n);
	}
	CU_ASSERT_FATAL(vol_release(v, ino) == 0);
}

static bool file_is(struct vol *v, const char *name, uint64_t tag, uint64_t size)
{
	static uint8_t buf[65536];
	struct vol_attr a;
	uint64_t ino = ino_of(v, name);
	if (!ino || vol_getattr(v, ino, &a) || a.size != size)
		return false;
	for (uint64_t off = 0; off < size; off += sizeof buf) {
		size_t n = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
		if (vol_read(v, ino, buf, n, off) != (ssize_t)n || !h_pattern_ok(buf, n, tag, off))
			return false;
	}
	return true;
}

static struct vol_summary summary(struct vol *v)
{
	struct vol_summary s;
	CU_ASSERT(vol_summary(v, &s) == 0);
	return s;
}

static void count_report(void *ctx, const char *msg)
{
	(*(int *)ctx)++;
	printf("\n  check: %s", msg);
}

static int check_errors(struct vol *v)
{
	int n = 0;
	int r = vol_check(v, count_report, &n);
	return r < 0 ? r : n;
}

/* The bound of issue 15, asserted for GhostTree, FirstFit and Slab:
 * Linear cannot reuse space below its tail and is only reported.  img5 is
 * the image after round 5 (rewrite: the same files exist after every
 * round) or the largest it was during rounds 1..5 (mixed: at an instant
 * it follows which of the large files happen to exist). */
static void expect_bounded(enum bs_alloc_kind k, const char *what, uint64_t img5,
			   uint64_t img30, uint64_t peak)
{
	printf("\n    %-8s %-8s image in 5 rounds %9llu, after 30 %9llu, peak live %9llu (%.2fx)",
	       bs_alloc_kind_name(k), what, (unsigned long long)img5,
	       (unsigned long long)img30, (unsigned long long)peak,
	       peak ? (double)img30 / (double)peak : 0.0);
	if (k == BS_ALLOC_LINEAR)
		return;
	if (k == BS_ALLOC_SLAB && strcmp(what, "mixed") == 0) {
		/* small files take single blocks and can cut the runs large
		 * files reuse: Slab creeps here (README), but stays bounded */
		CU_ASSERT(img30 <= 4 * peak);
		return;
	}
	CU_ASSERT(img30 <= img5);   /* it stops growing */
	CU_ASSERT(img30 <= 2 * peak);
}

/* ---- churn ------------------------------------------------------------------ */

#define FILE_SIZE (1u << 20)

static void rewriting_three_files_thirty_times_keeps_the_image_bounded(void)
{
	for (size_t i = 0; i < N_KINDS; i++) {
		enum bs_alloc_kind k = kinds[i];
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t img5 = 0;
		char name[8];
		for (int round = 1; round <= 30; round++) {
			for (int n = 0; n < 3; n++) {
				snprintf(name, sizeof name, "x%d", n);
				/* 8 KiB writes: 128 per file, as cp's 128 KiB
				 * writes are 160 for a 20 MiB file */
				cp_file(v, name, (uint64_t)round * 3 + (uint64_t)n, FILE_SIZE, 8192);
			}
			if (round == 5)
				img5 = summary(v).image_bytes;
		}
		struct vol_summary s = summary(v);
		CU_ASSERT_EQUAL(s.live_bytes, 3ull * FILE_SIZE);
		CU_ASSERT(s.peak_live_bytes >= s.live_bytes);
		expect_bounded(k, "rewrite", img5, s.image_bytes, s.peak_live_bytes);
		for (int n = 0; n < 3; n++) {
			snprintf(name, sizeof name, "x%d", n);
			CU_ASSERT(file_is(v, name, 30 * 3 + (uint64_t)n, FILE_SIZE));
		}
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

/* A populated file system (4 large files, 50 of 100 small ones), then 30
 * rounds of 60 random choices: 10% among the large names, 90% among the
 * small ones; a file that exists is removed, one that does not is made. */
#define N_SMALL 100
#define N_LARGE 4
static const uint64_t large_size[N_LARGE] = { 1u << 20, 3u << 18, 1u << 19, 1u << 18 };

struct mix {
	uint64_t size[N_LARGE + N_SMALL];   /* 0 = absent */
	uint64_t tag[N_LARGE + N_SMALL];
};

static void mix_name(int i, char *name, size_t n)
{
	if (i < N_LARGE)
		snprintf(name, n, "L%d", i);
	else
		snprintf(name, n, "s%d", i - N_LARGE);
}

static void mix_toggle(struct vol *v, struct mix *m, int i, uint64_t tag)
{
	char name[16];
	mix_name(i, name, sizeof name);
	if (m->size[i]) {
		CU_ASSERT_FATAL(vol_unlink(v, ROOT, name) == 0);
		m->size[i] = 0;
		return;
	}
	m->size[i] = i < N_LARGE ? large_size[i] : 1 + h_rand_below(4096);
	m->tag[i] = tag;
	cp_file(v, name, tag, m->size[i], i < N_LARGE ? 8192 : 4096);
}

static void a_seeded_mix_of_small_and_large_files_keeps_the_image_bounded(void)
{
	/* One fixed workload, as scripts/bench-churn's (seed 15): that the
	 * image stops growing is a statement about a workload, and at an
	 * instant the image follows which large files happen to exist.  Other
	 * seeds (measured over ten: GhostTree at most 1.37x the peak live
	 * bytes, FirstFit 1.67x) keep the 2.0x bound; one in ten ended a
	 * FirstFit run above its first rounds' high-water mark. */
	const uint64_t seed = 15;
	for (size_t i = 0; i < N_KINDS; i++) {
		enum bs_alloc_kind k = kinds[i];
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct mix m = { { 0 }, { 0 } };
		uint64_t img5 = 0, tag = 1;
		h_rng_reset(seed);
		for (int j = 0; j < N_LARGE; j++)
			mix_toggle(v, &m, j, tag++);
		for (int j = 0; j < N_SMALL; j += 2)
			mix_toggle(v, &m, N_LARGE + j, tag++);
		for (int round = 1; round <= 30; round++) {
			for (int c = 0; c < 60; c++) {
				bool large = h_rand_below(10) == 0;
				int j = large ? (int)h_rand_below(N_LARGE)
					      : N_LARGE + (int)h_rand_below(N_SMALL);
				mix_toggle(v, &m, j, tag++);
				/* the image at an instant follows which large
				 * files exist: compare with the largest it was
				 * in the first 5 rounds */
				uint64_t img = summary(v).image_bytes;
				if (round <= 5 && img > img5)
					img5 = img;
			}
		}
		struct vol_summary s = summary(v);
		expect_bounded(k, "mixed", img5, s.image_bytes, s.peak_live_bytes);
		for (int j = 0; j < N_LARGE + N_SMALL; j++) {
			char name[16];
			mix_name(j, name, sizeof name);
			bool ok = m.size[j] ? file_is(v, name, m.tag[j], m.size[j])
					    : ino_of(v, name) == 0;
			CU_ASSERT(ok);
		}
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

/* ---- merging and the tail give-back, asserted to happen ---------------------- */

#define PIECE (64u << 10)

/* Files a..e of PIECE bytes each, laid out in that order. */
static void five_files(struct vol *v)
{
	char name[2] = "a";
	for (int i = 0; i < 5; i++, name[0]++)
		cp_file(v, name, 100 + (uint64_t)i, PIECE, PIECE);
}

static void freeing_between_two_free_blocks_leaves_one_free_block(void)
{
	enum bs_alloc_kind merging[] = { BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT };
	for (size_t i = 0; i < 2; i++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, merging[i], true);
		five_files(v);
		struct vol_statfs sf;
		CU_ASSERT(vol_unlink(v, ROOT, "b") == 0);
		CU_ASSERT(vol_unlink(v, ROOT, "d") == 0);
		CU_ASSERT(vol_statfs(v, &sf) == 0);   /* drains the remote-free queue */
		struct vol_summary s2 = summary(v);
		CU_ASSERT(vol_unlink(v, ROOT, "c") == 0);
		CU_ASSERT(vol_statfs(v, &sf) == 0);
		struct vol_summary s3 = summary(v);
		/* b, c and d are one block now, while mounted: c merged with
		 * both neighbours, the free space grew by c */
		CU_ASSERT_EQUAL(s3.free_bytes, s2.free_bytes + PIECE +
				(merging[i] == BS_ALLOC_FIRSTFIT ? 48 : 0));
		struct vol_summary before = s3;
		char *t;
		size_t n;
		CU_ASSERT_FATAL(vol_stats_text(v, &t, &n) == 0);
		CU_ASSERT(strstr(t, "\nfree_blocks 1\n") != NULL);
		CU_ASSERT(strstr(t, "\npeak_live_bytes ") != NULL);
		CU_ASSERT(strstr(t, "\nimage_to_live_ratio ") != NULL);
		free(t);
		CU_ASSERT(file_is(v, "a", 100, PIECE) && file_is(v, "e", 104, PIECE));
		/* the next file of the merged size fits without growing the image */
		cp_file(v, "f", 200, 3 * PIECE, 8192);
		CU_ASSERT_EQUAL(summary(v).image_bytes, before.image_bytes);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

static void freeing_the_last_files_gives_the_tail_back(void)
{
	for (size_t i = 0; i < N_KINDS; i++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, kinds[i], true);
		five_files(v);
		uint64_t full = summary(v).image_bytes;
		CU_ASSERT(vol_unlink(v, ROOT, "d") == 0);
		CU_ASSERT(vol_unlink(v, ROOT, "e") == 0);
		/* at the latest at unmount the image ends where c does */
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, kinds[i], false);
		struct vol_summary s = summary(v);
		CU_ASSERT(s.image_bytes <= full - 2 * PIECE);
		CU_ASSERT_EQUAL(s.free_bytes, 0);
		CU_ASSERT(file_is(v, "c", 102, PIECE));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

/* peak_live_bytes follows the sum of file sizes since mount. */
static void peak_live_bytes_is_the_highest_live_bytes_since_mount(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_GHOST, true);
	cp_file(v, "a", 1, 300000, 4096);
	cp_file(v, "b", 2, 200000, 4096);
	CU_ASSERT(vol_unlink(v, ROOT, "a") == 0);
	CU_ASSERT(vol_truncate(v, ino_of(v, "b"), 1000) == 0);
	struct vol_summary s = summary(v);
	CU_ASSERT_EQUAL(s.live_bytes, 1000);
	CU_ASSERT_EQUAL(s.peak_live_bytes, 500000);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_GHOST, false);
	CU_ASSERT_EQUAL(summary(v).peak_live_bytes, 1000);   /* since this mount */
	CU_ASSERT_EQUAL(vol_close(v), 0);
	bs_memdev_free(dev);
}

/* ---- power loss ----------------------------------------------------------------- */

/* The files a crash test knows: name, tag, and whether it may be gone. */
struct expect {
	const char *name;
	uint64_t tag;
	bool optional;      /* the operation's own file: before or after */
};

typedef int (*op_fn)(struct vol *v);

static int op_merge(struct vol *v)
{
	int r = vol_unlink(v, ROOT, "c");   /* between free b and free d */
	int r2 = vol_close(v);
	return r ? r : r2;
}

static int op_tail(struct vol *v)
{
	int r = vol_unlink(v, ROOT, "e");   /* the tail, with free d below it */
	int r2 = vol_close(v);
	return r ? r : r2;
}

static void crash_test(enum bs_alloc_kind k, const char *gone, op_fn op,
		       const struct expect *ex, size_t n_ex)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, k, true);
	uint8_t *snap;
	size_t snap_len;
	five_files(v);
	CU_ASSERT(vol_unlink(v, ROOT, gone) == 0);
	if (strcmp(gone, "b") == 0)
		CU_ASSERT(vol_unlink(v, ROOT, "d") == 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &snap, &snap_len) == 0);

	/* uncut: the figures of the state before and after */
	v = vopen(dev, k, false);
	struct vol_summary before = summary(v);
	bs_memdev_reset_counts(dev);
	CU_ASSERT_EQUAL(op(v), 0);
	uint64_t total = bs_memdev_writes(dev) + bs_memdev_syncs(dev);
	v = vopen(dev, k, false);
	struct vol_summary after = summary(v);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	CU_ASSERT(total > 0);

	int bad = 0;
	for (uint64_t i = 2; i <= 2 * total + 1 && bad < 3; i++) {
		uint64_t n = i / 2, keep = i % 2 ? UINT64_MAX : 0;
		CU_ASSERT_FATAL(bs_memdev_load(dev, snap, snap_len) == 0);
		v = vopen(dev, k, false);
		bs_memdev_fail_at(dev, n);
		op(v);   /* closes v, failing from the cut on */
		bs_memdev_power_cycle(dev, keep);
		v = vopen(dev, k, false);   /* reopens: fatal otherwise */
		bool ok = check_errors(v) == 0;
		bool had_op_file = false;
		for (size_t j = 0; j < n_ex; j++) {
			bool there = ino_of(v, ex[j].name) != 0;
			if (ex[j].optional && !there)
				continue;
			had_op_file |= ex[j].optional;
			ok &= file_is(v, ex[j].name, ex[j].tag, PIECE);
		}
		CU_ASSERT_EQUAL(vol_close(v), 0);
		/* the mount reclaimed what the cut leaked: the second mount finds
		 * nothing, and the space adds up to before's or after's */
		v = vopen(dev, k, false);
		struct vol_counters c;
		vol_get_counters(v, &c);
		struct vol_summary s = summary(v), *want = had_op_file ? &before : &after;
		ok &= c.leaked_bytes_reclaimed == 0 && check_errors(v) == 0;
		if (k != BS_ALLOC_LINEAR || !had_op_file)
			ok &= s.free_bytes + s.backing_bytes == want->free_bytes + want->backing_bytes;
		ok &= s.image_bytes <= want->image_bytes;
		CU_ASSERT_EQUAL(vol_close(v), 0);
		if (!ok) {
			printf("\n  %s: cut at %llu of %llu (keep %d): image %llu free %llu, want %llu %llu",
			       bs_alloc_kind_name(k), (unsigned long long)n,
			       (unsigned long long)total, keep != 0,
			       (unsigned long long)s.image_bytes, (unsigned long long)s.free_bytes,
			       (unsigned long long)want->image_bytes,
			       (unsigned long long)want->free_bytes);
			CU_FAIL("a cut lost a file or space");
			bad++;
		}
	}
	free(snap);
	bs_memdev_free(dev);
}

static void power_loss_during_a_merge_loses_no_file_and_no_space(void)
{
	static const struct expect ex[] = {
		{ "a", 100, false }, { "c", 102, true }, { "e", 104, false },
	};
	for (size_t i = 0; i < N_KINDS; i++)
		crash_test(kinds[i], "b", op_merge, ex, 3);
}

static void power_loss_during_a_tail_give_back_loses_no_file_and_no_space(void)
{
	static const struct expect ex[] = {
		{ "a", 100, false }, { "b", 101, false }, { "c", 102, false },
		{ "e", 104, true },
	};
	for (size_t i = 0; i < N_KINDS; i++)
		crash_test(kinds[i], "d", op_tail, ex, 4);
}

static const struct h_test tests[] = {
	H_TEST(rewriting_three_files_thirty_times_keeps_the_image_bounded),
	H_TEST(a_seeded_mix_of_small_and_large_files_keeps_the_image_bounded),
	H_TEST(freeing_between_two_free_blocks_leaves_one_free_block),
	H_TEST(freeing_the_last_files_gives_the_tail_back),
	H_TEST(peak_live_bytes_is_the_highest_live_bytes_since_mount),
	H_TEST(power_loss_during_a_merge_loses_no_file_and_no_space),
	H_TEST(power_loss_during_a_tail_give_back_loses_no_file_and_no_space),
};

H_MAIN("space", tests)
