/*
 * mounts.h — what the mount suites (test_mount, test_view_mount) share:
 * shell commands, and a registry of the FUSE mounts a suite made so that
 * its teardown, its atexit hook and its fatal-signal handler leave none
 * behind.
 */
#ifndef BSTACKFS_MOUNTS_H
#define BSTACKFS_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>

void h_sleep_ms(long ms);
/* Run a shell command; its exit status, or -1. */
int h_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, capturing stdout (NUL-terminated, truncated to n - 1 bytes). */
int h_sh_out(char *out, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Is path a mount point (/proc/self/mounts)? */
bool h_is_mounted(const char *path);
/* Remember / forget a mount point of ours (up to 32 at once). */
void h_mount_track(const char *path);
void h_mount_untrack(const char *path);
/* fusermount3 -u, retried while busy, lazy as the last resort; forgets
 * the mount.  True when path is no mount point any more. */
bool h_force_unmount(const char *path);
/* Every remembered mount: unmounted (atexit), or detached at once
 * (fusermount3 -uz: a fatal signal, tools may still be busy in it). */
void h_unmount_tracked(void);
void h_detach_tracked(void);
/* Wait (10 s at most) until no daemon holds the image's flock. */
bool h_wait_released(const char *img);

#endif
