/*
 * alloc.c — what the four allocators share: detection by magic, the
 * create/open dispatch, the common stats, the caller-reserved bytes and a
 * generic bulk path.
 *
 * Magic positions (payload offsets), from the seeds:
 *   FirstFit  "ALFF\0\1" at 16   (16 reserved bytes before it)
 *   Slab      "ALSL\0\1" at 24   (24 reserved bytes)
 *   GhostTree "ALGT\0\1" at 32   (32 reserved bytes)
 *   Linear    no magic; bstackfs reserves 16 bytes in front of its arena.
 */
#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct {
	enum bs_alloc_kind kind;
	const char *name;
	uint64_t magic_off;
	const char *tag;   /* 4 bytes, then major 0, minor 1 */
} kinds[] = {
	{ BS_ALLOC_FIRSTFIT, "firstfit", 16, "ALFF" },
	{ BS_ALLOC_SLAB, "slab", 24, "ALSL" },
	{ BS_ALLOC_GHOST, "ghost", 32, "ALGT" },
};

const char *bs_alloc_kind_name(enum bs_alloc_kind kind)
{
	switch (kind) {
	case BS_ALLOC_LINEAR:
		return "linear";
	case BS_ALLOC_FIRSTFIT:
		return "firstfit";
	case BS_ALLOC_SLAB:
		return "slab";
	case BS_ALLOC_GHOST:
		return "ghost";
	default:
		return "none";
	}
}

enum bs_alloc_kind bs_alloc_kind_parse(const char *name)
{
	static const enum bs_alloc_kind all[] = { BS_ALLOC_LINEAR, BS_ALLOC_FIRSTFIT,
						  BS_ALLOC_SLAB, BS_ALLOC_GHOST };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (strcmp(name, bs_alloc_kind_name(all[i])) == 0)
			return all[i];
	return BS_ALLOC_NONE;
}

int bs_alloc_detect(struct bstack *bs, enum bs_alloc_kind *kind)
{
	uint64_t len = bstack_len(bs);
	*kind = BS_ALLOC_NONE;
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		uint8_t m[8];
		if (len < kinds[i].magic_off + 8)
			continue;
		int r = bstack_get(bs, kinds[i].magic_off, m, 8);
		if (r)
			return r;
		if (memcmp(m, kinds[i].tag, 4) != 0)
			continue;
		if (m[4] != 0 || m[5] != 1)
			return -EUCLEAN;   /* a known allocator, an unknown version */
		*kind = kinds[i].kind;
		return 0;
	}
	return 0;
}

int bs_alloc_create(struct bstack *bs, enum bs_alloc_kind kind,
		    const struct bs_alloc_opts *opts, struct bs_alloc **out)
{
	(void)opts;   /* only Slab has options */
	if (bstack_len(bs) != 0)
		return -EEXIST;
	switch (kind) {
	case BS_ALLOC_LINEAR:
		return bs_linear_create(bs, out);
#ifdef HAVE_ALLOC_GHOST
	case BS_ALLOC_GHOST:
		return bs_ghost_create(bs, out);
#endif
#ifdef HAVE_ALLOC_FIRSTFIT
	case BS_ALLOC_FIRSTFIT:
		return bs_firstfit_create(bs, out);
#endif
#ifdef HAVE_ALLOC_SLAB
	case BS_ALLOC_SLAB:
		return bs_slab_create(bs, opts ? opts->block_size : 0, out);
#endif
	case BS_ALLOC_NONE:
		return -EINVAL;
	default:
		return -ENOTSUP;
	}
}

int bs_alloc_open(struct bstack *bs, enum bs_alloc_kind kind, struct bs_alloc **out)
{
	switch (kind) {
	case BS_ALLOC_LINEAR:
		return bs_linear_open(bs, out);
#ifdef HAVE_ALLOC_GHOST
	case BS_ALLOC_GHOST:
		return bs_ghost_open(bs, out);
#endif
#ifdef HAVE_ALLOC_FIRSTFIT
	case BS_ALLOC_FIRSTFIT:
		return bs_firstfit_open(bs, out);
#endif
#ifdef HAVE_ALLOC_SLAB
	case BS_ALLOC_SLAB:
		return bs_slab_open(bs, out);
#endif
	case BS_ALLOC_NONE:
		return -EINVAL;
	default:
		return -ENOTSUP;
	}
}

