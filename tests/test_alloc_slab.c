/*
 * test_alloc_slab.c — the Slab allocator (core/alloc_slab.c): every test of
 * the seed (bstack 0.2.4 slab allocator), the on-disk bytes of a known
 * operation sequence, each realloc path, crafted bad images, concurrency,
 * stats / check / extent / grow_in_place / reclaim, and power loss at every
 * cut point of a free-list pop and of a non-tail dealloc.
 */
#include "harness.h"
#include "alloc.h"
#include "bstack.h"
#include "io.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture: a slab allocator on a memory device ----------------------- */

struct fx {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
};

static void fx_open_stack(struct fx *f)
{

	f->bs = h_stack_open(f->dev);
}

static struct fx fx_new(uint64_t bsize)
{
	struct fx f = { .dev = bs_memdev_new() };

	CU_ASSERT_FATAL(f.dev != NULL);
	f.bs = h_stack_create(f.dev);
	CU_ASSERT_FATAL(bs_slab_create(f.bs, bsize, &f.a) == 0);
	return f;
}

static void fx_close(struct fx *f)
{
	bs_alloc_close(f->a);
	bstack_close(f->bs);
	f->a = NULL;
	f->bs = NULL;
}

static void fx_reopen(struct fx *f)
{
	fx_close(f);
	fx_open_stack(f);
	CU_ASSERT_FATAL(bs_slab_open(f->bs, &f->a) == 0);
}

static void fx_free(struct fx *f)
{
	fx_close(f);
	bs_memdev_free(f->dev);
}

/* Load a crafted payload as a whole image onto a fresh device and try to
 * open a slab allocator on it. */
static int open_crafted(struct fx *f, const uint8_t *payload, size_t n)
{
	uint8_t *img = malloc(BSTACK_HEADER_SIZE + n);
	int r;

	CU_ASSERT_FATAL(img != NULL);
	memcpy(img, BSTACK_MAGIC, 8);
	le64_put(img + 8, n);
	if (n)
		memcpy(img + BSTACK_HEADER_SIZE, payload, n);
	f->dev = bs_memdev_new();
	f->a = NULL;
	CU_ASSERT_FATAL(bs_memdev_load(f->dev, img, BSTACK_HEADER_SIZE + n) == 0);
	free(img);
	fx_open_stack(f);
	r = bs_slab_open(f->bs, &f->a);
	if (r)
		f->a = NULL;
	return r;
}

/* A slab header payload of `len` bytes (the arena zero). */
static uint8_t *slab_payload(size_t len, uint64_t bsize, uint64_t head)
{
	uint8_t *p = calloc(1, len < 48 ? 48 : len);

	CU_ASSERT_FATAL(p != NULL);
	memcpy(p + 24, "ALSL\x00\x01\x01\x00", 8);
	le64_put(p + 32, bsize);
	le64_put(p + 40, head);
	return p;
}

static uint64_t head_of(struct fx *f)
{
	uint8_t b[8];

	CU_ASSERT_FATAL(bstack_get(f->bs, 40, b, 8) == 0);
	return le64_get(b);
}

static uint64_t u64_at(struct fx *f, uint64_t off)
{
	uint8_t b[8];

	CU_ASSERT_FATAL(bstack_get(f->bs, off, b, 8) == 0);
	return le64_get(b);
}

static int n_reports;
static void count_report(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	n_reports++;
}

static int check(struct fx *f)
{
	n_reports = 0;
	int r = bs_alloc_check(f->a, count_report, NULL);
	if (r >= 0)
		CU_ASSERT(r == n_reports);
	return r;
}

static uint64_t extra(struct bs_alloc_stats *st, const char *key)
{
	for (int i = 0; i < st->n_extra; i++)
		if (strcmp(st->extra[i].key, key) == 0)
			return st->extra[i].value;
	CU_FAIL("missing extra stat");
	return UINT64_MAX;
}

static void put_pattern(struct fx *f, struct bs_slice s, uint64_t tag)
{
	uint8_t *b = malloc(s.len);

	CU_ASSERT_FATAL(b != NULL);
	h_pattern(b, s.len, tag, 0);
	CU_ASSERT_FATAL(bstack_set(f->bs, s.off, b, s.len) == 0);
	free(b);
}

static bool has_pattern(struct fx *f, struct bs_slice s, uint64_t tag)
{
	uint8_t *b = malloc(s.len);
	bool ok = b && bstack_get(f->bs, s.off, b, s.len) == 0 &&
		  h_pattern_ok(b, s.len, tag, 0);

	free(b);
	return ok;
}

static bool reads_zero(struct fx *f, uint64_t off, uint64_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = b && bstack_get(f->bs, off, b, n) == 0 && h_all_zero(b, n);

	free(b);
	return ok;
}

/* ---- new() (seed) ------------------------------------------------------- */

static void new_initialises_header_and_reports_block_size(void)
{
	struct fx f = fx_new(16);
	struct bs_alloc_stats st;

	CU_ASSERT(bstack_len(f.bs) == 48);
	CU_ASSERT(f.a->reserved_len == 24);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(extra(&st, "block_size") == 16);
	CU_ASSERT_STRING_EQUAL(st.name, "slab");
	CU_ASSERT_STRING_EQUAL(st.magic, "ALSL-0.1.1");
	CU_ASSERT(st.arena_start == 48);
	fx_free(&f);
}

