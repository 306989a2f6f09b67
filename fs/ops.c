/*
 * ops.c — FUSE low-level operations over the volume (docs/design.md §1, §5, §6).
 *
 * Every operation is request plumbing: decode the request, call the volume,
 * translate its negative errno into a reply.  What the kernel cannot know
 * (who owns a new file, the umask, the control file) is decided here; what
 * concerns the image is the volume's.
 *
 * Durability (§5): metadata calls are durable when their reply is sent:
 * the volume seals the operation's transaction, and the reply waits for
 * its commit (reply_when_durable) without holding the worker thread.
 * Data is made durable at close: FLUSH (sent synchronously by close(2))
 * runs vol_fsync for a handle opened for writing, and every RELEASE runs
 * vol_release.  Open counting is the volume's: every successful OPEN or
 * CREATE of a regular file is one vol_open_file, every RELEASE one
 * vol_release, so a file unlinked while open keeps working until its last
 * close (the volume frees it then, or trims a named file to its size).
 */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"

/* st_blksize: cp and friends size their buffers by it, so a large value
 * means large write requests (max_write is 1 MiB, see bsfs_init). */
#define BSFS_IO_SIZE (1u << 20)

/* fi->fh of a regular file: set when the handle may write. */
#define BSFS_FH_WRITE 1u

static struct bsfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * What the kernel may cache (docs/design.md §5).  The daemon holds the
 * image's lock, so every change of a name or a file arrives through this
 * mount's kernel, which updates its own dentry and page caches as it
 * sends it:
 *   names, and the absence of a name (negative entries), for
 *     ENTRY_TIMEOUT_S: nothing else renames or creates behind the kernel;
 *   attributes for ATTR_TIMEOUT_S: st_blocks changes behind the kernel's
 *     back (the last close trims a file's capacity), so `du` right after
 *     a copy is at most this stale;
 *   file pages across opens (keep_cache, bsfs_open): the kernel drops the
 *     pages of a write that failed or came back short itself, truncates
 *     on O_TRUNC and setattr, and nothing else changes a
 *     file's bytes.
 */
#define ENTRY_TIMEOUT_S 60.0
#define ATTR_TIMEOUT_S 1.0

int bsfs_ctx_init(struct bsfs *fs, struct vol *v)
{
	memset(fs, 0, sizeof(*fs));
	fs->v = v;
	fs->timeout = ATTR_TIMEOUT_S;
	fs->entry_timeout = ENTRY_TIMEOUT_S;
	return 0;
}

static int64_t ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_to_ns(&ts);
}

static void attr_to_stat(const struct vol_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_rdev = a->rdev;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)((a->alloc_bytes + 511) / 512);
	st->st_blksize = BSFS_IO_SIZE;
	bsfs_ns_to_ts(a->atime_ns, &st->st_atim);
	bsfs_ns_to_ts(a->mtime_ns, &st->st_mtim);
	bsfs_ns_to_ts(a->ctime_ns, &st->st_ctim);
}

/*
 * Every entry handed to the kernel is one more kernel reference to the
 * inode (its lookup count), taken back by forget: the volume counts it
 * before the reply (a forget may follow the reply at once, on another
 * thread) and gives it back when the reply does not arrive.
 */
static void forget_one(struct vol *v, uint64_t ino)
{
	struct vol_forget f = { ino, 1 };

	vol_forget(v, &f, 1);
}

static void reply_entry(fuse_req_t req, const struct vol_attr *a)
{
	struct vol *v = fs_of(req)->v;
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.attr_timeout = fs_of(req)->timeout;
	e.entry_timeout = fs_of(req)->entry_timeout;
	attr_to_stat(a, &e.attr);
	if (vol_remember(v, a->ino) < 0) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fuse_reply_entry(req, &e) < 0)
		forget_one(v, a->ino);
}

static void reply_attr(fuse_req_t req, const struct vol_attr *a)
{
	struct stat st;

	attr_to_stat(a, &st);
	fuse_reply_attr(req, &st, fs_of(req)->timeout);
}

/* The volume's errors are negative errnos already; anything out of range
 * (a bug) becomes EIO rather than a nonsense code in the kernel. */
static void reply_rc(fuse_req_t req, long rc);

