/*
 * session.h - one SMTP server session: the protocol state machine of
 * RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8,
 * STARTTLS (RFC 3207) and AUTH (RFC 4954), relay policy, limits, and the DATA
 * path into the spool. A session owns itself and frees itself when done.
 */
#ifndef AUTHRELAY_SESSION_H
#define AUTHRELAY_SESSION_H

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

/* Shared by every session of a worker; outlives them all. */
struct session_env {
	const struct config *cfg;
	struct event_base *base;
	SSL_CTX *tls;
	struct keyproc_client *keyproc; /* signs for tls (keyproc_client.h) */
	struct auth_client *auth;
	struct threadpool *pool;           /* fsync of committed messages */
	struct spool_committer *committer; /* issue 5: single or group commit */
	struct conn_limit *limits;
	unsigned worker;
	const char *spool_dir;
	unsigned *n_sessions;                      /* live sessions of this worker */
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

#endif
