/*
 * test_view_mount.c — `bstackfs -o view` as users meet it (issue 16): real
 * mounts on /dev/fuse of bstackfs images and of images other programs
 * wrote with the allocators (made here with the core library), looked at
 * with ls -l, cat, cp, hexdump and cmp; the image's SHA-256 is the same
 * after every view; changes are refused; the lock against mounts.
 *
 * Mounting and unmounting as tests/test_mount.c does: every test unmounts
 * in its own teardown (fusermount3 -u, retried, lazy as the last resort),
 * an atexit hook and the fatal signals unmount whatever is left, and after
 * an unmount the test waits for the daemon to let go of the image's lock.
 *
 * Environment: BSTACKFS_BIN, BSTACKFS_MKFS, BSTACKFS_FSCK (the programs).
 */
#include "harness.h"
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "allocview.h"
#include "volume.h"


struct vm {
	char dir[400];
	char img[450];
	char mnt[450];
	char mnt2[450];
	char err[450];
};

static const char *env_or(const char *k, const char *d)
{
	const char *v = getenv(k);
	return v ? v : d;
}
#define BIN env_or("BSTACKFS_BIN", "bstackfs")
#define MKFS env_or("BSTACKFS_MKFS", "mkfs.bstackfs")
#define FSCK env_or("BSTACKFS_FSCK", "bstackfs-fsck")

static void on_fatal_signal(int sig)
{
	signal(sig, SIG_DFL);
	exit(128 + sig);   /* atexit: h_unmount_tracked, then the temp tree */
}

static void vm_setup(struct vm *m)
{
	static bool hooked;
	char *p = h_tmp_path("v");
	if (!hooked) {
		atexit(h_unmount_tracked);   /* after h_tmp_dir's cleanup: runs first */
		hooked = true;
	}
	memset(m, 0, sizeof *m);
	snprintf(m->dir, sizeof m->dir, "%s", p);
	free(p);
	mkdir(m->dir, 0755);
	snprintf(m->img, sizeof m->img, "%s/image.bst", m->dir);
	snprintf(m->mnt, sizeof m->mnt, "%s/mnt", m->dir);
	snprintf(m->mnt2, sizeof m->mnt2, "%s/mnt2", m->dir);
	snprintf(m->err, sizeof m->err, "%s/stderr", m->dir);
	mkdir(m->mnt, 0755);
	mkdir(m->mnt2, 0755);
}

static void vm_teardown(struct vm *m)
{
	if (h_is_mounted(m->mnt))
		CU_ASSERT(h_force_unmount(m->mnt));
	if (h_is_mounted(m->mnt2))
		CU_ASSERT(h_force_unmount(m->mnt2));
	CU_ASSERT(h_wait_released(m->img));
	/* a daemon that died says why in its stderr (a sanitizer report) */
	if (h_sh("grep -q ERROR '%s' 2>/dev/null", m->err) == 0) {
		h_sh("cat '%s' >&2", m->err);
		CU_FAIL("a view daemon reported an error");
	}
	h_sh("rm -rf '%s'", m->dir);
}

/* bstackfs [-o opts] IMAGE MNT, daemonized; its exit status (stderr in
 * m->err). */
static int bsfs(struct vm *m, const char *mnt, const char *opts)
{
	int rc = h_sh("'%s' %s%s '%s' '%s' 2>'%s'", BIN, opts ? "-o " : "", opts ? opts : "",
		    m->img, mnt, m->err);
	if (rc == 0 && h_is_mounted(mnt))
		h_mount_track(mnt);
	return rc;
}

/* The view in the foreground (-f), in the background of the shell, so that
 * its stderr stays in m->err for its whole life: a sanitizer's report of a
 * daemon that died mid-test is printed at teardown. */
static bool view_up(struct vm *m, const char *mnt, const char *extra)
{
	char opts[200];
	snprintf(opts, sizeof opts, "view%s%s", extra ? "," : "", extra ? extra : "");
	int rc = h_sh("'%s' -f -o %s '%s' '%s' 2>>'%s' &", BIN, opts, m->img, mnt, m->err);
	for (int i = 0; rc == 0 && i < 200 && !h_is_mounted(mnt); i++)
		h_sleep_ms(25);
	if (h_is_mounted(mnt))
		h_mount_track(mnt);
	if (rc != 0 || !h_is_mounted(mnt)) {
		char e[1024] = "";
		h_sh_out(e, sizeof e, "cat '%s'", m->err);
		fprintf(stderr, "test_view_mount: view of %s failed (%d): %s\n", m->img, rc, e);
		return false;
	}
	return true;
}

