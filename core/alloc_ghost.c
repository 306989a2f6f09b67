/*
 * alloc_ghost.c — GhostTree, the pure-AVL allocator
 * (seeds/bstack-0.2.4-ghost-tree-allocator.rs.txt).
 *
 * On-disk layout (logical payload offsets):
 *
 *   0    reserved[32]   the caller's bytes, never touched here
 *   32   magic[8]       "ALGT\x00\x01\x02\x00" (prefix "ALGT\x00\x01" accepted)
 *   40   root  u64 LE   payload offset of the AVL root node, 0 = empty tree
 *   48   arena          granules of 32 bytes; 16 + 48 = 64 keeps every block
 *                       32-byte aligned in the file, so a valid block offset
 *                       p satisfies p >= 48 and p % 32 == 16
 *
 * A live allocation (off, len) owns [off, off + align_up_len(len)) and has no
 * header at all.  A free block of `size` bytes (a multiple of 32, >= 32)
 * carries its AVL node in its first 32 bytes:
 *
 *   +0 size u64   +8 bf i8   +9 height u8   +10..15 zero
 *   +16 left u64  +24 right u64             (children, 0 = none)
 *
 * The tree is keyed on (size, address), a strict total order.  Every byte of
 * a free block past its node is zero, and so is every byte of a live block
 * past its length: BStack extensions read as zero, dealloc zeroes before it
 * inserts, alloc hands out the zeroed tail of a split block, or the whole
 * block after zeroing its stale node.  The one exception is the caller's
 * doing: bytes it wrote into an in-place growth that a crash then undid
 * (the slice it recorded is the shorter one), so in-place growth checks the
 * old block's bytes past the old length rather than trusting them
 * (gt_grow_in_place).
 *
 * Crash invariant.  Each BStack call is durable when it returns and each
 * node is written by one 32-byte set, so a power cut lands between two node
 * writes.  The allocator never writes inside a live allocation except to
 * zero bytes its owner gave up, so user data is never lost; what a cut can
 * do is the seed's documented leaks (dealloc between zero and insert, a
 * split between remove and re-insert, a grow between alloc and dealloc, a
 * torn rotation orphaning a subtree) and, in a torn removal or a torn
 * open-time rebuild, a node reachable from two parents or a zeroed seam
 * node (size 0) still linked.  Open therefore walks the tree tolerating
 * shared nodes (visited once) and size-0 nodes (skipped), then coalesces and
 * rebuilds (coalesce_and_rebalance).  What no cut can produce is rejected
 * with -EUCLEAN: a cycle, a node outside the arena or misaligned, an
 * impossible size, two free blocks that overlap.  A cut while open zeroes
 * seams can orphan a seam's subtree: a leak (as in the seed), which
 * reclaim() returns once the caller names its live slices.
 *
 * Beyond the seed, with the same bytes on disk: a fresh image is one push
 * of the 48-byte header (no window with a header but no magic); the rebuild
 * skips writing a node whose bytes are already right; slices that run past
 * the payload, overlap within one dealloc_bulk, or are exactly a free
 * block's key (a plain double free) are -EINVAL before anything is written.
 *
 * Beyond the seed in space (off in seed-exact mode, alloc.h, which
 * tests/seedcheck and test_alloc_ghost use; on in bstackfs), still the
 * seed's format, every state one the seed's open accepts:
 *  - merging while mounted: the seed merges freed blocks only at open
 *    (coalesce_and_rebalance), so a mounted image collects free blocks too
 *    small for the next file while the tail grows.  An in-memory address
 *    index (struct gidx) finds a freed block's free neighbours; they leave
 *    the tree and the block goes back merged (gt_free_merged), a valid node
 *    exactly like one the open-time pass builds.  With every free handled so,
 *    no two free blocks are adjacent while mounted;
 *  - tail give-back: a free block that ends at the payload end is removed
 *    and discarded (gt_trim_tail_locked, after every tail discard, and
 *    trim_tail() for the volume's unmount / checkpoint), so the image
 *    shrinks instead of ending in free space;
 *  - front splits and growth into the free right neighbour: alloc hands out
 *    the front of a split block, so a growing file finds the rest of the
 *    block right behind it and grows in place (gt_grow_into_neighbour)
 *    instead of moving and leaving a hole behind.
 * Each mutation is a sequence of the seed's own tree operations (remove,
 * insert) plus node-sized zeroing, so a cut between two of them leaves only
 * leaked, zeroed space (at most a stale node at a piece's start), which the
 * caller's reclaim returns; tests/test_space.c cuts every write of a merge,
 * a front split, a neighbour growth and a give-back.
 *
 * Thread safety as the seed's `atomic` feature: `lock` serialises every tree
 * mutation; growing or shrinking the tail goes through try_extend_zeros /
 * try_discard, whose check-and-act is atomic in the file layer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "util.h"

#define GT_MAGIC        "ALGT\x00\x01\x02\x00"
#define GT_RESERVED     32      /* the caller's bytes, in front of the magic */
#define GT_MAGIC_OFF    32
#define GT_ROOT_OFF     40
#define GT_ARENA        48
#define GT_MIN          32      /* smallest block: exactly one node */
#define GT_NODE         32
#define GT_MAX_DEPTH    128     /* the seed's cycle guard */
#define GT_OVERHEAD     48      /* reserved + magic + root; nothing per block */
#define GT_CHUNK        (1u << 20)

/* One free block in the in-memory address index. */
struct gfree {
	uint64_t ptr, size;
};

/*
 * The address index (beyond the seed, memory only): every free block of the
 * tree, sorted by address, so that a freed block finds its free neighbours
 * without a walk.  Invariant while `ok`: it lists exactly the tree's blocks.
 * Every tree insert and removal updates it under `lock`; a tree operation
 * that fails half-way (or an out-of-memory here) clears `ok`, and the next
 * merging operation rebuilds it from a walk (or, if the tree cannot be
 * walked, frees the seed's way, without merging).  A sorted array: inserts
 * and removals move O(n) bytes in memory, negligible next to the synced node
 * writes of the same operation.
 */
struct gidx {
	struct gfree *v;
	size_t n, cap;
	bool ok;
};

struct ghost {
	struct bs_alloc base;
	pthread_mutex_t lock;
	struct gidx idx;        /* under lock */
};

struct gnode {
	uint64_t size;
	int8_t bf;
	uint8_t height;
	uint64_t left, right;
};

/* A free block found by a tree walk, with the node bytes as stored. */
struct gblk {
	uint64_t ptr, size;
	uint8_t raw[GT_NODE];
};

struct gblks {
	struct gblk *v;
	size_t n, cap;
	unsigned depth;          /* deepest level reached (root = 1) */
};

static struct ghost *to_ghost(struct bs_alloc *a)
{
	return (struct ghost *)a;
}

static uint64_t gt_len(struct ghost *g)
{
	return bstack_len(g->base.bs);
}

/* ---- the address index ------------------------------------------------------ */

