/* SPDX-License-Identifier: ISC */
/*
 * shared_redis.c - the Redis connection (see shared_redis.h).
 *
 * The transport is ours, the protocol hiredis's: a libevent bufferevent
 * (a socket one, with a bufferevent_openssl filter over it once connected
 * when [shared] tls = yes), commands encoded by redisFormatCommandArgv()
 * and replies decoded by a redisReader. Debian 12's hiredis 0.14 has no TLS
 * and no timeouts in its asynchronous API; this way TLS is the product's
 * own (smtp_client.h's client context and name checks) and a timer per
 * command bounds every answer.
 *
 * Redis answers in order, so the commands sent wait in a FIFO: each reply
 * the reader yields answers the oldest one. Before the transport is up
 * (TCP connect, then the TLS handshake) the handshake's commands (AUTH,
 * SELECT, PING) wait in `early`, their timers already running: the first
 * one bounds the connect and the TLS handshake too.
 *
 * Lifetimes: a request is freed right after its caller was called back
 * (reply, NULL on a drop or its timeout), never inside shared_redis_command().
 * Dropping the link frees the bufferevent (libevent defers that when inside
 * one of its callbacks) and the reader; the reply loop notices a drop by the
 * link's generation and stops reading.
 */
#include "shared_redis.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../metrics/metric.h"
#include "../smtp/smtp_client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/un.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define SR_RETRY_MS 1000
#define SR_PASSWORD_MAX 512
#define SR_READ_CHUNK 16384

enum sr_state { SR_DOWN, SR_CONNECTING, SR_UP };

struct sr_req {
	TAILQ_ENTRY(sr_req) entry; /* in sr->pending while the link has it */
	struct shared_redis *sr;
	shared_redis_cb *cb;
	void *arg;
	struct event *timer;
	bool internal; /* the handshake's own: a failure drops the link */
	bool queued;   /* in sr->pending (else the timer answers NULL) */
};

TAILQ_HEAD(sr_req_list, sr_req);

struct shared_redis {
	struct event_base *base;
	const struct shared_config *sc;
	struct bufferevent *bev; /* NULL while down */
	redisReader *reader;
	struct evbuffer *early;     /* the handshake, until the transport is up */
	struct sr_req_list pending; /* sent (or in early), oldest first */
	SSL_CTX *tls_ctx;           /* tls = yes: made at start, before any drop */
	const char *tls_name;       /* verified and sent as SNI */
	bool transport_up;          /* connected, and the TLS handshake done */
	bool tls_stage;             /* the TLS handshake is running */
	unsigned long gen;          /* bumped by every drop */
	enum sr_state state;
	struct event *retry;
	char *password;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];
	bool warned; /* the current outage was logged */
	bool ever_up;
	unsigned long outages;
	struct timespec since; /* the last change between up and down */
	shared_redis_up_cb *up_cb;
	void *up_arg;
};

static void sr_connect(struct shared_redis *sr);

static void
sr_req_free(struct sr_req *req)
{
	event_free(req->timer);
	free(req);
}

/* The link is unusable: say so once per outage. */
static void
sr_down(struct shared_redis *sr, const char *why)
{
	if (sr->state == SR_UP || !sr->warned) {
		log_warn("shared: redis=%s unreachable (%s): counting locally until it answers",
		         sr->sc->redis, why);
		sr->outages++;
		sr->warned = true;
		clock_gettime(CLOCK_MONOTONIC, &sr->since);
		/* Down until it answers again: no known end. */
		metrics_set(M_SHARED_REDIS_UP, INT64_MAX);
	} else {
		log_debug("shared: redis=%s still unreachable (%s)", sr->sc->redis, why);
	}
	sr->state = SR_DOWN;
}

/* Close the transport, answer what was pending with NULL (oldest first)
 * and retry in a second. Callers' callbacks may send again: the link is
 * down by then, so their commands are answered NULL on a later turn. */
