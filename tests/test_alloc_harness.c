/*
 * test_alloc_harness.c — the checks every allocator must pass, run over
 * every allocator kind that is built.  Each test is registered once per
 * kind (linear, ghost, firstfit, slab); a kind whose module is not compiled
 * in makes bs_alloc_create() return -ENOTSUP and its tests print
 * "skipped: not built" (and pass, asserting nothing else).
 *
 *   model_*   20,000 random operations against an in-memory model: every
 *             live allocation keeps its pattern, realloc keeps the common
 *             prefix, new bytes read as zero, extents never overlap,
 *             check() stays clean and stats() consistent, reopen every
 *             1,000 operations, and no leak without a crash.  Replay with
 *             BSTACKFS_SEED (the seed is printed; a failure dumps the last
 *             operations).
 *   crash_*   power loss at every write and sync of each operation path
 *             (hand-made layouts, then random operations on images left by
 *             random histories), on the memory device, also keeping every
 *             prefix of the unsynced writes: reopen works, check() is
 *             clean, live data survives, and reclaim() finds leaks only
 *             where the allocator's seed documents one.
 *   threads_* 8 threads allocating, writing, reallocating and freeing: no
 *             offset is handed out twice and contents stay intact.
 *   iface_*   the generic contract of alloc.h (zero-length slices, zeroed
 *             new bytes, reserved bytes, detect, stats, impossible slices).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bstack.h"
#include "harness.h"
#include "io.h"

/* Slab block size for the crash tests: small, so that multi-block paths
 * (oversized allocs, bulk free-list pushes) are reached by small layouts. */
#define CRASH_SLAB_BLOCK 256

/* ---- failure context ------------------------------------------------- */

/* What the current test is doing, printed with every failed expectation so
 * that a failure in a loop of hundreds of cut points names the one. */
static char g_ctx[256];

static void ctx_set(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
	va_end(ap);
}

static bool expect_rc(int rc, int want, const char *expr, int line)
{
	if (rc == want)
		return true;
	fprintf(stderr, "\n  line %d [%s]: %s = %d (%s), expected %d\n", line, g_ctx,
		expr, rc, rc < 0 ? strerror(-rc) : "", want);
	return false;
}

/* Fatal: the test cannot go on after an unexpected error. */
#define OK(expr) CU_ASSERT_FATAL(expect_rc((expr), 0, #expr, __LINE__))
#define EXPECT(cond) do { \
	if (!(cond)) \
		fprintf(stderr, "\n  line %d [%s]: failed: %s\n", __LINE__, g_ctx, #cond); \
	CU_ASSERT_FATAL(cond); \
} while (0)

static void report_violation(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "\n  check [%s]: %s\n", g_ctx, msg);
}

/* ---- fixture: an allocator on a memory device ------------------------- */

struct fx {
	enum bs_alloc_kind kind;
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
};

static int fx_io(struct fx *f, struct bs_io **io)
{
	return bs_io_mem_open(f->dev, io);
}

static void fx_close(struct fx *f)
{
	bs_alloc_close(f->a);
	f->a = NULL;
	if (f->bs)
		bstack_close(f->bs);
	f->bs = NULL;
}

static void fx_free(struct fx *f)
{
	fx_close(f);
	bs_memdev_free(f->dev);
	f->dev = NULL;
}

/* Open the bstack and the allocator that f->dev holds; the detected kind
 * must be f->kind (Linear has no magic: detect says NONE). */
static int fx_open(struct fx *f)
{
	struct bs_io *io;
	enum bs_alloc_kind k;
	int rc = fx_io(f, &io);
	if (rc)
		return rc;
	rc = bstack_open(io, &f->bs);
	if (rc) {
		f->bs = NULL;
		return rc;
	}
	rc = bs_alloc_detect(f->bs, &k);
	if (!rc && k != (f->kind == BS_ALLOC_LINEAR ? BS_ALLOC_NONE : f->kind))
		rc = -EILSEQ;
	if (!rc)
		rc = bs_alloc_open(f->bs, f->kind, &f->a);
	if (rc) {
		f->a = NULL;
		fx_close(f);
	}
	return rc;
}

static int fx_reopen(struct fx *f)
{
	fx_close(f);
	return fx_open(f);
}

/* A fresh allocator of `kind` on a memory device; -ENOTSUP when that
 * module is not built. */
static int fx_create(struct fx *f, enum bs_alloc_kind kind, uint64_t block_size)
{
	struct bs_alloc_opts o = { .block_size = block_size };
	struct bs_io *io;
	int rc;

	memset(f, 0, sizeof *f);
	f->kind = kind;
	f->dev = bs_memdev_new();
	if (!f->dev)
		return -ENOMEM;
	rc = fx_io(f, &io);
	if (!rc)
		rc = bstack_create(io, &f->bs);
	if (rc) {
		f->bs = NULL;
		fx_free(f);
		return rc;
	}
	rc = bs_alloc_create(f->bs, kind, &o, &f->a);
	if (rc) {
		f->a = NULL;
		fx_free(f);
	}
	return rc;
}

/* Start a per-kind test: false (after printing why) when the kind is not
 * built; any other failure fails the test. */
static bool fx_start(struct fx *f, enum bs_alloc_kind kind, uint64_t block_size)
{
	int rc = fx_create(f, kind, block_size);
	ctx_set("%s", bs_alloc_kind_name(kind));
	if (rc == -ENOTSUP) {
		printf("skipped: not built ");
		return false;
	}
	OK(rc);
	return true;
}

/* ---- data helpers ---------------------------------------------------- */

/* Fill s with the pattern of `tag` (tag 0 means "zeros"). */
static int write_tag(struct bstack *bs, struct bs_slice s, uint64_t tag)
{
	if (s.len == 0)
		return 0;
	uint8_t *b = malloc(s.len);
	if (!b)
		return -ENOMEM;
	if (tag)
		h_pattern(b, s.len, tag, 0);
	else
		memset(b, 0, s.len);
	int rc = bstack_set(bs, s.off, b, s.len);
	free(b);
	return rc;
}

/* The first `prefix` bytes of s hold tag's pattern, the rest are zero.
 * -EBADMSG (with the first bad byte printed) when they do not. */
static int verify_tag(struct bstack *bs, struct bs_slice s, uint64_t tag,
		      uint64_t prefix, bool quiet)
{
	if (s.len == 0)
		return 0;
	if (prefix > s.len)
		prefix = s.len;
	uint8_t *b = malloc(s.len);
	if (!b)
		return -ENOMEM;
	int rc = bstack_get(bs, s.off, b, s.len);
	if (!rc && !(tag ? h_pattern_ok(b, prefix, tag, 0) : h_all_zero(b, prefix)))
		rc = -EBADMSG;
	if (!rc && !h_all_zero(b + prefix, s.len - prefix))
		rc = -EBADMSG;
	if (rc == -EBADMSG && !quiet) {
		uint8_t *want = malloc(s.len);
		if (want) {
			if (tag)
				h_pattern(want, prefix, tag, 0);
			else
				memset(want, 0, prefix);
			memset(want + prefix, 0, s.len - prefix);
			for (uint64_t i = 0; i < s.len; i++)
				if (b[i] != want[i]) {
					fprintf(stderr, "\n  [%s] slice (%" PRIu64 ", %" PRIu64
						") tag %" PRIu64 " prefix %" PRIu64
						": byte %" PRIu64 " is %#x, want %#x\n",
						g_ctx, s.off, s.len, tag, prefix, i,
						b[i], want[i]);
					break;
				}
			free(want);
		}
	}
	free(b);
	return rc;
}

static int check_clean(struct bs_alloc *a)
{
	int n = bs_alloc_check(a, report_violation, NULL);
	return n == 0 ? 0 : n > 0 ? -EUCLEAN : n;
}

static int cmp_u64pair(const void *x, const void *y)
{
	const uint64_t *p = x, *q = y;
	return p[0] < q[0] ? -1 : p[0] > q[0];
}

/* Every slice's extent covers it, lies inside the payload past the reserved
 * bytes, and no two extents overlap. */
static int check_extents(struct bs_alloc *a, const struct bs_slice *s, size_t n)
{
	uint64_t (*ext)[2] = malloc((n ? n : 1) * sizeof *ext);
	uint64_t plen = bstack_len(a->bs);
	size_t k = 0;
	int rc = 0;
	if (!ext)
		return -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t st, len;
		if (s[i].len == 0)
			continue;
		rc = bs_alloc_extent(a, s[i], &st, &len);
		if (rc)
			break;
		if (st > s[i].off || s[i].off + s[i].len > st + len ||
		    st < a->reserved_len || st + len > plen) {
			fprintf(stderr, "\n  [%s] extent [%" PRIu64 ", +%" PRIu64
				") does not hold slice (%" PRIu64 ", %" PRIu64
				") inside the arena (payload %" PRIu64 ")\n",
				g_ctx, st, len, s[i].off, s[i].len, plen);
			rc = -ERANGE;
		}
		ext[k][0] = st;
		ext[k][1] = len;
		k++;
	}
	if (!rc) {
		qsort(ext, k, sizeof *ext, cmp_u64pair);
		for (size_t i = 1; i < k; i++)
			if (ext[i - 1][0] + ext[i - 1][1] > ext[i][0]) {
				fprintf(stderr, "\n  [%s] extents [%" PRIu64 ", +%" PRIu64
					") and [%" PRIu64 ", +%" PRIu64 ") overlap\n", g_ctx,
					ext[i - 1][0], ext[i - 1][1], ext[i][0], ext[i][1]);
				rc = -EEXIST;
			}
	}
	free(ext);
	return rc;
}

static int cmp_slice_off(const void *x, const void *y)
{
	const struct bs_slice *p = x, *q = y;
	return p->off < q->off ? -1 : p->off > q->off;
}

/* The live slices, zero-length ones omitted, sorted by offset: the form
 * reclaim() wants. */
static size_t sorted_live(const struct bs_slice *in, size_t n, struct bs_slice *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (in[i].len)
			out[k++] = in[i];
	qsort(out, k, sizeof *out, cmp_slice_off);
	return k;
}

/* ---- per-kind registration ------------------------------------------- */

#define KIND_TEST(group, rest, fn) \
	static void group##_linear_##rest(void) { fn(BS_ALLOC_LINEAR); } \
	static void group##_ghost_##rest(void) { fn(BS_ALLOC_GHOST); } \
	static void group##_firstfit_##rest(void) { fn(BS_ALLOC_FIRSTFIT); } \
	static void group##_slab_##rest(void) { fn(BS_ALLOC_SLAB); }
