/*
 * test_alloc_desc.c — the allocator descriptors (struct bs_alloc_desc,
 * core/alloc.h): every one built in, walked with bs_alloc_desc_at, agrees
 * with what the allocator it describes does on an empty memory stack —
 * its name, its kind, its reserved bytes, its magic and the capabilities
 * it claims.  A kind not built in has no descriptor and answers -ENOTSUP.
 */
#include "alloc.h"
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FOR_EACH_DESC(d) \
	for (size_t d##_i = 0; ((d) = bs_alloc_desc_at(d##_i)); d##_i++)

/* A fresh allocator of d's kind on a memory device; *bs and *a are open. */
/* A memory device with a fresh allocator of d's kind on it; destroy()
 * takes all three down. */
static struct bs_memdev *create_on_memory(const struct bs_alloc_desc *d,
					  const struct bs_alloc_opts *o, struct bstack **bs,
					  struct bs_alloc **a)
{
	struct bs_memdev *dev = bs_memdev_new();
	*bs = h_stack_create(dev);
	*a = NULL;
	int r = bs_alloc_create(*bs, d->kind, o, a);
	if (r)
		printf("\n%s: create %d\n", d->name, r);
	CU_ASSERT_FATAL(r == 0 && *a);
	return dev;
}

static void destroy(struct bs_memdev *dev, struct bstack *bs, struct bs_alloc *a)
{
	bs_alloc_close(a);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void print_violation(void *ctx, const char *msg)
{
	(void)ctx;
	printf("\n  violation: %s", msg);
}

/* The extra stat `key` of a, or false when a has none of that name. */
static bool extra_of(struct bs_alloc *a, const char *key, uint64_t *value)
{
	struct bs_alloc_stats st;
	bs_alloc_stats(a, &st);
	for (int i = 0; i < st.n_extra; i++)
		if (strcmp(st.extra[i].key, key) == 0) {
			*value = st.extra[i].value;
			return true;
		}
	return false;
}

static void the_table_is_in_enum_order_and_ends_with_null(void)
{
	const struct bs_alloc_desc *d;
	enum bs_alloc_kind prev = BS_ALLOC_NONE;
	size_t n = 0;
	FOR_EACH_DESC(d) {
		CU_ASSERT(d->kind > prev);
		CU_ASSERT(d->name && *d->name && d->free_order);
		prev = d->kind;
		n++;
	}
	CU_ASSERT(n <= 4);
	CU_ASSERT(bs_alloc_desc_at(n) == NULL);
	CU_ASSERT(bs_alloc_desc_at(n + 1) == NULL);
	CU_ASSERT(bs_alloc_desc_at((size_t)-1) == NULL);
}

static void every_name_round_trips_through_parse_and_by_name(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		CU_ASSERT(bs_alloc_kind_parse(d->name) == d->kind);
		CU_ASSERT(bs_alloc_desc_by_name(d->name) == d);
		CU_ASSERT(bs_alloc_desc_of(d->kind) == d);
		CU_ASSERT_STRING_EQUAL(bs_alloc_kind_name(d->kind), d->name);
	}
}

static void create_gives_an_allocator_its_descriptor_describes(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		struct bs_memdev *dev;
		struct bstack *bs;
		struct bs_alloc *a;
		struct bs_alloc_stats st;
		dev = create_on_memory(d, NULL, &bs, &a);
		CU_ASSERT(a->desc == d);
		CU_ASSERT(a->kind == d->kind);
		CU_ASSERT(a->reserved_len == d->reserved_len);
		CU_ASSERT(bstack_len(bs) >= d->reserved_len);
		bs_alloc_stats(a, &st);
		CU_ASSERT_STRING_EQUAL(st.name, d->name);
		CU_ASSERT(st.reserved_bytes == d->reserved_len);
		/* the same through open */
		bs_alloc_close(a);
		a = NULL;
		CU_ASSERT_FATAL(bs_alloc_open(bs, d->kind, &a) == 0);
		CU_ASSERT(a->desc == d && a->reserved_len == d->reserved_len);
		destroy(dev, bs, a);
	}
}

static void detect_finds_the_magic_at_magic_off_and_linear_by_none(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		struct bs_memdev *dev;
		struct bstack *bs;
		struct bs_alloc *a;
		struct bs_alloc_stats st;
		enum bs_alloc_kind k = d->kind == BS_ALLOC_GHOST ? BS_ALLOC_SLAB : BS_ALLOC_GHOST;
		dev = create_on_memory(d, NULL, &bs, &a);
		CU_ASSERT(bs_alloc_detect(bs, &k) == 0);
		bs_alloc_stats(a, &st);
		if (d->caps & BS_CAP_MAGIC) {
			uint8_t m[8];
			CU_ASSERT(k == d->kind);
			CU_ASSERT(strlen(d->tag) == 4);
			CU_ASSERT(d->magic_off >= d->reserved_len);
			CU_ASSERT_FATAL(bstack_get(bs, d->magic_off, m, sizeof m) == 0);
			CU_ASSERT(memcmp(m, d->tag, 4) == 0 && m[4] == 0 && m[5] == 1);
			CU_ASSERT(strncmp(st.magic, d->tag, 4) == 0 && st.magic[4] == '-');
		} else {
			CU_ASSERT(k == BS_ALLOC_NONE);
			CU_ASSERT_STRING_EQUAL(d->tag, "");
			CU_ASSERT_STRING_EQUAL(st.magic, "none");
		}
		destroy(dev, bs, a);
	}
}

/* BS_CAP_REUSES_HOLES: a slice below the tail shrinks in place and its
 * freed space is handed out again; without it (Linear) neither. */
