/*
 * auth_forward.c - the "forward" auth source ([smtp-forward]): a login is
 * verified by AUTH on an upstream SMTP server the organization already runs
 * (Exchange, Domino, Sendmail, Postfix...), whose answer decides. Outside
 * the daemon, auth_forward.h runs one check with a trace (test-auth).
 *
 * One verification, step by step (all on the auth process's event loop,
 * through src/smtp/smtp_client.c):
 *   1. Pick the upstreams to try: those of `upstreams` in order, skipping one
 *      that failed in the last `failure_memory` seconds (if all did, all are
 *      tried). Take a ready pre-connected session to the first one if there
 *      is one (`preconnect`); else open one if fewer than `max_sessions` are
 *      open; else wait in a FIFO of `queue_size` (full: tempfail, busy).
 *   2. Connect (implicit TLS first with tls = implicit), read the greeting
 *      (a 220 that carries our own banner is a loop), EHLO, then with
 *      tls = starttls: STARTTLS, the handshake (certificate verified against
 *      ca_file and tls_name), EHLO again (RFC 3207 4.2).
 *   3. AUTH with the first of `mechanisms` the upstream offers: PLAIN with
 *      an initial response (RFC 4616, RFC 4954 4), or LOGIN (two 334
 *      prompts). Login and password go byte for byte, base64-encoded.
 *   4. The answer: 235 -> ok; a 5xx to AUTH -> fail (535 5.7.8 to the
 *      client); anything temporary -> tempfail (454 4.7.0), never fail.
 *      QUIT, and the session is closed.
 *
 * Temporary failures and failover: a refused or dropped connection, a TLS
 * failure, a non-220 greeting (421), a loop, a 4xx, no usable AUTH: the
 * upstream is marked down for `failure_memory` seconds and the next one is
 * tried. A timeout (connect, greeting or reply) ends the verification with
 * tempfail at once: the client has waited long enough, and the next logins
 * skip that upstream.
 *
 * Reasons: ok, upstream_rejected, upstream_tempfail, upstream_timeout,
 * upstream_unavailable, upstream_tls, upstream_protocol, upstream_no_auth,
 * upstream_loop, busy, queue_timeout, mech_unavailable, nul_in_password.
 *
 * Secrets: the login and password are copied into the request, wiped when it
 * ends; AUTH lines go through smtp_client_command_secret() (never logged,
 * wiped once written). Logs and traces name the upstream, never the
 * credentials.
 */
#include "auth_forward.h"
#include "auth_source.h"
#include "forward_config.h"
#include "../lib/base64.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../smtp/smtp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

/* A ready pre-connected session older than this is replaced: servers drop
 * idle clients after a few minutes (RFC 5321 4.5.3.2.7 suggests 5). */
#define FWD_POOL_MAX_IDLE_MS 60000
#define FWD_POOL_CHECK_S 10
/* AUTH PLAIN lines longer than this go without an initial response: a 334,
 * then the response alone (some servers cut long command lines). */
#define FWD_PLAIN_IR_MAX 1000
#define FWD_MAX_REPLY_LINE 2048
#define FWD_MAX_REPLY_LINES 100

enum fwd_state {
	FWD_CONNECTING, /* until the greeting */
	FWD_HANDSHAKE,  /* greeted: EHLO, STARTTLS, EHLO again */
	FWD_READY,      /* greeted and EHLO'd; in the pool or about to AUTH */
	FWD_AUTH,
	FWD_AUTH_USER, /* LOGIN: the login sent, waiting for the second 334 */
	FWD_AUTH_PASS, /* the password sent */
	FWD_QUIT,
};

static const char *const fwd_state_names[] = {
        "connecting", "handshake", "ready", "auth", "auth_user", "auth_pass", "quit",
};

struct fwd_request;

struct fwd_session {
	LIST_ENTRY(fwd_session) entry;       /* src->sessions */
	TAILQ_ENTRY(fwd_session) pool_entry; /* src->pool while in_pool */
	struct auth_forward *src;
	struct fwd_upstream *up;
	struct smtp_client *client;
	enum fwd_state state;
	struct fwd_request *req; /* NULL while pooled or quitting */
	bool pooled;             /* made ahead of a request, not yet used */
	bool from_pool;          /* was pooled, now serves a request */
	bool in_pool;
	int64_t ready_at;
	enum fwd_mech mech;
	bool plain_ir;
};

struct fwd_request {
	LIST_ENTRY(fwd_request) entry;       /* src->requests */
	TAILQ_ENTRY(fwd_request) wait_entry; /* src->waiting while waiting */
	struct auth_forward *src;
	char *login;
	char *secret;
	size_t secret_len;
	char session_id[64]; /* escaped, for log lines */
	auth_forward_done_cb *cb;
	void *arg;
	int64_t start;
	size_t cand[FWD_MAX_UPSTREAMS]; /* indexes into src->set.up, in order */
	size_t n_cand, next;            /* next candidate to try */
	struct fwd_session *sess;
	bool waiting;
	bool no_pool; /* a pooled session died under us: open a fresh one */
	unsigned attempts;
	/* The outcome, delivered by done_ev. */
	struct event *done_ev;
	bool finished;
	enum auth_result result;
	const char *reason;
	int code;
	char upstream[160]; /* who answered (or failed last) */
	const char *mech;   /* what went upstream, "-" before AUTH */
	char tls[96];
};