/* The reply of lookup, mknod and mkdir: the entry, or the volume's error. */
static void reply_entry_or_err(fuse_req_t req, int rc, const struct vol_attr *a)
{
	if (rc < 0)
		reply_rc(req, rc);
	else
		reply_entry(req, a);
}

static void reply_rc(fuse_req_t req, long rc)
{
	int e = rc < 0 ? (int)-rc : 0;

	if (e >= 4096)
		e = EIO;
	fuse_reply_err(req, e);
}

/*
 * Replies held until the operation's commit is durable (vol_when_durable):
 * the worker thread goes back to the kernel for the next request instead
 * of waiting for the sync, so operations of other processes that arrive
 * meanwhile share the next one (group commit with few threads).  The
 * reply is what the synchronous path would send, sent by whichever thread
 * makes the commit durable; an operation whose commit fails answers the
 * commit's error, as it did when it waited itself.
 */
enum held_kind { HELD_RC, HELD_ENTRY, HELD_ATTR, HELD_CREATE };

struct held_reply {
	struct vol_waiter w;   /* first: held_done gets it back */
	fuse_req_t req;
	enum held_kind kind;
	struct vol_attr a;
	struct fuse_file_info fi;
};

static void finish_create(fuse_req_t req, const struct vol_attr *a, struct fuse_file_info *fi);

static void held_send(struct held_reply *h, int r)
{
	if (r < 0 && h->kind == HELD_CREATE)
		vol_release(fs_of(h->req)->v, h->a.ino);   /* the kernel opens nothing */
	if (r < 0 || h->kind == HELD_RC)
		reply_rc(h->req, r);
	else if (h->kind == HELD_ENTRY)
		reply_entry(h->req, &h->a);
	else if (h->kind == HELD_ATTR)
		reply_attr(h->req, &h->a);
	else
		finish_create(h->req, &h->a, &h->fi);
}

static void held_done(struct vol_waiter *w, int r)
{
	held_send((struct held_reply *)w, r);
	free(w);
}

/* The reply of an operation run after vol_defer_begin: its error at once,
 * else (kind, with a and fi as the kind needs) once what it wrote is
 * durable. */
static void reply_held(fuse_req_t req, int rc, enum held_kind kind, const struct vol_attr *a,
		       const struct fuse_file_info *fi)
{
	uint64_t want = vol_defer_end();
	struct held_reply one = { .req = req, .kind = kind };

	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	if (a)
		one.a = *a;
	if (fi)
		one.fi = *fi;
	struct held_reply *h = want ? malloc(sizeof *h) : NULL;
	if (!h) {
		/* nothing to wait for, or no memory to hold it: this thread waits */
		held_send(&one, vol_wait_durable(fs_of(req)->v, want));
		return;
	}
	*h = one;
	h->w.done = held_done;
	vol_when_durable(fs_of(req)->v, want, &h->w);
}

static void reply_held_rc(fuse_req_t req, int rc)
{
	reply_held(req, rc, HELD_RC, NULL, NULL);
}

/* The control file's attributes take their owner and times from the root. */
static int control_stat(struct bsfs *fs, uint64_t ino, struct stat *st)
{
	struct vol_attr root;
	int rc = vol_getattr(fs->v, VOL_ROOT_INO, &root);

	return rc < 0 ? rc : bsfs_control_attr(fs->v, ino, &root, st);
}

static void reply_control_entry(fuse_req_t req, uint64_t ino)
{
	struct fuse_entry_param e;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = control_stat(fs_of(req), ino, &e.attr);
	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	e.ino = ino;
	/* Its size changes with every operation: never cache it. */
	e.attr_timeout = 0;
	e.entry_timeout = fs_of(req)->entry_timeout;
	fuse_reply_entry(req, &e);
}

static void bsfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Large requests: cp is not chopped into 4 KiB writes.  libfuse sizes
	 * its buffers for 1 MiB and negotiates max_pages to match. */
	conn->max_write = BSFS_IO_SIZE;
	if (conn->max_readahead < BSFS_IO_SIZE)
		conn->max_readahead = BSFS_IO_SIZE;
	/* We apply the caller's umask ourselves (create, mkdir). */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	/* O_TRUNC arrives with open, not as a separate setattr. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* ls -l in one request per buffer of entries, not a LOOKUP each. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* Writes go to the volume at once (no writeback cache), so that a
	 * full disk fails the write and close/fsync/-o sync mean what §5
	 * says.  The page cache is kept across opens (keep_cache); its
	 * invalidation on an mtime change is off: our mtimes come from the
	 * daemon's clock, so it would fire after every write, and no mtime
	 * changes behind the kernel's back. */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA);
	/* A symlink's target never changes: the kernel may keep it. */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

