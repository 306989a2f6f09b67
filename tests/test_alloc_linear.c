/*
 * test_alloc_linear.c — the reference bump allocator (seeds/README.md):
 * alloc extends the tail, realloc only on the tail allocation, dealloc of
 * the tail discards and is a no-op elsewhere, bulk alloc in one extend.
 */
#include "alloc.h"
#include "harness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fixture {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
};

static void fx_open(struct fixture *f, bool create)
{
	struct bs_io *io;
	CU_ASSERT_FATAL(bs_io_mem_open(f->dev, &io) == 0);
	if (create) {
		CU_ASSERT_FATAL(bstack_create(io, &f->bs) == 0);
		CU_ASSERT_FATAL(bs_alloc_create(f->bs, BS_ALLOC_LINEAR, NULL, &f->a) == 0);
	} else {
		CU_ASSERT_FATAL(bstack_open(io, &f->bs) == 0);
		CU_ASSERT_FATAL(bs_alloc_open(f->bs, BS_ALLOC_LINEAR, &f->a) == 0);
	}
}

static void fx_new(struct fixture *f)
{
	f->dev = bs_memdev_new();
	CU_ASSERT_FATAL(f->dev != NULL);
	fx_open(f, true);
}

static void fx_close(struct fixture *f)
{
	bs_alloc_close(f->a);
	bstack_close(f->bs);
	f->a = NULL;
	f->bs = NULL;
}

static void fx_free(struct fixture *f)
{
	fx_close(f);
	bs_memdev_free(f->dev);
}

static void create_reserves_sixteen_bytes_and_nothing_else(void)
{
	struct fixture f;
	fx_new(&f);
	CU_ASSERT(bstack_len(f.bs) == 16);
	CU_ASSERT(f.a->reserved_len == 16);
	enum bs_alloc_kind k = BS_ALLOC_GHOST;
	CU_ASSERT(bs_alloc_detect(f.bs, &k) == 0 && k == BS_ALLOC_NONE);
	fx_free(&f);
}

static void alloc_extends_the_tail_with_zeros(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b;
	CU_ASSERT(bs_alloc(f.a, 10, &a) == 0);
	CU_ASSERT(a.off == 16 && a.len == 10);
	CU_ASSERT(bs_alloc(f.a, 7, &b) == 0);
	CU_ASSERT(b.off == 26 && b.len == 7);
	CU_ASSERT(bstack_len(f.bs) == 33);
	uint8_t buf[7];
	CU_ASSERT(bstack_get(f.bs, b.off, buf, 7) == 0 && h_all_zero(buf, 7));
	fx_free(&f);
}

static void zero_length_alloc_is_the_null_slice_and_costs_no_io(void)
{
	struct fixture f;
	fx_new(&f);
	uint64_t w = bs_memdev_writes(f.dev), s = bs_memdev_syncs(f.dev);
	struct bs_slice z = { 1, 1 };
	CU_ASSERT(bs_alloc(f.a, 0, &z) == 0);
	CU_ASSERT(z.off == 0 && z.len == 0);
	CU_ASSERT(bs_dealloc(f.a, z) == 0);
	CU_ASSERT(bs_memdev_writes(f.dev) == w && bs_memdev_syncs(f.dev) == s);
	fx_free(&f);
}

static void realloc_of_the_tail_grows_and_shrinks_in_place(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b;
	uint8_t pat[40], got[100];
	CU_ASSERT(bs_alloc(f.a, 40, &a) == 0);
	h_pattern(pat, 40, 3, 0);
	CU_ASSERT(bstack_set(f.bs, a.off, pat, 40) == 0);
	CU_ASSERT(bs_realloc(f.a, a, 100, &b) == 0);
	CU_ASSERT(b.off == a.off && b.len == 100);
	CU_ASSERT(bstack_get(f.bs, b.off, got, 100) == 0);
	CU_ASSERT(memcmp(got, pat, 40) == 0 && h_all_zero(got + 40, 60));
	CU_ASSERT(bs_realloc(f.a, b, 20, &a) == 0);
	CU_ASSERT(a.off == b.off && a.len == 20);
	CU_ASSERT(bstack_len(f.bs) == 16 + 20);
	struct bs_alloc_stats st;
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.reallocs == 2 && st.reallocs_in_place == 2);
	fx_free(&f);
}

