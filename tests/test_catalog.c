/*
 * test_catalog.c — the catalog on its own: checksums, record encoding, the
 * pair rule (newest valid slot wins, one torn slot tolerated), the index,
 * copy-on-write growth and load-time verification.  Runs on Linear over
 * the memory device (the catalog only needs some allocator).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "catalog_impl.h"
#include "harness.h"
#include "util.h"

struct fix {
	struct bs_memdev *dev;
	struct bstack *bs;
	struct bs_alloc *a;
	struct catalog *c;
};

static void fix_new(struct fix *f)
{
	memset(f, 0, sizeof *f);
	f->dev = bs_memdev_new();
	CU_ASSERT_FATAL(f->dev != NULL);
	f->bs = h_stack_create(f->dev);
	CU_ASSERT_FATAL(bs_alloc_create(f->bs, BS_ALLOC_LINEAR, NULL, &f->a) == 0);
	CU_ASSERT_FATAL(cat_format(f->a, 10, 20, 1234, &f->c) == 0);
}

static void fix_close(struct fix *f)
{
	cat_free(f->c);
	f->c = NULL;
	bs_alloc_close(f->a);
	f->a = NULL;
	bstack_close(f->bs);
	f->bs = NULL;
}

/* Reopen the device and load + attach the catalog; returns cat_load's or
 * cat_attach's result, err gets the message. */
static int fix_reload(struct fix *f, char *err, size_t errlen)
{
	uint8_t ref[CAT_ROOT_REF_SIZE];
	fix_close(f);
	f->bs = h_stack_open(f->dev);
	CU_ASSERT_FATAL(bstack_get(f->bs, 0, ref, sizeof ref) == 0);
	int r = cat_load(f->bs, cat_root_decode(ref), &f->c, err, errlen);
	if (r)
		return r;
	CU_ASSERT_FATAL(bs_alloc_open(f->bs, BS_ALLOC_LINEAR, &f->a) == 0);
	return cat_attach(f->c, f->a, err, errlen);
}

static void fix_free(struct fix *f)
{
	fix_close(f);
	bs_memdev_free(f->dev);
}

static struct cat_node *mk(struct fix *f, uint64_t parent, const char *name, uint8_t kind)
{
	struct cat_rec r = { .kind = kind, .parent = parent,
			     .mode = (kind == CAT_DIR ? S_IFDIR : S_IFREG) | 0644 };
	struct cat_node *n = NULL;
	r.name_len = (uint16_t)strlen(name);
	memcpy(r.name, name, r.name_len);
	CU_ASSERT(cat_create(f->c, &r, &n) == 0);
	return n;
}

static void crc32c_matches_the_castagnoli_check_value(void)
{
	CU_ASSERT_EQUAL(crc32c(0, "123456789", 9), 0xE3069283u);
	CU_ASSERT_EQUAL(crc32c(0, "", 0), 0u);
	/* incremental == one shot */
	CU_ASSERT_EQUAL(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void record_encoding_round_trips_every_field(void)
{
	struct cat_rec r = { .kind = CAT_FILE, .seq = 77, .ino = 9, .parent = 1,
			     .alloc = { 4096, 8192 }, .size = 8000, .mode = S_IFREG | 0640,
			     .uid = 1000, .gid = 100, .atime = -5, .mtime = 1LL << 60,
			     .ctime = 42, .name_len = 5 }, d;
	uint8_t slot[CAT_SLOT_SIZE];
	memcpy(r.name, "hello", 5);
	cat_rec_encode(&r, slot);
	CU_ASSERT_EQUAL_FATAL(cat_rec_decode(slot, &d), 0);
	CU_ASSERT_EQUAL(d.kind, CAT_FILE);
	CU_ASSERT_EQUAL(d.seq, 77);
	CU_ASSERT_EQUAL(d.ino, 9);
	CU_ASSERT_EQUAL(d.parent, 1);
	CU_ASSERT_EQUAL(d.alloc.off, 4096);
	CU_ASSERT_EQUAL(d.alloc.len, 8192);
	CU_ASSERT_EQUAL(d.size, 8000);
	CU_ASSERT_EQUAL(d.mode, S_IFREG | 0640);
	CU_ASSERT_EQUAL(d.uid, 1000);
	CU_ASSERT_EQUAL(d.gid, 100);
	CU_ASSERT_EQUAL(d.atime, -5);
	CU_ASSERT_EQUAL(d.mtime, 1LL << 60);
	CU_ASSERT_EQUAL(d.ctime, 42);
	CU_ASSERT_STRING_EQUAL(d.name, "hello");
	/* fixed positions of the layout comment */
	CU_ASSERT_EQUAL(le64_get(slot + 16), 9);
	CU_ASSERT_EQUAL(le64_get(slot + 48), 8000);
	CU_ASSERT_EQUAL(memcmp(slot + 96, "hello", 5), 0);
}

static void a_flipped_bit_fails_the_record_checksum(void)
{
	struct cat_rec r = { .kind = CAT_DIR, .seq = 1, .ino = 3, .parent = 1,
			     .mode = S_IFDIR | 0755, .name_len = 1 }, d;
	uint8_t slot[CAT_SLOT_SIZE];
	r.name[0] = 'x';
	cat_rec_encode(&r, slot);
	for (size_t i = 0; i < CAT_SLOT_SIZE; i += 37) {
		slot[i] ^= 0x10;
		CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), -EBADMSG);
		slot[i] ^= 0x10;
	}
	CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), 0);
	memset(slot, 0, sizeof slot);
	CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), -ENODATA);
}

