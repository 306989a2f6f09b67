/*
 * test_alloc_firstfit.c — the FirstFit allocator (core/alloc_firstfit.c)
 * against its seed: layout bytes, first fit, back-carved splits,
 * coalescing, the tail cascade, every realloc path, recovery of each crash
 * state the recovery_needed flag guards, crafted bad images, threads,
 * reclaim, grow_in_place, and power loss at every cut point.
 */
#include "alloc.h"
#include "bstack.h"
#include "harness.h"
#include "io.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Payload offsets of the layout (the seed's constants). */
#define FLAGS 24
#define HEAD 32
#define ARENA 48

/* ---- fixture -------------------------------------------------------------- */

/*
 * This suite is the seed's behaviour and bytes: every allocator here runs
 * in seed-exact mode (alloc.h).  What bstackfs does beyond the seed (best
 * fit, front splits) is tested for every allocator in test_alloc_harness.c
 * and, for space under churn, in test_space.c.
 */
static int seed_create(struct bstack *bs, struct bs_alloc **a)
{
	int r = bs_firstfit_create(bs, a);
	if (!r)
		bs_alloc_set_seed_exact(*a, true);
	return r;
}

static int seed_open(struct bstack *bs, struct bs_alloc **a)
{
	int r = bs_firstfit_open(bs, a);
	if (!r)
		bs_alloc_set_seed_exact(*a, true);
	return r;
}

struct fx {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
};

static void fx_open_bstack(struct fx *f)
{
	f->bs = h_stack_open(f->dev);
}

static void fx_new(struct fx *f)
{
	memset(f, 0, sizeof *f);
	f->dev = bs_memdev_new();
	CU_ASSERT_FATAL(f->dev != NULL);
	f->bs = h_stack_create(f->dev);
	CU_ASSERT_FATAL(seed_create(f->bs, &f->a) == 0);
}

static void fx_close_handles(struct fx *f)
{
	bs_alloc_close(f->a);
	bstack_close(f->bs);
	f->a = NULL;
	f->bs = NULL;
}

/* Close and reopen the allocator; returns bs_firstfit_open's result. */
static int fx_reopen(struct fx *f)
{
	fx_close_handles(f);
	fx_open_bstack(f);
	return seed_open(f->bs, &f->a);
}

static void fx_free(struct fx *f)
{
	fx_close_handles(f);
	bs_memdev_free(f->dev);
}

static uint64_t rd64(struct fx *f, uint64_t off)
{
	uint8_t b[8];
	CU_ASSERT_FATAL(bstack_get(f->bs, off, b, 8) == 0);
	return le64_get(b);
}

static uint32_t rd32(struct fx *f, uint64_t off)
{
	uint8_t b[4];
	CU_ASSERT_FATAL(bstack_get(f->bs, off, b, 4) == 0);
	return le32_get(b);
}

static void wr64(struct fx *f, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	le64_put(b, v);
	CU_ASSERT_FATAL(bstack_set(f->bs, off, b, 8) == 0);
}

static void wr32(struct fx *f, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	le32_put(b, v);
	CU_ASSERT_FATAL(bstack_set(f->bs, off, b, 4) == 0);
}

static struct bs_slice al(struct fx *f, uint64_t len)
{
	struct bs_slice s = { 1, 1 };
	CU_ASSERT_FATAL(bs_alloc(f->a, len, &s) == 0);
	CU_ASSERT(s.len == len);
	return s;
}

static void fill(struct fx *f, struct bs_slice s, uint64_t tag)
{
	uint8_t *b = malloc(s.len ? s.len : 1);
	h_pattern(b, s.len, tag, 0);
	CU_ASSERT_FATAL(bstack_set(f->bs, s.off, b, s.len) == 0);
	free(b);
}

static bool holds(struct fx *f, struct bs_slice s, uint64_t tag, uint64_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = bstack_get(f->bs, s.off, b, n) == 0 && h_pattern_ok(b, n, tag, 0);
	free(b);
	return ok;
}

static bool zero_at(struct fx *f, uint64_t off, uint64_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = bstack_get(f->bs, off, b, n) == 0 && h_all_zero(b, n);
	free(b);
	return ok;
}

static void print_violation(void *ctx, const char *msg)
{
	(*(int *)ctx)++;
	printf("    check: %s\n", msg);
}

static int violations(struct fx *f)
{
	int n = 0;
	int r = bs_alloc_check(f->a, print_violation, &n);
	CU_ASSERT(r < 0 || r == n);
	return r;
}

static void count_only(void *ctx, const char *msg)
{
	(void)msg;
	(*(int *)ctx)++;
}

/* Report collector that remembers whether a substring was reported. */
struct want {
	const char *needle;
	bool seen;
};

static void want_msg(void *ctx, const char *msg)
{
	struct want *w = ctx;
	if (strstr(msg, w->needle))
		w->seen = true;
}

static bool reports(struct fx *f, const char *needle)
{
	struct want w = { needle, false };
	int r = bs_alloc_check(f->a, want_msg, &w);
	return r > 0 && w.seen;
}

static uint64_t image_len(struct fx *f)
{
	return bstack_len(f->bs);
}

static void get_stats(struct fx *f, struct bs_alloc_stats *st)
{
	bs_alloc_stats(f->a, st);
}

static uint64_t extra(const struct bs_alloc_stats *st, const char *key)
{
	for (int i = 0; i < st->n_extra; i++)
		if (strcmp(st->extra[i].key, key) == 0)
			return st->extra[i].value;
	return UINT64_MAX;
}

/*
 * Every arena byte is either a live block (its extent) or a free block:
 * FirstFit's "no leak".  live holds the slices the test believes live.
 */
static bool accounted(struct fx *f, const struct bs_slice *live, size_t n)
{
	struct bs_alloc_stats st;
	uint64_t sum = 0, start, len;
	get_stats(f, &st);
	for (size_t i = 0; i < n; i++) {
		if (live[i].len == 0)
			continue;
		if (bs_alloc_extent(f->a, live[i], &start, &len) != 0)
			return false;
		sum += len;
	}
	sum += st.free_bytes + 24 * st.free_blocks;
	return sum == st.arena_bytes;
}

/* ---- layout --------------------------------------------------------------- */

static void create_writes_the_48_byte_header_with_the_magic(void)
{
	struct fx f;
	uint8_t h[48], want[48] = { 0 };
	fx_new(&f);
	CU_ASSERT(image_len(&f) == 48);
	CU_ASSERT(f.a->reserved_len == 16);
	CU_ASSERT(f.a->kind == BS_ALLOC_FIRSTFIT);
	memcpy(want + 16, "ALFF\x00\x01\x01\x00", 8);
	CU_ASSERT(bstack_get(f.bs, 0, h, 48) == 0);
	CU_ASSERT(memcmp(h, want, 48) == 0);
	enum bs_alloc_kind k;
	CU_ASSERT(bs_alloc_detect(f.bs, &k) == 0 && k == BS_ALLOC_FIRSTFIT);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void create_refuses_a_stack_that_is_not_empty(void)
{
	struct fx f;
	struct bs_alloc *b = NULL;
	fx_new(&f);
	CU_ASSERT(seed_create(f.bs, &b) == -EEXIST);
	CU_ASSERT(image_len(&f) == 48);
	fx_free(&f);
}

static void open_of_an_empty_stack_formats_it_as_the_seed_does(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bstack *bs;
	struct bs_alloc *a = NULL;
	uint8_t m[8];
	bs = h_stack_create(dev);
	CU_ASSERT(seed_open(bs, &a) == 0);
	CU_ASSERT(bstack_len(bs) == 48);
	CU_ASSERT(bstack_get(bs, 16, m, 8) == 0 && memcmp(m, "ALFF\x00\x01\x01\x00", 8) == 0);
	bs_alloc_close(a);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void reopen_accepts_any_0_1_patch_level(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice s = al(&f, 30);
	fill(&f, s, 5);
	CU_ASSERT_FATAL(bstack_set(f.bs, 22, "\x07\x09", 2) == 0);  /* patch 7 */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(holds(&f, s, 5, 30));
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

/* The sequence from the comment in the test: a(64) b(16) c(64) d(16),
 * free a, free c, alloc 16 (split of c from the back). */
static void image_after_a_known_sequence_has_the_hand_computed_bytes(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 64), b = al(&f, 16), c = al(&f, 64), d = al(&f, 16);
	CU_ASSERT(a.off == 64 && b.off == 152 && c.off == 192 && d.off == 280);
	CU_ASSERT(image_len(&f) == 304);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, c) == 0);
	struct bs_slice e = al(&f, 16);
	CU_ASSERT(e.off == 240);   /* 192 + 64 - 16: the back of c */

	uint8_t want[304] = { 0 };
	memcpy(want + 16, "ALFF\x00\x01\x01\x00", 8);
	le64_put(want + 32, 192);            /* free_head: c, freed last */
	le64_put(want + 48, 64);             /* a: free, 64 */
	le32_put(want + 56, 1);
	le64_put(want + 64, 0);              /* a.next */
	le64_put(want + 72, 192);            /* a.prev = c */
	le64_put(want + 128, 64);            /* a footer */
	le64_put(want + 136, 16);            /* b: allocated */
	le64_put(want + 168, 16);
	le64_put(want + 176, 24);            /* c remainder: free, 24 */
	le32_put(want + 184, 1);
	le64_put(want + 192, 64);            /* c.next = a */
	le64_put(want + 200, 0);             /* c.prev */
	le64_put(want + 216, 24);            /* c footer */
	le64_put(want + 224, 16);            /* e: allocated, payload zero */
	le64_put(want + 256, 16);
	le64_put(want + 264, 16);            /* d */
	le64_put(want + 296, 16);
	uint8_t got[304];
	CU_ASSERT_FATAL(image_len(&f) == 304);
	CU_ASSERT(bstack_get(f.bs, 0, got, 304) == 0);
	for (int i = 0; i < 304; i++)
		if (got[i] != want[i]) {
			printf("    byte %d: got %u want %u\n", i, got[i], want[i]);
			CU_FAIL("image differs");
			break;
		}
	/* and the file itself: BStack header, then exactly those bytes */
	uint8_t *img;
	size_t n;
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	CU_ASSERT(n == 16 + 304 && memcmp(img + 16, want, 304) == 0);
	CU_ASSERT(memcmp(img, "BSTK", 4) == 0 && le64_get(img + 8) == 304);
	free(img);
	CU_ASSERT(violations(&f) == 0);
	(void)b;
	(void)d;
	fx_free(&f);
}

