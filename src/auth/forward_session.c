/* SPDX-License-Identifier: ISC */
/*
 * forward_session.c - one session with an [smtp-forward] upstream
 * (forward_session.h), through src/smtp/smtp_client.c on the auth process's
 * loop:
 *   1. smtp_client_handshake(): connect (implicit TLS first with tls =
 *      implicit), the greeting (a 220 carrying our own banner is a loop),
 *      EHLO, and with tls = starttls STARTTLS, the TLS handshake
 *      (certificate verified against ca_file and tls_name) and EHLO again.
 *   2. AUTH with the first of `mechanisms` the upstream offers: PLAIN with
 *      an initial response (RFC 4616, RFC 4954 4), or LOGIN (two 334
 *      prompts). Login and password go byte for byte, base64-encoded.
 *   3. The answer: 235 -> ok; a 5xx to AUTH -> fail (535 5.7.8 to the
 *      client); anything temporary -> tempfail (454 4.7.0), never fail.
 *      QUIT, and the session is closed.
 *
 * What makes the upstream "down" (forward_upstream.h) is decided here: a
 * refused or dropped connection, a TLS failure, a non-220 greeting, a loop,
 * a 4xx, no usable AUTH, a timeout. Each failure but a timeout lets the
 * source try the next upstream.
 *
 * Every event is the last thing a callback of ours does: the user may
 * close the session or open others from it. A session that ends closes
 * itself before it tells its user, so that the room it leaves is there for
 * the next attempt.
 */
#include "forward_session.h"
#include "forward_upstream.h"
#include "../lib/base64.h"
#include "../lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* AUTH PLAIN lines longer than this go without an initial response: a 334,
 * then the response alone (some servers cut long command lines). */
#define FS_PLAIN_IR_MAX 1000

enum fs_state {
	FS_CONNECTING, /* until the greeting */
	FS_HANDSHAKE,  /* greeted: EHLO, STARTTLS, EHLO again */
	FS_READY,      /* greeted and EHLO'd; in the pool or about to AUTH */
	FS_AUTH,
	FS_AUTH_USER, /* LOGIN: the login sent, waiting for the second 334 */
	FS_AUTH_PASS, /* the password sent */
	FS_QUIT,
};

static const char *const fs_state_names[] = {
        "connecting", "handshake", "ready", "auth", "auth_user", "auth_pass", "quit",
};

struct forward_session {
	const struct forward_session_env *env;
	struct fwd_upstream *up;
	struct smtp_client *client;
	enum fs_state state;
	bool preconnected;                 /* made ahead of a login */
	bool pooled;                       /* ... and not handed to one yet */
	const struct forward_login *login; /* while AUTH runs */
	enum fwd_mech mech;
	bool mech_sent;
	bool plain_ir;
	forward_session_cb *cb; /* NULL once the session has ended */
	void *arg;
	forward_session_closed_cb *closed;
	void *closed_arg;
};

static void fs_auth_cb(struct smtp_client *c, enum smtp_client_status st,
                       const struct smtp_reply *r, void *arg);

void
forward_session_trace(const struct forward_session_env *env, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (env->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	env->trace(env->trace_arg, line);
}

static void
fs_set_state(struct forward_session *s, enum fs_state st)
{
	if (s->state != st)
		log_debug("auth: forward upstream=%s session %s -> %s", s->up->name,
		          fs_state_names[s->state], fs_state_names[st]);
	s->state = st;
}

/* The reply's first line, escaped, for reasons and logs. */
static const char *
fs_first_line(const struct smtp_reply *r, char *buf, size_t bufsz)
{
	return log_escape(r->text, strcspn(r->text, "\n"), buf, bufsz);
}

/* ------------------------------------------------------------ ending */

void
forward_session_destroy(struct forward_session *s)
{
	/* Safe inside the client's own callback: its free is deferred. */
	smtp_client_free(s->client);
	free(s);
}

static void
fs_free(struct forward_session *s)
{
	forward_session_closed_cb *closed = s->closed;
	void *closed_arg = s->closed_arg;

	forward_session_destroy(s);
	closed(closed_arg);
}

static void
fs_quit_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r, void *arg)
{
	fs_free(arg);
}

