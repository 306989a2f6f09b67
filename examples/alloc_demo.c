/*
 * alloc_demo.c — the bstack allocators from a program of your own, through
 * the installed library:
 *
 *   cc alloc_demo.c $(pkg-config --cflags --libs bstack) -o alloc_demo
 *   ./alloc_demo heap.bst ghost        # or firstfit, slab, linear
 *
 * Opens IMAGE (creating it with ALLOCATOR when missing; an existing image
 * must hold that allocator), allocates a few blocks, writes and reads them
 * back, grows one, frees half, verifies the allocator's invariants and
 * prints its statistics.  Every call returns 0 or a negative errno.
 *
 * The image is a plain BStack with an allocator and no bstackfs catalog:
 * bstackfs and bstackfs-inspect refuse it as another program's.
 */
#include <bstack/alloc.h>
#include <bstack/bstack.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 16

static int die(const char *what, int r)
{
	fprintf(stderr, "alloc_demo: %s: %s\n", what, r == BSTACK_E_MAGIC ||
		r == BSTACK_E_VERSION || r == BSTACK_E_INUSE || r == BSTACK_E_SHORT ?
		bstack_strerror(r) : strerror(-r));
	return 1;
}

static void report(void *ctx, const char *msg)
{
	(void)ctx;
	printf("violation: %s\n", msg);
}

int main(int argc, char **argv)
{
	struct bstack *bs;
	struct bs_alloc *a;
	struct bs_slice s[N];
	enum bs_alloc_kind want, have;
	int r;

	if (argc != 3 || (want = bs_alloc_kind_parse(argv[2])) == BS_ALLOC_NONE) {
		fprintf(stderr, "usage: alloc_demo IMAGE ghost|firstfit|slab|linear\n");
		return 2;
	}
	bool fresh = access(argv[1], F_OK) != 0;
	if ((r = bstack_open_path(argv[1], fresh, &bs)))
		return die(argv[1], r);
	if (fresh) {
		struct bs_alloc_opts o = { .block_size = 256 };   /* Slab's block */
		r = bs_alloc_create(bs, want, &o, &a);
	} else if (!(r = bs_alloc_detect(bs, &have))) {
		if (have == BS_ALLOC_NONE)
			have = BS_ALLOC_LINEAR;    /* Linear has no magic */
		r = have == want ? bs_alloc_open(bs, want, &a) : -EINVAL;
	}
	if (r) {
		bstack_close(bs);
		return die("allocator", r);
	}

	/* allocate, write, read back */
	for (int i = 0; i < N; i++) {
		uint64_t len = 100 + 37 * (uint64_t)i;
		char buf[1024];
		if ((r = bs_alloc(a, len, &s[i])))
			return die("alloc", r);
		memset(buf, 'a' + i, len);
		if ((r = bstack_set(bs, s[i].off, buf, len)))
			return die("write", r);
	}
	for (int i = 0; i < N; i++) {
		char buf[1024];
		if ((r = bstack_get(bs, s[i].off, buf, s[i].len)))
			return die("read", r);
		for (uint64_t j = 0; j < s[i].len; j++)
			if (buf[j] != 'a' + i) {
				fprintf(stderr, "alloc_demo: block %d reads back wrong\n", i);
				return 1;
			}
	}
	printf("allocated and verified %d blocks\n", N);
	/* grow the last one (the tail: every allocator grows it in place) */
	if ((r = bs_realloc(a, s[N - 1], 4096, &s[N - 1])))
		return die("realloc", r);
	/* free every other one, then the rest of the tail */
	int freed = 0;
	for (int i = 0; i < N; i += 2, freed++)
		if ((r = bs_dealloc(a, s[i])))
			return die("dealloc", r);
	printf("freed %d blocks\n", freed);

	struct bs_alloc_stats st;
	bs_alloc_stats(a, &st);
	printf("allocator %s (%s)\n", st.name, st.magic);
	printf("payload_bytes %llu\n", (unsigned long long)bstack_len(bs));
	printf("allocs %llu deallocs %llu reallocs %llu\n", (unsigned long long)st.allocs,
	       (unsigned long long)st.deallocs, (unsigned long long)st.reallocs);
	printf("free_blocks %llu free_bytes %llu largest_free %llu\n",
	       (unsigned long long)st.free_blocks, (unsigned long long)st.free_bytes,
	       (unsigned long long)st.largest_free);
	for (int i = 0; i < st.n_extra; i++)
		printf("%s %llu\n", st.extra[i].key, (unsigned long long)st.extra[i].value);
	r = bs_alloc_check(a, report, NULL);
	printf("check: %d violations\n", r);
	bs_alloc_close(a);
	bstack_close(bs);
	return r == 0 ? 0 : 1;
}
