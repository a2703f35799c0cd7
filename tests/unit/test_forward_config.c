/* SPDX-License-Identifier: ISC */
/*
 * test_forward_config.c - the [smtp-forward] table (src/auth/forward_config.c):
 * defaults, every key, every error with its file:line as config_load()
 * reports it (the whole file at once), the warning for tls = none, the
 * section once, show-config's view of it; then the second step, resolving:
 * addresses and default ports, tls_name, and an upstream that is one of our
 * own listeners. (test_auth_forward.c runs the source on top of it.)
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

#include "auth/forward_config.h"
#include "lib/config.h"
#include "master/settings_registry.h"
#include "support/ut_conf.h"

#define BASE                                                                                       \
	"[server]\nhostname = mx.test.example\n"                                                   \
	"[relay]\nlocal_domains = example.test\n"                                                  \
	"[listener mx]\naddress = 127.0.0.1:2525\nrole = inbound\ntls = none\n"
#define BASE_LINES 8

static char dir[] = "/tmp/test_forward_config.XXXXXX";
static char path[64];

static int
setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/authrelay.conf", dir);
	return 0;
}

static int
teardown(void **state)
{
	unlink(path);
	return rmdir(dir);
}

/* config_load() of BASE and section, which must load. */
static struct config *
load(const char *section)
{
	char text[2048];

	snprintf(text, sizeof(text), "%s%s", BASE, section);
	return ut_conf_load(path, text);
}

static void
test_defaults(void **state)
{
	struct config *cfg = load("[smtp-forward]\nupstreams = 127.0.0.1:1\n");
	struct fwd_settings set;
	char *errors = NULL;

	assert_true(forward_config_present(cfg));
	assert_int_equal(forward_config_load(cfg, &set, &errors), 0);
	assert_int_equal(set.n_upstreams, 1);
	assert_string_equal(set.upstreams[0], "127.0.0.1:1");
	assert_int_equal(set.tls, FWD_TLS_STARTTLS);
	assert_true(set.tls_verify);
	assert_null(set.ca_file);
	assert_null(set.tls_name);
	assert_int_equal(set.n_mechs, 2);
	assert_int_equal(set.mechs[0], FWD_MECH_PLAIN);
	assert_int_equal(set.mechs[1], FWD_MECH_LOGIN);
	assert_string_equal(set.helo_name, "mx.test.example"); /* [server] hostname */
	assert_int_equal(set.connect_timeout, 10);
	assert_int_equal(set.timeout, 15);
	assert_int_equal(set.max_sessions, 32);
	assert_int_equal(set.queue_size, 512);
	assert_int_equal(set.failure_memory, 30);
	assert_int_equal(set.preconnect, 0);
	assert_int_equal(set.request_timeout, 30); /* [auth] request_timeout's default */
	assert_int_equal(set.n_up, 0);             /* nothing resolved yet */
	assert_null(cfg->warnings);
	forward_config_free(&set);
	config_free(cfg);

	cfg = load("[auth]\nrequest_timeout = 1m\n");
	assert_false(forward_config_present(cfg));
	config_free(cfg);
}

static void
test_every_key(void **state)
{
	struct config *cfg = load("[auth]\nrequest_timeout = 45\n"
	                          "[smtp-forward]\n"
	                          "upstreams = 127.0.0.1:1, [::1]:2\n"
	                          "    localhost\n" /* a list continues on indented lines */
	                          "tls = IMPLICIT\n"
	                          "ca_file = ca.pem\n"
	                          "tls_verify = off\n"
	                          "tls_name = mail.example.test\n"
	                          "mechanisms = login, Plain, LOGIN\n"
	                          "helo_name = relay.example.test\n"
	                          "connect_timeout = 1m\n"
	                          "timeout = 20s\n"
	                          "max_sessions = 10\n"
	                          "queue_size = 0\n"
	                          "failure_memory = off\n"
	                          "preconnect = 10\n");
	struct fwd_settings set;
	char *errors = NULL, want[128];

	assert_int_equal(forward_config_load(cfg, &set, &errors), 0);
	assert_int_equal(set.n_upstreams, 3);
	assert_string_equal(set.upstreams[1], "[::1]:2");
	assert_string_equal(set.upstreams[2], "localhost");
	assert_int_equal(set.tls, FWD_TLS_IMPLICIT);
	/* A relative path is taken from the config file's directory. */
	snprintf(want, sizeof(want), "%s/ca.pem", dir);
	assert_string_equal(set.ca_file, want);
	assert_false(set.tls_verify);
	assert_string_equal(set.tls_name, "mail.example.test");
	assert_int_equal(set.n_mechs, 2);
	assert_int_equal(set.mechs[0], FWD_MECH_LOGIN);
	assert_int_equal(set.mechs[1], FWD_MECH_PLAIN);
	assert_string_equal(set.helo_name, "relay.example.test");
	assert_int_equal(set.connect_timeout, 60);
	assert_int_equal(set.timeout, 20);
	assert_int_equal(set.max_sessions, 10);
	assert_int_equal(set.queue_size, 0);
	assert_int_equal(set.failure_memory, 0);
	assert_int_equal(set.preconnect, 10);
	assert_int_equal(set.request_timeout, 45);
	forward_config_free(&set);
	config_free(cfg);
}

