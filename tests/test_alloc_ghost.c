/*
 * test_alloc_ghost.c — GhostTree: the seed's own test list in C, then the
 * exact on-disk bytes, crafted bad images, check(), reclaim(),
 * grow_in_place(), a randomized run against a model and power loss around
 * the open-time rebuild and the tree-mutating paths.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "harness.h"
#include "util.h"

/* ---- fixtures ----------------------------------------------------------------- */

/*
 * This suite is the seed's tests and the seed's exact bytes: every
 * allocator here runs in seed-exact mode (alloc.h).  What bstackfs does
 * beyond the seed (merging freed blocks while mounted, front splits, the
 * tail give-back) is tested in test_space.c and, for every allocator, in
 * test_alloc_harness.c.
 */
static int seed_create(struct bstack *bs, struct bs_alloc **a)
{
	int r = bs_ghost_create(bs, a);
	if (!r)
		bs_alloc_set_seed_exact(*a, true);
	return r;
}

static int seed_open(struct bstack *bs, struct bs_alloc **a)
{
	int r = bs_ghost_open(bs, a);
	if (!r)
		bs_alloc_set_seed_exact(*a, true);
	return r;
}

struct fx {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
};

static void fx_fresh(struct fx *f)
{
	memset(f, 0, sizeof *f);
	f->dev = bs_memdev_new();
	CU_ASSERT_FATAL(f->dev != NULL);
	f->bs = h_stack_create(f->dev);
	CU_ASSERT_FATAL(seed_create(f->bs, &f->a) == 0);
}

static void fx_shut(struct fx *f)
{
	if (f->a)
		f->a->ops->destroy(f->a);
	if (f->bs)
		bstack_close(f->bs);
	f->a = NULL;
	f->bs = NULL;
}

/* Close and open again on the same device; returns bs_ghost_open's result
 * (the bstack must open). */
static int fx_reopen(struct fx *f)
{
	fx_shut(f);
	f->bs = h_stack_open(f->dev);
	return seed_open(f->bs, &f->a);
}

static void fx_free(struct fx *f)
{
	fx_shut(f);
	bs_memdev_free(f->dev);
	f->dev = NULL;
}

static uint64_t plen(struct fx *f)
{
	return bstack_len(f->bs);
}

static int check(struct fx *f);

static void fill(struct fx *f, struct bs_slice s, uint8_t byte)
{
	uint8_t *b = malloc(s.len);
	memset(b, byte, s.len);
	CU_ASSERT(bstack_set(f->bs, s.off, b, s.len) == 0);
	free(b);
}

/* All n bytes at off equal byte. */
static bool all_eq(struct fx *f, uint64_t off, uint64_t n, uint8_t byte)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = bstack_get(f->bs, off, b, n) == 0;
	for (uint64_t i = 0; ok && i < n; i++)
		ok = b[i] == byte;
	free(b);
	return ok;
}

static struct bs_slice A(struct fx *f, uint64_t len)
{
	struct bs_slice s = { 1, 1 };
	CU_ASSERT_FATAL(bs_alloc(f->a, len, &s) == 0);
	return s;
}

static void D(struct fx *f, struct bs_slice s)
{
	CU_ASSERT(bs_dealloc(f->a, s) == 0);
}

/* ---- the seed's tests ------------------------------------------------------------ */

static void alloc_returns_zeroed_slice(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 64);
	CU_ASSERT_EQUAL(s.len, 64);
	CU_ASSERT(all_eq(&f, s.off, 64, 0));
	fx_free(&f);
}

static void alloc_zero_len_returns_null_slice(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 0);
	CU_ASSERT_EQUAL(s.len, 0);
	CU_ASSERT_EQUAL(s.off, 0);
	fx_free(&f);
}

static void dealloc_zero_len_is_noop(void)
{
	struct fx f;
	fx_fresh(&f);
	uint64_t before = plen(&f);
	bs_memdev_reset_counts(f.dev);
	D(&f, A(&f, 0));
	CU_ASSERT_EQUAL(plen(&f), before);
	CU_ASSERT_EQUAL(bs_memdev_writes(f.dev), 0);   /* the null slice costs no I/O */
	fx_free(&f);
}

static void dealloc_tail_shrinks_stack(void)
{
	struct fx f;
	fx_fresh(&f);
	uint64_t before = plen(&f);
	struct bs_slice s = A(&f, 64);
	CU_ASSERT(plen(&f) > before);
	D(&f, s);
	CU_ASSERT_EQUAL(plen(&f), before);
	fx_free(&f);
}

static void dealloc_nontail_reuses_on_next_alloc(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), b = A(&f, 64);
	D(&f, a);
	uint64_t len = plen(&f);
	struct bs_slice c = A(&f, 64);
	CU_ASSERT_EQUAL(c.off, a.off);
	CU_ASSERT_EQUAL(plen(&f), len);
	D(&f, c);
	D(&f, b);
	fx_free(&f);
}

static void freed_block_is_zeroed(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), b = A(&f, 64);
	fill(&f, a, 0xAA);
	D(&f, a);
	/* the node occupies the first 32 bytes; the rest must be zero */
	CU_ASSERT(all_eq(&f, a.off + 32, 32, 0));
	D(&f, b);
	fx_free(&f);
}

static void all_pointers_are_32_byte_aligned(void)
{
	struct fx f;
	struct bs_slice s[16];
	fx_fresh(&f);
	for (int i = 0; i < 16; i++) {
		s[i] = A(&f, (uint64_t)i * 7 + 1);
		CU_ASSERT_EQUAL(s[i].off % 32, 16);   /* 16 + off is 32-aligned on disk */
	}
	for (int i = 0; i < 16; i++)
		D(&f, s[i]);
	fx_free(&f);
}

static void alloc_rounds_up_to_min_alloc(void)
{
	struct fx f;
	fx_fresh(&f);
	uint64_t before = plen(&f);
	struct bs_slice s = A(&f, 1);
	CU_ASSERT_EQUAL(plen(&f) - before, 32);
	D(&f, s);
	fx_free(&f);
}

static void large_free_block_is_split(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 128), anchor = A(&f, 32);
	D(&f, a);
	struct bs_slice b = A(&f, 32);
	CU_ASSERT_EQUAL(b.off, a.off + 96);   /* the tail of the block; remainder in front */
	struct bs_slice c = A(&f, 96);
	CU_ASSERT_EQUAL(c.off, a.off);
	D(&f, b);
	D(&f, c);
	D(&f, anchor);
	fx_free(&f);
}

static void realloc_to_zero_deallocates(void)
{
	struct fx f;
	struct bs_slice z;
	fx_fresh(&f);
	uint64_t before = plen(&f);
	CU_ASSERT(bs_realloc(f.a, A(&f, 64), 0, &z) == 0);
	CU_ASSERT_EQUAL(z.len, 0);
	CU_ASSERT_EQUAL(z.off, 0);
	CU_ASSERT_EQUAL(plen(&f), before);
	fx_free(&f);
}

static void realloc_same_aligned_size_preserves_data(void)
{
	struct fx f;
	struct bs_slice s2;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 32);
	fill(&f, s, 0x5A);
	CU_ASSERT(bs_realloc(f.a, s, 16, &s2) == 0);
	CU_ASSERT_EQUAL(s2.off, s.off);
	CU_ASSERT_EQUAL(s2.len, 16);
	CU_ASSERT(all_eq(&f, s.off, 16, 0x5A));
	CU_ASSERT(all_eq(&f, s.off + 16, 16, 0));   /* the gap was zeroed */
	D(&f, s2);
	fx_free(&f);
}

static void realloc_shrink_tail_discards(void)
{
	struct fx f;
	struct bs_slice s2;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 128);
	fill(&f, s, 0xBB);
	CU_ASSERT(bs_realloc(f.a, s, 32, &s2) == 0);
	CU_ASSERT_EQUAL(s2.off, s.off);
	CU_ASSERT_EQUAL(plen(&f), s.off + 32);
	CU_ASSERT(all_eq(&f, s.off, 32, 0xBB));
	D(&f, s2);
	fx_free(&f);
}

