/*
 * heapmap.c — read-only walks of each allocator's free space and the map of
 * the payload (heapmap.h; docs/design.md §3, §7).
 *
 * The walks decode the allocators' documented on-disk layouts (the
 * comments at the top of alloc_ghost.c, alloc_firstfit.c, alloc_slab.c)
 * through bstack_get, without their locks or their code, so they never
 * change the image.  Each is bounded by the number of blocks the arena can
 * hold and validates every pointer before it follows it:
 *
 *   GhostTree  root u64 at payload 40; a free block of `size` bytes (a
 *              multiple of 32, >= 32, at p >= 48 with p % 32 == 16) holds
 *              its node in its first 32 bytes: size +0, left +16, right +24
 *   FirstFit   free head u64 at payload 32 (a payload offset); a block is a
 *              16-byte header (size u64, flags u32 bit 0 free) + size bytes
 *              + an 8-byte footer; a free payload's first 8 bytes are next
 *   Slab       block size u64 at 32, free head u64 at 40; a free block's
 *              first 8 bytes are the next one's offset
 *   Linear     keeps no free space
 *
 * The map (hm_build) puts every byte of the payload in one span: the
 * header, each allocation split into its file bytes, slack and per-block
 * overhead (from bs_alloc_extent), the catalog, each free block (its
 * header and footer as overhead), and what is left as unreferenced.
 */
#include "heapmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define GT_ROOT_OFF   40
#define GT_ARENA      48
#define GT_GRAN       32
#define GT_MAX_DEPTH  128
#define FF_HEAD_OFF   32
#define FF_ARENA      48
#define FF_BH         16
#define FF_BF         8
#define FF_MIN        16
#define SLAB_BSIZE    32
#define SLAB_HEAD     40
#define SLAB_ARENA    48

static int get64(struct bstack *bs, uint64_t off, uint64_t *v)
{
	uint8_t b[8];
	if (!range_ok(off, 8, bstack_len(bs)))
		return -EUCLEAN;
	int r = bstack_get(bs, off, b, 8);
	if (!r)
		*v = le64_get(b);
	return r;
}

const char *hm_free_structure(enum bs_alloc_kind kind)
{
	const struct bs_alloc_desc *d = bs_alloc_desc_of(kind);
	return d && d->free_structure ? d->free_structure : "none";
}

/* ---- GhostTree: in order, recursion bounded by the seed's depth guard --- */

struct gt_walk {
	struct bstack *bs;
	uint64_t len, visits, max_visits;
	hm_free_fn fn;
	void *ctx;
};

static int gt_visit(struct gt_walk *w, uint64_t p, uint64_t depth)
{
	uint8_t node[32];
	int r;
	if (p == 0)
		return 0;
	if (depth >= GT_MAX_DEPTH || ++w->visits > w->max_visits)
		return -EUCLEAN;           /* a cycle or a tree no open leaves */
	if (p < GT_ARENA || p % GT_GRAN != 16 || !range_ok(p, GT_GRAN, w->len))
		return -EUCLEAN;
	if ((r = bstack_get(w->bs, p, node, sizeof node)))
		return r;
	uint64_t size = le64_get(node);
	if (size < GT_GRAN || size % GT_GRAN || !range_ok(p, size, w->len))
		return -EUCLEAN;
	if ((r = gt_visit(w, le64_get(node + 16), depth + 1)))
		return r;
	struct hm_free f = { p, size, p, size, depth };
	if ((r = w->fn(w->ctx, &f)))
		return r;
	return gt_visit(w, le64_get(node + 24), depth + 1);
}

static int walk_ghost(struct bs_alloc *a, hm_free_fn fn, void *ctx)
{
	struct gt_walk w = { a->bs, bstack_len(a->bs), 0, 0, fn, ctx };
	uint64_t root;
	int r = get64(a->bs, GT_ROOT_OFF, &root);
	if (r)
		return r;
	w.max_visits = w.len > GT_ARENA ? (w.len - GT_ARENA) / GT_GRAN : 0;
	return gt_visit(&w, root, 0);
}