static void bsfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vol_attr a;
	int rc;

	if (bsfs_is_control(parent, name)) {
		reply_control_entry(req, bsfs_control_ino(name));
		return;
	}
	rc = vol_lookup(fs_of(req)->v, parent, name, &a);
	if (rc == -ENOENT) {
		/* a negative entry: the kernel remembers the absence (and
		 * drops it itself when it creates the name) */
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs_of(req)->entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry_or_err(req, rc, &a);
}

static void bsfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct vol_forget f = { ino, nlookup };

	vol_forget(fs_of(req)->v, &f, 1);
	fuse_reply_none(req);
}

static void bsfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	struct vol_forget batch[64];
	size_t i, k = 0;

	/* one pass of the volume's lock per 64 */
	for (i = 0; i < count; i++) {
		batch[k++] = (struct vol_forget){ f[i].ino, f[i].nlookup };
		if (k == sizeof(batch) / sizeof(batch[0]) || i + 1 == count) {
			vol_forget(fs_of(req)->v, batch, k);
			k = 0;
		}
	}
	fuse_reply_none(req);
}

static void bsfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vol_attr a;
	struct stat st;
	int rc;

	(void)fi;
	if (bsfs_is_control_ino(ino)) {
		rc = control_stat(fs_of(req), ino, &st);
		if (rc < 0)
			reply_rc(req, rc);
		else
			fuse_reply_attr(req, &st, 0);
		return;
	}
	rc = vol_getattr(fs_of(req)->v, ino, &a);
	if (rc < 0)
		reply_rc(req, rc);
	else
		reply_attr(req, &a);
}

static int64_t set_time(const struct timespec *ts, bool now)
{
	return now ? now_ns() : ts_to_ns(ts);
}

static void bsfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	struct vol *v = fs_of(req)->v;
	struct vol_attr in, out;
	unsigned mask = 0;
	int rc;

	(void)fi;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	vol_defer_begin();
	if (to_set & FUSE_SET_ATTR_SIZE) {
		rc = vol_truncate(v, ino, (uint64_t)attr->st_size);
		if (rc < 0) {
			reply_held(req, rc, HELD_ATTR, NULL, NULL);
			return;
		}
	}
	memset(&in, 0, sizeof(in));
	if (to_set & FUSE_SET_ATTR_MODE) {
		mask |= VOL_SET_MODE;
		in.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		mask |= VOL_SET_UID;
		in.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		mask |= VOL_SET_GID;
		in.gid = attr->st_gid;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		mask |= VOL_SET_ATIME;
		in.atime_ns = set_time(&attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW);
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		mask |= VOL_SET_MTIME;
		in.mtime_ns = set_time(&attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW);
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		mask |= VOL_SET_CTIME;
		in.ctime_ns = ts_to_ns(&attr->st_ctim);
	}
	rc = mask ? vol_setattr(v, ino, mask, &in, &out) : vol_getattr(v, ino, &out);
	reply_held(req, rc, HELD_ATTR, &out, NULL);
}

static void bsfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vol_attr a;
	int rc = vol_getattr(fs_of(req)->v, ino, &a);

	if (rc < 0)
		reply_rc(req, rc);
	else if (!S_ISDIR(a.mode))
		fuse_reply_err(req, ENOTDIR);
	else
		fuse_reply_open(req, fi);
}

static void bsfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/*
 * Directory offsets: 1 after ".", 2 after "..", 3 and 4 after the control
 * files (root only), then 4 + the volume's resume position.
 */
#define DIR_OFF_DOT     1
#define DIR_OFF_DOTDOT  2
#define DIR_OFF_CONTROL 3
#define DIR_OFF_VOLUME  4

struct dir_fill {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	bool plus;   /* readdirplus: each entry with its attributes */
	/* readdirplus: the inodes packed with attributes, each remembered
	 * (reply_entry), forgotten again if the reply does not arrive */
	uint64_t *inos;
	size_t n_inos, cap_inos;
};

