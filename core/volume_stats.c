/*
 * volume_stats.c — the volume's figures: statfs, the control file's text
 * (its keys are listed below and in the README), the counters, the
 * allocator check, and the read-only views the tools use (fsck, inspect).
 * Everything here reads under the volume's read lock.
 */
#include "volume_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

/* ---- figures --------------------------------------------------------------- */

struct sums {
	struct vol *v;
	uint64_t live, capacity, backing;
};

static int sum_one(void *ctx, struct cat_node *n)
{
	struct sums *s = ctx;
	if (cat_attr_of(n)->kind != CAT_FILE)
		return 0;
	s->live += cat_attr_of(n)->size;
	s->capacity += cat_attr_of(n)->alloc.len;
	s->backing += vol_backing_of(s->v, n);
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
		vol_op_lock(v);
		vol_drain(v);
		vol_op_unlock(v, 0, D_METADATA);
	}
	pthread_rwlock_rdlock(&v->lock);
	bs_alloc_stats(v->a, &st);
	if (v->path && statvfs(v->path, &hv) == 0)
		host = (uint64_t)hv.f_bavail * hv.f_frsize;
	memset(out, 0, sizeof *out);
	out->block_size = 4096;
	out->total_bytes = BSTACK_HEADER_SIZE + bstack_len(v->bs) + host;
	out->free_bytes = st.free_bytes + host;
	struct cat_info ci;
	cat_info(v->c, &ci);
	out->files = ci.files + ci.dirs;
	out->files_free = out->free_bytes / cat_record_bytes(v->c) + ci.free_places;
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
 *   symlinks                symbolic links
 *   special_files           FIFOs, sockets, character and block devices
 *   hardlinks               names beyond each inode's first (link(2))
 *   catalog_version         the catalog's format version (1 or 2)
 *   xattr_bytes             bytes of every inode's extended attributes (blobs)
 *   catalog_records         catalog records in use (inodes, extra names,
 *                           attribute records)
 *   catalog_compact         1: the compact layout (one copy per record, the
 *                           journal's), 0: paired (two slots per record)
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
 *   vnodes                  inodes with volume-side state (vnode.h): held by
 *                           the kernel, open, or not durable yet
 *   kernel_inodes           of which the kernel holds (lookups not forgotten)
 *   peak_live_bytes         the highest live_bytes since mount
 *   image_to_live_ratio     image_bytes / live_bytes, 4 decimals, 0 when no live bytes
 *   remote_frees            frees queued for the owner since mount
 *   free_queue_depth        of which still queued (pending: not in free_bytes)
 *   free_queue_bytes        their bytes
 *   free_queue_capacity     the queue's bound
 *   drain_threshold         the policy's current threshold
 *   drains                  batches drained (one bulk dealloc each)
 *   queue_full              pushes that found the queue full
 *   lookups                 name lookups that reached the volume
 *   read_requests           file reads that reached the volume
 *   xattr_requests          attribute reads (getxattr, listxattr) that reached it
 *   shared_writes           writes done under the shared lock (volume.c: write_shared)
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
	struct cat_info ci;
	cat_info(v->c, &ci);
	out->files = ci.files - ci.symlinks - ci.special;
	out->directories = ci.dirs;
	out->symlinks = ci.symlinks;
	out->special_files = ci.special;
	out->hardlinks = ci.links;
	out->catalog_version = ci.version;
	out->xattr_bytes = ci.xattr_bytes;
	out->catalog_records = cat_records(v->c);
	out->catalog_compact = ci.compact;
	out->catalog_bytes = ci.root.len;
	out->live_bytes = s.live;
	out->capacity_bytes = s.capacity;
	out->backing_bytes = s.backing;
	out->free_bytes = st->free_bytes;
	/* files removed while still open: their space is freed at the last
	 * close, and until then it is neither free nor any named file's */
	out->orphan_files = v->vt.n_orphans;
	for (struct vnode *o = v->vt.orphans; o; o = o->onext)
		out->orphan_bytes += vol_backing_of(v, o->orphan) +
				     vol_slice_backing(v, cat_xattr_blob(o->orphan));
	vt_counts(&v->vt, &out->vnodes, &out->kernel_inodes);
	out->image_bytes = BSTACK_HEADER_SIZE + bstack_len(v->bs);
	out->peak_live_bytes = v->live_peak > s.live ? v->live_peak : s.live;
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
	size_t cap = 4096 + 64 * BS_ALLOC_MAX_EXTRA, n = 0;
	char *t = malloc(cap);
	if (!t)
		return -ENOMEM;
	/* the figures of an applied image: what is pending goes first */
	bstack_flush(v->bs, 0);
	vol_sweep(v);
	pthread_rwlock_rdlock(&v->lock);
	summarise(v, &st, &s);
	if (bs_alloc_extent(v->a, cat_root(v->c), &cat_start, &cat_ext))
		cat_ext = cat_root(v->c).len;
	double frag = st.free_bytes ? 1.0 - (double)st.largest_free / (double)st.free_bytes : 0;
#define KV(k, val) n += (size_t)snprintf(t + n, cap - n, "%s %llu\n", k, \
					  (unsigned long long)(val))
	n += (size_t)snprintf(t + n, cap - n, "allocator %s\nmagic %s\n", s.allocator, s.magic);
	KV("image_bytes", BSTACK_HEADER_SIZE + bstack_len(v->bs));
	KV("payload_bytes", bstack_len(v->bs));
	KV("files", s.files);
	KV("directories", s.directories);
	KV("symlinks", s.symlinks);
	KV("special_files", s.special_files);
	KV("hardlinks", s.hardlinks);
	KV("catalog_version", s.catalog_version);
	KV("xattr_bytes", s.xattr_bytes);
	KV("catalog_records", s.catalog_records);
	KV("catalog_compact", s.catalog_compact);
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
	KV("vnodes", s.vnodes);
	KV("kernel_inodes", s.kernel_inodes);
	{
		struct bstack_journal_stats js;
		bstack_journal_stats(v->bs, &js);
		KV("journal_on", bstack_journaled(v->bs) ? 1 : 0);
		KV("journal_bytes", js.journal_bytes);
		KV("journal_used_bytes", js.journal_used_bytes);
		KV("commits", js.commits);
		KV("checkpoints", js.checkpoints);
		KV("replayed_commits", js.replayed_commits);
		KV("commit_interval_s", v->opts.commit_s);
	}
	KV("peak_live_bytes", s.peak_live_bytes);
	n += (size_t)snprintf(t + n, cap - n, "image_to_live_ratio %.4f\n",
			      s.live_bytes ? (double)s.image_bytes / (double)s.live_bytes : 0.0);
	struct bs_freeq_stats fs;
	bs_freeq_get_stats(v->fq, &fs);
	KV("remote_frees", fs.pushes);
	KV("free_queue_depth", fs.depth);
	KV("free_queue_bytes", fs.queued_bytes);
	KV("free_queue_capacity", fs.capacity);
	KV("drain_threshold", fs.threshold);
	KV("drains", fs.drains);
	KV("queue_full", fs.queue_full);
	KV("lookups", __atomic_load_n(&v->n_lookups, __ATOMIC_RELAXED));
	KV("read_requests", __atomic_load_n(&v->n_reads, __ATOMIC_RELAXED));
	KV("xattr_requests", __atomic_load_n(&v->n_xattr_reads, __ATOMIC_RELAXED));
	KV("shared_writes", __atomic_load_n(&v->n_shared_writes, __ATOMIC_RELAXED));
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
	struct cat_info ci;
	cat_info(v->c, &ci);
	out->catalog_rewrites = ci.rewrites;
	bs_freeq_get_stats(v->fq, &out->freeq);
	pthread_rwlock_unlock(&v->lock);
	return 0;
}