static void
sr_drop(struct shared_redis *sr, const char *why)
{
	struct sr_req_list gone = TAILQ_HEAD_INITIALIZER(gone);
	struct sr_req *req;

	sr_down(sr, why);
	sr->gen++;
	if (sr->bev != NULL) {
		bufferevent_free(sr->bev);
		sr->bev = NULL;
	}
	if (sr->reader != NULL) {
		redisReaderFree(sr->reader);
		sr->reader = NULL;
	}
	evbuffer_drain(sr->early, evbuffer_get_length(sr->early));
	sr->transport_up = false;
	sr->tls_stage = false;
	TAILQ_CONCAT(&gone, &sr->pending, entry);
	while ((req = TAILQ_FIRST(&gone)) != NULL) {
		TAILQ_REMOVE(&gone, req, entry);
		if (req->cb != NULL)
			req->cb(NULL, req->arg);
		sr_req_free(req);
	}
	struct timeval tv = {SR_RETRY_MS / 1000, (SR_RETRY_MS % 1000) * 1000};
	evtimer_add(sr->retry, &tv);
}

static void
sr_req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sr_req *req = arg;
	struct shared_redis *sr = req->sr;
	bool queued = req->queued;

	if (queued)
		TAILQ_REMOVE(&sr->pending, req, entry);
	if (req->cb != NULL)
		req->cb(NULL, req->arg);
	sr_req_free(req);
	/* Slow is as good as down: count locally rather than wait. A command
	 * never sent (the link was down) leaves the link alone. */
	if (queued && sr->bev != NULL)
		sr_drop(sr, "no answer within the timeout");
}

static struct sr_req *
sr_req_new(struct shared_redis *sr, shared_redis_cb *cb, void *arg)
{
	struct sr_req *req = xcalloc(1, sizeof(*req));

	req->sr = sr;
	req->cb = cb;
	req->arg = arg;
	req->timer = evtimer_new(sr->base, sr_req_timeout_cb, req);
	if (req->timer == NULL)
		fatal("shared: cannot create a timer");
	return req;
}

/* Encode one command onto the link (or into early before the transport
 * is up) and queue req for its answer; the timer bounds the answer. */
static int
sr_send(struct shared_redis *sr, struct sr_req *req, int argc, const char **argv,
        const size_t *argvlen)
{
	struct timeval tv = {sr->sc->timeout_ms / 1000, (sr->sc->timeout_ms % 1000) * 1000};
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
	int r;

	if (len < 0)
		return -1;
	if (sr->transport_up)
		r = bufferevent_write(sr->bev, cmd, (size_t)len);
	else
		r = evbuffer_add(sr->early, cmd, (size_t)len);
	redisFreeCommand(cmd);
	if (r != 0)
		return -1;
	req->queued = true;
	TAILQ_INSERT_TAIL(&sr->pending, req, entry);
	evtimer_add(req->timer, &tv);
	return 0;
}

/* The PING after AUTH and SELECT: the link is usable. */
static void
sr_on_ping(const redisReply *reply, void *arg)
{
	struct shared_redis *sr = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		return; /* sr_on_reply() dropped the link */
	sr->state = SR_UP;
	clock_gettime(CLOCK_MONOTONIC, &sr->since);
	metrics_set(M_SHARED_REDIS_UP, 0);
	if (sr->warned || !sr->ever_up)
		log_info("shared: redis=%s connected%s: counting is shared%s", sr->sc->redis,
		         sr->tls_ctx != NULL ? " over TLS" : "", sr->ever_up ? " again" : "");
	sr->warned = false;
	sr->ever_up = true;
	if (sr->up_cb != NULL)
		sr->up_cb(sr->up_arg);
}

/* One reply from the reader: it answers the oldest command. Returns false
 * when the link was dropped meanwhile. */
