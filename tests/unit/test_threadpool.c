/*
 * test_threadpool.c - lib/threadpool: work runs on pool threads, done runs on
 * the loop thread exactly once and never inside submit(), the pending count,
 * and both ways of freeing (from outside the loop and from a done callback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>

#include "lib/threadpool.h"

struct ctx {
	struct event_base *base;
	struct threadpool *tp;
	pthread_t loop_thread;
	atomic_uint work_runs;
	unsigned done_runs;
	unsigned expected;
	bool in_submit;
	bool free_in_done;
	/* Release gate: work blocks until the test opens it. */
	pthread_mutex_t gate_mu;
	pthread_cond_t gate_cv;
	bool gate_open;
};

struct job {
	struct ctx *c;
	unsigned n;
	pthread_t work_thread;
	unsigned work_seen;
	unsigned done_seen;
	bool gated;
};

static void
job_work(void *arg)
{
	struct job *j = arg;
	struct ctx *c = j->c;

	j->work_thread = pthread_self();
	if (j->gated) {
		pthread_mutex_lock(&c->gate_mu);
		while (!c->gate_open)
			pthread_cond_wait(&c->gate_cv, &c->gate_mu);
		pthread_mutex_unlock(&c->gate_mu);
	}
	j->work_seen++;
	atomic_fetch_add(&c->work_runs, 1);
}

static void
job_done(void *arg)
{
	struct job *j = arg;
	struct ctx *c = j->c;

	assert_false(c->in_submit);
	assert_true(pthread_equal(pthread_self(), c->loop_thread));
	assert_false(pthread_equal(j->work_thread, c->loop_thread));
	/* work has returned, and its writes are visible here. */
	assert_int_equal(j->work_seen, 1);
	j->done_seen++;
	if (++c->done_runs == c->expected) {
		if (c->free_in_done) {
			threadpool_free(c->tp);
			c->tp = NULL;
		}
		event_base_loopbreak(c->base);
	}
}

static void
ctx_init(struct ctx *c, unsigned nthreads)
{
	memset(c, 0, sizeof(*c));
	c->base = event_base_new();
	assert_non_null(c->base);
	c->loop_thread = pthread_self();
	c->tp = threadpool_new(c->base, nthreads);
	pthread_mutex_init(&c->gate_mu, NULL);
	pthread_cond_init(&c->gate_cv, NULL);
	/* A test that hangs fails instead. */
	struct timeval tv = {20, 0};
	event_base_loopexit(c->base, &tv);
}

static void
ctx_open_gate(struct ctx *c)
{
	pthread_mutex_lock(&c->gate_mu);
	c->gate_open = true;
	pthread_cond_broadcast(&c->gate_cv);
	pthread_mutex_unlock(&c->gate_mu);
}

static void
ctx_fini(struct ctx *c)
{
	threadpool_free(c->tp);
	event_base_free(c->base);
	pthread_mutex_destroy(&c->gate_mu);
	pthread_cond_destroy(&c->gate_cv);
}

static void
submit(struct ctx *c, struct job *j)
{
	c->in_submit = true;
	threadpool_submit(c->tp, job_work, job_done, j);
	c->in_submit = false;
}

static void
test_many_jobs(void **state)
{
	static const unsigned threads[] = {0, 1, 2, 8};

	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
		enum { N = 2000 };
		struct ctx c;
		struct job *jobs = calloc(N, sizeof(*jobs));

		ctx_init(&c, threads[t]);
		c.expected = N;
		for (unsigned i = 0; i < N; i++) {
			jobs[i].c = &c;
			jobs[i].n = i;
			submit(&c, &jobs[i]);
		}
		assert_int_equal(event_base_dispatch(c.base), 0);
		assert_int_equal(c.done_runs, N);
		assert_int_equal(atomic_load(&c.work_runs), N);
		for (unsigned i = 0; i < N; i++)
			assert_int_equal(jobs[i].done_seen, 1);
		assert_int_equal(threadpool_pending(c.tp), 0);
		ctx_fini(&c);
		free(jobs);
	}
}

