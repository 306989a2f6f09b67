/*
 * volume.c — named files and directories over any allocator (docs/design.md
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
 * sync is never under it: op_unlock() releases it first, then waits for
 * the flush, so operations arriving together share one sync (group
 * commit).  Lock order, outermost first:
 *   v->lock -> (bstack) txn_mu -> flush_mu -> bs->lock -> the allocator's
 *   and the free queue's own locks;
 *   cm_mu (the committer's wake-up) is never held while taking another:
 *   the committer drops it before op_lock();
 *   a flush (bstack_flush) takes flush_mu with no volume lock held.
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

struct vol {
	pthread_rwlock_t lock;
	/* the committer thread (commit=N, idle checkpoints) */
	pthread_t committer;
	bool committer_on, stop;
	pthread_mutex_t cm_mu;
	pthread_cond_t cm_cv;
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
	/* requests that reached the volume (atomics): what the kernel's
	 * dentry and page caches did not answer */
	uint64_t n_lookups, n_reads, n_xattr_reads;
};

/* File n's size goes from old to new (orphans are no named file's). */
static void live_change(struct vol *v, const struct cat_node *n, uint64_t old, uint64_t new)
{
	if (n->orphan || n->r.kind != CAT_FILE || old == new)
		return;
	v->live_now = v->live_now - old + new;
	if (v->live_now > v->live_peak)
		v->live_peak = v->live_now;
}

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
	return parent == VOL_ROOT_INO && (strcmp(name, VOL_CONTROL_NAME) == 0 ||
					  strcmp(name, VOL_CONTROL_JSON_NAME) == 0);
}

/* ---- open / format / mount ------------------------------------------------ */

static void committer_stop(struct vol *v);
static int committer_start(struct vol *v);

