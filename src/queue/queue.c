/*
 * queue.c - the queue process (queue.h): message table, scheduler, retries,
 * bounces, and the control socket behind `authrelay queue ...`.
 *
 * Life of a message:
 *   incoming/ID appears (inotify, or the periodic rescan, or the start-up
 *   scan) -> loaded: envelope, and state/ID if it was tried before ->
 *   READY (a FIFO) -> ACTIVE: its pending recipients are grouped by
 *   destination (route.h) into jobs of at most max_recipients_per_transaction
 *   and handed to the SMTP agent (delivery.h) or the Maildir writer ->
 *   every job is back: recipients that failed for good get a DSN
 *   (bounce.h), written and fsynced into the spool before anything else
 *   changes -> all recipients done: REMOVING (store unlinks incoming/ID,
 *   then state/ID); else WAITING (a min-heap on the next retry, with
 *   exponential back-off from retry_min to retry_max) or HOLD, with
 *   state/ID rewritten. Past max_lifetime what is still deferred bounces.
 *
 * A message stays in the table until its files are gone, so a rescan can
 * never load it twice. Nothing here blocks: fsyncs and Maildir writes run
 * on thread pools, DNS and SMTP on the loop.
 *
 * Crash safety: a kill -9 at any point leaves incoming/ID (fsynced before
 * the 250) and at worst an old state/ID; the restarted process loads both
 * and carries on, repeating at most the deliveries that were in flight.
 */
#include "queue.h"
#include "bounce.h"
#include "delivery.h"
#include "dns.h"
#include "maildir.h"
#include "queue_config.h"
#include "queue_store.h"
#include "route.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/readiness.h"
#include "../lib/threadpool.h"
#include "../smtp/smtp_parse.h"
#include "../spool/spool.h"
#include "../spool/spool_gauge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

/* Messages being delivered at once; the rest wait in READY. */
#define QUEUE_ACTIVE_LIMIT 10000
#define QUEUE_RESCAN_SECONDS 60
#define QUEUE_STATS_SECONDS 60
#define QUEUE_CTL_SOCKET "private/queue"
#define QUEUE_CTL_MAX_LINE 512
/* Threads for Maildir writes and DSN commits (disk waits, not CPU). */
#define QUEUE_POOL_THREADS 2

enum qm_where {
	QM_NONE,
	QM_READY,    /* due now, waiting for an active slot */
	QM_WAITING,  /* deferred: in the heap until next_attempt */
	QM_ACTIVE,   /* jobs out */
	QM_HOLD,     /* held by the admin */
	QM_SETTLING, /* jobs back, DSN being written */
	QM_REMOVING, /* files being removed */
	QM_BROKEN,   /* unreadable spool file: left alone, reported by list */
};

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

struct qrcpt {
	char *addr;   /* "user@domain" */
	char *domain; /* lower case */
	enum rcpt_status status;
	char *reply; /* last reply or reason */
	char dsn[16];
	char relay[320];
	bool remote;
	bool notify; /* failed for good in this attempt: DSN to send */
};

struct qjob;

struct qmsg {
	char id[SPOOL_ID_LEN + 1];
	struct queue *q;
	struct qmsg *hnext;         /* hash chain */
	struct qmsg *rnext, *rprev; /* READY list */
	size_t heap_idx;
	enum qm_where where;
	char *path;
	int64_t arrival;
	char *sender; /* "" for the null sender */
	bool body_8bit, smtputf8;
	long body_offset;
	uint64_t size;
	struct qrcpt *rcpts;
	size_t n_rcpts;
	unsigned attempts;
	int64_t next_attempt;
	bool hold, warned;
	bool has_state; /* state/<id> was read or written: remove it too */
	unsigned jobs;
	bool delete_requested;
	char *broken_reason;
};

struct queue;

/* One delivery job: a message's recipients for one destination. */
struct qjob {
	struct delivery_job dj;
	struct queue *q;
	struct qmsg *m;
	struct route_decision rd;
	struct delivery_rcpt *rcpts;
	struct qjob *next, *prev; /* every job out, for shutdown */
};

/* DSNs for one message, written on the pool. */
struct qdsn {
	struct queue *q;
	struct qmsg *m;
	struct bounce_params bp[2]; /* [0] failures, [1] delay warning */
	struct bounce_rcpt *br[2];
	size_t *idx[2];
	bool want[2];
	int result[2];
	char ids[2][32];
	struct qdsn *next, *prev;
};

struct queue {
	const struct queue_params *p;
	const struct config *cfg;
	const struct queue_config *qc;
	struct config *reload_cfg[64]; /* configs loaded on SIGHUP, kept to the end */
	struct queue_config *reload_qc[64];
	size_t n_reloads;
	struct event_base *base;
	struct dns *dns;
	struct delivery *dl;
	struct queue_store *store;
	struct threadpool *pool;
	char *spool;
	char *helo;

	struct qmsg **buckets;
	size_t n_buckets;
	size_t n_msgs;
	struct qmsg *ready_head, *ready_tail;
	size_t n_ready;
	struct qmsg **heap;
	size_t n_heap, heap_cap;
	size_t n_active, n_hold;

	struct qjob *jobs;
	struct qdsn *dsns;

	struct event *heap_timer, *run_ev, *rescan_ev, *stats_ev, *ev_term, *ev_int, *ev_hup;
	struct event *inotify_ev;
	int inotify_fd;
	struct evconnlistener *ctl;
	char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	unsigned long n_sent, n_deferred, n_bounced, n_dsn, n_expired, n_received;
	unsigned long last_stats_sum;
	bool full;
};

