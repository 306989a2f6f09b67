/*
 * alloc.c — what the four allocators share: the table of their descriptors
 * (each defined in its alloc_<name>.c), detection by magic, the
 * create/open/rebuild dispatch through it, the common stats, the
 * caller-reserved bytes and a generic bulk path.
 *
 * Magic positions (payload offsets, struct bs_alloc_desc), from the seeds:
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

/* The allocators built in, in enum order (detection tries the ones with a
 * magic in this order); each descriptor lives in its alloc_<name>.c.  The
 * NULL ends the table (and keeps it non-empty in a build without any). */
static const struct bs_alloc_desc *const descs[] = {
#ifdef HAVE_ALLOC_LINEAR
	&bs_linear_desc,
#endif
#ifdef HAVE_ALLOC_FIRSTFIT
	&bs_firstfit_desc,
#endif
#ifdef HAVE_ALLOC_SLAB
	&bs_slab_desc,
#endif
#ifdef HAVE_ALLOC_GHOST
	&bs_ghost_desc,
#endif
	NULL,
};

const struct bs_alloc_desc *bs_alloc_desc_at(size_t i)
{
	return i < sizeof descs / sizeof descs[0] ? descs[i] : NULL;
}

const struct bs_alloc_desc *bs_alloc_desc_of(enum bs_alloc_kind kind)
{
	const struct bs_alloc_desc *d;
	for (size_t i = 0; (d = descs[i]); i++)
		if (d->kind == kind)
			return d;
	return NULL;
}

const struct bs_alloc_desc *bs_alloc_desc_by_name(const char *name)
{
	const struct bs_alloc_desc *d;
	for (size_t i = 0; (d = descs[i]); i++)
		if (strcmp(name, d->name) == 0)
			return d;
	return NULL;
}

const char *bs_alloc_kind_name(enum bs_alloc_kind kind)
{
	const struct bs_alloc_desc *d = bs_alloc_desc_of(kind);
	return d ? d->name : "none";
}

enum bs_alloc_kind bs_alloc_kind_parse(const char *name)
{
	const struct bs_alloc_desc *d = bs_alloc_desc_by_name(name);
	return d ? d->kind : BS_ALLOC_NONE;
}

int bs_alloc_detect(struct bstack *bs, enum bs_alloc_kind *kind)
{
	uint64_t len = bstack_len(bs);
	const struct bs_alloc_desc *d;
	*kind = BS_ALLOC_NONE;
	for (size_t i = 0; (d = descs[i]); i++) {
		uint8_t m[8];
		if (!(d->caps & BS_CAP_MAGIC) || len < d->magic_off + 8)
			continue;
		int r = bstack_get(bs, d->magic_off, m, 8);
		if (r)
			return r;
		if (memcmp(m, d->tag, 4) != 0)
			continue;
		if (m[4] != 0 || m[5] != 1)
			return -EUCLEAN;   /* a known allocator, an unknown version */
		*kind = d->kind;
		return 0;
	}
	return 0;
}

/* The descriptor create, open and rebuild go through: -EINVAL for
 * BS_ALLOC_NONE, -ENOTSUP for a kind not built in. */
static int desc_for(enum bs_alloc_kind kind, const struct bs_alloc_desc **d)
{
	if (kind == BS_ALLOC_NONE)
		return -EINVAL;
	*d = bs_alloc_desc_of(kind);
	return *d ? 0 : -ENOTSUP;
}

int bs_alloc_create(struct bstack *bs, enum bs_alloc_kind kind,
		    const struct bs_alloc_opts *opts, struct bs_alloc **out)
{
	const struct bs_alloc_desc *d;
	if (bstack_len(bs) != 0)
		return -EEXIST;
	int r = desc_for(kind, &d);
	return r ? r : d->create(bs, opts, out);
}

int bs_alloc_open(struct bstack *bs, enum bs_alloc_kind kind, struct bs_alloc **out)
{
	const struct bs_alloc_desc *d;
	int r = desc_for(kind, &d);
	return r ? r : d->open(bs, out);
}

int bs_alloc_rebuild(struct bstack *bs, enum bs_alloc_kind kind,
		     const struct bs_slice *live, size_t n, struct bs_alloc **out)
{
	const struct bs_alloc_desc *d;
	int r = desc_for(kind, &d);
	if (r)
		return r;
	if (d->rebuild)
		r = d->rebuild(bs, live, n);
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
	st->name = a->desc->name;
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
	uint8_t m[8];
	if (bs_alloc_can(a, BS_CAP_MAGIC) && !bstack_get(a->bs, a->desc->magic_off, m, 8))
		snprintf(st->magic, sizeof st->magic, "%.4s-%u.%u.%u", (const char *)m,
			 m[4], m[5], m[6]);
	a->ops->stats(a, st);
}

void bs_alloc_init(struct bs_alloc *a, const struct bs_alloc_ops *ops, struct bstack *bs,
		   const struct bs_alloc_desc *desc)
{
	a->ops = ops;
	a->desc = desc;
	a->bs = bs;
	a->kind = desc->kind;
	a->reserved_len = desc->reserved_len;
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
