/*
 * xattr.c — one inode's extended attributes as a blob (xattr.h).
 */
#include "xattr.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "util.h"

struct xa_ent {
	const uint8_t *name, *val;
	size_t nlen, vlen;
};

/* The entry at *pos of a checked blob; advances *pos. */
static void ent_at(const uint8_t *b, size_t *pos, struct xa_ent *e)
{
	const uint8_t *p = b + *pos;
	e->nlen = (size_t)p[0] | (size_t)p[1] << 8;
	e->vlen = le32_get(p + 2);
	e->name = p + XA_ENT_HDR;
	e->val = e->name + e->nlen;
	*pos += XA_ENT_HDR + e->nlen + e->vlen;
}

static uint32_t count_of(const uint8_t *b, size_t len)
{
	return len ? le32_get(b + 4) : 0;
}

int xa_check(const uint8_t *b, size_t len)
{
	if (len == 0)
		return 0;
	if (len < XA_HDR || len > XA_BLOB_MAX || memcmp(b, XA_MAGIC, 4) != 0)
		return -EBADMSG;
	uint32_t n = le32_get(b + 4);
	size_t pos = XA_HDR;
	for (uint32_t i = 0; i < n; i++) {
		if (len - pos < XA_ENT_HDR)
			return -EBADMSG;
		size_t nlen = (size_t)b[pos] | (size_t)b[pos + 1] << 8;
		size_t vlen = le32_get(b + pos + 2);
		if (nlen == 0 || nlen > XA_NAME_MAX || vlen > XA_VALUE_MAX ||
		    len - pos - XA_ENT_HDR < nlen + vlen ||
		    memchr(b + pos + XA_ENT_HDR, '\0', nlen))
			return -EBADMSG;
		/* unique names: quadratic, but n is bounded by the blob size */
		size_t q = XA_HDR;
		while (q < pos) {
			struct xa_ent e;
			ent_at(b, &q, &e);
			if (e.nlen == nlen && memcmp(e.name, b + pos + XA_ENT_HDR, nlen) == 0)
				return -EBADMSG;
		}
		pos += XA_ENT_HDR + nlen + vlen;
	}
	return pos == len && n ? 0 : -EBADMSG;
}

static bool find(const uint8_t *b, size_t len, const char *name, struct xa_ent *out,
		 size_t *at, size_t *next)
{
	size_t nlen = strlen(name), pos = XA_HDR;
	uint32_t n = count_of(b, len);
	for (uint32_t i = 0; i < n; i++) {
		size_t here = pos;
		ent_at(b, &pos, out);
		if (out->nlen == nlen && memcmp(out->name, name, nlen) == 0) {
			*at = here;
			*next = pos;
			return true;
		}
	}
	return false;
}

int xa_get(const uint8_t *b, size_t len, const char *name, const uint8_t **val,
	   size_t *vlen)
{
	struct xa_ent e;
	size_t at, next;
	if (!find(b, len, name, &e, &at, &next))
		return -ENODATA;
	*val = e.val;
	*vlen = e.vlen;
	return 0;
}

long xa_list(const uint8_t *b, size_t len, char *buf, size_t size)
{
	size_t pos = XA_HDR, need = 0;
	uint32_t n = count_of(b, len);
	for (uint32_t i = 0; i < n; i++) {
		struct xa_ent e;
		ent_at(b, &pos, &e);
		if (size && need + e.nlen + 1 > size)
			return -ERANGE;
		if (size) {
			memcpy(buf + need, e.name, e.nlen);
			buf[need + e.nlen] = '\0';
		}
		need += e.nlen + 1;
	}
	return (long)need;
}

int xa_edit(const uint8_t *b, size_t len, const char *name, const void *val, size_t vlen,
	    int flags, uint8_t **out, size_t *out_len)
{
	struct xa_ent e;
	size_t at = 0, next = 0, nlen = strlen(name);
	bool have = find(b, len, name, &e, &at, &next);
	uint32_t n = count_of(b, len);
	*out = NULL;
	*out_len = 0;
	if (nlen == 0 || nlen > XA_NAME_MAX)
		return -ERANGE;
	if (val && vlen > XA_VALUE_MAX)
		return -E2BIG;
	if (val && have && (flags & XATTR_CREATE))
		return -EEXIST;
	if ((!val || (flags & XATTR_REPLACE)) && !have)
		return -ENODATA;
	/* the blob without the old entry, plus the new one at the end */
	size_t keep = have ? len - (next - at) : (len ? len : XA_HDR);
	size_t add = val ? XA_ENT_HDR + nlen + vlen : 0;
	uint32_t count = n - (have ? 1 : 0) + (val ? 1 : 0);
	if (count == 0)
		return 0;
	if (keep + add > XA_BLOB_MAX)
		return -ENOSPC;
	uint8_t *nb = malloc(keep + add);
	if (!nb)
		return -ENOMEM;
	if (len) {
		memcpy(nb, b, have ? at : len);
		if (have)
			memcpy(nb + at, b + next, len - next);
	} else {
		memcpy(nb, XA_MAGIC, 4);
	}
	le32_put(nb + 4, count);
	if (val) {
		uint8_t *p = nb + keep;
		p[0] = (uint8_t)nlen;
		p[1] = (uint8_t)(nlen >> 8);
		le32_put(p + 2, (uint32_t)vlen);
		memcpy(p + XA_ENT_HDR, name, nlen);
		if (vlen)
			memcpy(p + XA_ENT_HDR + nlen, val, vlen);
	}
	*out = nb;
	*out_len = keep + add;
	return 0;
}
