/*
 * fsck.c — `bstackfs-fsck [-n] [-v] IMAGE`, the offline checker (DESIGN.md
 * §2, §3).  A front end only, like main.c: every check and repair is the
 * volume's own (core/volume.c), so fsck finds exactly what a mount finds.
 *
 * Repair (default): vol_open as a mount does — exclusive lock, the
 * bstack's and the allocator's open-time recovery, catalog verification,
 * reclaim of leaked space, catalog repair — then vol_check, a report, and
 * vol_close.
 *
 * No changes (-n): the image is opened read-only, flock(LOCK_EX|LOCK_NB)'d
 * like the file backend does (so a mounted image is refused and nobody
 * mounts it while we read), copied into a memory device and opened there;
 * whatever the open writes goes to the copy, and the copy's write count
 * tells whether a repair would change the image.  The copy costs memory,
 * hence the FSCK_DRY_MAX limit.
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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "volume.h"

#define FSCK_OK           0
#define FSCK_CORRECTED    1
#define FSCK_UNCORRECTED  4
#define FSCK_ERROR        8
#define FSCK_USAGE        16

/* -n copies the whole image into memory: refuse larger images. */
#define FSCK_DRY_MAX (1ULL << 30)

#define PROG "bstackfs-fsck"

struct fsck_opts {
	bool dry;                 /* -n */
	bool verbose;             /* -v */
	const char *image;
};

/* What one run found, for the report and the exit status. */
struct fsck_result {
	uint64_t reclaimed;       /* leaked bytes the open returned */
	bool wrote;               /* the open wrote repairs (or would have) */
	int violations;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-n] [-v] IMAGE\n", PROG);
}

static void help(void)
{
	usage(stdout);
	printf("\n"
	       "Checks the bstackfs image IMAGE (which must not be mounted) and repairs\n"
	       "what a mount would: the allocator's open-time recovery and the reclaim\n"
	       "of leaked space (allocations no file names).\n"
	       "\n"
	       "    -n             no changes: check a copy in memory and report what a\n"
	       "                   repair would do; the image is never written (images\n"
	       "                   larger than 1 GiB are refused with -n)\n"
	       "    -v             also print the control-file figures (.bstackfs)\n"
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n"
	       "\n"
	       "Exit status (added up when several apply):\n"
	       "    0   no errors\n"
	       "    1   errors corrected (leaked space reclaimed, recovery written)\n"
	       "    4   errors left uncorrected (check violations; with -n, repairs needed)\n"
	       "    8   operational error: the image was refused (one line on stderr)\n"
	       "    16  usage error\n");
}

/* The one-line refusal; returns FSCK_ERROR. */
static int refuse(const char *image, const char *why)
{
	fprintf(stderr, "%s: %s: %s\n", PROG, image, why);
	return FSCK_ERROR;
}

