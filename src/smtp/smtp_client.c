/* SPDX-License-Identifier: ISC */
/*
 * smtp_client.c - one asynchronous SMTP client connection (smtp_client.h),
 * used by the SMTP-forwarding auth source and by the queue's delivery agent.
 *
 * Everything the caller asks for is an entry in one FIFO, answered by the
 * next reply in order: the connect (answered by the greeting), each command,
 * EHLO, STARTTLS (answered once TLS is up) and a message transfer (answered
 * by the reply to the final "."). Entries are written to the wire by
 * sc_flush(): one at a time, or several when the server announced PIPELINING
 * and none of them must end a group (RFC 2920 3.1).
 *
 * Nothing blocks: the socket is a libevent bufferevent, swapped for a
 * bufferevent_openssl one for implicit TLS (RFC 8314) and after STARTTLS's
 * 220 (RFC 3207). One timer bounds whatever we wait for (connect and
 * handshake, greeting, the reply at the head of the FIFO, the message's
 * progress). Failures are delivered on the next loop turn by sc_fail_cb(),
 * so no callback ever runs inside a call the caller made.
 *
 * Replies are read line by line and bounded before they are buffered
 * (max_reply_line, max_reply_lines); a malformed one (bad code, code changing
 * inside a multi-line reply, NUL byte, over a bound) ends the connection with
 * SMTP_CLIENT_PROTOCOL.
 *
 * Secrets: a line sent with smtp_client_command_secret() is never logged
 * nor traced; our copy and libevent's output chain holding it are wiped once
 * written (OpenSSL's own record buffer is beyond our reach).
 *
 * The handshake (smtp_client_handshake) is a chain of entries like any
 * caller's: the connect, EHLO, maybe HELO, STARTTLS and EHLO again, each
 * queued from the callback of the one before (sc_hs_*), and one callback to
 * the caller when it ends. Its state lives in the client, so freeing the
 * client in the middle of it leaves nothing behind.
 */
#include "smtp_client.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/wbatch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

/* RFC 5321 4.5.3.1.4 allows 512 for a command line; we allow more for long
 * addresses with parameters. AUTH lines may be up to 12288 (RFC 4954 4). */
#define SC_MAX_COMMAND 2048
#define SC_MAX_SECRET_LINE 12288
/* Message streaming: refill the output below LOW, stop above HIGH. */
#define SC_MSG_LOW 32768
#define SC_MSG_HIGH 131072
#define SC_MSG_CHUNK 16384

enum sc_state {
	SC_NEW,           /* created, connect() not called */
	SC_CONNECTING,    /* TCP connect in progress */
	SC_TLS_HANDSHAKE, /* implicit TLS, or after STARTTLS's 220 */
	SC_GREETING,      /* waiting for the 220 */
	SC_READY,         /* greeted: entries flow */
	SC_MESSAGE,       /* streaming a message body */
	SC_CLOSED,        /* failed or done; pending entries get c->fail_status */
};

static const char *const sc_state_names[] = {
        "new", "connecting", "tls_handshake", "greeting", "ready", "message", "closed",
};

enum sc_kind { SCK_CONNECT, SCK_COMMAND, SCK_EHLO, SCK_STARTTLS, SCK_MESSAGE };

struct sc_entry {
	TAILQ_ENTRY(sc_entry) entry;
	enum sc_kind kind;
	char *line; /* COMMAND, EHLO, STARTTLS: the line with CRLF */
	size_t len;
	bool secret;
	char *shown;    /* a secret line: what a trace shows instead */
	bool group_end; /* RFC 2920 3.1: nothing may follow it before its reply */
	bool sent;      /* on the wire (MESSAGE: the final "." queued) */
	smtp_client_cb *cb;
	void *arg;
	/* STARTTLS */
	SSL_CTX *ctx;
	char *servername;
	bool verify;
	/* MESSAGE */
	int fd;
	off_t offset;
};

TAILQ_HEAD(sc_queue, sc_entry);

struct sc_ext {
	char *keyword; /* upper-cased */
	char *params;  /* "" if none */
};

struct smtp_client {
	struct event_base *base;
	struct smtp_client_params p;
	char *log_id;
	enum sc_state state;
	int fd;
	bool bev_owns_fd; /* the TLS bufferevent closes the fd and frees the SSL */
	struct bufferevent *bev;
	/* Plaintext: commands of a round leave in one write, without EV_WRITE
	 * registration (lib/wbatch.h). NULL before the connect and under TLS. */
	struct wbatch *wb;
	struct event *timer;
	struct event *fail_ev; /* delivers failures on the next loop turn */
	struct event *tls_ev;  /* swaps in the TLS bufferevent outside its callback */
	enum smtp_client_status fail_status;
	struct sc_queue queue;
	unsigned in_cb;
	bool free_pending;
	/* Pending TLS start (implicit or STARTTLS). */
	SSL_CTX *tls_ctx;
	char *tls_name;
	bool tls_verify;
	char *tls_reply_text; /* STARTTLS's 220, delivered once TLS is up */
	struct smtp_reply tls_reply;
	/* The reply being read. */
	char *line; /* max_reply_line + 1 */
	char *text; /* joined lines, grows up to text_cap */
	size_t text_len, text_cap;
	size_t n_lines;
	int code;
	char enhanced[16];
	/* EHLO extensions, from the last 250 to EHLO. */
	struct sc_ext *ext;
	size_t n_ext;
	bool pipelining;
	/* Message streaming. */
	bool msg_line_start, msg_last_cr;
	char tls_info[96];
	char peer[INET6_ADDRSTRLEN + 8];
	smtp_client_trace_cb *trace;
	void *trace_arg;
	/* The handshake (smtp_client_handshake), from its start to its end. */
	struct {
		smtp_client_hs_cb *cb;
		void *arg;
		enum smtp_client_tls tls;
		SSL_CTX *ctx;
		char *helo_name, *tls_name;
		bool verify, helo_fallback;
		smtp_client_greeting_cb *check_greeting;
		void *check_arg;
		enum smtp_client_step step;
	} hs;
};

