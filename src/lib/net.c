/* SPDX-License-Identifier: ISC */
/*
 * net.c - address helpers shared by the config loader, the master (binding)
 * and the SMTP workers (relay policy, connection limits, logs).
 *
 * Everything here is numeric: no function resolves a name, so nothing here
 * can block the event loop or depend on DNS at start-up. IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
 * client) are treated as the IPv4 address they carry, so that one client
 * gets one key, one log form and one network match whichever socket it
 * reached.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest address text we accept, brackets excluded: a full IPv6 address
 * with an embedded IPv4 part is 45 characters. */
#define NET_ADDR_TEXT_MAX 64

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool
is_v4mapped(const uint8_t a[16])
{
	return memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0;
}

/* Digits only, no sign or spaces (strtoul would take both); 0 or -1. */
static int
parse_decimal(const char *s, unsigned long max, unsigned long *r)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -1;
	}
	*r = v;
	return 0;
}

/* Keep the first prefix bits of the len-byte address a, clear the rest. */
static void
mask_bits(uint8_t *a, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned bit = (unsigned)i * 8;
		if (prefix >= bit + 8)
			continue;
		if (prefix <= bit)
			a[i] = 0;
		else
			a[i] &= (uint8_t)(0xff << (8 - (prefix - bit)));
	}
}

/* The address family and bytes of sa, with v4-mapped IPv6 turned into IPv4.
 * Returns the family, or AF_UNSPEC for anything else. */
static int
sockaddr_bytes(const struct sockaddr *sa, uint8_t bytes_r[16])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		memcpy(bytes_r, &sin->sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = sin6->sin6_addr.s6_addr;
		if (is_v4mapped(a)) {
			memcpy(bytes_r, a + 12, 4);
			return AF_INET;
		}
		memcpy(bytes_r, a, 16);
		return AF_INET6;
	}
	return AF_UNSPEC;
}

int
net_parse_hostport(const char *text, struct sockaddr_storage *ss_r, socklen_t *len_r,
                   const char **error_r)
{
	char host[NET_ADDR_TEXT_MAX + 1];
	const char *port_text;
	size_t hostlen;
	unsigned long port;
	bool bracketed = false;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL) {
			*error_r = "missing ']' after the IPv6 address";
			return -1;
		}
		if (close[1] != ':') {
			*error_r = "expected ':port' after ']'";
			return -1;
		}
		bracketed = true;
		hostlen = (size_t)(close - text - 1);
		if (hostlen > NET_ADDR_TEXT_MAX) {
			*error_r = "address too long";
			return -1;
		}
		memcpy(host, text + 1, hostlen);
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon == NULL) {
			*error_r = "expected address:port";
			return -1;
		}
		if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
			*error_r = "an IPv6 address must be written in brackets: [::1]:587";
			return -1;
		}
		hostlen = (size_t)(colon - text);
		if (hostlen > NET_ADDR_TEXT_MAX) {
			*error_r = "address too long";
			return -1;
		}
		memcpy(host, text, hostlen);
		port_text = colon + 1;
	}
	host[hostlen] = '\0';

	if (parse_decimal(port_text, 65535, &port) < 0 || port == 0) {
		*error_r = "the port must be a number from 1 to 65535";
		return -1;
	}

	memset(ss_r, 0, sizeof(*ss_r));
	if (!bracketed && strcmp(host, "*") == 0) {
		/* Every address, IPv6 and (through a dual-stack socket) IPv4. */
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	if (bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;
		if (strchr(host, '%') != NULL) {
			*error_r = "IPv6 zone identifiers (%eth0) are not supported";
			return -1;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*error_r = "not a numeric IPv6 address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss_r;
	if (host[0] == '\0') {
		*error_r = "missing address before ':port' (use *:port for every address)";
		return -1;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		*error_r = "not a numeric IPv4 address (host names are not resolved)";
		return -1;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len_r = sizeof(*sin);
	return 0;
}

int
net_parse_cidr(const char *text, struct cidr *r, const char **error_r)
{
	char addr[NET_ADDR_TEXT_MAX + 1];
	const char *slash = strchr(text, '/');
	size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long prefix;
	unsigned max;

	if (len == 0) {
		*error_r = "missing network address";
		return -1;
	}
	if (len > NET_ADDR_TEXT_MAX) {
		*error_r = "network address too long";
		return -1;
	}
	memcpy(addr, text, len);
	addr[len] = '\0';

	memset(r, 0, sizeof(*r));
	if (inet_pton(AF_INET, addr, r->addr) == 1) {
		r->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, r->addr) == 1) {
		r->family = AF_INET6;
		max = 128;
	} else {
		*error_r = "not a numeric IPv4 or IPv6 network";
		return -1;
	}
	if (slash == NULL) {
		prefix = max;
	} else if (parse_decimal(slash + 1, max, &prefix) < 0) {
		*error_r = r->family == AF_INET
		                   ? "the prefix length must be a number from 0 to 32"
		                   : "the prefix length must be a number from 0 to 128";
		return -1;
	}
	r->prefix = (unsigned)prefix;

	/* ::ffff:10.0.0.0/104 is the IPv4 network 10.0.0.0/8; store it so, since
	 * net_cidr_match() compares v4-mapped clients as IPv4. */
	if (r->family == AF_INET6 && r->prefix >= 96 && is_v4mapped(r->addr)) {
		memmove(r->addr, r->addr + 12, 4);
		memset(r->addr + 4, 0, 12);
		r->family = AF_INET;
		r->prefix -= 96;
	}
	mask_bits(r->addr, r->family == AF_INET ? 4 : 16, r->prefix);
	return 0;
}

bool
net_cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int family = sockaddr_bytes(sa, a);

	if (family != c->family)
		return false;
	mask_bits(a, family == AF_INET ? 4 : 16, c->prefix);
	return memcmp(a, c->addr, family == AF_INET ? 4 : 16) == 0;
}

const char *
net_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz)
{
	uint8_t a[16];
	int family = sockaddr_bytes(sa, a);

	if (bufsz == 0)
		return buf;
	if (family == AF_UNSPEC || inet_ntop(family, a, buf, (socklen_t)bufsz) == NULL)
		snprintf(buf, bufsz, "?");
	return buf;
}

const char *
net_cidr_str(const struct cidr *c, char *buf, size_t bufsz)
{
	char addr[INET6_ADDRSTRLEN];

	if (inet_ntop(c->family, c->addr, addr, sizeof(addr)) == NULL)
		snprintf(addr, sizeof(addr), "?");
	snprintf(buf, bufsz, "%s/%u", addr, c->prefix);
	return buf;
}

void
net_client_key(const struct sockaddr *sa, unsigned v6_prefix, uint8_t key_r[16])
{
	uint8_t a[16];
	int family = sockaddr_bytes(sa, a);

	memset(key_r, 0, 16);
	if (family == AF_INET) {
		/* One IPv4 address is one client (spec 4.1: "IPv4 /32"). */
		memcpy(key_r, v4mapped_prefix, sizeof(v4mapped_prefix));
		memcpy(key_r + 12, a, 4);
	} else if (family == AF_INET6) {
		memcpy(key_r, a, 16);
		mask_bits(key_r, 16, v6_prefix > 128 ? 128 : v6_prefix);
	}
}

int
net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}