/* Count one kernel reference for a readdirplus entry about to be packed. */
static bool dir_remember(struct dir_fill *d, uint64_t ino)
{
	if (d->n_inos == d->cap_inos) {
		size_t cap = d->cap_inos ? 2 * d->cap_inos : 32;
		uint64_t *p = realloc(d->inos, cap * sizeof(*p));

		if (!p)
			return false;
		d->inos = p;
		d->cap_inos = cap;
	}
	if (vol_remember(fs_of(d->req)->v, ino) < 0)
		return false;
	d->inos[d->n_inos++] = ino;
	return true;
}

static void dir_unremember_last(struct dir_fill *d)
{
	forget_one(fs_of(d->req)->v, d->inos[--d->n_inos]);
}

/* One entry; a (may be NULL) gives readdirplus the attributes: without
 * them ("." and "..", the control files) the kernel looks the name up
 * itself when it needs it. */
static bool dir_add(struct dir_fill *d, const char *name, uint64_t ino, uint32_t mode,
		    const struct vol_attr *a, uint64_t next_off)
{
	char *at = d->buf + d->used;
	size_t room = d->size - d->used, n;

	if (d->plus) {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		if (a && !dir_remember(d, a->ino))
			return false;
		if (a) {
			e.ino = a->ino;
			e.attr_timeout = fs_of(d->req)->timeout;
			e.entry_timeout = fs_of(d->req)->entry_timeout;
			attr_to_stat(a, &e.attr);
		} else {
			e.attr.st_ino = ino;
			e.attr.st_mode = mode;
		}
		n = fuse_add_direntry_plus(d->req, at, room, name, &e, (off_t)next_off);
		if (a && n > room)
			dir_unremember_last(d);   /* not packed: the kernel never sees it */
	} else {
		struct stat st;

		memset(&st, 0, sizeof(st));
		st.st_ino = ino;
		st.st_mode = mode;
		n = fuse_add_direntry(d->req, at, room, name, &st, (off_t)next_off);
	}
	if (n > room)
		return false;
	d->used += n;
	return true;
}

static int dir_fill_vol(void *ctx, const char *name, const struct vol_attr *a,
			uint64_t next_pos)
{
	return dir_add(ctx, name, a->ino, a->mode, a, DIR_OFF_VOLUME + next_pos) ? 0 : 1;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct vol *v = fs_of(req)->v;
	struct dir_fill d = { .req = req, .size = size, .plus = plus };
	struct vol_attr self;
	uint64_t pos = (uint64_t)off;
	int rc;

	rc = vol_getattr(v, ino, &self);
	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	d.buf = malloc(size ? size : 1);
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (pos < DIR_OFF_DOT && !dir_add(&d, ".", ino, S_IFDIR, NULL, DIR_OFF_DOT))
		goto out;
	if (pos < DIR_OFF_DOTDOT && !dir_add(&d, "..", self.parent, S_IFDIR, NULL, DIR_OFF_DOTDOT))
		goto out;
	if (pos < DIR_OFF_CONTROL && ino == VOL_ROOT_INO &&
	    !dir_add(&d, VOL_CONTROL_NAME, BSFS_CONTROL_INO, S_IFREG, NULL, DIR_OFF_CONTROL))
		goto out;
	if (pos < DIR_OFF_VOLUME && ino == VOL_ROOT_INO &&
	    !dir_add(&d, VOL_CONTROL_JSON_NAME, BSFS_CONTROL_JSON_INO, S_IFREG, NULL,
		     DIR_OFF_VOLUME))
		goto out;
	rc = vol_readdir(v, ino, pos < DIR_OFF_VOLUME ? 0 : pos - DIR_OFF_VOLUME,
			 dir_fill_vol, &d);
	/* Entries already packed are still good if the walk failed later. */
	if (rc < 0 && d.used == 0) {
		while (d.n_inos)
			dir_unremember_last(&d);
		free(d.inos);
		free(d.buf);
		reply_rc(req, rc);
		return;
	}
out:
	if (fuse_reply_buf(req, d.buf, d.used) < 0)
		while (d.n_inos)
			dir_unremember_last(&d);
	free(d.inos);
	free(d.buf);
}

static void bsfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void bsfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			     struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void bsfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			  struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	/* Directory operations are durable when they return (§5). */
	fuse_reply_err(req, 0);
}