static void queue_run_soon(struct queue *q);
static void msg_settle(struct queue *q, struct qmsg *m);
static void msg_remove(struct queue *q, struct qmsg *m);

/* ---------------------------------------------------------------- helpers */

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static double
now_f(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void
iso_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src != NULL ? xstrdup(src) : NULL;
}

static size_t
msg_hash(const char *id, size_t n)
{
	size_t h = 5381;
	for (; *id != '\0'; id++)
		h = h * 33 + (unsigned char)*id;
	return h & (n - 1);
}

static struct qmsg *
msg_find(struct queue *q, const char *id)
{
	for (struct qmsg *m = q->buckets[msg_hash(id, q->n_buckets)]; m != NULL; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static void
queue_update_gauge(struct queue *q)
{
	unsigned max = q->qc->max_queue_size;
	bool full = q->full;

	if (max == 0)
		full = false;
	else if (q->n_msgs >= max)
		full = true;
	else if (q->n_msgs < max - max / 10)
		/* Hysteresis: the queue drains by a tenth before we accept again. */
		full = false;
	if (full != q->full) {
		if (full)
			log_warn("alert=queue_full queued=%zu max_queue_size=%u: new SMTP "
			         "connections are deferred (421 4.3.2)",
			         q->n_msgs, max);
		else
			log_info("alert=queue_full cleared queued=%zu max_queue_size=%u", q->n_msgs,
			         max);
		q->full = full;
	}
	spool_gauge_set(q->p->gauge, q->n_msgs, q->full);
}

static void
msg_table_add(struct queue *q, struct qmsg *m)
{
	if (q->n_msgs + 1 > q->n_buckets) {
		size_t n = q->n_buckets * 2;
		struct qmsg **b = xcalloc(n, sizeof(*b));
		for (size_t i = 0; i < q->n_buckets; i++) {
			for (struct qmsg *x = q->buckets[i], *next; x != NULL; x = next) {
				next = x->hnext;
				size_t h = msg_hash(x->id, n);
				x->hnext = b[h];
				b[h] = x;
			}
		}
		free(q->buckets);
		q->buckets = b;
		q->n_buckets = n;
	}
	size_t h = msg_hash(m->id, q->n_buckets);
	m->hnext = q->buckets[h];
	q->buckets[h] = m;
	q->n_msgs++;
	queue_update_gauge(q);
}

static void
msg_table_del(struct queue *q, struct qmsg *m)
{
	for (struct qmsg **p = &q->buckets[msg_hash(m->id, q->n_buckets)]; *p != NULL;
	     p = &(*p)->hnext) {
		if (*p == m) {
			*p = m->hnext;
			q->n_msgs--;
			break;
		}
	}
	queue_update_gauge(q);
}

static void
msg_free(struct qmsg *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].domain);
		free(m->rcpts[i].reply);
	}
	free(m->rcpts);
	free(m->path);
	free(m->sender);
	free(m->broken_reason);
	free(m);
}

/* ---------------------------------------------------------------- READY list */

static void
ready_push(struct queue *q, struct qmsg *m)
{
	m->where = QM_READY;
	m->rnext = NULL;
	m->rprev = q->ready_tail;
	if (q->ready_tail != NULL)
		q->ready_tail->rnext = m;
	else
		q->ready_head = m;
	q->ready_tail = m;
	q->n_ready++;
	queue_run_soon(q);
}

static void
ready_remove(struct queue *q, struct qmsg *m)
{
	if (m->rprev != NULL)
		m->rprev->rnext = m->rnext;
	else
		q->ready_head = m->rnext;
	if (m->rnext != NULL)
		m->rnext->rprev = m->rprev;
	else
		q->ready_tail = m->rprev;
	m->rnext = m->rprev = NULL;
	q->n_ready--;
	m->where = QM_NONE;
}

/* ---------------------------------------------------------------- retry heap */

static void
heap_swap(struct queue *q, size_t a, size_t b)
{
	struct qmsg *t = q->heap[a];
	q->heap[a] = q->heap[b];
	q->heap[b] = t;
	q->heap[a]->heap_idx = a;
	q->heap[b]->heap_idx = b;
}

static void
heap_up(struct queue *q, size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (q->heap[parent]->next_attempt <= q->heap[i]->next_attempt)
			break;
		heap_swap(q, i, parent);
		i = parent;
	}
}

static void
heap_down(struct queue *q, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, s = i;
		if (l < q->n_heap && q->heap[l]->next_attempt < q->heap[s]->next_attempt)
			s = l;
		if (r < q->n_heap && q->heap[r]->next_attempt < q->heap[s]->next_attempt)
			s = r;
		if (s == i)
			return;
		heap_swap(q, i, s);
		i = s;
	}
}

static void
heap_arm(struct queue *q)
{
	if (q->n_heap == 0) {
		evtimer_del(q->heap_timer);
		return;
	}
	int64_t wait = q->heap[0]->next_attempt - now_s();
	struct timeval tv = {wait > 0 ? (time_t)wait : 0, wait > 0 ? 0 : 1000};
	evtimer_add(q->heap_timer, &tv);
}