/* ---- alloc ---------------------------------------------------------------- */

static void alloc_of_zero_bytes_is_the_null_slice_and_costs_no_io(void)
{
	struct fx f;
	struct bs_slice s = { 9, 9 };
	fx_new(&f);
	bs_memdev_reset_counts(f.dev);
	CU_ASSERT(bs_alloc(f.a, 0, &s) == 0);
	CU_ASSERT(s.off == 0 && s.len == 0);
	CU_ASSERT(bs_dealloc(f.a, s) == 0);
	CU_ASSERT(bs_memdev_writes(f.dev) == 0 && bs_memdev_syncs(f.dev) == 0);
	CU_ASSERT(image_len(&f) == 48);
	fx_free(&f);
}

static void alloc_rounds_up_to_8_with_a_16_byte_minimum(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 5), b = al(&f, 17), c = al(&f, 24);
	CU_ASSERT(a.off == 64);
	CU_ASSERT(rd64(&f, 48) == 16 && rd64(&f, 64 + 16) == 16);
	CU_ASSERT(b.off == 64 + 16 + 24);
	CU_ASSERT(rd64(&f, b.off - 16) == 24 && rd64(&f, b.off + 24) == 24);
	CU_ASSERT(c.off == b.off + 24 + 24);
	CU_ASSERT(rd64(&f, c.off - 16) == 24);
	CU_ASSERT(image_len(&f) == c.off + 24 + 8);
	CU_ASSERT(zero_at(&f, a.off, 16) && zero_at(&f, b.off, 24));
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void alloc_with_no_free_block_pushes_one_block_in_one_write(void)
{
	struct fx f;
	fx_new(&f);
	bs_memdev_reset_counts(f.dev);
	struct bs_slice a = al(&f, 100);
	CU_ASSERT(a.off == 64);
	/* push: the payload write, the header update, one sync */
	CU_ASSERT(bs_memdev_syncs(f.dev) == 1);
	CU_ASSERT(rd32(&f, FLAGS) == 0);
	fx_free(&f);
}

static void dealloc_at_tail_shrinks_the_image(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 40), b = al(&f, 40);
	uint64_t before = image_len(&f);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(image_len(&f) == before - 64);
	CU_ASSERT(rd64(&f, HEAD) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(image_len(&f) == 48);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void dealloc_in_the_middle_pushes_the_block_at_the_list_head(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16), b = al(&f, 16), y = al(&f, 16);
	(void)x, (void)y;
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(rd64(&f, HEAD) == a.off);
	CU_ASSERT(rd32(&f, a.off - 8) == 1);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	/* LIFO: b is the head, b.next = a, a.prev = b */
	CU_ASSERT(rd64(&f, HEAD) == b.off);
	CU_ASSERT(rd64(&f, b.off) == a.off && rd64(&f, b.off + 8) == 0);
	CU_ASSERT(rd64(&f, a.off + 8) == b.off && rd64(&f, a.off) == 0);
	CU_ASSERT(rd32(&f, FLAGS) == 0);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void freed_slot_is_reused_by_the_next_alloc(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 64), b = al(&f, 64);
	fill(&f, a, 1);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	struct bs_slice c = al(&f, 64);
	CU_ASSERT(c.off == a.off);
	CU_ASSERT(zero_at(&f, c.off, 64));   /* reused bytes read as zero */
	CU_ASSERT(rd64(&f, HEAD) == 0);
	(void)b;
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void alloc_takes_the_first_fitting_block_from_the_head_not_the_best(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice small = al(&f, 24), s1 = al(&f, 16), big = al(&f, 48), s2 = al(&f, 16);
	(void)s1, (void)s2;
	CU_ASSERT(bs_dealloc(f.a, small) == 0);
	CU_ASSERT(bs_dealloc(f.a, big) == 0);   /* head: big, then small */
	struct bs_slice c = al(&f, 24);
	/* best fit would take small; first fit takes big (no split: 48 < 24+40) */
	CU_ASSERT(c.off == big.off);
	CU_ASSERT(rd64(&f, HEAD) == small.off);
	CU_ASSERT(rd64(&f, small.off + 8) == 0);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void split_carves_the_allocation_from_the_back_at_the_seed_threshold(void)
{
	struct fx f;
	fx_new(&f);
	/* found 56 >= 16 + 24 + 16: split, remainder 16 */
	struct bs_slice a = al(&f, 56), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	struct bs_slice b = al(&f, 16);
	CU_ASSERT(b.off == a.off + 56 - 16);
	CU_ASSERT(rd64(&f, a.off - 16) == 16 && rd64(&f, a.off + 16) == 16);
	CU_ASSERT(rd32(&f, a.off - 8) == 1);
	CU_ASSERT(rd64(&f, b.off - 16) == 16 && rd32(&f, b.off - 8) == 0);
	CU_ASSERT(rd64(&f, b.off + 16) == 16);
	CU_ASSERT(rd64(&f, HEAD) == a.off);   /* the remainder stays linked */
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void block_one_step_below_the_split_threshold_is_used_whole(void)
{
	struct fx f;
	fx_new(&f);
	/* found 48 < 16 + 24 + 16: no split, whole block from the front */
	struct bs_slice a = al(&f, 48), x = al(&f, 16);
	fill(&f, a, 3);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	struct bs_slice b = al(&f, 16);
	CU_ASSERT(b.off == a.off);
	CU_ASSERT(rd64(&f, b.off - 16) == 48 && rd32(&f, b.off - 8) == 0);
	CU_ASSERT(zero_at(&f, b.off, 16));
	CU_ASSERT(rd64(&f, HEAD) == 0);
	/* growing within the block later zeroes the stale bytes */
	struct bs_slice c;
	CU_ASSERT(bs_realloc(f.a, b, 48, &c) == 0);
	CU_ASSERT(c.off == b.off && zero_at(&f, c.off, 48));
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void dealloc_coalesces_with_the_free_right_neighbour(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 32), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(rd64(&f, a.off - 16) == 16 + 24 + 32);
	CU_ASSERT(rd64(&f, a.off + 72) == 72);
	CU_ASSERT(rd64(&f, HEAD) == a.off && rd64(&f, a.off) == 0);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void dealloc_coalesces_into_the_free_left_neighbour(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 32), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(rd64(&f, a.off - 16) == 72 && rd64(&f, a.off + 72) == 72);
	CU_ASSERT(rd64(&f, HEAD) == a.off);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void dealloc_coalesces_both_sides_into_one_block(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), c = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, c) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(rd64(&f, a.off - 16) == 16 * 3 + 48);
	CU_ASSERT(rd64(&f, HEAD) == a.off && rd64(&f, a.off) == 0);
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.free_blocks == 1 && st.free_bytes == 96 && st.largest_free == 96);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void tail_dealloc_cascades_through_free_blocks_below_it(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), c = al(&f, 16), d = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bs_dealloc(f.a, c) == 0);   /* b+c one free block */
	CU_ASSERT(bs_dealloc(f.a, d) == 0);   /* tail: d discarded, then b+c */
	CU_ASSERT(image_len(&f) == a.off + 16 + 8);
	CU_ASSERT(rd64(&f, HEAD) == 0);
	CU_ASSERT(rd32(&f, FLAGS) == 0);
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.tail_discards == 2);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

/* ---- realloc -------------------------------------------------------------- */

