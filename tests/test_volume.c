/*
 * test_volume.c — the volume over every allocator that is built: every
 * operation and its edge cases, persistence, a randomized model test, power
 * loss at every write and sync of each operation, amortised growth, mount
 * verification, leak reclamation and crafted bad catalogs.  Everything runs
 * on the memory device except the one test of a file larger than 64 MiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <pthread.h>
#include <unistd.h>

#include "alloc.h"
#include "catalog.h"
#include "xattr.h"
#include "harness.h"
#include "util.h"
#include "volume.h"

#define ROOT VOL_ROOT_INO

static const enum bs_alloc_kind all_kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_LINEAR, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB,
};
#define N_KINDS (sizeof all_kinds / sizeof all_kinds[0])

/* Is allocator k built into this binary? */
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

/* BSTACKFS_TEST_JOURNAL=1 runs the whole suite with the journal: every
 * volume gets one on a sibling device in the image's power domain, so the
 * power-loss loops cut the journal's writes and syncs too. */
static bool journaled(void)
{
	const char *e = getenv("BSTACKFS_TEST_JOURNAL");
	return e && *e == '1';
}

static void add_journal(struct bs_memdev *dev, struct vol_opts *o)
{
	struct bs_io *jio;
	if (!journaled())
		return;
	struct bs_memdev *j = bs_memdev_sibling(dev);
	if (!j)
		j = bs_memdev_new_sibling(dev);
	CU_ASSERT_FATAL(j != NULL && bs_io_mem_open(j, &jio) == 0);
	o->journal_io = jio;
}

static int vopen_io(struct bs_memdev *dev, struct bs_io *io, struct vol_opts *o,
		    struct vol **v, struct vol_error *err)
{
	add_journal(dev, o);
	return vol_open_io(io, o, v, err);
}

/* Open dev with o as it is (its journal_io included), or fail the test. */
static struct vol *vopen_as(struct bs_memdev *dev, struct vol_opts *o)
{
	struct bs_io *io;
	struct vol *v = NULL;
	struct vol_error err = { "" };
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	int r = vol_open_io(io, o, &v, &err);
	if (r)
		printf("\nvol_open_io: %d %s\n", r, err.msg);
	CU_ASSERT_FATAL(r == 0);
	return v;
}

static struct vol *vopen(struct bs_memdev *dev, enum bs_alloc_kind k, bool create)
{
	struct vol_opts o = { .allocator = k, .create = create, .uid = 1, .gid = 2 };
	add_journal(dev, &o);
	return vopen_as(dev, &o);
}

static int vopen_err(struct bs_memdev *dev, const struct vol_opts *o, struct vol_error *err)
{
	struct bs_io *io;
	struct vol *v = NULL;
	struct vol_opts oj = *o;
	add_journal(dev, &oj);
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	int r = vol_open_io(io, &oj, &v, err);
	if (r == 0)
		vol_close(v);
	return r;
}

static uint64_t mkfile(struct vol *v, uint64_t parent, const char *name)
{
	struct vol_attr a;
	int r = vol_create(v, parent, name, 0644, 1, 2, &a);
	CU_ASSERT_EQUAL(r, 0);
	return r ? 0 : a.ino;
}

static uint64_t mkdir_(struct vol *v, uint64_t parent, const char *name)
{
	struct vol_attr a;
	int r = vol_mkdir(v, parent, name, 0755, 1, 2, &a);
	CU_ASSERT_EQUAL(r, 0);
	return r ? 0 : a.ino;
}

static uint64_t ino_of(struct vol *v, uint64_t parent, const char *name)
{
	struct vol_attr a;
	return vol_lookup(v, parent, name, &a) == 0 ? a.ino : 0;
}

static void put(struct vol *v, uint64_t ino, uint64_t tag, uint64_t off, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	h_pattern(b, n, tag, off);
	CU_ASSERT_EQUAL(vol_write(v, ino, b, n, off), (ssize_t)n);
	free(b);
}

static bool has(struct vol *v, uint64_t ino, uint64_t tag, uint64_t off, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = vol_read(v, ino, b, n, off) == (ssize_t)n && h_pattern_ok(b, n, tag, off);
	free(b);
	return ok;
}

static bool zeros_at(struct vol *v, uint64_t ino, uint64_t off, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = vol_read(v, ino, b, n, off) == (ssize_t)n && h_all_zero(b, n);
	free(b);
	return ok;
}

static uint64_t size_of(struct vol *v, uint64_t ino)
{
	struct vol_attr a;
	CU_ASSERT_EQUAL(vol_getattr(v, ino, &a), 0);
	return a.size;
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

static void expect_refused(struct bs_memdev *dev, const char *what);

/* ---- every operation ------------------------------------------------------ */

static void empty_and_one_byte_files_read_back_after_reopen(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t e = mkfile(v, ROOT, "empty"), o = mkfile(v, ROOT, "one");
		uint8_t b = 'x', rb[4];
		CU_ASSERT_EQUAL(vol_write(v, o, &b, 1, 0), 1);
		CU_ASSERT_EQUAL(vol_release(v, o), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		struct vol_attr a;
		CU_ASSERT_EQUAL(vol_getattr(v, e, &a), 0);
		CU_ASSERT_EQUAL(a.size, 0);
		CU_ASSERT_EQUAL(a.alloc_bytes, 0);   /* the null slice */
		CU_ASSERT_EQUAL(a.mode, S_IFREG | 0644);
		CU_ASSERT_EQUAL(vol_read(v, e, rb, 4, 0), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, o, &a), 0);
		CU_ASSERT_EQUAL(a.size, 1);
		CU_ASSERT_EQUAL(vol_read(v, o, rb, 4, 0), 1);
		CU_ASSERT_EQUAL(rb[0], 'x');
		CU_ASSERT_EQUAL(vol_read(v, o, rb, 4, 1), 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void a_write_past_the_end_leaves_a_hole_that_reads_as_zeros(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "holes");
		put(v, f, 1, 0, 1000);
		put(v, f, 2, 50000, 100);
		CU_ASSERT_EQUAL(size_of(v, f), 50100);
		CU_ASSERT(has(v, f, 1, 0, 1000));
		CU_ASSERT(zeros_at(v, f, 1000, 49000));
		CU_ASSERT(has(v, f, 2, 50000, 100));
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT(has(v, f, 1, 0, 1000));
		CU_ASSERT(zeros_at(v, f, 1000, 49000));
		CU_ASSERT(has(v, f, 2, 50000, 100));
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void truncate_to_zero_and_back_reads_zeros(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "t"), g = mkfile(v, ROOT, "after");
		put(v, f, 3, 0, 9000);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		put(v, g, 4, 0, 100);   /* f is no longer the tail */
		CU_ASSERT_EQUAL(vol_release(v, g), 0);
		CU_ASSERT_EQUAL(vol_truncate(v, f, 0), 0);
		CU_ASSERT_EQUAL(size_of(v, f), 0);
		CU_ASSERT_EQUAL(vol_truncate(v, f, 9000), 0);
		CU_ASSERT(zeros_at(v, f, 0, 9000));
		/* shrink then grow exposes zeros, never the old bytes */
		put(v, f, 5, 0, 9000);
		CU_ASSERT_EQUAL(vol_truncate(v, f, 10), 0);
		CU_ASSERT_EQUAL(vol_truncate(v, f, 9000), 0);
		CU_ASSERT(has(v, f, 5, 0, 10));
		CU_ASSERT(zeros_at(v, f, 10, 8990));
		put(v, f, 6, 20000, 10);    /* hole after a shrink */
		CU_ASSERT(zeros_at(v, f, 9000, 11000));
		CU_ASSERT(has(v, g, 4, 0, 100));
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(size_of(v, f), 20010);
		CU_ASSERT(has(v, f, 5, 0, 10));
		CU_ASSERT(zeros_at(v, f, 10, 19990));
		CU_ASSERT(has(v, f, 6, 20000, 10));
		CU_ASSERT(has(v, g, 4, 0, 100));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void fallocate_extends_the_size_and_never_shrinks(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t f = mkfile(v, ROOT, "fa");
	put(v, f, 1, 0, 100);
	CU_ASSERT_EQUAL(vol_fallocate(v, f, 50, 1000), 0);
	CU_ASSERT_EQUAL(size_of(v, f), 1050);
	CU_ASSERT_EQUAL(vol_fallocate(v, f, 0, 10), 0);
	CU_ASSERT_EQUAL(size_of(v, f), 1050);
	CU_ASSERT(has(v, f, 1, 0, 100));
	CU_ASSERT(zeros_at(v, f, 100, 950));
	/* durable on return: no close, the power goes */
	bs_memdev_fail_at(dev, 1);
	vol_close(v);
	bs_memdev_power_cycle(dev, 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT_EQUAL(size_of(v, f), 1050);
	CU_ASSERT(has(v, f, 1, 0, 100));
	CU_ASSERT(zeros_at(v, f, 100, 950));
	vol_close(v);
	bs_memdev_free(dev);
}

static void rename_over_an_existing_file_replaces_it(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t a = mkfile(v, ROOT, "a"), b = mkfile(v, ROOT, "b");
		put(v, a, 1, 0, 3000);
		put(v, b, 2, 0, 5000);
		CU_ASSERT_EQUAL(vol_release(v, a), 0);
		CU_ASSERT_EQUAL(vol_release(v, b), 0);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "a", ROOT, "b", 0), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "a"), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "b"), a);
		CU_ASSERT_EQUAL(vol_getattr(v, b, &(struct vol_attr){ 0 }), -ENOENT);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "b"), a);
		CU_ASSERT(has(v, a, 1, 0, 3000));
		struct vol_counters c;
		vol_get_counters(v, &c);
		CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void rename_of_a_directory_with_contents_moves_the_subtree(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t d = mkdir_(v, ROOT, "d"), e = mkdir_(v, ROOT, "e");
		uint64_t s = mkdir_(v, d, "sub"), f = mkfile(v, s, "f");
		put(v, f, 7, 0, 1234);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", e, "moved", 0), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "d"), 0);
		CU_ASSERT_EQUAL(ino_of(v, e, "moved"), d);
		CU_ASSERT_EQUAL(ino_of(v, d, "sub"), s);
		struct vol_attr a;
		CU_ASSERT_EQUAL(vol_getattr(v, e, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 3);
		CU_ASSERT_EQUAL(vol_getattr(v, ROOT, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 3);   /* e only */
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(ino_of(v, e, "moved"), d);
		CU_ASSERT_EQUAL(ino_of(v, s, "f"), f);
		CU_ASSERT(has(v, f, 7, 0, 1234));
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void rename_refuses_what_posix_refuses(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t d = mkdir_(v, ROOT, "d"), sub = mkdir_(v, d, "sub");
	mkdir_(v, ROOT, "full");
	mkfile(v, ino_of(v, ROOT, "full"), "x");
	mkdir_(v, ROOT, "emptydir");
	mkfile(v, ROOT, "file");
	mkfile(v, ROOT, "file2");
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", sub, "d2", 0), -EINVAL);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", d, "self", 0), -EINVAL);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", ROOT, "full", 0), -ENOTEMPTY);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "emptydir", 0), -EISDIR);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", ROOT, "file", 0), -ENOTDIR);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "file2", VOL_RENAME_NOREPLACE),
			-EEXIST);
	/* exchange: atomic with the journal only (two records change) */
	uint64_t f1 = ino_of(v, ROOT, "file"), f2 = ino_of(v, ROOT, "file2");
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "file2", VOL_RENAME_EXCHANGE),
			journaled() ? 0 : -EINVAL);
	if (journaled()) {
		CU_ASSERT(ino_of(v, ROOT, "file") == f2 && ino_of(v, ROOT, "file2") == f1);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "nope", VOL_RENAME_EXCHANGE),
				-ENOENT);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", sub, "x", VOL_RENAME_EXCHANGE), -ENOENT);
		mkfile(v, sub, "in");
		/* a directory cannot trade places with something inside it */
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", sub, "in", VOL_RENAME_EXCHANGE), -EINVAL);
		CU_ASSERT_EQUAL(vol_unlink(v, sub, "in"), 0);
	}
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "file2",
				   VOL_RENAME_EXCHANGE | VOL_RENAME_NOREPLACE), -EINVAL);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "nope", ROOT, "x", 0), -ENOENT);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", 999, "x", 0), -ENOENT);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, VOL_CONTROL_NAME, 0), -EPERM);
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "file", ROOT, "file", 0), 0);
	/* a directory over an empty directory is allowed */
	CU_ASSERT_EQUAL(vol_rename(v, ROOT, "d", ROOT, "emptydir", 0), 0);
	CU_ASSERT_EQUAL(ino_of(v, ROOT, "emptydir"), d);
	vol_close(v);
	bs_memdev_free(dev);
}

static void rmdir_and_unlink_report_the_errors_users_expect(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t d = mkdir_(v, ROOT, "d");
	mkfile(v, d, "inside");
	mkfile(v, ROOT, "f");
	CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "d"), -ENOTEMPTY);
	CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "f"), -ENOTDIR);
	CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "d"), -EISDIR);
	CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "missing"), -ENOENT);
	CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "missing"), -ENOENT);
	CU_ASSERT_EQUAL(vol_unlink(v, ROOT, VOL_CONTROL_NAME), -EPERM);
	CU_ASSERT_EQUAL(vol_unlink(v, d, "inside"), 0);
	CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "d"), 0);
	CU_ASSERT_EQUAL(ino_of(v, ROOT, "d"), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT_EQUAL(ino_of(v, ROOT, "d"), 0);
	CU_ASSERT(ino_of(v, ROOT, "f") != 0);
	vol_close(v);
	bs_memdev_free(dev);
}

static void names_are_validated_and_reserved_names_refused(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	char n255[256], n256[257];
	memset(n255, 'n', 255);
	n255[255] = 0;
	memset(n256, 'n', 256);
	n256[256] = 0;
	struct vol_attr a;
	CU_ASSERT_EQUAL(vol_create(v, ROOT, n255, 0644, 0, 0, &a), 0);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, n256, 0644, 0, 0, &a), -ENAMETOOLONG);
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, n256, 0755, 0, 0, &a), -ENAMETOOLONG);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, "", 0644, 0, 0, &a), -EINVAL);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, ".", 0644, 0, 0, &a), -EINVAL);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, "..", 0644, 0, 0, &a), -EINVAL);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, "a/b", 0644, 0, 0, &a), -EINVAL);
	CU_ASSERT_EQUAL(vol_lookup(v, ROOT, n256, &a), -ENAMETOOLONG);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, VOL_CONTROL_NAME, 0644, 0, 0, &a), -EEXIST);
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, VOL_CONTROL_NAME, 0755, 0, 0, &a), -EEXIST);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, VOL_CONTROL_JSON_NAME, 0644, 0, 0, &a), -EEXIST);
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, VOL_CONTROL_JSON_NAME, 0755, 0, 0, &a), -EEXIST);
	/* reserved at the root only */
	uint64_t d = mkdir_(v, ROOT, "d");
	CU_ASSERT_EQUAL(vol_create(v, d, VOL_CONTROL_NAME, 0644, 0, 0, &a), 0);
	CU_ASSERT_EQUAL(vol_create(v, d, VOL_CONTROL_JSON_NAME, 0644, 0, 0, &a), 0);
	CU_ASSERT_EQUAL(vol_name_ok("ok"), 0);
	CU_ASSERT_EQUAL(vol_name_ok(n256), -ENAMETOOLONG);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT_EQUAL(vol_lookup(v, ROOT, n255, &a), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

static void lookup_of_a_missing_name_and_create_of_an_existing_one_fail(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	struct vol_attr a;
	uint64_t f = mkfile(v, ROOT, "x");
	CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "y", &a), -ENOENT);
	CU_ASSERT_EQUAL(vol_lookup(v, 12345, "y", &a), -ENOENT);
	CU_ASSERT_EQUAL(vol_lookup(v, f, "y", &a), -ENOTDIR);
	CU_ASSERT_EQUAL(vol_create(v, ROOT, "x", 0644, 0, 0, &a), -EEXIST);
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "x", 0755, 0, 0, &a), -EEXIST);
	CU_ASSERT_EQUAL(vol_create(v, f, "y", 0644, 0, 0, &a), -ENOTDIR);
	CU_ASSERT_EQUAL(vol_getattr(v, 999, &a), -ENOENT);
	CU_ASSERT_EQUAL(vol_read(v, ROOT, &a, 1, 0), -EISDIR);
	CU_ASSERT_EQUAL(vol_write(v, ROOT, &a, 1, 0), -EISDIR);
	CU_ASSERT_EQUAL(vol_truncate(v, 999, 0), -ENOENT);
	vol_close(v);
	bs_memdev_free(dev);
}

static void setattr_changes_mode_owner_and_times_durably(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t f = mkfile(v, ROOT, "f");
	struct vol_attr in = { .mode = 0600, .uid = 42, .gid = 43, .atime_ns = 111,
			       .mtime_ns = 222 }, out;
	CU_ASSERT_EQUAL(vol_setattr(v, f, VOL_SET_MODE | VOL_SET_UID | VOL_SET_GID |
				    VOL_SET_ATIME | VOL_SET_MTIME, &in, &out), 0);
	CU_ASSERT_EQUAL(out.mode, S_IFREG | 0600);
	CU_ASSERT_EQUAL(out.uid, 42);
	CU_ASSERT(out.ctime_ns > 222);
	/* no vol_close: metadata is durable on return; simulate a crash */
	bs_memdev_fail_at(dev, 1);
	vol_close(v);
	bs_memdev_power_cycle(dev, 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT_EQUAL(vol_getattr(v, f, &out), 0);
	CU_ASSERT_EQUAL(out.mode, S_IFREG | 0600);
	CU_ASSERT_EQUAL(out.uid, 42);
	CU_ASSERT_EQUAL(out.gid, 43);
	CU_ASSERT_EQUAL(out.atime_ns, 111);
	CU_ASSERT_EQUAL(out.mtime_ns, 222);
	vol_close(v);
	bs_memdev_free(dev);
}

struct list {
	int n;
	uint64_t last_pos;
	int stop_after;
	char names[64][16];
};

static int list_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct list *l = ctx;
	(void)a;
	if (l->n < 64)
		snprintf(l->names[l->n], 16, "%s", name);
	l->n++;
	l->last_pos = pos;
	return l->stop_after && l->n >= l->stop_after;
}

static void readdir_lists_every_entry_and_resumes_at_a_position(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	char name[16];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "n%02d", i);
		mkfile(v, ROOT, name);
	}
	struct list l = { .stop_after = 7 };
	CU_ASSERT_EQUAL(vol_readdir(v, ROOT, 0, list_fill, &l), 0);
	CU_ASSERT_EQUAL(l.n, 7);
	struct list rest = { 0 };
	CU_ASSERT_EQUAL(vol_readdir(v, ROOT, l.last_pos, list_fill, &rest), 0);
	CU_ASSERT_EQUAL(rest.n, 13);
	int seen[20] = { 0 };
	for (int i = 0; i < 7; i++)
		seen[atoi(l.names[i] + 1)]++;
	for (int i = 0; i < 13; i++)
		seen[atoi(rest.names[i] + 1)]++;
	for (int i = 0; i < 20; i++)
		CU_ASSERT_EQUAL(seen[i], 1);
	CU_ASSERT_EQUAL(vol_readdir(v, ino_of(v, ROOT, "n00"), 0, list_fill, &rest),
			-ENOTDIR);
	vol_close(v);
	bs_memdev_free(dev);
}

static void ten_thousand_files_fit_in_one_directory(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	char name[32];
	uint64_t d = mkdir_(v, ROOT, "many");
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof name, "file-%05d", i);
		if (vol_create(v, d, name, 0644, 0, 0, NULL)) {
			CU_FAIL("create failed");
			break;
		}
	}
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	struct list l = { 0 };
	CU_ASSERT_EQUAL(vol_readdir(v, d, 0, list_fill, &l), 0);
	CU_ASSERT_EQUAL(l.n, 10000);
	int found = 0;
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof name, "file-%05d", i);
		found += ino_of(v, d, name) != 0;
	}
	CU_ASSERT_EQUAL(found, 10000);
	struct vol_attr a;
	CU_ASSERT_EQUAL(vol_getattr(v, d, &a), 0);
	CU_ASSERT_EQUAL(a.nlink, 2);
	vol_close(v);
	bs_memdev_free(dev);
}

