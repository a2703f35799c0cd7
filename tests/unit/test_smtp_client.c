/* SPDX-License-Identifier: ISC */
/*
 * test_smtp_client.c - the asynchronous SMTP client against a scripted server.
 *
 * The server (support/ut_smtpd.h) runs in a thread on a loopback port with
 * blocking sockets (and blocking OpenSSL for STARTTLS and implicit TLS, with
 * a certificate for mx.test.example from support/ut_tls.h); the client runs
 * on a libevent loop in the test's thread. A script is a list of steps: wait for a line starting
 * with a prefix, then send bytes, then maybe start TLS, read a message, hang or close. Scripted
 * stubs are what shows the behaviours no real server shows on demand: malformed and oversized
 * replies, a reply that never comes, data injected after STARTTLS's 220.
 *
 * Covers: greeting and EHLO parsing (multi-line, legacy AUTH=, enhanced
 * codes), odd but valid replies, every malformed reply, each timeout,
 * refused and closed connections, pipelining with and without PIPELINING,
 * STARTTLS (verified, wrong name, refused, injection), implicit TLS, message
 * transfer with dot-stuffing and line-end repair (small and 2 MB), secret
 * and invalid command lines, a reply nobody asked for, and freeing the
 * client inside its own callback.
 *
 * The handshake (smtp_client_handshake): every way it ends (greeting
 * refused or judged ours, EHLO refused with and without the HELO fallback,
 * HELO where TLS is required, STARTTLS not offered, refused, or failing,
 * each timeout), the TLS policies (none, may, starttls, implicit), the
 * extensions of the EHLO after STARTTLS only, the trace (secrets shown as
 * the caller says), and the one TLS context builder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "smtp/smtp_client.h"
#include "support/ut_smtpd.h"
#include "support/ut_tls.h"
#include "support/ut_lines.h"

/* Scripts list only the fields a step needs. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define CERT_NAME "mx.test.example"

/* The server's certificate and key; the client trusts the certificate. */
static EVP_PKEY *g_key;
static X509 *g_cert;
static SSL_CTX *g_server_ctx;
static SSL_CTX *g_client_ctx;

/* ------------------------------------------------------------ the client side */

#define MAX_EVENTS 32

struct rec {
	enum smtp_client_status status;
	int code;
	char enhanced[16];
	char text[2048];
	size_t n_lines;
};

struct t {
	struct event_base *base;
	struct smtp_client *c;
	struct ut_smtpd *srv;
	struct rec ev[MAX_EVENTS];
	int n_ev;
	int want; /* stop the loop after this many callbacks */
	struct event *guard;
	/* Behaviour of the callbacks. */
	bool free_in_first;
	bool ehlo_after_greeting;
	bool quit_after_greeting;
	int msg_fd;
	/* The handshake's result (hs_cb), and the trace (trace_cb). */
	struct smtp_client_hs_result hs;
	int hs_code;
	char hs_text[256];
	bool hs_free; /* free the client inside the handshake's callback */
	char trace[8192];
	size_t trace_len;
};

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct t *t = arg;
	fail_msg("test did not finish within its deadline (%d callbacks)", t->n_ev);
}

static void
record_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *r,
          void *arg)
{
	struct t *t = arg;
	struct rec *e;

	assert_true(t->n_ev < MAX_EVENTS);
	e = &t->ev[t->n_ev++];
	e->status = status;
	if (r != NULL) {
		assert_int_equal(status, SMTP_CLIENT_OK);
		e->code = r->code;
		memcpy(e->enhanced, r->enhanced, sizeof(e->enhanced));
		snprintf(e->text, sizeof(e->text), "%s", r->text);
		e->n_lines = r->n_lines;
	} else {
		assert_int_not_equal(status, SMTP_CLIENT_OK);
	}
	if (t->free_in_first && t->n_ev == 1) {
		smtp_client_free(c);
		t->c = NULL;
		event_base_loopbreak(t->base);
		return;
	}
	if (t->n_ev >= t->want)
		event_base_loopbreak(t->base);
}

static struct smtp_client_params
params(unsigned timeout)
{
	struct smtp_client_params p = {
	        .connect_timeout = timeout,
	        .greeting_timeout = timeout,
	        .command_timeout = timeout,
	        .data_timeout = timeout,
	        .max_reply_line = 512,
	        .max_reply_lines = 20,
	        .log_id = "test",
	};
	return p;
}

static void
t_init(struct t *t, const struct ut_smtpd_step *script, bool implicit_tls, unsigned timeout)
{
	struct timeval tv = {20, 0};

	memset(t, 0, sizeof(*t));
	t->base = event_base_new();
	t->srv = script != NULL ? ut_smtpd_new(script, NULL, g_server_ctx, implicit_tls) : NULL;
	struct smtp_client_params p = params(timeout);
	t->c = smtp_client_new(t->base, &p);
	t->guard = evtimer_new(t->base, guard_cb, t);
	evtimer_add(t->guard, &tv);
	t->msg_fd = -1;
}

static int
t_connect(struct t *t, int port, SSL_CTX *implicit, const char *name, bool verify)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	return smtp_client_connect(t->c, (struct sockaddr *)&sin, sizeof(sin), implicit, name,
	                           verify, record_cb, t);
}

static void
t_run(struct t *t, int want)
{
	t->want = want;
	if (t->n_ev < want)
		event_base_dispatch(t->base);
	assert_int_equal(t->n_ev, want);
}

/* What the last server received, kept past t_done(). */
static char g_last_got[65536];

static void
t_done(struct t *t)
{
	smtp_client_free(t->c);
	t->c = NULL;
	/* libevent closes a TLS bufferevent's socket in a finalizer, run at
	 * the latest by event_base_free(): the server sees EOF only then. */
	event_free(t->guard);
	event_base_free(t->base);
	if (t->srv != NULL) {
		(void)ut_smtpd_join(t->srv);
		snprintf(g_last_got, sizeof(g_last_got), "%s", ut_smtpd_got(t->srv));
		ut_smtpd_free(t->srv);
	}
	if (t->msg_fd >= 0)
		close(t->msg_fd);
}

