/*
 * test_journal.c — the file layer's redo journal (core/journal.[ch] and the
 * journaled paths of core/bstack.c) on the memory device: transactions,
 * group flush, checkpoint, replay, the "BSTJ" magic, in-place data, and
 * power loss at every cut point under every failure mode of io.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "journal.h"
#include "util.h"

struct jdev {
	struct bs_memdev *img, *jrn;
};

static struct jdev jdev_new(void)
{
	struct jdev d = { bs_memdev_new(), NULL };
	CU_ASSERT_FATAL(d.img != NULL);
	d.jrn = bs_memdev_new_sibling(d.img);
	CU_ASSERT_FATAL(d.jrn != NULL);
	return d;
}

static void jdev_free(struct jdev d)
{
	bs_memdev_free(d.img);   /* and its sibling, the journal */
}

static int jopen(struct jdev d, bool create, struct bstack **out)
{
	struct bs_io *io, *jio;
	if (bs_io_mem_open(d.img, &io) || bs_io_mem_open(d.jrn, &jio))
		return -ENOMEM;
	return create ? bstack_create_journal(io, jio, 0, out)
		      : bstack_open_journal(io, jio, 0, out);
}

static struct bstack *jopen_ok(struct jdev d, bool create)
{
	struct bstack *bs = NULL;
	int r = jopen(d, create, &bs);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	return bs;
}

static void image_magic(struct bs_memdev *dev, char tag[5])
{
	uint8_t *b;
	size_t n;
	CU_ASSERT_FATAL(bs_memdev_snapshot(dev, &b, &n) == 0);
	memset(tag, 0, 5);
	if (n >= 4)
		memcpy(tag, b, 4);
	free(b);
}

/* A transaction's writes are visible inside it and reach neither the
 * image nor the journal before the flush; the flush costs one journal
 * sync (plus one for the epoch's magic), and the result survives close. */
static void txn_is_invisible_to_the_disk_until_flushed(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	uint8_t buf[10000], got[10000];
	h_pattern(buf, sizeof buf, 1, 0);
	bs_memdev_reset_counts(d.img);
	bs_memdev_reset_counts(d.jrn);
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	CU_ASSERT_EQUAL(bstack_push(bs, buf, sizeof buf, NULL), 0);
	CU_ASSERT_EQUAL(bstack_set(bs, 100, "hello", 5), 0);
	CU_ASSERT_EQUAL(bstack_len(bs), sizeof buf);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	memcpy(buf + 100, "hello", 5);
	CU_ASSERT(memcmp(got, buf, sizeof buf) == 0);
	CU_ASSERT_EQUAL(bs_memdev_writes(d.img) + bs_memdev_writes(d.jrn), 0);
	uint64_t seq = 0;
	CU_ASSERT_EQUAL(bstack_txn_end(bs, &seq), 0);
	CU_ASSERT(seq > 0);
	CU_ASSERT_EQUAL(bs_memdev_writes(d.img) + bs_memdev_writes(d.jrn), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, seq), 0);
	CU_ASSERT_EQUAL(bs_memdev_syncs(d.jrn), 1);
	CU_ASSERT_EQUAL(bs_memdev_syncs(d.img), 1);   /* the epoch's magic */
	CU_ASSERT(bstack_durable_seq(bs) >= seq);
	char tag[5];
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");
	/* a second transaction in the same epoch: one sync */
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	CU_ASSERT_EQUAL(bstack_set(bs, 0, "x", 1), 0);
	CU_ASSERT_EQUAL(bstack_txn_end(bs, &seq), 0);
	bs_memdev_reset_counts(d.img);
	bs_memdev_reset_counts(d.jrn);
	CU_ASSERT_EQUAL(bstack_flush(bs, seq), 0);
	CU_ASSERT_EQUAL(bs_memdev_syncs(d.img) + bs_memdev_syncs(d.jrn), 1);
	buf[0] = 'x';
	bstack_close(bs);
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");   /* checkpointed at close */
	/* a plain open (no journal) reads the same bytes */
	bs = h_stack_open(d.img);
	CU_ASSERT_EQUAL(bstack_len(bs), sizeof buf);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, buf, sizeof buf) == 0);
	bstack_close(bs);
	jdev_free(d);
}