static void realloc_shrink_nontail_inserts_remainder(void)
{
	struct fx f;
	struct bs_slice s2;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 128), anchor = A(&f, 32);
	fill(&f, s, 0xCC);
	uint64_t len = plen(&f);
	CU_ASSERT(bs_realloc(f.a, s, 32, &s2) == 0);
	CU_ASSERT_EQUAL(s2.off, s.off);
	CU_ASSERT_EQUAL(plen(&f), len);
	struct bs_slice r = A(&f, 96);
	CU_ASSERT_EQUAL(r.off, s.off + 32);
	CU_ASSERT(all_eq(&f, r.off, 96, 0));
	CU_ASSERT(all_eq(&f, s.off, 32, 0xCC));
	D(&f, s2);
	D(&f, r);
	D(&f, anchor);
	fx_free(&f);
}

static void realloc_grow_tail_extends_in_place(void)
{
	struct fx f;
	struct bs_slice s2;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 32);
	fill(&f, s, 0xDD);
	CU_ASSERT(bs_realloc(f.a, s, 96, &s2) == 0);
	CU_ASSERT_EQUAL(s2.off, s.off);
	CU_ASSERT(all_eq(&f, s.off, 32, 0xDD));
	CU_ASSERT(all_eq(&f, s.off + 32, 64, 0));
	D(&f, s2);
	fx_free(&f);
}

static void realloc_grow_nontail_copies_data(void)
{
	struct fx f;
	struct bs_slice s2;
	struct bs_alloc_stats st;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 32), anchor = A(&f, 32);
	fill(&f, s, 0xEE);
	CU_ASSERT(bs_realloc(f.a, s, 96, &s2) == 0);
	CU_ASSERT(s2.off != anchor.off);
	CU_ASSERT(s2.off != s.off);
	CU_ASSERT(all_eq(&f, s2.off, 32, 0xEE));
	CU_ASSERT(all_eq(&f, s2.off + 32, 64, 0));
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.reallocs, 1);
	CU_ASSERT_EQUAL(st.reallocs_moved, 1);
	CU_ASSERT_EQUAL(st.reallocs_in_place, 0);
	CU_ASSERT_EQUAL(st.bytes_copied, 32);
	CU_ASSERT_EQUAL(st.allocs, 2);     /* the move's own alloc/free are not counted */
	CU_ASSERT_EQUAL(st.deallocs, 0);
	D(&f, s2);
	D(&f, anchor);
	fx_free(&f);
}

static void dealloc_misaligned_ptr_returns_error(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 64);
	CU_ASSERT_EQUAL(bs_dealloc(f.a, (struct bs_slice){ s.off + 1, 32 }), -EINVAL);
	CU_ASSERT_EQUAL(bs_dealloc(f.a, (struct bs_slice){ 16, 32 }), -EINVAL);  /* before the arena */
	CU_ASSERT_EQUAL(bs_dealloc(f.a, (struct bs_slice){ s.off, 96 }), -EINVAL); /* past the end */
	CU_ASSERT_EQUAL(bs_dealloc(f.a, (struct bs_slice){ s.off, UINT64_MAX }), -EINVAL);
	CU_ASSERT_EQUAL(check(&f), 0);
	D(&f, s);
	fx_free(&f);
}

static void realloc_misaligned_ptr_returns_error(void)
{
	struct fx f;
	struct bs_slice o;
	fx_fresh(&f);
	struct bs_slice s = A(&f, 64);
	CU_ASSERT_EQUAL(bs_realloc(f.a, (struct bs_slice){ s.off + 1, 32 }, 64, &o), -EINVAL);
	CU_ASSERT_EQUAL(bs_realloc(f.a, (struct bs_slice){ 16, 32 }, 64, &o), -EINVAL);
	D(&f, s);
	fx_free(&f);
}

static void alloc_bulk_contiguous(void)
{
	struct fx f;
	const uint64_t lens[] = { 32, 64, 32 };
	struct bs_slice s[3];
	fx_fresh(&f);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 3, s) == 0);
	CU_ASSERT_EQUAL(s[0].len, 32);
	CU_ASSERT_EQUAL(s[1].len, 64);
	CU_ASSERT_EQUAL(s[2].len, 32);
	CU_ASSERT_EQUAL(s[1].off, s[0].off + 32);
	CU_ASSERT_EQUAL(s[2].off, s[1].off + 64);
	for (int i = 0; i < 3; i++)
		D(&f, s[i]);
	fx_free(&f);
}

static void alloc_bulk_with_zeros_returns_null_for_zeros(void)
{
	struct fx f;
	const uint64_t lens[] = { 0, 32, 0 };
	struct bs_slice s[3];
	fx_fresh(&f);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 3, s) == 0);
	CU_ASSERT(s[0].off == 0 && s[0].len == 0);
	CU_ASSERT(s[2].off == 0 && s[2].len == 0);
	CU_ASSERT_EQUAL(s[1].len, 32);
	for (int i = 0; i < 3; i++)
		D(&f, s[i]);
	fx_free(&f);
}

static void dealloc_bulk_merges_adjacent_slices(void)
{
	struct fx f;
	const uint64_t lens[] = { 64, 64, 64 };
	struct bs_slice s[3];
	fx_fresh(&f);
	uint64_t before = plen(&f);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 3, s) == 0);
	bs_memdev_reset_counts(f.dev);
	CU_ASSERT(bs_dealloc_bulk(f.a, s, 3) == 0);
	CU_ASSERT_EQUAL(plen(&f), before);
	CU_ASSERT_EQUAL(bs_memdev_syncs(f.dev), 1);   /* one discard for all three */
	fx_free(&f);
}

static void coalesce_on_reopen_merges_adjacent_free_blocks(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), b = A(&f, 64), anchor = A(&f, 32);
	D(&f, a);
	D(&f, b);
	CU_ASSERT_FATAL(fx_reopen(&f) == 0);
	struct bs_slice c = A(&f, 128);
	CU_ASSERT_EQUAL(c.off, a.off);
	CU_ASSERT(all_eq(&f, c.off, 128, 0));   /* the seam node was zeroed */
	D(&f, c);
	D(&f, anchor);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