static void a_tree_twenty_levels_deep_survives_reopen(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t p = ROOT, ids[20];
	for (int i = 0; i < 20; i++)
		ids[i] = p = mkdir_(v, p, "level");
	uint64_t f = mkfile(v, p, "leaf");
	put(v, f, 9, 0, 99);
	/* the deepest cannot take its ancestor */
	CU_ASSERT_EQUAL(vol_rename(v, ids[0], "level", ids[19], "x", 0), -EINVAL);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	p = ROOT;
	for (int i = 0; i < 20; i++) {
		p = ino_of(v, p, "level");
		CU_ASSERT_EQUAL(p, ids[i]);
	}
	CU_ASSERT(has(v, ino_of(v, p, "leaf"), 9, 0, 99));
	vol_close(v);
	bs_memdev_free(dev);
}

static void release_trims_the_allocation_to_the_size(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "f");
		struct vol_attr a;
		for (int i = 0; i < 10; i++)
			put(v, f, 1, (uint64_t)i * 1000, 1000);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT(a.alloc_bytes >= a.size);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.size, 10000);
		/* the allocator's own rounding only (GhostTree: 32 bytes) */
		CU_ASSERT(a.alloc_bytes >= 10000 && a.alloc_bytes < 10000 + 4096);
		CU_ASSERT(has(v, f, 1, 0, 10000));
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* A file written in one request gets exactly that capacity (rounded by
 * the allocator only): files written side by side, then closed, leave no
 * holes between them (GhostTree, FirstFit: no free byte more than
 * before).  A write past that grows geometrically, by at least
 * VOL_GROW_MIN. */
static void a_file_written_in_one_request_gets_exactly_its_size(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f[4];
		struct vol_attr a;
		char name[8];
		struct bs_alloc_stats before, after;
		bs_alloc_stats(vol_allocator(v), &before);
		for (int i = 0; i < 4; i++) {
			snprintf(name, sizeof name, "f%d", i);
			f[i] = mkfile(v, ROOT, name);
		}
		for (int i = 0; i < 4; i++)
			put(v, f[i], 10 + (uint64_t)i, 0, 7);
		for (int i = 0; i < 4; i++) {
			CU_ASSERT_EQUAL(vol_getattr(v, f[i], &a), 0);
			/* Slab: a block of its fixed size */
			CU_ASSERT(a.alloc_bytes >= 7 && (a.alloc_bytes < 4096 || k == BS_ALLOC_SLAB));
			CU_ASSERT_EQUAL(vol_release(v, f[i]), 0);
		}
		bs_alloc_stats(vol_allocator(v), &after);
		if (k == BS_ALLOC_GHOST || k == BS_ALLOC_FIRSTFIT)
			CU_ASSERT_EQUAL(after.free_bytes, before.free_bytes);
		for (int i = 0; i < 4; i++)
			CU_ASSERT(has(v, f[i], 10 + (uint64_t)i, 0, 7));
		/* an append past the allocator's rounding: geometric from here on */
		put(v, f[0], 10, 7, 200);
		CU_ASSERT_EQUAL(vol_getattr(v, f[0], &a), 0);
		CU_ASSERT(a.alloc_bytes >= 4096);
		CU_ASSERT(has(v, f[0], 10, 0, 207));
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void appending_64_mib_in_4_kib_writes_costs_at_most_40_reallocs(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	uint64_t f = mkfile(v, ROOT, "big");
	/* another file behind it, so growth is not always at the tail */
	uint64_t g = mkfile(v, ROOT, "other");
	uint8_t *b = malloc(4096);
	struct vol_counters c0, c1;
	put(v, g, 1, 0, 100);
	CU_ASSERT_EQUAL(vol_release(v, g), 0);
	vol_get_counters(v, &c0);
	for (uint64_t off = 0; off < (64ULL << 20); off += 4096) {
		h_pattern(b, 4096, 5, off);
		if (vol_write(v, f, b, 4096, off) != 4096) {
			CU_FAIL("write failed");
			break;
		}
	}
	CU_ASSERT_EQUAL(vol_release(v, f), 0);
	vol_get_counters(v, &c1);
	printf("\n64 MiB: %llu reallocs (%llu in place), %llu syncs, %llu bytes copied\n",
	       (unsigned long long)(c1.reallocs - c0.reallocs),
	       (unsigned long long)(c1.reallocs_in_place - c0.reallocs_in_place),
	       (unsigned long long)(c1.syncs - c0.syncs),
	       (unsigned long long)(c1.bytes_copied - c0.bytes_copied));
	CU_ASSERT(c1.reallocs - c0.reallocs <= 40);
	CU_ASSERT(c1.syncs - c0.syncs <= 200);
	CU_ASSERT_EQUAL(size_of(v, f), 64ULL << 20);
	CU_ASSERT(has(v, f, 5, (64ULL << 20) - 4096, 4096));
	CU_ASSERT(has(v, f, 5, 12345, 100000));
	free(b);
	vol_close(v);
	bs_memdev_free(dev);
}

/* With the journal, a sequential write costs a number of syncs that does
 * not grow with its size up to 64 MiB (a large file grows in place at the
 * tail by a whole 64 MiB step, so growth needs no barrier per doubling),
 * and one more per 64 MiB past that.  The spare capacity is trimmed at
 * the release. */
static uint64_t seq_write_syncs(uint64_t size)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_memdev *j = bs_memdev_new_sibling(dev);
	struct bs_io *io, *jio;
	struct vol *v = NULL;
	struct vol_error err = { "" };
	CU_ASSERT_FATAL(j != NULL && bs_io_mem_open(dev, &io) == 0 && bs_io_mem_open(j, &jio) == 0);
	struct vol_opts o = { .allocator = BS_ALLOC_GHOST, .create = true, .journal_io = jio };
	CU_ASSERT_FATAL(vol_open_io(io, &o, &v, &err) == 0);
	uint64_t f = mkfile(v, ROOT, "seq");
	static uint8_t b[128 << 10];
	struct vol_counters c0, c1;
	vol_get_counters(v, &c0);
	for (uint64_t off = 0; off < size; off += sizeof b) {
		h_pattern(b, sizeof b, 9, off);
		if (vol_write(v, f, b, sizeof b, off) != (ssize_t)sizeof b) {
			CU_FAIL("write failed");
			break;
		}
	}
	CU_ASSERT_EQUAL(vol_release(v, f), 0);
	vol_get_counters(v, &c1);
	struct vol_attr a;
	CU_ASSERT(vol_getattr(v, f, &a) == 0 && a.size == size);
	CU_ASSERT(has(v, f, 9, size - 4096, 4096));
	struct vol_statfs st;
	CU_ASSERT_EQUAL(vol_statfs(v, &st), 0);
	/* trimmed at the release: no 64 MiB of spare capacity left behind */
	CU_ASSERT(st.total_bytes < size + (1ULL << 20));
	vol_close(v);
	bs_memdev_free(dev);
	return c1.syncs - c0.syncs;
}

static void a_sequential_write_costs_syncs_that_do_not_grow_with_its_size(void)
{
	uint64_t s4 = seq_write_syncs(4ULL << 20), s48 = seq_write_syncs(48ULL << 20);
	uint64_t s160 = seq_write_syncs(160ULL << 20);
	printf("\nsyncs: 4 MiB %llu, 48 MiB %llu, 160 MiB %llu\n", (unsigned long long)s4,
	       (unsigned long long)s48, (unsigned long long)s160);
	CU_ASSERT(s48 <= s4 + 1);
	CU_ASSERT(s160 <= s48 + 3);   /* 160 MiB: at most one per 64 MiB more */
}

/* The same with another file appended to every 4 MiB, so the big file is
 * often not the tail and must move (copy-on-write); the other file's own
 * reallocs are subtracted. */
static void appending_behind_another_file_still_costs_o_log_n_reallocs(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "big"), g = mkfile(v, ROOT, "other");
		uint8_t *b = malloc(4096);
		uint64_t other = 0, glen = 0, total = 16ULL << 20;
		struct vol_counters c0, c1, x0, x1;
		vol_get_counters(v, &c0);
		for (uint64_t off = 0; off < total; off += 4096) {
			if (off % (4ULL << 20) == 0) {
				vol_get_counters(v, &x0);
				put(v, g, 8, glen, 100);
				glen += 100;
				vol_release(v, g);
				vol_get_counters(v, &x1);
				other += x1.reallocs - x0.reallocs;
			}
			h_pattern(b, 4096, 6, off);
			if (vol_write(v, f, b, 4096, off) != 4096) {
				CU_FAIL("write failed");
				break;
			}
		}
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		vol_get_counters(v, &c1);
		CU_ASSERT(c1.reallocs - c0.reallocs - other <= 40);
		CU_ASSERT(has(v, f, 6, 0, 1 << 20));
		CU_ASSERT(has(v, f, 6, total - 100000, 100000));
		CU_ASSERT(has(v, g, 8, 0, glen));
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(size_of(v, f), total);
		CU_ASSERT(has(v, f, 6, total - 4096, 4096));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		free(b);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void a_file_larger_than_64_mib_round_trips_on_a_real_file(void)
{
	char *path = h_tmp_path("big.bst");
	struct vol_opts o = { .create = true };
	struct vol_error err;
	struct vol *v;
	size_t chunk = 1 << 20, total = 65 * chunk + 12345;
	uint8_t *b = malloc(chunk);
	CU_ASSERT_FATAL(vol_open(path, &o, &v, &err) == 0);
	/* a new image gets the default allocator */
	char *t;
	size_t tl;
	CU_ASSERT_FATAL(vol_stats_text(v, &t, &tl) == 0);
	CU_ASSERT(strncmp(t, "allocator ghost\n", 16) == 0);
	free(t);
	uint64_t small = mkfile(v, ROOT, "small");
	put(v, small, 2, 0, 10);
	uint64_t f = mkfile(v, ROOT, "big");
	for (size_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;
		h_pattern(b, n, 77, off);
		CU_ASSERT_EQUAL(vol_write(v, f, b, n, off), (ssize_t)n);
	}
	CU_ASSERT_EQUAL(vol_close(v), 0);
	o.create = false;
	CU_ASSERT_FATAL(vol_open(path, &o, &v, &err) == 0);
	CU_ASSERT_EQUAL(size_of(v, f), total);
	bool ok = true;
	for (size_t off = 0; off < total && ok; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;
		ok = vol_read(v, f, b, chunk, off) == (ssize_t)n && h_pattern_ok(b, n, 77, off);
	}
	CU_ASSERT(ok);
	CU_ASSERT(has(v, small, 2, 0, 10));
	struct vol_statfs sf;
	CU_ASSERT_EQUAL(vol_statfs(v, &sf), 0);
	CU_ASSERT(sf.total_bytes >= total);
	CU_ASSERT_EQUAL(sf.name_max, 255);
	vol_close(v);
	unlink(path);
	free(path);
	free(b);
}

static void the_stats_text_has_every_key_of_section_6(void)
{
	static const char *keys[] = {
		"allocator", "magic", "image_bytes", "payload_bytes", "files", "live_bytes",
		"backing_bytes", "free_blocks", "free_bytes", "largest_free_bytes",
		"fragmentation", "overhead_bytes", "allocs", "reallocs", "reallocs_in_place",
		"deallocs", "bytes_copied", "syncs", "leaked_bytes_reclaimed", "directories",
		"shared_writes",
	};
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "f");
		mkfile(v, ROOT, "g");
		put(v, f, 1, 0, 777);
		vol_release(v, f);
		char *t;
		size_t len;
		CU_ASSERT_FATAL(vol_stats_text(v, &t, &len) == 0);
		CU_ASSERT_EQUAL(strlen(t), len);
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			char pat[64];
			snprintf(pat, sizeof pat, "\n%s ", keys[i]);
			bool at_start = strncmp(t, keys[i], strlen(keys[i])) == 0;
			if (!at_start && !strstr(t, pat))
				printf("\nmissing key %s\n", keys[i]);
			CU_ASSERT(at_start || strstr(t, pat) != NULL);
		}
		CU_ASSERT(strstr(t, "\nfiles 2\n") != NULL);
		CU_ASSERT(strstr(t, "\nlive_bytes 777\n") != NULL);
		CU_ASSERT(strstr(t, "\nallocs 2\n") != NULL);
		char want[32];
		snprintf(want, sizeof want, "allocator %s\n", bs_alloc_kind_name(k));
		CU_ASSERT(strncmp(t, want, strlen(want)) == 0);
		free(t);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* ---- mount: detection, refusal, adoption, reclamation --------------------- */

static void an_allocator_mismatch_is_refused_and_the_image_untouched(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_LINEAR, true);
	mkfile(v, ROOT, "f");
	vol_close(v);
	uint8_t *before, *after;
	size_t lb, la;
	bs_memdev_snapshot(dev, &before, &lb);
	struct vol_opts o = { .allocator = BS_ALLOC_GHOST };
	struct vol_error err = { "" };
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EINVAL);
	CU_ASSERT(strstr(err.msg, "mismatch") != NULL);
	bs_memdev_snapshot(dev, &after, &la);
	CU_ASSERT(lb == la && memcmp(before, after, lb) == 0);
	/* absent option: the image's own allocator (Linear, found by catalog) */
	o.allocator = BS_ALLOC_NONE;
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), 0);
	free(before);
	free(after);
	bs_memdev_free(dev);
}

/* block_size only means something for Slab: on a new image of another
 * allocator, on an existing one, or below Slab's minimum it is refused
 * (nothing formatted, nothing written). */
static void block_size_is_refused_where_it_means_nothing(void)
{
	struct vol_error err = { "" };
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { .allocator = BS_ALLOC_GHOST, .block_size = 512, .create = true };
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EINVAL);
	CU_ASSERT(strstr(err.msg, "block_size") != NULL);
	o.allocator = BS_ALLOC_NONE;   /* the default, GhostTree */
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EINVAL);
	o.allocator = BS_ALLOC_SLAB;
	o.block_size = 4;
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EINVAL);
	CU_ASSERT(strstr(err.msg, "at least 8") != NULL);
	uint8_t *img;
	size_t len;
	CU_ASSERT(bs_memdev_snapshot(dev, &img, &len) == 0 && len == 0);
	free(img);
	bs_memdev_free(dev);

	FOR_EACH_KIND(k) {
		if (k == BS_ALLOC_SLAB)
			continue;
		dev = bs_memdev_new();
		vol_close(vopen(dev, k, true));
		uint8_t *before, *after;
		size_t lb, la;
		bs_memdev_snapshot(dev, &before, &lb);
		struct vol_opts e = { .block_size = 4096 };
		CU_ASSERT_EQUAL(vopen_err(dev, &e, &err), -EINVAL);
		CU_ASSERT(strstr(err.msg, "block_size") != NULL);
		bs_memdev_snapshot(dev, &after, &la);
		CU_ASSERT(lb == la && memcmp(before, after, lb) == 0);
		free(before);
		free(after);
		bs_memdev_free(dev);
	}
}

static void an_image_of_another_program_is_refused_untouched(void)
{
	FOR_EACH_KIND(k) {
		if (k == BS_ALLOC_LINEAR)
			continue;   /* Linear has no magic: no catalog = not ours */
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io;
		struct bstack *bs;
		struct bs_alloc *a;
		struct bs_slice s;
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
		CU_ASSERT_FATAL(bstack_create(io, &bs) == 0);
		CU_ASSERT_FATAL(bs_alloc_create(bs, k, NULL, &a) == 0);
		CU_ASSERT_FATAL(bs_alloc(a, 5000, &s) == 0);
		bs_alloc_close(a);
		bstack_close(bs);
		uint8_t *before, *after;
		size_t lb, la;
		bs_memdev_snapshot(dev, &before, &lb);
		struct vol_opts o = { 0 };
		struct vol_error err = { "" };
		CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EUCLEAN);
		CU_ASSERT(strstr(err.msg, "another program") != NULL);
		bs_memdev_snapshot(dev, &after, &la);
		CU_ASSERT(lb == la && memcmp(before, after, lb) == 0);
		free(before);
		free(after);
		bs_memdev_free(dev);
	}
}

