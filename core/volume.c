/*
 * volume.c — named files and directories over any allocator (docs/design.md
 * §1, §3-§6).  The catalog (catalog.c) holds the names and attributes; each
 * regular file is one allocation whose bytes are the file's bytes.  This
 * file is the file layer; what an open does with an image (format, the
 * two-phase mount, adoption, refusals) is volume_mount.c, the figures and
 * the control file's text volume_stats.c (volume_impl.h: what they share).
 *
 * On-disk layout: the allocator's (alloc_*.c) with the catalog's root
 * reference in its caller-reserved bytes (catalog.c).  A file's record
 * holds its allocation (offset, capacity) and its size; capacity >= size.
 * Bytes of the allocation past the size may hold stale data: every size
 * increase zeroes the part of that range it exposes, so holes and
 * truncate-up read as zeros.
 *
 * Crash invariant (docs/design.md §4, guarantee 2): no durable record ever names
 * space the allocator holds as free, and no two records share a byte.  The
 * allocator is never allowed to move a file (it could free the old place
 * before the record moves); the volume does every move itself:
 *   grow:    bs_grow_in_place, else alloc new -> copy -> sync -> durably
 *            repoint the record -> dealloc old            (copy-on-write)
 *   shrink:  durably write the record with the smaller allocation, then
 *            realloc the old slice down                     (repoint first)
 *   unlink:  durably tombstone the record, then dealloc   (record first)
 * A crash between the steps leaves space that no record references (or a
 * record naming less than the allocator holds); mount returns it to the
 * allocator (bs_alloc_reclaim) and counts it in leaked_bytes_reclaimed.
 *
 * Vnodes (vnode.h): what the volume knows of an inode beyond its record —
 * open descriptors, the kernel's references (vol_remember/vol_forget,
 * FUSE's lookup count), a record or data not yet durable, an allocation
 * whose transaction is not durable yet — lives in a vnode that exists
 * only while one of these holds.  The catalog's nodes carry none of it.
 *
 * Open files (POSIX unlink semantics): vol_open_file counts one open,
 * vol_release one close.  Unlinking (or renaming over) a file that is
 * still open tombstones its record durably exactly as above, but the
 * dealloc waits for the last close: the catalog lets go of the node
 * (cat_detach) and its vnode keeps it as an orphan (vnode.h) — in no
 * name index, not in readdir or the file count, found only by inode,
 * nlink 0.  Its pair may go to a new inode at
 * once, so an orphan never writes a record again; its in-memory allocation
 * is the only reference to its space, and it still grows without the
 * allocator moving it (grow_in_place, else alloc -> copy -> dealloc, with
 * no record to repoint and nothing to sync for).  The last vol_release
 * deallocs it, vol_close deallocs every remaining one.  A crash while
 * orphans exist leaves their space referenced by no durable record, so
 * mount reclaims it (leaked_bytes_reclaimed) — the role of ext4's orphan
 * list, with the reclaim pass in its place.
 *
 * Remote frees (issue 10, core/freeq.h): the space a removal gives back —
 * unlink, rmdir, truncate to zero, rename over an existing file, the last
 * close of an orphan — is not freed by the request that removes it; the
 * slice goes onto the remote-free queue (vol_give_back) and the owner drains
 * a batch as ONE bulk dealloc: the request that next allocates space for a
 * file (vol_alloc: whatever is queued), a removal that brings the queue to
 * the policy's threshold (vol_owner_tick), fsync, statfs, unmount, and a
 * catalog growth that finds no room.  The queue
 * is pushed and drained under the volume's write lock, so its single
 * consumer is whoever holds that lock.  A queued slice is already named by
 * no durable record (the removal's record went first), so a crash with
 * frees still queued leaves unreferenced space, and mount reclaims it
 * (leaked_bytes_reclaimed): nothing is lost for good.  Until drained, queued
 * space is pending — neither free (statfs, free_bytes) nor any file's.
 *
 * Durability (§5): metadata changes are one durable record write.  File
 * data goes out with bstack_set_nosync and is made durable by fsync,
 * release, sync_all and close: first a sync (the data), then the record
 * (size, capacity, times), so a durable size never covers bytes that are
 * not on disk.  Directory mtimes changed by create/unlink are written at
 * sync_all/close (no extra sync per operation).  atime is not updated on
 * read.
 *
 * Amortised growth: appending grows the capacity geometrically (double,
 * with steps capped at VOL_GROW_STEP_MAX), so n bytes in small writes cost
 * O(log n) reallocs.  Growth does not scatter (issue 15): it is in place
 * where the allocator can (tail, free right neighbour; GhostTree and
 * FirstFit hand out the front of a free block, so a new file has room
 * right behind it), and when the doubled capacity does not fit in place
 * but the write does, the file grows in place by what the write needs
 * instead of moving and leaving its old place as a hole.  Free tail space
 * is given back at unmount (give_back_tail).  The last release and close
 * trim capacity back to the size
 * (Linear can only shrink its tail allocation; elsewhere it keeps the
 * capacity, which the record states).
 *
 * A full disk (-ENOSPC from below): a grow that fails changes nothing (the
 * steps above undo or never start), so the file keeps its size, bytes and
 * record.  A tail that cannot grow in place still moves into free space
 * elsewhere, and a write whose amortised headroom does not fit retries
 * with exactly the capacity it needs.
 *
 * Thread safety: one rwlock; reads, lookups and listings share it,
 * everything that changes the volume holds it exclusively.  The commit's
 * sync is never under it: vol_op_unlock() releases it first, then waits for
 * the flush, so operations arriving together share one sync (group
 * commit).  Lock order, outermost first:
 *   v->lock -> (bstack) txn_mu -> flush_mu -> bs->lock -> the allocator's
 *   and the free queue's own locks;
 *   v->lock -> vt.mu (the vnode table's) -> a vnode's lock (its counts:
 *   lookups, forgets and opens change them under the shared v->lock);
 *   cm_mu (the committer's wake-up) is never held while taking another:
 *   the committer drops it before vol_op_lock();
 *   a flush (bstack_flush) takes flush_mu with no volume lock held.
 */
#include "volume_impl.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "util.h"
#include "xattr.h"

#define VOL_GROW_MIN 4096ULL
#define VOL_GROW_STEP_MAX (64ULL << 20)
#define VOL_GROW_BIG_FROM (1ULL << 20)   /* vol_write: grow by a whole step */
#define VOL_COPY_CHUNK (1ULL << 20)

/* File n's size goes from old to new (orphans are no named file's). */
static void live_change(struct vol *v, const struct cat_node *n, uint64_t old, uint64_t new)
{
	if (cat_detached(n) || cat_attr_of(n)->kind != CAT_FILE || old == new)
		return;
	v->live_now = v->live_now - old + new;
	if (v->live_now > v->live_peak)
		v->live_peak = v->live_now;
}

