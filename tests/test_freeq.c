/*
 * test_freeq.c — the remote-free queue (core/freeq.c): the seed's own tests
 * (forge_alloc SlabOwner: threshold behaviour, adaptive stepping and
 * cooldown, close semantics, full queue, drop with entries pending),
 * multi-threaded stress (many producers, one owner, every freed range
 * accounted for exactly once against the allocator, close racing pushes;
 * also run under ThreadSanitizer by scripts/test), and power loss at every
 * cut point of a drain on the memory device, for every allocator.
 */
#include "harness.h"
#include "alloc.h"
#include "bstack.h"
#include "freeq.h"
#include "io.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture: an allocator on a memory device ---------------------------- */

struct fx {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
	enum bs_alloc_kind kind;
};

static struct fx fx_new(enum bs_alloc_kind kind)
{
	struct fx f = { .dev = bs_memdev_new(), .kind = kind };
	struct bs_alloc_opts o = { .block_size = 64 };
	f.bs = h_stack_create(f.dev);
	CU_ASSERT_FATAL(bs_alloc_create(f.bs, kind, &o, &f.a) == 0);
	return f;
}

static void fx_close(struct fx *f)
{
	bs_alloc_close(f->a);
	bstack_close(f->bs);
	f->a = NULL;
	f->bs = NULL;
}

/* Open the stack and the allocator the device holds (after fx_close). */
static void fx_open(struct fx *f)
{
	enum bs_alloc_kind k;
	f->bs = h_stack_open(f->dev);
	CU_ASSERT_FATAL(bs_alloc_detect(f->bs, &k) == 0);
	CU_ASSERT_FATAL(bs_alloc_open(f->bs, k == BS_ALLOC_NONE ? BS_ALLOC_LINEAR : k,
				      &f->a) == 0);
}

static void fx_free(struct fx *f)
{
	fx_close(f);
	bs_memdev_free(f->dev);
}

static struct bs_slice must_alloc(struct fx *f, uint64_t len)
{
	struct bs_slice s;
	CU_ASSERT_FATAL(bs_alloc(f->a, len, &s) == 0);
	return s;
}

static struct bs_freeq *q_new(struct fx *f, uint32_t cap, struct bs_freeq_policy p)
{
	struct bs_freeq *q = NULL;
	CU_ASSERT_FATAL(bs_freeq_new(f->a, cap, p, &q) == 0);
	return q;
}

#define FIXED(n) ((struct bs_freeq_policy){ BS_FREEQ_FIXED, (n) })
#define ADAPTIVE ((struct bs_freeq_policy){ BS_FREEQ_ADAPTIVE, 0 })

static uint64_t deallocs(struct fx *f)
{
	struct bs_alloc_stats st;
	bs_alloc_stats(f->a, &st);
	return st.deallocs;
}

static int n_reports;
static void count_report(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	n_reports++;
}

static int check(struct fx *f)
{
	n_reports = 0;
	return bs_alloc_check(f->a, count_report, NULL);
}

/* ---- the seed's tests ------------------------------------------------------ */

static void a_remote_free_is_reused_after_drain(void)
{
	struct fx f = fx_new(BS_ALLOC_SLAB);
	struct bs_freeq *q = q_new(&f, BS_FREEQ_DEFAULT_CAPACITY, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice p = must_alloc(&f, 8);
	CU_ASSERT(bs_freeq_push(q, p) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 1);
	size_t n = 0;
	CU_ASSERT(bs_freeq_drain(q, &n) == 0);
	CU_ASSERT(n == 1);
	struct bs_slice p2 = must_alloc(&f, 8);
	CU_ASSERT(p2.off == p.off);
	bs_freeq_free(q);
	fx_free(&f);
}

static void capacity_zero_rejects_every_push(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 0, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice p = must_alloc(&f, 8);
	struct bs_freeq_stats st;
	CU_ASSERT(bs_freeq_try_push(q, p) == -EAGAIN);
	bs_freeq_get_stats(q, &st);
	CU_ASSERT(st.queue_full == 1);
	CU_ASSERT(st.pushes == 0);
	CU_ASSERT(st.depth == 0);
	CU_ASSERT(bs_dealloc(f.a, p) == 0);   /* the caller still owns it */
	bs_freeq_free(q);
	fx_free(&f);
}

static void capacity_one_accepts_one_push_only(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 1, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice a = must_alloc(&f, 8), b = must_alloc(&f, 8);
	CU_ASSERT(bs_freeq_try_push(q, a) == 0);
	CU_ASSERT(bs_freeq_try_push(q, b) == -EAGAIN);
	CU_ASSERT(bs_dealloc(f.a, b) == 0);
	bs_freeq_free(q);
	fx_free(&f);
}

static void try_push_fails_on_a_full_queue_and_counts_it(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 2, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice a = must_alloc(&f, 8), b = must_alloc(&f, 8), c = must_alloc(&f, 8);
	struct bs_freeq_stats st;
	CU_ASSERT(bs_freeq_try_push(q, a) == 0);
	CU_ASSERT(bs_freeq_try_push(q, b) == 0);
	CU_ASSERT(bs_freeq_try_push(q, c) == -EAGAIN);
	CU_ASSERT(bs_freeq_try_push(q, c) == -EAGAIN);
	bs_freeq_get_stats(q, &st);
	CU_ASSERT(st.queue_full == 2);
	CU_ASSERT(st.depth == 2);
	CU_ASSERT(st.pushes == 2);
	CU_ASSERT(st.queued_bytes == 16);
	/* after a drain there is room again, and the ring wraps */
	CU_ASSERT(bs_freeq_drain(q, NULL) == 0);
	CU_ASSERT(bs_freeq_try_push(q, c) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 1);
	bs_freeq_free(q);
	fx_free(&f);
}

static void the_depth_tracks_pushes_and_drains(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 8, FIXED(64));
	CU_ASSERT(bs_freeq_depth(q) == 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 3);
	CU_ASSERT(bs_freeq_drain(q, NULL) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 0);
	CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 1);   /* from 0, not a stale 4 */
	bs_freeq_free(q);
	fx_free(&f);
}

