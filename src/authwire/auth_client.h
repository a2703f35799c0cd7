/* SPDX-License-Identifier: ISC */
/*
 * auth_client.h - the SMTP worker's side of the auth protocol: connects to
 * the auth process's UNIX socket, sends VERIFY requests and routes each RESULT
 * back to the session that asked. SMTP code never sees a credential store.
 *
 * If the auth process is down or slow, requests complete with AUTH_TEMPFAIL
 * (454 4.7.0): after request_timeout seconds, or at once while disconnected.
 * The client reconnects by itself with back-off.
 */
#ifndef AUTHRELAY_AUTH_CLIENT_H
#define AUTHRELAY_AUTH_CLIENT_H

#include <stdint.h>
#include "auth_proto.h"

struct event_base;
struct auth_client;

/* The answer to one verify. reply and its strings belong to the client and
 * are valid until the callback returns: copy what you keep (identity,
 * addresses). When no RESULT came (timeout, not connected, a request over
 * the limits), reply->id is the handle, identity and addresses are "" and
 * delay_ms is 0. */
typedef void auth_result_cb(const struct auth_reply *reply, void *arg);

/* socket_path: the auth process's socket as seen by this process (after any
 * chroot). Connects in the background. request_timeout: seconds a request
 * waits for its RESULT (0: 30). */
struct auth_client *auth_client_new(struct event_base *base, const char *socket_path,
                                    unsigned request_timeout);
/* Drops the requests still pending without calling them back. May be
 * called from an auth_result_cb. NULL is fine. */
void auth_client_free(struct auth_client *);
/* Capabilities the auth process announced (AUTH_CAP_*), 0 until connected. */
uint32_t auth_client_caps(const struct auth_client *);

/* Start an asynchronous credential check. cb runs exactly once, never before
 * this returns (unless auth_client_cancel() is called first, then never). All
 * strings in req are copied; the caller may wipe its own. req->id is ignored.
 * Returns a handle for auth_client_cancel(). */
uint32_t auth_client_verify(struct auth_client *, const struct auth_request *req,
                            auth_result_cb *cb, void *arg);
/* Forget a pending request (the session is going away): its cb never runs. */
void auth_client_cancel(struct auth_client *, uint32_t handle);

/* The cluster's sending counts of a user (COUNTS), or c->shared false when
 * there are none: the auth process has no Redis, Redis is away, or no
 * answer came within AUTH_CLIENT_COUNT_TIMEOUT_MS. */
typedef void auth_counts_cb(const struct auth_counts *c, void *arg);

/* The longest a session waits at MAIL for the shared counts: the auth
 * process answers within [shared] timeout; this only bounds a stuck one. */
#define AUTH_CLIENT_COUNT_TIMEOUT_MS 1000

/* Ask for user's shared sending counts (only useful with
 * AUTH_CAP_SHARED_SEND). cb runs exactly once, never before this returns,
 * unless cancelled with auth_client_cancel(). Returns the handle. */
uint32_t auth_client_count(struct auth_client *, const char *user, auth_counts_cb *cb, void *arg);

/* Tell the auth process about an event (a sending limit hit) that may raise
 * an alert. Fire and forget: dropped while not connected. */
void auth_client_notify(struct auth_client *, const struct auth_notify *);

/* True for the reasons this client answers with by itself, the auth process
 * never having answered (timeout, not connected, too many requests, a field
 * over its limit): the worker logs and counts those attempts itself. */
bool auth_client_local_reason(enum auth_reason reason);

#endif
