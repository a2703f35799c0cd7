/* SPDX-License-Identifier: ISC */
/*
 * smtp_client.h - one asynchronous SMTP client connection on a libevent loop,
 * shared by the SMTP-forwarding auth source (AUTH on an upstream server) and
 * the queue's delivery agent (relaying messages to their next hop).
 *
 * The client speaks commands and replies; policy (which mechanism, which
 * recipients, what a 4xx means) stays with the caller. Commands may be
 * queued before their replies arrive (PIPELINING, RFC 2920): each callback
 * gets its own reply, in order. Every reply is bounded by the params (line
 * length, lines per reply), and every wait by a timeout; malformed or
 * oversized replies end the connection with SMTP_CLIENT_PROTOCOL.
 *
 * Failures (timeout, connection, TLS, protocol) reach every entry still
 * queued, in order, on the next loop turn: no callback ever runs inside a
 * call into this module. Without PIPELINING in the EHLO reply, queued
 * commands go out one at a time.
 *
 * Ownership: the caller owns the client and frees it with smtp_client_free(),
 * which may be called from inside a callback (the free is deferred); callbacks
 * of commands still pending are then never called.
 *
 * The opening of a session is one call, smtp_client_handshake(): connect
 * (implicit TLS first if asked), the greeting, EHLO (HELO if refused, where
 * the caller allows it), STARTTLS as the caller's TLS policy says, and EHLO
 * again under TLS. Both users open their sessions through it, with TLS
 * contexts from smtp_client_tls_ctx_new(), so a TLS or EHLO fix is made once.
 */
#ifndef AUTHRELAY_SMTP_CLIENT_H
#define AUTHRELAY_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <openssl/ssl.h>
#include "../lib/common.h"

struct bufferevent;
struct event_base;
struct smtp_client;

struct smtp_client_params {
	unsigned connect_timeout;  /* s: TCP connect + TLS handshake (implicit TLS) */
	unsigned greeting_timeout; /* s: RFC 5321 4.5.3.2.1 says 5 min */
	unsigned command_timeout;  /* s: per reply to a command (4.5.3.2.2-4) */
	unsigned data_timeout;     /* s: reply to the final "." (4.5.3.2.6, 10 min) */
	size_t max_reply_line;     /* octets per reply line, e.g. 4096 */
	size_t max_reply_lines;    /* lines per multi-line reply, e.g. 200 */
	const char *log_id;        /* prefix for log lines, e.g. "fwd=exchange1" */
};

enum smtp_client_status {
	SMTP_CLIENT_OK = 0,      /* a reply (see struct smtp_reply) */
	SMTP_CLIENT_TIMEOUT,     /* connect, handshake or reply took too long */
	SMTP_CLIENT_CONN_FAILED, /* refused, reset, or closed by the server */
	SMTP_CLIENT_TLS_FAILED,  /* handshake failed or the certificate did not verify */
	SMTP_CLIENT_PROTOCOL,    /* reply malformed or over the bounds */
};

struct smtp_reply {
	int code;          /* 200..599 */
	char enhanced[16]; /* "5.7.8" when the reply carries one, else "" */
	const char *text;  /* every line's text after "NNN-"/"NNN ", joined with
	                      '\n'; valid only during the callback */
	size_t n_lines;
};

/* Called once per connect, command, STARTTLS or data transfer. reply is
 * non-NULL only when status is SMTP_CLIENT_OK (for STARTTLS completion and
 * connect it is the 220 greeting / STARTTLS's 220, as received). */
typedef void smtp_client_cb(struct smtp_client *client, enum smtp_client_status status,
                            const struct smtp_reply *reply, void *arg);

struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_params *p);

/* Connect to addr. With implicit_tls non-NULL the TLS handshake comes first
 * (RFC 8314), verified against servername when verify is true. cb gets the
 * greeting. Returns 0, or -1 (no callback) if the connection cannot even be
 * started. */
int smtp_client_connect(struct smtp_client *, const struct sockaddr *addr, socklen_t addrlen,
                        SSL_CTX *implicit_tls, const char *servername, bool verify,
                        smtp_client_cb *cb, void *arg);

/* Send one command line (without CRLF; at most 2048 octets) and call cb with
 * its reply. Lines may be queued before earlier replies arrived. */
void smtp_client_command(struct smtp_client *, const char *line, smtp_client_cb *cb, void *arg);
/* The same for a line holding a secret (AUTH): never logged, wiped after
 * sending. It may be up to 12288 octets (RFC 4954 4). A line over its bound
 * or holding CR or LF is never sent: the connection ends with
 * SMTP_CLIENT_PROTOCOL. A trace (smtp_client_set_trace) shows "C: " and
 * shown instead ("AUTH PLAIN ********"; NULL: "********"). */
