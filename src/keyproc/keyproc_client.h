/* SPDX-License-Identifier: ISC */
/*
 * keyproc_client.h - an SMTP worker's side of the key process (keyproc.h):
 * one connection to private/keyproc, and the signatures in flight on it.
 *
 * Signatures are asked for from inside OpenSSL: the worker's key
 * (keyproc_pkey.h) calls keyproc_client_sign() while SSL_do_handshake() runs
 * in an OpenSSL async job (SSL_MODE_ASYNC). The request is written, the job
 * pauses (SSL_do_handshake() returns SSL_ERROR_WANT_ASYNC) and the worker's
 * loop goes on with its other sessions. When the SIGNATURE arrives, the
 * handshake's keyproc_wait wakes its owner, which calls SSL_do_handshake()
 * again: the job resumes where it paused and the handshake goes on with the
 * signature. The event loop never waits for the key process.
 *
 * The handshake driver (smtpd/tls_handshake.c) brackets every
 * SSL_do_handshake() with keyproc_wait_enter()/leave(), which is how a
 * signature asked for deep inside OpenSSL finds the handshake it belongs to.
 *
 * Failures: when the key process cannot be reached, does not answer within
 * the timeout, closes the connection or refuses, the signature fails and so
 * does that handshake (the client gets a TLS alert); the next signature
 * connects again. The master keeps the listening socket while it restarts a
 * dead key process, so a request made meanwhile waits in the socket's
 * backlog and is answered by the new process.
 */
#ifndef AUTHRELAY_KEYPROC_CLIENT_H
#define AUTHRELAY_KEYPROC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include "keyproc_proto.h"

struct event_base;
struct keyproc_client;
struct keyproc_wait;

/* socket_path: private/keyproc as seen by this process (after any chroot).
 * Nothing is connected until the first signature. timeout_ms bounds each
 * signature. */
struct keyproc_client *keyproc_client_new(const char *socket_path, unsigned timeout_ms);
/* The event loop the client runs on; before the first handshake. */
void keyproc_client_attach(struct keyproc_client *, struct event_base *base);
/* Every keyproc_wait must be gone. NULL is fine. */
void keyproc_client_free(struct keyproc_client *);

/* Called, from the event loop, when the signature a handshake waits for has
 * come (or failed): call SSL_do_handshake() again, not from inside wake. */
typedef void keyproc_wake_cb(void *arg);

/* One per TLS handshake in progress. */
struct keyproc_wait *keyproc_wait_new(struct keyproc_client *, keyproc_wake_cb *wake, void *arg);
/* No signature may be in flight (keyproc_wait_cancel() it and resume the
 * handshake first). NULL is fine. */
void keyproc_wait_free(struct keyproc_wait *);
/* Around each SSL_do_handshake() of the handshake w belongs to. */
void keyproc_wait_enter(struct keyproc_wait *);
void keyproc_wait_leave(struct keyproc_wait *);
/* A signature of this handshake is in flight (its async job is paused). */
bool keyproc_wait_pending(const struct keyproc_wait *);
/* Give up the signature in flight: its answer will be dropped, wake is not
 * called; the next SSL_do_handshake() resumes the job, the signature fails,
 * and the job (the handshake) ends with an error. */
void keyproc_wait_cancel(struct keyproc_wait *);

/* For keyproc_pkey.c, inside an OpenSSL async job started by an
 * SSL_do_handshake() between keyproc_wait_enter() and leave(): sign input
 * with the key named key_id, pausing the job until the answer. Writes at most
 * sig_size bytes to sig. Returns the signature's length, or -1 (logged). */
int keyproc_client_sign(struct keyproc_client *, const uint8_t key_id[KEYPROC_KEY_ID_LEN],
                        enum keyproc_alg alg, const unsigned char *input, size_t input_len,
                        unsigned char *sig, size_t sig_size);

#endif
