/* SPDX-License-Identifier: ISC */
/*
 * auth_server.c - the auth process (see auth_server.h): the one process that
 * reads credential stores. It owns an event_base, accepts SMTP workers on the
 * UNIX socket the master bound, greets each with HELLO, answers each VERIFY
 * with one RESULT, and logs one line per verification.
 *
 * A VERIFY becomes an auth_job handed to the first configured source in
 * auth_sources[]; the source finishes it with auth_job_done(), usually after
 * a hash check on the thread pool. A job outlives its worker connection: if
 * the worker goes away first, the result is logged and dropped.
 *
 * Several sources: a job that a source answers with AUTH_FAIL and reason
 * AUTH_REASON_UNKNOWN_USER moves on to the next configured source; any other answer is
 * final. (One place to change when a "user must be unique across sources"
 * policy arrives: auth_job_done().)
 *
 * Protection ([protection], see auth_cache.h, auth_throttle.h, auth_alert.h)
 * sits in this dispatch path, so every source gets it, and the auth process
 * checks it itself: nothing a worker says but the request is believed.
 *   1. Rate: each worker connection may cause worker_failure_rate failed
 *      checks per second (a token bucket; a check takes a token before any
 *      source is asked and gives it back unless it fails). Past that, its
 *      requests wait: a compromised worker guesses no faster.
 *   2. Throttle: the attempt takes room under its client, pair and login
 *      (normalized) before any source is asked; a locked-out client or
 *      pair gets tempfail reason=locked at once; a login under the lockout
 *      shield may only be answered from the cache; no room yet: the
 *      attempt waits until the ones in flight are answered.
 *   3. Before each source the cache is looked up (PLAIN and LOGIN only);
 *      each source's answer is stored in the cache, or, if it is a
 *      tempfail, a stale positive entry may answer instead.
 *   4. A source that has found the user names its canonical identity
 *      (auth_job_identified()) before it checks the password: the attempt
 *      then takes room under that identity too.
 *   5. The answer settles the attempt with the throttle (a failure is
 *      counted, and may start a lockout) and feeds the alerts; a failure the
 *      throttle wants delayed is held here for that long before its RESULT
 *      leaves, so a worker cannot skip the delay.
 * Alert mails and hook runs go to the queue process over the alert channel
 * (auth_alert_link.h): this process writes no spool file and starts no
 * shell.
 *
 * Reload: the master hands over the configuration text it has validated
 * (lib/ctlchan.h). The sources of the new configuration are set up as a new
 * generation (struct auth_gen) next to the old one, which lives on until
 * the last job started under it has its answer: a login in flight during a
 * reload is answered by the sources it started with, and none is failed.
 * If a new source cannot be set up, nothing changes and the master is told
 * why. [protection] and [alerts] change in place: the throttle keeps its
 * counters and lockouts (auth_throttle_reconfigure()), the alerts their
 * windows; the cache is emptied, as on any reload. HELLO is sent again when
 * the capabilities changed.
 *
 * Signals arrive as libevent signal events: SIGHUP re-reads every source's
 * files under the running configuration (a source keeps its old data when
 * that fails) and empties the auth cache; SIGTERM and SIGINT stop the loop
 * and free everything, waiting for hash checks already running.
 */
#include "auth_server.h"
#include "auth_admin.h"
#include "auth_alert.h"
#include "auth_alert_link.h"
#include "auth_cache.h"
#include "auth_source.h"
#include "auth_throttle.h"
#include "login_norm.h"
#include "protection_config.h"
#include "shared_config.h"
#include "shared_redis.h"
#include "shared_send.h"
#include "../authwire/auth_proto.h"
#include "../lib/config.h"
#include "../lib/ctlchan.h"
#include "../lib/ipc.h"
#include "../lib/keyhash.h"
#include "../lib/log.h"
#include "../lib/readiness.h"
#include "../lib/wbatch.h"
#include "../lib/threadpool.h"
#include "../metrics/metric.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

/* The registry: one line per source, consulted in this order. */
static const struct auth_source_ops *const auth_sources[] = {
        &auth_source_file,
        &auth_source_ldap,    /* after the file: local accounts never wait on a directory */
        &auth_source_forward, /* last: an upstream cannot tell unknown from wrong */
};

#define AUTH_DEFAULT_THREADS 2
/* Jobs one worker may have in flight; more get TEMPFAIL reason=busy. A worker
 * caps itself lower (auth_client.c), so this only stops a broken one. */
#define AUTH_CONN_MAX_JOBS 8192
/* Unsent RESULT bytes above which we stop reading that worker's requests. */
#define AUTH_CONN_MAX_OUTPUT (1024 * 1024)
/* A held failure leaves at least this long before the worker gives up on
 * it ([auth] request_timeout); the rest of the delay is the worker's. */
#define AUTH_HOLD_MARGIN_MS 1000
#define AUTH_DEFAULT_REQUEST_TIMEOUT 30

/* What the last answer said of a source's reachability (for `authrelay
 * status`): a tempfail is "down", any other answer "up". */
enum auth_reach { REACH_UNKNOWN, REACH_UP, REACH_DOWN };

struct auth_active {
	const struct auth_source_ops *ops;
	void *state;
	enum auth_reach reach;
	uint64_t reach_since_ms;
};

struct auth_held;

/* The sources of one configuration, with the config they read and the
 * thread pool they hash on; shared by every job started under it. */
struct auth_gen {
	LIST_ENTRY(auth_gen) entry;
	unsigned refs;
	uint32_t number; /* the master's generation; 0 for the one of the start */
	const struct config *cfg;
	struct config *owned_cfg; /* cfg when this generation owns it */
	struct auth_env env;
	struct threadpool *pool;
	struct auth_active *sources;
	size_t n_sources;
};

struct auth_conn {
	LIST_ENTRY(auth_conn) entry;
	struct auth_server *srv;
	struct bufferevent *bev;
	struct wbatch *wb; /* results leave once per loop round */
	unsigned long id;  /* for log lines */
	unsigned n_jobs;
	bool read_paused; /* output over AUTH_CONN_MAX_OUTPUT */
	/* worker_failure_rate: a token bucket of failed checks */
	double tokens;
	uint64_t tokens_at_ms;
	TAILQ_HEAD(, auth_job) rate_wait; /* jobs waiting for a token */
	struct event *rate_ev;
	LIST_HEAD(, auth_held) held; /* failures held for their delay */
	unsigned n_held;
};

/* A RESULT held back for the throttle's delay. */
struct auth_held {
	LIST_ENTRY(auth_held) entry;
	struct auth_conn *conn;
	struct ipc_msg *msg;
	struct event *ev;
};

struct auth_job {
	LIST_ENTRY(auth_job) entry;
	TAILQ_ENTRY(auth_job) rate_entry; /* in conn->rate_wait */
	struct auth_server *srv;
	struct auth_conn *conn; /* NULL once the worker has gone */
	struct ipc_msg *msg;    /* owns the strings in req; wiped on free */
	struct auth_request req;
	struct timespec start;
	struct auth_gen *gen; /* the sources it started with (a reference) */
	size_t source;        /* index in gen->sources being consulted */
	char *addresses;      /* the user's addresses (auth_job_set_addresses) */
	char *norm;           /* the login normalized (login_norm.h) */
	struct auth_throttle_ticket *ticket;
	bool rate_waiting; /* in conn->rate_wait */
	bool has_token;    /* took a token of conn's bucket */
	bool shielded;     /* the login is under the lockout shield */
	/* auth_job_identified() waiting for the throttle */
	auth_job_resume_cb *resume;
	void *resume_arg;
	bool gate_refused;     /* the throttle stopped it after the lookup */
	const char *lock_note; /* "lock=..." of an identity's lockout */
	/* The final answer, while the throttle settles it. */
	enum auth_result result;
	enum auth_reason reason;
	char *identity;
	const char *source_name;
	const char *note;
};

