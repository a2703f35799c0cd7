/*
 * spool_commit.h - makes finished messages durable off the event loop, either
 * one by one (each message: fsync file, rename, fsync incoming/) or as a group
 * commit: messages that finish DATA while a round is running wait for the
 * next round, and a round fsyncs each file, renames them all and fsyncs
 * incoming/ once. So many concurrent small messages share one directory
 * fsync (and, on a journaling file system, mostly one journal commit), and
 * throughput scales past the disk's sync rate for single messages.
 *
 * In both modes the callback says 0 only after the directory fsync: that is
 * what the 250 reply promises (spool.h).
 */
#ifndef AUTHRELAY_SPOOL_COMMIT_H
#define AUTHRELAY_SPOOL_COMMIT_H

#include <stdbool.h>

struct event_base;
struct spool_msg;
struct spool_committer;
struct threadpool;

/* result: 0 committed, -1 failed (the tmp file is gone). Runs on the loop. */
typedef void spool_commit_cb(struct spool_msg *msg, int result, void *arg);

/* group: run rounds on a thread of our own; otherwise each commit is a job on
 * pool (which the caller owns and frees after this committer). */
struct spool_committer *spool_committer_new(struct event_base *base, bool group,
                                            struct threadpool *pool);
/* Commit msg (written with spool_msg_write). msg belongs to the committer
 * until cb, which runs exactly once on the loop, never before this returns. */
void spool_committer_submit(struct spool_committer *, struct spool_msg *msg, spool_commit_cb *cb,
                            void *arg);
/* Rounds run so far and messages they committed (for logs and the bench). */
void spool_committer_stats(struct spool_committer *, unsigned long *rounds_r,
                           unsigned long *messages_r);
/* Finish pending rounds (callbacks are not run), stop the thread, free. */
void spool_committer_free(struct spool_committer *);

#endif
