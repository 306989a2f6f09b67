/*
 * main.c — `bstackfs [options] IMAGE MOUNTPOINT` (docs/design.md §7).
 *
 * The order of the steps is the contract's "nothing is written to an image
 * that was refused":
 *   1. parse the command line, and let libfuse validate its options
 *      (fuse_session_new) — an unknown option touches nothing;
 *   2. check the mount point and /dev/fuse;
 *   3. open (or create) the image: the volume refuses an image in use, not
 *      a bstack image, of an unsupported version or another allocator
 *      before it writes anything;
 *   4. mount, then daemonize — so every refusal above still reaches the
 *      terminal as one line on stderr, with exit status 1;
 *   5. serve until unmount or SIGTERM/SIGINT, then vol_close, which
 *      flushes every file, syncs and lets go of the image lock, and unmount
 *      (when a signal ended the loop: the kernel's unmount does not wait
 *      for any of this, see run()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "ops.h"
#include "options.h"
#include "viewfs.h"

/*
 * libfuse reports its own refusals (unknown option, mount failure) through
 * fuse_log, sometimes in several pieces per line.  This collects each error
 * line and prints it as one "bstackfs: IMAGE: reason" line like ours.  The
 * log hook takes no user pointer, hence the one piece of static state.
 */
static struct {
	const char *image;
	char line[1024];
	size_t len;
	bool printed;             /* an error line reached stderr */
} g_log;

static void bsfs_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (level > FUSE_LOG_ERR || !g_log.image) {
		vfprintf(stderr, fmt, ap);
		return;
	}
	size_t room = sizeof(g_log.line) - g_log.len;
	int n = vsnprintf(g_log.line + g_log.len, room, fmt, ap);
	if (n > 0)
		g_log.len += (size_t)n < room ? (size_t)n : room - 1;
	if (g_log.len == 0 || (g_log.line[g_log.len - 1] != '\n' &&
			       g_log.len < sizeof(g_log.line) - 1))
		return;
	while (g_log.len && g_log.line[g_log.len - 1] == '\n')
		g_log.line[--g_log.len] = '\0';
	const char *msg = g_log.line;
	if (strncmp(msg, "fuse: ", 6) == 0)
		msg += 6;
	fprintf(stderr, "bstackfs: %s: %s\n", g_log.image, msg);
	g_log.len = 0;
	g_log.printed = true;
}

static int check_dev_fuse(const char *image)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "bstackfs: %s: no /dev/fuse (%s); is the fuse module loaded?\n",
			image, strerror(e));
		return -e;
	}
	close(fd);
	return 0;
}

static int open_volume(const struct bsfs_opts *o, struct vol **v)
{
	struct vol_error err;
	int rc;

	memset(&err, 0, sizeof(err));
	rc = vol_open(o->image_path, &o->vol, v, &err);
	if (rc == -ENOENT && !o->vol.create) {
		fprintf(stderr, "bstackfs: %s: no such image (-o nocreate; create it with "
			"mkfs.bstackfs)\n", o->image);
		return rc;
	}
	if (rc < 0) {
		fprintf(stderr, "bstackfs: %s: %s\n", o->image,
			err.msg[0] ? err.msg : strerror(-rc));
		return rc;
	}
	/* what the open recovered that a user should know of (guarantee 5:
	 * a record that fell back to its older version is not silent) */
	struct vol_open_report rep;
	vol_open_report(*v, &rep);
	if (rep.fallback[0])
		fprintf(stderr, "bstackfs: %s: note: %s\n", o->image, rep.fallback);
	/* -o ro writes nothing, so the recovery a crash calls for would be
	 * lost at unmount: refuse unless norecovery asks for it in memory */
	bool needs = rep.len_recovered || rep.alloc_recovered || rep.catalog_repaired ||
		     rep.files_trimmed || rep.leaked_bytes_reclaimed;
	if (o->ro && needs && !o->norecovery) {
		fprintf(stderr, "bstackfs: %s: the image needs recovery (a crash's leftovers), "
			"which a read-only mount cannot write; mount it read-write once, run "
			"bstackfs-fsck, or add -o norecovery\n", o->image);
		vol_close(*v);
		*v = NULL;
		return -EROFS;
	}
	return 0;
}