struct auth_server {
	const struct config *cfg;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *sig_hup, *sig_term, *sig_int;
	struct auth_gen *gen;       /* the current sources (a reference) */
	LIST_HEAD(, auth_gen) gens; /* every generation not freed yet */
	struct ctlchan *ctl;        /* from the master: reloads */
	const char *workdir;        /* the users file's directory, or NULL */
	uint32_t caps;
	LIST_HEAD(, auth_conn) conns;
	LIST_HEAD(, auth_job) jobs;
	unsigned long next_conn_id;
	/* [protection] and [alerts] */
	struct protection_config prot;
	struct keyhash *kh;
	struct keyhash *pw_kh; /* [shared] secret_file's, or NULL */
	struct auth_cache *cache;
	struct auth_throttle *throttle;
	struct auth_alert *alert;
	struct auth_alert_link *alert_link; /* to the queue process */
	struct auth_admin *admin;           /* the master's questions */
	struct event *tick;
	/* [shared]: Redis, and the sending counts kept there (NULL: off) */
	struct shared_config shared_cfg;
	struct shared_redis *redis;
	struct shared_send *shared_send;
};

/* A worker's COUNT while Redis answers; the worker may go meanwhile. */
struct auth_count_job {
	struct auth_server *srv;
	unsigned long conn_id;
	uint32_t id;
};

static void auth_conn_close(struct auth_conn *conn);

static long
elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

static uint64_t
elapsed_us(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)((now.tv_sec - start->tv_sec) * 1000000 +
	                  (now.tv_nsec - start->tv_nsec) / 1000);
}

static uint64_t
now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static void
auth_conn_check_output(struct auth_conn *conn)
{
	if (!conn->read_paused &&
	    evbuffer_get_length(bufferevent_get_output(conn->bev)) > AUTH_CONN_MAX_OUTPUT) {
		/* The worker does not read its results: stop taking requests
		 * until it has (auth_conn_on_write resumes). */
		conn->read_paused = true;
		bufferevent_disable(conn->bev, EV_READ);
	}
}

static void
auth_held_free(struct auth_held *h)
{
	LIST_REMOVE(h, entry);
	h->conn->n_held--;
	event_free(h->ev);
	ipc_msg_free(h->msg);
	free(h);
}

static void
auth_held_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct auth_held *h = arg;
	struct auth_conn *conn = h->conn;

	if (ipc_msg_send(h->msg, bufferevent_get_output(conn->bev)) < 0)
		fatal("auth: RESULT frame too big");
	auth_held_free(h);
	auth_conn_check_output(conn);
}

/* How long a failure may be held here: the worker waits request_timeout
 * for its RESULT, so what it has waited already and a margin come off. */
static uint32_t
auth_hold_cap(const struct auth_server *srv, const struct timespec *start)
{
	unsigned timeout = srv->cfg->auth_request_timeout > 0 ? srv->cfg->auth_request_timeout
	                                                      : AUTH_DEFAULT_REQUEST_TIMEOUT;
	long left = (long)timeout * 1000 - elapsed_ms(start) - AUTH_HOLD_MARGIN_MS;

	return left > 0 ? (uint32_t)left : 0;
}

/* The log line and the RESULT frame for one finished verification. note is
 * NULL or log fields of the protection ("cache=hit", "lock=client"). A
 * failure with a delay_ms is held that long before its RESULT leaves (as
 * long as the worker waits for it; the RESULT's delay_ms is what is left). */
static void
auth_finish(struct auth_conn *conn, const struct auth_request *req, const struct timespec *start,
            enum auth_result result, const char *identity, enum auth_reason reason,
            const char *source, const char *addresses, uint32_t delay_ms, const char *note)
{
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], mech[32], client[128], lst[128], extra[96],
	        id[AUTH_MAX_LOGIN * 4 + 24];
	uint32_t hold = 0;
	struct auth_reply rep;
	struct ipc_msg *m;
	int n;

	n = snprintf(extra, sizeof(extra), "%s%s", note != NULL ? " " : "",
	             note != NULL ? note : "");
	if (delay_ms > 0 && n >= 0 && (size_t)n < sizeof(extra))
		snprintf(extra + n, sizeof(extra) - (size_t)n, " delay_ms=%u", delay_ms);
	id[0] = '\0';
	if (result == AUTH_OK && identity != NULL && strcmp(identity, req->login) != 0) {
		/* The canonical identity the session goes on as (an LDAP
		 * entry's DN): from a directory, so escaped too. */
		memcpy(id, " identity=\"", sizeof(" identity=\""));
		log_escape_str(identity, id + strlen(id), sizeof(id) - strlen(id) - 1);
		strcat(id, "\"");
	}

	/* Everything but reason and source came from a worker: escape it. The
	 * fields a client chose (mechanism, login) come last, so that a tool
	 * reading client= (fail2ban) never reaches client text first; the
	 * identity a directory gave follows them. */
	log_info("s=%s auth client=%s listener=%s result=%s reason=%s source=%s ms=%ld%s "
	         "mech=%s user=\"%s\"%s",
	         req->session[0] != '\0' ? log_escape_str(req->session, sess, sizeof(sess)) : "-",
	         req->client[0] != '\0' ? log_escape_str(req->client, client, sizeof(client)) : "-",
	         req->listener[0] != '\0' ? log_escape_str(req->listener, lst, sizeof(lst)) : "-",
	         auth_result_name(result), auth_reason_name(reason), source, elapsed_ms(start),
	         extra, log_escape_str(req->mech, mech, sizeof(mech)),
	         log_escape_str(req->login, user, sizeof(user)), id);
	metrics_inc(M_AUTH_ATTEMPTS, metric_mech(req->mech), metric_source(source), result, reason);
	metrics_observe(M_AUTH_DURATION, elapsed_us(start), metric_source(source));
	if (conn == NULL)
		return;

	if (result == AUTH_FAIL && delay_ms > 0) {
		hold = auth_hold_cap(conn->srv, start);
		if (hold > delay_ms)
			hold = delay_ms;
	}
	rep.id = req->id;
	rep.result = result;
	rep.identity = result == AUTH_OK ? (identity != NULL ? identity : req->login) : "";
	rep.reason = reason;
	rep.delay_ms = result == AUTH_FAIL ? delay_ms - hold : 0;
	rep.addresses = result == AUTH_OK && addresses != NULL ? addresses : "";
	m = auth_proto_result(&rep);
	if (hold > 0) {
		struct auth_held *h = xcalloc(1, sizeof(*h));
		struct timeval tv = {hold / 1000, (long)(hold % 1000) * 1000};
		h->conn = conn;
		h->msg = m;
		h->ev = evtimer_new(conn->srv->base, auth_held_on_timer, h);
		/* From now, not from the loop's cached time: the hold is a
		 * floor, never a little short. */
		event_base_update_cache_time(conn->srv->base);
		if (h->ev == NULL || evtimer_add(h->ev, &tv) < 0)
			fatal("auth: cannot hold a RESULT");
		LIST_INSERT_HEAD(&conn->held, h, entry);
		conn->n_held++;
		return;
	}
	if (ipc_msg_send(m, bufferevent_get_output(conn->bev)) < 0)
		fatal("auth: RESULT frame too big"); /* bounded strings: cannot happen */
	ipc_msg_free(m);
	auth_conn_check_output(conn);
}

