/*
 * test_crash.c — power loss at the volume level against an exact model of
 * what docs/design.md §4-§5 and volume.h promise (issue 9):
 *
 *   - random operation mixes cut at a random device operation, then a
 *     power cycle in a random failure mode of io.h (a prefix of the unsynced
 *     writes, a torn write, a reordered subset), checked against an
 *     in-memory model of every file's durable and possible states;
 *   - one operation that overflows a small journal, cut at every point;
 *   - a full disk under the journal's append, under the image growth a
 *     transaction needs and under the replay of a live journal;
 *   - a catalog record update torn by the device, falling back to the older
 *     version of the record.
 *
 * Like the volume suite it runs twice: plain, and with
 * BSTACKFS_TEST_JOURNAL=1 (a journal on a sibling device in the image's
 * power domain); the tests of the journal itself always have one, the
 * torn-record test never.  The randomized test prints its seed; replay one
 * with
 *   BSTACKFS_SEED=N ./build/tests/test_crash TEST_NAME
 * (CRASH_DEBUG=1 traces each operation and cut).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "catalog.h"
#include "harness.h"
#include "util.h"
#include "volume.h"

#define ROOT VOL_ROOT_INO

/* ---- the volume suite's helpers (tests/test_volume.c) -------------------- */

static const enum bs_alloc_kind all_kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_LINEAR, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB,
};
#define N_KINDS (sizeof all_kinds / sizeof all_kinds[0])

static bool kind_built(enum bs_alloc_kind k)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io;
	struct bstack *bs;
	struct bs_alloc *a;
	bool ok = false;
	if (k != BS_ALLOC_NONE && dev && bs_io_mem_open(dev, &io) == 0 && bstack_create(io, &bs) == 0) {
		int r = bs_alloc_create(bs, k, NULL, &a);
		if (r == 0)
			bs_alloc_close(a);
		ok = r != -ENOTSUP;
		bstack_close(bs);
	}
	bs_memdev_free(dev);
	return ok;
}