int bsfs_serve(struct fuse_session *se, const struct bsfs_opts *o)
{
	struct fuse_loop_config *cfg;
	int rc;

	if (o->cmd.singlethread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, (unsigned)o->cmd.clone_fd);
	/* UINT_MAX is libfuse's "not given" (its setter would complain). */
	if (o->cmd.max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(cfg, o->cmd.max_idle_threads);
	if (o->max_threads_given && o->cmd.max_threads)
		fuse_loop_cfg_set_max_threads(cfg, o->cmd.max_threads);
	else
		fuse_loop_cfg_set_max_threads(cfg, bsfs_default_max_threads(
						      sysconf(_SC_NPROCESSORS_ONLN)));
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc;
}

/* Steps 2-5 once the session exists. */
static int run(struct fuse_session *se, struct bsfs *fs, const struct bsfs_opts *o)
{
	struct vol *v = NULL;
	int rc;

	if (bsfs_check_mountpoint(o->image, o->cmd.mountpoint) < 0 ||
	    check_dev_fuse(o->image) < 0)
		return 1;
	/* A refused mount leaves no image it created behind. */
	bool existed = access(o->image_path, F_OK) == 0;
	if (open_volume(o, &v) < 0)
		return 1;
	fs->v = v;
	fs->noxattr = o->noxattr;
	if (fuse_set_signal_handlers(se) < 0) {
		fprintf(stderr, "bstackfs: %s: cannot install signal handlers\n", o->image);
		vol_close(v);
		return 1;
	}
	if (fuse_session_mount(se, o->cmd.mountpoint) < 0) {
		if (!g_log.printed)
			fprintf(stderr, "bstackfs: %s: cannot mount on %s\n", o->image,
				o->cmd.mountpoint);
		fuse_remove_signal_handlers(se);
		vol_close(v);
		if (!existed)
			unlink(o->image_path);
		return 1;
	}
	/* From here libfuse logs from many threads: back to its own logger
	 * (g_log is not thread safe, and refusals are over). */
	fuse_set_log_func(NULL);
	fuse_daemonize(o->cmd.foreground);
	/* threads do not survive the fork of fuse_daemonize: start them now */
	if ((rc = vol_start_threads(v)) < 0)
		fprintf(stderr, "bstackfs: %s: cannot start the committer: %s\n", o->image,
			strerror(-rc));
	rc = bsfs_serve(se, o);
	/*
	 * The end of the mount, and how long the image stays locked after it.
	 *
	 * umount(8) or fusermount3 -u: for a plain FUSE mount (type fuse, not
	 * fuseblk) the kernel detaches the mount and aborts the connection
	 * without sending FUSE_DESTROY and without waiting for this daemon;
	 * it sends DESTROY, and waits for the reply, only on fuseblk mounts,
	 * which need a block device (an image file is not one), and it sends
	 * no FUSE_SYNCFS at unmount either.  So no request announces the
	 * unmount: the loop above ends when reading /dev/fuse fails (ENODEV),
	 * after umount has returned, and libfuse's .destroy would run later
	 * still (from fuse_session_destroy).  Nothing can be moved to before
	 * the mount goes away; the last sync below necessarily runs after
	 * umount returned, while this process holds the image's lock, and
	 * bstackfs-fsck waits for it (fs/fsck.c).  What can be done is to
	 * keep that short: the committer's idle checkpoint has usually made
	 * the image final already (volume.c), and vol_close lets go of the
	 * lock as soon as the image is final, before freeing the catalog and
	 * closing the removed journal.
	 *
	 * SIGTERM/SIGINT (or a failed loop): the mount is still there and we
	 * remove it ourselves, so the volume is closed first and the mount
	 * removed after it: whoever waits for the mount point to go away
	 * finds the image released.  That is safe because the loop has
	 * finished every request it took (the workers are joined) and takes
	 * no other: a request made in between waits for the unmount and fails
	 * then, as it would after it.  (After a kernel unmount,
	 * fuse_session_unmount has nothing left to do, so the order is the
	 * same for both.)
	 */
	int crc = vol_close(v);
	if (crc < 0)
		fprintf(stderr, "bstackfs: %s: closing the image: %s\n", o->image,
			strerror(-crc));
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	/* The loop returns the number of the signal that ended it: SIGTERM
	 * and SIGINT are a clean unmount, not a failure. */
	return rc < 0 || crc < 0 ? 1 : 0;
}

/* -o view (fs/viewfs.c): the same steps over a read-only view of the
 * image's allocations, which has nothing to flush at the end. */
static int run_view(struct fuse_session *se, struct bsfs_view *vw, const struct bsfs_opts *o)
{
	if (bsfs_check_mountpoint(o->image, o->cmd.mountpoint) < 0 ||
	    check_dev_fuse(o->image) < 0 ||
	    bsfs_view_open(vw, o->image, o->image_path, o->vol.allocator) < 0)
		return 1;
	if (fuse_set_signal_handlers(se) < 0 || fuse_session_mount(se, o->cmd.mountpoint) < 0) {
		if (!g_log.printed)
			fprintf(stderr, "bstackfs: %s: cannot mount on %s\n", o->image,
				o->cmd.mountpoint);
		fuse_remove_signal_handlers(se);
		bsfs_view_close(vw);
		return 1;
	}
	fuse_set_log_func(NULL);
	fuse_daemonize(o->cmd.foreground);
	int rc = bsfs_serve(se, o);
	bsfs_view_close(vw);   /* the shared lock goes with it */
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_session *se;
	struct bsfs_opts o;
	struct bsfs fs;
	int status = 1;

	if (bsfs_parse_args(&args, &o) < 0)
		goto out;
	if (o.cmd.show_help) {
		bsfs_print_help(argv[0]);
		status = 0;
		goto out;
	}
	if (o.cmd.show_version) {
		bsfs_print_version();
		status = 0;
		goto out;
	}
	if (bsfs_ctx_init(&fs, NULL) < 0)
		goto out;
	g_log.image = o.image;
	fuse_set_log_func(bsfs_log);
	struct bsfs_view vw;
	memset(&vw, 0, sizeof(vw));
	if (o.view)
		se = fuse_session_new(&args, &bsfs_view_ops, sizeof(bsfs_view_ops), &vw);
	else
		se = fuse_session_new(&args, &bsfs_ll_ops, sizeof(bsfs_ll_ops), &fs);
	if (se) {
		status = o.view ? run_view(se, &vw, &o) : run(se, &fs, &o);
		fuse_session_destroy(se);
	} else if (!g_log.printed) {
		fprintf(stderr, "bstackfs: %s: bad options (see bstackfs --help)\n",
			o.image);
	}
out:
	bsfs_free_opts(&o);
	fuse_opt_free_args(&args);
	return status;
}
