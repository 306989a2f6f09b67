/*
 * xattr.h — the extended attributes of one inode, as one blob (docs/design.md
 * §4).  The blob is an allocation of the image's allocator that a catalog
 * record of kind CAT_XATTR names (catalog.h); this module only encodes,
 * searches and edits blobs in memory.  Nothing here does I/O.
 *
 * Layout (little-endian):
 *   0  "BSX1"        4  u32 number of entries
 *   8  entries, each: u16 name length, u32 value length, name, value
 * Names are full ("user.foo"), 1..XA_NAME_MAX bytes without a NUL, unique
 * within a blob.  The record keeps the blob's length and its CRC32C.
 */
#ifndef BSTACKFS_XATTR_H
#define BSTACKFS_XATTR_H

#include <stddef.h>
#include <stdint.h>

#define XA_MAGIC "BSX1"
#define XA_HDR 8
#define XA_ENT_HDR 6
#define XA_NAME_MAX 255            /* XATTR_NAME_MAX */
#define XA_VALUE_MAX 65536         /* XATTR_SIZE_MAX */
/* All of one inode's attributes: the blob always travels in the journal
 * (volume.c, VOL_JOURNAL_DATA_MAX), so it is never half written. */
#define XA_BLOB_MAX (256u << 10)

/* 0 for a well-formed blob of len bytes (len 0: no attributes), -EBADMSG
 * otherwise: bounds of every entry, names valid and unique. */
int xa_check(const uint8_t *blob, size_t len);
/* The value of `name`: *val points into the blob; -ENODATA when absent. */
int xa_get(const uint8_t *blob, size_t len, const char *name, const uint8_t **val,
	   size_t *vlen);
/* The names, each NUL-terminated, into buf (size 0: only the length);
 * returns the length or -ERANGE. */
long xa_list(const uint8_t *blob, size_t len, char *buf, size_t size);
/* A new blob (malloc'd, *out_len its length; NULL and 0 when nothing is
 * left) with `name` set to val (val NULL: removed).  -EEXIST / -ENODATA
 * for XATTR_CREATE / XATTR_REPLACE (flags as setxattr(2)), -ENODATA for
 * the removal of a missing name, -ENOSPC past XA_BLOB_MAX. */
int xa_edit(const uint8_t *blob, size_t len, const char *name, const void *val,
	    size_t vlen, int flags, uint8_t **out, size_t *out_len);

#endif
