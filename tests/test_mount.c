/*
 * test_mount.c — bstackfs as users meet it (issue 6): real mounts on
 * /dev/fuse, driven by cp, cat, dd, truncate, rm, mv, touch, chmod, mkdir,
 * tar, diff, df and POSIX calls.
 *
 * Each test mounts a fresh image in its own temp directory and unmounts it
 * at the end even when a check failed (only non-fatal asserts, so the
 * unmount always runs); an atexit hook unmounts whatever is left, so a
 * failing run never leaves a mount behind.  After an unmount the tests wait
 * until the daemon has released the image lock (vol_close finished), since
 * fusermount3 returns before the daemon is done.
 *
 * Environment: BSTACKFS_BIN (the executable), BSTACKFS_FSCK (bstackfs-fsck;
 * beside BSTACKFS_BIN when unset), BSTACKFS_SRCDIR (the source tree, copied
 * in and out).
 */
#include "harness.h"
#include "mounts.h"
#include "catalog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct mnt {
	char dir[400];            /* this test's temp directory */
	char img[450];
	char mnt[450];
	char err[450];            /* stderr of the last bstackfs run */
	pid_t pid;                /* foreground daemon, 0 when daemonized */
	bool up;
};

/* ---- plumbing ---------------------------------------------------------- */

static const char *bin(void)
{
	const char *b = getenv("BSTACKFS_BIN");
	return b ? b : "bstackfs";
}

/* Small host filesystems (tmpfs) the ENOSPC test mounts images on; they
 * are unmounted after every FUSE mount is gone (one may hold an image). */
static char *g_tmpfs[4];

static void tmpfs_del(const char *path)
{
	for (int i = 0; i < 4; i++)
		if (g_tmpfs[i] && strcmp(g_tmpfs[i], path) == 0) {
			free(g_tmpfs[i]);
			g_tmpfs[i] = NULL;
		}
}

/* umount, retried while busy, lazy as the last resort. */
static bool tmpfs_unmount(const char *path)
{
	for (int i = 0; i < 50 && h_is_mounted(path); i++) {
		if (h_sh("umount '%s' 2>/dev/null", path) == 0)
			break;
		h_sleep_ms(100);
	}
	if (h_is_mounted(path)) {
		fprintf(stderr, "test_mount: lazy unmount of tmpfs %s\n", path);
		h_sh("umount -l '%s' 2>/dev/null", path);
	}
	tmpfs_del(path);
	return !h_is_mounted(path);
}

static void unmount_all(void)
{
	h_unmount_tracked();
	for (int i = 0; i < 4; i++)
		if (g_tmpfs[i])
			tmpfs_unmount(g_tmpfs[i]);
}


static void test_dir(struct mnt *m)
{
	static bool hooked;
	char *p = h_tmp_path("m");

	/* After h_tmp_dir() registered its rm -rf: atexit runs in reverse,
	 * so everything is unmounted before the temp tree is removed. */
	if (!hooked) {
		atexit(unmount_all);
		hooked = true;
	}
	memset(m, 0, sizeof(*m));
	snprintf(m->dir, sizeof(m->dir), "%s", p);
	free(p);
	mkdir(m->dir, 0755);
	snprintf(m->img, sizeof(m->img), "%s/image.bst", m->dir);
	snprintf(m->mnt, sizeof(m->mnt), "%s/mnt", m->dir);
	snprintf(m->err, sizeof(m->err), "%s/stderr", m->dir);
	mkdir(m->mnt, 0755);
}

/*
 * Run bstackfs with argv (argv[0] filled in), stderr to m->err; its exit
 * status.  With fg, it is left running (-f must be in argv) and m->pid set.
 */
static int run_bsfs(struct mnt *m, const char **argv, bool fg)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(m->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDWR);
		if (fd >= 0)
			dup2(fd, 2);
		if (nul >= 0)
			dup2(nul, 1);
		argv[0] = bin();
		execv(bin(), (char *const *)argv);
		_exit(127);
	}
	if (fg) {
		m->pid = pid;
		return 0;
	}
	int st;
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void read_err(const struct mnt *m, char *buf, size_t n)
{
	buf[0] = '\0';
	FILE *f = fopen(m->err, "r");
	if (!f)
		return;
	size_t r = fread(buf, 1, n - 1, f);
	buf[r] = '\0';
	fclose(f);
}

static void read_err_file(const char *path, char *buf, size_t n)
{
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t r = fread(buf, 1, n - 1, f);
	buf[r] = '\0';
	fclose(f);
}

/* BSTACKFS_FSCK, else bstackfs-fsck beside the bstackfs under test. */
static const char *fsck_bin(void)
{
	static char f[600];
	const char *e = getenv("BSTACKFS_FSCK");
	if (e)
		return e;
	snprintf(f, sizeof(f), "%s", bin());
	char *slash = strrchr(f, '/');
	if (slash)
		snprintf(slash + 1, sizeof(f) - (size_t)(slash + 1 - f), "bstackfs-fsck");
	else
		snprintf(f, sizeof(f), "bstackfs-fsck");
	return f;
}

/* bstackfs-fsck on img; its exit status. */
static int fsck_image(const char *img)
{
	return h_sh("'%s' '%s' >&2", fsck_bin(), img);
}

/* Mount m->img on m->mnt (daemonized) with extra -o opts (NULL: none). */
static bool mnt_up(struct mnt *m, const char *opts)
{
	const char *argv[8] = { NULL, m->img, m->mnt };
	int i = 3;

	if (opts) {
		argv[i++] = "-o";
		argv[i++] = opts;
	}
	argv[i] = NULL;
	int rc = run_bsfs(m, argv, false);
	if (rc != 0 || !h_is_mounted(m->mnt)) {
		char e[1024];
		read_err(m, e, sizeof(e));
		fprintf(stderr, "test_mount: mount of %s failed (%d): %s\n", m->img, rc, e);
		return false;
	}
	m->pid = 0;
	m->up = true;
	h_mount_track(m->mnt);
	return true;
}

/* The same in the foreground (-f, plus `flag` such as -s or -d when not
 * NULL), remembering the daemon's pid. */
static bool mnt_up_fg(struct mnt *m, const char *opts, const char *flag)
{
	const char *argv[9] = { NULL, "-f", m->img, m->mnt };
	int i = 4;

	if (flag)
		argv[i++] = flag;
	if (opts) {
		argv[i++] = "-o";
		argv[i++] = opts;
	}
	argv[i] = NULL;
	if (run_bsfs(m, argv, true) < 0)
		return false;
	h_mount_track(m->mnt);
	for (int t = 0; t < 200; t++) {
		if (h_is_mounted(m->mnt)) {
			m->up = true;
			return true;
		}
		int st;
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			break;
		}
		h_sleep_ms(25);
	}
	fprintf(stderr, "test_mount: foreground mount of %s failed\n", m->img);
	return false;
}

/* Unmount and wait until the daemon has closed the volume. */
static bool mnt_down(struct mnt *m)
{
	bool ok = h_force_unmount(m->mnt);

	h_mount_untrack(m->mnt);
	if (m->pid > 0) {
		int st;
		waitpid(m->pid, &st, 0);
		ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
		m->pid = 0;
	}
	ok = h_wait_released(m->img) && ok;
	m->up = false;
	return ok;
}

static bool mnt_cycle(struct mnt *m, const char *opts)
{
	return mnt_down(m) && mnt_up(m, opts);
}

static bool mnt_fresh(struct mnt *m, const char *opts)
{
	test_dir(m);
	return mnt_up(m, opts);
}

static void mnt_done(struct mnt *m)
{
	if (m->up || h_is_mounted(m->mnt))
		CU_ASSERT(mnt_down(m));
	h_sh("rm -rf '%s'", m->dir);
}

/* a/b into out; a path that cannot exist rather than a truncated one. */
static char *join(char *out, size_t n, const char *a, const char *b)
{
	if (snprintf(out, n, "%s/%s", a, b) >= (int)n)
		snprintf(out, n, "/nonexistent-path-too-long");
	return out;
}

static char *mpath(const struct mnt *m, const char *rel)
{
	static __thread char buf[8][600];
	static __thread int slot;
	char *p = buf[slot++ % 8];

	return join(p, 600, m->mnt, rel);
}

static char *dpath(const struct mnt *m, const char *rel)
{
	static __thread char buf[8][600];
	static __thread int slot;
	char *p = buf[slot++ % 8];

	return join(p, 600, m->dir, rel);
}

static int write_pattern_file(const char *path, size_t n, uint64_t tag)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	char *buf = malloc(1 << 20);
	int rc = buf ? 0 : -ENOMEM;
	for (size_t off = 0; rc == 0 && off < n;) {
		size_t k = n - off < (1u << 20) ? n - off : (1u << 20);
		h_pattern(buf, k, tag, off);
		ssize_t w = write(fd, buf, k);
		if (w != (ssize_t)k)
			rc = -EIO;
		off += k;
	}
	free(buf);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? -errno : (int64_t)st.st_size;
}

/* Value of `key` in the control file, or -1. */
static int64_t ctl_value(const struct mnt *m, const char *key)
{
	char line[256];
	int64_t v = -1;
	size_t n = strlen(key);
	FILE *f = fopen(mpath(m, ".bstackfs"), "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ' ') {
			v = strtoll(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/*
 * Value of `key` once it equals `want` (or whatever it is after 3 s).  The
 * kernel sends RELEASE after close(2) has returned: a file just closed may
 * still be open to the volume for a moment, and a file removed while open
 * is freed only at its last release (POSIX unlink semantics).
 */
static int64_t ctl_wait(const struct mnt *m, const char *key, int64_t want)
{
	int64_t v = ctl_value(m, key);

	for (int i = 0; i < 300 && v != want; i++) {
		h_sleep_ms(10);
		v = ctl_value(m, key);
	}
	return v;
}

static bool same_bytes(const char *path, const uint8_t *before, size_t n)
{
	uint8_t *now = NULL;
	size_t len = 0;

	if (h_read_file(path, &now, &len) < 0)
		return false;
	bool same = len == n && memcmp(now, before, n) == 0;
	free(now);
	return same;
}

/* One line on stderr, naming the image, containing `why`. */
static bool refusal_says(const struct mnt *m, const char *image, const char *why)
{
	char e[2048];

	read_err(m, e, sizeof(e));
	char *nl = strchr(e, '\n');
	bool one_line = nl && nl[1] == '\0';
	bool ok = one_line && strstr(e, image) && strstr(e, why);
	if (!ok)
		fprintf(stderr, "refusal message (want '%s'): %s", why, e);
	return ok;
}

static int try_mount(struct mnt *m, const char *img, const char *mnt, const char *opts)
{
	const char *argv[8] = { NULL, img, mnt };
	int i = 3;

	if (opts) {
		argv[i++] = "-o";
		argv[i++] = opts;
	}
	argv[i] = NULL;
	return run_bsfs(m, argv, false);
}

/* ---- data: cp, cat, dd ------------------------------------------------- */

static void big_file_copies_in_and_out_byte_identical(void)
{
	struct mnt m;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	/* 100 MiB of random bytes. */
	FILE *f = fopen(dpath(&m, "src"), "w");
	CU_ASSERT_PTR_NOT_NULL(f);
	if (f) {
		uint64_t *buf = malloc(1 << 20);
		for (int i = 0; buf && i < 100; i++) {
			for (size_t j = 0; j < (1 << 20) / 8; j++)
				buf[j] = h_rand();
			CU_ASSERT(fwrite(buf, 1, 1 << 20, f) == 1 << 20);
		}
		free(buf);
		fclose(f);
	}
	CU_ASSERT(h_sh("cp '%s' '%s'", dpath(&m, "src"), mpath(&m, "big")) == 0);
	CU_ASSERT(file_size(mpath(&m, "big")) == 100 << 20);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "src"), mpath(&m, "big")) == 0);
	CU_ASSERT(h_sh("cp '%s' '%s'", mpath(&m, "big"), dpath(&m, "out")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "src"), dpath(&m, "out")) == 0);
	CU_ASSERT(h_sh("cat '%s' | cmp - '%s'", mpath(&m, "big"), dpath(&m, "src")) == 0);
	/* At rest, the allocation is trimmed to the file (§4). */
	CU_ASSERT(ctl_value(&m, "live_bytes") == 100 << 20);

	/* dd in place at offsets, mirrored on the host copy. */
	CU_ASSERT(h_sh("head -c 12288 /dev/urandom > '%s'", dpath(&m, "patch")) == 0);
	const char *seeks[] = { "0", "1", "5000", "25599" };   /* 4 KiB blocks */
	for (size_t i = 0; i < 4; i++) {
		CU_ASSERT(h_sh("dd if='%s' of='%s' bs=4096 seek=%s conv=notrunc status=none",
			     dpath(&m, "patch"), mpath(&m, "big"), seeks[i]) == 0);
		CU_ASSERT(h_sh("dd if='%s' of='%s' bs=4096 seek=%s conv=notrunc status=none",
			     dpath(&m, "patch"), dpath(&m, "src"), seeks[i]) == 0);
	}
	/* The last one wrote past the end: the file grew by 8 KiB. */
	CU_ASSERT(file_size(mpath(&m, "big")) == (100 << 20) + 8192);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "src"), mpath(&m, "big")) == 0);
	/* dd reading from an offset. */
	CU_ASSERT(h_sh("dd if='%s' bs=4096 skip=5000 count=3 status=none | cmp - '%s'",
		     mpath(&m, "big"), dpath(&m, "patch")) == 0);
	unlink(dpath(&m, "out"));
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "src"), mpath(&m, "big")) == 0);
	unlink(dpath(&m, "src"));
	CU_ASSERT(h_sh("rm '%s'", mpath(&m, "big")) == 0);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 0);
out:
	mnt_done(&m);
}

/* ---- sizes: truncate --------------------------------------------------- */

static bool prefix_ok(const char *path, size_t n, uint64_t tag, size_t zeros)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (h_read_file(path, &buf, &len) < 0)
		return false;
	bool ok = len == n + zeros && h_pattern_ok(buf, n, tag, 0) &&
		  h_all_zero(buf + n, zeros);
	free(buf);
	return ok;
}

