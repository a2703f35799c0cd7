/* SPDX-License-Identifier: ISC */
/*
 * queue_ctl.c - the queue process's control socket (queue_internal.h),
 * spool_dir/private/queue, mode 0600: the other end of `authrelay queue
 * ...` (queue_cmd.c).
 *
 * Protocol: one line "[json] COMMAND [ARGS]\n" per connection; the answer is
 * "ok [TEXT]" or "error TEXT" on the first line, then data lines (list, show,
 * summary; JSON after "json"), then the queue closes. Commands: list, show
 * ID, summary, counts (one line for the master's status), and flush, delete, hold, release with a
 * selection: an ID, "ALL", "sender ADDR", "rcpt ADDR" or "domain DOMAIN" (flush alone: every
 * deferred message). A selection by recipient or domain takes the messages
 * with such a recipient still to go. The work itself is the scheduler's
 * (queue_sched.c); what a message looks like is queue_view.c's.
 */
#include "queue_internal.h"
#include "queue_view.h"
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
#define QUEUE_CTL_MAX_WORDS 4

/* Which messages a bulk command takes. */
enum ctl_sel { SEL_ALL, SEL_ID, SEL_SENDER, SEL_RCPT, SEL_DOMAIN };

struct ctl_select {
	enum ctl_sel kind;
	const char *value; /* ID, address or domain; "<>" is the null sender */
};

/* The commands that change messages. */
enum ctl_action { ACT_DELETE, ACT_HOLD, ACT_RELEASE, ACT_FLUSH };

static const struct {
	const char *name, *done;
} actions[] = {
        [ACT_DELETE] = {"delete", "deleted"},
        [ACT_HOLD] = {"hold", "held"},
        [ACT_RELEASE] = {"release", "released"},
        [ACT_FLUSH] = {"flush", "flushed"},
};

static bool
ctl_rcpt_matches(const struct qmsg *m, const struct ctl_select *sel)
{
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct qrcpt *r = &m->rcpts[i];
		/* Only recipients still to go: a delivered one is history. */
		if (r->status != RCPT_PENDING && r->status != RCPT_DEFERRED)
			continue;
		if (ascii_strcasecmp(sel->kind == SEL_RCPT ? r->addr : r->domain, sel->value) == 0)
			return true;
	}
	return false;
}

static bool
ctl_matches(const struct qmsg *m, const struct ctl_select *sel)
{
	if (m->where == QM_REMOVING)
		return false;
	switch (sel->kind) {
	case SEL_ALL:
		return true;
	case SEL_ID:
		return strcmp(m->id, sel->value) == 0;
	case SEL_SENDER:
		return m->where != QM_BROKEN &&
		       ascii_strcasecmp(m->sender,
		                        strcmp(sel->value, "<>") == 0 ? "" : sel->value) == 0;
	case SEL_RCPT:
	case SEL_DOMAIN:
		return ctl_rcpt_matches(m, sel);
	}
	return false;
}

static void
ctl_delete(struct queue *q, struct qmsg *m)
{
	log_info("id=%s delete requested by the admin status=%s", m->id, queue_view_where(m));
	if (m->where == QM_ACTIVE || m->where == QM_SETTLING)
		/* Removed once its jobs and DSNs are back. */
		m->delete_requested = true;
	else
		queue_sched_remove(q, m);
}

/* Apply act to m; true if it changed something. */
static bool
ctl_apply(struct queue *q, enum ctl_action act, struct qmsg *m)
{
	switch (act) {
	case ACT_DELETE:
		if (m->delete_requested)
			return false;
		ctl_delete(q, m);
		return true;
	case ACT_HOLD:
		if (m->where == QM_BROKEN || m->hold)
			return false;
		queue_sched_hold(q, m);
		return true;
	case ACT_RELEASE:
		if (!m->hold)
			return false;
		queue_sched_release(q, m);
		return true;
	case ACT_FLUSH:
		return queue_sched_flush_msg(q, m);
	}
	return false;
}

/* "delete ID" answers as before ("ok deleted ID"); any other selection
 * answers with a count ("ok deleted=3"). */
static void
ctl_bulk(struct queue *q, enum ctl_action act, const struct ctl_select *sel, struct evbuffer *out)
{
	size_t n, k = 0;

	if (sel->kind == SEL_ID) {
		struct qmsg *m = queue_sched_find(q, sel->value);
		if (m == NULL || m->where == QM_REMOVING) {
			evbuffer_add_printf(out, "error no such message: %s\n", sel->value);
			return;
		}
		if (act == ACT_HOLD && m->where == QM_BROKEN) {
			evbuffer_add_printf(out, "error %s is unreadable\n", m->id);
			return;
		}
		ctl_apply(q, act, m);
		evbuffer_add_printf(out, "ok %s %s\n", actions[act].done, m->id);
		return;
	}
	if (act == ACT_FLUSH && sel->kind == SEL_ALL) {
		k = queue_sched_flush(q);
	} else {
		struct qmsg **all = queue_sched_all(q, &n);
		for (size_t i = 0; i < n; i++)
			if (ctl_matches(all[i], sel) && ctl_apply(q, act, all[i]))
				k++;
		free(all);
	}
	/* The value is an address or a domain, often a client's: escaped,
	 * quoted and last (README.md, "Log format"). */
	char value[LOG_VALUE_MAX];
	log_info("queue %s selection=%s messages=%zu%s%s%s", actions[act].name,
	         sel->kind == SEL_ALL      ? "all"
	         : sel->kind == SEL_SENDER ? "sender"
	         : sel->kind == SEL_RCPT   ? "rcpt"
	                                   : "domain",
	         k, sel->kind == SEL_ALL ? "" : " value=\"",
	         sel->kind == SEL_ALL ? "" : log_escape_str(sel->value, value, sizeof(value)),
	         sel->kind == SEL_ALL ? "" : "\"");
	evbuffer_add_printf(out, "ok %s=%zu\n", actions[act].done, k);
}

