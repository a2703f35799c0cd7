/* SPDX-License-Identifier: ISC */
/*
 * session.c - one SMTP server session, from the greeting to the close.
 *
 * The session reads lines from a bufferevent and runs them through an explicit
 * state machine (enum session_state; every change goes through session_set_state
 * so a debug log can trace it). Commands are looked up in a table that says in
 * which states each verb is allowed. Work that waits on something else (the
 * auth process, an fsync on the thread pool, the AUTH failure delay, a TLS
 * handshake) parks the session in a waiting state; pipelined input stays
 * buffered until the session is ready again (RFC 2920).
 *
 * Memory: the session and its transaction own every allocation and free them
 * in session_free() / txn_free(). A session is never freed inside a callback
 * that still uses it: session_close() marks it closing and the free happens
 * when the output is flushed and nothing (auth request, fsync) is pending.
 */
#include "session.h"
#include "conn_limit.h"
#include "relay_policy.h"
#include "send_limit.h"
#include "sender_policy.h"
#include "smtpd.h"
#include "tls.h"
#include "tls_handshake.h"
#include "../authwire/auth_client.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/threadpool.h"
#include "../metrics/metric.h"
#include "../sasl/sasl.h"
#include "../smtp/smtp_parse.h"
#include "../spool/spool.h"
#include "../spool/spool_commit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. */
#define DATA_LINE_MAX 998
/* RFC 4954 3: the AUTH parameter may add 500 octets to a MAIL command. */
#define MAIL_AUTH_PARAM_EXTRA 500
/* Memory per session stays bounded whatever the client sends: reading stops
 * once this much input waits beyond the longest line allowed (a session
 * waiting on the auth process, an fsync or the failure delay does not read
 * its pipelined input), and commands stop being run while this much output
 * waits for a client that does not read its replies. */
#define SESSION_INPUT_SLACK (64 * 1024)
#define SESSION_OUTPUT_HIGH (64 * 1024)
#define HELO_MAX 255
/* data_timeout bounds each block of this much message text, counted from the
 * 354 or the end of the block before: see session_deadline_update(). */
#define DATA_BLOCK (64 * 1024)

enum session_state {
	SS_COMMAND,       /* waiting for a command line */
	SS_AUTH_LINE,     /* in a SASL exchange: the next line is a response */
	SS_AUTH_WAIT,     /* the auth process is checking credentials */
	SS_AUTH_DELAY,    /* holding back the answer to a failed AUTH */
	SS_DATA,          /* reading message text */
	SS_COMMIT,        /* the message is being fsynced */
	SS_TLS_HANDSHAKE, /* implicit TLS or after STARTTLS's 220 */
	SS_CLOSING,       /* last reply queued; free once it is flushed */
	SS_COUNT_WAIT,    /* MAIL waits for the user's sending counts across gateways */
};

static const char *const state_names[] = {
        "command", "auth_line",     "auth_wait", "auth_delay", "data",
        "commit",  "tls_handshake", "closing",   "count_wait",
};

/* What the session's deadline is counting (session_deadline_update()). */
enum session_wait {
	WAIT_NONE,    /* we are busy (auth process, fsync, failure delay) */
	WAIT_COMMAND, /* a command or an AUTH response: command_timeout */
	WAIT_DATA,    /* a block of message text: data_timeout */
	WAIT_TLS,     /* STARTTLS's 220 to leave: command_timeout */
	WAIT_CLOSE,   /* the client to read our last reply: command_timeout */
};

struct txn {
	char *mail;        /* "<a@b>" as recorded in the envelope */
	char *mail_params; /* the parameters we keep (SIZE, BODY, SMTPUTF8, AUTH) */
	bool smtputf8;
	uint64_t declared_size;
	char **rcpts; /* "<x@y>" */
	size_t n_rcpts;
	size_t rcpt_cap;
	char *for_rcpt; /* single recipient for the Received "for" clause */

	/* DATA */
	struct spool_msg *msg;
	bool in_headers;
	bool skipping_header; /* inside a stripped Received: and its folded lines */
	bool saw_message_id;
	bool saw_date;
	bool too_big;
	bool line_too_long;
	bool write_error;
	uint64_t size;
	int commit_result;
};

struct session {
	const struct session_env *env;
	const struct listener_cfg *l;
	unsigned listener_idx;
	uint8_t client_key[16];
	struct sockaddr_storage sa;
	char addr[64];
	char id[16];
	int fd;
	/* The plain bufferevent (owns neither fd nor anything else), NULL
	 * during a TLS handshake, then the TLS one (owns ssl and fd). */
	struct bufferevent *bev;
	SSL *ssl;                 /* owned by bev once s->tls */
	struct tls_handshake *hs; /* while the TLS handshake runs */
	enum session_state state;

	bool tls;
	bool esmtp;
	char *helo; /* sanitized, NULL before HELO/EHLO */
	bool authenticated;
	char *auth_user;  /* the canonical identity once authenticated */
	char *auth_login; /* the login as typed (sender_login_match) */
	char *auth_addrs; /* the user's own addresses, "a@x,b@y" (sender policy) */
	unsigned auth_failures;
	unsigned errors;
	unsigned messages;
	bool discard_line;          /* dropping the rest of an over-long line */
	bool auth_tail;             /* lines that are no command belong to an AUTH */
	bool implicit_tls_greeting; /* greet once the implicit TLS handshake is done */
	bool starttls_pending;      /* 220 queued; swap to TLS once it is written */
	const char *refuse;         /* implicit TLS over a limit: this reply, then close */
	struct event *tls_swap;
	char *tls_desc;   /* "TLSv1.3 TLS_AES_..." */
	char *tls_clause; /* Received clause */

	struct sasl *sasl;
	bool auth_pending; /* a VERIFY, or a COUNT (SS_COUNT_WAIT) */
	uint32_t auth_handle;
	/* MAIL's arguments while the shared counts are asked for, and the
	 * answer: the user's counts across the gateways (shared_send.h). */
	char *count_args;
	bool counts_shared;
	unsigned shared_msgs, shared_rcpts;
	enum auth_result auth_result;
	struct event *delay_timer;
	struct event *deadline; /* session_deadline_update() */
	enum session_wait wait;
	uint64_t data_bytes; /* message text read since the 354 */
	uint64_t data_mark;  /* data_bytes when the deadline was last renewed */

	struct txn *txn;
	bool commit_pending;
	bool busy; /* inside session_process(): do not free, hold replies */
	/* Plaintext replies not yet handed to the kernel (session_flush()). */
	struct evbuffer *out;
	bool freed_slot;
	unsigned m_listener;         /* the listener's label (metric.h) */
	unsigned m_mech;             /* the AUTH mechanism's label */
	enum metric_outcome outcome; /* counted when the session ends */
	/* Nothing can be written any more (the peer is gone): free without
	 * waiting for the output to drain. Draining it is not the way: a
	 * socket bufferevent freezes the start of its output buffer, so
	 * evbuffer_drain() there does nothing. */
	bool gone;
	LIST_ENTRY(session) entry; /* on env->sessions */
};

#define REPLY_SHUTDOWN "421 4.3.2 Service shutting down, closing connection"

static void session_process(struct session *s);
static void session_maybe_free(struct session *s);
static void session_deadline_update(struct session *s, bool renew);
static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_start_common(const struct session_env *env, unsigned listener_idx, int fd,
                                 const struct sockaddr *sa, socklen_t salen, const char *proxy,
                                 const char *refuse);

/* ---------------------------------------------------------------- helpers */

static void
session_set_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("s=%s state %s -> %s", s->id, state_names[s->state], state_names[st]);
	s->state = st;
}

static void session_reply(struct session *s, const char *fmt, ...) AR_PRINTF(2, 3);
static void session_flush(struct session *s);
static void session_bound_input(struct session *s);

static void
session_reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (log_enabled(LOG_LEVEL_DEBUG) && strncmp(line, "334 ", 4) != 0) {
		char esc[LOG_VALUE_MAX * 2];
		log_debug("s=%s > %s", s->id, log_escape(line, (size_t)n, esc, sizeof(esc)));
	}
	if (s->ssl != NULL) {
		struct evbuffer *out = bufferevent_get_output(s->bev);
		evbuffer_add(out, line, (size_t)n);
		evbuffer_add(out, "\r\n", 2);
		return;
	}
	evbuffer_add(s->out, line, (size_t)n);
	evbuffer_add(s->out, "\r\n", 2);
	/* Replies made while a batch of pipelined commands runs go out
	 * together when it ends. */
	if (!s->busy)
		session_flush(s);
}

/* Hand the queued plaintext replies to the kernel now, in one writev.
 *
 * Why not just the bufferevent's output: adding to it registers EV_WRITE
 * (epoll_ctl), waits a loop round for writability, writes, and unregisters
 * (epoll_ctl again). A reply almost always fits the socket buffer, so that
 * is two system calls and a round of latency per reply for nothing; they
 * were a third of a worker's system calls. Whatever does not fit goes
 * behind the bufferevent's output, which writes it as the socket drains and
 * then calls session_write_cb() as before. */
static void
session_flush(struct session *s)
{
	if (evbuffer_get_length(s->out) == 0 || s->bev == NULL)
		return;
	struct evbuffer *bout = bufferevent_get_output(s->bev);
	if (evbuffer_get_length(bout) == 0 && s->fd >= 0 && s->ssl == NULL) {
		if (evbuffer_write(s->out, s->fd) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			/* The client is gone; reading sees it and ends the
			 * session. */
			evbuffer_drain(s->out, evbuffer_get_length(s->out));
			return;
		}
	}
	if (evbuffer_get_length(s->out) > 0) {
		evbuffer_add_buffer(bout, s->out);
		return;
	}
	if (s->starttls_pending) {
		/* The 220 is on the wire (what session_write_cb() waits for
		 * otherwise); swap outside the current callback. */
		s->starttls_pending = false;
		event_active(s->tls_swap, EV_TIMEOUT, 0);
	}
}