void smtp_client_command_secret(struct smtp_client *, const char *line, const char *shown,
                                smtp_client_cb *cb, void *arg);

/* Send EHLO name; on a 250 the extensions are recorded (smtp_client_has_ext).
 * cb gets the reply. */
void smtp_client_ehlo(struct smtp_client *, const char *name, smtp_client_cb *cb, void *arg);
/* After a successful EHLO: true if the server announced keyword (case-
 * insensitive); *param_r (if not NULL) gets its parameters ("PLAIN LOGIN"),
 * valid until the next EHLO. */
bool smtp_client_has_ext(const struct smtp_client *, const char *keyword, const char **param_r);

/* Send STARTTLS; on its 220 run the TLS handshake (verify the certificate
 * against servername when verify is true). cb gets SMTP_CLIENT_OK with the 220
 * once TLS is up, the server's reply if it refused (a non-220), or
 * SMTP_CLIENT_TLS_FAILED. RFC 3207 4.2: the caller sends EHLO again. */
void smtp_client_starttls(struct smtp_client *, SSL_CTX *ctx, const char *servername, bool verify,
                          smtp_client_cb *cb, void *arg);

/* After DATA's 354: send the message read from fd from offset to its end
 * (CRLF or LF line ends; dot-stuffed here, RFC 5321 4.5.2), then the final
 * ".", and call cb with the reply. The fd is not closed. */
void smtp_client_send_message(struct smtp_client *, int fd, off_t offset, smtp_client_cb *cb,
                              void *arg);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384", or NULL without TLS. */
const char *smtp_client_tls_info(const struct smtp_client *);
/* The peer's address as text, for logs. */
const char *smtp_client_peer(const struct smtp_client *);
/* True while the connection is up and no command is pending: it can be
 * reused for another transaction (after RSET if the last one failed). */
bool smtp_client_idle(const struct smtp_client *);

/* Close (sending nothing more; call smtp_client_command(c, "QUIT") first
 * for a polite end) and free. Safe inside a callback. */
void smtp_client_free(struct smtp_client *);

/* One line of the dialogue, for an administrator's trace: "C: EHLO name",
 * "S: 250-PIPELINING" (each reply line as it came, escaped), "TLS: TLSv1.3
 * TLS_AES_256_GCM_SHA384 (certificate verified for mx.example)". Lines are
 * traced as they go on or come off the wire; secrets never appear. The
 * callback runs synchronously and must not call into the client. */
typedef void smtp_client_trace_cb(void *arg, const char *line);

/* Send the dialogue from now on to cb (NULL: stop). */
void smtp_client_set_trace(struct smtp_client *, smtp_client_trace_cb *cb, void *arg);

/* ------------------------------------------------------------ handshake */

/* How the handshake uses TLS. */
enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE,     /* plaintext; STARTTLS is never sent */
	SMTP_CLIENT_TLS_MAY,      /* STARTTLS when offered; if refused, on in
	                             plaintext (opportunistic, RFC 7435) */
	SMTP_CLIENT_TLS_STARTTLS, /* STARTTLS must be offered and succeed */
	SMTP_CLIENT_TLS_IMPLICIT, /* TLS from the first byte (RFC 8314) */
};

/* Judges the 220 greeting before anything is sent: false ends the
 * handshake with SMTP_CLIENT_HS_REJECTED (e.g. a greeting that is our own:
 * a loop). greeting is valid during the call. */
typedef bool smtp_client_greeting_cb(void *arg, const struct smtp_reply *greeting);

struct smtp_client_handshake {
	const char *helo_name; /* EHLO's (and HELO's) argument; copied */
	enum smtp_client_tls tls;
	SSL_CTX *tls_ctx;                        /* from smtp_client_tls_ctx_new(), unused with
	                                            TLS_NONE; must outlive the client */
	const char *tls_name;                    /* the name the certificate must carry, and SNI
	                                            (not sent for an IP address); copied; NULL:
	                                            none */
	bool tls_verify;                         /* verify the chain and tls_name */
	bool helo_fallback;                      /* HELO when the first EHLO gets a 5xx (RFC 5321
	                                            3.2: an old server) */
	smtp_client_greeting_cb *check_greeting; /* NULL: any 220 will do */
	void *check_arg;
};