const struct auth_request *
auth_job_request(const struct auth_job *job)
{
	return &job->req;
}

static void auth_gen_unref(struct auth_gen *g);

static void
auth_job_free(struct auth_job *job)
{
	LIST_REMOVE(job, entry);
	if (job->rate_waiting)
		TAILQ_REMOVE(&job->conn->rate_wait, job, rate_entry);
	auth_gen_unref(job->gen);
	if (job->conn != NULL)
		job->conn->n_jobs--;
	auth_throttle_ticket_free(job->ticket);
	ipc_msg_free(job->msg);
	free(job->addresses);
	free(job->norm);
	free(job->identity);
	free(job);
}

void
auth_job_set_addresses(struct auth_job *job, const char *addresses)
{
	free(job->addresses);
	job->addresses = addresses != NULL ? xstrdup(addresses) : NULL;
}

/* Failures the throttle and the alerts count: a wrong password or an
 * unknown user. Never a tempfail (the directory being down is not the
 * client's doing), nor a mechanism the user's entry cannot serve. */
static bool
auth_counted_failure(enum auth_result result, enum auth_reason reason)
{
	return result == AUTH_FAIL &&
	       (reason == AUTH_REASON_BAD_PASSWORD || reason == AUTH_REASON_UNKNOWN_USER);
}

/* Whether the next configured source gets the job: only for a user this
 * one does not know. */
bool
auth_server_passes_on(enum auth_result result, enum auth_reason reason)
{
	return result == AUTH_FAIL && reason == AUTH_REASON_UNKNOWN_USER;
}

static bool
auth_pass_on(const struct auth_job *job, enum auth_result result, enum auth_reason reason)
{
	return auth_server_passes_on(result, reason) && job->source + 1 < job->gen->n_sources;
}

const struct auth_source_ops *
auth_server_source(size_t i)
{
	return i < AR_NELEM(auth_sources) ? auth_sources[i] : NULL;
}

/* ------------------------------------------------ worker_failure_rate */

static void auth_job_admit(struct auth_job *job);

/* Refill conn's bucket: worker_failure_rate tokens a second, at most one
 * second's worth. */
static void
rate_refill(struct auth_conn *conn, uint64_t now)
{
	double rate = conn->srv->prot.worker_failure_rate;

	if (now > conn->tokens_at_ms)
		conn->tokens += rate * (double)(now - conn->tokens_at_ms) / 1000.0;
	if (conn->tokens > rate)
		conn->tokens = rate;
	conn->tokens_at_ms = now;
}

/* Arm the timer for the first waiting job's token. */
static void
rate_arm(struct auth_conn *conn)
{
	double rate = conn->srv->prot.worker_failure_rate;
	double missing = conn->tokens < 1.0 ? 1.0 - conn->tokens : 0.0;
	long ms = (long)(missing * 1000.0 / rate) + 1;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (!TAILQ_EMPTY(&conn->rate_wait))
		evtimer_add(conn->rate_ev, &tv);
}

/* Give waiting jobs the tokens there are, oldest first. */
static void
rate_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct auth_conn *conn = arg;
	struct auth_job *job;

	rate_refill(conn, now_ms());
	while ((job = TAILQ_FIRST(&conn->rate_wait)) != NULL && conn->tokens >= 1.0) {
		TAILQ_REMOVE(&conn->rate_wait, job, rate_entry);
		job->rate_waiting = false;
		conn->tokens -= 1.0;
		job->has_token = true;
		auth_job_admit(job); /* may finish other jobs: the loop re-reads */
	}
	rate_arm(conn);
}

/* A token for job, or a place in the line (false). */
static bool
rate_take(struct auth_job *job)
{
	struct auth_conn *conn = job->conn;

	rate_refill(conn, now_ms());
	if (TAILQ_EMPTY(&conn->rate_wait) && conn->tokens >= 1.0) {
		conn->tokens -= 1.0;
		job->has_token = true;
		return true;
	}
	TAILQ_INSERT_TAIL(&conn->rate_wait, job, rate_entry);
	job->rate_waiting = true;
	if (!evtimer_pending(conn->rate_ev, NULL))
		rate_arm(conn);
	return false;
}

/* The check did not fail: its token goes back. */
static void
rate_give_back(struct auth_job *job)
{
	struct auth_conn *conn = job->conn;

	if (!job->has_token)
		return;
	job->has_token = false;
	if (conn == NULL)
		return;
	conn->tokens += 1.0;
	if (!TAILQ_EMPTY(&conn->rate_wait))
		event_active(conn->rate_ev, EV_TIMEOUT, 1); /* not from inside a job */
}

/* ------------------------------------------------------------ a job's life */

static void
auth_job_on_settled(void *arg, const struct auth_throttle_result *tr)
{
	struct auth_job *job = arg;
	struct auth_server *srv = job->srv;
	const struct auth_request *req = &job->req;
	uint64_t now = now_ms();

	if (auth_counted_failure(job->result, job->reason)) {
		if (tr->delay_ms > 0)
			metrics_observe(M_AUTH_DELAYS, tr->delay_ms);
		if (tr->locked != THROTTLE_NONE)
			metrics_inc(M_AUTH_LOCKOUTS_STARTED,
			            metric_scope(auth_throttle_scope_name(tr->locked)));
		auth_alert_failure(srv->alert, job->norm, req->client, now);
	} else {
		rate_give_back(job);
		if (job->result == AUTH_OK)
			auth_alert_success(srv->alert, job->identity, req->client, now);
	}
	auth_finish(job->conn, req, &job->start, job->result, job->identity, job->reason,
	            job->source_name, job->addresses,
	            auth_counted_failure(job->result, job->reason) ? tr->delay_ms : 0, job->note);
	auth_job_free(job);
}

/* The final answer to a job: the throttle settles it (counts a failure,
 * gives the room back otherwise), then it is logged, sent (a failure maybe
 * held for the throttle's delay) and the job freed. */
static void
auth_job_final(struct auth_job *job, enum auth_result result, const char *identity,
               enum auth_reason reason, const char *source, const char *note)
{
	enum throttle_outcome outcome = THROTTLE_RELEASE;

	job->result = result;
	job->reason = reason;
	free(job->identity);
	/* The canonical identity: the source's, else the login normalized
	 * (SMTP forwarding: what the upstream took). */
	job->identity =
	        result == AUTH_OK
	                ? xstrdup(identity != NULL && identity[0] != '\0' ? identity : job->norm)
	                : NULL;
	job->source_name = source;
	job->note = note;
	if (auth_counted_failure(result, reason))
		outcome = THROTTLE_FAILURE;
	else if (result == AUTH_OK)
		outcome = THROTTLE_SUCCESS;
	auth_throttle_settle(job->ticket, outcome, now_ms(), auth_job_on_settled, job);
}

/* Under the lockout shield the cache answers only a success the source
 * gave to this very client address (the owner's usual place, as Microsoft's
 * Smart Lockout keeps familiar locations in): from anywhere else the cache
 * would be an oracle that answers guesses without limit for as long as the
 * lockout lasts, since a shielded attempt reaches no source and is not
 * counted. Everything else is 454 locked, a known wrong password included. */
