/*
 * maildir.c - Maildir delivery (maildir.h), the layout of
 * https://cr.yp.to/proto/maildir.html: a unique name in tmp/, written and
 * fsynced, then renamed into new/ and new/ fsynced.
 */
#include "maildir.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *
maildir_expand(const char *tmpl, const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at != NULL ? (size_t)(at - addr) : strlen(addr);
	const char *domain = at != NULL ? at + 1 : "";
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (llen == 0 || addr[0] == '.')
		return NULL;
	for (size_t i = 0; i < llen; i++) {
		unsigned char c = (unsigned char)addr[i];
		if (c == '/' || c < 0x21 || c == 0x7f)
			return NULL;
	}
	if (strchr(domain, '/') != NULL || domain[0] == '.')
		return NULL;
	f = open_memstream(&out, &len);
	if (f == NULL)
		fatal("open_memstream: %s", strerror(errno));
	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p != '%' || p[1] == '\0') {
			fputc(*p, f);
			continue;
		}
		p++;
		if (*p == 'u') {
			fwrite(addr, 1, llen, f);
		} else if (*p == 'd') {
			for (const char *d = domain; *d != '\0'; d++)
				fputc(*d >= 'A' && *d <= 'Z' ? *d + ('a' - 'A') : *d, f);
		} else {
			fputc(*p, f);
		}
	}
	fclose(f);
	return out;
}

/* mkdir -p for path (mode 0700). */
static int
maildir_mkdirs(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int r = mkdir(p, 0700) < 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return r;
}

int
maildir_deliver(const char *tmpl, const char *addr, const char *sender, const char *queue_id,
                const char *hostname, const char *path, long body_offset, char *err, size_t errsz,
                bool *permanent_r)
{
	static atomic_uint counter;
	char *dir = maildir_expand(tmpl, addr);
	char sub[3][4200], tmp[4600], dst[4600], name[300];
	int in = -1, out = -1, dfd = -1;
	struct timespec ts;

	*permanent_r = false;
	if (dir == NULL) {
		*permanent_r = true;
		snprintf(err, errsz, "mailbox name not allowed for this recipient");
		return -1;
	}
	snprintf(sub[0], sizeof(sub[0]), "%s/tmp", dir);
	snprintf(sub[1], sizeof(sub[1]), "%s/new", dir);
	snprintf(sub[2], sizeof(sub[2]), "%s/cur", dir);
	for (int i = 0; i < 3; i++) {
		if (maildir_mkdirs(sub[i]) < 0) {
			snprintf(err, errsz, "cannot create maildir %s: %s", dir, strerror(errno));
			goto fail;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, sizeof(name), "%lld.M%ldP%dQ%u_%s.%s", (long long)ts.tv_sec,
	         ts.tv_nsec / 1000, (int)getpid(),
	         atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed), queue_id, hostname);
	snprintf(tmp, sizeof(tmp), "%s/%s", sub[0], name);
	snprintf(dst, sizeof(dst), "%s/%s", sub[1], name);

	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0 || lseek(in, body_offset, SEEK_SET) < 0) {
		snprintf(err, errsz, "cannot read queue file: %s", strerror(errno));
		goto fail;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errsz, "cannot create %s: %s", tmp, strerror(errno));
		goto fail;
	}
	char head[2200];
	int hn =
	        snprintf(head, sizeof(head), "Return-Path: <%s>\nDelivered-To: %s\n", sender, addr);
	if (hn < 0 || (size_t)hn >= sizeof(head) || write_all(out, head, (size_t)hn) < 0)
		goto write_fail;
	/* Maildir files use the local line end. */
	char buf[65536], obuf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto write_fail;
		}
		size_t o = 0;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != '\r')
				obuf[o++] = buf[i];
		if (write_all(out, obuf, o) < 0)
			goto write_fail;
	}
	if (fsync(out) < 0 || close(out) < 0) {
		out = -1;
		goto write_fail;
	}
	out = -1;
	if (rename(tmp, dst) < 0) {
		snprintf(err, errsz, "rename into %s: %s", sub[1], strerror(errno));
		unlink(tmp);
		goto fail;
	}
	dfd = open(sub[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		snprintf(err, errsz, "fsync %s: %s", sub[1], strerror(errno));
		/* The message is there; if the directory is not durable a crash
		 * could lose it, so we say so and try again (a duplicate at
		 * worst). */
		goto fail;
	}
	close(dfd);
	close(in);
	free(dir);
	return 0;
write_fail:
	snprintf(err, errsz, "write %s: %s", tmp, strerror(errno));
	unlink(tmp);
fail:
	if (dfd >= 0)
		close(dfd);
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	free(dir);
	return -1;
}
