/* SPDX-License-Identifier: ISC */
/*
 * test_proxy_header.c - proxy_header.h: PROXY protocol v1 and v2 headers,
 * whole, split at every byte, followed by other bytes, and hostile ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "smtpd/proxy_header.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static const char *
src_str(const struct proxy_header *h, char *buf, size_t size, unsigned *port_r)
{
	if (h->src.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)&h->src;
		*port_r = ntohs(s->sin_port);
		return inet_ntop(AF_INET, &s->sin_addr, buf, (socklen_t)size);
	}
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h->src;
	*port_r = ntohs(s->sin6_port);
	return inet_ntop(AF_INET6, &s->sin6_addr, buf, (socklen_t)size);
}

/* Every prefix of a valid header is PARSE_AGAIN, the whole one PARSE_OK. */
static void
assert_prefixes_again(const uint8_t *buf, size_t hlen)
{
	struct proxy_header h;
	const char *error;

	for (size_t n = 0; n < hlen; n++)
		if (proxy_header_parse(buf, n, &h, &error) != PARSE_AGAIN)
			fail_msg("prefix of %zu bytes of %zu: %s", n, hlen, error ? error : "OK");
}

static void
test_v1_tcp4(void **state)
{
	const char *line = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 587\r\nEHLO x\r\n";
	size_t hlen = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 587\r\n");
	struct proxy_header h;
	const char *error;
	char buf[64];
	unsigned port;

	assert_prefixes_again((const uint8_t *)line, hlen);
	assert_int_equal(proxy_header_parse((const uint8_t *)line, strlen(line), &h, &error),
	                 PARSE_OK);
	assert_int_equal(h.version, 1);
	assert_true(h.has_addr);
	assert_int_equal(h.len, hlen);
	assert_string_equal(src_str(&h, buf, sizeof(buf), &port), "192.0.2.7");
	assert_int_equal(port, 56324);
}

static void
test_v1_tcp6_unknown(void **state)
{
	const char *line = "PROXY TCP6 2001:db8::5 2001:db8::1 1 25\r\n";
	struct proxy_header h;
	const char *error;
	char buf[64];
	unsigned port;

	assert_int_equal(proxy_header_parse((const uint8_t *)line, strlen(line), &h, &error),
	                 PARSE_OK);
	assert_string_equal(src_str(&h, buf, sizeof(buf), &port), "2001:db8::5");
	assert_int_equal(port, 1);

	line = "PROXY UNKNOWN\r\n";
	assert_int_equal(proxy_header_parse((const uint8_t *)line, strlen(line), &h, &error),
	                 PARSE_OK);
	assert_false(h.has_addr);
	assert_int_equal(h.len, strlen(line));
	line = "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n";
	assert_int_equal(proxy_header_parse((const uint8_t *)line, strlen(line), &h, &error),
	                 PARSE_OK);
	assert_false(h.has_addr);
}

static void
test_v1_invalid(void **state)
{
	static const char *const bad[] = {
	        "EHLO client.example\r\n",
	        "PROXY  TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n",
	        "PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
	        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
	        "PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",
	        "PROXY TCP4 192.0.2.007 198.51.100.1 1 2\r\n",
	        "PROXY TCP4 host.example 198.51.100.1 1 2\r\n",
	        "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
	        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\rX",
	        "PROXY \r\n",
	        "PROXY TCP4 192.0.2.7\n198.51.100.1 1 2\r\n",
	        "PROXY UNKNOWN\n\r\n",
	        "PROXY\r\n",
	};
	struct proxy_header h;
	const char *error;

	for (size_t i = 0; i < AR_NELEM(bad); i++) {
		enum parse_result r =
		        proxy_header_parse((const uint8_t *)bad[i], strlen(bad[i]), &h, &error);
		if (r != PARSE_INVALID)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(error);
	}
	/* A NUL inside the line. */
	const uint8_t nul[] = "PROXY TCP4 192.0.2.7\0198.51.100.1 1 2\r\n";
	assert_int_equal(proxy_header_parse(nul, sizeof(nul) - 1, &h, &error), PARSE_INVALID);
}

static void
test_v1_too_long(void **state)
{
	uint8_t line[300];
	struct proxy_header h;
	const char *error;

	memset(line, '1', sizeof(line));
	memcpy(line, "PROXY ", 6);
	/* No CRLF within 107 bytes: refused without waiting for more. */
	assert_int_equal(proxy_header_parse(line, 105, &h, &error), PARSE_AGAIN);
	assert_int_equal(proxy_header_parse(line, 106, &h, &error), PARSE_INVALID);
	assert_int_equal(proxy_header_parse(line, sizeof(line), &h, &error), PARSE_INVALID);
	/* A line of exactly 107 bytes is the longest allowed (UNKNOWN). */
	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'x', 105 - 14);
	memcpy(line + 105, "\r\n", 2);
	assert_int_equal(proxy_header_parse(line, 107, &h, &error), PARSE_OK);
	assert_int_equal(h.len, 107);
	memset(line + 14, 'x', 106 - 14);
	memcpy(line + 106, "\r\n", 2);
	assert_int_equal(proxy_header_parse(line, 108, &h, &error), PARSE_INVALID);
}

