/*
 * stats_json.c — `key value` lines to a JSON object (stats_json.h).
 */
#include "stats_json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
	char *b;
	size_t n, cap;
};

static bool put(struct out *o, const char *s, size_t n)
{
	if (o->n + n + 1 > o->cap) {
		size_t cap = (o->cap + n + 1) * 2;
		char *b = realloc(o->b, cap);
		if (!b)
			return false;
		o->b = b;
		o->cap = cap;
	}
	memcpy(o->b + o->n, s, n);
	o->n += n;
	o->b[o->n] = '\0';
	return true;
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

static bool put_string(struct out *o, const char *s, size_t n)
{
	bool ok = put(o, "\"", 1);
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			ok = put(o, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			ok = put(o, esc, 6);
		} else {
			ok = put(o, (const char *)&s[i], 1);
		}
	}
	return ok && put(o, "\"", 1);
}

int bs_stats_json(const char *text, size_t len, char **res, size_t *reslen)
{
	struct out o = { 0 };
	bool ok = put(&o, "{", 1), first = true;
	const char *p = text, *end = text + len;

	while (ok && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *sp = memchr(p, ' ', (size_t)(le - p));
		if (le == p) {          /* an empty line */
			p = le + 1;
			continue;
		}
		if (!sp || sp == p || sp + 1 >= le) {
			free(o.b);
			return -EINVAL;
		}
		const char *val = sp + 1;
		size_t vn = (size_t)(le - val);
		ok = put(&o, first ? "\n  " : ",\n  ", first ? 3 : 4) &&
		     put_string(&o, p, (size_t)(sp - p)) && put(&o, ": ", 2) &&
		     (is_number(val, vn) ? put(&o, val, vn) : put_string(&o, val, vn));
		first = false;
		p = le + 1;
	}
	ok = ok && put(&o, "\n}\n", 3);
	if (!ok) {
		free(o.b);
		return -ENOMEM;
	}
	*res = o.b;
	*reslen = o.n;
	return 0;
}
