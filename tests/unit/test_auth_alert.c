/* SPDX-License-Identifier: ISC */
/*
 * test_auth_alert.c - alerts of the auth process: login failures over a
 * threshold globally, per login and per client (the 4th of "3/60s" fires,
 * once per cooldown per subject, again after it), the mail (headers, top
 * logins, top addresses, CRLF, escaping of hostile logins), the log line of
 * every alert, multi_ip, send_limit, directory_lockout, an unreachable
 * source (only after unreachable_after, once, and its recovery), alerts
 * without recipients (logged only), the hook's text, and a channel that
 * refuses (mailed=no).
 *
 * Mail and hook text leave as MAIL and HOOK messages (alert_proto.h), which
 * the test decodes as the queue process would; running the hook is
 * test_alert_hook.c's. Time is driven by the test (ms).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "auth/auth_alert.h"
#include "authwire/alert_proto.h"
#include "lib/config.h"
#include "lib/ipc.h"
#include "lib/keyhash.h"
#include "lib/log.h"
#include "auth/protection_config.h"

struct mails {
	unsigned n;
	char last[16384];
	char to[256];
	char kind[64];
	/* HOOK messages */
	unsigned n_hooks;
	char hook_text[16384];
	char hook_kind[64];
	bool refuse; /* the channel drops everything */
};

static struct config cfg;
static struct keyhash *kh;
static char *to_list[] = {"admin@example.test", "sec@example.test", NULL};
static char logpath[64];
static int saved_stderr = -1;

/* The auth_alert_send_cb: decode as the queue process would. */
static bool
on_send(struct ipc_msg *msg, void *arg)
{
	struct mails *m = arg;
	struct alert_mail_msg mail;
	struct alert_hook_msg hook;

	if (ipc_msg_type(msg) == ALERT_MSG_MAIL) {
		assert_int_equal(alert_proto_parse_mail(msg, &mail), 0);
		m->n++;
		snprintf(m->last, sizeof(m->last), "%.*s", (int)mail.message_len, mail.message);
		snprintf(m->to, sizeof(m->to), "%s", mail.to);
		snprintf(m->kind, sizeof(m->kind), "%s", mail.kind);
	} else {
		assert_int_equal(ipc_msg_type(msg), ALERT_MSG_HOOK);
		assert_int_equal(alert_proto_parse_hook(msg, &hook), 0);
		m->n_hooks++;
		snprintf(m->hook_text, sizeof(m->hook_text), "%.*s", (int)hook.text_len, hook.text);
		snprintf(m->hook_kind, sizeof(m->hook_kind), "%s", hook.kind);
	}
	ipc_msg_free(msg);
	return !m->refuse;
}

static void
base_config(struct protection_config *pc)
{
	memset(pc, 0, sizeof(*pc));
	pc->alerts.to = to_list;
	pc->alerts.n_to = 2;
	pc->alerts.from = "authrelay@mx.example.test";
	pc->alerts.login_failures_global = (struct alert_threshold){0, 60};
	pc->alerts.login_failures_per_login = (struct alert_threshold){3, 60};
	pc->alerts.login_failures_per_client = (struct alert_threshold){0, 60};
	pc->alerts.cooldown = 100;
	pc->alerts.multi_ip_window = 60;
	pc->alerts.unreachable_after = 30;
}

/* The log goes to a file the tests read. */
static int
setup(void **state)
{
	int fd;

	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = "mx.example.test";
	kh = keyhash_new();
	snprintf(logpath, sizeof(logpath), "/tmp/authrelay-alert-test-%d.log", (int)getpid());
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	log_init(false, LOG_LEVEL_INFO, "test");
	return 0;
}

static int
teardown(void **state)
{
	dup2(saved_stderr, 2);
	close(saved_stderr);
	unlink(logpath);
	keyhash_free(kh);
	return 0;
}