#define FOR_EACH_KIND(k) \
	for (size_t k##_i = 0; k##_i < N_KINDS; k##_i++) \
		for (enum bs_alloc_kind k = all_kinds[k##_i]; kind_built(k); k = BS_ALLOC_NONE)

static bool journaled(void)
{
	const char *e = getenv("BSTACKFS_TEST_JOURNAL");
	return e && *e == '1';
}

/* Which journal a test's open gets: the suite's (on with
 * BSTACKFS_TEST_JOURNAL=1), always one, or none. */
enum jmode { J_SUITE, J_ON, J_OFF };

/* A journal on dev's sibling (made on first use), as jm says. */
static void journal_on(struct bs_memdev *dev, struct vol_opts *o, enum jmode jm)
{
	struct bs_io *jio;
	if (jm == J_OFF || (jm == J_SUITE && !journaled()))
		return;
	struct bs_memdev *j = bs_memdev_sibling(dev);
	if (!j)
		j = bs_memdev_new_sibling(dev);
	CU_ASSERT_FATAL(j != NULL && bs_io_mem_open(j, &jio) == 0);
	o->journal_io = jio;
}

/* Open the volume on dev with o and the journal jm says; 0 or the error,
 * with the reason printed. */
static int try_open(struct bs_memdev *dev, struct vol_opts o, enum jmode jm, struct vol **v)
{
	struct bs_io *io;
	struct vol_error err = { "" };
	*v = NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	journal_on(dev, &o, jm);
	int r = vol_open_io(io, &o, v, &err);
	if (r)
		printf("\nvol_open_io: %d %s\n", r, err.msg);
	return r;
}

static struct vol *vopen(struct bs_memdev *dev, enum bs_alloc_kind k, bool create)
{
	struct vol *v;
	struct vol_opts o = { .allocator = k, .create = create, .uid = 1, .gid = 2 };
	CU_ASSERT_FATAL(try_open(dev, o, J_SUITE, &v) == 0);
	return v;
}

static void count_report(void *ctx, const char *msg)
{
	(*(int *)ctx)++;
	printf("\ncheck: %s\n", msg);
}

static int check_errors(struct vol *v)
{
	int n = 0;
	int r = vol_check(v, count_report, &n);
	return r < 0 ? r : n;
}

static uint64_t reclaimed_of(struct vol *v)
{
	struct vol_counters c;
	CU_ASSERT_EQUAL(vol_get_counters(v, &c), 0);
	return c.leaked_bytes_reclaimed;
}

static uint64_t ino_of(struct vol *v, uint64_t parent, const char *name)
{
	struct vol_attr a;
	return vol_lookup(v, parent, name, &a) == 0 ? a.ino : 0;
}

/* ---- the model ---------------------------------------------------------------
 *
 * What a crash may leave of a file (volume.h, docs/design.md §4-§5, with
 * commit_s = 0 in both modes):
 *
 *   - Metadata operations are durable on return, and every durable record
 *     of a file comes after a sync of its data ("a durable size never covers
 *     bytes that are not on disk"): a create, truncate or rename that
 *     returned, and vol_fsync / vol_release / vol_sync_all, leave the file
 *     durable as it then was, size and every byte.  That is g / gsz.
 *   - The writes since (w[0..nw)) are not durable.  A crash keeps the file
 *     as of some point j among them (its size after the first j writes: a
 *     durable record may have caught any later in-memory size, together
 *     with a sync of the bytes under it), and each byte under that size is
 *     the value it had at point j, or one that a later write put there
 *     (ext4's data=ordered: an overwrite may be old, new or a mix).
 *   - A file never written since its last durability point is exactly
 *     g / gsz.
 * The operation in flight at the cut is all or nothing: the whole volume
 * matches the model before it or the model after it.
 */

#define CM_FILES 16
#define CM_DIRS 3     /* the root, d1 in the root, d2 in d1 */

struct cm_write {
	uint64_t off;     /* the range the write changed, its hole included */
	size_t n;
	uint8_t *d;
};

struct cm_file {
	bool live;
	int dir;
	uint64_t ino;
	uint8_t *g;       /* at the last durability point */
	size_t gsz;
	struct cm_write *w;
	int nw;
	uint8_t *cur;     /* what reads see now */
	size_t csz;
};

struct cm {
	struct cm_file f[CM_FILES];
	bool dir_live[CM_DIRS];
	uint64_t dir_ino[CM_DIRS];
	/* a directory "pad" in the root that the model does not look into
	 * (records that fill the catalog: overflow_setup) */
	bool pad;
};

static const char *const dir_name[CM_DIRS] = { "", "d1", "d2" };
static const int dir_parent[CM_DIRS] = { 0, 0, 1 };

static void *xdup(const void *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	CU_ASSERT_FATAL(d != NULL);
	if (n)
		memcpy(d, p, n);
	return d;
}

static void cm_file_free(struct cm_file *f)
{
	for (int i = 0; i < f->nw; i++)
		free(f->w[i].d);
	free(f->w);
	free(f->g);
	free(f->cur);
	memset(f, 0, sizeof *f);
}

static void cm_free(struct cm *m)
{
	for (int i = 0; i < CM_FILES; i++)
		cm_file_free(&m->f[i]);
}

static void cm_clone(struct cm *dst, const struct cm *src)
{
	*dst = *src;
	for (int i = 0; i < CM_FILES; i++) {
		const struct cm_file *s = &src->f[i];
		struct cm_file *d = &dst->f[i];
		d->g = xdup(s->g, s->gsz);
		d->cur = xdup(s->cur, s->csz);
		d->w = xdup(s->w, (size_t)s->nw * sizeof *s->w);
		for (int k = 0; k < s->nw; k++)
			d->w[k].d = xdup(s->w[k].d, s->w[k].n);
	}
}

/* The file is durable as it is now. */
static void cm_durable(struct cm_file *f)
{
	for (int i = 0; i < f->nw; i++)
		free(f->w[i].d);
	free(f->w);
	f->w = NULL;
	f->nw = 0;
	free(f->g);
	f->g = xdup(f->cur, f->csz);
	f->gsz = f->csz;
}

static void cm_resize(uint8_t **b, size_t *sz, size_t n)
{
	uint8_t *nb = realloc(*b, n ? n : 1);
	CU_ASSERT_FATAL(nb != NULL);
	if (n > *sz)
		memset(nb + *sz, 0, n - *sz);
	*b = nb;
	*sz = n;
}

/* Apply write (off, n, data) to bytes *b of size *sz. */
static void apply_write(uint8_t **b, size_t *sz, uint64_t off, size_t n, const uint8_t *d)
{
	if (off + n > *sz)
		cm_resize(b, sz, off + n);
	memcpy(*b + off, d, n);
}

static void cm_write(struct cm_file *f, uint64_t off, size_t n, const uint8_t *data)
{
	/* the range the write changes: a hole past the size reads as zeros */
	uint64_t start = off > f->csz ? f->csz : off;
	struct cm_write w = { start, (size_t)(off + n - start), NULL };
	w.d = calloc(1, w.n);
	CU_ASSERT_FATAL(w.d != NULL);
	memcpy(w.d + (off - start), data, n);
	apply_write(&f->cur, &f->csz, w.off, w.n, w.d);
	f->w = realloc(f->w, (size_t)(f->nw + 1) * sizeof *f->w);
	CU_ASSERT_FATAL(f->w != NULL);
	f->w[f->nw++] = w;
}

/* Is (got, n) a state the model allows for file f after a crash? */
static bool cm_file_ok(const struct cm_file *f, const uint8_t *got, size_t n)
{
	if (f->nw == 0)
		return n == f->gsz && (n == 0 || memcmp(got, f->g, n) == 0);
	uint8_t *val = xdup(f->g, f->gsz);
	size_t vsz = f->gsz;
	bool ok = false;
	for (int j = 0; j <= f->nw && !ok; j++) {
		if (j > 0)
			apply_write(&val, &vsz, f->w[j - 1].off, f->w[j - 1].n, f->w[j - 1].d);
		if (vsz != n)
			continue;
		ok = true;
		for (size_t b = 0; b < n && ok; b++) {
			if (got[b] == val[b])
				continue;
			ok = false;
			for (int m = j; m < f->nw && !ok; m++)
				ok = b >= f->w[m].off && b < f->w[m].off + f->w[m].n &&
				     f->w[m].d[b - f->w[m].off] == got[b];
		}
	}
	free(val);
	return ok;
}

struct cm_ent {
	char name[VOL_NAME_MAX + 1];
	struct vol_attr a;
};

struct cm_list {
	struct cm_ent e[CM_FILES + CM_DIRS + 4];
	int n;
	bool overflow;
};

static int cm_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct cm_list *l = ctx;
	(void)pos;
	if (l->n == (int)(sizeof l->e / sizeof l->e[0])) {
		l->overflow = true;
		return 1;
	}
	snprintf(l->e[l->n].name, sizeof l->e[l->n].name, "%s", name);
	l->e[l->n++].a = *a;
	return 0;
}

/* Does the volume match model m (verbose: say why not)?  Fills in the
 * inode numbers of m's directories and files. */
static bool cm_matches(struct vol *v, struct cm *m, bool verbose)
{
	char name[16];
	for (int d = 1; d < CM_DIRS; d++) {
		uint64_t p = m->dir_live[dir_parent[d]] ? m->dir_ino[dir_parent[d]] : 0;
		uint64_t ino = p ? ino_of(v, p, dir_name[d]) : 0;
		if ((ino != 0) != m->dir_live[d]) {
			if (verbose)
				printf("\ndirectory %s: %s\n", dir_name[d],
				       ino ? "exists, the model has none" : "missing");
			return false;
		}
		m->dir_ino[d] = ino;
	}
	for (int d = 0; d < CM_DIRS; d++) {
		if (!m->dir_live[d])
			continue;
		struct cm_list l = { .n = 0 };
		int want = 0;
		CU_ASSERT_EQUAL(vol_readdir(v, m->dir_ino[d], 0, cm_fill, &l), 0);
		for (int i = 0; i < CM_FILES; i++)
			want += m->f[i].live && m->f[i].dir == d;
		for (int c = 1; c < CM_DIRS; c++)
			want += m->dir_live[c] && dir_parent[c] == d;
		want += d == 0 && m->pad;
		if (l.overflow || l.n != want) {
			if (verbose)
				printf("\ndirectory %d holds %d entries, the model %d\n", d, l.n, want);
			return false;
		}
	}
	for (int i = 0; i < CM_FILES; i++) {
		struct cm_file *f = &m->f[i];
		if (!f->live)
			continue;
		snprintf(name, sizeof name, "f%d", i);
		struct vol_attr a;
		if (vol_lookup(v, m->dir_ino[f->dir], name, &a) != 0 || !S_ISREG(a.mode)) {
			if (verbose)
				printf("\nfile %s/%s: missing\n", dir_name[f->dir], name);
			return false;
		}
		f->ino = a.ino;
		uint8_t *b = malloc(a.size + 1);
		CU_ASSERT_FATAL(b != NULL);
		bool ok = vol_read(v, a.ino, b, a.size + 1, 0) == (ssize_t)a.size &&
			  cm_file_ok(f, b, a.size);
		free(b);
		if (!ok) {
			if (verbose) {
				printf("\nfile %s/%s: %llu bytes, not a state the model allows "
				       "(durable %zu bytes, %d writes since, now %zu bytes)\n",
				       dir_name[f->dir], name, (unsigned long long)a.size, f->gsz,
				       f->nw, f->csz);
				for (int k = 0; k < f->nw; k++)
					printf("  write %d: [%llu, %llu)\n", k,
					       (unsigned long long)f->w[k].off,
					       (unsigned long long)(f->w[k].off + f->w[k].n));
				if (getenv("CRASH_DEBUG")) {
					b = malloc(a.size + 1);
					vol_read(v, a.ino, b, a.size + 1, 0);
					size_t lo = SIZE_MAX, hi = 0;
					for (size_t x = 0; x < a.size && x < f->gsz; x++)
						if (b[x] != f->g[x]) {
							lo = x < lo ? x : lo;
							hi = x;
						}
					printf("  differs from the durable bytes in [%zu, %zu]\n", lo, hi);
					free(b);
				}
			}
			return false;
		}
	}
	return true;
}

/* Does every live file read back as the model's current bytes? */
static bool cm_current_ok(struct vol *v, const struct cm *m, int *which)
{
	for (int i = 0; i < CM_FILES; i++) {
		const struct cm_file *f = &m->f[i];
		if (!f->live)
			continue;
		uint8_t *b = malloc(f->csz + 1);
		CU_ASSERT_FATAL(b != NULL);
		bool ok = vol_read(v, f->ino, b, f->csz + 1, 0) == (ssize_t)f->csz &&
			  (f->csz == 0 || memcmp(b, f->cur, f->csz) == 0);
		if (!ok && getenv("CRASH_DEBUG"))
			for (size_t x = 0; x < f->csz; x++)
				if (b[x] != f->cur[x]) {
					size_t y = x;
					while (y < f->csz && b[y] != f->cur[y])
						y++;
					printf("\n  f%d differs in [%zu, %zu)", i, x, y);
					x = y;
				}
		free(b);
		if (!ok) {
			*which = i;
			return false;
		}
	}
	return true;
}

/* After a verified recovery: every file is durable as read back. */
static void cm_adopt(struct vol *v, struct cm *m)
{
	for (int i = 0; i < CM_FILES; i++) {
		struct cm_file *f = &m->f[i];
		if (!f->live)
			continue;
		struct vol_attr a;
		CU_ASSERT_FATAL(vol_getattr(v, f->ino, &a) == 0);
		free(f->cur);
		f->cur = malloc(a.size + 1);
		CU_ASSERT_FATAL(f->cur != NULL);
		f->csz = a.size;
		CU_ASSERT(vol_read(v, f->ino, f->cur, a.size + 1, 0) == (ssize_t)a.size);
		cm_durable(f);
	}
}

/* ---- the operations ---------------------------------------------------------- */

enum cm_kind {
	OP_CREATE, OP_WRITE, OP_TRUNCATE, OP_RENAME, OP_UNLINK, OP_MKDIR, OP_RELEASE,
	OP_FSYNC, OP_SYNC, OP_CLOSE,
};

static const char *const op_name[] = {
	"create", "write", "truncate", "rename", "unlink", "mkdir", "release", "fsync",
	"sync", "close",
};

struct cm_op {
	enum cm_kind kind;
	int i, j;         /* file (name index); rename: the new name */
	int dir;          /* create, rename: the directory; mkdir: which */
	uint64_t off;
	size_t n;         /* write: bytes; truncate: the size */
	uint8_t *data;
	uint64_t ino;     /* create, mkdir: the new inode (0 if unknown) */
};

/* The model after op succeeded. */
static void cm_apply(struct cm *m, const struct cm_op *op)
{
	struct cm_file *f = op->i >= 0 ? &m->f[op->i] : NULL;
	switch (op->kind) {
	case OP_CREATE:
		cm_file_free(f);
		f->live = true;
		f->dir = op->dir;
		f->ino = op->ino;
		break;
	case OP_WRITE:
		cm_write(f, op->off, op->n, op->data);
		break;
	case OP_TRUNCATE:
		cm_resize(&f->cur, &f->csz, op->n);
		cm_durable(f);
		break;
	case OP_RENAME:
		cm_durable(f);
		if (op->j != op->i) {
			cm_file_free(&m->f[op->j]);
			m->f[op->j] = *f;
			memset(f, 0, sizeof *f);
			f = &m->f[op->j];
		}
		f->dir = op->dir;
		break;
	case OP_UNLINK:
		cm_file_free(f);
		break;
	case OP_MKDIR:
		m->dir_live[op->dir] = true;
		m->dir_ino[op->dir] = op->ino;
		break;
	case OP_RELEASE:
	case OP_FSYNC:
		cm_durable(f);
		break;
	case OP_SYNC:
	case OP_CLOSE:
		for (int i = 0; i < CM_FILES; i++)
			if (m->f[i].live)
				cm_durable(&m->f[i]);
		break;
	}
}

static int pick(const struct cm *m, bool live)
{
	int cand[CM_FILES], n = 0;
	for (int i = 0; i < CM_FILES; i++)
		if (m->f[i].live == live)
			cand[n++] = i;
	return n ? cand[h_rand_below((uint64_t)n)] : -1;
}

static int pick_dir(const struct cm *m)
{
	int d;
	do
		d = (int)h_rand_below(CM_DIRS);
	while (!m->dir_live[d]);
	return d;
}

/* A random operation that is valid in model m (it must succeed unless the
 * power is cut); false when the drawn kind has nothing to act on. */
static bool cm_draw(const struct cm *m, struct cm_op *op, uint64_t tag)
{
	memset(op, 0, sizeof *op);
	op->i = op->j = -1;
	uint64_t x = h_rand_below(100);
	op->kind = x < 12 ? OP_CREATE : x < 45 ? OP_WRITE : x < 55 ? OP_TRUNCATE :
		   x < 65 ? OP_RENAME : x < 72 ? OP_UNLINK : x < 75 ? OP_MKDIR :
		   x < 87 ? OP_RELEASE : x < 96 ? OP_FSYNC : OP_SYNC;
	switch (op->kind) {
	case OP_CREATE:
		if ((op->i = pick(m, false)) < 0)
			return false;
		op->dir = pick_dir(m);
		return true;
	case OP_MKDIR:
		for (int d = 1; d < CM_DIRS; d++)
			if (!m->dir_live[d] && m->dir_live[dir_parent[d]]) {
				op->dir = d;
				return true;
			}
		return false;
	case OP_SYNC:
		return true;
	default:
		break;
	}
	if ((op->i = pick(m, true)) < 0)
		return false;
	const struct cm_file *f = &m->f[op->i];
	switch (op->kind) {
	case OP_WRITE:
		/* mostly small writes near the end; now and then one past
		 * VOL_JOURNAL_DATA_MAX (the journal's barrier path) */
		if (h_rand_below(16) == 0) {
			op->off = h_rand_below(f->csz + 1);
			op->n = 200000 + (size_t)h_rand_below(120000);
		} else {
			op->off = h_rand_below(f->csz + 4000);
			op->n = 1 + (size_t)h_rand_below(6000);
		}
		op->data = malloc(op->n);
		CU_ASSERT_FATAL(op->data != NULL);
		h_pattern(op->data, op->n, tag, op->off);
		return true;
	case OP_TRUNCATE:
		op->n = h_rand_below(4) == 0 ? 0 : (size_t)h_rand_below(30000);
		return true;
	case OP_RENAME:
		op->j = (int)h_rand_below(CM_FILES);
		op->dir = m->f[op->j].live && op->j != op->i ? m->f[op->j].dir : pick_dir(m);
		return !(op->j == op->i && op->dir == f->dir);
	default:
		return true;
	}
}

static int cm_run(struct vol *v, const struct cm *m, struct cm_op *op)
{
	char name[16], name2[16];
	const struct cm_file *f = op->i >= 0 ? &m->f[op->i] : NULL;
	if (op->i >= 0)
		snprintf(name, sizeof name, "f%d", op->i);
	switch (op->kind) {
	case OP_CREATE: {
		struct vol_attr a;
		int r = vol_create(v, m->dir_ino[op->dir], name, 0644, 0, 0, &a);
		op->ino = r ? 0 : a.ino;
		return r;
	}
	case OP_WRITE: {
		ssize_t w = vol_write(v, f->ino, op->data, op->n, op->off);
		return w == (ssize_t)op->n ? 0 : w < 0 ? (int)w : -EIO;
	}
	case OP_TRUNCATE:
		return vol_truncate(v, f->ino, op->n);
	case OP_RENAME:
		snprintf(name2, sizeof name2, "f%d", op->j);
		return vol_rename(v, m->dir_ino[f->dir], name, m->dir_ino[op->dir], name2, 0);
	case OP_UNLINK:
		return vol_unlink(v, m->dir_ino[f->dir], name);
	case OP_MKDIR: {
		struct vol_attr a;
		int r = vol_mkdir(v, m->dir_ino[dir_parent[op->dir]], dir_name[op->dir], 0755,
				  0, 0, &a);
		op->ino = r ? 0 : a.ino;
		return r;
	}
	case OP_RELEASE:
		return vol_release(v, f->ino);
	case OP_FSYNC:
		return vol_fsync(v, f->ino);
	case OP_SYNC:
		return vol_sync_all(v);
	case OP_CLOSE:
		return vol_close(v);
	}
	return -EINVAL;
}

static const char *const mode_name[] = { "prefix", "torn", "subset" };

/*
 * Random operations cut at a random device operation, then a power cycle
 * in a random failure mode: the reopen must succeed, the allocator check
 * be clean, every file be in a state the model allows with the operation
 * in flight all or nothing, and a second reopen find nothing left to
 * reclaim.  Each round goes on from the image the last one recovered.
 */
static void random_operations_cut_in_every_failure_mode_match_the_model(void)
{
	uint64_t seed = h_rng_seed();
	h_rng_reset(seed);   /* the same sequence alone or in the suite */
	int rounds = 120, max_ops = 40;
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct cm m = { .dir_live = { true }, .dir_ino = { ROOT } };
		CU_ASSERT_EQUAL(vol_close(v), 0);
		int bad = 0;
		for (int round = 0; round < rounds && !bad; round++) {
			v = vopen(dev, k, false);
			CU_ASSERT_FATAL(cm_matches(v, &m, true));
			uint64_t cut = 1 + h_rand_below(220);
			bs_memdev_fail_at(dev, cut);
			struct cm_op op = { .i = -1 };
			int r = 0, done = 0;
			bool closed = false;
			for (int n = 0; n < max_ops; n++) {
				if (!cm_draw(&m, &op, (uint64_t)round << 16 | (uint64_t)n)) {
					free(op.data);
					continue;
				}
				r = cm_run(v, &m, &op);
				if (getenv("CRASH_DEBUG"))
					printf("\n  %s f%d -> f%d dir %d off %llu n %zu: %d", op_name[op.kind],
					       op.i, op.j, op.dir, (unsigned long long)op.off, op.n, r);
				if (r)
					break;
				cm_apply(&m, &op);
				free(op.data);
				op.data = NULL;
				done++;
				int which = -1;
				if (!bs_memdev_dead(dev) && !cm_current_ok(v, &m, &which)) {
					printf("\n%s round %d: after %s of f%d, f%d does not read back "
					       "as written\n", bs_alloc_kind_name(k), round,
					       op_name[op.kind], op.i, which);
					CU_FAIL("a file does not read back as written");
					bad++;
					break;
				}
				if (bs_memdev_dead(dev))
					break;
			}
			if (!r && !bs_memdev_dead(dev)) {
				/* the cut may fall into the unmount, or never */
				op = (struct cm_op){ .kind = OP_CLOSE, .i = -1 };
				r = cm_run(v, &m, &op);
				closed = true;
				if (!r)
					cm_apply(&m, &op);
			}
			if (r && !bs_memdev_dead(dev)) {
				printf("\n%s round %d: %s failed with %d, the power on\n",
				       bs_alloc_kind_name(k), round, op_name[op.kind], r);
				CU_FAIL("an operation failed without a power cut");
				bad++;
			}
			if (!closed)
				vol_close(v);
			/* the failure mode */
			struct bs_memdev *j = bs_memdev_sibling(dev);
			uint64_t pend = bs_memdev_pending(dev);
			if (j && bs_memdev_pending(j) > pend)
				pend = bs_memdev_pending(j);
			/* io.h: journal=off relies on unsynced writes reaching the
			 * disk in issue order (a prefix, the last maybe torn); only
			 * the journal claims to survive any subset */
			enum bs_pc_mode mode = (enum bs_pc_mode)h_rand_below(journaled() ? 3 : 2);
			uint64_t param = h_rand_below(pend + 2), pseed = h_rand();
			if (mode == BS_PC_PREFIX && param == pend + 1)
				param = UINT64_MAX;
			if (getenv("CRASH_DEBUG"))
				printf("\n%s round %d: cut %llu, r %d in %s after %d ops, closed %d, "
				       "dead %d, pending %llu, %s %llu", bs_alloc_kind_name(k), round,
				       (unsigned long long)cut, r, op_name[op.kind], done, closed,
				       bs_memdev_dead(dev), (unsigned long long)pend, mode_name[mode],
				       (unsigned long long)param);
			bs_memdev_power_cycle_mode(dev, mode, param, pseed);

			struct vol_opts o = { 0 };
			if (try_open(dev, o, J_SUITE, &v)) {
				printf("%s round %d: cut at %llu in %s after %d ops, %s %llu: "
				       "reopen refused\n", bs_alloc_kind_name(k), round,
				       (unsigned long long)cut, op_name[op.kind], done,
				       mode_name[mode], (unsigned long long)param);
				CU_FAIL("the reopen after a crash failed");
				bad++;
				free(op.data);
				break;
			}
			/* before the operation in flight, or after it */
			bool ok = !r ? cm_matches(v, &m, false) : false;
			if (r) {
				struct cm after;
				cm_clone(&after, &m);
				cm_apply(&after, &op);
				if (cm_matches(v, &after, false)) {
					cm_free(&m);
					m = after;
					ok = true;
				} else {
					cm_free(&after);
					ok = cm_matches(v, &m, false);
				}
			}
			if (!ok) {
				printf("\n%s round %d: cut at %llu in %s (file %d) after %d ops, "
				       "%s %llu seed %llu:", bs_alloc_kind_name(k), round,
				       (unsigned long long)cut, r ? op_name[op.kind] : "nothing",
				       op.i, done, mode_name[mode], (unsigned long long)param,
				       (unsigned long long)pseed);
				cm_matches(v, &m, true);
				CU_FAIL("the volume is neither before nor after the cut operation");
				bad++;
			}
			free(op.data);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			cm_adopt(v, &m);
			CU_ASSERT_EQUAL(vol_close(v), 0);
			/* the first reopen reclaimed what the crash leaked */
			v = vopen(dev, k, false);
			uint64_t again = reclaimed_of(v);
			if (again) {
				printf("\n%s round %d: the second reopen reclaimed %llu bytes\n",
				       bs_alloc_kind_name(k), round, (unsigned long long)again);
				bad++;
			}
			CU_ASSERT_EQUAL(again, 0);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			CU_ASSERT(cm_matches(v, &m, true));
			CU_ASSERT_EQUAL(vol_close(v), 0);
		}
		if (bad)
			printf("\n(seed %llu: replay with BSTACKFS_SEED=%llu)\n",
			       (unsigned long long)seed, (unsigned long long)seed);
		cm_free(&m);
		bs_memdev_free(dev);
	}
}

/*
 * A write past the end grows the file in place and puts its bytes into the
 * grown space before any record names it; a crash then leaves the record's
 * shorter slice, with those bytes in its block past its length (the
 * allocator's rounding: GhostTree's 32-byte granule, FirstFit's 8 bytes, a
 * Slab block).  A later write further on must still read the hole as zeros.
 * (Found by the randomized loop above: GhostTree's in-place growth trusted
 * those bytes to be zero.)
 */
static void a_hole_over_bytes_a_crash_left_past_the_length_reads_as_zeros(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		uint8_t b[300];
		CU_ASSERT_FATAL(vol_create(v, ROOT, "f", 0644, 0, 0, &a) == 0);
		uint64_t f = a.ino;
		h_pattern(b, 100, 1, 0);
		CU_ASSERT_EQUAL(vol_write(v, f, b, 100, 0), 100);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);   /* durable, trimmed to 100 */
		h_pattern(b, 20, 2, 100);
		CU_ASSERT_EQUAL(vol_write(v, f, b, 20, 100), 20);
		/* another operation makes those 20 bytes reach the disk (a sync;
		 * with the journal, a commit), not f's record */
		CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "d", 0755, 0, 0, &a), 0);
		bs_memdev_fail_at(dev, 1);
		vol_close(v);
		bs_memdev_power_cycle(dev, UINT64_MAX);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.size, 100);
		h_pattern(b, 10, 3, 200);
		CU_ASSERT_EQUAL(vol_write(v, f, b, 10, 200), 10);
		CU_ASSERT_EQUAL(vol_read(v, f, b, sizeof b, 0), 210);
		CU_ASSERT(h_pattern_ok(b, 100, 1, 0));
		bool zeros = h_all_zero(b + 100, 100);
		if (!zeros)
			printf("\n%s: the hole after a crash holds old bytes\n", bs_alloc_kind_name(k));
		CU_ASSERT(zeros);
		CU_ASSERT(h_pattern_ok(b + 200, 10, 3, 200));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

