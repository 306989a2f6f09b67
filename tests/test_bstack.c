/*
 * test_bstack.c — the file layer (core/bstack.h, docs/design.md §2): every
 * operation and its edges, the exact on-disk bytes, reopen and recovery,
 * refusals, the lock, threads, and power loss at every write and sync of
 * every mutation (on the memory device of core/io.h).
 */
#include "bstack.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR BSTACK_HEADER_SIZE

/* ---- helpers ------------------------------------------------------------ */

/* A fresh image on a new memory device. */
static struct bstack *mem_create(struct bs_memdev **devp)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = NULL;
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(bstack_create(io, &bs) == 0);
	*devp = dev;
	return bs;
}

static int mem_open(struct bs_memdev *dev, struct bstack **bs)
{
	struct bs_io *io = NULL;
	int r = bs_io_mem_open(dev, &io);
	if (r)
		return r;
	return bstack_open(io, bs);
}

static struct bstack *mem_reopen(struct bs_memdev *dev)
{
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(mem_open(dev, &bs) == 0);
	return bs;
}

static struct bstack *file_create(char **pathp)
{
	char *path = h_tmp_path("img");
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bstack_open_path(path, true, &bs) == 0);
	*pathp = path;
	return bs;
}

static struct bstack *file_reopen(const char *path)
{
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	return bs;
}

/* The handle shows exactly len bytes equal to p. */
static bool shows(struct bstack *bs, const void *p, uint64_t len)
{
	if (bstack_len(bs) != len)
		return false;
	uint8_t *b = malloc(len ? len : 1);
	bool ok = b && bstack_get(bs, 0, b, len) == 0 && (len == 0 || memcmp(b, p, len) == 0);
	free(b);
	return ok;
}

/* raw is exactly magic + clen = len + the payload p. */
static bool raw_is(const uint8_t *raw, size_t rawlen, const char *magic,
		   const void *p, uint64_t len)
{
	return rawlen == HDR + len && memcmp(raw, magic, 8) == 0 &&
	       le64_get(raw + 8) == len && (len == 0 || memcmp(raw + HDR, p, len) == 0);
}

static bool file_is(const char *path, const void *p, uint64_t len)
{
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	if (h_read_file(path, &raw, &rawlen) != 0)
		return false;
	bool ok = raw_is(raw, rawlen, BSTACK_MAGIC, p, len);
	free(raw);
	return ok;
}

static bool durable_is(struct bs_memdev *dev, const void *p, uint64_t len)
{
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	if (bs_memdev_snapshot(dev, &raw, &rawlen) != 0)
		return false;
	bool ok = raw_is(raw, rawlen, BSTACK_MAGIC, p, len);
	free(raw);
	return ok;
}

/* A raw image: header (magic, clen) + payload bytes (pattern tag). */
static uint8_t *craft(const char *magic, uint64_t clen, size_t payload, uint64_t tag,
		      size_t *rawlen)
{
	uint8_t *raw = malloc(HDR + payload);
	CU_ASSERT_FATAL(raw != NULL);
	memcpy(raw, magic, 8);
	le64_put(raw + 8, clen);
	h_pattern(raw + HDR, payload, tag, 0);
	*rawlen = HDR + payload;
	return raw;
}

/* ---- the on-disk bytes -------------------------------------------------- */

static const uint8_t hello_image[] = {
	0x42, 0x53, 0x54, 0x4b, 0x00, 0x01, 0x08, 0x00,
	0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

static void pushing_hello_makes_the_documented_bytes(void)
{
	char *path;
	struct bstack *bs = file_create(&path);
	uint64_t off = 99;
	CU_ASSERT(bstack_push(bs, "hello", 5, &off) == 0);
	CU_ASSERT(off == 0);
	bstack_close(bs);
	uint8_t *raw = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(h_read_file(path, &raw, &len) == 0);
	CU_ASSERT(len == sizeof hello_image);
	CU_ASSERT(len == sizeof hello_image && memcmp(raw, hello_image, len) == 0);
	free(raw);
	free(path);
}

static void a_new_image_is_the_bare_header(void)
{
	char *path;
	struct bstack *bs = file_create(&path);
	CU_ASSERT(bstack_len(bs) == 0);
	uint8_t magic[8];
	bstack_magic(bs, magic);
	CU_ASSERT(memcmp(magic, BSTACK_MAGIC, 8) == 0);
	bstack_close(bs);
	CU_ASSERT(file_is(path, "", 0));
	free(path);
}

static void create_on_memory_device_makes_the_same_bytes(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(durable_is(dev, "", 0));
	CU_ASSERT(bstack_push(bs, "hello", 5, NULL) == 0);
	uint8_t *raw = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &raw, &len) == 0);
	CU_ASSERT(len == sizeof hello_image && memcmp(raw, hello_image, len) == 0);
	free(raw);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void create_refuses_a_device_that_is_not_empty(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = NULL;
	struct bstack *bs = NULL;
	CU_ASSERT(bs_memdev_load(dev, "data", 4) == 0);
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT(bstack_create(io, &bs) < 0);
	uint8_t *raw = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &raw, &len) == 0);
	CU_ASSERT(len == 4 && memcmp(raw, "data", 4) == 0);
	free(raw);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	bs_memdev_free(dev);
}

/* ---- happy paths and edges of every operation ---------------------------- */

