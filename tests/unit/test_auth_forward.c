/* SPDX-License-Identifier: ISC */
/*
 * test_auth_forward.c - the smtp-forward source (auth_forward.h) against
 * scripted upstreams (support/ut_smtpd.h): threads on loopback ports with
 * blocking sockets, each following a list of steps (wait for a line starting with a prefix, send
 * bytes). The real servers (Postfix, Dovecot) are in the integration tests;
 * these are the answers they do not give on demand: a 334 after an initial
 * response, a 538, a 4xx to AUTH, a greeting that never comes, our own
 * banner, a legacy "AUTH=" line.
 *
 * Covers: the source's own [smtp-forward] errors as "file:line: ..." (a
 * ca_file that does not load, the self-loop refusal, wildcard listeners
 * included), PLAIN with an initial
 * response carrying the credentials byte for byte, PLAIN without one for a
 * long password, LOGIN, failover after a 4xx, no failover after a timeout,
 * the loop, 504/538 taken as set-up errors, an unexpected 334 cancelled,
 * a NUL in the password, CRAM-MD5, the bounded queue, a pre-connected
 * session found dead at AUTH, and a trace that never holds the credentials.
 * (A script ends at the decisive reply: the source is freed right after it,
 * so its QUIT may never be written.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth_forward.h"
#include "lib/base64.h"
#include "lib/config.h"
#include "lib/log.h"
#include "master/settings_registry.h"
#include "support/ut_smtpd.h"
#include "support/ut_lines.h"
#include "support/ut_tmp.h"

/* Scripts list only the fields a step needs. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define LOGIN "j\xc3\xb6s\xc3\xa9 o'neil:\"q\"\\x@ex\xc3\xa4mple.test"
#define PASSWORD "p\xc3\xa4 ss:w\"o\\rd \xe2\x82\xac"

/* ------------------------------------------------------------ upstreams */

/* A listening upstream (support/ut_smtpd.h); with a script, a thread serves
 * one connection (two with script2). */
static struct ut_smtpd *
up_new2(const struct ut_smtpd_step *script, const struct ut_smtpd_step *script2)
{
	return ut_smtpd_new(script, script2, NULL, false);
}

static struct ut_smtpd *
up_new(const struct ut_smtpd_step *script)
{
	return up_new2(script, NULL);
}

/* Free u; the test fails if the client strayed from u's script. */
static void
up_free(struct ut_smtpd *u)
{
	const char *error = ut_smtpd_join(u);

	if (error != NULL)
		fail_msg("upstream %d: %s", ut_smtpd_port(u), error);
	ut_smtpd_free(u);
}

/* A free loopback port nobody listens on. */
static int
refused_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* ------------------------------------------------------------ the source */

struct t {
	char dir[64], path[96];
	struct config *cfg;
	struct event_base *base;
	struct auth_forward *src;
	char trace[32768];
	size_t trace_len;
	int done;
	enum auth_result result[8];
	char reason[8][64];
	bool returned; /* auth_forward_check() has returned */
	bool early;    /* a callback ran before it returned */
};

static void
trace_cb(void *arg, const char *line)
{
	struct t *t = arg;

	ut_lines_add(t->trace, sizeof(t->trace), &t->trace_len, line);
}

static void
done_cb(void *arg, enum auth_result result, enum auth_reason reason)
{
	struct t *t = arg;

	if (!t->returned)
		t->early = true;
	t->result[t->done] = result;
	/* The log word: what an admin greps for. */
	snprintf(t->reason[t->done], sizeof(t->reason[0]), "%s", auth_reason_name(reason));
	t->done++;
	event_base_loopbreak(t->base);
}

static void
write_config(struct t *t, const char *fwd, int listener_port, const char *listener_addr)
{
	FILE *f;

	ut_tmp_dir(t->dir, sizeof(t->dir), "test_auth_forward.");
	snprintf(t->path, sizeof(t->path), "%s/authrelay.conf", t->dir);
	f = fopen(t->path, "w");
	fprintf(f,
	        "[server]\n"
	        "hostname = mx.test.example\n"
	        "[relay]\n"
	        "local_domains = example.test\n"
	        "[listener mx]\n"
	        "address = %s:%d\n"
	        "role = inbound\n"
	        "tls = none\n"
	        "[smtp-forward]\n"
	        "%s",
	        listener_addr != NULL ? listener_addr : "127.0.0.1", listener_port, fwd);
	fclose(f);
}

