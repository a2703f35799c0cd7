/* SPDX-License-Identifier: ISC */
/*
 * queue_sched.c - the queue's scheduler (queue_internal.h): the message
 * table, the READY list, the retry heap, activation and what each attempt
 * leaves behind.
 *
 * A loaded message is READY (a FIFO) or WAITING (a min-heap on its next
 * attempt) or HOLD. Up to QUEUE_ACTIVE_LIMIT READY messages are ACTIVE at
 * once: their pending recipients are grouped by destination (route.h) into
 * jobs of at most max_recipients_per_transaction, handed to the SMTP agent
 * (delivery.h) or written to a Maildir on the pool. When every job is back
 * queue_bounce.c sends what DSNs are due and hands the message back to
 * queue_sched_settle(): removed when no recipient is left, else WAITING
 * (exponential back-off from retry_min to retry_max) or HOLD, with state/ID
 * rewritten first.
 *
 * A message stays in the table until its files are gone, so a rescan can
 * never load it twice.
 *
 * Durability: a next hop's answer reaches the queue in qjob_done(), which
 * appends each delivered recipient to the delivery journal at once
 * (queue_journal.h); the connection that read it carries no other message
 * until that record is durable (delivery.h). The message reaches the rest
 * of the disk in queue_sched_settle() (state/ID rewritten, or the files
 * removed), once every job of the attempt is back. A crash in between
 * repeats nothing the journal holds: the restarted queue applies it when it
 * loads the message (queue_scan.c). queue_sched_checkpoint() retires old
 * journal segments once their facts are durable elsewhere.
 */
#include "queue_internal.h"
#include "delivery.h"
#include "maildir.h"
#include "queue_journal.h"
#include "queue_config.h"
#include "route.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"
#include "../metrics/metric.h"
#include "../spool/spool_gauge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

/* Messages being delivered at once; the rest wait in READY. */
#define QUEUE_ACTIVE_LIMIT 10000

/* One delivery job: a message's recipients for one destination. It holds a
 * reference on the config generation its route decision points into. */
struct qjob {
	struct delivery_job dj;
	struct queue *q;
	struct qmsg *m;
	struct queue_gen *gen;
	struct route_decision rd;
	struct delivery_rcpt *rcpts;
	LIST_ENTRY(qjob) entry; /* on q->jobs */
};

static void sched_run_soon(struct queue *q);

/* ---------------------------------------------------------------- table */

static size_t
msg_hash(const char *id, size_t n)
{
	size_t h = 5381;
	for (; *id != '\0'; id++)
		h = h * 33 + (unsigned char)*id;
	return h & (n - 1);
}

struct qmsg *
queue_sched_find(struct queue *q, const char *id)
{
	for (struct qmsg *m = q->buckets[msg_hash(id, q->n_buckets)]; m != NULL; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static void
update_gauge(struct queue *q)
{
	unsigned max = queue_qc(q)->max_queue_size;
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

void
queue_sched_add(struct queue *q, struct qmsg *m)
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
	update_gauge(q);
}

static void
table_del(struct queue *q, struct qmsg *m)
{
	for (struct qmsg **p = &q->buckets[msg_hash(m->id, q->n_buckets)]; *p != NULL;
	     p = &(*p)->hnext) {
		if (*p == m) {
			*p = m->hnext;
			q->n_msgs--;
			break;
		}
	}
	update_gauge(q);
}

struct qmsg **
queue_sched_all(struct queue *q, size_t *n_r)
{
	struct qmsg **all = xcalloc(q->n_msgs ? q->n_msgs : 1, sizeof(*all));
	size_t n = 0;
	for (size_t b = 0; b < q->n_buckets; b++)
		for (struct qmsg *m = q->buckets[b]; m != NULL; m = m->hnext)
			if (n < q->n_msgs)
				all[n++] = m;
	*n_r = n;
	return all;
}

void
queue_sched_msg_free(struct qmsg *m)
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
	TAILQ_INSERT_TAIL(&q->ready, m, ready_entry);
	q->n_ready++;
	sched_run_soon(q);
}

static void
ready_remove(struct queue *q, struct qmsg *m)
{
	TAILQ_REMOVE(&q->ready, m, ready_entry);
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
	int64_t wait = q->heap[0]->next_attempt - queue_now();
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
	int64_t now = queue_now();
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

static void
hold_push(struct queue *q, struct qmsg *m)
{
	m->where = QM_HOLD;
	q->n_hold++;
}

/* ---------------------------------------------------------------- state */

/* Rewrite state/<id> from m (asynchronous, queue_store.h). */
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
	/* Its deliveries are in this write, queued on the store before any
	 * later checkpoint's barrier. */
	m->journal_only = false;
	queue_store_write_state(q->store, m->id, text);
}

/* Recipients still to deliver (pending or deferred). */
static size_t
msg_n_left(const struct qmsg *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_PENDING || m->rcpts[i].status == RCPT_DEFERRED)
			n++;
	return n;
}

