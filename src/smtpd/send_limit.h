/* SPDX-License-Identifier: ISC */
/*
 * send_limit.h - per-user sending limits shared by all SMTP workers:
 * messages and recipients per authenticated user per hour ([protection]
 * messages_per_hour, recipients_per_hour).
 *
 * The table lives in shared memory the master maps before forking the
 * workers, like the connection limits (conn_limit.h): a check is a memory
 * lookup with no lock and no round trip to another process on the MAIL and
 * RCPT path, and it keeps working while the auth process restarts. Over a
 * limit the worker answers 450 4.7.1, logs, and tells the auth process
 * (NOTIFY), which raises the send_limit alert.
 *
 * The hour slides in 5-minute steps: counts are kept in twelve 5-minute
 * buckets per user. Users are keyed by a keyed hash (keyhash.h) of the
 * login (lower-cased); when the table is full, the user idle longest gives
 * way. Times are monotonic seconds, passed in so tests can drive them.
 */
#ifndef AUTHRELAY_SEND_LIMIT_H
#define AUTHRELAY_SEND_LIMIT_H

#include <stdint.h>
#include "../lib/common.h"

struct send_limit;

/* In the master, before fork: room for users users at once, written by up
 * to max_workers workers (their indexes mark what they leave half done). */
struct send_limit *send_limit_new(unsigned users, unsigned max_workers);
void send_limit_free(struct send_limit *);

/* Monotonic seconds, the clock every call below expects. */
uint64_t send_limit_now(void);

/* The user's messages and recipients within the last hour. */
void send_limit_counts(struct send_limit *, const char *user, uint64_t now_s, unsigned *msgs_r,
                       unsigned *rcpts_r);
/* Count one accepted message with rcpts recipients, by worker. */
void send_limit_record(struct send_limit *, unsigned worker, const char *user, unsigned rcpts,
                       uint64_t now_s);
/* Master: worker died; undo what it left half done (the counts it made
 * stay: the mail was sent). Never waits. */
void send_limit_reset_worker(struct send_limit *, unsigned worker);

/* Convenience for the session: may user start one more message (MAIL)
 * under max_msgs (0 = no limit)? / add recipient number in_txn + 1 of the
 * current message under max_rcpts? If not, *count_r gets the hour's count. */
bool send_limit_allow_message(struct send_limit *, const char *user, unsigned max_msgs,
                              uint64_t now_s, unsigned *count_r);
bool send_limit_allow_recipient(struct send_limit *, const char *user, unsigned in_txn,
                                unsigned max_rcpts, uint64_t now_s, unsigned *count_r);

#endif