static void
heap_push(struct queue *q, struct qmsg *m)
{
	if (q->n_heap == q->heap_cap) {
		q->heap_cap = q->heap_cap ? q->heap_cap * 2 : 64;
		q->heap = xrealloc(q->heap, q->heap_cap * sizeof(*q->heap));
	}
	m->where = QM_WAITING;
	m->heap_idx = q->n_heap;
	q->heap[q->n_heap++] = m;
	heap_up(q, m->heap_idx);
	heap_arm(q);
}

static void
heap_remove(struct queue *q, struct qmsg *m)
{
	size_t i = m->heap_idx;
	q->n_heap--;
	if (i != q->n_heap) {
		q->heap[i] = q->heap[q->n_heap];
		q->heap[i]->heap_idx = i;
		heap_down(q, i);
		heap_up(q, i);
	}
	m->where = QM_NONE;
	heap_arm(q);
}

static void
heap_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	int64_t now = now_s();
	while (q->n_heap > 0 && q->heap[0]->next_attempt <= now) {
		struct qmsg *m = q->heap[0];
		heap_remove(q, m);
		ready_push(q, m);
	}
	heap_arm(q);
}

/* Take m out of wherever it waits (READY, WAITING, HOLD). */
static void
msg_unqueue(struct queue *q, struct qmsg *m)
{
	if (m->where == QM_READY)
		ready_remove(q, m);
	else if (m->where == QM_WAITING)
		heap_remove(q, m);
	else if (m->where == QM_HOLD) {
		q->n_hold--;
		m->where = QM_NONE;
	}
}

/* ---------------------------------------------------------------- state */

static void
msg_write_state(struct queue *q, struct qmsg *m)
{
	struct queue_state st = {
	        .attempts = m->attempts,
	        .next_attempt = m->next_attempt,
	        .hold = m->hold,
	        .warned = m->warned,
	        .n_rcpts = m->n_rcpts,
	};
	st.rcpts = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*st.rcpts));
	for (size_t i = 0; i < m->n_rcpts; i++) {
		st.rcpts[i].status = m->rcpts[i].status;
		st.rcpts[i].reply = m->rcpts[i].reply;
	}
	char *text = queue_state_format(&st);
	free(st.rcpts);
	m->has_state = true;
	queue_store_write_state(q->store, m->id, text);
}

/* ---------------------------------------------------------------- loading */

/* The address of an envelope record ("<a@b> PARAMS") with its parameters. */
static int
parse_path(const char *record, bool mail, struct smtp_mail_args *r)
{
	char buf[2200];
	const char *err;
	snprintf(buf, sizeof(buf), "%s%s", mail ? "FROM:" : "TO:", record);
	return smtp_parse_mail_args(buf, mail ? SMTP_PARAMS_MAIL : SMTP_PARAMS_RCPT, r, &err);
}

static void
msg_broken(struct queue *q, const char *id, const char *path, const char *why)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));
	m->q = q;
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xstrdup(path);
	m->where = QM_BROKEN;
	m->sender = xstrdup("");
	m->broken_reason = xstrdup(why);
	log_err("id=%s unreadable queue file %s: %s (left alone; `authrelay queue delete %s` "
	        "removes it)",
	        id, path, why, id);
	msg_table_add(q, m);
}

static bool
valid_id(const char *s)
{
	size_t i;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == SPOOL_ID_LEN;
}

/* Load incoming/<id> if it is new to us. fresh: inotify has just seen it
 * arrive, so no state file can exist for it yet (one is written only after a
 * try); the start and the rescans look for one. */
static void
queue_load(struct queue *q, const char *id, bool at_start, bool fresh)
{
	struct spool_envelope env;
	struct queue_state st;
	const char *err;
	long off;
	char path[4200];
	uint64_t file_size = 0;

	if (!valid_id(id) || msg_find(q, id) != NULL)
		return;
	snprintf(path, sizeof(path), "%s/incoming/%s", q->spool, id);
	if (spool_read_envelope_sized(path, &env, &off, &file_size, &err) != 0) {
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return;
		msg_broken(q, id, path, err);
		return;
	}
	struct qmsg *m = xcalloc(1, sizeof(*m));
	m->q = q;
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xstrdup(path);
	m->arrival = env.time;
	m->body_offset = off;
	m->size = file_size > (uint64_t)off ? file_size - (uint64_t)off : 0;
	struct smtp_mail_args *ma = xcalloc(1, sizeof(*ma));
	if (parse_path(env.mail, true, ma) == 0) {
		m->sender = xstrdup(ma->path.null ? "" : ma->path.addr);
		for (size_t i = 0; i < ma->n_params; i++) {
			if (strcmp(ma->params[i].key, "BODY") == 0 &&
			    ascii_strcasecmp(ma->params[i].value, "8BITMIME") == 0)
				m->body_8bit = true;
			if (strcmp(ma->params[i].key, "SMTPUTF8") == 0)
				m->smtputf8 = true;
		}
	} else {
		/* Written by us, so this should not happen: take what is
		 * between the brackets. */
		const char *a = strchr(env.mail, '<'), *b = a ? strchr(a, '>') : NULL;
		m->sender = a && b ? xstrndup(a + 1, (size_t)(b - a - 1)) : xstrdup("");
	}
	m->n_rcpts = env.n_rcpts;
	m->rcpts = xcalloc(env.n_rcpts ? env.n_rcpts : 1, sizeof(*m->rcpts));
	for (size_t i = 0; i < env.n_rcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		if (parse_path(env.rcpts[i], false, ma) == 0 && ma->path.addr[0] != '\0') {
			r->addr = xstrdup(ma->path.addr);
			r->domain =
			        xstrdup(ma->path.domain[0] ? ma->path.domain : q->cfg->hostname);
		} else {
			const char *a = strchr(env.rcpts[i], '<'), *b = a ? strchr(a, '>') : NULL;
			r->addr = a && b ? xstrndup(a + 1, (size_t)(b - a - 1))
			                 : xstrdup(env.rcpts[i]);
			const char *at = strrchr(r->addr, '@');
			r->domain = xstrdup(at ? at + 1 : q->cfg->hostname);
			for (char *p = r->domain; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p + ('a' - 'A'));
		}
	}
	free(ma);
	spool_envelope_clear(&env);

	int r = 0;
	if (fresh)
		queue_state_init(&st, m->n_rcpts);
	else
		r = queue_store_read_state(q->spool, id, m->n_rcpts, &st, &err);
	if (r < 0) {
		/* A damaged state file costs at most a repeated delivery. */
		log_warn("id=%s state file ignored: %s", id, err);
		m->has_state = true;
	} else {
		m->has_state = st.exists;
		m->attempts = st.attempts;
		m->next_attempt = st.next_attempt;
		m->hold = st.hold;
		m->warned = st.warned;
		for (size_t i = 0; i < m->n_rcpts; i++) {
			m->rcpts[i].status = st.rcpts[i].status;
			m->rcpts[i].reply = st.rcpts[i].reply;
			st.rcpts[i].reply = NULL;
		}
		queue_state_clear(&st);
	}
	msg_table_add(q, m);
	if (!at_start) {
		q->n_received++;
		log_info("id=%s queued from=<%s> nrcpt=%zu size=%llu", m->id, m->sender, m->n_rcpts,
		         (unsigned long long)m->size);
	}
	bool all_done = true;
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_PENDING || m->rcpts[i].status == RCPT_DEFERRED)
			all_done = false;
	if (all_done) {
		/* Finished before a crash, not yet removed. */
		msg_remove(q, m);
	} else if (m->hold) {
		m->where = QM_HOLD;
		q->n_hold++;
	} else if (m->next_attempt > now_s()) {
		heap_push(q, m);
	} else {
		ready_push(q, m);
	}
}

