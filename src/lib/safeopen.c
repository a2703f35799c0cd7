/* SPDX-License-Identifier: ISC */
/*
 * safeopen.c - opens that never follow what a less trusted process planted
 * (safeopen.h).
 *
 * Files: openat() with O_NOFOLLOW, then fstat() on the descriptor, so the
 * checks are on the very file that was opened, not on a name that may have
 * changed in between. A read-only open adds O_NONBLOCK, so that a FIFO
 * planted under an expected name cannot hang the caller; it is cleared again
 * once the file is known to be a regular one.
 *
 * Directories (Maildirs): openat2(RESOLVE_NO_SYMLINKS) resolves the part of
 * the path below the administrator's prefix in one call when it exists; a
 * kernel without openat2 (before 5.6), or a missing component, takes the
 * walk one component at a time: mkdirat(), then openat(O_DIRECTORY |
 * O_NOFOLLOW) from the parent's descriptor.
 */
#include "safeopen.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* *why_r points here: valid until the next call on the same thread. */
static _Thread_local char safeopen_why[160];

static int
safeopen_fail(int fd, int err, const char **why_r, const char *why)
{
	if (fd >= 0)
		close(fd);
	if (why_r != NULL)
		*why_r = why;
	errno = err;
	return -1;
}

static bool
safeopen_owner_ok(const struct stat *st, const struct safeopen_expect *exp)
{
	if (exp == NULL || exp->n_uids == 0)
		return true;
	for (size_t i = 0; i < exp->n_uids && i < AR_NELEM(exp->uids); i++)
		if (st->st_uid == exp->uids[i])
			return true;
	return false;
}

int
safeopen_file(int dirfd, const char *name, int flags, mode_t mode,
              const struct safeopen_expect *exp, const char **why_r)
{
	bool reading = (flags & O_ACCMODE) == O_RDONLY;
	struct stat st;
	int fd, err;

	fd = openat(dirfd, name,
	            flags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | (reading ? O_NONBLOCK : 0), mode);
	if (fd < 0) {
		err = errno;
		/* O_NOFOLLOW's ELOOP: the name is a symlink. */
		if (err == ELOOP)
			return safeopen_fail(-1, err, why_r, "a symlink (not followed)");
		snprintf(safeopen_why, sizeof(safeopen_why), "%s", strerror(err));
		return safeopen_fail(-1, err, why_r, safeopen_why);
	}
	if (fstat(fd, &st) < 0) {
		err = errno;
		snprintf(safeopen_why, sizeof(safeopen_why), "fstat: %s", strerror(err));
		return safeopen_fail(fd, err, why_r, safeopen_why);
	}
	if (!S_ISREG(st.st_mode))
		return safeopen_fail(fd, EINVAL, why_r, "not a regular file");
	if (!safeopen_owner_ok(&st, exp)) {
		snprintf(safeopen_why, sizeof(safeopen_why), "owned by uid %u, not the expected",
		         (unsigned)st.st_uid);
		return safeopen_fail(fd, EPERM, why_r, safeopen_why);
	}
	/* A second name elsewhere would let its maker change or read
	 * through it what we are about to trust. */
	if (exp != NULL && exp->single_link && st.st_nlink != 1) {
		snprintf(safeopen_why, sizeof(safeopen_why), "%lu hard links, not 1",
		         (unsigned long)st.st_nlink);
		return safeopen_fail(fd, EMLINK, why_r, safeopen_why);
	}
	if (reading && fcntl(fd, F_SETFL, flags & (O_APPEND | O_NONBLOCK)) < 0) {
		err = errno;
		snprintf(safeopen_why, sizeof(safeopen_why), "fcntl: %s", strerror(err));
		return safeopen_fail(fd, err, why_r, safeopen_why);
	}
	return fd;
}

int
safeopen_dir(int dirfd, const char *name)
{
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
}