/* A flush of everything (bstack_flush(bs, 0)) is done once every record
 * sealed before it was called is durable.  Called while another flush is
 * under way, it does not go on to flush what was sealed while it waited:
 * so a close or an fsync shares the sync of the operations around it
 * instead of costing a sync of its own.  The journal's sync hook holds
 * the first flush in the middle while the second one starts and a third
 * record is sealed. */
struct mid_flush {
	struct bstack *bs;
	struct h_stage st;      /* 1: a sync is under way; 2: the second flush starts */
	int hook_calls;
	uint64_t first_seq, late_seq;
	int first_r;
};

static void mid_flush_hook(void *arg)
{
	struct mid_flush *m = arg;
	if (m->hook_calls++)
		return;
	h_stage_set(&m->st, 1);
	h_stage_wait(&m->st, 2);
	usleep(50 * 1000);   /* the second flush has read what is sealed and waits */
	/* sealed while the first flush is under way, after the second began */
	if (bstack_txn_begin(m->bs) || bstack_set(m->bs, 1, "L", 1) ||
	    bstack_txn_end(m->bs, &m->late_seq))
		m->late_seq = 0;
}

static void *first_flush_main(void *arg)
{
	struct mid_flush *m = arg;
	m->first_r = bstack_flush(m->bs, m->first_seq);
	return NULL;
}

static void a_flush_of_everything_ends_when_what_was_sealed_is_durable(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	struct mid_flush m = { .bs = bs, .st = H_STAGE_INIT };
	/* the epoch is live: every later flush is one journal sync */
	CU_ASSERT_EQUAL(bstack_push(bs, "abcd", 4, NULL), 0);
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	CU_ASSERT_EQUAL(bstack_set(bs, 0, "F", 1), 0);
	CU_ASSERT_EQUAL(bstack_txn_end(bs, &m.first_seq), 0);
	CU_ASSERT_FATAL(m.first_seq > 0);
	bs_memdev_reset_counts(d.jrn);
	bs_memdev_on_sync(d.jrn, mid_flush_hook, &m);
	pthread_t th;
	CU_ASSERT_FATAL(pthread_create(&th, NULL, first_flush_main, &m) == 0);
	h_stage_wait(&m.st, 1);
	h_stage_set(&m.st, 2);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	pthread_join(th, NULL);
	bs_memdev_on_sync(d.jrn, NULL, NULL);
	CU_ASSERT_EQUAL(m.first_r, 0);
	CU_ASSERT_FATAL(m.late_seq > m.first_seq);
	/* the first flush's sync covered both flushes; the late record waits */
	CU_ASSERT_EQUAL(bs_memdev_syncs(d.jrn), 1);
	CU_ASSERT(bstack_durable_seq(bs) >= m.first_seq);
	CU_ASSERT(bstack_durable_seq(bs) < m.late_seq);
	/* and is flushed by the next flush of everything */
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT(bstack_durable_seq(bs) >= m.late_seq);
	CU_ASSERT_EQUAL(bs_memdev_syncs(d.jrn), 2);
	uint8_t got[4];
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, 4), 0);
	CU_ASSERT(memcmp(got, "FLcd", 4) == 0);
	bstack_close(bs);
	jdev_free(d);
}

/* Shrink then grow inside one transaction exposes zeros; zero ranges and
 * pops read back right before and after the flush. */
static void shrink_grow_and_zero_read_back_before_and_after_flush(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	uint8_t buf[65536], got[65536], want[65536];
	h_pattern(buf, sizeof buf, 2, 0);
	CU_ASSERT_EQUAL(bstack_push(bs, buf, sizeof buf, NULL), 0);   /* own txn */
	memcpy(want, buf, sizeof want);
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	uint8_t popped[1000];
	CU_ASSERT_EQUAL(bstack_pop(bs, popped, sizeof popped), 0);
	CU_ASSERT(memcmp(popped, buf + sizeof buf - 1000, 1000) == 0);
	CU_ASSERT_EQUAL(bstack_extend(bs, 1000, NULL), 0);
	memset(want + sizeof want - 1000, 0, 1000);
	CU_ASSERT_EQUAL(bstack_zero(bs, 5000, 40000), 0);
	memset(want + 5000, 0, 40000);
	CU_ASSERT_EQUAL(bstack_set(bs, 20000, "abc", 3), 0);
	memcpy(want + 20000, "abc", 3);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, want, sizeof want) == 0);
	uint64_t seq;
	CU_ASSERT_EQUAL(bstack_txn_end(bs, &seq), 0);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, want, sizeof want) == 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, seq), 0);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, want, sizeof want) == 0);
	bstack_close(bs);
	bs = h_stack_open(d.img);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, want, sizeof want) == 0);
	bstack_close(bs);
	jdev_free(d);
}

