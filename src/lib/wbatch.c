/* SPDX-License-Identifier: ISC */
/*
 * wbatch.c - output of a socket bufferevent written once per loop round (see
 * wbatch.h).
 *
 * An evbuffer callback on the bufferevent's output notices the first bytes
 * added in a round and activates the flush event. Active events run in the
 * order they were activated, so the flush runs after every callback already
 * due in this round: replies to a batch of requests leave together. The
 * event is activated from the loop thread, which costs no system call.
 */
#include "wbatch.h"
#include "common.h"
#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

struct wbatch {
	struct bufferevent *bev;
	struct evbuffer_cb_entry *cb;
	struct event *ev;
	bool armed;
};

static void
wbatch_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct wbatch *wb = arg;

	if (wb->armed)
		return;
	/* New bytes; or the bufferevent has just written the last of a
	 * backlog, and leaves EV_WRITE enabled: the flush turns it off so that
	 * the next bytes go out directly again. */
	if (info->n_added > 0 || (info->n_deleted > 0 && evbuffer_get_length(buf) == 0 &&
	                          (bufferevent_get_enabled(wb->bev) & EV_WRITE))) {
		wb->armed = true;
		event_active(wb->ev, EV_WRITE, 0);
	}
}

static void
wbatch_flush(evutil_socket_t unused, short what, void *arg)
{
	struct wbatch *wb = arg;
	struct bufferevent *bev = wb->bev;
	struct evbuffer *out = bufferevent_get_output(bev);
	bufferevent_data_cb wcb = NULL;
	void *cbarg = NULL;

	wb->armed = false;
	if (bufferevent_get_enabled(bev) & EV_WRITE) {
		if (evbuffer_get_length(out) > 0)
			return; /* the bufferevent is still writing a backlog */
		/* Its backlog is gone; its EV_WRITE is no longer registered,
		 * so this costs no system call. */
		bufferevent_disable(bev, EV_WRITE);
	}
	if (evbuffer_get_length(out) == 0)
		return;
	/* A socket bufferevent keeps its output's front frozen so that only
	 * it drains it; it thaws it around its own writes, as here. */
	evbuffer_unfreeze(out, 1);
	int n = evbuffer_write(out, bufferevent_getfd(bev));
	int err = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
		/* Let the bufferevent meet the error itself: it reports it
		 * through its event callback, as without us. */
		bufferevent_enable(bev, EV_WRITE);
		return;
	}
	if (evbuffer_get_length(out) > 0) {
		/* The socket is full: the bufferevent writes the rest as it
		 * drains. */
		bufferevent_enable(bev, EV_WRITE);
		return;
	}
	/* All written: what the bufferevent would report after writing. */
	bufferevent_getcb(bev, NULL, &wcb, NULL, &cbarg);
	if (wcb != NULL)
		wcb(bev, cbarg);
}

struct wbatch *
wbatch_new(struct bufferevent *bev)
{
	struct wbatch *wb = xcalloc(1, sizeof(*wb));

	wb->bev = bev;
	wb->ev = event_new(bufferevent_get_base(bev), -1, 0, wbatch_flush, wb);
	if (wb->ev == NULL)
		fatal("wbatch: cannot create the flush event");
	wb->cb = evbuffer_add_cb(bufferevent_get_output(bev), wbatch_on_output, wb);
	if (wb->cb == NULL)
		fatal("wbatch: cannot watch the output buffer");
	bufferevent_disable(bev, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		wb->armed = true;
		event_active(wb->ev, EV_WRITE, 0);
	}
	return wb;
}

void
wbatch_free(struct wbatch *wb)
{
	if (wb == NULL)
		return;
	evbuffer_remove_cb_entry(bufferevent_get_output(wb->bev), wb->cb);
	event_free(wb->ev);
	free(wb);
}
