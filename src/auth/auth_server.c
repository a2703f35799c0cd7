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
 * "unknown_user" moves on to the next configured source; any other answer is
 * final. (One place to change when a "user must be unique across sources"
 * policy arrives: auth_job_done().)
 *
 * Signals arrive as libevent signal events: SIGHUP reloads every source
 * (a source keeps its old data when the reload fails) and re-sends HELLO when
 * the capabilities changed; SIGTERM and SIGINT stop the loop and free
 * everything, waiting for hash checks already running.
 */
#include "auth_server.h"
#include "auth_proto.h"
#include "auth_source.h"
#include "../lib/config.h"
#include "../lib/ipc.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"

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
};

#define AUTH_DEFAULT_THREADS 2
/* Jobs one worker may have in flight; more get TEMPFAIL reason=busy. A worker
 * caps itself lower (auth_client.c), so this only stops a broken one. */
#define AUTH_CONN_MAX_JOBS 8192
/* Unsent RESULT bytes above which we stop reading that worker's requests. */
#define AUTH_CONN_MAX_OUTPUT (1024 * 1024)

struct auth_active {
	const struct auth_source_ops *ops;
	void *state;
};

struct auth_conn {
	LIST_ENTRY(auth_conn) entry;
	struct auth_server *srv;
	struct bufferevent *bev;
	unsigned long id; /* for log lines */
	unsigned n_jobs;
	bool read_paused; /* output over AUTH_CONN_MAX_OUTPUT */
};

struct auth_job {
	LIST_ENTRY(auth_job) entry;
	struct auth_server *srv;
	struct auth_conn *conn; /* NULL once the worker has gone */
	struct ipc_msg *msg;    /* owns the strings in req; wiped on free */
	struct auth_request req;
	struct timespec start;
	size_t source; /* index in srv->sources being consulted */
};

struct auth_server {
	const struct config *cfg;
	struct event_base *base;
	struct threadpool *pool;
	struct auth_env env;
	struct evconnlistener *listener;
	struct event *sig_hup, *sig_term, *sig_int;
	struct auth_active *sources;
	size_t n_sources;
	uint32_t caps;
	LIST_HEAD(, auth_conn) conns;
	LIST_HEAD(, auth_job) jobs;
	unsigned long next_conn_id;
};

static void auth_conn_close(struct auth_conn *conn);

static long
elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* The log line and the RESULT frame for one finished verification. */
static void
auth_finish(struct auth_conn *conn, const struct auth_request *req, const struct timespec *start,
            enum auth_result result, const char *identity, const char *reason, const char *source)
{
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], mech[32], client[128], lst[128];
	struct auth_reply rep;
	struct ipc_msg *m;

	/* Everything but reason and source came from a worker: escape it. */
	log_info("s=%s auth mech=%s user=\"%s\" client=%s listener=%s result=%s reason=%s "
	         "source=%s ms=%ld",
	         req->session[0] != '\0' ? log_escape_str(req->session, sess, sizeof(sess)) : "-",
	         log_escape_str(req->mech, mech, sizeof(mech)),
	         log_escape_str(req->login, user, sizeof(user)),
	         req->client[0] != '\0' ? log_escape_str(req->client, client, sizeof(client)) : "-",
	         req->listener[0] != '\0' ? log_escape_str(req->listener, lst, sizeof(lst)) : "-",
	         auth_result_name(result), reason, source, elapsed_ms(start));
	if (conn == NULL)
		return;

	rep.id = req->id;
	rep.result = result;
	rep.identity = result == AUTH_OK ? (identity != NULL ? identity : req->login) : "";
	rep.reason = reason;
	m = auth_proto_result(&rep);
	if (ipc_msg_send(m, bufferevent_get_output(conn->bev)) < 0)
		fatal("auth: RESULT frame too big"); /* bounded strings: cannot happen */
	ipc_msg_free(m);
	if (!conn->read_paused &&
	    evbuffer_get_length(bufferevent_get_output(conn->bev)) > AUTH_CONN_MAX_OUTPUT) {
		/* The worker does not read its results: stop taking requests
		 * until it has (auth_conn_on_write resumes). */
		conn->read_paused = true;
		bufferevent_disable(conn->bev, EV_READ);
	}
}