static void realloc_of_a_non_tail_slice_is_unsupported_and_changes_nothing(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b, out = { 0, 0 };
	CU_ASSERT(bs_alloc(f.a, 32, &a) == 0);
	CU_ASSERT(bs_alloc(f.a, 32, &b) == 0);
	uint64_t len = bstack_len(f.bs);
	CU_ASSERT(bs_realloc(f.a, a, 64, &out) == -ENOTSUP);
	CU_ASSERT(bs_realloc(f.a, a, 16, &out) == -ENOTSUP);
	CU_ASSERT(bs_realloc(f.a, a, 0, &out) == -ENOTSUP);
	CU_ASSERT(bstack_len(f.bs) == len);
	/* the same length is fine anywhere */
	CU_ASSERT(bs_realloc(f.a, a, 32, &out) == 0 && out.off == a.off);
	fx_free(&f);
}

static void dealloc_of_the_tail_discards_and_elsewhere_is_a_no_op(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b;
	CU_ASSERT(bs_alloc(f.a, 50, &a) == 0);
	CU_ASSERT(bs_alloc(f.a, 60, &b) == 0);
	CU_ASSERT(bs_dealloc(f.a, a) == 0);
	CU_ASSERT(bstack_len(f.bs) == 16 + 110);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	CU_ASSERT(bstack_len(f.bs) == 16 + 50);
	fx_free(&f);
}

static void bulk_alloc_is_one_extend_and_bulk_dealloc_of_the_tail_run_one_discard(void)
{
	struct fixture f;
	fx_new(&f);
	uint64_t lens[4] = { 10, 0, 20, 30 };
	struct bs_slice s[4];
	uint64_t syncs = bs_memdev_syncs(f.dev);
	CU_ASSERT(bs_alloc_bulk(f.a, lens, 4, s) == 0);
	CU_ASSERT(bs_memdev_syncs(f.dev) == syncs + 1);
	CU_ASSERT(s[0].off == 16 && s[1].off == 0 && s[1].len == 0);
	CU_ASSERT(s[2].off == 26 && s[3].off == 46 && s[3].len == 30);
	syncs = bs_memdev_syncs(f.dev);
	CU_ASSERT(bs_dealloc_bulk(f.a, s, 4) == 0);
	CU_ASSERT(bs_memdev_syncs(f.dev) == syncs + 1);
	CU_ASSERT(bstack_len(f.bs) == 16);
	fx_free(&f);
}

static void impossible_slices_are_rejected(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, out;
	CU_ASSERT(bs_alloc(f.a, 10, &a) == 0);
	CU_ASSERT(bs_dealloc(f.a, (struct bs_slice){ 4, 10 }) == -EINVAL);
	CU_ASSERT(bs_dealloc(f.a, (struct bs_slice){ 16, 11 }) == -EINVAL);
	CU_ASSERT(bs_dealloc(f.a, (struct bs_slice){ 5, 0 }) == -EINVAL);
	CU_ASSERT(bs_realloc(f.a, (struct bs_slice){ UINT64_MAX - 3, 8 }, 9, &out) == -EINVAL);
	uint64_t st, ln;
	CU_ASSERT(bs_alloc_extent(f.a, (struct bs_slice){ 20, 10 }, &st, &ln) == -EINVAL);
	CU_ASSERT(bs_alloc_extent(f.a, a, &st, &ln) == 0 && st == 16 && ln == 10);
	CU_ASSERT(bstack_len(f.bs) == 26);
	fx_free(&f);
}