struct bad_case {
	const char *section; /* after BASE; its lines count from BASE_LINES + 1 */
	int line;            /* of the message, counted in section */
	const char *text;
};

static const struct bad_case bad_cases[] = {
        {"[smtp-forward]\ntls = maybe\nupstreams = 127.0.0.1:1\n", 2,
         "tls = maybe: expected starttls, implicit or none"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nmechanisms = CRAM-MD5\n", 3,
         "mechanisms = CRAM-MD5: \"CRAM-MD5\" is not PLAIN or LOGIN"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nmechanisms = ,\n", 3,
         "mechanisms = ,: name PLAIN, LOGIN or both"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nmax_sessions = 0\n", 3,
         "max_sessions = 0: must be at least 1"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nmax_sessions = 10001\n", 3,
         "max_sessions = 10001: must be at most 10000"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ntimeout = soon\n", 3,
         "timeout = soon: not a duration"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nconnect_timeout = 2h\n", 3,
         "connect_timeout = 2h: must be at most 1h"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ntimeout = off\n", 3,
         "timeout = off: not a duration"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nfailure_memory = 2d\n", 3,
         "failure_memory = 2d: must be at most 1d"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ncolour = blue\n", 3,
         "unknown key 'colour' in [smtp-forward]"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:x\n", 2,
         "upstreams = 127.0.0.1:x: not host:port (IPv6 as [addr]:port)"},
        {"[smtp-forward]\nupstreams = ::1:25\n", 2, "upstreams = ::1:25: not host:port"},
        {"[smtp-forward]\nupstreams = h:70000\n", 2, "upstreams = h:70000: not host:port"},
        {"[smtp-forward]\nupstreams = [::1\n", 2, "upstreams = [::1: not host:port"},
        {"[smtp-forward]\nupstreams = a:1\n  b:x\n", 3, "upstreams = b:x: not host:port"},
        {"[smtp-forward]\ntls = none\n", 1,
         "[smtp-forward] needs upstreams = HOST:PORT, ... (at least one)"},
        {"[smtp-forward]\nupstreams =\n", 2, "[smtp-forward] needs upstreams"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nmax_sessions = 2\npreconnect = 3\n", 4,
         "[smtp-forward] preconnect (3) is more than max_sessions (2)"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ntls_verify = maybe\n", 3,
         "tls_verify = maybe: expected yes or no"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ntls_name = a b\n", 3,
         "tls_name = a b: expected one host name or address"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nhelo_name =\n", 3,
         "helo_name = : must not be empty"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\nhelo_name = a\n  b\n", 4,
         "indented line continues 'helo_name'"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\ntimeout = 5\ntimeout = 6\n", 4,
         "timeout is already set at line"},
        {"[smtp-forward]\nupstreams = 127.0.0.1:1\n[smtp-forward]\n", 3,
         "duplicate section [smtp-forward] (first at line"},
        {"[smtp-forward x]\nupstreams = 127.0.0.1:1\n", 1, "section [smtp-forward] takes no name"},
};