/* n bytes at off on the device as the host sees it now are zeros. */
static bool dev_zero_at(struct bs_memdev *dev, uint64_t off, size_t n)
{
	struct bs_io *io;
	uint8_t *b = malloc(n);
	bool zero = b != NULL;
	CU_ASSERT_FATAL(bs_io_mem_open(dev, &io) == 0);
	if (!b || bs_io_pread(io, b, n, off))
		zero = false;
	for (size_t i = 0; zero && i < n; i++)
		zero = b[i] == 0;
	bs_io_close(io);
	free(b);
	return zero;
}

/* A shrink leaves the image file longer than header + payload (no host
 * truncate per shrink); the bytes past the payload never read back, a
 * growth over them reads zeros and writes zeros there, a checkpoint cuts
 * the file exactly, and a shrink past BSTACK_LAZY_TRIM_MAX cuts at once. */
static void a_shrink_cuts_the_file_lazily_and_never_shows_stale_bytes(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	enum { N = 20000, CUT = 8000 };
	uint8_t buf[N], got[N];
	h_pattern(buf, sizeof buf, 3, 0);
	CU_ASSERT_EQUAL(bstack_push(bs, buf, N, NULL), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N);
	CU_ASSERT_EQUAL(bstack_discard(bs, CUT), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT_EQUAL(bstack_len(bs), N - CUT);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N);   /* not cut yet */
	CU_ASSERT_EQUAL(bstack_extend(bs, CUT / 2, NULL), 0);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, N - CUT / 2), 0);
	CU_ASSERT(memcmp(got, buf, N - CUT) == 0);
	bool zero = true;
	for (size_t i = N - CUT; i < N - CUT / 2; i++)
		zero &= got[i] == 0;
	CU_ASSERT(zero);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	/* applied: the stale bytes under the growth are zeros on the device */
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N);
	CU_ASSERT(dev_zero_at(d.img, BSTACK_HEADER_SIZE + N - CUT, CUT / 2));
	CU_ASSERT(!dev_zero_at(d.img, BSTACK_HEADER_SIZE + N - CUT / 2, CUT / 2));   /* stale */
	CU_ASSERT_EQUAL(bstack_checkpoint(bs), 0);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N - CUT / 2);
	/* a large shrink cuts the file at once */
	CU_ASSERT_EQUAL(bstack_extend(bs, BSTACK_LAZY_TRIM_MAX + 4096, NULL), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT_EQUAL(bstack_discard(bs, BSTACK_LAZY_TRIM_MAX + 4096), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N - CUT / 2);
	/* a stale tail at close: the image at rest is header + payload */
	CU_ASSERT_EQUAL(bstack_discard(bs, 1000), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N - CUT / 2);
	bstack_close(bs);
	CU_ASSERT_EQUAL(h_dev_size(d.img), BSTACK_HEADER_SIZE + N - CUT / 2 - 1000);
	bs = h_stack_open(d.img);
	CU_ASSERT_EQUAL(bstack_len(bs), N - CUT / 2 - 1000);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, N - CUT), 0);
	CU_ASSERT(memcmp(got, buf, N - CUT) == 0);
	bstack_close(bs);
	jdev_free(d);
}

/* An image with a live journal is refused without it, by any opener that
 * does not replay (the way another bstack program sees it). */
