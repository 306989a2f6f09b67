/*
 * io.h — the I/O backend under the file layer (cf. SQLite's VFS, littlefs's
 * block devices).  The BStack never touches a file descriptor directly; it
 * calls these operations, so the tests can swap in a memory device that
 * counts every write and sync and cuts the power at the N-th one.
 *
 * Every operation returns 0 or a negative errno.
 *
 * The disk model: what the upper layers rely on, and what the memory
 * device simulates (cf. SQLite's xDeviceCharacteristics):
 *
 *   1. A completed sync makes every earlier write (and the file size)
 *      durable.  Nothing else is durable.
 *   2. At power loss, writes issued since the last completed sync may be
 *      lost.  Any subset of them may survive, in any order (littlefs's
 *      out-of-order model), and one write may be torn: a prefix of its
 *      512-byte sectors (aligned to the file) reaches the disk.
 *   3. A 512-byte aligned sector is never torn internally: a write that
 *      lies inside one sector survives whole or not at all.
 *
 * With the journal (bstack.h) the file layer relies on 1 and on nothing
 * else: a torn or lost journal record fails its checksum and is not
 * replayed; in-place writes are redone from the journal.  The one write it
 * needs to be atomic, the image header's magic, is 4 bytes in sector 0
 * (3).  With journal=off the seeds' own protocols rely on 1 and 3 and on
 * unsynced writes reaching the disk in issue order or not at all (each
 * GhostTree node write of 32 bytes, FirstFit's flag word, the 8-byte clen
 * lies inside one sector, and each step is synced before the next).
 */
#ifndef BSTACKFS_IO_H
#define BSTACKFS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bs_io;

struct bs_io_ops {
	/* Read exactly n bytes at off; -EIO (short read) past the end. */
	int (*pread)(struct bs_io *io, void *buf, size_t n, uint64_t off);
	/* Write exactly n bytes at off, extending the file if needed. */
	int (*pwrite)(struct bs_io *io, const void *buf, size_t n, uint64_t off);
	/* Make [off, off + n) (inside the file) read as zero, as ONE write:
	 * the memory device logs it as a single write; the file backend
	 * punches a hole (keeping the size), falling back to writes. */
	int (*zero)(struct bs_io *io, uint64_t off, uint64_t n);
	/* Set the file size; new bytes read as zero.  Counts as a write. */
	int (*truncate)(struct bs_io *io, uint64_t size);
	/* Make sure the file can later grow to `size` bytes without -ENOSPC
	 * (fallocate with KEEP_SIZE); -ENOSPC when it cannot.  Not a write:
	 * nothing reaches the file's bytes or size.  May be NULL. */
	int (*reserve)(struct bs_io *io, uint64_t size);
	/* Grow the file to `size` with zeros written for real (not a hole,
	 * not an unwritten extent), so that later writes inside it change
	 * none of the host filesystem's metadata: an fdatasync after such an
	 * overwrite flushes data only, while one after an append (or into a
	 * fallocated extent) also costs the host a journal commit.  For the
	 * journal file, whose appends are synced at every commit.  Counts as
	 * writes; a file already that long is left as it is.  May be NULL. */
	int (*prefill)(struct bs_io *io, uint64_t size);
	/* fdatasync (F_FULLFSYNC on macOS). */
	int (*sync)(struct bs_io *io);
	int (*size)(struct bs_io *io, uint64_t *size);
	/* Exclusive, non-blocking advisory lock for the handle's life:
	 * -EWOULDBLOCK when another handle holds it. */
	int (*lock)(struct bs_io *io);
	/* Release the lock and free the handle. */
	void (*close)(struct bs_io *io);
};

struct bs_io {
	const struct bs_io_ops *ops;
};

static inline int bs_io_pread(struct bs_io *io, void *b, size_t n, uint64_t off)
{ return io->ops->pread(io, b, n, off); }
static inline int bs_io_pwrite(struct bs_io *io, const void *b, size_t n, uint64_t off)
{ return io->ops->pwrite(io, b, n, off); }
static inline int bs_io_zero(struct bs_io *io, uint64_t off, uint64_t n)
{ return io->ops->zero(io, off, n); }
static inline int bs_io_truncate(struct bs_io *io, uint64_t size)
{ return io->ops->truncate(io, size); }
static inline int bs_io_reserve(struct bs_io *io, uint64_t size)
{ return io->ops->reserve ? io->ops->reserve(io, size) : 0; }
static inline int bs_io_prefill(struct bs_io *io, uint64_t size)
{ return io->ops->prefill ? io->ops->prefill(io, size) : 0; }
static inline int bs_io_sync(struct bs_io *io) { return io->ops->sync(io); }
static inline int bs_io_size(struct bs_io *io, uint64_t *s) { return io->ops->size(io, s); }
static inline int bs_io_lock(struct bs_io *io) { return io->ops->lock(io); }
static inline void bs_io_close(struct bs_io *io) { if (io) io->ops->close(io); }

/* ---- the real file backend -------------------------------------------- */

#define BS_IO_CREATE 1   /* create the file if it does not exist */

/* Open path read-write.  With BS_IO_CREATE a missing file is created
 * (mode 0644); *created tells whether that happened (may be NULL).
 * Does not lock: the BStack takes the lock. */
int bs_io_file_open(const char *path, int flags, struct bs_io **out, int *created);

/* Open path read-only (BS_IO_RDONLY): every write answers -EROFS; the
 * lock is taken as for read-write. */
