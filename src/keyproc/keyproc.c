/* SPDX-License-Identifier: ISC */
/*
 * keyproc.c - the key process's loop (see keyproc.h): accept the workers'
 * connections, read SIGN requests, answer each with a SIGNATURE.
 *
 * One struct kp_conn per worker connection. A request becomes a kp_job that
 * carries its own copy of the input: ECDSA jobs are signed and answered at
 * once, RSA jobs go to the thread pool and are answered from its completion
 * callback, in whatever order they finish (the worker matches replies by id).
 * A connection stops being read while KEYPROC_MAX_PENDING of its jobs are in
 * the pool, so a worker cannot make us buffer without bound; one that closes
 * with jobs in the pool is freed when the last of them comes back.
 *
 * A malformed frame closes the connection (a worker would only send one if
 * it were broken or taken over); a request we refuse gets its status back
 * and a warning in the log, once per connection, then at debug level.
 */
#include "keyproc.h"
#include "keyproc_keys.h"
#include "keyproc_proto.h"
#include "../lib/ipc.h"
#include "../lib/log.h"
#include "../lib/readiness.h"
#include "../lib/threadpool.h"
#include "../lib/wbatch.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

/* Jobs of one connection in the pool before we stop reading it. */
#define KEYPROC_MAX_PENDING 256

struct kp_server {
	const struct keyproc_params *params;
	struct event_base *base;
	struct threadpool *pool;
	struct evconnlistener *listener;
	LIST_HEAD(, kp_conn) conns; /* every connection not yet freed */
	LIST_HEAD(, kp_job) jobs;   /* jobs in the pool */
	unsigned long signed_ok, refused;
};

struct kp_conn {
	LIST_ENTRY(kp_conn) entry;
	struct kp_server *srv;
	struct bufferevent *bev; /* NULL once closed */
	struct wbatch *wb;       /* replies leave once per loop round */
	unsigned pending;        /* jobs in the pool */
	unsigned conn_id;
	bool warned;
};

struct kp_job {
	LIST_ENTRY(kp_job) entry; /* while in the pool */
	struct kp_conn *conn;
	struct keyproc_sign_req req; /* req.input points to input */
	unsigned char input[KEYPROC_MAX_INPUT];
	unsigned char sig[KEYPROC_MAX_SIG];
	size_t sig_len;
	enum keyproc_status status;
};

static void kp_conn_read_cb(struct bufferevent *bev, void *arg);

static void
kp_conn_free_if_done(struct kp_conn *c)
{
	if (c->bev == NULL && c->pending == 0) {
		LIST_REMOVE(c, entry);
		free(c);
	}
}

static void
kp_conn_close(struct kp_conn *c, const char *why)
{
	log_debug("keyproc: conn=%u closed: %s", c->conn_id, why);
	wbatch_free(c->wb);
	c->wb = NULL;
	bufferevent_free(c->bev);
	c->bev = NULL;
	kp_conn_free_if_done(c);
}

static void
kp_job_sign(void *arg)
{
	struct kp_job *j = arg;

	j->status = keyproc_keys_sign(j->conn->srv->params->keys, j->req.key_id, j->req.alg,
	                              j->req.input, j->req.input_len, j->sig, sizeof(j->sig),
	                              &j->sig_len);
}

/* Answer job and free it. */
static void
kp_job_reply(struct kp_job *j)
{
	struct kp_conn *c = j->conn;
	struct kp_server *srv = c->srv;

	if (j->status == KEYPROC_OK) {
		srv->signed_ok++;
	} else {
		srv->refused++;
		if (!c->warned)
			log_warn("keyproc: conn=%u request alg=%d len=%zu answered %s", c->conn_id,
			         (int)j->req.alg, j->req.input_len, keyproc_status_name(j->status));
		else
			log_debug("keyproc: conn=%u request alg=%d len=%zu answered %s", c->conn_id,
			          (int)j->req.alg, j->req.input_len,
			          keyproc_status_name(j->status));
		c->warned = true;
	}
	if (c->bev != NULL) {
		struct keyproc_sign_reply r = {
		        .id = j->req.id, .status = j->status, .sig = j->sig, .sig_len = j->sig_len};
		struct ipc_msg *m = keyproc_sign_reply_encode(&r);
		if (ipc_msg_send(m, bufferevent_get_output(c->bev)) < 0)
			fatal("keyproc: a SIGNATURE does not fit a frame");
		ipc_msg_free(m);
	}
	explicit_bzero(j, sizeof(*j));
	free(j);
}

/* A pool thread finished an RSA job. */
static void
kp_job_done(void *arg)
{
	struct kp_job *j = arg;
	struct kp_conn *c = j->conn;

	LIST_REMOVE(j, entry);
	kp_job_reply(j);
	c->pending--;
	if (c->bev == NULL) {
		kp_conn_free_if_done(c);
		return;
	}
	if (c->pending == KEYPROC_MAX_PENDING - 1) {
		bufferevent_enable(c->bev, EV_READ);
		/* Frames that arrived while reading was off are buffered. */
		kp_conn_read_cb(c->bev, c);
	}
}

