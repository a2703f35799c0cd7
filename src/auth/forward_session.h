/* SPDX-License-Identifier: ISC */
/*
 * forward_session.h - one connection to an [smtp-forward] upstream and the
 * AUTH conversation on it: opened with smtp_client_handshake() (implicit TLS
 * or STARTTLS as configured, our own greeting back is a loop), then AUTH
 * PLAIN or LOGIN for one login, and the upstream's answer read as the
 * source's result and reason.
 *
 * A session tells its user what happens through one callback, on the loop:
 *   READY   greeted and EHLO'd: forward_session_auth() may follow;
 *   ANSWER  AUTH was decided (ok, or a rejection), or the login cannot go
 *           (a NUL in a password only PLAIN would take, an unexpected
 *           challenge);
 *   FAILED  the session cannot serve: reason and whether the next upstream
 *           may be tried (the upstream is marked down already);
 *   STALE   a pre-connected session's connection had gone when AUTH was
 *           sent (the server's idle timeout): that says nothing about the
 *           upstream; a fresh session should be tried.
 * After ANSWER, FAILED and STALE the session is closing by itself (QUIT when
 * the connection allows) and its user must forget it; the closed callback
 * given at creation runs when it is freed, exactly once.
 *
 * Secrets: the login and password stay the caller's; AUTH lines go through
 * smtp_client_command_secret(), never logged, traced as "********".
 */
#ifndef AUTHRELAY_FORWARD_SESSION_H
#define AUTHRELAY_FORWARD_SESSION_H

#include <stddef.h>
#include "auth_forward.h"
#include "forward_config.h"
#include "../smtp/smtp_client.h"

struct event_base;
struct forward_session;

/* What every session of a source shares; owned by the source, outlives its
 * sessions. */
struct forward_session_env {
	struct event_base *base;
	const struct fwd_settings *set;
	struct smtp_client_params params; /* log_id is set per session */
	struct smtp_client_handshake hs;  /* tls_name is set per session */
	auth_forward_trace_cb *trace;     /* test-auth's trace; NULL: none */
	void *trace_arg;
};

enum forward_session_event {
	FORWARD_SESSION_READY,
	FORWARD_SESSION_ANSWER,
	FORWARD_SESSION_FAILED,
	FORWARD_SESSION_STALE,
};

struct forward_session_result {
	enum auth_result result; /* ANSWER: ok, fail or tempfail; FAILED,
	                            STALE: tempfail */
	enum auth_reason reason; /* AUTH_REASON_UPSTREAM_REJECTED ... */
	int code;                /* the upstream's reply code, 0 if none */
	bool failover;           /* FAILED: the next upstream may be tried
	                            (not after a timeout: the client has
	                            waited long enough) */
	const char *mech;        /* the mechanism AUTH used, NULL if none went */
};

/* s is the session on READY, NULL otherwise (it is gone or closing). r is
 * NULL on READY, and valid during the call. */
typedef void forward_session_cb(struct forward_session *s, enum forward_session_event event,
                                const struct forward_session_result *r, void *arg);
/* The session has been freed. */
typedef void forward_session_closed_cb(void *arg);

/* The login a session verifies; the caller's, valid until its answer. */
struct forward_login {
	const char *login;
	const char *secret;
	size_t secret_len;
};

/* A line of test-auth's trace (nothing without a trace callback). */
void forward_session_trace(const struct forward_session_env *env, const char *fmt, ...)
        AR_PRINTF(2, 3);

/* Open a session to up; its events go to cb. preconnect: made ahead of any
 * login, for the pool (its failures log as "pre-connect failed"). Returns
 * NULL, with no callback at all, if the connection cannot even be started
 * (logged, the upstream marked down). */
struct forward_session *forward_session_new(const struct forward_session_env *env,
                                            struct fwd_upstream *up, bool preconnect,
                                            forward_session_closed_cb *closed, void *closed_arg,
                                            forward_session_cb *cb, void *arg);

/* Hand a ready pre-connected session to a login: its events go to cb. */
void forward_session_take(struct forward_session *, forward_session_cb *cb, void *arg);

/* After READY: AUTH for login, with the first of [smtp-forward] mechanisms
 * the upstream offers. cb may run before this returns, when no AUTH can go
 * (the upstream offers none we use). */
void forward_session_auth(struct forward_session *, const struct forward_login *login);

/* Close: QUIT first when polite and the connection is idle, else at once.
 * No more events; the closed callback runs when it is freed (maybe within
 * this call). */
void forward_session_close(struct forward_session *, bool polite);

/* Free now, without any callback (the source's end). */
void forward_session_destroy(struct forward_session *);

/* True while the connection is up and nothing is pending. */
bool forward_session_idle(const struct forward_session *);
struct fwd_upstream *forward_session_upstream(const struct forward_session *);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" without TLS. */
const char *forward_session_tls(const struct forward_session *);

#endif