/* Load a config whose [smtp-forward] body is fwd. */
static int
t_init(struct t *t, const char *fwd, const char **error_r)
{
	struct auth_env env;
	char *errors = NULL;

	memset(t, 0, sizeof(*t));
	write_config(t, fwd, refused_port(), NULL);
	t->cfg = config_load(t->path, &errors);
	if (t->cfg == NULL)
		fail_msg("config: %s", errors);
	t->base = event_base_new();
	env.cfg = t->cfg;
	env.base = t->base;
	env.pool = NULL;
	if (auth_forward_new(&env, &t->src, error_r) < 0)
		return -1;
	auth_forward_set_trace(t->src, trace_cb, t);
	return 0;
}

static void
t_done(struct t *t)
{
	auth_forward_free(t->src);
	event_base_free(t->base);
	config_free(t->cfg);
	ut_tmp_remove(t->dir);
}

static void
t_check(struct t *t, const char *login, const char *password, size_t pwlen, const char *mech)
{
	struct auth_request req;

	memset(&req, 0, sizeof(req));
	req.mech = mech;
	req.login = login;
	req.secret = password;
	req.secret_len = pwlen;
	req.challenge = "";
	req.session = "test";
	req.client = "";
	req.listener = "";
	t->returned = false;
	auth_forward_check(t->src, &req, done_cb, t);
	t->returned = true;
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("no answer within 15 s");
}

/* Run the loop until n answers came (never inside auth_forward_check()). */
static void
t_wait(struct t *t, int n)
{
	struct timeval tv = {15, 0};
	struct event *guard = evtimer_new(t->base, guard_cb, NULL);

	evtimer_add(guard, &tv);
	while (t->done < n)
		event_base_loop(t->base, EVLOOP_ONCE);
	event_free(guard);
	assert_false(t->early);
}

static void
assert_no_secrets(const struct t *t)
{
	char b64[256];

	assert_null(strstr(t->trace, PASSWORD));
	base64_encode(PASSWORD, strlen(PASSWORD), b64, sizeof(b64));
	assert_null(strstr(t->trace, b64));
	base64_encode(LOGIN, strlen(LOGIN), b64, sizeof(b64));
	assert_null(strstr(t->trace, b64));
}

/* ------------------------------------------------------------ config */

static void
expect_error(const char *fwd, int line_in_section, const char *text)
{
	struct t t;
	const char *err = NULL;
	char want[512];

	assert_int_equal(t_init(&t, fwd, &err), -1);
	/* [smtp-forward] is line 9 of write_config(). */
	snprintf(want, sizeof(want), "%s:%d: %s", t.path, 9 + line_in_section, text);
	if (strstr(err, want) == NULL)
		fail_msg("wanted \"%s\" in:\n%s", want, err);
	t_done(&t);
}

/* What the source finds past the table (test_forward_config.c has the
 * table's own errors, which config_load() reports). */
static void
test_config_errors(void **state)
{
	expect_error("upstreams = 127.0.0.1:1\nca_file = /nonexistent/ca.pem\n", 2,
	             "ca_file = /nonexistent/ca.pem: cannot load /nonexistent/ca.pem");
}

static void
test_config_ok(void **state)
{
	struct t t;
	const char *err = NULL;

	assert_int_equal(t_init(&t,
	                        "upstreams = 127.0.0.1:1, [::1]:2 localhost\n"
	                        "tls = none\nmechanisms = login plain\n",
	                        &err),
	                 0);
	t_done(&t);
}