static void impossible_records_are_refused_even_with_a_good_checksum(void)
{
	struct cat_rec r = { .kind = CAT_FILE, .seq = 1, .ino = 3, .parent = 1,
			     .alloc = { 100, 10 }, .size = 11, .mode = S_IFREG, .name_len = 1 }, d;
	uint8_t slot[CAT_SLOT_SIZE];
	r.name[0] = 'x';
	cat_rec_encode(&r, slot);   /* size > capacity */
	CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), -EBADMSG);
	r.size = 5;
	r.name[0] = '/';            /* bad name */
	cat_rec_encode(&r, slot);
	CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), -EBADMSG);
	r.name[0] = 'x';
	r.kind = 9;                 /* unknown kind */
	cat_rec_encode(&r, slot);
	CU_ASSERT_EQUAL(cat_rec_decode(slot, &d), -EBADMSG);
}

static void header_round_trips_and_rejects_a_bad_magic(void)
{
	uint8_t h[CAT_HDR_SIZE];
	uint64_t n = 0;
	uint32_t ver = 0, slot = 0;
	cat_hdr_encode(33, CAT_VERSION_1, CAT_SLOT_SIZE, h);
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), 0);
	CU_ASSERT_EQUAL(n, 33);
	CU_ASSERT_EQUAL(ver, CAT_VERSION_1);
	CU_ASSERT_EQUAL(slot, CAT_SLOT_SIZE);
	CU_ASSERT_EQUAL(memcmp(h, "BSFSCAT1", 8), 0);
	h[20] ^= 1;
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), -EBADMSG);
	h[20] ^= 1;
	cat_hdr_encode(34, CAT_VERSION, CAT_UNIT_SIZE, h);   /* the compact layout */
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), 0);
	CU_ASSERT(n == 34 && ver == CAT_VERSION && slot == CAT_UNIT_SIZE);
	cat_hdr_encode(34, CAT_VERSION, 256, h);   /* a slot size no release wrote */
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), -EBADMSG);
	cat_hdr_encode(34, 3, CAT_SLOT_SIZE, h);   /* a version from the future */
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), -EBADMSG);
	h[0] = 'X';
	CU_ASSERT_EQUAL(cat_hdr_decode(h, &n, &ver, &slot), -EILSEQ);
}

static void names_follow_the_rules_of_section_4(void)
{
	char longn[300];
	memset(longn, 'a', sizeof longn);
	CU_ASSERT_EQUAL(cat_name_ok("a", 1), 0);
	CU_ASSERT_EQUAL(cat_name_ok("...", 3), 0);
	CU_ASSERT_EQUAL(cat_name_ok(longn, 255), 0);
	CU_ASSERT_EQUAL(cat_name_ok(longn, 256), -ENAMETOOLONG);
	CU_ASSERT_EQUAL(cat_name_ok("", 0), -EINVAL);
	CU_ASSERT_EQUAL(cat_name_ok(".", 1), -EINVAL);
	CU_ASSERT_EQUAL(cat_name_ok("..", 2), -EINVAL);
	CU_ASSERT_EQUAL(cat_name_ok("a/b", 3), -EINVAL);
	CU_ASSERT_EQUAL(cat_name_ok("a\0b", 3), -EINVAL);
}