/*
 * vol_release is a durability point (volume.h: data written by vol_write is
 * durable after vol_fsync, vol_release, vol_sync_all and vol_close), with
 * the journal too, where a FUSE flush usually came first: without one, the
 * power cut right after the release returned loses nothing.
 */
static void a_release_without_a_flush_makes_the_data_durable_on_return(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		uint8_t b[5000];
		CU_ASSERT_FATAL(vol_create(v, ROOT, "f", 0644, 0, 0, &a) == 0);
		uint64_t f = a.ino;
		h_pattern(b, sizeof b, 7, 0);
		CU_ASSERT_EQUAL(vol_write(v, f, b, sizeof b, 0), (ssize_t)sizeof b);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		/* the power goes at the very next device operation */
		bs_memdev_fail_at(dev, 1);
		vol_close(v);
		bs_memdev_power_cycle(dev, 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.size, sizeof b);
		memset(b, 0, sizeof b);
		CU_ASSERT_EQUAL(vol_read(v, f, b, sizeof b, 0), (ssize_t)sizeof b);
		CU_ASSERT(h_pattern_ok(b, sizeof b, 7, 0));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}


/* ---- one operation that overflows a small journal -------------------------- */

/* A key's value in the control file's text (vol_stats_text); -1 if absent. */
static int64_t stat_of(struct vol *v, const char *key)
{
	char *buf, *p;
	size_t len, kl = strlen(key);
	int64_t val = -1;
	CU_ASSERT_FATAL(vol_stats_text(v, &buf, &len) == 0);
	for (p = buf; p && p < buf + len; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			val = strtoll(p + kl + 1, NULL, 10);
			break;
		}
	free(buf);
	return val;
}