static void truncate_grows_and_shrinks_tail_and_non_tail_files(void)
{
	struct mnt m;
	char out[256];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	/* a is created first (not at the tail), b last (at the tail). */
	CU_ASSERT(write_pattern_file(mpath(&m, "a"), 100000, 1) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "b"), 100000, 2) == 0);
	int64_t r0 = ctl_value(&m, "reallocs"), d0 = ctl_value(&m, "deallocs");
	int64_t a0 = ctl_value(&m, "allocs");
	CU_ASSERT(r0 >= 0 && d0 >= 0 && a0 >= 0);

	/* Grow the non-tail file: in place or by copy-on-write (alloc new,
	 * free old) — either way the allocator saw it. */
	CU_ASSERT(h_sh("truncate -s 300000 '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(file_size(mpath(&m, "a")) == 300000);
	CU_ASSERT(h_sh_out(out, sizeof(out), "stat -c %%s '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 300000);
	CU_ASSERT(prefix_ok(mpath(&m, "a"), 100000, 1, 200000));
	int64_t r1 = ctl_value(&m, "reallocs"), d1 = ctl_value(&m, "deallocs");
	int64_t a1 = ctl_value(&m, "allocs");
	CU_ASSERT(r1 > r0 || (a1 > a0 && d1 > d0));

	/* Shrink it: a realloc in place, nothing freed as a whole. */
	CU_ASSERT(h_sh("truncate -s 5000 '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -l '%s' | awk '{print $5}'",
			 mpath(&m, "a")) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 5000);
	CU_ASSERT(prefix_ok(mpath(&m, "a"), 5000, 1, 0));
	int64_t r2 = ctl_value(&m, "reallocs"), d2 = ctl_value(&m, "deallocs");
	CU_ASSERT(r2 > r1);
	CU_ASSERT(d2 == d1);

	/* Tail file: grow then shrink, both reallocs. */
	CU_ASSERT(h_sh("truncate -s 1M '%s'", mpath(&m, "b")) == 0);
	CU_ASSERT(file_size(mpath(&m, "b")) == 1 << 20);
	CU_ASSERT(prefix_ok(mpath(&m, "b"), 100000, 2, (1 << 20) - 100000));
	int64_t r3 = ctl_value(&m, "reallocs");
	CU_ASSERT(r3 > r2);
	CU_ASSERT(h_sh("truncate -s 1K '%s'", mpath(&m, "b")) == 0);
	CU_ASSERT(file_size(mpath(&m, "b")) == 1024);
	CU_ASSERT(prefix_ok(mpath(&m, "b"), 1024, 2, 0));
	CU_ASSERT(ctl_value(&m, "reallocs") > r3);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 5000 + 1024);

	/* To zero and back: the null slice, then a fresh allocation. */
	CU_ASSERT(h_sh("truncate -s 0 '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(file_size(mpath(&m, "a")) == 0);
	CU_ASSERT(h_sh("truncate -s 10 '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(prefix_ok(mpath(&m, "a"), 0, 1, 10));
	/* fallocate (mode 0) grows too; other modes are refused. */
	CU_ASSERT(h_sh("fallocate -l 20000 '%s'", mpath(&m, "a")) == 0);
	CU_ASSERT(file_size(mpath(&m, "a")) == 20000);
	CU_ASSERT(h_sh("fallocate -n -l 90000 '%s' 2>/dev/null", mpath(&m, "a")) != 0);
	CU_ASSERT(file_size(mpath(&m, "a")) == 20000);

	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(file_size(mpath(&m, "a")) == 20000);
	CU_ASSERT(prefix_ok(mpath(&m, "b"), 1024, 2, 0));
out:
	mnt_done(&m);
}

/* ---- names: rm, mv, touch, chmod --------------------------------------- */

static void rm_removes_one_file_and_a_thousand(void)
{
	struct mnt m;
	char name[64];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "one"), 4096, 3) == 0);
	int64_t d0 = ctl_value(&m, "deallocs");
	CU_ASSERT(h_sh("rm '%s'", mpath(&m, "one")) == 0);
	CU_ASSERT(access(mpath(&m, "one"), F_OK) < 0 && errno == ENOENT);
	CU_ASSERT(ctl_wait(&m, "deallocs", d0 + 1) == d0 + 1);
	CU_ASSERT(ctl_value(&m, "files") == 0);

	/* At the root, so that listing resumes across the control file. */
	int bad = 0;
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		int fd = open(mpath(&m, name), O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 || write(fd, name, strlen(name)) != (ssize_t)strlen(name))
			bad++;
		if (fd >= 0)
			close(fd);
	}
	CU_ASSERT(bad == 0);
	CU_ASSERT(ctl_value(&m, "files") == 1000);
	char out[64];
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls '%s' | sort -u | wc -l", m.mnt) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 1000);
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -a '%s' | grep -c '^.bstackfs$'", m.mnt) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 1);
	d0 = ctl_value(&m, "deallocs");
	CU_ASSERT(h_sh("rm '%s'/f*", m.mnt) == 0);
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -A '%s' | wc -l", m.mnt) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 2);   /* .bstackfs, .bstackfs.json */
	CU_ASSERT(ctl_wait(&m, "deallocs", d0 + 1000) == d0 + 1000);
	CU_ASSERT(ctl_value(&m, "files") == 0);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 0);
out:
	mnt_done(&m);
}

static void mv_renames_and_replaces_files(void)
{
	struct mnt m;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "a"), 70000, 4) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "c"), 30000, 5) == 0);
	CU_ASSERT(mkdir(mpath(&m, "d"), 0755) == 0);
	CU_ASSERT(h_sh("mv '%s' '%s'", mpath(&m, "a"), mpath(&m, "b")) == 0);
	CU_ASSERT(access(mpath(&m, "a"), F_OK) < 0);
	CU_ASSERT(prefix_ok(mpath(&m, "b"), 70000, 4, 0));
	/* Over an existing file: the old one's allocation is freed. */
	int64_t d0 = ctl_value(&m, "deallocs");
	CU_ASSERT(h_sh("mv '%s' '%s'", mpath(&m, "c"), mpath(&m, "b")) == 0);
	CU_ASSERT(access(mpath(&m, "c"), F_OK) < 0);
	CU_ASSERT(prefix_ok(mpath(&m, "b"), 30000, 5, 0));
	CU_ASSERT(ctl_wait(&m, "deallocs", d0 + 1) == d0 + 1);
	CU_ASSERT(ctl_value(&m, "files") == 1);
	/* Across directories, and a directory itself. */
	CU_ASSERT(h_sh("mv '%s' '%s'", mpath(&m, "b"), mpath(&m, "d/b")) == 0);
	CU_ASSERT(h_sh("mv '%s' '%s'", mpath(&m, "d"), mpath(&m, "e")) == 0);
	CU_ASSERT(prefix_ok(mpath(&m, "e/b"), 30000, 5, 0));
	/* RENAME_NOREPLACE. */
	CU_ASSERT(write_pattern_file(mpath(&m, "x"), 10, 6) == 0);
	CU_ASSERT(renameat2(AT_FDCWD, mpath(&m, "x"), AT_FDCWD, mpath(&m, "e/b"),
			    RENAME_NOREPLACE) < 0 && errno == EEXIST);
	CU_ASSERT(prefix_ok(mpath(&m, "e/b"), 30000, 5, 0));
	/* RENAME_EXCHANGE: swapped, or EINVAL where the volume cannot. */
	int xr = renameat2(AT_FDCWD, mpath(&m, "x"), AT_FDCWD, mpath(&m, "e/b"),
			   RENAME_EXCHANGE);
	CU_ASSERT(xr == 0 || errno == EINVAL);
	if (xr == 0)   /* swap back, so what follows holds either way */
		CU_ASSERT(renameat2(AT_FDCWD, mpath(&m, "x"), AT_FDCWD, mpath(&m, "e/b"),
				    RENAME_EXCHANGE) == 0);
	printf("\n  RENAME_EXCHANGE %s", xr == 0 ? "supported" : "refused with EINVAL");
	CU_ASSERT(prefix_ok(mpath(&m, "e/b"), 30000, 5, 0));
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(prefix_ok(mpath(&m, "e/b"), 30000, 5, 0));
	CU_ASSERT(prefix_ok(mpath(&m, "x"), 10, 6, 0));
out:
	mnt_done(&m);
}

static void touch_chmod_and_chown_set_attributes(void)
{
	struct mnt m;
	struct stat st;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(h_sh("touch -d '2001-02-03 04:05:06.5 UTC' '%s'", mpath(&m, "t")) == 0);
	CU_ASSERT(stat(mpath(&m, "t"), &st) == 0);
	CU_ASSERT(st.st_mtim.tv_sec == 981173106 && st.st_mtim.tv_nsec == 500000000);
	CU_ASSERT(st.st_atim.tv_sec == 981173106);
	CU_ASSERT(h_sh("touch -m -d '@1000000000' '%s'", mpath(&m, "t")) == 0);
	CU_ASSERT(stat(mpath(&m, "t"), &st) == 0);
	CU_ASSERT(st.st_mtim.tv_sec == 1000000000 && st.st_atim.tv_sec == 981173106);
	CU_ASSERT(h_sh("chmod 0640 '%s'", mpath(&m, "t")) == 0);
	CU_ASSERT(stat(mpath(&m, "t"), &st) == 0);
	CU_ASSERT((st.st_mode & 07777) == 0640 && S_ISREG(st.st_mode));
	CU_ASSERT(h_sh("chown 1234:5678 '%s'", mpath(&m, "t")) == 0);
	/* New files: the caller's ids, the mode less the umask. */
	mode_t old = umask(027);
	int fd = open(mpath(&m, "n"), O_WRONLY | O_CREAT, 0666);
	CU_ASSERT(fd >= 0);
	if (fd >= 0)
		close(fd);
	CU_ASSERT(mkdir(mpath(&m, "dir"), 0777) == 0);
	umask(old);
	CU_ASSERT(stat(mpath(&m, "n"), &st) == 0 && (st.st_mode & 0777) == 0640);
	CU_ASSERT(st.st_uid == getuid() && st.st_gid == getgid());
	CU_ASSERT(stat(mpath(&m, "dir"), &st) == 0 && (st.st_mode & 0777) == 0750);
	CU_ASSERT(S_ISDIR(st.st_mode));
	/* Links, symlinks and special files (catalog version 2). */
	CU_ASSERT(link(mpath(&m, "n"), mpath(&m, "hard")) == 0);
	CU_ASSERT(symlink("n", mpath(&m, "soft")) == 0);
	CU_ASSERT(mkfifo(mpath(&m, "fifo"), 0644) == 0);
	CU_ASSERT(link(mpath(&m, "dir"), mpath(&m, "dirlink")) < 0 && errno == EPERM);
	CU_ASSERT(mknod(mpath(&m, "reg"), S_IFREG | 0600, 0) == 0);
	/* Durable and persistent. */
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(stat(mpath(&m, "t"), &st) == 0);
	CU_ASSERT(st.st_mtim.tv_sec == 1000000000 && (st.st_mode & 07777) == 0640);
	CU_ASSERT(st.st_uid == 1234 && st.st_gid == 5678);
	CU_ASSERT(stat(mpath(&m, "reg"), &st) == 0 && (st.st_mode & 0777) == 0600);
out:
	mnt_done(&m);
}

/* ---- trees: mkdir -p, cp -r, tar, rm -r -------------------------------- */

static void directory_trees_copy_in_and_out_identically(void)
{
	const char *src = getenv("BSTACKFS_SRCDIR");
	struct mnt m;

	if (!src)
		src = ".";
	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(h_sh("mkdir -p '%s'", mpath(&m, "a/b/c")) == 0);
	struct stat st;
	CU_ASSERT(stat(mpath(&m, "a/b/c"), &st) == 0 && S_ISDIR(st.st_mode));
	CU_ASSERT(h_sh("cp -r '%s/core' '%s'", src, mpath(&m, "a/b/c/core")) == 0);
	CU_ASSERT(h_sh("diff -r '%s/core' '%s'", src, mpath(&m, "a/b/c/core")) == 0);
	CU_ASSERT(h_sh("cp -r '%s' '%s'", mpath(&m, "a"), dpath(&m, "back")) == 0);
	CU_ASSERT(h_sh("diff -r '%s/core' '%s'", src, dpath(&m, "back/b/c/core")) == 0);
	/* tar x of an archive made outside. */
	CU_ASSERT(h_sh("tar -C '%s' -cf '%s' core tests meson.build", src,
		     dpath(&m, "x.tar")) == 0);
	CU_ASSERT(mkdir(mpath(&m, "t"), 0755) == 0);
	CU_ASSERT(h_sh("tar -C '%s' -xf '%s'", mpath(&m, "t"), dpath(&m, "x.tar")) == 0);
	CU_ASSERT(h_sh("diff -r '%s/core' '%s'", src, mpath(&m, "t/core")) == 0);
	CU_ASSERT(h_sh("diff -r '%s/tests' '%s'", src, mpath(&m, "t/tests")) == 0);
	CU_ASSERT(h_sh("cmp '%s/meson.build' '%s'", src, mpath(&m, "t/meson.build")) == 0);
	/* ... and listing it back matches the archive. */
	CU_ASSERT(h_sh("cd '%s' && tar -cf - core | tar -tf - | sort > '%s' && "
		     "tar -tf '%s' core | sort | cmp - '%s'", mpath(&m, "t"),
		     dpath(&m, "list"), dpath(&m, "x.tar"), dpath(&m, "list")) == 0);
	/* rmdir of a non-empty directory fails and changes nothing. */
	CU_ASSERT(rmdir(mpath(&m, "a/b")) < 0 && errno == ENOTEMPTY);
	CU_ASSERT(h_sh("rmdir '%s' 2>/dev/null", mpath(&m, "t")) != 0);
	CU_ASSERT(h_sh("diff -r '%s/core' '%s'", src, mpath(&m, "t/core")) == 0);
	CU_ASSERT(h_sh("rm -r '%s' '%s'", mpath(&m, "a"), mpath(&m, "t")) == 0);
	CU_ASSERT(access(mpath(&m, "a"), F_OK) < 0 && access(mpath(&m, "t"), F_OK) < 0);
	CU_ASSERT(ctl_value(&m, "files") == 0);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 0);
out:
	mnt_done(&m);
}

/* ---- df and the control file ------------------------------------------ */

/* The §6 keys of docs/design.md; the README's table must hold at least these. */
static const char *const design_keys[] = {
	"allocator", "magic", "image_bytes", "payload_bytes", "files", "live_bytes",
	"backing_bytes", "free_blocks", "free_bytes", "largest_free_bytes",
	"fragmentation", "overhead_bytes", "allocs", "reallocs", "reallocs_in_place",
	"deallocs", "bytes_copied", "syncs", "leaked_bytes_reclaimed",
};

#define MAX_KEYS 64

/*
 * Every key the README documents: the backticked names in the first column
 * of the table under "## The control file".  Returns how many.
 */
static size_t readme_keys(char keys[][64], size_t max)
{
	const char *src = getenv("BSTACKFS_SRCDIR");
	char path[1024], line[1024];
	size_t n = 0;
	bool in = false;

	snprintf(path, sizeof(path), "%s/README.md", src ? src : ".");
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "## ", 3) == 0)
			in = strstr(line, "control file") != NULL;
		if (!in || strncmp(line, "| `", 3) != 0)
			continue;
		char *end = strchr(line + 1, '|');   /* end of the first column */
		if (end)
			*end = '\0';
		for (char *p = line; (p = strchr(p, '`')) && n < max;) {
			char *q = strchr(p + 1, '`');
			if (!q)
				break;
			snprintf(keys[n++], 64, "%.*s", (int)(q - p - 1), p + 1);
			p = q + 1;
		}
	}
	fclose(f);
	return n;
}

static bool has_key(const char *text, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = text; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, key, n) == 0 && p[n] == ' ')
			return true;
	}
	return false;
}

static void df_and_the_control_file_report_sane_figures(void)
{
	struct mnt m;
	struct statvfs sv;
	char out[8192];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 3 << 20, 7) == 0);
	/* RELEASE reaches the daemon after close(2) returns, and it trims the
	 * allocation (and so maybe the image): wait for it before stat-ing. */
	CU_ASSERT(ctl_wait(&m, "capacity_bytes", 3 << 20) == 3 << 20);
	CU_ASSERT(statvfs(m.mnt, &sv) == 0);
	struct stat img;
	CU_ASSERT(stat(m.img, &img) == 0);
	CU_ASSERT(sv.f_frsize > 0 && sv.f_blocks > 0);
	CU_ASSERT((uint64_t)sv.f_blocks * sv.f_frsize >= (uint64_t)img.st_size);
	CU_ASSERT(sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_blocks);
	CU_ASSERT(sv.f_namemax == 255);
	CU_ASSERT(h_sh_out(out, sizeof(out), "df -P '%s' | tail -1", m.mnt) == 0);
	CU_ASSERT(strstr(out, m.mnt) != NULL);

	/* ls -a lists the control file; reading it gives every key. */
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -a '%s'", m.mnt) == 0);
	CU_ASSERT(strstr(out, ".bstackfs\n") != NULL);
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls '%s'", m.mnt) == 0);
	CU_ASSERT(strstr(out, ".bstackfs") == NULL);
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'", mpath(&m, ".bstackfs")) == 0);
	char keys[MAX_KEYS][64];
	size_t nkeys = readme_keys(keys, MAX_KEYS);
	CU_ASSERT(nkeys >= sizeof(design_keys) / sizeof(design_keys[0]));
	for (size_t i = 0; i < sizeof(design_keys) / sizeof(design_keys[0]); i++) {
		bool documented = false;
		for (size_t j = 0; j < nkeys; j++)
			documented |= strcmp(keys[j], design_keys[i]) == 0;
		CU_ASSERT(documented);
		CU_ASSERT(has_key(out, design_keys[i]));
	}
	for (size_t j = 0; j < nkeys; j++) {
		if (!has_key(out, keys[j]))
			fprintf(stderr, "control file lacks the documented key %s\n", keys[j]);
		CU_ASSERT(has_key(out, keys[j]));
	}
	CU_ASSERT(has_key(out, "tree_height") && has_key(out, "tree_nodes"));
	CU_ASSERT(strncmp(out, "allocator ghost\n", 16) == 0);
	CU_ASSERT(ctl_value(&m, "files") == 1);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 3 << 20);
	/* a shrink cuts the file lazily, by the next checkpoint at the latest
	 * (an_idle_volume_is_checkpointed_and_gives_its_tail_back) */
	int64_t ib = ctl_value(&m, "image_bytes");
	CU_ASSERT(ib > 3 << 20 && ib <= (int64_t)img.st_size &&
		  (int64_t)img.st_size <= ib + (int64_t)BSTACK_LAZY_TRIM_MAX);
	/* stat's size is that of the text. */
	CU_ASSERT(file_size(mpath(&m, ".bstackfs")) == (int64_t)strlen(out));

	/* Read-only and permanent. */
	const char *ctl = mpath(&m, ".bstackfs");
	struct stat st;
	CU_ASSERT(stat(ctl, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0444);
	CU_ASSERT(unlink(ctl) < 0 && errno == EPERM);
	CU_ASSERT(rename(ctl, mpath(&m, "x")) < 0 && errno == EPERM);
	CU_ASSERT(rename(mpath(&m, "f"), ctl) < 0 && errno == EPERM);
	CU_ASSERT(open(ctl, O_WRONLY) < 0 && errno == EPERM);
	CU_ASSERT(truncate(ctl, 0) < 0 && errno == EPERM);
	CU_ASSERT(chmod(ctl, 0666) < 0 && errno == EPERM);
	CU_ASSERT(open(ctl, O_WRONLY | O_CREAT | O_EXCL, 0644) < 0 && errno == EEXIST);
	CU_ASSERT(mkdir(ctl, 0755) < 0 && errno == EEXIST);
	CU_ASSERT(h_sh("(echo x > '%s') 2>/dev/null", ctl) != 0);
	CU_ASSERT(file_size(mpath(&m, "f")) == 3 << 20);

	/* A snapshot per open: a reader keeps its figures. */
	int fd = open(ctl, O_RDONLY);
	CU_ASSERT(fd >= 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "g"), 1000, 8) == 0);
	char snap[8192];
	ssize_t n = fd >= 0 ? read(fd, snap, sizeof(snap) - 1) : -1;
	CU_ASSERT(n > 0);
	if (n > 0) {
		snap[n] = '\0';
		CU_ASSERT(strstr(snap, "\nfiles 1\n") != NULL);
	}
	if (fd >= 0)
		close(fd);
	CU_ASSERT(ctl_value(&m, "files") == 2);
