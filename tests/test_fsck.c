/*
 * test_fsck.c — bstackfs-fsck as users meet it: the real binary, run with
 * fork/exec on images made with the library, checked by exit status,
 * stdout, stderr and the image's bytes.  The --json report is read by a
 * real parser (python3's json) and compared with the text form key by key.
 *
 * Environment: BSTACKFS_FSCK (the executable).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bstack.h"
#include "catalog.h"
#include "volume.h"

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define FOR_EACH_KIND(k) \
	for (size_t ki_ = 0; ki_ < sizeof(kinds) / sizeof(kinds[0]); ki_++) \
		for (enum bs_alloc_kind k = kinds[ki_], *once_ = &k; once_; once_ = NULL)

/* ---- running the binary -------------------------------------------------- */

struct run {
	int status;               /* exit status, -1 when it did not exit */
	long maxrss_kib;          /* the child's peak resident memory */
	char out[16384];
	char err[4096];
};

static const char *fsck_bin(void)
{
	const char *b = getenv("BSTACKFS_FSCK");
	return b ? b : "bstackfs-fsck";
}

static void slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got = f ? fread(buf, 1, n - 1, f) : 0;
	buf[got] = '\0';
	if (f)
		fclose(f);
	unlink(path);
}

static void show(const struct run *r, const char *what)
{
	printf("\n%s: status %d\n--- stdout\n%s--- stderr\n%s---\n", what, r->status,
	       r->out, r->err);
}

/* Run argv (NULL-terminated), stdout and stderr captured. */
static void run_argv(struct run *r, char **argv)
{
	char *outp = h_tmp_path("out"), *errp = h_tmp_path("err");

	fflush(stdout);
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	struct rusage ru;
	memset(&ru, 0, sizeof ru);
	while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
		;
	r->maxrss_kib = ru.ru_maxrss;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	slurp(outp, r->out, sizeof(r->out));
	slurp(errp, r->err, sizeof(r->err));
	/* under -Db_sanitize the child reports here, maybe without failing */
	if (strstr(r->err, "runtime error") || strstr(r->err, "Sanitizer"))
		show(r, "sanitizer report");
	CU_ASSERT(!strstr(r->err, "runtime error") && !strstr(r->err, "Sanitizer"));
	free(outp);
	free(errp);
}

#define MAXARGS 16

/* Run bstackfs-fsck with the given arguments (NULL-terminated). */
static void run_fsck(struct run *r, ...)
{
	char *argv[MAXARGS + 1];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)fsck_bin();
	va_start(ap, r);
	for (char *a; argc < MAXARGS && (a = va_arg(ap, char *)); )
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	run_argv(r, argv);
}

/* stdout has this line, exactly. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static bool has_linef(const char *text, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	return has_line(text, line);
}

/* stderr is one line "bstackfs-fsck: IMAGE: ..." containing `why`. */
static bool one_refusal(const struct run *r, const char *image, const char *why)
{
	char prefix[600];
	size_t len = strlen(r->err);
	snprintf(prefix, sizeof(prefix), "bstackfs-fsck: %s: ", image);
	return len > 0 && r->err[len - 1] == '\n' && strchr(r->err, '\n') == r->err + len - 1 &&
	       strncmp(r->err, prefix, strlen(prefix)) == 0 && strstr(r->err, why) != NULL;
}

/* ---- images -------------------------------------------------------------- */

static struct vol *vopen_path(const char *path, enum bs_alloc_kind k, bool create)
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

/* Two directories under the root, files a (5000 bytes) and d1/b (100). */
static char *clean_image(enum bs_alloc_kind k)
{
	char *path = h_tmp_path("img");
	struct vol *v = vopen_path(path, k, true);
	uint64_t d1 = mk(v, VOL_ROOT_INO, "d1", true);
	mk(v, VOL_ROOT_INO, "d2", true);
	fill(v, mk(v, VOL_ROOT_INO, "a", false), 1, 5000);
	fill(v, mk(v, d1, "b", false), 2, 100);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	return path;
}

/* Allocate `len` bytes no catalog record names; the bytes the allocator
 * holds for them (its extent). */