/* Queue a final reply and close once it is written. */
static void
session_close(struct session *s, const char *reply)
{
	if (s->state == SS_CLOSING)
		return;
	if (reply != NULL)
		session_reply(s, "%s", reply);
	session_set_state(s, SS_CLOSING);
	if (s->bev == NULL)
		return;
	bufferevent_disable(s->bev, EV_READ);
	/* Anything the client pipelined after this is never looked at. */
	evbuffer_drain(bufferevent_get_input(s->bev),
	               evbuffer_get_length(bufferevent_get_input(s->bev)));
	session_deadline_update(s, false);
}

/* Count a protocol error; after max_errors the session ends (421). */
static void
session_error(struct session *s)
{
	s->errors++;
	/* max_errors bad commands are tolerated; the next one ends it. */
	if (s->l->limits.max_errors > 0 && s->errors > s->l->limits.max_errors) {
		log_info("s=%s too many errors errors=%u", s->id, s->errors);
		s->outcome = MO_ERRORS;
		session_close(s, "421 4.7.0 Too many errors, closing connection");
	}
}

static void
session_new_id(char id[16])
{
	static uint64_t counter;
	static uint32_t salt;
	if (salt == 0 && getrandom(&salt, sizeof(salt), 0) != sizeof(salt))
		salt = (uint32_t)getpid();
	counter++;
	uint32_t v = salt ^ (uint32_t)(counter * 2654435761u);
	snprintf(id, 16, "%08x", v);
}

/* Keep a client-supplied name fit for a header and a log: printable ASCII
 * without spaces, others replaced. */
static char *
sanitize_name(const char *in)
{
	size_t n = strlen(in);
	if (n > HELO_MAX)
		n = HELO_MAX;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		out[i] =
		        (c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\') ? (char)c : '?';
	}
	out[n] = '\0';
	return out;
}

static const char *
session_protocol(const struct session *s)
{
	if (!s->esmtp)
		return "SMTP";
	if (s->authenticated)
		return s->tls ? "ESMTPSA" : "ESMTPA";
	return s->tls ? "ESMTPS" : "ESMTP";
}

static bool
session_starttls_offered(const struct session *s)
{
	return !s->tls && s->env->tls != NULL &&
	       (s->l->tls == LTLS_OPTIONAL || s->l->tls == LTLS_REQUIRED);
}

static bool
session_auth_offered(const struct session *s)
{
	if (s->l->role != ROLE_SUBMISSION || s->authenticated)
		return false;
	return s->tls || s->l->allow_plaintext_auth;
}

static bool
session_cram_offered(const struct session *s)
{
	return s->l->cram_md5 && (auth_client_caps(s->env->auth) & AUTH_CAP_CRAM_MD5) != 0;
}

/* ------------------------------------------------------------ transaction */

static void
txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	free(t->mail);
	free(t->mail_params);
	for (size_t i = 0; i < t->n_rcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	free(t->for_rcpt);
	spool_msg_free(t->msg);
	free(t);
}

static void
session_reset_txn(struct session *s)
{
	txn_free(s->txn);
	s->txn = NULL;
}

/* --------------------------------------------------------------- replies */

static void
session_ehlo_reply(struct session *s)
{
	const struct limits_cfg *lim = &s->l->limits;
	char mechs[64];
	char lines[10][96];
	size_t n = 0;

	snprintf(mechs, sizeof(mechs), "PLAIN LOGIN%s", session_cram_offered(s) ? " CRAM-MD5" : "");
	snprintf(lines[n++], sizeof(lines[0]), "%s", s->env->cfg->hostname);
	snprintf(lines[n++], sizeof(lines[0]), "PIPELINING");
	snprintf(lines[n++], sizeof(lines[0]), "SIZE %llu",
	         (unsigned long long)lim->max_message_size);
	snprintf(lines[n++], sizeof(lines[0]), "ENHANCEDSTATUSCODES");
	snprintf(lines[n++], sizeof(lines[0]), "8BITMIME");
	snprintf(lines[n++], sizeof(lines[0]), "SMTPUTF8");
	if (session_starttls_offered(s))
		snprintf(lines[n++], sizeof(lines[0]), "STARTTLS");
	if (session_auth_offered(s)) {
		snprintf(lines[n++], sizeof(lines[0]), "AUTH %s", mechs);
		/* Outlook before 2003 only understands the draft's "AUTH=" form. */
		if (s->l->auth_legacy_advertise)
			snprintf(lines[n++], sizeof(lines[0]), "AUTH=%s", mechs);
	}
	for (size_t i = 0; i < n; i++)
		session_reply(s, "250%c%s", i + 1 < n ? '-' : ' ', lines[i]);
}

/* ------------------------------------------------------------- commands */

typedef void cmd_fn(struct session *s, const char *args);

static void
cmd_helo(struct session *s, const char *args, bool esmtp)
{
	if (*args == '\0') {
		session_reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		session_error(s);
		return;
	}
	/* RFC 5321 4.1.4: HELO/EHLO again resets the session like RSET. */
	session_reset_txn(s);
	free(s->helo);
	char name[HELO_MAX + 1];
	size_t n = strcspn(args, " ");
	if (n > HELO_MAX)
		n = HELO_MAX;
	memcpy(name, args, n);
	name[n] = '\0';
	s->helo = sanitize_name(name);
	s->esmtp = esmtp;
	if (esmtp)
		session_ehlo_reply(s);
	else
		session_reply(s, "250 %s", s->env->cfg->hostname);
}

static void
cmd_ehlo(struct session *s, const char *args)
{
	cmd_helo(s, args, true);
}

static void
cmd_helo_plain(struct session *s, const char *args)
{
	cmd_helo(s, args, false);
}