static void sc_read_cb(struct bufferevent *bev, void *arg);
static void sc_write_cb(struct bufferevent *bev, void *arg);
static void sc_event_cb(struct bufferevent *bev, short what, void *arg);
static void sc_flush(struct smtp_client *c);
static void sc_destroy(struct smtp_client *c);
static void sc_tls_swap_cb(evutil_socket_t fd, short what, void *arg);

static void
sc_set_state(struct smtp_client *c, enum sc_state st)
{
	if (c->state != st)
		log_debug("%s smtp_client state %s -> %s", c->log_id, sc_state_names[c->state],
		          sc_state_names[st]);
	c->state = st;
}

static void AR_PRINTF(2, 3) sc_trace(const struct smtp_client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->trace(c->trace_arg, line);
}

static void
sc_timer_arm(struct smtp_client *c, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};

	evtimer_add(c->timer, &tv);
}

static void
sc_entry_free(struct sc_entry *e)
{
	if (e->line != NULL) {
		if (e->secret)
			explicit_bzero(e->line, e->len);
		free(e->line);
	}
	free(e->servername);
	free(e->shown);
	free(e);
}

static void
sc_close_transport(struct smtp_client *c)
{
	wbatch_free(c->wb);
	c->wb = NULL;
	if (c->bev != NULL) {
		/* A plain bufferevent does not own the fd: detach it first, so
		 * that libevent's deferred finalization never touches the fd
		 * we close below. (Freeing is allowed inside the bufferevent's
		 * own callback.) */
		if (!c->bev_owns_fd)
			bufferevent_setfd(c->bev, -1);
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->fd >= 0 && !c->bev_owns_fd)
		close(c->fd);
	c->fd = -1;
	c->bev_owns_fd = false;
	evtimer_del(c->timer);
	event_del(c->tls_ev);
}

/* End the connection; every entry still queued (and every one queued later)
 * gets status on the next loop turn. */
static void
sc_fail(struct smtp_client *c, enum smtp_client_status status, const char *why)
{
	static const char *const names[] = {"ok", "timeout", "conn_failed", "tls_failed",
	                                    "protocol"};

	if (c->state == SC_CLOSED)
		return;
	if (!TAILQ_EMPTY(&c->queue) || status != SMTP_CLIENT_CONN_FAILED)
		log_info("%s peer=%s connection ended status=%s state=%s: %s", c->log_id, c->peer,
		         names[status], sc_state_names[c->state], why);
	else
		log_debug("%s peer=%s connection closed while idle: %s", c->log_id, c->peer, why);
	sc_set_state(c, SC_CLOSED);
	c->fail_status = status;
	sc_close_transport(c);
	if (!TAILQ_EMPTY(&c->queue))
		event_active(c->fail_ev, EV_TIMEOUT, 1);
}

/* Run one entry's callback. Returns false if the client was freed meanwhile
 * (or is to be freed): the caller must not touch c again. */
static bool
sc_call(struct smtp_client *c, struct sc_entry *e, enum smtp_client_status status,
        const struct smtp_reply *reply)
{
	c->in_cb++;
	e->cb(c, status, reply, e->arg);
	c->in_cb--;
	sc_entry_free(e);
	if (c->free_pending) {
		if (c->in_cb == 0)
			sc_destroy(c);
		return false;
	}
	return true;
}

static void
sc_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	struct sc_entry *e;

	while ((e = TAILQ_FIRST(&c->queue)) != NULL) {
		TAILQ_REMOVE(&c->queue, e, entry);
		if (!sc_call(c, e, c->fail_status, NULL))
			return;
	}
}

static void
sc_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	sc_fail(c, SMTP_CLIENT_TIMEOUT, "timed out");
}

struct smtp_client *
smtp_client_new(struct event_base *base, const struct smtp_client_params *p)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->p = *p;
	if (c->p.connect_timeout == 0)
		c->p.connect_timeout = 30;
	if (c->p.greeting_timeout == 0)
		c->p.greeting_timeout = 300;
	if (c->p.command_timeout == 0)
		c->p.command_timeout = 300;
	if (c->p.data_timeout == 0)
		c->p.data_timeout = 600;
	if (c->p.max_reply_line < 64)
		c->p.max_reply_line = c->p.max_reply_line == 0 ? 4096 : 64;
	if (c->p.max_reply_lines == 0)
		c->p.max_reply_lines = 200;
	c->log_id = xstrdup(p->log_id != NULL ? p->log_id : "smtp");
	c->p.log_id = c->log_id;
	c->fd = -1;
	c->state = SC_NEW;
	TAILQ_INIT(&c->queue);
	c->timer = evtimer_new(base, sc_timeout_cb, c);
	c->fail_ev = event_new(base, -1, 0, sc_fail_cb, c);
	c->tls_ev = event_new(base, -1, 0, sc_tls_swap_cb, c);
	c->line = xmalloc(c->p.max_reply_line + 1);
	snprintf(c->peer, sizeof(c->peer), "-");
	return c;
}

/* ------------------------------------------------------------ TLS */

/* Plan a TLS handshake on the connection: done from a fresh loop turn, so
 * the plain bufferevent is not freed under its own callback. */
static void
sc_tls_begin(struct smtp_client *c, SSL_CTX *ctx, const char *servername, bool verify)
{
	c->tls_ctx = ctx;
	free(c->tls_name);
	c->tls_name = servername != NULL && servername[0] != '\0' ? xstrdup(servername) : NULL;
	c->tls_verify = verify;
	wbatch_free(c->wb); /* the TLS bufferevent writes for itself */
	c->wb = NULL;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	sc_set_state(c, SC_TLS_HANDSHAKE);
	event_active(c->tls_ev, EV_TIMEOUT, 1);
}