/* First position whose block starts at or after p. */
static size_t idx_lower(const struct gidx *x, uint64_t p)
{
	size_t lo = 0, hi = x->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (x->v[mid].ptr < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void idx_add(struct gidx *x, uint64_t ptr, uint64_t size)
{
	if (!x->ok)
		return;
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 64;
		struct gfree *v = realloc(x->v, cap * sizeof *v);
		if (!v) {
			x->ok = false;
			return;
		}
		x->v = v;
		x->cap = cap;
	}
	size_t i = idx_lower(x, ptr);
	if (i < x->n && x->v[i].ptr == ptr) {
		x->ok = false;   /* the tree cannot hold two blocks at one address */
		return;
	}
	memmove(&x->v[i + 1], &x->v[i], (x->n - i) * sizeof *x->v);
	x->v[i] = (struct gfree){ ptr, size };
	x->n++;
}

static void idx_del(struct gidx *x, uint64_t ptr)
{
	if (!x->ok)
		return;
	size_t i = idx_lower(x, ptr);
	if (i == x->n || x->v[i].ptr != ptr) {
		x->ok = false;
		return;
	}
	memmove(&x->v[i], &x->v[i + 1], (x->n - i - 1) * sizeof *x->v);
	x->n--;
}

/* The free block starting at p / ending at p, if the index knows one. */
static bool idx_at(const struct gidx *x, uint64_t p, struct gfree *out)
{
	size_t i = idx_lower(x, p);
	if (!x->ok || i == x->n || x->v[i].ptr != p)
		return false;
	*out = x->v[i];
	return true;
}

static bool idx_ending_at(const struct gidx *x, uint64_t p, struct gfree *out)
{
	size_t i = idx_lower(x, p);
	if (!x->ok || i == 0 || x->v[i - 1].ptr + x->v[i - 1].size != p)
		return false;
	*out = x->v[i - 1];
	return true;
}

/* Make the index list exactly v[0..n) (sorted by address); ok again. */
static int idx_set(struct gidx *x, const struct gblk *v, size_t n)
{
	x->ok = false;
	if (n > x->cap) {
		struct gfree *nv = realloc(x->v, n * sizeof *nv);
		if (!nv)
			return 0;   /* merging stays off; not an error of the caller's */
		x->v = nv;
		x->cap = n;
	}
	for (size_t i = 0; i < n; i++)
		x->v[i] = (struct gfree){ v[i].ptr, v[i].size };
	x->n = n;
	x->ok = true;
	return 0;
}

/* ---- sizes and slices ----------------------------------------------------- */

/* The seed's align_up_len: next multiple of 32, at least 32. */
static bool gt_align_len(uint64_t len, uint64_t *out)
{
	uint64_t r;
	if (!align_up_ok(len, 32, &r))
		return false;
	*out = r < GT_MIN ? GT_MIN : r;
	return true;
}

/* The seed's align_up_ptr check, off == ((off + 15) & ~31) + 16, which is
 * off % 32 == 16 (written so that it cannot overflow). */
static bool gt_ptr_ok(uint64_t off)
{
	return off >= GT_ARENA && off % 32 == 16;
}


/* ---- nodes ------------------------------------------------------------------ */

static void gt_decode(const uint8_t *b, struct gnode *n)
{
	n->size = le64_get(b);
	n->bf = (int8_t)b[8];
	n->height = b[9];
	n->left = le64_get(b + 16);
	n->right = le64_get(b + 24);
}

static void gt_encode(uint8_t *b, uint64_t size, int8_t bf, uint8_t h,
		      uint64_t left, uint64_t right)
{
	memset(b, 0, GT_NODE);
	le64_put(b, size);
	b[8] = (uint8_t)bf;
	b[9] = h;
	le64_put(b + 16, left);
	le64_put(b + 24, right);
}

/* True when a node may live at ptr at all (it is read before being trusted). */
static bool gt_node_ptr_ok(struct ghost *g, uint64_t ptr)
{
	return gt_ptr_ok(ptr) && range_ok(ptr, GT_NODE, gt_len(g));
}

static bool gt_size_ok(struct ghost *g, uint64_t ptr, uint64_t size)
{
	return size >= GT_MIN && size % 32 == 0 && range_ok(ptr, size, gt_len(g));
}

/* Read a node without judging its fields; the pointer itself is checked. */
static int gt_read_raw(struct ghost *g, uint64_t ptr, uint8_t *raw, struct gnode *n)
{
	if (!gt_node_ptr_ok(g, ptr))
		return -EUCLEAN;
	int r = bstack_get(g->base.bs, ptr, raw, GT_NODE);
	if (r)
		return r;
	gt_decode(raw, n);
	return 0;
}

/* Read a node the tree operations may trust: its block must fit. */
static int gt_read(struct ghost *g, uint64_t ptr, struct gnode *n)
{
	uint8_t raw[GT_NODE];
	int r = gt_read_raw(g, ptr, raw, n);
	if (r)
		return r;
	return gt_size_ok(g, ptr, n->size) ? 0 : -EUCLEAN;
}

/*
 * Durable write of n bytes at off, skipped when the disk already holds
 * exactly those bytes.  The seed writes every node on an AVL path twice
 * (update, then rebalance) whether or not it changed; skipping an identical
 * write leaves every intermediate disk state, and so every crash outcome
 * and the final bytes, exactly the seed's, while an insert or remove costs
 * a sync per node that really changes instead of two per level.
 */
static int gt_set_if_changed(struct ghost *g, uint64_t off, const uint8_t *b, size_t n)
{
	uint8_t cur[GT_NODE];
	if (n <= sizeof cur && bstack_get(g->base.bs, off, cur, n) == 0 &&
	    memcmp(cur, b, n) == 0)
		return 0;
	return bstack_set(g->base.bs, off, b, n);
}

static int gt_write(struct ghost *g, uint64_t ptr, uint64_t size, int8_t bf,
		    uint8_t h, uint64_t left, uint64_t right)
{
	uint8_t b[GT_NODE];
	gt_encode(b, size, bf, h, left, right);
	return gt_set_if_changed(g, ptr, b, GT_NODE);
}

static int gt_read_root(struct ghost *g, uint64_t *root)
{
	uint8_t b[8];
	int r = bstack_get(g->base.bs, GT_ROOT_OFF, b, 8);
	if (!r)
		*root = le64_get(b);
	return r;
}

static int gt_write_root(struct ghost *g, uint64_t root)
{
	uint8_t b[8];
	le64_put(b, root);
	return gt_set_if_changed(g, GT_ROOT_OFF, b, 8);
}

/* ---- AVL primitives (the seed's, one for one) ------------------------------- */

static int gt_height(struct ghost *g, uint64_t ptr, int *h)
{
	struct gnode n;
	if (ptr == 0) {
		*h = 0;
		return 0;
	}
	int r = gt_read(g, ptr, &n);
	if (!r)
		*h = n.height;
	return r;
}

/* avl_write_and_update: write (size, left, right) with bf and height derived
 * from the children's stored heights; *bf (may be NULL) gets the bf.  The
 * casts wrap exactly as the seed's `as i8` / `as u8`. */
static int gt_write_update(struct ghost *g, uint64_t ptr, uint64_t size,
			   uint64_t left, uint64_t right, int *bf)
{
	int lh, rh;
	int r = gt_height(g, left, &lh);
	if (!r)
		r = gt_height(g, right, &rh);
	if (r)
		return r;
	int8_t b = (int8_t)(rh - lh);
	uint8_t h = (uint8_t)(1 + (lh > rh ? lh : rh));
	r = gt_write(g, ptr, size, b, h, left, right);
	if (!r && bf)
		*bf = b;
	return r;
}

static int gt_update_bf(struct ghost *g, uint64_t ptr, int *bf)
{
	struct gnode n;
	int r = gt_read(g, ptr, &n);
	return r ? r : gt_write_update(g, ptr, n.size, n.left, n.right, bf);
}

static int gt_rotate_right(struct ghost *g, uint64_t node, uint64_t *out)
{
	struct gnode n, p;
	int r = gt_read(g, node, &n);
	if (!r)
		r = gt_read(g, n.left, &p);
	if (!r)
		r = gt_write_update(g, node, n.size, p.right, n.right, NULL);
	if (!r)
		r = gt_write_update(g, n.left, p.size, p.left, node, NULL);
	if (!r)
		*out = n.left;
	return r;
}

static int gt_rotate_left(struct ghost *g, uint64_t node, uint64_t *out)
{
	struct gnode n, p;
	int r = gt_read(g, node, &n);
	if (!r)
		r = gt_read(g, n.right, &p);
	if (!r)
		r = gt_write_update(g, node, n.size, n.left, p.left, NULL);
	if (!r)
		r = gt_write_update(g, n.right, p.size, node, p.right, NULL);
	if (!r)
		*out = n.right;
	return r;
}

/* avl_rebalance: `< -1` / `> 1` as the seed, so a bf beyond ±2 left by a
 * crash still gets corrected. */
static int gt_rebalance(struct ghost *g, uint64_t node, uint64_t *out)
{
	struct gnode n, c;
	uint64_t nc;
	int bf;
	int r = gt_update_bf(g, node, &bf);
	if (r)
		return r;
	if (bf < -1) {
		if ((r = gt_read(g, node, &n)) || (r = gt_read(g, n.left, &c)))
			return r;
		if (c.bf > 0) {
			if ((r = gt_rotate_left(g, n.left, &nc)) ||
			    (r = gt_read(g, node, &n)) ||
			    (r = gt_write_update(g, node, n.size, nc, n.right, NULL)))
				return r;
		}
		return gt_rotate_right(g, node, out);
	}
	if (bf > 1) {
		if ((r = gt_read(g, node, &n)) || (r = gt_read(g, n.right, &c)))
			return r;
		if (c.bf < 0) {
			if ((r = gt_rotate_right(g, n.right, &nc)) ||
			    (r = gt_read(g, node, &n)) ||
			    (r = gt_write_update(g, node, n.size, n.left, nc, NULL)))
				return r;
		}
		return gt_rotate_left(g, node, out);
	}
	*out = node;
	return 0;
}

struct gpath {
	uint64_t ptr, size, left, right;
	bool went_left;
};

static bool gt_key_less(uint64_t sa, uint64_t pa, uint64_t sb, uint64_t pb)
{
	return sa < sb || (sa == sb && pa < pb);
}

/* Propagate a new child up a recorded path, rebalancing each ancestor; the
 * root pointer is written last (the seed's up-pass). */
static int gt_up_pass(struct ghost *g, const struct gpath *path, size_t n,
		      uint64_t child)
{
	for (size_t i = n; i-- > 0;) {
		const struct gpath *e = &path[i];
		uint64_t l = e->went_left ? child : e->left;
		uint64_t rt = e->went_left ? e->right : child;
		int r = gt_write_update(g, e->ptr, e->size, l, rt, NULL);
		if (!r)
			r = gt_rebalance(g, e->ptr, &child);
		if (r)
			return r;
	}
	return gt_write_root(g, child);
}

/* avl_insert: the block [ptr, ptr + size) must already be zeroed (its node
 * bytes are overwritten here).  Caller holds the lock. */
static int gt_insert(struct ghost *g, uint64_t ptr, uint64_t size)
{
	struct gpath path[GT_MAX_DEPTH];
	size_t n = 0;
	uint64_t cur;
	int r = gt_read_root(g, &cur);
	if (r)
		return r;
	while (cur != 0) {
		struct gnode nd;
		if (n >= GT_MAX_DEPTH)
			return -EUCLEAN;   /* corrupted tree: possible cycle */
		if ((r = gt_read(g, cur, &nd)))
			return r;
		bool left = gt_key_less(size, ptr, nd.size, cur);
		path[n++] = (struct gpath){ cur, nd.size, nd.left, nd.right, left };
		cur = left ? nd.left : nd.right;
	}
	if (!(r = gt_write(g, ptr, size, 0, 1, 0, 0)))
		r = gt_up_pass(g, path, n, ptr);
	if (r)
		g->idx.ok = false;
	else
		idx_add(&g->idx, ptr, size);
	return r;
}

/* avl_remove_min of the subtree at root: *min / *min_size the removed node,
 * *new_root the subtree's new root. */
static int gt_remove_min(struct ghost *g, uint64_t root, uint64_t *min,
			 uint64_t *min_size, uint64_t *new_root)
{
	struct gpath path[GT_MAX_DEPTH];
	size_t n = 0;
	uint64_t cur = root;
	for (;;) {
		struct gnode nd;
		int r = gt_read(g, cur, &nd);
		if (r)
			return r;
		if (nd.left == 0) {
			uint64_t child = nd.right;
			for (size_t i = n; i-- > 0;) {
				r = gt_write_update(g, path[i].ptr, path[i].size, child,
						    path[i].right, NULL);
				if (!r)
					r = gt_rebalance(g, path[i].ptr, &child);
				if (r)
					return r;
			}
			*min = cur;
			*min_size = nd.size;
			*new_root = child;
			return 0;
		}
		if (n >= GT_MAX_DEPTH)
			return -EUCLEAN;
		path[n++] = (struct gpath){ cur, nd.size, nd.left, nd.right, true };
		cur = nd.left;
	}
}

/* Unlink path[fit] (ancestors path[0..fit), children as recorded): the
 * seed's removal inside avl_find_best_fit_and_remove. */
static int gt_unlink_at(struct ghost *g, const struct gpath *path, size_t fit)
{
	const struct gpath *f = &path[fit];
	uint64_t repl;
	int r = 0;
	if (f->left == 0) {
		repl = f->right;
	} else if (f->right == 0) {
		repl = f->left;
	} else {
		uint64_t succ, succ_sz, nr;
		if ((r = gt_remove_min(g, f->right, &succ, &succ_sz, &nr)) ||
		    (r = gt_write_update(g, succ, succ_sz, f->left, nr, NULL)) ||
		    (r = gt_rebalance(g, succ, &repl)))
			goto out;
	}
	r = gt_up_pass(g, path, fit, repl);
out:
	if (r)
		g->idx.ok = false;
	else
		idx_del(&g->idx, f->ptr);
	return r;
}

/* avl_find_best_fit_and_remove: the smallest block >= min (ties: lowest
 * address).  *found = false when none fits.  Caller holds the lock. */
static int gt_take_best_fit(struct ghost *g, uint64_t min, bool *found,
			    uint64_t *ptr, uint64_t *size)
{
	struct gpath path[GT_MAX_DEPTH];
	size_t n = 0, fit = 0;
	bool any = false;
	uint64_t cur;
	int r = gt_read_root(g, &cur);
	*found = false;
	if (r)
		return r;
	while (cur != 0) {
		struct gnode nd;
		if (n >= GT_MAX_DEPTH)
			return -EUCLEAN;
		if ((r = gt_read(g, cur, &nd)))
			return r;
		bool fits = nd.size >= min;
		if (fits) {
			fit = n;
			any = true;
		}
		path[n++] = (struct gpath){ cur, nd.size, nd.left, nd.right, fits };
		cur = fits ? nd.left : nd.right;
	}
	if (!any)
		return 0;
	if ((r = gt_unlink_at(g, path, fit)))
		return r;
	*found = true;
	*ptr = path[fit].ptr;
	*size = path[fit].size;
	return 0;
}

/*
 * Beyond the seed (merging): remove the exact key (size, ptr) from the tree
 * with the same removal as a best-fit take.  -ENOENT when the tree does not
 * hold it (the index disagreed: the caller falls back).  Caller holds the
 * lock.
 */
static int gt_remove_key(struct ghost *g, uint64_t ptr, uint64_t size)
{
	struct gpath path[GT_MAX_DEPTH];
	size_t n = 0;
	uint64_t cur;
	int r = gt_read_root(g, &cur);
	while (!r && cur != 0) {
		struct gnode nd;
		if (n >= GT_MAX_DEPTH)
			return -EUCLEAN;
		if ((r = gt_read(g, cur, &nd)))
			break;
		bool left = gt_key_less(size, ptr, nd.size, cur);
		path[n] = (struct gpath){ cur, nd.size, nd.left, nd.right, left };
		if (cur == ptr && nd.size == size)
			return gt_unlink_at(g, path, n);
		n++;
		cur = left ? nd.left : nd.right;
	}
	if (!r)
		r = -ENOENT;
	g->idx.ok = false;
	return r;
}

/* ---- walking the tree --------------------------------------------------------- */

/* Open-addressing set of block offsets (never 0), for shared-node detection. */
struct u64set {
	uint64_t *v;
	size_t cap, n;
};

static size_t set_slot(const struct u64set *s, uint64_t k)
{
	return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 7) & (s->cap - 1);
}

