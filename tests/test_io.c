/*
 * test_io.c — the I/O backends under the file layer (core/io.h): the memory
 * test device, whose power-loss model every crash test of the project
 * relies on, and the real file backend.
 */
#include "harness.h"
#include "io.h"
#include "bstack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static struct bs_io *mem_open(struct bs_memdev *dev)
{
	struct bs_io *io = NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(io != NULL);
	return io;
}

/* True when the device's volatile contents (what reads see) equal exp. */
static bool mem_reads(struct bs_io *io, const void *exp, size_t n)
{
	uint64_t size = UINT64_MAX;
	if (bs_io_size(io, &size) != 0 || size != n)
		return false;
	if (n == 0)
		return true;
	uint8_t *got = malloc(n);
	bool ok = got && bs_io_pread(io, got, n, 0) == 0 && memcmp(got, exp, n) == 0;
	free(got);
	return ok;
}

/* True when the device's durable contents equal exp. */
static bool mem_durable_is(struct bs_memdev *dev, const void *exp, size_t n)
{
	uint8_t *b = NULL;
	size_t len = SIZE_MAX;
	if (bs_memdev_snapshot(dev, &b, &len) != 0)
		return false;
	bool ok = len == n && (n == 0 || memcmp(b, exp, n) == 0);
	free(b);
	return ok;
}

/* ---- memory device: reads, writes, sizes -------------------------------- */