static int parse_args(int argc, char **argv, struct fsck_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	opterr = 0;   /* our own message, in our own format */
	while ((c = getopt_long(argc, argv, "nvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o->dry = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			help();
			return FSCK_OK;
		case 'V':
			printf("%s version %s\n", PROG, BSTACKFS_VERSION);
			return FSCK_OK;
		default:
			if (optopt)
				fprintf(stderr, "%s: unknown option -%c\n", PROG, optopt);
			else
				fprintf(stderr, "%s: unknown option %s\n", PROG,
					argv[optind - 1]);
			usage(stderr);
			return FSCK_USAGE;
		}
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
	printf("image: %s%s\n", o->image, o->dry ? " (no changes)" : "");
	print_figures(&sum);
	if (o->dry) {
		printf("would reclaim %" PRIu64 " bytes\n", res->reclaimed);
		printf("open-time repairs: %s\n", res->wrote ? "would be written" : "none");
	} else {
		printf("leaked bytes reclaimed: %" PRIu64 "\n", res->reclaimed);
		printf("open-time repairs: %s\n", res->wrote ? "written" : "none");
	}
	fflush(stdout);
	r = vol_check(v, report_violation, NULL);
	if (r < 0) {
		free(text);
		fflush(stdout);
		refuse(o->image, "the check failed to read the image");
		return r;
	}
	res->violations = r;
	printf("violations: %d\n", r);
	if (o->verbose)
		printf("--- %s\n%.*s", VOL_CONTROL_NAME, (int)len, text);
	free(text);
	return 0;
}

static int verdict(const struct fsck_opts *o, const struct fsck_result *res)
{
	bool repair = res->reclaimed || res->wrote;
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

/* ---- the two modes ----------------------------------------------------- */

static int refuse_open(const char *image, int r, const struct vol_error *err)
{
	return refuse(image, err->msg[0] ? err->msg : strerror(-r));
}

static int run_repair(const struct fsck_opts *o)
{
	/* with the journal: an image a crash left with a live journal is
	 * replayed first, as a mount would */
	struct vol_opts vo = { .allocator = BS_ALLOC_NONE, .create = false, .journal = true };
	struct vol_counters ctr;
	struct fsck_result res = { 0 };
	struct vol_error err = { "" };
	struct vol *v;
	int r = vol_open(o->image, &vo, &v, &err);

	if (r < 0)
		return refuse_open(o->image, r, &err);
	/* Every repair the open writes is durable, so it synced: a clean
	 * open issues no sync at all. */
	vol_get_counters(v, &ctr);
	res.reclaimed = ctr.leaked_bytes_reclaimed;
	res.wrote = ctr.syncs != 0;
	r = check_and_report(v, o, &res);
	int cr = vol_close(v);
	if (r < 0)
		return FSCK_ERROR;
	if (cr < 0) {
		fflush(stdout);
		return refuse(o->image, "closing the image failed");
	}
	return verdict(o, &res);
}

/* Read the whole (locked) file into a fresh memory device. */
static int load_copy(int fd, uint64_t size, struct bs_memdev **out)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct bs_memdev *dev;
	uint64_t done = 0;

	if (!buf)
		return -ENOMEM;
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EIO;   /* shrank under the lock */
		}
		done += (uint64_t)n;
	}
	if (!(dev = bs_memdev_new())) {
		free(buf);
		return -ENOMEM;
	}
	int r = bs_memdev_load(dev, buf, size);
	free(buf);
	if (r < 0) {
		bs_memdev_free(dev);
		return r;
	}
	bs_memdev_reset_counts(dev);
	*out = dev;
	return 0;
}

static int dry_on_copy(const struct fsck_opts *o, struct bs_memdev *dev)
{
	struct vol_opts vo = { .allocator = BS_ALLOC_NONE, .create = false };
	struct vol_counters ctr;
	struct fsck_result res = { 0 };
	struct vol_error err = { "" };
	struct bs_io *io;
	struct vol *v;
	int r = bs_io_mem_open(dev, &io);

	if (r < 0)
		return refuse(o->image, strerror(-r));
	if ((r = vol_open_io(io, &vo, &v, &err)) < 0)
		return refuse_open(o->image, r, &err);
	vol_get_counters(v, &ctr);
	res.reclaimed = ctr.leaked_bytes_reclaimed;
	res.wrote = bs_memdev_writes(dev) != 0;
	r = check_and_report(v, o, &res);
	vol_close(v);   /* the copy: whatever it writes is thrown away */
	return r < 0 ? FSCK_ERROR : verdict(o, &res);
}

static int run_dry(const struct fsck_opts *o)
{
	struct bs_memdev *dev = NULL;
	struct stat st;
	char why[160];
	int fd = open(o->image, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
		return refuse(o->image, why);
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return refuse(o->image, "not a regular file");
	}
	if ((uint64_t)st.st_size > FSCK_DRY_MAX) {
		close(fd);
		return refuse(o->image, "image larger than 1 GiB: -n would copy it into "
			      "memory; run without -n");
	}
	/* The file backend's lock (io_file.c): held until we are done, so
	 * the copy stays the image. */
	while ((r = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		int e = errno;
		close(fd);
		return refuse(o->image, e == EWOULDBLOCK ? bstack_strerror(BSTACK_E_INUSE) :
			      strerror(e));
	}
	/* The size again, under the lock. */
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > FSCK_DRY_MAX ||
	    (r = load_copy(fd, (uint64_t)st.st_size, &dev)) < 0) {
		close(fd);
		return refuse(o->image, "cannot read the image into memory");
	}
	int status = dry_on_copy(o, dev);
	bs_memdev_free(dev);
	close(fd);
	return status;
}

int main(int argc, char **argv)
{
	struct fsck_opts o;
	int st = parse_args(argc, argv, &o);

	if (st >= 0)
		return st;
	return o.dry ? run_dry(&o) : run_repair(&o);
}
