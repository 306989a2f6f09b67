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
/* Catalog format versions (catalog.c): 1 holds files and directories; 2
 * adds symlinks, special files and hard links.  A catalog is written as
 * version 1 until the first operation that needs version 2 upgrades it
 * (cat_upgrade), so an image that never uses them keeps the bytes older
 * bstackfs releases read. */
#define CAT_VERSION_1 1
#define CAT_VERSION 2
#define CAT_HDR_SIZE 64
/* Two layouts of the records (catalog.c), told apart by the header's slot
 * size.  Paired: every record is a pair of two 384-byte slots, each write
 * going to the slot that does not hold the newest copy (crash-safe
 * without a journal).  Compact: every record is one copy in 1 to 3
 * consecutive 128-byte units, as many as its name (and inline target)
 * need; it is written only inside journal transactions, which make each
 * change atomic.  A journaled volume uses compact, a volume without the
 * journal paired; a catalog is converted by a copy-on-write rewrite. */
#define CAT_SLOT_SIZE 384
#define CAT_PAIR_SIZE (2 * CAT_SLOT_SIZE)
#define CAT_UNIT_SIZE 128
#define CAT_MIN_UNITS 64
#define CAT_ROOT_REF_SIZE 16      /* (offset u64 LE, length u64 LE) at payload 0 */
/* Root reference while a catalog is first being written: (UINT64_MAX, 0).
 * Mount sees an interrupted format and formats again (catalog.c). */
#define CAT_ROOT_FORMATTING UINT64_MAX
#define CAT_MIN_PAIRS 16
#define CAT_NAME_MAX 255
#define CAT_NAME_OFF 96           /* where a slot's name starts */
/* A symlink target is kept inside its record when name and target fit in
 * the slot's bytes past CAT_NAME_OFF; a longer one is the symlink's
 * allocation (as a file's bytes). */
#define CAT_INLINE_MAX (CAT_SLOT_SIZE - CAT_NAME_OFF)
/* Targets this short are always inline: they fit beside any name, so a
 * rename never has to move one. */
#define CAT_INLINE_TARGET_MAX (CAT_INLINE_MAX - CAT_NAME_MAX)
#define CAT_SYMLINK_MAX 4095      /* PATH_MAX - 1, as Linux */
#define CAT_NLINK_MAX 65000       /* names of one inode, as ext4 (EMLINK) */

enum cat_kind {
	CAT_EMPTY = 0,   /* never written (all-zero slot) */
	CAT_FILE = 1,
	CAT_DIR = 2,
	CAT_TOMB = 3,    /* the pair's inode was removed */
	/* version 2 */
	CAT_SYMLINK = 4, /* target inline (alloc (0, 0)) or in its allocation */
	CAT_SPECIAL = 5, /* FIFO, socket, character or block device: mode, rdev */
	CAT_LINK = 6,    /* one more name (parent, name) of inode `ino` */
	CAT_XATTR = 7,   /* inode `ino`'s extended attributes: alloc holds the
			  * blob (core/xattr.h), size its length, rdev its CRC32C */
};

/* Inodes with bytes in an allocation. */
static inline bool cat_kind_has_alloc(uint8_t kind)
{
	return kind == CAT_FILE || kind == CAT_SYMLINK;
}

/* A record's fixed fields: the same members, in the same order, open
 * struct cat_attr (what a node keeps in memory, its name apart) and
 * struct cat_rec (a whole record, as stored minus the checksum). */
#define CAT_ATTR_FIELDS                                                           \
	uint8_t kind;                                                             \
	uint16_t name_len;                                                        \
	uint64_t seq;             /* catalog-wide write sequence: newer wins */   \
	uint64_t ino, parent;                                                     \
	struct bs_slice alloc;    /* the file's allocation: len is its capacity */\
	uint64_t size;                                                            \
	uint32_t mode, uid, gid;                                                  \
	uint32_t rdev;            /* CAT_SPECIAL devices: Linux's encoded dev_t */\
	int64_t atime, mtime, ctime;