static bool down(struct vm *m, const char *mnt)
{
	bool ok = h_force_unmount(mnt);
	return h_wait_released(m->img) && ok;
}

static void sha256(const char *path, char out[80])
{
	char buf[200];
	h_sh_out(buf, sizeof buf, "sha256sum '%s' | cut -d' ' -f1", path);
	snprintf(out, 80, "%.79s", buf);
}

static void err_text(const struct vm *m, char *buf, size_t n)
{
	h_sh_out(buf, n, "cat '%s'", m->err);
}

/* ---- images ------------------------------------------------------------- */

/* A bstackfs image with files a (6 bytes), b (5000 pattern bytes), c (70000). */
static bool bstackfs_image(struct vm *m, const char *alloc)
{
	if (h_sh("'%s' -q -a %s '%s'", MKFS, alloc, m->img) != 0 || bsfs(m, m->mnt, NULL) != 0)
		return false;
	uint8_t *b = malloc(70000);
	h_pattern(b, 70000, 7, 0);
	char p[600];
	snprintf(p, sizeof p, "%s/b", m->mnt);
	bool ok = h_write_file(p, b, 5000) == 0;
	snprintf(p, sizeof p, "%s/c", m->mnt);
	ok = ok && h_write_file(p, b, 70000) == 0;
	free(b);
	ok = ok && h_sh("printf hello > '%s/a'", m->mnt) == 0;
	return down(m, m->mnt) && ok;
}

/* The allocation of file `name` in the unmounted image at m->img, through
 * the volume opened without writing. */
static bool file_slice(struct vm *m, const char *name, struct bs_slice *out)
{
	struct vol_opts o = { .rdonly_file = true, .no_write = true };
	struct vol_error err;
	struct vol *v;
	struct vol_attr a;
	struct vol_alloc_rec rec;
	if (vol_open(m->img, &o, &v, &err) != 0)
		return false;
	bool ok = vol_lookup(v, VOL_ROOT_INO, name, &a) == 0 && vol_alloc_of(v, a.ino, &rec) == 0;
	*out = rec.slice;
	vol_close(v);
	return ok;
}

/* The allocation file of the view that holds [off, off + len): its name
 * and the offset of the slice inside it. */
static bool holder(struct vm *m, uint64_t off, uint64_t len, char name[AV_NAME_MAX],
		   uint64_t *delta)
{
	char ls[65536];
	h_sh_out(ls, sizeof ls, "ls '%s/allocations'", m->mnt);
	for (char *line = strtok(ls, "\n"); line; line = strtok(NULL, "\n")) {
		struct av_block b;
		if (av_parse_name(line, &b) && b.off <= off && off + len <= b.off + b.len) {
			snprintf(name, AV_NAME_MAX, "%s", line);
			*delta = off - b.off;
			return true;
		}
	}
	return false;
}

/* Do the view's allocation files hold pattern `tag` over [off, off + len)?
 * Read piece by piece from every file that covers part of it (Slab: one
 * file per block), which must together cover all of it. */
static bool span_is(struct vm *m, uint64_t off, uint64_t len, uint64_t tag)
{
	static char ls[1 << 20];
	uint8_t *b = calloc(1, len ? len : 1);
	uint64_t covered = 0;
	h_sh_out(ls, sizeof ls, "ls '%s/allocations'", m->mnt);
	for (char *line = strtok(ls, "\n"); line; line = strtok(NULL, "\n")) {
		struct av_block f;
		if (!av_parse_name(line, &f) || f.off + f.len <= off || f.off >= off + len)
			continue;
		uint64_t s = f.off > off ? f.off : off;
		uint64_t e = f.off + f.len < off + len ? f.off + f.len : off + len;
		char p[700];
		snprintf(p, sizeof p, "%s/allocations/%s", m->mnt, line);
		int fd = open(p, O_RDONLY);
		if (fd >= 0 && pread(fd, b + (s - off), e - s, (off_t)(s - f.off)) == (ssize_t)(e - s))
			covered += e - s;
		if (fd >= 0)
			close(fd);
	}
	bool ok = covered == len && h_pattern_ok(b, len, tag, 0);
	free(b);
	return ok;
}