int vol_open_report(struct vol *v, struct vol_open_report *out)
{
	pthread_rwlock_rdlock(&v->lock);
	*out = v->rep;
	pthread_rwlock_unlock(&v->lock);
	return 0;
}

bool vol_damaged(struct vol *v)
{
	return v->damaged;
}

static void report_nothing(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

int vol_check(struct vol *v, bs_report_fn report, void *ctx)
{
	char msg[200];
	if (!report)
		report = report_nothing;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_held *held;
	size_t n_held;
	int r = vol_held(v, &held, &n_held);
	if (!r)
		r = bs_alloc_check(v->a, report, ctx);
	if (r >= 0 && cat_check_extents(v->c, held, n_held, msg, sizeof msg) == -EUCLEAN) {
		report(ctx, msg);
		r++;
	}
	free(held);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

/* ---- read-only views for tools ------------------------------------------- */

static void alloc_rec(struct vol *v, enum vol_alloc_what what, uint64_t ino,
		      struct bs_slice slice, uint64_t size, struct vol_alloc_rec *out)
{
	out->what = what;
	out->ino = ino;
	out->slice = slice;
	out->size = size;
	if (slice.len == 0 || bs_alloc_extent(v->a, slice, &out->ext_start, &out->ext_len)) {
		out->ext_start = slice.off;
		out->ext_len = slice.len;
	}
}

struct alloc_walk {
	struct vol *v;
	vol_alloc_fn fn;
	void *ctx;
};

static int alloc_walk_one(void *ctx, struct cat_node *n)
{
	struct alloc_walk *w = ctx;
	struct vol_alloc_rec rec;
	int r = 0;
	if (cat_kind_has_alloc(cat_attr_of(n)->kind) && cat_attr_of(n)->alloc.len) {
		const struct cat_attr *nr = cat_attr_of(n);
		alloc_rec(w->v, VOL_ALLOC_FILE, nr->ino, nr->alloc, nr->size, &rec);
		r = w->fn(w->ctx, &rec);
	}
	const struct cat_attr *x = cat_xattr_of(n);
	if (!r && x) {
		alloc_rec(w->v, VOL_ALLOC_XATTR, cat_attr_of(n)->ino, x->alloc, x->size,
			  &rec);
		r = w->fn(w->ctx, &rec);
	}
	return r;
}

int vol_foreach_alloc(struct vol *v, vol_alloc_fn fn, void *ctx)
{
	struct alloc_walk w = { v, fn, ctx };
	struct vol_alloc_rec rec;
	pthread_rwlock_rdlock(&v->lock);
	struct bs_slice root = cat_root(v->c);
	alloc_rec(v, VOL_ALLOC_CATALOG, 0, root, root.len, &rec);
	int r = fn(ctx, &rec);
	if (!r)
		r = cat_foreach(v->c, alloc_walk_one, &w);
	for (struct vnode *vn = v->vt.orphans; !r && vn; vn = vn->onext) {
		const struct cat_attr *or = cat_attr_of(vn->orphan), *x = cat_xattr_of(vn->orphan);
		if (or->alloc.len) {
			alloc_rec(v, VOL_ALLOC_ORPHAN, or->ino, or->alloc, or->size, &rec);
			r = fn(ctx, &rec);
		}
		if (!r && x) {
			alloc_rec(v, VOL_ALLOC_XATTR, or->ino, x->alloc, x->size, &rec);
			r = fn(ctx, &rec);
		}
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_alloc_of(struct vol *v, uint64_t ino, struct vol_alloc_rec *out)
{
	int r = 0;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = vol_node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (cat_attr_of(n)->kind == CAT_DIR)
		r = -EISDIR;
	else
		alloc_rec(v, cat_detached(n) ? VOL_ALLOC_ORPHAN : VOL_ALLOC_FILE, ino, cat_attr_of(n)->alloc,
			  cat_attr_of(n)->size, out);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

struct bs_alloc *vol_allocator(struct vol *v)
{
	return v->a;
}

