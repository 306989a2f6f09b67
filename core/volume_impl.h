/*
 * volume_impl.h — the volume's private parts, shared by its three modules
 * and by nothing else (fs/ and the tools see only volume.h):
 *   volume.c        the file layer: names, attributes, file data, the
 *                   transaction boundary, durability points, unmount;
 *   volume_mount.c  mount and format policy: the two-phase open, format,
 *                   adoption of an empty arena, the checks that refuse an
 *                   image and the repairs a mount may write;
 *   volume_stats.c  the figures: statfs, the control file's text, the
 *                   counters and the read-only views for tools.
 * Lock order and the crash rules are stated at the top of volume.c.
 */
#ifndef BSTACKFS_VOLUME_IMPL_H
#define BSTACKFS_VOLUME_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "catalog.h"
#include "freeq.h"
#include "vnode.h"
#include "volume.h"

struct vol {
	pthread_rwlock_t lock;
	/* the committer thread (commit=N, idle checkpoints) */
	pthread_t committer;
	bool committer_on, stop;
	pthread_mutex_t cm_mu;
	pthread_cond_t cm_cv;
	/* replies waiting for a commit (vol_when_durable), under dw_mu */
	pthread_mutex_t dw_mu;
	struct vol_waiter *dw_head, **dw_tail;
	bool dw_leading;            /* a thread flushes for them */
	int64_t last_op_ns;
	struct bstack *bs;
	struct bs_alloc *a;
	struct catalog *c;
	struct vol_opts opts;
	char *path;                 /* for the host figures of statfs */
	char *jpath;                /* the journal beside it (removed at close) */
	dev_t jdev;                 /* ... if the path still names that file */
	ino_t jino;
	struct vol_counters ctr;    /* syncs are read from the bstack */
	struct vol_open_report rep; /* what the open found and did */
	/* opts.allow_damaged and the allocator failed its check: opened for
	 * the report only, the stage never committed, no mount-time work */
	bool damaged;
	/* sum of named files' sizes, kept by live_change(), and its highest
	 * value since mount (peak_live_bytes) */
	uint64_t live_now, live_peak;
	struct bs_freeq *fq;        /* remote frees; drained under the write lock */
	struct vnode_table vt;      /* open, dirty and kernel-held inodes (vnode.h) */
	/* requests that reached the volume (atomics): what the kernel's
	 * dentry and page caches did not answer */
	uint64_t n_lookups, n_reads, n_xattr_reads;
	uint64_t n_shared_writes;   /* writes done under the shared lock (write_shared) */
	void (*write_gap)(void *);  /* vol_test_write_gap */
	void *write_gap_arg;
};

/* What an operation promises when its transaction ends (volume.c: the
 * transaction boundary). */
enum durability { D_NONE, D_METADATA, D_CLOSE, D_ALWAYS };

/* volume.c */
int64_t vol_now_ns(void);
void vol_seterr(struct vol_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Take the volume lock exclusively and begin a transaction / end it, drop
 * the lock, then make it durable as d promises (outside the lock). */
void vol_op_lock(struct vol *v);
int vol_op_unlock(struct vol *v, int r, enum durability d);
int vol_committer_start(struct vol *v);
void vol_committer_stop(struct vol *v);
/* After a flush: drop the vnodes only its transaction held (no lock held). */
void vol_sweep(struct vol *v);
/* Drain the remote-free queue (write lock held). */
void vol_drain(struct vol *v);
/* The durable record of file n, its data synced first; trim: capacity
 * back to the size (write lock held). */
int vol_commit(struct vol *v, struct cat_node *n, bool trim);
/* A live inode or an orphan by number (NULL if neither). */
struct cat_node *vol_node_get(struct vol *v, uint64_t ino);
/* Bytes of the image n's allocation takes, the allocator's headers
 * included. */
uint64_t vol_backing_of(struct vol *v, const struct cat_node *n);
uint64_t vol_slice_backing(struct vol *v, struct bs_slice s);
/* The allocations the volume holds outside the catalog (orphans), for
 * cat_live_slices and cat_check_extents; malloc'd. */
int vol_held(struct vol *v, struct cat_held **out, size_t *n);

/* volume_mount.c */
/* Stop the threads and free everything, writing nothing more (a failed
 * open, and the end of vol_close). */
void vol_free(struct vol *v);

#endif
