/*
 * make_corpus.c — `make_corpus DIR`: the fuzzer's seed corpus, small
 * images of every allocator (an empty one, one with files and
 * directories, one with files removed), written as DIR/<allocator>-<n>.bst.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "volume.h"

static int save(struct bs_memdev *dev, const char *dir, const char *name, int n)
{
	uint8_t *buf;
	size_t len;
	char path[4096];
	if (bs_memdev_snapshot(dev, &buf, &len))
		return -1;
	snprintf(path, sizeof path, "%s/%s-%d.bst", dir, name, n);
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(buf, 1, len, f) == len;
	if (f)
		fclose(f);
	free(buf);
	return ok ? 0 : -1;
}

static int one(enum bs_alloc_kind k, const char *dir)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol_opts o = { .allocator = k, .create = true, .block_size = k == BS_ALLOC_SLAB ? 64 : 0 };
	struct vol_error err;
	struct bs_io *io;
	struct vol *v;
	struct vol_attr a, d;
	char data[700];
	int r = 0;
	memset(data, 'x', sizeof data);
	for (int step = 0; step < 3 && !r; step++) {
		if (bs_io_mem_open(dev, &io) || vol_open_io(io, &o, &v, &err))
			return -1;
		if (step == 1) {
			vol_mkdir(v, VOL_ROOT_INO, "d", 0755, 0, 0, &d);
			for (int i = 0; i < 5; i++) {
				char name[8];
				snprintf(name, sizeof name, "f%d", i);
				vol_create(v, i % 2 ? d.ino : VOL_ROOT_INO, name, 0644, 0, 0, &a);
				vol_write(v, a.ino, data, 40 + 130 * (size_t)i, 0);
				vol_release(v, a.ino);
			}
		} else if (step == 2) {
			vol_unlink(v, VOL_ROOT_INO, "f2");
			vol_unlink(v, d.ino, "f1");
		}
		if (vol_close(v))
			return -1;
		r = save(dev, dir, bs_alloc_kind_name(k), step);
	}
	bs_memdev_free(dev);
	return r;
}

int main(int argc, char **argv)
{
	static const enum bs_alloc_kind kinds[] = { BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT,
						    BS_ALLOC_SLAB, BS_ALLOC_LINEAR };
	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus DIR\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (one(kinds[i], argv[1])) {
			fprintf(stderr, "make_corpus: %s failed\n", bs_alloc_kind_name(kinds[i]));
			return 1;
		}
	return 0;
}
