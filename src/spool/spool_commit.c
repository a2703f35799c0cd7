/*
 * spool_commit.c - single and group commit of spool messages (spool_commit.h).
 *
 * Group mode: submit() appends a job to the pending list under the mutex and
 * wakes the commit thread. The thread takes the whole list (a round), and for
 * its messages: starts every file's write-back, fsyncs each file (side by
 * side with a crew of helper threads, so the file system can serve the
 * waiting fsyncs with one journal commit), renames each into incoming/,
 * fsyncs incoming/ once, then moves the jobs to the done list and bumps an
 * eventfd. The loop's read event on that eventfd runs the
 * callbacks. While a round runs, new jobs gather for the next one: the more
 * sessions finish at once, the larger the rounds.
 *
 * Single mode hands each message to the thread pool's spool_msg_commit().
 *
 * Locking: the mutex guards both lists, the stop flag and the counters. A
 * job (and its message) belongs to the thread between the two lists.
 */
#include "spool_commit.h"
#include "spool.h"
#include "../lib/common.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

/* A round takes at most this many messages: bounds the latency of the first. */
#define COMMIT_ROUND_MAX 512
/* Threads that fsync a round's files side by side: a journaling file system
 * serves fsyncs that wait together with one journal commit. */
#define COMMIT_SYNC_THREADS 8

struct commit_job {
	STAILQ_ENTRY(commit_job) entry; /* in pending, a round or done */
	struct spool_committer *c;
	struct spool_msg *msg;
	spool_commit_cb *cb;
	void *arg;
	int result;
};

STAILQ_HEAD(commit_list, commit_job);

/* The helpers of the commit thread for a round's fsyncs. */
struct sync_crew {
	pthread_t threads[COMMIT_SYNC_THREADS];
	unsigned n_threads;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	struct commit_job **jobs; /* this round's, NULL between rounds */
	size_t n_jobs;
	size_t next; /* next job to take, under mu */
	size_t finished;
	unsigned long generation;
	bool stop;
};

struct spool_committer {
	struct event_base *base;
	struct sync_crew crew;
	bool group;
	struct threadpool *pool;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct commit_list pending, done;
	bool stop;
	bool thread_started;
	pthread_t thread;
	int notify_fd;
	struct event *notify_ev;
	unsigned long rounds, messages;
};

/* Take and fsync jobs of the current round until none is left. Called
 * with crew->mu held; returns with it held. */
static void
crew_work(struct sync_crew *crew)
{
	size_t did = 0;
	while (crew->jobs != NULL && crew->next < crew->n_jobs) {
		struct commit_job *j = crew->jobs[crew->next++];
		pthread_mutex_unlock(&crew->mu);
		if (j->result == 0)
			j->result = spool_msg_commit_sync(j->msg);
		did++;
		pthread_mutex_lock(&crew->mu);
	}
	crew->finished += did;
	if (did > 0 && crew->finished == crew->n_jobs)
		pthread_cond_broadcast(&crew->done);
}

static void *
crew_thread(void *arg)
{
	struct sync_crew *crew = arg;
	unsigned long seen = 0;

	pthread_mutex_lock(&crew->mu);
	for (;;) {
		while (crew->generation == seen && !crew->stop)
			pthread_cond_wait(&crew->go, &crew->mu);
		if (crew->stop)
			break;
		seen = crew->generation;
		crew_work(crew);
	}
	pthread_mutex_unlock(&crew->mu);
	return NULL;
}

/* fsync every job's file, side by side on the crew and this thread. */
static void
crew_sync(struct sync_crew *crew, struct commit_job **jobs, size_t n)
{
	pthread_mutex_lock(&crew->mu);
	crew->jobs = jobs;
	crew->n_jobs = n;
	crew->next = 0;
	crew->finished = 0;
	crew->generation++;
	pthread_cond_broadcast(&crew->go);
	crew_work(crew);
	while (crew->finished < n)
		pthread_cond_wait(&crew->done, &crew->mu);
	crew->jobs = NULL;
	pthread_mutex_unlock(&crew->mu);
}

/* One round over jobs (a list of at most COMMIT_ROUND_MAX). Every message
 * of a committer goes to the same incoming/ (one spool per process). */
static void
commit_round(struct sync_crew *crew, struct commit_list *jobs)
{
	const char *dir = spool_msg_incoming_dir(STAILQ_FIRST(jobs)->msg);
	struct commit_job *j;
	struct commit_job *arr[COMMIT_ROUND_MAX];
	size_t n = 0;
	int dfd, dir_errno = 0;
	bool any_linked = false;

	STAILQ_FOREACH(j, jobs, entry)
	{
		j->result = spool_msg_commit_write(j->msg);
		arr[n++] = j;
	}
	if (n == 1)
		arr[0]->result = arr[0]->result == 0 ? spool_msg_commit_sync(arr[0]->msg) : -1;
	else
		crew_sync(crew, arr, n);
	/* Opened per round, so a recreated directory is seen. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		log_err("spool group commit: open %s: %s", dir, strerror(errno));
		/* spool_msg_free() removes the tmp files. */
		STAILQ_FOREACH(j, jobs, entry)
		{
			j->result = -1;
		}
		return;
	}
	STAILQ_FOREACH(j, jobs, entry)
	{
		if (strcmp(dir, spool_msg_incoming_dir(j->msg)) != 0)
			fatal("spool group commit: messages for two spools in one committer");
		if (j->result == 0)
			j->result = spool_msg_commit_link(j->msg, dfd);
		any_linked |= j->result == 0;
	}
	/* The one directory fsync that makes every rename of the round durable. */
	if (any_linked && fsync(dfd) < 0)
		dir_errno = errno;
	STAILQ_FOREACH(j, jobs, entry)
	{
		if (j->result == 0)
			j->result = spool_msg_commit_finish(j->msg, dfd, dir_errno);
	}
	close(dfd);
}

