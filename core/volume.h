/*
 * volume.h — named files and directories over any allocator (docs/design.md
 * §1, §3-§6).  Knows nothing about FUSE: fs/ translates requests into these
 * calls.  Every function returns 0 (or a byte count where stated) or a
 * negative errno.
 *
 * Inodes: the root directory is VOL_ROOT_INO (1).  Inode numbers are
 * stable for the life of the file and never reused while the volume is
 * open.  Directories exist only in the catalog; each regular file is one
 * allocation of the image's allocator, whose bytes are the file's bytes.
 *
 * Durability (§5): metadata operations (create, mkdir, unlink, rmdir,
 * rename, truncate, fallocate, setattr) are durable on return.  File data
 * written by vol_write() is durable after vol_fsync(), vol_release(),
 * vol_sync_all() and vol_close(); with opts.sync_writes every write is.
 *
 * Thread safety: all functions may be called from many threads.
 */
#ifndef BSTACKFS_VOLUME_H
#define BSTACKFS_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "alloc.h"
#include "freeq.h"
#include "io.h"

#define VOL_ROOT_INO 1
#define VOL_NAME_MAX 255
#define VOL_SYMLINK_MAX 4095      /* = CAT_SYMLINK_MAX */
#define VOL_CONTROL_NAME ".bstackfs"   /* reserved at the root */
#define VOL_CONTROL_JSON_NAME ".bstackfs.json"   /* reserved too: its JSON form */

struct vol;

struct vol_opts {
	/* For a new image: which allocator (BS_ALLOC_NONE = default, GhostTree)
	 * and its options.  For an existing image: when not NONE, must match
	 * the image's allocator or the open fails with -EINVAL (and the image
	 * is untouched). */
	enum bs_alloc_kind allocator;
	uint64_t block_size;      /* Slab; 0 = default or "whatever it has" */
	bool create;              /* create the image when the path is missing */
	bool sync_writes;         /* -o sync: every vol_write is durable */
	/* The journal (docs/design.md §5): vol_open keeps it in IMAGE-journal
	 * when `journal` is set; vol_open_io takes it as journal_io (owned;
	 * NULL = journal=off).  journal_bytes: checkpoint past this (0 =
	 * default).  commit_s: 0 = every metadata operation durable on return;
	 * N = committed in groups at most N seconds apart and at fsync, sync
	 * and unmount.  idle_checkpoint_s: checkpoint after that long idle (0 =
	 * only when full, at sync and unmount). */
	bool journal;
	struct bs_io *journal_io;
	uint64_t journal_bytes;
	unsigned commit_s;
	unsigned idle_checkpoint_s;
	/* Start no thread in vol_open (a daemon that forks after the open
	 * starts them with vol_start_threads: threads do not survive fork). */
	bool defer_threads;
	/* -o free_batch: when the remote-free queue drains (volume.c); the
	 * zero value, Fixed(0), means the default Fixed(64). */
	struct bs_freeq_policy free_batch;
	uid_t uid;                /* owner of a newly formatted root dir */
	gid_t gid;
	/* fsck: repair damage the catalog proves how to repair (a header
	 * length shorter than the catalog's allocations; allocator metadata
	 * that fails its check, rebuilt from the catalog) instead of refusing. */
	bool repair;
	/* Never write the image (fsck -n, read-only): the open's recovery and
	 * every later write stay in memory (io_stage.c) and are dropped at
	 * close.  A missing or empty image is refused. */
	bool no_write;
	/* fsck without repair: an image whose allocator fails its check is
	 * opened anyway, for the report only — never written (as no_write),
	 * no mount-time reclaim or repair; vol_check lists the violations.
	 * vol_damaged() tells. */
	bool allow_damaged;
	/* vol_open: open the file O_RDONLY (implies nothing about no_write;
	 * a write then fails with -EROFS). */
	bool rdonly_file;
};

struct vol_attr {
	uint64_t ino;
	uint64_t parent;
	uint32_t mode;            /* S_IF* kind | permission bits */
	uint32_t uid, gid;
	uint32_t nlink;           /* names (0: removed while open); 2 + subdirs for
				   * directories */
	uint32_t rdev;            /* device numbers of a device node */
	uint64_t size;            /* file size; 0 for directories */
	uint64_t alloc_bytes;     /* bytes the allocator holds for the file */
	int64_t atime_ns, mtime_ns, ctime_ns;  /* since the epoch */
};

struct vol_statfs {
	uint64_t block_size;      /* reporting unit (bytes) */
	uint64_t total_bytes;     /* image bytes + what the host fs can still grow it by */
	uint64_t free_bytes;      /* allocator free space + host fs free space */
	uint64_t files;           /* inodes in use */
	uint64_t files_free;
	uint32_t name_max;
};

