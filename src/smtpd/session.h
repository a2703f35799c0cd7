/* SPDX-License-Identifier: ISC */
/*
 * session.h - one SMTP server session: the protocol state machine of
 * RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8,
 * STARTTLS (RFC 3207) and AUTH (RFC 4954), relay policy, limits, and the DATA
 * path into the spool. A session owns itself and frees itself when done.
 */
#ifndef AUTHRELAY_SESSION_H
#define AUTHRELAY_SESSION_H

#include <stdbool.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

struct config;
struct listener_cfg;
struct event_base;
struct auth_client;
struct threadpool;
struct conn_limit;
struct spool_committer;
struct smtpd_protection;
struct send_limit;
struct keyproc_client;
struct session;

/* Every live session of a worker, so that a stop reaches them all. */
struct session_list {
	LIST_HEAD(, session) head;
	unsigned n; /* live sessions */
	/* Set by session_stop_all(): each session is answered 421 4.3.2 and
	 * closed when it next waits for a command. */
	bool stopping;
	/* Runs when n drops to zero (the worker may then exit), or NULL. */
	void (*empty_cb)(void *arg);
	void *empty_arg;
};

/* Shared by every session of a worker; outlives them all. */
struct session_env {
	const struct config *cfg;
	struct event_base *base;
	SSL_CTX *tls;
	struct keyproc_client *keyproc; /* signs for tls (keyproc_client.h) */
	struct auth_client *auth;
	struct threadpool *pool;           /* fsync of committed messages */
	struct spool_committer *committer; /* single or group commit */
	struct conn_limit *limits;
	/* The conn_limit row of each listener (cfg->listeners[i]): a
	 * listener keeps its row across reloads, while its index may change. */
	const unsigned *limit_ids;
	unsigned worker;
	const char *spool_dir;
	struct session_list *sessions;             /* live sessions of this worker */
	const struct smtpd_protection *protection; /* from [protection] */
	struct send_limit *send_limits;            /* shared per-user counts */
};

/* Take over fd (a just-accepted connection on listener number listener_idx).
 * sa is the client: the peer, or the address a PROXY header carried, in
 * which case proxy is the load balancer's address as text (logged), else
 * NULL. The connection-limit slot for the client is already held; the
 * session gives it back when it ends. */
void session_start(const struct session_env *env, unsigned listener_idx, int fd,
                   const struct sockaddr *sa, socklen_t salen, const char *proxy);

/* For an implicit-TLS listener, a client over a connection limit: do the TLS
 * handshake (RFC 8314 3.3: all SMTP runs inside TLS), send reply, close. No
 * connection-limit slot is held. */
void session_start_refused(const struct session_env *env, unsigned listener_idx, int fd,
                           const struct sockaddr *sa, socklen_t salen, const char *proxy,
                           const char *reply);

/* The worker stops (RFC 5321 3.8). Every session waiting for a command now
 * is answered "421 4.3.2" and closed; the others when they next wait for
 * one: a session in DATA finishes its message and gets its 250 first. With
 * now, every session is answered 421 and closed at once, whatever it is
 * doing (a message not yet answered was never promised). */
void session_stop_all(struct session_list *sessions, bool now);

#endif
