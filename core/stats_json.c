/*
 * stats_json.c — the JSON writer, and `key value` lines to a JSON object
 * (stats_json.h).
 */
#include "stats_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct bs_json *j, const char *s, size_t n)
{
	if (j->err)
		return;
	if (j->n + n + 1 > j->cap) {
		size_t cap = (j->cap + n + 1) * 2;
		char *b = realloc(j->b, cap);
		if (!b) {
			j->err = -ENOMEM;
			return;
		}
		j->b = b;
		j->cap = cap;
	}
	memcpy(j->b + j->n, s, n);
	j->n += n;
	j->b[j->n] = '\0';
}

static void puts_(struct bs_json *j, const char *s)
{
	put(j, s, strlen(s));
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left), or 0
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;   /* the second byte's range */
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

static void put_string(struct bs_json *j, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	put(j, "\"", 1);
	for (size_t i = 0; i < n && !j->err;) {
		unsigned char c = p[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(j, esc, 2);
			i++;
		} else if (c < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			put(j, esc, 6);
			i++;
		} else {
			size_t k = utf8_len(p + i, n - i);
			if (k)
				put(j, s + i, k);
			else
				put(j, "\\ufffd", 6);   /* not UTF-8: one byte replaced */
			i += k ? k : 1;
		}
	}
	put(j, "\"", 1);
}

/* Before a value: the separator, the indent and the key, or the error of
 * a key where none belongs (or none where one must be). */
static bool start_value(struct bs_json *j, const char *key, size_t keylen)
{
	if (j->err)
		return false;
	if (j->depth == 0) {
		if (key || j->n) {   /* one top-level value, without a key */
			j->err = -EINVAL;
			return false;
		}
		return true;
	}
	uint32_t bit = 1u << (j->depth - 1);
	bool in_array = j->is_array & bit;
	if (in_array != !key) {
		j->err = -EINVAL;
		return false;
	}
	put(j, j->has_items & bit ? ",\n" : "\n", j->has_items & bit ? 2 : 1);
	j->has_items |= bit;
	for (int d = 0; d < j->depth; d++)
		put(j, "  ", 2);
	if (key) {
		put_string(j, key, keylen);
		put(j, ": ", 2);
	}
	return !j->err;
}

static void begin(struct bs_json *j, const char *key, bool array)
{
	if (!start_value(j, key, key ? strlen(key) : 0))
		return;
	if (j->depth >= BS_JSON_MAX_DEPTH) {
		j->err = -EINVAL;
		return;
	}
	uint32_t bit = 1u << j->depth;
	j->depth++;
	j->has_items &= ~bit;
	if (array)
		j->is_array |= bit;
	else
		j->is_array &= ~bit;
	put(j, array ? "[" : "{", 1);
}

static void end(struct bs_json *j, bool array)
{
	if (j->err)
		return;
	if (j->depth == 0 || !(j->is_array & (1u << (j->depth - 1))) != !array) {
		j->err = -EINVAL;
		return;
	}
	bool empty = !(j->has_items & (1u << (j->depth - 1)));
	j->depth--;
	if (!empty) {   /* an empty one closes at once: {} or [] */
		put(j, "\n", 1);
		for (int d = 0; d < j->depth; d++)
			put(j, "  ", 2);
	}
	put(j, array ? "]" : "}", 1);
}

void bs_json_init(struct bs_json *j)
{
	memset(j, 0, sizeof *j);
}

void bs_json_begin_object(struct bs_json *j, const char *key)
{
	begin(j, key, false);
}

void bs_json_end_object(struct bs_json *j)
{
	end(j, false);
}

void bs_json_begin_array(struct bs_json *j, const char *key)
{
	begin(j, key, true);
}

void bs_json_end_array(struct bs_json *j)
{
	end(j, true);
}

void bs_json_string_n(struct bs_json *j, const char *key, const char *s, size_t n)
{
	if (start_value(j, key, key ? strlen(key) : 0))
		put_string(j, s, n);
}

void bs_json_string(struct bs_json *j, const char *key, const char *s)
{
	if (!s)
		bs_json_null(j, key);
	else
		bs_json_string_n(j, key, s, strlen(s));
}

void bs_json_u64(struct bs_json *j, const char *key, uint64_t v)
{
	char num[24];
	snprintf(num, sizeof num, "%" PRIu64, v);
	if (start_value(j, key, key ? strlen(key) : 0))
		puts_(j, num);
}

void bs_json_i64(struct bs_json *j, const char *key, int64_t v)
{
	char num[24];
	snprintf(num, sizeof num, "%" PRId64, v);
	if (start_value(j, key, key ? strlen(key) : 0))
		puts_(j, num);
}

void bs_json_bool(struct bs_json *j, const char *key, bool v)
{
	if (start_value(j, key, key ? strlen(key) : 0))
		puts_(j, v ? "true" : "false");
}

void bs_json_null(struct bs_json *j, const char *key)
{
	if (start_value(j, key, key ? strlen(key) : 0))
		puts_(j, "null");
}

/* A JSON number as the control file writes them: digits, optionally a
 * fraction.  (No sign, no exponent: the file has neither.) */
static bool is_number(const char *s, size_t n)
{
	size_t i = 0, digits = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (!digits || (digits > 1 && s[0] == '0'))
		return false;
	if (i < n && s[i] == '.') {
		size_t f = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f)
			return false;
	}
	return i == n;
}

void bs_json_stats_members(struct bs_json *j, const char *text, size_t len)
{
	const char *p = text, *end_ = text + len;
	while (!j->err && p < end_) {
		const char *nl = memchr(p, '\n', (size_t)(end_ - p));
		const char *le = nl ? nl : end_;
		const char *sp = memchr(p, ' ', (size_t)(le - p));
		if (le == p) {          /* an empty line */
			p = le + 1;
			continue;
		}
		if (!sp || sp == p || sp + 1 >= le) {
			j->err = -EINVAL;
			return;
		}
		const char *val = sp + 1;
		size_t vn = (size_t)(le - val);
		if (start_value(j, p, (size_t)(sp - p))) {
			if (is_number(val, vn))
				put(j, val, vn);
			else
				put_string(j, val, vn);
		}
		p = le + 1;
	}
}

int bs_json_finish(struct bs_json *j, char **out, size_t *outlen)
{
	if (!j->err && (j->depth || !j->n))
		j->err = -EINVAL;   /* unclosed, or nothing written */
	put(j, "\n", 1);
	if (j->err) {
		int e = j->err;
		bs_json_free(j);
		return e;
	}
	*out = j->b;
	*outlen = j->n;
	j->b = NULL;
	j->n = j->cap = 0;
	return 0;
}

void bs_json_free(struct bs_json *j)
{
	free(j->b);
	j->b = NULL;
	j->n = j->cap = 0;
}

int bs_stats_json(const char *text, size_t len, char **res, size_t *reslen)
{
	struct bs_json j;
	bs_json_init(&j);
	bs_json_begin_object(&j, NULL);
	bs_json_stats_members(&j, text, len);
	bs_json_end_object(&j);
	return bs_json_finish(&j, res, reslen);
}
