/* SPDX-License-Identifier: ISC */
/*
 * auth_alert_link.c - the auth end of the alert channel (see
 * auth_alert_link.h).
 *
 * Messages leave in order: a send goes straight to the socket only when
 * nothing waits before it; otherwise it joins the backlog, and an EV_WRITE
 * event (registered only while the backlog is not empty) writes the backlog
 * out as the queue process reads. A record that fails for another reason
 * than a full socket is dropped with an error; there is no reconnecting to
 * do, since the master holds the channel open for the life of the gateway.
 */
#include "auth_alert_link.h"
#include "../lib/common.h"
#include "../lib/ipc.h"
#include "../lib/log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

struct link_item {
	STAILQ_ENTRY(link_item) entry;
	struct ipc_msg *msg;
};

struct auth_alert_link {
	int fd;
	struct event *writable;
	STAILQ_HEAD(, link_item) backlog;
	unsigned n_backlog;
	bool warned; /* one warning per stall, then debug */
};

/* Write one message. 1 sent, 0 the socket is full, -1 dropped. */
static int
link_write(struct auth_alert_link *l, struct ipc_msg *msg)
{
	if (ipc_msg_send_record(msg, l->fd) == 0)
		return 1;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return 0;
	log_err("auth: alert channel to the queue process: %s; alert message dropped",
	        strerror(errno));
	return -1;
}

/* Write what waits, oldest first, until the socket is full. */
static void
link_flush(struct auth_alert_link *l)
{
	struct link_item *it;

	while ((it = STAILQ_FIRST(&l->backlog)) != NULL) {
		if (link_write(l, it->msg) == 0)
			break;
		STAILQ_REMOVE_HEAD(&l->backlog, entry);
		l->n_backlog--;
		ipc_msg_free(it->msg);
		free(it);
	}
	if (l->n_backlog == 0) {
		event_del(l->writable);
		if (l->warned)
			log_info("auth: alert channel: the queue process reads again");
		l->warned = false;
	} else {
		event_add(l->writable, NULL);
	}
}

static void
link_on_writable(evutil_socket_t fd, short what, void *arg)
{
	link_flush(arg);
}

struct auth_alert_link *
auth_alert_link_new(struct event_base *base, int fd)
{
	struct auth_alert_link *l = xcalloc(1, sizeof(*l));

	l->fd = fd;
	STAILQ_INIT(&l->backlog);
	if (fd >= 0) {
		l->writable = event_new(base, fd, EV_WRITE, link_on_writable, l);
		if (l->writable == NULL)
			fatal("auth: cannot create the alert channel's event");
	}
	return l;
}

void
auth_alert_link_free(struct auth_alert_link *l)
{
	struct link_item *it;

	if (l == NULL)
		return;
	if (l->n_backlog > 0)
		log_warn("auth: %u alert messages for the queue process dropped at exit",
		         l->n_backlog);
	while ((it = STAILQ_FIRST(&l->backlog)) != NULL) {
		STAILQ_REMOVE_HEAD(&l->backlog, entry);
		ipc_msg_free(it->msg);
		free(it);
	}
	if (l->writable != NULL)
		event_free(l->writable);
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

bool
auth_alert_link_send(struct ipc_msg *msg, void *arg)
{
	struct auth_alert_link *l = arg;
	struct link_item *it;
	int r;

	if (l->fd < 0) {
		log_debug("auth: no alert channel; alert message dropped");
		ipc_msg_free(msg);
		return false;
	}
	if (l->n_backlog == 0) {
		r = link_write(l, msg);
		if (r != 0) {
			ipc_msg_free(msg);
			return r > 0;
		}
	}
	if (l->n_backlog >= AUTH_ALERT_LINK_BACKLOG) {
		log_err("auth: the queue process takes no alert messages and %d wait; alert "
		        "message dropped (the alert is in the log)",
		        AUTH_ALERT_LINK_BACKLOG);
		ipc_msg_free(msg);
		return false;
	}
	if (!l->warned)
		log_warn("auth: alert channel full: the queue process is not reading; "
		         "alert messages wait");
	l->warned = true;
	it = xcalloc(1, sizeof(*it));
	it->msg = msg;
	STAILQ_INSERT_TAIL(&l->backlog, it, entry);
	l->n_backlog++;
	event_add(l->writable, NULL);
	return true;
}
