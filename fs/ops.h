/*
 * ops.h — the FUSE low-level operations (docs/design.md §1, §5): thin calls into
 * the volume plus errno translation.  FUSE node ids are volume inode
 * numbers (FUSE_ROOT_ID == VOL_ROOT_INO), stable for the life of a file, so
 * forget has nothing to do.
 */
#ifndef BSTACKFS_OPS_H
#define BSTACKFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "volume.h"

/* The session's userdata. */
struct bsfs {
	struct vol *v;
	double timeout;           /* attribute cache, seconds */
	double entry_timeout;     /* name cache, negative entries too */
	bool noxattr;             /* -o noxattr: xattr requests get ENOSYS, so the
				   * kernel stops sending them */
	/* Open files are counted by the volume (vol_open_file/vol_release). */
};

int bsfs_ctx_init(struct bsfs *fs, struct vol *v);

extern const struct fuse_lowlevel_ops bsfs_ll_ops;

#endif