static void
sc_tls_swap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	SSL *ssl;

	if (c->state != SC_TLS_HANDSHAKE || c->bev == NULL)
		return;
	ssl = smtp_client_tls_ssl_new(c->tls_ctx, c->tls_name, c->tls_verify);
	if (ssl == NULL) {
		sc_fail(c, SMTP_CLIENT_TLS_FAILED, "cannot create a TLS session");
		return;
	}
	/* The plain bufferevent does not own the fd: detach it, so that its
	 * deferred finalization leaves the fd to the TLS one. */
	bufferevent_setfd(c->bev, -1);
	bufferevent_free(c->bev);
	c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		SSL_free(ssl);
		sc_fail(c, SMTP_CLIENT_TLS_FAILED, "cannot set up TLS on the connection");
		return;
	}
	c->bev_owns_fd = true;
	/* Servers often close without close_notify after QUIT's 221. */
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, sc_read_cb, sc_write_cb, sc_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* Implicit TLS: the connect timer still runs. */
	if (!evtimer_pending(c->timer, NULL))
		sc_timer_arm(c, c->p.connect_timeout);
}

/* Why the handshake failed, for the log. */
static void
sc_tls_error(struct smtp_client *c, char *buf, size_t bufsz)
{
	smtp_client_tls_error(c->bev, buf, bufsz);
}

/* ------------------------------------------------------------ TLS helpers */

static bool
sc_is_ip_literal(const char *s)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

SSL *
smtp_client_tls_ssl_new(SSL_CTX *ctx, const char *name, bool verify)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (name != NULL && name[0] != '\0') {
		if (sc_is_ip_literal(name)) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
		} else {
			/* RFC 6066 3: SNI carries host names only. */
			SSL_set_tlsext_host_name(ssl, name);
			SSL_set1_host(ssl, name);
		}
	}
	SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ssl;
}

void
smtp_client_tls_error(struct bufferevent *bev, char *buf, size_t bufsz)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e = bufferevent_get_openssl_error(bev);
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (vr != X509_V_OK)
		snprintf(buf, bufsz, "TLS handshake failed: certificate: %s",
		         X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(buf, bufsz, "TLS handshake failed: %s",
		         ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
		                                            : "unknown OpenSSL error");
	else
		snprintf(buf, bufsz, "TLS handshake failed: connection closed");
	ERR_clear_error();
}

/* ------------------------------------------------------------ replies */

static void
sc_text_append(struct smtp_client *c, const char *s, size_t n)
{
	if (c->text_len + n + 2 > c->text_cap) {
		size_t cap = c->text_cap == 0 ? 256 : c->text_cap;
		while (cap < c->text_len + n + 2)
			cap *= 2;
		c->text = xrealloc(c->text, cap);
		c->text_cap = cap;
	}
	if (c->n_lines > 0)
		c->text[c->text_len++] = '\n';
	memcpy(c->text + c->text_len, s, n);
	c->text_len += n;
	c->text[c->text_len] = '\0';
}

/* "5.7.8" at the start of the first line, in the reply's class (RFC 3463). */
static void
sc_parse_enhanced(struct smtp_client *c, const char *t)
{
	const char *p = t;
	int parts = 0;

	c->enhanced[0] = '\0';
	if (p[0] != '0' + c->code / 100 || p[1] != '.')
		return;
	p += 2;
	for (parts = 0; parts < 2; parts++) {
		size_t n = 0;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n < 1 || n > 3)
			return;
		p += n;
		if (parts == 0) {
			if (*p != '.')
				return;
			p++;
		}
	}
	if (*p != '\0' && *p != ' ')
		return;
	memcpy(c->enhanced, t, (size_t)(p - t));
	c->enhanced[p - t] = '\0';
}

static void
sc_ext_clear(struct smtp_client *c)
{
	for (size_t i = 0; i < c->n_ext; i++) {
		free(c->ext[i].keyword);
		free(c->ext[i].params);
	}
	free(c->ext);
	c->ext = NULL;
	c->n_ext = 0;
	c->pipelining = false;
}

/* A 250 to EHLO: one extension per line after the first (RFC 5321 4.1.1.1).
 * "AUTH=LOGIN PLAIN" (pre-RFC 4954 servers) counts as AUTH when no proper
 * AUTH line came. */
static void
sc_ext_parse(struct smtp_client *c, const char *text)
{
	const char *p = strchr(text, '\n'), *legacy_auth = NULL;
	size_t legacy_len = 0;

	sc_ext_clear(c);
	while (p != NULL) {
		const char *line = p + 1, *end = strchr(line, '\n'), *kw_end, *params;
		size_t len;

		if (end == NULL)
			end = line + strlen(line);
		p = *end == '\n' ? end : NULL;
		while (line < end && *line == ' ')
			line++;
		len = (size_t)(end - line);
		if (len == 0)
			continue;
		kw_end = memchr(line, ' ', len);
		if (kw_end == NULL)
			kw_end = end;
		if (kw_end - line > 5 && ascii_strncasecmp(line, "AUTH=", 5) == 0) {
			legacy_auth = line + 5;
			legacy_len = (size_t)(end - legacy_auth);
			continue;
		}
		params = kw_end;
		while (params < end && *params == ' ')
			params++;
		c->ext = xrealloc(c->ext, (c->n_ext + 1) * sizeof(*c->ext));
		c->ext[c->n_ext].keyword = xstrndup(line, (size_t)(kw_end - line));
		for (char *k = c->ext[c->n_ext].keyword; *k != '\0'; k++)
			if (*k >= 'a' && *k <= 'z')
				*k -= 'a' - 'A';
		c->ext[c->n_ext].params = xstrndup(params, (size_t)(end - params));
		c->n_ext++;
	}
	if (legacy_auth != NULL && !smtp_client_has_ext(c, "AUTH", NULL)) {
		c->ext = xrealloc(c->ext, (c->n_ext + 1) * sizeof(*c->ext));
		c->ext[c->n_ext].keyword = xstrdup("AUTH");
		c->ext[c->n_ext].params = xstrndup(legacy_auth, legacy_len);
		c->n_ext++;
	}
	c->pipelining = smtp_client_has_ext(c, "PIPELINING", NULL);
}