static void
queue_scan(struct queue *q, bool at_start)
{
	char dir[4200];
	DIR *d;
	struct dirent *de;

	snprintf(dir, sizeof(dir), "%s/incoming", q->spool);
	d = opendir(dir);
	if (d == NULL) {
		log_err("opendir %s: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL)
		queue_load(q, de->d_name, at_start, false);
	closedir(d);
}

static void
inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	bool overflow = false;

	while ((n = read(q->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				overflow = true;
			else if (ev->len > 0)
				queue_load(q, ev->name, false, true);
			p += sizeof(*ev) + ev->len;
		}
	}
	if (overflow)
		queue_scan(q, false);
}

static void
rescan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	queue_scan(q, false);
}

/* ---------------------------------------------------------------- delivery */

static void
log_delivery(struct queue *q, struct qmsg *m, const struct qrcpt *r, const char *status)
{
	char reply[700], addr[600];
	log_info("id=%s to=<%s> relay=%s delay=%.2f attempts=%u dsn=%s status=%s reply=\"%s\"",
	         m->id, log_escape_str(r->addr, addr, sizeof(addr)), r->relay,
	         now_f() - (double)m->arrival, m->attempts + 1, r->dsn[0] ? r->dsn : "-", status,
	         log_escape_str(r->reply ? r->reply : "", reply, sizeof(reply)));
}

static void msg_attempt_done(struct queue *q, struct qmsg *m);

static void
qjob_free(struct queue *q, struct qjob *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		q->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	free(j->rcpts);
	free(j);
}

static void
qjob_done(struct delivery_job *dj, void *arg)
{
	struct qjob *j = arg;
	struct queue *q = j->q;
	struct qmsg *m = j->m;

	for (size_t i = 0; i < dj->n_rcpts; i++) {
		struct delivery_rcpt *dr = &dj->rcpts[i];
		struct qrcpt *r = &m->rcpts[dr->index];
		r->status = dr->status == RCPT_PENDING ? RCPT_DEFERRED : dr->status;
		set_str(&r->reply, dr->reply);
		snprintf(r->dsn, sizeof(r->dsn), "%s", dr->dsn);
		snprintf(r->relay, sizeof(r->relay), "%s", dr->relay);
		r->remote = dr->remote;
		switch (r->status) {
		case RCPT_SENT:
			q->n_sent++;
			log_delivery(q, m, r, "sent");
			break;
		case RCPT_BOUNCED:
			q->n_bounced++;
			r->notify = true;
			log_delivery(q, m, r, "bounced");
			break;
		default:
			q->n_deferred++;
			log_delivery(q, m, r, "deferred");
			break;
		}
	}
	qjob_free(q, j);
	if (--m->jobs == 0)
		msg_attempt_done(q, m);
}

struct maildir_work {
	struct qjob *j;
	char hostname[256];
	const char *tmpl;
};

static void
maildir_work_cb(void *arg)
{
	struct qjob *j = arg;
	struct delivery_job *dj = &j->dj;
	char err[512], relay[320];
	bool permanent;

	snprintf(relay, sizeof(relay), "maildir:%s", j->rd.route->name);
	for (size_t i = 0; i < dj->n_rcpts; i++) {
		struct delivery_rcpt *r = &dj->rcpts[i];
		snprintf(r->relay, sizeof(r->relay), "%s", relay);
		r->remote = false;
		if (maildir_deliver(j->rd.route->maildir, r->addr, dj->sender, dj->queue_id,
		                    j->q->cfg->hostname, dj->path, dj->body_offset, err,
		                    sizeof(err), &permanent) == 0) {
			r->status = RCPT_SENT;
			snprintf(r->dsn, sizeof(r->dsn), "2.0.0");
			snprintf(r->reply, sizeof(r->reply), "delivered to maildir");
		} else {
			r->status = permanent ? RCPT_BOUNCED : RCPT_DEFERRED;
			snprintf(r->dsn, sizeof(r->dsn), permanent ? "5.1.1" : "4.3.0");
			snprintf(r->reply, sizeof(r->reply), "%s", err);
		}
	}
}

static void
maildir_done_cb(void *arg)
{
	struct qjob *j = arg;
	qjob_done(&j->dj, j);
}

static void
msg_activate(struct queue *q, struct qmsg *m)
{
	struct {
		struct route_decision rd;
		size_t *idx;
		size_t n;
	} *groups = NULL;
	size_t n_groups = 0;

	m->where = QM_ACTIVE;
	q->n_active++;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		if (r->status != RCPT_PENDING && r->status != RCPT_DEFERRED)
			continue;
		struct route_decision rd;
		route_decide(q->qc, r->domain, &rd);
		size_t g;
		for (g = 0; g < n_groups; g++)
			if (strcmp(groups[g].rd.key, rd.key) == 0)
				break;
		if (g == n_groups) {
			groups = xrealloc(groups, (n_groups + 1) * sizeof(*groups));
			groups[g].rd = rd;
			groups[g].idx = xcalloc(m->n_rcpts, sizeof(size_t));
			groups[g].n = 0;
			n_groups++;
		}
		groups[g].idx[groups[g].n++] = i;
	}
	unsigned max = q->qc->max_recipients_per_transaction;
	for (size_t g = 0; g < n_groups; g++) {
		/* A message with more recipients than one transaction may take
		 * is split (RFC 5321 4.5.3.1.8 allows servers 100). */
		for (size_t start = 0; start < groups[g].n; start += max) {
			size_t n = groups[g].n - start < max ? groups[g].n - start : max;
			struct qjob *j = xcalloc(1, sizeof(*j));
			j->q = q;
			j->m = m;
			j->rd = groups[g].rd;
			j->rcpts = xcalloc(n, sizeof(*j->rcpts));
			for (size_t k = 0; k < n; k++) {
				j->rcpts[k].index = groups[g].idx[start + k];
				j->rcpts[k].addr = m->rcpts[j->rcpts[k].index].addr;
			}
			j->dj = (struct delivery_job){
			        .queue_id = m->id,
			        .path = m->path,
			        .body_offset = m->body_offset,
			        .size = m->size,
			        .sender = m->sender,
			        .body_8bit = m->body_8bit,
			        .smtputf8 = m->smtputf8,
			        .rcpts = j->rcpts,
			        .n_rcpts = n,
			        .done = qjob_done,
			        .arg = j,
			};
			j->next = q->jobs;
			if (q->jobs != NULL)
				q->jobs->prev = j;
			q->jobs = j;
			m->jobs++;
			if (j->rd.type == ROUTE_MAILDIR)
				threadpool_submit(q->pool, maildir_work_cb, maildir_done_cb, j);
			else
				delivery_submit(q->dl, &j->rd, &j->dj);
		}
		free(groups[g].idx);
	}
	free(groups);
	if (m->jobs == 0)
		msg_attempt_done(q, m);
}

