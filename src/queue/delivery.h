/* SPDX-License-Identifier: ISC */
/*
 * delivery.h - the SMTP delivery agent of the queue process. It takes jobs
 * (one message, up to max_recipients_per_transaction recipients of one
 * destination) and runs them over the shared asynchronous SMTP client
 * (src/smtp/smtp_client.h) on the queue's event loop:
 *
 *   resolve the destination (dns.h), connect to its addresses in order,
 *   EHLO (HELO if refused), STARTTLS (opportunistic, or required with
 *   certificate verification), then per job one transaction: MAIL with
 *   SIZE/BODY/SMTPUTF8, every RCPT and DATA pipelined when the server offers
 *   PIPELINING (RFC 2920), the message, and the per-recipient outcome.
 *
 * Connections are kept per destination and reused for the next job (RSET
 * after a failed transaction); idle ones close after connection_reuse_time.
 * With a delivery journal, a connection whose transaction delivered takes
 * its next job only once the records its done callback appended are
 * durable (queue_journal.h): after a crash at most one delivery per
 * connection, the one in flight, can be repeated.
 * Concurrency is bounded in total and per destination address, separately
 * for internal and external next hops ([queue] max_connections...).
 */
#ifndef AUTHRELAY_DELIVERY_H
#define AUTHRELAY_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include "queue_store.h"
#include "../lib/common.h"

struct event_base;
struct dns;
struct queue_config;
struct route_decision;
struct delivery;
struct delivery_job;
struct queue_journal;

struct delivery_rcpt {
	const char *addr; /* "user@domain", owned by the caller */
	size_t index;     /* the caller's */
	/* Results, filled before done runs. */
	enum rcpt_status status; /* RCPT_SENT, RCPT_DEFERRED or RCPT_BOUNCED */
	char dsn[16];            /* "2.0.0", "5.1.1" */
	char reply[512];         /* one line: "550 5.1.1 No such user" or our reason */
	char relay[320];         /* "mx1.example[192.0.2.1]:25", or "none" */
	bool remote;             /* reply came from the next hop (not our reason) */
};

typedef void delivery_done_cb(struct delivery_job *job, void *arg);

/* One transaction's worth of work. The caller fills it, owns it, and gets it
 * back exactly once through done (never inside delivery_submit). */
struct delivery_job {
	const char *queue_id;
	const char *path; /* the spool file */
	long body_offset;
	uint64_t size;      /* message bytes */
	const char *sender; /* "" for the null sender */
	bool body_8bit;     /* BODY=8BITMIME */
	bool smtputf8;
	struct delivery_rcpt *rcpts;
	size_t n_rcpts;
	delivery_done_cb *done;
	void *arg;
	STAILQ_ENTRY(delivery_job) entry; /* the agent's: its destination's queue */
};

struct delivery_params {
	struct event_base *base;
	const struct queue_config *qc;
	struct dns *dns;
	const char *helo_name;
	/* Where done records deliveries; NULL: connections never wait. */
	struct queue_journal *journal;
};

struct delivery *delivery_new(const struct delivery_params *p, const char **error_r);
/* Close every connection; queued jobs are dropped (done is not called). */
void delivery_free(struct delivery *);
/* Swap the config (SIGHUP): used for connections opened from now on. */
void delivery_set_config(struct delivery *, const struct queue_config *qc);
/* A reload: connections made from now on say helo_name (copied). */
void delivery_set_helo(struct delivery *, const char *helo_name);

/* Queue job for the destination rd (copied). */
void delivery_submit(struct delivery *, const struct route_decision *rd, struct delivery_job *job);

/* Connections open now, external and internal; jobs waiting. */
void delivery_counts(const struct delivery *, unsigned *external_r, unsigned *internal_r,
                     unsigned *waiting_r);

/* The journal made more records durable: connections that waited for
 * theirs take new jobs (from the loop, not inside this call). */
void delivery_journal_synced(struct delivery *);

/* Drop what the agent remembers about unreachable addresses (flush). */
void delivery_forget_failures(struct delivery *);

#endif