static unsigned
sc_entry_timeout(const struct smtp_client *c, const struct sc_entry *e)
{
	if (e->kind == SCK_CONNECT)
		return c->p.greeting_timeout;
	if (e->kind == SCK_MESSAGE)
		return c->p.data_timeout;
	return c->p.command_timeout;
}

/* A whole reply is in c->code/text/n_lines: hand it to the head entry.
 * Returns false if c must not be touched any more. */
static bool
sc_reply_done(struct smtp_client *c)
{
	struct sc_entry *e = TAILQ_FIRST(&c->queue);
	struct smtp_reply r;
	char esc[256];

	memset(&r, 0, sizeof(r));
	r.code = c->code;
	memcpy(r.enhanced, c->enhanced, sizeof(r.enhanced));
	r.text = c->text != NULL ? c->text : "";
	r.n_lines = c->n_lines;
	c->n_lines = 0;
	c->text_len = 0;

	if (e == NULL || !(e->sent || (e->kind == SCK_MESSAGE && c->state == SC_MESSAGE))) {
		/* RFC 5321 3.8: a 421 may come at any time; anything else
		 * unasked for means we are out of step. */
		log_info("%s peer=%s unexpected reply %d \"%s\"", c->log_id, c->peer, r.code,
		         log_escape_str(r.text, esc, sizeof(esc)));
		sc_fail(c, r.code == 421 ? SMTP_CLIENT_CONN_FAILED : SMTP_CLIENT_PROTOCOL,
		        "reply without a command");
		return false;
	}
	evtimer_del(c->timer);
	if (e->kind == SCK_CONNECT) {
		sc_set_state(c, SC_READY);
	} else if (e->kind == SCK_EHLO) {
		if (r.code == 250)
			sc_ext_parse(c, r.text);
	} else if (e->kind == SCK_STARTTLS && r.code == 220) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		if (evbuffer_get_length(in) > 0) {
			/* RFC 3207 5 / CVE-2011-0411: what came with the 220
			 * would be taken as said under TLS. */
			sc_fail(c, SMTP_CLIENT_PROTOCOL, "data after the 220 to STARTTLS");
			return false;
		}
		free(c->tls_reply_text);
		c->tls_reply_text = xstrdup(r.text);
		c->tls_reply = r;
		c->tls_reply.text = c->tls_reply_text;
		sc_tls_begin(c, e->ctx, e->servername, e->verify);
		return false; /* the entry stays at the head until TLS is up */
	} else if (e->kind == SCK_MESSAGE && c->state == SC_MESSAGE) {
		/* The server answered before the final ".": the rest of the
		 * message would be read as commands. */
		TAILQ_REMOVE(&c->queue, e, entry);
		sc_fail(c, SMTP_CLIENT_PROTOCOL, "reply before the end of the message");
		c->in_cb++;
		e->cb(c, SMTP_CLIENT_OK, &r, e->arg);
		c->in_cb--;
		sc_entry_free(e);
		if (c->free_pending && c->in_cb == 0)
			sc_destroy(c);
		return false;
	}
	TAILQ_REMOVE(&c->queue, e, entry);
	if (!sc_call(c, e, SMTP_CLIENT_OK, &r))
		return false;
	if (c->state != SC_READY)
		return false;
	e = TAILQ_FIRST(&c->queue);
	if (e != NULL && e->sent)
		sc_timer_arm(c, sc_entry_timeout(c, e));
	sc_flush(c);
	return c->state == SC_READY || c->state == SC_MESSAGE;
}

/* One line of a reply (CRLF removed). PARSE_OK: the reply is complete. */
static enum parse_result
sc_reply_line(struct smtp_client *c, const char *line, size_t len)
{
	int code;
	const char *text;
	size_t tlen;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    line[2] < '0' || line[2] > '9')
		return PARSE_INVALID;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return PARSE_INVALID;
	if (memchr(line, '\0', len) != NULL)
		return PARSE_INVALID;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (c->n_lines > 0 && code != c->code)
		return PARSE_INVALID; /* RFC 5321 4.2.1: one code per reply */
	if (c->n_lines >= c->p.max_reply_lines)
		return PARSE_INVALID;
	text = len > 4 ? line + 4 : "";
	tlen = len > 4 ? len - 4 : 0;
	if (c->n_lines == 0) {
		c->code = code;
		c->text_len = 0;
	}
	sc_text_append(c, text, tlen);
	if (c->n_lines == 0)
		sc_parse_enhanced(c, c->text);
	c->n_lines++;
	return len > 3 && line[3] == '-' ? PARSE_AGAIN : PARSE_OK;
}

static void
sc_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char esc[200];

	while (c->state == SC_GREETING || c->state == SC_READY || c->state == SC_MESSAGE) {
		size_t eol_len = 0, len;
		struct evbuffer_ptr eol =
		        evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		enum parse_result pr;

		if (eol.pos < 0) {
			/* The bound applies before the line is complete. */
			if (evbuffer_get_length(in) > c->p.max_reply_line + 1)
				sc_fail(c, SMTP_CLIENT_PROTOCOL, "reply line too long");
			return;
		}
		len = (size_t)eol.pos;
		if (len > c->p.max_reply_line) {
			sc_fail(c, SMTP_CLIENT_PROTOCOL, "reply line too long");
			return;
		}
		evbuffer_remove(in, c->line, len);
		evbuffer_drain(in, eol_len);
		c->line[len] = '\0';
		log_debug("%s s< %s", c->log_id, log_escape(c->line, len, esc, sizeof(esc)));
		if (c->trace != NULL) {
			char tesc[600];
			sc_trace(c, "S: %s", log_escape(c->line, len, tesc, sizeof(tesc)));
		}
		pr = sc_reply_line(c, c->line, len);
		if (pr == PARSE_INVALID) {
			sc_fail(c, SMTP_CLIENT_PROTOCOL,
			        c->n_lines >= c->p.max_reply_lines ? "too many reply lines"
			                                           : "malformed reply line");
			return;
		}
		if (pr == PARSE_OK && !sc_reply_done(c))
			return;
	}
}