out:
	mnt_done(&m);
}

/* ---- persistence across remount for every allocator ------------------- */

static void one_allocator_persists(const char *name, const char *extra)
{
	struct mnt m;
	char opt[64];
	struct stat st;

	snprintf(opt, sizeof(opt), "allocator=%s%s", name, extra ? extra : "");
	test_dir(&m);
	if (!mnt_up(&m, opt)) {
		char e[512];
		read_err(&m, e, sizeof(e));
		/* An allocator this build does not carry is skipped, said
		 * out loud; any other failure is one. */
		if (strstr(e, "not built") || strstr(e, "not supported") ||
		    strstr(e, "not available")) {
			printf("\n  SKIP allocator %s: %s", name, e);
		} else {
			CU_FAIL("mount with -o allocator");
		}
		goto out;
	}
	CU_ASSERT(mkdir(mpath(&m, "d"), 0700) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "d/f1"), 123457, 11) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "f2"), 4096, 12) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "empty"), 0, 13) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "gone"), 5000, 14) == 0);
	CU_ASSERT(unlink(mpath(&m, "gone")) == 0);
	CU_ASSERT(h_sh("touch -d @1234567890 '%s'", mpath(&m, "f2")) == 0);
	CU_ASSERT(chmod(mpath(&m, "f2"), 0604) == 0);
	/* Remount twice: without the option (it has what it has), and with it. */
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(mnt_cycle(&m, opt));
	char out[8192];
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'", mpath(&m, ".bstackfs")) == 0);
	char want[64];
	snprintf(want, sizeof(want), "allocator %s\n", name);
	CU_ASSERT(strncmp(out, want, strlen(want)) == 0);
	/* The allocator's own figures, as the README lists them. */
	if (strcmp(name, "ghost") == 0)
		CU_ASSERT(has_key(out, "tree_height") && has_key(out, "tree_nodes"));
	if (strcmp(name, "firstfit") == 0)
		CU_ASSERT(has_key(out, "free_list_length") && has_key(out, "recovery_runs"));
	if (strcmp(name, "slab") == 0)
		CU_ASSERT(has_key(out, "block_size") && has_key(out, "free_list_length"));
	CU_ASSERT(prefix_ok(mpath(&m, "d/f1"), 123457, 11, 0));
	CU_ASSERT(prefix_ok(mpath(&m, "f2"), 4096, 12, 0));
	CU_ASSERT(file_size(mpath(&m, "empty")) == 0);
	CU_ASSERT(access(mpath(&m, "gone"), F_OK) < 0 && errno == ENOENT);
	CU_ASSERT(stat(mpath(&m, "f2"), &st) == 0);
	CU_ASSERT(st.st_mtim.tv_sec == 1234567890 && (st.st_mode & 0777) == 0604);
	CU_ASSERT(stat(mpath(&m, "d"), &st) == 0 && (st.st_mode & 0777) == 0700);
	CU_ASSERT(ctl_value(&m, "files") == 3);
	CU_ASSERT(ctl_value(&m, "leaked_bytes_reclaimed") == 0);
	if (extra && strstr(extra, "block_size=8192")) {
		CU_ASSERT(ctl_value(&m, "block_size") == 8192);
		struct mnt r = m;
		char mnt2[600];
		snprintf(mnt2, sizeof(mnt2), "%s/mnt2", m.dir);
		CU_ASSERT(mkdir(mnt2, 0755) == 0);
		CU_ASSERT(mnt_down(&m));
		CU_ASSERT(try_mount(&r, m.img, mnt2, "block_size=4096") == 1);
		CU_ASSERT(refusal_says(&r, m.img, "block size"));
		CU_ASSERT(mnt_up(&m, NULL));
	}
	/* And it keeps working after the remount. */
	CU_ASSERT(write_pattern_file(mpath(&m, "d/f3"), 99999, 15) == 0);
	CU_ASSERT(h_sh("truncate -s 200000 '%s'", mpath(&m, "d/f1")) == 0);
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(prefix_ok(mpath(&m, "d/f3"), 99999, 15, 0));
	CU_ASSERT(prefix_ok(mpath(&m, "d/f1"), 123457, 11, 200000 - 123457));
out:
	mnt_done(&m);
}

static void files_persist_across_remount_with_ghost(void)
{
	one_allocator_persists("ghost", NULL);
}

static void files_persist_across_remount_with_firstfit(void)
{
	one_allocator_persists("firstfit", NULL);
}

static void files_persist_across_remount_with_slab(void)
{
	/* A block size other than the default, kept by the image. */
	one_allocator_persists("slab", ",block_size=8192");
}

static void files_persist_across_remount_with_linear(void)
{
	one_allocator_persists("linear", NULL);
}

/* ---- concurrency ------------------------------------------------------- */

#define PW_CHUNK (64 << 10)
#define PW_CHUNKS 32              /* 2 MiB per writer */

struct pw {
	const char *path;
	uint64_t tag;
	uint64_t base;            /* byte offset of this writer's region */
	int fd;
	int err;
};

static void *pw_run(void *arg)
{
	struct pw *w = arg;
	char *buf = malloc(PW_CHUNK);
	int fd = w->fd >= 0 ? w->fd : open(w->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (!buf || fd < 0) {
		w->err = 1;
		free(buf);
		return NULL;
	}
	for (int i = 0; i < PW_CHUNKS; i++) {
		uint64_t off = w->base + (uint64_t)i * PW_CHUNK;
		h_pattern(buf, PW_CHUNK, w->tag, off);
		if (pwrite(fd, buf, PW_CHUNK, (off_t)off) != PW_CHUNK)
			w->err = 1;
	}
	if (w->fd < 0 && close(fd) < 0)
		w->err = 1;
	free(buf);
	return NULL;
}

static void parallel_writers_keep_their_data(void)
{
	struct mnt m;
	struct pw w[12];
	pthread_t t[12];
	char paths[8][600];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	int shared = open(mpath(&m, "shared"), O_RDWR | O_CREAT, 0644);
	CU_ASSERT(shared >= 0);
	for (int i = 0; i < 12; i++) {
		if (i < 8) {
			snprintf(paths[i], sizeof(paths[i]), "%s/own%d", m.mnt, i);
			w[i] = (struct pw){ paths[i], 100 + (uint64_t)i, 0, -1, 0 };
		} else {
			/* Four writers, one file, disjoint regions: the whole
			 * file is one pattern. */
			uint64_t base = (uint64_t)(i - 8) * PW_CHUNK * PW_CHUNKS;
			w[i] = (struct pw){ NULL, 200, base, shared, 0 };
		}
	}
	for (int i = 0; i < 12; i++)
		CU_ASSERT(pthread_create(&t[i], NULL, pw_run, &w[i]) == 0);
	for (int i = 0; i < 12; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT(w[i].err == 0);
	}
	if (shared >= 0) {
		CU_ASSERT(fsync(shared) == 0);
		close(shared);
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < 8; i++)
			CU_ASSERT(prefix_ok(paths[i], PW_CHUNK * PW_CHUNKS, w[i].tag, 0));
		CU_ASSERT(prefix_ok(mpath(&m, "shared"), 4 * PW_CHUNK * PW_CHUNKS, 200, 0));
		if (pass == 0)
			CU_ASSERT(mnt_cycle(&m, NULL));
	}
out:
	mnt_done(&m);
}

/* ---- the command line: refusals, options, signals ---------------------- */

static void mounting_an_image_already_mounted_is_refused(void)
{
	struct mnt m;
	char mnt2[600];
	uint8_t *before = NULL;
	size_t n = 0;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 5000, 21) == 0);
	snprintf(mnt2, sizeof(mnt2), "%s/mnt2", m.dir);
	CU_ASSERT(mkdir(mnt2, 0755) == 0);
	CU_ASSERT(h_read_file(m.img, &before, &n) == 0);
	CU_ASSERT(try_mount(&m, m.img, mnt2, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "in use"));
	CU_ASSERT(!h_is_mounted(mnt2));
	CU_ASSERT(before && same_bytes(m.img, before, n));
	CU_ASSERT(prefix_ok(mpath(&m, "f"), 5000, 21, 0));
out:
	free(before);
	mnt_done(&m);
}

static void non_bstack_files_are_refused_untouched(void)
{
	struct mnt m;
	uint8_t junk[4096];

	test_dir(&m);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)h_rand();
	CU_ASSERT(h_write_file(m.img, junk, sizeof(junk)) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "not a bstack image"));
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(same_bytes(m.img, junk, sizeof(junk)));

	/* BSTK, but a version this build does not read. */
	memcpy(junk, "BSTK\x00\x03\x00\x00", 8);
	memset(junk + 8, 0, 8);
	CU_ASSERT(h_write_file(m.img, junk, sizeof(junk)) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "version"));
	CU_ASSERT(same_bytes(m.img, junk, sizeof(junk)));

	/* Shorter than a header: refused, never "repaired". */
	CU_ASSERT(h_write_file(m.img, "BSTK", 4) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, NULL) == 1);
	CU_ASSERT(same_bytes(m.img, (const uint8_t *)"BSTK", 4));
	CU_ASSERT(!h_is_mounted(m.mnt));
	mnt_done(&m);
}

/* Issue 14's reproducers on a real mount: a zeroed length field, a
 * FirstFit free-list head lost, a torn catalog slot.  The first two are
 * refused with one line and keep every byte; the third mounts and says
 * which record fell back. */
static void damaged_images_are_refused_untouched_and_fallbacks_reported(void)
{
	struct mnt m;
	uint8_t *before = NULL;

	/* formatted without the journal: the paired catalog layout, whose
	 * second copies make a torn slot a fallback (a compact catalog has
	 * one copy, and the journal makes its writes whole) */
	if (!mnt_fresh(&m, "allocator=firstfit,journal=off")) {
		CU_FAIL("mount");
		goto out;
	}
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "f%d", i);
		CU_ASSERT(write_pattern_file(mpath(&m, name), 3000 + 100 * (size_t)i,
					     40 + (uint64_t)i) == 0);
	}
	CU_ASSERT(unlink(mpath(&m, "f1")) == 0);
	CU_ASSERT(mnt_down(&m));
	uint8_t *orig = NULL;
	size_t on = 0;
	CU_ASSERT_FATAL(h_read_file(m.img, &orig, &on) == 0);

	/* 1: the length field zeroed */
	before = malloc(on);
	memcpy(before, orig, on);
	memset(before + 8, 0, 8);
	CU_ASSERT(h_write_file(m.img, before, on) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "header's length"));
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(same_bytes(m.img, before, on));

	/* 2: FirstFit's free list head (file offset 48) lost */
	memcpy(before, orig, on);
	memset(before + 48, 0, 8);
	CU_ASSERT(h_write_file(m.img, before, on) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "free but not on the free list"));
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(same_bytes(m.img, before, on));

	/* 3: the newest slot of the root directory's record torn (its older
	 * version differs in times only): mounts, with a note */
	memcpy(before, orig, on);
	uint64_t root = 0, len = 0, best = 0, seq = 0;
	for (int i = 7; i >= 0; i--) {
		root = root << 8 | before[16 + i];
		len = len << 8 | before[24 + i];
	}
	for (uint64_t o = CAT_HDR_SIZE; o + CAT_SLOT_SIZE <= len; o += CAT_SLOT_SIZE) {
		struct cat_rec r;
		if (cat_rec_decode(before + 16 + root + o, &r) == 0 && r.ino == 1 && r.seq > seq) {
			seq = r.seq;
			best = root + o;
		}
	}
	CU_ASSERT_FATAL(best != 0);
	before[16 + best + 120] ^= 0x5a;
	CU_ASSERT(h_write_file(m.img, before, on) == 0);
	CU_ASSERT_FATAL(mnt_up(&m, NULL));
	char e[2048];
	read_err(&m, e, sizeof e);
	CU_ASSERT(strstr(e, "note: catalog record pair") != NULL);
	CU_ASSERT(strstr(e, "inode 1") != NULL);
	CU_ASSERT(prefix_ok(mpath(&m, "f3"), 3300, 43, 0));
	free(orig);
out:
	free(before);
	mnt_done(&m);
}

/* -o ro is read-only for real (issue 13 item 7): from a read-only bind
 * mount the image mounts, reads, refuses writes, and its checksum is
 * unchanged; an image that needs recovery is refused unless norecovery,
 * which mounts it recovered in memory only. */
static void ro_mounts_from_read_only_media_and_writes_nothing(void)
{
	struct mnt m;
	char rodir[600], roimg[700];
	uint8_t *before = NULL;
	size_t n = 0;
	bool bound = false;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 7000, 31) == 0);
	CU_ASSERT(mnt_down(&m));
	snprintf(rodir, sizeof rodir, "%s/ro", m.dir);
	snprintf(roimg, sizeof roimg, "%s/image.bst", rodir);
	CU_ASSERT_FATAL(mkdir(rodir, 0755) == 0);
	if (h_sh("mount --bind '%s' '%s' && mount -o remount,bind,ro '%s'", m.dir, rodir,
	       rodir) != 0) {
		printf("\n  (no read-only bind mount here: skipped)");
		goto out;
	}
	bound = true;
	CU_ASSERT_FATAL(h_read_file(m.img, &before, &n) == 0);
	CU_ASSERT(try_mount(&m, roimg, m.mnt, "ro") == 0);
	m.up = h_is_mounted(m.mnt);
	CU_ASSERT_FATAL(m.up);
	h_mount_track(m.mnt);
	CU_ASSERT(prefix_ok(mpath(&m, "f"), 7000, 31, 0));
	int fd = open(mpath(&m, "g"), O_WRONLY | O_CREAT, 0644);
	CU_ASSERT(fd < 0 && errno == EROFS);
	if (fd >= 0)
		close(fd);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(same_bytes(m.img, before, n));

	/* bytes past the header's length: a crash's leftovers to recover */
	free(before);
	before = NULL;
	CU_ASSERT(h_sh("mount -o remount,bind,rw '%s' && printf garbage >> '%s' && "
		     "mount -o remount,bind,ro '%s'", rodir, m.img, rodir) == 0);
	CU_ASSERT_FATAL(h_read_file(m.img, &before, &n) == 0);
	CU_ASSERT(try_mount(&m, roimg, m.mnt, "ro") == 1);
	CU_ASSERT(refusal_says(&m, roimg, "needs recovery"));
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(try_mount(&m, roimg, m.mnt, "ro,norecovery") == 0);
	m.up = h_is_mounted(m.mnt);
	CU_ASSERT_FATAL(m.up);
	h_mount_track(m.mnt);
	CU_ASSERT(prefix_ok(mpath(&m, "f"), 7000, 31, 0));
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(same_bytes(m.img, before, n));
	/* norecovery alone means nothing */
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "norecovery") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "norecovery needs ro"));
out:
	if (bound)
		h_sh("umount '%s'", rodir);
	free(before);
	mnt_done(&m);
}

static void a_wrong_allocator_option_is_refused_untouched(void)
{
	struct mnt m;
	uint8_t *before = NULL;
	size_t n = 0;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 5000, 22) == 0);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(h_read_file(m.img, &before, &n) == 0);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "allocator=linear") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "allocator"));
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(before && same_bytes(m.img, before, n));
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "allocator=nonsense") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "allocator"));
	CU_ASSERT(before && same_bytes(m.img, before, n));
	/* An unknown option is refused before the image is created. */
	char img2[600];
	snprintf(img2, sizeof(img2), "%s/new.bst", m.dir);
	CU_ASSERT(try_mount(&m, img2, m.mnt, "no_such_option") == 1);
	CU_ASSERT(refusal_says(&m, img2, "no_such_option"));
	CU_ASSERT(access(img2, F_OK) < 0 && errno == ENOENT);
	/* The matching option mounts. */
	CU_ASSERT(mnt_up(&m, "allocator=ghost"));
	CU_ASSERT(prefix_ok(mpath(&m, "f"), 5000, 22, 0));
out:
	free(before);
	mnt_done(&m);
}

static void a_missing_mount_point_is_refused_untouched(void)
{
	struct mnt m;
	uint8_t *before = NULL;
	size_t n = 0;
	char nomnt[600], img2[600];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(h_read_file(m.img, &before, &n) == 0);
	snprintf(nomnt, sizeof(nomnt), "%s/nowhere", m.dir);
	CU_ASSERT(try_mount(&m, m.img, nomnt, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "does not exist"));
	CU_ASSERT(before && same_bytes(m.img, before, n));
	/* A file is no mount point either. */
	CU_ASSERT(try_mount(&m, m.img, m.img, NULL) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "not a directory"));
	CU_ASSERT(before && same_bytes(m.img, before, n));
	/* And a missing image is not created for a refused mount. */
	snprintf(img2, sizeof(img2), "%s/new.bst", m.dir);
	CU_ASSERT(try_mount(&m, img2, nomnt, NULL) == 1);
	CU_ASSERT(access(img2, F_OK) < 0 && errno == ENOENT);
out:
	free(before);
	mnt_done(&m);
}