static uint64_t leak(const char *path, uint64_t len)
{
	struct bstack *bs;
	struct bs_alloc *a;
	enum bs_alloc_kind k;
	struct bs_slice s;
	uint64_t start, ext;

	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT_FATAL(bs_alloc_detect(bs, &k) == 0);
	CU_ASSERT_FATAL(bs_alloc_open(bs, k == BS_ALLOC_NONE ? BS_ALLOC_LINEAR : k, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(a, len, &s) == 0);
	CU_ASSERT_FATAL(bs_alloc_extent(a, s, &start, &ext) == 0);
	bs_alloc_close(a);
	bstack_close(bs);
	return ext;
}

struct image_bytes {
	uint8_t *buf;
	size_t len;
	bool present;
};

static struct image_bytes grab(const char *path)
{
	struct image_bytes b = { NULL, 0, false };
	b.present = h_read_file(path, &b.buf, &b.len) == 0;
	return b;
}

static bool unchanged(const char *path, struct image_bytes *before)
{
	struct image_bytes now = grab(path);
	bool same = now.present == before->present && now.len == before->len &&
		    (!now.len || memcmp(now.buf, before->buf, now.len) == 0);
	free(now.buf);
	free(before->buf);
	before->buf = NULL;
	return same;
}

static const char *kname(enum bs_alloc_kind k)
{
	return bs_alloc_kind_name(k);
}

/* ---- --json against the text form ----------------------------------------- */

/*
 * The comparison, in python3 (a real JSON parser, strict UTF-8): every line
 * of the text form has its counterpart in the JSON object and every member
 * of the object has its line — figures as numbers, the messages as an
 * array of {kind, text} in the text's order, the -v figures key by key,
 * the result, and exit_code equal to both runs' exit status.  A refusal
 * (exit 8) has its stderr reason as "error".
 * argv: TEXT_OUT TEXT_STATUS JSON_OUT JSON_STATUS JSON_ERR IMAGE.
 */
static const char json_vs_text_py[] =
	"import json, sys\n"
	"text_out, text_st, json_out, json_st, err_out, image = sys.argv[1:7]\n"
	"text = open(text_out, encoding='utf-8').read()\n"
	"tst, jst = int(text_st), int(json_st)\n"
	"raw = open(json_out, 'rb').read()\n"
	"assert raw.endswith(b'}\\n'), raw[-20:]\n"
	"d = json.loads(raw.decode('utf-8'))      # strict UTF-8, one object, nothing after it\n"
	"err = open(err_out, encoding='utf-8').read()\n"
	"assert isinstance(d, dict), d\n"
	"assert d['exit_code'] == jst == tst, (d['exit_code'], jst, tst)\n"
	"assert d['program'] == 'bstackfs-fsck' and d['image'] == image, (d['program'], d['image'])\n"
	"assert d['mode'] in ('check', 'repair', 'no-changes'), d['mode']\n"
	"seen = {'program', 'version', 'image', 'mode', 'messages', 'result', 'exit_code'}\n"
	"kinds = {'note': 'note', 'recovery': 'recovery', 'repair': 'repair',\n"
	"         'maintenance': 'maintenance', 'damaged': 'damaged', 'violation': 'violation',\n"
	"         'error': 'error', 'repairable': 'repairable',\n"
	"         'not repairable by -y': 'not_repairable'}\n"
	"figures = {'files': 'files', 'directories': 'directories', 'live bytes': 'live_bytes',\n"
	"           'free bytes': 'free_bytes', 'leaked bytes reclaimed': 'leaked_bytes_reclaimed',\n"
	"           'violations': 'violations', 'open-time repairs': 'open_time_repairs'}\n"
	"msgs, stats, result = [], None, None\n"
	"lines = text.splitlines()\n"
	"i = 0\n"
	"while i < len(lines):\n"
	"    l = lines[i]\n"
	"    i += 1\n"
	"    if l == '--- .bstackfs':\n"
	"        stats = []\n"
	"        while i < len(lines) and ': ' not in lines[i]:\n"
	"            k, v = lines[i].split(' ', 1)\n"
	"            stats.append((k, v))\n"
	"            i += 1\n"
	"        continue\n"
	"    if l.startswith('would reclaim ') and l.endswith(' bytes'):\n"
	"        assert d['would_reclaim_bytes'] == int(l.split()[2]), l\n"
	"        seen.add('would_reclaim_bytes')\n"
	"        continue\n"
	"    key, sep, val = l.partition(': ')\n"
	"    assert sep, 'a text line the JSON does not have: ' + l\n"
	"    if key == 'image':\n"
	"        nc = val.endswith(' (no changes)')\n"
	"        assert d['image'] == (val[:-len(' (no changes)')] if nc else val), l\n"
	"        assert (d['mode'] == 'no-changes') == nc, (l, d['mode'])\n"
	"    elif key == 'allocator':\n"
	"        a, m = val.split(' (', 1)\n"
	"        assert d['allocator'] == a and d['magic'] + ')' == m, (l, d['allocator'], d['magic'])\n"
	"        seen |= {'allocator', 'magic'}\n"
	"    elif key in figures:\n"
	"        j = d[figures[key]]\n"
	"        assert (j == val) if isinstance(j, str) else (type(j) is int and j == int(val)), (l, j)\n"
	"        seen.add(figures[key])\n"
	"    elif key == 'result':\n"
	"        result = val\n"
	"    elif key in kinds:\n"
	"        msgs.append({'kind': kinds[key], 'text': val})\n"
	"    else:\n"
	"        raise AssertionError('a text line the JSON does not have: ' + l)\n"
	"assert d['messages'] == msgs, (d['messages'], msgs)\n"
	"if tst == 8:\n"
	"    assert d['result'] == 'refused', d['result']\n"
	"    last = err.splitlines()[-1]\n"
	"    assert last == 'bstackfs-fsck: %s: %s' % (image, d['error']), (last, d['error'])\n"
	"    seen.add('error')\n"
	"else:\n"
	"    assert d['result'] == result, (d['result'], result)\n"
	"    assert 'error' not in d\n"
	"if stats is not None:\n"
	"    cf = d['control_file']\n"
	"    seen.add('control_file')\n"
	"    assert [k for k, _ in stats] == list(cf), (stats, list(cf))\n"
	"    for k, v in stats:\n"
	"        j = cf[k]\n"
	"        if isinstance(j, str): assert j == v, (k, j, v)\n"
	"        elif type(j) is int: assert str(j) == v, (k, j, v)\n"
	"        else: assert isinstance(j, float) and abs(j - float(v)) < 1e-9, (k, j, v)\n"
	"if 'repairable' in d:\n"
	"    seen.add('repairable')\n"
	"    says = [m['kind'] for m in msgs if m['kind'] in ('repairable', 'not_repairable')]\n"
	"    if result and result.endswith('(-y repairs them)'):\n"
	"        assert d['repairable'] is True and not says, (d['repairable'], says)\n"
	"    else:\n"
	"        assert says == ['repairable' if d['repairable'] else 'not_repairable'], says\n"
	"else:\n"
	"    assert not [m for m in msgs if m['kind'] in ('repairable', 'not_repairable')]\n"
	"assert set(d) == seen, set(d) ^ seen\n"
	"\n";

static char *to_file(const char *stem, const char *text)
{
	char *p = h_tmp_path(stem);
	CU_ASSERT_FATAL(h_write_file(p, text, strlen(text)) == 0);
	return p;
}

static int py(const char *script, char **args)
{
	char *path = to_file("py", script);
	char *argv[MAXARGS + 1] = { "python3", path };
	int argc = 2;
	for (; args && *args && argc < MAXARGS; args++)
		argv[argc++] = *args;
	argv[argc] = NULL;
	struct run *r = malloc(sizeof *r);
	CU_ASSERT_FATAL(r != NULL);
	run_argv(r, argv);
	if (r->status != 0)
		show(r, "python check");
	int st = r->status;
	free(r);
	unlink(path);
	free(path);
	return st;
}

/*
 * Run fsck with args (NULL-terminated) and img as the text form, put the
 * image's bytes back, and run it again with --json: *text and *js get the
 * runs (js's stdout is the JSON), and the python comparison must pass.
 * The image is left as the --json run left it.
 */
static void text_and_json(const char *img, const char *const *args, struct run *text,
			  struct run *js)
{
	char *argv[MAXARGS + 1], *jargv[MAXARGS + 2];
	int argc = 0;
	struct image_bytes before = grab(img);

	argv[argc++] = (char *)fsck_bin();
	for (; *args && argc < MAXARGS - 1; args++)
		argv[argc++] = (char *)*args;
	argv[argc++] = (char *)img;
	argv[argc] = NULL;
	/* the same with --json first */
	jargv[0] = argv[0];
	jargv[1] = (char *)"--json";
	memcpy(jargv + 2, argv + 1, (size_t)argc * sizeof *argv);
	run_argv(text, argv);
	if (before.present)
		CU_ASSERT_FATAL(h_write_file(img, before.buf, before.len) == 0);
	free(before.buf);
	run_argv(js, jargv);
	char ts[16], jst[16];
	snprintf(ts, sizeof ts, "%d", text->status);
	snprintf(jst, sizeof jst, "%d", js->status);
	char *tf = to_file("text", text->out), *jf = to_file("json", js->out);
	char *ef = to_file("jerr", js->err);
	char *pargs[] = { tf, ts, jf, jst, ef, (char *)img, NULL };
	int st = py(json_vs_text_py, pargs);
	if (st != 0) {
		show(text, "text form");
		show(js, "--json");
	}
	CU_ASSERT_EQUAL(st, 0);
	/* the same one-line refusal (or nothing) on stderr either way */
	CU_ASSERT_STRING_EQUAL(text->err, js->err);
	unlink(tf);
	unlink(jf);
	unlink(ef);
	free(tf);
	free(jf);
	free(ef);
}

/* ---- clean images -------------------------------------------------------- */

static void a_clean_image_exits_0_and_reports_its_allocator_and_counts(void)
{
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		struct image_bytes before = grab(img);
		struct run r;

		run_fsck(&r, img, NULL);
		if (r.status != 0)
			show(&r, kname(k));
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT(r.err[0] == '\0');
		char al[64];
		snprintf(al, sizeof(al), "allocator: %s (", kname(k));
		CU_ASSERT(strstr(r.out, al) != NULL);
		CU_ASSERT(has_line(r.out, "files: 2"));
		CU_ASSERT(has_line(r.out, "directories: 3"));   /* root, d1, d2 */
		CU_ASSERT(has_line(r.out, "live bytes: 5100"));
		CU_ASSERT(strstr(r.out, "\nfree bytes: ") != NULL);
		CU_ASSERT(has_line(r.out, "leaked bytes reclaimed: 0"));
		CU_ASSERT(has_line(r.out, "violations: 0"));
		CU_ASSERT(has_line(r.out, "result: clean"));
		/* a clean image is not written to */
		CU_ASSERT(unchanged(img, &before));
		free(img);
	}
}

