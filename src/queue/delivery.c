/* SPDX-License-Identifier: ISC */
/*
 * delivery.c - the SMTP delivery agent (delivery.h).
 *
 * A destination (struct dest) is what route.h decided: "mx:example.org",
 * "route:internal", "smarthost". It holds the addresses DNS gave, the jobs
 * waiting, and its connections. dest_kick() is the one place that matches
 * jobs to connections: it hands a waiting job to an idle connection, or
 * opens a new one while the limits allow and fewer connections are on their
 * way than jobs wait. A connection (struct dconn) walks the addresses in
 * order until one completes the handshake (smtp_client_handshake: greeting,
 * EHLO or HELO, STARTTLS as the route's tls says); an address that failed is
 * skipped for the rest of the destination's life. When no address is left,
 * every waiting job is deferred with the last reason.
 *
 * Transactions: MAIL, each RCPT and DATA are queued at once; the client
 * pipelines them when the server offers PIPELINING and sends them one by one
 * otherwise. Replies come back in order, so a counter tells which RCPT a
 * reply answers. A connection that fails mid-transaction defers every
 * recipient not yet answered for good (a duplicate is possible only when
 * the failure came after the final "." was sent: RFC 1047).
 *
 * Callbacks from the client may free the client (smtp_client_free is safe
 * there) but a dconn is freed only from conn_release(), never while one of
 * its own callbacks still uses it afterwards.
 */
#include "delivery.h"
#include "dns.h"
#include "queue_journal.h"
#include "queue_config.h"
#include "route.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../smtp/smtp_client.h"
#include "../spool/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

/* Transactions on one connection before it is closed and a fresh one made. */
#define CONN_MAX_TXNS 100
/* How long DNS answers are reused while a destination stays busy. */
#define DEST_DNS_TTL 300
#define REPLY_LINE_MAX 4096
#define REPLY_LINES_MAX 200

enum dconn_state {
	DC_CONNECTING, /* connect and handshake (smtp_client_handshake) */
	DC_READY,      /* idle or about to take a job */
	DC_TXN,
	DC_RSET,
};

struct dest_addr {
	struct dns_target t;
	bool failed;
	char ip[64];
};

struct addr_slot {
	LIST_ENTRY(addr_slot) entry; /* in delivery->slots */
	char key[80];                /* "ip:port" */
	unsigned n;
};

struct dconn;

struct dest {
	struct delivery *dl;
	LIST_ENTRY(dest) entry; /* in delivery->dests */
	/* Its route is NULL and its tls_ca_file is ca_file: a destination may
	 * outlive the config generation its first job came from. */
	struct route_decision rd;
	char *ca_file;
	enum { DS_NEW, DS_RESOLVING, DS_READY } ds;
	struct dest_addr *addrs;
	size_t n_addrs;
	time_t resolved_at;
	STAILQ_HEAD(, delivery_job) jobs; /* waiting, oldest first */
	size_t n_jobs;
	LIST_HEAD(, dconn) conns;
	unsigned n_conns, n_opening;
	char last_error[600];
	bool kicking;
};

struct dconn {
	struct dest *d;
	LIST_ENTRY(dconn) entry; /* in dest->conns */
	struct smtp_client *c;
	size_t ai;
	struct addr_slot *slot;
	enum dconn_state st;
	bool opening;
	bool no_tls; /* retrying after a failed opportunistic handshake */
	struct delivery_job *job;
	bool *accepted; /* per job rcpt: RCPT got 2xx */
	int fd;
	size_t rcpt_replies;
	size_t n_accepted;
	bool mail_failed;
	int mail_code;
	char mail_reply[512];
	char mail_dsn[16];
	unsigned txns;
	/* Journal records of its last transaction: no next job before they
	 * are durable (0: nothing to wait for). */
	uint64_t record_seq;
	struct event *idle_ev;
	char relay[320];
};

struct tls_ctx {
	SLIST_ENTRY(tls_ctx) entry; /* in delivery->tls_verify */
	char *ca_file;              /* NULL: system trust store */
	SSL_CTX *ctx;
};

struct delivery {
	struct event_base *base;
	const struct queue_config *qc;
	struct dns *dns;
	char *helo;
	LIST_HEAD(, dest) dests;
	LIST_HEAD(, addr_slot) slots;
	unsigned n_conns[2];              /* [internal] */
	SSL_CTX *tls_any;                 /* opportunistic: no verification */
	SLIST_HEAD(, tls_ctx) tls_verify; /* one per CA file */
	struct smtp_client **closing;     /* clients waiting for QUIT's reply */
	size_t n_closing;
	struct event *kick_ev;
	struct queue_journal *journal;
};

static void dest_kick(struct dest *d);
static void conn_try_address(struct dconn *k);
static void conn_release(struct dconn *k);

/* ---------------------------------------------------------------- helpers */

static const char *
status_text(enum smtp_client_status s)
{
	switch (s) {
	case SMTP_CLIENT_OK:
		return "ok";
	case SMTP_CLIENT_TIMEOUT:
		return "timed out";
	case SMTP_CLIENT_CONN_FAILED:
		return "connection failed";
	case SMTP_CLIENT_TLS_FAILED:
		return "TLS handshake failed";
	case SMTP_CLIENT_PROTOCOL:
		return "protocol error";
	}
	return "?";
}

