/*
 * alloc_firstfit.c — the FirstFit allocator (seeds/bstack-0.2.0-first-fit-
 * allocator.rs.txt): a persistent first-fit free list with boundary tags.
 *
 * On-disk layout (payload offsets, all integers little-endian):
 *
 *   0..16    reserved for the caller (bstackfs: the catalog root reference)
 *   16..24   magic "ALFF\0\1\1\0" (any "ALFF\0\1" prefix is accepted)
 *   24..28   flags, bit 0 = recovery_needed
 *   28..32   reserved (0)
 *   32..40   free_head: payload offset of the first free block, 0 = none
 *   40..48   unused by the seed (its header is 32 bytes, its fields 24).
 *            bstackfs: the intent of a flagged operation, 0 at rest
 *   48..     arena of blocks laid end to end:
 *              [size u64 | flags u32 (bit 0 is_free) | reserved u32]  16 B
 *              [payload: size bytes, size % 8 == 0, size >= 16]
 *              [footer: size u64]                                      8 B
 *            A free block keeps next_free and prev_free (payload offsets,
 *            0 = none) in the first 16 bytes of its payload.  A slice's
 *            offset is its block's payload offset (block start + 16).
 *
 * Policy (the seed's): requests round up to a multiple of 8, at least 16;
 * first fit from the head; a found block is split when its remainder
 * would hold a 16-byte payload, the allocation taken from the BACK; freed
 * blocks absorb a free right neighbour, then merge into a free left one,
 * and go to the head of the list (LIFO); a freed tail block is discarded
 * and any free block newly at the tail with it (the cascade), so the tail
 * block is never free.
 *
 * Crash invariant.  Every BStack call is atomic and durable.  An operation
 * that needs more than one call sets recovery_needed first and clears it
 * last (where the seed does; we write flags..intent, payload 24..48, in
 * that one call, see ff_begin); while it is set, stored free-list
 * pointers are not trusted: open runs recovery, a linear scan that
 * truncates a partial tail block, repairs a split whose header was not yet
 * shrunk, and rebuilds the free list from the is_free flags.  Single-call
 * operations (push of a whole block or of a bulk's blocks, the pre-zero
 * before a merge) need no flag.
 *
 * Beyond the seed (each on-disk compatible: the seed can open every image
 * we leave and we open every image it leaves; for the same operations the
 * bytes are the seed's, which tests/seedcheck verifies against the seed's
 * own code, with the one exception of the tail test below):
 *  - the intent: alloc-from-a-free-block, non-tail dealloc and the moving
 *    realloc write the flag together with the payload offset of the one
 *    block that must end up free if they are cut (the block being taken:
 *    roll back; the block being freed: roll forward; a move switches from
 *    the new block to the old once the copy is in place).  Recovery frees
 *    it if it is an allocated block.  So after recovery no block is
 *    orphaned, where the seed leaves the cut alloc's or move's new block
 *    allocated with nobody holding it;
 *  - open also runs recovery when the tail block is not a well-formed
 *    allocated block: the seed's tail grow/shrink and tail dealloc +
 *    cascade are multi-call without the flag, and a crash inside them
 *    leaves exactly that;
 *  - recovery also rewrites footers that disagree with their header,
 *    coalesces adjacent free blocks and discards a free tail block, the
 *    states a crash inside coalescing or the cascade leaves, so that after
 *    recovery check() is clean and no byte is lost;
 *  - the "tail" tests use the block size from the header rather than the
 *    slice length rounded up; they are the same except for a block that
 *    was shrunk in place before it became the tail.  There the seed's code
 *    leaves a free block at the tail (or moves a tail block it could grow
 *    in place), against its own documented invariant that the tail block
 *    is always allocated; we keep the invariant, so these operations end
 *    in different (both valid) bytes.  seedcheck skips exactly these steps
 *    unless BSTACKFS_SEEDCHECK_STRICT=1;
 *  - alloc_bulk (the seed has none) pushes all its blocks in one call,
 *    so a cut leaves none or all of them (ff_alloc_bulk says why it does
 *    not take from the free list);
 *  - every offset and size read from disk is validated and every walk is
 *    bounded, so a corrupt image gives -EUCLEAN, never a loop or a stray
 *    write;
 *  - one mutex serialises all operations (the seed is single-threaded).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "util.h"

#define FF_RESERVED     16ULL
#define FF_HEADER       32ULL
#define FF_FLAGS_OFF    (FF_RESERVED + 8)     /* 24 */
#define FF_HEAD_OFF     (FF_RESERVED + 16)    /* 32 */
#define FF_INTENT_OFF   (FF_RESERVED + 24)    /* 40, unused by the seed */
#define FF_ARENA        (FF_RESERVED + FF_HEADER)   /* 48 */
#define FF_BH           16ULL                 /* block header */
#define FF_BF           8ULL                  /* block footer */
#define FF_OVH          (FF_BH + FF_BF)       /* 24 */
#define FF_MIN          16ULL                 /* minimum payload */
#define FF_MIN_BLOCK    (FF_OVH + FF_MIN)     /* 40 */
#define FF_FIRST_PAYLOAD (FF_ARENA + FF_BH)   /* 64 */

static const uint8_t ff_magic[8] = { 'A', 'L', 'F', 'F', 0, 1, 1, 0 };
#define FF_MAGIC_PREFIX 6

struct ff {
	struct bs_alloc base;
	pthread_mutex_t lock;
	uint64_t recovery_runs;
	bool in_op;     /* between ff_begin and ff_end */
	bool dirty;     /* an operation failed inside: keep the flag set */
};

/* One block found by a linear scan: header position, payload size, free. */
struct ff_blk {
	uint64_t pos;
	uint64_t size;
	bool free;
};

struct ff_blks {
	struct ff_blk *v;
	size_t n, cap;
};

static struct ff *to_ff(struct bs_alloc *a)
{
	return (struct ff *)a;
}

static uint64_t ff_len(struct ff *ff)
{
	return bstack_len(ff->base.bs);
}

/* Upper bound on the number of blocks an arena of the current length can
 * hold: every walk stops after this many steps. */
static uint64_t ff_max_blocks(struct ff *ff)
{
	uint64_t len = ff_len(ff);
	return len > FF_ARENA ? (len - FF_ARENA) / FF_MIN_BLOCK + 1 : 1;
}

/* Reads and writes below are at offsets derived from on-disk data; one
 * outside the payload means a corrupt structure, not a caller error. */
static int ff_get(struct ff *ff, uint64_t off, void *buf, uint64_t n)
{
	int r = bstack_get(ff->base.bs, off, buf, n);
	return r == -ERANGE ? -EUCLEAN : r;
}

/* A read window for the linear walks (scan, check): headers and footers
 * are a few bytes each, so they are served from one read of up to FF_WIN
 * bytes instead of one read each.  Only for walks that write nothing. */
#define FF_WIN (64u << 10)
struct ff_win {
	uint8_t *buf;             /* NULL: no window, plain reads */
	uint64_t start, n;
};

static void ff_win_init(struct ff_win *w)
{
	w->buf = malloc(FF_WIN);
	w->start = w->n = 0;
}

static int ff_wget(struct ff *ff, struct ff_win *w, uint64_t off, void *out, uint64_t n)
{
	if (!w->buf || n > FF_WIN)
		return ff_get(ff, off, out, n);
	if (off < w->start || off - w->start > w->n || n > w->n - (off - w->start)) {
		uint64_t len = ff_len(ff);
		if (!range_ok(off, n, len))
			return -EUCLEAN;
		uint64_t k = len - off < FF_WIN ? len - off : FF_WIN;
		int r = ff_get(ff, off, w->buf, k);
		if (r) {
			w->n = 0;
			return r;
		}
		w->start = off;
		w->n = k;
	}
	memcpy(out, w->buf + (off - w->start), n);
	return 0;
}

static int ff_set(struct ff *ff, uint64_t off, const void *buf, uint64_t n)
{
	int r = bstack_set(ff->base.bs, off, buf, n);
	return r == -ERANGE ? -EUCLEAN : r;
}

static int ff_get64(struct ff *ff, uint64_t off, uint64_t *v)
{
	uint8_t b[8];
	int r = ff_get(ff, off, b, 8);
	if (!r)
		*v = le64_get(b);
	return r;
}

