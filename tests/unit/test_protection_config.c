/* SPDX-License-Identifier: ISC */
/*
 * test_protection_config.c - [protection] and [alerts]: defaults, every key
 * type (numbers, durations with units, 454/421, networks, logins, addresses,
 * COUNT/DURATION thresholds, a command), the errors with their file:line,
 * unknown and repeated keys, and the two lookups (allow_networks,
 * sender_allow_users).
 *
 * Sections are built here as config.c would keep them (struct
 * config_section), one key per row.
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
#include "auth/protection_config.h"

static struct config cfg;
static struct config_section secs[2];
static struct config_kv kvs[2][4];

/* A config whose [kind] holds key = value (line 7), and nothing else. */
static void
one_key(const char *kind, const char *key, const char *value)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(secs, 0, sizeof(secs));
	cfg.path = "/etc/authrelay.conf";
	cfg.hostname = "mx.example.test";
	kvs[0][0] = (struct config_kv){.key = (char *)key, .value = (char *)value, .line = 7};
	secs[0] = (struct config_section){(char *)kind, NULL, 6, kvs[0], 1};
	cfg.sections = secs;
	cfg.n_sections = 1;
}

static void
test_defaults(void **state)
{
	struct protection_config pc;
	char *err = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = "x.conf";
	cfg.hostname = "mx.example.test";
	assert_int_equal(protection_config_load(&cfg, &pc, &err), 0);
	assert_null(err);
	assert_int_equal(pc.cache_positive_ttl, 300);
	assert_int_equal(pc.cache_negative_ttl, 900);
	assert_int_equal(pc.cache_size, 10000);
	assert_int_equal(pc.cache_stale_ttl, 0);
	assert_int_equal(pc.throttle_window, 900);
	assert_int_equal(pc.lockout_client_login_failures, 5);
	assert_int_equal(pc.lockout_login_failures, 10);
	assert_int_equal(pc.lockout_client_failures, 20);
	assert_int_equal(pc.lockout_time, 900);
	assert_int_equal(pc.lockout_reply, 454);
	assert_int_equal(pc.messages_per_hour, 500);
	assert_int_equal(pc.recipients_per_hour, 2000);
	assert_int_equal(pc.alerts.n_to, 0);
	assert_string_equal(pc.alerts.from, "postmaster@mx.example.test");
	assert_int_equal(pc.alerts.login_failures_per_login.count, 10);
	assert_int_equal(pc.alerts.login_failures_per_login.window, 600);
	assert_int_equal(pc.alerts.cooldown, 1800);
	assert_int_equal(pc.alerts.unreachable_after, 60);
	assert_null(pc.alerts.hook);
	protection_config_clear(&pc);
}

#define U(f) offsetof(struct protection_config, f)

static void
test_values(void **state)
{
	static const struct {
		const char *kind, *key, *value;
		size_t offset; /* of an unsigned to check */
		unsigned want;
	} rows[] = {
	        {"protection", "cache_positive_ttl", "600", U(cache_positive_ttl), 600},
	        {"protection", "cache_positive_ttl", "10m", U(cache_positive_ttl), 600},
	        {"protection", "cache_negative_ttl", "30s", U(cache_negative_ttl), 30},
	        {"protection", "cache_stale_ttl", "4h", U(cache_stale_ttl), 14400},
	        {"protection", "cache_stale_ttl", "1d", U(cache_stale_ttl), 86400},
	        {"protection", "cache_size", "0", U(cache_size), 0},
	        {"protection", "throttle_window", "1", U(throttle_window), 1},
	        {"protection", "ipv6_prefix", "48", U(ipv6_prefix), 48},
	        {"protection", "delay_after", "0", U(delay_after), 0},
	        {"protection", "lockout_login_failures", "0", U(lockout_login_failures), 0},
	        {"protection", "lockout_time", "2", U(lockout_time), 2},
	        {"protection", "lockout_reply", "421", U(lockout_reply), 421},
	        {"protection", "messages_per_hour", "0", U(messages_per_hour), 0},
	        {"protection", "recipients_per_hour", "4294967295", U(recipients_per_hour),
	         4294967295u},
	        {"alerts", "cooldown", "0", U(alerts.cooldown), 0},
	        {"alerts", "multi_ip_threshold", "3", U(alerts.multi_ip_threshold), 3},
	        {"alerts", "multi_ip_window", "2m", U(alerts.multi_ip_window), 120},
	        {"alerts", "unreachable_after", "0", U(alerts.unreachable_after), 0},
	        {"alerts", "login_failures_global", "5/30s", U(alerts.login_failures_global.count),
	         5},
	        {"alerts", "login_failures_global", "5/30s", U(alerts.login_failures_global.window),
	         30},
	        {"alerts", "login_failures_per_login", "off",
	         U(alerts.login_failures_per_login.count), 0},
	        {"alerts", "login_failures_per_client", "0",
	         U(alerts.login_failures_per_client.count), 0},
	        {"alerts", "login_failures_per_client", "12/1h",
	         U(alerts.login_failures_per_client.window), 3600},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct protection_config pc;
		char *err = NULL;

		print_message("  %s = %s\n", rows[i].key, rows[i].value);
		one_key(rows[i].kind, rows[i].key, rows[i].value);
		assert_int_equal(protection_config_load(&cfg, &pc, &err), 0);
		assert_int_equal(*(unsigned *)(void *)((char *)&pc + rows[i].offset), rows[i].want);
		protection_config_clear(&pc);
	}
}