static void live_image_is_refused_without_its_journal(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	CU_ASSERT_EQUAL(bstack_push(bs, "abcdef", 6, NULL), 0);
	/* crash with the journal live: the power goes before close */
	bs_memdev_fail_at(d.img, 1);
	bstack_close(bs);
	bs_memdev_power_cycle(d.img, 0);
	char tag[5];
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");
	struct bs_io *io;
	CU_ASSERT_FATAL(bs_io_mem_open(d.img, &io) == 0);
	CU_ASSERT_EQUAL(bstack_open(io, &bs), BSTACK_E_LIVE);
	bs = jopen_ok(d, false);
	uint8_t got[6];
	CU_ASSERT_EQUAL(bstack_len(bs), 6);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, 6), 0);
	CU_ASSERT(memcmp(got, "abcdef", 6) == 0);
	struct bstack_journal_stats st;
	bstack_journal_stats(bs, &st);
	CU_ASSERT(st.replayed_commits >= 1);
	bstack_close(bs);
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");
	jdev_free(d);
}

/* The state a script of transactions leaves, tx 0..k-1 applied. */
#define NTX 8
static void run_tx(struct bstack *bs, int k)
{
	uint8_t b[3000];
	h_pattern(b, sizeof b, 100 + (uint64_t)k, 0);
	switch (k % 4) {
	case 3:
		/* a shrink alone: the next transaction grows over its stale
		 * bytes (bstack.c cuts the file lazily) */
		bstack_discard(bs, 4000);
		break;
	case 0:
		bstack_push(bs, b, sizeof b, NULL);
		bstack_set(bs, 10, b + 7, 700);
		break;
	case 1:
		bstack_zero(bs, 0, bstack_len(bs) / 2);
		bstack_set(bs, bstack_len(bs) - 100, b, 100);
		break;
	default:
		bstack_discard(bs, bstack_len(bs) / 3);
		bstack_extend(bs, 20000, NULL);
		bstack_set(bs, bstack_len(bs) - 5000, b, 3000);
		break;
	}
}

static uint8_t *expected_after(int k, uint64_t *len)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	for (int i = 0; i < k; i++) {
		bstack_txn_begin(bs);
		run_tx(bs, i);
		uint64_t s;
		bstack_txn_end(bs, &s);
	}
	uint8_t *b = NULL;
	CU_ASSERT_FATAL(bstack_peek(bs, 0, &b, len) == 0);
	bstack_close(bs);
	jdev_free(d);
	return b;
}

static bool state_is(struct bstack *bs, uint8_t *want, uint64_t len)
{
	uint8_t *b = NULL;
	uint64_t n;
	if (bstack_peek(bs, 0, &b, &n) || n != len) {
		free(b);
		return false;
	}
	bool ok = n == 0 || memcmp(b, want, n) == 0;
	free(b);
	return ok;
}

/* Power loss at every cut point of a run of transactions flushed one by
 * one (records, applies, the epoch's magic, the checkpoint at close),
 * under each failure mode: the reopened image is exactly the state after
 * some prefix of the transactions, at least the ones whose flush
 * returned; a second power loss during the replay changes nothing. */
static void power_loss_anywhere_leaves_a_prefix_of_transactions(void)
{
	uint8_t *want[NTX + 1];
	uint64_t wlen[NTX + 1];
	for (int k = 0; k <= NTX; k++)
		want[k] = expected_after(k, &wlen[k]);
	uint64_t cases = 0;
	for (int mode = 0; mode < 3; mode++) {
		for (uint64_t cut = 1;; cut++) {
			struct jdev d = jdev_new();
			struct bstack *bs = jopen_ok(d, true);
			bs_memdev_fail_at(d.img, cut);
			int done = 0;
			for (int i = 0; i < NTX; i++) {
				bstack_txn_begin(bs);
				run_tx(bs, i);
				uint64_t s;
				bstack_txn_end(bs, &s);
				if (bstack_flush(bs, s))
					break;
				done = i + 1;
			}
			bool fired = bs_memdev_dead(d.img);
			bstack_close(bs);
			fired |= bs_memdev_dead(d.img);
			for (uint64_t param = 0; param < 6; param++) {
				bs_memdev_power_cycle_mode(d.img, (enum bs_pc_mode)mode, param,
							   cut * 7 + param);
				/* replay, cut once more at the same time */
				for (uint64_t cut2 = 1; cut2 < 4; cut2++) {
					bs_memdev_fail_at(d.img, cut2);
					if (jopen(d, false, &bs) == 0)
						bstack_close(bs);
					bs_memdev_power_cycle(d.img, 0);
				}
				CU_ASSERT_FATAL(jopen(d, false, &bs) == 0);
				int match = -1;
				for (int k = done; k <= NTX && match < 0; k++)
					if (state_is(bs, want[k], wlen[k]))
						match = k;
				CU_ASSERT(match >= done);
				if (match < done)
					printf("\nmode %d cut %llu param %llu: no prefix >= %d\n", mode,
					       (unsigned long long)cut, (unsigned long long)param, done);
				bstack_close(bs);
				char tag[5];
				image_magic(d.img, tag);
				CU_ASSERT_STRING_EQUAL(tag, "BSTK");
				cases++;
			}
			jdev_free(d);
			if (!fired)
				break;
		}
	}
	CU_ASSERT(cases > 100);
	for (int k = 0; k <= NTX; k++)
		free(want[k]);
}