static void realloc_in_the_same_bucket_zeroes_stale_bytes(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 24), x = al(&f, 16), b;
	fill(&f, a, 7);
	CU_ASSERT(bs_realloc(f.a, a, 17, &b) == 0);
	CU_ASSERT(b.off == a.off && b.len == 17);
	CU_ASSERT(bs_realloc(f.a, b, 20, &b) == 0);
	CU_ASSERT(b.off == a.off && holds(&f, b, 7, 17) && zero_at(&f, b.off + 17, 3));
	(void)x;
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void realloc_of_the_tail_grows_and_shrinks_in_place(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), t = al(&f, 20), g, s;
	fill(&f, t, 9);
	CU_ASSERT(bs_realloc(f.a, t, 100, &g) == 0);
	CU_ASSERT(g.off == t.off && g.len == 100);
	CU_ASSERT(image_len(&f) == t.off + 104 + 8);
	CU_ASSERT(rd64(&f, t.off - 16) == 104 && rd64(&f, t.off + 104) == 104);
	CU_ASSERT(holds(&f, g, 9, 20) && zero_at(&f, g.off + 20, 84));
	CU_ASSERT(bs_realloc(f.a, g, 30, &s) == 0);
	CU_ASSERT(s.off == t.off && image_len(&f) == t.off + 32 + 8);
	CU_ASSERT(rd64(&f, t.off - 16) == 32 && rd64(&f, t.off + 32) == 32);
	CU_ASSERT(holds(&f, s, 9, 20));
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.reallocs == 2 && st.reallocs_in_place == 2 && st.reallocs_moved == 0);
	CU_ASSERT(violations(&f) == 0);
	(void)a;
	fx_free(&f);
}

static void realloc_shrink_of_an_inner_block_keeps_it_and_regrow_reads_zero(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 64), x = al(&f, 16), s, g;
	fill(&f, a, 4);
	CU_ASSERT(bs_realloc(f.a, a, 16, &s) == 0);
	CU_ASSERT(s.off == a.off && rd64(&f, a.off - 16) == 64);
	CU_ASSERT(bs_realloc(f.a, s, 64, &g) == 0);
	CU_ASSERT(g.off == a.off && holds(&f, g, 4, 16) && zero_at(&f, g.off + 16, 48));
	/* once the inner block is the tail, dealloc discards it, no free tail */
	CU_ASSERT(bs_realloc(f.a, g, 16, &s) == 0);
	CU_ASSERT(bs_dealloc(f.a, x) == 0);
	CU_ASSERT(image_len(&f) == a.off + 64 + 8);
	CU_ASSERT(bs_dealloc(f.a, s) == 0);
	CU_ASSERT(image_len(&f) == 48);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void realloc_merges_the_free_next_block_without_split(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), x = al(&f, 16), g;
	fill(&f, a, 2);
	fill(&f, b, 8);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bs_realloc(f.a, a, 40, &g) == 0);
	CU_ASSERT(g.off == a.off);
	/* merged 16 + 24 + 16 = 56 < 40 + 40: no split */
	CU_ASSERT(rd64(&f, a.off - 16) == 56 && rd64(&f, a.off + 56) == 56);
	CU_ASSERT(holds(&f, g, 2, 16) && zero_at(&f, g.off + 16, 40));
	CU_ASSERT(rd64(&f, HEAD) == 0 && rd32(&f, FLAGS) == 0);
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.reallocs_in_place == 1 && st.bytes_copied == 0);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void realloc_merges_the_free_next_block_and_splits_the_rest(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 80), x = al(&f, 16), g;
	fill(&f, a, 2);
	fill(&f, b, 8);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bs_realloc(f.a, a, 24, &g) == 0);
	CU_ASSERT(g.off == a.off);
	/* merged 16 + 24 + 80 = 120 >= 24 + 40: allocated 24, free 72 after */
	uint64_t nf = a.off + 24 + 24;
	CU_ASSERT(rd64(&f, a.off - 16) == 24 && rd64(&f, a.off + 24) == 24);
	CU_ASSERT(rd64(&f, nf - 16) == 72 && rd32(&f, nf - 8) == 1);
	CU_ASSERT(rd64(&f, nf + 72) == 72);
	CU_ASSERT(rd64(&f, HEAD) == nf && rd64(&f, nf) == 0 && rd64(&f, nf + 8) == 0);
	CU_ASSERT(holds(&f, g, 2, 16) && zero_at(&f, g.off + 16, 8));
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void realloc_moves_into_a_found_block_and_frees_the_old(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice hole = al(&f, 200), y = al(&f, 16), a = al(&f, 16), x = al(&f, 16), g;
	(void)y;
	fill(&f, a, 6);
	CU_ASSERT(bs_dealloc(f.a, hole) == 0);
	CU_ASSERT(bs_realloc(f.a, a, 50, &g) == 0);
	/* 200 >= 56 + 40: split, the new block at the back of the hole */
	CU_ASSERT(g.off == hole.off + 200 - 56 && g.len == 50);
	CU_ASSERT(holds(&f, g, 6, 16) && zero_at(&f, g.off + 16, 40));
	CU_ASSERT(rd32(&f, a.off - 8) == 1);   /* old block freed */
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.reallocs_moved == 1 && st.bytes_copied == 16);
	CU_ASSERT(st.free_blocks == 2);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void realloc_moves_to_a_new_tail_block_when_nothing_fits(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 30), x = al(&f, 16), g;
	fill(&f, a, 11);
	uint64_t end = image_len(&f);
	CU_ASSERT(bs_realloc(f.a, a, 300, &g) == 0);
	CU_ASSERT(g.off == end + 16 && image_len(&f) == end + 304 + 24);
	CU_ASSERT(holds(&f, g, 11, 30) && zero_at(&f, g.off + 30, 270));
	CU_ASSERT(rd64(&f, HEAD) == a.off && rd32(&f, a.off - 8) == 1);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

static void realloc_of_null_allocates_and_realloc_to_zero_frees(void)
{
	struct fx f;
	struct bs_slice n = { 0, 0 }, s, z;
	fx_new(&f);
	CU_ASSERT(bs_realloc(f.a, n, 10, &s) == 0);
	CU_ASSERT(s.off == 64 && s.len == 10);
	CU_ASSERT(bs_realloc(f.a, s, 0, &z) == 0);
	CU_ASSERT(z.off == 0 && z.len == 0 && image_len(&f) == 48);
	fx_free(&f);
}

/* ---- validation ----------------------------------------------------------- */

static void impossible_slices_are_rejected_and_change_nothing(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 32), b = al(&f, 32), out;
	uint64_t st, ln;
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	b = al(&f, 32);
	uint8_t *before, *after;
	size_t n1, n2;
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	const struct bs_slice bad[] = {
		{ 16, 8 },             /* before the arena */
		{ 0, 8 },              /* offset 0, non-zero length */
		{ a.off + 4, 16 },     /* misaligned */
		{ a.off + 8, 16 },     /* inside a payload: header mismatch */
		{ a.off, 40 },         /* longer than the block */
		{ b.off + 56, 16 },    /* beyond the end */
		{ UINT64_MAX - 7, 16 },   /* overflow */
		{ a.off, UINT64_MAX },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CU_ASSERT(bs_dealloc(f.a, bad[i]) == -EINVAL);
		CU_ASSERT(bs_realloc(f.a, bad[i], 100, &out) == -EINVAL);
		CU_ASSERT(bs_alloc_extent(f.a, bad[i], &st, &ln) == -EINVAL);
	}
	/* a freed block: double free is refused */
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == -EINVAL);
	CU_ASSERT(bs_realloc(f.a, a, 8, &out) == -EINVAL);
	b = al(&f, 32);   /* takes a's block back: image as before */
	CU_ASSERT(b.off == a.off);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void extent_is_the_whole_block_from_its_header(void)
{
	struct fx f;
	uint64_t st = 1, ln = 1;
	fx_new(&f);
	struct bs_slice a = al(&f, 5), b = al(&f, 64), x = al(&f, 16), s;
	CU_ASSERT(bs_alloc_extent(f.a, a, &st, &ln) == 0 && st == 48 && ln == 40);
	CU_ASSERT(bs_realloc(f.a, b, 16, &s) == 0);   /* block stays 64 */
	CU_ASSERT(bs_alloc_extent(f.a, s, &st, &ln) == 0 && st == b.off - 16 && ln == 88);
	struct bs_slice n = { 0, 0 };
	CU_ASSERT(bs_alloc_extent(f.a, n, &st, &ln) == 0 && ln == 0);
	(void)x;
	fx_free(&f);
}

/* ---- recovery ------------------------------------------------------------- */

/*
 * A split stopped after the seed's update 2: the found block's header still
 * has the old size while the allocated sub-block and both footers exist.
 */