/* A foreign image: the allocator's own calls, no catalog.  *t gets the
 * live slices (sorted), each filled with pattern tag 100 + its index. */
struct foreign {
	struct bs_slice s[64];
	size_t n;
};

static bool foreign_image(struct vm *m, enum bs_alloc_kind k, struct foreign *t)
{
	struct bs_io *io;
	struct bstack *bs;
	struct bs_alloc *a;
	struct bs_alloc_opts o = { .block_size = 512 };
	struct bs_slice s[40];
	if (bs_io_file_open(m->img, BS_IO_CREATE, &io, NULL) || bstack_create(io, &bs))
		return false;
	if (bs_alloc_create(bs, k, &o, &a)) {
		bstack_close(bs);
		return false;
	}
	bool ok = true;
	for (int i = 0; i < 40 && ok; i++)
		ok = bs_alloc(a, 1 + (uint64_t)(i * 131 % 1500), &s[i]) == 0;
	for (int i = 1; i < 40 && ok && k != BS_ALLOC_LINEAR; i += 4)
		ok = bs_dealloc(a, s[i]) == 0, s[i].len = 0;
	t->n = 0;
	for (int i = 0; i < 40 && ok; i++) {
		if (!s[i].len)
			continue;
		uint8_t *b = malloc(s[i].len);
		h_pattern(b, s[i].len, 100 + (uint64_t)t->n, 0);
		ok = bstack_set(bs, s[i].off, b, s[i].len) == 0;
		free(b);
		t->s[t->n++] = s[i];
	}
	bs_alloc_close(a);
	bstack_close(bs);
	return ok;
}

/* ---- tests ------------------------------------------------------------------ */

static const char *const allocators[] = { "ghost", "firstfit", "slab", "linear" };

