/* SPDX-License-Identifier: ISC */
/*
 * threadpool.h - a small pool of threads for work that must not block an event
 * loop (password hashing, fsync). Work runs on a pool thread; its completion
 * callback then runs on the loop thread of the event_base given at creation.
 */
#ifndef AUTHRELAY_THREADPOOL_H
#define AUTHRELAY_THREADPOOL_H

struct event_base;
struct threadpool;

typedef void threadpool_work_cb(void *arg); /* on a pool thread */
typedef void threadpool_done_cb(void *arg); /* on the loop thread, after work */

/* Start nthreads threads (at least 1). */
struct threadpool *threadpool_new(struct event_base *base, unsigned nthreads);
/* Queue work; done runs exactly once on the loop thread after work has
 * returned, never before threadpool_submit() returns. arg is owned by the caller. */
void threadpool_submit(struct threadpool *, threadpool_work_cb *work, threadpool_done_cb *done,
                       void *arg);
/* Run work now, on the calling loop thread, then done from the loop like a
 * finished job (never before this returns). For work known to take a few
 * microseconds, which the hand-off to a pool thread (a futex wake, an eventfd
 * write and read, two context switches) would cost more than. */
void threadpool_run_inline(struct threadpool *, threadpool_work_cb *work, threadpool_done_cb *done,
                           void *arg);
/* Number of jobs queued or running. */
unsigned threadpool_pending(const struct threadpool *);
/* Wait for queued work to finish (done callbacks are not run), stop the threads
 * and free. */
void threadpool_free(struct threadpool *);

#endif