static void maybe_drain_waits_for_the_threshold_then_drains_all(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, FIXED(2));
	struct bs_freeq_stats st;
	size_t n = 99;
	uint64_t d0 = deallocs(&f);
	CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	CU_ASSERT(bs_freeq_maybe_drain(q, &n) == 0);
	CU_ASSERT(n == 0);
	CU_ASSERT(bs_freeq_depth(q) == 1);
	CU_ASSERT(deallocs(&f) == d0);
	CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	CU_ASSERT(bs_freeq_maybe_drain(q, &n) == 0);
	CU_ASSERT(n == 2);
	CU_ASSERT(bs_freeq_depth(q) == 0);
	CU_ASSERT(deallocs(&f) == d0 + 2);
	bs_freeq_get_stats(q, &st);
	CU_ASSERT(st.drains == 1);
	CU_ASSERT(st.drained == 2);
	CU_ASSERT(st.queued_bytes == 0);
	/* an empty drain is not a drain */
	CU_ASSERT(bs_freeq_drain(q, &n) == 0);
	CU_ASSERT(n == 0);
	bs_freeq_get_stats(q, &st);
	CU_ASSERT(st.drains == 1);
	bs_freeq_free(q);
	fx_free(&f);
}

/* A drain is one bulk dealloc: GhostTree's native bulk path frees a batch
 * of tail neighbours with one tail discard. */
static const struct bs_alloc_ops *orig_ops;
static struct bs_alloc_ops counting_ops;
static atomic_int bulk_calls;
static atomic_int single_calls;

static int counting_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	atomic_fetch_add(&bulk_calls, 1);
	return orig_ops->dealloc_bulk(a, s, n);
}

static int counting_single(struct bs_alloc *a, struct bs_slice s)
{
	atomic_fetch_add(&single_calls, 1);
	return orig_ops->dealloc(a, s);
}

static void shim_install(struct fx *f, int (*bulk)(struct bs_alloc *, const struct bs_slice *,
						   size_t))
{
	orig_ops = f->a->ops;
	counting_ops = *orig_ops;
	counting_ops.dealloc_bulk = bulk;
	counting_ops.dealloc = counting_single;
	f->a->ops = &counting_ops;
	atomic_store(&bulk_calls, 0);
	atomic_store(&single_calls, 0);
}

static void shim_remove(struct fx *f)
{
	f->a->ops = orig_ops;
}

static void a_drain_is_one_bulk_dealloc(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 64, FIXED(10));
	struct bs_slice s[10];
	for (int i = 0; i < 10; i++)
		s[i] = must_alloc(&f, 100);
	uint64_t before = bstack_len(f.bs);
	shim_install(&f, counting_bulk);
	for (int i = 0; i < 10; i++) {
		CU_ASSERT(bs_freeq_try_push(q, s[i]) == 0);
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
	}
	CU_ASSERT(atomic_load(&bulk_calls) == 1);
	CU_ASSERT(atomic_load(&single_calls) == 0);
	shim_remove(&f);
	CU_ASSERT(bstack_len(f.bs) < before);   /* the tail went back */
	CU_ASSERT(check(&f) == 0);
	bs_freeq_free(q);
	fx_free(&f);
}