static void new_rejects_block_size_below_minimum(void)
{
	struct bstack *bs;
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_alloc *a = NULL;

	bs = h_stack_create(dev);
	CU_ASSERT(bs_slab_create(bs, 7, &a) == -EINVAL);
	CU_ASSERT(bs_slab_create(bs, 1, &a) == -EINVAL);
	CU_ASSERT(bstack_len(bs) == 0);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void new_with_block_size_zero_uses_the_default(void)
{
	struct fx f = fx_new(0);

	CU_ASSERT(u64_at(&f, 32) == BS_SLAB_DEFAULT_BLOCK);
	fx_free(&f);
}

static void new_rejects_nonempty_stack(void)
{
	struct fx f = fx_new(8);
	struct bs_alloc *a = NULL;

	CU_ASSERT(bs_slab_create(f.bs, 8, &a) == -EINVAL);
	CU_ASSERT(bstack_len(f.bs) == 48);
	fx_free(&f);
}

/* ---- open() (seed) ------------------------------------------------------ */

static void open_rejects_empty_stack(void)
{
	struct fx f;

	CU_ASSERT(open_crafted(&f, NULL, 0) == -EINVAL);
	fx_free(&f);
}

static void open_rejects_stack_too_short(void)
{
	struct fx f;
	uint8_t p[24] = { 0 };

	CU_ASSERT(open_crafted(&f, p, sizeof(p)) == -EUCLEAN);
	fx_free(&f);
}

static void open_rejects_bad_magic(void)
{
	struct fx f;
	uint8_t p[48] = { 0 };

	CU_ASSERT(open_crafted(&f, p, sizeof(p)) == -EILSEQ);
	fx_free(&f);
	/* A wrong minor version is a wrong magic too. */
	uint8_t *q = slab_payload(48, 16, 0);
	q[29] = 2;
	CU_ASSERT(open_crafted(&f, q, 48) == -EILSEQ);
	fx_free(&f);
	free(q);
}

static void open_rejects_invalid_stored_block_size(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48, 1, 0);

	/* The seed's test writes patch 0: the prefix match accepts it. */
	p[30] = 0;
	CU_ASSERT(open_crafted(&f, p, 48) == -EUCLEAN);
	fx_free(&f);
	le64_put(p + 32, 0);
	CU_ASSERT(open_crafted(&f, p, 48) == -EUCLEAN);
	fx_free(&f);
	le64_put(p + 32, 7);
	CU_ASSERT(open_crafted(&f, p, 48) == -EUCLEAN);
	fx_free(&f);
	free(p);
}

static void open_accepts_any_patch_version(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48, 8, 0);

	p[30] = 0;
	p[31] = 9;
	CU_ASSERT(open_crafted(&f, p, 48) == 0);
	fx_free(&f);
	free(p);
}

static void open_rejects_misaligned_tail(void)
{
	struct fx f = fx_new(8);

	fx_close(&f);
	fx_open_stack(&f);
	CU_ASSERT_FATAL(bstack_extend(f.bs, 1, NULL) == 0);
	CU_ASSERT(bs_slab_open(f.bs, &f.a) == -EUCLEAN);
	f.a = NULL;
	fx_free(&f);
}

static void open_succeeds_and_restores_block_size(void)
{
	struct fx f = fx_new(32);
	struct bs_alloc_stats st;

	fx_reopen(&f);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(extra(&st, "block_size") == 32);
	fx_free(&f);
}

static void open_rejects_free_head_off_a_block_boundary(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48 + 64, 16, 48 + 8);

	CU_ASSERT(open_crafted(&f, p, 48 + 64) == -EUCLEAN);
	fx_free(&f);
	le64_put(p + 40, 16);   /* inside the header */
	CU_ASSERT(open_crafted(&f, p, 48 + 64) == -EUCLEAN);
	fx_free(&f);
	free(p);
}

static void open_rejects_free_head_beyond_the_end(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48 + 64, 16, 48 + 64);

	CU_ASSERT(open_crafted(&f, p, 48 + 64) == -EUCLEAN);
	fx_free(&f);
	le64_put(p + 40, UINT64_MAX - 15);
	CU_ASSERT(open_crafted(&f, p, 48 + 64) == -EUCLEAN);
	fx_free(&f);
	free(p);
}

/* ---- allocation behaviour (seed) ----------------------------------------- */

static void zero_alloc_returns_empty_slice(void)
{
	struct fx f = fx_new(8);
	struct bs_slice s = { 1, 1 };

	CU_ASSERT(bs_alloc(f.a, 0, &s) == 0);
	CU_ASSERT(s.off == 0 && s.len == 0);
	CU_ASSERT(bstack_len(f.bs) == 48);
	CU_ASSERT(bs_dealloc(f.a, s) == 0);
	CU_ASSERT(bstack_len(f.bs) == 48);
	fx_free(&f);
}

static void dealloc_pushes_to_free_list_and_next_alloc_reuses_block(void)
{
	struct fx f = fx_new(8);
	struct bs_slice s1, s2;

	CU_ASSERT_FATAL(bs_alloc(f.a, 8, &s1) == 0);
	CU_ASSERT(bs_dealloc(f.a, s1) == 0);
	CU_ASSERT(head_of(&f) == s1.off);
	CU_ASSERT_FATAL(bs_alloc(f.a, 8, &s2) == 0);
	CU_ASSERT(s2.off == s1.off);
	CU_ASSERT(head_of(&f) == 0);
	fx_free(&f);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static void free_list_recycles_all_deallocated_blocks(void)
{
	struct fx f = fx_new(8);
	struct bs_slice s[3], r[3];
	uint64_t orig[3], reused[3];

	for (int i = 0; i < 3; i++) {
		CU_ASSERT_FATAL(bs_alloc(f.a, 8, &s[i]) == 0);
		orig[i] = s[i].off;
	}
	for (int i = 0; i < 3; i++)
		CU_ASSERT(bs_dealloc(f.a, s[i]) == 0);
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_FATAL(bs_alloc(f.a, 8, &r[i]) == 0);
		reused[i] = r[i].off;
	}
	/* LIFO: the last freed comes back first. */
	CU_ASSERT(reused[0] == orig[2] && reused[2] == orig[0]);
	qsort(orig, 3, 8, cmp_u64);
	qsort(reused, 3, 8, cmp_u64);
	CU_ASSERT(memcmp(orig, reused, sizeof(orig)) == 0);
	CU_ASSERT(bstack_len(f.bs) == 48 + 24);
	fx_free(&f);
}

