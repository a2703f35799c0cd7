/* SPDX-License-Identifier: ISC */
/*
 * shared_redis.c - the Redis connection (see shared_redis.h).
 *
 * hiredis 0.14 (Debian 12) has no timeouts of its own in the asynchronous
 * API and no TLS: a timer per command and one for the connection stand in
 * for the first; [shared] has no TLS key (README says how to use a unix
 * socket or a local tunnel instead).
 *
 * Lifetimes: a request is freed when hiredis calls it back, which it does
 * for every command, with NULL when the context goes away. A request whose
 * timer fired first is marked done and has already called its caller back,
 * so the late callback only frees it. The context is dropped with
 * redisAsyncFree() from our own timers only, never from inside a hiredis
 * callback; after a failed connect hiredis frees it itself.
 */
#include "shared_redis.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../metrics/metric.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#define SR_RETRY_MS 1000
#define SR_PASSWORD_MAX 512

enum sr_state { SR_DOWN, SR_CONNECTING, SR_UP };

struct sr_req {
	struct shared_redis *sr;
	shared_redis_cb *cb;
	void *arg;
	struct event *timer;
	bool done;     /* the caller was answered (reply or timeout) */
	bool internal; /* the handshake's own: a failure drops the link */
	bool unsent;   /* never given to hiredis: the timer answers NULL */
};

struct shared_redis {
	struct event_base *base;
	const struct shared_config *sc;
	redisAsyncContext *ac;
	enum sr_state state;
	struct event *retry;      /* reconnect, and the connect deadline */
	struct event *drop_later; /* drop the context outside hiredis */
	char *password;
	char host[256];
	int port;
	bool unix_path;
	bool warned; /* the current outage was logged */
	bool ever_up;
	bool freeing; /* shared_redis_free(): callbacks are dropped */
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

/* Drop the context (never from inside a hiredis callback) and retry. */
static void
sr_drop(struct shared_redis *sr, const char *why)
{
	redisAsyncContext *ac = sr->ac;

	sr_down(sr, why);
	sr->ac = NULL;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac); /* pending commands get NULL */
	}
	struct timeval tv = {SR_RETRY_MS / 1000, (SR_RETRY_MS % 1000) * 1000};
	evtimer_add(sr->retry, &tv);
}

static void
sr_drop_later_cb(evutil_socket_t fd, short what, void *arg)
{
	sr_drop(arg, "timeout or protocol error");
}

/* From inside hiredis: drop on the next loop round. */
static void
sr_drop_soon(struct shared_redis *sr)
{
	if (!event_pending(sr->drop_later, EV_TIMEOUT, NULL))
		event_active(sr->drop_later, EV_TIMEOUT, 1);
}

static void
sr_req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sr_req *req = arg;
	struct shared_redis *sr = req->sr;

	if (req->unsent) {
		/* Never reached hiredis (down): answered and freed here. */
		req->cb(NULL, req->arg);
		sr_req_free(req);
		return;
	}
	req->done = true;
	if (req->cb != NULL)
		req->cb(NULL, req->arg);
	/* Slow is as good as down: count locally rather than wait. Dropping
	 * the context calls req back (done) and frees it: req is not
	 * touched after this. */
	if (sr->ac != NULL)
		sr_drop(sr, "no answer within the timeout");
}

static void
sr_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sr_req *req = privdata;
	const redisReply *reply = r;

	if (req->sr->freeing)
		req->done = true; /* going away: nobody is called back */
	if (!req->done) {
		req->done = true;
		evtimer_del(req->timer);
		if (req->internal && (reply == NULL || reply->type == REDIS_REPLY_ERROR) &&
		    req->sr->ac == ac && ac != NULL) {
			if (reply != NULL)
				log_err("shared: redis=%s refused the handshake: %.*s",
				        req->sr->sc->redis, (int)reply->len, reply->str);
			sr_drop_soon(req->sr);
		}
		if (req->cb != NULL)
			req->cb(reply, req->arg);
	}
	sr_req_free(req);
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

/* Queue one command on the context; the timer bounds its answer. */
static int
sr_send(struct shared_redis *sr, struct sr_req *req, int argc, const char **argv,
        const size_t *argvlen)
{
	struct timeval tv = {sr->sc->timeout_ms / 1000, (sr->sc->timeout_ms % 1000) * 1000};

	if (redisAsyncCommandArgv(sr->ac, sr_on_reply, req, argc, argv, argvlen) != REDIS_OK)
		return -1;
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
		log_info("shared: redis=%s connected: counting is shared%s", sr->sc->redis,
		         sr->ever_up ? " again" : "");
	sr->warned = false;
	sr->ever_up = true;
	if (sr->up_cb != NULL)
		sr->up_cb(sr->up_arg);
}

