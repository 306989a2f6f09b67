/*
 * test_allocview.c — the read-only view of any image's allocations
 * (core/allocview.c, issue 16) on the memory device and on real files:
 * each allocator's walk against the slices its own calls handed out, a
 * bstackfs image's catalog among them, damaged images refused with their
 * violations and never written, the shared lock.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include "allocview.h"
#include "heapmap.h"
#include "volume.h"

#define SLAB_BLOCK 256
#define MAXS 200

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* What a heap holds after the calls below: the live slices, each with its
 * extent as the allocator states it (bs_alloc_extent), and the free figures. */
struct truth {
	struct bs_slice s[MAXS];
	uint64_t es[MAXS], el[MAXS];
	uint64_t tag[MAXS];
	size_t n;
	uint64_t free_blocks, free_bytes, payload;
};

static struct bs_alloc *new_heap(struct bs_memdev *dev, enum bs_alloc_kind k)
{
	struct bstack *bs = h_stack_create(dev);
	struct bs_alloc *a;
	struct bs_alloc_opts o = { .block_size = SLAB_BLOCK };
	CU_ASSERT_FATAL(bs_alloc_create(bs, k, &o, &a) == 0);
	return a;
}

static void close_heap(struct bs_alloc *a)
{
	struct bstack *bs = a->bs;
	bs_alloc_close(a);
	bstack_close(bs);
}

static int by_slice_off(const void *x, const void *y)
{
	const struct bs_slice *a = x, *b = y;
	return a->off < b->off ? -1 : a->off > b->off;
}

/* Random allocations of every size class (Slab: up to several blocks),
 * every third freed, each live one filled with its own pattern; the heap
 * is closed and *t says what it holds. */
static void random_heap(struct bs_memdev *dev, enum bs_alloc_kind k, size_t n, struct truth *t)
{
	struct bs_alloc *a = new_heap(dev, k);
	struct bs_slice s[MAXS];
	bool live[MAXS];
	memset(t, 0, sizeof *t);
	for (size_t i = 0; i < n; i++) {
		uint64_t len = 1 + h_rand_below(h_rand_below(4) == 0 ? 3000 : 300);
		CU_ASSERT_FATAL(bs_alloc(a, len, &s[i]) == 0);
		live[i] = true;
	}
	/* Linear gives back only its tail: keep it all */
	for (size_t i = 1; k != BS_ALLOC_LINEAR && i < n; i += 3) {
		CU_ASSERT_FATAL(bs_dealloc(a, s[i]) == 0);
		live[i] = false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!live[i])
			continue;
		struct bs_slice x = s[i];
		uint8_t *b = malloc(x.len);
		h_pattern(b, x.len, 1000 + i, 0);
		CU_ASSERT_FATAL(bstack_set(a->bs, x.off, b, x.len) == 0);
		free(b);
		t->s[t->n] = x;
		t->tag[t->n] = 1000 + i;
		t->n++;
	}
	/* sort with their tags: a small insertion sort keeps them paired */
	for (size_t i = 1; i < t->n; i++)
		for (size_t j = i; j > 0 && by_slice_off(&t->s[j - 1], &t->s[j]) > 0; j--) {
			struct bs_slice ts = t->s[j];
			uint64_t tt = t->tag[j];
			t->s[j] = t->s[j - 1];
			t->tag[j] = t->tag[j - 1];
			t->s[j - 1] = ts;
			t->tag[j - 1] = tt;
		}
	for (size_t i = 0; i < t->n; i++)
		CU_ASSERT_FATAL(bs_alloc_extent(a, t->s[i], &t->es[i], &t->el[i]) == 0);
	struct bs_alloc_stats st;
	bs_alloc_stats(a, &st);
	t->free_blocks = st.free_blocks;
	t->free_bytes = st.free_bytes;
	t->payload = bstack_len(a->bs);
	close_heap(a);
}

static struct av_view *view_of(struct bs_memdev *dev, enum bs_alloc_kind want, int *rc,
			       char *why, size_t n)
{
	struct bs_io *io;
	struct av_view *v = NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	*rc = av_open_io(io, want, &v, why, n);
	return v;
}

/* The view's lists: sorted, disjoint, inside the payload, the two lists
 * sharing no byte (whatever the image). */