static bool wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static void open_control(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bsfs_snapshot *s;
	int rc;

	if (wants_write(fi->flags)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	rc = bsfs_control_open(fs_of(req)->v, ino, &s);
	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)s;
	/* The size in getattr may be older than this snapshot. */
	fi->direct_io = 1;
	if (fuse_reply_open(req, fi) < 0)
		bsfs_control_release(s);
}

/* The open is counted; if the reply fails (interrupted) no release will
 * come, so undo it here. */
static void reply_open_counted(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (fuse_reply_open(req, fi) < 0)
		vol_release(fs_of(req)->v, ino);
}

static void bsfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bsfs *fs = fs_of(req);
	bool write = wants_write(fi->flags);
	int rc;

	if (bsfs_is_control_ino(ino)) {
		open_control(req, ino, fi);
		return;
	}
	/* Counted first (-ENOENT, -EISDIR): a concurrent unlink then leaves
	 * the file open as an orphan rather than gone under the truncate. */
	rc = vol_open_file(fs->v, ino);
	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	/* The kernel checked write permission for O_TRUNC (even with
	 * O_RDONLY, which Linux truncates too). */
	if (fi->flags & O_TRUNC) {
		rc = vol_truncate(fs->v, ino, 0);
		if (rc < 0) {
			vol_release(fs->v, ino);
			reply_rc(req, rc);
			return;
		}
	}
	fi->fh = write ? BSFS_FH_WRITE : 0;
	fi->keep_cache = 1;   /* see ENTRY_TIMEOUT_S above */
	reply_open_counted(req, ino, fi);
}

static uint32_t create_mode(fuse_req_t req, mode_t mode)
{
	return (uint32_t)(mode & 07777 & ~fuse_req_ctx(req)->umask);
}

static void bsfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct bsfs *fs = fs_of(req);
	struct vol_attr a;
	int rc;

	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	vol_defer_begin();
	rc = vol_create(fs->v, parent, name, create_mode(req, mode), ctx->uid, ctx->gid, &a);
	if (rc == 0)
		rc = vol_open_file(fs->v, a.ino);
	fi->fh = wants_write(fi->flags) ? BSFS_FH_WRITE : 0;
	fi->keep_cache = 1;
	reply_held(req, rc, HELD_CREATE, &a, fi);
}

/* The reply of a create, once durable: the entry and the open file. */
static void finish_create(fuse_req_t req, const struct vol_attr *a, struct fuse_file_info *fi)
{
	struct bsfs *fs = fs_of(req);
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.attr_timeout = fs->timeout;
	e.entry_timeout = fs->entry_timeout;
	attr_to_stat(a, &e.attr);
	if (vol_remember(fs->v, a->ino) < 0) {
		vol_release(fs->v, a->ino);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fuse_reply_create(req, &e, fi) < 0) {
		forget_one(fs->v, a->ino);
		vol_release(fs->v, a->ino);
	}
}

static void bsfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       dev_t rdev)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vol_attr a;
	int rc;

	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	/* A regular file is an allocation; FIFOs, sockets and device nodes
	 * are records only (the kernel serves their opens itself). */
	vol_defer_begin();
	rc = vol_mknod(fs_of(req)->v, parent, name, (mode & S_IFMT) | create_mode(req, mode),
		       (uint32_t)rdev, ctx->uid, ctx->gid, &a);
	reply_held(req, rc, HELD_ENTRY, &a, NULL);
}

static void bsfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vol_attr a;
	int rc;

	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	vol_defer_begin();
	rc = vol_mkdir(fs_of(req)->v, parent, name, create_mode(req, mode), ctx->uid,
		       ctx->gid, &a);
	reply_held(req, rc, HELD_ENTRY, &a, NULL);
}

static void bsfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_unlink(fs_of(req)->v, parent, name));
}

static void bsfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_rmdir(fs_of(req)->v, parent, name));
}

static void bsfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	unsigned vflags = 0;
	int rc;

	if (bsfs_is_control(parent, name) || bsfs_is_control(newparent, newname)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);   /* RENAME_WHITEOUT: no overlays here */
		return;
	}
	if (flags & RENAME_NOREPLACE)
		vflags |= VOL_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		vflags |= VOL_RENAME_EXCHANGE;
	vol_defer_begin();
	rc = vol_rename(fs_of(req)->v, parent, name, newparent, newname, vflags);
	/* rename(2) reports an unsupported flag as EINVAL. */
	if ((flags & RENAME_EXCHANGE) && (rc == -ENOTSUP || rc == -EOPNOTSUPP || rc == -ENOSYS))
		rc = -EINVAL;
	reply_held_rc(req, rc);
}