static bool
sr_on_reply(struct shared_redis *sr, redisReply *reply)
{
	struct sr_req *req = TAILQ_FIRST(&sr->pending);
	unsigned long gen = sr->gen;

	if (req == NULL) {
		freeReplyObject(reply);
		sr_drop(sr, "a reply to no command");
		return false;
	}
	TAILQ_REMOVE(&sr->pending, req, entry);
	req->queued = false;
	evtimer_del(req->timer);
	if (req->internal && reply->type == REDIS_REPLY_ERROR)
		log_err("shared: redis=%s refused the handshake: %.*s", sr->sc->redis,
		        (int)reply->len, reply->str);
	if (req->cb != NULL)
		req->cb(reply, req->arg);
	if (req->internal && reply->type == REDIS_REPLY_ERROR && sr->gen == gen)
		sr_drop(sr, "handshake refused");
	freeReplyObject(reply);
	sr_req_free(req);
	return sr->gen == gen;
}

static void
sr_read_cb(struct bufferevent *bev, void *arg)
{
	struct shared_redis *sr = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned long gen = sr->gen;
	char buf[SR_READ_CHUNK];
	int n;

	while ((n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
		if (redisReaderFeed(sr->reader, buf, (size_t)n) != REDIS_OK) {
			sr_drop(sr, "protocol error");
			return;
		}
		for (;;) {
			void *reply = NULL;
			if (redisReaderGetReply(sr->reader, &reply) != REDIS_OK) {
				char why[160];
				snprintf(why, sizeof(why), "protocol error: %s",
				         sr->reader->errstr);
				sr_drop(sr, why);
				return;
			}
			if (reply == NULL)
				break;
			if (!sr_on_reply(sr, reply) || sr->gen != gen)
				return;
		}
	}
}

static void sr_event_cb(struct bufferevent *bev, short what, void *arg);

/* TCP is connected: with TLS, start the handshake over it. */
static int
sr_start_tls(struct shared_redis *sr)
{
	SSL *ssl = smtp_client_tls_ssl_new(sr->tls_ctx, sr->tls_name, true);
	struct bufferevent *tls;

	if (ssl == NULL)
		return -1;
	tls = bufferevent_openssl_filter_new(sr->base, sr->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		return -1;
	}
	/* The filter owns the socket's bufferevent now. Redis may close
	 * without close_notify: that is a lost link like any other. */
	sr->bev = tls;
	sr->tls_stage = true;
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_setcb(tls, sr_read_cb, NULL, sr_event_cb, sr);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	return 0;
}

static void
sr_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct shared_redis *sr = arg;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (!sr->tls_stage && sr->addr.ss_family != AF_UNIX) {
			/* Small commands, one at a time, each awaited: Nagle
			 * would hold the second one for the first one's ACK. */
			int one = 1;
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
			           sizeof(one));
		}
		if (sr->tls_ctx != NULL && !sr->tls_stage) {
			if (sr_start_tls(sr) < 0)
				sr_drop(sr, "cannot set up TLS");
			return;
		}
		sr->transport_up = true;
		sr->tls_stage = false;
		if (bufferevent_write_buffer(sr->bev, sr->early) != 0)
			sr_drop(sr, "out of memory");
		return;
	}
	bool tls_failed = false;
	if (sr->tls_stage) {
		smtp_client_tls_error(bev, why, sizeof(why));
		tls_failed = true;
	} else if (what & BEV_EVENT_EOF) {
		snprintf(why, sizeof(why), "connection closed");
	} else {
		int err = EVUTIL_SOCKET_ERROR();
		unsigned long e = sr->tls_ctx != NULL ? bufferevent_get_openssl_error(bev) : 0;
		/* Under TLS 1.3 a refused client certificate comes as an alert
		 * after the handshake: OpenSSL's reason says it. */
		if (e != 0 && ERR_reason_error_string(e) != NULL) {
			snprintf(why, sizeof(why), "TLS: %s", ERR_reason_error_string(e));
			tls_failed = true;
		} else {
			snprintf(why, sizeof(why), "%s",
			         err != 0 ? evutil_socket_error_to_string(err)
			                  : "connection error");
		}
		ERR_clear_error();
	}
	/* A refused certificate is not a network blip: say why, loudly, once
	 * per outage (the retries every second stay quiet). */
	if (tls_failed && (sr->state == SR_UP || !sr->warned))
		log_err("shared: redis=%s %s (tls_server_name %s, tls_ca_file %s, tls_cert_file "
		        "%s)",
		        sr->sc->redis, why, sr->tls_name,
		        sr->sc->tls_ca_file != NULL ? sr->sc->tls_ca_file : "the system's store",
		        sr->sc->tls_cert_file != NULL ? sr->sc->tls_cert_file : "none");
	sr_drop(sr, why);
}