struct auth_forward {
	const struct config *cfg;
	struct event_base *base;
	struct fwd_settings set;
	SSL_CTX *ssl_ctx;
	struct smtp_client_handshake hs; /* each session's, but for tls_name */
	struct smtp_client_params params;
	LIST_HEAD(, fwd_session) sessions;
	unsigned n_sessions;
	TAILQ_HEAD(, fwd_session) pool;
	unsigned n_pooled; /* pooled sessions not yet used: connecting or ready */
	LIST_HEAD(, fwd_request) requests;
	TAILQ_HEAD(, fwd_request) waiting;
	unsigned n_waiting;
	struct event *queue_ev; /* run the waiting queue on the next turn */
	struct event *pool_ev;  /* top up the pool on the next turn */
	struct event *pool_timer;
	bool pool_started;
	int64_t pool_retry_at; /* no pre-connecting before (after a failure) */
	/* Our own greetings ("host ESMTP banner"): a loop if an upstream
	 * greets with one of them. */
	char **own_greetings;
	size_t n_own_greetings;
	auth_forward_trace_cb *trace;
	void *trace_arg;
};

static void fwd_session_close(struct fwd_session *s, bool polite);
static void fwd_request_attempt(struct fwd_request *req);
static void fwd_session_ready(struct fwd_session *s);
static void fwd_auth_cb(struct smtp_client *c, enum smtp_client_status st,
                        const struct smtp_reply *r, void *arg);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void AR_PRINTF(2, 3) fwd_trace(const struct auth_forward *src, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (src->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	src->trace(src->trace_arg, line);
}

/* ------------------------------------------------------------ health */

static bool
fwd_up_down(const struct auth_forward *src, const struct fwd_upstream *u, int64_t now)
{
	return u->down_until > now;
}

static void
fwd_mark_down(struct auth_forward *src, struct fwd_upstream *u, const char *why)
{
	if (src->set.failure_memory == 0)
		return;
	if (u->down_until <= now_ms())
		log_warn("auth: forward upstream=%s addr=%s marked down for %us: %s", u->name,
		         u->addr_text, src->set.failure_memory, why);
	u->down_until = now_ms() + (int64_t)src->set.failure_memory * 1000;
	snprintf(u->down_why, sizeof(u->down_why), "%s", why);
}

static void
fwd_mark_up(struct fwd_upstream *u)
{
	if (u->down_until != 0 && u->down_until > now_ms())
		log_info("auth: forward upstream=%s addr=%s answers again", u->name, u->addr_text);
	u->down_until = 0;
}

/* The upstream new sessions go to first: the first healthy one. */
static struct fwd_upstream *
fwd_first_healthy(struct auth_forward *src)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < src->set.n_up; i++)
		if (!fwd_up_down(src, &src->set.up[i], now))
			return &src->set.up[i];
	return NULL;
}

/* ------------------------------------------------------------ requests */

static void
fwd_request_free(struct fwd_request *req)
{
	LIST_REMOVE(req, entry);
	if (req->waiting) {
		TAILQ_REMOVE(&req->src->waiting, req, wait_entry);
		req->src->n_waiting--;
	}
	if (req->login != NULL) {
		explicit_bzero(req->login, strlen(req->login));
		free(req->login);
	}
	if (req->secret != NULL) {
		explicit_bzero(req->secret, req->secret_len);
		free(req->secret);
	}
	event_free(req->done_ev);
	free(req);
}

static void
fwd_request_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fwd_request *req = arg;
	struct auth_forward *src = req->src;

	log_info("s=%s auth forward upstream=%s mech=%s result=%s reason=%s reply=%d ms=%ld "
	         "attempts=%u tls=%s",
	         req->session_id, req->upstream[0] != '\0' ? req->upstream : "none", req->mech,
	         auth_result_name(req->result), req->reason, req->code,
	         (long)(now_ms() - req->start), req->attempts, req->tls[0] ? req->tls : "none");
	fwd_trace(src, "result: %s reason=%s upstream=%s ms=%ld", auth_result_name(req->result),
	          req->reason, req->upstream[0] != '\0' ? req->upstream : "none",
	          (long)(now_ms() - req->start));
	auth_forward_done_cb *cb = req->cb;
	void *cb_arg = req->arg;
	enum auth_result result = req->result;
	const char *reason = req->reason;
	fwd_request_free(req);
	cb(cb_arg, result, reason);
}

/* The answer is known: deliver it on the next loop turn (never inside
 * auth_forward_check()). */
static void
fwd_request_finish(struct fwd_request *req, enum auth_result result, const char *reason, int code)
{
	if (req->finished)
		return;
	req->finished = true;
	req->result = result;
	req->reason = reason;
	req->code = code;
	if (req->sess != NULL) {
		req->sess->req = NULL;
		req->sess = NULL;
	}
	if (req->waiting) {
		TAILQ_REMOVE(&req->src->waiting, req, wait_entry);
		req->src->n_waiting--;
		req->waiting = false;
	}
	event_active(req->done_ev, EV_TIMEOUT, 1);
}

/* ------------------------------------------------------------ sessions */

static void
fwd_session_set_state(struct fwd_session *s, enum fwd_state st)
{
	if (s->state != st)
		log_debug("auth: forward upstream=%s session %s -> %s", s->up->name,
		          fwd_state_names[s->state], fwd_state_names[st]);
	s->state = st;
}

