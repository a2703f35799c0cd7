/* SPDX-License-Identifier: ISC */
/*
 * privdrop.h - leave root: look up the configured user, optionally chroot,
 * then set groups, gid and uid for good. The processes that parse SMTP or hold
 * credentials never keep root (STYLE.md, "Untrusted input and privileges").
 */
#ifndef AUTHRELAY_PRIVDROP_H
#define AUTHRELAY_PRIVDROP_H

#include <sys/types.h>
#include "../lib/common.h"

struct privdrop_user {
	char name[64];
	uid_t uid;
	gid_t gid;
};

/* Look up name in the password database. 0, or -1 with *error_r. */
int privdrop_lookup(const char *name, struct privdrop_user *r, const char **error_r);
/* Become u (chrooting into chroot_dir first, if not NULL). fatal() on any
 * failure, and fatal() if root could be regained. No-op for a non-root caller. */
void privdrop_apply(const struct privdrop_user *u, const char *chroot_dir);

#endif