#define KIND_ENTRIES(group, rest) \
	H_TEST(group##_linear_##rest), H_TEST(group##_ghost_##rest), \
	H_TEST(group##_firstfit_##rest), H_TEST(group##_slab_##rest)

/* ===================================================================== */
/* 1. model-based randomized test                                         */
/* ===================================================================== */

#define MODEL_OPS 20000
#define MODEL_REOPEN_EVERY 1000
#define MODEL_FULL_VERIFY_EVERY 250
#define MODEL_EXTENT_EVERY 50
#define MODEL_MAX_LIVE 160
#define MODEL_LOG 24

struct obj {
	struct bs_slice s;
	uint64_t tag;
};

struct model {
	struct fx f;
	struct obj *v;
	size_t n;
	uint64_t next_tag;
	uint64_t op;
	char log[MODEL_LOG][224];  /* the last operations, for a failure report */
	/* what happened, printed at the end */
	uint64_t n_enotsup, n_grow_done, n_grow_refused, n_bulk;
};

static void mlog(struct model *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->log[m->op % MODEL_LOG], sizeof m->log[0], fmt, ap);
	va_end(ap);
}

static void mlog_dump(struct model *m)
{
	uint64_t first = m->op >= MODEL_LOG - 1 ? m->op - (MODEL_LOG - 1) : 0;
	fprintf(stderr, "  last operations:\n");
	for (uint64_t i = first; i <= m->op; i++)
		if (m->log[i % MODEL_LOG][0])
			fprintf(stderr, "    #%" PRIu64 " %s\n", i, m->log[i % MODEL_LOG]);
}

/* Sizes 0 .. 8 KiB, now and then zero or up to 64 KiB. */
static uint64_t rand_len(void)
{
	uint64_t r = h_rand_below(100);
	if (r < 3)
		return 0;
	if (r < 5)
		return 8192 + h_rand_below(56 * 1024);
	if (r < 30)
		return 1 + h_rand_below(64);
	return 1 + h_rand_below(8192);
}

static void model_add(struct model *m, struct bs_slice s, uint64_t tag)
{
	m->v[m->n++] = (struct obj){ s, tag };
}

static void model_remove(struct model *m, size_t i)
{
	m->v[i] = m->v[--m->n];
}

/* The live object whose extent ends highest (the tail), or a random one:
 * biasing towards the tail reaches the tail paths and keeps Linear, which
 * only gives back the tail, from growing without bound. */
static size_t pick_victim(struct model *m)
{
	if (h_rand_below(3) == 0) {
		size_t best = 0;
		for (size_t i = 1; i < m->n; i++)
			if (m->v[i].s.off + m->v[i].s.len > m->v[best].s.off + m->v[best].s.len)
				best = i;
		return best;
	}
	return h_rand_below(m->n);
}

static bool is_tail(struct fx *f, struct bs_slice s)
{
	uint64_t st, len;
	if (s.len == 0 || bs_alloc_extent(f->a, s, &st, &len))
		return false;
	return st + len == bstack_len(f->bs);
}

/* A fresh allocation: zeroed, then filled with a new tag. */
static int model_take(struct model *m, struct bs_slice s, uint64_t len)
{
	if (len == 0 && (s.off != 0 || s.len != 0)) {
		fprintf(stderr, "\n  [%s] zero-length alloc gave (%" PRIu64 ", %" PRIu64 ")\n",
			g_ctx, s.off, s.len);
		return -EINVAL;
	}
	if (s.len != len) {
		fprintf(stderr, "\n  [%s] asked %" PRIu64 " bytes, got (%" PRIu64 ", %" PRIu64 ")\n",
			g_ctx, len, s.off, s.len);
		return -EINVAL;
	}
	int rc = verify_tag(m->f.bs, s, 0, 0, false);
	uint64_t tag = m->next_tag++;
	if (!rc)
		rc = write_tag(m->f.bs, s, tag);
	if (!rc)
		model_add(m, s, tag);
	return rc;
}

static int op_alloc(struct model *m)
{
	uint64_t len = rand_len();
	struct bs_slice s;
	mlog(m, "alloc(%" PRIu64 ")", len);
	int rc = bs_alloc(m->f.a, len, &s);
	if (!rc)
		mlog(m, "alloc(%" PRIu64 ") = (%" PRIu64 ", %" PRIu64 ")", len, s.off, s.len);
	return rc ? rc : model_take(m, s, len);
}

/* After an in-place or moving resize: the old bytes up to the shorter
 * length survive, the newly exposed ones read as zero; then a new tag. */
static int model_resized(struct model *m, size_t i, struct bs_slice out, uint64_t new_len)
{
	struct obj *o = &m->v[i];
	uint64_t keep = o->s.len < new_len ? o->s.len : new_len;
	if (out.len != new_len || (new_len == 0 && out.off != 0)) {
		fprintf(stderr, "\n  [%s] resize to %" PRIu64 " gave (%" PRIu64 ", %" PRIu64 ")\n",
			g_ctx, new_len, out.off, out.len);
		return -EINVAL;
	}
	if (new_len == 0) {
		model_remove(m, i);
		return 0;
	}
	int rc = verify_tag(m->f.bs, out, o->tag, keep, false);
	if (rc)
		return rc;
	o->s = out;
	o->tag = m->next_tag++;
	return write_tag(m->f.bs, out, o->tag);
}

static int op_realloc(struct model *m)
{
	size_t i = pick_victim(m);
	struct obj *o = &m->v[i];
	uint64_t new_len = h_rand_below(4) ? rand_len() : o->s.len / (1 + h_rand_below(4));
	bool tail = is_tail(&m->f, o->s);
	struct bs_slice out;

	mlog(m, "realloc((%" PRIu64 ", %" PRIu64 ")%s, %" PRIu64 ")", o->s.off, o->s.len,
	     tail ? " tail" : "", new_len);
	int rc = bs_realloc(m->f.a, o->s, new_len, &out);
	if (rc == -ENOTSUP && m->f.kind == BS_ALLOC_LINEAR && !tail && o->s.len) {
		/* Linear resizes only its tail; the slice stays as it was. */
		m->n_enotsup++;
		return verify_tag(m->f.bs, o->s, o->tag, o->s.len, false);
	}
	if (rc)
		return rc;
	mlog(m, "realloc((%" PRIu64 ", %" PRIu64 ")%s, %" PRIu64 ") = (%" PRIu64 ", %" PRIu64 ")",
	     o->s.off, o->s.len, tail ? " tail" : "", new_len, out.off, out.len);
	return model_resized(m, i, out, new_len);
}

static int op_grow_in_place(struct model *m)
{
	size_t i = pick_victim(m);
	struct obj *o = &m->v[i];
	struct bs_slice out = { 0, 0 };
	bool done = false;
	if (o->s.len == 0)
		return 0;
	uint64_t new_len = o->s.len + 1 + h_rand_below(h_rand_below(2) ? 64 : 4096);
	mlog(m, "grow_in_place((%" PRIu64 ", %" PRIu64 "), %" PRIu64 ")", o->s.off, o->s.len,
	     new_len);
	int rc = bs_grow_in_place(m->f.a, o->s, new_len, &out, &done);
	if (rc)
		return rc;
	if (!done) {
		m->n_grow_refused++;
		return verify_tag(m->f.bs, o->s, o->tag, o->s.len, false);
	}
	m->n_grow_done++;
	if (out.off != o->s.off) {
		fprintf(stderr, "\n  [%s] grow_in_place moved the slice to %" PRIu64 "\n",
			g_ctx, out.off);
		return -EINVAL;
	}
	return model_resized(m, i, out, new_len);
}

static int op_dealloc(struct model *m)
{
	size_t i = pick_victim(m);
	struct bs_slice s = m->v[i].s;
	mlog(m, "dealloc((%" PRIu64 ", %" PRIu64 "))", s.off, s.len);
	int rc = bs_dealloc(m->f.a, s);
	if (!rc)
		model_remove(m, i);
	return rc;
}

static int op_alloc_bulk(struct model *m)
{
	uint64_t lens[8];
	struct bs_slice out[8];
	size_t n = 1 + h_rand_below(8);
	for (size_t i = 0; i < n; i++)
		lens[i] = h_rand_below(5) ? rand_len() % 2048 : 0;
	char *l = m->log[m->op % MODEL_LOG];
	size_t w = (size_t)snprintf(l, sizeof m->log[0], "alloc_bulk(");
	for (size_t i = 0; i < n && w < sizeof m->log[0]; i++)
		w += (size_t)snprintf(l + w, sizeof m->log[0] - w, "%s%" PRIu64, i ? " " : "",
				      lens[i]);
	if (w < sizeof m->log[0])
		snprintf(l + w, sizeof m->log[0] - w, ")");
	int rc = bs_alloc_bulk(m->f.a, lens, n, out);
	for (size_t i = 0; i < n && !rc; i++)
		rc = model_take(m, out[i], lens[i]);
	m->n_bulk++;
	return rc;
}

static int op_dealloc_bulk(struct model *m)
{
	struct bs_slice s[6];
	size_t want = 1 + h_rand_below(6), k = 0;
	if (want > m->n)
		want = m->n;
	/* distinct victims: take them out of the model first */
	while (k < want) {
		size_t i = pick_victim(m);
		s[k++] = m->v[i].s;
		model_remove(m, i);
	}
	char *l = m->log[m->op % MODEL_LOG];
	size_t w = (size_t)snprintf(l, sizeof m->log[0], "dealloc_bulk(");
	for (size_t i = 0; i < k && w < sizeof m->log[0]; i++)
		w += (size_t)snprintf(l + w, sizeof m->log[0] - w, "%s(%" PRIu64 ", %" PRIu64 ")",
				      i ? " " : "", s[i].off, s[i].len);
	if (w < sizeof m->log[0])
		snprintf(l + w, sizeof m->log[0] - w, ")");
	m->n_bulk++;
	return bs_dealloc_bulk(m->f.a, s, k);
}

static struct bs_slice *model_slices(struct model *m)
{
	struct bs_slice *s = malloc((m->n ? m->n : 1) * sizeof *s);
	if (s)
		for (size_t i = 0; i < m->n; i++)
			s[i] = m->v[i].s;
	return s;
}

static int model_verify_all(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		int rc = verify_tag(m->f.bs, m->v[i].s, m->v[i].tag, m->v[i].s.len, false);
		if (rc)
			return rc;
	}
	return 0;
}

static int model_check_extents(struct model *m)
{
	struct bs_slice *s = model_slices(m);
	if (!s)
		return -ENOMEM;
	int rc = check_extents(m->f.a, s, m->n);
	free(s);
	return rc;
}

static int model_step(struct model *m)
{
	uint64_t r = h_rand_below(100);
	bool full = m->n >= MODEL_MAX_LIVE;

	if (m->n == 0 || (!full && r < 33))
		return op_alloc(m);
	if (r < 58 || (full && r < 66))
		return op_realloc(m);
	if (r < 66)
		return op_grow_in_place(m);
	if (r < 90)
		return op_dealloc(m);
	if (r < 95 && !full)
		return op_alloc_bulk(m);
	return op_dealloc_bulk(m);
}

