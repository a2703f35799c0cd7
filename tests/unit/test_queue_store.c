/* SPDX-License-Identifier: ISC */
/*
 * test_queue_store.c - the queue's on-disk state: state/<ID> format round
 * trip, every parse error, reading a missing or damaged file, the ordered
 * write/remove thread, orphan clean-up; and the MX ordering of dns.h
 * (preference first, random among equals).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "lib/log.h"
#include "queue/dns.h"
#include "queue/queue_store.h"
#include "support/ut_tmp.h"

static char dir[256];

static int
setup(void **state)
{
	ut_tmp_dir(dir, sizeof(dir), "test_queue_store.");
	char p[300];
	snprintf(p, sizeof(p), "%s/incoming", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/state", dir);
	mkdir(p, 0700);
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(dir);
	return 0;
}

static void
test_roundtrip(void **state)
{
	struct queue_state st = {.attempts = 3,
	                         .next_attempt = 1700000000,
	                         .hold = true,
	                         .warned = true,
	                         .n_rcpts = 4};
	struct queue_state_rcpt r[4] = {
	        {RCPT_SENT, "250 2.0.0 Ok"},
	        {RCPT_PENDING, NULL},
	        {RCPT_DEFERRED, "connect to x[1.2.3.4]:25: timed out %\n"},
	        {RCPT_BOUNCED, ""},
	};
	st.rcpts = r;
	char *text = queue_state_format(&st);
	struct queue_state back;
	const char *err = NULL;
	assert_int_equal(queue_state_parse(text, 4, &back, &err), 0);
	assert_int_equal(back.attempts, 3);
	assert_int_equal(back.next_attempt, 1700000000);
	assert_true(back.hold);
	assert_true(back.warned);
	assert_int_equal(back.rcpts[0].status, RCPT_SENT);
	assert_string_equal(back.rcpts[0].reply, "250 2.0.0 Ok");
	assert_int_equal(back.rcpts[1].status, RCPT_PENDING);
	assert_null(back.rcpts[1].reply);
	assert_int_equal(back.rcpts[2].status, RCPT_DEFERRED);
	assert_string_equal(back.rcpts[2].reply, "connect to x[1.2.3.4]:25: timed out %\n");
	assert_int_equal(back.rcpts[3].status, RCPT_BOUNCED);
	queue_state_clear(&back);
	free(text);
}

static void
test_parse_errors(void **state)
{
	static const char *const bad[] = {
	        "",
	        "AUTHRELAY-STATE 2\n\n",
	        "AUTHRELAY-STATE 1\nattempts 1\n", /* no blank line */
	        "AUTHRELAY-STATE 1\nattempts x\n\n",
	        "AUTHRELAY-STATE 1\nattempts\n\n",
	        "AUTHRELAY-STATE 1\nnext -5\n\n",
	        "AUTHRELAY-STATE 1\nrcpt 9 sent x\n\n", /* index out of range */
	        "AUTHRELAY-STATE 1\nrcpt 0 pending x\n\n",
	        "AUTHRELAY-STATE 1\nrcpt 0 sent\n\n",
	        "AUTHRELAY-STATE 1\nrcpt 0 sent a%zz\n\n", /* bad escape */
	        "AUTHRELAY-STATE 1\nfrobnicate 1\n\n",
	        "AUTHRELAY-STATE 1\nhold 2\n\n",
	        "AUTHRELAY-STATE 1\nattempts 1", /* no end of line */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct queue_state st;
		const char *err = NULL;
		if (queue_state_parse(bad[i], 2, &st, &err) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(err);
	}
}

static int done_calls;
static void
done_cb(void *arg)
{
	done_calls++;
	event_base_loopbreak(arg);
}

static void
test_store_write_read_remove(void **state)
{
	struct event_base *base = event_base_new();
	struct queue_store *s = queue_store_new(base, dir);
	const char *id = "0123456789abcdef0123", *err;
	char p[400];
	struct queue_state st;

	/* No state file: everything pending. */
	assert_int_equal(queue_store_read_state(dir, id, 2, &st, &err), 0);
	assert_int_equal(st.rcpts[1].status, RCPT_PENDING);
	queue_state_clear(&st);

	snprintf(p, sizeof(p), "%s/incoming/%s", dir, id);
	FILE *f = fopen(p, "w");
	fputs("x", f);
	fclose(f);
	queue_store_write_state(s, id, strdup("AUTHRELAY-STATE 1\nattempts 2\nnext 5\n\n"));
	/* queued after the write: must never be overtaken by it */
	queue_store_remove(s, id, true, done_cb, base);
	event_base_dispatch(base);
	assert_int_equal(done_calls, 1);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/state/%s", dir, id);
	assert_int_equal(access(p, F_OK), -1);

	/* A damaged state file is reported, not trusted. */
	f = fopen(p, "w");
	fputs("garbage\n", f);
	fclose(f);
	assert_int_equal(queue_store_read_state(dir, id, 1, &st, &err), -1);
	assert_non_null(err);
	/* ... and, without its message, removed as an orphan, with tmp files. */
	snprintf(p, sizeof(p), "%s/state/.tmp-%s", dir, id);
	f = fopen(p, "w");
	fclose(f);
	assert_int_equal(queue_store_remove_orphans(dir), 2);
	queue_store_free(s);
	event_base_free(base);
}

/* What someone who could write state/ (not the workers: it is the
 * queue's, 0700) might plant there is never opened through: a symlink at
 * state/.tmp-ID is removed and the state written beside it, a symlink at
 * state/ID is refused when read. And what a crash left in queue-tmp/ goes. */