static void vol_free(struct vol *v)
{
	committer_stop(v);
	/* before the allocator it drains into; a drain is a transaction of
	 * its own (the allocator's lock is taken inside the journal's) */
	if (v->fq && v->bs && bs_freeq_depth(v->fq)) {
		uint64_t seq = 0;
		bstack_txn_begin(v->bs);
		bs_freeq_close(v->fq, NULL);
		if (!bstack_txn_end(v->bs, &seq) && seq)
			bstack_flush(v->bs, seq);
	}
	bs_freeq_free(v->fq);
	cat_free(v->c);
	bs_alloc_close(v->a);
	bstack_close(v->bs);
	free(v->path);
	free(v->jpath);
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
	if (n->r.kind == CAT_FILE && n->r.alloc.len > n->r.size) {
		v->rep.files_trimmed++;
		return commit(v, n, true);
	}
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

/* ---- the two-phase open ------------------------------------------------------
 *
 * Nothing is written to an image that is refused (docs/design.md §7): the
 * open runs on a staging device (io_stage.c) that holds every write in
 * memory.  Phase 1 reads and verifies — the header against the file, the
 * catalog, the allocator with its open-time recovery applied *in the
 * stage*, the allocator's invariant check, the catalog's extents against
 * it — and performs the mount-time work (reclaim, catalog repair, trim)
 * on the stage.  Phase 2, only when everything was accepted, commits the
 * stage: the writes reach the image in their original order, each sync a
 * real one, so the crash invariants of every layer hold for the replay
 * too.  With opts.no_write the stage is never committed (fsck -n): the
 * volume reads its own staged repairs and the image keeps every byte.
 */

static void pending_mark(struct vol *v, uint64_t *mark)
{
	*mark = bs_io_stage_pending(bstack_io(v->bs));
}

static uint64_t pending_since(struct vol *v, uint64_t mark)
{
	return bs_io_stage_pending(bstack_io(v->bs)) - mark;
}

/* A record pair with a slot that failed its checksum: which inode fell
 * back to which version (guarantee 5: reported, not silent). */
struct fb_ctx {
	struct vol *v;
	const struct cat_node *found;
};

static int fb_one(void *ctx, struct cat_node *n)
{
	struct fb_ctx *f = ctx;
	if ((int64_t)n->pair == f->v->c->torn_pair) {
		f->found = n;
		return 1;
	}
	return 0;
}

static void note_fallback(struct vol *v)
{
	struct catalog *c = v->c;
	struct fb_ctx f = { v, NULL };
	if (c->torn_pair < 0)
		return;
	cat_foreach(c, fb_one, &f);
	if (!f.found && c->losers && (int64_t)c->losers->pair == c->torn_pair)
		f.found = c->losers;
	if (f.found)
		snprintf(v->rep.fallback, sizeof v->rep.fallback,
			 "catalog record pair %lld: slot %c fails its checksum; inode %llu "
			 "(\"%.64s\") uses its other version (seq %llu)",
			 (long long)c->torn_pair, 'A' + c->torn_slot,
			 (unsigned long long)f.found->r.ino, f.found->r.name,
			 (unsigned long long)f.found->r.seq);
	else
		snprintf(v->rep.fallback, sizeof v->rep.fallback,
			 "catalog record pair %lld: slot %c fails its checksum; the pair holds "
			 "no live inode (its other version is a removal or empty)",
			 (long long)c->torn_pair, 'A' + c->torn_slot);
}

struct first_violation {
	char msg[160];
	int n;
};

static void keep_first(void *ctx, const char *msg)
{
	struct first_violation *f = ctx;
	if (f->n++ == 0)
		snprintf(f->msg, sizeof f->msg, "%s", msg);
}

static int rebuild_alloc(struct vol *v, enum bs_alloc_kind kind, struct vol_error *err);

/* Open the allocator (its open-time recovery goes to the stage) and verify
 * it before the volume is writable: an image whose allocator fails its
 * check is refused, or with opts.repair rebuilt from the catalog. */
static int open_alloc(struct vol *v, enum bs_alloc_kind kind, struct vol_error *err)
{
	struct first_violation fv = { "", 0 };
	uint64_t mark;
	int r;
	pending_mark(v, &mark);
	if ((r = bs_alloc_open(v->bs, kind, &v->a))) {
		if (r == -EUCLEAN && v->opts.repair && v->c)
			return rebuild_alloc(v, kind, err);
		seterr(err, r == -ENOTSUP ? "allocator %s is not built in" :
		       "the %s allocator refuses the image: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	uint64_t wrote = pending_since(v, mark);
	/* only FirstFit has a crash recovery of its own (its stats say
	 * whether it ran); the others' stats walk their free space */
	struct bs_alloc_stats st;
	if (kind == BS_ALLOC_FIRSTFIT)
		bs_alloc_stats(v->a, &st);
	for (int i = 0; kind == BS_ALLOC_FIRSTFIT && i < st.n_extra; i++)
		if (strcmp(st.extra[i].key, "recovery_runs") == 0 && st.extra[i].value)
			v->rep.alloc_recovered = true;
	if (!v->rep.alloc_recovered)
		v->rep.alloc_maintenance_writes = wrote;
	if ((r = bs_alloc_check(v->a, keep_first, &fv)) < 0) {
		seterr(err, "cannot check the %s allocator: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	v->rep.alloc_violations = r;
	if (r == 0)
		return 0;
	if (v->opts.repair && v->c)
		return rebuild_alloc(v, kind, err);
	if (v->opts.allow_damaged) {
		v->damaged = true;
		return 0;
	}
	seterr(err, "the %s allocator's metadata is damaged (%d violation%s, first: %s); "
	       "bstackfs-fsck -y rebuilds it from the catalog", bs_alloc_kind_name(kind), r,
	       r == 1 ? "" : "s", fv.msg);
	return -EUCLEAN;
}

/* fsck -y: the catalog (loaded and verified on its own) names every live
 * allocation, so everything else is free: rebuild the allocator's metadata
 * from it, then check again. */
static int rebuild_alloc(struct vol *v, enum bs_alloc_kind kind, struct vol_error *err)
{
	struct first_violation fv = { "", 0 };
	struct bs_slice *live;
	size_t n;
	int r;
	bs_alloc_close(v->a);
	v->a = NULL;
	if ((r = cat_live_slices(v->c, &live, &n)))
		return r;
	r = bs_alloc_rebuild(v->bs, kind, live, n, &v->a);
	free(live);
	if (r) {
		seterr(err, "the %s allocator's metadata is damaged and cannot be rebuilt from "
		       "the catalog: %s", bs_alloc_kind_name(kind), strerror(-r));
		return r;
	}
	if ((r = bs_alloc_check(v->a, keep_first, &fv)) != 0) {
		seterr(err, "the rebuilt %s allocator still fails its check%s%s",
		       bs_alloc_kind_name(kind), r > 0 ? ": " : "", r > 0 ? fv.msg : "");
		return r > 0 ? -EUCLEAN : r;
	}
	v->rep.alloc_rebuilt = true;
	return 0;
}

/* The file is longer than the header's length: the recovery would cut it
 * back (a grow that lost its length update).  Legitimately the cut bytes
 * are never referenced by a catalog record (the record is written only
 * after the grow is durable), so a catalog that references them means the
 * length field is damaged: refuse, or with opts.repair restore the length
 * from the file. */
static int check_length(struct vol *v, const struct bstack_found *f, struct vol_error *err)
{
	uint8_t ref[CAT_ROOT_REF_SIZE];
	struct catalog *c = NULL;
	struct bs_slice *live = NULL;
	size_t n = 0;
	char msg[200];
	uint64_t end = 0;
	if (f->payload <= f->clen || f->payload < CAT_ROOT_REF_SIZE ||
	    bstack_get(v->bs, 0, ref, sizeof ref))
		return 0;
	struct bs_slice root = cat_root_decode(ref);
	if (ref_is_zero(ref) || cat_root_formatting(root))
		return 0;
	/* A catalog that does not load tells nothing here; the open goes on
	 * with the recovery and judges the image as usual. */
	if (cat_load(v->bs, root, &c, msg, sizeof msg) || cat_live_slices(c, &live, &n)) {
		cat_free(c);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (live[i].off + live[i].len > end)
			end = live[i].off + live[i].len;
	free(live);
	cat_free(c);
	if (end <= f->clen)
		return 0;
	if (!v->opts.repair) {
		seterr(err, "the header's length (%llu bytes) is shorter than the catalog's "
		       "allocations (up to %llu of the file's %llu payload bytes): recovery would "
		       "drop file data; bstackfs-fsck -y restores the length",
		       (unsigned long long)f->clen, (unsigned long long)end,
		       (unsigned long long)f->payload);
		return -EUCLEAN;
	}
	int r = bstack_restore_len(v->bs);
	if (r) {
		seterr(err, "cannot restore the header's length: %s", strerror(-r));
		return r;
	}
	v->rep.len_restored = true;
	return 0;
}

/* No allocator magic, but one of them damaged (a tag letter off, the
 * version bytes right) where it belongs: not a Linear image.  A Linear
 * image made by bstackfs holds its catalog's first allocation at 16, and
 * catalog bytes never look like this. */
static int magic_damaged(struct vol *v, struct vol_error *err)
{
	static const struct { uint64_t off; const char *tag, *name; } tags[] = {
		{ 16, "ALFF", "firstfit" }, { 24, "ALSL", "slab" }, { 32, "ALGT", "ghost" },
	};
	for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
		uint8_t m[8];
		int same = 0;
		if (!range_ok(tags[i].off, 8, bstack_len(v->bs)) ||
		    bstack_get(v->bs, tags[i].off, m, 8))
			continue;
		for (int k = 0; k < 4; k++)
			same += m[k] == (uint8_t)tags[i].tag[k];
		if (same >= 2 && m[4] == 0 && m[5] == 1) {
			seterr(err, "the allocator magic at payload %llu is damaged (it looks like "
			       "%s's, \"%.4s\")", (unsigned long long)tags[i].off, tags[i].name,
			       tags[i].tag);
			return -EUCLEAN;
		}
	}
	return 0;
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
	} else if (kind == BS_ALLOC_NONE && (r = magic_damaged(v, err))) {
		return r;
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
	if (v->c)
		note_fallback(v);
	if ((r = open_alloc(v, kind, err)))
		return r;
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
	r = cat_attach(v->c, v->a, msg, sizeof msg);
	if (v->damaged && r == -EUCLEAN)
		r = 0;   /* vol_check reports it with the allocator's violations */
	if (r) {
		seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
		return r;
	}
	if (v->damaged)
		return 0;   /* nothing is repaired on a damaged allocator */
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
	v->ctr.leaked_bytes_reclaimed = v->rep.leaked_bytes_reclaimed = got;
	v->rep.catalog_repaired = v->c->torn_pair >= 0 || v->c->losers;
	if ((r = cat_repair(v->c)) || (r = trim_all(v))) {
		seterr(err, "cannot repair the catalog: %s", strerror(-r));
		return r;
	}
	/* The catalog's layout follows the journal (compact with it, paired
	 * without: compact records are written only inside transactions).
	 * fsck (allow_damaged, repair) writes nothing it does not have to. */
	if (!v->opts.no_write && !v->opts.repair && !v->opts.allow_damaged &&
	    (r = cat_fit_layout(v->c)))
		seterr(err, "cannot rewrite the catalog: %s", strerror(-r));
	return r;
}

/* A fresh (empty) backend: formatted directly, there is nothing to keep. */
/* The mount's own work (format, the seed's open-time recovery, reclaim,
 * repair, trim) is one transaction of the journal; a refusal undoes it. */
static int mount_txn_end(struct vol *v, int r, struct vol_error *err)
{
	uint64_t seq = 0;
	if (r) {
		bstack_txn_abort(v->bs);
		return r;
	}
	if ((r = bstack_txn_end(v->bs, &seq)) || (r = bstack_flush(v->bs, seq)))
		seterr(err, "cannot write the image: %s", strerror(-r));
	return r;
}

static int open_new(struct vol *v, struct bs_io *io, struct bs_io *jio,
		    struct vol_error *err)
{
	int r;
	if (v->opts.no_write) {
		bs_io_close(io);
		bs_io_close(jio);
		seterr(err, "%s", bstack_strerror(BSTACK_E_SHORT));
		return BSTACK_E_SHORT;
	}
	if ((r = bstack_create_journal(io, jio, v->opts.journal_bytes, &v->bs))) {
		seterr(err, "%s", bstack_strerror(r));
		v->bs = NULL;
		return r;
	}
	bstack_txn_begin(v->bs);
	return mount_txn_end(v, format(v, err), err);
}

/* An existing image: the two phases described above. */
static int open_staged(struct vol *v, struct bs_io *io, struct bs_io *jio,
		       bool may_format, struct vol_error *err)
{
	struct bstack_found found;
	struct bs_io *sio;
	int r = bs_io_stage_new(io, &sio);
	if (r) {
		bs_io_close(jio);
		seterr(err, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if ((r = bstack_open_found(sio, &v->bs, &found))) {
		bs_io_close(jio);
		seterr(err, "%s", bstack_strerror(r));
		v->bs = NULL;
		return r;
	}
	if (jio && (r = bstack_attach_journal(v->bs, jio, v->opts.journal_bytes))) {
		seterr(err, "cannot use the journal: %s", strerror(-r));
		return r;
	}
	if (found.live) {
		/* a crash left the journal live: its replay is the recovery
		 * (into the stage, like every other open-time write) */
		if (!bstack_journaled(v->bs)) {
			seterr(err, "the image needs journal recovery: mount it with its journal "
			       "(IMAGE-journal), not with journal=off");
			return BSTACK_E_LIVE;
		}
		if ((r = bstack_recover(v->bs))) {
			seterr(err, "cannot replay the journal: %s", bstack_strerror(r));
			return r;
		}
		v->rep.len_recovered = true;
	} else if ((r = check_length(v, &found, err))) {
		return r;
	}
	/* a check that writes nothing goes on without the journal: what it
	 * would write stays in the stage */
	if (v->opts.no_write)
		bstack_detach_journal(v->bs);
	if (!found.live && !v->rep.len_restored) {
		v->rep.len_recovered = found.payload != found.clen;
		if ((r = bstack_recover(v->bs))) {
			seterr(err, "cannot recover the header's length: %s", strerror(-r));
			return r;
		}
	}
	bstack_txn_begin(v->bs);
	if (bstack_len(v->bs) == 0 && may_format && !v->opts.no_write)
		r = format(v, err);
	else if (bstack_len(v->bs) == 0)
		seterr(err, "not a bstackfs image (empty payload)"), r = -EUCLEAN;
	else
		r = mount_existing(v, err);
	if ((r = mount_txn_end(v, r, err)))
		return r;
	v->rep.writes = bs_io_stage_pending(sio);
	if (!v->opts.no_write && !v->damaged && (r = bs_io_stage_commit(sio)))
		seterr(err, "cannot write the open-time recovery: %s", strerror(-r));
	return r;
}

static int add_size(void *ctx, struct cat_node *n)
{
	if (n->r.kind == CAT_FILE)
		*(uint64_t *)ctx += n->r.size;
	return 0;
}

/* peak_live_bytes counts from mount: start at what the image holds. */
static void live_init(struct vol *v)
{
	v->live_now = 0;
	cat_foreach(v->c, add_size, &v->live_now);
	v->live_peak = v->live_now;
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
		bs_io_close(opts->journal_io);
		seterr(err, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if (size == 0 && !may_format) {
		bs_io_close(io);
		bs_io_close(opts->journal_io);
		seterr(err, "%s", bstack_strerror(BSTACK_E_SHORT));
		return BSTACK_E_SHORT;
	}
	if (size == 0 && (r = new_image_opts_ok(opts, err))) {
		bs_io_close(io);
		bs_io_close(opts->journal_io);
		return r;
	}
	if (!(v = calloc(1, sizeof *v)) || pthread_rwlock_init(&v->lock, NULL)) {
		free(v);
		bs_io_close(io);
		bs_io_close(opts->journal_io);
		return -ENOMEM;
	}
	v->opts = *opts;
	v->opts.journal_io = NULL;   /* open_new / open_staged take it */
	pthread_mutex_init(&v->cm_mu, NULL);
	pthread_cond_init(&v->cm_cv, NULL);
	r = size == 0 ? open_new(v, io, opts->journal_io, err)
		      : open_staged(v, io, opts->journal_io, may_format, err);
	if (!r && !opts->defer_threads && (r = committer_start(v)))
		seterr(err, "cannot start the committer: %s", strerror(-r));
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
	live_init(v);
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
	struct bs_io *io, *jio = NULL;
	struct vol_opts o = opts ? *opts : (struct vol_opts){ 0 };
	int created = 0, jcreated = 0;
	char *jpath = NULL;
	int flags = o.rdonly_file ? BS_IO_RDONLY : o.create ? BS_IO_CREATE : 0;
	int r = bs_io_file_open(path, flags, &io, &created);
	if (r) {
		seterr(err, "cannot open: %s", strerror(-r));
		return r;
	}
	if (o.journal) {
		/* the journal lives beside the image (README: why) */
		if (asprintf(&jpath, "%s-journal", path) < 0) {
			bs_io_close(io);
			return -ENOMEM;
		}
		/* read-only: the journal is only read (for a replay in memory),
		 * and only if it is there */
		r = bs_io_file_open(jpath, o.rdonly_file ? BS_IO_RDONLY : BS_IO_CREATE, &jio,
				    &jcreated);
		if (r == -ENOENT && o.rdonly_file) {
			r = 0;
			jio = NULL;
			free(jpath);
			jpath = NULL;
		}
		if (r) {
			seterr(err, "cannot open the journal %s: %s", jpath, strerror(-r));
			bs_io_close(io);
			if (created)
				unlink(path);
			free(jpath);
			return r;
		}
	}
	o.journal_io = jio;
	r = open_io(io, &o, created, out, err);
	if (r) {
		if (created)
			unlink(path);   /* do not leave a half-made image behind */
		if (jcreated)
			unlink(jpath);
		free(jpath);
		return r;
	}
	(*out)->path = strdup(path);
	(*out)->jpath = jpath;
	struct stat jst;
	if (jpath && stat(jpath, &jst) == 0) {
		(*out)->jdev = jst.st_dev;
		(*out)->jino = jst.st_ino;
	}
	return 0;
}

/* ---- attributes ------------------------------------------------------------ */

static uint64_t backing_of(struct vol *v, const struct cat_node *n)
{
	uint64_t start, len;
	if (!cat_kind_has_alloc(n->r.kind) || n->r.alloc.len == 0 ||
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
	a->nlink = n->r.kind == CAT_DIR ? (uint32_t)(2 + n->nsubdirs) : cat_nlink(n);
	a->rdev = n->r.rdev;
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

/* ---- the transaction boundary (docs/design.md §5) -------------------------
 *
 * Every operation that changes the volume runs as one transaction of the
 * file layer: op_lock() takes the volume lock and begins it, op_unlock()
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
enum durability { D_NONE, D_METADATA, D_CLOSE, D_ALWAYS };

static void op_lock(struct vol *v)
{
	pthread_rwlock_wrlock(&v->lock);
	bstack_txn_begin(v->bs);
}

static int op_unlock(struct vol *v, int r, enum durability d)
{
	uint64_t seq = 0;
	int e = bstack_txn_end(v->bs, &seq);
	pthread_rwlock_unlock(&v->lock);
	__atomic_store_n(&v->last_op_ns, now_ns(), __ATOMIC_RELAXED);
	if (!r)
		r = e;
	/* D_ALWAYS flushes whatever is pending (earlier writes' data too) */
	bool all = d == D_ALWAYS || (d == D_CLOSE && v->opts.commit_s == 0);
	if (all || (seq && d >= D_METADATA && v->opts.commit_s == 0)) {
		int f = bstack_flush(v->bs, all ? 0 : seq);
		if (!r)
			r = f;
	}
	return r;
}

/* ---- the committer thread ---------------------------------------------------
 *
 * With commit=N it flushes at most N seconds after an operation; with a
 * journal it also checkpoints once the volume has been idle for
 * idle_checkpoint_s seconds, so an idle image is a plain bstack image that
 * other programs can open after a crash.  Neither runs without a journal.
 */
static int give_back_tail(struct vol *v, uint64_t *freed);
static void vol_drain(struct vol *v);

static void *committer_main(void *arg)
{
	struct vol *v = arg;
	int64_t last_flush = now_ns();
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
		int64_t now = now_ns();
		int64_t last_op = __atomic_load_n(&v->last_op_ns, __ATOMIC_RELAXED);
		if (v->opts.commit_s && now - last_flush >= (int64_t)v->opts.commit_s * 1000000000LL) {
			bstack_flush(v->bs, 0);
			last_flush = now;
		}
		if (v->opts.idle_checkpoint_s && last_op &&
		    now - last_op >= (int64_t)v->opts.idle_checkpoint_s * 1000000000LL) {
			struct bstack_journal_stats st;
			bstack_journal_stats(v->bs, &st);
			if (st.journal_used_bytes || v->opts.commit_s) {
				/* queued frees are drained and free tail space
				 * goes back at every checkpoint */
				op_lock(v);
				vol_drain(v);
				int r = give_back_tail(v, NULL);
				op_unlock(v, r, D_ALWAYS);
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
	return v->committer_on ? 0 : committer_start(v);
}

static int committer_start(struct vol *v)
{
	if (!bstack_journaled(v->bs) || (!v->opts.commit_s && !v->opts.idle_checkpoint_s))
		return 0;
	int e = pthread_create(&v->committer, NULL, committer_main, v);
	if (e)
		return -e;
	v->committer_on = true;
	return 0;
}

static void committer_stop(struct vol *v)
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
	*flags = 0;
	if (!bstack_journaled(v->bs) || n->alloc_seq <= bstack_durable_seq(v->bs))
		return 0;
	if (end <= VOL_JOURNAL_DATA_MAX) {
		*flags = BSTACK_DATA_JOURNAL;
		return 0;
	}
	return bstack_barrier(v->bs);
}

static void set_alloc(struct vol *v, struct cat_node *n, struct bs_slice s)
{
	n->r.alloc = s;
	n->alloc_seq = bstack_txn_seq(v->bs);
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
	op_lock(v);
	if (!(d = get_dir(v, parent, &r)))
		goto out;
	if (cat_lookup(v->c, parent, name, strlen(name))) {
		r = -EEXIST;
		goto out;
	}
	int64_t now = now_ns();
	struct cat_rec rec = {
		.kind = w->kind, .parent = parent, .name_len = (uint16_t)strlen(name),
		.mode = w->type | (mode & 07777), .rdev = w->rdev,
		.uid = uid, .gid = gid, .atime = now, .mtime = now, .ctime = now,
	};
	/* a set-group-ID directory hands its group down, and its bit to new
	 * directories (as ext4 without grpid) */
	if (d->r.mode & S_ISGID) {
		rec.gid = d->r.gid;
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
	touch_dir(d, now);
	if (out)
		fill_attr(v, n, out);
out:
	return op_unlock(v, r, D_METADATA);
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
	} else if (n->r.kind != CAT_SYMLINK) {
		r = -EINVAL;
	} else {
		size_t k = n->r.size < size ? n->r.size : size;
		r = (ssize_t)k;
		if (n->r.alloc.len == 0)
			memcpy(buf, n->r.target, k);
		else if (bstack_get(v->bs, n->r.alloc.off, buf, k))
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
	op_lock(v);
	if (!(d = get_dir(v, newparent, &r)))
		goto out;
	if (!(n = cat_get(v->c, ino))) {
		r = -ENOENT;
		goto out;
	}
	if (n->r.kind == CAT_DIR) {
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
	int64_t now = now_ns();
	n->r.ctime = now;
	n->rec_dirty = true;
	touch_dir(d, now);
	if (out)
		fill_attr(v, n, out);
out:
	return op_unlock(v, r, D_METADATA);
}

/* Remove inode n, which has no name left: the record goes durably first,
 * its space second (unlink order, guarantee 2); a failed dealloc only
 * leaks until the next mount.  A file still open becomes an orphan
 * instead: record gone, space kept until its last close (vol_release). */
static int drop(struct vol *v, struct cat_node *n)
{
	struct bs_slice s = n->r.alloc;
	bool file = n->r.kind == CAT_FILE;
	uint64_t size = n->r.size;
	int r;
	if (file && n->opens) {
		if (!(r = cat_orphan(v->c, n)))
			v->live_now -= size < v->live_now ? size : v->live_now;
		vol_give_back(v, cat_take_freed_xattr(v->c));
		return r;
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
	if (name->r.kind == CAT_LINK) {
		if ((r = cat_unlink_name(v->c, name)))
			return r;
		*gone = true;
		if (cat_nlink(n) == 0) {
			if ((r = drop(v, n)))
				cat_forget(v->c, n);   /* a stray on disk: mount removes it */
			return r;   /* n is gone either way */
		}
	} else if (n->nlinks) {
		if ((r = cat_unname(v->c, n)))
			return r;
		*gone = true;
	} else {
		r = drop(v, n);
		*gone = !r;
		return r;
	}
	n->r.ctime = now_ns();   /* its link count changed */
	n->rec_dirty = true;
	return 0;
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
	op_lock(v);
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
	else if (!(r = drop_name(v, n, &gone)))
		touch_dir(d, now_ns());
out:
	return op_unlock(v, r, D_METADATA);
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
	struct cat_rec a = src->r, b = dst->r;
	int64_t now = now_ns();
	int r;
	if (!bstack_journaled(v->bs))
		return -EINVAL;
	if (src->r.kind == CAT_DIR && is_ancestor(v, src->r.ino, dst->r.parent))
		return -EINVAL;
	if (dst->r.kind == CAT_DIR && is_ancestor(v, dst->r.ino, src->r.parent))
		return -EINVAL;
	set_name(&a, dst->r.parent, dst->r.name, dst->r.name_len);
	set_name(&b, src->r.parent, src->r.name, src->r.name_len);
	a.ctime = b.ctime = now;
	if ((r = store(v, src, &a)) || (r = store(v, dst, &b)))
		return r;   /* the transaction is refused as a whole (op_unlock) */
	touch_dir(d, now);
	touch_dir(nd, now);
	return 0;
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
	op_lock(v);
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
	int64_t now = now_ns();
	struct cat_rec nr = src->r;
	set_name(&nr, newparent, newname, strlen(newname));
	nr.ctime = now;
	if ((r = store(v, src, &nr)))                 /* the rename point */
		goto out;
	if (src->r.kind == CAT_LINK) {
		src->inode->r.ctime = now;
		src->inode->rec_dirty = true;
	}
	touch_dir(d, now);
	touch_dir(nd, now);
	bool gone;
	if (dst && (r = drop_name(v, dst, &gone)) && !gone)
		cat_forget(v->c, dst);   /* mount resolves the two records */
out:
	return op_unlock(v, r, D_METADATA);
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
	if (!n->xattr)
		return 0;
	size_t k = (size_t)n->xattr->r.size;
	uint8_t *b = malloc(k);
	if (!b)
		return -ENOMEM;
	int r = bstack_get(v->bs, n->xattr->r.alloc.off, b, k);
	if (!r && (crc32c(0, b, k) != n->xattr->r.rdev || xa_check(b, k)))
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
	op_lock(v);
	struct cat_node *n = cat_get(v->c, ino);
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
	n->r.ctime = now_ns();
	n->rec_dirty = true;
out:
	free(old);
	free(nb);
	return op_unlock(v, r, D_METADATA);
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
	struct cat_node *n = node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (!n->xattr)
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
	struct cat_node *n = node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (n->xattr && !(r = read_blob(v, n, &b, &len)))
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
		for (struct cat_node *n = cat_child_after(v->c, d, pos); n; n = n->next) {
			fill_attr(v, cat_inode_of(n), &a);
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
	__atomic_fetch_add(&v->n_reads, 1, __ATOMIC_RELAXED);
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

/* File data for node f: in place or in the journal (bstack_write_data);
 * f's data is dirty (durable at the next sync) when any went in place. */
static int put_data(struct vol *v, struct cat_node *f, uint64_t off, const void *buf,
		    uint64_t n, unsigned flags)
{
	uint64_t inplace = 0;
	int r = bstack_write_data(v->bs, off, buf, n, flags, &inplace);
	if (inplace && f)
		f->data_dirty = true;
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
	struct bs_slice old = n->r.alloc, ns;
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
			set_alloc(v, n, ns);
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
		set_alloc(v, n, ns);
		n->rec_dirty = true;
		v->ctr.reallocs++;
		*stale_end = 0;
		return 0;
	}
	/* 2. copy and sync: the copy is durable before anything names it (an
	 *    orphan has no record to name it: no sync).  With a journal a small
	 *    copy travels in it; a large one goes in place once a barrier has
	 *    made the new space durably allocated (the ordering rule). */
	unsigned flags = 0;
	if (bstack_journaled(v->bs)) {
		if (n->r.size <= VOL_JOURNAL_DATA_MAX)
			flags = BSTACK_DATA_JOURNAL;
		else if ((r = bstack_barrier(v->bs))) {
			bs_dealloc(v->a, ns);
			return r;
		}
	}
	r = copy_range(v, n, old.off, ns.off, n->r.size, flags);
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
	n->alloc_seq = bstack_txn_seq(v->bs);
	/* 4. free the old place */
	bs_dealloc(v->a, old);
	v->ctr.reallocs++;
	v->ctr.bytes_copied += n->r.size;
	*stale_end = n->r.size;
	return 0;
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

ssize_t vol_write(struct vol *v, uint64_t ino, const void *buf, size_t n, uint64_t off)
{
	uint64_t end, stale_end;
	int r;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (!add_ok(off, n, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	unsigned flags = 0;
	if (!f || n == 0)
		goto out;
	stale_end = f->r.alloc.len;
	if (end > f->r.alloc.len) {
		uint64_t cap = amortised_cap(f->r.alloc.len, end), big = cap;
		/* A file past VOL_GROW_BIG_FROM grows in place (at the tail,
		 * where nothing has to move) by a whole VOL_GROW_STEP_MAX at
		 * once: each growth of a large file needs a barrier before its
		 * data may go in place (the ordering rule), so doubling from 1
		 * MiB would cost a sync per doubling; this way a sequential
		 * write costs one per 64 MiB (issue: syncs that do not grow
		 * with the size).  The spare capacity is trimmed at the last
		 * close, as any amortised headroom. */
		if (f->r.alloc.len >= VOL_GROW_BIG_FROM && bstack_journaled(v->bs) &&
		    !add_ok(f->r.alloc.len, VOL_GROW_STEP_MAX, &big))
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
	if (off > f->r.size && stale_end > f->r.size) {
		uint64_t ze = off < stale_end ? off : stale_end;
		if ((r = zero_range(v, f, f->r.alloc.off + f->r.size, ze - f->r.size, flags)))
			goto out;
	}
	if ((r = put_data(v, f, f->r.alloc.off + off, buf, n, flags)))
		goto out;
	if (end > f->r.size) {
		live_change(v, f, f->r.size, end);
		f->r.size = end;
	}
	f->r.mtime = f->r.ctime = now_ns();
	f->rec_dirty = true;
	if (v->opts.sync_writes) {
		/* -o sync: data, then the record that covers it */
		struct cat_rec nr = f->r;
		r = store(v, f, &nr);
	}
out:
	r = op_unlock(v, r, v->opts.sync_writes ? D_ALWAYS : D_NONE);
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
		if ((r = grow(v, f, size, size, size, &stale_end)))
			return r;
		old = f->r.alloc;
	}
	if (size > f->r.size && stale_end > f->r.size) {
		uint64_t ze = size < stale_end ? size : stale_end;
		unsigned flags;
		if ((r = data_flags(v, f, size, &flags)) ||
		    (r = zero_range(v, f, f->r.alloc.off + f->r.size, ze - f->r.size, flags)))
			return r;
	}
	struct cat_rec nr = f->r;
	nr.size = size;
	if (size == 0)
		nr.alloc = (struct bs_slice){ 0, 0 };
	else if (old.len > size && can_shrink(v, old))
		nr.alloc = (struct bs_slice){ old.off, size };
	if (touch)
		nr.mtime = nr.ctime = now_ns();
	uint64_t old_size = f->r.size;
	if ((r = store(v, f, &nr)))     /* durable: the new size and allocation */
		return r;
	if (nr.alloc.len != old.len)
		f->alloc_seq = bstack_txn_seq(v->bs);
	live_change(v, f, old_size, size);
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
	op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	if (f)
		r = resize(v, f, size, true);
	return op_unlock(v, r, D_METADATA);
}

int vol_fallocate(struct vol *v, uint64_t ino, uint64_t off, uint64_t len)
{
	uint64_t end;
	int r;
	if (!add_ok(off, len, &end) || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	op_lock(v);
	struct cat_node *f = get_file(v, ino, &r);
	if (f && end > f->r.size)
		r = resize(v, f, end, true);
	return op_unlock(v, r, D_METADATA);
}

int vol_setattr(struct vol *v, uint64_t ino, unsigned mask, const struct vol_attr *in,
		struct vol_attr *out)
{
	int r = 0;
	op_lock(v);
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
	return op_unlock(v, r, D_METADATA);
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
 * (docs/design.md §4: "at close the allocation is trimmed back"). */
int vol_fsync(struct vol *v, uint64_t ino)
{
	int r;
	op_lock(v);
	struct cat_node *n = node_get(v, ino);
	r = n ? commit(v, n, false) : -ENOENT;
	vol_drain(v);   /* an owner point (issue 10) */
	return op_unlock(v, r, D_ALWAYS);
}

/* A close (FUSE flush) of a descriptor open for writing: like fsync with
 * commit=0; with commit=N the data joins the next group commit. */
int vol_flush(struct vol *v, uint64_t ino)
{
	int r;
	op_lock(v);
	struct cat_node *n = node_get(v, ino);
	r = n ? commit(v, n, false) : -ENOENT;
	return op_unlock(v, r, D_CLOSE);
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
	bool dirty = false;
	op_lock(v);
	struct cat_node *n = node_get(v, ino);
	if (!n) {
		r = -ENOENT;
	} else {
		bool last = n->opens <= 1;
		if (n->opens)
			n->opens--;
		/* data or a record of the file not yet durable: every write
		 * leaves the record dirty until a commit stores it */
		dirty = !n->orphan && (n->rec_dirty || n->data_dirty);
		if (n->orphan && last)
			free_orphan(v, n);
		else
			r = commit(v, n, last);
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
	return op_unlock(v, r, d);
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

/* An explicit sync: everything durable, and the journal checkpointed. */
int vol_sync_all(struct vol *v)
{
	op_lock(v);
	int r = sync_all_locked(v);
	vol_drain(v);   /* what is queued is freed, then the free tail goes back */
	if (!r)
		r = give_back_tail(v, NULL);
	r = op_unlock(v, r, D_ALWAYS);
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
	int r = v->a->kind == BS_ALLOC_LINEAR ? linear_tidy(v) : bs_alloc_trim_tail(v->a, &got);
	if (freed)
		*freed = before - bstack_len(v->bs);
	return r;
}

int vol_give_back_tail(struct vol *v, uint64_t *freed)
{
	op_lock(v);
	int r = give_back_tail(v, freed);
	return op_unlock(v, r, D_METADATA);
}

int vol_close(struct vol *v)
{
	if (!v)
		return 0;
	committer_stop(v);
	if (v->damaged || v->opts.no_write) {
		/* nothing of it may reach the image: the stage is dropped */
		vol_free(v);
		return 0;
	}
	op_lock(v);
	int r = sync_all_locked(v);
	/* orphans still open at unmount: their last close is now */
	while (v->c->orphans)
		free_orphan(v, v->c->orphans);
	/* the seed's drop: close the queue and drain what is pending */
	bs_freeq_close(v->fq, NULL);
	if (!r)
		r = give_back_tail(v, NULL);
	r = op_unlock(v, r, D_ALWAYS);
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
		op_lock(v);
		vol_drain(v);
		op_unlock(v, 0, D_METADATA);
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
	out->files_free = out->free_bytes / cat_record_bytes(v->c) + v->c->n_free;
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
	out->files = v->c->n_files - v->c->n_symlinks - v->c->n_special;
	out->directories = v->c->n_dirs;
	out->symlinks = v->c->n_symlinks;
	out->special_files = v->c->n_special;
	out->hardlinks = v->c->n_links;
	out->catalog_version = v->c->version;
	out->xattr_bytes = v->c->xattr_bytes;
	out->catalog_records = cat_records(v->c);
	out->catalog_compact = v->c->compact;
	out->catalog_bytes = v->c->root.len;
	out->live_bytes = s.live;
	out->capacity_bytes = s.capacity;
	out->backing_bytes = s.backing;
	out->free_bytes = st->free_bytes;
	/* files removed while still open: their space is freed at the last
	 * close, and until then it is neither free nor any named file's */
	out->orphan_files = v->c->n_orphans;
	for (struct cat_node *o = v->c->orphans; o; o = o->next)
		out->orphan_bytes += backing_of(v, o);
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
	int r = bs_alloc_check(v->a, report, ctx);
	if (r >= 0 && cat_check_extents(v->c, msg, sizeof msg) == -EUCLEAN) {
		report(ctx, msg);
		r++;
	}
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
	if (cat_kind_has_alloc(n->r.kind) && n->r.alloc.len) {
		alloc_rec(w->v, VOL_ALLOC_FILE, n->r.ino, n->r.alloc, n->r.size, &rec);
		r = w->fn(w->ctx, &rec);
	}
	if (!r && n->xattr) {
		alloc_rec(w->v, VOL_ALLOC_XATTR, n->r.ino, n->xattr->r.alloc, n->xattr->r.size,
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
	alloc_rec(v, VOL_ALLOC_CATALOG, 0, v->c->root, v->c->root.len, &rec);
	int r = fn(ctx, &rec);
	if (!r)
		r = cat_foreach(v->c, alloc_walk_one, &w);
	for (struct cat_node *o = v->c->orphans; !r && o; o = o->next) {
		if (o->r.alloc.len == 0)
			continue;
		alloc_rec(v, VOL_ALLOC_ORPHAN, o->r.ino, o->r.alloc, o->r.size, &rec);
		r = fn(ctx, &rec);
	}
	pthread_rwlock_unlock(&v->lock);
	return r;
}

int vol_alloc_of(struct vol *v, uint64_t ino, struct vol_alloc_rec *out)
{
	int r = 0;
	pthread_rwlock_rdlock(&v->lock);
	struct cat_node *n = node_get(v, ino);
	if (!n)
		r = -ENOENT;
	else if (n->r.kind == CAT_DIR)
		r = -EISDIR;
	else
		alloc_rec(v, n->orphan ? VOL_ALLOC_ORPHAN : VOL_ALLOC_FILE, ino, n->r.alloc,
			  n->r.size, out);
	pthread_rwlock_unlock(&v->lock);
	return r;
}

struct bs_alloc *vol_allocator(struct vol *v)
{
	return v->a;
}
