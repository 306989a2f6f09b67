/*
 * alloc.h — one interface over the four allocators (docs/design.md §3), a struct
 * of function pointers like littlefs's block device.
 *
 * A slice is (off, len): a logical payload offset and the length the caller
 * asked for.  The zero-length slice is (0, 0) and costs no I/O.  Newly
 * exposed bytes always read as zero.  All functions return 0 or a negative
 * errno: -EINVAL for a slice the allocator could not have handed out,
 * -ENOTSUP for an operation the allocator does not support (Linear realloc
 * of a non-tail slice), -EUCLEAN for on-disk structures that fail
 * validation, -EILSEQ for a wrong magic, -EIO/-ENOSPC from below.
 *
 * Every allocator is safe to call from many threads.
 */
#ifndef BSTACKFS_ALLOC_H
#define BSTACKFS_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bstack.h"

struct bs_slice {
	uint64_t off;
	uint64_t len;
};

enum bs_alloc_kind {
	BS_ALLOC_NONE = 0,   /* not recognised */
	BS_ALLOC_LINEAR,
	BS_ALLOC_FIRSTFIT,   /* ALFF, magic at payload 16 */
	BS_ALLOC_SLAB,       /* ALSL, magic at payload 24 */
	BS_ALLOC_GHOST,      /* ALGT, magic at payload 32 */
};

struct bs_alloc_opts {
	uint64_t block_size;  /* Slab only; 0 = default (BS_SLAB_DEFAULT_BLOCK) */
};
#define BS_SLAB_DEFAULT_BLOCK 4096

/* Allocator-specific figures, reported as extra `key value` stats. */
#define BS_ALLOC_MAX_EXTRA 8
struct bs_alloc_extra {
	const char *key;      /* static string, e.g. "tree_height" */
	uint64_t value;
};

struct bs_alloc_stats {
	const char *name;         /* "linear", "firstfit", "slab", "ghost" */
	char magic[24];           /* e.g. "ALGT-0.1.2"; "none" for Linear */
	uint64_t reserved_bytes;  /* caller-reserved bytes at payload 0 */
	uint64_t arena_start;     /* first arena offset */
	uint64_t arena_bytes;     /* payload length - arena_start */
	uint64_t free_blocks;
	uint64_t free_bytes;
	uint64_t largest_free;
	/* Bytes the allocator holds as allocated (payload bytes, rounding
	 * included, per-block headers excluded; leaked space counts as live),
	 * and the number of allocated blocks where the allocator keeps a
	 * record of them (FirstFit, Slab: live_blocks_known).  GhostTree and
	 * Linear keep none: live allocations carry zero overhead. */
	uint64_t live_blocks;
	uint64_t live_bytes;
	bool live_blocks_known;
	uint64_t overhead_bytes;  /* allocator header + per-block headers/footers */
	/* counters since open */
	uint64_t allocs, reallocs, reallocs_in_place, reallocs_moved, deallocs;
	uint64_t tail_discards, bytes_copied;
	uint64_t syncs;           /* of the underlying bstack */
	struct bs_alloc_extra extra[BS_ALLOC_MAX_EXTRA];
	int n_extra;
};

struct bs_alloc;

/* What an allocator can do, beyond the ops every one has. */
enum bs_alloc_cap {
	BS_CAP_MAGIC        = 1u << 0, /* has an on-disk magic (all but Linear) */
	BS_CAP_REUSES_HOLES = 1u << 1, /* freed space anywhere is reused; any slice
					* shrinks in place (all but Linear: only its tail) */
	BS_CAP_BLOCK_SIZE   = 1u << 2, /* takes bs_alloc_opts.block_size (Slab) */
	BS_CAP_OWN_RECOVERY = 1u << 3, /* runs a crash recovery of its own at open and
					* reports it as the extra stat "recovery_runs"
					* (FirstFit) */
};

/*
 * One allocator, described once: its descriptor is defined in its own
 * alloc_<name>.c (bs_<name>_desc) and alloc.c keeps only the table of the
 * ones built in (HAVE_ALLOC_<NAME>, meson.build).  Everything alloc.c does
 * by kind (names, detection, create, open, rebuild, the magic in stats)
 * goes through it, and so do the callers that used to test for one kind.
 */