static bool
shield_lets_in(const struct auth_cache_hit *hit, const char *client)
{
	return hit->result == AUTH_OK && hit->client[0] != '\0' && strcmp(hit->client, client) == 0;
}

static void
auth_job_start(struct auth_job *job)
{
	struct auth_server *srv = job->srv;
	const struct auth_request *req = &job->req;

	for (;;) {
		struct auth_active *a = &job->gen->sources[job->source];
		uint8_t key[KEYHASH_LEN];
		struct auth_cache_hit hit;

		if (auth_cache_cacheable(srv->cache, req->mech)) {
			auth_cache_key(srv->cache, a->ops->name, req->login, req->secret,
			               req->secret_len, key);
			if (auth_cache_lookup(srv->cache, key, now_ms(), &hit) &&
			    !(job->shielded && !shield_lets_in(&hit, req->client))) {
				metrics_inc(M_AUTH_CACHE, MC_HIT);
				if (auth_pass_on(job, hit.result, hit.reason)) {
					job->source++;
					continue;
				}
				if (hit.result == AUTH_OK)
					auth_job_set_addresses(job, hit.addresses);
				auth_job_final(job, hit.result, hit.identity, hit.reason,
				               a->ops->name, "cache=hit");
				return;
			}
			metrics_inc(M_AUTH_CACHE, MC_MISS);
		}
		if (job->shielded) {
			/* The lockout shield: this login no longer reaches a
			 * source until the lockout ends. */
			auth_job_final(job, AUTH_TEMPFAIL, NULL, AUTH_REASON_LOCKED, "none",
			               "lock=login");
			return;
		}
		/* May call auth_job_done() before returning: no touching job after. */
		a->ops->verify(a->state, job);
		return;
	}
}

static void
auth_source_reached(struct auth_active *a, bool up, uint64_t now)
{
	enum auth_reach r = up ? REACH_UP : REACH_DOWN;

	if (a->reach != r) {
		a->reach = r;
		a->reach_since_ms = now;
	}
}

/* auth_admin_sources_cb: the sources for `authrelay status`. */
static size_t
auth_admin_sources(void *arg, struct auth_admin_source *out, size_t max)
{
	static const char *const names[] = {
	        [REACH_UNKNOWN] = "unknown", [REACH_UP] = "up", [REACH_DOWN] = "down"};
	struct auth_server *srv = arg;
	uint64_t now = now_ms();
	size_t n = 0;

	for (size_t i = 0; i < srv->gen->n_sources && n < max; i++, n++) {
		const struct auth_active *a = &srv->gen->sources[i];
		out[n].name = a->ops->name;
		out[n].state = names[a->reach];
		out[n].seconds = (uint32_t)((now - a->reach_since_ms) / 1000);
	}
	/* [shared]: the Redis link, down while the gateway counts alone. */
	if (srv->redis != NULL && n < max) {
		out[n].name = "shared-redis";
		out[n].state = shared_redis_up(srv->redis) ? "up" : "down";
		out[n].seconds = shared_redis_state_seconds(srv->redis);
		n++;
	}
	return n;
}

static const char *
lock_note(enum auth_throttle_scope scope)
{
	switch (scope) {
	case THROTTLE_CLIENT:
		return "lock=client";
	case THROTTLE_CLIENT_LOGIN:
		return "lock=client_login";
	default:
		return "lock=login";
	}
}

/* The throttle's word on a new attempt. */
static void
auth_job_on_admit(void *arg, enum auth_throttle_admission a, enum auth_throttle_scope scope)
{
	struct auth_job *job = arg;

	switch (a) {
	case THROTTLE_GO:
		auth_job_start(job);
		return;
	case THROTTLE_SHIELDED:
		/* The cache may still answer: a correct password gets in. */
		job->shielded = true;
		auth_job_start(job);
		return;
	case THROTTLE_REFUSED:
		/* A locked-out client asks no source and no cache. */
		auth_job_final(job, AUTH_TEMPFAIL, NULL, AUTH_REASON_LOCKED, "none",
		               lock_note(scope));
		return;
	case THROTTLE_BUSY:
		auth_job_final(job, AUTH_TEMPFAIL, NULL, AUTH_REASON_BUSY, "none", NULL);
		return;
	}
}

/* A job with its token goes to the throttle. */
static void
auth_job_admit(struct auth_job *job)
{
	auth_throttle_admit(job->ticket, now_ms(), auth_job_on_admit, job);
}

static void
auth_job_on_identity(void *arg, enum auth_throttle_admission a, enum auth_throttle_scope scope)
{
	struct auth_job *job = arg;
	auth_job_resume_cb *resume = job->resume;

	job->resume = NULL;
	job->gate_refused = a != THROTTLE_GO;
	switch (a) {
	case THROTTLE_GO:
		resume(job->resume_arg, AUTH_REASON_OK);
		return;
	case THROTTLE_SHIELDED:
	case THROTTLE_REFUSED:
		job->lock_note = lock_note(scope);
		resume(job->resume_arg, AUTH_REASON_LOCKED);
		return;
	case THROTTLE_BUSY:
		resume(job->resume_arg, AUTH_REASON_BUSY);
		return;
	}
}

void
auth_job_identified(struct auth_job *job, const char *identity, auth_job_resume_cb *resume,
                    void *arg)
{
	job->resume = resume;
	job->resume_arg = arg;
	auth_throttle_admit_identity(job->ticket, identity, job->req.secret, job->req.secret_len,
	                             now_ms(), auth_job_on_identity, job);
}

void
auth_job_done(struct auth_job *job, enum auth_result result, const char *identity,
              enum auth_reason reason)
{
	struct auth_server *srv = job->srv;
	const struct auth_request *req = &job->req;
	const char *name = job->gen->sources[job->source].ops->name;
	const char *note = NULL;
	uint64_t now = now_ms();
	bool reachable;

	if (job->gate_refused) {
		/* Our own throttle stopped the source (auth_job_identified()):
		 * nothing about the source, nothing to cache, and no stale
		 * answer may stand in for a lockout. */
		auth_job_final(job, result, NULL, reason, name,
		               reason == AUTH_REASON_LOCKED ? job->lock_note : NULL);
		return;
	}
	/* A source that answers with a configuration fault is reachable. */
	reachable = result != AUTH_TEMPFAIL || reason == AUTH_REASON_PASSWORD_UNREADABLE;
	auth_alert_source(srv->alert, name, reachable, now);
	auth_source_reached(&job->gen->sources[job->source], reachable, now);
	if (result == AUTH_FAIL && reason == AUTH_REASON_ACCOUNT_LOCKED)
		auth_alert_directory_lockout(srv->alert, req->login, req->client, name, now);
	if (auth_cache_cacheable(srv->cache, req->mech)) {
		uint8_t key[KEYHASH_LEN];
		struct auth_cache_hit hit;

		auth_cache_key(srv->cache, name, req->login, req->secret, req->secret_len, key);
		if (result != AUTH_TEMPFAIL) {
			auth_cache_store(srv->cache, key, now, result,
			                 identity != NULL ? identity : job->norm, reason,
			                 job->addresses, req->client);
		} else if (auth_cache_lookup_stale(srv->cache, key, now, &hit)) {
			/* The source cannot answer (directory or upstream
			 * down, or a directory that could not be asked for
			 * the uniqueness rule): a recent success with this
			 * very password stands in, for at most
			 * cache_stale_ttl. */
			auth_job_set_addresses(job, hit.addresses);
			result = AUTH_OK;
			identity = hit.identity;
			reason = AUTH_REASON_OK;
			note = "cache=stale";
			metrics_inc(M_AUTH_CACHE, MC_STALE);
		}
	}
	if (auth_pass_on(job, result, reason)) {
		job->source++;
		auth_job_start(job);
		return;
	}
	auth_job_final(job, result, identity, reason, name, note);
}