static bool set_has(const struct u64set *s, uint64_t k)
{
	if (!s->cap)
		return false;
	for (size_t i = set_slot(s, k); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == k)
			return true;
	return false;
}

static int set_add(struct u64set *s, uint64_t k)
{
	if (2 * (s->n + 1) > s->cap) {
		struct u64set t = { calloc(s->cap ? 2 * s->cap : 64, sizeof(uint64_t)),
				    s->cap ? 2 * s->cap : 64, 0 };
		if (!t.v)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				set_add(&t, s->v[i]);
		free(s->v);
		*s = t;
	}
	size_t i = set_slot(s, k);
	while (s->v[i] && s->v[i] != k)
		i = (i + 1) & (s->cap - 1);
	if (!s->v[i]) {
		s->v[i] = k;
		s->n++;
	}
	return 0;
}

static int blks_push(struct gblks *b, const struct gblk *x)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct gblk *v = realloc(b->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = *x;
	return 0;
}

struct wframe {
	uint64_t ptr, left, right;
	int state;
};

/*
 * Collect every free block reachable from root.  Bounded: depth <= 128 and
 * each node is expanded once (a node reached from two parents, which a torn
 * removal can leave, is collected once, as the seed's dedup does); a pointer
 * back to a node on the current path is a cycle: -EUCLEAN.  `lenient`
 * (open) skips size-0 nodes, the zeroed seams a torn rebuild can leave
 * linked; otherwise they are -EUCLEAN like every other impossible size.
 */