struct bs_alloc_desc {
	enum bs_alloc_kind kind;
	const char *name;            /* "linear", "firstfit", "slab", "ghost" */
	uint64_t magic_off;          /* payload offset of the 8-byte magic (the tag,
				      * then major 0, minor 1, patch); meaningless
				      * without BS_CAP_MAGIC */
	char tag[5];                 /* "ALFF", ... ("" for Linear) */
	uint64_t reserved_len;       /* caller-reserved bytes at payload 0 */
	unsigned caps;               /* enum bs_alloc_cap */
	const char *free_structure;  /* "avl tree", "free list", or NULL (Linear keeps
				      * none): what heapmap's walk follows */
	const char *free_order;      /* how inspect orders the free listing: "depth"
				      * (ghost) or "position" */
	/* Format an empty stack (bs_alloc_create has checked it is empty). */
	int (*create)(struct bstack *bs, const struct bs_alloc_opts *o, struct bs_alloc **out);
	int (*open)(struct bstack *bs, struct bs_alloc **out);
	/* The per-allocator half of bs_alloc_rebuild: metadata writes only.
	 * NULL: nothing to rebuild (Linear). */
	int (*rebuild)(struct bstack *bs, const struct bs_slice *live, size_t n);
};

/* The descriptor of a kind (NULL for BS_ALLOC_NONE or one not built in:
 * see HAVE_ALLOC_* in meson.build), by name (NULL when unknown), and all of
 * them in a loop: i = 0, 1, ... until NULL, in enum order. */
const struct bs_alloc_desc *bs_alloc_desc_of(enum bs_alloc_kind kind);
const struct bs_alloc_desc *bs_alloc_desc_by_name(const char *name);
const struct bs_alloc_desc *bs_alloc_desc_at(size_t i);

/* The allocator of new images when none is asked for. */
#define BS_ALLOC_DEFAULT BS_ALLOC_GHOST

/* check() calls this once per violated invariant. */
typedef void (*bs_report_fn)(void *ctx, const char *msg);

struct bs_alloc_ops {
	const char *name;
	int (*alloc)(struct bs_alloc *a, uint64_t len, struct bs_slice *out);
	int (*realloc)(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
		       struct bs_slice *out);
	int (*dealloc)(struct bs_alloc *a, struct bs_slice s);
	/* out[i] gets a slice of lens[i] (zero lengths get (0,0)).  All or
	 * nothing: on error nothing stays allocated (crash leaks excepted). */
	int (*alloc_bulk)(struct bs_alloc *a, const uint64_t *lens, size_t n,
			  struct bs_slice *out);
	int (*dealloc_bulk)(struct bs_alloc *a, const struct bs_slice *s, size_t n);
	/* Fill the allocator-specific parts of st (free_*, overhead, extra). */
	void (*stats)(struct bs_alloc *a, struct bs_alloc_stats *st);
	/* Verify every on-disk invariant; report each violation; return the
	 * number of violations (>= 0) or a negative errno on I/O failure. */
	int (*check)(struct bs_alloc *a, bs_report_fn report, void *ctx);
	/* The byte range [*start, *start + *len) that slice s occupies in the
	 * payload, headers and padding included.  -EINVAL for an impossible
	 * slice. */
	int (*extent)(struct bs_alloc *a, struct bs_slice s, uint64_t *start,
		      uint64_t *len);
	/*
	 * Leak reclamation (bstackfs goes beyond the seeds, docs/design.md §3): `live`
	 * lists every slice the caller holds, sorted by off, zero-length ones
	 * omitted.  Every byte of the arena that is neither inside a live
	 * extent nor held as free is returned to the allocator; *reclaimed
	 * gets the byte count.  -EUCLEAN (touching nothing) when a live
	 * extent is outside the arena, overlaps another or overlaps free
	 * space.
	 */
	int (*reclaim)(struct bs_alloc *a, const struct bs_slice *live, size_t n,
		       uint64_t *reclaimed);
	/*
	 * Grow s to new_len (> s.len) only if that needs no move: same
	 * underlying block, tail extension, or (FirstFit; GhostTree beyond
	 * the seed) taking from the free right neighbour.  *done = true and *out = (s.off, new_len) when it did,
	 * the new bytes reading as zero; *done = false and nothing changed
	 * when it would have to move.  The volume uses it so that a move is
	 * always its own copy-on-write (alloc new, copy, repoint, free old),
	 * never the allocator's (docs/design.md §4, guarantee 2).  Shrinking goes
	 * through realloc, which every allocator does in place.
	 */
	int (*grow_in_place)(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
			     struct bs_slice *out, bool *done);
	/*
	 * Give free space at the end of the payload back to the file system
	 * (the image shrinks): every free block that ends at the payload end
	 * is taken out of the allocator's free structure and discarded, until
	 * the last block is live.  *freed gets the bytes discarded.  Crash:
	 * only leaks (a block out of the free structure but not yet
	 * discarded), which reclaim returns.  NULL: nothing to give back
	 * (the allocator never keeps a free tail block).  bstackfs goes
	 * beyond the seeds here; a no-op in seed-exact mode.
	 */
	int (*trim_tail)(struct bs_alloc *a, uint64_t *freed);
	void (*destroy)(struct bs_alloc *a);   /* frees a, not the bstack */
};

