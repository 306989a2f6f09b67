/*
 * roview.c — a copy-on-write, read-only view of an image (roview.h).
 */
#include "roview.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bstack.h"

static int read_all(int fd, uint8_t *buf, uint64_t size)
{
	uint64_t done = 0;
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

int roview_open(const char *path, uint64_t max_bytes, struct roview *out, char *why,
		size_t whylen)
{
	struct vol_opts vo = { .allocator = BS_ALLOC_NONE, .create = false };
	struct vol_error err = { "" };
	struct stat st;
	struct bs_io *io;
	uint8_t *buf = NULL;
	int r, fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(out, 0, sizeof *out);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot open: %s", strerror(-r));
		return r;
	}
	while ((r = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		r = errno == EWOULDBLOCK ? BSTACK_E_INUSE : -errno;
		snprintf(why, whylen, "%s", r == BSTACK_E_INUSE ?
			 "image is in use (mounted?): unmount it first" : strerror(-r));
		goto out;
	}
	/* the size under the lock: nobody changes the file while we read */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = -EINVAL;
		snprintf(why, whylen, "not a regular file");
		goto out;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		r = -EFBIG;
		snprintf(why, whylen, "image of %llu bytes is larger than the %llu bytes this "
			 "tool copies into memory to read it without writing",
			 (unsigned long long)st.st_size, (unsigned long long)max_bytes);
		goto out;
	}
	out->image_bytes = (uint64_t)st.st_size;
	if (!(buf = malloc(st.st_size ? (size_t)st.st_size : 1)) ||
	    !(out->dev = bs_memdev_new())) {
		r = -ENOMEM;
		snprintf(why, whylen, "out of memory for a copy of the image");
		goto out;
	}
	if ((r = read_all(fd, buf, out->image_bytes)) < 0 ||
	    (r = bs_memdev_load(out->dev, buf, out->image_bytes)) < 0) {
		snprintf(why, whylen, "cannot read the image: %s", strerror(-r));
		goto out;
	}
	free(buf);
	buf = NULL;
	close(fd);
	fd = -1;
	bs_memdev_reset_counts(out->dev);
	if ((r = bs_io_mem_open(out->dev, &io)) < 0 ||
	    (r = vol_open_io(io, &vo, &out->v, &err)) < 0) {
		snprintf(why, whylen, "%s", err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	out->open_writes = bs_memdev_writes(out->dev);
	return 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	bs_memdev_free(out->dev);
	out->dev = NULL;
	return r;
}

void roview_close(struct roview *rv)
{
	vol_close(rv->v);   /* writes go to the copy, which is thrown away */
	bs_memdev_free(rv->dev);
	memset(rv, 0, sizeof *rv);
}