static void recovery_repairs_a_half_done_split(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice h = al(&f, 200), x = al(&f, 16);
	fill(&f, x, 1);
	CU_ASSERT(bs_dealloc(f.a, h) == 0);
	/* craft: found 200, req 32 -> rem 144, alloc header at h+144+8 */
	uint64_t rem = 200 - 32 - 24, ah = h.off + rem + 8;
	wr32(&f, FLAGS, 1);
	wr64(&f, h.off + rem, rem);      /* update 1 */
	wr64(&f, ah, 32);
	wr32(&f, ah + 8, 0);
	wr64(&f, ah + 16 + 32, 32);      /* update 2: the outer footer */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(rd32(&f, FLAGS) == 0);
	CU_ASSERT(rd64(&f, h.off - 16) == rem);
	CU_ASSERT(violations(&f) == 0);
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(extra(&st, "recovery_runs") == 1);
	CU_ASSERT(st.free_blocks == 1 && st.free_bytes == rem);
	/* the orphaned 32-byte block is what reclaim gives back */
	uint64_t rec = 0;
	CU_ASSERT(bs_alloc_reclaim(f.a, &x, 1, &rec) == 0 && rec == 32 + 24);
	CU_ASSERT(holds(&f, x, 1, 16));
	CU_ASSERT(accounted(&f, &x, 1));
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

/* The same half-done split, cut from our own alloc: the flag carries the
 * intent (the block being taken), and recovery rolls the alloc back. */
static void recovery_frees_the_block_named_by_the_intent(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice h = al(&f, 200), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, h) == 0);
	uint64_t rem = 200 - 32 - 24, ah = h.off + rem + 8;
	wr32(&f, FLAGS, 1);
	wr64(&f, 40, ah + 16);
	wr64(&f, h.off + rem, rem);
	wr64(&f, ah, 32);
	wr32(&f, ah + 8, 0);
	wr64(&f, ah + 16 + 32, 32);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(rd64(&f, 40) == 0 && rd32(&f, FLAGS) == 0);
	CU_ASSERT(rd64(&f, h.off - 16) == 200 && rd32(&f, h.off - 8) == 1);
	uint64_t rec = 1;
	CU_ASSERT(bs_alloc_reclaim(f.a, &x, 1, &rec) == 0 && rec == 0);
	CU_ASSERT(accounted(&f, &x, 1));
	CU_ASSERT(violations(&f) == 0);
	/* an intent left with the flag clear is a violation check reports */
	wr64(&f, 40, 64);
	CU_ASSERT(reports(&f, "intent"));
	fx_free(&f);
}

static void recovery_truncates_a_partial_block_at_the_tail(void)
{
	static const uint64_t junk[] = { 7, 30, 64 };
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		struct fx f;
		fx_new(&f);
		struct bs_slice a = al(&f, 16);
		fill(&f, a, 3);
		uint64_t end = image_len(&f);
		uint8_t tail[64];
		memset(tail, 0, sizeof tail);
		le64_put(tail, 4096);   /* a header claiming more than is there */
		CU_ASSERT_FATAL(bstack_push(f.bs, tail, junk[i], NULL) == 0);
		wr32(&f, FLAGS, 1);
		CU_ASSERT(fx_reopen(&f) == 0);
		CU_ASSERT(image_len(&f) == end);
		CU_ASSERT(holds(&f, a, 3, 16));
		CU_ASSERT(violations(&f) == 0);
		fx_free(&f);
	}
}

static void recovery_rebuilds_a_stale_free_list_in_address_order(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16), b = al(&f, 16), y = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	/* stale: head points nowhere useful, pointers garbage */
	wr32(&f, FLAGS, 1);
	wr64(&f, HEAD, x.off);
	wr64(&f, a.off, 12345);
	wr64(&f, b.off + 8, a.off);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(rd64(&f, HEAD) == a.off);
	CU_ASSERT(rd64(&f, a.off) == b.off && rd64(&f, a.off + 8) == 0);
	CU_ASSERT(rd64(&f, b.off) == 0 && rd64(&f, b.off + 8) == a.off);
	CU_ASSERT(violations(&f) == 0);
	(void)y;
	fx_free(&f);
}

static void recovery_runs_when_the_free_head_is_out_of_range(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	wr64(&f, HEAD, 1 << 20);   /* flag clear, head past the end */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(rd64(&f, HEAD) == a.off);
	CU_ASSERT(violations(&f) == 0);
	(void)x;
	fx_free(&f);
}

/* A crash inside coalescing: blocks marked free but not yet merged, and a
 * merged header whose footer was not written. */
static void recovery_merges_adjacent_free_blocks_and_fixes_footers(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), c = al(&f, 16), x = al(&f, 16);
	struct bs_slice p = al(&f, 16), q = al(&f, 16), r = al(&f, 16), y = al(&f, 16);
	fill(&f, x, 5);
	fill(&f, y, 6);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, c) == 0);
	CU_ASSERT(bs_dealloc(f.a, p) == 0);
	CU_ASSERT(bs_dealloc(f.a, r) == 0);
	wr32(&f, FLAGS, 1);
	wr32(&f, b.off - 8, 1);                 /* b marked free, nothing more */
	wr32(&f, q.off - 8, 1);                 /* q: marked, p's header merged */
	wr64(&f, p.off - 16, 16 * 3 + 48);      /* footer of r still says 16 */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(violations(&f) == 0);
	CU_ASSERT(rd64(&f, a.off - 16) == 96 && rd64(&f, a.off + 96) == 96);
	CU_ASSERT(rd64(&f, p.off - 16) == 96 && rd64(&f, p.off + 96) == 96);
	struct bs_slice live[] = { x, y };
	CU_ASSERT(holds(&f, x, 5, 16) && holds(&f, y, 6, 16));
	CU_ASSERT(accounted(&f, live, 2));
	fx_free(&f);
}

static void recovery_discards_a_free_block_left_at_the_tail(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 40), c = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	/* a crash after the tail discard of c, before the cascade: flag clear */
	CU_ASSERT_FATAL(bstack_discard(f.bs, 16 + 24) == 0);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(image_len(&f) == a.off + 16 + 8);
	CU_ASSERT(rd64(&f, HEAD) == 0);
	CU_ASSERT(violations(&f) == 0);
	(void)c;
	fx_free(&f);
}

static void recovery_finishes_a_tail_grow_cut_after_the_header(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), t = al(&f, 16);
	fill(&f, t, 4);
	/* the seed's tail grow to 48, stopped before the footer write */
	CU_ASSERT_FATAL(bstack_extend(f.bs, 32, NULL) == 0);
	wr64(&f, t.off + 16, 0);
	wr64(&f, t.off - 16, 48);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(violations(&f) == 0);
	CU_ASSERT(holds(&f, t, 4, 16));
	struct bs_slice live[] = { a, t };
	CU_ASSERT(accounted(&f, live, 2));
	fx_free(&f);
}

/* ---- crafted bad images --------------------------------------------------- */

static void open_refuses_a_bad_magic(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16);
	(void)a;
	CU_ASSERT_FATAL(bstack_set(f.bs, 16, "ALFX", 4) == 0);
	CU_ASSERT(fx_reopen(&f) == -EILSEQ && f.a == NULL);
	CU_ASSERT_FATAL(bstack_set(f.bs, 16, "ALFF\x00\x02", 6) == 0);
	CU_ASSERT(seed_open(f.bs, &f.a) == -EILSEQ);
	fx_free(&f);
}

static void open_refuses_a_payload_of_1_to_47_bytes(void)
{
	for (uint64_t n = 1; n < 48; n++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct bstack *bs;
		struct bs_alloc *a = NULL;
		uint8_t buf[48] = { 0 };
		memcpy(buf + 16, "ALFF\x00\x01\x01\x00", 8);
		bs = h_stack_create(dev);
		CU_ASSERT_FATAL(bstack_push(bs, buf, n, NULL) == 0);
		CU_ASSERT(seed_open(bs, &a) == -EUCLEAN);
		CU_ASSERT(a == NULL && bstack_len(bs) == n);
		bstack_close(bs);
		bs_memdev_free(dev);
	}
}

static void check_reports_a_header_footer_mismatch(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16);
	wr64(&f, a.off + 16, 24);
	CU_ASSERT(fx_reopen(&f) == 0);   /* not the tail: open does not repair */
	CU_ASSERT(reports(&f, "footer 24 != header 16"));
	CU_ASSERT(bs_dealloc(f.a, a) == -EINVAL);   /* the slice no longer maps */
	(void)b;
	fx_free(&f);
}

static void a_free_list_cycle_is_reported_and_never_loops(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16), b = al(&f, 16), y = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	wr64(&f, a.off, b.off);   /* a.next = b: b -> a -> b -> ... */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(reports(&f, "cycle"));
	struct bs_slice s;
	CU_ASSERT(bs_alloc(f.a, 32, &s) == -EUCLEAN);   /* walk is bounded */
	struct bs_alloc_stats st;
	get_stats(&f, &st);   /* bounded too */
	CU_ASSERT(st.free_blocks > 0);
	(void)x, (void)y;
	fx_free(&f);
}

static void a_block_size_running_past_the_end_is_reported(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16);
	wr64(&f, a.off - 16, 1 << 20);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(reports(&f, "runs past the end"));
	uint64_t rec;
	CU_ASSERT(bs_alloc_reclaim(f.a, &b, 1, &rec) == -EUCLEAN);
	CU_ASSERT(bs_dealloc(f.a, a) == -EINVAL);
	fx_free(&f);
}

