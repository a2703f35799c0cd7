/* SPDX-License-Identifier: ISC */
/*
 * proxy_header.c - PROXY protocol v1 and v2 parsing (proxy_header.h).
 *
 * v1 is one text line: "PROXY TCP4 src dst sport dport\r\n" (or TCP6, or
 * "PROXY UNKNOWN ...\r\n"), 107 bytes at most. v2 is a 12-byte signature, a
 * version/command byte, a family/protocol byte, a big-endian length, then
 * the addresses and TLVs. TLVs (ALPN, authority, SSL details, CRC...) are
 * checked for shape and skipped: nothing here decides on them.
 *
 * The parser is strict where leniency would let a client smuggle an
 * address: exact separators, numeric addresses only, ports in range, and
 * nothing accepted past the declared length.
 */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

#define V2_HEAD 16
#define V2_ADDR4 12
#define V2_ADDR6 36

/* True when buf (len bytes) is a prefix of sig or sig a prefix of buf. */
static bool
prefix_match(const uint8_t *buf, size_t len, const void *sig, size_t siglen)
{
	return memcmp(buf, sig, len < siglen ? len : siglen) == 0;
}

/* A decimal port, 0..65535, without sign or leading zero. */
static int
parse_port(const char *s, uint16_t *port_r)
{
	size_t n = strlen(s);
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

/* One v1 address and port into ss (family AF_INET or AF_INET6). */
static int
v1_addr(int family, const char *addr, const char *port, struct sockaddr_storage *ss,
        socklen_t *len_r)
{
	uint16_t p;

	if (parse_port(port, &p) < 0)
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return -1;
		*len_r = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
			return -1;
		*len_r = sizeof(*sin6);
	}
	return 0;
}

static enum parse_result
parse_v1(const uint8_t *buf, size_t len, struct proxy_header *h, const char **error_r)
{
	/* CRLF included, the line is PROXY_V1_MAX bytes at most. */
	size_t window = len < PROXY_V1_MAX - 1 ? len : PROXY_V1_MAX - 1;
	const uint8_t *cr = memchr(buf, '\r', window);
	char line[PROXY_V1_MAX + 1];
	char *field[6];
	size_t n = 0;

	if (cr == NULL) {
		if (memchr(buf, '\n', window) != NULL) {
			*error_r = "PROXY v1 line ends without CRLF";
			return PARSE_INVALID;
		}
		if (len >= PROXY_V1_MAX - 1) {
			*error_r = "PROXY v1 line longer than 107 bytes";
			return PARSE_INVALID;
		}
		return PARSE_AGAIN;
	}
	size_t linelen = (size_t)(cr - buf);
	if (linelen + 1 >= len)
		return PARSE_AGAIN; /* the LF is still to come */
	if (cr[1] != '\n') {
		*error_r = "PROXY v1 line: CR without LF";
		return PARSE_INVALID;
	}
	/* A bare LF before the CR is refused as it would be when seen
	 * without the CR (a prefix must not be refused when the whole is
	 * accepted). */
	if (memchr(buf, '\0', linelen) != NULL || memchr(buf, '\n', linelen) != NULL) {
		*error_r = "PROXY v1 line holds a NUL or a bare LF";
		return PARSE_INVALID;
	}
	memcpy(line, buf, linelen);
	line[linelen] = '\0';
	/* Single spaces between fields, none at the ends. */
	for (char *p = line + strlen(v1_sig), *start = p;; p++) {
		if (*p == ' ' || *p == '\0') {
			if (p == start || n == AR_NELEM(field)) {
				*error_r = "PROXY v1 line: bad field separation";
				return PARSE_INVALID;
			}
			bool end = *p == '\0';
			*p = '\0';
			field[n++] = start;
			start = p + 1;
			if (end)
				break;
		}
	}
	h->version = 1;
	h->len = linelen + 2;
	if (strcmp(field[0], "UNKNOWN") == 0) {
		/* The proxy does not know the client (its health checks):
		 * whatever follows on the line is ignored, as the spec says. */
		h->has_addr = false;
		return PARSE_OK;
	}
	int family = strcmp(field[0], "TCP4") == 0   ? AF_INET
	             : strcmp(field[0], "TCP6") == 0 ? AF_INET6
	                                             : AF_UNSPEC;
	if (family == AF_UNSPEC) {
		*error_r = "PROXY v1 line: protocol is not TCP4, TCP6 or UNKNOWN";
		return PARSE_INVALID;
	}
	if (n != 5 || v1_addr(family, field[1], field[3], &h->src, &h->srclen) < 0 ||
	    v1_addr(family, field[2], field[4], &h->dst, &h->dstlen) < 0) {
		*error_r = "PROXY v1 line: bad addresses or ports";
		return PARSE_INVALID;
	}
	h->has_addr = true;
	return PARSE_OK;
}

