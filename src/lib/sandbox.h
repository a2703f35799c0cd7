/* SPDX-License-Identifier: ISC */
/*
 * sandbox.h - the system-call allow-lists of the unprivileged processes.
 *
 * After its privilege drop each child of the master (SMTP worker, auth,
 * queue, TLS key process, metrics) calls sandbox_apply() with its kind: PR_SET_NO_NEW_PRIVS (no
 * setuid program can give it back what the drop took), then a seccomp
 * filter that allows the system calls that kind makes and kills the whole
 * process (SIGSYS) on any other. The master sees the signal, logs it by
 * name and restarts the child like any that died.
 *
 * The lists were taken from strace -f over the whole test suite, per
 * process kind; the test suite runs with them on. Builds with AddressSanitizer
 * (make asan) have the sandbox off: the sanitizer's run time makes calls of
 * its own (ptrace from LeakSanitizer's checker thread, /proc reads) that no
 * production process should be allowed. sandbox_available() says which.
 */
#ifndef AUTHRELAY_SANDBOX_H
#define AUTHRELAY_SANDBOX_H

#include "common.h"

enum sandbox_kind {
	SANDBOX_SMTPD,   /* SMTP worker: the listeners, the spool's tmp/ and incoming/ */
	SANDBOX_AUTH,    /* auth process: sources (files, LDAP, SMTP upstreams) */
	SANDBOX_QUEUE,   /* queue: the spool, DNS, SMTP delivery, Maildirs */
	SANDBOX_KEYPROC, /* TLS key process: accepts workers, signs; no file, no network */
	SANDBOX_METRICS, /* metrics endpoint: accepts HTTP clients, reads shared counters */
};

/* "smtpd", "auth", "queue", "keyproc" or "metrics". */
const char *sandbox_kind_name(enum sandbox_kind kind);

/* False in a sanitizer build, where sandbox_apply() does nothing. */
bool sandbox_available(void);

/* Set PR_SET_NO_NEW_PRIVS and install kind's allow-list on the calling
 * process: from then on a system call outside the list kills it with
 * SIGSYS. Call it single-threaded (threads started before would run
 * unfiltered). Returns 0 (also when !sandbox_available()), or -1 with
 * *error_r. */
int sandbox_apply(enum sandbox_kind kind, const char **error_r);

/* The same filter, whatever the build: for the unit test, which installs
 * it in a forked child and makes a call outside the list. */
int sandbox_install(enum sandbox_kind kind, const char **error_r);

#endif