static void data_survives_reopen(void)
{
	/* on a real file this time */
	char *path = h_tmp_path("ghost-reopen");
	struct bstack *bs;
	struct bs_alloc *a;
	struct bs_slice s;
	uint8_t buf[64];
	CU_ASSERT_FATAL(bstack_open_path(path, true, &bs) == 0);
	CU_ASSERT_FATAL(seed_create(bs, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(a, 64, &s) == 0);
	memset(buf, 0xAB, 64);
	CU_ASSERT(bstack_set(bs, s.off, buf, 64) == 0);
	a->ops->destroy(a);
	bstack_close(bs);

	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT_FATAL(seed_open(bs, &a) == 0);
	memset(buf, 0, 64);
	CU_ASSERT(bstack_get(bs, s.off, buf, 64) == 0);
	for (int i = 0; i < 64; i++)
		CU_ASSERT_EQUAL_FATAL(buf[i], 0xAB);
	CU_ASSERT(bs_dealloc(a, s) == 0);
	CU_ASSERT_EQUAL(bstack_len(bs), 48);
	a->ops->destroy(a);
	bstack_close(bs);
	free(path);
}

static void new_rejects_partial_header(void)
{
	struct fx f;
	memset(&f, 0, sizeof f);
	f.dev = bs_memdev_new();
	f.bs = h_stack_create(f.dev);
	CU_ASSERT(bstack_extend(f.bs, 4, NULL) == 0);
	CU_ASSERT_EQUAL(seed_open(f.bs, &f.a), -EUCLEAN);
	f.a = NULL;
	fx_free(&f);
}

/* ---- the seed's concurrent tests ------------------------------------------------- */

struct live_set {
	pthread_mutex_t mu;
	uint64_t off[256];
	int n;
};

static bool live_add(struct live_set *l, uint64_t off)
{
	bool ok = true;
	pthread_mutex_lock(&l->mu);
	for (int i = 0; i < l->n; i++)
		if (l->off[i] == off)
			ok = false;
	if (ok && l->n < 256)
		l->off[l->n++] = off;
	pthread_mutex_unlock(&l->mu);
	return ok;
}

static void live_del(struct live_set *l, uint64_t off)
{
	pthread_mutex_lock(&l->mu);
	for (int i = 0; i < l->n; i++)
		if (l->off[i] == off) {
			l->off[i] = l->off[--l->n];
			break;
		}
	pthread_mutex_unlock(&l->mu);
}

struct tctx {
	struct fx *f;
	struct live_set *live;
	int tid;
	int failures;
};

static bool rw_check(struct fx *f, struct bs_slice s, uint8_t tag)
{
	uint8_t buf[128], got[128];
	memset(buf, tag, s.len);
	if (bstack_set(f->bs, s.off, buf, s.len) || bstack_get(f->bs, s.off, got, s.len))
		return false;
	return memcmp(buf, got, s.len) == 0;
}

static void *t_alloc_dealloc(void *p)
{
	struct tctx *t = p;
	for (int i = 0; i < 200; i++) {
		struct bs_slice s;
		if (bs_alloc(t->f->a, 32, &s)) {
			t->failures++;
			continue;
		}
		if (!live_add(t->live, s.off))
			t->failures++;
		if (!rw_check(t->f, s, (uint8_t)t->tid))
			t->failures++;
		live_del(t->live, s.off);
		if (bs_dealloc(t->f->a, s))
			t->failures++;
	}
	return NULL;
}

static void *t_realloc(void *p)
{
	struct tctx *t = p;
	struct bs_slice s;
	uint8_t buf[96];
	if (bs_alloc(t->f->a, 32, &s) || !rw_check(t->f, s, (uint8_t)t->tid)) {
		t->failures++;
		return NULL;
	}
	for (int i = 0; i < 150; i++) {
		if (bs_realloc(t->f->a, s, 96, &s) || bstack_get(t->f->bs, s.off, buf, 96)) {
			t->failures++;
			return NULL;
		}
		for (int j = 0; j < 96; j++)
			if (buf[j] != (j < 32 ? t->tid : 0))
				t->failures++;
		if (bs_realloc(t->f->a, s, 32, &s) || bstack_get(t->f->bs, s.off, buf, 32)) {
			t->failures++;
			return NULL;
		}
		for (int j = 0; j < 32; j++)
			if (buf[j] != t->tid)
				t->failures++;
	}
	if (bs_dealloc(t->f->a, s))
		t->failures++;
	return NULL;
}

static void *t_bulk(void *p)
{
	struct tctx *t = p;
	const uint64_t lens[] = { 32, 64, 32 };
	for (int i = 0; i < 100; i++) {
		struct bs_slice s[3];
		if (bs_alloc_bulk(t->f->a, lens, 3, s)) {
			t->failures++;
			continue;
		}
		for (int j = 0; j < 3; j++) {
			if (!live_add(t->live, s[j].off))
				t->failures++;
			if (!rw_check(t->f, s[j], (uint8_t)t->tid))
				t->failures++;
		}
		for (int j = 0; j < 3; j++)
			live_del(t->live, s[j].off);
		if (bs_dealloc_bulk(t->f->a, s, 3))
			t->failures++;
	}
	return NULL;
}

static void run_threads(void *(*fn)(void *), int n)
{
	struct fx f;
	struct live_set live = { .n = 0 };
	pthread_t th[8];
	struct tctx t[8];
	fx_fresh(&f);
	pthread_mutex_init(&live.mu, NULL);
	for (int i = 0; i < n; i++) {
		t[i] = (struct tctx){ &f, &live, i + 1, 0 };
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, fn, &t[i]) == 0);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(t[i].failures, 0);
	}
	CU_ASSERT_EQUAL(check(&f), 0);
	CU_ASSERT_FATAL(fx_reopen(&f) == 0);
	CU_ASSERT_EQUAL(check(&f), 0);
	pthread_mutex_destroy(&live.mu);
	fx_free(&f);
}

static void concurrent_alloc_dealloc_no_live_duplicates(void)
{
	run_threads(t_alloc_dealloc, 8);
}

static void concurrent_realloc_hammers_tail_paths(void)
{
	run_threads(t_realloc, 6);
}

static void concurrent_alloc_bulk_dealloc_bulk_no_live_duplicates(void)
{
	run_threads(t_bulk, 6);
}

/* ---- check() plumbing -------------------------------------------------------------- */

struct msgs {
	char text[4096];
	int n;
};

static void collect(void *ctx, const char *msg)
{
	struct msgs *m = ctx;
	size_t used = strlen(m->text);
	m->n++;
	snprintf(m->text + used, sizeof m->text - used, "%s\n", msg);
}

static int check(struct fx *f)
{
	struct msgs m = { .n = 0 };
	int r = bs_alloc_check(f->a, collect, &m);
	if (r != 0)
		fprintf(stderr, "check: %d\n%s", r, m.text);
	return r;
}

/* ---- exact bytes ------------------------------------------------------------------- */

static void put_node(uint8_t *p, uint64_t off, uint64_t size, int8_t bf, uint8_t h,
		     uint64_t l, uint64_t r)
{
	memset(p + off, 0, 32);
	le64_put(p + off, size);
	p[off + 8] = (uint8_t)bf;
	p[off + 9] = h;
	le64_put(p + off + 16, l);
	le64_put(p + off + 24, r);
}

static void expect_file(struct fx *f, const uint8_t *payload, size_t n)
{
	uint8_t *img;
	size_t len;
	uint8_t hdr[16] = "BSTK\x00\x01\x08\x00";
	le64_put(hdr + 8, n);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f->dev, &img, &len) == 0);
	CU_ASSERT_EQUAL_FATAL(len, 16 + n);
	CU_ASSERT(memcmp(img, hdr, 16) == 0);
	for (size_t i = 0; i < n; i++)
		if (img[16 + i] != payload[i]) {
			fprintf(stderr, "payload byte %zu: %02x, expected %02x\n", i,
				img[16 + i], payload[i]);
			CU_FAIL("image differs from the hand-computed bytes");
			break;
		}
	free(img);
}

static void image_bytes_match_the_seed_layout(void)
{
	struct fx f;
	uint8_t want[240] = { 0 };
	fx_fresh(&f);
	const char *res = "reserved bytes of the caller!!!";   /* 31 + NUL = 32 */
	CU_ASSERT(bstack_set(f.bs, 0, res, 32) == 0);
	struct bs_slice a = A(&f, 64), b = A(&f, 32), c = A(&f, 32), e = A(&f, 32),
			last = A(&f, 20);
	CU_ASSERT_EQUAL(a.off, 48);
	CU_ASSERT_EQUAL(last.off, 208);
	fill(&f, b, 0xBB);
	fill(&f, last, 0xF0);
	D(&f, a);   /* root (64, 48) */
	D(&f, c);   /* (32, 144) to its left */
	D(&f, e);   /* (32, 176): left-right case, rotates to the root */

	memcpy(want, res, 32);
	memcpy(want + 32, "ALGT\x00\x01\x02\x00", 8);
	le64_put(want + 40, 176);
	put_node(want, 48, 64, 0, 1, 0, 0);
	memset(want + 112, 0xBB, 32);
	put_node(want, 144, 32, 0, 1, 0, 0);
	put_node(want, 176, 32, 0, 2, 144, 48);
	memset(want + 208, 0xF0, 20);
	expect_file(&f, want, sizeof want);
	CU_ASSERT_EQUAL(check(&f), 0);

	/* Reopen: 144 and 176 merge (176's node zeroed), the tree is rebuilt
	 * over (64, 48) < (64, 144): root 144 with 48 on its left. */
	CU_ASSERT_FATAL(fx_reopen(&f) == 0);
	le64_put(want + 40, 144);
	put_node(want, 144, 64, -1, 2, 48, 0);
	memset(want + 176, 0, 32);
	expect_file(&f, want, sizeof want);
	CU_ASSERT_EQUAL(check(&f), 0);

	/* Best fit on a tie takes the lower address, whole (no split). */
	struct bs_slice g = A(&f, 64);
	CU_ASSERT_EQUAL(g.off, 48);
	CU_ASSERT(all_eq(&f, 48, 64, 0));
	fx_free(&f);
}

static void fresh_image_is_the_48_byte_header(void)
{
	struct fx f;
	uint8_t want[48] = { 0 };
	fx_fresh(&f);
	memcpy(want + 32, "ALGT\x00\x01\x02\x00", 8);
	expect_file(&f, want, sizeof want);
	CU_ASSERT_EQUAL(f.a->reserved_len, 32);
	/* an empty stack opened (not created) is initialised the same way */
	fx_free(&f);
	f.dev = bs_memdev_new();
	f.bs = h_stack_create(f.dev);
	CU_ASSERT_FATAL(seed_open(f.bs, &f.a) == 0);
	expect_file(&f, want, sizeof want);
	fx_free(&f);
}