static void
run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	while (q->ready_head != NULL && q->n_active < QUEUE_ACTIVE_LIMIT) {
		struct qmsg *m = q->ready_head;
		ready_remove(q, m);
		msg_activate(q, m);
	}
}

static void
queue_run_soon(struct queue *q)
{
	event_active(q->run_ev, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------- bounces */

static void
qdsn_free(struct queue *q, struct qdsn *d)
{
	if (d->prev != NULL)
		d->prev->next = d->next;
	else
		q->dsns = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	for (int k = 0; k < 2; k++) {
		free(d->br[k]);
		free(d->idx[k]);
	}
	free(d);
}

/* On the pool: write and commit each wanted DSN. */
static void
dsn_work_cb(void *arg)
{
	struct qdsn *d = arg;
	for (int k = 0; k < 2; k++) {
		const char *err;
		if (!d->want[k])
			continue;
		struct spool_msg *msg = bounce_write(&d->bp[k], d->ids[k], &err);
		if (msg == NULL) {
			log_err("id=%s cannot write a DSN: %s", d->bp[k].queue_id, err);
			d->result[k] = -1;
			continue;
		}
		d->result[k] = spool_msg_commit(msg);
		spool_msg_free(msg);
	}
}

static void
dsn_done_cb(void *arg)
{
	struct qdsn *d = arg;
	struct queue *q = d->q;
	struct qmsg *m = d->m;

	if (d->want[0]) {
		if (d->result[0] == 0) {
			q->n_dsn++;
			log_info("id=%s bounce=%s to=<%s> nrcpt=%zu", m->id, d->ids[0], m->sender,
			         d->bp[0].n_rcpts);
			for (size_t i = 0; i < d->bp[0].n_rcpts; i++)
				m->rcpts[d->idx[0][i]].notify = false;
		} else {
			/* Without its DSN a failure must not vanish: try the
			 * recipient again later; it will fail again and bounce. */
			for (size_t i = 0; i < d->bp[0].n_rcpts; i++) {
				struct qrcpt *r = &m->rcpts[d->idx[0][i]];
				r->notify = false;
				r->status = RCPT_DEFERRED;
			}
		}
	}
	if (d->want[1]) {
		if (d->result[1] == 0) {
			q->n_dsn++;
			m->warned = true;
			log_info("id=%s delay_warning=%s to=<%s> nrcpt=%zu", m->id, d->ids[1],
			         m->sender, d->bp[1].n_rcpts);
		}
	}
	qdsn_free(q, d);
	msg_settle(q, m);
}

static unsigned
retry_delay(const struct queue_config *qc, unsigned attempts)
{
	uint64_t d = qc->retry_min;
	for (unsigned i = 1; i < attempts && d < qc->retry_max; i++)
		d *= 2;
	return d > qc->retry_max ? qc->retry_max : (unsigned)d;
}

/* Every job of this attempt is back. */
static void
msg_attempt_done(struct queue *q, struct qmsg *m)
{
	const struct queue_config *qc = q->qc;
	int64_t now = now_s();
	size_t n_fail = 0, n_deferred = 0;

	q->n_active--;
	queue_run_soon(q);
	m->where = QM_SETTLING;
	if (m->delete_requested) {
		msg_remove(q, m);
		return;
	}
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_DEFERRED || m->rcpts[i].status == RCPT_PENDING)
			n_deferred++;
	/* Out of time: what is still deferred fails now (with its last reason). */
	if (n_deferred > 0 && now - m->arrival >= (int64_t)qc->max_lifetime) {
		for (size_t i = 0; i < m->n_rcpts; i++) {
			struct qrcpt *r = &m->rcpts[i];
			if (r->status != RCPT_DEFERRED && r->status != RCPT_PENDING)
				continue;
			r->status = RCPT_BOUNCED;
			r->notify = true;
			if (r->dsn[0] != '4')
				snprintf(r->dsn, sizeof(r->dsn), "4.4.7");
			char reason[700];
			snprintf(reason, sizeof(reason),
			         "message expired after %u s in the queue: %s", qc->max_lifetime,
			         r->reply ? r->reply : "never tried");
			set_str(&r->reply, reason);
			r->remote = false;
			q->n_expired++;
			log_delivery(q, m, r, "expired");
		}
		n_deferred = 0;
	}
	for (size_t i = 0; i < m->n_rcpts; i++)
		n_fail += m->rcpts[i].notify;

	bool null_sender = m->sender[0] == '\0';
	bool warn = !null_sender && n_deferred > 0 && qc->delay_warning > 0 && !m->warned &&
	            now - m->arrival >= (int64_t)qc->delay_warning;
	if (n_fail > 0 && null_sender) {
		/* RFC 3464 2.2 / RFC 5321 6.1: never a DSN about a DSN. */
		log_info("id=%s bounce not sent: the sender is the null sender (nrcpt=%zu)", m->id,
		         n_fail);
		for (size_t i = 0; i < m->n_rcpts; i++)
			m->rcpts[i].notify = false;
		n_fail = 0;
	}
	if (n_fail == 0 && !warn) {
		msg_settle(q, m);
		return;
	}
	struct qdsn *d = xcalloc(1, sizeof(*d));
	d->q = q;
	d->m = m;
	for (int k = 0; k < 2; k++) {
		bool want = k == 0 ? n_fail > 0 : warn;
		if (!want)
			continue;
		d->want[k] = true;
		d->br[k] = xcalloc(m->n_rcpts, sizeof(*d->br[k]));
		d->idx[k] = xcalloc(m->n_rcpts, sizeof(size_t));
		size_t n = 0;
		for (size_t i = 0; i < m->n_rcpts; i++) {
			struct qrcpt *r = &m->rcpts[i];
			bool take =
			        k == 0 ? r->notify
			               : (r->status == RCPT_DEFERRED || r->status == RCPT_PENDING);
			if (!take)
				continue;
			d->idx[k][n] = i;
			d->br[k][n++] = (struct bounce_rcpt){
			        .addr = r->addr,
			        .status = r->dsn[0] ? r->dsn : (k == 0 ? "5.0.0" : "4.0.0"),
			        .reason = r->reply ? r->reply : "no reason recorded",
			        .relay = r->relay[0] ? r->relay : "none",
			        .remote = r->remote,
			};
		}
		d->bp[k] = (struct bounce_params){
		        .spool_dir = q->spool,
		        .hostname = q->cfg->hostname,
		        .queue_id = m->id,
		        .arrival = m->arrival,
		        .sender = m->sender,
		        .delayed = k == 1,
		        .retry_until = m->arrival + qc->max_lifetime,
		        .rcpts = d->br[k],
		        .n_rcpts = n,
		        .orig_path = m->path,
		        .body_offset = m->body_offset,
		};
	}
	d->next = q->dsns;
	if (q->dsns != NULL)
		q->dsns->prev = d;
	q->dsns = d;
	threadpool_submit(q->pool, dsn_work_cb, dsn_done_cb, d);
}

/* After the DSNs: remove the message, or put it back to wait. */
static void
msg_settle(struct queue *q, struct qmsg *m)
{
	bool done = true;

	if (m->delete_requested) {
		msg_remove(q, m);
		return;
	}
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_DEFERRED || m->rcpts[i].status == RCPT_PENDING)
			done = false;
	if (done) {
		msg_remove(q, m);
		return;
	}
	m->attempts++;
	m->next_attempt = now_s() + retry_delay(q->qc, m->attempts);
	msg_write_state(q, m);
	if (m->hold) {
		m->where = QM_HOLD;
		q->n_hold++;
	} else {
		heap_push(q, m);
	}
}