static void oversized_tail_dealloc_shrinks_stack(void)
{
	struct fx f = fx_new(8);
	struct bs_slice s;
	struct bs_alloc_stats st;

	CU_ASSERT_FATAL(bs_alloc(f.a, 17, &s) == 0);   /* 3 blocks */
	uint64_t tail = bstack_len(f.bs);
	CU_ASSERT(s.off + 24 == tail);
	CU_ASSERT(bs_dealloc(f.a, s) == 0);
	CU_ASSERT(bstack_len(f.bs) == tail - 24);
	CU_ASSERT(head_of(&f) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.tail_discards == 1 && st.deallocs == 1 && st.allocs == 1);
	fx_free(&f);
}

static void single_block_tail_dealloc_goes_to_the_free_list(void)
{
	struct fx f = fx_new(8);
	struct bs_slice s;

	CU_ASSERT_FATAL(bs_alloc(f.a, 8, &s) == 0);
	CU_ASSERT(bs_dealloc(f.a, s) == 0);
	CU_ASSERT(bstack_len(f.bs) == 56);   /* the seed does not discard it */
	CU_ASSERT(head_of(&f) == 48);
	fx_free(&f);
}

static void write_and_read_round_trip(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s;
	char got[12];

	CU_ASSERT_FATAL(bs_alloc(f.a, 12, &s) == 0);
	CU_ASSERT(bstack_set(f.bs, s.off, "hello world!", 12) == 0);
	CU_ASSERT(bstack_get(f.bs, s.off, got, 12) == 0);
	CU_ASSERT(memcmp(got, "hello world!", 12) == 0);
	fx_free(&f);
}

static void data_survives_reopen(void)
{
	char *path = h_tmp_path("slab_reopen");
	struct bstack *bs;
	struct bs_alloc *a;
	struct bs_slice s;
	char got[5];

	CU_ASSERT_FATAL(bstack_open_path(path, true, &bs) == 0);
	CU_ASSERT_FATAL(bs_slab_create(bs, 16, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(a, 5, &s) == 0);
	CU_ASSERT(bstack_set(bs, s.off, "hello", 5) == 0);
	bs_alloc_close(a);
	bstack_close(bs);

	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT_FATAL(bs_slab_open(bs, &a) == 0);
	CU_ASSERT(bstack_get(bs, s.off, got, 5) == 0);
	CU_ASSERT(memcmp(got, "hello", 5) == 0);
	bs_alloc_close(a);
	bstack_close(bs);
	free(path);
}

/* ---- exact bytes ---------------------------------------------------------- */

static void image_after_known_sequence_equals_hand_computed_bytes(void)
{
	struct fx f = fx_new(16);
	struct bs_slice a, b, c, d;
	uint8_t exp[16 + 112] = { 0 }, *got;
	size_t n;

	CU_ASSERT_FATAL(bs_alloc(f.a, 10, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 20, &b) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 5, &c) == 0);
	CU_ASSERT(a.off == 48 && b.off == 64 && c.off == 96);
	CU_ASSERT(bstack_set(f.bs, a.off, "AAAAAAAAAA", 10) == 0);
	CU_ASSERT(bstack_set(f.bs, b.off, "BBBBBBBBBBBBBBBBBBBB", 20) == 0);
	CU_ASSERT(bstack_set(f.bs, c.off, "CCCCC", 5) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);   /* non-tail, 2 blocks: bulk */
	CU_ASSERT(bs_dealloc(f.a, a) == 0);   /* single block: pointer only */

	uint8_t *p = exp + 16;
	memcpy(exp, "BSTK\x00\x01\x08\x00", 8);
	le64_put(exp + 8, 112);
	memcpy(p + 24, "ALSL\x00\x01\x01\x00", 8);
	le64_put(p + 32, 16);
	le64_put(p + 40, 48);          /* free_head -> a */
	le64_put(p + 48, 64);          /* a -> b[0] */
	memcpy(p + 56, "AA", 2);       /* a's tail bytes stay */
	le64_put(p + 64, 80);          /* b[0] -> b[1], rest zeroed */
	le64_put(p + 80, 0);           /* b[1] -> old head (none) */
	memcpy(p + 96, "CCCCC", 5);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &got, &n) == 0);
	CU_ASSERT(n == sizeof(exp));
	CU_ASSERT(n == sizeof(exp) && memcmp(got, exp, n) == 0);
	free(got);

	/* A pop: free_head -> b[0], the popped block zeroed whole. */
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &d) == 0);
	CU_ASSERT(d.off == 48);
	le64_put(p + 40, 64);
	memset(p + 48, 0, 16);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &got, &n) == 0);
	CU_ASSERT(n == sizeof(exp) && memcmp(got, exp, n) == 0);
	free(got);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void large_non_tail_dealloc_chains_every_block(void)
{
	/* > 4 MiB, block size not a multiple of 8: the streamed bulk write.
	 * 2049 * 2047 = 4 MiB - 1, so block 2049's next pointer (0x40082e)
	 * has its low byte in the first piece and the rest in the second. */
	const uint64_t bs = 2047, nb = 2100;
	struct fx f = fx_new(bs);
	struct bs_slice big, tail;
	struct bs_alloc_stats st;
	uint8_t *got;
	uint64_t n;

	CU_ASSERT_FATAL(bs_alloc(f.a, nb * bs - 3, &big) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 1, &tail) == 0);
	put_pattern(&f, big, 7);
	CU_ASSERT(bs_dealloc(f.a, big) == 0);
	CU_ASSERT(head_of(&f) == 48);
	CU_ASSERT_FATAL(bstack_peek(f.bs, 48, &got, &n) == 0);
	bool ok = true;
	for (uint64_t k = 0; k < nb && ok; k++) {
		uint64_t want = k + 1 < nb ? 48 + (k + 1) * bs : 0;
		ok = le64_get(got + k * bs) == want && h_all_zero(got + k * bs + 8, bs - 8);
	}
	CU_ASSERT(ok);
	free(got);
	CU_ASSERT(check(&f) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_blocks == nb && st.free_bytes == nb * bs);
	CU_ASSERT(st.largest_free == bs);
	fx_free(&f);
}

