/*
 * volume.c — named files and directories over any allocator (DESIGN.md
 * §1, §3-§6).  The catalog (catalog.c) holds the names and attributes; each
 * regular file is one allocation whose bytes are the file's bytes.
 *
 * On-disk layout: the allocator's (alloc_*.c) with the catalog's root
 * reference in its caller-reserved bytes (catalog.c).  A file's record
 * holds its allocation (offset, capacity) and its size; capacity >= size.
 * Bytes of the allocation past the size may hold stale data: every size
 * increase zeroes the part of that range it exposes, so holes and
 * truncate-up read as zeros.
 *
 * Crash invariant (DESIGN §4, guarantee 2): no durable record ever names
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
 * Open files (POSIX unlink semantics): vol_open_file counts one open,
 * vol_release one close.  Unlinking (or renaming over) a file that is
 * still open tombstones its record durably exactly as above, but the
 * dealloc waits for the last close: the node lives on in memory as an
 * orphan (cat_orphan) — in no name index, not in readdir or the file
 * count, found only by inode, nlink 0.  Its pair may go to a new inode at
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
 * O(log n) reallocs; the last release and close trim capacity back to the size
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
 * everything that changes the volume holds it exclusively.
 */
#include "volume.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "util.h"

#define VOL_GROW_MIN 4096ULL
#define VOL_GROW_STEP_MAX (64ULL << 20)
#define VOL_COPY_CHUNK (1ULL << 20)

struct vol {
	pthread_rwlock_t lock;
	struct bstack *bs;
	struct bs_alloc *a;
	struct catalog *c;
	struct vol_opts opts;
	char *path;                 /* for the host figures of statfs */
	struct vol_counters ctr;    /* syncs are read from the bstack */
	struct bs_freeq *fq;        /* remote frees; drained under the write lock */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void seterr(struct vol_error *err, const char *fmt, ...)
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
	return parent == VOL_ROOT_INO && strcmp(name, VOL_CONTROL_NAME) == 0;
}

/* ---- open / format / mount ------------------------------------------------ */

static void vol_free(struct vol *v)
{
	bs_freeq_free(v->fq);   /* before the allocator it drains into */
	cat_free(v->c);
	bs_alloc_close(v->a);
	bstack_close(v->bs);
	free(v->path);
	pthread_rwlock_destroy(&v->lock);
	free(v);
}

/* The options for a new image, checked before anything is written. */
static int new_image_opts_ok(const struct vol_opts *o, struct vol_error *err)
{
	enum bs_alloc_kind kind = o->allocator ? o->allocator : BS_ALLOC_GHOST;
	if (o->block_size && kind != BS_ALLOC_SLAB) {
		seterr(err, "block_size is for the slab allocator, not %s", bs_alloc_kind_name(kind));
		return -EINVAL;
	}
	if (o->block_size && o->block_size < 8) {
		seterr(err, "block_size must be at least 8 bytes");
		return -EINVAL;
	}
	return 0;
}

