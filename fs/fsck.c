/*
 * fsck.c — `bstackfs-fsck [-n|-p|-a|-y] [-f] [-v] [--json] [-W SECONDS]
 * [-C FD] IMAGE` (also installed as fsck.bstackfs), the offline checker
 * (docs/design.md §2, §3).  A front end only, like main.c: every check and
 * repair is the volume's own (core/volume.c), so fsck finds exactly what a
 * mount finds, and the mount's refusal and fsck's summary agree on every
 * image.
 *
 * Modes (e2fsck's letters):
 *   (none)  check, and repair what a mount would (the open-time recovery of
 *           a crash, leaked space, catalog repair), but not damage: an image
 *           whose allocator fails its check is opened for the report only
 *           and left as it is (exit 4).
 *   -p, -a  also repair damage the catalog proves how to repair, without
 *   -y      questions: a header length shorter than the catalog's
 *           allocations is restored from the file, allocator metadata that
 *           fails its check is rebuilt from the catalog (bs_alloc_ops
 *           rebuild).  (fsck never asks, so -p and -y do the same.)
 *   -n      no changes: the image is opened read-only (O_RDONLY) on a
 *           staging device (io_stage.c), which keeps whatever the open would
 *           write in memory — only the writes, never a copy of the image, so
 *           any size works — and the report says what a repair would do.
 *   -f      accepted for fstab/fsck(8): every run is a full check.
 *   -C FD   progress lines "PASS DONE TOTAL IMAGE" on descriptor FD.
 *   --json  the report as one JSON object on stdout instead of the text:
 *           the same figures and messages, in the same order, plus the
 *           exit status (core/stats_json.c writes it).
 *   -W SECONDS  how long to wait for the image lock (below).
 *
 * The report: every line of the text form goes through one of the
 * report_* functions below, which print it (text) or keep it (--json, for
 * the object printed at the end), so the two forms cannot disagree.
 *
 * The image lock: a mount that is still exiting holds it for a moment after
 * umount returns (for a plain FUSE mount the kernel does not wait for the
 * daemon, see fs/main.c), so an open that finds the image in use says so
 * on stderr once and is retried for up to FSCK_LOCK_WAIT_MS (-W SECONDS,
 * or the environment's BSTACKFS_FSCK_LOCK_WAIT_MS, overrides) before the
 * refusal "image is in use" (exit 8).
 *
 * Routine open-time maintenance (GhostTree's seed rebuilds its tree at every
 * open) is not a repair: it is written (or, with -n, would be) but does not
 * count as "errors corrected".
 *
 * Exit status (e2fsck's, OR-ed together where several apply):
 *   0 clean; 1 errors corrected; 4 errors left uncorrected (check
 *   violations, or -n found something to repair); 8 operational error (one
 *   line on stderr: "bstackfs-fsck: IMAGE: reason"); 16 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "stats_json.h"
#include "volume.h"

#define FSCK_OK           0
#define FSCK_CORRECTED    1
#define FSCK_UNCORRECTED  4
#define FSCK_ERROR        8
#define FSCK_USAGE        16

#define FSCK_LOCK_WAIT_MS 10000     /* the default bound of the wait */
#define FSCK_LOCK_WAIT_MAX_S 86400  /* -W's largest value */
#define FSCK_LOCK_STEP_MS 100

#define PROG "bstackfs-fsck"

struct fsck_opts {
	bool dry;                 /* -n */
	bool repair;              /* -p, -a, -y */
	bool verbose;             /* -v */
	bool json;                /* --json */
	long lock_wait_ms;        /* -W, -1 = not given */
	int progress_fd;          /* -C FD, -1 = none */
	const char *image;
};

/* What one run found, for the report and the exit status. */
struct fsck_result {
	struct vol_open_report rep;
	bool damaged;             /* opened for the report only */
	int violations;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-n|-p|-a|-y] [-f] [-v] [--json] [-W SECONDS] [-C FD] IMAGE\n",
		PROG);
}

