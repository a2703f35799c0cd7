/* SPDX-License-Identifier: ISC */
/*
 * test_queue_config.c - [queue] and [route NAME]: defaults, every key, every
 * error with its line, durations, next hops, and the routing decision
 * (route.h) built on them: exact domain, ".suffix", smarthost, MX.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/config.h"
#include "queue/queue_config.h"
#include "queue/route.h"

#define BASE                                                                                       \
	"[relay]\nlocal_domains = example.test\nclient_networks = 10.0.0.0/8\n"                    \
	"[users-file]\npath = users\n[tls]\ncert_file = cert.pem\nkey_file = key.pem\n"            \
	"[listener mx]\naddress = 127.0.0.1:2525\nrole = inbound\n"
#define BASE_LINES 11

static struct config_module queue_sections_only;
static const struct config_module *const unchecked[] = {&queue_sections_only};

static struct config *
load(const char *text)
{
	char path[] = "/tmp/test_queue_config.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char *errors = NULL;
	struct config *cfg = config_load(path, &errors);
	unlink(path);
	if (cfg == NULL)
		fail_msg("config_load: %s", errors);
	return cfg;
}

static void
test_defaults(void **state)
{
	struct config *cfg = load(BASE);
	char *errors = NULL;
	struct queue_config *qc = queue_config_load(cfg, &errors);
	assert_non_null(qc);
	assert_int_equal(qc->max_connections, 100);
	assert_int_equal(qc->max_connections_per_destination, 50);
	assert_int_equal(qc->internal_max_connections, 100);
	assert_int_equal(qc->internal_max_connections_per_destination, 50);
	assert_int_equal(qc->max_recipients_per_transaction, 100);
	assert_int_equal(qc->max_queue_size, 150000);
	assert_int_equal(qc->retry_min, 300);
	assert_int_equal(qc->retry_max, 4000);
	assert_int_equal(qc->max_lifetime, 5 * 86400);
	assert_int_equal(qc->delay_warning, 0);
	assert_true(qc->group_commit);
	assert_null(qc->smarthost.host);
	assert_null(qc->resolver);
	assert_int_equal(qc->tls, ROUTE_TLS_OPPORTUNISTIC);
	queue_config_free(qc);
	config_free(cfg);
}

static void
test_every_key_and_routes(void **state)
{
	struct config *cfg = load(BASE "[queue]\nresolver = 127.0.0.1:5353\n"
	                               "smarthost = relay.example.net:587\nmax_connections = 7\n"
	                               "max_recipients_per_transaction = 3\nretry_min = 2m\n"
	                               "retry_max = 1h\nmax_lifetime = 2d\ndelay_warning = 4h\n"
	                               "helo_name = out.example.test\ngroup_commit = no\n"
	                               "[route local]\ndomains = example.test .sub.example.test\n"
	                               "nexthop = [10.0.0.5]:25\ninternal = yes\n"
	                               "[route box]\ndomains = box.test\ntype = maildir\n"
	                               "maildir = /var/mail/%d/%u\n"
	                               "[route partner]\ndomains = partner.test\ntls = required\n"
	                               "tls_ca_file = /etc/ca.pem\n");
	char *errors = NULL;
	struct queue_config *qc = queue_config_load(cfg, &errors);
	if (qc == NULL)
		fail_msg("%s", errors);
	assert_string_equal(qc->resolver, "127.0.0.1:5353");
	assert_string_equal(qc->smarthost.host, "relay.example.net");
	assert_int_equal(qc->smarthost.port, 587);
	assert_false(qc->smarthost.no_mx);
	assert_int_equal(qc->max_connections, 7);
	assert_int_equal(qc->max_recipients_per_transaction, 3);
	assert_int_equal(qc->retry_min, 120);
	assert_int_equal(qc->retry_max, 3600);
	assert_int_equal(qc->max_lifetime, 2 * 86400);
	assert_int_equal(qc->delay_warning, 4 * 3600);
	assert_string_equal(qc->helo_name, "out.example.test");
	assert_false(qc->group_commit);
	assert_int_equal(qc->n_routes, 3);
	assert_true(qc->routes[0].internal);
	assert_false(qc->routes[2].internal); /* not a local domain */

	static const struct {
		const char *domain;
		const char *key;
		const char *host;
		bool mx;
		unsigned port;
		enum route_type type;
		bool internal;
	} cases[] = {
	        {"example.test", "route:local", "10.0.0.5", false, 25, ROUTE_SMTP, true},
	        {"a.sub.example.test", "route:local", "10.0.0.5", false, 25, ROUTE_SMTP, true},
	        {"sub.example.test", "smarthost", "relay.example.net", true, 587, ROUTE_SMTP,
	         false},
	        {"box.test", "maildir:box", "", false, 0, ROUTE_MAILDIR, false},
	        {"partner.test", "route:partner:mx:partner.test", "partner.test", true, 25,
	         ROUTE_SMTP, false},
	        {"other.test", "smarthost", "relay.example.net", true, 587, ROUTE_SMTP, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct route_decision rd;
		route_decide(qc, cases[i].domain, &rd);
		assert_string_equal(rd.key, cases[i].key);
		assert_string_equal(rd.host, cases[i].host);
		assert_int_equal(rd.mx, cases[i].mx);
		assert_int_equal(rd.port, cases[i].port);
		assert_int_equal(rd.type, cases[i].type);
		assert_int_equal(rd.internal, cases[i].internal);
	}
	struct route_decision rd;
	route_decide(qc, "partner.test", &rd);
	assert_int_equal(rd.tls, ROUTE_TLS_REQUIRED);
	assert_string_equal(rd.tls_ca_file, "/etc/ca.pem");
	queue_config_free(qc);
	config_free(cfg);
}

