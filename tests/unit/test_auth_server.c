/* SPDX-License-Identifier: ISC */
/*
 * test_auth_server.c - the auth process end to end: auth_server_main() runs
 * in a forked child on a temporary UNIX socket, exactly as the master runs
 * it, and this process talks to it through auth_client as a worker would.
 *
 * Covers: every answer the file source gives over the wire, the log line
 * (fields, escaping, no password), a failure held by the auth process for
 * the throttle's delay (the RESULT comes late and asks the worker for no
 * more), SIGHUP reload with a new HELLO, a worker
 * sending garbage (dropped, others served), a worker leaving mid-check,
 * SIGTERM exiting 0, the client's tempfail while the auth process is down and
 * its reconnect once a new one listens, and auth_server_check().
 *
 * Waiting is always on a condition (a reply, caps changing, a child exiting)
 * with a bound, never on a fixed sleep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "authwire/auth_client.h"
#include "auth/auth_server.h"
#include "lib/config.h"
#include "lib/log.h"
#include "support/ut_loop.h"
#include "support/ut_tmp.h"

#define PW "correct horse"
#define SSHA_CH "{SSHA}+YQAsRCIvJdvIWRvF/AslPn4IMwGH/vq"
#define ARGON_CH                                                                                   \
	"$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFyStdwKhoPL4mMfmfN/"   \
	"ImNPJY"
#define RFC2195_CHALLENGE "<1896.697170952@postoffice.reston.mci.net>"
#define RFC2195_DIGEST "b913a602c7eda7a495b4e6e7334d3890"

static const char users_v1[] = "alice@example.org:" SSHA_CH ":alice@example.org,a.b@example.org\n"
                               "tim:{PLAIN}tanstaaftanstaaf\n"
                               "carol:" ARGON_CH "\n";
/* No cleartext left: caps drop to 0. */
static const char users_v2[] = "alice@example.org:{SHA}DjwucjOQlKagdnNdNvbhVN0Qar0=\n";

struct harness {
	char dir[64];
	char users[96];
	char sock[96];
	char log[96];
	struct config cfg;
	pid_t pid;
	struct event_base *base;
	struct auth_client *ac;
	struct auth_client *other;
};

static int
listen_unix(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 64), 0);
	return fd;
}

/* Fork the auth process as the master would; its log goes to h->log. */
static void
start_server(struct harness *h)
{
	int fd = listen_unix(h->sock);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int lfd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (lfd < 0)
			_exit(99);
		dup2(lfd, 2);
		close(lfd);
		log_init(false, LOG_LEVEL_INFO, "auth");
		exit(auth_server_main(&h->cfg, fd, -1, -1, -1, NULL));
	}
	close(fd);
	h->pid = pid;
}

/* Wait for the child to exit; returns its exit status, -1 if it did not
 * exit normally. */
