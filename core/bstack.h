/*
 * bstack.h — the file layer: a BStack image (docs/design.md §2).
 *
 *   file byte 0   magic[8]  "BSTK" major minor patch reserved
 *   file byte 8   clen      committed payload length, u64 LE
 *   file byte 16  payload   logical offset 0 .. clen
 *
 * All offsets in this API are logical payload offsets (0 = file byte 16).
 * Every function returns 0 or a negative errno.  Every mutating call except
 * bstack_set_nosync() is durable when it returns: data is written first,
 * then the header (when the length changes), then one sync.  Growing writes
 * data before clen; shrinking truncates before clen.
 *
 * With a journal (below), "durable when it returns" holds for calls outside
 * a transaction; inside one, at the transaction's flush.
 *
 * Thread safety: a read-write lock; reads (get/peek/len) run in parallel,
 * mutations are serialised.
 */
#ifndef BSTACKFS_BSTACK_H
#define BSTACKFS_BSTACK_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"

#define BSTACK_HEADER_SIZE 16
#define BSTACK_MAGIC "BSTK\x00\x01\x08\x00"

/* Distinct refusals of bstack_open(), so callers can name the reason. */
#define BSTACK_E_SHORT    (-ENODATA)   /* file shorter than the header (or empty) */
#define BSTACK_E_MAGIC    (-EILSEQ)    /* not a bstack image */
#define BSTACK_E_VERSION  (-EPROTONOSUPPORT) /* BSTK, but not major 0 minor 1/2 */
#define BSTACK_E_INUSE    (-EWOULDBLOCK) /* another handle holds the lock */
#define BSTACK_E_LIVE     (-ENOLINK)   /* magic "BSTJ": needs its journal's replay */
#define BSTACK_E_JOURNAL  (-EBADMSG)   /* the journal's header is damaged */

/* While a journal is live (records not yet checkpointed) the image's
 * magic starts with this tag instead of "BSTK", so that other bstack
 * programs refuse the image rather than read it half-applied (ext4's
 * needs_recovery).  Checkpoint and unmount restore "BSTK". */
#define BSTACK_MAGIC_LIVE "BSTJ"
#define BSTACK_JOURNAL_DEFAULT (64ULL << 20)   /* checkpoint past this */
#define BSTACK_JOURNAL_MIN (1ULL << 20)        /* on a nearly full disk */
/* With a journal, a shrink of the payload leaves the image file up to
 * this many bytes longer than header + payload until the next checkpoint
 * (bstack.c, apply_rec); a larger one cuts the file at once. */
#define BSTACK_LAZY_TRIM_MAX (4ULL << 20)

struct bstack;

struct bstack_stats {
	uint64_t writes;   /* backend writes + truncates issued */
	uint64_t syncs;    /* backend syncs issued */
};

/* Open an existing image on io, taking ownership of io (closed on failure
 * too).  Takes the exclusive lock, validates the header and recovers:
 * file longer than 16 + clen -> truncated; shorter -> clen = payload size;
 * then sync (only when something was repaired).  A refused file is never
 * written to. */
int bstack_open(struct bs_io *io, struct bstack **out);

/* The two phases of bstack_open().  bstack_open_found(): lock, validate
 * the header, write nothing; *found (may be NULL) gets the header's clen
 * and the file's payload size, and the handle's length is the payload
 * size (every byte on disk readable) until bstack_recover() applies the
 * recovery above (the length becomes clen or the payload size, as
 * bstack_open's).  bstack_restore_len() is the repair instead of the
 * recovery when the bytes past clen must be kept: clen := the payload
 * size, durably. */
struct bstack_found {
	uint64_t clen;      /* the header's committed length */
	uint64_t payload;   /* file size - 16 */
	bool live;          /* magic "BSTJ": recovery is the journal's replay */
};
int bstack_open_found(struct bs_io *io, struct bstack **out, struct bstack_found *found);
int bstack_recover(struct bstack *bs);
/* Attach the redo journal (below) between open_found and recover; detach
 * it again (a read-only check replays, then goes on without one). */
int bstack_attach_journal(struct bstack *bs, struct bs_io *jio, uint64_t jcap);
void bstack_detach_journal(struct bstack *bs);
int bstack_restore_len(struct bstack *bs);
/* The backend the handle was opened on (the volume's staging device). */
struct bs_io *bstack_io(struct bstack *bs);
/* Initialise an empty io (size 0) as a fresh image and open it. */
int bstack_create(struct bs_io *io, struct bstack **out);
/* Path convenience: open path; when create is true and the file does not
 * exist, create it as a fresh image.  An existing empty file is refused. */
int bstack_open_path(const char *path, bool create, struct bstack **out);
void bstack_close(struct bstack *bs);
/* Close the image now and keep the handle for bstack_close to free: the
 * image's descriptor, and with it its lock, goes before the journal's
 * memory and file (the last close of a large removed journal frees its
 * blocks, which takes a while).  The journal is retired first
 * (bstack_checkpoint); on its error nothing is released.  For a caller
 * that has removed the journal's file, so that a new opener finds the
 * image at rest and makes a journal of its own (vol_close).  After it,
 * bstack_close is the only call the handle takes. */
int bstack_release_image(struct bstack *bs);
/* Human-readable reason for one of the errors above. */
const char *bstack_strerror(int err);

uint64_t bstack_len(struct bstack *bs);
/* Copy the 8-byte on-disk magic of the open image. */
void bstack_magic(struct bstack *bs, uint8_t magic[8]);

/* Append n bytes; *off (may be NULL) gets the offset they start at.  On a
 * failed write or sync the image is rolled back to its old length. */