/* ---- realloc paths ------------------------------------------------------ */

static void realloc_with_the_same_block_count_zeroes_exposed_bytes(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t, u;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &u) == 0);
	put_pattern(&f, s, 1);
	CU_ASSERT(bs_realloc(f.a, s, 4, &t) == 0);      /* shrink, same block */
	CU_ASSERT(t.off == s.off && t.len == 4);
	CU_ASSERT(bs_realloc(f.a, t, 12, &t) == 0);     /* grow, same block */
	CU_ASSERT(t.off == s.off && t.len == 12);
	CU_ASSERT(has_pattern(&f, (struct bs_slice){ s.off, 4 }, 1));
	CU_ASSERT(reads_zero(&f, s.off + 4, 8));
	CU_ASSERT(bstack_len(f.bs) == 80);
	fx_free(&f);
}

static void realloc_at_the_tail_grows_and_shrinks_in_place(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t;
	struct bs_alloc_stats st;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s) == 0);
	put_pattern(&f, s, 2);
	CU_ASSERT(bs_realloc(f.a, (struct bs_slice){ s.off, 16 }, 10, &t) == 0);
	CU_ASSERT(bs_realloc(f.a, t, 40, &t) == 0);      /* tail grow to 3 */
	CU_ASSERT(t.off == s.off && t.len == 40);
	CU_ASSERT(bstack_len(f.bs) == 48 + 48);
	CU_ASSERT(has_pattern(&f, (struct bs_slice){ s.off, 10 }, 2));
	CU_ASSERT(reads_zero(&f, s.off + 10, 30));
	CU_ASSERT(bs_realloc(f.a, t, 17, &t) == 0);      /* tail shrink to 2 */
	CU_ASSERT(t.off == s.off && t.len == 17);
	CU_ASSERT(bstack_len(f.bs) == 48 + 32);
	CU_ASSERT(head_of(&f) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.reallocs == 3 && st.reallocs_in_place == 3);
	CU_ASSERT(st.reallocs_moved == 0 && st.tail_discards == 1);
	fx_free(&f);
}