static void a_machine_without_dev_fuse_is_refused_untouched(void)
{
	struct mnt m;
	char cmd[2048];

	test_dir(&m);
	/* A private mount namespace whose /dev is empty. */
	if (h_sh("unshare -m true 2>/dev/null") != 0) {
		printf("\n  SKIP: cannot unshare a mount namespace");
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "unshare -m sh -c 'mount -t tmpfs none /dev && "
		 "exec \"$0\" \"$1\" \"$2\"' '%s' '%s' '%s' 2>'%s'", bin(), m.img, m.mnt,
		 m.err);
	CU_ASSERT(h_sh("%s", cmd) == 1);
	CU_ASSERT(refusal_says(&m, m.img, "no /dev/fuse"));
	CU_ASSERT(access(m.img, F_OK) < 0 && errno == ENOENT);
	CU_ASSERT(!h_is_mounted(m.mnt));
out:
	mnt_done(&m);
}

static void fstab_style_options_and_help_work(void)
{
	struct mnt m;
	char out[16384];

	/* --help: ours first, then libfuse's. */
	CU_ASSERT(h_sh_out(out, sizeof(out), "'%s' --help 2>&1", bin()) == 0);
	char *ours = strstr(out, "allocator=");
	char *fuses = strstr(out, "-o max_idle_threads");
	CU_ASSERT(ours && strstr(out, "block_size=") && strstr(out, "-o sync"));
	CU_ASSERT(fuses && ours && ours < fuses);
	CU_ASSERT(strstr(out, "-f") != NULL && strstr(out, "-s") != NULL);
	CU_ASSERT(h_sh_out(out, sizeof(out), "'%s' --version 2>&1", bin()) == 0);
	CU_ASSERT(strstr(out, BSTACKFS_VERSION) != NULL);
	CU_ASSERT(strstr(out, "FUSE") != NULL);
	CU_ASSERT(h_sh("'%s' >/dev/null 2>&1", bin()) != 0);

	/* What mount.fuse3 passes from an fstab line with `defaults`. */
	if (!mnt_fresh(&m, "rw,dev,suid,exec,defaults,atime,nofail")) {
		CU_FAIL("mount with fstab options");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 10, 31) == 0);
	CU_ASSERT(mnt_down(&m));
	/* The real helper, as mount -t fuse.bstackfs runs it. */
	char dir[600];
	snprintf(dir, sizeof(dir), "%s", bin());
	char *slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		CU_ASSERT(h_sh("PATH='%s':\"$PATH\" mount.fuse3 '%s' '%s' -t fuse.bstackfs "
			     "-o rw,defaults 2>'%s'", dir, m.img, m.mnt, m.err) == 0);
		if (h_is_mounted(m.mnt)) {
			m.up = true;
			h_mount_track(m.mnt);
			CU_ASSERT(prefix_ok(mpath(&m, "f"), 10, 31, 0));
			char line[4096] = "";
			CU_ASSERT(h_sh_out(line, sizeof(line), "grep ' %s ' /proc/self/mounts",
					 m.mnt) == 0);
			CU_ASSERT(strstr(line, "fuse.bstackfs") != NULL);
		} else {
			CU_FAIL("mount.fuse3 did not mount");
		}
	}
out:
	mnt_done(&m);
}

static const char *mkfs_bin(void)
{
	const char *b = getenv("BSTACKFS_MKFS");
	return b ? b : "mkfs.bstackfs";
}

/* fstab's way: images made by mkfs.bstackfs, mounted with -o nocreate, which
 * refuses a missing image (a typo in a path) instead of making a new one. */
static void nocreate_mounts_only_images_that_exist(void)
{
	struct mnt m;

	test_dir(&m);
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "nocreate") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "no such image"));
	CU_ASSERT(access(m.img, F_OK) < 0 && errno == ENOENT);
	CU_ASSERT(!h_is_mounted(m.mnt));
	CU_ASSERT(h_sh("'%s' -q -a firstfit '%s'", mkfs_bin(), m.img) == 0);
	if (!mnt_up(&m, "nocreate,rw,defaults")) {
		CU_FAIL("mount of a mkfs image with nocreate");
		goto out;
	}
	CU_ASSERT(ctl_value(&m, "files") == 0 && ctl_value(&m, "directories") == 1);
	char out[4096];
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'", mpath(&m, ".bstackfs")) == 0);
	CU_ASSERT(strncmp(out, "allocator firstfit\n", 19) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 5000, 41) == 0);
	CU_ASSERT(mnt_down(&m));
	/* the help names it */
	CU_ASSERT(h_sh_out(out, sizeof(out), "'%s' --help 2>&1", bin()) == 0);
	CU_ASSERT(strstr(out, "-o nocreate") != NULL);
	/* the plain command line still creates a missing image */
	char img2[600];
	snprintf(img2, sizeof(img2), "%s/new.bst", m.dir);
	CU_ASSERT(try_mount(&m, img2, m.mnt, NULL) == 0);
	if (h_is_mounted(m.mnt)) {
		m.up = true;
		h_mount_track(m.mnt);
	}
	CU_ASSERT(access(img2, F_OK) == 0);
out:
	mnt_done(&m);
}

/* /.bstackfs.json: the control file's keys and numbers as JSON, read by a
 * real parser and compared key by key with the text form. */
static void the_json_control_file_matches_the_text_key_by_key(void)
{
	struct mnt m;
	char out[8192];

	if (!mnt_fresh(&m, "allocator=slab,block_size=1024")) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "f"), 100000, 42) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "g"), 300, 43) == 0);
	CU_ASSERT(ctl_wait(&m, "capacity_bytes", 100300) == 100300);
	const char *js = mpath(&m, ".bstackfs.json");
	char jpath[600], tpath[600];
	snprintf(jpath, sizeof(jpath), "%s", js);
	snprintf(tpath, sizeof(tpath), "%s", mpath(&m, ".bstackfs"));
	CU_ASSERT(h_sh("python3 - '%s' '%s' <<'EOF'\n"
		     "import json, sys\n"
		     "text = open(sys.argv[1]).read()\n"
		     "d = json.load(open(sys.argv[2]))\n"
		     "lines = [l.split(' ', 1) for l in text.splitlines()]\n"
		     "assert [k for k, _ in lines] == list(d), ([k for k, _ in lines], list(d))\n"
		     "for k, v in lines:\n"
		     "    j = d[k]\n"
		     "    if k in ('allocator', 'magic'): assert j == v, (k, j, v)\n"
		     "    elif '.' in v: assert isinstance(j, float) and '%%.4f' %% j == v, (k, j, v)\n"
		     "    else: assert isinstance(j, int) and str(j) == v, (k, j, v)\n"
		     "assert d['allocator'] == 'slab' and d['block_size'] == 1024\n"
		     "assert d['files'] == 2 and d['live_bytes'] == 100300\n"
		     "EOF", tpath, jpath) == 0);
	/* listed, read-only, sized by its content, not a file of the volume */
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -a '%s'", m.mnt) == 0);
	CU_ASSERT(strstr(out, ".bstackfs.json\n") != NULL);
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'", jpath) == 0);
	CU_ASSERT(out[0] == '{' && file_size(jpath) == (int64_t)strlen(out));
	struct stat st;
	CU_ASSERT(stat(jpath, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0444);
	CU_ASSERT(unlink(jpath) < 0 && errno == EPERM);
	CU_ASSERT(open(jpath, O_WRONLY) < 0 && errno == EPERM);
	CU_ASSERT(rename(mpath(&m, "g"), jpath) < 0 && errno == EPERM);
	CU_ASSERT(mkdir(jpath, 0755) < 0 && errno == EEXIST);
	CU_ASSERT(ctl_value(&m, "files") == 2);
out:
	mnt_done(&m);
}

/* Foreground daemon, a file written but neither fsynced nor closed by the
 * time `sig` arrives: the daemon unmounts, closes the volume, exits 0. */
static void signal_round(struct mnt *m, int sig, const char *opts, const char *flag,
			 uint64_t tag)
{
	char name[32];
	char buf[65536];

	if (!mnt_up_fg(m, opts, flag)) {
		CU_FAIL("foreground mount");
		return;
	}
	snprintf(name, sizeof(name), "f%llu", (unsigned long long)tag);
	int fd = open(mpath(m, name), O_WRONLY | O_CREAT, 0644);
	CU_ASSERT(fd >= 0);
	h_pattern(buf, sizeof(buf), tag, 0);
	CU_ASSERT(fd >= 0 && write(fd, buf, sizeof(buf)) == sizeof(buf));
	CU_ASSERT(kill(m->pid, sig) == 0);
	int st = 0;
	CU_ASSERT(waitpid(m->pid, &st, 0) == m->pid);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	m->pid = 0;
	if (fd >= 0)
		close(fd);   /* ENOTCONN by now; the data was already there */
	CU_ASSERT(!h_is_mounted(m->mnt));
	h_mount_untrack(m->mnt);
	m->up = false;
	CU_ASSERT(h_wait_released(m->img));
}

static void sigterm_and_sigint_unmount_and_close_cleanly(void)
{
	struct mnt m;

	test_dir(&m);
	signal_round(&m, SIGTERM, "sync", "-s", 41);
	signal_round(&m, SIGINT, NULL, NULL, 42);
	if (!mnt_up(&m, NULL)) {
		CU_FAIL("remount");
		goto out;
	}
	CU_ASSERT(prefix_ok(mpath(&m, "f41"), 65536, 41, 0));
	CU_ASSERT(prefix_ok(mpath(&m, "f42"), 65536, 42, 0));
	CU_ASSERT(ctl_value(&m, "leaked_bytes_reclaimed") == 0);
out:
	mnt_done(&m);
}

/* A signal ends the mount in the daemon's own hands: it closes the volume
 * first and unmounts after (fs/main.c), so once the mount point is gone
 * the image is already released — no wait, no fsck -W needed. */
static void after_sigterm_the_image_is_released_before_the_mount_goes(void)
{
	struct mnt m;
	int held = 0;

	test_dir(&m);
	for (int round = 0; round < 4; round++) {
		if (!mnt_up_fg(&m, NULL, NULL)) {
			CU_FAIL("foreground mount");
			break;
		}
		for (int i = 0; i < 20; i++) {
			char name[32];
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT(write_pattern_file(mpath(&m, name), 300 + 10 * (size_t)i,
						     (uint64_t)i) == 0);
		}
		CU_ASSERT(write_pattern_file(mpath(&m, "big"), 8 << 20, (uint64_t)round) == 0);
		CU_ASSERT(kill(m.pid, SIGTERM) == 0);
		for (int t = 0; t < 10000 && h_is_mounted(m.mnt); t++)
			h_sleep_ms(1);
		CU_ASSERT(!h_is_mounted(m.mnt));
		/* at once: the lock must be free already */
		int fd = open(m.img, O_RDONLY | O_CLOEXEC);
		CU_ASSERT(fd >= 0);
		if (fd >= 0) {
			if (flock(fd, LOCK_EX | LOCK_NB) == 0)
				flock(fd, LOCK_UN);
			else
				held++;
			close(fd);
		}
		int st = 0;
		CU_ASSERT(waitpid(m.pid, &st, 0) == m.pid);
		CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		m.pid = 0;
		h_mount_untrack(m.mnt);
		m.up = false;
		CU_ASSERT(fsck_image(m.img) == 0);
	}
	CU_ASSERT_EQUAL(held, 0);
	mnt_done(&m);
}

/* Run `cmd` as nobody (65534); its exit status. */
static int as_nobody(const char *fmt, const char *arg)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), fmt, arg);
	return h_sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \"%s\" "
		  "2>/dev/null", cmd);
}

/* A fresh mount that nobody (65534) may use: 1, or 0 when this machine
 * cannot run such a test (not root, no setpriv: said and skipped), -1
 * when the mount failed (a failure). */
static int mnt_for_nobody(struct mnt *m)
{
	if (h_sh("command -v setpriv >/dev/null") != 0 || getuid() != 0) {
		printf("\n  SKIP: needs root and setpriv");
		return 0;
	}
	/* allow_other so that another user sees the mount at all. */
	if (!mnt_fresh(m, "allow_other")) {
		CU_FAIL("mount");
		return -1;
	}
	/* Let nobody walk down to the mount point (mkdtemp made it 0700). */
	CU_ASSERT(chmod(h_tmp_dir(), 0711) == 0);
	CU_ASSERT(chmod(m->dir, 0711) == 0);
	return 1;
}

static void the_kernel_enforces_modes_and_owners(void)
{
	struct mnt m;
	struct stat st;

	int up = mnt_for_nobody(&m);
	if (up == 0)
		return;
	if (up < 0)
		goto out;
	CU_ASSERT(write_pattern_file(mpath(&m, "private"), 100, 51) == 0);
	CU_ASSERT(chmod(mpath(&m, "private"), 0600) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "public"), 100, 52) == 0);
	CU_ASSERT(chmod(mpath(&m, "public"), 0644) == 0);
	CU_ASSERT(mkdir(mpath(&m, "open"), 0777) == 0);
	CU_ASSERT(chmod(mpath(&m, "open"), 0777) == 0);
	CU_ASSERT(as_nobody("cat '%s' >/dev/null", mpath(&m, "public")) == 0);
	CU_ASSERT(as_nobody("cat '%s' >/dev/null", mpath(&m, "private")) != 0);
	CU_ASSERT(as_nobody("echo x >> '%s'", mpath(&m, "public")) != 0);
	CU_ASSERT(as_nobody("touch '%s'", mpath(&m, "new")) != 0);
	CU_ASSERT(as_nobody("chmod 0666 '%s'", mpath(&m, "public")) != 0);
	CU_ASSERT(prefix_ok(mpath(&m, "public"), 100, 52, 0));
	/* What nobody creates belongs to nobody. */
	CU_ASSERT(as_nobody("echo hi > '%s'", mpath(&m, "open/mine")) == 0);
	CU_ASSERT(stat(mpath(&m, "open/mine"), &st) == 0);
	CU_ASSERT(st.st_uid == 65534 && st.st_gid == 65534 && st.st_size == 3);
	CU_ASSERT(as_nobody("chmod 0600 '%s'", mpath(&m, "open/mine")) == 0);
	CU_ASSERT(as_nobody("chown 0 '%s'", mpath(&m, "open/mine")) != 0);
	CU_ASSERT(stat(mpath(&m, "open/mine"), &st) == 0 && st.st_uid == 65534);
	/* Root may chown. */
	CU_ASSERT(chown(mpath(&m, "open/mine"), 0, 0) == 0);
	CU_ASSERT(stat(mpath(&m, "open/mine"), &st) == 0 && st.st_uid == 0);
out:
	mnt_done(&m);
}

static void cp_writes_reach_the_volume_in_large_requests(void)
{
	struct mnt m;

	test_dir(&m);
	CU_ASSERT(write_pattern_file(dpath(&m, "src"), 8 << 20, 61) == 0);
	/* -d logs every request to stderr (m.err). */
	if (!mnt_up_fg(&m, NULL, "-d")) {
		CU_FAIL("foreground mount");
		goto out;
	}
	CU_ASSERT(h_sh("cp '%s' '%s'", dpath(&m, "src"), mpath(&m, "dst")) == 0);
	CU_ASSERT(prefix_ok(mpath(&m, "dst"), 8 << 20, 61, 0));
	CU_ASSERT(mnt_down(&m));
	char out[64];
	CU_ASSERT(h_sh_out(out, sizeof(out), "grep -c 'opcode: WRITE' '%s'", m.err) == 0);
	long writes = strtol(out, NULL, 10);
	printf("\n  8 MiB cp: %ld WRITE requests", writes);
	/* 1 MiB each (max_write); 4 KiB pages would be 2048 of them. */
	CU_ASSERT(writes >= 8 && writes <= 16);
out:
	mnt_done(&m);
}

/* ---- crash: kill -9 in the middle of a cp ------------------------------ */

#define KILL_FILES 150

/* Mostly small files, and every 25th one 6 MiB so that the kill has a fair
 * chance to land in the middle of a file. */
static size_t kill_file_size(int i)
{
	if (i % 25 == 12)
		return (6u << 20) + (size_t)i;
	return 1000 + (size_t)i * 2731 % 400000;
}

/* The file holds the first `size` bytes of the source's pattern: a state
 * the copy passed through (never zeros or foreign bytes). */
static bool is_prefix_of_source(const char *path, int i)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (h_read_file(path, &buf, &len) < 0)
		return false;
	bool ok = len <= kill_file_size(i) && h_pattern_ok(buf, len, 500 + (uint64_t)i, 0);
	free(buf);
	return ok;
}