static void a_bstackfs_image_is_viewed_by_address_and_never_written(void)
{
	for (size_t ai = 0; ai < 4; ai++) {
		struct vm m;
		char before[80], after[80], out[65536];
		struct bs_slice sb, sc;
		vm_setup(&m);
		CU_ASSERT_FATAL(bstackfs_image(&m, allocators[ai]));
		CU_ASSERT_FATAL(file_slice(&m, "b", &sb) && file_slice(&m, "c", &sc));
		sha256(m.img, before);
		CU_ASSERT(view_up(&m, m.mnt, NULL));
		/* the layout */
		h_sh_out(out, sizeof out, "ls '%s'", m.mnt);
		CU_ASSERT_STRING_EQUAL(out, "allocations\nfree\nreserved\n");
		h_sh_out(out, sizeof out, "ls -A '%s'", m.mnt);
		CU_ASSERT(strstr(out, ".bstackfs\n.bstackfs.json\n") != NULL);
		/* ls -l: every size is the length its name states */
		h_sh_out(out, sizeof out, "ls -l '%s/allocations' | awk 'NR > 1 { print $5, $9 }'",
		       m.mnt);
		int files = 0, bad = 0;
		for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
			unsigned long long size;
			char name[64];
			struct av_block b;
			if (sscanf(l, "%llu %63s", &size, name) != 2 || !av_parse_name(name, &b) ||
			    b.len != size)
				bad++;
			files++;
		}
		CU_ASSERT(files > 0 && bad == 0);
		/* the control file counts them */
		h_sh_out(out, sizeof out, "grep '^files ' '%s/.bstackfs'", m.mnt);
		char want[32];
		snprintf(want, sizeof want, "files %d\n", files);
		CU_ASSERT_STRING_EQUAL(out, want);
		h_sh_out(out, sizeof out, "cat '%s/.bstackfs'", m.mnt);
		CU_ASSERT(strstr(out, "bstackfs_catalog 1\n") && strstr(out, "view 1\n"));
		char allocline[40];
		snprintf(allocline, sizeof allocline, "allocator %s\n", allocators[ai]);
		CU_ASSERT(strncmp(out, allocline, strlen(allocline)) == 0);
		CU_ASSERT(h_sh("grep -q '\"allocator\": \"%s\"' '%s/.bstackfs.json'", allocators[ai],
			     m.mnt) == 0);
		/* file c's bytes, read from the allocation that holds them (dd
		 * from it, cmp with the pattern) */
		char name[AV_NAME_MAX];
		uint64_t delta = 0;
		CU_ASSERT(span_is(&m, sc.off, sc.len, 7));
		uint8_t *pat = malloc(70000);
		h_pattern(pat, 70000, 7, 0);
		char pp[600];
		snprintf(pp, sizeof pp, "%s/pattern", m.dir);
		CU_ASSERT(h_write_file(pp, pat, 70000) == 0);
		free(pat);
		/* FirstFit: the file's own block, exactly its slice (dd and cmp) */
		if (strcmp(allocators[ai], "firstfit") == 0) {
			CU_ASSERT_FATAL(holder(&m, sc.off, sc.len, name, &delta));
			CU_ASSERT(delta == 0);
			CU_ASSERT(h_sh("dd if='%s/allocations/%s' bs=4096 count=100 status=none | "
				     "cmp -s -n 70000 - '%s'", m.mnt, name, pp) == 0);
			CU_ASSERT(holder(&m, sb.off, sb.len, name, &delta) && delta == 0);
			CU_ASSERT(h_sh("cmp -s -n 5000 '%s/allocations/%s' '%s'", m.mnt, name, pp) == 0);
		}
		/* cp -r of the whole view: the same bytes as cat gives */
		CU_ASSERT(h_sh("cp -r '%s/allocations' '%s/copy'", m.mnt, m.dir) == 0);
		CU_ASSERT(h_sh("cd '%s/allocations' && for f in *; do cmp -s \"$f\" '%s/copy/'\"$f\" "
			     "|| exit 1; done", m.mnt, m.dir) == 0);
		CU_ASSERT(h_sh("cat '%s/allocations'/* > '%s/all.cat' && cat '%s/copy'/* | "
			     "cmp -s - '%s/all.cat'", m.mnt, m.dir, m.dir, m.dir) == 0);
		/* /reserved: the root reference names the catalog, an allocation
		 * (hexdump of its first 8 bytes, the offset) */
		h_sh_out(out, sizeof out, "hexdump -n 8 -e '1/8 \"%%x\\n\"' '%s/reserved'", m.mnt);
		unsigned long long cat_off = strtoull(out, NULL, 16);
		CU_ASSERT(cat_off > 0);
		CU_ASSERT(holder(&m, cat_off, 64, name, &delta));
		h_sh_out(out, sizeof out, "hexdump -C -n 8 '%s/allocations/%s' -s %llu", m.mnt, name,
		       (unsigned long long)delta);
		CU_ASSERT(strstr(out, "|BSFSCAT1|") != NULL);
		CU_ASSERT(down(&m, m.mnt));
		sha256(m.img, after);
		CU_ASSERT_STRING_EQUAL(before, after);
		/* and the image still mounts and checks clean */
		CU_ASSERT(h_sh("'%s' -n '%s' >/dev/null 2>&1", FSCK, m.img) == 0);
		vm_teardown(&m);
	}
}

static void a_foreign_image_shows_the_allocations_its_program_made(void)
{
	static const enum bs_alloc_kind kinds[] = { BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB,
						    BS_ALLOC_GHOST, BS_ALLOC_LINEAR };
	for (size_t ki = 0; ki < 4; ki++) {
		struct vm m;
		struct foreign t;
		char before[80], after[80], out[65536];
		vm_setup(&m);
		CU_ASSERT_FATAL(foreign_image(&m, kinds[ki], &t));
		sha256(m.img, before);
		if (kinds[ki] == BS_ALLOC_LINEAR) {
			/* no magic: refused unless asked for */
			CU_ASSERT(bsfs(&m, m.mnt, "view") == 1 && !h_is_mounted(m.mnt));
			err_text(&m, out, sizeof out);
			CU_ASSERT(strstr(out, "allocator=linear") != NULL);
			CU_ASSERT(view_up(&m, m.mnt, "allocator=linear"));
		} else {
			CU_ASSERT(view_up(&m, m.mnt, NULL));
		}
		/* a normal mount refuses this image; the view is the way in */
		h_sh_out(out, sizeof out, "grep '^bstackfs_catalog ' '%s/.bstackfs'", m.mnt);
		CU_ASSERT_STRING_EQUAL(out, "bstackfs_catalog 0\n");
		/* every slice's bytes, at its place in the view; FirstFit: the
		 * slice is a file of its own */
		int bad = 0;
		for (size_t i = 0; i < t.n; i++) {
			char name[AV_NAME_MAX];
			uint64_t delta;
			if (!span_is(&m, t.s[i].off, t.s[i].len, 100 + i))
				bad++;
			if (kinds[ki] == BS_ALLOC_FIRSTFIT &&
			    (!holder(&m, t.s[i].off, t.s[i].len, name, &delta) || delta != 0))
				bad++;
		}
		CU_ASSERT(bad == 0);
		/* FirstFit: one file per slice; the free blocks are listed */
		h_sh_out(out, sizeof out, "ls '%s/allocations' | wc -l", m.mnt);
		if (kinds[ki] == BS_ALLOC_FIRSTFIT)
			CU_ASSERT(strtoul(out, NULL, 10) == t.n);
		if (kinds[ki] == BS_ALLOC_LINEAR)
			CU_ASSERT(strtoul(out, NULL, 10) == 1);
		h_sh_out(out, sizeof out, "ls '%s/free' | wc -l", m.mnt);
		CU_ASSERT((strtoul(out, NULL, 10) > 0) == (kinds[ki] != BS_ALLOC_LINEAR));
		CU_ASSERT(down(&m, m.mnt));
		sha256(m.img, after);
		CU_ASSERT_STRING_EQUAL(before, after);
		vm_teardown(&m);
	}
}