static void
fwd_schedule_queue(struct auth_forward *src)
{
	if (!TAILQ_EMPTY(&src->waiting))
		event_active(src->queue_ev, EV_TIMEOUT, 1);
}

static void
fwd_schedule_pool(struct auth_forward *src)
{
	if (src->pool_started && src->set.preconnect > 0)
		event_active(src->pool_ev, EV_TIMEOUT, 1);
}

static void
fwd_session_free(struct fwd_session *s)
{
	struct auth_forward *src = s->src;

	if (s->in_pool) {
		TAILQ_REMOVE(&src->pool, s, pool_entry);
		s->in_pool = false;
	}
	if (s->pooled)
		src->n_pooled--;
	LIST_REMOVE(s, entry);
	src->n_sessions--;
	/* Safe inside the client's own callback: its free is deferred. */
	smtp_client_free(s->client);
	free(s);
	fwd_schedule_queue(src);
	fwd_schedule_pool(src);
}

static void
fwd_quit_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
            void *arg)
{
	struct fwd_session *s = arg;

	fwd_session_free(s);
}

/* Done with s: QUIT (polite) and free on its reply, or close now. */
static void
fwd_session_close(struct fwd_session *s, bool polite)
{
	if (s->in_pool) {
		TAILQ_REMOVE(&s->src->pool, s, pool_entry);
		s->in_pool = false;
	}
	if (s->pooled) {
		s->pooled = false;
		s->src->n_pooled--;
	}
	if (polite && smtp_client_idle(s->client)) {
		fwd_session_set_state(s, FWD_QUIT);
		smtp_client_command(s->client, "QUIT", fwd_quit_cb, s);
		return;
	}
	fwd_session_free(s);
}

/* The session cannot serve (its request): mark the upstream down and let
 * the request go on to the next upstream (failover) or end with tempfail. */
static void
fwd_session_fail(struct fwd_session *s, const char *reason, int code, bool failover,
                 const char *why)
{
	struct fwd_request *req = s->req;
	struct fwd_upstream *up = s->up;
	bool polite = s->state != FWD_CONNECTING && smtp_client_idle(s->client);

	log_info("auth: forward upstream=%s addr=%s %s: %s", up->name, up->addr_text,
	         req != NULL ? "failed" : "pre-connect failed", why);
	if (s->pooled) /* no reconnect storm, whatever failure_memory says */
		s->src->pool_retry_at = now_ms() + FWD_POOL_CHECK_S * 1000;
	fwd_trace(s->src, "upstream %s failed: %s", up->name, why);
	fwd_mark_down(s->src, up, why);
	s->req = NULL;
	fwd_session_close(s, polite);
	if (req == NULL)
		return;
	req->sess = NULL;
	snprintf(req->upstream, sizeof(req->upstream), "%s", up->name);
	req->code = code;
	if (failover && req->next < req->n_cand) {
		fwd_request_attempt(req);
		return;
	}
	fwd_request_finish(req, AUTH_TEMPFAIL, reason, code);
}

static void
fwd_session_status_fail(struct fwd_session *s, enum smtp_client_status st, const char *doing)
{
	char why[160];
	struct fwd_request *req = s->req;

	snprintf(why, sizeof(why), "%s: %s", doing,
	         st == SMTP_CLIENT_TIMEOUT       ? "timed out"
	         : st == SMTP_CLIENT_CONN_FAILED ? "connection failed or closed"
	         : st == SMTP_CLIENT_TLS_FAILED  ? "TLS handshake or certificate failed"
	                                         : "malformed or oversized reply");
	/* A pre-connected session may have been dropped while it waited
	 * (the server's idle timeout): that says nothing about the upstream.
	 * Try once more on a fresh connection. */
	if (req != NULL && s->from_pool && s->state == FWD_AUTH && st == SMTP_CLIENT_CONN_FAILED &&
	    !req->no_pool) {
		log_info("auth: forward upstream=%s a ready session was gone; reconnecting",
		         s->up->name);
		req->no_pool = true;
		req->next--;
		s->req = NULL;
		req->sess = NULL;
		fwd_session_close(s, false);
		fwd_request_attempt(req);
		return;
	}
	if (st == SMTP_CLIENT_TIMEOUT)
		fwd_session_fail(s, "upstream_timeout", 0, false, why);
	else if (st == SMTP_CLIENT_TLS_FAILED)
		fwd_session_fail(s, "upstream_tls", 0, true, why);
	else if (st == SMTP_CLIENT_PROTOCOL)
		fwd_session_fail(s, "upstream_protocol", 0, true, why);
	else
		fwd_session_fail(s, "upstream_unavailable", 0, true, why);
}

/* The first line of the greeting is one we send ourselves. */
static bool
fwd_is_own_greeting(const struct auth_forward *src, const char *text)
{
	size_t len = strcspn(text, "\n");

	for (size_t i = 0; i < src->n_own_greetings; i++) {
		size_t l = strlen(src->own_greetings[i]);
		if (len >= l && ascii_strncasecmp(text, src->own_greetings[i], l) == 0 &&
		    (len == l || text[l] == ' ' || text[l] == '\n'))
			return true;
	}
	return false;
}

static bool
fwd_greeting_not_ours(void *arg, const struct smtp_reply *greeting)
{
	return !fwd_is_own_greeting(arg, greeting->text);
}

/* Greeted, EHLO'd and TLS as configured: AUTH or the pool. Otherwise the
 * reason says what went wrong; each lets the next upstream try. */