static int gt_walk(struct ghost *g, uint64_t root, bool lenient, struct gblks *out)
{
	struct wframe st[GT_MAX_DEPTH];
	struct u64set seen = { 0 };
	size_t d = 0;
	uint64_t next = root;
	int r = 0;

	for (;;) {
		if (next) {
			struct gblk b;
			struct gnode n;
			for (size_t i = 0; i < d; i++)
				if (st[i].ptr == next) {
					r = -EUCLEAN;   /* cycle */
					goto out;
				}
			if (d == GT_MAX_DEPTH) {
				r = -EUCLEAN;
				goto out;
			}
			if (!set_has(&seen, next)) {
				if ((r = gt_read_raw(g, next, b.raw, &n)) ||
				    (r = set_add(&seen, next)))
					goto out;
				b.ptr = next;
				b.size = n.size;
				if (!(lenient && n.size == 0)) {
					if (!gt_size_ok(g, next, n.size)) {
						r = -EUCLEAN;
						goto out;
					}
					if ((r = blks_push(out, &b)))
						goto out;
				}
				st[d++] = (struct wframe){ next, n.left, n.right, 0 };
				if (d > out->depth)
					out->depth = (unsigned)d;
			}
		}
		next = 0;
		if (d == 0)
			break;
		struct wframe *f = &st[d - 1];
		if (f->state == 0) {
			f->state = 1;
			next = f->left;
		} else if (f->state == 1) {
			f->state = 2;
			next = f->right;
		} else {
			d--;
		}
	}
out:
	free(seen.v);
	return r;
}

static int cmp_ptr(const void *a, const void *b)
{
	const struct gblk *x = a, *y = b;
	return x->ptr < y->ptr ? -1 : x->ptr > y->ptr;
}

static int cmp_key(const void *a, const void *b)
{
	const struct gblk *x = a, *y = b;
	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return x->ptr < y->ptr ? -1 : x->ptr > y->ptr;
}

/* qsort, which must not see a NULL base even for zero elements. */
static void sort_blks(struct gblk *v, size_t n, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(v, n, sizeof *v, cmp);
}

/* Balanced build of v[lo, hi) (sorted by key), children before parents and
 * left before right, as the seed's BuildOp stack.  A node whose stored bytes
 * already equal what would be written is left alone: same image, fewer
 * syncs.  Recursion depth is log2(n). */
static int gt_build(struct ghost *g, struct gblk *v, size_t lo, size_t hi,
		    uint64_t *root, int *height)
{
	uint64_t l, rt;
	int lh, rh;
	uint8_t b[GT_NODE];
	if (lo >= hi) {
		*root = 0;
		*height = 0;
		return 0;
	}
	size_t mid = lo + (hi - lo) / 2;
	int r = gt_build(g, v, lo, mid, &l, &lh);
	if (!r)
		r = gt_build(g, v, mid + 1, hi, &rt, &rh);
	if (r)
		return r;
	*height = 1 + (lh > rh ? lh : rh);
	gt_encode(b, v[mid].size, (int8_t)(rh - lh), (uint8_t)*height, l, rt);
	if (memcmp(b, v[mid].raw, GT_NODE) != 0 &&
	    (r = bstack_set(g->base.bs, v[mid].ptr, b, GT_NODE)))
		return r;
	*root = v[mid].ptr;
	return 0;
}

/*
 * coalesce_and_rebalance (run by open and by reclaim).  Step 1: collect the
 * reachable free blocks; 2: sort by address (shared nodes are already
 * collected once); 3: merge neighbours, zeroing each absorbed node (the
 * seam) so the merged block is all zero past its own node; 4: rebuild a
 * balanced tree over (size, address), root pointer last.  A cut during step
 * 3 leaves size-0 seams linked in the old tree (skipped by the lenient
 * walk); a cut during step 4 leaves old-form and new-form nodes mixed, which
 * stay acyclic and disjoint because seams are zeroed before any rebuild write.
 */
static int gt_coalesce(struct ghost *g, bool lenient)
{
	struct gblks w = { 0 };
	uint64_t root, new_root;
	int h, r = gt_read_root(g, &root);
	if (r)
		return r;
	if (root == 0)
		return idx_set(&g->idx, NULL, 0);
	g->idx.ok = false;   /* until the rebuild below completes */
	if ((r = gt_walk(g, root, lenient, &w)))
		goto out;
	sort_blks(w.v, w.n, cmp_ptr);
	size_t m = 0;
	for (size_t i = 0; i < w.n; i++) {
		if (m && w.v[m - 1].ptr + w.v[m - 1].size > w.v[i].ptr) {
			r = -EUCLEAN;   /* overlapping free blocks: no cut does that */
			goto out;
		}
		if (m && w.v[m - 1].ptr + w.v[m - 1].size == w.v[i].ptr) {
			if ((r = bstack_zero(g->base.bs, w.v[i].ptr, GT_NODE)))
				goto out;
			w.v[m - 1].size += w.v[i].size;
			continue;
		}
		w.v[m++] = w.v[i];
	}
	struct gblk *by_addr = m ? malloc(m * sizeof *by_addr) : NULL;
	if (by_addr)
		memcpy(by_addr, w.v, m * sizeof *by_addr);
	sort_blks(w.v, m, cmp_key);
	if (!(r = gt_build(g, w.v, 0, m, &new_root, &h)) && new_root != root)
		r = gt_write_root(g, new_root);
	if (!r && (by_addr || m == 0))
		idx_set(&g->idx, by_addr, m);   /* an out-of-memory only disables merging */
	free(by_addr);
out:
	free(w.v);
	return r;
}

/* Merging needs the index: rebuild it from a walk when an earlier failure
 * left it unsure.  False (free the seed's way) in seed-exact mode or when
 * the tree cannot be walked.  Caller holds the lock. */
static bool gt_merging(struct ghost *g)
{
	struct gblks w = { 0 };
	uint64_t root;
	if (g->base.seed_exact)
		return false;
	if (g->idx.ok)
		return true;
	if (gt_read_root(g, &root) == 0 && (root == 0 || gt_walk(g, root, false, &w) == 0)) {
		sort_blks(w.v, w.n, cmp_ptr);
		idx_set(&g->idx, w.v, w.n);
	}
	free(w.v);
	return g->idx.ok;
}

/* ---- the allocator interface ------------------------------------------------ */

static void gt_lock(struct ghost *g)
{
	pthread_mutex_lock(&g->lock);
}

static void gt_unlock(struct ghost *g)
{
	pthread_mutex_unlock(&g->lock);
}

/*
 * -EINVAL when the tree holds exactly the key (size, ptr): the block is
 * already free.  Beyond the seed, which cannot detect double frees at all:
 * this catches the plain one (the same slice freed twice) without false
 * positives, before a dealloc's zeroing would wipe the free block's node
 * or a realloc would hand out free space.  Reads only, one path.
 */
static int gt_not_free(struct ghost *g, uint64_t ptr, uint64_t size)
{
	uint64_t cur;
	int r;
	gt_lock(g);
	r = gt_read_root(g, &cur);
	for (unsigned d = 0; !r && cur; d++) {
		struct gnode nd;
		if (d == GT_MAX_DEPTH || (r = gt_read(g, cur, &nd)))
			break;
		if (nd.size == size && cur == ptr)
			r = -EINVAL;
		cur = gt_key_less(size, ptr, nd.size, cur) ? nd.left : nd.right;
	}
	gt_unlock(g);
	return r == -EINVAL ? r : 0;   /* a damaged tree is for insert to report */
}

/* A non-null slice this allocator could have handed out: *ext gets its block
 * size.  Beyond the seed, a slice running past the payload or naming a free
 * block is refused too. */
static int gt_slice(struct ghost *g, struct bs_slice s, uint64_t *ext)
{
	if (!gt_ptr_ok(s.off) || !gt_align_len(s.len, ext) ||
	    !range_ok(s.off, *ext, gt_len(g)))
		return -EINVAL;
	return gt_not_free(g, s.off, *ext);
}

/*
 * Take `aligned` bytes: best fit from the tree, split with the remainder kept
 * in front (the caller gets the zeroed tail), or the whole block after zeroing
 * its stale node, or a fresh extension.  Crash: between remove and re-insert
 * the whole block leaks (seed).
 *
 * Beyond the seed (not in seed-exact mode): the caller gets the FRONT of a
 * split block and the remainder's node moves to ptr + aligned (zero bytes
 * of the free block until then), so the allocation has the rest of the
 * block as its free right neighbour and can later grow into it in place
 * (gt_grow_fast) instead of moving.  Steps: remove, insert the remainder,
 * zero the old node (now the caller's first bytes).  A cut after the insert
 * leaks the taken part with a stale node in it; reclaim zeroes it.
 */