static void realloc_shrink_non_tail_frees_the_excess_blocks(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t, u;

	CU_ASSERT_FATAL(bs_alloc(f.a, 64, &s) == 0);   /* 4 blocks at 48 */
	CU_ASSERT_FATAL(bs_alloc(f.a, 1, &u) == 0);    /* 112 */
	put_pattern(&f, s, 3);
	CU_ASSERT(bs_realloc(f.a, s, 20, &t) == 0);
	CU_ASSERT(t.off == 48 && t.len == 20);
	CU_ASSERT(bstack_len(f.bs) == 128);
	CU_ASSERT(head_of(&f) == 80);
	CU_ASSERT(u64_at(&f, 80) == 96 && u64_at(&f, 96) == 0);
	CU_ASSERT(has_pattern(&f, t, 3));
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void realloc_grow_non_tail_moves_copies_and_frees_the_old_blocks(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t, u;
	struct bs_alloc_stats st;

	CU_ASSERT_FATAL(bs_alloc(f.a, 20, &s) == 0);   /* 48, 2 blocks */
	CU_ASSERT_FATAL(bs_alloc(f.a, 1, &u) == 0);    /* 80 */
	put_pattern(&f, s, 4);
	CU_ASSERT(bs_realloc(f.a, s, 50, &t) == 0);    /* 4 blocks, moved */
	CU_ASSERT(t.off == 96 && t.len == 50);
	CU_ASSERT(bstack_len(f.bs) == 96 + 64);
	CU_ASSERT(has_pattern(&f, (struct bs_slice){ t.off, 20 }, 4));
	CU_ASSERT(reads_zero(&f, t.off + 20, 44));
	CU_ASSERT(head_of(&f) == 48);
	CU_ASSERT(u64_at(&f, 48) == 64 && u64_at(&f, 64) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.reallocs_moved == 1 && st.bytes_copied == 20);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void realloc_grow_non_tail_of_a_large_slice_streams_the_copy(void)
{
	/* New backing > 4 MiB: extend, copy in pieces, sync, free old. */
	const uint64_t bs = 4096;
	struct fx f = fx_new(bs);
	struct bs_slice s, u, t;
	struct bs_alloc_stats st;

	CU_ASSERT_FATAL(bs_alloc(f.a, 1025 * bs - 1, &s) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 1, &u) == 0);
	put_pattern(&f, s, 21);
	CU_ASSERT_FATAL(bs_realloc(f.a, s, 1100 * bs, &t) == 0);
	CU_ASSERT(t.off == 48 + 1026 * bs && t.len == 1100 * bs);
	CU_ASSERT(bstack_len(f.bs) == t.off + 1100 * bs);
	CU_ASSERT(has_pattern(&f, (struct bs_slice){ t.off, s.len }, 21));
	CU_ASSERT(reads_zero(&f, t.off + s.len, t.len - s.len));
	CU_ASSERT(head_of(&f) == s.off);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_blocks == 1025);
	CU_ASSERT(st.bytes_copied == s.len && st.reallocs_moved == 1);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void bulk_alloc_and_dealloc_go_through_the_same_paths(void)
{
	struct fx f = fx_new(16);
	const uint64_t lens[] = { 0, 8, 40, 16 };
	struct bs_slice out[4];
	struct bs_alloc_stats st;

	CU_ASSERT_FATAL(bs_alloc_bulk(f.a, lens, 4, out) == 0);
	CU_ASSERT(out[0].off == 0 && out[0].len == 0);
	CU_ASSERT(out[1].off == 48 && out[2].off == 64 && out[3].off == 112);
	CU_ASSERT(bs_dealloc_bulk(f.a, out, 4) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_bytes == st.arena_bytes);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void realloc_of_null_allocates_and_to_zero_deallocates(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t;

	CU_ASSERT(bs_realloc(f.a, (struct bs_slice){ 0, 0 }, 5, &s) == 0);
	CU_ASSERT(s.off == 48 && s.len == 5);
	CU_ASSERT(bs_realloc(f.a, s, 0, &t) == 0);
	CU_ASSERT(t.off == 0 && t.len == 0);
	CU_ASSERT(head_of(&f) == 48);
	fx_free(&f);
}

static void impossible_slices_are_rejected_without_touching_the_image(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, out;
	uint64_t st, ln;
	uint8_t *before, *after;
	size_t n1, n2;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	const struct bs_slice bad[] = {
		{ 50, 4 },     /* off a block boundary */
		{ 16, 4 },     /* in the header */
		{ 64, 4 },     /* past the end */
		{ 48, 17 },    /* two blocks, only one exists */
		{ 48, 0 },     /* zero length but not the null slice */
		{ UINT64_MAX - 15, 16 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT(bs_dealloc(f.a, bad[i]) == -EINVAL);
		CU_ASSERT(bs_realloc(f.a, bad[i], 40, &out) == -EINVAL);
		CU_ASSERT(bs_alloc_extent(f.a, bad[i], &st, &ln) == -EINVAL);
	}
	CU_ASSERT(bs_alloc(f.a, UINT64_MAX, &out) == -EINVAL);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	fx_free(&f);
}

/* ---- extent / grow_in_place / stats ------------------------------------- */

static void extent_covers_whole_blocks(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, t;
	uint64_t st, ln;

	CU_ASSERT_FATAL(bs_alloc(f.a, 1, &s) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 33, &t) == 0);
	CU_ASSERT(bs_alloc_extent(f.a, s, &st, &ln) == 0);
	CU_ASSERT(st == 48 && ln == 16);
	CU_ASSERT(bs_alloc_extent(f.a, t, &st, &ln) == 0);
	CU_ASSERT(st == 64 && ln == 48);
	fx_free(&f);
}

static void grow_in_place_succeeds_within_the_block_and_at_the_tail(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, out;
	bool done = false;

	CU_ASSERT_FATAL(bs_alloc(f.a, 4, &s) == 0);
	put_pattern(&f, (struct bs_slice){ s.off, 16 }, 5);   /* stale bytes */
	CU_ASSERT(bs_grow_in_place(f.a, s, 10, &out, &done) == 0);
	CU_ASSERT(done && out.off == s.off && out.len == 10);
	CU_ASSERT(reads_zero(&f, s.off + 4, 6));
	CU_ASSERT(has_pattern(&f, s, 5));
	done = false;
	CU_ASSERT(bs_grow_in_place(f.a, out, 40, &out, &done) == 0);
	CU_ASSERT(done && out.off == s.off && out.len == 40);
	CU_ASSERT(bstack_len(f.bs) == 48 + 48);
	CU_ASSERT(reads_zero(&f, s.off + 4, 36));
	fx_free(&f);
}

static void grow_in_place_refuses_when_it_would_have_to_move(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s, u, out = { 7, 7 };
	bool done = true;
	uint8_t *before, *after;
	size_t n1, n2;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &u) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	CU_ASSERT(bs_grow_in_place(f.a, s, 17, &out, &done) == 0);
	CU_ASSERT(!done);
	CU_ASSERT(out.off == 7 && out.len == 7);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	fx_free(&f);
}

static void stats_report_the_free_list(void)
{
	struct fx f = fx_new(32);
	struct bs_slice s[4];
	struct bs_alloc_stats st;

	for (int i = 0; i < 4; i++)
		CU_ASSERT_FATAL(bs_alloc(f.a, 32, &s[i]) == 0);
	CU_ASSERT(bs_dealloc(f.a, s[0]) == 0);
	CU_ASSERT(bs_dealloc(f.a, s[2]) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_blocks == 2 && st.free_bytes == 64);
	CU_ASSERT(st.largest_free == 32);
	CU_ASSERT(st.overhead_bytes == 48);
	CU_ASSERT(st.arena_bytes == 128);
	CU_ASSERT(st.reserved_bytes == 24);
	CU_ASSERT(extra(&st, "free_list_length") == 2);
	CU_ASSERT(st.allocs == 4 && st.deallocs == 2);
	fx_free(&f);
}

/* ---- crafted bad images: check and the free-list walks -------------------- */

static void a_free_list_cycle_is_reported_not_followed_forever(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48 + 48, 16, 48);
	struct bs_alloc_stats st;
	uint64_t rec = 7;

	le64_put(p + 48, 64);
	le64_put(p + 64, 80);
	le64_put(p + 80, 48);   /* back to the head */
	CU_ASSERT_FATAL(open_crafted(&f, p, 96) == 0);
	CU_ASSERT(check(&f) == 1);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_blocks <= 3);
	CU_ASSERT(bs_alloc_reclaim(f.a, NULL, 0, &rec) == -EUCLEAN);
	CU_ASSERT(rec == 0);
	fx_free(&f);
	free(p);
}

