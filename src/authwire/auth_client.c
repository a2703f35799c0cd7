/* SPDX-License-Identifier: ISC */
/*
 * auth_client.c - the SMTP worker's end of the auth protocol (see
 * auth_client.h and docs/auth-protocol.md).
 *
 * States: DISCONNECTED (waiting for the back-off timer), HANDSHAKE (socket
 * connected, HELLO not yet received) and READY. A UNIX-socket connect() never
 * stays in progress on Linux: it succeeds or fails at once (EAGAIN when the
 * backlog is full), so connecting is a plain non-blocking call, never a wait.
 * After a failure or a lost connection the next try comes after 100 ms,
 * doubling up to 5 s; a HELLO resets the delay.
 *
 * Each verify() gets a request with a per-request timer. While READY its
 * VERIFY is written at once; during HANDSHAKE it waits in a queue for HELLO;
 * while DISCONNECTED, past AUTH_CLIENT_MAX_INFLIGHT, or for bad input it is
 * failed through its timer made active with no delay. Every completion goes
 * through that timer or through a RESULT from the auth process, so a callback
 * never runs inside verify(). Losing the connection fails every request the
 * same deferred way.
 *
 * Callbacks may call auth_client_cancel(), auth_client_verify() and even
 * auth_client_free(): the read path notices the last and finishes the free
 * when it unwinds. auth_client_free() drops the requests still pending
 * without calling them back (the sessions are going away too).
 *
 * The process must ignore SIGPIPE: libevent writes with writev(), and the
 * auth process may be gone when we write.
 */
#include "auth_client.h"
#include "../lib/ipc.h"
#include "../lib/log.h"
#include "../lib/wbatch.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define AUTH_CLIENT_MAX_INFLIGHT 4096
#define AUTH_CLIENT_BACKOFF_MIN_MS 100
#define AUTH_CLIENT_BACKOFF_MAX_MS 5000
#define AUTH_CLIENT_DEFAULT_TIMEOUT 30
/* Bound on the fields that only label log lines (session, client, listener)
 * and on the challenge, so that a VERIFY always fits one frame. */
#define AUTH_CLIENT_MAX_FIELD 1024
#define AUTH_CLIENT_BUCKETS 1024 /* a power of two */

enum ac_state { AC_DISCONNECTED, AC_HANDSHAKE, AC_READY };

struct ac_req {
	struct ac_req *hnext;       /* in the id table */
	TAILQ_ENTRY(ac_req) unsent; /* waiting for HELLO */
	bool queued;
	struct auth_client *ac;
	uint32_t id;
	auth_result_cb *cb;
	auth_counts_cb *counts_cb; /* instead of cb for a COUNT */
	void *arg;
	struct event *timer;
	struct ipc_msg *msg; /* VERIFY not yet written */
	/* Set when the request is to fail without an answer (timer active). */
	bool failing;
	enum auth_result fail_result;
	enum auth_reason fail_reason;
};

struct auth_client {
	struct event_base *base;
	struct sockaddr_un sun;
	socklen_t sunlen;
	unsigned timeout;
	enum ac_state state;
	struct bufferevent *bev;
	struct wbatch *wb; /* frames leave once per loop round */
	struct event *reconnect;
	unsigned backoff_ms;
	bool warned; /* one warning per outage, then debug */
	uint32_t caps;
	uint32_t next_id;
	unsigned n_reqs;
	struct ac_req *table[AUTH_CLIENT_BUCKETS];
	TAILQ_HEAD(, ac_req) unsent;
	/* auth_client_free() from a callback inside the read path. */
	int busy;
	bool free_pending;
};

static void ac_connect(struct auth_client *ac);
static void ac_really_free(struct auth_client *ac);

static struct ac_req **
ac_slot(struct auth_client *ac, uint32_t id)
{
	return &ac->table[id & (AUTH_CLIENT_BUCKETS - 1)];
}

static struct ac_req *
ac_find(struct auth_client *ac, uint32_t id)
{
	for (struct ac_req *r = *ac_slot(ac, id); r != NULL; r = r->hnext) {
		if (r->id == id)
			return r;
	}
	return NULL;
}