static void mem_write_then_read_returns_the_bytes(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	CU_ASSERT_FATAL(dev != NULL);
	struct bs_io *io = mem_open(dev);
	uint8_t in[300], out[300];
	h_pattern(in, sizeof in, 1, 0);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_pread(io, out, sizeof out, 0) == 0);
	CU_ASSERT(memcmp(in, out, sizeof in) == 0);
	/* an unaligned slice from the middle */
	CU_ASSERT(bs_io_pread(io, out, 17, 101) == 0);
	CU_ASSERT(memcmp(in + 101, out, 17) == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_write_past_the_end_extends_with_zeros(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t exp[20] = { 0 };
	memcpy(exp + 16, "abcd", 4);
	CU_ASSERT(bs_io_pwrite(io, "abcd", 4, 16) == 0);
	CU_ASSERT(mem_reads(io, exp, sizeof exp));
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_zero_length_write_does_not_extend(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(io, "x", 0, 100) == 0);
	uint64_t size = 1;
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_pread_past_the_end_fails_with_eio(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t b[16];
	CU_ASSERT(bs_io_pwrite(io, "0123456789", 10, 0) == 0);
	CU_ASSERT(bs_io_pread(io, b, 10, 0) == 0);          /* exact end */
	CU_ASSERT(bs_io_pread(io, b, 11, 0) == -EIO);       /* one past */
	CU_ASSERT(bs_io_pread(io, b, 1, 10) == -EIO);
	CU_ASSERT(bs_io_pread(io, b, 0, 10) == 0);          /* empty at the end */
	CU_ASSERT(bs_io_pread(io, b, 1, UINT64_MAX) == -EIO);
	CU_ASSERT(bs_io_pread(io, b, 2, UINT64_MAX - 1) == -EIO);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_truncate_grows_with_zeros_and_shrinks(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t exp[8] = { 'a', 'b', 'c', 0, 0, 0, 0, 0 };
	CU_ASSERT(bs_io_pwrite(io, "abcdef", 6, 0) == 0);
	CU_ASSERT(bs_io_truncate(io, 3) == 0);
	CU_ASSERT(mem_reads(io, exp, 3));
	CU_ASSERT(bs_io_truncate(io, 8) == 0);
	/* the bytes cut off must not come back when the file grows again */
	CU_ASSERT(mem_reads(io, exp, 8));
	CU_ASSERT(bs_io_truncate(io, 0) == 0);
	CU_ASSERT(mem_reads(io, exp, 0));
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_contents_outlive_the_handle(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(io, "keep", 4, 0) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	bs_io_close(io);
	io = mem_open(dev);
	CU_ASSERT(mem_reads(io, "keep", 4));
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* ---- memory device: counters -------------------------------------------- */

static void mem_counts_writes_truncates_and_syncs(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t b[4];
	uint64_t size;
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 0);
	CU_ASSERT(bs_io_pwrite(io, "ab", 2, 0) == 0);
	CU_ASSERT(bs_io_pwrite(io, "cd", 2, 2) == 0);
	CU_ASSERT(bs_io_truncate(io, 3) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == 3);
	CU_ASSERT(bs_memdev_syncs(dev) == 0);
	CU_ASSERT(bs_memdev_pending(dev) == 3);
	/* reads and size queries are not counted */
	CU_ASSERT(bs_io_pread(io, b, 3, 0) == 0);
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == 3);
	CU_ASSERT(bs_io_sync(io) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 1);
	CU_ASSERT(bs_memdev_writes(dev) == 3);
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	bs_memdev_reset_counts(dev);
	CU_ASSERT(bs_memdev_writes(dev) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 0);
	CU_ASSERT(bs_io_pwrite(io, "e", 1, 0) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == 1);
	CU_ASSERT(bs_memdev_pending(dev) == 1);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_counts_are_shared_by_all_handles_of_a_device(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *a = mem_open(dev), *b = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(a, "x", 1, 0) == 0);
	CU_ASSERT(bs_io_pwrite(b, "y", 1, 1) == 0);
	CU_ASSERT(bs_io_sync(b) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == 2);
	CU_ASSERT(bs_memdev_syncs(dev) == 1);
	CU_ASSERT(mem_reads(a, "xy", 2));
	bs_io_close(a);
	bs_io_close(b);
	bs_memdev_free(dev);
}

/* ---- memory device: fault injection ------------------------------------- */

enum { OP_WRITE, OP_TRUNC, OP_SYNC };
static const int fault_script[] = { OP_WRITE, OP_TRUNC, OP_SYNC, OP_WRITE,
				    OP_SYNC, OP_WRITE, OP_TRUNC };
#define N_SCRIPT (sizeof fault_script / sizeof fault_script[0])

static int run_op(struct bs_io *io, int op, unsigned i)
{
	uint8_t b[4] = { (uint8_t)i, 1, 2, 3 };
	switch (op) {
	case OP_WRITE:
		return bs_io_pwrite(io, b, sizeof b, i * 2);
	case OP_TRUNC:
		return bs_io_truncate(io, 6 + i);
	default:
		return bs_io_sync(io);
	}
}

/* Every later operation, of every kind and on every handle, fails. */
static void assert_power_is_out(struct bs_memdev *dev, struct bs_io *io)
{
	struct bs_io *other = mem_open(dev);
	uint8_t b[1];
	uint64_t size;
	CU_ASSERT(bs_memdev_dead(dev) != 0);
	CU_ASSERT(bs_io_pwrite(io, "z", 1, 0) == -EIO);
	CU_ASSERT(bs_io_truncate(io, 1) == -EIO);
	CU_ASSERT(bs_io_sync(io) == -EIO);
	CU_ASSERT(bs_io_pread(io, b, 1, 0) == -EIO);
	CU_ASSERT(bs_io_size(io, &size) == -EIO);
	CU_ASSERT(bs_io_pwrite(other, "z", 1, 0) == -EIO);
	CU_ASSERT(bs_io_sync(other) == -EIO);
	CU_ASSERT(bs_io_pread(other, b, 1, 0) == -EIO);
	bs_io_close(other);
}

static void mem_fail_at_fires_at_exactly_the_nth_operation(void)
{
	for (unsigned n = 1; n <= N_SCRIPT; n++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io = mem_open(dev);
		bs_memdev_fail_at(dev, n);
		for (unsigned i = 0; i < n - 1; i++) {
			CU_ASSERT(run_op(io, fault_script[i], i) == 0);
			CU_ASSERT(bs_memdev_dead(dev) == 0);
		}
		CU_ASSERT(run_op(io, fault_script[n - 1], n - 1) == -EIO);
		assert_power_is_out(dev, io);
		bs_io_close(io);
		bs_memdev_free(dev);
	}
}

static void mem_fail_at_counts_from_the_moment_it_is_armed(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	for (unsigned i = 0; i < 4; i++)
		CU_ASSERT(run_op(io, fault_script[i], i) == 0);
	bs_memdev_fail_at(dev, 2);
	CU_ASSERT(bs_io_pwrite(io, "a", 1, 0) == 0);
	CU_ASSERT(bs_memdev_dead(dev) == 0);
	CU_ASSERT(bs_io_sync(io) == -EIO);
	assert_power_is_out(dev, io);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_fail_at_zero_disarms_the_fault(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	bs_memdev_fail_at(dev, 2);
	bs_memdev_fail_at(dev, 0);
	for (unsigned i = 0; i < N_SCRIPT; i++)
		CU_ASSERT(run_op(io, fault_script[i], i) == 0);
	CU_ASSERT(bs_memdev_dead(dev) == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_failed_operation_is_not_applied(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(io, "ab", 2, 0) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	bs_memdev_fail_at(dev, 1);
	CU_ASSERT(bs_io_pwrite(io, "XY", 2, 0) == -EIO);
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	bs_memdev_power_cycle(dev, 1);
	CU_ASSERT(mem_reads(io, "ab", 2));
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* ---- memory device: power loss ------------------------------------------ */

static void mem_power_cycle_zero_drops_every_unsynced_write(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(io, "durable", 7, 0) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	CU_ASSERT(bs_io_pwrite(io, "VOLATILE", 8, 0) == 0);
	CU_ASSERT(bs_io_truncate(io, 3) == 0);
	CU_ASSERT(bs_io_pwrite(io, "more", 4, 20) == 0);
	CU_ASSERT(bs_memdev_pending(dev) == 3);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(bs_memdev_dead(dev) == 0);
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	CU_ASSERT(mem_reads(io, "durable", 7));
	CU_ASSERT(mem_durable_is(dev, "durable", 7));
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* Reference model of the pending log: apply the first k entries. */
struct ref_op {
	int trunc;
	uint64_t off;
	const char *data;
};

static const struct ref_op pending_ops[] = {
	{ 0, 2, "AAAA" },
	{ 1, 4, NULL },
	{ 0, 10, "BB" },
	{ 0, 0, "C" },
	{ 1, 14, NULL },
	{ 0, 5, "DDD" },
};
#define N_PENDING (sizeof pending_ops / sizeof pending_ops[0])

static size_t ref_apply(uint8_t *img, size_t len, const struct ref_op *op)
{
	if (op->trunc) {
		if (op->off > len)
			memset(img + len, 0, op->off - len);
		return op->off;
	}
	size_t n = strlen(op->data);
	if (op->off > len)
		memset(img + len, 0, op->off - len);
	memcpy(img + op->off, op->data, n);
	return op->off + n > len ? op->off + n : len;
}

static void mem_power_cycle_k_keeps_exactly_the_first_k_writes(void)
{
	for (unsigned k = 0; k <= N_PENDING + 1; k++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io = mem_open(dev);
		uint8_t ref[64];
		size_t len = 8;
		memcpy(ref, "01234567", 8);
		CU_ASSERT(bs_io_pwrite(io, ref, len, 0) == 0);
		CU_ASSERT(bs_io_sync(io) == 0);
		for (unsigned i = 0; i < N_PENDING; i++) {
			const struct ref_op *op = &pending_ops[i];
			int r = op->trunc ? bs_io_truncate(io, op->off) :
				bs_io_pwrite(io, op->data, strlen(op->data), op->off);
			CU_ASSERT(r == 0);
			if (i < k)
				len = ref_apply(ref, len, op);
		}
		CU_ASSERT(bs_memdev_pending(dev) == N_PENDING);
		bs_memdev_power_cycle(dev, k);
		CU_ASSERT(mem_reads(io, ref, len));
		/* what survived is durable now: another cut loses nothing */
		CU_ASSERT(mem_durable_is(dev, ref, len));
		bs_memdev_power_cycle(dev, 0);
		CU_ASSERT(mem_reads(io, ref, len));
		bs_io_close(io);
		bs_memdev_free(dev);
	}
}

static void mem_failed_sync_leaves_the_writes_pending(void)
{
	for (unsigned keep = 0; keep <= 1; keep++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_io *io = mem_open(dev);
		CU_ASSERT(bs_io_pwrite(io, "old", 3, 0) == 0);
		CU_ASSERT(bs_io_sync(io) == 0);
		CU_ASSERT(bs_io_pwrite(io, "new", 3, 0) == 0);
		bs_memdev_fail_at(dev, 1);
		CU_ASSERT(bs_io_sync(io) == -EIO);
		CU_ASSERT(bs_memdev_pending(dev) == 1);
		CU_ASSERT(mem_durable_is(dev, "old", 3));
		bs_memdev_power_cycle(dev, keep);
		CU_ASSERT(mem_reads(io, keep ? "new" : "old", 3));
		bs_io_close(io);
		bs_memdev_free(dev);
	}
}

static void mem_power_cycle_restores_power(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	bs_memdev_fail_at(dev, 1);
	CU_ASSERT(bs_io_pwrite(io, "a", 1, 0) == -EIO);
	CU_ASSERT(bs_memdev_dead(dev) != 0);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(bs_memdev_dead(dev) == 0);
	/* the fault is cleared, not re-armed */
	for (unsigned i = 0; i < N_SCRIPT; i++)
		CU_ASSERT(run_op(io, fault_script[i], i) == 0);
	CU_ASSERT(bs_memdev_dead(dev) == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* ---- memory device: snapshot and load ----------------------------------- */

static void mem_snapshot_returns_the_durable_contents_only(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(mem_durable_is(dev, "", 0));
	CU_ASSERT(bs_io_pwrite(io, "synced", 6, 0) == 0);
	CU_ASSERT(mem_durable_is(dev, "", 0));
	CU_ASSERT(bs_io_sync(io) == 0);
	CU_ASSERT(bs_io_pwrite(io, "NOTYET--", 8, 0) == 0);
	CU_ASSERT(mem_durable_is(dev, "synced", 6));
	/* the snapshot is a copy: changing it does not change the device */
	uint8_t *b = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &b, &len) == 0);
	CU_ASSERT_FATAL(len == 6);
	b[0] = 'X';
	free(b);
	CU_ASSERT(mem_durable_is(dev, "synced", 6));
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_load_sets_durable_and_volatile_bytes(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	CU_ASSERT(bs_io_pwrite(io, "something longer", 16, 0) == 0);
	CU_ASSERT(bs_memdev_load(dev, "crafted", 7) == 0);
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	CU_ASSERT(mem_reads(io, "crafted", 7));
	CU_ASSERT(mem_durable_is(dev, "crafted", 7));
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(mem_reads(io, "crafted", 7));
	/* loading nothing makes an empty device */
	CU_ASSERT(bs_memdev_load(dev, "", 0) == 0);
	CU_ASSERT(mem_reads(io, "", 0));
	CU_ASSERT(mem_durable_is(dev, "", 0));
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* ---- memory device: the lock -------------------------------------------- */

static void mem_lock_is_exclusive_between_handles(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *a = mem_open(dev), *b = mem_open(dev);
	CU_ASSERT(bs_io_lock(a) == 0);
	CU_ASSERT(bs_io_lock(b) == -EWOULDBLOCK);
	CU_ASSERT(bs_io_lock(b) == -EWOULDBLOCK);
	bs_io_close(a);
	CU_ASSERT(bs_io_lock(b) == 0);
	struct bs_io *c = mem_open(dev);
	CU_ASSERT(bs_io_lock(c) == -EWOULDBLOCK);
	bs_io_close(c);
	/* closing a handle that never got the lock does not free it */
	struct bs_io *d = mem_open(dev);
	CU_ASSERT(bs_io_lock(d) == -EWOULDBLOCK);
	bs_io_close(b);
	bs_io_close(d);
	bs_memdev_free(dev);
}

static void mem_power_cycle_frees_the_lock(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *a = mem_open(dev), *b = mem_open(dev);
	CU_ASSERT(bs_io_lock(a) == 0);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(bs_io_lock(b) == 0);
	bs_io_close(b);
	bs_io_close(a);
	bs_memdev_free(dev);
}

/* A handle from before a crash is closed after the image was reopened: like
 * a dead process's descriptor, it must not release the new owner's lock. */
static void mem_stale_handle_closed_after_power_cycle_keeps_the_new_lock(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *old = mem_open(dev), *fresh = mem_open(dev);
	CU_ASSERT(bs_io_lock(old) == 0);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(bs_io_lock(fresh) == 0);
	bs_io_close(old);
	struct bs_io *third = mem_open(dev);
	CU_ASSERT(bs_io_lock(third) == -EWOULDBLOCK);
	bs_io_close(third);
	bs_io_close(fresh);
	bs_memdev_free(dev);
}

/* ---- file backend ------------------------------------------------------- */

static void file_open_without_create_refuses_a_missing_file(void)
{
	char *path = h_tmp_path("missing");
	struct bs_io *io = NULL;
	int created = 7;
	CU_ASSERT(bs_io_file_open(path, 0, &io, &created) == -ENOENT);
	CU_ASSERT(access(path, F_OK) != 0);
	free(path);
}

static void file_open_with_create_makes_an_empty_file_and_says_so(void)
{
	char *path = h_tmp_path("create");
	struct bs_io *io = NULL;
	int created = 0;
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, &created) == 0);
	CU_ASSERT(created == 1);
	uint64_t size = 1;
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 0);
	struct stat st;
	CU_ASSERT(stat(path, &st) == 0 && S_ISREG(st.st_mode));
	mode_t mask = umask(0);
	umask(mask);
	CU_ASSERT((st.st_mode & 0777) == (0644 & ~mask));
	CU_ASSERT(bs_io_pwrite(io, "abc", 3, 0) == 0);
	bs_io_close(io);

	/* an existing file is opened, not recreated, and not truncated */
	created = 1;
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, &created) == 0);
	CU_ASSERT(created == 0);
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 3);
	bs_io_close(io);
	/* the out-parameter is optional */
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, NULL) == 0);
	bs_io_close(io);
	free(path);
}

static void file_open_refuses_a_directory(void)
{
	struct bs_io *io = NULL;
	CU_ASSERT(bs_io_file_open(h_tmp_dir(), 0, &io, NULL) < 0);
	CU_ASSERT(bs_io_file_open(h_tmp_dir(), BS_IO_CREATE, &io, NULL) < 0);
}

static struct bs_io *file_new(const char *stem, char **pathp)
{
	char *path = h_tmp_path(stem);
	struct bs_io *io = NULL;
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, NULL) == 0);
	*pathp = path;
	return io;
}

