/*
 * fsck.c — `bstackfs-fsck [-n|-p|-a|-y] [-f] [-v] [-C FD] IMAGE` (also
 * installed as fsck.bstackfs), the offline checker (docs/design.md §2, §3).
 * A front end only, like main.c: every check and repair is the volume's own
 * (core/volume.c), so fsck finds exactly what a mount finds, and the
 * mount's refusal and fsck's summary agree on every image.
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
 *
 * The image lock: a mount that is still exiting holds it for a moment after
 * umount returns, so the open is retried for up to FSCK_LOCK_WAIT_MS
 * (environment BSTACKFS_FSCK_LOCK_WAIT_MS overrides) before "in use".
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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "volume.h"

#define FSCK_OK           0
#define FSCK_CORRECTED    1
#define FSCK_UNCORRECTED  4
#define FSCK_ERROR        8
#define FSCK_USAGE        16

#define FSCK_LOCK_WAIT_MS 5000
#define FSCK_LOCK_STEP_MS 100

#define PROG "bstackfs-fsck"

struct fsck_opts {
	bool dry;                 /* -n */
	bool repair;              /* -p, -a, -y */
	bool verbose;             /* -v */
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
	fprintf(f, "usage: %s [-n|-p|-a|-y] [-f] [-v] [-C FD] IMAGE\n", PROG);
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
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n"
	       "\n"
	       "Exit status (added up when several apply):\n"
	       "    0   no errors\n"
	       "    1   errors corrected (recovery, reclaim or repair written)\n"
	       "    4   errors left uncorrected (check violations; with -n, repairs needed)\n"
	       "    8   operational error: the image was refused (one line on stderr)\n"
	       "    16  usage error\n");
}