static void an_empty_allocator_image_is_adopted(void)
{
	FOR_EACH_KIND(k) {
		if (k == BS_ALLOC_LINEAR)
			continue;
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io;
		struct bstack *bs;
		struct bs_alloc *a;
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
		CU_ASSERT_FATAL(bstack_create(io, &bs) == 0);
		CU_ASSERT_FATAL(bs_alloc_create(bs, k, NULL, &a) == 0);
		bs_alloc_close(a);
		bstack_close(bs);
		struct vol *v = vopen(dev, BS_ALLOC_NONE, false);
		mkfile(v, ROOT, "mine");
		vol_close(v);
		v = vopen(dev, k, false);
		CU_ASSERT(ino_of(v, ROOT, "mine") != 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void not_a_bstack_image_and_an_empty_device_are_refused(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { 0 };
	struct vol_error err = { "" };
	CU_ASSERT(vopen_err(dev, &o, &err) < 0);
	CU_ASSERT(strstr(err.msg, "not a bstack image") != NULL);
	CU_ASSERT_EQUAL(bs_memdev_load(dev, "hello world, this is text", 25), 0);
	CU_ASSERT(vopen_err(dev, &o, &err) < 0);
	CU_ASSERT(strstr(err.msg, "not a bstack image") != NULL);
	bs_memdev_free(dev);
}

/* Space held by the allocator that no record names is reclaimed once. */
static void leaked_space_is_reclaimed_at_mount_and_only_once(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "keep");
		put(v, f, 3, 0, 4000);
		vol_close(v);
		/* another program's leak, as a crash between alloc and repoint */
		struct bs_io *io;
		struct bstack *bs;
		struct bs_alloc *a;
		struct bs_slice s;
		enum bs_alloc_kind dk;
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
		CU_ASSERT_FATAL(bstack_open(io, &bs) == 0);
		CU_ASSERT_FATAL(bs_alloc_detect(bs, &dk) == 0);
		CU_ASSERT_FATAL(bs_alloc_open(bs, dk == BS_ALLOC_NONE ? BS_ALLOC_LINEAR : dk,
					      &a) == 0);
		CU_ASSERT_FATAL(bs_alloc(a, 3000, &s) == 0);
		bs_alloc_close(a);
		bstack_close(bs);
		struct vol_counters c;
		v = vopen(dev, k, false);
		vol_get_counters(v, &c);
		CU_ASSERT(c.leaked_bytes_reclaimed >= 3000);
		CU_ASSERT(has(v, f, 3, 0, 4000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		v = vopen(dev, k, false);
		vol_get_counters(v, &c);
		CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* The raw catalog of a closed image, for crafting bad ones: records are
 * found and written back through cat_scan, in either layout. */
struct raw {
	struct bstack *bs;
	struct bs_slice root;
	uint32_t slot;   /* CAT_SLOT_SIZE (paired) or CAT_UNIT_SIZE (compact) */
};

static void raw_open(struct bs_memdev *dev, struct raw *r)
{
	struct bs_io *io;
	uint8_t ref[16], hdr[CAT_HDR_SIZE];
	uint64_t n;
	uint32_t ver;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(bstack_open(io, &r->bs) == 0);
	CU_ASSERT_FATAL(bstack_get(r->bs, 0, ref, 16) == 0);
	r->root = cat_root_decode(ref);
	/* a root reference crafted earlier may point at no catalog */
	if (bstack_get(r->bs, r->root.off, hdr, sizeof hdr) ||
	    cat_hdr_decode(hdr, &n, &ver, &r->slot))
		r->slot = 0;
}

struct raw_pick {
	uint64_t ino, seq, off;
	struct cat_rec rec;
};

static int raw_newest(void *ctx, uint64_t off, size_t size, const struct cat_rec *rec)
{
	struct raw_pick *p = ctx;
	(void)size;
	if (rec->ino == p->ino && rec->seq > p->seq && rec->kind != CAT_TOMB) {
		p->seq = rec->seq;
		p->off = off;
		p->rec = *rec;
		p->rec.target = NULL;   /* points into cat_scan's buffer */
	}
	return 0;
}

/* Find the newest valid record of inode ino; its payload offset. */
static uint64_t raw_find(struct raw *r, uint64_t ino, struct cat_rec *out)
{
	struct raw_pick p = { .ino = ino };
	CU_ASSERT_FATAL(cat_scan(r->bs, r->root, raw_newest, &p) == 0);
	CU_ASSERT_FATAL(p.off != 0);
	*out = p.rec;
	return p.off;
}

/* Write rec at off: a whole slot, or (compact) the units it takes. */
static void raw_put(struct raw *r, uint64_t off, const struct cat_rec *rec)
{
	uint8_t s[CAT_SLOT_SIZE];
	size_t size = r->slot == CAT_SLOT_SIZE ? CAT_SLOT_SIZE
					       : cat_rec_units(rec) * CAT_UNIT_SIZE;
	cat_rec_encode_n(rec, s, size);
	CU_ASSERT_FATAL(bstack_set(r->bs, off, s, size) == 0);
}

static void a_record_naming_free_space_is_refused(void)
{
	FOR_EACH_KIND(k) {
		if (k == BS_ALLOC_LINEAR)
			continue;   /* Linear holds no free space to disagree with */
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t a = mkfile(v, ROOT, "a"), b = mkfile(v, ROOT, "b");
		uint64_t c = mkfile(v, ROOT, "c");
		/* in address order, c the tail: b's space is free in the middle */
		put(v, a, 1, 0, 20000);
		vol_release(v, a);
		put(v, b, 2, 0, 20000);
		vol_release(v, b);
		put(v, c, 3, 0, 20000);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		/* remember b's record, remove b (its space becomes free), then
		 * bring the old record back as a newer version */
		struct raw raw;
		struct cat_rec rb;
		raw_open(dev, &raw);
		uint64_t pos = raw_find(&raw, b, &rb);
		bstack_close(raw.bs);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "b"), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		raw_open(dev, &raw);
		rb.seq = 1000000;
		raw_put(&raw, pos, &rb);
		bstack_close(raw.bs);
		/* found either by the allocator's slice check or by reclaim */
		struct vol_opts o = { 0 };
		struct vol_error err = { "" };
		CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), -EUCLEAN);
		CU_ASSERT(strstr(err.msg, "not an allocation") != NULL ||
			  strstr(err.msg, "disagrees with the allocator") != NULL);
		bs_memdev_free(dev);
	}
}

static void a_second_open_of_an_image_in_use_is_refused(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_LINEAR, true);
	struct vol_opts o = { 0 };
	struct vol_error err = { "" };
	CU_ASSERT(vopen_err(dev, &o, &err) < 0);
	CU_ASSERT(strstr(err.msg, "in use") != NULL);
	vol_close(v);
	CU_ASSERT_EQUAL(vopen_err(dev, &o, &err), 0);
	bs_memdev_free(dev);
}

/* Write, make durable, then lose the power before any close. */
static void fsync_and_sync_writes_make_data_durable_before_close(void)
{
	FOR_EACH_KIND(k) {
		for (int mode = 0; mode < 2; mode++) {
			struct bs_memdev *dev = bs_memdev_new();
			struct bs_io *io;
			struct vol *v;
			struct vol_error err;
			struct vol_opts o = { .allocator = k, .create = true, .sync_writes = mode };
			CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
			CU_ASSERT_FATAL(vopen_io(dev, io, &o, &v, &err) == 0);
			uint64_t f = mkfile(v, ROOT, "f");
			put(v, f, 4, 0, 3000);
			put(v, f, 5, 3000, 3000);
			if (mode == 0)
				CU_ASSERT_EQUAL(vol_fsync(v, f), 0);
			bs_memdev_fail_at(dev, 1);   /* the power goes now */
			vol_close(v);
			bs_memdev_power_cycle(dev, 0);
			v = vopen(dev, k, false);
			CU_ASSERT_EQUAL(size_of(v, f), 6000);
			CU_ASSERT(has(v, f, 4, 0, 3000));
			CU_ASSERT(has(v, f, 5, 3000, 3000));
			/* the spare capacity (8192) was trimmed at mount */
			struct vol_attr at;
			CU_ASSERT_EQUAL(vol_getattr(v, f, &at), 0);
			if (k != BS_ALLOC_SLAB)
				CU_ASSERT(at.alloc_bytes < 8192);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			vol_close(v);
			bs_memdev_free(dev);
		}
	}
}

struct thr {
	struct vol *v;
	int id;
	int fails;
};

static void *thr_main(void *p)
{
	struct thr *t = p;
	char name[16];
	uint8_t buf[1000];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "t%d-%d", t->id, i);
		struct vol_attr a;
		if (vol_create(t->v, ROOT, name, 0644, 0, 0, &a)) {
			t->fails++;
			continue;
		}
		for (int j = 0; j < 5; j++) {
			h_pattern(buf, sizeof buf, (uint64_t)t->id * 100 + (uint64_t)i,
				  (uint64_t)j * sizeof buf);
			if (vol_write(t->v, a.ino, buf, sizeof buf, (uint64_t)j * sizeof buf) !=
			    (ssize_t)sizeof buf)
				t->fails++;
			if (vol_read(t->v, a.ino, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
				t->fails++;
		}
		if (vol_release(t->v, a.ino))
			t->fails++;
	}
	return NULL;
}

/* Four threads of fn on v at once; each must report no failure. */
static void run_four(struct vol *v, void *(*fn)(void *))
{
	pthread_t th[4];
	struct thr t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ v, i, 0 };
		pthread_create(&th[i], NULL, fn, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(t[i].fails, 0);
	}
}

static void concurrent_writers_on_different_files_all_land(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	run_four(v, thr_main);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	char name[16];
	int ok = 0;
	for (int id = 0; id < 4; id++) {
		for (int i = 0; i < 20; i++) {
			snprintf(name, sizeof name, "t%d-%d", id, i);
			uint64_t ino = ino_of(v, ROOT, name);
			bool good = ino && size_of(v, ino) == 5000;
			for (int j = 0; j < 5 && good; j++)
				good = has(v, ino, (uint64_t)id * 100 + (uint64_t)i,
					   (uint64_t)j * 1000, 1000);
			ok += good;
		}
	}
	CU_ASSERT_EQUAL(ok, 80);
	CU_ASSERT_EQUAL(check_errors(v), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

/* The control file's figure `key` of v (-1: missing). */
static int64_t stat_of(struct vol *v, const char *key)
{
	char *t, pat[64];
	size_t len;
	int64_t val = -1;
	CU_ASSERT_FATAL(vol_stats_text(v, &t, &len) == 0);
	snprintf(pat, sizeof pat, "\n%s ", key);
	const char *at = strstr(t, pat);
	if (at)
		val = strtoll(at + strlen(pat), NULL, 10);
	free(t);
	return val;
}

/* Two open files of 256 KiB, written, synced and checkpointed: their
 * allocations are durable and no record of the journal's epoch covers
 * their bytes, so overwrites may go in place. */
static struct vol *two_open_files(struct bs_memdev *dev, uint64_t *a, uint64_t *b)
{
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	*a = mkfile(v, ROOT, "a");
	*b = mkfile(v, ROOT, "b");
	CU_ASSERT_FATAL(vol_open_file(v, *a) == 0 && vol_open_file(v, *b) == 0);
	put(v, *a, 1, 0, 256 << 10);
	put(v, *b, 2, 0, 256 << 10);
	CU_ASSERT_EQUAL(vol_fsync(v, *a), 0);
	CU_ASSERT_EQUAL(vol_fsync(v, *b), 0);
	CU_ASSERT_EQUAL(vol_sync_all(v), 0);
	return v;
}

/* A writer held inside the device: the hook stops thread A's first
 * write of the image until the main thread releases it (or 5 s pass),
 * and notes a write of another thread that reaches the device meanwhile. */
struct held {
	struct vol *v;
	uint64_t ino[2];
	pthread_t a;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool a_set, inside, other_seen, released, timed_out;
	ssize_t r[2];
};

struct held_arg {
	struct held *h;
	int k;
};

static bool held_wait(struct held *h, const bool *flag)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	while (!*flag && !h->timed_out)
		if (pthread_cond_timedwait(&h->cv, &h->mu, &until))
			h->timed_out = true;
	return *flag;
}

static void held_hook(void *arg)
{
	struct held *h = arg;
	pthread_mutex_lock(&h->mu);
	if (h->a_set && pthread_equal(pthread_self(), h->a) && !h->inside) {
		h->inside = true;
		pthread_cond_broadcast(&h->cv);
		held_wait(h, &h->released);
	} else if (h->inside && !h->released) {
		h->other_seen = true;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
}

static void *held_writer(void *arg)
{
	struct held_arg *ha = arg;
	struct held *h = ha->h;
	uint8_t buf[4096];
	if (ha->k == 0) {
		pthread_mutex_lock(&h->mu);
		h->a = pthread_self();
		h->a_set = true;
		pthread_mutex_unlock(&h->mu);
	}
	h_pattern(buf, sizeof buf, 3 + (uint64_t)ha->k, 8192 * (uint64_t)ha->k);
	h->r[ha->k] = vol_write(h->v, h->ino[ha->k], buf, sizeof buf, 8192 * (uint64_t)ha->k);
	return NULL;
}

/* Issue 12: writes of different files proceed in parallel.  Thread A's
 * overwrite of file a is held inside the device; meanwhile thread B's
 * overwrite of file b reaches the device too (a volume lock held across
 * A's write would keep it waiting until the hook gives up).  B's size
 * and times are set once A's copy is done. */
static void writes_of_different_files_proceed_in_parallel(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	uint64_t a, b;
	struct vol *v = two_open_files(dev, &a, &b);
	int64_t shared0 = stat_of(v, "shared_writes");
	struct held h = { .v = v, .ino = { a, b }, .mu = PTHREAD_MUTEX_INITIALIZER,
			  .cv = PTHREAD_COND_INITIALIZER };
	struct held_arg ha[2] = { { &h, 0 }, { &h, 1 } };
	pthread_t th[2];
	bs_memdev_on_write(dev, held_hook, &h);
	CU_ASSERT_FATAL(pthread_create(&th[0], NULL, held_writer, &ha[0]) == 0);
	pthread_mutex_lock(&h.mu);
	bool a_inside = held_wait(&h, &h.inside);
	pthread_mutex_unlock(&h.mu);
	CU_ASSERT_FATAL(pthread_create(&th[1], NULL, held_writer, &ha[1]) == 0);
	pthread_mutex_lock(&h.mu);
	bool b_beside = held_wait(&h, &h.other_seen);
	h.released = true;
	pthread_cond_broadcast(&h.cv);
	pthread_mutex_unlock(&h.mu);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	bs_memdev_on_write(dev, NULL, NULL);
	CU_ASSERT(a_inside);
	CU_ASSERT(b_beside);
	CU_ASSERT_EQUAL(h.r[0], 4096);
	CU_ASSERT_EQUAL(h.r[1], 4096);
	CU_ASSERT_EQUAL(stat_of(v, "shared_writes") - shared0, 2);
	CU_ASSERT(has(v, a, 3, 0, 4096) && has(v, a, 1, 4096, (256 << 10) - 4096));
	CU_ASSERT(has(v, b, 2, 0, 8192) && has(v, b, 4, 8192, 4096));
	CU_ASSERT(has(v, b, 2, 12288, (256 << 10) - 12288));
	CU_ASSERT_EQUAL(vol_release(v, a), 0);
	CU_ASSERT_EQUAL(vol_release(v, b), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT(has(v, a, 3, 0, 4096) && has(v, b, 4, 8192, 4096));
	CU_ASSERT_EQUAL(size_of(v, a), 256 << 10);
	CU_ASSERT_EQUAL(check_errors(v), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

/* A write on the shared path whose file changes between its copy and its
 * size update (here a truncate to 8 KiB; through FUSE the kernel's inode
 * lock keeps them apart, through the volume's API nothing does) is done
 * again on the exclusive path: the file ends as if the write came after
 * the truncate — a hole of zeros, then the written bytes. */
struct gap {
	struct vol *v;
	uint64_t ino;
	int calls, truncated;
};

static void gap_truncate(void *arg)
{
	struct gap *g = arg;
	if (g->calls++ == 0)
		g->truncated = vol_truncate(g->v, g->ino, 8192) == 0;
}

static void a_file_changed_under_a_shared_write_gets_it_again_exclusively(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	uint64_t a, b;
	struct vol *v = two_open_files(dev, &a, &b);
	int64_t shared0 = stat_of(v, "shared_writes");
	struct gap g = { v, a, 0, 0 };
	vol_test_write_gap(v, gap_truncate, &g);
	put(v, a, 5, 16384, 4096);
	vol_test_write_gap(v, NULL, NULL);
	CU_ASSERT_EQUAL(g.calls, 1);
	CU_ASSERT(g.truncated);
	CU_ASSERT_EQUAL(stat_of(v, "shared_writes"), shared0);
	CU_ASSERT_EQUAL(size_of(v, a), 16384 + 4096);
	CU_ASSERT(has(v, a, 1, 0, 8192));
	CU_ASSERT(zeros_at(v, a, 8192, 8192));
	CU_ASSERT(has(v, a, 5, 16384, 4096));
	/* without a change in between, the same write stays on the shared path */
	put(v, a, 6, 0, 4096);
	CU_ASSERT_EQUAL(stat_of(v, "shared_writes"), shared0 + 1);
	CU_ASSERT(has(v, a, 6, 0, 4096) && has(v, a, 1, 4096, 4096));
	CU_ASSERT_EQUAL(vol_release(v, a), 0);
	CU_ASSERT_EQUAL(vol_release(v, b), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_NONE, false);
	CU_ASSERT_EQUAL(size_of(v, a), 16384 + 4096);
	CU_ASSERT(has(v, a, 6, 0, 4096) && zeros_at(v, a, 8192, 8192));
	CU_ASSERT(has(v, a, 5, 16384, 4096));
	CU_ASSERT_EQUAL(check_errors(v), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

/* ---- replies that wait for a commit (vol_when_durable) ----------------------- */

struct durable_cb {
	struct vol_waiter w;   /* first: durable_done gets it back */
	int calls, r;
	pthread_t by;
};

static void durable_done(struct vol_waiter *w, int r)
{
	struct durable_cb *c = (struct durable_cb *)w;
	c->calls++;
	c->r = r;
	c->by = pthread_self();
}

/* A volume with a journal whatever BSTACKFS_TEST_JOURNAL says. */
static struct vol *vopen_journaled(struct bs_memdev *dev, struct bs_memdev **jdev)
{
	struct bs_io *jio;
	*jdev = bs_memdev_new_sibling(dev);
	CU_ASSERT_FATAL(*jdev && bs_io_mem_open(*jdev, &jio) == 0);
	struct vol_opts o = { .create = true, .uid = 1, .gid = 2, .journal_io = jio };
	return vopen_as(dev, &o);
}

/* Alone, an operation run deferred is made durable by the thread that
 * asks: done runs at once, in it, and the record survives a power cut. */
static void a_deferred_operation_alone_is_made_durable_by_its_own_thread(void)
{
	struct bs_memdev *dev = bs_memdev_new(), *jdev;
	struct vol *v = vopen_journaled(dev, &jdev);
	struct vol_attr a;
	struct durable_cb cb = { .w.done = durable_done };
	uint64_t syncs = bs_memdev_syncs(jdev);
	vol_defer_begin();
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "d", 0755, 1, 2, &a), 0);
	uint64_t want = vol_defer_end();
	CU_ASSERT(want > 0);
	CU_ASSERT_EQUAL(bs_memdev_syncs(jdev), syncs);   /* nothing durable yet */
	vol_when_durable(v, want, &cb.w);
	CU_ASSERT_EQUAL(cb.calls, 1);
	CU_ASSERT_EQUAL(cb.r, 0);
	CU_ASSERT(pthread_equal(cb.by, pthread_self()));
	CU_ASSERT(bs_memdev_syncs(jdev) > syncs);
	/* nothing left to wait for: at once, no sync */
	syncs = bs_memdev_syncs(jdev);
	vol_when_durable(v, want, &cb.w);
	CU_ASSERT_EQUAL(cb.calls, 2);
	CU_ASSERT_EQUAL(bs_memdev_syncs(jdev), syncs);
	bs_memdev_fail_at(dev, 1);   /* the power goes now */
	vol_close(v);
	bs_memdev_power_cycle(dev, 0);
	struct bs_io *jio;
	CU_ASSERT_FATAL(bs_io_mem_open(jdev, &jio) == 0);
	struct vol_opts o = { .uid = 1, .gid = 2, .journal_io = jio };
	v = vopen_as(dev, &o);
	CU_ASSERT(ino_of(v, ROOT, "d") != 0);
	vol_close(v);
	bs_memdev_free(dev);
}

/* While one thread's commit syncs, another thread's operation does not
 * wait: vol_when_durable returns at once and the syncing thread answers
 * it with a second flush of its own once the first is done. */
struct mid_commit {
	struct vol *v;
	struct h_stage st;      /* 1: the first commit syncs; 2: it may go on */
	int hook_calls;
	struct durable_cb first;
};

static void mid_commit_hook(void *arg)
{
	struct mid_commit *m = arg;
	if (m->hook_calls++)
		return;
	h_stage_set(&m->st, 1);
	h_stage_wait(&m->st, 2);
}

static void *mid_commit_first(void *arg)
{
	struct mid_commit *m = arg;
	struct vol_attr a;
	vol_defer_begin();
	int r = vol_mkdir(m->v, ROOT, "first", 0755, 1, 2, &a);
	uint64_t want = vol_defer_end();
	if (r == 0)
		vol_when_durable(m->v, want, &m->first.w);
	return NULL;
}

static void an_operation_during_a_commit_is_answered_by_the_committing_thread(void)
{
	struct bs_memdev *dev = bs_memdev_new(), *jdev;
	struct vol *v = vopen_journaled(dev, &jdev);
	struct mid_commit m = { .v = v, .st = H_STAGE_INIT, .first.w.done = durable_done };
	struct durable_cb second = { .w.done = durable_done };
	struct vol_attr a;
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "warm", 0755, 1, 2, &a), 0);   /* the epoch is live */
	uint64_t syncs = bs_memdev_syncs(jdev);
	bs_memdev_on_sync(jdev, mid_commit_hook, &m);
	pthread_t th;
	CU_ASSERT_FATAL(pthread_create(&th, NULL, mid_commit_first, &m) == 0);
	h_stage_wait(&m.st, 1);
	vol_defer_begin();
	CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "second", 0755, 1, 2, &a), 0);
	vol_when_durable(v, vol_defer_end(), &second.w);
	CU_ASSERT_EQUAL(second.calls, 0);   /* this thread goes on */
	h_stage_set(&m.st, 2);
	pthread_join(th, NULL);
	bs_memdev_on_sync(jdev, NULL, NULL);
	CU_ASSERT_EQUAL(m.first.calls, 1);
	CU_ASSERT_EQUAL(m.first.r, 0);
	CU_ASSERT_EQUAL(second.calls, 1);
	CU_ASSERT_EQUAL(second.r, 0);
	CU_ASSERT(pthread_equal(second.by, th));   /* answered by the committer */
	CU_ASSERT_EQUAL(bs_memdev_syncs(jdev) - syncs, 2);
	CU_ASSERT(ino_of(v, ROOT, "first") && ino_of(v, ROOT, "second"));
	CU_ASSERT_EQUAL(vol_close(v), 0);
	bs_memdev_free(dev);
}

/* The kernel's references race the volume's own changes as FUSE makes
 * them race: lookups, getattrs and forgets under the shared lock while
 * other threads create, open, write, unlink while open and close.  Every
 * reference given back, nothing is left but what the last thread holds. */
static void *kref_main(void *p)
{
	struct thr *t = p;
	char name[24];
	uint8_t buf[300];
	for (int i = 0; i < 40; i++) {
		struct vol_attr a;
		snprintf(name, sizeof name, "k%d-%d", t->id, i);
		if (vol_create(t->v, ROOT, name, 0644, 0, 0, &a) || vol_remember(t->v, a.ino)) {
			t->fails++;
			continue;
		}
		h_pattern(buf, sizeof buf, (uint64_t)i, 0);
		t->fails += vol_open_file(t->v, a.ino) != 0;
		t->fails += vol_write(t->v, a.ino, buf, sizeof buf, 0) != (ssize_t)sizeof buf;
		/* a lookup and a getattr by another name for the same inode */
		struct vol_attr b;
		t->fails += vol_lookup(t->v, ROOT, name, &b) != 0 || b.ino != a.ino;
		t->fails += vol_remember(t->v, a.ino) != 0;
		if (i % 2)
			t->fails += vol_unlink(t->v, ROOT, name) != 0;
		t->fails += vol_getattr(t->v, a.ino, &b) != 0;
		t->fails += vol_release(t->v, a.ino) != 0;
		struct vol_forget f = { a.ino, 2 };
		vol_forget(t->v, &f, 1);
		/* forgetting what was never remembered changes nothing */
		struct vol_forget stray = { a.ino + 100000, 1 };
		vol_forget(t->v, &stray, 1);
	}
	return NULL;
}

static void kernel_references_race_operations_and_all_come_back(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_NONE, true);
	run_four(v, kref_main);
	CU_ASSERT_EQUAL(vol_sync_all(v), 0);
	struct vol_summary s;
	CU_ASSERT_FATAL(vol_summary(v, &s) == 0);
	CU_ASSERT_EQUAL(s.kernel_inodes, 0);
	CU_ASSERT_EQUAL(s.vnodes, 0);
	CU_ASSERT_EQUAL(s.orphan_files, 0);
	CU_ASSERT_EQUAL(s.files, 4 * 20);
	CU_ASSERT_EQUAL(check_errors(v), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	bs_memdev_free(dev);
}

/* ---- crafted bad catalogs ------------------------------------------------ */

/* Build an image with files a (4000 bytes) and b (4000 bytes), released. */
static struct bs_memdev *two_files(enum bs_alloc_kind k, uint64_t *ia, uint64_t *ib)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, k, true);
	*ia = mkfile(v, ROOT, "a");
	*ib = mkfile(v, ROOT, "b");
	put(v, *ia, 1, 0, 4000);
	put(v, *ib, 2, 0, 4000);
	vol_close(v);
	return dev;
}