/* ------------------------------------------------------------ sending */

static void
sc_wipe_cleanup(const void *data, size_t len, void *extra)
{
	explicit_bzero((void *)data, len);
	free((void *)data);
}

static void
sc_send_line(struct smtp_client *c, struct sc_entry *e)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char esc[200];

	if (c->trace != NULL) {
		char tesc[600];
		sc_trace(c, "C: %s",
		         e->secret ? (e->shown != NULL ? e->shown : "********")
		                   : log_escape(e->line, e->len - 2, tesc, sizeof(tesc)));
	}
	if (e->secret) {
		log_debug("%s c> (a secret line of %zu octets, not logged)", c->log_id, e->len - 2);
		/* libevent frees the chain once written: ours wipes first. */
		if (evbuffer_add_reference(out, e->line, e->len, sc_wipe_cleanup, NULL) == 0) {
			e->line = NULL;
			return;
		}
	} else {
		log_debug("%s c> %s", c->log_id, log_escape(e->line, e->len - 2, esc, sizeof(esc)));
	}
	evbuffer_add(out, e->line, e->len);
}

/* Append the transformed bytes of the message to the output: CRLF line ends,
 * a dot doubled at the start of a line (RFC 5321 4.5.2). */
static void
sc_msg_transform(struct smtp_client *c, const char *in, size_t n, struct evbuffer *out)
{
	char buf[2 * SC_MSG_CHUNK + 4];
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (c->msg_line_start && ch == '.')
			buf[o++] = '.';
		c->msg_line_start = false;
		if (ch == '\n') {
			if (!c->msg_last_cr)
				buf[o++] = '\r';
			buf[o++] = '\n';
			c->msg_line_start = true;
			c->msg_last_cr = false;
		} else {
			buf[o++] = ch;
			c->msg_last_cr = ch == '\r';
		}
		if (o >= sizeof(buf) - 4) {
			evbuffer_add(out, buf, o);
			o = 0;
		}
	}
	evbuffer_add(out, buf, o);
}

/* Fill the output with the message until HIGH or its end. */
static void
sc_msg_pump(struct smtp_client *c)
{
	struct sc_entry *e = TAILQ_FIRST(&c->queue);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char chunk[SC_MSG_CHUNK];

	while (evbuffer_get_length(out) < SC_MSG_HIGH) {
		ssize_t n = pread(e->fd, chunk, sizeof(chunk), e->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			char why[128];
			snprintf(why, sizeof(why), "reading the message: %s", strerror(errno));
			log_err("%s %s", c->log_id, why);
			/* A truncated message must not get its final dot. */
			sc_fail(c, SMTP_CLIENT_CONN_FAILED, why);
			return;
		}
		if (n == 0) {
			if (!c->msg_line_start)
				evbuffer_add(out, c->msg_last_cr ? "\n" : "\r\n",
				             c->msg_last_cr ? 1 : 2);
			evbuffer_add(out, ".\r\n", 3);
			log_debug("%s c> (message, up to offset %lld) .", c->log_id,
			          (long long)e->offset);
			e->sent = true;
			sc_set_state(c, SC_READY);
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
			sc_timer_arm(c, c->p.data_timeout);
			return;
		}
		e->offset += n;
		sc_msg_transform(c, chunk, (size_t)n, out);
	}
	/* RFC 5321 4.5.3.2.5: a data block may take 3 minutes; we use
	 * data_timeout for each refill. */
	sc_timer_arm(c, c->p.data_timeout);
}

/* Put queued entries on the wire as far as the server lets us. */
static void
sc_flush(struct smtp_client *c)
{
	bool outstanding = false;
	struct sc_entry *e;

	if (c->state != SC_READY || c->bev == NULL)
		return;
	TAILQ_FOREACH(e, &c->queue, entry)
	{
		if (e->sent) {
			if (!c->pipelining || e->group_end)
				return;
			outstanding = true;
			continue;
		}
		if (e->kind == SCK_MESSAGE) {
			if (outstanding)
				return;
			c->msg_line_start = true;
			c->msg_last_cr = false;
			sc_set_state(c, SC_MESSAGE);
			bufferevent_setwatermark(c->bev, EV_WRITE, SC_MSG_LOW, 0);
			sc_msg_pump(c);
			return;
		}
		if (e->kind != SCK_COMMAND && outstanding)
			return; /* EHLO, STARTTLS: after every earlier reply */
		sc_send_line(c, e);
		e->sent = true;
		if (!outstanding)
			sc_timer_arm(c, sc_entry_timeout(c, e));
		if (!c->pipelining || e->group_end)
			return;
		outstanding = true;
	}
}

static void
sc_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	if (c->state == SC_MESSAGE)
		sc_msg_pump(c);
}

