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
 * Past delay_after failures the worker is told to wait before answering
 * (delay_ms, doubling per failure, at most delay_max_ms). At
 * lockout_client_failures / lockout_client_login_failures a client / pair is
 * locked out for lockout_time: its logins get AUTH_TEMPFAIL reason=locked
 * without any source being asked. At lockout_login_failures the login itself
 * is shielded: no source is asked for it any more (so attackers cannot trip
 * the directory's own account lockout, e.g. Active Directory's), yet a
 * correct password still found in the auth cache gets in. Clients inside
 * allow_networks are never counted nor locked. A tempfail (directory down)
 * is never a failure: callers only report AUTH_FAIL answers.
 */
#ifndef AUTHRELAY_AUTH_THROTTLE_H
#define AUTHRELAY_AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/keyhash.h"

struct protection_config;
struct auth_throttle;

enum auth_throttle_scope {
	THROTTLE_NONE = 0,
	THROTTLE_CLIENT,       /* every login from this client */
	THROTTLE_CLIENT_LOGIN, /* this login from this client */
	THROTTLE_LOGIN,        /* the lockout shield: this login from anywhere */
};

/* What one failure did. */
struct auth_throttle_result {
	unsigned delay_ms;               /* for the worker; 0 = none */
	unsigned failures;               /* the highest distinct count of the three keys */
	enum auth_throttle_scope locked; /* a lockout this failure started, or NONE */
};

/* pc and kh are borrowed and must outlive the throttle. */
struct auth_throttle *auth_throttle_new(const struct protection_config *pc,
                                        const struct keyhash *kh);
void auth_throttle_free(struct auth_throttle *);
/* A reload: go on with pc (borrowed, as by new), keeping every counter and
 * lockout; entries beyond a smaller throttle_size go, least recently used
 * first. */
void auth_throttle_reconfigure(struct auth_throttle *, const struct protection_config *pc);

/* The lockout in force for client (address text, as the worker sent it) and
 * login: THROTTLE_CLIENT, then THROTTLE_CLIENT_LOGIN, then THROTTLE_LOGIN,
 * or THROTTLE_NONE. *remaining_s_r (if not NULL) gets the seconds left. */
enum auth_throttle_scope auth_throttle_check(struct auth_throttle *, const char *client,
                                             const char *login, uint64_t now_ms,
                                             unsigned *remaining_s_r);
/* Count an AUTH_FAIL for (client, login) with this secret. Logs a line when
 * a lockout starts. */
void auth_throttle_failure(struct auth_throttle *, const char *client, const char *login,
                           const char *secret, size_t secret_len, uint64_t now_ms,
                           struct auth_throttle_result *r);
/* An AUTH_OK: the pair's failures are forgotten (the client's and the
 * login's are not: others may be attacking them). */
void auth_throttle_success(struct auth_throttle *, const char *client, const char *login);

/* One lockout in force, for the admin (`authrelay lockouts`). client is
 * NULL for a login lockout, login (lower-cased) NULL for a client one. */
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
/* `authrelay unlock WHAT`: end every lockout naming what, a login (any
 * case) or a client address (its IPv6 network counts), and forget the
 * failures counted for it, so that its next login is checked at once.
 * Returns how many lockouts ended. */
unsigned auth_throttle_unlock(struct auth_throttle *, const char *what, uint64_t now_ms);

/* Lockouts in force at now_ms (clients, pairs and shielded logins), for
 * the metrics. Walks the whole table: once a second at most. */
size_t auth_throttle_locked(struct auth_throttle *, uint64_t now_ms);

/* "client", "client_login", "login", "none". */
const char *auth_throttle_scope_name(enum auth_throttle_scope);
/* Tracked keys (tests). */
size_t auth_throttle_count(const struct auth_throttle *);

#endif
