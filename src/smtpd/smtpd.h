/* SPDX-License-Identifier: ISC */
/*
 * smtpd.h - the SMTP worker process: accepts connections on the listeners it
 * inherited from the master and runs a session (session.h) for each. Runs
 * unprivileged, usually chrooted into the spool directory.
 */
#ifndef AUTHRELAY_SMTPD_H
#define AUTHRELAY_SMTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include "../spool/spool_fs.h"

struct config;
struct conn_limit;
struct spool_gauge;
struct send_limit;
struct keyproc_client;

/* What a worker needs of [protection] (the auth process's section): the
 * master fills it in, since no SMTP worker reads auth or queue settings. */
struct smtpd_protection {
	char **sender_allow_users; /* logins that may use any MAIL FROM */
	size_t n_sender_allow_users;
	unsigned messages_per_hour;   /* 0 = unlimited */
	unsigned recipients_per_hour; /* 0 = unlimited */
	unsigned lockout_reply;       /* 454, or 421 (and close) */
};

/* What the master hands a worker. */
struct smtpd_params {
	const struct config *cfg;
	unsigned worker;       /* index, for the connection-limit table */
	const int *listen_fds; /* one per cfg->listeners[i] */
	struct conn_limit *limits;
	const unsigned *limit_ids;             /* the conn_limit row of each listener */
	SSL_CTX *tls;                          /* NULL when no listener uses TLS */
	struct keyproc_client *keyproc;        /* tls's signer; NULL without tls */
	const char *spool_dir;                 /* as seen by this process (after chroot) */
	const char *auth_socket;               /* as seen by this process (after chroot) */
	const struct spool_gauge *queue_gauge; /* queue full -> 421 4.3.2 */
	struct send_limit *send_limits;        /* messages/recipients per hour */
	bool group_commit;                     /* [queue] group_commit */
	enum spool_fs_sync spool_sync;         /* how a commit round ends (spool_fs.h) */
	struct smtpd_protection protection;    /* from [protection] */
};

/* Run the worker until it has ended as the master asked: SIGHUP retires it
 * (a reload), SIGTERM stops it, SIGQUIT at once (see smtpd.c). Returns the
 * process exit status. */
int smtpd_main(const struct smtpd_params *);

#endif
