/*
 * options.h — the command line of docs/design.md §7:
 *   bstackfs [options] IMAGE MOUNTPOINT
 * bstackfs's own -o options (allocator=, block_size=, sync, nocreate) are taken out
 * of the argument vector; libfuse's (-f -d -s -h -V, -o ...) stay for
 * fuse_parse_cmdline() and fuse_session_new().
 */
#ifndef BSTACKFS_OPTIONS_H
#define BSTACKFS_OPTIONS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "volume.h"

/* seconds of idleness after which the journal is checkpointed */
#define BSFS_IDLE_CHECKPOINT_S 2

struct bsfs_opts {
	char *image;              /* as given on the command line (messages) */
	char *image_path;         /* the same, absolute (open, fsname) */
	int mountpoint_seen;
	char *allocator;          /* -o allocator=NAME, NULL when absent */
	char *block_size;         /* -o block_size=N, NULL when absent */
	int sync;                 /* -o sync */
	char *commit;             /* -o commit=SECONDS */
	char *journal;            /* -o journal=on|off */
	int nocreate;             /* -o nocreate: a missing image is refused */
	int ro;                   /* -o ro: nothing is written to the image */
	int norecovery;           /* -o norecovery (with ro) */
	char *free_batch;         /* -o free_batch=N|adaptive, NULL when absent */
	int view;                 /* -o view: the allocations, read-only (viewfs.h) */
	int noxattr;              /* -o noxattr: no extended attributes (ops.c) */
	int max_threads_given;    /* -o max_threads=N given (libfuse parses it) */
	struct fuse_cmdline_opts cmd;  /* libfuse's: -f -d -s -h -V, mountpoint */
	struct vol_opts vol;      /* derived from the above */
};

/*
 * Parse argv into *o, leaving in *args what fuse_session_new() should see
 * (default_permissions, fsname and subtype added).  Returns 0, or -EINVAL
 * after a line on stderr (libfuse's own, for its options).  -h and -V only
 * set o->cmd.show_help / show_version; the caller prints them
 * (bsfs_print_help / bsfs_print_version).
 */
int bsfs_parse_args(struct fuse_args *args, struct bsfs_opts *o);

/*
 * The worker threads a mount runs when -o max_threads is not given: one
 * per online CPU, at least BSFS_MIN_THREADS, at most libfuse's own
 * default.  Measured on 2 cores (README, scripts/bench): each idle worker
 * waits in read(2) on /dev/fuse and the kernel hands a request to the one
 * that has waited longest, so workers beyond the CPUs only add cold
 * wakeups: ls -lR of 20 000 files took 1.06 s with libfuse's 10 and
 * 0.80 s with 2; 2000 one-line files 0.77 s and 0.82 s by one process,
 * 0.45 s and 0.47 s by four at once (more workers read more requests
 * while a commit syncs).
 */
#define BSFS_MIN_THREADS 2
#define BSFS_MAX_THREADS 10
unsigned bsfs_default_max_threads(long online_cpus);
void bsfs_free_opts(struct bsfs_opts *o);

/* 0 when the mount point exists and is a directory; else one line on
 * stderr and -ENOENT, -ENOTDIR, ... */
int bsfs_check_mountpoint(const char *image, const char *mnt);

/* The session loop with libfuse's -s / clone_fd / max_threads (main.c). */
int bsfs_serve(struct fuse_session *se, const struct bsfs_opts *o);

void bsfs_print_usage(const char *prog);
void bsfs_print_help(const char *prog);
void bsfs_print_version(void);

#endif
