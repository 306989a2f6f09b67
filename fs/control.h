/*
 * control.h — the control files /.bstackfs and /.bstackfs.json (docs/design.md
 * §6): read-only regular files at the root that are not allocations.  Each
 * open takes a snapshot of vol_stats_text() that lives in the file handle,
 * so a reader sees one consistent set of figures however long it takes;
 * the JSON file is the same snapshot converted (core/stats_json.c), so the
 * two forms always have the same keys and numbers.
 */
#ifndef BSTACKFS_CONTROL_H
#define BSTACKFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "volume.h"

/* FUSE node id of the control file.  The volume numbers inodes upwards
 * from VOL_ROOT_INO and never reaches this one. */
#define BSFS_CONTROL_INO (UINT64_MAX - 1)
#define BSFS_CONTROL_JSON_INO (UINT64_MAX - 2)

struct bsfs_snapshot {
	char *text;
	size_t len;
};

/* Nanoseconds since the epoch as a timespec (also for ops.c's attrs). */
void bsfs_ns_to_ts(int64_t ns, struct timespec *ts);

/* Is (parent, name) one of the control files' entries? */
bool bsfs_is_control(uint64_t parent, const char *name);
/* The node id of control file `name` (one bsfs_is_control accepts). */
uint64_t bsfs_control_ino(const char *name);
/* Is ino one of the control files' node ids? */
bool bsfs_is_control_ino(uint64_t ino);

/* Attributes of control file ino; the size is that of a fresh snapshot.
 * `owner` gives uid/gid and times (the root directory's). */
int bsfs_control_attr(struct vol *v, uint64_t ino, const struct vol_attr *owner,
		      struct stat *st);

/* Take a snapshot of control file ino for one open file handle; *out is
 * malloc'd. */
int bsfs_control_open(struct vol *v, uint64_t ino, struct bsfs_snapshot **out);
/* Bytes [off, off + size) of the snapshot (fewer at its end). */
size_t bsfs_control_read(const struct bsfs_snapshot *s, uint64_t off, size_t size,
			 const char **data);
void bsfs_control_release(struct bsfs_snapshot *s);

#endif
