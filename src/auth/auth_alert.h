/* SPDX-License-Identifier: ISC */
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
 *   directory_lockout   a directory refused a login because its own lockout
 *                       locked the account (Active Directory's 775), which
 *                       the lockout shield ([protection]) is there to prevent
 *   source_config       a source found its own configuration at fault while
 *                       answering (LDAP method = fetch with a password
 *                       attribute the service account may not read): every
 *                       login gets 454 until an administrator fixes it
 *
 * An alert fires at most once per cooldown per subject (the kind and its
 * key: "login_failures login alice"). Each one is a log line
 * ("alert kind=... "), a mail to [alerts] to and, if [alerts] hook is set,
 * a run of the hook with the alert on its stdin. This process holds the
 * secrets, so it does neither itself: both go out as messages of the alert
 * channel (src/authwire/alert_proto.h) to the queue process, which spools
 * the mail and runs the hook as [server] queue_user.
 */
#ifndef AUTHRELAY_AUTH_ALERT_H
#define AUTHRELAY_AUTH_ALERT_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/keyhash.h"

struct config;
struct ipc_msg;
struct protection_config;
struct auth_alert;

/* Hand msg (an ALERT_MSG_MAIL or ALERT_MSG_HOOK, alert_proto.h) to the
 * queue process. The callee owns msg. Returns true if it is on its way
 * (sent or queued), false if it had to be dropped: the log line then says
 * mailed=no or hook=no. */
typedef bool auth_alert_send_cb(struct ipc_msg *msg, void *arg);

/* cfg, pc and kh are borrowed and must outlive the alerts. send may be NULL:
 * alerts are only logged. */
struct auth_alert *auth_alert_new(const struct config *cfg, const struct protection_config *pc,
                                  const struct keyhash *kh, auth_alert_send_cb *send, void *arg);
void auth_alert_free(struct auth_alert *);
/* A reload: go on with cfg and pc (borrowed, as by new), keeping the counts
 * and cooldowns (the multi_ip ones go when multi_ip_threshold changed). */
void auth_alert_reconfigure(struct auth_alert *, const struct config *cfg,
                            const struct protection_config *pc);

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
/* A source reported the account locked out by the directory itself. */
void auth_alert_directory_lockout(struct auth_alert *, const char *login, const char *client,
                                  const char *source, uint64_t now_ms);
/* A source reported a configuration fault (auth_source.h auth_env fault);
 * detail says what, in a sentence for the administrator. */
void auth_alert_source_config(struct auth_alert *, const char *source, const char *detail,
                              uint64_t now_ms);
/* Once a second: the unreachable check. */
void auth_alert_tick(struct auth_alert *, uint64_t now_ms);

#endif