/* Records with a flipped bit or a wrong salt are never applied. */
static void corrupt_and_stale_records_are_never_replayed(void)
{
	struct jrn_buf jb = { 0 };
	size_t st;
	CU_ASSERT_EQUAL(jrn_rec_begin(&jb, &st), 0);
	CU_ASSERT_EQUAL(jrn_rec_add(&jb, 4, "data", 4), 0);
	CU_ASSERT_EQUAL(jrn_rec_add_zero(&jb, 100, 50), 0);
	jrn_rec_finish(&jb, st, 7, 200, 150);
	jrn_rec_seal(jb.b, 42);
	struct jrn_rec rec;
	CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len, 42, 7, &rec), 1);
	CU_ASSERT_EQUAL(rec.new_len, 200);
	CU_ASSERT_EQUAL(rec.min_len, 150);
	CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len, 43, 7, &rec), 0);   /* stale epoch */
	CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len, 42, 8, &rec), 0);   /* wrong seq */
	CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len - 8, 42, 7, &rec), 0); /* torn */
	for (size_t i = 0; i < jb.len * 8; i += 7) {
		jb.b[i / 8] ^= (uint8_t)(1u << (i % 8));
		CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len, 42, 7, &rec), 0);
		jb.b[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	CU_ASSERT_EQUAL(jrn_rec_decode(jb.b, jb.len, 42, 7, &rec), 1);
	jrn_buf_free(&jb);
	CU_ASSERT_EQUAL(crc32c(0, "123456789", 9), 0xe3069283u);
}

/* The CRC32C in use (the SSE4.2 instruction where the CPU has it) equals
 * the byte table on every length and alignment, chained or not. */
static void crc32c_matches_the_byte_table_everywhere(void)
{
	uint8_t b[600];
	h_pattern(b, sizeof b, 77, 0);
	CU_ASSERT_EQUAL(crc32c_sw(0, "123456789", 9), 0xe3069283u);
	unsigned bad = 0;
	for (size_t off = 0; off < 16; off++)
		for (size_t n = 0; n + off <= sizeof b; n += n < 40 ? 1 : 37) {
			uint32_t seed = (uint32_t)(off * 2654435761u);
			bad += crc32c(seed, b + off, n) != crc32c_sw(seed, b + off, n);
			size_t h = n / 3;
			bad += crc32c(crc32c(seed, b + off, h), b + off + h, n - h) !=
			       crc32c_sw(seed, b + off, n);
		}
	CU_ASSERT_EQUAL(bad, 0);
}

/* File data goes in place where no record of the epoch wrote, and in the
 * journal where one did (so replay cannot overwrite it). */
static void data_goes_in_place_only_where_no_record_wrote(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	uint8_t big[64 * 1024];
	h_pattern(big, sizeof big, 3, 0);
	CU_ASSERT_EQUAL(bstack_extend(bs, sizeof big, NULL), 0);
	CU_ASSERT_EQUAL(bstack_checkpoint(bs), 0);
	CU_ASSERT_EQUAL(bstack_set(bs, 100, "meta", 4), 0);   /* page 0 journaled */
	uint64_t inplace = 0;
	CU_ASSERT_EQUAL(bstack_write_data(bs, 0, big, sizeof big, 0, &inplace), 0);
	CU_ASSERT_EQUAL(inplace, sizeof big - 4096);
	CU_ASSERT_EQUAL(bstack_write_data(bs, 0, big, 10, BSTACK_DATA_JOURNAL, &inplace), 0);
	CU_ASSERT_EQUAL(inplace, 0);
	uint8_t got[sizeof big];
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, big, sizeof big) == 0);
	CU_ASSERT_EQUAL(bstack_sync(bs), 0);
	/* crash now: replay must keep the data written after the record */
	bs_memdev_fail_at(d.img, 1);
	bstack_close(bs);
	bs_memdev_power_cycle(d.img, 0);
	bs = jopen_ok(d, false);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, big, sizeof big) == 0);
	bstack_close(bs);
	jdev_free(d);
}

