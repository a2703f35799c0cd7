/* SPDX-License-Identifier: ISC */
/*
 * test_alert_intake.c - the queue process's end of the alert channel, fed
 * through a real SOCK_SEQPACKET pair by the auth end (auth_alert_link): a
 * MAIL becomes a committed spool file from <> with its recipients, our
 * Received: line and the message; a HOOK runs [alerts] hook with its text;
 * malformed records, a mail without a usable recipient, a hook asked for
 * without one configured are logged and dropped while the channel goes on;
 * shutting down with a spool write queued loses nothing and leaks nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth_alert_link.h"
#include "authwire/alert_proto.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/threadpool.h"
#include "queue/alert_intake.h"
#include "spool/spool.h"
#include "support/ut_loop.h"
#include "support/ut_tmp.h"

static const char message[] = "From: authrelay@example.test\r\n"
                              "To: admin@example.test,\r\n sec@example.test\r\n"
                              "Subject: [authrelay] login failures\r\n"
                              "\r\n"
                              "Top logins:\r\n       3  frank\r\n";

struct fx {
	char dir[64];
	char spool[96];
	char hook_out[128];
	char log[128];
	char hook_cmd[600];
	int saved_stderr;
	int sv[2];
	struct event_base *base;
	struct threadpool *pool;
	struct alert_intake *in;
	struct auth_alert_link *link;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *err;
	int fd;

	ut_tmp_dir(f->dir, sizeof(f->dir), "authrelay-intake-");
	snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
	assert_int_equal(spool_init_dirs(f->spool, &(struct spool_owners){.root = false}, &err), 0);
	snprintf(f->hook_out, sizeof(f->hook_out), "%s/hook.txt", f->dir);
	snprintf(f->hook_cmd, sizeof(f->hook_cmd),
	         "cat > %s.tmp; echo \"$AUTHRELAY_ALERT_KIND\" >> %s.tmp; mv %s.tmp %s",
	         f->hook_out, f->hook_out, f->hook_out, f->hook_out);
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	fd = open(f->log, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	f->saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	log_init(false, LOG_LEVEL_INFO, "test");
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(
	        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f->sv), 0);
	f->base = event_base_new();
	f->pool = threadpool_new(f->base, 1);
	f->link = auth_alert_link_new(f->base, f->sv[0]);
	*state = f;
	return 0;
}

static void
start(struct fx *f, bool with_hook)
{
	struct alert_intake_params p = {
	        .base = f->base,
	        .pool = f->pool,
	        .spool_dir = f->spool,
	        .hostname = "mx.example.test",
	        .hook = with_hook ? f->hook_cmd : NULL,
	        .fd = f->sv[1],
	};

	f->in = alert_intake_new(&p);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	auth_alert_link_free(f->link);
	threadpool_free(f->pool);
	alert_intake_free(f->in);
	event_base_free(f->base);
	dup2(f->saved_stderr, 2);
	close(f->saved_stderr);
	ut_tmp_remove(f->dir);
	free(f);
	return 0;
}

/* The names in spool/incoming, at most max; returns how many. */
static size_t
incoming(struct fx *f, char names[][SPOOL_ID_LEN + 1], size_t max)
{
	char path[128];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/incoming", f->spool);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n < max) {
			assert_true(strlen(e->d_name) <= SPOOL_ID_LEN);
			memcpy(names[n], e->d_name, strlen(e->d_name) + 1);
		}
		n++;
	}
	closedir(d);
	return n;
}

static bool
one_queued(void *arg)
{
	struct fx *f = arg;
	return strstr(ut_tmp_read(f->log), "alert queued id=") != NULL;
}

static bool
hook_done(void *arg)
{
	struct fx *f = arg;
	struct stat st;

	return stat(f->hook_out, &st) == 0;
}

static void
send_mail(struct fx *f, const char *kind, const char *to)
{
	struct alert_mail_msg a = {kind, to, message, sizeof(message) - 1};

	assert_true(auth_alert_link_send(alert_proto_mail(&a), f->link));
}

