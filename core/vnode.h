/*
 * vnode.h — the volume's own state of an inode (docs/design.md §4, "Open
 * files"), kept apart from the catalog, which knows only what is stored.
 *
 * A vnode exists while something outside the catalog holds the inode:
 *   nlookup    the kernel's references: every entry the daemon hands the
 *              kernel (lookup, create, mkdir, mknod, symlink, link, each
 *              readdirplus entry) counts one, FUSE forget takes them back
 *              (vol_remember / vol_forget);
 *   opens      open descriptors (vol_open_file / vol_release);
 *   rec_dirty  the in-memory record is newer than the durable one;
 *   data_dirty file data was written without a sync;
 *   alloc_seq  the journal transaction that last changed the allocation
 *              (file data may go in place only once it is durable);
 *   orphan     the file was removed while open: the catalog has let go of
 *              its node (cat_detach) and the vnode owns it until the last
 *              close frees its space.
 * When none of these holds any more the vnode is dropped (vt_put); an
 * inode without a vnode is clean, closed and unknown to the kernel.
 *
 * Locking: each vnode's own lock guards its two counts, nlookup and
 * opens, which lookups, forgets and opens change under the volume's
 * shared lock (so an open of one file waits for no read or lookup of
 * another).  The table's mutex guards the hash chains and the lists; a
 * vnode is found and its count raised in one step under it, so that no
 * forget can drop it in between.  Every other field changes only under
 * the volume's exclusive lock, so readers under the shared lock see it
 * stable.  Order: the volume's lock, the table's mutex, a vnode's lock.
 */
#ifndef BSTACKFS_VNODE_H
#define BSTACKFS_VNODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"

struct vnode {
	pthread_mutex_t lock;      /* nlookup and opens */
	uint64_t ino;
	uint64_t nlookup;
	uint32_t opens;
	bool rec_dirty, data_dirty;
	bool pending;              /* on the table's pending list */
	uint64_t alloc_seq;
	uint64_t gen;              /* bumped by every exclusive change of the file */
	struct cat_node *orphan;   /* detached node, owned; NULL unless removed while open */
	struct vnode *hnext;       /* hash chain */
	struct vnode *onext;       /* the table's orphan list */
	struct vnode *pnext;       /* the table's pending list */
};

struct vnode_table {
	pthread_mutex_t mu;
	struct vnode **b;
	uint64_t nb;               /* power of two, 0 before the first vnode */
	uint64_t n;
	uint64_t n_held;           /* vnodes with nlookup > 0 */
	struct vnode *orphans;     /* vnodes with an orphan, newest first */
	uint64_t n_orphans;
	/* vnodes that only their alloc_seq still holds: dropped by vt_sweep
	 * once the journal has made that transaction durable */
	struct vnode *pending;
	uint64_t n_pending;        /* atomic reads: vt_has_pending */
};

void vt_init(struct vnode_table *t);
/* Frees every vnode and every orphan node still held. */
void vt_fini(struct vnode_table *t);
/* The vnode of ino, or NULL. */
struct vnode *vt_get(struct vnode_table *t, uint64_t ino);
/* The node ino's vnode holds as an orphan, or NULL.  (Under the shared
 * volume lock a forget may drop a vnode at any time, so the lookup and
 * the read are one step; an orphan's node itself goes only under the
 * exclusive lock.) */
struct cat_node *vt_orphan_of(struct vnode_table *t, uint64_t ino);
/* Whether ino is open and its allocation durable (alloc_seq at or below
 * durable_seq: its data may go in place without a transaction), and its
 * gen then; one step under the table's mutex, for a caller under the
 * shared volume lock (where a vnode may go at any time). */
bool vt_open_in_place(struct vnode_table *t, uint64_t ino, uint64_t durable_seq,
		      uint64_t *gen);
/* The vnode of ino, made when there is none (NULL only when out of
 * memory). */
struct vnode *vt_need(struct vnode_table *t, uint64_t ino);
/* Drop vn if nothing holds it any more; durable_seq is the journal's
 * durable sequence (alloc_seq at or below it holds nothing). */
void vt_put(struct vnode_table *t, struct vnode *vn, uint64_t durable_seq);
/* Drop the pending vnodes whose transaction is durable now (under the
 * volume's lock, shared or exclusive). */
void vt_sweep(struct vnode_table *t, uint64_t durable_seq);
static inline bool vt_has_pending(struct vnode_table *t)
{
	return __atomic_load_n(&t->n_pending, __ATOMIC_RELAXED) != 0;
}
/* One more open of ino (NULL only when out of memory) / one less: the
 * vnode, and whether that was the last open (a release without a counted
 * open counts as the last). */
struct vnode *vt_open(struct vnode_table *t, uint64_t ino);
bool vt_close(struct vnode *vn);
/* Open descriptors of vn (0 for NULL). */
uint32_t vt_opens(struct vnode *vn);
/* The kernel took one reference to ino (-ENOMEM: it could not be
 * counted) / gave n back (more than it holds: clamped at zero). */
int vt_remember(struct vnode_table *t, uint64_t ino);
void vt_forget(struct vnode_table *t, uint64_t ino, uint64_t n, uint64_t durable_seq);
/* Vnodes, and of them those the kernel holds (nlookup > 0). */
void vt_counts(struct vnode_table *t, uint64_t *vnodes, uint64_t *held);
/* vn's file was removed while open: vn owns n from here on. */
void vt_make_orphan(struct vnode_table *t, struct vnode *vn, struct cat_node *n);
/* The orphan's node is gone (its space freed): vn holds it no more. */
void vt_orphan_done(struct vnode_table *t, struct vnode *vn);

static inline bool vn_rec_dirty(const struct vnode *vn)
{
	return vn && vn->rec_dirty;
}

static inline bool vn_data_dirty(const struct vnode *vn)
{
	return vn && vn->data_dirty;
}

#endif