static int
wait_server(struct harness *h)
{
	int st;

	assert_int_equal(waitpid(h->pid, &st, 0), h->pid);
	h->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
stop_server(struct harness *h)
{
	if (h->pid <= 0)
		return;
	kill(h->pid, SIGTERM);
	assert_int_equal(wait_server(h), 0);
}

static bool
caps_cram(void *arg)
{
	struct harness *h = arg;

	return auth_client_caps(h->ac) == AUTH_CAP_CRAM_MD5;
}

struct answer {
	bool returned; /* auth_client_verify() has returned */
	bool called;
	bool called_early;
	enum auth_result result;
	char identity[600];
	char reason[64];
	char addresses[256];
	uint32_t delay_ms;
	struct event_base *base;
	int *outstanding;
};

static void
on_result(const struct auth_reply *rep, void *arg)
{
	struct answer *a = arg;

	if (!a->returned)
		a->called_early = true;
	assert_false(a->called);
	a->called = true;
	a->result = rep->result;
	snprintf(a->identity, sizeof(a->identity), "%s", rep->identity);
	snprintf(a->reason, sizeof(a->reason), "%s", auth_reason_name(rep->reason));
	snprintf(a->addresses, sizeof(a->addresses), "%s", rep->addresses);
	a->delay_ms = rep->delay_ms;
	if (--*a->outstanding == 0)
		event_base_loopbreak(a->base);
}

struct row {
	const char *mech, *login, *secret, *challenge;
	enum auth_result want;
	const char *reason, *identity;
};

static void
run_rows(struct harness *h, const struct row *rows, size_t n)
{
	struct answer *ans = calloc(n, sizeof(*ans));
	struct timeval limit = {20, 0};
	int outstanding = (int)n;

	for (size_t i = 0; i < n; i++) {
		char session[24];
		struct auth_request r = {
		        .mech = rows[i].mech,
		        .login = rows[i].login,
		        .secret = rows[i].secret,
		        .secret_len = strlen(rows[i].secret),
		        .challenge = rows[i].challenge ? rows[i].challenge : "",
		        .session = session,
		        .client = "192.0.2.1",
		        .listener = "submission",
		};
		snprintf(session, sizeof(session), "s%02zu", i);
		ans[i].base = h->base;
		ans[i].outstanding = &outstanding;
		auth_client_verify(h->ac, &r, on_result, &ans[i]);
		ans[i].returned = true;
	}
	event_base_loopexit(h->base, &limit);
	event_base_dispatch(h->base);
	for (size_t i = 0; i < n; i++) {
		print_message("  %s %s -> %s %s\n", rows[i].mech, rows[i].login,
		              auth_result_name(ans[i].result), ans[i].reason);
		assert_true(ans[i].called);
		assert_false(ans[i].called_early);
		assert_int_equal(ans[i].result, rows[i].want);
		assert_string_equal(ans[i].reason, rows[i].reason);
		assert_string_equal(ans[i].identity,
		                    rows[i].want == AUTH_OK ? rows[i].identity : "");
	}
	free(ans);
}

static char *
read_log(struct harness *h)
{
	char *text = ut_tmp_read(h->log);

	assert_non_null(text);
	return text;
}

static int
setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));

	ut_tmp_dir(h->dir, sizeof(h->dir), "authrelay-srv-");
	snprintf(h->users, sizeof(h->users), "%s/users", h->dir);
	snprintf(h->sock, sizeof(h->sock), "%s/auth.sock", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/auth.log", h->dir);
	ut_tmp_write(h->users, users_v1);
	h->cfg.users_file = h->users;
	h->cfg.auth_threads = 2;
	h->cfg.auth_request_timeout = 10;
	start_server(h);
	/* After the fork: the child has no business with our loop. */
	h->base = event_base_new();
	h->ac = auth_client_new(h->base, h->sock, 10);
	ut_loop_wait(h->base, caps_cram, h);
	*state = h;
	return 0;
}

static int
teardown(void **state)
{
	struct harness *h = *state;

	auth_client_free(h->ac);
	event_base_free(h->base);
	stop_server(h);
	unlink(h->users);
	unlink(h->sock);
	unlink(h->log);
	rmdir(h->dir);
	free(h);
	return 0;
}

static void
test_answers(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_OK, "ok", "alice@example.org"},
	        {"PLAIN", "alice@Example.Org", PW, NULL, AUTH_OK, "ok", "alice@example.org"},
	        {"LOGIN", "carol", PW, NULL, AUTH_OK, "ok", "carol"},
	        {"PLAIN", "alice@example.org", "wrong", NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "mallory", PW, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "tim", "", NULL, AUTH_FAIL, "empty_password", NULL},
	        {"PLAIN", "", PW, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"CRAM-MD5", "tim", RFC2195_DIGEST, RFC2195_CHALLENGE, AUTH_OK, "ok", "tim"},
	        {"CRAM-MD5", "carol", RFC2195_DIGEST, RFC2195_CHALLENGE, AUTH_FAIL,
	         "mech_unavailable", NULL},
	        {"GSSAPI", "tim", "x", NULL, AUTH_FAIL, "mech_unavailable", NULL},
	};
	struct harness *h = *state;

	run_rows(h, rows, sizeof(rows) / sizeof(rows[0]));
}

/* What reaches the worker's callback: the user's addresses on AUTH_OK (the
 * users file's third field, "" without one), nothing of them otherwise. */