static bool lists_sane(const struct av_view *v)
{
	uint64_t at = 0;
	for (size_t i = 0; i < v->n_allocs; i++) {
		if (v->allocs[i].off < at || v->allocs[i].len == 0 ||
		    v->allocs[i].off + v->allocs[i].len > v->payload_bytes)
			return false;
		at = v->allocs[i].off + v->allocs[i].len;
	}
	at = 0;
	for (size_t i = 0; i < v->n_frees; i++) {
		if (v->frees[i].off < at || v->frees[i].off + v->frees[i].len > v->payload_bytes)
			return false;
		at = v->frees[i].off + v->frees[i].len;
		for (size_t j = 0; j < v->n_allocs; j++)
			if (v->allocs[j].off < at && v->frees[i].off < v->allocs[j].off + v->allocs[j].len)
				return false;
	}
	return true;
}

/* The allocations the view must show for what t holds (allocview.h). */
static size_t expected(enum bs_alloc_kind k, const struct truth *t, struct av_block *out)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++) {
		switch (k) {
		case BS_ALLOC_FIRSTFIT:   /* the block's payload: extent less header, footer */
			out[n++] = (struct av_block){ t->s[i].off, t->el[i] - 24 };
			break;
		case BS_ALLOC_SLAB:       /* each block of the extent */
			for (uint64_t b = 0; b < t->el[i]; b += SLAB_BLOCK)
				out[n++] = (struct av_block){ t->es[i] + b, SLAB_BLOCK };
			break;
		default:                  /* runs: adjacent extents merge */
			if (n && out[n - 1].off + out[n - 1].len == t->es[i])
				out[n - 1].len += t->el[i];
			else
				out[n++] = (struct av_block){ t->es[i], t->el[i] };
		}
	}
	if (k == BS_ALLOC_LINEAR) {   /* the whole payload past the reserved bytes */
		n = t->payload > 16;
		out[0] = (struct av_block){ 16, t->payload - 16 };
	}
	return n;
}

static void each_allocator_shows_what_its_own_calls_handed_out(void)
{
	h_rng_seed();
	for (size_t ki = 0; ki < NKINDS; ki++) {
		for (int round = 0; round < 5; round++) {
			struct bs_memdev *dev = bs_memdev_new();
			struct truth t;
			static struct av_block exp[MAXS * 16];
			char why[512];
			int rc;
			random_heap(dev, kinds[ki], 20 + h_rand_below(100), &t);
			struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
			if (kinds[ki] == BS_ALLOC_LINEAR) {
				/* no magic, no catalog: only when asked for */
				CU_ASSERT(rc == -EUCLEAN && strstr(why, "allocator=linear"));
				v = view_of(dev, BS_ALLOC_LINEAR, &rc, why, sizeof why);
			}
			if (rc)
				printf("\n%s: %s\n", bs_alloc_kind_name(kinds[ki]), why);
			CU_ASSERT_FATAL(rc == 0);
			CU_ASSERT(v->kind == kinds[ki]);
			CU_ASSERT(lists_sane(v));
			CU_ASSERT(!v->has_catalog);
			size_t n = expected(kinds[ki], &t, exp);
			CU_ASSERT(v->n_allocs == n);
			for (size_t i = 0; i < n && i < v->n_allocs; i++)
				CU_ASSERT(v->allocs[i].off == exp[i].off && v->allocs[i].len == exp[i].len);
			CU_ASSERT(v->n_frees == t.free_blocks);
			CU_ASSERT(v->free_bytes == t.free_bytes);
			/* each slice's bytes read back through the view */
			for (size_t i = 0; i < t.n; i++) {
				uint8_t *b = malloc(t.s[i].len);
				CU_ASSERT(av_read(v, t.s[i].off, b, t.s[i].len) == 0);
				CU_ASSERT(h_pattern_ok(b, t.s[i].len, t.tag[i], 0));
				free(b);
			}
			CU_ASSERT(av_read(v, v->payload_bytes - 1, why, 2) == -ERANGE);
			CU_ASSERT(v->reserved_bytes == (kinds[ki] == BS_ALLOC_GHOST ? 32 :
							kinds[ki] == BS_ALLOC_SLAB ? 24 : 16));
			av_close(v);
			bs_memdev_free(dev);
		}
	}
}

