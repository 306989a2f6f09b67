/*
 * alloc_slab.c — the fixed-block Slab allocator (seed bstack 0.2.4,
 * SlabBStackAllocator with the `atomic` feature), byte-for-byte.
 *
 * On-disk layout (payload offsets, all integers u64 little-endian):
 *
 *   0   reserved[24]   caller bytes (bstackfs keeps its catalog root here)
 *   24  magic[8]       "ALSL\x00\x01\x01\x00" (open accepts "ALSL\x00\x01")
 *   32  block_size     >= 8, fixed at creation
 *   40  free_head      payload offset of the first free block, 0 = none
 *   48  arena          block_size-byte blocks up to the end of the payload
 *
 * Blocks carry no header.  A free block's first 8 bytes hold the offset of
 * the next free block (0 ends the list, LIFO); a live block belongs entirely
 * to the caller.  An allocation of len bytes holds one block when
 * len <= block_size, else ceil(len / block_size) contiguous blocks.
 *
 * Crash invariant: the free list is always a valid chain of blocks that no
 * live allocation covers.  Every multi-call mutation keeps it so:
 *   - push (dealloc, shrink, reclaim): P1 write the next pointer(s) into the
 *     freed blocks, P2 write free_head.  A crash between them leaks the
 *     batch (it is on neither side), never links a live block.
 *   - pop (alloc): Q1 write free_head = popped->next, Q2 zero the popped
 *     block.  A crash between them leaks the popped block.
 *   - grow non-tail (realloc): M1 push the copy at the tail, M2 free the old
 *     blocks (P1, P2).  A crash in between leaks the old blocks.
 *   - tail grow/shrink and oversized tail dealloc are a single
 *     bstack_try_extend_zeros / bstack_try_discard (the length is the
 *     commit point).
 * Leaks are exactly the seed's crash table; reclaim() returns them.
 *
 * Beyond the seed (off in seed-exact mode, alloc.h): a multi-block
 * allocation reuses a run of contiguous free blocks, and trim_tail gives
 * the free blocks at the end of the arena back; both rewrite the free list
 * (R1 head = 0, R2, R3 relink; see take_free_run), so a cut only leaks.
 *
 * Locking: `lock` serialises every free-list read-modify-write (pop, push,
 * reclaim).  Tail operations use the bstack's check-and-act calls so they
 * need no allocator lock, as in the seed.
 */
#include "alloc.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLAB_RESERVED     24u
#define SLAB_MAGIC_OFF    24u
#define SLAB_BSIZE_OFF    32u
#define SLAB_FREE_HEAD    40u
#define SLAB_ARENA        48u
#define SLAB_MIN_BLOCK    8u
#define SLAB_SENTINEL     0u

static const uint8_t slab_magic[8] = { 'A', 'L', 'S', 'L', 0, 1, 1, 0 };
#define SLAB_MAGIC_PREFIX 6   /* "ALSL" + major 0 + minor 1 */

/* Largest buffer built in memory for one write; bigger freed regions and
 * copies are streamed in pieces of this size (see write_free_run). */
#define SLAB_CHUNK (4u << 20)

struct slab {
	struct bs_alloc base;     /* first: ops code casts between the two */
	uint64_t bsize;
	pthread_mutex_t lock;
};

static struct slab *to_slab(struct bs_alloc *a)
{
	return (struct slab *)a;
}

/* ---- small helpers ----------------------------------------------------- */

static uint64_t blocks_needed(const struct slab *sl, uint64_t len)
{
	if (len == 0)
		return 0;
	if (len <= sl->bsize)
		return 1;
	return len / sl->bsize + (len % sl->bsize != 0);
}

/* Is off the start of a whole block inside a payload of length plen? */
static bool block_ok(const struct slab *sl, uint64_t off, uint64_t plen)
{
	return off >= SLAB_ARENA && (off - SLAB_ARENA) % sl->bsize == 0 &&
	       range_ok(off, sl->bsize, plen);
}

static int read_u64(struct bstack *bs, uint64_t off, uint64_t *v)
{
	uint8_t b[8];
	int r = bstack_get(bs, off, b, 8);

	if (r)
		return r;
	*v = le64_get(b);
	return 0;
}

static int write_u64(struct bstack *bs, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	le64_put(b, v);
	return bstack_set(bs, off, b, 8);
}

/*
 * Validate a slice the caller passes in (it must be one this allocator
 * could have handed out) and compute its backing: n blocks, *end the offset
 * after them.  The null slice is handled by the callers.
 */
static int slice_backing(const struct slab *sl, struct bs_slice s, uint64_t *n,
			 uint64_t *backing, uint64_t *end)
{
	uint64_t nb = blocks_needed(sl, s.len), bk, e;

	if (s.len == 0 || s.off < SLAB_ARENA ||
	    (s.off - SLAB_ARENA) % sl->bsize != 0)
		return -EINVAL;
	if (!mul_ok(nb, sl->bsize, &bk) || !add_ok(s.off, bk, &e) ||
	    e > bstack_len(sl->base.bs))
		return -EINVAL;
	*n = nb;
	*backing = bk;
	*end = e;
	return 0;
}

