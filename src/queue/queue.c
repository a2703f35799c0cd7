/* SPDX-License-Identifier: ISC */
/*
 * queue.c - the queue process (queue.h): set-up, signals, reload and the
 * statistics line; the work is done by its parts (queue_internal.h lists
 * them).
 *
 * Life of a message:
 *   incoming/ID appears (inotify, or the periodic rescan, or the start-up
 *   scan: queue_scan.c) -> loaded: envelope, and state/ID if it was tried
 *   before -> READY (a FIFO) -> ACTIVE: its pending recipients are grouped by
 *   destination (route.h) into jobs of at most max_recipients_per_transaction
 *   and handed to the SMTP agent (delivery.h) or the Maildir writer
 *   (queue_sched.c) -> every job is back: recipients that failed for good
 *   get a DSN (queue_bounce.c, bounce.h), written and fsynced into the spool
 *   before anything else changes -> all recipients done: REMOVING (store
 *   unlinks incoming/ID, then state/ID); else WAITING (a min-heap on the next
 *   retry, with exponential back-off from retry_min to retry_max) or HOLD,
 *   with state/ID rewritten. Past max_lifetime what is still deferred
 *   bounces. The admin's commands arrive on the control socket
 *   (queue_ctl.c).
 *
 * Nothing here blocks: fsyncs and Maildir writes run on thread pools, DNS
 * and SMTP on the loop.
 *
 * Reload: the master hands over the text of the config it validated
 * (lib/ctlchan.h); it becomes a new generation (queue_gen.h) that serves
 * every activation from then on; the old one is freed when the last job or
 * DSN made from it is back. The HELO name and the hostname follow; the
 * resolver and the [alerts] hook stay those of the start (they need a
 * restart).
 *
 * Stop: SIGTERM stops activating messages and lets the deliveries in
 * flight finish, for at most shutdown_timeout; what is still out then is
 * simply left: its files are unchanged, so it is tried again after the
 * restart (at worst a delivery is repeated, never lost). A second SIGTERM,
 * or SIGQUIT, stops at once the same way.
 *
 * Crash safety: a kill -9 at any point leaves incoming/ID (fsynced before
 * the 250), at worst an old state/ID, and the delivery journal
 * (queue_journal.h) with every delivery whose 2xx was read and recorded;
 * the restarted process loads all three and carries on, repeating at most
 * one delivery per connection that was open: the one in flight.
 */
#include "queue_internal.h"
#include "alert_intake.h"
#include "delivery.h"
#include "dns.h"
#include "queue_journal.h"
#include "queue_config.h"
#include "../lib/config.h"
#include "../lib/ctlchan.h"
#include "../lib/log.h"
#include "../lib/readiness.h"
#include "../lib/threadpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define QUEUE_STATS_SECONDS 60
/* Threads for Maildir writes and DSN commits (disk waits, not CPU). */
#define QUEUE_POOL_THREADS 2
/* While stopping: how often to look whether the deliveries are back. */
#define QUEUE_STOP_POLL_MS 100

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

/* The master's new configuration (ctlchan.h): a new generation for what is
 * activated from now on. A text that does not load leaves the running
 * config in place. */
static int
queue_apply_config(void *arg, const struct ctlchan_config *c, char *err, size_t errsz)
{
	struct queue *q = arg;
	char *errors = NULL;
	struct queue_gen *g = queue_gen_load_text(c->path, c->text, c->len, &errors);

	if (g == NULL) {
		log_err("reload: keeping the running queue config: %s", errors ? errors : "?");
		snprintf(err, errsz, "%.*s", (int)strcspn(errors ? errors : "?", "\n"),
		         errors ? errors : "?");
		free(errors);
		return -1;
	}
	struct config *cfg = queue_gen_config_rw(g);
	if (c->flags & CTLCHAN_FORCE_SYSLOG)
		cfg->use_syslog = true;
	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "queue");
	struct queue_gen *old = q->gen;
	q->gen = g;
	/* The agent reads its limits and timeouts from the current config, so
	 * it moves over before the old one may go. */
	delivery_set_config(q->dl, queue_gen_qc(g));
	queue_set_str(&q->helo,
	              queue_gen_qc(g)->helo_name ? queue_gen_qc(g)->helo_name : cfg->hostname);
	delivery_set_helo(q->dl, q->helo);
	alert_intake_set_hostname(q->alerts, cfg->hostname);
	queue_gen_unref(old);
	log_info("reload: queue config reloaded routes=%zu generation=%lu generations_in_use=%u",
	         queue_gen_qc(g)->n_routes, queue_gen_number(g), queue_gen_live());
	return 0;
}

static void
stop_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;

	if (q->n_active == 0 && LIST_EMPTY(&q->dsns)) {
		log_info("queue stopping: no delivery in flight");
		event_base_loopexit(q->base, NULL);
	}
}

static void
stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;

	log_info("queue stopping: shutdown_timeout=%u reached active=%zu; they are tried again "
	         "after the restart",
	         queue_cfg(q)->shutdown_timeout, q->n_active);
	event_base_loopexit(q->base, NULL);
}

static void
journal_synced_cb(void *arg)
{
	queue_sched_journal_synced(arg);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct queue *q = arg;
	if (sig == SIGHUP) {
		/* The master reloads us through the control channel. */
		log_info("queue: SIGHUP ignored; reload the gateway with SIGHUP to the master");
		return;
	}
	if ((sig == SIGTERM || sig == SIGINT) && !q->stopping) {
		log_info("queue stopping (signal %d) messages=%zu active=%zu shutdown_timeout=%u",
		         (int)sig, q->n_msgs, q->n_active, queue_cfg(q)->shutdown_timeout);
		stats_cb(-1, 0, q);
		/* No new activation (queue_sched.c); what is out may finish. */
		q->stopping = true;
		event_add(q->stop_poll, &(struct timeval){0, QUEUE_STOP_POLL_MS * 1000});
		event_add(q->stop_deadline, &(struct timeval){queue_cfg(q)->shutdown_timeout, 0});
		stop_poll_cb(-1, 0, q);
		return;
	}
	log_info("queue stopping at once (signal %d) messages=%zu active=%zu", (int)sig, q->n_msgs,
	         q->n_active);
	stats_cb(-1, 0, q);
	event_base_loopexit(q->base, NULL);
}