static void
test_self_loop(void **state)
{
	struct t t;
	struct auth_env env;
	const char *err = NULL;
	char fwd[128], *errors = NULL;
	int port = refused_port();

	/* The same address and port as our listener. */
	snprintf(fwd, sizeof(fwd), "upstreams = 127.0.0.2:9 127.0.0.1:%d\n", port);
	memset(&t, 0, sizeof(t));
	write_config(&t, fwd, port, NULL);
	t.cfg = config_load(t.path, &errors);
	assert_non_null(t.cfg);
	t.base = event_base_new();
	env.cfg = t.cfg;
	env.base = t.base;
	env.pool = NULL;
	assert_int_equal(auth_forward_new(&env, &t.src, &err), -1);
	assert_non_null(strstr(err, ":10: [smtp-forward] upstreams: 127.0.0.1:"));
	assert_non_null(strstr(err, "our own listener \"mx\""));
	assert_null(strstr(err, "127.0.0.2:9 ("));
	t_done(&t);

	/* A wildcard listener is every local address. */
	snprintf(fwd, sizeof(fwd), "upstreams = 127.0.0.1:%d\n", port);
	memset(&t, 0, sizeof(t));
	write_config(&t, fwd, port, "0.0.0.0");
	t.cfg = config_load(t.path, &errors);
	assert_non_null(t.cfg);
	t.base = event_base_new();
	env.cfg = t.cfg;
	env.base = t.base;
	assert_int_equal(auth_forward_new(&env, &t.src, &err), -1);
	assert_non_null(strstr(err, "our own listener \"mx\""));
	t_done(&t);
}

/* ------------------------------------------------------------ verifications */

static char *
fwd_for(char *buf, size_t sz, const char *extra, struct ut_smtpd *a, struct ut_smtpd *b)
{
	if (b != NULL)
		snprintf(buf, sz, "upstreams = 127.0.0.1:%d 127.0.0.1:%d\ntls = none\n%s",
		         ut_smtpd_port(a), ut_smtpd_port(b), extra);
	else
		snprintf(buf, sz, "upstreams = 127.0.0.1:%d\ntls = none\n%s", ut_smtpd_port(a),
		         extra);
	return buf;
}