/* The selection in words[0..n): "ALL", "id ID", "sender ADDR", "rcpt
 * ADDR", "domain DOMAIN", or a bare ID. 0, or -1 when malformed. */
static int
ctl_parse_select(char **words, int n, struct ctl_select *sel)
{
	static const struct {
		const char *word;
		enum ctl_sel kind;
	} kinds[] = {
	        {"id", SEL_ID}, {"sender", SEL_SENDER}, {"rcpt", SEL_RCPT}, {"domain", SEL_DOMAIN}};

	if (n == 1 && strcmp(words[0], "ALL") == 0) {
		sel->kind = SEL_ALL;
		return 0;
	}
	if (n == 1) {
		sel->kind = SEL_ID;
		sel->value = words[0];
		return 0;
	}
	if (n != 2)
		return -1;
	for (size_t i = 0; i < AR_NELEM(kinds); i++) {
		if (strcmp(words[0], kinds[i].word) == 0) {
			sel->kind = kinds[i].kind;
			sel->value = words[1];
			return 0;
		}
	}
	return -1;
}

/* For the master's `authrelay status`: one line of key=number pairs, the
 * only form it accepts. */
static void
ctl_counts(struct queue *q, struct evbuffer *out)
{
	size_t n, by[QM_BROKEN + 1] = {0};
	int64_t oldest = 0, now = queue_now();
	struct qmsg **all = queue_sched_all(q, &n);

	for (size_t i = 0; i < n; i++) {
		by[all[i]->where]++;
		if (all[i]->where != QM_BROKEN && (oldest == 0 || all[i]->arrival < oldest))
			oldest = all[i]->arrival;
	}
	free(all);
	evbuffer_add_printf(out,
	                    "ok messages=%zu ready=%zu active=%zu deferred=%zu hold=%zu "
	                    "broken=%zu oldest_age=%lld\n",
	                    n, by[QM_NONE] + by[QM_READY], by[QM_ACTIVE] + by[QM_SETTLING],
	                    by[QM_WAITING], by[QM_HOLD], by[QM_BROKEN],
	                    oldest > 0 && now > oldest ? (long long)(now - oldest) : 0LL);
}

static void
ctl_execute(struct queue *q, char *line, struct evbuffer *out)
{
	char *words[QUEUE_CTL_MAX_WORDS + 1], *save = NULL;
	int n = 0;
	bool json = false;

	for (char *w = strtok_r(line, " \t\r", &save); w != NULL;
	     w = strtok_r(NULL, " \t\r", &save)) {
		if (n == QUEUE_CTL_MAX_WORDS + 1) {
			evbuffer_add_printf(out, "error too many words\n");
			return;
		}
		words[n++] = w;
	}
	if (n > 0 && strcmp(words[0], "json") == 0) {
		json = true;
		memmove(words, words + 1, (size_t)--n * sizeof(words[0]));
	}
	if (n < 1) {
		evbuffer_add_printf(out, "error empty command\n");
		return;
	}
	const char *cmd = words[0];
	if (strcmp(cmd, "list") == 0 && n == 1) {
		size_t k;
		struct qmsg **all = queue_sched_all(q, &k);
		evbuffer_add_printf(out, "ok messages=%zu\n", k);
		queue_view_list(out, all, k, json);
		free(all);
		return;
	}
	if (strcmp(cmd, "summary") == 0 && n == 1) {
		size_t k;
		struct qmsg **all = queue_sched_all(q, &k);
		evbuffer_add_printf(out, "ok messages=%zu\n", k);
		queue_view_summary(out, all, k, queue_now(), json);
		free(all);
		return;
	}
	if (strcmp(cmd, "counts") == 0 && n == 1) {
		ctl_counts(q, out);
		return;
	}
	if (strcmp(cmd, "show") == 0 && n == 2) {
		struct qmsg *m = queue_sched_find(q, words[1]);
		if (m == NULL || m->where == QM_REMOVING) {
			evbuffer_add_printf(out, "error no such message: %s\n", words[1]);
			return;
		}
		evbuffer_add_printf(out, "ok\n");
		queue_view_show(out, m, json);
		return;
	}
	for (size_t a = 0; a < AR_NELEM(actions); a++) {
		struct ctl_select sel = {.kind = SEL_ALL};
		if (strcmp(cmd, actions[a].name) != 0)
			continue;
		/* flush alone is every deferred message, as it always was. */
		if ((n > 1 || a != ACT_FLUSH) && ctl_parse_select(words + 1, n - 1, &sel) < 0)
			break;
		if (a == ACT_FLUSH)
			delivery_forget_failures(q->dl);
		ctl_bulk(q, (enum ctl_action)a, &sel, out);
		return;
	}
	evbuffer_add_printf(out,
	                    "error unknown command %s (list, show ID, summary; flush, delete, "
	                    "hold, release with ID, ALL, sender ADDR, rcpt ADDR or domain "
	                    "DOMAIN)\n",
	                    cmd);
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