static void
test_mx_without_smarthost(void **state)
{
	struct config *cfg =
	        load(BASE "[queue]\nsmtp_port = 2525\n"
	                  "[route own]\ndomains = example.test\nnexthop = [10.0.0.5]\n");
	char *errors = NULL;
	struct queue_config *qc = queue_config_load(cfg, &errors);
	assert_non_null(qc);
	struct route_decision rd;
	route_decide(qc, "example.org", &rd);
	assert_string_equal(rd.key, "mx:example.org");
	assert_string_equal(rd.host, "example.org");
	assert_true(rd.mx);
	assert_int_equal(rd.port, 2525);
	assert_false(rd.internal);
	/* A route whose domains are all local ones is internal by default. */
	route_decide(qc, "example.test", &rd);
	assert_true(rd.internal);
	queue_config_free(qc);
	config_free(cfg);
}

static const struct {
	const char *conf;
	int line;
	const char *text;
} error_cases[] = {
        {"[queue]\nretry_min = soon\n", 2, "retry_min = soon: not a duration"},
        {"[queue]\nmax_recipients_per_transaction = 2000\n", 2, "must be at most 1024"},
        {"[queue]\nmax_connections = 0\n", 2, "max_connections = 0: must be at least 1"},
        {"[queue]\nretry_min = 0\n", 2, "retry_min = 0: must be at least 1s"},
        {"[queue]\nsmarthost = [1.2.3.4\n", 2, "smarthost = [1.2.3.4: missing ']'"},
        {"[queue]\nsmarthost = host:99999\n", 2, "bad port"},
        {"[queue]\nresolver = dns.example\n", 2, "resolver = dns.example: expected IP"},
        {"[queue]\ntls = maybe\n", 2, "tls = maybe: expected opportunistic"},
        {"[queue]\ngroup_commit = perhaps\n", 2, "group_commit = perhaps: expected yes or no"},
        {"[queue]\nfoo = 1\n", 2, "unknown key 'foo' in [queue]"},
        {"[queue]\nretry_min = 10m\nretry_max = 1m\n", 1, "retry_max (60 s) is below retry_min"},
        {"[route r]\ntype = smtp\n", 1, "[route r] needs domains"},
        {"[route r]\ndomains = x.test\ntype = maildir\n", 1, "needs maildir = PATH"},
        {"[route r]\ndomains = x.test\ntype = maildir\nmaildir = rel/path\n", 4,
         "expected an absolute path"},
        {"[route r]\ndomains = x.test\ntype = carrier\n", 3, "type = carrier: expected smtp"},
        {"[route r]\ndomains = bad..test\n", 2, "domains = bad..test: not a domain name"},
        {"[route a]\ndomains = x.test\n[route b]\ndomains = x.test\n", 3,
         "domain x.test is already routed by [route a]"},
        {"[route r]\ndomains = x.test\ninternal = sometimes\n", 3, "internal = sometimes"},
};

static void
test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		char text[2048], want[64];
		snprintf(text, sizeof(text), BASE "%s", error_cases[i].conf);
		struct config *cfg = load(text);
		char *errors = NULL;
		struct queue_config *qc = queue_config_load(cfg, &errors);
		if (qc != NULL)
			fail_msg("case %zu accepted: %s", i, error_cases[i].conf);
		snprintf(want, sizeof(want), ":%d: ", BASE_LINES + error_cases[i].line);
		if (strstr(errors, want) == NULL || strstr(errors, error_cases[i].text) == NULL)
			fail_msg("case %zu: want line %s and '%s', got: %s", i, want,
			         error_cases[i].text, errors);
		free(errors);
		config_free(cfg);
	}
}

