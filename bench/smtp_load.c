/* SPDX-License-Identifier: ISC */
/*
 * smtp_load.c - an SMTP submission load generator that speaks AUTH (in the
 * spirit of Postfix's smtp-source), used by bench/run.sh to put the same
 * workload on authrelay and on the peer (Postfix + Dovecot SASL).
 *
 * N sessions run at once, each an explicit state machine on one libevent
 * loop: greeting, EHLO, [STARTTLS, EHLO], AUTH (PLAIN or LOGIN), then for
 * each message MAIL, RCPT x R, DATA, the message, and finally QUIT. Every
 * reply code is checked; a wrong one, a closed connection, a TLS error or a
 * timeout fails the session and is counted under the stage it happened in.
 * A share of the sessions (--wrong) sends a wrong password on purpose: for
 * those a 535 is the expected answer and they QUIT right after it.
 *
 * The run is bounded by a session count and a time bound, whichever comes
 * first, and targets loopback addresses only. The result is one JSON line on
 * stdout: sessions and messages per second, AUTH and session latency
 * percentiles, failures by stage.
 *
 * --idle N opens N connections that read the greeting and then sit still; it
 * prints one JSON line once they are all up, holds them for --hold seconds
 * (or until SIGTERM / SIGINT), and exits. bench/run.sh measures the server's
 * memory meanwhile.
 *
 * Source addresses: on an IPv4 target the sessions come from 127.1.0.1 and
 * up (--sources, 64 by default), like a fleet of clients rather than one.
 * From a single source address, every connect() searched the ephemeral
 * ports for a 4-tuple not held by the thousands of TIME_WAIT entries the
 * server's closes leave (on loopback both ends share one table): that search
 * was 60 % of this program's CPU, taken from the cores the servers measured
 * here share with it.
 *
 * TLS: the client offers the last session ticket it got (TLS session
 * resumption across sessions, as a real client fleet does) unless
 * --no-resume; certificates are not verified (the bench's are self-signed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Stages, in the order a session goes through them; failures are counted
 * under the stage whose reply was wrong or missing. */
enum stage {
	ST_CONNECT,
	ST_GREETING,
	ST_EHLO,
	ST_STARTTLS,
	ST_TLS,
	ST_EHLO2,
	ST_AUTH,      /* AUTH PLAIN ir / AUTH LOGIN */
	ST_AUTH_USER, /* LOGIN: 334 Username: answered */
	ST_AUTH_PASS, /* LOGIN: 334 Password: answered */
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_MESSAGE, /* the final dot */
	ST_QUIT,
	ST_IDLE,
	ST_COUNT,
};

static const char *const stage_names[ST_COUNT] = {
        "connect", "greeting", "ehlo", "starttls", "tls",     "ehlo2", "auth", "auth",
        "auth",    "mail",     "rcpt", "data",     "message", "quit",  "idle",
};

enum tls_mode { TLS_NONE, TLS_STARTTLS, TLS_IMPLICIT };

struct opts {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	const char *addr_str;
	unsigned concurrency;
	unsigned long sessions; /* 0: until the time bound */
	double time_bound;      /* seconds */
	enum tls_mode tls;
	const char *mech; /* "PLAIN", "LOGIN" or NULL (no AUTH) */
	const char *user_fmt;
	const char *pass_fmt;
	unsigned long user_lo, user_hi;
	double wrong; /* share of sessions with a wrong password */
	unsigned messages;
	size_t size;
	unsigned rcpts;
	const char *from;
	const char *rcpt_domain;
	const char *ehlo;
	bool resume;
	bool sequential; /* users lo..hi in turn, not at random */
	unsigned long idle;
	double hold;
	unsigned timeout; /* per reply, seconds */
	unsigned sources; /* IPv4 source addresses to spread over, 0 = kernel's */
};

/* Latency samples in microseconds. */
struct samples {
	uint32_t *v;
	size_t n, cap;
};

struct conn;

struct load {
	struct opts o;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	SSL_SESSION *last_session; /* offered to the next handshake */
	char *body;                /* the message text after the headers */
	size_t body_len;
	double t0;
	double t_last; /* when the last session ended */
	unsigned long started, ok, auth_rejected, failed, messages, tls_resumed, tls_handshakes;
	unsigned long fail_by_stage[ST_COUNT];
	unsigned long fail_codes[6]; /* failures by reply class: 0 = no reply */
	unsigned active;
	unsigned long cut_off; /* still running at the hard deadline */
	bool stopping;
	struct samples auth_lat, sess_lat;
	uint64_t rng;
	struct event *ev_sig_term, *ev_sig_int, *ev_hold, *ev_check;
	unsigned long idle_open;
	bool idle_reported;
	bool starting; /* inside conn_start() */
};

