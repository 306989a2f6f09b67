/*
 * mkfs.c — `mkfs.bstackfs [-a ALLOCATOR] [-b BLOCK_SIZE] [-f] [-q] IMAGE`
 * (docs/design.md §7): create a bstackfs image without mounting it.
 *
 * The image is exactly the one a first mount creates: the volume's own
 * format path (vol_open_io with opts.create on an empty backend: a fresh
 * bstack header, the allocator's header, the catalog with the root
 * directory), then vol_close.  Nothing here knows an on-disk format.
 *
 * Refusals, each one line "mkfs.bstackfs: IMAGE: reason" with exit status 1
 * and the file untouched:
 *   - IMAGE exists and -f was not given (an existing file is never
 *     touched without it, whatever it holds);
 *   - -f, but IMAGE is in use (another handle holds its lock: a mount,
 *     fsck, inspect) or is not a regular file;
 *   - bad options: an unknown allocator, -b without -a slab, a block size
 *     under 8.  All options are checked before anything is opened, so -f
 *     never empties a file and then fails on an option.
 * With -f the file is overwritten in place (owner, mode and links kept),
 * under its lock: truncated to zero, then formatted.
 *
 * Exit status (mke2fs's): 0 created, 1 anything else (usage included).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "volume.h"

#define PROG "mkfs.bstackfs"

struct mkfs_opts {
	enum bs_alloc_kind kind;
	uint64_t block_size;      /* 0 = the allocator's default */
	bool force, quiet;
	const char *image;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-a ALLOCATOR] [-b BLOCK_SIZE] [-f] [-q] IMAGE\n", PROG);
}

static void help(void)
{
	usage(stdout);
	printf("\n"
	       "Creates the bstackfs image IMAGE: the image a first mount of a missing\n"
	       "file creates (bstackfs IMAGE MOUNTPOINT), ready for -o nocreate.\n"
	       "\n"
	       "    -a ALLOCATOR   ghost (GhostTree, the default), firstfit, slab or linear\n"
	       "    -b BLOCK_SIZE  Slab block size in bytes (at least 8; default 4096);\n"
	       "                   only with -a slab\n"
	       "    -f             overwrite an existing file (refused while it is in use)\n"
	       "    -q             quiet: print nothing on success\n"
	       "    -h, --help     this text\n"
	       "    -V, --version  the version\n"
	       "\n"
	       "An existing IMAGE is never touched without -f.  Exit status: 0 created,\n"
	       "1 refused or failed (one line on stderr).\n");
}

static int refuse(const char *image, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int refuse(const char *image, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: %s: ", PROG, image);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

/* 0 on success, 1 on a usage error (after a message), -1 for "done"
 * (-h, -V). */
static int parse_args(int argc, char **argv, struct mkfs_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *alloc = NULL, *bsize = NULL;
	int c;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+a:b:fqhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': alloc = optarg; break;
		case 'b': bsize = optarg; break;
		case 'f': o->force = true; break;
		case 'q': o->quiet = true; break;
		case 'h': help(); return -1;
		case 'V': printf("%s version %s\n", PROG, BSTACKFS_VERSION); return -1;
		default:
			if (optopt == 'a' || optopt == 'b')
				fprintf(stderr, "%s: option -%c needs a value\n", PROG, optopt);
			else if (optopt)
				fprintf(stderr, "%s: unknown option -%c\n", PROG, optopt);
			else
				fprintf(stderr, "%s: unknown option %s\n", PROG, argv[optind - 1]);
			usage(stderr);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: %s\n", PROG, argc - optind ? "exactly one IMAGE, please" :
			"missing IMAGE");
		usage(stderr);
		return 1;
	}
	o->image = argv[optind];
	o->kind = BS_ALLOC_DEFAULT;
	if (alloc && (o->kind = bs_alloc_kind_parse(alloc)) == BS_ALLOC_NONE)
		return refuse(o->image, "unknown allocator '%s' (expected ghost, firstfit, "
			      "slab or linear)", alloc);
	if (bsize) {
		if (parse_u64(bsize, &o->block_size) < 0)
			return refuse(o->image, "bad block size '%s' (a number of bytes)", bsize);
		if (!bs_alloc_kind_can(o->kind, BS_CAP_BLOCK_SIZE))
			return refuse(o->image, "-b is for the slab allocator (-a slab), not %s",
				      bs_alloc_kind_name(o->kind));
		if (o->block_size < 8)
			return refuse(o->image, "block size must be at least 8 bytes");
	}
	return 0;
}

