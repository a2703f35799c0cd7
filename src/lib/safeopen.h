/* SPDX-License-Identifier: ISC */
/*
 * safeopen.h - opening files in directories that a less trusted process can
 * write, without ever following what it planted there.
 *
 * The queue reads files the SMTP workers made (spool incoming/) and writes
 * Maildirs whose names come from recipients. A name there may be a symlink,
 * a hard link to someone else's file, a FIFO or a device node by the time
 * it is opened. Every open here goes from a directory descriptor
 * (openat(2)) with O_NOFOLLOW, O_NOCTTY and O_CLOEXEC, and the result is
 * checked with fstat(2) against what the caller expects: a regular file (or
 * directory), owned by one of the expected uids, with one link when that
 * matters. Anything else is refused, with a reason for the log, and never
 * followed.
 */
#ifndef AUTHRELAY_SAFEOPEN_H
#define AUTHRELAY_SAFEOPEN_H

#include <sys/types.h>
#include "common.h"

/* What a file must be to be accepted. */
struct safeopen_expect {
	uid_t uids[2];    /* accepted owners */
	size_t n_uids;    /* 0: any owner */
	bool single_link; /* st_nlink must be 1 */
};

/* Open dirfd/name (name: one path component) with flags | O_NOFOLLOW |
 * O_NOCTTY | O_CLOEXEC (and mode, with O_CREAT), then check it against exp
 * (NULL: only that it is a regular file). A read-only open never blocks
 * on a FIFO. Returns the descriptor, or -1 with errno and *why_r: ELOOP
 * for a symlink, EINVAL for anything but a regular file, EPERM for a wrong
 * owner, EMLINK for more than one link, or the open's own errno. */
int safeopen_file(int dirfd, const char *name, int flags, mode_t mode,
                  const struct safeopen_expect *exp, const char **why_r);

/* The same for a path: its directory is opened with O_DIRECTORY (its last
 * component with O_NOFOLLOW), then the file in it as above. */
int safeopen_path(const char *path, int flags, const struct safeopen_expect *exp,
                  const char **why_r);

/* Open dirfd/name as a directory (O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC). */
int safeopen_dir(int dirfd, const char *name);

/* Open the directory path, creating what is missing (mode), for a Maildir:
 * its first trusted_len bytes are the administrator's (symlinks there are
 * followed); every component after them is opened with O_NOFOLLOW, one at
 * a time (or in one openat2(RESOLVE_NO_SYMLINKS) when the kernel has it
 * and all exist). Returns the descriptor, or -1 with errno and *why_r
 * (ELOOP: a symlink where a directory was expected). */
int safeopen_mkdirs(const char *path, size_t trusted_len, mode_t mode, const char **why_r);

#endif
