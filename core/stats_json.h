/*
 * stats_json.h — the control file's `key value` text as one JSON object
 * (docs/design.md §6): the same keys in the same order, values that are
 * decimal numbers as JSON numbers, everything else as JSON strings.
 * Converting the one text (vol_stats_text) keeps the two forms from ever
 * disagreeing.
 */
#ifndef BSTACKFS_STATS_JSON_H
#define BSTACKFS_STATS_JSON_H

#include <stddef.h>

/* *out is malloc'd, NUL-terminated and ends with a newline; *outlen
 * excludes the NUL.  -EINVAL for a line without a key and a value. */
int bs_stats_json(const char *text, size_t len, char **out, size_t *outlen);

#endif