static void help(void)
{
	usage(stdout);
	printf("\n"
	       "Checks the bstackfs image IMAGE (which must not be mounted) and repairs\n"
	       "what a mount would: the open-time recovery after a crash and the reclaim\n"
	       "of leaked space (allocations no file names).\n"
	       "\n"
	       "    -n             no changes: open the image read-only and report what a\n"
	       "                   repair would do (any size; nothing is copied)\n"
	       "    -p, -a, -y     also repair damage the catalog proves how to repair:\n"
	       "                   restore a header length shorter than the files, rebuild\n"
	       "                   damaged allocator metadata from the catalog\n"
	       "    -f             accepted (every run is a full check)\n"
	       "    -C FD          progress lines \"PASS DONE TOTAL IMAGE\" on descriptor FD\n"
	       "    -v             also print the control-file figures (.bstackfs)\n"
	       "    --json         the report as one JSON object on stdout: the same figures\n"
	       "                   and messages, the result and the exit status\n"
	       "    -W SECONDS     wait up to SECONDS (default %d; 0: not at all) for an\n"
	       "                   image in use, e.g. by a mount still exiting after umount,\n"
	       "                   before refusing it (environment: BSTACKFS_FSCK_LOCK_WAIT_MS)\n"
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n"
	       "\n"
	       "Exit status (added up when several apply):\n"
	       "    0   no errors\n"
	       "    1   errors corrected (recovery, reclaim or repair written)\n"
	       "    4   errors left uncorrected (check violations; with -n, repairs needed)\n"
	       "    8   operational error: the image was refused (one line on stderr)\n"
	       "    16  usage error\n", FSCK_LOCK_WAIT_MS / 1000);
}

/* ---- the report -------------------------------------------------------- */

/* The kinds of message lines, as the text form prints them ("KIND: ...")
 * and as --json names them. */
enum msg_kind {
	M_NOTE, M_RECOVERY, M_REPAIR, M_MAINTENANCE, M_DAMAGED, M_VIOLATION, M_ERROR,
	M_REPAIRABLE, M_NOT_REPAIRABLE, M_KINDS
};

static const struct {
	const char *text, *json;
} msg_names[M_KINDS] = {
	[M_NOTE] = { "note", "note" },
	[M_RECOVERY] = { "recovery", "recovery" },
	[M_REPAIR] = { "repair", "repair" },
	[M_MAINTENANCE] = { "maintenance", "maintenance" },
	[M_DAMAGED] = { "damaged", "damaged" },
	[M_VIOLATION] = { "violation", "violation" },
	[M_ERROR] = { "error", "error" },
	[M_REPAIRABLE] = { "repairable", "repairable" },
	[M_NOT_REPAIRABLE] = { "not repairable by -y", "not_repairable" },
};

struct msg {
	enum msg_kind kind;
	char *text;
};

/* The report as --json prints it at the end; the text form prints each
 * piece at once and keeps nothing. */
static struct report {
	bool json;
	bool oom;                 /* a message was lost: the JSON is not written */
	struct msg *msgs;
	size_t n_msgs, cap_msgs;
	bool have_sum;
	struct vol_summary sum;
	bool have_open;
	uint64_t reclaimed;       /* reclaimed, or with -n would be */
	const char *open_repairs; /* "none", "written", "would be written" */
	bool have_violations;
	int violations;
	int repairable;           /* -1: not asked; else whether -y repairs it */
	char *stats;              /* -v: the control-file text */
	size_t stats_len;
	const char *result;
	char error[512];          /* a refusal's reason */
} R = { .repairable = -1 };

static void report_msg(enum msg_kind k, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report_msg(enum msg_kind k, const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		R.oom = true;
		return;
	}
	if (!R.json) {
		printf("%s: %s\n", msg_names[k].text, s);
		free(s);
		return;
	}
	if (R.n_msgs == R.cap_msgs) {
		size_t cap = R.cap_msgs ? 2 * R.cap_msgs : 16;
		struct msg *m = realloc(R.msgs, cap * sizeof *m);
		if (!m) {
			R.oom = true;
			free(s);
			return;
		}
		R.msgs = m;
		R.cap_msgs = cap;
	}
	R.msgs[R.n_msgs++] = (struct msg){ k, s };
}

static void report_image(const struct fsck_opts *o)
{
	if (!R.json)
		printf("image: %s%s\n", o->image, o->dry ? " (no changes)" : "");
}