/* ---- crafted images --------------------------------------------------------------- */

static void img_base(uint8_t *p, size_t n, uint64_t root)
{
	memset(p, 0, n);
	memcpy(p + 32, "ALGT\x00\x01\x02\x00", 8);
	le64_put(p + 40, root);
}

/* Load payload p into a new device and open it as GhostTree. */
static int open_img(struct fx *f, const uint8_t *p, size_t n)
{
	uint8_t *img = malloc(16 + n);
	memcpy(img, "BSTK\x00\x01\x08\x00", 8);
	le64_put(img + 8, n);
	memcpy(img + 16, p, n);
	memset(f, 0, sizeof *f);
	f->dev = bs_memdev_new();
	CU_ASSERT_FATAL(bs_memdev_load(f->dev, img, 16 + n) == 0);
	free(img);
	f->bs = h_stack_open(f->dev);
	int r = seed_open(f->bs, &f->a);
	if (r)
		f->a = NULL;
	return r;
}

static void open_refuses_a_truncated_bstack_header(void)
{
	struct fx f = { 0 };
	struct bs_io *io;
	f.dev = bs_memdev_new();
	CU_ASSERT_FATAL(bs_memdev_load(f.dev, "BSTK\x00\x01\x08\x00\x30", 9) == 0);
	CU_ASSERT_FATAL(bs_io_mem_open(f.dev, &io) == 0);
	CU_ASSERT(bstack_open(io, &f.bs) < 0);
	f.bs = NULL;
	fx_free(&f);
}

static void open_refuses_every_partial_header_length(void)
{
	uint8_t p[48];
	for (size_t n = 1; n < 48; n++) {
		struct fx f;
		img_base(p, sizeof p, 0);
		CU_ASSERT_EQUAL(open_img(&f, p, n), -EUCLEAN);
		fx_free(&f);
	}
}

static void open_refuses_a_wrong_magic(void)
{
	uint8_t p[48];
	struct fx f;
	img_base(p, sizeof p, 0);
	memcpy(p + 32, "ALFF\x00\x01\x01\x00", 8);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EILSEQ);
	fx_free(&f);
	img_base(p, sizeof p, 0);
	p[37] = 2;   /* ALGT 0.2: a version we do not know */
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
	img_base(p, sizeof p, 0);
	p[38] = 9;   /* a later patch of 0.1 is accepted */
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), 0);
	fx_free(&f);
}

static void open_refuses_a_root_outside_the_payload(void)
{
	uint8_t p[112];
	const uint64_t roots[] = { 1000016, 16, 40, 112, 80 + 64 };
	for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
		struct fx f;
		img_base(p, sizeof p, roots[i]);
		CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
		fx_free(&f);
	}
}

static void open_refuses_a_cycle_in_the_tree(void)
{
	uint8_t p[112];
	struct fx f;
	/* left cycle: 80 -> 48 -> 80 */
	img_base(p, sizeof p, 80);
	put_node(p, 80, 32, -1, 2, 48, 0);
	put_node(p, 48, 32, -1, 1, 80, 0);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
	/* right self-loop: a walk keyed on stack depth alone would spin */
	img_base(p, sizeof p, 48);
	put_node(p, 48, 32, 0, 1, 0, 48);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
}

static void open_refuses_a_node_with_an_impossible_size(void)
{
	uint8_t p[112];
	const uint64_t sizes[] = { 1ULL << 62, 40, 16, 96 /* runs past the end */, UINT64_MAX };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		struct fx f;
		img_base(p, sizeof p, 48);
		put_node(p, 48, 32, 1, 2, 0, 80);
		put_node(p, 80, sizes[i], 0, 1, 0, 0);
		CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
		fx_free(&f);
	}
}

static void open_refuses_a_misaligned_node_pointer(void)
{
	uint8_t p[112];
	struct fx f;
	img_base(p, sizeof p, 49);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
	img_base(p, sizeof p, 48);
	put_node(p, 48, 32, -1, 2, 81, 0);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
}

static void open_refuses_overlapping_free_blocks(void)
{
	uint8_t p[112];
	struct fx f;
	img_base(p, sizeof p, 48);
	put_node(p, 48, 64, 1, 2, 0, 80);   /* [48, 112) contains 80 */
	put_node(p, 80, 32, 0, 1, 0, 0);
	CU_ASSERT_EQUAL(open_img(&f, p, sizeof p), -EUCLEAN);
	fx_free(&f);
}

static void open_pads_a_misaligned_tail(void)
{
	uint8_t p[88];
	struct fx f;
	img_base(p, sizeof p, 0);
	CU_ASSERT_EQUAL_FATAL(open_img(&f, p, sizeof p), 0);
	CU_ASSERT_EQUAL(plen(&f), 112);
	CU_ASSERT_EQUAL(check(&f), 0);
	struct bs_slice s = A(&f, 32);
	CU_ASSERT_EQUAL(s.off, 112);
	fx_free(&f);
}

static void open_tolerates_a_shared_node_and_a_zeroed_seam(void)
{
	/* What torn writes can leave: node 112 reachable from two parents,
	 * and a zeroed (size 0) node still linked.  Open must succeed, each
	 * block counted once, and the image check clean. */
	uint8_t p[240];
	struct fx f;
	struct bs_alloc_stats st;
	img_base(p, sizeof p, 176);
	put_node(p, 176, 32, 0, 3, 48, 208);
	put_node(p, 48, 32, 1, 2, 0, 112);
	put_node(p, 112, 32, 0, 1, 0, 80);
	memset(p + 80, 0, 32);                    /* the seam */
	put_node(p, 208, 32, -1, 2, 112, 0);
	p[150] = 0x77;                            /* a live byte at 144 */
	CU_ASSERT_EQUAL_FATAL(open_img(&f, p, sizeof p), 0);
	CU_ASSERT_EQUAL(check(&f), 0);
	bs_alloc_stats(f.a, &st);
	/* 48 (+ the seam, which is a leak until reclaim) and 112; 176 + 208 merged */
	CU_ASSERT_EQUAL(st.free_blocks, 3);
	CU_ASSERT_EQUAL(st.free_bytes, 32 + 32 + 64);
	CU_ASSERT(all_eq(&f, 150, 1, 0x77));
	/* the caller knows its one live slice: the seam comes back and merges */
	uint64_t got;
	struct bs_slice live[] = { { 144, 32 } };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 1, &got) == 0);
	CU_ASSERT_EQUAL(got, 32);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.free_blocks, 2);
	CU_ASSERT_EQUAL(st.free_bytes, 96 + 64);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

/* ---- check() on corruption -------------------------------------------------------- */

/* The image of image_bytes_match_the_seed_layout before reopen: root 176,
 * left 144, right 48; live 112 (0xBB) and 208. */
static void healthy(struct fx *f)
{
	fx_fresh(f);
	struct bs_slice a = A(f, 64), b = A(f, 32), c = A(f, 32), e = A(f, 32);
	A(f, 20);
	fill(f, b, 0xBB);
	D(f, a);
	D(f, c);
	D(f, e);
	CU_ASSERT_EQUAL(check(f), 0);
}

static void corrupt_and_check(uint64_t off, const void *bytes, size_t n, const char *want)
{
	struct fx f;
	struct msgs m = { .n = 0 };
	healthy(&f);
	CU_ASSERT_FATAL(bstack_set(f.bs, off, bytes, n) == 0);
	int r = bs_alloc_check(f.a, collect, &m);
	CU_ASSERT(r > 0);
	CU_ASSERT_EQUAL(r, m.n);
	if (!strstr(m.text, want)) {
		fprintf(stderr, "wanted \"%s\" in:\n%s", want, m.text);
		CU_FAIL("check did not name the violation");
	}
	fx_free(&f);
}