struct cat_attr {
	CAT_ATTR_FIELDS
};

/* One inode, as stored (minus the checksum). */
struct cat_rec {
	CAT_ATTR_FIELDS
	char name[CAT_NAME_MAX + 1];   /* NUL-terminated copy */
	/* CAT_SYMLINK with alloc (0, 0): the target's `size` bytes (not
	 * NUL-terminated).  A decoded record points into its slot; one read
	 * from a node (cat_rec_get) at the node's own copy. */
	const char *target;
};

/*
 * A live inode, or a CAT_LINK name, in memory: opaque outside catalog.c
 * (its structure is catalog_impl.h, for catalog.c and its white-box
 * test).  The volume reads a node's record through cat_rec_of and changes
 * it in memory only through the cat_set_* calls below, which the next
 * cat_store makes durable.
 *
 * Names: an inode's record carries its first name (parent, name); every
 * further name is a CAT_LINK record of its own.  An inode whose first name
 * went while others remain is "nameless" (parent 0, no name) and is named
 * only by its links.  So nlink = (parent ? 1 : 0) + links, and creating a
 * link, removing one or renaming one writes exactly one record.
 */
struct cat_node;
struct catalog;

/* A node's pair once cat_detach has taken it out of the catalog. */
#define CAT_PAIR_NONE UINT64_MAX

/* n's fixed fields, its name and its whole record as they are in memory
 * (ahead of the disk until cat_store).  A node keeps its name apart, in an
 * allocation of its length, so the attributes are what it costs beside
 * the indexes. */
const struct cat_attr *cat_attr_of(const struct cat_node *n);
const char *cat_name_of(const struct cat_node *n);
/* A symlink's target kept inside its record (size bytes), else NULL. */
const char *cat_target_of(const struct cat_node *n);
void cat_rec_get(const struct cat_node *n, struct cat_rec *out);
/* The inode a name stands for (itself unless a CAT_LINK). */
struct cat_node *cat_inode_of(struct cat_node *n);
/* Taken out of the catalog by cat_detach (removed while open). */
bool cat_detached(const struct cat_node *n);
/* Names of inode n (0 once detached). */
uint32_t cat_nlink(const struct cat_node *n);
/* Names of n beyond the first: its CAT_LINK records. */
uint32_t cat_link_count(const struct cat_node *n);
/* Directory d's subdirectories; whether it has any entry at all. */
uint64_t cat_nsubdirs(const struct cat_node *d);
bool cat_has_children(const struct cat_node *d);
/* The readdir position of n within its parent, and the next child of n's
 * parent after n (NULL at the end). */
uint64_t cat_cookie(const struct cat_node *n);
struct cat_node *cat_next_sibling(const struct cat_node *n);
/* Inode n's CAT_XATTR record (alloc: the blob, size: its length, rdev:
 * its CRC32C), or NULL when it has no attributes. */
const struct cat_attr *cat_xattr_of(const struct cat_node *n);
/* In-memory changes, made durable by the next cat_store of n's record. */
void cat_set_times(struct cat_node *n, int64_t mtime, int64_t ctime); /* < 0: keep */
void cat_set_size(struct cat_node *n, uint64_t size);
void cat_set_alloc(struct cat_node *n, struct bs_slice alloc);
/* A detached node has no record: its attributes live in memory only, and
 * this replaces them (ino, kind and target kept).  -ESTALE otherwise. */
int cat_set_detached(struct cat_node *n, const struct cat_rec *r);

