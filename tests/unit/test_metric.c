/* SPDX-License-Identifier: ISC */
/*
 * test_metric.c - the gateway's table of metric families (metric.h): names
 * that Prometheus and OpenMetrics take, units in the names, HELP texts both
 * formats print alike, every label value a lookup can give, and the whole
 * table rendered in both formats.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "auth/auth_throttle.h"
#include "authwire/auth_proto.h"
#include "authwire/auth_reason.h"
#include "lib/common.h"
#include "metrics/metric.h"

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void
test_names(void **state)
{
	const struct metrics_family *f = metric_families();

	for (size_t i = 0; i < M_COUNT; i++) {
		const char *n = f[i].name;
		assert_non_null(n);
		assert_true(strncmp(n, "authrelay_", 10) == 0);
		for (const char *p = n; *p != '\0'; p++)
			assert_true(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
			            *p == '_');
		/* The exposition adds these suffixes itself. */
		assert_false(ends_with(n, "_total"));
		assert_false(ends_with(n, "_info"));
		if (f[i].type == METRICS_HISTOGRAM)
			assert_true(ends_with(n, "_seconds"));
		/* HELP: a sentence, and nothing either format escapes. */
		assert_true(strlen(f[i].help) > 5);
		assert_true(ends_with(f[i].help, "."));
		assert_null(strpbrk(f[i].help, "\"\\\n"));
		for (unsigned d = 0; d < f[i].n_dims; d++) {
			const struct metrics_dim *dim = f[i].dims[d];
			assert_non_null(dim);
			if (dim->value != NULL)
				for (unsigned v = 0; v < dim->size; v++)
					assert_string_not_equal(dim->value(v), "unknown");
		}
		/* No two families share a name. */
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(f[j].name, n);
	}
}

static void
test_lookups(void **state)
{
	assert_int_equal(metric_mech("PLAIN"), 0);
	assert_int_equal(metric_mech("login"), 1);
	assert_int_equal(metric_mech("cram-md5"), 2);
	assert_int_equal(metric_mech("XOAUTH2"), 3);
	assert_int_equal(metric_mech(NULL), 3);
	assert_int_equal(metric_source("file"), 0);
	assert_int_equal(metric_source("ldap"), 1);
	assert_int_equal(metric_source("forward"), 2);
	assert_int_equal(metric_source("none"), 3);
	assert_int_equal(metric_source("other"), 3);
	assert_int_equal(metric_tls_version("TLSv1.2"), 2);
	assert_int_equal(metric_tls_version("TLSv1.3"), 3);
	assert_int_equal(metric_tls_version("SSLv3"), 4);
	assert_int_equal(metric_reject("messages_per_hour"), MJ_MESSAGES_PER_HOUR);
	assert_int_equal(metric_reject("recipients_per_hour"), MJ_RECIPIENTS_PER_HOUR);
	assert_int_equal(metric_reject("what"), MJ_OTHER);
	assert_int_equal(metric_scope(auth_throttle_scope_name(THROTTLE_CLIENT)), 0);
	assert_int_equal(metric_scope(auth_throttle_scope_name(THROTTLE_CLIENT_LOGIN)), 1);
	assert_int_equal(metric_scope(auth_throttle_scope_name(THROTTLE_LOGIN)), 2);
	assert_int_equal(metric_delivery_status("sent"), 0);
	assert_int_equal(metric_delivery_status("bounced"), 2);
	assert_int_equal(metric_delivery_status("expired"), 3);
	/* Not attached: interned names are all 0, and nothing breaks. */
	assert_int_equal(metric_listener("sub"), 0);
}

/* Every family with something in it, in both formats: each has its HELP
 * and TYPE, and the labels come out in the log's words. */
static void
test_render_all(void **state)
{
	struct metrics *m = metrics_new(metric_families(), M_COUNT, 4);
	struct evbuffer *b = evbuffer_new();

	metrics_inc(M_CONNECTIONS_ACCEPTED, metric_listener("sub"));
	metrics_inc(M_AUTH_ATTEMPTS, metric_mech("PLAIN"), metric_source("ldap"), AUTH_FAIL,
	            AUTH_REASON_BAD_PASSWORD);
	metrics_observe(M_AUTH_DURATION, 1500, metric_source("ldap"));
	metrics_set(M_LDAP_UP, 0, metric_directory("corp"));
	metrics_set(M_FORWARD_UP, metrics_now_ms() + 60000, metric_upstream("mx.example:587"));
	metrics_inc(M_SESSIONS, metric_listener("sub"), MO_QUIT);
	for (int fmt = 0; fmt < 2; fmt++) {
		metrics_render(m, (enum metrics_format)fmt, b);
		size_t n = evbuffer_get_length(b);
		char *t = xmalloc(n + 1);
		evbuffer_remove(b, t, n);
		t[n] = '\0';
		for (size_t i = 0; i < M_COUNT; i++) {
			char want[200];
			snprintf(want, sizeof(want), "# HELP %s", metric_families()[i].name);
			assert_non_null(strstr(t, want));
		}
		assert_non_null(
		        strstr(t, "authrelay_auth_attempts_total{mech=\"PLAIN\","
		                  "source=\"ldap\",result=\"fail\",reason=\"bad_password\"} 1"));
		assert_non_null(strstr(t, "authrelay_auth_duration_seconds_sum{source=\"ldap\"} "
		                          "0.0015\n"));
		assert_non_null(strstr(t, "authrelay_ldap_directory_up{directory=\"corp\"} 1\n"));
		assert_non_null(strstr(
		        t, "authrelay_forward_upstream_up{upstream=\"mx.example:587\"} 0\n"));
		assert_non_null(strstr(
		        t, "authrelay_sessions_total{listener=\"sub\",outcome=\"quit\"} 1\n"));
		assert_non_null(
		        strstr(t, "authrelay_build_info{version=\"" AUTHRELAY_VERSION "\"} 1"));
		assert_true((strstr(t, "# EOF\n") != NULL) == (fmt == METRICS_OPENMETRICS));
		free(t);
	}
	evbuffer_free(b);
	metrics_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_lookups),
	        cmocka_unit_test(test_render_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
