/*
 * test_tools.c — mkfs.bstackfs and bstackfs-inspect as users meet them: the
 * real binaries, run with fork/exec on images made with the library,
 * checked by exit status, stdout, stderr and the image's bytes.  JSON and
 * SVG output are read by real parsers (python3's json and xml.etree).
 *
 * Environment: BSTACKFS_MKFS, BSTACKFS_INSPECT (the executables).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "volume.h"

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* ---- running the binaries ------------------------------------------------ */

struct run {
	int status;               /* exit status, -1 when it did not exit */
	char *out;                /* malloc'd, NUL-terminated */
	size_t out_len;
	char err[4096];
};

static const char *mkfs_bin(void)
{
	const char *b = getenv("BSTACKFS_MKFS");
	return b ? b : "mkfs.bstackfs";
}

static const char *inspect_bin(void)
{
	const char *b = getenv("BSTACKFS_INSPECT");
	return b ? b : "bstackfs-inspect";
}

static void run_free(struct run *r)
{
	free(r->out);
	r->out = NULL;
}

static void show(const struct run *r, const char *what)
{
	printf("\n%s: status %d\n--- stdout\n%.2000s--- stderr\n%s---\n", what, r->status,
	       r->out ? r->out : "", r->err);
}

/* Run argv (NULL-terminated; argv[0] the program), stdout and stderr
 * captured.  Frees r's previous output. */
static void run_argv(struct run *r, char *const argv[])
{
	char *outp = h_tmp_path("out"), *errp = h_tmp_path("err");
	run_free(r);
	fflush(stdout);
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDONLY);
		if (o < 0 || e < 0 || nul < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 ||
		    dup2(nul, 0) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	uint8_t *buf = NULL;
	size_t len = 0;
	if (h_read_file(outp, &buf, &len) < 0)
		len = 0;
	r->out = malloc(len + 1);
	CU_ASSERT_FATAL(r->out != NULL);
	if (len)
		memcpy(r->out, buf, len);
	r->out[len] = '\0';
	r->out_len = len;
	free(buf);
	FILE *f = fopen(errp, "r");
	size_t got = f ? fread(r->err, 1, sizeof(r->err) - 1, f) : 0;
	r->err[got] = '\0';
	if (f)
		fclose(f);
	unlink(outp);
	unlink(errp);
	free(outp);
	free(errp);
	if (strstr(r->err, "runtime error") || strstr(r->err, "Sanitizer"))
		show(r, "sanitizer report");
	CU_ASSERT(!strstr(r->err, "runtime error") && !strstr(r->err, "Sanitizer"));
}

#define MAXARGS 16
static void run_va(struct run *r, const char *prog, va_list ap)
{
	char *argv[MAXARGS + 1];
	int argc = 0;
	argv[argc++] = (char *)prog;
	for (char *a; argc < MAXARGS && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	argv[argc] = NULL;
	run_argv(r, argv);
}

static void mkfs(struct run *r, ...)
{
	va_list ap;
	va_start(ap, r);
	run_va(r, mkfs_bin(), ap);
	va_end(ap);
}

static void inspect(struct run *r, ...)
{
	va_list ap;
	va_start(ap, r);
	run_va(r, inspect_bin(), ap);
	va_end(ap);
}

/* stderr is exactly one line "PROG: IMAGE: ..." containing `why`. */
static bool one_refusal(const struct run *r, const char *prog, const char *image,
			const char *why)
{
	char prefix[700];
	size_t len = strlen(r->err);
	snprintf(prefix, sizeof(prefix), "%s: %s: ", prog, image);
	bool ok = len > 0 && r->err[len - 1] == '\n' &&
		  strchr(r->err, '\n') == r->err + len - 1 &&
		  strncmp(r->err, prefix, strlen(prefix)) == 0 && strstr(r->err, why) != NULL;
	if (!ok)
		show(r, why);
	return ok;
}

/* Run a python3 script with arguments; its exit status (0 = checks
 * passed).  The script prints why it failed. */
static int py(const char *script, ...)
{
	char *path = h_tmp_path("py");
	char *argv[MAXARGS + 1];
	int argc = 0;
	va_list ap;
	CU_ASSERT_FATAL(h_write_file(path, script, strlen(script)) == 0);
	argv[argc++] = "python3";
	argv[argc++] = path;
	va_start(ap, script);
	for (char *a; argc < MAXARGS && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	struct run r = { 0 };
	run_argv(&r, argv);
	if (r.status != 0)
		show(&r, "python check");
	int st = r.status;
	run_free(&r);
	unlink(path);
	free(path);
	return st;
}

/* Write `text` to a fresh temp file; the path (malloc'd). */
static char *to_file(const char *stem, const char *text, size_t len)
{
	char *p = h_tmp_path(stem);
	CU_ASSERT_FATAL(h_write_file(p, text, len) == 0);
	return p;
}

/* ---- images --------------------------------------------------------------- */

static struct vol *vopen(const char *path, enum bs_alloc_kind k, bool create)
{
	struct vol_opts o = { .allocator = k, .create = create, .uid = 1, .gid = 2 };
	struct vol_error err = { "" };
	struct vol *v = NULL;
	int r = vol_open(path, &o, &v, &err);
	if (r)
		printf("\nvol_open %s: %d %s\n", path, r, err.msg);
	CU_ASSERT_FATAL(r == 0);
	return v;
}

static uint64_t mk(struct vol *v, uint64_t parent, const char *name, bool dir)
{
	struct vol_attr a;
	int r = dir ? vol_mkdir(v, parent, name, 0755, 1, 2, &a) :
		      vol_create(v, parent, name, 0644, 1, 2, &a);
	CU_ASSERT_FATAL(r == 0);
	return a.ino;
}

static void fill(struct vol *v, uint64_t ino, uint64_t tag, size_t n)
{
	uint8_t *b = malloc(n);
	h_pattern(b, n, tag, 0);
	CU_ASSERT(vol_write(v, ino, b, n, 0) == (ssize_t)n);
	CU_ASSERT(vol_release(v, ino) == 0);
	free(b);
}

/* Files /a (5000 bytes, tag 1), /d1/b (100, tag 2), /d1/c (70000, tag 3),
 * /e (0), and a removed file leaving a hole (free space, or Linear's
 * unreferenced hole). */
static char *sample_image(enum bs_alloc_kind k)
{
	char *path = h_tmp_path("img");
	struct vol *v = vopen(path, k, true);
	uint64_t d1 = mk(v, VOL_ROOT_INO, "d1", true);
	fill(v, mk(v, VOL_ROOT_INO, "a", false), 1, 5000);
	fill(v, mk(v, VOL_ROOT_INO, "gone", false), 9, 30000);
	fill(v, mk(v, d1, "b", false), 2, 100);
	fill(v, mk(v, d1, "c", false), 3, 70000);
	mk(v, VOL_ROOT_INO, "e", false);
	CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, "gone") == 0);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	return path;
}

