/* SPDX-License-Identifier: ISC */
/*
 * proxy_header.h - the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that a load balancer sends before anything else on a
 * connection, carrying the address of the client it accepted.
 *
 * A pure parser over the bytes received so far: it never reads past the
 * header, so whatever follows (an implicit-TLS ClientHello) stays in the
 * socket. Its size is bounded: PROXY_HEADER_MAX bytes at most, or the
 * header is refused.
 */
#ifndef AUTHRELAY_PROXY_HEADER_H
#define AUTHRELAY_PROXY_HEADER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/common.h"

/* Longest header accepted: a v1 line is 107 bytes at most; a v2 header is
 * 16 bytes plus addresses (36 for IPv6) plus TLVs, which HAProxy keeps to a
 * few dozen bytes. Anything longer is refused rather than buffered. */
#define PROXY_HEADER_MAX 1024
#define PROXY_V1_MAX 107

struct proxy_header {
	int version; /* 1 or 2 */
	/* True when the header carries the client's address (v1 TCP4/TCP6,
	 * v2 PROXY over INET/INET6). False for v2 LOCAL (the proxy's own
	 * health checks), v1 UNKNOWN and v2 UNSPEC: the connection's real
	 * endpoints stand. */
	bool has_addr;
	struct sockaddr_storage src; /* the client, port included */
	socklen_t srclen;
	struct sockaddr_storage dst; /* the address the client connected to */
	socklen_t dstlen;
	size_t len; /* bytes of the header, to be consumed and no more */
};

/* Parse the first len bytes received on a connection. PARSE_OK: a whole
 * header, described in *h_r (h_r->len may be less than len). PARSE_AGAIN:
 * every byte so far belongs to a header that is not complete yet.
 * PARSE_INVALID: not a PROXY header, malformed, or longer than
 * PROXY_HEADER_MAX; *error_r says why (a static string). */
enum parse_result proxy_header_parse(const uint8_t *buf, size_t len, struct proxy_header *h_r,
                                     const char **error_r);

#endif