/* ---- free list (call with sl->lock held) --------------------------------- */

/*
 * Pop the head block; *off = 0 when the list is empty.  The head and its
 * next pointer are validated first so a corrupt image yields -EUCLEAN
 * instead of handing out header bytes or a block past the end.
 */
static int pop_free_block(struct slab *sl, uint64_t *off)
{
	struct bstack *bs = sl->base.bs;
	uint64_t head, next, plen = bstack_len(bs);
	int r;

	*off = 0;
	r = read_u64(bs, SLAB_FREE_HEAD, &head);
	if (r || head == SLAB_SENTINEL)
		return r;
	if (!block_ok(sl, head, plen))
		return -EUCLEAN;
	r = read_u64(bs, head, &next);
	if (r)
		return r;
	if (next != SLAB_SENTINEL && (!block_ok(sl, next, plen) || next == head))
		return -EUCLEAN;
	/* Q1: unlink.  A crash after this leaks the block, nothing else. */
	r = write_u64(bs, SLAB_FREE_HEAD, next);
	if (r)
		return r;
	/* Q2: a popped block reads as zero, as a fresh one would. */
	r = bstack_zero(bs, head, sl->bsize);
	if (r)
		return r;
	*off = head;
	return 0;
}

/*
 * Put into buf, which holds bytes [at, at + n) of a run of `count` blocks
 * from `first`, the parts of the blocks' next pointers that fall inside it.
 * A pointer may straddle two pieces when block_size is not a multiple of 8.
 */
static void fill_pointers(const struct slab *sl, uint8_t *buf, uint64_t at,
			  uint64_t n, uint64_t first, uint64_t count,
			  uint64_t old_head)
{
	/* The first block whose pointer ends after `at`: q + 8 > at. */
	uint64_t k = at >= 8 ? (at - 8) / sl->bsize + 1 : 0;

	for (; k < count && k * sl->bsize < at + n; k++) {
		uint64_t q = k * sl->bsize;
		uint8_t ptr[8];

		le64_put(ptr, k + 1 < count ? first + (k + 1) * sl->bsize : old_head);
		for (int i = 0; i < 8; i++)
			if (q + i >= at && q + i < at + n)
				buf[q + i - at] = ptr[i];
	}
}

/*
 * Write the next pointers of `count` contiguous blocks from `first`: each
 * block points to its successor, the last one to old_head, every other byte
 * of the region becomes zero (the seed writes one zero-filled buffer).  Up
 * to SLAB_CHUNK bytes this is one bstack_set, exactly the seed's bulk write;
 * a larger region is streamed with bstack_set_nosync and one bstack_sync, so
 * P1 is still durable before P2 without building the whole region in memory.
 */
static int write_free_run(struct slab *sl, uint64_t first, uint64_t count,
			  uint64_t old_head)
{
	struct bstack *bs = sl->base.bs;
	uint64_t total = count * sl->bsize;   /* caller checked overflow */
	uint64_t chunk = total < SLAB_CHUNK ? total : SLAB_CHUNK;
	uint8_t *buf = malloc(chunk);
	uint64_t done = 0;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (done < total) {
		uint64_t n = total - done < chunk ? total - done : chunk;

		memset(buf, 0, n);
		fill_pointers(sl, buf, done, n, first, count, old_head);
		if (total == n)
			r = bstack_set(bs, first, buf, n);
		else
			r = bstack_set_nosync(bs, first + done, buf, n);
		if (r)
			break;
		done += n;
	}
	free(buf);
	if (!r && total > chunk)
		r = bstack_sync(bs);
	return r;
}

/*
 * Prepend `count` contiguous blocks from `first` to the free list: P1 the
 * next pointers, P2 free_head.  One block writes only its 8-byte pointer
 * (the seed's push_free_block), more write the whole region (the seed's
 * push_free_blocks).
 */
static int push_free_blocks(struct slab *sl, uint64_t first, uint64_t count)
{
	struct bstack *bs = sl->base.bs;
	uint64_t head, total, end;
	int r;

	if (count == 0)
		return 0;
	if (!mul_ok(count, sl->bsize, &total) || !add_ok(first, total, &end))
		return -EINVAL;
	r = read_u64(bs, SLAB_FREE_HEAD, &head);
	if (r)
		return r;
	if (count == 1)
		r = write_u64(bs, first, head);          /* P1 */
	else
		r = write_free_run(sl, first, count, head);  /* P1 */
	if (r)
		return r;
	return write_u64(bs, SLAB_FREE_HEAD, first);     /* P2 */
}

/* ---- create / open ------------------------------------------------------ */

static const struct bs_alloc_ops slab_ops;

static int slab_new(struct bstack *bs, uint64_t bsize, struct bs_alloc **out)
{
	struct slab *sl = calloc(1, sizeof(*sl));

	if (!sl)
		return -ENOMEM;
	if (pthread_mutex_init(&sl->lock, NULL)) {
		free(sl);
		return -ENOMEM;
	}
	bs_alloc_init(&sl->base, &slab_ops, bs, &bs_slab_desc);
	sl->bsize = bsize;
	*out = &sl->base;
	return 0;
}