/* ------------------------------------------------------------ tests */

static void
test_greeting_ehlo_quit(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220-mx.example ESMTP first\r\n220 second line\r\n"},
	        {"EHLO client.example",
	         "250-mx.example hello\r\n250-PIPELINING\r\n250-size 1000\r\n"
	         "250-AUTH=LOGIN\r\n250-auth PLAIN LOGIN\r\n250 8BITMIME\r\n"},
	        {"MAIL FROM:<a@b>", "250 2.1.0 Ok\r\n"},
	        {"QUIT", "221 2.0.0 Bye\r\n", UT_SMTPD_CLOSE},
	        {0},
	};
	struct t t;
	const char *param = NULL;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	assert_false(smtp_client_idle(t.c));
	t_run(&t, 1);
	assert_int_equal(t.ev[0].code, 220);
	assert_int_equal(t.ev[0].n_lines, 2);
	assert_string_equal(t.ev[0].text, "mx.example ESMTP first\nsecond line");
	assert_true(smtp_client_idle(t.c));
	assert_int_equal(strncmp(smtp_client_peer(t.c), "127.0.0.1:", 10), 0);
	assert_null(smtp_client_tls_info(t.c));

	smtp_client_ehlo(t.c, "client.example", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].code, 250);
	assert_int_equal(t.ev[1].n_lines, 6);
	assert_true(smtp_client_has_ext(t.c, "pipelining", NULL));
	assert_true(smtp_client_has_ext(t.c, "SIZE", &param));
	assert_string_equal(param, "1000");
	/* The proper AUTH line wins over the legacy one. */
	assert_true(smtp_client_has_ext(t.c, "AUTH", &param));
	assert_string_equal(param, "PLAIN LOGIN");
	assert_true(smtp_client_has_ext(t.c, "8bitmime", &param));
	assert_string_equal(param, "");
	assert_false(smtp_client_has_ext(t.c, "STARTTLS", NULL));

	smtp_client_command(t.c, "MAIL FROM:<a@b>", record_cb, &t);
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	t_run(&t, 4);
	assert_int_equal(t.ev[2].code, 250);
	assert_string_equal(t.ev[2].enhanced, "2.1.0");
	assert_string_equal(t.ev[2].text, "2.1.0 Ok");
	assert_int_equal(t.ev[3].code, 221);
	t_done(&t);
}

static void
test_legacy_auth_only(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 old\r\n"},
	        {"EHLO", "250-old\r\n250 AUTH=LOGIN PLAIN\r\n"},
	        {0},
	};
	struct t t;
	const char *param = NULL;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	assert_true(smtp_client_has_ext(t.c, "AUTH", &param));
	assert_string_equal(param, "LOGIN PLAIN");
	t_done(&t);
}

/* Odd but valid: a bare code, LF line ends, an empty continuation, and an
 * enhanced code in the wrong class (not taken as one). */
static void
test_odd_replies(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220\n"},
	        {"NOOP", "250-\n250 \r\n"},
	        {"RSET", "250 5.1.1 not an enhanced code for a 250\r\n"},
	        {"VRFY", "252 2.5.0\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	smtp_client_command(t.c, "RSET", record_cb, &t);
	smtp_client_command(t.c, "VRFY x", record_cb, &t);
	t_run(&t, 4);
	assert_int_equal(t.ev[0].code, 220);
	assert_string_equal(t.ev[0].text, "");
	assert_int_equal(t.ev[1].code, 250);
	assert_int_equal(t.ev[1].n_lines, 2);
	assert_string_equal(t.ev[1].text, "\n");
	assert_string_equal(t.ev[2].enhanced, "");
	assert_string_equal(t.ev[3].enhanced, "2.5.0");
	t_done(&t);
}

struct bad_case {
	const char *name;
	const char *reply;
};

static void
test_malformed_replies(void **state)
{
	static char long_line[700], many_lines[2000], no_eol[700];
	static const struct bad_case cases[] = {
	        {"letters in the code", "2x0 hello\r\n"},
	        {"code out of range", "620 hello\r\n"},
	        {"no separator", "250hello\r\n"},
	        {"code changes inside a reply", "250-one\r\n251 two\r\n"},
	        {"line over max_reply_line", long_line},
	        {"more than max_reply_lines", many_lines},
	        {"no end of line, over the bound", no_eol},
	        {"empty line", "\r\n"},
	};
	size_t o = 0;

	memset(long_line, 0, sizeof(long_line));
	memcpy(long_line, "250 ", 4);
	memset(long_line + 4, 'x', 600);
	memcpy(long_line + 604, "\r\n", 2);
	for (int i = 0; i < 25; i++)
		o += (size_t)snprintf(many_lines + o, sizeof(many_lines) - o, "250-line %d\r\n", i);
	snprintf(many_lines + o, sizeof(many_lines) - o, "250 end\r\n");
	memset(no_eol, 0, sizeof(no_eol));
	memcpy(no_eol, "250 ", 4);
	memset(no_eol + 4, 'y', 600);

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		struct ut_smtpd_step script[] = {
		        {NULL, "220 ok\r\n"},
		        {"NOOP", cases[i].reply, UT_SMTPD_HANG},
		        {0},
		};
		struct t t;

		t_init(&t, script, false, 5);
		assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
		smtp_client_command(t.c, "NOOP", record_cb, &t);
		smtp_client_command(t.c, "QUIT", record_cb, &t);
		t_run(&t, 3);
		print_message("case: %s\n", cases[i].name);
		assert_int_equal(t.ev[1].status, SMTP_CLIENT_PROTOCOL);
		assert_int_equal(t.ev[2].status, SMTP_CLIENT_PROTOCOL);
		assert_false(smtp_client_idle(t.c));
		t_done(&t);
	}
}

