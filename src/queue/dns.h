/* SPDX-License-Identifier: ISC */
/*
 * dns.h - asynchronous next-hop resolution with c-ares on a libevent loop:
 * the addresses to try for a domain's mail, in the order RFC 5321 5.1 says.
 *
 *   MX records sorted by preference, random order among equal preferences;
 *   each MX host's A and AAAA addresses in turn;
 *   no MX record at all (NODATA): the domain's own A/AAAA ("implicit MX");
 *   a null MX (RFC 7505: one MX "." with preference 0): DNS_NULLMX, bounce;
 *   NXDOMAIN: DNS_NOTFOUND, bounce; SERVFAIL, timeouts: DNS_TEMPFAIL, retry.
 *
 * The resolver is /etc/resolv.conf's, or [queue] resolver ("127.0.0.1:5353"),
 * which the tests use to point at their own DNS server.
 */
#ifndef AUTHRELAY_DNS_H
#define AUTHRELAY_DNS_H

#include <stddef.h>
#include <sys/socket.h>
#include "../lib/common.h"

struct event_base;
struct dns;

enum dns_status {
	DNS_OK = 0,
	DNS_NOTFOUND, /* the name does not exist, or has no address at all */
	DNS_NULLMX,   /* RFC 7505: the domain accepts no mail */
	DNS_TEMPFAIL, /* server failure, timeout, refused: try again later */
};

/* One address to connect to. */
struct dns_target {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];      /* the MX host (or the name itself): TLS name, logs */
	unsigned preference; /* MX preference, 0 for implicit MX / no MX lookup */
};

/* status DNS_OK: n > 0 targets, in the order to try them. Otherwise error
 * says why ("Host or domain name not found. ... type=MX: NXDOMAIN"). The
 * targets array is valid only during the call. */
typedef void dns_targets_cb(enum dns_status status, const char *error,
                            const struct dns_target *targets, size_t n, void *arg);

/* servers: NULL for the system resolver, else "IP[:PORT],..." */
struct dns *dns_new(struct event_base *base, const char *servers, const char **error_r);
/* Cancel every lookup (their callbacks are not called) and free. */
void dns_free(struct dns *);

/* Resolve name: with mx, through its MX records (falling back to A/AAAA);
 * without, only its A/AAAA (or name is an IP literal). port is put into
 * every target. cb runs exactly once, never before this returns. */
void dns_resolve(struct dns *, const char *name, bool mx, unsigned port, dns_targets_cb *cb,
                 void *arg);

/* Sort MX-ordered targets: by preference, shuffling equal ones (exported
 * for the unit tests). rnd(n) returns a number in [0, n). */
void dns_sort_targets(struct dns_target *t, size_t n, unsigned (*rnd)(unsigned n));

#endif