static void file_write_read_round_trip_reaches_the_file(void)
{
	char *path;
	struct bs_io *io = file_new("rw", &path);
	uint8_t in[5000], out[5000];
	h_pattern(in, sizeof in, 2, 0);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_pwrite(io, "zz", 2, 4999) == 0);   /* extends by one */
	in[4999] = 'z';
	CU_ASSERT(bs_io_pread(io, out, sizeof out, 0) == 0);
	CU_ASSERT(memcmp(in, out, sizeof in) == 0);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 5001);
	CU_ASSERT(bs_io_sync(io) == 0);
	uint8_t *disk = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(h_read_file(path, &disk, &len) == 0);
	CU_ASSERT(len == 5001 && memcmp(disk, in, 5000) == 0 && disk[5000] == 'z');
	free(disk);
	bs_io_close(io);
	free(path);
}

static void file_pread_past_the_end_fails(void)
{
	char *path;
	struct bs_io *io = file_new("short", &path);
	uint8_t b[16];
	CU_ASSERT(bs_io_pwrite(io, "0123456789", 10, 0) == 0);
	CU_ASSERT(bs_io_pread(io, b, 10, 0) == 0);
	CU_ASSERT(bs_io_pread(io, b, 11, 0) == -EIO);
	CU_ASSERT(bs_io_pread(io, b, 1, 10) == -EIO);
	CU_ASSERT(bs_io_pread(io, b, 4, 1000) == -EIO);
	bs_io_close(io);
	free(path);
}