static void a_bstackfs_image_shows_its_catalog_and_files_among_the_allocations(void)
{
	for (size_t ki = 0; ki < NKINDS; ki++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io;
		struct vol *vol;
		struct vol_error err;
		struct vol_opts o = { .allocator = kinds[ki], .create = true,
				      .block_size = kinds[ki] == BS_ALLOC_SLAB ? 512 : 0 };
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
		CU_ASSERT_FATAL(vol_open_io(io, &o, &vol, &err) == 0);
		uint64_t off[6], len[6], cat_off = 0;
		for (int i = 0; i < 6; i++) {
			struct vol_attr a;
			struct vol_alloc_rec rec;
			char name[8];
			uint8_t buf[3000];
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_FATAL(vol_create(vol, VOL_ROOT_INO, name, 0644, 0, 0, &a) == 0);
			h_pattern(buf, 500 * (i + 1), a.ino, 0);
			CU_ASSERT(vol_write(vol, a.ino, buf, 500 * (i + 1), 0) == 500 * (i + 1));
			CU_ASSERT(vol_release(vol, a.ino) == 0);
			CU_ASSERT(vol_alloc_of(vol, a.ino, &rec) == 0);
			off[i] = rec.slice.off;
			len[i] = rec.slice.len;
		}
		CU_ASSERT(vol_close(vol) == 0);
		char why[512];
		int rc;
		/* Linear is recognised by its catalog */
		struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
		if (rc)
			printf("\n%s: %s\n", bs_alloc_kind_name(kinds[ki]), why);
		CU_ASSERT_FATAL(rc == 0);
		CU_ASSERT(v->kind == kinds[ki]);
		CU_ASSERT(v->has_catalog);
		CU_ASSERT(lists_sane(v));
		cat_off = v->catalog.off;
		/* the catalog and every file inside exactly one allocation, which
		 * starts at it for FirstFit (one block each) */
		for (int i = -1; i < 6; i++) {
			uint64_t o1 = i < 0 ? cat_off : off[i], l1 = i < 0 ? v->catalog.len : len[i];
			int inside = 0;
			for (size_t j = 0; j < v->n_allocs; j++) {
				const struct av_block *b = &v->allocs[j];
				if (b->off <= o1 && o1 + l1 <= b->off + b->len &&
				    (kinds[ki] != BS_ALLOC_FIRSTFIT || b->off == o1))
					inside++;
			}
			CU_ASSERT(inside == 1 || (kinds[ki] == BS_ALLOC_SLAB && l1 > 512));
		}
		char *text;
		size_t tl;
		CU_ASSERT(av_stats_text(v, &text, &tl) == 0);
		CU_ASSERT(strstr(text, "bstackfs_catalog 1\n") != NULL);
		CU_ASSERT(strncmp(text, "allocator ", 10) == 0);
		free(text);
		av_close(v);
		bs_memdev_free(dev);
	}
}

/* FirstFit's recovery flag makes its open write (the recovery scan): the
 * view applies it in memory only. */
static void the_open_time_recovery_stays_in_memory(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct truth t;
	uint8_t *before, *after;
	size_t nb, na;
	char why[256];
	int rc;
	random_heap(dev, BS_ALLOC_FIRSTFIT, 30, &t);
	struct bs_io *io;
	struct bstack *bs;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0 && bstack_open(io, &bs) == 0);
	uint8_t flag[4] = { 1, 0, 0, 0 };
	CU_ASSERT_FATAL(bstack_set(bs, 24, flag, 4) == 0);
	bstack_close(bs);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &before, &nb) == 0);
	bs_memdev_reset_counts(dev);
	struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
	CU_ASSERT_FATAL(rc == 0);
	CU_ASSERT(v->withheld_writes > 0);
	CU_ASSERT(v->n_allocs == t.n);
	av_close(v);
	CU_ASSERT(bs_memdev_writes(dev) == 0 && bs_memdev_syncs(dev) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &after, &na) == 0);
	CU_ASSERT(nb == na && memcmp(before, after, nb) == 0);
	free(before);
	free(after);
	bs_memdev_free(dev);
}

static void poke(struct bs_memdev *dev, uint64_t off, uint64_t val, int width)
{
	struct bs_io *io;
	struct bstack *bs;
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(val >> (8 * i));
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0 && bstack_open(io, &bs) == 0);
	CU_ASSERT_FATAL(bstack_set(bs, off, b, (uint64_t)width) == 0);
	bstack_close(bs);
}