static void
sc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	unsigned long ossl_err;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == SC_CONNECTING) {
			struct sc_entry *e = TAILQ_FIRST(&c->queue);
			if (e != NULL && e->kind == SCK_CONNECT && e->ctx != NULL) {
				sc_tls_begin(c, e->ctx, e->servername, e->verify);
				return;
			}
			evtimer_del(c->timer);
			c->wb = wbatch_new(bev);
			sc_set_state(c, SC_GREETING);
			sc_timer_arm(c, c->p.greeting_timeout);
			/* libevent may have run the read callback first. */
			sc_read_cb(bev, c);
			return;
		}
		if (c->state == SC_TLS_HANDSHAKE) {
			SSL *ssl = bufferevent_openssl_get_ssl(bev);
			struct sc_entry *e = TAILQ_FIRST(&c->queue);

			evtimer_del(c->timer);
			snprintf(c->tls_info, sizeof(c->tls_info), "%s %s", SSL_get_version(ssl),
			         SSL_get_cipher_name(ssl));
			log_debug("%s peer=%s TLS up: %s", c->log_id, c->peer, c->tls_info);
			if (c->trace != NULL)
				sc_trace(c, "TLS: %s (certificate %s%s)", c->tls_info,
				         !c->tls_verify        ? "not verified"
				         : c->tls_name != NULL ? "verified for "
				                               : "verified",
				         c->tls_verify && c->tls_name != NULL ? c->tls_name : "");
			/* RFC 3207 4.2: forget what the server said before TLS. */
			sc_ext_clear(c);
			if (e != NULL && e->kind == SCK_CONNECT) {
				sc_set_state(c, SC_GREETING);
				sc_timer_arm(c, c->p.greeting_timeout);
				sc_read_cb(bev, c); /* a greeting may already be there */
				return;
			}
			sc_set_state(c, SC_READY);
			if (e != NULL && e->kind == SCK_STARTTLS) {
				TAILQ_REMOVE(&c->queue, e, entry);
				if (!sc_call(c, e, SMTP_CLIENT_OK, &c->tls_reply))
					return;
			}
			if (c->state != SC_READY)
				return;
			e = TAILQ_FIRST(&c->queue);
			if (e != NULL && e->sent)
				sc_timer_arm(c, sc_entry_timeout(c, e));
			sc_flush(c);
			return;
		}
		return;
	}
	if (c->state == SC_TLS_HANDSHAKE) {
		sc_tls_error(c, why, sizeof(why));
		sc_fail(c, SMTP_CLIENT_TLS_FAILED, why);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		sc_fail(c, SMTP_CLIENT_CONN_FAILED, "connection closed by the server");
		return;
	}
	if (c->state == SC_CONNECTING)
		snprintf(why, sizeof(why), "connect: %s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else if (c->bev_owns_fd && (ossl_err = bufferevent_get_openssl_error(bev)) != 0)
		snprintf(why, sizeof(why), "TLS: %s",
		         ERR_reason_error_string(ossl_err) != NULL
		                 ? ERR_reason_error_string(ossl_err)
		                 : "error");
	else
		snprintf(why, sizeof(why), "%s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	ERR_clear_error();
	sc_fail(c, SMTP_CLIENT_CONN_FAILED, why);
}

/* ------------------------------------------------------------ API */

int
smtp_client_connect(struct smtp_client *c, const struct sockaddr *addr, socklen_t addrlen,
                    SSL_CTX *implicit_tls, const char *servername, bool verify, smtp_client_cb *cb,
                    void *arg)
{
	struct sc_entry *e;
	char host[INET6_ADDRSTRLEN];
	int port = 0;

	if (c->state != SC_NEW || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return -1;
	if (addr->sa_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	else
		port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
	net_addr_str(addr, host, sizeof(host));
	snprintf(c->peer, sizeof(c->peer), addr->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
	         port);

	c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		log_err("%s socket: %s", c->log_id, strerror(errno));
		return -1;
	}
	c->bev = bufferevent_socket_new(c->base, c->fd, 0);
	if (c->bev == NULL) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	bufferevent_setcb(c->bev, sc_read_cb, sc_write_cb, sc_event_cb, c);
	/* Refused comes back as an event; other immediate errors here. */
	if (bufferevent_socket_connect(c->bev, addr, (int)addrlen) < 0) {
		log_info("%s peer=%s connect: %s", c->log_id, c->peer, strerror(errno));
		bufferevent_free(c->bev);
		c->bev = NULL;
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);

	e = xcalloc(1, sizeof(*e));
	e->kind = SCK_CONNECT;
	e->sent = true;
	e->group_end = true;
	e->cb = cb;
	e->arg = arg;
	e->ctx = implicit_tls;
	e->servername = servername != NULL ? xstrdup(servername) : NULL;
	e->verify = verify;
	e->fd = -1;
	TAILQ_INSERT_TAIL(&c->queue, e, entry);
	sc_set_state(c, SC_CONNECTING);
	sc_timer_arm(c, c->p.connect_timeout);
	return 0;
}

/* RFC 2920 3.1: only these may be followed by more commands before their
 * reply; everything else ends a group. */
static bool
sc_pipelinable(const char *line)
{
	static const char *const verbs[] = {"RSET", "MAIL", "RCPT", "SEND", "SOML", "SAML"};

	for (size_t i = 0; i < AR_NELEM(verbs); i++) {
		if (ascii_strncasecmp(line, verbs[i], 4) == 0 &&
		    (line[4] == ' ' || line[4] == '\0'))
			return true;
	}
	return false;
}

static struct sc_entry *
sc_enqueue(struct smtp_client *c, enum sc_kind kind, const char *line, bool secret,
           const char *shown, smtp_client_cb *cb, void *arg)
{
	struct sc_entry *e = xcalloc(1, sizeof(*e));
	size_t len = line != NULL ? strlen(line) : 0;

	e->kind = kind;
	e->cb = cb;
	e->arg = arg;
	e->secret = secret;
	e->shown = shown != NULL ? xstrdup(shown) : NULL;
	e->fd = -1;
	e->group_end = kind != SCK_COMMAND || secret || !sc_pipelinable(line);
	if (line != NULL) {
		e->line = xmalloc(len + 3);
		memcpy(e->line, line, len);
		memcpy(e->line + len, "\r\n", 3);
		e->len = len + 2;
	}
	TAILQ_INSERT_TAIL(&c->queue, e, entry);
	if (line != NULL && (len > (secret ? SC_MAX_SECRET_LINE : SC_MAX_COMMAND) ||
	                     strpbrk(line, "\r\n") != NULL)) {
		/* A caller bug or hostile data that got this far: never let
		 * it inject a second command. */
		log_err("%s refusing to send a command line with CR/LF or over %d octets",
		        c->log_id, secret ? SC_MAX_SECRET_LINE : SC_MAX_COMMAND);
		sc_fail(c, SMTP_CLIENT_PROTOCOL, "invalid command line");
		return e;
	}
	if (c->state == SC_CLOSED)
		event_active(c->fail_ev, EV_TIMEOUT, 1);
	else
		sc_flush(c);
	return e;
}

void
smtp_client_command(struct smtp_client *c, const char *line, smtp_client_cb *cb, void *arg)
{
	sc_enqueue(c, SCK_COMMAND, line, false, NULL, cb, arg);
}

void
smtp_client_command_secret(struct smtp_client *c, const char *line, const char *shown,
                           smtp_client_cb *cb, void *arg)
{
	sc_enqueue(c, SCK_COMMAND, line, true, shown, cb, arg);
}

void
smtp_client_ehlo(struct smtp_client *c, const char *name, smtp_client_cb *cb, void *arg)
{
	char line[512];

	snprintf(line, sizeof(line), "EHLO %s", name);
	sc_enqueue(c, SCK_EHLO, line, false, NULL, cb, arg);
}

bool
smtp_client_has_ext(const struct smtp_client *c, const char *keyword, const char **param_r)
{
	for (size_t i = 0; i < c->n_ext; i++) {
		if (ascii_strcasecmp(c->ext[i].keyword, keyword) == 0) {
			if (param_r != NULL)
				*param_r = c->ext[i].params;
			return true;
		}
	}
	return false;
}

void
smtp_client_starttls(struct smtp_client *c, SSL_CTX *ctx, const char *servername, bool verify,
                     smtp_client_cb *cb, void *arg)
{
	struct sc_entry *e;

	/* Set the TLS fields before the entry can be flushed. */
	e = xcalloc(1, sizeof(*e));
	e->kind = SCK_STARTTLS;
	e->cb = cb;
	e->arg = arg;
	e->fd = -1;
	e->group_end = true;
	e->line = xstrdup("STARTTLS\r\n");
	e->len = 10;
	e->ctx = ctx;
	e->servername = servername != NULL ? xstrdup(servername) : NULL;
	e->verify = verify;
	TAILQ_INSERT_TAIL(&c->queue, e, entry);
	if (c->state == SC_CLOSED)
		event_active(c->fail_ev, EV_TIMEOUT, 1);
	else if (c->tls_info[0] != '\0')
		sc_fail(c, SMTP_CLIENT_PROTOCOL, "STARTTLS on a TLS connection");
	else
		sc_flush(c);
}

void
smtp_client_send_message(struct smtp_client *c, int fd, off_t offset, smtp_client_cb *cb, void *arg)
{
	struct sc_entry *e = xcalloc(1, sizeof(*e));

	e->kind = SCK_MESSAGE;
	e->cb = cb;
	e->arg = arg;
	e->fd = fd;
	e->offset = offset;
	e->group_end = true;
	TAILQ_INSERT_TAIL(&c->queue, e, entry);
	if (c->state == SC_CLOSED)
		event_active(c->fail_ev, EV_TIMEOUT, 1);
	else
		sc_flush(c);
}

const char *
smtp_client_tls_info(const struct smtp_client *c)
{
	return c->tls_info[0] != '\0' ? c->tls_info : NULL;
}

const char *
smtp_client_peer(const struct smtp_client *c)
{
	return c->peer;
}

bool
smtp_client_idle(const struct smtp_client *c)
{
	return c->state == SC_READY && TAILQ_EMPTY(&c->queue) && !c->free_pending;
}

static void
sc_destroy(struct smtp_client *c)
{
	struct sc_entry *e;

	sc_close_transport(c);
	while ((e = TAILQ_FIRST(&c->queue)) != NULL) {
		TAILQ_REMOVE(&c->queue, e, entry);
		sc_entry_free(e);
	}
	event_free(c->timer);
	event_free(c->fail_ev);
	event_free(c->tls_ev);
	sc_ext_clear(c);
	free(c->tls_name);
	free(c->tls_reply_text);
	free(c->hs.helo_name);
	free(c->hs.tls_name);
	free(c->line);
	free(c->text);
	free(c->log_id);
	free(c);
}

void
smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->in_cb > 0) {
		/* Inside one of our callbacks: sc_call() frees on return. */
		c->free_pending = true;
		return;
	}
	sc_destroy(c);
}

