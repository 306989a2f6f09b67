/*
 * volume_mount.c — mount and format policy (docs/design.md §6, §7): what an
 * open does with the image it is given.  An empty file is formatted; an
 * existing image is opened in two phases on a staging device, so that an
 * image that is refused keeps every byte; an interrupted format is
 * finished; an empty arena without a catalog is adopted; an allocator that
 * holds allocations but no catalog belongs to another program and is
 * refused.  The file layer itself is volume.c (volume_impl.h).
 */
#include "volume_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void vol_free(struct vol *v)
{
	vol_committer_stop(v);
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
	vt_fini(&v->vt);   /* orphans' nodes: the catalog let go of them */
	cat_free(v->c);
	bs_alloc_close(v->a);
	bstack_close(v->bs);
	free(v->path);
	free(v->jpath);
	pthread_rwlock_destroy(&v->lock);
	pthread_mutex_destroy(&v->dw_mu);
	free(v);
}

/* The options for a new image, checked before anything is written. */
static int new_image_opts_ok(const struct vol_opts *o, struct vol_error *err)
{
	enum bs_alloc_kind kind = o->allocator ? o->allocator : BS_ALLOC_DEFAULT;
	if (o->block_size && !bs_alloc_kind_can(kind, BS_CAP_BLOCK_SIZE)) {
		vol_seterr(err, "block_size is for the slab allocator, not %s", bs_alloc_kind_name(kind));
		return -EINVAL;
	}
	if (o->block_size && o->block_size < 8) {
		vol_seterr(err, "block_size must be at least 8 bytes");
		return -EINVAL;
	}
	return 0;
}

