/* SPDX-License-Identifier: ISC */
/*
 * auth_forward.c - the "forward" auth source ([smtp-forward]): a login is
 * verified by AUTH on an upstream SMTP server the organization already runs
 * (Exchange, Domino, Sendmail, Postfix...), whose answer decides. Outside
 * the daemon, auth_forward.h runs one check with a trace (test-auth).
 *
 * This file is the source's ops and the life of one verification (a
 * request); the rest is in parts, like the LDAP source's:
 *   forward_config.c    [smtp-forward], the upstreams resolved once
 *   forward_upstream.c  which upstreams are down (failure_memory)
 *   forward_pool.c      max_sessions, the pre-connected sessions
 *   forward_session.c   one upstream session: handshake, AUTH, the answer
 *
 * One verification, on the auth process's loop:
 *   1. Pick the upstreams to try: those of `upstreams` in order, skipping one
 *      that failed in the last `failure_memory` seconds (if all did, all are
 *      tried).
 *   2. Take a ready pre-connected session to the first one if there is one
 *      (`preconnect`); else open one if fewer than `max_sessions` are open;
 *      else wait in a FIFO of `queue_size` (full: tempfail, busy).
 *   3. The session says AUTH and reads the answer (forward_session.c): ok,
 *      fail, or a temporary failure.
 *
 * Temporary failures and failover: a refused or dropped connection, a TLS
 * failure, a non-220 greeting (421), a loop, a 4xx, no usable AUTH: the
 * upstream is marked down for `failure_memory` seconds and the next one is
 * tried. A timeout (connect, greeting or reply) ends the verification with
 * tempfail at once: the client has waited long enough, and the next logins
 * skip that upstream. A pre-connected session found dead when AUTH went
 * (the server's idle timeout) is no failure: the same upstream is tried
 * again on a fresh connection.
 *
 * Reasons: ok, upstream_rejected, upstream_tempfail, upstream_timeout,
 * upstream_unavailable, upstream_tls, upstream_protocol, upstream_no_auth,
 * upstream_loop, busy, queue_timeout, mech_unavailable, nul_in_password.
 *
 * Secrets: the login and password are copied into the request, wiped when it
 * ends; the session sends them with smtp_client_command_secret() (never
 * logged, wiped once written). Logs and traces name the upstream, never the
 * credentials.
 */
#include "auth_forward.h"
#include "auth_source.h"
#include "forward_config.h"
#include "forward_pool.h"
#include "forward_session.h"
#include "forward_upstream.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../metrics/metric.h"
#include "../smtp/smtp_client.h"

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define FWD_MAX_REPLY_LINE 2048
#define FWD_MAX_REPLY_LINES 100

struct fwd_request {
	LIST_ENTRY(fwd_request) entry;       /* src->requests */
	TAILQ_ENTRY(fwd_request) wait_entry; /* src->waiting while waiting */
	struct auth_forward *src;
	char *login;
	char *secret;
	size_t secret_len;
	struct forward_login cred; /* login and secret, for the session */
	char session_id[64];       /* escaped, for log lines */
	auth_forward_done_cb *cb;
	void *arg;
	int64_t start;
	size_t cand[FWD_MAX_UPSTREAMS]; /* indexes into src->set.up, in order */
	size_t n_cand, next;            /* next candidate to try */
	struct forward_session *sess;   /* serving it, until its answer */
	bool waiting;
	bool no_pool; /* a pooled session died under us: open a fresh one */
	unsigned attempts;
	/* The outcome, delivered by done_ev. */
	struct event *done_ev;
	bool finished;
	enum auth_result result;
	enum auth_reason reason;
	int code;
	char upstream[160]; /* who answered (or failed last) */
	const char *mech;   /* what went upstream, "-" before AUTH */
	char tls[96];
};

struct auth_forward {
	const struct config *cfg;
	struct fwd_settings set;
	SSL_CTX *ssl_ctx;
	struct forward_session_env env; /* what the sessions share */
	struct forward_pool *pool;
	LIST_HEAD(, fwd_request) requests;
	TAILQ_HEAD(, fwd_request) waiting;
	unsigned n_waiting;
	struct event *queue_ev; /* run the waiting queue on the next turn */
	/* Our own greetings ("host ESMTP banner"): a loop if an upstream
	 * greets with one of them. */
	char **own_greetings;
	size_t n_own_greetings;
};

static void fwd_request_attempt(struct fwd_request *req);

/* ------------------------------------------------------------ requests */