int64_t vol_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void vol_seterr(struct vol_error *err, const char *fmt, ...)
{
	va_list ap;
	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

int vol_name_ok(const char *name)
{
	return name ? cat_name_ok(name, strnlen(name, CAT_NAME_MAX + 1)) : -EINVAL;
}

static bool is_control(uint64_t parent, const char *name)
{
	return parent == VOL_ROOT_INO && (strcmp(name, VOL_CONTROL_NAME) == 0 ||
					  strcmp(name, VOL_CONTROL_JSON_NAME) == 0);
}

/* ---- attributes ------------------------------------------------------------ */

uint64_t vol_slice_backing(struct vol *v, struct bs_slice s)
{
	uint64_t start, len;
	return s.len && !bs_alloc_extent(v->a, s, &start, &len) ? len : 0;
}

uint64_t vol_backing_of(struct vol *v, const struct cat_node *n)
{
	const struct cat_attr *a = cat_attr_of(n);
	return cat_kind_has_alloc(a->kind) ? vol_slice_backing(v, a->alloc) : 0;
}

/* A node by inode: a named one, else an orphan (removed while open). */
struct cat_node *vol_node_get(struct vol *v, uint64_t ino)
{
	struct cat_node *n = cat_get(v->c, ino);
	return n ? n : vt_orphan_of(&v->vt, ino);
}

static void fill_attr(struct vol *v, const struct cat_node *n, struct vol_attr *a)
{
	const struct cat_attr *r = cat_attr_of(n);
	memset(a, 0, sizeof *a);
	a->ino = r->ino;
	a->parent = r->parent;
	a->mode = r->mode;
	a->uid = r->uid;
	a->gid = r->gid;
	a->nlink = r->kind == CAT_DIR ? (uint32_t)(2 + cat_nsubdirs(n)) : cat_nlink(n);
	a->rdev = r->rdev;
	a->size = r->size;
	a->alloc_bytes = vol_backing_of(v, n);
	a->atime_ns = r->atime;
	a->mtime_ns = r->mtime;
	a->ctime_ns = r->ctime;
}

static struct cat_node *get_dir(struct vol *v, uint64_t ino, int *r)
{
	struct cat_node *d = cat_get(v->c, ino);
	*r = !d ? -ENOENT : cat_attr_of(d)->kind != CAT_DIR ? -ENOTDIR : 0;
	return *r ? NULL : d;
}

int vol_lookup(struct vol *v, uint64_t parent, const char *name, struct vol_attr *out)
{
	int r = vol_name_ok(name);
	if (r)
		return r;
	__atomic_fetch_add(&v->n_lookups, 1, __ATOMIC_RELAXED);
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *d = get_dir(v, parent, &r), *n = NULL;
	if (d && !(n = cat_lookup(v->c, parent, name, strlen(name))))
		r = -ENOENT;
	if (n && out)
		fill_attr(v, cat_inode_of(n), out);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_getattr(struct vol *v, uint64_t ino, struct vol_attr *out)
{
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = vol_node_get(v, ino);
	if (n)
		fill_attr(v, n, out);
	pthread_rwlock_unlock(&v->lock);
	return n ? 0 : -ENOENT;
}

/* ---- record writes with the data barrier --------------------------------- */

/* vn, cleaned: dropped when nothing else holds it (vnode.h). */
static void vn_put(struct vol *v, struct vnode *vn)
{
	vt_put(&v->vt, vn, bstack_durable_seq(v->bs));
}

/* Durably store r as n's record.  When the file has unsynced data the sync
 * comes first, so the record (its size) never reaches the disk before the
 * bytes it covers. */
static int store(struct vol *v, struct cat_node *n, const struct cat_rec *r)
{
	struct vnode *vn = vt_get(&v->vt, cat_attr_of(n)->ino);
	int e;
	if (vn)
		vn->gen++;   /* write_shared: the file changed */
	if (cat_detached(n))
		return cat_set_detached(n, r);   /* an orphan has no record */
	if (vn_data_dirty(vn)) {
		if ((e = bstack_sync(v->bs)))
			return e;
		vn->data_dirty = false;
	}
	if ((e = cat_store(v->c, n, r)))
		return e;
	if (vn) {
		vn->rec_dirty = false;
		vn_put(v, vn);
	}
	return 0;
}

/*
 * The marks a vnode keeps for the next durability point (vnode.h): n's
 * in-memory record is ahead of the disk, data went in place without a
 * sync, the allocation changed in this transaction.  With no memory for a
 * vnode the mark's work is done at once instead (the record written, the
 * data synced, the transaction made durable), which keeps every promise
 * at the cost of a write.
 */
static int mark_rec(struct vol *v, struct cat_node *n)
{
	struct vnode *vn;
	if (cat_detached(n))
		return 0;   /* an orphan writes no record */
	if ((vn = vt_need(&v->vt, cat_attr_of(n)->ino))) {
		vn->rec_dirty = true;
		return 0;
	}
	struct cat_rec nr;
	cat_rec_get(n, &nr);
	return store(v, n, &nr);
}

static int mark_data(struct vol *v, struct cat_node *n)
{
	struct vnode *vn = vt_need(&v->vt, cat_attr_of(n)->ino);
	if (vn) {
		vn->data_dirty = true;
		return 0;
	}
	return bstack_sync(v->bs);
}

/* ---- the transaction boundary (docs/design.md §5) -------------------------
 *
 * Every operation that changes the volume runs as one transaction of the
 * file layer: vol_op_lock() takes the volume lock and begins it, vol_op_unlock()
 * seals it and releases the lock, and then — outside the lock, so that
 * operations arriving together share one journal sync (group commit) —
 * makes it durable as the operation promises:
 *   D_NONE      nothing (write: data is durable at fsync/close);
 *   D_METADATA  durable on return with commit=0; within commit_s seconds
 *               otherwise (the committer thread);
 *   D_CLOSE     with commit=0 everything pending is durable on return (a
 *               close: the file's earlier writes too); else as D_METADATA;
 *   D_ALWAYS    durable on return under every setting (fsync, sync).
 * Without a journal the layers below are durable step by step, as the
 * seeds specify, and these are plain lock and unlock.
 */

/* vol_defer_begin .. vol_defer_end: this thread's durability wanted */
static _Thread_local struct {
	bool on;
	uint64_t want;
} op_defer;

void vol_defer_begin(void)
{
	op_defer.on = true;
	op_defer.want = 0;
}

uint64_t vol_defer_end(void)
{
	op_defer.on = false;
	return op_defer.want;
}

int vol_wait_durable(struct vol *v, uint64_t want)
{
	if (!want || bstack_durable_seq(v->bs) >= want)
		return 0;
	int r = bstack_flush(v->bs, want);
	vol_sweep(v);
	return r;
}

void vol_when_durable(struct vol *v, uint64_t want, struct vol_waiter *w)
{
	if (!want || bstack_durable_seq(v->bs) >= want) {
		w->done(w, 0);
		return;
	}
	w->want = want;
	w->next = NULL;
	pthread_mutex_lock(&v->dw_mu);
	*v->dw_tail = w;
	v->dw_tail = &w->next;
	if (v->dw_leading) {
		pthread_mutex_unlock(&v->dw_mu);
		return;   /* the flushing thread answers it */
	}
	v->dw_leading = true;
	while (v->dw_head) {
		uint64_t max = 0;
		for (struct vol_waiter *x = v->dw_head; x; x = x->next)
			max = x->want > max ? x->want : max;
		pthread_mutex_unlock(&v->dw_mu);
		int r = bstack_flush(v->bs, max);
		vol_sweep(v);
		pthread_mutex_lock(&v->dw_mu);
		/* take the waiters this flush answered (all of them on an error) */
		uint64_t dur = bstack_durable_seq(v->bs);
		struct vol_waiter *ready = NULL, **rt = &ready, **pp = &v->dw_head;
		while (*pp) {
			struct vol_waiter *x = *pp;
			if (r || x->want <= dur) {
				*pp = x->next;
				x->next = NULL;
				*rt = x;
				rt = &x->next;
			} else {
				pp = &x->next;
			}
		}
		v->dw_tail = pp;
		pthread_mutex_unlock(&v->dw_mu);
		for (struct vol_waiter *x = ready, *nx; x; x = nx) {
			nx = x->next;   /* done may free x */
			x->done(x, r);
		}
		pthread_mutex_lock(&v->dw_mu);
	}
	v->dw_leading = false;
	pthread_mutex_unlock(&v->dw_mu);
}

void vol_op_lock(struct vol *v)
{
	pthread_rwlock_wrlock(&v->lock);
	bstack_txn_begin(v->bs);
}

int vol_op_unlock(struct vol *v, int r, enum durability d)
{
	uint64_t seq = 0;
	int e = bstack_txn_end(v->bs, &seq);
	pthread_rwlock_unlock(&v->lock);
	__atomic_store_n(&v->last_op_ns, vol_now_ns(), __ATOMIC_RELAXED);
	if (!r)
		r = e;
	/* D_ALWAYS flushes whatever is pending (earlier writes' data too) */
	bool all = d == D_ALWAYS || (d == D_CLOSE && v->opts.commit_s == 0);
	if (all || (seq && d >= D_METADATA && v->opts.commit_s == 0)) {
		if (op_defer.on && bstack_journaled(v->bs)) {
			/* vol_defer_begin: the caller waits (vol_when_durable) */
			uint64_t want = all ? bstack_sealed_seq(v->bs) : seq;
			if (want > op_defer.want)
				op_defer.want = want;
			return r;
		}
		int f = bstack_flush(v->bs, all ? 0 : seq);
		if (!r)
			r = f;
		vol_sweep(v);
	}
	return r;
}

/* Vnodes that waited for a flush (vnode.h: pending) go once it is done. */
void vol_sweep(struct vol *v)
{
	if (!vt_has_pending(&v->vt))
		return;
	pthread_rwlock_rdlock(&v->lock);
	vt_sweep(&v->vt, bstack_durable_seq(v->bs));
	pthread_rwlock_unlock(&v->lock);
}

/* ---- the committer thread ---------------------------------------------------
 *
 * With commit=N it flushes at most N seconds after an operation; with a
 * journal it also checkpoints once the volume has been idle for
 * idle_checkpoint_s seconds, so an idle image is a plain bstack image that
 * other programs can open after a crash.  Neither runs without a journal.
 */
static int give_back_tail(struct vol *v, uint64_t *freed);

static void *committer_main(void *arg)
{
	struct vol *v = arg;
	int64_t last_flush = vol_now_ns();
	pthread_mutex_lock(&v->cm_mu);
	while (!v->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&v->cm_cv, &v->cm_mu, &ts);
		if (v->stop)
			break;
		pthread_mutex_unlock(&v->cm_mu);
		int64_t now = vol_now_ns();
		int64_t last_op = __atomic_load_n(&v->last_op_ns, __ATOMIC_RELAXED);
		if (v->opts.commit_s && now - last_flush >= (int64_t)v->opts.commit_s * 1000000000LL) {
			bstack_flush(v->bs, 0);
			vol_sweep(v);
			last_flush = now;
		}
		if (v->opts.idle_checkpoint_s && last_op &&
		    now - last_op >= (int64_t)v->opts.idle_checkpoint_s * 1000000000LL) {
			struct bstack_journal_stats st;
			bstack_journal_stats(v->bs, &st);
			if (st.journal_used_bytes || v->opts.commit_s) {
				/* queued frees are drained and free tail space
				 * goes back at every checkpoint */
				vol_op_lock(v);
				vol_drain(v);
				int r = give_back_tail(v, NULL);
				vol_op_unlock(v, r, D_ALWAYS);
				bstack_checkpoint(v->bs);
			}
			__atomic_store_n(&v->last_op_ns, 0, __ATOMIC_RELAXED);
		}
		pthread_mutex_lock(&v->cm_mu);
	}
	pthread_mutex_unlock(&v->cm_mu);
	return NULL;
}

int vol_start_threads(struct vol *v)
{
	return v->committer_on ? 0 : vol_committer_start(v);
}

int vol_committer_start(struct vol *v)
{
	if (!bstack_journaled(v->bs) || (!v->opts.commit_s && !v->opts.idle_checkpoint_s))
		return 0;
	int e = pthread_create(&v->committer, NULL, committer_main, v);
	if (e)
		return -e;
	v->committer_on = true;
	return 0;
}

void vol_committer_stop(struct vol *v)
{
	if (!v->committer_on)
		return;
	pthread_mutex_lock(&v->cm_mu);
	v->stop = true;
	pthread_cond_signal(&v->cm_cv);
	pthread_mutex_unlock(&v->cm_mu);
	pthread_join(v->committer, NULL);
	v->committer_on = false;
}

/* Bytes of file data that travel in the journal rather than in place
 * while the file's allocation is not durable yet (a small file written
 * after its create); past this the allocation is made durable first. */
#define VOL_JOURNAL_DATA_MAX (256ULL << 10)

/* How file data for n may be written: in the journal (the allocation is
 * not durable yet and the file is small), or in place after a barrier
 * makes the allocation durable (docs/design.md §5: the ordering rule). */
static int data_flags(struct vol *v, struct cat_node *n, uint64_t end, unsigned *flags)
{
	struct vnode *vn = vt_get(&v->vt, cat_attr_of(n)->ino);
	*flags = 0;
	if (!bstack_journaled(v->bs) || !vn || vn->alloc_seq <= bstack_durable_seq(v->bs))
		return 0;
	if (end <= VOL_JOURNAL_DATA_MAX) {
		*flags = BSTACK_DATA_JOURNAL;
		return 0;
	}
	return bstack_barrier(v->bs);
}

/* n's allocation changed in this transaction: until it is durable, n's
 * data may not go in place (data_flags).  Without a vnode to say so, the
 * transaction so far is made durable now (a barrier). */
static int mark_alloc(struct vol *v, struct cat_node *n)
{
	struct vnode *vn;
	if (!bstack_journaled(v->bs))
		return 0;
	if ((vn = vt_need(&v->vt, cat_attr_of(n)->ino))) {
		vn->alloc_seq = bstack_txn_seq(v->bs);
		return 0;
	}
	return bstack_barrier(v->bs);
}

static int set_alloc(struct vol *v, struct cat_node *n, struct bs_slice s)
{
	cat_set_alloc(n, s);   /* write_shared compares the allocation itself */
	int r = mark_alloc(v, n);
	return r ? r : mark_rec(v, n);
}

static int touch_dir(struct vol *v, struct cat_node *d, int64_t now)
{
	cat_set_times(d, now, now);
	return mark_rec(v, d);
}

/* ---- create, mkdir, unlink, rmdir ----------------------------------------- */

/* ---- remote frees (core/freeq.h) ------------------------------------------ */

/*
 * The owner's drain: one batch, one bulk dealloc.  Write lock held.  A failed
 * dealloc only leaks until the next mount's reclaim (guarantee 4 holds: the
 * records that named the space are already gone).
 *
 * Transactions (issue 9): a drain changes only allocator state, so it must
 * sit inside a transaction of its own — begin before bs_freeq_drain /
 * bs_freeq_maybe_drain, commit after — never inside the transaction of the
 * request that happens to be the owner, whose commit must not wait on (or
 * roll back) frees queued by other requests.
 */
void vol_drain(struct vol *v)
{
	if (v->fq)
		bs_freeq_drain(v->fq, NULL);
}

/* The owner's tick (the request about to allocate, or that just queued a
 * free): the policy decides whether a batch is due. */
static void vol_owner_tick(struct vol *v)
{
	if (v->fq)
		bs_freeq_maybe_drain(v->fq, NULL);
}

/* Give s back through the queue.  The pushing request holds the write lock,
 * so it cannot wait for an owner: a full queue is drained here first, and a
 * closed one (unmount), or none yet (mount's own repairs), means freeing
 * directly. */
static void vol_give_back(struct vol *v, struct bs_slice s)
{
	if (s.len == 0)
		return;
	int r = v->fq ? bs_freeq_try_push(v->fq, s) : -EPIPE;
	if (r == -EAGAIN) {
		vol_drain(v);
		r = bs_freeq_try_push(v->fq, s);
	}
	if (r)
		bs_dealloc(v->a, s);
	else
		vol_owner_tick(v);
}

/* Allocate for a file.  The request that allocates is the owner: it ticks
 * the policy and then drains whatever is still queued, so that freed space
 * is always there for the next allocation (the threshold batches streams
 * of removals, which allocate nothing). */
static int vol_alloc(struct vol *v, uint64_t len, struct bs_slice *out)
{
	vol_owner_tick(v);
	if (v->fq && bs_freeq_depth(v->fq))
		vol_drain(v);
	return bs_alloc(v->a, len, out);
}

static int put_data(struct vol *v, struct cat_node *f, uint64_t off, const void *buf,
		    uint64_t n, unsigned flags);

static int put_new(struct vol *v, const void *buf, size_t len, struct bs_slice *out);

/* What a new inode is: its kind, type bits, device and symlink target. */
struct make_what {
	uint8_t kind;
	uint32_t type;            /* S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, ... */
	uint32_t rdev;
	const char *target;       /* CAT_SYMLINK */
	size_t tlen;
};

static int make(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
		uint32_t uid, uint32_t gid, struct make_what *w, struct vol_attr *out)
{
	struct cat_node *d, *n;
	int r = vol_name_ok(name);
	if (r)
		return r;
	if (is_control(parent, name))
		return -EEXIST;
	vol_op_lock(v);
	if (!(d = get_dir(v, parent, &r)))
		goto out;
	if (cat_lookup(v->c, parent, name, strlen(name))) {
		r = -EEXIST;
		goto out;
	}
	int64_t now = vol_now_ns();
	struct cat_rec rec = {
		.kind = w->kind, .parent = parent, .name_len = (uint16_t)strlen(name),
		.mode = w->type | (mode & 07777), .rdev = w->rdev,
		.uid = uid, .gid = gid, .atime = now, .mtime = now, .ctime = now,
	};
	/* a set-group-ID directory hands its group down, and its bit to new
	 * directories (as ext4 without grpid) */
	if (cat_attr_of(d)->mode & S_ISGID) {
		rec.gid = cat_attr_of(d)->gid;
		if (w->kind == CAT_DIR)
			rec.mode |= S_ISGID;
	}
	memcpy(rec.name, name, rec.name_len);
	if (w->kind > CAT_TOMB && (r = cat_upgrade(v->c)))
		goto out;
	if (w->kind == CAT_SYMLINK) {
		rec.size = w->tlen;
		rec.target = w->target;
		/* a long target is the symlink's allocation, written as a new
		 * file's first bytes */
		if (w->tlen > CAT_INLINE_TARGET_MAX && (r = put_new(v, w->target, w->tlen, &rec.alloc)))
			goto out;
	}
	/* a new file is the zero-length allocation: no allocator I/O (§1);
	 * the catalog may have to grow, and the queued frees may hold room */
	r = cat_create(v->c, &rec, &n);
	if (r == -ENOSPC && bs_freeq_depth(v->fq)) {
		vol_drain(v);
		r = cat_create(v->c, &rec, &n);
	}
	if (r) {
		vol_give_back(v, rec.alloc);
		goto out;
	}
	if (w->kind == CAT_FILE || rec.alloc.len)
		v->ctr.allocs++;
	r = touch_dir(v, d, now);
	if (!r && out)
		fill_attr(v, n, out);
out:
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_create(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	struct make_what w = { .kind = CAT_FILE, .type = S_IFREG };
	return make(v, parent, name, mode, uid, gid, &w, out);
}

int vol_mkdir(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	      uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	struct make_what w = { .kind = CAT_DIR, .type = S_IFDIR };
	return make(v, parent, name, mode, uid, gid, &w, out);
}

int vol_mknod(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	      uint32_t rdev, uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	uint32_t type = mode & S_IFMT;
	struct make_what w = { .kind = CAT_SPECIAL, .type = type };
	if (type == S_IFREG)
		return vol_create(v, parent, name, mode, uid, gid, out);
	if (type == S_IFCHR || type == S_IFBLK)
		w.rdev = rdev;
	else if (type != S_IFIFO && type != S_IFSOCK)
		return type == S_IFDIR ? -EPERM : -EINVAL;
	return make(v, parent, name, mode, uid, gid, &w, out);
}

int vol_symlink(struct vol *v, uint64_t parent, const char *name, const char *target,
		uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	size_t tlen = strlen(target);
	struct make_what w = { .kind = CAT_SYMLINK, .type = S_IFLNK, .target = target,
			       .tlen = tlen };
	if (tlen == 0)
		return -ENOENT;   /* symlink(2) with an empty target */
	if (tlen > CAT_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return make(v, parent, name, 0777, uid, gid, &w, out);
}

ssize_t vol_readlink(struct vol *v, uint64_t ino, char *buf, size_t size)
{
	ssize_t r;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = cat_get(v->c, ino);
	if (!n) {
		r = -ENOENT;
	} else if (cat_attr_of(n)->kind != CAT_SYMLINK) {
		r = -EINVAL;
	} else {
		size_t k = cat_attr_of(n)->size < size ? cat_attr_of(n)->size : size;
		r = (ssize_t)k;
		if (cat_attr_of(n)->alloc.len == 0)
			memcpy(buf, cat_target_of(n), k);
		else if (bstack_get(v->bs, cat_attr_of(n)->alloc.off, buf, k))
			r = -EIO;
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_link(struct vol *v, uint64_t ino, uint64_t newparent, const char *newname,
	     struct vol_attr *out)
{
	struct cat_node *d, *n, *l;
	int r = vol_name_ok(newname);
	if (r)
		return r;
	if (is_control(newparent, newname))
		return -EEXIST;
	vol_op_lock(v);
	if (!(d = get_dir(v, newparent, &r)))
		goto out;
	if (!(n = cat_get(v->c, ino))) {
		r = -ENOENT;
		goto out;
	}
	if (cat_attr_of(n)->kind == CAT_DIR) {
		r = -EPERM;
		goto out;
	}
	if (cat_lookup(v->c, newparent, newname, strlen(newname))) {
		r = -EEXIST;
		goto out;
	}
	if (cat_nlink(n) >= CAT_NLINK_MAX) {
		r = -EMLINK;
		goto out;
	}
	if ((r = cat_upgrade(v->c)))
		goto out;
	r = cat_link(v->c, n, newparent, newname, strlen(newname), &l);
	if (r == -ENOSPC && bs_freeq_depth(v->fq)) {
		vol_drain(v);
		r = cat_link(v->c, n, newparent, newname, strlen(newname), &l);
	}
	if (r)
		goto out;
	int64_t now = vol_now_ns();
	cat_set_times(n, -1, now);
	if (!(r = mark_rec(v, n)))
		r = touch_dir(v, d, now);
	if (!r && out)
		fill_attr(v, n, out);
out:
	return vol_op_unlock(v, r, D_METADATA);
}

/* Remove inode n, which has no name left: the record goes durably first,
 * its space second (unlink order, guarantee 2); a failed dealloc only
 * leaks until the next mount.  A file still open becomes an orphan
 * instead: record gone, space kept until its last close (vol_release). */
static int drop(struct vol *v, struct cat_node *n)
{
	struct bs_slice s = cat_attr_of(n)->alloc;
	bool file = cat_attr_of(n)->kind == CAT_FILE;
	uint64_t size = cat_attr_of(n)->size;
	int r;
	struct vnode *vn = vt_get(&v->vt, cat_attr_of(n)->ino);
	if (file && vt_opens(vn)) {
		if (!(r = cat_detach(v->c, n))) {
			vt_make_orphan(&v->vt, vn, n);
			v->live_now -= size < v->live_now ? size : v->live_now;
		}
		vol_give_back(v, cat_take_freed_xattr(v->c));
		return r;
	}
	if (vn) {
		/* gone: nothing of it is left to write */
		vn->rec_dirty = vn->data_dirty = false;
		vn_put(v, vn);
	}
	if ((r = cat_remove(v->c, n)))
		return r;
	vol_give_back(v, cat_take_freed_xattr(v->c));
	if (file)
		v->live_now -= size < v->live_now ? size : v->live_now;
	vol_give_back(v, s);
	if (file || s.len)
		v->ctr.deallocs++;
	return 0;
}

/* Remove one name.  A link record goes alone, and its inode with it when
 * that was its last name (link tombstone first, then the inode's: a crash
 * in between leaves a stray that mount removes); the first name of an
 * inode that has links makes it nameless.  Each step is one record. */
static int drop_name(struct vol *v, struct cat_node *name, bool *gone)
{
	struct cat_node *n = cat_inode_of(name);
	int r;
	*gone = false;
	if (cat_attr_of(name)->kind == CAT_LINK) {
		if ((r = cat_unlink_name(v->c, name)))
			return r;
		*gone = true;
		if (cat_nlink(n) == 0) {
			if ((r = drop(v, n)))
				cat_forget(v->c, n);   /* a stray on disk: mount removes it */
			return r;   /* n is gone either way */
		}
	} else if (cat_link_count(n)) {
		if ((r = cat_unname(v->c, n)))
			return r;
		*gone = true;
	} else {
		r = drop(v, n);
		*gone = !r;
		return r;
	}
	cat_set_times(n, -1, vol_now_ns());   /* its link count changed */
	return mark_rec(v, n);
}

static int remove_entry(struct vol *v, uint64_t parent, const char *name, bool dir)
{
	struct cat_node *d, *n = NULL;
	bool gone;
	int r = vol_name_ok(name);
	if (r)
		return r;
	if (is_control(parent, name))
		return -EPERM;
	vol_op_lock(v);
	if (!(d = get_dir(v, parent, &r)))
		goto out;
	if (!(n = cat_lookup(v->c, parent, name, strlen(name))))
		r = -ENOENT;
	else if (dir && cat_attr_of(n)->kind != CAT_DIR)
		r = -ENOTDIR;
	else if (!dir && cat_attr_of(n)->kind == CAT_DIR)
		r = -EISDIR;
	else if (dir && cat_has_children(n))
		r = -ENOTEMPTY;
	else if (!(r = drop_name(v, n, &gone)))
		r = touch_dir(v, d, vol_now_ns());
out:
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_unlink(struct vol *v, uint64_t parent, const char *name)
{
	return remove_entry(v, parent, name, false);
}

int vol_rmdir(struct vol *v, uint64_t parent, const char *name)
{
	return remove_entry(v, parent, name, true);
}

/* ---- rename ----------------------------------------------------------------- */

/* Is `anc` (a directory) newparent or one of its ancestors? */
static bool is_ancestor(struct vol *v, uint64_t anc, uint64_t ino)
{
	/* bounded: the tree was verified acyclic and has dirs levels at most */
	struct cat_info ci;
	cat_info(v->c, &ci);
	for (uint64_t i = 0; i <= ci.dirs + 1; i++) {
		if (ino == anc)
			return true;
		if (ino == VOL_ROOT_INO)
			return false;
		struct cat_node *n = cat_get(v->c, ino);
		if (!n)
			return false;
		ino = cat_attr_of(n)->parent;
	}
	return true;
}

static int rename_checks(struct vol *v, struct cat_node *src, struct cat_node *dst,
			 uint64_t newparent, unsigned flags)
{
	if (cat_attr_of(src)->kind == CAT_DIR && is_ancestor(v, cat_attr_of(src)->ino, newparent))
		return -EINVAL;   /* a directory cannot move into itself */
	if (!dst)
		return 0;
	if (flags & VOL_RENAME_NOREPLACE)
		return -EEXIST;
	if (cat_attr_of(src)->kind == CAT_DIR && cat_attr_of(dst)->kind != CAT_DIR)
		return -ENOTDIR;
	if (cat_attr_of(src)->kind != CAT_DIR && cat_attr_of(dst)->kind == CAT_DIR)
		return -EISDIR;
	if (cat_has_children(dst))
		return -ENOTEMPTY;
	return 0;
}

/* Give record r the name (parent, name[0..len)). */
static void set_name(struct cat_rec *r, uint64_t parent, const char *name, size_t len)
{
	r->parent = parent;
	r->name_len = (uint16_t)len;
	memset(r->name, 0, sizeof r->name);
	memcpy(r->name, name, len);
}

/* RENAME_EXCHANGE: the two names trade places in one transaction.  Only
 * with the journal: without it the two record writes are separate steps
 * and a crash between them would leave two records with one name, which
 * mount resolves as an interrupted rename-over (the older one removed). */
static int exchange(struct vol *v, struct cat_node *d, struct cat_node *nd,
		    struct cat_node *src, struct cat_node *dst)
{
	struct cat_rec a, b;
	cat_rec_get(src, &a);
	cat_rec_get(dst, &b);
	int64_t now = vol_now_ns();
	int r;
	if (!bstack_journaled(v->bs))
		return -EINVAL;
	const struct cat_attr *s = cat_attr_of(src), *t = cat_attr_of(dst);
	if (s->kind == CAT_DIR && is_ancestor(v, s->ino, t->parent))
		return -EINVAL;
	if (t->kind == CAT_DIR && is_ancestor(v, t->ino, s->parent))
		return -EINVAL;
	set_name(&a, cat_attr_of(dst)->parent, cat_name_of(dst), cat_attr_of(dst)->name_len);
	set_name(&b, cat_attr_of(src)->parent, cat_name_of(src), cat_attr_of(src)->name_len);
	a.ctime = b.ctime = now;
	if ((r = store(v, src, &a)) || (r = store(v, dst, &b)))
		return r;   /* the transaction is refused as a whole (vol_op_unlock) */
	if ((r = touch_dir(v, d, now)))
		return r;
	return touch_dir(v, nd, now);
}

/*
 * One durable record write moves the name.  Over an existing name the
 * renamed record is written first (its seq is newer than the victim's), the
 * victim's name goes second (drop_name: a tombstone, or its inode made
 * nameless when it has links), its space freed third: a crash after the
 * first write leaves two records with that name and mount keeps the newer
 * one (catalog.c), so the rename is all or nothing.
 */
int vol_rename(struct vol *v, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags)
{
	struct cat_node *d, *nd, *src = NULL, *dst;
	int r;
	if (flags & ~(unsigned)(VOL_RENAME_NOREPLACE | VOL_RENAME_EXCHANGE) ||
	    (flags & VOL_RENAME_NOREPLACE && flags & VOL_RENAME_EXCHANGE))
		return -EINVAL;
	if ((r = vol_name_ok(name)) || (r = vol_name_ok(newname)))
		return r;
	if (is_control(parent, name) || is_control(newparent, newname))
		return -EPERM;
	vol_op_lock(v);
	if (!(d = get_dir(v, parent, &r)) || !(nd = get_dir(v, newparent, &r)))
		goto out;
	if (!(src = cat_lookup(v->c, parent, name, strlen(name)))) {
		r = -ENOENT;
		goto out;
	}
	dst = cat_lookup(v->c, newparent, newname, strlen(newname));
	if (flags & VOL_RENAME_EXCHANGE) {
		r = !dst ? -ENOENT : dst == src ? 0 : exchange(v, d, nd, src, dst);
		goto out;
	}
	/* two names of one inode: rename(2) does nothing */
	if (dst && cat_inode_of(dst) == cat_inode_of(src) && !(flags & VOL_RENAME_NOREPLACE))
		goto out;
	if (dst == src || (r = rename_checks(v, src, dst, newparent, flags)))
		goto out;
	int64_t now = vol_now_ns();
	struct cat_rec nr;
	cat_rec_get(src, &nr);
	set_name(&nr, newparent, newname, strlen(newname));
	nr.ctime = now;
	if ((r = store(v, src, &nr)))                 /* the rename point */
		goto out;
	bool gone;
	if (dst && (r = drop_name(v, dst, &gone)) && !gone)
		cat_forget(v->c, dst);   /* mount resolves the two records */
	if (!r && cat_attr_of(src)->kind == CAT_LINK) {
		cat_set_times(cat_inode_of(src), -1, now);
		r = mark_rec(v, cat_inode_of(src));
	}
	if (!r && !(r = touch_dir(v, d, now)))
		r = touch_dir(v, nd, now);
out:
	return vol_op_unlock(v, r, D_METADATA);
}

/* ---- extended attributes (core/xattr.h) ------------------------------------
 *
 * An inode's attributes are one blob in an allocation of its own (catalog.c).
 * A change reads the blob, edits it in memory, writes the new blob into a
 * new allocation — always in the journal, whose records are never torn
 * (XA_BLOB_MAX <= VOL_JOURNAL_DATA_MAX), or without a journal in place and
 * synced — then switches the record, then frees the old blob.
 */

/* Which names are kept: user., trusted. and security. as on ext4; system.
 * (POSIX ACLs) is not supported. */
static int xattr_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > XA_NAME_MAX)
		return -ERANGE;
	if (strncmp(name, "user.", 5) && strncmp(name, "trusted.", 8) &&
	    strncmp(name, "security.", 9))
		return -EOPNOTSUPP;
	return 0;
}

/* Read node n's blob (malloc'd; NULL, 0 when it has none); -EIO when the
 * bytes on the image fail the record's checksum. */
static int read_blob(struct vol *v, const struct cat_node *n, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	const struct cat_attr *x = cat_xattr_of(n);
	if (!x)
		return 0;
	size_t k = (size_t)x->size;
	uint8_t *b = malloc(k);
	if (!b)
		return -ENOMEM;
	int r = bstack_get(v->bs, x->alloc.off, b, k);
	if (!r && (crc32c(0, b, k) != x->rdev || xa_check(b, k)))
		r = -EIO;
	if (r) {
		free(b);
		return r;
	}
	*out = b;
	*len = k;
	return 0;
}

/* New bytes in a new allocation (a long symlink target, an attribute
 * blob): in the journal (its space is new in this transaction: the
 * ordering rule), or without a journal in place and synced before the
 * record that names it. */
static int put_new(struct vol *v, const void *buf, size_t len, struct bs_slice *out)
{
	struct bs_slice s;
	bool j = bstack_journaled(v->bs);
	int r = vol_alloc(v, len, &s);
	if (r)
		return r;
	r = put_data(v, NULL, s.off, buf, len, j ? BSTACK_DATA_JOURNAL : 0);
	if (!r && !j)
		r = bstack_sync(v->bs);
	if (r) {
		vol_give_back(v, s);
		return r;
	}
	*out = s;
	return 0;
}

static int xattr_change(struct vol *v, uint64_t ino, const char *name, const void *val,
			size_t size, int flags)
{
	uint8_t *old = NULL, *nb = NULL;
	size_t olen, nlen;
	struct bs_slice ns = { 0, 0 }, gone;
	int r = xattr_name_ok(name);
	if (r)
		return r;
	vol_op_lock(v);
	struct cat_node *n = vol_node_get(v, ino);   /* an orphan keeps its attributes */
	if (!n) {
		r = -ENOENT;
		goto out;
	}
	if ((r = read_blob(v, n, &old, &olen)) ||
	    (r = xa_edit(old, olen, name, val, size, flags, &nb, &nlen)))
		goto out;
	if (nlen && ((r = cat_upgrade(v->c)) || (r = put_new(v, nb, nlen, &ns))))
		goto out;
	r = cat_xattr_set(v->c, n, ns, nlen, nlen ? crc32c(0, nb, nlen) : 0, &gone);
	if (r) {
		vol_give_back(v, ns);
		goto out;
	}
	vol_give_back(v, gone);
	cat_set_times(n, -1, vol_now_ns());
	r = mark_rec(v, n);
out:
	free(old);
	free(nb);
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_setxattr(struct vol *v, uint64_t ino, const char *name, const void *val, size_t size,
		 int flags)
{
	if (!val && size)
		return -EINVAL;
	return xattr_change(v, ino, name, val ? val : "", size,
			    flags & (XATTR_CREATE | XATTR_REPLACE));
}

int vol_removexattr(struct vol *v, uint64_t ino, const char *name)
{
	return xattr_change(v, ino, name, NULL, 0, 0);
}

ssize_t vol_getxattr(struct vol *v, uint64_t ino, const char *name, void *buf, size_t size)
{
	uint8_t *b = NULL;
	size_t len;
	const uint8_t *val;
	size_t vlen;
	ssize_t r = xattr_name_ok(name);
	__atomic_fetch_add(&v->n_xattr_reads, 1, __ATOMIC_RELAXED);
	if (r)
		return r == -EOPNOTSUPP ? -ENODATA : r;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = vol_node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (!cat_xattr_of(n))
		r = -ENODATA;   /* the common case: no I/O */
	else if (!(r = read_blob(v, n, &b, &len)) && !(r = xa_get(b, len, name, &val, &vlen))) {
		if (size && vlen > size)
			r = -ERANGE;
		else {
			if (size)
				memcpy(buf, val, vlen);
			r = (ssize_t)vlen;
		}
	}
	pthread_rwlock_unlock(&v->lock);
	free(b);
	return r;
}

ssize_t vol_listxattr(struct vol *v, uint64_t ino, char *buf, size_t size)
{
	uint8_t *b = NULL;
	size_t len;
	ssize_t r = 0;
	__atomic_fetch_add(&v->n_xattr_reads, 1, __ATOMIC_RELAXED);
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = vol_node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (cat_xattr_of(n) && !(r = read_blob(v, n, &b, &len)))
		r = xa_list(b, len, buf, size);
	pthread_rwlock_unlock(&v->lock);
	free(b);
	return r;
}

/* ---- readdir ----------------------------------------------------------------- */

int vol_readdir(struct vol *v, uint64_t ino, uint64_t pos, vol_fill_fn fill, void *ctx)
{
	struct vol_attr a;
	int r;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *d = get_dir(v, ino, &r);
	if (d) {
		for (struct cat_node *n = cat_child_after(v->c, d, pos); n; n = cat_next_sibling(n)) {
			fill_attr(v, cat_inode_of(n), &a);
			if (fill(ctx, cat_name_of(n), &a, cat_cookie(n)))
				break;
		}
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* ---- file data -------------------------------------------------------------- */

static struct cat_node *get_file(struct vol *v, uint64_t ino, int *r)
{
	struct cat_node *n = vol_node_get(v, ino);
	*r = !n ? -ENOENT : cat_attr_of(n)->kind != CAT_FILE ? -EISDIR : 0;
	return *r ? NULL : n;
}

ssize_t vol_read(struct vol *v, uint64_t ino, void *buf, size_t n, uint64_t off)
{
	int r;
	ssize_t got = 0;
	__atomic_fetch_add(&v->n_reads, 1, __ATOMIC_RELAXED);
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && off < cat_attr_of(f)->size) {
		uint64_t k = cat_attr_of(f)->size - off;
		if (k > n)
			k = n;
		if (k > SSIZE_MAX)
			k = SSIZE_MAX;
		r = bstack_get(v->bs, cat_attr_of(f)->alloc.off + off, buf, k);
		got = (ssize_t)k;
	}
	pthread_rwlock_unlock(&v->lock);
	return r ? r : got;
}

/* File data for node f: in place or in the journal (bstack_write_data);
 * f's data is dirty (durable at the next sync) when any went in place. */
static int put_data(struct vol *v, struct cat_node *f, uint64_t off, const void *buf,
		    uint64_t n, unsigned flags)
{
	uint64_t inplace = 0;
	int r = bstack_write_data(v->bs, off, buf, n, flags, &inplace);
	if (inplace && f) {
		int e = mark_data(v, f);
		if (!r)
			r = e;
	}
	return r;
}

static int zero_range(struct vol *v, struct cat_node *f, uint64_t off, uint64_t n,
		      unsigned flags)
{
	static const uint8_t zeros[65536];
	while (n) {
		uint64_t k = n < sizeof zeros ? n : sizeof zeros;
		int r = put_data(v, f, off, zeros, k, flags);
		if (r)
			return r;
		off += k;
		n -= k;
	}
	return 0;
}

static int copy_range(struct vol *v, struct cat_node *f, uint64_t from, uint64_t to,
		      uint64_t n, unsigned flags)
{
	uint64_t cap = n < VOL_COPY_CHUNK ? n : VOL_COPY_CHUNK;
	uint8_t *buf = malloc(cap ? cap : 1);
	int r = 0;
	if (!buf)
		return -ENOMEM;
	while (n && !r) {
		uint64_t k = n < cap ? n : cap;
		r = bstack_get(v->bs, from, buf, k);
		if (!r)
			r = put_data(v, f, to, buf, k, flags);
		from += k;
		to += k;
		n -= k;
	}
	free(buf);
	return r;
}

/*
 * Give file n a capacity of at least new_cap without the allocator ever
 * moving it.  *stale_end gets the end of the range past the size that may
 * hold old bytes (the caller zeroes what it exposes).
 */
static int grow(struct vol *v, struct cat_node *n, uint64_t new_cap, uint64_t inplace_cap,
		uint64_t need, uint64_t *stale_end)
{
	struct bs_slice old = cat_attr_of(n)->alloc, ns;
	bool done = false;
	int r;
	*stale_end = old.len;
	if (inplace_cap < new_cap)
		inplace_cap = new_cap;
	if (old.len) {
		/* A full disk can refuse the in-place growth of the tail
		 * allocation while free space elsewhere still fits the new
		 * capacity: fall through to copy-on-write (the allocator
		 * changed nothing, tested in test_alloc_harness nospc_*).
		 * In place it may take more than a move would (inplace_cap:
		 * a large file growing at the tail, vol_write). */
		r = bs_grow_in_place(v->a, old, inplace_cap, &ns, &done);
		if (!done && inplace_cap > new_cap && (!r || r == -ENOSPC))
			r = bs_grow_in_place(v->a, old, new_cap, &ns, &done);
		/* Growth that does not scatter: when the amortised capacity
		 * does not fit in place but what the write needs does (the
		 * free space right behind the file: GhostTree's and
		 * FirstFit's free neighbour), grow in place by half the step,
		 * a quarter, ... down to just what the write needs, rather
		 * than move and leave the old place as a hole.  Measured on
		 * the memory device, 3 files of 20 MiB rewritten 30 times in
		 * 64 KiB writes (GhostTree; FirstFit alike): straight to
		 * `need`, 4673 reallocs and 17654 syncs; halving, 1019 and
		 * 3038; steps capped at 1 MiB instead of 64, 2247 and 6702;
		 * 1.5x or 1.25x growth instead of doubling, more of both.
		 * None copies a byte; the image is 62.9 MB for 62.9 MB live
		 * in every variant. */
		for (uint64_t want = new_cap; (!r || r == -ENOSPC) && !done && want > need;) {
			want = old.len + (want - old.len) / 2;
			if (want < need)
				want = need;
			int r2 = bs_grow_in_place(v->a, old, want, &ns, &done);
			r = r2 == -ENOSPC ? r : r2;
		}
		if (r && r != -ENOSPC)
			return r;
		if (!r && done) {
			/* Not recorded yet (an orphan: never): until the record says so, a crash
			 * leaves the extra space unreferenced (reclaimed). */
			v->ctr.reallocs++;
			v->ctr.reallocs_in_place++;
			return set_alloc(v, n, ns);
		}
	}
	/* copy-on-write: 1. alloc new (crash: it leaks, reclaimed) */
	if ((r = vol_alloc(v, new_cap, &ns)))
		return r;
	if (old.len == 0) {
		/* From the zero-length allocation nothing needs copying and
		 * nothing is freed: the record may name the new space at the
		 * next durability point (until then a crash leaks it, and mount
		 * reclaims it). */
		v->ctr.reallocs++;
		*stale_end = 0;
		return set_alloc(v, n, ns);
	}
	/* 2. copy and sync: the copy is durable before anything names it (an
	 *    orphan has no record to name it: no sync).  With a journal a small
	 *    copy travels in it; a large one goes in place once a barrier has
	 *    made the new space durably allocated (the ordering rule). */
	unsigned flags = 0;
	if (bstack_journaled(v->bs)) {
		if (cat_attr_of(n)->size <= VOL_JOURNAL_DATA_MAX)
			flags = BSTACK_DATA_JOURNAL;
		else if ((r = bstack_barrier(v->bs))) {
			bs_dealloc(v->a, ns);
			return r;
		}
	}
	r = copy_range(v, n, old.off, ns.off, cat_attr_of(n)->size, flags);
	if (!r && !cat_detached(n))
		r = bstack_sync(v->bs);
	if (r) {
		bs_dealloc(v->a, ns);
		return r;
	}
	struct vnode *vn = vt_get(&v->vt, cat_attr_of(n)->ino);
	if (vn && !cat_detached(n))
		vn->data_dirty = false;
	/* 3. durably repoint the record (crash before: old state, new leaks;
	 *    after: new state, old leaks until step 4); an orphan's in-memory
	 *    allocation is the only reference, repointed in place (store) */
	struct cat_rec nr;
	cat_rec_get(n, &nr);
	nr.alloc = ns;
	if ((r = store(v, n, &nr))) {
		bs_dealloc(v->a, ns);
		return r;
	}
	r = mark_alloc(v, n);
	/* 4. free the old place */
	bs_dealloc(v->a, old);
	v->ctr.reallocs++;
	v->ctr.bytes_copied += cat_attr_of(n)->size;
	*stale_end = cat_attr_of(n)->size;
	return r;
}

/* The capacity a write that needs `need` bytes grows a file of capacity
 * cap to.  The first allocation is exactly what the first write needs: a
 * file written in one request (cp of a small file) then has nothing to
 * trim at close.  Trimming a file that is not the last allocation leaves
 * a hole just smaller than the next such file's amortised capacity: with
 * four processes creating one-line files side by side, the GhostTree
 * image filled with holes of 4 KiB less a line, none reusable, and every
 * allocation searched a tree of them (120 reads of the image per file
 * instead of 25).  From the second growth on the steps are geometric. */
static uint64_t amortised_cap(uint64_t cap, uint64_t need)
{
	if (cap == 0)
		return need;
	uint64_t step = cap < VOL_GROW_MIN ? VOL_GROW_MIN : cap;
	uint64_t want;
	if (step > VOL_GROW_STEP_MAX)
		step = VOL_GROW_STEP_MAX;
	if (!add_ok(cap, step, &want) || want < need)
		want = need;
	return want;
}

/*
 * Writes of different files in parallel (docs/design.md §6): a write
 * into a file that is open, inside its capacity, starting at or below
 * its size, whose allocation is durable, copies its bytes under the
 * shared volume lock.  The copy is the long part of a write, and it
 * changes nothing the volume keeps: no allocator step, no record, only
 * bytes of the file's own allocation that may go in place (the ordering
 * rule: bstack_write_data, BSTACK_DATA_INPLACE_ONLY).  Then the size and
 * times are set under the exclusive lock for a moment — if nothing else
 * changed the file in between (its vnode's gen: a truncate, a move, a
 * write on the exclusive path).  Otherwise, or when some page may not go
 * in place, the write is done again, whole, on the exclusive path: the
 * same bytes at the same place, as if this write came after the other.
 * Returns the bytes written (0: take the exclusive path) or an error.
 */
static ssize_t write_shared(struct vol *v, uint64_t ino, const void *buf, size_t n,
			    uint64_t off, uint64_t end)
{
	uint64_t done = 0, gen = 0;
	struct bs_slice a = { 0, 0 };
	int r = 0;
	if (v->opts.sync_writes || n == 0)
		return 0;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && off <= cat_attr_of(f)->size && end <= cat_attr_of(f)->alloc.len &&
	    vt_open_in_place(&v->vt, ino, bstack_durable_seq(v->bs), &gen)) {
		a = cat_attr_of(f)->alloc;
		r = bstack_write_data(v->bs, a.off + off, buf, n, BSTACK_DATA_INPLACE_ONLY, &done);
	}
	pthread_rwlock_unlock(&v->lock);
	if (r || done < n)
		return 0;   /* the exclusive path says why, or does the rest */
	if (v->write_gap)
		v->write_gap(v->write_gap_arg);
	pthread_rwlock_wrlock(&v->lock);
	f = get_file(v, ino, &r);
	struct vnode *vn = f ? vt_get(&v->vt, ino) : NULL;
	bool same = vn && vn->gen == gen && cat_attr_of(f)->alloc.off == a.off &&
		    cat_attr_of(f)->alloc.len == a.len;
	if (same) {
		if (end > cat_attr_of(f)->size) {
			live_change(v, f, cat_attr_of(f)->size, end);
			cat_set_size(f, end);
		}
		int64_t now = vol_now_ns();
		cat_set_times(f, now, now);
		vn->rec_dirty = true;
		vn->data_dirty = true;
		__atomic_fetch_add(&v->n_shared_writes, 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&v->lock);
	return same ? (ssize_t)n : 0;
}

void vol_test_write_gap(struct vol *v, void (*fn)(void *), void *arg)
{
	pthread_rwlock_wrlock(&v->lock);
	v->write_gap = fn;
	v->write_gap_arg = arg;
	pthread_rwlock_unlock(&v->lock);
}

ssize_t vol_write(struct vol *v, uint64_t ino, const void *buf, size_t n, uint64_t off)
{
	uint64_t end, stale_end;
	int r;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (!add_ok(off, n, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	ssize_t w = write_shared(v, ino, buf, n, off, end);
	if (w)
		return w;
	vol_op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	unsigned flags = 0;
	if (!f || n == 0)
		goto out;
	struct vnode *wvn = vt_get(&v->vt, ino);
	if (wvn)
		wvn->gen++;   /* a write_shared under way writes again after this */
	stale_end = cat_attr_of(f)->alloc.len;
	if (end > cat_attr_of(f)->alloc.len) {
		uint64_t cap = amortised_cap(cat_attr_of(f)->alloc.len, end), big = cap;
		/* A file past VOL_GROW_BIG_FROM grows in place (at the tail,
		 * where nothing has to move) by a whole VOL_GROW_STEP_MAX at
		 * once: each growth of a large file needs a barrier before its
		 * data may go in place (the ordering rule), so doubling from 1
		 * MiB would cost a sync per doubling; this way a sequential
		 * write costs one per 64 MiB (issue: syncs that do not grow
		 * with the size).  The spare capacity is trimmed at the last
		 * close, as any amortised headroom. */
		if (cat_attr_of(f)->alloc.len >= VOL_GROW_BIG_FROM && bstack_journaled(v->bs) &&
		    !add_ok(cat_attr_of(f)->alloc.len, VOL_GROW_STEP_MAX, &big))
			big = cap;
		r = grow(v, f, cap, big, end, &stale_end);
		/* on a nearly full disk the amortised headroom may not fit
		 * where the write itself does: ask for exactly what it needs */
		if (r == -ENOSPC && cap > end)
			r = grow(v, f, end, end, end, &stale_end);
		if (r)
			goto out;
	}
	if ((r = data_flags(v, f, end, &flags)))
		goto out;
	/* a hole past the old size reads as zeros */
	if (off > cat_attr_of(f)->size && stale_end > cat_attr_of(f)->size) {
		uint64_t ze = off < stale_end ? off : stale_end;
		const struct cat_attr *fr = cat_attr_of(f);
		if ((r = zero_range(v, f, fr->alloc.off + fr->size, ze - fr->size, flags)))
			goto out;
	}
	if ((r = put_data(v, f, cat_attr_of(f)->alloc.off + off, buf, n, flags)))
		goto out;
	if (end > cat_attr_of(f)->size) {
		live_change(v, f, cat_attr_of(f)->size, end);
		cat_set_size(f, end);
	}
	int64_t now = vol_now_ns();
	cat_set_times(f, now, now);
	if ((r = mark_rec(v, f)))
		goto out;
	if (v->opts.sync_writes) {
		/* -o sync: data, then the record that covers it */
		struct cat_rec nr;
	cat_rec_get(f, &nr);
		r = store(v, f, &nr);
	}
out:
	r = vol_op_unlock(v, r, v->opts.sync_writes ? D_ALWAYS : D_NONE);
	return r ? r : (ssize_t)n;
}

/* Can the allocation s shrink in place?  Every allocator that reuses
 * holes can; Linear only at its tail. */
static bool can_shrink(struct vol *v, struct bs_slice s)
{
	return bs_alloc_can(v->a, BS_CAP_REUSES_HOLES) || s.off + s.len == bstack_len(v->bs);
}

/*
 * Set the size to `size` with capacity == size (truncate, fallocate, trim):
 *   growing: grow (CoW rule), zero what the new size exposes, sync, then
 *            the durable record;
 *   shrinking: the durable record with the smaller allocation first, then
 *            the allocator shrinks the old slice (repoint first, free second).
 */
static int resize(struct vol *v, struct cat_node *f, uint64_t size, bool touch)
{
	struct bs_slice old = cat_attr_of(f)->alloc;
	uint64_t stale_end = old.len;
	int r;
	if (size > old.len) {
		if ((r = grow(v, f, size, size, size, &stale_end)))
			return r;
		old = cat_attr_of(f)->alloc;
	}
	if (size > cat_attr_of(f)->size && stale_end > cat_attr_of(f)->size) {
		uint64_t ze = size < stale_end ? size : stale_end;
		const struct cat_attr *fr = cat_attr_of(f);
		unsigned flags;
		if ((r = data_flags(v, f, size, &flags)) ||
		    (r = zero_range(v, f, fr->alloc.off + fr->size, ze - fr->size, flags)))
			return r;
	}
	struct cat_rec nr;
	cat_rec_get(f, &nr);
	nr.size = size;
	if (size == 0)
		nr.alloc = (struct bs_slice){ 0, 0 };
	else if (old.len > size && can_shrink(v, old))
		nr.alloc = (struct bs_slice){ old.off, size };
	if (touch)
		nr.mtime = nr.ctime = vol_now_ns();
	uint64_t old_size = cat_attr_of(f)->size;
	if ((r = store(v, f, &nr)))     /* durable: the new size and allocation */
		return r;
	live_change(v, f, old_size, size);
	/* (a failed mark leaves the old slice unshrunk: a leak until mount) */
	if (nr.alloc.len != old.len && (r = mark_alloc(v, f)))
		return r;
	if (nr.alloc.len == old.len)
		return 0;
	/* then the allocator gives the rest back; failing here only leaks
	 * until mount (the record already names the smaller slice) */
	struct bs_slice out;
	if (nr.alloc.len == 0) {
		vol_give_back(v, old);
	} else {
		bs_realloc(v->a, old, nr.alloc.len, &out);
	}
	v->ctr.reallocs++;
	v->ctr.reallocs_in_place++;
	return 0;
}

int vol_truncate(struct vol *v, uint64_t ino, uint64_t size)
{
	int r;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	vol_op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	if (f)
		r = resize(v, f, size, true);
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_fallocate(struct vol *v, uint64_t ino, uint64_t off, uint64_t len)
{
	uint64_t end;
	int r;
	if (!add_ok(off, len, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	vol_op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && end > cat_attr_of(f)->size)
		r = resize(v, f, end, true);
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_setattr(struct vol *v, uint64_t ino, unsigned mask, const struct vol_attr *in,
		struct vol_attr *out)
{
	int r = 0;
	vol_op_lock(v);
	struct cat_node *n = vol_node_get(v, ino);
	if (!n) {
		r = -ENOENT;
		goto out;
	}
	struct cat_rec nr;
	cat_rec_get(n, &nr);
	if (mask & VOL_SET_MODE)
		nr.mode = (nr.mode & S_IFMT) | (in->mode & 07777);
	if (mask & VOL_SET_UID)
		nr.uid = in->uid;
	if (mask & VOL_SET_GID)
		nr.gid = in->gid;
	if (mask & VOL_SET_ATIME)
		nr.atime = in->atime_ns;
	if (mask & VOL_SET_MTIME)
		nr.mtime = in->mtime_ns;
	nr.ctime = mask & VOL_SET_CTIME ? in->ctime_ns : vol_now_ns();
	r = store(v, n, &nr);
	if (!r && out)
		fill_attr(v, n, out);
out:
	return vol_op_unlock(v, r, D_METADATA);
}

/* ---- durability points --------------------------------------------------- */

/* Data first (sync), then (trim) the capacity cut back to the size, and the
 * record if it changed. */
int vol_commit(struct vol *v, struct cat_node *n, bool trim)
{
	const struct cat_attr *cur = cat_attr_of(n);
	int r;
	if (trim && cur->kind == CAT_FILE &&
	    (cur->alloc.len > cur->size && (cur->size == 0 || can_shrink(v, cur->alloc))))
		return resize(v, n, cur->size, false);
	struct vnode *vn = vt_get(&v->vt, cur->ino);
	if (vn_rec_dirty(vn)) {
		struct cat_rec nr;
		cat_rec_get(n, &nr);
		return store(v, n, &nr);
	}
	if (vn_data_dirty(vn)) {
		if ((r = bstack_sync(v->bs)))
			return r;
		vn->data_dirty = false;
		vn_put(v, vn);
	}
	return 0;
}

int vol_held(struct vol *v, struct cat_held **out, size_t *n)
{
	*n = 0;
	if (!(*out = malloc((2 * v->vt.n_orphans + 1) * sizeof **out)))
		return -ENOMEM;
	for (struct vnode *vn = v->vt.orphans; vn; vn = vn->onext) {
		(*out)[(*n)++] = (struct cat_held){ vn->ino, cat_attr_of(vn->orphan)->alloc };
		(*out)[(*n)++] = (struct cat_held){ vn->ino, cat_xattr_blob(vn->orphan) };
	}
	return 0;
}

/* The last close of an orphan: nothing names its space any more.  Its
 * vnode lives on while the kernel still holds the inode number. */
static void free_orphan(struct vol *v, struct vnode *vn)
{
	vol_give_back(v, cat_attr_of(vn->orphan)->alloc);
	vol_give_back(v, cat_xattr_blob(vn->orphan));
	v->ctr.deallocs++;
	vt_orphan_done(&v->vt, vn);
	vn_put(v, vn);
}

/* fsync keeps the spare capacity (the record states it): a file written
 * and fsynced in turns would otherwise shrink and regrow, copying itself
 * each time it cannot grow in place.  The trim comes at release/close
 * (docs/design.md §4: "at close the allocation is trimmed back"). */
int vol_fsync(struct vol *v, uint64_t ino)
{
	int r;
	vol_op_lock(v);
	struct cat_node *n = vol_node_get(v, ino);
	r = n ? vol_commit(v, n, false) : -ENOENT;
	vol_drain(v);   /* an owner point (issue 10) */
	return vol_op_unlock(v, r, D_ALWAYS);
}

/* A close (FUSE flush) of a descriptor open for writing: like fsync with
 * commit=0; with commit=N the data joins the next group commit. */
int vol_flush(struct vol *v, uint64_t ino)
{
	int r;
	vol_op_lock(v);
	struct cat_node *n = vol_node_get(v, ino);
	r = n ? vol_commit(v, n, false) : -ENOENT;
	return vol_op_unlock(v, r, D_CLOSE);
}

int vol_open_file(struct vol *v, uint64_t ino)
{
	int r;
	/* the shared lock: an open changes nothing but its vnode's count */
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = get_file(v, ino, &r);
	if (n && !vt_open(&v->vt, ino))
		r = -ENOMEM;
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* Every close syncs; the last one also trims the capacity to the size (an
 * earlier one would make the writers still open shrink and regrow).  A
 * release without a counted open (callers that never open) counts as the
 * last. */
int vol_release(struct vol *v, uint64_t ino)
{
	int r = 0;
	bool dirty = false;
	vol_op_lock(v);
	struct cat_node *n = vol_node_get(v, ino);
	struct vnode *vn = n ? vt_get(&v->vt, ino) : NULL;
	if (!n) {
		r = -ENOENT;
	} else {
		bool last = vt_close(vn);
		/* data or a record of the file not yet durable: every write
		 * leaves the record dirty until a commit stores it */
		dirty = !cat_detached(n) && (vn_rec_dirty(vn) || vn_data_dirty(vn));
		if (cat_detached(n) && last) {
			free_orphan(v, vn);
		} else {
			r = vol_commit(v, n, last);
			/* closed and clean: nothing holds the vnode but the kernel */
			if ((vn = vt_get(&v->vt, ino)))
				vn_put(v, vn);
		}
	}
	/* With the journal the release's own change (the trim, an orphan's
	 * free) need not be durable at once: losing the trim in a crash leaves
	 * the file with spare capacity, an orphan's space for reclaim.  But a
	 * release that finds the file's data or record not durable yet (no
	 * FUSE flush, no fsync since its last write) is the durability point
	 * volume.h promises: as a close (D_CLOSE), durable on return with
	 * commit=0, at the next group commit otherwise.  After a FUSE flush
	 * (vol_flush) the file is clean and the release costs no sync. */
	enum durability d = !bstack_journaled(v->bs) ? D_METADATA : dirty ? D_CLOSE : D_NONE;
	return vol_op_unlock(v, r, d);
}

int vol_remember(struct vol *v, uint64_t ino)
{
	pthread_rwlock_rdlock(&v->lock);
	int r = vt_remember(&v->vt, ino);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* Under the shared lock: a vnode is only dropped when its other fields
 * (changed under the exclusive lock) say nothing holds it. */
void vol_forget(struct vol *v, const struct vol_forget *f, size_t n)
{
	pthread_rwlock_rdlock(&v->lock);
	uint64_t durable = bstack_durable_seq(v->bs);
	for (size_t i = 0; i < n; i++)
		vt_forget(&v->vt, f[i].ino, f[i].nlookup, durable);
	pthread_rwlock_unlock(&v->lock);
}

struct sync_ctx {
	struct vol *v;
	int r;
};

static int sync_one(void *ctx, struct cat_node *n)
{
	struct sync_ctx *s = ctx;
	int r = vol_commit(s->v, n, true);
	if (r && !s->r)
		s->r = r;
	return 0;
}

static int sync_all_locked(struct vol *v)
{
	struct sync_ctx s = { v, 0 };
	/* one sync for every file's data, then each changed record */
	int r = bstack_sync(v->bs);
	if (r)
		return r;
	cat_foreach(v->c, sync_one, &s);
	return s.r;
}

/* An explicit sync: everything durable, and the journal checkpointed. */
int vol_sync_all(struct vol *v)
{
	vol_op_lock(v);
	int r = sync_all_locked(v);
	vol_drain(v);   /* what is queued is freed, then the free tail goes back */
	if (!r)
		r = give_back_tail(v, NULL);
	r = vol_op_unlock(v, r, D_ALWAYS);
	if (!r)
		r = bstack_checkpoint(v->bs);
	return r;
}

/* Linear cannot reuse a hole, but once everything above one is gone the
 * hole is unreferenced tail space: give it back at unmount, so a clean
 * unmount leaves nothing for the next mount to reclaim. */
static int linear_tidy(struct vol *v)
{
	struct bs_slice *live;
	struct cat_held *held;
	size_t n, n_held;
	uint64_t got;
	if (bs_alloc_can(v->a, BS_CAP_REUSES_HOLES))
		return 0;
	int r = vol_held(v, &held, &n_held);
	if (!r)
		r = cat_live_slices(v->c, held, n_held, &live, &n);
	free(held);
	if (r)
		return r;
	r = bs_alloc_reclaim(v->a, live, n, &got);
	free(live);
	return r;
}

/*
 * Give free space at the end of the payload back (the image shrinks):
 * every allocator's free tail blocks (bs_alloc_trim_tail), and Linear's
 * unreferenced tail holes.  Runs at unmount (vol_close); a checkpoint
 * calls it with the volume lock held.  Only ever discards space no file
 * or catalog record references: a crash inside it leaks at most what it
 * was giving back, which mount reclaims.  *freed (may be NULL) gets the
 * bytes the payload shrank by.
 */
static int give_back_tail(struct vol *v, uint64_t *freed)
{
	uint64_t before = bstack_len(v->bs), got = 0;
	int r = bs_alloc_can(v->a, BS_CAP_REUSES_HOLES) ? bs_alloc_trim_tail(v->a, &got)
							 : linear_tidy(v);
	if (freed)
		*freed = before - bstack_len(v->bs);
	return r;
}

int vol_give_back_tail(struct vol *v, uint64_t *freed)
{
	vol_op_lock(v);
	int r = give_back_tail(v, freed);
	return vol_op_unlock(v, r, D_METADATA);
}

int vol_close(struct vol *v)
{
	if (!v)
		return 0;
	vol_committer_stop(v);
	if (v->damaged || v->opts.no_write) {
		/* nothing of it may reach the image: the stage is dropped */
		vol_free(v);
		return 0;
	}
	vol_op_lock(v);
	int r = sync_all_locked(v);
	/* orphans still open at unmount: their last close is now */
	while (v->vt.orphans)
		free_orphan(v, v->vt.orphans);
	/* the seed's drop: close the queue and drain what is pending */
	bs_freeq_close(v->fq, NULL);
	if (!r)
		r = give_back_tail(v, NULL);
	r = vol_op_unlock(v, r, D_ALWAYS);
	/* the image at rest is a plain bstack image: no journal beside it */
	int c = bstack_checkpoint(v->bs);
	if (!r)
		r = c;
	/* Only our own journal: an image removed and made again under the
	 * same name while this daemon was closing has a journal of its own
	 * at the same path. */
	struct stat jst;
	bool jgone = !bstack_journaled(v->bs);
	if (!r && v->jpath && stat(v->jpath, &jst) == 0 && jst.st_dev == v->jdev &&
	    jst.st_ino == v->jino)
		jgone = unlink(v->jpath) == 0;
	/* The image is final: let go of it (and of its lock) before freeing
	 * the memory, so that whoever waits for the lock (fsck right after an
	 * umount, fs/main.c) is not kept waiting for the catalog's nodes, the
	 * journal's overlay and the close of the removed journal, which frees
	 * its blocks.  (The memory is still freed: the library's users and
	 * the sanitizers' leak check want that, and it no longer costs the
	 * waiter anything.) */
	if (!r && jgone)
		r = bstack_release_image(v->bs);
	vol_free(v);
	return r;
}