/* The reply as one line: "550 5.1.1 text text". */
static void
reply_line(const struct smtp_reply *r, char *out, size_t outsz)
{
	snprintf(out, outsz, "%d %s", r->code, r->text != NULL ? r->text : "");
	for (char *p = out; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
}

static void
reply_dsn(const struct smtp_reply *r, char *out, size_t outsz)
{
	if (r->enhanced[0] != '\0' && r->enhanced[0] == '0' + r->code / 100)
		snprintf(out, outsz, "%s", r->enhanced);
	else
		snprintf(out, outsz, "%d.0.0", r->code / 100);
}

/* Copy src into dst[size], cut if it must be. */
static void
copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
rcpt_set(struct delivery_rcpt *r, enum rcpt_status st, const char *dsn, const char *reply,
         const char *relay, bool remote)
{
	r->status = st;
	copy_str(r->dsn, sizeof(r->dsn), dsn);
	copy_str(r->reply, sizeof(r->reply), reply);
	copy_str(r->relay, sizeof(r->relay), relay != NULL ? relay : "none");
	r->remote = remote;
}

static void
rcpt_set_code(struct delivery_rcpt *r, int code, const char *dsn, const char *reply,
              const char *relay)
{
	enum rcpt_status st = code >= 200 && code < 300 ? RCPT_SENT
	                      : code >= 500             ? RCPT_BOUNCED
	                                                : RCPT_DEFERRED;
	rcpt_set(r, st, dsn, reply, relay, true);
}

static void
job_finish(struct delivery_job *job)
{
	job->done(job, job->arg);
}

/* Hand a job back while d must not be kicked or freed underneath us. */
static void
dest_finish_job(struct dest *d, struct delivery_job *job)
{
	bool was = d->kicking;
	d->kicking = true;
	job_finish(job);
	d->kicking = was;
}

/* Finish every waiting job of d with the same outcome. */
static void
dest_fail_jobs(struct dest *d, enum rcpt_status st, const char *dsn, const char *reason)
{
	STAILQ_HEAD(, delivery_job) jobs = STAILQ_HEAD_INITIALIZER(jobs);
	struct delivery_job *j;

	STAILQ_CONCAT(&jobs, &d->jobs); /* takes them all, leaves it empty */
	d->n_jobs = 0;
	while ((j = STAILQ_FIRST(&jobs)) != NULL) {
		STAILQ_REMOVE_HEAD(&jobs, entry);
		for (size_t i = 0; i < j->n_rcpts; i++)
			rcpt_set(&j->rcpts[i], st, dsn, reason, "none", false);
		dest_finish_job(d, j);
	}
}

/* The TLS context for a destination's policy: opportunistic (no
 * verification), or verified against ca_file (NULL: the system's store),
 * built once per CA file and kept. */
static SSL_CTX *
tls_client_ctx(struct delivery *dl, bool verify, const char *ca_file, const char **error_r)
{
	if (!verify)
		return dl->tls_any;
	struct tls_ctx *t;

	SLIST_FOREACH(t, &dl->tls_verify, entry)
	{
		if ((t->ca_file == NULL && ca_file == NULL) ||
		    (t->ca_file != NULL && ca_file != NULL && strcmp(t->ca_file, ca_file) == 0))
			return t->ctx;
	}
	SSL_CTX *ctx = smtp_client_tls_ctx_new(ca_file, true, error_r);
	if (ctx == NULL)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->ca_file = ca_file ? xstrdup(ca_file) : NULL;
	t->ctx = ctx;
	SLIST_INSERT_HEAD(&dl->tls_verify, t, entry);
	return ctx;
}

/* ------------------------------------------------------------ limits */

static unsigned
limit_total(const struct delivery *dl, bool internal)
{
	return internal ? dl->qc->internal_max_connections : dl->qc->max_connections;
}

static unsigned
limit_per_addr(const struct delivery *dl, bool internal)
{
	return internal ? dl->qc->internal_max_connections_per_destination
	                : dl->qc->max_connections_per_destination;
}

static struct addr_slot *
slot_find(struct delivery *dl, const char *key, bool create)
{
	struct addr_slot *s;

	LIST_FOREACH(s, &dl->slots, entry)
	{
		if (strcmp(s->key, key) == 0)
			return s;
	}
	if (!create)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	snprintf(s->key, sizeof(s->key), "%s", key);
	LIST_INSERT_HEAD(&dl->slots, s, entry);
	return s;
}

static void
slot_put(struct delivery *dl, struct addr_slot *slot)
{
	if (slot == NULL || --slot->n > 0)
		return;
	LIST_REMOVE(slot, entry);
	free(slot);
}

static unsigned
slot_count(struct delivery *dl, const char *key)
{
	struct addr_slot *s = slot_find(dl, key, false);
	return s != NULL ? s->n : 0;
}

/* ------------------------------------------------------------ destinations */

/* Whether a and b reach the same next hop the same way. After a reload
 * that changed a route, its destination drains with the connections it has
 * and a new one serves the new hop. */
static bool
dest_same_hop(const struct route_decision *a, const struct route_decision *b)
{
	const char *ca = a->tls_ca_file ? a->tls_ca_file : "";
	const char *cb = b->tls_ca_file ? b->tls_ca_file : "";
	return strcmp(a->key, b->key) == 0 && strcmp(a->host, b->host) == 0 && a->mx == b->mx &&
	       a->port == b->port && a->tls == b->tls && a->internal == b->internal &&
	       strcmp(ca, cb) == 0;
}

static struct dest *
dest_get(struct delivery *dl, const struct route_decision *rd)
{
	struct dest *d;

	LIST_FOREACH(d, &dl->dests, entry)
	{
		if (dest_same_hop(&d->rd, rd))
			return d;
	}
	d = xcalloc(1, sizeof(*d));
	d->dl = dl;
	d->rd = *rd;
	d->rd.route = NULL;
	d->ca_file = rd->tls_ca_file ? xstrdup(rd->tls_ca_file) : NULL;
	d->rd.tls_ca_file = d->ca_file;
	LIST_INIT(&d->conns);
	STAILQ_INIT(&d->jobs);
	LIST_INSERT_HEAD(&dl->dests, d, entry);
	return d;
}

static void
dest_free_if_unused(struct dest *d)
{
	if (!STAILQ_EMPTY(&d->jobs) || !LIST_EMPTY(&d->conns) || d->ds == DS_RESOLVING ||
	    d->kicking)
		return;
	LIST_REMOVE(d, entry);
	free(d->addrs);
	free(d->ca_file);
	free(d);
}

static void
dest_dns_cb(enum dns_status status, const char *error, const struct dns_target *t, size_t n,
            void *arg)
{
	struct dest *d = arg;

	free(d->addrs);
	d->addrs = NULL;
	d->n_addrs = 0;
	d->ds = DS_READY;
	d->resolved_at = time(NULL);
	if (status != DNS_OK) {
		/* RFC 7505 4.2: null MX is 5.1.10; NXDOMAIN 5.1.2 (RFC 3463). */
		char err[LOG_VALUE_MAX];
		log_info("dest=%s dns status=%s error=\"%s\"", d->rd.key,
		         status == DNS_TEMPFAIL ? "tempfail" : "fail",
		         log_escape_str(error, err, sizeof(err)));
		d->ds = DS_NEW;
		if (status == DNS_TEMPFAIL)
			dest_fail_jobs(d, RCPT_DEFERRED, "4.4.3", error);
		else
			dest_fail_jobs(d, RCPT_BOUNCED, status == DNS_NULLMX ? "5.1.10" : "5.1.2",
			               error);
		dest_free_if_unused(d);
		return;
	}
	d->addrs = xcalloc(n, sizeof(*d->addrs));
	d->n_addrs = n;
	for (size_t i = 0; i < n; i++) {
		char ip[INET6_ADDRSTRLEN + 8];
		d->addrs[i].t = t[i];
		net_addr_str((const struct sockaddr *)&t[i].addr, ip, sizeof(ip));
		unsigned port =
		        t[i].addr.ss_family == AF_INET6
		                ? ntohs(((const struct sockaddr_in6 *)&t[i].addr)->sin6_port)
		                : ntohs(((const struct sockaddr_in *)&t[i].addr)->sin_port);
		snprintf(d->addrs[i].ip, sizeof(d->addrs[i].ip), "%s:%u", ip, port);
	}
	char first[LOG_VALUE_MAX];
	log_debug("dest=%s resolved addresses=%zu first=\"%s[%s]\"", d->rd.key, n,
	          log_escape_str(d->addrs[0].t.host, first, sizeof(first)), d->addrs[0].ip);
	dest_kick(d);
}

/* Pick the first usable address for a new connection: not failed, with a
 * free per-address slot. Returns the index, -1 if every address failed, -2
 * if the usable ones are all at their limit. */
static long
dest_pick_address(struct dest *d, size_t from)
{
	struct delivery *dl = d->dl;
	bool any = false;

	for (size_t i = from; i < d->n_addrs; i++) {
		if (d->addrs[i].failed)
			continue;
		any = true;
		if (slot_count(dl, d->addrs[i].ip) < limit_per_addr(dl, d->rd.internal))
			return (long)i;
	}
	return any ? -2 : -1;
}

static void
conn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dconn *k = arg;
	char relay[LOG_VALUE_MAX];
	log_debug("dest=%s idle connection closed relay=\"%s\"", k->d->rd.key,
	          log_escape_str(k->relay, relay, sizeof(relay)));
	struct dest *d = k->d;
	conn_release(k);
	dest_kick(d);
}