static void
msg_remove_done(void *arg)
{
	struct qmsg *m = arg;
	struct queue *q = m->q;
	log_info("id=%s removed", m->id);
	msg_table_del(q, m);
	msg_free(m);
}

static void
msg_remove(struct queue *q, struct qmsg *m)
{
	msg_unqueue(q, m);
	m->where = QM_REMOVING;
	queue_store_remove(q->store, m->id, m->has_state, msg_remove_done, m);
}

/* ---------------------------------------------------------------- control */

static void
ctl_msg_line(struct queue *q, struct evbuffer *out, const struct qmsg *m)
{
	char arrival[32], next[32];
	size_t pending = 0;
	iso_time(m->arrival, arrival, sizeof(arrival));
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_PENDING || m->rcpts[i].status == RCPT_DEFERRED)
			pending++;
	if (m->where == QM_WAITING)
		iso_time(m->next_attempt, next, sizeof(next));
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
	struct qmsg **all = xcalloc(q->n_msgs ? q->n_msgs : 1, sizeof(*all));
	size_t n = 0;
	for (size_t b = 0; b < q->n_buckets; b++)
		for (struct qmsg *m = q->buckets[b]; m != NULL; m = m->hnext)
			if (n < q->n_msgs)
				all[n++] = m;
	qsort(all, n, sizeof(*all), ctl_cmp);
	evbuffer_add_printf(out, "ok messages=%zu\n", n);
	for (size_t i = 0; i < n; i++)
		ctl_msg_line(q, out, all[i]);
	free(all);
}