/* ---- the adaptive control law (the seed's tests) ------------------------ */

static void fixed_policy_has_no_adaptive_snapshot(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 8, BS_FREEQ_POLICY_DEFAULT);
	uint32_t t;
	CU_ASSERT(bs_freeq_adaptive_threshold(q, &t) == -EINVAL);
	CU_ASSERT(bs_freeq_threshold(q) == 64);
	bs_freeq_free(q);
	fx_free(&f);
}

static void adaptive_levels_match_the_spec_and_start_at_64(void)
{
	static const uint32_t want[] = { 8, 16, 32, 64, 128 };
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 64, ADAPTIVE);
	uint32_t t = 0;
	CU_ASSERT(memcmp(bs_freeq_levels, want, sizeof want) == 0);
	CU_ASSERT(bs_freeq_adaptive_threshold(q, &t) == 0);
	CU_ASSERT(t == 64);
	bs_freeq_free(q);
	fx_free(&f);
}

static uint32_t snap(struct bs_freeq *q)
{
	uint32_t t = 0;
	CU_ASSERT(bs_freeq_adaptive_threshold(q, &t) == 0);
	return t;
}

static void adaptive_steps_up_when_the_queue_is_below_25_percent(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);   /* q = 0: 0 < 16 */
	CU_ASSERT(snap(q) == 128);
	bs_freeq_free(q);
	fx_free(&f);
}

/* cap 16: > 75 % is q > 12.  Tick 1 (empty) steps up to 128 and starts a
 * cooldown of 16; ticks 2..13 leave 4 of it; 13 frees are queued; ticks
 * 14..17 spend the cooldown (q = 13 < 128: no drain); tick 18 sees
 * 13 * 4 = 52 > 48 and steps down to 64. */
static void adaptive_steps_down_when_the_queue_exceeds_75_percent(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	struct bs_slice s[13];
	for (int i = 0; i < 13; i++) {
		s[i] = must_alloc(&f, 8);
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
	}
	CU_ASSERT(snap(q) == 128);
	for (int i = 0; i < 13; i++)
		CU_ASSERT(bs_freeq_try_push(q, s[i]) == 0);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		CU_ASSERT(snap(q) == 128);
		CU_ASSERT(bs_freeq_depth(q) == 13);
	}
	CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
	CU_ASSERT(snap(q) == 64);
	CU_ASSERT(bs_freeq_depth(q) == 13);   /* 13 < 64: still queued */
	bs_freeq_free(q);
	fx_free(&f);
}

static void adaptive_cooldown_prevents_oscillation(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
	CU_ASSERT(snap(q) == 128);
	/* fill above 75 %: a step down is due, but the cooldown holds it for
	 * the next 16 ticks, and the 17th moves */
	for (int i = 0; i < 14; i++)
		CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	for (int i = 0; i < BS_FREEQ_COOLDOWN; i++) {
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		CU_ASSERT(snap(q) == 128);
	}
	CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
	CU_ASSERT(snap(q) == 64);
	bs_freeq_free(q);
	fx_free(&f);
}

static void adaptive_ceiling_is_respected(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	for (int i = 0; i < 4 * (BS_FREEQ_COOLDOWN + 1); i++) {
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		CU_ASSERT(snap(q) == 128);
	}
	bs_freeq_free(q);
	fx_free(&f);
}

/* Keep the queue at 14 of 16 (> 75 %) before every tick: the policy steps
 * 64 -> 32 -> 16 -> 8, one step per 17 ticks, and stays at the floor. */
static void adaptive_floor_is_respected_and_the_step_never_underflows(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	uint32_t seen[200];
	for (int cycle = 0; cycle < 200; cycle++) {
		while (bs_freeq_depth(q) < 14)
			CU_ASSERT_FATAL(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		seen[cycle] = snap(q);
	}
	CU_ASSERT(seen[0] == 32);
	CU_ASSERT(seen[16] == 32);
	CU_ASSERT(seen[17] == 16);
	CU_ASSERT(seen[34] == 8);
	for (int i = 34; i < 200; i++)
		CU_ASSERT(seen[i] == 8);
	CU_ASSERT(check(&f) == 0);
	bs_freeq_free(q);
	fx_free(&f);
}

/* Between the bands (25 % <= q*4/cap <= 75 %) nothing moves. */
static void adaptive_holds_inside_the_band(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 16, ADAPTIVE);
	for (int i = 0; i < 4; i++)   /* q = 4: 16 < 16 is false */
		CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	for (int i = 0; i < 50; i++) {
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		CU_ASSERT(snap(q) == 64);
	}
	for (int i = 0; i < 8; i++)   /* q = 12: 48 > 48 is false */
		CU_ASSERT(bs_freeq_try_push(q, must_alloc(&f, 8)) == 0);
	for (int i = 0; i < 50; i++) {
		CU_ASSERT(bs_freeq_maybe_drain(q, NULL) == 0);
		CU_ASSERT(snap(q) == 64);
	}
	bs_freeq_free(q);
	fx_free(&f);
}