/* Both devices of the power domain, saved and restored. */
struct snap {
	uint8_t *img, *jrn;
	size_t img_len, jrn_len;
};

static void snap_take(struct bs_memdev *dev, struct snap *s)
{
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &s->img, &s->img_len) == 0);
	CU_ASSERT_FATAL(bs_memdev_snapshot(bs_memdev_sibling(dev), &s->jrn, &s->jrn_len) == 0);
}

static void snap_load(struct bs_memdev *dev, const struct snap *s)
{
	CU_ASSERT_FATAL(bs_memdev_load(dev, s->img, s->img_len) == 0);
	CU_ASSERT_FATAL(bs_memdev_load(bs_memdev_sibling(dev), s->jrn, s->jrn_len) == 0);
}

static void snap_free(struct snap *s)
{
	free(s->img);
	free(s->jrn);
}

static uint64_t dev_ops(struct bs_memdev *dev)
{
	struct bs_memdev *j = bs_memdev_sibling(dev);
	return bs_memdev_writes(dev) + bs_memdev_syncs(dev) +
	       (j ? bs_memdev_writes(j) + bs_memdev_syncs(j) : 0);
}

static void dev_reset(struct bs_memdev *dev)
{
	bs_memdev_reset_counts(dev);
	if (bs_memdev_sibling(dev))
		bs_memdev_reset_counts(bs_memdev_sibling(dev));
}

/* Lose the power after a cut at device operation n, in one of four ways:
 * 0 nothing unsynced kept, 1 everything kept, 2 a torn write, 3 a seeded
 * subset of the pending writes (the last two: as the disk model allows,
 * core/io.h). */
static void power_cycle(struct bs_memdev *dev, uint64_t n, int mode)
{
	struct bs_memdev *j = bs_memdev_sibling(dev);
	uint64_t pend = bs_memdev_pending(dev);
	if (j && bs_memdev_pending(j) > pend)
		pend = bs_memdev_pending(j);
	if (mode == 0)
		bs_memdev_power_cycle(dev, 0);
	else if (mode == 1)
		bs_memdev_power_cycle(dev, UINT64_MAX);
	else
		bs_memdev_power_cycle_mode(dev, mode == 2 ? BS_PC_TORN : BS_PC_SUBSET,
					   n % (pend + 1), n * 7919 + (uint64_t)mode);
}

#define SEQ_MAX 4

/* An operation sequence and the models after each of its steps: ms[0]
 * before, ms[i] after the first i operations. */
struct seq {
	struct cm_op op[SEQ_MAX];
	int n;
	struct cm ms[SEQ_MAX + 1];
};

static void seq_models(struct seq *q, const struct cm *m0)
{
	cm_clone(&q->ms[0], m0);
	for (int i = 0; i < q->n; i++) {
		cm_clone(&q->ms[i + 1], &q->ms[i]);
		cm_apply(&q->ms[i + 1], &q->op[i]);
	}
}

static void seq_free(struct seq *q)
{
	for (int i = 0; i <= q->n; i++)
		cm_free(&q->ms[i]);
	for (int i = 0; i < q->n; i++)
		free(q->op[i].data);
}

/* Run q on v until an operation fails; the number that succeeded. */
static int seq_run(struct vol *v, struct seq *q, struct cm *m, int *err)
{
	*err = 0;
	for (int i = 0; i < q->n; i++) {
		if ((*err = cm_run(v, m, &q->op[i])))
			return i;
		cm_apply(m, &q->op[i]);
	}
	return q->n;
}

/* Which model of q the volume matches: -1 for none. */
static int seq_match(struct vol *v, struct seq *q)
{
	for (int i = q->n; i >= 0; i--)
		if (cm_matches(v, &q->ms[i], false))
			return i;
	return -1;
}

/* After a crash (or not): the reopen, a model matched (at least `least`
 * steps of q), a clean check, and a second reopen with nothing to reclaim
 * and the same state.  False on a failure (reported). */
static bool verify_after(struct bs_memdev *dev, enum bs_alloc_kind k, struct vol_opts o,
			 struct seq *q, int least, const char *what)
{
	struct vol *v;
	if (try_open(dev, o, J_ON, &v)) {
		printf("%s/%s: the reopen failed\n", what, bs_alloc_kind_name(k));
		CU_FAIL("the reopen failed");
		return false;
	}
	int got = seq_match(v, q);
	if (got < least) {
		printf("\n%s/%s: the volume matches %s (at least %d of %d steps wanted):",
		       what, bs_alloc_kind_name(k), got < 0 ? "no model" : "too early a model",
		       least, q->n);
		cm_matches(v, &q->ms[q->n], true);
		cm_matches(v, &q->ms[0], true);
		CU_FAIL("the volume is not in a state before or after one of the operations");
		vol_close(v);
		return false;
	}
	bool ok = check_errors(v) == 0;
	CU_ASSERT(ok);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
	uint64_t again = reclaimed_of(v);
	if (again)
		printf("\n%s/%s: the second reopen reclaimed %llu bytes\n", what,
		       bs_alloc_kind_name(k), (unsigned long long)again);
	ok = ok && again == 0 && check_errors(v) == 0 && cm_matches(v, &q->ms[got], true);
	CU_ASSERT(ok);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	return ok;
}

/*
 * Cut q at every device operation of its uncut run, each cut under four
 * power cycles (nothing unsynced kept, everything kept, a torn write, a
 * seeded subset: the journal is on), and verify after each: the operation
 * in flight all or nothing, those before it whole.
 */
static void seq_cut_everywhere(struct bs_memdev *dev, enum bs_alloc_kind k, struct vol_opts o,
			       const struct snap *s0, struct seq *q, uint64_t total,
			       const char *what)
{
	int bad = 0;
	for (uint64_t n = 1; n <= total && bad < 3; n++) {
		for (int mode = 0; mode < 4 && bad < 3; mode++) {
			struct vol *v;
			struct cm m;
			int err;
			snap_load(dev, s0);
			CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
			cm_clone(&m, &q->ms[0]);
			cm_matches(v, &m, false);   /* the inode numbers */
			bs_memdev_fail_at(dev, n);
			int done = seq_run(v, q, &m, &err);
			cm_free(&m);
			if (err && !bs_memdev_dead(dev)) {
				printf("\n%s/%s: step %d failed with %d, the power on\n", what,
				       bs_alloc_kind_name(k), done, err);
				CU_FAIL("an operation failed without a power cut");
				bad++;
			}
			vol_close(v);
			power_cycle(dev, n, mode);
			if (!verify_after(dev, k, o, q, done, what)) {
				printf("%s/%s: cut at device operation %llu of %llu, mode %d, after "
				       "%d of %d steps\n", what, bs_alloc_kind_name(k),
				       (unsigned long long)n, (unsigned long long)total, mode, done,
				       q->n);
				bad++;
			}
		}
	}
}

#define SMALL_JOURNAL (16ULL << 10)

/* The image of the journal-overflow tests: files f0 .. f(nfiles-1) in the
 * root, f0 and f1 with data (5000 and 3000 bytes), and with npad > 0 a
 * directory "pad" of npad empty files, all durable; the journal on with
 * journal_bytes = SMALL_JOURNAL. */
static struct bs_memdev *overflow_setup(enum bs_alloc_kind k, int nfiles, int npad,
					struct cm *m, struct vol_opts *o)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v;
	*o = (struct vol_opts){ .allocator = k, .create = true, .journal_bytes = SMALL_JOURNAL };
	CU_ASSERT_FATAL(try_open(dev, *o, J_ON, &v) == 0);
	o->create = false;
	memset(m, 0, sizeof *m);
	m->dir_live[0] = true;
	m->dir_ino[0] = ROOT;
	for (int i = 0; i < nfiles; i++) {
		struct cm_op op = { .kind = OP_CREATE, .i = i, .j = -1 };
		CU_ASSERT_FATAL(cm_run(v, m, &op) == 0);
		cm_apply(m, &op);
		if (i < 2) {
			struct cm_op w = { .kind = OP_WRITE, .i = i, .j = -1,
					   .n = i ? 3000 : 5000 };
			w.data = malloc(w.n);
			h_pattern(w.data, w.n, 100 + (uint64_t)i, 0);
			struct cm_op rel = { .kind = OP_RELEASE, .i = i, .j = -1 };
			CU_ASSERT_FATAL(cm_run(v, m, &w) == 0 && cm_run(v, m, &rel) == 0);
			cm_apply(m, &w);
			cm_apply(m, &rel);
			free(w.data);
		}
	}
	if (npad) {
		struct vol_attr a;
		char name[16];
		CU_ASSERT_FATAL(vol_mkdir(v, ROOT, "pad", 0755, 0, 0, &a) == 0);
		for (int i = 0; i < npad; i++) {
			snprintf(name, sizeof name, "p%d", i);
			CU_ASSERT_FATAL(vol_create(v, a.ino, name, 0644, 0, 0, NULL) == 0);
		}
		m->pad = true;
	}
	CU_ASSERT_EQUAL(vol_close(v), 0);
	return dev;
}

