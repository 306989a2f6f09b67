/*
 * io_stage.c — the staging device: an overlay on another backend that holds
 * every write in memory until the caller accepts them (the two-phase open,
 * docs/design.md §2 and §7: "nothing is written to a refused image").
 *
 * While staging, the base is only read (and locked): every pwrite, zero,
 * truncate and sync is appended to an ordered log, and reads see the base
 * with the log applied.  bs_io_stage_commit() then replays the log on the
 * base in the original order, each logged sync a real sync, so a crash
 * during the replay leaves exactly what a crash during the original
 * operations would have left (the layers above were written against that
 * order).  After the commit the device passes every call straight through.
 * Closing a device that was never committed drops the log: the base keeps
 * every byte.
 *
 * What a read sees, kept as:
 *   size      the staged file size;
 *   base_end  base bytes at or past it are hidden (a staged truncate cut
 *             them off; growing again exposes zeros, as a real file would);
 *   map       non-overlapping extents in a treap by offset, each the
 *             newest staged bytes for its range (data == NULL: zeros),
 *             pointing into the log's buffers.
 * A read of [off, off + n) is the base part below base_end, zeros above
 * it, then every extent of the map that intersects, on top.
 *
 * Invariants: extents never overlap (in-order = by offset); every extent lies
 * below size; base_end <= the base's size at creation.
 */
#include "io.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum st_kind { ST_WRITE, ST_ZERO, ST_TRUNC, ST_SYNC };

struct st_op {
	enum st_kind kind;
	uint64_t off, n;          /* TRUNC: off = the new size */
	uint8_t *data;            /* WRITE only */
};

/* One extent of the map: a node of a treap keyed by offset (a binary
 * search tree by off, a heap by prio), so a lookup, an insert and a cut
 * cost O(log n) however the writes are ordered. */
struct st_ext {
	uint64_t off, n;
	const uint8_t *data;      /* NULL: zeros */
	uint32_t prio;
	struct st_ext *l, *r;
};

struct io_stage {
	struct bs_io io;
	struct bs_io *base;
	bool passthrough;         /* committed */
	bool failed;              /* a commit failed half-way: refuse everything */
	uint64_t size, base_end;
	struct st_op *log;
	size_t n_log, cap_log;
	uint64_t n_writes;        /* logged writes, zeros and truncates */
	struct st_ext *map;       /* treap root */
	uint32_t rng;             /* treap priorities (xorshift32) */
};

static struct io_stage *to_st(struct bs_io *io)
{
	return (struct io_stage *)io;
}

/* ---- the extent map --------------------------------------------------- */

static void map_free(struct st_ext *t)
{
	while (t) {
		struct st_ext *r = t->r;
		map_free(t->l);
		free(t);
		t = r;
	}
}

/* Split t into extents starting below key (*lo) and at or above it. */
static void map_split(struct st_ext *t, uint64_t key, struct st_ext **lo, struct st_ext **hi)
{
	if (!t) {
		*lo = *hi = NULL;
	} else if (t->off < key) {
		map_split(t->r, key, &t->r, hi);
		*lo = t;
	} else {
		map_split(t->l, key, lo, &t->l);
		*hi = t;
	}
}

/* Join a and b, every key of a below every key of b. */
static struct st_ext *map_join(struct st_ext *a, struct st_ext *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->r = map_join(a->r, b);
		return a;
	}
	b->l = map_join(a, b->l);
	return b;
}

static struct st_ext *map_last(struct st_ext *t)
{
	while (t && t->r)
		t = t->r;
	return t;
}

static struct st_ext *map_node(struct io_stage *s, uint64_t off, uint64_t n,
			       const uint8_t *data)
{
	struct st_ext *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 17;
	s->rng ^= s->rng << 5;
	*e = (struct st_ext){ off, n, data, s->rng, NULL, NULL };
	return e;
}

