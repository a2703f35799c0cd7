/* SPDX-License-Identifier: ISC */
/*
 * test_metrics_config.c - the [metrics] section: defaults (no endpoint,
 * loopback allowed, 10 s), each key, and the check that the endpoint never
 * takes a mail listener's address:port, wildcards included, with the error
 * on the address key's line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "lib/config.h"
#include "lib/net.h"
#include "metrics/metrics_config.h"

static struct config cfg;
static struct config_section secs[1];
static struct config_kv kvs[4];
static struct listener_cfg listener;

/* A config with listener "sub" on listen_at and a [metrics] section (line
 * 10) of n keys. */
static void
make_cfg(const char *listen_at, const char *const *keys, const char *const *values, size_t n)
{
	const char *why;

	memset(&cfg, 0, sizeof(cfg));
	memset(secs, 0, sizeof(secs));
	memset(&listener, 0, sizeof(listener));
	cfg.path = "/etc/authrelay.conf";
	listener.name = "sub";
	listener.address_text = (char *)listen_at;
	assert_int_equal(net_parse_hostport(listen_at, &listener.addr, &listener.addrlen, &why), 0);
	cfg.listeners = &listener;
	cfg.n_listeners = 1;
	for (size_t i = 0; i < n; i++)
		kvs[i] = (struct config_kv){
		        .key = (char *)keys[i], .value = (char *)values[i], .line = 11 + (int)i};
	if (n > 0) {
		secs[0] = (struct config_section){"metrics", NULL, 10, kvs, n};
		cfg.sections = secs;
		cfg.n_sections = 1;
	}
}

static void
test_defaults(void **state)
{
	struct metrics_config mc;
	char *err = NULL, buf[64];

	make_cfg("127.0.0.1:2525", NULL, NULL, 0);
	assert_int_equal(metrics_config_load(&cfg, &mc, &err), 0);
	assert_null(mc.address);
	assert_int_equal(mc.timeout, 10);
	assert_int_equal(mc.n_allow, 2);
	assert_string_equal(net_cidr_str(&mc.allow[0], buf, sizeof(buf)), "127.0.0.0/8");
	assert_string_equal(net_cidr_str(&mc.allow[1], buf, sizeof(buf)), "::1/128");
	metrics_config_clear(&mc);
}

static void
test_values(void **state)
{
	static const char *const k[] = {"address", "allow", "timeout"};
	static const char *const v[] = {"127.0.0.1:9587", "10.0.0.0/8 192.0.2.7", "1m"};
	struct metrics_config mc;
	char *err = NULL;

	make_cfg("127.0.0.1:2525", k, v, 3);
	assert_int_equal(metrics_config_load(&cfg, &mc, &err), 0);
	assert_string_equal(mc.address, "127.0.0.1:9587");
	assert_int_equal(mc.addr.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&mc.addr)->sin_port), 9587);
	assert_int_equal(mc.n_allow, 2);
	assert_int_equal(mc.timeout, 60);
	metrics_config_clear(&mc);
}

/* The errors: on their line, naming the key and why. */
static void
test_errors(void **state)
{
	static const struct {
		const char *listen_at, *key, *value, *want;
	} rows[] = {
	        {"127.0.0.1:2525", "address", "127.0.0.1:2525",
	         "/etc/authrelay.conf:11: [metrics] address = 127.0.0.1:2525: listener sub "
	         "(127.0.0.1:2525) takes it"},
	        {"*:2525", "address", "127.0.0.1:2525", "listener sub (*:2525) takes it"},
	        {"127.0.0.1:2525", "address", "[::]:2525", "listener sub (127.0.0.1:2525)"},
	        {"[::1]:2525", "address", "[::1]:2525", "listener sub ([::1]:2525)"},
	        {"127.0.0.1:2525", "address", "localhost:9587", "/etc/authrelay.conf:11: address"},
	        {"127.0.0.1:2525", "allow", "not-a-network", "/etc/authrelay.conf:11: allow"},
	        {"127.0.0.1:2525", "timeout", "0", "/etc/authrelay.conf:11: timeout"},
	        {"127.0.0.1:2525", "port", "1", "/etc/authrelay.conf:11:"},
	};
	for (size_t i = 0; i < AR_NELEM(rows); i++) {
		struct metrics_config mc;
		char *err = NULL;

		make_cfg(rows[i].listen_at, &rows[i].key, &rows[i].value, 1);
		assert_int_equal(metrics_config_load(&cfg, &mc, &err), -1);
		assert_non_null(err);
		if (strstr(err, rows[i].want) == NULL)
			fail_msg("row %zu: \"%s\" not in: %s", i, rows[i].want, err);
		assert_null(mc.address);
		free(err);
	}
}

/* Other ports, or other addresses on one port, are fine. */
static void
test_no_clash(void **state)
{
	static const char *const rows[][2] = {
	        {"127.0.0.1:2525", "127.0.0.1:9587"},
	        {"127.0.0.1:2525", "127.0.0.2:2525"},
	        {"[::1]:2525", "127.0.0.1:2525"},
	};
	for (size_t i = 0; i < AR_NELEM(rows); i++) {
		static const char *const key = "address";
		struct metrics_config mc;
		char *err = NULL;

		make_cfg(rows[i][0], &key, &rows[i][1], 1);
		assert_int_equal(metrics_config_load(&cfg, &mc, &err), 0);
		assert_string_equal(mc.address, rows[i][1]);
		metrics_config_clear(&mc);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_values),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_no_clash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