static int gt_take(struct ghost *g, uint64_t aligned, uint64_t *off)
{
	uint64_t ptr, size;
	bool found;
	gt_lock(g);
	int r = gt_take_best_fit(g, aligned, &found, &ptr, &size);
	if (r || !found) {
		gt_unlock(g);
		return r ? r : bstack_extend(g->base.bs, aligned, off);
	}
	if (size - aligned >= GT_MIN && !g->base.seed_exact) {
		r = gt_insert(g, ptr + aligned, size - aligned);
		gt_unlock(g);
		*off = ptr;
		return r ? r : bstack_zero(g->base.bs, ptr, GT_NODE);
	}
	if (size - aligned >= GT_MIN) {
		r = gt_insert(g, ptr, size - aligned);
		gt_unlock(g);
		*off = ptr + size - aligned;
		return r;
	}
	/* No split: the block is ours now, so zero its node outside the lock. */
	gt_unlock(g);
	*off = ptr;
	return bstack_zero(g->base.bs, ptr, GT_NODE);
}

static int gt_alloc(struct bs_alloc *a, uint64_t len, struct bs_slice *out)
{
	uint64_t aligned, off;
	if (len == 0) {
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (!gt_align_len(len, &aligned))
		return -EINVAL;
	int r = gt_take(to_ghost(a), aligned, &off);
	if (r)
		return r;
	BS_COUNT(a, n_allocs, 1);
	*out = (struct bs_slice){ off, len };
	return 0;
}

/*
 * Beyond the seed: discard every free block that ends at the payload end,
 * until the last block is live (the cascade FirstFit's seed does at
 * dealloc).  Per block: 1. remove it from the tree, 2. discard it.  A cut
 * between the two leaks the block (reclaim cuts it off); a concurrent
 * extension between them (the tail moved) puts it back.  *freed (may be
 * NULL) adds the bytes given back.  Caller holds the lock and has checked
 * gt_merging().
 */
static int gt_trim_tail_locked(struct ghost *g, uint64_t *freed)
{
	struct gfree b;
	bool done;
	int r;
	while (idx_ending_at(&g->idx, gt_len(g), &b)) {
		uint64_t len = b.ptr + b.size;
		if ((r = gt_remove_key(g, b.ptr, b.size)) ||
		    (r = bstack_try_discard(g->base.bs, len, b.size, &done)))
			return r;
		if (!done)
			return gt_insert(g, b.ptr, b.size);
		BS_COUNT(&g->base, n_tail_discards, 1);
		if (freed)
			*freed += b.size;
	}
	return 0;
}

/*
 * Beyond the seed: free [ptr, ptr + size), already zeroed, merged with its
 * free neighbours, so that the tree never holds two adjacent blocks nor a
 * block at the tail (as after the seed's open-time coalesce, plus the tail
 * rule).  The merged block is an ordinary node: the format is the seed's.
 *   1. remove the free left neighbour L (ending at ptr) from the tree;
 *   2. remove the free right neighbour R (starting at ptr + size), then zero
 *      its node: inside the merged block it is a seam, and every byte of a
 *      free block past its own node is zero;
 *   3. at the tail: discard the merged block (then cascade); else
 *   4. insert it, its node at L's (or ptr's) address.
 * A cut at any step leaves the pieces out of the tree: leaked, zeroed but
 * for at most a stale node at their start, which reclaim zeroes and merges.
 * Caller holds the lock and has checked gt_merging().
 */
static int gt_free_merged(struct ghost *g, uint64_t ptr, uint64_t size)
{
	uint64_t lo = ptr, hi = ptr + size;
	struct gfree b;
	bool done;
	int r;
	if (idx_ending_at(&g->idx, lo, &b)) {
		if ((r = gt_remove_key(g, b.ptr, b.size)))
			return r;
		lo = b.ptr;
	}
	if (idx_at(&g->idx, hi, &b)) {
		if ((r = gt_remove_key(g, b.ptr, b.size)) ||
		    (r = bstack_zero(g->base.bs, b.ptr, GT_NODE)))
			return r;
		hi += b.size;
	}
	if (hi == gt_len(g)) {
		if ((r = bstack_try_discard(g->base.bs, hi, hi - lo, &done)))
			return r;
		if (done) {
			BS_COUNT(&g->base, n_tail_discards, 1);
			return gt_trim_tail_locked(g, NULL);
		}
	}
	return gt_insert(g, lo, hi - lo);
}

/* Give [ptr, ptr + size) back: discard it when it is the tail, else zero it
 * (outside the lock: the caller still owns it) and insert it.  Crash between
 * zero and insert: the block leaks, zeroed (seed).  Beyond the seed (not in
 * seed-exact mode) the insert merges with the free neighbours and a tail
 * discard cascades (gt_free_merged). */
static int gt_release(struct ghost *g, uint64_t ptr, uint64_t size)
{
	bool done;
	int r = bstack_try_discard(g->base.bs, ptr + size, size, &done);
	if (r)
		return r;
	if (done) {
		BS_COUNT(&g->base, n_tail_discards, 1);
		if (g->base.seed_exact)
			return 0;
		gt_lock(g);
		if (gt_merging(g))
			r = gt_trim_tail_locked(g, NULL);
		gt_unlock(g);
		return r;
	}
	if ((r = bstack_zero(g->base.bs, ptr, size)))
		return r;
	gt_lock(g);
	r = gt_merging(g) ? gt_free_merged(g, ptr, size) : gt_insert(g, ptr, size);
	gt_unlock(g);
	return r;
}

static int gt_trim_tail(struct bs_alloc *a, uint64_t *freed)
{
	struct ghost *g = to_ghost(a);
	int r = 0;
	*freed = 0;
	gt_lock(g);
	if (gt_merging(g))
		r = gt_trim_tail_locked(g, freed);
	gt_unlock(g);
	return r;
}

static int gt_dealloc(struct bs_alloc *a, struct bs_slice s)
{
	uint64_t ext;
	if (s.len == 0)
		return s.off == 0 ? 0 : -EINVAL;
	int r = gt_slice(to_ghost(a), s, &ext);
	if (!r)
		r = gt_release(to_ghost(a), s.off, ext);
	if (!r)
		BS_COUNT(a, n_deallocs, 1);
	return r;
}

/* Copy n bytes from src to dst (both inside the payload), then sync once. */
static int gt_copy(struct ghost *g, uint64_t dst, uint64_t src, uint64_t n)
{
	size_t cap = n < GT_CHUNK ? (size_t)n : GT_CHUNK;
	uint8_t *buf = malloc(cap ? cap : 1);
	int r = 0;
	if (!buf)
		return -ENOMEM;
	for (uint64_t done = 0; !r && done < n; done += cap) {
		size_t k = n - done < cap ? (size_t)(n - done) : cap;
		r = bstack_get(g->base.bs, src + done, buf, k);
		if (!r)
			r = bstack_set_nosync(g->base.bs, dst + done, buf, k);
	}
	free(buf);
	return r ? r : bstack_sync(g->base.bs);
}

/* Shrink s (block ext) to new_len with block an < ext: tail discard, else
 * zero the gap and the freed tail, then insert the tail. */
static int gt_shrink(struct ghost *g, struct bs_slice s, uint64_t ext,
		     uint64_t new_len, uint64_t an)
{
	bool done;
	int r = bstack_try_discard(g->base.bs, s.off + ext, ext - an, &done);
	if (r)
		return r;
	if (done) {
		BS_COUNT(&g->base, n_tail_discards, 1);
		return new_len < an ? bstack_zero(g->base.bs, s.off + new_len, an - new_len)
				    : 0;
	}
	if ((r = bstack_zero(g->base.bs, s.off + new_len, ext - new_len)))
		return r;
	gt_lock(g);
	r = gt_merging(g) ? gt_free_merged(g, s.off + an, ext - an)
			  : gt_insert(g, s.off + an, ext - an);
	gt_unlock(g);
	return r;
}

/*
 * Beyond the seed (not in seed-exact mode): grow [off, off + ext) by `need`
 * bytes into its free right neighbour R when R is large enough: 1. remove
 * R, 2. insert what is left of it at R + need (zero bytes of R until then),
 * 3. zero R's old node, now inside the allocation.  A cut leaves the taken
 * part leaked (the caller has not recorded the growth yet); reclaim zeroes
 * it.  *done false and nothing changed when R is missing or too small.
 */
static int gt_grow_into_neighbour(struct ghost *g, uint64_t off, uint64_t ext,
				  uint64_t need, bool *done)
{
	struct gfree b;
	int r = 0;
	*done = false;
	gt_lock(g);
	if (gt_merging(g) && idx_at(&g->idx, off + ext, &b) && b.size >= need) {
		r = gt_remove_key(g, b.ptr, b.size);
		if (!r && b.size > need)
			r = gt_insert(g, b.ptr + need, b.size - need);
		*done = r == 0;
	}
	gt_unlock(g);
	return *done ? bstack_zero(g->base.bs, off + ext, GT_NODE) : r;
}

/* The non-moving grows: same block, extend the tail, or (beyond the seed)
 * take the free right neighbour.  *done false (nothing changed) otherwise. */
static int gt_grow_fast(struct ghost *g, struct bs_slice s, uint64_t ext,
			uint64_t an, bool *done)
{
	*done = an == ext;
	if (*done)
		return 0;
	if (!g->base.seed_exact) {
		int r = gt_grow_into_neighbour(g, s.off, ext, an - ext, done);
		if (r || *done)
			return r;
	}
	return bstack_try_extend_zeros(g->base.bs, s.off + ext, an - ext, done);
}

/*
 * Counters: every successful call counts one realloc; in place or moved
 * when a slice stays or moves (to or from the null slice it is neither).
 * The alloc and free inside a move are not counted as allocs / deallocs.
 */
static int gt_realloc(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
		      struct bs_slice *out)
{
	struct ghost *g = to_ghost(a);
	uint64_t ext, an, off;
	bool done;
	int r;

	if (s.len == 0) {
		if (s.off != 0)
			return -EINVAL;
		*out = (struct bs_slice){ 0, 0 };
		if (new_len) {
			if (!gt_align_len(new_len, &an))
				return -EINVAL;
			if ((r = gt_take(g, an, &off)))
				return r;
			*out = (struct bs_slice){ off, new_len };
		}
		BS_COUNT(a, n_reallocs, 1);
		return 0;
	}
	if ((r = gt_slice(g, s, &ext)))
		return r;
	if (new_len == 0) {
		if ((r = gt_release(g, s.off, ext)))
			return r;
		BS_COUNT(a, n_reallocs, 1);
		*out = (struct bs_slice){ 0, 0 };
		return 0;
	}
	if (!gt_align_len(new_len, &an))
		return -EINVAL;
	if (an == ext) {
		/* Same block: keep the zero invariant past the new length. */
		if (new_len < s.len)
			r = bstack_zero(g->base.bs, s.off + new_len, s.len - new_len);
	} else if (an < ext) {
		r = gt_shrink(g, s, ext, new_len, an);
	} else {
		r = gt_grow_fast(g, s, ext, an, &done);
		if (!r && !done) {
			/* Grow elsewhere: alloc, copy, free.  A cut between
			 * the alloc and the free leaks the new block; the
			 * old one still holds the data (seed). */
			if ((r = gt_take(g, an, &off)))
				return r;
			if ((r = gt_copy(g, off, s.off, s.len))) {
				gt_release(g, off, an);
				return r;
			}
			if ((r = gt_release(g, s.off, ext)))
				return r;
			BS_COUNT(a, n_reallocs, 1);
			BS_COUNT(a, n_reallocs_moved, 1);
			BS_COUNT(a, n_bytes_copied, s.len);
			*out = (struct bs_slice){ off, new_len };
			return 0;
		}
	}
	if (r)
		return r;
	BS_COUNT(a, n_reallocs, 1);
	BS_COUNT(a, n_reallocs_in_place, 1);
	*out = (struct bs_slice){ s.off, new_len };
	return 0;
}

static int gt_grow_in_place(struct bs_alloc *a, struct bs_slice s, uint64_t new_len,
			    struct bs_slice *out, bool *done)
{
	uint64_t ext, an;
	*done = false;
	if (s.len == 0)
		return s.off == 0 ? 0 : -EINVAL;
	int r = gt_slice(to_ghost(a), s, &ext);
	if (r)
		return r;
	if (new_len < s.len || !gt_align_len(new_len, &an))
		return -EINVAL;   /* shrinking goes through realloc */
	if (new_len == s.len) {
		*done = true;
		*out = s;
		return 0;
	}
	if ((r = gt_grow_fast(to_ghost(a), s, ext, an, done)))
		return r;
	if (*done && s.len < ext) {
		/* The bytes of the block past the old length, [s.len, ext), are
		 * not trusted to be zero (as FirstFit's and Slab's in-place
		 * growth): a caller that wrote into a growth it had not made
		 * durable yet (the volume's data goes in before the record that
		 * names the larger slice) may crash back to the shorter slice,
		 * leaving its bytes there.  They become the caller's new bytes
		 * now, which must read as zero: zero them when they do not (a
		 * read of at most 31 bytes, no write in the common case). */
		uint8_t tail[GT_MIN];
		uint64_t end = new_len < ext ? new_len : ext, n = end - s.len;
		if ((r = bstack_get(a->bs, s.off + s.len, tail, n)))
			return r;
		for (uint64_t i = 0; i < n; i++) {
			if (tail[i]) {
				r = bstack_zero(a->bs, s.off + s.len, n);
				break;
			}
		}
		if (r)
			return r;
	}
	if (*done) {
		BS_COUNT(a, n_reallocs, 1);
		BS_COUNT(a, n_reallocs_in_place, 1);
		*out = (struct bs_slice){ s.off, new_len };
	}
	return 0;
}

/* One block for the whole batch (one remove or one extend), sliced in
 * request order. */
static int gt_alloc_bulk(struct bs_alloc *a, const uint64_t *lens, size_t n,
			 struct bs_slice *out)
{
	uint64_t total = 0, al = 0, off = 0, cnt = 0;
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0)
			continue;
		if (!gt_align_len(lens[i], &al) || !add_ok(total, al, &total))
			return -EINVAL;
		cnt++;
	}
	if (total) {
		int r = gt_take(to_ghost(a), total, &off);
		if (r)
			return r;
	}
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0) {
			out[i] = (struct bs_slice){ 0, 0 };
			continue;
		}
		gt_align_len(lens[i], &al);
		out[i] = (struct bs_slice){ off, lens[i] };
		off += al;
	}
	BS_COUNT(a, n_allocs, cnt);
	return 0;
}