/* The figures stats() reports are consistent with the image. */
static int check_stats(struct fx *f)
{
	struct bs_alloc_stats st;
	bs_alloc_stats(f->a, &st);
	uint64_t plen = bstack_len(f->bs);
	if (st.arena_start < st.reserved_bytes || st.arena_start + st.arena_bytes != plen ||
	    st.free_bytes > st.arena_bytes || st.largest_free > st.free_bytes ||
	    (st.free_blocks == 0) != (st.free_bytes == 0) ||
	    st.n_extra < 0 || st.n_extra > BS_ALLOC_MAX_EXTRA) {
		fprintf(stderr, "\n  [%s] inconsistent stats: payload %" PRIu64 " arena %" PRIu64
			"+%" PRIu64 " free %" PRIu64 " in %" PRIu64 " blocks, largest %" PRIu64
			", %d extra\n", g_ctx, plen, st.arena_start, st.arena_bytes,
			st.free_bytes, st.free_blocks, st.largest_free, st.n_extra);
		return -EUCLEAN;
	}
	return 0;
}

/* The whole-state checks of every MODEL_*_EVERY operations. */
static int model_periodic(struct model *m)
{
	uint64_t k = m->op + 1;
	int rc = 0;
	if (k % MODEL_REOPEN_EVERY == 0) {
		mlog(m, "(close and reopen)");
		rc = fx_reopen(&m->f);
		if (rc)
			return rc;
	}
	if (k % MODEL_EXTENT_EVERY == 0)
		rc = model_check_extents(m);
	if (!rc && k % MODEL_FULL_VERIFY_EVERY == 0)
		rc = model_verify_all(m);
	if (!rc && k % MODEL_FULL_VERIFY_EVERY == 0)
		rc = check_clean(m->f.a);
	if (!rc && k % MODEL_FULL_VERIFY_EVERY == 0)
		rc = check_stats(&m->f);
	return rc;
}

/* At the end, with nothing crashed, nothing may have leaked: reclaim finds
 * nothing (Linear excepted: its holes below the tail are by design), and the
 * allocator still works afterwards. */
static int model_finish(struct model *m)
{
	struct bs_slice *s = model_slices(m), *live = malloc((m->n + 1) * sizeof *live);
	uint64_t got = 0;
	int rc = -ENOMEM;
	if (s && live) {
		size_t k = sorted_live(s, m->n, live);
		rc = bs_alloc_reclaim(m->f.a, live, k, &got);
	}
	free(s);
	free(live);
	if (!rc && got && m->f.kind != BS_ALLOC_LINEAR) {
		fprintf(stderr, "\n  [%s] reclaim found %" PRIu64 " leaked bytes without a crash\n",
			g_ctx, got);
		rc = -EUCLEAN;
	}
	if (!rc)
		rc = check_clean(m->f.a);
	if (!rc)
		rc = model_verify_all(m);
	if (!rc)
		rc = op_alloc(m);
	return rc;
}

static void model_test(enum bs_alloc_kind kind)
{
	struct model *m = calloc(1, sizeof *m);
	uint64_t seed = h_rng_seed();
	int rc = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	/* each kind its own stream, derived from the printed seed */
	h_rng_reset(seed * 4 + (uint64_t)kind);
	if (!fx_start(&m->f, kind, 512)) {
		free(m);
		return;
	}
	m->v = calloc(MODEL_MAX_LIVE + 16, sizeof *m->v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m->v);
	m->next_tag = 1;
	for (m->op = 0; m->op < MODEL_OPS; m->op++) {
		ctx_set("model %s op #%" PRIu64, bs_alloc_kind_name(kind), m->op);
		rc = model_step(m);
		if (!rc)
			rc = model_periodic(m);
		if (rc)
			break;
	}
	if (!rc) {
		ctx_set("model %s final reclaim", bs_alloc_kind_name(kind));
		rc = model_finish(m);
	}
	if (rc) {
		fprintf(stderr, "\n  model %s FAILED at op #%" PRIu64 " rc %d (%s): replay with "
			"BSTACKFS_SEED=%" PRIu64 "\n", bs_alloc_kind_name(kind), m->op, rc,
			strerror(-rc), seed);
		mlog_dump(m);
	} else {
		printf("(%s: %zu live, payload %" PRIu64 " B, %" PRIu64 " bulk, %" PRIu64
		       " unsupported, grow_in_place %" PRIu64 "/%" PRIu64 ") ",
		       bs_alloc_kind_name(kind), m->n, bstack_len(m->f.bs), m->n_bulk,
		       m->n_enotsup, m->n_grow_done, m->n_grow_done + m->n_grow_refused);
	}
	CU_ASSERT_EQUAL(rc, 0);
	fx_free(&m->f);
	free(m->v);
	free(m);
}
KIND_TEST(model, 20000_ops_match_the_model, model_test)

/* ===================================================================== */
/* 2. power loss at every cut point                                       */
/* ===================================================================== */

enum crash_op { OP_ALLOC, OP_DEALLOC, OP_REALLOC, OP_GROW, OP_BULK_ALLOC, OP_BULK_DEALLOC };

#define KBIT(k) (1u << (k))
#define MAXPRE 12

/*
 * One operation path: a pre-state built by allocating pre[] in order
 * (each filled with its own pattern) and then freeing the slots in holes[],
 * laid out so that the operation takes the named path in GhostTree,
 * FirstFit and Slab (block 256); then the operation itself.  `leaky` has a
 * bit for each kind whose seed documents a leak on this path.
 */
struct scenario {
	const char *name;
	uint64_t pre[MAXPRE];
	int npre;
	int holes[6];
	int nholes;
	enum crash_op op;
	int target[3];   /* slots operated on (dealloc, realloc, grow, bulk dealloc) */
	int ntarget;
	uint64_t lens[4]; /* alloc / new length / bulk lengths */
	int nlens;
	unsigned leaky;
	unsigned noio;   /* kinds for which the path may legitimately write nothing */
};

/*
 * GhostTree's documented leaks: an AVL remove whose block is not yet
 * handed out or re-inserted (alloc split, no split, bulk), a zeroed block
 * not yet inserted (non-tail dealloc, non-tail shrink, the free half of a
 * move), and torn rotations in any insert or remove.  Slab's crash table:
 * a popped block, a pushed batch (any non-tail free, non-tail shrink,
 * non-tail grow).  FirstFit and Linear: none.
 */
#define GH KBIT(BS_ALLOC_GHOST)
#define SL KBIT(BS_ALLOC_SLAB)
#define FF KBIT(BS_ALLOC_FIRSTFIT)

#define DEEP { 96, 32, 160, 32, 224, 32, 288, 32, 352, 32, 416, 32 }, 12, \
	{ 0, 2, 4, 6, 8, 10 }, 6

static const struct scenario scenarios[] = {
	{ "alloc_split", { 1024, 64 }, 2, { 0 }, 1, OP_ALLOC, { 0 }, 0, { 100 }, 1, GH | SL, 0 },
	{ "alloc_no_split", { 256, 64 }, 2, { 0 }, 1, OP_ALLOC, { 0 }, 0, { 256 }, 1, GH | SL, 0 },
	{ "alloc_extend", { 64 }, 1, { 0 }, 0, OP_ALLOC, { 0 }, 0, { 300 }, 1, 0, 0 },
	{ "dealloc_tail", { 64, 300 }, 2, { 0 }, 0, OP_DEALLOC, { 1 }, 1, { 0 }, 0, 0, 0 },
	{ "dealloc_non_tail", { 300, 64 }, 2, { 0 }, 0, OP_DEALLOC, { 0 }, 1, { 0 }, 0, GH | SL, 0 },
	/* 100 -> 97: one 32-byte (GhostTree), 8-byte (FirstFit) and slab block */
	{ "realloc_same_block", { 64, 100 }, 2, { 0 }, 0, OP_REALLOC, { 1 }, 1, { 97 }, 1, 0,
	  SL | FF },
	{ "realloc_same_block_non_tail", { 100, 64 }, 2, { 0 }, 0, OP_REALLOC, { 0 }, 1, { 97 }, 1,
	  0, SL | FF },
	{ "realloc_tail_grow", { 64, 100 }, 2, { 0 }, 0, OP_REALLOC, { 1 }, 1, { 600 }, 1, 0, 0 },
	{ "realloc_tail_shrink", { 64, 600 }, 2, { 0 }, 0, OP_REALLOC, { 1 }, 1, { 100 }, 1, 0, 0 },
	/* FirstFit keeps a non-tail block that is big enough (its seed) */
	{ "realloc_non_tail_shrink", { 600, 64 }, 2, { 0 }, 0, OP_REALLOC, { 0 }, 1, { 100 }, 1,
	  GH | SL, FF },
	{ "realloc_non_tail_grow_moves", { 100, 64 }, 2, { 0 }, 0, OP_REALLOC, { 0 }, 1, { 600 }, 1,
	  GH | SL, 0 },
	{ "realloc_grow_into_free_neighbour", { 100, 600, 64 }, 3, { 1 }, 1, OP_REALLOC, { 0 }, 1,
	  { 400 }, 1, GH | SL, 0 },
	{ "realloc_to_zero_non_tail", { 300, 64 }, 2, { 0 }, 0, OP_REALLOC, { 0 }, 1, { 0 }, 1,
	  GH | SL, 0 },
	{ "grow_in_place_tail", { 64, 100 }, 2, { 0 }, 0, OP_GROW, { 1 }, 1, { 600 }, 1, 0, 0 },
	{ "grow_in_place_into_free_neighbour", { 100, 600, 64 }, 3, { 1 }, 1, OP_GROW, { 0 }, 1,
	  { 400 }, 1, GH | SL, GH | SL },
	/* Slab's seed has no bulk path: the generic one (alloc.h: "crash
	 * leaks excepted") allocates one slice at a time, and a crash between
	 * them leaks the ones already taken.  FirstFit's native bulk pushes
	 * all its blocks in one call (with one non-zero length it is a plain
	 * alloc): no leak. */
	{ "alloc_bulk_from_free_block", { 64, 2000, 64 }, 3, { 1 }, 1, OP_BULK_ALLOC, { 0 }, 0,
	  { 100, 0, 300, 50 }, 4, GH | SL, 0 },
	{ "alloc_bulk_extend", { 64 }, 1, { 0 }, 0, OP_BULK_ALLOC, { 0 }, 0, { 100, 0, 300, 50 }, 4,
	  SL, 0 },
	{ "alloc_bulk_one_slice_from_free_block", { 64, 2000, 64 }, 3, { 1 }, 1, OP_BULK_ALLOC,
	  { 0 }, 0, { 0, 300, 0 }, 3, GH | SL, 0 },
	{ "dealloc_bulk", { 100, 200, 300, 64, 400 }, 5, { 0 }, 0, OP_BULK_DEALLOC, { 1, 2, 4 }, 3,
	  { 0 }, 0, GH | SL, 0 },
	/* Six free blocks of distinct sizes between 32-byte guards: a tree deep
	 * enough to rotate (GhostTree), a free list to walk and neighbours on
	 * both sides to coalesce with (FirstFit). */
	{ "dealloc_between_free_blocks", DEEP, OP_DEALLOC, { 1 }, 1, { 0 }, 0, GH | SL, 0 },
	{ "alloc_among_many_free_blocks", DEEP, OP_ALLOC, { 0 }, 0, { 100 }, 1, GH | SL, 0 },
	{ "realloc_among_many_free_blocks", DEEP, OP_REALLOC, { 3 }, 1, { 200 }, 1, GH | SL, 0 },
	{ "dealloc_bulk_between_free_blocks", DEEP, OP_BULK_DEALLOC, { 3, 5, 11 }, 3, { 0 }, 0,
	  GH | SL, 0 },
};
#define N_SCENARIOS (sizeof scenarios / sizeof scenarios[0])