struct bytes {
	uint8_t *buf;
	size_t len;
};

static struct bytes grab(const char *path)
{
	struct bytes b = { NULL, 0 };
	CU_ASSERT(h_read_file(path, &b.buf, &b.len) == 0);
	return b;
}

static bool unchanged(const char *path, const struct bytes *before)
{
	struct bytes now = grab(path);
	bool same = now.len == before->len && (!now.len || memcmp(now.buf, before->buf, now.len) == 0);
	free(now.buf);
	return same;
}

/* ---- mkfs.bstackfs ----------------------------------------------------------- */

static void mkfs_makes_the_image_a_first_mount_makes_for_each_allocator(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		enum bs_alloc_kind k = kinds[i];
		char *img = h_tmp_path("mk"), *ref = h_tmp_path("ref");
		mkfs(&r, "-q", "-a", bs_alloc_kind_name(k), img, NULL);
		CU_ASSERT(r.status == 0);
		CU_ASSERT(r.out_len == 0 && r.err[0] == '\0');   /* -q */
		/* the image a first mount creates, through the library */
		CU_ASSERT(vol_close(vopen(ref, k, true)) == 0);
		struct bytes a = grab(img), b = grab(ref);
		CU_ASSERT(a.len == b.len && a.len > BSTACK_HEADER_SIZE);
		free(a.buf);
		free(b.buf);
		/* it opens without create, holds k, an empty root, and the two
		 * control texts agree in everything (counters of a fresh open) */
		struct vol *v = vopen(img, BS_ALLOC_NONE, false), *w = vopen(ref, BS_ALLOC_NONE, false);
		struct vol_summary s;
		CU_ASSERT(vol_summary(v, &s) == 0);
		CU_ASSERT(strcmp(s.allocator, bs_alloc_kind_name(k)) == 0);
		CU_ASSERT(s.files == 0 && s.directories == 1);
		char *t1, *t2;
		size_t n1, n2;
		CU_ASSERT_FATAL(vol_stats_text(v, &t1, &n1) == 0 && vol_stats_text(w, &t2, &n2) == 0);
		CU_ASSERT(n1 == n2 && memcmp(t1, t2, n1) == 0);
		if (n1 != n2 || memcmp(t1, t2, n1))
			printf("\nmkfs:\n%.*s\nmount:\n%.*s\n", (int)n1, t1, (int)n2, t2);
		free(t1);
		free(t2);
		struct vol_attr root;
		CU_ASSERT(vol_getattr(v, VOL_ROOT_INO, &root) == 0);
		CU_ASSERT(root.uid == getuid() && root.gid == getgid());
		CU_ASSERT(vol_close(v) == 0 && vol_close(w) == 0);
		free(img);
		free(ref);
	}
	/* without -q it says what it made; slab with its block size */
	char *img = h_tmp_path("mk");
	mkfs(&r, "-a", "slab", "-b", "512", img, NULL);
	CU_ASSERT(r.status == 0);
	CU_ASSERT(strstr(r.out, "slab allocator") && strstr(r.out, "512-byte blocks"));
	struct vol_opts o = { .allocator = BS_ALLOC_SLAB, .block_size = 512 };
	struct vol_error err;
	struct vol *v;
	CU_ASSERT(vol_open(img, &o, &v, &err) == 0 && vol_close(v) == 0);
	o.block_size = 4096;   /* the image's blocks are 512 */
	CU_ASSERT(vol_open(img, &o, &v, &err) == -EINVAL);
	/* the default allocator is GhostTree */
	char *img2 = h_tmp_path("mk");
	mkfs(&r, img2, NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, "ghost allocator"));
	free(img);
	free(img2);
	run_free(&r);
}