static void
cmd_noop(struct session *s, const char *args)
{
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_rset(struct session *s, const char *args)
{
	session_reset_txn(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, const char *args)
{
	s->outcome = MO_QUIT;
	session_close(s, "221 2.0.0 Bye");
}

static void
cmd_vrfy(struct session *s, const char *args)
{
	/* Never tell whether a user exists (RFC 5321 3.5.3 allows 252). */
	session_reply(s,
	              "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void
cmd_help(struct session *s, const char *args)
{
	session_reply(s,
	              "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT "
	              "VRFY STARTTLS AUTH");
}

static void
cmd_not_offered(struct session *s, const char *args)
{
	session_reply(s, "502 5.5.1 Command not implemented");
	session_error(s);
}

static void session_tls_ready(struct session *s);

/* The handshake is over (tls_handshake.h): on success the session goes on
 * in an OpenSSL bufferevent straight on the socket (no filter layer, so
 * "output empty" means "handed to the kernel"); else it ends, with nothing
 * more to say to the client. */
static void
session_tls_handshake_done(enum tls_handshake_result result, const char *error, void *arg)
{
	struct session *s = arg;

	tls_handshake_free(s->hs);
	s->hs = NULL;
	if (result != TLS_HANDSHAKE_OK) {
		s->outcome = result == TLS_HANDSHAKE_TIMEOUT ? MO_TIMEOUT : MO_TLS_FAILED;
		metrics_inc(M_TLS_FAILURES, s->m_listener,
		            result == TLS_HANDSHAKE_TIMEOUT ? MT_TIMEOUT : MT_ERROR);
		if (result == TLS_HANDSHAKE_TIMEOUT)
			log_info("s=%s timeout state=%s", s->id, state_names[s->state]);
		else
			log_info("s=%s tls error: %s", s->id, error);
		goto fail;
	}
	struct bufferevent *tls_bev = bufferevent_openssl_socket_new(
	        s->env->base, s->fd, s->ssl, BUFFEREVENT_SSL_OPEN, BEV_OPT_CLOSE_ON_FREE);
	if (tls_bev == NULL) {
		log_err("s=%s cannot start TLS", s->id);
		s->outcome = MO_INTERNAL;
		goto fail;
	}
	/* Many clients close without close_notify; that is not an attack on
	 * SMTP, whose own QUIT/221 already ended the dialogue. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls_bev, 1);
	s->bev = tls_bev;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	if (s->refuse != NULL) {
		/* Refused clients hold no slot: a short deadline for reading
		 * and writing alike. Every other wait is the session's own
		 * (session_deadline_update()). */
		struct timeval tv = {10, 0};
		bufferevent_set_timeouts(s->bev, &tv, &tv);
	}
	session_bound_input(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	bool implicit = s->implicit_tls_greeting;
	s->implicit_tls_greeting = false;
	session_tls_ready(s);
	if (s->refuse != NULL || s->env->sessions->stopping) {
		session_close(s, s->refuse != NULL ? s->refuse : REPLY_SHUTDOWN);
		session_maybe_free(s);
		return;
	}
	if (implicit)
		session_reply(s, "220 %s ESMTP %s", s->env->cfg->hostname,
		              s->l->banner ? s->l->banner : "authrelay");
	session_process(s);
	return;
fail:
	SSL_free(s->ssl);
	s->ssl = NULL;
	s->state = SS_CLOSING;
	session_maybe_free(s);
}

/* Start the TLS handshake on the socket; the session has no bufferevent
 * until it is done. Called with no plain bufferevent callback on the stack.
 * Refused clients (implicit TLS over a limit) get a short deadline: they
 * hold no connection slot. */
static int
session_tls_attach(struct session *s)
{
	SSL *ssl = SSL_new(s->env->tls);
	if (ssl == NULL)
		return -1;
	if (SSL_set_fd(ssl, s->fd) != 1) {
		SSL_free(ssl);
		return -1;
	}
	SSL_set_accept_state(ssl);
	s->ssl = ssl;
	session_set_state(s, SS_TLS_HANDSHAKE);
	s->hs = tls_handshake_start(s->env->base, ssl, s->fd, s->env->keyproc,
	                            s->refuse != NULL ? 10 : s->l->limits.command_timeout,
	                            session_tls_handshake_done, s);
	/* The handshake has its own deadline for the whole of it. */
	session_deadline_update(s, false);
	return 0;
}

/* STARTTLS's 220 is on the wire: drop the plain bufferevent, start TLS. */
static void
session_starttls_swap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	/* The plain bufferevent does not own the fd (no BEV_OPT_CLOSE_ON_FREE).
	 * Detach it first: libevent finishes freeing later and must not touch
	 * an fd that now belongs to the TLS handshake. */
	bufferevent_setfd(s->bev, -1);
	bufferevent_free(s->bev);
	s->bev = NULL;
	if (session_tls_attach(s) != 0) {
		log_err("s=%s cannot start TLS", s->id);
		s->outcome = MO_INTERNAL;
		s->state = SS_CLOSING;
		session_maybe_free(s);
	}
}

static void
session_tls_start(struct session *s)
{
	/* RFC 3207 4.2 / CVE-2011-0411: plaintext pipelined after STARTTLS is
	 * discarded, never executed; reading stops until TLS takes over, so
	 * the client's handshake stays in the socket for OpenSSL. */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(s->bev, EV_READ);
	s->starttls_pending = true;
	session_set_state(s, SS_TLS_HANDSHAKE);
}

static void
cmd_starttls(struct session *s, const char *args)
{
	if (s->tls) {
		session_reply(s, "503 5.5.1 TLS already active");
		session_error(s);
		return;
	}
	if (!session_starttls_offered(s)) {
		session_reply(s, "502 5.5.1 STARTTLS not available on this listener");
		session_error(s);
		return;
	}
	if (*args != '\0') {
		session_reply(s, "501 5.5.4 Syntax error (no parameters allowed)");
		session_error(s);
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	session_tls_start(s);
}

/* After TLS is up: RFC 3207 4.2, forget everything learned from the client
 * before it. The AUTH failure count stays, so STARTTLS cannot reset it. */
static void
session_tls_ready(struct session *s)
{
	char buf[256];
	s->tls = true;
	session_reset_txn(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	free(s->tls_desc);
	free(s->tls_clause);
	s->tls_desc = xstrdup(tls_describe(s->ssl, buf, sizeof(buf)));
	s->tls_clause = xstrdup(tls_received_clause(s->ssl, buf, sizeof(buf)));
	log_info("s=%s tls %s%s", s->id, s->tls_desc,
	         SSL_session_reused(s->ssl) ? " resumed=yes" : "");
	metrics_inc(M_TLS_HANDSHAKES, s->m_listener, metric_tls_version(SSL_get_version(s->ssl)));
	session_set_state(s, SS_COMMAND);
}

/* ---- AUTH */

static void session_auth_done(const struct auth_reply *rep, void *arg);

static void
session_auth_finish_failure(struct session *s)
{
	session_reply(s, "535 5.7.8 Authentication credentials invalid");
	if (s->auth_failures >= s->l->limits.max_auth_failures) {
		log_info("s=%s too many auth failures auth_failures=%u", s->id, s->auth_failures);
		s->outcome = MO_AUTH_FAILURES;
		session_close(s, "421 4.7.0 Too many authentication failures, closing connection");
		return;
	}
	session_set_state(s, SS_COMMAND);
}

static void
session_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	session_auth_finish_failure(s);
	session_process(s);
}

static void
session_auth_end_sasl(struct session *s)
{
	sasl_free(s->sasl);
	s->sasl = NULL;
}

static void
session_auth_verify(struct session *s)
{
	size_t secret_len;
	const char *secret = sasl_secret(s->sasl, &secret_len);
	struct auth_request req = {
	        .mech = sasl_mech(s->sasl),
	        .login = sasl_login(s->sasl),
	        .secret = secret,
	        .secret_len = secret_len,
	        .challenge = sasl_challenge(s->sasl),
	        .session = s->id,
	        .client = s->addr,
	        .listener = s->l->name,
	};
	session_set_state(s, SS_AUTH_WAIT);
	s->m_mech = metric_mech(req.mech);
	s->auth_pending = true;
	s->auth_handle = auth_client_verify(s->env->auth, &req, session_auth_done, s);
	/* The mechanism's copy of the password is no longer needed. */
	free(s->auth_user);
	s->auth_user = xstrdup(req.login);
	free(s->auth_login);
	s->auth_login = xstrdup(req.login);
	session_auth_end_sasl(s);
}

/* Act on what a SASL step returned. */
static void
session_auth_step_result(struct session *s, enum sasl_result r)
{
	switch (r) {
	case SASL_CHALLENGE:
		session_reply(s, "334 %s", sasl_out(s->sasl));
		session_set_state(s, SS_AUTH_LINE);
		return;
	case SASL_DONE:
		session_auth_verify(s);
		return;
	case SASL_CANCELLED:
		session_reply(s, "501 5.7.0 Authentication cancelled");
		break;
	case SASL_BAD_BASE64:
		session_reply(s, "501 5.5.2 Invalid base64 data");
		session_error(s);
		break;
	case SASL_BAD_INITIAL:
		session_reply(s, "501 5.7.0 Initial response not allowed for this mechanism");
		session_error(s);
		break;
	case SASL_MALFORMED: {
		/* A malformed credential message is a failed attempt (RFC 4954 9). */
		char user[LOG_VALUE_MAX];
		log_info("s=%s auth client=%s listener=%s result=fail reason=%s mech=%s "
		         "user=\"%s\"",
		         s->id, s->addr, s->l->name, auth_reason_name(AUTH_REASON_MALFORMED),
		         sasl_mech(s->sasl),
		         log_escape_str(sasl_login(s->sasl), user, sizeof(user)));
		metrics_inc(M_AUTH_ATTEMPTS, metric_mech(sasl_mech(s->sasl)), metric_source("none"),
		            AUTH_FAIL, AUTH_REASON_MALFORMED);
		session_auth_end_sasl(s);
		s->auth_failures++;
		session_auth_finish_failure(s);
		return;
	}
	}
	session_auth_end_sasl(s);
	if (s->state != SS_CLOSING)
		session_set_state(s, SS_COMMAND);
}

static void
session_auth_done(const struct auth_reply *rep, void *arg)
{
	struct session *s = arg;
	char user[LOG_VALUE_MAX];
	unsigned ms;

	s->auth_pending = false;
	/* The auth process counted the answers it gave, not these. */
	if (auth_client_local_reason(rep->reason))
		metrics_inc(M_AUTH_ATTEMPTS, s->m_mech, metric_source("none"), rep->result,
		            rep->reason);
	if (s->state == SS_CLOSING) {
		session_maybe_free(s);
		return;
	}
	if (rep->result != AUTH_OK && auth_client_local_reason(rep->reason)) {
		/* The auth process never saw this attempt: the one line it
		 * gets is ours, in the auth process's shape. */
		log_info("s=%s auth client=%s listener=%s result=%s reason=%s user=\"%s\"", s->id,
		         s->addr, s->l->name, auth_result_name(rep->result),
		         auth_reason_name(rep->reason),
		         log_escape_str(s->auth_user ? s->auth_user : "", user, sizeof(user)));
	}
	switch (rep->result) {
	case AUTH_OK:
		s->authenticated = true;
		if (rep->identity[0] != '\0') {
			free(s->auth_user);
			s->auth_user = xstrdup(rep->identity);
		}
		/* The user's addresses, for sender_login_match. */
		free(s->auth_addrs);
		s->auth_addrs = rep->addresses[0] != '\0' ? xstrdup(rep->addresses) : NULL;
		/* The auth process logged the decision with this s= id, the
		 * source and the timing, as it logs every failure that reached
		 * it: a second line here would count each attempt twice. */
		session_reply(s, "235 2.7.0 Authentication successful");
		session_set_state(s, SS_COMMAND);
		break;
	case AUTH_TEMPFAIL:
		/* Not the client's fault: not counted as a failure. */
		free(s->auth_user);
		s->auth_user = NULL;
		if (rep->reason == AUTH_REASON_LOCKED) {
			/* Locked out by the auth process's throttle. */
			if (s->env->protection != NULL &&
			    s->env->protection->lockout_reply == 421) {
				s->outcome = MO_LOCKED;
				session_close(s,
				              "421 4.7.0 Too many failed authentication attempts, "
				              "closing connection");
				break;
			}
			session_reply(s, "454 4.7.0 Too many failed authentication attempts, try "
			                 "again later");
		} else {
			session_reply(s, "454 4.7.0 Temporary authentication failure");
		}
		session_set_state(s, SS_COMMAND);
		break;
	case AUTH_FAIL:
		free(s->auth_user);
		s->auth_user = NULL;
		s->auth_failures++;
		/* The auth process's throttle may ask for a longer delay. */
		ms = s->l->limits.auth_failure_delay_ms;
		if (rep->delay_ms > ms)
			ms = rep->delay_ms;
		if (ms > 0) {
			/* A timer, not a sleep: the worker serves others meanwhile. */
			struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};
			session_set_state(s, SS_AUTH_DELAY);
			/* From now, not from the loop's cached time: the delay
			 * is a floor, never a little short (as the auth
			 * process's own hold). */
			event_base_update_cache_time(event_get_base(s->delay_timer));
			evtimer_add(s->delay_timer, &tv);
			return;
		}
		session_auth_finish_failure(s);
		break;
	}
	session_process(s);
}

static void
cmd_auth(struct session *s, const char *args)
{
	if (s->l->role != ROLE_SUBMISSION) {
		session_reply(s, "502 5.5.1 AUTH not available on this listener");
		session_error(s);
		return;
	}
	if (!s->esmtp) {
		session_reply(s, "503 5.5.1 Send EHLO first");
		session_error(s);
		return;
	}
	if (s->authenticated) {
		session_reply(s, "503 5.5.1 Already authenticated");
		session_error(s);
		return;
	}
	if (s->txn != NULL) {
		session_reply(s, "503 5.5.1 AUTH not allowed during a mail transaction");
		session_error(s);
		return;
	}
	if (!session_auth_offered(s)) {
		/* RFC 4954 4/6: plaintext mechanisms need TLS here. */
		session_reply(
		        s, "538 5.7.11 Encryption required for requested authentication mechanism");
		session_error(s);
		return;
	}
	char mech[32];
	size_t n = strcspn(args, " ");
	const char *ir = NULL;
	if (n == 0 || n >= sizeof(mech)) {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		session_error(s);
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	if (args[n] == ' ') {
		ir = args + n + 1;
		if (*ir == '\0' || strchr(ir, ' ') != NULL) {
			session_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
			session_error(s);
			return;
		}
	}
	if (ascii_strcasecmp(mech, "CRAM-MD5") == 0 && !session_cram_offered(s)) {
		session_reply(s, "504 5.5.4 Unrecognized authentication mechanism");
		session_error(s);
		return;
	}
	s->sasl = sasl_new(mech, s->env->cfg->hostname);
	if (s->sasl == NULL) {
		session_reply(s, "504 5.5.4 Unrecognized authentication mechanism");
		session_error(s);
		return;
	}
	session_auth_step_result(s, sasl_start(s->sasl, ir));
}

static void
session_auth_line(struct session *s, const char *line, size_t len)
{
	session_auth_step_result(s, sasl_step(s->sasl, line, len));
}

/* ---- MAIL, RCPT, DATA */

static bool
param_is(const struct smtp_param *p, const char *key)
{
	return strcmp(p->key, key) == 0;
}

/* Fill in the default domain for a bare address; false if it has none and
 * none is configured. */
static bool
session_qualify(struct session *s, struct smtp_path *p)
{
	if (p->null || p->postmaster || p->domain[0] != '\0')
		return true;
	if (s->l->default_domain == NULL)
		return false;
	snprintf(p->domain, sizeof(p->domain), "%s", s->l->default_domain);
	char addr[sizeof(p->addr)];
	snprintf(addr, sizeof(addr), "%s@%s", p->local, p->domain);
	memcpy(p->addr, addr, sizeof(addr));
	return true;
}

/* ---- sender policy and per-user sending limits */

/* Over messages_per_hour or recipients_per_hour: log, tell the auth process
 * (which raises the send_limit alert), answer 450 4.7.1. */
static void
session_send_limit_hit(struct session *s, const char *limit, unsigned count, unsigned max)
{
	char user[LOG_VALUE_MAX];
	struct auth_notify n = {
	        .event = "send_limit",
	        .user = s->auth_user,
	        .client = s->addr,
	        .session = s->id,
	        .limit = limit,
	        .count = count,
	        .max = max,
	};

	log_info("s=%s reject reason=%s count=%u limit=%u user=\"%s\"", s->id, limit, count, max,
	         log_escape_str(s->auth_user, user, sizeof(user)));
	metrics_inc(M_MESSAGES_REJECTED, s->m_listener, metric_reject(limit));
	auth_client_notify(s->env->auth, &n);
	session_reply(s, "450 4.7.1 Sending limit exceeded (%s), try again later", limit);
}

static void session_send_counts(struct session *s, unsigned *msgs_r, unsigned *rcpts_r);

/* MAIL of an authenticated user: sender_login_match, then messages_per_hour.
 * 0 to go on, -1 when a reply was sent. */
static int
session_protect_mail(struct session *s, const struct smtp_path *from)
{
	const struct smtpd_protection *pc = s->env->protection;
	const char *deny;
	unsigned count = 0, rcpts = 0;

	if (!s->authenticated || s->auth_user == NULL)
		return 0;
	deny = sender_policy_check(s->l, pc, s->auth_user, s->auth_login, s->auth_addrs,
	                           from->null ? "" : from->addr);
	if (deny != NULL) {
		char user[LOG_VALUE_MAX], addr[LOG_VALUE_MAX];
		log_info("s=%s reject reason=sender_login_mismatch user=\"%s\" from=\"<%s>\"",
		         s->id, log_escape_str(s->auth_user, user, sizeof(user)),
		         log_escape_str(from->addr, addr, sizeof(addr)));
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_SENDER_LOGIN_MISMATCH);
		session_reply(s, "%s", deny);
		return -1;
	}
	if (pc != NULL && pc->messages_per_hour > 0) {
		session_send_counts(s, &count, &rcpts);
		if (count >= pc->messages_per_hour) {
			session_send_limit_hit(s, "messages_per_hour", count,
			                       pc->messages_per_hour);
			return -1;
		}
	}
	return 0;
}

/* RCPT of an authenticated user: recipients_per_hour. */
static int
session_protect_rcpt(struct session *s)
{
	const struct smtpd_protection *pc = s->env->protection;
	unsigned count = 0, msgs = 0;

	if (!s->authenticated || s->auth_user == NULL || pc == NULL || pc->recipients_per_hour == 0)
		return 0;
	session_send_counts(s, &msgs, &count);
	count += (unsigned)s->txn->n_rcpts;
	if (count >= pc->recipients_per_hour) {
		session_send_limit_hit(s, "recipients_per_hour", count, pc->recipients_per_hour);
		return -1;
	}
	return 0;
}

/* A message was queued: count it for its user. */
static void
session_protect_record(struct session *s, const struct txn *t)
{
	if (s->authenticated && s->auth_user != NULL && s->env->send_limits != NULL)
		send_limit_record(s->env->send_limits, s->env->worker, s->auth_user,
		                  (unsigned)t->n_rcpts, send_limit_now());
	/* And for the other gateways, through the auth process. */
	if (s->authenticated && s->auth_user != NULL &&
	    (auth_client_caps(s->env->auth) & AUTH_CAP_SHARED_SEND)) {
		struct auth_notify n = {
		        .event = "sent",
		        .user = s->auth_user,
		        .client = s->addr,
		        .session = s->id,
		        .limit = "",
		        .count = (uint32_t)t->n_rcpts,
		};
		auth_client_notify(s->env->auth, &n);
	}
}

/* The user's messages and recipients of the last hour: this gateway's
 * (shared memory), or all gateways' when Redis gave them for this MAIL and
 * they are more. The larger count stands: Redis away never lowers it. */
static void
session_send_counts(struct session *s, unsigned *msgs_r, unsigned *rcpts_r)
{
	*msgs_r = *rcpts_r = 0;
	if (s->env->send_limits != NULL)
		send_limit_counts(s->env->send_limits, s->auth_user, send_limit_now(), msgs_r,
		                  rcpts_r);
	if (s->counts_shared) {
		if (s->shared_msgs > *msgs_r)
			*msgs_r = s->shared_msgs;
		if (s->shared_rcpts > *rcpts_r)
			*rcpts_r = s->shared_rcpts;
	}
}

static void cmd_mail(struct session *s, const char *args);

/* The counts across gateways came (or not: then this gateway's stand);
 * MAIL goes on where it stopped, then the pipelined commands after it. */
static void
session_counts_done(const struct auth_counts *c, void *arg)
{
	struct session *s = arg;
	char *args = s->count_args;

	s->auth_pending = false;
	s->counts_shared = c->shared;
	s->shared_msgs = c->msgs;
	s->shared_rcpts = c->rcpts;
	session_set_state(s, SS_COMMAND);
	cmd_mail(s, args);
	free(args);
	s->count_args = NULL;
	session_process(s);
}

/* Does this MAIL need the user's counts from the other gateways first? */
static bool
session_wants_counts(const struct session *s)
{
	const struct smtpd_protection *pc = s->env->protection;

	return s->count_args == NULL && s->authenticated && s->auth_user != NULL &&
	       s->txn == NULL && pc != NULL &&
	       (pc->messages_per_hour > 0 || pc->recipients_per_hour > 0) &&
	       (auth_client_caps(s->env->auth) & AUTH_CAP_SHARED_SEND);
}

static void
cmd_mail(struct session *s, const char *args)
{
	const struct limits_cfg *lim = &s->l->limits;
	struct smtp_mail_args ma;
	const char *err;

	if (s->helo == NULL) {
		session_reply(s, "503 5.5.1 Send HELO/EHLO first");
		session_error(s);
		return;
	}
	if (s->txn != NULL) {
		session_reply(s, "503 5.5.1 Sender already specified");
		session_error(s);
		return;
	}
	/* RFC 6409 4.3: an MSA refuses mail from unauthenticated clients. */
	if (s->l->role == ROLE_SUBMISSION && !s->authenticated) {
		session_reply(s, "530 5.7.0 Authentication required");
		session_error(s);
		return;
	}
	if (session_wants_counts(s)) {
		/* Asked once per MAIL; the answer comes within the auth
		 * client's bound, Redis or not. */
		s->counts_shared = false;
		s->count_args = xstrdup(args);
		session_set_state(s, SS_COUNT_WAIT);
		s->auth_pending = true;
		s->auth_handle =
		        auth_client_count(s->env->auth, s->auth_user, session_counts_done, s);
		return;
	}
	if (lim->max_messages_per_session > 0 && s->messages >= lim->max_messages_per_session) {
		log_info("s=%s max_messages_per_session reached messages=%u", s->id, s->messages);
		s->outcome = MO_MAX_MESSAGES;
		session_close(s, "421 4.7.0 Too many messages in this session, closing connection");
		return;
	}
	if (smtp_parse_mail_args(args, SMTP_PARAMS_MAIL, &ma, &err) != 0) {
		session_reply(s, "%s", err);
		session_error(s);
		return;
	}
	if (ma.path.postmaster) {
		session_reply(s, "501 5.1.7 Bad sender address syntax");
		session_error(s);
		return;
	}
	if (!session_qualify(s, &ma.path)) {
		session_reply(s, "553 5.1.7 Sender address must be fully qualified");
		session_error(s);
		return;
	}
	if (session_protect_mail(s, &ma.path) != 0)
		return;

	struct txn *t = xcalloc(1, sizeof(*t));
	char kept[1024] = "";
	size_t kl = 0;
	for (size_t i = 0; i < ma.n_params; i++) {
		const struct smtp_param *p = &ma.params[i];
		const char *bad = NULL;
		if (param_is(p, "SIZE")) {
			char *end;
			errno = 0;
			unsigned long long v = p->has_value ? strtoull(p->value, &end, 10) : 0;
			if (!p->has_value || errno != 0 || *end != '\0' || p->value[0] < '0' ||
			    p->value[0] > '9')
				bad = "501 5.5.4 Syntax error in SIZE parameter";
			else if (v > lim->max_message_size)
				bad = "552 5.3.4 Message size exceeds fixed maximum message size";
			else
				t->declared_size = v;
		} else if (param_is(p, "BODY")) {
			if (!p->has_value || (ascii_strcasecmp(p->value, "7BIT") != 0 &&
			                      ascii_strcasecmp(p->value, "8BITMIME") != 0))
				bad = "501 5.5.4 Unsupported BODY parameter";
		} else if (param_is(p, "SMTPUTF8")) {
			if (p->has_value)
				bad = "501 5.5.4 SMTPUTF8 takes no value";
			else
				t->smtputf8 = true;
		} else if (param_is(p, "AUTH")) {
			/* RFC 4954 5: accepted from anyone; it never grants
			 * anything. We decode it only to check its syntax. */
			char decoded[600];
			if (!p->has_value ||
			    smtp_xtext_decode(p->value, decoded, sizeof(decoded)) != 0)
				bad = "501 5.5.4 Syntax error in AUTH parameter";
		} else {
			bad = "555 5.5.4 Unsupported parameter";
		}
		if (bad != NULL) {
			session_reply(s, "%s", bad);
			session_error(s);
			txn_free(t);
			return;
		}
		if (!param_is(p, "AUTH")) {
			int w = snprintf(kept + kl, sizeof(kept) - kl, " %s%s%s", p->key,
			                 p->has_value ? "=" : "", p->has_value ? p->value : "");
			if (w > 0 && (size_t)w < sizeof(kept) - kl)
				kl += (size_t)w;
		}
	}
	if (ma.path.utf8 && !t->smtputf8) {
		session_reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		session_error(s);
		txn_free(t);
		return;
	}
	size_t ml = strlen(ma.path.addr) + 3;
	t->mail = xmalloc(ml);
	snprintf(t->mail, ml, "<%s>", ma.path.addr);
	t->mail_params = xstrdup(kept);
	s->txn = t;
	session_reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct session *s, const char *args)
{
	struct smtp_mail_args ma;
	const char *err;

	if (s->txn == NULL) {
		session_reply(s, "503 5.5.1 Need MAIL command");
		session_error(s);
		return;
	}
	if (s->txn->n_rcpts >= s->l->limits.max_recipients) {
		/* RFC 5321 4.5.3.1.10 */
		session_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (smtp_parse_mail_args(args, SMTP_PARAMS_RCPT, &ma, &err) != 0) {
		session_reply(s, "%s", err);
		session_error(s);
		return;
	}
	if (ma.n_params > 0) {
		session_reply(s, "555 5.5.4 Unsupported parameter");
		session_error(s);
		return;
	}
	if (ma.path.utf8 && !s->txn->smtputf8) {
		session_reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		session_error(s);
		return;
	}
	if (!session_qualify(s, &ma.path)) {
		session_reply(s, "553 5.1.3 Recipient address must be fully qualified");
		session_error(s);
		return;
	}
	struct relay_ctx rc = {
	        .cfg = s->env->cfg,
	        .listener = s->l,
	        .client = (const struct sockaddr *)&s->sa,
	        .authenticated = s->authenticated,
	};
	const char *deny = relay_policy_check(&rc, &ma.path);
	if (deny != NULL) {
		char to[LOG_VALUE_MAX];
		log_info("s=%s reject reply=\"%s\" rcpt=\"<%s>\"", s->id, deny,
		         log_escape_str(ma.path.addr, to, sizeof(to)));
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_RELAY_DENIED);
		session_reply(s, "%s", deny);
		session_error(s);
		return;
	}
	if (session_protect_rcpt(s) != 0)
		return;
	struct txn *t = s->txn;
	if (t->n_rcpts == t->rcpt_cap) {
		t->rcpt_cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
		t->rcpts = xrealloc(t->rcpts, t->rcpt_cap * sizeof(*t->rcpts));
	}
	const char *a = ma.path.postmaster ? "Postmaster" : ma.path.addr;
	size_t rl = strlen(a) + 3;
	t->rcpts[t->n_rcpts] = xmalloc(rl);
	snprintf(t->rcpts[t->n_rcpts], rl, "<%s>", a);
	t->n_rcpts++;
	session_reply(s, "250 2.1.5 Ok");
}

static void
rfc5322_date(char *buf, size_t bufsz, time_t now)
{
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, bufsz, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static int
txn_write(struct txn *t, const char *data, size_t len)
{
	if (t->write_error)
		return -1;
	if (spool_msg_write(t->msg, data, len) != 0) {
		t->write_error = true;
		return -1;
	}
	return 0;
}

static void
session_write_received(struct session *s)
{
	struct txn *t = s->txn;
	char date[64];
	char hdr[1400];
	rfc5322_date(date, sizeof(date), time(NULL));
	/* RFC 5321 4.4 trace field, protocol keyword per RFC 3848. The "for"
	 * clause only for a single recipient, so a Bcc list is not revealed. */
	int n = snprintf(hdr, sizeof(hdr),
	                 "Received: from %s (unknown [%s])\r\n"
	                 "\tby %s (authrelay) with %s id %s%s%s%s%s;\r\n"
	                 "\t%s\r\n",
	                 s->helo, s->addr, s->env->cfg->hostname, session_protocol(s),
	                 spool_msg_id(t->msg), s->tls ? "\r\n\t" : "", s->tls ? s->tls_clause : "",
	                 t->n_rcpts == 1 ? "\r\n\tfor " : "", t->n_rcpts == 1 ? t->rcpts[0] : "",
	                 date);
	if (n > 0 && (size_t)n < sizeof(hdr))
		txn_write(t, hdr, (size_t)n);
}

/* The reply when the spool cannot take a message. A full disk or quota is
 * 452 4.3.1: "insufficient system storage" (RFC 5321 4.2.2, a reply listed
 * for DATA in 4.3.2) and "mail system full" (RFC 3463 3.4); a client tries
 * again later, as for any 4xx. Other errors are 451 4.3.0. */
static void
session_spool_error(struct session *s, int err)
{
	if (err == ENOSPC || err == EDQUOT)
		session_reply(s, "452 4.3.1 Insufficient system storage");
	else
		session_reply(s, "451 4.3.0 Temporary queue file error");
}

static void
cmd_data(struct session *s, const char *args)
{
	if (s->txn == NULL) {
		session_reply(s, "503 5.5.1 Need MAIL command");
		session_error(s);
		return;
	}
	if (s->txn->n_rcpts == 0) {
		/* RFC 2920 3.1: no valid recipients. */
		session_reply(s, "554 5.5.1 No valid recipients");
		session_error(s);
		return;
	}
	if (*args != '\0') {
		session_reply(s, "501 5.5.4 Syntax: DATA");
		session_error(s);
		return;
	}
	struct txn *t = s->txn;
	struct spool_envelope env = {
	        .time = (int64_t)time(NULL),
	        .client = s->addr,
	        .helo = s->helo,
	        .listener = s->l->name,
	        .protocol = (char *)session_protocol(s),
	        .tls = s->tls ? s->tls_desc : "none",
	        .auth = s->authenticated ? s->auth_user : NULL,
	        .rcpts = t->rcpts,
	        .n_rcpts = t->n_rcpts,
	};
	char mail[1100];
	snprintf(mail, sizeof(mail), "%s%s", t->mail, t->mail_params);
	env.mail = mail;
	const char *err;
	t->msg = spool_msg_new(s->env->spool_dir, &env, &err);
	if (t->msg == NULL) {
		int e = errno;
		log_err("s=%s spool error: %s", s->id, err);
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_SPOOL_ERROR);
		session_spool_error(s, e);
		return;
	}
	t->in_headers = true;
	if (s->l->insert_received)
		session_write_received(s);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	session_set_state(s, SS_DATA);
	s->data_bytes = 0;
	s->data_mark = 0;
}

/* Headers a submission server adds when missing (RFC 6409 8.2, 8.3). */
static void
session_add_missing_headers(struct session *s)
{
	struct txn *t = s->txn;
	char buf[512];
	if (!s->l->add_missing_headers)
		return;
	if (!t->saw_date) {
		char date[64];
		rfc5322_date(date, sizeof(date), time(NULL));
		int n = snprintf(buf, sizeof(buf), "Date: %s\r\n", date);
		txn_write(t, buf, (size_t)n);
	}
	if (!t->saw_message_id) {
		int n = snprintf(buf, sizeof(buf), "Message-ID: <%s.%lld@%s>\r\n",
		                 spool_msg_id(t->msg), (long long)time(NULL),
		                 s->env->cfg->hostname);
		txn_write(t, buf, (size_t)n);
	}
}

static bool
header_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && line[n] == ':' && ascii_strncasecmp(line, name, n) == 0;
}

/* A header field starts with printable non-space characters up to a colon. */
static bool
is_header_start(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == ':')
			return i > 0;
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return false;
}

/* One line of message text (dot-unstuffed, without its line end). */
static void
session_data_line(struct session *s, const char *line, size_t len)
{
	struct txn *t = s->txn;

	if (t->in_headers) {
		if (len > 0 && (line[0] == ' ' || line[0] == '\t')) {
			if (t->skipping_header)
				return;
		} else if (len > 0 && is_header_start(line, len)) {
			t->skipping_header = false;
			if (header_is(line, len, "Received") && s->authenticated &&
			    s->l->strip_received) {
				/* Hides the user's home address; ours was written first. */
				t->skipping_header = true;
				return;
			}
			if (header_is(line, len, "Message-ID"))
				t->saw_message_id = true;
			else if (header_is(line, len, "Date"))
				t->saw_date = true;
		} else {
			/* The blank line, or a body line with no separator: the
			 * header ends here (we add the separator if it is missing). */
			t->in_headers = false;
			t->skipping_header = false;
			session_add_missing_headers(s);
			if (len > 0)
				txn_write(t, "\r\n", 2);
		}
	}
	t->size += len + 2;
	if (t->size > s->l->limits.max_message_size) {
		t->too_big = true;
		return;
	}
	/* A bare CR or LF inside a line is stored as a line end, so that no
	 * later hop can read it as one of its own (RFC 5322 2.3). */
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (line[i] != '\n' && line[i] != '\r')
			continue;
		txn_write(t, line + start, i - start);
		txn_write(t, "\r\n", 2);
		if (line[i] == '\r' && i + 1 < len && line[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	if (txn_write(t, line + start, len - start) == 0)
		txn_write(t, "\r\n", 2);
}

static void session_commit_cb(struct spool_msg *msg, int result, void *arg);
static void session_commit_done(void *arg);

static void
session_data_end(struct session *s)
{
	struct txn *t = s->txn;
	if (t->in_headers) {
		t->in_headers = false;
		session_add_missing_headers(s);
	}
	if (t->too_big) {
		log_info("s=%s reject reason=max_message_size size>%llu", s->id,
		         (unsigned long long)s->l->limits.max_message_size);
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_MAX_MESSAGE_SIZE);
		session_reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		session_reset_txn(s);
		session_set_state(s, SS_COMMAND);
		return;
	}
	if (t->line_too_long) {
		log_info("s=%s reject reason=line_too_long", s->id);
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_LINE_TOO_LONG);
		session_reply(s, "554 5.6.0 Message contains a line longer than 1000 octets "
		                 "(RFC 5321 4.5.3.1.6)");
		session_reset_txn(s);
		session_set_state(s, SS_COMMAND);
		return;
	}
	if (t->write_error) {
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_SPOOL_ERROR);
		session_spool_error(s, spool_msg_errno(t->msg));
		session_reset_txn(s);
		session_set_state(s, SS_COMMAND);
		return;
	}
	/* The 250 waits for the commit, done off the event loop; messages that
	 * finish together may share one round and its sync (spool_commit.h). */
	session_set_state(s, SS_COMMIT);
	s->commit_pending = true;
	spool_committer_submit(s->env->committer, t->msg, session_commit_cb, s);
}