static void a_dry_run_on_a_clean_image_exits_0_and_writes_nothing(void)
{
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		struct image_bytes before = grab(img);
		struct run r;

		run_fsck(&r, "-n", img, NULL);
		if (r.status != 0)
			show(&r, kname(k));
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT(has_line(r.out, "would reclaim 0 bytes"));
		CU_ASSERT(has_line(r.out, "files: 2"));
		CU_ASSERT(has_line(r.out, "result: clean"));
		CU_ASSERT(unchanged(img, &before));
		free(img);
	}
}

static void verbose_adds_the_control_file_figures(void)
{
	char *img = clean_image(BS_ALLOC_GHOST);
	struct run r;

	run_fsck(&r, "-v", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(has_line(r.out, "allocator ghost"));
	CU_ASSERT(has_line(r.out, "live_bytes 5100"));
	CU_ASSERT(has_line(r.out, "leaked_bytes_reclaimed 0"));
	run_fsck(&r, img, NULL);
	CU_ASSERT(!has_line(r.out, "live_bytes 5100"));
	free(img);
}

/* ---- leaks --------------------------------------------------------------- */

static void leaked_space_is_reported_by_a_dry_run_and_reclaimed_by_a_repair(void)
{
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		uint64_t n = leak(img, 3000);
		struct image_bytes before = grab(img);
		struct run r;

		CU_ASSERT(n >= 3000);
		run_fsck(&r, "-n", img, NULL);
		if (r.status != 4)
			show(&r, kname(k));
		CU_ASSERT_EQUAL(r.status, 4);
		CU_ASSERT(has_linef(r.out, "would reclaim %llu bytes", (unsigned long long)n));
		CU_ASSERT(has_line(r.out, "result: repairs needed"));
		CU_ASSERT(unchanged(img, &before));

		run_fsck(&r, img, NULL);
		if (r.status != 1)
			show(&r, kname(k));
		CU_ASSERT_EQUAL(r.status, 1);
		CU_ASSERT(has_linef(r.out, "leaked bytes reclaimed: %llu", (unsigned long long)n));
		CU_ASSERT(has_line(r.out, "files: 2"));
		CU_ASSERT(has_line(r.out, "violations: 0"));
		CU_ASSERT(has_line(r.out, "result: errors corrected"));

		run_fsck(&r, img, NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT(has_line(r.out, "leaked bytes reclaimed: 0"));
		run_fsck(&r, "-n", img, NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		free(img);
	}
}

static void a_torn_tail_is_cut_by_open_time_recovery(void)
{
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		struct stat st0, st;
		CU_ASSERT_FATAL(stat(img, &st0) == 0);
		/* bytes past 16 + clen: a push whose header never made it */
		int fd = open(img, O_WRONLY | O_APPEND);
		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_FATAL(write(fd, "torn tail bytes!", 16) == 16);
		close(fd);
		struct image_bytes before = grab(img);
		struct run r;

		run_fsck(&r, "-n", img, NULL);
		CU_ASSERT_EQUAL(r.status, 4);
		CU_ASSERT(has_line(r.out, "would reclaim 0 bytes"));
		CU_ASSERT(has_line(r.out, "open-time repairs: would be written"));
		CU_ASSERT(unchanged(img, &before));

		run_fsck(&r, img, NULL);
		if (r.status != 1)
			show(&r, kname(k));
		CU_ASSERT_EQUAL(r.status, 1);
		CU_ASSERT(has_line(r.out, "open-time repairs: written"));
		CU_ASSERT(has_line(r.out, "result: errors corrected"));
		CU_ASSERT(stat(img, &st) == 0 && st.st_size == st0.st_size);

		run_fsck(&r, img, NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT(has_line(r.out, "open-time repairs: none"));
		free(img);
	}
}

/* The newest live record of inode ino (its allocation). */
static struct cat_rec find_rec(const char *img, uint64_t ino)
{
	struct bstack *bs;
	uint8_t ref[CAT_ROOT_REF_SIZE], s[CAT_SLOT_SIZE];
	struct cat_rec rec, best = { 0 };

	CU_ASSERT_FATAL(bstack_open_path(img, false, &bs) == 0);
	CU_ASSERT_FATAL(bstack_get(bs, 0, ref, sizeof(ref)) == 0);
	struct bs_slice root = cat_root_decode(ref);
	uint64_t n = (root.len - CAT_HDR_SIZE) / CAT_SLOT_SIZE;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = root.off + CAT_HDR_SIZE + i * CAT_SLOT_SIZE;
		CU_ASSERT_FATAL(bstack_get(bs, off, s, sizeof(s)) == 0);
		if (cat_rec_decode(s, &rec) == 0 && rec.ino == ino && rec.seq > best.seq &&
		    rec.kind != CAT_TOMB)
			best = rec;
	}
	bstack_close(bs);
	CU_ASSERT_FATAL(best.seq != 0);
	return best;
}

static void a_check_violation_exits_4_and_is_listed(void)
{
	char *img = h_tmp_path("viol");
	struct vol *v = vopen_path(img, BS_ALLOC_GHOST, true);
	uint64_t a = mk(v, VOL_ROOT_INO, "a", false);
	fill(v, a, 1, 8000);
	fill(v, mk(v, VOL_ROOT_INO, "b", false), 2, 8000);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	struct bs_slice gone = find_rec(img, a).alloc;
	CU_ASSERT_FATAL(gone.len >= 8000);
	v = vopen_path(img, BS_ALLOC_GHOST, false);
	CU_ASSERT_FATAL(vol_unlink(v, VOL_ROOT_INO, "a") == 0);
	CU_ASSERT_FATAL(vol_close(v) == 0);

	/* GhostTree keeps free space zeroed: dirty a byte deep inside a's
	 * freed block, which neither open nor reclaim looks at */
	struct bstack *bs;
	uint8_t x = 0xA5;
	CU_ASSERT_FATAL(bstack_open_path(img, false, &bs) == 0);
	CU_ASSERT_FATAL(bstack_set(bs, gone.off + 4000, &x, 1) == 0);
	bstack_close(bs);

	struct image_bytes before = grab(img);
	struct run r;
	run_fsck(&r, "-n", img, NULL);
	if (r.status != 4)
		show(&r, "violation -n");
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(strstr(r.out, "\nviolation: ") != NULL);
	CU_ASSERT(has_line(r.out, "violations: 1"));
	CU_ASSERT(has_line(r.out, "result: errors left uncorrected"));
	CU_ASSERT(unchanged(img, &before));

	run_fsck(&r, img, NULL);
	if (r.status != 4)
		show(&r, "violation");
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(strstr(r.out, "\nviolation: ") != NULL);
	CU_ASSERT(has_line(r.out, "violations: 1"));
	unlink(img);
	free(img);
}

/* ---- refusals ------------------------------------------------------------ */

/* Both modes refuse with 8, one line naming the image, file unchanged. */
static void expect_refusal(const char *img, const char *why)
{
	static const char *modes[] = { NULL, "-n" };
	for (int m = 0; m < 2; m++) {
		struct image_bytes before = grab(img);
		struct run r;
		if (modes[m])
			run_fsck(&r, modes[m], img, NULL);
		else
			run_fsck(&r, img, NULL);
		bool ok = r.status == 8 && one_refusal(&r, img, why);
		if (!ok)
			show(&r, why);
		CU_ASSERT_EQUAL(r.status, 8);
		CU_ASSERT(one_refusal(&r, img, why));
		CU_ASSERT(r.out[0] == '\0');
		CU_ASSERT(unchanged(img, &before));
	}
}

static void a_missing_image_is_refused_and_not_created(void)
{
	char *img = h_tmp_path("missing");
	expect_refusal(img, "No such file");
	CU_ASSERT(access(img, F_OK) < 0);
	free(img);
}

static void a_file_that_is_not_a_bstack_image_is_refused(void)
{
	char *img = h_tmp_path("text");
	char text[200];
	memset(text, 'x', sizeof(text));
	memcpy(text, "just some text, no image", 24);
	CU_ASSERT_FATAL(h_write_file(img, text, sizeof(text)) == 0);
	expect_refusal(img, "not a bstack image");
	unlink(img);

	/* an empty file, too */
	CU_ASSERT_FATAL(h_write_file(img, "", 0) == 0);
	expect_refusal(img, "not a bstack image");
	unlink(img);
	free(img);
}

/* Flip a byte inside two live records of the catalog: a torn write can
 * explain one, not two. */
static void corrupt_two_records(const char *img)
{
	struct bstack *bs;
	uint8_t ref[CAT_ROOT_REF_SIZE], s[CAT_SLOT_SIZE], x = 0x5A;
	struct cat_rec rec;
	int flipped = 0;

	CU_ASSERT_FATAL(bstack_open_path(img, false, &bs) == 0);
	CU_ASSERT_FATAL(bstack_get(bs, 0, ref, sizeof(ref)) == 0);
	struct bs_slice root = cat_root_decode(ref);
	uint64_t n = (root.len - CAT_HDR_SIZE) / CAT_SLOT_SIZE;
	for (uint64_t i = 0; i < n && flipped < 2; i++) {
		uint64_t off = root.off + CAT_HDR_SIZE + i * CAT_SLOT_SIZE;
		CU_ASSERT_FATAL(bstack_get(bs, off, s, sizeof(s)) == 0);
		if (cat_rec_decode(s, &rec) == 0 && rec.kind == CAT_FILE) {
			CU_ASSERT_FATAL(bstack_set(bs, off + 50, &x, 1) == 0);
			flipped++;
		}
	}
	CU_ASSERT_FATAL(flipped == 2);
	bstack_close(bs);
}

static void an_image_with_a_corrupt_catalog_is_refused(void)
{
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		corrupt_two_records(img);
		expect_refusal(img, "checksum");
		free(img);
	}
}