int bs_slab_create(struct bstack *bs, uint64_t block_size, struct bs_alloc **out)
{
	uint8_t hdr[SLAB_ARENA] = { 0 };
	int r;

	if (block_size == 0)
		block_size = BS_SLAB_DEFAULT_BLOCK;
	if (block_size < SLAB_MIN_BLOCK || bstack_len(bs) != 0)
		return -EINVAL;
	memcpy(hdr + SLAB_MAGIC_OFF, slab_magic, 8);
	le64_put(hdr + SLAB_BSIZE_OFF, block_size);
	/* free_head stays 0.  One push: the header appears whole or not. */
	r = bstack_push(bs, hdr, sizeof(hdr), NULL);
	if (r)
		return r;
	return slab_new(bs, block_size, out);
}

int bs_slab_open(struct bstack *bs, struct bs_alloc **out)
{
	uint64_t plen = bstack_len(bs), bsize, head;
	uint8_t hdr[24];
	int r;

	/* The seed's checks, in its order; nothing is written. */
	if (plen == 0)
		return -EINVAL;   /* seed: InvalidInput, use create */
	if (plen < SLAB_ARENA)
		return -EUCLEAN;
	r = bstack_get(bs, SLAB_MAGIC_OFF, hdr, sizeof(hdr));
	if (r)
		return r;
	if (memcmp(hdr, slab_magic, SLAB_MAGIC_PREFIX) != 0)
		return -EILSEQ;
	bsize = le64_get(hdr + 8);
	head = le64_get(hdr + 16);
	if (bsize < SLAB_MIN_BLOCK)
		return -EUCLEAN;
	if (head != SLAB_SENTINEL &&
	    (head < SLAB_ARENA || (head - SLAB_ARENA) % bsize != 0 || head >= plen))
		return -EUCLEAN;
	if ((plen - SLAB_ARENA) % bsize != 0)
		return -EUCLEAN;
	return slab_new(bs, bsize, out);
}

/*
 * Rebuild (fsck -y, from the caller's live set): the free list is emptied
 * (free_head = 0, magic rewritten) in one durable write; the caller then
 * opens and reclaims, which pushes every block no live slice covers, the
 * way a dealloc would.  The stored block size must be sane (-EUCLEAN
 * otherwise: nothing tells what it was).
 */
int bs_slab_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n)
{
	uint64_t plen = bstack_len(bs), bsize;
	uint8_t hdr[24];
	int r;
	(void)live;
	(void)n;
	if (plen < SLAB_ARENA)
		return -EUCLEAN;
	if ((r = bstack_get(bs, SLAB_MAGIC_OFF, hdr, sizeof hdr)))
		return r;
	bsize = le64_get(hdr + 8);
	if (bsize < SLAB_MIN_BLOCK || (plen - SLAB_ARENA) % bsize != 0)
		return -EUCLEAN;
	memcpy(hdr, slab_magic, 8);
	le64_put(hdr + 16, SLAB_SENTINEL);
	return bstack_set(bs, SLAB_MAGIC_OFF, hdr, sizeof hdr);
}

/* ---- alloc / dealloc ----------------------------------------------------- */

static int take_free_run(struct slab *sl, uint64_t n, uint64_t *off);

