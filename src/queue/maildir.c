/* SPDX-License-Identifier: ISC */
/*
 * maildir.c - Maildir delivery (maildir.h), the layout of
 * https://cr.yp.to/proto/maildir.html: a unique name in tmp/, written and
 * fsynced, then renamed into new/ and new/ fsynced.
 *
 * The queue writes Maildirs with its own rights, in folders named after
 * recipients: every folder below the template's fixed prefix is opened
 * without following symlinks (safeopen_mkdirs), and files are made and
 * renamed from those descriptors only.
 */
#include "maildir.h"
#include "../lib/log.h"
#include "../lib/safeopen.h"
#include "../spool/spool.h"

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

/* The length of tmpl's part before its first expansion: the
 * administrator's, where symlinks may be followed (safeopen_mkdirs). */
static size_t
maildir_trusted_len(const char *tmpl)
{
	const char *pct = strchr(tmpl, '%');
	return pct != NULL ? (size_t)(pct - tmpl) : strlen(tmpl);
}

int
maildir_deliver(const char *tmpl, const char *addr, const char *sender, const char *queue_id,
                const char *hostname, const char *path, long body_offset, char *err, size_t errsz,
                bool *permanent_r)
{
	static atomic_uint counter;
	char *dir = maildir_expand(tmpl, addr);
	char name[300];
	int in = -1, out = -1, mfd = -1, tmpfd = -1, newfd = -1, curfd = -1;
	const char *why;
	struct timespec ts;

	*permanent_r = false;
	if (dir == NULL) {
		*permanent_r = true;
		snprintf(err, errsz, "mailbox name not allowed for this recipient");
		return -1;
	}
	/* Each folder the recipient's name chose, and each we make, is opened
	 * with O_NOFOLLOW: a symlink planted in a Maildir is never written
	 * through. */
	mfd = safeopen_mkdirs(dir, maildir_trusted_len(tmpl), 0700, &why);
	if (mfd < 0) {
		snprintf(err, errsz, "cannot create maildir %s: %s", dir, why);
		goto fail;
	}
	static const char *const subs[] = {"tmp", "new", "cur"};
	int *sub_fds[] = {&tmpfd, &newfd, &curfd};
	for (int i = 0; i < 3; i++) {
		if (mkdirat(mfd, subs[i], 0700) < 0 && errno != EEXIST) {
			snprintf(err, errsz, "cannot create maildir %s/%s: %s", dir, subs[i],
			         strerror(errno));
			goto fail;
		}
		*sub_fds[i] = safeopen_dir(mfd, subs[i]);
		if (*sub_fds[i] < 0) {
			snprintf(err, errsz, "cannot open maildir %s/%s: %s", dir, subs[i],
			         errno == ELOOP || errno == ENOTDIR
			                 ? "not a directory (not followed)"
			                 : strerror(errno));
			goto fail;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, sizeof(name), "%lld.M%ldP%dQ%u_%s.%s", (long long)ts.tv_sec,
	         ts.tv_nsec / 1000, (int)getpid(),
	         atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed), queue_id, hostname);

	in = spool_open_message(path, &why);
	if (in < 0 || lseek(in, body_offset, SEEK_SET) < 0) {
		snprintf(err, errsz, "cannot read queue file: %s", in < 0 ? why : strerror(errno));
		goto fail;
	}
	out = openat(tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
	             0600);
	if (out < 0) {
		snprintf(err, errsz, "cannot create %s/tmp/%s: %s", dir, name, strerror(errno));
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
	/* The name is unique (time, pid, counter, queue id): never replace. */
	if (renameat2(tmpfd, name, newfd, name, RENAME_NOREPLACE) < 0 &&
	    (errno != EINVAL || renameat(tmpfd, name, newfd, name) < 0)) {
		snprintf(err, errsz, "rename into %s/new: %s", dir, strerror(errno));
		unlinkat(tmpfd, name, 0);
		goto fail;
	}
	if (fsync(newfd) < 0) {
		snprintf(err, errsz, "fsync %s/new: %s", dir, strerror(errno));
		/* The message is there; if the directory is not durable a crash
		 * could lose it, so we say so and try again (a duplicate at
		 * worst). */
		goto fail;
	}
	close(tmpfd);
	close(newfd);
	close(curfd);
	close(mfd);
	close(in);
	free(dir);
	return 0;
write_fail:
	snprintf(err, errsz, "write %s/tmp/%s: %s", dir, name, strerror(errno));
	unlinkat(tmpfd, name, 0);
fail:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	if (tmpfd >= 0)
		close(tmpfd);
	if (newfd >= 0)
		close(newfd);
	if (curfd >= 0)
		close(curfd);
	if (mfd >= 0)
		close(mfd);
	free(dir);
	return -1;
}
