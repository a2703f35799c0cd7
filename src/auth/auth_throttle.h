/* SPDX-License-Identifier: ISC */
/*
 * auth_throttle.h - brute-force protection in the auth process, shared by
 * every SMTP worker because it lives here.
 *
 * Failed logins are counted in sliding windows of throttle_window seconds
 * under three keys: the client (IPv4 address, IPv6 network of ipv6_prefix
 * bits), the login, and the pair (client, login). What is counted is the
 * number of DISTINCT wrong passwords (by keyed digest, never the password):
 * a phone retrying one stale password counts once, so it is not mistaken for
 * an attack and cannot lock its owner out.
 *
 * Logins are counted in their normalized spelling (login_norm.h), so "ann",
 * " ANN" and "ann " share one budget. Once a source has found the user, the
 * attempt is also counted under the canonical identity it names
 * (auth_throttle_admit_identity(): an LDAP entry's DN), so that the logins
 * "ann", "ann@example.org" and "CORP\ann" that find one entry share one
 * budget too.
 *
 * Attempts are counted while in flight (throttle_store.h): an attempt takes
 * room under each key before any source is asked and gives it back, or turns
 * it into a failure, when it is answered. So however many attempts arrive at
 * once, no more than the configured number of distinct wrong passwords per
 * client, per login and per pair reach a source within the window. An
 * attempt that finds no room waits (admission callbacks come later) until
 * the attempts in flight are answered; waiting ones are retried whenever an
 * attempt settles, and on auth_throttle_tick().
 *
 * Past delay_after failures the answer to a failure is delayed (delay_ms,
 * doubling per failure, at most delay_max_ms). At lockout_client_failures /
 * lockout_client_login_failures a client / pair is locked out for
 * lockout_time: its logins get AUTH_TEMPFAIL reason=locked without any
 * source being asked. At lockout_login_failures the login itself is
 * shielded: no source is asked for it any more (so attackers cannot trip the
 * directory's own account lockout, e.g. Active Directory's), yet a correct
 * password still found in the auth cache gets in. Clients inside
 * allow_networks are exempt from the per-client and per-pair counting only:
 * the per-login shield and its delays hold for them too, since the client
 * address is only what the worker says. A tempfail (directory down) is never
 * a failure: callers settle it with THROTTLE_RELEASE.
 */
#ifndef AUTHRELAY_AUTH_THROTTLE_H
#define AUTHRELAY_AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include "throttle_store.h"
#include "../lib/keyhash.h"

struct protection_config;
struct auth_throttle;
struct auth_throttle_ticket;

enum auth_throttle_scope {
	THROTTLE_NONE = 0,
	THROTTLE_CLIENT,       /* every login from this client */
	THROTTLE_CLIENT_LOGIN, /* this login from this client */
	THROTTLE_LOGIN,        /* the lockout shield: this login from anywhere */
};

enum auth_throttle_admission {
	THROTTLE_GO,       /* ask the cache, then the source */
	THROTTLE_SHIELDED, /* the login is shielded: the cache may answer, no source */
	THROTTLE_REFUSED,  /* the client or the pair is locked out */
	THROTTLE_BUSY,     /* too many attempts waiting already */
};

/* What one settled attempt did. */
struct auth_throttle_result {
	unsigned delay_ms;               /* hold the failure this long; 0 = none */
	unsigned failures;               /* the highest distinct count of its keys */
	enum auth_throttle_scope locked; /* a lockout this failure started, or NONE */
};

/* An admission's answer: scope is the lockout that refused or shielded it
 * (THROTTLE_NONE for GO and BUSY). Runs exactly once, possibly before the
 * call returns; not at all if the ticket is freed first. */
typedef void auth_throttle_admit_cb(void *arg, enum auth_throttle_admission,
                                    enum auth_throttle_scope scope);

/* pc and kh are borrowed and must outlive the throttle. The counters live
 * in this process (throttle_store_local_new()). */
struct auth_throttle *auth_throttle_new(const struct protection_config *pc,
                                        const struct keyhash *kh);
/* Share the counters and lockouts with the other gateways through sr
 * (throttle_store_redis.c), this process's counts answering while Redis is
 * down or slow. pw_kh, if not NULL, names passwords instead of kh: keyed
 * alike on every gateway ([shared] secret_file), the same wrong password
 * sent to two of them counts once. Call before the first ticket; sr and
 * pw_kh must outlive the throttle. */
struct shared_redis;
void auth_throttle_share(struct auth_throttle *, struct shared_redis *sr, const char *key_prefix,
                         const struct keyhash *pw_kh);
/* The shared store answers again (the shared_redis up hook): send what was
 * counted and unlocked here meanwhile, in rounds. */
void auth_throttle_resync(struct auth_throttle *);

/* Waiting tickets are dropped without their callbacks. */
void auth_throttle_free(struct auth_throttle *);
/* A reload: go on with pc (borrowed, as by new), keeping every counter and
 * lockout; entries beyond a smaller throttle_size go, least recently used
 * first. */
void auth_throttle_reconfigure(struct auth_throttle *, const struct protection_config *pc);