static char *
read_log(void)
{
	static char buf[65536];
	int fd = open(logpath, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);

	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void
test_per_login(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_failure(a, "alice", "192.0.2.1", 1000);
	auth_alert_failure(a, "alice", "192.0.2.1", 2000);
	auth_alert_failure(a, "bob", "192.0.2.9", 2500);
	auth_alert_failure(a, "alice", "192.0.2.2", 3000);
	assert_int_equal(m.n, 0);
	auth_alert_failure(a, "alice", "192.0.2.1", 4000); /* the 4th: more than 3 */
	assert_int_equal(m.n, 1);
	assert_string_equal(m.to, "admin@example.test,sec@example.test");
	assert_string_equal(m.kind, "login_failures");
	assert_int_equal(m.n_hooks, 0); /* no hook configured */
	assert_non_null(strstr(m.last, "From: authrelay@mx.example.test\r\n"));
	assert_non_null(strstr(m.last, "To: admin@example.test,\r\n sec@example.test\r\n"));
	assert_non_null(strstr(m.last, "Subject: [authrelay] SMTP authentication login failures: 4 "
	                               "for login alice in 60 s\r\n"));
	assert_non_null(strstr(m.last, "Auto-Submitted: auto-generated\r\n"));
	assert_non_null(strstr(m.last, "X-Authrelay-Alert: login_failures\r\n"));
	assert_non_null(strstr(m.last, "\r\nMessage-ID: <alert."));
	assert_non_null(strstr(m.last, "\r\n\r\nAlert: "));
	assert_non_null(strstr(m.last, "Top logins:\r\n       4  alice\r\n"));
	assert_non_null(strstr(m.last, "Top client addresses:\r\n       3  192.0.2.1\r\n"
	                               "       1  192.0.2.2\r\n"));
	assert_null(strstr(m.last, "bob"));
	assert_null(strstr(m.last, "\n\n")); /* every line end is CRLF */
	/* Within the cooldown: no second alert for alice. */
	for (uint64_t t = 5000; t < 60000; t += 5000)
		auth_alert_failure(a, "alice", "192.0.2.1", t);
	assert_int_equal(m.n, 1);
	/* bob is his own subject. */
	for (uint64_t t = 60000; t < 64000; t += 1000)
		auth_alert_failure(a, "bob", "192.0.2.9", t);
	assert_int_equal(m.n, 2);
	assert_non_null(strstr(m.last, "for login bob"));
	/* After the cooldown, alice again. */
	for (uint64_t t = 110000; t < 114000; t += 1000)
		auth_alert_failure(a, "alice", "192.0.2.1", t);
	assert_int_equal(m.n, 3);
	assert_non_null(strstr(read_log(), "alert kind=login_failures mailed=yes hook=no "
	                                   "scope=login failures=4 window=60 user=\"alice\""));
	auth_alert_free(a);
}

static void
test_global_and_client(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;
	char login[32];

	base_config(&pc);
	pc.alerts.login_failures_per_login.count = 0;
	pc.alerts.login_failures_global = (struct alert_threshold){5, 60};
	pc.alerts.login_failures_per_client = (struct alert_threshold){2, 60};
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	/* Spread over clients: only the global one fires, at the 6th. */
	for (int i = 0; i < 6; i++) {
		snprintf(login, sizeof(login), "user%d", i);
		auth_alert_failure(a, login, i % 2 ? "198.51.100.1" : "198.51.100.2",
		                   (uint64_t)i * 100);
	}
	/* Client .1 and .2 each had 3 failures: more than 2, both alerted. */
	assert_int_equal(m.n, 3);
	assert_non_null(strstr(read_log(), "alert kind=login_failures mailed=yes hook=no "
	                                   "scope=global failures=6"));
	assert_non_null(strstr(read_log(), "scope=client client=198.51.100.2 failures=3"));
	assert_non_null(strstr(read_log(), "scope=client client=198.51.100.1 failures=3"));
	auth_alert_free(a);
}

/* A hostile login reaches the mail and the log escaped. */
static void
test_escaping(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;
	const char *evil = "x\r\nBcc: victim@example.test\"\x01";

	base_config(&pc);
	pc.alerts.login_failures_per_login.count = 1;
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_failure(a, evil, "192.0.2.1", 1);
	auth_alert_failure(a, evil, "192.0.2.1", 2);
	assert_int_equal(m.n, 1);
	assert_null(strstr(m.last, "\r\nBcc:"));
	assert_non_null(strstr(m.last, "x\\x0d\\x0aBcc: victim@example.test\\\"\\x01"));
	assert_null(strstr(read_log(), "\nBcc"));
	auth_alert_free(a);
}

static void
test_multi_ip(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	pc.alerts.multi_ip_threshold = 2;
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_success(a, "carol", "192.0.2.1", 0);
	auth_alert_success(a, "carol", "192.0.2.1", 1000);
	auth_alert_success(a, "carol", "192.0.2.2", 2000);
	auth_alert_success(a, "dave", "192.0.2.3", 2000);
	assert_int_equal(m.n, 0);
	auth_alert_success(a, "carol", "203.0.113.9", 3000);
	assert_int_equal(m.n, 1);
	assert_non_null(strstr(m.last, "login carol used from 3 client addresses in 60 s"));
	assert_non_null(strstr(m.last, "  203.0.113.9\r\n"));
	assert_non_null(strstr(read_log(),
	                       "alert kind=multi_ip mailed=yes hook=no clients=3 window=60 "
	                       "user=\"carol\""));
	/* Addresses seen outside the window do not count. */
	auth_alert_success(a, "erin", "192.0.2.1", 0);
	auth_alert_success(a, "erin", "192.0.2.2", 30000);
	auth_alert_success(a, "erin", "192.0.2.3", 61000);
	assert_int_equal(m.n, 1);
	auth_alert_free(a);
}

/* A reload raises multi_ip_threshold: the per-login tables sized for the
 * old one go (no entry may hold more addresses than it was made for), and
 * counting goes on with the new threshold; other counts stay. */
static void
test_reconfigure(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	pc.alerts.multi_ip_threshold = 1;
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_success(a, "carol", "192.0.2.1", 0);
	pc.alerts.multi_ip_threshold = 3;
	auth_alert_reconfigure(a, &cfg, &pc);
	for (int i = 2; i <= 4; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "192.0.2.%d", i);
		auth_alert_success(a, "carol", ip, (uint64_t)i * 1000);
	}
	assert_int_equal(m.n, 0); /* 3 addresses since the reload: not more than 3 */
	auth_alert_success(a, "carol", "192.0.2.5", 5000);
	assert_int_equal(m.n, 1);
	assert_non_null(strstr(m.last, "login carol used from 4 client addresses in 60 s"));
	auth_alert_free(a);
}