void
forward_session_close(struct forward_session *s, bool polite)
{
	s->cb = NULL;
	s->login = NULL;
	if (polite && smtp_client_idle(s->client)) {
		fs_set_state(s, FS_QUIT);
		smtp_client_command(s->client, "QUIT", fs_quit_cb, s);
		return;
	}
	fs_free(s);
}

/* The session has ended for its user: close it (so that its room is free
 * for the next attempt), then tell the user. s is gone afterwards. */
static void
fs_end(struct forward_session *s, enum forward_session_event event, enum auth_result result,
       enum auth_reason reason, int code, bool failover, bool polite)
{
	struct forward_session_result r = {
	        .result = result,
	        .reason = reason,
	        .code = code,
	        .failover = failover,
	        .mech = s->mech_sent ? forward_config_mech_name(s->mech) : NULL,
	};
	forward_session_cb *cb = s->cb;
	void *arg = s->arg;

	forward_session_close(s, polite);
	cb(NULL, event, &r, arg);
}

/* The session cannot serve: the upstream is down, the user may fail over. */
static void
fs_fail(struct forward_session *s, enum auth_reason reason, int code, bool failover,
        const char *why)
{
	struct fwd_upstream *up = s->up;

	log_info("auth: forward upstream=%s addr=%s %s: %s", up->name, up->addr_text,
	         s->pooled ? "pre-connect failed" : "failed", why);
	forward_session_trace(s->env, "upstream %s failed: %s", up->name, why);
	forward_upstream_mark_down(up, s->env->set->failure_memory, why);
	fs_end(s, FORWARD_SESSION_FAILED, AUTH_TEMPFAIL, reason, code, failover,
	       s->state != FS_CONNECTING);
}

static void
fs_status_fail(struct forward_session *s, enum smtp_client_status st, const char *doing)
{
	char why[160];

	snprintf(why, sizeof(why), "%s: %s", doing,
	         st == SMTP_CLIENT_TIMEOUT       ? "timed out"
	         : st == SMTP_CLIENT_CONN_FAILED ? "connection failed or closed"
	         : st == SMTP_CLIENT_TLS_FAILED  ? "TLS handshake or certificate failed"
	                                         : "malformed or oversized reply");
	/* A pre-connected session may have been dropped while it waited
	 * (the server's idle timeout): that says nothing about the upstream. */
	if (s->preconnected && s->state == FS_AUTH && st == SMTP_CLIENT_CONN_FAILED) {
		log_info("auth: forward upstream=%s a ready session was gone; reconnecting",
		         s->up->name);
		fs_end(s, FORWARD_SESSION_STALE, AUTH_TEMPFAIL, AUTH_REASON_UPSTREAM_UNAVAILABLE, 0,
		       true, false);
		return;
	}
	if (st == SMTP_CLIENT_TIMEOUT)
		fs_fail(s, AUTH_REASON_UPSTREAM_TIMEOUT, 0, false, why);
	else if (st == SMTP_CLIENT_TLS_FAILED)
		fs_fail(s, AUTH_REASON_UPSTREAM_TLS, 0, true, why);
	else if (st == SMTP_CLIENT_PROTOCOL)
		fs_fail(s, AUTH_REASON_UPSTREAM_PROTOCOL, 0, true, why);
	else
		fs_fail(s, AUTH_REASON_UPSTREAM_UNAVAILABLE, 0, true, why);
}

/* ------------------------------------------------------------ handshake */

/* Greeted, EHLO'd and TLS as configured: ready. Otherwise the reason says
 * what went wrong. */