static void a_self_loop_head_is_refused_by_alloc(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48 + 16, 16, 48);
	struct bs_slice s;

	le64_put(p + 48, 48);
	CU_ASSERT_FATAL(open_crafted(&f, p, 64) == 0);
	CU_ASSERT(check(&f) == 1);
	CU_ASSERT(bs_alloc(f.a, 8, &s) == -EUCLEAN);
	CU_ASSERT(head_of(&f) == 48);
	fx_free(&f);
	free(p);
}

static void a_bad_free_list_member_is_reported_and_never_handed_out(void)
{
	struct fx f;
	uint8_t *p = slab_payload(48 + 32, 16, 48);
	struct bs_slice s;

	le64_put(p + 48, 70);       /* next: off a block boundary */
	CU_ASSERT_FATAL(open_crafted(&f, p, 80) == 0);
	CU_ASSERT(check(&f) == 1);
	CU_ASSERT(bs_alloc(f.a, 8, &s) == -EUCLEAN);
	fx_free(&f);
	le64_put(p + 48, 48 + 32);  /* next: past the end */
	CU_ASSERT_FATAL(open_crafted(&f, p, 80) == 0);
	CU_ASSERT(check(&f) == 1);
	CU_ASSERT(bs_alloc(f.a, 8, &s) == -EUCLEAN);
	fx_free(&f);
	free(p);
}

static void check_reports_a_tail_that_lost_alignment(void)
{
	struct fx f = fx_new(16);

	CU_ASSERT(check(&f) == 0);
	CU_ASSERT_FATAL(bstack_extend(f.bs, 3, NULL) == 0);
	CU_ASSERT(check(&f) == 1);
	fx_free(&f);
}

/* ---- reclaim ------------------------------------------------------------ */

/* A free-list pop whose block never reached the caller (the seed's crash
 * table: "popped block leaked"): Q1 done, the caller never got it. */
static void leak_by_pop(struct fx *f, uint64_t block)
{
	uint8_t b[8];

	CU_ASSERT_FATAL(head_of(f) == block);
	le64_put(b, u64_at(f, block));
	CU_ASSERT_FATAL(bstack_set(f->bs, 40, b, 8) == 0);
}

static void reclaim_returns_a_popped_block_that_was_never_handed_out(void)
{
	struct fx f = fx_new(16);
	struct bs_slice a, b, c;
	struct bs_alloc_stats st;
	uint64_t rec = 0;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &b) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &c) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	leak_by_pop(&f, a.off);
	fx_reopen(&f);
	CU_ASSERT(check(&f) == 0);
	struct bs_slice live[] = { b, c };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &rec) == 0);
	CU_ASSERT(rec == 16);
	CU_ASSERT(head_of(&f) == a.off);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_blocks == 1);
	CU_ASSERT(check(&f) == 0);
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &rec) == 0);
	CU_ASSERT(rec == 0);
	fx_free(&f);
}

static void reclaim_discards_a_leaked_run_at_the_tail(void)
{
	struct fx f = fx_new(16);
	struct bs_slice a, b, c;
	uint64_t rec = 0;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &b) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 40, &c) == 0);   /* 80..128 */
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	/* c is leaked: a dealloc whose free_head update never landed. */
	CU_ASSERT(bs_alloc_reclaim(f.a, &a, 1, &rec) == 0);
	CU_ASSERT(rec == 48);
	CU_ASSERT(bstack_len(f.bs) == 80);
	CU_ASSERT(head_of(&f) == b.off && u64_at(&f, b.off) == 0);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
}

static void reclaim_without_a_leak_reclaims_nothing(void)
{
	struct fx f = fx_new(16);
	struct bs_slice s[3];
	uint64_t rec = 9;
	uint8_t *before, *after;
	size_t n1, n2;

	for (int i = 0; i < 3; i++)
		CU_ASSERT_FATAL(bs_alloc(f.a, 20, &s[i]) == 0);
	CU_ASSERT(bs_dealloc(f.a, s[1]) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	struct bs_slice live[] = { s[0], s[2] };
	CU_ASSERT(bs_alloc_reclaim(f.a, live, 2, &rec) == 0);
	CU_ASSERT(rec == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	fx_free(&f);
}

static void reclaim_refuses_live_sets_that_contradict_the_image(void)
{
	struct fx f = fx_new(16);
	struct bs_slice a, b, c;
	uint64_t rec;
	uint8_t *before, *after;
	size_t n1, n2;

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &b) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &c) == 0);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &before, &n1) == 0);
	const struct bs_slice covers_free[] = { a, b };
	const struct bs_slice overlap[] = { c, { c.off, 1 } };
	const struct bs_slice misaligned[] = { { 50, 4 } };
	const struct bs_slice outside[] = { { c.off, 17 } };
	CU_ASSERT(bs_alloc_reclaim(f.a, covers_free, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, overlap, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, misaligned, 1, &rec) == -EUCLEAN);
	CU_ASSERT(bs_alloc_reclaim(f.a, outside, 1, &rec) == -EUCLEAN);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	free(before);
	free(after);
	fx_free(&f);
}

/* ---- concurrency (seed, `atomic`) ----------------------------------------- */

#define LIVE_MAX 64
struct conc {
	struct bs_alloc *a;
	struct bstack *bs;
	pthread_mutex_t mu;
	uint64_t live[LIVE_MAX];
	int nlive;
	int tid;
	int failures;
};

struct worker {
	struct conc *c;
	int tid;
};

static bool live_insert(struct conc *c, uint64_t off)
{
	bool ok = true;

	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < c->nlive; i++)
		if (c->live[i] == off)
			ok = false;
	if (ok && c->nlive < LIVE_MAX)
		c->live[c->nlive++] = off;
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static void live_remove(struct conc *c, uint64_t off)
{
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < c->nlive; i++)
		if (c->live[i] == off)
			c->live[i] = c->live[--c->nlive];
	pthread_mutex_unlock(&c->mu);
}

static void fail(struct conc *c)
{
	__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
}