void
queue_sched_place(struct queue *q, struct qmsg *m)
{
	if (msg_n_left(m) == 0)
		/* Finished before a crash, not yet removed. */
		queue_sched_remove(q, m);
	else if (m->hold)
		hold_push(q, m);
	else if (m->next_attempt > queue_now())
		heap_push(q, m);
	else
		ready_push(q, m);
}

/* ---------------------------------------------------------------- admin */

bool
queue_sched_flush_msg(struct queue *q, struct qmsg *m)
{
	if (m->where != QM_WAITING)
		return false;
	heap_remove(q, m);
	m->next_attempt = 0;
	ready_push(q, m);
	return true;
}

size_t
queue_sched_flush(struct queue *q)
{
	size_t k = 0;
	while (q->n_heap > 0) {
		struct qmsg *x = q->heap[0];
		heap_remove(q, x);
		x->next_attempt = 0;
		ready_push(q, x);
		k++;
	}
	return k;
}

void
queue_sched_hold(struct queue *q, struct qmsg *m)
{
	if (m->hold)
		return;
	m->hold = true;
	/* An active message is held once its jobs are back (settle). */
	if (m->where == QM_READY || m->where == QM_WAITING) {
		msg_unqueue(q, m);
		hold_push(q, m);
		msg_write_state(q, m);
	}
	log_info("id=%s hold", m->id);
}

void
queue_sched_release(struct queue *q, struct qmsg *m)
{
	if (!m->hold)
		return;
	m->hold = false;
	if (m->where == QM_HOLD) {
		msg_unqueue(q, m);
		m->next_attempt = 0;
		msg_write_state(q, m);
		ready_push(q, m);
	}
	log_info("id=%s release", m->id);
}

/* ---------------------------------------------------------------- delivery */

static double
now_f(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void
queue_sched_log_rcpt(const struct qmsg *m, const struct qrcpt *r, const char *status)
{
	char reply[700], addr[600], relay[LOG_VALUE_MAX];
	/* The next hop's name (from DNS), the address and the reply text are
	 * not ours: escaped, quoted and last. */
	log_info("id=%s status=%s dsn=%s delay=%.2f attempts=%u relay=\"%s\" to=\"<%s>\" "
	         "reply=\"%s\"",
	         m->id, status, r->dsn[0] ? r->dsn : "-", now_f() - (double)m->arrival,
	         m->attempts + 1, log_escape_str(r->relay, relay, sizeof(relay)),
	         log_escape_str(r->addr, addr, sizeof(addr)),
	         log_escape_str(r->reply ? r->reply : "", reply, sizeof(reply)));
	metrics_inc(M_DELIVERIES, metric_delivery_status(status));
	metrics_observe(M_DELIVERY_DELAY, (now_f() - (double)m->arrival) * 1000,
	                metric_delivery_status(status));
}

static void msg_attempt_done(struct queue *q, struct qmsg *m);

static void
qjob_free(struct queue *q, struct qjob *j)
{
	LIST_REMOVE(j, entry);
	queue_gen_unref(j->gen);
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
		queue_set_str(&r->reply, dr->reply);
		snprintf(r->dsn, sizeof(r->dsn), "%s", dr->dsn);
		snprintf(r->relay, sizeof(r->relay), "%s", dr->relay);
		r->remote = dr->remote;
		switch (r->status) {
		case RCPT_SENT:
			/* First of all: on its way to disk before the
			 * connection takes another message (delivery.c). */
			if (q->journal != NULL) {
				queue_journal_sent(q->journal, m->id, dr->index);
				m->journal_only = true;
			}
			q->n_sent++;
			queue_sched_log_rcpt(m, r, "sent");
			break;
		case RCPT_BOUNCED:
			q->n_bounced++;
			r->notify = true;
			queue_sched_log_rcpt(m, r, "bounced");
			break;
		default:
			q->n_deferred++;
			queue_sched_log_rcpt(m, r, "deferred");
			break;
		}
	}
	qjob_free(q, j);
	if (--m->jobs == 0)
		msg_attempt_done(q, m);
	if (q->journal != NULL && queue_journal_wants_rotation(q->journal))
		queue_sched_checkpoint(q, true);
}

