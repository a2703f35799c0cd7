/* SPDX-License-Identifier: ISC */
/*
 * test_threadpool.c - lib/threadpool: work runs on pool threads, done runs on
 * the loop thread exactly once and never inside submit(), the pending count,
 * and both ways of freeing (from outside the loop and from a done callback);
 * threadpool_run_inline(): work inside the call, done from the next round in
 * order, and freeing with inline jobs pending or from their done.
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

/*
 * threadpool_run_inline(): work runs on the calling (loop) thread before the
 * call returns; done runs later from the loop, like a pool job's, in the
 * order the jobs were run.
 */
enum { INL_MAX = 200 };

struct inl {
	struct event_base *base;
	struct threadpool *tp;
	pthread_t loop_thread;
	bool in_call; /* inside threadpool_run_inline() */
	unsigned works, dones;
	unsigned work_order[INL_MAX], done_order[INL_MAX];
	unsigned free_after;   /* done number that frees the pool; 0: none */
	unsigned chain_left;   /* done runs another inline job while > 0 */
	bool inline_then_free; /* a pool job's done adds an inline job, frees */
	atomic_uint pool_works;
	unsigned pool_dones;
};

struct inl_job {
	struct inl *c;
	unsigned n;
	unsigned work_seen, done_seen;
	bool work_in_call;
};

static void inl_run(struct inl *c, struct inl_job *j);

static void
inl_work(void *arg)
{
	struct inl_job *j = arg;
	struct inl *c = j->c;

	assert_true(pthread_equal(pthread_self(), c->loop_thread));
	j->work_in_call = c->in_call;
	j->work_seen++;
	assert_true(c->works < INL_MAX);
	c->work_order[c->works++] = j->n;
}

static void
inl_done(void *arg)
{
	struct inl_job *j = arg;
	struct inl *c = j->c;

	assert_false(c->in_call);
	assert_true(pthread_equal(pthread_self(), c->loop_thread));
	assert_int_equal(j->work_seen, 1);
	j->done_seen++;
	assert_true(c->dones < INL_MAX);
	c->done_order[c->dones++] = j->n;
	if (c->chain_left > 0) {
		c->chain_left--;
		/* The job struct is reused: done has already run for it. */
		j->n++;
		j->work_seen = 0;
		inl_run(c, j);
	}
	if (c->dones == c->free_after) {
		threadpool_free(c->tp);
		c->tp = NULL;
	}
}

static void
inl_run(struct inl *c, struct inl_job *j)
{
	c->in_call = true;
	threadpool_run_inline(c->tp, inl_work, inl_done, j);
	c->in_call = false;
}

static void
inl_pool_work(void *arg)
{
	struct inl *c = arg;

	atomic_fetch_add(&c->pool_works, 1);
}

static void
inl_pool_done(void *arg)
{
	struct inl *c = arg;
	static struct inl_job late;

	c->pool_dones++;
	if (c->inline_then_free) {
		late = (struct inl_job){.c = c, .n = 99};
		inl_run(c, &late);
		assert_int_equal(late.work_seen, 1);
		threadpool_free(c->tp);
		c->tp = NULL;
	}
}

static void
inl_init(struct inl *c, unsigned nthreads)
{
	memset(c, 0, sizeof(*c));
	c->base = event_base_new();
	assert_non_null(c->base);
	c->loop_thread = pthread_self();
	c->tp = threadpool_new(c->base, nthreads);
}

static void
inl_fini(struct inl *c)
{
	threadpool_free(c->tp);
	event_base_free(c->base);
}

static void
inl_round(struct inl *c)
{
	assert_true(event_base_loop(c->base, EVLOOP_NONBLOCK) >= 0);
}

static void
test_inline_work_now_done_later(void **state)
{
	struct inl c;
	struct inl_job j = {0};

	inl_init(&c, 1);
	j.c = &c;
	inl_run(&c, &j);
	/* work ran synchronously, inside the call, on this thread ... */
	assert_int_equal(j.work_seen, 1);
	assert_true(j.work_in_call);
	/* ... and done did not. */
	assert_int_equal(j.done_seen, 0);
	/* One loop round runs it, once. */
	inl_round(&c);
	assert_int_equal(j.done_seen, 1);
	inl_round(&c);
	assert_int_equal(j.done_seen, 1);
	assert_int_equal(j.work_seen, 1);
	inl_fini(&c);
}