int bs_alloc_rebuild(struct bstack *bs, enum bs_alloc_kind kind,
		     const struct bs_slice *live, size_t n, struct bs_alloc **out)
{
	int r;
	switch (kind) {
	case BS_ALLOC_LINEAR:
		r = 0;
		break;
#ifdef HAVE_ALLOC_GHOST
	case BS_ALLOC_GHOST:
		r = bs_ghost_rebuild(bs, live, n);
		break;
#endif
#ifdef HAVE_ALLOC_FIRSTFIT
	case BS_ALLOC_FIRSTFIT:
		r = bs_firstfit_rebuild(bs, live, n);
		break;
#endif
#ifdef HAVE_ALLOC_SLAB
	case BS_ALLOC_SLAB:
		r = bs_slab_rebuild(bs, live, n);
		break;
#endif
	case BS_ALLOC_NONE:
		return -EINVAL;
	default:
		return -ENOTSUP;
	}
	for (size_t i = 1; i < n && !r; i++)
		if (live[i].off < live[i - 1].off + live[i - 1].len)
			r = -EUCLEAN;
	if (r || (r = bs_alloc_open(bs, kind, out)))
		return r;
	uint64_t got;
	if ((r = bs_alloc_reclaim(*out, live, n, &got))) {
		bs_alloc_close(*out);
		*out = NULL;
	}
	return r;
}

void bs_alloc_close(struct bs_alloc *a)
{
	if (a)
		a->ops->destroy(a);
}

#define LOAD(f) __atomic_load_n(&a->f, __ATOMIC_RELAXED)

void bs_alloc_stats(struct bs_alloc *a, struct bs_alloc_stats *st)
{
	struct bstack_stats bst;
	memset(st, 0, sizeof *st);
	st->name = bs_alloc_kind_name(a->kind);
	strcpy(st->magic, "none");
	st->reserved_bytes = a->reserved_len;
	st->allocs = LOAD(n_allocs);
	st->reallocs = LOAD(n_reallocs);
	st->reallocs_in_place = LOAD(n_reallocs_in_place);
	st->reallocs_moved = LOAD(n_reallocs_moved);
	st->deallocs = LOAD(n_deallocs);
	st->tail_discards = LOAD(n_tail_discards);
	st->bytes_copied = LOAD(n_bytes_copied);
	bstack_stats(a->bs, &bst);
	st->syncs = bst.syncs;
	/* the magic, as "ALGT-0.1.2" (tag, then major.minor.patch) */
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		uint8_t m[8];
		if (kinds[i].kind != a->kind || bstack_get(a->bs, kinds[i].magic_off, m, 8))
			continue;
		snprintf(st->magic, sizeof st->magic, "%.4s-%u.%u.%u", (const char *)m,
			 m[4], m[5], m[6]);
	}
	a->ops->stats(a, st);
}

void bs_alloc_init(struct bs_alloc *a, const struct bs_alloc_ops *ops, struct bstack *bs,
		   enum bs_alloc_kind kind, uint64_t reserved_len)
{
	a->ops = ops;
	a->bs = bs;
	a->kind = kind;
	a->reserved_len = reserved_len;
}

int bs_alloc_reserved_get(struct bs_alloc *a, uint64_t off, void *buf, uint64_t n)
{
	if (!range_ok(off, n, a->reserved_len))
		return -ERANGE;
	return bstack_get(a->bs, off, buf, n);
}

int bs_alloc_reserved_set(struct bs_alloc *a, uint64_t off, const void *buf, uint64_t n)
{
	if (!range_ok(off, n, a->reserved_len))
		return -ERANGE;
	return bstack_set(a->bs, off, buf, n);
}

int bs_alloc_bulk_generic(struct bs_alloc *a, const uint64_t *lens, size_t n,
			  struct bs_slice *out)
{
	for (size_t i = 0; i < n; i++) {
		int r = bs_alloc(a, lens[i], &out[i]);
		if (r) {
			/* all or nothing: give back what was taken, newest first */
			while (i--)
				bs_dealloc(a, out[i]);
			return r;
		}
	}
	return 0;
}

int bs_dealloc_bulk_generic(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	int first = 0;
	for (size_t i = 0; i < n; i++) {
		int r = bs_dealloc(a, s[i]);
		if (r && !first)
			first = r;
	}
	return first;
}
