/* SPDX-License-Identifier: ISC */
/*
 * queue_internal.h - what the parts of the queue process share: the message
 * record and the process state. Not a module interface: only the queue's
 * own files include it (queue.c, queue_sched.c, queue_scan.c,
 * queue_bounce.c, queue_ctl.c); everybody else goes through queue.h.
 *
 * The parts, in the order a message meets them:
 *   queue_scan.c   finds incoming/ID (inotify, rescans, the start) and
 *                  loads it with its state/ID;
 *   queue_sched.c  the message table, the READY list, the retry heap,
 *                  activation into delivery jobs and what each attempt
 *                  leaves (retry, hold, removal);
 *   queue_bounce.c after an attempt: expiry, DSNs and delay warnings;
 *   queue_ctl.c    the control socket behind `authrelay queue ...`;
 *   queue_view.c   how the list, a message and the summary look;
 *   queue_metrics.c  the queue's gauges for the metrics endpoint;
 *   queue.c        process set-up, signals, reload and statistics.
 */
#ifndef AUTHRELAY_QUEUE_INTERNAL_H
#define AUTHRELAY_QUEUE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/un.h>
#include <time.h>
#include "queue.h"
#include "queue_gen.h"
#include "queue_store.h"
#include "../lib/common.h"
#include "../spool/spool.h"

struct event;
struct event_base;
struct evconnlistener;
struct dns;
struct delivery;
struct threadpool;
struct qjob;
struct qdsn;
struct queue_journal;
struct alert_intake;
struct ctlchan;

/* Where a message is in its life. */
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

struct qmsg {
	char id[SPOOL_ID_LEN + 1];
	struct queue *q;
	struct qmsg *hnext;            /* hash chain */
	TAILQ_ENTRY(qmsg) ready_entry; /* on the READY list */
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
	/* A delivery of it is recorded only in the journal so far (not yet in
	 * a state write or a removal asked of the store): a checkpoint must
	 * append it again to the new segment (queue_journal.h). */
	bool journal_only;
	unsigned jobs;
	bool delete_requested;
	char *broken_reason;
};

struct queue {
	/* process (queue.c) */
	const struct queue_params *p;
	struct queue_gen *gen; /* the current config; one reference */
	struct event_base *base;
	struct dns *dns;
	struct delivery *dl;
	struct queue_store *store;
	struct queue_journal *journal; /* NULL if it could not be opened */
	/* A journal checkpoint under way: the segment it started, the last
	 * record appended again, and whether the store's barrier is done. */
	bool checkpointing, checkpoint_barrier_done;
	uint64_t checkpoint_segment, checkpoint_seq;
	struct threadpool *pool; /* Maildir writes and DSN commits */
	char *spool;
	char *helo;
	struct event *stats_ev, *ev_term, *ev_int, *ev_hup, *ev_quit;
	struct event *metrics_ev; /* queue_metrics.c; NULL: metrics off */
	struct alert_intake *alerts;
	struct ctlchan *ctl_chan; /* the master's: reloads */
	bool stopping;            /* SIGTERM: no new activation */
	struct event *stop_poll, *stop_deadline;
	unsigned long n_sent, n_deferred, n_bounced, n_dsn, n_expired, n_received;
	unsigned long last_stats_sum;

	/* scheduler (queue_sched.c) */
	struct qmsg **buckets;
	size_t n_buckets;
	size_t n_msgs;
	TAILQ_HEAD(, qmsg) ready; /* FIFO */
	size_t n_ready;
	struct qmsg **heap;
	size_t n_heap, heap_cap;
	size_t n_active, n_hold;
	LIST_HEAD(, qjob) jobs; /* every job out, for shutdown */
	struct event *heap_timer, *run_ev;
	bool full;

	/* scan (queue_scan.c) */
	int inotify_fd;
	struct event *inotify_ev, *rescan_ev;

	/* bounces (queue_bounce.c) */
	LIST_HEAD(, qdsn) dsns; /* DSNs being written */

	/* control socket (queue_ctl.c) */
	struct evconnlistener *ctl;
	char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The running configuration (of the current generation). */
static inline const struct queue_config *
queue_qc(const struct queue *q)
{
	return queue_gen_qc(q->gen);
}

static inline const struct config *
queue_cfg(const struct queue *q)
{
	return queue_gen_config(q->gen);
}

static inline int64_t
queue_now(void)
{
	return (int64_t)time(NULL);
}

/* Replace *dst by a copy of src (NULL allowed). */
static inline void
queue_set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src != NULL ? xstrdup(src) : NULL;
}

/* ---------------------------------------------------------- queue_sched.c */

/* Set up the table, the READY list and the heap; free them, every message
 * and every job out (their done is never called). */