/* ---- close (the seed's drop) --------------------------------------------- */

static void close_drains_pending_frees_and_refuses_later_pushes(void)
{
	struct fx f = fx_new(BS_ALLOC_SLAB);
	struct bs_freeq *q = q_new(&f, 8, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice a = must_alloc(&f, 8), b = must_alloc(&f, 8);
	struct bs_freeq_stats st;
	uint64_t d0 = deallocs(&f);
	size_t n = 0;
	CU_ASSERT(bs_freeq_try_push(q, a) == 0);
	CU_ASSERT(bs_freeq_try_push(q, b) == 0);
	CU_ASSERT(bs_freeq_close(q, &n) == 0);
	CU_ASSERT(n == 2);
	CU_ASSERT(deallocs(&f) == d0 + 2);
	CU_ASSERT(bs_freeq_depth(q) == 0);
	struct bs_slice c = must_alloc(&f, 8);
	CU_ASSERT(c.off == a.off || c.off == b.off);   /* drained into the free list */
	CU_ASSERT(bs_freeq_try_push(q, c) == -EPIPE);
	CU_ASSERT(bs_freeq_push(q, c) == -EPIPE);      /* does not spin */
	CU_ASSERT(bs_freeq_close(q, &n) == 0);          /* idempotent */
	CU_ASSERT(n == 0);
	bs_freeq_get_stats(q, &st);
	CU_ASSERT(st.refused_closed == 2);
	CU_ASSERT(st.pushes == 2);
	bs_freeq_free(q);
	fx_free(&f);
}

/* A full queue would make the spinning push wait for the owner; once the
 * queue is closed it returns at once. */
static void the_spinning_push_does_not_spin_on_a_closed_full_queue(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 0, BS_FREEQ_POLICY_DEFAULT);
	struct bs_slice a = must_alloc(&f, 8);
	CU_ASSERT(bs_freeq_close(q, NULL) == 0);
	CU_ASSERT(bs_freeq_push(q, a) == -EPIPE);
	bs_freeq_free(q);
	fx_free(&f);
}

static void free_with_entries_pending_drains_them(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, 8, BS_FREEQ_POLICY_DEFAULT);
	struct bs_alloc_stats st0, st1;
	struct bs_slice keep = must_alloc(&f, 8);
	struct bs_slice s[3];
	for (int i = 0; i < 3; i++)
		s[i] = must_alloc(&f, 1000);
	struct bs_slice top = must_alloc(&f, 8);   /* no tail discard */
	bs_alloc_stats(f.a, &st0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT(bs_freeq_try_push(q, s[i]) == 0);
	bs_freeq_free(q);
	bs_alloc_stats(f.a, &st1);
	CU_ASSERT(st1.deallocs == st0.deallocs + 3);
	CU_ASSERT(st1.free_bytes >= st0.free_bytes + 3000);
	CU_ASSERT(check(&f) == 0);
	(void)keep;
	(void)top;
	fx_free(&f);
}

static void bad_arguments_are_refused(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = NULL;
	struct bs_freeq_policy p;
	CU_ASSERT(bs_freeq_new(NULL, 8, BS_FREEQ_POLICY_DEFAULT, &q) == -EINVAL);
	CU_ASSERT(bs_freeq_new(f.a, BS_FREEQ_MAX_CAPACITY + 1, BS_FREEQ_POLICY_DEFAULT,
			       &q) == -EINVAL);
	CU_ASSERT(bs_freeq_new(f.a, 8, (struct bs_freeq_policy){ 7, 0 }, &q) == -EINVAL);
	CU_ASSERT(q == NULL);
	q = q_new(&f, 8, BS_FREEQ_POLICY_DEFAULT);
	CU_ASSERT(bs_freeq_try_push(q, (struct bs_slice){ 0, 0 }) == 0);
	CU_ASSERT(bs_freeq_depth(q) == 0);
	CU_ASSERT(bs_freeq_try_push(q, (struct bs_slice){ 64, 0 }) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("adaptive", 1024, &p) == 0 &&
		  p.kind == BS_FREEQ_ADAPTIVE);
	CU_ASSERT(bs_freeq_policy_parse("128", 1024, &p) == 0 &&
		  p.kind == BS_FREEQ_FIXED && p.n == 128);
	CU_ASSERT(bs_freeq_policy_parse("0", 1024, &p) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("1025", 1024, &p) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("-3", 1024, &p) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("12x", 1024, &p) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("", 1024, &p) == -EINVAL);
	CU_ASSERT(bs_freeq_policy_parse("99999999999999999999", 1024, &p) == -EINVAL);
	bs_freeq_free(q);
	fx_free(&f);
}