static bool
auth_mech_known(const char *mech)
{
	return ascii_strcasecmp(mech, "PLAIN") == 0 || ascii_strcasecmp(mech, "LOGIN") == 0 ||
	       ascii_strcasecmp(mech, "CRAM-MD5") == 0;
}

/* One VERIFY from a worker; msg is ours from here on. Returns -1 if it is
 * malformed (the caller drops the worker). */
static int
auth_conn_verify(struct auth_conn *conn, struct ipc_msg *msg)
{
	struct auth_server *srv = conn->srv;
	struct auth_job *job = xcalloc(1, sizeof(*job));
	enum auth_reason reason = AUTH_REASON_OK;
	enum auth_result result = AUTH_FAIL;

	clock_gettime(CLOCK_MONOTONIC, &job->start);
	job->srv = srv;
	job->conn = conn;
	job->msg = msg;
	if (ipc_msg_type(msg) != AUTH_MSG_VERIFY || auth_proto_parse_verify(msg, &job->req) < 0) {
		ipc_msg_free(msg);
		free(job);
		return -1;
	}

	/* Answers that need no source. */
	if (!auth_mech_known(job->req.mech)) {
		reason = AUTH_REASON_MECH_UNAVAILABLE;
	} else if (job->req.login[0] == '\0') {
		reason = AUTH_REASON_UNKNOWN_USER;
	} else if (job->req.secret_len == 0) {
		/* RFC 4616 2 forbids it, and an empty password is an
		 * unauthenticated bind to LDAP (RFC 4513 5.1.2). */
		reason = AUTH_REASON_EMPTY_PASSWORD;
	} else if (srv->gen->n_sources == 0) {
		result = AUTH_TEMPFAIL;
		reason = AUTH_REASON_NO_SOURCE;
	} else if (conn->n_jobs + conn->n_held >= AUTH_CONN_MAX_JOBS) {
		result = AUTH_TEMPFAIL;
		reason = AUTH_REASON_BUSY;
	} else {
		job->norm = login_norm_fold(job->req.login, strlen(job->req.login));
		job->ticket =
		        auth_throttle_ticket_new(srv->throttle, job->req.client, job->req.login,
		                                 job->req.secret, job->req.secret_len);
		/* It finishes with the sources it starts with, whatever a
		 * reload brings meanwhile. */
		job->gen = srv->gen;
		job->gen->refs++;
		LIST_INSERT_HEAD(&srv->jobs, job, entry);
		conn->n_jobs++;
		if (rate_take(job))
			auth_job_admit(job);
		return 0;
	}
	auth_finish(conn, &job->req, &job->start, result, NULL, reason, "none", NULL, 0, NULL);
	ipc_msg_free(msg);
	free(job);
	return 0;
}

/* A NOTIFY from a worker (an event for the alerts); msg is ours. Returns -1
 * if it is malformed. Unknown events are ignored: a newer worker may send
 * more kinds. */
static int
auth_conn_notify(struct auth_conn *conn, struct ipc_msg *msg)
{
	struct auth_notify n;
	int r = auth_proto_parse_notify(msg, &n);

	if (r == 0 && strcmp(n.event, "send_limit") == 0)
		auth_alert_send_limit(conn->srv->alert, n.user, n.client, n.limit, n.count, n.max,
		                      now_ms());
	/* A queued message: counted for the other gateways too. */
	if (r == 0 && strcmp(n.event, "sent") == 0 && conn->srv->shared_send != NULL)
		shared_send_record(conn->srv->shared_send, n.user, n.count, (uint64_t)time(NULL));
	ipc_msg_free(msg);
	return r;
}

static struct auth_conn *
auth_conn_by_id(struct auth_server *srv, unsigned long id)
{
	for (struct auth_conn *c = LIST_FIRST(&srv->conns); c != NULL; c = LIST_NEXT(c, entry))
		if (c->id == id)
			return c;
	return NULL;
}

static void
auth_count_done(bool shared, unsigned msgs, unsigned rcpts, void *arg)
{
	struct auth_count_job *cj = arg;
	struct auth_conn *conn = auth_conn_by_id(cj->srv, cj->conn_id);
	struct auth_counts c = {.id = cj->id, .shared = shared, .msgs = msgs, .rcpts = rcpts};

	if (conn != NULL) {
		struct ipc_msg *m = auth_proto_counts(&c);
		if (ipc_msg_send(m, bufferevent_get_output(conn->bev)) < 0)
			fatal("auth: COUNTS frame too big");
		ipc_msg_free(m);
	}
	free(cj);
}

/* COUNT: the user's sending counts across the gateways, from Redis; "none"
 * at once without it (the worker's own counts stand). */
static int
auth_conn_count(struct auth_conn *conn, struct ipc_msg *msg)
{
	struct auth_server *srv = conn->srv;
	struct auth_count_job *cj;
	const char *user;
	uint32_t id;

	if (auth_proto_parse_count(msg, &id, &user) < 0) {
		ipc_msg_free(msg);
		return -1;
	}
	cj = xcalloc(1, sizeof(*cj));
	cj->srv = srv;
	cj->conn_id = conn->id;
	cj->id = id;
	if (srv->shared_send == NULL)
		auth_count_done(false, 0, 0, cj);
	else
		shared_send_counts(srv->shared_send, user, (uint64_t)time(NULL), auth_count_done,
		                   cj);
	ipc_msg_free(msg);
	return 0;
}

static int
auth_conn_message(struct auth_conn *conn, struct ipc_msg *msg)
{
	if (ipc_msg_type(msg) == AUTH_MSG_NOTIFY)
		return auth_conn_notify(conn, msg);
	if (ipc_msg_type(msg) == AUTH_MSG_COUNT)
		return auth_conn_count(conn, msg);
	return auth_conn_verify(conn, msg);
}

static void
auth_conn_on_read(struct bufferevent *bev, void *arg)
{
	struct auth_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct ipc_msg *msg;
	enum parse_result pr = PARSE_AGAIN;

	while (!conn->read_paused && (pr = ipc_msg_take(in, &msg)) == PARSE_OK) {
		if (auth_conn_message(conn, msg) < 0) {
			log_warn("auth: worker connection %lu sent a malformed message; "
			         "dropping the connection",
			         conn->id);
			auth_conn_close(conn);
			return;
		}
	}
	if (pr == PARSE_INVALID) {
		log_warn("auth: worker connection %lu sent a bad frame length; dropping the "
		         "connection",
		         conn->id);
		auth_conn_close(conn);
	}
}

static void
auth_conn_on_write(struct bufferevent *bev, void *arg)
{
	struct auth_conn *conn = arg;

	/* Fires when output drains below the low watermark. */
	if (conn->read_paused) {
		conn->read_paused = false;
		bufferevent_enable(bev, EV_READ);
		auth_conn_on_read(bev, conn);
	}
}

