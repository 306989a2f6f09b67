/*
 * inspect.c — `bstackfs-inspect [--json] IMAGE COMMAND [ARGS]`, the offline
 * inspector (docs/design.md §7), like debugfs and `pmempool info`.
 *
 * Never writes the image: it is read through roview.c (locked while it is
 * copied into memory, so a mounted image is refused; the volume opens the
 * copy, and any open-time recovery writes only there).  Every report is
 * the volume's and the heap map's (core/heapmap.c) view; nothing here
 * decodes an on-disk format.
 *
 * Commands:
 *   stats              the control file's figures (--json: /.bstackfs.json's)
 *   ls [PATH]          a directory's entries (default /)
 *   stat PATH          attributes, and a file's allocation and extent
 *   cat PATH           a file's bytes to stdout
 *   extract PATH DEST  a file's bytes to a new file DEST
 *   free               the allocator's free blocks in its own order
 *   hist               power-of-two histograms of allocation and free sizes
 *   map [--svg OUT] [--columns N]
 *                      every span of the payload; --svg draws them binned
 *                      into N columns x at most 64 rows of cells
 *
 * Exit status: 0 done; 1 refused or failed (one line on stderr:
 * "bstackfs-inspect: IMAGE: reason"); 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heapmap.h"
#include "roview.h"
#include "stats_json.h"
#include "volume.h"

#define PROG "bstackfs-inspect"
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define SVG_MAX_ROWS 64
#define SVG_CELL_W 2
#define SVG_ROW_H 18
#define SVG_DEFAULT_COLUMNS 512

struct ctx {
	const char *image;
	bool json;
	struct vol *v;
	/* every inode with its path, sorted by ino (paths_load) */
	struct ent {
		uint64_t ino;
		char *path;
		struct vol_attr a;
	} *ents;
	size_t n_ents, cap_ents;
};

static int fail(const struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "%s: %s: ", PROG, c->image);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--json] IMAGE COMMAND [ARGS]\n"
		"commands: stats | ls [PATH] | stat PATH | cat PATH | extract PATH DEST |\n"
		"          free | hist | map [--svg OUT] [--columns N]\n", PROG);
}

static void help(void)
{
	usage(stdout);
	printf("\n"
	       "Reads the bstackfs image IMAGE without ever writing it.  A mounted (locked)\n"
	       "image is refused.  The image is copied into memory (images up to %llu GiB)\n"
	       "and opened there, so open-time recovery never reaches the file.\n"
	       "\n"
	       "    stats              the control file's figures\n"
	       "    ls [PATH]          a directory's entries with their allocations\n"
	       "    stat PATH          attributes; a file's offset, capacity, size, extent\n"
	       "    cat PATH           a file's bytes to stdout\n"
	       "    extract PATH DEST  a file's bytes to the new file DEST\n"
	       "    free               the allocator's free blocks (tree or free list order)\n"
	       "    hist               histograms of allocation and free-block sizes\n"
	       "    map [--svg OUT] [--columns N]\n"
	       "                       every span of the payload (file, slack, overhead,\n"
	       "                       catalog, free, header, unreferenced); --svg draws a\n"
	       "                       heap map binned into N columns (default %d)\n"
	       "    --json             every report as JSON\n"
	       "    -h, --help / -V, --version\n"
	       "\n"
	       "Exit status: 0 done, 1 refused or failed (one line on stderr), 2 usage.\n",
	       (unsigned long long)(ROVIEW_MAX >> 30), SVG_DEFAULT_COLUMNS);
}

/* ---- JSON output --------------------------------------------------------- */

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* ---- the tree: every inode's path ---------------------------------------- */

static int add_ent(struct ctx *c, const char *path, const struct vol_attr *a)
{
	if (c->n_ents == c->cap_ents) {
		size_t cap = c->cap_ents ? 2 * c->cap_ents : 64;
		struct ent *e = realloc(c->ents, cap * sizeof *e);
		if (!e)
			return -ENOMEM;
		c->ents = e;
		c->cap_ents = cap;
	}
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	c->ents[c->n_ents++] = (struct ent){ a->ino, p, *a };
	return 0;
}

struct kids {
	struct ctx *c;
	const char *dir;
	size_t first;             /* index of the first child added */
	int err;
};

static int collect(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct kids *k = ctx;
	char *p;
	(void)pos;
	if (asprintf(&p, "%s/%s", strcmp(k->dir, "/") ? k->dir : "", name) < 0) {
		k->err = -ENOMEM;
		return 1;
	}
	k->err = add_ent(k->c, p, a);
	free(p);
	return k->err != 0;
}

