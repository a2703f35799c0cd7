/* SPDX-License-Identifier: ISC */
/*
 * route.c - the routing decision (route.h). Order, most specific first:
 * a [route NAME] naming the domain (exact, then the longest ".suffix"),
 * the [queue] smarthost, the domain's own MX records.
 */
#include "route.h"

#include <stdio.h>
#include <string.h>

void
route_decide(const struct queue_config *qc, const char *domain, struct route_decision *r)
{
	const struct route_cfg *rt = queue_config_route(qc, domain);

	memset(r, 0, sizeof(*r));
	r->route = rt;
	if (rt != NULL) {
		r->type = rt->type;
		r->tls = rt->tls;
		r->tls_ca_file = rt->tls_ca_file;
		r->internal = rt->internal;
		if (rt->type == ROUTE_MAILDIR) {
			snprintf(r->key, sizeof(r->key), "maildir:%s", rt->name);
			return;
		}
		if (rt->nexthop.host != NULL) {
			/* Every domain of the route shares its next hop. */
			snprintf(r->key, sizeof(r->key), "route:%s", rt->name);
			snprintf(r->host, sizeof(r->host), "%s", rt->nexthop.host);
			r->mx = !rt->nexthop.no_mx;
			r->port = rt->nexthop.port;
			return;
		}
		/* A route without nexthop: the domain's MX hosts, with the
		 * route's TLS policy and limits. */
		snprintf(r->key, sizeof(r->key), "route:%s:mx:%s", rt->name, domain);
		snprintf(r->host, sizeof(r->host), "%s", domain);
		r->mx = true;
		r->port = qc->smtp_port;
		return;
	}
	r->type = ROUTE_SMTP;
	r->tls = qc->tls;
	r->tls_ca_file = qc->tls_ca_file;
	if (qc->smarthost.host != NULL) {
		snprintf(r->key, sizeof(r->key), "smarthost");
		snprintf(r->host, sizeof(r->host), "%s", qc->smarthost.host);
		r->mx = !qc->smarthost.no_mx;
		r->port = qc->smarthost.port;
		return;
	}
	snprintf(r->key, sizeof(r->key), "mx:%s", domain);
	snprintf(r->host, sizeof(r->host), "%s", domain);
	r->mx = true;
	r->port = qc->smtp_port;
}