/* Even if work has finished long before, done waits for the loop. */
static void
test_done_waits_for_loop(void **state)
{
	struct ctx c;
	struct job j = {0};

	ctx_init(&c, 1);
	c.expected = 1;
	j.c = &c;
	submit(&c, &j);
	/* Wait (on a condition, not a clock) until the work has run. */
	while (atomic_load(&c.work_runs) == 0)
		sched_yield();
	assert_int_equal(j.done_seen, 0);
	assert_int_equal(event_base_dispatch(c.base), 0);
	assert_int_equal(j.done_seen, 1);
	ctx_fini(&c);
}

static void
test_pending(void **state)
{
	enum { N = 5 };
	struct ctx c;
	struct job jobs[N];

	ctx_init(&c, 2);
	c.expected = N;
	assert_int_equal(threadpool_pending(c.tp), 0);
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct job){.c = &c, .n = i, .gated = true};
		submit(&c, &jobs[i]);
	}
	/* Two running (blocked on the gate), three queued. */
	assert_int_equal(threadpool_pending(c.tp), N);
	ctx_open_gate(&c);
	assert_int_equal(event_base_dispatch(c.base), 0);
	assert_int_equal(threadpool_pending(c.tp), 0);
	ctx_fini(&c);
}

/* free() lets queued work finish but runs no done callback. */
static void
test_free_drains_without_done(void **state)
{
	enum { N = 50 };
	struct ctx c;
	struct job jobs[N];

	ctx_init(&c, 2);
	c.expected = N;
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct job){.c = &c, .n = i, .gated = i == 0};
		submit(&c, &jobs[i]);
	}
	ctx_open_gate(&c);
	threadpool_free(c.tp);
	c.tp = NULL;
	assert_int_equal(atomic_load(&c.work_runs), N);
	/* Nothing of the pool is left for the loop to run. */
	assert_int_equal(event_base_loop(c.base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(c.done_runs, 0);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(jobs[i].done_seen, 0);
	ctx_fini(&c);
}

/* A done callback may free the pool; later completions of the same batch are
 * then dropped. */
static void
test_free_from_done(void **state)
{
	enum { N = 100 };
	struct ctx c;
	struct job jobs[N];

	ctx_init(&c, 2);
	c.expected = 1;
	c.free_in_done = true;
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct job){.c = &c, .n = i};
		submit(&c, &jobs[i]);
	}
	assert_int_equal(event_base_dispatch(c.base), 0);
	assert_null(c.tp);
	assert_int_equal(c.done_runs, 1);
	assert_int_equal(atomic_load(&c.work_runs), N);
	ctx_fini(&c);
}

/* Submitting from a done callback works (the auth server chains sources). */
struct chain {
	struct event_base *base;
	struct threadpool *tp;
	unsigned left;
};

static void
chain_work(void *arg)
{
}

static void
chain_done(void *arg)
{
	struct chain *ch = arg;

	if (--ch->left == 0)
		event_base_loopbreak(ch->base);
	else
		threadpool_submit(ch->tp, chain_work, chain_done, ch);
}

static void
test_submit_from_done(void **state)
{
	struct chain ch = {.left = 100};
	struct timeval tv = {20, 0};

	ch.base = event_base_new();
	ch.tp = threadpool_new(ch.base, 3);
	event_base_loopexit(ch.base, &tv);
	threadpool_submit(ch.tp, chain_work, chain_done, &ch);
	assert_int_equal(event_base_dispatch(ch.base), 0);
	assert_int_equal(ch.left, 0);
	threadpool_free(ch.tp);
	event_base_free(ch.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_many_jobs),
	        cmocka_unit_test(test_done_waits_for_loop),
	        cmocka_unit_test(test_pending),
	        cmocka_unit_test(test_free_drains_without_done),
	        cmocka_unit_test(test_free_from_done),
	        cmocka_unit_test(test_submit_from_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
