/* SPDX-License-Identifier: ISC */
/*
 * dns.c - c-ares on the queue process's libevent loop (see dns.h).
 *
 * c-ares tells us through ARES_OPT_SOCK_STATE_CB which sockets it wants
 * watched for reading or writing; each gets a libevent event that calls
 * ares_process_fd(). One timer follows ares_timeout() for retransmissions.
 * A request is an MX query, then one ares_getaddrinfo() per MX host (in
 * parallel); when the last answer is in, the targets are put in order and
 * the caller's callback runs from an event of its own, so it never runs
 * inside dns_resolve() or inside c-ares.
 */
#include "dns.h"
#include "../lib/log.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include <event2/event.h>

/* RFC 5321 5.1 leaves it open; more MX hosts than this is a broken zone. */
#define DNS_MAX_MX 10
#define DNS_MAX_ADDRS_PER_HOST 8
#define DNS_TIMEOUT_MS 3000
#define DNS_TRIES 3

struct dns_sock {
	ares_socket_t fd;
	struct event *ev;
};

struct dns_req;

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct dns_sock *socks;
	size_t n_socks;
	struct event *timer;
	LIST_HEAD(, dns_req) reqs; /* outstanding, for dns_free */
	bool freeing;
};

struct dns_host {
	struct dns_req *req;
	char name[256];
	unsigned preference;
	struct dns_target *addrs;
	size_t n_addrs;
	int ares_status;
};

struct dns_req {
	struct dns *dns;
	LIST_ENTRY(dns_req) entry; /* in dns->reqs */
	char name[256];
	bool mx;
	unsigned port;
	dns_targets_cb *cb;
	void *arg;
	unsigned pending;
	struct dns_host *hosts;
	size_t n_hosts;
	bool implicit; /* no MX: the name's own addresses */
	enum dns_status status;
	char error[512];
	struct event *fire;
	bool done;
};

static void dns_reschedule(struct dns *d);

static void
dns_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_reschedule(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_reschedule(d);
}

static void
dns_reschedule(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->freeing)
		return;
	tvp = ares_timeout(d->ch, NULL, &tv);
	if (tvp != NULL)
		evtimer_add(d->timer, tvp);
	else
		evtimer_del(d->timer);
}

static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	size_t i;

	if (d->freeing)
		return;
	for (i = 0; i < d->n_socks; i++)
		if (d->socks[i].fd == fd)
			break;
	if (i < d->n_socks) {
		event_free(d->socks[i].ev);
		if (!readable && !writable) {
			d->socks[i] = d->socks[--d->n_socks];
			return;
		}
	} else {
		if (!readable && !writable)
			return;
		d->socks = xrealloc(d->socks, (d->n_socks + 1) * sizeof(*d->socks));
		i = d->n_socks++;
		d->socks[i].fd = fd;
	}
	d->socks[i].ev = event_new(
	        d->base, fd,
	        (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST),
	        dns_io_cb, d);
	event_add(d->socks[i].ev, NULL);
}

struct dns *
dns_new(struct event_base *base, const char *servers, const char **error_r)
{
	static char err[256];
	struct ares_options opt;
	int r, mask;
	struct dns *d;

	r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS) {
		snprintf(err, sizeof(err), "ares_library_init: %s", ares_strerror(r));
		*error_r = err;
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	LIST_INIT(&d->reqs);
	d->base = base;
	memset(&opt, 0, sizeof(opt));
	opt.sock_state_cb = dns_sock_state_cb;
	opt.sock_state_cb_data = d;
	opt.timeout = DNS_TIMEOUT_MS;
	opt.tries = DNS_TRIES;
	/* Mail domains are fully qualified: no search list. Next hops come
	 * from DNS only, like Postfix's smtp_host_lookup = dns, except that
	 * without a resolver of our own /etc/hosts is asked too. */
	opt.flags = ARES_FLAG_NOSEARCH;
	opt.lookups = servers != NULL ? (char *)"b" : (char *)"fb";
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
	       ARES_OPT_LOOKUPS;
	r = ares_init_options(&d->ch, &opt, mask);
	if (r != ARES_SUCCESS) {
		snprintf(err, sizeof(err), "ares_init_options: %s", ares_strerror(r));
		free(d);
		*error_r = err;
		return NULL;
	}
	if (servers != NULL) {
		r = ares_set_servers_ports_csv(d->ch, servers);
		if (r != ARES_SUCCESS) {
			snprintf(err, sizeof(err), "resolver %s: %s", servers, ares_strerror(r));
			ares_destroy(d->ch);
			free(d);
			*error_r = err;
			return NULL;
		}
	}
	d->timer = evtimer_new(base, dns_timer_cb, d);
	return d;
}

static void
dns_req_free(struct dns_req *q)
{
	for (size_t i = 0; i < q->n_hosts; i++)
		free(q->hosts[i].addrs);
	free(q->hosts);
	if (q->fire != NULL)
		event_free(q->fire);
	free(q);
}

