/* SPDX-License-Identifier: ISC */
/*
 * ut_smtpd.c - a scripted SMTP server thread for unit tests (ut_smtpd.h).
 *
 * What the thread writes (got, message, the flags, error) the test reads
 * only after ut_smtpd_join(), or, for a test that reads earlier, after an
 * event that the server's own send caused (the reply the client got).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ut_lines.h"
#include "ut_smtpd.h"

struct ut_smtpd {
	int lfd;
	int port;
	const struct ut_smtpd_step *script;
	const struct ut_smtpd_step *again;
	SSL_CTX *tls;
	bool implicit_tls;
	pthread_t thread;
	bool running;
	/* Results. */
	char got[65536];
	size_t got_len;
	char *message;
	size_t message_len;
	bool alone_violated;
	char error[256];
};

/* One accepted connection, TLS or not. */
struct ut_sconn {
	int fd;
	SSL *ssl;
	char buf[8192];
	size_t len;
};

static ssize_t
ut_sconn_read(struct ut_sconn *c, void *p, size_t n)
{
	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, p, (int)n);
		return r > 0 ? r : 0;
	}
	return recv(c->fd, p, n, 0);
}

static void
ut_sconn_write(struct ut_sconn *c, const char *p)
{
	size_t n = strlen(p);

	if (c->ssl != NULL)
		SSL_write(c->ssl, p, (int)n);
	else
		(void)send(c->fd, p, n, MSG_NOSIGNAL);
}

/* One line without CRLF into out; false on EOF. */
static bool
ut_sconn_line(struct ut_sconn *c, char *out, size_t outsz)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl != NULL) {
			size_t l = (size_t)(nl - c->buf);
			size_t cl = l > 0 && c->buf[l - 1] == '\r' ? l - 1 : l;
			if (cl >= outsz)
				cl = outsz - 1;
			memcpy(out, c->buf, cl);
			out[cl] = '\0';
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return true;
		}
		if (c->len == sizeof(c->buf))
			return false;
		ssize_t r = ut_sconn_read(c, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0)
			return false;
		c->len += (size_t)r;
	}
}

static bool
ut_sconn_tls(struct ut_smtpd *s, struct ut_sconn *c)
{
	if (s->tls == NULL)
		return false;
	c->ssl = SSL_new(s->tls);
	SSL_set_fd(c->ssl, c->fd);
	return SSL_accept(c->ssl) == 1;
}

static void
ut_smtpd_record(struct ut_smtpd *s, const char *line)
{
	ut_lines_add(s->got, sizeof(s->got), &s->got_len, line);
}

/* Read raw bytes up to CRLF.CRLF (or a lone ".\r\n") into s->message. */
static void
ut_smtpd_read_message(struct ut_smtpd *s, struct ut_sconn *c)
{
	size_t cap = 1 << 16, len = 0;
	char *m = malloc(cap);

	for (;;) {
		if (c->len > 0) {
			while (len + c->len + 1 > cap)
				cap *= 2;
			m = realloc(m, cap);
			memcpy(m + len, c->buf, c->len);
			len += c->len;
			c->len = 0;
		}
		if (len >= 5 && memcmp(m + len - 5, "\r\n.\r\n", 5) == 0)
			break;
		if (len == 3 && memcmp(m, ".\r\n", 3) == 0)
			break;
		ssize_t r = ut_sconn_read(c, c->buf, sizeof(c->buf));
		if (r <= 0)
			break;
		c->len = (size_t)r;
	}
	free(s->message);
	s->message = m;
	s->message_len = len;
}

