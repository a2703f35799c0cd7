/* SPDX-License-Identifier: ISC */
/*
 * queue_journal.h - the queue's delivery journal: each next hop's 2xx for a
 * recipient, on stable storage before the connection that read it carries
 * another message. After a crash (kill -9 of every process, or a power
 * loss) the restarted queue re-sends only deliveries whose final reply had
 * not been read, or read but not yet journalled: at most one per open
 * delivery connection (delivery.h holds each connection back until its
 * last outcome is durable).
 *
 * Without it a delivery became durable only when its message was settled
 * (state/ID rewritten or incoming/ID unlinked by the store thread, behind
 * every other store operation), so a crash repeated deliveries that had
 * finished well before it.
 *
 * On disk: spool_dir/journal/<16 hex digits>, segments numbered in order.
 * A segment is created full of zeros (written and fsynced, so its blocks
 * are allocated), and records then overwrite it in place: fdatasync() of
 * such a write has no metadata to commit and costs a write and a cache
 * flush. Records, one per line, are "sent <queue id> <recipient index>";
 * a line not ended by '\n' (a torn write) and everything from the first
 * NUL byte on are ignored. Records are facts that never go stale: replaying
 * one twice, or for a message that is gone, is harmless.
 *
 * Only deliveries are journalled, not failures: a 5xx must first have its
 * bounce written (queue_bounce.c), and a 4xx is retried anyway.
 *
 * Threads: records are appended on the loop into memory; a thread of the
 * journal's own writes all that has gathered and fdatasyncs once (group
 * commit), then tells the loop, which calls synced_cb.
 *
 * Segments are retired by a checkpoint (queue_sched.c): once every fact in
 * the old segments is also in state/ID, or its message is removed, or it is
 * appended again to the new segment, and all of that is durable.
 */
#ifndef AUTHRELAY_QUEUE_JOURNAL_H
#define AUTHRELAY_QUEUE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/common.h"

struct event_base;
struct queue_journal;

/* On the loop, after the thread made more records durable. */
typedef void queue_journal_synced_cb(void *arg);

/* Read every segment of spool_dir/journal (kept for
 * queue_journal_replayed() until queue_journal_replay_done()), then start a
 * new segment after them and the thread. NULL with *error_r if the
 * directory or the new segment cannot be made. BLOCKS: for the start. */
struct queue_journal *queue_journal_open(struct event_base *base, const char *spool_dir,
                                         queue_journal_synced_cb *synced_cb, void *arg,
                                         const char **error_r);
/* Write what is appended, stop the thread, free. */
void queue_journal_free(struct queue_journal *);

/* The records of spool_dir/journal, read-only, for `authrelay queue list`
 * while the queue process is not running: nothing in the spool is created,
 * written or removed. A shared flock on journal/ is held until
 * queue_journal_free(), so that a queue starting meanwhile waits for the
 * read (its exclusive lock) rather than retiring segments under it. Look
 * records up with queue_journal_replayed(). Returns NULL with *busy_r true
 * when a queue process holds the lock (it runs: ask it), NULL with
 * *error_r when journal/ cannot be read; a spool without journal/ has an
 * empty journal. BLOCKS: reads every segment. */
struct queue_journal *queue_journal_read(const char *spool_dir, bool *busy_r, const char **error_r);

/* What the segments read at open (or queue_journal_read()) said: records,
 * and segments found. */
void queue_journal_replay_counts(const struct queue_journal *, size_t *records_r,
                                 size_t *segments_r);
/* The recipient indexes recorded as delivered for message id, in *idx_r
 * (owned by the journal, valid until queue_journal_replay_done()); returns
 * how many (0 when none, or after queue_journal_replay_done()). */
size_t queue_journal_replayed(const struct queue_journal *, const char *id, const size_t **idx_r);
/* The start-up scan is over: forget the replayed records. */
void queue_journal_replay_done(struct queue_journal *);

/* Record that recipient index of message id was delivered. Appended in
 * memory now, durable soon (queue_journal_durable()). Returns the record's
 * sequence number (1, 2, ...). */
uint64_t queue_journal_sent(struct queue_journal *, const char *id, size_t index);
/* Sequence number of the last record appended, and of the last one known
 * durable (every record up to it is). */
uint64_t queue_journal_appended(const struct queue_journal *);
uint64_t queue_journal_durable(const struct queue_journal *);

/* The current segment is past half its size: time for a checkpoint. */
bool queue_journal_wants_rotation(const struct queue_journal *);
/* Records appended from now on go to a new segment. Returns its number;
 * the segments before it are to be retired. */
uint64_t queue_journal_rotate(struct queue_journal *);
/* Remove the segments numbered below segment (never the one written to).
 * The caller has made sure their facts are durable elsewhere. */
void queue_journal_retire(struct queue_journal *, uint64_t segment);
/* The segment records are appended to now. */
uint64_t queue_journal_segment(const struct queue_journal *);

/* Journal write or sync failures so far (logged when they happen): each
 * may cost duplicates after a crash, never a lost message. */
unsigned long queue_journal_errors(const struct queue_journal *);

/* Parse one segment's bytes: calls cb for each complete, well-formed
 * record. Returns how many. For the replay and the tests. */
typedef void queue_journal_record_cb(const char *id, size_t index, void *arg);
size_t queue_journal_parse(const char *buf, size_t len, queue_journal_record_cb *cb, void *arg);

#endif