static void expect_refused(struct bs_memdev *dev, const char *what)
{
	uint8_t *before, *after;
	size_t lb, la;
	struct vol_opts o = { 0 };
	struct vol_error err = { "" };
	bs_memdev_snapshot(dev, &before, &lb);
	int r = vopen_err(dev, &o, &err);
	CU_ASSERT_EQUAL(r, -EUCLEAN);
	if (!strstr(err.msg, what))
		printf("\nmessage \"%s\" lacks \"%s\"\n", err.msg, what);
	CU_ASSERT(strstr(err.msg, what) != NULL);
	bs_memdev_snapshot(dev, &after, &la);
	/* nothing is written to a refused image */
	CU_ASSERT(lb == la && memcmp(before, after, lb) == 0);
	free(before);
	free(after);
}

static void catalogs_with_checksum_mismatches_are_refused(void)
{
	FOR_EACH_KIND(k) {
		uint64_t ia, ib;
		struct bs_memdev *dev = two_files(k, &ia, &ib);
		struct raw r;
		struct cat_rec ra, rb;
		raw_open(dev, &r);
		uint64_t oa = raw_find(&r, ia, &ra), ob = raw_find(&r, ib, &rb);
		uint8_t x = 0x5A;
		/* one flipped byte could be a torn write; two cannot */
		CU_ASSERT(bstack_set(r.bs, oa + 50, &x, 1) == 0);
		CU_ASSERT(bstack_set(r.bs, ob + 50, &x, 1) == 0);
		bstack_close(r.bs);
		expect_refused(dev, "checksum");
		bs_memdev_free(dev);

		/* the catalog header's own checksum */
		dev = two_files(k, &ia, &ib);
		raw_open(dev, &r);
		CU_ASSERT(bstack_set(r.bs, r.root.off + 16, &x, 1) == 0);
		bstack_close(r.bs);
		expect_refused(dev, "checksum");
		bs_memdev_free(dev);
	}
}

static void a_record_pointing_outside_the_payload_is_refused(void)
{
	FOR_EACH_KIND(k) {
		uint64_t ia, ib;
		struct bs_memdev *dev = two_files(k, &ia, &ib);
		struct raw r;
		struct cat_rec ra;
		raw_open(dev, &r);
		uint64_t oa = raw_find(&r, ia, &ra);
		ra.alloc.off = bstack_len(r.bs) + 4096;
		raw_put(&r, oa, &ra);
		bstack_close(r.bs);
		expect_refused(dev, "outside");
		bs_memdev_free(dev);
	}
}

static void two_records_sharing_bytes_are_refused(void)
{
	FOR_EACH_KIND(k) {
		uint64_t ia, ib;
		struct bs_memdev *dev = two_files(k, &ia, &ib);
		struct raw r;
		struct cat_rec ra, rb;
		raw_open(dev, &r);
		raw_find(&r, ia, &ra);
		uint64_t ob = raw_find(&r, ib, &rb);
		rb.alloc = ra.alloc;
		rb.size = ra.size;
		raw_put(&r, ob, &rb);
		bstack_close(r.bs);
		expect_refused(dev, "share bytes");
		bs_memdev_free(dev);
	}
}

static void a_root_reference_pointing_nowhere_is_refused(void)
{
	FOR_EACH_KIND(k) {
		uint64_t ia, ib;
		struct bs_memdev *dev = two_files(k, &ia, &ib);
		struct raw r;
		uint8_t ref[16];
		raw_open(dev, &r);
		/* beyond the payload */
		cat_root_encode((struct bs_slice){ bstack_len(r.bs) + 100, 832 }, ref);
		CU_ASSERT(bstack_set(r.bs, 0, ref, 16) == 0);
		bstack_close(r.bs);
		if (k == BS_ALLOC_LINEAR)
			expect_refused(dev, "not a bstackfs image");
		else
			expect_refused(dev, "root reference");
		/* inside the payload, at no catalog (file a's bytes) */
		raw_open(dev, &r);
		cat_root_encode((struct bs_slice){ 64, 832 }, ref);
		CU_ASSERT(bstack_set(r.bs, 0, ref, 16) == 0);
		bstack_close(r.bs);
		if (k == BS_ALLOC_LINEAR)
			expect_refused(dev, "not a bstackfs image");
		else
			expect_refused(dev, "catalog");
		bs_memdev_free(dev);
	}
}

/* ---- the randomized model test ------------------------------------------- */

#define M_FILES 24

struct mfile {
	bool live;
	uint64_t dir;          /* index into dirs */
	uint8_t *data;
	size_t len;
};

static void model_verify(struct vol *v, struct mfile *m, const uint64_t *dirs)
{
	char name[16];
	for (int i = 0; i < M_FILES; i++) {
		snprintf(name, sizeof name, "m%d", i);
		uint64_t ino = ino_of(v, dirs[m[i].dir], name);
		CU_ASSERT_EQUAL(ino != 0, m[i].live);
		if (!ino || !m[i].live)
			continue;
		CU_ASSERT_EQUAL(size_of(v, ino), m[i].len);
		uint8_t *b = malloc(m[i].len + 1);
		CU_ASSERT_EQUAL(vol_read(v, ino, b, m[i].len + 1, 0), (ssize_t)m[i].len);
		CU_ASSERT(m[i].len == 0 || memcmp(b, m[i].data, m[i].len) == 0);
		free(b);
	}
}

static void a_random_workload_matches_an_in_memory_model(void)
{
	h_rng_seed();
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct mfile m[M_FILES] = { 0 };
		uint64_t dirs[3] = { ROOT, mkdir_(v, ROOT, "d1"), 0 };
		dirs[2] = mkdir_(v, dirs[1], "d2");
		char name[16], name2[16];
		for (int op = 0; op < 2500; op++) {
			int i = (int)h_rand_below(M_FILES);
			struct mfile *f = &m[i];
			snprintf(name, sizeof name, "m%d", i);
			uint64_t ino = f->live ? ino_of(v, dirs[f->dir], name) : 0;
			switch (h_rand_below(8)) {
			case 0: /* create */
				if (!f->live) {
					f->dir = h_rand_below(3);
					CU_ASSERT_EQUAL(vol_create(v, dirs[f->dir], name, 0644, 0, 0,
								   NULL), 0);
					f->live = true;
					f->len = 0;
				}
				break;
			case 1: case 2: case 3: { /* write */
				if (!f->live)
					break;
				size_t off = h_rand_below(f->len + 3000), n = 1 + h_rand_below(6000);
				uint8_t *b = malloc(n);
				for (size_t j = 0; j < n; j++)
					b[j] = (uint8_t)h_rand();
				CU_ASSERT_EQUAL(vol_write(v, ino, b, n, off), (ssize_t)n);
				if (off + n > f->len) {
					f->data = realloc(f->data, off + n);
					if (off > f->len)
						memset(f->data + f->len, 0, off - f->len);
					f->len = off + n;
				}
				memcpy(f->data + off, b, n);
				free(b);
				break;
			}
			case 4: { /* truncate */
				if (!f->live)
					break;
				size_t sz = h_rand_below(20000);
				CU_ASSERT_EQUAL(vol_truncate(v, ino, sz), 0);
				f->data = realloc(f->data, sz ? sz : 1);
				if (sz > f->len)
					memset(f->data + f->len, 0, sz - f->len);
				f->len = sz;
				break;
			}
			case 5: { /* rename, maybe over another file */
				if (!f->live)
					break;
				int j = (int)h_rand_below(M_FILES);
				uint64_t nd = j == i ? f->dir : h_rand_below(3);
				snprintf(name2, sizeof name2, "m%d", j);
				if (j != i && m[j].live)
					nd = m[j].dir;
				CU_ASSERT_EQUAL(vol_rename(v, dirs[f->dir], name, dirs[nd], name2, 0), 0);
				if (j != i) {
					free(m[j].data);
					m[j] = *f;
					m[j].dir = nd;
					memset(f, 0, sizeof *f);
				}
				break;
			}
			case 6: /* unlink */
				if (!f->live)
					break;
				CU_ASSERT_EQUAL(vol_unlink(v, dirs[f->dir], name), 0);
				free(f->data);
				memset(f, 0, sizeof *f);
				break;
			default: /* release */
				if (f->live)
					CU_ASSERT_EQUAL(vol_release(v, ino), 0);
				break;
			}
			if (op % 300 == 299) {
				model_verify(v, m, dirs);
				CU_ASSERT_EQUAL(vol_close(v), 0);
				v = vopen(dev, k, false);
				struct vol_counters c;
				vol_get_counters(v, &c);
				if (c.leaked_bytes_reclaimed)
					printf("\n%s: op %d: reopen reclaimed %llu\n", bs_alloc_kind_name(k),
					       op, (unsigned long long)c.leaked_bytes_reclaimed);
				CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
				CU_ASSERT_EQUAL(check_errors(v), 0);
				model_verify(v, m, dirs);
			}
		}
		model_verify(v, m, dirs);
		vol_close(v);
		for (int i = 0; i < M_FILES; i++)
			free(m[i].data);
		bs_memdev_free(dev);
	}
}

/* ---- power loss at every write and sync ----------------------------------- */

struct ent {
	char path[64];
	bool dir;
	uint8_t *data;
	size_t len;
};

struct state {
	struct ent e[32];
	int n;
};

struct walk {
	struct vol *v;
	struct state *s;
	char prefix[64];
	uint64_t kids[32];
	char names[32][16];
	int nk;
};

static int walk_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct walk *w = ctx;
	(void)pos;
	if (w->nk < 32) {
		w->kids[w->nk] = a->ino;
		snprintf(w->names[w->nk], 16, "%s", name);
		w->nk++;
	}
	return 0;
}

static void walk_dir(struct vol *v, uint64_t ino, const char *prefix, struct state *s)
{
	struct walk w = { .v = v, .s = s };
	CU_ASSERT_EQUAL(vol_readdir(v, ino, 0, walk_fill, &w), 0);
	for (int i = 0; i < w.nk && s->n < 32; i++) {
		struct ent *e = &s->e[s->n++];
		struct vol_attr a;
		snprintf(e->path, sizeof e->path, "%s/%s", prefix, w.names[i]);
		CU_ASSERT_EQUAL(vol_getattr(v, w.kids[i], &a), 0);
		e->dir = S_ISDIR(a.mode);
		e->len = a.size;
		e->data = malloc(a.size + 1);
		CU_ASSERT_EQUAL(vol_read(v, w.kids[i], e->data, a.size + 1, 0),
				e->dir ? -EISDIR : (ssize_t)a.size);
		if (e->dir)
			walk_dir(v, w.kids[i], e->path, s);
	}
}

static void state_of(struct vol *v, struct state *s)
{
	s->n = 0;
	walk_dir(v, ROOT, "", s);
}

static void state_free(struct state *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->e[i].data);
	s->n = 0;
}

static const struct ent *state_find(const struct state *s, const char *path)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].path, path) == 0)
			return &s->e[i];
	return NULL;
}

static bool ent_eq(const struct ent *x, const struct ent *y)
{
	if (!x || !y)
		return x == y;
	return x->dir == y->dir && x->len == y->len &&
	       (x->dir || x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
}

/* Every path is as before or as after the operation. */
static bool state_ok(const struct state *got, const struct state *before,
		     const struct state *after)
{
	const struct state *all[3] = { got, before, after };
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < all[k]->n; i++) {
			const char *p = all[k]->e[i].path;
			const struct ent *g = state_find(got, p);
			if (!ent_eq(g, state_find(before, p)) && !ent_eq(g, state_find(after, p))) {
				const struct ent *b = state_find(before, p), *a = state_find(after, p);
				printf("\npath %s is neither before nor after (sizes %lld / %lld / %lld)\n",
				       p, g ? (long long)g->len : -1LL, b ? (long long)b->len : -1LL,
				       a ? (long long)a->len : -1LL);
				return false;
			}
		}
	}
	return true;
}

typedef int (*op_fn)(struct vol *v);

/* The image every crash test starts from:
 *   /a 5000 bytes, /d/c 100 bytes, /e (empty dir), /b 3000 bytes (newest,
 *   the tail allocation) */
static void crash_setup(struct vol *v)
{
	uint64_t a = mkfile(v, ROOT, "a"), d = mkdir_(v, ROOT, "d");
	uint64_t c = mkfile(v, d, "c");
	mkdir_(v, ROOT, "e");
	put(v, a, 1, 0, 5000);
	vol_release(v, a);
	put(v, c, 3, 0, 100);
	vol_release(v, c);
	uint64_t b = mkfile(v, ROOT, "b");
	put(v, b, 2, 0, 3000);
	vol_release(v, b);
}

static void crash_test(enum bs_alloc_kind k, op_fn op, const char *what)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, k, true);
	struct state before, after, got;
	struct vol_counters c;
	uint8_t *snap;
	size_t snap_len;
	crash_setup(v);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	bs_memdev_snapshot(dev, &snap, &snap_len);
	v = vopen(dev, k, false);
	state_of(v, &before);
	vol_close(v);

	/* the operation without a crash: its end state and its device ops */
	bs_memdev_load(dev, snap, snap_len);
	v = vopen(dev, k, false);
	bs_memdev_reset_counts(dev);
	CU_ASSERT_EQUAL(op(v), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	uint64_t total = bs_memdev_writes(dev) + bs_memdev_syncs(dev);
	v = vopen(dev, k, false);
	state_of(v, &after);
	vol_close(v);
	CU_ASSERT(total > 0);
	if (getenv("VOL_DEBUG"))
		printf("\n%s/%s: %llu device ops\n", what, bs_alloc_kind_name(k), (unsigned long long)total);

	int bad = 0;
	/* each cut point twice: the unsynced writes lost, and all kept (the
	 * write landed, its sync did not complete) */
	for (uint64_t i = 2; i <= 2 * total + 1 && bad < 3; i++) {
		uint64_t n = i / 2, keep = i % 2 ? UINT64_MAX : 0;
		bs_memdev_load(dev, snap, snap_len);
		v = vopen(dev, k, false);
		bs_memdev_fail_at(dev, n);
		op(v);
		vol_close(v);
		bs_memdev_power_cycle(dev, keep);
		struct bs_io *io;
		struct vol_opts o = { 0 };
		struct vol_error err = { "" };
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
		if (vopen_io(dev, io, &o, &v, &err)) {
			printf("\n%s/%s: crash at op %llu of %llu (keep %d): reopen refused: %s\n",
			       what, bs_alloc_kind_name(k), (unsigned long long)n,
			       (unsigned long long)total, keep != 0, err.msg);
			CU_FAIL("reopen after a crash failed");
			bad++;
			continue;
		}
		state_of(v, &got);
		if (!state_ok(&got, &before, &after)) {
			printf("%s/%s: crash at op %llu of %llu (keep %d)\n", what,
			       bs_alloc_kind_name(k), (unsigned long long)n,
			       (unsigned long long)total, keep != 0);
			CU_FAIL("a file is neither before nor after");
			bad++;
		}
		state_free(&got);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		/* the first reopen reclaimed what the crash leaked: nothing more */
		v = vopen(dev, k, false);
		vol_get_counters(v, &c);
		if (c.leaked_bytes_reclaimed) {
			printf("\n%s/%s: crash at op %llu: second reopen reclaimed %llu\n", what,
			       bs_alloc_kind_name(k), (unsigned long long)n,
			       (unsigned long long)c.leaked_bytes_reclaimed);
			bad++;
		}
		CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
	}
	state_free(&before);
	state_free(&after);
	free(snap);
	bs_memdev_free(dev);
}

static int op_create(struct vol *v)
{
	return vol_create(v, ROOT, "new", 0644, 0, 0, NULL);
}

static int op_mkdir(struct vol *v)
{
	return vol_mkdir(v, ino_of(v, ROOT, "d"), "newdir", 0755, 0, 0, NULL);
}

/* Appends (the file must move: a is not the tail).  An overwrite of
 * existing bytes is not atomic at power loss (as in ext4's ordered mode:
 * data is written in place); an append is, since the size that exposes it
 * is written after the data is synced. */
static int op_write_release_nontail(struct vol *v)
{
	uint64_t a = ino_of(v, ROOT, "a");
	uint8_t b[7000];
	h_pattern(b, sizeof b, 9, 5000);
	ssize_t w = vol_write(v, a, b, sizeof b, 5000);
	int r = vol_release(v, a);
	return w == (ssize_t)sizeof b ? r : -EIO;
}

static int op_write_release_tail(struct vol *v)
{
	uint64_t b = ino_of(v, ROOT, "b");
	uint8_t buf[5000];
	h_pattern(buf, sizeof buf, 10, 3000);
	ssize_t w = vol_write(v, b, buf, sizeof buf, 3000);
	int r = vol_release(v, b);
	return w == (ssize_t)sizeof buf ? r : -EIO;
}

static int op_truncate_grow_nontail(struct vol *v)
{
	return vol_truncate(v, ino_of(v, ROOT, "a"), 12000);
}

static int op_truncate_grow_tail(struct vol *v)
{
	return vol_truncate(v, ino_of(v, ROOT, "b"), 9000);
}

static int op_truncate_shrink_nontail(struct vol *v)
{
	return vol_truncate(v, ino_of(v, ROOT, "a"), 1000);
}

static int op_truncate_shrink_tail(struct vol *v)
{
	return vol_truncate(v, ino_of(v, ROOT, "b"), 10);
}

static int op_rename(struct vol *v)
{
	return vol_rename(v, ROOT, "a", ino_of(v, ROOT, "e"), "a2", 0);
}

static int op_rename_over(struct vol *v)
{
	return vol_rename(v, ROOT, "a", ROOT, "b", 0);
}

static int op_rmdir(struct vol *v)
{
	return vol_rmdir(v, ROOT, "e");
}

static int op_unlink(struct vol *v)
{
	return vol_unlink(v, ROOT, "a");
}

#define CRASH_TEST(fn, op) \
	static void fn(void) \
	{ \
		FOR_EACH_KIND(k) \
			crash_test(k, op, #op); \
	}

CRASH_TEST(power_loss_during_create_leaves_before_or_after, op_create)
CRASH_TEST(power_loss_during_mkdir_leaves_before_or_after, op_mkdir)
CRASH_TEST(power_loss_during_write_and_release_leaves_before_or_after,
	   op_write_release_nontail)
CRASH_TEST(power_loss_during_tail_write_and_release_leaves_before_or_after,
	   op_write_release_tail)
CRASH_TEST(power_loss_during_truncate_grow_leaves_before_or_after, op_truncate_grow_nontail)
CRASH_TEST(power_loss_during_tail_truncate_grow_leaves_before_or_after,
	   op_truncate_grow_tail)
CRASH_TEST(power_loss_during_truncate_shrink_leaves_before_or_after,
	   op_truncate_shrink_nontail)
CRASH_TEST(power_loss_during_tail_truncate_shrink_leaves_before_or_after,
	   op_truncate_shrink_tail)
CRASH_TEST(power_loss_during_rename_leaves_before_or_after, op_rename)
CRASH_TEST(power_loss_during_rename_over_leaves_before_or_after, op_rename_over)
CRASH_TEST(power_loss_during_rmdir_leaves_before_or_after, op_rmdir)
CRASH_TEST(power_loss_during_unlink_leaves_before_or_after, op_unlink)

/* Catalog growth (copy-on-write of the catalog itself) under power loss. */
static int op_create_many(struct vol *v)
{
	char name[16];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof name, "g%d", i);
		int r = vol_create(v, ROOT, name, 0644, 0, 0, NULL);
		if (r)
			return r;
	}
	return 0;
}