#define BS_IO_RDONLY 2
/* With BS_IO_RDONLY: the lock is a shared one (flock LOCK_SH|LOCK_NB), for
 * readers that never write (bstackfs -o view): any number of them at once,
 * while every exclusive opener (a mount, fsck, the bstack crate's own open)
 * is refused as "in use", and a reader is refused while one of those
 * holds the image. */
#define BS_IO_SHARED 4

/* ---- the staging device (io_stage.c) ---------------------------------- */

/*
 * A staging device over base (taking ownership of it, closed on failure
 * too): reads see base; every write, zero, truncate and sync is held in an
 * ordered log in memory and read back, and base is never written until
 * bs_io_stage_commit() replays the log in order (each logged sync a real
 * one) and from then on passes every call through.  Closing an uncommitted
 * device drops the log, so base keeps every byte: the two-phase open.
 */
int bs_io_stage_new(struct bs_io *base, struct bs_io **out);
int bs_io_stage_commit(struct bs_io *io);
/* Writes, zeros and truncates waiting in the log (0 once committed, and
 * for a device that is not a staging one). */
uint64_t bs_io_stage_pending(struct bs_io *io);
/* True once committed (and for a device that is not a staging one). */
bool bs_io_stage_committed(struct bs_io *io);

/* ---- the memory test device ------------------------------------------- */

/*
 * A bs_memdev is a simulated disk that outlives the handles opened on it,
 * so a test can "crash" a handle, power-cycle the device and reopen.
 *
 * Power loss: bs_memdev_fail_at(dev, n) arms a fault so that the n-th
 * counted operation from now (1-based; writes, truncates and syncs all
 * count) fails with -EIO and the power is cut: every later operation on any
 * handle of the device fails with -EIO too.  bs_memdev_power_cycle() then
 * restores power: the volatile contents become the durable contents plus
 * the first `keep` writes issued after the last completed sync (0 = lose
 * them all, the default model), the fault is cleared and the lock freed.
 */
struct bs_memdev;

struct bs_memdev *bs_memdev_new(void);
void bs_memdev_free(struct bs_memdev *dev);
int bs_io_mem_open(struct bs_memdev *dev, struct bs_io **out);

void bs_memdev_fail_at(struct bs_memdev *dev, uint64_t n); /* 0 disarms */
void bs_memdev_power_cycle(struct bs_memdev *dev, uint64_t keep);

/* A second device in the same power domain as dev (an image and its
 * journal): one operation counter and fault for both, and a power cut or
 * power cycle of either is one of both.  Freeing dev frees it too (or
 * free it first).  bs_memdev_sibling: dev's sibling, or NULL. */
struct bs_memdev *bs_memdev_new_sibling(struct bs_memdev *dev);
struct bs_memdev *bs_memdev_sibling(struct bs_memdev *dev);

/* The failure modes of the disk model beyond losing a suffix:
 *   BS_PC_PREFIX  keep the first `param` pending writes (power_cycle)
 *   BS_PC_TORN    keep the first `param` whole, then a prefix of the next
 *                 write's 512-byte sectors (how many: from `seed`)
 *   BS_PC_SUBSET  keep a subset of the pending writes chosen by `seed`,
 *                 applied in issue order (reordering)
 * Applies to every device of the power domain (each its own pending log). */
enum bs_pc_mode { BS_PC_PREFIX, BS_PC_TORN, BS_PC_SUBSET };
void bs_memdev_power_cycle_mode(struct bs_memdev *dev, enum bs_pc_mode mode,
				uint64_t param, uint64_t seed);
#define BS_SECTOR 512
/* True once an armed fault has fired (the power is out). */
int bs_memdev_dead(const struct bs_memdev *dev);
/* Counted operations since creation (or the last reset). */
uint64_t bs_memdev_writes(const struct bs_memdev *dev);
uint64_t bs_memdev_syncs(const struct bs_memdev *dev);
void bs_memdev_reset_counts(struct bs_memdev *dev);
/* Writes issued since the last completed sync (what a crash can lose). */
uint64_t bs_memdev_pending(const struct bs_memdev *dev);
/* Durable contents (a fresh copy the caller frees) and raw access for
 * crafting images in tests: set the durable (and volatile) bytes. */
int bs_memdev_snapshot(const struct bs_memdev *dev, uint8_t **buf, size_t *len);
int bs_memdev_load(struct bs_memdev *dev, const void *buf, size_t len);

/* A full disk: a pwrite or truncate that would make the volatile image
 * larger than `bytes` fails with -ENOSPC, is not applied and not logged,
 * and does NOT cut the power (the device stays usable, unlike fail_at).
 * The refused operation still counts as an issued write (writes counter and
 * fail_at both see it: a real disk sees the syscall too).  Shrinking
 * truncates, zero and writes inside the current size always succeed.
 * 0 = unlimited (the default).  Lowering it below the current size only
 * refuses further growth. */
void bs_memdev_set_capacity(struct bs_memdev *dev, uint64_t bytes);

/* Tests of what happens while a sync is under way: fn(arg) runs after
 * every completed sync of dev, in the syncing thread, before the sync
 * returns (no lock of the device held).  NULL removes it. */
void bs_memdev_on_sync(struct bs_memdev *dev, void (*fn)(void *), void *arg);
/* The same before every pwrite of dev is applied (in the writing thread,
 * no lock of the device held). */
void bs_memdev_on_write(struct bs_memdev *dev, void (*fn)(void *), void *arg);

#endif