/* The one duration syntax (settings.h): "off" only where the key takes it
 * (delay_warning does, retry_max does not). */
static void
test_durations_and_nexthops(void **state)
{
	static const struct {
		const char *text;
		bool off;
		int ok;
		unsigned v;
	} d[] = {
	        {"300", false, 0, 300},        {"300s", false, 0, 300},  {"5m", false, 0, 300},
	        {"2h", false, 0, 7200},        {"5d", false, 0, 432000}, {"1w", false, 0, 604800},
	        {"off", true, 0, 0},           {"off", false, -1, 0},    {"5x", false, -1, 0},
	        {"-1", false, -1, 0},          {"", false, -1, 0},       {"5mm", false, -1, 0},
	        {"99999999999", false, -1, 0},
	};
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		char text[512];
		const char *key = d[i].off ? "delay_warning" : "retry_max";
		snprintf(text, sizeof(text), BASE "[queue]\nretry_min = 1\n%s = %s\n", key,
		         d[i].text);
		struct config *cfg = load(text);
		char *errors = NULL;
		struct queue_config *qc = queue_config_load(cfg, &errors);
		if ((qc != NULL) != (d[i].ok == 0))
			fail_msg("%s = %s: %s", key, d[i].text, errors ? errors : "accepted");
		if (qc != NULL)
			assert_int_equal(d[i].off ? qc->delay_warning : qc->retry_max, d[i].v);
		queue_config_free(qc);
		free(errors);
		config_free(cfg);
	}
	static const struct {
		const char *text;
		int ok;
		const char *host;
		unsigned port;
		bool no_mx;
	} n[] = {
	        {"[10.0.0.5]:25", 0, "10.0.0.5", 25, true},
	        {"10.0.0.5", 0, "10.0.0.5", 25, true},
	        {"Mail.Example.NET:587", 0, "mail.example.net", 587, false},
	        {"[mail.example.net]", 0, "mail.example.net", 25, true},
	        {"[2001:db8::1]:2525", 0, "2001:db8::1", 2525, true},
	        {"2001:db8::1", -1, NULL, 0, false},
	        {"host:0", -1, NULL, 0, false},
	        {"ho st:25", -1, NULL, 0, false},
	        {"[x]y", -1, NULL, 0, false},
	        {"", -1, NULL, 0, false},
	        {":25", -1, NULL, 0, false},
	};
	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		struct nexthop nh;
		const char *err = NULL;
		int r = queue_config_parse_nexthop(n[i].text, 25, &nh, &err);
		if (r != n[i].ok)
			fail_msg("%s: %d", n[i].text, r);
		if (r == 0) {
			assert_string_equal(nh.host, n[i].host);
			assert_int_equal(nh.port, n[i].port);
			assert_int_equal(nh.no_mx, n[i].no_mx);
			free(nh.host);
		} else {
			assert_non_null(err);
		}
	}
}

/* With the module's check registered, config_load() itself reports the
 * queue's errors, sorted with the rest of the file's. */
static void
test_checked_by_config_load(void **state)
{
	static const struct config_module *const checked[] = {&queue_config_module};
	char path[] = "/tmp/test_queue_config.XXXXXX";
	static const char text[] = BASE "[queue]\nretry_min = soon\n[route r]\ntype = smtp\n"
	                                "[server]\nworkers = x\n";
	int fd = mkstemp(path);
	char *errors = NULL;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	config_set_modules(checked, 1);
	assert_null(config_load(path, &errors));
	config_set_modules(unchecked, 1);
	unlink(path);
	assert_non_null(errors);
	const char *a = strstr(errors, ":13: retry_min = soon: not a duration");
	const char *b = strstr(errors, ":14: [route r] needs domains");
	const char *c = strstr(errors, ":17: workers = x: not a whole number");
	if (a == NULL || b == NULL || c == NULL || !(a < b && b < c))
		fail_msg("not every error, in line order: %s", errors);
	free(errors);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_every_key_and_routes),
	        cmocka_unit_test(test_mx_without_smarthost),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_durations_and_nexthops),
	        cmocka_unit_test(test_checked_by_config_load),
	};

	/* [queue] and [route] known to config_load(), but checked only by
	 * queue_config_load(): its own error path is what this file tests. */
	queue_sections_only = (struct config_module){
	        .sections = queue_config_module.sections,
	        .n_sections = queue_config_module.n_sections,
	};
	config_set_modules(unchecked, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