static void mkfs_never_touches_an_existing_file_without_f(void)
{
	struct run r = { 0 };
	char *junk = to_file("junk", "not an image at all\n", 20);
	char *img = sample_image(BS_ALLOC_FIRSTFIT);
	char *empty = to_file("empty", "", 0);
	const char *paths[] = { junk, img, empty };
	for (size_t i = 0; i < 3; i++) {
		struct bytes before = grab(paths[i]);
		mkfs(&r, "-a", "ghost", paths[i], NULL);
		CU_ASSERT(r.status == 1);
		CU_ASSERT(one_refusal(&r, "mkfs.bstackfs", paths[i], "already exists"));
		CU_ASSERT(r.out_len == 0);
		CU_ASSERT(unchanged(paths[i], &before));
		free(before.buf);
	}
	/* a directory is refused even with -f */
	char *dir = h_tmp_path("dir");
	CU_ASSERT(mkdir(dir, 0755) == 0);
	mkfs(&r, "-f", dir, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", dir, "not a regular file"));
	free(junk);
	free(img);
	free(empty);
	free(dir);
	run_free(&r);
}

static void mkfs_f_overwrites_but_never_an_image_in_use(void)
{
	struct run r = { 0 };
	char *img = sample_image(BS_ALLOC_GHOST);
	/* in use: a volume holds the lock */
	struct vol *v = vopen(img, BS_ALLOC_NONE, false);
	struct bytes before = grab(img);
	mkfs(&r, "-f", "-a", "linear", img, NULL);
	CU_ASSERT(r.status == 1);
	CU_ASSERT(one_refusal(&r, "mkfs.bstackfs", img, "in use"));
	CU_ASSERT(unchanged(img, &before));
	free(before.buf);
	CU_ASSERT(vol_close(v) == 0);
	/* not in use: overwritten in place, mode kept */
	CU_ASSERT(chmod(img, 0600) == 0);
	mkfs(&r, "-f", "-q", "-a", "linear", img, NULL);
	CU_ASSERT(r.status == 0);
	struct stat st;
	CU_ASSERT(stat(img, &st) == 0 && (st.st_mode & 0777) == 0600);
	v = vopen(img, BS_ALLOC_LINEAR, false);
	struct vol_summary s;
	CU_ASSERT(vol_summary(v, &s) == 0 && s.files == 0 && s.directories == 1);
	CU_ASSERT(vol_close(v) == 0);
	/* -f on a file that does not exist creates it */
	char *img2 = h_tmp_path("mk");
	mkfs(&r, "-f", "-q", img2, NULL);
	CU_ASSERT(r.status == 0 && access(img2, F_OK) == 0);
	free(img);
	free(img2);
	run_free(&r);
}

static void mkfs_refuses_bad_options_before_touching_anything(void)
{
	struct run r = { 0 };
	char *img = h_tmp_path("mk");
	mkfs(&r, "-b", "512", img, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", img, "-a slab"));
	mkfs(&r, "-a", "firstfit", "-b", "512", img, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", img, "slab"));
	mkfs(&r, "-a", "slab", "-b", "4", img, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", img, "at least 8"));
	mkfs(&r, "-a", "slab", "-b", "12k", img, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", img, "bad block size"));
	mkfs(&r, "-a", "buddy", img, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "mkfs.bstackfs", img, "unknown allocator"));
	CU_ASSERT(access(img, F_OK) < 0 && errno == ENOENT);   /* nothing created */
	/* -f with a bad option leaves an existing image whole */
	char *old = sample_image(BS_ALLOC_SLAB);
	struct bytes before = grab(old);
	mkfs(&r, "-f", "-a", "ghost", "-b", "64", old, NULL);
	CU_ASSERT(r.status == 1 && unchanged(old, &before));
	free(before.buf);
	/* usage */
	mkfs(&r, NULL);
	CU_ASSERT(r.status == 1 && strstr(r.err, "missing IMAGE") && strstr(r.err, "usage:"));
	mkfs(&r, "-x", img, NULL);
	CU_ASSERT(r.status == 1 && strstr(r.err, "unknown option -x"));
	mkfs(&r, img, img, NULL);
	CU_ASSERT(r.status == 1 && strstr(r.err, "exactly one IMAGE"));
	mkfs(&r, "-a", NULL);
	CU_ASSERT(r.status == 1 && strstr(r.err, "needs a value"));
	CU_ASSERT(access(img, F_OK) < 0);
	mkfs(&r, "-h", NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, "usage: mkfs.bstackfs") && strstr(r.out, "-f"));
	mkfs(&r, "--version", NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, "mkfs.bstackfs version " BSTACKFS_VERSION));
	free(img);
	free(old);
	run_free(&r);
}

/* ---- bstackfs-inspect: never writes, refuses what it must ------------------- */

static void inspect_never_writes_and_refuses_an_image_in_use(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = sample_image(kinds[i]);
		char *dest = h_tmp_path("dest"), *svg = h_tmp_path("svg");
		struct bytes before = grab(img);
		struct stat st0, st1;
		CU_ASSERT(stat(img, &st0) == 0);
		const char *cmds[][4] = {
			{ "stats" }, { "ls", "/" }, { "ls", "/d1" }, { "stat", "/a" },
			{ "cat", "/d1/c" }, { "extract", "/a", dest }, { "free" }, { "hist" },
			{ "map" }, { "map", "--svg", svg },
		};
		for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
			for (int json = 0; json < 2; json++) {
				unlink(dest);
				if (json)
					inspect(&r, "--json", img, cmds[c][0], cmds[c][1], cmds[c][2],
						NULL);
				else
					inspect(&r, img, cmds[c][0], cmds[c][1], cmds[c][2], NULL);
				if (r.status != 0)
					show(&r, cmds[c][0]);
				CU_ASSERT(r.status == 0 && r.out_len > 0);
			}
		}
		CU_ASSERT(unchanged(img, &before));
		CU_ASSERT(stat(img, &st1) == 0 && st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
			  st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
		/* a mounted (locked) image is refused, every command */
		struct vol *v = vopen(img, BS_ALLOC_NONE, false);
		for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
			unlink(dest);
			inspect(&r, img, cmds[c][0], cmds[c][1], cmds[c][2], NULL);
			CU_ASSERT(r.status == 1 && r.out_len == 0);
			CU_ASSERT(one_refusal(&r, "bstackfs-inspect", img, "in use"));
		}
		CU_ASSERT(vol_close(v) == 0);
		free(before.buf);
		free(img);
		free(dest);
		free(svg);
	}
	run_free(&r);
}