/* Breadth first: a directory's children are collected (the volume's read
 * lock held), then visited (lock released). */
static int paths_load(struct ctx *c)
{
	struct vol_attr root;
	int r = vol_getattr(c->v, VOL_ROOT_INO, &root);
	if (r || (r = add_ent(c, "/", &root)))
		return r;
	for (size_t i = 0; i < c->n_ents; i++) {
		if ((c->ents[i].a.mode & S_IFMT) != S_IFDIR)
			continue;
		char *dir = strdup(c->ents[i].path);
		if (!dir)
			return -ENOMEM;
		struct kids k = { c, dir, c->n_ents, 0 };
		r = vol_readdir(c->v, c->ents[i].ino, 0, collect, &k);
		free(dir);
		if (r || (r = k.err))
			return r;
	}
	return 0;
}

static int by_ino(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static const struct ent *ent_of(const struct ctx *c, uint64_t ino)
{
	struct ent key = { .ino = ino };
	return bsearch(&key, c->ents, c->n_ents, sizeof key, by_ino);
}

static const char *path_of(const struct ctx *c, uint64_t ino)
{
	const struct ent *e = ent_of(c, ino);
	return e ? e->path : "(removed while open)";
}

/* PATH -> attributes, component by component. */
static int resolve(struct ctx *c, const char *path, struct vol_attr *out)
{
	char *dup = strdup(path), *save = NULL;
	int r = dup ? vol_getattr(c->v, VOL_ROOT_INO, out) : -ENOMEM;
	for (char *t = dup ? strtok_r(dup, "/", &save) : NULL; !r && t;
	     t = strtok_r(NULL, "/", &save))
		r = vol_lookup(c->v, out->ino, t, out);
	free(dup);
	return r;
}

static int resolve_or_fail(struct ctx *c, const char *path, struct vol_attr *a)
{
	int r = resolve(c, path, a);
	if (r)
		return fail(c, "%s: %s", path, r == -ENOTDIR ? "not a directory" : strerror(-r));
	return 0;
}

/* ---- stats ---------------------------------------------------------------- */

static int cmd_stats(struct ctx *c)
{
	char *text = NULL, *js = NULL;
	size_t len = 0, jlen = 0;
	int r = vol_stats_text(c->v, &text, &len);
	if (!r && c->json)
		r = bs_stats_json(text, len, &js, &jlen);
	if (r) {
		free(text);
		return fail(c, "stats: %s", strerror(-r));
	}
	fwrite(c->json ? js : text, 1, c->json ? jlen : len, stdout);
	free(text);
	free(js);
	return 0;
}

/* ---- ls, stat, cat, extract ---------------------------------------------- */

static bool is_dir(const struct vol_attr *a)
{
	return (a->mode & S_IFMT) == S_IFDIR;
}

/* ls -l's letter and a word for each kind of inode. */
static char type_char(const struct vol_attr *a)
{
	switch (a->mode & S_IFMT) {
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFIFO: return 'p';
	case S_IFSOCK: return 's';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	}
	return '-';
}

static const char *type_word(const struct vol_attr *a)
{
	switch (a->mode & S_IFMT) {
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "chardev";
	case S_IFBLK: return "blockdev";
	}
	return "file";
}

struct lsctx {
	struct ctx *c;
	bool first;
};

static int ls_one(void *ctx, const char *name, const struct vol_attr *a, uint64_t pos)
{
	struct lsctx *l = ctx;
	struct vol_alloc_rec rec = { 0 };
	(void)pos;
	if (!is_dir(a))
		vol_alloc_of(l->c->v, a->ino, &rec);
	if (l->c->json) {
		printf("%s\n    {\"name\": ", l->first ? "" : ",");
		jstr(stdout, name);
		printf(", \"ino\": %" PRIu64 ", \"type\": \"%s\", \"mode\": %u, \"uid\": %u, "
		       "\"gid\": %u, \"size\": %" PRIu64 ", \"offset\": %" PRIu64
		       ", \"capacity\": %" PRIu64 "}", a->ino, type_word(a),
		       a->mode & 07777, a->uid, a->gid, a->size, rec.slice.off, rec.slice.len);
	} else {
		printf("%c%04o %6u %6u %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "  %s%s\n",
		       type_char(a), a->mode & 07777, a->uid, a->gid, a->size,
		       rec.slice.off, rec.slice.len, name, is_dir(a) ? "/" : "");
	}
	l->first = false;
	return 0;
}

static int cmd_ls(struct ctx *c, const char *path)
{
	struct vol_attr a;
	struct lsctx l = { c, true };
	if (resolve_or_fail(c, path, &a))
		return EXIT_FAIL;
	if (!is_dir(&a))
		return fail(c, "%s: not a directory", path);
	if (c->json) {
		printf("{\"path\": ");
		jstr(stdout, path);
		printf(", \"entries\": [");
	} else {
		printf("type/mode    uid    gid         size       offset     capacity  name\n");
	}
	int r = vol_readdir(c->v, a.ino, 0, ls_one, &l);
	if (c->json)
		printf("%s]}\n", l.first ? "" : "\n  ");
	return r ? fail(c, "ls %s: %s", path, strerror(-r)) : 0;
}

static int cmd_stat(struct ctx *c, const char *path)
{
	struct vol_attr a;
	struct vol_alloc_rec rec = { 0 };
	if (resolve_or_fail(c, path, &a))
		return EXIT_FAIL;
	bool dir = is_dir(&a);
	if (!dir && vol_alloc_of(c->v, a.ino, &rec))
		return fail(c, "%s: cannot read its allocation", path);
	if (c->json) {
		printf("{\"path\": ");
		jstr(stdout, path);
		printf(", \"ino\": %" PRIu64 ", \"parent\": %" PRIu64 ", \"type\": \"%s\", "
		       "\"mode\": %u, \"uid\": %u, \"gid\": %u, \"nlink\": %u, \"size\": %"
		       PRIu64 ", \"atime_ns\": %" PRId64 ", \"mtime_ns\": %" PRId64
		       ", \"ctime_ns\": %" PRId64, a.ino, a.parent, type_word(&a),
		       a.mode & 07777, a.uid, a.gid, a.nlink, a.size, a.atime_ns, a.mtime_ns,
		       a.ctime_ns);
		if (!dir)
			printf(", \"allocation\": {\"offset\": %" PRIu64 ", \"capacity\": %" PRIu64
			       ", \"size\": %" PRIu64 ", \"extent_start\": %" PRIu64
			       ", \"extent_bytes\": %" PRIu64 "}", rec.slice.off, rec.slice.len,
			       rec.size, rec.ext_start, rec.ext_len);
		printf("}\n");
		return 0;
	}
	printf("path: %s\ninode: %" PRIu64 "\nparent: %" PRIu64 "\ntype: %s\nmode: %04o\n"
	       "uid: %u\ngid: %u\nlinks: %u\nsize: %" PRIu64 "\natime_ns: %" PRId64
	       "\nmtime_ns: %" PRId64 "\nctime_ns: %" PRId64 "\n", path, a.ino, a.parent,
	       dir ? "directory" : type_word(&a), a.mode & 07777, a.uid, a.gid, a.nlink, a.size,
	       a.atime_ns, a.mtime_ns, a.ctime_ns);
	if (!dir) {
		printf("allocation: offset %" PRIu64 " capacity %" PRIu64 " size %" PRIu64 "\n",
		       rec.slice.off, rec.slice.len, rec.size);
		printf("extent: start %" PRIu64 " bytes %" PRIu64
		       " (headers and rounding included)\n", rec.ext_start, rec.ext_len);
	}
	return 0;
}

static int copy_out(struct ctx *c, const char *path, int fd)
{
	struct vol_attr a;
	char buf[1 << 16];
	uint64_t off = 0;
	if (resolve_or_fail(c, path, &a))
		return EXIT_FAIL;
	if (is_dir(&a))
		return fail(c, "%s: is a directory", path);
	if (!S_ISREG(a.mode))
		return fail(c, "%s: not a regular file (%s)", path, type_word(&a));
	while (off < a.size) {
		ssize_t n = vol_read(c->v, a.ino, buf, sizeof buf, off);
		if (n <= 0)
			return fail(c, "%s: read: %s", path, n < 0 ? strerror((int)-n) : "short");
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(fd, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return fail(c, "%s: write: %s", path, strerror(errno));
			done += w;
		}
		off += (uint64_t)n;
	}
	return 0;
}

static int cmd_extract(struct ctx *c, const char *path, const char *dest)
{
	struct vol_attr a;
	if (resolve_or_fail(c, path, &a))
		return EXIT_FAIL;
	if (is_dir(&a))
		return fail(c, "%s: is a directory", path);
	int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, a.mode & 0777);
	if (fd < 0)
		return fail(c, "%s: %s", dest, errno == EEXIST ? "already exists" : strerror(errno));
	int st = copy_out(c, path, fd);
	if (close(fd) < 0 && !st)
		st = fail(c, "%s: %s", dest, strerror(errno));
	if (st)
		unlink(dest);
	else if (c->json) {
		printf("{\"path\": ");
		jstr(stdout, path);
		printf(", \"dest\": ");
		jstr(stdout, dest);
		printf(", \"bytes\": %" PRIu64 "}\n", a.size);
	} else {
		printf("%s -> %s: %" PRIu64 " bytes\n", path, dest, a.size);
	}
	return st;
}