static void every_change_is_refused_as_a_read_only_filesystem(void)
{
	struct vm m;
	char before[80], after[80], out[4096];
	vm_setup(&m);
	CU_ASSERT_FATAL(bstackfs_image(&m, "ghost"));
	sha256(m.img, before);
	CU_ASSERT_FATAL(view_up(&m, m.mnt, NULL));
	const char *cmds[] = {
		"touch '%s/new'", "touch '%s/allocations/new'", "mkdir '%s/d'",
		"rm -f '%s/allocations'/*", "rm -f '%s/reserved'", "sh -c \"echo x >> '%s/reserved'\"",
		"truncate -s 0 '%s/reserved'", "mv '%s/reserved' '%s/r2'", "chmod 777 '%s/reserved'",
		"sh -c \"echo x > '%s/.bstackfs'\"", "ln -s x '%s/l'",
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		char c[1200];
		snprintf(c, sizeof c, cmds[i], m.mnt, m.mnt);
		char full[1400];
		snprintf(full, sizeof full, "%s 2>&1", c);
		int rc = h_sh_out(out, sizeof out, "%s", full);
		CU_ASSERT(rc != 0);
		if (rc == 0 || !strstr(out, "Read-only file system"))
			printf("\n%s: rc %d: %s\n", c, rc, out);
		CU_ASSERT(strstr(out, "Read-only file system") != NULL);
	}
	/* the tree is unchanged */
	h_sh_out(out, sizeof out, "ls '%s'", m.mnt);
	CU_ASSERT_STRING_EQUAL(out, "allocations\nfree\nreserved\n");
	CU_ASSERT(h_sh("df '%s' >/dev/null", m.mnt) == 0);
	CU_ASSERT(down(&m, m.mnt));
	sha256(m.img, after);
	CU_ASSERT_STRING_EQUAL(before, after);
	vm_teardown(&m);
}

static void views_share_the_image_and_exclude_mounts(void)
{
	struct vm m;
	char out[2048], before[80], after[80];
	vm_setup(&m);
	CU_ASSERT_FATAL(bstackfs_image(&m, "firstfit"));
	sha256(m.img, before);
	/* a mounted image cannot be viewed */
	CU_ASSERT_FATAL(bsfs(&m, m.mnt, NULL) == 0);
	CU_ASSERT(bsfs(&m, m.mnt2, "view") == 1 && !h_is_mounted(m.mnt2));
	err_text(&m, out, sizeof out);
	CU_ASSERT(strstr(out, "in use") != NULL);
	CU_ASSERT(down(&m, m.mnt));
	sha256(m.img, before);   /* the mount's unmount may rewrite it */
	/* two views at once; a mount and fsck are refused meanwhile */
	CU_ASSERT(view_up(&m, m.mnt, NULL));
	CU_ASSERT(view_up(&m, m.mnt2, NULL));
	CU_ASSERT(h_sh("cmp -s '%s/reserved' '%s/reserved'", m.mnt, m.mnt2) == 0);
	CU_ASSERT(bsfs(&m, m.dir, NULL) == 1);
	err_text(&m, out, sizeof out);
	CU_ASSERT(strstr(out, "in use") != NULL);
	CU_ASSERT(h_sh("'%s' -n -W 0 '%s' >/dev/null 2>&1", FSCK, m.img) == 8);
	CU_ASSERT(h_force_unmount(m.mnt2));
	CU_ASSERT(down(&m, m.mnt));
	sha256(m.img, after);
	CU_ASSERT_STRING_EQUAL(before, after);
	/* and then it mounts again */
	CU_ASSERT(bsfs(&m, m.mnt, NULL) == 0);
	CU_ASSERT(down(&m, m.mnt));
	vm_teardown(&m);
}