static void
fwd_request_free(struct fwd_request *req)
{
	LIST_REMOVE(req, entry);
	if (req->waiting) {
		TAILQ_REMOVE(&req->src->waiting, req, wait_entry);
		req->src->n_waiting--;
	}
	free_secret(req->login);
	/* The password may hold a NUL: wiped by its length. */
	explicit_bzero(req->secret, req->secret_len);
	free(req->secret);
	event_free(req->done_ev);
	free(req);
}

static void
fwd_request_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fwd_request *req = arg;
	struct auth_forward *src = req->src;
	int64_t ms = forward_upstream_now() - req->start;

	log_info("s=%s auth forward upstream=%s mech=%s result=%s reason=%s reply=%d ms=%ld "
	         "attempts=%u tls=%s",
	         req->session_id, req->upstream[0] != '\0' ? req->upstream : "none", req->mech,
	         auth_result_name(req->result), auth_reason_name(req->reason), req->code, (long)ms,
	         req->attempts, req->tls[0] ? req->tls : "none");
	forward_session_trace(&src->env, "result: %s reason=%s upstream=%s ms=%ld",
	                      auth_result_name(req->result), auth_reason_name(req->reason),
	                      req->upstream[0] != '\0' ? req->upstream : "none", (long)ms);
	auth_forward_done_cb *cb = req->cb;
	void *cb_arg = req->arg;
	enum auth_result result = req->result;
	enum auth_reason reason = req->reason;
	fwd_request_free(req);
	cb(cb_arg, result, reason);
}

/* The answer is known: deliver it on the next loop turn (never inside
 * auth_forward_check()). */
static void
fwd_request_finish(struct fwd_request *req, enum auth_result result, enum auth_reason reason,
                   int code)
{
	if (req->finished)
		return;
	req->finished = true;
	req->result = result;
	req->reason = reason;
	req->code = code;
	req->sess = NULL;
	if (req->waiting) {
		TAILQ_REMOVE(&req->src->waiting, req, wait_entry);
		req->src->n_waiting--;
		req->waiting = false;
	}
	event_active(req->done_ev, EV_TIMEOUT, 1);
}

/* Wait for a session, behind the others (full: busy). */
static void
fwd_request_wait(struct fwd_request *req)
{
	struct auth_forward *src = req->src;

	if (src->n_waiting >= src->set.queue_size) {
		fwd_request_finish(req, AUTH_TEMPFAIL, AUTH_REASON_BUSY, 0);
		return;
	}
	req->waiting = true;
	TAILQ_INSERT_TAIL(&src->waiting, req, wait_entry);
	src->n_waiting++;
}

/* The session is ready: AUTH with the request's login. */
static void
fwd_request_auth(struct fwd_request *req, struct forward_session *s)
{
	snprintf(req->tls, sizeof(req->tls), "%s", forward_session_tls(s));
	forward_session_auth(s, &req->cred);
}

/* Events of the session serving req. */
static void
fwd_session_cb(struct forward_session *s, enum forward_session_event event,
               const struct forward_session_result *r, void *arg)
{
	struct fwd_request *req = arg;

	if (event != FORWARD_SESSION_READY) {
		/* The session has ended (and given its room back first). */
		req->sess = NULL;
		if (r->mech != NULL) {
			req->mech = r->mech;
			req->attempts++;
		}
	}
	switch (event) {
	case FORWARD_SESSION_READY:
		fwd_request_auth(req, s);
		return;
	case FORWARD_SESSION_ANSWER:
		fwd_request_finish(req, r->result, r->reason, r->code);
		return;
	case FORWARD_SESSION_STALE:
		/* Once more to the same upstream, on a fresh connection. */
		req->no_pool = true;
		req->next--;
		fwd_request_attempt(req);
		return;
	case FORWARD_SESSION_FAILED:
		req->code = r->code;
		if (r->failover && req->next < req->n_cand) {
			fwd_request_attempt(req);
			return;
		}
		fwd_request_finish(req, AUTH_TEMPFAIL, r->reason, r->code);
		return;
	}
}

