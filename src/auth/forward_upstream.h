/* SPDX-License-Identifier: ISC */
/*
 * forward_upstream.h - the health of the [smtp-forward] upstreams: one that
 * failed (refused, dropped, TLS, a 4xx, a loop...) is "down" for
 * failure_memory seconds, and the next logins skip it; one that answers AUTH
 * is up again at once. Only this module writes an upstream's down_until and
 * down_why (forward_config.h).
 *
 * Times are ms on the monotonic clock, forward_upstream_now(), which the
 * other parts of the source use too.
 */
#ifndef AUTHRELAY_FORWARD_UPSTREAM_H
#define AUTHRELAY_FORWARD_UPSTREAM_H

#include <stdint.h>
#include "forward_config.h"

/* Now, in ms on the monotonic clock. */
int64_t forward_upstream_now(void);

/* True while u is marked down at now. */
bool forward_upstream_is_down(const struct fwd_upstream *u, int64_t now);

/* u failed for why (copied): down for failure_memory seconds from now (0:
 * never marked down). Logged when it was up. */
void forward_upstream_mark_down(struct fwd_upstream *u, unsigned failure_memory, const char *why);

/* u answered AUTH: up again (logged if it was down). */
void forward_upstream_mark_up(struct fwd_upstream *u);

/* The first upstream of the configured order that is not down, or NULL. */
struct fwd_upstream *forward_upstream_first_healthy(const struct fwd_settings *set);

/* Forget every failure (SIGHUP: an upstream the admin just fixed is tried
 * at once). */
void forward_upstream_forget(struct fwd_settings *set);

#endif