/*
 * One operation whose transaction is larger than the journal's room
 * (journal_bytes 16 KiB): a create that makes the catalog grow (the
 * rewrite of 64 units into 128 is a record of over 16 KiB), and 200 KB
 * written into a file created empty (its data travels in the journal until
 * a barrier and a checkpoint in the middle of the write), then released.
 * Uncut, each succeeds whole, and the journal really overflowed (a
 * checkpoint during the operation, a journal file past journal_bytes).
 * Then the power is cut at every device operation of it, in four failure
 * modes, and the volume is always before or after each step.
 */
static void an_operation_larger_than_the_journal_succeeds_whole_or_not_at_all(void)
{
	for (int which = 0; which < 2; which++) {
		FOR_EACH_KIND(k) {
			const char *what = which == 0 ? "create that grows the catalog"
						      : "200 KB journaled write + release";
			struct cm m;
			struct vol_opts o;
			/* the root, 14 files, pad with its 47 and d1 fill the
			 * compact catalog's 64 units (one each: short names) */
			struct bs_memdev *dev = overflow_setup(k, which == 0 ? 14 : 4,
							       which == 0 ? 47 : 0, &m, &o);
			struct seq q = { .n = 0 };
			/* first a small record: the journal is live, so the large
			 * one does not fit behind it and needs a checkpoint */
			if (which == 0) {
				q.op[q.n++] = (struct cm_op){ .kind = OP_MKDIR, .i = -1, .j = -1,
							      .dir = 1 };
				q.op[q.n++] = (struct cm_op){ .kind = OP_CREATE, .i = 14, .j = -1 };
			} else {
				q.op[q.n++] = (struct cm_op){ .kind = OP_TRUNCATE, .i = 1, .j = -1,
							      .n = 2000 };
				struct cm_op w = { .kind = OP_WRITE, .i = 3, .j = -1, .n = 200000 };
				w.data = malloc(w.n);
				h_pattern(w.data, w.n, 300, 0);
				q.op[q.n++] = w;
				q.op[q.n++] = (struct cm_op){ .kind = OP_RELEASE, .i = 3, .j = -1 };
			}
			seq_models(&q, &m);
			struct snap s0;
			snap_take(dev, &s0);

			/* uncut: every step succeeds, and the journal overflowed */
			struct vol *v;
			struct cm mm;
			int err;
			CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
			cm_clone(&mm, &m);
			cm_matches(v, &mm, false);
			struct vol_counters c0, c1;
			CU_ASSERT_EQUAL(vol_get_counters(v, &c0), 0);
			int64_t cp0 = stat_of(v, "checkpoints");
			dev_reset(dev);
			CU_ASSERT_EQUAL(seq_run(v, &q, &mm, &err), q.n);
			CU_ASSERT_EQUAL(err, 0);
			int64_t cp1 = stat_of(v, "checkpoints"), jb = stat_of(v, "journal_bytes");
			if (cp1 <= cp0 || jb <= (int64_t)SMALL_JOURNAL)
				printf("\n%s/%s: checkpoints %lld -> %lld, journal file %lld bytes\n",
				       what, bs_alloc_kind_name(k), (long long)cp0, (long long)cp1,
				       (long long)jb);
			CU_ASSERT(cp1 > cp0);
			CU_ASSERT(jb > (int64_t)SMALL_JOURNAL);
			CU_ASSERT_EQUAL(vol_get_counters(v, &c1), 0);
			if (which == 0)
				CU_ASSERT_EQUAL(c1.catalog_rewrites, c0.catalog_rewrites + 1);
			CU_ASSERT(cm_current_ok(v, &mm, &err));
			uint64_t total = dev_ops(dev);
			CU_ASSERT_EQUAL(vol_close(v), 0);
			cm_free(&mm);
			/* after a clean unmount: exactly the last model */
			CU_ASSERT(verify_after(dev, k, o, &q, q.n, what));

			seq_cut_everywhere(dev, k, o, &s0, &q, total, what);
			snap_free(&s0);
			seq_free(&q);
			cm_free(&m);
			bs_memdev_free(dev);
		}
	}
}

/* ---- a full disk under the journal -------------------------------------------- */

/* The small durable image of the ENOSPC tests: f0 (5000 bytes), f1 (3000),
 * f2 (empty), journal on; the model in *m. */
static struct bs_memdev *nospc_setup(enum bs_alloc_kind k, struct cm *m, struct vol_opts *o)
{
	struct bs_memdev *dev = overflow_setup(k, 3, 0, m, o);
	o->journal_bytes = 0;   /* the default room: 64 MiB, halved to what is granted */
	return dev;
}

/*
 * The journal's room could not be reserved (the disk holding the journal
 * is full: its size is the capacity), so a commit's append past the end of
 * the journal file fails with ENOSPC.  That operation returns -ENOSPC; the
 * volume then refuses every further change with -ENOSPC (the journal is
 * broken until a remount) and still reads what was committed.  After the
 * capacity is raised, the reopen (after a clean close attempt, or after a
 * power cut) has every operation that returned 0, whole, the failed one not
 * at all, a clean check and nothing to reclaim twice.
 */
static void a_full_disk_under_the_journal_fails_the_commit_and_loses_nothing(void)
{
	for (int crash = 0; crash < 2; crash++) {
		FOR_EACH_KIND(k) {
			struct cm m;
			struct vol_opts o;
			struct bs_memdev *dev = nospc_setup(k, &m, &o);
			struct bs_memdev *jdev = bs_memdev_sibling(dev);
			bs_memdev_set_capacity(jdev, h_dev_size(jdev));
			struct vol *v;
			CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
			CU_ASSERT_FATAL(cm_matches(v, &m, true));
			/* small committed operations until one does not fit */
			struct cm_op op = { .i = -1 };
			int r = 0, done = 0;
			while (done < 2000) {
				int i = 3 + done % 13;
				if (m.f[i].live)
					op = (struct cm_op){ .kind = OP_UNLINK, .i = i, .j = -1 };
				else
					op = (struct cm_op){ .kind = OP_CREATE, .i = i, .j = -1 };
				if ((r = cm_run(v, &m, &op)))
					break;
				cm_apply(&m, &op);
				done++;
			}
			if (r != -ENOSPC)
				printf("\n%s: %d operations, then %d\n", bs_alloc_kind_name(k), done, r);
			CU_ASSERT_EQUAL(r, -ENOSPC);
			CU_ASSERT(done > 0);
			CU_ASSERT(!bs_memdev_dead(dev));
			/* refused from now on, with the same clear error */
			struct cm_op more = { .kind = OP_TRUNCATE, .i = 0, .j = -1, .n = 10 };
			CU_ASSERT_EQUAL(cm_run(v, &m, &more), -ENOSPC);
			more = (struct cm_op){ .kind = OP_MKDIR, .i = -1, .j = -1, .dir = 1 };
			CU_ASSERT_EQUAL(cm_run(v, &m, &more), -ENOSPC);
			/* what was committed still reads back */
			int which;
			CU_ASSERT(cm_current_ok(v, &m, &which));
			/* (the failed operation's change may still show in memory
			 * until the remount: the journal is broken, the volume
			 * refuses to change; nothing promises more) */
			if (crash) {
				bs_memdev_fail_at(dev, 1);
				vol_close(v);
				bs_memdev_power_cycle(dev, 0);
			} else {
				CU_ASSERT_EQUAL(vol_close(v), -ENOSPC);
			}
			bs_memdev_set_capacity(jdev, 0);
			struct seq q = { .n = 0 };
			seq_models(&q, &m);   /* only the state before the failed one */
			CU_ASSERT(verify_after(dev, k, o, &q, 0, "journal append on a full disk"));
			seq_free(&q);
			cm_free(&m);
			bs_memdev_free(dev);
		}
	}
}

/*
 * The growth a transaction needs is reserved when the transaction makes it
 * (bs_io_reserve), so a disk that fills before the commit applies it in
 * place cannot fail the apply: with commit=3600 a write that grows a file
 * and a truncate that grows another wait in memory, the disk fills to the
 * image's size, and the explicit sync applies both, durably.
 */
static void a_disk_that_fills_before_the_commit_still_applies_it(void)
{
	FOR_EACH_KIND(k) {
		struct cm m;
		struct vol_opts o;
		struct bs_memdev *dev = nospc_setup(k, &m, &o);
		o.commit_s = 3600;
		o.defer_threads = true;   /* no committer: nothing is flushed early */
		struct vol *v;
		CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
		CU_ASSERT_FATAL(cm_matches(v, &m, true));
		struct seq q = { .n = 0 };
		struct cm_op w = { .kind = OP_WRITE, .i = 2, .j = -1, .n = 60000 };
		w.data = malloc(w.n);
		h_pattern(w.data, w.n, 400, 0);
		q.op[q.n++] = w;
		q.op[q.n++] = (struct cm_op){ .kind = OP_RELEASE, .i = 2, .j = -1 };
		q.op[q.n++] = (struct cm_op){ .kind = OP_TRUNCATE, .i = 1, .j = -1, .n = 90000 };
		int err;
		uint64_t before = h_dev_size(dev);
		CU_ASSERT_EQUAL(seq_run(v, &q, &m, &err), q.n);
		CU_ASSERT_EQUAL(err, 0);
		/* nothing applied yet: the image has not grown */
		CU_ASSERT_EQUAL(h_dev_size(dev), before);
		bs_memdev_set_capacity(dev, before);
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		CU_ASSERT(h_dev_size(dev) > before);
		CU_ASSERT(!bs_memdev_dead(dev));
		CU_ASSERT(cm_current_ok(v, &m, &err));
		/* durable: the power goes at once */
		bs_memdev_fail_at(dev, 1);
		vol_close(v);
		bs_memdev_power_cycle(dev, 0);
		bs_memdev_set_capacity(dev, 0);
		o.commit_s = 0;
		struct seq last = { .n = 0 };   /* exactly m, everything applied */
		seq_models(&last, &m);
		CU_ASSERT(verify_after(dev, k, o, &last, 0, "a commit applied on a full disk"));
		seq_free(&last);
		seq_free(&q);
		cm_free(&m);
		bs_memdev_free(dev);
	}
}

