#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct h_test *g_tests;
static size_t g_n;

int h_run_suite(const char *name, const struct h_test *tests, size_t n,
		int argc, char **argv)
{
	g_tests = tests;
	g_n = n;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	CU_pSuite s = CU_add_suite(name, NULL, NULL);
	if (!s)
		return 2;
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		if (!CU_add_test(s, tests[i].name, tests[i].fn))
			return 2;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned ran = CU_get_number_of_tests_run();
	unsigned failed = CU_get_number_of_tests_failed();
	printf("suite %s: %u passed, %u failed\n", name, ran - failed, failed);
	fflush(stdout);
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

static uint64_t g_state;
static uint64_t g_seed;
static bool g_seeded;

uint64_t h_rng_seed(void)
{
	if (!g_seeded) {
		const char *e = getenv("BSTACKFS_SEED");
		g_seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
		if (!g_seed)
			g_seed = 1;
		printf("[seed %llu: replay with BSTACKFS_SEED=%llu]\n",
		       (unsigned long long)g_seed, (unsigned long long)g_seed);
		g_state = g_seed;
		g_seeded = true;
	}
	return g_seed;
}

void h_rng_reset(uint64_t seed)
{
	g_state = seed ? seed : 1;
	g_seeded = true;
}

uint64_t h_rand(void)
{
	if (!g_seeded)
		h_rng_seed();
	g_state ^= g_state >> 12;
	g_state ^= g_state << 25;
	g_state ^= g_state >> 27;
	return g_state * 0x2545F4914F6CDD1DULL;
}

uint64_t h_rand_below(uint64_t n)
{
	return n ? h_rand() % n : 0;
}

static uint8_t pat_byte(uint64_t tag, uint64_t off)
{
	uint64_t x = tag * 0x9E3779B97F4A7C15ULL + off;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 32;
	return (uint8_t)x;
}

void h_pattern(void *buf, size_t n, uint64_t tag, uint64_t offset)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < n; i++)
		b[i] = pat_byte(tag, offset + i);
}

bool h_pattern_ok(const void *buf, size_t n, uint64_t tag, uint64_t offset)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat_byte(tag, offset + i))
			return false;
	return true;
}

bool h_all_zero(const void *buf, size_t n)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static char g_dir[256];

static void rm_tmp_dir(void)
{
	char cmd[300];
	if (g_dir[0]) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", g_dir);
	}
}

const char *h_tmp_dir(void)
{
	if (!g_dir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(g_dir, sizeof g_dir, "%s/bstackfs-test-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(g_dir)) {
			perror("mkdtemp");
			exit(2);
		}
		atexit(rm_tmp_dir);
	}
	return g_dir;
}

char *h_tmp_path(const char *stem)
{
	static unsigned counter;
	char *p = malloc(512);
	if (!p)
		abort();
	snprintf(p, 512, "%s/%s-%u", h_tmp_dir(), stem, counter++);
	return p;
}

int h_read_file(const char *path, uint8_t **buf, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	uint8_t *b = malloc(st.st_size ? (size_t)st.st_size : 1);
	size_t got = 0;
	while (b && got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*len = got;
	return 0;
}

int h_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	ssize_t w = len ? write(fd, buf, len) : 0;
	close(fd);
	return w == (ssize_t)len ? 0 : -EIO;
}

struct bstack *h_stack_create(struct bs_memdev *dev)
{
	struct bs_io *io = NULL;
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(bstack_create(io, &bs) == 0);
	return bs;
}

struct bstack *h_stack_open(struct bs_memdev *dev)
{
	struct bs_io *io = NULL;
	struct bstack *bs = NULL;
	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT_FATAL(bstack_open(io, &bs) == 0);
	return bs;
}

uint64_t h_dev_size(struct bs_memdev *dev)
{
	struct bs_io *io;
	uint64_t n = 0;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	CU_ASSERT(bs_io_size(io, &n) == 0);
	bs_io_close(io);
	return n;
}

void h_stage_set(struct h_stage *s, int n)
{
	pthread_mutex_lock(&s->mu);
	s->stage = n;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void h_stage_wait(struct h_stage *s, int n)
{
	pthread_mutex_lock(&s->mu);
	while (s->stage < n)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
}