static void
sr_on_connect(const redisAsyncContext *ac, int status)
{
	struct shared_redis *sr = ac->data;

	if (sr == NULL || status == REDIS_OK)
		return;
	/* hiredis frees the context after this call. */
	sr->ac = NULL;
	sr_down(sr, ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
	struct timeval tv = {SR_RETRY_MS / 1000, (SR_RETRY_MS % 1000) * 1000};
	evtimer_add(sr->retry, &tv);
}

static void
sr_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct shared_redis *sr = ac->data;

	if (sr == NULL)
		return; /* our own redisAsyncFree() */
	sr->ac = NULL;
	sr_down(sr, ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
	struct timeval tv = {SR_RETRY_MS / 1000, (SR_RETRY_MS % 1000) * 1000};
	evtimer_add(sr->retry, &tv);
}

static void
sr_handshake(struct shared_redis *sr, const char *cmd, const char *arg, shared_redis_cb *cb)
{
	struct sr_req *req = sr_req_new(sr, cb, sr);
	const char *argv[2] = {cmd, arg};
	size_t len[2] = {strlen(cmd), arg != NULL ? strlen(arg) : 0};

	req->internal = true;
	if (sr_send(sr, req, arg != NULL ? 2 : 1, argv, len) < 0)
		sr_req_free(req);
}

static void
sr_connect(struct shared_redis *sr)
{
	redisAsyncContext *ac = sr->unix_path ? redisAsyncConnectUnix(sr->host)
	                                      : redisAsyncConnect(sr->host, sr->port);
	struct timeval tv = {SR_RETRY_MS / 1000, (SR_RETRY_MS % 1000) * 1000};

	if (ac == NULL || ac->err) {
		sr_down(sr, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		evtimer_add(sr->retry, &tv);
		return;
	}
	ac->data = sr;
	sr->ac = ac;
	sr->state = SR_CONNECTING;
	if (redisLibeventAttach(ac, sr->base) != REDIS_OK)
		fatal("shared: cannot attach hiredis to the event loop");
	redisAsyncSetConnectCallback(ac, sr_on_connect);
	redisAsyncSetDisconnectCallback(ac, sr_on_disconnect);
	/* Sent once connected, in order; any error drops the link. */
	if (sr->password != NULL)
		sr_handshake(sr, "AUTH", sr->password, NULL);
	if (sr->sc->database != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%u", sr->sc->database);
		sr_handshake(sr, "SELECT", db, NULL);
	}
	sr_handshake(sr, "PING", NULL, sr_on_ping);
}

static void
sr_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct shared_redis *sr = arg;

	if (sr->ac == NULL)
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

struct shared_redis *
shared_redis_new(struct event_base *base, const struct shared_config *sc, shared_redis_up_cb *up_cb,
                 void *up_arg)
{
	struct shared_redis *sr = xcalloc(1, sizeof(*sr));

	sr->base = base;
	sr->sc = sc;
	sr->up_cb = up_cb;
	sr->up_arg = up_arg;
	if (sc->password_file != NULL) {
		sr->password = sr_read_password(sc->password_file);
		if (sr->password == NULL) {
			free(sr);
			return NULL;
		}
	}
	if (strncmp(sc->redis, "unix:", 5) == 0) {
		sr->unix_path = true;
		snprintf(sr->host, sizeof(sr->host), "%s", sc->redis + 5);
	} else {
		struct sockaddr_storage ss;
		socklen_t len;
		const char *error;
		if (net_parse_hostport(sc->redis, &ss, &len, &error) < 0)
			fatal("shared: redis = %s: %s", sc->redis, error); /* checked at load */
		net_addr_str((struct sockaddr *)&ss, sr->host, sizeof(sr->host));
		sr->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	clock_gettime(CLOCK_MONOTONIC, &sr->since);
	sr->retry = evtimer_new(base, sr_retry_cb, sr);
	sr->drop_later = evtimer_new(base, sr_drop_later_cb, sr);
	if (sr->retry == NULL || sr->drop_later == NULL)
		fatal("shared: cannot create timers");
	sr_connect(sr);
	return sr;
}

void
shared_redis_free(struct shared_redis *sr)
{
	if (sr == NULL)
		return;
	sr->freeing = true;
	if (sr->ac != NULL) {
		redisAsyncContext *ac = sr->ac;
		sr->ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	event_free(sr->retry);
	event_free(sr->drop_later);
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

	if (sr->state != SR_UP || sr->ac == NULL || sr_send(sr, req, argc, argv, argvlen) < 0) {
		req->unsent = true;
		event_active(req->timer, EV_TIMEOUT, 1);
	}
}