/* NUL inside a reply line: sent by a server thread of its own making. */
static void *
nul_server(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char buf[256];

	(void)send(fd, "220 ok\r\n", 8, MSG_NOSIGNAL);
	(void)recv(fd, buf, sizeof(buf), 0);
	(void)send(fd, "250 a\0b\r\n", 9, MSG_NOSIGNAL);
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return NULL;
}

static void
test_nul_in_reply(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	pthread_t th;
	struct t t;
	int lfd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	getsockname(lfd, (struct sockaddr *)&sin, &sl);
	pthread_create(&th, NULL, nul_server, &lfd);
	t_init(&t, NULL, false, 5);
	assert_int_equal(t_connect(&t, ntohs(sin.sin_port), NULL, NULL, false), 0);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[0].code, 220);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_PROTOCOL);
	t_done(&t);
	pthread_join(th, NULL);
	close(lfd);
}

static void
test_greeting_timeout(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, NULL, UT_SMTPD_HANG},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 1);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[0].status, SMTP_CLIENT_TIMEOUT);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_TIMEOUT);
	t_done(&t);
}

static void
test_command_timeout(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"NOOP", NULL, UT_SMTPD_HANG},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 1);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[0].code, 220);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_TIMEOUT);
	/* Commands after the failure fail too, on a later loop turn. */
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	assert_int_equal(t.n_ev, 2);
	t_run(&t, 3);
	assert_int_equal(t.ev[2].status, SMTP_CLIENT_TIMEOUT);
	t_done(&t);
}

static void
test_refused(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct t t;

	/* A bound port nobody listens on. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	t_init(&t, NULL, false, 5);
	assert_int_equal(t_connect(&t, ntohs(sin.sin_port), NULL, NULL, false), 0);
	assert_int_equal(t.n_ev, 0);
	t_run(&t, 1);
	assert_int_equal(t.ev[0].status, SMTP_CLIENT_CONN_FAILED);
	t_done(&t);
	close(fd);
}

static void
test_closed_mid_reply(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"NOOP", "250-first\r\n", UT_SMTPD_CLOSE},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_CONN_FAILED);
	assert_false(smtp_client_idle(t.c));
	t_done(&t);
}

/* A 421 nobody asked for (server timeout) makes the connection unusable. */
static void
test_unsolicited_421(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "250 ok\r\n"},
	        {NULL, "421 4.4.2 timeout\r\n", UT_SMTPD_HANG},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	/* The 421 may or may not be read yet: a NOOP then sees either it
	 * (as its reply) or the closed connection. */
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t_run(&t, 3);
	assert_true(t.ev[2].code == 421 || t.ev[2].status == SMTP_CLIENT_CONN_FAILED);
	t_done(&t);
}

static void
test_pipelining(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "250-ok\r\n250 PIPELINING\r\n"},
	        /* All four before any reply: a server without them would
	         * hang here, and the test's deadline would fire. */
	        {"MAIL FROM:<a@b>", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n",
	         UT_SMTPD_BATCH, 4},
	        {NULL, NULL, UT_SMTPD_MESSAGE},
	        {NULL, "250 2.0.0 queued\r\n"},
	        {"QUIT", "221 bye\r\n"},
	        {0},
	};
	struct t t;
	FILE *f = tmpfile();
	size_t len;

	fputs("Subject: x\n\nbody\n", f);
	fflush(f);
	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	smtp_client_command(t.c, "MAIL FROM:<a@b>", record_cb, &t);
	smtp_client_command(t.c, "RCPT TO:<c@d>", record_cb, &t);
	smtp_client_command(t.c, "RCPT TO:<e@f>", record_cb, &t);
	smtp_client_command(t.c, "DATA", record_cb, &t);
	t_run(&t, 6);
	assert_int_equal(t.ev[2].code, 250);
	assert_int_equal(t.ev[3].code, 250);
	assert_int_equal(t.ev[4].code, 550);
	assert_int_equal(t.ev[5].code, 354);
	smtp_client_send_message(t.c, fileno(f), 0, record_cb, &t);
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	t_run(&t, 8);
	assert_int_equal(t.ev[6].code, 250);
	assert_int_equal(t.ev[7].code, 221);
	assert_memory_equal(ut_smtpd_message(t.srv, &len), "Subject: x\r\n\r\nbody\r\n.\r\n", 23);
	assert_string_equal(ut_smtpd_got(t.srv),
	                    "EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nRCPT TO:<e@f>\n"
	                    "DATA\nQUIT\n");
	t_done(&t);
	fclose(f);
}

/* Without PIPELINING the client waits for each reply. */
static void
test_no_pipelining(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "250 ok\r\n", UT_SMTPD_ALONE},
	        {"MAIL", "250 ok\r\n", UT_SMTPD_ALONE},
	        {"RCPT", "250 ok\r\n", UT_SMTPD_ALONE},
	        {"RSET", "250 ok\r\n", UT_SMTPD_ALONE},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	/* Queued before the greeting: nothing goes before it either. */
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	smtp_client_command(t.c, "MAIL FROM:<a@b>", record_cb, &t);
	smtp_client_command(t.c, "RCPT TO:<c@d>", record_cb, &t);
	smtp_client_command(t.c, "RSET", record_cb, &t);
	t_run(&t, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(t.ev[i].code, i == 0 ? 220 : 250);
	assert_false(ut_smtpd_alone_violated(t.srv));
	t_done(&t);
}