static void
ac_unlink(struct auth_client *ac, struct ac_req *req)
{
	struct ac_req **pp = ac_slot(ac, req->id);

	while (*pp != req)
		pp = &(*pp)->hnext;
	*pp = req->hnext;
	if (req->queued) {
		TAILQ_REMOVE(&ac->unsent, req, unsent);
		req->queued = false;
	}
	ac->n_reqs--;
}

static void
ac_req_free(struct ac_req *req)
{
	event_free(req->timer);
	ipc_msg_free(req->msg);
	free(req);
}

/* Finish req with rep: forget it, then call back. Touches nothing after the
 * call. */
static void
ac_complete(struct auth_client *ac, struct ac_req *req, const struct auth_reply *rep)
{
	auth_result_cb *cb = req->cb;
	void *arg = req->arg;

	ac_unlink(ac, req);
	ac_req_free(req);
	cb(rep, arg);
}

/* Finish a COUNT with c. */
static void
ac_complete_counts(struct auth_client *ac, struct ac_req *req, const struct auth_counts *c)
{
	auth_counts_cb *cb = req->counts_cb;
	void *arg = req->arg;

	ac_unlink(ac, req);
	ac_req_free(req);
	cb(c, arg);
}

static void
ac_req_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ac_req *req = arg;
	if (req->counts_cb != NULL) {
		struct auth_counts none = {.id = req->id, .shared = false};
		ac_complete_counts(req->ac, req, &none);
		return;
	}
	struct auth_reply rep = {
	        .id = req->id,
	        .result = req->failing ? req->fail_result : AUTH_TEMPFAIL,
	        .reason = req->failing ? req->fail_reason : AUTH_REASON_TIMEOUT,
	        .identity = "",
	        .addresses = "",
	};

	ac_complete(req->ac, req, &rep);
}

/* Fail req on the next loop iteration, never now. */
static void
ac_fail_soon(struct ac_req *req, enum auth_result result, enum auth_reason reason)
{
	if (req->failing)
		return;
	req->failing = true;
	req->fail_result = result;
	req->fail_reason = reason;
	ipc_msg_free(req->msg);
	req->msg = NULL;
	if (req->queued) {
		TAILQ_REMOVE(&req->ac->unsent, req, unsent);
		req->queued = false;
	}
	evtimer_del(req->timer);
	event_active(req->timer, EV_TIMEOUT, 1);
}

static void
ac_write(struct auth_client *ac, struct ac_req *req)
{
	if (ipc_msg_send(req->msg, bufferevent_get_output(ac->bev)) < 0) {
		/* verify() bounded every field: cannot happen. */
		ac_fail_soon(req, AUTH_FAIL, AUTH_REASON_INVALID_REQUEST);
		return;
	}
	ipc_msg_free(req->msg);
	req->msg = NULL;
}

static void
ac_schedule_reconnect(struct auth_client *ac)
{
	struct timeval tv = {ac->backoff_ms / 1000, (ac->backoff_ms % 1000) * 1000};

	evtimer_add(ac->reconnect, &tv);
	ac->backoff_ms *= 2;
	if (ac->backoff_ms > AUTH_CLIENT_BACKOFF_MAX_MS)
		ac->backoff_ms = AUTH_CLIENT_BACKOFF_MAX_MS;
}

/* The connection is gone (or never came): fail what waits on it. */
static void
ac_disconnect(struct auth_client *ac, const char *why)
{
	if (!ac->warned) {
		log_warn("auth client: %s: %s; logins get tempfail until it is back",
		         ac->sun.sun_path, why);
		ac->warned = true;
	} else {
		log_debug("auth client: %s: %s", ac->sun.sun_path, why);
	}
	if (ac->bev != NULL) {
		wbatch_free(ac->wb);
		ac->wb = NULL;
		bufferevent_free(ac->bev);
		ac->bev = NULL;
	}
	ac->state = AC_DISCONNECTED;
	ac->caps = 0;
	for (size_t i = 0; i < AUTH_CLIENT_BUCKETS; i++) {
		for (struct ac_req *r = ac->table[i]; r != NULL; r = r->hnext)
			ac_fail_soon(r, AUTH_TEMPFAIL, AUTH_REASON_AUTH_UNAVAILABLE);
	}
	ac_schedule_reconnect(ac);
}