static void report_figures(const struct vol_summary *s)
{
	R.have_sum = true;
	R.sum = *s;
	if (R.json)
		return;
	printf("allocator: %s (%s)\n", s->allocator, s->magic);
	printf("files: %" PRIu64 "\n", s->files);
	printf("directories: %" PRIu64 "\n", s->directories);
	printf("live bytes: %" PRIu64 "\n", s->live_bytes);
	printf("free bytes: %" PRIu64 "\n", s->free_bytes);
}

static void report_open(const struct fsck_opts *o, uint64_t reclaimed, bool repaired)
{
	R.have_open = true;
	R.reclaimed = reclaimed;
	R.open_repairs = !repaired ? "none" : o->dry ? "would be written" : "written";
	if (R.json)
		return;
	if (o->dry)
		printf("would reclaim %" PRIu64 " bytes\n", reclaimed);
	else
		printf("leaked bytes reclaimed: %" PRIu64 "\n", reclaimed);
	printf("open-time repairs: %s\n", R.open_repairs);
}

static void report_violations(int n)
{
	R.have_violations = true;
	R.violations = n;
	if (!R.json)
		printf("violations: %d\n", n);
}

/* -v: the control-file figures; takes the text. */
static void report_stats(char *text, size_t len)
{
	if (!R.json) {
		printf("--- %s\n%.*s", VOL_CONTROL_NAME, (int)len, text);
		free(text);
		return;
	}
	R.stats = text;
	R.stats_len = len;
}

static void report_result(const char *result)
{
	R.result = result;
	if (!R.json)
		printf("result: %s\n", result);
}

/* The one-line refusal; returns FSCK_ERROR. */
static int refuse(const char *image, const char *why)
{
	fflush(stdout);
	fprintf(stderr, "%s: %s: %s\n", PROG, image, why);
	snprintf(R.error, sizeof R.error, "%s", why);
	R.result = "refused";
	return FSCK_ERROR;
}

/* --json: the object, on stdout.  Returns st, or FSCK_ERROR when it
 * cannot be written. */
static int print_json(const struct fsck_opts *o, int st)
{
	struct bs_json j;
	bs_json_init(&j);
	bs_json_begin_object(&j, NULL);
	bs_json_string(&j, "program", PROG);
	bs_json_string(&j, "version", BSTACKFS_VERSION);
	bs_json_string(&j, "image", o->image);
	bs_json_string(&j, "mode", o->dry ? "no-changes" : o->repair ? "repair" : "check");
	if (R.have_sum) {
		bs_json_string(&j, "allocator", R.sum.allocator);
		bs_json_string(&j, "magic", R.sum.magic);
		bs_json_u64(&j, "files", R.sum.files);
		bs_json_u64(&j, "directories", R.sum.directories);
		bs_json_u64(&j, "live_bytes", R.sum.live_bytes);
		bs_json_u64(&j, "free_bytes", R.sum.free_bytes);
	}
	if (R.have_open) {
		bs_json_u64(&j, o->dry ? "would_reclaim_bytes" : "leaked_bytes_reclaimed",
			    R.reclaimed);
		bs_json_string(&j, "open_time_repairs", R.open_repairs);
	}
	bs_json_begin_array(&j, "messages");
	for (size_t i = 0; i < R.n_msgs; i++) {
		bs_json_begin_object(&j, NULL);
		bs_json_string(&j, "kind", msg_names[R.msgs[i].kind].json);
		bs_json_string(&j, "text", R.msgs[i].text);
		bs_json_end_object(&j);
	}
	bs_json_end_array(&j);
	if (R.have_violations)
		bs_json_i64(&j, "violations", R.violations);
	if (R.repairable >= 0)
		bs_json_bool(&j, "repairable", R.repairable);
	if (R.stats) {
		bs_json_begin_object(&j, "control_file");
		bs_json_stats_members(&j, R.stats, R.stats_len);
		bs_json_end_object(&j);
	}
	if (R.error[0])
		bs_json_string(&j, "error", R.error);
	bs_json_string(&j, "result", R.result ? R.result : "refused");
	bs_json_i64(&j, "exit_code", st);
	bs_json_end_object(&j);
	char *out = NULL;
	size_t len = 0;
	int r = R.oom ? -ENOMEM : 0;
	if (r)
		bs_json_free(&j);
	else
		r = bs_json_finish(&j, &out, &len);
	if (r < 0) {
		fprintf(stderr, "%s: %s: cannot write the JSON report: %s\n", PROG, o->image,
			strerror(-r));
		return FSCK_ERROR;
	}
	fwrite(out, 1, len, stdout);
	free(out);
	return st;
}

