/* SPDX-License-Identifier: ISC */
/*
 * privdrop.c - the one place where a process gives up root.
 */
#include "privdrop.h"
#include "../lib/log.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int
privdrop_lookup(const char *name, struct privdrop_user *r, const char **error_r)
{
	static char err[128];
	struct passwd *pw = getpwnam(name);
	if (pw == NULL) {
		snprintf(err, sizeof(err), "user \"%s\" does not exist", name);
		*error_r = err;
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, sizeof(err), "user \"%s\" is root: choose an unprivileged user",
		         name);
		*error_r = err;
		return -1;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->uid = pw->pw_uid;
	r->gid = pw->pw_gid;
	return 0;
}

void
privdrop_apply(const struct privdrop_user *u, const char *chroot_dir)
{
	if (geteuid() != 0)
		return;
	/* Load time zone data before the chroot hides /etc/localtime. */
	tzset();
	if (chroot_dir != NULL) {
		if (chroot(chroot_dir) != 0 || chdir("/") != 0)
			fatal("chroot %s: %s", chroot_dir, strerror(errno));
	}
	if (setgroups(1, &u->gid) != 0)
		fatal("setgroups: %s", strerror(errno));
	if (setresgid(u->gid, u->gid, u->gid) != 0)
		fatal("setresgid %u: %s", (unsigned)u->gid, strerror(errno));
	if (setresuid(u->uid, u->uid, u->uid) != 0)
		fatal("setresuid %u: %s", (unsigned)u->uid, strerror(errno));
	if (setuid(0) == 0)
		fatal("privilege drop failed: root could be regained");
	/* setuid clears "dumpable"; keep it that way so that a process holding
	 * secrets can be neither ptraced by its own uid nor dumped. */
	prctl(PR_SET_DUMPABLE, 0);
}
