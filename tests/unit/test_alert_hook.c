/* SPDX-License-Identifier: ISC */
/*
 * test_alert_hook.c - the queue process's alert hook with a real /bin/sh:
 * the alert text on its stdin and AUTHRELAY_ALERT_KIND in its environment,
 * a failing hook logged with its status, at most ALERT_HOOK_MAX at once, one
 * that outlives its timeout killed, and every child reaped (the reap timer
 * stops with the last one).
 *
 * Waits are bounded polls on a condition (a file appearing, the count of
 * running hooks), driven by the event loop so the reap timer runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "queue/alert_hook.h"
#include "support/ut_loop.h"
#include "support/ut_tmp.h"

static char dir[64];
static char logpath[96];
static int saved_stderr = -1;

static int
setup(void **state)
{
	int fd;

	ut_tmp_dir(dir, sizeof(dir), "authrelay-hook-");
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	log_init(false, LOG_LEVEL_DEBUG, "test");
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
teardown(void **state)
{
	dup2(saved_stderr, 2);
	close(saved_stderr);
	ut_tmp_remove(dir);
	return 0;
}

static bool
exists(void *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool
none_running(void *h)
{
	return alert_hook_running(h) == 0;
}

static bool
log_has(void *text)
{
	return strstr(ut_tmp_read(logpath), text) != NULL;
}

/* The text on stdin, the kind in the environment; reaped afterwards. */
static void
test_stdin_and_kind(void **state)
{
	struct event_base *base = event_base_new();
	static const char text[] = "kind=send_limit user=\"bob\" client=192.0.2.1 "
	                           "limit=recipients_per_hour count=2000 max=2000\n"
	                           "host=mx.example.test\n\nsending limit hit by bob\n";
	char out[128], cmd[600];
	struct alert_hook *h;
	const char *got;

	snprintf(out, sizeof(out), "%s/out.txt", dir);
	snprintf(cmd, sizeof(cmd),
	         "cat > %s.tmp; echo \"$AUTHRELAY_ALERT_KIND\" >> %s.tmp; mv %s.tmp %s", out, out,
	         out, out);
	h = alert_hook_new(base, cmd, 0);
	assert_true(alert_hook_run(h, "send_limit", text, sizeof(text) - 1));
	assert_int_equal(alert_hook_running(h), 1);
	ut_loop_wait(base, exists, out);
	got = ut_tmp_read(out);
	assert_non_null(strstr(got, "kind=send_limit user=\"bob\" client=192.0.2.1 "
	                            "limit=recipients_per_hour count=2000 max=2000\n"));
	assert_non_null(strstr(got, "host=mx.example.test\n"));
	assert_non_null(strstr(got, "\nsend_limit\n"));
	ut_loop_wait(base, none_running, h);
	alert_hook_free(h);
	event_base_free(base);
}

/* A hook that fails is logged with its exit status. */
static void
test_exit_status(void **state)
{
	struct event_base *base = event_base_new();
	struct alert_hook *h = alert_hook_new(base, "cat >/dev/null; exit 3", 0);

	assert_true(alert_hook_run(h, "multi_ip", "x\n", 2));
	ut_loop_wait(base, none_running, h);
	assert_true(log_has("exited status=3"));
	alert_hook_free(h);
	event_base_free(base);
}

/* ALERT_HOOK_MAX at once; one more is refused until one has finished. A
 * hook past its timeout is killed. */
static void
test_limit_and_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct alert_hook *h;
	char cmd[200], stop[128];

	/* Each hook waits for the stop file, or for ever. */
	snprintf(stop, sizeof(stop), "%s/stop", dir);
	snprintf(cmd, sizeof(cmd), "cat >/dev/null; while [ ! -e %s ]; do sleep 0.05; done", stop);
	h = alert_hook_new(base, cmd, 300);
	for (int i = 0; i < ALERT_HOOK_MAX; i++)
		assert_true(alert_hook_run(h, "login_failures", "x\n", 2));
	assert_int_equal(alert_hook_running(h), ALERT_HOOK_MAX);
	assert_false(alert_hook_run(h, "login_failures", "x\n", 2));
	assert_true(log_has("alert hook not run kind=login_failures: 8 hooks still running"));
	/* None stops by itself: the timeout kills them all. */
	ut_loop_wait(base, none_running, h);
	assert_true(log_has("still running after 0 s; killing it"));
	assert_true(alert_hook_run(h, "login_failures", "x\n", 2));
	close(open(stop, O_WRONLY | O_CREAT, 0600));
	ut_loop_wait(base, none_running, h);
	alert_hook_free(h);
	event_base_free(base);
}

/* /bin/sh -c with a command that cannot run: the shell's status 127. */
static void
test_bad_command(void **state)
{
	struct event_base *base = event_base_new();
	struct alert_hook *h = alert_hook_new(base, "/nonexistent/hook", 0);

	assert_true(alert_hook_run(h, "source_unreachable", "x\n", 2));
	ut_loop_wait(base, none_running, h);
	assert_true(log_has("exited status=127"));
	alert_hook_free(h);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_stdin_and_kind),
	        cmocka_unit_test(test_exit_status),
	        cmocka_unit_test(test_limit_and_timeout),
	        cmocka_unit_test(test_bad_command),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
