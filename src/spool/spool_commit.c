/* SPDX-License-Identifier: ISC */
/*
 * spool_commit.c - single and group commit of spool messages (spool_commit.h).
 *
 * Group mode: submit() appends a job to the pending list under the mutex and
 * wakes the commit thread. The thread takes the whole list (a round, at most
 * COMMIT_ROUND_MAX jobs) and for its messages:
 *
 *   1. writes each file's last bytes and starts its write-back (all of them
 *      first, so the device sees the round's writes together);
 *   2. waits for each file's write-back (sync_file_range, no flush);
 *   3. renames each into incoming/;
 *   4. makes the round durable with one call: fsync(incoming/) on a
 *      journaled ext4, syncfs() elsewhere (spool_fs.h, spool_fs.c say why
 *      each is enough on the file system it is used on);
 *
 * then moves the jobs to the done list and bumps an eventfd; the loop's read
 * event on it runs the callbacks. While a round runs, new jobs gather for the
 * next one: the more sessions finish at once, the larger the rounds.
 *
 * Before, each file had its own fsync (side by side on 8 threads) and the
 * directory one more: on a journaled ext4 that was 2-3 journal commits and
 * a cache flush per file each round; now it is one commit and its flushes.
 *
 * Single mode hands each message to the thread pool's spool_msg_commit().
 *
 * Locking: the mutex guards both lists, the stop flag and the counters. A
 * job (and its message) belongs to the thread between the two lists.
 */
#include "spool_commit.h"
#include "spool.h"
#include "spool_fs.h"
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
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

/* A round takes at most this many messages: bounds the latency of the first. */
#define COMMIT_ROUND_MAX 512

struct commit_job {
	STAILQ_ENTRY(commit_job) entry; /* in pending, a round or done */
	struct spool_committer *c;
	struct spool_msg *msg;
	spool_commit_cb *cb;
	void *arg;
	int result;
	uint64_t done_ns; /* when its round ended (CLOCK_MONOTONIC) */
};

STAILQ_HEAD(commit_list, commit_job);

