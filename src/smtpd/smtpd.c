/* SPDX-License-Identifier: ISC */
/*
 * smtpd.c - the SMTP worker process: one event loop, the listening sockets it
 * inherited from the master, a session per accepted connection. The shared
 * connection-limit table decides at accept time whether a client may have one
 * more connection; everything after that is session.c's.
 *
 * How a worker ends (signals from the master, see smtpd.h):
 *   SIGHUP   retire: a reload started a new generation of workers. Stop
 *            accepting (close the listening sockets) and serve the open
 *            sessions to their end with the configuration they started
 *            with; exit when the last one ends, or stop at once after
 *            shutdown_timeout.
 *   SIGTERM  stop: stop accepting; sessions between commands get 421 4.3.2
 *            now, the others at their next command (a message in DATA gets
 *            its 250 first); exit when none is left, or stop at once after
 *            shutdown_timeout. A second SIGTERM stops at once.
 *   SIGQUIT  stop at once: 421 4.3.2 to every session and exit. Only a
 *            message whose fsync is running still gets its 250.
 */
#include "smtpd.h"
#include "conn_limit.h"
#include "proxy_accept.h"
#include "session.h"
#include "../authwire/auth_client.h"
#include "../keyproc/keyproc_client.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/readiness.h"
#include "../lib/net.h"
#include "../lib/threadpool.h"
#include "../metrics/metric.h"
#include "../spool/spool_commit.h"
#include "../spool/spool_gauge.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

/* Threads that fsync committed messages: disk waits, not CPU. */
#define SMTPD_SYNC_THREADS 4

struct smtpd_listener {
	struct smtpd *smtpd;
	unsigned idx;
	struct evconnlistener *evl;
	unsigned n_proxy_waits; /* connections whose PROXY header is awaited */
};

/* A connection from a trusted proxy, until its PROXY header is read. */
struct smtpd_proxy_wait {
	struct smtpd_listener *sl;
	struct sockaddr_storage peer; /* the load balancer */
};

/* How far the worker is in ending (see the top of the file). */
enum smtpd_end { SMTPD_SERVING, SMTPD_RETIRING, SMTPD_STOPPING, SMTPD_NOW };

struct smtpd {
	const struct smtpd_params *params;
	struct event_base *base;
	struct session_env env;
	struct session_list sessions;
	struct smtpd_listener *listeners;
	size_t n_listeners;
	enum smtpd_end end;
	struct event *ev_sig[4];
	struct event *deadline; /* shutdown_timeout after the first signal */
};

/* Once the last session is gone, a worker that stops may go. Also the
 * bound on how long the 421s of a stop at once may take to leave. */
#define SMTPD_NOW_FLUSH_MS 1000

/* Refuse a connection over a limit without spending a session on it. */
static void
smtpd_refuse(int fd, const char *reply)
{
	/* Best effort: the socket buffer of a fresh connection has room. */
	char line[128];
	int n = snprintf(line, sizeof(line), "%s\r\n", reply);
	ssize_t r = send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)r;
	close(fd);
}

/* The client (sa: the peer, or the address of its PROXY header, proxy
 * then naming the load balancer) gets a session unless a limit says no. */