const struct auth_request *
auth_job_request(const struct auth_job *job)
{
	return &job->req;
}

static void
auth_job_free(struct auth_job *job)
{
	LIST_REMOVE(job, entry);
	if (job->conn != NULL)
		job->conn->n_jobs--;
	ipc_msg_free(job->msg);
	free(job);
}

static void
auth_job_start(struct auth_job *job)
{
	struct auth_active *a = &job->srv->sources[job->source];

	/* May call auth_job_done() before returning: no touching job after. */
	a->ops->verify(a->state, job);
}

void
auth_job_done(struct auth_job *job, enum auth_result result, const char *identity,
              const char *reason)
{
	struct auth_server *srv = job->srv;

	if (result == AUTH_FAIL && strcmp(reason, "unknown_user") == 0 &&
	    job->source + 1 < srv->n_sources) {
		job->source++;
		auth_job_start(job);
		return;
	}
	auth_finish(job->conn, &job->req, &job->start, result, identity, reason,
	            srv->sources[job->source].ops->name);
	auth_job_free(job);
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
	const char *reason = NULL;
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
		reason = "mech_unavailable";
	} else if (job->req.login[0] == '\0') {
		reason = "unknown_user";
	} else if (job->req.secret_len == 0) {
		/* RFC 4616 2 forbids it, and an empty password is an
		 * unauthenticated bind to LDAP (RFC 4513 5.1.2). */
		reason = "empty_password";
	} else if (srv->n_sources == 0) {
		result = AUTH_TEMPFAIL;
		reason = "no_source";
	} else if (conn->n_jobs >= AUTH_CONN_MAX_JOBS) {
		result = AUTH_TEMPFAIL;
		reason = "busy";
	}
	if (reason != NULL) {
		auth_finish(conn, &job->req, &job->start, result, NULL, reason, "none");
		ipc_msg_free(msg);
		free(job);
		return 0;
	}
	LIST_INSERT_HEAD(&srv->jobs, job, entry);
	conn->n_jobs++;
	auth_job_start(job);
	return 0;
}

