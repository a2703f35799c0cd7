/* SPDX-License-Identifier: ISC */
/*
 * test_net.c - net.h: host:port and CIDR parsing, network matching, address
 * formatting, the per-client limit key and net_set_nonblock().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "lib/net.h"

/* A sockaddr from numeric text, for the tables below. */
static socklen_t
make_sa(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
		return sizeof(*sin6);
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	return sizeof(*sin);
}

static void
test_parse_hostport_valid(void **state)
{
	static const struct {
		const char *text;
		int family;
		const char *addr;
		unsigned port;
	} cases[] = {
	        {"127.0.0.1:2587", AF_INET, "127.0.0.1", 2587},
	        {"0.0.0.0:25", AF_INET, "0.0.0.0", 25},
	        {"192.0.2.1:65535", AF_INET, "192.0.2.1", 65535},
	        {"[::1]:587", AF_INET6, "::1", 587},
	        {"[::]:25", AF_INET6, "::", 25},
	        {"[2001:db8::1]:465", AF_INET6, "2001:db8::1", 465},
	        {"[::ffff:192.0.2.1]:25", AF_INET6, "::ffff:192.0.2.1", 25},
	        /* "*" is every address: IPv6 any, bound dual-stack */
	        {"*:25", AF_INET6, "::", 25},
	        {"10.0.0.1:1", AF_INET, "10.0.0.1", 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		const char *error = NULL;
		char buf[64];

		if (net_parse_hostport(cases[i].text, &ss, &len, &error) != 0)
			fail_msg("%s: %s", cases[i].text, error);
		assert_int_equal(ss.ss_family, cases[i].family);
		if (cases[i].family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			assert_int_equal(len, sizeof(*sin));
			inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
			assert_int_equal(ntohs(sin->sin_port), cases[i].port);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			assert_int_equal(len, sizeof(*sin6));
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
			assert_int_equal(ntohs(sin6->sin6_port), cases[i].port);
		}
		assert_string_equal(buf, cases[i].addr);
	}
}

static void
test_parse_hostport_invalid(void **state)
{
	static const struct {
		const char *text;
		const char *error; /* a substring of the reason */
	} cases[] = {
	        {"127.0.0.1", "address:port"},
	        {"", "address:port"},
	        {"127.0.0.1:", "port"},
	        {"127.0.0.1:0", "port"},
	        {"127.0.0.1:65536", "port"},
	        {"127.0.0.1:99999999999999999999", "port"},
	        {"127.0.0.1:-1", "port"},
	        {"127.0.0.1:+25", "port"},
	        {"127.0.0.1: 25", "port"},
	        {"127.0.0.1:25x", "port"},
	        {"127.0.0.1:0x19", "port"},
	        {":25", "missing address"},
	        {"localhost:25", "not a numeric IPv4"},
	        {"mail.example.test:25", "not a numeric IPv4"},
	        {"256.0.0.1:25", "not a numeric IPv4"},
	        {"1.2.3:25", "not a numeric IPv4"},
	        {"::1:25", "brackets"},
	        {"[::1]", "':port'"},
	        {"[::1]587", "':port'"},
	        {"[::1:587", "missing ']'"},
	        {"[127.0.0.1]:25", "not a numeric IPv6"},
	        {"[fe80::1%eth0]:25", "zone"},
	        {"[*]:25", "not a numeric IPv6"},
	        {"[]:25", "not a numeric IPv6"},
	        {"**:25", "not a numeric IPv4"},
	        {"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1]:"
	         "25",
	         "too long"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		const char *error = NULL;

		if (net_parse_hostport(cases[i].text, &ss, &len, &error) != -1)
			fail_msg("'%s' was accepted", cases[i].text);
		assert_non_null(error);
		if (strstr(error, cases[i].error) == NULL)
			fail_msg("'%s': reason '%s' lacks '%s'", cases[i].text, error,
			         cases[i].error);
	}
}

static void
test_parse_cidr_valid(void **state)
{
	static const struct {
		const char *text;
		int family;
		const char *addr; /* network address, host bits cleared */
		unsigned prefix;
	} cases[] = {
	        {"10.0.0.0/8", AF_INET, "10.0.0.0", 8},
	        {"10.1.2.3/8", AF_INET, "10.0.0.0", 8},
	        {"192.0.2.77/26", AF_INET, "192.0.2.64", 26},
	        {"192.0.2.1", AF_INET, "192.0.2.1", 32},
	        {"0.0.0.0/0", AF_INET, "0.0.0.0", 0},
	        {"1.2.3.4/0", AF_INET, "0.0.0.0", 0},
	        {"2001:db8::/32", AF_INET6, "2001:db8::", 32},
	        {"2001:db8:ffff::1/33", AF_INET6, "2001:db8:8000::", 33},
	        {"::1", AF_INET6, "::1", 128},
	        {"::/0", AF_INET6, "::", 0},
	        /* v4-mapped networks become the IPv4 network they describe */
	        {"::ffff:10.0.0.0/104", AF_INET, "10.0.0.0", 8},
	        {"::ffff:192.0.2.1", AF_INET, "192.0.2.1", 32},
	        /* shorter than /96 it is an IPv6 network like any other */
	        {"::ffff:0.0.0.0/80", AF_INET6, "::", 80},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		const char *error = NULL;
		char buf[64];

		if (net_parse_cidr(cases[i].text, &c, &error) != 0)
			fail_msg("%s: %s", cases[i].text, error);
		assert_int_equal(c.family, cases[i].family);
		assert_int_equal(c.prefix, cases[i].prefix);
		inet_ntop(c.family, c.addr, buf, sizeof(buf));
		if (strcmp(buf, cases[i].addr) != 0)
			fail_msg("%s: network %s, expected %s", cases[i].text, buf, cases[i].addr);
	}
}

static void
test_parse_cidr_invalid(void **state)
{
	static const char *const cases[] = {
	        "",
	        "/8",
	        "10.0.0.0/",
	        "10.0.0.0/33",
	        "10.0.0.0/-1",
	        "10.0.0.0/8x",
	        "10.0.0.0/ 8",
	        "10.0.0/8",
	        "10.0.0.0.0/8",
	        "2001:db8::/129",
	        "2001:db8::/1000000000000",
	        "example.test/24",
	        "10.0.0.0/8/8",
	        "[::1]/128",
	        "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1/128",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		const char *error = NULL;

		if (net_parse_cidr(cases[i], &c, &error) != -1)
			fail_msg("'%s' was accepted", cases[i]);
		assert_non_null(error);
	}
}

static void
test_cidr_match(void **state)
{
	static const struct {
		const char *cidr;
		const char *addr;
		bool match;
	} cases[] = {
	        {"10.0.0.0/8", "10.255.1.2", true},
	        {"10.0.0.0/8", "11.0.0.1", false},
	        {"10.0.0.0/8", "9.255.255.255", false},
	        {"192.0.2.64/26", "192.0.2.127", true},
	        {"192.0.2.64/26", "192.0.2.128", false},
	        {"192.0.2.1", "192.0.2.1", true},
	        {"192.0.2.1", "192.0.2.2", false},
	        {"0.0.0.0/0", "203.0.113.9", true},
	        {"0.0.0.0/0", "2001:db8::1", false},
	        /* an IPv4 client seen through a dual-stack socket */
	        {"10.0.0.0/8", "::ffff:10.1.2.3", true},
	        {"10.0.0.0/8", "::ffff:11.1.2.3", false},
	        {"::ffff:10.0.0.0/104", "10.9.9.9", true},
	        {"2001:db8::/32", "2001:db8:1::5", true},
	        {"2001:db8::/32", "2001:db9::5", false},
	        {"2001:db8::/32", "10.0.0.1", false},
	        {"::1", "::1", true},
	        {"::1", "::2", false},
	        {"::/0", "2001:db8::1", true},
	        {"::/0", "10.0.0.1", false},
	        {"2001:db8:ff80::/41", "2001:db8:ffff::1", true},
	        {"2001:db8:ff80::/41", "2001:db8:ff7f::1", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		struct sockaddr_storage ss;
		const char *error;

		assert_int_equal(net_parse_cidr(cases[i].cidr, &c, &error), 0);
		make_sa(cases[i].addr, &ss);
		if (net_cidr_match(&c, (struct sockaddr *)&ss) != cases[i].match)
			fail_msg("%s in %s: expected %s", cases[i].addr, cases[i].cidr,
			         cases[i].match ? "match" : "no match");
	}
}

static void
test_addr_str(void **state)
{
	static const struct {
		const char *addr;
		const char *shown;
	} cases[] = {
	        {"192.0.2.1", "192.0.2.1"},
	        {"2001:db8::1", "2001:db8::1"},
	        {"::1", "::1"},
	        {"::ffff:192.0.2.1", "192.0.2.1"},
	};
	struct sockaddr_storage ss;
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_sa(cases[i].addr, &ss);
		assert_ptr_equal(net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), buf);
		assert_string_equal(buf, cases[i].shown);
	}

	/* A buffer too small, and a family we do not know, give "?". */
	make_sa("2001:db8::1", &ss);
	net_addr_str((struct sockaddr *)&ss, buf, 5);
	assert_string_equal(buf, "?");
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "?");
}