void
smtp_client_set_trace(struct smtp_client *c, smtp_client_trace_cb *cb, void *arg)
{
	c->trace = cb;
	c->trace_arg = arg;
}

/* ------------------------------------------------------------ handshake */

static void sc_hs_ehlo_cb(struct smtp_client *c, enum smtp_client_status st,
                          const struct smtp_reply *r, void *arg);

/* Tell the caller how it ended. Runs inside an entry's callback (sc_call), so
 * the caller may free the client: nothing touches c after this. */
static void
sc_hs_end(struct smtp_client *c, enum smtp_client_hs_outcome outcome,
          enum smtp_client_status status, const struct smtp_reply *reply, int starttls_refused)
{
	struct smtp_client_hs_result res = {
	        .outcome = outcome,
	        .step = c->hs.step,
	        .status = status,
	        .reply = reply,
	        .starttls_refused = starttls_refused,
	        .esmtp = c->hs.step != SMTP_CLIENT_STEP_HELO,
	};
	smtp_client_hs_cb *cb = c->hs.cb;

	c->hs.cb = NULL;
	cb(c, &res, c->hs.arg);
}

static void
sc_hs_ehlo(struct smtp_client *c, enum smtp_client_step step)
{
	c->hs.step = step;
	smtp_client_ehlo(c, c->hs.helo_name, sc_hs_ehlo_cb, c);
}

