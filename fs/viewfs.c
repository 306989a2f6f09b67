/*
 * viewfs.c — the FUSE operations of `bstackfs -o view` (viewfs.h): a fixed
 * tree over the lists core/allocview.c built at open.  Nothing changes
 * while mounted (the image is held with a shared lock that no writer can
 * take alongside), so names, attributes and pages are cached for long.
 *
 * Node ids: 1 the root, 2 /allocations, 3 /free, 4 /reserved, 5 and 6 the
 * control files, then VIEW_INO_FIRST + i for allocation i and
 * VIEW_INO_FIRST + n_allocs + j for free block j.
 */
#include "viewfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "stats_json.h"
#include "volume.h"

#define VIEW_INO_ALLOCS  2
#define VIEW_INO_FREE    3
#define VIEW_INO_RESERVED 4
#define VIEW_INO_CTL     5
#define VIEW_INO_CTL_JSON 6
#define VIEW_INO_FIRST   16

#define VIEW_TIMEOUT_S 3600.0   /* nothing changes while mounted */
#define VIEW_IO_SIZE (1u << 20)

static struct bsfs_view *vw_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

int bsfs_view_open(struct bsfs_view *vw, const char *image, const char *path,
		   enum bs_alloc_kind want)
{
	char why[1400];
	struct stat st;
	memset(vw, 0, sizeof *vw);
	int r = av_open(path, want, &vw->av, why, sizeof why);
	if (r < 0) {
		fprintf(stderr, "bstackfs: %s: %s\n", image, why[0] ? why : strerror(-r));
		return r;
	}
	if (stat(path, &st) == 0) {
		vw->uid = st.st_uid;
		vw->gid = st.st_gid;
		vw->mtime = st.st_mtim;
	} else {
		vw->uid = getuid();
		vw->gid = getgid();
	}
	return 0;
}

void bsfs_view_close(struct bsfs_view *vw)
{
	av_close(vw->av);
	vw->av = NULL;
}

/* ---- the tree ------------------------------------------------------------ */

/* The block behind node id ino (an allocation or a free block); NULL for
 * any other. */
static const struct av_block *block_of(const struct av_view *av, uint64_t ino, bool *is_free)
{
	if (ino < VIEW_INO_FIRST)
		return NULL;
	uint64_t i = ino - VIEW_INO_FIRST;
	if (i < av->n_allocs) {
		*is_free = false;
		return &av->allocs[i];
	}
	i -= av->n_allocs;
	if (i < av->n_frees) {
		*is_free = true;
		return &av->frees[i];
	}
	return NULL;
}

static int snapshot(struct av_view *av, uint64_t ino, char **text, size_t *len)
{
	int r = av_stats_text(av, text, len);
	if (r < 0 || ino != VIEW_INO_CTL_JSON)
		return r;
	char *js;
	size_t jlen;
	r = bs_stats_json(*text, *len, &js, &jlen);
	free(*text);
	*text = r < 0 ? NULL : js;
	*len = r < 0 ? 0 : jlen;
	return r;
}

static int stat_of(struct bsfs_view *vw, uint64_t ino, struct stat *st)
{
	struct av_view *av = vw->av;
	const struct av_block *b;
	bool is_free;

	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = vw->uid;
	st->st_gid = vw->gid;
	st->st_atim = st->st_mtim = st->st_ctim = vw->mtime;
	st->st_blksize = VIEW_IO_SIZE;
	st->st_nlink = 1;
	st->st_mode = S_IFREG | 0444;
	switch (ino) {
	case FUSE_ROOT_ID:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 4;
		return 0;
	case VIEW_INO_ALLOCS:
	case VIEW_INO_FREE:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case VIEW_INO_RESERVED:
		st->st_size = (off_t)av->reserved_bytes;
		break;
	case VIEW_INO_CTL:
	case VIEW_INO_CTL_JSON: {
		char *text;
		size_t len;
		int r = snapshot(av, ino, &text, &len);
		if (r < 0)
			return r;
		free(text);
		st->st_size = (off_t)len;
		return 0;
	}
	default:
		if (!(b = block_of(av, ino, &is_free)))
			return -ENOENT;
		st->st_size = (off_t)b->len;
	}
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	return 0;
}

/* The index of the block named `name` in a sorted list, or -1. */
static long find_block(const struct av_block *v, size_t n, const char *name)
{
	struct av_block want;
	if (!av_parse_name(name, &want))
		return -1;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].off < want.off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].off == want.off && v[lo].len == want.len ? (long)lo : -1;
}