static void *
commit_thread(void *arg)
{
	struct spool_committer *c = arg;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (STAILQ_EMPTY(&c->pending) && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (STAILQ_EMPTY(&c->pending) && c->stop)
			break;
		struct commit_list round = STAILQ_HEAD_INITIALIZER(round);
		unsigned n = 0;
		while (!STAILQ_EMPTY(&c->pending) && n < COMMIT_ROUND_MAX) {
			struct commit_job *j = STAILQ_FIRST(&c->pending);
			STAILQ_REMOVE_HEAD(&c->pending, entry);
			STAILQ_INSERT_TAIL(&round, j, entry);
			n++;
		}
		pthread_mutex_unlock(&c->mu);

		commit_round(&c->crew, &round);

		pthread_mutex_lock(&c->mu);
		c->rounds++;
		c->messages += n;
		STAILQ_CONCAT(&c->done, &round);
		uint64_t one = 1;
		ssize_t w = write(c->notify_fd, &one, sizeof(one));
		(void)w; /* eventfd: only fails if the counter would overflow */
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void
commit_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool_committer *c = arg;
	uint64_t v;
	ssize_t r = read(c->notify_fd, &v, sizeof(v));
	(void)r;

	struct commit_list jobs = STAILQ_HEAD_INITIALIZER(jobs);
	struct commit_job *j;

	pthread_mutex_lock(&c->mu);
	STAILQ_CONCAT(&jobs, &c->done); /* takes them all, leaves it empty */
	pthread_mutex_unlock(&c->mu);
	while ((j = STAILQ_FIRST(&jobs)) != NULL) {
		STAILQ_REMOVE_HEAD(&jobs, entry);
		j->cb(j->msg, j->result, j->arg);
		free(j);
	}
}

struct spool_committer *
spool_committer_new(struct event_base *base, bool group, struct threadpool *pool)
{
	struct spool_committer *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->group = group;
	c->pool = pool;
	c->notify_fd = -1;
	STAILQ_INIT(&c->pending);
	STAILQ_INIT(&c->done);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (!group)
		return c;
	c->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->notify_fd < 0)
		fatal("spool group commit: eventfd: %s", strerror(errno));
	c->notify_ev = event_new(base, c->notify_fd, EV_READ | EV_PERSIST, commit_notify_cb, c);
	event_add(c->notify_ev, NULL);
	pthread_mutex_init(&c->crew.mu, NULL);
	pthread_cond_init(&c->crew.go, NULL);
	pthread_cond_init(&c->crew.done, NULL);
	for (unsigned i = 0; i < COMMIT_SYNC_THREADS - 1; i++) {
		if (pthread_create(&c->crew.threads[i], NULL, crew_thread, &c->crew) != 0)
			break;
		c->crew.n_threads++;
	}
	if (pthread_create(&c->thread, NULL, commit_thread, c) != 0)
		fatal("spool group commit: cannot start its thread");
	c->thread_started = true;
	return c;
}

static void
commit_single_work(void *arg)
{
	struct commit_job *j = arg;
	j->result = spool_msg_commit(j->msg);
}

static void
commit_single_done(void *arg)
{
	struct commit_job *j = arg;
	struct spool_committer *c = j->c;
	c->rounds++;
	c->messages++;
	j->cb(j->msg, j->result, j->arg);
	free(j);
}

void
spool_committer_submit(struct spool_committer *c, struct spool_msg *msg, spool_commit_cb *cb,
                       void *arg)
{
	struct commit_job *j = xcalloc(1, sizeof(*j));

	j->c = c;
	j->msg = msg;
	j->cb = cb;
	j->arg = arg;
	if (!c->group) {
		threadpool_submit(c->pool, commit_single_work, commit_single_done, j);
		return;
	}
	pthread_mutex_lock(&c->mu);
	STAILQ_INSERT_TAIL(&c->pending, j, entry);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void
spool_committer_stats(struct spool_committer *c, unsigned long *rounds_r, unsigned long *messages_r)
{
	pthread_mutex_lock(&c->mu);
	*rounds_r = c->rounds;
	*messages_r = c->messages;
	pthread_mutex_unlock(&c->mu);
}

void
spool_committer_free(struct spool_committer *c)
{
	if (c == NULL)
		return;
	if (c->thread_started) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
		pthread_mutex_lock(&c->crew.mu);
		c->crew.stop = true;
		pthread_cond_broadcast(&c->crew.go);
		pthread_mutex_unlock(&c->crew.mu);
		for (unsigned i = 0; i < c->crew.n_threads; i++)
			pthread_join(c->crew.threads[i], NULL);
		pthread_mutex_destroy(&c->crew.mu);
		pthread_cond_destroy(&c->crew.go);
		pthread_cond_destroy(&c->crew.done);
	}
	while (!STAILQ_EMPTY(&c->done)) {
		struct commit_job *j = STAILQ_FIRST(&c->done);
		STAILQ_REMOVE_HEAD(&c->done, entry);
		free(j);
	}
	if (c->notify_ev != NULL)
		event_free(c->notify_ev);
	if (c->notify_fd >= 0)
		close(c->notify_fd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
