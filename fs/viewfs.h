/*
 * viewfs.h — `bstackfs -o view IMAGE MNT` (docs/design.md §7, issue 16): the
 * allocations of any BStack image as read-only files, over core/allocview.
 *
 *   /allocations/OFF-LEN   one file per live allocation (allocview.h says
 *                          what one is for each allocator)
 *   /free/OFF-LEN          one file per free block
 *   /reserved              the caller-reserved bytes at payload 0
 *   /.bstackfs, /.bstackfs.json   the view's figures (README)
 *
 * OFF and LEN are the payload offset and length in fixed-width hex
 * (%012llx), so `ls` sorts by address.  Every change is refused (EROFS,
 * and the kernel mount is read-only); reads are the image's bytes.
 */
#ifndef BSTACKFS_VIEWFS_H
#define BSTACKFS_VIEWFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <time.h>

#include "allocview.h"

struct bsfs_view {
	struct av_view *av;
	uid_t uid;                /* the image file's owner: every entry's */
	gid_t gid;
	struct timespec mtime;    /* the image file's mtime: every entry's times */
};

/* Open the image for the view (allocview.h); on a refusal, one line on
 * stderr ("bstackfs: IMAGE: reason") and a negative errno. */
int bsfs_view_open(struct bsfs_view *vw, const char *image, const char *path,
		   enum bs_alloc_kind want);
void bsfs_view_close(struct bsfs_view *vw);

extern const struct fuse_lowlevel_ops bsfs_view_ops;

#endif