static void format_then_load_finds_the_root_directory(void)
{
	struct fix f;
	char err[200] = "";
	fix_new(&f);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	struct cat_node *root = cat_get(f.c, 1);
	CU_ASSERT_FATAL(root != NULL);
	CU_ASSERT_EQUAL(root->r.kind, CAT_DIR);
	CU_ASSERT_EQUAL(root->r.mode, S_IFDIR | 0755);
	CU_ASSERT_EQUAL(root->r.uid, 10);
	CU_ASSERT_EQUAL(root->r.gid, 20);
	CU_ASSERT_EQUAL(root->r.mtime, 1234);
	CU_ASSERT_EQUAL(f.c->n_dirs, 1);
	CU_ASSERT_EQUAL(f.c->n_files, 0);
	fix_free(&f);
}

static void created_stored_and_removed_records_survive_a_reload(void)
{
	struct fix f;
	char err[200];
	fix_new(&f);
	struct cat_node *d = mk(&f, 1, "dir", CAT_DIR);
	struct cat_node *a = mk(&f, d->r.ino, "a", CAT_FILE);
	struct cat_node *b = mk(&f, 1, "b", CAT_FILE);
	uint64_t ia = a->r.ino, id = d->r.ino;
	struct cat_rec nr;
	cat_rec_get(a, &nr);
	nr.size = 0;
	nr.uid = 77;
	nr.parent = 1;
	nr.name_len = 2;
	memcpy(nr.name, "a2", 3);
	CU_ASSERT_EQUAL(cat_store(f.c, a, &nr), 0);
	CU_ASSERT_EQUAL(cat_remove(f.c, b), 0);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	CU_ASSERT(cat_lookup(f.c, 1, "b", 1) == NULL);
	CU_ASSERT(cat_lookup(f.c, id, "a", 1) == NULL);
	struct cat_node *a2 = cat_lookup(f.c, 1, "a2", 2);
	CU_ASSERT_FATAL(a2 != NULL);
	CU_ASSERT_EQUAL(a2->r.ino, ia);
	CU_ASSERT_EQUAL(a2->r.uid, 77);
	CU_ASSERT(cat_lookup(f.c, 1, "dir", 3) != NULL);
	CU_ASSERT_EQUAL(f.c->n_files, 1);
	CU_ASSERT_EQUAL(f.c->n_dirs, 2);
	/* a new inode never reuses a live number */
	struct cat_node *n = mk(&f, 1, "new", CAT_FILE);
	CU_ASSERT(n && n->r.ino > ia);
	fix_free(&f);
}

static void the_catalog_grows_by_copy_on_write_and_keeps_every_record(void)
{
	struct fix f;
	char err[200], name[16];
	fix_new(&f);
	struct bs_slice first = f.c->root;
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "f%d", i);
		mk(&f, 1, name, CAT_FILE);
	}
	CU_ASSERT(f.c->rewrites >= 3);   /* 16 -> 32 -> 64 -> 128 pairs */
	CU_ASSERT(f.c->root.off != first.off);
	CU_ASSERT(f.c->n_pairs >= 100);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	CU_ASSERT_EQUAL(f.c->n_files, 100);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "f%d", i);
		CU_ASSERT(cat_lookup(f.c, 1, name, strlen(name)) != NULL);
	}
	fix_free(&f);
}

/* A catalog whose node count is exactly a power of two makes load grow
 * the inode index while it links the nodes under their parents; the link
 * pass once walked that live table and then visited a node twice (refused
 * as "two entries named ...") or skipped it (a lost file).  Every count
 * here hits the growth; every file must come back, listed in creation
 * order. */
static void a_reload_that_grows_the_index_mid_link_keeps_every_file(void)
{
	static const int totals[] = { 64, 128, 256, 1024 };
	for (unsigned k = 0; k < sizeof totals / sizeof *totals; k++) {
		struct fix f;
		char err[200], name[16];
		int files = totals[k] - 1;   /* the root is the other node */
		fix_new(&f);
		for (int i = 0; i < files; i++) {
			snprintf(name, sizeof name, "f%d", i);
			mk(&f, 1, name, CAT_FILE);
		}
		CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
		CU_ASSERT_EQUAL(f.c->n_files, (uint64_t)files);
		int found = 0, in_order = 0, i = 0;
		for (int j = 0; j < files; j++) {
			snprintf(name, sizeof name, "f%d", j);
			found += cat_lookup(f.c, 1, name, strlen(name)) != NULL;
		}
		for (struct cat_node *n = cat_get(f.c, 1)->first; n; n = n->next, i++) {
			snprintf(name, sizeof name, "f%d", i);
			in_order += strcmp(n->name, name) == 0;
		}
		CU_ASSERT_EQUAL(found, files);
		CU_ASSERT_EQUAL(in_order, files);
		CU_ASSERT_EQUAL(i, files);
		fix_free(&f);
	}
}