int bstack_push(struct bstack *bs, const void *buf, uint64_t n, uint64_t *off);
/* Append n zero bytes. */
int bstack_extend(struct bstack *bs, uint64_t n, uint64_t *off);
/* Remove the last n bytes, copying them to buf first when buf != NULL. */
int bstack_pop(struct bstack *bs, void *buf, uint64_t n);
int bstack_discard(struct bstack *bs, uint64_t n);
/* Positional read of [off, off + n); -ERANGE if outside the payload. */
int bstack_get(struct bstack *bs, uint64_t off, void *buf, uint64_t n);
/* Read [off, len) into a malloc'd buffer (*buf may be NULL when *n is 0). */
int bstack_peek(struct bstack *bs, uint64_t off, uint8_t **buf, uint64_t *n);
/* Overwrite in place; never changes the length; -ERANGE outside. */
int bstack_set(struct bstack *bs, uint64_t off, const void *buf, uint64_t n);
int bstack_zero(struct bstack *bs, uint64_t off, uint64_t n);
/* bstack_set without the sync: for file data whose durability point is a
 * later bstack_sync() (fsync, close, unmount).  Not durable on return. */
int bstack_set_nosync(struct bstack *bs, uint64_t off, const void *buf, uint64_t n);
int bstack_sync(struct bstack *bs);

/* Check-and-act under the write lock (the seeds' `atomic` feature): extend
 * by n zero bytes / discard the last n bytes only if the length is still
 * expected_len.  *done tells whether it acted. */
int bstack_try_extend_zeros(struct bstack *bs, uint64_t expected_len, uint64_t n,
			    bool *done);
int bstack_try_discard(struct bstack *bs, uint64_t expected_len, uint64_t n,
		       bool *done);

void bstack_stats(struct bstack *bs, struct bstack_stats *st);

/* ---- the journal (bstack.c explains the protocol) ----------------------
 *
 * bstack_open_journal/bstack_create_journal attach a redo journal on jio
 * (taking ownership; NULL = journal=off).  An image whose magic is "BSTJ"
 * is replayed at open (and refused with BSTACK_E_LIVE without a journal).
 * With a journal, every mutation belongs to a transaction: the calling
 * thread's open one (bstack_txn_begin .. bstack_txn_end, nestable, one
 * owner at a time), or else a transaction of its own that is durable when
 * the call returns.  Inside a transaction nothing is written to the image
 * or the journal; reads (from any thread) see the transaction's writes.
 * bstack_txn_end seals it as a record with sequence number *seq (0: it
 * changed nothing); bstack_flush(seq) makes every record up to seq durable
 * with one journal sync and applies them in place (seq 0: every record
 * sealed before the call; what others seal while it waits for a flush
 * under way is theirs to flush).  Records sealed by several threads
 * before one flush share its sync (group commit).  Without a journal
 * these calls do nothing and every mutation is durable on return, as
 * described above.
 */
int bstack_open_journal(struct bs_io *io, struct bs_io *jio, uint64_t jcap,
			struct bstack **out);
int bstack_create_journal(struct bs_io *io, struct bs_io *jio, uint64_t jcap,
			  struct bstack **out);
bool bstack_journaled(struct bstack *bs);
int bstack_txn_begin(struct bstack *bs);
int bstack_txn_end(struct bstack *bs, uint64_t *seq);
int bstack_flush(struct bstack *bs, uint64_t seq);
/* Undo the open (outermost) transaction if it is the first since open —
 * nothing of it is written; else seal it and return -EBUSY. */
int bstack_txn_abort(struct bstack *bs);
/* Inside a transaction: seal and flush what it did so far, and go on in a
 * new one (a step that must be durable before the next, e.g. an alloc
 * before data is copied in place into the new space). */
int bstack_barrier(struct bstack *bs);
/* Flush, sync the image, restore the magic: the journal is retired. */
int bstack_checkpoint(struct bstack *bs);
/* Sequence numbers: the last durable record, and the one the open
 * transaction will get (UINT64_MAX and 0 without a journal). */
uint64_t bstack_durable_seq(struct bstack *bs);
/* The last sealed record (0 without a journal). */
uint64_t bstack_sealed_seq(struct bstack *bs);
uint64_t bstack_txn_seq(struct bstack *bs);

/* File data: written in place where that is safe (no sync), in the
 * journal elsewhere (bstack.c: the ordering rule), or always in the
 * journal with BSTACK_DATA_JOURNAL (the caller's space is not durably
 * allocated yet).  *in_place gets the bytes that went in place: they are
 * durable after the next bstack_sync.  Without a journal:
 * bstack_set_nosync. */
#define BSTACK_DATA_JOURNAL 1u
/* Only in place: stop at the first page that would travel in the journal
 * (*in_place tells how far it got; the rest is the caller's, inside a
 * transaction).  Needs no transaction: any thread, any time. */
#define BSTACK_DATA_INPLACE_ONLY 2u
int bstack_write_data(struct bstack *bs, uint64_t off, const void *buf, uint64_t n,
		      unsigned flags, uint64_t *in_place);

struct bstack_journal_stats {
	uint64_t journal_bytes;       /* the journal file's size */
	uint64_t journal_used_bytes;  /* header + records of the live epoch */
	uint64_t capacity;
	uint64_t commits;             /* records made durable since open */
	uint64_t checkpoints;
	uint64_t replayed_commits;    /* records replayed by this open */
	uint64_t journal_syncs;       /* syncs of the journal (in `syncs` too) */
};
void bstack_journal_stats(struct bstack *bs, struct bstack_journal_stats *st);

#endif