static void check_reports_each_crafted_corruption(void)
{
	uint8_t b8[8];
	uint8_t one = 1, h = 5;
	int8_t bf = 1;
	corrupt_and_check(48 + 40, &one, 1, "not zero");            /* free byte */
	corrupt_and_check(176 + 9, &h, 1, "stored height");
	corrupt_and_check(176 + 8, &bf, 1, "stored balance");
	le64_put(b8, 40);
	corrupt_and_check(144, b8, 8, "impossible size");
	le64_put(b8, 1ULL << 60);
	corrupt_and_check(48, b8, 8, "impossible size");
	le64_put(b8, 176);
	corrupt_and_check(144 + 16, b8, 8, "cycle");                  /* 144.left = root */
	le64_put(b8, 144);
	corrupt_and_check(48 + 24, b8, 8, "reachable twice");         /* 48.right = 144 */
	le64_put(b8, 145);
	corrupt_and_check(144 + 24, b8, 8, "misaligned");
	le64_put(b8, 1 << 20);
	corrupt_and_check(40, b8, 8, "outside the arena");            /* root */
	le64_put(b8, 64);
	corrupt_and_check(144, b8, 8, "overlap");                     /* 144 covers 176 */
	corrupt_and_check(144, b8, 8, "order");                       /* (64,144) left of (32,176) */
	corrupt_and_check(32, "ALGX", 4, "magic");
}

static void check_never_loops_on_a_long_chain(void)
{
	/* a right-leaning chain deeper than the guard: reported, not walked forever */
	size_t n = 48 + 200 * 32;
	uint8_t *p = calloc(1, n);
	struct fx f;
	img_base(p, n, 48);
	for (uint64_t i = 0; i < 200; i++)
		put_node(p, 48 + 32 * i, 32, 1, (uint8_t)(200 - i), 0,
			 i + 1 < 200 ? 48 + 32 * (i + 1) : 0);
	CU_ASSERT_EQUAL(open_img(&f, p, n), -EUCLEAN);   /* deeper than 128 */
	fx_free(&f);
	/* 100 deep is walkable: open rebuilds it balanced */
	img_base(p, n, 48);
	for (uint64_t i = 0; i < 100; i++)
		put_node(p, 48 + 32 * 2 * i, 32, 1, (uint8_t)(100 - i), 0,
			 i + 1 < 100 ? 48 + 64 * (i + 1) : 0);
	CU_ASSERT_EQUAL_FATAL(open_img(&f, p, n), 0);
	CU_ASSERT_EQUAL(check(&f), 0);
	struct bs_alloc_stats st;
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.free_blocks, 100);
	CU_ASSERT(st.extra[0].value <= 8);   /* tree_height of a balanced 100 */
	fx_free(&f);
	free(p);
}

/* ---- stats, extent, grow_in_place, reclaim ------------------------------------------- */

static uint64_t extra(const struct bs_alloc_stats *st, const char *key)
{
	for (int i = 0; i < st->n_extra; i++)
		if (strcmp(st->extra[i].key, key) == 0)
			return st->extra[i].value;
	CU_FAIL("missing extra stat");
	return UINT64_MAX;
}

static void stats_report_the_tree_and_the_counters(void)
{
	struct fx f;
	struct bs_alloc_stats st;
	healthy(&f);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_STRING_EQUAL(st.name, "ghost");
	CU_ASSERT_STRING_EQUAL(st.magic, "ALGT-0.1.2");
	CU_ASSERT_EQUAL(st.reserved_bytes, 32);
	CU_ASSERT_EQUAL(st.arena_start, 48);
	CU_ASSERT_EQUAL(st.arena_bytes, 240 - 48);
	CU_ASSERT_EQUAL(st.free_blocks, 3);
	CU_ASSERT_EQUAL(st.free_bytes, 128);
	CU_ASSERT_EQUAL(st.largest_free, 64);
	CU_ASSERT_EQUAL(st.overhead_bytes, 48);
	CU_ASSERT_EQUAL(extra(&st, "tree_height"), 2);
	CU_ASSERT_EQUAL(extra(&st, "tree_nodes"), 3);
	CU_ASSERT_EQUAL(st.allocs, 5);
	CU_ASSERT_EQUAL(st.deallocs, 3);
	CU_ASSERT_EQUAL(st.tail_discards, 0);
	CU_ASSERT(st.syncs > 0);
	fx_free(&f);
}

static void extent_is_the_aligned_block(void)
{
	struct fx f;
	uint64_t s, n;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 33);
	CU_ASSERT(bs_alloc_extent(f.a, a, &s, &n) == 0);
	CU_ASSERT(s == a.off && n == 64);
	CU_ASSERT(bs_alloc_extent(f.a, (struct bs_slice){ 0, 0 }, &s, &n) == 0);
	CU_ASSERT(s == 0 && n == 0);
	CU_ASSERT_EQUAL(bs_alloc_extent(f.a, (struct bs_slice){ a.off + 16, 32 }, &s, &n),
			-EINVAL);
	CU_ASSERT_EQUAL(bs_alloc_extent(f.a, (struct bs_slice){ a.off, 65 }, &s, &n), -EINVAL);
	fx_free(&f);
}

static void grow_in_place_within_the_block_or_at_the_tail(void)
{
	struct fx f;
	struct bs_slice o;
	bool done;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 40);
	fill(&f, a, 0x11);
	/* same 64-byte block */
	CU_ASSERT(bs_grow_in_place(f.a, a, 60, &o, &done) == 0);
	CU_ASSERT(done && o.off == a.off && o.len == 60);
	CU_ASSERT(all_eq(&f, a.off + 40, 20, 0));
	/* the tail: extended */
	CU_ASSERT(bs_grow_in_place(f.a, o, 200, &o, &done) == 0);
	CU_ASSERT(done && o.off == a.off && o.len == 200);
	CU_ASSERT_EQUAL(plen(&f), a.off + 224);
	CU_ASSERT(all_eq(&f, a.off, 40, 0x11));
	CU_ASSERT(all_eq(&f, a.off + 40, 184, 0));
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

static void tail_shrink_then_grow_stays_in_place(void)
{
	struct fx f;
	struct bs_slice c;
	bool done;
	fx_fresh(&f);
	A(&f, 3000);
	A(&f, 100);
	c = A(&f, 1000);
	fill(&f, c, 0x13);
	CU_ASSERT(bs_realloc(f.a, c, 10, &c) == 0);
	CU_ASSERT_EQUAL(plen(&f), c.off + 32);
	CU_ASSERT(bs_realloc(f.a, c, 1000, &c) == 0);
	CU_ASSERT_EQUAL(plen(&f), c.off + 1024);
	CU_ASSERT(all_eq(&f, c.off, 10, 0x13));
	CU_ASSERT(all_eq(&f, c.off + 10, 1014, 0));
	CU_ASSERT(bs_realloc(f.a, c, 995, &c) == 0);
	CU_ASSERT(bs_realloc(f.a, c, 1000, &c) == 0);
	CU_ASSERT(bs_grow_in_place(f.a, c, 5000, &c, &done) == 0);
	CU_ASSERT(done);
	CU_ASSERT_EQUAL(c.len, 5000);
	CU_ASSERT_EQUAL(plen(&f), c.off + 5024);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

static void grow_in_place_refuses_to_move(void)
{
	struct fx f;
	struct bs_slice o = { 7, 7 };
	bool done = true;
	uint8_t *before, *after;
	size_t n1, n2;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 32), anchor = A(&f, 32);
	fill(&f, a, 0x22);
	CU_ASSERT(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	CU_ASSERT(bs_grow_in_place(f.a, a, 33, &o, &done) == 0);
	CU_ASSERT(!done);
	CU_ASSERT(o.off == 7 && o.len == 7);
	CU_ASSERT(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	CU_ASSERT_EQUAL(bs_grow_in_place(f.a, a, 16, &o, &done), -EINVAL);  /* not a grow */
	CU_ASSERT(bs_grow_in_place(f.a, a, 32, &o, &done) == 0);           /* no change */
	CU_ASSERT(done && o.off == a.off && o.len == 32);
	free(before);
	free(after);
	D(&f, anchor);
	fx_free(&f);
}

static void reclaim_returns_a_leaked_block(void)
{
	struct fx f;
	uint64_t got;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), leak = A(&f, 96), b = A(&f, 32), tail_leak = A(&f, 64);
	fill(&f, a, 0xA1);
	fill(&f, leak, 0x5C);   /* the seed's dealloc leak, with stale bytes */
	fill(&f, b, 0xB2);
	struct bs_slice live[] = { a, b };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &got) == 0);
	CU_ASSERT_EQUAL(got, 96 + 64);
	CU_ASSERT_EQUAL(plen(&f), tail_leak.off);   /* the tail gap was cut off */
	CU_ASSERT_EQUAL(check(&f), 0);
	CU_ASSERT(all_eq(&f, a.off, 64, 0xA1));
	CU_ASSERT(all_eq(&f, b.off, 32, 0xB2));
	struct bs_slice c = A(&f, 96);
	CU_ASSERT_EQUAL(c.off, leak.off);
	CU_ASSERT(all_eq(&f, c.off, 96, 0));
	/* nothing more to find */
	struct bs_slice live2[] = { a, c, b };
	CU_ASSERT(bs_alloc_reclaim(f.a, live2, 3, &got) == 0);
	CU_ASSERT_EQUAL(got, 0);
	fx_free(&f);
}