static void kill_during_cp_leaves_files_complete_or_absent(void)
{
	struct mnt m;
	char p[700];

	test_dir(&m);
	CU_ASSERT(mkdir(dpath(&m, "src"), 0755) == 0);
	for (int i = 0; i < KILL_FILES; i++) {
		snprintf(p, sizeof(p), "%s/src/f%03d", m.dir, i);
		CU_ASSERT(write_pattern_file(p, kill_file_size(i), 500 + (uint64_t)i) == 0);
	}
	if (!mnt_up_fg(&m, NULL, NULL)) {
		CU_FAIL("foreground mount");
		goto out;
	}
	/* An older version of a few files, complete before the crash. */
	CU_ASSERT(mkdir(mpath(&m, "dst"), 0755) == 0);
	for (int i = 0; i < 5; i++) {
		snprintf(p, sizeof(p), "dst/f%03d", i);
		CU_ASSERT(write_pattern_file(mpath(&m, p), 777, 900 + (uint64_t)i) == 0);
	}
	pid_t cp = fork();
	if (cp == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 1);
		dup2(nul, 2);
		execlp("sh", "sh", "-c", "cp \"$0\"/src/* \"$1\"/dst/", m.dir, m.mnt,
		       (char *)NULL);
		_exit(127);
	}
	CU_ASSERT(cp > 0);
	/* Kill somewhere in the copy, at a seeded random file. */
	int victim = 5 + (int)h_rand_below(KILL_FILES / 2);
	for (int t = 0; t < 400; t++) {
		snprintf(p, sizeof(p), "%s/dst/f%03d", m.mnt, victim);
		if (access(p, F_OK) == 0)
			break;
		h_sleep_ms(10);
	}
	CU_ASSERT(kill(m.pid, SIGKILL) == 0);
	int st;
	waitpid(m.pid, &st, 0);
	m.pid = 0;
	if (cp > 0) {
		kill(cp, SIGKILL);
		waitpid(cp, &st, 0);
	}
	CU_ASSERT(mnt_down(&m));

	CU_ASSERT(mnt_up(&m, NULL));
	int64_t leaked = ctl_value(&m, "leaked_bytes_reclaimed");
	CU_ASSERT(leaked >= 0);
	printf("\n  kill -9: leaked_bytes_reclaimed %lld at the first remount",
	       (long long)leaked);
	int complete = 0, absent = 0, older = 0, bad = 0;
	for (int i = 0; i < KILL_FILES; i++) {
		snprintf(p, sizeof(p), "dst/f%03d", i);
		int64_t size = file_size(mpath(&m, p));
		if (size == -ENOENT) {
			absent++;
		} else if (prefix_ok(mpath(&m, p), kill_file_size(i), 500 + (uint64_t)i, 0)) {
			complete++;
		} else if (i < 5 && prefix_ok(mpath(&m, p), 777, 900 + (uint64_t)i, 0)) {
			older++;
		} else if (is_prefix_of_source(mpath(&m, p), i)) {
			/* Created, its data not (all) written or synced yet:
			 * empty, or a prefix the writes had reached. */
			older++;
			if (size > 0)
				printf(", f%03d holds a %lld-byte prefix", i, (long long)size);
		} else {
			bad++;
			fprintf(stderr, "kill -9: %s has size %lld and is neither complete, "
				"absent nor older\n", p, (long long)size);
		}
	}
	printf(", %d complete, %d absent, %d older", complete, absent, older);
	CU_ASSERT(bad == 0);
	CU_ASSERT(complete > 0);
	/* Nothing left to reclaim the second time. */
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(ctl_value(&m, "leaked_bytes_reclaimed") == 0);
	/* And the volume is fully usable. */
	CU_ASSERT(h_sh("rm -r '%s'", mpath(&m, "dst")) == 0);
	CU_ASSERT(ctl_value(&m, "files") == 0);
out:
	mnt_done(&m);
}



/* ---- the journal: crashes, commit=N, journal=off ------------------------ */

static void image_tag(const char *img, char tag[5])
{
	memset(tag, 0, 5);
	int fd = open(img, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, tag, 4) != 4)
			tag[0] = 0;
		close(fd);
	}
}

/* kill -9 of the daemon in the middle of a create/write/remove loop: every
 * operation the loop saw complete is there after the remount (commit=0:
 * each is durable on return), the image said "BSTJ" while the journal was
 * live, the remount replays it, and fsck finds nothing to fix. */
static void kill_during_a_create_remove_loop_loses_no_completed_operation(void)
{
	struct mnt m;
	char log[700], tag[5];

	test_dir(&m);
	snprintf(log, sizeof(log), "%s/done.log", m.dir);
	if (!mnt_up_fg(&m, NULL, NULL)) {
		CU_FAIL("foreground mount");
		goto out;
	}
	pid_t loop = fork();
	if (loop == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 1);
		dup2(nul, 2);
		/* the log is written only after each command returned, and
		 * succeeded: cat reports a failed close (the shell's own
		 * redirection of a builtin would ignore one, and a close cut
		 * by the kill is exactly the operation in flight) */
		execlp("sh", "sh", "-c",
		       "i=1; while [ $i -le 100000 ]; do echo \"line $i\" | cat > \"$0/f$i\" || exit 1; "
		       "echo \"w $i\" >> \"$1\"; if [ $((i % 3)) -eq 0 ]; then "
		       "rm \"$0/f$((i - 2))\" || exit 1; echo \"r $((i - 2))\" >> \"$1\"; fi; "
		       "i=$((i + 1)); done", m.mnt, log, (char *)NULL);
		_exit(127);
	}
	CU_ASSERT(loop > 0);
	h_sleep_ms(700 + (long)h_rand_below(500));
	CU_ASSERT(kill(m.pid, SIGKILL) == 0);
	int st;
	waitpid(m.pid, &st, 0);
	m.pid = 0;
	kill(loop, SIGKILL);
	waitpid(loop, &st, 0);
	CU_ASSERT(mnt_down(&m));
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");

	CU_ASSERT_FATAL(mnt_up(&m, NULL));
	int64_t replayed = ctl_value(&m, "replayed_commits");
	printf("\n  kill -9 in a create/remove loop: %lld commits replayed", (long long)replayed);
	CU_ASSERT(replayed > 0);
	FILE *f = fopen(log, "r");
	CU_ASSERT_FATAL(f != NULL);
	static char state[100001];   /* 0 never written, 'w' written, 'r' removed */
	memset(state, 0, sizeof state);
	char op, last_op = 0;
	int i, n = 0, bad = 0, last = 0;
	while (fscanf(f, " %c %d", &op, &i) == 2)
		if (i > 0 && i <= 100000)
			state[i] = op, n++, last_op = op, last = i;
	fclose(f);
	/* the operation in flight at the kill may or may not have happened:
	 * after "w k" with k a multiple of 3 it is the rm of f(k-2) */
	int in_flight_rm = last_op == 'w' && last % 3 == 0 ? last - 2 : 0;
	CU_ASSERT(n > 10);
	for (i = 1; i <= 100000; i++) {
		if (!state[i])
			continue;
		char p[64], want[32], got[32] = "";
		snprintf(p, sizeof(p), "f%d", i);
		int64_t size = file_size(mpath(&m, p));
		if (state[i] == 'r') {
			bad += size != -ENOENT;
			continue;
		}
		if (i == in_flight_rm && size == -ENOENT)
			continue;
		snprintf(want, sizeof(want), "line %d\n", i);
		FILE *g = fopen(mpath(&m, p), "r");
		if (g) {
			if (!fgets(got, sizeof(got), g))
				got[0] = 0;
			fclose(g);
		}
		if (strcmp(got, want) != 0) {
			bad++;
			fprintf(stderr, "kill -9 loop: %s lost (size %lld; %d operations logged, "
				"the last %c %d)\n", p, (long long)size, n, last_op, last);
		}
	}
	CU_ASSERT(bad == 0);
	CU_ASSERT(mnt_down(&m));
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");
	CU_ASSERT(fsck_image(m.img) == 0);
out:
	mnt_done(&m);
}

/* commit=5: operations share commits (few syncs), fsync still makes a
 * file durable at once, and after kill -9 each file is whole or absent. */
static void commit_interval_groups_operations_and_keeps_each_whole_or_absent(void)
{
	struct mnt m;

	test_dir(&m);
	if (!mnt_up_fg(&m, "commit=5", NULL)) {
		CU_FAIL("foreground mount");
		goto out;
	}
	CU_ASSERT(ctl_value(&m, "commit_interval_s") == 5);
	int64_t s0 = ctl_value(&m, "syncs");
	for (int i = 0; i < 200; i++) {
		char p[32];
		snprintf(p, sizeof(p), "f%d", i);
		CU_ASSERT(write_pattern_file(mpath(&m, p), 1000 + (size_t)i, 70 + (uint64_t)i) == 0);
	}
	int64_t s1 = ctl_value(&m, "syncs");
	printf("\n  commit=5: %lld syncs for 200 small files", (long long)(s1 - s0));
	CU_ASSERT(s1 - s0 < 20);
	/* fsync'ed: durable now, whatever the interval */
	CU_ASSERT(h_sh("dd if=/dev/zero of='%s' bs=4096 count=3 conv=fsync status=none",
		     mpath(&m, "synced")) == 0);
	CU_ASSERT(kill(m.pid, SIGKILL) == 0);
	int st;
	waitpid(m.pid, &st, 0);
	m.pid = 0;
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT_FATAL(mnt_up(&m, NULL));
	CU_ASSERT(file_size(mpath(&m, "synced")) == 3 * 4096);
	int whole = 0, absent = 0, bad = 0;
	for (int i = 0; i < 200; i++) {
		char p[32];
		snprintf(p, sizeof(p), "f%d", i);
		int64_t size = file_size(mpath(&m, p));
		if (size == -ENOENT)
			absent++;
		else if (size == 1000 + i && prefix_ok(mpath(&m, p), 1000 + (size_t)i,
						       70 + (uint64_t)i, 0))
			whole++;
		else if (size == 0)
			absent++;   /* created, its data in a later commit */
		else
			bad++;
	}
	printf(", after kill -9: %d whole, %d absent or empty", whole, absent);
	CU_ASSERT(bad == 0);
	CU_ASSERT(whole == 200);   /* the fsync committed everything before it */
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(fsck_image(m.img) == 0);
out:
	mnt_done(&m);
}

/* journal=off: the seed-exact steps (several syncs per file), no journal
 * file; with the journal the journal file exists only while mounted, and a
 * crashed image with a live journal is refused by journal=off. */
static void journal_off_is_the_seed_exact_mode_and_refuses_a_live_journal(void)
{
	struct mnt m;
	char jpath[500], tag[5];

	CU_ASSERT_FATAL(mnt_fresh(&m, "journal=off"));
	snprintf(jpath, sizeof(jpath), "%s-journal", m.img);
	CU_ASSERT(access(jpath, F_OK) != 0);
	int64_t s0 = ctl_value(&m, "syncs");
	for (int i = 0; i < 20; i++) {
		char p[32];
		snprintf(p, sizeof(p), "g%d", i);
		CU_ASSERT(write_pattern_file(mpath(&m, p), 100, 5) == 0);
	}
	int64_t off_syncs = ctl_value(&m, "syncs") - s0;
	CU_ASSERT(off_syncs >= 3 * 20);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT_FATAL(mnt_up_fg(&m, NULL, NULL));
	CU_ASSERT(access(jpath, F_OK) == 0);
	s0 = ctl_value(&m, "syncs");
	for (int i = 0; i < 20; i++) {
		char p[32];
		snprintf(p, sizeof(p), "h%d", i);
		CU_ASSERT(write_pattern_file(mpath(&m, p), 100, 6) == 0);
	}
	int64_t on_syncs = ctl_value(&m, "syncs") - s0;
	printf("\n  20 small files: %lld syncs with journal=off, %lld with the journal",
	       (long long)off_syncs, (long long)on_syncs);
	CU_ASSERT(on_syncs <= 2 * 20 + 2);
	CU_ASSERT(kill(m.pid, SIGKILL) == 0);
	int st;
	waitpid(m.pid, &st, 0);
	m.pid = 0;
	CU_ASSERT(mnt_down(&m));
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");
	CU_ASSERT(!mnt_up(&m, "journal=off"));
	char e[1024];
	read_err(&m, e, sizeof(e));
	CU_ASSERT(strstr(e, "journal recovery") != NULL);
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");
	CU_ASSERT_FATAL(mnt_up(&m, NULL));
	CU_ASSERT(file_size(mpath(&m, "h19")) == 100);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(access(jpath, F_OK) != 0);
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");
	mnt_done(&m);
}


/*
 * fusermount3 -u returns as soon as the kernel has detached the mount; for
 * a plain FUSE mount it does not wait for the daemon, which then syncs,
 * checkpoints and lets go of the image lock (fs/main.c).  fsck run at once
 * must not fail with "in use": it waits for the lock (fs/fsck.c).  Each
 * round leaves the daemon work to do at the unmount (files just written,
 * nothing idle-checkpointed yet), unmounts and runs fsck immediately;
 * every run must find the image clean (exit 0).
 */
static void fsck_right_after_unmount_waits_for_the_daemon_and_checks_clean(void)
{
	struct mnt m;
	int waited = 0;
	char errp[500], out[8192], err[2048];

	test_dir(&m);
	snprintf(errp, sizeof errp, "%s/fsck.err", m.dir);
	for (int round = 0; round < 6; round++) {
		if (!mnt_up(&m, NULL)) {
			CU_FAIL("mount");
			break;
		}
		for (int i = 0; i < 50; i++) {
			char name[32];
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT(write_pattern_file(mpath(&m, name), 200 + 50 * (size_t)i,
						     (uint64_t)(round * 100 + i)) == 0);
		}
		CU_ASSERT(write_pattern_file(mpath(&m, "big"), 8 << 20, (uint64_t)round) == 0);
		/* no wait for the daemon: the unmount, then fsck at once */
		int u = h_sh("fusermount3 -u '%s'", m.mnt);
		CU_ASSERT_EQUAL(u, 0);
		if (u != 0)
			h_force_unmount(m.mnt);
		h_mount_untrack(m.mnt);
		m.up = false;
		int st = h_sh_out(out, sizeof out, "'%s' --json '%s' 2>'%s'", fsck_bin(), m.img, errp);
		read_err_file(errp, err, sizeof err);
		if (st != 0)
			fprintf(stderr, "test_mount: fsck after unmount, round %d: %d\n%s%s", round,
				st, out, err);
		CU_ASSERT_EQUAL(st, 0);
		CU_ASSERT(strstr(out, "\n  \"result\": \"clean\",\n") != NULL);
		CU_ASSERT(strstr(out, "\n  \"files\": 51,\n") != NULL);
		CU_ASSERT(strstr(err, "image is in use\n") == NULL);   /* no refusal */
		if (strstr(err, "waiting up to"))
			waited++;
		CU_ASSERT(h_wait_released(m.img));
	}
	/* how often the daemon still held the image when fsck started */
	printf("\n  fsck found the image still locked after %d of 6 unmounts", waited);
	mnt_done(&m);
}

/* An idle volume is checkpointed (2 s): the image says BSTK again while
 * still mounted, and free tail space has gone back to the host. */
static void an_idle_volume_is_checkpointed_and_gives_its_tail_back(void)
{
	struct mnt m;
	char tag[5];
	struct stat st0, st1;

	CU_ASSERT_FATAL(mnt_fresh(&m, NULL));
	CU_ASSERT(write_pattern_file(mpath(&m, "small"), 1000, 1) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "tail"), 4 << 20, 2) == 0);
	CU_ASSERT(stat(m.img, &st0) == 0);
	CU_ASSERT(h_sh("rm '%s'", mpath(&m, "tail")) == 0);
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");
	int64_t c0 = ctl_value(&m, "checkpoints");
	h_sleep_ms(3500);
	image_tag(m.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");
	CU_ASSERT(stat(m.img, &st1) == 0);
	CU_ASSERT(st1.st_size + (4 << 20) / 2 < st0.st_size);
	CU_ASSERT(ctl_value(&m, "checkpoints") > c0);
	/* a checkpoint cuts the file to header + payload exactly */
	CU_ASSERT(ctl_value(&m, "image_bytes") == (int64_t)st1.st_size);
	CU_ASSERT(prefix_ok(mpath(&m, "small"), 1000, 1, 0));
	mnt_done(&m);
}

/* Read the whole file at path; true when it is n bytes of pattern tag. */
static bool whole_pattern_ok(const char *path, size_t n, uint64_t tag)
{
	return prefix_ok(path, n, tag, 0);
}

/* The file at path is n bytes of pattern tag but for `patch` at off. */
static bool patched_pattern_ok(const char *path, size_t n, uint64_t tag, uint64_t off,
			       const char *patch)
{
	uint8_t *buf = NULL;
	size_t len = 0, k = strlen(patch);

	if (h_read_file(path, &buf, &len) < 0)
		return false;
	bool ok = len == n && off + k <= n && h_pattern_ok(buf, (size_t)off, tag, 0) &&
		  memcmp(buf + off, patch, k) == 0 &&
		  h_pattern_ok(buf + off + k, n - (size_t)off - k, tag, off + k);
	free(buf);
	return ok;
}

/* The page cache is kept across opens (keep_cache): a file just written
 * and read again costs the daemon no read, across closes and opens; it
 * stays right under writes through another descriptor, truncation and
 * O_TRUNC; after the kernel drops its caches the reads come back. */