struct conn {
	struct load *L;
	int fd;
	struct bufferevent *bev;
	SSL *ssl;
	enum stage stage;
	unsigned long user;
	bool wrong;
	unsigned msg_done;
	unsigned rcpt_done;
	double t_start, t_auth;
	int code; /* the reply being read */
	bool tls_up;
};

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("smtp_load: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t
rng_next(struct load *L)
{
	/* xorshift64*: a repeatable user and wrong-password choice. */
	L->rng ^= L->rng >> 12;
	L->rng ^= L->rng << 25;
	L->rng ^= L->rng >> 27;
	return L->rng * 2685821657736338717ULL;
}

static void
samples_add(struct samples *s, double seconds)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			die("out of memory");
	}
	double us = seconds * 1e6;
	s->v[s->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, in milliseconds. */
static double
samples_pct(const struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > s->n)
		k = s->n;
	return s->v[k - 1] / 1000.0;
}

/* ------------------------------------------------------------- messages */

static void
build_body(struct load *L)
{
	/* 76 printable characters and CRLF per line, up to the size asked. */
	size_t size = L->o.size;
	L->body = malloc(size + 80);
	if (L->body == NULL)
		die("out of memory");
	size_t n = 0;
	unsigned line = 0;
	while (n + 78 <= size) {
		int w = snprintf(L->body + n, 80, "%06u ", line++);
		for (int i = w; i < 76; i++)
			L->body[n + (size_t)i] = (char)('a' + (i % 26));
		n += 76;
		L->body[n++] = '\r';
		L->body[n++] = '\n';
	}
	L->body_len = n;
}

static void conn_send(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
conn_send(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
}

static void
b64(const unsigned char *in, size_t len, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = t[(v >> 18) & 63];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? t[v & 63] : '=';
	}
	out[o] = '\0';
}

/* Expand a login or password template: the first "%[0][width]lu" (or %u,
 * %d) becomes the user number, "%%" a percent sign. Returns -1 on a
 * template without a number. */
static int
fmt_user(const char *fmt, unsigned long n, char *buf, size_t len)
{
	size_t o = 0;
	bool used = false;
	for (const char *p = fmt; *p != '\0' && o + 1 < len; p++) {
		if (*p != '%') {
			buf[o++] = *p;
			continue;
		}
		if (p[1] == '%') {
			buf[o++] = '%';
			p++;
			continue;
		}
		p++;
		bool zero = *p == '0';
		unsigned width = (unsigned)strtoul(p, (char **)&p, 10);
		while (*p == 'l')
			p++;
		if ((*p != 'u' && *p != 'd') || used || width > 20)
			return -1;
		used = true;
		char num[32];
		int w = snprintf(num, sizeof(num), zero ? "%0*lu" : "%*lu", (int)width, n);
		for (int i = 0; i < w && o + 1 < len; i++)
			buf[o++] = num[i];
	}
	buf[o] = '\0';
	return used ? 0 : -1;
}

static void
conn_login(const struct conn *c, char *buf, size_t len)
{
	fmt_user(c->L->o.user_fmt, c->user, buf, len);
}

static void
conn_password(const struct conn *c, char *buf, size_t len)
{
	if (c->wrong)
		snprintf(buf, len, "wrong-%lu", c->user);
	else
		fmt_user(c->L->o.pass_fmt, c->user, buf, len);
}

static void
send_message(struct conn *c)
{
	struct load *L = c->L;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out,
	                    "From: <%s>\r\nTo: <rcpt0@%s>\r\nSubject: bench %lu/%u\r\n"
	                    "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
	                    "Message-ID: <%lu.%u.%d@smtp-load.test>\r\n\r\n",
	                    L->o.from, L->o.rcpt_domain, L->started, c->msg_done, L->started,
	                    c->msg_done, c->fd);
	/* The body is the same for every message: a reference, no copy. */
	evbuffer_add_reference(out, L->body, L->body_len, NULL, NULL);
	evbuffer_add(out, ".\r\n", 3);
}

/* ------------------------------------------------------------- lifecycle */

static void conn_start(struct load *L);
static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void
load_maybe_done(struct load *L)
{
	if (L->active == 0 && L->stopping)
		event_base_loopexit(L->base, NULL);
}

static bool
load_more(struct load *L)
{
	if (L->stopping)
		return false;
	if (L->o.sessions > 0 && L->started >= L->o.sessions)
		return false;
	if (now_s() - L->t0 >= L->o.time_bound)
		return false;
	return true;
}