static void
test_mail_spooled(void **state)
{
	struct fx *f = *state;
	char names[4][SPOOL_ID_LEN + 1], path[256], want[160];
	struct spool_envelope env;
	const char *err, *body;
	long off;

	start(f, false);
	send_mail(f, "login_failures", "admin@example.test,sec@example.test");
	ut_loop_wait(f->base, one_queued, f);
	assert_int_equal(incoming(f, names, 4), 1);
	snprintf(want, sizeof(want), "alert queued id=%s kind=login_failures from=<> nrcpt=2",
	         names[0]);
	assert_non_null(strstr(ut_tmp_read(f->log), want));

	snprintf(path, sizeof(path), "%s/incoming/%s", f->spool, names[0]);
	assert_int_equal(spool_read_envelope(path, &env, &off, &err), 0);
	assert_string_equal(env.id, names[0]);
	assert_string_equal(env.mail, "<>");
	assert_int_equal(env.n_rcpts, 2);
	assert_string_equal(env.rcpts[0], "<admin@example.test>");
	assert_string_equal(env.rcpts[1], "<sec@example.test>");
	assert_string_equal(env.client, "local");
	assert_string_equal(env.listener, "alerts");
	assert_string_equal(env.protocol, "LOCAL");
	assert_string_equal(env.tls, "none");
	assert_null(env.auth);
	spool_envelope_clear(&env);
	body = ut_tmp_read(path) + off;
	snprintf(want, sizeof(want), "Received: by mx.example.test (authrelay alerts) id %s;\r\n\t",
	         names[0]);
	assert_memory_equal(body, want, strlen(want));
	assert_non_null(strstr(body, message));
}

static void
test_hook_run(void **state)
{
	struct fx *f = *state;
	static const char text[] = "kind=multi_ip user=\"gina\" clients=3 window=60\n";
	const char *got;

	start(f, true);
	assert_true(auth_alert_link_send(
	        alert_proto_hook(&(struct alert_hook_msg){"multi_ip", text, sizeof(text) - 1}),
	        f->link));
	ut_loop_wait(f->base, hook_done, f);
	got = ut_tmp_read(f->hook_out);
	assert_non_null(strstr(got, text));
	assert_non_null(strstr(got, "\nmulti_ip\n"));
}

/* Bad records are dropped; the channel carries on with the next one. */
static void
test_bad_records(void **state)
{
	struct fx *f = *state;
	char names[4][SPOOL_ID_LEN + 1];
	struct ipc_msg *m;

	start(f, false);
	/* Not one frame. */
	assert_int_equal(send(f->sv[0], "\0\0\0\x09\x01", 5, 0), 5);
	/* An unknown type. */
	m = ipc_msg_new(99);
	ipc_msg_add_str(m, "x");
	assert_true(auth_alert_link_send(m, f->link));
	/* A MAIL without a recipient, and one with none usable. */
	m = ipc_msg_new(ALERT_MSG_MAIL);
	ipc_msg_add_str(m, "multi_ip");
	ipc_msg_add_str(m, "");
	ipc_msg_add_str(m, "text");
	assert_true(auth_alert_link_send(m, f->link));
	send_mail(f, "multi_ip", ",,,");
	/* A HOOK with a kind that is not a word. */
	m = ipc_msg_new(ALERT_MSG_HOOK);
	ipc_msg_add_str(m, "Bad Kind");
	ipc_msg_add_str(m, "text");
	assert_true(auth_alert_link_send(m, f->link));
	/* A HOOK, but no [alerts] hook here. */
	assert_true(auth_alert_link_send(
	        alert_proto_hook(&(struct alert_hook_msg){"multi_ip", "t\n", 2}), f->link));
	/* And a good one after all that. */
	send_mail(f, "send_limit", "admin@example.test");
	ut_loop_wait(f->base, one_queued, f);
	assert_int_equal(incoming(f, names, 4), 1);
	assert_non_null(strstr(ut_tmp_read(f->log), "a record that is not one frame; dropped"));
	assert_non_null(strstr(ut_tmp_read(f->log), "malformed message type 99"));
	assert_non_null(strstr(ut_tmp_read(f->log), "malformed message type 1 "));
	assert_non_null(strstr(ut_tmp_read(f->log), "malformed message type 2 "));
	assert_non_null(strstr(ut_tmp_read(f->log), "alert kind=multi_ip from the auth process has "
	                                            "no usable recipient; dropped"));
	assert_non_null(strstr(ut_tmp_read(f->log), "alert kind=multi_ip: a hook run asked for"));
	assert_non_null(strstr(ut_tmp_read(f->log), "kind=send_limit from=<> nrcpt=1"));
}

/* Shut down with a spool write queued: the pool finishes it, the intake
 * frees its record (ASan: no leak), and the message is in incoming/. */
static void
test_shutdown_with_mail_queued(void **state)
{
	struct fx *f = *state;
	char names[4][SPOOL_ID_LEN + 1];

	start(f, false);
	send_mail(f, "login_failures", "admin@example.test");
	/* One turn reads the record and hands the write to the pool. */
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	threadpool_free(f->pool);
	f->pool = NULL;
	alert_intake_free(f->in);
	f->in = NULL;
	assert_int_equal(incoming(f, names, 4), 1);
	f->pool = threadpool_new(f->base, 1); /* for teardown */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_mail_spooled, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_hook_run, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_shutdown_with_mail_queued, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
