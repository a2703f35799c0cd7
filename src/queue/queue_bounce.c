/* SPDX-License-Identifier: ISC */
/*
 * queue_bounce.c - what the queue owes a message's sender after an attempt
 * (queue_internal.h): recipients past max_lifetime fail with their last
 * reason, failures get a DSN, and a message deferred for delay_warning gets
 * one delay warning. bounce.c formats and writes the DSN text; this part
 * decides what to send and keeps the message's state in step.
 *
 * Each DSN is written and fsynced into the spool on the pool, as a message
 * of its own, before anything about the original changes: a crash before
 * that leaves the failure to be found again, never lost. A DSN that cannot
 * be written puts its recipients back to deferred, so they fail and bounce
 * again later. Never a DSN about a DSN (RFC 3464 2.2, RFC 5321 6.1).
 */
#include "queue_internal.h"
#include "bounce.h"
#include "queue_config.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"

#include <stdio.h>
#include <stdlib.h>

enum { DSN_FAILURE, DSN_DELAY, DSN_KINDS };

/* DSNs for one message, written on the pool. It holds a reference on the
 * config generation its hostname comes from. */
struct qdsn {
	struct queue *q;
	struct qmsg *m;
	struct queue_gen *gen;
	struct bounce_params bp[DSN_KINDS];
	struct bounce_rcpt *br[DSN_KINDS];
	size_t *idx[DSN_KINDS];
	bool want[DSN_KINDS];
	int result[DSN_KINDS];
	char ids[DSN_KINDS][32];
	LIST_ENTRY(qdsn) entry; /* on q->dsns */
};

static void
qdsn_free(struct queue *q, struct qdsn *d)
{
	LIST_REMOVE(d, entry);
	for (int k = 0; k < DSN_KINDS; k++) {
		free(d->br[k]);
		free(d->idx[k]);
	}
	queue_gen_unref(d->gen);
	free(d);
}

/* On the pool: write and commit each wanted DSN. */
static void
dsn_work_cb(void *arg)
{
	struct qdsn *d = arg;
	for (int k = 0; k < DSN_KINDS; k++) {
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

	if (d->want[DSN_FAILURE]) {
		if (d->result[DSN_FAILURE] == 0) {
			q->n_dsn++;
			char to[LOG_VALUE_MAX];
			log_info("id=%s bounce=%s nrcpt=%zu to=\"<%s>\"", m->id,
			         d->ids[DSN_FAILURE], d->bp[DSN_FAILURE].n_rcpts,
			         log_escape_str(m->sender, to, sizeof(to)));
			for (size_t i = 0; i < d->bp[DSN_FAILURE].n_rcpts; i++)
				m->rcpts[d->idx[DSN_FAILURE][i]].notify = false;
		} else {
			/* Without its DSN a failure must not vanish: try the
			 * recipient again later; it will fail again and bounce. */
			for (size_t i = 0; i < d->bp[DSN_FAILURE].n_rcpts; i++) {
				struct qrcpt *r = &m->rcpts[d->idx[DSN_FAILURE][i]];
				r->notify = false;
				r->status = RCPT_DEFERRED;
			}
		}
	}
	if (d->want[DSN_DELAY]) {
		if (d->result[DSN_DELAY] == 0) {
			q->n_dsn++;
			m->warned = true;
			char to[LOG_VALUE_MAX];
			log_info("id=%s delay_warning=%s nrcpt=%zu to=\"<%s>\"", m->id,
			         d->ids[DSN_DELAY], d->bp[DSN_DELAY].n_rcpts,
			         log_escape_str(m->sender, to, sizeof(to)));
		}
	}
	qdsn_free(q, d);
	queue_sched_settle(q, m);
}

/* Out of time: what is still deferred fails now (with its last reason). */
static void
expire(struct queue *q, struct qmsg *m, const struct queue_config *qc)
{
	for (size_t i = 0; i < m->n_rcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		if (r->status != RCPT_DEFERRED && r->status != RCPT_PENDING)
			continue;
		r->status = RCPT_BOUNCED;
		r->notify = true;
		if (r->dsn[0] != '4')
			snprintf(r->dsn, sizeof(r->dsn), "4.4.7");
		char reason[700];
		snprintf(reason, sizeof(reason), "message expired after %u s in the queue: %s",
		         qc->max_lifetime, r->reply ? r->reply : "never tried");
		queue_set_str(&r->reply, reason);
		r->remote = false;
		q->n_expired++;
		queue_sched_log_rcpt(m, r, "expired");
	}
}

/* The recipients of m that DSN kind k reports, into d. */
static void
dsn_prepare(struct qdsn *d, int k, const struct queue_config *qc)
{
	struct qmsg *m = d->m;
	size_t n = 0;

	d->want[k] = true;
	d->br[k] = xcalloc(m->n_rcpts, sizeof(*d->br[k]));
	d->idx[k] = xcalloc(m->n_rcpts, sizeof(size_t));
	for (size_t i = 0; i < m->n_rcpts; i++) {
		struct qrcpt *r = &m->rcpts[i];
		bool take = k == DSN_FAILURE
		                    ? r->notify
		                    : (r->status == RCPT_DEFERRED || r->status == RCPT_PENDING);
		if (!take)
			continue;
		d->idx[k][n] = i;
		d->br[k][n++] = (struct bounce_rcpt){
		        .addr = r->addr,
		        .status = r->dsn[0] ? r->dsn : (k == DSN_FAILURE ? "5.0.0" : "4.0.0"),
		        .reason = r->reply ? r->reply : "no reason recorded",
		        .relay = r->relay[0] ? r->relay : "none",
		        .remote = r->remote,
		};
	}
	d->bp[k] = (struct bounce_params){
	        .spool_dir = d->q->spool,
	        .hostname = queue_gen_config(d->gen)->hostname,
	        .queue_id = m->id,
	        .arrival = m->arrival,
	        .sender = m->sender,
	        .delayed = k == DSN_DELAY,
	        .retry_until = m->arrival + qc->max_lifetime,
	        .rcpts = d->br[k],
	        .n_rcpts = n,
	        .orig_path = m->path,
	        .body_offset = m->body_offset,
	};
}

void
queue_bounce_attempt_done(struct queue *q, struct qmsg *m)
{
	const struct queue_config *qc = queue_qc(q);
	int64_t now = queue_now();
	size_t n_fail = 0, n_deferred = 0;

	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].status == RCPT_DEFERRED || m->rcpts[i].status == RCPT_PENDING)
			n_deferred++;
	if (n_deferred > 0 && now - m->arrival >= (int64_t)qc->max_lifetime) {
		expire(q, m, qc);
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
		queue_sched_settle(q, m);
		return;
	}
	struct qdsn *d = xcalloc(1, sizeof(*d));
	d->q = q;
	d->m = m;
	d->gen = queue_gen_ref(q->gen);
	if (n_fail > 0)
		dsn_prepare(d, DSN_FAILURE, qc);
	if (warn)
		dsn_prepare(d, DSN_DELAY, qc);
	LIST_INSERT_HEAD(&q->dsns, d, entry);
	threadpool_submit(q->pool, dsn_work_cb, dsn_done_cb, d);
}

void
queue_bounce_fini(struct queue *q)
{
	while (!LIST_EMPTY(&q->dsns))
		qdsn_free(q, LIST_FIRST(&q->dsns));
}