static void
test_reply_fields(void **state)
{
	static const struct {
		const char *login, *secret;
		enum auth_result want;
		const char *reason, *identity, *addresses;
	} rows[] = {
	        {"alice@Example.ORG", PW, AUTH_OK, "ok", "alice@example.org",
	         "alice@example.org,a.b@example.org"},
	        {"carol", PW, AUTH_OK, "ok", "carol", ""},
	        {"alice@example.org", "wrong", AUTH_FAIL, "bad_password", "", ""},
	        {"mallory", PW, AUTH_FAIL, "unknown_user", "", ""},
	};
	struct harness *h = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int outstanding = 1;
		struct answer a = {.base = h->base, .outstanding = &outstanding};
		struct auth_request r = {.mech = "PLAIN",
		                         .login = rows[i].login,
		                         .secret = rows[i].secret,
		                         .secret_len = strlen(rows[i].secret),
		                         .session = "fields"};
		struct timeval limit = {20, 0};

		auth_client_verify(h->ac, &r, on_result, &a);
		a.returned = true;
		event_base_loopexit(h->base, &limit);
		event_base_dispatch(h->base);
		assert_true(a.called);
		assert_int_equal(a.result, rows[i].want);
		assert_string_equal(a.reason, rows[i].reason);
		assert_string_equal(a.identity, rows[i].identity);
		assert_string_equal(a.addresses, rows[i].addresses);
		/* No [protection] throttle here: no delay asked. */
		assert_int_equal(a.delay_ms, 0);
	}
}

/* [protection] defaults: past delay_after (3) distinct failures, the
 * throttle wants delay_ms (1 s) more. The auth process holds the RESULT that
 * long itself; the worker is asked to wait for nothing more. */
static void
test_failure_held(void **state)
{
	static const char *const pws[] = {"w1", "w2", "w3", "w4"};
	struct harness *h = *state;

	for (size_t i = 0; i < sizeof(pws) / sizeof(pws[0]); i++) {
		int outstanding = 1;
		struct answer a = {.base = h->base, .outstanding = &outstanding};
		struct auth_request r = {.mech = "PLAIN",
		                         .login = "carol",
		                         .secret = pws[i],
		                         .secret_len = strlen(pws[i]),
		                         .session = "held",
		                         .client = "192.0.2.77"};
		struct timeval limit = {20, 0};
		struct timespec t0, t1;
		long ms;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		auth_client_verify(h->ac, &r, on_result, &a);
		a.returned = true;
		event_base_loopexit(h->base, &limit);
		event_base_dispatch(h->base);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		print_message("  failure %zu after %ld ms\n", i + 1, ms);
		assert_true(a.called);
		assert_int_equal(a.result, AUTH_FAIL);
		assert_int_equal(a.delay_ms, 0);
		if (i == 3)
			assert_true(ms >= 990);
	}
	const char *l = strstr(read_log(h), "client=192.0.2.77 listener=- result=fail "
	                                    "reason=bad_password source=file");
	assert_non_null(l);
	assert_non_null(strstr(l, " user=\"carol\""));
	assert_non_null(strstr(read_log(h), "delay_ms=1000"));
}

/* One line per verification, user strings escaped, never the password. */
static void
test_log_line(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_OK, "ok", "alice@example.org"},
	        {"PLAIN", "evil\"\n x=1", "hunter2-secret", NULL, AUTH_FAIL, "unknown_user", NULL},
	};
	struct harness *h = *state;
	const char *log;

	run_rows(h, rows, 2);
	log = read_log(h);
	print_message("%s", log);
	/* The gateway's fields first, the client's (mechanism, login) last. */
	assert_non_null(strstr(log, "s=s00 auth client=192.0.2.1 listener=submission result=ok "
	                            "reason=ok source=file ms="));
	assert_non_null(strstr(log, " mech=PLAIN user=\"alice@example.org\"\n"));
	assert_non_null(strstr(log, "s=s01 auth client=192.0.2.1 listener=submission result=fail "
	                            "reason=unknown_user source=file ms="));
	assert_non_null(strstr(log, " mech=PLAIN user=\"evil\\\"\\x0a x\\x3d1\"\n"));
	assert_null(strstr(log, PW));
	assert_null(strstr(log, "hunter2"));
}

