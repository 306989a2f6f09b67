/*
 * freeq.h — the remote-free queue: frees from any thread, handed to the
 * allocator's owner in batches (the ownership-return model of the
 * forge_alloc SlabOwner seed, over any allocator of alloc.h).
 *
 * A thread that does not own the allocator never frees directly: it pushes
 * the slice (offset, length) onto a bounded queue, and the owner drains the
 * queue on its next tick (bs_freeq_maybe_drain) once the queue holds
 * `threshold` entries, handing the whole batch to ONE bs_dealloc_bulk call.
 *
 *   any thread   bs_freeq_try_push   0, or -EAGAIN (full), -EPIPE (closed)
 *                bs_freeq_push       spins while full; -EPIPE once closed
 *   the owner    bs_freeq_maybe_drain, bs_freeq_drain, bs_freeq_close
 *
 * The owner functions must not run concurrently with each other (one
 * consumer; the caller serialises them — the volume does so with its
 * write lock).  A push from the owner's own thread into a full queue must
 * use try_push and drain itself: the spinning push would wait for itself.
 *
 * Batch policy (the seed's BatchPolicy): Fixed(N) drains at N entries
 * (default 64); Adaptive steps the threshold through 8, 16, 32, 64, 128,
 * starting at 64, one step per adjustment and at most one adjustment per
 * BS_FREEQ_COOLDOWN ticks: down when depth * 4 > capacity * 3, up when
 * depth * 4 < capacity.  Integers only.
 *
 * Every function returns 0 (or a count where stated) or a negative errno.
 */
#ifndef BSTACKFS_FREEQ_H
#define BSTACKFS_FREEQ_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

#define BS_FREEQ_DEFAULT_BATCH 64
#define BS_FREEQ_DEFAULT_CAPACITY 1024
#define BS_FREEQ_MAX_CAPACITY (1u << 20)
#define BS_FREEQ_N_LEVELS 5
#define BS_FREEQ_INITIAL_STEP 3
#define BS_FREEQ_COOLDOWN 16

/* The adaptive thresholds, smallest first: 8, 16, 32, 64, 128. */
extern const uint32_t bs_freeq_levels[BS_FREEQ_N_LEVELS];

enum bs_freeq_kind {
	BS_FREEQ_FIXED = 0,
	BS_FREEQ_ADAPTIVE,
};

struct bs_freeq_policy {
	enum bs_freeq_kind kind;
	uint32_t n;               /* Fixed: the threshold (0 drains at every tick) */
};
#define BS_FREEQ_POLICY_DEFAULT ((struct bs_freeq_policy){ BS_FREEQ_FIXED, \
							 BS_FREEQ_DEFAULT_BATCH })

struct bs_freeq_stats {
	uint32_t capacity;
	uint64_t depth;           /* entries queued (reserved, published or not) */
	uint64_t queued_bytes;    /* sum of their lengths */
	uint32_t threshold;       /* the current drain threshold */
	uint64_t pushes;          /* entries accepted since creation */
	uint64_t drains;          /* non-empty drains (one bulk dealloc each) */
	uint64_t drained;         /* entries those drains handed to the allocator */
	uint64_t queue_full;      /* pushes that found the queue full */
	uint64_t refused_closed;  /* pushes refused because the queue was closed */
	uint64_t drain_errors;    /* bulk deallocs that failed (the space leaks
				   * until a reclaim finds it) */
};

struct bs_freeq;

/* A queue over allocator a holding at most `capacity` entries (0 refuses
 * every push, as the seed's queue_capacity 0; at most
 * BS_FREEQ_MAX_CAPACITY). */
int bs_freeq_new(struct bs_alloc *a, uint32_t capacity, struct bs_freeq_policy policy,
		 struct bs_freeq **out);

/* The seed's try_deallocate: queue s without waiting.  -EAGAIN when the
 * queue holds `capacity` entries, -EPIPE once closed: either way the caller
 * still owns s.  The zero-length slice (0,0) costs nothing: 0, not queued. */
int bs_freeq_try_push(struct bs_freeq *q, struct bs_slice s);
/* The seed's spinning deallocate: waits while the queue is full; returns
 * -EPIPE at once, without spinning, when the queue is (or becomes) closed. */
int bs_freeq_push(struct bs_freeq *q, struct bs_slice s);

/* Owner: one tick of the policy; drains when depth >= threshold.  *drained
 * (may be NULL) gets the number of entries handed to the allocator.  The
 * error is the bulk dealloc's. */
int bs_freeq_maybe_drain(struct bs_freeq *q, size_t *drained);
/* Owner: drain every published entry now (no policy tick). */
int bs_freeq_drain(struct bs_freeq *q, size_t *drained);
/* Owner: the seed's drop.  Closes the queue (race-free against a push in
 * flight: every push either lands before the close and is drained here, or
 * is refused with -EPIPE), then drains every pending entry.  Later pushes
 * are refused without spinning.  Idempotent. */
int bs_freeq_close(struct bs_freeq *q, size_t *drained);
/* Close (errors ignored) and free.  No thread may touch q afterwards. */
void bs_freeq_free(struct bs_freeq *q);

/* Any thread: a snapshot (each figure exact, the set not atomic). */
void bs_freeq_get_stats(const struct bs_freeq *q, struct bs_freeq_stats *out);
uint64_t bs_freeq_depth(const struct bs_freeq *q);
uint32_t bs_freeq_threshold(const struct bs_freeq *q);
/* The seed's adaptive_threshold_snapshot: -EINVAL under a Fixed policy. */
int bs_freeq_adaptive_threshold(const struct bs_freeq *q, uint32_t *out);

/* "64" -> Fixed(64), "adaptive" -> Adaptive; -EINVAL otherwise (N must be
 * 1..capacity). */
int bs_freeq_policy_parse(const char *text, uint32_t capacity,
			  struct bs_freeq_policy *out);

#endif