struct spool_committer {
	struct event_base *base;
	bool group;
	struct threadpool *pool;
	/* The commit thread's own: chosen at its first round. */
	bool method_known;
	enum spool_fs_sync method;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct commit_list pending, done;
	bool stop;
	bool thread_started;
	pthread_t thread;
	int notify_fd;
	struct event *notify_ev;
	/* Under mu. */
	unsigned long rounds, messages;
	struct spool_commit_profile prof;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Time spent in each step of one round, for the profile. */
struct round_times {
	uint64_t write, wait, link, sync;
	unsigned syncs;
};

/* The round's one sync call, by method. Returns 0 or an errno. */
static int
commit_round_sync(enum spool_fs_sync method, int dfd)
{
	int r;

	if (method == SPOOL_FS_SYNC_FS)
		/* Linux waits for the I/O: syncfs() gives the guarantees of an
		 * fsync of every file of the file system (syncfs(2)), and since
		 * 5.8 reports write-back errors seen since dfd was opened; dfd
		 * is opened at the start of the round for that reason. */
		r = syncfs(dfd);
	else
		/* SPOOL_FS_SYNC_DIR: one journal commit (spool_fs.c), and with
		 * SPOOL_FS_SYNC_FILES the files are already fsynced: this makes
		 * the renames durable. */
		r = fsync(dfd);
	return r < 0 ? errno : 0;
}

/* One round over jobs (a list of at most COMMIT_ROUND_MAX). Every message
 * of a committer goes to the same incoming/ (one spool per process). */
static void
commit_round(struct spool_committer *c, struct commit_list *jobs, struct round_times *t)
{
	const char *dir = spool_msg_incoming_dir(STAILQ_FIRST(jobs)->msg);
	struct commit_job *j;
	int dfd, dir_errno = 0;
	bool any_linked = false;
	uint64_t t0, t1;

	/* Opened per round, so a recreated directory is seen, and before any
	 * write of the round, so syncfs() reports the round's errors. */
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
	if (!c->method_known) {
		char desc[160];
		c->method = spool_fs_sync_method(dfd, desc, sizeof(desc));
		c->method_known = true;
		log_info("spool group commit dir=%s fs=\"%s\" method=%s", dir, desc,
		         spool_fs_sync_name(c->method));
	}
	t0 = mono_ns();
	STAILQ_FOREACH(j, jobs, entry)
	{
		if (strcmp(dir, spool_msg_incoming_dir(j->msg)) != 0)
			fatal("spool group commit: messages for two spools in one committer");
		j->result = spool_msg_commit_write(j->msg);
	}
	t1 = mono_ns();
	t->write += t1 - t0;
	t0 = t1;
	STAILQ_FOREACH(j, jobs, entry)
	{
		if (j->result != 0)
			continue;
		if (c->method == SPOOL_FS_SYNC_FILES) {
			j->result = spool_msg_commit_sync(j->msg);
			t->syncs++;
		} else {
			j->result = spool_msg_commit_wait(j->msg);
		}
	}
	t1 = mono_ns();
	t->wait += t1 - t0;
	t0 = t1;
	STAILQ_FOREACH(j, jobs, entry)
	{
		if (j->result == 0)
			j->result = spool_msg_commit_link(j->msg, dfd);
		any_linked |= j->result == 0;
	}
	t1 = mono_ns();
	t->link += t1 - t0;
	t0 = t1;
	/* The one call that makes every file and rename of the round durable. */
	if (any_linked) {
		dir_errno = commit_round_sync(c->method, dfd);
		t->syncs++;
	}
	t->sync += mono_ns() - t0;
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
		struct commit_job *j;
		unsigned n = 0;
		while (!STAILQ_EMPTY(&c->pending) && n < COMMIT_ROUND_MAX) {
			j = STAILQ_FIRST(&c->pending);
			STAILQ_REMOVE_HEAD(&c->pending, entry);
			STAILQ_INSERT_TAIL(&round, j, entry);
			n++;
		}
		pthread_mutex_unlock(&c->mu);

		struct round_times t = {0};
		commit_round(c, &round, &t);
		uint64_t done = mono_ns();

		pthread_mutex_lock(&c->mu);
		c->rounds++;
		c->messages += n;
		c->prof.syncs += t.syncs;
		c->prof.write_us += t.write / 1000;
		c->prof.wait_us += t.wait / 1000;
		c->prof.link_us += t.link / 1000;
		c->prof.sync_us += t.sync / 1000;
		c->prof.method = spool_fs_sync_name(c->method);
		STAILQ_FOREACH(j, &round, entry)
		{
			j->done_ns = done;
		}
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
	uint64_t v, now = mono_ns(), handover = 0, last_round = 0;
	ssize_t r = read(c->notify_fd, &v, sizeof(v));
	(void)r;

	struct commit_list jobs = STAILQ_HEAD_INITIALIZER(jobs);
	struct commit_job *j;

	pthread_mutex_lock(&c->mu);
	STAILQ_CONCAT(&jobs, &c->done); /* takes them all, leaves it empty */
	/* Once per round: the jobs of one round share its end time. */
	STAILQ_FOREACH(j, &jobs, entry)
	{
		if (j->done_ns != last_round && now > j->done_ns)
			handover += now - j->done_ns;
		last_round = j->done_ns;
	}
	c->prof.handover_us += handover / 1000;
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
	c->prof.method = group ? "-" : "single";
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
	pthread_mutex_lock(&c->mu);
	c->rounds++;
	c->messages++;
	c->prof.syncs += 2; /* the file, then incoming/ */
	pthread_mutex_unlock(&c->mu);
	j->cb(j->msg, j->result, j->arg);
	free(j);
}

void
spool_committer_set_sync(struct spool_committer *c, enum spool_fs_sync sync)
{
	/* Before the first submit: the thread reads these only in a round. */
	pthread_mutex_lock(&c->mu);
	c->method = sync;
	c->method_known = true;
	pthread_mutex_unlock(&c->mu);
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
spool_committer_profile(struct spool_committer *c, struct spool_commit_profile *r)
{
	pthread_mutex_lock(&c->mu);
	*r = c->prof;
	r->rounds = c->rounds;
	r->messages = c->messages;
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