/* Why an open failed, for the one-line refusal of §7. */
struct vol_error {
	char msg[256];
};

/* Open (or with opts->create, create) the image at path. */
int vol_open(const char *path, const struct vol_opts *opts, struct vol **out,
	     struct vol_error *err);
/* The same on an already opened backend (tests: the memory device).  An
 * empty backend (size 0) is formatted when opts->create is set. */
int vol_open_io(struct bs_io *io, const struct vol_opts *opts, struct vol **out,
		struct vol_error *err);
/* Start the volume's background thread (commit=N, idle checkpoints) after
 * an open with opts.defer_threads. */
int vol_start_threads(struct vol *v);
/*
 * Replies that wait for a commit without holding a thread (fs/ops.c).
 * Between vol_defer_begin() and vol_defer_end() the calling thread's
 * operations return as soon as their transaction is sealed, without
 * waiting for it to be durable; vol_defer_end() returns what they need
 * durable (a sequence number; 0: nothing).  vol_when_durable() then calls
 * w->done(w, r) exactly once when that is durable (r 0) or cannot be (r <
 * 0); w is the caller's (embedded in its reply) until then: at once, in this thread, when it already is or when no flush is
 * under way (this thread then flushes, for every waiter it finds, until
 * none is left); later, in the thread that flushes, otherwise.  So while
 * one sync is in flight, the other threads go on serving requests, and
 * the operations they seal share the next sync.  done runs with no lock
 * of the volume held.
 */
struct vol_waiter {
	void (*done)(struct vol_waiter *w, int r);   /* set by the caller */
	uint64_t want;                               /* the volume's */
	struct vol_waiter *next;
};
void vol_defer_begin(void);
uint64_t vol_defer_end(void);
void vol_when_durable(struct vol *v, uint64_t want, struct vol_waiter *w);
/* The same, waiting in this thread: 0 once durable, or the error. */
int vol_wait_durable(struct vol *v, uint64_t want);
/* Tests: fn(arg) runs in a write on the shared path (volume.c:
 * write_shared) after its bytes are copied and before its size and times
 * are set, with no lock held.  NULL removes it. */
void vol_test_write_gap(struct vol *v, void (*fn)(void *), void *arg);
/* Flush every file's data, trim capacities, sync, give free tail space
 * back (vol_give_back_tail), close. */
int vol_close(struct vol *v);
/* Discard free space at the end of the payload, for every allocator (the
 * image file shrinks); *freed (may be NULL) gets the bytes.  Unmount runs
 * it; so may a checkpoint.  Crash: only leaks, reclaimed at mount. */
int vol_give_back_tail(struct vol *v, uint64_t *freed);

int vol_lookup(struct vol *v, uint64_t parent, const char *name, struct vol_attr *out);
int vol_getattr(struct vol *v, uint64_t ino, struct vol_attr *out);

/* mode carries permission bits only; the kind comes from the call. */
int vol_create(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, struct vol_attr *out);
int vol_mkdir(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	      uint32_t uid, uint32_t gid, struct vol_attr *out);
/* A FIFO, socket, character or block device (mode's S_IFMT; rdev for
 * devices); S_IFREG is vol_create.  No allocation. */
int vol_mknod(struct vol *v, uint64_t parent, const char *name, uint32_t mode,
	      uint32_t rdev, uint32_t uid, uint32_t gid, struct vol_attr *out);
/* A symlink to target (1..CAT_SYMLINK_MAX bytes): short targets live in
 * the record, long ones in an allocation of their own. */
int vol_symlink(struct vol *v, uint64_t parent, const char *name, const char *target,
		uint32_t uid, uint32_t gid, struct vol_attr *out);
/* Copy up to size bytes of symlink ino's target (no NUL); returns its
 * length or -EINVAL for anything but a symlink. */
ssize_t vol_readlink(struct vol *v, uint64_t ino, char *buf, size_t size);
/* One more name for inode ino (not a directory: -EPERM; -EMLINK past
 * CAT_NLINK_MAX names); *out gets the inode's attributes. */
int vol_link(struct vol *v, uint64_t ino, uint64_t newparent, const char *newname,
	     struct vol_attr *out);
int vol_unlink(struct vol *v, uint64_t parent, const char *name);
int vol_rmdir(struct vol *v, uint64_t parent, const char *name);

/* Extended attributes of any inode, as Linux gives them: names in the
 * user., trusted. and security. namespaces (others: -EOPNOTSUPP), values
 * up to 64 KiB (-E2BIG), at most 256 KiB of one inode's (-ENOSPC);
 * flags XATTR_CREATE (-EEXIST) / XATTR_REPLACE (-ENODATA).  get and list
 * with size 0 return the length needed; a smaller buffer is -ERANGE. */
