/*
 * auth_alert.h - alerts raised by the auth process ([alerts]):
 *
 *   login_failures      more than N failed logins within a window, globally,
 *                       per login and per client address (each its own N/M);
 *                       the product's "SMTP authentication login failures"
 *   multi_ip            a login used from more than multi_ip_threshold
 *                       client addresses within multi_ip_window
 *   send_limit          a user hit messages_per_hour or recipients_per_hour
 *                       (reported by a worker, see auth_proto.h NOTIFY)
 *   source_unreachable  a source answered nothing but tempfail for longer
 *                       than unreachable_after
 *
 * An alert fires at most once per cooldown per subject (the kind and its
 * key: "login_failures login alice"). Each one is a log line
 * ("alert kind=... "), a mail to [alerts] to (handed to mail_cb, which gets
 * it into the spool through an SMTP worker, so the queue delivers it) and,
 * if [alerts] hook is set, a /bin/sh -c command with the alert on stdin.
 */
#ifndef AUTHRELAY_AUTH_ALERT_H
#define AUTHRELAY_AUTH_ALERT_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/keyhash.h"

struct config;
struct protection_config;
struct auth_alert;

/* A finished alert message (RFC 5322, CRLF line ends) for the recipients. */
typedef void auth_alert_mail_cb(char *const *to, size_t n_to, const char *message, size_t len,
                                void *arg);

/* cfg, pc and kh are borrowed and must outlive the alerts. */
struct auth_alert *auth_alert_new(const struct config *cfg, const struct protection_config *pc,
                                  const struct keyhash *kh, auth_alert_mail_cb *mail_cb, void *arg);
/* Running hooks are left to finish on their own. */
void auth_alert_free(struct auth_alert *);

/* A login failed (AUTH_FAIL) / succeeded (AUTH_OK). */
void auth_alert_failure(struct auth_alert *, const char *login, const char *client,
                        uint64_t now_ms);
void auth_alert_success(struct auth_alert *, const char *login, const char *client,
                        uint64_t now_ms);
/* A source answered (reachable) or answered tempfail (not reachable). */
void auth_alert_source(struct auth_alert *, const char *source, bool reachable, uint64_t now_ms);
/* A worker refused a user over a sending limit. */
void auth_alert_send_limit(struct auth_alert *, const char *user, const char *client,
                           const char *limit, unsigned count, unsigned max, uint64_t now_ms);
/* Once a second: the unreachable check, reaping finished hooks. */
void auth_alert_tick(struct auth_alert *, uint64_t now_ms);

#endif
