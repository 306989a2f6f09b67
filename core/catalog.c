/*
 * catalog.c — inode records of a bstackfs volume (docs/design.md §4).
 *
 * On-disk layout (all integers little-endian):
 *
 *   payload 0..16      root reference: catalog offset u64, length u64 (in the
 *                      allocator's caller-reserved bytes; zero = no catalog)
 *
 *   catalog (one allocation of the image's allocator, len = 64 + 768 * pairs,
 *   or 64 + 128 * units)
 *     0   magic "BSFSCAT1"
 *     8   u32 version (1 or 2)    12  u32 slot size (384 paired, 128 compact)
 *     16  u64 number of pairs (or units)    24..60 zero
 *     60  u32 CRC32C of bytes 0..60
 *     64  paired: pairs, each two 384-byte slots A, B
 *         compact: units; a record fills 1..3 consecutive ones (its fields,
 *         name and inline target: cat_rec_units), its CRC32C over all of
 *         them; every unit no record holds is zero
 *
 * The compact layout (with the journal only: each record write is part of
 * an atomic transaction) keeps one copy of each record, so the pair rules
 * below do not apply to it: a removal zeroes the record's units, a record
 * that needs more units moves (written at a free run, the old units
 * zeroed, one transaction), and a record failing its checksum is damage.
 * cat_fit_layout converts between the layouts at mount.
 *
 *   slot (one version of one inode's record)
 *     0   u32 CRC32C of bytes 4..384
 *     4   u8 kind (1 file, 2 dir, 3 tombstone; version 2: 4 symlink,
 *         5 special file, 6 link, 7 attributes) 5  u8 record version
 *     6   u16 name length
 *     8   u64 seq     16 u64 ino     24 u64 parent
 *     32  u64 allocation offset      40 u64 allocation length (capacity)
 *     48  u64 size (a symlink: its target's length)
 *     56  u32 mode    60 u32 uid     64 u32 gid    68 u32 rdev (version 1: 0)
 *     72  i64 atime   80 i64 mtime   88 i64 ctime  (ns since the epoch)
 *     96  name, then (a symlink with allocation (0, 0)) its target; zero
 *         padded to 384
 *
 * Version 2 (catalog.h): a record of kind 1-3 with a parent keeps record
 * version 1 and exactly the version 1 bytes; every other record is
 * version 2.  Kinds 4-6 and nameless inodes (parent 0) need a version 2
 * header: a version 1 catalog is upgraded by one copy-on-write rewrite
 * before the first of them is written (cat_upgrade).
 *
 * Hard links: an inode's record holds its first name; each further name is
 * a link record (kind 6: ino = the inode, parent, name, nothing else), in a
 * pair of its own.  Removing the first name while links remain rewrites the
 * inode nameless (parent 0, no name).  Every change of names is one record
 * write; the last name of an inode goes as: link tombstone, then inode
 * tombstone (crash in between: a nameless inode without links, a "stray",
 * which mount removes and frees).
 *
 * Extended attributes: an inode's attributes are one blob (core/xattr.h) in
 * an allocation of its own, named by an attribute record (kind 7: ino = the
 * inode, allocation, size = the blob's length, rdev = its CRC32C), in a pair
 * of its own.  A change writes a new blob, then the record (the switch),
 * then frees the old blob.  An inode goes first, its attribute record
 * second; a crash between leaves a record of a missing inode, which mount
 * removes with its blob.
 *
 * An inode lives in one pair for its whole life.  A pair's value is its
 * valid slot with the highest seq (seq is catalog-wide and only grows); an
 * all-zero slot was never written.
 *
 * Crash invariant (guarantees 1 and 3): a record is changed by writing the
 * new version, with a fresh seq, into the slot of its pair that does NOT
 * hold the current version, in one durable bstack_set.  A crash during that
 * write leaves either the new version or a torn slot whose checksum fails,
 * next to the intact old version: before or after, never a mix.  Removing
 * an inode writes a tombstone the same way.  Since every record write is
 * synced before the next one, one crash tears at most one slot; mount
 * tolerates exactly one bad slot (and zeroes it), and refuses a catalog
 * with more as corrupt.
 *
 * Rename over an existing name (crash atomic): the renamed record is
 * written first, with a seq higher than the victim's; the victim is
 * tombstoned second.  A crash in between leaves two records with the same
 * (parent, name): mount keeps the newer, tombstones the older and frees
 * its space (cat_repair) before anything else can change either.
 *
 * Detached nodes (cat_detach): a file removed while still open is
 * tombstoned exactly like a removal, its pair freed for reuse, and its
 * node handed to the caller (the volume keeps it as an orphan until the
 * last close): in no index and no count of the catalog's.  It is never
 * written again (its pair index is CAT_PAIR_NONE, which every write
 * refuses), and no durable record names its allocation: after a crash
 * mount's reclaim returns that space.
 *
 * Format: the root reference is first set to a "formatting" mark
 * (UINT64_MAX, 0), then the catalog is written, then the root reference
 * points at it.  A crash in between leaves the mark: mount returns every
 * allocation to the allocator (only the unfinished catalog can be there)
 * and formats again.
 *
 * Growth (cat_grow): with the journal, in place by a quarter — the
 * allocation's growth, the header and the root reference in one
 * transaction, the new pairs the zeros the allocator exposes.  Otherwise:
 *
 * The catalog itself moves copy-on-write (rewrite): a new allocation gets
 * the whole catalog, is synced, then the root reference is set durably,
 * then the old allocation is freed.  A crash before the root reference
 * switch leaves the old catalog (the new space is reclaimed at mount);
 * after it, the new one (the old space is reclaimed).
 */
#include "catalog_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* ---- names and records -------------------------------------------------- */

int cat_name_ok(const char *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > CAT_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return -EINVAL;
	return 0;
}

static unsigned units_for(uint8_t kind, uint16_t name_len, uint64_t size, uint64_t alloc_len)
{
	uint64_t inl = kind == CAT_SYMLINK && alloc_len == 0 ? size : 0;
	if (inl > CAT_INLINE_MAX)
		return 255;   /* no record is this long (decode refuses it) */
	uint64_t b = CAT_NAME_OFF + name_len + inl;
	return (unsigned)((b + CAT_UNIT_SIZE - 1) / CAT_UNIT_SIZE);
}

unsigned cat_rec_units(const struct cat_rec *r)
{
	return units_for(r->kind, r->name_len, r->size, r->alloc.len);
}

static unsigned units_of(const struct cat_attr *a)
{
	return units_for(a->kind, a->name_len, a->size, a->alloc.len);
}

void cat_rec_encode(const struct cat_rec *r, uint8_t *s)
{
	cat_rec_encode_n(r, s, CAT_SLOT_SIZE);
}