static void power_loss_while_the_catalog_grows_loses_no_file(void)
{
	/* crash_setup uses 6 of 16 pairs: 12 creates force one rewrite.  A
	 * crash mid-sequence leaves a prefix of the creates, which the
	 * per-path check accepts (each file is before or after). */
	FOR_EACH_KIND(k)
		crash_test(k, op_create_many, "create_many");
}

/* Formatting a new image, cut at every device op: the next open (with
 * create, as for a missing image) gives an empty, clean volume. */
static void power_loss_during_format_leaves_an_image_that_opens(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		vol_close(v);
		uint64_t total = bs_memdev_writes(dev) + bs_memdev_syncs(dev);
		CU_ASSERT(total >= 4);
		for (uint64_t i = 2; i <= 2 * total + 1; i++) {
			uint64_t n = i / 2, keep = i % 2 ? UINT64_MAX : 0;
			struct bs_io *io;
			struct vol_opts o = { .allocator = k, .create = true };
			struct vol_error err = { "" };
			bs_memdev_load(dev, "", 0);
			CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
			bs_memdev_fail_at(dev, n);
			if (vopen_io(dev, io, &o, &v, &err) == 0)
				vol_close(v);
			bs_memdev_power_cycle(dev, keep);
			CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
			int r = vopen_io(dev, io, &o, &v, &err);
			if (r) {
				printf("\nformat/%s: crash at op %llu (keep %d): %s\n",
				       bs_alloc_kind_name(k), (unsigned long long)n, keep != 0,
				       err.msg);
				CU_FAIL("reopen after a crash during format failed");
				break;
			}
			struct state s0;
			state_of(v, &s0);
			CU_ASSERT_EQUAL(s0.n, 0);
			state_free(&s0);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			mkfile(v, ROOT, "works");
			vol_close(v);
			v = vopen(dev, k, false);
			struct vol_counters c;
			vol_get_counters(v, &c);
			CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
			CU_ASSERT(ino_of(v, ROOT, "works") != 0);
			vol_close(v);
		}
		bs_memdev_free(dev);
	}
}

/* Random operation mixes cut at a random device op: the image always
 * mounts, verifies clean, and a second mount finds nothing left to reclaim. */
static void random_operations_cut_at_random_points_always_remount_clean(void)
{
	h_rng_seed();
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		vol_close(v);
		char name[16], name2[16];
		int bad = 0;
		for (int round = 0; round < 80 && bad < 3; round++) {
			v = vopen(dev, k, false);
			bs_memdev_fail_at(dev, 1 + h_rand_below(250));
			for (int op = 0; op < 40; op++) {
				snprintf(name, sizeof name, "r%d", (int)h_rand_below(12));
				snprintf(name2, sizeof name2, "r%d", (int)h_rand_below(12));
				uint64_t ino = ino_of(v, ROOT, name);
				uint8_t buf[3000];
				memset(buf, op, sizeof buf);
				switch (h_rand_below(7)) {
				case 0:
					vol_create(v, ROOT, name, 0644, 0, 0, NULL);
					break;
				case 1: case 2:
					if (ino)
						vol_write(v, ino, buf, 1 + h_rand_below(sizeof buf),
							  h_rand_below(20000));
					break;
				case 3:
					if (ino)
						vol_truncate(v, ino, h_rand_below(30000));
					break;
				case 4:
					vol_rename(v, ROOT, name, ROOT, name2, 0);
					break;
				case 5:
					vol_unlink(v, ROOT, name);
					break;
				default:
					if (ino)
						vol_release(v, ino);
				}
			}
			vol_close(v);
			bs_memdev_power_cycle(dev, h_rand_below(2) ? UINT64_MAX : 0);
			struct bs_io *io;
			struct vol_opts o = { 0 };
			struct vol_error err = { "" };
			CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
			if (vopen_io(dev, io, &o, &v, &err)) {
				printf("\n%s round %d: reopen refused: %s\n", bs_alloc_kind_name(k),
				       round, err.msg);
				CU_FAIL("reopen after a crash failed");
				bad++;
				break;
			}
			CU_ASSERT_EQUAL(check_errors(v), 0);
			vol_close(v);
			v = vopen(dev, k, false);
			struct vol_counters c;
			vol_get_counters(v, &c);
			if (c.leaked_bytes_reclaimed)
				bad++;
			CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
			vol_close(v);
		}
		bs_memdev_free(dev);
	}
}

/* ---- files unlinked or renamed over while open ---------------------------- */

/* Bytes the allocator's arena holds for something: payload minus free
 * (on the memory device statfs adds no host figures). */
static uint64_t used_bytes(struct vol *v)
{
	struct vol_statfs s;
	CU_ASSERT_EQUAL(vol_statfs(v, &s), 0);
	return s.total_bytes - BSTACK_HEADER_SIZE - s.free_bytes;
}

static uint64_t files_of(struct vol *v)
{
	struct vol_statfs s;
	CU_ASSERT_EQUAL(vol_statfs(v, &s), 0);
	return s.files;
}

static uint64_t deallocs_of(struct vol *v)
{
	struct vol_counters c;
	vol_get_counters(v, &c);
	return c.deallocs;
}

static uint64_t reclaimed_of(struct vol *v)
{
	struct vol_counters c;
	vol_get_counters(v, &c);
	return c.leaked_bytes_reclaimed;
}

static int count_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	(void)name;
	(void)a;
	(void)pos;
	(*(int *)ctx)++;
	return 0;
}

static int entries_of(struct vol *v, uint64_t dir)
{
	int n = 0;
	CU_ASSERT_EQUAL(vol_readdir(v, dir, 0, count_fill, &n), 0);
	return n;
}

static void an_unlinked_open_file_keeps_working_until_its_last_close(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a, in = { .mode = 0600 };
		uint64_t f = mkfile(v, ROOT, "f");
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		put(v, f, 1, 0, 20000);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		/* the name is gone at once */
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "f", &a), -ENOENT);
		CU_ASSERT_EQUAL(entries_of(v, ROOT), 0);
		CU_ASSERT_EQUAL(files_of(v), 1);   /* the root only */
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), -ENOENT);
		/* the inode is not */
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 0);
		CU_ASSERT_EQUAL(a.size, 20000);
		CU_ASSERT(has(v, f, 1, 0, 20000));
		/* a new file of the same name is another file */
		uint64_t g = mkfile(v, ROOT, "f");
		CU_ASSERT(g != 0 && g != f);
		put(v, g, 5, 0, 3000);
		CU_ASSERT_EQUAL(vol_release(v, g), 0);
		CU_ASSERT_EQUAL(entries_of(v, ROOT), 1);
		/* the orphan grows (past g: it has to move on Linear), shrinks,
		 * changes attributes and syncs */
		put(v, f, 2, 20000, 30000);
		CU_ASSERT(has(v, f, 1, 0, 20000) && has(v, f, 2, 20000, 30000));
		CU_ASSERT_EQUAL(vol_truncate(v, f, 40000), 0);
		CU_ASSERT_EQUAL(vol_truncate(v, f, 60000), 0);
		CU_ASSERT(zeros_at(v, f, 40000, 20000));
		CU_ASSERT_EQUAL(vol_fallocate(v, f, 0, 70000), 0);
		CU_ASSERT_EQUAL(size_of(v, f), 70000);
		CU_ASSERT_EQUAL(vol_setattr(v, f, VOL_SET_MODE, &in, &a), 0);
		CU_ASSERT_EQUAL(a.mode, S_IFREG | 0600);
		CU_ASSERT_EQUAL(a.nlink, 0);
		CU_ASSERT_EQUAL(vol_fsync(v, f), 0);
		CU_ASSERT(has(v, f, 1, 0, 20000) && has(v, f, 2, 20000, 20000));
		/* g was not touched by any of it */
		CU_ASSERT(has(v, g, 5, 0, 3000));
		CU_ASSERT_EQUAL(size_of(v, g), 3000);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		/* a second open and close of the orphan frees nothing */
		uint64_t used = used_bytes(v), deallocs = deallocs_of(v);
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(deallocs_of(v), deallocs);
		/* the last close frees the space */
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_read(v, f, &a, 1, 0), -ENOENT);
		CU_ASSERT_EQUAL(vol_release(v, f), -ENOENT);
		CU_ASSERT_EQUAL(deallocs_of(v), deallocs + 1);
		CU_ASSERT(used_bytes(v) + 70000 <= used);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "f"), g);
		CU_ASSERT(has(v, g, 5, 0, 3000));
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), -ENOENT);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void opening_counts_only_files_that_exist(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t d = mkdir_(v, ROOT, "d");
		CU_ASSERT_EQUAL(vol_open_file(v, d), -EISDIR);
		CU_ASSERT_EQUAL(vol_open_file(v, ROOT), -EISDIR);
		CU_ASSERT_EQUAL(vol_open_file(v, 9999), -ENOENT);
		/* a file closed as often as it was opened is removed at once */
		uint64_t f = mkfile(v, d, "f");
		put(v, f, 1, 0, 5000);
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		uint64_t deallocs = deallocs_of(v);
		CU_ASSERT_EQUAL(vol_unlink(v, d, "f"), 0);
		CU_ASSERT_EQUAL(deallocs_of(v), deallocs + 1);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &(struct vol_attr){ 0 }), -ENOENT);
		/* directories are unaffected by open files elsewhere */
		CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "d"), 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void a_file_renamed_over_while_open_keeps_working_until_its_last_close(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr at;
		uint64_t a = mkfile(v, ROOT, "a"), b = mkfile(v, ROOT, "b");
		put(v, a, 1, 0, 3000);
		put(v, b, 2, 0, 5000);
		CU_ASSERT_EQUAL(vol_release(v, a), 0);
		CU_ASSERT_EQUAL(vol_release(v, b), 0);
		CU_ASSERT_EQUAL(vol_open_file(v, b), 0);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "a", ROOT, "b", 0), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "b"), a);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "a"), 0);
		CU_ASSERT_EQUAL(entries_of(v, ROOT), 1);
		CU_ASSERT_EQUAL(files_of(v), 2);   /* the root and a */
		CU_ASSERT_EQUAL(vol_getattr(v, b, &at), 0);
		CU_ASSERT_EQUAL(at.nlink, 0);
		CU_ASSERT(has(v, b, 2, 0, 5000));
		/* the victim grows (it has to move on Linear) */
		put(v, b, 3, 5000, 4000);
		CU_ASSERT(has(v, b, 2, 0, 5000) && has(v, b, 3, 5000, 4000));
		CU_ASSERT(has(v, a, 1, 0, 3000));
		CU_ASSERT_EQUAL(size_of(v, a), 3000);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		uint64_t used = used_bytes(v), deallocs = deallocs_of(v);
		CU_ASSERT_EQUAL(vol_release(v, b), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, b, &at), -ENOENT);
		CU_ASSERT_EQUAL(deallocs_of(v), deallocs + 1);
		CU_ASSERT(used_bytes(v) + 9000 <= used);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "b"), a);
		CU_ASSERT(has(v, a, 1, 0, 3000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void vnodes_of(struct vol *v, uint64_t *n, uint64_t *kernel)
{
	struct vol_summary s;
	CU_ASSERT_FATAL(vol_summary(v, &s) == 0);
	*n = s.vnodes;
	*kernel = s.kernel_inodes;
}

/* The volume keeps an inode's state (its vnode) exactly while the kernel
 * holds it, a descriptor is open or a change is not durable: FUSE forget
 * drops it, an orphan's space still goes at its last close, and clean,
 * closed, forgotten inodes cost nothing. */
static void vnodes_live_while_the_kernel_or_an_open_holds_them(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr at;
		uint64_t n, kn;
		uint64_t f = mkfile(v, ROOT, "f"), g = mkfile(v, ROOT, "g");
		/* the root's mtime is not durable yet: its vnode says so */
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n >= 1 && kn == 0);
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		vnodes_of(v, &n, &kn);
		CU_ASSERT_EQUAL(n, 0);
		/* two kernel references to f, one to g */
		CU_ASSERT_EQUAL(vol_remember(v, f), 0);
		CU_ASSERT_EQUAL(vol_remember(v, f), 0);
		CU_ASSERT_EQUAL(vol_remember(v, g), 0);
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n == 2 && kn == 2);
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		put(v, f, 1, 0, 5000);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		struct vol_forget one_f = { f, 1 }, g_all = { g, 7 }, nobody = { 999999, 3 };
		vol_forget(v, &one_f, 1);
		vol_forget(v, &nobody, 1);   /* unknown: nothing happens */
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n == 2 && kn == 2);
		vol_forget(v, &g_all, 1);    /* more than it holds: down to zero */
		vol_forget(v, &one_f, 1);
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n == 0 && kn == 0);
		CU_ASSERT(has(v, f, 1, 0, 5000));
		/* an orphan: its space goes at the last close, its vnode when the
		 * kernel forgets the inode */
		CU_ASSERT_EQUAL(vol_remember(v, g), 0);
		CU_ASSERT_EQUAL(vol_open_file(v, g), 0);
		put(v, g, 2, 0, 7000);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "g"), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, g, &at), 0);
		CU_ASSERT_EQUAL(at.nlink, 0);
		CU_ASSERT(has(v, g, 2, 0, 7000));
		uint64_t used = used_bytes(v);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_release(v, g), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, g, &at), -ENOENT);
		CU_ASSERT(used_bytes(v) + 7000 <= used);
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n == 1 && kn == 1);
		struct vol_forget g_one = { g, 1 };
		vol_forget(v, &g_one, 1);
		vnodes_of(v, &n, &kn);
		CU_ASSERT(n == 0 && kn == 0);
		/* many clean, closed files leave no vnode behind */
		char name[16];
		for (int i = 0; i < 200; i++) {
			snprintf(name, sizeof name, "m%d", i);
			uint64_t m = mkfile(v, ROOT, name);
			put(v, m, 3, 0, 100);
			CU_ASSERT_EQUAL(vol_release(v, m), 0);
		}
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		vnodes_of(v, &n, &kn);
		CU_ASSERT_EQUAL(n, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_free(dev);
	}
}

static void closing_the_volume_frees_orphans_still_open(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t keep = mkfile(v, ROOT, "keep");
		put(v, keep, 4, 0, 2000);
		CU_ASSERT_EQUAL(vol_release(v, keep), 0);
		uint64_t baseline = used_bytes(v);
		uint64_t f = mkfile(v, ROOT, "f"), g = mkfile(v, ROOT, "g");
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		CU_ASSERT_EQUAL(vol_open_file(v, g), 0);
		put(v, f, 1, 0, 8000);
		put(v, g, 2, 0, 6000);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "g"), 0);
		CU_ASSERT(has(v, f, 1, 0, 8000) && has(v, g, 2, 0, 6000));
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(files_of(v), 2);
		CU_ASSERT_EQUAL(used_bytes(v), baseline);
		CU_ASSERT(has(v, keep, 4, 0, 2000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void power_loss_after_unlinking_an_open_file_reclaims_its_space(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t keep = mkfile(v, ROOT, "keep");
		put(v, keep, 4, 0, 2000);
		CU_ASSERT_EQUAL(vol_release(v, keep), 0);
		uint64_t f = mkfile(v, ROOT, "f");
		put(v, f, 1, 0, 20000);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);   /* durable, trimmed */
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		put(v, f, 2, 20000, 5000);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		put(v, f, 3, 25000, 5000);
		CU_ASSERT(has(v, f, 1, 0, 20000));
		/* the power goes before the last close */
		bs_memdev_fail_at(dev, 1);
		vol_close(v);
		bs_memdev_power_cycle(dev, 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "f"), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &(struct vol_attr){ 0 }), -ENOENT);
		CU_ASSERT(reclaimed_of(v) >= 20000);
		CU_ASSERT_EQUAL(files_of(v), 2);
		CU_ASSERT(has(v, keep, 4, 0, 2000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* A file removed while open keeps its extended attributes, as on ext4:
 * they are read, listed and changed by inode until the last close, which
 * frees the blob with the data; a crash before it leaves both to mount's
 * reclaim. */
static void a_file_removed_while_open_keeps_its_extended_attributes(void)
{
	FOR_EACH_KIND(k) {
		for (int crash = 0; crash < 2; crash++) {
			struct bs_memdev *dev = bs_memdev_new();
			struct vol *v = vopen(dev, k, true);
			char buf[64], big[3000];
			memset(big, 'z', sizeof big);
			uint64_t f = mkfile(v, ROOT, "f");
			put(v, f, 1, 0, 6000);
			CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.a", "one", 3, 0), 0);
			CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.big", big, sizeof big, 0), 0);
			CU_ASSERT_EQUAL(vol_release(v, f), 0);
			uint64_t before = used_bytes(v);
			CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
			CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
			/* still there, by inode */
			CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.a", buf, sizeof buf), 3);
			CU_ASSERT(memcmp(buf, "one", 3) == 0);
			CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.big", NULL, 0), (ssize_t)sizeof big);
			CU_ASSERT_EQUAL(vol_listxattr(v, f, buf, sizeof buf),
					(ssize_t)sizeof "user.a" + (ssize_t)sizeof "user.big");
			/* and changed in memory */
			CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.b", "two", 3, XATTR_CREATE), 0);
			CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.a", "x", 1, XATTR_CREATE), -EEXIST);
			CU_ASSERT_EQUAL(vol_removexattr(v, f, "user.big"), 0);
			CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.big", NULL, 0), -ENODATA);
			CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.b", buf, sizeof buf), 3);
			CU_ASSERT(has(v, f, 1, 0, 6000));
			/* the catalog counts no attributes of a removed file, the
			 * check sees the blob as held */
			struct vol_summary sum;
			CU_ASSERT_EQUAL(vol_summary(v, &sum), 0);
			CU_ASSERT_EQUAL(sum.xattr_bytes, 0);
			CU_ASSERT(sum.orphan_bytes > 6000);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			if (crash) {
				bs_memdev_fail_at(dev, 1);
				vol_close(v);
				bs_memdev_power_cycle(dev, 0);
				v = vopen(dev, k, false);
				CU_ASSERT(reclaimed_of(v) >= 6000);
			} else {
				CU_ASSERT_EQUAL(vol_release(v, f), 0);
				CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.b", NULL, 0), -ENOENT);
				/* (Linear reuses no hole below the newest blob) */
				CU_ASSERT(k == BS_ALLOC_LINEAR || used_bytes(v) + 6000 <= before);
				CU_ASSERT_EQUAL(check_errors(v), 0);
				CU_ASSERT_EQUAL(vol_close(v), 0);
				v = vopen(dev, k, false);
				CU_ASSERT_EQUAL(reclaimed_of(v), 0);
			}
			CU_ASSERT_EQUAL(files_of(v), 1);   /* the root */
			CU_ASSERT_EQUAL(check_errors(v), 0);
			vol_close(v);
			bs_memdev_free(dev);
		}
	}
}

/* ---- a full disk (ENOSPC) ---------------------------------------------- */

static int list_count(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	(void)name;
	(void)a;
	(void)pos;
	(*(int *)ctx)++;
	return 0;
}

static int entries(struct vol *v, uint64_t dir)
{
	int n = 0;
	CU_ASSERT_EQUAL(vol_readdir(v, dir, 0, list_count, &n), 0);
	return n;
}

/* Reopen and insist: check clean, no leak to reclaim, "keep" intact. */
static struct vol *nospc_reopen(struct bs_memdev *dev, struct vol *v, enum bs_alloc_kind k,
				uint64_t keep, uint64_t size, size_t keep_len)
{
	struct vol_counters c;
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, k, false);
	CU_ASSERT_EQUAL(vol_get_counters(v, &c), 0);
	CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
	CU_ASSERT_EQUAL(check_errors(v), 0);
	CU_ASSERT_EQUAL(size_of(v, keep), size);
	CU_ASSERT(has(v, keep, 1, 0, keep_len));
	return v;
}

/*
 * With the device's capacity at the image's size, every operation that
 * must grow the image fails with -ENOSPC and changes nothing: the file
 * keeps its size and bytes, no name is half-created, check() is clean, and
 * a reopen (itself on the full disk) reclaims no leak.  Unlinking another
 * file frees room and the same operations then succeed.
 */
static void a_full_disk_fails_growth_cleanly_and_unlink_makes_room(void)
{
	enum { KEEP = 3000, BIG = 4 << 20, GROW = 60000 };
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t dir = mkdir_(v, ROOT, "d");
		uint64_t keep = mkfile(v, dir, "keep");
		put(v, keep, 1, 0, KEEP);
		CU_ASSERT_EQUAL(vol_release(v, keep), 0);
		uint64_t big = mkfile(v, ROOT, "big");
		put(v, big, 2, 0, BIG);
		CU_ASSERT_EQUAL(vol_release(v, big), 0);
		uint64_t other = mkfile(v, ROOT, "other");
		put(v, other, 3, 0, 100);
		CU_ASSERT_EQUAL(vol_release(v, other), 0);
		CU_ASSERT_EQUAL(vol_sync_all(v), 0);
		bs_memdev_set_capacity(dev, h_dev_size(dev));

		/* a write that needs to grow the file */
		uint8_t *buf = malloc(GROW);
		CU_ASSERT_FATAL(buf != NULL);
		h_pattern(buf, GROW, 9, KEEP);
		CU_ASSERT_EQUAL(vol_open_file(v, keep), 0);
		CU_ASSERT_EQUAL(vol_write(v, keep, buf, GROW, KEEP), -ENOSPC);
		CU_ASSERT_EQUAL(size_of(v, keep), KEEP);
		CU_ASSERT(has(v, keep, 1, 0, KEEP));
		CU_ASSERT_EQUAL(vol_release(v, keep), 0);
		CU_ASSERT_EQUAL(size_of(v, keep), KEEP);
		/* truncate and fallocate that grow */
		CU_ASSERT_EQUAL(vol_truncate(v, keep, KEEP + GROW), -ENOSPC);
		CU_ASSERT_EQUAL(size_of(v, keep), KEEP);
		CU_ASSERT_EQUAL(vol_fallocate(v, keep, 0, KEEP + GROW), -ENOSPC);
		CU_ASSERT_EQUAL(size_of(v, keep), KEEP);
		CU_ASSERT(has(v, keep, 1, 0, KEEP));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT(!bs_memdev_dead(dev));

		/* create until the catalog must grow and cannot */
		char name[32];
		int made = 0, r = 0;
		while (made < 20000) {
			snprintf(name, sizeof name, "f%d", made);
			struct vol_attr a;
			r = vol_create(v, ROOT, name, 0644, 1, 2, &a);
			if (r)
				break;
			made++;
		}
		CU_ASSERT_EQUAL(r, -ENOSPC);
		struct vol_attr a;
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, name, &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_mkdir(v, ROOT, "newdir", 0755, 1, 2, &a), -ENOSPC);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "newdir", &a), -ENOENT);
		CU_ASSERT_EQUAL(entries(v, ROOT), made + 3);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT(has(v, big, 2, 0, BIG));

		/* the state survives a reopen on the still-full disk */
		v = nospc_reopen(dev, v, k, keep, KEEP, KEEP);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, name, &a), -ENOENT);
		CU_ASSERT_EQUAL(entries(v, ROOT), made + 3);

		/* unlink frees room.  Linear frees only at its tail (the
		 * catalog lives there), and Slab reuses freed blocks only one at
		 * a time (an allocation over one block always takes the tail, as
		 * in its seed): for them the room comes from raising the limit */
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "big"), 0);
		if (k == BS_ALLOC_LINEAR || k == BS_ALLOC_SLAB)
			bs_memdev_set_capacity(dev, h_dev_size(dev) + BIG);
		CU_ASSERT_EQUAL(vol_create(v, ROOT, name, 0644, 1, 2, &a), 0);
		r = vol_mkdir(v, ROOT, "newdir", 0755, 1, 2, &a);
		if (r)
			printf("\n%s: mkdir after unlink: %d\n", bs_alloc_kind_name(k), r);
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(vol_open_file(v, keep), 0);
		CU_ASSERT_EQUAL(vol_write(v, keep, buf, GROW, KEEP), GROW);
		CU_ASSERT_EQUAL(vol_release(v, keep), 0);
		CU_ASSERT(has(v, keep, 9, KEEP, GROW));
		r = vol_truncate(v, other, GROW);
		if (r)
			printf("\n%s: truncate after unlink: %d\n", bs_alloc_kind_name(k), r);
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(size_of(v, other), GROW);
		CU_ASSERT(has(v, other, 3, 0, 100));
		CU_ASSERT(zeros_at(v, other, 100, GROW - 100));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		v = nospc_reopen(dev, v, k, keep, KEEP + GROW, KEEP);
		CU_ASSERT(has(v, keep, 9, KEEP, GROW));
		CU_ASSERT_EQUAL(entries(v, ROOT), made + 4);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		free(buf);
		bs_memdev_free(dev);
	}
}