/*
 * Validate everything first (nothing is touched on -EINVAL), sort by address,
 * merge contiguous extents, discard the highest block if it is the tail, zero
 * the rest outside the lock and insert them under it.  Beyond the seed,
 * overlapping slices are refused: inserting one block twice would corrupt
 * the tree.
 */
static int gt_dealloc_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	struct ghost *g = to_ghost(a);
	struct gblk *v = NULL;
	size_t m = 0, k = 0;
	uint64_t cnt = 0;
	bool done;
	int r = 0;

	if (n && !(v = calloc(n, sizeof *v)))
		return -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		if (s[i].len == 0) {
			r = s[i].off == 0 ? 0 : -EINVAL;
			continue;
		}
		r = gt_slice(g, s[i], &v[m].size);
		v[m++].ptr = s[i].off;
	}
	if (r || m == 0)
		goto out;
	cnt = m;
	sort_blks(v, m, cmp_ptr);
	for (size_t i = 0; i < m; i++) {
		if (k && v[k - 1].ptr + v[k - 1].size > v[i].ptr) {
			r = -EINVAL;
			goto out;
		}
		if (k && v[k - 1].ptr + v[k - 1].size == v[i].ptr)
			v[k - 1].size += v[i].size;
		else
			v[k++] = v[i];
	}
	r = bstack_try_discard(g->base.bs, v[k - 1].ptr + v[k - 1].size, v[k - 1].size,
			       &done);
	if (r)
		goto out;
	if (done) {
		BS_COUNT(a, n_tail_discards, 1);
		k--;
	}
	for (size_t i = 0; i < k && !r; i++)
		r = bstack_zero(g->base.bs, v[i].ptr, v[i].size);
	if (r || (k == 0 && (!done || a->seed_exact)))
		goto out;
	gt_lock(g);
	bool merging = gt_merging(g);
	for (size_t i = 0; i < k && !r; i++)
		r = merging ? gt_free_merged(g, v[i].ptr, v[i].size)
			    : gt_insert(g, v[i].ptr, v[i].size);
	if (!r && merging)
		r = gt_trim_tail_locked(g, NULL);
	gt_unlock(g);
out:
	if (!r)
		BS_COUNT(a, n_deallocs, cnt);
	free(v);
	return r;
}