static int format(struct vol *v, struct vol_error *err)
{
	enum bs_alloc_kind kind = v->opts.allocator ? v->opts.allocator : BS_ALLOC_GHOST;
	struct bs_alloc_opts ao = { .block_size = v->opts.block_size };
	int r = bs_alloc_create(v->bs, kind, &ao, &v->a);
	if (r) {
		seterr(err, r == -ENOTSUP ? "allocator %s is not built in" :
		       "cannot create the %s allocator: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	r = cat_format(v->a, v->opts.uid, v->opts.gid, now_ns(), &v->c);
	if (r)
		seterr(err, "cannot write the catalog: %s", strerror(-r));
	return r;
}

static bool ref_is_zero(const uint8_t *ref)
{
	for (int i = 0; i < CAT_ROOT_REF_SIZE; i++)
		if (ref[i])
			return false;
	return true;
}

/* Slab's block size when the image is Slab, else 0. */
static uint64_t slab_block(struct bs_alloc *a)
{
	struct bs_alloc_stats st;
	bs_alloc_stats(a, &st);
	for (int i = 0; i < st.n_extra; i++)
		if (strcmp(st.extra[i].key, "block_size") == 0)
			return st.extra[i].value;
	return 0;
}

static int commit(struct vol *v, struct cat_node *n, bool trim);

static int trim_one(void *ctx, struct cat_node *n)
{
	struct vol *v = ctx;
	if (n->r.kind == CAT_FILE && n->r.alloc.len > n->r.size)
		return commit(v, n, true);
	return 0;
}

/* A crash can leave files with spare capacity (written, fsynced, never
 * closed): trim them, so that at rest allocation length == file size. */
static int trim_all(struct vol *v)
{
	return cat_foreach(v->c, trim_one, v);
}

/* A format was interrupted after the "formatting" mark (catalog.c): the
 * arena can only hold the unfinished catalog, so every byte of it goes
 * back to the allocator and the catalog is written again. */
/* Do the mount options fit an existing image holding `kind`?  Checked
 * before anything is written. */
static int opts_match(struct vol *v, enum bs_alloc_kind kind, struct vol_error *err)
{
	if (v->opts.allocator != BS_ALLOC_NONE && v->opts.allocator != kind) {
		seterr(err, "allocator mismatch: the image holds %s, not %s",
		       bs_alloc_kind_name(kind), bs_alloc_kind_name(v->opts.allocator));
		return -EINVAL;
	}
	if (v->opts.block_size && kind != BS_ALLOC_SLAB) {
		seterr(err, "block_size is for slab images, and this image holds %s",
		       bs_alloc_kind_name(kind));
		return -EINVAL;
	}
	return 0;
}

static int finish_format(struct vol *v, enum bs_alloc_kind kind, struct vol_error *err)
{
	uint64_t got = 0;
	struct bs_slice none = { 0, 0 };
	if (kind == BS_ALLOC_NONE)
		kind = BS_ALLOC_LINEAR;
	int r = opts_match(v, kind, err);
	if (r)
		return r;
	r = bs_alloc_open(v->bs, kind, &v->a);
	if (!r)
		r = bs_alloc_reclaim(v->a, &none, 0, &got);
	if (!r)
		r = cat_format(v->a, v->opts.uid, v->opts.gid, now_ns(), &v->c);
	if (r)
		seterr(err, "cannot finish an interrupted format: %s", strerror(-r));
	v->ctr.leaked_bytes_reclaimed = got;
	return r;
}

static int mount_existing(struct vol *v, struct vol_error *err)
{
	enum bs_alloc_kind kind;
	uint8_t ref[CAT_ROOT_REF_SIZE] = { 0 };
	char msg[200] = "";
	bool have_ref;
	int r = bs_alloc_detect(v->bs, &kind);
	if (r == -EUCLEAN) {
		seterr(err, "unsupported allocator version");
		return r;
	}
	if (r)
		return r;
	/* The root reference sits at payload 0 for every allocator: read it
	 * before the allocator opens (which may write its own recovery). */
	if (bstack_len(v->bs) >= CAT_ROOT_REF_SIZE &&
	    (r = bstack_get(v->bs, 0, ref, sizeof ref)))
		return r;
	have_ref = !ref_is_zero(ref);
	if (cat_root_formatting(cat_root_decode(ref)))
		return finish_format(v, kind, err);
	if (kind == BS_ALLOC_NONE && !have_ref && bstack_len(v->bs) == CAT_ROOT_REF_SIZE) {
		/* an empty Linear image (its 16 reserved zero bytes only): a
		 * format cut short, adopted like any empty arena */
		kind = BS_ALLOC_LINEAR;
	} else if (kind == BS_ALLOC_NONE) {
		/* Linear has no magic: it is recognised by its catalog's. */
		struct bs_slice root = cat_root_decode(ref);
		uint8_t magic[8];
		if (!have_ref || root.off < CAT_ROOT_REF_SIZE ||
		    !range_ok(root.off, sizeof magic, bstack_len(v->bs)) ||
		    bstack_get(v->bs, root.off, magic, sizeof magic) ||
		    memcmp(magic, CAT_MAGIC, sizeof magic) != 0) {
			seterr(err, "not a bstackfs image (no allocator magic and no catalog)");
			return -EUCLEAN;
		}
		if ((r = cat_load(v->bs, root, &v->c, msg, sizeof msg))) {
			seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
			return r;
		}
		kind = BS_ALLOC_LINEAR;
	}
	if ((r = opts_match(v, kind, err)))
		return r;
	if (have_ref && !v->c &&
	    (r = cat_load(v->bs, cat_root_decode(ref), &v->c, msg, sizeof msg))) {
		seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
		return r;
	}
	if ((r = bs_alloc_open(v->bs, kind, &v->a))) {
		seterr(err, r == -ENOTSUP ? "allocator %s is not built in" :
		       "the %s allocator refuses the image: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	if (kind == BS_ALLOC_SLAB && v->opts.block_size &&
	    slab_block(v->a) != v->opts.block_size) {
		seterr(err, "block size mismatch: the image's slab blocks are %llu bytes",
		       (unsigned long long)slab_block(v->a));
		return -EINVAL;
	}
	if (!have_ref) {
		struct bs_alloc_stats st;
		bs_alloc_stats(v->a, &st);
		if (st.arena_bytes != 0 && st.free_bytes < st.arena_bytes) {
			seterr(err, "the %s allocator holds allocations but no bstackfs catalog: "
			       "the image belongs to another program", bs_alloc_kind_name(kind));
			return -EUCLEAN;
		}
		/* an empty arena is adopted */
		if ((r = cat_format(v->a, v->opts.uid, v->opts.gid, now_ns(), &v->c)))
			seterr(err, "cannot write the catalog: %s", strerror(-r));
		return r;
	}
	if ((r = cat_attach(v->c, v->a, msg, sizeof msg))) {
		seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
		return r;
	}
	/* Guarantee 4: space no record references goes back to the allocator.
	 * Rename-over leftovers are still live here; cat_repair frees them
	 * after tombstoning their records. */
	struct bs_slice *live;
	size_t n;
	uint64_t got = 0;
	if ((r = cat_live_slices(v->c, &live, &n)))
		return r;
	r = bs_alloc_reclaim(v->a, live, n, &got);
	free(live);
	if (r) {
		seterr(err, r == -EUCLEAN ? "catalog corrupt: it disagrees with the allocator "
		       "(a file overlaps free space)" : "reclaim failed: %s", strerror(-r));
		return r;
	}
	v->ctr.leaked_bytes_reclaimed = got;
	if ((r = cat_repair(v->c)) || (r = trim_all(v)))
		seterr(err, "cannot repair the catalog: %s", strerror(-r));
	return r;
}

static int open_io(struct bs_io *io, const struct vol_opts *opts, bool may_format,
		   struct vol **out, struct vol_error *err)
{
	struct vol_opts defaults = { 0 };
	uint64_t size;
	struct vol *v;
	int r;

	if (err)
		err->msg[0] = '\0';
	if (!opts)
		opts = &defaults;
	if ((r = bs_io_size(io, &size))) {
		bs_io_close(io);
		seterr(err, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if (size == 0 && !may_format) {
		bs_io_close(io);
		seterr(err, "%s", bstack_strerror(BSTACK_E_SHORT));
		return BSTACK_E_SHORT;
	}
	if (size == 0 && (r = new_image_opts_ok(opts, err))) {
		bs_io_close(io);
		return r;
	}
	if (!(v = calloc(1, sizeof *v)) || pthread_rwlock_init(&v->lock, NULL)) {
		free(v);
		bs_io_close(io);
		return -ENOMEM;
	}
	v->opts = *opts;
	r = size == 0 ? bstack_create(io, &v->bs) : bstack_open(io, &v->bs);
	if (r) {
		seterr(err, "%s", bstack_strerror(r));
		v->bs = NULL;
		vol_free(v);
		return r;
	}
	if (bstack_len(v->bs) == 0 && may_format)
		r = format(v, err);
	else if (bstack_len(v->bs) == 0)
		seterr(err, "not a bstackfs image (empty payload)"), r = -EUCLEAN;
	else
		r = mount_existing(v, err);
	if (!r) {
		struct bs_freeq_policy p = opts->free_batch;
		if (p.kind == BS_FREEQ_FIXED && p.n == 0)
			p = BS_FREEQ_POLICY_DEFAULT;
		r = bs_freeq_new(v->a, BS_FREEQ_DEFAULT_CAPACITY, p, &v->fq);
		if (r)
			seterr(err, "bad free_batch policy");
	}
	if (r) {
		vol_free(v);
		return r;
	}
	*out = v;
	return 0;
}

int vol_open_io(struct bs_io *io, const struct vol_opts *opts, struct vol **out,
		struct vol_error *err)
{
	return open_io(io, opts, opts && opts->create, out, err);
}

int vol_open(const char *path, const struct vol_opts *opts, struct vol **out,
	     struct vol_error *err)
{
	struct bs_io *io;
	int created = 0;
	int r = bs_io_file_open(path, opts && opts->create ? BS_IO_CREATE : 0, &io, &created);
	if (r) {
		seterr(err, "cannot open: %s", strerror(-r));
		return r;
	}
	r = open_io(io, opts, created, out, err);
	if (r) {
		if (created)
			unlink(path);   /* do not leave a half-made image behind */
		return r;
	}
	(*out)->path = strdup(path);
	return 0;
}

/* ---- attributes ------------------------------------------------------------ */

static uint64_t backing_of(struct vol *v, const struct cat_node *n)
{
	uint64_t start, len;
	if (n->r.kind != CAT_FILE || n->r.alloc.len == 0 ||
	    bs_alloc_extent(v->a, n->r.alloc, &start, &len))
		return 0;
	return len;
}

/* A node by inode: a named one, else an orphan (removed while open). */
static struct cat_node *node_get(struct vol *v, uint64_t ino)
{
	struct cat_node *n = cat_get(v->c, ino);
	return n ? n : cat_orphan_get(v->c, ino);
}

static void fill_attr(struct vol *v, const struct cat_node *n, struct vol_attr *a)
{
	memset(a, 0, sizeof *a);
	a->ino = n->r.ino;
	a->parent = n->r.parent;
	a->mode = n->r.mode;
	a->uid = n->r.uid;
	a->gid = n->r.gid;
	a->nlink = n->r.kind == CAT_DIR ? (uint32_t)(2 + n->nsubdirs) : n->orphan ? 0 : 1;
	a->size = n->r.size;
	a->alloc_bytes = backing_of(v, n);
	a->atime_ns = n->r.atime;
	a->mtime_ns = n->r.mtime;
	a->ctime_ns = n->r.ctime;
}

static struct cat_node *get_dir(struct vol *v, uint64_t ino, int *r)
{
	struct cat_node *d = cat_get(v->c, ino);
	*r = !d ? -ENOENT : d->r.kind != CAT_DIR ? -ENOTDIR : 0;
	return *r ? NULL : d;
}

int vol_lookup(struct vol *v, uint64_t parent, const char *name, struct vol_attr *out)
{
	int r = vol_name_ok(name);
	if (r)
		return r;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *d = get_dir(v, parent, &r), *n = NULL;
	if (d && !(n = cat_lookup(v->c, parent, name, strlen(name))))
		r = -ENOENT;
	if (n && out)
		fill_attr(v, n, out);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_getattr(struct vol *v, uint64_t ino, struct vol_attr *out)
{
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = node_get(v, ino);
	if (n)
		fill_attr(v, n, out);
	pthread_rwlock_unlock(&v->lock);
	return n ? 0 : -ENOENT;
}

/* ---- record writes with the data barrier --------------------------------- */

/* An orphan has no record: its state lives in memory only. */
static void store_orphan(struct cat_node *n, const struct cat_rec *r)
{
	uint64_t ino = n->r.ino;
	uint8_t kind = n->r.kind;
	n->r = *r;
	n->r.ino = ino;
	n->r.kind = kind;
	n->rec_dirty = false;
}

/* Durably store r as n's record.  When the file has unsynced data the sync
 * comes first, so the record (its size) never reaches the disk before the
 * bytes it covers. */
static int store(struct vol *v, struct cat_node *n, const struct cat_rec *r)
{
	int e;
	if (n->orphan) {
		store_orphan(n, r);
		return 0;
	}
	if (n->data_dirty) {
		if ((e = bstack_sync(v->bs)))
			return e;
		n->data_dirty = false;
	}
	return cat_store(v->c, n, r);
}

static void touch_dir(struct cat_node *d, int64_t now)
{
	d->r.mtime = d->r.ctime = now;
	d->rec_dirty = true;
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
static void vol_drain(struct vol *v)
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

static int make(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
		uint32_t uid, uint32_t gid, uint8_t kind, struct vol_attr *out)
{
	struct cat_node *d, *n;
	int r = vol_name_ok(name);
	if (r)
		return r;
	if (is_control(parent, name))
		return -EEXIST;
	pthread_rwlock_wrlock(&v->lock);
	if (!(d = get_dir(v, parent, &r)))
		goto out;
	if (cat_lookup(v->c, parent, name, strlen(name))) {
		r = -EEXIST;
		goto out;
	}
	int64_t now = now_ns();
	struct cat_rec rec = {
		.kind = kind, .parent = parent, .name_len = (uint16_t)strlen(name),
		.mode = (kind == CAT_DIR ? S_IFDIR : S_IFREG) | (mode & 07777),
		.uid = uid, .gid = gid, .atime = now, .mtime = now, .ctime = now,
	};
	memcpy(rec.name, name, rec.name_len);
	/* a new file is the zero-length allocation: no allocator I/O (§1);
	 * the catalog may have to grow, and the queued frees may hold room */
	r = cat_create(v->c, &rec, &n);
	if (r == -ENOSPC && bs_freeq_depth(v->fq)) {
		vol_drain(v);
		r = cat_create(v->c, &rec, &n);
	}
	if (r)
		goto out;
	if (kind == CAT_FILE)
		v->ctr.allocs++;
	touch_dir(d, now);
	if (out)
		fill_attr(v, n, out);
out:
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_create(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	return make(v, parent, name, mode, uid, gid, CAT_FILE, out);
}

int vol_mkdir(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	      uint32_t uid, uint32_t gid, struct vol_attr *out)
{
	return make(v, parent, name, mode, uid, gid, CAT_DIR, out);
}

/* Remove n: the record goes durably first, its space second (unlink order,
 * guarantee 2); a failed dealloc only leaks until the next mount.  A file
 * still open becomes an orphan instead: record gone, space kept until its
 * last close (vol_release). */
static int drop(struct vol *v, struct cat_node *n)
{
	struct bs_slice s = n->r.alloc;
	bool file = n->r.kind == CAT_FILE;
	int r;
	if (file && n->opens)
		return cat_orphan(v->c, n);
	if ((r = cat_remove(v->c, n)))
		return r;
	vol_give_back(v, s);
	if (file)
		v->ctr.deallocs++;
	return 0;
}

static int remove_entry(struct vol *v, uint64_t parent, const char *name, bool dir)
{
	struct cat_node *d, *n = NULL;
	int r = vol_name_ok(name);
	if (r)
		return r;
	if (is_control(parent, name))
		return -EPERM;
	pthread_rwlock_wrlock(&v->lock);
	if (!(d = get_dir(v, parent, &r)))
		goto out;
	if (!(n = cat_lookup(v->c, parent, name, strlen(name))))
		r = -ENOENT;
	else if (dir && n->r.kind != CAT_DIR)
		r = -ENOTDIR;
	else if (!dir && n->r.kind == CAT_DIR)
		r = -EISDIR;
	else if (dir && n->first)
		r = -ENOTEMPTY;
	else if (!(r = drop(v, n)))
		touch_dir(d, now_ns());
out:
	pthread_rwlock_unlock(&v->lock);
	return r;
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
	/* bounded: the tree was verified acyclic and has n_dirs levels at most */
	for (uint64_t i = 0; i <= v->c->n_dirs + 1; i++) {
		if (ino == anc)
			return true;
		if (ino == VOL_ROOT_INO)
			return false;
		struct cat_node *n = cat_get(v->c, ino);
		if (!n)
			return false;
		ino = n->r.parent;
	}
	return true;
}

static int rename_checks(struct vol *v, struct cat_node *src, struct cat_node *dst,
			 uint64_t newparent, unsigned flags)
{
	if (src->r.kind == CAT_DIR && is_ancestor(v, src->r.ino, newparent))
		return -EINVAL;   /* a directory cannot move into itself */
	if (!dst)
		return 0;
	if (flags & VOL_RENAME_NOREPLACE)
		return -EEXIST;
	if (src->r.kind == CAT_DIR && dst->r.kind != CAT_DIR)
		return -ENOTDIR;
	if (src->r.kind != CAT_DIR && dst->r.kind == CAT_DIR)
		return -EISDIR;
	if (dst->first)
		return -ENOTEMPTY;
	return 0;
}

/*
 * One durable record write moves the name.  Over an existing name the
 * renamed record is written first (its seq is newer than the victim's), the
 * victim's tombstone second, its space freed third: a crash after the first
 * write leaves two records with that name and mount keeps the newer one
 * (catalog.c), so the rename is all or nothing.
 */
int vol_rename(struct vol *v, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags)
{
	struct cat_node *d, *nd, *src = NULL, *dst;
	int r;
	if (flags & ~(unsigned)VOL_RENAME_NOREPLACE)
		return -EINVAL;   /* RENAME_EXCHANGE: not crash-atomic here */
	if ((r = vol_name_ok(name)) || (r = vol_name_ok(newname)))
		return r;
	if (is_control(parent, name) || is_control(newparent, newname))
		return -EPERM;
	pthread_rwlock_wrlock(&v->lock);
	if (!(d = get_dir(v, parent, &r)) || !(nd = get_dir(v, newparent, &r)))
		goto out;
	if (!(src = cat_lookup(v->c, parent, name, strlen(name)))) {
		r = -ENOENT;
		goto out;
	}
	dst = cat_lookup(v->c, newparent, newname, strlen(newname));
	if (dst == src || (r = rename_checks(v, src, dst, newparent, flags)))
		goto out;
	int64_t now = now_ns();
	struct cat_rec nr = src->r;
	nr.parent = newparent;
	nr.name_len = (uint16_t)strlen(newname);
	memset(nr.name, 0, sizeof nr.name);
	memcpy(nr.name, newname, nr.name_len);
	nr.ctime = now;
	if ((r = store(v, src, &nr)))                 /* the rename point */
		goto out;
	touch_dir(d, now);
	touch_dir(nd, now);
	if (dst && (r = drop(v, dst)))
		cat_forget(v->c, dst);   /* mount resolves the two records */
out:
	pthread_rwlock_unlock(&v->lock);
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
		for (struct cat_node *n = cat_child_after(v->c, d, pos); n; n = n->next) {
			fill_attr(v, n, &a);
			if (fill(ctx, n->r.name, &a, n->cookie))
				break;
		}
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* ---- file data -------------------------------------------------------------- */

static struct cat_node *get_file(struct vol *v, uint64_t ino, int *r)
{
	struct cat_node *n = node_get(v, ino);
	*r = !n ? -ENOENT : n->r.kind != CAT_FILE ? -EISDIR : 0;
	return *r ? NULL : n;
}

ssize_t vol_read(struct vol *v, uint64_t ino, void *buf, size_t n, uint64_t off)
{
	int r;
	ssize_t got = 0;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && off < f->r.size) {
		uint64_t k = f->r.size - off;
		if (k > n)
			k = n;
		if (k > SSIZE_MAX)
			k = SSIZE_MAX;
		r = bstack_get(v->bs, f->r.alloc.off + off, buf, k);
		got = (ssize_t)k;
	}
	pthread_rwlock_unlock(&v->lock);
	return r ? r : got;
}

static int zero_range(struct vol *v, uint64_t off, uint64_t n)
{
	static const uint8_t zeros[65536];
	while (n) {
		uint64_t k = n < sizeof zeros ? n : sizeof zeros;
		int r = bstack_set_nosync(v->bs, off, zeros, k);
		if (r)
			return r;
		off += k;
		n -= k;
	}
	return 0;
}

static int copy_range(struct vol *v, uint64_t from, uint64_t to, uint64_t n)
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
			r = bstack_set_nosync(v->bs, to, buf, k);
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
static int grow(struct vol *v, struct cat_node *n, uint64_t new_cap, uint64_t *stale_end)
{
	struct bs_slice old = n->r.alloc, ns;
	bool done = false;
	int r;
	*stale_end = old.len;
	if (old.len) {
		/* A full disk can refuse the in-place growth of the tail
		 * allocation while free space elsewhere still fits the new
		 * capacity: fall through to copy-on-write (the allocator
		 * changed nothing, tested in test_alloc_harness nospc_*). */
		r = bs_grow_in_place(v->a, old, new_cap, &ns, &done);
		if (r && r != -ENOSPC)
			return r;
		if (!r && done) {
			/* Not recorded yet (an orphan: never): until the record says so, a crash
			 * leaves the extra space unreferenced (reclaimed). */
			n->r.alloc = ns;
			n->rec_dirty = true;
			v->ctr.reallocs++;
			v->ctr.reallocs_in_place++;
			return 0;
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
		n->r.alloc = ns;
		n->rec_dirty = true;
		v->ctr.reallocs++;
		*stale_end = 0;
		return 0;
	}
	/* 2. copy and sync: the copy is durable before anything names it (an
	 *    orphan has no record to name it: no sync) */
	r = copy_range(v, old.off, ns.off, n->r.size);
	if (!r && !n->orphan)
		r = bstack_sync(v->bs);
	if (r) {
		bs_dealloc(v->a, ns);
		return r;
	}
	if (!n->orphan)
		n->data_dirty = false;
	/* 3. durably repoint the record (crash before: old state, new leaks;
	 *    after: new state, old leaks until step 4); an orphan's in-memory
	 *    allocation is the only reference, repointed in place */
	struct cat_rec nr = n->r;
	nr.alloc = ns;
	if (n->orphan) {
		store_orphan(n, &nr);
	} else if ((r = cat_store(v->c, n, &nr))) {
		bs_dealloc(v->a, ns);
		return r;
	}
	/* 4. free the old place */
	bs_dealloc(v->a, old);
	v->ctr.reallocs++;
	v->ctr.bytes_copied += n->r.size;
	*stale_end = n->r.size;
	return 0;
}

static uint64_t amortised_cap(uint64_t cap, uint64_t need)
{
	uint64_t step = cap < VOL_GROW_MIN ? VOL_GROW_MIN : cap;
	uint64_t want;
	if (step > VOL_GROW_STEP_MAX)
		step = VOL_GROW_STEP_MAX;
	if (!add_ok(cap, step, &want) || want < need)
		want = need;
	return want;
}

ssize_t vol_write(struct vol *v, uint64_t ino, const void *buf, size_t n, uint64_t off)
{
	uint64_t end, stale_end;
	int r;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (!add_ok(off, n, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (!f || n == 0)
		goto out;
	stale_end = f->r.alloc.len;
	if (end > f->r.alloc.len) {
		uint64_t cap = amortised_cap(f->r.alloc.len, end);
		r = grow(v, f, cap, &stale_end);
		/* on a nearly full disk the amortised headroom may not fit
		 * where the write itself does: ask for exactly what it needs */
		if (r == -ENOSPC && cap > end)
			r = grow(v, f, end, &stale_end);
		if (r)
			goto out;
	}
	/* a hole past the old size reads as zeros */
	if (off > f->r.size && stale_end > f->r.size) {
		uint64_t ze = off < stale_end ? off : stale_end;
		if ((r = zero_range(v, f->r.alloc.off + f->r.size, ze - f->r.size)))
			goto out;
	}
	if ((r = bstack_set_nosync(v->bs, f->r.alloc.off + off, buf, n)))
		goto out;
	f->data_dirty = true;
	if (end > f->r.size)
		f->r.size = end;
	f->r.mtime = f->r.ctime = now_ns();
	f->rec_dirty = true;
	if (v->opts.sync_writes) {
		/* -o sync: data, then the record that covers it */
		struct cat_rec nr = f->r;
		r = store(v, f, &nr);
	}
out:
	pthread_rwlock_unlock(&v->lock);
	return r ? r : (ssize_t)n;
}

/* Can the allocation s shrink in place?  Every allocator can, except
 * Linear below its tail. */
static bool can_shrink(struct vol *v, struct bs_slice s)
{
	return v->a->kind != BS_ALLOC_LINEAR || s.off + s.len == bstack_len(v->bs);
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
	struct bs_slice old = f->r.alloc;
	uint64_t stale_end = old.len;
	int r;
	if (size > old.len) {
		if ((r = grow(v, f, size, &stale_end)))
			return r;
		old = f->r.alloc;
	}
	if (size > f->r.size && stale_end > f->r.size) {
		uint64_t ze = size < stale_end ? size : stale_end;
		if ((r = zero_range(v, f->r.alloc.off + f->r.size, ze - f->r.size)))
			return r;
		f->data_dirty = true;
	}
	struct cat_rec nr = f->r;
	nr.size = size;
	if (size == 0)
		nr.alloc = (struct bs_slice){ 0, 0 };
	else if (old.len > size && can_shrink(v, old))
		nr.alloc = (struct bs_slice){ old.off, size };
	if (touch)
		nr.mtime = nr.ctime = now_ns();
	if ((r = store(v, f, &nr)))     /* durable: the new size and allocation */
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
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (f)
		r = resize(v, f, size, true);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_fallocate(struct vol *v, uint64_t ino, uint64_t off, uint64_t len)
{
	uint64_t end;
	int r;
	if (!add_ok(off, len, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && end > f->r.size)
		r = resize(v, f, end, true);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_setattr(struct vol *v, uint64_t ino, unsigned mask, const struct vol_attr *in,
		struct vol_attr *out)
{
	int r = 0;
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *n = node_get(v, ino);
	if (!n) {
		r = -ENOENT;
		goto out;
	}
	struct cat_rec nr = n->r;
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
	nr.ctime = mask & VOL_SET_CTIME ? in->ctime_ns : now_ns();
	r = store(v, n, &nr);
	if (!r && out)
		fill_attr(v, n, out);
out:
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* ---- durability points --------------------------------------------------- */

/* Data first (sync), then (trim) the capacity cut back to the size, and the
 * record if it changed. */
static int commit(struct vol *v, struct cat_node *n, bool trim)
{
	int r;
	if (trim && n->r.kind == CAT_FILE &&
	    (n->r.alloc.len > n->r.size && (n->r.size == 0 || can_shrink(v, n->r.alloc))))
		return resize(v, n, n->r.size, false);
	if (n->rec_dirty) {
		struct cat_rec nr = n->r;
		return store(v, n, &nr);
	}
	if (n->data_dirty) {
		if ((r = bstack_sync(v->bs)))
			return r;
		n->data_dirty = false;
	}
	return 0;
}

/* The last close of an orphan: nothing names its space any more. */
static void free_orphan(struct vol *v, struct cat_node *n)
{
	vol_give_back(v, n->r.alloc);
	v->ctr.deallocs++;
	cat_orphan_free(v->c, n);
}

/* fsync keeps the spare capacity (the record states it): a file written
 * and fsynced in turns would otherwise shrink and regrow, copying itself
 * each time it cannot grow in place.  The trim comes at release/close
 * (DESIGN §4: "at close the allocation is trimmed back"). */
int vol_fsync(struct vol *v, uint64_t ino)
{
	int r;
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *n = node_get(v, ino);
	r = n ? commit(v, n, false) : -ENOENT;
	vol_drain(v);   /* an owner point (issue 10) */
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_open_file(struct vol *v, uint64_t ino)
{
	int r;
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *n = get_file(v, ino, &r);
	if (n)
		n->opens++;
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
	pthread_rwlock_wrlock(&v->lock);
	struct cat_node *n = node_get(v, ino);
	if (!n) {
		r = -ENOENT;
	} else {
		bool last = n->opens <= 1;
		if (n->opens)
			n->opens--;
		if (n->orphan && last)
			free_orphan(v, n);
		else
			r = commit(v, n, last);
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

struct sync_ctx {
	struct vol *v;
	int r;
};

static int sync_one(void *ctx, struct cat_node *n)
{
	struct sync_ctx *s = ctx;
	int r = commit(s->v, n, true);
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

int vol_sync_all(struct vol *v)
{
	pthread_rwlock_wrlock(&v->lock);
	int r = sync_all_locked(v);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* Linear cannot reuse a hole, but once everything above one is gone the
 * hole is unreferenced tail space: give it back at unmount, so a clean
 * unmount leaves nothing for the next mount to reclaim. */
static int linear_tidy(struct vol *v)
{
	struct bs_slice *live;
	size_t n;
	uint64_t got;
	if (v->a->kind != BS_ALLOC_LINEAR)
		return 0;
	int r = cat_live_slices(v->c, &live, &n);
	if (r)
		return r;
	r = bs_alloc_reclaim(v->a, live, n, &got);
	free(live);
	return r;
}

int vol_close(struct vol *v)
{
	if (!v)
		return 0;
	int r = sync_all_locked(v);
	/* orphans still open at unmount: their last close is now */
	while (v->c->orphans)
		free_orphan(v, v->c->orphans);
	/* the seed's drop: close the queue and drain what is pending */
	bs_freeq_close(v->fq, NULL);
	if (!r)
		r = linear_tidy(v);
	vol_free(v);
	return r;
}

/* ---- figures --------------------------------------------------------------- */

struct sums {
	struct vol *v;
	uint64_t live, capacity, backing;
};

static int sum_one(void *ctx, struct cat_node *n)
{
	struct sums *s = ctx;
	if (n->r.kind != CAT_FILE)
		return 0;
	s->live += n->r.size;
	s->capacity += n->r.alloc.len;
	s->backing += backing_of(s->v, n);
	return 0;
}

int vol_statfs(struct vol *v, struct vol_statfs *out)
{
	struct bs_alloc_stats st;
	struct statvfs hv;
	uint64_t host = 0;
	if (bs_freeq_depth(v->fq)) {
		/* an owner point: what is queued is pending, not free, so
		 * drain it before counting */
		pthread_rwlock_wrlock(&v->lock);
		vol_drain(v);
		pthread_rwlock_unlock(&v->lock);
	}
	pthread_rwlock_rdlock(&v->lock);
	bs_alloc_stats(v->a, &st);
	if (v->path && statvfs(v->path, &hv) == 0)
		host = (uint64_t)hv.f_bavail * hv.f_frsize;
	memset(out, 0, sizeof *out);
	out->block_size = 4096;
	out->total_bytes = BSTACK_HEADER_SIZE + bstack_len(v->bs) + host;
	out->free_bytes = st.free_bytes + host;
	out->files = v->c->n_files + v->c->n_dirs;
	out->files_free = out->free_bytes / CAT_PAIR_SIZE + v->c->n_free;
	out->name_max = VOL_NAME_MAX;
	pthread_rwlock_unlock(&v->lock);
	return 0;
}

/*
 * The control file's text, one `key value` per line (README copies this):
 *   allocator               allocator name (linear, firstfit, slab, ghost)
 *   magic                   the allocator's magic, e.g. ALGT-0.1.2 ("none": Linear)
 *   image_bytes             file size: 16-byte header + payload
 *   payload_bytes           BStack payload length
 *   files                   regular files
 *   directories             directories, the root included
 *   live_bytes              sum of file sizes
 *   capacity_bytes          sum of file allocation lengths (>= live_bytes
 *                           while files are being written)
 *   backing_bytes           bytes the allocator holds for the files
 *   free_blocks             free blocks of the allocator
 *   free_bytes              their bytes
 *   largest_free_bytes      the largest one
 *   fragmentation           1 - largest_free/free, 4 decimals, 0 when no free space
 *   overhead_bytes          allocator headers/footers + the catalog's allocation
 *   catalog_bytes           the catalog's allocation alone
 *   allocs                  files created (each the zero-length allocation)
 *   reallocs                file allocation size changes
 *   reallocs_in_place       of which without a move
 *   deallocs                files removed
 *   bytes_copied            bytes copied by copy-on-write moves of files
 *   syncs                   device syncs since mount
 *   leaked_bytes_reclaimed  space returned to the allocator at mount
 *   orphan_files            files removed while open, alive until last close
 *   orphan_bytes            bytes the allocator holds for them
 *   remote_frees            frees queued for the owner since mount
 *   free_queue_depth        of which still queued (pending: not in free_bytes)
 *   free_queue_bytes        their bytes
 *   free_queue_capacity     the queue's bound
 *   drain_threshold         the policy's current threshold
 *   drains                  batches drained (one bulk dealloc each)
 *   queue_full              pushes that found the queue full
 * followed by the allocator's own figures under their own names (Slab:
 * block_size, ...; GhostTree: tree_height, tree_nodes; FirstFit: ...).
 */
/* The figures both the control file and vol_summary report.  Read lock
 * held. */
static void summarise(struct vol *v, struct bs_alloc_stats *st, struct vol_summary *out)
{
	struct sums s = { v, 0, 0, 0 };
	bs_alloc_stats(v->a, st);
	cat_foreach(v->c, sum_one, &s);
	memset(out, 0, sizeof *out);
	out->allocator = st->name;
	snprintf(out->magic, sizeof out->magic, "%s", st->magic);
	out->files = v->c->n_files;
	out->directories = v->c->n_dirs;
	out->live_bytes = s.live;
	out->capacity_bytes = s.capacity;
	out->backing_bytes = s.backing;
	out->free_bytes = st->free_bytes;
	/* files removed while still open: their space is freed at the last
	 * close, and until then it is neither free nor any named file's */
	out->orphan_files = v->c->n_orphans;
	for (struct cat_node *o = v->c->orphans; o; o = o->next)
		out->orphan_bytes += backing_of(v, o);
}

int vol_summary(struct vol *v, struct vol_summary *out)
{
	struct bs_alloc_stats st;
	pthread_rwlock_rdlock(&v->lock);
	summarise(v, &st, out);
	pthread_rwlock_unlock(&v->lock);
	return 0;
}

int vol_stats_text(struct vol *v, char **buf, size_t *len)
{
	struct bs_alloc_stats st;
	struct vol_summary s;
	uint64_t cat_start, cat_ext = 0;
	size_t cap = 2048 + 64 * BS_ALLOC_MAX_EXTRA, n = 0;
	char *t = malloc(cap);
	if (!t)
		return -ENOMEM;
	pthread_rwlock_rdlock(&v->lock);
	summarise(v, &st, &s);
	if (bs_alloc_extent(v->a, v->c->root, &cat_start, &cat_ext))
		cat_ext = v->c->root.len;
	double frag = st.free_bytes ? 1.0 - (double)st.largest_free / (double)st.free_bytes : 0;
#define KV(k, val) n += (size_t)snprintf(t + n, cap - n, "%s %llu\n", k, \
					  (unsigned long long)(val))
	n += (size_t)snprintf(t + n, cap - n, "allocator %s\nmagic %s\n", s.allocator, s.magic);
	KV("image_bytes", BSTACK_HEADER_SIZE + bstack_len(v->bs));
	KV("payload_bytes", bstack_len(v->bs));
	KV("files", s.files);
	KV("directories", s.directories);
	KV("live_bytes", s.live_bytes);
	KV("capacity_bytes", s.capacity_bytes);
	KV("backing_bytes", s.backing_bytes);
	KV("free_blocks", st.free_blocks);
	KV("free_bytes", st.free_bytes);
	KV("largest_free_bytes", st.largest_free);
	n += (size_t)snprintf(t + n, cap - n, "fragmentation %.4f\n", frag);
	KV("overhead_bytes", st.overhead_bytes + cat_ext);
	KV("catalog_bytes", cat_ext);
	KV("allocs", v->ctr.allocs);
	KV("reallocs", v->ctr.reallocs);
	KV("reallocs_in_place", v->ctr.reallocs_in_place);
	KV("deallocs", v->ctr.deallocs);
	KV("bytes_copied", v->ctr.bytes_copied);
	KV("syncs", st.syncs);
	KV("leaked_bytes_reclaimed", v->ctr.leaked_bytes_reclaimed);
	KV("orphan_files", s.orphan_files);
	KV("orphan_bytes", s.orphan_bytes);
	struct bs_freeq_stats fs;
	bs_freeq_get_stats(v->fq, &fs);
	KV("remote_frees", fs.pushes);
	KV("free_queue_depth", fs.depth);
	KV("free_queue_bytes", fs.queued_bytes);
	KV("free_queue_capacity", fs.capacity);
	KV("drain_threshold", fs.threshold);
	KV("drains", fs.drains);
	KV("queue_full", fs.queue_full);
	for (int i = 0; i < st.n_extra && i < BS_ALLOC_MAX_EXTRA; i++)
		KV(st.extra[i].key, st.extra[i].value);
#undef KV
	pthread_rwlock_unlock(&v->lock);
	*buf = t;
	*len = n;
	return 0;
}

int vol_get_counters(struct vol *v, struct vol_counters *out)
{
	struct bstack_stats bst;
	pthread_rwlock_rdlock(&v->lock);
	*out = v->ctr;
	bstack_stats(v->bs, &bst);
	out->syncs = bst.syncs;
	out->catalog_rewrites = v->c->rewrites;
	bs_freeq_get_stats(v->fq, &out->freeq);
	pthread_rwlock_unlock(&v->lock);
	return 0;
}

int vol_check(struct vol *v, bs_report_fn report, void *ctx)
{
	char msg[200];
	pthread_rwlock_rdlock(&v->lock);
	int r = bs_alloc_check(v->a, report, ctx);
	if (r >= 0 && cat_check_extents(v->c, msg, sizeof msg) == -EUCLEAN) {
		report(ctx, msg);
		r++;
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}
