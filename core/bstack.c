/*
 * bstack.c — the file layer (DESIGN.md §2).
 *
 * On-disk layout:
 *
 *   file 0..8    magic  "BSTK" 0x00 0x01 0x08 0x00 written; any "BSTK\0\1" or
 *                       "BSTK\0\2" accepted (the 16-byte-header families)
 *   file 8..16   clen   committed payload length, u64 LE
 *   file 16..    payload, logical offset 0 = file byte 16
 *
 * Crash invariant: after a crash at any point, reopening yields the state
 * before or after the interrupted operation.  Kept by the order of each
 * mutation, one sync at its end:
 *   grow   (push, extend): data (or ftruncate up) first, then clen, then sync.
 *          A crash that loses clen leaves a file longer than 16 + clen:
 *          recovery truncates it (before-state).
 *   shrink (pop, discard): ftruncate first, then clen, then sync.  A crash
 *          that loses clen leaves a file shorter than 16 + clen: recovery
 *          sets clen to the file's payload size (after-state).
 *   in place (set, zero): data, then sync; the length never changes.
 * The length is cached in memory; while the handle is open it is the truth.
 *
 * Locking: `lock` is a read-write lock.  Operations that change the length
 * take it for writing; reads and in-place writes (set, zero, sync) take it
 * for reading, so they run in parallel and never see the length move.
 * Callers that write overlapping ranges concurrently order themselves.
 */
#include "bstack.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define HDR BSTACK_HEADER_SIZE

struct bstack {
	struct bs_io *io;
	pthread_rwlock_t lock;
	uint64_t len;           /* committed payload length */
	uint8_t magic[8];
	uint64_t n_writes, n_syncs;
	struct bstack_found found;   /* the header against the file, at open */
};

/* ---- counted backend calls ---------------------------------------------- */

static int dev_write(struct bstack *bs, const void *buf, size_t n, uint64_t off)
{
	__atomic_fetch_add(&bs->n_writes, 1, __ATOMIC_RELAXED);
	return bs_io_pwrite(bs->io, buf, n, off);
}

static int dev_zero(struct bstack *bs, uint64_t off, uint64_t n)
{
	__atomic_fetch_add(&bs->n_writes, 1, __ATOMIC_RELAXED);
	return bs_io_zero(bs->io, off, n);
}

static int dev_truncate(struct bstack *bs, uint64_t size)
{
	__atomic_fetch_add(&bs->n_writes, 1, __ATOMIC_RELAXED);
	return bs_io_truncate(bs->io, size);
}

static int dev_sync(struct bstack *bs)
{
	__atomic_fetch_add(&bs->n_syncs, 1, __ATOMIC_RELAXED);
	return bs_io_sync(bs->io);
}

static int write_clen(struct bstack *bs, uint64_t clen)
{
	uint8_t b[8];
	le64_put(b, clen);
	return dev_write(bs, b, 8, 8);
}

/* Payload end offset in the file for a payload of len bytes. */
static int file_end(uint64_t len, uint64_t n, uint64_t *end)
{
	uint64_t t;
	if (!add_ok(len, n, &t) || !add_ok(t, HDR, end) || *end > (uint64_t)INT64_MAX)
		return -EFBIG;
	return 0;
}

/* ---- open / create / close ---------------------------------------------- */

const char *bstack_strerror(int err)
{
	switch (err) {
	case BSTACK_E_SHORT:
		return "not a bstack image (file shorter than the 16-byte header)";
	case BSTACK_E_MAGIC:
		return "not a bstack image (bad magic)";
	case BSTACK_E_VERSION:
		return "unsupported bstack version";
	case BSTACK_E_INUSE:
		return "image is in use";
	default:
		return strerror(-err);
	}
}

static int bstack_new(struct bs_io *io, struct bstack **out)
{
	struct bstack *bs = calloc(1, sizeof *bs);
	if (!bs)
		return -ENOMEM;
	if (pthread_rwlock_init(&bs->lock, NULL) != 0) {
		free(bs);
		return -ENOMEM;
	}
	bs->io = io;
	*out = bs;
	return 0;
}