static void
auth_conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct auth_conn *conn = arg;

	if (what & BEV_EVENT_EOF)
		log_debug("auth: worker connection %lu closed", conn->id);
	else if (what & BEV_EVENT_ERROR)
		log_warn("auth: worker connection %lu: %s", conn->id,
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	auth_conn_close(conn);
}

static void
auth_conn_close(struct auth_conn *conn)
{
	struct auth_job *job;

	/* Jobs still waiting for a token never started: they go with their
	 * worker. Running jobs finish, log, and drop their answer. */
	while ((job = TAILQ_FIRST(&conn->rate_wait)) != NULL)
		auth_job_free(job);
	for (job = LIST_FIRST(&conn->srv->jobs); job != NULL; job = LIST_NEXT(job, entry)) {
		if (job->conn == conn)
			job->conn = NULL;
	}
	while (!LIST_EMPTY(&conn->held))
		auth_held_free(LIST_FIRST(&conn->held));
	LIST_REMOVE(conn, entry);
	event_free(conn->rate_ev);
	wbatch_free(conn->wb);
	bufferevent_free(conn->bev);
	free(conn);
}

static void
auth_send_hello(struct auth_conn *conn)
{
	struct ipc_msg *m = auth_proto_hello(conn->srv->caps);

	if (ipc_msg_send(m, bufferevent_get_output(conn->bev)) < 0)
		fatal("auth: HELLO frame too big");
	ipc_msg_free(m);
}

static void
auth_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct auth_server *srv = arg;
	uint64_t now = now_ms();

	auth_alert_tick(srv->alert, now);
	auth_throttle_tick(srv->throttle, now);
	if (metrics_enabled()) {
		metrics_set(M_AUTH_CACHE_ENTRIES, auth_cache_count(srv->cache));
		metrics_set(M_AUTH_LOCKOUTS, auth_throttle_locked(srv->throttle, now));
	}
}

/* A source's configuration fault (auth_source.h): an alert. */
static void
auth_on_fault(void *arg, const char *source, const char *detail)
{
	struct auth_server *srv = arg;

	auth_alert_source_config(srv->alert, source, detail, now_ms());
}

static void
auth_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
               void *arg)
{
	struct auth_server *srv = arg;
	struct auth_conn *conn = xcalloc(1, sizeof(*conn));

	conn->srv = srv;
	conn->id = ++srv->next_conn_id;
	conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		log_err("auth: cannot set up worker connection %lu", conn->id);
		evutil_closesocket(fd);
		free(conn);
		return;
	}
	conn->rate_ev = evtimer_new(srv->base, rate_on_timer, conn);
	if (conn->rate_ev == NULL)
		fatal("auth: cannot create a timer");
	TAILQ_INIT(&conn->rate_wait);
	LIST_INIT(&conn->held);
	conn->tokens = srv->prot.worker_failure_rate; /* a full second's worth */
	conn->tokens_at_ms = now_ms();
	LIST_INSERT_HEAD(&srv->conns, conn, entry);
	bufferevent_setcb(conn->bev, auth_conn_on_read, auth_conn_on_write, auth_conn_on_event,
	                  conn);
	bufferevent_setwatermark(conn->bev, EV_WRITE, AUTH_CONN_MAX_OUTPUT / 2, 0);
	bufferevent_enable(conn->bev, EV_READ);
	conn->wb = wbatch_new(conn->bev);
	auth_send_hello(conn);
	log_debug("auth: worker connection %lu accepted", conn->id);
}