static void
fwd_handshake_cb(struct smtp_client *c, const struct smtp_client_hs_result *r, void *arg)
{
	struct fwd_session *s = arg;
	char why[200], esc[120];
	const char *text = "";

	if (r->step != SMTP_CLIENT_STEP_GREETING)
		fwd_session_set_state(s, FWD_HANDSHAKE); /* greeted: QUIT is polite */
	if (r->reply != NULL)
		text = log_escape(r->reply->text, strcspn(r->reply->text, "\n"), esc, sizeof(esc));
	switch (r->outcome) {
	case SMTP_CLIENT_HS_READY:
		fwd_session_ready(s);
		return;
	case SMTP_CLIENT_HS_FAILED:
		fwd_session_status_fail(s, r->status,
		                        r->step == SMTP_CLIENT_STEP_GREETING   ? "greeting"
		                        : r->step == SMTP_CLIENT_STEP_STARTTLS ? "STARTTLS"
		                                                               : "EHLO");
		return;
	case SMTP_CLIENT_HS_REJECTED:
		log_err("auth: forward upstream=%s addr=%s greets with our own banner: it is this "
		        "gateway (a loop); fix [smtp-forward] upstreams",
		        s->up->name, s->up->addr_text);
		fwd_session_fail(s, "upstream_loop", r->reply->code, true,
		                 "loop: our own greeting");
		return;
	case SMTP_CLIENT_HS_NO_STARTTLS:
		fwd_session_fail(s, "upstream_tls", 0, true,
		                 "STARTTLS not offered (tls = starttls)");
		return;
	case SMTP_CLIENT_HS_REFUSED:
	case SMTP_CLIENT_HS_NO_ESMTP: /* never: no HELO here */
		break;
	}
	if (r->reply == NULL) {
		fwd_session_fail(s, "upstream_no_auth", 0, true, "the upstream speaks no ESMTP");
	} else if (r->step == SMTP_CLIENT_STEP_GREETING) {
		/* 421 (busy, shutting down) or 554 (no service here). */
		snprintf(why, sizeof(why), "greeting %d %s", r->reply->code, text);
		fwd_session_fail(s, "upstream_unavailable", r->reply->code, true, why);
	} else if (r->step == SMTP_CLIENT_STEP_STARTTLS) {
		snprintf(why, sizeof(why), "STARTTLS refused: %d %s", r->reply->code, text);
		fwd_session_fail(s, "upstream_tls", r->reply->code, true, why);
	} else {
		snprintf(why, sizeof(why), "EHLO refused: %d %s", r->reply->code, text);
		fwd_session_fail(
		        s, r->reply->code >= 500 ? "upstream_no_auth" : "upstream_unavailable",
		        r->reply->code, true, why);
	}
}

static bool
fwd_has_token(const char *list, const char *word)
{
	size_t wl = strlen(word);

	for (const char *p = list; *p != '\0';) {
		size_t n;
		while (*p == ' ')
			p++;
		n = strcspn(p, " ");
		if (n == wl && ascii_strncasecmp(p, word, wl) == 0)
			return true;
		p += n;
	}
	return false;
}

/* Send one base64 secret line (an AUTH continuation). */
static void
fwd_send_b64(struct fwd_session *s, const void *data, size_t len, const char *what)
{
	size_t sz = BASE64_ENCODED_SIZE(len);
	char *b64 = xmalloc(sz), shown[64];

	snprintf(shown, sizeof(shown), "******** (%s, base64)", what);
	base64_encode(data, len, b64, sz);
	smtp_client_command_secret(s->client, b64, shown, fwd_auth_cb, s);
	explicit_bzero(b64, sz);
	free(b64);
}

static void
fwd_session_auth(struct fwd_session *s)
{
	struct fwd_request *req = s->req;
	const char *params = NULL;
	bool nul = memchr(req->secret, '\0', req->secret_len) != NULL;
	size_t m;

	snprintf(req->upstream, sizeof(req->upstream), "%s", s->up->name);
	snprintf(req->tls, sizeof(req->tls), "%s",
	         smtp_client_tls_info(s->client) != NULL ? smtp_client_tls_info(s->client) : "");
	if (!smtp_client_has_ext(s->client, "AUTH", &params)) {
		fwd_session_fail(s, "upstream_no_auth", 0, true,
		                 "the upstream offers no AUTH (does it need TLS first?)");
		return;
	}
	for (m = 0; m < s->src->set.n_mechs; m++) {
		enum fwd_mech mech = s->src->set.mechs[m];
		/* PLAIN separates with NULs: a password holding one can only
		 * go as LOGIN. */
		if (fwd_has_token(params, forward_config_mech_name(mech)) &&
		    !(nul && mech == FWD_MECH_PLAIN))
			break;
	}
	if (m == s->src->set.n_mechs) {
		char why[200], esc[100];
		if (nul) {
			req->sess = NULL;
			s->req = NULL;
			fwd_session_close(s, true);
			fwd_request_finish(req, AUTH_FAIL, "nul_in_password", 0);
			return;
		}
		snprintf(why, sizeof(why), "no common mechanism (upstream offers %s)",
		         log_escape_str(params, esc, sizeof(esc)));
		fwd_session_fail(s, "upstream_no_auth", 0, true, why);
		return;
	}
	s->mech = s->src->set.mechs[m];
	req->mech = forward_config_mech_name(s->mech);
	fwd_session_set_state(s, FWD_AUTH);
	req->attempts++;
	if (s->mech == FWD_MECH_LOGIN) {
		smtp_client_command(s->client, "AUTH LOGIN", fwd_auth_cb, s);
		return;
	}
	/* RFC 4616 2: authzid (empty) NUL authcid NUL passwd. */
	size_t ll = strlen(req->login), rawlen = ll + req->secret_len + 2;
	unsigned char *raw = xmalloc(rawlen);
	size_t sz = BASE64_ENCODED_SIZE(rawlen) + 16;
	char *line = xmalloc(sz);

	raw[0] = '\0';
	memcpy(raw + 1, req->login, ll);
	raw[ll + 1] = '\0';
	memcpy(raw + ll + 2, req->secret, req->secret_len);
	memcpy(line, "AUTH PLAIN ", 11);
	base64_encode(raw, rawlen, line + 11, sz - 11);
	s->plain_ir = strlen(line) <= FWD_PLAIN_IR_MAX;
	if (s->plain_ir) {
		smtp_client_command_secret(
		        s->client, line, "AUTH PLAIN ******** (initial response)", fwd_auth_cb, s);
	} else {
		smtp_client_command(s->client, "AUTH PLAIN", fwd_auth_cb, s);
	}
	explicit_bzero(raw, rawlen);
	explicit_bzero(line, sz);
	free(raw);
	free(line);
}

