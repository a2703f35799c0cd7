/* SPDX-License-Identifier: ISC */
/*
 * proxy_accept.c - the wait for a PROXY header (proxy_accept.h).
 *
 * Each time the socket is readable the bytes waiting are looked at with
 * MSG_PEEK and parsed together with those taken before. The parser says
 * PARSE_AGAIN only when every byte it saw belongs to the header, so those
 * are taken (a level-triggered event would otherwise fire again at once);
 * on PARSE_OK only the header's remaining bytes are taken. The buffer is
 * PROXY_HEADER_MAX bytes: a longer header is refused by the parser.
 */
#include "proxy_accept.h"
#include "../lib/common.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

struct proxy_accept {
	int fd;
	struct event *ev;    /* readable */
	struct event *timer; /* the whole header's deadline */
	proxy_accept_cb *cb;
	void *arg;
	size_t have; /* bytes taken from the socket so far */
	uint8_t buf[PROXY_HEADER_MAX];
};

static void
proxy_accept_finish(struct proxy_accept *pa, const struct proxy_header *h, const char *error)
{
	int fd = pa->fd;
	proxy_accept_cb *cb = pa->cb;
	void *arg = pa->arg;

	event_free(pa->ev);
	event_free(pa->timer);
	free(pa);
	cb(fd, h, error, arg);
}

/* Take n bytes the socket already holds (they were peeked). */
static int
proxy_accept_take(struct proxy_accept *pa, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(pa->fd, pa->buf + pa->have, n, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		pa->have += (size_t)r;
		n -= (size_t)r;
	}
	return 0;
}

static void
proxy_accept_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	proxy_accept_finish(arg, NULL, "timeout waiting for the PROXY header");
}

static void
proxy_accept_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_accept *pa = arg;
	struct proxy_header h;
	const char *error;

	size_t room = sizeof(pa->buf) - pa->have;
	ssize_t r = recv(fd, pa->buf + pa->have, room, MSG_PEEK | MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r <= 0) {
		proxy_accept_finish(pa, NULL,
		                    r == 0 ? "connection closed before the PROXY header ended"
		                           : "read error before the PROXY header ended");
		return;
	}
	switch (proxy_header_parse(pa->buf, pa->have + (size_t)r, &h, &error)) {
	case PARSE_OK:
		/* h.len > have: the bytes already taken were all AGAIN's. */
		if (proxy_accept_take(pa, h.len - pa->have) < 0)
			proxy_accept_finish(pa, NULL, "read error in the PROXY header");
		else
			proxy_accept_finish(pa, &h, NULL);
		return;
	case PARSE_AGAIN:
		if (proxy_accept_take(pa, (size_t)r) < 0)
			proxy_accept_finish(pa, NULL, "read error in the PROXY header");
		return;
	case PARSE_INVALID:
		proxy_accept_finish(pa, NULL, error);
		return;
	}
}

void
proxy_accept_start(struct event_base *base, int fd, unsigned timeout_ms, proxy_accept_cb *cb,
                   void *arg)
{
	struct proxy_accept *pa = xcalloc(1, sizeof(*pa));
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

	pa->fd = fd;
	pa->cb = cb;
	pa->arg = arg;
	pa->ev = event_new(base, fd, EV_READ | EV_PERSIST, proxy_accept_read_cb, pa);
	/* One deadline for the whole header, not per read: a client
	 * trickling a byte at a time is not waited for byte after byte. */
	pa->timer = evtimer_new(base, proxy_accept_timeout_cb, pa);
	if (pa->ev == NULL || pa->timer == NULL)
		fatal("proxy_accept: event_new failed");
	event_add(pa->ev, NULL);
	evtimer_add(pa->timer, &tv);
}