static void
auth_on_accept_error(struct evconnlistener *l, void *arg)
{
	/* EMFILE and friends: libevent keeps listening; say so once per
	 * failure, the master sees the workers' TEMPFAILs. */
	log_err("auth: accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Redis answers (again): send what was counted while it was away. */
static void
auth_shared_up(void *arg)
{
	struct auth_server *srv = arg;

	if (srv->shared_send != NULL)
		shared_send_resync(srv->shared_send);
	if (srv->throttle != NULL)
		auth_throttle_resync(srv->throttle);
}

/* [shared] secret_file: its first line keys the password digests, alike on
 * every gateway. NULL (logged) if it cannot be read or is empty. */
static struct keyhash *
auth_shared_secret(const char *path)
{
	char buf[1024];
	FILE *fp = fopen(path, "re");
	struct keyhash *kh = NULL;
	size_t n;

	if (fp == NULL) {
		log_err("auth: cannot open [shared] secret_file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), fp) != NULL && (n = strcspn(buf, "\r\n")) > 0) {
		if (n < 16)
			log_warn("auth: [shared] secret_file %s: %zu bytes; a random secret of "
			         "32 bytes or more is expected",
			         path, n);
		kh = keyhash_derive(buf, n, "authrelay distinct-password v1");
	} else {
		log_err("auth: [shared] secret_file %s: the first line is empty", path);
	}
	explicit_bzero(buf, sizeof(buf));
	fclose(fp);
	return kh;
}

static uint32_t
auth_caps(const struct auth_server *srv)
{
	uint32_t caps = 0;

	for (size_t i = 0; i < srv->gen->n_sources; i++)
		caps |= srv->gen->sources[i].ops->caps(srv->gen->sources[i].state);
	if (srv->shared_send != NULL)
		caps |= AUTH_CAP_SHARED_SEND;
	return caps;
}

static void
auth_reload(struct auth_server *srv)
{
	struct auth_conn *conn;
	uint32_t caps;

	for (size_t i = 0; i < srv->gen->n_sources; i++) {
		struct auth_active *a = &srv->gen->sources[i];
		const char *err = NULL;
		if (a->ops->reload(a->state, &err) < 0)
			log_err("auth: reload source=%s failed, keeping the old data: %s",
			        a->ops->name, err != NULL ? err : "unknown error");
		else
			log_info("auth: reload source=%s done", a->ops->name);
	}
	/* A password changed in a source is then checked afresh at once,
	 * and a removed user is gone (auth_cache.h). */
	log_info("auth: cache cleared entries=%zu", auth_cache_count(srv->cache));
	auth_cache_clear(srv->cache);
	caps = auth_caps(srv);
	if (caps != srv->caps) {
		/* Workers take caps from HELLO; a new one updates them. */
		srv->caps = caps;
		for (conn = LIST_FIRST(&srv->conns); conn != NULL; conn = LIST_NEXT(conn, entry))
			auth_send_hello(conn);
	}
}

static void
auth_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct auth_server *srv = arg;

	if (sig == SIGHUP) {
		auth_reload(srv);
		return;
	}
	log_info("auth: exiting on signal %d", (int)sig);
	event_base_loopbreak(srv->base);
}

/* Stop a generation's work: its pool first (waits for running hash checks,
 * runs no done callback), then its sources (which free what they had
 * queued on the pool). */
static void
auth_gen_shutdown(struct auth_gen *g)
{
	threadpool_free(g->pool);
	g->pool = NULL;
	for (size_t i = 0; i < g->n_sources; i++)
		g->sources[i].ops->free(g->sources[i].state);
	g->n_sources = 0;
}

static void
auth_gen_unref(struct auth_gen *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	if (g->number != 0)
		log_debug("auth: generation=%u released", g->number);
	auth_gen_shutdown(g);
	LIST_REMOVE(g, entry);
	free(g->sources);
	config_free(g->owned_cfg);
	free(g);
}

/* The sources cfg configures, each set up; one reference, the caller's.
 * NULL with the reason in err when one cannot be. owned: the generation
 * frees cfg with itself (not when NULL is returned). A source that was in
 * the generation before (prev) keeps what it was known of its reach. */
static struct auth_gen *
auth_gen_new(struct auth_server *srv, const struct config *cfg, bool owned, uint32_t number,
             const struct auth_gen *prev, char *err, size_t errsz)
{
	struct auth_gen *g = xcalloc(1, sizeof(*g));

	g->refs = 1;
	g->number = number;
	g->cfg = cfg;
	g->pool = threadpool_new(srv->base,
	                         cfg->auth_threads > 0 ? cfg->auth_threads : AUTH_DEFAULT_THREADS);
	g->env = (struct auth_env){.cfg = cfg,
	                           .base = srv->base,
	                           .pool = g->pool,
	                           .fault = auth_on_fault,
	                           .fault_arg = srv};
	g->sources = xcalloc(AR_NELEM(auth_sources), sizeof(*g->sources));
	for (size_t i = 0; i < AR_NELEM(auth_sources); i++) {
		const struct auth_source_ops *ops = auth_sources[i];
		struct auth_active *a = &g->sources[g->n_sources];
		const char *e = NULL;
		void *state = NULL;

		if (!ops->configured(cfg))
			continue;
		if (ops->init(&g->env, &state, &e) < 0) {
			snprintf(err, errsz, "source=%s: %s", ops->name,
			         e != NULL ? e : "init failed");
			auth_gen_shutdown(g);
			free(g->sources);
			free(g);
			return NULL;
		}
		a->ops = ops;
		a->state = state;
		/* Nothing known of a directory or upstream before it answers;
		 * the users file is loaded, so it is up. */
		a->reach = ops == &auth_source_file ? REACH_UP : REACH_UNKNOWN;
		a->reach_since_ms = now_ms();
		for (size_t k = 0; prev != NULL && k < prev->n_sources; k++) {
			if (prev->sources[k].ops == ops && ops != &auth_source_file) {
				a->reach = prev->sources[k].reach;
				a->reach_since_ms = prev->sources[k].reach_since_ms;
			}
		}
		g->n_sources++;
	}
	g->owned_cfg = owned ? (struct config *)cfg : NULL;
	LIST_INSERT_HEAD(&srv->gens, g, entry);
	return g;
}

/* The auth process was started in the users file's directory (master.c),
 * with the file's name relative to it: keep it so when it did not move (a
 * parent directory may be closed to auth_user). */
static void
auth_users_file_relative(const struct auth_server *srv, struct config *cfg)
{
	char *slash;

	if (srv->workdir == NULL || cfg->users_file == NULL ||
	    (slash = strrchr(cfg->users_file, '/')) == NULL)
		return;
	*slash = '\0';
	bool here = strcmp(*cfg->users_file ? cfg->users_file : "/", srv->workdir) == 0;
	*slash = '/';
	if (here)
		memmove(cfg->users_file, slash + 1, strlen(slash + 1) + 1);
}

/* The master's new configuration (ctlchan.h): all of it, or none. */
static int
auth_apply_config(void *arg, const struct ctlchan_config *c, char *err, size_t errsz)
{
	struct auth_server *srv = arg;
	struct protection_config prot, old_prot;
	char *errors = NULL;
	struct config *cfg;
	struct auth_gen *g, *old;
	uint32_t caps;

	cfg = config_load_text(c->path, c->text, c->len, &errors);
	memset(&prot, 0, sizeof(prot));
	if (cfg == NULL || protection_config_load(cfg, &prot, &errors) < 0) {
		/* The first problem is the answer; the log has them all. */
		log_err("auth: reload generation=%u refused: %s", c->generation,
		        errors != NULL ? errors : "?");
		snprintf(err, errsz, "%.*s", (int)strcspn(errors != NULL ? errors : "?", "\n"),
		         errors != NULL ? errors : "?");
		free(errors);
		config_free(cfg);
		return -1;
	}
	if (c->flags & CTLCHAN_FORCE_SYSLOG)
		cfg->use_syslog = true;
	auth_users_file_relative(srv, cfg);
	g = auth_gen_new(srv, cfg, true, c->generation, srv->gen, err, errsz);
	if (g == NULL) {
		log_err("auth: reload generation=%u refused, keeping the running sources: %s",
		        c->generation, err);
		protection_config_clear(&prot);
		config_free(cfg);
		return -1;
	}
	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "auth");
	/* As after SIGHUP: each source loaded its data afresh. */
	for (size_t i = 0; i < g->n_sources; i++)
		log_info("auth: reload source=%s done", g->sources[i].ops->name);
	old = srv->gen;
	srv->gen = g;
	srv->cfg = cfg;
	auth_gen_unref(old);
	/* [protection] and [alerts] in place: the throttle, the alerts and the
	 * cache all read srv->prot. */
	old_prot = srv->prot;
	srv->prot = prot;
	auth_throttle_reconfigure(srv->throttle, &srv->prot);
	auth_alert_reconfigure(srv->alert, cfg, &srv->prot);
	log_info("auth: cache cleared entries=%zu", auth_cache_count(srv->cache));
	auth_cache_free(srv->cache);
	srv->cache = auth_cache_new(&srv->prot, srv->kh);
	protection_config_clear(&old_prot);
	caps = auth_caps(srv);
	if (caps != srv->caps) {
		srv->caps = caps;
		for (struct auth_conn *conn = LIST_FIRST(&srv->conns); conn != NULL;
		     conn = LIST_NEXT(conn, entry))
			auth_send_hello(conn);
	}
	log_info("auth: reloaded generation=%u sources=%zu caps=0x%x", c->generation, g->n_sources,
	         srv->caps);
	return 0;
}

/* Teardown order matters: connections first (no new jobs), then each
 * generation's pool and sources (auth_gen_shutdown()), then the jobs left,
 * which release the generations. */
static void
auth_server_free(struct auth_server *srv)
{
	struct auth_conn *conn;
	struct auth_job *job;
	struct auth_gen *g;

	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	ctlchan_free(srv->ctl);
	while ((conn = LIST_FIRST(&srv->conns)) != NULL)
		auth_conn_close(conn);
	LIST_FOREACH(g, &srv->gens, entry)
	auth_gen_shutdown(g);
	while ((job = LIST_FIRST(&srv->jobs)) != NULL)
		auth_job_free(job);
	auth_gen_unref(srv->gen);
	if (srv->tick != NULL)
		event_free(srv->tick);
	auth_admin_free(srv->admin);
	shared_send_free(srv->shared_send);
	shared_redis_free(srv->redis);
	shared_config_clear(&srv->shared_cfg);
	auth_alert_free(srv->alert);
	auth_alert_link_free(srv->alert_link);
	auth_throttle_free(srv->throttle);
	auth_cache_free(srv->cache);
	keyhash_free(srv->kh);
	keyhash_free(srv->pw_kh);
	protection_config_clear(&srv->prot);
	if (srv->sig_hup != NULL)
		event_free(srv->sig_hup);
	if (srv->sig_term != NULL)
		event_free(srv->sig_term);
	if (srv->sig_int != NULL)
		event_free(srv->sig_int);
	event_base_free(srv->base);
}

int
auth_server_main(const struct config *cfg, int listen_fd, int alert_fd, int admin_fd, int ctl_fd,
                 const char *workdir)
{
	struct auth_server srv;
	struct timeval second = {1, 0};
	char *perr = NULL;
	int status = 1;

	memset(&srv, 0, sizeof(srv));
	LIST_INIT(&srv.conns);
	LIST_INIT(&srv.jobs);
	LIST_INIT(&srv.gens);
	/* Secrets live here: no core file, no ptrace by the same uid. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_warn("auth: prctl(PR_SET_DUMPABLE): %s", strerror(errno));
	/* A worker that exits while we write to it must not kill us. */
	signal(SIGPIPE, SIG_IGN);

	srv.cfg = cfg;
	srv.workdir = workdir;
	srv.base = event_base_new();
	if (srv.base == NULL) {
		log_err("auth: cannot create an event base");
		evutil_closesocket(listen_fd);
		if (alert_fd >= 0)
			close(alert_fd);
		if (admin_fd >= 0)
			close(admin_fd);
		if (ctl_fd >= 0)
			close(ctl_fd);
		return 1;
	}
	log_batch(srv.base);
	srv.alert_link = auth_alert_link_new(srv.base, alert_fd);
	if (ctl_fd >= 0 &&
	    (srv.ctl = ctlchan_child_new(srv.base, ctl_fd, auth_apply_config, &srv)) == NULL) {
		log_err("auth: cannot watch the master's control channel");
		evutil_closesocket(listen_fd);
		goto fail;
	}

	srv.sig_hup = evsignal_new(srv.base, SIGHUP, auth_on_signal, &srv);
	srv.sig_term = evsignal_new(srv.base, SIGTERM, auth_on_signal, &srv);
	srv.sig_int = evsignal_new(srv.base, SIGINT, auth_on_signal, &srv);
	if (srv.sig_hup == NULL || srv.sig_term == NULL || srv.sig_int == NULL ||
	    evsignal_add(srv.sig_hup, NULL) < 0 || evsignal_add(srv.sig_term, NULL) < 0 ||
	    evsignal_add(srv.sig_int, NULL) < 0) {
		log_err("auth: cannot install signal events");
		evutil_closesocket(listen_fd);
		goto fail;
	}

	/* The master refused a config with errors here; this is a backstop. */
	if (protection_config_load(cfg, &srv.prot, &perr) < 0) {
		log_err("auth: %s", perr);
		free(perr);
		evutil_closesocket(listen_fd);
		goto fail;
	}
	if (shared_config_load(cfg, &srv.shared_cfg, &perr) < 0) {
		log_err("auth: %s", perr);
		free(perr);
		evutil_closesocket(listen_fd);
		goto fail;
	}
	if (srv.shared_cfg.redis != NULL) {
		/* The workers may not open network sockets (sandbox.c): this
		 * process talks to Redis for them. */
		srv.redis = shared_redis_new(srv.base, &srv.shared_cfg, auth_shared_up, &srv);
		if (srv.redis == NULL) {
			evutil_closesocket(listen_fd);
			goto fail;
		}
		if (srv.shared_cfg.send_limits)
			srv.shared_send = shared_send_new(srv.redis, srv.shared_cfg.key_prefix);
	}
	srv.kh = keyhash_new();
	srv.cache = auth_cache_new(&srv.prot, srv.kh);
	srv.throttle = auth_throttle_new(&srv.prot, srv.kh);
	if (srv.redis != NULL && srv.shared_cfg.lockouts) {
		if (srv.shared_cfg.secret_file != NULL &&
		    (srv.pw_kh = auth_shared_secret(srv.shared_cfg.secret_file)) == NULL) {
			evutil_closesocket(listen_fd);
			goto fail;
		}
		auth_throttle_share(srv.throttle, srv.redis, srv.shared_cfg.key_prefix, srv.pw_kh);
	}
	srv.alert = auth_alert_new(cfg, &srv.prot, srv.kh, auth_alert_link_send, srv.alert_link);
	srv.admin = auth_admin_new(srv.base, admin_fd, srv.throttle, auth_admin_sources, &srv);
	srv.tick = event_new(srv.base, -1, EV_PERSIST, auth_on_tick, &srv);
	if (srv.tick == NULL || event_add(srv.tick, &second) < 0) {
		log_err("auth: cannot install the alert timer");
		evutil_closesocket(listen_fd);
		goto fail;
	}

	{
		char err[512];
		srv.gen = auth_gen_new(&srv, cfg, false, 0, NULL, err, sizeof(err));
		if (srv.gen == NULL) {
			log_err("auth: %s", err);
			evutil_closesocket(listen_fd);
			goto fail;
		}
	}
	if (srv.gen->n_sources == 0)
		log_warn("auth: no auth source configured; every login gets tempfail");
	srv.caps = auth_caps(&srv);

	/* libevent's listener loops on accept() until EAGAIN: a blocking
	 * socket would hang the loop on the accept after the last worker. */
	if (evutil_make_socket_nonblocking(listen_fd) < 0 ||
	    evutil_make_socket_closeonexec(listen_fd) < 0) {
		log_err("auth: cannot make the worker socket non-blocking");
		evutil_closesocket(listen_fd);
		goto fail;
	}
	/* backlog 0: the master already called listen(). Accepted sockets
	 * come non-blocking and close-on-exec. */
	srv.listener =
	        evconnlistener_new(srv.base, auth_on_accept, &srv,
	                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (srv.listener == NULL) {
		log_err("auth: cannot listen on the worker socket");
		evutil_closesocket(listen_fd);
		goto fail;
	}
	evconnlistener_set_error_cb(srv.listener, auth_on_accept_error);

	log_info("auth: ready sources=%zu threads=%u caps=0x%x cache_size=%u "
	         "cache_positive_ttl=%u cache_negative_ttl=%u cache_stale_ttl=%u",
	         srv.gen->n_sources,
	         cfg->auth_threads > 0 ? cfg->auth_threads : AUTH_DEFAULT_THREADS, srv.caps,
	         srv.prot.cache_size, srv.prot.cache_positive_ttl, srv.prot.cache_negative_ttl,
	         srv.prot.cache_stale_ttl);
	readiness_report();
	if (event_base_dispatch(srv.base) < 0) {
		log_err("auth: event loop failed");
		goto fail;
	}
	status = 0;
fail:
	log_batch(NULL);
	auth_server_free(&srv);
	return status;
}

int
auth_server_check(const struct config *cfg)
{
	struct auth_env env;
	int ret = 0;

	memset(&env, 0, sizeof(env));
	env.cfg = cfg;
	/* Sources get the same environment as in the daemon, even if they
	 * only read a file here. */
	env.base = event_base_new();
	if (env.base == NULL) {
		fprintf(stderr, "auth: cannot create an event base\n");
		return -1;
	}
	env.pool = threadpool_new(env.base, 1);
	for (size_t i = 0; i < AR_NELEM(auth_sources); i++) {
		const struct auth_source_ops *ops = auth_sources[i];
		const char *err = NULL;
		void *state = NULL;

		if (!ops->configured(cfg))
			continue;
		if (ops->init(&env, &state, &err) < 0) {
			/* The sources' errors say where ("file:line: ..."). */
			if (err != NULL)
				fprintf(stderr, "%s\n", err);
			else
				fprintf(stderr, "auth: source %s: init failed\n", ops->name);
			ret = -1;
			continue;
		}
		if (ops->probe != NULL && ops->probe(state, env.base) < 0)
			ret = -1;
		ops->free(state);
	}
	threadpool_free(env.pool);
	event_base_free(env.base);
	return ret;
}