/* Open one more connection for d. Returns 0 (on its way), 1 (blocked by a
 * limit) or -1 (no address left). */
static int
dest_open(struct dest *d)
{
	struct delivery *dl = d->dl;
	bool internal = d->rd.internal;

	if (dl->n_conns[internal] >= limit_total(dl, internal))
		return 1;
	long ai = dest_pick_address(d, 0);
	if (ai == -1)
		return -1;
	if (ai == -2)
		return 1;
	struct dconn *k = xcalloc(1, sizeof(*k));
	k->d = d;
	k->fd = -1;
	k->ai = (size_t)ai;
	k->opening = true;
	k->idle_ev = evtimer_new(dl->base, conn_idle_cb, k);
	LIST_INSERT_HEAD(&d->conns, k, entry);
	d->n_conns++;
	d->n_opening++;
	dl->n_conns[internal]++;
	conn_try_address(k);
	return 0;
}

static void
dest_fail_no_address(struct dest *d)
{
	char reason[700];
	snprintf(reason, sizeof(reason), "%s",
	         d->last_error[0] ? d->last_error : "no address to connect to");
	dest_fail_jobs(d, RCPT_DEFERRED, "4.4.1", reason);
	/* Next time, try every address again. */
	d->ds = DS_NEW;
}

static void conn_start_txn(struct dconn *k, struct delivery_job *job);