int
queue_main(const struct queue_params *p)
{
	struct queue qq = {.p = p, .inotify_fd = -1}, *q = &qq;
	const char *err;
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	/* The master's config: not ours to free, and it outlives us. */
	q->gen = queue_gen_borrow(p->cfg, p->qc);
	q->spool = xstrdup(p->spool_dir);
	/* incoming/ holds the workers' files and our DSNs, nothing else. */
	spool_set_owners(p->worker_uid, geteuid());
	q->helo = xstrdup(p->qc->helo_name ? p->qc->helo_name : p->cfg->hostname);
	q->base = event_base_new();
	if (q->base == NULL)
		fatal("event_base_new failed");
	log_batch(q->base);
	q->dns = dns_new(q->base, p->qc->resolver, &err);
	if (q->dns == NULL)
		fatal("queue: dns: %s", err);
	/* Before the scan: loading a message applies what the journal says. */
	q->journal = queue_journal_open(q->base, q->spool, journal_synced_cb, q, &err);
	if (q->journal == NULL)
		log_err("alert=journal_write cannot open the delivery journal: %s; deliveries "
		        "may be repeated after a crash",
		        err);
	struct delivery_params dp = {
	        .base = q->base,
	        .qc = p->qc,
	        .dns = q->dns,
	        .helo_name = q->helo,
	        .journal = q->journal,
	};
	q->dl = delivery_new(&dp, &err);
	if (q->dl == NULL)
		fatal("queue: delivery: %s", err);
	q->store = queue_store_new(q->base, q->spool);
	q->pool = threadpool_new(q->base, QUEUE_POOL_THREADS);
	queue_sched_init(q);
	/* Mail the gateway writes itself takes one path: alert mails from the
	 * auth process are spooled here, as DSNs are. */
	struct alert_intake_params ap = {
	        .base = q->base,
	        .pool = q->pool,
	        .spool_dir = q->spool,
	        .hostname = p->cfg->hostname,
	        .hook = p->alert_hook,
	        .fd = p->alert_fd,
	};
	q->alerts = alert_intake_new(&ap);
	if (p->ctlchan_fd >= 0 && (q->ctl_chan = ctlchan_child_new(q->base, p->ctlchan_fd,
	                                                           queue_apply_config, q)) == NULL)
		fatal("queue: cannot watch the master's control channel");
	q->stop_poll = event_new(q->base, -1, EV_PERSIST, stop_poll_cb, q);
	q->stop_deadline = evtimer_new(q->base, stop_deadline_cb, q);
	q->stats_ev = event_new(q->base, -1, EV_PERSIST, stats_cb, q);
	event_add(q->stats_ev, &(struct timeval){QUEUE_STATS_SECONDS, 0});
	q->ev_term = evsignal_new(q->base, SIGTERM, signal_cb, q);
	q->ev_int = evsignal_new(q->base, SIGINT, signal_cb, q);
	q->ev_hup = evsignal_new(q->base, SIGHUP, signal_cb, q);
	q->ev_quit = evsignal_new(q->base, SIGQUIT, signal_cb, q);
	event_add(q->ev_term, NULL);
	event_add(q->ev_int, NULL);
	event_add(q->ev_hup, NULL);
	event_add(q->ev_quit, NULL);

	unsigned orphans = queue_store_remove_orphans(q->spool);
	queue_scan_start(q);
	size_t journal_records = 0, journal_segments = 0;
	if (q->journal != NULL) {
		queue_journal_replay_counts(q->journal, &journal_records, &journal_segments);
		queue_journal_replay_done(q->journal);
		/* What the old segments knew is now in the table: retire them. */
		queue_sched_checkpoint(q, false);
	}
	queue_metrics_start(q);
	log_info("queue ready messages=%zu ready=%zu deferred=%zu hold=%zu orphan_states=%u "
	         "journal_records=%zu journal_segments=%zu "
	         "resolver=%s smarthost=%s routes=%zu group_commit=%s",
	         q->n_msgs, q->n_ready, q->n_heap, q->n_hold, orphans, journal_records,
	         journal_segments, p->qc->resolver ? p->qc->resolver : "system",
	         p->qc->smarthost.host ? p->qc->smarthost.host : "none", p->qc->n_routes,
	         p->qc->group_commit ? "yes" : "no");
	if (queue_ctl_listen(q) != 0) {
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
	alert_intake_free(q->alerts);
	ctlchan_free(q->ctl_chan);
	/* Writes what was appended; the store's barrier callbacks never run. */
	queue_journal_free(q->journal);
	queue_store_free(q->store);
	queue_bounce_fini(q);
	queue_sched_fini(q);
	queue_ctl_close(q);
	queue_scan_stop(q);
	queue_metrics_stop(q);
	event_free(q->stats_ev);
	event_free(q->ev_term);
	event_free(q->ev_int);
	event_free(q->ev_hup);
	event_free(q->ev_quit);
	event_free(q->stop_poll);
	event_free(q->stop_deadline);
	event_base_free(q->base);
	queue_gen_unref(q->gen);
	free(q->spool);
	free(q->helo);
	return status;
}