/*
 * Every limit between "no room at all" and "enough": one write that grows
 * a file (amortised growth may ask for more than it needs), one create,
 * one truncate.  Each either succeeds whole or fails with -ENOSPC and
 * leaves the old state; check() stays clean; the reopen reclaims nothing.
 */
static void every_limit_leaves_each_growth_whole_or_not_at_all(void)
{
	enum { KEEP = 20000, GROW = 5000 };
	FOR_EACH_KIND(k) {
		for (int op = 0; op < 3; op++) {
			bool done = false;
			uint64_t fit = 0;
			/* creates: every limit (the catalog's growth needs far
			 * more than GROW); writes and truncates: until one fits */
			for (uint64_t slack = 0; !(done && op < 2) && slack < 4 * GROW;
			     slack += slack < 256 ? 7 : op < 2 ? 97 : 997) {
				struct bs_memdev *dev = bs_memdev_new();
				struct vol *v = vopen(dev, k, true);
				uint64_t keep = mkfile(v, ROOT, "keep");
				put(v, keep, 1, 0, KEEP);
				CU_ASSERT_EQUAL(vol_release(v, keep), 0);
				CU_ASSERT_EQUAL(vol_sync_all(v), 0);
				bs_memdev_set_capacity(dev, h_dev_size(dev) + slack);
				struct vol_attr a;
				uint8_t buf[GROW];
				int r;
				h_pattern(buf, GROW, 5, KEEP);
				if (op == 0) {
					r = (int)vol_write(v, keep, buf, GROW, KEEP);
					if (r == GROW)
						r = vol_release(v, keep);
				} else if (op == 1) {
					r = vol_truncate(v, keep, KEEP + GROW);
				} else {
					/* fill the catalog's spare room first */
					char name[32];
					r = 0;
					for (int i = 0; !r && i < 400; i++) {
						snprintf(name, sizeof name, "n%d", i);
						r = vol_create(v, ROOT, name, 0644, 1, 2, &a);
					}
					if (r == -ENOSPC) {
						CU_ASSERT_EQUAL(vol_lookup(v, ROOT, name, &a), -ENOENT);
						CU_ASSERT_EQUAL(entries(v, ROOT), 1 + atoi(name + 1));
					}
				}
				if (r != -ENOSPC)
					CU_ASSERT_EQUAL(r, 0);
				done = op < 2 ? r == 0 : done || r == -ENOSPC;
				fit = slack;
				if (r == -ENOSPC && op < 2)
					CU_ASSERT_EQUAL(size_of(v, keep), KEEP);
				if (done && op == 0)
					CU_ASSERT(has(v, keep, 5, KEEP, GROW));
				if (done && op == 1)
					CU_ASSERT(zeros_at(v, keep, KEEP, GROW));
				CU_ASSERT(!bs_memdev_dead(dev));
				CU_ASSERT_EQUAL(check_errors(v), 0);
				v = nospc_reopen(dev, v, k, keep,
						 done && op < 2 ? KEEP + GROW : KEEP, KEEP);
				CU_ASSERT_EQUAL(vol_close(v), 0);
				bs_memdev_free(dev);
			}
			/* writes, truncates: some limit fits them; creates:
			 * some limit refused one */
			CU_ASSERT(done);
			/* a write's amortised headroom (here 20000 bytes) is
			 * not what a nearly full disk must hold: the write fits
			 * once its own bytes do (+ a Slab block of rounding) */
			if (op == 0) {
				if (fit > GROW + 5120)
					printf("\n%s: the write needed %llu bytes of room\n",
					       bs_alloc_kind_name(k), (unsigned long long)fit);
				CU_ASSERT(fit <= GROW + 5120);
			}
		}
	}
}


/* ---- mutated images --------------------------------------------------------- */

struct fz_ent {
	uint64_t ino, size;
	bool dir;
};

struct fz_list {
	struct fz_ent e[64];
	int n;
};

static int fz_fill(void *ctx, const char *name, const struct vol_attr *a, uint64_t next)
{
	struct fz_list *l = ctx;
	(void)name;
	(void)next;
	if (l->n == 64)
		return 1;
	l->e[l->n++] = (struct fz_ent){ a->ino, a->size, S_ISDIR(a->mode) };
	return 0;
}

static void fz_quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

/* Walk what a damaged volume shows, reading every file: errors are fine,
 * crashes, hangs and sanitizer reports are not. */
static void fz_walk(struct vol *v, uint64_t dir, int depth, uint8_t *buf, size_t cap)
{
	struct fz_list l = { .n = 0 };
	if (depth > 8 || vol_readdir(v, dir, 0, fz_fill, &l) < 0)
		return;
	for (int i = 0; i < l.n; i++) {
		struct vol_attr a;
		(void)vol_getattr(v, l.e[i].ino, &a);
		if (l.e[i].dir)
			fz_walk(v, l.e[i].ino, depth + 1, buf, cap);
		else
			(void)vol_read(v, l.e[i].ino, buf, cap, 0);
	}
}

/*
 * Random bytes of a populated image flipped, for every allocator: the
 * mount either refuses with a message or comes up, and then checking,
 * listing, reading, writing and closing it never crash or loop.  Both
 * outcomes must occur, or the test is not testing what it says.
 */
static void mutated_images_are_refused_or_mount_but_never_crash(void)
{
	int refused = 0, mounted = 0;
	uint8_t *buf = malloc(1 << 20);
	CU_ASSERT_FATAL(buf != NULL);
	h_rng_seed();
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t d = mkdir_(v, ROOT, "d");
		for (int i = 0; i < 6; i++) {
			char name[16];
			snprintf(name, sizeof name, "f%d", i);
			uint64_t f = mkfile(v, i % 2 ? d : ROOT, name);
			put(v, f, (uint64_t)i, 0, 100 + 700 * (size_t)i);
			CU_ASSERT_EQUAL(vol_release(v, f), 0);
		}
		CU_ASSERT_EQUAL(vol_close(v), 0);
		uint8_t *img;
		size_t len;
		CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &img, &len) == 0);
		for (int it = 0; it < 1000; it++) {
			uint8_t *m = malloc(len);
			CU_ASSERT_FATAL(m != NULL);
			memcpy(m, img, len);
			int flips = 1 + (int)h_rand_below(8);
			for (int j = 0; j < flips; j++) {
				/* half the flips land in the first 4 KiB: headers,
				 * allocator metadata, usually the catalog */
				size_t at = h_rand_below(2) ? h_rand_below(len < 4096 ? len : 4096)
							    : h_rand_below(len);
				m[at] ^= (uint8_t)(1 + h_rand_below(255));
			}
			struct bs_memdev *md = bs_memdev_new();
			CU_ASSERT_FATAL(bs_memdev_load(md, m, len) == 0);
			struct bs_io *io;
			struct vol *mv = NULL;
			struct vol_error err = { "" };
			struct vol_opts o = { .allocator = BS_ALLOC_NONE };
			CU_ASSERT_FATAL(bs_io_mem_open(md, &io) == 0);
			int r = vopen_io(md, io, &o, &mv, &err);
			if (r < 0) {
				refused++;
				CU_ASSERT(r > -4096);
				CU_ASSERT(err.msg[0] != '\0');
			} else {
				mounted++;
				(void)vol_check(mv, fz_quiet, NULL);
				fz_walk(mv, ROOT, 0, buf, 1 << 20);
				struct vol_attr a;
				if (vol_create(mv, ROOT, "new", 0644, 0, 0, &a) == 0)
					(void)vol_write(mv, a.ino, "x", 1, 5000);
				char *t;
				size_t tl;
				if (vol_stats_text(mv, &t, &tl) == 0)
					free(t);
				(void)vol_close(mv);
			}
			bs_memdev_free(md);
			free(m);
		}
		free(img);
		bs_memdev_free(dev);
	}
	printf("(%d refused, %d mounted) ", refused, mounted);
	CU_ASSERT(refused > 0);
	CU_ASSERT(mounted > 0);
	free(buf);
}

/* ---- the remote-free queue (issue 10, core/freeq.h) --------------------- */

static struct vol *vopen_batch(struct bs_memdev *dev, enum bs_alloc_kind k, bool create,
			       struct bs_freeq_policy p)
{
	struct bs_io *io;
	struct vol *v = NULL;
	struct vol_error err = { "" };
	struct vol_opts o = { .allocator = k, .create = create, .uid = 1, .gid = 2,
			      .free_batch = p };
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(vol_open_io(io, &o, &v, &err) == 0);
	return v;
}

static struct bs_freeq_stats fq_of(struct vol *v)
{
	struct vol_counters c;
	vol_get_counters(v, &c);
	return c.freeq;
}

/* The value of `key` in the control file's text (UINT64_MAX when absent). */
static uint64_t ctl(struct vol *v, const char *key)
{
	char *t, pat[64];
	size_t len;
	uint64_t val = UINT64_MAX;
	CU_ASSERT_FATAL(vol_stats_text(v, &t, &len) == 0);
	snprintf(pat, sizeof pat, "\n%s ", key);
	char *p = strstr(t, pat);
	if (p)
		val = strtoull(p + strlen(pat), NULL, 10);
	free(t);
	return val;
}

/* 200 unlinks under Fixed(64): three drains of 64, 8 frees still queued
 * (pending: in no file and not free), then statfs drains them. */
static void unlinks_are_queued_and_drained_in_batches(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		char name[32];
		for (int i = 0; i < 200; i++) {
			snprintf(name, sizeof name, "f%d", i);
			uint64_t f = mkfile(v, ROOT, name);
			put(v, f, (uint64_t)i, 0, 100);
			CU_ASSERT_EQUAL(vol_release(v, f), 0);
		}
		CU_ASSERT_EQUAL(ctl(v, "drain_threshold"), 64);
		CU_ASSERT_EQUAL(ctl(v, "free_queue_capacity"), BS_FREEQ_DEFAULT_CAPACITY);
		struct vol_summary s0, s1;
		for (int i = 0; i < 200; i++) {
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_EQUAL(vol_unlink(v, ROOT, name), 0);
		}
		struct bs_freeq_stats q = fq_of(v);
		CU_ASSERT_EQUAL(q.pushes, 200);
		CU_ASSERT_EQUAL(q.drains, 3);
		CU_ASSERT_EQUAL(q.drained, 192);
		CU_ASSERT_EQUAL(q.depth, 8);
		CU_ASSERT_EQUAL(q.queue_full, 0);
		CU_ASSERT_EQUAL(ctl(v, "remote_frees"), 200);
		CU_ASSERT_EQUAL(ctl(v, "drains"), 3);
		CU_ASSERT_EQUAL(ctl(v, "free_queue_depth"), 8);
		CU_ASSERT_EQUAL(ctl(v, "free_queue_bytes"), 800);
		CU_ASSERT_EQUAL(ctl(v, "queue_full"), 0);
		CU_ASSERT_EQUAL(vol_summary(v, &s0), 0);
		uint64_t pay0 = ctl(v, "payload_bytes");
		CU_ASSERT_EQUAL(s0.files, 0);
		CU_ASSERT_EQUAL(s0.backing_bytes, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		/* statfs is an owner point: it drains, then counts */
		struct vol_statfs st;
		CU_ASSERT_EQUAL(vol_statfs(v, &st), 0);
		q = fq_of(v);
		CU_ASSERT_EQUAL(q.depth, 0);
		CU_ASSERT_EQUAL(q.drains, 4);
		CU_ASSERT_EQUAL(ctl(v, "free_queue_bytes"), 0);
		CU_ASSERT_EQUAL(vol_summary(v, &s1), 0);
		/* the 8 queued frees were not counted free before the drain
		 * (freed into the free list or given back at the tail; Linear
		 * frees only its tail, and the catalog is there) */
		if (k != BS_ALLOC_LINEAR)
			CU_ASSERT(s1.free_bytes + (pay0 - ctl(v, "payload_bytes")) >=
				  s0.free_bytes + 800);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* Truncate to zero, rename over a file and the last close of an orphan
 * queue their frees too; rmdir has no space to give back. */
static void every_removal_gives_its_space_back_through_the_queue(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t a = mkfile(v, ROOT, "a"), b = mkfile(v, ROOT, "b");
		uint64_t c = mkfile(v, ROOT, "c"), d = mkfile(v, ROOT, "d");
		mkdir_(v, ROOT, "dir");
		put(v, a, 1, 0, 1000);
		put(v, b, 2, 0, 1000);
		put(v, c, 3, 0, 1000);
		put(v, d, 4, 0, 1000);
		vol_release(v, a);
		vol_release(v, b);
		vol_release(v, c);
		vol_release(v, d);
		uint64_t p0 = fq_of(v).pushes;
		CU_ASSERT_EQUAL(vol_truncate(v, a, 0), 0);
		CU_ASSERT_EQUAL(fq_of(v).pushes, p0 + 1);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "a", ROOT, "b", 0), 0);
		CU_ASSERT_EQUAL(fq_of(v).pushes, p0 + 2);
		CU_ASSERT_EQUAL(vol_open_file(v, c), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "c"), 0);
		CU_ASSERT_EQUAL(fq_of(v).pushes, p0 + 2);   /* open: an orphan */
		CU_ASSERT_EQUAL(vol_release(v, c), 0);
		CU_ASSERT_EQUAL(fq_of(v).pushes, p0 + 3);
		CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "dir"), 0);
		CU_ASSERT_EQUAL(fq_of(v).pushes, p0 + 3);
		CU_ASSERT_EQUAL(fq_of(v).depth, 3);
		/* fsync is an owner point */
		CU_ASSERT_EQUAL(vol_fsync(v, d), 0);
		CU_ASSERT_EQUAL(fq_of(v).depth, 0);
		CU_ASSERT_EQUAL(fq_of(v).drains, 1);
		CU_ASSERT_EQUAL(fq_of(v).drained, 3);
		CU_ASSERT(has(v, d, 4, 0, 1000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* Unmount drains what is queued: the next mount reclaims nothing. */
static void unmount_drains_the_queue(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t f = mkfile(v, ROOT, "f");
		put(v, f, 1, 0, 5000);
		vol_release(v, f);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		CU_ASSERT_EQUAL(fq_of(v).depth, 1);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* A crash with frees still queued loses nothing for good: the removals
 * are durable, and mount reclaims their space. */
static void a_crash_with_frees_queued_is_reclaimed_at_mount(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		uint64_t keep = mkfile(v, ROOT, "keep");
		put(v, keep, 9, 0, 300);
		vol_release(v, keep);
		char name[32];
		for (int i = 0; i < 10; i++) {
			snprintf(name, sizeof name, "f%d", i);
			uint64_t f = mkfile(v, ROOT, name);
			put(v, f, (uint64_t)i, 0, 1000);
			vol_release(v, f);
		}
		for (int i = 0; i < 10; i++) {
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_EQUAL(vol_unlink(v, ROOT, name), 0);
		}
		CU_ASSERT_EQUAL(fq_of(v).depth, 10);
		bs_memdev_fail_at(dev, 1);   /* the power goes before any drain */
		vol_close(v);
		bs_memdev_power_cycle(dev, 0);
		v = vopen(dev, k, false);
		for (int i = 0; i < 10; i++) {
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_EQUAL(ino_of(v, ROOT, name), 0);
		}
		uint64_t got = reclaimed_of(v);
		if (got < 10000)
			printf("\n%s: reclaimed %llu\n", bs_alloc_kind_name(k),
			       (unsigned long long)got);
		CU_ASSERT(got >= 10000);
		CU_ASSERT(has(v, keep, 9, 0, 300));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(reclaimed_of(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* Power loss at every cut point of a drain inside the volume: the removed
 * files stay removed, the kept one keeps its bytes, and what the drain had
 * not freed is reclaimed at mount — once. */
static void power_loss_at_every_cut_point_of_a_volume_drain(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		char name[32];
		uint8_t *snap;
		size_t snap_len;
		struct vol *v = vopen(dev, k, true);
		uint64_t keep = mkfile(v, ROOT, "keep");
		for (int i = 0; i < 6; i++) {
			snprintf(name, sizeof name, "f%d", i);
			uint64_t f = mkfile(v, ROOT, name);
			put(v, f, (uint64_t)i, 0, 700 + 100 * (size_t)i);
			vol_release(v, f);
		}
		put(v, keep, 9, 0, 300);
		vol_release(v, keep);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		bs_memdev_snapshot(dev, &snap, &snap_len);
		int cuts = 0;
		for (uint64_t n = 1; n < 400; n++) {
			bs_memdev_load(dev, snap, snap_len);
			v = vopen(dev, k, false);
			for (int i = 0; i < 6; i += 2) {
				snprintf(name, sizeof name, "f%d", i);
				CU_ASSERT_EQUAL(vol_unlink(v, ROOT, name), 0);
			}
			CU_ASSERT_EQUAL(fq_of(v).depth, 3);
			bs_memdev_fail_at(dev, n);
			int r = vol_fsync(v, keep);    /* the drain */
			bool done = r == 0 && !bs_memdev_dead(dev);
			vol_close(v);
			bool dead = bs_memdev_dead(dev);   /* in the drain or after */
			bs_memdev_fail_at(dev, 0);
			if (dead)
				bs_memdev_power_cycle(dev, n % 2 ? UINT64_MAX : 0);
			v = vopen(dev, k, false);
			for (int i = 0; i < 6; i++) {
				snprintf(name, sizeof name, "f%d", i);
				CU_ASSERT_EQUAL(ino_of(v, ROOT, name) != 0, i % 2 == 1);
			}
			keep = ino_of(v, ROOT, "keep");
			CU_ASSERT(has(v, keep, 9, 0, 300));
			CU_ASSERT_EQUAL(check_errors(v), 0);
			vol_close(v);
			v = vopen(dev, k, false);
			CU_ASSERT_EQUAL(reclaimed_of(v), 0);
			CU_ASSERT_EQUAL(check_errors(v), 0);
			vol_close(v);
			if (done)
				break;
			cuts++;
		}
		/* Linear frees nothing below its tail: no write to cut */
		CU_ASSERT(k == BS_ALLOC_LINEAR || cuts > 0);
		free(snap);
		bs_memdev_free(dev);
	}
}

/* -o free_batch=adaptive: the threshold starts at 64 and an empty queue
 * steps it up; Fixed(N) drains at N. */
static void the_free_batch_policy_is_the_volumes(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen_batch(dev, BS_ALLOC_GHOST, true,
				    (struct bs_freeq_policy){ BS_FREEQ_ADAPTIVE, 0 });
	CU_ASSERT_EQUAL(ctl(v, "drain_threshold"), 64);
	uint64_t f = mkfile(v, ROOT, "f");
	put(v, f, 1, 0, 100);                        /* an allocation: a tick */
	CU_ASSERT_EQUAL(ctl(v, "drain_threshold"), 128);
	vol_close(v);
	v = vopen_batch(dev, BS_ALLOC_GHOST, false,
			(struct bs_freeq_policy){ BS_FREEQ_FIXED, 5 });
	CU_ASSERT_EQUAL(ctl(v, "drain_threshold"), 5);
	char name[32];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof name, "g%d", i);
		uint64_t g = mkfile(v, ROOT, name);
		put(v, g, 1, 0, 10);
		vol_release(v, g);
	}
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof name, "g%d", i);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, name), 0);
	}
	CU_ASSERT_EQUAL(fq_of(v).drains, 2);
	CU_ASSERT_EQUAL(fq_of(v).depth, 2);
	vol_close(v);
	bs_memdev_free(dev);
}

