/* SPDX-License-Identifier: ISC */
/*
 * file_probe.c - open files as another user (file_probe.h): a child process
 * drops privileges with privdrop_apply(), tries every path, and sends back
 * one int per probe through a pipe. Nothing is read from the files: opening
 * is the test, as open(2) is where the daemon would fail.
 */
#include "file_probe.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The error of one probe, in the child, as the user. dirfd: path's
 * directory opened before the drop (via_dir), or -1. */
static int
probe_one(const struct file_probe *p, int dirfd)
{
	struct stat st;
	int fd;

	if (p->need == FILE_PROBE_READ) {
		const char *slash = strrchr(p->path, '/');
		/* O_NONBLOCK: a FIFO put there by mistake must not hang us. */
		int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
		fd = dirfd >= 0 ? openat(dirfd, slash != NULL ? slash + 1 : p->path, flags)
		                : open(p->path, flags);
		if (fd < 0)
			return errno;
		int r = fstat(fd, &st) < 0    ? errno
		        : S_ISREG(st.st_mode) ? 0
		                              : FILE_PROBE_WRONG_KIND;
		close(fd);
		return r;
	}
	if (stat(p->path, &st) < 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return FILE_PROBE_WRONG_KIND;
	if (access(p->path, p->need == FILE_PROBE_WRITE ? W_OK | X_OK : X_OK) < 0)
		return errno;
	return 0;
}

static AR_NORETURN void
probe_child(const struct privdrop_user *u, struct file_probe *probes, size_t n, int out)
{
	int *errs = xcalloc(n, sizeof(*errs)), *dirfds = xcalloc(n, sizeof(*dirfds));

	for (size_t i = 0; i < n; i++) {
		dirfds[i] = -1;
		if (!probes[i].via_dir)
			continue;
		char *dir = xstrdup(probes[i].path), *slash = strrchr(dir, '/');
		if (slash != NULL)
			*(slash == dir ? slash + 1 : slash) = '\0';
		/* As root, as the auth process does before its drop. */
		dirfds[i] = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfds[i] < 0)
			errs[i] = errno;
		free(dir);
	}
	if (u != NULL)
		privdrop_apply(u, NULL);
	for (size_t i = 0; i < n; i++)
		if (errs[i] == 0)
			errs[i] = probe_one(&probes[i], dirfds[i]);
	if (write_all(out, errs, n * sizeof(*errs)) < 0)
		_exit(1);
	_exit(0);
}

int
file_probe_run(const struct privdrop_user *u, struct file_probe *probes, size_t n,
               const char **error_r)
{
	static char err[128];
	int *errs = NULL, fds[2], status = 0;
	size_t got = 0;
	pid_t pid;

	if (n == 0)
		return 0;
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
		*error_r = err;
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, sizeof(err), "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		*error_r = err;
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		probe_child(u, probes, n, fds[1]);
	}
	close(fds[1]);
	errs = xcalloc(n, sizeof(*errs));
	while (got < n * sizeof(*errs)) {
		ssize_t r = read(fds[0], (char *)errs + got, n * sizeof(*errs) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != n * sizeof(*errs)) {
		snprintf(err, sizeof(err), "the process checking files as %s failed",
		         u != NULL ? u->name : "this user");
		free(errs);
		*error_r = err;
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		probes[i].error = errs[i];
	free(errs);
	return 0;
}

const char *
file_probe_reason(const struct file_probe *p, const char *user)
{
	static char buf[256];
	static const char *const what[] = {
	        [FILE_PROBE_READ] = "readable",
	        [FILE_PROBE_SEARCH] = "searchable",
	        [FILE_PROBE_WRITE] = "writable",
	};

	switch (p->error) {
	case 0:
		return "ok";
	case ENOENT:
		return "does not exist";
	case FILE_PROBE_WRONG_KIND:
		return p->need == FILE_PROBE_READ ? "is not a regular file" : "is not a directory";
	case EISDIR:
		return "is a directory";
	case ENOTDIR:
		return "a component of the path is not a directory";
	default:
		snprintf(buf, sizeof(buf), "not %s by user %s (%s)", what[p->need], user,
		         strerror(p->error));
		return buf;
	}
}