int vol_setxattr(struct vol *v, uint64_t ino, const char *name, const void *val, size_t size,
		 int flags);
ssize_t vol_getxattr(struct vol *v, uint64_t ino, const char *name, void *buf, size_t size);
ssize_t vol_listxattr(struct vol *v, uint64_t ino, char *buf, size_t size);
int vol_removexattr(struct vol *v, uint64_t ino, const char *name);

#define VOL_RENAME_NOREPLACE 1
#define VOL_RENAME_EXCHANGE  2   /* with the journal only (else -EINVAL) */
int vol_rename(struct vol *v, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags);

/* List directory ino starting after position `pos` (0 = from the start).
 * fill() gets each entry (not "." / ".."; the caller adds those) and the
 * position to resume after it; a non-zero return from fill stops the walk
 * (without error).  Returns 0 or a negative errno. */
typedef int (*vol_fill_fn)(void *ctx, const char *name, const struct vol_attr *attr,
			   uint64_t next_pos);
int vol_readdir(struct vol *v, uint64_t ino, uint64_t pos, vol_fill_fn fill, void *ctx);

/* Returns bytes read (short at end of file) or a negative errno. */
ssize_t vol_read(struct vol *v, uint64_t ino, void *buf, size_t n, uint64_t off);
/* Returns n or a negative errno; a write past the end grows the file and
 * the gap reads as zeros. */
ssize_t vol_write(struct vol *v, uint64_t ino, const void *buf, size_t n, uint64_t off);
/* truncate both ways; durable on return. */
int vol_truncate(struct vol *v, uint64_t ino, uint64_t size);
/* fallocate mode 0: the file's size becomes max(size, off + len). */
int vol_fallocate(struct vol *v, uint64_t ino, uint64_t off, uint64_t len);

#define VOL_SET_MODE  0x01
#define VOL_SET_UID   0x02
#define VOL_SET_GID   0x04
#define VOL_SET_ATIME 0x08
#define VOL_SET_MTIME 0x10
#define VOL_SET_CTIME 0x20
/* Apply the fields of *in named by `mask` (mode: permission bits only);
 * ctime is set to now unless VOL_SET_CTIME; *out gets the result. */
int vol_setattr(struct vol *v, uint64_t ino, unsigned mask, const struct vol_attr *in,
		struct vol_attr *out);

/* Make the file's data durable. */
/* A close of a descriptor open for writing: vol_fsync with commit=0;
 * with commit=N durable at the next group commit. */
int vol_flush(struct vol *v, uint64_t ino);
int vol_fsync(struct vol *v, uint64_t ino);
/* Count one open of regular file ino (-ENOENT, -EISDIR).  A file unlinked
 * or renamed over while open loses its name at once (durably) but stays
 * readable and writable by inode (getattr: nlink 0) until its last
 * release, which frees its space (docs/design.md §4; volume.c). */
int vol_open_file(struct vol *v, uint64_t ino);
/* Count one close (a release without a counted open counts as the last):
 * sync the file's data and record; the last close also trims the
 * allocation to the size, or for a file unlinked while open, frees it. */
int vol_release(struct vol *v, uint64_t ino);
/* The kernel's references to inodes (FUSE's lookup count): a driver calls
 * vol_remember once for every entry it hands the kernel (lookup, create,
 * mkdir, mknod, symlink, link, each readdirplus entry but "." and "..")
 * — before the reply, and vol_forget(ino, 1) if the reply fails — and
 * vol_forget for FUSE forget.  The volume keeps an inode's state (its
 * vnode) while the kernel holds it, a descriptor is open or something is
 * not durable yet; an orphan's space still goes at its last close.
 * Callers that never remember (tools, tests) lose nothing by it. */
int vol_remember(struct vol *v, uint64_t ino);
struct vol_forget {
	uint64_t ino, nlookup;
};
void vol_forget(struct vol *v, const struct vol_forget *f, size_t n);
int vol_sync_all(struct vol *v);

int vol_statfs(struct vol *v, struct vol_statfs *out);

