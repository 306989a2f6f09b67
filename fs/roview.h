/*
 * roview.h — open an image for reading only, for tools that must never
 * write it (bstackfs-inspect; docs/design.md §7).
 *
 * Today the volume's open path may write (the bstack's length repair, the
 * allocators' open-time recovery, reclaim, catalog repair), so the view is
 * copy-on-write: the file is opened O_RDONLY, locked as a mount locks it
 * (flock LOCK_EX|LOCK_NB: a mounted image is refused), read whole into the
 * memory device while locked, unlocked, and the copy is opened.  Whatever
 * the open writes goes to the copy.  This is the only place that knows, so
 * a real read-only open can replace it later.
 */
#ifndef BSTACKFS_ROVIEW_H
#define BSTACKFS_ROVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "volume.h"

/* Images larger than this are refused (the copy lives in memory). */
#define ROVIEW_MAX (4ULL << 30)

struct roview {
	struct vol *v;
	struct bs_memdev *dev;
	uint64_t image_bytes;     /* the file's size when it was read */
	uint64_t open_writes;     /* writes the open made to the copy */
};

/* 0, or a negative errno with a one-line reason in why. */
int roview_open(const char *path, uint64_t max_bytes, struct roview *out, char *why,
		size_t whylen);
void roview_close(struct roview *rv);

#endif
