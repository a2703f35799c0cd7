/* SPDX-License-Identifier: ISC */
/*
 * keyproc_client.c - the worker's connection to the key process (see
 * keyproc_client.h).
 *
 * Inside the async job, keyproc_client_sign() does as little as it can: it
 * queues a request, makes the pump event active and pauses. Everything that
 * may log, connect or write happens on the loop's own stack, in the pump
 * (kc_pump_cb): the job runs on a small stack of OpenSSL's, and the pump
 * writes the requests of every handshake that paused in one loop round
 * together.
 *
 * A request is in kc->reqs from the moment it is queued until it completes:
 * by its SIGNATURE, its timer (timeout_ms), the connection's loss, a failed
 * connect, or keyproc_wait_cancel(). Completing marks it done and wakes the
 * handshake (except on cancel); the job, when resumed, takes the result and
 * frees the request. So the request outlives its stay in the list exactly
 * as long as the job is paused, and a late SIGNATURE for it finds no id.
 */
#include "keyproc_client.h"
#include "../lib/ipc.h"
#include "../lib/log.h"
#include "../lib/wbatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/async.h>

struct kc_req {
	LIST_ENTRY(kc_req) entry; /* in kc->reqs until done */
	struct keyproc_client *kc;
	struct keyproc_wait *w;
	struct event *timer;
	struct keyproc_sign_req req; /* req.input points to input */
	unsigned char input[KEYPROC_MAX_INPUT];
	bool unsent; /* queued, not yet written */
	bool done;
	bool ok;
	unsigned char sig[KEYPROC_MAX_SIG];
	size_t sig_len;
};

struct keyproc_wait {
	struct keyproc_client *kc;
	keyproc_wake_cb *wake;
	void *arg;
	struct kc_req *req; /* in flight, or done and not yet taken by the job */
};

struct keyproc_client {
	struct event_base *base;
	struct sockaddr_un sun;
	socklen_t sunlen;
	unsigned timeout_ms;
	struct bufferevent *bev; /* NULL while not connected */
	struct wbatch *wb;       /* requests leave once per loop round */
	struct event *pump;
	uint32_t next_id;
	LIST_HEAD(, kc_req) reqs;
	struct keyproc_wait *current; /* between enter() and leave() */
	bool warned;                  /* one warning per outage, then debug */
};

struct keyproc_client *
keyproc_client_new(const char *socket_path, unsigned timeout_ms)
{
	struct keyproc_client *kc = xcalloc(1, sizeof(*kc));
	size_t n = strlen(socket_path);

	if (n >= sizeof(kc->sun.sun_path))
		fatal("keyproc: socket path too long: %s", socket_path);
	kc->sun.sun_family = AF_UNIX;
	memcpy(kc->sun.sun_path, socket_path, n + 1);
	kc->sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	kc->timeout_ms = timeout_ms;
	LIST_INIT(&kc->reqs);
	return kc;
}

static void kc_pump_cb(evutil_socket_t fd, short what, void *arg);

void
keyproc_client_attach(struct keyproc_client *kc, struct event_base *base)
{
	kc->base = base;
	kc->pump = event_new(base, -1, 0, kc_pump_cb, kc);
	if (kc->pump == NULL)
		fatal("keyproc: event_new failed");
}

void
keyproc_client_free(struct keyproc_client *kc)
{
	if (kc == NULL)
		return;
	if (!LIST_EMPTY(&kc->reqs))
		fatal("keyproc: client freed with signatures in flight");
	if (kc->bev != NULL) {
		wbatch_free(kc->wb);
		bufferevent_free(kc->bev);
	}
	if (kc->pump != NULL)
		event_free(kc->pump);
	free(kc);
}

/* Finish r: out of the list, result set, and (unless cancelled) its
 * handshake woken. */
static void
kc_req_complete(struct kc_req *r, bool ok, bool wake)
{
	if (r->done)
		return;
	LIST_REMOVE(r, entry);
	evtimer_del(r->timer);
	r->done = true;
	r->ok = ok;
	if (wake)
		r->w->wake(r->w->arg);
}

static void
kc_fail_all(struct keyproc_client *kc)
{
	struct kc_req *r;

	while ((r = LIST_FIRST(&kc->reqs)) != NULL)
		kc_req_complete(r, false, true);
}

static void
kc_outage(struct keyproc_client *kc, const char *what)
{
	if (!kc->warned)
		log_warn("keyproc: %s: TLS handshakes waiting for a signature fail", what);
	else
		log_debug("keyproc: %s", what);
	kc->warned = true;
}

static void
kc_disconnect(struct keyproc_client *kc, const char *why)
{
	kc_outage(kc, why);
	if (kc->bev != NULL) {
		wbatch_free(kc->wb);
		kc->wb = NULL;
		bufferevent_free(kc->bev);
		kc->bev = NULL;
	}
	kc_fail_all(kc);
}

static void
kc_read_cb(struct bufferevent *bev, void *arg)
{
	struct keyproc_client *kc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct keyproc_sign_reply rep;
	struct ipc_msg *m;
	enum parse_result pr;

	while ((pr = ipc_msg_take(in, &m)) == PARSE_OK) {
		if (ipc_msg_type(m) != KEYPROC_MSG_SIGNATURE ||
		    keyproc_sign_reply_decode(m, &rep) < 0) {
			ipc_msg_free(m);
			kc_disconnect(kc, "malformed answer from the key process");
			return;
		}
		struct kc_req *r;
		LIST_FOREACH(r, &kc->reqs, entry)
		{
			if (r->req.id == rep.id)
				break;
		}
		/* No request: it timed out or was cancelled meanwhile. */
		if (r != NULL) {
			if (rep.status != KEYPROC_OK)
				log_warn("keyproc: signature alg=%d refused: %s", (int)r->req.alg,
				         keyproc_status_name(rep.status));
			memcpy(r->sig, rep.sig, rep.sig_len);
			r->sig_len = rep.sig_len;
			kc_req_complete(r, rep.status == KEYPROC_OK, true);
		}
		ipc_msg_free(m);
	}
	if (pr == PARSE_INVALID)
		kc_disconnect(kc, "bad frame from the key process");
}