/* On the pool: the job's recipients into the route's Maildir. */
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
		                    queue_gen_config(j->gen)->hostname, dj->path, dj->body_offset,
		                    err, sizeof(err), &permanent) == 0) {
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

/* Send out one job for n recipients of m (their indexes in idx) to rd. */
static void
job_submit(struct queue *q, struct qmsg *m, const struct route_decision *rd, const size_t *idx,
           size_t n)
{
	struct qjob *j = xcalloc(1, sizeof(*j));
	j->q = q;
	j->m = m;
	j->gen = queue_gen_ref(q->gen);
	j->rd = *rd;
	j->rcpts = xcalloc(n, sizeof(*j->rcpts));
	for (size_t k = 0; k < n; k++) {
		j->rcpts[k].index = idx[k];
		j->rcpts[k].addr = m->rcpts[idx[k]].addr;
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
	LIST_INSERT_HEAD(&q->jobs, j, entry);
	m->jobs++;
	if (j->rd.type == ROUTE_MAILDIR)
		threadpool_submit(q->pool, maildir_work_cb, maildir_done_cb, j);
	else
		delivery_submit(q->dl, &j->rd, &j->dj);
}

static void
msg_activate(struct queue *q, struct qmsg *m)
{
	const struct queue_config *qc = queue_qc(q);
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
		route_decide(qc, r->domain, &rd);
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
	unsigned max = qc->max_recipients_per_transaction;
	for (size_t g = 0; g < n_groups; g++) {
		/* A message with more recipients than one transaction may take
		 * is split (RFC 5321 4.5.3.1.8 allows servers 100). */
		for (size_t start = 0; start < groups[g].n; start += max) {
			size_t n = groups[g].n - start < max ? groups[g].n - start : max;
			job_submit(q, m, &groups[g].rd, groups[g].idx + start, n);
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
	struct qmsg *m;
	/* Stopping (queue.c): what is READY stays for the next start. */
	if (q->stopping)
		return;
	while ((m = TAILQ_FIRST(&q->ready)) != NULL && q->n_active < QUEUE_ACTIVE_LIMIT) {
		ready_remove(q, m);
		msg_activate(q, m);
	}
}

static void
sched_run_soon(struct queue *q)
{
	event_active(q->run_ev, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------- after */

/* Every job of this attempt is back. */
static void
msg_attempt_done(struct queue *q, struct qmsg *m)
{
	q->n_active--;
	sched_run_soon(q);
	m->where = QM_SETTLING;
	if (m->delete_requested) {
		queue_sched_remove(q, m);
		return;
	}
	queue_bounce_attempt_done(q, m);
}

static unsigned
retry_delay(const struct queue_config *qc, unsigned attempts)
{
	uint64_t d = qc->retry_min;
	for (unsigned i = 1; i < attempts && d < qc->retry_max; i++)
		d *= 2;
	return d > qc->retry_max ? qc->retry_max : (unsigned)d;
}

void
queue_sched_settle(struct queue *q, struct qmsg *m)
{
	if (m->delete_requested || msg_n_left(m) == 0) {
		queue_sched_remove(q, m);
		return;
	}
	m->attempts++;
	m->next_attempt = queue_now() + retry_delay(queue_qc(q), m->attempts);
	msg_write_state(q, m);
	if (m->hold)
		hold_push(q, m);
	else
		heap_push(q, m);
}

static void
msg_remove_done(void *arg)
{
	struct qmsg *m = arg;
	struct queue *q = m->q;
	log_info("id=%s removed", m->id);
	table_del(q, m);
	queue_sched_msg_free(m);
}

void
queue_sched_remove(struct queue *q, struct qmsg *m)
{
	msg_unqueue(q, m);
	m->where = QM_REMOVING;
	/* The removal is queued before any later checkpoint's barrier. */
	m->journal_only = false;
	queue_store_remove(q->store, m->id, m->has_state, msg_remove_done, m);
}

/* ---------------------------------------------------------------- journal */

/* The checkpoint is over once the store's barrier made every earlier state
 * write and removal durable and the records appended again are durable. */
static void
checkpoint_try_finish(struct queue *q)
{
	if (!q->checkpointing || !q->checkpoint_barrier_done ||
	    queue_journal_durable(q->journal) < q->checkpoint_seq)
		return;
	queue_journal_retire(q->journal, q->checkpoint_segment);
	q->checkpointing = false;
	log_debug("journal checkpoint done: segments before %016llx retired",
	          (unsigned long long)q->checkpoint_segment);
}

static void
checkpoint_barrier_cb(void *arg)
{
	struct queue *q = arg;
	q->checkpoint_barrier_done = true;
	checkpoint_try_finish(q);
}

void
queue_sched_checkpoint(struct queue *q, bool rotate)
{
	size_t again = 0;

	if (q->journal == NULL || q->checkpointing)
		return;
	q->checkpointing = true;
	q->checkpoint_barrier_done = false;
	q->checkpoint_segment =
	        rotate ? queue_journal_rotate(q->journal) : queue_journal_segment(q->journal);
	/* What only the old segments know goes into the new one. Every other
	 * delivery is in a state write or a removal already queued on the
	 * store, which runs them in order: the barrier below comes after. */
	for (size_t b = 0; b < q->n_buckets; b++) {
		for (struct qmsg *m = q->buckets[b]; m != NULL; m = m->hnext) {
			if (!m->journal_only)
				continue;
			for (size_t i = 0; i < m->n_rcpts; i++) {
				if (m->rcpts[i].status == RCPT_SENT) {
					queue_journal_sent(q->journal, m->id, i);
					again++;
				}
			}
		}
	}
	q->checkpoint_seq = queue_journal_appended(q->journal);
	log_debug("journal checkpoint segment=%016llx records_again=%zu",
	          (unsigned long long)q->checkpoint_segment, again);
	queue_store_barrier(q->store, checkpoint_barrier_cb, q);
}

void
queue_sched_journal_synced(struct queue *q)
{
	delivery_journal_synced(q->dl);
	checkpoint_try_finish(q);
}

/* ---------------------------------------------------------------- life */

void
queue_sched_init(struct queue *q)
{
	TAILQ_INIT(&q->ready);
	LIST_INIT(&q->jobs);
	q->n_buckets = 1024;
	q->buckets = xcalloc(q->n_buckets, sizeof(*q->buckets));
	q->heap_timer = evtimer_new(q->base, heap_timer_cb, q);
	q->run_ev = event_new(q->base, -1, 0, run_cb, q);
}

void
queue_sched_fini(struct queue *q)
{
	while (!LIST_EMPTY(&q->jobs))
		qjob_free(q, LIST_FIRST(&q->jobs));
	for (size_t b = 0; b < q->n_buckets; b++) {
		for (struct qmsg *m = q->buckets[b], *next; m != NULL; m = next) {
			next = m->hnext;
			queue_sched_msg_free(m);
		}
	}
	free(q->buckets);
	free(q->heap);
	event_free(q->heap_timer);
	event_free(q->run_ev);
}
