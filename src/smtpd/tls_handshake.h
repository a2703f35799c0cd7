/* SPDX-License-Identifier: ISC */
/*
 * tls_handshake.h - the server side of a TLS handshake on a non-blocking
 * socket, driven from the worker's event loop, for a session that goes on in
 * a bufferevent_openssl once it is done (BUFFEREVENT_SSL_OPEN).
 *
 * Why not libevent's own handshake (BUFFEREVENT_SSL_ACCEPTING): the signature
 * comes from the key process (keyproc_client.h), and waiting for it without
 * blocking the loop needs OpenSSL's async jobs (SSL_MODE_ASYNC), whose
 * SSL_ERROR_WANT_ASYNC libevent 2.1 treats as a fatal error. Here the
 * handshake waits for readability, writability or the signature, whichever
 * OpenSSL asks for, under one deadline for the whole handshake.
 */
#ifndef AUTHRELAY_TLS_HANDSHAKE_H
#define AUTHRELAY_TLS_HANDSHAKE_H

#include <openssl/ssl.h>

struct event_base;
struct keyproc_client;
struct tls_handshake;

enum tls_handshake_result {
	TLS_HANDSHAKE_OK,
	TLS_HANDSHAKE_FAILED,  /* a TLS error, the client left, or no signature */
	TLS_HANDSHAKE_TIMEOUT, /* not done within the deadline */
};

/* error: what went wrong (static or OpenSSL's), "" on success. */
typedef void tls_handshake_cb(enum tls_handshake_result result, const char *error, void *arg);

/* Start the handshake of ssl (accept state, its fd set to fd) on base;
 * signatures go through kc. cb runs exactly once, from the loop, never
 * inside this call; tls_handshake_free() may be called inside cb. On success
 * ssl is left without SSL_MODE_ASYNC, ready for bufferevent_openssl (whose
 * reads and writes then need no async job). The caller keeps ssl and fd. */
struct tls_handshake *tls_handshake_start(struct event_base *base, SSL *ssl, int fd,
                                          struct keyproc_client *kc, unsigned timeout_s,
                                          tls_handshake_cb *cb, void *arg);

/* Stop a handshake still running (cb is not called) and free it. A
 * signature in flight is cancelled and OpenSSL's paused job unwound, so the
 * caller may then SSL_free() ssl. NULL is fine. */
void tls_handshake_free(struct tls_handshake *);

#endif