static void *alloc_worker(void *arg)
{
	struct worker *w = arg;
	struct conc *c = w->c;
	uint8_t mine[16], got[16];

	memset(mine, w->tid + 1, sizeof(mine));
	for (int round = 0; round < 200; round++) {
		struct bs_slice s;

		if (bs_alloc(c->a, 16, &s)) {
			fail(c);
			break;
		}
		if (!live_insert(c, s.off))
			fail(c);
		if (bstack_set(c->bs, s.off, mine, 16) ||
		    bstack_get(c->bs, s.off, got, 16) || memcmp(got, mine, 16))
			fail(c);
		live_remove(c, s.off);
		if (bs_dealloc(c->a, s))
			fail(c);
	}
	return NULL;
}

static void run_workers(struct conc *c, int n, void *(*fn)(void *))
{
	pthread_t th[8];
	struct worker w[8];

	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ c, i };
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, fn, &w[i]) == 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

static void concurrent_alloc_dealloc_no_live_duplicates(void)
{
	struct fx f = fx_new(16);
	struct conc c = { .a = f.a, .bs = f.bs };

	pthread_mutex_init(&c.mu, NULL);
	run_workers(&c, 8, alloc_worker);
	CU_ASSERT(c.failures == 0);
	CU_ASSERT(check(&f) == 0);
	/* Every block is back: at most 8 were ever live at once. */
	struct bs_alloc_stats st;
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_bytes == st.arena_bytes);
	CU_ASSERT(st.arena_bytes <= 8 * 16);
	pthread_mutex_destroy(&c.mu);
	fx_free(&f);
}

static void *realloc_worker(void *arg)
{
	struct worker *w = arg;
	struct conc *c = w->c;
	uint8_t mine[12], got[33];
	struct bs_slice s;

	memset(mine, w->tid + 1, sizeof(mine));
	if (bs_alloc(c->a, 12, &s) || bstack_set(c->bs, s.off, mine, 12)) {
		fail(c);
		return NULL;
	}
	for (int round = 0; round < 150; round++) {
		if (bs_realloc(c->a, s, 33, &s) ||
		    bstack_get(c->bs, s.off, got, 33) || memcmp(got, mine, 12) ||
		    !h_all_zero(got + 12, 21)) {
			fail(c);
			return NULL;
		}
		if (bs_realloc(c->a, s, 12, &s) ||
		    bstack_get(c->bs, s.off, got, 12) || memcmp(got, mine, 12)) {
			fail(c);
			return NULL;
		}
	}
	if (bs_dealloc(c->a, s))
		fail(c);
	return NULL;
}

static void concurrent_realloc_hammers_tail_paths(void)
{
	struct fx f = fx_new(16);
	struct conc c = { .a = f.a, .bs = f.bs };
	struct bs_alloc_stats st;

	pthread_mutex_init(&c.mu, NULL);
	run_workers(&c, 6, realloc_worker);
	CU_ASSERT(c.failures == 0);
	CU_ASSERT(check(&f) == 0);
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.free_bytes == st.arena_bytes);
	pthread_mutex_destroy(&c.mu);
	fx_free(&f);
}

/* ---- power loss at every cut point ---------------------------------------- */

/*
 * Base image (block 16): a@48 (1 block), b@64 (3 blocks, 40 bytes),
 * c@112, d@128 (1 block each), free list c -> d.  Each scenario runs one
 * operation with the power cut at its n-th write/sync, for every n, keeping
 * each possible prefix of the unsynced writes; then it reopens, checks, and
 * measures the leak with reclaim against the caller's live set.
 */
enum pl_op { PL_POP, PL_DEALLOC_NON_TAIL };

static const struct bs_slice pl_a = { 48, 16 }, pl_b = { 64, 40 };

static void pl_base(uint8_t **img, size_t *n)
{
	struct fx f = fx_new(16);
	struct bs_slice s[4];

	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s[0]) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 40, &s[1]) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s[2]) == 0);
	CU_ASSERT_FATAL(bs_alloc(f.a, 16, &s[3]) == 0);
	CU_ASSERT_FATAL(s[0].off == pl_a.off && s[1].off == pl_b.off);
	put_pattern(&f, pl_a, 11);
	put_pattern(&f, pl_b, 12);
	CU_ASSERT(bs_dealloc(f.a, s[3]) == 0);
	CU_ASSERT(bs_dealloc(f.a, s[2]) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(f.dev, img, n) == 0);
	fx_free(&f);
}

/* One run: returns whether the op completed before the cut; *pending gets
 * the unsynced writes at the cut. */
