/*
 * queue_ctl.c - the queue process's control socket (queue_internal.h),
 * spool_dir/private/queue, mode 0600: the other end of `authrelay queue
 * ...` (queue_cmd.c).
 *
 * Protocol: one line "COMMAND [ID]\n" per connection; the answer is "ok
 * [TEXT]" or "error TEXT" on the first line, then data lines (list, show),
 * then the queue closes. Commands: list, show ID, flush, delete ID, hold ID,
 * release ID. The work itself is the scheduler's (queue_sched.c).
 */
#include "queue_internal.h"
#include "delivery.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define QUEUE_CTL_SOCKET "private/queue"
#define QUEUE_CTL_MAX_LINE 512

static const char *const where_names[] = {
        [QM_NONE] = "new",          [QM_READY] = "ready",   [QM_WAITING] = "deferred",
        [QM_ACTIVE] = "active",     [QM_HOLD] = "hold",     [QM_SETTLING] = "active",
        [QM_REMOVING] = "removing", [QM_BROKEN] = "broken",
};

static const char *const status_names[] = {
        [RCPT_PENDING] = "pending",
        [RCPT_DEFERRED] = "deferred",
        [RCPT_SENT] = "sent",
        [RCPT_BOUNCED] = "bounced",
};

/* RFC 3339, in UTC. */
#define ISO_TIME "%Y-%m-%dT%H:%M:%SZ"

static void
ctl_msg_line(struct evbuffer *out, const struct qmsg *m)
{
	char arrival[32], next[32];
	size_t pending = 0;
	utc_strftime(m->arrival, ISO_TIME, arrival, sizeof(arrival));
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_PENDING || m->rcpts[i].status == RCPT_DEFERRED)
			pending++;
	if (m->where == QM_WAITING)
		utc_strftime(m->next_attempt, ISO_TIME, next, sizeof(next));
	else
		snprintf(next, sizeof(next), "-");
	evbuffer_add_printf(out,
	                    "%s status=%s size=%llu arrival=%s from=<%s> nrcpt=%zu pending=%zu "
	                    "attempts=%u next=%s\n",
	                    m->id, where_names[m->where], (unsigned long long)m->size, arrival,
	                    m->sender, m->n_rcpts, pending, m->attempts, next);
}

static int
ctl_cmp(const void *a, const void *b)
{
	return strcmp((*(struct qmsg *const *)a)->id, (*(struct qmsg *const *)b)->id);
}

static void
ctl_list(struct queue *q, struct evbuffer *out)
{
	size_t n;
	struct qmsg **all = queue_sched_all(q, &n);
	qsort(all, n, sizeof(*all), ctl_cmp);
	evbuffer_add_printf(out, "ok messages=%zu\n", n);
	for (size_t i = 0; i < n; i++)
		ctl_msg_line(out, all[i]);
	free(all);
}

static void
ctl_show(struct evbuffer *out, const struct qmsg *m)
{
	char reply[700];
	evbuffer_add_printf(out, "ok\n");
	ctl_msg_line(out, m);
	if (m->broken_reason != NULL)
		evbuffer_add_printf(out, "broken reason=\"%s\"\n",
		                    log_escape_str(m->broken_reason, reply, sizeof(reply)));
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct qrcpt *r = &m->rcpts[i];
		evbuffer_add_printf(out, "rcpt=<%s> status=%s dsn=%s relay=%s reply=\"%s\"\n",
		                    r->addr, status_names[r->status], r->dsn[0] ? r->dsn : "-",
		                    r->relay[0] ? r->relay : "-",
		                    log_escape_str(r->reply ? r->reply : "", reply, sizeof(reply)));
	}
}

static void
ctl_delete(struct queue *q, struct evbuffer *out, struct qmsg *m)
{
	log_info("id=%s delete requested by the admin status=%s", m->id, where_names[m->where]);
	if (m->where == QM_ACTIVE || m->where == QM_SETTLING)
		/* Removed once its jobs and DSNs are back. */
		m->delete_requested = true;
	else
		queue_sched_remove(q, m);
	evbuffer_add_printf(out, "ok deleted %s\n", m->id);
}