/* Offset of slot s of n's pair. */
static uint64_t slot_at(struct fix *f, uint64_t pair, unsigned s)
{
	return f->c->root.off + CAT_HDR_SIZE + pair * CAT_PAIR_SIZE + s * CAT_SLOT_SIZE;
}

static void a_torn_slot_reverts_the_record_to_its_previous_version(void)
{
	struct fix f;
	char err[200];
	uint8_t junk[CAT_SLOT_SIZE];
	fix_new(&f);
	struct cat_node *a = mk(&f, 1, "a", CAT_FILE);
	struct cat_rec nr;
	cat_rec_get(a, &nr);
	nr.uid = 5;
	CU_ASSERT_EQUAL(cat_store(f.c, a, &nr), 0);
	/* tear the newest version (uid 5): the older (uid 0) must win */
	uint64_t off = slot_at(&f, a->pair, f.c->pair_slot[a->pair]);
	CU_ASSERT_EQUAL(bstack_get(f.bs, off, junk, 100), 0);
	memset(junk + 50, 0xAB, 50);
	CU_ASSERT_EQUAL(bstack_set(f.bs, off, junk, 100), 0);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	a = cat_lookup(f.c, 1, "a", 1);
	CU_ASSERT_FATAL(a != NULL);
	CU_ASSERT_EQUAL(a->r.uid, 0);
	CU_ASSERT(f.c->torn_pair >= 0);
	/* repair zeroes the torn slot; the next load finds nothing torn */
	CU_ASSERT_EQUAL(cat_repair(f.c), 0);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	CU_ASSERT_EQUAL(f.c->torn_pair, -1);
	fix_free(&f);
}

static void two_bad_slots_refuse_the_catalog_with_a_message(void)
{
	struct fix f;
	char err[200] = "";
	uint8_t b;
	fix_new(&f);
	struct cat_node *a = mk(&f, 1, "a", CAT_FILE);
	struct cat_node *c = mk(&f, 1, "c", CAT_FILE);
	uint64_t oa = slot_at(&f, a->pair, f.c->pair_slot[a->pair]) + 20;
	uint64_t oc = slot_at(&f, c->pair, f.c->pair_slot[c->pair]) + 20;
	CU_ASSERT_EQUAL(bstack_get(f.bs, oa, &b, 1), 0);
	b ^= 0xFF;
	CU_ASSERT_EQUAL(bstack_set(f.bs, oa, &b, 1), 0);
	CU_ASSERT_EQUAL(bstack_get(f.bs, oc, &b, 1), 0);
	b ^= 0xFF;
	CU_ASSERT_EQUAL(bstack_set(f.bs, oc, &b, 1), 0);
	CU_ASSERT_EQUAL(fix_reload(&f, err, sizeof err), -EUCLEAN);
	CU_ASSERT(strstr(err, "checksum") != NULL);
	fix_free(&f);
}

static void a_rename_over_left_half_done_keeps_the_newer_record(void)
{
	struct fix f;
	char err[200];
	fix_new(&f);
	struct cat_node *x = mk(&f, 1, "x", CAT_FILE);
	mk(&f, 1, "y", CAT_FILE);
	uint64_t ix = x->r.ino;
	/* the first step of rename x -> y over y: x's record takes the name */
	struct cat_rec nr;
	cat_rec_get(x, &nr);
	nr.name[0] = 'y';
	CU_ASSERT_EQUAL(cat_store(f.c, x, &nr), 0);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	struct cat_node *y = cat_lookup(f.c, 1, "y", 1);
	CU_ASSERT_FATAL(y != NULL);
	CU_ASSERT_EQUAL(y->r.ino, ix);
	CU_ASSERT(f.c->losers != NULL);
	CU_ASSERT_EQUAL(f.c->n_files, 1);
	CU_ASSERT_EQUAL(cat_repair(f.c), 0);
	CU_ASSERT_EQUAL_FATAL(fix_reload(&f, err, sizeof err), 0);
	CU_ASSERT(f.c->losers == NULL);
	CU_ASSERT_EQUAL(f.c->n_files, 1);
	fix_free(&f);
}

