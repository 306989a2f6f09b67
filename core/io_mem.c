/*
 * io_mem.c — the memory test device (littlefs's emulated block device).
 *
 * Model: `durable` holds what survived the last completed sync; every write
 * and truncate since is appended to a pending log and applied to the
 * volatile image `vol` at once (so reads see it).  A sync folds the log into
 * durable.  Power loss keeps durable plus the first `keep` pending entries,
 * in order: with keep = 0 everything not yet synced is lost (the default
 * model of docs/design.md §2); other values test that an operation does not rely on
 * unsynced writes reaching the disk in any order but issue order.
 *
 * Power domains: a sibling device (bs_memdev_new_sibling) shares its
 * owner's operation counter, fault and power state (`pw` points at the
 * owner, whose `pmu` guards them; lock order: a device's `mu`, then
 * `pmu`).  A power cycle of either device cycles both.
 *
 * Failure modes at a power cycle (io.h): a prefix of the pending log, a
 * prefix plus one write torn at a sector boundary, or a seeded subset.
 *
 * A full disk (bs_memdev_set_capacity): a write or truncate that would make
 * `vol` larger than the capacity is counted, then refused with -ENOSPC
 * before it is logged or applied; the power stays on.
 */
#include "io.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *b;
	size_t len, cap;
};

enum pend_kind { P_WRITE, P_TRUNC, P_ZERO };

struct pend {
	enum pend_kind kind;
	uint64_t off;     /* write offset, or new size for a truncate */
	size_t n;
	uint8_t *data;
};

struct bs_memdev {
	pthread_mutex_t mu;
	struct buf durable, vol;
	struct pend *log;
	size_t nlog, caplog;
	uint64_t writes, syncs;
	uint64_t capacity;             /* 0 = unlimited; else -ENOSPC past it */
	uint64_t reserved;             /* size reserve() promised room for */
	/* power state, used on the domain's owner (pw) only */
	struct bs_memdev *pw, *sibling;
	pthread_mutex_t pmu;
	uint64_t ops;                  /* counted since fail_at was armed */
	uint64_t fail_at;              /* 0 = disarmed */
	int dead;
	int locked;
	uint64_t lock_gen;   /* bumped at power cycle / load: old holders lose it */
	void (*on_sync)(void *);       /* bs_memdev_on_sync */
	void *on_sync_arg;
	void (*on_write)(void *);      /* bs_memdev_on_write */
	void *on_write_arg;
};

struct io_mem {
	struct bs_io io;
	struct bs_memdev *dev;
	int holds_lock;
	uint64_t lock_gen;
};

static int buf_resize(struct buf *b, size_t len)
{
	if (len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < len)
			cap *= 2;
		uint8_t *nb = realloc(b->b, cap);
		if (!nb)
			return -ENOMEM;
		b->b = nb;
		b->cap = cap;
	}
	if (len > b->len)
		memset(b->b + b->len, 0, len - b->len);
	b->len = len;
	return 0;
}

static int buf_write(struct buf *b, const void *p, size_t n, uint64_t off)
{
	if (n == 0)
		return 0;   /* a zero-length write does not extend the file */
	if (off > SIZE_MAX - n)
		return -EFBIG;
	if (off + n > b->len) {
		int r = buf_resize(b, off + n);
		if (r)
			return r;
	}
	memcpy(b->b + off, p, n);
	return 0;
}

static int buf_zero(struct buf *b, uint64_t off, size_t n)
{
	if (off > b->len || n > b->len - off)
		return -EIO;
	memset(b->b + off, 0, n);
	return 0;
}

static int apply(struct buf *b, const struct pend *p)
{
	switch (p->kind) {
	case P_TRUNC:
		return buf_resize(b, p->off);
	case P_ZERO:
		return buf_zero(b, p->off, p->n);
	default:
		return buf_write(b, p->data, p->n, p->off);
	}
}

static void log_clear(struct bs_memdev *d)
{
	for (size_t i = 0; i < d->nlog; i++)
		free(d->log[i].data);
	d->nlog = 0;
}

/* Count one operation; returns -EIO when the power is (or just went) out. */
static int tick(struct bs_memdev *d)
{
	struct bs_memdev *p = d->pw;
	int r = 0;
	pthread_mutex_lock(&p->pmu);
	if (p->dead) {
		r = -EIO;
	} else {
		p->ops++;
		if (p->fail_at && p->ops >= p->fail_at) {
			p->dead = 1;
			r = -EIO;
		}
	}
	pthread_mutex_unlock(&p->pmu);
	return r;
}