/* The TLVs after the addresses: type, 16-bit length, value; each must fit. */
static bool
v2_tlvs_fit(const uint8_t *p, size_t len)
{
	while (len > 0) {
		if (len < 3)
			return false;
		size_t vlen = (size_t)p[1] << 8 | p[2];
		if (3 + vlen > len)
			return false;
		p += 3 + vlen;
		len -= 3 + vlen;
	}
	return true;
}

static enum parse_result
parse_v2(const uint8_t *buf, size_t len, struct proxy_header *h, const char **error_r)
{
	if (len < V2_HEAD)
		return PARSE_AGAIN;
	unsigned version = buf[12] >> 4, command = buf[12] & 0x0f;
	unsigned family = buf[13] >> 4, proto = buf[13] & 0x0f;
	size_t body = (size_t)buf[14] << 8 | buf[15];

	if (version != 2) {
		*error_r = "PROXY v2 header: version is not 2";
		return PARSE_INVALID;
	}
	if (command > 1) {
		*error_r = "PROXY v2 header: command is neither LOCAL nor PROXY";
		return PARSE_INVALID;
	}
	if (V2_HEAD + body > PROXY_HEADER_MAX) {
		*error_r = "PROXY v2 header longer than the limit";
		return PARSE_INVALID;
	}
	if (len < V2_HEAD + body)
		return PARSE_AGAIN;

	const uint8_t *p = buf + V2_HEAD;
	size_t addrlen = 0;
	h->version = 2;
	h->len = V2_HEAD + body;
	h->has_addr = false;
	if (command == 0) {
		/* LOCAL: the proxy speaking for itself (health checks); the
		 * block is skipped whatever its family. */
		return PARSE_OK;
	}
	if (family == 1 || family == 2) {
		if (proto != 1) {
			*error_r = "PROXY v2 header: not a stream connection";
			return PARSE_INVALID;
		}
		addrlen = family == 1 ? V2_ADDR4 : V2_ADDR6;
		if (body < addrlen) {
			*error_r = "PROXY v2 header: address block too short";
			return PARSE_INVALID;
		}
	} else if (family != 0) {
		/* AF_UNIX: no address a limit or a log could use. */
		*error_r = "PROXY v2 header: address family is not INET or INET6";
		return PARSE_INVALID;
	}
	if (!v2_tlvs_fit(p + addrlen, body - addrlen)) {
		*error_r = "PROXY v2 header: malformed TLV";
		return PARSE_INVALID;
	}
	if (family == 0)
		return PARSE_OK; /* UNSPEC: the real endpoints stand */

	memset(&h->src, 0, sizeof(h->src));
	memset(&h->dst, 0, sizeof(h->dst));
	if (family == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p, 4);
		memcpy(&d->sin_addr, p + 4, 4);
		memcpy(&s->sin_port, p + 8, 2);
		memcpy(&d->sin_port, p + 10, 2);
		h->srclen = h->dstlen = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p, 16);
		memcpy(&d->sin6_addr, p + 16, 16);
		memcpy(&s->sin6_port, p + 32, 2);
		memcpy(&d->sin6_port, p + 34, 2);
		h->srclen = h->dstlen = sizeof(*s);
	}
	h->has_addr = true;
	return PARSE_OK;
}

enum parse_result
proxy_header_parse(const uint8_t *buf, size_t len, struct proxy_header *h_r, const char **error_r)
{
	memset(h_r, 0, sizeof(*h_r));
	*error_r = NULL;
	if (len == 0)
		return PARSE_AGAIN;
	if (prefix_match(buf, len, v2_sig, sizeof(v2_sig)))
		return parse_v2(buf, len, h_r, error_r);
	if (prefix_match(buf, len, v1_sig, strlen(v1_sig))) {
		if (len <= strlen(v1_sig))
			return PARSE_AGAIN;
		return parse_v1(buf, len, h_r, error_r);
	}
	*error_r = "no PROXY protocol header";
	return PARSE_INVALID;
}
