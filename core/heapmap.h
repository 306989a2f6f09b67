/*
 * heapmap.h — read-only views of an image's heap, for tools (inspect) and
 * the library's users (docs/design.md §3, §7): the allocator's free blocks
 * as its own structure holds them, and a map of the whole payload in which
 * every byte belongs to exactly one span.
 *
 * Nothing here writes: the walks read the image through bstack_get only,
 * validate every offset and size they read and are bounded, so a damaged
 * image gives -EUCLEAN, never a loop or a crash.  Every function returns 0
 * or a negative errno.
 */
#ifndef BSTACKFS_HEAPMAP_H
#define BSTACKFS_HEAPMAP_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "volume.h"

/* One free block as the allocator holds it. */
struct hm_free {
	uint64_t start, len;          /* the free bytes the allocator counts */
	uint64_t blk_start, blk_len;  /* the whole block, headers included */
	uint64_t depth;               /* GhostTree: depth in the AVL tree (root 0);
				       * lists: position from the head (0) */
};
typedef int (*hm_free_fn)(void *ctx, const struct hm_free *f);

/* What the walk follows, the descriptor's free_structure: "avl tree"
 * (GhostTree, in order: ascending (size, address)), "free list" (FirstFit,
 * Slab: from the head), "none" (Linear keeps no free space; a kind not
 * built in). */
const char *hm_free_structure(enum bs_alloc_kind kind);
/* Visit every free block; a non-zero return from fn stops the walk and is
 * returned.  -EUCLEAN for a structure that fails validation. */
int hm_walk_free(struct bs_alloc *a, hm_free_fn fn, void *ctx);

enum hm_kind {
	HM_HEADER = 0,   /* caller-reserved bytes + the allocator's header */
	HM_FILE,         /* a file's bytes, [off, off + size) */
	HM_SLACK,        /* held for a file but past its size: spare
			  * capacity and the allocator's rounding */
	HM_OVERHEAD,     /* per-block headers and footers */
	HM_CATALOG,      /* the catalog's allocation */
	HM_FREE,         /* free bytes the allocator counts */
	HM_UNREF,        /* neither free nor referenced: Linear's holes,
			  * space of files removed while open */
	HM_XATTR,        /* an inode's extended attribute blob */
	HM_NKINDS
};
const char *hm_kind_name(enum hm_kind k);   /* "header", "file", ... */

struct hm_span {
	uint64_t start, len;
	enum hm_kind kind;
	uint64_t ino;                 /* HM_FILE / HM_SLACK: the file; else 0 */
};

/* The payload [0, payload_bytes) as sorted spans that cover it exactly
 * once (adjacent spans never overlap; gaps are HM_UNREF).  -EUCLEAN when
 * two things claim the same byte (a damaged image). */
struct hm_map {
	struct hm_span *spans;
	size_t n;
	uint64_t payload_bytes;
	uint64_t bytes[HM_NKINDS];    /* totals per kind */
};
int hm_build(struct vol *v, struct hm_map *out);
void hm_free_map(struct hm_map *m);

#endif