static void
ac_on_hello(struct auth_client *ac, struct ipc_msg *m)
{
	struct ac_req *req;
	uint32_t version, caps;

	if (auth_proto_parse_hello(m, &version, &caps) < 0) {
		ac_disconnect(ac, "malformed HELLO");
		return;
	}
	if (version != AUTH_PROTO_VERSION) {
		log_err("auth client: auth process speaks protocol %u, we speak %u", version,
		        AUTH_PROTO_VERSION);
		ac_disconnect(ac, "protocol version mismatch");
		return;
	}
	/* A later HELLO (after a reload) only updates the caps. */
	ac->caps = caps;
	if (ac->state == AC_READY)
		return;
	ac->state = AC_READY;
	ac->backoff_ms = AUTH_CLIENT_BACKOFF_MIN_MS;
	if (ac->warned)
		log_info("auth client: %s: connected again", ac->sun.sun_path);
	ac->warned = false;
	while ((req = TAILQ_FIRST(&ac->unsent)) != NULL) {
		TAILQ_REMOVE(&ac->unsent, req, unsent);
		req->queued = false;
		ac_write(ac, req);
	}
}

static void
ac_on_result(struct auth_client *ac, struct ipc_msg *m)
{
	struct auth_reply rep;
	struct ac_req *req;

	if (auth_proto_parse_result(m, &rep) < 0) {
		ac_disconnect(ac, "malformed RESULT");
		return;
	}
	req = ac_find(ac, rep.id);
	if (req == NULL || req->failing || req->counts_cb != NULL) {
		/* Timed out or cancelled meanwhile. */
		log_debug("auth client: RESULT for unknown request %u ignored", rep.id);
		return;
	}
	/* rep's strings point into m, which outlives the callback. */
	ac_complete(ac, req, &rep);
}

static void
ac_on_counts(struct auth_client *ac, struct ipc_msg *m)
{
	struct auth_counts c;
	struct ac_req *req;

	if (auth_proto_parse_counts(m, &c) < 0) {
		ac_disconnect(ac, "malformed COUNTS");
		return;
	}
	req = ac_find(ac, c.id);
	if (req == NULL || req->failing || req->counts_cb == NULL) {
		log_debug("auth client: COUNTS for unknown request %u ignored", c.id);
		return;
	}
	ac_complete_counts(ac, req, &c);
}

static void
ac_on_read(struct bufferevent *bev, void *arg)
{
	struct auth_client *ac = arg;
	struct ipc_msg *m;
	enum parse_result pr;

	ac->busy++;
	while (!ac->free_pending && ac->bev == bev &&
	       (pr = ipc_msg_take(bufferevent_get_input(bev), &m)) != PARSE_AGAIN) {
		if (pr == PARSE_INVALID) {
			ac_disconnect(ac, "bad frame length");
			break;
		}
		switch (ipc_msg_type(m)) {
		case AUTH_MSG_HELLO:
			ac_on_hello(ac, m);
			break;
		case AUTH_MSG_RESULT:
			/* A RESULT before HELLO would be a broken server. */
			if (ac->state != AC_READY)
				ac_disconnect(ac, "RESULT before HELLO");
			else
				ac_on_result(ac, m);
			break;
		case AUTH_MSG_COUNTS:
			if (ac->state != AC_READY)
				ac_disconnect(ac, "COUNTS before HELLO");
			else
				ac_on_counts(ac, m);
			break;
		default:
			ac_disconnect(ac, "unknown message type");
			break;
		}
		ipc_msg_free(m);
	}
	if (--ac->busy == 0 && ac->free_pending)
		ac_really_free(ac);
}