static void bstack_free(struct bstack *bs)
{
	pthread_rwlock_destroy(&bs->lock);
	free(bs);
}

/* Validate the header; never writes.  Sets bs->magic and the stored clen. */
static int read_header(struct bstack *bs, uint64_t size, uint64_t *clen)
{
	uint8_t h[HDR];
	if (size < HDR)
		return BSTACK_E_SHORT;
	int r = bs_io_pread(bs->io, h, HDR, 0);
	if (r)
		return r;
	if (memcmp(h, "BSTK", 4) != 0)
		return BSTACK_E_MAGIC;
	if (h[4] != 0 || (h[5] != 1 && h[5] != 2))
		return BSTACK_E_VERSION;
	memcpy(bs->magic, h, 8);
	*clen = le64_get(h + 8);
	return 0;
}

/*
 * The two-phase open (docs/design.md §2): bstack_open_found() validates the
 * header and writes nothing; the handle's length is then the file's
 * payload size, so the caller can read every byte that is on disk and
 * judge what the recovery would drop.  bstack_recover() applies it (a
 * journal replay would slot in between the two).
 */
int bstack_open_found(struct bs_io *io, struct bstack **out, struct bstack_found *found)
{
	struct bstack *bs;
	uint64_t size, clen;
	int r = bstack_new(io, &bs);
	if (r) {
		bs_io_close(io);
		return r;
	}
	r = bs_io_lock(io);
	if (!r)
		r = bs_io_size(io, &size);
	if (!r)
		r = read_header(bs, size, &clen);
	if (r) {
		bs_io_close(io);
		bstack_free(bs);
		return r;
	}
	bs->found.clen = clen;
	bs->found.payload = size - HDR;
	bs->len = bs->found.payload;
	if (found)
		*found = bs->found;
	*out = bs;
	return 0;
}

int bstack_recover(struct bstack *bs)
{
	/* Recovery: the file is the truth about what reached the disk. */
	uint64_t clen = bs->found.clen, payload = bs->found.payload;
	int r = 0;
	if (payload > clen) {
		/* a grow lost its clen update: back to the committed length */
		r = dev_truncate(bs, HDR + clen);
		if (!r)
			r = dev_sync(bs);
	} else if (payload < clen) {
		/* a shrink truncated but lost its clen update */
		clen = payload;
		r = write_clen(bs, clen);
		if (!r)
			r = dev_sync(bs);
	}
	if (r)
		return r;
	bs->len = clen;
	bs->found.clen = bs->found.payload = clen;
	return 0;
}

int bstack_restore_len(struct bstack *bs)
{
	uint64_t payload = bs->found.payload;
	int r = write_clen(bs, payload);
	if (!r)
		r = dev_sync(bs);
	if (r)
		return r;
	bs->found.clen = payload;
	bs->len = payload;
	return 0;
}

int bstack_open(struct bs_io *io, struct bstack **out)
{
	struct bstack *bs;
	int r = bstack_open_found(io, &bs, NULL);
	if (r)
		return r;
	if ((r = bstack_recover(bs))) {
		bstack_close(bs);
		return r;
	}
	*out = bs;
	return 0;
}

int bstack_create(struct bs_io *io, struct bstack **out)
{
	struct bstack *bs;
	uint64_t size;
	int r = bstack_new(io, &bs);
	if (r) {
		bs_io_close(io);
		return r;
	}
	r = bs_io_lock(io);
	if (!r)
		r = bs_io_size(io, &size);
	if (!r && size != 0)
		r = -EEXIST;
	if (!r) {
		uint8_t h[HDR];
		memcpy(h, BSTACK_MAGIC, 8);
		le64_put(h + 8, 0);
		r = dev_write(bs, h, HDR, 0);
		if (!r)
			r = dev_sync(bs);
		memcpy(bs->magic, h, 8);
	}
	if (r) {
		bs_io_close(io);
		bstack_free(bs);
		return r;
	}
	*out = bs;
	return 0;
}