/* ---- free, hist -------------------------------------------------------- */

struct freectx {
	struct ctx *c;
	uint64_t n, bytes;
	bool print;
};

static int free_one(void *ctx, const struct hm_free *f)
{
	struct freectx *x = ctx;
	if (x->print && x->c->json)
		printf("%s\n    {\"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"block_start\": %"
		       PRIu64 ", \"block_bytes\": %" PRIu64 ", \"%s\": %" PRIu64 "}",
		       x->n ? "," : "", f->start, f->len, f->blk_start, f->blk_len,
		       vol_allocator(x->c->v)->desc->free_order, f->depth);
	else if (x->print)
		printf("%14" PRIu64 " %14" PRIu64 " %8" PRIu64 "\n", f->start, f->len, f->depth);
	x->n++;
	x->bytes += f->len;
	return 0;
}

static int cmd_free(struct ctx *c)
{
	struct bs_alloc *a = vol_allocator(c->v);
	struct freectx x = { c, 0, 0, true };
	const char *how = hm_free_structure(a->kind);
	if (c->json)
		printf("{\"allocator\": \"%s\", \"structure\": \"%s\", \"blocks\": [",
		       bs_alloc_kind_name(a->kind), how);
	else
		printf("allocator %s: free space in %s order\n%14s %14s %8s\n",
		       bs_alloc_kind_name(a->kind), how, "offset", "bytes",
		       a->desc->free_order);
	int r = hm_walk_free(a, free_one, &x);
	if (c->json)
		printf("%s], \"free_blocks\": %" PRIu64 ", \"free_bytes\": %" PRIu64 "}\n",
		       x.n ? "\n  " : "", x.n, x.bytes);
	else
		printf("free blocks %" PRIu64 ", free bytes %" PRIu64 "\n", x.n, x.bytes);
	return r ? fail(c, "free: %s", r == -EUCLEAN ? "damaged free structure" :
			strerror(-r)) : 0;
}

