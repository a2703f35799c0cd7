/* SPDX-License-Identifier: ISC */
/*
 * alert_hook.h - runs [alerts] hook for the alerts the auth process raises:
 * `/bin/sh -c HOOK` with the alert's text on its stdin and
 * AUTHRELAY_ALERT_KIND in its environment. It runs here, in the queue
 * process, as [server] queue_user, because the auth process holds the secrets and
 * starts no shell (src/authwire/alert_proto.h). At most ALERT_HOOK_MAX run
 * at once; one still running after the timeout is killed. Finished hooks
 * are reaped by a timer that runs only while a hook does.
 */
#ifndef AUTHRELAY_ALERT_HOOK_H
#define AUTHRELAY_ALERT_HOOK_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct alert_hook;

#define ALERT_HOOK_MAX 8
#define ALERT_HOOK_TIMEOUT_MS 60000

/* command: the [alerts] hook (copied). timeout_ms: how long a hook may run
 * (0: ALERT_HOOK_TIMEOUT_MS). */
struct alert_hook *alert_hook_new(struct event_base *base, const char *command,
                                  unsigned timeout_ms);
/* Hooks still running are left to finish on their own. NULL is fine. */
void alert_hook_free(struct alert_hook *);

/* Start the hook for one alert of kind (a log-safe word) with text on its
 * stdin. Returns true if it started; false (logged) when ALERT_HOOK_MAX
 * still run or /bin/sh cannot be started. */
bool alert_hook_run(struct alert_hook *, const char *kind, const char *text, size_t len);

/* Hooks started and not yet reaped. */
unsigned alert_hook_running(const struct alert_hook *);

#endif