static void
test_store_never_follows(void **state)
{
	struct event_base *base = event_base_new();
	struct queue_store *s = queue_store_new(base, dir);
	const char *id = "0123456789abcdef0456", *err = NULL;
	char p[400], target[400], tmp[400], buf[64] = "";
	struct queue_state st;
	struct stat sb;
	FILE *f;

	snprintf(target, sizeof(target), "%s/target", dir);
	f = fopen(target, "w");
	fputs("delivered message\n", f);
	fclose(f);
	snprintf(tmp, sizeof(tmp), "%s/state/.tmp-%s", dir, id);
	assert_int_equal(symlink(target, tmp), 0);
	queue_store_write_state(s, id, strdup("AUTHRELAY-STATE 1\nattempts 2\nnext 5\n\n"));
	snprintf(p, sizeof(p), "%s/incoming/%s", dir, id);
	f = fopen(p, "w");
	fclose(f);
	queue_store_remove(s, "0123456789abcdef0999", false, done_cb, base);
	event_base_dispatch(base);
	f = fopen(target, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "delivered message\n");
	snprintf(p, sizeof(p), "%s/state/%s", dir, id);
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(lstat(tmp, &sb), -1);
	assert_true(queue_store_read_state(dir, id, 1, &st, &err) >= 0);
	assert_true(st.exists);
	assert_int_equal(st.attempts, 2);
	queue_state_clear(&st);

	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(queue_store_read_state(dir, id, 1, &st, &err), -1);
	assert_non_null(strstr(err, "a symlink (not followed)"));
	assert_int_equal(unlink(p), 0);

	snprintf(p, sizeof(p), "%s/queue-tmp", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/queue-tmp/0123456789abcdef0777", dir);
	f = fopen(p, "w");
	fclose(f);
	assert_int_equal(queue_store_remove_orphans(dir), 1);
	assert_int_equal(access(p, F_OK), -1);
	queue_store_free(s);
	event_base_free(base);
}

/* A barrier runs after everything asked before it: when its done runs,
 * the state written and the message removed before it are on disk. */
static void
test_store_barrier_after_earlier_operations(void **state)
{
	struct event_base *base = event_base_new();
	struct queue_store *s = queue_store_new(base, dir);
	const char *keep = "0123456789abcdef0000", *gone = "0123456789abcdef0001";
	char p[400];

	snprintf(p, sizeof(p), "%s/incoming/%s", dir, gone);
	FILE *f = fopen(p, "w");
	fputs("x", f);
	fclose(f);
	done_calls = 0;
	queue_store_write_state(s, keep, strdup("AUTHRELAY-STATE 1\nattempts 1\nnext 5\n\n"));
	queue_store_remove(s, gone, false, NULL, NULL);
	queue_store_barrier(s, done_cb, base);
	event_base_dispatch(base);
	assert_int_equal(done_calls, 1);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/state/%s", dir, keep);
	assert_int_equal(access(p, F_OK), 0);
	unlink(p);
	queue_store_free(s);
	event_base_free(base);
}

/* A store freed with operations whose done has not run yet (the queue
 * stopping right after an attempt queued its state write): the operations
 * still reach the disk, their done callbacks never run, and the store frees
 * its jobs and their text itself (under make asan, LeakSanitizer caught the
 * jobs lost here). */
static void
test_store_free_with_operations_out(void **state)
{
	struct event_base *base = event_base_new();
	struct queue_store *s = queue_store_new(base, dir);
	const char *id = "0123456789abcdef0002", *gone = "0123456789abcdef0003";
	char p[400];

	snprintf(p, sizeof(p), "%s/incoming/%s", dir, gone);
	FILE *f = fopen(p, "w");
	fputs("x", f);
	fclose(f);
	done_calls = 0;
	queue_store_write_state(s, id, strdup("AUTHRELAY-STATE 1\nattempts 1\nnext 5\n\n"));
	queue_store_remove(s, gone, false, done_cb, base);
	queue_store_barrier(s, done_cb, base);
	/* No loop turn: every done is still owed. */
	queue_store_free(s);
	assert_int_equal(done_calls, 0);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/state/%s", dir, id);
	assert_int_equal(access(p, F_OK), 0);
	unlink(p);
	event_base_free(base);
}

static uint32_t lcg = 1;
static unsigned
rnd_lcg(unsigned n)
{
	lcg = lcg * 1103515245u + 12345u;
	return (lcg >> 16) % n;
}

static void
test_mx_order(void **state)
{
	static const unsigned pref[] = {20, 10, 30, 10, 10};
	static const unsigned want[] = {10, 10, 10, 20, 30};
	bool first_seen[5] = {false};

	for (int run = 0; run < 60; run++) {
		struct dns_target t[5];
		for (int i = 0; i < 5; i++) {
			memset(&t[i], 0, sizeof(t[i]));
			t[i].preference = pref[i];
			snprintf(t[i].host, sizeof(t[i].host), "h%d", i);
		}
		dns_sort_targets(t, 5, rnd_lcg);
		for (int i = 0; i < 5; i++)
			assert_int_equal(t[i].preference, want[i]);
		assert_string_equal(t[3].host, "h0");
		assert_string_equal(t[4].host, "h2");
		first_seen[t[0].host[1] - '0'] = true;
	}
	/* RFC 5321 5.1: each of the equal preferences comes first sometimes. */
	assert_true(first_seen[1] && first_seen[3] && first_seen[4]);
	assert_false(first_seen[0] || first_seen[2]);
}

int
main(void)
{
	log_init(false, LOG_LEVEL_ERR, "test");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_roundtrip),
	        cmocka_unit_test(test_parse_errors),
	        cmocka_unit_test_setup_teardown(test_store_write_read_remove, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_never_follows, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_barrier_after_earlier_operations, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_store_free_with_operations_out, setup,
	                                        teardown),
	        cmocka_unit_test(test_mx_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