static void inspect_refuses_bad_usage_and_bad_images(void)
{
	struct run r = { 0 };
	char *img = sample_image(BS_ALLOC_GHOST);
	inspect(&r, NULL);
	CU_ASSERT(r.status == 2 && strstr(r.err, "usage:"));
	inspect(&r, img, NULL);
	CU_ASSERT(r.status == 2 && strstr(r.err, "missing COMMAND"));
	inspect(&r, img, "frobnicate", NULL);
	CU_ASSERT(r.status == 2 && strstr(r.err, "unknown command"));
	inspect(&r, img, "stat", NULL);
	CU_ASSERT(r.status == 2);
	inspect(&r, img, "extract", "/a", NULL);
	CU_ASSERT(r.status == 2);
	inspect(&r, img, "ls", "--svg", "x.svg", NULL);
	CU_ASSERT(r.status == 2 && strstr(r.err, "--svg is for map"));
	inspect(&r, img, "map", "--columns", "0", NULL);
	CU_ASSERT(r.status == 2);
	inspect(&r, "--bogus", img, "ls", NULL);
	CU_ASSERT(r.status == 2);
	inspect(&r, "-h", NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, "without ever writing"));
	inspect(&r, "-V", NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, BSTACKFS_VERSION));
	/* paths that are not there */
	inspect(&r, img, "stat", "/nope", NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", img, "/nope"));
	inspect(&r, img, "cat", "/d1", NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", img, "is a directory"));
	inspect(&r, img, "ls", "/a", NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", img, "not a directory"));
	/* extract never overwrites */
	char *dest = to_file("dest", "keep", 4);
	inspect(&r, img, "extract", "/a", dest, NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", img, "already exists"));
	struct bytes d = grab(dest);
	CU_ASSERT(d.len == 4 && memcmp(d.buf, "keep", 4) == 0);
	free(d.buf);
	/* images that are not images */
	char *junk = to_file("junk", "BSTK but not really, and long enough to read", 44);
	char *missing = h_tmp_path("missing");
	inspect(&r, junk, "ls", NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", junk, "bstack"));
	inspect(&r, missing, "ls", NULL);
	CU_ASSERT(r.status == 1 && one_refusal(&r, "bstackfs-inspect", missing, "cannot open"));
	CU_ASSERT(access(missing, F_OK) < 0);
	free(img);
	free(dest);
	free(junk);
	free(missing);
	run_free(&r);
}

/* ---- bstackfs-inspect: the reports ------------------------------------------- */

static void inspect_ls_stat_cat_and_extract_show_the_files(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = sample_image(kinds[i]);
		/* what the library says of /d1/c */
		struct vol *v = vopen(img, BS_ALLOC_NONE, false);
		struct vol_attr d1, c;
		struct vol_alloc_rec rec;
		CU_ASSERT_FATAL(vol_lookup(v, VOL_ROOT_INO, "d1", &d1) == 0);
		CU_ASSERT_FATAL(vol_lookup(v, d1.ino, "c", &c) == 0);
		CU_ASSERT_FATAL(vol_alloc_of(v, c.ino, &rec) == 0);
		CU_ASSERT(vol_close(v) == 0);

		inspect(&r, img, "ls", NULL);
		CU_ASSERT(r.status == 0);
		CU_ASSERT(strstr(r.out, "  a\n") && strstr(r.out, "  d1/\n") && strstr(r.out, "  e\n"));
		CU_ASSERT(!strstr(r.out, "gone"));
		inspect(&r, img, "ls", "/d1", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, "  b\n") && strstr(r.out, "  c\n"));

		inspect(&r, img, "stat", "/d1/c", NULL);
		CU_ASSERT(r.status == 0);
		char want[256];
		snprintf(want, sizeof want, "allocation: offset %llu capacity %llu size 70000\n",
			 (unsigned long long)rec.slice.off, (unsigned long long)rec.slice.len);
		CU_ASSERT(strstr(r.out, want) != NULL);
		snprintf(want, sizeof want, "extent: start %llu bytes %llu",
			 (unsigned long long)rec.ext_start, (unsigned long long)rec.ext_len);
		CU_ASSERT(strstr(r.out, want) != NULL);
		CU_ASSERT(rec.ext_len >= 70000 && rec.slice.len == 70000);

		inspect(&r, "--json", img, "stat", "/d1/c", NULL);
		char *js = to_file("json", r.out, r.out_len);
		char off[32], ext[32], len[32];
		snprintf(off, sizeof off, "%llu", (unsigned long long)rec.slice.off);
		snprintf(ext, sizeof ext, "%llu", (unsigned long long)rec.ext_start);
		snprintf(len, sizeof len, "%llu", (unsigned long long)rec.ext_len);
		CU_ASSERT(py("import json, sys\n"
			     "d = json.load(open(sys.argv[1]))\n"
			     "a = d['allocation']\n"
			     "assert d['path'] == '/d1/c' and d['type'] == 'file', d\n"
			     "assert d['size'] == 70000 and d['mode'] == 0o644, d\n"
			     "assert d['uid'] == 1 and d['gid'] == 2, d\n"
			     "assert a['offset'] == int(sys.argv[2]) and a['capacity'] == 70000, a\n"
			     "assert a['extent_start'] == int(sys.argv[3]), a\n"
			     "assert a['extent_bytes'] == int(sys.argv[4]), a\n",
			     js, off, ext, len, NULL) == 0);
		inspect(&r, "--json", img, "ls", "/", NULL);
		CU_ASSERT(h_write_file(js, r.out, r.out_len) == 0);
		CU_ASSERT(py("import json, sys\n"
			     "d = json.load(open(sys.argv[1]))\n"
			     "e = {x['name']: x for x in d['entries']}\n"
			     "assert sorted(e) == ['a', 'd1', 'e'], e\n"
			     "assert e['a']['size'] == 5000 and e['a']['type'] == 'file'\n"
			     "assert e['a']['capacity'] == 5000 and e['a']['offset'] > 0\n"
			     "assert e['e']['size'] == 0 and e['e']['capacity'] == 0\n"
			     "assert e['d1']['type'] == 'dir'\n", js, NULL) == 0);
		unlink(js);
		free(js);

		inspect(&r, img, "cat", "/d1/c", NULL);
		CU_ASSERT(r.status == 0 && r.out_len == 70000 &&
			  h_pattern_ok(r.out, r.out_len, 3, 0));
		inspect(&r, img, "cat", "/e", NULL);
		CU_ASSERT(r.status == 0 && r.out_len == 0);
		char *dest = h_tmp_path("dest");
		inspect(&r, img, "extract", "/a", dest, NULL);
		CU_ASSERT(r.status == 0);
		struct bytes got = grab(dest);
		CU_ASSERT(got.len == 5000 && h_pattern_ok(got.buf, got.len, 1, 0));
		free(got.buf);
		free(dest);
		free(img);
	}
	run_free(&r);
}

/* The map's spans cover the payload exactly once; files appear by name with
 * their sizes; totals agree with the control file's figures and with free;
 * the SVG parses and names every file. */
static const char *map_check =
	"import json, sys, xml.etree.ElementTree as ET\n"
	"m = json.load(open(sys.argv[1])); st = json.load(open(sys.argv[2]))\n"
	"fr = json.load(open(sys.argv[3])); kind = sys.argv[5]\n"
	"at = 0\n"
	"for s in m['spans']:\n"
	"    assert s['start'] == at, ('gap or overlap', s, at)\n"
	"    assert s['bytes'] > 0, s\n"
	"    at += s['bytes']\n"
	"assert at == m['payload_bytes'] == st['payload_bytes'], (at, m['payload_bytes'])\n"
	"assert m['payload_bytes'] + 16 == st['image_bytes']\n"
	"tot = {}\n"
	"for s in m['spans']: tot[s['kind']] = tot.get(s['kind'], 0) + s['bytes']\n"
	"for k, v in m['totals'].items(): assert tot.get(k, 0) == v, (k, v, tot)\n"
	"files = {}\n"
	"for s in m['spans']:\n"
	"    if s['kind'] == 'file': files[s['path']] = files.get(s['path'], 0) + s['bytes']\n"
	"assert files == {'/a': 5000, '/d1/b': 100, '/d1/c': 70000}, files\n"
	"assert tot.get('file', 0) == st['live_bytes']\n"
	"assert tot.get('free', 0) == st['free_bytes'] == fr['free_bytes'], (tot, st['free_bytes'])\n"
	"assert len(fr['blocks']) == fr['free_blocks']\n"
	"if kind == 'linear':\n"
	"    assert tot.get('unreferenced', 0) >= 30000, tot\n"
	"else:\n"
	"    assert tot.get('unreferenced', 0) == 0, tot\n"
	"    assert tot.get('free', 0) >= 30000, tot\n"
	"assert 0 < tot.get('catalog', 0) <= st['catalog_bytes'], (tot, st['catalog_bytes'])\n"
	"assert tot['header'] == {'linear': 16}.get(kind, 48)\n"
	"if kind == 'firstfit': assert tot.get('overhead', 0) > 0\n"
	"if kind in ('ghost', 'slab'): assert tot.get('overhead', 0) == 0\n"
	"ns = '{http://www.w3.org/2000/svg}'\n"
	"root = ET.parse(sys.argv[4]).getroot()\n"
	"assert root.tag == ns + 'svg'\n"
	"texts = [t.text or '' for t in root.iter(ns + 'title')] + \\\n"
	"        [t.text or '' for t in root.iter(ns + 'text')]\n"
	"for f in files: assert any(f in t for t in texts), ('not named in the SVG', f)\n"
	"rects = [r for r in root.iter(ns + 'rect') if r.get('data-kind')]\n"
	"assert rects, 'no map cells'\n"
	"kinds = {r.get('data-kind') for r in rects}\n"
	"assert 'file' in kinds, kinds\n"
	"g = root.find(ns + 'g')\n"
	"cols, rows = int(g.get('data-columns')), int(g.get('data-rows'))\n"
	"bpc = int(g.get('data-bytes-per-cell'))\n"
	"assert cols * rows * bpc >= m['payload_bytes'] > cols * (rows - 1) * bpc\n"
	"w = sum(int(r.get('width')) for r in rects) // 2\n"
	"assert w == -(-m['payload_bytes'] // bpc), ('cells drawn', w)\n";

static void inspect_heap_map_covers_the_payload_once_for_each_allocator(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = sample_image(kinds[i]);
		char *svg = h_tmp_path("svg");
		inspect(&r, "--json", img, "map", "--svg", svg, NULL);
		CU_ASSERT(r.status == 0);
		char *mj = to_file("map", r.out, r.out_len);
		inspect(&r, "--json", img, "stats", NULL);
		CU_ASSERT(r.status == 0);
		char *sj = to_file("stats", r.out, r.out_len);
		inspect(&r, "--json", img, "free", NULL);
		CU_ASSERT(r.status == 0);
		char *fj = to_file("free", r.out, r.out_len);
		CU_ASSERT(py(map_check, mj, sj, fj, svg, bs_alloc_kind_name(kinds[i]), NULL) == 0);
		/* the text map lists the same spans */
		inspect(&r, img, "map", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, " file ") && strstr(r.out, "/d1/c"));
		free(img);
		free(svg);
		free(mj);
		free(sj);
		free(fj);
	}
	run_free(&r);
}

