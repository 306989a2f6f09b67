/*
 * harness.h — what every CUnit suite shares: the main() that runs it and
 * prints a summary line scripts/test counts, a seeded RNG whose seed is
 * printed so a failure can be replayed, temp paths, and byte helpers.
 */
#ifndef BSTACKFS_HARNESS_H
#define BSTACKFS_HARNESS_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bstack.h"
#include "io.h"

/* A test table entry: name (reads as a sentence) and function. */
struct h_test {
	const char *name;
	void (*fn)(void);
};
#define H_TEST(f) { #f, f }

/*
 * Run one suite and exit: prints CUnit's report, then the line
 *   "suite NAME: P passed, F failed"
 * (scripts/test sums these) and returns non-zero when anything failed.
 * Optional argv[1] runs only the test whose name matches.
 */
int h_run_suite(const char *name, const struct h_test *tests, size_t n,
		int argc, char **argv);
#define H_MAIN(suite_name, table) \
	int main(int argc, char **argv) { \
		return h_run_suite(suite_name, table, sizeof(table) / sizeof(table[0]), \
				   argc, argv); \
	}

/* Seeded RNG (xorshift64*).  The seed comes from $BSTACKFS_SEED when set,
 * else from the time; h_rng_seed() prints it once per suite. */
uint64_t h_rng_seed(void);
void h_rng_reset(uint64_t seed);
uint64_t h_rand(void);
uint64_t h_rand_below(uint64_t n);     /* uniform in [0, n) */

/* Fill buf with a pattern derived from (tag, offset): the same tag and
 * offset always give the same bytes, so content can be re-verified. */
void h_pattern(void *buf, size_t n, uint64_t tag, uint64_t offset);
bool h_pattern_ok(const void *buf, size_t n, uint64_t tag, uint64_t offset);
bool h_all_zero(const void *buf, size_t n);

/* A fresh path in a per-process temp directory (removed at exit). */
const char *h_tmp_dir(void);
char *h_tmp_path(const char *stem);   /* malloc'd; the file does not exist */

/* A BStack on a memory device, for the core suites: a fresh empty image
 * (bstack_create) or the one the device holds (bstack_open).  Any failure
 * fails the test at once (CU_ASSERT_FATAL). */
struct bstack *h_stack_create(struct bs_memdev *dev);
struct bstack *h_stack_open(struct bs_memdev *dev);
/* The device's size as the host sees it now (volatile, not yet durable). */
uint64_t h_dev_size(struct bs_memdev *dev);

/* Read / write a whole host file (tests crafting images). */
int h_read_file(const char *path, uint8_t **buf, size_t *len);
int h_write_file(const char *path, const void *buf, size_t len);

/* Threads of a test meeting at numbered stages: h_stage_set moves to
 * stage n and wakes the waiters; h_stage_wait waits for stage n (or a
 * later one).  Initialise with H_STAGE_INIT. */
struct h_stage {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stage;
};
#define H_STAGE_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }
void h_stage_set(struct h_stage *s, int n);
void h_stage_wait(struct h_stage *s, int n);

#endif