static void
sr_handshake(struct shared_redis *sr, const char *cmd, const char *arg, shared_redis_cb *cb)
{
	struct sr_req *req = sr_req_new(sr, cb, sr);
	const char *argv[2] = {cmd, arg};
	size_t len[2] = {strlen(cmd), arg != NULL ? strlen(arg) : 0};

	req->internal = true;
	if (sr_send(sr, req, arg != NULL ? 2 : 1, argv, len) < 0)
		fatal("shared: cannot queue the Redis handshake");
}

static void
sr_connect(struct shared_redis *sr)
{
	sr->reader = redisReaderCreate();
	sr->bev = bufferevent_socket_new(sr->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (sr->reader == NULL || sr->bev == NULL)
		fatal("shared: out of memory for the Redis link");
	sr->state = SR_CONNECTING;
	bufferevent_setcb(sr->bev, sr_read_cb, NULL, sr_event_cb, sr);
	bufferevent_enable(sr->bev, EV_READ | EV_WRITE);
	/* Sent once connected, in order; any error drops the link. Their
	 * timers start now: they bound the connect and the TLS handshake. */
	if (sr->password != NULL)
		sr_handshake(sr, "AUTH", sr->password, NULL);
	if (sr->sc->database != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%u", sr->sc->database);
		sr_handshake(sr, "SELECT", db, NULL);
	}
	sr_handshake(sr, "PING", NULL, sr_on_ping);
	if (bufferevent_socket_connect(sr->bev, (struct sockaddr *)&sr->addr, (int)sr->addrlen) <
	    0) {
		int err = EVUTIL_SOCKET_ERROR();
		/* bufferevent_socket_connect() already closed the socket. */
		sr_drop(sr, err != 0 ? evutil_socket_error_to_string(err) : "connect failed");
	}
}

static void
sr_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct shared_redis *sr = arg;

	if (sr->bev == NULL)
		sr_connect(sr);
}