static void
kc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct keyproc_client *kc = arg;

	if (what & BEV_EVENT_EOF)
		kc_disconnect(kc, "connection closed by the key process");
	else if (what & BEV_EVENT_ERROR)
		kc_disconnect(kc, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* A UNIX-socket connect() never stays in progress: it succeeds (also while
 * the key process restarts: the master holds the listening socket, and the
 * connection waits in its backlog) or fails at once. */
static int
kc_connect(struct keyproc_client *kc)
{
	char what[160];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&kc->sun, kc->sunlen) < 0) {
		snprintf(what, sizeof(what), "cannot connect to %s: %s", kc->sun.sun_path,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		kc_outage(kc, what);
		return -1;
	}
	kc->bev = bufferevent_socket_new(kc->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (kc->bev == NULL)
		fatal("keyproc: bufferevent_socket_new failed");
	bufferevent_setcb(kc->bev, kc_read_cb, NULL, kc_event_cb, kc);
	bufferevent_enable(kc->bev, EV_READ);
	kc->wb = wbatch_new(kc->bev);
	if (kc->warned)
		log_info("keyproc: connected again");
	kc->warned = false;
	return 0;
}

/* On the loop: connect if need be, write what the paused jobs queued. */
static void
kc_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keyproc_client *kc = arg;
	struct kc_req *r;

	if (kc->bev == NULL && kc_connect(kc) < 0) {
		kc_fail_all(kc);
		return;
	}
	LIST_FOREACH(r, &kc->reqs, entry)
	{
		if (!r->unsent)
			continue;
		struct ipc_msg *m = keyproc_sign_req_encode(&r->req);
		if (ipc_msg_send(m, bufferevent_get_output(kc->bev)) < 0)
			fatal("keyproc: a SIGN does not fit a frame");
		ipc_msg_free(m);
		r->unsent = false;
	}
}

static void
kc_req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kc_req *r = arg;

	log_warn("keyproc: no signature after %u ms", r->kc->timeout_ms);
	kc_req_complete(r, false, true);
}

struct keyproc_wait *
keyproc_wait_new(struct keyproc_client *kc, keyproc_wake_cb *wake, void *arg)
{
	struct keyproc_wait *w = xcalloc(1, sizeof(*w));

	w->kc = kc;
	w->wake = wake;
	w->arg = arg;
	return w;
}

void
keyproc_wait_free(struct keyproc_wait *w)
{
	if (w == NULL)
		return;
	/* The job that owns w->req is still paused: freeing would leak it and
	 * leave its request pointing here. */
	if (w->req != NULL)
		fatal("keyproc: a handshake freed while its signature is in flight");
	free(w);
}

void
keyproc_wait_enter(struct keyproc_wait *w)
{
	w->kc->current = w;
}

void
keyproc_wait_leave(struct keyproc_wait *w)
{
	w->kc->current = NULL;
}

bool
keyproc_wait_pending(const struct keyproc_wait *w)
{
	return w->req != NULL;
}

void
keyproc_wait_cancel(struct keyproc_wait *w)
{
	if (w->req != NULL)
		kc_req_complete(w->req, false, false);
}

int
keyproc_client_sign(struct keyproc_client *kc, const uint8_t key_id[KEYPROC_KEY_ID_LEN],
                    enum keyproc_alg alg, const unsigned char *input, size_t input_len,
                    unsigned char *sig, size_t sig_size)
{
	struct keyproc_wait *w = kc->current;
	struct kc_req *r;
	int ret = -1;

	/* Only a handshake driven by tls_handshake.c can wait; anything else
	 * (no job, no loop, a second signature at once) fails the signature. */
	if (w == NULL || w->req != NULL || kc->pump == NULL || ASYNC_get_current_job() == NULL ||
	    input_len > KEYPROC_MAX_INPUT)
		return -1;
	r = xcalloc(1, sizeof(*r));
	r->kc = kc;
	r->w = w;
	r->timer = evtimer_new(kc->base, kc_req_timeout_cb, r);
	if (r->timer == NULL)
		fatal("keyproc: evtimer_new failed");
	if (++kc->next_id == 0)
		kc->next_id = 1;
	r->req.id = kc->next_id;
	memcpy(r->req.key_id, key_id, KEYPROC_KEY_ID_LEN);
	r->req.alg = alg;
	memcpy(r->input, input, input_len);
	r->req.input = r->input;
	r->req.input_len = input_len;
	r->unsent = true;
	LIST_INSERT_HEAD(&kc->reqs, r, entry);
	w->req = r;
	struct timeval tv = {kc->timeout_ms / 1000, (long)(kc->timeout_ms % 1000) * 1000};
	evtimer_add(r->timer, &tv);
	event_active(kc->pump, EV_TIMEOUT, 0); /* a no-op when already active */

	/* SSL_do_handshake() returns SSL_ERROR_WANT_ASYNC here; the next call,
	 * after the wake, continues. A resume before the answer pauses again. */
	while (!r->done) {
		if (ASYNC_pause_job() == 0) {
			kc_req_complete(r, false, false);
			break;
		}
	}
	if (r->ok && r->sig_len <= sig_size) {
		memcpy(sig, r->sig, r->sig_len);
		ret = (int)r->sig_len;
	}
	w->req = NULL;
	event_free(r->timer);
	explicit_bzero(r, sizeof(*r));
	free(r);
	return ret;
}