/* An expectation on one allocation after a crash: `prefix` bytes of tag's
 * pattern, zeros after. */
struct expect {
	struct bs_slice s;
	uint64_t tag;
	uint64_t prefix;
};

struct cand {
	struct expect e[MAXPRE + 4];
	int n;
	/* what reclaim finds in this state reached without a crash: Linear's
	 * holes below the tail become reclaimable when the tail goes (0 for
	 * every other allocator, which the test asserts) */
	uint64_t base;
};

struct crash_case {
	const struct scenario *sc;
	struct fx f;
	uint8_t *snap;
	size_t snap_len;
	struct bs_slice slot[MAXPRE];   /* the pre-state allocations */
	uint64_t tag[MAXPRE];           /* and their patterns */
	bool hole[MAXPRE];
	struct cand before, after, common;
	/* the states to try, more bytes first; `common` is always last */
	struct cand cands[1 << 3 | 2];
	int ncand;
	/* tallies */
	uint64_t runs, leaking_runs, max_leak;
};


static bool is_target(const struct scenario *sc, int i)
{
	for (int t = 0; t < sc->ntarget; t++)
		if (sc->target[t] == i)
			return true;
	return false;
}

static int crash_build(struct crash_case *c)
{
	const struct scenario *sc = c->sc;
	for (int i = 0; i < sc->npre; i++) {
		int rc = bs_alloc(c->f.a, sc->pre[i], &c->slot[i]);
		c->tag[i] = 1000 + (uint64_t)i;
		if (!rc)
			rc = write_tag(c->f.bs, c->slot[i], c->tag[i]);
		if (rc)
			return rc;
	}
	for (int h = 0; h < sc->nholes; h++) {
		int rc = bs_dealloc(c->f.a, c->slot[sc->holes[h]]);
		if (rc)
			return rc;
		c->hole[sc->holes[h]] = true;
	}
	fx_close(&c->f);
	return bs_memdev_snapshot(c->f.dev, &c->snap, &c->snap_len);
}

struct op_result {
	struct bs_slice out[4];
	bool done;
};

static int crash_do_op(struct crash_case *c, struct op_result *r)
{
	const struct scenario *sc = c->sc;
	struct bs_slice t[3];
	for (int i = 0; i < sc->ntarget; i++)
		t[i] = c->slot[sc->target[i]];
	memset(r, 0, sizeof *r);
	switch (sc->op) {
	case OP_ALLOC:
		return bs_alloc(c->f.a, sc->lens[0], &r->out[0]);
	case OP_DEALLOC:
		return bs_dealloc(c->f.a, t[0]);
	case OP_REALLOC:
		return bs_realloc(c->f.a, t[0], sc->lens[0], &r->out[0]);
	case OP_GROW:
		return bs_grow_in_place(c->f.a, t[0], sc->lens[0], &r->out[0], &r->done);
	case OP_BULK_ALLOC:
		return bs_alloc_bulk(c->f.a, sc->lens, (size_t)sc->nlens, r->out);
	case OP_BULK_DEALLOC:
		return bs_dealloc_bulk(c->f.a, t, (size_t)sc->ntarget);
	}
	return -EINVAL;
}

static void cand_add(struct cand *k, struct bs_slice s, uint64_t tag, uint64_t prefix)
{
	if (s.len)
		k->e[k->n++] = (struct expect){ s, tag, prefix };
}

static uint64_t cand_bytes(const struct cand *k)
{
	uint64_t n = 0;
	for (int i = 0; i < k->n; i++)
		n += k->e[i].s.len;
	return n;
}

static int cmp_cand_bytes(const void *x, const void *y)
{
	uint64_t p = cand_bytes(x), q = cand_bytes(y);
	return p > q ? -1 : p < q;
}

/*
 * The states the image may be in after a crash, more bytes first.  A bulk
 * dealloc frees its slices one at a time (the generic path) so any subset
 * of them may be freed: every subset is a state.  `common` goes last: it
 * is the state where the touched allocations are lost (a leak).
 */
static void crash_order(struct crash_case *c)
{
	const struct scenario *sc = c->sc;
	c->ncand = 0;
	uint64_t base = c->before.base > c->after.base ? c->before.base : c->after.base;
	c->common.base = base;
	if (sc->op == OP_BULK_DEALLOC) {
		for (unsigned m = (1u << sc->ntarget) - 1; m > 0; m--) {
			struct cand *k = &c->cands[c->ncand++];
			*k = c->common;
			k->base = m == (1u << sc->ntarget) - 1 ? c->before.base : base;
			for (int t = 0; t < sc->ntarget; t++)
				if (m & (1u << t))
					cand_add(k, c->slot[sc->target[t]], c->tag[sc->target[t]],
						 c->slot[sc->target[t]].len);
		}
	} else {
		c->cands[c->ncand++] = c->before;
		c->cands[c->ncand++] = c->after;
	}
	qsort(c->cands, (size_t)c->ncand, sizeof c->cands[0], cmp_cand_bytes);
	c->cands[c->ncand++] = c->common;
}

/* before: every pre-state allocation; common: those the operation does not
 * touch; after: common plus what the fault-free run produced. */
static void crash_candidates(struct crash_case *c, const struct op_result *r)
{
	const struct scenario *sc = c->sc;
	memset(&c->before, 0, sizeof c->before);
	memset(&c->common, 0, sizeof c->common);
	for (int i = 0; i < sc->npre; i++) {
		if (c->hole[i])
			continue;
		cand_add(&c->before, c->slot[i], c->tag[i], c->slot[i].len);
		if (!is_target(sc, i))
			cand_add(&c->common, c->slot[i], c->tag[i], c->slot[i].len);
	}
	c->after = c->common;
	switch (sc->op) {
	case OP_ALLOC:
		cand_add(&c->after, r->out[0], 0, 0);
		break;
	case OP_BULK_ALLOC:
		for (int i = 0; i < sc->nlens; i++)
			cand_add(&c->after, r->out[i], 0, 0);
		break;
	case OP_REALLOC:
	case OP_GROW: {
		struct bs_slice old = c->slot[sc->target[0]];
		uint64_t keep = old.len < sc->lens[0] ? old.len : sc->lens[0];
		if (sc->op == OP_GROW && !r->done)
			cand_add(&c->after, old, c->tag[sc->target[0]], old.len);
		else
			cand_add(&c->after, r->out[0], c->tag[sc->target[0]], keep);
		break;
	}
	case OP_DEALLOC:
	case OP_BULK_DEALLOC:
		break;
	}
}

static int cand_verify(struct fx *f, const struct cand *k, bool quiet)
{
	for (int i = 0; i < k->n; i++) {
		int rc = verify_tag(f->bs, k->e[i].s, k->e[i].tag, k->e[i].prefix, quiet);
		if (rc)
			return rc;
	}
	return 0;
}

static int cand_reclaim(struct fx *f, const struct cand *k, uint64_t *got)
{
	struct bs_slice in[MAXPRE + 4], live[MAXPRE + 4];
	for (int i = 0; i < k->n; i++)
		in[i] = k->e[i].s;
	size_t n = sorted_live(in, (size_t)k->n, live);
	return bs_alloc_reclaim(f->a, live, n, got);
}

/*
 * After the crash the image must be in the state from before or after the
 * operation (or, where a seed allows it, one with the touched allocation
 * lost).  Try the candidates, the one claiming more bytes first; the first
 * whose data verifies and that reclaim() accepts (reclaim refuses, touching
 * nothing, a live set that overlaps free space) is the state the image is
 * in; reclaim's count is the leak.  The common allocations must verify in
 * every case.
 */
static int crash_settle(struct crash_case *c, uint64_t *leak)
{
	int rc = cand_verify(&c->f, &c->common, false);
	if (rc)
		return rc;
	for (int i = 0; i < c->ncand; i++) {
		const struct cand *k = &c->cands[i];
		if (cand_verify(&c->f, k, true))
			continue;
		rc = cand_reclaim(&c->f, k, leak);
		if (rc == -EUCLEAN)
			continue;
		if (rc)
			return rc;
		*leak = *leak > k->base ? *leak - k->base : 0;
		/* reclaim gives back only what nothing holds */
		rc = cand_verify(&c->f, k, false);
		if (!rc)
			rc = check_clean(c->f.a);
		return rc;
	}
	fprintf(stderr, "\n  [%s] no consistent state: reclaim refused even the untouched "
		"allocations\n", g_ctx);
	return -EUCLEAN;
}

/* One cut: fail the n-th device operation, power-cycle keeping `keep`
 * unsynced writes, reopen and judge.  *pending gets what the crash could
 * have lost. */
static void crash_once(struct crash_case *c, uint64_t n, uint64_t keep, uint64_t *pending)
{
	struct op_result r;
	struct bs_slice s;
	uint64_t leak = 0;
	unsigned kbit = KBIT(c->f.kind);

	ctx_set("crash %s %s cut %" PRIu64 " keep %" PRIu64, bs_alloc_kind_name(c->f.kind),
		c->sc->name, n, keep);
	OK(bs_memdev_load(c->f.dev, c->snap, c->snap_len));
	OK(fx_open(&c->f));
	bs_memdev_fail_at(c->f.dev, n);
	int rc = crash_do_op(c, &r);
	if (rc >= 0)
		fprintf(stderr, "\n  [%s] the operation succeeded although the power went out\n",
			g_ctx);
	EXPECT(rc < 0);
	EXPECT(bs_memdev_dead(c->f.dev));
	*pending = bs_memdev_pending(c->f.dev);
	fx_close(&c->f);   /* closing after the power loss must be safe */
	bs_memdev_power_cycle(c->f.dev, keep);

	OK(fx_open(&c->f));
	OK(check_clean(c->f.a));
	OK(crash_settle(c, &leak));
	c->runs++;
	if (leak) {
		c->leaking_runs++;
		if (leak > c->max_leak)
			c->max_leak = leak;
		if (!(c->sc->leaky & kbit))
			fprintf(stderr, "\n  [%s] %" PRIu64 " bytes leaked where the seed "
				"documents no leak\n", g_ctx, leak);
		EXPECT(c->sc->leaky & kbit);
	}
	/* after reclaim the allocator works */
	OK(bs_alloc(c->f.a, 100, &s));
	OK(verify_tag(c->f.bs, s, 0, 0, false));
	OK(check_clean(c->f.a));
	fx_close(&c->f);
}