static void a_cycle_of_directories_is_refused(void)
{
	struct fix f;
	char err[200] = "";
	fix_new(&f);
	struct cat_node *a = mk(&f, 1, "a", CAT_DIR);
	struct cat_node *b = mk(&f, a->r.ino, "b", CAT_DIR);
	/* craft: a's parent becomes b (a cycle a -> b -> a, cut off the root) */
	struct cat_rec nr;
	cat_rec_get(a, &nr);
	nr.parent = b->r.ino;
	uint8_t slot[CAT_SLOT_SIZE];
	nr.seq = f.c->seq + 1;
	cat_rec_encode(&nr, slot);
	CU_ASSERT_EQUAL(bstack_set(f.bs, slot_at(&f, a->pair, f.c->pair_slot[a->pair] ^ 1),
				   slot, sizeof slot), 0);
	CU_ASSERT_EQUAL(fix_reload(&f, err, sizeof err), -EUCLEAN);
	CU_ASSERT(strstr(err, "reachable") != NULL);
	fix_free(&f);
}

static void a_record_with_a_missing_parent_is_refused(void)
{
	struct fix f;
	char err[200] = "";
	fix_new(&f);
	struct cat_node *a = mk(&f, 1, "a", CAT_FILE);
	struct cat_rec nr;
	cat_rec_get(a, &nr);
	nr.parent = 999;
	uint8_t slot[CAT_SLOT_SIZE];
	nr.seq = f.c->seq + 1;
	cat_rec_encode(&nr, slot);
	CU_ASSERT_EQUAL(bstack_set(f.bs, slot_at(&f, a->pair, f.c->pair_slot[a->pair] ^ 1),
				   slot, sizeof slot), 0);
	CU_ASSERT_EQUAL(fix_reload(&f, err, sizeof err), -EUCLEAN);
	CU_ASSERT(strstr(err, "missing parent") != NULL);
	fix_free(&f);
}

static void readdir_positions_survive_removal_of_the_entry_they_name(void)
{
	struct fix f;
	char name[16];
	fix_new(&f);
	struct cat_node *n[10];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "e%d", i);
		n[i] = mk(&f, 1, name, CAT_FILE);
	}
	struct cat_node *root = cat_get(f.c, 1);
	CU_ASSERT(cat_child_after(f.c, root, 0) == n[0]);
	uint64_t pos = n[4]->cookie;
	CU_ASSERT(cat_child_after(f.c, root, pos) == n[5]);
	CU_ASSERT_EQUAL(cat_remove(f.c, n[4]), 0);
	CU_ASSERT(cat_child_after(f.c, root, pos) == n[5]);
	CU_ASSERT(cat_child_after(f.c, root, n[9]->cookie) == NULL);
	fix_free(&f);
}

static void the_index_finds_every_one_of_five_thousand_names(void)
{
	struct fix f;
	char name[32];
	fix_new(&f);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "name-%d", i);
		mk(&f, 1, name, CAT_FILE);
	}
	int found = 0;
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "name-%d", i);
		struct cat_node *n = cat_lookup(f.c, 1, name, strlen(name));
		found += n && strcmp(n->name, name) == 0;
	}
	CU_ASSERT_EQUAL(found, 5000);
	CU_ASSERT(cat_lookup(f.c, 1, "name-5000", 9) == NULL);
	fix_free(&f);
}