/* The upstream decided: 235 or a 5xx to AUTH. */
static void
fwd_session_decided(struct fwd_session *s, const struct smtp_reply *r)
{
	struct fwd_request *req = s->req;
	char esc[120];

	fwd_mark_up(s->up);
	s->req = NULL;
	req->sess = NULL;
	if (r->code != 235 && r->code != 535)
		log_warn("auth: forward upstream=%s answered AUTH with %d %s: taken as a failure",
		         s->up->name, r->code,
		         log_escape(r->text, strcspn(r->text, "\n"), esc, sizeof(esc)));
	fwd_session_close(s, true);
	if (r->code == 235)
		fwd_request_finish(req, AUTH_OK, "ok", r->code);
	else
		fwd_request_finish(req, AUTH_FAIL, "upstream_rejected", r->code);
}

static void
fwd_auth_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r,
            void *arg)
{
	struct fwd_session *s = arg;
	struct fwd_request *req = s->req;
	char why[200], esc[120];

	if (req == NULL) {
		/* The request ended meanwhile (cancelled "*" answered). */
		if (s->state != FWD_QUIT)
			fwd_session_close(s, st == SMTP_CLIENT_OK);
		return;
	}
	if (st != SMTP_CLIENT_OK) {
		fwd_session_status_fail(s, st, "AUTH");
		return;
	}
	if (r->code == 504 || r->code == 530 || r->code == 534 || r->code == 538) {
		/* RFC 4954 6: mechanism unknown or too weak, TLS required. The
		 * upstream did not judge the password: our set-up is wrong. */
		snprintf(why, sizeof(why),
		         "AUTH %s refused (%d %s): check [smtp-forward] tls "
		         "and mechanisms",
		         forward_config_mech_name(s->mech), r->code,
		         log_escape(r->text, strcspn(r->text, "\n"), esc, sizeof(esc)));
		log_warn("auth: forward upstream=%s %s", s->up->name, why);
		fwd_session_fail(s, "upstream_no_auth", r->code, true, why);
		return;
	}
	if (r->code == 235 || r->code >= 500) {
		fwd_session_decided(s, r);
		return;
	}
	if (r->code == 334) {
		if (s->state == FWD_AUTH && s->mech == FWD_MECH_LOGIN) {
			fwd_session_set_state(s, FWD_AUTH_USER);
			fwd_send_b64(s, req->login, strlen(req->login), "login");
			return;
		}
		if ((s->state == FWD_AUTH && s->mech == FWD_MECH_PLAIN && !s->plain_ir) ||
		    s->state == FWD_AUTH_USER) {
			fwd_session_set_state(s, FWD_AUTH_PASS);
			if (s->mech == FWD_MECH_LOGIN) {
				fwd_send_b64(s, req->secret, req->secret_len, "password");
			} else {
				size_t ll = strlen(req->login), rawlen = ll + req->secret_len + 2;
				unsigned char *raw = xmalloc(rawlen);
				raw[0] = '\0';
				memcpy(raw + 1, req->login, ll);
				raw[ll + 1] = '\0';
				memcpy(raw + ll + 2, req->secret, req->secret_len);
				fwd_send_b64(s, raw, rawlen, "PLAIN response");
				explicit_bzero(raw, rawlen);
				free(raw);
			}
			return;
		}
		/* A challenge we did not expect: cancel (RFC 4954 4). */
		smtp_client_command(c, "*", fwd_auth_cb, s);
		s->req = NULL;
		req->sess = NULL;
		fwd_mark_down(s->src, s->up, "unexpected 334 to AUTH");
		fwd_request_finish(req, AUTH_TEMPFAIL, "upstream_protocol", r->code);
		return;
	}
	/* 4xx (454 temporary authentication failure, 421), or a stray 2xx/3xx. */
	snprintf(why, sizeof(why), "AUTH answered %d %s", r->code,
	         log_escape(r->text, strcspn(r->text, "\n"), esc, sizeof(esc)));
	fwd_session_fail(s, r->code >= 400 ? "upstream_tempfail" : "upstream_protocol", r->code,
	                 true, why);
}