#define HIST_BUCKETS 64
struct hist {
	uint64_t count[HIST_BUCKETS], bytes[HIST_BUCKETS];
	uint64_t n, total;
};

static void hist_add(struct hist *h, uint64_t len)
{
	int b = len ? 63 - __builtin_clzll(len) : 0;
	h->count[b]++;
	h->bytes[b] += len;
	h->n++;
	h->total += len;
}

static int hist_alloc(void *ctx, const struct vol_alloc_rec *r)
{
	if (r->what == VOL_ALLOC_FILE)
		hist_add(ctx, r->ext_len);
	return 0;
}

static int hist_free(void *ctx, const struct hm_free *f)
{
	hist_add(ctx, f->len);
	return 0;
}

static void hist_print(const struct ctx *c, const char *name, const struct hist *h, bool last)
{
	bool first = true;
	if (c->json) {
		printf("  \"%s\": {\"count\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"buckets\": [",
		       name, h->n, h->total);
	} else {
		printf("%s: %" PRIu64 " (%" PRIu64 " bytes)\n", name, h->n, h->total);
		printf("  %-24s %10s %14s %8s\n", "size range (bytes)", "count", "bytes", "percent");
	}
	for (int b = 0; b < HIST_BUCKETS; b++) {
		if (!h->count[b])
			continue;
		uint64_t lo = 1ULL << b, hi = b == 63 ? UINT64_MAX : (lo << 1) - 1;
		double pct = h->total ? 100.0 * (double)h->bytes[b] / (double)h->total : 0;
		if (c->json) {
			printf("%s\n    {\"min\": %" PRIu64 ", \"max\": %" PRIu64 ", \"count\": %"
			       PRIu64 ", \"bytes\": %" PRIu64 "}", first ? "" : ",", lo, hi,
			       h->count[b], h->bytes[b]);
		} else {
			char range[48];
			snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, lo, hi);
			printf("  %-24s %10" PRIu64 " %14" PRIu64 " %7.2f%%\n", range, h->count[b],
			       h->bytes[b], pct);
		}
		first = false;
	}
	if (c->json)
		printf("%s]}%s\n", first ? "" : "\n  ", last ? "" : ",");
}