static void
ctl_execute(struct queue *q, const char *line, struct evbuffer *out)
{
	char cmd[32] = "", arg[64] = "";
	int n = sscanf(line, "%31s %63s", cmd, arg);
	struct qmsg *m = NULL;

	if (n < 1) {
		evbuffer_add_printf(out, "error empty command\n");
		return;
	}
	bool needs_id = strcmp(cmd, "show") == 0 || strcmp(cmd, "delete") == 0 ||
	                strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0;
	if (needs_id) {
		if (n < 2 || (m = queue_sched_find(q, arg)) == NULL || m->where == QM_REMOVING) {
			evbuffer_add_printf(out, "error no such message: %s\n", n < 2 ? "" : arg);
			return;
		}
	}
	if (strcmp(cmd, "list") == 0) {
		ctl_list(q, out);
	} else if (strcmp(cmd, "show") == 0) {
		ctl_show(out, m);
	} else if (strcmp(cmd, "flush") == 0) {
		delivery_forget_failures(q->dl);
		size_t k = queue_sched_flush(q);
		log_info("queue flush messages=%zu", k);
		evbuffer_add_printf(out, "ok flushed=%zu\n", k);
	} else if (strcmp(cmd, "delete") == 0) {
		ctl_delete(q, out, m);
	} else if (strcmp(cmd, "hold") == 0) {
		if (m->where == QM_BROKEN) {
			evbuffer_add_printf(out, "error %s is unreadable\n", m->id);
			return;
		}
		queue_sched_hold(q, m);
		evbuffer_add_printf(out, "ok held %s\n", m->id);
	} else if (strcmp(cmd, "release") == 0) {
		queue_sched_release(q, m);
		evbuffer_add_printf(out, "ok released %s\n", m->id);
	} else {
		evbuffer_add_printf(out,
		                    "error unknown command %s (list, show ID, flush, delete ID, "
		                    "hold ID, release ID)\n",
		                    cmd);
	}
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	bufferevent_free(bev);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct queue *q = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > QUEUE_CTL_MAX_LINE)
			bufferevent_free(bev);
		return;
	}
	struct evbuffer *out = evbuffer_new();
	ctl_execute(q, line, out);
	free(line);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, ctl_write_cb, ctl_event_cb, q);
	bufferevent_write_buffer(bev, out);
	evbuffer_free(out);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
	struct queue *q = arg;
	struct bufferevent *bev = bufferevent_socket_new(q->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, ctl_read_cb, NULL, ctl_event_cb, q);
	bufferevent_set_timeouts(bev, &(struct timeval){10, 0}, &(struct timeval){30, 0});
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int
queue_ctl_listen(struct queue *q)
{
	/* The master's socket: private/ is root's, where only it can bind. */
	if (q->p->ctl_fd >= 0) {
		q->ctl = evconnlistener_new(q->base, ctl_accept_cb, q,
		                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
		                            q->p->ctl_fd);
		if (q->ctl == NULL) {
			log_err("queue control socket: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(q->ctl_path, sizeof(q->ctl_path), "%s/%s", q->spool, QUEUE_CTL_SOCKET);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		log_err("queue control socket: spool_dir is too long for a UNIX socket path");
		return -1;
	}
	memcpy(sun.sun_path, q->ctl_path, (size_t)n + 1);
	unlink(q->ctl_path);
	mode_t old = umask(0177);
	q->ctl = evconnlistener_new_bind(q->base, ctl_accept_cb, q,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	                                 (struct sockaddr *)&sun, (int)sizeof(sun));
	umask(old);
	if (q->ctl == NULL) {
		log_err("queue control socket %s: %s", q->ctl_path, strerror(errno));
		return -1;
	}
	return 0;
}

void
queue_ctl_close(struct queue *q)
{
	if (q->ctl == NULL)
		return;
	evconnlistener_free(q->ctl);
	q->ctl = NULL;
	if (q->ctl_path[0] != '\0')
		unlink(q->ctl_path);
}