/* bstack_release_image: the journal is checkpointed, then the image (and
 * its lock) goes at once while the handle, its journal's memory and the
 * journal's lock stay until bstack_close; a failed checkpoint releases
 * nothing. */
static void release_image_lets_go_of_the_image_before_the_journal(void)
{
	struct jdev d = jdev_new();
	struct bstack *bs = jopen_ok(d, true);
	uint8_t buf[5000], got[5000];
	char tag[5];
	h_pattern(buf, sizeof buf, 9, 0);
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	CU_ASSERT_EQUAL(bstack_push(bs, buf, sizeof buf, NULL), 0);
	CU_ASSERT_EQUAL(bstack_txn_end(bs, NULL), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTJ");

	struct bs_io *probe, *jprobe;
	CU_ASSERT_FATAL(bs_io_mem_open(d.img, &probe) == 0);
	CU_ASSERT_FATAL(bs_io_mem_open(d.jrn, &jprobe) == 0);
	CU_ASSERT_EQUAL(bs_io_lock(probe), -EWOULDBLOCK);   /* held by bs */
	CU_ASSERT_EQUAL(bstack_release_image(bs), 0);
	image_magic(d.img, tag);
	CU_ASSERT_STRING_EQUAL(tag, "BSTK");                /* retired first */
	CU_ASSERT_EQUAL(bs_io_lock(probe), 0);              /* the image is free */
	CU_ASSERT_EQUAL(bs_io_lock(jprobe), -EWOULDBLOCK);  /* the journal is not yet */
	bs_io_close(probe);
	bstack_close(bs);
	CU_ASSERT_EQUAL(bs_io_lock(jprobe), 0);
	bs_io_close(jprobe);
	bs = jopen_ok(d, false);
	CU_ASSERT_EQUAL(bstack_len(bs), sizeof buf);
	CU_ASSERT_EQUAL(bstack_get(bs, 0, got, sizeof got), 0);
	CU_ASSERT(memcmp(got, buf, sizeof buf) == 0);

	/* the checkpoint fails (the image dies at its next write): the image
	 * stays held, bstack_close frees the handle */
	CU_ASSERT_EQUAL(bstack_txn_begin(bs), 0);
	CU_ASSERT_EQUAL(bstack_set(bs, 10, "x", 1), 0);
	CU_ASSERT_EQUAL(bstack_txn_end(bs, NULL), 0);
	CU_ASSERT_EQUAL(bstack_flush(bs, 0), 0);
	bs_memdev_fail_at(d.img, 1);
	CU_ASSERT(bstack_release_image(bs) < 0);
	CU_ASSERT_FATAL(bs_io_mem_open(d.img, &probe) == 0);
	CU_ASSERT_EQUAL(bs_io_lock(probe), -EWOULDBLOCK);
	bs_io_close(probe);
	bstack_close(bs);
	jdev_free(d);
}

static const struct h_test tests[] = {
	H_TEST(txn_is_invisible_to_the_disk_until_flushed),
	H_TEST(a_flush_of_everything_ends_when_what_was_sealed_is_durable),
	H_TEST(shrink_grow_and_zero_read_back_before_and_after_flush),
	H_TEST(a_shrink_cuts_the_file_lazily_and_never_shows_stale_bytes),
	H_TEST(live_image_is_refused_without_its_journal),
	H_TEST(power_loss_anywhere_leaves_a_prefix_of_transactions),
	H_TEST(corrupt_and_stale_records_are_never_replayed),
	H_TEST(crc32c_matches_the_byte_table_everywhere),
	H_TEST(data_goes_in_place_only_where_no_record_wrote),
	H_TEST(release_image_lets_go_of_the_image_before_the_journal),
};

H_MAIN("journal", tests)
