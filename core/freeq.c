/*
 * freeq.c — the remote-free queue as a lock-free MPSC ring (C11 atomics).
 * The seed ships a mutex-backed queue and names this ring as its next
 * version; the visible behaviour is the seed's.
 *
 * Layout.  `ring` has `size` slots, size a power of two >= capacity.
 * Tickets number the entries ever reserved: ticket t lives in slot
 * t & (size - 1).  Three words carry the state:
 *
 *   tail   bit 63: CLOSED; bits 0..62: the next ticket to reserve.
 *          Producers reserve with a CAS; close sets CLOSED with one
 *          fetch_or.  Written by every thread.
 *   head   the next ticket the owner consumes.  Written by the owner only.
 *   seq    per slot: t + 1 once ticket t's entry is published in it.
 *
 * Invariants.
 *   I1  head <= (tail & ~CLOSED) and (tail & ~CLOSED) - head <= capacity:
 *       a producer reserves ticket t only after reading some head h with
 *       t - h < capacity, and head never decreases.
 *   I2  tickets in [head, tail) are reserved and not yet consumed; ticket t
 *       is published iff ring[t & mask].seq == t + 1 (an older ticket of the
 *       same slot left seq == t + 1 - size, and seq is never reset).
 *   I3  the slot of ticket t is written only by t's producer, and only after
 *       the owner consumed ticket t - size (I1 with capacity <= size).
 *   I4  once CLOSED is set no ticket is ever reserved again; every ticket
 *       below the tail close() saw is drained by close() itself.
 *
 * Memory ordering (the argument TSan checks in tests/test_freeq.c).
 *   Publish: the producer's plain stores of (off, len) are sequenced before
 *     its release store of seq = t + 1; the owner's acquire load that reads
 *     t + 1 makes them visible before it reads the slot.
 *   Reuse: the owner reads a batch's slots, then store-releases head past
 *     them; a producer acquire-loads head before reserving a ticket that
 *     maps onto one of those slots (I3), so the owner's reads happen before
 *     the producer's overwrite.  No data race on the slot payload.
 *   Close: reservation and close are read-modify-writes of the one word
 *     `tail`, so they are totally ordered — the role the seed's queue mutex
 *     plays.  A CAS that succeeded before the fetch_or reserved a ticket
 *     below the tail the fetch_or returns; close() waits (yielding) until
 *     that ticket is published — the producer is between its CAS and its
 *     release store, a bounded window — and drains it.  A CAS after the
 *     fetch_or fails (the expected value lacks CLOSED), and the retry sees
 *     CLOSED and refuses: no push lands in a queue nobody will drain.
 *   Depth: the owner's fast path reads tail relaxed; staleness only delays
 *     a drain to the next tick (the seed's bounded-staleness argument), and
 *     I1 bounds the queue whatever the owner does.
 *   Counters are statistics: relaxed.  The adaptive step is written by the
 *   owner only and read relaxed by snapshots.
 */
#include "freeq.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CLOSED (UINT64_C(1) << 63)

const uint32_t bs_freeq_levels[BS_FREEQ_N_LEVELS] = { 8, 16, 32, 64, 128 };

struct slot {
	_Atomic uint64_t seq;
	uint64_t off, len;
};

/* Producers hammer tail; keep it off the owner's line (the seed's
 * CachePadded queue). */
#define LINE 64

struct bs_freeq {
	/* read-only after creation */
	struct bs_alloc *a;
	struct slot *ring;
	struct bs_slice *batch;     /* owner: one drain's entries */
	uint64_t mask;
	uint32_t capacity;
	struct bs_freeq_policy policy;

	/* owner side */
	_Alignas(LINE) _Atomic uint64_t head;
	_Atomic uint32_t step;      /* adaptive step index, 0..4 */
	uint32_t cooldown;          /* owner only */
	_Atomic uint64_t drains, drained, drain_errors;

	/* producer side */
	_Alignas(LINE) _Atomic uint64_t tail;
	_Atomic uint64_t queued_bytes;
	_Atomic uint64_t pushes, queue_full, refused_closed;
};

#define RLX memory_order_relaxed
#define ACQ memory_order_acquire
#define REL memory_order_release

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, RLX);
}