static void a_free_list_member_that_is_not_free_is_refused(void)
{
	struct fx f;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	wr32(&f, a.off - 8, 0);
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(reports(&f, "not marked free"));
	struct bs_slice s;
	CU_ASSERT(bs_alloc(f.a, 16, &s) == -EUCLEAN);
	(void)x;
	fx_free(&f);
}

static void check_reports_the_recovery_flag_adjacent_free_and_asymmetric_links(void)
{
	struct fx f;
	int n = 0;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	wr32(&f, b.off - 8, 1);       /* b free but never linked: adjacent to a */
	CU_ASSERT(reports(&f, "adjacent free"));
	CU_ASSERT(reports(&f, "not on the free list"));
	wr32(&f, b.off - 8, 0);
	wr64(&f, a.off + 8, 4242);
	CU_ASSERT(reports(&f, "prev"));
	wr64(&f, a.off + 8, 0);
	wr32(&f, FLAGS, 1);
	CU_ASSERT(reports(&f, "recovery_needed"));
	wr32(&f, FLAGS, 0);
	CU_ASSERT(bs_alloc_check(f.a, count_only, &n) == 0 && n == 0);
	(void)x;
	fx_free(&f);
}

/* ---- stats ---------------------------------------------------------------- */

static void stats_report_free_space_overhead_and_recovery_runs(void)
{
	struct fx f;
	struct bs_alloc_stats st;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), x = al(&f, 16), b = al(&f, 100), y = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	get_stats(&f, &st);
	CU_ASSERT(strcmp(st.name, "firstfit") == 0);
	CU_ASSERT(strcmp(st.magic, "ALFF-0.1.1") == 0);
	CU_ASSERT(st.reserved_bytes == 16 && st.arena_start == 48);
	CU_ASSERT(st.arena_bytes == image_len(&f) - 48);
	CU_ASSERT(st.free_blocks == 2 && st.free_bytes == 16 + 104);
	CU_ASSERT(st.largest_free == 104);
	CU_ASSERT(st.overhead_bytes == 48 + 4 * 24);
	CU_ASSERT(extra(&st, "free_list_length") == 2);
	CU_ASSERT(extra(&st, "recovery_runs") == 0);
	CU_ASSERT(st.allocs == 4 && st.deallocs == 2);
	struct bs_slice live[] = { x, y };
	CU_ASSERT(accounted(&f, live, 2));
	fx_free(&f);
}

/* ---- reclaim and grow_in_place -------------------------------------------- */

static void reclaim_frees_an_orphaned_allocated_block(void)
{
	struct fx f;
	uint64_t rec = 99;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), orphan = al(&f, 40), b = al(&f, 16), o2 = al(&f, 8);
	fill(&f, a, 1);
	fill(&f, b, 2);
	struct bs_slice live[] = { a, b };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &rec) == 0);
	CU_ASSERT(rec == (40 + 24) + (16 + 24));
	CU_ASSERT(image_len(&f) == b.off + 16 + 8);   /* o2 at the tail: discarded */
	CU_ASSERT(rd32(&f, orphan.off - 8) == 1 && rd64(&f, HEAD) == orphan.off);
	CU_ASSERT(holds(&f, a, 1, 16) && holds(&f, b, 2, 16));
	CU_ASSERT(accounted(&f, live, 2));
	CU_ASSERT(violations(&f) == 0);
	/* nothing left to reclaim */
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &rec) == 0 && rec == 0);
	(void)o2;
	fx_free(&f);
}

static void reclaim_refuses_a_live_slice_that_is_not_an_allocated_block(void)
{
	struct fx f;
	uint64_t rec;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	uint8_t *before, *after;
	size_t n1, n2;
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	struct bs_slice inside[] = { a, { a.off + 8, 8 } };
	struct bs_slice freed[] = { a, b };
	struct bs_slice twice[] = { a, a };
	struct bs_slice too_long[] = { { a.off, 17 } };
	CU_ASSERT(bs_alloc_reclaim(f.a, inside, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, freed, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, twice, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, too_long, 1, &rec) == -EUCLEAN);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	(void)x;
	fx_free(&f);
}

static void grow_in_place_grows_the_tail_and_merges_a_free_neighbour(void)
{
	struct fx f;
	struct bs_slice g;
	bool done = false;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 64), t = al(&f, 16);
	fill(&f, a, 1);
	fill(&f, t, 2);
	CU_ASSERT(bs_grow_in_place(f.a, t, 500, &g, &done) == 0);
	CU_ASSERT(done && g.off == t.off && g.len == 500);
	CU_ASSERT(holds(&f, g, 2, 16) && zero_at(&f, g.off + 16, 484));
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	done = false;
	CU_ASSERT(bs_grow_in_place(f.a, a, 70, &g, &done) == 0);
	CU_ASSERT(done && g.off == a.off && holds(&f, g, 1, 16) && zero_at(&f, g.off + 16, 54));
	/* within the same bucket */
	done = false;
	CU_ASSERT(bs_grow_in_place(f.a, (struct bs_slice){ g.off, 70 }, 72, &g, &done) == 0);
	CU_ASSERT(done && g.len == 72);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void grow_in_place_refuses_a_move_and_changes_nothing(void)
{
	struct fx f;
	struct bs_slice g = { 7, 7 };
	bool done = true;
	fx_new(&f);
	struct bs_slice hole = al(&f, 400), a = al(&f, 16), x = al(&f, 16);
	CU_ASSERT(bs_dealloc(f.a, hole) == 0);   /* a fit exists, but elsewhere */
	uint8_t *before, *after;
	size_t n1, n2;
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	CU_ASSERT(bs_grow_in_place(f.a, a, 100, &g, &done) == 0);
	CU_ASSERT(!done && g.off == 7);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	CU_ASSERT(bs_grow_in_place(f.a, a, 8, &g, &done) == -EINVAL);
	struct bs_alloc_stats st;
	get_stats(&f, &st);
	CU_ASSERT(st.reallocs == 0);
	(void)x;
	fx_free(&f);
}

/* ---- threads -------------------------------------------------------------- */

#define NT 8
#define ROUNDS 400
#define KEEP 6

static pthread_barrier_t start_line;

struct worker {
	struct fx *f;
	int id;
	int errors;
	struct bs_slice live[KEEP];
	uint64_t tag[KEEP];
	uint64_t seed;
};

static uint64_t wrand(struct worker *w)
{
	w->seed ^= w->seed << 13;
	w->seed ^= w->seed >> 7;
	w->seed ^= w->seed << 17;
	return w->seed;
}

/* fill() asserts, which CUnit does not allow off the main thread */
static bool wfill(struct fx *f, struct bs_slice s, uint64_t tag)
{
	uint8_t *b = malloc(s.len ? s.len : 1);
	h_pattern(b, s.len, tag, 0);
	bool ok = b && bstack_set(f->bs, s.off, b, s.len) == 0;
	free(b);
	return ok;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < ROUNDS; i++) {
		int k = (int)(wrand(w) % KEEP);
		if (w->live[k].len) {
			if (!holds(w->f, w->live[k], w->tag[k], w->live[k].len))
				w->errors++;
			if (wrand(w) % 3 == 0) {
				struct bs_slice n;
				uint64_t nl = 1 + wrand(w) % 300;
				if (bs_realloc(w->f->a, w->live[k], nl, &n) != 0) {
					w->errors++;
					continue;
				}
				uint64_t keep = nl < w->live[k].len ? nl : w->live[k].len;
				if (!holds(w->f, n, w->tag[k], keep) ||
				    !zero_at(w->f, n.off + keep, nl - keep))
					w->errors++;
				w->live[k] = n;
				if (!wfill(w->f, n, w->tag[k]))
					w->errors++;
				continue;
			}
			if (bs_dealloc(w->f->a, w->live[k]) != 0)
				w->errors++;
			w->live[k] = (struct bs_slice){ 0, 0 };
			continue;
		}
		uint64_t len = 1 + wrand(w) % 200;
		if (bs_alloc(w->f->a, len, &w->live[k]) != 0) {
			w->errors++;
			continue;
		}
		if (!zero_at(w->f, w->live[k].off, len))
			w->errors++;
		w->tag[k] = (uint64_t)w->id << 32 | (uint64_t)i;
		if (!wfill(w->f, w->live[k], w->tag[k]))
			w->errors++;
	}
	return NULL;
}

static int cmp_slice_off(const void *x, const void *y)
{
	const struct bs_slice *p = x, *q = y;
	return p->off < q->off ? -1 : p->off > q->off;
}