static void reclaim_merges_a_leak_with_its_free_neighbours(void)
{
	struct fx f;
	uint64_t got;
	struct bs_alloc_stats st;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), leak = A(&f, 32), b = A(&f, 64), anchor = A(&f, 32);
	D(&f, a);
	D(&f, b);
	(void)leak;
	struct bs_slice live[] = { anchor };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 1, &got) == 0);
	CU_ASSERT_EQUAL(got, 32);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.free_blocks, 1);
	CU_ASSERT_EQUAL(st.free_bytes, 160);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

static void reclaim_refuses_inconsistent_live_lists(void)
{
	struct fx f;
	uint64_t got = 99;
	uint8_t *before, *after;
	size_t n1, n2;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), fr = A(&f, 64), b = A(&f, 32);
	D(&f, fr);
	CU_ASSERT(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	struct bs_slice over_free[] = { a, { fr.off, 32 }, b };
	struct bs_slice over_live[] = { a, { a.off + 32, 32 }, b };
	struct bs_slice misaligned[] = { { a.off + 8, 32 }, b };
	struct bs_slice outside[] = { a, { b.off, 64 } };
	struct bs_slice header[] = { { 16, 32 }, b };
	CU_ASSERT_EQUAL(bs_alloc_reclaim(f.a, over_free, 3, &got), -EUCLEAN);
	CU_ASSERT_EQUAL(got, 0);
	CU_ASSERT_EQUAL(bs_alloc_reclaim(f.a, over_live, 3, &got), -EUCLEAN);
	CU_ASSERT_EQUAL(bs_alloc_reclaim(f.a, misaligned, 2, &got), -EUCLEAN);
	CU_ASSERT_EQUAL(bs_alloc_reclaim(f.a, outside, 2, &got), -EUCLEAN);
	CU_ASSERT_EQUAL(bs_alloc_reclaim(f.a, header, 2, &got), -EUCLEAN);
	CU_ASSERT(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	fx_free(&f);
}

static void dealloc_bulk_refuses_overlapping_slices(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), b = A(&f, 32);
	struct bs_slice twice[] = { a, b, a };
	CU_ASSERT_EQUAL(bs_dealloc_bulk(f.a, twice, 3), -EINVAL);
	struct bs_slice bad[] = { a, { 17, 32 } };
	CU_ASSERT_EQUAL(bs_dealloc_bulk(f.a, bad, 2), -EINVAL);
	CU_ASSERT_EQUAL(check(&f), 0);
	struct bs_slice ok[] = { b, a };
	CU_ASSERT(bs_dealloc_bulk(f.a, ok, 2) == 0);
	CU_ASSERT_EQUAL(plen(&f), 48);
	fx_free(&f);
}

static void double_free_of_a_free_block_is_refused(void)
{
	struct fx f;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 64), b = A(&f, 32), c = A(&f, 32);
	D(&f, a);
	D(&f, b);   /* into the tree */
	D(&f, c);   /* tail: discarded, so free b is now at the tail */
	CU_ASSERT_EQUAL(plen(&f), b.off + 32);
	uint64_t len = plen(&f);
	CU_ASSERT_EQUAL(bs_dealloc(f.a, a), -EINVAL);
	CU_ASSERT_EQUAL(bs_dealloc(f.a, b), -EINVAL);   /* would discard a tree node */
	CU_ASSERT_EQUAL(bs_dealloc(f.a, c), -EINVAL);   /* beyond the payload */
	struct bs_slice both[] = { b };
	CU_ASSERT_EQUAL(bs_dealloc_bulk(f.a, both, 1), -EINVAL);
	struct bs_slice o;
	CU_ASSERT_EQUAL(bs_realloc(f.a, a, 0, &o), -EINVAL);
	CU_ASSERT_EQUAL(bs_realloc(f.a, a, 32, &o), -EINVAL);     /* would free a free tail */
	bool done;
	CU_ASSERT_EQUAL(bs_grow_in_place(f.a, b, 64, &o, &done), -EINVAL);
	uint64_t st, n;
	CU_ASSERT_EQUAL(bs_alloc_extent(f.a, b, &st, &n), -EINVAL);
	CU_ASSERT_EQUAL(plen(&f), len);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

static void dealloc_bulk_inserts_non_tail_runs(void)
{
	struct fx f;
	struct bs_alloc_stats st;
	fx_fresh(&f);
	struct bs_slice a = A(&f, 32), b = A(&f, 64), keep = A(&f, 32), c = A(&f, 32),
			d = A(&f, 32);
	fill(&f, a, 1);
	fill(&f, b, 2);
	fill(&f, c, 3);
	struct bs_slice s[] = { c, b, a, d };
	CU_ASSERT(bs_dealloc_bulk(f.a, s, 4) == 0);
	CU_ASSERT_EQUAL(plen(&f), keep.off + 32);   /* c+d discarded together */
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.free_blocks, 1);            /* a+b merged */
	CU_ASSERT_EQUAL(st.free_bytes, 96);
	CU_ASSERT_EQUAL(check(&f), 0);
	fx_free(&f);
}

/* ---- randomized run against a model ---------------------------------------------- */

struct mslice {
	struct bs_slice s;
	uint64_t tag;
};

static void m_write(struct fx *f, struct mslice *m)
{
	uint8_t *b = malloc(m->s.len ? m->s.len : 1);
	h_pattern(b, m->s.len, m->tag, 0);
	CU_ASSERT(bstack_set(f->bs, m->s.off, b, m->s.len) == 0);
	free(b);
}

static bool m_ok(struct fx *f, const struct mslice *m, uint64_t upto)
{
	uint8_t *b = malloc(m->s.len ? m->s.len : 1);
	bool ok = bstack_get(f->bs, m->s.off, b, m->s.len) == 0 &&
		  h_pattern_ok(b, upto, m->tag, 0) && h_all_zero(b + upto, m->s.len - upto);
	free(b);
	return ok;
}

static int cmp_mslice(const void *a, const void *b)
{
	const struct mslice *x = a, *y = b;
	return x->s.off < y->s.off ? -1 : x->s.off > y->s.off;
}

static uint64_t al32(uint64_t n)
{
	return n <= 32 ? 32 : (n + 31) & ~31ULL;
}

/* No overlap, and every arena byte is live or free (nothing leaks without a crash). */
static void m_audit(struct fx *f, struct mslice *v, int n)
{
	struct mslice *c = malloc(sizeof *c * (n ? n : 1));
	struct bs_alloc_stats st;
	uint64_t live = 0;
	int k = 0;
	for (int i = 0; i < n; i++)
		if (v[i].s.len)
			c[k++] = v[i];
	qsort(c, k, sizeof *c, cmp_mslice);
	for (int i = 0; i < k; i++) {
		live += al32(c[i].s.len);
		if (i)
			CU_ASSERT(c[i - 1].s.off + al32(c[i - 1].s.len) <= c[i].s.off);
	}
	bs_alloc_stats(f->a, &st);
	CU_ASSERT_EQUAL(live + st.free_bytes, st.arena_bytes);
	CU_ASSERT_EQUAL(check(f), 0);
	free(c);
}

static uint64_t rlen(void)
{
	switch (h_rand_below(8)) {
	case 0:
		return 0;
	case 1:
		return 1 + h_rand_below(32);
	case 2:
		return 32 * (1 + h_rand_below(4));
	case 3:
		return 1 + h_rand_below(4000);
	default:
		return 1 + h_rand_below(300);
	}
}