/* Idle connections with nothing to do start their timer. */
static void
dest_arm_idle(struct dest *d)
{
	struct dconn *k;

	LIST_FOREACH(k, &d->conns, entry)
	{
		if (k->st == DC_READY && k->job == NULL && !evtimer_pending(k->idle_ev, NULL)) {
			struct timeval tv = {d->dl->qc->connection_reuse_time, 0};
			evtimer_add(k->idle_ev, &tv);
		}
	}
}

/* The connection's last delivery is not yet durable in the journal: it
 * takes no new job until it is (delivery_journal_synced()). */
static bool
conn_recording(const struct dconn *k)
{
	struct queue_journal *jr = k->d->dl->journal;
	return jr != NULL && k->record_seq > queue_journal_durable(jr);
}

static void
dest_kick(struct dest *d)
{
	struct delivery *dl = d->dl;

	if (d->kicking)
		return;
	if (STAILQ_EMPTY(&d->jobs)) {
		dest_arm_idle(d);
		dest_free_if_unused(d);
		return;
	}
	if (d->ds == DS_READY && d->n_conns == 0 && time(NULL) - d->resolved_at > DEST_DNS_TTL)
		d->ds = DS_NEW;
	if (d->ds == DS_NEW) {
		d->ds = DS_RESOLVING;
		d->last_error[0] = '\0';
		dns_resolve(dl->dns, d->rd.host, d->rd.mx, d->rd.port, dest_dns_cb, d);
		return;
	}
	if (d->ds != DS_READY)
		return;
	d->kicking = true;
	while (!STAILQ_EMPTY(&d->jobs)) {
		struct dconn *idle = NULL;
		size_t recording = 0;
		for (struct dconn *k = LIST_FIRST(&d->conns), *next; k != NULL; k = next) {
			next = LIST_NEXT(k, entry);
			if ((k->st == DC_READY || k->st == DC_RSET) && k->job == NULL &&
			    conn_recording(k)) {
				recording++;
				continue;
			}
			if (k->st != DC_READY || k->job != NULL)
				continue;
			if (!smtp_client_idle(k->c)) {
				/* The server closed it while idle. */
				conn_release(k);
				continue;
			}
			idle = k;
			break;
		}
		if (idle != NULL) {
			struct delivery_job *job = STAILQ_FIRST(&d->jobs);
			STAILQ_REMOVE_HEAD(&d->jobs, entry);
			d->n_jobs--;
			conn_start_txn(idle, job);
			continue;
		}
		/* A connection waiting for the journal is free in a moment:
		 * like one being opened, it will take a job. */
		if (d->n_opening + recording >= d->n_jobs)
			break;
		int r = dest_open(d);
		if (r == 1)
			break;
		if (r < 0) {
			if (d->n_conns == 0)
				dest_fail_no_address(d);
			break;
		}
	}
	d->kicking = false;
	dest_arm_idle(d);
	dest_free_if_unused(d);
}

/* Another destination may have waited for a slot this one gave back. */
static void
delivery_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *dl = arg;
	for (struct dest *d = LIST_FIRST(&dl->dests), *next; d != NULL; d = next) {
		next = LIST_NEXT(d, entry);
		if (!STAILQ_EMPTY(&d->jobs))
			dest_kick(d);
	}
}

/* ------------------------------------------------------------ connections */

static void
quit_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
        void *arg)
{
	struct delivery *dl = arg;
	for (size_t i = 0; i < dl->n_closing; i++) {
		if (dl->closing[i] == c) {
			dl->closing[i] = dl->closing[--dl->n_closing];
			break;
		}
	}
	smtp_client_free(c);
}

/* Close the client: politely (QUIT) when it is idle, at once otherwise. */
static void
conn_drop_client(struct dconn *k)
{
	struct delivery *dl = k->d->dl;
	if (k->c == NULL)
		return;
	if (smtp_client_idle(k->c)) {
		dl->closing = xrealloc(dl->closing, (dl->n_closing + 1) * sizeof(*dl->closing));
		dl->closing[dl->n_closing++] = k->c;
		smtp_client_command(k->c, "QUIT", quit_cb, dl);
	} else {
		smtp_client_free(k->c);
	}
	k->c = NULL;
}

/* The connection is gone for good: give back its slots, unlink, free. */
static void
conn_release(struct dconn *k)
{
	struct dest *d = k->d;
	struct delivery *dl = d->dl;

	conn_drop_client(k);
	if (k->fd >= 0)
		close(k->fd);
	slot_put(dl, k->slot);
	if (k->opening)
		d->n_opening--;
	d->n_conns--;
	dl->n_conns[d->rd.internal]--;
	LIST_REMOVE(k, entry);
	event_free(k->idle_ev);
	free(k->accepted);
	free(k);
	event_active(dl->kick_ev, EV_TIMEOUT, 0);
}

