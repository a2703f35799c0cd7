/* SPDX-License-Identifier: ISC */
/*
 * shared_send.h - per-user sending counts (messages_per_hour,
 * recipients_per_hour) shared by several gateways through Redis
 * (shared_redis.h), on behalf of the SMTP workers, which may not reach the
 * network themselves.
 *
 * A worker asks for the cluster's counts of a user at MAIL, and reports
 * each message it queued. The worker keeps deciding with its own shared-
 * memory table (send_limit.h) and takes the larger of both counts, so a
 * Redis outage never opens a door: it only makes the count local again.
 * Reports made while Redis is down are kept (up to a bound) and sent when
 * it is back.
 *
 * Layout: one hash per user, key PREFIX "send:" HEX (the first 16 bytes of
 * SHA-256 of the lower-cased login: no login in Redis), with a ring of
 * twelve 5-minute buckets: fields s0..s11 (the bucket's slot, wall-clock
 * seconds / 300), m0..m11 (messages), r0..r11 (recipients). Both scripts
 * are atomic (EVAL); the key expires 65 minutes after its last message.
 */
#ifndef AUTHRELAY_SHARED_SEND_H
#define AUTHRELAY_SHARED_SEND_H

#include <stdint.h>
#include "../lib/common.h"

struct shared_redis;
struct shared_send;

/* The cluster's counts of the last hour (shared true), or none (Redis down
 * or slow: shared false, counts 0). */
typedef void shared_send_cb(bool shared, unsigned msgs, unsigned rcpts, void *arg);

struct shared_send *shared_send_new(struct shared_redis *sr, const char *key_prefix);
void shared_send_free(struct shared_send *);

/* Ask for user's counts at now_s (wall-clock seconds). cb runs once, never
 * before this returns. */
void shared_send_counts(struct shared_send *, const char *user, uint64_t now_s, shared_send_cb *cb,
                        void *arg);
/* Count one queued message with rcpts recipients for user. */
void shared_send_record(struct shared_send *, const char *user, unsigned rcpts, uint64_t now_s);
/* Redis is back: send the reports kept meanwhile (shared_redis's up hook). */
void shared_send_resync(struct shared_send *);
/* Reports waiting for Redis (for status). */
size_t shared_send_backlog(const struct shared_send *);

#endif