/* The slot a finished session left: start the next one, or wind down. */
static void
conn_next(struct load *L)
{
	L->active--;
	if (load_more(L))
		conn_start(L);
	else if (L->o.idle == 0)
		L->stopping = true;
	load_maybe_done(L);
}

static void
conn_next_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_next(arg);
}

static void
conn_free(struct conn *c)
{
	struct load *L = c->L;
	bool failed_at_once = L->starting;
	/* A TLS bufferevent owns the fd and the SSL; a plain one owns neither
	 * (STARTTLS hands the fd on), so its fd is closed here. */
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if ((c->bev == NULL || c->ssl == NULL) && c->fd >= 0)
		close(c->fd);
	free(c);
	L->t_last = now_s();
	if (failed_at_once) {
		/* Failed inside conn_start() (out of descriptors, say): the next
		 * try comes from
		 * the loop, a millisecond on, not from here, so a failure that
		 * repeats cannot recurse without end. */
		struct timeval ms = {0, 1000};
		if (event_base_once(L->base, -1, EV_TIMEOUT, conn_next_cb, L, &ms) < 0)
			die("event_base_once failed");
		return;
	}
	conn_next(L);
}

static void
conn_fail(struct conn *c, int code)
{
	struct load *L = c->L;
	L->failed++;
	L->fail_by_stage[c->stage]++;
	L->fail_codes[code >= 100 && code < 600 ? code / 100 : 0]++;
	conn_free(c);
}

static void
conn_finish(struct conn *c)
{
	struct load *L = c->L;
	if (c->wrong)
		L->auth_rejected++;
	else
		L->ok++;
	samples_add(&L->sess_lat, now_s() - c->t_start);
	/* A clean end after 221: OpenSSL would otherwise mark the session
	 * (the ticket we keep for the next handshake) not resumable. */
	if (c->ssl != NULL)
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	conn_free(c);
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct load *L = SSL_get_app_data(ssl);
	if (!L->o.resume)
		return 0;
	if (L->last_session != NULL)
		SSL_SESSION_free(L->last_session);
	L->last_session = sess;
	return 1; /* we keep the reference */
}

/* A non-blocking TCP socket for the next session, bound to its source
 * address when --sources spreads them (see the top of the file). */