static void random_operations_match_a_model(void)
{
	enum { MAXL = 64, OPS = 3000 };
	struct mslice v[MAXL];
	struct fx f;
	uint64_t tag = 1;
	int n = 0;
	h_rng_seed();
	fx_fresh(&f);
	for (int op = 1; op <= OPS; op++) {
		int kind = (int)h_rand_below(7);
		if (n == 0 || (kind <= 1 && n < MAXL)) {
			struct mslice m = { .tag = tag++ };
			CU_ASSERT_FATAL(bs_alloc(f.a, rlen(), &m.s) == 0);
			CU_ASSERT(m_ok(&f, &m, 0));
			m_write(&f, &m);
			v[n++] = m;
		} else if (kind == 2) {
			int i = (int)h_rand_below(n);
			CU_ASSERT_FATAL(bs_dealloc(f.a, v[i].s) == 0);
			v[i] = v[--n];
		} else if (kind == 3) {
			int i = (int)h_rand_below(n);
			uint64_t nl = rlen(), keep = nl < v[i].s.len ? nl : v[i].s.len;
			CU_ASSERT_FATAL(bs_realloc(f.a, v[i].s, nl, &v[i].s) == 0);
			CU_ASSERT_EQUAL(v[i].s.len, nl);
			if (!m_ok(&f, &v[i], keep))
				CU_FAIL_FATAL("realloc lost data or exposed non-zero bytes");
			v[i].tag = tag++;
			m_write(&f, &v[i]);
		} else if (kind == 4) {
			int i = (int)h_rand_below(n);
			struct bs_slice o;
			bool done;
			uint64_t nl = v[i].s.len + 1 + h_rand_below(200);
			if (v[i].s.len) {
				CU_ASSERT_FATAL(bs_grow_in_place(f.a, v[i].s, nl, &o, &done) == 0);
				if (done) {
					uint64_t old = v[i].s.len;
					v[i].s = o;
					CU_ASSERT(m_ok(&f, &v[i], old));
					m_write(&f, &v[i]);
				}
			}
		} else if (kind == 5 && n + 4 <= MAXL) {
			uint64_t lens[4];
			struct bs_slice s[4];
			int k = 1 + (int)h_rand_below(4);
			for (int j = 0; j < k; j++)
				lens[j] = rlen();
			CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, k, s) == 0);
			for (int j = 0; j < k; j++) {
				v[n] = (struct mslice){ s[j], tag++ };
				CU_ASSERT(m_ok(&f, &v[n], 0));
				m_write(&f, &v[n++]);
			}
		} else {
			struct bs_slice s[4];
			int k = 1 + (int)h_rand_below(n < 4 ? n : 4);
			for (int j = 0; j < k; j++) {
				int i = (int)h_rand_below(n);
				s[j] = v[i].s;
				v[i] = v[--n];
			}
			CU_ASSERT_FATAL(bs_dealloc_bulk(f.a, s, k) == 0);
		}
		if (op % 100 == 0) {
			for (int i = 0; i < n; i++)
				if (!m_ok(&f, &v[i], v[i].s.len))
					CU_FAIL_FATAL("live data changed");
			m_audit(&f, v, n);
		}
		if (op % 500 == 0) {
			CU_ASSERT_FATAL(fx_reopen(&f) == 0);
			m_audit(&f, v, n);
		}
	}
	while (n)
		CU_ASSERT(bs_dealloc(f.a, v[--n].s) == 0);
	m_audit(&f, v, 0);
	fx_free(&f);
}

/* ---- power loss ------------------------------------------------------------------- */

/*
 * From image img (the durable state), run `act` with the power cut at its
 * k-th write or sync for every k, keeping 0 or 1 of the unsynced writes;
 * then reopen: open must succeed, check must be clean, every live slice
 * keeps its bytes, and reclaim with the live list accounts for every byte.
 */
typedef void (*act_fn)(struct fx *f, struct mslice *live, int n);

static int reopen_raw(struct fx *f)
{
	f->bs = h_stack_open(f->dev);
	int r = seed_open(f->bs, &f->a);
	if (r)
		f->a = NULL;
	return r;
}

static void crash_everywhere(const uint8_t *img, size_t len, bool cut_open, act_fn act,
			     struct mslice *live, int n)
{
	struct fx f = { 0 };
	f.dev = bs_memdev_new();
	for (uint64_t keep = 0; keep <= 1; keep++) {
		for (uint64_t k = 1;; k++) {
			bool finished;
			CU_ASSERT_FATAL(bs_memdev_load(f.dev, img, len) == 0);
			if (cut_open)
				bs_memdev_fail_at(f.dev, k);
			int r = reopen_raw(&f);
			CU_ASSERT_FATAL(cut_open || r == 0);
			if (!cut_open)
				bs_memdev_fail_at(f.dev, k);
			if (r == 0 && act)
				act(&f, live, n);
			finished = !bs_memdev_dead(f.dev);
			bs_memdev_fail_at(f.dev, 0);
			fx_shut(&f);
			bs_memdev_power_cycle(f.dev, keep);
			r = reopen_raw(&f);
			if (r) {
				fprintf(stderr, "cut %llu keep %llu: reopen %d\n",
					(unsigned long long)k, (unsigned long long)keep, r);
				CU_FAIL_FATAL("reopen after a power cut failed");
			}
			CU_ASSERT_EQUAL(check(&f), 0);
			for (int i = 0; i < n; i++)
				CU_ASSERT(m_ok(&f, &live[i], live[i].s.len));
			struct bs_slice ls[16];
			uint64_t got, lb = 0;
			struct bs_alloc_stats st;
			for (int i = 0; i < n; i++) {
				ls[i] = live[i].s;
				lb += al32(live[i].s.len);
			}
			CU_ASSERT(bs_alloc_reclaim(f.a, ls, n, &got) == 0);
			bs_alloc_stats(f.a, &st);
			/* whatever the cut leaked is back: live + free = arena */
			CU_ASSERT_EQUAL(lb + st.free_bytes, st.arena_bytes);
			CU_ASSERT_EQUAL(check(&f), 0);
			fx_shut(&f);
			if (finished) {
				CU_ASSERT(k > 2);   /* the path did write */
				break;
			}
		}
	}
	bs_memdev_free(f.dev);
}

/* Free blocks laid so that open coalesces seams and rebuilds a deep tree. */
static void build_fragmented(struct fx *f, struct mslice *live, int *n, uint8_t **img,
			     size_t *len)
{
	struct bs_slice s[24];
	fx_fresh(f);
	for (int i = 0; i < 24; i++)
		s[i] = A(f, 32 * (1 + (uint64_t)(i % 3)));
	*n = 0;
	for (int i = 0; i < 24; i++) {
		if (i % 4 == 3 || i == 23) {
			live[*n] = (struct mslice){ s[i], 900 + (uint64_t)i };
			m_write(f, &live[(*n)++]);
		} else {
			D(f, s[i]);
		}
	}
	fx_shut(f);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f->dev, img, len) == 0);
	bs_memdev_free(f->dev);
}

static void power_loss_during_open_coalesce_is_recoverable(void)
{
	struct fx f;
	struct mslice live[8];
	uint8_t *img;
	size_t len;
	int n;
	build_fragmented(&f, live, &n, &img, &len);
	crash_everywhere(img, len, true, NULL, live, n);
	free(img);
}

static struct mslice g_victim;

static void act_dealloc(struct fx *f, struct mslice *live, int n)
{
	(void)live;
	(void)n;
	bs_dealloc(f->a, g_victim.s);
}

static void act_alloc_split(struct fx *f, struct mslice *live, int n)
{
	struct bs_slice s;
	(void)live;
	(void)n;
	bs_alloc(f->a, 32, &s);
}

static void act_realloc_grow(struct fx *f, struct mslice *live, int n)
{
	struct bs_slice s;
	(void)live;
	(void)n;
	bs_realloc(f->a, g_victim.s, 200, &s);
}

static void act_realloc_shrink(struct fx *f, struct mslice *live, int n)
{
	struct bs_slice s;
	(void)live;
	(void)n;
	bs_realloc(f->a, g_victim.s, 1, &s);
}