static int gt_extent(struct bs_alloc *a, struct bs_slice s, uint64_t *start,
		     uint64_t *len)
{
	uint64_t ext;
	if (s.len == 0) {
		if (s.off != 0)
			return -EINVAL;
		*start = *len = 0;
		return 0;
	}
	int r = gt_slice(to_ghost(a), s, &ext);
	if (r)
		return r;
	*start = s.off;
	*len = ext;
	return 0;
}

static void gt_stats(struct bs_alloc *a, struct bs_alloc_stats *st)
{
	struct ghost *g = to_ghost(a);
	struct gblks w = { 0 };
	uint64_t root;
	uint64_t len = gt_len(g);

	st->arena_start = GT_ARENA;
	st->arena_bytes = len > GT_ARENA ? len - GT_ARENA : 0;
	st->overhead_bytes = GT_OVERHEAD;
	gt_lock(g);
	/* A damaged tree reports what could be walked; check() says why. */
	if (gt_read_root(g, &root) == 0 && root)
		gt_walk(g, root, false, &w);
	gt_unlock(g);
	st->free_blocks = w.n;
	st->free_bytes = 0;
	st->largest_free = 0;
	for (size_t i = 0; i < w.n; i++) {
		st->free_bytes += w.v[i].size;
		if (w.v[i].size > st->largest_free)
			st->largest_free = w.v[i].size;
	}
	/* no headers: whatever is not in the tree is allocated */
	st->live_bytes = st->arena_bytes > st->free_bytes ? st->arena_bytes - st->free_bytes : 0;
	if (st->n_extra + 2 <= BS_ALLOC_MAX_EXTRA) {
		st->extra[st->n_extra++] = (struct bs_alloc_extra){ "tree_height", w.depth };
		st->extra[st->n_extra++] = (struct bs_alloc_extra){ "tree_nodes", w.n };
	}
	free(w.v);
}

/* ---- check ------------------------------------------------------------------ */

struct chk {
	struct ghost *g;
	bs_report_fn report;
	void *ctx;
	int count;
	uint64_t len;
};

