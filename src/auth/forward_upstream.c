/* SPDX-License-Identifier: ISC */
/*
 * forward_upstream.c - the health of the [smtp-forward] upstreams
 * (forward_upstream.h). Sessions mark their upstream down when it fails and
 * up when it answers AUTH; the source skips those that are down when it
 * orders the upstreams for a login, and the pool pre-connects to the first
 * healthy one.
 */
#include "forward_upstream.h"
#include "../lib/log.h"
#include "../metrics/metric.h"

#include <stdio.h>
#include <time.h>

int64_t
forward_upstream_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
forward_upstream_is_down(const struct fwd_upstream *u, int64_t now)
{
	return u->down_until > now;
}

void
forward_upstream_mark_down(struct fwd_upstream *u, unsigned failure_memory, const char *why)
{
	int64_t now = forward_upstream_now();

	if (failure_memory == 0)
		return;
	if (u->down_until <= now)
		log_warn("auth: forward upstream=%s addr=%s marked down for %us: %s", u->name,
		         u->addr_text, failure_memory, why);
	u->down_until = now + (int64_t)failure_memory * 1000;
	snprintf(u->down_why, sizeof(u->down_why), "%s", why);
	metrics_set(M_FORWARD_UP, u->down_until, metric_upstream(u->name));
}

void
forward_upstream_mark_up(struct fwd_upstream *u)
{
	if (u->down_until != 0 && u->down_until > forward_upstream_now())
		log_info("auth: forward upstream=%s addr=%s answers again", u->name, u->addr_text);
	u->down_until = 0;
	metrics_set(M_FORWARD_UP, 0, metric_upstream(u->name));
}

struct fwd_upstream *
forward_upstream_first_healthy(const struct fwd_settings *set)
{
	int64_t now = forward_upstream_now();

	for (size_t i = 0; i < set->n_up; i++)
		if (!forward_upstream_is_down(&set->up[i], now))
			return &set->up[i];
	return NULL;
}

void
forward_upstream_forget(struct fwd_settings *set)
{
	for (size_t i = 0; i < set->n_up; i++) {
		set->up[i].down_until = 0;
		metrics_set(M_FORWARD_UP, 0, metric_upstream(set->up[i].name));
	}
}