static void eight_threads_never_share_a_block(void)
{
	struct fx f;
	struct worker w[NT];
	pthread_t t[NT];
	fx_new(&f);
	uint64_t seed = h_rng_seed();
	CU_ASSERT_FATAL(pthread_barrier_init(&start_line, NULL, NT) == 0);
	for (int i = 0; i < NT; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].f = &f;
		w[i].id = i;
		w[i].seed = seed * 2654435761u + (uint64_t)i + 1;
		CU_ASSERT_FATAL(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
	}
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start_line);
	struct bs_slice all[NT * KEEP];
	size_t n = 0;
	for (int i = 0; i < NT; i++) {
		CU_ASSERT(w[i].errors == 0);
		for (int k = 0; k < KEEP; k++)
			if (w[i].live[k].len) {
				CU_ASSERT(holds(&f, w[i].live[k], w[i].tag[k], w[i].live[k].len));
				all[n++] = w[i].live[k];
			}
	}
	qsort(all, n, sizeof all[0], cmp_slice_off);
	for (size_t i = 1; i < n; i++) {
		uint64_t st, ln;
		CU_ASSERT(all[i].off != all[i - 1].off);
		CU_ASSERT(bs_alloc_extent(f.a, all[i - 1], &st, &ln) == 0);
		CU_ASSERT(st + ln <= all[i].off - 16);
	}
	CU_ASSERT(violations(&f) == 0);
	CU_ASSERT(accounted(&f, all, n));
	fx_free(&f);
}


/* ---- bulk alloc ----------------------------------------------------------- */

/*
 * {5, 0, 17, 24} on an empty arena: 16-, 24- and 24-byte payloads laid end
 * to end from 48 in one push.  Arena bytes (payload offsets):
 *   48  hdr 16 | 64  payload 16 | 80  ftr 16
 *   88  hdr 24 | 104 payload 24 | 128 ftr 24
 *   136 hdr 24 | 152 payload 24 | 176 ftr 24    -> length 184
 */
static void alloc_bulk_pushes_contiguous_tail_blocks_in_one_write(void)
{
	static const uint64_t lens[4] = { 5, 0, 17, 24 };
	struct bs_slice out[4];
	struct bs_alloc_stats st;
	uint8_t want[136] = { 0 }, got[136];
	struct fx f;
	fx_new(&f);
	want[0] = 16;           /* 48: size 16, flags 0 */
	want[80 - 48] = 16;     /* footer */
	want[88 - 48] = 24;
	want[128 - 48] = 24;
	want[136 - 48] = 24;
	want[176 - 48] = 24;
	bs_memdev_reset_counts(f.dev);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 4, out) == 0);
	CU_ASSERT(bs_memdev_syncs(f.dev) == 1);
	CU_ASSERT(out[0].off == 64 && out[0].len == 5);
	CU_ASSERT(out[1].off == 0 && out[1].len == 0);
	CU_ASSERT(out[2].off == 104 && out[2].len == 17);
	CU_ASSERT(out[3].off == 152 && out[3].len == 24);
	CU_ASSERT(image_len(&f) == 184);
	CU_ASSERT_FATAL(bstack_get(f.bs, 48, got, sizeof got) == 0);
	CU_ASSERT(memcmp(got, want, sizeof want) == 0);
	CU_ASSERT(rd32(&f, FLAGS) == 0 && rd64(&f, HEAD) == 0);
	get_stats(&f, &st);
	CU_ASSERT(st.allocs == 3);
	CU_ASSERT(violations(&f) == 0);
	/* the seed's own view: each is an ordinary block it can free */
	CU_ASSERT(fx_reopen(&f) == 0);
	CU_ASSERT(bs_dealloc(f.a, out[2]) == 0);
	CU_ASSERT(rd64(&f, HEAD) == 104);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void alloc_bulk_of_only_zero_lengths_gives_null_slices_and_no_io(void)
{
	static const uint64_t lens[3] = { 0, 0, 0 };
	struct bs_slice out[3] = { { 1, 1 }, { 1, 1 }, { 1, 1 } };
	struct fx f;
	fx_new(&f);
	bs_memdev_reset_counts(f.dev);
	CU_ASSERT(bs_alloc_bulk(f.a, lens, 3, out) == 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT(out[i].off == 0 && out[i].len == 0);
	CU_ASSERT(bs_memdev_writes(f.dev) == 0 && bs_memdev_syncs(f.dev) == 0);
	CU_ASSERT(image_len(&f) == ARENA);
	fx_free(&f);
}

/* Two or more blocks never come from the free list (see ff_alloc_bulk: a
 * cut between two takes would orphan one); a single one does. */
static void alloc_bulk_of_several_leaves_the_free_list_and_of_one_uses_it(void)
{
	static const uint64_t two[3] = { 40, 0, 40 }, one[3] = { 0, 40, 0 };
	struct bs_slice out[3];
	struct fx f;
	fx_new(&f);
	al(&f, 16);
	struct bs_slice hole = al(&f, 200);
	al(&f, 16);
	CU_ASSERT_FATAL(bs_dealloc(f.a, hole) == 0);
	uint64_t len = image_len(&f);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, two, 3, out) == 0);
	CU_ASSERT(out[0].off == len + 16 && out[2].off == len + 16 + 40 + 8 + 16);
	CU_ASSERT(image_len(&f) == len + 2 * (40 + 24));
	CU_ASSERT(rd64(&f, HEAD) == hole.off && rd64(&f, hole.off - 16) == 200);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, one, 3, out) == 0);
	/* first fit, split from the back of the 200 hole */
	CU_ASSERT(out[1].off == hole.off + 200 - 40 && out[1].len == 40);
	CU_ASSERT(out[0].len == 0 && out[2].len == 0);
	CU_ASSERT(image_len(&f) == len + 2 * (40 + 24));
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

static void alloc_bulk_too_large_fails_and_changes_nothing(void)
{
	static const uint64_t lens[2] = { 16, UINT64_MAX - 4 };
	struct bs_slice out[2];
	struct fx f;
	fx_new(&f);
	al(&f, 30);
	uint64_t len = image_len(&f);
	CU_ASSERT(bs_alloc_bulk(f.a, lens, 2, out) == -EFBIG);
	CU_ASSERT(image_len(&f) == len);
	CU_ASSERT(violations(&f) == 0);
	fx_free(&f);
}

/* ---- power loss ----------------------------------------------------------- */

/*
 * Run op on a copy of base at every cut point (and with 0 or 1 of the
 * unsynced writes surviving).  After each crash: reopen succeeds, check is
 * clean, every live slice holds its data, and once reclaim has returned
 * the interrupted operation's orphan (if any, of exactly `orphan` bytes),
 * every arena byte is live or free.
 */
typedef int (*op_fn)(struct bs_alloc *a, struct bs_slice *arg);

struct crash_case {
	const uint8_t *base;
	size_t base_len;
	const struct bs_slice *live;   /* survive the op untouched */
	const uint64_t *tags;
	size_t n_live;
	op_fn op;
	struct bs_slice arg;
	uint64_t orphan;               /* block bytes the op may leave behind */
	int moved;                     /* index of a live slice a realloc moves, or -1 */
	struct bs_slice moved_to;      /* where it lands (its old length) */
};

static void crash_at_every_cut(const struct crash_case *c)
{
	int cuts = 0, recoveries = 0;
	for (uint64_t keep = 0; keep <= 1; keep++) {
		for (uint64_t cut = 1;; cut++) {
			struct fx f = { 0 };
			f.dev = bs_memdev_new();
			CU_ASSERT_FATAL(bs_memdev_load(f.dev, c->base, c->base_len) == 0);
			fx_open_bstack(&f);
			CU_ASSERT_FATAL(seed_open(f.bs, &f.a) == 0);
			struct bs_slice arg = c->arg;
			bs_memdev_fail_at(f.dev, cut);
			int r = c->op(f.a, &arg);
			bool crashed = bs_memdev_dead(f.dev);
			if (!crashed) {
				CU_ASSERT(r == 0);
				CU_ASSERT(violations(&f) == 0);
				fx_free(&f);
				break;
			}
			cuts++;
			fx_close_handles(&f);
			bs_memdev_power_cycle(f.dev, keep);
			fx_open_bstack(&f);
			r = seed_open(f.bs, &f.a);
			CU_ASSERT_FATAL(r == 0);
			int v = violations(&f);
			CU_ASSERT(v == 0);
			if (v)
				printf("    cut %llu keep %llu\n", (unsigned long long)cut,
				       (unsigned long long)keep);
			/* a moving realloc: the old slice until its block is freed,
			 * the new one after */
			struct bs_slice live[8];
			uint64_t st, ln;
			memcpy(live, c->live, c->n_live * sizeof live[0]);
			if (c->moved >= 0 &&
			    bs_alloc_extent(f.a, live[c->moved], &st, &ln) == -EINVAL)
				live[c->moved] = c->moved_to;
			for (size_t i = 0; i < c->n_live; i++)
				CU_ASSERT(holds(&f, live[i], c->tags[i], live[i].len));
			/* a cut before the flag was durable: the op never started
			 * (a dealloc's block is then the caller's to reclaim); a
			 * cut after its clear: it completed (an alloc's block was
			 * never seen by the caller).  Otherwise recovery ran and
			 * its intent leaves nothing behind. */
			struct bs_alloc_stats sst;
			get_stats(&f, &sst);
			bool recovered = extra(&sst, "recovery_runs") == 1;
			uint64_t rec = 1;
			CU_ASSERT(bs_alloc_reclaim(f.a, live, c->n_live, &rec) == 0);
			CU_ASSERT(rec == 0 || (!recovered && rec == c->orphan));
			if (recovered)
				recoveries++;
			CU_ASSERT(accounted(&f, live, c->n_live));
			CU_ASSERT(violations(&f) == 0);
			fx_free(&f);
		}
	}
	CU_ASSERT(cuts >= 6);
	CU_ASSERT(recoveries >= 3);
}