void queue_sched_init(struct queue *q);
void queue_sched_fini(struct queue *q);

/* The message with this id, whatever its state; NULL if none. */
struct qmsg *queue_sched_find(struct queue *q, const char *id);
/* Enter a message just read from the spool into the table (where is
 * QM_BROKEN, or QM_NONE and then queue_sched_place() follows). */
void queue_sched_add(struct queue *q, struct qmsg *m);
/* A loaded message goes where its state says: removed if no recipient is
 * left, held, waiting for its next attempt, or READY. */
void queue_sched_place(struct queue *q, struct qmsg *m);
/* Every message, in no order; malloc'd, *n_r entries. */
struct qmsg **queue_sched_all(struct queue *q, size_t *n_r);
/* Free a message that is in no table or list (or at the table's end). */
void queue_sched_msg_free(struct qmsg *m);

/* The admin's commands. flush: every deferred message is due now; returns
 * how many. hold: m is not QM_BROKEN; an active message is held once its
 * jobs are back. Each logs what it did. */
size_t queue_sched_flush(struct queue *q);
/* The same for one message: true if it was waiting and is now due. */
bool queue_sched_flush_msg(struct queue *q, struct qmsg *m);
void queue_sched_hold(struct queue *q, struct qmsg *m);
void queue_sched_release(struct queue *q, struct qmsg *m);

/* After the attempt and its DSNs: remove m if no recipient is left (or the
 * admin deleted it), else schedule its next attempt or hold it. */
void queue_sched_settle(struct queue *q, struct qmsg *m);
/* Take m out of wherever it waits and remove its files; it leaves the
 * table once they are gone. */
void queue_sched_remove(struct queue *q, struct qmsg *m);
/* The delivery log line for one recipient of m. */
void queue_sched_log_rcpt(const struct qmsg *m, const struct qrcpt *r, const char *status);

/* Retire the journal's segments before the current one: append again what
 * only they know (messages with journal_only), wait for the store's barrier
 * and for those records to be durable, then remove them. rotate: start a
 * new segment first (at start the journal has just opened one). No-op
 * without a journal or while a checkpoint runs. */
void queue_sched_checkpoint(struct queue *q, bool rotate);
/* The journal made more records durable: connections waiting for it may
 * go on, a checkpoint may finish. */
void queue_sched_journal_synced(struct queue *q);

/* --------------------------------------------------------- queue_scan.c */

/* Read incoming/<id> and state/<id> under spool into a new message (where
 * QM_NONE, in no table; free with queue_sched_msg_free()). Only reads:
 * `authrelay queue list` uses it on a stopped gateway's spool. hostname is
 * the domain of a bare recipient. fresh: no state file can exist yet.
 * Returns 0 (*m_r set), 1 if the file is gone, -1 with *error_r if it is
 * unreadable, -2 with *error_r if it is no plain file of ours (a link, a
 * directory: never followed, spool_open_message()). */
int queue_scan_read(const char *spool, const char *id, const char *hostname, bool fresh,
                    struct qmsg **m_r, const char **error_r);
/* Deliveries journal j recorded for m (read at the start, or offline by
 * queue_journal_read(); queue_journal.h) after a crash: done, whatever an
 * older state file says. They stay journal_only until m's next state write
 * or its removal. Returns how many recipients it marked; none when j is
 * NULL. */
size_t queue_scan_apply_journal(const struct queue_journal *j, struct qmsg *m);
/* A queue ID: SPOOL_ID_LEN lower-case hex digits. */
bool queue_scan_valid_id(const char *s);

/* Watch incoming/ (inotify, and a rescan every minute), then load what is
 * already there. */
void queue_scan_start(struct queue *q);
void queue_scan_stop(struct queue *q);

/* ------------------------------------------------------- queue_bounce.c */

/* Every job of m's attempt is back (m is QM_SETTLING): fail what has
 * outlived max_lifetime, write the DSNs now due (failures, a delay
 * warning) on the pool, then queue_sched_settle(). */
void queue_bounce_attempt_done(struct queue *q, struct qmsg *m);
/* Forget DSNs still being written (at exit: the pool has stopped). */
void queue_bounce_fini(struct queue *q);

/* ---------------------------------------------------------- queue_ctl.c */

/* Listen on spool_dir/private/queue. 0, or -1 (logged). */
int queue_ctl_listen(struct queue *q);
void queue_ctl_close(struct queue *q);

/* ------------------------------------------------------ queue_metrics.c */

/* With metrics on: publish the queue's gauges now and every few seconds;
 * stop doing so. */
void queue_metrics_start(struct queue *q);
void queue_metrics_stop(struct queue *q);
/* Publish the messages per state and age now. */
void queue_metrics_update(struct queue *q);

#endif
