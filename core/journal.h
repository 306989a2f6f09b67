/*
 * journal.h — the on-disk format of the redo journal (docs/design.md §5)
 * and CRC32C.  The journal is a file beside the image (IMAGE-journal):
 *
 *   journal byte 0      header, 64 bytes used of JRN_HDR_SIZE:
 *                         magic "BSTKJRNL", u32 version (1), u32 0,
 *                         u64 salt, u64 first_seq, ..., u32 crc32c of
 *                         bytes 0..60 at byte 60
 *   journal byte 4096   records, back to back, each a multiple of 8 bytes:
 *                         u32 'BSJR', u32 crc32c(salt-seeded) of bytes 8..total,
 *                         u64 salt, u64 seq, u64 total, u64 new_len, u64 min_len,
 *                         then entries: u64 off, u32 n, u32 flags, then either
 *                         n bytes padded to 8 (flags 0) or, for a zero range
 *                         (flags JRN_ENT_ZERO, n 0), its u64 length
 *
 * A record is the redo image of one transaction of the file layer.  A
 * record that shrank the payload (min_len < the length it started from)
 * leaves min_len bytes of the state before it, grown (zero filled) to
 * new_len; one that did not (min_len JRN_NO_SHRINK) only grows the payload
 * to new_len where it is shorter and never truncates.  Then each entry's
 * bytes are written at its payload offset (zero ranges first, then byte entries: a record's byte entries
 * hold the final bytes of the pages they cover).  Applying a record is idempotent, and applying records r..n to
 * any state reached while applying them yields the state after n
 * (bstack.c states the argument).  A scan stops at the first record whose
 * magic, salt, sequence number, length or checksum is wrong: that is a torn
 * or stale tail, never applied.  The salt changes at every checkpoint, so
 * records of an earlier epoch left further on in the file are stale.
 */
#ifndef BSTACKFS_JOURNAL_H
#define BSTACKFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JRN_MAGIC "BSTKJRNL"
#define JRN_VERSION 1
#define JRN_HDR_SIZE 4096
#define JRN_HDR_USED 64
#define JRN_REC_MAGIC 0x524a5342u   /* "BSJR" little endian */
#define JRN_REC_HDR 48
#define JRN_ENT_HDR 16
#define JRN_ENT_ZERO 1u
#define JRN_NO_SHRINK UINT64_MAX

/* CRC32C (Castagnoli), as in iSCSI/ext4: crc32c(0, "123456789", 9) ==
 * 0xe3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t n);
/* The portable byte-table version crc32c() falls back to (for tests). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t n);

/* A growable byte buffer of encoded records. */
struct jrn_buf {
	uint8_t *b;
	size_t len, cap;
};

void jrn_buf_free(struct jrn_buf *jb);
/* Start a record at the end of jb; *start gets its position. */
int jrn_rec_begin(struct jrn_buf *jb, size_t *start);
/* Append one entry to the record being built: n bytes at off, or (data
 * NULL) a zero range of zlen bytes at off. */
int jrn_rec_add(struct jrn_buf *jb, uint64_t off, const void *data, uint32_t n);
int jrn_rec_add_zero(struct jrn_buf *jb, uint64_t off, uint64_t zlen);
/* Close the record begun at start: fill its header (not salt, checksum). */
void jrn_rec_finish(struct jrn_buf *jb, size_t start, uint64_t seq, uint64_t new_len,
		    uint64_t min_len);
/* Seal a finished record for the epoch of `salt`: salt and checksum. */
void jrn_rec_seal(uint8_t *rec, uint64_t salt);
/* Fields of a finished record in a buffer (before or after sealing). */
uint64_t jrn_rec_total(const uint8_t *rec);
uint64_t jrn_rec_seq(const uint8_t *rec);
/* Drop a record begun at start (an empty transaction). */
void jrn_rec_cancel(struct jrn_buf *jb, size_t start);

/* A decoded record, pointing into the buffer it was read from. */
struct jrn_rec {
	uint64_t seq, new_len, min_len;
	const uint8_t *ents;      /* entries, ents_len bytes */
	size_t ents_len;
	size_t total;             /* encoded size */
};

struct jrn_ent {
	uint64_t off;
	uint64_t n;               /* bytes, or the zero range's length */
	const uint8_t *data;      /* NULL for a zero range */
};

/* Decode the record at b[0..avail) if it is complete and valid for this
 * salt and sequence number: 1 (and *rec), or 0 at the end of the valid
 * records. */
int jrn_rec_decode(const uint8_t *b, size_t avail, uint64_t salt, uint64_t seq,
		   struct jrn_rec *rec);
/* Iterate a decoded record's entries: *pos starts at 0; 1 while one is
 * returned in *e, 0 at the end. */
int jrn_ent_next(const struct jrn_rec *rec, size_t *pos, struct jrn_ent *e);

void jrn_hdr_encode(uint8_t h[JRN_HDR_USED], uint64_t salt, uint64_t first_seq);
/* 0, or -EUCLEAN for a header that is not a valid journal header. */
int jrn_hdr_decode(const uint8_t h[JRN_HDR_USED], uint64_t *salt, uint64_t *first_seq);

#endif