static void
ac_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct auth_client *ac = arg;

	if (what & BEV_EVENT_EOF)
		ac_disconnect(ac, "connection closed by the auth process");
	else if (what & BEV_EVENT_ERROR)
		ac_disconnect(ac, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void
ac_connect(struct auth_client *ac)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		ac_disconnect(ac, strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&ac->sun, ac->sunlen) < 0) {
		int e = errno;
		close(fd);
		ac_disconnect(ac, strerror(e));
		return;
	}
	ac->bev = bufferevent_socket_new(ac->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ac->bev == NULL) {
		close(fd);
		ac_disconnect(ac, "cannot set up a bufferevent");
		return;
	}
	bufferevent_setcb(ac->bev, ac_on_read, NULL, ac_on_event, ac);
	bufferevent_enable(ac->bev, EV_READ);
	ac->wb = wbatch_new(ac->bev);
	ac->state = AC_HANDSHAKE;
}

static void
ac_on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	ac_connect(arg);
}

struct auth_client *
auth_client_new(struct event_base *base, const char *socket_path, unsigned request_timeout)
{
	struct auth_client *ac = xcalloc(1, sizeof(*ac));
	size_t len = strlen(socket_path);

	if (len >= sizeof(ac->sun.sun_path))
		fatal("auth client: socket path too long: %s", socket_path);
	ac->base = base;
	ac->sun.sun_family = AF_UNIX;
	memcpy(ac->sun.sun_path, socket_path, len + 1);
	ac->sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	ac->timeout = request_timeout > 0 ? request_timeout : AUTH_CLIENT_DEFAULT_TIMEOUT;
	ac->backoff_ms = AUTH_CLIENT_BACKOFF_MIN_MS;
	ac->next_id = 1;
	TAILQ_INIT(&ac->unsent);
	ac->reconnect = evtimer_new(base, ac_on_reconnect, ac);
	if (ac->reconnect == NULL)
		fatal("auth client: cannot create a timer");
	ac->state = AC_DISCONNECTED;
	ac_connect(ac);
	return ac;
}

static void
ac_really_free(struct auth_client *ac)
{
	for (size_t i = 0; i < AUTH_CLIENT_BUCKETS; i++) {
		struct ac_req *r = ac->table[i], *next;
		for (; r != NULL; r = next) {
			next = r->hnext;
			ac_req_free(r);
		}
	}
	wbatch_free(ac->wb);
	if (ac->bev != NULL)
		bufferevent_free(ac->bev);
	event_free(ac->reconnect);
	free(ac);
}

void
auth_client_free(struct auth_client *ac)
{
	if (ac == NULL)
		return;
	if (ac->busy > 0) {
		/* Inside our own read callback: ac_on_read() finishes this. */
		ac->free_pending = true;
		return;
	}
	ac_really_free(ac);
}

uint32_t
auth_client_caps(const struct auth_client *ac)
{
	return ac->state == AC_READY ? ac->caps : 0;
}

static bool
ac_field_ok(const char *s, size_t max)
{
	return s == NULL || strlen(s) <= max;
}