/* Read the line (or n lines) a step expects; false when the script is off. */
static bool
ut_smtpd_expect(struct ut_smtpd *s, struct ut_sconn *c, const struct ut_smtpd_step *st)
{
	char line[16384];
	int n = st->act == UT_SMTPD_BATCH ? st->n : 1;

	for (int i = 0; i < n; i++) {
		if (!ut_sconn_line(c, line, sizeof(line))) {
			snprintf(s->error, sizeof(s->error), "EOF waiting for %s", st->expect);
			return false;
		}
		ut_smtpd_record(s, line);
		if (i == 0 && strncmp(line, st->expect, strlen(st->expect)) != 0) {
			snprintf(s->error, sizeof(s->error), "expected %s, got %.100s", st->expect,
			         line);
			return false;
		}
	}
	if (st->act == UT_SMTPD_ALONE) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		/* Nothing may follow a command before its reply without
		 * PIPELINING: give it a moment to show. */
		if (c->len > 0 || poll(&p, 1, 150) > 0)
			s->alone_violated = true;
	}
	return true;
}

/* Serve one connection with script. */
static void
ut_smtpd_serve(struct ut_smtpd *s, const struct ut_smtpd_step *script)
{
	struct ut_sconn c = {.fd = accept(s->lfd, NULL, NULL)};

	if (c.fd < 0)
		return;
	if (s->implicit_tls && !ut_sconn_tls(s, &c)) {
		snprintf(s->error, sizeof(s->error), "implicit TLS handshake failed");
		goto done;
	}
	for (const struct ut_smtpd_step *st = script;
	     st->expect != NULL || st->send != NULL || st->act != UT_SMTPD_NONE; st++) {
		if (st->act == UT_SMTPD_MESSAGE)
			ut_smtpd_read_message(s, &c);
		else if (st->expect != NULL && !ut_smtpd_expect(s, &c, st))
			goto done;
		if (st->send != NULL)
			ut_sconn_write(&c, st->send);
		/* A client refusing our certificate is what some tests want. */
		if (st->act == UT_SMTPD_TLS && !ut_sconn_tls(s, &c))
			goto done;
		if (st->act == UT_SMTPD_CLOSE)
			goto done;
		if (st->act == UT_SMTPD_HANG)
			goto drain;
	}
drain:
	/* Until the client closes. */
	while (ut_sconn_read(&c, c.buf, sizeof(c.buf)) > 0)
		;
done:
	if (c.ssl != NULL) {
		SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	close(c.fd);
}

static void *
ut_smtpd_main(void *arg)
{
	struct ut_smtpd *s = arg;

	ut_smtpd_serve(s, s->script);
	if (s->again != NULL && s->error[0] == '\0')
		ut_smtpd_serve(s, s->again);
	return NULL;
}

struct ut_smtpd *
ut_smtpd_new(const struct ut_smtpd_step *script, const struct ut_smtpd_step *again, SSL_CTX *tls,
             bool implicit_tls)
{
	struct ut_smtpd *s = calloc(1, sizeof(*s));
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);

	assert_non_null(s);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &sl), 0);
	s->port = ntohs(sin.sin_port);
	s->script = script;
	s->again = again;
	s->tls = tls;
	s->implicit_tls = implicit_tls;
	if (script != NULL) {
		assert_int_equal(pthread_create(&s->thread, NULL, ut_smtpd_main, s), 0);
		s->running = true;
	}
	return s;
}

int
ut_smtpd_port(const struct ut_smtpd *s)
{
	return s->port;
}

const char *
ut_smtpd_join(struct ut_smtpd *s)
{
	if (s->running) {
		pthread_join(s->thread, NULL);
		s->running = false;
	}
	return s->error[0] != '\0' ? s->error : NULL;
}

const char *
ut_smtpd_got(const struct ut_smtpd *s)
{
	return s->got;
}

const char *
ut_smtpd_message(const struct ut_smtpd *s, size_t *len_r)
{
	*len_r = s->message_len;
	return s->message;
}

bool
ut_smtpd_alone_violated(const struct ut_smtpd *s)
{
	return s->alone_violated;
}

bool
ut_smtpd_contacted(const struct ut_smtpd *s)
{
	struct pollfd p = {.fd = s->lfd, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

void
ut_smtpd_free(struct ut_smtpd *s)
{
	(void)ut_smtpd_join(s);
	close(s->lfd);
	free(s->message);
	free(s);
}