/*
 * After a crash the reservations are gone: a live journal whose replay
 * must grow the image cannot be replayed on a disk that is full at the
 * image's size.  The open refuses with -ENOSPC and says so; once there is
 * room the next open replays, and every operation that returned is there
 * whole.  Every cut point of a sequence that grows two files.
 */
static void a_replay_that_cannot_grow_the_full_image_is_refused_then_completes(void)
{
	FOR_EACH_KIND(k) {
		struct cm m;
		struct vol_opts o;
		struct bs_memdev *dev = nospc_setup(k, &m, &o);
		struct seq q = { .n = 0 };
		struct cm_op w = { .kind = OP_WRITE, .i = 2, .j = -1, .n = 60000 };
		w.data = malloc(w.n);
		h_pattern(w.data, w.n, 500, 0);
		q.op[q.n++] = w;
		q.op[q.n++] = (struct cm_op){ .kind = OP_FSYNC, .i = 2, .j = -1 };
		q.op[q.n++] = (struct cm_op){ .kind = OP_TRUNCATE, .i = 1, .j = -1, .n = 90000 };
		seq_models(&q, &m);
		struct snap s0;
		snap_take(dev, &s0);
		/* the uncut run: its device operations */
		struct vol *v;
		struct cm mm;
		int err;
		CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
		cm_clone(&mm, &m);
		cm_matches(v, &mm, false);
		dev_reset(dev);
		CU_ASSERT_EQUAL(seq_run(v, &q, &mm, &err), q.n);
		uint64_t total = dev_ops(dev);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		cm_free(&mm);
		int refused = 0, bad = 0;
		for (uint64_t n = 1; n <= total && bad < 3; n++) {
			snap_load(dev, &s0);
			CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
			cm_clone(&mm, &m);
			cm_matches(v, &mm, false);
			bs_memdev_fail_at(dev, n);
			int done = seq_run(v, &q, &mm, &err);
			cm_free(&mm);
			vol_close(v);
			bs_memdev_power_cycle(dev, n % 2 ? UINT64_MAX : 0);
			bs_memdev_set_capacity(dev, h_dev_size(dev));
			struct bs_io *io, *jio;
			struct vol_opts oj = o;
			struct vol_error verr = { "" };
			CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
			CU_ASSERT_FATAL(bs_io_mem_open(bs_memdev_sibling(dev), &jio) == 0);
			oj.journal_io = jio;
			int r = vol_open_io(io, &oj, &v, &verr);
			if (r == 0) {
				vol_close(v);
			} else {
				refused++;
				if (r != -ENOSPC || !strstr(verr.msg, strerror(ENOSPC))) {
					printf("\n%s: cut at %llu: the open on a full disk: %d %s\n",
					       bs_alloc_kind_name(k), (unsigned long long)n, r, verr.msg);
					bad++;
				}
				CU_ASSERT_EQUAL(r, -ENOSPC);
			}
			bs_memdev_set_capacity(dev, 0);
			if (!verify_after(dev, k, o, &q, done, "replay on a full disk")) {
				printf("%s: cut at device operation %llu of %llu, after %d steps\n",
				       bs_alloc_kind_name(k), (unsigned long long)n,
				       (unsigned long long)total, done);
				bad++;
			}
		}
		/* some cut left records whose replay had to grow the image */
		if (!refused)
			printf("\n%s: no cut point left a replay that grows the image\n",
			       bs_alloc_kind_name(k));
		CU_ASSERT(refused > 0);
		if (getenv("CRASH_DEBUG"))
			printf("\n%s: %d of %llu cuts refused on the full disk", bs_alloc_kind_name(k),
			       refused, (unsigned long long)total);
		snap_free(&s0);
		seq_free(&q);
		cm_free(&m);
		bs_memdev_free(dev);
	}
}

/* ---- a catalog record torn by the device ---------------------------------------- */

/* In image bytes b: the file offset of the slot that the next version of
 * inode ino's record goes to (the one not holding its newest), or 0. */
static uint64_t next_slot_of(const uint8_t *b, size_t len, uint64_t ino)
{
	if (len < BSTACK_HEADER_SIZE + CAT_ROOT_REF_SIZE)
		return 0;
	struct bs_slice root = cat_root_decode(b + BSTACK_HEADER_SIZE);
	uint64_t n_pairs, base = BSTACK_HEADER_SIZE + root.off;
	uint32_t ver, slot;
	if (base + CAT_HDR_SIZE > len || cat_hdr_decode(b + base, &n_pairs, &ver, &slot) ||
	    slot != CAT_SLOT_SIZE)
		return 0;   /* compact records have one copy: no next slot */
	for (uint64_t p = 0; p < n_pairs; p++) {
		uint64_t at = base + CAT_HDR_SIZE + p * CAT_PAIR_SIZE;
		struct cat_rec r[2];
		int st[2];
		if (at + CAT_PAIR_SIZE > len)
			return 0;
		for (int k = 0; k < 2; k++)
			st[k] = cat_rec_decode(b + at + (uint64_t)k * CAT_SLOT_SIZE, &r[k]);
		int win = !st[0] && (st[1] || r[0].seq > r[1].seq) ? 0 : !st[1] ? 1 : -1;
		if (win >= 0 && r[win].ino == ino && r[win].kind != CAT_TOMB)
			return at + (uint64_t)(1 - win) * CAT_SLOT_SIZE;
	}
	return 0;
}

static bool straddles(uint64_t off, uint64_t n)
{
	return off / BS_SECTOR != (off + n - 1) / BS_SECTOR;
}

/* Name i of the torn-record test: 250 bytes, version 0 or 1 differing from
 * the other in every byte, so that a torn slot mixes two names. */
static void long_name(char *b, int i, int version)
{
	memset(b, version ? 'b' : 'a', 250);
	b[0] = version ? 'u' : 't';
	b[1] = (char)('0' + i);
	b[250] = '\0';
}

/*
 * journal=off, where a record changes by one synced write of its new
 * version into the pair's other slot.  A rename is cut at that write's
 * sync and the device tears the write (BS_PC_TORN: a prefix of its
 * sectors; the slot lies across a sector boundary that falls inside the
 * bytes the two versions differ in), so the new slot fails its checksum:
 * the reopen falls back to the older version of the record and says so
 * (vol_open_report: which inode, which slot) and zeroes the torn slot; the
 * file is whole under its old name, the check is clean, the next open finds
 * nothing torn, and the record changes again normally.  Seeds that keep
 * none of the write leave the old version too, with nothing to report.
 */
static void a_record_torn_by_the_device_falls_back_to_its_older_version(void)
{
	enum { NF = 8 };
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol_opts o = { .allocator = k, .create = true };
		struct vol *v;
		uint64_t ino[NF];
		uint8_t buf[100];
		char name[CAT_NAME_MAX + 1], name2[CAT_NAME_MAX + 1];
		CU_ASSERT_FATAL(try_open(dev, o, J_OFF, &v) == 0);
		o.create = false;
		for (int i = 0; i < NF; i++) {
			struct vol_attr a;
			long_name(name, i, 0);
			CU_ASSERT_FATAL(vol_create(v, ROOT, name, 0644, 0, 0, &a) == 0);
			ino[i] = a.ino;
			h_pattern(buf, sizeof buf, 600 + (uint64_t)i, 0);
			CU_ASSERT(vol_write(v, a.ino, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
			CU_ASSERT(vol_release(v, a.ino) == 0);
		}
		CU_ASSERT_EQUAL(vol_close(v), 0);
		uint8_t *s0;
		size_t l0;
		CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &s0, &l0) == 0);
		/* a file whose next record version lies across a sector boundary
		 * inside the fields or the name (bytes 0 .. 96 + 250 of a slot) */
		int f = -1;
		uint64_t slot = 0;
		for (int i = 0; i < NF && f < 0; i++) {
			slot = next_slot_of(s0, l0, ino[i]);
			uint64_t b = BS_SECTOR - slot % BS_SECTOR;
			if (slot && straddles(slot, CAT_SLOT_SIZE) && b < 96 + 250)
				f = i;
		}
		CU_ASSERT_FATAL(f >= 0);
		long_name(name, f, 0);
		long_name(name2, f, 1);
		int torn = 0;
		for (uint64_t seed = 0; seed < 16; seed++) {
			CU_ASSERT_FATAL(bs_memdev_load(dev, s0, l0) == 0);
			CU_ASSERT_FATAL(try_open(dev, o, J_OFF, &v) == 0);
			bs_memdev_reset_counts(dev);
			/* the record's one write, then the power goes at its sync */
			bs_memdev_fail_at(dev, 2);
			CU_ASSERT_EQUAL(vol_rename(v, ROOT, name, ROOT, name2, 0), -EIO);
			CU_ASSERT_EQUAL(bs_memdev_writes(dev), 1);
			CU_ASSERT_EQUAL(bs_memdev_pending(dev), 1);
			vol_close(v);
			bs_memdev_power_cycle_mode(dev, BS_PC_TORN, 0, seed);
			uint8_t *s1;
			size_t l1;
			struct cat_rec r;
			CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &s1, &l1) == 0);
			CU_ASSERT_FATAL(l1 == l0);
			/* the device kept a prefix of the write, or nothing */
			bool is_torn = cat_rec_decode(s1 + slot, &r) == -EBADMSG;
			bool untouched = memcmp(s1 + slot, s0 + slot, CAT_SLOT_SIZE) == 0;
			CU_ASSERT(is_torn || untouched);
			CU_ASSERT(memcmp(s1, s0, slot) == 0);
			CU_ASSERT(memcmp(s1 + slot + CAT_SLOT_SIZE, s0 + slot + CAT_SLOT_SIZE,
					 l0 - slot - CAT_SLOT_SIZE) == 0);
			free(s1);
			torn += is_torn;

			CU_ASSERT_FATAL(try_open(dev, o, J_OFF, &v) == 0);
			struct vol_open_report rep;
			CU_ASSERT_EQUAL(vol_open_report(v, &rep), 0);
			char want[32];
			snprintf(want, sizeof want, "inode %llu ", (unsigned long long)ino[f]);
			if (is_torn) {
				if (!strstr(rep.fallback, want))
					printf("\n%s seed %llu: torn, but the report says \"%s\"\n",
					       bs_alloc_kind_name(k), (unsigned long long)seed,
					       rep.fallback);
				CU_ASSERT(strstr(rep.fallback, want) != NULL);
				CU_ASSERT(strstr(rep.fallback, "fails its checksum") != NULL);
				CU_ASSERT(rep.catalog_repaired);
			} else {
				CU_ASSERT_STRING_EQUAL(rep.fallback, "");
				CU_ASSERT(!rep.catalog_repaired);
			}
			/* the older version: the old name, the bytes */
			CU_ASSERT_EQUAL(ino_of(v, ROOT, name), ino[f]);
			CU_ASSERT_EQUAL(ino_of(v, ROOT, name2), 0);
			CU_ASSERT(vol_read(v, ino[f], buf, sizeof buf, 0) == (ssize_t)sizeof buf &&
				  h_pattern_ok(buf, sizeof buf, 600 + (uint64_t)f, 0));
			CU_ASSERT_EQUAL(check_errors(v), 0);
			CU_ASSERT_EQUAL(vol_close(v), 0);
			/* the torn slot was zeroed: nothing falls back again, and
			 * the record changes normally */
			CU_ASSERT_FATAL(try_open(dev, o, J_OFF, &v) == 0);
			CU_ASSERT_EQUAL(vol_open_report(v, &rep), 0);
			CU_ASSERT_STRING_EQUAL(rep.fallback, "");
			CU_ASSERT_EQUAL(reclaimed_of(v), 0);
			CU_ASSERT_EQUAL(vol_rename(v, ROOT, name, ROOT, name2, 0), 0);
			CU_ASSERT_EQUAL(vol_close(v), 0);
			CU_ASSERT_FATAL(try_open(dev, o, J_OFF, &v) == 0);
			CU_ASSERT_EQUAL(ino_of(v, ROOT, name2), ino[f]);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			CU_ASSERT_EQUAL(vol_close(v), 0);
		}
		/* the device tore the slot for some seeds */
		if (!torn)
			printf("\n%s: no seed tore the slot\n", bs_alloc_kind_name(k));
		CU_ASSERT(torn > 0);
		if (getenv("CRASH_DEBUG"))
			printf("\n%s: slot at %llu torn by %d of 16 seeds", bs_alloc_kind_name(k),
			       (unsigned long long)slot, torn);
		free(s0);
		bs_memdev_free(dev);
	}
}