uint32_t
auth_client_verify(struct auth_client *ac, const struct auth_request *r, auth_result_cb *cb,
                   void *arg)
{
	struct ac_req *req = xcalloc(1, sizeof(*req));
	struct auth_request wire = *r;
	struct timeval tv = {(time_t)ac->timeout, 0};

	/* A fresh id no request in flight holds (0 is never used). */
	do {
		req->id = ac->next_id++;
	} while (req->id == 0 || ac_find(ac, req->id) != NULL);
	req->ac = ac;
	req->cb = cb;
	req->arg = arg;
	req->timer = evtimer_new(ac->base, ac_req_on_timer, req);
	if (req->timer == NULL)
		fatal("auth client: cannot create a timer");
	req->hnext = *ac_slot(ac, req->id);
	*ac_slot(ac, req->id) = req;
	ac->n_reqs++;

	if (!ac_field_ok(r->mech, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(r->login, AUTH_MAX_LOGIN) || r->secret_len > AUTH_MAX_SECRET ||
	    !ac_field_ok(r->challenge, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(r->session, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(r->client, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(r->listener, AUTH_CLIENT_MAX_FIELD)) {
		/* The session should have refused it already (auth_proto.h). */
		ac_fail_soon(req, AUTH_FAIL, AUTH_REASON_INVALID_REQUEST);
		return req->id;
	}
	if (ac->n_reqs > AUTH_CLIENT_MAX_INFLIGHT) {
		ac_fail_soon(req, AUTH_TEMPFAIL, AUTH_REASON_TOO_MANY_REQUESTS);
		return req->id;
	}
	if (ac->state == AC_DISCONNECTED) {
		ac_fail_soon(req, AUTH_TEMPFAIL, AUTH_REASON_AUTH_UNAVAILABLE);
		return req->id;
	}

	wire.id = req->id;
	req->msg = auth_proto_verify(&wire);
	evtimer_add(req->timer, &tv);
	if (ac->state == AC_READY) {
		ac_write(ac, req);
	} else {
		TAILQ_INSERT_TAIL(&ac->unsent, req, unsent);
		req->queued = true;
	}
	return req->id;
}

uint32_t
auth_client_count(struct auth_client *ac, const char *user, auth_counts_cb *cb, void *arg)
{
	struct ac_req *req = xcalloc(1, sizeof(*req));
	struct timeval tv = {AUTH_CLIENT_COUNT_TIMEOUT_MS / 1000,
	                     (AUTH_CLIENT_COUNT_TIMEOUT_MS % 1000) * 1000};

	do {
		req->id = ac->next_id++;
	} while (req->id == 0 || ac_find(ac, req->id) != NULL);
	req->ac = ac;
	req->counts_cb = cb;
	req->arg = arg;
	req->timer = evtimer_new(ac->base, ac_req_on_timer, req);
	if (req->timer == NULL)
		fatal("auth client: cannot create a timer");
	req->hnext = *ac_slot(ac, req->id);
	*ac_slot(ac, req->id) = req;
	ac->n_reqs++;
	/* Not connected, or too many in flight: the local counts stand. */
	if (ac->state != AC_READY || !ac_field_ok(user, AUTH_MAX_LOGIN) ||
	    ac->n_reqs > AUTH_CLIENT_MAX_INFLIGHT) {
		ac_fail_soon(req, AUTH_TEMPFAIL, AUTH_REASON_AUTH_UNAVAILABLE);
		return req->id;
	}
	req->msg = auth_proto_count(req->id, user);
	evtimer_add(req->timer, &tv);
	ac_write(ac, req);
	return req->id;
}

void
auth_client_cancel(struct auth_client *ac, uint32_t handle)
{
	struct ac_req *req = ac_find(ac, handle);

	/* Unknown: already completed, or never ours. A RESULT that comes
	 * later for it is ignored. */
	if (req == NULL)
		return;
	ac_unlink(ac, req);
	ac_req_free(req);
}

void
auth_client_notify(struct auth_client *ac, const struct auth_notify *n)
{
	struct ipc_msg *m;

	if (ac->state != AC_READY || !ac_field_ok(n->user, AUTH_MAX_LOGIN) ||
	    !ac_field_ok(n->client, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(n->session, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(n->event, AUTH_CLIENT_MAX_FIELD) ||
	    !ac_field_ok(n->limit, AUTH_CLIENT_MAX_FIELD)) {
		log_debug("auth client: NOTIFY %s not sent", n->event);
		return;
	}
	m = auth_proto_notify(n);
	if (ipc_msg_send(m, bufferevent_get_output(ac->bev)) < 0)
		log_warn("auth client: NOTIFY %s too big", n->event);
	ipc_msg_free(m);
}

bool
auth_client_local_reason(enum auth_reason reason)
{
	return reason == AUTH_REASON_INVALID_REQUEST || reason == AUTH_REASON_TOO_MANY_REQUESTS ||
	       reason == AUTH_REASON_AUTH_UNAVAILABLE || reason == AUTH_REASON_TIMEOUT;
}