static int slab_alloc_inner(struct slab *sl, uint64_t len, struct bs_slice *out)
{
	struct bstack *bs = sl->base.bs;
	uint64_t off, n, total;
	int r;

	if (len == 0) {
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (len <= sl->bsize) {
		pthread_mutex_lock(&sl->lock);
		r = pop_free_block(sl, &off);
		if (!r && off == 0)
			r = bstack_extend(bs, sl->bsize, &off);
		pthread_mutex_unlock(&sl->lock);
		if (r)
			return r;
		*out = (struct bs_slice){ off, len };
		return 0;
	}
	n = blocks_needed(sl, len);
	if (!mul_ok(n, sl->bsize, &total))
		return -EINVAL;
	off = 0;
	if (!sl->base.seed_exact) {
		pthread_mutex_lock(&sl->lock);
		r = take_free_run(sl, n, &off);
		pthread_mutex_unlock(&sl->lock);
		if (r)
			return r;
		if (off) {
			*out = (struct bs_slice){ off, len };
			return 0;
		}
	}
	r = bstack_extend(bs, total, &off);
	if (r)
		return r;
	*out = (struct bs_slice){ off, len };
	return 0;
}

static int slab_alloc(struct bs_alloc *a, uint64_t len, struct bs_slice *out)
{
	int r = slab_alloc_inner(to_slab(a), len, out);

	if (!r && len)   /* the null slice is not an allocation */
		BS_COUNT(a, n_allocs, 1);
	return r;
}

static int slab_dealloc(struct bs_alloc *a, struct bs_slice s)
{
	struct slab *sl = to_slab(a);
	uint64_t n, backing, end;
	bool done = false;
	int r;

	if (s.off == 0 && s.len == 0)
		return 0;
	r = slice_backing(sl, s, &n, &backing, &end);
	if (r)
		return r;
	/* Oversized at the tail: one check-and-discard, no allocator lock. */
	if (s.len > sl->bsize) {
		r = bstack_try_discard(a->bs, end, backing, &done);
		if (r)
			return r;
	}
	if (done) {
		BS_COUNT(a, n_tail_discards, 1);
	} else {
		pthread_mutex_lock(&sl->lock);
		r = push_free_blocks(sl, s.off, n);
		pthread_mutex_unlock(&sl->lock);
		if (r)
			return r;
	}
	BS_COUNT(a, n_deallocs, 1);
	return 0;
}

/* ---- realloc ------------------------------------------------------------ */

/*
 * Zero the stale bytes between the old visible end and the new one that lie
 * inside the old backing (bytes a tail extension added are zero already;
 * the seed zeroes [end, new_len) in one call, the result is the same).
 */
static int zero_exposed(struct slab *sl, struct bs_slice s, uint64_t new_len,
			uint64_t old_backing)
{
	uint64_t upto = new_len < old_backing ? new_len : old_backing;

	if (upto <= s.len)
		return 0;
	return bstack_zero(sl->base.bs, s.off + s.len, upto - s.len);
}

/* Try growing s to new_len without moving it.  *done tells whether it did. */
static int grow_no_move(struct slab *sl, struct bs_slice s, uint64_t new_len,
			bool *done)
{
	uint64_t old_n, old_backing, end, new_n, new_backing;
	int r;

	*done = false;
	r = slice_backing(sl, s, &old_n, &old_backing, &end);
	if (r)
		return r;
	new_n = blocks_needed(sl, new_len);
	if (!mul_ok(new_n, sl->bsize, &new_backing) ||
	    !range_ok(s.off, new_backing, UINT64_MAX))
		return -EINVAL;
	if (new_n > old_n) {
		/* Tail grow: one check-and-extend is the commit point. */
		r = bstack_try_extend_zeros(sl->base.bs, end,
					    new_backing - old_backing, done);
		if (r || !*done)
			return r;
	}
	*done = true;
	return zero_exposed(sl, s, new_len, old_backing);
}

/* Grow non-tail: M1 copy to a fresh tail region, M2 free the old blocks. */
static int grow_move(struct slab *sl, struct bs_slice s, uint64_t new_len,
		     uint64_t old_n, struct bs_slice *out)
{
	struct bstack *bs = sl->base.bs;
	uint64_t new_backing, new_off;
	uint8_t *buf;
	int r;

	if (!mul_ok(blocks_needed(sl, new_len), sl->bsize, &new_backing))
		return -EINVAL;
	if (new_backing <= SLAB_CHUNK) {
		/* The seed's path: one zero-filled buffer with the old bytes in
		 * front, pushed in one call. */
		buf = calloc(1, new_backing);
		if (!buf)
			return -ENOMEM;
		r = bstack_get(bs, s.off, buf, s.len);
		if (!r)
			r = bstack_push(bs, buf, new_backing, &new_off);   /* M1 */
		free(buf);
	} else {
		/* Too big for one buffer: extend (zeros), copy in pieces, sync.
		 * A crash before the sync leaks the new tail region instead of
		 * the old blocks; reclaim() returns either. */
		r = bstack_extend(bs, new_backing, &new_off);           /* M1 */
		buf = r ? NULL : malloc(SLAB_CHUNK);
		if (!r && !buf)
			r = -ENOMEM;
		for (uint64_t done = 0; !r && done < s.len; done += SLAB_CHUNK) {
			uint64_t n = s.len - done < SLAB_CHUNK ? s.len - done : SLAB_CHUNK;
			r = bstack_get(bs, s.off + done, buf, n);
			if (!r)
				r = bstack_set_nosync(bs, new_off + done, buf, n);
		}
		free(buf);
		if (!r)
			r = bstack_sync(bs);
	}
	if (r)
		return r;
	pthread_mutex_lock(&sl->lock);
	r = push_free_blocks(sl, s.off, old_n);                          /* M2 */
	pthread_mutex_unlock(&sl->lock);
	if (r)
		return r;
	BS_COUNT(&sl->base, n_bytes_copied, s.len);
	*out = (struct bs_slice){ new_off, new_len };
	return 0;
}

static int shrink(struct slab *sl, struct bs_slice s, uint64_t new_len,
		  uint64_t old_n, uint64_t old_backing, uint64_t end)
{
	uint64_t new_n = blocks_needed(sl, new_len), freed;
	bool done;
	int r;

	freed = old_backing - new_n * sl->bsize;
	r = bstack_try_discard(sl->base.bs, end, freed, &done);
	if (r)
		return r;
	if (done) {
		BS_COUNT(&sl->base, n_tail_discards, 1);
		return 0;
	}
	pthread_mutex_lock(&sl->lock);
	r = push_free_blocks(sl, s.off + new_n * sl->bsize, old_n - new_n);
	pthread_mutex_unlock(&sl->lock);
	return r;
}

static int slab_realloc_inner(struct slab *sl, struct bs_slice s, uint64_t new_len,
			      struct bs_slice *out, bool *moved)
{
	uint64_t old_n, old_backing, end, new_n;
	bool done;
	int r;

	*moved = false;
	if (s.off == 0 && s.len == 0)
		return slab_alloc(&sl->base, new_len, out);
	r = slice_backing(sl, s, &old_n, &old_backing, &end);
	if (r)
		return r;
	if (new_len == 0) {
		r = slab_dealloc(&sl->base, s);
		if (!r)
			*out = (struct bs_slice){ 0, 0 };
		return r;
	}
	if (new_len == s.len) {
		*out = s;
		return 0;
	}
	new_n = blocks_needed(sl, new_len);
	if (new_n < old_n) {
		r = shrink(sl, s, new_len, old_n, old_backing, end);
		if (!r)
			*out = (struct bs_slice){ s.off, new_len };
		return r;
	}
	/* Same block count, or grow: in place if possible, else move. */
	r = grow_no_move(sl, s, new_len, &done);
	if (r)
		return r;
	if (done) {
		*out = (struct bs_slice){ s.off, new_len };
		return 0;
	}
	*moved = true;
	return grow_move(sl, s, new_len, old_n, out);
}

static int slab_realloc(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
			struct bs_slice *out)
{
	bool moved;
	int r = slab_realloc_inner(to_slab(a), s, new_len, out, &moved);

	if (r)
		return r;
	BS_COUNT(a, n_reallocs, 1);
	if (moved)
		BS_COUNT(a, n_reallocs_moved, 1);
	else if (s.off != 0 && new_len != 0)
		BS_COUNT(a, n_reallocs_in_place, 1);
	return 0;
}

static int slab_grow_in_place(struct bs_alloc *a, struct bs_slice s,
			      uint64_t new_len, struct bs_slice *out, bool *done)
{
	int r;

	*done = false;
	if (new_len <= s.len)
		return -EINVAL;
	if (s.off == 0 && s.len == 0)
		return 0;   /* the null slice has no block to grow */
	r = grow_no_move(to_slab(a), s, new_len, done);
	if (r || !*done)
		return r;
	*out = (struct bs_slice){ s.off, new_len };
	BS_COUNT(a, n_reallocs, 1);
	BS_COUNT(a, n_reallocs_in_place, 1);
	return 0;
}

/* ---- extent ------------------------------------------------------------- */

static int slab_extent(struct bs_alloc *a, struct bs_slice s, uint64_t *start,
		       uint64_t *len)
{
	uint64_t n, backing, end;
	int r;

	if (s.off == 0 && s.len == 0) {
		*start = 0;
		*len = 0;
		return 0;
	}
	r = slice_backing(to_slab(a), s, &n, &backing, &end);
	if (r)
		return r;
	*start = s.off;
	*len = backing;
	return 0;
}

/* ---- free-list walks: stats, check, reclaim ------------------------------ */

/* A bitmap with one bit per arena block. */
struct blockmap {
	uint8_t *bits;
	uint64_t nblocks;
};

static int map_init(struct blockmap *m, uint64_t nblocks)
{
	m->nblocks = nblocks;
	m->bits = calloc(1, nblocks / 8 + 1);
	return m->bits ? 0 : -ENOMEM;
}

static bool map_test_set(struct blockmap *m, uint64_t i)
{
	bool was = m->bits[i / 8] & (1u << (i % 8));

	m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
	return was;
}

static bool map_test(const struct blockmap *m, uint64_t i)
{
	return m->bits[i / 8] & (1u << (i % 8));
}

static void say(bs_report_fn report, void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(bs_report_fn report, void *ctx, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (!report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(ctx, msg);
}

/*
 * Walk the free list, marking each member in m (when m is not NULL).
 * The walk takes at most nblocks + 1 steps: a longer list must repeat a
 * block.  Returns the number of problems found (reported), *len the number
 * of valid members visited, or a negative errno on I/O failure.
 */
static int walk_free_list(struct slab *sl, struct blockmap *m, uint64_t *len,
			  bs_report_fn report, void *ctx)
{
	struct bstack *bs = sl->base.bs;
	uint64_t plen = bstack_len(bs);
	uint64_t nblocks = plen >= SLAB_ARENA ? (plen - SLAB_ARENA) / sl->bsize : 0;
	uint64_t cur, steps = 0;
	int r;

	*len = 0;
	r = read_u64(bs, SLAB_FREE_HEAD, &cur);
	if (r)
		return r;
	while (cur != SLAB_SENTINEL) {
		if (!block_ok(sl, cur, plen)) {
			say(report, ctx, "free list: block %llu is %s",
			    (unsigned long long)cur,
			    cur < SLAB_ARENA || (cur - SLAB_ARENA) % sl->bsize ?
			    "not on a block boundary" : "outside the arena");
			return 1;
		}
		if (m && map_test_set(m, (cur - SLAB_ARENA) / sl->bsize)) {
			say(report, ctx, "free list: block %llu repeats (cycle)",
			    (unsigned long long)cur);
			return 1;
		}
		if (++steps > nblocks) {
			say(report, ctx, "free list longer than the arena (cycle)");
			return 1;
		}
		(*len)++;
		r = read_u64(bs, cur, &cur);
		if (r)
			return r;
	}
	return 0;
}

static uint64_t arena_blocks(struct slab *sl)
{
	uint64_t plen = bstack_len(sl->base.bs);

	return plen >= SLAB_ARENA ? (plen - SLAB_ARENA) / sl->bsize : 0;
}

/*
 * overhead_bytes: the 48 bytes in front of the arena (24 caller-reserved +
 * 24 allocator header).  Slab blocks have no per-block header, and the
 * slack between an allocation's length and its whole blocks is not counted
 * (it is not knowable without the caller's live set).
 */
static void slab_stats(struct bs_alloc *a, struct bs_alloc_stats *st)
{
	struct slab *sl = to_slab(a);
	uint64_t n = 0;

	pthread_mutex_lock(&sl->lock);
	if (walk_free_list(sl, NULL, &n, NULL, NULL) < 0)
		n = 0;
	pthread_mutex_unlock(&sl->lock);
	st->arena_start = SLAB_ARENA;
	st->arena_bytes = bstack_len(a->bs) - SLAB_ARENA;
	st->free_blocks = n;
	st->free_bytes = n * sl->bsize;
	st->largest_free = n ? sl->bsize : 0;
	st->overhead_bytes = SLAB_ARENA;
	/* every arena block is free or part of an allocation (blocks, not
	 * allocations: an oversized allocation spans several) */
	st->live_blocks_known = true;
	st->live_blocks = st->arena_bytes / sl->bsize - (n <= st->arena_bytes / sl->bsize ? n : 0);
	st->live_bytes = st->live_blocks * sl->bsize;
	if (st->n_extra + 2 <= BS_ALLOC_MAX_EXTRA) {
		st->extra[st->n_extra++] = (struct bs_alloc_extra){ "block_size", sl->bsize };
		st->extra[st->n_extra++] = (struct bs_alloc_extra){ "free_list_length", n };
	}
}

static int check_header(struct slab *sl, bs_report_fn report, void *ctx)
{
	struct bstack *bs = sl->base.bs;
	uint64_t plen = bstack_len(bs), bsize;
	uint8_t hdr[16];
	int bad = 0, r;

	if (plen < SLAB_ARENA) {
		say(report, ctx, "image shorter than the slab header (%llu bytes)",
		    (unsigned long long)plen);
		return 1;
	}
	r = bstack_get(bs, SLAB_MAGIC_OFF, hdr, sizeof(hdr));
	if (r)
		return r;
	if (memcmp(hdr, slab_magic, SLAB_MAGIC_PREFIX) != 0) {
		say(report, ctx, "bad magic at payload 24");
		bad++;
	}
	bsize = le64_get(hdr + 8);
	if (bsize != sl->bsize) {
		say(report, ctx, "stored block_size %llu differs from %llu",
		    (unsigned long long)bsize, (unsigned long long)sl->bsize);
		bad++;
	}
	if ((plen - SLAB_ARENA) % sl->bsize != 0) {
		say(report, ctx, "tail %llu is not aligned to block_size %llu",
		    (unsigned long long)plen, (unsigned long long)sl->bsize);
		bad++;
	}
	return bad;
}

static int slab_check(struct bs_alloc *a, bs_report_fn report, void *ctx)
{
	struct slab *sl = to_slab(a);
	struct blockmap m;
	uint64_t n;
	int bad, r;

	pthread_mutex_lock(&sl->lock);
	bad = check_header(sl, report, ctx);
	if (bad < 0 || bstack_len(a->bs) < SLAB_ARENA)
		goto out;
	r = map_init(&m, arena_blocks(sl));
	if (r) {
		bad = r;
		goto out;
	}
	r = walk_free_list(sl, &m, &n, report, ctx);
	free(m.bits);
	bad = r < 0 ? r : bad + r;
out:
	pthread_mutex_unlock(&sl->lock);
	return bad;
}

/* Mark every block of the live extents; -EUCLEAN on any conflict. */
static int mark_live(struct slab *sl, struct blockmap *m,
		     const struct bs_slice *live, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t nb, backing, end;

		if (live[i].len == 0)
			continue;
		if (slice_backing(sl, live[i], &nb, &backing, &end))
			return -EUCLEAN;
		if ((end - SLAB_ARENA) / sl->bsize > m->nblocks)
			return -EUCLEAN;
		for (uint64_t b = (live[i].off - SLAB_ARENA) / sl->bsize; nb--; b++)
			if (map_test_set(m, b))
				return -EUCLEAN;   /* overlap or free block */
	}
	return 0;
}

/*
 * Return unmarked blocks: a run that reaches the end of the arena is
 * discarded (if the tail has not moved since the snapshot), every other run
 * is pushed with push_free_blocks (P1, P2 per run: a crash leaves the runs
 * not yet pushed leaked, as before).
 */
static int return_unmarked(struct slab *sl, const struct blockmap *m,
			   uint64_t *reclaimed)
{
	uint64_t nb = m->nblocks, i = 0, end;
	int r;

	end = nb;
	while (end > 0 && !map_test(m, end - 1))
		end--;
	if (end < nb) {
		bool done;
		uint64_t tail = SLAB_ARENA + nb * sl->bsize;
		r = bstack_try_discard(sl->base.bs, tail, (nb - end) * sl->bsize, &done);
		if (r)
			return r;
		if (done) {
			*reclaimed += (nb - end) * sl->bsize;
			nb = end;
		}
	}
	while (i < nb) {
		uint64_t j;

		if (map_test(m, i)) {
			i++;
			continue;
		}
		for (j = i; j < nb && !map_test(m, j); j++)
			;
		r = push_free_blocks(sl, SLAB_ARENA + i * sl->bsize, j - i);
		if (r)
			return r;
		*reclaimed += (j - i) * sl->bsize;
		i = j;
	}
	return 0;
}

static int slab_reclaim(struct bs_alloc *a, const struct bs_slice *live, size_t n,
			uint64_t *reclaimed)
{
	struct slab *sl = to_slab(a);
	struct blockmap m;
	uint64_t flen;
	int r;

	*reclaimed = 0;
	pthread_mutex_lock(&sl->lock);
	if ((bstack_len(a->bs) - SLAB_ARENA) % sl->bsize != 0) {
		r = -EUCLEAN;
		goto out;
	}
	r = map_init(&m, arena_blocks(sl));
	if (r)
		goto out;
	r = walk_free_list(sl, &m, &flen, NULL, NULL);
	if (r > 0)
		r = -EUCLEAN;
	if (!r)
		r = mark_live(sl, &m, live, n);
	if (!r)
		r = return_unmarked(sl, &m, reclaimed);
	free(m.bits);
out:
	pthread_mutex_unlock(&sl->lock);
	return r;
}

/* ---- beyond the seed: runs of free blocks, the free tail ------------------ */

/*
 * The seed's Slab reuses freed blocks only one at a time: an allocation of
 * more than one block always extends the tail, so large files churned on
 * Slab grow the image without bound.  Not in seed-exact mode, bstackfs
 *  - hands out a run of contiguous free blocks for a multi-block
 *    allocation when the free list holds one (take_free_run), and
 *  - gives the free blocks at the end of the arena back (slab_trim_tail).
 * Both rewrite the free list from a snapshot of it (a block map):
 *   R1 free_head = 0: every free block leaks for the moment, nothing else;
 *   R2 the change: discard the tail run / keep the taken run out;
 *   R3 relink every remaining free block in address order: the 8-byte next
 *      pointers unsynced, one sync, then free_head (the seed's P1, P2 for
 *      the whole list).
 * A cut anywhere leaves free blocks on neither side (leaks, which reclaim
 * returns), never a live block on the list.  Each costs O(free blocks) I/O,
 * which is why Slab suits files up to its block size (README).
 */

/* Map the free list (walk_free_list); false when it holds a problem. */
static int map_free(struct slab *sl, struct blockmap *m, uint64_t *count, bool *ok)
{
	*ok = false;
	int r = map_init(m, arena_blocks(sl));
	if (r)
		return r;
	r = walk_free_list(sl, m, count, NULL, NULL);
	if (r < 0) {
		free(m->bits);
		m->bits = NULL;
		return r;
	}
	*ok = r == 0;
	return 0;
}

static void map_clear(struct blockmap *m, uint64_t i)
{
	m->bits[i / 8] &= (uint8_t)~(1u << (i % 8));
}

/* R3: link every block marked in m, lowest address first. */
static int relist(struct slab *sl, const struct blockmap *m)
{
	struct bstack *bs = sl->base.bs;
	uint64_t next = SLAB_SENTINEL;
	int r;
	for (uint64_t i = m->nblocks; i-- > 0;) {
		uint8_t b[8];
		if (!map_test(m, i))
			continue;
		le64_put(b, next);
		next = SLAB_ARENA + i * sl->bsize;
		if ((r = bstack_set_nosync(bs, next, b, 8)))
			return r;
	}
	if (next == SLAB_SENTINEL)
		return 0;
	if ((r = bstack_sync(bs)))
		return r;
	return write_u64(bs, SLAB_FREE_HEAD, next);
}

/* The run of t < n free blocks that ends the arena (run = the free blocks
 * counted back from the end by the caller's scan, i.e. the final run):
 * take it off the list (R1, R3), extend the tail by n - t blocks (R2:
 * the length is the commit point; a failed extension relinks the run),
 * zero it.  *off = 0 when there is no such run. */
static int take_tail_run(struct slab *sl, struct blockmap *m, uint64_t n, uint64_t t,
			 uint64_t *off)
{
	struct bstack *bs = sl->base.bs;
	uint64_t first = m->nblocks - t, plen = bstack_len(bs);
	bool done;
	int r;
	*off = 0;
	if (t == 0 || t >= n)
		return 0;
	for (uint64_t k = first; k < m->nblocks; k++)
		map_clear(m, k);
	if ((r = write_u64(bs, SLAB_FREE_HEAD, SLAB_SENTINEL)) ||   /* R1 */
	    (r = relist(sl, m)))                                     /* R3 */
		return r;
	r = bstack_try_extend_zeros(bs, plen, (n - t) * sl->bsize, &done);
	if (r || !done) {
		/* the run goes back on the list */
		for (uint64_t k = first; k < m->nblocks; k++)
			m->bits[k / 8] |= (uint8_t)(1u << (k % 8));
		int r2 = write_u64(bs, SLAB_FREE_HEAD, SLAB_SENTINEL);
		if (!r2)
			r2 = relist(sl, m);
		return r ? r : r2;
	}
	if ((r = bstack_zero(bs, SLAB_ARENA + first * sl->bsize, t * sl->bsize)))
		return r;
	*off = SLAB_ARENA + first * sl->bsize;
	return 0;
}

/* *off = the first of n contiguous free blocks taken off the list, zeroed;
 * 0 when the list holds no such run.  Caller holds the lock. */
static int take_free_run(struct slab *sl, uint64_t n, uint64_t *off)
{
	struct blockmap m;
	uint64_t count, run = 0, i;
	bool ok;
	int r;

	*off = 0;
	if ((r = map_free(sl, &m, &count, &ok)) || !ok || count < n)
		goto out;
	for (i = 0; i < m.nblocks && run < n; i++)
		run = map_test(&m, i) ? run + 1 : 0;
	if (run < n) {
		/* A free run at the end of the arena still saves that much
		 * growth: take it and extend the tail by the rest. */
		if ((r = take_tail_run(sl, &m, n, run, off)))
			goto out;
		goto out;
	}
	i -= n;
	for (uint64_t k = 0; k < n; k++)
		map_clear(&m, i + k);
	if ((r = write_u64(sl->base.bs, SLAB_FREE_HEAD, SLAB_SENTINEL)) ||   /* R1 */
	    (r = relist(sl, &m)) ||                                          /* R3 */
	    (r = bstack_zero(sl->base.bs, SLAB_ARENA + i * sl->bsize, n * sl->bsize)))
		goto out;
	*off = SLAB_ARENA + i * sl->bsize;
out:
	free(m.bits);
	return r;
}

static int slab_trim_tail(struct bs_alloc *a, uint64_t *freed)
{
	struct slab *sl = to_slab(a);
	struct blockmap m;
	uint64_t count, end;
	bool ok, done;
	int r;

	*freed = 0;
	pthread_mutex_lock(&sl->lock);
	if ((r = map_free(sl, &m, &count, &ok)) || !ok)
		goto out;
	for (end = m.nblocks; end > 0 && map_test(&m, end - 1); end--)
		;
	if (end == m.nblocks)
		goto out;
	uint64_t n = m.nblocks - end;
	if ((r = write_u64(a->bs, SLAB_FREE_HEAD, SLAB_SENTINEL)) ||       /* R1 */
	    (r = bstack_try_discard(a->bs, SLAB_ARENA + m.nblocks * sl->bsize,
				    n * sl->bsize, &done)))                  /* R2 */
		goto out;
	if (done) {
		for (uint64_t i = end; i < m.nblocks; i++)
			map_clear(&m, i);
		BS_COUNT(a, n_tail_discards, 1);
		*freed = n * sl->bsize;
	}
	r = relist(sl, &m);                                                  /* R3 */
out:
	free(m.bits);
	pthread_mutex_unlock(&sl->lock);
	return r;
}

static void slab_destroy(struct bs_alloc *a)
{
	struct slab *sl = to_slab(a);

	pthread_mutex_destroy(&sl->lock);
	free(sl);
}

static const struct bs_alloc_ops slab_ops = {
	.name = "slab",
	.alloc = slab_alloc,
	.realloc = slab_realloc,
	.dealloc = slab_dealloc,
	.alloc_bulk = bs_alloc_bulk_generic,
	.dealloc_bulk = bs_dealloc_bulk_generic,
	.stats = slab_stats,
	.check = slab_check,
	.extent = slab_extent,
	.reclaim = slab_reclaim,
	.grow_in_place = slab_grow_in_place,
	.trim_tail = slab_trim_tail,
	.destroy = slab_destroy,
};

/* ---- the descriptor (alloc.h) -------------------------------------------- */

static int slab_create_desc(struct bstack *bs, const struct bs_alloc_opts *o,
			    struct bs_alloc **out)
{
	return bs_slab_create(bs, o ? o->block_size : 0, out);
}

const struct bs_alloc_desc bs_slab_desc = {
	.kind = BS_ALLOC_SLAB,
	.name = "slab",
	.magic_off = SLAB_MAGIC_OFF,
	.tag = "ALSL",
	.reserved_len = SLAB_RESERVED,
	.caps = BS_CAP_MAGIC | BS_CAP_REUSES_HOLES | BS_CAP_BLOCK_SIZE,
	.free_structure = "free list",
	.free_order = "position",
	.create = slab_create_desc,
	.open = bs_slab_open,
	.rebuild = bs_slab_rebuild,
};