static void
test_inline_order(void **state)
{
	enum { N = 100 };
	struct inl c;
	struct inl_job jobs[N];

	inl_init(&c, 2);
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct inl_job){.c = &c, .n = i};
		inl_run(&c, &jobs[i]);
		assert_int_equal(c.works, i + 1);
		assert_int_equal(c.dones, 0);
	}
	inl_round(&c);
	assert_int_equal(c.dones, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(c.work_order[i], i);
		assert_int_equal(c.done_order[i], i);
		assert_int_equal(jobs[i].done_seen, 1);
	}
	inl_fini(&c);
}

/* An inline job run from an inline done: its done comes after the current
 * one returns, never nested inside threadpool_run_inline(). */
static void
test_inline_from_done(void **state)
{
	struct inl c;
	struct inl_job j = {0};
	unsigned rounds = 0;

	inl_init(&c, 1);
	c.chain_left = 150;
	j.c = &c;
	inl_run(&c, &j);
	while (c.dones < 151 && ++rounds < 1000)
		inl_round(&c);
	assert_int_equal(c.dones, 151);
	assert_int_equal(c.works, 151);
	for (unsigned i = 0; i < 151; i++)
		assert_int_equal(c.done_order[i], i);
	inl_fini(&c);
}

/* threadpool_free() from an inline done: the rest of the batch, and pool
 * completions waiting in the same round, are dropped without their done. */
static void
test_inline_free_from_done(void **state)
{
	enum { N = 10, M = 20 };
	struct inl c;
	struct inl_job jobs[N];

	inl_init(&c, 2);
	c.free_after = 3;
	for (unsigned i = 0; i < M; i++)
		threadpool_submit(c.tp, inl_pool_work, inl_pool_done, &c);
	/* Wait (on a condition) until the pool jobs sit in the done queue. */
	while (threadpool_pending(c.tp) > 0)
		sched_yield();
	assert_int_equal(atomic_load(&c.pool_works), M);
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct inl_job){.c = &c, .n = i};
		inl_run(&c, &jobs[i]);
	}
	/* Inline completions were activated first; the third frees the pool. */
	inl_round(&c);
	assert_null(c.tp);
	assert_int_equal(c.dones, 3);
	assert_int_equal(c.pool_dones, 0);
	inl_round(&c);
	inl_round(&c);
	assert_int_equal(c.dones, 3);
	assert_int_equal(c.pool_dones, 0);
	for (unsigned i = 3; i < N; i++)
		assert_int_equal(jobs[i].done_seen, 0);
	inl_fini(&c);
}

/* threadpool_free() from a pool job's done right after running an inline job:
 * the inline job's done never runs. */
static void
test_free_from_done_with_inline_pending(void **state)
{
	struct inl c;
	unsigned rounds = 0;

	inl_init(&c, 1);
	c.inline_then_free = true;
	threadpool_submit(c.tp, inl_pool_work, inl_pool_done, &c);
	while (c.pool_dones == 0 && ++rounds < 100000) {
		sched_yield();
		inl_round(&c);
	}
	assert_int_equal(c.pool_dones, 1);
	assert_null(c.tp);
	assert_int_equal(c.works, 1);
	inl_round(&c);
	inl_round(&c);
	assert_int_equal(c.dones, 0);
	inl_fini(&c);
}

/* threadpool_free() outside the loop with inline jobs pending frees them
 * without calling done; the loop has nothing of the pool left to run. */
static void
test_free_with_inline_pending(void **state)
{
	enum { N = 5 };
	struct inl c;
	struct inl_job jobs[N];

	inl_init(&c, 2);
	for (unsigned i = 0; i < N; i++) {
		jobs[i] = (struct inl_job){.c = &c, .n = i};
		inl_run(&c, &jobs[i]);
	}
	assert_int_equal(c.works, N);
	threadpool_free(c.tp);
	c.tp = NULL;
	inl_round(&c);
	inl_round(&c);
	assert_int_equal(c.dones, 0);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(jobs[i].done_seen, 0);
	inl_fini(&c);
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
	        cmocka_unit_test(test_inline_work_now_done_later),
	        cmocka_unit_test(test_inline_order),
	        cmocka_unit_test(test_inline_from_done),
	        cmocka_unit_test(test_inline_free_from_done),
	        cmocka_unit_test(test_free_from_done_with_inline_pending),
	        cmocka_unit_test(test_free_with_inline_pending),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