static void
test_lists(void **state)
{
	struct protection_config pc;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	char *err = NULL;

	memset(&cfg, 0, sizeof(cfg));
	memset(secs, 0, sizeof(secs));
	cfg.path = "x.conf";
	cfg.hostname = "mx.example.test";
	kvs[0][0] = (struct config_kv){
	        .key = "allow_networks", .value = "10.0.0.0/8, 2001:db8::/32 192.0.2.7", .line = 2};
	kvs[0][1] = (struct config_kv){
	        .key = "sender_allow_users", .value = "webmail,Relay@Example.org", .line = 3};
	kvs[1][0] = (struct config_kv){
	        .key = "to", .value = "admin@example.test, sec@example.test", .line = 5};
	kvs[1][1] = (struct config_kv){.key = "from", .value = "alerts@example.test", .line = 6};
	kvs[1][2] = (struct config_kv){
	        .key = "hook", .value = "/usr/local/bin/page-oncall --mail", .line = 7};
	secs[0] = (struct config_section){"protection", NULL, 1, kvs[0], 2};
	secs[1] = (struct config_section){"alerts", NULL, 4, kvs[1], 3};
	cfg.sections = secs;
	cfg.n_sections = 2;
	assert_int_equal(protection_config_load(&cfg, &pc, &err), 0);
	assert_int_equal(pc.n_allow_networks, 3);
	inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
	assert_true(protection_allowed(&pc, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.8", &sin.sin_addr);
	assert_false(protection_allowed(&pc, (struct sockaddr *)&sin));
	inet_pton(AF_INET6, "2001:db8:5::1", &sin6.sin6_addr);
	assert_true(protection_allowed(&pc, (struct sockaddr *)&sin6));
	/* Matching them is sender_policy.c's (test_sender_policy.c). */
	assert_int_equal(pc.n_sender_allow_users, 2);
	assert_string_equal(pc.sender_allow_users[0], "webmail");
	assert_string_equal(pc.sender_allow_users[1], "Relay@Example.org");
	assert_null(pc.sender_allow_users[2]);
	assert_int_equal(pc.alerts.n_to, 2);
	assert_string_equal(pc.alerts.to[0], "admin@example.test");
	assert_string_equal(pc.alerts.to[1], "sec@example.test");
	assert_null(pc.alerts.to[2]);
	assert_string_equal(pc.alerts.from, "alerts@example.test");
	assert_string_equal(pc.alerts.hook, "/usr/local/bin/page-oncall --mail");
	protection_config_clear(&pc);
}

static void
test_errors(void **state)
{
	static const struct {
		const char *kind, *key, *value, *error;
	} rows[] = {
	        {"protection", "cache_size", "-1", "cache_size = -1: not a whole number"},
	        {"protection", "cache_size", "0x10", "cache_size = 0x10: not a whole number"},
	        {"protection", "cache_size", "", "not a whole number"},
	        {"protection", "ipv6_prefix", "129", "ipv6_prefix = 129: must be at most 128"},
	        {"protection", "cache_positive_ttl", "5x", "not a duration"},
	        {"protection", "cache_positive_ttl", "m", "not a duration"},
	        {"protection", "cache_positive_ttl", "5mm", "not a duration"},
	        {"protection", "cache_positive_ttl", "8d", "must be at most 1w"},
	        {"protection", "throttle_window", "0", "must be at least 1s"},
	        {"protection", "lockout_time", "0", "must be at least 1s"},
	        {"protection", "lockout_reply", "550", "expected 454 or 421"},
	        {"protection", "allow_networks", "10.0.0.0/33",
	         "allow_networks = 10.0.0.0/33: the prefix length"},
	        {"protection", "allow_networks", "example.org",
	         "allow_networks = example.org: not a numeric"},
	        {"protection", "delay_max_ms", "10", "delay_max_ms (10) is below delay_ms (1000)"},
	        {"protection", "no_such_key", "1", "unknown key 'no_such_key' in [protection]"},
	        {"alerts", "to", "admin", "to = admin: not a mail address"},
	        {"alerts", "to", "a@b.test <x@y.test>", "to = <x@y.test>: not a mail address"},
	        {"alerts", "from", "not an address", "not a mail address"},
	        {"alerts", "login_failures_global", "10", "expected COUNT/DURATION"},
	        {"alerts", "login_failures_global", "10/", "expected COUNT/DURATION"},
	        {"alerts", "login_failures_global", "x/5m", "expected COUNT/DURATION"},
	        {"alerts", "login_failures_global", "10/0", "expected COUNT/DURATION"},
	        {"alerts", "multi_ip_threshold", "1001", "must be at most 1000"},
	        {"alerts", "cache_size", "1", "unknown key 'cache_size' in [alerts]"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct protection_config pc;
		char *err = NULL;

		print_message("  %s = %s\n", rows[i].key, rows[i].value);
		one_key(rows[i].kind, rows[i].key, rows[i].value);
		assert_int_equal(protection_config_load(&cfg, &pc, &err), -1);
		assert_non_null(err);
		print_message("    %s", err);
		assert_non_null(strstr(err, rows[i].error));
		/* file:line: first (delay_max_ms's own check names the section line). */
		assert_true(strncmp(err, "/etc/authrelay.conf:", 20) == 0);
		free(err);
	}
}

static void
test_duplicate(void **state)
{
	struct protection_config pc;
	char *err = NULL;

	one_key("protection", "cache_size", "5");
	kvs[0][1] = (struct config_kv){.key = "cache_size", .value = "6", .line = 9};
	secs[0].n_kv = 2;
	assert_int_equal(protection_config_load(&cfg, &pc, &err), -1);
	assert_non_null(strstr(err, "/etc/authrelay.conf:9: cache_size is already set at line 7"));
	free(err);
}

/* The one duration syntax (settings.h) on a key of at most 7 days. */
static void
test_duration(void **state)
{
	static const struct {
		const char *text;
		int ret;
		unsigned want;
	} rows[] = {
	        {"0", 0, 0},
	        {"59", 0, 59},
	        {"59s", 0, 59},
	        {"2m", 0, 120},
	        {"3h", 0, 10800},
	        {"1d", 0, 86400},
	        {"", -1, 0},
	        {"s", -1, 0},
	        {"1w", 0, 604800},
	        {"2w", -1, 0},
	        {"-1", -1, 0},
	        {"1 m", -1, 0},
	        {"99999999999", -1, 0},
	        {"off", 0, 0},
	        {"1M", -1, 0},
	        {"5ms", -1, 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct protection_config pc;
		char *err = NULL;

		print_message("  cache_positive_ttl = %s\n", rows[i].text);
		one_key("protection", "cache_positive_ttl", rows[i].text);
		assert_int_equal(protection_config_load(&cfg, &pc, &err), rows[i].ret);
		if (rows[i].ret == 0) {
			assert_int_equal(pc.cache_positive_ttl, rows[i].want);
			protection_config_clear(&pc);
		} else {
			assert_non_null(strstr(err, "cache_positive_ttl = "));
			free(err);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_values),
	        cmocka_unit_test(test_lists),     cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_duplicate), cmocka_unit_test(test_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
