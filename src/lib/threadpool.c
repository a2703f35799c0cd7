/* SPDX-License-Identifier: ISC */
/*
 * threadpool.c - worker threads for slow work, with completions handed back
 * to one event loop (see threadpool.h).
 *
 * submit() puts a job on the run queue (FIFO) under the pool mutex; a pool
 * thread takes it, runs work() without the lock, then moves it to the done
 * queue and bumps an eventfd. The eventfd's read event, registered on the
 * loop's event_base, drains the done queue and calls each done() on the loop
 * thread. Because done() only ever runs from that event, it can neither run
 * on a pool thread nor before submit() has returned.
 *
 * Locking: the mutex guards both queues, the stop flag and the counters; a
 * job belongs to exactly one queue or one thread at a time, so work() and
 * done() see its arg without races (the mutex hand-offs order the accesses).
 * The eventfd coalesces wake-ups: one read drains every finished job.
 */
#include "threadpool.h"
#include "common.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

struct tp_job {
	STAILQ_ENTRY(tp_job) entry; /* in one queue */
	threadpool_work_cb *work;
	threadpool_done_cb *done;
	void *arg;
};

STAILQ_HEAD(tp_queue, tp_job);

struct threadpool {
	struct event_base *base;
	struct event *notify_ev;
	int notify_fd; /* eventfd: pool threads -> loop thread */

	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled when run_q gains a job or stop is set */
	struct tp_queue run_q;
	struct tp_queue done_q;
	/* Jobs run by threadpool_run_inline(), loop thread only: no lock. */
	struct tp_queue inline_q;
	struct event *inline_ev;
	unsigned queued_or_running;
	bool stop;

	pthread_t *threads;
	unsigned nthreads;

	/* threadpool_free() called from a done callback: finish it after. */
	bool dispatching;
	bool free_requested;
};

static struct tp_job *
tp_queue_pop(struct tp_queue *q)
{
	struct tp_job *j = STAILQ_FIRST(q);

	if (j != NULL)
		STAILQ_REMOVE_HEAD(q, entry);
	return j;
}

static void
tp_lock(struct threadpool *tp)
{
	int e = pthread_mutex_lock(&tp->mu);
	if (e != 0)
		fatal("threadpool: pthread_mutex_lock: %s", strerror(e));
}

static void
tp_unlock(struct threadpool *tp)
{
	int e = pthread_mutex_unlock(&tp->mu);
	if (e != 0)
		fatal("threadpool: pthread_mutex_unlock: %s", strerror(e));
}

static void
tp_notify(struct threadpool *tp)
{
	uint64_t one = 1;

	/* EAGAIN only when the counter is saturated: the loop is already
	 * due to wake up then, so nothing is lost. */
	while (write(tp->notify_fd, &one, sizeof(one)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		fatal("threadpool: eventfd write: %s", strerror(errno));
	}
}

static void *
tp_thread_main(void *arg)
{
	struct threadpool *tp = arg;
	struct tp_job *j;

	tp_lock(tp);
	for (;;) {
		while (STAILQ_EMPTY(&tp->run_q) && !tp->stop)
			pthread_cond_wait(&tp->cv, &tp->mu);
		/* On stop, drain the queue first: threadpool_free() promises
		 * that queued work still runs. */
		j = tp_queue_pop(&tp->run_q);
		if (j == NULL)
			break;
		tp_unlock(tp);

		j->work(j->arg);

		tp_lock(tp);
		tp->queued_or_running--;
		STAILQ_INSERT_TAIL(&tp->done_q, j, entry);
		tp_notify(tp);
	}
	tp_unlock(tp);
	return NULL;
}

static void tp_destroy(struct threadpool *tp);

/* Loop thread: run the done callbacks of every finished job. */
static void
tp_on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct threadpool *tp = arg;
	struct tp_queue q = STAILQ_HEAD_INITIALIZER(q);
	struct tp_job *j;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN && errno != EINTR)
		fatal("threadpool: eventfd read: %s", strerror(errno));

	tp_lock(tp);
	STAILQ_CONCAT(&q, &tp->done_q); /* takes them all, leaves it empty */
	tp_unlock(tp);

	tp->dispatching = true;
	while ((j = tp_queue_pop(&q)) != NULL) {
		if (!tp->free_requested)
			j->done(j->arg);
		free(j);
	}
	tp->dispatching = false;
	if (tp->free_requested)
		tp_destroy(tp);
}