/* Open the backend for formatting: a new file, or with -f the existing
 * one, locked and emptied.  *created tells whether we made the file. */
static int open_target(const struct mkfs_opts *o, struct bs_io **io, int *created)
{
	struct stat st;
	int r;

	*created = 0;
	if (lstat(o->image, &st) == 0 || errno != ENOENT) {
		if (!o->force)
			return refuse(o->image, "already exists (mkfs.bstackfs -f overwrites it)");
		if (stat(o->image, &st) < 0)
			return refuse(o->image, "%s", strerror(errno));
		if (!S_ISREG(st.st_mode))
			return refuse(o->image, "not a regular file");
	}
	r = bs_io_file_open(o->image, BS_IO_CREATE, io, created);
	if (r < 0)
		return refuse(o->image, "cannot open: %s", strerror(-r));
	if (!*created && !o->force) {   /* appeared since the lstat */
		bs_io_close(*io);
		return refuse(o->image, "already exists (mkfs.bstackfs -f overwrites it)");
	}
	/* The lock first: a mounted image is never emptied. */
	if ((r = bs_io_lock(*io)) < 0 || (r = bs_io_truncate(*io, 0)) < 0) {
		bs_io_close(*io);
		if (*created)
			unlink(o->image);
		return refuse(o->image, "%s", r == -EWOULDBLOCK ?
			      bstack_strerror(BSTACK_E_INUSE) : strerror(-r));
	}
	return 0;
}

static void report(const struct mkfs_opts *o, struct vol *v)
{
	struct vol_summary s;
	char *text = NULL;
	size_t len = 0;
	unsigned long long image_bytes = 0, bsz = 0;

	if (vol_summary(v, &s) < 0 || vol_stats_text(v, &text, &len) < 0)
		return;
	for (char *p = text; p && p < text + len; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		sscanf(p, "image_bytes %llu", &image_bytes);
		sscanf(p, "block_size %llu", &bsz);
	}
	printf("%s: %s: %s allocator (%s)", PROG, o->image, s.allocator, s.magic);
	if (bs_alloc_kind_can(o->kind, BS_CAP_BLOCK_SIZE))
		printf(", %llu-byte blocks", bsz);
	printf(", %llu bytes, root directory only\n", image_bytes);
	free(text);
}

int main(int argc, char **argv)
{
	struct mkfs_opts o;
	struct vol_error err = { "" };
	struct bs_io *io;
	struct vol *v;
	int created, r = parse_args(argc, argv, &o);

	if (r)
		return r < 0 ? 0 : r;
	if (open_target(&o, &io, &created))
		return 1;
	struct vol_opts vo = {
		.allocator = o.kind, .block_size = o.block_size, .create = true,
		.uid = getuid(), .gid = getgid(),
	};
	/* The format path of a first mount; it takes io (closed on failure). */
	if ((r = vol_open_io(io, &vo, &v, &err)) < 0) {
		if (created)
			unlink(o.image);
		return refuse(o.image, "%s", err.msg[0] ? err.msg : strerror(-r));
	}
	if (!o.quiet)
		report(&o, v);
	if ((r = vol_close(v)) < 0) {
		if (created)
			unlink(o.image);
		return refuse(o.image, "closing the image: %s", strerror(-r));
	}
	return 0;
}