static void file_truncate_grows_with_zeros_and_shrinks(void)
{
	char *path;
	struct bs_io *io = file_new("trunc", &path);
	CU_ASSERT(bs_io_pwrite(io, "abcdef", 6, 0) == 0);
	CU_ASSERT(bs_io_truncate(io, 2) == 0);
	CU_ASSERT(bs_io_truncate(io, 9) == 0);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 9);
	uint8_t b[9];
	CU_ASSERT(bs_io_pread(io, b, 9, 0) == 0);
	CU_ASSERT(b[0] == 'a' && b[1] == 'b' && h_all_zero(b + 2, 7));
	CU_ASSERT(bs_io_sync(io) == 0);
	uint8_t *disk = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(h_read_file(path, &disk, &len) == 0);
	CU_ASSERT(len == 9 && memcmp(disk, b, 9) == 0);
	free(disk);
	CU_ASSERT(bs_io_truncate(io, 0) == 0);
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT(size == 0);
	bs_io_close(io);
	free(path);
}

/* Growing a real file reserves its blocks: on a full filesystem the grow
 * itself fails with ENOSPC and leaves the size as it was. */
static void file_growth_past_a_full_filesystem_fails_at_the_grow(void)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/tiny-fs", h_tmp_dir());
	CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
		printf("skipped: cannot mount a tmpfs (%s) ", strerror(errno));
		rmdir(dir);
		return;
	}
	char path[700];
	snprintf(path, sizeof path, "%s/img", dir);
	struct bs_io *io = NULL;
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, NULL) == 0);
	CU_ASSERT(bs_io_truncate(io, 512 << 10) == 0);
	struct stat st;
	CU_ASSERT(stat(path, &st) == 0 && (uint64_t)st.st_blocks * 512 >= 512 << 10);
	CU_ASSERT(bs_io_truncate(io, 4 << 20) == -ENOSPC);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0 && size == 512 << 10);
	CU_ASSERT(bs_io_truncate(io, 600 << 10) == 0);
	bs_io_close(io);
	/* and through the file layer: the extend rolls back, the image is whole */
	struct bstack *bs = NULL;
	snprintf(path, sizeof path, "%s/img2", dir);
	CU_ASSERT_FATAL(bstack_open_path(path, true, &bs) == 0);
	CU_ASSERT(bstack_extend(bs, 8 << 20, NULL) == -ENOSPC);
	CU_ASSERT(bstack_len(bs) == 0);
	CU_ASSERT(bstack_push(bs, "ok", 2, NULL) == 0);
	bstack_close(bs);
	CU_ASSERT(bstack_open_path(path, false, &bs) == 0 && bstack_len(bs) == 2);
	bstack_close(bs);
	CU_ASSERT(umount2(dir, MNT_DETACH) == 0);
	rmdir(dir);
}