static void
session_commit_cb(struct spool_msg *msg, int result, void *arg)
{
	struct session *s = arg;
	/* Only the committer touches the txn's message until this runs. */
	s->txn->commit_result = result;
	session_commit_done(s);
}

static void
session_commit_done(void *arg)
{
	struct session *s = arg;
	struct txn *t = s->txn;
	s->commit_pending = false;
	if (t->commit_result == 0) {
		char from[LOG_VALUE_MAX];
		s->messages++;
		session_protect_record(s, t);
		log_info("s=%s queued id=%s nrcpt=%zu size=%llu%s from=\"%s\"", s->id,
		         spool_msg_id(t->msg), t->n_rcpts, (unsigned long long)t->size,
		         s->authenticated ? " auth=yes" : "",
		         log_escape_str(t->mail, from, sizeof(from)));
		metrics_inc(M_MESSAGES_QUEUED, s->m_listener);
		metrics_add(M_MESSAGES_BYTES, t->size, s->m_listener);
		if (s->state != SS_CLOSING)
			session_reply(s, "250 2.0.0 Ok: queued as %s", spool_msg_id(t->msg));
	} else {
		log_err("s=%s spool commit failed id=%s", s->id, spool_msg_id(t->msg));
		metrics_inc(M_MESSAGES_REJECTED, s->m_listener, MJ_SPOOL_ERROR);
		if (s->state != SS_CLOSING)
			session_spool_error(s, spool_msg_errno(t->msg));
	}
	session_reset_txn(s);
	if (s->state == SS_CLOSING) {
		session_maybe_free(s);
		return;
	}
	session_set_state(s, SS_COMMAND);
	session_process(s);
}