/* Run the scenario once without faults: the number of device operations
 * it issues (every one a cut point) and the after-state. */
static int crash_count(struct crash_case *c, uint64_t *count)
{
	struct op_result r;
	OK(bs_memdev_load(c->f.dev, c->snap, c->snap_len));
	OK(fx_open(&c->f));
	uint64_t w0 = bs_memdev_writes(c->f.dev) + bs_memdev_syncs(c->f.dev);
	int rc = crash_do_op(c, &r);
	*count = bs_memdev_writes(c->f.dev) + bs_memdev_syncs(c->f.dev) - w0;
	if (rc == 0) {
		crash_candidates(c, &r);
		OK(cand_verify(&c->f, &c->after, false));
		OK(check_clean(c->f.a));
		OK(cand_reclaim(&c->f, &c->after, &c->after.base));
	}
	fx_close(&c->f);
	if (rc)
		return rc;
	/* the before-state's baseline, on the untouched snapshot */
	OK(bs_memdev_load(c->f.dev, c->snap, c->snap_len));
	OK(fx_open(&c->f));
	OK(cand_reclaim(&c->f, &c->before, &c->before.base));
	fx_close(&c->f);
	if (c->f.kind != BS_ALLOC_LINEAR && (c->before.base || c->after.base))
		fprintf(stderr, "\n  [%s] reclaim found %" PRIu64 " / %" PRIu64 " bytes before / "
			"after the operation without a crash\n", g_ctx, c->before.base,
			c->after.base);
	EXPECT(c->f.kind == BS_ALLOC_LINEAR || (c->before.base == 0 && c->after.base == 0));
	crash_order(c);
	return 0;
}

static void crash_scenario(enum bs_alloc_kind kind, const struct scenario *sc, bool keep_prefixes)
{
	struct crash_case *c = calloc(1, sizeof *c);
	uint64_t count = 0, pending = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	c->sc = sc;
	ctx_set("crash %s %s setup", bs_alloc_kind_name(kind), sc->name);
	OK(fx_create(&c->f, kind, CRASH_SLAB_BLOCK));
	OK(crash_build(c));
	int rc = crash_count(c, &count);
	if (rc == -ENOTSUP && kind == BS_ALLOC_LINEAR) {
		printf("\n    %-34s not supported by linear", sc->name);
		goto out;
	}
	OK(rc);
	for (uint64_t n = 1; n <= count; n++) {
		crash_once(c, n, 0, &pending);
		for (uint64_t k = 1; keep_prefixes && k <= pending; k++) {
			uint64_t p;
			crash_once(c, n, k, &p);
		}
	}
	printf("\n    %-34s %2" PRIu64 " cuts, %3" PRIu64 " runs, %" PRIu64 " leaking (max %"
	       PRIu64 " B)%s", sc->name, count, c->runs, c->leaking_runs, c->max_leak,
	       sc->leaky & KBIT(kind) ? " [leak documented]" : "");
	/* a path that changes the image does I/O (Linear's non-tail frees
	 * change nothing, nor do the paths marked noio) */
	EXPECT(count > 0 || kind == BS_ALLOC_LINEAR || (sc->noio & KBIT(kind)));
out:
	free(c->snap);
	fx_free(&c->f);
	free(c);
}

static bool kind_built(enum bs_alloc_kind kind)
{
	struct fx f;
	if (!fx_start(&f, kind, CRASH_SLAB_BLOCK))
		return false;
	fx_free(&f);
	return true;
}

static void crash_every_cut(enum bs_alloc_kind kind)
{
	if (!kind_built(kind))
		return;
	for (size_t i = 0; i < N_SCENARIOS; i++)
		crash_scenario(kind, &scenarios[i], false);
	printf("\n  ");
}
KIND_TEST(crash, every_cut_point_keeps_live_data_and_leaks_only_where_documented,
	  crash_every_cut)

/* The same with every prefix of the unsynced writes surviving: nothing may
 * rely on unsynced writes being lost, or on them reaching the disk out of
 * order. */
static void crash_prefixes(enum bs_alloc_kind kind)
{
	if (!kind_built(kind))
		return;
	for (size_t i = 0; i < N_SCENARIOS; i++)
		crash_scenario(kind, &scenarios[i], true);
	printf("\n  ");
}
KIND_TEST(crash, every_prefix_of_unsynced_writes_is_a_consistent_state, crash_prefixes)

#define RC_ROUNDS 60
#define RC_HISTORY 60

/* A random history that keeps at most MAXPRE allocations live. */
static int random_history(struct model *m)
{
	int rc = 0;
	for (m->op = 0; m->op < RC_HISTORY && !rc; m->op++) {
		uint64_t r = h_rand_below(100);
		if (m->n >= MAXPRE - 1)
			rc = op_dealloc(m);
		else if (m->n == 0 || r < 40)
			rc = op_alloc(m);
		else if (r < 60)
			rc = op_realloc(m);
		else if (r < 85)
			rc = op_dealloc(m);
		else if (r < 93 && m->n + 8 < MAXPRE)
			rc = op_alloc_bulk(m);
		else
			rc = op_dealloc_bulk(m);
	}
	return rc;
}

/* A random operation on the live set of the history. */
static void random_op(struct scenario *sc, const struct model *m)
{
	size_t nlive = m->n;
	static const enum crash_op ops[] = { OP_ALLOC, OP_DEALLOC, OP_REALLOC, OP_GROW,
					     OP_BULK_ALLOC, OP_BULK_DEALLOC };
	sc->op = nlive ? ops[h_rand_below(6)] : OP_ALLOC;
	sc->ntarget = sc->op == OP_BULK_DEALLOC ? 1 + (int)h_rand_below(nlive < 3 ? nlive : 3) :
		      sc->op == OP_ALLOC || sc->op == OP_BULK_ALLOC ? 0 : 1;
	for (int t = 0; t < sc->ntarget; t++) {
		bool dup;
		do {
			sc->target[t] = (int)h_rand_below(nlive);
			dup = false;
			for (int u = 0; u < t; u++)
				dup |= sc->target[u] == sc->target[t];
		} while (dup);
	}
	sc->nlens = sc->op == OP_BULK_ALLOC ? 1 + (int)h_rand_below(4) : 1;
	for (int i = 0; i < sc->nlens; i++)
		sc->lens[i] = rand_len() % 4096;
	if (sc->op == OP_GROW) {
		uint64_t len = m->v[sc->target[0]].s.len;
		if (len == 0)
			sc->op = OP_REALLOC;   /* growing the null slice is an alloc */
		else
			sc->lens[0] = len + 1 + h_rand_below(4096);
	}
	/* the leaks the seeds document are on nearly every multi-call path
	 * (FirstFit: none, its bulk alloc included) */
	sc->leaky = GH | SL;
}

static void random_crash_round(enum bs_alloc_kind kind, uint64_t round, uint64_t *runs,
			       uint64_t *leaking)
{
	struct model *m = calloc(1, sizeof *m);
	struct crash_case *c = calloc(1, sizeof *c);
	struct scenario sc;
	char name[64];
	uint64_t count = 0, pending = 0, p;

	CU_ASSERT_FATAL(m && c);
	m->v = calloc(MAXPRE + 16, sizeof *m->v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m->v);
	m->next_tag = 1;
	ctx_set("random crash %s round %" PRIu64 " history", bs_alloc_kind_name(kind), round);
	OK(fx_create(&m->f, kind, CRASH_SLAB_BLOCK));
	if (random_history(m)) {
		mlog_dump(m);
		CU_FAIL_FATAL("random history failed");
	}
	/* the history's live set is the crash case's pre-state */
	memset(&sc, 0, sizeof sc);
	random_op(&sc, m);
	snprintf(name, sizeof name, "random round %" PRIu64 " op %d", round, (int)sc.op);
	sc.name = name;
	c->sc = &sc;
	c->f = m->f;
	sc.npre = (int)m->n;
	for (size_t i = 0; i < m->n; i++) {
		c->slot[i] = m->v[i].s;
		c->tag[i] = m->v[i].tag;
	}
	fx_close(&c->f);
	OK(bs_memdev_snapshot(c->f.dev, &c->snap, &c->snap_len));
	int rc = crash_count(c, &count);
	if (!(rc == -ENOTSUP && kind == BS_ALLOC_LINEAR)) {
		OK(rc);
		for (uint64_t n = 1; n <= count; n++) {
			crash_once(c, n, 0, &pending);
			if (pending)
				crash_once(c, n, 1 + h_rand_below(pending), &p);
		}
	}
	*runs += c->runs;
	*leaking += c->leaking_runs;
	free(c->snap);
	fx_free(&c->f);
	free(c);
	free(m->v);
	free(m);
}

/* Power loss inside random operations on images a random history left:
 * states the hand-made layouts do not reach. */
static void crash_random(enum bs_alloc_kind kind)
{
	if (!kind_built(kind))
		return;
	uint64_t seed = h_rng_seed(), runs = 0, leaking = 0;
	h_rng_reset(seed * 4 + (uint64_t)kind + 1);
	for (uint64_t r = 0; r < RC_ROUNDS; r++)
		random_crash_round(kind, r, &runs, &leaking);
	printf("(%" PRIu64 " crashes, %" PRIu64 " leaking) ", runs, leaking);
	/* the rounds must reach cut points, or this tests nothing */
	CU_ASSERT(runs >= RC_ROUNDS / 2);
}
KIND_TEST(crash, random_cuts_in_random_histories_keep_live_data, crash_random)

/* ===================================================================== */
/* 3. concurrency                                                         */
/* ===================================================================== */

#define TH_THREADS 8
#define TH_ROUNDS 300
#define TH_HELD 4

/* The offsets currently handed out, shared by all threads: an offset found
 * already present when a thread registers it was handed out twice. */
struct shared {
	struct fx f;
	pthread_mutex_t mu;
	uint64_t *offs;
	size_t n, cap;
	int failures;
	char first[256];
};

struct worker {
	struct shared *sh;
	int id;
	uint64_t seed;
	struct obj held[TH_HELD];
	int nheld;
	uint64_t ops, enotsup;
};

static void th_fail(struct shared *sh, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&sh->mu);
	if (!sh->failures++) {
		va_start(ap, fmt);
		vsnprintf(sh->first, sizeof sh->first, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&sh->mu);
}

static bool th_register(struct shared *sh, struct bs_slice s)
{
	bool dup = false;
	if (s.len == 0)
		return true;
	pthread_mutex_lock(&sh->mu);
	for (size_t i = 0; i < sh->n; i++)
		dup |= sh->offs[i] == s.off;
	if (!dup)
		sh->offs[sh->n++] = s.off;
	pthread_mutex_unlock(&sh->mu);
	if (dup)
		th_fail(sh, "offset %" PRIu64 " handed out twice", s.off);
	return !dup;
}

/* Called before the slice is given back, so that a thread getting the
 * same offset next cannot collide with a stale entry. */