static int ff_set64(struct ff *ff, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	le64_put(b, v);
	return ff_set(ff, off, b, 8);
}

static int ff_set_recovery(struct ff *ff, bool on)
{
	uint8_t b[4];
	le32_put(b, on ? 1 : 0);
	return ff_set(ff, FF_FLAGS_OFF, b, 4);
}

/* flags | reserved | free_head | intent as one write: the flag and the
 * intent change together.  free_head is rewritten with its current value
 * (we hold the lock; nothing else writes it). */
static int ff_set_header(struct ff *ff, bool on, uint64_t intent)
{
	uint8_t b[24] = { 0 };
	int r = ff_get(ff, FF_HEAD_OFF, b + 8, 8);
	if (r)
		return r;
	le32_put(b, on ? 1 : 0);
	le64_put(b + 16, intent);
	return ff_set(ff, FF_FLAGS_OFF, b, 24);
}

/*
 * Start a flagged operation.  intent (beyond the seed, in header bytes
 * 40..48 that the seed leaves unused) names the one block that must end
 * up free if the operation is cut: the block an alloc is taking (roll
 * back) or the block a dealloc is freeing (roll forward), 0 for none.
 * With it, recovery leaves no orphaned block behind.  Every begin and end
 * rewrites the intent, so a stale one never survives into another
 * operation.
 *
 * An operation that failed between begin and end (an I/O error, not a
 * crash) may have left a partial state: from then on the flag is never
 * cleared, so the next open recovers.
 */
static int ff_begin(struct ff *ff, uint64_t intent)
{
	if (ff->in_op)
		ff->dirty = true;
	ff->in_op = true;
	return ff_set_header(ff, true, intent);
}

static int ff_end(struct ff *ff)
{
	int r = ff_set_header(ff, ff->dirty, 0);
	if (!r)
		ff->in_op = false;
	return r;
}

static int ff_discard(struct ff *ff, uint64_t n)
{
	int r = bstack_discard(ff->base.bs, n);
	if (!r)
		BS_COUNT(&ff->base, n_tail_discards, 1);
	return r;
}

/* ---- the seed's plausibility tests ------------------------------------ */

static bool ff_bad_size(struct ff *ff, uint64_t size)
{
	return size < FF_MIN || size > ff_len(ff);
}

static bool ff_bad_start(struct ff *ff, uint64_t start)
{
	return start % 8 || start < FF_FIRST_PAYLOAD || start >= ff_len(ff);
}

static bool ff_bad_end(struct ff *ff, uint64_t end)
{
	uint64_t len = ff_len(ff);
	return end < FF_FIRST_PAYLOAD + FF_MIN || len < FF_BF || end > len - FF_BF;
}

/* max(len, 16) rounded up to 8; false when that overflows. */
static bool ff_align(uint64_t len, uint64_t *out)
{
	return align_up_ok(len < FF_MIN ? FF_MIN : len, 8, out);
}

/* A free-list pointer: 0, or a payload offset with room for next/prev. */
static bool ff_ptr_ok(struct ff *ff, uint64_t p)
{
	return p == 0 || (!ff_bad_start(ff, p) && p + 16 <= ff_len(ff));
}

/* Header of the block whose payload is at p: size and is_free, with the
 * size checked to be sane and the block inside the payload. */
static int ff_read_block(struct ff *ff, uint64_t p, uint64_t *size, bool *is_free)
{
	uint8_t h[16];
	uint64_t end;
	if (p < FF_FIRST_PAYLOAD)
		return -EUCLEAN;
	int r = ff_get(ff, p - FF_BH, h, 16);
	if (r)
		return r;
	*size = le64_get(h);
	*is_free = h[8] & 1;
	if (*size < FF_MIN || *size % 8 || !add_ok(p, *size, &end) ||
	    !range_ok(end, FF_BF, ff_len(ff)))
		return -EUCLEAN;
	return 0;
}

/*
 * Map a caller's slice to its block: the seed's start/end/size tests, then
 * the header must be an allocated block at least as large as the rounded
 * length whose footer agrees.  *size gets the block's payload size.
 */
static int ff_slice_block(struct ff *ff, struct bs_slice s, uint64_t *size)
{
	uint64_t aligned, end, foot;
	bool is_free;
	if (!ff_align(s.len, &aligned) || !add_ok(s.off, aligned, &end))
		return -EINVAL;
	if (ff_bad_start(ff, s.off) || ff_bad_end(ff, end) || ff_bad_size(ff, aligned))
		return -EINVAL;
	int r = ff_read_block(ff, s.off, size, &is_free);
	if (r)
		return r == -EUCLEAN ? -EINVAL : r;
	if (is_free || *size < aligned)
		return -EINVAL;
	r = ff_get64(ff, s.off + *size, &foot);
	if (r)
		return r;
	return foot == *size ? 0 : -EINVAL;
}

/* ---- free list -------------------------------------------------------- */

/* Seed unlink_from_free_list: repoint the neighbours of the free block at
 * p (prev first, then next).  The block itself is not touched. */
static int ff_unlink(struct ff *ff, uint64_t p)
{
	uint8_t b[16];
	int r = ff_get(ff, p, b, 16);
	if (r)
		return r;
	uint64_t next = le64_get(b), prev = le64_get(b + 8);
	if (!ff_ptr_ok(ff, next) || !ff_ptr_ok(ff, prev))
		return -EUCLEAN;
	r = ff_set64(ff, prev ? prev : FF_HEAD_OFF, next);
	if (!r && next)
		r = ff_set64(ff, next + 8, prev);
	return r;
}

/* Coalesce right: absorb the block after the one at bh (payload *size)
 * if it is free and well formed. */
static int ff_absorb_right(struct ff *ff, uint64_t bh, uint64_t *size)
{
	uint64_t len = ff_len(ff), nh = bh + FF_OVH + *size;
	uint8_t b[16];
	int r;
	if (nh + FF_BH > len)
		return 0;
	if ((r = ff_get(ff, nh, b, 16)))
		return r;
	uint64_t ns = le64_get(b);
	if (!(b[8] & 1) || ns < FF_MIN || ns % 8 || ns > len || nh + FF_OVH + ns > len)
		return 0;
	if ((r = ff_unlink(ff, nh + FF_BH)))
		return r;
	*size += ns + FF_OVH;
	return 0;
}

/* Coalesce left: merge into the block before bh, found by its footer and
 * confirmed by its header; *res becomes its header position. */
static int ff_merge_left(struct ff *ff, uint64_t bh, uint64_t *size, uint64_t *res)
{
	uint64_t ps;
	uint8_t b[16];
	int r;
	if (bh <= FF_ARENA)
		return 0;
	if ((r = ff_get64(ff, bh - FF_BF, &ps)))
		return r;
	if (ps < FF_MIN || ps % 8 || ps + FF_OVH > bh || bh - ps - FF_OVH < FF_ARENA)
		return 0;
	uint64_t ph = bh - ps - FF_OVH;
	if ((r = ff_get(ff, ph, b, 16)))
		return r;
	if (!(b[8] & 1) || le64_get(b) != ps)
		return 0;
	if ((r = ff_unlink(ff, ph + FF_BH)))
		return r;
	*size += ps + FF_OVH;
	*res = ph;
	return 0;
}

/*
 * Seed add_to_free_list: free the allocated block whose payload is at p,
 * coalescing right then left, and push the result at the head.  Called
 * with recovery_needed set; each step says what recovery finds if the
 * power goes after it.
 */
static int ff_add_free(struct ff *ff, uint64_t p)
{
	uint64_t bh = p - FF_BH, res = bh, size, head;
	uint8_t b[24];
	bool is_free;
	int r = ff_read_block(ff, p, &size, &is_free);
	if (r)
		return r;
	/* 1. mark free first: a crash from here on leaves it findable */
	le32_put(b, 1);
	if ((r = ff_set(ff, bh + 8, b, 4)))
		return r;
	/* 2, 3. unlink the free neighbours (the list is rebuilt anyway) */
	if ((r = ff_absorb_right(ff, bh, &size)) || (r = ff_merge_left(ff, bh, &size, &res)))
		return r;
	/* 4. header, then footer of the merged block (a crash between them
	 * is the partial-split pattern or a footer mismatch, both repaired) */
	if ((r = ff_set64(ff, res, size)) || (r = ff_set64(ff, res + FF_BH + size, size)))
		return r;
	/* 5. flags + next = old head + prev = 0 in one write, then the head,
	 * then the old head's back link (a crash in between: recovery
	 * rebuilds the list) */
	if ((r = ff_get64(ff, FF_HEAD_OFF, &head)))
		return r;
	if (!ff_ptr_ok(ff, head))
		return -EUCLEAN;
	memset(b, 0, sizeof b);
	le32_put(b, 1);
	le64_put(b + 8, head);
	if ((r = ff_set(ff, res + 8, b, 24)))
		return r;
	if ((r = ff_set64(ff, FF_HEAD_OFF, res + FF_BH)))
		return r;
	if (head)
		r = ff_set64(ff, head + 8, res + FF_BH);
	return r;
}