/* Try req's next candidate: a pooled session, a new one, or the queue. */
static void
fwd_request_attempt(struct fwd_request *req)
{
	struct auth_forward *src = req->src;

	while (req->next < req->n_cand) {
		struct fwd_upstream *up = &src->set.up[req->cand[req->next]];
		struct forward_session *s = NULL;

		switch (forward_pool_get(src->pool, up, req->no_pool, fwd_session_cb, req, &s)) {
		case FORWARD_POOL_READY:
			req->next++;
			req->sess = s;
			snprintf(req->upstream, sizeof(req->upstream), "%s", up->name);
			forward_session_trace(&src->env,
			                      "upstream %s (%s): using a ready connection",
			                      up->name, up->addr_text);
			log_debug("s=%s auth: forward upstream=%s using a pre-connected session",
			          req->session_id, up->name);
			fwd_request_auth(req, s);
			return;
		case FORWARD_POOL_OPENING:
			req->next++;
			req->sess = s;
			snprintf(req->upstream, sizeof(req->upstream), "%s", up->name);
			return;
		case FORWARD_POOL_FAILED:
			/* Not even a connection: on to the next upstream. */
			req->next++;
			snprintf(req->upstream, sizeof(req->upstream), "%s", up->name);
			req->code = 0;
			continue;
		case FORWARD_POOL_FULL:
			break;
		}
		fwd_request_wait(req);
		if (req->waiting)
			log_debug("s=%s auth: forward queued: max_sessions=%u reached, %u waiting",
			          req->session_id, src->set.max_sessions, src->n_waiting);
		return;
	}
	fwd_request_finish(req, AUTH_TEMPFAIL, AUTH_REASON_UPSTREAM_UNAVAILABLE, req->code);
}

static void
fwd_queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_forward *src = arg;
	struct fwd_request *req;
	int64_t now = forward_upstream_now();

	while ((req = TAILQ_FIRST(&src->waiting)) != NULL) {
		if (now - req->start > (int64_t)src->set.request_timeout * 1000) {
			/* The worker has given up on it (454 already sent). */
			fwd_request_finish(req, AUTH_TEMPFAIL, AUTH_REASON_QUEUE_TIMEOUT, 0);
			continue;
		}
		if (!forward_pool_has_room(src->pool))
			return;
		TAILQ_REMOVE(&src->waiting, req, wait_entry);
		src->n_waiting--;
		req->waiting = false;
		fwd_request_attempt(req);
		if (req->waiting)
			return; /* still no room */
	}
}

/* The pool's owner: room may have appeared. */
static void
fwd_pool_room(void *arg)
{
	struct auth_forward *src = arg;

	if (!TAILQ_EMPTY(&src->waiting))
		event_active(src->queue_ev, EV_TIMEOUT, 1);
}

