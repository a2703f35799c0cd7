/* SPDX-License-Identifier: ISC */
/*
 * ut_loop.h - unit-test helper: turn a libevent loop until a condition holds.
 *
 * Tests wait on conditions (a reply arrived, a child was reaped), never on a
 * fixed sleep; the bound only decides how long a broken test takes to fail.
 */
#ifndef UT_LOOP_H
#define UT_LOOP_H

#include <stdbool.h>

struct event_base;

/* A condition on the test's own state, polled between loop turns. */
typedef bool ut_loop_cond_cb(void *arg);

/* Run base until cond(arg) holds, checking it every 2 ms, for at most 15 s;
 * fails the running test when it never holds. Events the test added stay
 * as they were; none of this helper's own is left behind. */
void ut_loop_wait(struct event_base *base, ut_loop_cond_cb *cond, void *arg);

#endif