/* The refusal of a damaged image: an error, a reason, not a byte written. */
static void refused_unwritten(struct bs_memdev *dev, const char *what, const char *needle)
{
	uint8_t *before, *after;
	size_t nb, na;
	char why[1400] = "";
	int rc;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &before, &nb) == 0);
	bs_memdev_reset_counts(dev);
	struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
	CU_ASSERT(rc < 0 && v == NULL);
	if (rc >= 0 || (needle && !strstr(why, needle)))
		printf("\n%s: rc %d, \"%s\" (wanted \"%s\")\n", what, rc, why,
		       needle ? needle : "");
	CU_ASSERT(why[0] != '\0');
	CU_ASSERT(!needle || strstr(why, needle));
	av_close(v);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &after, &na) == 0);
	CU_ASSERT(nb == na && memcmp(before, after, nb) == 0);
	free(before);
	free(after);
}

/* An image the allocator's open repairs: the view shows the repaired heap
 * of small_heap (three allocations around the hole), the image unwritten. */
static void repaired_unwritten(struct bs_memdev *dev, const struct bs_slice s[4])
{
	uint8_t *before, *after;
	size_t nb, na;
	char why[1400] = "";
	int rc;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &before, &nb) == 0);
	bs_memdev_reset_counts(dev);
	struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
	CU_ASSERT_FATAL(rc == 0);
	CU_ASSERT(v->withheld_writes > 0);
	CU_ASSERT(v->n_allocs == 3 && v->n_frees == 1 && v->frees[0].off == s[1].off);
	CU_ASSERT(lists_sane(v));
	av_close(v);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &after, &na) == 0);
	CU_ASSERT(nb == na && memcmp(before, after, nb) == 0);
	free(before);
	free(after);
}

/* A heap a, [b freed], c, d with 48-byte allocations. */
static void small_heap(struct bs_memdev *dev, enum bs_alloc_kind k, struct bs_slice s[4])
{
	struct bs_alloc *a = new_heap(dev, k);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_FATAL(bs_alloc(a, 48, &s[i]) == 0);
	CU_ASSERT_FATAL(bs_dealloc(a, s[1]) == 0);
	close_heap(a);
}

static void damaged_metadata_is_refused_with_the_violations(void)
{
	static const struct { enum bs_alloc_kind k; uint64_t head, next; } c[] = {
		{ BS_ALLOC_GHOST, 40, 16 }, { BS_ALLOC_FIRSTFIT, 32, 0 }, { BS_ALLOC_SLAB, 40, 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct bs_slice s[4];
		struct bs_memdev *dev = bs_memdev_new();
		const char *name = bs_alloc_kind_name(c[i].k);
		small_heap(dev, c[i].k, s);
		/* a free block naming itself as the next one: a cycle */
		poke(dev, s[1].off + c[i].next, s[1].off, 8);
		refused_unwritten(dev, name, name);
		bs_memdev_free(dev);
		/* a head outside the payload, off the grid, near UINT64_MAX:
		 * FirstFit's open repairs a bad head (its recovery rebuilds the
		 * list from the block headers), in memory only; the others refuse */
		uint64_t heads[] = { 1u << 20, s[1].off + 3, UINT64_MAX - 7 };
		for (size_t h = 0; h < 3; h++) {
			dev = bs_memdev_new();
			small_heap(dev, c[i].k, s);
			poke(dev, c[i].head, heads[h], 8);
			if (c[i].k == BS_ALLOC_FIRSTFIT)
				repaired_unwritten(dev, s);
			else
				refused_unwritten(dev, name, name);
			bs_memdev_free(dev);
		}
	}
	/* One poke each into a fresh small heap: at byte `at` (plus the
	 * offset of slice `rel` when rel >= 0), `width` bytes of `val`. */
	static const struct {
		enum bs_alloc_kind k;
		int rel;
		int64_t at;
		uint64_t val;
		int width;
		const char *what, *needle;
	} p[] = {
		/* FirstFit: a live block's header with an impossible size */
		{ BS_ALLOC_FIRSTFIT, 2, -16, 1ULL << 40, 8, "firstfit header", "firstfit" },
		/* the check's own violations are named: a footer that disagrees */
		{ BS_ALLOC_FIRSTFIT, 2, 48, 4096, 8, "firstfit footer", "violation" },
		/* a Slab block size that is not the arena's */
		{ BS_ALLOC_SLAB, -1, 32, 7, 8, "slab block size", "slab" },
		/* GhostTree: a node with an impossible size */
		{ BS_ALLOC_GHOST, 1, 0, 1ULL << 50, 8, "ghost node", "ghost" },
		/* an unknown allocator version, a bad magic */
		{ BS_ALLOC_GHOST, -1, 37, 9, 1, "version", "version" },
		{ BS_ALLOC_GHOST, -1, 32, 0x5858585858585858ULL, 8, "magic",
		  "no allocator magic" },
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		struct bs_slice s[4];
		struct bs_memdev *dev = bs_memdev_new();
		small_heap(dev, p[i].k, s);
		uint64_t base = p[i].rel >= 0 ? s[p[i].rel].off : 0;
		poke(dev, base + (uint64_t)p[i].at, p[i].val, p[i].width);
		refused_unwritten(dev, p[i].what, p[i].needle);
		bs_memdev_free(dev);
	}
}

/* Random bytes over the allocators' metadata and the first blocks: the view
 * opens with sane lists or refuses with a reason; it never crashes, loops
 * or writes. */
static void random_damage_never_crashes_loops_or_writes(void)
{
	h_rng_seed();
	for (size_t ki = 0; ki < 3; ki++) {
		for (int round = 0; round < 150; round++) {
			struct bs_memdev *dev = bs_memdev_new();
			struct truth t;
			uint8_t *img, *after;
			size_t n, na;
			random_heap(dev, kinds[ki], 12, &t);
			CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &img, &n) == 0);
			int hits = 1 + (int)h_rand_below(4);
			for (int h = 0; h < hits; h++) {
				/* the header (not the bstack's) or an early block */
				uint64_t at = 16 + 24 + h_rand_below(n - 40 < 700 ? n - 40 : 700);
				img[at] ^= (uint8_t)(1 + h_rand_below(255));
			}
			CU_ASSERT_FATAL(bs_memdev_load(dev, img, n) == 0);
			bs_memdev_reset_counts(dev);
			char why[1400] = "";
			int rc;
			struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
			if (rc == 0) {
				CU_ASSERT(lists_sane(v));
			} else {
				CU_ASSERT(why[0] != '\0' && v == NULL);
			}
			av_close(v);
			CU_ASSERT(bs_memdev_writes(dev) == 0);
			CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &after, &na) == 0);
			CU_ASSERT(n == na && memcmp(img, after, n) == 0);
			free(img);
			free(after);
			bs_memdev_free(dev);
		}
	}
}

