/* SPDX-License-Identifier: ISC */
/*
 * ut_loop.c - turn a libevent loop until a condition holds (ut_loop.h).
 *
 * A 2 ms timer checks the condition so that it is seen even when nothing
 * else wakes the loop (a child exiting, a file appearing). The bound is a
 * timer of our own rather than event_base_loopexit(): a pending loopexit
 * would outlive this call and end the test's next dispatch early.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>

#include "ut_loop.h"

#define UT_LOOP_TICK_US 2000
#define UT_LOOP_LIMIT_S 15

struct ut_waiter {
	struct event_base *base;
	ut_loop_cond_cb *cond;
	void *arg;
	struct event *tick;
	bool met;
	bool late;
};

static void
ut_loop_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ut_waiter *w = arg;
	struct timeval tv = {0, UT_LOOP_TICK_US};

	if (w->cond(w->arg)) {
		w->met = true;
		event_base_loopbreak(w->base);
		return;
	}
	evtimer_add(w->tick, &tv);
}

static void
ut_loop_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct ut_waiter *w = arg;

	w->late = true;
	event_base_loopbreak(w->base);
}

void
ut_loop_wait(struct event_base *base, ut_loop_cond_cb *cond, void *arg)
{
	struct ut_waiter w = {base, cond, arg, NULL, false, false};
	struct timeval zero = {0, 0}, limit = {UT_LOOP_LIMIT_S, 0};
	struct event *deadline = evtimer_new(base, ut_loop_deadline, &w);

	w.tick = evtimer_new(base, ut_loop_tick, &w);
	assert_non_null(w.tick);
	assert_non_null(deadline);
	evtimer_add(w.tick, &zero);
	evtimer_add(deadline, &limit);
	/* A callback of the test's may break the loop too: that ends a turn,
	 * not the wait. */
	while (!w.met && !w.late)
		event_base_dispatch(base);
	event_free(w.tick);
	event_free(deadline);
	assert_true(w.met);
}