static void the_page_cache_is_kept_across_opens_and_stays_right(void)
{
	struct mnt m;
	const size_t n = 1 << 20;

	CU_ASSERT_FATAL(mnt_fresh(&m, NULL));
	const char *f = mpath(&m, "f");
	CU_ASSERT(write_pattern_file(f, n, 5) == 0);
	int64_t r0 = ctl_value(&m, "read_requests");
	CU_ASSERT(whole_pattern_ok(f, n, 5));
	CU_ASSERT(whole_pattern_ok(f, n, 5));
	CU_ASSERT_EQUAL(ctl_value(&m, "read_requests"), r0);   /* written pages kept */

	/* a reader's cached pages follow a write through another descriptor */
	int rd = open(f, O_RDONLY), wr = open(f, O_WRONLY);
	uint8_t b[8];
	CU_ASSERT(rd >= 0 && wr >= 0);
	CU_ASSERT(pread(rd, b, sizeof b, 4096) == (ssize_t)sizeof b);
	CU_ASSERT(pwrite(wr, "NEWBYTES", 8, 4096) == 8);
	CU_ASSERT(pread(rd, b, sizeof b, 4096) == (ssize_t)sizeof b && memcmp(b, "NEWBYTES", 8) == 0);
	close(wr);
	close(rd);
	/* truncation, then O_TRUNC and a rewrite, each seen at the next open */
	CU_ASSERT(patched_pattern_ok(f, n, 5, 4096, "NEWBYTES"));
	CU_ASSERT(truncate(f, 5000) == 0);
	CU_ASSERT(file_size(f) == 5000);
	CU_ASSERT(patched_pattern_ok(f, 5000, 5, 4096, "NEWBYTES"));
	CU_ASSERT(write_pattern_file(f, 3000, 6) == 0);
	CU_ASSERT(whole_pattern_ok(f, 3000, 6));
	/* and the counter counts: after a drop the reads reach the daemon */
	int64_t r1 = ctl_value(&m, "read_requests");
	CU_ASSERT(h_sh("sync; echo 3 > /proc/sys/vm/drop_caches") == 0);
	CU_ASSERT(whole_pattern_ok(f, 3000, 6));
	CU_ASSERT(ctl_value(&m, "read_requests") > r1);
	/* the same bytes after a remount */
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(whole_pattern_ok(mpath(&m, "f"), 3000, 6));
	mnt_done(&m);
}

/* ls -l of a directory the kernel has not seen is answered by readdirplus
 * (no LOOKUP per entry), and a missing name is looked up once: the kernel
 * keeps the negative entry, and drops it when the name is created. */
static void ls_l_uses_readdirplus_and_missing_names_are_cached(void)
{
	struct mnt m;
	char out[256];
	enum { N = 200 };

	CU_ASSERT_FATAL(mnt_fresh(&m, NULL));
	CU_ASSERT(h_sh("mkdir '%s' && cd '%s' && for i in $(seq %d); do echo $i > f$i; done",
		     mpath(&m, "d"), mpath(&m, "d"), N) == 0);
	CU_ASSERT(mnt_cycle(&m, NULL));
	int64_t l0 = ctl_value(&m, "lookups");
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -l '%s' | grep -c '^-'", mpath(&m, "d")) == 0);
	CU_ASSERT_EQUAL(atoi(out), N);
	int64_t l1 = ctl_value(&m, "lookups");
	CU_ASSERT(l1 - l0 < 10);   /* "d" itself, not one per file */
	if (l1 - l0 >= 10)
		fprintf(stderr, "ls -l of %d files: %lld lookups\n", N, (long long)(l1 - l0));
	struct stat st;
	const char *x = mpath(&m, "d/missing");
	CU_ASSERT(stat(x, &st) < 0 && errno == ENOENT);
	CU_ASSERT(stat(x, &st) < 0 && errno == ENOENT);
	CU_ASSERT(access(x, F_OK) < 0 && errno == ENOENT);
	CU_ASSERT_EQUAL(ctl_value(&m, "lookups"), l1 + 1);
	int fd = open(x, O_CREAT | O_WRONLY, 0644);
	CU_ASSERT(fd >= 0);
	if (fd >= 0)
		close(fd);
	CU_ASSERT(stat(x, &st) == 0 && S_ISREG(st.st_mode));
	CU_ASSERT(unlink(x) == 0);
	CU_ASSERT(stat(x, &st) < 0 && errno == ENOENT);
	mnt_done(&m);
}

/* The daemon counts the kernel's references (FUSE lookup counts): ls -l
 * hands the kernel an entry per file (readdirplus), and when the kernel
 * drops its inodes (drop_caches) its forgets reach the volume, which
 * lets go of their vnodes. */
static void the_kernel_s_forgets_reach_the_volume(void)
{
	struct mnt m;
	char out[256];
	enum { N = 300 };

	CU_ASSERT_FATAL(mnt_fresh(&m, NULL));
	CU_ASSERT(h_sh("mkdir '%s' && cd '%s' && for i in $(seq %d); do echo $i > f$i; done",
		     mpath(&m, "d"), mpath(&m, "d"), N) == 0);
	CU_ASSERT(mnt_cycle(&m, NULL));
	int64_t k0 = ctl_value(&m, "kernel_inodes");
	CU_ASSERT(k0 >= 0 && k0 < 10);
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -l '%s' | grep -c '^-'", mpath(&m, "d")) == 0);
	CU_ASSERT_EQUAL(atoi(out), N);
	int64_t k1 = ctl_value(&m, "kernel_inodes");
	CU_ASSERT(k1 >= N);
	CU_ASSERT(ctl_value(&m, "vnodes") >= k1);
	/* the kernel evicts the unused inodes and forgets them */
	int64_t k2 = k1;
	for (int i = 0; i < 50 && k2 >= N; i++) {
		CU_ASSERT(h_sh("sync && echo 2 > /proc/sys/vm/drop_caches") == 0);
		usleep(100 * 1000);
		k2 = ctl_value(&m, "kernel_inodes");
	}
	CU_ASSERT(k2 < N);
	if (k2 >= N)
		fprintf(stderr, "kernel_inodes after drop_caches: %lld\n", (long long)k2);
	CU_ASSERT(ctl_value(&m, "vnodes") < N);
	/* and the files are all still there */
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'/f* | wc -l", mpath(&m, "d")) == 0);
	CU_ASSERT_EQUAL(atoi(out), N);
	mnt_done(&m);
}

/* Bytes the allocator holds: payload minus free space. */
static int64_t ctl_used(const struct mnt *m)
{
	return ctl_value(m, "payload_bytes") - ctl_value(m, "free_bytes");
}

static bool fd_pattern_ok(int fd, size_t n, uint64_t tag, uint64_t off)
{
	uint8_t *b = malloc(n ? n : 1);
	bool ok = b && pread(fd, b, n, (off_t)off) == (ssize_t)n &&
		  h_pattern_ok(b, n, tag, off);

	free(b);
	return ok;
}

/* POSIX unlink semantics: rm takes the name at once, the data stays
 * readable and writable through descriptors already open, and the space
 * is freed at the last close. */
static void a_file_removed_while_open_stays_usable_until_the_last_close(void)
{
	struct mnt m;
	const size_t n = 3 << 20, more = 1 << 20;
	struct stat st;
	int fd = -1;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "victim"), n, 7) == 0);
	CU_ASSERT(write_pattern_file(dpath(&m, "ref"), n, 7) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "shell"), n, 7) == 0);
	/* closed above: its release may still be on its way */
	int64_t d0 = ctl_wait(&m, "deallocs", 0);
	CU_ASSERT(d0 == 0);
	CU_ASSERT(ctl_value(&m, "files") == 2);

	/* real tools: a shell descriptor outlives rm, cmp reads through it */
	CU_ASSERT(h_sh("exec 3<'%s' && rm '%s' && test ! -e '%s' && cmp - '%s' <&3",
		     mpath(&m, "shell"), mpath(&m, "shell"), mpath(&m, "shell"),
		     dpath(&m, "ref")) == 0);
	CU_ASSERT(ctl_value(&m, "files") == 1);
	CU_ASSERT(ctl_wait(&m, "deallocs", d0 + 1) == d0 + 1);

	fd = open(mpath(&m, "victim"), O_RDWR);
	CU_ASSERT(fd >= 0);
	if (fd < 0)
		goto out;
	CU_ASSERT(h_sh("rm '%s'", mpath(&m, "victim")) == 0);
	CU_ASSERT(access(mpath(&m, "victim"), F_OK) < 0 && errno == ENOENT);
	char out[64];
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls -A '%s' | wc -l", m.mnt) == 0);
	CU_ASSERT(strtol(out, NULL, 10) == 2);   /* .bstackfs, .bstackfs.json */
	CU_ASSERT(ctl_value(&m, "files") == 0);
	/* the name can be taken again by another file */
	CU_ASSERT(write_pattern_file(mpath(&m, "victim"), 1000, 9) == 0);

	CU_ASSERT(fd_pattern_ok(fd, n, 7, 0));
	uint8_t *b = malloc(more);
	if (b) {
		h_pattern(b, more, 8, n);
		CU_ASSERT(pwrite(fd, b, more, (off_t)n) == (ssize_t)more);
		free(b);
	}
	CU_ASSERT(fsync(fd) == 0);
	CU_ASSERT(fstat(fd, &st) == 0);
	CU_ASSERT(st.st_size == (off_t)(n + more));
	CU_ASSERT(st.st_nlink == 0);
	CU_ASSERT(fd_pattern_ok(fd, n, 7, 0));
	CU_ASSERT(fd_pattern_ok(fd, more, 8, n));
	CU_ASSERT(file_size(mpath(&m, "victim")) == 1000);
	CU_ASSERT(prefix_ok(mpath(&m, "victim"), 1000, 9, 0));

	/* still open: nothing freed yet */
	int64_t used = ctl_used(&m);
	CU_ASSERT(ctl_value(&m, "deallocs") == d0 + 1);
	/* the control file accounts for the orphan while it lives */
	CU_ASSERT(ctl_value(&m, "orphan_files") == 1);
	CU_ASSERT(ctl_value(&m, "orphan_bytes") >= (int64_t)(n + more));
	CU_ASSERT(close(fd) == 0);
	fd = -1;
	CU_ASSERT(ctl_wait(&m, "deallocs", d0 + 2) == d0 + 2);
	/* the last close queued the space on the remote-free queue: pending,
	 * not free, until an owner point — df — drains it (issue 10) */
	CU_ASSERT(ctl_value(&m, "free_queue_bytes") >= (int64_t)(n + more));
	struct statvfs sv;
	CU_ASSERT(statvfs(m.mnt, &sv) == 0);
	CU_ASSERT(ctl_value(&m, "free_queue_depth") == 0);
	CU_ASSERT(ctl_used(&m) <= used - (int64_t)(n + more));
	CU_ASSERT(ctl_value(&m, "files") == 1);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 1000);
	CU_ASSERT(ctl_value(&m, "orphan_files") == 0 && ctl_value(&m, "orphan_bytes") == 0);
out:
	if (fd >= 0)
		close(fd);
	mnt_done(&m);
	CU_ASSERT(!h_is_mounted(m.mnt));
}

/* ---- a full host filesystem (ENOSPC) ----------------------------------- */

/* Mount a tmpfs of `size` on path (root only); false when that is not
 * possible here. */
static bool tmpfs_up(const char *path, const char *size)
{
	mkdir(path, 0755);
	if (geteuid() != 0 ||
	    h_sh("mount -t tmpfs -o size=%s tmpfs '%s' 2>/dev/null", size, path) != 0)
		return false;
	for (int i = 0; i < 4; i++)
		if (!g_tmpfs[i]) {
			g_tmpfs[i] = strdup(path);
			return true;
		}
	tmpfs_unmount(path);
	return false;
}

static bool file_is_pattern(const char *path, size_t n, uint64_t tag)
{
	uint8_t *b = NULL;
	size_t len = 0;
	bool ok = h_read_file(path, &b, &len) == 0 && len == n && h_pattern_ok(b, n, tag, 0);
	free(b);
	return ok;
}

/*
 * The image lives on a 16 MiB tmpfs.  cp of a 32 MiB file fails with "No
 * space left on device"; the mount stays usable (ls, earlier files
 * byte-identical, rm of the partial file frees room, a smaller cp then
 * works); df stays sane; after a remount the files are intact and the
 * control file's figures agree with them.
 */
static void a_full_host_filesystem_gives_enospc_and_loses_nothing(void)
{
	struct mnt m;
	char small[400], out[8192];
	const size_t na = 1 << 20, nb = 100 * 1024, nbig = 32 << 20, nsmall = 3 << 20;
	struct statvfs sv;

	test_dir(&m);
	if (snprintf(small, sizeof(small), "%s/s", m.dir) >= (int)sizeof(small)) {
		CU_FAIL("temp path too long");
		return;
	}
	if (!tmpfs_up(small, "16m")) {
		printf("skipped: needs root to mount a tmpfs ");
		h_sh("rm -rf '%s'", m.dir);
		return;
	}
	snprintf(m.img, sizeof(m.img), "%.*s/image.bst", 300, small);
	if (!mnt_up(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(write_pattern_file(mpath(&m, "a"), na, 1) == 0);
	CU_ASSERT(mkdir(mpath(&m, "d"), 0755) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "d/b"), nb, 2) == 0);
	/* the sources live outside the small filesystem */
	CU_ASSERT(write_pattern_file(dpath(&m, "big.src"), nbig, 3) == 0);
	CU_ASSERT(write_pattern_file(dpath(&m, "small.src"), nsmall, 4) == 0);

	/* the disk fills: cp says so and fails */
	int rc = h_sh("cp '%s' '%s' 2>'%s'", dpath(&m, "big.src"), mpath(&m, "big"),
		    dpath(&m, "cp.err"));
	CU_ASSERT(rc != 0 && rc != -1);
	CU_ASSERT(h_sh_out(out, sizeof(out), "cat '%s'", dpath(&m, "cp.err")) == 0);
	if (!strstr(out, "No space left on device"))
		fprintf(stderr, "cp said (exit %d): %s\n", rc, out);
	CU_ASSERT(strstr(out, "No space left on device") != NULL);

	/* the mount is still usable and nothing earlier was touched */
	CU_ASSERT(h_is_mounted(m.mnt));
	CU_ASSERT(h_sh_out(out, sizeof(out), "ls '%s'", m.mnt) == 0);
	CU_ASSERT(strstr(out, "a\n") != NULL && strstr(out, "d\n") != NULL);
	CU_ASSERT(file_is_pattern(mpath(&m, "a"), na, 1));
	CU_ASSERT(file_is_pattern(mpath(&m, "d/b"), nb, 2));
	int64_t partial = file_size(mpath(&m, "big"));
	CU_ASSERT(partial >= 0 && partial < (int64_t)nbig);
	CU_ASSERT(statvfs(m.mnt, &sv) == 0);
	CU_ASSERT(sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_blocks);
	CU_ASSERT((uint64_t)sv.f_blocks * sv.f_frsize <= (32u << 20));
	CU_ASSERT(h_sh_out(out, sizeof(out), "df -P '%s' | tail -1", m.mnt) == 0);
	CU_ASSERT(strstr(out, m.mnt) != NULL);

	/* rm of the partial file frees room: a smaller cp now fits */
	CU_ASSERT(h_sh("rm '%s'", mpath(&m, "big")) == 0);
	CU_ASSERT(ctl_wait(&m, "files", 2) == 2);
	rc = h_sh("cp '%s' '%s' 2>'%s'", dpath(&m, "small.src"), mpath(&m, "s"),
		dpath(&m, "cp.err"));
	if (rc != 0 && h_sh_out(out, sizeof(out), "cat '%s'", dpath(&m, "cp.err")) == 0)
		fprintf(stderr, "second cp said (exit %d): %s\n", rc, out);
	CU_ASSERT(rc == 0);
	CU_ASSERT(file_is_pattern(mpath(&m, "s"), nsmall, 4));
	CU_ASSERT(file_is_pattern(mpath(&m, "a"), na, 1));
	CU_ASSERT(statvfs(m.mnt, &sv) == 0);
	CU_ASSERT(sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_blocks);

	/* unmount, remount: intact, figures consistent, nothing leaked */
	CU_ASSERT(mnt_cycle(&m, NULL));
	if (!m.up)
		goto out;
	CU_ASSERT(file_is_pattern(mpath(&m, "a"), na, 1));
	CU_ASSERT(file_is_pattern(mpath(&m, "d/b"), nb, 2));
	CU_ASSERT(file_is_pattern(mpath(&m, "s"), nsmall, 4));
	CU_ASSERT(file_size(mpath(&m, "big")) == -ENOENT);
	CU_ASSERT(ctl_value(&m, "files") == 3);
	CU_ASSERT(ctl_value(&m, "directories") == 2);
	CU_ASSERT(ctl_value(&m, "live_bytes") == (int64_t)(na + nb + nsmall));
	CU_ASSERT(ctl_value(&m, "capacity_bytes") == (int64_t)(na + nb + nsmall));
	CU_ASSERT(ctl_value(&m, "leaked_bytes_reclaimed") == 0);
	struct stat img;
	CU_ASSERT(stat(m.img, &img) == 0);
	CU_ASSERT(ctl_value(&m, "image_bytes") == (int64_t)img.st_size);
	CU_ASSERT(ctl_value(&m, "free_bytes") <= ctl_value(&m, "payload_bytes"));
out:
	/* the FUSE mount first (it holds the image), then the tmpfs, then
	 * the temp tree (mnt_done's rm -rf would empty a mounted tmpfs) */
	if (m.up || h_is_mounted(m.mnt))
		CU_ASSERT(mnt_down(&m));
	CU_ASSERT(tmpfs_unmount(small));
	h_sh("rm -rf '%s'", m.dir);
}

/* ---- the remote-free queue (issue 10) ---------------------------------- */