static void
test_plain_initial_response(void **state)
{
	static char auth_line[512];
	char raw[256], fwd[256];
	size_t n = 0;
	const struct ut_smtpd_step script[] = {
	        {NULL, "220 up ESMTP\r\n"},
	        {"EHLO mx.test.example", "250-up\r\n250-PIPELINING\r\n250 AUTH LOGIN PLAIN\r\n"},
	        {auth_line, "235 2.7.0 ok\r\n"},
	        {0},
	};
	struct ut_smtpd *u;
	struct t t;
	const char *err = NULL;

	/* RFC 4616: NUL login NUL password, base64, byte for byte. */
	raw[n++] = '\0';
	memcpy(raw + n, LOGIN, strlen(LOGIN));
	n += strlen(LOGIN);
	raw[n++] = '\0';
	memcpy(raw + n, PASSWORD, strlen(PASSWORD));
	n += strlen(PASSWORD);
	memcpy(auth_line, "AUTH PLAIN ", 11);
	base64_encode(raw, n, auth_line + 11, sizeof(auth_line) - 11);
	u = up_new(script);
	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
	t_check(&t, LOGIN, PASSWORD, strlen(PASSWORD), "PLAIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_OK);
	assert_string_equal(t.reason[0], "ok");
	assert_no_secrets(&t);
	assert_non_null(strstr(t.trace, "C: AUTH PLAIN ********"));
	assert_non_null(strstr(t.trace, "S: 235 2.7.0 ok"));
	t_done(&t);
	up_free(u);
}

static void
test_plain_long_password(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 up ESMTP\r\n"},
	        {"EHLO", "250-up\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN", "334 \r\n"},
	        {"AHgA", "535 5.7.8 no\r\n"}, /* base64 of NUL "x" NUL ... */
	        {0},
	};
	char pw[1025], fwd[256];
	struct ut_smtpd *u = up_new(script);
	struct t t;
	const char *err = NULL;

	memset(pw, 'p', 1024);
	pw[1024] = '\0';
	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
	t_check(&t, "x", pw, 1024, "PLAIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_FAIL);
	assert_string_equal(t.reason[0], "upstream_rejected");
	t_done(&t);
	/* The AUTH line went without the response, which came alone. */
	assert_non_null(strstr(ut_smtpd_got(u), "AUTH PLAIN\n"));
	up_free(u);
}

static void
test_login_legacy_auth_line(void **state)
{
	static char user_line[256], pass_line[256];
	const struct ut_smtpd_step script[] = {
	        {NULL, "220-up ESMTP\r\n220 second greeting line\r\n"},
	        {"EHLO", "250-up\r\n250-AUTH=LOGIN\r\n250 SIZE 100\r\n"},
	        {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
	        {user_line, "334 UGFzc3dvcmQ6\r\n"},
	        {pass_line, "535 5.7.8 Authentication credentials invalid\r\n"},
	        {0},
	};
	char fwd[256];
	struct ut_smtpd *u;
	struct t t;
	const char *err = NULL;

	base64_encode(LOGIN, strlen(LOGIN), user_line, sizeof(user_line));
	base64_encode(PASSWORD, strlen(PASSWORD), pass_line, sizeof(pass_line));
	u = up_new(script);
	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
	t_check(&t, LOGIN, PASSWORD, strlen(PASSWORD), "LOGIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_FAIL);
	assert_string_equal(t.reason[0], "upstream_rejected");
	assert_no_secrets(&t);
	assert_non_null(strstr(t.trace, "C: ******** (login, base64)"));
	assert_non_null(strstr(t.trace, "C: ******** (password, base64)"));
	t_done(&t);
	up_free(u);
}

/* A 454 to AUTH: the next upstream is asked (and decides). */
static void
test_failover_after_4xx(void **state)
{
	static const struct ut_smtpd_step first[] = {
	        {NULL, "220 up1\r\n"},
	        {"EHLO", "250-up1\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN", "454 4.7.0 Temporary authentication failure\r\n"},
	        {0},
	};
	static const struct ut_smtpd_step second[] = {
	        {NULL, "220 up2\r\n"},
	        {"EHLO", "250-up2\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN", "235 2.7.0 ok\r\n"},
	        {0},
	};
	char fwd[256];
	struct ut_smtpd *a = up_new(first), *b = up_new(second);
	struct t t;
	const char *err = NULL;

	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", a, b), &err), 0);
	t_check(&t, "alice", "secret", 6, "PLAIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_OK);
	assert_non_null(strstr(t.trace, "failed: AUTH answered 454"));
	t_done(&t);
	up_free(a);
	up_free(b);
}

/* A timeout ends the verification: no failover, 454. */
static void
test_timeout_no_failover(void **state)
{
	static const struct ut_smtpd_step silent[] = {
	        {NULL, NULL, UT_SMTPD_HANG},
	        {0},
	};
	char fwd[256];
	struct ut_smtpd *a = up_new(silent), *b = up_new(NULL);
	struct t t;
	const char *err = NULL;

	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "timeout = 1\n", a, b), &err), 0);
	t_check(&t, "alice", "secret", 6, "PLAIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_TEMPFAIL);
	assert_string_equal(t.reason[0], "upstream_timeout");
	assert_false(ut_smtpd_contacted(b));
	t_done(&t);
	up_free(a);
	up_free(b);
}

struct reply_case {
	const char *name;
	const char *greeting;
	const char *auth_reply;
	enum auth_result result;
	const char *reason;
};

static void
test_answers(void **state)
{
	static const struct reply_case cases[] = {
	        {"our own banner", "220 mx.test.example ESMTP authrelay\r\n", NULL, AUTH_TEMPFAIL,
	         "upstream_loop"},
	        {"421 greeting", "421 4.3.2 shutting down\r\n", NULL, AUTH_TEMPFAIL,
	         "upstream_unavailable"},
	        {"538 encryption required", "220 up\r\n", "538 5.7.11 Encryption required\r\n",
	         AUTH_TEMPFAIL, "upstream_no_auth"},
	        {"504 unknown mechanism", "220 up\r\n", "504 5.5.4 Unrecognized\r\n", AUTH_TEMPFAIL,
	         "upstream_no_auth"},
	        {"554 rejected", "220 up\r\n", "554 5.7.1 Rejected\r\n", AUTH_FAIL,
	         "upstream_rejected"},
	        {"334 after the initial response", "220 up\r\n", "334 \r\n", AUTH_TEMPFAIL,
	         "upstream_protocol"},
	        {"a stray 250", "220 up\r\n", "250 what\r\n", AUTH_TEMPFAIL, "upstream_protocol"},
	        {"malformed", "220 up\r\n", "23 5 x\r\n", AUTH_TEMPFAIL, "upstream_protocol"},
	        {"closed", "220 up\r\n", "", AUTH_TEMPFAIL, "upstream_unavailable"},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		const struct reply_case *c = &cases[i];
		struct ut_smtpd_step script[] = {
		        {NULL, c->greeting},
		        {"EHLO", "250-up\r\n250 AUTH PLAIN LOGIN\r\n"},
		        {"AUTH PLAIN", c->auth_reply,
		         c->auth_reply != NULL && c->auth_reply[0] == '\0' ? UT_SMTPD_CLOSE
		                                                           : UT_SMTPD_NONE},
		        {"*", "501 5.0.0 cancelled\r\n"},
		        {0},
		};
		char fwd[256];
		struct ut_smtpd *u;
		struct t t;
		const char *err = NULL;

		print_message("case: %s\n", c->name);
		if (c->auth_reply == NULL) {
			script[1].expect = NULL;
			script[1].send = NULL;
			script[1].act = UT_SMTPD_HANG;
		} else if (strcmp(c->name, "334 after the initial response") != 0) {
			script[3].expect = NULL;
			script[3].send = NULL;
		}
		u = up_new(script);
		assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
		t_check(&t, "alice", "secret", 6, "PLAIN");
		t_wait(&t, 1);
		assert_int_equal(t.result[0], c->result);
		assert_string_equal(t.reason[0], c->reason);
		t_done(&t);
		/* Scripts end early in several cases: what the upstream saw
		 * after the answer does not matter here. */
		ut_smtpd_free(u);
	}
}

static void
test_nul_in_password(void **state)
{
	static const struct ut_smtpd_step plain_only[] = {
	        {NULL, "220 up\r\n"},
	        {"EHLO", "250-up\r\n250 AUTH PLAIN\r\n"},
	        {0},
	};
	static const struct ut_smtpd_step with_login[] = {
	        {NULL, "220 up\r\n"},
	        {"EHLO", "250-up\r\n250 AUTH PLAIN LOGIN\r\n"},
	        {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
	        {"YWxpY2U=", "334 UGFzc3dvcmQ6\r\n"},
	        {"YQBi", "235 2.7.0 ok\r\n"}, /* "a\0b" */
	        {0},
	};
	char fwd[256];
	struct ut_smtpd *u = up_new(plain_only);
	struct t t;
	const char *err = NULL;

	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
	t_check(&t, "alice", "a\0b", 3, "LOGIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_FAIL);
	assert_string_equal(t.reason[0], "nul_in_password");
	t_done(&t);
	up_free(u);

	u = up_new(with_login);
	assert_int_equal(t_init(&t, fwd_for(fwd, sizeof(fwd), "", u, NULL), &err), 0);
	t_check(&t, "alice", "a\0b", 3, "LOGIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_OK);
	t_done(&t);
	up_free(u);
}

static void
test_cram_md5_and_busy(void **state)
{
	static const struct ut_smtpd_step silent[] = {
	        {NULL, NULL, UT_SMTPD_HANG},
	        {0},
	};
	char fwd[256];
	struct ut_smtpd *u = up_new(silent);
	struct t t;
	const char *err = NULL;

	assert_int_equal(t_init(&t,
	                        fwd_for(fwd, sizeof(fwd),
	                                "timeout = 1\nmax_sessions = 1\nqueue_size = 1\n", u, NULL),
	                        &err),
	                 0);
	t_check(&t, "alice", "digest", 6, "CRAM-MD5");
	t_check(&t, "alice", "secret", 6, "PLAIN"); /* takes the one session */
	t_check(&t, "bob", "secret", 6, "PLAIN");   /* waits */
	t_check(&t, "carol", "secret", 6, "PLAIN"); /* queue full */
	assert_int_equal(t.done, 0);                /* never inside check() */
	t_wait(&t, 2);
	assert_int_equal(t.result[0], AUTH_FAIL);
	assert_string_equal(t.reason[0], "mech_unavailable");
	assert_int_equal(t.result[1], AUTH_TEMPFAIL);
	assert_string_equal(t.reason[1], "busy");
	t_wait(&t, 3);
	assert_string_equal(t.reason[2], "upstream_timeout");
	/* The one waiting now gets the session (and the same silence). */
	t_done(&t);
	up_free(u);
}

/* Every upstream failed recently: they are all tried anyway. */
static void
test_all_down_tried(void **state)
{
	char fwd[256];
	struct t t;
	const char *err = NULL;

	snprintf(fwd, sizeof(fwd), "upstreams = 127.0.0.1:%d\ntls = none\n", refused_port());
	assert_int_equal(t_init(&t, fwd, &err), 0);
	t_check(&t, "alice", "secret", 6, "PLAIN");
	t_wait(&t, 1);
	assert_string_equal(t.reason[0], "upstream_unavailable");
	t_check(&t, "alice", "secret", 6, "PLAIN");
	t_wait(&t, 2);
	assert_string_equal(t.reason[1], "upstream_unavailable");
	assert_non_null(strstr(t.trace, "skipped, down for"));
	assert_non_null(strstr(t.trace, "every upstream failed recently"));
	t_done(&t);
}

/* A pre-connected session whose connection is gone when AUTH goes (the
 * server's idle timeout): no failure of the upstream, the login goes again
 * on a fresh connection to the same one. */
static void
test_preconnect_stale(void **state)
{
	static const struct ut_smtpd_step dropped[] = {
	        {NULL, "220 up\r\n"},
	        {"EHLO", "250-up\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN", NULL, UT_SMTPD_CLOSE},
	        {0},
	};
	static const struct ut_smtpd_step fresh[] = {
	        {NULL, "220 up\r\n"},
	        {"EHLO", "250-up\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN", "235 2.7.0 ok\r\n"},
	        {0},
	};
	struct ut_smtpd *u = up_new2(dropped, fresh);
	struct auth_env env;
	struct t t;
	char fwd[256], *errors = NULL;
	const char *err = NULL, *p;
	void *src = NULL;
	struct timeval tv = {15, 0};
	struct event *guard;

	/* One session at most: no second pre-connect while the login runs,
	 * so the upstream's second connection is the fresh one. */
	memset(&t, 0, sizeof(t));
	write_config(&t, fwd_for(fwd, sizeof(fwd), "preconnect = 1\nmax_sessions = 1\n", u, NULL),
	             refused_port(), NULL);
	t.cfg = config_load(t.path, &errors);
	assert_non_null(t.cfg);
	t.base = event_base_new();
	env.cfg = t.cfg;
	env.base = t.base;
	env.pool = NULL;
	/* The source's own start: pre-connecting begins with the loop. */
	assert_int_equal(auth_source_forward.init(&env, &src, &err), 0);
	t.src = src;
	auth_forward_set_trace(t.src, trace_cb, &t);
	guard = evtimer_new(t.base, guard_cb, NULL);
	evtimer_add(guard, &tv);
	while (strstr(t.trace, "S: 250 AUTH PLAIN") == NULL)
		event_base_loop(t.base, EVLOOP_ONCE);
	event_free(guard);
	assert_non_null(strstr(t.trace, "connecting, tls=none [pre-connect]"));

	t_check(&t, "alice", "secret", 6, "PLAIN");
	t_wait(&t, 1);
	assert_int_equal(t.result[0], AUTH_OK);
	assert_string_equal(t.reason[0], "ok");
	p = strstr(t.trace, "using a ready connection");
	assert_non_null(p);
	/* Then a fresh connection to the same upstream, not a pre-connect. */
	p = strstr(p, "connecting, tls=none\n");
	assert_non_null(p);
	assert_non_null(strstr(p, "S: 235 2.7.0 ok"));
	assert_null(strstr(t.trace, "failed"));
	t_done(&t);
	up_free(u);
}

static int
setup(void **state)
{
	log_init(false, getenv("TEST_DEBUG") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERR, "test");
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_config_errors),
	        cmocka_unit_test(test_config_ok),
	        cmocka_unit_test(test_self_loop),
	        cmocka_unit_test(test_plain_initial_response),
	        cmocka_unit_test(test_plain_long_password),
	        cmocka_unit_test(test_login_legacy_auth_line),
	        cmocka_unit_test(test_failover_after_4xx),
	        cmocka_unit_test(test_timeout_no_failover),
	        cmocka_unit_test(test_answers),
	        cmocka_unit_test(test_nul_in_password),
	        cmocka_unit_test(test_cram_md5_and_busy),
	        cmocka_unit_test(test_all_down_tried),
	        cmocka_unit_test(test_preconnect_stale),
	};
	settings_registry_install(); /* every section kind for config_load() */
	return cmocka_run_group_tests(tests, setup, NULL);
}