/* ---- threads ------------------------------------------------------------- */

/* The seed's multi_threaded_remote_dealloc: 128 slab slots freed from four
 * threads come back, after one drain, as exactly the next 128 allocations. */
struct chunk {
	struct bs_freeq *q;
	struct bs_slice *s;
	int n;
	atomic_int *errors;
};

static void *push_chunk(void *arg)
{
	struct chunk *c = arg;
	for (int i = 0; i < c->n; i++)
		if (bs_freeq_push(c->q, c->s[i]) != 0)
			atomic_fetch_add(c->errors, 1);
	return NULL;
}

static int cmp_off(const void *a, const void *b)
{
	const struct bs_slice *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void slots_freed_from_many_threads_are_reallocated_after_a_drain(void)
{
	struct fx f = fx_new(BS_ALLOC_SLAB);
	struct bs_freeq *q = q_new(&f, 1024, FIXED(64));
	struct bs_slice s[128], again[128];
	pthread_t th[4];
	struct chunk c[4];
	atomic_int errors = 0;
	for (int i = 0; i < 128; i++)
		s[i] = must_alloc(&f, 8);
	must_alloc(&f, 8);   /* the 129th: keeps the tail */
	for (int i = 0; i < 4; i++) {
		c[i] = (struct chunk){ q, s + 32 * i, 32, &errors };
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, push_chunk, &c[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT(atomic_load(&errors) == 0);
	size_t n = 0;
	CU_ASSERT(bs_freeq_drain(q, &n) == 0);
	CU_ASSERT(n == 128);
	for (int i = 0; i < 128; i++)
		again[i] = must_alloc(&f, 8);
	qsort(s, 128, sizeof s[0], cmp_off);
	qsort(again, 128, sizeof again[0], cmp_off);
	for (int i = 0; i < 128; i++)
		CU_ASSERT(again[i].off == s[i].off);
	bs_freeq_free(q);
	fx_free(&f);
}

/*
 * Stress: the owner allocates live slices and hands them to producers
 * through a work list; producers push them (spinning); the owner ticks
 * maybe_drain between allocations.  A counting shim on the allocator's
 * dealloc_bulk checks each freed slice against the owner's table of live
 * slices: every slice is freed exactly once (a second free finds it not
 * live), and at the end nothing is live and the allocator's counters and
 * check() agree.
 */
#define ST_PRODUCERS 4
#define ST_ROUNDS 3000
#define ST_MAX_LIVE 512
#define ST_LEN 24
#define ST_KEYS (1u << 20)

static uint8_t *st_live;          /* by off / 8: 1 = issued, not yet freed */
static atomic_ulong st_bad_frees; /* frees of a slice not live */
static atomic_ulong st_freed;

static int stress_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	/* only the owner thread drains: no lock needed on st_live */
	for (size_t i = 0; i < n; i++) {
		uint64_t k = s[i].off / 8;
		if (k >= ST_KEYS || !st_live[k] || s[i].len != ST_LEN)
			atomic_fetch_add(&st_bad_frees, 1);
		else
			st_live[k] = 0;
	}
	atomic_fetch_add(&st_freed, n);
	return orig_ops->dealloc_bulk(a, s, n);
}

struct work {
	pthread_mutex_t lock;
	struct bs_slice items[ST_MAX_LIVE * 2];
	size_t n;
	atomic_bool stop;
	atomic_int alive;
	struct bs_freeq *q;
	atomic_ulong pushed, refused;
};

static void *producer(void *arg)
{
	struct work *w = arg;
	for (;;) {
		struct bs_slice s = { 0, 0 };
		bool have = false;
		pthread_mutex_lock(&w->lock);
		if (w->n) {
			s = w->items[--w->n];
			have = true;
		}
		pthread_mutex_unlock(&w->lock);
		if (!have) {
			if (atomic_load(&w->stop)) {
				atomic_fetch_sub(&w->alive, 1);
				return NULL;
			}
			sched_yield();
			continue;
		}
		/* half try_push with our own retry, half the spinning push */
		int r;
		if (s.off & 8) {
			while ((r = bs_freeq_try_push(w->q, s)) == -EAGAIN)
				sched_yield();
		} else {
			r = bs_freeq_push(w->q, s);
		}
		if (r == 0)
			atomic_fetch_add(&w->pushed, 1);
		else
			atomic_fetch_add(&w->refused, 1);
	}
}

static void stress(struct bs_freeq_policy policy, uint32_t cap, bool *saw_step)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	struct bs_freeq *q = q_new(&f, cap, policy);
	static struct work w;
	pthread_t th[ST_PRODUCERS];
	uint64_t issued = 0, outstanding = 0;
	st_live = calloc(ST_KEYS, 1);
	CU_ASSERT_FATAL(st_live != NULL);
	atomic_store(&st_bad_frees, 0);
	atomic_store(&st_freed, 0);
	memset(&w, 0, sizeof w);
	pthread_mutex_init(&w.lock, NULL);
	w.q = q;
	shim_install(&f, stress_bulk);
	atomic_store(&w.alive, ST_PRODUCERS);
	for (int i = 0; i < ST_PRODUCERS; i++)
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, producer, &w) == 0);
	*saw_step = false;
	for (int round = 0; round < ST_ROUNDS; round++) {
		size_t n = 0;
		CU_ASSERT(bs_freeq_drain(q, &n) == 0);
		outstanding -= n;
		for (int i = 0; i < 16 && outstanding < ST_MAX_LIVE; i++) {
			struct bs_slice s;
			CU_ASSERT(bs_freeq_maybe_drain(q, &n) == 0);
			outstanding -= n;
			if (bs_alloc(f.a, ST_LEN, &s) != 0) {
				CU_FAIL("alloc failed");
				break;
			}
			CU_ASSERT_FATAL(s.off / 8 < ST_KEYS);
			CU_ASSERT(st_live[s.off / 8] == 0);   /* never handed out twice */
			st_live[s.off / 8] = 1;
			issued++;
			outstanding++;
			pthread_mutex_lock(&w.lock);
			w.items[w.n++] = s;
			pthread_mutex_unlock(&w.lock);
		}
		if (policy.kind == BS_FREEQ_ADAPTIVE && bs_freeq_threshold(q) != 64)
			*saw_step = true;
	}
	/* the producers may wait on a full queue: keep draining until they
	 * have pushed everything */
	atomic_store(&w.stop, true);
	size_t n = 0;
	while (atomic_load(&w.alive) > 0) {
		CU_ASSERT(bs_freeq_drain(q, &n) == 0);
		outstanding -= n;
		sched_yield();
	}
	for (int i = 0; i < ST_PRODUCERS; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT(bs_freeq_close(q, &n) == 0);
	outstanding -= n;
	shim_remove(&f);
	struct bs_freeq_stats qs;
	bs_freeq_get_stats(q, &qs);
	CU_ASSERT(atomic_load(&st_bad_frees) == 0);
	CU_ASSERT(atomic_load(&w.refused) == 0);
	CU_ASSERT(atomic_load(&w.pushed) == issued);
	CU_ASSERT(atomic_load(&st_freed) == issued);
	CU_ASSERT(qs.pushes == issued);
	CU_ASSERT(qs.drained == issued);
	CU_ASSERT(qs.queued_bytes == 0);
	CU_ASSERT(outstanding == 0);
	size_t still = 0;
	for (size_t k = 0; k < ST_KEYS; k++)
		still += st_live[k];
	CU_ASSERT(still == 0);
	CU_ASSERT(deallocs(&f) == issued);
	CU_ASSERT(check(&f) == 0);
	/* nothing live: the allocator holds no bytes */
	struct bs_alloc_stats as;
	bs_alloc_stats(f.a, &as);
	CU_ASSERT(as.live_bytes == 0);
	free(st_live);
	pthread_mutex_destroy(&w.lock);
	bs_freeq_free(q);
	fx_free(&f);
}