/* Greeted and EHLO'd: AUTH at once, or wait in the pool. */
static void
fwd_session_ready(struct fwd_session *s)
{
	struct auth_forward *src = s->src;

	fwd_session_set_state(s, FWD_READY);
	s->ready_at = now_ms();
	if (s->req != NULL) {
		fwd_session_auth(s);
		return;
	}
	s->in_pool = true;
	TAILQ_INSERT_TAIL(&src->pool, s, pool_entry);
	log_debug("auth: forward upstream=%s pre-connected session ready (%u pooled)", s->up->name,
	          src->n_pooled);
	fwd_schedule_queue(src);
}

static struct fwd_session *
fwd_session_new(struct auth_forward *src, struct fwd_upstream *up, struct fwd_request *req)
{
	struct fwd_session *s = xcalloc(1, sizeof(*s));
	struct smtp_client_handshake hs = src->hs;
	char log_id[200];

	snprintf(log_id, sizeof(log_id), "auth: forward upstream=%s", up->name);
	src->params.log_id = log_id; /* copied */
	s->src = src;
	s->up = up;
	s->req = req;
	s->pooled = req == NULL;
	s->state = FWD_CONNECTING;
	s->client = smtp_client_new(src->base, &src->params);
	src->params.log_id = NULL;
	LIST_INSERT_HEAD(&src->sessions, s, entry);
	src->n_sessions++;
	if (s->pooled)
		src->n_pooled++;
	if (req != NULL)
		req->sess = s;
	fwd_trace(src, "upstream %s (%s): connecting, tls=%s%s", up->name, up->addr_text,
	          forward_config_tls_name(src->set.tls), req == NULL ? " [pre-connect]" : "");
	hs.tls_name = up->tls_name;
	if (src->trace != NULL)
		smtp_client_set_trace(s->client, src->trace, src->trace_arg);
	if (smtp_client_handshake(s->client, (const struct sockaddr *)&up->addr, up->addrlen, &hs,
	                          fwd_handshake_cb, s) < 0) {
		fwd_session_fail(s, "upstream_unavailable", 0, true, "cannot start a connection");
		return NULL;
	}
	return s;
}

/* A ready pre-connected session to up, or NULL. Dead ones are dropped. */
static struct fwd_session *
fwd_pool_take(struct auth_forward *src, struct fwd_upstream *up)
{
	struct fwd_session *s, *next;

	for (s = TAILQ_FIRST(&src->pool); s != NULL; s = next) {
		next = TAILQ_NEXT(s, pool_entry);
		if (!smtp_client_idle(s->client)) {
			fwd_session_close(s, false);
			continue;
		}
		if (s->up != up)
			continue;
		TAILQ_REMOVE(&src->pool, s, pool_entry);
		s->in_pool = false;
		s->pooled = false;
		s->from_pool = true;
		src->n_pooled--;
		fwd_schedule_pool(src); /* top up */
		return s;
	}
	return NULL;
}

/* Make room for a request: close a ready session that waits in the pool. */
static bool
fwd_pool_evict(struct auth_forward *src)
{
	struct fwd_session *s = TAILQ_FIRST(&src->pool);

	if (s == NULL)
		return false;
	fwd_session_close(s, false);
	return true;
}

/* Try req's next candidate: a pooled session, a new one, or the queue. */
static void
fwd_request_attempt(struct fwd_request *req)
{
	struct auth_forward *src = req->src;
	struct fwd_session *s;

	while (req->next < req->n_cand) {
		struct fwd_upstream *up = &src->set.up[req->cand[req->next]];

		if (!req->no_pool && (s = fwd_pool_take(src, up)) != NULL) {
			req->next++;
			s->req = req;
			req->sess = s;
			fwd_trace(src, "upstream %s (%s): using a ready connection", up->name,
			          up->addr_text);
			log_debug("s=%s auth: forward upstream=%s using a pre-connected session",
			          req->session_id, up->name);
			fwd_session_auth(s);
			return;
		}
		if (src->n_sessions >= src->set.max_sessions)
			fwd_pool_evict(src);
		if (src->n_sessions < src->set.max_sessions) {
			req->next++;
			/* On failure, fwd_session_fail() moved on already. */
			fwd_session_new(src, up, req);
			return;
		}
		if (src->n_waiting >= src->set.queue_size) {
			fwd_request_finish(req, AUTH_TEMPFAIL, "busy", 0);
			return;
		}
		req->waiting = true;
		TAILQ_INSERT_TAIL(&src->waiting, req, wait_entry);
		src->n_waiting++;
		log_debug("s=%s auth: forward queued: max_sessions=%u reached, %u waiting",
		          req->session_id, src->set.max_sessions, src->n_waiting);
		return;
	}
	fwd_request_finish(req, AUTH_TEMPFAIL, "upstream_unavailable", req->code);
}

static void
fwd_queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_forward *src = arg;
	struct fwd_request *req;
	int64_t now = now_ms();

	while ((req = TAILQ_FIRST(&src->waiting)) != NULL) {
		if (now - req->start > (int64_t)src->set.request_timeout * 1000) {
			/* The worker has given up on it (454 already sent). */
			fwd_request_finish(req, AUTH_TEMPFAIL, "queue_timeout", 0);
			continue;
		}
		if (src->n_sessions >= src->set.max_sessions && TAILQ_EMPTY(&src->pool))
			return;
		TAILQ_REMOVE(&src->waiting, req, wait_entry);
		src->n_waiting--;
		req->waiting = false;
		fwd_request_attempt(req);
		if (req->waiting)
			return; /* still no room */
	}
}