static int format(struct vol *v, struct vol_error *err)
{
	enum bs_alloc_kind kind = v->opts.allocator ? v->opts.allocator : BS_ALLOC_DEFAULT;
	struct bs_alloc_opts ao = { .block_size = v->opts.block_size };
	int r = bs_alloc_create(v->bs, kind, &ao, &v->a);
	if (r) {
		vol_seterr(err, r == -ENOTSUP ? "allocator %s is not built in" :
		       "cannot create the %s allocator: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	r = cat_format(v->a, v->opts.uid, v->opts.gid, vol_now_ns(), &v->c);
	if (r)
		vol_seterr(err, "cannot write the catalog: %s", strerror(-r));
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

int vol_commit(struct vol *v, struct cat_node *n, bool trim);

static int trim_one(void *ctx, struct cat_node *n)
{
	struct vol *v = ctx;
	if (cat_attr_of(n)->kind == CAT_FILE && cat_attr_of(n)->alloc.len > cat_attr_of(n)->size) {
		v->rep.files_trimmed++;
		return vol_commit(v, n, true);
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
		vol_seterr(err, "allocator mismatch: the image holds %s, not %s",
		       bs_alloc_kind_name(kind), bs_alloc_kind_name(v->opts.allocator));
		return -EINVAL;
	}
	if (v->opts.block_size && !bs_alloc_kind_can(kind, BS_CAP_BLOCK_SIZE)) {
		vol_seterr(err, "block_size is for slab images, and this image holds %s",
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
		r = cat_format(v->a, v->opts.uid, v->opts.gid, vol_now_ns(), &v->c);
	if (r)
		vol_seterr(err, "cannot finish an interrupted format: %s", strerror(-r));
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
		vol_seterr(err, r == -ENOTSUP ? "allocator %s is not built in" :
		       "the %s allocator refuses the image: %s", bs_alloc_kind_name(kind),
		       strerror(-r));
		return r;
	}
	uint64_t wrote = pending_since(v, mark);
	/* only FirstFit has a crash recovery of its own (its stats say
	 * whether it ran); the others' stats walk their free space */
	struct bs_alloc_stats st;
	bool own = bs_alloc_can(v->a, BS_CAP_OWN_RECOVERY);
	if (own)
		bs_alloc_stats(v->a, &st);
	for (int i = 0; own && i < st.n_extra; i++)
		if (strcmp(st.extra[i].key, "recovery_runs") == 0 && st.extra[i].value)
			v->rep.alloc_recovered = true;
	if (!v->rep.alloc_recovered)
		v->rep.alloc_maintenance_writes = wrote;
	if ((r = bs_alloc_check(v->a, keep_first, &fv)) < 0) {
		vol_seterr(err, "cannot check the %s allocator: %s", bs_alloc_kind_name(kind),
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
	vol_seterr(err, "the %s allocator's metadata is damaged (%d violation%s, first: %s); "
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
	if ((r = cat_live_slices(v->c, NULL, 0, &live, &n)))
		return r;
	r = bs_alloc_rebuild(v->bs, kind, live, n, &v->a);
	free(live);
	if (r) {
		vol_seterr(err, "the %s allocator's metadata is damaged and cannot be rebuilt from "
		       "the catalog: %s", bs_alloc_kind_name(kind), strerror(-r));
		return r;
	}
	if ((r = bs_alloc_check(v->a, keep_first, &fv)) != 0) {
		vol_seterr(err, "the rebuilt %s allocator still fails its check%s%s",
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
	if (cat_load(v->bs, root, &c, msg, sizeof msg) || cat_live_slices(c, NULL, 0, &live, &n)) {
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
		vol_seterr(err, "the header's length (%llu bytes) is shorter than the catalog's "
		       "allocations (up to %llu of the file's %llu payload bytes): recovery would "
		       "drop file data; bstackfs-fsck -y restores the length",
		       (unsigned long long)f->clen, (unsigned long long)end,
		       (unsigned long long)f->payload);
		return -EUCLEAN;
	}
	int r = bstack_restore_len(v->bs);
	if (r) {
		vol_seterr(err, "cannot restore the header's length: %s", strerror(-r));
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
	/* Not the descriptor table (alloc.h): this must know every format
	 * bstack defines, also those a subset build leaves out, so that their
	 * images are refused rather than taken for Linear. */
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
			vol_seterr(err, "the allocator magic at payload %llu is damaged (it looks like "
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
		vol_seterr(err, "unsupported allocator version");
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
			vol_seterr(err, "not a bstackfs image (no allocator magic and no catalog)");
			return -EUCLEAN;
		}
		if ((r = cat_load(v->bs, root, &v->c, msg, sizeof msg))) {
			vol_seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
			return r;
		}
		kind = BS_ALLOC_LINEAR;
	}
	if ((r = opts_match(v, kind, err)))
		return r;
	if (have_ref && !v->c &&
	    (r = cat_load(v->bs, cat_root_decode(ref), &v->c, msg, sizeof msg))) {
		vol_seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
		return r;
	}
	if (v->c)
		cat_fallback_note(v->c, v->rep.fallback, sizeof v->rep.fallback);
	if ((r = open_alloc(v, kind, err)))
		return r;
	if (bs_alloc_can(v->a, BS_CAP_BLOCK_SIZE) && v->opts.block_size &&
	    slab_block(v->a) != v->opts.block_size) {
		vol_seterr(err, "block size mismatch: the image's slab blocks are %llu bytes",
		       (unsigned long long)slab_block(v->a));
		return -EINVAL;
	}
	if (!have_ref) {
		struct bs_alloc_stats st;
		bs_alloc_stats(v->a, &st);
		if (st.arena_bytes != 0 && st.free_bytes < st.arena_bytes) {
			vol_seterr(err, "the %s allocator holds allocations but no bstackfs catalog: "
			       "the image belongs to another program", bs_alloc_kind_name(kind));
			return -EUCLEAN;
		}
		/* an empty arena is adopted */
		if ((r = cat_format(v->a, v->opts.uid, v->opts.gid, vol_now_ns(), &v->c)))
			vol_seterr(err, "cannot write the catalog: %s", strerror(-r));
		return r;
	}
	r = cat_attach(v->c, v->a, msg, sizeof msg);
	if (v->damaged && r == -EUCLEAN)
		r = 0;   /* vol_check reports it with the allocator's violations */
	if (r) {
		vol_seterr(err, "%s", r == -EUCLEAN ? msg : strerror(-r));
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
	if ((r = cat_live_slices(v->c, NULL, 0, &live, &n)))
		return r;
	r = bs_alloc_reclaim(v->a, live, n, &got);
	free(live);
	if (r) {
		vol_seterr(err, r == -EUCLEAN ? "catalog corrupt: it disagrees with the allocator "
		       "(a file overlaps free space)" : "reclaim failed: %s", strerror(-r));
		return r;
	}
	v->ctr.leaked_bytes_reclaimed = v->rep.leaked_bytes_reclaimed = got;
	struct cat_info ci;
	cat_info(v->c, &ci);
	v->rep.catalog_repaired = ci.torn || ci.losers;
	if ((r = cat_repair(v->c)) || (r = trim_all(v))) {
		vol_seterr(err, "cannot repair the catalog: %s", strerror(-r));
		return r;
	}
	/* The catalog's layout follows the journal (compact with it, paired
	 * without: compact records are written only inside transactions).
	 * fsck (allow_damaged, repair) writes nothing it does not have to. */
	if (!v->opts.no_write && !v->opts.repair && !v->opts.allow_damaged &&
	    (r = cat_fit_layout(v->c)))
		vol_seterr(err, "cannot rewrite the catalog: %s", strerror(-r));
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
		vol_seterr(err, "cannot write the image: %s", strerror(-r));
	return r;
}

static int open_new(struct vol *v, struct bs_io *io, struct bs_io *jio,
		    struct vol_error *err)
{
	int r;
	if (v->opts.no_write) {
		bs_io_close(io);
		bs_io_close(jio);
		vol_seterr(err, "%s", bstack_strerror(BSTACK_E_SHORT));
		return BSTACK_E_SHORT;
	}
	if ((r = bstack_create_journal(io, jio, v->opts.journal_bytes, &v->bs))) {
		vol_seterr(err, "%s", bstack_strerror(r));
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
		vol_seterr(err, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if ((r = bstack_open_found(sio, &v->bs, &found))) {
		bs_io_close(jio);
		vol_seterr(err, "%s", bstack_strerror(r));
		v->bs = NULL;
		return r;
	}
	if (jio && (r = bstack_attach_journal(v->bs, jio, v->opts.journal_bytes))) {
		vol_seterr(err, "cannot use the journal: %s", strerror(-r));
		return r;
	}
	if (found.live) {
		/* a crash left the journal live: its replay is the recovery
		 * (into the stage, like every other open-time write) */
		if (!bstack_journaled(v->bs)) {
			vol_seterr(err, "the image needs journal recovery: mount it with its journal "
			       "(IMAGE-journal), not with journal=off");
			return BSTACK_E_LIVE;
		}
		if ((r = bstack_recover(v->bs))) {
			vol_seterr(err, "cannot replay the journal: %s", bstack_strerror(r));
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
			vol_seterr(err, "cannot recover the header's length: %s", strerror(-r));
			return r;
		}
	}
	bstack_txn_begin(v->bs);
	if (bstack_len(v->bs) == 0 && may_format && !v->opts.no_write)
		r = format(v, err);
	else if (bstack_len(v->bs) == 0)
		vol_seterr(err, "not a bstackfs image (empty payload)"), r = -EUCLEAN;
	else
		r = mount_existing(v, err);
	if ((r = mount_txn_end(v, r, err)))
		return r;
	v->rep.writes = bs_io_stage_pending(sio);
	if (!v->opts.no_write && !v->damaged && (r = bs_io_stage_commit(sio)))
		vol_seterr(err, "cannot write the open-time recovery: %s", strerror(-r));
	return r;
}

static int add_size(void *ctx, struct cat_node *n)
{
	if (cat_attr_of(n)->kind == CAT_FILE)
		*(uint64_t *)ctx += cat_attr_of(n)->size;
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
		vol_seterr(err, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if (size == 0 && !may_format) {
		bs_io_close(io);
		bs_io_close(opts->journal_io);
		vol_seterr(err, "%s", bstack_strerror(BSTACK_E_SHORT));
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
	pthread_mutex_init(&v->dw_mu, NULL);
	v->dw_tail = &v->dw_head;
	vt_init(&v->vt);
	pthread_cond_init(&v->cm_cv, NULL);
	r = size == 0 ? open_new(v, io, opts->journal_io, err)
		      : open_staged(v, io, opts->journal_io, may_format, err);
	if (!r && !opts->defer_threads && (r = vol_committer_start(v)))
		vol_seterr(err, "cannot start the committer: %s", strerror(-r));
	if (!r) {
		struct bs_freeq_policy p = opts->free_batch;
		if (p.kind == BS_FREEQ_FIXED && p.n == 0)
			p = BS_FREEQ_POLICY_DEFAULT;
		r = bs_freeq_new(v->a, BS_FREEQ_DEFAULT_CAPACITY, p, &v->fq);
		if (r)
			vol_seterr(err, "bad free_batch policy");
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
		vol_seterr(err, "cannot open: %s", strerror(-r));
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
			vol_seterr(err, "cannot open the journal %s: %s", jpath, strerror(-r));
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