/* Freed space is reused: the next allocation drains the queue first, so a
 * file of the freed size does not grow the image (GhostTree and FirstFit
 * reuse any fitting hole). */
static void drained_space_is_reused_without_growing_the_image(void)
{
	enum bs_alloc_kind kinds[] = { BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT };
	for (size_t ki = 0; ki < 2; ki++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, kinds[ki], true);
		char name[32];
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof name, "f%d", i);
			uint64_t f = mkfile(v, ROOT, name);
			put(v, f, 1, 0, 1000);
			vol_release(v, f);
		}
		uint64_t top = mkfile(v, ROOT, "top");   /* the tail stays */
		put(v, top, 2, 0, 100);
		vol_release(v, top);
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_EQUAL(vol_unlink(v, ROOT, name), 0);
		}
		CU_ASSERT_EQUAL(fq_of(v).depth, 100 - 64);
		uint64_t before = ctl(v, "payload_bytes");
		/* the allocating request drains what is queued, then allocates */
		uint64_t g = mkfile(v, ROOT, "g");
		put(v, g, 3, 0, 1000);
		CU_ASSERT_EQUAL(fq_of(v).depth, 0);
		vol_release(v, g);
		CU_ASSERT_EQUAL(ctl(v, "payload_bytes"), before);
		CU_ASSERT(has(v, g, 3, 0, 1000));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}


/* kill -9 in the middle of concurrent create/write/close/remove loops: the
 * device dies at a random operation (every later one fails), every write
 * already issued survives (a killed process loses nothing it wrote), and
 * after the reopen every operation that returned success is there. */
#define KL_THREADS 3
#define KL_MAX 400
struct kl {
	struct vol *v;
	uint64_t dir;
	int done_w, done_r;          /* last create+close / remove that succeeded */
	uint64_t ino[KL_MAX + 1];
};

static void *kl_main(void *p)
{
	struct kl *k = p;
	for (int i = 1; i <= KL_MAX; i++) {
		char name[32], line[32];
		struct vol_attr a;
		snprintf(name, sizeof name, "f%d", i);
		int n = snprintf(line, sizeof line, "line %d\n", i);
		if (vol_create(k->v, k->dir, name, 0644, 1, 2, &a) || vol_open_file(k->v, a.ino))
			break;
		if (vol_write(k->v, a.ino, line, (size_t)n, 0) != n || vol_flush(k->v, a.ino)) {
			vol_release(k->v, a.ino);
			break;
		}
		vol_release(k->v, a.ino);
		k->ino[i] = a.ino;
		k->done_w = i;
		if (i % 3 == 0) {
			snprintf(name, sizeof name, "f%d", i - 2);
			if (vol_unlink(k->v, k->dir, name))
				break;
			k->done_r = i - 2;
		}
	}
	return NULL;
}

static void kill_during_concurrent_loops_loses_no_completed_operation(void)
{
	for (int round = 0; round < 12; round++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, BS_ALLOC_GHOST, true);
		struct kl k[KL_THREADS];
		pthread_t th[KL_THREADS];
		for (int t = 0; t < KL_THREADS; t++) {
			char dn[8];
			struct vol_attr a;
			snprintf(dn, sizeof dn, "d%d", t);
			CU_ASSERT_FATAL(vol_mkdir(v, ROOT, dn, 0755, 1, 2, &a) == 0);
			memset(&k[t], 0, sizeof k[t]);
			k[t].v = v;
			k[t].dir = a.ino;
		}
		bs_memdev_fail_at(dev, 2000 + h_rand_below(6000));
		for (int t = 0; t < KL_THREADS; t++)
			pthread_create(&th[t], NULL, kl_main, &k[t]);
		for (int t = 0; t < KL_THREADS; t++)
			pthread_join(th[t], NULL);
		vol_close(v);
		bs_memdev_power_cycle(dev, UINT64_MAX);
		v = vopen(dev, BS_ALLOC_GHOST, false);
		int bad = 0;
		for (int t = 0; t < KL_THREADS; t++) {
			for (int i = 1; i <= k[t].done_w; i++) {
				char name[32], line[32], got[32] = "";
				snprintf(name, sizeof name, "f%d", i);
				int n = snprintf(line, sizeof line, "line %d\n", i);
				bool removed = i % 3 == 1 && i <= k[t].done_r;
				/* the operation the power cut may or may not have
				 * happened: the remove after the last write */
				bool in_flight = k[t].done_w % 3 == 0 && i == k[t].done_w - 2 &&
						 k[t].done_r < i;
				struct vol_attr a;
				int r = vol_lookup(v, k[t].dir, name, &a);
				if (removed) {
					bad += r != -ENOENT;
					continue;
				}
				if (in_flight && r == -ENOENT)
					continue;
				if (r || vol_read(v, a.ino, got, sizeof got, 0) != n ||
				    memcmp(got, line, (size_t)n) != 0) {
					bad++;
					printf("\nround %d: d%d/%s lost (lookup %d; %d written, %d removed)",
					       round, t, name, r, k[t].done_w, k[t].done_r);
				}
			}
		}
		CU_ASSERT_EQUAL(bad, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* ---- the catalog's two layouts (issue 11, part 2) ---------------------- */

/* Open dev with the journal (on a sibling device) or without, whatever
 * BSTACKFS_TEST_JOURNAL says. */
static struct vol *vopen_j(struct bs_memdev *dev, enum bs_alloc_kind k, bool create,
			   bool journal)
{
	struct vol_opts o = { .allocator = k, .create = create, .uid = 1, .gid = 2 };
	if (journal) {
		struct bs_memdev *j = bs_memdev_sibling(dev);
		if (!j)
			j = bs_memdev_new_sibling(dev);
		CU_ASSERT_FATAL(j != NULL && bs_io_mem_open(j, &o.journal_io) == 0);
	}
	return vopen_as(dev, &o);
}

static struct vol_summary summary_of(struct vol *v)
{
	struct vol_summary s;
	CU_ASSERT_FATAL(vol_summary(v, &s) == 0);
	return s;
}

/* Every file f<i> with ino[i] != 0 is in dir, with that inode number. */
static bool files_are_there(struct vol *v, uint64_t dir, const uint64_t *ino, int n)
{
	char name[32];
	for (int i = 0; i < n; i++) {
		struct vol_attr a;
		snprintf(name, sizeof name, "f%05d", i);
		if (ino[i] && (vol_lookup(v, dir, name, &a) || a.ino != ino[i]))
			return false;
	}
	return true;
}

/*
 * With the journal a record is one copy in 128-byte units: 3000 empty files
 * with short names cost at most 256 bytes of catalog each, and renames
 * between short and 200-byte names (three units) reuse the space they
 * free.  A mount without the journal rewrites the catalog paired (two
 * 384-byte slots per record), one with the journal compact again; every
 * file keeps its name and inode number throughout.
 */
static void the_catalog_is_compact_with_the_journal_and_paired_without(void)
{
	enum { N = 3000 };
	static uint64_t ino[N];
	char name[32], longn[201];
	memset(longn, 'l', 200);
	longn[200] = '\0';
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen_j(dev, k, true, true);
		for (int i = 0; i < N; i++) {
			snprintf(name, sizeof name, "f%05d", i);
			ino[i] = mkfile(v, ROOT, name);
		}
		struct vol_summary s = summary_of(v);
		CU_ASSERT(s.catalog_compact);
		CU_ASSERT_EQUAL(s.catalog_records, N + 1);
		printf("[%s: %llu catalog bytes per file] ", bs_alloc_kind_name(k),
		       (unsigned long long)(s.catalog_bytes / N));
		CU_ASSERT(s.catalog_bytes <= 256 * (uint64_t)N);
		CU_ASSERT(s.catalog_bytes >= CAT_UNIT_SIZE * (uint64_t)(N + 1));
		/* long names: three units each, given back when renamed short */
		uint64_t before = s.catalog_bytes;
		for (int round = 0; round < 3; round++) {
			for (int i = 0; i < 100; i++) {
				snprintf(name, sizeof name, "f%05d", i);
				snprintf(longn + 190, 11, "%010d", i);
				CU_ASSERT(vol_rename(v, ROOT, name, ROOT, longn, 0) == 0);
			}
			for (int i = 0; i < 100; i++) {
				snprintf(name, sizeof name, "f%05d", i);
				snprintf(longn + 190, 11, "%010d", i);
				CU_ASSERT(vol_rename(v, ROOT, longn, ROOT, name, 0) == 0);
			}
		}
		s = summary_of(v);
		/* at most one round's 300 units more, however many rounds */
		printf("[%llu -> %llu] ", (unsigned long long)before,
		       (unsigned long long)s.catalog_bytes);
		CU_ASSERT(s.catalog_bytes <= before + 2 * 100 * 3 * CAT_UNIT_SIZE);
		/* fill the catalog to its last unit, free 300 units of records
		 * made one after the other, then three-unit records fit there
		 * (the free runs are merged; without merging none would): all
		 * but those that the renames' moves above left a unit or two
		 * apart, before the catalog grows */
		before = s.catalog_bytes;
		uint64_t units = (before - CAT_HDR_SIZE) / CAT_UNIT_SIZE;
		for (uint64_t i = 0; i < units - (N + 1); i++) {
			snprintf(name, sizeof name, "g%05llu", (unsigned long long)i);
			mkfile(v, ROOT, name);
		}
		CU_ASSERT_EQUAL(summary_of(v).catalog_bytes, before);
		for (int i = 100; i < 400; i++) {
			snprintf(name, sizeof name, "f%05d", i);
			CU_ASSERT(vol_unlink(v, ROOT, name) == 0);
			ino[i] = 0;
		}
		int fit = -1;
		for (int i = 0; i < 100; i++) {
			snprintf(longn + 190, 11, "%010d", i);
			mkfile(v, ROOT, longn);
			if (fit < 0 && summary_of(v).catalog_bytes != before)
				fit = i;
		}
		printf("[%d of 100 fit] ", fit < 0 ? 100 : fit);
		CU_ASSERT(fit < 0 || fit >= 90);
		CU_ASSERT_EQUAL(summary_of(v).catalog_records, units - 300 + 100);
		CU_ASSERT(files_are_there(v, ROOT, ino, N));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen_j(dev, k, false, true);
		CU_ASSERT(files_are_there(v, ROOT, ino, N));
		for (uint64_t i = 0; i < units - (N + 1); i++) {   /* the fillers go */
			snprintf(name, sizeof name, "g%05llu", (unsigned long long)i);
			CU_ASSERT(vol_unlink(v, ROOT, name) == 0);
		}
		for (int i = 0; i < 100; i++) {
			snprintf(longn + 190, 11, "%010d", i);
			CU_ASSERT(vol_unlink(v, ROOT, longn) == 0);
		}
		CU_ASSERT_EQUAL(vol_close(v), 0);
		const int left = N - 300;

		/* without the journal: paired, every file kept */
		v = vopen_j(dev, k, false, false);
		s = summary_of(v);
		CU_ASSERT(!s.catalog_compact);
		CU_ASSERT(s.catalog_bytes >= CAT_PAIR_SIZE * (uint64_t)(left + 1));
		CU_ASSERT_EQUAL(s.catalog_records, left + 1);
		CU_ASSERT(files_are_there(v, ROOT, ino, N));
		for (int i = 400; i < N; i += 2) {   /* half of them go */
			snprintf(name, sizeof name, "f%05d", i);
			CU_ASSERT(vol_unlink(v, ROOT, name) == 0);
			ino[i] = 0;
		}
		const int kept = 100 + (N - 400) / 2;
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);

		/* with it again: compact, and smaller */
		v = vopen_j(dev, k, false, true);
		s = summary_of(v);
		CU_ASSERT(s.catalog_compact);
		CU_ASSERT_EQUAL(s.catalog_records, kept + 1);
		CU_ASSERT(s.catalog_bytes <= 256 * (uint64_t)(kept + 1));
		CU_ASSERT(files_are_there(v, ROOT, ino, N));
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen_j(dev, k, false, true);   /* and it loads as it was left */
		CU_ASSERT(files_are_there(v, ROOT, ino, N));
		CU_ASSERT_EQUAL(summary_of(v).catalog_records, kept + 1);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

/* ---- symlinks, special files, hard links (catalog version 2) ------------- */

static uint32_t cat_version_of(struct vol *v)
{
	struct vol_summary s;
	CU_ASSERT_FATAL(vol_summary(v, &s) == 0);
	return s.catalog_version;
}

static void symlinks_short_and_long_read_back_after_reopen(void)
{
	static char big[VOL_SYMLINK_MAX + 2];
	memset(big, 'p', sizeof big - 1);
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		char t[VOL_SYMLINK_MAX + 1];
		char lname[VOL_NAME_MAX + 1];
		memset(lname, 'n', VOL_NAME_MAX);
		lname[VOL_NAME_MAX] = '\0';
		mkfile(v, ROOT, "f");
		CU_ASSERT_EQUAL(cat_version_of(v), 1);   /* a plain tree stays version 1 */
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "s", "f", 1, 2, &a), 0);
		CU_ASSERT_EQUAL(cat_version_of(v), 2);
		CU_ASSERT_EQUAL(a.mode, S_IFLNK | 0777);
		CU_ASSERT_EQUAL(a.size, 1);
		CU_ASSERT_EQUAL(a.nlink, 1);
		CU_ASSERT_EQUAL(a.alloc_bytes, 0);        /* inline */
		/* a target of exactly the inline limit, renamed to the longest name */
		char edge[CAT_INLINE_TARGET_MAX + 1];
		memset(edge, 'e', CAT_INLINE_TARGET_MAX);
		edge[CAT_INLINE_TARGET_MAX] = '\0';
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "edge", edge, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(a.alloc_bytes, 0);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "edge", ROOT, lname, 0), 0);
		/* one byte more: an allocation */
		big[CAT_INLINE_TARGET_MAX + 1] = '\0';
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "mid", big, 1, 2, &a), 0);
		CU_ASSERT(a.alloc_bytes >= CAT_INLINE_TARGET_MAX + 1);
		big[CAT_INLINE_TARGET_MAX + 1] = 'p';
		big[VOL_SYMLINK_MAX] = '\0';
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "max", big, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(a.size, VOL_SYMLINK_MAX);
		big[VOL_SYMLINK_MAX] = 'p';
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "over", big, 1, 2, &a), -ENAMETOOLONG);
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "empty", "", 1, 2, &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "s", "x", 1, 2, &a), -EEXIST);
		CU_ASSERT_EQUAL(vol_close(v), 0);

		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(cat_version_of(v), 2);
		uint64_t s = ino_of(v, ROOT, "s"), mx = ino_of(v, ROOT, "max");
		CU_ASSERT_EQUAL(vol_readlink(v, s, t, sizeof t), 1);
		CU_ASSERT_EQUAL(t[0], 'f');
		CU_ASSERT_EQUAL(vol_readlink(v, ino_of(v, ROOT, lname), t, sizeof t),
				CAT_INLINE_TARGET_MAX);
		CU_ASSERT_EQUAL(memcmp(t, edge, CAT_INLINE_TARGET_MAX), 0);
		CU_ASSERT_EQUAL(vol_readlink(v, ino_of(v, ROOT, "mid"), t, sizeof t),
				CAT_INLINE_TARGET_MAX + 1);
		CU_ASSERT_EQUAL(vol_readlink(v, mx, t, sizeof t), VOL_SYMLINK_MAX);
		CU_ASSERT_EQUAL(memcmp(t, big, VOL_SYMLINK_MAX), 0);
		CU_ASSERT_EQUAL(vol_readlink(v, mx, t, 10), 10);   /* a short buffer */
		CU_ASSERT_EQUAL(vol_readlink(v, ino_of(v, ROOT, "f"), t, sizeof t), -EINVAL);
		CU_ASSERT_EQUAL(vol_readlink(v, ROOT, t, sizeof t), -EINVAL);
		/* a symlink is not a file: no reads, no writes, no opens */
		CU_ASSERT(vol_read(v, mx, t, 10, 0) < 0);
		CU_ASSERT(vol_write(v, mx, "x", 1, 0) < 0);
		CU_ASSERT(vol_open_file(v, mx) < 0);
		/* removing the long one gives its allocation back */
		struct vol_counters c0, c1;
		vol_get_counters(v, &c0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "max"), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "s"), 0);
		vol_get_counters(v, &c1);
		CU_ASSERT_EQUAL(c1.deallocs, c0.deallocs + 1);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void special_files_keep_their_kind_and_device_numbers(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		uint32_t rdev = (8u << 8) | 17u;
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "fifo", S_IFIFO | 0640, 0, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(a.mode, S_IFIFO | 0640);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "sock", S_IFSOCK | 0600, 0, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "chr", S_IFCHR | 0666, rdev, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(a.rdev, rdev);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "blk", S_IFBLK | 0660, rdev + 1, 1, 2, &a), 0);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "reg", S_IFREG | 0600, 0, 1, 2, &a), 0);
		CU_ASSERT(S_ISREG(a.mode));
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "dir", S_IFDIR | 0755, 0, 1, 2, &a), -EPERM);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "bad", 0170000, 0, 1, 2, &a), -EINVAL);
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "fifo", S_IFIFO | 0640, 0, 1, 2, &a), -EEXIST);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "fifo", &a), 0);
		CU_ASSERT(a.mode == (S_IFIFO | 0640) && a.size == 0 && a.alloc_bytes == 0);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "sock", &a), 0);
		CU_ASSERT(S_ISSOCK(a.mode) && a.rdev == 0);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "chr", &a), 0);
		CU_ASSERT(S_ISCHR(a.mode) && a.rdev == rdev);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "blk", &a), 0);
		CU_ASSERT(S_ISBLK(a.mode) && a.rdev == rdev + 1);
		CU_ASSERT(vol_open_file(v, a.ino) < 0);
		struct vol_summary s;
		CU_ASSERT_EQUAL(vol_summary(v, &s), 0);
		CU_ASSERT(s.special_files == 4 && s.files == 1 && s.symlinks == 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "chr"), 0);
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "fifo", ROOT, "blk", 0), 0);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "blk", &a), 0);
		CU_ASSERT(S_ISFIFO(a.mode));
		CU_ASSERT_EQUAL(vol_summary(v, &s), 0);
		CU_ASSERT_EQUAL(s.special_files, 2);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void hard_links_share_one_inode_and_one_allocation(void)
{
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		uint64_t d = mkdir_(v, ROOT, "d"), f = mkfile(v, ROOT, "f");
		char buf[16];
		CU_ASSERT_EQUAL(vol_write(v, f, "shared", 6, 0), 6);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		CU_ASSERT_EQUAL(vol_link(v, f, d, "g", &a), 0);
		CU_ASSERT(a.ino == f && a.nlink == 2 && a.size == 6);
		CU_ASSERT_EQUAL(vol_link(v, f, ROOT, "h", &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 3);
		CU_ASSERT_EQUAL(vol_lookup(v, d, "g", &a), 0);
		CU_ASSERT(a.ino == f && a.nlink == 3);
		/* what the kernel refuses or expects */
		CU_ASSERT_EQUAL(vol_link(v, d, ROOT, "dl", &a), -EPERM);
		CU_ASSERT_EQUAL(vol_link(v, f, ROOT, "h", &a), -EEXIST);
		CU_ASSERT_EQUAL(vol_link(v, 9999, ROOT, "x", &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_link(v, f, 9999, "x", &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_link(v, f, ROOT, VOL_CONTROL_NAME, &a), -EEXIST);
		/* rename between two names of one inode changes nothing */
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "f", ROOT, "h", 0), 0);
		CU_ASSERT(ino_of(v, ROOT, "f") == f && ino_of(v, ROOT, "h") == f);
		CU_ASSERT_EQUAL(vol_close(v), 0);

		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 3);
		struct vol_summary s;
		CU_ASSERT_EQUAL(vol_summary(v, &s), 0);
		CU_ASSERT(s.files == 1 && s.hardlinks == 2);
		/* the first name goes: the others keep the bytes */
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 2);
		CU_ASSERT_EQUAL(vol_read(v, f, buf, sizeof buf, 0), 6);
		CU_ASSERT_EQUAL(vol_write(v, f, "SH", 2, 0), 2);   /* seen by every name */
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		/* a name can be renamed, and renamed over */
		CU_ASSERT_EQUAL(vol_rename(v, d, "g", ROOT, "g2", 0), 0);
		uint64_t o = mkfile(v, ROOT, "other");
		CU_ASSERT_EQUAL(vol_rename(v, ROOT, "other", ROOT, "h", 0), 0);
		CU_ASSERT_EQUAL(ino_of(v, ROOT, "h"), o);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 1);
		CU_ASSERT_EQUAL(vol_close(v), 0);

		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_lookup(v, ROOT, "g2", &a), 0);
		CU_ASSERT(a.ino == f && a.nlink == 1);
		CU_ASSERT_EQUAL(vol_read(v, f, buf, sizeof buf, 0), 6);
		CU_ASSERT_EQUAL(memcmp(buf, "SHared", 6), 0);
		/* the last name while open: readable until the last close */
		struct vol_counters c0, c1;
		vol_get_counters(v, &c0);
		CU_ASSERT_EQUAL(vol_open_file(v, f), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "g2"), 0);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
		CU_ASSERT_EQUAL(a.nlink, 0);
		CU_ASSERT_EQUAL(vol_read(v, f, buf, sizeof buf, 0), 6);
		CU_ASSERT_EQUAL(vol_release(v, f), 0);
		vol_get_counters(v, &c1);
		CU_ASSERT_EQUAL(c1.deallocs, c0.deallocs + 1);
		CU_ASSERT_EQUAL(vol_getattr(v, f, &a), -ENOENT);
		CU_ASSERT_EQUAL(vol_summary(v, &s), 0);
		CU_ASSERT(s.files == 1 && s.hardlinks == 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void links_of_symlinks_and_fifos_and_the_names_limit(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_GHOST, true);
	struct vol_attr a;
	char name[32];
	CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "s", "target", 1, 2, &a), 0);
	uint64_t s = a.ino;
	CU_ASSERT_EQUAL(vol_link(v, s, ROOT, "s2", &a), 0);
	CU_ASSERT(a.nlink == 2 && S_ISLNK(a.mode));
	CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "p", S_IFIFO | 0600, 0, 1, 2, &a), 0);
	uint64_t p = a.ino;
	CU_ASSERT_EQUAL(vol_link(v, p, ROOT, "p2", &a), 0);
	CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "s"), 0);
	char t[16];
	CU_ASSERT_EQUAL(vol_readlink(v, ino_of(v, ROOT, "s2"), t, sizeof t), 6);
	/* up to the limit, then EMLINK */
	uint64_t f = mkfile(v, ROOT, "f");
	int made = 1;
	for (int i = 0; i < CAT_NLINK_MAX + 1; i++) {
		snprintf(name, sizeof name, "l%d", i);
		int r = vol_link(v, f, ROOT, name, &a);
		if (r) {
			CU_ASSERT_EQUAL(r, -EMLINK);
			break;
		}
		made++;
	}
	CU_ASSERT_EQUAL(made, CAT_NLINK_MAX);
	CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
	CU_ASSERT_EQUAL(a.nlink, CAT_NLINK_MAX);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	v = vopen(dev, BS_ALLOC_GHOST, false);
	CU_ASSERT_EQUAL(vol_getattr(v, f, &a), 0);
	CU_ASSERT_EQUAL(a.nlink, CAT_NLINK_MAX);
	CU_ASSERT_EQUAL(vol_getattr(v, p, &a), 0);
	CU_ASSERT(a.nlink == 2 && S_ISFIFO(a.mode));
	CU_ASSERT_EQUAL(check_errors(v), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

static void a_set_group_id_directory_hands_down_its_group(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_GHOST, true);
	struct vol_attr a, in = { .mode = 02775, .gid = 77 };
	uint64_t d = mkdir_(v, ROOT, "shared");
	CU_ASSERT_EQUAL(vol_setattr(v, d, VOL_SET_MODE | VOL_SET_GID, &in, &a), 0);
	CU_ASSERT_EQUAL(vol_create(v, d, "f", 0644, 5, 6, &a), 0);
	CU_ASSERT(a.gid == 77 && !(a.mode & S_ISGID));
	CU_ASSERT_EQUAL(vol_mkdir(v, d, "sub", 0755, 5, 6, &a), 0);
	CU_ASSERT(a.gid == 77 && (a.mode & S_ISGID));
	CU_ASSERT_EQUAL(vol_create(v, ROOT, "plain", 0644, 5, 6, &a), 0);
	CU_ASSERT_EQUAL(a.gid, 6);
	vol_close(v);
	bs_memdev_free(dev);
}

