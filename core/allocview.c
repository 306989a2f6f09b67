/*
 * allocview.c — the allocations of any BStack image, read-only
 * (allocview.h; docs/design.md §7).
 *
 * The open (av_open_io) in order, nothing of it reaching the image:
 *   1. a staging device over the read-only file (io_stage.c), never
 *      committed: every write below stays in memory;
 *   2. bstack_open_found: the shared lock, the header validated; a live
 *      journal is refused; bstack_recover applies the length recovery to
 *      the stage;
 *   3. the allocator: by its magic (Linear: asked for, or recognised by a
 *      bstackfs catalog), opened (its open-time recovery into the stage),
 *      checked — any violation refuses the view with the violations;
 *   4. the walks below, each bounded and validating what it reads (the
 *      check has accepted the image, but the walks do not rely on it).
 *
 * The walks of live allocations, per allocator (layouts: the comments at
 * the top of alloc_firstfit.c, alloc_slab.c, alloc_ghost.c):
 *   FirstFit  the blocks end to end from the arena (48): a 16-byte header
 *             (size u64, flags u32 bit 0 free), size bytes, an 8-byte
 *             footer; each allocated block's payload is one allocation.
 *             At most (payload - 48) / 40 steps: a block is >= 40 bytes.
 *   Slab      the arena's blocks minus the free list (hm_walk_free): every
 *             other block is live; the arena must be whole blocks.
 *   GhostTree the arena minus the free blocks of the AVL tree
 *             (hm_walk_free): the runs in between.
 *   Linear    [16, payload): one allocation when not empty.
 * Free blocks come from hm_walk_free for every allocator (bounded there).
 */
#include "allocview.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bstack.h"
#include "catalog.h"
#include "heapmap.h"
#include "util.h"

#define AV_ARENA       48   /* FirstFit, Slab, GhostTree */
#define FF_HDR         16
#define FF_FTR         8
#define FF_MIN         16
#define SLAB_BSIZE_OFF 32

static void why_set(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;
	if (!why || !n)
		return;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
}

/* ---- a growable list of blocks ------------------------------------------ */

struct blist {
	struct av_block *v;
	size_t n, cap;
};

static int bl_add(struct blist *l, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct av_block *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct av_block){ off, len };
	return 0;
}