static void conn_handshake_cb(struct smtp_client *c, const struct smtp_client_hs_result *r,
                              void *arg);

/* This address did not work out: note why, try the next one. */
static void
conn_address_failed(struct dconn *k, const char *why)
{
	struct dest *d = k->d;
	struct delivery *dl = d->dl;

	copy_str(d->last_error, sizeof(d->last_error), why);
	char relay[LOG_VALUE_MAX], error[LOG_VALUE_MAX * 2];
	/* The next hop's name comes from DNS and why may hold its reply. */
	log_info("dest=%s failed relay=\"%s\" error=\"%s\"", d->rd.key,
	         log_escape_str(k->relay, relay, sizeof(relay)),
	         log_escape_str(why, error, sizeof(error)));
	d->addrs[k->ai].failed = true;
	if (k->c != NULL) {
		smtp_client_free(k->c);
		k->c = NULL;
	}
	slot_put(dl, k->slot);
	k->slot = NULL;
	k->no_tls = false;
	long next = dest_pick_address(d, 0);
	if (next < 0) {
		/* Nothing left (or the rest are busy): this connection ends. */
		conn_release(k);
		if (next == -1 && d->n_conns == 0)
			dest_fail_no_address(d);
		dest_kick(d);
		return;
	}
	k->ai = (size_t)next;
	conn_try_address(k);
}

static void
conn_try_address(struct dconn *k)
{
	struct dest *d = k->d;
	struct delivery *dl = d->dl;
	const struct queue_config *qc = dl->qc;
	struct dest_addr *a = &d->addrs[k->ai];
	struct smtp_client_params p = {
	        .connect_timeout = qc->connect_timeout,
	        .greeting_timeout = qc->command_timeout,
	        .command_timeout = qc->command_timeout,
	        .data_timeout = qc->data_timeout,
	        .max_reply_line = REPLY_LINE_MAX,
	        .max_reply_lines = REPLY_LINES_MAX,
	};
	bool required = d->rd.tls == ROUTE_TLS_REQUIRED;
	struct smtp_client_handshake hs = {
	        .helo_name = dl->helo,
	        .tls = k->no_tls || d->rd.tls == ROUTE_TLS_NONE ? SMTP_CLIENT_TLS_NONE
	               : required                               ? SMTP_CLIENT_TLS_STARTTLS
	                                                        : SMTP_CLIENT_TLS_MAY,
	        .tls_name = a->t.host,
	        .tls_verify = required,
	        .helo_fallback = true,
	};
	char log_id[400];

	k->slot = slot_find(dl, a->ip, true);
	k->slot->n++;
	/* host[ip]:port */
	char *colon = strrchr(a->ip, ':');
	snprintf(k->relay, sizeof(k->relay), "%.200s[%.*s]:%.10s", a->t.host,
	         (int)(colon != NULL ? colon - a->ip : (long)strlen(a->ip)), a->ip,
	         colon != NULL ? colon + 1 : "");
	k->st = DC_CONNECTING;
	if (hs.tls != SMTP_CLIENT_TLS_NONE) {
		const char *err = "";
		hs.tls_ctx = tls_client_ctx(dl, required, d->rd.tls_ca_file, &err);
		if (hs.tls_ctx == NULL) {
			char why[800];
			snprintf(why, sizeof(why), "TLS setup for %s: %s", k->relay, err);
			conn_address_failed(k, why);
			return;
		}
	}
	snprintf(log_id, sizeof(log_id), "dest=%s", d->rd.key);
	p.log_id = log_id;
	k->c = smtp_client_new(dl->base, &p);
	if (smtp_client_handshake(k->c, (const struct sockaddr *)&a->t.addr, a->t.addrlen, &hs,
	                          conn_handshake_cb, k) != 0) {
		char why[400];
		snprintf(why, sizeof(why), "connect to %s: %s", k->relay, strerror(errno));
		conn_address_failed(k, why);
	}
}

static void conn_ready(struct dconn *k);

static void
conn_setup_failed(struct dconn *k, enum smtp_client_status status, const struct smtp_reply *reply,
                  const char *step)
{
	char why[1200], line[512];
	if (status != SMTP_CLIENT_OK) {
		snprintf(why, sizeof(why), "%s to %s: %s", step, k->relay, status_text(status));
	} else {
		reply_line(reply, line, sizeof(line));
		snprintf(why, sizeof(why), "host %s refused %s: %s", k->relay, step, line);
	}
	conn_address_failed(k, why);
}

/* The step as the reasons name it: "connect to ...", "host ... refused to
 * talk to me: ...", "EHLO to ...". */
static const char *
conn_step_name(enum smtp_client_step step, bool failed)
{
	switch (step) {
	case SMTP_CLIENT_STEP_GREETING:
		return failed ? "connect" : "to talk to me";
	case SMTP_CLIENT_STEP_EHLO:
	case SMTP_CLIENT_STEP_EHLO_TLS:
		return "EHLO";
	case SMTP_CLIENT_STEP_HELO:
		return "HELO";
	case SMTP_CLIENT_STEP_STARTTLS:
		return "STARTTLS";
	}
	return "?";
}