static uint64_t lookup_ino(struct av_view *av, uint64_t parent, const char *name)
{
	long i;
	if (parent == FUSE_ROOT_ID) {
		if (strcmp(name, "allocations") == 0)
			return VIEW_INO_ALLOCS;
		if (strcmp(name, "free") == 0)
			return VIEW_INO_FREE;
		if (strcmp(name, "reserved") == 0)
			return VIEW_INO_RESERVED;
		if (strcmp(name, VOL_CONTROL_NAME) == 0)
			return VIEW_INO_CTL;
		if (strcmp(name, VOL_CONTROL_JSON_NAME) == 0)
			return VIEW_INO_CTL_JSON;
		return 0;
	}
	if (parent == VIEW_INO_ALLOCS && (i = find_block(av->allocs, av->n_allocs, name)) >= 0)
		return VIEW_INO_FIRST + (uint64_t)i;
	if (parent == VIEW_INO_FREE && (i = find_block(av->frees, av->n_frees, name)) >= 0)
		return VIEW_INO_FIRST + av->n_allocs + (uint64_t)i;
	return 0;
}

/* ---- operations ---------------------------------------------------------- */

static void view_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->max_readahead < VIEW_IO_SIZE)
		conn->max_readahead = VIEW_IO_SIZE;
}

static void view_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bsfs_view *vw = vw_of(req);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	e.attr_timeout = e.entry_timeout = VIEW_TIMEOUT_S;
	uint64_t ino = lookup_ino(vw->av, parent, name);
	if (!ino) {
		/* a negative entry: the name stays missing (nothing changes) */
		fuse_reply_entry(req, &e);
		return;
	}
	int r = stat_of(vw, ino, &e.attr);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	e.ino = ino;
	fuse_reply_entry(req, &e);
}

static void view_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	int r = stat_of(vw_of(req), ino, &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, VIEW_TIMEOUT_S);
}

struct dfill {
	fuse_req_t req;
	char *buf;
	size_t size, used;
};

static bool dadd(struct dfill *d, const char *name, uint64_t ino, mode_t mode, off_t next)
{
	struct stat st;
	memset(&st, 0, sizeof st);
	st.st_ino = ino;
	st.st_mode = mode;
	size_t room = d->size - d->used;
	size_t n = fuse_add_direntry(d->req, d->buf + d->used, room, name, &st, next);
	if (n > room)
		return false;
	d->used += n;
	return true;
}

/* Offsets: 1 after ".", 2 after "..", then 3 + the entry's index. */
static void view_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	static const struct { const char *name; uint64_t ino; mode_t mode; } root[] = {
		{ "allocations", VIEW_INO_ALLOCS, S_IFDIR },
		{ "free", VIEW_INO_FREE, S_IFDIR },
		{ "reserved", VIEW_INO_RESERVED, S_IFREG },
		{ VOL_CONTROL_NAME, VIEW_INO_CTL, S_IFREG },
		{ VOL_CONTROL_JSON_NAME, VIEW_INO_CTL_JSON, S_IFREG },
	};
	struct av_view *av = vw_of(req)->av;
	struct dfill d = { req, NULL, size, 0 };
	const struct av_block *list = NULL;
	size_t n, base = 0;
	(void)fi;

	if (ino == FUSE_ROOT_ID) {
		n = sizeof root / sizeof root[0];
	} else if (ino == VIEW_INO_ALLOCS) {
		list = av->allocs;
		n = av->n_allocs;
	} else if (ino == VIEW_INO_FREE) {
		list = av->frees;
		n = av->n_frees;
		base = av->n_allocs;
	} else {
		fuse_reply_err(req, ino == VIEW_INO_RESERVED || ino == VIEW_INO_CTL ||
			       ino == VIEW_INO_CTL_JSON || ino >= VIEW_INO_FIRST ? ENOTDIR : ENOENT);
		return;
	}
	if (!(d.buf = malloc(size ? size : 1))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off < 1 && !dadd(&d, ".", ino, S_IFDIR, 1))
		goto out;
	if (off < 2 && !dadd(&d, "..", FUSE_ROOT_ID, S_IFDIR, 2))
		goto out;
	for (size_t i = off > 2 ? (size_t)off - 2 : 0; i < n; i++) {
		char name[AV_NAME_MAX];
		if (!list) {
			if (!dadd(&d, root[i].name, root[i].ino, root[i].mode, (off_t)(i + 3)))
				break;
			continue;
		}
		av_name(&list[i], name);
		if (!dadd(&d, name, VIEW_INO_FIRST + base + i, S_IFREG, (off_t)(i + 3)))
			break;
	}
