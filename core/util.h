/*
 * util.h — the small helpers every layer shares: little-endian encoding,
 * overflow-checked arithmetic and byte-range checks.  Header-only so that
 * each allocator and the catalog use the one definition (STYLE: copy
 * nothing twice).
 */
#ifndef BSTACKFS_UTIL_H
#define BSTACKFS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t le64_get(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static inline void le64_put(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 8; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

static inline uint32_t le32_get(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline void le32_put(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

/* a + b into *out; false (and *out untouched) on overflow. */
static inline bool add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	uint64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return false;
	*out = r;
	return true;
}

static inline bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	uint64_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return false;
	*out = r;
	return true;
}

/* True when [off, off + n) lies inside [0, limit) without overflow. */
static inline bool range_ok(uint64_t off, uint64_t n, uint64_t limit)
{
	uint64_t end;
	return add_ok(off, n, &end) && end <= limit;
}

/* Round v up to a multiple of the power of two a; false on overflow. */
static inline bool align_up_ok(uint64_t v, uint64_t a, uint64_t *out)
{
	uint64_t r;
	if (!add_ok(v, a - 1, &r))
		return false;
	*out = r & ~(a - 1);
	return true;
}

#endif