static int by_off(const void *a, const void *b)
{
	const struct av_block *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* ---- free blocks ------------------------------------------------------- */

static int add_free(void *ctx, const struct hm_free *f)
{
	return bl_add(ctx, f->start, f->len);
}

/* The free blocks, sorted, inside the arena and not overlapping. */
static int walk_free(struct av_view *v, struct blist *fl)
{
	int r = hm_walk_free(v->a, add_free, fl);
	if (r)
		return r < 0 ? r : -EUCLEAN;
	if (fl->n)   /* qsort's base must not be NULL, even for 0 elements */
		qsort(fl->v, fl->n, sizeof *fl->v, by_off);
	uint64_t at = v->arena_start;
	for (size_t i = 0; i < fl->n; i++) {
		if (fl->v[i].off < at || !range_ok(fl->v[i].off, fl->v[i].len, v->payload_bytes))
			return -EUCLEAN;
		at = fl->v[i].off + fl->v[i].len;
	}
	return 0;
}

/* ---- live allocations, per allocator ------------------------------------ */

static int get64(struct bstack *bs, uint64_t off, uint64_t *out)
{
	uint8_t b[8];
	int r;
	if (!range_ok(off, 8, bstack_len(bs)))
		return -EUCLEAN;
	if ((r = bstack_get(bs, off, b, 8)))
		return r;
	*out = le64_get(b);
	return 0;
}

static int walk_firstfit(struct av_view *v, const struct blist *fl, struct blist *al)
{
	(void)fl;   /* the headers say which blocks are free */
	uint64_t p = AV_ARENA, end = v->payload_bytes;
	uint64_t max = end > AV_ARENA ? (end - AV_ARENA) / (FF_HDR + FF_MIN + FF_FTR) + 1 : 1;
	for (uint64_t i = 0; p < end; i++) {
		uint8_t h[FF_HDR];
		uint64_t size, next;
		int r;
		if (i >= max || !range_ok(p, FF_HDR, end))
			return -EUCLEAN;
		if ((r = bstack_get(v->bs, p, h, sizeof h)))
			return r;
		size = le64_get(h);
		if (size < FF_MIN || size % 8 || !add_ok(p, FF_HDR + FF_FTR, &next) ||
		    !add_ok(next, size, &next) || next > end)
			return -EUCLEAN;
		if (!(le32_get(h + 8) & 1) && (r = bl_add(al, p + FF_HDR, size)))
			return r;
		p = next;
	}
	return p == end ? 0 : -EUCLEAN;
}

/* Every block of the arena that is not free (fl sorted, whole blocks). */
static int walk_slab(struct av_view *v, const struct blist *fl, struct blist *al)
{
	uint64_t bsize, end = v->payload_bytes;
	size_t fi = 0;
	int r;
	if ((r = get64(v->bs, SLAB_BSIZE_OFF, &bsize)))
		return r;
	if (bsize < 8 || end < AV_ARENA || (end - AV_ARENA) % bsize)
		return -EUCLEAN;
	for (uint64_t p = AV_ARENA; p < end; p += bsize) {
		while (fi < fl->n && fl->v[fi].off < p)
			fi++;
		if (fi < fl->n && fl->v[fi].off == p)
			continue;
		if ((r = bl_add(al, p, bsize)))
			return r;
	}
	return 0;
}

/* The runs of the arena between free blocks (fl sorted, disjoint). */
static int walk_gaps(struct av_view *v, const struct blist *fl, struct blist *al)
{
	uint64_t at = v->arena_start;
	int r;
	for (size_t i = 0; i < fl->n; i++) {
		if ((r = bl_add(al, at, fl->v[i].off - at)))
			return r;
		at = fl->v[i].off + fl->v[i].len;
	}
	return at < v->payload_bytes ? bl_add(al, at, v->payload_bytes - at) : 0;
}

/*
 * The walk of each allocator's live allocations, given its sorted free
 * blocks.  Keyed by kind here rather than held in the descriptor, so that
 * alloc_*.c never depend on the view; an allocator without an entry cannot
 * be viewed (-ENOTSUP).
 */
typedef int (*live_walk)(struct av_view *v, const struct blist *fl, struct blist *al);

static const live_walk live_walks[] = {
	[BS_ALLOC_LINEAR] = walk_gaps,
	[BS_ALLOC_FIRSTFIT] = walk_firstfit,
	[BS_ALLOC_SLAB] = walk_slab,
	[BS_ALLOC_GHOST] = walk_gaps,
};

static live_walk live_walk_of(enum bs_alloc_kind kind)
{
	return (size_t)kind < sizeof live_walks / sizeof live_walks[0] ? live_walks[kind] : NULL;
}

/* ---- the open ------------------------------------------------------------ */

struct violations {
	char *buf;
	size_t n, used;
	int count;
};

static void collect(void *ctx, const char *msg)
{
	struct violations *vs = ctx;
	vs->count++;
	if (vs->used + 3 >= vs->n)
		return;
	int k = snprintf(vs->buf + vs->used, vs->n - vs->used, "%s%s",
			 vs->count > 1 ? "; " : "", msg);
	if (k > 0)
		vs->used += (size_t)k < vs->n - vs->used ? (size_t)k : vs->n - vs->used - 1;
}

/* A bstackfs catalog named by the root reference at payload 0? */
static void find_catalog(struct av_view *v)
{
	uint8_t ref[CAT_ROOT_REF_SIZE], magic[8];
	if (v->payload_bytes < CAT_ROOT_REF_SIZE || bstack_get(v->bs, 0, ref, sizeof ref))
		return;
	struct bs_slice root = cat_root_decode(ref);
	if (root.len < sizeof magic || root.off < CAT_ROOT_REF_SIZE ||
	    !range_ok(root.off, root.len, v->payload_bytes) ||
	    bstack_get(v->bs, root.off, magic, sizeof magic) ||
	    memcmp(magic, CAT_MAGIC, sizeof magic) != 0)
		return;
	v->has_catalog = true;
	v->catalog = (struct av_block){ root.off, root.len };
}

static int open_alloc(struct av_view *v, enum bs_alloc_kind want, char *why, size_t whylen)
{
	enum bs_alloc_kind kind;
	int r = bs_alloc_detect(v->bs, &kind);
	if (r == -EUCLEAN) {
		why_set(why, whylen, "unsupported allocator version");
		return r;
	}
	if (r) {
		why_set(why, whylen, "cannot read the image: %s", strerror(-r));
		return r;
	}
	find_catalog(v);
	if (kind == BS_ALLOC_NONE && (want == BS_ALLOC_LINEAR || v->has_catalog))
		kind = BS_ALLOC_LINEAR;
	if (kind == BS_ALLOC_NONE) {
		why_set(why, whylen, "no allocator magic (not a FirstFit, Slab or GhostTree "
			"image; a Linear image has none: view it with -o allocator=linear)");
		return -EUCLEAN;
	}
	if (want != BS_ALLOC_NONE && want != kind) {
		why_set(why, whylen, "allocator mismatch: the image holds %s, not %s",
			bs_alloc_kind_name(kind), bs_alloc_kind_name(want));
		return -EINVAL;
	}
	/* detection found a magic past the reserved bytes; an image without
	 * one (Linear) may be shorter than them */
	const struct bs_alloc_desc *d = bs_alloc_desc_of(kind);
	if (d && !(d->caps & BS_CAP_MAGIC) && v->payload_bytes < d->reserved_len) {
		why_set(why, whylen, "a Linear image shorter than its %llu reserved bytes",
			(unsigned long long)d->reserved_len);
		return -EUCLEAN;
	}
	v->kind = kind;
	if ((r = bs_alloc_open(v->bs, kind, &v->a))) {
		why_set(why, whylen, r == -ENOTSUP ? "allocator %s is not built in" :
			"the %s allocator refuses the image: %s", bs_alloc_kind_name(kind),
			strerror(-r));
		return r;
	}
	char list[1024] = "";
	struct violations vs = { list, sizeof list, 0, 0 };
	if ((r = bs_alloc_check(v->a, collect, &vs)) < 0) {
		why_set(why, whylen, "cannot check the %s allocator: %s", bs_alloc_kind_name(kind),
			strerror(-r));
		return r;
	}
	if (r > 0) {
		why_set(why, whylen, "the %s allocator's metadata is damaged (%d violation%s: %s)",
			bs_alloc_kind_name(kind), r, r == 1 ? "" : "s", list);
		return -EUCLEAN;
	}
	return 0;
}

static int walk_all(struct av_view *v)
{
	struct blist fl = { 0 }, al = { 0 };
	struct bs_alloc_stats st;
	int r;
	bs_alloc_stats(v->a, &st);
	snprintf(v->magic, sizeof v->magic, "%s", st.magic);
	v->reserved_bytes = st.reserved_bytes;
	v->arena_start = st.arena_start;   /* Linear's: its 16 reserved bytes */
	if (v->arena_start > v->payload_bytes)
		return -EUCLEAN;
	if ((r = walk_free(v, &fl)))
		goto out;
	live_walk walk = live_walk_of(v->kind);
	if ((r = walk ? walk(v, &fl, &al) : -ENOTSUP))
		goto out;
	/* the two lists must not share a byte (a walk that disagrees with
	 * the free structure is a damaged image, whatever the check said) */
	if (al.n)
		qsort(al.v, al.n, sizeof *al.v, by_off);
	size_t fi = 0;
	uint64_t at = 0;
	for (size_t i = 0; i < al.n; i++) {
		if (al.v[i].off < at || !range_ok(al.v[i].off, al.v[i].len, v->payload_bytes)) {
			r = -EUCLEAN;
			goto out;
		}
		at = al.v[i].off + al.v[i].len;
		while (fi < fl.n && fl.v[fi].off + fl.v[fi].len <= al.v[i].off)
			fi++;
		if (fi < fl.n && fl.v[fi].off < at) {
			r = -EUCLEAN;
			goto out;
		}
		v->alloc_bytes += al.v[i].len;
	}
	for (size_t i = 0; i < fl.n; i++) {
		v->free_bytes += fl.v[i].len;
		if (fl.v[i].len > v->largest_free)
			v->largest_free = fl.v[i].len;
	}
	v->allocs = al.v;
	v->n_allocs = al.n;
	v->frees = fl.v;
	v->n_frees = fl.n;
	return 0;
out:
	free(al.v);
	free(fl.v);
	return r;
}

int av_open_io(struct bs_io *io, enum bs_alloc_kind want, struct av_view **out, char *why,
	       size_t whylen)
{
	struct bstack_found found;
	struct bs_io *sio;
	struct av_view *v;
	uint64_t size = 0;
	int r;

	*out = NULL;
	if (why && whylen)
		why[0] = '\0';
	if ((r = bs_io_size(io, &size))) {
		bs_io_close(io);
		why_set(why, whylen, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if ((r = bs_io_stage_new(io, &sio))) {   /* closes io on failure */
		why_set(why, whylen, "cannot read the image: %s", strerror(-r));
		return r;
	}
	if (!(v = calloc(1, sizeof *v)) || !(v->mu = malloc(sizeof(pthread_mutex_t)))) {
		free(v);
		bs_io_close(sio);
		return -ENOMEM;
	}
	pthread_mutex_init(v->mu, NULL);
	v->image_bytes = size;
	if ((r = bstack_open_found(sio, &v->bs, &found))) {
		v->bs = NULL;   /* the open closed sio */
		why_set(why, whylen, "%s", r == BSTACK_E_INUSE ?
			"image is in use (mounted, or open in another program)" :
			bstack_strerror(r));
		goto fail;
	}
	if (found.live) {
		r = BSTACK_E_LIVE;
		why_set(why, whylen, "the image needs journal recovery (a bstackfs mount was "
			"cut short): mount it normally or run bstackfs-fsck first; a view never "
			"replays the journal");
		goto fail;
	}
	if ((r = bstack_recover(v->bs))) {
		why_set(why, whylen, "cannot recover the header's length: %s", strerror(-r));
		goto fail;
	}
	v->payload_bytes = bstack_len(v->bs);
	if ((r = open_alloc(v, want, why, whylen)))
		goto fail;
	v->payload_bytes = bstack_len(v->bs);   /* GhostTree's open pads it */
	if ((r = walk_all(v))) {
		why_set(why, whylen, r == -EUCLEAN ? "the %s allocator's blocks do not add up "
			"(a damaged image the check did not catch)" : "cannot walk the %s "
			"allocator: %s", bs_alloc_kind_name(v->kind), strerror(-r));
		goto fail;
	}
	v->withheld_writes = bs_io_stage_pending(sio);
	*out = v;
	return 0;
fail:
	av_close(v);
	return r;
}

int av_open(const char *path, enum bs_alloc_kind want, struct av_view **out, char *why,
	    size_t whylen)
{
	struct bs_io *io;
	int r = bs_io_file_open(path, BS_IO_RDONLY | BS_IO_SHARED, &io, NULL);
	*out = NULL;
	if (r) {
		why_set(why, whylen, r == -ENOENT ? "no such image" :
			r == -EINVAL ? "not a regular file" : "cannot open: %s", strerror(-r));
		return r;
	}
	return av_open_io(io, want, out, why, whylen);
}

void av_close(struct av_view *v)
{
	if (!v)
		return;
	bs_alloc_close(v->a);     /* nothing it holds is written back */
	bstack_close(v->bs);      /* the stage is dropped uncommitted */
	if (v->mu) {
		pthread_mutex_destroy(v->mu);
		free(v->mu);
	}
	free(v->allocs);
	free(v->frees);
	free(v);
}

int av_read(struct av_view *v, uint64_t off, void *buf, uint64_t n)
{
	if (!range_ok(off, n, v->payload_bytes))
		return -ERANGE;
	/* the staging device's reads walk its log: one reader at a time */
	pthread_mutex_lock(v->mu);
	int r = bstack_get(v->bs, off, buf, n);
	pthread_mutex_unlock(v->mu);
	return r;
}

int av_stats_text(struct av_view *v, char **buf, size_t *len)
{
	struct bs_alloc_stats st;
	char *b = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&b, &n);
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(v->mu);
	bs_alloc_stats(v->a, &st);
	pthread_mutex_unlock(v->mu);
	double frag = v->free_bytes ? 1.0 - (double)v->largest_free / (double)v->free_bytes : 0;
#define KV(k, x) fprintf(f, "%s %llu\n", k, (unsigned long long)(x))
	fprintf(f, "allocator %s\n", bs_alloc_kind_name(v->kind));
	fprintf(f, "magic %s\n", v->magic);
	KV("view", 1);
	KV("image_bytes", v->image_bytes);
	KV("payload_bytes", v->payload_bytes);
	KV("files", v->n_allocs);
	KV("live_bytes", v->alloc_bytes);
	KV("free_blocks", v->n_frees);
	KV("free_bytes", v->free_bytes);
	KV("largest_free_bytes", v->largest_free);
	fprintf(f, "fragmentation %.4f\n", frag);
	KV("overhead_bytes", st.overhead_bytes);
	KV("catalog_bytes", v->has_catalog ? v->catalog.len : 0);
	KV("reserved_bytes", v->reserved_bytes);
	KV("arena_start", v->arena_start);
	KV("bstackfs_catalog", v->has_catalog);
	KV("withheld_open_writes", v->withheld_writes);
	for (int i = 0; i < st.n_extra; i++)
		KV(st.extra[i].key, st.extra[i].value);
#undef KV
	if (fclose(f) != 0) {
		free(b);
		return -ENOMEM;
	}
	*buf = b;
	*len = n;
	return 0;
}

void av_name(const struct av_block *b, char *buf)
{
	snprintf(buf, AV_NAME_MAX, "%012llx-%012llx", (unsigned long long)b->off,
		 (unsigned long long)b->len);
}

bool av_parse_name(const char *name, struct av_block *b)
{
	unsigned long long off, len;
	int used = 0;
	if (strlen(name) < 25 || sscanf(name, "%llx-%llx%n", &off, &len, &used) != 2 ||
	    name[used] != '\0')
		return false;
	b->off = off;
	b->len = len;
	char again[AV_NAME_MAX];
	av_name(b, again);
	return strcmp(again, name) == 0;
}
