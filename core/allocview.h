/*
 * allocview.h — the allocations of any BStack image, read-only
 * (bstackfs -o view; docs/design.md §7, issue 16).  Knows nothing of FUSE.
 *
 * An image written by any program that uses one of the four allocators
 * (bstackfs's own images included: their catalog is one allocation among
 * the others) is opened without a byte of it being written, its allocator
 * checked, and its payload split into:
 *
 *   allocations  FirstFit: each allocated block's payload (no header or
 *                footer); Slab: each block not on the free list (an
 *                allocation of several blocks is several of them: Slab
 *                records nothing that ties them together); GhostTree: each
 *                maximal run of arena bytes that is not free (allocations
 *                carry no header, so neighbours cannot be told apart);
 *                Linear: the whole arena
 *   free         the blocks the allocator holds as free (heapmap.h's walk)
 *   reserved     the caller-reserved bytes at payload 0
 *
 * The read-only path: the file is opened O_RDONLY with a shared lock
 * (BS_IO_SHARED: other views may hold it too; a mount, fsck or the bstack
 * crate's exclusive open is refused while a view holds it, and a view is
 * refused while one of them does).  Everything the open would write (the
 * header's length recovery, the allocator's open-time recovery and
 * GhostTree's rebalance) goes to a staging device in memory (io_stage.c)
 * that is never committed, so the image file keeps every byte; reads see
 * the image with those writes applied, as the allocator's own open does.
 * An image whose journal is live (a bstackfs mount was cut) is refused:
 * its recovery is the journal's replay, which a view does not do.
 *
 * Every offset read from the image is validated and every walk is
 * bounded by what the payload can hold: a damaged image is refused with
 * the allocator check's violations (or -EUCLEAN), never a crash or a loop.
 * Every function returns 0 or a negative errno.
 */
#ifndef BSTACKFS_ALLOCVIEW_H
#define BSTACKFS_ALLOCVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "io.h"

struct av_block {
	uint64_t off, len;        /* payload offset and length */
};

struct av_view {
	enum bs_alloc_kind kind;
	char magic[24];           /* "ALGT-0.1.2"; "none" for Linear */
	uint64_t image_bytes;     /* the image file's size */
	uint64_t payload_bytes;   /* the payload as the allocator sees it */
	uint64_t reserved_bytes;  /* caller-reserved bytes at payload 0 */
	uint64_t arena_start;
	struct av_block *allocs;  /* sorted by off, never overlapping */
	size_t n_allocs;
	uint64_t alloc_bytes;
	struct av_block *frees;   /* sorted by off */
	size_t n_frees;
	uint64_t free_bytes, largest_free;
	bool has_catalog;         /* a bstackfs image: the root reference names a catalog */
	struct av_block catalog;  /* its allocation (when has_catalog) */
	uint64_t withheld_writes; /* writes the open made to memory only */
	/* private */
	struct bstack *bs;
	struct bs_alloc *a;
	void *mu;
};

/*
 * Open the image at path for viewing.  want: BS_ALLOC_NONE (the allocator
 * the magic names; an image without one is Linear only if it is a bstackfs
 * Linear image) or the allocator the caller expects (a mismatch is
 * refused; BS_ALLOC_LINEAR views any image without an allocator magic as
 * Linear).  On a refusal, why gets one line.
 */
int av_open(const char *path, enum bs_alloc_kind want, struct av_view **out, char *why,
	    size_t whylen);
/* The same on an opened backend (taken over, closed on failure too). */
int av_open_io(struct bs_io *io, enum bs_alloc_kind want, struct av_view **out, char *why,
	       size_t whylen);
void av_close(struct av_view *v);

/* Bytes [off, off + n) of the payload (-ERANGE outside it); safe from many
 * threads. */
int av_read(struct av_view *v, uint64_t off, void *buf, uint64_t n);

/* The control file's `key value` lines (the normal mount's keys where they
 * make sense, README), malloc'd. */
int av_stats_text(struct av_view *v, char **buf, size_t *len);

/* The file name of a block: "%012llx-%012llx" (offset, length), so that
 * names sort by address.  buf holds at least AV_NAME_MAX bytes. */
#define AV_NAME_MAX 40
void av_name(const struct av_block *b, char *buf);
/* Parse a name av_name made; false for any other. */
bool av_parse_name(const char *name, struct av_block *b);

#endif
