/*
 * catalog.h — the directory of a bstackfs volume (docs/design.md §4): inode
 * records stored in one allocation of the image's own allocator, reachable
 * from a 16-byte root reference at payload offset 0, plus the in-memory
 * index (ino -> node, (parent, name) -> node, per-directory children).
 *
 * The on-disk layout and the crash rules are described at the top of
 * catalog.c.  Every function returns 0 or a negative errno.  The catalog
 * is not thread safe: the volume serialises calls (its rwlock).
 */
#ifndef BSTACKFS_CATALOG_H
#define BSTACKFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "journal.h"

#define CAT_MAGIC "BSFSCAT1"
#define CAT_VERSION 1
#define CAT_HDR_SIZE 64
#define CAT_SLOT_SIZE 384
#define CAT_PAIR_SIZE (2 * CAT_SLOT_SIZE)
#define CAT_ROOT_REF_SIZE 16      /* (offset u64 LE, length u64 LE) at payload 0 */
/* Root reference while a catalog is first being written: (UINT64_MAX, 0).
 * Mount sees an interrupted format and formats again (catalog.c). */
#define CAT_ROOT_FORMATTING UINT64_MAX
#define CAT_MIN_PAIRS 16
#define CAT_NAME_MAX 255

enum cat_kind {
	CAT_EMPTY = 0,   /* never written (all-zero slot) */
	CAT_FILE = 1,
	CAT_DIR = 2,
	CAT_TOMB = 3,    /* the pair's inode was removed */
};

/* One inode, as stored (minus the checksum) and as kept in memory. */
struct cat_rec {
	uint8_t kind;
	uint16_t name_len;
	uint64_t seq;             /* catalog-wide write sequence: newer wins */
	uint64_t ino, parent;
	struct bs_slice alloc;    /* the file's allocation: len is its capacity */
	uint64_t size;
	uint32_t mode, uid, gid;
	int64_t atime, mtime, ctime;
	char name[CAT_NAME_MAX + 1];   /* NUL-terminated copy */
};

/* A live inode in memory. */
struct cat_node {
	struct cat_rec r;
	uint64_t pair;            /* which record pair holds it */
	uint64_t cookie;          /* readdir position within its parent */
	uint64_t nchildren, nsubdirs;
	/* volume state: in-memory record differs from the durable one /
	 * file data written without a sync */
	bool rec_dirty, data_dirty;
	/* volume state: the journal transaction that last changed r.alloc
	 * (file data may go in place only once it is durable) */
	uint64_t alloc_seq;
	/* volume state: open descriptors (vol_open_file/vol_release); an
	 * orphan was removed from the disk while open (cat_orphan) */
	uint64_t opens;
	bool orphan;
	struct cat_node *h_ino, *h_name, *h_cookie;   /* hash chains */
	struct cat_node *first, *last;                /* children, by cookie */
	struct cat_node *prev, *next;                 /* siblings */
	uint64_t next_cookie;
};

struct cat_table {
	struct cat_node **b;
	uint64_t nb;              /* power of two */
	uint64_t n;
};

struct catalog {
	struct bstack *bs;
	struct bs_alloc *a;       /* NULL until attached (mount verifies first) */
	struct bs_slice root;     /* the catalog's own allocation */
	uint64_t n_pairs;
	uint8_t *pair_slot;       /* per pair: the slot holding its newest copy */
	uint64_t *free_pairs;     /* stack of unused pair indices */
	uint64_t n_free;
	uint64_t seq;             /* last sequence number used */
	uint64_t next_ino;
	struct cat_table by_ino, by_name, by_cookie;
	uint64_t n_files, n_dirs;
	/* found by cat_load, fixed by cat_repair */
	int64_t torn_pair;        /* pair with a torn slot, -1 if none */
	uint8_t torn_slot;
	struct cat_node *losers;  /* rename-over crash leftovers (chained by next) */
	uint64_t rewrites;        /* CoW rewrites of the catalog */
	/* removed while open (cat_orphan): in no index and on no disk record,
	 * chained by prev/next; found by cat_orphan_get */
	struct cat_node *orphans;
	uint64_t n_orphans;
};

/* crc32c() comes from journal.h. */

/* Validate a name: 0, -EINVAL (empty, '/', ".", ".."), -ENAMETOOLONG. */
int cat_name_ok(const char *name, size_t len);

/* Encode r into a CAT_SLOT_SIZE buffer (checksum included) / decode and
 * verify one: -EBADMSG for a bad checksum or impossible field, -ENODATA for
 * an all-zero (never written) slot. */