static void
test_send_limit(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_send_limit(a, "alice", "192.0.2.1", "messages_per_hour", 500, 500, 0);
	auth_alert_send_limit(a, "alice", "192.0.2.1", "messages_per_hour", 500, 500, 1000);
	assert_int_equal(m.n, 1);
	assert_non_null(strstr(m.last, "Subject: [authrelay] sending limit hit by alice "
	                               "(messages_per_hour 500)"));
	assert_non_null(strstr(read_log(), "client=192.0.2.1 limit=messages_per_hour count=500 "
	                                   "max=500 user=\"alice\""));
	auth_alert_free(a);
}

/* AD's 775: once per cooldown per login, whatever the client; the mail
 * names the shield's setting. */
static void
test_directory_lockout(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	pc.lockout_login_failures = 10;
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_directory_lockout(a, "lou", "192.0.2.7", "ldap", 0);
	auth_alert_directory_lockout(a, "lou", "192.0.2.8", "ldap", 1000);
	assert_int_equal(m.n, 1);
	assert_non_null(strstr(m.last, "Subject: [authrelay] lou locked out by the directory"));
	assert_non_null(strstr(m.last, "X-Authrelay-Alert: directory_lockout"));
	assert_non_null(strstr(m.last, "lockout_login_failures = 10"));
	assert_non_null(strstr(m.last, "came from 192.0.2.7."));
	assert_non_null(strstr(read_log(), "alert kind=directory_lockout mailed=yes hook=no "
	                                   "client=192.0.2.7 source=ldap user=\"lou\""));
	auth_alert_directory_lockout(a, "ann", "192.0.2.7", "ldap", 2000);
	assert_int_equal(m.n, 2);
	auth_alert_directory_lockout(a, "lou", "192.0.2.7", "ldap", 101000); /* after cooldown */
	assert_int_equal(m.n, 3);
	auth_alert_free(a);
}