static void grow_in_place_works_only_at_the_tail(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b, out = { 0, 0 };
	bool done = true;
	CU_ASSERT(bs_alloc(f.a, 10, &a) == 0);
	CU_ASSERT(bs_alloc(f.a, 10, &b) == 0);
	CU_ASSERT(bs_grow_in_place(f.a, a, 20, &out, &done) == 0 && !done);
	CU_ASSERT(bstack_len(f.bs) == 36);
	CU_ASSERT(bs_grow_in_place(f.a, b, 20, &out, &done) == 0 && done);
	CU_ASSERT(out.off == b.off && out.len == 20 && bstack_len(f.bs) == 46);
	fx_free(&f);
}

static void reclaim_discards_unreferenced_tail_and_refuses_overlaps(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a, b, c;
	CU_ASSERT(bs_alloc(f.a, 10, &a) == 0);
	CU_ASSERT(bs_alloc(f.a, 10, &b) == 0);
	CU_ASSERT(bs_alloc(f.a, 10, &c) == 0);
	uint64_t rec = 99;
	struct bs_slice bad[2] = { { 16, 15 }, { 26, 10 } };
	CU_ASSERT(bs_alloc_reclaim(f.a, bad, 2, &rec) == -EUCLEAN);
	CU_ASSERT(bstack_len(f.bs) == 46);
	/* only a is referenced: b is a hole Linear cannot reuse, c is the tail */
	CU_ASSERT(bs_alloc_reclaim(f.a, &a, 1, &rec) == 0);
	CU_ASSERT(rec == 20 && bstack_len(f.bs) == 26);
	CU_ASSERT(bs_alloc_reclaim(f.a, &a, 1, &rec) == 0 && rec == 0);
	fx_free(&f);
}

static void reserved_bytes_and_data_survive_reopen(void)
{
	struct fixture f;
	fx_new(&f);
	struct bs_slice a;
	uint8_t root[16], got[16], pat[100], data[100];
	h_pattern(root, 16, 1, 0);
	h_pattern(pat, 100, 2, 0);
	CU_ASSERT(bs_alloc_reserved_set(f.a, 0, root, 16) == 0);
	CU_ASSERT(bs_alloc_reserved_set(f.a, 8, root, 9) == -ERANGE);
	CU_ASSERT(bs_alloc(f.a, 100, &a) == 0);
	CU_ASSERT(bstack_set(f.bs, a.off, pat, 100) == 0);
	fx_close(&f);
	fx_open(&f, false);
	CU_ASSERT(bs_alloc_reserved_get(f.a, 0, got, 16) == 0 && memcmp(got, root, 16) == 0);
	CU_ASSERT(bstack_get(f.bs, a.off, data, 100) == 0 && memcmp(data, pat, 100) == 0);
	CU_ASSERT(bs_alloc_check(f.a, NULL, NULL) == 0);
	fx_free(&f);
}

static void open_refuses_a_payload_shorter_than_the_reserved_bytes(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bstack *bs;
	struct bs_alloc *a = NULL;
	bs = h_stack_create(dev);
	CU_ASSERT(bstack_extend(bs, 15, NULL) == 0);
	CU_ASSERT(bs_alloc_open(bs, BS_ALLOC_LINEAR, &a) == -EUCLEAN);
	CU_ASSERT(a == NULL);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static const struct h_test tests[] = {
	H_TEST(create_reserves_sixteen_bytes_and_nothing_else),
	H_TEST(alloc_extends_the_tail_with_zeros),
	H_TEST(zero_length_alloc_is_the_null_slice_and_costs_no_io),
	H_TEST(realloc_of_the_tail_grows_and_shrinks_in_place),
	H_TEST(realloc_of_a_non_tail_slice_is_unsupported_and_changes_nothing),
	H_TEST(dealloc_of_the_tail_discards_and_elsewhere_is_a_no_op),
	H_TEST(bulk_alloc_is_one_extend_and_bulk_dealloc_of_the_tail_run_one_discard),
	H_TEST(impossible_slices_are_rejected),
	H_TEST(grow_in_place_works_only_at_the_tail),
	H_TEST(reclaim_discards_unreferenced_tail_and_refuses_overlaps),
	H_TEST(reserved_bytes_and_data_survive_reopen),
	H_TEST(open_refuses_a_payload_shorter_than_the_reserved_bytes),
};

H_MAIN("alloc_linear", tests)