static char *
sr_read_password(const char *path)
{
	char buf[SR_PASSWORD_MAX + 2];
	FILE *fp = fopen(path, "re");
	char *pw = NULL;

	if (fp == NULL) {
		log_err("shared: cannot open password_file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), fp) != NULL) {
		buf[strcspn(buf, "\r\n")] = '\0';
		pw = xstrdup(buf);
	} else {
		log_err("shared: password_file %s is empty", path);
	}
	explicit_bzero(buf, sizeof(buf));
	fclose(fp);
	return pw;
}

/* The client TLS context: the CA file (or the system's store) and the
 * client certificate are read now, at start, as auth_user; a file that
 * cannot be read stops the start rather than every handshake failing. */
static SSL_CTX *
sr_tls_ctx_new(const struct shared_config *sc)
{
	const char *err;
	SSL_CTX *ctx = smtp_client_tls_ctx_new(sc->tls_ca_file, true, &err);

	if (ctx == NULL) {
		log_err("shared: tls_ca_file: %s", err);
		return NULL;
	}
	if (sc->tls_cert_file == NULL)
		return ctx;
	if (SSL_CTX_use_certificate_chain_file(ctx, sc->tls_cert_file) != 1) {
		log_err("shared: cannot load tls_cert_file %s: %s", sc->tls_cert_file,
		        ERR_reason_error_string(ERR_peek_last_error()) != NULL
		                ? ERR_reason_error_string(ERR_peek_last_error())
		                : "unknown error");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, sc->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_err("shared: cannot load tls_key_file %s (or it does not match "
		        "tls_cert_file): %s",
		        sc->tls_key_file,
		        ERR_reason_error_string(ERR_peek_last_error()) != NULL
		                ? ERR_reason_error_string(ERR_peek_last_error())
		                : "unknown error");
		goto fail;
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

struct shared_redis *
shared_redis_new(struct event_base *base, const struct shared_config *sc, shared_redis_up_cb *up_cb,
                 void *up_arg)
{
	struct shared_redis *sr = xcalloc(1, sizeof(*sr));

	sr->base = base;
	sr->sc = sc;
	sr->up_cb = up_cb;
	sr->up_arg = up_arg;
	TAILQ_INIT(&sr->pending);
	if (strncmp(sc->redis, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&sr->addr;
		sun->sun_family = AF_UNIX;
		if (strlen(sc->redis + 5) >= sizeof(sun->sun_path))
			fatal("shared: redis = %s: the path is too long", sc->redis);
		strcpy(sun->sun_path, sc->redis + 5);
		sr->addrlen = sizeof(*sun);
		snprintf(sr->host, sizeof(sr->host), "%s", sc->redis + 5);
	} else {
		const char *error;
		if (net_parse_hostport(sc->redis, &sr->addr, &sr->addrlen, &error) < 0)
			fatal("shared: redis = %s: %s", sc->redis, error); /* checked at load */
		net_addr_str((struct sockaddr *)&sr->addr, sr->host, sizeof(sr->host));
	}
	if (sc->tls) {
		sr->tls_ctx = sr_tls_ctx_new(sc);
		if (sr->tls_ctx == NULL)
			goto fail;
		sr->tls_name = sc->tls_server_name != NULL ? sc->tls_server_name : sr->host;
	}
	if (sc->password_file != NULL) {
		sr->password = sr_read_password(sc->password_file);
		if (sr->password == NULL)
			goto fail;
	}
	sr->early = evbuffer_new();
	clock_gettime(CLOCK_MONOTONIC, &sr->since);
	sr->retry = evtimer_new(base, sr_retry_cb, sr);
	if (sr->early == NULL || sr->retry == NULL)
		fatal("shared: cannot create timers");
	sr_connect(sr);
	return sr;
fail:
	SSL_CTX_free(sr->tls_ctx);
	free(sr);
	return NULL;
}

void
shared_redis_free(struct shared_redis *sr)
{
	struct sr_req *req;

	if (sr == NULL)
		return;
	if (sr->bev != NULL)
		bufferevent_free(sr->bev);
	if (sr->reader != NULL)
		redisReaderFree(sr->reader);
	while ((req = TAILQ_FIRST(&sr->pending)) != NULL) {
		TAILQ_REMOVE(&sr->pending, req, entry);
		sr_req_free(req);
	}
	/* Commands answered NULL on a later turn still hold their timers:
	 * the event base goes with the process, and them with it. */
	if (sr->early != NULL)
		evbuffer_free(sr->early);
	event_free(sr->retry);
	SSL_CTX_free(sr->tls_ctx);
	free_secret(sr->password);
	free(sr);
}

bool
shared_redis_up(const struct shared_redis *sr)
{
	return sr != NULL && sr->state == SR_UP;
}

unsigned long
shared_redis_outages(const struct shared_redis *sr)
{
	return sr != NULL ? sr->outages : 0;
}

unsigned
shared_redis_state_seconds(const struct shared_redis *sr)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (unsigned)(now.tv_sec - sr->since.tv_sec);
}

void
shared_redis_command(struct shared_redis *sr, int argc, const char **argv, const size_t *argvlen,
                     shared_redis_cb *cb, void *arg)
{
	struct sr_req *req = sr_req_new(sr, cb, arg);

	if (sr->state != SR_UP || sr->bev == NULL || sr_send(sr, req, argc, argv, argvlen) < 0)
		event_active(req->timer, EV_TIMEOUT, 1); /* answered NULL, on a later turn */
}
