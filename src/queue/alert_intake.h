/* SPDX-License-Identifier: ISC */
/*
 * alert_intake.h - the queue process's end of the alert channel
 * (src/authwire/alert_proto.h). The auth process decides alerts; what they
 * need done outside it happens here, in the process that already writes mail
 * of its own into the spool (DSNs, bounce.h):
 *
 *   MAIL  written into the spool like a DSN, from the null sender (the
 *         queue then delivers it as any other message);
 *   HOOK  [alerts] hook run as [server] queue_user (alert_hook.h).
 *
 * A malformed record is logged and dropped; the channel goes on.
 */
#ifndef AUTHRELAY_ALERT_INTAKE_H
#define AUTHRELAY_ALERT_INTAKE_H

struct event_base;
struct threadpool;
struct alert_intake;

struct alert_intake_params {
	struct event_base *base;
	struct threadpool *pool; /* the spool writes and fsyncs */
	const char *spool_dir;
	const char *hostname;     /* for the Received: line */
	const char *hook;         /* [alerts] hook, or NULL */
	unsigned hook_timeout_ms; /* 0: ALERT_HOOK_TIMEOUT_MS */
	int fd;                   /* the queue end of the channel, non-blocking; -1: none */
};

/* Start reading p->fd, which is the intake's from here on (closed by
 * _free). Strings in p are copied. */
struct alert_intake *alert_intake_new(const struct alert_intake_params *p);

/* A reload: the Received: line's hostname from now on (copied). The hook
 * stays that of the start ([alerts] hook needs a restart: under the
 * sandbox its helper was started with it, spawner.h). */
void alert_intake_set_hostname(struct alert_intake *, const char *hostname);

/* Call after threadpool_free() of p->pool: spool writes still queued have
 * then run, and their records are freed here. Running hooks are left to
 * finish. NULL is fine. */
void alert_intake_free(struct alert_intake *);

#endif
