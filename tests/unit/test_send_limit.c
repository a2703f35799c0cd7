/*
 * test_send_limit.c - the per-user sending counts shared by the workers:
 * messages and recipients per hour, the hour sliding in 5-minute steps,
 * users folded to lower case, limits of 0 meaning none, a full table giving
 * way to the longest idle user, and counts made in a forked child (as a
 * worker is) seen by the parent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "smtpd/send_limit.h"

#define T0 999900 /* a monotonic second, on a 5-minute boundary */

static void
counts(struct send_limit *sl, const char *user, uint64_t now, unsigned want_msgs,
       unsigned want_rcpts)
{
	unsigned m, r;

	send_limit_counts(sl, user, now, &m, &r);
	assert_int_equal(m, want_msgs);
	assert_int_equal(r, want_rcpts);
}

static void
test_counts_and_window(void **state)
{
	struct send_limit *sl = send_limit_new(100);
	unsigned c = 0;

	counts(sl, "alice", T0, 0, 0);
	send_limit_record(sl, "alice", 3, T0);
	send_limit_record(sl, "Alice", 2, T0 + 60);
	counts(sl, "ALICE", T0 + 61, 2, 5);
	counts(sl, "bob", T0 + 61, 0, 0);
	send_limit_record(sl, "alice", 1, T0 + 1800);
	counts(sl, "alice", T0 + 1800, 3, 6);
	/* The first two leave the hour with their 5-minute bucket. */
	counts(sl, "alice", T0 + 3599, 3, 6);
	counts(sl, "alice", T0 + 3600, 1, 1);
	counts(sl, "alice", T0 + 1800 + 3600, 0, 0);

	/* The session's questions. */
	send_limit_record(sl, "carol", 10, T0);
	send_limit_record(sl, "carol", 10, T0);
	assert_true(send_limit_allow_message(sl, "carol", 3, T0, &c));
	send_limit_record(sl, "carol", 10, T0);
	assert_false(send_limit_allow_message(sl, "carol", 3, T0, &c));
	assert_int_equal(c, 3);
	assert_true(send_limit_allow_message(sl, "carol", 0, T0, &c)); /* no limit */
	assert_true(send_limit_allow_recipient(sl, "carol", 4, 35, T0, &c));
	assert_false(send_limit_allow_recipient(sl, "carol", 5, 35, T0, &c));
	assert_int_equal(c, 35);
	assert_true(send_limit_allow_recipient(sl, "carol", 500, 0, T0, &c));
	assert_true(send_limit_allow_message(NULL, "carol", 1, T0, &c));
	send_limit_free(sl);
}

static void
test_full_table(void **state)
{
	struct send_limit *sl = send_limit_new(16);
	char user[32];

	/* Far more users than slots: old ones give way, recent ones stay. */
	for (int i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		send_limit_record(sl, user, 1, T0 + (uint64_t)i * 10);
	}
	counts(sl, "user4999", T0 + 49990, 1, 1);
	send_limit_free(sl);
}

static void
test_shared_across_fork(void **state)
{
	struct send_limit *sl = send_limit_new(100);
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		send_limit_record(sl, "dave", 7, T0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	counts(sl, "dave", T0, 1, 7);
	send_limit_free(sl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_counts_and_window),
	        cmocka_unit_test(test_full_table),
	        cmocka_unit_test(test_shared_across_fork),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