static void
test_starttls(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "250-ok\r\n250-STARTTLS\r\n250 PIPELINING\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	        {"EHLO", "250-ok\r\n250 AUTH PLAIN\r\n"},
	        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 2.7.0 ok\r\n"},
	        {"QUIT", "221 bye\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	assert_true(smtp_client_has_ext(t.c, "STARTTLS", NULL));
	smtp_client_starttls(t.c, g_client_ctx, CERT_NAME, true, record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[2].status, SMTP_CLIENT_OK);
	assert_int_equal(t.ev[2].code, 220);
	assert_non_null(smtp_client_tls_info(t.c));
	assert_non_null(strstr(smtp_client_tls_info(t.c), "TLS"));
	/* RFC 3207 4.2: what came before TLS is forgotten. */
	assert_false(smtp_client_has_ext(t.c, "STARTTLS", NULL));
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 4);
	assert_true(smtp_client_has_ext(t.c, "AUTH", NULL));
	smtp_client_command_secret(t.c, "AUTH PLAIN AGFsaWNlAHNlY3JldA==", NULL, record_cb, &t);
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	t_run(&t, 6);
	assert_int_equal(t.ev[4].code, 235);
	assert_int_equal(t.ev[5].code, 221);
	t_done(&t);
}

static void
test_starttls_wrong_name(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_starttls(t.c, g_client_ctx, "other.example", true, record_cb, &t);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_TLS_FAILED);
	assert_int_equal(t.ev[2].status, SMTP_CLIENT_TLS_FAILED);
	t_done(&t);
}

/* Unverified: the same handshake goes through. */
static void
test_starttls_no_verify(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	        {"NOOP", "250 ok\r\n"},
	        {0},
	};
	struct t t;
	SSL_CTX *bare = SSL_CTX_new(TLS_client_method());

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_starttls(t.c, bare, "other.example", false, record_cb, &t);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[1].code, 220);
	assert_int_equal(t.ev[2].code, 250);
	t_done(&t);
	SSL_CTX_free(bare);
}

static void
test_starttls_refused(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"STARTTLS", "454 4.7.0 TLS not available\r\n"},
	        {"QUIT", "221 bye\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_starttls(t.c, g_client_ctx, CERT_NAME, true, record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].code, 454);
	assert_string_equal(t.ev[1].enhanced, "4.7.0");
	assert_null(smtp_client_tls_info(t.c));
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[2].code, 221);
	t_done(&t);
}

/* CVE-2011-0411 from the client's side: a reply pipelined after the 220 must
 * not be taken as said under TLS. */
static void
test_starttls_injection(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n250 injected\r\n", UT_SMTPD_HANG},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_starttls(t.c, g_client_ctx, CERT_NAME, true, record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].status, SMTP_CLIENT_PROTOCOL);
	t_done(&t);
}

static void
test_implicit_tls(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 tls greeting\r\n"},
	        {"EHLO", "250 ok\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, true, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), g_client_ctx, CERT_NAME, true), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[0].code, 220);
	assert_string_equal(t.ev[0].text, "tls greeting");
	assert_non_null(smtp_client_tls_info(t.c));
	assert_int_equal(t.ev[1].code, 250);
	t_done(&t);
}

static void
test_implicit_tls_bad_cert(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 tls greeting\r\n"},
	        {0},
	};
	struct t t;
	SSL_CTX *bare = SSL_CTX_new(TLS_client_method());

	/* An empty trust store: the self-signed certificate cannot verify. */
	t_init(&t, script, true, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), bare, CERT_NAME, true), 0);
	t_run(&t, 1);
	assert_int_equal(t.ev[0].status, SMTP_CLIENT_TLS_FAILED);
	t_done(&t);
	SSL_CTX_free(bare);
}

/* Reference transformation: CRLF ends, dot-stuffing, final CRLF and dot. */
static char *
expected_data(const char *in, size_t n, size_t *len_r)
{
	char *out = malloc(2 * n + 8);
	size_t o = 0;
	bool ls = true, cr = false;

	for (size_t i = 0; i < n; i++) {
		if (ls && in[i] == '.')
			out[o++] = '.';
		ls = false;
		if (in[i] == '\n') {
			if (!cr)
				out[o++] = '\r';
			out[o++] = '\n';
			ls = true;
			cr = false;
		} else {
			out[o++] = in[i];
			cr = in[i] == '\r';
		}
	}
	if (!ls) {
		if (!cr)
			out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	*len_r = o + 3;
	return out;
}

static void
run_message(const char *msg, size_t n, off_t offset)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"DATA", "354 go\r\n"},
	        {NULL, NULL, UT_SMTPD_MESSAGE},
	        {NULL, "250 2.0.0 ok\r\n"},
	        {0},
	};
	struct t t;
	FILE *f = tmpfile();
	size_t elen, got_len;
	const char *got;
	char *exp;

	fwrite(msg, 1, n, f);
	fflush(f);
	exp = expected_data(msg + offset, n - (size_t)offset, &elen);
	t_init(&t, script, false, 10);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command(t.c, "DATA", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].code, 354);
	smtp_client_send_message(t.c, fileno(f), offset, record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[2].code, 250);
	assert_true(smtp_client_idle(t.c));
	got = ut_smtpd_message(t.srv, &got_len);
	assert_int_equal(got_len, elen);
	assert_memory_equal(got, exp, elen);
	free(exp);
	t_done(&t);
	fclose(f);
}

static void
test_message_dot_stuffing(void **state)
{
	static const char msg[] = "X-Skip: this header is before the offset\n"
	                          "Subject: dots\n\n.\n..two\r\n.three\nmid.dot\n"
	                          "bare\rcr\n\n.\nlast line without end";

	run_message(msg, sizeof(msg) - 1, 41);
	run_message("ends with CR\r", 13, 0);
	run_message(".", 1, 0);
	run_message("", 0, 0);
}