static void
kp_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct kp_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct ipc_msg *m;

	while (c->pending < KEYPROC_MAX_PENDING) {
		enum parse_result pr = ipc_msg_take(in, &m);
		if (pr == PARSE_AGAIN)
			return;
		if (pr == PARSE_INVALID) {
			log_warn("keyproc: conn=%u bad frame length: closing", c->conn_id);
			kp_conn_close(c, "bad frame");
			return;
		}
		struct kp_job *j = xcalloc(1, sizeof(*j));
		if (ipc_msg_type(m) != KEYPROC_MSG_SIGN ||
		    keyproc_sign_req_decode(m, &j->req) < 0) {
			ipc_msg_free(m);
			free(j);
			log_warn("keyproc: conn=%u malformed request: closing", c->conn_id);
			kp_conn_close(c, "malformed request");
			return;
		}
		memcpy(j->input, j->req.input, j->req.input_len);
		j->req.input = j->input;
		j->conn = c;
		ipc_msg_free(m);
		if (keyproc_keys_slow(c->srv->params->keys, j->req.key_id)) {
			c->pending++;
			LIST_INSERT_HEAD(&c->srv->jobs, j, entry);
			threadpool_submit(c->srv->pool, kp_job_sign, kp_job_done, j);
		} else {
			kp_job_sign(j);
			kp_job_reply(j);
		}
	}
	/* Over the limit: the rest waits in the socket (kp_job_done()). */
	bufferevent_disable(bev, EV_READ);
}

static void
kp_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct kp_conn *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		kp_conn_close(c, (what & BEV_EVENT_EOF) ? "closed by the worker" : "error");
}

static void
kp_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
             void *arg)
{
	static unsigned next_conn_id;
	struct kp_server *srv = arg;
	struct kp_conn *c = xcalloc(1, sizeof(*c));

	c->srv = srv;
	c->conn_id = ++next_conn_id;
	LIST_INSERT_HEAD(&srv->conns, c, entry);
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatal("keyproc: bufferevent_socket_new failed");
	bufferevent_setcb(c->bev, kp_conn_read_cb, NULL, kp_conn_event_cb, c);
	bufferevent_enable(c->bev, EV_READ);
	c->wb = wbatch_new(c->bev);
	log_debug("keyproc: conn=%u accepted", c->conn_id);
}

static void
kp_on_accept_error(struct evconnlistener *l, void *arg)
{
	log_warn("keyproc: accept failed: %s", strerror(errno));
}

static void
kp_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct kp_server *srv = arg;

	log_info("keyproc: stopping (signal %d)", (int)sig);
	event_base_loopexit(srv->base, NULL);
}

int
keyproc_main(const struct keyproc_params *p)
{
	struct kp_server srv = {.params = p};
	struct event *ev_term, *ev_int;
	struct kp_conn *c;
	struct kp_job *j;

	signal(SIGPIPE, SIG_IGN);
	srv.base = event_base_new();
	if (srv.base == NULL)
		fatal("keyproc: event_base_new failed");
	LIST_INIT(&srv.conns);
	LIST_INIT(&srv.jobs);
	srv.pool = threadpool_new(srv.base, p->threads > 0 ? p->threads : 1);
	srv.listener = evconnlistener_new(srv.base, kp_on_accept, &srv, LEV_OPT_CLOSE_ON_EXEC, -1,
	                                  p->listen_fd);
	if (srv.listener == NULL)
		fatal("keyproc: evconnlistener_new failed");
	evconnlistener_set_error_cb(srv.listener, kp_on_accept_error);
	ev_term = evsignal_new(srv.base, SIGTERM, kp_on_signal, &srv);
	ev_int = evsignal_new(srv.base, SIGINT, kp_on_signal, &srv);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);

	log_info("keyproc: ready keys=%zu threads=%u", keyproc_keys_count(p->keys), p->threads);
	readiness_report();
	event_base_dispatch(srv.base);

	log_info("keyproc: signatures=%lu refused=%lu", srv.signed_ok, srv.refused);
	/* The pool first: its threads read the keys and the jobs. */
	threadpool_free(srv.pool);
	while ((j = LIST_FIRST(&srv.jobs)) != NULL) {
		LIST_REMOVE(j, entry);
		explicit_bzero(j, sizeof(*j));
		free(j);
	}
	while ((c = LIST_FIRST(&srv.conns)) != NULL) {
		if (c->bev != NULL) {
			wbatch_free(c->wb);
			bufferevent_free(c->bev);
		}
		LIST_REMOVE(c, entry);
		free(c);
	}
	evconnlistener_free(srv.listener);
	event_free(ev_term);
	event_free(ev_int);
	event_base_free(srv.base);
	keyproc_keys_free(p->keys); /* wiped on the way out */
	return 0;
}