void
dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	d->freeing = true;
	/* Calls every outstanding callback with ARES_EDESTRUCTION; they see
	 * d->freeing and do nothing. */
	ares_destroy(d->ch);
	while (!LIST_EMPTY(&d->reqs)) {
		struct dns_req *q = LIST_FIRST(&d->reqs);
		LIST_REMOVE(q, entry);
		dns_req_free(q);
	}
	for (size_t i = 0; i < d->n_socks; i++)
		event_free(d->socks[i].ev);
	free(d->socks);
	event_free(d->timer);
	free(d);
}

static unsigned
dns_random(unsigned n)
{
	uint32_t r;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)random();
	return n == 0 ? 0 : r % n;
}

void
dns_sort_targets(struct dns_target *t, size_t n, unsigned (*rnd)(unsigned n))
{
	/* Shuffle first (Fisher-Yates), then a stable sort by preference:
	 * equal preferences keep their random order (RFC 5321 5.1). */
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd((unsigned)i);
		struct dns_target tmp = t[i - 1];
		t[i - 1] = t[j];
		t[j] = tmp;
	}
	for (size_t i = 1; i < n; i++) {
		struct dns_target x = t[i];
		size_t j = i;
		while (j > 0 && t[j - 1].preference > x.preference) {
			t[j] = t[j - 1];
			j--;
		}
		t[j] = x;
	}
}

static void
dns_fire_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *q = arg;
	struct dns_target *all = NULL;
	size_t n = 0;

	LIST_REMOVE(q, entry);
	if (q->status == DNS_OK) {
		for (size_t i = 0; i < q->n_hosts; i++)
			n += q->hosts[i].n_addrs;
		all = xcalloc(n ? n : 1, sizeof(*all));
		n = 0;
		/* Hosts are already in MX order; addresses follow their host. */
		for (size_t i = 0; i < q->n_hosts; i++)
			for (size_t k = 0; k < q->hosts[i].n_addrs; k++)
				all[n++] = q->hosts[i].addrs[k];
	}
	q->cb(q->status, q->status == DNS_OK ? NULL : q->error, all, n, q->arg);
	free(all);
	dns_req_free(q);
}

/* Every answer is in: decide the result and hand it over. */
static void
dns_req_finish(struct dns_req *q)
{
	size_t n = 0;
	bool temp = false, any_host = false;

	if (q->done)
		return;
	q->done = true;
	if (q->status == DNS_OK) {
		for (size_t i = 0; i < q->n_hosts; i++) {
			n += q->hosts[i].n_addrs;
			any_host = true;
			if (q->hosts[i].n_addrs == 0 && q->hosts[i].ares_status != ARES_ENOTFOUND &&
			    q->hosts[i].ares_status != ARES_ENODATA &&
			    q->hosts[i].ares_status != ARES_SUCCESS)
				temp = true;
		}
		if (n == 0) {
			const char *h = any_host ? q->hosts[0].name : q->name;
			if (temp || (q->mx && !q->implicit)) {
				/* A broken MX host may be fixed soon: retry. */
				q->status = DNS_TEMPFAIL;
				snprintf(q->error, sizeof(q->error),
				         "Host or domain name not found. Name service error for "
				         "name=%s type=A: %s",
				         h,
				         temp ? "Temporary failure in name resolution"
				              : "Host not found");
			} else {
				q->status = DNS_NOTFOUND;
				snprintf(q->error, sizeof(q->error),
				         "Host or domain name not found. Name service error for "
				         "name=%s type=A: Host not found",
				         h);
			}
		}
	}
	event_active(q->fire, EV_TIMEOUT, 0);
}

static void
dns_addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_host *h = arg;
	struct dns_req *q = h->req;

	if (q->dns->freeing) {
		if (res != NULL)
			ares_freeaddrinfo(res);
		return;
	}
	h->ares_status = status;
	if (status == ARES_SUCCESS && res != NULL) {
		for (struct ares_addrinfo_node *ai = res->nodes;
		     ai != NULL && h->n_addrs < DNS_MAX_ADDRS_PER_HOST; ai = ai->ai_next) {
			if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
			    ai->ai_addrlen > sizeof(struct sockaddr_storage))
				continue;
			bool dup = false;
			for (size_t k = 0; k < h->n_addrs; k++)
				if (h->addrs[k].addrlen == ai->ai_addrlen &&
				    memcmp(&h->addrs[k].addr, ai->ai_addr, ai->ai_addrlen) == 0)
					dup = true;
			if (dup)
				continue;
			h->addrs = xrealloc(h->addrs, (h->n_addrs + 1) * sizeof(*h->addrs));
			struct dns_target *t = &h->addrs[h->n_addrs++];
			memset(t, 0, sizeof(*t));
			memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
			t->addrlen = ai->ai_addrlen;
			if (ai->ai_family == AF_INET)
				((struct sockaddr_in *)&t->addr)->sin_port =
				        htons((uint16_t)q->port);
			else
				((struct sockaddr_in6 *)&t->addr)->sin6_port =
				        htons((uint16_t)q->port);
			snprintf(t->host, sizeof(t->host), "%s", h->name);
			t->preference = h->preference;
		}
	}
	if (res != NULL)
		ares_freeaddrinfo(res);
	if (--q->pending == 0)
		dns_req_finish(q);
}