static int cmd_hist(struct ctx *c)
{
	struct hist al = { 0 }, fr = { 0 };
	int r = vol_foreach_alloc(c->v, hist_alloc, &al);
	if (!r)
		r = hm_walk_free(vol_allocator(c->v), hist_free, &fr);
	if (r)
		return fail(c, "hist: %s", strerror(-r));
	if (c->json)
		printf("{\n");
	hist_print(c, "allocations", &al, false);
	hist_print(c, "free", &fr, true);
	if (c->json)
		printf("}\n");
	return 0;
}

/* ---- map ---------------------------------------------------------------- */

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			if ((unsigned char)*s >= 0x20)
				fputc(*s, f);
		}
	}
}

static const char *const kind_colour[HM_NKINDS] = {
	[HM_HEADER] = "#444444", [HM_FILE] = NULL, [HM_SLACK] = "#f5d76e",
	[HM_OVERHEAD] = "#d62728", [HM_CATALOG] = "#9467bd", [HM_FREE] = "#e6e6e6",
	[HM_UNREF] = "#ff7f0e", [HM_XATTR] = "#17becf",
};

static double hue_part(double p, double q, double t)
{
	if (t < 0)
		t += 1;
	if (t > 1)
		t -= 1;
	if (t < 1.0 / 6)
		return p + (q - p) * 6 * t;
	if (t < 0.5)
		return q;
	if (t < 2.0 / 3)
		return p + (q - p) * (2.0 / 3 - t) * 6;
	return p;
}

/* A file's colour: a hue from its inode, in the greens and blues (the other
 * kinds use greys, reds, yellows and purples); HSL to RGB. */
static void file_colour(uint64_t ino, char out[16])
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ULL;
	double hue = (90 + (double)(h >> 40 & 0xffff) / 65535.0 * 160) / 360;
	double s = 0.6, l = 0.38 + (double)(h >> 20 & 0xff) / 255.0 * 0.14;
	double q = l < 0.5 ? l * (1 + s) : l + s - l * s, p = 2 * l - q;
	snprintf(out, 16, "#%02x%02x%02x", (unsigned)(hue_part(p, q, hue + 1.0 / 3) * 255),
		 (unsigned)(hue_part(p, q, hue) * 255),
		 (unsigned)(hue_part(p, q, hue - 1.0 / 3) * 255));
}

/* One cell of the picture: bytes per kind, and the file with the most. */
struct cell {
	uint64_t bytes[HM_NKINDS];
	uint64_t file_ino, file_bytes;
};

static void cell_key(const struct cell *cl, enum hm_kind *k, uint64_t *ino)
{
	*k = HM_FREE;
	uint64_t best = 0;
	for (int i = 0; i < HM_NKINDS; i++)
		if (cl->bytes[i] > best)
			best = cl->bytes[i], *k = (enum hm_kind)i;
	*ino = *k == HM_FILE ? cl->file_ino : 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s && s[1] ? s + 1 : p;
}