int bs_freeq_new(struct bs_alloc *a, uint32_t capacity, struct bs_freeq_policy policy,
		 struct bs_freeq **out)
{
	uint64_t size = 1;
	if (!a || capacity > BS_FREEQ_MAX_CAPACITY ||
	    (policy.kind != BS_FREEQ_FIXED && policy.kind != BS_FREEQ_ADAPTIVE))
		return -EINVAL;
	while (size < capacity)
		size <<= 1;
	struct bs_freeq *q = aligned_alloc(LINE, (sizeof *q + LINE - 1) / LINE * LINE);
	if (!q)
		return -ENOMEM;
	memset(q, 0, sizeof *q);
	q->ring = calloc(size, sizeof *q->ring);
	q->batch = calloc(capacity ? capacity : 1, sizeof *q->batch);
	if (!q->ring || !q->batch) {
		free(q->ring);
		free(q->batch);
		free(q);
		return -ENOMEM;
	}
	/* seq of slot i starts at i + 1 - size: "ticket i - size published",
	 * i.e. not ticket i (I2) */
	for (uint64_t i = 0; i < size; i++)
		atomic_init(&q->ring[i].seq, i + 1 - size);
	q->a = a;
	q->mask = size - 1;
	q->capacity = capacity;
	q->policy = policy;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	atomic_init(&q->step, BS_FREEQ_INITIAL_STEP);
	*out = q;
	return 0;
}

/* One reservation attempt loop.  `counted` tells whether this push already
 * counted itself in queue_full (the spinning push counts once). */
static int push(struct bs_freeq *q, struct bs_slice s, bool *counted)
{
	uint64_t t = atomic_load_explicit(&q->tail, RLX);
	for (;;) {
		if (t & CLOSED) {
			count(&q->refused_closed, 1);
			return -EPIPE;
		}
		/* acquire: the owner's reads of the slot's previous ticket
		 * happen before our writes (I3, "Reuse") */
		uint64_t h = atomic_load_explicit(&q->head, ACQ);
		if (t - h >= q->capacity) {
			if (!*counted) {
				count(&q->queue_full, 1);
				*counted = true;
			}
			return -EAGAIN;
		}
		/* on failure t is reloaded (and may now carry CLOSED) */
		if (atomic_compare_exchange_weak_explicit(&q->tail, &t, t + 1, RLX, RLX))
			break;
	}
	struct slot *sl = &q->ring[t & q->mask];
	sl->off = s.off;
	sl->len = s.len;
	count(&q->queued_bytes, s.len);
	count(&q->pushes, 1);
	atomic_store_explicit(&sl->seq, t + 1, REL);   /* publish (I2) */
	return 0;
}

int bs_freeq_try_push(struct bs_freeq *q, struct bs_slice s)
{
	bool counted = false;
	if (s.len == 0)
		return s.off == 0 ? 0 : -EINVAL;
	return push(q, s, &counted);
}

int bs_freeq_push(struct bs_freeq *q, struct bs_slice s)
{
	bool counted = false;
	if (s.len == 0)
		return s.off == 0 ? 0 : -EINVAL;
	for (;;) {
		int r = push(q, s, &counted);
		if (r != -EAGAIN)
			return r;   /* 0, or -EPIPE: closed, never spin */
		sched_yield();
	}
}

/* Owner: take the published entries from head on (at most capacity, or
 * exactly up to `until` when wait is set, waiting for in-flight producers),
 * release their slots, then hand them to one bulk dealloc. */
static int consume(struct bs_freeq *q, uint64_t until, bool wait, size_t *drained)
{
	uint64_t h = atomic_load_explicit(&q->head, RLX);   /* ours */
	uint64_t bytes = 0;
	size_t n = 0;
	while (h + n < until) {
		struct slot *sl = &q->ring[(h + n) & q->mask];
		if (atomic_load_explicit(&sl->seq, ACQ) != h + n + 1) {
			if (!wait)
				break;
			sched_yield();   /* reserved, not yet published: bounded */
			continue;
		}
		q->batch[n].off = sl->off;
		q->batch[n].len = sl->len;
		bytes += sl->len;
		n++;
	}
	if (drained)
		*drained = n;
	if (n == 0)
		return 0;
	/* release: our reads of the slots happen before their reuse */
	atomic_store_explicit(&q->head, h + n, REL);
	atomic_fetch_sub_explicit(&q->queued_bytes, bytes, RLX);
	count(&q->drains, 1);
	count(&q->drained, n);
	int r = bs_dealloc_bulk(q->a, q->batch, n);
	if (r)
		count(&q->drain_errors, 1);
	return r;
}