static void mem_zero_is_one_write_kept_or_lost_whole(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	CU_ASSERT_FATAL(dev != NULL);
	struct bs_io *io = mem_open(dev);
	uint8_t in[200000], exp[200000];
	h_pattern(in, sizeof in, 9, 0);
	CU_ASSERT_FATAL(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT_FATAL(bs_io_sync(io) == 0);
	uint64_t w = bs_memdev_writes(dev);
	CU_ASSERT(bs_io_zero(io, 100, 150000) == 0);
	CU_ASSERT(bs_memdev_writes(dev) == w + 1);
	CU_ASSERT(bs_memdev_pending(dev) == 1);
	memcpy(exp, in, sizeof exp);
	memset(exp + 100, 0, 150000);
	CU_ASSERT(mem_reads(io, exp, sizeof exp));
	/* beyond the end is refused, nothing logged */
	CU_ASSERT(bs_io_zero(io, sizeof in - 10, 11) == -EIO);
	CU_ASSERT(bs_memdev_pending(dev) == 1);
	bs_io_close(io);
	bs_memdev_power_cycle(dev, 0);
	CU_ASSERT(mem_durable_is(dev, in, sizeof in));
	io = mem_open(dev);
	CU_ASSERT(bs_io_zero(io, 100, 150000) == 0);
	bs_io_close(io);
	bs_memdev_power_cycle(dev, 1);
	CU_ASSERT(mem_durable_is(dev, exp, sizeof exp));
	bs_memdev_free(dev);
}

static void file_zero_reads_back_as_zeros_and_keeps_the_size(void)
{
	char *path = h_tmp_path("zero");
	struct bs_io *io = NULL;
	CU_ASSERT_FATAL(bs_io_file_open(path, BS_IO_CREATE, &io, NULL) == 0);
	static uint8_t in[3 * 65536 + 77], got[sizeof in];
	h_pattern(in, sizeof in, 4, 0);
	CU_ASSERT_FATAL(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_zero(io, 5, 2 * 65536 + 3) == 0);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0 && size == sizeof in);
	CU_ASSERT_FATAL(bs_io_pread(io, got, sizeof got, 0) == 0);
	CU_ASSERT(memcmp(got, in, 5) == 0);
	CU_ASSERT(h_all_zero(got + 5, 2 * 65536 + 3));
	CU_ASSERT(memcmp(got + 5 + 2 * 65536 + 3, in + 5 + 2 * 65536 + 3,
			 sizeof in - 5 - 2 * 65536 - 3) == 0);
	bs_io_close(io);
	free(path);
}

/* Extents of path's [0, len) that are holes or unwritten (fallocated but
 * never written): what makes an fdatasync after an overwrite cost the
 * host filesystem a metadata commit.  -1 when FIEMAP is unsupported. */
static long unwritten_or_holes(const char *path, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	fsync(fd);
	enum { N = 256 };
	struct fiemap *fm = calloc(1, sizeof *fm + N * sizeof(struct fiemap_extent));
	CU_ASSERT_FATAL(fm != NULL);
	fm->fm_length = len;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = N;
	long bad = 0;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
		bad = -1;
	} else {
		uint64_t covered = 0;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];
			if (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN)
				bad++;
			if (e->fe_logical > covered)
				bad++;   /* a hole before this extent */
			covered = e->fe_logical + e->fe_length;
		}
		if (covered < len)
			bad++;
	}
	free(fm);
	close(fd);
	return bad;
}

static void file_prefill_writes_real_zeros_and_keeps_what_is_there(void)
{
	char *path;
	struct bs_io *io = file_new("prefill", &path);
	const uint64_t len = (3ULL << 20) + 5;
	CU_ASSERT(bs_io_pwrite(io, "abc", 3, 0) == 0);
	CU_ASSERT(bs_io_reserve(io, len) == 0);   /* unwritten extents past EOF */
	CU_ASSERT_EQUAL(bs_io_prefill(io, len), 0);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0);
	CU_ASSERT_EQUAL(size, len);
	uint8_t b[4] = { 1, 1, 1, 1 }, z[4] = { 0 };
	CU_ASSERT(bs_io_pread(io, b, 3, 0) == 0 && memcmp(b, "abc", 3) == 0);
	CU_ASSERT(bs_io_pread(io, b, 4, len - 4) == 0 && memcmp(b, z, 4) == 0);
	long bad = unwritten_or_holes(path, len);
	if (bad >= 0)
		CU_ASSERT_EQUAL(bad, 0);
	/* a shorter target changes nothing */
	CU_ASSERT_EQUAL(bs_io_prefill(io, 10), 0);
	CU_ASSERT(bs_io_size(io, &size) == 0 && size == len);
	bs_io_close(io);
	free(path);
}