/* Seed find_large_enough_block: first free block with size >= need.
 * *found = 0 when none.  Bounded: a cycle is -EUCLEAN.  Beyond the seed
 * (not in seed-exact mode): the best fit, the smallest such block (the
 * first of equals; an exact fit ends the walk), so that a small request
 * does not cut into the one free block a large file would fit in. */
static int ff_find(struct ff *ff, uint64_t need, uint64_t *found, uint64_t *fsize)
{
	bool best = !ff->base.seed_exact;
	uint64_t p, max = ff_max_blocks(ff), len = ff_len(ff);
	uint8_t b[24];
	int r = ff_get64(ff, FF_HEAD_OFF, &p);
	*found = 0;
	*fsize = 0;
	if (r)
		return r;
	for (uint64_t steps = 0; p; steps++) {
		if (steps > max || !ff_ptr_ok(ff, p))
			return -EUCLEAN;
		if ((r = ff_get(ff, p - FF_BH, b, 24)))
			return r;
		uint64_t size = le64_get(b);
		if (!(b[8] & 1) || ff_bad_size(ff, size) || size % 8 ||
		    p + size + FF_BF > len)
			return -EUCLEAN;
		if (size >= need && (!*found || size < *fsize)) {
			*found = p;
			*fsize = size;
			if (!best || size == need)
				return 0;
		}
		p = le64_get(b + 16);
	}
	return 0;
}

static bool ff_splits(uint64_t found_size, uint64_t req)
{
	return found_size >= req + FF_OVH + FF_MIN;
}

/* Where unlink_block puts the payload: the back of a split block, else
 * the whole found block from the front.  Beyond the seed (not in
 * seed-exact mode) always the front: ff_take_front. */
static uint64_t ff_taken_at(struct ff *ff, uint64_t found, uint64_t found_size,
			    uint64_t req)
{
	return ff_splits(found_size, req) && ff->base.seed_exact ? found + found_size - req
								 : found;
}

/*
 * Beyond the seed: split the free block at found (payload fsize) and take
 * its FRONT, so the remainder is the allocation's free right neighbour and
 * a growing file grows into it in place (ff_grow_in_place) instead of
 * moving and leaving a hole.  Called with recovery_needed set and the
 * intent naming found, like the seed's back split; recovery rebuilds the
 * free list, so only the block structure matters at each cut:
 *   1. the remainder's header and list links, inside the free payload
 *      (a cut: still one free block, the bytes are free space);
 *   2. the outer footer says the remainder's size (a cut: the seed's
 *      partial-split pattern, repaired into two free blocks that coalesce);
 *   3. the taken block: header (req, allocated), content, footer, one call
 *      (a cut: the intent's block is allocated, recovery frees it and it
 *      coalesces with the remainder: the old free block again);
 *   4. the neighbours' links point at the remainder.
 */
static int ff_take_front(struct ff *ff, uint64_t found, uint64_t fsize, uint64_t req,
			 uint8_t *buf)
{
	uint64_t rem = fsize - req - FF_OVH, np = found + req + FF_OVH;
	uint8_t links[16], h[32] = { 0 };
	int r = ff_get(ff, found, links, 16);
	if (r)
		return r;
	uint64_t next = le64_get(links), prev = le64_get(links + 8);
	if (!ff_ptr_ok(ff, next) || !ff_ptr_ok(ff, prev))
		return -EUCLEAN;
	le64_put(h, rem);
	le32_put(h + 8, 1);
	memcpy(h + 16, links, 16);
	if ((r = ff_set(ff, np - FF_BH, h, 32)) ||                /* 1 */
	    (r = ff_set64(ff, np + rem, rem)))                     /* 2 */
		return r;
	le64_put(buf, req);
	memset(buf + 8, 0, 8);
	le64_put(buf + FF_BH + req, req);
	if ((r = ff_set(ff, found - FF_BH, buf, FF_OVH + req)))   /* 3 */
		return r;
	if ((r = ff_set64(ff, prev ? prev : FF_HEAD_OFF, np)))    /* 4 */
		return r;
	return next ? ff_set64(ff, next + 8, np) : 0;
}

/*
 * Seed unlink_block: take req bytes out of the free block at found.  buf
 * is FF_OVH + req bytes: [16 header | req content | 8 footer], the content
 * to land in the new payload.  Called with recovery_needed set.
 */
static int ff_take(struct ff *ff, uint64_t found, uint64_t fsize, uint64_t req,
		   uint8_t *buf)
{
	int r;
	if (ff_splits(fsize, req) && !ff->base.seed_exact)
		return ff_take_front(ff, found, fsize, req, buf);
	if (ff_splits(fsize, req)) {
		uint64_t rem = fsize - req - FF_OVH;
		uint8_t u[24] = { 0 };
		le64_put(buf + FF_BH + req, req);
		/* 1. free block's new footer + allocated block's header (flags 0) */
		le64_put(u, rem);
		le64_put(u + 8, req);
		if ((r = ff_set(ff, found + rem, u, 24)))
			return r;
		/* 2. allocated payload + footer (the old outer footer): from
		 * here recovery sees the partial-split pattern */
		if ((r = ff_set(ff, found + rem + FF_OVH, buf + FF_BH, req + FF_BF)))
			return r;
		/* 3. shrink the free block's header; its list links are unchanged */
		return ff_set64(ff, found - FF_BH, rem);
	}
	uint8_t pb[16];
	if ((r = ff_get(ff, found, pb, 16)))
		return r;
	uint64_t next = le64_get(pb), prev = le64_get(pb + 8);
	if (!ff_ptr_ok(ff, next) || !ff_ptr_ok(ff, prev))
		return -EUCLEAN;
	/* backward pointer first, then forward: the forward chain stays
	 * walkable; the block is orphaned until its flag is cleared */
	if ((r = ff_set64(ff, prev ? prev : FF_HEAD_OFF, next)))
		return r;
	if (next && (r = ff_set64(ff, next + 8, prev)))
		return r;
	/* clear is_free + reserved and write the content in one call */
	memset(buf + 8, 0, 8);
	return ff_set(ff, found - 8, buf + 8, 8 + req);
}

/* Seed cascade_discard_free_tail: after a tail discard, drop free blocks
 * newly at the tail; the flag only when there is one. */
static int ff_cascade(struct ff *ff)
{
	bool flagged = false;
	uint8_t h[16];
	int r = 0;
	for (uint64_t steps = 0; steps <= ff_max_blocks(ff); steps++) {
		uint64_t len = ff_len(ff), sz;
		if (len <= FF_ARENA)
			break;
		if ((r = ff_get64(ff, len - FF_BF, &sz)))
			return r;
		if (sz < FF_MIN || sz % 8 || sz > len || len - sz < FF_ARENA + FF_OVH)
			break;
		uint64_t hdr = len - sz - FF_OVH;
		if ((r = ff_get(ff, hdr, h, 16)))
			return r;
		if (!(h[8] & 1) || le64_get(h) != sz)
			break;
		if (!flagged) {
			if ((r = ff_begin(ff, 0)))
				return r;
			flagged = true;
		}
		if ((r = ff_unlink(ff, hdr + FF_BH)) || (r = ff_discard(ff, sz + FF_OVH)))
			return r;
	}
	return flagged ? ff_end(ff) : 0;
}

/* Free the allocated block at payload p of size size (validated):
 * discard at the tail, else coalesce under the flag. */
