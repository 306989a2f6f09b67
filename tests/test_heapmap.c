/*
 * test_heapmap.c — the read-only heap views (core/heapmap.c) and the
 * control file's JSON form and the JSON writer under it (core/stats_json.c),
 * on the memory device.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heapmap.h"
#include "stats_json.h"
#include "volume.h"

static const enum bs_alloc_kind kinds[] = {
	BS_ALLOC_GHOST, BS_ALLOC_FIRSTFIT, BS_ALLOC_SLAB, BS_ALLOC_LINEAR,
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static struct vol *vopen(struct bs_memdev *dev, enum bs_alloc_kind k, bool create)
{
	struct bs_io *io;
	struct vol *v = NULL;
	struct vol_error err = { "" };
	struct vol_opts o = { .allocator = k, .create = create, .block_size =
			      k == BS_ALLOC_SLAB ? 512 : 0 };
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	int r = vol_open_io(io, &o, &v, &err);
	if (r)
		printf("\nvol_open_io: %d %s\n", r, err.msg);
	CU_ASSERT_FATAL(r == 0);
	return v;
}

static void write_n(struct vol *v, uint64_t ino, size_t n, uint64_t off)
{
	uint8_t *b = malloc(n ? n : 1);
	h_pattern(b, n, ino, off);
	CU_ASSERT(vol_write(v, ino, b, n, off) == (ssize_t)n);
	free(b);
}

struct walk {
	uint64_t n, bytes, prev_key_size, prev_key_off;
	bool ordered;
};

static int count_free(void *ctx, const struct hm_free *f)
{
	struct walk *w = ctx;
	if (w->n && (f->len < w->prev_key_size ||
		     (f->len == w->prev_key_size && f->start < w->prev_key_off)))
		w->ordered = false;
	w->prev_key_size = f->len;
	w->prev_key_off = f->start;
	w->n++;
	w->bytes += f->len;
	CU_ASSERT(f->blk_start <= f->start && f->start + f->len <= f->blk_start + f->blk_len);
	return 0;
}

/* Random files, some removed, one still being appended to (spare capacity)
 * and one removed while open (an orphan): the map covers every byte once,
 * and agrees with the volume's and the allocator's own figures. */