/* The one-line refusal; returns FSCK_ERROR. */
static int refuse(const char *image, const char *why)
{
	fflush(stdout);
	fprintf(stderr, "%s: %s: %s\n", PROG, image, why);
	return FSCK_ERROR;
}

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
		{ NULL, 0, NULL, 0 },
	};
	int c, modes = 0;
	char *end;

	memset(o, 0, sizeof(*o));
	o->progress_fd = -1;
	opterr = 0;   /* our own message, in our own format */
	while ((c = getopt_long(argc, argv, "npayfvC:hV", longopts, NULL)) != -1) {
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
		case 'h':
			help();
			return FSCK_OK;
		case 'V':
			printf("%s version %s\n", PROG, BSTACKFS_VERSION);
			return FSCK_OK;
		default:
			if (optopt == 'C')
				fprintf(stderr, "%s: -C needs a file descriptor number\n", PROG);
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

/* ---- the report -------------------------------------------------------- */

static void report_violation(void *ctx, const char *msg)
{
	(void)ctx;
	printf("violation: %s\n", msg);
}

static void print_figures(const struct vol_summary *s)
{
	printf("allocator: %s (%s)\n", s->allocator, s->magic);
	printf("files: %" PRIu64 "\n", s->files);
	printf("directories: %" PRIu64 "\n", s->directories);
	printf("live bytes: %" PRIu64 "\n", s->live_bytes);
	printf("free bytes: %" PRIu64 "\n", s->free_bytes);
}

/* Repairs of a crash or of damage (not routine maintenance). */
static bool repaired(const struct vol_open_report *p)
{
	return p->len_recovered || p->len_restored || p->alloc_recovered ||
	       p->alloc_rebuilt || p->catalog_repaired || p->files_trimmed;
}

static void print_open_report(const struct fsck_opts *o, const struct fsck_result *res)
{
	const struct vol_open_report *p = &res->rep;
	const char *did = o->dry ? "would be" : "";
	if (p->fallback[0])
		printf("note: %s\n", p->fallback);
	if (p->len_restored)
		printf("repair: the header's length %srestored from the file (the catalog "
		       "references bytes past it)\n", o->dry ? "would be " : "");
	else if (p->len_recovered)
		printf("recovery: the header's length and the file size disagreed (a crash); "
		       "%sresolved as a mount does\n", o->dry ? "would be " : "");
	if (p->alloc_recovered)
		printf("recovery: the allocator's crash recovery %sran\n",
		       o->dry ? "would have " : "");
	if (p->alloc_rebuilt)
		printf("repair: allocator metadata (%d violation%s) %s rebuilt from the "
		       "catalog\n", p->alloc_violations, p->alloc_violations == 1 ? "" : "s",
		       o->dry ? "would be" : "was");
	if (p->catalog_repaired)
		printf("repair: catalog %s\n", o->dry ? "would be repaired" : "repaired");
	if (p->files_trimmed)
		printf("repair: %" PRIu64 " file(s) %strimmed to their size\n", p->files_trimmed,
		       o->dry ? "would be " : "");
	if (p->alloc_maintenance_writes)
		printf("maintenance: %" PRIu64 " routine open-time write(s) of the allocator%s%s "
		       "(not a repair)\n", p->alloc_maintenance_writes, *did ? " " : "", did);
	if (res->damaged)
		printf("damaged: the allocator fails its check; nothing was changed\n");
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
	bool rep = repaired(&res->rep);
	printf("image: %s%s\n", o->image, o->dry ? " (no changes)" : "");
	print_figures(&sum);
	if (o->dry) {
		printf("would reclaim %" PRIu64 " bytes\n", res->rep.leaked_bytes_reclaimed);
		printf("open-time repairs: %s\n", rep ? "would be written" : "none");
	} else {
		printf("leaked bytes reclaimed: %" PRIu64 "\n", res->rep.leaked_bytes_reclaimed);
		printf("open-time repairs: %s\n", rep ? "written" : "none");
	}
	print_open_report(o, res);
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
	printf("violations: %d\n", r);
	if (o->verbose)
		printf("--- %s\n%.*s", VOL_CONTROL_NAME, (int)len, text);
	free(text);
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
	printf("result: %s\n", st == FSCK_OK ? "clean" :
	       st & FSCK_UNCORRECTED ? (o->dry && !res->violations ? "repairs needed" :
					"errors left uncorrected") :
	       "errors corrected");
	return st;
}

/* ---- the run ------------------------------------------------------------ */

static long lock_wait_ms(void)
{
	const char *e = getenv("BSTACKFS_FSCK_LOCK_WAIT_MS");
	char *end;
	long ms = e ? strtol(e, &end, 10) : FSCK_LOCK_WAIT_MS;
	return e && (*end || ms < 0) ? FSCK_LOCK_WAIT_MS : ms;
}

/* vol_open, retried while the image is in use, for a bounded time. */
static int open_waiting(const struct fsck_opts *o, const struct vol_opts *vo,
			struct vol **v, struct vol_error *err)
{
	long waited = 0, limit = lock_wait_ms();
	for (;;) {
		int r = vol_open(o->image, vo, v, err);
		if (r != BSTACK_E_INUSE || waited >= limit)
			return r;
		struct timespec ts = { 0, FSCK_LOCK_STEP_MS * 1000000L };
		nanosleep(&ts, NULL);
		waited += FSCK_LOCK_STEP_MS;
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
	printf("image: %s%s\n", o->image, o->dry ? " (no changes)" : "");
	printf("error: %s\n", err->msg);
	print_open_report(&dry, &res);
	printf("result: errors left uncorrected (-y repairs them)\n");
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
		if (repairable(o, &probe, why, sizeof why))
			printf("repairable: -y rebuilds the allocator's metadata from the catalog, "
			       "keeping every file\n");
		else
			printf("not repairable by -y: %s\n", why);
	}
	return verdict(o, &res);
}

int main(int argc, char **argv)
{
	struct fsck_opts o;
	int st = parse_args(argc, argv, &o);

	if (st >= 0)
		return st;
	return run(&o);
}