static int op_alloc_32(struct bs_alloc *a, struct bs_slice *arg)
{
	return bs_alloc(a, 32, arg);
}

static int op_dealloc(struct bs_alloc *a, struct bs_slice *arg)
{
	return bs_dealloc(a, *arg);
}

static int op_grow_100(struct bs_alloc *a, struct bs_slice *arg)
{
	struct bs_slice out;
	return bs_realloc(a, *arg, 100, &out);
}

/* Base: L1 [free 200] L2 [free 16] L3 X L4, the list 200 first. */
static void make_base(struct fx *f, struct bs_slice live[4], uint64_t tags[4],
		      struct bs_slice *hole, struct bs_slice *x)
{
	fx_new(f);
	live[0] = al(f, 24);
	*hole = al(f, 200);
	live[1] = al(f, 40);
	struct bs_slice small = al(f, 16);
	live[2] = al(f, 16);
	*x = al(f, 16);
	live[3] = al(f, 30);
	for (int i = 0; i < 4; i++) {
		tags[i] = 100 + (uint64_t)i;
		fill(f, live[i], tags[i]);
	}
	CU_ASSERT_FATAL(bs_dealloc(f->a, small) == 0);
	CU_ASSERT_FATAL(bs_dealloc(f->a, *hole) == 0);
}

static void power_loss_in_a_split_alloc_never_loses_or_leaks(void)
{
	struct fx f;
	struct bs_slice live[4], hole, x;
	uint64_t tags[4];
	uint8_t *img;
	size_t n;
	make_base(&f, live, tags, &hole, &x);
	struct bs_slice all[5] = { live[0], live[1], live[2], x, live[3] };
	uint64_t all_tags[5] = { tags[0], tags[1], tags[2], 0, tags[3] };
	fill(&f, x, 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	fx_free(&f);
	struct crash_case c = { img, n, all, all_tags, 5, op_alloc_32, { 0, 0 }, 32 + 24,
				-1, { 0, 0 } };
	crash_at_every_cut(&c);
	free(img);
}

static void power_loss_in_a_coalescing_dealloc_never_loses_or_leaks(void)
{
	struct fx f;
	struct bs_slice live[4], hole, x;
	uint64_t tags[4];
	uint8_t *img;
	size_t n;
	make_base(&f, live, tags, &hole, &x);
	/* free live[1]: it merges with the 200 hole on its left and the 16
	 * hole on its right */
	struct bs_slice with_x[4] = { live[0], live[2], x, live[3] };
	uint64_t with_x_tags[4] = { tags[0], tags[2], 0, tags[3] };
	fill(&f, x, 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	fx_free(&f);
	struct crash_case c = { img, n, with_x, with_x_tags, 4, op_dealloc, live[1],
				40 + 24, -1, { 0, 0 } };
	crash_at_every_cut(&c);
	free(img);
}

static void power_loss_in_a_cascading_tail_dealloc_never_loses_or_leaks(void)
{
	struct fx f;
	struct bs_slice live[4], hole, x;
	uint64_t tags[4];
	uint8_t *img;
	size_t n;
	make_base(&f, live, tags, &hole, &x);
	CU_ASSERT_FATAL(bs_dealloc(f.a, x) == 0);   /* free just below the tail */
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	fx_free(&f);
	struct crash_case c = { img, n, live, tags, 3, op_dealloc, live[3], 32 + 24,
				-1, { 0, 0 } };
	crash_at_every_cut(&c);
	free(img);
}

static void power_loss_in_a_moving_and_a_merging_realloc_never_loses_data(void)
{
	struct fx f;
	struct bs_slice live[4], hole, x;
	uint64_t tags[4];
	uint8_t *img;
	size_t n;
	make_base(&f, live, tags, &hole, &x);
	fill(&f, x, 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	fx_free(&f);
	/* live[2] (16) grows to 100: its right neighbour x is allocated, so it
	 * moves to the back of the 200 hole (a split) */
	struct bs_slice all[5] = { live[0], live[1], live[2], x, live[3] };
	uint64_t all_tags[5] = { tags[0], tags[1], tags[2], 0, tags[3] };
	struct crash_case c = { img, n, all, all_tags, 5, op_grow_100, live[2], 104 + 24,
				2, { hole.off + 200 - 104, live[2].len } };
	crash_at_every_cut(&c);
	/* live[0] (24) grows to 100 by merging the 200 hole on its right,
	 * 24 + 24 + 200 >= 104 + 40: with a split, in place, nothing orphaned */
	struct crash_case c2 = { img, n, all, all_tags, 5, op_grow_100, live[0], 0,
				 -1, { 0, 0 } };
	crash_at_every_cut(&c2);
	free(img);
}

/* Crash at every cut point of open's own recovery (of the state a crash
 * inside coalescing leaves): the next open finishes it. */

/*
 * A bulk of four (one of them empty) on an image with free blocks, cut at
 * every device operation with every prefix of the unsynced writes kept:
 * after reopening, check is clean, the old data is intact, the image holds
 * none or all of the new blocks (all zero), and reclaim finds no byte that
 * nothing holds.
 */
static void power_loss_in_a_bulk_alloc_leaves_none_or_all_and_leaks_nothing(void)
{
	static const uint64_t lens[4] = { 100, 0, 300, 7 };
	struct bs_slice live[4], hole, x, all[5 + 4], want[4], out[4];
	uint64_t tags[4], before, after;
	uint8_t *img;
	size_t n;
	int cuts = 0, n_after = 0;
	struct fx f;
	make_base(&f, live, tags, &hole, &x);
	/* sorted by offset, as reclaim wants */
	all[0] = live[0];
	all[1] = live[1];
	all[2] = live[2];
	all[3] = x;
	all[4] = live[3];
	fill(&f, x, 0);
	before = image_len(&f);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 4, want) == 0);
	after = image_len(&f);
	CU_ASSERT(after == before + (104 + 24) + (304 + 24) + (16 + 24));
	fx_free(&f);
	for (uint64_t cut = 1;; cut++) {
		uint64_t pending = 0;
		for (uint64_t keep = 0; keep <= pending; keep++) {
			struct fx g = { 0 };
			g.dev = bs_memdev_new();
			CU_ASSERT_FATAL(bs_memdev_load(g.dev, img, n) == 0);
			fx_open_bstack(&g);
			CU_ASSERT_FATAL(seed_open(g.bs, &g.a) == 0);
			bs_memdev_fail_at(g.dev, cut);
			int r = bs_alloc_bulk(g.a, lens, 4, out);
			if (!bs_memdev_dead(g.dev)) {
				CU_ASSERT(r == 0 && keep == 0);
				CU_ASSERT(memcmp(out, want, sizeof out) == 0);
				fx_free(&g);
				goto done;
			}
			CU_ASSERT(r < 0);
			pending = bs_memdev_pending(g.dev);
			cuts++;
			fx_close_handles(&g);
			bs_memdev_power_cycle(g.dev, keep);
			fx_open_bstack(&g);
			CU_ASSERT_FATAL(seed_open(g.bs, &g.a) == 0);
			CU_ASSERT(violations(&g) == 0);
			for (size_t i = 0; i < 4; i++)
				CU_ASSERT(holds(&g, live[i], tags[i], live[i].len));
			size_t nl = 5;
			uint64_t len = image_len(&g), rec = 1;
			CU_ASSERT(len == before || len == after);
			if (len == after) {
				n_after++;
				for (size_t i = 0; i < 4; i++) {
					if (!want[i].len)
						continue;
					CU_ASSERT(zero_at(&g, want[i].off, want[i].len));
					all[nl++] = want[i];
				}
			}
			/* reclaim's live list is sorted: the new blocks are above
			 * all the old ones, in order */
			CU_ASSERT(bs_alloc_reclaim(g.a, all, nl, &rec) == 0);
			CU_ASSERT(rec == 0);
			CU_ASSERT(accounted(&g, all, nl));
			CU_ASSERT(violations(&g) == 0);
			fx_free(&g);
		}
	}
done:
	/* both outcomes were reached: cut before and after the commit */
	CU_ASSERT(cuts >= 2 && n_after >= 1 && n_after < cuts);
	free(img);
}

static void power_loss_during_recovery_is_finished_by_the_next_open(void)
{
	struct fx f;
	uint8_t *img;
	size_t n;
	fx_new(&f);
	struct bs_slice a = al(&f, 16), b = al(&f, 16), c = al(&f, 16), x = al(&f, 16);
	struct bs_slice p = al(&f, 16), q = al(&f, 16), r = al(&f, 16), y = al(&f, 16);
	fill(&f, x, 5);
	fill(&f, y, 6);
	CU_ASSERT(bs_dealloc(f.a, a) == 0 && bs_dealloc(f.a, c) == 0);
	CU_ASSERT(bs_dealloc(f.a, p) == 0 && bs_dealloc(f.a, r) == 0);
	wr32(&f, FLAGS, 1);
	wr32(&f, b.off - 8, 1);
	wr32(&f, q.off - 8, 1);
	wr64(&f, p.off - 16, 96);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &img, &n) == 0);
	fx_free(&f);
	int cuts = 0;
	for (uint64_t cut = 1;; cut++) {
		struct fx g = { 0 };
		g.dev = bs_memdev_new();
		CU_ASSERT_FATAL(bs_memdev_load(g.dev, img, n) == 0);
		fx_open_bstack(&g);
		bs_memdev_fail_at(g.dev, cut);
		int rc = seed_open(g.bs, &g.a);
		if (!bs_memdev_dead(g.dev)) {
			CU_ASSERT(rc == 0);
			fx_free(&g);
			break;
		}
		cuts++;
		CU_ASSERT(rc != 0);
		if (rc == 0)
			bs_alloc_close(g.a);
		g.a = NULL;
		bstack_close(g.bs);
		g.bs = NULL;
		bs_memdev_power_cycle(g.dev, 0);
		fx_open_bstack(&g);
		CU_ASSERT_FATAL(seed_open(g.bs, &g.a) == 0);
		CU_ASSERT(violations(&g) == 0);
		struct bs_slice live[] = { x, y };
		CU_ASSERT(holds(&g, x, 5, 16) && holds(&g, y, 6, 16));
		CU_ASSERT(accounted(&g, live, 2));
		fx_free(&g);
	}
	CU_ASSERT(cuts >= 8);
	free(img);
}

