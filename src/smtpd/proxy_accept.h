/* SPDX-License-Identifier: ISC */
/*
 * proxy_accept.h - read a PROXY protocol header (proxy_header.h) from a
 * just-accepted connection, without blocking the worker and within a time
 * limit, before anything is sent to the client.
 *
 * Exactly the header's bytes are taken from the socket: what follows (the
 * TLS ClientHello of an implicit-TLS listener) stays there for the session.
 */
#ifndef AUTHRELAY_PROXY_ACCEPT_H
#define AUTHRELAY_PROXY_ACCEPT_H

#include "proxy_header.h"

struct event_base;

/* The header has arrived (h != NULL, error NULL) or not (h NULL, error a
 * static reason: malformed, timeout, closed). fd is the caller's again
 * either way: hand it to a session or close it. Runs once, never before
 * proxy_accept_start() returns. */
typedef void proxy_accept_cb(int fd, const struct proxy_header *h, const char *error, void *arg);

/* Wait at most timeout_ms for the header on fd (non-blocking). The reader
 * frees itself after calling cb. */
void proxy_accept_start(struct event_base *base, int fd, unsigned timeout_ms, proxy_accept_cb *cb,
                        void *arg);

#endif