static bool
fwd_pool_waiting(void *arg)
{
	struct auth_forward *src = arg;

	return !TAILQ_EMPTY(&src->waiting);
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

/* The handshake's greeting check: the first line of the greeting must not
 * be one we send ourselves (a loop). */
static bool
fwd_greeting_not_ours(void *arg, const struct smtp_reply *greeting)
{
	const struct auth_forward *src = arg;
	const char *text = greeting->text;
	size_t len = strcspn(text, "\n");

	for (size_t i = 0; i < src->n_own_greetings; i++) {
		size_t l = strlen(src->own_greetings[i]);
		if (len >= l && ascii_strncasecmp(text, src->own_greetings[i], l) == 0 &&
		    (len == l || text[l] == ' ' || text[l] == '\n'))
			return false;
	}
	return true;
}

/* auth_forward_new()'s errors, valid until the next call (loop thread). */
static char *fwd_errors;

static int
fwd_fail(char *errors, const char **error_r)
{
	size_t len = strlen(errors);

	/* One "file:line: ..." per line, without the last newline. */
	if (len > 0 && errors[len - 1] == '\n')
		errors[len - 1] = '\0';
	free(fwd_errors);
	fwd_errors = errors;
	*error_r = fwd_errors;
	return -1;
}

int
auth_forward_new(const struct auth_env *env, struct auth_forward **r, const char **error_r)
{
	struct forward_pool_owner owner = {
	        .room = fwd_pool_room,
	        .waiting = fwd_pool_waiting,
	};
	struct auth_forward *src;
	struct fwd_settings set;
	const char *err = NULL;
	char *errors = NULL;
	SSL_CTX *ctx;

	/* config_load() refused a bad [smtp-forward]; this is a backstop. */
	if (forward_config_load(env->cfg, &set, &errors) < 0)
		return fwd_fail(errors, error_r);
	if (forward_config_resolve(env->cfg, &set, &errors) < 0) {
		forward_config_free(&set);
		return fwd_fail(errors, error_r);
	}
	/* Built (and ca_file checked) even with tls = none or tls_verify = no,
	 * so that check-config finds a bad ca_file whatever the rest says. */
	if ((ctx = smtp_client_tls_ctx_new(set.ca_file, true, &err)) == NULL) {
		errors = forward_config_key_error(
		        env->cfg, "ca_file", set.ca_file != NULL ? set.ca_file : "(not set)", err);
		forward_config_free(&set);
		return fwd_fail(errors, error_r);
	}
	src = xcalloc(1, sizeof(*src));
	src->cfg = env->cfg;
	src->set = set;
	src->ssl_ctx = ctx;
	src->env.base = env->base;
	src->env.set = &src->set;
	src->env.params.connect_timeout = set.connect_timeout;
	src->env.params.greeting_timeout = set.timeout;
	src->env.params.command_timeout = set.timeout;
	src->env.params.data_timeout = set.timeout;
	src->env.params.max_reply_line = FWD_MAX_REPLY_LINE;
	src->env.params.max_reply_lines = FWD_MAX_REPLY_LINES;
	src->env.hs.helo_name = src->set.helo_name;
	src->env.hs.tls = set.tls == FWD_TLS_IMPLICIT   ? SMTP_CLIENT_TLS_IMPLICIT
	                  : set.tls == FWD_TLS_STARTTLS ? SMTP_CLIENT_TLS_STARTTLS
	                                                : SMTP_CLIENT_TLS_NONE;
	src->env.hs.tls_ctx = ctx;
	src->env.hs.tls_verify = set.tls_verify;
	src->env.hs.check_greeting = fwd_greeting_not_ours;
	src->env.hs.check_arg = src;
	owner.arg = src;
	src->pool = forward_pool_new(&src->env, &owner);
	LIST_INIT(&src->requests);
	TAILQ_INIT(&src->waiting);
	src->queue_ev = event_new(env->base, -1, 0, fwd_queue_cb, src);
	fwd_own_greetings(src, env->cfg);
	*r = src;
	return 0;
}

void
auth_forward_free(struct auth_forward *src)
{
	struct fwd_request *req;

	if (src == NULL)
		return;
	forward_pool_free(src->pool);
	while ((req = LIST_FIRST(&src->requests)) != NULL)
		fwd_request_free(req);
	event_free(src->queue_ev);
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
	src->env.trace = cb;
	src->env.trace_arg = arg;
}

void
auth_forward_check(struct auth_forward *src, const struct auth_request *ar,
                   auth_forward_done_cb *cb, void *arg)
{
	struct fwd_request *req = xcalloc(1, sizeof(*req));
	int64_t now = forward_upstream_now();

	req->src = src;
	req->cb = cb;
	req->arg = arg;
	req->start = now;
	req->mech = "-";
	req->login = xstrdup(ar->login);
	req->secret = xmemdup(ar->secret, ar->secret_len);
	req->secret_len = ar->secret_len;
	req->cred.login = req->login;
	req->cred.secret = req->secret;
	req->cred.secret_len = req->secret_len;
	if (ar->session != NULL && ar->session[0] != '\0')
		log_escape_str(ar->session, req->session_id, sizeof(req->session_id));
	else
		snprintf(req->session_id, sizeof(req->session_id), "-");
	req->done_ev = event_new(src->env.base, -1, 0, fwd_request_done_cb, req);
	LIST_INSERT_HEAD(&src->requests, req, entry);

	if (ar->mech != NULL && ascii_strcasecmp(ar->mech, "CRAM-MD5") == 0) {
		/* The upstream would send its own challenge: nothing to forward. */
		fwd_request_finish(req, AUTH_FAIL, AUTH_REASON_MECH_UNAVAILABLE, 0);
		return;
	}
	/* Healthy upstreams in order; if every one failed recently, all. */
	for (size_t i = 0; i < src->set.n_up; i++) {
		const struct fwd_upstream *u = &src->set.up[i];
		if (!forward_upstream_is_down(u, now))
			req->cand[req->n_cand++] = i;
		else
			forward_session_trace(
			        &src->env, "upstream %s (%s): skipped, down for %lds more (%s)",
			        u->name, u->addr_text, (long)((u->down_until - now + 999) / 1000),
			        u->down_why);
	}
	if (req->n_cand == 0) {
		for (size_t i = 0; i < src->set.n_up; i++)
			req->cand[req->n_cand++] = i;
		forward_session_trace(&src->env, "every upstream failed recently: trying them all");
	}
	if (!TAILQ_EMPTY(&src->waiting)) {
		/* Others were first. */
		fwd_request_wait(req);
		if (req->waiting) {
			log_debug("s=%s auth: forward queued behind %u waiting", req->session_id,
			          src->n_waiting - 1);
			fwd_pool_room(src);
		}
		return;
	}
	fwd_request_attempt(req);
}

/* ------------------------------------------------------------ the source */

static bool
fwd_configured(const struct config *cfg)
{
	return forward_config_present(cfg);
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
		metrics_set(M_FORWARD_UP, 0, metric_upstream(u->name));
	}
	/* Pre-connecting starts with the loop (never during check-config). */
	forward_pool_start(src->pool);
	*state_r = src;
	return 0;
}

static void
fwd_job_done(void *arg, enum auth_result result, enum auth_reason reason)
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
	forward_upstream_forget(&src->set);
	forward_pool_kick(src->pool);
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
