/*
 * mounts.c — shell commands and the mount registry of the mount suites
 * (mounts.h).
 */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MOUNTS 32

static char *g_mounted[MAX_MOUNTS];

void h_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int h_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

int h_sh_out(char *out, size_t n, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	out[0] = '\0';
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t got = 0, r;
	while (got < n - 1 && (r = fread(out + got, 1, n - 1 - got, p)) > 0)
		got += r;
	out[got] = '\0';
	char sink[4096];
	while (fread(sink, 1, sizeof sink, p) > 0)
		;
	int st = pclose(p);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool h_is_mounted(const char *path)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/self/mounts", "r");
	if (!f)
		return false;
	size_t n = strlen(path);
	while (!found && fgets(line, sizeof line, f)) {
		char *sp = strchr(line, ' ');
		found = sp && strncmp(sp + 1, path, n) == 0 && sp[1 + n] == ' ';
	}
	fclose(f);
	return found;
}

void h_mount_track(const char *path)
{
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (g_mounted[i] && strcmp(g_mounted[i], path) == 0)
			return;
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (!g_mounted[i]) {
			g_mounted[i] = strdup(path);
			return;
		}
}

void h_mount_untrack(const char *path)
{
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (g_mounted[i] && strcmp(g_mounted[i], path) == 0) {
			free(g_mounted[i]);
			g_mounted[i] = NULL;
		}
}

bool h_force_unmount(const char *path)
{
	for (int i = 0; i < 50 && h_is_mounted(path); i++) {
		if (h_sh("fusermount3 -u '%s' 2>/dev/null", path) == 0)
			break;
		h_sleep_ms(100);
	}
	if (h_is_mounted(path)) {
		fprintf(stderr, "mounts: lazy unmount of %s\n", path);
		h_sh("fusermount3 -uz '%s' 2>/dev/null", path);
	}
	bool gone = !h_is_mounted(path);
	h_mount_untrack(path);
	return gone;
}

void h_unmount_tracked(void)
{
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (g_mounted[i])
			h_force_unmount(g_mounted[i]);
}

void h_detach_tracked(void)
{
	for (int i = 0; i < MAX_MOUNTS; i++)
		if (g_mounted[i])
			h_sh("fusermount3 -uz '%s' 2>/dev/null", g_mounted[i]);
}

bool h_wait_released(const char *img)
{
	int fd = open(img, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	for (int i = 0; i < 200; i++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			flock(fd, LOCK_UN);
			close(fd);
			return true;
		}
		h_sleep_ms(50);
	}
	close(fd);
	return false;
}