static void an_image_in_use_is_refused_until_released(void)
{
	char *img = clean_image(BS_ALLOC_FIRSTFIT);
	struct bstack *bs;
	struct run r;

	CU_ASSERT_FATAL(bstack_open_path(img, false, &bs) == 0);
	/* no wait: the refusal alone (the wait is tested below) */
	setenv("BSTACKFS_FSCK_LOCK_WAIT_MS", "0", 1);
	expect_refusal(img, "in use");
	unsetenv("BSTACKFS_FSCK_LOCK_WAIT_MS");
	bstack_close(bs);
	run_fsck(&r, "-n", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	run_fsck(&r, img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	free(img);
}

static void an_image_of_another_program_is_refused(void)
{
	char *img = h_tmp_path("other");
	struct bstack *bs;
	struct bs_alloc *a;
	struct bs_slice s;

	CU_ASSERT_FATAL(bstack_open_path(img, true, &bs) == 0);
	CU_ASSERT_FATAL(bs_alloc_create(bs, BS_ALLOC_GHOST, NULL, &a) == 0);
	CU_ASSERT_FATAL(bs_alloc(a, 1000, &s) == 0);
	bs_alloc_close(a);
	bstack_close(bs);
	expect_refusal(img, "another program");
	unlink(img);
	free(img);
}

/* -n reads the image where it is: an image over 1 GiB (sparse, a crash
 * left its tail past the header's length) is checked, not refused, without
 * copying it into memory, and keeps every byte. */
static void a_dry_run_checks_images_over_1_gib_without_copying_them(void)
{
	char *img = clean_image(BS_ALLOC_GHOST);
	struct run r;

	/* sparse: costs no disk */
	CU_ASSERT_FATAL(truncate(img, (1LL << 30) + 4096) == 0);
	struct stat st;
	CU_ASSERT_FATAL(stat(img, &st) == 0);
	run_fsck(&r, "-n", img, NULL);
	if (r.status != 4)
		show(&r, "big -n");
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(has_line(r.out, "result: repairs needed"));
	CU_ASSERT(has_line(r.out, "files: 2"));
	/* well under the image's size (sanitizer builds need more) */
	CU_ASSERT(r.maxrss_kib > 0 && r.maxrss_kib < 256 * 1024);
	struct stat after;
	CU_ASSERT(stat(img, &after) == 0 && after.st_size == st.st_size &&
		  after.st_mtime == st.st_mtime);
	/* the repair cuts the tail a crash left (the catalog does not use it) */
	run_fsck(&r, img, NULL);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(stat(img, &after) == 0 && after.st_size < 1 << 20);
	run_fsck(&r, "-n", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	unlink(img);
	free(img);
}

/* ---- the command line ---------------------------------------------------- */

static void usage_errors_exit_16(void)
{
	char *img = clean_image(BS_ALLOC_GHOST);
	struct image_bytes before = grab(img);
	struct run r;

	run_fsck(&r, NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	CU_ASSERT(strstr(r.err, "usage:") != NULL);
	run_fsck(&r, img, img, NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	run_fsck(&r, "-x", img, NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	CU_ASSERT(strstr(r.err, "unknown option -x") != NULL);
	run_fsck(&r, "--frobnicate", img, NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	CU_ASSERT(strstr(r.err, "--frobnicate") != NULL);
	CU_ASSERT(r.out[0] == '\0');
	CU_ASSERT(unchanged(img, &before));
	free(img);
}

static void help_and_version_exit_0(void)
{
	struct run r;

	run_fsck(&r, "--help", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(has_line(r.out, "usage: bstackfs-fsck [-n|-p|-a|-y] [-f] [-v] [--json] "
			   "[-W SECONDS] [-C FD] IMAGE"));
	CU_ASSERT(strstr(r.out, "read-only") != NULL);
	CU_ASSERT(strstr(r.out, "    --json ") != NULL);
	CU_ASSERT(strstr(r.out, "    -W SECONDS     wait up to SECONDS (default 10;") != NULL);
	run_fsck(&r, "-h", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(strstr(r.out, "usage:") != NULL);
	run_fsck(&r, "--version", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(has_line(r.out, "bstackfs-fsck version " BSTACKFS_VERSION));
	run_fsck(&r, "-V", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(strstr(r.out, BSTACKFS_VERSION) != NULL);
}

static void options_may_follow_the_image(void)
{
	char *img = clean_image(BS_ALLOC_SLAB);
	uint64_t n = leak(img, 100);
	struct image_bytes before = grab(img);
	struct run r;

	run_fsck(&r, img, "-n", NULL);
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(has_linef(r.out, "would reclaim %llu bytes", (unsigned long long)n));
	CU_ASSERT(unchanged(img, &before));
	run_fsck(&r, img, "-v", NULL);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(has_linef(r.out, "leaked_bytes_reclaimed %llu", (unsigned long long)n));
	free(img);
}

/* ---- e2fsck's command line (issue 13) ------------------------------------ */

/* A cleanly unmounted image of 20 small files checks clean in every mode,
 * run after run, for every allocator: GhostTree's routine open-time
 * rebuild of its tree is maintenance, not a repair. */
static void a_clean_image_checks_clean_in_every_mode_for_every_allocator(void)
{
	FOR_EACH_KIND(k) {
		char *img = h_tmp_path("twenty");
		struct vol *v = vopen_path(img, k, true);
		for (int i = 0; i < 20; i++) {
			char name[16];
			snprintf(name, sizeof name, "f%02d", i);
			fill(v, mk(v, VOL_ROOT_INO, name, false), (uint64_t)i, 100 + 37 * (size_t)i);
		}
		for (int i = 0; i < 20; i += 3) {
			char name[16];
			snprintf(name, sizeof name, "f%02d", i);
			CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, name) == 0);
		}
		CU_ASSERT_FATAL(vol_close(v) == 0);
		static const char *modes[] = { "-n", NULL, "-p", "-a", "-y", "-n", "-f" };
		for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
			struct run r;
			if (modes[m])
				run_fsck(&r, modes[m], img, NULL);
			else
				run_fsck(&r, img, NULL);
			if (r.status != 0)
				show(&r, kname(k));
			CU_ASSERT_EQUAL(r.status, 0);
			CU_ASSERT(has_line(r.out, "result: clean"));
			CU_ASSERT(has_line(r.out, "files: 13"));
		}
		unlink(img);
		free(img);
	}
}

static void only_one_of_n_p_y_and_a_bad_progress_fd_are_usage_errors(void)
{
	char *img = clean_image(BS_ALLOC_FIRSTFIT);
	struct image_bytes before = grab(img);
	struct run r;
	static const char *pairs[][2] = { { "-n", "-y" }, { "-n", "-p" }, { "-p", "-y" },
					  { "-a", "-n" } };
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		run_fsck(&r, pairs[i][0], pairs[i][1], img, NULL);
		CU_ASSERT_EQUAL(r.status, 16);
		CU_ASSERT(strstr(r.err, "only one of") != NULL);
	}
	run_fsck(&r, "-C", "x", img, NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	run_fsck(&r, img, "-C", NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	CU_ASSERT(unchanged(img, &before));
	free(img);
}

/* -C FD: "PASS DONE TOTAL IMAGE" lines on that descriptor (here stderr). */
static void progress_lines_go_to_the_given_descriptor(void)
{
	char *img = clean_image(BS_ALLOC_SLAB);
	char line[600];
	struct run r;
	run_fsck(&r, "-C", "2", "-p", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	snprintf(line, sizeof line, "1 0 1 %s", img);
	CU_ASSERT(has_line(r.err, line));
	snprintf(line, sizeof line, "2 1 1 %s", img);
	CU_ASSERT(has_line(r.err, line));
	CU_ASSERT(strstr(r.out, "1 0 1") == NULL);
	unlink(img);
	free(img);
}

/* A mount that is still exiting holds the lock for a moment: fsck waits
 * (a bounded time) instead of failing with "in use". */
static void fsck_waits_a_moment_for_the_image_lock(void)
{
	char *img = clean_image(BS_ALLOC_GHOST);
	int ready[2];
	CU_ASSERT_FATAL(pipe(ready) == 0);
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		int fd = open(img, O_RDONLY);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		usleep(1000 * 1000);
		_exit(0);   /* the lock goes with the process */
	}
	char c;
	close(ready[1]);
	CU_ASSERT_FATAL(read(ready[0], &c, 1) == 1);
	close(ready[0]);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct run r;
	run_fsck(&r, img, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (r.status != 0)
		show(&r, "lock wait");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s > 0.5);   /* it did wait for the holder */
	/* it said so, once, with the default bound; the report is as ever */
	char line[600];
	snprintf(line, sizeof line, "bstackfs-fsck: %s: image is in use; waiting up to 10 s "
		 "for it to be released\n", img);
	CU_ASSERT_STRING_EQUAL(r.err, line);
	CU_ASSERT(has_line(r.out, "result: clean"));
	int st;
	waitpid(pid, &st, 0);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	unlink(img);
	free(img);
}

/* Hold img's lock from this process (another open file description). */
static int hold_lock(const char *img)
{
	int fd = open(img, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(flock(fd, LOCK_EX | LOCK_NB) == 0);
	return fd;
}

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Timed run of fsck on img with up to two options before it. */
static double timed_fsck(struct run *r, const char *a1, const char *a2, const char *img)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!a1)
		run_fsck(r, img, NULL);
	else if (!a2)
		run_fsck(r, a1, img, NULL);
	else
		run_fsck(r, a1, a2, img, NULL);
	return since(&t0);
}

/* stderr: the waiting line for `bound` ("0.3"), then the refusal. */
static bool waited_then_refused(const struct run *r, const char *img, const char *bound)
{
	char want[1200];
	snprintf(want, sizeof want, "bstackfs-fsck: %s: image is in use; waiting up to %s s for "
		 "it to be released\nbstackfs-fsck: %s: image is in use", img, bound, img);
	bool ok = strncmp(r->err, want, strlen(want)) == 0 &&
		  strchr(r->err + strlen(want), '\n') == r->err + strlen(r->err) - 1;
	if (!ok)
		show(r, "waited then refused");
	return ok;
}

/* The wait is bounded: a lock that stays held ends it with the refusal
 * (exit 8), after the bound and not much later, in every mode, and -W,
 * the environment and --json behave as documented. */
static void a_lock_held_past_the_wait_ends_in_the_refusal(void)
{
	char *img = clean_image(BS_ALLOC_GHOST);
	struct image_bytes before = grab(img);
	int fd = hold_lock(img);
	struct run r;

	static const char *modes[] = { NULL, "-n", "-y" };
	for (int m = 0; m < 3; m++) {
		double s = modes[m] ? timed_fsck(&r, modes[m], "-W0.3", img) :
				      timed_fsck(&r, "-W", "0.3", img);
		CU_ASSERT_EQUAL(r.status, 8);
		CU_ASSERT(waited_then_refused(&r, img, "0.3"));
		CU_ASSERT(r.out[0] == '\0');
		CU_ASSERT(s >= 0.3 && s < 3.0);
	}
	/* -W 0: no wait, the refusal alone */
	double s = timed_fsck(&r, "-W", "0", img);
	CU_ASSERT_EQUAL(r.status, 8);
	CU_ASSERT(one_refusal(&r, img, "image is in use"));
	CU_ASSERT(s < 0.3);
	/* the environment's bound when -W is absent; -W wins over it */
	setenv("BSTACKFS_FSCK_LOCK_WAIT_MS", "400", 1);
	s = timed_fsck(&r, NULL, NULL, img);
	CU_ASSERT_EQUAL(r.status, 8);
	CU_ASSERT(waited_then_refused(&r, img, "0.4"));
	CU_ASSERT(s >= 0.4 && s < 3.0);
	setenv("BSTACKFS_FSCK_LOCK_WAIT_MS", "60000", 1);
	s = timed_fsck(&r, "-W", "0.2", img);
	CU_ASSERT_EQUAL(r.status, 8);
	CU_ASSERT(waited_then_refused(&r, img, "0.2"));
	CU_ASSERT(s >= 0.2 && s < 3.0);
	unsetenv("BSTACKFS_FSCK_LOCK_WAIT_MS");
	/* --json: the same two lines on stderr, the refusal on stdout */
	s = timed_fsck(&r, "--json", "-W0.25", img);
	CU_ASSERT_EQUAL(r.status, 8);
	CU_ASSERT(waited_then_refused(&r, img, "0.25"));
	char *jf = to_file("json", r.out);
	char *pargs[] = { jf, img, NULL };
	CU_ASSERT(py("import json, sys\n"
		     "d = json.load(open(sys.argv[1]))\n"
		     "assert d['image'] == sys.argv[2], d\n"
		     "assert d['result'] == 'refused' and d['exit_code'] == 8, d\n"
		     "assert d['error'] == 'image is in use', d\n"
		     "assert d['messages'] == [] and 'files' not in d, d\n", pargs) == 0);
	unlink(jf);
	free(jf);
	close(fd);
	CU_ASSERT(unchanged(img, &before));
	/* released: checked at once, nothing on stderr */
	s = timed_fsck(&r, "-W", "5", img);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(r.err[0] == '\0');
	CU_ASSERT(s < 3.0);
	unlink(img);
	free(img);
}

static void bad_wait_values_are_usage_errors(void)
{
	char *img = clean_image(BS_ALLOC_SLAB);
	struct image_bytes before = grab(img);
	struct run r;
	static const char *bad[] = { "x", "-1", "1e9", "nan", "inf", "", "2s", "86401" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		run_fsck(&r, "-W", bad[i], img, NULL);
		if (r.status != 16)
			show(&r, bad[i]);
		CU_ASSERT_EQUAL(r.status, 16);
		CU_ASSERT(strstr(r.err, "-W needs a number of seconds (0 to 86400)") != NULL);
		CU_ASSERT(r.out[0] == '\0');
	}
	run_fsck(&r, img, "-W", NULL);
	CU_ASSERT_EQUAL(r.status, 16);
	CU_ASSERT(strstr(r.err, "-W needs a number of seconds") != NULL);
	/* good ones */
	run_fsck(&r, "-W", "86400", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	run_fsck(&r, "-W", "1.5", "-n", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(unchanged(img, &before));
	unlink(img);
	free(img);
}

/* ---- damage (issue 14) ---------------------------------------------------- */

/* Four FirstFit files, one removed; bytes of file i: pattern 60 + i. */
static char *ff_image(void)
{
	char *path = h_tmp_path("ff4");
	struct vol *v = vopen_path(path, BS_ALLOC_FIRSTFIT, true);
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof name, "f%d", i);
		fill(v, mk(v, VOL_ROOT_INO, name, false), 60 + (uint64_t)i, 2000 + 500 * (size_t)i);
	}
	CU_ASSERT_FATAL(vol_unlink(v, VOL_ROOT_INO, "f1") == 0);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	return path;
}

static void ff_files_intact(const char *path)
{
	struct vol *v = vopen_path(path, BS_ALLOC_NONE, false);
	for (int i = 0; i < 4; i++) {
		char name[8];
		struct vol_attr a;
		snprintf(name, sizeof name, "f%d", i);
		int r = vol_lookup(v, VOL_ROOT_INO, name, &a);
		if (i == 1) {
			CU_ASSERT_EQUAL(r, -ENOENT);
			continue;
		}
		CU_ASSERT_FATAL(r == 0);
		size_t n = 2000 + 500 * (size_t)i;
		uint8_t *b = malloc(n);
		CU_ASSERT(a.size == n && vol_read(v, a.ino, b, n, 0) == (ssize_t)n &&
			  h_pattern_ok(b, n, 60 + (uint64_t)i, 0));
		free(b);
	}
	CU_ASSERT(vol_check(v, NULL, NULL) == 0);
	CU_ASSERT(vol_close(v) == 0);
}

static void poke(const char *path, off_t off, const void *b, size_t n)
{
	int fd = open(path, O_WRONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(pwrite(fd, b, n, off) == (ssize_t)n);
	close(fd);
}

/* Issue 14 reproducer 1: a zeroed length field.  -n and the plain check
 * explain and keep every byte; -y restores the length from the file. */
static void a_zeroed_length_is_explained_and_restored_by_y(void)
{
	char *img = ff_image();
	static const uint8_t zero[8];
	poke(img, 8, zero, 8);
	struct image_bytes before = grab(img);
	struct run r;
	run_fsck(&r, "-n", img, NULL);
	if (r.status != 4)
		show(&r, "clen -n");
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(strstr(r.out, "error: the header's length (0 bytes)") != NULL);
	CU_ASSERT(strstr(r.out, "length would be restored") != NULL);
	CU_ASSERT(unchanged(img, &before));
	before = grab(img);
	run_fsck(&r, img, NULL);
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(unchanged(img, &before));
	run_fsck(&r, "-y", img, NULL);
	if (r.status != 1)
		show(&r, "clen -y");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(strstr(r.out, "repair: the header's length restored") != NULL);
	run_fsck(&r, "-n", img, NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	ff_files_intact(img);
	unlink(img);
	free(img);
}

/* Issue 14 reproducer 2: FirstFit's free list head (file offset 48) lost.
 * The check lists the violation and says -y can repair it; -y rebuilds
 * the allocator from the catalog, every file kept. */
static void a_lost_free_list_head_is_listed_and_rebuilt_by_y(void)
{
	char *img = ff_image();
	static const uint8_t zero[8];
	poke(img, 48, zero, 8);
	struct image_bytes before = grab(img);
	struct run r;
	run_fsck(&r, "-n", img, NULL);
	if (r.status != 4)
		show(&r, "head -n");
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(strstr(r.out, "violation: block at ") != NULL);
	CU_ASSERT(strstr(r.out, "free but not on the free list") != NULL);
	CU_ASSERT(strstr(r.out, "\nrepairable: ") != NULL);
	CU_ASSERT(unchanged(img, &before));
	before = grab(img);
	run_fsck(&r, img, NULL);
	CU_ASSERT_EQUAL(r.status, 4);
	CU_ASSERT(has_line(r.out, "result: errors left uncorrected"));
	CU_ASSERT(unchanged(img, &before));
	static const char *fix[] = { "-y", "-p" };
	for (int f = 0; f < 2; f++) {
		if (f)
			poke(img, 48, zero, 8);
		run_fsck(&r, fix[f], img, NULL);
		if (r.status != 1)
			show(&r, fix[f]);
		CU_ASSERT_EQUAL(r.status, 1);
		CU_ASSERT(strstr(r.out, "rebuilt from the catalog") != NULL);
		CU_ASSERT(has_line(r.out, "violations: 0"));
		run_fsck(&r, "-n", img, NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		ff_files_intact(img);
	}
	unlink(img);
	free(img);
}

/* ---- --json (issue 13) ----------------------------------------------------- */

/* A JSON member "key": value as the writer prints it, in js's stdout. */
static bool has_member(const struct run *js, const char *member)
{
	return strstr(js->out, member) != NULL;
}

static void json_report_matches_the_text_on_clean_images(void)
{
	static const char *const modes[][3] = {
		{ NULL }, { "-n", NULL }, { "-v", NULL }, { "-n", "-v", NULL }, { "-y", "-v", NULL },
	};
	FOR_EACH_KIND(k) {
		char *img = clean_image(k);
		struct image_bytes before = grab(img);
		for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
			struct run text, js;
			text_and_json(img, modes[m], &text, &js);
			CU_ASSERT_EQUAL(text.status, 0);
			CU_ASSERT_EQUAL(js.status, 0);
			CU_ASSERT(js.err[0] == '\0');
			CU_ASSERT(js.out[0] == '{');
			CU_ASSERT(has_member(&js, "\n  \"files\": 2,\n"));
			CU_ASSERT(has_member(&js, "\n  \"directories\": 3,\n"));
			CU_ASSERT(has_member(&js, "\n  \"live_bytes\": 5100,\n"));
			CU_ASSERT(has_member(&js, "\n  \"violations\": 0,\n"));
			CU_ASSERT(has_member(&js, "\n  \"result\": \"clean\",\n"));
			CU_ASSERT(has_member(&js, "\n  \"exit_code\": 0\n}\n"));
			bool v = modes[m][0] && (!strcmp(modes[m][0], "-v") ||
						 (modes[m][1] && !strcmp(modes[m][1], "-v")));
			CU_ASSERT(has_member(&js, "\n  \"control_file\": {\n") == v);
			if (v)
				CU_ASSERT(has_member(&js, "\n    \"live_bytes\": 5100,\n"));
		}
		CU_ASSERT(unchanged(img, &before));
		free(img);
	}
	/* the image's name as a JSON string: quotes, backslashes, a tab and
	 * UTF-8 kept exactly (the comparison parses it back) */
	char *tmp = h_tmp_path("odd"), name[700];
	CU_ASSERT_FATAL(mkdir(tmp, 0755) == 0);
	snprintf(name, sizeof name, "%s/a \"q\" \\ b\tc \xc3\xa9.img", tmp);
	char *img = clean_image(BS_ALLOC_SLAB);
	CU_ASSERT_FATAL(rename(img, name) == 0);
	struct run text, js;
	static const char *const none[] = { NULL };
	text_and_json(name, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 0);
	CU_ASSERT(has_member(&js, "a \\\"q\\\" \\\\ b\\u0009c \xc3\xa9.img\",\n"));
	/* a name that is not UTF-8 still gives valid JSON (U+FFFD) */
	char bad[700];
	snprintf(bad, sizeof bad, "%s/x\xff.img", tmp);
	CU_ASSERT_FATAL(rename(name, bad) == 0);
	run_fsck(&js, "--json", bad, NULL);
	CU_ASSERT_EQUAL(js.status, 0);
	char *jf = to_file("json", js.out);
	char *pargs[] = { jf, NULL };
	CU_ASSERT(py("import json, sys\n"
		     "d = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))\n"
		     "assert d['image'].endswith('/x\\ufffd.img'), d['image']\n"
		     "assert d['result'] == 'clean' and d['exit_code'] == 0\n", pargs) == 0);
	unlink(jf);
	free(jf);
	unlink(bad);
	rmdir(tmp);
	free(tmp);
	free(img);
}

/* The same key by key on damaged images, on the repairs, and on what the
 * repairs leave: leaked space, a check violation, a lost free list head
 * (damage -y rebuilds), a zeroed length (refused, -y restores it), and
 * the refusals. */
static void json_report_matches_the_text_on_damaged_and_repaired_images(void)
{
	static const char *const none[] = { NULL }, *const dry[] = { "-n", NULL },
				 *const fix[] = { "-y", NULL }, *const dryv[] = { "-n", "-v", NULL };
	struct run text, js;

	/* leaked space: -n 4, the plain check reclaims it (1), then clean */
	char *img = clean_image(BS_ALLOC_FIRSTFIT);
	uint64_t n = leak(img, 3000);
	char member[128];
	text_and_json(img, dry, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	snprintf(member, sizeof member, "\n  \"would_reclaim_bytes\": %llu,\n",
		 (unsigned long long)n);
	CU_ASSERT(has_member(&js, member));
	CU_ASSERT(has_member(&js, "\n  \"result\": \"repairs needed\",\n"));
	CU_ASSERT(has_member(&js, "\n  \"mode\": \"no-changes\",\n"));
	text_and_json(img, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 1);
	snprintf(member, sizeof member, "\n  \"leaked_bytes_reclaimed\": %llu,\n",
		 (unsigned long long)n);
	CU_ASSERT(has_member(&js, member));
	CU_ASSERT(has_member(&js, "\n  \"result\": \"errors corrected\",\n"));
	text_and_json(img, none, &text, &js);   /* repaired: clean */
	CU_ASSERT_EQUAL(js.status, 0);
	CU_ASSERT(has_member(&js, "\n  \"leaked_bytes_reclaimed\": 0,\n"));
	unlink(img);
	free(img);

	/* a check violation: every message in the array, exit 4 */
	img = h_tmp_path("viol");
	struct vol *v = vopen_path(img, BS_ALLOC_GHOST, true);
	uint64_t a = mk(v, VOL_ROOT_INO, "a", false);
	fill(v, a, 1, 8000);
	fill(v, mk(v, VOL_ROOT_INO, "b", false), 2, 8000);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	struct bs_slice gone = find_rec(img, a).alloc;
	v = vopen_path(img, BS_ALLOC_GHOST, false);
	CU_ASSERT_FATAL(vol_unlink(v, VOL_ROOT_INO, "a") == 0);
	CU_ASSERT_FATAL(vol_close(v) == 0);
	struct bstack *bs;
	uint8_t x = 0xA5;
	CU_ASSERT_FATAL(bstack_open_path(img, false, &bs) == 0);
	CU_ASSERT_FATAL(bstack_set(bs, gone.off + 4000, &x, 1) == 0);
	bstack_close(bs);
	text_and_json(img, dryv, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	CU_ASSERT(has_member(&js, "\n      \"kind\": \"violation\",\n"));
	CU_ASSERT(has_member(&js, "\n  \"violations\": 1,\n"));
	CU_ASSERT(has_member(&js, "\n  \"result\": \"errors left uncorrected\",\n"));
	text_and_json(img, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	unlink(img);
	free(img);

	/* damage -y repairs: damaged, repairable; -y rebuilds; then clean */
	img = ff_image();
	static const uint8_t zero[8];
	poke(img, 48, zero, 8);
	text_and_json(img, dry, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	CU_ASSERT(has_member(&js, "\n      \"kind\": \"damaged\",\n"));
	CU_ASSERT(has_member(&js, "\n  \"repairable\": true,\n"));
	text_and_json(img, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	text_and_json(img, fix, &text, &js);
	CU_ASSERT_EQUAL(js.status, 1);
	CU_ASSERT(has_member(&js, "\n  \"mode\": \"repair\",\n"));
	CU_ASSERT(has_member(&js, "rebuilt from the catalog\"\n"));
	CU_ASSERT(has_member(&js, "\n  \"violations\": 0,\n"));
	text_and_json(img, dryv, &text, &js);
	CU_ASSERT_EQUAL(js.status, 0);
	ff_files_intact(img);

	/* a zeroed length: refused, -y restores it */
	poke(img, 8, zero, 8);
	text_and_json(img, dry, &text, &js);
	CU_ASSERT_EQUAL(js.status, 4);
	CU_ASSERT(has_member(&js, "\n      \"kind\": \"error\",\n"));
	CU_ASSERT(has_member(&js, "\n  \"result\": \"errors left uncorrected (-y repairs them)\",\n"));
	text_and_json(img, fix, &text, &js);
	CU_ASSERT_EQUAL(js.status, 1);
	text_and_json(img, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 0);
	ff_files_intact(img);

	/* refusals: the reason as "error", exit 8 */
	corrupt_two_records(img);
	text_and_json(img, none, &text, &js);
	CU_ASSERT_EQUAL(js.status, 8);
	CU_ASSERT(has_member(&js, "\n  \"result\": \"refused\",\n"));
	CU_ASSERT(has_member(&js, "\n  \"exit_code\": 8\n"));
	unlink(img);
	text_and_json(img, dry, &text, &js);   /* now missing */
	CU_ASSERT_EQUAL(js.status, 8);
	CU_ASSERT(has_member(&js, "No such file"));
	CU_ASSERT(access(img, F_OK) < 0);
	free(img);
}

static const struct h_test tests[] = {
	H_TEST(a_clean_image_exits_0_and_reports_its_allocator_and_counts),
	H_TEST(a_dry_run_on_a_clean_image_exits_0_and_writes_nothing),
	H_TEST(verbose_adds_the_control_file_figures),
	H_TEST(leaked_space_is_reported_by_a_dry_run_and_reclaimed_by_a_repair),
	H_TEST(a_torn_tail_is_cut_by_open_time_recovery),
	H_TEST(a_check_violation_exits_4_and_is_listed),
	H_TEST(a_missing_image_is_refused_and_not_created),
	H_TEST(a_file_that_is_not_a_bstack_image_is_refused),
	H_TEST(an_image_with_a_corrupt_catalog_is_refused),
	H_TEST(an_image_in_use_is_refused_until_released),
	H_TEST(an_image_of_another_program_is_refused),
	H_TEST(a_dry_run_checks_images_over_1_gib_without_copying_them),
	H_TEST(usage_errors_exit_16),
	H_TEST(help_and_version_exit_0),
	H_TEST(options_may_follow_the_image),
	H_TEST(a_clean_image_checks_clean_in_every_mode_for_every_allocator),
	H_TEST(only_one_of_n_p_y_and_a_bad_progress_fd_are_usage_errors),
	H_TEST(progress_lines_go_to_the_given_descriptor),
	H_TEST(fsck_waits_a_moment_for_the_image_lock),
	H_TEST(a_lock_held_past_the_wait_ends_in_the_refusal),
	H_TEST(bad_wait_values_are_usage_errors),
	H_TEST(a_zeroed_length_is_explained_and_restored_by_y),
	H_TEST(a_lost_free_list_head_is_listed_and_rebuilt_by_y),
	H_TEST(json_report_matches_the_text_on_clean_images),
	H_TEST(json_report_matches_the_text_on_damaged_and_repaired_images),
};

H_MAIN("fsck", tests)