/* ---- names of every kind: symlinks, special files, hard links --------------
 *
 * Each scenario builds a starting tree, then one operation on names is cut
 * at every device operation of its uncut run (under the journal: four
 * power cycles each; without it: nothing or everything unsynced kept).
 * After each cut the reopened volume must look exactly as before the
 * operation or exactly as after it — every name, inode number, kind, link
 * count, size, device number, file content and symlink target — pass its
 * check, and a second reopen must reclaim nothing and look the same.
 */

/* The visible state of the tree, as one string. */
struct nm_desc {
	struct vol *v;
	char *s;
	size_t len, cap;
	char path[1024];
};

static void nm_add(struct nm_desc *d, const char *fmt, ...)
{
	va_list ap;
	char line[6000];
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (d->len + (size_t)n + 1 > d->cap) {
		d->cap = (d->len + (size_t)n + 1) * 2;
		d->s = realloc(d->s, d->cap);
		CU_ASSERT_FATAL(d->s != NULL);
	}
	memcpy(d->s + d->len, line, (size_t)n + 1);
	d->len += (size_t)n;
}

struct nm_ent {
	char name[VOL_NAME_MAX + 1];
	struct vol_attr a;
};

struct nm_list {
	struct nm_ent *e;
	size_t n;
};

static int nm_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct nm_list *l = ctx;
	(void)pos;
	l->e = realloc(l->e, (l->n + 1) * sizeof *l->e);
	CU_ASSERT_FATAL(l->e != NULL);
	snprintf(l->e[l->n].name, sizeof l->e[l->n].name, "%s", name);
	l->e[l->n++].a = *a;
	return 0;
}

static int nm_cmp(const void *x, const void *y)
{
	return strcmp(((const struct nm_ent *)x)->name, ((const struct nm_ent *)y)->name);
}

static void nm_walk(struct nm_desc *d, uint64_t dir)
{
	struct nm_list l = { NULL, 0 };
	CU_ASSERT_EQUAL(vol_readdir(d->v, dir, 0, nm_fill, &l), 0);
	if (l.n)
		qsort(l.e, l.n, sizeof *l.e, nm_cmp);
	size_t plen = strlen(d->path);
	for (size_t i = 0; i < l.n; i++) {
		const struct vol_attr *a = &l.e[i].a;
		snprintf(d->path + plen, sizeof d->path - plen, "/%s", l.e[i].name);
		nm_add(d, "%s ino=%llu mode=%o nlink=%u size=%llu rdev=%u", d->path,
		       (unsigned long long)a->ino, a->mode, a->nlink,
		       (unsigned long long)a->size, a->rdev);
		if (S_ISREG(a->mode)) {
			uint8_t buf[8192];
			uint64_t h = 1469598103934665603ULL;
			ssize_t got = vol_read(d->v, a->ino, buf, sizeof buf, 0);
			for (ssize_t k = 0; k < got; k++)
				h = (h ^ buf[k]) * 1099511628211ULL;
			nm_add(d, " data=%zd:%llx", got, (unsigned long long)h);
		} else if (S_ISLNK(a->mode)) {
			char t[VOL_SYMLINK_MAX + 1];
			ssize_t got = vol_readlink(d->v, a->ino, t, sizeof t - 1);
			nm_add(d, " -> %.*s", got > 0 ? (int)got : 0, t);
		}
		char names[1024];
		ssize_t nl = vol_listxattr(d->v, a->ino, names, sizeof names);
		for (ssize_t k = 0; k < nl; k += (ssize_t)strlen(names + k) + 1) {
			char val[256];
			ssize_t vl = vol_getxattr(d->v, a->ino, names + k, val, sizeof val);
			nm_add(d, " %s=%.*s", names + k, vl > 0 ? (int)vl : 0, val);
		}
		if (nl < 0)
			nm_add(d, " xattr-error=%zd", nl);
		nm_add(d, "\n");
		if (S_ISDIR(a->mode))
			nm_walk(d, a->ino);
	}
	d->path[plen] = '\0';
	free(l.e);
}

static char *nm_describe(struct vol *v)
{
	struct nm_desc d = { v, NULL, 0, 0, "" };
	struct vol_summary s;
	CU_ASSERT_FATAL(vol_summary(v, &s) == 0);
	/* the counts see what no name shows (a stray inode, a leaked link) */
	nm_add(&d, "records=%llu xattr=%llu files=%llu dirs=%llu symlinks=%llu special=%llu "
	       "links=%llu live=%llu capacity=%llu\n", (unsigned long long)s.catalog_records,
	       (unsigned long long)s.xattr_bytes, (unsigned long long)s.files,
	       (unsigned long long)s.directories, (unsigned long long)s.symlinks,
	       (unsigned long long)s.special_files, (unsigned long long)s.hardlinks,
	       (unsigned long long)s.live_bytes, (unsigned long long)s.capacity_bytes);
	nm_walk(&d, ROOT);
	return d.s;
}

static void nm_file(struct vol *v, uint64_t dir, const char *name, const char *text)
{
	struct vol_attr a;
	CU_ASSERT_FATAL(vol_create(v, dir, name, 0644, 1, 2, &a) == 0);
	CU_ASSERT_FATAL(vol_write(v, a.ino, text, strlen(text), 0) == (ssize_t)strlen(text));
	CU_ASSERT_FATAL(vol_release(v, a.ino) == 0);
}

static char long_target[1200];
/* names of 200 and 250 bytes: records of 3 compact units, where a short
 * name takes 1 (so a rename moves the record, or shrinks it in place) */
static char name200[201], name250[251];

/* The starting tree: files a, b and d/c, a directory d; with `v2` also a
 * hard link al of a, a symlink, and a file e named only by its link d/el
 * (its first name removed: nameless). */
static void nm_setup(struct vol *v, bool v2)
{
	struct vol_attr a;
	CU_ASSERT_FATAL(vol_mkdir(v, ROOT, "d", 0755, 1, 2, &a) == 0);
	nm_file(v, ROOT, "a", "the bytes of a\n");
	nm_file(v, ROOT, "b", "bee\n");
	nm_file(v, a.ino, "c", "sea\n");
	if (!v2)
		return;
	uint64_t d = a.ino;
	CU_ASSERT_FATAL(vol_link(v, ino_of(v, ROOT, "a"), ROOT, "al", NULL) == 0);
	CU_ASSERT_FATAL(vol_symlink(v, ROOT, "s", long_target, 1, 2, NULL) == 0);
	nm_file(v, ROOT, "e", "only a link names me\n");
	CU_ASSERT_FATAL(vol_link(v, ino_of(v, ROOT, "e"), d, "el", NULL) == 0);
	CU_ASSERT_FATAL(vol_unlink(v, ROOT, "e") == 0);
	/* extended attributes on a file, a directory, an empty directory */
	CU_ASSERT_FATAL(vol_setxattr(v, ino_of(v, ROOT, "a"), "user.x", "ax", 2, 0) == 0);
	CU_ASSERT_FATAL(vol_setxattr(v, ino_of(v, d, "c"), "user.c", "cee", 3, 0) == 0);
	CU_ASSERT_FATAL(vol_mkdir(v, ROOT, "e2", 0755, 1, 2, &a) == 0);
	CU_ASSERT_FATAL(vol_setxattr(v, a.ino, "trusted.e", "empty", 5, 0) == 0);
	nm_file(v, d, name250, "a long name\n");
}