/* -------------------------------------------------------- command table */

/* Where a verb may be used before TLS on a listener that requires it. */
#define PRE_TLS 0x1u

static const struct command {
	enum smtp_verb verb;
	cmd_fn *fn;
	unsigned flags;
} commands[SMTP_CMD_COUNT] = {
        [SMTP_CMD_HELO] = {SMTP_CMD_HELO, cmd_helo_plain, PRE_TLS},
        [SMTP_CMD_EHLO] = {SMTP_CMD_EHLO, cmd_ehlo, PRE_TLS},
        [SMTP_CMD_MAIL] = {SMTP_CMD_MAIL, cmd_mail, 0},
        [SMTP_CMD_RCPT] = {SMTP_CMD_RCPT, cmd_rcpt, 0},
        [SMTP_CMD_DATA] = {SMTP_CMD_DATA, cmd_data, 0},
        [SMTP_CMD_RSET] = {SMTP_CMD_RSET, cmd_rset, PRE_TLS},
        [SMTP_CMD_NOOP] = {SMTP_CMD_NOOP, cmd_noop, PRE_TLS},
        [SMTP_CMD_QUIT] = {SMTP_CMD_QUIT, cmd_quit, PRE_TLS},
        [SMTP_CMD_VRFY] = {SMTP_CMD_VRFY, cmd_vrfy, 0},
        [SMTP_CMD_EXPN] = {SMTP_CMD_EXPN, cmd_not_offered, 0},
        [SMTP_CMD_HELP] = {SMTP_CMD_HELP, cmd_help, PRE_TLS},
        [SMTP_CMD_STARTTLS] = {SMTP_CMD_STARTTLS, cmd_starttls, PRE_TLS},
        [SMTP_CMD_AUTH] = {SMTP_CMD_AUTH, cmd_auth, 0},
        [SMTP_CMD_BDAT] = {SMTP_CMD_BDAT, cmd_not_offered, 0},
        /* RFC 6409 7: ETRN MUST NOT be offered on submission. */
        [SMTP_CMD_ETRN] = {SMTP_CMD_ETRN, cmd_not_offered, 0},
};