/* What the catalog holds, for the figures. */
struct cat_info {
	uint32_t version;         /* CAT_VERSION_1 or CAT_VERSION */
	bool compact;             /* the compact layout (else paired) */
	struct bs_slice root;     /* the catalog's own allocation */
	uint64_t files, dirs;     /* files: every inode but directories */
	uint64_t links;           /* CAT_LINK names */
	uint64_t symlinks, special;
	uint64_t xattr_bytes;     /* attribute blobs' bytes */
	uint64_t free_places;     /* unused pairs (paired) or units (compact) */
	uint64_t rewrites;        /* copy-on-write rewrites since load */
	/* found by cat_load: a torn slot, rename-over leftovers */
	bool torn, losers;
};
void cat_info(const struct catalog *c, struct cat_info *out);
/* The catalog's own allocation. */
struct bs_slice cat_root(const struct catalog *c);
/* After cat_load: a line saying which inode fell back to its other slot's
 * version when a slot failed its checksum (guarantee 5: reported, not
 * silent); false (buf untouched) when none did. */
bool cat_fallback_note(struct catalog *c, char *buf, size_t len);

/* crc32c() comes from journal.h. */

/* Validate a name: 0, -EINVAL (empty, '/', ".", ".."), -ENAMETOOLONG. */
int cat_name_ok(const char *name, size_t len);

/* Encode r into a CAT_SLOT_SIZE buffer (checksum included) / decode and
 * verify one: -EBADMSG for a bad checksum or impossible field, -ENODATA for
 * an all-zero (never written) slot. */
void cat_rec_encode(const struct cat_rec *r, uint8_t *slot);
int cat_rec_decode(const uint8_t *slot, struct cat_rec *r);
/* The same for a record of `size` bytes (a slot, or a compact record's
 * units: cat_rec_units). */
void cat_rec_encode_n(const struct cat_rec *r, uint8_t *s, size_t size);
int cat_rec_decode_n(const uint8_t *s, size_t size, struct cat_rec *r);
/* Units (CAT_UNIT_SIZE) a compact record of r takes: 1 to 3. */
unsigned cat_rec_units(const struct cat_rec *r);
/* Header: n places (pairs or units), version, slot size (CAT_SLOT_SIZE:
 * paired, CAT_UNIT_SIZE: compact). */
void cat_hdr_encode(uint64_t n_pairs, uint32_t version, uint32_t slot, uint8_t *hdr);
int cat_hdr_decode(const uint8_t *hdr, uint64_t *n_pairs, uint32_t *version,
		   uint32_t *slot);
/* Every stored record of the catalog at root, in place order (tools and
 * tests that look at the raw bytes): fn gets the payload offset and size
 * of each valid slot (paired: both slots of a pair, tombstones too) or
 * compact record, decoded; a non-zero return stops the walk and is
 * returned.  -EBADMSG for a bad header or a compact record that fails its
 * checksum. */
int cat_scan(struct bstack *bs, struct bs_slice root,
	     int (*fn)(void *ctx, uint64_t off, size_t size, const struct cat_rec *r),
	     void *ctx);

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
/* Space the caller holds outside the catalog: the allocations of files
 * detached while open (cat_detach), live until the caller frees them. */
struct cat_held {
	uint64_t ino;
	struct bs_slice alloc;
};
/* The same check on an attached catalog, the held allocations included
 * (fsck, tests). */
int cat_check_extents(struct catalog *c, const struct cat_held *held, size_t n_held,
		      char *err, size_t errlen);
/* Every live slice (files with a non-empty allocation, rename-over losers
 * still on disk, the catalog itself and the held ones), sorted by offset;
 * malloc'd. */
int cat_live_slices(struct catalog *c, const struct cat_held *held, size_t n_held,
		    struct bs_slice **out, size_t *n);
/* The writes a crash may call for, after verification: zero a torn slot,
 * tombstone rename-over losers and free their allocations, make an inode
 * that lost its first name nameless, remove strays. */
int cat_repair(struct catalog *c);
bool cat_needs_repair(const struct catalog *c);
/* Upgrade a version 1 catalog to version 2 (a copy-on-write rewrite);
 * 0 at once when it is version 2 already. */
int cat_upgrade(struct catalog *c);
/* The layout the bstack's journal mode calls for, by one copy-on-write
 * rewrite when the catalog has the other one (mount, before any other
 * write): compact with a journal, paired without (compact records are only
 * safe inside transactions).  Every rewrite and growth also lands in it. */