static int
conn_socket(struct load *L)
{
	static unsigned long next;
	int fd = socket(L->o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (L->o.sources > 0 && L->o.addr.ss_family == AF_INET) {
		unsigned i = (unsigned)(next++ % L->o.sources);
		struct sockaddr_in src = {.sin_family = AF_INET};
		src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((i / 250) << 8) | (i % 250 + 1));
		/* The port is picked at connect(), knowing the destination. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Put the connection under TLS: after STARTTLS's 220 on c->fd, or for
 * implicit TLS (c->fd < 0) on a new connection. */
static int
conn_tls(struct conn *c)
{
	struct load *L = c->L;
	bool implicit = c->fd < 0;
	if (implicit && (c->fd = conn_socket(L)) < 0)
		return -1;
	SSL *ssl = SSL_new(L->ssl_ctx);
	if (ssl == NULL)
		return -1;
	SSL_set_app_data(ssl, L);
	if (L->o.resume && L->last_session != NULL)
		SSL_set_session(ssl, L->last_session);
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	        L->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	c->bev = bev;
	c->ssl = ssl;
	bufferevent_setcb(bev, conn_read_cb, NULL, conn_event_cb, c);
	struct timeval tv = {L->o.timeout, 0};
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	c->stage = ST_TLS;
	if (implicit) {
		if (bufferevent_socket_connect(bev, (struct sockaddr *)&L->o.addr,
		                               (int)L->o.addrlen) < 0)
			return -1;
	}
	return 0;
}

static void
conn_auth(struct conn *c)
{
	struct load *L = c->L;
	char login[256], pass[256];
	c->t_auth = now_s();
	c->stage = ST_AUTH;
	if (strcmp(L->o.mech, "PLAIN") == 0) {
		unsigned char raw[600];
		char enc[820];
		conn_login(c, login, sizeof(login));
		conn_password(c, pass, sizeof(pass));
		size_t ll = strlen(login), pl = strlen(pass);
		raw[0] = '\0';
		memcpy(raw + 1, login, ll);
		raw[1 + ll] = '\0';
		memcpy(raw + 2 + ll, pass, pl);
		b64(raw, 2 + ll + pl, enc);
		conn_send(c, "AUTH PLAIN %s\r\n", enc);
	} else {
		conn_send(c, "AUTH LOGIN\r\n");
	}
}

static void
conn_mail(struct conn *c)
{
	struct load *L = c->L;
	c->stage = ST_MAIL;
	c->rcpt_done = 0;
	conn_send(c, "MAIL FROM:<%s> SIZE=%zu\r\n", L->o.from, L->o.size + 200);
}

static void
conn_after_auth(struct conn *c)
{
	if (c->L->o.messages == 0) {
		c->stage = ST_QUIT;
		conn_send(c, "QUIT\r\n");
		return;
	}
	conn_mail(c);
}

/* One whole reply has arrived, with its code. Returns false if the
 * connection was freed. */
static bool
conn_reply(struct conn *c, int code)
{
	struct load *L = c->L;
	char buf[256];

	switch (c->stage) {
	case ST_GREETING:
		if (code != 220)
			goto fail;
		if (L->o.idle > 0) {
			c->stage = ST_IDLE;
			L->idle_open++;
			return true;
		}
		c->stage = ST_EHLO;
		conn_send(c, "EHLO %s\r\n", L->o.ehlo);
		return true;
	case ST_EHLO:
		if (code != 250)
			goto fail;
		if (L->o.tls == TLS_STARTTLS) {
			c->stage = ST_STARTTLS;
			conn_send(c, "STARTTLS\r\n");
			return true;
		}
		goto authenticate;
	case ST_STARTTLS: {
		if (code != 220)
			goto fail;
		/* Nothing may follow the 220 in plaintext (RFC 3207 4.2). */
		bufferevent_free(c->bev); /* plain one: does not own the fd */
		c->bev = NULL;
		if (conn_tls(c) != 0)
			goto fail;
		return false; /* a new bufferevent: stop reading the old one */
	}
	case ST_EHLO2:
		if (code != 250)
			goto fail;
	authenticate:
		if (L->o.mech == NULL) {
			conn_after_auth(c);
			return true;
		}
		conn_auth(c);
		return true;
	case ST_AUTH:
		if (strcmp(L->o.mech, "LOGIN") == 0) {
			if (code != 334)
				goto fail;
			c->stage = ST_AUTH_USER;
			conn_login(c, buf, sizeof(buf));
			char enc[400];
			b64((const unsigned char *)buf, strlen(buf), enc);
			conn_send(c, "%s\r\n", enc);
			return true;
		}
		goto auth_result;
	case ST_AUTH_USER: {
		if (code != 334)
			goto fail;
		c->stage = ST_AUTH_PASS;
		conn_password(c, buf, sizeof(buf));
		char enc[400];
		b64((const unsigned char *)buf, strlen(buf), enc);
		conn_send(c, "%s\r\n", enc);
		return true;
	}
	case ST_AUTH_PASS:
	auth_result:
		samples_add(&L->auth_lat, now_s() - c->t_auth);
		if (c->wrong) {
			if (code != 535)
				goto fail;
			c->stage = ST_QUIT;
			conn_send(c, "QUIT\r\n");
			return true;
		}
		if (code != 235)
			goto fail;
		conn_after_auth(c);
		return true;
	case ST_MAIL:
		if (code != 250)
			goto fail;
		c->stage = ST_RCPT;
		conn_send(c, "RCPT TO:<rcpt%u@%s>\r\n", c->rcpt_done, L->o.rcpt_domain);
		return true;
	case ST_RCPT:
		if (code != 250)
			goto fail;
		if (++c->rcpt_done < L->o.rcpts) {
			conn_send(c, "RCPT TO:<rcpt%u@%s>\r\n", c->rcpt_done, L->o.rcpt_domain);
			return true;
		}
		c->stage = ST_DATA;
		conn_send(c, "DATA\r\n");
		return true;
	case ST_DATA:
		if (code != 354)
			goto fail;
		c->stage = ST_MESSAGE;
		send_message(c);
		return true;
	case ST_MESSAGE:
		if (code != 250)
			goto fail;
		L->messages++;
		if (++c->msg_done < L->o.messages) {
			conn_mail(c);
			return true;
		}
		c->stage = ST_QUIT;
		conn_send(c, "QUIT\r\n");
		return true;
	case ST_QUIT:
		if (code != 221)
			goto fail;
		conn_finish(c);
		return false;
	default:
		goto fail;
	}
fail:
	if (getenv("SMTP_LOAD_DEBUG"))
		fprintf(stderr, "smtp_load: stage %s got %d\n", stage_names[c->stage], code);
	conn_fail(c, code);
	return false;
}

/* Plaintext: write what the replies just read made us send, now, in one
 * writev. A bufferevent would register EV_WRITE, wait a loop round, write and
 * unregister: two epoll_ctl calls and a round per command, which made the
 * load generator cost more CPU per session than the server it measures (and
 * it shares the machine's cores with it). Only what the socket cannot take
 * is left to the bufferevent. TLS connections keep the bufferevent's path. */
static void
conn_flush(struct conn *c)
{
	if (c->ssl != NULL || c->bev == NULL)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) == 0)
		return;
	/* A socket bufferevent freezes its output's front; thaw it for the
	 * write, as libevent does around its own. */
	evbuffer_unfreeze(out, 1);
	int n = evbuffer_write(out, c->fd);
	evbuffer_freeze(out, 1);
	if (n < 0 || evbuffer_get_length(out) > 0)
		bufferevent_enable(c->bev, EV_WRITE); /* it writes the rest or reports */
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > 8192)
				conn_fail(c, 0);
			else
				conn_flush(c);
			return;
		}
		int code = -1;
		bool last = false;
		if (len >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
		    line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
		    (len == 3 || line[3] == ' ' || line[3] == '-')) {
			code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
			last = len == 3 || line[3] == ' ';
		}
		free(line);
		if (code < 0) {
			conn_fail(c, 0);
			return;
		}
		if (!last)
			continue;
		if (c->stage == ST_IDLE) {
			conn_fail(c, code); /* the server spoke while idle: a 421 */
			return;
		}
		if (!conn_reply(c, code))
			return;
	}
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->stage == ST_CONNECT) {
			c->stage = ST_GREETING;
			/* From here conn_flush() writes (plaintext). */
			bufferevent_disable(bev, EV_WRITE);
			return;
		}
		if (c->stage == ST_TLS) {
			c->L->tls_handshakes++;
			if (SSL_session_reused(c->ssl))
				c->L->tls_resumed++;
			c->tls_up = true;
			if (c->L->o.tls == TLS_IMPLICIT) {
				c->stage = ST_GREETING;
			} else {
				c->stage = ST_EHLO2;
				conn_send(c, "EHLO %s\r\n", c->L->o.ehlo);
			}
		}
		return;
	}
	if (getenv("SMTP_LOAD_DEBUG")) {
		unsigned long e = c->ssl ? bufferevent_get_openssl_error(bev) : 0;
		fprintf(stderr, "smtp_load: stage %s event 0x%x errno %d ssl %s\n",
		        stage_names[c->stage], what, errno, e ? ERR_error_string(e, NULL) : "-");
	}
	conn_fail(c, 0);
}