static void
ctl_show(struct queue *q, struct evbuffer *out, struct qmsg *m)
{
	char reply[700];
	evbuffer_add_printf(out, "ok\n");
	ctl_msg_line(q, out, m);
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
		if (n < 2 || (m = msg_find(q, arg)) == NULL || m->where == QM_REMOVING) {
			evbuffer_add_printf(out, "error no such message: %s\n", n < 2 ? "" : arg);
			return;
		}
	}
	if (strcmp(cmd, "list") == 0) {
		ctl_list(q, out);
	} else if (strcmp(cmd, "show") == 0) {
		ctl_show(q, out, m);
	} else if (strcmp(cmd, "flush") == 0) {
		size_t k = 0;
		delivery_forget_failures(q->dl);
		while (q->n_heap > 0) {
			struct qmsg *x = q->heap[0];
			heap_remove(q, x);
			x->next_attempt = 0;
			ready_push(q, x);
			k++;
		}
		log_info("queue flush messages=%zu", k);
		evbuffer_add_printf(out, "ok flushed=%zu\n", k);
	} else if (strcmp(cmd, "delete") == 0) {
		log_info("id=%s delete requested by the admin status=%s", m->id,
		         where_names[m->where]);
		if (m->where == QM_ACTIVE || m->where == QM_SETTLING) {
			m->delete_requested = true;
		} else {
			msg_remove(q, m);
		}
		evbuffer_add_printf(out, "ok deleted %s\n", m->id);
	} else if (strcmp(cmd, "hold") == 0) {
		if (m->where == QM_BROKEN) {
			evbuffer_add_printf(out, "error %s is unreadable\n", m->id);
			return;
		}
		if (!m->hold) {
			m->hold = true;
			if (m->where == QM_READY || m->where == QM_WAITING) {
				msg_unqueue(q, m);
				m->where = QM_HOLD;
				q->n_hold++;
				msg_write_state(q, m);
			}
			log_info("id=%s hold", m->id);
		}
		evbuffer_add_printf(out, "ok held %s\n", m->id);
	} else if (strcmp(cmd, "release") == 0) {
		if (m->hold) {
			m->hold = false;
			if (m->where == QM_HOLD) {
				msg_unqueue(q, m);
				m->next_attempt = 0;
				msg_write_state(q, m);
				ready_push(q, m);
			}
			log_info("id=%s release", m->id);
		}
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

static int
ctl_listen(struct queue *q)
{
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

/* ---------------------------------------------------------------- process */

static void
stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	unsigned ext, in, waiting;
	unsigned long sum = q->n_sent + q->n_deferred + q->n_bounced + q->n_received + q->n_msgs;

	if (sum == q->last_stats_sum)
		return;
	q->last_stats_sum = sum;
	delivery_counts(q->dl, &ext, &in, &waiting);
	log_info("queue stats size=%zu ready=%zu active=%zu deferred=%zu hold=%zu "
	         "connections_external=%u connections_internal=%u received=%lu sent=%lu "
	         "deferred_total=%lu bounced=%lu expired=%lu dsn=%lu",
	         q->n_msgs, q->n_ready, q->n_active, q->n_heap, q->n_hold, ext, in, q->n_received,
	         q->n_sent, q->n_deferred, q->n_bounced, q->n_expired, q->n_dsn);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct queue *q = arg;
	if (sig == SIGHUP) {
		char *errors = NULL;
		struct config *cfg = config_load(q->cfg->path, &errors);
		struct queue_config *qc = cfg != NULL ? queue_config_load(cfg, &errors) : NULL;
		if (qc == NULL || q->n_reloads == AR_NELEM(q->reload_qc)) {
			log_err("reload: keeping the running queue config: %s",
			        errors ? errors : "too many reloads");
			free(errors);
			config_free(cfg);
			return;
		}
		/* Jobs out still point into the old config: keep it. */
		q->reload_cfg[q->n_reloads] = cfg;
		q->reload_qc[q->n_reloads++] = qc;
		q->qc = qc;
		delivery_set_config(q->dl, qc);
		log_info("reload: queue config reloaded routes=%zu", qc->n_routes);
		return;
	}
	log_info("queue stopping (signal %d) messages=%zu active=%zu", (int)sig, q->n_msgs,
	         q->n_active);
	stats_cb(-1, 0, q);
	event_base_loopexit(q->base, NULL);
}

int
queue_main(const struct queue_params *p)
{
	struct queue qq = {.p = p, .cfg = p->cfg, .qc = p->qc}, *q = &qq;
	const char *err;
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	q->spool = xstrdup(p->spool_dir);
	q->helo = xstrdup(p->qc->helo_name ? p->qc->helo_name : p->cfg->hostname);
	q->base = event_base_new();
	if (q->base == NULL)
		fatal("event_base_new failed");
	log_batch(q->base);
	q->n_buckets = 1024;
	q->buckets = xcalloc(q->n_buckets, sizeof(*q->buckets));
	q->dns = dns_new(q->base, p->qc->resolver, &err);
	if (q->dns == NULL)
		fatal("queue: dns: %s", err);
	struct delivery_params dp = {
	        .base = q->base,
	        .qc = p->qc,
	        .dns = q->dns,
	        .helo_name = q->helo,
	};
	q->dl = delivery_new(&dp, &err);
	if (q->dl == NULL)
		fatal("queue: delivery: %s", err);
	q->store = queue_store_new(q->base, q->spool);
	q->pool = threadpool_new(q->base, QUEUE_POOL_THREADS);
	q->heap_timer = evtimer_new(q->base, heap_timer_cb, q);
	q->run_ev = event_new(q->base, -1, 0, run_cb, q);
	q->rescan_ev = event_new(q->base, -1, EV_PERSIST, rescan_cb, q);
	q->stats_ev = event_new(q->base, -1, EV_PERSIST, stats_cb, q);
	event_add(q->rescan_ev, &(struct timeval){QUEUE_RESCAN_SECONDS, 0});
	event_add(q->stats_ev, &(struct timeval){QUEUE_STATS_SECONDS, 0});
	q->ev_term = evsignal_new(q->base, SIGTERM, signal_cb, q);
	q->ev_int = evsignal_new(q->base, SIGINT, signal_cb, q);
	q->ev_hup = evsignal_new(q->base, SIGHUP, signal_cb, q);
	event_add(q->ev_term, NULL);
	event_add(q->ev_int, NULL);
	event_add(q->ev_hup, NULL);

	/* Watch first, then scan: a message arriving in between is seen by
	 * both, and the table makes the second sighting a no-op. */
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/incoming", q->spool);
	q->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (q->inotify_fd < 0 ||
	    inotify_add_watch(q->inotify_fd, dir, IN_MOVED_TO | IN_CREATE) < 0) {
		log_warn("inotify on %s: %s; new messages are found by the rescan every %d s", dir,
		         strerror(errno), QUEUE_RESCAN_SECONDS);
	} else {
		q->inotify_ev =
		        event_new(q->base, q->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, q);
		event_add(q->inotify_ev, NULL);
	}
	unsigned orphans = queue_store_remove_orphans(q->spool);
	queue_scan(q, true);
	log_info("queue ready messages=%zu ready=%zu deferred=%zu hold=%zu orphan_states=%u "
	         "resolver=%s smarthost=%s routes=%zu group_commit=%s",
	         q->n_msgs, q->n_ready, q->n_heap, q->n_hold, orphans,
	         p->qc->resolver ? p->qc->resolver : "system",
	         p->qc->smarthost.host ? p->qc->smarthost.host : "none", p->qc->n_routes,
	         p->qc->group_commit ? "yes" : "no");
	if (ctl_listen(q) != 0) {
		status = 1;
	} else {
		readiness_report();
		event_base_dispatch(q->base);
	}
	log_batch(NULL);

	/* Shut down: the disk is always consistent, so just let go. */
	delivery_free(q->dl);
	dns_free(q->dns);
	threadpool_free(q->pool);
	queue_store_free(q->store);
	while (q->jobs != NULL)
		qjob_free(q, q->jobs);
	while (q->dsns != NULL)
		qdsn_free(q, q->dsns);
	for (size_t b = 0; b < q->n_buckets; b++) {
		for (struct qmsg *m = q->buckets[b], *next; m != NULL; m = next) {
			next = m->hnext;
			msg_free(m);
		}
	}
	free(q->buckets);
	free(q->heap);
	if (q->ctl != NULL) {
		evconnlistener_free(q->ctl);
		unlink(q->ctl_path);
	}
	if (q->inotify_ev != NULL)
		event_free(q->inotify_ev);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	event_free(q->heap_timer);
	event_free(q->run_ev);
	event_free(q->rescan_ev);
	event_free(q->stats_ev);
	event_free(q->ev_term);
	event_free(q->ev_int);
	event_free(q->ev_hup);
	event_base_free(q->base);
	for (size_t i = 0; i < q->n_reloads; i++) {
		queue_config_free(q->reload_qc[i]);
		config_free(q->reload_cfg[i]);
	}
	free(q->spool);
	free(q->helo);
	return status;
}