static void
test_errors(void **state)
{
	for (size_t i = 0; i < AR_NELEM(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		char text[2048];

		snprintf(text, sizeof(text), "%s%s", BASE, c->section);
		ut_conf_refused(path, text, BASE_LINES + c->line, c->text);
	}
}

static void
test_tls_none_warns(void **state)
{
	struct config *cfg = load("[smtp-forward]\nupstreams = 127.0.0.1:1\ntls = none\n");
	char want[256];

	snprintf(want, sizeof(want),
	         "%s:%d: warning: tls = none: passwords go to the upstreams in cleartext\n", path,
	         BASE_LINES + 3);
	assert_non_null(cfg->warnings);
	assert_string_equal(cfg->warnings, want);
	config_free(cfg);
}

/* show-config: every key, and -n only what differs from the default. */
static void
test_show(void **state)
{
	FILE *f = fopen(path, "w");
	char *errors = NULL, *out = NULL;
	size_t len = 0;
	struct settings_set *set;

	fprintf(f, BASE "[smtp-forward]\nupstreams = a.test:25 b.test\ntimeout = 60\n"
	                "mechanisms = LOGIN\n");
	fclose(f);
	set = settings_registry_load(path, &errors);
	if (set == NULL)
		fail_msg("%s", errors);
	f = open_memstream(&out, &len);
	settings_registry_show(f, set, true);
	fclose(f);
	assert_non_null(strstr(out, "\n[smtp-forward]\nupstreams = a.test:25, b.test\n"
	                            "mechanisms = LOGIN\ntimeout = 1m\n\n"));
	free(out);
	f = open_memstream(&out, &len);
	settings_registry_show(f, set, false);
	fclose(f);
	assert_non_null(strstr(out, "\n[smtp-forward]\nupstreams = a.test:25, b.test\n"
	                            "tls = starttls\n# ca_file = (not set)\ntls_verify = yes\n"
	                            "# tls_name = (not set)\nmechanisms = LOGIN\n"
	                            "helo_name = mx.test.example\nconnect_timeout = 10s\n"
	                            "timeout = 1m\nmax_sessions = 32\nqueue_size = 512\n"
	                            "failure_memory = 30s\npreconnect = 0\n\n"));
	free(out);
	settings_registry_free(set);
}

/* ---- resolving ---- */

static void
test_resolve(void **state)
{
	struct config *cfg = load("[smtp-forward]\nupstreams = 127.0.0.1:1, [::1]:2 127.0.0.1\n"
	                          "    127.0.0.1:1\n" /* the same address again: once */
	                          "tls = implicit\n");
	struct fwd_settings set;
	char *errors = NULL;

	assert_int_equal(forward_config_load(cfg, &set, &errors), 0);
	assert_int_equal(forward_config_resolve(cfg, &set, &errors), 0);
	assert_int_equal(set.n_up, 3);
	assert_string_equal(set.up[0].name, "127.0.0.1:1");
	assert_string_equal(set.up[0].addr_text, "127.0.0.1:1");
	assert_string_equal(set.up[0].tls_name, "127.0.0.1");
	assert_string_equal(set.up[1].addr_text, "[::1]:2");
	assert_string_equal(set.up[1].tls_name, "::1");
	/* Without a port: 465 with tls = implicit. */
	assert_string_equal(set.up[2].addr_text, "127.0.0.1:465");
	forward_config_free(&set);
	config_free(cfg);

	cfg = load("[smtp-forward]\nupstreams = 127.0.0.1 [::1]\ntls_name = mail.example.test\n");
	assert_int_equal(forward_config_load(cfg, &set, &errors), 0);
	assert_int_equal(forward_config_resolve(cfg, &set, &errors), 0);
	assert_int_equal(set.n_up, 2);
	assert_string_equal(set.up[0].addr_text, "127.0.0.1:587");
	assert_string_equal(set.up[0].tls_name, "mail.example.test");
	assert_string_equal(set.up[1].tls_name, "mail.example.test");
	forward_config_free(&set);
	config_free(cfg);
}

static void
test_resolve_refuses_own_listener(void **state)
{
	struct config *cfg = load("[smtp-forward]\nupstreams = 127.0.0.2:9\n  127.0.0.1:2525\n");
	struct fwd_settings set;
	char *errors = NULL, want[256];

	assert_int_equal(forward_config_load(cfg, &set, &errors), 0);
	assert_int_equal(forward_config_resolve(cfg, &set, &errors), -1);
	snprintf(want, sizeof(want),
	         "%s:%d: [smtp-forward] upstreams: 127.0.0.1:2525 (127.0.0.1:2525) is our own "
	         "listener \"mx\" (127.0.0.1:2525, line 5): logins would loop\n",
	         path, BASE_LINES + 2);
	assert_string_equal(errors, want);
	assert_int_equal(set.n_up, 0);
	free(errors);
	forward_config_free(&set);
	config_free(cfg);
}

static void
test_key_error(void **state)
{
	struct config *cfg = load("[smtp-forward]\nupstreams = 127.0.0.1:1\nca_file = /x.pem\n");
	char *text = forward_config_key_error(cfg, "ca_file", "/x.pem", "cannot load it");
	char want[256];

	snprintf(want, sizeof(want), "%s:%d: ca_file = /x.pem: cannot load it\n", path,
	         BASE_LINES + 3);
	assert_string_equal(text, want);
	free(text);
	/* A key not written: the section's line. */
	text = forward_config_key_error(cfg, "tls_name", "(not set)", "x");
	snprintf(want, sizeof(want), "%s:%d: tls_name = (not set): x\n", path, BASE_LINES + 1);
	assert_string_equal(text, want);
	free(text);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_every_key),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_tls_none_warns),
	        cmocka_unit_test(test_show),
	        cmocka_unit_test(test_resolve),
	        cmocka_unit_test(test_resolve_refuses_own_listener),
	        cmocka_unit_test(test_key_error),
	};

	settings_registry_install(); /* every section kind for config_load() */
	return cmocka_run_group_tests(tests, setup, teardown);
}
