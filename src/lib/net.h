/* SPDX-License-Identifier: ISC */
/*
 * net.h - address helpers: parse "host:port" and CIDR text, match addresses
 * against networks, format addresses, and derive the per-client key used by
 * the connection limits (IPv4 /32, IPv6 masked to a prefix).
 */
#ifndef AUTHRELAY_NET_H
#define AUTHRELAY_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "common.h"

struct cidr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network address, host bits cleared */
	unsigned prefix;
};

/* Parse "1.2.3.4:25", "[::1]:587" or "*:25" / "[::]:25" (numeric only, no DNS).
 * Returns 0 or -1 with *error_r set to a static reason. */
int net_parse_hostport(const char *text, struct sockaddr_storage *ss_r, socklen_t *len_r,
                       const char **error_r);
/* Parse "10.0.0.0/8", "2001:db8::/32" or a bare address (full-length prefix). */
int net_parse_cidr(const char *text, struct cidr *r, const char **error_r);
bool net_cidr_match(const struct cidr *, const struct sockaddr *sa);
/* "10.0.0.0/8": the network as net_parse_cidr() reads it back. */
const char *net_cidr_str(const struct cidr *, char *buf, size_t bufsz);
/* "1.2.3.4" or "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4). */
const char *net_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz);
/* Key for per-client limits: 16 bytes; IPv4 (and v4-mapped) as ::ffff:a.b.c.d,
 * IPv6 masked to v6_prefix bits. */
void net_client_key(const struct sockaddr *sa, unsigned v6_prefix, uint8_t key_r[16]);
/* Set O_NONBLOCK and FD_CLOEXEC. */
int net_set_nonblock(int fd);

#endif