static void
fs_handshake_cb(struct smtp_client *c, const struct smtp_client_hs_result *r, void *arg)
{
	struct forward_session *s = arg;
	char why[200], esc[120];
	const char *text = "";
	int code = r->reply != NULL ? r->reply->code : 0;

	if (r->step != SMTP_CLIENT_STEP_GREETING)
		fs_set_state(s, FS_HANDSHAKE); /* greeted: QUIT is polite */
	if (r->reply != NULL)
		text = fs_first_line(r->reply, esc, sizeof(esc));
	switch (r->outcome) {
	case SMTP_CLIENT_HS_READY:
		fs_set_state(s, FS_READY);
		s->cb(s, FORWARD_SESSION_READY, NULL, s->arg);
		return;
	case SMTP_CLIENT_HS_FAILED:
		fs_status_fail(s, r->status,
		               r->step == SMTP_CLIENT_STEP_GREETING   ? "greeting"
		               : r->step == SMTP_CLIENT_STEP_STARTTLS ? "STARTTLS"
		                                                      : "EHLO");
		return;
	case SMTP_CLIENT_HS_REJECTED:
		log_err("auth: forward upstream=%s addr=%s greets with our own banner: it is this "
		        "gateway (a loop); fix [smtp-forward] upstreams",
		        s->up->name, s->up->addr_text);
		fs_fail(s, AUTH_REASON_UPSTREAM_LOOP, code, true, "loop: our own greeting");
		return;
	case SMTP_CLIENT_HS_NO_STARTTLS:
		fs_fail(s, AUTH_REASON_UPSTREAM_TLS, 0, true,
		        "STARTTLS not offered (tls = starttls)");
		return;
	case SMTP_CLIENT_HS_REFUSED:
	case SMTP_CLIENT_HS_NO_ESMTP: /* never: no HELO here */
		break;
	}
	if (r->step == SMTP_CLIENT_STEP_GREETING) {
		/* 421 (busy, shutting down) or 554 (no service here). */
		snprintf(why, sizeof(why), "greeting %d %s", code, text);
		fs_fail(s, AUTH_REASON_UPSTREAM_UNAVAILABLE, code, true, why);
	} else if (r->step == SMTP_CLIENT_STEP_STARTTLS) {
		snprintf(why, sizeof(why), "STARTTLS refused: %d %s", code, text);
		fs_fail(s, AUTH_REASON_UPSTREAM_TLS, code, true, why);
	} else {
		snprintf(why, sizeof(why), "EHLO refused: %d %s", code, text);
		fs_fail(s,
		        code >= 500 ? AUTH_REASON_UPSTREAM_NO_AUTH
		                    : AUTH_REASON_UPSTREAM_UNAVAILABLE,
		        code, true, why);
	}
}

struct forward_session *
forward_session_new(const struct forward_session_env *env, struct fwd_upstream *up, bool preconnect,
                    forward_session_closed_cb *closed, void *closed_arg, forward_session_cb *cb,
                    void *arg)
{
	struct forward_session *s = xcalloc(1, sizeof(*s));
	struct smtp_client_params params = env->params;
	struct smtp_client_handshake hs = env->hs;
	char log_id[200];

	snprintf(log_id, sizeof(log_id), "auth: forward upstream=%s", up->name);
	params.log_id = log_id; /* copied */
	hs.tls_name = up->tls_name;
	s->env = env;
	s->up = up;
	s->preconnected = s->pooled = preconnect;
	s->state = FS_CONNECTING;
	s->cb = cb;
	s->arg = arg;
	s->closed = closed;
	s->closed_arg = closed_arg;
	s->client = smtp_client_new(env->base, &params);
	forward_session_trace(env, "upstream %s (%s): connecting, tls=%s%s", up->name,
	                      up->addr_text, forward_config_tls_name(env->set->tls),
	                      preconnect ? " [pre-connect]" : "");
	if (env->trace != NULL)
		smtp_client_set_trace(s->client, env->trace, env->trace_arg);
	if (smtp_client_handshake(s->client, (const struct sockaddr *)&up->addr, up->addrlen, &hs,
	                          fs_handshake_cb, s) < 0) {
		const char *why = "cannot start a connection";

		log_info("auth: forward upstream=%s addr=%s %s: %s", up->name, up->addr_text,
		         preconnect ? "pre-connect failed" : "failed", why);
		forward_session_trace(env, "upstream %s failed: %s", up->name, why);
		forward_upstream_mark_down(up, env->set->failure_memory, why);
		forward_session_destroy(s);
		return NULL;
	}
	return s;
}

void
forward_session_take(struct forward_session *s, forward_session_cb *cb, void *arg)
{
	s->pooled = false;
	s->cb = cb;
	s->arg = arg;
}

/* ------------------------------------------------------------ AUTH */

static bool
fs_has_token(const char *list, const char *word)
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

/* Send one base64 secret line: after a prefix ("AUTH PLAIN "), or alone (an
 * AUTH continuation). shown is what the trace says instead. */
