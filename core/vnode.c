/*
 * vnode.c — the volume's table of vnodes (vnode.h): a hash by inode number
 * that doubles when it is as full as it has buckets.
 */
#include "vnode.h"

#include <errno.h>
#include <stdlib.h>

#define VT_MIN_BUCKETS 64

static uint64_t bucket(const struct vnode_table *t, uint64_t ino)
{
	/* Fibonacci hashing: consecutive inode numbers spread out */
	return (ino * 0x9E3779B97F4A7C15ULL) & (t->nb - 1);
}

void vt_init(struct vnode_table *t)
{
	*t = (struct vnode_table){ 0 };
	pthread_mutex_init(&t->mu, NULL);
}

void vt_fini(struct vnode_table *t)
{
	for (uint64_t i = 0; i < t->nb; i++) {
		struct vnode *vn = t->b[i];
		while (vn) {
			struct vnode *next = vn->hnext;
			cat_node_free(vn->orphan);
			pthread_mutex_destroy(&vn->lock);
			free(vn);
			vn = next;
		}
	}
	free(t->b);
	pthread_mutex_destroy(&t->mu);
	*t = (struct vnode_table){ 0 };
}

static struct vnode *find(const struct vnode_table *t, uint64_t ino)
{
	if (!t->nb)
		return NULL;
	struct vnode *vn = t->b[bucket(t, ino)];
	while (vn && vn->ino != ino)
		vn = vn->hnext;
	return vn;
}

struct vnode *vt_get(struct vnode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = find(t, ino);
	pthread_mutex_unlock(&t->mu);
	return vn;
}

bool vt_open_in_place(struct vnode_table *t, uint64_t ino, uint64_t durable_seq,
		      uint64_t *gen)
{
	bool ok = false;
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = find(t, ino);
	if (vn) {
		pthread_mutex_lock(&vn->lock);
		ok = vn->opens && vn->alloc_seq <= durable_seq;
		pthread_mutex_unlock(&vn->lock);
		*gen = vn->gen;
	}
	pthread_mutex_unlock(&t->mu);
	return ok;
}

struct cat_node *vt_orphan_of(struct vnode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = find(t, ino);
	struct cat_node *n = vn ? vn->orphan : NULL;
	pthread_mutex_unlock(&t->mu);
	return n;
}