static void many_producers_one_owner_free_every_range_exactly_once(void)
{
	bool saw;
	stress(FIXED(64), 256, &saw);
	stress(FIXED(1), 4, &saw);   /* a tiny queue: producers find it full */
}

/* The seed's adaptive_multi_threaded_stress: under contention the policy
 * moves off its initial 64. */
static void the_adaptive_policy_adapts_under_contention(void)
{
	bool saw = false;
	stress(ADAPTIVE, 64, &saw);
	CU_ASSERT(saw);
}

/* Close racing producers: every push that returned 0 is drained (by a
 * drain or by close), every other push got -EPIPE, nothing is lost. */
struct racer {
	struct bs_freeq *q;
	uint64_t base;
	atomic_ulong *ok;
	atomic_ulong *closed;
};

static void *racer(void *arg)
{
	struct racer *r = arg;
	for (uint64_t i = 0;; i++) {
		int rc = bs_freeq_push(r->q, (struct bs_slice){ r->base + i * 8, 8 });
		if (rc == 0) {
			atomic_fetch_add(r->ok, 1);
		} else {
			atomic_fetch_add(r->closed, rc == -EPIPE);
			return NULL;
		}
	}
}

static atomic_ulong race_freed;
static int race_bulk(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	(void)a;
	(void)s;
	atomic_fetch_add(&race_freed, n);   /* fabricated slices: count only */
	return 0;
}