/* One attempt of login (as typed) from client (address text, as the worker
 * sent it) with secret. The secret is kept only as keyed digests; the
 * strings may go once this returns. Free it with auth_throttle_ticket_free(). */
struct auth_throttle_ticket *auth_throttle_ticket_new(struct auth_throttle *, const char *client,
                                                      const char *login, const char *secret,
                                                      size_t secret_len);
/* Settles what the ticket still holds as THROTTLE_RELEASE, leaves the
 * waiting line, and frees it. NULL is fine. */
void auth_throttle_ticket_free(struct auth_throttle_ticket *);

/* Take room under the client, the pair and the login. cb says what to do. */
void auth_throttle_admit(struct auth_throttle_ticket *, uint64_t now_ms, auth_throttle_admit_cb *cb,
                         void *arg);
/* A source found the user: identity is its canonical name. Take room under
 * the identity's login and pair as well, unless it normalizes to the login
 * already counted (then cb gets THROTTLE_GO at once). secret is the
 * attempt's again (digests only are kept). */
void auth_throttle_admit_identity(struct auth_throttle_ticket *, const char *identity,
                                  const char *secret, size_t secret_len, uint64_t now_ms,
                                  auth_throttle_admit_cb *cb, void *arg);
/* The answer to a settle; r is valid during the call. Runs exactly once,
 * possibly before auth_throttle_settle() returns, and may free the ticket. */
typedef void auth_throttle_settle_cb(void *arg, const struct auth_throttle_result *r);

/* The attempt's answer: THROTTLE_FAILURE counts it (and may start a
 * lockout, logged), THROTTLE_SUCCESS forgets the pairs' failures (the
 * client's and the login's are kept: others may be attacking them),
 * THROTTLE_RELEASE gives the room back. Waiting attempts are retried after
 * cb has run. A ticket is settled at most once. */
void auth_throttle_settle(struct auth_throttle_ticket *, enum throttle_outcome, uint64_t now_ms,
                          auth_throttle_settle_cb *cb, void *arg);

/* Once a second or so: retry waiting attempts (lockouts end, failures
 * leave the window). */
void auth_throttle_tick(struct auth_throttle *, uint64_t now_ms);

/* One lockout in force, for the admin (`authrelay lockouts`). client is
 * NULL for a login lockout, login (normalized, login_norm.h; a canonical
 * identity for a lockout of one) NULL for a client one. */
struct auth_throttle_lockout {
	enum auth_throttle_scope scope;
	const char *client;
	const char *login;
	unsigned failures;    /* distinct wrong passwords that started it */
	unsigned remaining_s; /* until it ends */
};
typedef void auth_throttle_lockout_cb(void *arg, const struct auth_throttle_lockout *);

/* Call cb for every lockout in force at now_ms (strings valid during the
 * call). Walks the whole table: for the admin, not for a login's path. */
void auth_throttle_lockouts(struct auth_throttle *, uint64_t now_ms, auth_throttle_lockout_cb *cb,
                            void *arg);
/* The end of auth_throttle_lockouts_all(); local_only: the list is this
 * node's (shared, but Redis did not answer all of it). */
typedef void auth_throttle_lockouts_done_cb(void *arg, bool local_only);
/* `authrelay lockouts`: as auth_throttle_lockouts(), but the whole
 * cluster's when the lockouts are shared (asked of Redis in the
 * background); done runs once after the last cb, possibly before this
 * returns. */
void auth_throttle_lockouts_all(struct auth_throttle *, uint64_t now_ms,
                                auth_throttle_lockout_cb *cb, auth_throttle_lockouts_done_cb *done,
                                void *arg);
/* `authrelay unlock WHAT`: end every lockout naming what, a login (any
 * spelling that normalizes alike; an identity's lockout started by that
 * login too), a canonical identity, or a client address (its IPv6 network
 * counts), and forget the failures counted for it, so that its next login
 * is checked at once. Returns how many lockouts ended. Waiting attempts are
 * retried on the next tick. */
unsigned auth_throttle_unlock(struct auth_throttle *, const char *what, uint64_t now_ms);
/* The answer to auth_throttle_unlock_all(): lockouts ended (here or, when
 * shared, in Redis: the larger count); local_only: Redis did not answer,
 * the unlock is sent to it when it does. */
typedef void auth_throttle_unlocked_cb(void *arg, unsigned ended, bool local_only);
/* `authrelay unlock WHAT` on a gateway sharing its lockouts: as
 * auth_throttle_unlock(), then cb once Redis has answered (or at once,
 * possibly before this returns). */
void auth_throttle_unlock_all(struct auth_throttle *, const char *what, uint64_t now_ms,
                              auth_throttle_unlocked_cb *cb, void *arg);

/* Lockouts in force at now_ms (clients, pairs and shielded logins), for
 * the metrics. A walk of the store (the local one: its whole table): once
 * a second at most. */
size_t auth_throttle_locked(struct auth_throttle *, uint64_t now_ms);

/* "client", "client_login", "login", "none". */
const char *auth_throttle_scope_name(enum auth_throttle_scope);
/* Tracked keys and waiting attempts (tests). */
size_t auth_throttle_count(const struct auth_throttle *);
size_t auth_throttle_waiting(const struct auth_throttle *);

#endif