static void inspect_shows_symlinks_special_files_links_and_attribute_blobs(void)
{
	struct run r = { 0 };
	char big[200];
	memset(big, 't', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = h_tmp_path("img");
		struct vol *v = vopen(img, kinds[i], true);
		struct vol_attr a;
		uint64_t f = mk(v, VOL_ROOT_INO, "f", false);
		fill(v, f, 4, 3000);
		CU_ASSERT(vol_symlink(v, VOL_ROOT_INO, "short", "f", 1, 2, &a) == 0);
		CU_ASSERT(vol_symlink(v, VOL_ROOT_INO, "long", big, 1, 2, &a) == 0);
		CU_ASSERT(vol_mknod(v, VOL_ROOT_INO, "pipe", S_IFIFO | 0600, 0, 1, 2, &a) == 0);
		CU_ASSERT(vol_link(v, f, VOL_ROOT_INO, "f2", &a) == 0);
		CU_ASSERT(vol_setxattr(v, f, "user.k", "an attribute", 12, 0) == 0);
		CU_ASSERT_FATAL(vol_close(v) == 0);
		inspect(&r, img, "ls", "/", NULL);
		CU_ASSERT(r.status == 0);
		CU_ASSERT(r.out && strstr(r.out, "\nl0777") && strstr(r.out, "\np0600"));
		inspect(&r, img, "stat", "/long", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, "type: symlink") &&
			  strstr(r.out, "size 199"));
		inspect(&r, img, "stat", "/f2", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, "links: 2"));
		inspect(&r, img, "cat", "/short", NULL);
		CU_ASSERT(r.status != 0 && strstr(r.err, "not a regular file"));
		/* the attribute blob is a span of its own; nothing unreferenced
		 * but Linear's hole-free tail */
		inspect(&r, img, "map", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, " xattr ") && strstr(r.out, "/long"));
		CU_ASSERT(kinds[i] == BS_ALLOC_LINEAR || !strstr(r.out, "unreferenced"));
		free(img);
	}
	run_free(&r);
}