/* A journal on a real file is written out with zeros ahead of its end, so
 * that a commit overwrites mapped blocks (a data-only fdatasync): its size
 * changes once per megabyte of records, not at every commit, never past
 * its capacity, and what it holds has no holes or unwritten extents. */
static void a_journal_file_is_prefilled_ahead_of_its_records(void)
{
	char *ipath, *jpath;
	struct bs_io *io = file_new("jimg", &ipath), *jio = file_new("jimg-journal", &jpath);
	const uint64_t cap = 2ULL << 20;
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(bstack_create_journal(io, jio, cap, &bs) == 0);
	static uint8_t rec[3000];
	struct stat st;
	off_t last = -1;
	int changes = 0;
	uint64_t off;
	for (int i = 0; i < 300; i++) {
		memset(rec, i, sizeof rec);
		CU_ASSERT(bstack_txn_begin(bs) == 0);
		CU_ASSERT(bstack_push(bs, rec, sizeof rec, &off) == 0);
		uint64_t seq = 0;
		CU_ASSERT(bstack_txn_end(bs, &seq) == 0 && seq > 0);
		CU_ASSERT(bstack_flush(bs, seq) == 0);
		CU_ASSERT_FATAL(stat(jpath, &st) == 0);
		changes += st.st_size != last;
		last = st.st_size;
		CU_ASSERT((uint64_t)st.st_size <= cap);
	}
	/* 300 records of ~3 KiB: about 900 KiB, one checkpoint at 2 MiB */
	CU_ASSERT(changes >= 1 && changes <= 3);
	CU_ASSERT((uint64_t)st.st_size > (1ULL << 20));
	long bad = unwritten_or_holes(jpath, (uint64_t)st.st_size);
	if (bad >= 0)
		CU_ASSERT_EQUAL(bad, 0);
	bstack_close(bs);
	free(ipath);
	free(jpath);
}

static void file_lock_is_exclusive_between_two_handles_on_one_path(void)
{
	char *path;
	struct bs_io *a = file_new("lock", &path), *b = NULL, *c = NULL;
	CU_ASSERT_FATAL(bs_io_file_open(path, 0, &b, NULL) == 0);
	CU_ASSERT(bs_io_lock(a) == 0);
	CU_ASSERT(bs_io_lock(b) == -EWOULDBLOCK);
	/* the loser can still read (the lock is advisory) */
	CU_ASSERT(bs_io_pwrite(a, "x", 1, 0) == 0);
	uint8_t x = 0;
	CU_ASSERT(bs_io_pread(b, &x, 1, 0) == 0 && x == 'x');
	bs_io_close(a);
	CU_ASSERT(bs_io_lock(b) == 0);
	CU_ASSERT_FATAL(bs_io_file_open(path, 0, &c, NULL) == 0);
	CU_ASSERT(bs_io_lock(c) == -EWOULDBLOCK);
	bs_io_close(c);
	bs_io_close(b);
	free(path);
}

/* ---- memory device: a full disk (capacity) ------------------------------ */

static void mem_write_past_the_capacity_fails_with_enospc_and_changes_nothing(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t in[100], big[200];
	h_pattern(in, sizeof in, 3, 0);
	h_pattern(big, sizeof big, 4, 0);
	bs_memdev_set_capacity(dev, 150);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	uint64_t pending = bs_memdev_pending(dev);
	/* straddling the capacity: refused whole, not applied, not logged */
	CU_ASSERT(bs_io_pwrite(io, big, 60, 95) == -ENOSPC);
	CU_ASSERT(bs_io_pwrite(io, big, sizeof big, 0) == -ENOSPC);
	CU_ASSERT(mem_reads(io, in, sizeof in));
	CU_ASSERT(bs_memdev_pending(dev) == pending);
	/* the power is still on: the device stays usable */
	CU_ASSERT(!bs_memdev_dead(dev));
	CU_ASSERT(bs_io_pwrite(io, big, 10, 0) == 0);
	memcpy(in, big, 10);
	CU_ASSERT(mem_reads(io, in, sizeof in));
	CU_ASSERT(bs_io_sync(io) == 0);
	CU_ASSERT(mem_durable_is(dev, in, sizeof in));
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_write_up_to_the_capacity_exactly_succeeds(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t in[64];
	h_pattern(in, sizeof in, 5, 0);
	bs_memdev_set_capacity(dev, sizeof in);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(mem_reads(io, in, sizeof in));
	CU_ASSERT(bs_io_pwrite(io, in, 1, sizeof in) == -ENOSPC);
	/* overwriting inside the image and zeroing never need space */
	CU_ASSERT(bs_io_pwrite(io, in + 1, 10, 30) == 0);
	CU_ASSERT(bs_io_zero(io, 0, 8) == 0);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_truncate_past_the_capacity_fails_but_shrinking_works(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t in[100];
	h_pattern(in, sizeof in, 6, 0);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	/* a capacity below the current size only refuses growth */
	bs_memdev_set_capacity(dev, 50);
	CU_ASSERT(bs_io_truncate(io, 101) == -ENOSPC);
	CU_ASSERT(bs_memdev_pending(dev) == 0);
	CU_ASSERT(mem_reads(io, in, sizeof in));
	CU_ASSERT(bs_io_truncate(io, 60) == 0);
	CU_ASSERT(mem_reads(io, in, 60));
	CU_ASSERT(bs_io_truncate(io, 61) == -ENOSPC);
	CU_ASSERT(bs_io_truncate(io, 50) == 0);
	CU_ASSERT(bs_io_sync(io) == 0);
	CU_ASSERT(mem_durable_is(dev, in, 50));
	CU_ASSERT(!bs_memdev_dead(dev));
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_raising_or_clearing_the_capacity_lets_the_write_through(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t in[256];
	h_pattern(in, sizeof in, 7, 0);
	bs_memdev_set_capacity(dev, 100);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == -ENOSPC);
	CU_ASSERT(mem_reads(io, NULL, 0));
	bs_memdev_set_capacity(dev, 256);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == 0);
	CU_ASSERT(bs_io_truncate(io, 1000) == -ENOSPC);
	bs_memdev_set_capacity(dev, 0);
	CU_ASSERT(bs_io_truncate(io, 1000) == 0);
	uint64_t size = 0;
	CU_ASSERT(bs_io_size(io, &size) == 0 && size == 1000);
	bs_io_close(io);
	bs_memdev_free(dev);
}

static void mem_a_refused_write_counts_as_an_issued_write(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_io *io = mem_open(dev);
	uint8_t in[32] = { 1 };
	bs_memdev_set_capacity(dev, 16);
	bs_memdev_reset_counts(dev);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == -ENOSPC);
	CU_ASSERT(bs_io_truncate(io, 17) == -ENOSPC);
	CU_ASSERT(bs_memdev_writes(dev) == 2);
	/* and fail_at sees it: the 1st operation from now cuts the power
	 * (-EIO wins over -ENOSPC, as a dead disk answers nothing else) */
	bs_memdev_fail_at(dev, 1);
	CU_ASSERT(bs_io_pwrite(io, in, sizeof in, 0) == -EIO);
	CU_ASSERT(bs_memdev_dead(dev));
	bs_io_close(io);
	bs_memdev_free(dev);
}