/* Map [off, off + n) to data (NULL = zeros), replacing what was there. */
static int map_put(struct io_stage *s, uint64_t off, uint64_t n, const uint8_t *data)
{
	uint64_t end = off + n;
	struct st_ext *lo, *mid, *hi, *tail = NULL, *e;
	if (n == 0)
		return 0;
	if (!(e = map_node(s, off, n, data)))
		return -ENOMEM;
	map_split(s->map, off, &lo, &mid);
	map_split(mid, end, &mid, &hi);
	/* the extent before off may run into (or past) the new one */
	struct st_ext *last = map_last(lo), *edge = last;
	if (!edge || edge->off + edge->n <= end)
		edge = map_last(mid);
	if (edge && edge->off + edge->n > end) {
		uint64_t cut = end - edge->off;
		tail = map_node(s, end, edge->n - cut, edge->data ? edge->data + cut : NULL);
		if (!tail) {
			free(e);
			s->map = map_join(lo, map_join(mid, hi));
			return -ENOMEM;
		}
	}
	if (last && last->off + last->n > off)
		last->n = off - last->off;
	map_free(mid);   /* every extent starting inside [off, end) */
	s->map = map_join(map_join(lo, e), map_join(tail, hi));
	return 0;
}

/* Forget everything at or past size. */
static void map_cut(struct io_stage *s, uint64_t size)
{
	struct st_ext *lo, *hi, *last;
	map_split(s->map, size, &lo, &hi);
	map_free(hi);
	if ((last = map_last(lo)) && last->off + last->n > size)
		last->n = size - last->off;
	s->map = lo;
}

/* Lay every extent intersecting [off, end) over b (which starts at off). */
static void map_read(const struct st_ext *t, uint64_t off, uint64_t end, uint8_t *b)
{
	while (t) {
		uint64_t lo = t->off > off ? t->off : off;
		uint64_t hi = t->off + t->n < end ? t->off + t->n : end;
		if (lo < hi) {
			if (t->data)
				memcpy(b + (lo - off), t->data + (lo - t->off), hi - lo);
			else
				memset(b + (lo - off), 0, hi - lo);
		}
		if (t->off > off)
			map_read(t->l, off, end, b);
		if (t->off >= end)
			return;
		t = t->r;
	}
}

/* ---- the log ---------------------------------------------------------- */

static int log_add(struct io_stage *s, enum st_kind kind, uint64_t off, uint64_t n,
		   uint8_t *data)
{
	if (s->n_log == s->cap_log) {
		size_t cap = s->cap_log ? s->cap_log * 2 : 32;
		struct st_op *l = realloc(s->log, cap * sizeof *l);
		if (!l)
			return -ENOMEM;
		s->log = l;
		s->cap_log = cap;
	}
	s->log[s->n_log++] = (struct st_op){ kind, off, n, data };
	if (kind != ST_SYNC)
		s->n_writes++;
	return 0;
}

static void log_free(struct io_stage *s)
{
	for (size_t i = 0; i < s->n_log; i++)
		free(s->log[i].data);
	free(s->log);
	map_free(s->map);
	s->log = NULL;
	s->map = NULL;
	s->n_log = s->cap_log = 0;
}

/* ---- operations --------------------------------------------------------- */

static int st_pread(struct bs_io *io, void *buf, size_t n, uint64_t off)
{
	struct io_stage *s = to_st(io);
	uint8_t *b = buf;
	if (s->passthrough)
		return bs_io_pread(s->base, buf, n, off);
	if (s->failed)
		return -EIO;
	if (off > s->size || n > s->size - off)
		return -EIO;   /* a short read, as the backends answer */
	uint64_t end = off + n;
	uint64_t from_base = off < s->base_end ? (end < s->base_end ? end : s->base_end) - off : 0;
	if (from_base) {
		int r = bs_io_pread(s->base, b, (size_t)from_base, off);
		if (r)
			return r;
	}
	memset(b + from_base, 0, n - from_base);
	map_read(s->map, off, end, b);
	return 0;
}

static int st_pwrite(struct bs_io *io, const void *buf, size_t n, uint64_t off)
{
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return bs_io_pwrite(s->base, buf, n, off);
	if (s->failed)
		return -EIO;
	if (off > INT64_MAX || n > INT64_MAX - off)
		return -EFBIG;
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, buf, n);
	int r = log_add(s, ST_WRITE, off, n, copy);
	if (r) {
		free(copy);
		return r;
	}
	if ((r = map_put(s, off, n, copy)))
		return r;   /* the log keeps it; the caller sees the failure */
	if (off + n > s->size)
		s->size = off + n;
	return 0;
}