static bool
caps_none(void *arg)
{
	struct harness *h = arg;

	return auth_client_caps(h->ac) == 0;
}

static bool
log_reload_failed(void *arg)
{
	struct harness *h = arg;

	return strstr(read_log(h), "reload source=file failed, keeping the old data") != NULL;
}

static void
test_sighup_reload(void **state)
{
	static const struct row after[] = {
	        {"PLAIN", "alice@example.org", "n3w-pass", NULL, AUTH_OK, "ok",
	         "alice@example.org"},
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "carol", PW, NULL, AUTH_FAIL, "unknown_user", NULL},
	};
	struct harness *h = *state;

	ut_tmp_write(h->users, users_v2);
	kill(h->pid, SIGHUP);
	/* The new HELLO (no more cleartext) tells us the reload is done. */
	ut_loop_wait(h->base, caps_none, h);
	run_rows(h, after, 3);

	/* A broken file on reload: the old data stays. */
	unlink(h->users);
	assert_int_equal(mkdir(h->users, 0700), 0);
	kill(h->pid, SIGHUP);
	ut_loop_wait(h->base, log_reload_failed, h);
	rmdir(h->users);
	ut_tmp_write(h->users, users_v1);
	/* Back to v1 (with cleartext) on the next reload only. */
	run_rows(h, after, 3);
	kill(h->pid, SIGHUP);
	ut_loop_wait(h->base, caps_cram, h);
	assert_non_null(strstr(read_log(h), "reload source=file done"));
}

static void
read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = {fd, POLLIN, 0};
		assert_int_equal(poll(&p, 1, 10000), 1);
		ssize_t r = read(fd, (char *)buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* Returns true if the server closed fd (EOF) within 10 s. */
static bool
wait_eof(int fd)
{
	char c;
	struct pollfd p = {fd, POLLIN, 0};

	if (poll(&p, 1, 10000) != 1)
		return false;
	return read(fd, &c, 1) == 0 || errno == ECONNRESET;
}

static int
raw_connect(struct harness *h)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unsigned char hello[4 + 9];

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", h->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	/* HELLO: length 9, type 1, version 2, caps 1. */
	read_exact(fd, hello, sizeof(hello));
	assert_memory_equal(hello, "\0\0\0\x09\x01\0\0\0\x02\0\0\0\x01", sizeof(hello));
	return fd;
}

/* A worker sending garbage is dropped; the others go on. */
static void
test_malformed_worker(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"\xff\xff\xff\xff", 4},                  /* length over IPC_MAX_FRAME */
	        {"\0\0\0\0", 4},                          /* empty body */
	        {"\0\0\0\x02\x02\x01", 6},                /* VERIFY cut short */
	        {"\0\0\0\x09\x01\0\0\0\x01\0\0\0\0", 13}, /* HELLO from a worker */
	        {"\0\0\0\x01\x63", 5},                    /* unknown type */
	};
	static const struct row good[] = {
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_OK, "ok", "alice@example.org"},
	};
	struct harness *h = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = raw_connect(h);
		assert_int_equal(write(fd, bad[i].bytes, bad[i].len), (ssize_t)bad[i].len);
		assert_true(wait_eof(fd));
		close(fd);
		run_rows(h, good, 1);
	}
	assert_non_null(strstr(read_log(h), "dropping the connection"));
}

/* A worker that leaves while its check runs: the server logs the result,
 * drops it and goes on. */
static bool
other_ready(void *arg)
{
	struct harness *h = arg;

	return auth_client_caps(h->other) != 0;
}

static bool
log_has_gone(void *arg)
{
	struct harness *h = arg;
	const char *l = strstr(read_log(h), "s=gone auth ");

	return l != NULL && strstr(l, " mech=PLAIN user=\"carol\"") != NULL;
}