static void inspect_hist_counts_every_allocation_and_free_block(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = sample_image(kinds[i]);
		inspect(&r, "--json", img, "hist", NULL);
		CU_ASSERT(r.status == 0);
		char *hj = to_file("hist", r.out, r.out_len);
		inspect(&r, "--json", img, "free", NULL);
		char *fj = to_file("free", r.out, r.out_len);
		CU_ASSERT(py("import json, sys\n"
			     "h = json.load(open(sys.argv[1])); f = json.load(open(sys.argv[2]))\n"
			     "a = h['allocations']\n"
			     "assert a['count'] == 3, a\n"     /* /a, /d1/b, /d1/c */
			     "assert a['bytes'] >= 75100, a\n"
			     "for part in (a, h['free']):\n"
			     "    assert sum(b['count'] for b in part['buckets']) == part['count']\n"
			     "    assert sum(b['bytes'] for b in part['buckets']) == part['bytes']\n"
			     "    for b in part['buckets']:\n"
			     "        assert b['max'] == 2 * b['min'] - 1, b\n"
			     "        assert b['min'] & (b['min'] - 1) == 0, b\n"
			     "        assert b['min'] * b['count'] <= b['bytes'] <= b['max'] * b['count']\n"
			     "assert h['free']['count'] == f['free_blocks']\n"
			     "assert h['free']['bytes'] == f['free_bytes']\n"
			     "big = [b for b in a['buckets'] if b['min'] == 65536]\n"
			     "assert big and big[0]['count'] == 1, a\n", hj, fj, NULL) == 0);
		inspect(&r, img, "hist", NULL);
		CU_ASSERT(r.status == 0 && strstr(r.out, "65536-131071") &&
			  strstr(r.out, "allocations: 3"));
		free(img);
		free(hj);
		free(fj);
	}
	run_free(&r);
}