/* Keep `preconnect` sessions ready to the first healthy upstream. */
static void
fwd_pool_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_forward *src = arg;
	struct fwd_upstream *up = fwd_first_healthy(src);
	struct fwd_session *s, *next;
	int64_t now = now_ms();

	/* Old ready sessions, and those to an upstream no longer first. */
	for (s = TAILQ_FIRST(&src->pool); s != NULL; s = next) {
		next = TAILQ_NEXT(s, pool_entry);
		if (s->up != up || now - s->ready_at > FWD_POOL_MAX_IDLE_MS ||
		    !smtp_client_idle(s->client))
			fwd_session_close(s, true);
	}
	if (up == NULL || !TAILQ_EMPTY(&src->waiting) || now < src->pool_retry_at)
		return;
	while (src->n_pooled < src->set.preconnect && src->n_sessions < src->set.max_sessions) {
		if (fwd_session_new(src, up, NULL) == NULL)
			break;
		if (fwd_up_down(src, up, now_ms()))
			break;
	}
}

static void
fwd_pool_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_forward *src = arg;
	struct timeval tv = {FWD_POOL_CHECK_S, 0};

	fwd_pool_cb(-1, 0, src);
	evtimer_add(src->pool_timer, &tv);
}

/* ------------------------------------------------------------ API */

static void
fwd_own_greetings(struct auth_forward *src, const struct config *cfg)
{
	/* Exactly what session.c sends: "220 <hostname> ESMTP <banner>". */
	src->own_greetings = xcalloc(cfg->n_listeners + 1, sizeof(char *));
	for (size_t i = 0; i <= cfg->n_listeners; i++) {
		const char *banner = i < cfg->n_listeners && cfg->listeners[i].banner != NULL
		                             ? cfg->listeners[i].banner
		                             : "authrelay";
		char *g = NULL;
		if (asprintf(&g, "%s ESMTP %s", cfg->hostname, banner) < 0)
			fatal("out of memory");
		bool dup = false;
		for (size_t j = 0; j < src->n_own_greetings; j++)
			dup |= strcmp(src->own_greetings[j], g) == 0;
		if (dup)
			free(g);
		else
			src->own_greetings[src->n_own_greetings++] = g;
	}
}

int
auth_forward_new(const struct auth_env *env, struct auth_forward **r, const char **error_r)
{
	struct auth_forward *src;
	struct fwd_settings set;
	const char *err = NULL;
	char msg[600];

	if (forward_config_parse(env->cfg, &set, error_r) < 0)
		return -1;
	src = xcalloc(1, sizeof(*src));
	src->cfg = env->cfg;
	src->base = env->base;
	src->set = set;
	/* Built (and ca_file checked) even with tls = none or tls_verify = no,
	 * so that check-config finds a bad ca_file whatever the rest says. */
	src->ssl_ctx = smtp_client_tls_ctx_new(set.ca_file, true, &err);
	if (src->ssl_ctx == NULL) {
		snprintf(msg, sizeof(msg), "%s%s", set.ca_file != NULL ? "ca_file: " : "", err);
		forward_config_free(&src->set);
		free(src);
		*error_r = forward_config_error(env->cfg, "ca_file", msg);
		return -1;
	}
	src->hs.helo_name = src->set.helo_name;
	src->hs.tls = src->set.tls == FWD_TLS_IMPLICIT   ? SMTP_CLIENT_TLS_IMPLICIT
	              : src->set.tls == FWD_TLS_STARTTLS ? SMTP_CLIENT_TLS_STARTTLS
	                                                 : SMTP_CLIENT_TLS_NONE;
	src->hs.tls_ctx = src->ssl_ctx;
	src->hs.tls_verify = src->set.tls_verify;
	src->hs.check_greeting = fwd_greeting_not_ours;
	src->hs.check_arg = src;
	src->params.connect_timeout = set.connect_timeout;
	src->params.greeting_timeout = set.timeout;
	src->params.command_timeout = set.timeout;
	src->params.data_timeout = set.timeout;
	src->params.max_reply_line = FWD_MAX_REPLY_LINE;
	src->params.max_reply_lines = FWD_MAX_REPLY_LINES;
	LIST_INIT(&src->sessions);
	TAILQ_INIT(&src->pool);
	LIST_INIT(&src->requests);
	TAILQ_INIT(&src->waiting);
	src->queue_ev = event_new(src->base, -1, 0, fwd_queue_cb, src);
	src->pool_ev = event_new(src->base, -1, 0, fwd_pool_cb, src);
	src->pool_timer = evtimer_new(src->base, fwd_pool_timer_cb, src);
	fwd_own_greetings(src, env->cfg);
	*r = src;
	return 0;
}

void
auth_forward_free(struct auth_forward *src)
{
	struct fwd_session *s;
	struct fwd_request *req;

	if (src == NULL)
		return;
	while ((s = LIST_FIRST(&src->sessions)) != NULL) {
		if (s->in_pool)
			TAILQ_REMOVE(&src->pool, s, pool_entry);
		LIST_REMOVE(s, entry);
		smtp_client_free(s->client);
		free(s);
	}
	while ((req = LIST_FIRST(&src->requests)) != NULL)
		fwd_request_free(req);
	event_free(src->queue_ev);
	event_free(src->pool_ev);
	event_free(src->pool_timer);
	for (size_t i = 0; i < src->n_own_greetings; i++)
		free(src->own_greetings[i]);
	free(src->own_greetings);
	SSL_CTX_free(src->ssl_ctx);
	forward_config_free(&src->set);
	free(src);
}