static void
conn_handshake_cb(struct smtp_client *c, const struct smtp_client_hs_result *r, void *arg)
{
	struct dconn *k = arg;
	struct dest *d = k->d;
	char why[400], relay[LOG_VALUE_MAX];

	switch (r->outcome) {
	case SMTP_CLIENT_HS_READY:
		if (r->starttls_refused != 0)
			log_info("dest=%s STARTTLS refused (%d), continuing without TLS "
			         "relay=\"%s\"",
			         d->rd.key, r->starttls_refused,
			         log_escape_str(k->relay, relay, sizeof(relay)));
		conn_ready(k);
		return;
	case SMTP_CLIENT_HS_FAILED:
		if (r->step == SMTP_CLIENT_STEP_STARTTLS && r->status == SMTP_CLIENT_TLS_FAILED &&
		    d->rd.tls != ROUTE_TLS_REQUIRED) {
			/* Opportunistic TLS that failed: once more to the same
			 * address, without STARTTLS (what Postfix does for
			 * smtp_tls_security_level=may). */
			log_info("dest=%s TLS handshake failed, retrying without TLS "
			         "relay=\"%s\"",
			         d->rd.key, log_escape_str(k->relay, relay, sizeof(relay)));
			smtp_client_free(k->c);
			k->c = NULL;
			slot_put(d->dl, k->slot);
			k->slot = NULL;
			k->no_tls = true;
			conn_try_address(k);
			return;
		}
		conn_setup_failed(k, r->status, NULL, conn_step_name(r->step, true));
		return;
	case SMTP_CLIENT_HS_REFUSED:
	case SMTP_CLIENT_HS_REJECTED: /* no greeting check here: never */
		conn_setup_failed(k, SMTP_CLIENT_OK, r->reply, conn_step_name(r->step, false));
		return;
	case SMTP_CLIENT_HS_NO_STARTTLS:
		snprintf(why, sizeof(why), "TLS is required, but was not offered by host %s",
		         k->relay);
		conn_address_failed(k, why);
		return;
	case SMTP_CLIENT_HS_NO_ESMTP:
		snprintf(why, sizeof(why), "TLS is required, but host %s offers no ESMTP",
		         k->relay);
		conn_address_failed(k, why);
		return;
	}
}

static void
conn_ready(struct dconn *k)
{
	struct dest *d = k->d;
	if (k->opening) {
		k->opening = false;
		d->n_opening--;
		char relay[LOG_VALUE_MAX];
		log_debug("dest=%s connected tls=\"%s\" relay=\"%s\"", d->rd.key,
		          smtp_client_tls_info(k->c) ? smtp_client_tls_info(k->c) : "none",
		          log_escape_str(k->relay, relay, sizeof(relay)));
	}
	k->st = DC_READY;
	dest_kick(d);
}

/* ------------------------------------------------------------ transactions */

static void conn_txn_end(struct dconn *k, bool rset);

/* The connection broke during a transaction: every recipient without an
 * answer is deferred, and the connection is gone. */
static void
conn_txn_failed(struct dconn *k, enum smtp_client_status status, const char *during)
{
	struct delivery_job *job = k->job;
	struct dest *d = k->d;
	char why[600];

	snprintf(why, sizeof(why), "%s with %s while %s",
	         status == SMTP_CLIENT_TIMEOUT ? "conversation timed out" : "lost connection",
	         k->relay, during);
	for (size_t i = 0; i < job->n_rcpts; i++) {
		struct delivery_rcpt *r = &job->rcpts[i];
		if (r->status == RCPT_PENDING)
			rcpt_set(r, RCPT_DEFERRED, "4.4.2", why, k->relay, false);
	}
	k->job = NULL;
	if (k->c != NULL) {
		smtp_client_free(k->c);
		k->c = NULL;
	}
	if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
	dest_finish_job(d, job);
	conn_release(k);
	dest_kick(d);
}

static void
conn_mail_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
             void *arg)
{
	struct dconn *k = arg;
	if (status != SMTP_CLIENT_OK) {
		conn_txn_failed(k, status, "sending MAIL FROM");
		return;
	}
	if (reply->code / 100 != 2) {
		k->mail_failed = true;
		k->mail_code = reply->code;
		reply_line(reply, k->mail_reply, sizeof(k->mail_reply));
		reply_dsn(reply, k->mail_dsn, sizeof(k->mail_dsn));
	}
}

static void
conn_rcpt_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
             void *arg)
{
	struct dconn *k = arg;
	struct delivery_job *job = k->job;
	if (status != SMTP_CLIENT_OK) {
		conn_txn_failed(k, status, "sending RCPT TO");
		return;
	}
	size_t i = k->rcpt_replies++;
	if (i >= job->n_rcpts)
		return;
	struct delivery_rcpt *r = &job->rcpts[i];
	if (k->mail_failed) {
		rcpt_set_code(r, k->mail_code, k->mail_dsn, k->mail_reply, k->relay);
		return;
	}
	if (reply->code / 100 == 2) {
		k->accepted[i] = true;
		k->n_accepted++;
		return;
	}
	char line[512], dsn[16];
	reply_line(reply, line, sizeof(line));
	reply_dsn(reply, dsn, sizeof(dsn));
	/* A 2xx here would be nonsense for a refusal: only 4xx/5xx get here. */
	rcpt_set_code(r, reply->code >= 400 ? reply->code : 450, dsn, line, k->relay);
}