/* Where a handshake ended. */
enum smtp_client_step {
	SMTP_CLIENT_STEP_GREETING, /* TCP connect, implicit TLS, the 220 */
	SMTP_CLIENT_STEP_EHLO,
	SMTP_CLIENT_STEP_HELO,
	SMTP_CLIENT_STEP_STARTTLS, /* the command, then the TLS handshake */
	SMTP_CLIENT_STEP_EHLO_TLS, /* EHLO again under TLS (RFC 3207 4.2) */
};

enum smtp_client_hs_outcome {
	SMTP_CLIENT_HS_READY,       /* greeted, EHLO (or HELO) accepted, TLS as
	                               asked: commands may follow */
	SMTP_CLIENT_HS_FAILED,      /* status says why (timeout, connection, TLS,
	                               protocol); the connection is gone */
	SMTP_CLIENT_HS_REFUSED,     /* reply: the server refused the step (a
	                               greeting other than 220, a non-250 to EHLO
	                               or HELO, a non-220 to STARTTLS) */
	SMTP_CLIENT_HS_REJECTED,    /* check_greeting refused the 220 (reply) */
	SMTP_CLIENT_HS_NO_STARTTLS, /* TLS_STARTTLS, but EHLO did not offer it */
	SMTP_CLIENT_HS_NO_ESMTP,    /* TLS_STARTTLS, but only HELO was accepted */
};

struct smtp_client_hs_result {
	enum smtp_client_hs_outcome outcome;
	enum smtp_client_step step;     /* the step it ended at */
	enum smtp_client_status status; /* FAILED: why; otherwise SMTP_CLIENT_OK */
	const struct smtp_reply *reply; /* REFUSED, REJECTED: the server's reply
	                                   (valid during the callback); else NULL */
	int starttls_refused;           /* READY with TLS_MAY: the code a refused
	                                   STARTTLS got (the session is in
	                                   plaintext); 0 if none was refused */
	bool esmtp;                     /* READY: EHLO, not HELO, was accepted */
};

/* Called once when the handshake ends. On READY the server's extensions are
 * those of the last EHLO (smtp_client_has_ext; none after HELO) and
 * smtp_client_tls_info() says whether TLS is up. Otherwise the caller
 * decides: QUIT (the connection is still up after REFUSED, REJECTED,
 * NO_STARTTLS and NO_ESMTP) or smtp_client_free(). */
typedef void smtp_client_hs_cb(struct smtp_client *, const struct smtp_client_hs_result *,
                               void *arg);

/* Open the session: connect to addr, read the greeting, EHLO, and with
 * TLS_MAY or TLS_STARTTLS, STARTTLS when the server offers it, the TLS
 * handshake and EHLO again. A failed TLS handshake is FAILED even with
 * TLS_MAY: the connection is gone, and a caller that wants the message to go
 * in plaintext then connects again with TLS_NONE. cb runs exactly once, never
 * before this returns. Returns 0, or -1 (no callback) if the connection
 * cannot even be started, as smtp_client_connect(). */
int smtp_client_handshake(struct smtp_client *, const struct sockaddr *addr, socklen_t addrlen,
                          const struct smtp_client_handshake *hs, smtp_client_hs_cb *cb, void *arg);

/* The one client TLS context builder. With verify, the trust anchors come
 * from ca_file (NULL: the system's store) and TLS 1.2 is the least version
 * accepted. Without, nothing is loaded and no least version is set beyond
 * OpenSSL's own: opportunistic TLS (RFC 7435) beats plaintext whatever the
 * version, and certificates are not checked. Returns a context the caller
 * frees with SSL_CTX_free(), or NULL with *error_r ("cannot load FILE:
 * reason"; a static buffer, valid until the next call). */
SSL_CTX *smtp_client_tls_ctx_new(const char *ca_file, bool verify, const char **error_r);

/* A TLS session on ctx for a client connection: with verify, the peer's
 * certificate must chain to ctx's anchors and carry name (a host name, also
 * sent as SNI, or an IP literal, matched against the IP addresses of the
 * certificate); name NULL or "" checks no name. Returns NULL when OpenSSL
 * cannot make one; the caller hands it to a bufferevent_openssl or frees it
 * with SSL_free(). Anyone's client TLS goes through it, so that name
 * checking is written once. */
SSL *smtp_client_tls_ssl_new(SSL_CTX *ctx, const char *name, bool verify);

/* Why the TLS handshake on bev (a bufferevent_openssl) failed, for a log
 * line: "TLS handshake failed: certificate: REASON" when the certificate or
 * its name did not verify, else OpenSSL's reason. Clears OpenSSL's error
 * queue. */
void smtp_client_tls_error(struct bufferevent *bev, char *buf, size_t bufsz);

#endif