/* Whether a line is an AUTH command however it is mangled (blanks or
 * controls before it, any case, no space after it): its rest may hold a
 * password, whatever the reply. */
static bool
line_is_auth(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && (unsigned char)line[i] <= 0x20)
		i++;
	return len - i >= 4 && ascii_strncasecmp(line + i, "AUTH", 4) == 0;
}

/* The debug trace of a command line. An AUTH line shows its mechanism and
 * nothing after it. The lines after an AUTH that are no command are the rest
 * of its exchange, sent by a pipelining client whatever the AUTH's reply was
 * (530 before STARTTLS, 503 when authenticated, 500 when it was too long):
 * they show only their length. */
static void
session_trace_command(struct session *s, const char *line, size_t len, bool is_auth,
                      const struct smtp_cmd *cmd)
{
	char esc[LOG_VALUE_MAX * 2];

	if (is_auth) {
		size_t n = cmd->verb == SMTP_CMD_AUTH ? strcspn(cmd->args, " ") : 0;
		log_debug("s=%s < AUTH %s%s...", s->id,
		          log_escape(cmd->args, n < 20 ? n : 20, esc, sizeof(esc)),
		          n > 0 ? " " : "");
	} else if (s->auth_tail) {
		log_debug("s=%s < (a line of an AUTH exchange, %zu octets, not logged)", s->id,
		          len);
	} else {
		log_debug("s=%s < %s", s->id, log_escape(line, len, esc, sizeof(esc)));
	}
}