static void conn_start_here(struct load *L);

static void
conn_start(struct load *L)
{
	L->starting = true;
	conn_start_here(L);
	L->starting = false;
}

static void
conn_start_here(struct load *L)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		die("out of memory");
	c->L = L;
	c->fd = -1;
	c->t_start = now_s();
	c->stage = ST_CONNECT;
	L->started++;
	L->active++;
	uint64_t r = L->o.sequential ? L->started - 1 : rng_next(L);
	c->user = L->o.user_lo + (unsigned long)(r % (L->o.user_hi - L->o.user_lo + 1));
	c->wrong = L->o.wrong > 0 && (double)(rng_next(L) >> 11) / 9007199254740992.0 < L->o.wrong;

	if (L->o.tls == TLS_IMPLICIT) {
		if (conn_tls(c) != 0)
			conn_fail(c, 0);
		return;
	}
	int fd = conn_socket(L);
	if (fd < 0) {
		if (getenv("SMTP_LOAD_DEBUG"))
			fprintf(stderr, "smtp_load: socket: %s\n", strerror(errno));
		conn_fail(c, 0);
		return;
	}
	c->fd = fd;
	c->bev = bufferevent_socket_new(L->base, fd, 0);
	if (c->bev == NULL)
		die("bufferevent_socket_new failed");
	bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
	struct timeval tv = {L->o.timeout, 0};
	bufferevent_set_timeouts(c->bev, L->o.idle > 0 ? NULL : &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&L->o.addr, (int)L->o.addrlen) <
	    0) {
		if (getenv("SMTP_LOAD_DEBUG"))
			fprintf(stderr, "smtp_load: connect: %s\n", strerror(errno));
		conn_fail(c, 0);
		return;
	}
}

/* ------------------------------------------------------------- output */

static void
print_latency(FILE *f, const char *name, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_u32);
	fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}", name,
	        s->n, samples_pct(s, 50), samples_pct(s, 90), samples_pct(s, 99),
	        s->n ? s->v[s->n - 1] / 1000.0 : 0.0);
}

static const char *
tls_name(enum tls_mode m)
{
	return m == TLS_NONE ? "none" : m == TLS_STARTTLS ? "starttls" : "implicit";
}