static void close_is_race_free_against_pushes_in_flight(void)
{
	struct fx f = fx_new(BS_ALLOC_GHOST);
	for (int rep = 0; rep < 20; rep++) {
		struct bs_freeq *q = q_new(&f, 32, FIXED(8));
		atomic_ulong ok = 0, closed = 0;
		pthread_t th[3];
		struct racer rs[3];
		uint64_t drained = 0;
		size_t n;
		atomic_store(&race_freed, 0);
		shim_install(&f, race_bulk);
		for (int i = 0; i < 3; i++) {
			rs[i] = (struct racer){ q, (uint64_t)(i + 1) << 32, &ok, &closed };
			CU_ASSERT_FATAL(pthread_create(&th[i], NULL, racer, &rs[i]) == 0);
		}
		for (int i = 0; i < 50 + rep * 20; i++) {
			CU_ASSERT(bs_freeq_maybe_drain(q, &n) == 0);
			drained += n;
			sched_yield();
		}
		CU_ASSERT(bs_freeq_close(q, &n) == 0);
		drained += n;
		for (int i = 0; i < 3; i++)
			pthread_join(th[i], NULL);
		CU_ASSERT(atomic_load(&closed) == 3);
		CU_ASSERT(drained == atomic_load(&ok));
		CU_ASSERT(atomic_load(&race_freed) == drained);
		CU_ASSERT(bs_freeq_depth(q) == 0);
		shim_remove(&f);
		bs_freeq_free(q);
	}
	fx_free(&f);
}

/* ---- power loss at every cut point of a drain ---------------------------- */

struct used {
	uint64_t arena, free_bytes;
};

static struct used used_of(struct fx *f)
{
	struct bs_alloc_stats st;
	bs_alloc_stats(f->a, &st);
	return (struct used){ st.arena_bytes, st.free_bytes };
}

#define PL_N 8
static const uint64_t pl_lens[PL_N] = { 100, 4000, 24, 64, 300, 8, 1000, 48 };
/* queued: 1, 2, 4, 6 and 7 (the tail, so a tail discard is in the drain) */
static const bool pl_queued[PL_N] = { false, true, true, false, true, false, true, true };

/* Allocate the slices, sync, queue some; returns the device ready for the
 * drain.  The same every time (deterministic). */
static struct fx pl_setup(enum bs_alloc_kind kind, struct bs_slice *s, struct bs_freeq **q)
{
	struct fx f = fx_new(kind);
	for (int i = 0; i < PL_N; i++)
		s[i] = must_alloc(&f, pl_lens[i]);
	CU_ASSERT_FATAL(bstack_sync(f.bs) == 0);
	*q = q_new(&f, 16, FIXED(5));
	for (int i = 0; i < PL_N; i++)
		if (pl_queued[i])
			CU_ASSERT_FATAL(bs_freeq_try_push(*q, s[i]) == 0);
	return f;
}

/* After the reopen: check() is clean, and a reclaim against the slices the
 * caller still holds leaves exactly the space a completed drain leaves: what
 * the cut drain had not freed is found again, nothing is lost for good and
 * nothing is freed twice. */
static void pl_verify(struct fx *f, const struct bs_slice *s, struct used want,
		      uint64_t cut, uint64_t keep)
{
	struct bs_slice live[PL_N];
	size_t n = 0;
	uint64_t got = 0;
	for (int i = 0; i < PL_N; i++)
		if (!pl_queued[i])
			live[n++] = s[i];
	qsort(live, n, sizeof live[0], cmp_off);
	int r = check(f);
	CU_ASSERT(r == 0);
	CU_ASSERT(bs_alloc_reclaim(f->a, live, n, &got) == 0);
	CU_ASSERT(check(f) == 0);
	struct used u = used_of(f);
	if (u.arena - u.free_bytes != want.arena - want.free_bytes || r != 0)
		fprintf(stderr, "\n  [%s cut %llu keep %llu] used %llu, want %llu "
			"(check %d)\n", bs_alloc_kind_name(f->kind), (unsigned long long)cut,
			(unsigned long long)keep,
			(unsigned long long)(u.arena - u.free_bytes),
			(unsigned long long)(want.arena - want.free_bytes), r);
	CU_ASSERT(u.arena - u.free_bytes == want.arena - want.free_bytes);
}