static void
smtpd_admit(struct smtpd_listener *sl, int fd, const struct sockaddr *sa, socklen_t salen,
            const char *proxy)
{
	struct smtpd *d = sl->smtpd;
	const struct listener_cfg *l = &d->params->cfg->listeners[sl->idx];
	uint8_t key[16];
	char addr[64];

	metrics_inc(M_CONNECTIONS_ACCEPTED, metric_listener(l->name));
	/* The queue is over max_queue_size; the queue process raised
	 * the alert, we only defer (RFC 5321 4.3.2: 421 at the greeting). */
	if (spool_gauge_full(d->params->queue_gauge)) {
		net_addr_str(sa, addr, sizeof(addr));
		log_info("refuse client=%s listener=%s reason=max_queue_size queued=%lu", addr,
		         l->name, spool_gauge_queued(d->params->queue_gauge));
		metrics_inc(M_CONNECTIONS_REFUSED, metric_listener(l->name), MR_MAX_QUEUE_SIZE);
		smtpd_refuse(fd, "421 4.3.2 System storage full, try again later\r\n");
		return;
	}
	net_client_key(sa, l->limits.ipv6_prefix, key);
	enum conn_limit_result r = conn_limit_acquire(
	        d->params->limits, d->params->worker, d->params->limit_ids[sl->idx], key,
	        l->limits.max_connections, l->limits.max_connections_per_ip);
	if (r != CONN_LIMIT_OK) {
		bool per_ip = r == CONN_LIMIT_PER_IP;
		const char *reply = per_ip ? "421 4.7.0 Too many connections from your address"
		                           : "421 4.7.0 Too many connections, try again later";
		net_addr_str(sa, addr, sizeof(addr));
		log_info("refuse client=%s listener=%s reason=%s limit=%u", addr, l->name,
		         per_ip ? "max_connections_per_ip" : "max_connections",
		         per_ip ? l->limits.max_connections_per_ip : l->limits.max_connections);
		metrics_inc(M_CONNECTIONS_REFUSED, metric_listener(l->name),
		            per_ip ? MR_MAX_CONNECTIONS_PER_IP : MR_MAX_CONNECTIONS);
		if (l->tls == LTLS_IMPLICIT)
			session_start_refused(&d->env, sl->idx, fd, sa, salen, proxy, reply);
		else
			smtpd_refuse(fd, reply);
		return;
	}
	session_start(&d->env, sl->idx, fd, sa, salen, proxy);
}

static bool
smtpd_proxy_trusted(const struct listener_cfg *l, const struct sockaddr *sa)
{
	for (size_t i = 0; i < l->n_proxy_trusted_networks; i++)
		if (net_cidr_match(&l->proxy_trusted_networks[i], sa))
			return true;
	return false;
}

/* The PROXY header of a trusted peer has arrived, or not: nothing was sent
 * to the peer yet, so a bad one is simply closed. */
static void
smtpd_proxy_cb(int fd, const struct proxy_header *h, const char *error, void *arg)
{
	struct smtpd_proxy_wait *w = arg;
	struct smtpd_listener *sl = w->sl;
	const struct listener_cfg *l = &sl->smtpd->params->cfg->listeners[sl->idx];
	char proxy[64];

	sl->n_proxy_waits--;
	net_addr_str((struct sockaddr *)&w->peer, proxy, sizeof(proxy));
	if (h == NULL) {
		log_info("refuse proxy=%s listener=%s reason=proxy_protocol error=\"%s\"", proxy,
		         l->name, error);
		metrics_inc(M_CONNECTIONS_REFUSED, metric_listener(l->name), MR_PROXY_PROTOCOL);
		close(fd);
	} else if (h->has_addr) {
		smtpd_admit(sl, fd, (const struct sockaddr *)&h->src, h->srclen, proxy);
	} else {
		/* LOCAL (v2) or UNKNOWN (v1): the proxy's own health check,
		 * served as a connection from the proxy. */
		smtpd_admit(sl, fd, (const struct sockaddr *)&w->peer, sizeof(w->peer), proxy);
	}
	free(w);
}