/* A v2 header: command, family byte, address block, TLV bytes. */
static size_t
make_v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t addrlen,
        const uint8_t *tlv, size_t tlvlen)
{
	size_t body = addrlen + tlvlen;

	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(body >> 8);
	out[15] = (uint8_t)body;
	if (addrlen > 0)
		memcpy(out + 16, addr, addrlen);
	if (tlvlen > 0)
		memcpy(out + 16 + addrlen, tlv, tlvlen);
	return 16 + body;
}

static void
test_v2_inet_with_tlvs(void **state)
{
	const uint8_t addr[12] = {192, 0, 2, 9, 127, 0, 0, 1, 0xc3, 0x50, 0x02, 0x4b};
	/* ALPN "h2", a NOOP of 0 bytes, a unique id of 4 bytes. */
	const uint8_t tlv[] = {0x01, 0, 2, 'h', '2', 0x04, 0, 0, 0x05, 0, 4, 1, 2, 3, 4};
	uint8_t buf[128];
	struct proxy_header h;
	const char *error;
	char text[64];
	unsigned port;
	size_t n = make_v2(buf, 0x21, 0x11, addr, sizeof(addr), tlv, sizeof(tlv));

	assert_prefixes_again(buf, n);
	memcpy(buf + n, "\x16\x03\x01", 3); /* a ClientHello follows */
	assert_int_equal(proxy_header_parse(buf, n + 3, &h, &error), PARSE_OK);
	assert_int_equal(h.version, 2);
	assert_true(h.has_addr);
	assert_int_equal(h.len, n);
	assert_string_equal(src_str(&h, text, sizeof(text), &port), "192.0.2.9");
	assert_int_equal(port, 50000);
}

static void
test_v2_inet6_local_unspec(void **state)
{
	uint8_t addr[36] = {0x20,        0x01,        0x0d,        0xb8,     [15] = 7, [16] = 0x20,
	                    [17] = 0x01, [32] = 0x01, [33] = 0x02, [34] = 0, [35] = 25};
	uint8_t buf[128];
	struct proxy_header h;
	const char *error;
	char text[64];
	unsigned port;
	size_t n = make_v2(buf, 0x21, 0x21, addr, sizeof(addr), NULL, 0);

	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_OK);
	assert_string_equal(src_str(&h, text, sizeof(text), &port), "2001:db8::7");
	assert_int_equal(port, 258);

	/* LOCAL (HAProxy's health checks), with or without a block. */
	n = make_v2(buf, 0x20, 0x00, NULL, 0, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_OK);
	assert_false(h.has_addr);
	assert_int_equal(h.len, 16);
	n = make_v2(buf, 0x20, 0x11, addr, 12, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_OK);
	assert_false(h.has_addr);
	assert_int_equal(h.len, 28);
	/* PROXY with UNSPEC: the real endpoints stand. */
	n = make_v2(buf, 0x21, 0x00, NULL, 0, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_OK);
	assert_false(h.has_addr);
}

static void
test_v2_invalid(void **state)
{
	const uint8_t addr[36] = {0};
	const uint8_t bad_tlv[] = {0x01, 0, 9, 'h', '2'};
	uint8_t buf[PROXY_HEADER_MAX + 64];
	struct proxy_header h;
	const char *error;
	size_t n;

	/* version 1 in the v2 framing, unknown command, UNIX family, UDP */
	n = make_v2(buf, 0x11, 0x11, addr, 12, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	n = make_v2(buf, 0x22, 0x11, addr, 12, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	n = make_v2(buf, 0x21, 0x31, addr, 36, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	n = make_v2(buf, 0x21, 0x12, addr, 12, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	/* address block shorter than the family's */
	n = make_v2(buf, 0x21, 0x21, addr, 12, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	/* a TLV running past the header */
	n = make_v2(buf, 0x21, 0x11, addr, 12, bad_tlv, sizeof(bad_tlv));
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	/* a length over the limit is refused from the first 16 bytes */
	n = make_v2(buf, 0x21, 0x11, addr, 12, NULL, 0);
	buf[14] = 0xff;
	buf[15] = 0xff;
	assert_int_equal(proxy_header_parse(buf, 16, &h, &error), PARSE_INVALID);
	assert_non_null(error);
	/* a damaged signature */
	n = make_v2(buf, 0x21, 0x11, addr, 12, NULL, 0);
	buf[5] = 'X';
	assert_int_equal(proxy_header_parse(buf, n, &h, &error), PARSE_INVALID);
	assert_int_equal(proxy_header_parse(buf, 6, &h, &error), PARSE_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_v1_tcp4),
	        cmocka_unit_test(test_v1_tcp6_unknown),
	        cmocka_unit_test(test_v1_invalid),
	        cmocka_unit_test(test_v1_too_long),
	        cmocka_unit_test(test_v2_inet_with_tlvs),
	        cmocka_unit_test(test_v2_inet6_local_unspec),
	        cmocka_unit_test(test_v2_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