static void power_loss_in_tree_paths_never_loses_live_data(void)
{
	struct fx f;
	struct mslice live[8];
	uint8_t *img, *img2;
	size_t len, len2;
	int n;
	build_fragmented(&f, live, &n, &img, &len);
	/* open once so the tree is the rebuilt one, then snapshot that */
	f.dev = bs_memdev_new();
	CU_ASSERT_FATAL(bs_memdev_load(f.dev, img, len) == 0);
	CU_ASSERT_FATAL(reopen_raw(&f) == 0);
	fx_shut(&f);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img2, &len2) == 0);
	bs_memdev_free(f.dev);

	/* victim: a live non-tail block (its bytes may go; the others' may not) */
	struct mslice others[8];
	int k = 0;
	g_victim = live[1];
	for (int i = 0; i < n; i++)
		if (i != 1)
			others[k++] = live[i];
	crash_everywhere(img2, len2, false, act_dealloc, others, k);
	crash_everywhere(img2, len2, false, act_realloc_grow, others, k);
	crash_everywhere(img2, len2, false, act_realloc_shrink, others, k);
	crash_everywhere(img2, len2, false, act_alloc_split, live, n);
	free(img);
	free(img2);
}

/* ---- garbage ------------------------------------------------------------------------ */

static uint64_t rnd_ptr(size_t slots)
{
	switch (h_rand_below(6)) {
	case 0:
	case 1:
		return 0;
	case 2:
		return h_rand();                           /* anywhere */
	case 3:
		return 48 + h_rand_below(32 * slots);      /* likely misaligned */
	default:
		return 48 + 32 * h_rand_below(slots);      /* a plausible node */
	}
}

static void fuzz_ops(struct fx *f)
{
	struct bs_slice s[4];
	struct bs_alloc_stats st;
	for (int i = 0; i < 4; i++) {
		int r = bs_alloc(f->a, 1 + h_rand_below(200), &s[i]);
		CU_ASSERT(r == 0 || r == -EUCLEAN);
		if (r)
			s[i] = (struct bs_slice){ 0, 0 };
	}
	for (int i = 0; i < 4; i++) {
		int r = bs_dealloc(f->a, s[i]);
		CU_ASSERT(r == 0 || r == -EUCLEAN || r == -EINVAL);
	}
	bs_alloc_stats(f->a, &st);
	CU_ASSERT(bs_alloc_check(f->a, NULL, NULL) >= 0);
}

static void garbage_images_never_crash_open_check_or_ops(void)
{
	h_rng_seed();
	for (int it = 0; it < 300; it++) {
		size_t slots = 2 + h_rand_below(30);
		size_t n = 48 + 32 * slots;
		uint8_t *p = calloc(1, n);
		struct fx f;
		img_base(p, n, h_rand_below(4) ? 48 + 32 * h_rand_below(slots) : rnd_ptr(slots));
		for (size_t i = 0; i < slots; i++) {
			uint64_t size = h_rand_below(8) ? 32 * (1 + h_rand_below(3)) : h_rand();
			if (h_rand_below(3))
				put_node(p, 48 + 32 * i, size, (int8_t)h_rand(), (uint8_t)h_rand(),
					 rnd_ptr(slots), rnd_ptr(slots));
		}
		int r = open_img(&f, p, n);
		CU_ASSERT(r == 0 || r == -EUCLEAN);
		if (r == 0)
			fuzz_ops(&f);
		fx_free(&f);
		free(p);
	}
}

static void corrupting_a_live_image_never_crashes(void)
{
	h_rng_seed();
	for (int it = 0; it < 100; it++) {
		struct fx f;
		struct bs_slice s[12];
		fx_fresh(&f);
		for (int i = 0; i < 12; i++)
			s[i] = A(&f, 1 + h_rand_below(150));
		for (int i = 0; i < 11; i++)
			if (h_rand_below(3))
				D(&f, s[i]);
		size_t slots = (plen(&f) - 48) / 32;
		for (int k = 0; k < 1 + (int)h_rand_below(3); k++) {
			uint64_t off = 40 + h_rand_below(plen(&f) - 48);
			uint8_t b[8];
			le64_put(b, h_rand_below(2) ? rnd_ptr(slots) : h_rand());
			uint64_t nb = 1 + h_rand_below(8);
			if (off + nb > plen(&f))
				nb = plen(&f) - off;
			CU_ASSERT(bstack_set(f.bs, off, b, nb) == 0);
		}
		CU_ASSERT(bs_alloc_check(f.a, NULL, NULL) >= 0);
		fuzz_ops(&f);
		int r = fx_reopen(&f);
		CU_ASSERT(r == 0 || r == -EUCLEAN);
		if (r == 0)
			fuzz_ops(&f);
		else
			f.a = NULL;
		fx_free(&f);
	}
}

static const struct h_test tests[] = {
	/* the seed's list */
	H_TEST(alloc_returns_zeroed_slice),
	H_TEST(alloc_zero_len_returns_null_slice),
	H_TEST(dealloc_zero_len_is_noop),
	H_TEST(dealloc_tail_shrinks_stack),
	H_TEST(dealloc_nontail_reuses_on_next_alloc),
	H_TEST(freed_block_is_zeroed),
	H_TEST(all_pointers_are_32_byte_aligned),
	H_TEST(alloc_rounds_up_to_min_alloc),
	H_TEST(large_free_block_is_split),
	H_TEST(realloc_to_zero_deallocates),
	H_TEST(realloc_same_aligned_size_preserves_data),
	H_TEST(realloc_shrink_tail_discards),
	H_TEST(realloc_shrink_nontail_inserts_remainder),
	H_TEST(realloc_grow_tail_extends_in_place),
	H_TEST(realloc_grow_nontail_copies_data),
	H_TEST(dealloc_misaligned_ptr_returns_error),
	H_TEST(realloc_misaligned_ptr_returns_error),
	H_TEST(alloc_bulk_contiguous),
	H_TEST(alloc_bulk_with_zeros_returns_null_for_zeros),
	H_TEST(dealloc_bulk_merges_adjacent_slices),
	H_TEST(coalesce_on_reopen_merges_adjacent_free_blocks),
	H_TEST(data_survives_reopen),
	H_TEST(new_rejects_partial_header),
	H_TEST(concurrent_alloc_dealloc_no_live_duplicates),
	H_TEST(concurrent_realloc_hammers_tail_paths),
	H_TEST(concurrent_alloc_bulk_dealloc_bulk_no_live_duplicates),
	/* beyond the seed */
	H_TEST(image_bytes_match_the_seed_layout),
	H_TEST(fresh_image_is_the_48_byte_header),
	H_TEST(open_refuses_a_truncated_bstack_header),
	H_TEST(open_refuses_every_partial_header_length),
	H_TEST(open_refuses_a_wrong_magic),
	H_TEST(open_refuses_a_root_outside_the_payload),
	H_TEST(open_refuses_a_cycle_in_the_tree),
	H_TEST(open_refuses_a_node_with_an_impossible_size),
	H_TEST(open_refuses_a_misaligned_node_pointer),
	H_TEST(open_refuses_overlapping_free_blocks),
	H_TEST(open_pads_a_misaligned_tail),
	H_TEST(open_tolerates_a_shared_node_and_a_zeroed_seam),
	H_TEST(check_reports_each_crafted_corruption),
	H_TEST(check_never_loops_on_a_long_chain),
	H_TEST(stats_report_the_tree_and_the_counters),
	H_TEST(extent_is_the_aligned_block),
	H_TEST(grow_in_place_within_the_block_or_at_the_tail),
	H_TEST(grow_in_place_refuses_to_move),
	H_TEST(tail_shrink_then_grow_stays_in_place),
	H_TEST(reclaim_returns_a_leaked_block),
	H_TEST(reclaim_merges_a_leak_with_its_free_neighbours),
	H_TEST(reclaim_refuses_inconsistent_live_lists),
	H_TEST(dealloc_bulk_refuses_overlapping_slices),
	H_TEST(dealloc_bulk_inserts_non_tail_runs),
	H_TEST(double_free_of_a_free_block_is_refused),
	H_TEST(random_operations_match_a_model),
	H_TEST(garbage_images_never_crash_open_check_or_ops),
	H_TEST(corrupting_a_live_image_never_crashes),
	H_TEST(power_loss_during_open_coalesce_is_recoverable),
	H_TEST(power_loss_in_tree_paths_never_loses_live_data),
};

H_MAIN("alloc_ghost", tests)