static void th_unregister(struct shared *sh, struct bs_slice s)
{
	if (s.len == 0)
		return;
	pthread_mutex_lock(&sh->mu);
	for (size_t i = 0; i < sh->n; i++)
		if (sh->offs[i] == s.off) {
			sh->offs[i] = sh->offs[--sh->n];
			break;
		}
	pthread_mutex_unlock(&sh->mu);
}

/* A per-thread xorshift: h_rand() is not thread-safe. */
static uint64_t th_rand(struct worker *w, uint64_t below)
{
	w->seed ^= w->seed >> 12;
	w->seed ^= w->seed << 25;
	w->seed ^= w->seed >> 27;
	return (w->seed * 0x2545F4914F6CDD1DULL) % below;
}

static uint64_t th_tag(struct worker *w)
{
	return ((uint64_t)w->id << 32) + ++w->ops;
}

static int th_verify_held(struct worker *w)
{
	for (int i = 0; i < w->nheld; i++) {
		struct obj *o = &w->held[i];
		if (verify_tag(w->sh->f.bs, o->s, o->tag, o->s.len, true)) {
			th_fail(w->sh, "thread %d: slice (%" PRIu64 ", %" PRIu64
				") lost its contents", w->id, o->s.off, o->s.len);
			return -EBADMSG;
		}
	}
	return 0;
}

static int th_alloc(struct worker *w)
{
	struct bs_alloc *a = w->sh->f.a;
	uint64_t len = th_rand(w, 10) ? 1 + th_rand(w, 3000) : 0;
	struct obj o = { { 0, 0 }, th_tag(w) };
	int rc = bs_alloc(a, len, &o.s);
	if (rc) {
		th_fail(w->sh, "thread %d: alloc(%" PRIu64 ") = %d", w->id, len, rc);
		return rc;
	}
	if (!th_register(w->sh, o.s))
		return -EEXIST;
	if (verify_tag(a->bs, o.s, 0, 0, true)) {
		th_fail(w->sh, "thread %d: new slice (%" PRIu64 ", %" PRIu64 ") not zero",
			w->id, o.s.off, o.s.len);
		return -EBADMSG;
	}
	rc = write_tag(a->bs, o.s, o.tag);
	w->held[w->nheld++] = o;
	return rc;
}

static int th_realloc(struct worker *w, int i)
{
	struct bs_alloc *a = w->sh->f.a;
	struct obj *o = &w->held[i];
	uint64_t new_len = th_rand(w, 8) ? 1 + th_rand(w, 4000) : 0;
	uint64_t keep = o->s.len < new_len ? o->s.len : new_len;
	struct bs_slice out;

	th_unregister(w->sh, o->s);
	int rc = bs_realloc(a, o->s, new_len, &out);
	if (rc == -ENOTSUP && w->sh->f.kind == BS_ALLOC_LINEAR) {
		w->enotsup++;
		return th_register(w->sh, o->s) ? 0 : -EEXIST;
	}
	if (rc) {
		th_fail(w->sh, "thread %d: realloc((%" PRIu64 ", %" PRIu64 "), %" PRIu64 ") = %d",
			w->id, o->s.off, o->s.len, new_len, rc);
		return rc;
	}
	if (!th_register(w->sh, out))
		return -EEXIST;
	if (verify_tag(a->bs, out, o->tag, keep, true)) {
		th_fail(w->sh, "thread %d: realloc to (%" PRIu64 ", %" PRIu64 ") lost data",
			w->id, out.off, out.len);
		return -EBADMSG;
	}
	o->s = out;
	o->tag = th_tag(w);
	return write_tag(a->bs, out, o->tag);
}

static int th_dealloc(struct worker *w, int i)
{
	struct obj o = w->held[i];
	w->held[i] = w->held[--w->nheld];
	th_unregister(w->sh, o.s);
	int rc = bs_dealloc(w->sh->f.a, o.s);
	if (rc)
		th_fail(w->sh, "thread %d: dealloc((%" PRIu64 ", %" PRIu64 ")) = %d", w->id,
			o.s.off, o.s.len, rc);
	return rc;
}

static void *th_main(void *arg)
{
	struct worker *w = arg;
	int rc = 0;
	for (int round = 0; round < TH_ROUNDS && !rc; round++) {
		if (w->nheld < TH_HELD)
			rc = th_alloc(w);
		if (!rc)
			rc = th_verify_held(w);
		if (!rc && w->nheld)
			rc = th_realloc(w, (int)th_rand(w, (uint64_t)w->nheld));
		if (!rc && w->nheld && th_rand(w, 3) == 0)
			rc = th_dealloc(w, (int)th_rand(w, (uint64_t)w->nheld));
	}
	return NULL;
}

static void threads_test(enum bs_alloc_kind kind)
{
	struct shared *sh = calloc(1, sizeof *sh);
	struct worker w[TH_THREADS];
	pthread_t t[TH_THREADS];
	uint64_t seed = h_rng_seed();

	CU_ASSERT_PTR_NOT_NULL_FATAL(sh);
	if (!fx_start(&sh->f, kind, 512)) {
		free(sh);
		return;
	}
	pthread_mutex_init(&sh->mu, NULL);
	sh->cap = TH_THREADS * TH_HELD + 8;
	sh->offs = calloc(sh->cap, sizeof *sh->offs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sh->offs);
	memset(w, 0, sizeof w);
	for (int i = 0; i < TH_THREADS; i++) {
		w[i].sh = sh;
		w[i].id = i + 1;
		w[i].seed = seed * 31 + (uint64_t)kind * 1000 + (uint64_t)i + 1;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, th_main, &w[i]), 0);
	}
	for (int i = 0; i < TH_THREADS; i++)
		pthread_join(t[i], NULL);
	if (sh->failures)
		fprintf(stderr, "\n  threads %s: %d failures, first: %s (seed %" PRIu64 ")\n",
			bs_alloc_kind_name(kind), sh->failures, sh->first, seed);
	CU_ASSERT_EQUAL(sh->failures, 0);

	/* quiet again: everything still verifies, check is clean, no overlap */
	ctx_set("threads %s after join", bs_alloc_kind_name(kind));
	struct bs_slice all[TH_THREADS * TH_HELD];
	size_t n = 0;
	for (int i = 0; i < TH_THREADS; i++)
		for (int j = 0; j < w[i].nheld; j++) {
			CU_ASSERT_EQUAL(verify_tag(sh->f.bs, w[i].held[j].s, w[i].held[j].tag,
						   w[i].held[j].s.len, false), 0);
			all[n++] = w[i].held[j].s;
		}
	CU_ASSERT_EQUAL(check_extents(sh->f.a, all, n), 0);
	CU_ASSERT_EQUAL(check_clean(sh->f.a), 0);
	OK(fx_reopen(&sh->f));
	CU_ASSERT_EQUAL(check_clean(sh->f.a), 0);
	for (int i = 0; i < TH_THREADS; i++)
		for (int j = 0; j < w[i].nheld; j++)
			CU_ASSERT_EQUAL(verify_tag(sh->f.bs, w[i].held[j].s, w[i].held[j].tag,
						   w[i].held[j].s.len, false), 0);
	pthread_mutex_destroy(&sh->mu);
	free(sh->offs);
	fx_free(&sh->f);
	free(sh);
}
KIND_TEST(threads, eight_threads_never_share_an_offset_or_lose_bytes, threads_test)

/* ===================================================================== */
/* 4. the generic interface                                               */
/* ===================================================================== */

static uint64_t dev_ops(struct fx *f)
{
	return bs_memdev_writes(f->dev) + bs_memdev_syncs(f->dev);
}

static void iface_zero_length(enum bs_alloc_kind kind)
{
	struct fx f;
	struct bs_slice s = { 7, 7 }, out[3];
	uint64_t lens[3] = { 0, 0, 0 };
	if (!fx_start(&f, kind, 0))
		return;
	uint64_t before = dev_ops(&f), plen = bstack_len(f.bs);
	OK(bs_alloc(f.a, 0, &s));
	CU_ASSERT(s.off == 0 && s.len == 0);
	OK(bs_dealloc(f.a, s));
	OK(bs_alloc_bulk(f.a, lens, 3, out));
	for (int i = 0; i < 3; i++)
		CU_ASSERT(out[i].off == 0 && out[i].len == 0);
	OK(bs_dealloc_bulk(f.a, out, 3));
	CU_ASSERT_EQUAL(dev_ops(&f), before);
	CU_ASSERT_EQUAL(bstack_len(f.bs), plen);
	/* realloc of the null slice allocates; to zero, it frees */
	OK(bs_realloc(f.a, s, 40, &s));
	CU_ASSERT_EQUAL(s.len, 40);
	CU_ASSERT_EQUAL(verify_tag(f.bs, s, 0, 0, false), 0);
	OK(bs_realloc(f.a, s, 0, &s));
	CU_ASSERT(s.off == 0 && s.len == 0);
	OK(check_clean(f.a));
	fx_free(&f);
}
KIND_TEST(iface, zero_length_alloc_is_the_null_slice_and_does_no_io, iface_zero_length)

static void iface_new_bytes_zero(enum bs_alloc_kind kind)
{
	struct fx f;
	struct bs_slice a, b, c;
	bool done;
	if (!fx_start(&f, kind, 0))
		return;
	OK(bs_alloc(f.a, 3000, &a));
	OK(write_tag(f.bs, a, 11));
	OK(bs_alloc(f.a, 100, &b));
	OK(write_tag(f.bs, b, 12));
	/* the tail shrunk then grown again: the re-exposed bytes are zero */
	OK(bs_alloc(f.a, 1000, &c));
	OK(write_tag(f.bs, c, 13));
	OK(bs_realloc(f.a, c, 10, &c));
	OK(bs_realloc(f.a, c, 1000, &c));
	CU_ASSERT_EQUAL(verify_tag(f.bs, c, 13, 10, false), 0);
	/* within one block: shrink by a few bytes, then grow back */
	OK(write_tag(f.bs, c, 14));
	OK(bs_realloc(f.a, c, 995, &c));
	OK(bs_realloc(f.a, c, 1000, &c));
	CU_ASSERT_EQUAL(verify_tag(f.bs, c, 14, 995, false), 0);
	/* grow_in_place of the tail is done and exposes zeros */
	OK(write_tag(f.bs, c, 15));
	OK(bs_grow_in_place(f.a, c, 5000, &c, &done));
	CU_ASSERT(done);
	CU_ASSERT_EQUAL(c.len, 5000);
	CU_ASSERT_EQUAL(verify_tag(f.bs, c, 15, 1000, false), 0);
	/* reuse of freed space gives zeros, not the old contents */
	OK(bs_dealloc(f.a, a));
	OK(bs_alloc(f.a, 2500, &a));
	CU_ASSERT_EQUAL(verify_tag(f.bs, a, 0, 0, false), 0);
	CU_ASSERT_EQUAL(verify_tag(f.bs, b, 12, b.len, false), 0);
	OK(check_clean(f.a));
	fx_free(&f);
}
KIND_TEST(iface, new_bytes_read_as_zero, iface_new_bytes_zero)