static void report_free(void)
{
	for (size_t i = 0; i < R.n_msgs; i++)
		free(R.msgs[i].text);
	free(R.msgs);
	free(R.stats);
}

/* ---- the command line --------------------------------------------------- */

static void progress(const struct fsck_opts *o, int pass, int done, int total)
{
	if (o->progress_fd >= 0)
		dprintf(o->progress_fd, "%d %d %d %s\n", pass, done, total, o->image);
}

static int parse_args(int argc, char **argv, struct fsck_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c, modes = 0;
	char *end;

	memset(o, 0, sizeof(*o));
	o->progress_fd = -1;
	o->lock_wait_ms = -1;
	opterr = 0;   /* our own message, in our own format */
	while ((c = getopt_long(argc, argv, "npayfvC:W:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o->dry = true;
			modes |= 1;
			break;
		case 'p':
		case 'a':
			o->repair = true;
			modes |= 2;
			break;
		case 'y':
			o->repair = true;
			modes |= 4;
			break;
		case 'f':
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'C':
			errno = 0;
			long fd = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || fd < 0 || fd > 65535) {
				fprintf(stderr, "%s: -C needs a file descriptor number\n", PROG);
				usage(stderr);
				return FSCK_USAGE;
			}
			o->progress_fd = (int)fd;
			break;
		case 'W':
			errno = 0;
			double s = strtod(optarg, &end);
			if (errno || *end || end == optarg || !isfinite(s) || s < 0 ||
			    s > FSCK_LOCK_WAIT_MAX_S) {
				fprintf(stderr, "%s: -W needs a number of seconds (0 to %d)\n",
					PROG, FSCK_LOCK_WAIT_MAX_S);
				usage(stderr);
				return FSCK_USAGE;
			}
			o->lock_wait_ms = (long)(s * 1000 + 0.5);
			break;
		case 'h':
			help();
			return FSCK_OK;
		case 'V':
			printf("%s version %s\n", PROG, BSTACKFS_VERSION);
			return FSCK_OK;
		default:
			if (optopt == 'C')
				fprintf(stderr, "%s: -C needs a file descriptor number\n", PROG);
			else if (optopt == 'W')
				fprintf(stderr, "%s: -W needs a number of seconds (0 to %d)\n",
					PROG, FSCK_LOCK_WAIT_MAX_S);
			else if (optopt)
				fprintf(stderr, "%s: unknown option -%c\n", PROG, optopt);
			else
				fprintf(stderr, "%s: unknown option %s\n", PROG,
					argv[optind - 1]);
			usage(stderr);
			return FSCK_USAGE;
		}
	}
	if (modes & (modes - 1)) {
		fprintf(stderr, "%s: only one of the options -p/-a, -n or -y may be given\n",
			PROG);
		usage(stderr);
		return FSCK_USAGE;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: %s\n", PROG, argc - optind ? "exactly one IMAGE, please" :
			"missing IMAGE");
		usage(stderr);
		return FSCK_USAGE;
	}
	o->image = argv[optind];
	return -1;   /* go on */
}

/* ---- the check ----------------------------------------------------------- */

static void report_violation(void *ctx, const char *msg)
{
	(void)ctx;
	report_msg(M_VIOLATION, "%s", msg);
}

/* Repairs of a crash or of damage (not routine maintenance). */
static bool repaired(const struct vol_open_report *p)
{
	return p->len_recovered || p->len_restored || p->alloc_recovered ||
	       p->alloc_rebuilt || p->catalog_repaired || p->files_trimmed;
}

