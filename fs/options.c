/*
 * options.c — parsing of `bstackfs [options] IMAGE MOUNTPOINT` (docs/design.md
 * §7) with libfuse's conventions, so the same binary works by hand and
 * from /etc/fstab (mount.fuse3 passes `IMAGE MOUNTPOINT -o rw,...`).
 *
 * Two passes: fuse_opt_parse() with bstackfs's table takes out our own -o
 * options and the first non-option argument (the image); then
 * fuse_parse_cmdline() takes libfuse's generic options and the mount point.
 * Whatever is left goes to fuse_session_new(), which rejects what nobody
 * knows — before the image is touched.
 */
#include "options.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	KEY_DISCARD,
	KEY_RO,           /* kept for libfuse too: the kernel mount is read-only */
	KEY_RW,
	KEY_NORECOVERY,
	KEY_MAX_THREADS,  /* kept for libfuse; noted: the default is ours */
};

#define BSFS_OPT(t, p) { t, offsetof(struct bsfs_opts, p), 1 }

static const struct fuse_opt bsfs_opt_spec[] = {
	BSFS_OPT("allocator=%s", allocator),
	BSFS_OPT("block_size=%s", block_size),
	BSFS_OPT("sync", sync),
	BSFS_OPT("commit=%s", commit),
	BSFS_OPT("journal=%s", journal),
	BSFS_OPT("nocreate", nocreate),
	BSFS_OPT("free_batch=%s", free_batch),
	BSFS_OPT("view", view),
	BSFS_OPT("noxattr", noxattr),
	/* Options fstab/mount may hand us that mean nothing to a FUSE mount;
	 * mount.fuse3 drops most of these itself, but a hand-written fstab
	 * line or `mount -o defaults` must not fail. */
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("rw", KEY_RW),
	FUSE_OPT_KEY("norecovery", KEY_NORECOVERY),
	FUSE_OPT_KEY("max_threads=", KEY_MAX_THREADS),
	FUSE_OPT_KEY("defaults", KEY_DISCARD),
	FUSE_OPT_KEY("auto", KEY_DISCARD),
	FUSE_OPT_KEY("noauto", KEY_DISCARD),
	FUSE_OPT_KEY("nofail", KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", KEY_DISCARD),
	FUSE_OPT_KEY("user", KEY_DISCARD),
	FUSE_OPT_KEY("nouser", KEY_DISCARD),
	FUSE_OPT_KEY("users", KEY_DISCARD),
	FUSE_OPT_END
};

static int bsfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct bsfs_opts *o = data;

	(void)outargs;
	switch (key) {
	case KEY_DISCARD:
		return 0;
	case KEY_RO:
		o->ro = 1;
		return 1;
	case KEY_RW:
		o->ro = 0;
		return 0;
	case KEY_NORECOVERY:
		o->norecovery = 1;
		return 0;
	case KEY_MAX_THREADS:
		o->max_threads_given = 1;
		return 1;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->image) {
			o->image = strdup(arg);
			return o->image ? 0 : -1;
		}
		/* The mount point, for fuse_parse_cmdline — whose own check
		 * would print a message not naming the image. */
		if (!o->mountpoint_seen) {
			o->mountpoint_seen = 1;
			if (bsfs_check_mountpoint(o->image, arg) < 0)
				return -1;   /* fuse_opt's convention */
			return 1;
		}
		fprintf(stderr, "bstackfs: %s: unexpected argument '%s' (usage: bstackfs "
			"[options] IMAGE MOUNTPOINT)\n", o->image, arg);
		return -1;
	default:
		return 1;
	}
}

/* fsname is a comma-separated -o value: escape ',' and '\' in the path. */
static int add_fsname(struct fuse_args *args, const char *image)
{
	size_t n = strlen(image);
	char *s = malloc(2 * n + sizeof("-ofsname="));
	if (!s)
		return -ENOMEM;
	char *p = stpcpy(s, "-ofsname=");
	for (size_t i = 0; i < n; i++) {
		if (image[i] == ',' || image[i] == '\\')
			*p++ = '\\';
		*p++ = image[i];
	}
	*p = '\0';
	int rc = fuse_opt_add_arg(args, s);
	free(s);
	return rc < 0 ? -ENOMEM : 0;
}

int bsfs_check_mountpoint(const char *image, const char *mnt)
{
	struct stat st;

	if (stat(mnt, &st) < 0) {
		int e = errno;
		if (e == ENOENT)
			fprintf(stderr, "bstackfs: %s: mount point %s does not exist\n",
				image, mnt);
		else
			fprintf(stderr, "bstackfs: %s: mount point %s: %s\n", image, mnt,
				strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "bstackfs: %s: mount point %s is not a directory\n", image, mnt);
		return -ENOTDIR;
	}
	return 0;
}