static void
test_worker_leaves(void **state)
{
	static const struct row good[] = {
	        {"LOGIN", "carol", PW, NULL, AUTH_OK, "ok", "carol"},
	};
	struct harness *h = *state;
	struct auth_request r = {.mech = "PLAIN",
	                         .login = "carol",
	                         .secret = PW,
	                         .secret_len = strlen(PW),
	                         .session = "gone"};
	int dummy = 1;
	struct answer a = {.base = h->base, .outstanding = &dummy};

	h->other = auth_client_new(h->base, h->sock, 10);
	ut_loop_wait(h->base, other_ready, h);
	auth_client_verify(h->other, &r, on_result, &a);
	/* One turn writes the VERIFY; then the worker is gone. */
	event_base_loop(h->base, EVLOOP_NONBLOCK);
	auth_client_free(h->other);
	h->other = NULL;
	assert_false(a.called);
	ut_loop_wait(h->base, log_has_gone, h);
	run_rows(h, good, 1);
}

static bool
client_down(void *arg)
{
	struct harness *h = arg;

	return auth_client_caps(h->ac) == 0;
}

/* SIGTERM exits 0; meanwhile the worker answers tempfail at once (never
 * inside verify()), and reconnects to the next auth process by itself. */
static void
test_restart(void **state)
{
	static const struct row down[] = {
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_TEMPFAIL, "auth_unavailable", NULL},
	};
	static const struct row up[] = {
	        {"PLAIN", "alice@example.org", PW, NULL, AUTH_OK, "ok", "alice@example.org"},
	};
	struct harness *h = *state;

	kill(h->pid, SIGTERM);
	assert_int_equal(wait_server(h), 0);
	assert_non_null(strstr(read_log(h), "exiting on signal"));
	ut_loop_wait(h->base, client_down, h);
	run_rows(h, down, 1);
	run_rows(h, down, 1);
	start_server(h);
	ut_loop_wait(h->base, caps_cram, h);
	run_rows(h, up, 1);
}

/* In flight when the auth process dies: tempfail, not a hang. */
static void
test_dies_mid_request(void **state)
{
	struct harness *h = *state;
	struct auth_request r = {
	        .mech = "PLAIN", .login = "carol", .secret = PW, .secret_len = strlen(PW)};
	int outstanding = 1;
	struct answer a = {.base = h->base, .outstanding = &outstanding};
	struct timeval limit = {10, 0};

	auth_client_verify(h->ac, &r, on_result, &a);
	a.returned = true;
	kill(h->pid, SIGKILL);
	assert_int_equal(wait_server(h), -1);
	event_base_loopexit(h->base, &limit);
	event_base_dispatch(h->base);
	assert_true(a.called);
	/* Either the answer made it out first, or the loss was noticed. */
	if (a.result != AUTH_OK) {
		assert_int_equal(a.result, AUTH_TEMPFAIL);
		assert_string_equal(a.reason, "auth_unavailable");
	}
	start_server(h); /* for teardown */
	ut_loop_wait(h->base, caps_cram, h);
}

static void
test_startup_failure(void **state)
{
	struct harness *h = *state;

	stop_server(h);
	h->cfg.users_file = "/nonexistent/users";
	start_server(h);
	assert_int_equal(wait_server(h), 1);
	assert_non_null(strstr(read_log(h), "/nonexistent/users"));
	h->cfg.users_file = h->users;
	start_server(h);
	ut_loop_wait(h->base, caps_cram, h);
}

static void
test_check(void **state)
{
	struct config cfg;
	char path[128];
	int saved = dup(2), devnull = open("/dev/null", O_WRONLY);

	memset(&cfg, 0, sizeof(cfg));
	snprintf(path, sizeof(path), "/tmp/authrelay-check-%d", (int)getpid());
	ut_tmp_write(path, users_v1);
	cfg.users_file = path;
	assert_int_equal(auth_server_check(&cfg), 0);
	unlink(path);
	dup2(devnull, 2);
	assert_int_equal(auth_server_check(&cfg), -1);
	dup2(saved, 2);
	close(saved);
	close(devnull);
	/* Nothing configured is not an error here. */
	cfg.users_file = NULL;
	assert_int_equal(auth_server_check(&cfg), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_log_line, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reply_fields, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_failure_held, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_sighup_reload, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_malformed_worker, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_worker_leaves, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_dies_mid_request, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_startup_failure, setup, teardown),
	        cmocka_unit_test(test_check),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init(false, LOG_LEVEL_ERR, "test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