static void
smtpd_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
                void *arg)
{
	struct smtpd_listener *sl = arg;
	const struct listener_cfg *l = &sl->smtpd->params->cfg->listeners[sl->idx];
	char addr[64];

	if (!l->proxy_protocol) {
		smtpd_admit(sl, fd, sa, (socklen_t)salen, NULL);
		return;
	}
	/* Only a trusted load balancer may name the client: anybody else
	 * could claim any address, so is closed without a greeting. */
	if (!smtpd_proxy_trusted(l, sa)) {
		net_addr_str(sa, addr, sizeof(addr));
		log_info("refuse client=%s listener=%s reason=proxy_trusted_networks", addr,
		         l->name);
		metrics_inc(M_CONNECTIONS_REFUSED, metric_listener(l->name),
		            MR_PROXY_TRUSTED_NETWORKS);
		close(fd);
		return;
	}
	/* Headers not read yet hold no connection slot (the real client is
	 * not known): bound them by the listener's max_connections. */
	if (sl->n_proxy_waits >= l->limits.max_connections) {
		net_addr_str(sa, addr, sizeof(addr));
		log_info("refuse proxy=%s listener=%s reason=max_connections limit=%u", addr,
		         l->name, l->limits.max_connections);
		metrics_inc(M_CONNECTIONS_REFUSED, metric_listener(l->name), MR_MAX_CONNECTIONS);
		close(fd);
		return;
	}
	struct smtpd_proxy_wait *w = xcalloc(1, sizeof(*w));
	w->sl = sl;
	memcpy(&w->peer, sa, (size_t)salen < sizeof(w->peer) ? (size_t)salen : sizeof(w->peer));
	sl->n_proxy_waits++;
	proxy_accept_start(sl->smtpd->base, fd, l->proxy_timeout_ms, smtpd_proxy_cb, w);
}

static void
smtpd_accept_error_cb(struct evconnlistener *evl, void *arg)
{
	/* EMFILE and friends: pause briefly instead of spinning. */
	log_warn("accept failed: %s", strerror(errno));
}

/* Stop accepting: the master still holds the sockets (a listener kept by a
 * reload goes on in the new workers); ours are closed so that a listener
 * the reload removed really closes once every worker is done with it. */
static void
smtpd_close_listeners(struct smtpd *d)
{
	for (size_t i = 0; i < d->n_listeners; i++) {
		if (d->listeners[i].evl != NULL) {
			evconnlistener_free(d->listeners[i].evl);
			d->listeners[i].evl = NULL;
			close(d->params->listen_fds[i]);
		}
	}
}

static void
smtpd_sessions_empty_cb(void *arg)
{
	struct smtpd *d = arg;

	if (d->end != SMTPD_SERVING)
		event_base_loopexit(d->base, NULL);
}

static void
smtpd_end(struct smtpd *d, enum smtpd_end how)
{
	static const char *const names[] = {"serving", "retiring", "stopping", "stopping now"};

	if (how <= d->end)
		return;
	log_info("worker=%u %s sessions=%u", d->params->worker, names[how], d->sessions.n);
	if (d->end == SMTPD_SERVING) {
		smtpd_close_listeners(d);
		struct timeval tv = {d->params->cfg->shutdown_timeout, 0};
		evtimer_add(d->deadline, &tv);
	}
	d->end = how;
	if (how == SMTPD_STOPPING)
		session_stop_all(&d->sessions, false);
	if (how == SMTPD_NOW) {
		session_stop_all(&d->sessions, true);
		/* The 421s leave as the sockets take them; not longer. */
		struct timeval tv = {0, SMTPD_NOW_FLUSH_MS * 1000};
		event_base_loopexit(d->base, &tv);
	}
	if (d->sessions.n == 0)
		event_base_loopexit(d->base, NULL);
}

static void
smtpd_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd *d = arg;

	log_info("worker=%u shutdown_timeout=%u reached sessions=%u", d->params->worker,
	         d->params->cfg->shutdown_timeout, d->sessions.n);
	smtpd_end(d, SMTPD_NOW);
}

static void
smtpd_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct smtpd *d = arg;

	switch (sig) {
	case SIGHUP:
		smtpd_end(d, SMTPD_RETIRING);
		break;
	case SIGTERM:
	case SIGINT:
		smtpd_end(d, d->end == SMTPD_STOPPING ? SMTPD_NOW : SMTPD_STOPPING);
		break;
	default:
		smtpd_end(d, SMTPD_NOW);
		break;
	}
}