void
auth_forward_set_trace(struct auth_forward *src, auth_forward_trace_cb *cb, void *arg)
{
	src->trace = cb;
	src->trace_arg = arg;
}

void
auth_forward_check(struct auth_forward *src, const struct auth_request *ar,
                   auth_forward_done_cb *cb, void *arg)
{
	struct fwd_request *req = xcalloc(1, sizeof(*req));
	int64_t now = now_ms();

	req->src = src;
	req->cb = cb;
	req->arg = arg;
	req->start = now;
	req->mech = "-";
	req->login = xstrdup(ar->login);
	req->secret = xmemdup(ar->secret, ar->secret_len);
	req->secret_len = ar->secret_len;
	if (ar->session != NULL && ar->session[0] != '\0')
		log_escape_str(ar->session, req->session_id, sizeof(req->session_id));
	else
		snprintf(req->session_id, sizeof(req->session_id), "-");
	req->done_ev = event_new(src->base, -1, 0, fwd_request_done_cb, req);
	LIST_INSERT_HEAD(&src->requests, req, entry);

	if (ar->mech != NULL && ascii_strcasecmp(ar->mech, "CRAM-MD5") == 0) {
		/* The upstream would send its own challenge: nothing to forward. */
		fwd_request_finish(req, AUTH_FAIL, "mech_unavailable", 0);
		return;
	}
	/* Healthy upstreams in order; if every one failed recently, all. */
	for (size_t i = 0; i < src->set.n_up; i++) {
		if (!fwd_up_down(src, &src->set.up[i], now))
			req->cand[req->n_cand++] = i;
		else
			fwd_trace(src, "upstream %s (%s): skipped, down for %lds more (%s)",
			          src->set.up[i].name, src->set.up[i].addr_text,
			          (long)((src->set.up[i].down_until - now + 999) / 1000),
			          src->set.up[i].down_why);
	}
	if (req->n_cand == 0) {
		for (size_t i = 0; i < src->set.n_up; i++)
			req->cand[req->n_cand++] = i;
		fwd_trace(src, "every upstream failed recently: trying them all");
	}
	if (!TAILQ_EMPTY(&src->waiting)) {
		/* Others were first. */
		if (src->n_waiting >= src->set.queue_size) {
			fwd_request_finish(req, AUTH_TEMPFAIL, "busy", 0);
			return;
		}
		req->waiting = true;
		TAILQ_INSERT_TAIL(&src->waiting, req, wait_entry);
		src->n_waiting++;
		log_debug("s=%s auth: forward queued behind %u waiting", req->session_id,
		          src->n_waiting - 1);
		fwd_schedule_queue(src);
		return;
	}
	fwd_request_attempt(req);
}

/* ------------------------------------------------------------ the source */

static bool
fwd_configured(const struct config *cfg)
{
	return config_section_next(cfg, FWD_SECTION, NULL) != NULL;
}

static int
fwd_init(const struct auth_env *env, void **state_r, const char **error_r)
{
	struct auth_forward *src;

	if (auth_forward_new(env, &src, error_r) < 0)
		return -1;
	for (size_t i = 0; i < src->set.n_up; i++) {
		const struct fwd_upstream *u = &src->set.up[i];
		log_info("auth: forward upstream=%s addr=%s tls=%s tls_name=%s", u->name,
		         u->addr_text, forward_config_tls_name(src->set.tls), u->tls_name);
	}
	if (src->set.tls == FWD_TLS_NONE)
		log_warn("auth: [smtp-forward] tls = none: passwords go to the upstreams in "
		         "cleartext");
	/* Pre-connecting starts with the loop (never during check-config). */
	src->pool_started = true;
	if (src->set.preconnect > 0) {
		struct timeval tv = {FWD_POOL_CHECK_S, 0};
		event_active(src->pool_ev, EV_TIMEOUT, 1);
		evtimer_add(src->pool_timer, &tv);
	}
	*state_r = src;
	return 0;
}

static void
fwd_job_done(void *arg, enum auth_result result, const char *reason)
{
	auth_job_done(arg, result, NULL, reason);
}

static void
fwd_verify(void *state, struct auth_job *job)
{
	auth_forward_check(state, auth_job_request(job), fwd_job_done, job);
}

static uint32_t
fwd_caps(void *state)
{
	return 0; /* CRAM-MD5 cannot be forwarded */
}

static int
fwd_reload(void *state, const char **error_r)
{
	struct auth_forward *src = state;

	/* Names were resolved at start; a reload forgets past failures, so an
	 * upstream the admin just fixed is tried at once. */
	for (size_t i = 0; i < src->set.n_up; i++)
		src->set.up[i].down_until = 0;
	fwd_schedule_pool(src);
	return 0;
}

static void
fwd_free(void *state)
{
	auth_forward_free(state);
}

const struct auth_source_ops auth_source_forward = {
        .name = "forward",
        .configured = fwd_configured,
        .init = fwd_init,
        .verify = fwd_verify,
        .caps = fwd_caps,
        .reload = fwd_reload,
        .free = fwd_free,
};