/* Every reserved ticket, published or not, is below this (I1: at most
 * capacity past head). */
static uint64_t tail_ticket(const struct bs_freeq *q)
{
	return atomic_load_explicit(&q->tail, RLX) & ~CLOSED;
}

int bs_freeq_drain(struct bs_freeq *q, size_t *drained)
{
	return consume(q, tail_ticket(q), false, drained);
}

/* The seed's adaptive_threshold: one tick of the control law. */
static uint32_t adaptive_tick(struct bs_freeq *q, uint64_t pending)
{
	uint32_t step = atomic_load_explicit(&q->step, RLX);
	uint64_t cap = q->capacity;
	if (q->cooldown > 0) {
		q->cooldown--;
	} else if (pending * 4 > cap * 3 && step > 0) {
		/* > 75 %: drain sooner, relieve the producers */
		step--;
		q->cooldown = BS_FREEQ_COOLDOWN;
	} else if (pending * 4 < cap && step < BS_FREEQ_N_LEVELS - 1) {
		/* < 25 %: drain later, amortise the drain */
		step++;
		q->cooldown = BS_FREEQ_COOLDOWN;
	}
	atomic_store_explicit(&q->step, step, RLX);
	return bs_freeq_levels[step];
}

int bs_freeq_maybe_drain(struct bs_freeq *q, size_t *drained)
{
	uint64_t tail = tail_ticket(q);
	uint64_t pending = tail - atomic_load_explicit(&q->head, RLX);
	uint64_t threshold = q->policy.kind == BS_FREEQ_ADAPTIVE ?
		adaptive_tick(q, pending) : q->policy.n;
	if (drained)
		*drained = 0;
	if (pending < threshold)
		return 0;
	return consume(q, tail, false, drained);
}

int bs_freeq_close(struct bs_freeq *q, size_t *drained)
{
	/* the linearisation point (I4): every reservation is before or after */
	uint64_t until = atomic_fetch_or_explicit(&q->tail, CLOSED, memory_order_acq_rel) &
			 ~CLOSED;
	return consume(q, until, true, drained);
}

void bs_freeq_free(struct bs_freeq *q)
{
	if (!q)
		return;
	bs_freeq_close(q, NULL);
	free(q->ring);
	free(q->batch);
	free(q);
}

uint64_t bs_freeq_depth(const struct bs_freeq *q)
{
	/* head first: the tail read after it is at least that head (I1) */
	uint64_t h = atomic_load_explicit(&q->head, ACQ);
	return tail_ticket(q) - h;
}

uint32_t bs_freeq_threshold(const struct bs_freeq *q)
{
	if (q->policy.kind == BS_FREEQ_FIXED)
		return q->policy.n;
	return bs_freeq_levels[atomic_load_explicit(&q->step, RLX)];
}

int bs_freeq_adaptive_threshold(const struct bs_freeq *q, uint32_t *out)
{
	if (q->policy.kind != BS_FREEQ_ADAPTIVE)
		return -EINVAL;
	*out = bs_freeq_threshold(q);
	return 0;
}

void bs_freeq_get_stats(const struct bs_freeq *q, struct bs_freeq_stats *out)
{
	memset(out, 0, sizeof *out);
	out->capacity = q->capacity;
	out->depth = bs_freeq_depth(q);
	out->queued_bytes = atomic_load_explicit(&q->queued_bytes, RLX);
	out->threshold = bs_freeq_threshold(q);
	out->pushes = atomic_load_explicit(&q->pushes, RLX);
	out->drains = atomic_load_explicit(&q->drains, RLX);
	out->drained = atomic_load_explicit(&q->drained, RLX);
	out->queue_full = atomic_load_explicit(&q->queue_full, RLX);
	out->refused_closed = atomic_load_explicit(&q->refused_closed, RLX);
	out->drain_errors = atomic_load_explicit(&q->drain_errors, RLX);
}

int bs_freeq_policy_parse(const char *text, uint32_t capacity,
			  struct bs_freeq_policy *out)
{
	char *end;
	if (!text || !*text)
		return -EINVAL;
	if (strcmp(text, "adaptive") == 0) {
		*out = (struct bs_freeq_policy){ BS_FREEQ_ADAPTIVE, 0 };
		return 0;
	}
	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno || *end || n == 0 || n > capacity)
		return -EINVAL;
	*out = (struct bs_freeq_policy){ BS_FREEQ_FIXED, (uint32_t)n };
	return 0;
}