int
smtpd_main(const struct smtpd_params *p)
{
	const struct config *cfg = p->cfg;
	struct smtpd d = {.params = p};

	signal(SIGPIPE, SIG_IGN);
	d.base = event_base_new();
	if (d.base == NULL)
		fatal("event_base_new failed");
	log_batch(d.base);
	if (p->keyproc != NULL)
		keyproc_client_attach(p->keyproc, d.base);
	bool group_commit = p->group_commit;
	d.env = (struct session_env){
	        .cfg = cfg,
	        .base = d.base,
	        .tls = p->tls,
	        .keyproc = p->keyproc,
	        .pool = threadpool_new(d.base, SMTPD_SYNC_THREADS),
	        .auth = auth_client_new(d.base, p->auth_socket, cfg->auth_request_timeout),
	        .limits = p->limits,
	        .limit_ids = p->limit_ids,
	        .worker = p->worker,
	        .spool_dir = p->spool_dir,
	        .sessions = &d.sessions,
	};
	LIST_INIT(&d.sessions.head);
	d.sessions.empty_cb = smtpd_sessions_empty_cb;
	d.sessions.empty_arg = &d;
	d.env.committer = spool_committer_new(d.base, group_commit, d.env.pool);
	/* Chosen by the master: /proc and /sys are out of a chroot's sight. */
	spool_committer_set_sync(d.env.committer, p->spool_sync);
	/* What [protection] says about senders (the master read it). */
	d.env.protection = &p->protection;
	d.env.send_limits = p->send_limits;
	d.n_listeners = cfg->n_listeners;
	d.listeners = xcalloc(d.n_listeners, sizeof(*d.listeners));
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct smtpd_listener *sl = &d.listeners[i];
		sl->smtpd = &d;
		sl->idx = (unsigned)i;
		/* Each reply leaves in one write once a command is done; Nagle
		 * would hold it behind any unacknowledged segment (the TLS 1.3
		 * tickets sent after the handshake): 40 ms of delayed ACK per
		 * STARTTLS session. Set on the listening socket, Linux copies
		 * it to every accepted one: a system call less per session. */
		int one = 1;
		(void)setsockopt(p->listen_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		sl->evl = evconnlistener_new(d.base, smtpd_accept_cb, sl, LEV_OPT_CLOSE_ON_EXEC, -1,
		                             p->listen_fds[i]);
		if (sl->evl == NULL)
			fatal("listener %s: evconnlistener_new failed", cfg->listeners[i].name);
		evconnlistener_set_error_cb(sl->evl, smtpd_accept_error_cb);
	}
	static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT};
	for (size_t i = 0; i < AR_NELEM(sigs); i++) {
		d.ev_sig[i] = evsignal_new(d.base, sigs[i], smtpd_signal_cb, &d);
		event_add(d.ev_sig[i], NULL);
	}
	d.deadline = evtimer_new(d.base, smtpd_deadline_cb, &d);

	log_info("worker=%u ready listeners=%zu", p->worker, d.n_listeners);
	readiness_report();
	event_base_dispatch(d.base);

	/* Sessions still open (a stop at once) are dropped with the process; a
	 * message being committed either reached incoming/ or was never
	 * promised. */
	for (size_t i = 0; i < AR_NELEM(d.ev_sig); i++)
		event_free(d.ev_sig[i]);
	event_free(d.deadline);
	free(d.listeners);
	/* Where the commit rounds' time went (spool_commit.h), for the bench. */
	struct spool_commit_profile cp;
	spool_committer_profile(d.env.committer, &cp);
	log_info("worker=%u spool commits messages=%lu rounds=%lu syncs=%lu method=%s "
	         "write_us=%llu wait_us=%llu link_us=%llu sync_us=%llu handover_us=%llu "
	         "group_commit=%s",
	         p->worker, cp.messages, cp.rounds, cp.syncs, cp.method,
	         (unsigned long long)cp.write_us, (unsigned long long)cp.wait_us,
	         (unsigned long long)cp.link_us, (unsigned long long)cp.sync_us,
	         (unsigned long long)cp.handover_us, group_commit ? "yes" : "no");
	log_batch(NULL);
	return 0;
}
