/* SPDX-License-Identifier: ISC */
/*
 * file_probe.h - open files as the process that will read them: check-config
 * runs as root, but the auth process reads the users file as auth_user, the
 * queue writes Maildirs as user. A probe tries each path in a child process
 * that drops to that user exactly as privdrop_apply() does (its uid and
 * primary gid, no other group), so "readable" means what it will mean to
 * the daemon, ACLs and parent directories included.
 */
#ifndef AUTHRELAY_FILE_PROBE_H
#define AUTHRELAY_FILE_PROBE_H

#include <stddef.h>
#include "privdrop.h"

enum file_probe_need {
	FILE_PROBE_READ,   /* a regular file, opened for reading */
	FILE_PROBE_SEARCH, /* a directory the user can enter */
	FILE_PROBE_WRITE,  /* a directory the user can create files in */
};

/* error: not a regular file (FILE_PROBE_READ) or not a directory. */
#define FILE_PROBE_WRONG_KIND (-1)

struct file_probe {
	const char *path; /* absolute */
	enum file_probe_need need;
	/* The process opens path's directory before it drops root, then the
	 * file by its name (the auth process and the users file): the
	 * directory's parents need not be open to the user. */
	bool via_dir;
	/* Filled by file_probe_run(): 0, an errno value, or
	 * FILE_PROBE_WRONG_KIND. */
	int error;
};

/* Try every probe as u (NULL: as this process, which is what the daemon
 * does when it is not started as root). 0, or -1 with *error_r when the
 * probing process could not run (the probes' errors are then unset). */
int file_probe_run(const struct privdrop_user *u, struct file_probe *probes, size_t n,
                   const char **error_r);

/* Why a probe failed, for "key = path: <reason>": "does not exist", "not
 * readable by user nobody (Permission denied)"... user names the user the
 * probe ran as. Valid until the next call. */
const char *file_probe_reason(const struct file_probe *p, const char *user);

#endif