static void
fs_send_b64(struct forward_session *s, const char *prefix, const void *data, size_t len,
            const char *shown)
{
	size_t pl = strlen(prefix), sz = pl + BASE64_ENCODED_SIZE(len);
	char *line = xmalloc(sz);

	memcpy(line, prefix, pl);
	base64_encode(data, len, line + pl, sz - pl);
	smtp_client_command_secret(s->client, line, shown, fs_auth_cb, s);
	explicit_bzero(line, sz);
	free(line);
}

/* RFC 4616 2: authzid (empty) NUL authcid NUL passwd, base64, as the
 * initial response or alone after a 334. */
static void
fs_send_plain(struct forward_session *s, bool initial)
{
	const struct forward_login *l = s->login;
	size_t ll = strlen(l->login), rawlen = ll + l->secret_len + 2;
	unsigned char *raw = xmalloc(rawlen);

	raw[0] = '\0';
	memcpy(raw + 1, l->login, ll);
	raw[ll + 1] = '\0';
	memcpy(raw + ll + 2, l->secret, l->secret_len);
	if (initial)
		fs_send_b64(s, "AUTH PLAIN ", raw, rawlen,
		            "AUTH PLAIN ******** (initial response)");
	else
		fs_send_b64(s, "", raw, rawlen, "******** (PLAIN response, base64)");
	explicit_bzero(raw, rawlen);
	free(raw);
}

void
forward_session_auth(struct forward_session *s, const struct forward_login *login)
{
	const struct fwd_settings *set = s->env->set;
	const char *params = NULL;
	bool nul = memchr(login->secret, '\0', login->secret_len) != NULL;
	size_t m;

	s->login = login;
	if (!smtp_client_has_ext(s->client, "AUTH", &params)) {
		fs_fail(s, AUTH_REASON_UPSTREAM_NO_AUTH, 0, true,
		        "the upstream offers no AUTH (does it need TLS first?)");
		return;
	}
	for (m = 0; m < set->n_mechs; m++) {
		enum fwd_mech mech = set->mechs[m];
		/* PLAIN separates with NULs: a password holding one can only
		 * go as LOGIN. */
		if (fs_has_token(params, forward_config_mech_name(mech)) &&
		    !(nul && mech == FWD_MECH_PLAIN))
			break;
	}
	if (m == set->n_mechs) {
		char why[200], esc[100];
		if (nul) {
			fs_end(s, FORWARD_SESSION_ANSWER, AUTH_FAIL, AUTH_REASON_NUL_IN_PASSWORD, 0,
			       false, true);
			return;
		}
		snprintf(why, sizeof(why), "no common mechanism (upstream offers %s)",
		         log_escape_str(params, esc, sizeof(esc)));
		fs_fail(s, AUTH_REASON_UPSTREAM_NO_AUTH, 0, true, why);
		return;
	}
	s->mech = set->mechs[m];
	s->mech_sent = true;
	fs_set_state(s, FS_AUTH);
	if (s->mech == FWD_MECH_LOGIN) {
		smtp_client_command(s->client, "AUTH LOGIN", fs_auth_cb, s);
		return;
	}
	/* The whole line: "AUTH PLAIN ", then the response encoded. */
	size_t ir_len = strlen("AUTH PLAIN ") +
	                BASE64_ENCODED_SIZE(strlen(login->login) + login->secret_len + 2) - 1;
	s->plain_ir = ir_len <= FS_PLAIN_IR_MAX;
	if (s->plain_ir)
		fs_send_plain(s, true);
	else
		smtp_client_command(s->client, "AUTH PLAIN", fs_auth_cb, s);
}

/* The upstream decided: 235 or a 5xx to AUTH. */
static void
fs_decided(struct forward_session *s, const struct smtp_reply *r)
{
	char esc[120];

	forward_upstream_mark_up(s->up);
	if (r->code != 235 && r->code != 535)
		log_warn("auth: forward upstream=%s answered AUTH with %d, taken as a failure "
		         "reply=\"%s\"",
		         s->up->name, r->code, fs_first_line(r, esc, sizeof(esc)));
	if (r->code == 235)
		fs_end(s, FORWARD_SESSION_ANSWER, AUTH_OK, AUTH_REASON_OK, r->code, false, true);
	else
		fs_end(s, FORWARD_SESSION_ANSWER, AUTH_FAIL, AUTH_REASON_UPSTREAM_REJECTED, r->code,
		       false, true);
}