/* ---- randomized ----------------------------------------------------------- */

#define RMAX 24

/* Random alloc / realloc / grow_in_place / dealloc against a list of what
 * each live slice must hold; check() and exact accounting throughout,
 * reopen now and then.  Replay with BSTACKFS_SEED. */
static void random_operations_keep_data_invariants_and_accounting(void)
{
	struct fx f;
	struct bs_slice live[RMAX] = { { 0, 0 } };
	uint64_t tag[RMAX] = { 0 };
	fx_new(&f);
	h_rng_seed();
	for (int i = 0; i < 3000; i++) {
		int k = (int)h_rand_below(RMAX);
		uint64_t len = h_rand_below(8) ? 1 + h_rand_below(160) : 1 + h_rand_below(2000);
		struct bs_slice out;
		bool done;
		if (!live[k].len) {
			CU_ASSERT_FATAL(bs_alloc(f.a, len, &live[k]) == 0);
			CU_ASSERT(zero_at(&f, live[k].off, len));
		} else if (h_rand_below(3) == 0) {
			CU_ASSERT_FATAL(bs_dealloc(f.a, live[k]) == 0);
			live[k] = (struct bs_slice){ 0, 0 };
			continue;
		} else {
			uint64_t keep = len < live[k].len ? len : live[k].len;
			if (len > live[k].len && h_rand_below(2)) {
				CU_ASSERT_FATAL(bs_grow_in_place(f.a, live[k], len, &out, &done) == 0);
				if (!done)
					continue;
				CU_ASSERT(out.off == live[k].off);
			} else {
				CU_ASSERT_FATAL(bs_realloc(f.a, live[k], len, &out) == 0);
			}
			CU_ASSERT(holds(&f, out, tag[k], keep));
			CU_ASSERT(zero_at(&f, out.off + keep, len - keep));
			live[k] = out;
		}
		tag[k] = (uint64_t)i + 1;
		fill(&f, live[k], tag[k]);
		if (i % 250 == 0) {
			CU_ASSERT_FATAL(violations(&f) == 0);
			CU_ASSERT(accounted(&f, live, RMAX));
		}
		if (i % 1000 == 999)
			CU_ASSERT_FATAL(fx_reopen(&f) == 0);
	}
	for (int k = 0; k < RMAX; k++)
		if (live[k].len)
			CU_ASSERT(holds(&f, live[k], tag[k], live[k].len));
	CU_ASSERT(violations(&f) == 0);
	CU_ASSERT(accounted(&f, live, RMAX));
	for (int k = 0; k < RMAX; k++)
		CU_ASSERT(bs_dealloc(f.a, live[k]) == 0);
	CU_ASSERT(image_len(&f) == 48);   /* everything freed: only the header */
	fx_free(&f);
}

static const struct h_test tests[] = {
	H_TEST(create_writes_the_48_byte_header_with_the_magic),
	H_TEST(create_refuses_a_stack_that_is_not_empty),
	H_TEST(open_of_an_empty_stack_formats_it_as_the_seed_does),
	H_TEST(reopen_accepts_any_0_1_patch_level),
	H_TEST(image_after_a_known_sequence_has_the_hand_computed_bytes),
	H_TEST(alloc_of_zero_bytes_is_the_null_slice_and_costs_no_io),
	H_TEST(alloc_rounds_up_to_8_with_a_16_byte_minimum),
	H_TEST(alloc_with_no_free_block_pushes_one_block_in_one_write),
	H_TEST(alloc_bulk_pushes_contiguous_tail_blocks_in_one_write),
	H_TEST(alloc_bulk_of_only_zero_lengths_gives_null_slices_and_no_io),
	H_TEST(alloc_bulk_of_several_leaves_the_free_list_and_of_one_uses_it),
	H_TEST(alloc_bulk_too_large_fails_and_changes_nothing),
	H_TEST(dealloc_at_tail_shrinks_the_image),
	H_TEST(dealloc_in_the_middle_pushes_the_block_at_the_list_head),
	H_TEST(freed_slot_is_reused_by_the_next_alloc),
	H_TEST(alloc_takes_the_first_fitting_block_from_the_head_not_the_best),
	H_TEST(split_carves_the_allocation_from_the_back_at_the_seed_threshold),
	H_TEST(block_one_step_below_the_split_threshold_is_used_whole),
	H_TEST(dealloc_coalesces_with_the_free_right_neighbour),
	H_TEST(dealloc_coalesces_into_the_free_left_neighbour),
	H_TEST(dealloc_coalesces_both_sides_into_one_block),
	H_TEST(tail_dealloc_cascades_through_free_blocks_below_it),
	H_TEST(realloc_in_the_same_bucket_zeroes_stale_bytes),
	H_TEST(realloc_of_the_tail_grows_and_shrinks_in_place),
	H_TEST(realloc_shrink_of_an_inner_block_keeps_it_and_regrow_reads_zero),
	H_TEST(realloc_merges_the_free_next_block_without_split),
	H_TEST(realloc_merges_the_free_next_block_and_splits_the_rest),
	H_TEST(realloc_moves_into_a_found_block_and_frees_the_old),
	H_TEST(realloc_moves_to_a_new_tail_block_when_nothing_fits),
	H_TEST(realloc_of_null_allocates_and_realloc_to_zero_frees),
	H_TEST(impossible_slices_are_rejected_and_change_nothing),
	H_TEST(extent_is_the_whole_block_from_its_header),
	H_TEST(recovery_repairs_a_half_done_split),
	H_TEST(recovery_frees_the_block_named_by_the_intent),
	H_TEST(recovery_truncates_a_partial_block_at_the_tail),
	H_TEST(recovery_rebuilds_a_stale_free_list_in_address_order),
	H_TEST(recovery_runs_when_the_free_head_is_out_of_range),
	H_TEST(recovery_merges_adjacent_free_blocks_and_fixes_footers),
	H_TEST(recovery_discards_a_free_block_left_at_the_tail),
	H_TEST(recovery_finishes_a_tail_grow_cut_after_the_header),
	H_TEST(open_refuses_a_bad_magic),
	H_TEST(open_refuses_a_payload_of_1_to_47_bytes),
	H_TEST(check_reports_a_header_footer_mismatch),
	H_TEST(a_free_list_cycle_is_reported_and_never_loops),
	H_TEST(a_block_size_running_past_the_end_is_reported),
	H_TEST(a_free_list_member_that_is_not_free_is_refused),
	H_TEST(check_reports_the_recovery_flag_adjacent_free_and_asymmetric_links),
	H_TEST(stats_report_free_space_overhead_and_recovery_runs),
	H_TEST(reclaim_frees_an_orphaned_allocated_block),
	H_TEST(reclaim_refuses_a_live_slice_that_is_not_an_allocated_block),
	H_TEST(grow_in_place_grows_the_tail_and_merges_a_free_neighbour),
	H_TEST(grow_in_place_refuses_a_move_and_changes_nothing),
	H_TEST(eight_threads_never_share_a_block),
	H_TEST(power_loss_in_a_split_alloc_never_loses_or_leaks),
	H_TEST(power_loss_in_a_coalescing_dealloc_never_loses_or_leaks),
	H_TEST(power_loss_in_a_cascading_tail_dealloc_never_loses_or_leaks),
	H_TEST(power_loss_in_a_moving_and_a_merging_realloc_never_loses_data),
	H_TEST(power_loss_in_a_bulk_alloc_leaves_none_or_all_and_leaks_nothing),
	H_TEST(power_loss_during_recovery_is_finished_by_the_next_open),
	H_TEST(random_operations_keep_data_invariants_and_accounting),
};

H_MAIN("alloc_firstfit", tests)