static void reuses_holes_is_what_realloc_and_dealloc_do_below_the_tail(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		struct bs_memdev *dev;
		struct bstack *bs;
		struct bs_alloc *a;
		struct bs_slice x, y, out, z;
		bool reuses = d->caps & BS_CAP_REUSES_HOLES;
		dev = create_on_memory(d, NULL, &bs, &a);
		CU_ASSERT_FATAL(bs_alloc(a, 100, &x) == 0 && bs_alloc(a, 100, &y) == 0);
		CU_ASSERT(x.off < y.off);
		int r = bs_realloc(a, x, 50, &out);
		CU_ASSERT(reuses ? r == 0 && out.off == x.off && out.len == 50 : r == -ENOTSUP);
		if (r == 0)
			x = out;
		CU_ASSERT(bs_dealloc(a, x) == 0);
		CU_ASSERT_FATAL(bs_alloc(a, 40, &z) == 0);
		CU_ASSERT(reuses ? z.off < y.off : z.off > y.off);
		CU_ASSERT(bs_alloc_check(a, print_violation, NULL) == 0);
		destroy(dev, bs, a);
	}
}

/* BS_CAP_BLOCK_SIZE: the option is taken (and reported as block_size);
 * BS_CAP_OWN_RECOVERY: the extra stat recovery_runs.  Each only where
 * claimed. */
static void block_size_and_own_recovery_show_in_the_stats_only_where_claimed(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		struct bs_memdev *dev;
		struct bs_alloc_opts o = { .block_size = 64 };
		struct bstack *bs;
		struct bs_alloc *a;
		uint64_t v = 0;
		dev = create_on_memory(d, &o, &bs, &a);
		bool bsize = extra_of(a, "block_size", &v);
		CU_ASSERT(bsize == ((d->caps & BS_CAP_BLOCK_SIZE) != 0));
		CU_ASSERT(!bsize || v == 64);
		CU_ASSERT(extra_of(a, "recovery_runs", &v) ==
			  ((d->caps & BS_CAP_OWN_RECOVERY) != 0));
		destroy(dev, bs, a);
	}
}

/* Linear alone keeps no free structure, and only GhostTree lists its free
 * blocks by depth (what heapmap and inspect used to switch on). */
static void free_structure_and_order_match_the_allocators(void)
{
	const struct bs_alloc_desc *d;
	FOR_EACH_DESC(d) {
		CU_ASSERT((d->free_structure == NULL) == (d->kind == BS_ALLOC_LINEAR));
		CU_ASSERT_STRING_EQUAL(d->free_order,
				       d->kind == BS_ALLOC_GHOST ? "depth" : "position");
		CU_ASSERT((d->rebuild == NULL) == (d->kind == BS_ALLOC_LINEAR));
	}
}

static void unknown_and_missing_kinds_have_no_descriptor(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bstack *bs = h_stack_create(dev);
	struct bs_alloc *a = NULL;
	CU_ASSERT(bs_alloc_desc_of(BS_ALLOC_NONE) == NULL);
	CU_ASSERT(bs_alloc_desc_of((enum bs_alloc_kind)99) == NULL);
	CU_ASSERT(bs_alloc_desc_by_name("none") == NULL);
	CU_ASSERT(bs_alloc_desc_by_name("") == NULL);
	CU_ASSERT(bs_alloc_kind_parse("GHOST") == BS_ALLOC_NONE);
	CU_ASSERT_STRING_EQUAL(bs_alloc_kind_name(BS_ALLOC_NONE), "none");
	CU_ASSERT_STRING_EQUAL(bs_alloc_kind_name((enum bs_alloc_kind)99), "none");
	CU_ASSERT(!bs_alloc_kind_can(BS_ALLOC_NONE, BS_CAP_MAGIC));
	CU_ASSERT(bs_alloc_create(bs, BS_ALLOC_NONE, NULL, &a) == -EINVAL);
	CU_ASSERT(bs_alloc_open(bs, BS_ALLOC_NONE, &a) == -EINVAL);
	CU_ASSERT(bs_alloc_rebuild(bs, BS_ALLOC_NONE, NULL, 0, &a) == -EINVAL);
	/* a kind of the enum that is not built in (-Dcore_modules) */
	for (int k = BS_ALLOC_LINEAR; k <= BS_ALLOC_GHOST; k++) {
		if (bs_alloc_desc_of((enum bs_alloc_kind)k))
			continue;
		printf("[%d not built] ", k);
		CU_ASSERT(bs_alloc_create(bs, (enum bs_alloc_kind)k, NULL, &a) == -ENOTSUP);
		CU_ASSERT(bs_alloc_open(bs, (enum bs_alloc_kind)k, &a) == -ENOTSUP);
		CU_ASSERT(bs_alloc_rebuild(bs, (enum bs_alloc_kind)k, NULL, 0, &a) == -ENOTSUP);
	}
	CU_ASSERT(a == NULL);
	CU_ASSERT(bstack_len(bs) == 0);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static const struct h_test tests[] = {
	H_TEST(the_table_is_in_enum_order_and_ends_with_null),
	H_TEST(every_name_round_trips_through_parse_and_by_name),
	H_TEST(create_gives_an_allocator_its_descriptor_describes),
	H_TEST(detect_finds_the_magic_at_magic_off_and_linear_by_none),
	H_TEST(reuses_holes_is_what_realloc_and_dealloc_do_below_the_tail),
	H_TEST(block_size_and_own_recovery_show_in_the_stats_only_where_claimed),
	H_TEST(free_structure_and_order_match_the_allocators),
	H_TEST(unknown_and_missing_kinds_have_no_descriptor),
};

H_MAIN("alloc_desc", tests)