static void
test_client_key(void **state)
{
	static const struct {
		const char *addr;
		unsigned prefix;
		const char *key; /* the 16 key bytes as an IPv6 address */
	} cases[] = {
	        {"192.0.2.1", 64, "::ffff:192.0.2.1"},
	        /* the IPv6 prefix never groups IPv4 clients */
	        {"192.0.2.1", 0, "::ffff:192.0.2.1"},
	        {"::ffff:192.0.2.1", 64, "::ffff:192.0.2.1"},
	        {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"},
	        {"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"},
	        {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
	        {"2001:db8:1:2:3:4:5:6", 200, "2001:db8:1:2:3:4:5:6"},
	        {"2001:db8:1:2:3:4:5:6", 0, "::"},
	        {"2001:db8:1:2:3:4:5:6", 60, "2001:db8:1::"},
	        {"2001:db8:1:ff:3:4:5:6", 60, "2001:db8:1:f0::"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		uint8_t key[16], want[16];

		make_sa(cases[i].addr, &ss);
		memset(key, 0xaa, sizeof(key));
		net_client_key((struct sockaddr *)&ss, cases[i].prefix, key);
		assert_int_equal(inet_pton(AF_INET6, cases[i].key, want), 1);
		if (memcmp(key, want, 16) != 0)
			fail_msg("%s /%u: wrong key", cases[i].addr, cases[i].prefix);
	}

	/* Two clients of one /64 share a key; the next /64 does not. */
	struct sockaddr_storage a, b, c;
	uint8_t ka[16], kb[16], kc[16];
	make_sa("2001:db8::1", &a);
	make_sa("2001:db8::ffff:2", &b);
	make_sa("2001:db8:0:1::1", &c);
	net_client_key((struct sockaddr *)&a, 64, ka);
	net_client_key((struct sockaddr *)&b, 64, kb);
	net_client_key((struct sockaddr *)&c, 64, kc);
	assert_memory_equal(ka, kb, 16);
	assert_memory_not_equal(ka, kc, 16);
}

static void
test_set_nonblock(void **state)
{
	int fds[2];

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(net_set_nonblock(fds[0]), 0);
	assert_true(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(net_set_nonblock(fds[0]), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_hostport_valid),
	        cmocka_unit_test(test_parse_hostport_invalid),
	        cmocka_unit_test(test_parse_cidr_valid),
	        cmocka_unit_test(test_parse_cidr_invalid),
	        cmocka_unit_test(test_cidr_match),
	        cmocka_unit_test(test_addr_str),
	        cmocka_unit_test(test_client_key),
	        cmocka_unit_test(test_set_nonblock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