/* ---- FirstFit: the list from its head ----------------------------------- */

static int walk_firstfit(struct bs_alloc *a, hm_free_fn fn, void *ctx)
{
	struct bstack *bs = a->bs;
	uint64_t len = bstack_len(bs), p, size, end;
	uint64_t max = len > FF_ARENA ? (len - FF_ARENA) / (FF_BH + FF_MIN + FF_BF) + 1 : 0;
	int r = get64(bs, FF_HEAD_OFF, &p);
	for (uint64_t i = 0; !r && p; i++) {
		if (i >= max || p < FF_ARENA + FF_BH)
			return -EUCLEAN;
		if ((r = get64(bs, p - FF_BH, &size)))
			return r;
		if (size < FF_MIN || size % 8 || !add_ok(p, size, &end) ||
		    !range_ok(end, FF_BF, len))
			return -EUCLEAN;
		struct hm_free f = { p, size, p - FF_BH, size + FF_BH + FF_BF, i };
		if ((r = fn(ctx, &f)) || (r = get64(bs, p, &p)))
			return r;
	}
	return r;
}

/* ---- Slab: the list from its head ---------------------------------------- */

static int walk_slab(struct bs_alloc *a, hm_free_fn fn, void *ctx)
{
	struct bstack *bs = a->bs;
	uint64_t len = bstack_len(bs), bsize, p;
	int r = get64(bs, SLAB_BSIZE, &bsize);
	if (r)
		return r;
	if (bsize < 8)
		return -EUCLEAN;
	uint64_t max = len > SLAB_ARENA ? (len - SLAB_ARENA) / bsize : 0;
	if ((r = get64(bs, SLAB_HEAD, &p)))
		return r;
	for (uint64_t i = 0; p; i++) {
		if (i >= max || p < SLAB_ARENA || (p - SLAB_ARENA) % bsize ||
		    !range_ok(p, bsize, len))
			return -EUCLEAN;
		struct hm_free f = { p, bsize, p, bsize, i };
		if ((r = fn(ctx, &f)) || (r = get64(bs, p, &p)))
			return r;
	}
	return 0;
}

/* ---- what the walks know of each layout, by kind ------------------------- */

/*
 * The walk of each allocator's free structure and the footer behind each
 * of its blocks (FirstFit's 8 bytes; the others have none).  Keyed by kind
 * here rather than held in the descriptor, so that alloc_*.c never depend
 * on heapmap.  An allocator with a free structure but no entry has no walk
 * (-ENOTSUP); one without a free structure (Linear) needs none.
 */
struct hm_layout {
	int (*walk_free)(struct bs_alloc *a, hm_free_fn fn, void *ctx);
	uint64_t footer;
};

static const struct hm_layout layouts[] = {
	[BS_ALLOC_FIRSTFIT] = { walk_firstfit, FF_BF },
	[BS_ALLOC_SLAB] = { walk_slab, 0 },
	[BS_ALLOC_GHOST] = { walk_ghost, 0 },
};

static const struct hm_layout *layout_of(enum bs_alloc_kind kind)
{
	if ((size_t)kind >= sizeof layouts / sizeof layouts[0] || !layouts[kind].walk_free)
		return NULL;
	return &layouts[kind];
}

int hm_walk_free(struct bs_alloc *a, hm_free_fn fn, void *ctx)
{
	const struct hm_layout *l = layout_of(a->kind);
	if (!a->desc->free_structure)
		return 0;   /* keeps no free space */
	return l ? l->walk_free(a, fn, ctx) : -ENOTSUP;
}

/* ---- the map ------------------------------------------------------------- */

const char *hm_kind_name(enum hm_kind k)
{
	static const char *const names[HM_NKINDS] = {
		"header", "file", "slack", "overhead", "catalog", "free", "unreferenced",
		"xattr",
	};
	return k < HM_NKINDS ? names[k] : "?";
}

struct spans {
	struct hm_span *v;
	size_t n, cap;
	int err;
	uint64_t footer;   /* behind each block (hm_layout) */
};