static void iface_reserved(enum bs_alloc_kind kind)
{
	struct fx f;
	uint8_t buf[64], back[64];
	struct bs_slice s;
	if (!fx_start(&f, kind, 0))
		return;
	uint64_t n = f.a->reserved_len;
	uint64_t want = kind == BS_ALLOC_SLAB ? 24 : kind == BS_ALLOC_GHOST ? 32 : 16;
	CU_ASSERT_EQUAL(n, want);
	CU_ASSERT_FATAL(n <= sizeof buf);
	/* fresh: all zero */
	OK(bs_alloc_reserved_get(f.a, 0, back, n));
	CU_ASSERT(h_all_zero(back, n));
	h_pattern(buf, n, 77, 0);
	OK(bs_alloc_reserved_set(f.a, 0, buf, n));
	OK(bs_alloc_reserved_set(f.a, 3, "xy", 2));
	memcpy(buf + 3, "xy", 2);
	OK(bs_alloc_reserved_get(f.a, 0, back, n));
	CU_ASSERT_EQUAL(memcmp(buf, back, n), 0);
	/* nothing past the reserved bytes */
	CU_ASSERT(bs_alloc_reserved_set(f.a, n - 1, buf, 2) < 0);
	CU_ASSERT(bs_alloc_reserved_get(f.a, n, back, 1) < 0);
	CU_ASSERT(bs_alloc_reserved_get(f.a, UINT64_MAX, back, 2) < 0);
	/* allocations do not touch them */
	OK(bs_alloc(f.a, 200, &s));
	OK(write_tag(f.bs, s, 5));
	OK(fx_reopen(&f));
	memset(back, 0, sizeof back);
	OK(bs_alloc_reserved_get(f.a, 0, back, n));
	CU_ASSERT_EQUAL(memcmp(buf, back, n), 0);
	OK(check_clean(f.a));
	fx_free(&f);
}
KIND_TEST(iface, reserved_bytes_round_trip_and_survive_reopen, iface_reserved)

static void iface_detect(enum bs_alloc_kind kind)
{
	struct fx f;
	enum bs_alloc_kind k;
	enum bs_alloc_kind want = kind == BS_ALLOC_LINEAR ? BS_ALLOC_NONE : kind;
	if (!fx_start(&f, kind, 0))
		return;
	OK(bs_alloc_detect(f.bs, &k));
	CU_ASSERT_EQUAL(k, want);
	CU_ASSERT_EQUAL(f.a->kind, kind);
	CU_ASSERT_EQUAL(bs_alloc_kind_parse(bs_alloc_kind_name(kind)), kind);
	CU_ASSERT_STRING_EQUAL(f.a->ops->name, bs_alloc_kind_name(kind));
	/* still so after reopen and after use (fx_open asserts the kind) */
	struct bs_slice s;
	OK(bs_alloc(f.a, 1234, &s));
	OK(fx_reopen(&f));
	OK(bs_alloc_detect(f.bs, &k));
	CU_ASSERT_EQUAL(k, want);
	/* create refuses a stack that is not empty */
	struct bs_alloc *other = NULL;
	CU_ASSERT(bs_alloc_create(f.bs, kind, NULL, &other) < 0);
	fx_free(&f);
}
KIND_TEST(iface, detect_names_the_kind_after_create, iface_detect)

static void iface_stats(enum bs_alloc_kind kind)
{
	struct fx f;
	struct bs_alloc_stats st0, st;
	struct bs_slice a, b;
	if (!fx_start(&f, kind, 0))
		return;
	bs_alloc_stats(f.a, &st0);
	CU_ASSERT_STRING_EQUAL(st0.name, bs_alloc_kind_name(kind));
	CU_ASSERT_EQUAL(st0.reserved_bytes, f.a->reserved_len);
	OK(bs_alloc(f.a, 500, &a));
	OK(bs_alloc(f.a, 700, &b));
	OK(bs_realloc(f.a, b, 900, &b));
	OK(bs_dealloc(f.a, b));
	OK(bs_dealloc(f.a, a));
	bs_alloc_stats(f.a, &st);
	CU_ASSERT_EQUAL(st.allocs - st0.allocs, 2);
	CU_ASSERT_EQUAL(st.reallocs - st0.reallocs, 1);
	CU_ASSERT_EQUAL(st.reallocs_in_place + st.reallocs_moved, st.reallocs);
	CU_ASSERT_EQUAL(st.deallocs - st0.deallocs, 2);
	CU_ASSERT(st.syncs > st0.syncs);
	CU_ASSERT(st.syncs > 0);
	CU_ASSERT(st.arena_start >= st.reserved_bytes);
	CU_ASSERT(st.n_extra >= 0 && st.n_extra <= BS_ALLOC_MAX_EXTRA);
	if (kind != BS_ALLOC_LINEAR)
		CU_ASSERT_EQUAL(strncmp(st.magic, kind == BS_ALLOC_GHOST ? "ALGT" :
					kind == BS_ALLOC_SLAB ? "ALSL" : "ALFF", 4), 0);
	fx_free(&f);
}
KIND_TEST(iface, stats_counters_move_with_the_operations, iface_stats)

/* live + free (+ per-block headers) account for the whole arena, and live
 * covers at least what the caller holds. */
static void iface_live(enum bs_alloc_kind kind)
{
	struct fx f;
	struct bs_alloc_stats st;
	struct bs_slice s[6];
	uint64_t held = 0;
	if (!fx_start(&f, kind, 256))
		return;
	for (int i = 0; i < 6; i++) {
		OK(bs_alloc(f.a, 100 + 300 * (uint64_t)i, &s[i]));
		held += s[i].len;
	}
	OK(bs_dealloc(f.a, s[1]));
	OK(bs_dealloc(f.a, s[3]));
	held -= s[1].len + s[3].len;
	bs_alloc_stats(f.a, &st);
	CU_ASSERT(st.live_bytes >= held);
	if (kind == BS_ALLOC_LINEAR) {
		/* no free list: the holes of s[1], s[3] stay live */
		CU_ASSERT_EQUAL(st.live_bytes, st.arena_bytes);
		CU_ASSERT(!st.live_blocks_known);
	} else if (kind == BS_ALLOC_FIRSTFIT) {
		/* four live blocks, each with a 24-byte header and footer */
		CU_ASSERT(st.live_blocks_known);
		CU_ASSERT_EQUAL(st.live_blocks, 4);
		CU_ASSERT_EQUAL(st.live_bytes + st.free_bytes + 24 * (4 + st.free_blocks),
				st.arena_bytes);
	} else {
		CU_ASSERT_EQUAL(st.live_bytes + st.free_bytes, st.arena_bytes);
		CU_ASSERT(st.free_bytes > 0);
		if (kind == BS_ALLOC_SLAB) {
			CU_ASSERT(st.live_blocks_known);
			CU_ASSERT_EQUAL(st.live_blocks * 256, st.live_bytes);
		} else {
			CU_ASSERT(!st.live_blocks_known);
		}
	}
	fx_free(&f);
}
KIND_TEST(iface, live_and_free_figures_account_for_the_arena, iface_live)

/* Slices the allocator could not have handed out get an error and leave
 * the image byte for byte as it was. */
static void iface_bad_slices(enum bs_alloc_kind kind)
{
	struct fx f;
	struct bs_slice a, b, out;
	uint8_t *before, *after;
	size_t nb, na;
	bool done = false;
	uint64_t st, len;
	if (!fx_start(&f, kind, 0))
		return;
	OK(bs_alloc(f.a, 300, &a));
	OK(write_tag(f.bs, a, 3));
	OK(bs_alloc(f.a, 300, &b));
	OK(write_tag(f.bs, b, 4));
	uint64_t plen = bstack_len(f.bs);
	const struct bs_slice bad[] = {
		{ 1, 10 },                 /* inside the allocator's header */
		{ plen + 4096, 10 },       /* past the end */
		{ plen - 8, 300 },         /* runs past the end */
		{ UINT64_MAX - 4, 100 },   /* wraps around */
		{ 5, 0 },                  /* zero length but not the null slice */
	};
	OK(bs_memdev_snapshot(f.dev, &before, &nb));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ctx_set("%s bad slice (%" PRIu64 ", %" PRIu64 ")", bs_alloc_kind_name(kind),
			bad[i].off, bad[i].len);
		EXPECT(bs_dealloc(f.a, bad[i]) < 0);
		EXPECT(bs_realloc(f.a, bad[i], 50, &out) < 0);
		EXPECT(bs_dealloc_bulk(f.a, &bad[i], 1) < 0);
		if (bad[i].len) {
			EXPECT(bs_alloc_extent(f.a, bad[i], &st, &len) < 0);
			EXPECT(bs_grow_in_place(f.a, bad[i], bad[i].len + 64, &out, &done) < 0);
		}
	}
	OK(bs_memdev_snapshot(f.dev, &after, &na));
	CU_ASSERT_EQUAL(na, nb);
	CU_ASSERT(na == nb && memcmp(before, after, na) == 0);
	free(before);
	free(after);
	OK(check_clean(f.a));
	CU_ASSERT_EQUAL(verify_tag(f.bs, a, 3, a.len, false), 0);
	CU_ASSERT_EQUAL(verify_tag(f.bs, b, 4, b.len, false), 0);
	fx_free(&f);
}
KIND_TEST(iface, impossible_slices_are_refused_and_change_nothing, iface_bad_slices)

/* ===================================================================== */
/* 5. a full disk (ENOSPC)                                                */
/* ===================================================================== */

/*
 * The device gets a capacity `slack` bytes above the image; an operation
 * that must extend the image past it fails with -ENOSPC.  Afterwards
 * check() is clean, every live allocation keeps its bytes, reclaim() finds
 * nothing (a clean failure leaks nothing: no seed documents a leak outside
 * a crash), the same holds after reopen, and with the capacity lifted the
 * same request succeeds.  Every slack from 0 up to what the request needs
 * is tried (each on a fresh image), so a failure at every step of a
 * multi-step path (header write, then extend, then ...) is reached.
 */
enum nospc_op { NOSPC_ALLOC, NOSPC_REALLOC_MID, NOSPC_REALLOC_TAIL, NOSPC_BULK,
	NOSPC_GROW_IN_PLACE };
static const char *const nospc_name[] = { "alloc", "realloc-grow (middle)",
					  "realloc-grow (tail)", "alloc_bulk",
					  "grow_in_place (tail)" };

#define NOSPC_BIG 6000

struct nospc {
	struct fx f;
	struct bs_slice s[8];
	uint64_t tag[8];
	int n;
};

static void nospc_add(struct nospc *z, struct bs_slice s, uint64_t tag)
{
	z->s[z->n] = s;
	z->tag[z->n] = tag;
	z->n++;
}

