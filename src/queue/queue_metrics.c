/* SPDX-License-Identifier: ISC */
/*
 * queue_metrics.c - the queue's gauges for the metrics endpoint: how many
 * messages wait in each state, and how many of them arrived more than 5
 * minutes, an hour, 4 hours, a day, 5 days ago (metric.h's ages), the
 * question Postfix's qshape answers.
 *
 * The states change in many places (queue_sched.c); rather than a gauge
 * update at each, a timer walks the message table every
 * QUEUE_METRICS_SECONDS, when metrics are on: the endpoint is scraped every
 * 15 s or so, and a walk of 150000 messages takes about a millisecond.
 * Deliveries (counters) are bumped where they are logged instead
 * (queue_sched_log_rcpt()).
 */
#include "queue_internal.h"
#include "../lib/log.h"
#include "../metrics/metric.h"

#include <event2/event.h>

#define QUEUE_METRICS_SECONDS 2

static int
queue_metrics_state(enum qm_where where)
{
	switch (where) {
	case QM_READY:
		return MQ_READY;
	case QM_WAITING:
		return MQ_DEFERRED;
	case QM_ACTIVE:
	case QM_SETTLING:
		return MQ_ACTIVE;
	case QM_HOLD:
		return MQ_HOLD;
	case QM_BROKEN:
		return MQ_BROKEN;
	default:
		return -1; /* not yet placed, or being removed */
	}
}

void
queue_metrics_update(struct queue *q)
{
	unsigned count[MQ_COUNT] = {0}, older[MQ_COUNT][METRIC_N_AGES] = {{0}};
	int64_t now = queue_now();

	for (size_t b = 0; b < q->n_buckets; b++) {
		for (const struct qmsg *m = q->buckets[b]; m != NULL; m = m->hnext) {
			int st = queue_metrics_state(m->where);
			if (st < 0)
				continue;
			count[st]++;
			for (unsigned a = 0; a < METRIC_N_AGES; a++)
				older[st][a] += now - m->arrival > (int64_t)metric_ages[a];
		}
	}
	for (unsigned st = 0; st < MQ_COUNT; st++) {
		metrics_set(M_QUEUE_MESSAGES, count[st], st);
		for (unsigned a = 0; a < METRIC_N_AGES; a++)
			metrics_set(M_QUEUE_OLDER_THAN, older[st][a], st, a);
	}
}

static void
queue_metrics_cb(evutil_socket_t fd, short what, void *arg)
{
	queue_metrics_update(arg);
}

void
queue_metrics_start(struct queue *q)
{
	if (!metrics_enabled())
		return;
	q->metrics_ev = event_new(q->base, -1, EV_PERSIST, queue_metrics_cb, q);
	if (q->metrics_ev == NULL ||
	    event_add(q->metrics_ev, &(struct timeval){QUEUE_METRICS_SECONDS, 0}) < 0)
		fatal("queue: cannot install the metrics timer");
	queue_metrics_update(q);
}

void
queue_metrics_stop(struct queue *q)
{
	if (q->metrics_ev != NULL)
		event_free(q->metrics_ev);
	q->metrics_ev = NULL;
}
