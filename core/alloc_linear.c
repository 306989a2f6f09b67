/*
 * alloc_linear.c — the reference bump allocator (seeds/README.md).
 *
 * On-disk layout: no magic, no header of its own.
 *
 *   payload 0..16   reserved by bstackfs (the catalog's root reference)
 *   payload 16..    arena: allocations laid end to end, unaligned
 *
 * alloc extends the tail; realloc works on the tail allocation only (grow =
 * extend, shrink = discard; any other slice that would change size is
 * -ENOTSUP); dealloc of the tail allocation discards it, elsewhere it is a
 * no-op (the space stays until everything above it is gone).
 *
 * Crash invariant: every operation is one BStack call (extend or discard),
 * each atomic by the file layer, so no crash leaves a partial state.  Tail
 * checks and the act are one call (try_extend_zeros / try_discard) so
 * concurrent callers cannot both believe they own the tail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "util.h"

#define LINEAR_RESERVED 16

struct linear {
	struct bs_alloc base;
};

static int slice_ok(struct bs_alloc *a, struct bs_slice s)
{
	if (s.len == 0)
		return s.off == 0 ? 0 : -EINVAL;
	if (s.off < LINEAR_RESERVED || !range_ok(s.off, s.len, bstack_len(a->bs)))
		return -EINVAL;
	return 0;
}

static int lin_alloc(struct bs_alloc *a, uint64_t len, struct bs_slice *out)
{
	uint64_t off;
	if (len == 0) {
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	int r = bstack_extend(a->bs, len, &off);
	if (r)
		return r;
	BS_COUNT(a, n_allocs, 1);
	*out = (struct bs_slice){ off, len };
	return 0;
}

static int lin_dealloc(struct bs_alloc *a, struct bs_slice s)
{
	bool done;
	int r = slice_ok(a, s);
	if (r || s.len == 0)
		return r;
	r = bstack_try_discard(a->bs, s.off + s.len, s.len, &done);
	if (r)
		return r;
	BS_COUNT(a, n_deallocs, 1);
	if (done)
		BS_COUNT(a, n_tail_discards, 1);
	return 0;
}

static int lin_grow_in_place(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
			     struct bs_slice *out, bool *done)
{
	*done = false;
	int r = slice_ok(a, s);
	if (r)
		return r;
	if (s.len == 0 || new_len < s.len)
		return s.len == 0 ? 0 : -EINVAL;
	if (new_len == s.len) {
		*out = s;
		*done = true;
		return 0;
	}
	r = bstack_try_extend_zeros(a->bs, s.off + s.len, new_len - s.len, done);
	if (!r && *done)
		*out = (struct bs_slice){ s.off, new_len };
	return r;
}

static int lin_realloc(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
		       struct bs_slice *out)
{
	bool done = false;
	int r = slice_ok(a, s);
	if (r)
		return r;
	if (s.len == 0)
		return lin_alloc(a, new_len, out);
	if (new_len == s.len) {
		*out = s;
		return 0;
	}
	if (new_len == 0) {
		/* as the seeds: realloc to zero deallocates (only the tail can go) */
		r = bstack_try_discard(a->bs, s.off + s.len, s.len, &done);
		if (r)
			return r;
		if (!done)
			return -ENOTSUP;
		BS_COUNT(a, n_deallocs, 1);
		BS_COUNT(a, n_tail_discards, 1);
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (new_len > s.len)
		r = bstack_try_extend_zeros(a->bs, s.off + s.len, new_len - s.len, &done);
	else
		r = bstack_try_discard(a->bs, s.off + s.len, s.len - new_len, &done);
	if (r)
		return r;
	if (!done)
		return -ENOTSUP;   /* not the tail allocation */
	BS_COUNT(a, n_reallocs, 1);
	BS_COUNT(a, n_reallocs_in_place, 1);
	*out = (struct bs_slice){ s.off, new_len };
	return 0;
}

static int lin_alloc_bulk(struct bs_alloc *a, const uint64_t *lens, size_t n,
			  struct bs_slice *out)
{
	uint64_t total = 0, off;
	for (size_t i = 0; i < n; i++)
		if (!add_ok(total, lens[i], &total))
			return -EOVERFLOW;
	if (total) {
		/* one extend for the whole batch */
		int r = bstack_extend(a->bs, total, &off);
		if (r)
			return r;
	}
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0) {
			out[i] = (struct bs_slice){ 0, 0 };
			continue;
		}
		out[i] = (struct bs_slice){ off, lens[i] };
		off += lens[i];
		BS_COUNT(a, n_allocs, 1);
	}
	return 0;
}

static int cmp_slice(const void *x, const void *y)
{
	const struct bs_slice *p = x, *q = y;
	return p->off < q->off ? -1 : p->off > q->off;
}