static void an_allocator_that_is_not_the_one_asked_for_is_refused(void)
{
	struct bs_slice s[4];
	struct bs_memdev *dev = bs_memdev_new();
	char why[256];
	int rc;
	small_heap(dev, BS_ALLOC_GHOST, s);
	struct av_view *v = view_of(dev, BS_ALLOC_FIRSTFIT, &rc, why, sizeof why);
	CU_ASSERT(rc == -EINVAL && v == NULL && strstr(why, "mismatch"));
	v = view_of(dev, BS_ALLOC_GHOST, &rc, why, sizeof why);
	CU_ASSERT(rc == 0 && v && v->kind == BS_ALLOC_GHOST);
	av_close(v);
	bs_memdev_free(dev);
}

static void an_image_with_a_live_journal_is_refused(void)
{
	struct bs_slice s[4];
	struct bs_memdev *dev = bs_memdev_new();
	uint8_t *img;
	size_t n;
	small_heap(dev, BS_ALLOC_FIRSTFIT, s);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &img, &n) == 0);
	memcpy(img, "BSTJ", 4);
	CU_ASSERT_FATAL(bs_memdev_load(dev, img, n) == 0);
	free(img);
	refused_unwritten(dev, "live journal", "journal");
	bs_memdev_free(dev);
}

static void names_are_fixed_width_hex_and_parse_back(void)
{
	struct av_block b = { 0x1000, 0x400 }, p;
	char name[AV_NAME_MAX];
	av_name(&b, name);
	CU_ASSERT_STRING_EQUAL(name, "000000001000-000000000400");
	CU_ASSERT(av_parse_name(name, &p) && p.off == b.off && p.len == b.len);
	CU_ASSERT(!av_parse_name("1000-400", &p));
	CU_ASSERT(!av_parse_name("000000001000-000000000400x", &p));
	CU_ASSERT(!av_parse_name("00000000100g-000000000400", &p));
	CU_ASSERT(!av_parse_name("+00000001000-000000000400", &p));
	CU_ASSERT(!av_parse_name("", &p));
	/* names sort by address */
	struct av_block c = { 0xff0, 0x10000 };
	char other[AV_NAME_MAX];
	av_name(&c, other);
	CU_ASSERT(strcmp(other, name) < 0);
}

/* On a real file: views share the lock with each other, and exclude every
 * exclusive opener (a mount, fsck, the bstack crate) and are excluded by it. */