/* Live allocations a (300), b (2000), a freed hole (100), d (700, tail). */
static bool nospc_build(struct nospc *z, enum bs_alloc_kind kind)
{
	struct bs_slice a, b, c, d;
	memset(z, 0, sizeof *z);
	if (!fx_start(&z->f, kind, CRASH_SLAB_BLOCK))
		return false;
	OK(bs_alloc(z->f.a, 300, &a));
	OK(write_tag(z->f.bs, a, 1));
	OK(bs_alloc(z->f.a, 2000, &b));
	OK(write_tag(z->f.bs, b, 2));
	OK(bs_alloc(z->f.a, 100, &c));
	OK(write_tag(z->f.bs, c, 3));
	OK(bs_alloc(z->f.a, 700, &d));
	OK(write_tag(z->f.bs, d, 4));
	if (kind != BS_ALLOC_LINEAR) {   /* Linear cannot free a middle slice */
		OK(bs_dealloc(z->f.a, c));
	} else {
		nospc_add(z, c, 3);
	}
	nospc_add(z, a, 1);
	nospc_add(z, b, 2);
	nospc_add(z, d, 4);
	return true;
}

/* Every live slice holds its tag, check() is clean and reclaim() finds
 * exactly `leak` bytes. */
static int nospc_verify(struct nospc *z, uint64_t leak)
{
	struct bs_slice live[8];
	uint64_t got = UINT64_MAX;
	for (int i = 0; i < z->n; i++) {
		int rc = verify_tag(z->f.bs, z->s[i], z->tag[i], z->s[i].len, false);
		if (rc)
			return rc;
	}
	int rc = check_clean(z->f.a);
	if (!rc)
		rc = check_extents(z->f.a, z->s, (size_t)z->n);
	if (!rc)
		rc = bs_alloc_reclaim(z->f.a, live, sorted_live(z->s, (size_t)z->n, live), &got);
	if (!rc && got != leak) {
		fprintf(stderr, "\n  [%s] reclaim found %" PRIu64 " bytes, want %" PRIu64 "\n",
			g_ctx, got, leak);
		rc = -ENOTRECOVERABLE;
	}
	return rc;
}

/* Run op; on success record (and tag) the new slices. */
static int nospc_do(struct nospc *z, enum nospc_op op)
{
	static const uint64_t lens[3] = { 40, NOSPC_BIG, 90 };
	struct bs_slice out[3];
	int i = op == NOSPC_REALLOC_MID ? 1 : 2;   /* b, or the tail d */
	bool done = false;
	int rc;
	if (z->f.kind == BS_ALLOC_LINEAR)
		i = op == NOSPC_REALLOC_MID ? 2 : 3;
	switch (op) {
	case NOSPC_ALLOC:
		rc = bs_alloc(z->f.a, NOSPC_BIG, &out[0]);
		if (!rc)
			nospc_add(z, out[0], 5);
		break;
	case NOSPC_GROW_IN_PLACE:
		/* the tail grows in place or the disk is full: never "done"
		 * with a move, never a half-grown tail */
		rc = bs_grow_in_place(z->f.a, z->s[i], NOSPC_BIG, &out[0], &done);
		if (!rc && !done)
			rc = -ENOTRECOVERABLE;
		if (rc == -ENOSPC && done)
			rc = -ENOTRECOVERABLE;
		if (!rc && out[0].off != z->s[i].off)
			rc = -ENOTRECOVERABLE;
		if (!rc) {
			rc = verify_tag(z->f.bs, out[0], z->tag[i], z->s[i].len, false);
			z->s[i] = out[0];
			if (!rc)
				rc = write_tag(z->f.bs, out[0], z->tag[i]);
		}
		break;
	case NOSPC_REALLOC_MID:
	case NOSPC_REALLOC_TAIL:
		rc = bs_realloc(z->f.a, z->s[i], NOSPC_BIG, &out[0]);
		if (!rc) {
			/* the old bytes moved along; the rest is zero */
			rc = verify_tag(z->f.bs, out[0], z->tag[i], z->s[i].len, false);
			z->s[i] = out[0];
			if (!rc)
				rc = write_tag(z->f.bs, out[0], z->tag[i]);
		}
		break;
	default:
		rc = bs_alloc_bulk(z->f.a, lens, 3, out);
		for (int k = 0; !rc && k < 3; k++)
			nospc_add(z, out[k], 6 + (uint64_t)k);
		break;
	}
	for (int k = 0; !rc && k < z->n; k++)
		if (z->tag[k] >= 5)
			rc = write_tag(z->f.bs, z->s[k], z->tag[k]);
	return rc;
}

static void nospc_case(enum bs_alloc_kind kind, enum nospc_op op, uint64_t slack,
		       bool *succeeded)
{
	struct nospc z;
	if (!nospc_build(&z, kind))
		return;
	uint64_t img = BSTACK_HEADER_SIZE + bstack_len(z.f.bs);
	ctx_set("%s %s slack %" PRIu64, bs_alloc_kind_name(kind), nospc_name[op], slack);
	bs_memdev_set_capacity(z.f.dev, img + slack);
	int rc = nospc_do(&z, op);
	if (rc == 0) {
		*succeeded = true;
	} else {
		EXPECT(expect_rc(rc, -ENOSPC, "the op on a full disk", __LINE__));
		EXPECT(!bs_memdev_dead(z.f.dev));
		OK(nospc_verify(&z, 0));
		/* the image was not left longer than the limit allows */
		EXPECT(BSTACK_HEADER_SIZE + bstack_len(z.f.bs) <= img + slack);
		OK(fx_reopen(&z.f));
		OK(nospc_verify(&z, 0));
		/* with room again, the same request succeeds */
		bs_memdev_set_capacity(z.f.dev, 0);
		OK(nospc_do(&z, op));
	}
	OK(nospc_verify(&z, 0));
	OK(fx_reopen(&z.f));
	OK(nospc_verify(&z, 0));
	fx_free(&z.f);
}

static void nospc_test(enum bs_alloc_kind kind)
{
	if (!kind_built(kind)) {
		printf("skipped: not built ");
		return;
	}
	for (int op = NOSPC_ALLOC; op <= NOSPC_GROW_IN_PLACE; op++) {
		if (op == NOSPC_REALLOC_MID && kind == BS_ALLOC_LINEAR)
			continue;   /* -ENOTSUP: Linear grows its tail only */
		bool succeeded = false;
		int refused = 0;
		/* fine steps near 0 (headers, footers), coarser further out */
		for (uint64_t slack = 0; !succeeded && slack < 4 * NOSPC_BIG;
		     slack += slack < 128 ? 1 : slack < 1024 ? 8 : 64) {
			nospc_case(kind, (enum nospc_op)op, slack, &succeeded);
			refused += !succeeded;
		}
		ctx_set("%s %s", bs_alloc_kind_name(kind), nospc_name[op]);
		/* the request really needed the disk to grow */
		EXPECT(refused > 0);
		/* some slack is enough: the limit is the only obstacle */
		EXPECT(succeeded);
	}
}
KIND_TEST(nospc, growth_past_a_full_disk_fails_cleanly_and_leaks_nothing, nospc_test)

/* Allocate until the disk is full, then free half and allocate again: the
 * ENOSPC path of every size class (Slab's small blocks too) leaves every
 * live allocation intact and nothing leaked. */
static void nospc_fill(enum bs_alloc_kind kind)
{
	struct fx f;
	enum { MAXN = 400 };
	struct bs_slice s[MAXN], live[MAXN];
	uint64_t tag[MAXN], got;
	int n = 0, fails = 0;
	if (!fx_start(&f, kind, CRASH_SLAB_BLOCK))
		return;
	bs_memdev_set_capacity(f.dev, BSTACK_HEADER_SIZE + bstack_len(f.bs) + 48 * 1024);
	for (int round = 0; round < 2; round++) {
		while (n < MAXN && fails < 20) {
			uint64_t len = 1 + h_rand_below(h_rand_below(4) ? 200 : 3000);
			struct bs_slice x;
			int rc = bs_alloc(f.a, len, &x);
			if (rc == -ENOSPC) {
				fails++;
				continue;
			}
			OK(rc);
			tag[n] = 1000 + (uint64_t)n + 10000 * (uint64_t)round;
			s[n] = x;
			OK(write_tag(f.bs, x, tag[n]));
			n++;
		}
		ctx_set("%s fill round %d (%d live)", bs_alloc_kind_name(kind), round, n);
		EXPECT(fails > 0);
		for (int i = 0; i < n; i++)
			OK(verify_tag(f.bs, s[i], tag[i], s[i].len, false));
		OK(check_clean(f.a));
		OK(check_extents(f.a, s, (size_t)n));
		OK(bs_alloc_reclaim(f.a, live, sorted_live(s, (size_t)n, live), &got));
		EXPECT(got == 0);
		/* free every other one (Linear: from the tail, all it can free) */
		int k = 0;
		for (int i = 0; i < n; i++) {
			bool drop = kind == BS_ALLOC_LINEAR ? i >= n / 2 : (i & 1);
			if (drop && kind == BS_ALLOC_LINEAR)
				continue;
			if (drop) {
				OK(bs_dealloc(f.a, s[i]));
			} else {
				s[k] = s[i];
				tag[k++] = tag[i];
			}
		}
		if (kind == BS_ALLOC_LINEAR)
			for (int i = n - 1; i >= n / 2; i--)
				OK(bs_dealloc(f.a, s[i]));
		n = k;
		fails = 0;
		OK(fx_reopen(&f));
		OK(check_clean(f.a));
		for (int i = 0; i < n; i++)
			OK(verify_tag(f.bs, s[i], tag[i], s[i].len, false));
	}
	fx_free(&f);
}
KIND_TEST(nospc, filling_the_disk_then_freeing_keeps_every_allocation, nospc_fill)

static const struct h_test tests[] = {
	KIND_ENTRIES(iface, zero_length_alloc_is_the_null_slice_and_does_no_io),
	KIND_ENTRIES(iface, new_bytes_read_as_zero),
	KIND_ENTRIES(iface, reserved_bytes_round_trip_and_survive_reopen),
	KIND_ENTRIES(iface, detect_names_the_kind_after_create),
	KIND_ENTRIES(iface, stats_counters_move_with_the_operations),
	KIND_ENTRIES(iface, live_and_free_figures_account_for_the_arena),
	KIND_ENTRIES(iface, impossible_slices_are_refused_and_change_nothing),
	KIND_ENTRIES(model, 20000_ops_match_the_model),
	KIND_ENTRIES(crash, every_cut_point_keeps_live_data_and_leaks_only_where_documented),
	KIND_ENTRIES(crash, every_prefix_of_unsynced_writes_is_a_consistent_state),
	KIND_ENTRIES(crash, random_cuts_in_random_histories_keep_live_data),
	KIND_ENTRIES(threads, eight_threads_never_share_an_offset_or_lose_bytes),
	KIND_ENTRIES(nospc, growth_past_a_full_disk_fails_cleanly_and_leaks_nothing),
	KIND_ENTRIES(nospc, filling_the_disk_then_freeing_keeps_every_allocation),
};

H_MAIN("alloc_harness", tests)