static void
print_result(struct load *L)
{
	double elapsed = L->t_last - L->t0;
	if (elapsed <= 0)
		elapsed = 1e-9;
	printf("{\"tool\":\"smtp_load\",\"target\":\"%s\",\"tls\":\"%s\",\"mech\":\"%s\","
	       "\"concurrency\":%u,\"messages_per_session\":%u,\"size\":%zu,\"rcpts\":%u,"
	       "\"wrong_share\":%.3f,\"elapsed_s\":%.3f,\"sessions_started\":%lu,"
	       "\"sessions_ok\":%lu,\"sessions_auth_rejected\":%lu,\"sessions_failed\":%lu,"
	       "\"messages\":%lu,\"sessions_per_s\":%.1f,\"messages_per_s\":%.1f,"
	       "\"tls_handshakes\":%lu,\"tls_resumed\":%lu,",
	       L->o.addr_str, tls_name(L->o.tls), L->o.mech ? L->o.mech : "none", L->o.concurrency,
	       L->o.messages, L->o.size, L->o.rcpts, L->o.wrong, elapsed, L->started, L->ok,
	       L->auth_rejected, L->failed, L->messages,
	       (double)(L->ok + L->auth_rejected) / elapsed, (double)L->messages / elapsed,
	       L->tls_handshakes, L->tls_resumed);
	print_latency(stdout, "auth_ms", &L->auth_lat);
	putchar(',');
	print_latency(stdout, "session_ms", &L->sess_lat);
	printf(",\"failures\":{");
	bool first = true;
	for (int st = 0; st < ST_COUNT; st++) {
		/* The three AUTH steps share one name: add them up once. */
		if (st == ST_AUTH_USER || st == ST_AUTH_PASS)
			continue;
		unsigned long n = L->fail_by_stage[st];
		if (st == ST_AUTH)
			n += L->fail_by_stage[ST_AUTH_USER] + L->fail_by_stage[ST_AUTH_PASS];
		printf("%s\"%s\":%lu", first ? "" : ",", stage_names[st], n);
		first = false;
	}
	printf("},\"failure_replies\":{\"none\":%lu,\"2xx\":%lu,\"3xx\":%lu,\"4xx\":%lu,"
	       "\"5xx\":%lu},\"cut_off\":%lu}\n",
	       L->fail_codes[0], L->fail_codes[2], L->fail_codes[3], L->fail_codes[4],
	       L->fail_codes[5], L->cut_off);
	fflush(stdout);
}

/* ------------------------------------------------------------- idle mode */

static void
idle_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load *L = arg;
	/* Keep opening until N are started; report once every one answered. */
	while (L->active < L->o.concurrency + L->idle_open && L->started < L->o.idle)
		conn_start(L);
	if (!L->idle_reported && L->idle_open + L->failed >= L->o.idle) {
		L->idle_reported = true;
		printf("{\"tool\":\"smtp_load\",\"mode\":\"idle\",\"target\":\"%s\","
		       "\"idle_requested\":%lu,\"idle_open\":%lu,\"failed\":%lu,"
		       "\"open_s\":%.3f}\n",
		       L->o.addr_str, L->o.idle, L->idle_open, L->failed, now_s() - L->t0);
		fflush(stdout);
		struct timeval tv = {(time_t)L->o.hold,
		                     (suseconds_t)((L->o.hold - (double)(time_t)L->o.hold) * 1e6)};
		event_add(L->ev_hold, &tv);
		return;
	}
	if (now_s() - L->t0 > L->o.time_bound) {
		fprintf(stderr, "smtp_load: idle: only %lu of %lu open after %.0f s\n",
		        L->idle_open, L->o.idle, L->o.time_bound);
		event_base_loopexit(L->base, NULL);
	}
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load *L = arg;
	event_base_loopexit(L->base, NULL);
}

/* ------------------------------------------------------------- options */

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