static void
dns_lookup_hosts(struct dns_req *q)
{
	struct ares_addrinfo_hints hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	q->pending = (unsigned)q->n_hosts;
	for (size_t i = 0; i < q->n_hosts; i++)
		ares_getaddrinfo(q->dns->ch, q->hosts[i].name, NULL, &hints, dns_addrinfo_cb,
		                 &q->hosts[i]);
	dns_reschedule(q->dns);
}

static void
dns_add_host(struct dns_req *q, const char *name, unsigned pref)
{
	q->hosts = xrealloc(q->hosts, (q->n_hosts + 1) * sizeof(*q->hosts));
	struct dns_host *h = &q->hosts[q->n_hosts++];
	memset(h, 0, sizeof(*h));
	h->req = q;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->preference = pref;
}

static unsigned (*dns_rnd)(unsigned) = dns_random;

static void
dns_mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *q = arg;
	struct ares_mx_reply *mx = NULL;
	bool null_mx = false;

	if (q->dns->freeing)
		return;
	q->pending--;
	if (status == ARES_SUCCESS) {
		status = ares_parse_mx_reply(abuf, alen, &mx);
	}
	if (status == ARES_ENODATA || (status == ARES_SUCCESS && mx == NULL)) {
		/* RFC 5321 5.1: no MX, the domain itself is the host. */
		q->implicit = true;
		dns_add_host(q, q->name, 0);
		dns_lookup_hosts(q);
		return;
	}
	if (status == ARES_ENOTFOUND) {
		q->status = DNS_NOTFOUND;
		snprintf(q->error, sizeof(q->error),
		         "Host or domain name not found. Name service error for name=%s type=MX: "
		         "Host not found",
		         q->name);
		dns_req_finish(q);
		return;
	}
	if (status != ARES_SUCCESS) {
		q->status = DNS_TEMPFAIL;
		snprintf(q->error, sizeof(q->error),
		         "Host or domain name not found. Name service error for name=%s type=MX: "
		         "%s",
		         q->name, ares_strerror(status));
		dns_req_finish(q);
		return;
	}
	/* Sort MX hosts: the targets' sort works on hosts through a copy. */
	struct dns_target order[DNS_MAX_MX];
	size_t n = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
		if (m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
			null_mx = true;
			continue;
		}
		if (n == DNS_MAX_MX)
			continue;
		memset(&order[n], 0, sizeof(order[n]));
		snprintf(order[n].host, sizeof(order[n].host), "%s", m->host);
		order[n].preference = m->priority;
		n++;
	}
	ares_free_data(mx);
	if (n == 0) {
		/* RFC 7505 3: "." as the only MX: no mail for this domain. */
		q->status = null_mx ? DNS_NULLMX : DNS_NOTFOUND;
		snprintf(q->error, sizeof(q->error),
		         null_mx ? "Domain %s does not accept mail (nullMX)"
		                 : "Host or domain name not found. Name service error for "
		                   "name=%s type=MX: no usable MX host",
		         q->name);
		dns_req_finish(q);
		return;
	}
	dns_sort_targets(order, n, dns_rnd);
	for (size_t i = 0; i < n; i++) {
		char *host = order[i].host;
		size_t len = strlen(host);
		if (len > 0 && host[len - 1] == '.')
			host[len - 1] = '\0';
		dns_add_host(q, host, order[i].preference);
	}
	dns_lookup_hosts(q);
}

void
dns_resolve(struct dns *d, const char *name, bool mx, unsigned port, dns_targets_cb *cb, void *arg)
{
	struct dns_req *q = xcalloc(1, sizeof(*q));

	q->dns = d;
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->mx = mx;
	q->port = port;
	q->cb = cb;
	q->arg = arg;
	q->status = DNS_OK;
	q->fire = event_new(d->base, -1, 0, dns_fire_cb, q);
	LIST_INSERT_HEAD(&d->reqs, q, entry);

	/* An address literal needs no lookup at all. */
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	bool v4 = inet_pton(AF_INET, name, &sin.sin_addr) == 1;
	if (v4 || inet_pton(AF_INET6, name, &sin6.sin6_addr) == 1) {
		dns_add_host(q, name, 0);
		struct dns_host *h = &q->hosts[0];
		h->addrs = xcalloc(1, sizeof(*h->addrs));
		h->n_addrs = 1;
		if (v4)
			memcpy(&h->addrs[0].addr, &sin, sizeof(sin));
		else
			memcpy(&h->addrs[0].addr, &sin6, sizeof(sin6));
		h->addrs[0].addrlen = v4 ? sizeof(sin) : sizeof(sin6);
		snprintf(h->addrs[0].host, sizeof(h->addrs[0].host), "%s", name);
		dns_req_finish(q);
		return;
	}
	if (!mx) {
		q->implicit = true;
		dns_add_host(q, name, 0);
		dns_lookup_hosts(q);
		return;
	}
	q->pending = 1;
	ares_query(d->ch, name, ns_c_in, ns_t_mx, dns_mx_cb, q);
	dns_reschedule(d);
}