static void xattrs_follow_the_linux_rules_on_every_kind_and_survive_reopen(void)
{
	static uint8_t big[XA_VALUE_MAX + 1];
	memset(big, 'v', sizeof big);
	FOR_EACH_KIND(k) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, k, true);
		struct vol_attr a;
		char buf[512], lname[XA_NAME_MAX + 8];
		uint64_t f = mkfile(v, ROOT, "f"), d = mkdir_(v, ROOT, "d");
		CU_ASSERT_EQUAL(vol_symlink(v, ROOT, "s", "f", 1, 2, &a), 0);
		uint64_t s = a.ino;
		CU_ASSERT_EQUAL(vol_mknod(v, ROOT, "p", S_IFIFO | 0600, 0, 1, 2, &a), 0);
		uint64_t p = a.ino;
		uint64_t every[] = { f, d, s, p, ROOT };
		for (size_t i = 0; i < 5; i++) {
			CU_ASSERT_EQUAL(vol_setxattr(v, every[i], "user.k", "value", 5, 0), 0);
			CU_ASSERT_EQUAL(vol_setxattr(v, every[i], "trusted.t", "", 0, 0), 0);
		}
		/* sizes, ERANGE, the flags */
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", NULL, 0), 5);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", buf, 4), -ERANGE);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", buf, sizeof buf), 5);
		CU_ASSERT_EQUAL(memcmp(buf, "value", 5), 0);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "trusted.t", buf, sizeof buf), 0);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.none", buf, sizeof buf), -ENODATA);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.k", "x", 1, XATTR_CREATE), -EEXIST);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.new", "x", 1, XATTR_REPLACE), -ENODATA);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.k", "longer value", 12, XATTR_REPLACE), 0);
		CU_ASSERT_EQUAL(vol_removexattr(v, f, "user.none"), -ENODATA);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "system.posix_acl_access", "x", 1, 0),
				-EOPNOTSUPP);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "other.x", "x", 1, 0), -EOPNOTSUPP);
		memset(lname, 'n', sizeof lname);
		memcpy(lname, "user.", 5);
		lname[XA_NAME_MAX] = '\0';
		CU_ASSERT_EQUAL(vol_setxattr(v, f, lname, "x", 1, 0), 0);     /* 255 bytes */
		lname[XA_NAME_MAX] = 'n';
		lname[XA_NAME_MAX + 1] = '\0';
		CU_ASSERT_EQUAL(vol_setxattr(v, f, lname, "x", 1, 0), -ERANGE);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.big", big, XA_VALUE_MAX + 1, 0), -E2BIG);
		CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.big", big, XA_VALUE_MAX, 0), 0);
		/* an inode holds at most XA_BLOB_MAX of them */
		int r = 0, made = 0;
		for (int i = 0; i < 8 && !r; i++, made++) {
			snprintf(buf, sizeof buf, "user.b%d", i);
			r = vol_setxattr(v, d, buf, big, XA_VALUE_MAX, 0);
		}
		CU_ASSERT_EQUAL(r, -ENOSPC);
		CU_ASSERT_EQUAL(made, 4);   /* three 64 KiB values and change fit */
		/* list: every name, NUL-terminated; ERANGE on a short buffer */
		ssize_t need = vol_listxattr(v, f, NULL, 0);
		CU_ASSERT_EQUAL(need, (ssize_t)(strlen("trusted.t") + 1 + strlen("user.k") + 1 +
						XA_NAME_MAX + 1 + strlen("user.big") + 1));
		CU_ASSERT_EQUAL(vol_listxattr(v, f, buf, 8), -ERANGE);
		CU_ASSERT_EQUAL(vol_listxattr(v, f, buf, sizeof buf), need);
		CU_ASSERT(memmem(buf, (size_t)need, "user.k\0", 7) != NULL);
		CU_ASSERT_EQUAL(vol_listxattr(v, mkfile(v, ROOT, "bare"), buf, sizeof buf), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);

		v = vopen(dev, k, false);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", buf, sizeof buf), 12);
		CU_ASSERT_EQUAL(memcmp(buf, "longer value", 12), 0);
		for (size_t i = 1; i < 5; i++)
			CU_ASSERT_EQUAL(vol_getxattr(v, every[i], "user.k", buf, sizeof buf), 5);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.big", NULL, 0), XA_VALUE_MAX);
		/* a hard link sees the same attributes */
		CU_ASSERT_EQUAL(vol_link(v, f, ROOT, "f2", &a), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
		CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", buf, sizeof buf), 12);
		/* removing every attribute, and every inode, leaves no blob */
		CU_ASSERT_EQUAL(vol_removexattr(v, p, "user.k"), 0);
		CU_ASSERT_EQUAL(vol_removexattr(v, p, "trusted.t"), 0);
		CU_ASSERT_EQUAL(vol_listxattr(v, p, buf, sizeof buf), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f2"), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "s"), 0);
		CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "p"), 0);
		CU_ASSERT_EQUAL(vol_rmdir(v, ROOT, "d"), 0);
		CU_ASSERT_EQUAL(vol_removexattr(v, ROOT, "user.k"), 0);
		CU_ASSERT_EQUAL(vol_removexattr(v, ROOT, "trusted.t"), 0);
		struct vol_summary sum;
		CU_ASSERT_EQUAL(vol_summary(v, &sum), 0);
		CU_ASSERT_EQUAL(sum.xattr_bytes, 0);
		CU_ASSERT_EQUAL(check_errors(v), 0);
		CU_ASSERT_EQUAL(vol_close(v), 0);
		/* nothing left for a reopen to reclaim: every blob was freed */
		v = vopen(dev, k, false);
		struct vol_counters c;
		vol_get_counters(v, &c);
		CU_ASSERT_EQUAL(c.leaked_bytes_reclaimed, 0);
		vol_close(v);
		bs_memdev_free(dev);
	}
}

static void a_blob_that_fails_its_checksum_reads_as_an_io_error(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_GHOST, true);
	uint64_t f = mkfile(v, ROOT, "f");
	char buf[64];
	CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.k", "a-recognisable-value", 20, 0), 0);
	CU_ASSERT_EQUAL(vol_close(v), 0);
	uint8_t *img;
	size_t len;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &img, &len) == 0);
	uint8_t *at = memmem(img, len, "a-recognisable-value", 20);
	CU_ASSERT_FATAL(at != NULL);
	at[3] ^= 0x20;
	CU_ASSERT_FATAL(bs_memdev_load(dev, img, len) == 0);
	free(img);
	v = vopen(dev, BS_ALLOC_GHOST, false);
	CU_ASSERT_EQUAL(vol_getxattr(v, f, "user.k", buf, sizeof buf), -EIO);
	CU_ASSERT_EQUAL(vol_listxattr(v, f, buf, sizeof buf), -EIO);
	CU_ASSERT_EQUAL(vol_setxattr(v, f, "user.k", "x", 1, 0), -EIO);
	/* the rest of the volume is unharmed, and the file can still go */
	CU_ASSERT_EQUAL(vol_unlink(v, ROOT, "f"), 0);
	vol_close(v);
	bs_memdev_free(dev);
}

static const struct h_test tests[] = {
	H_TEST(mutated_images_are_refused_or_mount_but_never_crash),
	H_TEST(empty_and_one_byte_files_read_back_after_reopen),
	H_TEST(a_write_past_the_end_leaves_a_hole_that_reads_as_zeros),
	H_TEST(truncate_to_zero_and_back_reads_zeros),
	H_TEST(fallocate_extends_the_size_and_never_shrinks),
	H_TEST(rename_over_an_existing_file_replaces_it),
	H_TEST(rename_of_a_directory_with_contents_moves_the_subtree),
	H_TEST(rename_refuses_what_posix_refuses),
	H_TEST(rmdir_and_unlink_report_the_errors_users_expect),
	H_TEST(names_are_validated_and_reserved_names_refused),
	H_TEST(lookup_of_a_missing_name_and_create_of_an_existing_one_fail),
	H_TEST(setattr_changes_mode_owner_and_times_durably),
	H_TEST(readdir_lists_every_entry_and_resumes_at_a_position),
	H_TEST(ten_thousand_files_fit_in_one_directory),
	H_TEST(a_tree_twenty_levels_deep_survives_reopen),
	H_TEST(release_trims_the_allocation_to_the_size),
	H_TEST(a_file_written_in_one_request_gets_exactly_its_size),
	H_TEST(appending_64_mib_in_4_kib_writes_costs_at_most_40_reallocs),
	H_TEST(a_sequential_write_costs_syncs_that_do_not_grow_with_its_size),
	H_TEST(appending_behind_another_file_still_costs_o_log_n_reallocs),
	H_TEST(a_file_larger_than_64_mib_round_trips_on_a_real_file),
	H_TEST(the_stats_text_has_every_key_of_section_6),
	H_TEST(an_allocator_mismatch_is_refused_and_the_image_untouched),
	H_TEST(block_size_is_refused_where_it_means_nothing),
	H_TEST(an_image_of_another_program_is_refused_untouched),
	H_TEST(an_empty_allocator_image_is_adopted),
	H_TEST(not_a_bstack_image_and_an_empty_device_are_refused),
	H_TEST(leaked_space_is_reclaimed_at_mount_and_only_once),
	H_TEST(a_record_naming_free_space_is_refused),
	H_TEST(a_second_open_of_an_image_in_use_is_refused),
	H_TEST(fsync_and_sync_writes_make_data_durable_before_close),
	H_TEST(concurrent_writers_on_different_files_all_land),
	H_TEST(writes_of_different_files_proceed_in_parallel),
	H_TEST(a_file_changed_under_a_shared_write_gets_it_again_exclusively),
	H_TEST(a_deferred_operation_alone_is_made_durable_by_its_own_thread),
	H_TEST(an_operation_during_a_commit_is_answered_by_the_committing_thread),
	H_TEST(kernel_references_race_operations_and_all_come_back),
	H_TEST(kill_during_concurrent_loops_loses_no_completed_operation),
	H_TEST(catalogs_with_checksum_mismatches_are_refused),
	H_TEST(a_record_pointing_outside_the_payload_is_refused),
	H_TEST(two_records_sharing_bytes_are_refused),
	H_TEST(a_root_reference_pointing_nowhere_is_refused),
	H_TEST(a_random_workload_matches_an_in_memory_model),
	H_TEST(power_loss_during_create_leaves_before_or_after),
	H_TEST(power_loss_during_mkdir_leaves_before_or_after),
	H_TEST(power_loss_during_write_and_release_leaves_before_or_after),
	H_TEST(power_loss_during_tail_write_and_release_leaves_before_or_after),
	H_TEST(power_loss_during_truncate_grow_leaves_before_or_after),
	H_TEST(power_loss_during_tail_truncate_grow_leaves_before_or_after),
	H_TEST(power_loss_during_truncate_shrink_leaves_before_or_after),
	H_TEST(power_loss_during_tail_truncate_shrink_leaves_before_or_after),
	H_TEST(power_loss_during_rename_leaves_before_or_after),
	H_TEST(power_loss_during_rename_over_leaves_before_or_after),
	H_TEST(power_loss_during_rmdir_leaves_before_or_after),
	H_TEST(power_loss_during_unlink_leaves_before_or_after),
	H_TEST(power_loss_while_the_catalog_grows_loses_no_file),
	H_TEST(power_loss_during_format_leaves_an_image_that_opens),
	H_TEST(random_operations_cut_at_random_points_always_remount_clean),
	H_TEST(an_unlinked_open_file_keeps_working_until_its_last_close),
	H_TEST(opening_counts_only_files_that_exist),
	H_TEST(a_file_renamed_over_while_open_keeps_working_until_its_last_close),
	H_TEST(closing_the_volume_frees_orphans_still_open),
	H_TEST(vnodes_live_while_the_kernel_or_an_open_holds_them),
	H_TEST(power_loss_after_unlinking_an_open_file_reclaims_its_space),
	H_TEST(a_file_removed_while_open_keeps_its_extended_attributes),
	H_TEST(a_full_disk_fails_growth_cleanly_and_unlink_makes_room),
	H_TEST(every_limit_leaves_each_growth_whole_or_not_at_all),
	H_TEST(unlinks_are_queued_and_drained_in_batches),
	H_TEST(every_removal_gives_its_space_back_through_the_queue),
	H_TEST(unmount_drains_the_queue),
	H_TEST(a_crash_with_frees_queued_is_reclaimed_at_mount),
	H_TEST(power_loss_at_every_cut_point_of_a_volume_drain),
	H_TEST(the_free_batch_policy_is_the_volumes),
	H_TEST(drained_space_is_reused_without_growing_the_image),
	H_TEST(the_catalog_is_compact_with_the_journal_and_paired_without),
	H_TEST(symlinks_short_and_long_read_back_after_reopen),
	H_TEST(special_files_keep_their_kind_and_device_numbers),
	H_TEST(hard_links_share_one_inode_and_one_allocation),
	H_TEST(links_of_symlinks_and_fifos_and_the_names_limit),
	H_TEST(a_set_group_id_directory_hands_down_its_group),
	H_TEST(xattrs_follow_the_linux_rules_on_every_kind_and_survive_reopen),
	H_TEST(a_blob_that_fails_its_checksum_reads_as_an_io_error),
};

H_MAIN("volume", tests)