static void
parse_address(struct opts *o, const char *arg)
{
	char host[128];
	const char *port;
	if (arg[0] == '[') {
		const char *end = strchr(arg, ']');
		if (end == NULL || end[1] != ':' || (size_t)(end - arg - 1) >= sizeof(host))
			die("bad address %s (want [::1]:PORT)", arg);
		memcpy(host, arg + 1, (size_t)(end - arg - 1));
		host[end - arg - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(arg, ':');
		if (colon == NULL || (size_t)(colon - arg) >= sizeof(host))
			die("bad address %s (want HOST:PORT)", arg);
		memcpy(host, arg, (size_t)(colon - arg));
		host[colon - arg] = '\0';
		port = colon + 1;
	}
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		die("bad address %s (numeric loopback address and port)", arg);
	if (!is_loopback(res->ai_addr))
		die("%s is not a loopback address: this tool only loads local servers", host);
	memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
	o->addrlen = res->ai_addrlen;
	o->addr_str = arg;
	freeaddrinfo(res);
}

static void
usage(void)
{
	fputs("usage: smtp_load -a HOST:PORT [options]\n"
	      "  -a, --address HOST:PORT  target, loopback only (127.0.0.0/8, ::1)\n"
	      "  -c, --concurrency N      sessions in flight (1)\n"
	      "  -n, --sessions N         total sessions, 0 = until the time bound (1000)\n"
	      "  -t, --time SECONDS       time bound (60)\n"
	      "  -T, --tls MODE           none | starttls | implicit (none)\n"
	      "  -M, --mech MECH          PLAIN | LOGIN | none (PLAIN)\n"
	      "  -u, --user FMT           login, printf format of the user number (user%05lu)\n"
	      "  -p, --password FMT       password, same (pw-%05lu)\n"
	      "  -r, --range LO-HI        user numbers (0-9999)\n"
	      "  -w, --wrong SHARE        share of sessions with a wrong password, 0..1 (0)\n"
	      "  -m, --messages N         messages per session (1)\n"
	      "  -s, --size BYTES         message size (4096)\n"
	      "  -R, --rcpts N            recipients per message (1)\n"
	      "  -F, --from ADDR          envelope sender (bench@example.test)\n"
	      "  -D, --rcpt-domain DOM    recipient domain (sink.test)\n"
	      "  -e, --ehlo NAME          EHLO name (smtp-load.test)\n"
	      "      --sequential         users in turn from LO to HI (cache warm-up), not at "
	      "random\n"
	      "      --no-resume          no TLS session resumption\n"
	      "      --timeout SECONDS    per reply (30)\n"
	      "      --idle N             open N idle connections (greeting read), report, hold\n"
	      "      --hold SECONDS       how long --idle holds them (600; SIGTERM ends it)\n"
	      "      --sources N          IPv4: connect from N addresses 127.1.x.y (64; 0 = "
	      "127.0.0.1)\n",
	      stderr);
	exit(2);
}

static void
parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"address", required_argument, NULL, 'a'},
	        {"concurrency", required_argument, NULL, 'c'},
	        {"sessions", required_argument, NULL, 'n'},
	        {"time", required_argument, NULL, 't'},
	        {"tls", required_argument, NULL, 'T'},
	        {"mech", required_argument, NULL, 'M'},
	        {"user", required_argument, NULL, 'u'},
	        {"password", required_argument, NULL, 'p'},
	        {"range", required_argument, NULL, 'r'},
	        {"wrong", required_argument, NULL, 'w'},
	        {"messages", required_argument, NULL, 'm'},
	        {"size", required_argument, NULL, 's'},
	        {"rcpts", required_argument, NULL, 'R'},
	        {"from", required_argument, NULL, 'F'},
	        {"rcpt-domain", required_argument, NULL, 'D'},
	        {"ehlo", required_argument, NULL, 'e'},
	        {"no-resume", no_argument, NULL, 1},
	        {"timeout", required_argument, NULL, 2},
	        {"idle", required_argument, NULL, 3},
	        {"hold", required_argument, NULL, 4},
	        {"sequential", no_argument, NULL, 5},
	        {"sources", required_argument, NULL, 6},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	*o = (struct opts){
	        .concurrency = 1,
	        .sessions = 1000,
	        .time_bound = 60,
	        .tls = TLS_NONE,
	        .mech = "PLAIN",
	        .user_fmt = "user%05lu",
	        .pass_fmt = "pw-%05lu",
	        .user_lo = 0,
	        .user_hi = 9999,
	        .messages = 1,
	        .size = 4096,
	        .rcpts = 1,
	        .from = "bench@example.test",
	        .rcpt_domain = "sink.test",
	        .ehlo = "smtp-load.test",
	        .resume = true,
	        .hold = 600,
	        .timeout = 30,
	        .sources = 64,
	};
	bool have_addr = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "a:c:n:t:T:M:u:p:r:w:m:s:R:F:D:e:h", longopts,
	                         NULL)) != -1) {
		switch (ch) {
		case 'a':
			parse_address(o, optarg);
			have_addr = true;
			break;
		case 'c':
			o->concurrency = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			o->sessions = strtoul(optarg, NULL, 10);
			break;
		case 't':
			o->time_bound = strtod(optarg, NULL);
			break;
		case 'T':
			if (strcmp(optarg, "none") == 0)
				o->tls = TLS_NONE;
			else if (strcmp(optarg, "starttls") == 0)
				o->tls = TLS_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				o->tls = TLS_IMPLICIT;
			else
				usage();
			break;
		case 'M':
			if (strcasecmp(optarg, "PLAIN") == 0)
				o->mech = "PLAIN";
			else if (strcasecmp(optarg, "LOGIN") == 0)
				o->mech = "LOGIN";
			else if (strcasecmp(optarg, "none") == 0)
				o->mech = NULL;
			else
				usage();
			break;
		case 'u':
			o->user_fmt = optarg;
			break;
		case 'p':
			o->pass_fmt = optarg;
			break;
		case 'r':
			if (sscanf(optarg, "%lu-%lu", &o->user_lo, &o->user_hi) != 2 ||
			    o->user_hi < o->user_lo)
				usage();
			break;
		case 'w':
			o->wrong = strtod(optarg, NULL);
			break;
		case 'm':
			o->messages = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			o->size = strtoul(optarg, NULL, 10);
			break;
		case 'R':
			o->rcpts = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'F':
			o->from = optarg;
			break;
		case 'D':
			o->rcpt_domain = optarg;
			break;
		case 'e':
			o->ehlo = optarg;
			break;
		case 1:
			o->resume = false;
			break;
		case 2:
			o->timeout = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 3:
			o->idle = strtoul(optarg, NULL, 10);
			break;
		case 4:
			o->hold = strtod(optarg, NULL);
			break;
		case 5:
			o->sequential = true;
			break;
		case 6:
			o->sources = (unsigned)strtoul(optarg, NULL, 10);
			if (o->sources > 250 * 250)
				usage();
			break;
		default:
			usage();
		}
	}
	if (!have_addr || optind != argc)
		usage();
	if (o->concurrency == 0 || o->time_bound <= 0 || o->rcpts == 0 || o->wrong < 0 ||
	    o->wrong > 1 || o->timeout == 0)
		usage();
	if (o->tls == TLS_IMPLICIT && o->idle > 0)
		die("--idle holds plaintext connections only");
	/* Login and password formats take the user number as an unsigned long. */
	char probe[256];
	if (fmt_user(o->user_fmt, 1, probe, sizeof(probe)) != 0 ||
	    fmt_user(o->pass_fmt, 1, probe, sizeof(probe)) != 0)
		die("--user and --password need one %%lu-style conversion");
}