int
safeopen_path(const char *path, int flags, const struct safeopen_expect *exp, const char **why_r)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int dfd, fd, err;

	if (slash == NULL)
		return safeopen_file(AT_FDCWD, path, flags, 0, exp, why_r);
	dir = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
	/* The spool's folders are never symlinks either (spool_init_dirs). */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	err = errno;
	/* O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR. */
	struct stat st;
	if (dfd < 0 && err == ENOTDIR && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
		err = ELOOP;
	free(dir);
	if (dfd < 0) {
		snprintf(safeopen_why, sizeof(safeopen_why), "its directory: %s",
		         err == ELOOP ? "a symlink (not followed)" : strerror(err));
		return safeopen_fail(-1, err, why_r, safeopen_why);
	}
	fd = safeopen_file(dfd, slash + 1, flags, 0, exp, why_r);
	err = errno;
	close(dfd);
	errno = err;
	return fd;
}

/* openat2(dirfd, rest, RESOLVE_NO_SYMLINKS): the descriptor, or -1 with
 * errno (ENOSYS: no openat2 here, walk instead). */
static int
safeopen_openat2(int dirfd, const char *rest)
{
#ifdef SYS_openat2
	struct open_how how = {
	        .flags = O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC,
	        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH,
	};
	return (int)syscall(SYS_openat2, dirfd, rest, &how, sizeof(how));
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Walk rest (relative, '/'-separated) from dirfd (taken over), creating
 * what is missing, each component with O_NOFOLLOW. */
static int
safeopen_walk(int dirfd, char *rest, mode_t mode, const char **why_r)
{
	char *save = NULL;

	for (char *c = strtok_r(rest, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
		int next;

		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0)
			return safeopen_fail(dirfd, EINVAL, why_r, "\"..\" in the path");
		if (mkdirat(dirfd, c, mode) < 0 && errno != EEXIST) {
			int err = errno;
			snprintf(safeopen_why, sizeof(safeopen_why), "mkdir %s: %s", c,
			         strerror(err));
			return safeopen_fail(dirfd, err, why_r, safeopen_why);
		}
		next = safeopen_dir(dirfd, c);
		if (next < 0) {
			int err = errno;
			/* ENOTDIR: a file, or a symlink (O_NOFOLLOW|O_DIRECTORY
			 * says ENOTDIR for a symlink on some kernels). */
			struct stat st;
			if (fstatat(dirfd, c, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
				err = ELOOP;
			snprintf(safeopen_why, sizeof(safeopen_why), "%s: %s", c,
			         err == ELOOP ? "a symlink (not followed)" : strerror(err));
			return safeopen_fail(dirfd, err, why_r, safeopen_why);
		}
		close(dirfd);
		dirfd = next;
	}
	return dirfd;
}

int
safeopen_mkdirs(const char *path, size_t trusted_len, mode_t mode, const char **why_r)
{
	size_t len = strlen(path);
	char *base, *rest;
	int bfd, fd;

	if (path[0] != '/')
		return safeopen_fail(-1, EINVAL, why_r, "not an absolute path");
	/* The trusted part ends at a '/': take whole components only. */
	if (trusted_len > len)
		trusted_len = len;
	while (trusted_len > 0 && path[trusted_len - 1] != '/' && path[trusted_len] != '\0' &&
	       path[trusted_len] != '/')
		trusted_len--;
	base = xstrndup(path, trusted_len > 0 ? trusted_len : 1);
	rest = xstrdup(path + (trusted_len > 0 ? trusted_len : 1));
	bfd = open(base, O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC);
	if (bfd < 0 && errno == ENOENT) {
		/* The administrator's part is missing too: make it, from "/". */
		free(rest);
		rest = xstrdup(path + 1);
		bfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	free(base);
	if (bfd < 0) {
		int err = errno;
		snprintf(safeopen_why, sizeof(safeopen_why), "%s", strerror(err));
		free(rest);
		return safeopen_fail(-1, err, why_r, safeopen_why);
	}
	while (*rest == '/')
		memmove(rest, rest + 1, strlen(rest));
	if (*rest == '\0') {
		free(rest);
		return bfd;
	}
	fd = safeopen_openat2(bfd, rest);
	if (fd >= 0) {
		close(bfd);
		free(rest);
		return fd;
	}
	/* ENOENT (something to create), ENOSYS (no openat2), EPERM from a
	 * seccomp or container policy that refuses it, or ELOOP (a symlink:
	 * the walk names the component): walk. */
	fd = safeopen_walk(bfd, rest, mode, why_r);
	free(rest);
	return fd;
}