static void power_loss_in_a_drain(enum bs_alloc_kind kind)
{
	struct bs_slice s[PL_N];
	struct bs_freeq *q;
	struct used want;
	/* the reference: a drain that completes, then the same reclaim */
	{
		struct fx f = pl_setup(kind, s, &q);
		bs_memdev_reset_counts(f.dev);
		CU_ASSERT_FATAL(bs_freeq_drain(q, NULL) == 0);
		CU_ASSERT_FATAL(bstack_sync(f.bs) == 0);
		bs_freeq_free(q);
		struct bs_slice live[PL_N];
		size_t n = 0;
		uint64_t got;
		for (int i = 0; i < PL_N; i++)
			if (!pl_queued[i])
				live[n++] = s[i];
		qsort(live, n, sizeof live[0], cmp_off);
		CU_ASSERT_FATAL(bs_alloc_reclaim(f.a, live, n, &got) == 0);
		CU_ASSERT(got == 0);   /* a clean drain leaks nothing */
		want = used_of(&f);
		fx_free(&f);
	}
	int cuts = 0;
	for (uint64_t cut = 1; cut < 500; cut++) {
		bool completed = false;
		for (uint64_t keep_mode = 0; keep_mode < 2; keep_mode++) {
			struct fx f = pl_setup(kind, s, &q);
			bs_memdev_fail_at(f.dev, cut);
			int r = bs_freeq_drain(q, NULL);
			if (!r)
				r = bstack_sync(f.bs);
			completed = r == 0 && !bs_memdev_dead(f.dev);
			uint64_t keep = keep_mode ? bs_memdev_pending(f.dev) : 0;
			bs_freeq_free(q);
			fx_close(&f);
			bs_memdev_fail_at(f.dev, 0);
			if (!completed)
				bs_memdev_power_cycle(f.dev, keep);
			fx_open(&f);
			pl_verify(&f, s, want, cut, keep);
			fx_free(&f);
			if (completed)
				break;
		}
		if (completed)
			break;
		cuts++;
	}
	fprintf(stderr, " [%s: %d cut points]", bs_alloc_kind_name(kind), cuts);
	CU_ASSERT(cuts > 0);   /* the drain did write */
	CU_ASSERT(cuts < 499);
}

static void power_loss_in_a_drain_ghost(void) { power_loss_in_a_drain(BS_ALLOC_GHOST); }
static void power_loss_in_a_drain_firstfit(void) { power_loss_in_a_drain(BS_ALLOC_FIRSTFIT); }
static void power_loss_in_a_drain_slab(void) { power_loss_in_a_drain(BS_ALLOC_SLAB); }
static void power_loss_in_a_drain_linear(void) { power_loss_in_a_drain(BS_ALLOC_LINEAR); }

static const struct h_test tests[] = {
	H_TEST(a_remote_free_is_reused_after_drain),
	H_TEST(capacity_zero_rejects_every_push),
	H_TEST(capacity_one_accepts_one_push_only),
	H_TEST(try_push_fails_on_a_full_queue_and_counts_it),
	H_TEST(the_depth_tracks_pushes_and_drains),
	H_TEST(maybe_drain_waits_for_the_threshold_then_drains_all),
	H_TEST(a_drain_is_one_bulk_dealloc),
	H_TEST(fixed_policy_has_no_adaptive_snapshot),
	H_TEST(adaptive_levels_match_the_spec_and_start_at_64),
	H_TEST(adaptive_steps_up_when_the_queue_is_below_25_percent),
	H_TEST(adaptive_steps_down_when_the_queue_exceeds_75_percent),
	H_TEST(adaptive_cooldown_prevents_oscillation),
	H_TEST(adaptive_ceiling_is_respected),
	H_TEST(adaptive_floor_is_respected_and_the_step_never_underflows),
	H_TEST(adaptive_holds_inside_the_band),
	H_TEST(close_drains_pending_frees_and_refuses_later_pushes),
	H_TEST(the_spinning_push_does_not_spin_on_a_closed_full_queue),
	H_TEST(free_with_entries_pending_drains_them),
	H_TEST(bad_arguments_are_refused),
	H_TEST(slots_freed_from_many_threads_are_reallocated_after_a_drain),
	H_TEST(many_producers_one_owner_free_every_range_exactly_once),
	H_TEST(the_adaptive_policy_adapts_under_contention),
	H_TEST(close_is_race_free_against_pushes_in_flight),
	H_TEST(power_loss_in_a_drain_ghost),
	H_TEST(power_loss_in_a_drain_firstfit),
	H_TEST(power_loss_in_a_drain_slab),
	H_TEST(power_loss_in_a_drain_linear),
};

H_MAIN("freeq", tests)
