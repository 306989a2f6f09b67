/*
 * control.c — /.bstackfs and /.bstackfs.json, the read-only statistics
 * files of docs/design.md §6.  The text itself comes from the volume
 * (vol_stats_text), the JSON from that text (bs_stats_json); this file only
 * gives them a place in the tree and keeps one snapshot per open.
 */
#include "control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stats_json.h"

bool bsfs_is_control(uint64_t parent, const char *name)
{
	return parent == VOL_ROOT_INO && (strcmp(name, VOL_CONTROL_NAME) == 0 ||
					  strcmp(name, VOL_CONTROL_JSON_NAME) == 0);
}

uint64_t bsfs_control_ino(const char *name)
{
	return strcmp(name, VOL_CONTROL_JSON_NAME) == 0 ? BSFS_CONTROL_JSON_INO :
	       BSFS_CONTROL_INO;
}

bool bsfs_is_control_ino(uint64_t ino)
{
	return ino == BSFS_CONTROL_INO || ino == BSFS_CONTROL_JSON_INO;
}

/* One snapshot of control file ino, malloc'd. */
static int snapshot(struct vol *v, uint64_t ino, char **text, size_t *len)
{
	int rc = vol_stats_text(v, text, len);
	if (rc < 0 || ino != BSFS_CONTROL_JSON_INO)
		return rc;
	char *js;
	size_t jlen;
	rc = bs_stats_json(*text, *len, &js, &jlen);
	free(*text);
	*text = rc < 0 ? NULL : js;
	*len = rc < 0 ? 0 : jlen;
	return rc;
}

void bsfs_ns_to_ts(int64_t ns, struct timespec *ts)
{
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
	if (ts->tv_nsec < 0) {
		ts->tv_nsec += 1000000000;
		ts->tv_sec--;
	}
}

int bsfs_control_attr(struct vol *v, uint64_t ino, const struct vol_attr *owner,
		      struct stat *st)
{
	char *text = NULL;
	size_t len = 0;
	int rc = snapshot(v, ino, &text, &len);

	if (rc < 0)
		return rc;
	free(text);
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_uid = owner->uid;
	st->st_gid = owner->gid;
	st->st_size = (off_t)len;
	st->st_blksize = 4096;
	bsfs_ns_to_ts(owner->atime_ns, &st->st_atim);
	bsfs_ns_to_ts(owner->mtime_ns, &st->st_mtim);
	bsfs_ns_to_ts(owner->ctime_ns, &st->st_ctim);
	return 0;
}

int bsfs_control_open(struct vol *v, uint64_t ino, struct bsfs_snapshot **out)
{
	struct bsfs_snapshot *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	int rc = snapshot(v, ino, &s->text, &s->len);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

size_t bsfs_control_read(const struct bsfs_snapshot *s, uint64_t off, size_t size,
			 const char **data)
{
	if (off >= s->len) {
		*data = s->text;
		return 0;
	}
	*data = s->text + off;
	return s->len - off < size ? (size_t)(s->len - off) : size;
}

void bsfs_control_release(struct bsfs_snapshot *s)
{
	if (!s)
		return;
	free(s->text);
	free(s);
}
