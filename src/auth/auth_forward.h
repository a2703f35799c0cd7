/* SPDX-License-Identifier: ISC */
/*
 * auth_forward.h - the smtp-forward source outside the auth server: what the
 * admin tools ("authrelay test-auth", auth_test_cmd.c) need to run one
 * verification against the [smtp-forward] upstreams with a trace of the
 * dialogue. The daemon uses the source through auth_source_forward
 * (auth_source.h) only.
 */
#ifndef AUTHRELAY_AUTH_FORWARD_H
#define AUTHRELAY_AUTH_FORWARD_H

#include "auth_source.h"

struct auth_forward;

/* reason: why (the log words are in README, [smtp-forward]). */
typedef void auth_forward_done_cb(void *arg, enum auth_result result, enum auth_reason reason);
/* One line of the upstream dialogue: "upstream ...", "C: EHLO ...",
 * "S: 250-...", "TLS: ...", "result: ...". The login and the password never
 * appear: AUTH lines show "********". */
typedef void auth_forward_trace_cb(void *arg, const char *line);

/* Parse and check [smtp-forward] (names resolved here, once), build the TLS
 * context. No connection is opened. 0, or -1 with *error_r: one
 * "file:line: message" per problem, newline-separated, no newline at the
 * end (valid until the next call). */
int auth_forward_new(const struct auth_env *env, struct auth_forward **r, const char **error_r);
/* Closes every upstream connection. Callbacks of checks still running are
 * not called. */
void auth_forward_free(struct auth_forward *);

/* Send every later check's dialogue to cb (NULL: stop). */
void auth_forward_set_trace(struct auth_forward *, auth_forward_trace_cb *cb, void *arg);

/* Verify req's login and password (copied; req->mech is ignored: the
 * upstream gets PLAIN or LOGIN as [smtp-forward] mechanisms and the upstream
 * allow) against the upstreams in order. cb runs exactly once, on the loop,
 * never before this returns. */
void auth_forward_check(struct auth_forward *, const struct auth_request *req,
                        auth_forward_done_cb *cb, void *arg);

#endif