static void a_detached_file_leaves_every_index_and_its_pair_goes_to_the_next_inode(void)
{
	struct fix f;
	char err[200] = "";
	fix_new(&f);
	struct cat_node *d = mk(&f, 1, "d", CAT_DIR), *o = mk(&f, 1, "o", CAT_FILE);
	CU_ASSERT_FATAL(d && o);
	CU_ASSERT_EQUAL(cat_detach(f.c, d), -EISDIR);
	CU_ASSERT_FATAL(bs_alloc(f.a, 1000, &o->r.alloc) == 0);
	o->r.size = 1000;
	uint64_t ino = o->r.ino, pair = o->pair, files = f.c->n_files;
	CU_ASSERT_EQUAL(cat_detach(f.c, o), 0);
	CU_ASSERT(cat_detached(o));
	CU_ASSERT_EQUAL(cat_nlink(o), 0);
	CU_ASSERT_EQUAL(f.c->n_files, files - 1);
	CU_ASSERT_PTR_NULL(cat_get(f.c, ino));
	CU_ASSERT_PTR_NULL(cat_lookup(f.c, 1, "o", 1));
	CU_ASSERT_PTR_NULL(cat_child_after(f.c, cat_get(f.c, 1), d->cookie));
	CU_ASSERT_EQUAL(cat_detach(f.c, o), -EBUSY);
	/* the next inode takes the pair; the orphan can never write into it */
	struct cat_node *n = mk(&f, 1, "o", CAT_FILE);
	CU_ASSERT_FATAL(n != NULL);
	CU_ASSERT_EQUAL(n->pair, pair);
	CU_ASSERT(n->r.ino != ino);
	struct cat_rec r;
	cat_rec_get(o, &r);
	r.size = 0;
	CU_ASSERT_EQUAL(cat_store(f.c, o, &r), -ESTALE);
	/* its space is live while its holder says so: no overlap, listed */
	struct cat_held held = { ino, o->r.alloc };
	struct bs_slice *live;
	size_t nl;
	bool listed = false;
	CU_ASSERT_EQUAL(cat_check_extents(f.c, &held, 1, err, sizeof err), 0);
	CU_ASSERT_FATAL(cat_live_slices(f.c, &held, 1, &live, &nl) == 0);
	for (size_t i = 0; i < nl; i++)
		listed |= live[i].off == o->r.alloc.off && live[i].len == o->r.alloc.len;
	free(live);
	CU_ASSERT(listed);
	CU_ASSERT_FATAL(cat_live_slices(f.c, NULL, 0, &live, &nl) == 0);
	listed = false;
	for (size_t i = 0; i < nl; i++)
		listed |= live[i].off == o->r.alloc.off;
	free(live);
	CU_ASSERT(!listed);
	/* a held slice that overlaps a file's is damage */
	struct cat_node *g = mk(&f, 1, "g", CAT_FILE);
	CU_ASSERT_FATAL(g && bs_alloc(f.a, 100, &g->r.alloc) == 0);
	struct cat_held both[2] = { held, { 99, g->r.alloc } };
	CU_ASSERT_EQUAL(cat_check_extents(f.c, both, 2, err, sizeof err), -EUCLEAN);
	CU_ASSERT(strstr(err, "share bytes") != NULL);
	/* on disk it is gone: a reload finds the new file under the name */
	CU_ASSERT_EQUAL(fix_reload(&f, err, sizeof err), 0);
	CU_ASSERT_PTR_NULL(cat_get(f.c, ino));
	struct cat_node *m = cat_lookup(f.c, 1, "o", 1);
	CU_ASSERT(m != NULL && m->r.size == 0);
	cat_node_free(o);
	fix_free(&f);
}

static const struct h_test tests[] = {
	H_TEST(crc32c_matches_the_castagnoli_check_value),
	H_TEST(record_encoding_round_trips_every_field),
	H_TEST(a_flipped_bit_fails_the_record_checksum),
	H_TEST(impossible_records_are_refused_even_with_a_good_checksum),
	H_TEST(header_round_trips_and_rejects_a_bad_magic),
	H_TEST(names_follow_the_rules_of_section_4),
	H_TEST(format_then_load_finds_the_root_directory),
	H_TEST(created_stored_and_removed_records_survive_a_reload),
	H_TEST(the_catalog_grows_by_copy_on_write_and_keeps_every_record),
	H_TEST(a_reload_that_grows_the_index_mid_link_keeps_every_file),
	H_TEST(a_torn_slot_reverts_the_record_to_its_previous_version),
	H_TEST(two_bad_slots_refuse_the_catalog_with_a_message),
	H_TEST(a_rename_over_left_half_done_keeps_the_newer_record),
	H_TEST(a_cycle_of_directories_is_refused),
	H_TEST(a_record_with_a_missing_parent_is_refused),
	H_TEST(readdir_positions_survive_removal_of_the_entry_they_name),
	H_TEST(the_index_finds_every_one_of_five_thousand_names),
	H_TEST(a_detached_file_leaves_every_index_and_its_pair_goes_to_the_next_inode),
};

H_MAIN("catalog", tests)