/* Loop thread: the done callbacks of jobs run inline. */
static void
tp_on_inline(evutil_socket_t fd, short what, void *arg)
{
	struct threadpool *tp = arg;
	struct tp_queue q = STAILQ_HEAD_INITIALIZER(q);
	struct tp_job *j;

	STAILQ_CONCAT(&q, &tp->inline_q);
	tp->dispatching = true;
	while ((j = tp_queue_pop(&q)) != NULL) {
		if (!tp->free_requested)
			j->done(j->arg);
		free(j);
	}
	tp->dispatching = false;
	if (tp->free_requested)
		tp_destroy(tp);
}

struct threadpool *
threadpool_new(struct event_base *base, unsigned nthreads)
{
	struct threadpool *tp = xcalloc(1, sizeof(*tp));
	int e;

	if (nthreads == 0)
		nthreads = 1;
	tp->base = base;
	STAILQ_INIT(&tp->run_q);
	STAILQ_INIT(&tp->done_q);
	STAILQ_INIT(&tp->inline_q);
	tp->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (tp->notify_fd < 0)
		fatal("threadpool: eventfd: %s", strerror(errno));
	tp->notify_ev = event_new(base, tp->notify_fd, EV_READ | EV_PERSIST, tp_on_notify, tp);
	if (tp->notify_ev == NULL || event_add(tp->notify_ev, NULL) < 0)
		fatal("threadpool: cannot register the completion event");
	tp->inline_ev = event_new(base, -1, 0, tp_on_inline, tp);
	if (tp->inline_ev == NULL)
		fatal("threadpool: cannot create the inline completion event");
	if ((e = pthread_mutex_init(&tp->mu, NULL)) != 0 ||
	    (e = pthread_cond_init(&tp->cv, NULL)) != 0)
		fatal("threadpool: pthread init: %s", strerror(e));

	tp->threads = xcalloc(nthreads, sizeof(*tp->threads));
	for (unsigned i = 0; i < nthreads; i++) {
		e = pthread_create(&tp->threads[i], NULL, tp_thread_main, tp);
		if (e != 0)
			fatal("threadpool: pthread_create: %s", strerror(e));
		tp->nthreads++;
	}
	return tp;
}

void
threadpool_submit(struct threadpool *tp, threadpool_work_cb *work, threadpool_done_cb *done,
                  void *arg)
{
	struct tp_job *j = xcalloc(1, sizeof(*j));

	j->work = work;
	j->done = done;
	j->arg = arg;
	tp_lock(tp);
	STAILQ_INSERT_TAIL(&tp->run_q, j, entry);
	tp->queued_or_running++;
	pthread_cond_signal(&tp->cv);
	tp_unlock(tp);
}

void
threadpool_run_inline(struct threadpool *tp, threadpool_work_cb *work, threadpool_done_cb *done,
                      void *arg)
{
	struct tp_job *j = xcalloc(1, sizeof(*j));

	j->work = work;
	j->done = done;
	j->arg = arg;
	work(arg);
	STAILQ_INSERT_TAIL(&tp->inline_q, j, entry);
	/* From the loop thread: no wake-up system call, just a flag the loop
	 * sees before it next waits. */
	event_active(tp->inline_ev, EV_TIMEOUT, 0);
}

unsigned
threadpool_pending(const struct threadpool *ctp)
{
	/* The lock is part of the pool's state, not of its value: locking a
	 * const pool is fine. */
	struct threadpool *tp = (struct threadpool *)ctp;
	unsigned n;

	tp_lock(tp);
	n = tp->queued_or_running;
	tp_unlock(tp);
	return n;
}

static void
tp_destroy(struct threadpool *tp)
{
	struct tp_job *j;

	tp_lock(tp);
	tp->stop = true;
	pthread_cond_broadcast(&tp->cv);
	tp_unlock(tp);
	for (unsigned i = 0; i < tp->nthreads; i++)
		pthread_join(tp->threads[i], NULL);

	/* Threads are gone: no lock needed. Finished jobs are dropped without
	 * their done callbacks, as threadpool.h says. */
	while ((j = tp_queue_pop(&tp->done_q)) != NULL)
		free(j);
	while ((j = tp_queue_pop(&tp->inline_q)) != NULL)
		free(j);
	event_free(tp->inline_ev);
	event_free(tp->notify_ev);
	close(tp->notify_fd);
	pthread_cond_destroy(&tp->cv);
	pthread_mutex_destroy(&tp->mu);
	free(tp->threads);
	free(tp);
}

void
threadpool_free(struct threadpool *tp)
{
	if (tp == NULL)
		return;
	if (tp->dispatching) {
		/* Called from a done callback: tp_on_notify() still walks its
		 * batch, so it finishes the job when the callback returns. */
		tp->free_requested = true;
		return;
	}
	tp_destroy(tp);
}