static void the_map_covers_the_payload_exactly_once_for_each_allocator(void)
{
	h_rng_seed();
	for (size_t ki = 0; ki < NKINDS; ki++) {
		struct bs_memdev *dev = bs_memdev_new();
		struct vol *v = vopen(dev, kinds[ki], true);
		struct vol_attr a;
		uint64_t inos[40], sizes[40];
		bool live[40];
		for (int i = 0; i < 40; i++) {
			char name[16];
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT_FATAL(vol_create(v, VOL_ROOT_INO, name, 0644, 0, 0, &a) == 0);
			inos[i] = a.ino;
			sizes[i] = h_rand_below(9000);
			write_n(v, a.ino, sizes[i], 0);
			CU_ASSERT(vol_release(v, a.ino) == 0);
			live[i] = true;
		}
		for (int i = 0; i < 40; i += 3) {
			char name[16];
			snprintf(name, sizeof name, "f%d", i);
			CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, name) == 0);
			live[i] = false;
		}
		/* appended to and still open: capacity > size */
		CU_ASSERT_FATAL(vol_create(v, VOL_ROOT_INO, "open", 0644, 0, 0, &a) == 0);
		uint64_t open_ino = a.ino;
		CU_ASSERT(vol_open_file(v, open_ino) == 0);
		write_n(v, open_ino, 1000, 0);
		write_n(v, open_ino, 1000, 1000);
		/* growth in place into a hole may take exactly what a write
		 * needs (volume.c, grow): append until there is spare capacity */
		struct vol_alloc_rec oc;
		for (uint64_t k = 2; k < 40; k++) {
			CU_ASSERT_FATAL(vol_alloc_of(v, open_ino, &oc) == 0);
			if (oc.slice.len > oc.size)
				break;
			write_n(v, open_ino, 1000, k * 1000);
		}
		/* removed while open */
		CU_ASSERT_FATAL(vol_create(v, VOL_ROOT_INO, "orphan", 0644, 0, 0, &a) == 0);
		uint64_t orphan = a.ino;
		CU_ASSERT(vol_open_file(v, orphan) == 0);
		write_n(v, orphan, 3000, 0);
		CU_ASSERT(vol_fsync(v, orphan) == 0);
		CU_ASSERT(vol_unlink(v, VOL_ROOT_INO, "orphan") == 0);

		uint64_t w0 = bs_memdev_writes(dev);
		struct hm_map m;
		CU_ASSERT_FATAL(hm_build(v, &m) == 0);
		CU_ASSERT(bs_memdev_writes(dev) == w0);   /* read only */
		struct bs_alloc *al = vol_allocator(v);
		CU_ASSERT(m.payload_bytes == bstack_len(al->bs));
		uint64_t at = 0, per_kind[HM_NKINDS] = { 0 };
		bool cover = true;
		for (size_t i = 0; i < m.n; i++) {
			cover &= m.spans[i].start == at && m.spans[i].len > 0;
			at += m.spans[i].len;
			per_kind[m.spans[i].kind] += m.spans[i].len;
		}
		CU_ASSERT(cover && at == m.payload_bytes);
		for (int k = 0; k < HM_NKINDS; k++)
			CU_ASSERT(per_kind[k] == m.bytes[k]);
		/* every live file's bytes, by inode */
		for (int i = 0; i < 40; i++) {
			uint64_t got = 0;
			for (size_t s = 0; s < m.n; s++)
				if (m.spans[s].kind == HM_FILE && m.spans[s].ino == inos[i])
					got += m.spans[s].len;
			CU_ASSERT(got == (live[i] ? sizes[i] : 0));
		}
		struct vol_summary sum;
		CU_ASSERT(vol_summary(v, &sum) == 0);
		CU_ASSERT(m.bytes[HM_FILE] == sum.live_bytes - 0);
		/* the open file's spare capacity is slack of that file */
		uint64_t slack = 0;
		for (size_t s = 0; s < m.n; s++)
			if (m.spans[s].kind == HM_SLACK && m.spans[s].ino == open_ino)
				slack += m.spans[s].len;
		struct vol_alloc_rec rec;
		CU_ASSERT(vol_alloc_of(v, open_ino, &rec) == 0);
		CU_ASSERT(rec.slice.len > rec.size && slack >= rec.slice.len - rec.size);
		/* the orphan's space is referenced by no record */
		CU_ASSERT(m.bytes[HM_UNREF] >= 3000);
		/* free space: the walk, the map and the allocator agree */
		struct bs_alloc_stats st;
		bs_alloc_stats(al, &st);
		struct walk w = { .ordered = true };
		CU_ASSERT(hm_walk_free(al, count_free, &w) == 0);
		CU_ASSERT(w.bytes == st.free_bytes && m.bytes[HM_FREE] == st.free_bytes);
		CU_ASSERT(w.n == st.free_blocks);
		if (kinds[ki] == BS_ALLOC_GHOST)
			CU_ASSERT(w.ordered);
		if (kinds[ki] != BS_ALLOC_LINEAR)
			CU_ASSERT(w.n > 0);
		CU_ASSERT(m.bytes[HM_HEADER] == st.arena_start);
		CU_ASSERT(m.bytes[HM_CATALOG] > 0);
		CU_ASSERT((m.bytes[HM_OVERHEAD] > 0) == (kinds[ki] == BS_ALLOC_FIRSTFIT));
		hm_free_map(&m);
		CU_ASSERT(vol_release(v, orphan) == 0);
		CU_ASSERT(vol_release(v, open_ino) == 0);
		CU_ASSERT(vol_close(v) == 0);
		bs_memdev_free(dev);
	}
}