/* ---- the staging device (io_stage.c) ------------------------------------ */

static struct bs_memdev *dev_with(const char *bytes, size_t n)
{
	struct bs_memdev *dev = bs_memdev_new();
	CU_ASSERT_FATAL(bs_memdev_load(dev, bytes, n) == 0);
	bs_memdev_reset_counts(dev);
	return dev;
}

static bool dev_holds(struct bs_memdev *dev, const char *bytes, size_t n)
{
	uint8_t *b;
	size_t len;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &b, &len) == 0);
	bool ok = len == n && memcmp(b, bytes, n) == 0;
	free(b);
	return ok;
}

/* Reads see the staged writes, zeros and truncates over the base, which
 * is never written; closing without a commit leaves it as it was. */
static void stage_reads_its_writes_and_never_writes_the_base(void)
{
	struct bs_memdev *dev = dev_with("0123456789", 10);
	struct bs_io *base, *st;
	char b[32];
	uint64_t size;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &base) == 0);
	CU_ASSERT_FATAL(bs_io_stage_new(base, &st) == 0);
	CU_ASSERT(bs_io_pwrite(st, "ab", 2, 3) == 0);
	CU_ASSERT(bs_io_pwrite(st, "XYZ", 3, 12) == 0);   /* past the end: a gap */
	CU_ASSERT(bs_io_zero(st, 8, 2) == 0);
	CU_ASSERT(bs_io_sync(st) == 0);
	CU_ASSERT(bs_io_size(st, &size) == 0 && size == 15);
	CU_ASSERT(bs_io_pread(st, b, 15, 0) == 0);
	CU_ASSERT(memcmp(b, "012ab567\0\0\0\0XYZ", 15) == 0);
	CU_ASSERT(bs_io_pwrite(st, "cdef", 4, 2) == 0);   /* over the first write */
	CU_ASSERT(bs_io_pread(st, b, 7, 0) == 0 && memcmp(b, "01cdef6", 7) == 0);
	CU_ASSERT(bs_io_truncate(st, 4) == 0);
	CU_ASSERT(bs_io_truncate(st, 6) == 0);             /* regrown: zeros */
	CU_ASSERT(bs_io_pread(st, b, 6, 0) == 0 && memcmp(b, "01cd\0\0", 6) == 0);
	CU_ASSERT(bs_io_pread(st, b, 1, 6) == -EIO);       /* past the staged end */
	CU_ASSERT(bs_io_stage_pending(st) == 6);
	CU_ASSERT(!bs_io_stage_committed(st));
	CU_ASSERT(bs_memdev_writes(dev) == 0 && bs_memdev_syncs(dev) == 0);
	CU_ASSERT(dev_holds(dev, "0123456789", 10));
	bs_io_close(st);
	CU_ASSERT(dev_holds(dev, "0123456789", 10));
	bs_memdev_free(dev);
}

/* A commit replays the log in order on the base (each sync a real one)
 * and then passes everything through. */
