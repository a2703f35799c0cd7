/* SPDX-License-Identifier: ISC */
/*
 * spool_commit.h - makes finished messages durable off the event loop, either
 * one by one (each message: fsync file, rename, fsync incoming/) or as a group
 * commit: messages that finish DATA while a round is running wait for the
 * next round, and a round writes all its files out, renames them all into
 * incoming/ and then makes the whole round durable with ONE sync call (an
 * fsync of incoming/ on a journaled ext4, syncfs() elsewhere: spool_fs.h).
 * So many concurrent messages share one journal commit and one cache flush,
 * and throughput scales past the disk's rate of single fsyncs.
 *
 * In both modes the callback says 0 only after that sync: the message and
 * its directory entry are on stable storage, which is what the 250 reply
 * promises (spool.h).
 */
#ifndef AUTHRELAY_SPOOL_COMMIT_H
#define AUTHRELAY_SPOOL_COMMIT_H

#include <stdbool.h>
#include <stdint.h>
#include "spool_fs.h"

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
/* Set how each group commit round ends (spool_fs.h), before the first
 * submit; without it the commit thread finds out at its first round, which
 * needs /proc and /sys (not in a chroot). */
void spool_committer_set_sync(struct spool_committer *, enum spool_fs_sync sync);
/* Commit msg (written with spool_msg_write). msg belongs to the committer
 * until cb, which runs exactly once on the loop, never before this returns. */
void spool_committer_submit(struct spool_committer *, struct spool_msg *msg, spool_commit_cb *cb,
                            void *arg);
/* Rounds run so far and messages they committed (for logs and the bench). */
void spool_committer_stats(struct spool_committer *, unsigned long *rounds_r,
                           unsigned long *messages_r);

/* Where the rounds' time went, summed over every round so far (microseconds):
 * writing the files out and starting their write-back, waiting for it (or
 * each file's fsync), the renames, the one sync call of each round, and the
 * hand-over of finished rounds to the event loop (round done -> callbacks
 * run). syncs counts the sync system calls (fsync, syncfs) of all rounds. */
struct spool_commit_profile {
	unsigned long rounds, messages, syncs;
	uint64_t write_us, wait_us, link_us, sync_us, handover_us;
	const char *method; /* spool_fs_sync_name(), "single", or "-" before the first round */
};
void spool_committer_profile(struct spool_committer *, struct spool_commit_profile *r);
/* Finish pending rounds (callbacks are not run), stop the thread, free. */
void spool_committer_free(struct spool_committer *);

#endif