static void bsfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		      const char *newname)
{
	struct vol_attr a;
	int rc;

	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (bsfs_is_control(newparent, newname)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	vol_defer_begin();
	rc = vol_link(fs_of(req)->v, ino, newparent, newname, &a);
	reply_held(req, rc, HELD_ENTRY, &a, NULL);
}

static void bsfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			 const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vol_attr a;
	int rc;

	if (bsfs_is_control(parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	vol_defer_begin();
	rc = vol_symlink(fs_of(req)->v, parent, name, link, ctx->uid, ctx->gid, &a);
	reply_held(req, rc, HELD_ENTRY, &a, NULL);
}

static void bsfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[VOL_SYMLINK_MAX + 1];
	ssize_t n;

	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = vol_readlink(fs_of(req)->v, ino, buf, sizeof buf - 1);
	if (n < 0) {
		reply_rc(req, n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void bsfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (bsfs_is_control_ino(ino)) {
		/* Reply from a copy: the reader may close, and RELEASE free the
		 * snapshot on another thread, as soon as the kernel has the
		 * data — before fuse_reply_buf() returns here. */
		const char *data;
		n = (ssize_t)bsfs_control_read((const struct bsfs_snapshot *)(uintptr_t)fi->fh,
					       (uint64_t)off, size, &data);
		memcpy(buf, data, (size_t)n);
	} else {
		n = vol_read(fs_of(req)->v, ino, buf, size, (uint64_t)off);
	}
	if (n < 0)
		reply_rc(req, n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void bsfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	ssize_t n = vol_write(fs_of(req)->v, ino, buf, size, (uint64_t)off);
	if (n < 0)
		reply_rc(req, n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void bsfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
			   off_t len, struct fuse_file_info *fi)
{
	(void)fi;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (mode != 0) {
		fuse_reply_err(req, EOPNOTSUPP);   /* no holes, no keep-size */
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_fallocate(fs_of(req)->v, ino, (uint64_t)off, (uint64_t)len));
}

/* An unlinked open file stays known to the volume until its last release;
 * only a failed device write can make it vanish earlier (vol_rename). */
static int ignore_gone(int rc)
{
	return rc == -ENOENT ? 0 : rc;
}

static void bsfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vol_defer_begin();
	int rc = 0;

	if (!bsfs_is_control_ino(ino) && (fi->fh & BSFS_FH_WRITE))
		rc = ignore_gone(vol_flush(fs_of(req)->v, ino));
	reply_held_rc(req, rc);
}

static void bsfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bsfs *fs = fs_of(req);
	int rc = 0;

	if (bsfs_is_control_ino(ino))
		bsfs_control_release((struct bsfs_snapshot *)(uintptr_t)fi->fh);
	else
		rc = ignore_gone(vol_release(fs->v, ino));
	reply_rc(req, rc);
}

static void bsfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		       struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_fsync(fs_of(req)->v, ino));
}

static void bsfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vol_statfs s;
	struct statvfs st;
	int rc;

	(void)ino;
	rc = vol_statfs(fs_of(req)->v, &s);
	if (rc < 0) {
		reply_rc(req, rc);
		return;
	}
	uint64_t bs = s.block_size ? s.block_size : 4096;
	memset(&st, 0, sizeof(st));
	st.f_bsize = bs;
	st.f_frsize = bs;
	st.f_blocks = s.total_bytes / bs;
	st.f_bfree = s.free_bytes / bs;
	st.f_bavail = st.f_bfree;
	st.f_files = s.files + s.files_free;
	st.f_ffree = s.files_free;
	st.f_favail = s.files_free;
	st.f_namemax = s.name_max;
	fuse_reply_statfs(req, &st);
}

/* Only reached without default_permissions: the classic owner/group/other
 * check, root passing everything but execute of a non-executable file. */