int bstack_open_path(const char *path, bool create, struct bstack **out)
{
	struct bs_io *io;
	int created = 0;
	int r = bs_io_file_open(path, create ? BS_IO_CREATE : 0, &io, &created);
	if (r)
		return r;
	if (!created)
		return bstack_open(io, out);
	r = bstack_create(io, out);
	if (r)
		unlink(path);   /* do not leave a half-made image behind */
	return r;
}

void bstack_close(struct bstack *bs)
{
	if (!bs)
		return;
	bs_io_close(bs->io);
	bstack_free(bs);
}

/* ---- reads ---------------------------------------------------------------- */

uint64_t bstack_len(struct bstack *bs)
{
	return __atomic_load_n(&bs->len, __ATOMIC_ACQUIRE);
}

void bstack_magic(struct bstack *bs, uint8_t magic[8])
{
	memcpy(magic, bs->magic, 8);
}

int bstack_get(struct bstack *bs, uint64_t off, void *buf, uint64_t n)
{
	if (n > SIZE_MAX)
		return -ERANGE;
	pthread_rwlock_rdlock(&bs->lock);
	int r = range_ok(off, n, bs->len) ? 0 : -ERANGE;
	if (!r && n)
		r = bs_io_pread(bs->io, buf, (size_t)n, HDR + off);
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_peek(struct bstack *bs, uint64_t off, uint8_t **buf, uint64_t *n)
{
	pthread_rwlock_rdlock(&bs->lock);
	int r = 0;
	uint8_t *b = NULL;
	uint64_t len = bs->len;
	if (off > len) {
		r = -ERANGE;
	} else if (len - off > SIZE_MAX) {
		r = -ENOMEM;
	} else if (len - off) {
		b = malloc((size_t)(len - off));
		if (!b)
			r = -ENOMEM;
		else
			r = bs_io_pread(bs->io, b, (size_t)(len - off), HDR + off);
	}
	pthread_rwlock_unlock(&bs->lock);
	if (r) {
		free(b);
		return r;
	}
	*buf = b;
	*n = len - off;
	return 0;
}

/* ---- growing and shrinking ------------------------------------------------ */

/* Undo a failed grow: best effort back to the committed length.  If the
 * device is gone this fails too, and open-time recovery does the rest. */
static void rollback_grow(struct bstack *bs)
{
	if (dev_truncate(bs, HDR + bs->len) == 0 && write_clen(bs, bs->len) == 0)
		dev_sync(bs);
}

/* Grow by n bytes: data (buf) or zeros (buf == NULL).  Write lock held. */
static int grow_locked(struct bstack *bs, const void *buf, uint64_t n, uint64_t *off)
{
	uint64_t end;
	int r = file_end(bs->len, n, &end);
	if (r)
		return r;
	if (n > SIZE_MAX)
		return -EFBIG;
	if (off)
		*off = bs->len;
	if (n == 0)
		return 0;
	/* step 1: data (an ftruncate up reads as zeros) */
	r = buf ? dev_write(bs, buf, (size_t)n, HDR + bs->len) : dev_truncate(bs, end);
	/* step 2: the commit point, clen; step 3: one sync */
	if (!r)
		r = write_clen(bs, bs->len + n);
	if (!r)
		r = dev_sync(bs);
	if (r) {
		rollback_grow(bs);
		return r;
	}
	__atomic_store_n(&bs->len, bs->len + n, __ATOMIC_RELEASE);
	return 0;
}

/* Shrink by n bytes.  Write lock held. */
static int shrink_locked(struct bstack *bs, void *buf, uint64_t n)
{
	if (n > bs->len)
		return -ERANGE;
	if (n == 0)
		return 0;
	uint64_t nlen = bs->len - n;
	int r = 0;
	if (buf)
		r = n > SIZE_MAX ? -ENOMEM : bs_io_pread(bs->io, buf, (size_t)n, HDR + nlen);
	/* step 1: truncate; step 2: clen; step 3: sync.  A crash after step 1
	 * recovers to the after-state (file shorter than clen). */
	if (!r)
		r = dev_truncate(bs, HDR + nlen);
	if (!r)
		r = write_clen(bs, nlen);
	if (!r)
		r = dev_sync(bs);
	if (r) {
		/* The bytes may be gone already: the file is the truth, so
		 * adopt whatever length it now has, as recovery would. */
		uint64_t size;
		if (bs_io_size(bs->io, &size) == 0 && size >= HDR && size - HDR < bs->len)
			__atomic_store_n(&bs->len, size - HDR, __ATOMIC_RELEASE);
		return r;
	}
	__atomic_store_n(&bs->len, nlen, __ATOMIC_RELEASE);
	return 0;
}

int bstack_push(struct bstack *bs, const void *buf, uint64_t n, uint64_t *off)
{
	if (n && !buf)
		return -EINVAL;
	pthread_rwlock_wrlock(&bs->lock);
	int r = grow_locked(bs, buf, n, off);
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_extend(struct bstack *bs, uint64_t n, uint64_t *off)
{
	pthread_rwlock_wrlock(&bs->lock);
	int r = grow_locked(bs, NULL, n, off);
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_pop(struct bstack *bs, void *buf, uint64_t n)
{
	pthread_rwlock_wrlock(&bs->lock);
	int r = shrink_locked(bs, buf, n);
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_discard(struct bstack *bs, uint64_t n)
{
	return bstack_pop(bs, NULL, n);
}

int bstack_try_extend_zeros(struct bstack *bs, uint64_t expected_len, uint64_t n,
			    bool *done)
{
	pthread_rwlock_wrlock(&bs->lock);
	int r = 0;
	*done = false;
	if (bs->len == expected_len) {
		r = grow_locked(bs, NULL, n, NULL);
		*done = r == 0;
	}
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_try_discard(struct bstack *bs, uint64_t expected_len, uint64_t n, bool *done)
{
	pthread_rwlock_wrlock(&bs->lock);
	int r = 0;
	*done = false;
	if (bs->len == expected_len) {
		r = shrink_locked(bs, NULL, n);
		*done = r == 0;
	}
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

/* ---- in place --------------------------------------------------------------- */

static int write_in_place(struct bstack *bs, uint64_t off, const void *buf, uint64_t n,
			  bool sync)
{
	if (n > SIZE_MAX)
		return -ERANGE;
	pthread_rwlock_rdlock(&bs->lock);
	int r = range_ok(off, n, bs->len) ? 0 : -ERANGE;
	if (!r && n) {
		/* one backend write either way, so a power cut keeps all or
		 * nothing of it under the model of io.h */
		if (buf)
			r = dev_write(bs, buf, (size_t)n, HDR + off);
		else
			r = dev_zero(bs, HDR + off, n);
		if (!r && sync)
			r = dev_sync(bs);
	}
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

int bstack_set(struct bstack *bs, uint64_t off, const void *buf, uint64_t n)
{
	if (n && !buf)
		return -EINVAL;
	return write_in_place(bs, off, buf, n, true);
}

int bstack_zero(struct bstack *bs, uint64_t off, uint64_t n)
{
	return write_in_place(bs, off, NULL, n, true);
}

int bstack_set_nosync(struct bstack *bs, uint64_t off, const void *buf, uint64_t n)
{
	if (n && !buf)
		return -EINVAL;
	return write_in_place(bs, off, buf, n, false);
}

int bstack_sync(struct bstack *bs)
{
	pthread_rwlock_rdlock(&bs->lock);
	int r = dev_sync(bs);
	pthread_rwlock_unlock(&bs->lock);
	return r;
}

struct bs_io *bstack_io(struct bstack *bs)
{
	return bs->io;
}

void bstack_stats(struct bstack *bs, struct bstack_stats *st)
{
	st->writes = __atomic_load_n(&bs->n_writes, __ATOMIC_RELAXED);
	st->syncs = __atomic_load_n(&bs->n_syncs, __ATOMIC_RELAXED);
}