/* Common part of every allocator; implementations embed it first. */
struct bs_alloc {
	const struct bs_alloc_ops *ops;
	const struct bs_alloc_desc *desc;   /* never NULL */
	struct bstack *bs;
	enum bs_alloc_kind kind;  /* desc->kind */
	uint64_t reserved_len;    /* desc->reserved_len: 16 (Linear, FirstFit), 24
				   * (Slab), 32 (Ghost) */
	/* Seed-exact mode: every operation writes exactly the seed's bytes
	 * (tests/seedcheck, the seed's own tests).  Off by default: bstackfs
	 * then goes beyond the seed where that keeps space bounded (GhostTree
	 * merges freed blocks while mounted and hands out the front of a
	 * split block; trim_tail gives free tail space back), always in the
	 * seed's on-disk format.  Set it right after create/open. */
	bool seed_exact;
	/* counters, updated with __atomic_fetch_add by the implementations */
	uint64_t n_allocs, n_reallocs, n_reallocs_in_place, n_reallocs_moved;
	uint64_t n_deallocs, n_tail_discards, n_bytes_copied;
};

/* Can allocator a (or the allocator of `kind`: false when none is built
 * in) do cap? */
static inline bool bs_alloc_can(const struct bs_alloc *a, unsigned cap)
{ return (a->desc->caps & cap) != 0; }
static inline bool bs_alloc_kind_can(enum bs_alloc_kind kind, unsigned cap)
{
	const struct bs_alloc_desc *d = bs_alloc_desc_of(kind);
	return d && (d->caps & cap) != 0;
}

/* Which allocator an existing stack holds, from its magic (Linear has none:
 * BS_ALLOC_NONE is returned and the caller decides, e.g. by its catalog).
 * -EUCLEAN when a known magic prefix carries an unsupported version. */
int bs_alloc_detect(struct bstack *bs, enum bs_alloc_kind *kind);
/* desc->name; "none" for BS_ALLOC_NONE and a kind not built in. */
const char *bs_alloc_kind_name(enum bs_alloc_kind kind);
/* "ghost" -> BS_ALLOC_GHOST, ...; BS_ALLOC_NONE when unknown (or not built
 * in). */
enum bs_alloc_kind bs_alloc_kind_parse(const char *name);

/* Format an empty stack (len 0) with allocator `kind`. */
int bs_alloc_create(struct bstack *bs, enum bs_alloc_kind kind,
		    const struct bs_alloc_opts *opts, struct bs_alloc **out);
/* Open the allocator an existing stack holds: `kind` as detected, or
 * BS_ALLOC_LINEAR.  Validates the magic and runs the seed's open-time
 * recovery (FirstFit recovery, GhostTree pad + coalesce-and-rebalance). */
int bs_alloc_open(struct bstack *bs, enum bs_alloc_kind kind, struct bs_alloc **out);
void bs_alloc_close(struct bs_alloc *a);  /* destroys a; the bstack stays open */

/*
 * Rebuild the allocator metadata of a damaged image from the caller's live
 * set (fsck -y; bstackfs knows every live allocation from its catalog):
 * `live` sorted by off, zero-length slices omitted, no two overlapping.
 * Every live slice keeps its place and its bytes; everything else becomes
 * free in the allocator's own on-disk format, laid out as its own code
 * would (the free list / tree emptied or its block headers rewritten, then
 * bs_alloc_open and bs_alloc_reclaim(live) hand the rest back).  Works when
 * bs_alloc_open refuses the damaged image.  *out is the open allocator.
 * Linear has nothing to rebuild (it is opened).  -EUCLEAN when the live
 * set cannot be laid out in this allocator (misaligned, outside the arena,
 * a Slab block size that is itself damaged).  Not crash atomic: a cut
 * rebuild is run again.
 */