static void a_damaged_image_is_refused_with_its_violations_and_kept(void)
{
	struct vm m;
	struct foreign t;
	char before[80], after[80], out[4096];
	vm_setup(&m);
	CU_ASSERT_FATAL(foreign_image(&m, BS_ALLOC_FIRSTFIT, &t));
	/* the footer of the first live block disagrees with its header */
	uint8_t *img;
	size_t n;
	CU_ASSERT_FATAL(h_read_file(m.img, &img, &n) == 0);
	uint64_t foot = 16 + t.s[0].off + ((t.s[0].len + 7) / 8 * 8 < 16 ? 16 :
					   (t.s[0].len + 7) / 8 * 8);
	CU_ASSERT_FATAL(foot + 8 <= n);
	img[foot] ^= 0x40;
	CU_ASSERT_FATAL(h_write_file(m.img, img, n) == 0);
	free(img);
	sha256(m.img, before);
	CU_ASSERT(bsfs(&m, m.mnt, "view") == 1);
	CU_ASSERT(!h_is_mounted(m.mnt));
	err_text(&m, out, sizeof out);
	CU_ASSERT(strstr(out, "damaged") && strstr(out, "violation"));
	CU_ASSERT(strncmp(out, "bstackfs: ", 10) == 0 && strchr(out, '\n') == out + strlen(out) - 1);
	sha256(m.img, after);
	CU_ASSERT_STRING_EQUAL(before, after);
	/* not a bstack image at all */
	CU_ASSERT(h_write_file(m.img, "hello, world, this is text\n", 27) == 0);
	CU_ASSERT(bsfs(&m, m.mnt, "view") == 1 && !h_is_mounted(m.mnt));
	err_text(&m, out, sizeof out);
	CU_ASSERT(strstr(out, "not a bstack image") != NULL);
	vm_teardown(&m);
}

static void options_that_would_write_are_refused_with_view(void)
{
	struct vm m;
	char out[2048];
	vm_setup(&m);
	CU_ASSERT_FATAL(bstackfs_image(&m, "slab"));
	const char *bad[] = { "view,sync", "view,commit=5", "view,journal=off",
			      "view,block_size=512", "view,free_batch=8",
			      "view,allocator=ghost" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CU_ASSERT(bsfs(&m, m.mnt, bad[i]) == 1);
		CU_ASSERT(!h_is_mounted(m.mnt));
		err_text(&m, out, sizeof out);
		CU_ASSERT(strncmp(out, "bstackfs: ", 10) == 0);
	}
	err_text(&m, out, sizeof out);
	CU_ASSERT(strstr(out, "mismatch") != NULL);
	/* -o view with ro and the right allocator is fine */
	CU_ASSERT(view_up(&m, m.mnt, "ro,allocator=slab"));
	CU_ASSERT(down(&m, m.mnt));
	CU_ASSERT(h_sh("'%s' --help | grep -q -- '-o view'", BIN) == 0);
	vm_teardown(&m);
}

static const struct h_test tests[] = {
	H_TEST(a_bstackfs_image_is_viewed_by_address_and_never_written),
	H_TEST(a_foreign_image_shows_the_allocations_its_program_made),
	H_TEST(every_change_is_refused_as_a_read_only_filesystem),
	H_TEST(views_share_the_image_and_exclude_mounts),
	H_TEST(a_damaged_image_is_refused_with_its_violations_and_kept),
	H_TEST(options_that_would_write_are_refused_with_view),
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	return h_run_suite("view_mount", tests, sizeof tests / sizeof tests[0], argc, argv);
}