static int is_dead(const struct bs_memdev *d)
{
	struct bs_memdev *p = d->pw;
	pthread_mutex_lock(&p->pmu);
	int dead = p->dead;
	pthread_mutex_unlock(&p->pmu);
	return dead;
}

static int log_push(struct bs_memdev *d, enum pend_kind kind, uint64_t off, const void *p,
		    size_t n)
{
	if (d->nlog == d->caplog) {
		size_t cap = d->caplog ? d->caplog * 2 : 16;
		struct pend *nl = realloc(d->log, cap * sizeof *nl);
		if (!nl)
			return -ENOMEM;
		d->log = nl;
		d->caplog = cap;
	}
	struct pend *e = &d->log[d->nlog];
	e->kind = kind;
	e->off = off;
	e->n = n;
	e->data = NULL;
	if (n && kind == P_WRITE) {
		e->data = malloc(n);
		if (!e->data)
			return -ENOMEM;
		memcpy(e->data, p, n);
	}
	d->nlog++;
	return 0;
}

static int mem_pread(struct bs_io *io, void *buf, size_t n, uint64_t off)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	int r = 0;
	pthread_mutex_lock(&d->mu);
	if (is_dead(d))
		r = -EIO;
	else if (off > d->vol.len || n > d->vol.len - off)
		r = -EIO;
	else
		memcpy(buf, d->vol.b + off, n);
	pthread_mutex_unlock(&d->mu);
	return r;
}

/* A full disk refuses an operation that would leave the volatile image
 * larger than the capacity: checked after tick() (the write was issued and
 * counted) and before log_push() (nothing is applied or logged). */
static int room_for(const struct bs_memdev *d, uint64_t end)
{
	if (d->capacity && end > d->vol.len && end > d->capacity && end > d->reserved)
		return -ENOSPC;
	return 0;
}

static int mem_pwrite(struct bs_io *io, const void *buf, size_t n, uint64_t off)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	void (*fn)(void *) = d->on_write;
	void *arg = d->on_write_arg;
	pthread_mutex_unlock(&d->mu);
	if (fn)
		fn(arg);
	pthread_mutex_lock(&d->mu);
	int r = tick(d);
	if (!r) {
		d->writes++;
		if (n && (off > UINT64_MAX - n))
			r = -EFBIG;
		else if (n)
			r = room_for(d, off + n);
	}
	if (!r) {
		r = log_push(d, P_WRITE, off, buf, n);
		if (!r)
			r = buf_write(&d->vol, buf, n, off);
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

static int mem_zero(struct bs_io *io, uint64_t off, uint64_t n)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	int r = tick(d);
	if (!r) {
		d->writes++;
		r = off > d->vol.len || n > d->vol.len - off ? -EIO
							      : log_push(d, P_ZERO, off, NULL, (size_t)n);
		if (!r)
			r = buf_zero(&d->vol, off, (size_t)n);
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

static int mem_truncate(struct bs_io *io, uint64_t size)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	int r = tick(d);
	if (!r) {
		d->writes++;
		r = size > SIZE_MAX ? -EFBIG : room_for(d, size);
		if (!r)
			r = log_push(d, P_TRUNC, size, NULL, 0);
		if (!r)
			r = buf_resize(&d->vol, (size_t)size);
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

static int mem_sync(struct bs_io *io)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	int r = tick(d);
	if (!r) {
		d->syncs++;
		/* everything issued so far reaches the disk: replay the log onto
		 * durable (cost: the bytes written since the last sync, not the
		 * image size) */
		for (size_t i = 0; !r && i < d->nlog; i++)
			r = apply(&d->durable, &d->log[i]);
		if (!r)
			log_clear(d);
	}
	void (*fn)(void *) = r ? NULL : d->on_sync;
	void *arg = d->on_sync_arg;
	pthread_mutex_unlock(&d->mu);
	if (fn)
		fn(arg);
	return r;
}

void bs_memdev_on_write(struct bs_memdev *dev, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&dev->mu);
	dev->on_write = fn;
	dev->on_write_arg = arg;
	pthread_mutex_unlock(&dev->mu);
}

void bs_memdev_on_sync(struct bs_memdev *dev, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&dev->mu);
	dev->on_sync = fn;
	dev->on_sync_arg = arg;
	pthread_mutex_unlock(&dev->mu);
}