int bs_alloc_rebuild(struct bstack *bs, enum bs_alloc_kind kind,
		     const struct bs_slice *live, size_t n, struct bs_alloc **out);

static inline int bs_alloc(struct bs_alloc *a, uint64_t len, struct bs_slice *out)
{ return a->ops->alloc(a, len, out); }
static inline int bs_realloc(struct bs_alloc *a, struct bs_slice s, uint64_t n,
			     struct bs_slice *out)
{ return a->ops->realloc(a, s, n, out); }
static inline int bs_dealloc(struct bs_alloc *a, struct bs_slice s)
{ return a->ops->dealloc(a, s); }
static inline int bs_alloc_bulk(struct bs_alloc *a, const uint64_t *lens, size_t n,
				struct bs_slice *out)
{ return a->ops->alloc_bulk(a, lens, n, out); }
static inline int bs_dealloc_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{ return a->ops->dealloc_bulk(a, s, n); }
static inline int bs_alloc_check(struct bs_alloc *a, bs_report_fn r, void *ctx)
{ return a->ops->check(a, r, ctx); }
static inline int bs_alloc_extent(struct bs_alloc *a, struct bs_slice s,
				  uint64_t *start, uint64_t *len)
{ return a->ops->extent(a, s, start, len); }
static inline int bs_alloc_reclaim(struct bs_alloc *a, const struct bs_slice *live,
				   size_t n, uint64_t *reclaimed)
{ return a->ops->reclaim(a, live, n, reclaimed); }

static inline void bs_alloc_set_seed_exact(struct bs_alloc *a, bool on)
{ a->seed_exact = on; }
/* ops->trim_tail, or 0 with *freed = 0 when the allocator has none. */
static inline int bs_alloc_trim_tail(struct bs_alloc *a, uint64_t *freed)
{
	*freed = 0;
	return a->ops->trim_tail && !a->seed_exact ? a->ops->trim_tail(a, freed) : 0;
}

static inline int bs_grow_in_place(struct bs_alloc *a, struct bs_slice s, uint64_t n,
				   struct bs_slice *out, bool *done)
{ return a->ops->grow_in_place(a, s, n, out, done); }

/* Common counters + bstack syncs + the allocator's own figures. */
void bs_alloc_stats(struct bs_alloc *a, struct bs_alloc_stats *st);

/* The caller-reserved bytes at payload offset 0 (a->reserved_len long);
 * set is durable. */
int bs_alloc_reserved_get(struct bs_alloc *a, uint64_t off, void *buf, uint64_t n);
int bs_alloc_reserved_set(struct bs_alloc *a, uint64_t off, const void *buf, uint64_t n);

/* Helpers for implementations (alloc.c). */
/* Fill the common part of a freshly calloc'ed allocator (kind and
 * reserved_len from desc). */
void bs_alloc_init(struct bs_alloc *a, const struct bs_alloc_ops *ops, struct bstack *bs,
		   const struct bs_alloc_desc *desc);
#define BS_COUNT(a, field, n) __atomic_fetch_add(&(a)->field, (n), __ATOMIC_RELAXED)
/* Generic bulk in terms of alloc/dealloc, for allocators without a native
 * bulk path: all-or-nothing. */
int bs_alloc_bulk_generic(struct bs_alloc *a, const uint64_t *lens, size_t n,
			  struct bs_slice *out);
int bs_dealloc_bulk_generic(struct bs_alloc *a, const struct bs_slice *s, size_t n);

/* The descriptors and constructors of each implementation (alloc_<name>.c). */
extern const struct bs_alloc_desc bs_linear_desc, bs_firstfit_desc, bs_slab_desc,
	bs_ghost_desc;
int bs_linear_create(struct bstack *bs, struct bs_alloc **out);
int bs_linear_open(struct bstack *bs, struct bs_alloc **out);
int bs_ghost_create(struct bstack *bs, struct bs_alloc **out);
int bs_ghost_open(struct bstack *bs, struct bs_alloc **out);
int bs_firstfit_create(struct bstack *bs, struct bs_alloc **out);
int bs_firstfit_open(struct bstack *bs, struct bs_alloc **out);
int bs_slab_create(struct bstack *bs, uint64_t block_size, struct bs_alloc **out);
int bs_slab_open(struct bstack *bs, struct bs_alloc **out);
/* The per-allocator half of bs_alloc_rebuild: metadata writes only. */
int bs_ghost_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n);
int bs_firstfit_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n);
int bs_slab_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n);

#endif