static void chk_report(struct chk *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void chk_report(struct chk *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	c->count++;
	if (!c->report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->report(c->ctx, msg);
}

struct cframe {
	uint64_t ptr, size, left, right;
	uint64_t lo_sz, lo_ptr, hi_sz, hi_ptr;   /* exclusive key bounds */
	bool has_lo, has_hi;
	int8_t bf;
	uint8_t height;
	int state, lh;
};

/* Validate and push child ptr of the top frame (or the root).  Returns 1
 * when pushed, 0 when not (violation reported or null), < 0 on I/O error. */
static int chk_push(struct chk *c, struct cframe *st, size_t *d, struct u64set *seen,
		    struct gblks *blks, uint64_t ptr, const struct cframe *bounds,
		    bool go_left)
{
	struct cframe f = { 0 };
	struct gnode n;
	struct gblk b;
	uint64_t from = *d ? st[*d - 1].ptr : GT_ROOT_OFF;
	int r;

	if (ptr == 0)
		return 0;
	if (!gt_node_ptr_ok(c->g, ptr)) {
		chk_report(c, "node pointer %llu (from %llu) is outside the arena or misaligned",
			   (unsigned long long)ptr, (unsigned long long)from);
		return 0;
	}
	for (size_t i = 0; i < *d; i++)
		if (st[i].ptr == ptr) {
			chk_report(c, "cycle: node %llu points back to its ancestor %llu",
				   (unsigned long long)from, (unsigned long long)ptr);
			return 0;
		}
	if (set_has(seen, ptr)) {
		chk_report(c, "node %llu is reachable twice (shared subtree)",
			   (unsigned long long)ptr);
		return 0;
	}
	if (*d == GT_MAX_DEPTH) {
		chk_report(c, "tree deeper than %d below node %llu", GT_MAX_DEPTH,
			   (unsigned long long)from);
		return 0;
	}
	if ((r = set_add(seen, ptr)) || (r = gt_read_raw(c->g, ptr, b.raw, &n)))
		return r;
	if (!gt_size_ok(c->g, ptr, n.size)) {
		chk_report(c, "node %llu: impossible size %llu (payload %llu)",
			   (unsigned long long)ptr, (unsigned long long)n.size,
			   (unsigned long long)c->len);
	} else {
		b.ptr = ptr;
		b.size = n.size;
		if ((r = blks_push(blks, &b)))
			return r;
	}
	if (bounds) {
		f.has_lo = bounds->has_lo;
		f.lo_sz = bounds->lo_sz;
		f.lo_ptr = bounds->lo_ptr;
		f.has_hi = bounds->has_hi;
		f.hi_sz = bounds->hi_sz;
		f.hi_ptr = bounds->hi_ptr;
		if (go_left) {
			f.has_hi = true;
			f.hi_sz = bounds->size;
			f.hi_ptr = bounds->ptr;
		} else {
			f.has_lo = true;
			f.lo_sz = bounds->size;
			f.lo_ptr = bounds->ptr;
		}
	}
	if ((f.has_lo && !gt_key_less(f.lo_sz, f.lo_ptr, n.size, ptr)) ||
	    (f.has_hi && !gt_key_less(n.size, ptr, f.hi_sz, f.hi_ptr)))
		chk_report(c, "node %llu: key (%llu, %llu) breaks the (size, address) order",
			   (unsigned long long)ptr, (unsigned long long)n.size,
			   (unsigned long long)ptr);
	f.ptr = ptr;
	f.size = n.size;
	f.left = n.left;
	f.right = n.right;
	f.bf = n.bf;
	f.height = n.height;
	st[(*d)++] = f;
	return 1;
}

static void chk_finish(struct chk *c, const struct cframe *f, int rh, int *h)
{
	int real_bf = rh - f->lh;
	*h = 1 + (f->lh > rh ? f->lh : rh);
	if (f->height != *h)
		chk_report(c, "node %llu: stored height %u, real height %d",
			   (unsigned long long)f->ptr, f->height, *h);
	if (f->bf != real_bf)
		chk_report(c, "node %llu: stored balance %d, real balance %d",
			   (unsigned long long)f->ptr, f->bf, real_bf);
	if (real_bf < -1 || real_bf > 1)
		chk_report(c, "node %llu: out of AVL balance (%d)",
			   (unsigned long long)f->ptr, real_bf);
}

/* Depth-first over the tree: pointers, order, heights, balance, cycles. */
static int chk_tree(struct chk *c, uint64_t root, struct gblks *blks)
{
	struct cframe st[GT_MAX_DEPTH];
	struct u64set seen = { 0 };
	size_t d = 0;
	int ret = 0;
	int r = chk_push(c, st, &d, &seen, blks, root, NULL, false);

	while (r >= 0 && d > 0) {
		struct cframe *f = &st[d - 1];
		if (f->state == 0) {
			f->state = 1;
			if ((r = chk_push(c, st, &d, &seen, blks, f->left, f, true)) != 0)
				continue;
			ret = 0;
		}
		if (f->state == 1) {
			f->lh = ret;
			f->state = 2;
			if ((r = chk_push(c, st, &d, &seen, blks, f->right, f, false)) != 0)
				continue;
			ret = 0;
		}
		chk_finish(c, f, ret, &ret);
		d--;
	}
	free(seen.v);
	return r < 0 ? r : 0;
}

/* Free blocks must not overlap and must read as zero past their node. */
static int chk_blocks(struct chk *c, struct gblks *w)
{
	uint8_t *buf = malloc(GT_CHUNK);
	int r = 0;
	if (!buf)
		return -ENOMEM;
	sort_blks(w->v, w->n, cmp_ptr);
	for (size_t i = 0; i < w->n && !r; i++) {
		const struct gblk *b = &w->v[i];
		if (i && w->v[i - 1].ptr + w->v[i - 1].size > b->ptr)
			chk_report(c, "free blocks %llu and %llu overlap",
				   (unsigned long long)w->v[i - 1].ptr,
				   (unsigned long long)b->ptr);
		for (uint64_t o = GT_NODE; !r && o < b->size; o += GT_CHUNK) {
			size_t k = b->size - o < GT_CHUNK ? (size_t)(b->size - o) : GT_CHUNK;
			r = bstack_get(c->g->base.bs, b->ptr + o, buf, k);
			size_t j = 0;
			while (!r && j < k && buf[j] == 0)
				j++;
			if (!r && j < k) {
				chk_report(c, "free block %llu: byte %llu is not zero",
					   (unsigned long long)b->ptr,
					   (unsigned long long)(b->ptr + o + j));
				break;
			}
		}
	}
	free(buf);
	return r;
}

static int gt_check(struct bs_alloc *a, bs_report_fn report, void *ctx)
{
	struct ghost *g = to_ghost(a);
	struct chk c = { g, report, ctx, 0, 0 };
	struct gblks w = { 0 };
	uint8_t hdr[16];
	uint64_t root;
	int r;

	gt_lock(g);
	c.len = gt_len(g);
	if (c.len < GT_ARENA) {
		chk_report(&c, "payload of %llu bytes is shorter than the 48-byte header",
			   (unsigned long long)c.len);
		goto out;
	}
	if ((r = bstack_get(a->bs, GT_MAGIC_OFF, hdr, 16)))
		goto fail;
	if (memcmp(hdr, GT_MAGIC, 6) != 0)
		chk_report(&c, "magic at payload 32 is not ALGT 0.1");
	if ((c.len - GT_ARENA) % 32)
		chk_report(&c, "payload end %llu is not on a 32-byte granule",
			   (unsigned long long)c.len);
	root = le64_get(hdr + 8);
	if ((r = chk_tree(&c, root, &w)) || (r = chk_blocks(&c, &w)))
		goto fail;
out:
	gt_unlock(g);
	free(w.v);
	return c.count;
fail:
	gt_unlock(g);
	free(w.v);
	return r;
}

/* ---- reclaim ---------------------------------------------------------------- */

/*
 * Every arena byte that is neither live nor free is a leak (the seed's crash
 * windows): zero it and insert it, or discard it when it is the tail, then
 * coalesce so the pieces merge with their free neighbours.  All validation
 * happens before the first write.
 */
static int gt_reclaim(struct bs_alloc *a, const struct bs_slice *live, size_t n,
		      uint64_t *reclaimed)
{
	struct ghost *g = to_ghost(a);
	struct gblks w = { 0 };
	uint64_t root, len, cur = GT_ARENA, got = 0;
	bool inserted = false, done;
	int r;

	*reclaimed = 0;
	gt_lock(g);
	len = gt_len(g);
	if ((r = gt_read_root(g, &root)) || (root && (r = gt_walk(g, root, false, &w))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct gblk b = { .ptr = live[i].off };
		if (live[i].len == 0)
			continue;
		if (!gt_ptr_ok(b.ptr) || !gt_align_len(live[i].len, &b.size) ||
		    !range_ok(b.ptr, b.size, len)) {
			r = -EUCLEAN;
			goto out;
		}
		if ((r = blks_push(&w, &b)))
			goto out;
	}
	sort_blks(w.v, w.n, cmp_ptr);
	for (size_t i = 0; i < w.n; i++) {
		if (w.v[i].ptr < cur) {
			r = -EUCLEAN;   /* overlap: live/live, live/free or free/free */
			goto out;
		}
		cur = w.v[i].ptr + w.v[i].size;
	}
	if ((len - cur) % 32) {
		r = -EUCLEAN;
		goto out;
	}
	/* The tail first: a gap there is simply cut off. */
	if (cur < len) {
		if ((r = bstack_try_discard(a->bs, len, len - cur, &done)))
			goto out;
		if (done) {
			BS_COUNT(a, n_tail_discards, 1);
			got += len - cur;
		}
	}
	cur = GT_ARENA;
	for (size_t i = 0; i <= w.n; i++) {
		uint64_t end = i < w.n ? w.v[i].ptr : gt_len(g);
		if (end > cur) {
			if ((r = bstack_zero(a->bs, cur, end - cur)) ||
			    (r = gt_insert(g, cur, end - cur)))
				goto out;
			got += end - cur;
			inserted = true;
		}
		if (i < w.n)
			cur = w.v[i].ptr + w.v[i].size;
	}
	if (inserted)
		r = gt_coalesce(g, false);
	/* beyond the seed: a free block the coalesce left at the tail goes */
	if (!r && gt_merging(g))
		r = gt_trim_tail_locked(g, NULL);
out:
	gt_unlock(g);
	free(w.v);
	*reclaimed = got;
	return r;
}

/* ---- create, open, destroy -------------------------------------------------- */

static void gt_destroy(struct bs_alloc *a)
{
	struct ghost *g = to_ghost(a);
	pthread_mutex_destroy(&g->lock);
	free(g->idx.v);
	free(g);
}

static const struct bs_alloc_ops ghost_ops = {
	.name = "ghost",
	.alloc = gt_alloc,
	.realloc = gt_realloc,
	.dealloc = gt_dealloc,
	.alloc_bulk = gt_alloc_bulk,
	.dealloc_bulk = gt_dealloc_bulk,
	.stats = gt_stats,
	.check = gt_check,
	.extent = gt_extent,
	.reclaim = gt_reclaim,
	.grow_in_place = gt_grow_in_place,
	.trim_tail = gt_trim_tail,
	.destroy = gt_destroy,
};

static int gt_new(struct bstack *bs, struct ghost **out)
{
	struct ghost *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	if (pthread_mutex_init(&g->lock, NULL)) {
		free(g);
		return -ENOMEM;
	}
	bs_alloc_init(&g->base, &ghost_ops, bs, &bs_ghost_desc);
	*out = g;
	return 0;
}

/* Fresh init: the seed extends by 48 and then writes the magic; one push of
 * the same 48 bytes gives the same image without the window in which a cut
 * leaves a header with no magic. */
static int gt_format(struct bstack *bs)
{
	uint8_t hdr[GT_ARENA] = { 0 };
	memcpy(hdr + GT_MAGIC_OFF, GT_MAGIC, 8);
	return bstack_push(bs, hdr, GT_ARENA, NULL);
}

int bs_ghost_create(struct bstack *bs, struct bs_alloc **out)
{
	struct ghost *g;
	if (bstack_len(bs) != 0)
		return -EEXIST;
	int r = gt_new(bs, &g);
	if (r)
		return r;
	if ((r = gt_format(bs))) {
		gt_destroy(&g->base);
		return r;
	}
	*out = &g->base;
	return 0;
}

/*
 * Rebuild (fsck -y, from the caller's live set): the tree is emptied (root
 * = 0, magic rewritten) in one durable write; the caller then opens and
 * reclaims, which zeroes and inserts every gap between live blocks, cuts a
 * free tail and coalesces and rebalances — the seed's own layout of free
 * space.  Live bytes are never written.
 */
int bs_ghost_rebuild(struct bstack *bs, const struct bs_slice *live, size_t n)
{
	uint8_t hdr[16];
	(void)live;
	(void)n;
	if (bstack_len(bs) < GT_ARENA)
		return -EUCLEAN;
	memcpy(hdr, GT_MAGIC, 8);
	le64_put(hdr + 8, 0);
	return bstack_set(bs, GT_MAGIC_OFF, hdr, sizeof hdr);
}

int bs_ghost_open(struct bstack *bs, struct bs_alloc **out)
{
	uint64_t len = bstack_len(bs);
	uint8_t m[8];
	struct ghost *g;
	int r;

	if (len == 0)
		return bs_ghost_create(bs, out);
	if (len < GT_ARENA)
		return -EUCLEAN;   /* partial header: unrecoverable (seed) */
	if ((r = bstack_get(bs, GT_MAGIC_OFF, m, 8)))
		return r;
	if (memcmp(m, "ALGT", 4) != 0)
		return -EILSEQ;
	if (m[4] != 0 || m[5] != 1)
		return -EUCLEAN;   /* ALGT, but a version we do not know */
	if ((len - GT_ARENA) % 32 && (r = bstack_extend(bs, 32 - (len - GT_ARENA) % 32, NULL)))
		return r;
	if ((r = gt_new(bs, &g)))
		return r;
	if ((r = gt_coalesce(g, true))) {
		gt_destroy(&g->base);
		return r;
	}
	*out = &g->base;
	return 0;
}

/* ---- the descriptor (alloc.h) ---------------------------------------------- */

static int gt_create_desc(struct bstack *bs, const struct bs_alloc_opts *o,
			  struct bs_alloc **out)
{
	(void)o;
	return bs_ghost_create(bs, out);
}

/* The free listing follows the tree in order, with each block's depth. */
const struct bs_alloc_desc bs_ghost_desc = {
	.kind = BS_ALLOC_GHOST,
	.name = "ghost",
	.magic_off = GT_MAGIC_OFF,
	.tag = "ALGT",
	.reserved_len = GT_RESERVED,
	.caps = BS_CAP_MAGIC | BS_CAP_REUSES_HOLES,
	.free_structure = "avl tree",
	.free_order = "depth",
	.create = gt_create_desc,
	.open = bs_ghost_open,
	.rebuild = bs_ghost_rebuild,
};