/* A raw heap with one free block in the middle: a, [b freed], c. */
static struct bs_alloc *heap_with_a_hole(struct bs_memdev *dev, enum bs_alloc_kind k,
					 struct bs_slice *hole)
{
	struct bstack *bs = h_stack_create(dev);
	struct bs_alloc *a;
	struct bs_alloc_opts o = { .block_size = 64 };
	struct bs_slice s[3];
	CU_ASSERT_FATAL(bs_alloc_create(bs, k, &o, &a) == 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_FATAL(bs_alloc(a, 48, &s[i]) == 0);
	CU_ASSERT_FATAL(bs_dealloc(a, s[1]) == 0);
	*hole = s[1];
	return a;
}

static int nothing(void *ctx, const struct hm_free *f)
{
	(void)ctx;
	(void)f;
	return 0;
}

static void poke64(struct bs_alloc *a, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	CU_ASSERT_FATAL(bstack_set(a->bs, off, b, 8) == 0);
}

static void close_heap(struct bs_alloc *a)
{
	struct bstack *bs = a->bs;
	bs_alloc_close(a);
	bstack_close(bs);
}

/* Cycles and wild pointers in the free structures: -EUCLEAN, never a loop,
 * a crash or a write. */
static void free_walks_refuse_damaged_structures_without_writing(void)
{
	/* where each allocator keeps its head, and the offset of the next
	 * pointer inside a free block (GhostTree: the left child) */
	static const struct { enum bs_alloc_kind k; uint64_t head, next; } c[] = {
		{ BS_ALLOC_GHOST, 40, 16 }, { BS_ALLOC_FIRSTFIT, 32, 0 }, { BS_ALLOC_SLAB, 40, 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct bs_slice hole;
		uint64_t w0;
		struct walk w = { 0 };
		/* intact: exactly the hole */
		struct bs_memdev *dev = bs_memdev_new();
		struct bs_alloc *a = heap_with_a_hole(dev, c[i].k, &hole);
		CU_ASSERT(hm_walk_free(a, count_free, &w) == 0);
		CU_ASSERT(w.n == 1 && w.bytes >= 48);
		/* a block that names itself as the next one: a cycle */
		poke64(a, hole.off + c[i].next, hole.off);
		w0 = bs_memdev_writes(dev);
		CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
		CU_ASSERT(bs_memdev_writes(dev) == w0);
		/* a head that points outside the payload, or off the grid */
		poke64(a, c[i].head, bstack_len(a->bs) + 4096);
		CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
		poke64(a, c[i].head, hole.off + 3);
		CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
		poke64(a, c[i].head, UINT64_MAX - 7);
		CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
		close_heap(a);
		bs_memdev_free(dev);
	}
	/* an impossible size in a free block's own bytes */
	struct bs_slice hole;
	struct bs_memdev *dev = bs_memdev_new();
	struct bs_alloc *a = heap_with_a_hole(dev, BS_ALLOC_GHOST, &hole);
	poke64(a, hole.off, 1ULL << 50);
	CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
	close_heap(a);
	bs_memdev_free(dev);
	dev = bs_memdev_new();
	a = heap_with_a_hole(dev, BS_ALLOC_FIRSTFIT, &hole);
	poke64(a, hole.off - 16, 13);   /* block size, not a multiple of 8 */
	CU_ASSERT(hm_walk_free(a, nothing, NULL) == -EUCLEAN);
	close_heap(a);
	bs_memdev_free(dev);
	/* Linear keeps no free space */
	dev = bs_memdev_new();
	struct bstack *bs = h_stack_create(dev);
	CU_ASSERT_FATAL(bs_alloc_create(bs, BS_ALLOC_LINEAR, NULL, &a) == 0);
	struct walk w = { 0 };
	CU_ASSERT(hm_walk_free(a, count_free, &w) == 0 && w.n == 0);
	CU_ASSERT(strcmp(hm_free_structure(BS_ALLOC_LINEAR), "none") == 0);
	close_heap(a);
	bs_memdev_free(dev);
}

static void stats_json_keeps_keys_in_order_numbers_as_numbers(void)
{
	const char *text = "allocator ghost\nmagic ALGT-0.1.2\nfiles 12\n"
			   "fragmentation 0.5000\nodd a \"quoted\\\" value\tx\nzero 0\n"
			   "leading 007\n";
	char *js;
	size_t n;
	CU_ASSERT_FATAL(bs_stats_json(text, strlen(text), &js, &n) == 0);
	CU_ASSERT(n == strlen(js));
	const char *want = "{\n  \"allocator\": \"ghost\",\n  \"magic\": \"ALGT-0.1.2\",\n"
			   "  \"files\": 12,\n  \"fragmentation\": 0.5000,\n"
			   "  \"odd\": \"a \\\"quoted\\\\\\\" value\\u0009x\",\n  \"zero\": 0,\n"
			   "  \"leading\": \"007\"\n}\n";
	CU_ASSERT_STRING_EQUAL(js, want);
	free(js);
	/* an empty text is an empty object; a line without a value is refused */
	CU_ASSERT(bs_stats_json("", 0, &js, &n) == 0 && strcmp(js, "{}\n") == 0);
	free(js);
	CU_ASSERT(bs_stats_json("files\n", 6, &js, &n) == -EINVAL);
	CU_ASSERT(bs_stats_json("files \n", 7, &js, &n) == -EINVAL);
	CU_ASSERT(bs_stats_json(" 12\n", 4, &js, &n) == -EINVAL);
	CU_ASSERT(bs_stats_json("1. 2\n", 5, &js, &n) == 0);   /* a key may be anything */
	CU_ASSERT(strstr(js, "\"1.\": 2") != NULL);
	free(js);
	CU_ASSERT(bs_stats_json("x 1.\ny .5\n", 10, &js, &n) == 0);
	CU_ASSERT(strstr(js, "\"x\": \"1.\"") && strstr(js, "\"y\": \".5\""));
	free(js);
}

static void stats_json_of_a_volume_has_every_control_file_key(void)
{
	struct bs_memdev *dev = bs_memdev_new();
	struct vol *v = vopen(dev, BS_ALLOC_SLAB, true);
	char *text, *js;
	size_t tn, jn;
	CU_ASSERT_FATAL(vol_stats_text(v, &text, &tn) == 0);
	CU_ASSERT_FATAL(bs_stats_json(text, tn, &js, &jn) == 0);
	size_t lines = 0;
	for (char *p = text; (p = strchr(p, '\n')); p++) {
		lines++;
		char key[64];
		const char *ls = p;
		while (ls > text && ls[-1] != '\n')
			ls--;
		snprintf(key, sizeof key, "\"%.*s\": ", (int)(strchr(ls, ' ') - ls), ls);
		CU_ASSERT(strstr(js, key) != NULL);
	}
	CU_ASSERT(lines > 20);
	CU_ASSERT(strstr(js, "\"allocator\": \"slab\"") && strstr(js, "\"block_size\": 512"));
	free(text);
	free(js);
	CU_ASSERT(vol_close(v) == 0);
	bs_memdev_free(dev);
}

/* ---- the JSON writer (stats_json.h) ---------------------------------------- */

static char *finish_ok(struct bs_json *j)
{
	char *out = NULL;
	size_t n = 0;
	CU_ASSERT_FATAL(bs_json_finish(j, &out, &n) == 0);
	CU_ASSERT(n == strlen(out));
	return out;
}

static void json_writer_nests_objects_and_arrays_of_every_value_type(void)
{
	struct bs_json j;
	bs_json_init(&j);
	bs_json_begin_object(&j, NULL);
	bs_json_string(&j, "s", "x");
	bs_json_u64(&j, "u", UINT64_MAX);
	bs_json_i64(&j, "i", -42);
	bs_json_bool(&j, "t", true);
	bs_json_bool(&j, "f", false);
	bs_json_null(&j, "n");
	bs_json_string(&j, "null string", NULL);
	bs_json_begin_array(&j, "a");
	bs_json_u64(&j, NULL, 1);
	bs_json_begin_object(&j, NULL);
	bs_json_string_n(&j, "k", "abc", 2);
	bs_json_end_object(&j);
	bs_json_begin_array(&j, NULL);
	bs_json_end_array(&j);
	bs_json_end_array(&j);
	bs_json_begin_object(&j, "o");
	const char *stats = "files 3\nfragmentation 0.2500\nmagic ALGT-0.1.2\n";
	bs_json_stats_members(&j, stats, strlen(stats));
	bs_json_end_object(&j);
	bs_json_begin_object(&j, "empty");
	bs_json_end_object(&j);
	bs_json_end_object(&j);
	char *out = finish_ok(&j);
	const char *want =
		"{\n"
		"  \"s\": \"x\",\n"
		"  \"u\": 18446744073709551615,\n"
		"  \"i\": -42,\n"
		"  \"t\": true,\n"
		"  \"f\": false,\n"
		"  \"n\": null,\n"
		"  \"null string\": null,\n"
		"  \"a\": [\n"
		"    1,\n"
		"    {\n"
		"      \"k\": \"ab\"\n"
		"    },\n"
		"    []\n"
		"  ],\n"
		"  \"o\": {\n"
		"    \"files\": 3,\n"
		"    \"fragmentation\": 0.2500,\n"
		"    \"magic\": \"ALGT-0.1.2\"\n"
		"  },\n"
		"  \"empty\": {}\n"
		"}\n";
	CU_ASSERT_STRING_EQUAL(out, want);
	free(out);
	/* a bare top-level value */
	bs_json_init(&j);
	bs_json_i64(&j, NULL, 7);
	out = finish_ok(&j);
	CU_ASSERT_STRING_EQUAL(out, "7\n");
	free(out);
}

/* RFC 8259 strings: quote, backslash and control characters escaped;
 * well-formed UTF-8 kept; every byte of a malformed sequence U+FFFD. */
static void json_writer_escapes_strings_and_keeps_only_valid_utf8(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "plain", "\"plain\"" },
		{ "q\"b\\s/", "\"q\\\"b\\\\s/\"" },
		{ "nl\ncr\rtab\tesc\x1b" "del\x7f", "\"nl\\u000acr\\u000dtab\\u0009esc\\u001bdel\x7f\"" },
		{ "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
		  "\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"" },
		{ "\xff", "\"\\ufffd\"" },                        /* never UTF-8 */
		{ "a\x80z", "\"a\\ufffdz\"" },                    /* a lone continuation */
		{ "\xc0\x80", "\"\\ufffd\\ufffd\"" },             /* overlong NUL */
		{ "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" },  /* overlong '/' */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },  /* a surrogate */
		{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* > U+10FFFF */
		{ "x\xe2\x82", "\"x\\ufffd\\ufffd\"" },           /* cut short at the end */
		{ "\xe2\x82x", "\"\\ufffd\\ufffdx\"" },           /* cut short by ASCII */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct bs_json j;
		bs_json_init(&j);
		bs_json_string(&j, NULL, cases[i].in);
		char *out = finish_ok(&j);
		char want[128];
		CU_ASSERT_FATAL(out != NULL);
		snprintf(want, sizeof want, "%s\n", cases[i].want);
		if (strcmp(out, want) != 0)
			printf("\ncase %zu: got %s want %s", i, out ? out : "(null)", want);
		CU_ASSERT_STRING_EQUAL(out, want);
		free(out);
	}
	/* keys are escaped the same way; a NUL inside a counted string too */
	struct bs_json j;
	bs_json_init(&j);
	bs_json_begin_object(&j, NULL);
	bs_json_string_n(&j, "k\"\xff", "a\0b", 3);
	bs_json_end_object(&j);
	char *out = finish_ok(&j);
	CU_ASSERT_STRING_EQUAL(out, "{\n  \"k\\\"\\ufffd\": \"a\\u0000b\"\n}\n");
	free(out);
}

static void json_writer_refuses_misuse_at_finish(void)
{
	struct bs_json j;
	char *out = (char *)"untouched";
	size_t n = 0;

	bs_json_init(&j);                     /* nothing written */
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* a key inside an array */
	bs_json_begin_array(&j, NULL);
	bs_json_u64(&j, "k", 1);
	bs_json_end_array(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* no key inside an object */
	bs_json_begin_object(&j, NULL);
	bs_json_u64(&j, NULL, 1);
	bs_json_end_object(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* a key at the top */
	bs_json_u64(&j, "k", 1);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* two top-level values */
	bs_json_u64(&j, NULL, 1);
	bs_json_u64(&j, NULL, 2);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* unclosed */
	bs_json_begin_object(&j, NULL);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* closed with the wrong bracket */
	bs_json_begin_object(&j, NULL);
	bs_json_end_array(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* closed once too often */
	bs_json_begin_array(&j, NULL);
	bs_json_end_array(&j);
	bs_json_end_array(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* a control-file line without a value */
	bs_json_begin_object(&j, NULL);
	bs_json_stats_members(&j, "files\n", 6);
	bs_json_end_object(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* deeper than BS_JSON_MAX_DEPTH */
	for (int d = 0; d <= BS_JSON_MAX_DEPTH; d++)
		bs_json_begin_array(&j, NULL);
	for (int d = 0; d <= BS_JSON_MAX_DEPTH; d++)
		bs_json_end_array(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == -EINVAL);
	bs_json_init(&j);                     /* exactly that deep is fine */
	for (int d = 0; d < BS_JSON_MAX_DEPTH; d++)
		bs_json_begin_array(&j, NULL);
	for (int d = 0; d < BS_JSON_MAX_DEPTH; d++)
		bs_json_end_array(&j);
	CU_ASSERT(bs_json_finish(&j, &out, &n) == 0);
	free(out);
}

static const struct h_test tests[] = {
	H_TEST(the_map_covers_the_payload_exactly_once_for_each_allocator),
	H_TEST(free_walks_refuse_damaged_structures_without_writing),
	H_TEST(stats_json_keeps_keys_in_order_numbers_as_numbers),
	H_TEST(stats_json_of_a_volume_has_every_control_file_key),
	H_TEST(json_writer_nests_objects_and_arrays_of_every_value_type),
	H_TEST(json_writer_escapes_strings_and_keeps_only_valid_utf8),
	H_TEST(json_writer_refuses_misuse_at_finish),
};

H_MAIN("heapmap", tests)