static int write_svg(struct ctx *c, const struct hm_map *m, const char *out,
		     uint64_t cols, uint64_t *rows_out, uint64_t *bpc_out)
{
	uint64_t plen = m->payload_bytes ? m->payload_bytes : 1;
	uint64_t rows = (plen + cols - 1) / cols;
	if (rows > SVG_MAX_ROWS)
		rows = SVG_MAX_ROWS;
	uint64_t bpc = (plen + cols * rows - 1) / (cols * rows);
	rows = (plen + cols * bpc - 1) / (cols * bpc);
	uint64_t ncells = rows * cols;
	struct cell *cells = calloc(ncells, sizeof *cells);
	if (!cells)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		const struct hm_span *s = &m->spans[i];
		for (uint64_t at = s->start, end = s->start + s->len; at < end;) {
			uint64_t ci = at / bpc, ce = (ci + 1) * bpc;
			uint64_t take = (ce < end ? ce : end) - at;
			struct cell *cl = &cells[ci < ncells ? ci : ncells - 1];
			cl->bytes[s->kind] += take;
			if (s->kind == HM_FILE && take > cl->file_bytes)
				cl->file_bytes = take, cl->file_ino = s->ino;
			at += take;
		}
	}
	FILE *f = fopen(out, "w");
	if (!f) {
		int e = -errno;
		free(cells);
		return e;
	}
	struct bs_alloc_stats st;
	bs_alloc_stats(vol_allocator(c->v), &st);
	uint64_t width = cols * SVG_CELL_W, top = 40, map_h = rows * SVG_ROW_H;
	/* legend: the kinds, then the largest files */
	size_t nfiles = 0;
	struct ent **files = malloc((c->n_ents + 1) * sizeof *files);
	for (size_t i = 0; files && i < c->n_ents; i++)
		if (!is_dir(&c->ents[i].a))
			files[nfiles++] = &c->ents[i];
	size_t shown = nfiles < 40 ? nfiles : 40;
	for (size_t i = 0; i < shown; i++)          /* partial selection: largest first */
		for (size_t j = i + 1; j < nfiles; j++)
			if (files[j]->a.size > files[i]->a.size) {
				struct ent *t = files[i];
				files[i] = files[j];
				files[j] = t;
			}
	uint64_t legend_y = top + map_h + 24;
	uint64_t height = legend_y + 20 * (HM_NKINDS + shown + 2);
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%" PRIu64 "\" height=\"%"
		PRIu64 "\" font-family=\"monospace\" font-size=\"11\">\n", width + 20, height);
	fprintf(f, "<title>heap map of ");
	xml_text(f, c->image);
	fprintf(f, "</title>\n<text x=\"10\" y=\"16\" font-size=\"13\">");
	xml_text(f, c->image);
	fprintf(f, ": %s allocator, payload %" PRIu64 " bytes</text>\n"
		"<text x=\"10\" y=\"32\">offset 0 at the top left, %" PRIu64 " columns x %" PRIu64
		" rows, %" PRIu64 " bytes per cell (each cell shows what holds most of it)</text>\n",
		st.name, m->payload_bytes, cols, rows, bpc);
	fprintf(f, "<g id=\"map\" class=\"map\" data-columns=\"%" PRIu64 "\" data-rows=\"%" PRIu64
		"\" data-bytes-per-cell=\"%" PRIu64 "\">\n", cols, rows, bpc);
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t x = 0; x < cols;) {
			uint64_t ci = r * cols + x;
			if (ci * bpc >= m->payload_bytes)
				break;
			enum hm_kind k, k2;
			uint64_t ino, ino2, x2 = x + 1;
			cell_key(&cells[ci], &k, &ino);
			for (; x2 < cols && (r * cols + x2) * bpc < m->payload_bytes; x2++) {
				cell_key(&cells[r * cols + x2], &k2, &ino2);
				if (k2 != k || ino2 != ino)
					break;
			}
			char col[16];
			if (k == HM_FILE)
				file_colour(ino, col);
			else
				snprintf(col, sizeof col, "%s", kind_colour[k]);
			uint64_t from = ci * bpc, to = (r * cols + x2) * bpc;
			if (to > m->payload_bytes)
				to = m->payload_bytes;
			fprintf(f, "<rect x=\"%" PRIu64 "\" y=\"%" PRIu64 "\" width=\"%" PRIu64
				"\" height=\"%d\" fill=\"%s\" data-kind=\"%s\"><title>",
				10 + x * SVG_CELL_W, top + r * SVG_ROW_H, (x2 - x) * SVG_CELL_W,
				SVG_ROW_H - 2, col, hm_kind_name(k));
			if (k == HM_FILE)
				xml_text(f, path_of(c, ino));
			else
				fputs(hm_kind_name(k), f);
			fprintf(f, ": bytes %" PRIu64 "..%" PRIu64 "</title></rect>\n", from, to);
			if (k == HM_FILE && (x2 - x) * SVG_CELL_W >= 48) {
				fprintf(f, "<text x=\"%" PRIu64 "\" y=\"%" PRIu64 "\" fill=\"#ffffff\" "
					"clip-path=\"none\">", 12 + x * SVG_CELL_W,
					top + r * SVG_ROW_H + 12);
				const char *bn = base_name(path_of(c, ino));
				size_t room = (x2 - x) * SVG_CELL_W / 7;
				char lab[64];
				snprintf(lab, sizeof lab, "%.*s", (int)(room < 63 ? room : 63), bn);
				xml_text(f, lab);
				fprintf(f, "</text>\n");
			}
			x = x2;
		}
	}
	fprintf(f, "</g>\n<g id=\"legend\">\n");
	uint64_t y = legend_y;
	for (int k = 0; k < HM_NKINDS; k++, y += 20) {
		char col[16];
		if (k == HM_FILE)
			file_colour(1, col);
		fprintf(f, "<rect x=\"10\" y=\"%" PRIu64 "\" width=\"14\" height=\"14\" fill=\"%s\"/>"
			"<text x=\"30\" y=\"%" PRIu64 "\">%s: %" PRIu64 " bytes%s</text>\n", y,
			k == HM_FILE ? col : kind_colour[k], y + 11, hm_kind_name((enum hm_kind)k),
			m->bytes[k], k == HM_FILE ? " (each file its own green or blue)" : "");
	}
	y += 10;
	for (size_t i = 0; i < shown; i++, y += 20) {
		char col[16];
		file_colour(files[i]->ino, col);
		fprintf(f, "<rect x=\"10\" y=\"%" PRIu64 "\" width=\"14\" height=\"14\" fill=\"%s\"/>"
			"<text x=\"30\" y=\"%" PRIu64 "\" class=\"file\">", y, col, y + 11);
		xml_text(f, files[i]->path);
		fprintf(f, ": %" PRIu64 " bytes</text>\n", files[i]->a.size);
	}
	if (nfiles > shown)
		fprintf(f, "<text x=\"10\" y=\"%" PRIu64 "\">... and %zu more files</text>\n",
			y + 11, nfiles - shown);
	fprintf(f, "</g>\n</svg>\n");
	free(files);
	free(cells);
	int e = ferror(f) ? -EIO : 0;
	if (fclose(f) && !e)
		e = -errno;
	*rows_out = rows;
	*bpc_out = bpc;
	return e;
}