static int access_check(const struct stat *st, const struct fuse_ctx *ctx, int mask)
{
	mode_t m = st->st_mode;
	unsigned bits;

	if (mask == F_OK)
		return 0;
	if (ctx->uid == 0) {
		if ((mask & X_OK) && !S_ISDIR(m) && !(m & 0111))
			return -EACCES;
		return 0;
	}
	if (ctx->uid == st->st_uid)
		bits = (m >> 6) & 7;
	else if (ctx->gid == st->st_gid)
		bits = (m >> 3) & 7;
	else
		bits = m & 7;
	return ((unsigned)mask & ~bits) ? -EACCES : 0;
}

static void bsfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct vol_attr a;
	struct stat st;
	int rc;

	if (bsfs_is_control_ino(ino)) {
		rc = control_stat(fs_of(req), ino, &st);
	} else {
		rc = vol_getattr(fs_of(req)->v, ino, &a);
		if (rc == 0)
			attr_to_stat(&a, &st);
	}
	if (rc == 0)
		rc = access_check(&st, fuse_req_ctx(req), mask);
	reply_rc(req, rc);
}

/* Extended attributes (volume.h).  The kernel has checked the namespace
 * permissions (user. only on files and directories, trusted. for
 * CAP_SYS_ADMIN); the control files have none. */
/* -o noxattr: ENOSYS makes the kernel answer every later request of the
 * kind itself (EOPNOTSUPP), so `ls -l` costs no attribute round trips. */
static bool no_xattr(fuse_req_t req)
{
	if (!fs_of(req)->noxattr)
		return false;
	fuse_reply_err(req, ENOSYS);
	return true;
}

static void bsfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			  size_t size, int flags)
{
	if (no_xattr(req))
		return;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_setxattr(fs_of(req)->v, ino, name, value, size, flags));
}

static void reply_xattr_size(fuse_req_t req, ssize_t n, const char *buf, size_t size)
{
	if (n < 0)
		reply_rc(req, n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

/* The reply buffer of a getxattr/listxattr of `size` bytes (none for a
 * size query); false after replying ENOMEM. */
static bool xattr_buf(fuse_req_t req, size_t size, char **buf)
{
	*buf = NULL;
	if (size && !(*buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return false;
	}
	return true;
}

static void bsfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = NULL;
	ssize_t n;

	if (no_xattr(req))
		return;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (!xattr_buf(req, size, &buf))
		return;
	n = vol_getxattr(fs_of(req)->v, ino, name, buf, size);
	reply_xattr_size(req, n, buf, size);
	free(buf);
}

static void bsfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = NULL;
	ssize_t n;

	if (no_xattr(req))
		return;
	if (bsfs_is_control_ino(ino)) {
		reply_xattr_size(req, 0, NULL, size);
		return;
	}
	if (!xattr_buf(req, size, &buf))
		return;
	n = vol_listxattr(fs_of(req)->v, ino, buf, size);
	reply_xattr_size(req, n, buf, size);
	free(buf);
}

static void bsfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (no_xattr(req))
		return;
	if (bsfs_is_control_ino(ino)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	vol_defer_begin();
	reply_held_rc(req, vol_removexattr(fs_of(req)->v, ino, name));
}

const struct fuse_lowlevel_ops bsfs_ll_ops = {
	.init = bsfs_init,
	.lookup = bsfs_lookup,
	.forget = bsfs_forget,
	.forget_multi = bsfs_forget_multi,
	.getattr = bsfs_getattr,
	.setattr = bsfs_setattr,
	.readlink = bsfs_readlink,
	.mknod = bsfs_mknod,
	.mkdir = bsfs_mkdir,
	.unlink = bsfs_unlink,
	.rmdir = bsfs_rmdir,
	.symlink = bsfs_symlink,
	.rename = bsfs_rename,
	.link = bsfs_link,
	.open = bsfs_open,
	.read = bsfs_read,
	.write = bsfs_write,
	.flush = bsfs_flush,
	.release = bsfs_release,
	.fsync = bsfs_fsync,
	.opendir = bsfs_opendir,
	.readdir = bsfs_readdir,
	.readdirplus = bsfs_readdirplus,
	.releasedir = bsfs_releasedir,
	.fsyncdir = bsfs_fsyncdir,
	.statfs = bsfs_statfs,
	.access = bsfs_access,
	.create = bsfs_create,
	.fallocate = bsfs_fallocate,
	.setxattr = bsfs_setxattr,
	.getxattr = bsfs_getxattr,
	.listxattr = bsfs_listxattr,
	.removexattr = bsfs_removexattr,
};