/* rm -r of 2000 small files frees in batches: about 2000 / 64 drains, the
 * rest pending until df drains it, and the space is reused afterwards (a
 * file of the freed size does not grow the image past its peak).  (2000
 * small files again do grow it, with or without the queue: GhostTree does
 * not merge the small holes for the catalog's growth — issue 15.) */
static void rm_r_of_2000_files_frees_in_batches_and_the_space_is_reused(void)
{
	struct mnt m;
	char name[64], dir[600];
	int bad = 0;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(ctl_value(&m, "drain_threshold") == 64);
	CU_ASSERT(ctl_value(&m, "free_queue_capacity") == 1024);
	snprintf(dir, sizeof(dir), "%s", mpath(&m, "d"));
	CU_ASSERT(mkdir(dir, 0755) == 0);
	for (int i = 0; i < 2000; i++) {
		char path[700], buf[100];
		snprintf(name, sizeof(name), "d/f%04d", i);
		snprintf(path, sizeof(path), "%s", mpath(&m, name));
		memset(buf, 'a' + i % 26, sizeof(buf));
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			bad++;
		if (fd >= 0)
			close(fd);
	}
	CU_ASSERT(bad == 0);
	CU_ASSERT(ctl_wait(&m, "capacity_bytes", 200000) == 200000);  /* all trimmed */
	int64_t peak = ctl_value(&m, "payload_bytes");
	int64_t d0 = ctl_value(&m, "drains"), r0 = ctl_value(&m, "remote_frees");
	int64_t del0 = ctl_value(&m, "deallocs");
	CU_ASSERT(h_sh("rm -r '%s'", dir) == 0);
	CU_ASSERT(access(dir, F_OK) < 0 && errno == ENOENT);
	CU_ASSERT(ctl_wait(&m, "deallocs", del0 + 2000) == del0 + 2000);
	int64_t drains = ctl_value(&m, "drains") - d0;
	int64_t depth = ctl_value(&m, "free_queue_depth");
	printf("\n  rm -r of 2000 files: %lld drains, %lld still queued ",
	       (long long)drains, (long long)depth);
	CU_ASSERT(ctl_value(&m, "remote_frees") - r0 == 2000);
	CU_ASSERT(drains >= 2000 / 64 - 1 && drains <= 2000 / 64 + 1);
	CU_ASSERT(depth == 2000 - 64 * drains);
	CU_ASSERT(ctl_value(&m, "free_queue_bytes") == 100 * depth);
	CU_ASSERT(ctl_value(&m, "queue_full") == 0);
	/* df is an owner point: it drains the rest */
	CU_ASSERT(h_sh("df '%s' >/dev/null", m.mnt) == 0);
	CU_ASSERT(ctl_value(&m, "free_queue_depth") == 0);
	CU_ASSERT(ctl_value(&m, "drains") - d0 == drains + 1);
	/* the freed room is reused: a file of the freed size (200000 bytes)
	 * does not grow the image past its peak */
	CU_ASSERT(write_pattern_file(mpath(&m, "one"), 200000, 5) == 0);
	CU_ASSERT(ctl_wait(&m, "capacity_bytes", 200000) == 200000);
	int64_t now = ctl_value(&m, "payload_bytes");
	if (now > peak)
		printf("\n  payload grew from %lld to %lld ", (long long)peak, (long long)now);
	CU_ASSERT(now <= peak);
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(ctl_value(&m, "leaked_bytes_reclaimed") == 0);
	CU_ASSERT(prefix_ok(mpath(&m, "one"), 200000, 5, 0));
	/* the policy is an option */
	CU_ASSERT(mnt_cycle(&m, "free_batch=16"));
	CU_ASSERT(ctl_value(&m, "drain_threshold") == 16);
	CU_ASSERT(mnt_cycle(&m, "free_batch=adaptive"));
	int64_t thr = ctl_value(&m, "drain_threshold");
	CU_ASSERT(thr == 8 || thr == 16 || thr == 32 || thr == 64 || thr == 128);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "free_batch=0") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "free_batch"));
	CU_ASSERT(try_mount(&m, m.img, m.mnt, "free_batch=fast") == 1);
	CU_ASSERT(refusal_says(&m, m.img, "free_batch"));
	CU_ASSERT(!h_is_mounted(m.mnt));
out:
	mnt_done(&m);
}

/* ---- every kind of file (catalog version 2) ---------------------------------- */

/* What a tree holds, as find(1) sees it without following symlinks: type,
 * path, link count, and a regular file's size or a symlink's target;
 * sorted. */
static int tree_listing(const char *dir, const char *out)
{
	return h_sh("cd '%s' && find . \\( -type f -printf '%%y %%p %%n %%s\\n' \\) -o "
		  "\\( -type l -printf '%%y %%p %%n %%l\\n' \\) -o -printf '%%y %%p %%n\\n' | "
		  "sort > '%s'", dir, out);
}

/* A source tree outside the mount with every kind tar and rsync carry. */
static int make_kinds_tree(const char *d)
{
	return h_sh("set -e; mkdir -p '%s/sub/deep'; cd '%s'; "
		  "printf 'alpha\\n' > a; ln a sub/a2; ln a sub/deep/a3; "
		  "head -c 70000 /dev/urandom > big; ln big big.link; "
		  "ln -s a rel; ln -s \"$PWD/a\" abs; ln -s nowhere dangling; "
		  "ln -s $(printf 'x%%.0s' $(seq 1 300)) long; ln rel rel.hard; "
		  "ln -s sub dirlink; mkfifo pipe; "
		  "chmod 0640 sub/a2; touch -h -d @1000000000 rel", d, d);
}

static void every_kind_of_file_round_trips_through_tar_cp_and_rsync(void)
{
	struct mnt m;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT_FATAL(make_kinds_tree(dpath(&m, "src")) == 0);
	CU_ASSERT(tree_listing(dpath(&m, "src"), dpath(&m, "want")) == 0);
	/* tar c outside, tar x inside (hard links and symlinks as such) */
	CU_ASSERT(mkdir(mpath(&m, "t"), 0755) == 0);
	CU_ASSERT(h_sh("tar -C '%s' -cf - . | tar -C '%s' -xpf -", dpath(&m, "src"),
		     mpath(&m, "t")) == 0);
	CU_ASSERT(tree_listing(mpath(&m, "t"), dpath(&m, "got.tar")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "want"), dpath(&m, "got.tar")) == 0);
	CU_ASSERT(h_sh("diff -r --no-dereference '%s' '%s' 2>&1 | grep -v 'is a fifo'",
		     dpath(&m, "src"), mpath(&m, "t")) == 1);   /* grep: no output */
	struct stat s1, s2;
	CU_ASSERT(lstat(mpath(&m, "t/a"), &s1) == 0 && lstat(mpath(&m, "t/sub/deep/a3"), &s2) == 0);
	CU_ASSERT(s1.st_ino == s2.st_ino && s1.st_nlink == 3 && s2.st_nlink == 3);
	CU_ASSERT(lstat(mpath(&m, "t/rel"), &s1) == 0 && S_ISLNK(s1.st_mode));
	CU_ASSERT(s1.st_size == 1 && s1.st_mtim.tv_sec == 1000000000 && s1.st_nlink == 2);
	char buf[400];
	CU_ASSERT(readlink(mpath(&m, "t/long"), buf, sizeof buf) == 300);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "cat '%s'", mpath(&m, "t/sub/deep/a3")) == 0 &&
		  strcmp(buf, "alpha\n") == 0);
	/* a tree with links survives the unmount, and fsck finds it clean */
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(fsck_image(m.img) == 0);
	CU_ASSERT(mnt_up(&m, NULL));
	CU_ASSERT(tree_listing(mpath(&m, "t"), dpath(&m, "got.again")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "want"), dpath(&m, "got.again")) == 0);
	/* cp -a out of the mount, rsync -aH into it */
	CU_ASSERT(h_sh("cp -a '%s' '%s'", mpath(&m, "t"), dpath(&m, "back")) == 0);
	CU_ASSERT(tree_listing(dpath(&m, "back"), dpath(&m, "got.cp")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "want"), dpath(&m, "got.cp")) == 0);
	CU_ASSERT(h_sh("rsync -aH '%s/' '%s/'", dpath(&m, "src"), mpath(&m, "r")) == 0);
	CU_ASSERT(tree_listing(mpath(&m, "r"), dpath(&m, "got.rsync")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "want"), dpath(&m, "got.rsync")) == 0);
	/* cp -a inside the mount keeps the links too */
	CU_ASSERT(h_sh("cp -a '%s' '%s'", mpath(&m, "t"), mpath(&m, "c")) == 0);
	CU_ASSERT(tree_listing(mpath(&m, "c"), dpath(&m, "got.cpin")) == 0);
	CU_ASSERT(h_sh("cmp '%s' '%s'", dpath(&m, "want"), dpath(&m, "got.cpin")) == 0);
	/* three trees in the mount (t, r, c), each: five symlinks, one FIFO,
	 * names beyond the first: a two, big one, rel one */
	CU_ASSERT(ctl_value(&m, "symlinks") == 3 * 5);
	CU_ASSERT(ctl_value(&m, "special_files") == 3);
	CU_ASSERT(ctl_value(&m, "hardlinks") == 3 * 4);
	CU_ASSERT(ctl_value(&m, "catalog_version") == 2);
	/* rm -r of trees of every kind leaves nothing behind */
	CU_ASSERT(h_sh("rm -r '%s' '%s' '%s'", mpath(&m, "t"), mpath(&m, "r"), mpath(&m, "c")) == 0);
	CU_ASSERT(ctl_value(&m, "files") == 0 && ctl_value(&m, "symlinks") == 0);
	CU_ASSERT(ctl_value(&m, "hardlinks") == 0 && ctl_value(&m, "special_files") == 0);
	CU_ASSERT(ctl_value(&m, "live_bytes") == 0);
out:
	mnt_done(&m);
}

static void fifos_sockets_devices_and_symlinks_behave_as_on_ext4(void)
{
	struct mnt m;
	struct stat st;
	char buf[256];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	/* a FIFO with a writer and a reader */
	CU_ASSERT(mkfifo(mpath(&m, "p"), 0600) == 0);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "(echo through-the-pipe > '%s' &) ; cat '%s'",
			 mpath(&m, "p"), mpath(&m, "p")) == 0);
	CU_ASSERT(strcmp(buf, "through-the-pipe\n") == 0);
	/* a Unix socket bound in the mount, and a client through it */
	CU_ASSERT(h_sh("cd '%s' && python3 -c \"\n"
		     "import socket\n"
		     "s = socket.socket(socket.AF_UNIX); s.bind('sock'); s.listen(1)\n"
		     "c = socket.socket(socket.AF_UNIX); c.connect('sock')\n"
		     "a, _ = s.accept(); c.sendall(b'hi'); assert a.recv(2) == b'hi'\n\"",
		     mpath(&m, "")) == 0);
	CU_ASSERT(lstat(mpath(&m, "sock"), &st) == 0 && S_ISSOCK(st.st_mode));
	/* device nodes (root): kind and numbers kept across a remount */
	CU_ASSERT(h_sh("mknod '%s' c 1 3 && mknod '%s' b 7 200", mpath(&m, "null"),
		     mpath(&m, "loop")) == 0);
	/* symlinks: readlink, O_NOFOLLOW, lchown, mv over a symlink */
	CU_ASSERT(h_sh("echo target > '%s' && ln -s t '%s' && ln -s t '%s'", mpath(&m, "t"),
		     mpath(&m, "l"), mpath(&m, "l2")) == 0);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "readlink '%s'", mpath(&m, "l")) == 0 &&
		  strcmp(buf, "t\n") == 0);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "cat '%s'", mpath(&m, "l")) == 0 &&
		  strcmp(buf, "target\n") == 0);
	int fd = open(mpath(&m, "l"), O_RDONLY | O_NOFOLLOW);
	CU_ASSERT(fd < 0 && errno == ELOOP);
	if (fd >= 0)
		close(fd);
	CU_ASSERT(h_sh("chown -h 4321:8765 '%s'", mpath(&m, "l")) == 0);
	CU_ASSERT(lstat(mpath(&m, "l"), &st) == 0 && st.st_uid == 4321 && st.st_gid == 8765);
	CU_ASSERT(stat(mpath(&m, "t"), &st) == 0 && st.st_uid == 0);   /* not the target */
	CU_ASSERT(h_sh("echo other > '%s' && mv '%s' '%s'", mpath(&m, "o"), mpath(&m, "o"),
		     mpath(&m, "l2")) == 0);
	CU_ASSERT(lstat(mpath(&m, "l2"), &st) == 0 && S_ISREG(st.st_mode));
	CU_ASSERT(h_sh_out(buf, sizeof buf, "cat '%s'", mpath(&m, "t")) == 0 &&
		  strcmp(buf, "target\n") == 0);
	/* ln of a directory is refused as on ext4; ln -f replaces */
	CU_ASSERT(mkdir(mpath(&m, "d"), 0755) == 0);
	CU_ASSERT(link(mpath(&m, "d"), mpath(&m, "d2")) < 0 && errno == EPERM);
	CU_ASSERT(link(mpath(&m, "t"), mpath(&m, "l")) < 0 && errno == EEXIST);
	CU_ASSERT(h_sh("ln -f '%s' '%s'", mpath(&m, "t"), mpath(&m, "l")) == 0);
	CU_ASSERT(lstat(mpath(&m, "l"), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 2);
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(lstat(mpath(&m, "null"), &st) == 0 && S_ISCHR(st.st_mode));
	CU_ASSERT(major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
	CU_ASSERT(lstat(mpath(&m, "loop"), &st) == 0 && S_ISBLK(st.st_mode));
	CU_ASSERT(major(st.st_rdev) == 7 && minor(st.st_rdev) == 200);
	CU_ASSERT(lstat(mpath(&m, "p"), &st) == 0 && S_ISFIFO(st.st_mode));
	CU_ASSERT(lstat(mpath(&m, "t"), &st) == 0 && st.st_nlink == 2);
	CU_ASSERT(h_sh("rm -r '%s'/*", mpath(&m, "")) == 0);
	CU_ASSERT(ctl_value(&m, "special_files") == 0 && ctl_value(&m, "files") == 0);
out:
	mnt_done(&m);
}

static void git_init_add_commit_and_status_work_in_a_mount(void)
{
	struct mnt m;
	char buf[4096];
	const char *src = getenv("BSTACKFS_SRCDIR");

	if (!src)
		src = ".";
	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	if (h_sh("command -v git > /dev/null") != 0) {
		CU_FAIL("git is not installed (scripts/test installs it)");
		goto out;
	}
	CU_ASSERT(h_sh("set -e; mkdir '%s'; cd '%s'; cp -r '%s/core' .; "
		     "ln -s core/volume.h vol.h; git init -q .; git add -A; "
		     "git -c user.name=t -c user.email=t@e commit -qm first",
		     mpath(&m, "repo"), mpath(&m, "repo"), src) == 0);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "cd '%s' && git status --porcelain",
			 mpath(&m, "repo")) == 0 && buf[0] == '\0');
	CU_ASSERT(h_sh("set -e; cd '%s'; echo change >> core/volume.c; git mv vol.h v.h; "
		     "git -c user.name=t -c user.email=t@e commit -qam second",
		     mpath(&m, "repo")) == 0);
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(h_sh_out(buf, sizeof buf, "cd '%s' && git status --porcelain && "
			 "git rev-list --count HEAD && git fsck --strict 2>&1 | grep -c . ; true",
			 mpath(&m, "repo")) == 0);
	CU_ASSERT(strcmp(buf, "2\n0\n") == 0);
	CU_ASSERT(h_sh("cd '%s' && git diff --quiet HEAD~1 -- core/catalog.c",
		     mpath(&m, "repo")) == 0);
out:
	mnt_done(&m);
}