static int cmd_map(struct ctx *c, const char *svg, uint64_t cols)
{
	struct hm_map m;
	uint64_t rows = 0, bpc = 0;
	int r = hm_build(c->v, &m);
	if (r)
		return fail(c, "map: %s", r == -EUCLEAN ? "the allocator and the catalog claim "
			    "the same bytes (damaged image; run bstackfs-fsck)" : strerror(-r));
	if (svg && (r = write_svg(c, &m, svg, cols, &rows, &bpc))) {
		hm_free_map(&m);
		return fail(c, "%s: %s", svg, strerror(-r));
	}
	if (c->json) {
		printf("{\"payload_bytes\": %" PRIu64 ", \"totals\": {", m.payload_bytes);
		for (int k = 0; k < HM_NKINDS; k++)
			printf("%s\"%s\": %" PRIu64, k ? ", " : "", hm_kind_name((enum hm_kind)k),
			       m.bytes[k]);
		printf("}");
		if (svg) {
			printf(", \"svg\": {\"path\": ");
			jstr(stdout, svg);
			printf(", \"columns\": %" PRIu64 ", \"rows\": %" PRIu64
			       ", \"bytes_per_cell\": %" PRIu64 "}", cols, rows, bpc);
		}
		printf(", \"spans\": [");
		for (size_t i = 0; i < m.n; i++) {
			const struct hm_span *s = &m.spans[i];
			printf("%s\n    {\"start\": %" PRIu64 ", \"bytes\": %" PRIu64
			       ", \"kind\": \"%s\"", i ? "," : "", s->start, s->len,
			       hm_kind_name(s->kind));
			if (s->ino) {
				printf(", \"ino\": %" PRIu64 ", \"path\": ", s->ino);
				jstr(stdout, path_of(c, s->ino));
			}
			printf("}");
		}
		printf("%s]}\n", m.n ? "\n  " : "");
	} else if (svg) {
		printf("%s: %zu spans drawn in %" PRIu64 " x %" PRIu64 " cells of %" PRIu64
		       " bytes\n", svg, m.n, cols, rows, bpc);
	} else {
		printf("%14s %14s  %-12s %s\n", "start", "bytes", "kind", "file");
		for (size_t i = 0; i < m.n; i++) {
			const struct hm_span *s = &m.spans[i];
			printf("%14" PRIu64 " %14" PRIu64 "  %-12s %s\n", s->start, s->len,
			       hm_kind_name(s->kind), s->ino ? path_of(c, s->ino) : "");
		}
	}
	hm_free_map(&m);
	return 0;
}

/* ---- main --------------------------------------------------------------- */