static void
test_message_large(void **state)
{
	size_t n = 2 * 1024 * 1024;
	char *msg = malloc(n);

	/* Lines of varying length, many starting with a dot, some CRLF. */
	for (size_t i = 0, col = 0; i < n; i++, col++) {
		if (col > 0 && (i * 7919) % 97 == 0) {
			msg[i] = '\n';
			col = (size_t)-1;
		} else {
			msg[i] = col == 0 && i % 3 == 0 ? '.' : (char)('a' + i % 26);
		}
	}
	run_message(msg, n, 0);
	free(msg);
}

static void
test_secret_and_invalid_lines(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
	        {"YWxpY2U=", "334 UGFzc3dvcmQ6\r\n"},
	        {"c2VjcmV0", "535 5.7.8 no\r\n"},
	        {NULL, NULL, UT_SMTPD_HANG},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command(t.c, "AUTH LOGIN", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].code, 334);
	smtp_client_command_secret(t.c, "YWxpY2U=", NULL, record_cb, &t);
	t_run(&t, 3);
	smtp_client_command_secret(t.c, "c2VjcmV0", NULL, record_cb, &t);
	t_run(&t, 4);
	assert_int_equal(t.ev[3].code, 535);
	assert_string_equal(t.ev[3].enhanced, "5.7.8");
	/* CR/LF inside a line would smuggle a second command: refused,
	 * and the connection ends. */
	smtp_client_command(t.c, "NOOP\r\nRSET", record_cb, &t);
	t_run(&t, 5);
	assert_int_equal(t.ev[4].status, SMTP_CLIENT_PROTOCOL);
	t_done(&t);
	assert_string_equal(g_last_got, "AUTH LOGIN\nYWxpY2U=\nc2VjcmV0\n");
}

static void
test_free_in_callback(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	t.free_in_first = true;
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	smtp_client_command(t.c, "NOOP", record_cb, &t);
	t.want = 99;
	event_base_dispatch(t.base);
	/* The greeting's callback freed the client: the queued ones never
	 * run. */
	assert_int_equal(t.n_ev, 1);
	assert_null(t.c);
	t_done(&t);
}

/* Freeing from a failure callback, with more failures queued. */
static void
test_free_in_failure_callback(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, NULL, UT_SMTPD_CLOSE},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	t.free_in_first = true;
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_ehlo(t.c, "c", record_cb, &t);
	t.want = 99;
	event_base_dispatch(t.base);
	assert_int_equal(t.n_ev, 1);
	assert_int_equal(t.ev[0].status, SMTP_CLIENT_CONN_FAILED);
	t_done(&t);
}

/* ------------------------------------------------------------ handshake */

static void
hs_cb(struct smtp_client *c, const struct smtp_client_hs_result *r, void *arg)
{
	struct t *t = arg;

	assert_true(t->n_ev < MAX_EVENTS);
	t->n_ev++;
	t->hs = *r;
	t->hs.reply = NULL; /* valid during the callback only */
	t->hs_code = r->reply != NULL ? r->reply->code : 0;
	snprintf(t->hs_text, sizeof(t->hs_text), "%s", r->reply != NULL ? r->reply->text : "");
	if ((r->outcome == SMTP_CLIENT_HS_REFUSED || r->outcome == SMTP_CLIENT_HS_REJECTED))
		assert_non_null(r->reply);
	else
		assert_null(r->reply);
	assert_int_equal(r->status == SMTP_CLIENT_OK, r->outcome != SMTP_CLIENT_HS_FAILED);
	if (t->hs_free) {
		smtp_client_free(c);
		t->c = NULL;
	}
	if (t->n_ev >= t->want)
		event_base_loopbreak(t->base);
}

static void
trace_cb(void *arg, const char *line)
{
	struct t *t = arg;

	ut_lines_add(t->trace, sizeof(t->trace), &t->trace_len, line);
}

/* The greeting of the gateway itself: a loop. */
static bool
not_ours(void *arg, const struct smtp_reply *greeting)
{
	return strncmp(greeting->text, "mx.test.example ESMTP authrelay", 31) != 0;
}

static int
hs_start(struct t *t, int port, const struct smtp_client_handshake *hs)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	smtp_client_set_trace(t->c, trace_cb, t);
	return smtp_client_handshake(t->c, (struct sockaddr *)&sin, sizeof(sin), hs, hs_cb, t);
}

struct hs_case {
	const char *name;
	struct ut_smtpd_step script[6];
	enum smtp_client_tls tls;
	bool helo_fallback;
	enum smtp_client_hs_outcome outcome;
	enum smtp_client_step step;
	enum smtp_client_status status;
	int code;          /* the reply's (REFUSED, REJECTED) */
	int refused;       /* starttls_refused */
	bool esmtp;        /* READY */
	const char *got;   /* what the server received */
	const char *trace; /* a line the trace must hold */
	bool right_name;   /* the certificate's name, not another */
};