static bool pl_run(enum pl_op op, const uint8_t *img, size_t n, uint64_t cut,
		   uint64_t keep, uint64_t *pending, uint64_t *leak)
{
	struct fx f = { .dev = bs_memdev_new() };
	struct bs_slice live[3], got = { 0, 0 };
	size_t nlive = 0;
	uint64_t rec = 0, allowed;
	struct bs_alloc_stats st;
	int r;

	CU_ASSERT_FATAL(bs_memdev_load(f.dev, img, n) == 0);
	fx_open_stack(&f);
	CU_ASSERT_FATAL(bs_slab_open(f.bs, &f.a) == 0);
	bs_memdev_fail_at(f.dev, cut);
	if (op == PL_POP)
		r = bs_alloc(f.a, 16, &got);
	else
		r = bs_dealloc(f.a, pl_b);
	bool completed = r == 0 && !bs_memdev_dead(f.dev);
	*pending = bs_memdev_pending(f.dev);
	fx_close(&f);
	bs_memdev_fail_at(f.dev, 0);
	if (!completed)
		bs_memdev_power_cycle(f.dev, keep);

	fx_open_stack(&f);
	CU_ASSERT_FATAL(bs_slab_open(f.bs, &f.a) == 0);
	CU_ASSERT(check(&f) == 0);
	/* The caller's view: a popped block is its own only on success; a
	 * dealloc'd b is gone whatever happened. */
	live[nlive++] = pl_a;
	if (op == PL_POP)
		live[nlive++] = pl_b;
	if (completed && op == PL_POP)
		live[nlive++] = got;
	qsort(live, nlive, sizeof(live[0]), cmp_u64);   /* by off (first field) */
	CU_ASSERT(has_pattern(&f, pl_a, 11));
	if (op == PL_POP)
		CU_ASSERT(has_pattern(&f, pl_b, 12));
	if (completed && op == PL_POP)
		CU_ASSERT(reads_zero(&f, got.off, 16));
	CU_ASSERT(bs_alloc_reclaim(f.a, live, nlive, &rec) == 0);
	allowed = completed ? 0 : op == PL_POP ? 16 : 48;
	CU_ASSERT(rec <= allowed);
	*leak = rec;
	/* After reclaim nothing is lost: every block is live or free. */
	bs_alloc_stats(f.a, &st);
	uint64_t live_bytes = 0;
	for (size_t i = 0; i < nlive; i++)
		live_bytes += (live[i].len + 15) / 16 * 16;
	CU_ASSERT(st.free_bytes + live_bytes == st.arena_bytes);
	CU_ASSERT(check(&f) == 0);
	fx_free(&f);
	return completed;
}

static void power_loss(enum pl_op op)
{
	uint8_t *img;
	size_t n;
	bool completed = false;
	uint64_t cut, leak, max_leak = 0;

	pl_base(&img, &n);
	for (cut = 1; !completed && cut < 100; cut++) {
		uint64_t pending = 0;
		for (uint64_t keep = 0; keep <= pending; keep++) {
			completed = pl_run(op, img, n, cut, keep, &pending, &leak);
			max_leak = leak > max_leak ? leak : max_leak;
		}
	}
	/* Some cut lands between the two steps: the seed's leak happens. */
	CU_ASSERT(max_leak == (op == PL_POP ? 16 : 48));
	CU_ASSERT(completed);
	CU_ASSERT(cut > 3);   /* the op really had cut points */
	free(img);
}

static void power_loss_during_a_free_list_pop_leaks_at_most_the_block(void)
{
	power_loss(PL_POP);
}

static void power_loss_during_a_non_tail_dealloc_leaks_at_most_the_batch(void)
{
	power_loss(PL_DEALLOC_NON_TAIL);
}

static const struct h_test tests[] = {
	H_TEST(new_initialises_header_and_reports_block_size),
	H_TEST(new_rejects_block_size_below_minimum),
	H_TEST(new_with_block_size_zero_uses_the_default),
	H_TEST(new_rejects_nonempty_stack),
	H_TEST(open_rejects_empty_stack),
	H_TEST(open_rejects_stack_too_short),
	H_TEST(open_rejects_bad_magic),
	H_TEST(open_rejects_invalid_stored_block_size),
	H_TEST(open_accepts_any_patch_version),
	H_TEST(open_rejects_misaligned_tail),
	H_TEST(open_succeeds_and_restores_block_size),
	H_TEST(open_rejects_free_head_off_a_block_boundary),
	H_TEST(open_rejects_free_head_beyond_the_end),
	H_TEST(zero_alloc_returns_empty_slice),
	H_TEST(dealloc_pushes_to_free_list_and_next_alloc_reuses_block),
	H_TEST(free_list_recycles_all_deallocated_blocks),
	H_TEST(oversized_tail_dealloc_shrinks_stack),
	H_TEST(single_block_tail_dealloc_goes_to_the_free_list),
	H_TEST(write_and_read_round_trip),
	H_TEST(data_survives_reopen),
	H_TEST(image_after_known_sequence_equals_hand_computed_bytes),
	H_TEST(large_non_tail_dealloc_chains_every_block),
	H_TEST(realloc_with_the_same_block_count_zeroes_exposed_bytes),
	H_TEST(realloc_at_the_tail_grows_and_shrinks_in_place),
	H_TEST(realloc_shrink_non_tail_frees_the_excess_blocks),
	H_TEST(realloc_grow_non_tail_moves_copies_and_frees_the_old_blocks),
	H_TEST(realloc_grow_non_tail_of_a_large_slice_streams_the_copy),
	H_TEST(bulk_alloc_and_dealloc_go_through_the_same_paths),
	H_TEST(realloc_of_null_allocates_and_to_zero_deallocates),
	H_TEST(impossible_slices_are_rejected_without_touching_the_image),
	H_TEST(extent_covers_whole_blocks),
	H_TEST(grow_in_place_succeeds_within_the_block_and_at_the_tail),
	H_TEST(grow_in_place_refuses_when_it_would_have_to_move),
	H_TEST(stats_report_the_free_list),
	H_TEST(a_free_list_cycle_is_reported_not_followed_forever),
	H_TEST(a_self_loop_head_is_refused_by_alloc),
	H_TEST(a_bad_free_list_member_is_reported_and_never_handed_out),
	H_TEST(check_reports_a_tail_that_lost_alignment),
	H_TEST(reclaim_returns_a_popped_block_that_was_never_handed_out),
	H_TEST(reclaim_discards_a_leaked_run_at_the_tail),
	H_TEST(reclaim_without_a_leak_reclaims_nothing),
	H_TEST(reclaim_refuses_live_sets_that_contradict_the_image),
	H_TEST(concurrent_alloc_dealloc_no_live_duplicates),
	H_TEST(concurrent_realloc_hammers_tail_paths),
	H_TEST(power_loss_during_a_free_list_pop_leaks_at_most_the_block),
	H_TEST(power_loss_during_a_non_tail_dealloc_leaks_at_most_the_batch),
};

H_MAIN("alloc_slab", tests)