static int mem_size(struct bs_io *io, uint64_t *size)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	int r = is_dead(d) ? -EIO : 0;
	*size = d->vol.len;
	pthread_mutex_unlock(&d->mu);
	return r;
}

/* A reservation is promised room: growth up to it never fails. */
static int mem_reserve(struct bs_io *io, uint64_t size)
{
	struct bs_memdev *d = ((struct io_mem *)io)->dev;
	pthread_mutex_lock(&d->mu);
	int r = is_dead(d) ? -EIO : 0;
	if (!r && d->capacity && size > d->capacity && size > d->vol.len &&
	    size > d->reserved)
		r = -ENOSPC;
	if (!r && size > d->reserved)
		d->reserved = size;
	pthread_mutex_unlock(&d->mu);
	return r;
}

static int mem_lock(struct bs_io *io)
{
	struct io_mem *m = (struct io_mem *)io;
	struct bs_memdev *d = m->dev;
	int r = 0;
	pthread_mutex_lock(&d->mu);
	if (m->holds_lock && m->lock_gen == d->lock_gen)
		r = 0;
	else if (d->locked)
		r = -EWOULDBLOCK;
	else {
		d->locked = m->holds_lock = 1;
		m->lock_gen = d->lock_gen;
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

static void mem_close(struct bs_io *io)
{
	struct io_mem *m = (struct io_mem *)io;
	pthread_mutex_lock(&m->dev->mu);
	/* a handle from before a power cycle no longer holds the lock */
	if (m->holds_lock && m->lock_gen == m->dev->lock_gen)
		m->dev->locked = 0;
	pthread_mutex_unlock(&m->dev->mu);
	free(m);
}

static const struct bs_io_ops mem_ops = {
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.zero = mem_zero,
	.truncate = mem_truncate,
	.reserve = mem_reserve,
	.sync = mem_sync,
	.size = mem_size,
	.lock = mem_lock,
	.close = mem_close,
};

struct bs_memdev *bs_memdev_new(void)
{
	struct bs_memdev *d = calloc(1, sizeof *d);
	if (d) {
		pthread_mutex_init(&d->mu, NULL);
		pthread_mutex_init(&d->pmu, NULL);
		d->pw = d;
	}
	return d;
}

struct bs_memdev *bs_memdev_sibling(struct bs_memdev *d)
{
	return d->pw == d ? d->sibling : NULL;
}

struct bs_memdev *bs_memdev_new_sibling(struct bs_memdev *owner)
{
	struct bs_memdev *d = bs_memdev_new();
	if (d) {
		d->pw = owner->pw;
		d->pw->sibling = d;
	}
	return d;
}

void bs_memdev_free(struct bs_memdev *d)
{
	if (!d)
		return;
	if (d->pw != d && d->pw->sibling == d)
		d->pw->sibling = NULL;
	if (d->pw == d && d->sibling)
		bs_memdev_free(d->sibling);   /* the owner takes its sibling along */
	log_clear(d);
	free(d->log);
	free(d->durable.b);
	free(d->vol.b);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->pmu);
	free(d);
}

int bs_io_mem_open(struct bs_memdev *d, struct bs_io **out)
{
	struct io_mem *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->io.ops = &mem_ops;
	m->dev = d;
	*out = &m->io;
	return 0;
}

void bs_memdev_fail_at(struct bs_memdev *d, uint64_t n)
{
	struct bs_memdev *p = d->pw;
	pthread_mutex_lock(&p->pmu);
	p->fail_at = n;
	p->ops = 0;
	pthread_mutex_unlock(&p->pmu);
}

/* xorshift64*: the seeded choices of the failure modes */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1DULL;
}

/* Whether pending entry i survives, and how much of it (torn: a sector
 * prefix of a write, written to *part). */