static void views_share_the_lock_and_exclude_writers(void)
{
	struct bs_slice s[4];
	struct bs_memdev *dev = bs_memdev_new();
	uint8_t *img;
	size_t n;
	char *path = h_tmp_path("shared.bst");
	char why[256];
	small_heap(dev, BS_ALLOC_SLAB, s);
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &img, &n) == 0);
	CU_ASSERT_FATAL(h_write_file(path, img, n) == 0);
	struct av_view *v1, *v2;
	CU_ASSERT_FATAL(av_open(path, BS_ALLOC_NONE, &v1, why, sizeof why) == 0);
	CU_ASSERT_FATAL(av_open(path, BS_ALLOC_SLAB, &v2, why, sizeof why) == 0);
	CU_ASSERT(v1->n_allocs == 3 && v2->n_frees == 1);
	struct bstack *bs;
	CU_ASSERT(bstack_open_path(path, false, &bs) == BSTACK_E_INUSE);
	av_close(v1);
	CU_ASSERT(bstack_open_path(path, false, &bs) == BSTACK_E_INUSE);
	av_close(v2);
	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT(av_open(path, BS_ALLOC_NONE, &v1, why, sizeof why) == BSTACK_E_INUSE);
	CU_ASSERT(strstr(why, "in use") != NULL);
	bstack_close(bs);
	/* the file is as it was written */
	uint8_t *now;
	size_t nn;
	CU_ASSERT_FATAL(h_read_file(path, &now, &nn) == 0);
	CU_ASSERT(nn == n && memcmp(now, img, n) == 0);
	free(now);
	CU_ASSERT(av_open("/nonexistent/x.bst", BS_ALLOC_NONE, &v1, why, sizeof why) == -ENOENT);
	free(img);
	free(path);
	bs_memdev_free(dev);
}

/* The fuzzer's regression images (tests/fuzz-regress): the view opens with
 * sane lists or refuses with a reason, never writes, and opens every one
 * a mount accepts clean. */
static void fuzz_regression_images_are_viewed_or_refused_unwritten(void)
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
		uint8_t *buf, *after;
		size_t len, na;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		CU_ASSERT_FATAL(h_read_file(path, &buf, &len) == 0);
		seen++;
		/* does a mount accept it clean? */
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io;
		struct vol *vol;
		struct vol_error err;
		struct vol_opts o = { 0 };
		CU_ASSERT_FATAL(bs_memdev_load(dev, buf, len) == 0 && bs_io_mem_open(dev, &io) == 0);
		bool mounts = vol_open_io(io, &o, &vol, &err) == 0;
		if (mounts) {
			mounts = vol_check(vol, NULL, NULL) == 0;
			vol_close(vol);
		}
		bs_memdev_free(dev);
		dev = bs_memdev_new();
		CU_ASSERT_FATAL(bs_memdev_load(dev, buf, len) == 0);
		char why[1400] = "";
		int rc;
		struct av_view *v = view_of(dev, BS_ALLOC_NONE, &rc, why, sizeof why);
		if (rc == 0) {
			CU_ASSERT(lists_sane(v));
		} else {
			CU_ASSERT(why[0] != '\0' && strchr(why, '\n') == NULL);
		}
		if (mounts && rc != 0)
			printf("\n%s: mounts clean, the view refuses: %s\n", e->d_name, why);
		CU_ASSERT(!mounts || rc == 0);
		av_close(v);
		CU_ASSERT(bs_memdev_writes(dev) == 0);
		CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &after, &na) == 0);
		CU_ASSERT(na == len && memcmp(after, buf, len) == 0);
		free(after);
		free(buf);
		bs_memdev_free(dev);
	}
	closedir(d);
	CU_ASSERT(seen > 0);
}

static const struct h_test tests[] = {
	H_TEST(each_allocator_shows_what_its_own_calls_handed_out),
	H_TEST(a_bstackfs_image_shows_its_catalog_and_files_among_the_allocations),
	H_TEST(the_open_time_recovery_stays_in_memory),
	H_TEST(damaged_metadata_is_refused_with_the_violations),
	H_TEST(random_damage_never_crashes_loops_or_writes),
	H_TEST(an_allocator_that_is_not_the_one_asked_for_is_refused),
	H_TEST(an_image_with_a_live_journal_is_refused),
	H_TEST(names_are_fixed_width_hex_and_parse_back),
	H_TEST(views_share_the_lock_and_exclude_writers),
	H_TEST(fuzz_regression_images_are_viewed_or_refused_unwritten),
};

H_MAIN("allocview", tests)