static void inspect_free_walks_the_allocators_own_structure(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		enum bs_alloc_kind k = kinds[i];
		char *img = sample_image(k);
		inspect(&r, img, "free", NULL);
		CU_ASSERT(r.status == 0);
		const char *how = k == BS_ALLOC_GHOST ? "avl tree" : k == BS_ALLOC_LINEAR ? "none" :
			"free list";
		CU_ASSERT(strstr(r.out, how) != NULL);
		inspect(&r, "--json", img, "free", NULL);
		char *fj = to_file("free", r.out, r.out_len);
		CU_ASSERT(py("import json, sys\n"
			     "f = json.load(open(sys.argv[1])); k = sys.argv[2]\n"
			     "b = f['blocks']\n"
			     "if k == 'linear': assert b == [] and f['structure'] == 'none'; sys.exit(0)\n"
			     "assert b, 'the removed file left free space'\n"
			     "for x in b: assert x['block_start'] <= x['offset'] and "
			     "x['offset'] + x['bytes'] <= x['block_start'] + x['block_bytes']\n"
			     "if k == 'ghost':\n"
			     "    keys = [(x['bytes'], x['offset']) for x in b]\n"
			     "    assert keys == sorted(keys), 'in order: ascending (size, address)'\n"
			     "    assert min(x['depth'] for x in b) == 0\n"
			     "else:\n"
			     "    assert [x['position'] for x in b] == list(range(len(b)))\n"
			     "if k == 'slab': assert len({x['bytes'] for x in b}) == 1\n",
			     fj, bs_alloc_kind_name(k), NULL) == 0);
		free(fj);
		free(img);
	}
	run_free(&r);
}

