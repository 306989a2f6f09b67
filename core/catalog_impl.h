/*
 * catalog_impl.h — the catalog's in-memory structure, for catalog.c and its
 * white-box test (tests/test_catalog.c) only: everything else goes through
 * catalog.h's calls.
 */
#ifndef BSTACKFS_CATALOG_IMPL_H
#define BSTACKFS_CATALOG_IMPL_H

#include "catalog.h"

/*
 * A live inode, or a CAT_LINK name, in memory.
 *
 * Names: an inode's record carries its first name (parent, name); every
 * further name is a CAT_LINK record of its own.  An inode whose first name
 * went while others remain is "nameless" (parent 0, no name) and is named
 * only by its links.  So nlink = (parent ? 1 : 0) + nlinks, and creating a
 * link, removing one or renaming one writes exactly one record.
 */
struct cat_node {
	struct cat_attr r;
	char *name;               /* r.name_len bytes and a NUL, owned (never NULL) */
	char *tbuf;               /* inline symlink target, owned */
	uint64_t pair;            /* which record pair holds it */
	uint64_t cookie;          /* readdir position within its parent */
	uint64_t nchildren, nsubdirs;
	struct cat_node *h_ino, *h_name, *h_cookie;   /* hash chains */
	struct cat_node *first, *last;                /* children, by cookie */
	/* siblings; a rename-over loser (catalog.losers) is chained by next */
	struct cat_node *prev, *next;
	uint64_t next_cookie;
	/* hard links: an inode's CAT_LINK names (chained by lnext) and their
	 * number; a CAT_LINK's inode.  A stray inode (cat_load: nameless and
	 * without links) is chained on catalog.strays by lnext too. */
	struct cat_node *links, *lnext, *inode;
	uint32_t nlinks;
	struct cat_node *xattr;   /* an inode's CAT_XATTR record, or NULL */
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
	bool compact;             /* the compact layout (else paired) */
	/* Places for records: pairs (paired) or units (compact).  A node's
	 * `pair` is its pair, or its first unit. */
	uint64_t n_pairs;
	/* per pair: the slot holding its newest copy; per unit (compact): 0
	 * free, 1..3 the first unit of a record that long, CAT_UNIT_TAIL a
	 * record's later unit */
	uint8_t *pair_slot;
	uint64_t *free_pairs;     /* paired: stack of unused pair indices */
	uint64_t n_free;          /* unused pairs, or unused units */
	/* compact: stacks of free runs of 1, 2 and 3 units (first unit of
	 * each); frag: a run was freed since the stacks were last rebuilt
	 * from pair_slot (rebuilding merges neighbours) */
	struct cat_runs {
		uint64_t *v;
		uint64_t n, cap;
	} runs[3];
	bool frag;
	uint64_t n_recs;          /* compact: records in use */
	uint64_t seq;             /* last sequence number used */
	uint64_t next_ino;
	struct cat_table by_ino, by_name, by_cookie;
	uint32_t version;         /* CAT_VERSION_1 or CAT_VERSION */
	uint64_t n_files, n_dirs; /* n_files: every inode but directories */
	uint64_t n_links;         /* CAT_LINK names */
	uint64_t n_symlinks, n_special;
	uint64_t n_nameless;      /* inodes named by links only (at load) */
	uint64_t n_xattr, xattr_bytes;   /* CAT_XATTR records, their blobs' bytes */
	/* CAT_XATTR records of inodes that are gone (a crash between the
	 * inode's tombstone and theirs): removed by cat_repair, chained by
	 * lnext */
	struct cat_node *xattr_strays;
	struct bs_slice xattr_freed;   /* cat_take_freed_xattr */
	/* found by cat_load, fixed by cat_repair */
	int64_t torn_pair;        /* pair with a torn slot, -1 if none */
	uint8_t torn_slot;
	struct cat_node *losers;  /* rename-over crash leftovers (chained by next) */
	/* an inode with links that lost its first name to a rename-over crash:
	 * in memory already nameless, its record still named until repair */
	struct cat_node *unname;
	/* nameless inodes without links (a crash between the last link's
	 * tombstone and the inode's): removed by cat_repair */
	struct cat_node *strays;
	uint64_t rewrites;        /* CoW rewrites of the catalog */
	uint64_t grows_in_place;  /* growths without a move (journal only) */
};

#endif
