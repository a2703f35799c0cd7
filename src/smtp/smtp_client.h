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
 */
#ifndef AUTHRELAY_SMTP_CLIENT_H
#define AUTHRELAY_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <openssl/ssl.h>
#include "../lib/common.h"

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
 * SMTP_CLIENT_PROTOCOL. */
void smtp_client_command_secret(struct smtp_client *, const char *line, smtp_client_cb *cb,
                                void *arg);

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

#endif