static bool survives(const struct bs_memdev *d, size_t i, enum bs_pc_mode mode,
		     uint64_t param, uint64_t *rng, struct pend *part)
{
	switch (mode) {
	case BS_PC_SUBSET:
		return next_rand(rng) & 1;
	case BS_PC_TORN:
		if (i < param)
			return true;
		if (i == param && d->log[i].kind == P_WRITE && d->log[i].n) {
			const struct pend *e = &d->log[i];
			uint64_t first = e->off / BS_SECTOR, last = (e->off + e->n - 1) / BS_SECTOR;
			uint64_t keep = next_rand(rng) % (last - first + 1);   /* whole sectors */
			uint64_t end = (first + keep) * BS_SECTOR;
			*part = *e;
			part->n = end > e->off ? (size_t)(end - e->off) : 0;
			return part->n > 0;
		}
		return false;
	case BS_PC_PREFIX:
	default:
		return i < param;
	}
}

static void cycle_one(struct bs_memdev *d, enum bs_pc_mode mode, uint64_t param,
		      uint64_t seed)
{
	uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	pthread_mutex_lock(&d->mu);
	struct buf nb = { 0 };
	if (buf_resize(&nb, d->durable.len) == 0) {
		if (d->durable.len)
			memcpy(nb.b, d->durable.b, d->durable.len);
		for (size_t i = 0; i < d->nlog; i++) {
			struct pend part = d->log[i];
			if (survives(d, i, mode, param, &rng, &part))
				apply(&nb, &part);
		}
		free(d->vol.b);
		d->vol = nb;
		/* what survived is now what the disk holds */
		if (buf_resize(&d->durable, nb.len) == 0 && nb.len)
			memcpy(d->durable.b, nb.b, nb.len);
		d->durable.len = nb.len;
	}
	log_clear(d);
	d->reserved = 0;
	d->locked = 0;
	d->lock_gen++;
	pthread_mutex_unlock(&d->mu);
}

void bs_memdev_power_cycle_mode(struct bs_memdev *d, enum bs_pc_mode mode,
				uint64_t param, uint64_t seed)
{
	struct bs_memdev *p = d->pw;
	pthread_mutex_lock(&p->pmu);
	p->dead = 0;
	p->fail_at = 0;
	p->ops = 0;
	struct bs_memdev *sib = p->sibling;
	pthread_mutex_unlock(&p->pmu);
	cycle_one(p, mode, param, seed);
	if (sib)
		cycle_one(sib, mode, param, seed + 1);
}

void bs_memdev_power_cycle(struct bs_memdev *d, uint64_t keep)
{
	bs_memdev_power_cycle_mode(d, BS_PC_PREFIX, keep, 0);
}

void bs_memdev_set_capacity(struct bs_memdev *d, uint64_t bytes)
{
	pthread_mutex_lock(&d->mu);
	d->capacity = bytes;
	pthread_mutex_unlock(&d->mu);
}

int bs_memdev_dead(const struct bs_memdev *d)
{
	return is_dead(d);
}

uint64_t bs_memdev_writes(const struct bs_memdev *d)
{
	return d->writes;
}

uint64_t bs_memdev_syncs(const struct bs_memdev *d)
{
	return d->syncs;
}

void bs_memdev_reset_counts(struct bs_memdev *d)
{
	pthread_mutex_lock(&d->mu);
	d->writes = d->syncs = 0;
	pthread_mutex_unlock(&d->mu);
}

uint64_t bs_memdev_pending(const struct bs_memdev *d)
{
	return d->nlog;
}

int bs_memdev_snapshot(const struct bs_memdev *d, uint8_t **buf, size_t *len)
{
	uint8_t *b = malloc(d->durable.len ? d->durable.len : 1);
	if (!b)
		return -ENOMEM;
	if (d->durable.len)
		memcpy(b, d->durable.b, d->durable.len);
	*buf = b;
	*len = d->durable.len;
	return 0;
}

int bs_memdev_load(struct bs_memdev *d, const void *buf, size_t len)
{
	pthread_mutex_lock(&d->mu);
	int r = buf_resize(&d->durable, 0);
	if (!r)
		r = buf_write(&d->durable, buf, len, 0);
	if (!r)
		r = buf_resize(&d->vol, 0);
	if (!r)
		r = buf_write(&d->vol, buf, len, 0);
	if (!len) {
		d->durable.len = 0;
		d->vol.len = 0;
	}
	log_clear(d);
	d->reserved = 0;
	d->locked = 0;
	d->lock_gen++;
	pthread_mutex_unlock(&d->mu);
	bs_memdev_fail_at(d, 0);
	pthread_mutex_lock(&d->pw->pmu);
	d->pw->dead = 0;
	pthread_mutex_unlock(&d->pw->pmu);
	return r;
}