static void extended_attributes_through_setfattr_cp_a_and_rsync_aHAX(void)
{
	struct mnt m;
	char buf[4096];

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	CU_ASSERT(h_sh("set -e; cd '%s'; echo data > f; mkdir d; ln -s f s; "
		     "setfattr -n user.colour -v blue f; setfattr -n user.empty f; "
		     "setfattr -n trusted.t -v secret f; setfattr -n user.d -v dir d; "
		     "setfattr -h -n trusted.link -v l s; "
		     "setfattr -n user.big -v \"$(printf '%%3000s' '' | tr ' ' z)\" f; "
		     "echo > h; setfattr -n user.huge -v \"$(printf '%%60000s' '' | tr ' ' z)\" h",
		     mpath(&m, "")) == 0);
	CU_ASSERT(h_sh_out(buf, sizeof buf, "getfattr -n user.colour --only-values '%s'",
			 mpath(&m, "f")) == 0 && strcmp(buf, "blue") == 0);
	/* errors as Linux gives them */
	CU_ASSERT(h_sh("getfattr -n user.missing '%s' 2>&1 | grep -q 'No such attribute'",
		     mpath(&m, "f")) == 0);
	CU_ASSERT(h_sh("setfattr -n system.posix_acl_access -v x '%s' 2>/dev/null",
		     mpath(&m, "f")) != 0);
	CU_ASSERT(h_sh("setfattr -h -n user.x -v 1 '%s' 2>&1 | grep -q 'not permitted'",
		     mpath(&m, "s")) == 0);   /* user. only on files and directories */
	CU_ASSERT(h_sh("setfattr -x user.missing '%s' 2>/dev/null", mpath(&m, "f")) != 0);
	int64_t xb = ctl_value(&m, "xattr_bytes");
	CU_ASSERT(xb > 60000);
	/* kept across a remount */
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(h_sh("getfattr -d -m - '%s' '%s' 2>/dev/null > '%s' && "
		     "getfattr -h -d -m - '%s' 2>/dev/null >> '%s'",
		     mpath(&m, "f"), mpath(&m, "d"), dpath(&m, "want"), mpath(&m, "s"),
		     dpath(&m, "want")) == 0);
	CU_ASSERT(h_sh("grep -q 'user.colour=\"blue\"' '%s' && grep -q 'trusted.link=\"l\"' '%s'",
		     dpath(&m, "want"), dpath(&m, "want")) == 0);
	CU_ASSERT(ctl_value(&m, "xattr_bytes") == xb);
	/* cp -a and rsync -aHAX carry them, inside the mount and out of it */
	CU_ASSERT(h_sh("mkdir '%s' && cd '%s' && cp -a f d s '%s'", mpath(&m, "c"), mpath(&m, ""),
		     mpath(&m, "c")) == 0);
	CU_ASSERT(h_sh("cd '%s' && getfattr -d -m - f d > '%s' && getfattr -h -d -m - s >> '%s'",
		     mpath(&m, "c"), dpath(&m, "got.cp"), dpath(&m, "got.cp")) == 0);
	CU_ASSERT(h_sh("sed 's|^# file: .*/|# file: |' '%s' > '%s.n' && "
		     "sed 's|^# file: .*/|# file: |;s|^# file: |# file: |' '%s' > '%s.n' && "
		     "cmp '%s.n' '%s.n'", dpath(&m, "want"), dpath(&m, "want"),
		     dpath(&m, "got.cp"), dpath(&m, "got.cp"), dpath(&m, "want"),
		     dpath(&m, "got.cp")) == 0);
	CU_ASSERT(h_sh("mkdir '%s' && cd '%s' && rsync -aHAX f d s '%s/' && rsync -aHAX f d s '%s/'",
		     dpath(&m, "out"), mpath(&m, ""), dpath(&m, "out"), mpath(&m, "r")) == 0);
	CU_ASSERT(h_sh("cd '%s' && getfattr -d -m - f d > '%s' && getfattr -h -d -m - s >> '%s' && "
		     "sed 's|^# file: .*/|# file: |' '%s' | cmp - '%s.n'", mpath(&m, "r"),
		     dpath(&m, "got.r"), dpath(&m, "got.r"), dpath(&m, "got.r"),
		     dpath(&m, "want")) == 0);
	CU_ASSERT(h_sh("cd '%s' && getfattr -n user.colour --only-values f | grep -qx blue",
		     dpath(&m, "out")) == 0);
	/* a file removed while open keeps its attributes until its last close */
	CU_ASSERT(h_sh("cd '%s' && python3 -c \"\n"
		     "import os\n"
		     "fd = os.open('o', os.O_CREAT | os.O_RDWR, 0o644)\n"
		     "os.setxattr(fd, 'user.kept', b'yes')\n"
		     "os.unlink('o')\n"
		     "assert os.getxattr(fd, 'user.kept') == b'yes'\n"
		     "os.setxattr(fd, 'user.more', b'1')\n"
		     "assert sorted(os.listxattr(fd)) == ['user.kept', 'user.more']\n"
		     "os.close(fd)\n\"", mpath(&m, "")) == 0);
	/* removal gives the bytes back */
	CU_ASSERT(h_sh("rm -r '%s'/*", mpath(&m, "")) == 0);
	CU_ASSERT(ctl_value(&m, "xattr_bytes") == 0);
	CU_ASSERT(ctl_value(&m, "orphan_files") == 0 && ctl_value(&m, "orphan_bytes") == 0);
out:
	mnt_done(&m);
}

static int64_t ctime_ns_of(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
				     : -1;
}

static void sticky_setgid_utimensat_and_ctime_follow_ext4(void)
{
	struct mnt m;
	struct stat st;

	int up = mnt_for_nobody(&m);
	if (up == 0)
		return;
	if (up < 0)
		goto out;
	/* sticky: in a 1777 directory only a file's owner removes or renames it */
	CU_ASSERT(mkdir(mpath(&m, "tmp"), 0777) == 0 && chmod(mpath(&m, "tmp"), 01777) == 0);
	CU_ASSERT(write_pattern_file(mpath(&m, "tmp/roots"), 10, 1) == 0);
	CU_ASSERT(chmod(mpath(&m, "tmp/roots"), 0666) == 0);
	CU_ASSERT(as_nobody("rm -f '%s'", mpath(&m, "tmp/roots")) != 0);
	CU_ASSERT(as_nobody("mv '%s' x", mpath(&m, "tmp/roots")) != 0);
	CU_ASSERT(access(mpath(&m, "tmp/roots"), F_OK) == 0);
	CU_ASSERT(as_nobody("echo mine > '%s'", mpath(&m, "tmp/nobodys")) == 0);
	CU_ASSERT(as_nobody("rm '%s'", mpath(&m, "tmp/nobodys")) == 0);
	CU_ASSERT(access(mpath(&m, "tmp/nobodys"), F_OK) < 0);
	/* setgid: the group and (for directories) the bit are handed down */
	CU_ASSERT(mkdir(mpath(&m, "g"), 0777) == 0 && chown(mpath(&m, "g"), 0, 4242) == 0);
	CU_ASSERT(chmod(mpath(&m, "g"), 02777) == 0);
	CU_ASSERT(as_nobody("mkdir '%s'", mpath(&m, "g/sub")) == 0);
	CU_ASSERT(stat(mpath(&m, "g/sub"), &st) == 0 && st.st_gid == 4242 &&
		  (st.st_mode & S_ISGID) && st.st_uid == 65534);
	CU_ASSERT(as_nobody("touch '%s'", mpath(&m, "g/f")) == 0);
	CU_ASSERT(stat(mpath(&m, "g/f"), &st) == 0 && st.st_gid == 4242);
	/* utimensat: UTIME_OMIT leaves a time alone, UTIME_NOW sets it */
	CU_ASSERT(h_sh("touch -d @1000000000 '%s' && touch -m -d @1200000000 '%s'",
		     mpath(&m, "g/f"), mpath(&m, "g/f")) == 0);
	CU_ASSERT(stat(mpath(&m, "g/f"), &st) == 0 && st.st_atim.tv_sec == 1000000000 &&
		  st.st_mtim.tv_sec == 1200000000);
	CU_ASSERT(h_sh("touch -a '%s'", mpath(&m, "g/f")) == 0);
	CU_ASSERT(stat(mpath(&m, "g/f"), &st) == 0 && st.st_atim.tv_sec > 1200000000 &&
		  st.st_mtim.tv_sec == 1200000000);
	/* ctime moves on every change of the inode: chmod, link, rename,
	 * attributes */
	const char *steps[] = { "chmod 0640 '%s'", "ln '%s' g/f.l", "setfattr -n user.c -v 1 '%s'",
				"mv '%s' g/f2" };
	const char *path = mpath(&m, "g/f");
	char cmd[800];
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		int64_t before = ctime_ns_of(path);
		h_sleep_ms(5);
		snprintf(cmd, sizeof cmd, steps[i], path);
		CU_ASSERT(h_sh("cd '%s' && %s", mpath(&m, ""), cmd) == 0);
		if (i == 3)
			path = mpath(&m, "g/f2");
		int64_t after = ctime_ns_of(path);
		if (!(after > before))
			printf("\n  ctime did not move: %s\n", cmd);
		CU_ASSERT(after > before);
	}
	/* directories: 2 + subdirectories */
	CU_ASSERT(stat(mpath(&m, "g"), &st) == 0 && st.st_nlink == 3);
out:
	mnt_done(&m);
}

static void noxattr_spares_ls_l_its_attribute_requests(void)
{
	struct mnt m;

	for (int pass = 0; pass < 2; pass++) {
		if (!mnt_fresh(&m, pass ? "noxattr" : NULL)) {
			CU_FAIL("mount");
			goto out;
		}
		CU_ASSERT(h_sh("cd '%s' && for i in $(seq 1 50); do echo $i > f$i; done",
			     mpath(&m, "")) == 0);
		int64_t before = ctl_value(&m, "xattr_requests");
		CU_ASSERT(h_sh("ls -l '%s' > /dev/null", mpath(&m, "")) == 0);
		int64_t asked = ctl_value(&m, "xattr_requests") - before;
		if (pass == 0) {
			/* ls -l asks for each file; the volume answers from memory */
			CU_ASSERT(asked >= 50);
		} else {
			CU_ASSERT(asked == 0);
			CU_ASSERT(h_sh("setfattr -n user.x -v 1 '%s' 2>&1 | grep -q 'not supported'",
				     mpath(&m, "f1")) == 0);
			CU_ASSERT(h_sh("getfattr -n user.x '%s' 2>&1 | grep -q 'not supported'",
				     mpath(&m, "f1")) == 0);
		}
		mnt_done(&m);
	}
	return;
out:
	mnt_done(&m);
}

/* Two dd's overwriting two big files at once, and cp growing a third:
 * the overwrites run beside each other (the control file's shared_writes
 * counts them), every byte lands, and the copies compare equal after a
 * remount. */
static void parallel_overwrites_of_different_files_all_land(void)
{
	struct mnt m;

	if (!mnt_fresh(&m, NULL)) {
		CU_FAIL("mount");
		goto out;
	}
	char src[512], over[512];
	snprintf(src, sizeof src, "%s", dpath(&m, "src"));
	snprintf(over, sizeof over, "%s", dpath(&m, "over"));
	CU_ASSERT(h_sh("head -c 8M /dev/urandom > '%s' && head -c 8M /dev/urandom > '%s'",
		     src, over) == 0);
	CU_ASSERT(h_sh("cp '%s' '%s' && cp '%s' '%s'", src, mpath(&m, "a"), src,
		     mpath(&m, "b")) == 0);
	/* a new journal epoch: no record of it covers a's or b's bytes */
	CU_ASSERT(mnt_cycle(&m, NULL));
	int64_t before = ctl_value(&m, "shared_writes");
	CU_ASSERT(h_sh("dd if='%s' of='%s' bs=1M conv=notrunc status=none & "
		     "dd if='%s' of='%s' bs=1M conv=notrunc status=none & "
		     "cp '%s' '%s' & wait", over, mpath(&m, "a"), over, mpath(&m, "b"), src,
		     mpath(&m, "c")) == 0);
	/* 16 requests of 1 MiB, none of which needs the exclusive lock (0
	 * without the shared path) */
	CU_ASSERT(ctl_value(&m, "shared_writes") - before >= 16);
	CU_ASSERT(mnt_cycle(&m, NULL));
	CU_ASSERT(h_sh("cmp '%s' '%s' && cmp '%s' '%s' && cmp '%s' '%s'", over, mpath(&m, "a"),
		     over, mpath(&m, "b"), src, mpath(&m, "c")) == 0);
	CU_ASSERT(mnt_down(&m));
	CU_ASSERT(fsck_image(m.img) == 0);
out:
	mnt_done(&m);
}

/* The daemon's threads: the main one, the committer and its workers. */
static int daemon_threads(pid_t pid)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/task", (int)pid);
	DIR *d = opendir(p);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Without -o max_threads a mount runs one worker per online CPU (at least
 * 2, at most libfuse's 10: fs/options.h says why); with it, what it says.
 * Sixteen readers at once keep every worker busy: libfuse's own default
 * of 10 reaches 8 threads here on 2 cores. */
static void workers_are_one_per_cpu_unless_max_threads_says(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = cpus < 2 ? 2 : cpus > 10 ? 10 : (int)cpus;
	struct mnt m;

	test_dir(&m);
	for (int pass = 0; pass < 2; pass++) {
		if (!mnt_up_fg(&m, pass ? "max_threads=12" : NULL, NULL)) {
			CU_FAIL("foreground mount");
			break;
		}
		CU_ASSERT(h_sh("head -c 1M /dev/zero > '%s' && mkdir -p '%s' && cd '%s' && "
			     "touch f1 f2 f3", mpath(&m, "r"), mpath(&m, "d"), mpath(&m, "d")) == 0);
		CU_ASSERT(h_sh("for i in $(seq 1 16); do (for k in 1 2 3 4 5; do cat '%s' "
			     "> /dev/null; ls -l '%s' > /dev/null; done) & done; wait",
			     mpath(&m, "r"), mpath(&m, "d")) == 0);
		int n = daemon_threads(m.pid);
		if (pass == 0) {
			CU_ASSERT(n >= 3 && n <= 2 + want);
		} else {
			CU_ASSERT(n >= 3 && n <= 2 + 12);
		}
		CU_ASSERT(mnt_down(&m));
	}
	mnt_done(&m);
}

static const struct h_test tests[] = {
	H_TEST(big_file_copies_in_and_out_byte_identical),
	H_TEST(truncate_grows_and_shrinks_tail_and_non_tail_files),
	H_TEST(rm_removes_one_file_and_a_thousand),
	H_TEST(mv_renames_and_replaces_files),
	H_TEST(touch_chmod_and_chown_set_attributes),
	H_TEST(directory_trees_copy_in_and_out_identically),
	H_TEST(df_and_the_control_file_report_sane_figures),
	H_TEST(files_persist_across_remount_with_ghost),
	H_TEST(files_persist_across_remount_with_firstfit),
	H_TEST(files_persist_across_remount_with_slab),
	H_TEST(files_persist_across_remount_with_linear),
	H_TEST(parallel_writers_keep_their_data),
	H_TEST(mounting_an_image_already_mounted_is_refused),
	H_TEST(non_bstack_files_are_refused_untouched),
	H_TEST(damaged_images_are_refused_untouched_and_fallbacks_reported),
	H_TEST(ro_mounts_from_read_only_media_and_writes_nothing),
	H_TEST(a_wrong_allocator_option_is_refused_untouched),
	H_TEST(a_missing_mount_point_is_refused_untouched),
	H_TEST(a_machine_without_dev_fuse_is_refused_untouched),
	H_TEST(fstab_style_options_and_help_work),
	H_TEST(nocreate_mounts_only_images_that_exist),
	H_TEST(the_json_control_file_matches_the_text_key_by_key),
	H_TEST(sigterm_and_sigint_unmount_and_close_cleanly),
	H_TEST(after_sigterm_the_image_is_released_before_the_mount_goes),
	H_TEST(the_kernel_enforces_modes_and_owners),
	H_TEST(cp_writes_reach_the_volume_in_large_requests),
	H_TEST(kill_during_cp_leaves_files_complete_or_absent),
	H_TEST(kill_during_a_create_remove_loop_loses_no_completed_operation),
	H_TEST(commit_interval_groups_operations_and_keeps_each_whole_or_absent),
	H_TEST(journal_off_is_the_seed_exact_mode_and_refuses_a_live_journal),
	H_TEST(fsck_right_after_unmount_waits_for_the_daemon_and_checks_clean),
	H_TEST(an_idle_volume_is_checkpointed_and_gives_its_tail_back),
	H_TEST(the_page_cache_is_kept_across_opens_and_stays_right),
	H_TEST(ls_l_uses_readdirplus_and_missing_names_are_cached),
	H_TEST(the_kernel_s_forgets_reach_the_volume),
	H_TEST(a_file_removed_while_open_stays_usable_until_the_last_close),
	H_TEST(a_full_host_filesystem_gives_enospc_and_loses_nothing),
	H_TEST(rm_r_of_2000_files_frees_in_batches_and_the_space_is_reused),
	H_TEST(every_kind_of_file_round_trips_through_tar_cp_and_rsync),
	H_TEST(fifos_sockets_devices_and_symlinks_behave_as_on_ext4),
	H_TEST(git_init_add_commit_and_status_work_in_a_mount),
	H_TEST(extended_attributes_through_setfattr_cp_a_and_rsync_aHAX),
	H_TEST(sticky_setgid_utimensat_and_ctime_follow_ext4),
	H_TEST(noxattr_spares_ls_l_its_attribute_requests),
	H_TEST(parallel_overwrites_of_different_files_all_land),
	H_TEST(workers_are_one_per_cpu_unless_max_threads_says),
};

/* Without /dev/fuse or fusermount3 nothing here can run: say so and let
 * meson count the suite as skipped (77) rather than failed. */
/* meson's timeout (SIGTERM) or ^C: leave no mount behind.  Not
 * async-signal-safe, but the process is going away anyway. */
static void on_fatal_signal(int sig)
{
	/* A tool may still be busy in a mount: detach at once. */
	h_detach_tracked();
	for (int i = 0; i < 4; i++)
		if (g_tmpfs[i])
			h_sh("umount -l '%s' 2>/dev/null", g_tmpfs[i]);
	exit(128 + sig);   /* atexit: unmount_all, then the temp tree */
}

int main(int argc, char **argv)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);

	if (fd < 0 || h_sh("command -v fusermount3 >/dev/null") != 0) {
		printf("suite mount: skipped (needs /dev/fuse and fusermount3: %s)\n",
		       fd < 0 ? strerror(errno) : "fusermount3 missing");
		return 77;
	}
	close(fd);
	return h_run_suite("mount", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