static int nm_op(struct vol *v, int op)
{
	uint64_t d = ino_of(v, ROOT, "d");
	switch (op) {
	case 0: return vol_symlink(v, ROOT, "short", "a", 1, 2, NULL);    /* v1 -> v2 */
	case 1: return vol_symlink(v, d, "long", long_target, 1, 2, NULL);
	case 2: return vol_mknod(v, ROOT, "fifo", S_IFIFO | 0644, 0, 1, 2, NULL);
	case 3: return vol_mknod(v, d, "null", S_IFCHR | 0666, (1 << 8) | 3, 1, 2, NULL);
	case 4: return vol_link(v, ino_of(v, ROOT, "b"), d, "b2", NULL);
	case 5: return vol_unlink(v, ROOT, "a");        /* first name, a link stays */
	case 6: return vol_unlink(v, d, "el");          /* the last name of e */
	case 7: return vol_rename(v, ROOT, "b", ROOT, "al", 0);   /* over a link */
	case 8: return vol_rename(v, ROOT, "al", ROOT, "b", 0);   /* a link over b */
	case 9: return vol_rename(v, ROOT, "b", d, "el", 0);      /* over e's last name */
	case 10: return vol_unlink(v, ROOT, "s");       /* a symlink's allocation */
	case 11: return vol_rename(v, ROOT, "s", d, "c", VOL_RENAME_EXCHANGE);
	case 12: return vol_setxattr(v, ino_of(v, ROOT, "b"), "user.n", "new", 3, 0);
	case 13: return vol_setxattr(v, ino_of(v, ROOT, "a"), "user.x", "replaced", 8, 0);
	case 14: return vol_removexattr(v, ino_of(v, ROOT, "a"), "user.x");
	case 15: return vol_unlink(v, d, "c");          /* a file with attributes */
	case 16: return vol_rmdir(v, ROOT, "e2");       /* a directory with them */
	case 17: return vol_rename(v, ROOT, "b", d, name200, 0);   /* the record grows */
	case 18: return vol_rename(v, ROOT, "al", ROOT, name200, 0);   /* a link's */
	case 19: return vol_rename(v, d, name250, ROOT, "z", 0);   /* it shrinks */
	case 20: return vol_rename(v, ROOT, "b", d, name250, VOL_RENAME_EXCHANGE);
	}
	return -EINVAL;
}

static const char *const nm_op_name[] = {
	"symlink (upgrade)", "long symlink", "mkfifo", "mknod c", "link", "unlink first name",
	"unlink last link", "rename over a link", "rename a link", "rename over a last link",
	"unlink long symlink", "exchange", "setxattr", "replace xattr", "removexattr",
	"unlink with xattrs", "rmdir with xattrs", "rename to a long name",
	"rename a link to a long name", "rename to a short name", "exchange short and long",
};
#define NM_OPS ((int)(sizeof nm_op_name / sizeof nm_op_name[0]))

static bool nm_verify(struct bs_memdev *dev, struct vol_opts o, enum jmode jm,
		      const char *before, const char *after, const char *what)
{
	struct vol *v;
	if (try_open(dev, o, jm, &v)) {
		printf("\n%s: the reopen failed\n", what);
		return false;
	}
	char *got = nm_describe(v);
	bool ok = strcmp(got, before) == 0 || strcmp(got, after) == 0;
	if (!ok)
		printf("\n%s: the tree is neither the one before nor after:\n%s--- before:\n%s"
		       "--- after:\n%s", what, got, before, after);
	ok = ok && check_errors(v) == 0;
	CU_ASSERT_EQUAL(vol_close(v), 0);
	CU_ASSERT_FATAL(try_open(dev, o, jm, &v) == 0);
	char *again = nm_describe(v);
	uint64_t rec = reclaimed_of(v);
	if (rec || strcmp(again, got))
		printf("\n%s: the second reopen reclaimed %llu bytes or changed the tree\n", what,
		       (unsigned long long)rec);
	ok = ok && rec == 0 && strcmp(again, got) == 0 && check_errors(v) == 0;
	CU_ASSERT_EQUAL(vol_close(v), 0);
	free(got);
	free(again);
	return ok;
}

static void every_name_operation_cut_anywhere_is_all_or_nothing(void)
{
	for (size_t i = 0; i + 1 < sizeof long_target; i++)
		long_target[i] = (char)('a' + i % 26);
	memset(name200, 'm', sizeof name200 - 1);
	memset(name250, 'n', sizeof name250 - 1);
	FOR_EACH_KIND(k) {
		for (int jo = 0; jo < 2; jo++) {
			enum jmode jm = jo ? J_ON : J_OFF;
			for (int op = 0; op < NM_OPS; op++) {
				struct bs_memdev *dev = bs_memdev_new();
				struct vol_opts o = { .allocator = k, .create = true, .uid = 1,
						      .gid = 2 };
				struct vol *v;
				struct snap s0 = { 0 };
				char what[160];
				snprintf(what, sizeof what, "%s/%s/%s", bs_alloc_kind_name(k),
					 jo ? "journal" : "journal=off", nm_op_name[op]);
				CU_ASSERT_FATAL(dev != NULL);
				CU_ASSERT_FATAL(try_open(dev, o, jm, &v) == 0);
				o.create = false;
				nm_setup(v, op != 0);
				CU_ASSERT_EQUAL_FATAL(vol_close(v), 0);
				if (jm == J_OFF)
					bs_memdev_new_sibling(dev);   /* snap wants one */
				snap_take(dev, &s0);
				/* the uncut run: its result and its device operations */
				CU_ASSERT_FATAL(try_open(dev, o, jm, &v) == 0);
				char *before = nm_describe(v);
				dev_reset(dev);
				int want = jm == J_OFF && (op == 11 || op == 20) ? -EINVAL : 0;
				int r = nm_op(v, op);
				if (r != want)
					printf("\n%s: %d\n", what, r);
				CU_ASSERT_EQUAL(r, want);
				char *after = nm_describe(v);
				CU_ASSERT_EQUAL(vol_close(v), 0);
				uint64_t total = dev_ops(dev);
				CU_ASSERT(strcmp(before, after) != 0 || want != 0);
				CU_ASSERT(nm_verify(dev, o, jm, after, after, what));
				int bad = 0;
				for (uint64_t n = 1; n <= total && bad < 2; n++) {
					for (int mode = 0; mode < (jo ? 4 : 2) && bad < 2; mode++) {
						snap_load(dev, &s0);
						CU_ASSERT_FATAL(try_open(dev, o, jm, &v) == 0);
						bs_memdev_fail_at(dev, n);
						nm_op(v, op);
						vol_close(v);
						power_cycle(dev, n, mode);
						if (!nm_verify(dev, o, jm, before, after, what)) {
							printf("%s: cut at device operation %llu of %llu, "
							       "mode %d\n", what, (unsigned long long)n,
							       (unsigned long long)total, mode);
							CU_FAIL("a cut name operation is neither before nor after");
							bad++;
						}
					}
				}
				free(before);
				free(after);
				snap_free(&s0);
				bs_memdev_free(dev);
			}
		}
	}
}

static uint64_t rewrites_of(struct vol *v)
{
	struct vol_counters c;
	CU_ASSERT_EQUAL(vol_get_counters(v, &c), 0);
	return c.catalog_rewrites;
}

/* With the journal a full catalog grows where it is (catalog.c, cat_grow):
 * the allocation, the header's pair count and the root reference in one
 * transaction.  Cut the create that makes it grow at every device
 * operation: the tree is before or after, the catalog verifies. */
static void a_catalog_growing_in_place_is_all_or_nothing_at_every_cut(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol_opts o = { .allocator = k, .create = true, .uid = 1, .gid = 2 };
		struct vol *v;
		struct snap s0 = { 0 };
		char name[32], what[64];
		int grew_at = -1;
		CU_ASSERT_FATAL(dev != NULL);
		CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
		o.create = false;
		/* find the create that grows the catalog: the state before it is s0 */
		for (int i = 0; i < 200 && grew_at < 0; i++) {
			int64_t before = stat_of(v, "catalog_bytes");
			uint64_t rw = rewrites_of(v);
			CU_ASSERT_EQUAL_FATAL(vol_close(v), 0);
			snap_free(&s0);
			snap_take(dev, &s0);
			CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_FATAL(vol_create(v, ROOT, name, 0644, 1, 2, NULL) == 0);
			if (stat_of(v, "catalog_bytes") > before) {
				grew_at = i;
				/* in place, not a move (Linear always moves) */
				CU_ASSERT(k == BS_ALLOC_LINEAR || rewrites_of(v) == rw);
			}
		}
		CU_ASSERT_FATAL(grew_at >= 0);
		char *after = nm_describe(v);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		snap_load(dev, &s0);
		CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
		char *before = nm_describe(v);
		dev_reset(dev);
		CU_ASSERT_EQUAL(vol_create(v, ROOT, name, 0644, 1, 2, NULL), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		uint64_t total = dev_ops(dev);
		snprintf(what, sizeof what, "%s/catalog growth", bs_alloc_kind_name(k));
		int bad = 0;
		for (uint64_t n = 1; n <= total && bad < 2; n++) {
			for (int mode = 0; mode < 4 && bad < 2; mode++) {
				snap_load(dev, &s0);
				CU_ASSERT_FATAL(try_open(dev, o, J_ON, &v) == 0);
				bs_memdev_fail_at(dev, n);
				vol_create(v, ROOT, name, 0644, 1, 2, NULL);
				vol_close(v);
				power_cycle(dev, n, mode);
				if (!nm_verify(dev, o, J_ON, before, after, what)) {
					printf("%s: cut at device operation %llu of %llu, mode %d\n", what,
					       (unsigned long long)n, (unsigned long long)total, mode);
					CU_FAIL("a cut catalog growth is neither before nor after");
					bad++;
				}
			}
		}
		free(before);
		free(after);
		snap_free(&s0);
		bs_memdev_free(dev);
	}
}

static const struct h_test tests[] = {
	H_TEST(random_operations_cut_in_every_failure_mode_match_the_model),
	H_TEST(a_hole_over_bytes_a_crash_left_past_the_length_reads_as_zeros),
	H_TEST(a_release_without_a_flush_makes_the_data_durable_on_return),
	H_TEST(an_operation_larger_than_the_journal_succeeds_whole_or_not_at_all),
	H_TEST(a_full_disk_under_the_journal_fails_the_commit_and_loses_nothing),
	H_TEST(a_disk_that_fills_before_the_commit_still_applies_it),
	H_TEST(a_replay_that_cannot_grow_the_full_image_is_refused_then_completes),
	H_TEST(a_record_torn_by_the_device_falls_back_to_its_older_version),
	H_TEST(every_name_operation_cut_anywhere_is_all_or_nothing),
	H_TEST(a_catalog_growing_in_place_is_all_or_nothing_at_every_cut),
};

H_MAIN("crash", tests)
