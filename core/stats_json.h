/*
 * stats_json.h — the control file's `key value` text as one JSON object
 * (docs/design.md §6): the same keys in the same order, values that are
 * decimal numbers as JSON numbers, everything else as JSON strings.
 * Converting the one text (vol_stats_text) keeps the two forms from ever
 * disagreeing.
 *
 * Underneath is the project's one JSON writer (struct bs_json), which
 * bstackfs-fsck --json uses too: objects and arrays nested up to
 * BS_JSON_MAX_DEPTH, one member or element per line, two spaces of indent
 * per level.  Strings are escaped as RFC 8259 wants: `"` and `\` with a
 * backslash, control characters as \u00XX, and bytes that are not UTF-8
 * (a file name may hold any byte) as U+FFFD, so the output is always valid
 * UTF-8 JSON.
 */
#ifndef BSTACKFS_STATS_JSON_H
#define BSTACKFS_STATS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out is malloc'd, NUL-terminated and ends with a newline; *outlen
 * excludes the NUL.  -EINVAL for a line without a key and a value. */
int bs_stats_json(const char *text, size_t len, char **out, size_t *outlen);

#define BS_JSON_MAX_DEPTH 16

/*
 * The writer.  Every call appends; inside an object the key is required,
 * inside an array (and for the top-level value) it must be NULL.  Errors
 * (out of memory, a key where none belongs or the other way round, too
 * deep, a close that does not match) are sticky and reported by
 * bs_json_finish, so a caller checks once.
 */
struct bs_json {
	char *b;
	size_t n, cap;
	int depth;
	uint32_t is_array;        /* bit d: the container at depth d+1 is an array */
	uint32_t has_items;       /* bit d: it has a member already */
	int err;                  /* 0 or the first error (-ENOMEM, -EINVAL) */
};

void bs_json_init(struct bs_json *j);
void bs_json_begin_object(struct bs_json *j, const char *key);
void bs_json_end_object(struct bs_json *j);
void bs_json_begin_array(struct bs_json *j, const char *key);
void bs_json_end_array(struct bs_json *j);
void bs_json_string(struct bs_json *j, const char *key, const char *s);
void bs_json_string_n(struct bs_json *j, const char *key, const char *s, size_t n);
void bs_json_u64(struct bs_json *j, const char *key, uint64_t v);
void bs_json_i64(struct bs_json *j, const char *key, int64_t v);
void bs_json_bool(struct bs_json *j, const char *key, bool v);
void bs_json_null(struct bs_json *j, const char *key);
/* The control file's `key value` lines as members of the open object
 * (numbers as numbers, the rest as strings): what bs_stats_json wraps. */
void bs_json_stats_members(struct bs_json *j, const char *text, size_t len);
/* Ends the document (every container closed, a final newline): *out is
 * malloc'd and NUL-terminated, *outlen excludes the NUL.  On an error the
 * buffer is freed and the error returned. */
int bs_json_finish(struct bs_json *j, char **out, size_t *outlen);
/* Drops the buffer without finishing (after an error elsewhere). */
void bs_json_free(struct bs_json *j);

#endif