static int ff_free_block(struct ff *ff, uint64_t p, uint64_t size)
{
	int r;
	if (p + size + FF_BF == ff_len(ff)) {
		if ((r = ff_discard(ff, size + FF_OVH)))
			return r;
		return ff_cascade(ff);
	}
	if ((r = ff_begin(ff, p)) || (r = ff_add_free(ff, p)))
		return r;
	return ff_end(ff);
}

/* ---- linear scan ------------------------------------------------------ */

static int blks_push(struct ff_blks *bl, uint64_t pos, uint64_t size, bool is_free)
{
	if (bl->n == bl->cap) {
		size_t cap = bl->cap ? bl->cap * 2 : 64;
		struct ff_blk *v = realloc(bl->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		bl->v = v;
		bl->cap = cap;
	}
	bl->v[bl->n++] = (struct ff_blk){ pos, size, is_free };
	return 0;
}

/* Index of the block whose payload is at p, or -1. */
static long ff_blk_index(const struct ff_blks *bl, uint64_t p)
{
	size_t lo = 0, hi = bl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t q = bl->v[mid].pos + FF_BH;
		if (q == p)
			return (long)mid;
		if (q < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * Walk the arena by header sizes.  Stops at the first block that is not
 * well formed and reports where: *bad = its position (0 when the whole
 * arena parsed).  Footers are not checked here.
 */
static int ff_scan(struct ff *ff, struct ff_blks *bl, uint64_t *bad)
{
	uint64_t len = ff_len(ff), pos = FF_ARENA;
	uint8_t h[16];
	struct ff_win w;
	int r = 0;
	*bad = 0;
	ff_win_init(&w);
	while (pos < len) {
		uint64_t size, total;
		if (len - pos < FF_OVH) {
			*bad = pos;
			break;
		}
		if ((r = ff_wget(ff, &w, pos, h, 16)))
			break;
		size = le64_get(h);
		if (size < FF_MIN || size % 8 || !add_ok(size, FF_OVH, &total) ||
		    total > len - pos) {
			*bad = pos;
			break;
		}
		if ((r = blks_push(bl, pos, size, h[8] & 1)))
			break;
		pos += total;
	}
	free(w.buf);
	return r;
}

/* ---- recovery --------------------------------------------------------- */

/*
 * The seed's partial-split test for the block at pos whose header says
 * size: outer footer F != size, inner footer at R = size - F - 24 says R
 * and the header after it says F.  *fixed = R when that is the pattern.
 */
static int ff_partial_split(struct ff *ff, uint64_t pos, uint64_t size, uint64_t *fixed)
{
	uint64_t f, inner, second;
	int r = ff_get64(ff, pos + FF_BH + size, &f);
	*fixed = 0;
	if (r)
		return r;
	if (f == size || f < FF_MIN || f % 8 || size < f + FF_OVH + FF_MIN)
		return 0;
	uint64_t rr = size - f - FF_OVH;
	uint64_t ipos = pos + FF_BH + rr, shpos = ipos + FF_BF;
	if (shpos + FF_BH > ff_len(ff))
		return 0;
	if ((r = ff_get64(ff, ipos, &inner)) || (r = ff_get64(ff, shpos, &second)))
		return r;
	if (inner == rr && second == f)
		*fixed = rr;
	return 0;
}

/* Seed recovery scan: truncate a partial or corrupt tail, repair partial
 * splits, collect every block. */
static int ff_recover_scan(struct ff *ff, struct ff_blks *bl)
{
	uint64_t pos = FF_ARENA;
	uint8_t h[16];
	int r;
	while (pos < ff_len(ff)) {
		uint64_t len = ff_len(ff), rem = len - pos, size, total, fixed;
		if (rem < FF_OVH)
			return ff_discard(ff, rem);
		if ((r = ff_get(ff, pos, h, 16)))
			return r;
		size = le64_get(h);
		if (size < FF_MIN || size % 8 || !add_ok(size, FF_OVH, &total) ||
		    total > rem)
			return ff_discard(ff, rem);
		if ((r = ff_partial_split(ff, pos, size, &fixed)))
			return r;
		if (fixed) {
			if ((r = ff_set64(ff, pos, fixed)))
				return r;
			size = fixed;
			total = fixed + FF_OVH;
		}
		if ((r = blks_push(bl, pos, size, h[8] & 1)))
			return r;
		pos += total;
	}
	return 0;
}

/* Beyond the seed: the intent's block must end up free.  It is a block
 * start only once the cut operation had made it one (a taken block, or a
 * block not yet merged into a neighbour). */
static int ff_recover_intent(struct ff *ff, struct ff_blks *bl, uint64_t intent)
{
	uint8_t b[4];
	long i = intent ? ff_blk_index(bl, intent) : -1;
	if (i < 0 || bl->v[i].free)
		return 0;
	le32_put(b, 1);
	bl->v[i].free = true;
	return ff_set(ff, intent - 8, b, 4);
}

/* Beyond the seed: make every footer agree with its header (the header
 * is what the scan trusted). */
static int ff_recover_footers(struct ff *ff, struct ff_blks *bl)
{
	for (size_t i = 0; i < bl->n; i++) {
		uint64_t at = bl->v[i].pos + FF_BH + bl->v[i].size, f;
		int r = ff_get64(ff, at, &f);
		if (!r && f != bl->v[i].size)
			r = ff_set64(ff, at, bl->v[i].size);
		if (r)
			return r;
	}
	return 0;
}

/* Beyond the seed: merge runs of adjacent free blocks (a crash inside
 * coalescing leaves them).  Header first, then footer: a crash between
 * is again a partial split or a footer mismatch, so this is idempotent. */
static int ff_recover_coalesce(struct ff *ff, struct ff_blks *bl)
{
	size_t k = 0;
	for (size_t i = 0; i < bl->n; k++) {
		struct ff_blk b = bl->v[i++];
		bool merged = false;
		while (b.free && i < bl->n && bl->v[i].free) {
			b.size += FF_OVH + bl->v[i++].size;
			merged = true;
		}
		if (merged) {
			int r = ff_set64(ff, b.pos, b.size);
			if (!r)
				r = ff_set64(ff, b.pos + FF_BH + b.size, b.size);
			if (r)
				return r;
		}
		bl->v[k] = b;
	}
	bl->n = k;
	return 0;
}

static int ff_recover(struct ff *ff)
{
	struct ff_blks bl = { 0 };
	uint8_t b[16];
	uint64_t intent;
	int r;
	/* open may run recovery with the flag clear (bad tail, bad head):
	 * set it so that a crash during recovery runs it again */
	if ((r = ff_get64(ff, FF_INTENT_OFF, &intent)) || (r = ff_set_recovery(ff, true)))
		return r;
	if ((r = ff_recover_scan(ff, &bl)) || (r = ff_recover_intent(ff, &bl, intent)) ||
	    (r = ff_recover_footers(ff, &bl)) || (r = ff_recover_coalesce(ff, &bl)))
		goto out;
	/* beyond the seed: the tail block is never free (after coalescing
	 * the block before a free tail is allocated) */
	if (bl.n && bl.v[bl.n - 1].free) {
		if ((r = ff_discard(ff, bl.v[bl.n - 1].size + FF_OVH)))
			goto out;
		bl.n--;
	}
	/* seed: rebuild the list in address order, no stored pointer trusted */
	uint64_t prev = 0, first = 0;
	for (size_t i = 0; i < bl.n; i++) {
		if (!bl.v[i].free)
			continue;
		uint64_t cur = bl.v[i].pos + FF_BH, next = 0;
		for (size_t j = i + 1; j < bl.n && !next; j++)
			if (bl.v[j].free)
				next = bl.v[j].pos + FF_BH;
		le64_put(b, next);
		le64_put(b + 8, prev);
		if ((r = ff_set(ff, cur, b, 16)))
			goto out;
		if (!first)
			first = cur;
		prev = cur;
	}
	/* head, flag and intent cleared in one write */
	uint8_t h[24] = { 0 };
	le64_put(h + 8, first);
	r = ff_set(ff, FF_FLAGS_OFF, h, 24);
	if (!r)
		ff->recovery_runs++;
out:
	free(bl.v);
	return r;
}

/* ---- alloc / dealloc -------------------------------------------------- */

static int ff_alloc_locked(struct ff *ff, uint64_t len, struct bs_slice *out)
{
	uint64_t an, found, fsize, total, off;
	int r;
	if (len == 0) {
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (!ff_align(len, &an) || !add_ok(an, FF_OVH, &total))
		return -EFBIG;
	if ((r = ff_find(ff, an, &found, &fsize)))
		return r;
	uint8_t *buf = calloc(1, total);
	if (!buf)
		return -ENOMEM;
	if (found) {
		off = ff_taken_at(ff, found, fsize, an);
		if (!(r = ff_begin(ff, off)) && !(r = ff_take(ff, found, fsize, an, buf)))
			r = ff_end(ff);
	} else {
		/* one push of the whole block: no partial state, no flag */
		le64_put(buf, an);
		le64_put(buf + FF_BH + an, an);
		r = bstack_push(ff->base.bs, buf, total, &off);
		off += FF_BH;
	}
	free(buf);
	if (r)
		return r;
	*out = (struct bs_slice){ off, len };
	return 0;
}

static int ff_alloc(struct bs_alloc *a, uint64_t len, struct bs_slice *out)
{
	struct ff *ff = to_ff(a);
	pthread_mutex_lock(&ff->lock);
	int r = ff_alloc_locked(ff, len, out);
	pthread_mutex_unlock(&ff->lock);
	if (!r && len)
		BS_COUNT(a, n_allocs, 1);
	return r;
}

/*
 * Bulk alloc (beyond the seed, which has none; alloc.h's generic one
 * allocates slice by slice, so a cut between two allocs orphans the ones
 * already taken).  All requested blocks are built in one buffer
 * [header | zeroed payload | footer]... and appended with ONE push: a
 * BStack call is atomic (the header's length is its commit point), so a
 * cut leaves none of them or all of them, never an orphan, and the last
 * pushed block is allocated, so the tail invariant holds.  Each block is
 * exactly what ff_alloc would push, so the image stays the seed's format.
 *
 * Why not the free list: taking k > 1 blocks from it is k flagged
 * ff_take steps, and the intent slot (header 40..48, the only bytes the
 * seed leaves unused) names one block.  A cut after the first take leaves
 * that block allocated and unnamed: recovery cannot tell it from a live
 * one, so reclaim() would find it: a leak.  Recording every taken block
 * would need room the seed's header does not have.  So only a request
 * with one non-zero length uses the free list: that is a plain ff_alloc,
 * already leak-free through its intent.  The cost is that a bulk of two
 * or more grows the image even when free blocks would fit.
 */
static int ff_bulk_size(const uint64_t *lens, size_t n, uint64_t *total, size_t *nz,
			size_t *last)
{
	uint64_t an, blk;
	*total = 0;
	*nz = 0;
	for (size_t i = 0; i < n; i++) {
		if (!lens[i])
			continue;
		if (!ff_align(lens[i], &an) || !add_ok(an, FF_OVH, &blk) ||
		    !add_ok(*total, blk, total))
			return -EFBIG;
		(*nz)++;
		*last = i;
	}
	/* the whole run must be addressable in memory, one buffer */
	return *total > SIZE_MAX ? -EFBIG : 0;
}

static int ff_bulk_push(struct ff *ff, const uint64_t *lens, size_t n, uint64_t total,
			struct bs_slice *out)
{
	/* every ff_align below succeeds: ff_bulk_size checked each length */
	uint64_t base, pos = 0, an = 0;
	uint8_t *buf = calloc(1, (size_t)total);
	if (!buf)
		return -ENOMEM;
	/* headers (flags 0: allocated) and footers; payloads stay zero */
	for (size_t i = 0; i < n; i++) {
		if (!lens[i])
			continue;
		ff_align(lens[i], &an);
		le64_put(buf + pos, an);
		le64_put(buf + pos + FF_BH + an, an);
		pos += an + FF_OVH;
	}
	int r = bstack_push(ff->base.bs, buf, total, &base);
	free(buf);
	if (r)
		return r;
	/* only now hand out the slices: on error out[] was not promised */
	pos = base;
	for (size_t i = 0; i < n; i++) {
		if (!lens[i]) {
			out[i] = (struct bs_slice){ 0, 0 };
			continue;
		}
		ff_align(lens[i], &an);
		out[i] = (struct bs_slice){ pos + FF_BH, lens[i] };
		pos += an + FF_OVH;
	}
	return 0;
}

static int ff_alloc_bulk_locked(struct ff *ff, const uint64_t *lens, size_t n,
				struct bs_slice *out)
{
	uint64_t total;
	size_t nz, last = 0;
	int r = ff_bulk_size(lens, n, &total, &nz, &last);
	if (r)
		return r;
	if (nz == 1) {
		/* one block: the ordinary first-fit alloc (one intent) */
		struct bs_slice s;
		if ((r = ff_alloc_locked(ff, lens[last], &s)))
			return r;
		for (size_t i = 0; i < n; i++)
			out[i] = i == last ? s : (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (nz == 0) {
		for (size_t i = 0; i < n; i++)
			out[i] = (struct bs_slice){ 0, 0 };
		return 0;
	}
	return ff_bulk_push(ff, lens, n, total, out);
}

static int ff_alloc_bulk(struct bs_alloc *a, const uint64_t *lens, size_t n,
			 struct bs_slice *out)
{
	struct ff *ff = to_ff(a);
	pthread_mutex_lock(&ff->lock);
	int r = ff_alloc_bulk_locked(ff, lens, n, out);
	pthread_mutex_unlock(&ff->lock);
	for (size_t i = 0; i < n && !r; i++)
		if (lens[i])
			BS_COUNT(a, n_allocs, 1);
	return r;
}

static int ff_dealloc_locked(struct ff *ff, struct bs_slice s)
{
	uint64_t size;
	if (s.len == 0 && s.off == 0)
		return 0;
	int r = ff_slice_block(ff, s, &size);
	if (!r)
		r = ff_free_block(ff, s.off, size);
	if (!r)
		BS_COUNT(&ff->base, n_deallocs, 1);
	return r;
}

static int ff_dealloc(struct bs_alloc *a, struct bs_slice s)
{
	struct ff *ff = to_ff(a);
	pthread_mutex_lock(&ff->lock);
	int r = ff_dealloc_locked(ff, s);
	pthread_mutex_unlock(&ff->lock);
	return r;
}

/* ---- realloc ---------------------------------------------------------- */

static int ff_zero(struct ff *ff, uint64_t off, uint64_t n)
{
	return n ? bstack_zero(ff->base.bs, off, n) : 0;
}

/* Seed tail paths for the block at off of size size that ends the stack.
 * Grow: extend, zero [len, old footer], header, footer.  Shrink: footer,
 * header, discard.  (No flag, as the seed: open's tail check catches a
 * crash in between.) */
static int ff_tail_resize(struct ff *ff, struct bs_slice s, uint64_t size,
			  uint64_t an, uint64_t new_len)
{
	int r;
	if (an > size) {
		if ((r = bstack_extend(ff->base.bs, an - size, NULL)) ||
		    (r = ff_zero(ff, s.off + s.len, size + FF_BF - s.len)) ||
		    (r = ff_set64(ff, s.off - FF_BH, an)))
			return r;
		return ff_set64(ff, s.off + an, an);
	}
	if ((r = ff_set64(ff, s.off + an, an)) || (r = ff_set64(ff, s.off - FF_BH, an)) ||
	    (r = ff_discard(ff, size - an)))
		return r;
	/* only when the block was larger than the slice: bytes past the old
	 * length inside the block may be stale */
	return new_len > s.len ? ff_zero(ff, s.off + s.len, new_len - s.len) : 0;
}

/* Seed merge with a free right neighbour (nb = its payload, ns its size),
 * with or without a split of the merged block. */
static int ff_merge_next(struct ff *ff, struct bs_slice s, uint64_t size, uint64_t nb,
			 uint64_t ns, uint64_t an)
{
	uint64_t merged = size + FF_OVH + ns, zlen = ns + FF_OVH + FF_BF, head;
	int r;
	/* pre-zero the stale tail of the current block: one idempotent write
	 * outside the live slice, so before the flag */
	if (s.len < size && (r = ff_zero(ff, s.off + s.len, size - s.len)))
		return r;
	uint8_t *z = calloc(1, zlen);
	if (!z)
		return -ENOMEM;
	if ((r = ff_begin(ff, 0)) || (r = ff_unlink(ff, nb)))
		goto out;
	if (merged >= an + FF_OVH + FF_MIN) {
		uint64_t rem = merged - an - FF_OVH, nfs = s.off + an + FF_OVH;
		uint64_t afo = an - size, fho = afo + FF_BF, fpo = afo + FF_OVH;
		if ((r = ff_get64(ff, FF_HEAD_OFF, &head)))
			goto out;
		if (!ff_ptr_ok(ff, head)) {
			r = -EUCLEAN;
			goto out;
		}
		le64_put(z + afo, an);
		le64_put(z + fho, rem);
		le32_put(z + fho + 8, 1);
		le64_put(z + fpo, head);
		le64_put(z + ns + FF_OVH, rem);
		/* header = merged first: a crash after the big write is then
		 * the partial-split pattern recovery repairs */
		if ((r = ff_set64(ff, s.off - FF_BH, merged)) ||
		    (r = ff_set(ff, s.off + size, z, zlen)) ||
		    (r = ff_set64(ff, s.off - FF_BH, an)) ||
		    (r = ff_set64(ff, FF_HEAD_OFF, nfs)))
			goto out;
		if (head && (r = ff_set64(ff, head + 8, nfs)))
			goto out;
	} else {
		le64_put(z + ns + FF_OVH, merged);
		if ((r = ff_set64(ff, s.off - FF_BH, merged)) ||
		    (r = ff_set(ff, s.off + size, z, zlen)))
			goto out;
	}
	r = ff_end(ff);
out:
	free(z);
	return r;
}

/*
 * The seed's non-moving realloc paths, in its order: same bucket, tail,
 * block already big enough, merge with the next free block.  *done =
 * false (nothing changed) when only a move would do.
 */
static int ff_in_place(struct ff *ff, struct bs_slice s, uint64_t size,
		       uint64_t new_len, bool *done)
{
	uint64_t ac, an, len = ff_len(ff);
	uint8_t h[16];
	int r;
	*done = true;
	if (!ff_align(s.len, &ac) || !ff_align(new_len, &an))
		return -EFBIG;
	/* same bucket, or exactly the block we have: bytes past the old
	 * length may be stale from a larger slice, zero them */
	if (an == ac || an == size)
		return new_len > s.len ? ff_zero(ff, s.off + s.len, new_len - s.len) : 0;
	if (s.off + size + FF_BF == len)
		return ff_tail_resize(ff, s, size, an, new_len);
	if (an < size)   /* the block is big enough already */
		return new_len > s.len ? ff_zero(ff, s.off + s.len, new_len - s.len) : 0;
	uint64_t nb = s.off + size + FF_OVH;
	if (nb + FF_BF + FF_MIN <= len) {
		if ((r = ff_get(ff, nb - FF_BH, h, 16)))
			return r;
		uint64_t ns = le64_get(h);
		if ((h[8] & 1) && ns >= FF_MIN && ns % 8 == 0 &&
		    size + FF_OVH + ns >= an) {
			if (!range_ok(nb, ns + FF_BF, len))
				return -EUCLEAN;
			return ff_merge_next(ff, s, size, nb, ns, an);
		}
	}
	*done = false;
	return 0;
}

/* Seed move paths: into a found free block, or a new block pushed at the
 * tail; then the old block is freed.  All under the flag. */
static int ff_move(struct ff *ff, struct bs_slice s, uint64_t new_len, uint64_t *noff)
{
	uint64_t an, total, found, fsize, copy;
	int r;
	if (!ff_align(new_len, &an) || !add_ok(an, FF_OVH, &total))
		return -EFBIG;
	if ((r = ff_find(ff, an, &found, &fsize)))
		return r;
	uint8_t *buf = calloc(1, total);
	if (!buf)
		return -ENOMEM;
	copy = s.len < an ? s.len : an;
	if ((r = ff_get(ff, s.off, buf + FF_BH, copy)))
		goto out;
	/* intent: the new block until it holds the data (a cut rolls the
	 * move back), then the old block (a cut rolls it forward) */
	if (found) {
		*noff = ff_taken_at(ff, found, fsize, an);
		if ((r = ff_begin(ff, *noff)) || (r = ff_take(ff, found, fsize, an, buf)))
			goto out;
	} else {
		le64_put(buf, an);
		le64_put(buf + FF_BH + an, an);
		*noff = ff_len(ff) + FF_BH;
		if ((r = ff_begin(ff, *noff)))
			goto out;
		if ((r = bstack_push(ff->base.bs, buf, total, NULL))) {
			/* a failed push changes nothing (e.g. -ENOSPC) */
			ff_end(ff);
			goto out;
		}
	}
	if ((r = ff_set64(ff, FF_INTENT_OFF, s.off)) || (r = ff_add_free(ff, s.off)) ||
	    (r = ff_end(ff)))
		goto out;
	BS_COUNT(&ff->base, n_bytes_copied, copy);
out:
	free(buf);
	return r;
}

static int ff_realloc_locked(struct ff *ff, struct bs_slice s, uint64_t new_len,
			     struct bs_slice *out)
{
	uint64_t size, noff;
	bool done;
	int r;
	if (s.len == 0 && s.off == 0)
		return ff_alloc_locked(ff, new_len, out);
	if (new_len == 0) {
		if ((r = ff_dealloc_locked(ff, s)))
			return r;
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if ((r = ff_slice_block(ff, s, &size)) || (r = ff_in_place(ff, s, size, new_len, &done)))
		return r;
	if (done) {
		BS_COUNT(&ff->base, n_reallocs_in_place, 1);
		*out = (struct bs_slice){ s.off, new_len };
		return 0;
	}
	if ((r = ff_move(ff, s, new_len, &noff)))
		return r;
	BS_COUNT(&ff->base, n_reallocs_moved, 1);
	*out = (struct bs_slice){ noff, new_len };
	return 0;
}

static int ff_realloc(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
		      struct bs_slice *out)
{
	struct ff *ff = to_ff(a);
	pthread_mutex_lock(&ff->lock);
	int r = ff_realloc_locked(ff, s, new_len, out);
	pthread_mutex_unlock(&ff->lock);
	if (!r)
		BS_COUNT(a, n_reallocs, 1);
	return r;
}

static int ff_grow_in_place(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
			    struct bs_slice *out, bool *done)
{
	struct ff *ff = to_ff(a);
	uint64_t size;
	int r;
	*done = false;
	if (s.len == 0 && s.off == 0)
		return 0;   /* growing the null slice is an alloc: a move */
	if (new_len <= s.len)
		return -EINVAL;
	pthread_mutex_lock(&ff->lock);
	r = ff_slice_block(ff, s, &size);
	if (!r)
		r = ff_in_place(ff, s, size, new_len, done);
	pthread_mutex_unlock(&ff->lock);
	if (r)
		*done = false;   /* e.g. -ENOSPC from the tail extend: nothing grew */
	if (!r && *done) {
		*out = (struct bs_slice){ s.off, new_len };
		BS_COUNT(a, n_reallocs, 1);
		BS_COUNT(a, n_reallocs_in_place, 1);
	}
	return r;
}

/* ---- introspection ---------------------------------------------------- */

static int ff_extent(struct bs_alloc *a, struct bs_slice s, uint64_t *start,
		     uint64_t *len)
{
	struct ff *ff = to_ff(a);
	uint64_t size;
	if (s.len == 0 && s.off == 0) {
		*start = 0;
		*len = 0;
		return 0;
	}
	pthread_mutex_lock(&ff->lock);
	int r = ff_slice_block(ff, s, &size);
	pthread_mutex_unlock(&ff->lock);
	if (r)
		return r;
	*start = s.off - FF_BH;
	*len = size + FF_OVH;
	return 0;
}

static void ff_stats(struct bs_alloc *a, struct bs_alloc_stats *st)
{
	struct ff *ff = to_ff(a);
	struct ff_blks bl = { 0 };
	uint64_t bad, n_list = 0, p, max;
	uint8_t b[24];
	pthread_mutex_lock(&ff->lock);
	uint64_t len = ff_len(ff);
	st->arena_start = FF_ARENA;
	st->arena_bytes = len > FF_ARENA ? len - FF_ARENA : 0;
	if (!ff_scan(ff, &bl, &bad)) {
		st->overhead_bytes = FF_ARENA + FF_OVH * bl.n;
		st->live_blocks_known = true;
		for (size_t i = 0; i < bl.n; i++) {
			if (!bl.v[i].free) {
				st->live_blocks++;
				st->live_bytes += bl.v[i].size;
				continue;
			}
			st->free_bytes += bl.v[i].size;
			if (bl.v[i].size > st->largest_free)
				st->largest_free = bl.v[i].size;
		}
	}
	/* free-list length: the list as linked, bounded */
	max = ff_max_blocks(ff);
	if (!ff_get64(ff, FF_HEAD_OFF, &p)) {
		while (p && n_list <= max && ff_ptr_ok(ff, p) && !ff_get(ff, p - FF_BH, b, 24)) {
			n_list++;
			p = le64_get(b + 16);
		}
	}
	pthread_mutex_unlock(&ff->lock);
	free(bl.v);
	st->free_blocks = n_list;
	st->extra[st->n_extra++] = (struct bs_alloc_extra){ "free_list_length", n_list };
	st->extra[st->n_extra++] =
		(struct bs_alloc_extra){ "recovery_runs", ff->recovery_runs };
}

/* ---- check ------------------------------------------------------------ */

struct ff_report {
	bs_report_fn fn;
	void *ctx;
	int n;
};

static void __attribute__((format(printf, 2, 3)))
ff_violation(struct ff_report *rp, const char *fmt, ...)
{
	char msg[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rp->n++;
	if (rp->fn)
		rp->fn(rp->ctx, msg);
}

/* The arena by headers: footers, adjacency, the tail. */
static int ff_check_blocks(struct ff *ff, struct ff_blks *bl, struct ff_report *rp)
{
	uint64_t bad, f;
	uint8_t fb[8];
	struct ff_win w;
	int r = ff_scan(ff, bl, &bad);
	if (r)
		return r;
	if (bad)
		ff_violation(rp, "block at %llu: size is not sane or runs past the end "
			     "(the scan stops there)", (unsigned long long)bad);
	ff_win_init(&w);
	for (size_t i = 0; i < bl->n; i++) {
		const struct ff_blk *b = &bl->v[i];
		if ((r = ff_wget(ff, &w, b->pos + FF_BH + b->size, fb, 8))) {
			free(w.buf);
			return r;
		}
		f = le64_get(fb);
		if (f != b->size)
			ff_violation(rp, "block at %llu: footer %llu != header %llu",
				     (unsigned long long)b->pos, (unsigned long long)f,
				     (unsigned long long)b->size);
		if (b->free && i + 1 < bl->n && bl->v[i + 1].free)
			ff_violation(rp, "blocks at %llu and %llu: adjacent free blocks",
				     (unsigned long long)b->pos,
				     (unsigned long long)bl->v[i + 1].pos);
	}
	free(w.buf);
	if (!bad && bl->n && bl->v[bl->n - 1].free)
		ff_violation(rp, "block at %llu: free block at the tail",
			     (unsigned long long)bl->v[bl->n - 1].pos);
	return 0;
}

/* The free list against the scan: members are free blocks, each once,
 * prev/next symmetric, every free block on it.  Bounded by the number of
 * blocks: a cycle shows as a repeat. */
static int ff_check_list(struct ff *ff, const struct ff_blks *bl, struct ff_report *rp)
{
	uint64_t p, prev = 0, steps = 0;
	uint8_t b[16];
	bool *seen = calloc(bl->n ? bl->n : 1, sizeof *seen);
	int r;
	if (!seen)
		return -ENOMEM;
	if ((r = ff_get64(ff, FF_HEAD_OFF, &p)))
		goto out;
	for (; p; steps++) {
		long i = ff_blk_index(bl, p);
		if (i < 0) {
			ff_violation(rp, "free list: %llu is not a block's payload",
				     (unsigned long long)p);
			break;
		}
		if (seen[i]) {
			ff_violation(rp, "free list: cycle at %llu", (unsigned long long)p);
			break;
		}
		seen[i] = true;
		if (!bl->v[i].free)
			ff_violation(rp, "free list: block at %llu is not marked free",
				     (unsigned long long)bl->v[i].pos);
		if ((r = ff_get(ff, p, b, 16)))
			goto out;
		if (le64_get(b + 8) != prev)
			ff_violation(rp, "free list: %llu has prev %llu, expected %llu",
				     (unsigned long long)p,
				     (unsigned long long)le64_get(b + 8),
				     (unsigned long long)prev);
		prev = p;
		p = le64_get(b);
	}
	for (size_t i = 0; i < bl->n; i++)
		if (bl->v[i].free && !seen[i])
			ff_violation(rp, "block at %llu: free but not on the free list",
				     (unsigned long long)bl->v[i].pos);
out:
	free(seen);
	return r;
}

static int ff_check(struct bs_alloc *a, bs_report_fn report, void *ctx)
{
	struct ff *ff = to_ff(a);
	struct ff_report rp = { report, ctx, 0 };
	struct ff_blks bl = { 0 };
	uint8_t h[FF_HEADER];
	int r;
	pthread_mutex_lock(&ff->lock);
	if (ff_len(ff) < FF_ARENA) {
		ff_violation(&rp, "payload shorter than the 48-byte header");
		r = 0;
		goto out;
	}
	if ((r = ff_get(ff, FF_RESERVED, h, FF_HEADER)))
		goto out;
	if (memcmp(h, ff_magic, FF_MAGIC_PREFIX) != 0)
		ff_violation(&rp, "bad magic");
	if (h[8] & 1)
		ff_violation(&rp, "recovery_needed flag is set");
	if (le64_get(h + 24))
		ff_violation(&rp, "intent %llu left in the header",
			     (unsigned long long)le64_get(h + 24));
	if ((r = ff_check_blocks(ff, &bl, &rp)) || (r = ff_check_list(ff, &bl, &rp)))
		goto out;
out:
	pthread_mutex_unlock(&ff->lock);
	free(bl.v);
	return r ? r : rp.n;
}

/* ---- reclaim ---------------------------------------------------------- */

/*
 * After recovery every arena byte is in a block, so the only leak is an
 * allocated block no live slice refers to (a crash between an alloc and
 * the caller's bookkeeping).  Validate everything first, then free those
 * blocks from the top down (tail ones are discarded, the rest coalesce).
 */
static int ff_reclaim_locked(struct ff *ff, const struct bs_slice *live, size_t n,
			     uint64_t *reclaimed)
{
	struct ff_blks bl = { 0 };
	uint64_t bad;
	bool *used = NULL;
	int r = ff_scan(ff, &bl, &bad);
	if (r)
		goto out;
	if (bad) {
		r = -EUCLEAN;
		goto out;
	}
	used = calloc(bl.n ? bl.n : 1, sizeof *used);
	if (!used) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (live[i].len == 0 && live[i].off == 0)
			continue;
		long j = ff_blk_index(&bl, live[i].off);
		if (j < 0 || bl.v[j].free || live[i].len > bl.v[j].size || used[j]) {
			r = -EUCLEAN;
			goto out;
		}
		used[j] = true;
	}
	for (size_t j = bl.n; j-- > 0;) {
		if (bl.v[j].free || used[j])
			continue;
		if ((r = ff_free_block(ff, bl.v[j].pos + FF_BH, bl.v[j].size)))
			goto out;
		*reclaimed += bl.v[j].size + FF_OVH;
	}
out:
	free(bl.v);
	free(used);
	return r;
}

static int ff_reclaim(struct bs_alloc *a, const struct bs_slice *live, size_t n,
		      uint64_t *reclaimed)
{
	struct ff *ff = to_ff(a);
	*reclaimed = 0;
	pthread_mutex_lock(&ff->lock);
	int r = ff_reclaim_locked(ff, live, n, reclaimed);
	pthread_mutex_unlock(&ff->lock);
	return r;
}

static void ff_destroy(struct bs_alloc *a)
{
	struct ff *ff = to_ff(a);
	pthread_mutex_destroy(&ff->lock);
	free(ff);
}

static const struct bs_alloc_ops firstfit_ops = {
	.name = "firstfit",
	.alloc = ff_alloc,
	.realloc = ff_realloc,
	.dealloc = ff_dealloc,
	.alloc_bulk = ff_alloc_bulk,
	.dealloc_bulk = bs_dealloc_bulk_generic,
	.stats = ff_stats,
	.check = ff_check,
	.extent = ff_extent,
	.reclaim = ff_reclaim,
	.grow_in_place = ff_grow_in_place,
	.destroy = ff_destroy,
};

/* ---- create / open ---------------------------------------------------- */

static int ff_new(struct bstack *bs, struct ff **out)
{
	struct ff *ff = calloc(1, sizeof *ff);
	if (!ff)
		return -ENOMEM;
	if (pthread_mutex_init(&ff->lock, NULL)) {
		free(ff);
		return -ENOMEM;
	}
	bs_alloc_init(&ff->base, &firstfit_ops, bs, &bs_firstfit_desc);
	*out = ff;
	return 0;
}

static int ff_format(struct bstack *bs)
{
	uint8_t h[FF_ARENA] = { 0 };
	memcpy(h + FF_RESERVED, ff_magic, sizeof ff_magic);
	return bstack_push(bs, h, sizeof h, NULL);
}

int bs_firstfit_create(struct bstack *bs, struct bs_alloc **out)
{
	struct ff *ff;
	if (bstack_len(bs) != 0)
		return -EEXIST;
	int r = ff_format(bs);
	if (!r)
		r = ff_new(bs, &ff);
	if (!r)
		*out = &ff->base;
	return r;
}

/* Beyond the seed: the last block must be a well-formed allocated block,
 * else a crash hit one of the seed's unflagged tail paths. */
static int ff_tail_ok(struct ff *ff, bool *ok)
{
	uint64_t len = ff_len(ff), f;
	uint8_t h[16];
	int r;
	*ok = true;
	if (len == FF_ARENA)
		return 0;
	*ok = false;
	if (len < FF_ARENA + FF_MIN_BLOCK)
		return 0;
	if ((r = ff_get64(ff, len - FF_BF, &f)))
		return r;
	if (f < FF_MIN || f % 8 || f > len - FF_ARENA - FF_OVH)
		return 0;
	if ((r = ff_get(ff, len - FF_OVH - f, h, 16)))
		return r;
	*ok = le64_get(h) == f && !(h[8] & 1);
	return 0;
}

/* ---- rebuild from the caller's live set (fsck -y) ----------------------- */

/*
 * The caller (fsck, which knows every live allocation from its catalog)
 * lays the arena out again: each live slice's block keeps its header
 * position (slice offset - 16) and its size (the stored header's when that
 * is plausible, else the slice length rounded as the seed rounds it); each
 * gap between them becomes a free block (a gap too small for one, under 40
 * bytes, goes to the block before it, as a split that does not fit does);
 * headers and footers are written for every block with the header's
 * recovery flag set first, and the open that follows runs the seed's
 * recovery, which links the free list in address order, discards a free
 * tail block and clears the flag.  No byte of a live slice is written.
 * -EUCLEAN when the live set cannot be laid out (misaligned, overlapping,
 * outside the arena, a small gap in front of the first block).
 */
struct ff_rb {
	uint64_t pos, size;
	bool free;
};

static int ff_rb_write(struct bstack *bs, const struct ff_rb *b)
{
	uint8_t h[16] = { 0 }, f[8];
	le64_put(h, b->size);
	le32_put(h + 8, b->free ? 1u : 0u);
	le64_put(f, b->size);
	int r = bstack_set_nosync(bs, b->pos, h, sizeof h);
	return r ? r : bstack_set_nosync(bs, b->pos + FF_BH + b->size, f, sizeof f);
}

int bs_firstfit_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n)
{
	uint64_t len = bstack_len(bs), pos = FF_ARENA;
	struct ff_rb *v = malloc((2 * n + 2) * sizeof *v);
	size_t k = 0;
	int r = 0;
	if (!v)
		return -ENOMEM;
	if (len < FF_ARENA) {
		r = -EUCLEAN;
		goto out;
	}
	for (size_t i = 0; i <= n; i++) {
		uint64_t start = len, need = 0;
		if (i < n) {
			if (live[i].off < FF_FIRST_PAYLOAD || live[i].off % 8 ||
			    !ff_align(live[i].len, &need)) {
				r = -EUCLEAN;
				goto out;
			}
			start = live[i].off - FF_BH;
		}
		if (start < pos) {
			r = -EUCLEAN;
			goto out;
		}
		uint64_t gap = start - pos;
		if (gap >= FF_MIN_BLOCK) {
			v[k++] = (struct ff_rb){ pos, gap - FF_OVH, true };
		} else if (gap) {
			if (k == 0) {
				r = -EUCLEAN;
				goto out;
			}
			v[k - 1].size += gap;   /* only a live block precedes */
		}
		if (i == n)
			break;
		if (i + 1 < n && live[i + 1].off < FF_FIRST_PAYLOAD) {
			r = -EUCLEAN;
			goto out;
		}
		uint64_t limit = i + 1 < n ? live[i + 1].off - FF_BH : len, stored, size = need;
		if (limit < start || limit - start < FF_OVH + need) {
			r = -EUCLEAN;
			goto out;
		}
		uint8_t sb[8];
		if ((r = bstack_get(bs, start, sb, 8)))
			goto out;
		stored = le64_get(sb);
		if (stored >= need && stored % 8 == 0 && stored <= limit - start - FF_OVH) {
			uint64_t rest = limit - start - FF_OVH - stored;
			if (rest == 0 || rest >= FF_MIN_BLOCK)
				size = stored;
		}
		v[k++] = (struct ff_rb){ start, size, false };
		pos = start + FF_OVH + size;
	}
	/* the flag first, durably: a cut rebuild is recovered like a cut
	 * operation (headers are what the recovery scan trusts) */
	uint8_t h[FF_HEADER] = { 0 };
	memcpy(h, ff_magic, 8);
	h[8] = 1;
	if ((r = bstack_set(bs, FF_RESERVED, h, sizeof h)))
		goto out;
	for (size_t i = 0; i < k && !r; i++)
		r = ff_rb_write(bs, &v[i]);
	if (!r)
		r = bstack_sync(bs);
out:
	free(v);
	return r;
}

int bs_firstfit_open(struct bstack *bs, struct bs_alloc **out)
{
	uint8_t h[FF_HEADER];
	struct ff *ff;
	bool tail_ok;
	uint64_t len = bstack_len(bs);
	int r;
	/* the seed's new(): an empty stack is formatted */
	if (len == 0)
		return bs_firstfit_create(bs, out);
	if (len < FF_ARENA)
		return -EUCLEAN;
	if ((r = bstack_get(bs, FF_RESERVED, h, FF_HEADER)))
		return r;
	if (memcmp(h, ff_magic, FF_MAGIC_PREFIX) != 0)
		return -EILSEQ;
	if ((r = ff_new(bs, &ff)))
		return r;
	bool need = h[8] & 1;
	uint64_t head = le64_get(h + 16);
	if (head && (head < FF_FIRST_PAYLOAD || head >= len))
		need = true;   /* the seed's free_head sanity test */
	if (head && !ff_ptr_ok(ff, head))
		need = true;
	if (!(r = ff_tail_ok(ff, &tail_ok)) && !tail_ok)
		need = true;
	if (!r && need)
		r = ff_recover(ff);
	if (r) {
		ff_destroy(&ff->base);
		return r;
	}
	*out = &ff->base;
	return 0;
}

/* ---- the descriptor (alloc.h) ------------------------------------------ */

static int ff_create_desc(struct bstack *bs, const struct bs_alloc_opts *o,
			  struct bs_alloc **out)
{
	(void)o;
	return bs_firstfit_create(bs, out);
}

/* The recovery flag's scan at open (ff_recover) is counted as recovery_runs. */
const struct bs_alloc_desc bs_firstfit_desc = {
	.kind = BS_ALLOC_FIRSTFIT,
	.name = "firstfit",
	.magic_off = FF_RESERVED,
	.tag = "ALFF",
	.reserved_len = FF_RESERVED,
	.caps = BS_CAP_MAGIC | BS_CAP_REUSES_HOLES | BS_CAP_OWN_RECOVERY,
	.free_structure = "free list",
	.free_order = "position",
	.create = ff_create_desc,
	.open = bs_firstfit_open,
	.rebuild = bs_firstfit_rebuild,
};
