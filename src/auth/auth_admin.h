/* SPDX-License-Identifier: ISC */
/*
 * auth_admin.h - the auth process's end of the admin channel
 * (authwire/admin_proto.h): it answers the master's STATUS (each source up
 * or down), LOCKOUTS and UNLOCK (through auth_throttle.h). Only the master
 * holds the other end.
 */
#ifndef AUTHRELAY_AUTH_ADMIN_H
#define AUTHRELAY_AUTH_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct auth_throttle;
struct auth_admin;

/* One configured source as STATUS reports it. */
struct auth_admin_source {
	const char *name;
	const char *state; /* "up", "down", "unknown" */
	uint32_t seconds;  /* in that state */
};

/* Fill out[0..max) with the configured sources, in the order the daemon
 * asks them; returns how many. */
typedef size_t auth_admin_sources_cb(void *arg, struct auth_admin_source *out, size_t max);

/* fd: the auth end of the master's socket pair, owned from here on (-1:
 * none, nothing to do). throttle is borrowed and must outlive the admin. */
struct auth_admin *auth_admin_new(struct event_base *base, int fd, struct auth_throttle *throttle,
                                  auth_admin_sources_cb *sources, void *arg);
/* NULL is fine. */
void auth_admin_free(struct auth_admin *);

#endif