static void add(struct spans *s, uint64_t start, uint64_t end, enum hm_kind k, uint64_t ino)
{
	if (end <= start || s->err)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		struct hm_span *v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			s->err = -ENOMEM;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct hm_span){ start, end - start, k, ino };
}

/* An allocation's extent [es, ee): overhead in front of the slice, the
 * content, slack up to the extent's end (FirstFit: minus its footer). */
static int add_alloc(void *ctx, const struct vol_alloc_rec *r)
{
	struct spans *s = ctx;
	uint64_t es = r->ext_start, ee, off = r->slice.off, cap = r->slice.len;
	uint64_t size = r->size < cap ? r->size : cap;
	if (cap == 0)
		return 0;
	if (!add_ok(es, r->ext_len, &ee) || off < es || off + cap > ee) {
		s->err = -EUCLEAN;
		return 1;
	}
	uint64_t tail = s->footer && ee - (off + cap) >= s->footer ? s->footer : 0;
	bool cat = r->what == VOL_ALLOC_CATALOG, xa = r->what == VOL_ALLOC_XATTR;
	add(s, es, off, HM_OVERHEAD, 0);
	add(s, off, off + size, cat ? HM_CATALOG : xa ? HM_XATTR :
	    r->what == VOL_ALLOC_ORPHAN ? HM_UNREF : HM_FILE, r->ino);
	add(s, off + size, ee - tail, cat ? HM_CATALOG : xa ? HM_XATTR : HM_SLACK, r->ino);
	add(s, ee - tail, ee, HM_OVERHEAD, 0);
	return 0;
}

static int add_free(void *ctx, const struct hm_free *f)
{
	struct spans *s = ctx;
	add(s, f->blk_start, f->start, HM_OVERHEAD, 0);
	add(s, f->start, f->start + f->len, HM_FREE, 0);
	add(s, f->start + f->len, f->blk_start + f->blk_len, HM_OVERHEAD, 0);
	return s->err;
}

static int by_start(const void *a, const void *b)
{
	const struct hm_span *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

int hm_build(struct vol *v, struct hm_map *out)
{
	struct bs_alloc *a = vol_allocator(v);
	struct bs_alloc_stats st;
	const struct hm_layout *l = layout_of(a->kind);
	struct spans s = { .footer = l ? l->footer : 0 };
	uint64_t plen = bstack_len(a->bs);
	int r;

	memset(out, 0, sizeof *out);
	bs_alloc_stats(a, &st);
	add(&s, 0, st.arena_start < plen ? st.arena_start : plen, HM_HEADER, 0);
	if ((r = vol_foreach_alloc(v, add_alloc, &s)) < 0 ||
	    (r = hm_walk_free(a, add_free, &s)) < 0)
		goto fail;
	if ((r = s.err))
		goto fail;
	qsort(s.v, s.n, sizeof *s.v, by_start);
	/* gaps become unreferenced spans; an overlap is a damaged image */
	struct spans full = { .footer = s.footer };
	uint64_t at = 0;
	for (size_t i = 0; i < s.n; i++) {
		struct hm_span *x = &s.v[i];
		if (x->start < at || x->start + x->len > plen) {
			free(full.v);
			r = -EUCLEAN;
			goto fail;
		}
		add(&full, at, x->start, HM_UNREF, 0);
		add(&full, x->start, x->start + x->len, x->kind, x->ino);
		at = x->start + x->len;
	}
	add(&full, at, plen, HM_UNREF, 0);
	free(s.v);
	if (full.err) {
		free(full.v);
		return full.err;
	}
	out->spans = full.v;
	out->n = full.n;
	out->payload_bytes = plen;
	for (size_t i = 0; i < full.n; i++)
		out->bytes[full.v[i].kind] += full.v[i].len;
	return 0;
fail:
	free(s.v);
	return r > 0 ? -EUCLEAN : r;
}

void hm_free_map(struct hm_map *m)
{
	free(m->spans);
	memset(m, 0, sizeof *m);
}