/* A million free Slab blocks: the map still draws a bounded picture. */
static void inspect_heap_map_of_a_million_blocks_stays_legible(void)
{
	struct run r = { 0 };
	char *img = h_tmp_path("img"), *svg = h_tmp_path("svg");
	struct vol_opts o = { .allocator = BS_ALLOC_SLAB, .block_size = 8, .create = true };
	struct vol_error err;
	struct vol *v;
	CU_ASSERT_FATAL(vol_open(img, &o, &v, &err) == 0);
	uint64_t big = mk(v, VOL_ROOT_INO, "big", false);
	fill(v, big, 5, 8 << 20);
	fill(v, mk(v, VOL_ROOT_INO, "tail", false), 6, 1000);
	CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, "big") == 0);   /* 2^20 free blocks */
	CU_ASSERT_FATAL(vol_close(v) == 0);
	inspect(&r, img, "map", "--svg", svg, "--columns", "256", NULL);
	CU_ASSERT(r.status == 0 && strstr(r.out, "256 x 64 cells"));
	struct stat st;
	CU_ASSERT(stat(svg, &st) == 0 && st.st_size < 200000);
	CU_ASSERT(py("import sys, xml.etree.ElementTree as ET\n"
		     "ns = '{http://www.w3.org/2000/svg}'\n"
		     "root = ET.parse(sys.argv[1]).getroot()\n"
		     "cells = [r for r in root.iter(ns + 'rect') if r.get('data-kind')]\n"
		     "assert 0 < len(cells) <= 256 * 64, len(cells)\n"
		     "kinds = {r.get('data-kind') for r in cells}\n"
		     "assert 'free' in kinds and 'file' in kinds, kinds\n"
		     "t = [x.text or '' for x in root.iter(ns + 'title')]\n"
		     "assert any(x.startswith('/tail') for x in t)\n", svg, NULL) == 0);
	inspect(&r, "--json", img, "free", NULL);
	CU_ASSERT(r.status == 0);
	char *fj = to_file("free", r.out, r.out_len);
	CU_ASSERT(py("import json, sys\n"
		     "f = json.load(open(sys.argv[1]))\n"
		     "assert f['free_blocks'] >= 1 << 20, f['free_blocks']\n"
		     "assert f['free_bytes'] == 8 * f['free_blocks']\n", fj, NULL) == 0);
	free(fj);
	free(img);
	free(svg);
	run_free(&r);
}

static void inspect_stats_json_matches_the_text_key_by_key(void)
{
	struct run r = { 0 };
	for (size_t i = 0; i < NKINDS; i++) {
		char *img = sample_image(kinds[i]);
		inspect(&r, img, "stats", NULL);
		CU_ASSERT(r.status == 0 && strncmp(r.out, "allocator ", 10) == 0);
		char *tx = to_file("text", r.out, r.out_len);
		inspect(&r, "--json", img, "stats", NULL);
		CU_ASSERT(r.status == 0);
		char *js = to_file("json", r.out, r.out_len);
		CU_ASSERT(py("import json, sys\n"
			     "d = json.load(open(sys.argv[2]))\n"
			     "lines = [l.split(' ', 1) for l in open(sys.argv[1]).read().splitlines()]\n"
			     "assert [k for k, _ in lines] == list(d), (lines, list(d))\n"
			     "for k, v in lines:\n"
			     "    j = d[k]\n"
			     "    if isinstance(j, str): assert j == v and k in ('allocator', 'magic'), k\n"
			     "    elif isinstance(j, int): assert str(j) == v, (k, j, v)\n"
			     "    else: assert isinstance(j, float) and abs(j - float(v)) < 1e-9, k\n"
			     "assert d['files'] == 4 and d['directories'] == 2\n"
			     "assert d['live_bytes'] == 75100\n",
			     tx, js, NULL) == 0);
		free(tx);
		free(js);
		free(img);
	}
	run_free(&r);
}

static const struct h_test tests[] = {
	H_TEST(mkfs_makes_the_image_a_first_mount_makes_for_each_allocator),
	H_TEST(mkfs_never_touches_an_existing_file_without_f),
	H_TEST(mkfs_f_overwrites_but_never_an_image_in_use),
	H_TEST(mkfs_refuses_bad_options_before_touching_anything),
	H_TEST(inspect_never_writes_and_refuses_an_image_in_use),
	H_TEST(inspect_refuses_bad_usage_and_bad_images),
	H_TEST(inspect_ls_stat_cat_and_extract_show_the_files),
	H_TEST(inspect_heap_map_covers_the_payload_once_for_each_allocator),
	H_TEST(inspect_shows_symlinks_special_files_links_and_attribute_blobs),
	H_TEST(inspect_hist_counts_every_allocation_and_free_block),
	H_TEST(inspect_free_walks_the_allocators_own_structure),
	H_TEST(inspect_heap_map_of_a_million_blocks_stays_legible),
	H_TEST(inspect_stats_json_matches_the_text_key_by_key),
};

H_MAIN("tools", tests)