/* A 334 to AUTH or to one of our continuations. */
static void
fs_challenge(struct forward_session *s, const struct smtp_reply *r)
{
	const struct forward_login *l = s->login;
	struct forward_session_result res = {
	        .result = AUTH_TEMPFAIL,
	        .reason = AUTH_REASON_UPSTREAM_PROTOCOL,
	        .code = r->code,
	        .mech = forward_config_mech_name(s->mech),
	};
	forward_session_cb *cb = s->cb;
	void *arg = s->arg;

	if (s->state == FS_AUTH && s->mech == FWD_MECH_LOGIN) {
		fs_set_state(s, FS_AUTH_USER);
		fs_send_b64(s, "", l->login, strlen(l->login), "******** (login, base64)");
		return;
	}
	if (s->state == FS_AUTH_USER) {
		fs_set_state(s, FS_AUTH_PASS);
		fs_send_b64(s, "", l->secret, l->secret_len, "******** (password, base64)");
		return;
	}
	if (s->state == FS_AUTH && s->mech == FWD_MECH_PLAIN && !s->plain_ir) {
		fs_set_state(s, FS_AUTH_PASS);
		fs_send_plain(s, false);
		return;
	}
	/* A challenge we did not expect: cancel (RFC 4954 4). The session
	 * ends for the login now, and closes once "*" is answered. */
	smtp_client_command(s->client, "*", fs_auth_cb, s);
	s->cb = NULL;
	s->login = NULL;
	forward_upstream_mark_down(s->up, s->env->set->failure_memory, "unexpected 334 to AUTH");
	cb(NULL, FORWARD_SESSION_ANSWER, &res, arg);
}

static void
fs_auth_cb(struct smtp_client *c, enum smtp_client_status st, const struct smtp_reply *r, void *arg)
{
	struct forward_session *s = arg;
	char why[200], esc[120];

	if (s->cb == NULL) {
		/* The login ended meanwhile (a cancelling "*" answered). */
		if (s->state != FS_QUIT)
			forward_session_close(s, st == SMTP_CLIENT_OK);
		return;
	}
	if (st != SMTP_CLIENT_OK) {
		fs_status_fail(s, st, "AUTH");
		return;
	}
	if (r->code == 504 || r->code == 530 || r->code == 534 || r->code == 538) {
		/* RFC 4954 6: mechanism unknown or too weak, TLS required. The
		 * upstream did not judge the password: our set-up is wrong. */
		snprintf(why, sizeof(why),
		         "AUTH %s refused (%d %s): check [smtp-forward] tls "
		         "and mechanisms",
		         forward_config_mech_name(s->mech), r->code,
		         fs_first_line(r, esc, sizeof(esc)));
		log_warn("auth: forward upstream=%s %s", s->up->name, why);
		fs_fail(s, AUTH_REASON_UPSTREAM_NO_AUTH, r->code, true, why);
		return;
	}
	if (r->code == 235 || r->code >= 500) {
		fs_decided(s, r);
		return;
	}
	if (r->code == 334) {
		fs_challenge(s, r);
		return;
	}
	/* 4xx (454 temporary authentication failure, 421), or a stray 2xx/3xx. */
	snprintf(why, sizeof(why), "AUTH answered %d %s", r->code,
	         fs_first_line(r, esc, sizeof(esc)));
	fs_fail(s, r->code >= 400 ? AUTH_REASON_UPSTREAM_TEMPFAIL : AUTH_REASON_UPSTREAM_PROTOCOL,
	        r->code, true, why);
}

/* ------------------------------------------------------------ accessors */

bool
forward_session_idle(const struct forward_session *s)
{
	return smtp_client_idle(s->client);
}

struct fwd_upstream *
forward_session_upstream(const struct forward_session *s)
{
	return s->up;
}

const char *
forward_session_tls(const struct forward_session *s)
{
	const char *tls = smtp_client_tls_info(s->client);

	return tls != NULL ? tls : "";
}