static int st_zero(struct bs_io *io, uint64_t off, uint64_t n)
{
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return bs_io_zero(s->base, off, n);
	if (s->failed)
		return -EIO;
	if (off > s->size || n > s->size - off)
		return -EINVAL;   /* zero is defined inside the file only */
	int r = log_add(s, ST_ZERO, off, n, NULL);
	return r ? r : map_put(s, off, n, NULL);
}

static int st_truncate(struct bs_io *io, uint64_t size)
{
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return bs_io_truncate(s->base, size);
	if (s->failed)
		return -EIO;
	if (size > INT64_MAX)
		return -EFBIG;
	int r = log_add(s, ST_TRUNC, size, 0, NULL);
	if (r)
		return r;
	if (size < s->size) {
		map_cut(s, size);
		if (size < s->base_end)
			s->base_end = size;
	}
	s->size = size;
	return 0;
}

static int st_sync(struct bs_io *io)
{
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return bs_io_sync(s->base);
	if (s->failed)
		return -EIO;
	return log_add(s, ST_SYNC, 0, 0, NULL);
}

/* A reservation changes no byte: it goes to the base at once (staged or
 * not), so a full disk is still noticed when the journal's growth is
 * decided, not when it is applied. */
static int st_reserve(struct bs_io *io, uint64_t size)
{
	struct io_stage *s = to_st(io);
	return bs_io_reserve(s->base, size);
}

/* Zeros written for speed, not content: only a committed (pass-through)
 * stage lets them reach the base; an uncommitted one writes nothing. */
static int st_prefill(struct bs_io *io, uint64_t size)
{
	struct io_stage *s = to_st(io);
	return s->passthrough ? bs_io_prefill(s->base, size) : 0;
}

static int st_size(struct bs_io *io, uint64_t *size)
{
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return bs_io_size(s->base, size);
	*size = s->size;
	return 0;
}

static int st_lock(struct bs_io *io)
{
	return bs_io_lock(to_st(io)->base);
}

static void st_close(struct bs_io *io)
{
	struct io_stage *s = to_st(io);
	log_free(s);
	bs_io_close(s->base);
	free(s);
}

static const struct bs_io_ops stage_ops = {
	.pread = st_pread,
	.pwrite = st_pwrite,
	.zero = st_zero,
	.truncate = st_truncate,
	.reserve = st_reserve,
	.prefill = st_prefill,
	.sync = st_sync,
	.size = st_size,
	.lock = st_lock,
	.close = st_close,
};

static bool is_stage(struct bs_io *io)
{
	return io && io->ops == &stage_ops;
}

int bs_io_stage_new(struct bs_io *base, struct bs_io **out)
{
	struct io_stage *s = calloc(1, sizeof *s);
	int r;
	if (!s) {
		bs_io_close(base);
		return -ENOMEM;
	}
	if ((r = bs_io_size(base, &s->size))) {
		free(s);
		bs_io_close(base);
		return r;
	}
	s->io.ops = &stage_ops;
	s->base = base;
	s->base_end = s->size;
	s->rng = 0x9e3779b9u;
	*out = &s->io;
	return 0;
}

uint64_t bs_io_stage_pending(struct bs_io *io)
{
	return is_stage(io) && !to_st(io)->passthrough ? to_st(io)->n_writes : 0;
}

bool bs_io_stage_committed(struct bs_io *io)
{
	return !is_stage(io) || to_st(io)->passthrough;
}

int bs_io_stage_commit(struct bs_io *io)
{
	if (!is_stage(io))
		return -EINVAL;
	struct io_stage *s = to_st(io);
	if (s->passthrough)
		return 0;
	if (s->failed)
		return -EIO;
	for (size_t i = 0; i < s->n_log; i++) {
		const struct st_op *op = &s->log[i];
		int r = 0;
		switch (op->kind) {
		case ST_WRITE:
			r = bs_io_pwrite(s->base, op->data, (size_t)op->n, op->off);
			break;
		case ST_ZERO:
			r = bs_io_zero(s->base, op->off, op->n);
			break;
		case ST_TRUNC:
			r = bs_io_truncate(s->base, op->off);
			break;
		case ST_SYNC:
			r = bs_io_sync(s->base);
			break;
		}
		if (r) {
			/* The base holds a prefix of the log: what a crash there
			 * leaves, which the next open recovers from. */
			s->failed = true;
			log_free(s);
			return r;
		}
	}
	log_free(s);
	s->passthrough = true;
	return 0;
}
