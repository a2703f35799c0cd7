/* SPDX-License-Identifier: ISC */
/*
 * shared_redis.h - the auth process's connection to the Redis server of
 * [shared] (shared_config.h): a bufferevent on the process's libevent loop
 * (TLS with bufferevent_openssl when [shared] tls = yes), hiredis's encoder
 * and reply reader, so that no call ever blocks the loop.
 *
 * Every command has the [shared] timeout. A command that is not answered in
 * time, a refused connection or a lost one puts the connection down: the
 * callers count locally meanwhile (their callback gets NULL), the outage is
 * logged once, and the connection is retried every second; when it is up
 * again (AUTH, SELECT and a PING answered) it is logged and the up hook
 * runs, for the callers to send what they counted meanwhile.
 */
#ifndef AUTHRELAY_SHARED_REDIS_H
#define AUTHRELAY_SHARED_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "../lib/common.h"
#include "shared_config.h"

struct event_base;
struct shared_redis;

/* The answer to one command, or NULL when there was none (down, timeout).
 * reply is valid during the call only. */
typedef void shared_redis_cb(const redisReply *reply, void *arg);
/* The connection came up (again). */
typedef void shared_redis_up_cb(void *arg);

/* Connect in the background to sc->redis (which must be set). sc must
 * outlive the connection. The password file, and with sc->tls the CA file
 * and the client certificate and key, are read now (this runs before any
 * request, as auth_user). NULL, logged, if one of them cannot be read. */
struct shared_redis *shared_redis_new(struct event_base *base, const struct shared_config *sc,
                                      shared_redis_up_cb *up_cb, void *up_arg);
/* Pending commands are dropped without their callbacks. NULL is fine. */
void shared_redis_free(struct shared_redis *);

/* True while connected and answering in time. */
bool shared_redis_up(const struct shared_redis *);
/* Outages since start (for status). */
unsigned long shared_redis_outages(const struct shared_redis *);
/* Seconds since the link last went up or down (or since start). */
unsigned shared_redis_state_seconds(const struct shared_redis *);

/* Send one command (argv form, binary-safe). cb runs exactly once, never
 * before this returns: with the reply, or NULL when down or too slow. */
void shared_redis_command(struct shared_redis *, int argc, const char **argv, const size_t *argvlen,
                          shared_redis_cb *cb, void *arg);

#endif