static void
session_command(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	enum parse_result pr = smtp_parse_command(line, len, &cmd);
	bool is_auth = line_is_auth(line, len);

	/* The AUTH exchange ends at the first line that is a command. */
	if (is_auth)
		s->auth_tail = true;
	else if (pr == PARSE_OK && cmd.verb != SMTP_CMD_UNKNOWN)
		s->auth_tail = false;
	if (log_enabled(LOG_LEVEL_DEBUG))
		session_trace_command(s, line, len, is_auth, &cmd);
	if (pr != PARSE_OK) {
		session_reply(s, "500 5.5.2 Syntax error, command unrecognized");
		session_error(s);
		return;
	}
	if (cmd.verb == SMTP_CMD_UNKNOWN || commands[cmd.verb].fn == NULL) {
		session_reply(s, "500 5.5.1 Command unrecognized");
		session_error(s);
		return;
	}
	/* Line limits per verb: MAIL may carry AUTH= (RFC 4954 3), AUTH may carry
	 * an initial response up to the AUTH line limit. */
	size_t limit = s->l->limits.max_line_length - 2;
	if (cmd.verb == SMTP_CMD_MAIL)
		limit += MAIL_AUTH_PARAM_EXTRA;
	else if (cmd.verb == SMTP_CMD_AUTH)
		limit = s->l->limits.max_auth_line_length - 2;
	if (len > limit) {
		session_reply(s, "500 5.5.2 Line too long");
		session_error(s);
		return;
	}
	/* RFC 3207 4: with TLS required, only a few commands before STARTTLS. */
	if (s->l->tls == LTLS_REQUIRED && !s->tls && !(commands[cmd.verb].flags & PRE_TLS)) {
		session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		session_error(s);
		return;
	}
	commands[cmd.verb].fn(s, cmd.args);
}

/* ----------------------------------------------------------- input loop */

/* The largest line we buffer while waiting for its end. */
static size_t
session_line_limit(const struct session *s)
{
	const struct limits_cfg *lim = &s->l->limits;
	if (s->state == SS_DATA)
		return DATA_LINE_MAX + 2;
	if (s->state == SS_AUTH_LINE)
		return lim->max_auth_line_length;
	size_t cmd = (size_t)lim->max_line_length + MAIL_AUTH_PARAM_EXTRA;
	return cmd > lim->max_auth_line_length ? cmd : lim->max_auth_line_length;
}

static void
session_line_too_long(struct session *s)
{
	switch (s->state) {
	case SS_DATA:
		s->txn->line_too_long = true;
		break;
	case SS_AUTH_LINE:
		/* The exchange's next lines are no commands either. */
		s->auth_tail = true;
		session_reply(s, "500 5.5.6 Authentication exchange line is too long");
		session_auth_end_sasl(s);
		session_set_state(s, SS_COMMAND);
		session_error(s);
		break;
	default:
		session_reply(s, "500 5.5.2 Line too long");
		session_error(s);
		break;
	}
}

/* An over-long command line is dropped unseen: if it was an AUTH, the
 * lines after it are the rest of its exchange (session_trace_command()). */
static void
session_drop_check_auth(struct session *s, struct evbuffer *in)
{
	char head[64];
	ev_ssize_t n;

	if (s->state != SS_COMMAND)
		return;
	n = evbuffer_copyout(in, head, sizeof(head));
	if (n > 0 && line_is_auth(head, (size_t)n))
		s->auth_tail = true;
}

/* Take one line from in into a buffer. Returns PARSE_OK with *line_r and *len_r set,
 * PARSE_AGAIN when no whole line is there yet, PARSE_INVALID when it dropped
 * a whole over-long line (reported; the state may have changed, so the next
 * line must be read in the new state's terms). Over-long lines are reported
 * once and then skipped to their end, with bounded memory. */
static enum parse_result
session_getline(struct session *s, struct evbuffer *in, char **line_r, size_t *len_r)
{
	static char *buf;
	static size_t bufsz;
	size_t limit = session_line_limit(s);

	for (;;) {
		size_t eol_len = 0;
		/* Message text ends lines with CRLF only: a bare LF never
		 * ends a line there, so "<LF>.<LF>" cannot end the data
		 * (SMTP smuggling, RFC 5321 2.3.8 and 4.1.1.4). Commands
		 * also accept a bare LF, as most servers do. */
		enum evbuffer_eol_style style =
		        s->state == SS_DATA ? EVBUFFER_EOL_CRLF_STRICT : EVBUFFER_EOL_CRLF;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, style);
		if (p.pos < 0) {
			size_t have = evbuffer_get_length(in);
			if (have > limit) {
				if (!s->discard_line)
					session_drop_check_auth(s, in);
				evbuffer_drain(in, have);
				if (!s->discard_line) {
					s->discard_line = true;
					session_line_too_long(s);
				}
			}
			return PARSE_AGAIN;
		}
		size_t len = (size_t)p.pos;
		if (s->discard_line) {
			/* The end of a line already reported as too long. */
			evbuffer_drain(in, len + eol_len);
			s->discard_line = false;
			continue;
		}
		if (len > limit) {
			session_drop_check_auth(s, in);
			evbuffer_drain(in, len + eol_len);
			session_line_too_long(s);
			return PARSE_INVALID;
		}
		if (bufsz < len + 1) {
			bufsz = len + 1 > 4096 ? len + 1 : 4096;
			buf = xrealloc(buf, bufsz);
		}
		evbuffer_remove(in, buf, len);
		evbuffer_drain(in, eol_len);
		buf[len] = '\0';
		*line_r = buf;
		*len_r = len;
		return PARSE_OK;
	}
}

/* Run buffered input through the state machine until it runs out or the
 * session has to wait. */
static void
session_process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	bool renew = false;
	s->busy = true;
	while (s->state == SS_COMMAND || s->state == SS_AUTH_LINE || s->state == SS_DATA) {
		char *line;
		size_t len;
		enum parse_result pr;
		if (s->env->sessions->stopping && s->state != SS_DATA) {
			/* RFC 5321 3.8: the worker stops; a session between
			 * commands is told so (what it pipelined is not run). */
			session_close(s, REPLY_SHUTDOWN);
			break;
		}
		if (evbuffer_get_length(s->out) +
		            evbuffer_get_length(bufferevent_get_output(s->bev)) >
		    SESSION_OUTPUT_HIGH) {
			/* Hand the replies to the kernel; if it took them all,
			 * go on, else session_write_cb() resumes once the
			 * client has read them. */
			session_flush(s);
			if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
				break;
		}
		pr = session_getline(s, in, &line, &len);
		if (pr == PARSE_AGAIN)
			break;
		if (s->state != SS_DATA)
			renew = true;
		if (pr != PARSE_OK)
			continue;
		switch (s->state) {
		case SS_COMMAND:
			session_command(s, line, len);
			break;
		case SS_AUTH_LINE:
			session_auth_line(s, line, len);
			explicit_bzero(line, len);
			break;
		case SS_DATA:
			s->data_bytes += len + 2;
			if (s->data_bytes - s->data_mark >= DATA_BLOCK) {
				s->data_mark = s->data_bytes;
				renew = true;
			}
			if (len == 1 && line[0] == '.') {
				session_data_end(s);
			} else {
				/* RFC 5321 4.5.2 transparency. */
				if (line[0] == '.') {
					line++;
					len--;
				}
				session_data_line(s, line, len);
			}
			break;
		default:
			break;
		}
	}
	s->busy = false;
	session_deadline_update(s, renew);
	session_flush(s);
	session_maybe_free(s);
}

/* Arm the session's one timer for what it now waits for. The wait for a
 * command (or an AUTH response) starts when the session is ready for it and
 * input that does not complete the line does not extend it: a client that
 * sends a byte every few seconds gets command_timeout for the whole command,
 * as one that sends nothing (RFC 5321 4.5.3.2.7 bounds the wait for "the
 * next command"). STARTTLS's 220 must leave within command_timeout; the
 * handshake then has a deadline of its own (tls_handshake.h).
 *
 * Message text is the one place RFC 5321 (4.5.3.2.6) times each block of
 * data rather than the whole, and a big message on a slow link may rightly
 * take long. data_timeout therefore bounds each DATA_BLOCK of text (from the
 * 354, then from the end of each block), not each read: a client trickling a
 * byte, or a short line, every few seconds is cut off after data_timeout,
 * while any client that moves 64 KiB per data_timeout (364 octets a second
 * with the default) is not.
 *
 * While the session is busy (the auth process, the failure delay, the fsync)
 * nothing is counted; once it is closing, a client that does not read its
 * last reply is dropped after command_timeout. renew: a command line was
 * read or a block of text completed, so the wait starts again. */
static void
session_deadline_update(struct session *s, bool renew)
{
	const struct limits_cfg *lim = &s->l->limits;
	enum session_wait w;
	unsigned secs = lim->command_timeout;

	switch (s->state) {
	case SS_COMMAND:
	case SS_AUTH_LINE:
		w = WAIT_COMMAND;
		break;
	case SS_DATA:
		w = WAIT_DATA;
		secs = lim->data_timeout;
		break;
	case SS_TLS_HANDSHAKE:
		/* Once it runs, the handshake has a deadline of its own
		 * (tls_handshake.h), for the whole of it. */
		w = s->hs != NULL ? WAIT_NONE : WAIT_TLS;
		break;
	case SS_CLOSING:
		w = WAIT_CLOSE;
		break;
	default:
		w = WAIT_NONE;
		break;
	}
	if (w == s->wait && !renew)
		return;
	s->wait = w;
	if (w == WAIT_NONE) {
		evtimer_del(s->deadline);
		return;
	}
	struct timeval tv = {secs, 0};
	evtimer_add(s->deadline, &tv);
}

static void
session_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->state == SS_CLOSING) {
		/* The client does not read its last replies: drop them. */
		if (s->bev != NULL)
			evbuffer_drain(bufferevent_get_output(s->bev),
			               evbuffer_get_length(bufferevent_get_output(s->bev)));
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
		session_maybe_free(s);
		return;
	}
	switch (s->wait) {
	case WAIT_NONE:
	case WAIT_CLOSE:
		return;
	case WAIT_TLS:
		/* The client does not read the 220 to its STARTTLS. */
		log_info("s=%s timeout state=%s", s->id, state_names[s->state]);
		s->outcome = MO_TIMEOUT;
		s->starttls_pending = false;
		s->state = SS_CLOSING;
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
		if (s->bev != NULL)
			evbuffer_drain(bufferevent_get_output(s->bev),
			               evbuffer_get_length(bufferevent_get_output(s->bev)));
		session_deadline_update(s, false);
		break;
	case WAIT_COMMAND:
	case WAIT_DATA:
		log_info("s=%s timeout state=%s", s->id, state_names[s->state]);
		s->outcome = MO_TIMEOUT;
		session_close(s, "421 4.4.2 Timeout exceeded, closing connection");
		/* Output still flows even though reading stopped. */
		bufferevent_enable(s->bev, EV_WRITE);
		break;
	}
	session_maybe_free(s);
}