static void report_open_findings(const struct fsck_opts *o, const struct fsck_result *res)
{
	const struct vol_open_report *p = &res->rep;
	const char *did = o->dry ? "would be" : "";
	if (p->fallback[0])
		report_msg(M_NOTE, "%s", p->fallback);
	if (p->len_restored)
		report_msg(M_REPAIR, "the header's length %srestored from the file (the "
			   "catalog references bytes past it)", o->dry ? "would be " : "");
	else if (p->len_recovered)
		report_msg(M_RECOVERY, "the header's length and the file size disagreed (a "
			   "crash); %sresolved as a mount does", o->dry ? "would be " : "");
	if (p->alloc_recovered)
		report_msg(M_RECOVERY, "the allocator's crash recovery %sran",
			   o->dry ? "would have " : "");
	if (p->alloc_rebuilt)
		report_msg(M_REPAIR, "allocator metadata (%d violation%s) %s rebuilt from the "
			   "catalog", p->alloc_violations, p->alloc_violations == 1 ? "" : "s",
			   o->dry ? "would be" : "was");
	if (p->catalog_repaired)
		report_msg(M_REPAIR, "catalog %s", o->dry ? "would be repaired" : "repaired");
	if (p->files_trimmed)
		report_msg(M_REPAIR, "%" PRIu64 " file(s) %strimmed to their size",
			   p->files_trimmed, o->dry ? "would be " : "");
	if (p->alloc_maintenance_writes)
		report_msg(M_MAINTENANCE, "%" PRIu64 " routine open-time write(s) of the "
			   "allocator%s%s (not a repair)", p->alloc_maintenance_writes,
			   *did ? " " : "", did);
	if (res->damaged)
		report_msg(M_DAMAGED, "the allocator fails its check; nothing was changed");
}

/* Figures, the check's violations, the verdict; fills res->violations.
 * Returns 0 or a negative errno (after a refusal line). */
static int check_and_report(struct vol *v, const struct fsck_opts *o,
			    struct fsck_result *res)
{
	struct vol_summary sum;
	char *text = NULL;
	size_t len = 0;
	int r = vol_summary(v, &sum);

	if (!r && o->verbose)
		r = vol_stats_text(v, &text, &len);
	if (r < 0) {
		refuse(o->image, strerror(-r));
		return r;
	}
	report_image(o);
	report_figures(&sum);
	report_open(o, res->rep.leaked_bytes_reclaimed, repaired(&res->rep));
	report_open_findings(o, res);
	fflush(stdout);
	progress(o, 2, 0, 1);
	r = vol_check(v, report_violation, NULL);
	if (r < 0) {
		free(text);
		refuse(o->image, "the check failed to read the image");
		return r;
	}
	progress(o, 2, 1, 1);
	res->violations = r;
	report_violations(r);
	if (o->verbose)
		report_stats(text, len);
	return 0;
}

static int verdict(const struct fsck_opts *o, const struct fsck_result *res)
{
	bool repair = res->rep.leaked_bytes_reclaimed || repaired(&res->rep);
	int st = FSCK_OK;

	if (res->violations)
		st |= FSCK_UNCORRECTED;
	if (repair)
		st |= o->dry ? FSCK_UNCORRECTED : FSCK_CORRECTED;
	report_result(st == FSCK_OK ? "clean" :
		      st & FSCK_UNCORRECTED ? (o->dry && !res->violations ? "repairs needed" :
					       "errors left uncorrected") :
		      "errors corrected");
	return st;
}

/* ---- the run ------------------------------------------------------------ */

