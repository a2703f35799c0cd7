/* SPDX-License-Identifier: ISC */
/*
 * forward_pool.h - the sessions of the forwarding source (forward_session.h):
 * at most max_sessions open at once, counting those still saying QUIT; and
 * with `preconnect`, that many opened ahead of need to the first healthy
 * upstream and kept ready for the next logins. A ready one is replaced when
 * it has waited a minute (servers drop idle clients) or when its upstream
 * is no longer the first healthy one, and closed when a login needs room
 * for a session to another upstream.
 *
 * The pool tells its owner (the source) when room may have appeared, so
 * that logins waiting for a session go on; it does not pre-connect while
 * logins wait.
 */
#ifndef AUTHRELAY_FORWARD_POOL_H
#define AUTHRELAY_FORWARD_POOL_H

#include "forward_session.h"

struct forward_pool;

struct forward_pool_owner {
	/* A session was freed or a pre-connected one got ready. */
	void (*room)(void *arg);
	/* True while logins wait for a session: they come first. */
	bool (*waiting)(void *arg);
	void *arg;
};

/* env and owner are copied (env's target must outlive the pool). Nothing is
 * opened before forward_pool_start(). */
struct forward_pool *forward_pool_new(const struct forward_session_env *env,
                                      const struct forward_pool_owner *owner);
/* Frees every session at once, without callbacks. */
void forward_pool_free(struct forward_pool *);

/* Start pre-connecting (with the daemon's loop; never for check-config or
 * test-auth), and check the ready sessions every few seconds. */
void forward_pool_start(struct forward_pool *);
/* Check the ready sessions and top them up on the next loop turn (after a
 * reload made an upstream healthy again). */
void forward_pool_kick(struct forward_pool *);

enum forward_pool_got {
	FORWARD_POOL_READY,   /* a ready pre-connected session: AUTH may go */
	FORWARD_POOL_OPENING, /* a new session: READY will come */
	FORWARD_POOL_FULL,    /* max_sessions are busy: wait for room */
	FORWARD_POOL_FAILED,  /* the connection could not even start (logged,
	                         the upstream marked down) */
};

/* A session to up for a login, its events to cb: a ready pre-connected one
 * (unless fresh), else a new one, after closing a ready session to another
 * upstream if max_sessions are open. *s_r gets the session (READY,
 * OPENING). */
enum forward_pool_got forward_pool_get(struct forward_pool *, struct fwd_upstream *up, bool fresh,
                                       forward_session_cb *cb, void *arg,
                                       struct forward_session **s_r);

/* True if forward_pool_get() would not say FULL. */
bool forward_pool_has_room(const struct forward_pool *);

#endif