struct args {
	bool json;
	const char *image, *cmd, *svg;
	const char *arg[2];
	int nargs;
	uint64_t columns;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	enum { OPT_SVG = 1000, OPT_COLUMNS };
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "svg", required_argument, NULL, OPT_SVG },
		{ "columns", required_argument, NULL, OPT_COLUMNS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	char *end;
	memset(a, 0, sizeof *a);
	a->columns = SVG_DEFAULT_COLUMNS;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "jhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j': a->json = true; break;
		case OPT_SVG: a->svg = optarg; break;
		case OPT_COLUMNS:
			errno = 0;
			a->columns = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || a->columns < 1 ||
			    a->columns > 8192) {
				fprintf(stderr, "%s: --columns wants 1..8192\n", PROG);
				return EXIT_USAGE;
			}
			break;
		case 'h': help(); return 0;
		case 'V': printf("%s version %s\n", PROG, BSTACKFS_VERSION); return 0;
		default:
			if (optopt)
				fprintf(stderr, "%s: unknown option or missing value: -%c\n", PROG,
					optopt > 255 ? '-' : optopt);
			else
				fprintf(stderr, "%s: unknown option %s\n", PROG, argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	int n = argc - optind;
	if (n < 2) {
		fprintf(stderr, "%s: %s\n", PROG, n ? "missing COMMAND" : "missing IMAGE and COMMAND");
		usage(stderr);
		return EXIT_USAGE;
	}
	a->image = argv[optind];
	a->cmd = argv[optind + 1];
	a->nargs = n - 2;
	for (int i = 0; i < a->nargs && i < 2; i++)
		a->arg[i] = argv[optind + 2 + i];
	static const struct { const char *name; int min, max; } cmds[] = {
		{ "stats", 0, 0 }, { "ls", 0, 1 }, { "stat", 1, 1 }, { "cat", 1, 1 },
		{ "extract", 2, 2 }, { "free", 0, 0 }, { "hist", 0, 0 }, { "map", 0, 0 },
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (strcmp(a->cmd, cmds[i].name))
			continue;
		if (a->nargs < cmds[i].min || a->nargs > cmds[i].max) {
			fprintf(stderr, "%s: %s takes %d..%d arguments\n", PROG, a->cmd,
				cmds[i].min, cmds[i].max);
			usage(stderr);
			return EXIT_USAGE;
		}
		if (a->svg && strcmp(a->cmd, "map")) {
			fprintf(stderr, "%s: --svg is for map\n", PROG);
			return EXIT_USAGE;
		}
		return -1;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", PROG, a->cmd);
	usage(stderr);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	struct args a;
	struct roview rv;
	char why[512];
	int st = parse_args(argc, argv, &a);
	if (st >= 0)
		return st;
	struct ctx c = { .image = a.image, .json = a.json };
	if (roview_open(a.image, ROVIEW_MAX, &rv, why, sizeof why) < 0)
		return fail(&c, "%s", why);
	c.v = rv.v;
	if (rv.open_writes)
		fprintf(stderr, "%s: %s: note: opening it as a mount does changed the in-memory "
			"copy (%llu writes: recovery, reclaim or the allocator's open-time "
			"maintenance); the image itself is not written\n", PROG, a.image,
			(unsigned long long)rv.open_writes);
	int r = paths_load(&c);
	if (r) {
		st = fail(&c, "cannot list the tree: %s", strerror(-r));
		goto out;
	}
	qsort(c.ents, c.n_ents, sizeof *c.ents, by_ino);
	const char *p0 = a.arg[0];
	if (!strcmp(a.cmd, "stats"))
		st = cmd_stats(&c);
	else if (!strcmp(a.cmd, "ls"))
		st = cmd_ls(&c, p0 ? p0 : "/");
	else if (!strcmp(a.cmd, "stat"))
		st = cmd_stat(&c, p0);
	else if (!strcmp(a.cmd, "cat"))
		st = copy_out(&c, p0, STDOUT_FILENO);
	else if (!strcmp(a.cmd, "extract"))
		st = cmd_extract(&c, p0, a.arg[1]);
	else if (!strcmp(a.cmd, "free"))
		st = cmd_free(&c);
	else if (!strcmp(a.cmd, "hist"))
		st = cmd_hist(&c);
	else
		st = cmd_map(&c, a.svg, a.columns);
	if (fflush(stdout) && !st)
		st = fail(&c, "stdout: %s", strerror(errno));
out:
	for (size_t i = 0; i < c.n_ents; i++)
		free(c.ents[i].path);
	free(c.ents);
	roview_close(&rv);
	return st;
}
