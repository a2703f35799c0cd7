/* SPDX-License-Identifier: ISC */
/*
 * route.h - where a recipient domain's mail goes: a [route NAME] that names
 * the domain (an SMTP next hop, the domain's MX hosts, or a Maildir), else
 * the [queue] smarthost, else the domain's MX hosts. The answer names a
 * destination: recipients with the same destination share connections,
 * transactions and concurrency limits.
 */
#ifndef AUTHRELAY_ROUTE_H
#define AUTHRELAY_ROUTE_H

#include "queue_config.h"

struct route_decision {
	enum route_type type;
	const struct route_cfg *route; /* NULL: smarthost or MX */
	char key[300];                 /* "route:NAME", "smarthost", "mx:DOMAIN" */
	char host[256];                /* what to resolve (or the IP literal) */
	bool mx;                       /* through MX records */
	unsigned port;
	enum route_tls tls;
	const char *tls_ca_file; /* NULL: the system's trust store */
	bool internal;           /* internal_* connection limits */
};

/* Decide for domain (lower case ASCII; "" for a bare address). */
void route_decide(const struct queue_config *qc, const char *domain, struct route_decision *r);

#endif