static void stage_commit_replays_in_order_then_passes_through(void)
{
	struct bs_memdev *dev = dev_with("0123456789", 10);
	struct bs_io *base, *st;
	char b[16];
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &base) == 0);
	CU_ASSERT_FATAL(bs_io_stage_new(base, &st) == 0);
	CU_ASSERT(bs_io_pwrite(st, "ab", 2, 0) == 0);
	CU_ASSERT(bs_io_sync(st) == 0);
	CU_ASSERT(bs_io_truncate(st, 5) == 0);
	CU_ASSERT(bs_io_pwrite(st, "Z", 1, 6) == 0);
	CU_ASSERT(bs_io_sync(st) == 0);
	CU_ASSERT(bs_io_stage_commit(st) == 0);
	CU_ASSERT(bs_io_stage_committed(st) && bs_io_stage_pending(st) == 0);
	CU_ASSERT(bs_memdev_syncs(dev) == 2);
	CU_ASSERT(dev_holds(dev, "ab234\0Z", 7));
	CU_ASSERT(bs_io_pwrite(st, "q", 1, 1) == 0);       /* straight through */
	CU_ASSERT(bs_io_sync(st) == 0);
	CU_ASSERT(dev_holds(dev, "aq234\0Z", 7));
	CU_ASSERT(bs_io_pread(st, b, 7, 0) == 0 && memcmp(b, "aq234\0Z", 7) == 0);
	bs_io_close(st);
	bs_memdev_free(dev);
}

/* A power cut during the replay leaves a durable prefix of the log, as a
 * cut during the original operations would; the device then refuses. */
static void a_cut_commit_leaves_a_prefix_of_the_log(void)
{
	for (uint64_t cut = 1; cut <= 4; cut++) {
		struct bs_memdev *dev = dev_with("0123", 4);
		struct bs_io *base, *st;
		char b[4];
		CU_ASSERT_FATAL(bs_io_mem_open(dev, &base) == 0);
		CU_ASSERT_FATAL(bs_io_stage_new(base, &st) == 0);
		CU_ASSERT(bs_io_pwrite(st, "a", 1, 0) == 0);
		CU_ASSERT(bs_io_sync(st) == 0);
		CU_ASSERT(bs_io_pwrite(st, "b", 1, 1) == 0);
		CU_ASSERT(bs_io_sync(st) == 0);
		bs_memdev_fail_at(dev, cut);
		CU_ASSERT(bs_io_stage_commit(st) == -EIO);
		CU_ASSERT(bs_io_pread(st, b, 1, 0) == -EIO);
		bs_io_close(st);
		bs_memdev_power_cycle(dev, 0);
		/* cut 1, 2: nothing durable; 3, 4: the first write */
		CU_ASSERT(dev_holds(dev, cut <= 2 ? "0123" : "a123", 4));
		bs_memdev_free(dev);
	}
}

static const struct h_test tests[] = {
	H_TEST(stage_reads_its_writes_and_never_writes_the_base),
	H_TEST(stage_commit_replays_in_order_then_passes_through),
	H_TEST(a_cut_commit_leaves_a_prefix_of_the_log),
	H_TEST(mem_write_then_read_returns_the_bytes),
	H_TEST(mem_write_past_the_end_extends_with_zeros),
	H_TEST(mem_zero_length_write_does_not_extend),
	H_TEST(mem_pread_past_the_end_fails_with_eio),
	H_TEST(mem_truncate_grows_with_zeros_and_shrinks),
	H_TEST(mem_contents_outlive_the_handle),
	H_TEST(mem_counts_writes_truncates_and_syncs),
	H_TEST(mem_counts_are_shared_by_all_handles_of_a_device),
	H_TEST(mem_fail_at_fires_at_exactly_the_nth_operation),
	H_TEST(mem_fail_at_counts_from_the_moment_it_is_armed),
	H_TEST(mem_fail_at_zero_disarms_the_fault),
	H_TEST(mem_failed_operation_is_not_applied),
	H_TEST(mem_power_cycle_zero_drops_every_unsynced_write),
	H_TEST(mem_power_cycle_k_keeps_exactly_the_first_k_writes),
	H_TEST(mem_failed_sync_leaves_the_writes_pending),
	H_TEST(mem_power_cycle_restores_power),
	H_TEST(mem_snapshot_returns_the_durable_contents_only),
	H_TEST(mem_load_sets_durable_and_volatile_bytes),
	H_TEST(mem_lock_is_exclusive_between_handles),
	H_TEST(mem_power_cycle_frees_the_lock),
	H_TEST(mem_stale_handle_closed_after_power_cycle_keeps_the_new_lock),
	H_TEST(file_open_without_create_refuses_a_missing_file),
	H_TEST(file_open_with_create_makes_an_empty_file_and_says_so),
	H_TEST(file_open_refuses_a_directory),
	H_TEST(file_write_read_round_trip_reaches_the_file),
	H_TEST(file_pread_past_the_end_fails),
	H_TEST(file_truncate_grows_with_zeros_and_shrinks),
	H_TEST(file_lock_is_exclusive_between_two_handles_on_one_path),
	H_TEST(mem_zero_is_one_write_kept_or_lost_whole),
	H_TEST(file_growth_past_a_full_filesystem_fails_at_the_grow),
	H_TEST(file_zero_reads_back_as_zeros_and_keeps_the_size),
	H_TEST(file_prefill_writes_real_zeros_and_keeps_what_is_there),
	H_TEST(a_journal_file_is_prefilled_ahead_of_its_records),
	H_TEST(mem_write_past_the_capacity_fails_with_enospc_and_changes_nothing),
	H_TEST(mem_write_up_to_the_capacity_exactly_succeeds),
	H_TEST(mem_truncate_past_the_capacity_fails_but_shrinking_works),
	H_TEST(mem_raising_or_clearing_the_capacity_lets_the_write_through),
	H_TEST(mem_a_refused_write_counts_as_an_issued_write),
};

H_MAIN("io", tests)
