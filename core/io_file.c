/*
 * io_file.c — the real file backend: pread/pwrite/ftruncate/fdatasync on one
 * descriptor, flock(LOCK_EX|LOCK_NB) for exclusivity (LOCK_SH for a
 * read-only reader that asks for it, BS_IO_SHARED).
 *
 * Assumption written down (SQLite-style): fdatasync orders and persists
 * every earlier write and the file size; on macOS fcntl(F_FULLFSYNC) is the
 * only call that reaches the platter, so it is used there.
 */
#include "io.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct io_file {
	struct bs_io io;
	int fd;
	bool rdonly;   /* BS_IO_RDONLY: every write is -EROFS */
	bool shared;   /* BS_IO_SHARED: lock() takes LOCK_SH */
};

static int file_pread(struct bs_io *io, void *buf, size_t n, uint64_t off)
{
	struct io_file *f = (struct io_file *)io;
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(f->fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;   /* short read: past the end */
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int file_pwrite(struct bs_io *io, const void *buf, size_t n, uint64_t off)
{
	struct io_file *f = (struct io_file *)io;
	const uint8_t *p = buf;
	if (f->rdonly)
		return -EROFS;
	while (n) {
		ssize_t r = pwrite(f->fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int file_zero(struct bs_io *io, uint64_t off, uint64_t n)
{
	struct io_file *f = (struct io_file *)io;
	static const uint8_t zeros[64 * 1024];
	if (f->rdonly)
		return -EROFS;
	if (off > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	/* A punched hole reads as zeros and gives the space back to the host
	 * filesystem: freed allocator blocks cost no disk. */
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)n) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < sizeof zeros ? (size_t)(n - done) : sizeof zeros;
		int r = file_pwrite(io, zeros, k, off + done);
		if (r)
			return r;
		done += k;
	}
	return 0;
}

static int file_truncate(struct bs_io *io, uint64_t size)
{
	struct io_file *f = (struct io_file *)io;
	struct stat st;
	if (f->rdonly)
		return -EROFS;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	/* Growing: reserve the blocks, so that a full host filesystem fails
	 * here, where the file layer rolls the grow back, and not at a later
	 * write into a sparse tail.  Where fallocate is unsupported the
	 * ftruncate below grows the file sparse. */
	if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < size) {
		off_t from = st.st_size;
		if (fallocate(f->fd, 0, from, (off_t)size - from) == 0)
			return 0;
		if (errno == ENOSPC || errno == EFBIG || errno == EDQUOT) {
			int e = -errno;
			/* give back whatever part it managed to reserve */
			if (ftruncate(f->fd, from) < 0)
				return -errno;
			return e;
		}
	}
	while (ftruncate(f->fd, (off_t)size) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Reserve blocks past the end without changing the size (the journal's
 * growth is applied later and must not fail then). */
static int file_reserve(struct bs_io *io, uint64_t size)
{
	struct io_file *f = (struct io_file *)io;
	struct stat st;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size >= size)
		return 0;
	if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, st.st_size, (off_t)size - st.st_size) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
		return 0;   /* no reservations here: a later write may still fail */
	return -errno;
}

static int file_prefill(struct bs_io *io, uint64_t size)
{
	struct io_file *f = (struct io_file *)io;
	enum { CHUNK = 1 << 20 };
	struct stat st;
	if (f->rdonly)
		return -EROFS;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size >= size)
		return 0;
	uint8_t *zeros = calloc(1, CHUNK);
	if (!zeros)
		return -ENOMEM;
	int r = 0;
	for (uint64_t off = (uint64_t)st.st_size; !r && off < size;) {
		size_t k = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		r = file_pwrite(io, zeros, k, off);
		off += k;
	}
	free(zeros);
	return r;
}

static int file_sync(struct bs_io *io)
{
	struct io_file *f = (struct io_file *)io;
#ifdef F_FULLFSYNC
	if (fcntl(f->fd, F_FULLFSYNC) == 0)
		return 0;
#endif
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int file_size(struct bs_io *io, uint64_t *size)
{
	struct io_file *f = (struct io_file *)io;
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int file_lock(struct bs_io *io)
{
	struct io_file *f = (struct io_file *)io;
	while (flock(f->fd, (f->shared ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	}
	return 0;
}

static void file_close(struct bs_io *io)
{
	struct io_file *f = (struct io_file *)io;
	close(f->fd);   /* releases the flock too */
	free(f);
}

static const struct bs_io_ops file_ops = {
	.pread = file_pread,
	.pwrite = file_pwrite,
	.zero = file_zero,
	.truncate = file_truncate,
	.reserve = file_reserve,
	.prefill = file_prefill,
	.sync = file_sync,
	.size = file_size,
	.lock = file_lock,
	.close = file_close,
};

int bs_io_file_open(const char *path, int flags, struct bs_io **out, int *created)
{
	struct io_file *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	int was_created = 0;
	bool rdonly = (flags & BS_IO_RDONLY) != 0;
	int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && (flags & BS_IO_CREATE) && !rdonly) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		was_created = fd >= 0;
	}
	if (fd < 0) {
		int e = -errno;
		free(f);
		return e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		free(f);
		return -EINVAL;
	}
	if (getenv("BSX_SEQ"))
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	f->io.ops = &file_ops;
	f->fd = fd;
	f->rdonly = rdonly;
	f->shared = rdonly && (flags & BS_IO_SHARED);
	*out = &f->io;
	if (created)
		*created = was_created;
	return 0;
}