out:
	fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void view_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bsfs_view *vw = vw_of(req);
	struct stat st;
	int r;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((r = stat_of(vw, ino, &st)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->fh = 0;
	if (ino == VIEW_INO_CTL || ino == VIEW_INO_CTL_JSON) {
		/* one snapshot per open, like a normal mount's control file */
		struct { char *text; size_t len; } *s = calloc(1, sizeof *s);
		if (!s || (r = snapshot(vw->av, ino, &s->text, &s->len)) < 0) {
			free(s);
			fuse_reply_err(req, s ? -r : ENOMEM);
			return;
		}
		fi->fh = (uint64_t)(uintptr_t)s;
		fi->direct_io = 1;   /* its size is the snapshot's, not the attr's */
	} else {
		fi->keep_cache = 1;   /* the bytes never change while mounted */
	}
	fuse_reply_open(req, fi);
}

static void view_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct av_view *av = vw_of(req)->av;
	const struct av_block *b;
	struct av_block whole;
	bool is_free;

	if (fi->fh) {
		/* Reply from a copy: the reader may close, and RELEASE free the
		 * snapshot on another thread, as soon as the kernel has the data
		 * — before fuse_reply_buf() returns here (as in ops.c). */
		const struct { char *text; size_t len; } *s = (const void *)(uintptr_t)fi->fh;
		size_t o = (size_t)off < s->len ? (size_t)off : s->len;
		size_t k = s->len - o < size ? s->len - o : size;
		char *copy = malloc(k ? k : 1);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(copy, s->text + o, k);
		fuse_reply_buf(req, copy, k);
		free(copy);
		return;
	}
	if (ino == VIEW_INO_RESERVED) {
		whole = (struct av_block){ 0, av->reserved_bytes };
		b = &whole;
	} else if (!(b = block_of(av, ino, &is_free))) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (off < 0 || (uint64_t)off >= b->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	uint64_t k = b->len - (uint64_t)off < size ? b->len - (uint64_t)off : size;
	char *buf = malloc(k ? k : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int r = av_read(av, b->off + (uint64_t)off, buf, k);
	if (r < 0)
		fuse_reply_err(req, r == -ERANGE ? EIO : -r);
	else
		fuse_reply_buf(req, buf, k);
	free(buf);
}

static void view_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (fi->fh) {
		struct { char *text; size_t len; } *s = (void *)(uintptr_t)fi->fh;
		free(s->text);
		free(s);
	}
	fuse_reply_err(req, 0);
}

static void view_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct av_view *av = vw_of(req)->av;
	struct statvfs st;
	(void)ino;
	memset(&st, 0, sizeof st);
	st.f_bsize = st.f_frsize = 4096;
	st.f_blocks = (av->image_bytes + 4095) / 4096;
	st.f_bfree = st.f_bavail = av->free_bytes / 4096;
	st.f_files = 5 + av->n_allocs + av->n_frees;
	st.f_namemax = VOL_NAME_MAX;
	st.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

/* Every change: the view is read-only (the kernel mount is too). */
static void rofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EROFS);
}

static void rofs_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{
	(void)m;
	rofs_entry(req, p, n);
}

static void rofs_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
	(void)m;
	(void)d;
	rofs_entry(req, p, n);
}

static void rofs_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m,
			struct fuse_file_info *fi)
{
	(void)m;
	(void)fi;
	rofs_entry(req, p, n);
}

static void rofs_symlink(fuse_req_t req, const char *link, fuse_ino_t p, const char *n)
{
	(void)link;
	rofs_entry(req, p, n);
}

static void rofs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t p, const char *n)
{
	(void)ino;
	rofs_entry(req, p, n);
}

static void rofs_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np,
			const char *nn, unsigned flags)
{
	(void)np;
	(void)nn;
	(void)flags;
	rofs_entry(req, p, n);
}

static void rofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	(void)ino;
	(void)attr;
	(void)to_set;
	(void)fi;
	fuse_reply_err(req, EROFS);
}

static void rofs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	(void)buf;
	(void)size;
	(void)off;
	(void)fi;
	fuse_reply_err(req, EROFS);
}

static void rofs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			   struct fuse_file_info *fi)
{
	(void)ino;
	(void)mode;
	(void)off;
	(void)len;
	(void)fi;
	fuse_reply_err(req, EROFS);
}

static void rofs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			  const char *value, size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, EROFS);
}

static void rofs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops bsfs_view_ops = {
	.init = view_init,
	.lookup = view_lookup,
	.getattr = view_getattr,
	.readdir = view_readdir,
	.open = view_open,
	.read = view_read,
	.release = view_release,
	.statfs = view_statfs,
	.mkdir = rofs_mkdir,
	.mknod = rofs_mknod,
	.create = rofs_create,
	.symlink = rofs_symlink,
	.link = rofs_link,
	.unlink = rofs_entry,
	.rmdir = rofs_entry,
	.rename = rofs_rename,
	.setattr = rofs_setattr,
	.write = rofs_write,
	.fallocate = rofs_fallocate,
	.setxattr = rofs_setxattr,
	.removexattr = rofs_removexattr,
};