/* -W, else the environment's BSTACKFS_FSCK_LOCK_WAIT_MS, else the default. */
static long lock_wait_ms(const struct fsck_opts *o)
{
	if (o->lock_wait_ms >= 0)
		return o->lock_wait_ms;
	const char *e = getenv("BSTACKFS_FSCK_LOCK_WAIT_MS");
	char *end;
	long ms = e ? strtol(e, &end, 10) : FSCK_LOCK_WAIT_MS;
	return e && (*end || end == e || ms < 0) ? FSCK_LOCK_WAIT_MS : ms;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* vol_open, retried while the image is in use, for a bounded time: one
 * line on stderr says it waits, and the last refusal stands when the
 * holder does not let go in time. */
static int open_waiting(const struct fsck_opts *o, const struct vol_opts *vo,
			struct vol **v, struct vol_error *err)
{
	long limit = lock_wait_ms(o);
	struct timespec t0;
	bool said = false;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		memset(err, 0, sizeof *err);
		int r = vol_open(o->image, vo, v, err);
		long waited = ms_since(&t0);
		if (r != BSTACK_E_INUSE || waited >= limit)
			return r;
		if (!said) {
			fprintf(stderr, "%s: %s: image is in use; waiting up to %g s for it to "
				"be released\n", PROG, o->image, (double)limit / 1000);
			said = true;
		}
		long step = limit - waited < FSCK_LOCK_STEP_MS ? limit - waited :
			    FSCK_LOCK_STEP_MS;
		struct timespec ts = { step / 1000, (step % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/* Without -y, would the repair fix what this open refused or found
 * damaged?  A second open that repairs on a staging device and writes
 * nothing tells; *why gets its refusal otherwise. */
static bool repairable(const struct fsck_opts *o, struct vol_open_report *rep,
		       char *why, size_t whylen)
{
	struct vol_opts vo = {
		.allocator = BS_ALLOC_NONE, .repair = true, .no_write = true,
		.rdonly_file = true, .journal = true,
	};
	struct vol_error err = { "" };
	struct vol *v;
	if (vol_open(o->image, &vo, &v, &err) < 0) {
		snprintf(why, whylen, "%s", err.msg);
		return false;
	}
	vol_open_report(v, rep);
	int n = vol_check(v, NULL, NULL);
	vol_close(v);
	if (n != 0)
		snprintf(why, whylen, "the repaired image would still fail its check");
	return n == 0;
}

/* The open refused the image for damage -y can repair: report, exit 4. */
static int refused_but_repairable(const struct fsck_opts *o, const struct vol_error *err,
				  const struct vol_open_report *rep)
{
	struct fsck_opts dry = *o;
	struct fsck_result res = { .rep = *rep };
	dry.dry = true;
	report_image(o);
	report_msg(M_ERROR, "%s", err->msg);
	report_open_findings(&dry, &res);
	R.repairable = 1;
	report_result("errors left uncorrected (-y repairs them)");
	return FSCK_UNCORRECTED;
}

static int run(const struct fsck_opts *o)
{
	struct vol_opts vo = {
		.allocator = BS_ALLOC_NONE,
		.create = false,
		.repair = o->repair,
		.no_write = o->dry,
		.rdonly_file = o->dry,
		.allow_damaged = !o->repair,
		/* an image a crash left with a live journal is replayed first
		 * (in memory only with -n), as a mount would */
		.journal = true,
	};
	struct fsck_result res = { 0 };
	struct vol_error err = { "" };
	struct vol_open_report probe;
	char why[256];
	struct vol *v;

	progress(o, 1, 0, 1);
	int r = open_waiting(o, &vo, &v, &err);
	if (r == -EUCLEAN && !o->repair && repairable(o, &probe, why, sizeof why))
		return refused_but_repairable(o, &err, &probe);
	if (r < 0)
		return refuse(o->image, err.msg[0] ? err.msg : strerror(-r));
	progress(o, 1, 1, 1);
	vol_open_report(v, &res.rep);
	res.damaged = vol_damaged(v);
	r = check_and_report(v, o, &res);
	int cr = vol_close(v);
	if (r < 0)
		return FSCK_ERROR;
	if (cr < 0)
		return refuse(o->image, "closing the image failed");
	if (res.damaged) {
		R.repairable = repairable(o, &probe, why, sizeof why);
		if (R.repairable)
			report_msg(M_REPAIRABLE, "-y rebuilds the allocator's metadata from the "
				   "catalog, keeping every file");
		else
			report_msg(M_NOT_REPAIRABLE, "%s", why);
	}
	return verdict(o, &res);
}

int main(int argc, char **argv)
{
	struct fsck_opts o;
	int st = parse_args(argc, argv, &o);

	if (st >= 0)
		return st;
	R.json = o.json;
	st = run(&o);
	if (o.json)
		st = print_json(&o, st);
	report_free();
	return st;
}