static void
conn_final_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
              void *arg)
{
	struct dconn *k = arg;
	struct delivery_job *job = k->job;

	if (status != SMTP_CLIENT_OK) {
		/* RFC 1047: the message may have arrived; we cannot know. */
		conn_txn_failed(k, status,
		                "sending end of data -- message may be sent more than once");
		return;
	}
	char line[512], dsn[16];
	reply_line(reply, line, sizeof(line));
	reply_dsn(reply, dsn, sizeof(dsn));
	for (size_t i = 0; i < job->n_rcpts; i++)
		if (k->accepted[i])
			rcpt_set_code(&job->rcpts[i], reply->code, dsn, line, k->relay);
	conn_txn_end(k, reply->code / 100 != 2);
}

static void
conn_data_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
             void *arg)
{
	struct dconn *k = arg;
	struct delivery_job *job = k->job;

	if (status != SMTP_CLIENT_OK) {
		conn_txn_failed(k, status, "sending DATA command");
		return;
	}
	if (reply->code == 354) {
		/* With no recipient accepted a server should not say 354
		 * (RFC 2920 3.1); if it does, the message still has to end. */
		smtp_client_send_message(c, k->fd, (off_t)job->body_offset, conn_final_cb, k);
		return;
	}
	char line[512], dsn[16];
	reply_line(reply, line, sizeof(line));
	reply_dsn(reply, dsn, sizeof(dsn));
	for (size_t i = 0; i < job->n_rcpts; i++)
		if (k->accepted[i])
			rcpt_set_code(&job->rcpts[i], reply->code >= 400 ? reply->code : 450, dsn,
			              line, k->relay);
	conn_txn_end(k, true);
}

static void
conn_rset_cb(struct smtp_client *c, enum smtp_client_status status, const struct smtp_reply *reply,
             void *arg)
{
	struct dconn *k = arg;
	struct dest *d = k->d;
	if (status != SMTP_CLIENT_OK || reply->code / 100 != 2) {
		conn_release(k);
		dest_kick(d);
		return;
	}
	k->st = DC_READY;
	dest_kick(d);
}

/* Finish the job of the transaction that just ended; reuse the connection. */
static void
conn_txn_end(struct dconn *k, bool rset)
{
	struct delivery_job *job = k->job;
	struct dest *d = k->d;

	if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
	k->job = NULL;
	k->txns++;
	k->st = rset ? DC_RSET : DC_READY;
	uint64_t appended = d->dl->journal != NULL ? queue_journal_appended(d->dl->journal) : 0;
	dest_finish_job(d, job);
	/* done appended this transaction's deliveries to the journal: the
	 * next message waits until they are durable (dest_kick). */
	if (d->dl->journal != NULL && queue_journal_appended(d->dl->journal) > appended)
		k->record_seq = queue_journal_appended(d->dl->journal);
	if (k->txns >= CONN_MAX_TXNS) {
		conn_release(k);
	} else if (rset) {
		smtp_client_command(k->c, "RSET", conn_rset_cb, k);
		return;
	}
	dest_kick(d);
}

static void
conn_start_txn(struct dconn *k, struct delivery_job *job)
{
	struct smtp_client *c = k->c;
	const char *param = NULL;
	char line[2100];
	int n;

	evtimer_del(k->idle_ev);
	k->job = job;
	k->st = DC_TXN;
	k->rcpt_replies = 0;
	k->n_accepted = 0;
	k->mail_failed = false;
	free(k->accepted);
	k->accepted = xcalloc(job->n_rcpts ? job->n_rcpts : 1, sizeof(bool));
	for (size_t i = 0; i < job->n_rcpts; i++) {
		job->rcpts[i].status = RCPT_PENDING;
		job->rcpts[i].dsn[0] = '\0';
	}

	/* RFC 1870 6: do not send what the server said it will not take. */
	if (smtp_client_has_ext(c, "SIZE", &param) && param != NULL && *param != '\0') {
		unsigned long long limit = strtoull(param, NULL, 10);
		if (limit > 0 && job->size > limit) {
			char why[600];
			snprintf(why, sizeof(why),
			         "message size %" PRIu64 " exceeds size limit %llu of server %s",
			         job->size, limit, k->relay);
			for (size_t i = 0; i < job->n_rcpts; i++)
				rcpt_set(&job->rcpts[i], RCPT_BOUNCED, "5.3.4", why, k->relay,
				         false);
			conn_txn_end(k, false);
			return;
		}
	}
	/* RFC 6531 3.5: without SMTPUTF8 at the next hop it cannot go. */
	if (job->smtputf8 && !smtp_client_has_ext(c, "SMTPUTF8", NULL)) {
		char why[600];
		snprintf(why, sizeof(why), "SMTPUTF8 is required, but was not offered by host %s",
		         k->relay);
		for (size_t i = 0; i < job->n_rcpts; i++)
			rcpt_set(&job->rcpts[i], RCPT_BOUNCED, "5.6.7", why, k->relay, false);
		conn_txn_end(k, false);
		return;
	}
	const char *refused;
	k->fd = spool_open_message(job->path, &refused);
	if (k->fd < 0) {
		char why[600];
		snprintf(why, sizeof(why), "cannot open queue file: %s", refused);
		for (size_t i = 0; i < job->n_rcpts; i++)
			rcpt_set(&job->rcpts[i], RCPT_DEFERRED, "4.3.0", why, "none", false);
		conn_txn_end(k, false);
		return;
	}
	n = snprintf(line, sizeof(line), "MAIL FROM:<%s>", job->sender);
	if (smtp_client_has_ext(c, "SIZE", NULL))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " SIZE=%" PRIu64, job->size);
	if (job->body_8bit && smtp_client_has_ext(c, "8BITMIME", NULL))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " BODY=8BITMIME");
	if (job->smtputf8)
		snprintf(line + n, sizeof(line) - (size_t)n, " SMTPUTF8");
	smtp_client_command(c, line, conn_mail_cb, k);
	for (size_t i = 0; i < job->n_rcpts; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<%s>", job->rcpts[i].addr);
		smtp_client_command(c, line, conn_rcpt_cb, k);
	}
	smtp_client_command(c, "DATA", conn_data_cb, k);
}