static int lin_dealloc_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	struct bs_slice *v = malloc((n ? n : 1) * sizeof *v);
	size_t k = 0;
	int r = 0;
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		r = slice_ok(a, s[i]);
		if (s[i].len)
			v[k++] = s[i];
	}
	if (r || k == 0)
		goto out;
	qsort(v, k, sizeof *v, cmp_slice);
	/* The run of contiguous slices that ends at the tail goes in one
	 * discard; the others are no-ops, as single deallocs would be. */
	size_t first = k - 1;
	while (first > 0 && v[first - 1].off + v[first - 1].len == v[first].off)
		first--;
	uint64_t end = v[k - 1].off + v[k - 1].len;
	bool done;
	r = bstack_try_discard(a->bs, end, end - v[first].off, &done);
	if (!r) {
		BS_COUNT(a, n_deallocs, k);
		if (done)
			BS_COUNT(a, n_tail_discards, 1);
	}
out:
	free(v);
	return r;
}

static void lin_stats(struct bs_alloc *a, struct bs_alloc_stats *st)
{
	uint64_t len = bstack_len(a->bs);
	st->arena_start = LINEAR_RESERVED;
	st->arena_bytes = len > LINEAR_RESERVED ? len - LINEAR_RESERVED : 0;
	st->overhead_bytes = LINEAR_RESERVED;
	st->live_bytes = st->arena_bytes;   /* holes below the tail included */
}

static int lin_check(struct bs_alloc *a, bs_report_fn report, void *ctx)
{
	if (bstack_len(a->bs) < LINEAR_RESERVED) {
		report(ctx, "linear: payload shorter than the 16 reserved bytes");
		return 1;
	}
	return 0;
}

static int lin_extent(struct bs_alloc *a, struct bs_slice s, uint64_t *start,
		      uint64_t *len)
{
	int r = slice_ok(a, s);
	if (r)
		return r;
	*start = s.off;
	*len = s.len;
	return 0;
}

/* Linear keeps no free list, so a hole below the tail cannot be given back;
 * only unreferenced space at the tail is discarded. */
static int lin_reclaim(struct bs_alloc *a, const struct bs_slice *live, size_t n,
		       uint64_t *reclaimed)
{
	uint64_t len = bstack_len(a->bs), end = LINEAR_RESERVED;
	*reclaimed = 0;
	for (size_t i = 0; i < n; i++) {
		if (live[i].len == 0)
			continue;
		if (slice_ok(a, live[i]) || live[i].off < end)
			return -EUCLEAN;   /* outside the arena or overlapping */
		end = live[i].off + live[i].len;
	}
	if (end < len) {
		bool done;
		int r = bstack_try_discard(a->bs, len, len - end, &done);
		if (r)
			return r;
		if (done)
			*reclaimed = len - end;
	}
	return 0;
}

static void lin_destroy(struct bs_alloc *a)
{
	free(a);
}

static const struct bs_alloc_ops linear_ops = {
	.name = "linear",
	.alloc = lin_alloc,
	.realloc = lin_realloc,
	.dealloc = lin_dealloc,
	.alloc_bulk = lin_alloc_bulk,
	.dealloc_bulk = lin_dealloc_bulk,
	.stats = lin_stats,
	.check = lin_check,
	.extent = lin_extent,
	.reclaim = lin_reclaim,
	.grow_in_place = lin_grow_in_place,
	.destroy = lin_destroy,
};

static int lin_new(struct bstack *bs, struct bs_alloc **out)
{
	struct linear *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	bs_alloc_init(&l->base, &linear_ops, bs, &bs_linear_desc);
	*out = &l->base;
	return 0;
}

int bs_linear_create(struct bstack *bs, struct bs_alloc **out)
{
	if (bstack_len(bs) != 0)
		return -EEXIST;
	int r = bstack_extend(bs, LINEAR_RESERVED, NULL);
	return r ? r : lin_new(bs, out);
}

int bs_linear_open(struct bstack *bs, struct bs_alloc **out)
{
	if (bstack_len(bs) < LINEAR_RESERVED)
		return -EUCLEAN;
	return lin_new(bs, out);
}

static int lin_create_desc(struct bstack *bs, const struct bs_alloc_opts *o,
			   struct bs_alloc **out)
{
	(void)o;
	return bs_linear_create(bs, out);
}

/* No magic (detection never names Linear: its callers recognise it by
 * their own catalog), no free structure and no hole reuse. */
const struct bs_alloc_desc bs_linear_desc = {
	.kind = BS_ALLOC_LINEAR,
	.name = "linear",
	.tag = "",
	.reserved_len = LINEAR_RESERVED,
	.caps = 0,
	.free_structure = NULL,
	.free_order = "position",
	.create = lin_create_desc,
	.open = bs_linear_open,
	.rebuild = NULL,
};