static void
test_unreachable(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;

	base_config(&pc);
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_source(a, "ldap", false, 1000);
	auth_alert_tick(a, 30999);
	assert_int_equal(m.n, 0);
	auth_alert_source(a, "ldap", false, 20000); /* still down: since 1000 */
	auth_alert_tick(a, 31000);
	assert_int_equal(m.n, 1);
	assert_non_null(strstr(m.last, "auth source ldap unreachable for 30 s"));
	auth_alert_tick(a, 40000);
	assert_int_equal(m.n, 1);
	auth_alert_source(a, "ldap", true, 41000);
	assert_non_null(strstr(read_log(), "alert_resolved kind=source_unreachable source=ldap "
	                                   "down_for=40"));
	/* A short outage is no alert. */
	auth_alert_source(a, "file", false, 50000);
	auth_alert_source(a, "file", true, 51000);
	auth_alert_tick(a, 90000);
	assert_int_equal(m.n, 1);
	auth_alert_free(a);
}

/* No recipients: logged only. With a hook, the alert's text goes out as a
 * HOOK message (run by the queue process, test_alert_hook.c) with its kind:
 * this process starts no shell, whatever the hook says. */
static void
test_log_only_and_hook(void **state)
{
	struct protection_config pc;
	struct mails m = {0};
	struct auth_alert *a;
	char out[64], cmd[400];
	struct stat st;

	snprintf(out, sizeof(out), "/tmp/authrelay-hook-%d.txt", (int)getpid());
	snprintf(cmd, sizeof(cmd), "cat > %s", out);
	base_config(&pc);
	pc.alerts.to = NULL;
	pc.alerts.n_to = 0;
	pc.alerts.hook = cmd;
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_send_limit(a, "bob", "192.0.2.1", "recipients_per_hour", 2000, 2000, 0);
	assert_int_equal(m.n, 0);
	assert_non_null(strstr(read_log(), "alert kind=send_limit "));
	assert_non_null(strstr(read_log(), " user=\"bob\""));
	assert_non_null(strstr(read_log(), "mailed=no hook=yes"));
	assert_int_equal(m.n_hooks, 1);
	assert_string_equal(m.hook_kind, "send_limit");
	assert_non_null(strstr(m.hook_text, "kind=send_limit client=192.0.2.1 "
	                                    "limit=recipients_per_hour count=2000 max=2000 "
	                                    "user=\"bob\"\n"));
	assert_non_null(strstr(m.hook_text, "host=mx.example.test\n"));
	assert_non_null(strstr(m.hook_text, "sending limit hit by bob"));
	auth_alert_tick(a, 1000);
	/* Nothing ran here. */
	assert_int_not_equal(stat(out, &st), 0);
	auth_alert_free(a);
}

/* The channel refuses (the queue process does not read and the backlog is
 * full): the log line says so. Without a send callback, alerts are only
 * logged. */
static void
test_channel_refuses(void **state)
{
	struct protection_config pc;
	struct mails m = {.refuse = true};
	struct auth_alert *a;

	base_config(&pc);
	pc.alerts.hook = "true";
	a = auth_alert_new(&cfg, &pc, kh, on_send, &m);
	auth_alert_send_limit(a, "carl", "192.0.2.1", "messages_per_hour", 10, 10, 0);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.n_hooks, 1);
	assert_non_null(strstr(read_log(), "alert kind=send_limit mailed=no hook=no "
	                                   "client=192.0.2.1 limit=messages_per_hour count=10 "
	                                   "max=10 user=\"carl\""));
	auth_alert_free(a);

	a = auth_alert_new(&cfg, &pc, kh, NULL, NULL);
	auth_alert_send_limit(a, "dora", "192.0.2.1", "messages_per_hour", 10, 10, 0);
	assert_non_null(strstr(read_log(), "alert kind=send_limit mailed=no hook=no "
	                                   "client=192.0.2.1 limit=messages_per_hour count=10 "
	                                   "max=10 user=\"dora\""));
	auth_alert_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_per_login),         cmocka_unit_test(test_global_and_client),
	        cmocka_unit_test(test_escaping),          cmocka_unit_test(test_multi_ip),
	        cmocka_unit_test(test_send_limit),        cmocka_unit_test(test_unreachable),
	        cmocka_unit_test(test_log_only_and_hook), cmocka_unit_test(test_channel_refuses),
	        cmocka_unit_test(test_directory_lockout), cmocka_unit_test(test_reconfigure),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
