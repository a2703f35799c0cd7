/* SPDX-License-Identifier: ISC */
/*
 * queue_store.h - the queue's on-disk state beyond incoming/.
 *
 * A message file stays in incoming/<ID>, unchanged, for the message's whole
 * life (spool.h). What the queue has learnt about it lives in state/<ID>,
 * written only once a message was tried and still has recipients to go (or
 * was put on hold):
 *
 *   AUTHRELAY-STATE 1
 *   attempts <n>
 *   next <unix seconds of the next attempt>
 *   hold 1                           (only when held)
 *   warned 1                         (a delay warning was sent)
 *   rcpt <index> sent|bounced|deferred <%-escaped last reply>
 *   <blank line>
 *
 * <index> is the recipient's position among the envelope's rcpt records;
 * a recipient without a line has not been tried. A message is finished by
 * removing incoming/<ID> and then state/<ID>; a state file without a message
 * is a leftover of a crash between the two and is removed at start.
 *
 * Durability: state files are written to state/.tmp-ID, fsynced, renamed and
 * the directory fsynced, on the store's own thread, one operation at a time
 * in the order they were asked for (so a write queued before a removal
 * never recreates a removed file). Losing a state file (a crash before its
 * fsync) can only repeat a delivery, never lose a message: that is what the
 * incoming/ file and its fsync before the 250 are for.
 */
#ifndef AUTHRELAY_QUEUE_STORE_H
#define AUTHRELAY_QUEUE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/common.h"

struct event_base;
struct queue_store;

enum rcpt_status {
	RCPT_PENDING = 0, /* not tried yet */
	RCPT_DEFERRED,    /* tried, temporary failure: tried again later */
	RCPT_SENT,        /* done: the next hop took it (2xx) */
	RCPT_BOUNCED,     /* done: permanent failure or expired (a DSN went out) */
};

struct queue_state_rcpt {
	enum rcpt_status status;
	char *reply; /* last reply or reason, NULL if none */
};

/* What state/<ID> holds. */
struct queue_state {
	unsigned attempts;
	int64_t next_attempt;
	bool hold;
	bool warned;
	size_t n_rcpts;
	struct queue_state_rcpt *rcpts; /* n_rcpts entries */
	bool exists;                    /* queue_store_read_state() found a state file */
};

/* An empty state for a message of n_rcpts recipients never tried (every
 * recipient pending, exists false); free with queue_state_clear(). */
void queue_state_init(struct queue_state *, size_t n_rcpts);

/* The store for spool_dir (the queue process's own path to it). */
struct queue_store *queue_store_new(struct event_base *base, const char *spool_dir);
/* Wait for queued operations, then free. The done callbacks of operations
 * not yet reported never run; what they were given stays the caller's. */
void queue_store_free(struct queue_store *);

/* Read state/<id> for a message with n_rcpts recipients. Returns 1 and fills
 * *r (free with queue_state_clear), 0 if there is no state file (*r is then
 * all pending), -1 with *error_r if it is unreadable or malformed. */
int queue_store_read_state(const char *spool_dir, const char *id, size_t n_rcpts,
                           struct queue_state *r, const char **error_r);
void queue_state_clear(struct queue_state *);
/* The file's text for st (malloc'd). */
char *queue_state_format(const struct queue_state *st);
/* Parse text (as queue_state_format writes it). 0 or -1 with *error_r. */
int queue_state_parse(const char *text, size_t n_rcpts, struct queue_state *r,
                      const char **error_r);

/* Replace state/<id> with text (taken over). Asynchronous, in order. */
void queue_store_write_state(struct queue_store *, const char *id, char *text);
/* Remove incoming/<id> and then, if has_state (a state file was read or
 * written for it), state/<id>. done (may be NULL) runs on the loop once both
 * are gone. Asynchronous, in order. */
typedef void queue_store_done_cb(void *arg);
void queue_store_remove(struct queue_store *, const char *id, bool has_state,
                        queue_store_done_cb *done, void *arg);
/* After every operation asked for before it: fsync incoming/ and state/,
 * so that the removals and renames done so far are durable too (state
 * files themselves are fsynced as they are written). done runs on the loop
 * afterwards. For the delivery journal's checkpoints (queue_journal.h). */
void queue_store_barrier(struct queue_store *, queue_store_done_cb *done, void *arg);
/* Operations not yet done. */
unsigned queue_store_pending(const struct queue_store *);

/* Remove state files whose message is gone, and the DSNs left half
 * written in queue-tmp/. Returns how many. BLOCKS (directory scans): for
 * the start. */
unsigned queue_store_remove_orphans(const char *spool_dir);

#endif