/* The image by absolute path: the daemon changes to / and df shows it. */
static char *absolute(const char *path)
{
	char cwd[4096];
	char *s;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&s, "%s/%s", cwd, path) < 0)
		return NULL;
	return s;
}

static int parse_block_size(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v == 0 || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

/* Turn the parsed strings into vol_opts; one line on stderr on error. */
static int derive_vol_opts(struct bsfs_opts *o)
{
	o->vol.allocator = BS_ALLOC_NONE;
	o->vol.create = !o->nocreate;
	o->vol.sync_writes = o->sync != 0;
	if (o->norecovery && !o->ro) {
		fprintf(stderr, "bstackfs: %s: norecovery needs ro (a writable mount "
			"recovers the image)\n", o->image);
		return -EINVAL;
	}
	if (o->view) {
		/* the view reads the image through core/allocview.c, never the
		 * volume: the volume's own options have no meaning there */
		const char *bad = o->block_size ? "block_size" : o->sync ? "sync" :
				  o->commit ? "commit" : o->journal ? "journal" :
				  o->free_batch ? "free_batch" : o->norecovery ? "norecovery" : NULL;
		if (bad) {
			fprintf(stderr, "bstackfs: %s: %s does not go with view (a view never "
				"writes the image)\n", o->image, bad);
			return -EINVAL;
		}
		o->ro = 1;
	}
	if (o->ro) {
		/* read-only for real: the file is opened O_RDONLY and nothing
		 * is written (open-time work stays in memory) */
		o->vol.create = false;
		o->vol.rdonly_file = true;
		o->vol.no_write = true;
	}
	o->vol.uid = getuid();
	o->vol.gid = getgid();
	/* the journal is on by default; an idle volume is checkpointed after
	 * BSFS_IDLE_CHECKPOINT_S, so that an idle image is a plain one */
	o->vol.journal = true;
	o->vol.idle_checkpoint_s = BSFS_IDLE_CHECKPOINT_S;
	o->vol.defer_threads = true;   /* main starts them after daemonizing */
	if (o->journal) {
		if (strcmp(o->journal, "off") == 0) {
			o->vol.journal = false;
		} else if (strcmp(o->journal, "on") != 0) {
			fprintf(stderr, "bstackfs: %s: bad journal '%s' (expected on or off)\n",
				o->image, o->journal);
			return -EINVAL;
		}
	}
	if (o->commit) {
		uint64_t c = 0;
		if ((strcmp(o->commit, "0") != 0 && parse_block_size(o->commit, &c) < 0) ||
		    c > 86400) {
			fprintf(stderr, "bstackfs: %s: bad commit '%s' (seconds, 0 to 86400)\n",
				o->image, o->commit);
			return -EINVAL;
		}
		if (c && !o->vol.journal) {
			fprintf(stderr, "bstackfs: %s: commit=%s needs the journal (not with "
				"journal=off)\n", o->image, o->commit);
			return -EINVAL;
		}
		o->vol.commit_s = (unsigned)c;
	}
	if (o->allocator) {
		o->vol.allocator = bs_alloc_kind_parse(o->allocator);
		if (o->vol.allocator == BS_ALLOC_NONE) {
			fprintf(stderr, "bstackfs: %s: unknown allocator '%s' "
				"(expected ghost, firstfit, slab or linear)\n",
				o->image, o->allocator);
			return -EINVAL;
		}
	}
	if (o->block_size && parse_block_size(o->block_size, &o->vol.block_size) < 0) {
		fprintf(stderr, "bstackfs: %s: bad block_size '%s' (a positive number of bytes)\n",
			o->image, o->block_size);
		return -EINVAL;
	}
	if (o->free_batch && bs_freeq_policy_parse(o->free_batch, BS_FREEQ_DEFAULT_CAPACITY,
						   &o->vol.free_batch) < 0) {
		fprintf(stderr, "bstackfs: %s: bad free_batch '%s' (1..%u or adaptive)\n",
			o->image, o->free_batch, BS_FREEQ_DEFAULT_CAPACITY);
		return -EINVAL;
	}
	return 0;
}

int bsfs_parse_args(struct fuse_args *args, struct bsfs_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (fuse_opt_parse(args, o, bsfs_opt_spec, bsfs_opt_proc) < 0)
		return -EINVAL;   /* fuse_opt printed the reason */
	/* Before fuse_parse_cmdline: with fsname set it adds no default
	 * subtype of its own. */
	if (o->image && !(o->image_path = absolute(o->image)))
		return -EINVAL;
	if (o->image && (add_fsname(args, o->image_path) < 0 ||
			 fuse_opt_add_arg(args, "-osubtype=bstackfs") < 0))
		return -EINVAL;
	if (fuse_parse_cmdline(args, &o->cmd) < 0)
		return -EINVAL;
	if (o->cmd.show_help || o->cmd.show_version)
		return 0;
	if (!o->image || !o->cmd.mountpoint) {
		fprintf(stderr, "bstackfs: missing %s (usage: bstackfs [options] IMAGE MOUNTPOINT; "
			"see bstackfs --help)\n", o->image ? "MOUNTPOINT" : "IMAGE and MOUNTPOINT");
		return -EINVAL;
	}
	/* The kernel enforces modes and owners (docs/design.md §1, issue 6). */
	if (fuse_opt_add_arg(args, "-odefault_permissions") < 0)
		return -EINVAL;
	/* a view is a read-only kernel mount too (an -o ro is kept already) */
	if (o->view && !o->ro && fuse_opt_add_arg(args, "-oro") < 0)
		return -EINVAL;
	return derive_vol_opts(o);
}

unsigned bsfs_default_max_threads(long online_cpus)
{
	if (online_cpus < BSFS_MIN_THREADS)
		return BSFS_MIN_THREADS;
	return online_cpus > BSFS_MAX_THREADS ? BSFS_MAX_THREADS : (unsigned)online_cpus;
}

void bsfs_free_opts(struct bsfs_opts *o)
{
	free(o->image);
	free(o->image_path);
	free(o->allocator);
	free(o->block_size);
	free(o->commit);
	free(o->journal);
	free(o->free_batch);
	free(o->cmd.mountpoint);
	memset(o, 0, sizeof(*o));
}

void bsfs_print_usage(const char *prog)
{
	printf("usage: %s [options] IMAGE MOUNTPOINT\n", prog);
}

void bsfs_print_help(const char *prog)
{
	bsfs_print_usage(prog);
	printf("\n"
	       "Mounts the BStack image IMAGE (created when missing, unless -o nocreate)\n"
	       "at MOUNTPOINT; every regular file is one allocation of the image's\n"
	       "allocator.\n"
	       "\n"
	       "bstackfs options:\n"
	       "    -o allocator=NAME      allocator of a new image: ghost (default),\n"
	       "                           firstfit, slab or linear; on an existing\n"
	       "                           image it must match (or be absent)\n"
	       "    -o block_size=N        Slab block size in bytes (new images)\n"
	       "    -o sync                every write is durable before it returns\n"
	       "    -o commit=SECONDS      0 (default): every metadata operation is durable\n"
	       "                           when it returns; N: operations are committed in\n"
	       "                           groups at most N seconds apart (and at fsync,\n"
	       "                           sync, unmount); a crash loses at most N seconds\n"
	       "    -o journal=on|off      on (default): one journal sync per operation;\n"
	       "                           off: every allocator step its own synced write,\n"
	       "                           as the seeds specify\n"
	       "    -o nocreate            refuse a missing IMAGE instead of creating it\n"
	       "                           (for fstab; create images with mkfs.bstackfs)\n"
	       "    -o ro                  read-only: the image file is opened read-only\n"
	       "                           and never written; an image that needs\n"
	       "                           recovery is refused\n"
	       "    -o norecovery          with ro: mount an image that needs recovery,\n"
	       "                           recovered in memory only\n"
	       "    -o free_batch=N|adaptive  removals free their space in batches of N\n"
	       "                           (default 64), or of an adaptive size\n"
	       "    -o noxattr             no extended attributes (ENOTSUP): ls -l then costs\n"
	       "                           no attribute requests (security.selinux and ACL\n"
	       "                           lookups of ls itself, one round trip each)\n"
	       "    -o view                any bstack image's allocations as read-only\n"
	       "                           files (allocations/, free/, reserved), the\n"
	       "                           image never written, held with a shared lock;\n"
	       "                           with allocator=linear for a Linear image\n"
	       "\n"
	       "The control file MOUNTPOINT/.bstackfs reports the allocator's statistics.\n"
	       "\n");
	printf("FUSE options:\n");
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

void bsfs_print_version(void)
{
	printf("bstackfs version %s\n", BSTACKFS_VERSION);
	printf("FUSE library version %s\n", fuse_pkgversion());
	fuse_lowlevel_version();
}