/* Double the buckets (failure only keeps the chains longer). */
static void grow(struct vnode_table *t)
{
	uint64_t nb = t->nb ? t->nb * 2 : VT_MIN_BUCKETS;
	struct vnode **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	struct vnode_table nt = { .b = b, .nb = nb };
	for (uint64_t i = 0; i < t->nb; i++) {
		struct vnode *vn = t->b[i];
		while (vn) {
			struct vnode *next = vn->hnext;
			uint64_t k = bucket(&nt, vn->ino);
			vn->hnext = b[k];
			b[k] = vn;
			vn = next;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

static struct vnode *need(struct vnode_table *t, uint64_t ino)
{
	struct vnode *vn = find(t, ino);
	if (vn)
		return vn;
	if (t->n >= t->nb)
		grow(t);
	if (!t->nb || !(vn = calloc(1, sizeof *vn)))
		return NULL;
	pthread_mutex_init(&vn->lock, NULL);
	vn->ino = ino;
	uint64_t k = bucket(t, ino);
	vn->hnext = t->b[k];
	t->b[k] = vn;
	t->n++;
	return vn;
}

struct vnode *vt_need(struct vnode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = need(t, ino);
	pthread_mutex_unlock(&t->mu);
	return vn;
}

/* Under t->mu. */
static void put(struct vnode_table *t, struct vnode *vn, uint64_t durable_seq)
{
	pthread_mutex_lock(&vn->lock);
	bool held = vn->nlookup || vn->opens;
	pthread_mutex_unlock(&vn->lock);
	if (held || vn->rec_dirty || vn->data_dirty || vn->orphan || vn->pending)
		return;
	if (vn->alloc_seq > durable_seq) {
		/* only the journal's next flush lets go of it */
		vn->pending = true;
		vn->pnext = t->pending;
		t->pending = vn;
		__atomic_store_n(&t->n_pending, t->n_pending + 1, __ATOMIC_RELAXED);
		return;
	}
	struct vnode **p = &t->b[bucket(t, vn->ino)];
	while (*p && *p != vn)
		p = &(*p)->hnext;
	if (!*p)
		return;
	*p = vn->hnext;
	t->n--;
	pthread_mutex_destroy(&vn->lock);
	free(vn);
}

void vt_put(struct vnode_table *t, struct vnode *vn, uint64_t durable_seq)
{
	if (!vn)
		return;
	pthread_mutex_lock(&t->mu);
	put(t, vn, durable_seq);
	pthread_mutex_unlock(&t->mu);
}

void vt_sweep(struct vnode_table *t, uint64_t durable_seq)
{
	pthread_mutex_lock(&t->mu);
	struct vnode **p = &t->pending;
	while (*p) {
		struct vnode *vn = *p;
		if (vn->alloc_seq > durable_seq) {
			p = &vn->pnext;
			continue;
		}
		*p = vn->pnext;
		vn->pending = false;
		vn->pnext = NULL;
		__atomic_store_n(&t->n_pending, t->n_pending - 1, __ATOMIC_RELAXED);
		put(t, vn, durable_seq);
	}
	pthread_mutex_unlock(&t->mu);
}

struct vnode *vt_open(struct vnode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = need(t, ino);
	if (vn) {
		pthread_mutex_lock(&vn->lock);
		vn->opens++;
		pthread_mutex_unlock(&vn->lock);
	}
	pthread_mutex_unlock(&t->mu);
	return vn;
}

bool vt_close(struct vnode *vn)
{
	if (!vn)
		return true;
	pthread_mutex_lock(&vn->lock);
	bool last = vn->opens <= 1;
	if (vn->opens)
		vn->opens--;
	pthread_mutex_unlock(&vn->lock);
	return last;
}

uint32_t vt_opens(struct vnode *vn)
{
	if (!vn)
		return 0;
	pthread_mutex_lock(&vn->lock);
	uint32_t n = vn->opens;
	pthread_mutex_unlock(&vn->lock);
	return n;
}

int vt_remember(struct vnode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = need(t, ino);
	if (vn) {
		pthread_mutex_lock(&vn->lock);
		if (vn->nlookup++ == 0)
			t->n_held++;
		pthread_mutex_unlock(&vn->lock);
	}
	pthread_mutex_unlock(&t->mu);
	return vn ? 0 : -ENOMEM;
}

void vt_forget(struct vnode_table *t, uint64_t ino, uint64_t n, uint64_t durable_seq)
{
	pthread_mutex_lock(&t->mu);
	struct vnode *vn = find(t, ino);
	if (vn) {
		pthread_mutex_lock(&vn->lock);
		bool had = vn->nlookup != 0;
		vn->nlookup = n < vn->nlookup ? vn->nlookup - n : 0;
		if (had && vn->nlookup == 0)
			t->n_held--;
		pthread_mutex_unlock(&vn->lock);
		if (had)
			put(t, vn, durable_seq);
	}
	pthread_mutex_unlock(&t->mu);
}

void vt_counts(struct vnode_table *t, uint64_t *vnodes, uint64_t *held)
{
	pthread_mutex_lock(&t->mu);
	*vnodes = t->n;
	*held = t->n_held;
	pthread_mutex_unlock(&t->mu);
}

void vt_make_orphan(struct vnode_table *t, struct vnode *vn, struct cat_node *n)
{
	pthread_mutex_lock(&t->mu);
	vn->orphan = n;
	vn->rec_dirty = vn->data_dirty = false;   /* no record will ever be written */
	vn->onext = t->orphans;
	t->orphans = vn;
	t->n_orphans++;
	pthread_mutex_unlock(&t->mu);
}

void vt_orphan_done(struct vnode_table *t, struct vnode *vn)
{
	pthread_mutex_lock(&t->mu);
	struct vnode **p = &t->orphans;
	while (*p && *p != vn)
		p = &(*p)->onext;
	if (*p) {
		*p = vn->onext;
		t->n_orphans--;
	}
	vn->onext = NULL;
	cat_node_free(vn->orphan);
	vn->orphan = NULL;
	pthread_mutex_unlock(&t->mu);
}