static void
auth_conn_on_read(struct bufferevent *bev, void *arg)
{
	struct auth_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct ipc_msg *msg;
	enum parse_result pr = PARSE_AGAIN;

	while (!conn->read_paused && (pr = ipc_msg_take(in, &msg)) == PARSE_OK) {
		if (auth_conn_verify(conn, msg) < 0) {
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

	/* Running jobs finish, log, and drop their answer. */
	for (job = LIST_FIRST(&conn->srv->jobs); job != NULL; job = LIST_NEXT(job, entry)) {
		if (job->conn == conn)
			job->conn = NULL;
	}
	LIST_REMOVE(conn, entry);
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
	LIST_INSERT_HEAD(&srv->conns, conn, entry);
	bufferevent_setcb(conn->bev, auth_conn_on_read, auth_conn_on_write, auth_conn_on_event,
	                  conn);
	bufferevent_setwatermark(conn->bev, EV_WRITE, AUTH_CONN_MAX_OUTPUT / 2, 0);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
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

static uint32_t
auth_caps(const struct auth_server *srv)
{
	uint32_t caps = 0;

	for (size_t i = 0; i < srv->n_sources; i++)
		caps |= srv->sources[i].ops->caps(srv->sources[i].state);
	return caps;
}

static void
auth_reload(struct auth_server *srv)
{
	struct auth_conn *conn;
	uint32_t caps;

	for (size_t i = 0; i < srv->n_sources; i++) {
		struct auth_active *a = &srv->sources[i];
		const char *err = NULL;
		if (a->ops->reload(a->state, &err) < 0)
			log_err("auth: reload source=%s failed, keeping the old data: %s",
			        a->ops->name, err != NULL ? err : "unknown error");
		else
			log_info("auth: reload source=%s done", a->ops->name);
	}
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

/* Init every configured source. 0, or -1 with the reason logged. */
static int
auth_sources_init(struct auth_server *srv)
{
	srv->sources = xcalloc(AR_NELEM(auth_sources), sizeof(*srv->sources));
	for (size_t i = 0; i < AR_NELEM(auth_sources); i++) {
		const struct auth_source_ops *ops = auth_sources[i];
		const char *err = NULL;
		void *state = NULL;

		if (!ops->configured(srv->cfg))
			continue;
		if (ops->init(&srv->env, &state, &err) < 0) {
			log_err("auth: source=%s: %s", ops->name,
			        err != NULL ? err : "init failed");
			return -1;
		}
		srv->sources[srv->n_sources].ops = ops;
		srv->sources[srv->n_sources].state = state;
		srv->n_sources++;
	}
	return 0;
}

/* Teardown order matters: connections first (no new jobs), then the pool
 * (waits for running hash checks, runs no done callback), then the sources
 * (which free what they had queued on the pool), then the jobs left. */
static void
auth_server_free(struct auth_server *srv)
{
	struct auth_conn *conn;
	struct auth_job *job;

	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	while ((conn = LIST_FIRST(&srv->conns)) != NULL)
		auth_conn_close(conn);
	threadpool_free(srv->pool);
	for (size_t i = 0; i < srv->n_sources; i++)
		srv->sources[i].ops->free(srv->sources[i].state);
	free(srv->sources);
	while ((job = LIST_FIRST(&srv->jobs)) != NULL)
		auth_job_free(job);
	if (srv->sig_hup != NULL)
		event_free(srv->sig_hup);
	if (srv->sig_term != NULL)
		event_free(srv->sig_term);
	if (srv->sig_int != NULL)
		event_free(srv->sig_int);
	event_base_free(srv->base);
}

int
auth_server_main(const struct config *cfg, int listen_fd)
{
	struct auth_server srv;
	int status = 1;

	memset(&srv, 0, sizeof(srv));
	LIST_INIT(&srv.conns);
	LIST_INIT(&srv.jobs);
	/* Secrets live here: no core file, no ptrace by the same uid. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_warn("auth: prctl(PR_SET_DUMPABLE): %s", strerror(errno));
	/* A worker that exits while we write to it must not kill us. */
	signal(SIGPIPE, SIG_IGN);

	srv.cfg = cfg;
	srv.base = event_base_new();
	if (srv.base == NULL) {
		log_err("auth: cannot create an event base");
		evutil_closesocket(listen_fd);
		return 1;
	}
	srv.pool = threadpool_new(srv.base,
	                          cfg->auth_threads > 0 ? cfg->auth_threads : AUTH_DEFAULT_THREADS);
	srv.env.cfg = cfg;
	srv.env.base = srv.base;
	srv.env.pool = srv.pool;

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

	if (auth_sources_init(&srv) < 0) {
		evutil_closesocket(listen_fd);
		goto fail;
	}
	if (srv.n_sources == 0)
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

	log_info("auth: ready sources=%zu threads=%u caps=0x%x", srv.n_sources,
	         cfg->auth_threads > 0 ? cfg->auth_threads : AUTH_DEFAULT_THREADS, srv.caps);
	if (event_base_dispatch(srv.base) < 0) {
		log_err("auth: event loop failed");
		goto fail;
	}
	status = 0;
fail:
	auth_server_free(&srv);
	return status;
}

int
auth_server_check(const struct config *cfg)
{
	struct auth_env env;
	int ret = 0;

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
			fprintf(stderr, "auth: source %s: %s\n", ops->name,
			        err != NULL ? err : "init failed");
			ret = -1;
			continue;
		}
		ops->free(state);
	}
	threadpool_free(env.pool);
	event_base_free(env.base);
	return ret;
}
