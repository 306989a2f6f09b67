/*
 * view.c — the C half of the seed view check (run.sh, issue 16): does the
 * view of an image the seeds' own code wrote show what they allocated?
 *
 *   seedcheck_view IMAGE EXPECT
 *
 * EXPECT is what main.rs `view` wrote (view.rs): the live slices with the
 * FNV-1a of their bytes, the allocation files the view must list, and the
 * arena bytes outside every allocation.  IMAGE is opened with
 * core/allocview.c as `bstackfs -o view` opens it, and compared:
 *   - the allocations, one by one, are exactly the expected ones;
 *   - every live slice lies inside one allocation (FirstFit: at its
 *     start), and its bytes read through the view hash as the seed's;
 *   - the free blocks add up to the gaps (FirstFit's with their header
 *     and footer) and share no byte with an allocation;
 *   - the image file has the same bytes after the view as before.
 * Prints "view KIND: ok ..." and exits 0, or "view KIND: FAILED: why" and
 * exits 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocview.h"

static const char *g_kind = "?";

static void fail(const char *fmt, ...)
{
	va_list ap;
	printf("view %s: FAILED: ", g_kind);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

static uint64_t fnv(const uint8_t *b, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (uint64_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The whole file's FNV-1a (the image before and after). */
static uint64_t file_hash(const char *path, uint64_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t buf[65536];
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t n;
	*size = 0;
	if (!f)
		fail("cannot read %s: %s", path, strerror(errno));
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		for (size_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 0x100000001b3ULL;
		}
		*size += n;
	}
	fclose(f);
	return h;
}

struct slice {
	uint64_t off, len, hash;
};

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: seedcheck_view IMAGE EXPECT\n");
		return 2;
	}
	FILE *f = fopen(argv[2], "r");
	if (!f)
		fail("cannot read %s", argv[2]);
	static struct slice sl[1 << 14];
	static struct av_block ex[1 << 16];
	size_t ns = 0, ne = 0;
	uint64_t gap_pieces = 0, gap_bytes = 0;
	bool have_gaps = false;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		unsigned long long a, b, c;
		if (sscanf(line, "slice %llu %llu %llx", &a, &b, &c) == 3 && ns < 1 << 14)
			sl[ns++] = (struct slice){ a, b, c };
		else if (sscanf(line, "expect %llu %llu", &a, &b) == 2 && ne < 1 << 16)
			ex[ne++] = (struct av_block){ a, b };
		else if (sscanf(line, "gaps %llu %llu", &a, &b) == 2)
			gap_pieces = a, gap_bytes = b, have_gaps = true;
		else
			fail("%s: a line I cannot read: %s", argv[2], line);
	}
	fclose(f);
	if (!have_gaps)
		fail("%s: no gaps line", argv[2]);

	uint64_t size0, size1, h0 = file_hash(argv[1], &size0);
	struct av_view *v;
	char why[1400];
	int r = av_open(argv[1], BS_ALLOC_NONE, &v, why, sizeof why);
	if (r)
		fail("the view refuses the seed's image: %s", why);
	g_kind = bs_alloc_kind_name(v->kind);
	if (v->n_allocs != ne)
		fail("%zu allocations, the seed's slices make %zu", v->n_allocs, ne);
	for (size_t i = 0; i < ne; i++)
		if (v->allocs[i].off != ex[i].off || v->allocs[i].len != ex[i].len)
			fail("allocation %zu is %" PRIu64 "+%" PRIu64 ", expected %" PRIu64
			     "+%" PRIu64, i, v->allocs[i].off, v->allocs[i].len, ex[i].off, ex[i].len);
	for (size_t i = 0; i < ns; i++) {
		size_t in = 0;
		for (size_t j = 0; j < v->n_allocs; j++) {
			const struct av_block *b = &v->allocs[j];
			if (b->off <= sl[i].off && sl[i].off + sl[i].len <= b->off + b->len)
				in++;
		}
		/* Slab: a slice of several blocks spans several files */
		bool spans = v->kind == BS_ALLOC_SLAB && in == 0;
		if (in != 1 && !spans)
			fail("slice %" PRIu64 "+%" PRIu64 " lies in %zu allocations", sl[i].off,
			     sl[i].len, in);
		if (v->kind == BS_ALLOC_FIRSTFIT) {
			bool at_start = false;
			for (size_t j = 0; j < v->n_allocs; j++)
				at_start |= v->allocs[j].off == sl[i].off;
			if (!at_start)
				fail("slice %" PRIu64 " is not a FirstFit allocation's start", sl[i].off);
		}
		uint8_t *buf = malloc(sl[i].len);
		if (!buf || av_read(v, sl[i].off, buf, sl[i].len))
			fail("cannot read slice %" PRIu64 "+%" PRIu64 " through the view", sl[i].off,
			     sl[i].len);
		if (fnv(buf, sl[i].len) != sl[i].hash)
			fail("slice %" PRIu64 "+%" PRIu64 ": the view's bytes are not the seed's",
			     sl[i].off, sl[i].len);
		free(buf);
	}
	uint64_t freed = 0;
	size_t ai = 0;
	for (size_t i = 0; i < v->n_frees; i++) {
		const struct av_block *b = &v->frees[i];
		freed += b->len + (v->kind == BS_ALLOC_FIRSTFIT ? 24 : 0);
		while (ai < v->n_allocs && v->allocs[ai].off + v->allocs[ai].len <= b->off)
			ai++;
		if (ai < v->n_allocs && v->allocs[ai].off < b->off + b->len)
			fail("free block %" PRIu64 "+%" PRIu64 " overlaps an allocation", b->off, b->len);
	}
	if (freed != gap_bytes)
		fail("the free blocks hold %" PRIu64 " bytes, the gaps between the seed's slices %"
		     PRIu64, freed, gap_bytes);
	size_t nfree = v->n_frees, nalloc = v->n_allocs;
	av_close(v);
	if (file_hash(argv[1], &size1) != h0 || size1 != size0)
		fail("the image changed under the view");
	printf("view %s: ok, %zu allocations (%zu seed slices) and %zu free blocks "
	       "(%" PRIu64 " gaps) as the seed made them, image unchanged\n", g_kind, nalloc, ns,
	       nfree, gap_pieces);
	return 0;
}