static void
sc_hs_greeting_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
                  void *arg)
{
	if (st != SMTP_CLIENT_OK)
		sc_hs_end(c, SMTP_CLIENT_HS_FAILED, st, NULL, 0);
	else if (r->code != 220) /* 421 busy, 554 no service here */
		sc_hs_end(c, SMTP_CLIENT_HS_REFUSED, st, r, 0);
	else if (c->hs.check_greeting != NULL && !c->hs.check_greeting(c->hs.check_arg, r))
		sc_hs_end(c, SMTP_CLIENT_HS_REJECTED, st, r, 0);
	else
		sc_hs_ehlo(c, SMTP_CLIENT_STEP_EHLO);
}

static void
sc_hs_helo_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
              void *arg)
{
	if (st != SMTP_CLIENT_OK)
		sc_hs_end(c, SMTP_CLIENT_HS_FAILED, st, NULL, 0);
	else if (r->code != 250)
		sc_hs_end(c, SMTP_CLIENT_HS_REFUSED, st, r, 0);
	else if (c->hs.tls == SMTP_CLIENT_TLS_STARTTLS)
		sc_hs_end(c, SMTP_CLIENT_HS_NO_ESMTP, st, NULL, 0); /* no STARTTLS without ESMTP */
	else
		sc_hs_end(c, SMTP_CLIENT_HS_READY, st, NULL, 0);
}

static void
sc_hs_starttls_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
                  void *arg)
{
	if (st != SMTP_CLIENT_OK)
		sc_hs_end(c, SMTP_CLIENT_HS_FAILED, st, NULL, 0);
	else if (r->code == 220) /* TLS is up: RFC 3207 4.2, ask again */
		sc_hs_ehlo(c, SMTP_CLIENT_STEP_EHLO_TLS);
	else if (c->hs.tls == SMTP_CLIENT_TLS_MAY)
		sc_hs_end(c, SMTP_CLIENT_HS_READY, st, NULL, r->code);
	else
		sc_hs_end(c, SMTP_CLIENT_HS_REFUSED, st, r, 0);
}

static void
sc_hs_ehlo_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
              void *arg)
{
	bool want_tls = c->hs.tls == SMTP_CLIENT_TLS_MAY || c->hs.tls == SMTP_CLIENT_TLS_STARTTLS;

	if (st != SMTP_CLIENT_OK) {
		sc_hs_end(c, SMTP_CLIENT_HS_FAILED, st, NULL, 0);
		return;
	}
	if (r->code != 250) {
		if (c->hs.step == SMTP_CLIENT_STEP_EHLO && c->hs.helo_fallback && r->code >= 500) {
			char line[512];

			/* RFC 5321 3.2: an old server; HELO it is. */
			snprintf(line, sizeof(line), "HELO %s", c->hs.helo_name);
			c->hs.step = SMTP_CLIENT_STEP_HELO;
			smtp_client_command(c, line, sc_hs_helo_cb, c);
			return;
		}
		sc_hs_end(c, SMTP_CLIENT_HS_REFUSED, st, r, 0);
		return;
	}
	if (c->hs.step == SMTP_CLIENT_STEP_EHLO && want_tls) {
		if (smtp_client_has_ext(c, "STARTTLS", NULL)) {
			c->hs.step = SMTP_CLIENT_STEP_STARTTLS;
			smtp_client_starttls(c, c->hs.ctx, c->hs.tls_name, c->hs.verify,
			                     sc_hs_starttls_cb, c);
			return;
		}
		if (c->hs.tls == SMTP_CLIENT_TLS_STARTTLS) {
			sc_hs_end(c, SMTP_CLIENT_HS_NO_STARTTLS, st, NULL, 0);
			return;
		}
	}
	sc_hs_end(c, SMTP_CLIENT_HS_READY, st, NULL, 0);
}

int
smtp_client_handshake(struct smtp_client *c, const struct sockaddr *addr, socklen_t addrlen,
                      const struct smtp_client_handshake *hs, smtp_client_hs_cb *cb, void *arg)
{
	bool implicit = hs->tls == SMTP_CLIENT_TLS_IMPLICIT;

	if (c->state != SC_NEW)
		return -1;
	c->hs.cb = cb;
	c->hs.arg = arg;
	c->hs.tls = hs->tls;
	c->hs.ctx = hs->tls_ctx;
	c->hs.helo_name = xstrdup(hs->helo_name);
	c->hs.tls_name = hs->tls_name != NULL ? xstrdup(hs->tls_name) : NULL;
	c->hs.verify = hs->tls_verify;
	c->hs.helo_fallback = hs->helo_fallback;
	c->hs.check_greeting = hs->check_greeting;
	c->hs.check_arg = hs->check_arg;
	c->hs.step = SMTP_CLIENT_STEP_GREETING;
	return smtp_client_connect(c, addr, addrlen, implicit ? hs->tls_ctx : NULL,
	                           implicit ? hs->tls_name : NULL, hs->tls_verify,
	                           sc_hs_greeting_cb, c);
}

SSL_CTX *
smtp_client_tls_ctx_new(const char *ca_file, bool verify, const char **error_r)
{
	static char err[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		*error_r = "cannot create a TLS context";
		return NULL;
	}
	if (!verify) {
		/* Each connection also says SSL_VERIFY_NONE (sc_tls_swap_cb). */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			unsigned long e = ERR_get_error();
			snprintf(err, sizeof(err), "cannot load %s: %s", ca_file,
			         ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
			                                            : "unknown error");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			*error_r = err;
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ERR_clear_error();
		SSL_CTX_free(ctx);
		*error_r = "cannot load the system's CA certificates";
		return NULL;
	}
	return ctx;
}