int
main(int argc, char **argv)
{
	struct load L = {0};
	parse_opts(&L.o, argc, argv);
	signal(SIGPIPE, SIG_IGN);

	/* Many idle connections need many descriptors: take the hard limit. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	L.base = event_base_new();
	if (L.base == NULL)
		die("event_base_new failed");
	L.rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	if (L.o.tls != TLS_NONE) {
		L.ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (L.ssl_ctx == NULL)
			die("SSL_CTX_new failed");
		SSL_CTX_set_verify(L.ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_min_proto_version(L.ssl_ctx, TLS1_2_VERSION);
		/* The client side of resumption: keep the tickets we are given. */
		SSL_CTX_set_session_cache_mode(L.ssl_ctx, SSL_SESS_CACHE_CLIENT |
		                                                  SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(L.ssl_ctx, new_session_cb);
	}
	build_body(&L);

	L.ev_sig_term = evsignal_new(L.base, SIGTERM, stop_cb, &L);
	L.ev_sig_int = evsignal_new(L.base, SIGINT, stop_cb, &L);
	event_add(L.ev_sig_term, NULL);
	event_add(L.ev_sig_int, NULL);

	L.t0 = now_s();
	L.t_last = L.t0;
	if (L.o.idle > 0) {
		L.ev_hold = evtimer_new(L.base, stop_cb, &L);
		L.ev_check = event_new(L.base, -1, EV_PERSIST, idle_check_cb, &L);
		struct timeval tv = {0, 20000};
		event_add(L.ev_check, &tv);
		event_base_dispatch(L.base);
		return L.idle_reported && L.failed == 0 ? 0 : 1;
	}
	/* A hard deadline for sessions still running after the time bound. */
	struct event *deadline = evtimer_new(L.base, stop_cb, &L);
	struct timeval dl = {(time_t)L.o.time_bound + 2 * (time_t)L.o.timeout, 0};
	event_add(deadline, &dl);
	for (unsigned i = 0; i < L.o.concurrency && load_more(&L); i++)
		conn_start(&L);
	event_base_dispatch(L.base);
	if (L.active > 0) {
		/* Cut off by the hard deadline: those sessions failed. */
		L.failed += L.active;
		L.cut_off = L.active;
		L.t_last = now_s();
	}
	print_result(&L);
	return L.failed == 0 ? 0 : 1;
}