/* The headline figures of the control file, as numbers (fsck, tools). */
struct vol_summary {
	const char *allocator;      /* "ghost", "firstfit", "slab", "linear" */
	char magic[24];             /* e.g. "ALGT-0.1.2"; "none" for Linear */
	uint64_t files, directories, orphan_files;   /* files: regular ones */
	uint64_t symlinks, special_files, hardlinks; /* hardlinks: extra names */
	uint32_t catalog_version;
	uint64_t xattr_bytes;       /* extended attribute blobs */
	uint64_t catalog_records;   /* records in use */
	bool catalog_compact;       /* the compact layout (with the journal) */
	uint64_t catalog_bytes;     /* the catalog's length */
	uint64_t live_bytes;        /* sum of file sizes */
	uint64_t capacity_bytes;    /* bytes allocated to files */
	uint64_t backing_bytes;     /* bytes the allocator holds for them */
	uint64_t orphan_bytes;
	uint64_t free_bytes;
	uint64_t image_bytes;       /* header + payload */
	uint64_t peak_live_bytes;   /* the highest live_bytes since mount */
	uint64_t vnodes;            /* inodes with volume-side state */
	uint64_t kernel_inodes;     /* of which the kernel holds (vol_remember) */
};
int vol_summary(struct vol *v, struct vol_summary *out);

/* The control file: a consistent snapshot of the §6 `key value` lines, in
 * a malloc'd buffer the caller frees. */
int vol_stats_text(struct vol *v, char **buf, size_t *len);

/* Validate a name (§4): -EINVAL, -ENAMETOOLONG, 0. */
int vol_name_ok(const char *name);

/* The volume's own counters (the §6 figures), for tests and fsck. */
struct vol_counters {
	uint64_t allocs, reallocs, reallocs_in_place, deallocs, bytes_copied;
	uint64_t syncs;                   /* of the bstack, since open */
	uint64_t leaked_bytes_reclaimed;  /* by this open's mount-time reclaim */
	uint64_t catalog_rewrites;        /* copy-on-write moves of the catalog */
	struct bs_freeq_stats freeq;      /* the remote-free queue */
};
int vol_get_counters(struct vol *v, struct vol_counters *out);

/* ---- read-only views for tools (inspect, core/heapmap.c) ---- */

/* One allocation the volume holds: a named file's, the catalog's, or an
 * orphan's (a file removed while still open). */
enum vol_alloc_what { VOL_ALLOC_FILE, VOL_ALLOC_CATALOG, VOL_ALLOC_ORPHAN,
		      VOL_ALLOC_XATTR /* ino: the inode whose attributes it holds */ };
struct vol_alloc_rec {
	enum vol_alloc_what what;
	uint64_t ino;             /* 0 for the catalog */
	struct bs_slice slice;    /* offset and capacity */
	uint64_t size;            /* file size (the catalog: its length) */
	uint64_t ext_start, ext_len;   /* bs_alloc_extent: headers included */
};
typedef int (*vol_alloc_fn)(void *ctx, const struct vol_alloc_rec *rec);
/* Visit the catalog, then every file (and long symlink) with a non-empty
 * allocation and every attribute blob, then every orphan, under the read
 * lock; a non-zero return from fn stops the
 * walk and is returned.  fn must not call back into the volume. */
int vol_foreach_alloc(struct vol *v, vol_alloc_fn fn, void *ctx);
/* The allocation of inode ino (slice (0, 0) for an empty file, an inline
 * symlink, a special file): -ENOENT, -EISDIR. */
int vol_alloc_of(struct vol *v, uint64_t ino, struct vol_alloc_rec *out);
/* The image's allocator, for read-only calls (bs_alloc_stats, extents,
 * heap walks); it stays the volume's. */
struct bs_alloc *vol_allocator(struct vol *v);

/* Verify the allocator's invariants and every catalog allocation against
 * it (inside the arena, no two sharing a byte); report() gets one line per
 * violation.  Returns the number of violations or a negative errno. */
int vol_check(struct vol *v, bs_report_fn report, void *ctx);

/* What the open found and did (with no_write: would have done) — fsck's
 * report and exit status, mount's notes.  Routine open-time maintenance
 * (GhostTree's rebuild of its tree, the seed's open) is told apart from
 * the repair of damage or of a crash. */
struct vol_open_report {
	bool len_recovered;       /* file-layer crash recovery: clen != file size */
	bool len_restored;        /* repair: the header's length set to the file's */
	bool alloc_recovered;     /* the allocator's crash recovery ran (FirstFit) */
	uint64_t alloc_maintenance_writes; /* routine writes of the allocator's open */
	int alloc_violations;     /* the allocator check at open (before a rebuild) */
	bool alloc_rebuilt;       /* repair: allocator metadata rebuilt from the catalog */
	uint64_t leaked_bytes_reclaimed;
	bool catalog_repaired;    /* a torn slot zeroed, a rename-over leftover removed */
	uint64_t files_trimmed;   /* spare capacity a crash left, trimmed */
	char fallback[256];       /* "" or which record fell back to its other version */
	uint64_t writes;          /* writes the open issued (or would have) */
};
int vol_open_report(struct vol *v, struct vol_open_report *out);
/* Opened with allow_damaged and the allocator failed its check. */
bool vol_damaged(struct vol *v);

#endif