/* ------------------------------------------------------------ public */

struct delivery *
delivery_new(const struct delivery_params *p, const char **error_r)
{
	struct delivery *dl = xcalloc(1, sizeof(*dl));

	LIST_INIT(&dl->dests);
	LIST_INIT(&dl->slots);
	SLIST_INIT(&dl->tls_verify);
	dl->base = p->base;
	dl->qc = p->qc;
	dl->dns = p->dns;
	dl->helo = xstrdup(p->helo_name);
	dl->tls_any = smtp_client_tls_ctx_new(NULL, false, error_r);
	if (dl->tls_any == NULL) {
		free(dl->helo);
		free(dl);
		return NULL;
	}
	dl->kick_ev = event_new(dl->base, -1, 0, delivery_kick_cb, dl);
	dl->journal = p->journal;
	return dl;
}

void
delivery_journal_synced(struct delivery *dl)
{
	event_active(dl->kick_ev, EV_TIMEOUT, 0);
}

void
delivery_set_config(struct delivery *dl, const struct queue_config *qc)
{
	dl->qc = qc;
}

void
delivery_set_helo(struct delivery *dl, const char *helo_name)
{
	/* Each connection copied the name it was made with. */
	free(dl->helo);
	dl->helo = xstrdup(helo_name);
}

void
delivery_free(struct delivery *dl)
{
	if (dl == NULL)
		return;
	while (!LIST_EMPTY(&dl->dests)) {
		struct dest *d = LIST_FIRST(&dl->dests);
		d->kicking = true;
		while (!LIST_EMPTY(&d->conns)) {
			struct dconn *k = LIST_FIRST(&d->conns);
			if (k->c != NULL) {
				smtp_client_free(k->c);
				k->c = NULL;
			}
			conn_release(k);
		}
		LIST_REMOVE(d, entry);
		free(d->addrs);
		free(d->ca_file);
		free(d);
	}
	for (size_t i = 0; i < dl->n_closing; i++)
		smtp_client_free(dl->closing[i]);
	free(dl->closing);
	while (!LIST_EMPTY(&dl->slots)) {
		struct addr_slot *s = LIST_FIRST(&dl->slots);
		LIST_REMOVE(s, entry);
		free(s);
	}
	while (!SLIST_EMPTY(&dl->tls_verify)) {
		struct tls_ctx *t = SLIST_FIRST(&dl->tls_verify);
		SLIST_REMOVE_HEAD(&dl->tls_verify, entry);
		SSL_CTX_free(t->ctx);
		free(t->ca_file);
		free(t);
	}
	SSL_CTX_free(dl->tls_any);
	event_free(dl->kick_ev);
	free(dl->helo);
	free(dl);
}

void
delivery_submit(struct delivery *dl, const struct route_decision *rd, struct delivery_job *job)
{
	struct dest *d = dest_get(dl, rd);

	for (size_t i = 0; i < job->n_rcpts; i++)
		job->rcpts[i].status = RCPT_PENDING;
	STAILQ_INSERT_TAIL(&d->jobs, job, entry);
	d->n_jobs++;
	/* From the loop: done must never run inside delivery_submit(). */
	event_active(dl->kick_ev, EV_TIMEOUT, 0);
}

void
delivery_counts(const struct delivery *dl, unsigned *external_r, unsigned *internal_r,
                unsigned *waiting_r)
{
	const struct dest *d;
	unsigned waiting = 0;

	LIST_FOREACH(d, &dl->dests, entry)
	{
		waiting += (unsigned)d->n_jobs;
	}
	*external_r = dl->n_conns[0];
	*internal_r = dl->n_conns[1];
	*waiting_r = waiting;
}

void
delivery_forget_failures(struct delivery *dl)
{
	struct dest *d;

	LIST_FOREACH(d, &dl->dests, entry)
	{
		if (d->ds == DS_READY && d->n_conns == 0)
			d->ds = DS_NEW;
	}
}