void cat_rec_encode(const struct cat_rec *r, uint8_t *slot);
int cat_rec_decode(const uint8_t *slot, struct cat_rec *r);
void cat_hdr_encode(uint64_t n_pairs, uint8_t *hdr);
int cat_hdr_decode(const uint8_t *hdr, uint64_t *n_pairs);

/* Root reference helpers (16 bytes at payload 0). */
void cat_root_encode(struct bs_slice root, uint8_t ref[CAT_ROOT_REF_SIZE]);
struct bs_slice cat_root_decode(const uint8_t ref[CAT_ROOT_REF_SIZE]);
static inline bool cat_root_formatting(struct bs_slice root)
{
	return root.off == CAT_ROOT_FORMATTING && root.len == 0;
}

/* A new, empty catalog with the root directory, written into a fresh
 * allocation.  The root reference is first set to the "formatting" mark,
 * then, last and durably, to the catalog. */
int cat_format(struct bs_alloc *a, uint32_t uid, uint32_t gid, int64_t now,
	       struct catalog **out);

/*
 * Read and verify the catalog the root reference names, without writing
 * anything and without the allocator (structure only: header and record
 * checksums, unique inode numbers, parents that exist and are
 * directories, a tree rooted at inode 1 without cycles, valid names,
 * sizes within capacities).  err gets a one-line reason on failure
 * (-EUCLEAN).  Call cat_attach() next.
 */
int cat_load(struct bstack *bs, struct bs_slice root, struct catalog **out,
	     char *err, size_t errlen);
/* Check every allocation against the allocator (inside the arena, no two
 * extents overlapping, the catalog's own included) and attach it. */
int cat_attach(struct catalog *c, struct bs_alloc *a, char *err, size_t errlen);
/* The same check on an attached catalog (fsck, tests). */
int cat_check_extents(struct catalog *c, char *err, size_t errlen);
/* Every live slice (files with a non-empty allocation, rename-over losers
 * still on disk and the catalog itself), sorted by offset; malloc'd. */
int cat_live_slices(struct catalog *c, struct bs_slice **out, size_t *n);
/* The writes a crash may call for, after verification: zero a torn slot,
 * tombstone rename-over losers and free their allocations. */
int cat_repair(struct catalog *c);
void cat_free(struct catalog *c);

struct cat_node *cat_get(struct catalog *c, uint64_t ino);
struct cat_node *cat_lookup(struct catalog *c, uint64_t parent, const char *name,
			    size_t len);
/* First child after readdir position pos (0 = from the start). */
struct cat_node *cat_child_after(struct catalog *c, struct cat_node *dir, uint64_t pos);

/* Durably add a new inode: r's kind, parent, name and attributes are used;
 * ino and seq are assigned.  *out gets the node. */
int cat_create(struct catalog *c, const struct cat_rec *r, struct cat_node **out);
/* Durably replace n's record by r (same ino); re-indexes on a new parent
 * or name.  n->r becomes r on success (seq assigned); untouched on error. */
int cat_store(struct catalog *c, struct cat_node *n, const struct cat_rec *r);
/* Durably remove n (a tombstone), then drop it from memory.  The caller
 * frees n's allocation afterwards (unlink order, docs/design.md §4). */
int cat_remove(struct catalog *c, struct cat_node *n);
/* Like cat_remove, but n (a file) is kept in memory as an orphan: gone
 * from every name index, readdir, by-inode index and count, its pair free
 * for reuse (n->pair becomes UINT64_MAX), found only by cat_orphan_get.
 * No record is ever written for it again (cat_store refuses it); its
 * allocation is referenced by no durable record, so the caller frees it
 * later (cat_orphan_free) or a crash leaves it to mount's reclaim. */
int cat_orphan(struct catalog *c, struct cat_node *n);
struct cat_node *cat_orphan_get(struct catalog *c, uint64_t ino);
/* Forget orphan n (the caller has freed its allocation). */
void cat_orphan_free(struct catalog *c, struct cat_node *n);

/* Drop n from memory without writing anything and without freeing its
 * pair: after a failed write the disk may still hold n, and the next mount
 * resolves it (e.g. a rename-over victim whose tombstone failed). */
void cat_forget(struct catalog *c, struct cat_node *n);

/* Visit every node (any order); stop on a non-zero return. */
int cat_foreach(struct catalog *c, int (*fn)(void *ctx, struct cat_node *n), void *ctx);

#endif