void cat_rec_encode_n(const struct cat_rec *r, uint8_t *s, size_t size)
{
	bool v1 = (r->kind == CAT_FILE || r->kind == CAT_DIR || r->kind == CAT_TOMB) &&
		  (r->parent || r->kind == CAT_TOMB);
	memset(s, 0, size);
	s[4] = r->kind;
	s[5] = v1 ? CAT_VERSION_1 : CAT_VERSION;
	s[6] = (uint8_t)r->name_len;
	s[7] = (uint8_t)(r->name_len >> 8);
	le64_put(s + 8, r->seq);
	le64_put(s + 16, r->ino);
	le64_put(s + 24, r->parent);
	le64_put(s + 32, r->alloc.off);
	le64_put(s + 40, r->alloc.len);
	le64_put(s + 48, r->size);
	le32_put(s + 56, r->mode);
	le32_put(s + 60, r->uid);
	le32_put(s + 64, r->gid);
	le32_put(s + 68, r->rdev);
	le64_put(s + 72, (uint64_t)r->atime);
	le64_put(s + 80, (uint64_t)r->mtime);
	le64_put(s + 88, (uint64_t)r->ctime);
	memcpy(s + CAT_NAME_OFF, r->name, r->name_len);
	if (r->kind == CAT_SYMLINK && r->alloc.len == 0 && r->target)
		memcpy(s + CAT_NAME_OFF + r->name_len, r->target, r->size);
	le32_put(s, crc32c(0, s + 4, size - 4));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int cat_rec_decode(const uint8_t *s, struct cat_rec *r)
{
	return cat_rec_decode_n(s, CAT_SLOT_SIZE, r);
}

int cat_rec_decode_n(const uint8_t *s, size_t size, struct cat_rec *r)
{
	if (all_zero(s, size))
		return -ENODATA;
	if (le32_get(s) != crc32c(0, s + 4, size - 4))
		return -EBADMSG;
	memset(r, 0, sizeof *r);
	r->kind = s[4];
	r->name_len = (uint16_t)(s[6] | s[7] << 8);
	r->seq = le64_get(s + 8);
	r->ino = le64_get(s + 16);
	r->parent = le64_get(s + 24);
	r->alloc.off = le64_get(s + 32);
	r->alloc.len = le64_get(s + 40);
	r->size = le64_get(s + 48);
	r->mode = le32_get(s + 56);
	r->uid = le32_get(s + 60);
	r->gid = le32_get(s + 64);
	r->rdev = le32_get(s + 68);
	r->atime = (int64_t)le64_get(s + 72);
	r->mtime = (int64_t)le64_get(s + 80);
	r->ctime = (int64_t)le64_get(s + 88);
	if ((s[5] != CAT_VERSION_1 && s[5] != CAT_VERSION) || r->seq == 0 || r->ino == 0 ||
	    r->name_len > CAT_NAME_MAX)
		return -EBADMSG;
	memcpy(r->name, s + CAT_NAME_OFF, r->name_len);
	r->name[r->name_len] = '\0';
	bool v2 = s[5] == CAT_VERSION, no_alloc = !r->alloc.off && !r->alloc.len;
	if (r->kind == CAT_TOMB)
		return 0;
	if (r->kind > CAT_TOMB && !v2)
		return -EBADMSG;
	if (r->rdev && r->kind != CAT_SPECIAL && r->kind != CAT_XATTR)
		return -EBADMSG;
	switch (r->kind) {
	case CAT_DIR:
		if (!no_alloc || r->size || !S_ISDIR(r->mode))
			return -EBADMSG;
		break;
	case CAT_FILE:
		if ((r->alloc.len == 0) != (r->alloc.off == 0) || r->size > r->alloc.len ||
		    !S_ISREG(r->mode))
			return -EBADMSG;
		break;
	case CAT_SYMLINK:
		if (!S_ISLNK(r->mode) || r->size == 0 || r->size > CAT_SYMLINK_MAX ||
		    (r->alloc.len == 0) != (r->alloc.off == 0) ||
		    (no_alloc ? CAT_NAME_OFF + r->name_len + r->size > size
			      : r->size > r->alloc.len))
			return -EBADMSG;
		if (no_alloc) {
			r->target = (const char *)s + CAT_NAME_OFF + r->name_len;
			if (memchr(r->target, '\0', r->size))
				return -EBADMSG;
		}
		break;
	case CAT_SPECIAL:
		if (!no_alloc || r->size ||
		    !(S_ISFIFO(r->mode) || S_ISSOCK(r->mode) || S_ISCHR(r->mode) ||
		      S_ISBLK(r->mode)) ||
		    (r->rdev && !S_ISCHR(r->mode) && !S_ISBLK(r->mode)))
			return -EBADMSG;
		break;
	case CAT_LINK:
		if (!no_alloc || r->size || r->mode || r->uid || r->gid || r->ino == 1 ||
		    r->parent == 0)
			return -EBADMSG;
		break;
	case CAT_XATTR:
		/* any inode's, the root's too: no name, no parent */
		return !r->alloc.off || !r->alloc.len || !r->size || r->size > r->alloc.len ||
		       r->mode || r->uid || r->gid || r->parent || r->name_len ? -EBADMSG : 0;
	default:
		return -EBADMSG;
	}
	if (r->ino == 1)   /* the root: a directory, its own parent, no name */
		return r->kind == CAT_DIR && r->parent == 1 && r->name_len == 0 ? 0 : -EBADMSG;
	if (r->parent == 0)   /* a nameless inode (version 2, not a directory) */
		return v2 && r->kind != CAT_DIR && r->name_len == 0 ? 0 : -EBADMSG;
	return cat_name_ok(r->name, r->name_len) ? -EBADMSG : 0;
}

void cat_hdr_encode(uint64_t n_pairs, uint32_t version, uint32_t slot, uint8_t *h)
{
	memset(h, 0, CAT_HDR_SIZE);
	memcpy(h, CAT_MAGIC, 8);
	le32_put(h + 8, version);
	le32_put(h + 12, slot);
	le64_put(h + 16, n_pairs);
	le32_put(h + 60, crc32c(0, h, 60));
}

int cat_hdr_decode(const uint8_t *h, uint64_t *n_pairs, uint32_t *version, uint32_t *slot)
{
	uint32_t ver = le32_get(h + 8), sz = le32_get(h + 12);
	if (memcmp(h, CAT_MAGIC, 8) != 0)
		return -EILSEQ;
	if (le32_get(h + 60) != crc32c(0, h, 60) || (ver != CAT_VERSION_1 && ver != CAT_VERSION) ||
	    (sz != CAT_SLOT_SIZE && sz != CAT_UNIT_SIZE) || !all_zero(h + 24, 36))
		return -EBADMSG;
	*n_pairs = le64_get(h + 16);
	*version = ver;
	*slot = sz;
	return 0;
}

void cat_root_encode(struct bs_slice root, uint8_t ref[CAT_ROOT_REF_SIZE])
{
	le64_put(ref, root.off);
	le64_put(ref + 8, root.len);
}

struct bs_slice cat_root_decode(const uint8_t ref[CAT_ROOT_REF_SIZE])
{
	return (struct bs_slice){ le64_get(ref), le64_get(ref + 8) };
}

/* Bytes of one place: a pair, or a unit. */
static uint64_t stride(bool compact)
{
	return compact ? CAT_UNIT_SIZE : CAT_PAIR_SIZE;
}

static uint64_t cat_bytes(bool compact, uint64_t n_pairs)
{
	return CAT_HDR_SIZE + n_pairs * stride(compact);
}

static uint64_t slot_off(const struct catalog *c, uint64_t pair, unsigned slot)
{
	return c->root.off + CAT_HDR_SIZE + pair * stride(c->compact) + slot * CAT_SLOT_SIZE;
}

static uint32_t slot_size(bool compact)
{
	return compact ? CAT_UNIT_SIZE : CAT_SLOT_SIZE;
}

/* ---- the in-memory index ------------------------------------------------ */

enum { T_INO, T_NAME, T_COOKIE };

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t name_hash(uint64_t parent, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ mix64(parent);
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 0x100000001b3ULL;
	return mix64(h);
}

static uint64_t node_hash(const struct cat_node *n, int t)
{
	switch (t) {
	case T_INO:
		return mix64(n->r.ino);
	case T_NAME:
		return name_hash(n->r.parent, n->name, n->r.name_len);
	default:
		return mix64(n->r.parent * 0x9E3779B97F4A7C15ULL ^ n->cookie);
	}
}

static struct cat_node **chain(struct cat_node *n, int t)
{
	return t == T_INO ? &n->h_ino : t == T_NAME ? &n->h_name : &n->h_cookie;
}

static struct cat_table *table(struct catalog *c, int t)
{
	return t == T_INO ? &c->by_ino : t == T_NAME ? &c->by_name : &c->by_cookie;
}

static int tab_grow(struct catalog *c, int t)
{
	struct cat_table *tb = table(c, t);
	uint64_t nb = tb->nb ? tb->nb * 2 : 64;
	struct cat_node **b = calloc(nb, sizeof *b);
	if (!b)
		return -ENOMEM;
	for (uint64_t i = 0; i < tb->nb; i++) {
		struct cat_node *n = tb->b[i], *next;
		for (; n; n = next) {
			next = *chain(n, t);
			uint64_t h = node_hash(n, t) & (nb - 1);
			*chain(n, t) = b[h];
			b[h] = n;
		}
	}
	free(tb->b);
	tb->b = b;
	tb->nb = nb;
	return 0;
}

/* Insertion never fails for lack of memory once the table has room; the
 * callers reserve room first (tab_reserve) so that a durable write is never
 * followed by an index update that can fail. */
static int tab_reserve(struct catalog *c, int t)
{
	struct cat_table *tb = table(c, t);
	return tb->n + 1 > tb->nb ? tab_grow(c, t) : 0;
}

static void tab_insert(struct catalog *c, int t, struct cat_node *n)
{
	struct cat_table *tb = table(c, t);
	uint64_t h = node_hash(n, t) & (tb->nb - 1);
	*chain(n, t) = tb->b[h];
	tb->b[h] = n;
	tb->n++;
}

static void tab_remove(struct catalog *c, int t, struct cat_node *n)
{
	struct cat_table *tb = table(c, t);
	if (!tb->nb)
		return;
	struct cat_node **pp = &tb->b[node_hash(n, t) & (tb->nb - 1)];
	for (; *pp; pp = chain(*pp, t)) {
		if (*pp == n) {
			*pp = *chain(n, t);
			*chain(n, t) = NULL;
			tb->n--;
			return;
		}
	}
}

struct cat_node *cat_get(struct catalog *c, uint64_t ino)
{
	if (!c->by_ino.nb)
		return NULL;
	struct cat_node *n = c->by_ino.b[mix64(ino) & (c->by_ino.nb - 1)];
	for (; n; n = n->h_ino)
		if (n->r.ino == ino)
			return n;
	return NULL;
}

struct cat_node *cat_lookup(struct catalog *c, uint64_t parent, const char *name,
			    size_t len)
{
	if (!c->by_name.nb)
		return NULL;
	struct cat_node *n = c->by_name.b[name_hash(parent, name, len) & (c->by_name.nb - 1)];
	for (; n; n = n->h_name)
		if (n->r.parent == parent && n->r.name_len == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

static struct cat_node *cookie_lookup(struct catalog *c, uint64_t parent, uint64_t cookie)
{
	if (!c->by_cookie.nb)
		return NULL;
	uint64_t h = mix64(parent * 0x9E3779B97F4A7C15ULL ^ cookie);
	struct cat_node *n = c->by_cookie.b[h & (c->by_cookie.nb - 1)];
	for (; n; n = n->h_cookie)
		if (n->r.parent == parent && n->cookie == cookie)
			return n;
	return NULL;
}

struct cat_node *cat_child_after(struct catalog *c, struct cat_node *dir, uint64_t pos)
{
	if (pos == 0)
		return dir->first;
	struct cat_node *n = cookie_lookup(c, dir->r.ino, pos);
	if (n)
		return n->next;
	/* The entry at pos went away: the list is in cookie order. */
	for (n = dir->first; n && n->cookie <= pos; n = n->next)
		;
	return n;
}

static int reserve_all(struct catalog *c)
{
	int r;
	if ((r = tab_reserve(c, T_INO)) || (r = tab_reserve(c, T_NAME)) ||
	    (r = tab_reserve(c, T_COOKIE)))
		return r;
	return 0;
}

/* Add n (already in by_ino) under its parent: name index and children. */
static void link_child(struct catalog *c, struct cat_node *dir, struct cat_node *n)
{
	n->cookie = ++dir->next_cookie;
	n->prev = dir->last;
	n->next = NULL;
	if (dir->last)
		dir->last->next = n;
	else
		dir->first = n;
	dir->last = n;
	dir->nchildren++;
	if (n->r.kind == CAT_DIR)
		dir->nsubdirs++;
	tab_insert(c, T_NAME, n);
	tab_insert(c, T_COOKIE, n);
}

static void unlink_child(struct catalog *c, struct cat_node *dir, struct cat_node *n)
{
	tab_remove(c, T_NAME, n);
	tab_remove(c, T_COOKIE, n);
	if (n->prev)
		n->prev->next = n->next;
	else
		dir->first = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		dir->last = n->prev;
	n->prev = n->next = NULL;
	dir->nchildren--;
	if (n->r.kind == CAT_DIR)
		dir->nsubdirs--;
}

static void count_kind(struct catalog *c, const struct cat_node *n, int d)
{
	switch (n->r.kind) {
	case CAT_DIR:
		c->n_dirs += d;
		return;
	case CAT_LINK:
		c->n_links += d;
		return;
	case CAT_XATTR:
		c->n_xattr += d;
		c->xattr_bytes += (uint64_t)d * n->r.size;
		return;
	case CAT_SYMLINK:
		c->n_symlinks += d;
		break;
	case CAT_SPECIAL:
		c->n_special += d;
		break;
	}
	c->n_files += d;
}

static void node_free(struct cat_node *n)
{
	if (n) {
		free(n->name);
		free(n->tbuf);
		free(n);
	}
}

/* A node keeps its attributes (CAT_ATTR_FIELDS, the head of a record) and
 * its name apart: the name in an allocation of its own length (strndup:
 * names hold no NUL), so that a short name does not cost the 256 bytes a
 * whole record reserves. */

/* n's whole record: attributes, name, inline target. */
static void node_rec(const struct cat_node *n, struct cat_rec *out)
{
	memcpy(out, &n->r, sizeof n->r);
	memcpy(out->name, n->name, n->r.name_len);
	out->name[n->r.name_len] = '\0';
	out->target = n->tbuf;
}

/* r's attributes into n, and (when given) the name buffer that holds r's
 * name, which n takes; a name that did not change keeps n's own. */
static void node_set(struct cat_node *n, const struct cat_rec *r, char *name)
{
	memcpy(&n->r, r, sizeof n->r);
	if (name) {
		free(n->name);
		n->name = name;
	}
}

/* Does r carry a name other than n's? */
static bool name_differs(const struct cat_node *n, const struct cat_rec *r)
{
	return r->name_len != n->r.name_len || memcmp(r->name, n->name, r->name_len) != 0;
}

static int write_rec(struct catalog *c, uint64_t pair, struct cat_rec *r);

/* Write n's record as it is in memory (n->r.seq follows). */
static int write_node(struct catalog *c, uint64_t pair, struct cat_node *n)
{
	struct cat_rec t;
	node_rec(n, &t);
	int e = write_rec(c, pair, &t);
	if (!e)
		n->r.seq = t.seq;
	return e;
}

/* Hook link l onto inode n's names / take it off. */
static void attach_link(struct cat_node *n, struct cat_node *l)
{
	l->inode = n;
	l->lnext = n->links;
	n->links = l;
	n->nlinks++;
}

static void detach_link(struct cat_node *l)
{
	struct cat_node *n = l->inode, **pp;
	if (!n)
		return;
	for (pp = &n->links; *pp; pp = &(*pp)->lnext) {
		if (*pp == l) {
			*pp = l->lnext;
			n->nlinks--;
			break;
		}
	}
	l->inode = l->lnext = NULL;
}

void cat_forget(struct catalog *c, struct cat_node *n)
{
	struct cat_node *dir = n->r.parent ? cat_get(c, n->r.parent) : NULL;
	if (dir && dir != n)
		unlink_child(c, dir, n);
	if (n->r.kind == CAT_LINK) {
		detach_link(n);
	} else {
		tab_remove(c, T_INO, n);
		if (n->xattr) {
			count_kind(c, n->xattr, -1);
			node_free(n->xattr);
		}
		/* its links stay on disk for the next mount to resolve */
		while (n->links) {
			struct cat_node *l = n->links;
			struct cat_node *ld = cat_get(c, l->r.parent);
			if (ld)
				unlink_child(c, ld, l);
			detach_link(l);
			count_kind(c, l, -1);
			node_free(l);
		}
	}
	count_kind(c, n, -1);
	node_free(n);
}

int cat_foreach(struct catalog *c, int (*fn)(void *ctx, struct cat_node *n), void *ctx)
{
	for (uint64_t i = 0; i < c->by_ino.nb; i++) {
		struct cat_node *n = c->by_ino.b[i], *next;
		for (; n; n = next) {
			next = n->h_ino;
			int r = fn(ctx, n);
			if (r)
				return r;
		}
	}
	return 0;
}

void cat_free(struct catalog *c)
{
	if (!c)
		return;
	for (uint64_t i = 0; i < c->by_ino.nb; i++) {
		struct cat_node *n = c->by_ino.b[i], *next;
		for (; n; n = next) {
			next = n->h_ino;
			while (n->links) {
				struct cat_node *l = n->links;
				n->links = l->lnext;
				node_free(l);
			}
			node_free(n->xattr);
			node_free(n);
		}
	}
	while (c->losers) {
		struct cat_node *n = c->losers;
		c->losers = n->next;
		node_free(n->xattr);
		node_free(n);
	}
	while (c->xattr_strays) {
		struct cat_node *x = c->xattr_strays;
		c->xattr_strays = x->lnext;
		node_free(x);
	}
	free(c->by_ino.b);
	free(c->by_name.b);
	free(c->by_cookie.b);
	free(c->free_pairs);
	free(c->pair_slot);
	for (int k = 0; k < 3; k++)
		free(c->runs[k].v);
	free(c);
}

/* ---- rewrite (copy-on-write of the whole catalog) ----------------------- */

/* Size the per-place arrays for n places (pair_slot; free_pairs for the
 * paired layout); the free lists are rebuilt by the caller. */
static int pairs_resize(struct catalog *c, uint64_t n, bool compact)
{
	uint8_t *ps = realloc(c->pair_slot, n ? n : 1);
	if (!ps)
		return -ENOMEM;
	c->pair_slot = ps;
	if (compact)
		return 0;
	uint64_t *fp = realloc(c->free_pairs, (n ? n : 1) * sizeof *fp);
	if (!fp)
		return -ENOMEM;
	c->free_pairs = fp;
	return 0;
}

/* ---- compact places: runs of free units --------------------------------- */

#define CAT_UNIT_TAIL 0x80   /* pair_slot: a record's unit after its first */

static void runs_push(struct catalog *c, uint64_t at, unsigned k)
{
	struct cat_runs *s = &c->runs[k - 1];
	if (s->n == s->cap) {
		uint64_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			c->frag = true;   /* pair_slot still says free: a rebuild finds it */
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = at;
}

/* The stacks again from pair_slot: every maximal free run cut into runs of
 * three (its remainder last), pushed from the top of the catalog down so
 * that the lowest runs are handed out first. */
static void runs_rebuild(struct catalog *c)
{
	uint64_t end = c->n_pairs;
	for (int k = 0; k < 3; k++)
		c->runs[k].n = 0;
	c->frag = false;
	for (uint64_t i = c->n_pairs; i-- > 0;) {
		if (c->pair_slot[i]) {
			end = i;
			continue;
		}
		if (i > 0 && !c->pair_slot[i - 1])
			continue;
		uint64_t len = end - i, rem = len % 3;   /* [i, end) is free */
		if (rem)
			runs_push(c, end - rem, (unsigned)rem);
		for (uint64_t p = end - rem; p > i; p -= 3)
			runs_push(c, p - 3, 3);
	}
}

static bool runs_have(struct catalog *c, unsigned k)
{
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned j = k; j <= 3; j++)
			if (c->runs[j - 1].n)
				return true;
		if (!c->frag)
			return false;
		runs_rebuild(c);
	}
	return false;
}

static void units_mark(struct catalog *c, uint64_t at, unsigned k)
{
	c->pair_slot[at] = (uint8_t)k;
	for (unsigned i = 1; i < k; i++)
		c->pair_slot[at + i] = CAT_UNIT_TAIL;
	c->n_free -= k;
}

/* Units [at, at + k) are free again (on disk they are zero already). */
static void units_release(struct catalog *c, uint64_t at, unsigned k)
{
	memset(c->pair_slot + at, 0, k);
	c->n_free += k;
	c->frag = true;
	runs_push(c, at, k);
}

/* Take a free run of k units: -ENOSPC when there is none (room() first). */
static int units_take(struct catalog *c, unsigned k, uint64_t *at)
{
	if (!runs_have(c, k))
		return -ENOSPC;
	for (unsigned j = k; j <= 3; j++) {
		struct cat_runs *s = &c->runs[j - 1];
		if (!s->n)
			continue;
		uint64_t p = s->v[--s->n];
		if (j > k)
			runs_push(c, p + k, j - k);
		units_mark(c, p, k);
		*at = p;
		return 0;
	}
	return -ENOSPC;
}

static uint64_t unit_off(const struct catalog *c, uint64_t at)
{
	return c->root.off + CAT_HDR_SIZE + at * CAT_UNIT_SIZE;
}

/* ---- rewrite (copy-on-write of the whole catalog) ----------------------- */

/* Nodes by inode number, then seq. */
static int cmp_node_ino(const void *x, const void *y)
{
	const struct cat_node *p = *(struct cat_node *const *)x, *q = *(struct cat_node *const *)y;
	if (p->r.ino != q->r.ino)
		return p->r.ino < q->r.ino ? -1 : 1;
	return p->r.seq < q->r.seq ? -1 : p->r.seq > q->r.seq;
}

struct list_ctx {
	struct cat_node **v;
	uint64_t n;
	uint64_t units;   /* their compact size */
};

static void list_add(struct list_ctx *l, struct cat_node *n)
{
	l->v[l->n++] = n;
	l->units += units_of(&n->r);
}

/* n and its links (a rewrite writes both). */
static int list_one(void *ctx, struct cat_node *n)
{
	struct list_ctx *l = ctx;
	list_add(l, n);
	for (struct cat_node *k = n->links; k; k = k->lnext)
		list_add(l, k);
	if (n->xattr)
		list_add(l, n->xattr);
	return 0;
}

#define CAT_IO_BYTES (1024 * CAT_PAIR_SIZE)   /* per write while streaming */

/* Bytes streamed to the catalog's new allocation in bounded unsynced
 * writes. */
struct wstream {
	struct bstack *bs;
	uint64_t off;
	uint8_t *buf;
	size_t fill;
	int r;
};

static void ws_flush(struct wstream *w)
{
	if (!w->r && w->fill)
		w->r = bstack_set_nosync(w->bs, w->off, w->buf, w->fill);
	w->off += w->fill;
	w->fill = 0;
}

static void ws_put(struct wstream *w, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k = CAT_IO_BYTES - w->fill < n ? CAT_IO_BYTES - w->fill : n;
		if (p) {
			memcpy(w->buf + w->fill, p, k);
			p += k;
		} else {
			memset(w->buf + w->fill, 0, k);
		}
		w->fill += k;
		n -= k;
		if (w->fill == CAT_IO_BYTES)
			ws_flush(w);
	}
}

/* Write the new catalog at s: header, then every node of v (paired: slot
 * A of pairs 0..n-1; compact: packed from unit 0, each at *pos), then zero
 * up to n_pairs places.  pos[i] gets v[i]'s place. */
static int write_image(struct catalog *c, struct bs_slice s, struct cat_node **v,
		       uint64_t n, uint64_t n_pairs, bool compact, uint64_t *pos)
{
	uint8_t hdr[CAT_HDR_SIZE], rec[CAT_PAIR_SIZE];
	struct wstream w = { c->bs, s.off, malloc(CAT_IO_BYTES), 0, 0 };
	uint64_t at = 0;
	if (!w.buf)
		return -ENOMEM;
	cat_hdr_encode(n_pairs, c->version, slot_size(compact), hdr);
	ws_put(&w, hdr, sizeof hdr);
	for (uint64_t i = 0; i < n; i++) {
		size_t size = compact ? units_of(&v[i]->r) * CAT_UNIT_SIZE : CAT_SLOT_SIZE;
		struct cat_rec t;
		node_rec(v[i], &t);
		memset(rec, 0, sizeof rec);
		cat_rec_encode_n(&t, rec, size);
		ws_put(&w, rec, compact ? size : CAT_PAIR_SIZE);
		pos[i] = at;
		at += compact ? size / CAT_UNIT_SIZE : 1;
	}
	ws_put(&w, NULL, (n_pairs - at) * stride(compact));
	ws_flush(&w);
	free(w.buf);
	return w.r;
}

enum rewrite_size { R_SAME, R_GROW, R_SHRINK };

/* Places for a rewrite into `compact` holding `need` places' worth of
 * records: the same layout keeps its proportions (doubled, halved or
 * alike); a change of layout starts from what the records need, with a
 * quarter to spare. */
static uint64_t rewrite_places(const struct catalog *c, bool compact, uint64_t need,
			       enum rewrite_size how)
{
	uint64_t min = compact ? CAT_MIN_UNITS : CAT_MIN_PAIRS, n;
	if (compact == c->compact && c->n_pairs)
		n = how == R_GROW ? c->n_pairs * 2 : how == R_SHRINK ? c->n_pairs / 2 : c->n_pairs;
	else
		n = how == R_GROW ? need * 2 : need + need / 4 + 3;
	return n > min ? n : min;
}

/*
 * Move the catalog to a new allocation holding every live record
 * (compacted to the front), in the layout the journal mode calls for:
 * compact with a journal, paired without.  The CoW order:
 *   1. alloc the new allocation                (crash: it leaks, reclaimed)
 *   2. write it and sync                        (crash: same)
 *   3. durably set the root reference           (the switch)
 *   4. free the old allocation                  (crash: it leaks, reclaimed)
 * The sync of step 2 also makes every earlier file-data write durable, so
 * in-memory sizes written here never cover bytes that are not on disk.
 */
static int cat_rewrite(struct catalog *c, enum rewrite_size how)
{
	uint64_t live = c->n_files + c->n_dirs + c->n_links + c->n_xattr;
	bool compact = bstack_journaled(c->bs);
	struct bs_slice ns, old = c->root;
	uint8_t ref[CAT_ROOT_REF_SIZE];
	struct list_ctx l = { NULL, 0, 0 };
	uint64_t *pos = NULL, n_pairs, len;
	int r;

	if (!(l.v = malloc((live ? live : 1) * sizeof *l.v)) ||
	    !(pos = malloc((live ? live : 1) * sizeof *pos))) {
		r = -ENOMEM;
		goto out;
	}
	cat_foreach(c, list_one, &l);
	/* in inode order, as they were made: neighbours stay neighbours, so
	 * the places a tree's removal frees merge into long runs */
	qsort(l.v, l.n, sizeof *l.v, cmp_node_ino);
	n_pairs = rewrite_places(c, compact, compact ? l.units : l.n, how);
	len = cat_bytes(compact, n_pairs);
	r = -EINVAL;
	if (n_pairs < (compact ? l.units : l.n))
		goto out;
	/* grown only: on failure the old places stay as they are */
	if ((r = pairs_resize(c, n_pairs > c->n_pairs ? n_pairs : c->n_pairs, compact)))
		goto out;
	if ((r = bs_alloc(c->a, len, &ns)))                    /* step 1 */
		goto out;
	r = write_image(c, ns, l.v, l.n, n_pairs, compact, pos);   /* step 2 */
	if (!r)
		r = bstack_sync(c->bs);
	cat_root_encode(ns, ref);
	if (!r)
		r = bs_alloc_reserved_set(c->a, 0, ref, sizeof ref);  /* step 3 */
	if (r) {
		bs_dealloc(c->a, ns);   /* best effort; a leak is reclaimed at mount */
		goto out;
	}
	c->root = ns;
	c->n_pairs = n_pairs;
	c->compact = compact;
	memset(c->pair_slot, 0, n_pairs);
	for (uint64_t i = 0; i < l.n; i++) {
		l.v[i]->pair = pos[i];
	}
	if (compact) {
		free(c->free_pairs);
		c->free_pairs = NULL;
		c->n_free = n_pairs;
		for (uint64_t i = 0; i < l.n; i++)
			units_mark(c, pos[i], units_of(&l.v[i]->r));
		c->n_recs = l.n;
		runs_rebuild(c);
	} else {
		c->n_free = 0;
		for (int k = 0; k < 3; k++)
			c->runs[k].n = 0;
		for (uint64_t i = n_pairs; i-- > l.n;) {
			c->pair_slot[i] = 1;    /* both slots zero: write A first */
			c->free_pairs[c->n_free++] = i;
		}
	}
	c->rewrites++;
	if (old.len)
		bs_dealloc(c->a, old);                         /* step 4 */
out:
	free(pos);
	free(l.v);
	return r;
}

/*
 * Room for more records.  A compact catalog (journal only) first tries to
 * grow where it is (bs_grow_in_place: at the tail, or into a free
 * neighbour) by a quarter: the grown bytes read as zero, i.e. free units,
 * and the allocation's growth, the header's unit count and the root
 * reference's length change in one transaction, so no crash can see them
 * disagree and no old copy is left behind.  A paired catalog moves
 * (cat_rewrite, doubled): without a journal those three writes could not
 * be atomic; with one, the move makes it compact.  So does a compact one
 * that cannot grow in place.
 */
static int cat_grow(struct catalog *c)
{
	uint64_t step = c->n_pairs / 4 > CAT_MIN_UNITS ? c->n_pairs / 4 : CAT_MIN_UNITS;
	uint64_t n = c->n_pairs + step;
	struct bs_slice ns;
	bool done = false;
	int r;
	if (!c->a || !c->compact || !bstack_journaled(c->bs) ||
	    !bs_alloc_can(c->a, BS_CAP_REUSES_HOLES) || pairs_resize(c, n, true))
		return cat_rewrite(c, R_GROW);
	if ((r = bstack_txn_begin(c->bs)))
		return r;
	r = bs_grow_in_place(c->a, c->root, cat_bytes(true, n), &ns, &done);
	if (!r && done && ns.off == c->root.off) {
		uint8_t hdr[CAT_HDR_SIZE], ref[CAT_ROOT_REF_SIZE];
		cat_hdr_encode(n, c->version, CAT_UNIT_SIZE, hdr);
		cat_root_encode(ns, ref);
		r = bstack_set(c->bs, ns.off, hdr, sizeof hdr);
		if (!r)
			r = bs_alloc_reserved_set(c->a, 0, ref, sizeof ref);
	}
	uint64_t seq;
	int e = bstack_txn_end(c->bs, &seq);
	if (!r)
		r = e;
	if (r || !done)
		return r ? r : cat_rewrite(c, R_GROW);
	memset(c->pair_slot + c->n_pairs, 0, n - c->n_pairs);
	c->n_free += n - c->n_pairs;
	c->root = ns;
	c->n_pairs = n;
	c->grows_in_place++;
	runs_rebuild(c);
	return 0;
}

/* ---- format --------------------------------------------------------------- */

static struct catalog *cat_new(struct bstack *bs)
{
	struct catalog *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->bs = bs;
	c->torn_pair = -1;
	c->next_ino = 2;
	c->version = CAT_VERSION_1;
	return c;
}

int cat_format(struct bs_alloc *a, uint32_t uid, uint32_t gid, int64_t now,
	       struct catalog **out)
{
	struct catalog *c = cat_new(a->bs);
	struct cat_node *root;
	int r;
	if (!c)
		return -ENOMEM;
	c->a = a;
	if (!(root = calloc(1, sizeof *root)) || !(root->name = strndup("", 0)) ||
	    (r = reserve_all(c))) {
		node_free(root);
		cat_free(c);
		return -ENOMEM;
	}
	root->r.kind = CAT_DIR;
	root->r.ino = 1;
	root->r.parent = 1;
	root->r.seq = c->seq = 1;
	root->r.mode = S_IFDIR | 0755;
	root->r.uid = uid;
	root->r.gid = gid;
	root->r.atime = root->r.mtime = root->r.ctime = now;
	tab_insert(c, T_INO, root);
	c->n_dirs = 1;
	/* The mark makes a crash before the root reference is set recognisable
	 * as ours: without it, the image would hold an allocation and no
	 * catalog, and be refused as another program's. */
	uint8_t mark[CAT_ROOT_REF_SIZE];
	cat_root_encode((struct bs_slice){ CAT_ROOT_FORMATTING, 0 }, mark);
	r = bs_alloc_reserved_set(a, 0, mark, sizeof mark);
	if (!r)
		r = cat_rewrite(c, R_SAME);
	if (r) {
		cat_free(c);
		return r;
	}
	*out = c;
	return 0;
}

/* ---- load and verify ------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EUCLEAN;
}

/* Resolve one pair: its winner (copied to *w) or none; notes a bad slot. */
static int load_pair(struct catalog *c, const uint8_t *p, uint64_t i, struct cat_rec *w,
		     bool *have, char *err, size_t errlen)
{
	struct cat_rec s[2];
	int st[2];
	*have = false;
	for (int k = 0; k < 2; k++) {
		st[k] = cat_rec_decode(p + k * CAT_SLOT_SIZE, &s[k]);
		if (st[k] == -EBADMSG) {
			if (c->torn_pair >= 0)
				return fail(err, errlen, "catalog corrupt: more than one record "
					    "fails its checksum (record pairs %lld and %llu)",
					    (long long)c->torn_pair, (unsigned long long)i);
			c->torn_pair = (int64_t)i;
			c->torn_slot = (uint8_t)k;
		}
		if (!st[k] && s[k].seq > c->seq)
			c->seq = s[k].seq;
	}
	int win = -1;
	if (!st[0] && !st[1]) {
		if (s[0].seq == s[1].seq)
			return fail(err, errlen, "catalog corrupt: record pair %llu holds two "
				    "versions with the same sequence number",
				    (unsigned long long)i);
		win = s[0].seq > s[1].seq ? 0 : 1;
	} else if (!st[0]) {
		win = 0;
	} else if (!st[1]) {
		win = 1;
	}
	/* The slot a new version must go to is the other one. */
	c->pair_slot[i] = win >= 0 ? (uint8_t)win : (st[0] == -ENODATA ? 1 : 0);
	if (win >= 0 && s[win].kind != CAT_TOMB) {
		*w = s[win];
		*have = true;
	}
	return 0;
}

static int add_loaded(struct catalog *c, const struct cat_rec *r, uint64_t pair,
		      struct cat_node **links, char *err, size_t errlen)
{
	if (r->kind != CAT_LINK && r->kind != CAT_XATTR && cat_get(c, r->ino))
		return fail(err, errlen, "catalog corrupt: inode %llu appears twice",
			    (unsigned long long)r->ino);
	if (c->version == CAT_VERSION_1 && (r->kind > CAT_TOMB || r->parent == 0))
		return fail(err, errlen, "catalog corrupt: a version 1 catalog holds a "
			    "version 2 record (inode %llu)", (unsigned long long)r->ino);
	struct cat_node *n = calloc(1, sizeof *n);
	if (!n || reserve_all(c)) {
		free(n);
		return -ENOMEM;
	}
	node_set(n, r, NULL);
	n->pair = pair;
	if (!(n->name = strndup(r->name, r->name_len))) {
		free(n);
		return -ENOMEM;
	}
	if (r->kind == CAT_SYMLINK && r->target) {
		if (!(n->tbuf = malloc(r->size + 1))) {
			node_free(n);
			return -ENOMEM;
		}
		memcpy(n->tbuf, r->target, r->size);
		n->tbuf[r->size] = '\0';
	}
	if (r->kind == CAT_LINK || r->kind == CAT_XATTR) {
		/* attached to its inode once every inode is loaded */
		n->lnext = *links;
		*links = n;
		return 0;
	}
	tab_insert(c, T_INO, n);
	count_kind(c, n, 1);
	if (r->ino >= c->next_ino)
		c->next_ino = r->ino + 1;
	return 0;
}

/* Hook every loaded link onto its inode; a link to nothing, to a
 * directory or past the names limit is corruption. */
static int attach_loaded_links(struct catalog *c, struct cat_node *links, char *err,
			       size_t errlen)
{
	int r = 0;
	while (links) {
		struct cat_node *l = links, *n = cat_get(c, l->r.ino);
		links = l->lnext;
		if (!r && l->r.kind == CAT_XATTR) {
			if (n && n->xattr) {
				r = fail(err, errlen, "catalog corrupt: inode %llu has two attribute "
					 "records", (unsigned long long)l->r.ino);
				node_free(l);
			} else if (n) {
				n->xattr = l;
				l->inode = n;
				l->lnext = NULL;
				count_kind(c, l, 1);
			} else {
				/* its inode went first and the crash came between */
				l->lnext = c->xattr_strays;
				c->xattr_strays = l;
			}
			continue;
		}
		if (!r && (!n || n->r.kind == CAT_DIR || cat_nlink(n) >= CAT_NLINK_MAX))
			r = fail(err, errlen, "catalog corrupt: the name \"%s\" in directory %llu "
				 "links to %s inode %llu", l->name,
				 (unsigned long long)l->r.parent,
				 !n ? "a missing" : n->r.kind == CAT_DIR ? "a directory" :
				 "an over-linked", (unsigned long long)l->r.ino);
		if (r) {
			node_free(l);
			continue;
		}
		attach_link(n, l);
		count_kind(c, l, 1);
	}
	return r;
}

struct link_ctx {
	struct catalog *c;
	char *err;
	size_t errlen;
	int r;
};

/* Set aside the older of two records with one name (rename-over crash):
 * a link or a plain inode becomes the loser (tombstoned, its space freed
 * by cat_repair); an inode that has links keeps them and only loses its
 * first name (rewritten nameless by cat_repair). */
static void set_loser(struct catalog *c, struct cat_node *dir, struct cat_node *loser,
		      bool linked)
{
	if (linked)
		unlink_child(c, dir, loser);
	if (loser->r.kind != CAT_LINK && loser->nlinks) {
		loser->r.parent = 0;
		loser->r.name_len = 0;
		loser->name[0] = '\0';
		c->unname = loser;
		return;
	}
	if (loser->r.kind == CAT_LINK) {
		detach_link(loser);   /* its inode may be a stray now (check_tree) */
	} else {
		tab_remove(c, T_INO, loser);
	}
	count_kind(c, loser, -1);
	loser->next = NULL;
	c->losers = loser;
}

/* Put n (an inode with a name, or a link) under its parent; on a duplicate
 * name keep the newer record (set_loser). */
static int link_loaded(void *ctx, struct cat_node *n)
{
	struct link_ctx *l = ctx;
	struct catalog *c = l->c;
	if (n->r.ino == 1 && n->r.kind != CAT_LINK)
		return 0;
	if (n->r.parent == 0)
		return 0;   /* nameless: named by its links only */
	struct cat_node *dir = cat_get(c, n->r.parent);
	if (!dir || dir->r.kind != CAT_DIR) {
		l->r = fail(l->err, l->errlen, "catalog corrupt: inode %llu (\"%s\") has %s "
			    "parent %llu", (unsigned long long)n->r.ino, n->name,
			    dir ? "a non-directory" : "a missing", (unsigned long long)n->r.parent);
		return 1;
	}
	struct cat_node *o = cat_lookup(c, n->r.parent, n->name, n->r.name_len);
	if (o) {
		/* One crash leaves at most one such pair (cat_repair removes it
		 * before anything else is written); a loser directory with
		 * children cannot come from rename-over. */
		struct cat_node *loser = o->r.seq < n->r.seq ? o : n;
		if (c->losers || c->unname || (loser->r.kind == CAT_DIR && loser->first)) {
			l->r = fail(l->err, l->errlen, "catalog corrupt: two entries named \"%s\" "
				    "in directory %llu", n->name,
				    (unsigned long long)n->r.parent);
			return 1;
		}
		set_loser(c, dir, loser, loser == o);
		if (loser == n)
			return 0;
	}
	if ((l->r = reserve_all(c)))
		return 1;
	link_child(c, dir, n);
	return 0;
}


/* Link every loaded name under its parent, in inode order (so readdir
 * lists a loaded directory in creation order).  The walk is over a
 * snapshot: link_loaded reserves room in the indexes, which may rehash
 * by_ino, and takes a rename-over loser out of it, and a walk of the live
 * table would then visit a node twice or not at all (found by the
 * kill -9 test: a catalog that filled its last pair at the crash was
 * refused as holding "two entries" of one file, or lost it). */
static int link_all(struct catalog *c, char *err, size_t errlen)
{
	uint64_t total = c->by_ino.n + c->n_links + c->n_xattr;
	struct list_ctx all = { malloc((total ? total : 1) * sizeof *all.v), 0, 0 };
	struct link_ctx l = { c, err, errlen, 0 };
	if (!all.v)
		return -ENOMEM;
	cat_foreach(c, list_one, &all);
	qsort(all.v, all.n, sizeof *all.v, cmp_node_ino);
	for (uint64_t i = 0; i < all.n && !l.r; i++)
		link_loaded(&l, all.v[i]);
	free(all.v);
	return l.r;
}

static int count_nameless(void *ctx, struct cat_node *n)
{
	struct catalog *c = ctx;
	if (n->r.parent == 0) {
		c->n_nameless++;
		if (n->nlinks == 0 && n != c->unname) {
			/* chained by lnext: an inode's own lnext is unused */
			n->lnext = c->strays;
			c->strays = n;
		}
	}
	return 0;
}

/* Every node must be reachable from the root (no cycles, no orphans);
 * nameless inodes are reached through their links. */
static int check_tree(struct catalog *c, char *err, size_t errlen)
{
	uint64_t total = c->n_files + c->n_dirs, seen = 0, head = 0;
	struct cat_node **q = malloc((total ? total : 1) * sizeof *q);
	if (!q)
		return -ENOMEM;
	c->n_nameless = 0;
	cat_foreach(c, count_nameless, c);
	struct cat_node *root = cat_get(c, 1);
	q[seen++] = root;
	while (head < seen) {
		struct cat_node *d = q[head++];
		for (struct cat_node *k = d->first; k && seen < total; k = k->next)
			if (k->r.kind == CAT_DIR)
				q[seen++] = k;
	}
	/* other names were counted through their parents' lists */
	uint64_t names = 0;
	for (uint64_t i = 0; i < seen; i++)
		names += q[i]->nchildren - q[i]->nsubdirs;
	free(q);
	if (seen != c->n_dirs || names != c->n_files - c->n_nameless + c->n_links)
		return fail(err, errlen, "catalog corrupt: %llu names are not reachable from "
			    "the root directory (a cycle or an orphan)",
			    (unsigned long long)(total - c->n_nameless + c->n_links - seen - names));
	return 0;
}

#define CAT_IO_PAIRS (CAT_IO_BYTES / CAT_PAIR_SIZE)   /* pairs per read */
#define CAT_IO_UNITS (CAT_IO_BYTES / CAT_UNIT_SIZE)   /* units per read */

/* Load a paired catalog's records: every pair's winner. */
static int load_paired(struct catalog *c, uint8_t *buf, struct cat_node **links, char *err,
		       size_t errlen)
{
	int r;
	for (uint64_t i = 0; i < c->n_pairs; i++) {
		struct cat_rec w;
		bool have;
		uint64_t j = i % CAT_IO_PAIRS;
		if (j == 0) {
			/* read in bounded chunks: memory stays O(inodes) */
			uint64_t k = c->n_pairs - i < CAT_IO_PAIRS ? c->n_pairs - i : CAT_IO_PAIRS;
			r = bstack_get(c->bs, c->root.off + CAT_HDR_SIZE + i * CAT_PAIR_SIZE, buf,
				       k * CAT_PAIR_SIZE);
			if (r)
				return r;
		}
		r = load_pair(c, buf + j * CAT_PAIR_SIZE, i, &w, &have, err, errlen);
		if (!r && have)
			r = add_loaded(c, &w, i, links, err, errlen);
		else if (!r)
			c->free_pairs[c->n_free++] = i;
		if (r)
			return r;
	}
	/* lowest free pair first */
	for (uint64_t i = 0; i < c->n_free / 2; i++) {
		uint64_t t = c->free_pairs[i];
		c->free_pairs[i] = c->free_pairs[c->n_free - 1 - i];
		c->free_pairs[c->n_free - 1 - i] = t;
	}
	return 0;
}

/* The units a compact record starting at p says it takes (its fields, not
 * yet verified: 1..3 or more for garbage). */
static unsigned units_claimed(const uint8_t *p)
{
	struct cat_rec h = { .kind = p[4], .name_len = (uint16_t)(p[6] | p[7] << 8),
			     .alloc = { 0, le64_get(p + 40) }, .size = le64_get(p + 48) };
	return cat_rec_units(&h);
}

/* Load a compact catalog's records: units in order, each record one copy
 * (a unit that starts none is all zero).  There is no second copy to fall
 * back on, and the journal makes every change whole, so a record that
 * fails its checksum is damage: the mount is refused. */
static int load_compact(struct catalog *c, uint8_t *buf, struct cat_node **links, char *err,
			size_t errlen)
{
	uint64_t n = c->n_pairs, at = 0, first = 0, have = 0;   /* buf: units [first, first + have) */
	int r;
	while (at < n) {
		if (at + 3 > first + have && first + have < n) {
			/* bounded chunks; a record never straddles one */
			have = n - at < CAT_IO_UNITS ? n - at : CAT_IO_UNITS;
			first = at;
			if ((r = bstack_get(c->bs, unit_off(c, at), buf, have * CAT_UNIT_SIZE)))
				return r;
		}
		const uint8_t *p = buf + (at - first) * CAT_UNIT_SIZE;
		if (all_zero(p, CAT_UNIT_SIZE)) {
			c->pair_slot[at++] = 0;
			continue;
		}
		unsigned k = units_claimed(p);
		struct cat_rec w;
		if (k > 3 || k > first + have - at || cat_rec_decode_n(p, k * CAT_UNIT_SIZE, &w))
			return fail(err, errlen, "catalog corrupt: the record at unit %llu fails "
				    "its checksum", (unsigned long long)at);
		if (w.kind == CAT_TOMB)
			return fail(err, errlen, "catalog corrupt: a compact catalog holds a "
				    "tombstone (unit %llu)", (unsigned long long)at);
		if (w.seq > c->seq)
			c->seq = w.seq;
		if ((r = add_loaded(c, &w, at, links, err, errlen)))
			return r;
		c->pair_slot[at] = (uint8_t)k;
		for (unsigned i = 1; i < k; i++)
			c->pair_slot[at + i] = CAT_UNIT_TAIL;
		c->n_recs++;
		at += k;
	}
	c->n_free = n;
	for (uint64_t i = 0; i < n; i++)
		if (c->pair_slot[i])
			c->n_free--;
	runs_rebuild(c);
	return 0;
}

int cat_load(struct bstack *bs, struct bs_slice root, struct catalog **out,
	     char *err, size_t errlen)
{
	uint64_t plen = bstack_len(bs), n_pairs;
	uint8_t hdr[CAT_HDR_SIZE], *buf = NULL;
	struct cat_node *links = NULL;
	struct catalog *c;
	uint32_t version, slot;
	bool compact;
	int r;

	if (root.off < CAT_ROOT_REF_SIZE || root.len < CAT_HDR_SIZE ||
	    !range_ok(root.off, root.len, plen))
		return fail(err, errlen, "catalog corrupt: root reference (%llu, %llu) points "
			    "outside the image", (unsigned long long)root.off,
			    (unsigned long long)root.len);
	if ((r = bstack_get(bs, root.off, hdr, sizeof hdr)))
		return r;
	r = cat_hdr_decode(hdr, &n_pairs, &version, &slot);
	if (r == -EILSEQ)
		return fail(err, errlen, "catalog corrupt: root reference points at no "
			    "catalog (bad magic)");
	if (r)
		return fail(err, errlen, "catalog corrupt: header fails its checksum");
	compact = slot == CAT_UNIT_SIZE;
	if (n_pairs > (root.len - CAT_HDR_SIZE) / stride(compact) ||
	    cat_bytes(compact, n_pairs) != root.len)
		return fail(err, errlen, "catalog corrupt: header says %llu records, the "
			    "root reference %llu bytes", (unsigned long long)n_pairs,
			    (unsigned long long)root.len);
	if (!(c = cat_new(bs)) || !(buf = malloc(CAT_IO_BYTES)) ||
	    pairs_resize(c, n_pairs, compact)) {
		r = -ENOMEM;
		goto fail;
	}
	c->root = root;
	c->n_pairs = n_pairs;
	c->compact = compact;
	c->version = version;
	c->next_ino = 1;
	r = compact ? load_compact(c, buf, &links, err, errlen)
		    : load_paired(c, buf, &links, err, errlen);
	if (r)
		goto fail;
	r = attach_loaded_links(c, links, err, errlen);
	links = NULL;
	if (r)
		goto fail;
	if (!cat_get(c, 1)) {
		r = fail(err, errlen, "catalog corrupt: no root directory");
		goto fail;
	}
	if ((r = link_all(c, err, errlen)) || (r = check_tree(c, err, errlen)))
		goto fail;
	free(buf);
	*out = c;
	return 0;
fail:
	while (links) {
		struct cat_node *l = links;
		links = l->lnext;
		node_free(l);
	}
	free(buf);
	cat_free(c);
	return r;
}

struct ext {
	uint64_t start, len, ino;
};

static int cmp_ext(const void *x, const void *y)
{
	const struct ext *p = x, *q = y;
	return p->start < q->start ? -1 : p->start > q->start;
}

struct ext_ctx {
	struct catalog *c;
	struct ext *v;
	size_t n;
	char *err;
	size_t errlen;
	int r;
};

/* One allocation (ino's, named `name` in a message) into the extent list. */
static int ext_slice(struct ext_ctx *e, uint64_t ino, const char *name, struct bs_slice s)
{
	uint64_t start, len;
	bool inside = range_ok(s.off, s.len, bstack_len(e->c->bs));
	if (!inside || bs_alloc_extent(e->c->a, s, &start, &len)) {
		e->r = fail(e->err, e->errlen, "catalog corrupt: inode %llu (\"%s\") points "
			    "at (%llu, %llu), %s", (unsigned long long)ino, name,
			    (unsigned long long)s.off, (unsigned long long)s.len,
			    inside ? "which is not an allocation of the arena" :
			    "outside the payload");
		return 1;
	}
	e->v[e->n++] = (struct ext){ start, len, ino };
	return 0;
}

static int ext_one(struct ext_ctx *e, const struct cat_node *n)
{
	if ((!cat_kind_has_alloc(n->r.kind) && n->r.kind != CAT_XATTR) || n->r.alloc.len == 0)
		return 0;
	return ext_slice(e, n->r.ino, n->name, n->r.alloc);
}

/* n's own allocation and its attribute blob */
static int ext_two(struct ext_ctx *e, const struct cat_node *n)
{
	return ext_one(e, n) || (n->xattr && ext_one(e, n->xattr));
}

static int ext_cb(void *ctx, struct cat_node *n)
{
	return ext_two(ctx, n);
}

int cat_attach(struct catalog *c, struct bs_alloc *a, char *err, size_t errlen)
{
	c->a = a;
	return cat_check_extents(c, NULL, 0, err, errlen);
}

int cat_check_extents(struct catalog *c, const struct cat_held *held, size_t n_held,
		      char *err, size_t errlen)
{
	uint64_t total = c->n_files + c->n_dirs + n_held + c->n_xattr + 4;
	struct ext_ctx e = { c, NULL, 0, err, errlen, 0 };
	struct bs_alloc *a = c->a;
	uint64_t start, len;
	if (!(e.v = malloc(total * sizeof *e.v)))
		return -ENOMEM;
	if (bs_alloc_extent(a, c->root, &start, &len)) {
		free(e.v);
		return fail(err, errlen, "catalog corrupt: root reference (%llu, %llu) is not "
			    "an allocation of the %s allocator", (unsigned long long)c->root.off,
			    (unsigned long long)c->root.len, bs_alloc_kind_name(a->kind));
	}
	e.v[e.n++] = (struct ext){ start, len, 0 };
	cat_foreach(c, ext_cb, &e);
	if (!e.r && c->losers && c->losers->r.kind != CAT_LINK)
		ext_two(&e, c->losers);
	for (size_t i = 0; i < n_held && !e.r; i++)
		if (held[i].alloc.len)
			ext_slice(&e, held[i].ino, "removed while open", held[i].alloc);
	/* bounded: each stray was added once at load */
	for (struct cat_node *x = c->xattr_strays; x && !e.r; x = x->lnext) {
		if (e.n == total)
			break;
		ext_one(&e, x);
	}
	if (!e.r) {
		qsort(e.v, e.n, sizeof *e.v, cmp_ext);
		for (size_t i = 1; i < e.n; i++) {
			if (e.v[i].start < e.v[i - 1].start + e.v[i - 1].len) {
				e.r = fail(err, errlen, "catalog corrupt: %s%llu and inode %llu "
					   "share bytes at %llu",
					   e.v[i - 1].ino ? "inode " : "the catalog (0) ",
					   (unsigned long long)e.v[i - 1].ino,
					   (unsigned long long)e.v[i].ino,
					   (unsigned long long)e.v[i].start);
				break;
			}
		}
	}
	free(e.v);
	return e.r;
}

struct live_ctx {
	struct bs_slice *v;
	size_t n;
};

static int live_one(void *ctx, struct cat_node *n)
{
	struct live_ctx *l = ctx;
	if (cat_kind_has_alloc(n->r.kind) && n->r.alloc.len)
		l->v[l->n++] = n->r.alloc;
	if (n->xattr)
		l->v[l->n++] = n->xattr->r.alloc;
	return 0;
}

static int cmp_slice(const void *x, const void *y)
{
	const struct bs_slice *p = x, *q = y;
	return p->off < q->off ? -1 : p->off > q->off;
}

int cat_live_slices(struct catalog *c, const struct cat_held *held, size_t n_held,
		    struct bs_slice **out, size_t *n)
{
	uint64_t strays = 0;
	for (struct cat_node *x = c->xattr_strays; x; x = x->lnext)
		strays++;
	struct live_ctx l = { malloc((c->n_files + c->n_dirs + n_held + c->n_xattr +
				      strays + 3) * sizeof *l.v), 0 };
	if (!l.v)
		return -ENOMEM;
	if (c->root.len)
		l.v[l.n++] = c->root;
	cat_foreach(c, live_one, &l);
	if (c->losers && c->losers->r.kind != CAT_LINK)
		live_one(&l, c->losers);
	/* a detached file's space is live until its holder lets it go */
	for (size_t i = 0; i < n_held; i++)
		if (held[i].alloc.len)
			l.v[l.n++] = held[i].alloc;
	for (struct cat_node *x = c->xattr_strays; x; x = x->lnext)
		l.v[l.n++] = x->r.alloc;
	qsort(l.v, l.n, sizeof *l.v, cmp_slice);
	*out = l.v;
	*n = l.n;
	return 0;
}

/* ---- record writes -------------------------------------------------------- */

/* One durable write of r into the slot of `pair` that does not hold its
 * newest version (the crash invariant at the top); compact: r's units
 * from unit `pair` on (inside a transaction, or one of its own). */
static int write_rec(struct catalog *c, uint64_t pair, struct cat_rec *r)
{
	uint8_t slot[CAT_SLOT_SIZE];
	r->seq = c->seq + 1;
	if (c->compact) {
		size_t size = cat_rec_units(r) * CAT_UNIT_SIZE;
		cat_rec_encode_n(r, slot, size);
		int e = bstack_set(c->bs, unit_off(c, pair), slot, size);
		if (!e)
			c->seq = r->seq;
		return e;
	}
	unsigned s = c->pair_slot[pair] ^ 1u;
	cat_rec_encode(r, slot);
	int e = bstack_set(c->bs, slot_off(c, pair, s), slot, sizeof slot);
	if (e)
		return e;
	c->seq = r->seq;
	c->pair_slot[pair] = (uint8_t)s;
	return 0;
}

static int zero_units(struct catalog *c, uint64_t at, unsigned k)
{
	static const uint8_t z[3 * CAT_UNIT_SIZE];
	return bstack_set(c->bs, unit_off(c, at), z, (size_t)k * CAT_UNIT_SIZE);
}

/* A place for a record like r, growing the catalog when there is none
 * (which may move every record: read n->pair after). */
static int room(struct catalog *c, const struct cat_rec *r)
{
	for (int i = 0;; i++) {
		if (c->compact ? runs_have(c, cat_rec_units(r)) : c->n_free > 0)
			return 0;
		if (i == 2)
			return -ENOSPC;
		int e = cat_grow(c);
		if (e)
			return e;
	}
}

/* Durably write n's first record into a free place (room() made one) and
 * take the place. */
static int put_first(struct catalog *c, struct cat_node *n)
{
	int e;
	if (c->compact) {
		unsigned k = units_of(&n->r);
		if ((e = units_take(c, k, &n->pair)))
			return e;
		if ((e = write_node(c, n->pair, n))) {
			units_release(c, n->pair, k);
			return e;
		}
		c->n_recs++;
		return 0;
	}
	n->pair = c->free_pairs[c->n_free - 1];
	if ((e = write_node(c, n->pair, n)))
		return e;
	c->n_free--;
	return 0;
}

/* Durably replace live node n's record by r (seq assigned).  Compact: a
 * record that needs fewer units is rewritten where it is and its tail
 * zeroed; one that needs more moves to a free run (written there, then the
 * old units zeroed, one transaction).  n->pair follows. */
static int put_rec(struct catalog *c, struct cat_node *n, struct cat_rec *r)
{
	if (!c->compact)
		return write_rec(c, n->pair, r);
	unsigned ko = c->pair_slot[n->pair], kn = cat_rec_units(r);
	uint64_t at, seq;
	int e, t;
	if (kn == ko)
		return write_rec(c, n->pair, r);
	if (kn > ko) {
		if ((e = room(c, r)))
			return e;
		ko = c->pair_slot[n->pair];   /* a growth may have moved it */
		if (ko == kn)
			return write_rec(c, n->pair, r);
	}
	if ((e = bstack_txn_begin(c->bs)))
		return e;
	if (kn < ko) {
		if (!(e = write_rec(c, n->pair, r)))
			e = zero_units(c, n->pair + kn, ko - kn);
		if (!e) {
			c->pair_slot[n->pair] = (uint8_t)kn;
			units_release(c, n->pair + kn, ko - kn);
		}
	} else if (!(e = units_take(c, kn, &at))) {
		if (!(e = write_rec(c, at, r)) && (e = zero_units(c, n->pair, ko)))
			zero_units(c, at, kn);   /* undo: no inode twice */
		if (e) {
			units_release(c, at, kn);
		} else {
			units_release(c, n->pair, ko);
			n->pair = at;
		}
	}
	t = bstack_txn_end(c->bs, &seq);
	return e ? e : t;
}

/* Durably drop the record at place `pair` (inode or name ino): a
 * tombstone (paired), zeroed units (compact); the place is free after. */
static int drop_rec(struct catalog *c, uint64_t pair, uint64_t ino)
{
	int e;
	if (c->compact) {
		unsigned k = c->pair_slot[pair];
		if ((e = zero_units(c, pair, k)))
			return e;
		units_release(c, pair, k);
		c->n_recs--;
		return 0;
	}
	struct cat_rec t = { .kind = CAT_TOMB, .ino = ino };
	if ((e = write_rec(c, pair, &t)))
		return e;
	c->free_pairs[c->n_free++] = pair;
	return 0;
}

int cat_repair(struct catalog *c)
{
	int r;
	if (c->torn_pair >= 0) {
		uint8_t z[CAT_SLOT_SIZE] = { 0 };
		r = bstack_set(c->bs, slot_off(c, (uint64_t)c->torn_pair, c->torn_slot), z,
			       sizeof z);
		if (r)
			return r;
		c->torn_pair = -1;
	}
	if (c->losers) {
		struct cat_node *n = c->losers;
		/* unlink order: the record goes durably, then its space */
		if ((r = drop_rec(c, n->pair, n->r.ino)))
			return r;
		c->losers = NULL;
		if (n->r.kind != CAT_LINK && n->r.alloc.len)
			bs_dealloc(c->a, n->r.alloc);
		if (n->xattr) {
			/* the loser's attributes go with it (a stray record now) */
			n->xattr->lnext = c->xattr_strays;
			c->xattr_strays = n->xattr;
			count_kind(c, n->xattr, -1);
			n->xattr = NULL;
		}
		node_free(n);   /* a link's inode left without a name: in strays */
	}
	if (c->unname) {
		struct cat_rec nr;
		node_rec(c->unname, &nr);   /* nameless in memory already */
		if ((r = put_rec(c, c->unname, &nr)))
			return r;
		c->unname->r.seq = nr.seq;
		c->unname = NULL;
	}
	while (c->strays) {
		struct cat_node *n = c->strays;
		if ((r = drop_rec(c, n->pair, n->r.ino)))
			return r;
		c->strays = n->lnext;
		n->lnext = NULL;
		tab_remove(c, T_INO, n);
		count_kind(c, n, -1);
		if (cat_kind_has_alloc(n->r.kind) && n->r.alloc.len)
			bs_dealloc(c->a, n->r.alloc);
		if (n->xattr) {
			n->xattr->lnext = c->xattr_strays;
			c->xattr_strays = n->xattr;
			count_kind(c, n->xattr, -1);
			n->xattr = NULL;
		}
		node_free(n);
	}
	while (c->xattr_strays) {
		struct cat_node *x = c->xattr_strays;
		if ((r = drop_rec(c, x->pair, x->r.ino)))
			return r;
		c->xattr_strays = x->lnext;
		bs_dealloc(c->a, x->r.alloc);
		node_free(x);
	}
	return 0;
}

bool cat_needs_repair(const struct catalog *c)
{
	return c->torn_pair >= 0 || c->losers || c->unname || c->strays || c->xattr_strays;
}

int cat_upgrade(struct catalog *c)
{
	if (c->version >= CAT_VERSION)
		return 0;
	c->version = CAT_VERSION;
	int r = cat_rewrite(c, R_SAME);
	if (r)
		c->version = CAT_VERSION_1;
	return r;
}

/* A node for a new record (with room reserved in the name indexes when
 * it gets a name), or NULL for lack of memory. */
static struct cat_node *new_node(struct catalog *c, bool named)
{
	struct cat_node *n = calloc(1, sizeof *n);
	if (n && (!(n->name = strndup("", 0)) || (named && reserve_all(c)))) {
		node_free(n);
		return NULL;
	}
	return n;
}

int cat_create(struct catalog *c, const struct cat_rec *r, struct cat_node **out)
{
	struct cat_node *dir = cat_get(c, r->parent), *n;
	int e;
	if (!dir || dir->r.kind != CAT_DIR)
		return -ENOTDIR;
	if ((e = room(c, r)))
		return e;
	if (r->kind > CAT_TOMB && c->version < CAT_VERSION)
		return -EPROTO;   /* the caller upgrades first (cat_upgrade) */
	if (r->kind == CAT_LINK || r->kind == CAT_TOMB || r->parent == 0)
		return -EINVAL;
	if (!(n = new_node(c, true)))
		return -ENOMEM;
	char *name = strndup(r->name, r->name_len);
	if (!name) {
		node_free(n);
		return -ENOMEM;
	}
	node_set(n, r, name);
	n->r.ino = c->next_ino;
	if (r->kind == CAT_SYMLINK && r->alloc.len == 0) {
		if (!r->target || r->size > CAT_INLINE_TARGET_MAX ||
		    !(n->tbuf = malloc(r->size + 1))) {
			node_free(n);
			return r->target ? -ENOMEM : -EINVAL;
		}
		memcpy(n->tbuf, r->target, r->size);
		n->tbuf[r->size] = '\0';
	}
	if ((e = put_first(c, n))) {
		node_free(n);
		return e;
	}
	c->next_ino++;
	tab_insert(c, T_INO, n);
	count_kind(c, n, 1);
	link_child(c, dir, n);
	*out = n;
	return 0;
}

int cat_store(struct catalog *c, struct cat_node *n, const struct cat_rec *r)
{
	struct cat_rec nr = *r;
	struct cat_node *dir = NULL;
	bool renamed = name_differs(n, &nr);
	bool moved = nr.parent != n->r.parent || renamed;
	char *name = NULL;
	int e;
	if (cat_detached(n))
		return -ESTALE;   /* detached: its pair may belong to another inode now */
	nr.ino = n->r.ino;
	nr.kind = n->r.kind;
	nr.target = n->tbuf;   /* a symlink's target never changes */
	if (n->r.kind != CAT_LINK && n->r.parent == 0 && moved)
		return -EINVAL;            /* a nameless inode gets no name back */
	if (moved) {
		dir = cat_get(c, nr.parent);
		if (!dir || dir->r.kind != CAT_DIR)
			return -ENOTDIR;
		if ((e = reserve_all(c)))
			return e;
	}
	/* the new name's buffer before the write: nothing may fail after it */
	if (renamed && !(name = strndup(nr.name, nr.name_len)))
		return -ENOMEM;
	if ((e = put_rec(c, n, &nr))) {
		free(name);
		return e;
	}
	if (moved) {
		unlink_child(c, cat_get(c, n->r.parent), n);
		node_set(n, &nr, name);
		link_child(c, dir, n);
	} else {
		node_set(n, &nr, name);
	}
	return 0;
}

/* Durably tombstone n (an inode without links, or a link) and take it out
 * of every index and count; its pair is free for reuse from here on. */
static int tombstone(struct catalog *c, struct cat_node *n)
{
	struct cat_node *dir = n->r.parent ? cat_get(c, n->r.parent) : NULL;
	int e;
	if (cat_detached(n) || (n->r.ino == 1 && n->r.kind != CAT_LINK) ||
	    (n->r.kind == CAT_DIR && n->first) || n->nlinks)
		return -EBUSY;
	if ((e = drop_rec(c, n->pair, n->r.ino)))
		return e;
	if (dir)
		unlink_child(c, dir, n);
	if (n->r.kind == CAT_LINK)
		detach_link(n);
	else
		tab_remove(c, T_INO, n);
	count_kind(c, n, -1);
	return 0;
}

/* Give space back when three quarters of the catalog are unused; not on
 * an allocator that cannot reuse the old allocation (Linear).  Failure
 * only costs space. */
static void maybe_shrink(struct catalog *c)
{
	uint64_t used = c->n_pairs - c->n_free;
	if (c->a && bs_alloc_can(c->a, BS_CAP_REUSES_HOLES) &&
	    c->n_pairs > (c->compact ? CAT_MIN_UNITS : CAT_MIN_PAIRS) && used * 4 < c->n_pairs)
		cat_rewrite(c, R_SHRINK);
}

/* After inode n's tombstone: its attribute record's.  On success the blob
 * is no record's any more and waits in c->xattr_freed for the caller
 * (cat_take_freed_xattr); on failure the record stays on disk naming it,
 * so the blob is kept (an xattr stray: mount removes both). */
static void drop_xattr(struct catalog *c, struct cat_node *n)
{
	struct cat_node *x = n->xattr;
	if (!x)
		return;
	n->xattr = NULL;
	count_kind(c, x, -1);
	if (drop_rec(c, x->pair, x->r.ino)) {
		x->lnext = c->xattr_strays;
		c->xattr_strays = x;
		return;
	}
	c->xattr_freed = x->r.alloc;
	node_free(x);
}

/* cat_detach: n's attribute record goes from the disk and the counts like
 * drop_xattr's, but the attributes stay with n in memory (the blob still
 * allocated, named by no record: a crash leaves it to mount's reclaim), so
 * a file removed while open keeps them until its holder frees it. */
static void detach_xattr(struct catalog *c, struct cat_node *n)
{
	struct cat_node *x = n->xattr;
	if (!x)
		return;
	count_kind(c, x, -1);
	if (drop_rec(c, x->pair, x->r.ino)) {
		n->xattr = NULL;
		x->lnext = c->xattr_strays;
		c->xattr_strays = x;
		return;
	}
	x->pair = CAT_PAIR_NONE;
}

/* A detached node's attributes live in memory only: no record to write. */
static int xattr_set_detached(struct catalog *c, struct cat_node *n, struct bs_slice blob,
			      uint64_t len, uint32_t crc, struct bs_slice *old)
{
	struct cat_node *x = n->xattr;
	if (blob.len == 0) {
		if (x) {
			*old = x->r.alloc;
			n->xattr = NULL;
			node_free(x);
		}
		return 0;
	}
	if (len == 0 || len > blob.len)
		return -EINVAL;
	if (x) {
		*old = x->r.alloc;
	} else {
		if (!(x = new_node(c, false)))
			return -ENOMEM;
		x->r.kind = CAT_XATTR;
		x->r.ino = n->r.ino;
		x->pair = CAT_PAIR_NONE;
		x->inode = n;
		n->xattr = x;
	}
	x->r.alloc = blob;
	x->r.size = len;
	x->r.rdev = crc;
	return 0;
}

struct bs_slice cat_take_freed_xattr(struct catalog *c)
{
	struct bs_slice s = c->xattr_freed;
	c->xattr_freed = (struct bs_slice){ 0, 0 };
	return s;
}

/* Durably remove record n (an inode without links, or a link) with its
 * attributes, free it, give room back. */
static int remove_record(struct catalog *c, struct cat_node *n)
{
	int e = tombstone(c, n);
	if (e)
		return e;
	drop_xattr(c, n);
	node_free(n);
	maybe_shrink(c);
	return 0;
}

int cat_remove(struct catalog *c, struct cat_node *n)
{
	return n->r.kind == CAT_LINK ? -EINVAL : remove_record(c, n);
}

int cat_xattr_set(struct catalog *c, struct cat_node *n, struct bs_slice blob, uint64_t len,
		  uint32_t crc, struct bs_slice *old)
{
	struct cat_node *x = n->xattr;
	int e;
	*old = (struct bs_slice){ 0, 0 };
	if (n->r.kind == CAT_LINK)
		return -EINVAL;
	if (cat_detached(n))
		return xattr_set_detached(c, n, blob, len, crc, old);
	if (blob.len == 0) {
		if (!x)
			return 0;
		if ((e = drop_rec(c, x->pair, x->r.ino)))
			return e;
		n->xattr = NULL;
		count_kind(c, x, -1);
		*old = x->r.alloc;
		node_free(x);
		return 0;
	}
	if (c->version < CAT_VERSION)
		return -EPROTO;
	if (len == 0 || len > blob.len)
		return -EINVAL;
	struct cat_rec r = { .kind = CAT_XATTR, .ino = n->r.ino, .alloc = blob, .size = len,
			     .rdev = crc };
	if (x) {
		if ((e = put_rec(c, x, &r)))
			return e;
		*old = x->r.alloc;
		count_kind(c, x, -1);
		node_set(x, &r, NULL);
		count_kind(c, x, 1);
		return 0;
	}
	if ((e = room(c, &r)))
		return e;
	if (!(x = new_node(c, false)))
		return -ENOMEM;
	node_set(x, &r, NULL);
	if ((e = put_first(c, x))) {
		node_free(x);
		return e;
	}
	x->inode = n;
	n->xattr = x;
	count_kind(c, x, 1);
	return 0;
}

int cat_link(struct catalog *c, struct cat_node *n, uint64_t parent, const char *name,
	     size_t len, struct cat_node **out)
{
	struct cat_node *dir = cat_get(c, parent), *l;
	int e;
	if (n->r.kind == CAT_DIR || n->r.kind == CAT_LINK)
		return -EPERM;
	if (cat_detached(n) || cat_nlink(n) == 0)
		return -ENOENT;
	if (cat_nlink(n) >= CAT_NLINK_MAX)
		return -EMLINK;
	if (!dir || dir->r.kind != CAT_DIR)
		return -ENOTDIR;
	if ((e = cat_name_ok(name, len)))
		return e;
	if (c->version < CAT_VERSION)
		return -EPROTO;
	if (!(l = new_node(c, true)))
		return -ENOMEM;
	l->r.kind = CAT_LINK;
	l->r.ino = n->r.ino;
	l->r.parent = parent;
	l->r.name_len = (uint16_t)len;
	char *nm = strndup(name, len);
	if (!nm) {
		node_free(l);
		return -ENOMEM;
	}
	free(l->name);
	l->name = nm;
	struct cat_rec lr;
	node_rec(l, &lr);
	if ((e = room(c, &lr))) {
		node_free(l);
		return e;
	}
	if ((e = put_first(c, l))) {
		node_free(l);
		return e;
	}
	attach_link(n, l);
	count_kind(c, l, 1);
	link_child(c, dir, l);
	*out = l;
	return 0;
}

int cat_unlink_name(struct catalog *c, struct cat_node *l)
{
	return l->r.kind != CAT_LINK ? -EINVAL : remove_record(c, l);
}

int cat_unname(struct catalog *c, struct cat_node *n)
{
	struct cat_node *dir = cat_get(c, n->r.parent);
	if (n->r.kind == CAT_LINK || n->r.kind == CAT_DIR || !n->nlinks || !n->r.parent ||
	    cat_detached(n))
		return -EINVAL;
	struct cat_rec nr;
	node_rec(n, &nr);
	nr.parent = 0;
	nr.name_len = 0;
	memset(nr.name, 0, sizeof nr.name);
	char *none = strndup("", 0);
	if (!none)
		return -ENOMEM;
	/* an inline target must still fit: it moves to where the name was */
	int e = put_rec(c, n, &nr);
	if (e) {
		free(none);
		return e;
	}
	if (dir)
		unlink_child(c, dir, n);
	node_set(n, &nr, none);
	return 0;
}

/* The pair may be handed to a new inode at once: pair becomes
 * CAT_PAIR_NONE so that nothing can write through it (every write refuses
 * a detached node before it looks). */
int cat_detach(struct catalog *c, struct cat_node *n)
{
	if (n->r.kind != CAT_FILE)
		return -EISDIR;
	int e = tombstone(c, n);
	if (e)
		return e;
	detach_xattr(c, n);   /* off the disk; still readable while it is open */
	n->pair = CAT_PAIR_NONE;
	n->prev = n->next = NULL;
	maybe_shrink(c);    /* rewrites walk by_ino: the detached node is not written */
	return 0;
}

void cat_node_free(struct cat_node *n)
{
	if (n && cat_detached(n))
		node_free(n->xattr);   /* detach kept them with it */
	node_free(n);
}

/* ---- accessors (catalog.h) ------------------------------------------------- */

const struct cat_attr *cat_attr_of(const struct cat_node *n)
{
	return &n->r;
}

const char *cat_name_of(const struct cat_node *n)
{
	return n->name;
}

const char *cat_target_of(const struct cat_node *n)
{
	return n->tbuf;
}

void cat_rec_get(const struct cat_node *n, struct cat_rec *out)
{
	node_rec(n, out);
}

struct cat_node *cat_inode_of(struct cat_node *n)
{
	return n->r.kind == CAT_LINK ? n->inode : n;
}

bool cat_detached(const struct cat_node *n)
{
	return n->pair == CAT_PAIR_NONE;
}

uint32_t cat_nlink(const struct cat_node *n)
{
	return cat_detached(n) ? 0 : (n->r.parent ? 1u : 0u) + n->nlinks;
}

uint32_t cat_link_count(const struct cat_node *n)
{
	return n->nlinks;
}

uint64_t cat_nsubdirs(const struct cat_node *d)
{
	return d->nsubdirs;
}

bool cat_has_children(const struct cat_node *d)
{
	return d->first != NULL;
}

uint64_t cat_cookie(const struct cat_node *n)
{
	return n->cookie;
}

struct cat_node *cat_next_sibling(const struct cat_node *n)
{
	return n->next;
}

const struct cat_attr *cat_xattr_of(const struct cat_node *n)
{
	return n->xattr ? &n->xattr->r : NULL;
}

struct bs_slice cat_xattr_blob(const struct cat_node *n)
{
	return n->xattr ? n->xattr->r.alloc : (struct bs_slice){ 0, 0 };
}

void cat_set_times(struct cat_node *n, int64_t mtime, int64_t ctime)
{
	if (mtime >= 0)
		n->r.mtime = mtime;
	if (ctime >= 0)
		n->r.ctime = ctime;
}

void cat_set_size(struct cat_node *n, uint64_t size)
{
	n->r.size = size;
}

void cat_set_alloc(struct cat_node *n, struct bs_slice alloc)
{
	n->r.alloc = alloc;
}

int cat_set_detached(struct cat_node *n, const struct cat_rec *r)
{
	if (!cat_detached(n))
		return -ESTALE;
	uint64_t ino = n->r.ino;
	uint8_t kind = n->r.kind;
	node_set(n, r, NULL);   /* a detached node keeps the name it had */
	n->r.ino = ino;
	n->r.kind = kind;
	return 0;
}

void cat_info(const struct catalog *c, struct cat_info *out)
{
	*out = (struct cat_info){
		.version = c->version, .compact = c->compact, .root = c->root,
		.files = c->n_files, .dirs = c->n_dirs, .links = c->n_links,
		.symlinks = c->n_symlinks, .special = c->n_special,
		.xattr_bytes = c->xattr_bytes, .free_places = c->n_free,
		.rewrites = c->rewrites, .torn = c->torn_pair >= 0, .losers = c->losers != NULL,
	};
}

struct bs_slice cat_root(const struct catalog *c)
{
	return c->root;
}

struct fb_ctx {
	int64_t pair;
	const struct cat_node *found;
};

static int fb_one(void *ctx, struct cat_node *n)
{
	struct fb_ctx *f = ctx;
	if ((int64_t)n->pair == f->pair) {
		f->found = n;
		return 1;
	}
	return 0;
}

bool cat_fallback_note(struct catalog *c, char *buf, size_t len)
{
	struct fb_ctx f = { c->torn_pair, NULL };
	if (c->torn_pair < 0)
		return false;
	cat_foreach(c, fb_one, &f);
	if (!f.found && c->losers && (int64_t)c->losers->pair == c->torn_pair)
		f.found = c->losers;
	if (f.found)
		snprintf(buf, len,
			 "catalog record pair %lld: slot %c fails its checksum; inode %llu "
			 "(\"%.64s\") uses its other version (seq %llu)",
			 (long long)c->torn_pair, 'A' + c->torn_slot,
			 (unsigned long long)f.found->r.ino, f.found->name,
			 (unsigned long long)f.found->r.seq);
	else
		snprintf(buf, len,
			 "catalog record pair %lld: slot %c fails its checksum; the pair holds "
			 "no live inode (its other version is a removal or empty)",
			 (long long)c->torn_pair, 'A' + c->torn_slot);
	return true;
}

/* ---- layouts ---------------------------------------------------------------- */

int cat_fit_layout(struct catalog *c)
{
	return c->compact != bstack_journaled(c->bs) ? cat_rewrite(c, R_SAME) : 0;
}

uint64_t cat_records(const struct catalog *c)
{
	return c->compact ? c->n_recs : c->n_pairs - c->n_free;
}

uint64_t cat_record_bytes(const struct catalog *c)
{
	return c->compact ? CAT_UNIT_SIZE : CAT_PAIR_SIZE;
}

int cat_scan(struct bstack *bs, struct bs_slice root,
	     int (*fn)(void *ctx, uint64_t off, size_t size, const struct cat_rec *r),
	     void *ctx)
{
	uint8_t hdr[CAT_HDR_SIZE], b[CAT_SLOT_SIZE];
	uint64_t n;
	uint32_t version, slot;
	struct cat_rec rec;
	int r;
	if (root.len < CAT_HDR_SIZE || (r = bstack_get(bs, root.off, hdr, sizeof hdr)))
		return root.len < CAT_HDR_SIZE ? -EBADMSG : r;
	if ((r = cat_hdr_decode(hdr, &n, &version, &slot)))
		return -EBADMSG;
	bool compact = slot == CAT_UNIT_SIZE;
	if (cat_bytes(compact, n) > root.len)
		return -EBADMSG;
	uint64_t end = compact ? n : 2 * n;   /* units, or slots */
	for (uint64_t i = 0; i < end;) {
		uint64_t off = root.off + CAT_HDR_SIZE + i * slot;
		size_t size = slot;
		if ((r = bstack_get(bs, off, b, slot)))
			return r;
		if (compact && !all_zero(b, CAT_UNIT_SIZE)) {
			unsigned k = units_claimed(b);
			if (k > 3 || i + k > n)
				return -EBADMSG;
			size = k * CAT_UNIT_SIZE;
			if ((r = bstack_get(bs, off, b, size)))
				return r;
		}
		int st = cat_rec_decode_n(b, size, &rec);
		if (st == -EBADMSG && compact)
			return -EBADMSG;
		if (!st && (r = fn(ctx, off, size, &rec)))
			return r;
		i += size / slot;
	}
	return 0;
}