static void push_appends_and_returns_the_offset(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	uint8_t a[100], b[33], all[133];
	h_pattern(a, sizeof a, 1, 0);
	h_pattern(b, sizeof b, 2, 0);
	memcpy(all, a, 100);
	memcpy(all + 100, b, 33);
	uint64_t off = 77;
	CU_ASSERT(bstack_push(bs, a, 100, &off) == 0);
	CU_ASSERT(off == 0);
	CU_ASSERT(bstack_push(bs, b, 33, &off) == 0);
	CU_ASSERT(off == 100);
	CU_ASSERT(bstack_push(bs, b, 33, NULL) == 0);
	CU_ASSERT(bstack_len(bs) == 166);
	CU_ASSERT(bstack_pop(bs, NULL, 33) == 0);
	CU_ASSERT(shows(bs, all, 133));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void push_of_zero_bytes_changes_nothing(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	uint64_t off = 0;
	CU_ASSERT(bstack_push(bs, "zzz", 0, &off) == 0);
	CU_ASSERT(off == 3);
	CU_ASSERT(bstack_push(bs, NULL, 0, NULL) == 0);
	CU_ASSERT(shows(bs, "abc", 3));
	CU_ASSERT(durable_is(dev, "abc", 3));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void push_refuses_a_length_that_overflows(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	uint8_t one = 1;
	/* the buffer is not that long: the call must refuse before reading it */
	CU_ASSERT(bstack_push(bs, &one, UINT64_MAX, NULL) < 0);
	CU_ASSERT(bstack_push(bs, &one, UINT64_MAX - 2, NULL) < 0);
	CU_ASSERT(bstack_push(bs, &one, UINT64_MAX - 18, NULL) < 0);
	CU_ASSERT(bstack_extend(bs, UINT64_MAX, NULL) < 0);
	CU_ASSERT(bstack_extend(bs, UINT64_MAX - 3, NULL) < 0);
	CU_ASSERT(bstack_extend(bs, UINT64_MAX - 18, NULL) < 0);
	CU_ASSERT(shows(bs, "abc", 3));
	CU_ASSERT(durable_is(dev, "abc", 3));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void extend_appends_zeros(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	uint8_t exp[4 + 70000] = { 'a', 'b', 'c', 'd' };
	CU_ASSERT(bstack_push(bs, "abcd", 4, NULL) == 0);
	uint64_t off = 0;
	CU_ASSERT(bstack_extend(bs, 70000, &off) == 0);
	CU_ASSERT(off == 4);
	CU_ASSERT(shows(bs, exp, sizeof exp));
	CU_ASSERT(bstack_extend(bs, 0, &off) == 0);
	CU_ASSERT(off == sizeof exp);
	CU_ASSERT(shows(bs, exp, sizeof exp));
	CU_ASSERT(durable_is(dev, exp, sizeof exp));
	bstack_close(bs);
	bs_memdev_free(dev);
}

/* Bytes cut off by pop must not come back as garbage when the image grows. */
static void extend_after_pop_reads_zeros_not_old_bytes(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	uint8_t b[64], exp[64] = { 0 };
	h_pattern(b, sizeof b, 3, 0);
	memcpy(exp, b, 16);
	CU_ASSERT(bstack_push(bs, b, 64, NULL) == 0);
	CU_ASSERT(bstack_discard(bs, 48) == 0);
	CU_ASSERT(bstack_extend(bs, 48, NULL) == 0);
	CU_ASSERT(shows(bs, exp, 64));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void pop_returns_the_last_bytes_and_shrinks(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123456789", 10, NULL) == 0);
	char got[8] = { 0 };
	CU_ASSERT(bstack_pop(bs, got, 3) == 0);
	CU_ASSERT(memcmp(got, "789", 3) == 0);
	CU_ASSERT(shows(bs, "0123456", 7));
	CU_ASSERT(durable_is(dev, "0123456", 7));
	/* n = 0: nothing */
	CU_ASSERT(bstack_pop(bs, got, 0) == 0);
	CU_ASSERT(shows(bs, "0123456", 7));
	/* one past the end: refused, nothing changes */
	CU_ASSERT(bstack_pop(bs, got, 8) < 0);
	CU_ASSERT(bstack_pop(bs, NULL, UINT64_MAX) < 0);
	CU_ASSERT(shows(bs, "0123456", 7));
	/* exactly everything */
	memset(got, 0, sizeof got);
	CU_ASSERT(bstack_pop(bs, got, 7) == 0);
	CU_ASSERT(memcmp(got, "0123456", 7) == 0);
	CU_ASSERT(shows(bs, "", 0));
	CU_ASSERT(durable_is(dev, "", 0));
	CU_ASSERT(bstack_pop(bs, got, 1) < 0);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void discard_drops_the_last_bytes(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abcdef", 6, NULL) == 0);
	CU_ASSERT(bstack_discard(bs, 0) == 0);
	CU_ASSERT(bstack_discard(bs, 2) == 0);
	CU_ASSERT(shows(bs, "abcd", 4));
	CU_ASSERT(bstack_discard(bs, 5) < 0);
	CU_ASSERT(bstack_discard(bs, UINT64_MAX) < 0);
	CU_ASSERT(shows(bs, "abcd", 4));
	CU_ASSERT(bstack_discard(bs, 4) == 0);
	CU_ASSERT(shows(bs, "", 0));
	CU_ASSERT(durable_is(dev, "", 0));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void get_reads_exact_ranges_and_refuses_outside(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123456789", 10, NULL) == 0);
	char b[16] = { 0 };
	CU_ASSERT(bstack_get(bs, 3, b, 4) == 0);
	CU_ASSERT(memcmp(b, "3456", 4) == 0);
	CU_ASSERT(bstack_get(bs, 6, b, 4) == 0);           /* exact end */
	CU_ASSERT(memcmp(b, "6789", 4) == 0);
	CU_ASSERT(bstack_get(bs, 0, b, 10) == 0);
	CU_ASSERT(bstack_get(bs, 10, b, 0) == 0);          /* n = 0 at the end */
	CU_ASSERT(bstack_get(bs, 0, b, 0) == 0);
	CU_ASSERT(bstack_get(bs, 7, b, 4) == -ERANGE);     /* one past */
	CU_ASSERT(bstack_get(bs, 0, b, 11) == -ERANGE);
	CU_ASSERT(bstack_get(bs, 10, b, 1) == -ERANGE);
	CU_ASSERT(bstack_get(bs, 11, b, 0) == -ERANGE);
	CU_ASSERT(bstack_get(bs, UINT64_MAX, b, 1) == -ERANGE);
	CU_ASSERT(bstack_get(bs, 1, b, UINT64_MAX) == -ERANGE);
	CU_ASSERT(bstack_get(bs, UINT64_MAX - 2, b, 4) == -ERANGE);
	CU_ASSERT(bstack_get(bs, UINT64_MAX, b, UINT64_MAX) == -ERANGE);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void peek_returns_the_tail_from_an_offset(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123456789", 10, NULL) == 0);
	uint8_t *b = NULL;
	uint64_t n = 0;
	CU_ASSERT_FATAL(bstack_peek(bs, 4, &b, &n) == 0);
	CU_ASSERT(n == 6 && b && memcmp(b, "456789", 6) == 0);
	free(b);
	b = NULL;
	CU_ASSERT_FATAL(bstack_peek(bs, 0, &b, &n) == 0);
	CU_ASSERT(n == 10 && b && memcmp(b, "0123456789", 10) == 0);
	free(b);
	b = NULL;
	n = 5;
	CU_ASSERT(bstack_peek(bs, 10, &b, &n) == 0);       /* at the end: empty */
	CU_ASSERT(n == 0);
	free(b);
	CU_ASSERT(bstack_peek(bs, 11, &b, &n) == -ERANGE);
	CU_ASSERT(bstack_peek(bs, UINT64_MAX, &b, &n) == -ERANGE);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void set_overwrites_in_place_and_keeps_the_length(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123456789", 10, NULL) == 0);
	CU_ASSERT(bstack_set(bs, 2, "ab", 2) == 0);
	CU_ASSERT(bstack_set(bs, 7, "xyz", 3) == 0);      /* exact end */
	CU_ASSERT(bstack_set(bs, 10, "q", 0) == 0);       /* n = 0 at the end */
	CU_ASSERT(bstack_set(bs, 0, NULL, 0) == 0);
	CU_ASSERT(shows(bs, "01ab456xyz", 10));
	CU_ASSERT(durable_is(dev, "01ab456xyz", 10));
	CU_ASSERT(bstack_set(bs, 8, "QQQ", 3) == -ERANGE); /* one past */
	CU_ASSERT(bstack_set(bs, 10, "Q", 1) == -ERANGE);
	CU_ASSERT(bstack_set(bs, 11, "Q", 0) == -ERANGE);
	CU_ASSERT(bstack_set(bs, UINT64_MAX, "Q", 1) == -ERANGE);
	CU_ASSERT(bstack_set(bs, 1, "Q", UINT64_MAX) == -ERANGE);
	CU_ASSERT(bstack_set(bs, UINT64_MAX - 1, "QQ", 3) == -ERANGE);
	CU_ASSERT(shows(bs, "01ab456xyz", 10));
	CU_ASSERT(durable_is(dev, "01ab456xyz", 10));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void zero_clears_in_place_and_keeps_the_length(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123456789", 10, NULL) == 0);
	CU_ASSERT(bstack_zero(bs, 1, 2) == 0);
	CU_ASSERT(bstack_zero(bs, 8, 2) == 0);            /* exact end */
	CU_ASSERT(bstack_zero(bs, 10, 0) == 0);
	const char exp[10] = { '0', 0, 0, '3', '4', '5', '6', '7', 0, 0 };
	CU_ASSERT(shows(bs, exp, 10));
	CU_ASSERT(durable_is(dev, exp, 10));
	CU_ASSERT(bstack_zero(bs, 8, 3) == -ERANGE);
	CU_ASSERT(bstack_zero(bs, 11, 0) == -ERANGE);
	CU_ASSERT(bstack_zero(bs, UINT64_MAX, 1) == -ERANGE);
	CU_ASSERT(bstack_zero(bs, 1, UINT64_MAX) == -ERANGE);
	CU_ASSERT(bstack_zero(bs, 0, UINT64_MAX) == -ERANGE);
	CU_ASSERT(shows(bs, exp, 10));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void zero_of_a_large_range_clears_every_byte(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	size_t n = 200000;
	uint8_t *b = malloc(n), *exp = malloc(n);
	CU_ASSERT_FATAL(b && exp);
	h_pattern(b, n, 4, 0);
	memcpy(exp, b, n);
	memset(exp + 3, 0, n - 7);
	CU_ASSERT(bstack_push(bs, b, n, NULL) == 0);
	CU_ASSERT(bstack_zero(bs, 3, n - 7) == 0);
	CU_ASSERT(shows(bs, exp, n));
	CU_ASSERT(durable_is(dev, exp, n));
	free(b);
	free(exp);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void set_nosync_is_durable_after_sync(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "0123", 4, NULL) == 0);
	uint64_t syncs = bs_memdev_syncs(dev);
	CU_ASSERT(bstack_set_nosync(bs, 1, "ab", 2) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == syncs);
	CU_ASSERT(shows(bs, "0ab3", 4));
	CU_ASSERT(bstack_set_nosync(bs, 3, "ab", 2) == -ERANGE);
	CU_ASSERT(bstack_sync(bs) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == syncs + 1);
	bstack_close(bs);
	bs_memdev_power_cycle(dev, 0);
	bs = mem_reopen(dev);
	CU_ASSERT(shows(bs, "0ab3", 4));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void try_extend_zeros_acts_only_when_the_length_matches(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "ab", 2, NULL) == 0);
	bool done = true;
	CU_ASSERT(bstack_try_extend_zeros(bs, 3, 4, &done) == 0);
	CU_ASSERT(done == false);
	CU_ASSERT(bstack_try_extend_zeros(bs, 1, 4, &done) == 0);
	CU_ASSERT(done == false);
	CU_ASSERT(shows(bs, "ab", 2));
	CU_ASSERT(bstack_try_extend_zeros(bs, 2, 4, &done) == 0);
	CU_ASSERT(done == true);
	CU_ASSERT(shows(bs, "ab\0\0\0\0", 6));
	CU_ASSERT(durable_is(dev, "ab\0\0\0\0", 6));
	/* the old length no longer matches */
	CU_ASSERT(bstack_try_extend_zeros(bs, 2, 4, &done) == 0);
	CU_ASSERT(done == false);
	CU_ASSERT(bstack_len(bs) == 6);
	done = true;
	CU_ASSERT(bstack_try_extend_zeros(bs, 6, UINT64_MAX, &done) < 0);
	CU_ASSERT(done == false);
	CU_ASSERT(shows(bs, "ab\0\0\0\0", 6));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void try_discard_acts_only_when_the_length_matches(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abcdef", 6, NULL) == 0);
	bool done = true;
	CU_ASSERT(bstack_try_discard(bs, 5, 2, &done) == 0);
	CU_ASSERT(done == false);
	CU_ASSERT(bstack_try_discard(bs, 7, 2, &done) == 0);
	CU_ASSERT(done == false);
	CU_ASSERT(shows(bs, "abcdef", 6));
	CU_ASSERT(bstack_try_discard(bs, 6, 2, &done) == 0);
	CU_ASSERT(done == true);
	CU_ASSERT(shows(bs, "abcd", 4));
	CU_ASSERT(durable_is(dev, "abcd", 4));
	CU_ASSERT(bstack_try_discard(bs, 6, 2, &done) == 0);
	CU_ASSERT(done == false);
	done = true;
	CU_ASSERT(bstack_try_discard(bs, 4, 5, &done) < 0);
	CU_ASSERT(done == false);
	CU_ASSERT(shows(bs, "abcd", 4));
	CU_ASSERT(bstack_try_discard(bs, 4, 4, &done) == 0);
	CU_ASSERT(done == true);
	CU_ASSERT(shows(bs, "", 0));
	bstack_close(bs);
	bs_memdev_free(dev);
}

/* Every mutation is durable when it returns, with one sync (docs/design.md §5:
 * syncs are the cost users pay), and the stats count what the device saw. */
static void each_mutation_issues_one_sync_and_stats_count_it(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	struct bstack_stats st0, st1;
	bool done;
	bs_memdev_reset_counts(dev);
	bstack_stats(bs, &st0);
	for (int i = 0; i < 8; i++) {
		uint64_t s = bs_memdev_syncs(dev);
		int r;
		switch (i) {
		case 0: r = bstack_push(bs, "0123456789", 10, NULL); break;
		case 1: r = bstack_extend(bs, 5, NULL); break;
		case 2: r = bstack_set(bs, 1, "x", 1); break;
		case 3: r = bstack_zero(bs, 2, 3); break;
		case 4: r = bstack_pop(bs, NULL, 2); break;
		case 5: r = bstack_discard(bs, 2); break;
		case 6: r = bstack_try_extend_zeros(bs, 11, 1, &done); break;
		default: r = bstack_try_discard(bs, 12, 1, &done); break;
		}
		CU_ASSERT(r == 0);
		CU_ASSERT(bs_memdev_syncs(dev) == s + 1);
		CU_ASSERT(bs_memdev_pending(dev) == 0);
	}
	bstack_stats(bs, &st1);
	CU_ASSERT(st1.syncs - st0.syncs == bs_memdev_syncs(dev));
	CU_ASSERT(st1.writes - st0.writes == bs_memdev_writes(dev));
	CU_ASSERT(bstack_len(bs) == 11);
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void opening_a_clean_image_writes_nothing(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	bstack_close(bs);
	bs_memdev_reset_counts(dev);
	bs = mem_reopen(dev);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 0);
	CU_ASSERT(shows(bs, "abc", 3));
	bstack_close(bs);
	bs_memdev_free(dev);
}

/* ---- reopen ------------------------------------------------------------- */

/* After every kind of operation, a reopen (of the real file) shows the same
 * bytes and length, and the file holds exactly header + payload. */
static void reopen_after_each_operation_shows_the_same_bytes(void)
{
	char *path;
	struct bstack *bs = file_create(&path);
	uint8_t model[4096];
	uint64_t len = 0;
	bool done;
	for (int i = 0; i < 10; i++) {
		uint8_t d[64];
		h_pattern(d, sizeof d, 10 + i, 0);
		int r;
		switch (i) {
		case 0:
			r = bstack_push(bs, d, 64, NULL);
			memcpy(model + len, d, 64);
			len += 64;
			break;
		case 1:
			r = bstack_extend(bs, 40, NULL);
			memset(model + len, 0, 40);
			len += 40;
			break;
		case 2:
			r = bstack_set(bs, 50, d, 30);
			memcpy(model + 50, d, 30);
			break;
		case 3:
			r = bstack_zero(bs, 10, 20);
			memset(model + 10, 0, 20);
			break;
		case 4: {
			uint8_t got[9];
			r = bstack_pop(bs, got, 9);
			CU_ASSERT(memcmp(got, model + len - 9, 9) == 0);
			len -= 9;
			break;
		}
		case 5:
			r = bstack_discard(bs, 11);
			len -= 11;
			break;
		case 6:
			r = bstack_try_extend_zeros(bs, len, 7, &done);
			CU_ASSERT(done);
			memset(model + len, 0, 7);
			len += 7;
			break;
		case 7:
			r = bstack_try_discard(bs, len, 3, &done);
			CU_ASSERT(done);
			len -= 3;
			break;
		case 8:
			r = bstack_set_nosync(bs, 0, d, 5);
			memcpy(model, d, 5);
			break;
		default:
			r = bstack_discard(bs, len);
			len = 0;
			break;
		}
		CU_ASSERT(r == 0);
		CU_ASSERT(shows(bs, model, len));
		bstack_close(bs);
		CU_ASSERT(file_is(path, model, len));
		bs = file_reopen(path);
		CU_ASSERT(shows(bs, model, len));
	}
	bstack_close(bs);
	free(path);
}

static void an_image_of_version_0_2_opens_and_keeps_its_magic(void)
{
	char *path = h_tmp_path("v02");
	size_t rawlen;
	uint8_t *raw = craft("BSTK\x00\x02\x04\x00", 5, 5, 6, &rawlen);
	CU_ASSERT_FATAL(h_write_file(path, raw, rawlen) == 0);
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	uint8_t magic[8];
	bstack_magic(bs, magic);
	CU_ASSERT(memcmp(magic, "BSTK\x00\x02\x04\x00", 8) == 0);
	CU_ASSERT(shows(bs, raw + HDR, 5));
	CU_ASSERT(bstack_push(bs, "xy", 2, NULL) == 0);
	bstack_close(bs);
	uint8_t *now = NULL;
	size_t nowlen = 0;
	CU_ASSERT_FATAL(h_read_file(path, &now, &nowlen) == 0);
	CU_ASSERT(nowlen == HDR + 7);
	CU_ASSERT(nowlen == HDR + 7 && memcmp(now, "BSTK\x00\x02\x04\x00", 8) == 0 &&
		  le64_get(now + 8) == 7 && memcmp(now + HDR, raw + HDR, 5) == 0 &&
		  memcmp(now + HDR + 5, "xy", 2) == 0);
	free(now);
	free(raw);
	free(path);
}

/* ---- recovery ----------------------------------------------------------- */

static void a_file_longer_than_its_header_says_is_truncated_on_open(void)
{
	char *path;
	struct bstack *bs = file_create(&path);
	uint8_t d[10];
	h_pattern(d, sizeof d, 7, 0);
	CU_ASSERT(bstack_push(bs, d, 10, NULL) == 0);
	bstack_close(bs);
	/* a push whose clen never reached the disk: 7 bytes past 16 + clen */
	uint8_t *raw = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(h_read_file(path, &raw, &len) == 0);
	uint8_t *longer = malloc(len + 7);
	CU_ASSERT_FATAL(longer != NULL);
	memcpy(longer, raw, len);
	memcpy(longer + len, "garbage", 7);
	CU_ASSERT_FATAL(h_write_file(path, longer, len + 7) == 0);
	bs = file_reopen(path);
	CU_ASSERT(shows(bs, d, 10));
	struct stat st;
	CU_ASSERT(stat(path, &st) == 0 && st.st_size == HDR + 10);
	/* the repair holds: a push lands right after the 10 bytes */
	uint64_t off = 0;
	CU_ASSERT(bstack_push(bs, "Z", 1, &off) == 0);
	CU_ASSERT(off == 10);
	bstack_close(bs);
	uint8_t exp[11];
	memcpy(exp, d, 10);
	exp[10] = 'Z';
	CU_ASSERT(file_is(path, exp, 11));
	free(raw);
	free(longer);
	free(path);
}

static void a_file_shorter_than_its_header_says_gets_the_payload_size(void)
{
	char *path;
	struct bstack *bs = file_create(&path);
	uint8_t d[10];
	h_pattern(d, sizeof d, 8, 0);
	CU_ASSERT(bstack_push(bs, d, 10, NULL) == 0);
	bstack_close(bs);
	/* a pop that truncated but whose clen never reached the disk */
	CU_ASSERT_FATAL(truncate(path, HDR + 4) == 0);
	bs = file_reopen(path);
	CU_ASSERT(shows(bs, d, 4));
	bstack_close(bs);
	CU_ASSERT(file_is(path, d, 4));      /* clen rewritten to 4 */
	free(path);
}

/* docs/design.md §2: a header claiming more than the file is the "shorter" case of
 * recovery, not a refusal: clen becomes the payload size. */
static void a_header_claiming_more_than_the_file_is_recovered(void)
{
	char *path = h_tmp_path("claim");
	size_t rawlen;
	uint8_t *raw = craft(BSTACK_MAGIC, 1000, 5, 9, &rawlen);
	CU_ASSERT_FATAL(h_write_file(path, raw, rawlen) == 0);
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT(shows(bs, raw + HDR, 5));
	bstack_close(bs);
	CU_ASSERT(file_is(path, raw + HDR, 5));
	/* a clen near UINT64_MAX is no different */
	le64_put(raw + 8, UINT64_MAX);
	CU_ASSERT_FATAL(h_write_file(path, raw, rawlen) == 0);
	CU_ASSERT_FATAL(bstack_open_path(path, false, &bs) == 0);
	CU_ASSERT(shows(bs, raw + HDR, 5));
	bstack_close(bs);
	CU_ASSERT(file_is(path, raw + HDR, 5));
	free(raw);
	free(path);
}

static void a_bare_header_with_clen_zero_opens_empty(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	size_t rawlen;
	uint8_t *raw = craft(BSTACK_MAGIC, 0, 0, 0, &rawlen);
	CU_ASSERT(bs_memdev_load(dev, raw, rawlen) == 0);
	struct bstack *bs = mem_reopen(dev);
	CU_ASSERT(bstack_len(bs) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	bstack_close(bs);
	free(raw);
	bs_memdev_free(dev);
}

/* ---- refusals ----------------------------------------------------------- */

/* Opening raw must fail with err, leave the file's bytes alone (and, on the
 * memory device, issue no write at all). */
static void assert_refused(const void *raw, size_t rawlen, int err)
{
	char *path = h_tmp_path("refuse");
	CU_ASSERT_FATAL(h_write_file(path, raw, rawlen) == 0);
	struct bstack *bs = NULL;
	CU_ASSERT(bstack_open_path(path, false, &bs) == err);
	/* create = true must not "repair" an existing file either */
	CU_ASSERT(bstack_open_path(path, true, &bs) == err);
	uint8_t *now = NULL;
	size_t nowlen = 99;
	CU_ASSERT_FATAL(h_read_file(path, &now, &nowlen) == 0);
	CU_ASSERT(nowlen == rawlen && (rawlen == 0 || memcmp(now, raw, rawlen) == 0));
	free(now);
	free(path);

	struct bs_memdev *dev = bs_memdev_new();
	CU_ASSERT(bs_memdev_load(dev, raw, rawlen) == 0);
	CU_ASSERT(mem_open(dev, &bs) == err);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 0);
	/* the refused open released the lock */
	struct bs_io *io = NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT(bs_io_lock(io) == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void an_empty_file_is_refused_as_short(void)
{
	assert_refused("", 0, BSTACK_E_SHORT);
}

static void a_15_byte_file_is_refused_as_short(void)
{
	size_t rawlen;
	uint8_t *raw = craft(BSTACK_MAGIC, 0, 0, 0, &rawlen);
	assert_refused(raw, 15, BSTACK_E_SHORT);
	assert_refused(raw, 8, BSTACK_E_SHORT);
	assert_refused(raw, 1, BSTACK_E_SHORT);
	free(raw);
}

static void a_wrong_magic_is_refused(void)
{
	size_t rawlen;
	uint8_t *raw = craft("XSTK\x00\x01\x08\x00", 4, 4, 1, &rawlen);
	assert_refused(raw, rawlen, BSTACK_E_MAGIC);
	free(raw);
	raw = craft("bstk\x00\x01\x08\x00", 0, 0, 1, &rawlen);
	assert_refused(raw, rawlen, BSTACK_E_MAGIC);
	free(raw);
	/* a 16-byte text file */
	assert_refused("hello, world!!!\n", 16, BSTACK_E_MAGIC);
}

static void another_version_is_refused(void)
{
	size_t rawlen;
	uint8_t *raw = craft("BSTK\x00\x03\x00\x00", 4, 4, 2, &rawlen);
	assert_refused(raw, rawlen, BSTACK_E_VERSION);
	free(raw);
	raw = craft("BSTK\x01\x01\x08\x00", 4, 4, 2, &rawlen);
	assert_refused(raw, rawlen, BSTACK_E_VERSION);
	free(raw);
	raw = craft("BSTK\x00\x00\x08\x00", 4, 4, 2, &rawlen);
	assert_refused(raw, rawlen, BSTACK_E_VERSION);
	free(raw);
}

static void refusals_have_distinct_errors_and_messages(void)
{
	const int errs[] = { BSTACK_E_SHORT, BSTACK_E_MAGIC, BSTACK_E_VERSION,
			     BSTACK_E_INUSE };
	for (size_t i = 0; i < 4; i++) {
		CU_ASSERT(errs[i] < 0);
		const char *m = bstack_strerror(errs[i]);
		CU_ASSERT(m != NULL && m[0] != '\0');
		for (size_t j = 0; j < i; j++) {
			CU_ASSERT(errs[i] != errs[j]);
			CU_ASSERT(m && strcmp(m, bstack_strerror(errs[j])) != 0);
		}
	}
	CU_ASSERT(strstr(bstack_strerror(BSTACK_E_INUSE), "in use") != NULL);
}

static void open_path_without_create_refuses_a_missing_file(void)
{
	char *path = h_tmp_path("none");
	struct bstack *bs = NULL;
	CU_ASSERT(bstack_open_path(path, false, &bs) == -ENOENT);
	CU_ASSERT(access(path, F_OK) != 0);
	free(path);
}

/* ---- the lock ----------------------------------------------------------- */

static void a_second_open_of_a_held_image_fails_with_ewouldblock(void)
{
	char *path;
	struct bstack *bs = file_create(&path), *second = NULL;
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	CU_ASSERT(bstack_open_path(path, false, &second) == -EWOULDBLOCK);
	CU_ASSERT(bstack_open_path(path, true, &second) == BSTACK_E_INUSE);
	/* the refused opens did not take the first handle's lock away */
	CU_ASSERT(bstack_open_path(path, false, &second) == BSTACK_E_INUSE);
	CU_ASSERT(shows(bs, "abc", 3));
	bstack_close(bs);
	CU_ASSERT_FATAL(bstack_open_path(path, false, &second) == 0);
	CU_ASSERT(shows(second, "abc", 3));
	bstack_close(second);
	free(path);
}

static void a_second_open_on_the_memory_device_fails_too(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev), *second = NULL;
	CU_ASSERT(mem_open(dev, &second) == BSTACK_E_INUSE);
	CU_ASSERT(bs_memdev_writes(dev) == 1);   /* the header of create only */
	bstack_close(bs);
	CU_ASSERT(mem_open(dev, &second) == 0);
	bstack_close(second);
	bs_memdev_free(dev);
}

/* ---- threads ------------------------------------------------------------ */

#define N_THREADS 4
#define REGION 256

struct worker {
	struct bstack *bs;
	unsigned id, rounds;
	uint64_t region;             /* this thread's own bytes for set */
	uint64_t rng;
	uint64_t offs[64], lens[64];
	unsigned nrec;
	unsigned last_set;           /* tag of the last set, 0 = none */
	unsigned errors;
};

static uint64_t w_rand(struct worker *w)
{
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t rec_tag(unsigned id, unsigned i)
{
	return 1000 + (uint64_t)id * 100 + i;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[300], got[300];
	for (unsigned i = 0; i < w->rounds; i++) {
		uint64_t n = 1 + w_rand(w) % 200, off = UINT64_MAX;
		h_pattern(buf, n, rec_tag(w->id, i), 0);
		if (bstack_push(w->bs, buf, n, &off) != 0) {
			w->errors++;
			continue;
		}
		w->offs[w->nrec] = off;
		w->lens[w->nrec++] = n;
		if (bstack_get(w->bs, off, got, n) != 0 || memcmp(got, buf, n) != 0)
			w->errors++;
		/* set in the thread's own region, read it back */
		unsigned tag = 5000 + w->id * 100 + i;
		h_pattern(buf, REGION, tag, 0);
		if (bstack_set(w->bs, w->region, buf, REGION) != 0)
			w->errors++;
		else
			w->last_set = tag;
		if (bstack_get(w->bs, w->region, got, REGION) != 0 ||
		    !h_pattern_ok(got, REGION, tag, 0))
			w->errors++;
		/* an earlier record of this thread is still intact */
		unsigned j = (unsigned)(w_rand(w) % w->nrec);
		if (bstack_get(w->bs, w->offs[j], got, w->lens[j]) != 0 ||
		    !h_pattern_ok(got, w->lens[j], rec_tag(w->id, j), 0))
			w->errors++;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void run_threads(struct bstack *bs, unsigned rounds)
{
	struct worker w[N_THREADS];
	pthread_t th[N_THREADS];
	uint64_t base = bstack_len(bs);
	CU_ASSERT_FATAL(bstack_extend(bs, N_THREADS * REGION, NULL) == 0);
	for (unsigned t = 0; t < N_THREADS; t++) {
		memset(&w[t], 0, sizeof w[t]);
		w[t].bs = bs;
		w[t].id = t;
		w[t].rounds = rounds;
		w[t].region = base + t * REGION;
		w[t].rng = h_rand() | 1;
	}
	for (unsigned t = 0; t < N_THREADS; t++)
		CU_ASSERT_FATAL(pthread_create(&th[t], NULL, worker_main, &w[t]) == 0);
	for (unsigned t = 0; t < N_THREADS; t++)
		pthread_join(th[t], NULL);

	/* every record is where its push said, intact, and they tile the tail */
	uint64_t total = 0, starts[N_THREADS * 64];
	unsigned ns = 0;
	uint8_t got[300];
	for (unsigned t = 0; t < N_THREADS; t++) {
		CU_ASSERT(w[t].errors == 0);
		CU_ASSERT(w[t].nrec == rounds);
		for (unsigned i = 0; i < w[t].nrec; i++) {
			total += w[t].lens[i];
			starts[ns++] = w[t].offs[i];
			CU_ASSERT(bstack_get(bs, w[t].offs[i], got, w[t].lens[i]) == 0);
			CU_ASSERT(h_pattern_ok(got, w[t].lens[i], rec_tag(t, i), 0));
		}
		CU_ASSERT(bstack_get(bs, w[t].region, got, REGION) == 0);
		CU_ASSERT(h_pattern_ok(got, REGION, w[t].last_set, 0));
	}
	CU_ASSERT(bstack_len(bs) == base + N_THREADS * REGION + total);
	qsort(starts, ns, sizeof starts[0], cmp_u64);
	CU_ASSERT(ns == 0 || starts[0] == base + N_THREADS * REGION);
	for (unsigned i = 1; i < ns; i++)
		CU_ASSERT(starts[i] > starts[i - 1]);
}

static void many_threads_pushing_getting_and_setting_leave_the_expected_bytes(void)
{
	h_rng_seed();
	char *path;
	struct bstack *bs = file_create(&path);
	CU_ASSERT(bstack_push(bs, "head", 4, NULL) == 0);
	run_threads(bs, 40);
	uint64_t len = bstack_len(bs);
	uint8_t *before = NULL, *after = NULL;
	uint64_t n1 = 0, n2 = 0;
	CU_ASSERT_FATAL(bstack_peek(bs, 0, &before, &n1) == 0);
	bstack_close(bs);
	/* and the file says the same after a reopen */
	bs = file_reopen(path);
	CU_ASSERT(bstack_len(bs) == len);
	CU_ASSERT_FATAL(bstack_peek(bs, 0, &after, &n2) == 0);
	CU_ASSERT(n1 == n2 && memcmp(before, after, n1) == 0);
	CU_ASSERT(memcmp(after, "head", 4) == 0);
	free(before);
	free(after);
	bstack_close(bs);
	free(path);
}

static void many_threads_on_the_memory_device_leave_the_expected_bytes(void)
{
	h_rng_seed();
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	run_threads(bs, 64);
	bstack_close(bs);
	bs_memdev_free(dev);
}

/* ---- power loss --------------------------------------------------------- */

enum op_kind {
	K_PUSH, K_EXTEND, K_POP, K_DISCARD, K_SET, K_ZERO, K_TRY_EXTEND, K_TRY_DISCARD,
};

static const char *const kind_name[] = {
	"push", "extend", "pop", "discard", "set", "zero", "try_extend_zeros",
	"try_discard",
};

struct op {
	enum op_kind kind;
	uint64_t off, n;
};

#define OP_TAG 77

static int run_op(struct bstack *bs, const struct op *op)
{
	uint8_t *d = malloc(op->n ? op->n : 1);
	bool done = false;
	int r = -ENOMEM;
	if (!d)
		return r;
	h_pattern(d, op->n, OP_TAG, 0);
	switch (op->kind) {
	case K_PUSH: r = bstack_push(bs, d, op->n, NULL); break;
	case K_EXTEND: r = bstack_extend(bs, op->n, NULL); break;
	case K_POP: r = bstack_pop(bs, d, op->n); break;
	case K_DISCARD: r = bstack_discard(bs, op->n); break;
	case K_SET: r = bstack_set(bs, op->off, d, op->n); break;
	case K_ZERO: r = bstack_zero(bs, op->off, op->n); break;
	case K_TRY_EXTEND:
		r = bstack_try_extend_zeros(bs, bstack_len(bs), op->n, &done);
		if (!r && !done)
			r = -EAGAIN;
		break;
	case K_TRY_DISCARD:
		r = bstack_try_discard(bs, bstack_len(bs), op->n, &done);
		if (!r && !done)
			r = -EAGAIN;
		break;
	}
	free(d);
	return r;
}

/* The payload after op, computed independently of the code under test. */
static uint8_t *model_after(const struct op *op, const uint8_t *before, uint64_t blen,
			    uint64_t *alen)
{
	uint64_t len = blen;
	if (op->kind == K_PUSH || op->kind == K_EXTEND || op->kind == K_TRY_EXTEND)
		len = blen + op->n;
	else if (op->kind == K_POP || op->kind == K_DISCARD || op->kind == K_TRY_DISCARD)
		len = blen - op->n;
	uint8_t *a = calloc(1, len ? len : 1);
	CU_ASSERT_FATAL(a != NULL);
	memcpy(a, before, len < blen ? len : blen);
	if (op->kind == K_PUSH)
		h_pattern(a + blen, op->n, OP_TAG, 0);
	else if (op->kind == K_SET)
		h_pattern(a + op->off, op->n, OP_TAG, 0);
	else if (op->kind == K_ZERO)
		memset(a + op->off, 0, op->n);
	*alen = len;
	return a;
}

struct crash_case {
	const struct op *op;
	const uint8_t *base;          /* raw base image */
	size_t baselen;
	const uint8_t *after;
	uint64_t alen;
};

/* One cut: the k-th counted operation fails, the device keeps `keep`
 * unsynced writes.  Returns the number of writes that were pending at the
 * cut, or -1 after a failed check. */
static int crash_once(const struct crash_case *c, uint64_t k, uint64_t keep)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bstack *bs = NULL;
	const uint8_t *before = c->base + HDR;
	uint64_t blen = c->baselen - HDR;
	int ok = 1;
	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(bs_memdev_load(dev, c->base, c->baselen) == 0);
	CU_ASSERT_FATAL(mem_open(dev, &bs) == 0);
	bs_memdev_fail_at(dev, k);
	int r = run_op(bs, c->op);
	uint64_t pending = bs_memdev_pending(dev);
	if (k) {
		/* every counted step is needed: losing one must be reported */
		CU_ASSERT(r < 0);
		ok &= r < 0;
		if (c->op->kind == K_PUSH || c->op->kind == K_EXTEND ||
		    c->op->kind == K_TRY_EXTEND) {
			/* a failed grow leaves the handle at its old length */
			CU_ASSERT(bstack_len(bs) == blen);
			ok &= bstack_len(bs) == blen;
		}
	} else {
		CU_ASSERT(r == 0);
		ok &= r == 0;
	}
	bstack_close(bs);
	bs_memdev_power_cycle(dev, keep);

	bs = NULL;
	r = mem_open(dev, &bs);
	CU_ASSERT(r == 0);
	if (r == 0) {
		bool is_before = shows(bs, before, blen) && durable_is(dev, before, blen);
		bool is_after = shows(bs, c->after, c->alen) &&
				durable_is(dev, c->after, c->alen);
		CU_ASSERT(is_before || is_after);
		/* a crash-free run must be the after-state, and durable */
		if (!k)
			CU_ASSERT(is_after);
		ok &= (is_before || is_after) && (k || is_after);
		bstack_close(bs);
		/* the repair was synced: another cut changes nothing */
		bs_memdev_power_cycle(dev, 0);
		bs = NULL;
		r = mem_open(dev, &bs);
		CU_ASSERT(r == 0);
		if (r == 0 && (is_before || is_after)) {
			bool same = is_after ? shows(bs, c->after, c->alen) :
				    shows(bs, before, blen);
			CU_ASSERT(same);
			ok &= same;
		}
		if (r == 0)
			bstack_close(bs);
	}
	ok &= r == 0;
	if (!ok)
		printf("\n    power loss: %s off=%llu n=%llu cut at op %llu keep %llu: "
		       "neither before nor after\n", kind_name[c->op->kind],
		       (unsigned long long)c->op->off, (unsigned long long)c->op->n,
		       (unsigned long long)k, (unsigned long long)keep);
	bs_memdev_free(dev);
	return ok ? (int)pending : -1;
}

/* Cut the power at every write and sync of op, keeping every prefix of the
 * unsynced writes; every outcome must be the before- or after-state. */
static void crash_at_every_step(const struct op *op, uint64_t base_len)
{
	size_t baselen;
	uint8_t *base = craft(BSTACK_MAGIC, base_len, base_len, 21, &baselen);
	struct crash_case c = { .op = op, .base = base, .baselen = baselen };
	uint8_t *after = model_after(op, base + HDR, base_len, &c.alen);
	c.after = after;

	/* how many counted operations the op issues */
	struct bs_memdev *dev = bs_memdev_new();
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bs_memdev_load(dev, base, baselen) == 0);
	CU_ASSERT_FATAL(mem_open(dev, &bs) == 0);
	bs_memdev_reset_counts(dev);
	CU_ASSERT(run_op(bs, op) == 0);
	uint64_t steps = bs_memdev_writes(dev) + bs_memdev_syncs(dev);
	CU_ASSERT(steps >= 2);   /* at least one write and the sync */
	bstack_close(bs);
	bs_memdev_free(dev);

	crash_once(&c, 0, 0);
	for (uint64_t k = 1; k <= steps; k++) {
		for (uint64_t keep = 0;; keep++) {
			int pending = crash_once(&c, k, keep);
			if (pending < 0 || keep >= (uint64_t)pending)
				break;
		}
	}
	free(after);
	free(base);
}

static void power_loss_during_push_leaves_before_or_after(void)
{
	const struct op op = { K_PUSH, 0, 37 };
	crash_at_every_step(&op, 100);
	const struct op op0 = { K_PUSH, 0, 5 };
	crash_at_every_step(&op0, 0);
}

static void power_loss_during_extend_leaves_before_or_after(void)
{
	const struct op op = { K_EXTEND, 0, 50 };
	crash_at_every_step(&op, 100);
	const struct op big = { K_EXTEND, 0, 100000 };
	crash_at_every_step(&big, 10);
}

static void power_loss_during_pop_leaves_before_or_after(void)
{
	const struct op op = { K_POP, 0, 30 };
	crash_at_every_step(&op, 100);
	const struct op all = { K_POP, 0, 100 };
	crash_at_every_step(&all, 100);
}

static void power_loss_during_discard_leaves_before_or_after(void)
{
	const struct op op = { K_DISCARD, 0, 1 };
	crash_at_every_step(&op, 100);
}

static void power_loss_during_set_leaves_before_or_after(void)
{
	const struct op op = { K_SET, 10, 40 };
	crash_at_every_step(&op, 100);
	const struct op tail = { K_SET, 60, 40 };
	crash_at_every_step(&tail, 100);
}

static void power_loss_during_zero_leaves_before_or_after(void)
{
	const struct op op = { K_ZERO, 5, 60 };
	crash_at_every_step(&op, 100);
}

/* A zero bigger than any internal chunk still counts as one operation. */
static void power_loss_during_a_large_zero_leaves_before_or_after(void)
{
	const struct op op = { K_ZERO, 100, 150000 };
	crash_at_every_step(&op, 160000);
}

static void power_loss_during_try_extend_zeros_leaves_before_or_after(void)
{
	const struct op op = { K_TRY_EXTEND, 0, 24 };
	crash_at_every_step(&op, 100);
}

static void power_loss_during_try_discard_leaves_before_or_after(void)
{
	const struct op op = { K_TRY_DISCARD, 0, 24 };
	crash_at_every_step(&op, 100);
}

/* Power loss while open repairs the image: the next open still recovers. */
static void power_loss_during_recovery_is_recovered_again(void)
{
	size_t rawlen;
	for (int shorter = 0; shorter <= 1; shorter++) {
		/* longer: clen 10 of 30 payload bytes; shorter: clen 50 of 30 */
		uint8_t *raw = craft(BSTACK_MAGIC, shorter ? 50 : 10, 30, 31, &rawlen);
		uint64_t want = shorter ? 30 : 10;
		for (uint64_t k = 1; k <= 2; k++) {
			for (uint64_t keep = 0; keep <= 1; keep++) {
				struct bs_memdev *dev = bs_memdev_new();
				struct bstack *bs = NULL;
				CU_ASSERT_FATAL(bs_memdev_load(dev, raw, rawlen) == 0);
				bs_memdev_fail_at(dev, k);
				CU_ASSERT(mem_open(dev, &bs) < 0);
				bs_memdev_power_cycle(dev, keep);
				CU_ASSERT_FATAL(mem_open(dev, &bs) == 0);
				CU_ASSERT(shows(bs, raw + HDR, want));
				bstack_close(bs);
				CU_ASSERT(durable_is(dev, raw + HDR, want));
				bs_memdev_free(dev);
			}
		}
		free(raw);
	}
}

/* bstack.h: "On a failed write or sync the image is rolled back to its old
 * length."  The device fails once and recovers; the same handle goes on. */
static void a_push_whose_write_fails_keeps_the_old_length(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	bs_memdev_fail_at(dev, 1);
	CU_ASSERT(bstack_push(bs, "defg", 4, NULL) < 0);
	CU_ASSERT(bstack_len(bs) == 3);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(shows(bs, "abc", 3));
	uint64_t off = 0;
	CU_ASSERT(bstack_push(bs, "XY", 2, &off) == 0);
	CU_ASSERT(off == 3);
	CU_ASSERT(shows(bs, "abcXY", 5));
	CU_ASSERT(durable_is(dev, "abcXY", 5));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void a_push_whose_sync_fails_keeps_the_old_length(void)
{
	struct bs_memdev *dev;
	struct bstack *bs = mem_create(&dev);
	CU_ASSERT(bstack_push(bs, "abc", 3, NULL) == 0);
	bs_memdev_fail_at(dev, 3);    /* data, clen, then the sync fails */
	CU_ASSERT(bstack_push(bs, "defg", 4, NULL) < 0);
	CU_ASSERT(bstack_len(bs) == 3);
	bstack_close(bs);
	bs_memdev_power_cycle(dev, 0);
	bs = mem_reopen(dev);
	CU_ASSERT(shows(bs, "abc", 3));
	bstack_close(bs);
	bs_memdev_free(dev);
}

/* ---- a full disk (ENOSPC) ---------------------------------------------- */

/* An image holding `len` pattern bytes (tag) on a device whose capacity is
 * `room` bytes above the image. */
static struct bstack *full_disk(struct bs_memdev **devp, uint8_t *p, uint64_t len,
				uint64_t room)
{
	struct bstack *bs = mem_create(devp);
	h_pattern(p, len, 41, 0);
	CU_ASSERT_FATAL(bstack_push(bs, p, len, NULL) == 0);
	bs_memdev_set_capacity(*devp, HDR + len + room);
	return bs;
}

static void a_push_past_the_capacity_fails_with_enospc_and_keeps_the_bytes(void)
{
	struct bs_memdev *dev;
	uint8_t p[300], big[100];
	struct bstack *bs = full_disk(&dev, p, 200, 50);
	h_pattern(big, sizeof big, 42, 0);
	uint64_t off = 12345;
	CU_ASSERT(bstack_push(bs, big, 51, &off) == -ENOSPC);
	CU_ASSERT(shows(bs, p, 200));
	CU_ASSERT(durable_is(dev, p, 200));
	CU_ASSERT(!bs_memdev_dead(dev));
	/* the handle stays usable: a push that fits succeeds */
	CU_ASSERT(bstack_push(bs, big, 50, &off) == 0);
	CU_ASSERT(off == 200);
	memcpy(p + 200, big, 50);
	CU_ASSERT(shows(bs, p, 250));
	CU_ASSERT(bstack_push(bs, big, 1, NULL) == -ENOSPC);
	CU_ASSERT(shows(bs, p, 250));
	bstack_close(bs);
	bs = mem_reopen(dev);
	CU_ASSERT(shows(bs, p, 250));
	CU_ASSERT(durable_is(dev, p, 250));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void an_extend_past_the_capacity_fails_with_enospc_and_keeps_the_bytes(void)
{
	struct bs_memdev *dev;
	uint8_t p[300];
	struct bstack *bs = full_disk(&dev, p, 100, 64);
	CU_ASSERT(bstack_extend(bs, 65, NULL) == -ENOSPC);
	CU_ASSERT(shows(bs, p, 100));
	bool done = true;
	CU_ASSERT(bstack_try_extend_zeros(bs, 100, 1000, &done) == -ENOSPC);
	CU_ASSERT(!done);
	CU_ASSERT(shows(bs, p, 100));
	CU_ASSERT(durable_is(dev, p, 100));
	uint64_t off = 0;
	CU_ASSERT(bstack_extend(bs, 64, &off) == 0);
	CU_ASSERT(off == 100);
	memset(p + 100, 0, 64);
	CU_ASSERT(shows(bs, p, 164));
	bstack_close(bs);
	bs = mem_reopen(dev);
	CU_ASSERT(shows(bs, p, 164));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void after_enospc_pop_frees_room_and_the_push_then_fits(void)
{
	struct bs_memdev *dev;
	uint8_t p[300], big[80];
	struct bstack *bs = full_disk(&dev, p, 200, 0);
	h_pattern(big, sizeof big, 43, 0);
	CU_ASSERT(bstack_push(bs, big, sizeof big, NULL) == -ENOSPC);
	CU_ASSERT(shows(bs, p, 200));
	CU_ASSERT(bstack_discard(bs, 80) == 0);
	CU_ASSERT(bstack_push(bs, big, sizeof big, NULL) == 0);
	memcpy(p + 120, big, sizeof big);
	CU_ASSERT(shows(bs, p, 200));
	bstack_close(bs);
	bs = mem_reopen(dev);
	CU_ASSERT(shows(bs, p, 200));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static void a_full_disk_never_leaves_a_tail_past_the_length(void)
{
	struct bs_memdev *dev;
	uint8_t p[64], big[64];
	struct bstack *bs = full_disk(&dev, p, 32, 16);
	h_pattern(big, sizeof big, 44, 0);
	for (uint64_t n = 17; n <= sizeof big; n++) {
		CU_ASSERT(bstack_push(bs, big, n, NULL) == -ENOSPC);
		CU_ASSERT(bstack_extend(bs, n, NULL) == -ENOSPC);
	}
	/* the device holds exactly header + 32 bytes, durably, nothing logged */
	CU_ASSERT(durable_is(dev, p, 32));
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	CU_ASSERT(shows(bs, p, 32));
	bstack_close(bs);
	bs_memdev_free(dev);
}

static const struct h_test tests[] = {
	H_TEST(pushing_hello_makes_the_documented_bytes),
	H_TEST(a_new_image_is_the_bare_header),
	H_TEST(create_on_memory_device_makes_the_same_bytes),
	H_TEST(create_refuses_a_device_that_is_not_empty),
	H_TEST(push_appends_and_returns_the_offset),
	H_TEST(push_of_zero_bytes_changes_nothing),
	H_TEST(push_refuses_a_length_that_overflows),
	H_TEST(extend_appends_zeros),
	H_TEST(extend_after_pop_reads_zeros_not_old_bytes),
	H_TEST(pop_returns_the_last_bytes_and_shrinks),
	H_TEST(discard_drops_the_last_bytes),
	H_TEST(get_reads_exact_ranges_and_refuses_outside),
	H_TEST(peek_returns_the_tail_from_an_offset),
	H_TEST(set_overwrites_in_place_and_keeps_the_length),
	H_TEST(zero_clears_in_place_and_keeps_the_length),
	H_TEST(zero_of_a_large_range_clears_every_byte),
	H_TEST(set_nosync_is_durable_after_sync),
	H_TEST(try_extend_zeros_acts_only_when_the_length_matches),
	H_TEST(try_discard_acts_only_when_the_length_matches),
	H_TEST(each_mutation_issues_one_sync_and_stats_count_it),
	H_TEST(opening_a_clean_image_writes_nothing),
	H_TEST(reopen_after_each_operation_shows_the_same_bytes),
	H_TEST(an_image_of_version_0_2_opens_and_keeps_its_magic),
	H_TEST(a_file_longer_than_its_header_says_is_truncated_on_open),
	H_TEST(a_file_shorter_than_its_header_says_gets_the_payload_size),
	H_TEST(a_header_claiming_more_than_the_file_is_recovered),
	H_TEST(a_bare_header_with_clen_zero_opens_empty),
	H_TEST(an_empty_file_is_refused_as_short),
	H_TEST(a_15_byte_file_is_refused_as_short),
	H_TEST(a_wrong_magic_is_refused),
	H_TEST(another_version_is_refused),
	H_TEST(refusals_have_distinct_errors_and_messages),
	H_TEST(open_path_without_create_refuses_a_missing_file),
	H_TEST(a_second_open_of_a_held_image_fails_with_ewouldblock),
	H_TEST(a_second_open_on_the_memory_device_fails_too),
	H_TEST(many_threads_pushing_getting_and_setting_leave_the_expected_bytes),
	H_TEST(many_threads_on_the_memory_device_leave_the_expected_bytes),
	H_TEST(power_loss_during_push_leaves_before_or_after),
	H_TEST(power_loss_during_extend_leaves_before_or_after),
	H_TEST(power_loss_during_pop_leaves_before_or_after),
	H_TEST(power_loss_during_discard_leaves_before_or_after),
	H_TEST(power_loss_during_set_leaves_before_or_after),
	H_TEST(power_loss_during_zero_leaves_before_or_after),
	H_TEST(power_loss_during_a_large_zero_leaves_before_or_after),
	H_TEST(power_loss_during_try_extend_zeros_leaves_before_or_after),
	H_TEST(power_loss_during_try_discard_leaves_before_or_after),
	H_TEST(power_loss_during_recovery_is_recovered_again),
	H_TEST(a_push_whose_write_fails_keeps_the_old_length),
	H_TEST(a_push_whose_sync_fails_keeps_the_old_length),
	H_TEST(a_push_past_the_capacity_fails_with_enospc_and_keeps_the_bytes),
	H_TEST(an_extend_past_the_capacity_fails_with_enospc_and_keeps_the_bytes),
	H_TEST(after_enospc_pop_frees_room_and_the_push_then_fits),
	H_TEST(a_full_disk_never_leaves_a_tail_past_the_length),
};

H_MAIN("bstack", tests)
