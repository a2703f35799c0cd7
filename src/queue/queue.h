/* SPDX-License-Identifier: ISC */
/*
 * queue.h - the queue process: it owns the spool after the SMTP workers'
 * 250, delivers every message to its next hop (routes, smarthost or MX),
 * retries what was deferred, bounces what failed (RFC 3464 DSN), and answers
 * the `authrelay queue ...` commands on spool_dir/private/queue.
 *
 * How it fits: the master forks it (as [server] queue_user, not chrooted) and
 * restarts it when it dies; on start it recovers every message from the
 * spool (queue_store.h), so a kill -9 at any moment loses nothing.
 */
#ifndef AUTHRELAY_QUEUE_H
#define AUTHRELAY_QUEUE_H

#include <sys/types.h>

struct config;
struct queue_config;
struct spool_gauge;

/* What the master hands the queue process. */
struct queue_params {
	const struct config *cfg;
	const struct queue_config *qc;
	const char *spool_dir;
	struct spool_gauge *gauge; /* queue size for the workers' 421 */
	int alert_fd;              /* the alert channel from the auth process, or -1 */
	const char *alert_hook;    /* [alerts] hook, run here (alert_intake.h), or NULL */
	uid_t worker_uid;          /* who else may own a file in incoming/ */
	int ctl_fd;                /* listening on private/queue (bound by the master), or -1 */
	int ctlchan_fd; /* the master's control channel (lib/ctlchan.h): reloads, or -1 */
};

/* Run until SIGTERM (deliveries in flight may finish within
 * shutdown_timeout) or SIGQUIT (at once). Returns the exit status. */
int queue_main(const struct queue_params *);

#endif