int cat_fit_layout(struct catalog *c);
/* Records in use (what catalog_records reports); bytes one record with a
 * short name takes (statfs's free inode estimate). */
uint64_t cat_records(const struct catalog *c);
uint64_t cat_record_bytes(const struct catalog *c);
void cat_free(struct catalog *c);

struct cat_node *cat_get(struct catalog *c, uint64_t ino);
struct cat_node *cat_lookup(struct catalog *c, uint64_t parent, const char *name,
			    size_t len);
/* First child after readdir position pos (0 = from the start). */
struct cat_node *cat_child_after(struct catalog *c, struct cat_node *dir, uint64_t pos);

/* Durably add a new inode: r's kind, parent, name and attributes are used;
 * ino and seq are assigned.  *out gets the node. */
int cat_create(struct catalog *c, const struct cat_rec *r, struct cat_node **out);
/* Durably add a CAT_LINK name (parent, name) for inode n (not a directory,
 * not nameless, not detached): -EMLINK past CAT_NLINK_MAX names. */
int cat_link(struct catalog *c, struct cat_node *n, uint64_t parent, const char *name,
	     size_t len, struct cat_node **out);
/* Durably remove name l (a CAT_LINK) and free it.  Its inode stays: the
 * caller removes it when it has no name left (cat_nlink() == 0). */
int cat_unlink_name(struct catalog *c, struct cat_node *l);
/* Durably drop inode n's first name while links remain (n nameless). */
int cat_unname(struct catalog *c, struct cat_node *n);
/* Durably point inode n's attributes at blob (len bytes, its CRC32C), or
 * with blob (0, 0) remove them; *old gets the blob no record names any
 * more (the caller frees it: unlink order).  A detached n's change is made
 * in memory only.  cat_remove and cat_detach
 * remove an inode's attributes with it (their blob: cat_xattr_blob before
 * the call). */
int cat_xattr_set(struct catalog *c, struct cat_node *n, struct bs_slice blob, uint64_t len,
		  uint32_t crc, struct bs_slice *old);
/* The blob of the attributes the last cat_remove / cat_detach removed
 * durably ((0, 0) if none): the caller frees it; taking it clears it. */
struct bs_slice cat_take_freed_xattr(struct catalog *c);
struct bs_slice cat_xattr_blob(const struct cat_node *n);
/* Durably replace n's record by r (same ino); re-indexes on a new parent
 * or name.  n->r becomes r on success (seq assigned); untouched on error. */
int cat_store(struct catalog *c, struct cat_node *n, const struct cat_rec *r);
/* Durably remove n (a tombstone), then drop it from memory.  The caller
 * frees n's allocation afterwards (unlink order, docs/design.md §4). */
int cat_remove(struct catalog *c, struct cat_node *n);
/* Like cat_remove, but n (a file) is handed to the caller instead of
 * freed: gone from every index, readdir and count, its pair free for reuse
 * (n->pair becomes CAT_PAIR_NONE, and every write refuses it), its
 * attribute record removed from the disk while the attributes stay with n
 * in memory (cat_xattr_of, cat_xattr_blob; cat_xattr_set changes them
 * there).  No record is ever written for it again; its allocation and its
 * attribute blob are referenced by no durable record, so the caller frees
 * them later and then the node (cat_node_free), or a crash leaves them to
 * mount's reclaim. */
int cat_detach(struct catalog *c, struct cat_node *n);
void cat_node_free(struct cat_node *n);

/* Drop n from memory without writing anything and without freeing its
 * pair: after a failed write the disk may still hold n, and the next mount
 * resolves it (e.g. a rename-over victim whose tombstone failed). */
void cat_forget(struct catalog *c, struct cat_node *n);

/* Visit every node (any order); stop on a non-zero return. */
int cat_foreach(struct catalog *c, int (*fn)(void *ctx, struct cat_node *n), void *ctx);

#endif