/* ------------------------------------------------------------ lifecycle */

static void
session_free(struct session *s)
{
	log_info("s=%s disconnect client=%s messages=%u auth_failures=%u errors=%u", s->id, s->addr,
	         s->messages, s->auth_failures, s->errors);
	/* Ended before no longer open: a reader that sees none open has
	 * every session counted. */
	metrics_inc(M_SESSIONS, s->m_listener, s->outcome);
	metrics_dec(M_CONNECTIONS_OPEN, s->m_listener);
	if (s->auth_pending)
		auth_client_cancel(s->env->auth, s->auth_handle);
	if (s->refuse == NULL)
		conn_limit_release(s->env->limits, s->env->worker,
		                   s->env->limit_ids[s->listener_idx], s->client_key);
	LIST_REMOVE(s, entry);
	s->env->sessions->n--;
	session_auth_end_sasl(s);
	txn_free(s->txn);
	if (s->delay_timer != NULL)
		event_free(s->delay_timer);
	if (s->deadline != NULL)
		event_free(s->deadline);
	if (s->tls_swap != NULL)
		event_free(s->tls_swap);
	/* Before SSL_free(): ends a handshake that waits for its signature. */
	tls_handshake_free(s->hs);
	/* A TLS bufferevent owns the SSL and the fd (BEV_OPT_CLOSE_ON_FREE); a
	 * plain one owns neither, so STARTTLS can replace it. */
	if (s->tls) {
		/* RFC 8314 3.4: send our close_notify (best effort, non-blocking). */
		SSL_shutdown(s->ssl);
		bufferevent_free(s->bev);
	} else {
		if (s->bev != NULL) {
			/* Detached, so libevent's deferred finalizer never calls
			 * epoll_ctl on a closed (maybe reused) fd. */
			bufferevent_setfd(s->bev, -1);
			bufferevent_free(s->bev);
		}
		SSL_free(s->ssl); /* a handshake that did not finish */
		if (s->fd >= 0)
			close(s->fd);
	}
	evbuffer_free(s->out);
	free(s->helo);
	free(s->auth_user);
	free(s->auth_login);
	free(s->auth_addrs);
	free(s->count_args);
	free(s->tls_desc);
	free(s->tls_clause);
	struct session_list *list = s->env->sessions;
	free(s);
	if (list->n == 0 && list->empty_cb != NULL)
		list->empty_cb(list->empty_arg);
}

/* Free the session if it is closing, its output is flushed and nothing it
 * started (auth request, fsync) is still running. */
static void
session_maybe_free(struct session *s)
{
	if (s->state != SS_CLOSING || s->busy || s->commit_pending)
		return;
	if (s->auth_pending) {
		auth_client_cancel(s->env->auth, s->auth_handle);
		s->auth_pending = false;
	}
	if (!s->gone) {
		session_flush(s);
		if (s->bev != NULL && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
			return; /* session_write_cb calls again */
	}
	session_free(s);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	session_process(s);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	if (s->starttls_pending) {
		/* Out of this callback, so the plain bufferevent can be freed. */
		s->starttls_pending = false;
		event_active(s->tls_swap, EV_TIMEOUT, 0);
		return;
	}
	if (s->state == SS_CLOSING) {
		session_maybe_free(s);
		return;
	}
	/* The output drained: run what waited behind SESSION_OUTPUT_HIGH. */
	if (!s->busy && evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		session_process(s);
}

/* Reading stops while more input waits than the longest line allowed plus
 * SESSION_INPUT_SLACK; the client's TCP window then holds the rest. */
static void
session_bound_input(struct session *s)
{
	const struct limits_cfg *lim = &s->l->limits;
	size_t longest = (size_t)lim->max_line_length + MAIL_AUTH_PARAM_EXTRA;
	if (lim->max_auth_line_length > longest)
		longest = lim->max_auth_line_length;
	if (DATA_LINE_MAX + 2 > longest)
		longest = DATA_LINE_MAX + 2;
	bufferevent_setwatermark(s->bev, EV_READ, 0, longest + SESSION_INPUT_SLACK);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_TIMEOUT) {
		/* Only a refused implicit-TLS client has bufferevent timeouts
		 * (session_tls_handshake_done()); it is closing already, and
		 * session_deadline_cb() drops what it does not read. */
		session_deadline_cb(-1, 0, s);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->ssl != NULL && (what & BEV_EVENT_ERROR)) {
			unsigned long e = bufferevent_get_openssl_error(bev);
			if (e != 0) {
				char buf[256];
				ERR_error_string_n(e, buf, sizeof(buf));
				log_info("s=%s tls error: %s", s->id, buf);
			}
		}
		if (s->state == SS_DATA)
			log_info("s=%s lost connection in DATA", s->id);
		/* Nothing more can be written: drop what is queued and go. */
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
		s->gone = true;
		s->state = SS_CLOSING;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		session_maybe_free(s);
	}
}

void
session_start_refused(const struct session_env *env, unsigned listener_idx, int fd,
                      const struct sockaddr *sa, socklen_t salen, const char *proxy,
                      const char *reply)
{
	session_start_common(env, listener_idx, fd, sa, salen, proxy, reply);
}

void
session_start(const struct session_env *env, unsigned listener_idx, int fd,
              const struct sockaddr *sa, socklen_t salen, const char *proxy)
{
	session_start_common(env, listener_idx, fd, sa, salen, proxy, NULL);
}

static void
session_start_common(const struct session_env *env, unsigned listener_idx, int fd,
                     const struct sockaddr *sa, socklen_t salen, const char *proxy,
                     const char *refuse)
{
	const struct listener_cfg *l = &env->cfg->listeners[listener_idx];
	struct session *s = xcalloc(1, sizeof(*s));

	s->env = env;
	s->l = l;
	s->listener_idx = listener_idx;
	s->fd = fd;
	memcpy(&s->sa, sa, salen < sizeof(s->sa) ? salen : sizeof(s->sa));
	net_addr_str(sa, s->addr, sizeof(s->addr));
	net_client_key(sa, l->limits.ipv6_prefix, s->client_key);
	session_new_id(s->id);
	LIST_INSERT_HEAD(&env->sessions->head, s, entry);
	env->sessions->n++;
	s->m_listener = metric_listener(l->name);
	s->outcome = refuse != NULL ? MO_REFUSED : MO_LOST;
	metrics_inc(M_CONNECTIONS_OPEN, s->m_listener);

	s->refuse = refuse;
	s->out = evbuffer_new();
	if (s->out == NULL)
		fatal("evbuffer_new failed");
	s->delay_timer = evtimer_new(env->base, session_delay_cb, s);
	s->deadline = evtimer_new(env->base, session_deadline_cb, s);
	s->tls_swap = evtimer_new(env->base, session_starttls_swap_cb, s);
	if (proxy != NULL)
		log_info("s=%s connect client=%s listener=%s proxy=%s", s->id, s->addr, l->name,
		         proxy);
	else
		log_info("s=%s connect client=%s listener=%s", s->id, s->addr, l->name);

	if (l->tls == LTLS_IMPLICIT) {
		/* RFC 8314 3.3: the handshake starts at once; the greeting
		 * follows inside TLS. */
		s->implicit_tls_greeting = true;
		if (session_tls_attach(s) != 0) {
			log_err("s=%s cannot start TLS", s->id);
			s->outcome = MO_INTERNAL;
			s->state = SS_CLOSING;
			session_maybe_free(s);
		}
		return;
	}
	s->bev = bufferevent_socket_new(env->base, fd, 0);
	if (s->bev == NULL)
		fatal("bufferevent_socket_new failed");
	s->state = SS_COMMAND;
	session_reply(s, "220 %s ESMTP %s", env->cfg->hostname,
	              l->banner ? l->banner : "authrelay");
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	session_deadline_update(s, true);
	session_bound_input(s);
	/* Read only: EV_WRITE stays enabled (libevent's default) but is
	 * registered only when session_flush() leaves a backlog. */
	bufferevent_enable(s->bev, EV_READ);
}

void
session_stop_all(struct session_list *sessions, bool now)
{
	struct session *s, *next;

	sessions->stopping = true;
	/* Each step may free the session (and, past the last one, run
	 * empty_cb): take the next one first. */
	for (s = LIST_FIRST(&sessions->head); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		/* A message being fsynced gets its 250 (then the 421) as
		 * soon as the fsync is back: it may be in incoming/ already. */
		if (s->state == SS_CLOSING || s->state == SS_COMMIT || s->busy)
			continue;
		if (now) {
			/* What waits on the auth process or the failure delay
			 * is dropped with the session; a reply still makes
			 * sense on a plain or established TLS connection, not
			 * in the middle of a handshake. */
			if (s->state == SS_TLS_HANDSHAKE) {
				s->state = SS_CLOSING;
				s->gone = true;
			} else {
				if (s->state == SS_DATA)
					log_info("s=%s stopping in DATA", s->id);
				session_close(s, REPLY_SHUTDOWN);
				bufferevent_enable(s->bev, EV_WRITE);
			}
			session_maybe_free(s);
		} else if (s->state == SS_COMMAND || s->state == SS_AUTH_LINE) {
			session_process(s);
		}
	}
}