static void
test_handshake_outcomes(void **state)
{
	/* Unnamed fields are 0: TLS_NONE, READY, STEP_GREETING, status OK. */
	static const struct hs_case cases[] = {
	        {.name = "greeting refused",
	         .script = {{NULL, "554 5.3.2 no service here\r\n"}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .code = 554,
	         .got = "",
	         .trace = "S: 554 5.3.2 no service here"},
	        {.name = "our own greeting",
	         .script = {{NULL, "220 mx.test.example ESMTP authrelay\r\n"}, {0}},
	         .outcome = SMTP_CLIENT_HS_REJECTED,
	         .code = 220,
	         .got = ""},
	        {.name = "EHLO refused, no fallback",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", "502 5.5.1 no\r\n"}, {0}},
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .code = 502,
	         .got = "EHLO client.example\n",
	         .trace = "C: EHLO client.example"},
	        {.name = "EHLO 4xx: no HELO",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", "421 4.3.0 later\r\n"}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .helo_fallback = true,
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .code = 421,
	         .got = "EHLO client.example\n"},
	        {.name = "EHLO refused, HELO accepted",
	         .script = {{NULL, "220 old\r\n"},
	                    {"EHLO", "500 5.5.2 what?\r\n"},
	                    {"HELO client.example", "250 old\r\n"},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .helo_fallback = true,
	         .step = SMTP_CLIENT_STEP_HELO,
	         .got = "EHLO client.example\nHELO client.example\n",
	         .trace = "C: HELO client.example"},
	        {.name = "HELO refused",
	         .script = {{NULL, "220 old\r\n"},
	                    {"EHLO", "500 5.5.2 what?\r\n"},
	                    {"HELO", "501 5.5.4 no\r\n"},
	                    {0}},
	         .helo_fallback = true,
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .step = SMTP_CLIENT_STEP_HELO,
	         .code = 501,
	         .got = "EHLO client.example\nHELO client.example\n"},
	        {.name = "TLS required, only HELO",
	         .script = {{NULL, "220 old\r\n"},
	                    {"EHLO", "500 5.5.2 what?\r\n"},
	                    {"HELO", "250 old\r\n"},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_STARTTLS,
	         .helo_fallback = true,
	         .outcome = SMTP_CLIENT_HS_NO_ESMTP,
	         .step = SMTP_CLIENT_STEP_HELO,
	         .got = "EHLO client.example\nHELO client.example\n"},
	        {.name = "TLS required, STARTTLS not offered",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", "250-ok\r\n250 AUTH PLAIN\r\n"}, {0}},
	         .tls = SMTP_CLIENT_TLS_STARTTLS,
	         .outcome = SMTP_CLIENT_HS_NO_STARTTLS,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .got = "EHLO client.example\n",
	         .trace = "S: 250 AUTH PLAIN"},
	        {.name = "TLS may, STARTTLS not offered",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", "250-ok\r\n250 AUTH PLAIN\r\n"}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .esmtp = true,
	         .got = "EHLO client.example\n"},
	        {.name = "TLS none, STARTTLS offered and not used",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", "250-ok\r\n250 STARTTLS\r\n"}, {0}},
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .esmtp = true,
	         .got = "EHLO client.example\n"},
	        {.name = "TLS required, STARTTLS refused",
	         .script = {{NULL, "220 ok\r\n"},
	                    {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	                    {"STARTTLS", "454 4.7.0 TLS not available\r\n"},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_STARTTLS,
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .step = SMTP_CLIENT_STEP_STARTTLS,
	         .code = 454,
	         .got = "EHLO client.example\nSTARTTLS\n",
	         .trace = "C: STARTTLS"},
	        {.name = "TLS may, STARTTLS refused: plaintext",
	         .script = {{NULL, "220 ok\r\n"},
	                    {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	                    {"STARTTLS", "454 4.7.0 TLS not available\r\n"},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .step = SMTP_CLIENT_STEP_STARTTLS,
	         .refused = 454,
	         .esmtp = true,
	         .got = "EHLO client.example\nSTARTTLS\n"},
	        {.name = "STARTTLS, wrong certificate name",
	         .script = {{NULL, "220 ok\r\n"},
	                    {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	                    {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_FAILED,
	         .step = SMTP_CLIENT_STEP_STARTTLS,
	         .status = SMTP_CLIENT_TLS_FAILED,
	         .got = "EHLO client.example\nSTARTTLS\n"},
	        {.name = "EHLO after STARTTLS refused",
	         .script = {{NULL, "220 ok\r\n"},
	                    {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	                    {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	                    {"EHLO", "554 5.7.0 go away\r\n"},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_STARTTLS,
	         .helo_fallback = true, /* the first EHLO only */
	         .outcome = SMTP_CLIENT_HS_REFUSED,
	         .step = SMTP_CLIENT_STEP_EHLO_TLS,
	         .code = 554,
	         .got = "EHLO client.example\nSTARTTLS\nEHLO client.example\n",
	         .right_name = true},
	        {.name = "greeting timeout",
	         .script = {{NULL, NULL, UT_SMTPD_HANG}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_FAILED,
	         .status = SMTP_CLIENT_TIMEOUT,
	         .got = ""},
	        {.name = "EHLO timeout",
	         .script = {{NULL, "220 ok\r\n"}, {"EHLO", NULL, UT_SMTPD_HANG}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_FAILED,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .status = SMTP_CLIENT_TIMEOUT,
	         .got = "EHLO client.example\n"},
	        {.name = "STARTTLS timeout",
	         .script = {{NULL, "220 ok\r\n"},
	                    {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	                    {"STARTTLS", NULL, UT_SMTPD_HANG},
	                    {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_FAILED,
	         .step = SMTP_CLIENT_STEP_STARTTLS,
	         .status = SMTP_CLIENT_TIMEOUT,
	         .got = "EHLO client.example\nSTARTTLS\n"},
	        {.name = "closed after the greeting",
	         .script = {{NULL, "220 ok\r\n", UT_SMTPD_CLOSE}, {0}},
	         .tls = SMTP_CLIENT_TLS_MAY,
	         .outcome = SMTP_CLIENT_HS_FAILED,
	         .step = SMTP_CLIENT_STEP_EHLO,
	         .status = SMTP_CLIENT_CONN_FAILED},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		const struct hs_case *c = &cases[i];
		struct smtp_client_handshake hs = {
		        .helo_name = "client.example",
		        .tls = c->tls,
		        .tls_ctx = g_client_ctx,
		        .tls_name = c->right_name ? CERT_NAME : "other.example",
		        .tls_verify = true,
		        .helo_fallback = c->helo_fallback,
		        .check_greeting = not_ours,
		};
		struct t t;

		print_message("case: %s\n", c->name);
		t_init(&t, c->script, false, 1);
		assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
		assert_int_equal(t.n_ev, 0); /* never inside the call */
		t_run(&t, 1);
		assert_int_equal(t.hs.outcome, c->outcome);
		assert_int_equal(t.hs.step, c->step);
		assert_int_equal(t.hs.status, c->status);
		assert_int_equal(t.hs_code, c->code);
		assert_int_equal(t.hs.starttls_refused, c->refused);
		if (c->outcome == SMTP_CLIENT_HS_READY)
			assert_int_equal(t.hs.esmtp, c->esmtp);
		if (c->step == SMTP_CLIENT_STEP_EHLO_TLS)
			assert_non_null(smtp_client_tls_info(t.c));
		else
			assert_null(smtp_client_tls_info(t.c));
		if (c->trace != NULL && strstr(t.trace, c->trace) == NULL)
			fail_msg("no \"%s\" in the trace:\n%s", c->trace, t.trace);
		t_done(&t);
		if (c->got != NULL)
			assert_string_equal(g_last_got, c->got);
	}
}

/* STARTTLS required and verified: the extensions are those said under TLS
 * only (RFC 3207 4.2), and the trace shows the whole dialogue. */
static void
test_handshake_starttls(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 mx ESMTP\r\n"},
	        {"EHLO c.example", "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	        {"EHLO c.example", "250-mx\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n"},
	        {"QUIT", "221 bye\r\n"},
	        {0},
	};
	struct smtp_client_handshake hs = {
	        .helo_name = "c.example",
	        .tls = SMTP_CLIENT_TLS_STARTTLS,
	        .tls_ctx = g_client_ctx,
	        .tls_name = CERT_NAME,
	        .tls_verify = true,
	};
	const char *param = NULL;
	struct t t;

	t_init(&t, script, false, 5);
	assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
	t_run(&t, 1);
	assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_READY);
	assert_int_equal(t.hs.step, SMTP_CLIENT_STEP_EHLO_TLS);
	assert_true(t.hs.esmtp);
	assert_non_null(smtp_client_tls_info(t.c));
	assert_true(smtp_client_idle(t.c));
	assert_true(smtp_client_has_ext(t.c, "AUTH", &param));
	assert_string_equal(param, "PLAIN LOGIN");
	assert_true(smtp_client_has_ext(t.c, "SIZE", NULL));
	assert_false(smtp_client_has_ext(t.c, "STARTTLS", NULL));
	assert_false(smtp_client_has_ext(t.c, "PIPELINING", NULL));
	smtp_client_command(t.c, "QUIT", record_cb, &t);
	t_run(&t, 2);
	assert_int_equal(t.ev[1].code, 221);
	assert_non_null(strstr(t.trace, "S: 220 mx ESMTP\nC: EHLO c.example\nS: 250-mx\n"
	                                "S: 250-PIPELINING\nS: 250 STARTTLS\nC: STARTTLS\n"
	                                "S: 220 2.0.0 go\nTLS: TLSv1."));
	assert_non_null(strstr(t.trace, " (certificate verified for " CERT_NAME ")\n"
	                                "C: EHLO c.example\nS: 250-mx\nS: 250-SIZE 1000\n"
	                                "S: 250 AUTH PLAIN LOGIN\nC: QUIT\nS: 221 bye\n"));
	t_done(&t);
}

static void
test_handshake_implicit_tls(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 tls greeting\r\n"},
	        {"EHLO", "250-ok\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n"},
	        {0},
	};
	struct smtp_client_handshake hs = {
	        .helo_name = "c.example",
	        .tls = SMTP_CLIENT_TLS_IMPLICIT,
	        .tls_ctx = g_client_ctx,
	        .tls_name = CERT_NAME,
	        .tls_verify = true,
	};
	struct t t;

	t_init(&t, script, true, 5);
	assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
	t_run(&t, 1);
	/* Under TLS already: a STARTTLS in the EHLO reply is not taken up. */
	assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_READY);
	assert_int_equal(t.hs.step, SMTP_CLIENT_STEP_EHLO);
	assert_non_null(smtp_client_tls_info(t.c));
	assert_true(smtp_client_has_ext(t.c, "AUTH", NULL));
	assert_non_null(strstr(t.trace, "TLS: "));
	assert_true(strstr(t.trace, "TLS: ") < strstr(t.trace, "S: 220 tls greeting"));
	t_done(&t);
	assert_string_equal(g_last_got, "EHLO c.example\n");
}

/* Implicit TLS that does not verify, and a refused connection: FAILED at
 * the greeting step. */
static void
test_handshake_connect_failures(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 tls greeting\r\n"},
	        {0},
	};
	struct smtp_client_handshake hs = {
	        .helo_name = "c.example",
	        .tls = SMTP_CLIENT_TLS_IMPLICIT,
	        .tls_ctx = g_client_ctx,
	        .tls_name = "other.example",
	        .tls_verify = true,
	};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct t t;

	t_init(&t, script, true, 5);
	assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
	t_run(&t, 1);
	assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_FAILED);
	assert_int_equal(t.hs.step, SMTP_CLIENT_STEP_GREETING);
	assert_int_equal(t.hs.status, SMTP_CLIENT_TLS_FAILED);
	t_done(&t);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	hs.tls = SMTP_CLIENT_TLS_MAY;
	t_init(&t, NULL, false, 5);
	assert_int_equal(hs_start(&t, ntohs(sin.sin_port), &hs), 0);
	t_run(&t, 1);
	assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_FAILED);
	assert_int_equal(t.hs.step, SMTP_CLIENT_STEP_GREETING);
	assert_int_equal(t.hs.status, SMTP_CLIENT_CONN_FAILED);
	/* A client opens one session only. */
	assert_int_equal(hs_start(&t, ntohs(sin.sin_port), &hs), -1);
	t_done(&t);
	close(fd);
}

/* The caller frees the client from the handshake's callback. */
static void
test_handshake_free_in_callback(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "550 5.7.1 no\r\n"},
	        {0},
	};
	struct smtp_client_handshake hs = {.helo_name = "c.example"};
	struct t t;

	t_init(&t, script, false, 5);
	t.hs_free = true;
	assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
	t_run(&t, 1);
	assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_REFUSED);
	assert_int_equal(t.hs_code, 550);
	assert_string_equal(t.hs_text, "5.7.1 no");
	assert_null(t.c);
	t_done(&t);
}

/* A secret line shows in the trace as the caller says, never as sent. */
static void
test_trace_secret(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "334 \r\n"},
	        {"c2VjcmV0", "235 2.7.0 ok\r\n"},
	        {0},
	};
	struct t t;

	t_init(&t, script, false, 5);
	smtp_client_set_trace(t.c, trace_cb, &t);
	assert_int_equal(t_connect(&t, ut_smtpd_port(t.srv), NULL, NULL, false), 0);
	smtp_client_command_secret(t.c, "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
	                           "AUTH PLAIN ******** (initial response)", record_cb, &t);
	smtp_client_command_secret(t.c, "c2VjcmV0", NULL, record_cb, &t);
	t_run(&t, 3);
	assert_int_equal(t.ev[2].code, 235);
	assert_string_equal(t.trace, "S: 220 ok\nC: AUTH PLAIN ******** (initial response)\n"
	                             "S: 334 \nC: ********\nS: 235 2.7.0 ok\n");
	t_done(&t);
}

/* The one builder: a CA file that does not load; one that does verifies
 * the certificate; without verify, nothing is checked. */
static void
test_tls_ctx_new(void **state)
{
	static const struct ut_smtpd_step script[] = {
	        {NULL, "220 ok\r\n"},
	        {"EHLO", "250-ok\r\n250 STARTTLS\r\n"},
	        {"STARTTLS", "220 2.0.0 go\r\n", UT_SMTPD_TLS},
	        {"EHLO", "250 ok\r\n"},
	        {0},
	};
	char path[] = "/tmp/test_smtp_client_ca.XXXXXX";
	const char *err = NULL;
	SSL_CTX *ctx;
	FILE *f;
	int fd;

	assert_null(smtp_client_tls_ctx_new("/nonexistent/ca.pem", true, &err));
	assert_non_null(strstr(err, "cannot load /nonexistent/ca.pem: "));

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_int_equal(PEM_write_X509(f, g_cert), 1);
	fclose(f);
	for (int verify = 1; verify >= 0; verify--) {
		struct smtp_client_handshake hs = {
		        .helo_name = "c.example",
		        .tls = SMTP_CLIENT_TLS_STARTTLS,
		        .tls_name = verify ? CERT_NAME : "other.example",
		        .tls_verify = verify,
		};
		struct t t;

		ctx = smtp_client_tls_ctx_new(verify ? path : "/nonexistent/ca.pem", verify, &err);
		assert_non_null(ctx);
		hs.tls_ctx = ctx;
		t_init(&t, script, false, 5);
		assert_int_equal(hs_start(&t, ut_smtpd_port(t.srv), &hs), 0);
		t_run(&t, 1);
		assert_int_equal(t.hs.outcome, SMTP_CLIENT_HS_READY);
		assert_non_null(smtp_client_tls_info(t.c));
		assert_non_null(strstr(t.trace, verify ? "(certificate verified for " CERT_NAME ")"
		                                       : "(certificate not verified)"));
		t_done(&t);
		SSL_CTX_free(ctx);
	}
	unlink(path);
}

static int
setup(void **state)
{
	log_init(false, getenv("TEST_DEBUG") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERR, "test");
	g_key = EVP_EC_gen("P-256");
	assert_non_null(g_key);
	g_cert = ut_tls_cert(g_key, CERT_NAME);
	g_server_ctx = ut_tls_server_ctx(g_cert, g_key);
	g_client_ctx = ut_tls_client_ctx(g_cert);
	return 0;
}

static int
teardown(void **state)
{
	SSL_CTX_free(g_server_ctx);
	SSL_CTX_free(g_client_ctx);
	X509_free(g_cert);
	EVP_PKEY_free(g_key);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_greeting_ehlo_quit),
	        cmocka_unit_test(test_legacy_auth_only),
	        cmocka_unit_test(test_odd_replies),
	        cmocka_unit_test(test_malformed_replies),
	        cmocka_unit_test(test_nul_in_reply),
	        cmocka_unit_test(test_greeting_timeout),
	        cmocka_unit_test(test_command_timeout),
	        cmocka_unit_test(test_refused),
	        cmocka_unit_test(test_closed_mid_reply),
	        cmocka_unit_test(test_unsolicited_421),
	        cmocka_unit_test(test_pipelining),
	        cmocka_unit_test(test_no_pipelining),
	        cmocka_unit_test(test_starttls),
	        cmocka_unit_test(test_starttls_wrong_name),
	        cmocka_unit_test(test_starttls_no_verify),
	        cmocka_unit_test(test_starttls_refused),
	        cmocka_unit_test(test_starttls_injection),
	        cmocka_unit_test(test_implicit_tls),
	        cmocka_unit_test(test_implicit_tls_bad_cert),
	        cmocka_unit_test(test_message_dot_stuffing),
	        cmocka_unit_test(test_message_large),
	        cmocka_unit_test(test_secret_and_invalid_lines),
	        cmocka_unit_test(test_free_in_callback),
	        cmocka_unit_test(test_free_in_failure_callback),
	        cmocka_unit_test(test_handshake_outcomes),
	        cmocka_unit_test(test_handshake_starttls),
	        cmocka_unit_test(test_handshake_implicit_tls),
	        cmocka_unit_test(test_handshake_connect_failures),
	        cmocka_unit_test(test_handshake_free_in_callback),
	        cmocka_unit_test(test_trace_secret),
	        cmocka_unit_test(test_tls_ctx_new),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
