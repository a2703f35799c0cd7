/* SPDX-License-Identifier: ISC */
/*
 * test_config.c - config.h: every error path of config_load() with its
 * file:line, the defaults, [limits] inheritance and per-listener overrides,
 * path resolution, list syntax and the lookup helpers.
 *
 * Each test writes a config into a fresh temporary directory as
 * "authrelay.conf" and loads it from there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/log.h"
#include "master/settings_registry.h"

static char tmpdir[PATH_MAX];
static char conf_path[PATH_MAX + 32];

static int
setup_dir(void **state)
{
	char template_end[7] = "";

	/* mkdtemp() wants the name to end in six 'X' */
	memset(template_end, 'X', 6);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.%s", template_end);
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	/* realpath: /tmp may be a symlink, and the loader stores real paths */
	char *real = realpath(tmpdir, NULL);
	if (real == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", real);
	free(real);
	snprintf(conf_path, sizeof(conf_path), "%s/authrelay.conf", tmpdir);
	return 0;
}

static int
teardown_dir(void **state)
{
	unlink(conf_path);
	return rmdir(tmpdir);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* Load text; fail the test with the errors if it does not load. */
static struct config *
load_ok(const char *text)
{
	char *errors = NULL;
	struct config *cfg;

	write_file(conf_path, text);
	cfg = config_load(conf_path, &errors);
	if (cfg == NULL)
		fail_msg("config refused:\n%s", errors);
	assert_null(errors);
	return cfg;
}

/* Load text that must be refused; returns the malloc'd error text. */
static char *
load_fail(const char *text)
{
	char *errors = NULL;
	struct config *cfg;

	write_file(conf_path, text);
	cfg = config_load(conf_path, &errors);
	if (cfg != NULL) {
		config_free(cfg);
		fail_msg("config accepted:\n%s", text);
	}
	assert_non_null(errors);
	return errors;
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* True if errors holds a line "…/authrelay.conf:LINE: …needle…". */
static bool
has_error(const char *errors, int line, const char *needle)
{
	char prefix[PATH_MAX + 64];
	const char *p = errors;

	snprintf(prefix, sizeof(prefix), "%s:%d: ", conf_path, line);
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		char *one = strndup(p, len);
		bool hit = strncmp(one, prefix, strlen(prefix)) == 0 &&
		           strstr(one + strlen(prefix), needle) != NULL;
		free(one);
		if (hit)
			return true;
		p += len + (eol != NULL);
	}
	return false;
}

/* Lines 1-11 of most cases: a valid inbound-only gateway with TLS and an
 * auth source, so each case adds only what it tests (from line 12 on). */
#define BASE                                                                                       \
	"[relay]\n"                                                                                \
	"local_domains = example.test\n"                                                           \
	"client_networks = 10.0.0.0/8\n"                                                           \
	"[users-file]\n"                                                                           \
	"path = users\n"                                                                           \
	"[tls]\n"                                                                                  \
	"cert_file = cert.pem\n"                                                                   \
	"key_file = key.pem\n"                                                                     \
	"[listener mx]\n"                                                                          \
	"address = 127.0.0.1:2525\n"                                                               \
	"role = inbound\n"

/* ---- every error path, with its line ---- */

struct expected_error {
	int line;
	const char *text;
};

struct error_case {
	const char *name;
	const char *conf;
	struct expected_error errors[4]; /* all of them: no other may appear */
};

static const struct error_case error_cases[] = {
        /* syntax and sections */
        {"key before any section", "x = 1\n" BASE, {{1, "'x' comes before any [section]"}}},
        {"unknown section (its keys are not reported again)",
         BASE "[bogus]\nx = 1\n",
         {{12, "unknown section [bogus] (known: server, tls, limits, listener NAME, relay, "
               "auth, users-file, ldap NAME, smtp-forward, protection, alerts, queue, route "
               "NAME, metrics, shared)"}}},
        {"section that takes no name",
         BASE "[server main]\nworkers = 1\n",
         {{12, "section [server] takes no name"}}},
        {"section without ]",
         BASE "[server\nworkers = 1\n",
         {{12, "section header without a closing ']'"}}},
        {"text after a section header",
         BASE "[server] x\n",
         {{12, "text after the section header: x"}}},
        {"empty section name", BASE "[]\n", {{12, "empty section name"}}},
        {"line without =",
         BASE "[server]\nworkers\n",
         {{13, "expected 'key = value', '[section]' or a comment"}}},
        {"missing key name", BASE "[server]\n= 4\n", {{13, "missing key name before '='"}}},
        {"unknown key", BASE "[server]\nfoo = 1\n", {{13, "unknown key 'foo' in [server]"}}},
        {"key in the wrong section",
         BASE "[server]\nmax_recipients = 200\n",
         {{13, "unknown key 'max_recipients' in [server] (it belongs in [limits])"}}},
        {"unknown key in a listener",
         BASE "[listener sub]\nhostname = x\n",
         {{13, "unknown key 'hostname' in [listener sub] (it belongs in [server])"},
          {12, "listener 'sub' has no address"},
          {12, "listener 'sub' has no role"}}},
        {"duplicate key",
         BASE "[server]\nworkers = 1\nworkers = 2\n",
         {{14, "workers is already set at line 13"}}},
        {"duplicate key across two sections of one kind",
         BASE "[limits]\nmax_errors = 5\n[limits]\nmax_errors = 6\n",
         {{15, "max_errors is already set at line 13"}}},
        {"duplicate key in a listener",
         BASE "[listener mx2]\nrole = inbound\nrole = outbound\n"
              "address = 127.0.0.2:25\n",
         {{14, "role is already set at line 13"}}},
        {"indented line after a single-value key",
         BASE "[server]\nuser = a\n  workers = 2\n",
         {{14, "indented line continues 'user', which takes one value"}}},
        {"duration with a bad unit",
         BASE "[limits]\ncommand_timeout = 5 minutes\n",
         {{13, "command_timeout = 5 minutes: not a duration (seconds, or a number with s, m, "
               "h, d or w)"}}},
        {"duration over the maximum",
         BASE "[limits]\ndata_timeout = 2d\n",
         {{13, "data_timeout = 2d: must be at most 1d"}}},
        {"duration that cannot be off",
         BASE "[auth]\nrequest_timeout = off\n",
         {{13, "request_timeout = off: not a duration"}}},
        {"unknown key in a module's section, with where it belongs",
         BASE "[queue]\nmax_recipients = 200\n",
         {{13, "unknown key 'max_recipients' in [queue] (it belongs in [limits])"}}},
        {"key of several sections",
         BASE "[server]\ntls = none\n",
         {{13, "unknown key 'tls' in [server] (it belongs in [listener NAME], [smtp-forward], "
               "[queue], [route NAME], [shared])"}}},
        {"duplicate raw section",
         BASE "[smtp-forward]\nupstreams = a:25\n[smtp-forward]\n",
         {{14, "duplicate section [smtp-forward] (first at line 12)"}}},
        {"control character in a value",
         BASE "[server]\nuser = a\tb\n",
         {{13, "user: control character in the value"}}},

        /* listener names */
        {"listener without a name",
         BASE "[listener]\naddress = 127.0.0.2:25\n",
         {{12, "write [listener NAME]"}}},
        {"listener with two names", BASE "[listener a b]\n", {{12, "write [listener NAME]"}}},
        {"listener name with a slash", BASE "[listener a/b]\n", {{12, "write [listener NAME]"}}},
        {"PROXY protocol without trusted networks",
         BASE "proxy_protocol = yes\n",
         {{12, "listener 'mx': proxy_protocol = yes needs proxy_trusted_networks"}}},
        {"shared redis that is not an address",
         BASE "[shared]\nredis = redis.example:6379\n",
         {{13, "redis = redis.example:6379: expected address:port"}}},
        {"duplicate listener name (its keys are skipped)",
         BASE "[listener MX]\naddress = 127.0.0.1:2525\nrole = submission\n",
         {{12, "duplicate section [listener MX] (first at line 9)"}}},

        /* numbers, booleans, enumerations */
        {"not a number",
         BASE "[server]\nworkers = 4x\n",
         {{13, "workers = 4x: not a whole number"}}},
        {"negative number",
         BASE "[limits]\nmax_errors = -1\n",
         {{13, "max_errors = -1: not a whole number"}}},
        {"hex number", BASE "[limits]\nmax_errors = 0x10\n", {{13, "not a whole number"}}},
        {"empty number", BASE "[limits]\nmax_errors =\n", {{13, "not a whole number"}}},
        {"number too large for unsigned",
         BASE "[limits]\nmax_errors = 4294967296\n",
         {{13, "max_errors = 4294967296: must be at most 4294967295"}}},
        {"number too large for 64 bits",
         BASE "[limits]\nmax_errors = 99999999999999999999\n",
         {{13, "not a whole number"}}},
        {"workers above the maximum",
         BASE "[server]\nworkers = 1025\n",
         {{13, "must be at most 1024"}}},
        {"ipv6_prefix above 128",
         BASE "[limits]\nipv6_prefix = 129\n",
         {{13, "ipv6_prefix = 129: must be at most 128"}}},
        {"max_recipients below RFC 5321's 100",
         BASE "[limits]\nmax_recipients = 99\n",
         {{13, "max_recipients = 99: must be at least 100 (RFC 5321 4.5.3.1.8"}}},
        {"max_recipients below 100 on a listener",
         BASE "max_recipients = 50\n",
         {{12, "must be at least 100 (RFC 5321 4.5.3.1.8"}}},
        {"max_line_length below 512",
         BASE "[limits]\nmax_line_length = 511\n",
         {{13, "must be at least 512 (RFC 5321 4.5.3.1.4"}}},
        {"max_auth_line_length below 512",
         BASE "[limits]\nmax_auth_line_length = 100\n",
         {{13, "must be at least 512"}}},
        {"max_auth_failures of 0",
         BASE "[limits]\nmax_auth_failures = 0\n",
         {{13, "max_auth_failures = 0: must be at least 1"}}},
        {"max_connections of 0",
         BASE "[limits]\nmax_connections = 0\n",
         {{13, "must be at least 1"}}},
        {"max_connections_per_ip of 0",
         BASE "[limits]\nmax_connections_per_ip = 0\n",
         {{13, "must be at least 1"}}},
        {"command_timeout of 0",
         BASE "[limits]\ncommand_timeout = 0\n",
         {{13, "must be at least 1"}}},
        {"data_timeout of 0", BASE "[limits]\ndata_timeout = 0\n", {{13, "must be at least 1"}}},
        {"max_errors of 0", BASE "[limits]\nmax_errors = 0\n", {{13, "must be at least 1"}}},
        {"auth_failure_delay_ms too long",
         BASE "[limits]\nauth_failure_delay_ms = 600001\n",
         {{13, "auth_failure_delay_ms = 600001: must be at most 10m"}}},
        {"auth threads of 0", BASE "[auth]\nthreads = 0\n", {{13, "must be at least 1"}}},
        {"auth request_timeout of 0",
         BASE "[auth]\nrequest_timeout = 0\n",
         {{13, "must be at least 1"}}},
        {"size with a bad suffix",
         BASE "[limits]\nmax_message_size = 10X\n",
         {{13, "max_message_size = 10X: not a size in bytes"}}},
        {"size with two suffix letters",
         BASE "[limits]\nmax_message_size = 10MB\n",
         {{13, "not a size in bytes"}}},
        {"size of 0", BASE "[limits]\nmax_message_size = 0\n", {{13, "must be at least 1"}}},
        {"size that overflows",
         BASE "[limits]\nmax_message_size = 99999999999999G\n",
         {{13, "too large"}}},
        {"bad boolean",
         BASE "[server]\nchroot = maybe\n",
         {{13, "chroot = maybe: expected yes or no"}}},
        {"empty boolean", BASE "insert_received =\n", {{12, "expected yes or no"}}},
        {"bad log", BASE "[server]\nlog = file\n", {{13, "expected stderr or syslog"}}},
        {"bad log_level",
         BASE "[server]\nlog_level = verbose\n",
         {{13, "expected error, warning, info or debug"}}},
        {"old TLS version",
         BASE "[tls]\nmin_protocol = TLSv1.1\n",
         {{13, "expected TLSv1.2 or TLSv1.3"}}},
        {"bad role",
         BASE "[listener r]\naddress = 127.0.0.2:25\nrole = relay\n",
         {{14, "role = relay: expected inbound, outbound or submission"}}},
        {"bad tls mode",
         BASE "tls = maybe\n",
         {{12, "tls = maybe: expected none, optional, required or implicit"}}},

        /* strings, names, paths, lists */
        {"empty user", BASE "[server]\nuser =\n", {{13, "user = : must not be empty"}}},
        {"empty spool_dir", BASE "[server]\nspool_dir =\n", {{13, "must not be empty"}}},
        {"bad hostname",
         BASE "[server]\nhostname = mail_1.example.test\n",
         {{13, "not a host name"}}},
        {"hostname with a trailing dash label",
         BASE "[server]\nhostname = mail-.example.test\n",
         {{13, "not a host name"}}},
        {"bad default_domain", BASE "default_domain = ex..ample\n", {{12, "not a domain name"}}},
        {"non-ASCII banner", BASE "banner = caf\xc3\xa9\n", {{12, "only printable ASCII"}}},
        {"bad local domain",
         BASE "[relay]\nlocal_domains = good.test, bad_domain.test\n",
         {{13, "local_domains = bad_domain.test: not a domain name"}}},
        {"bad local domain on a continuation line",
         BASE "[relay]\nlocal_domains = good.test\n  -bad.test\n",
         {{14, "local_domains = -bad.test: not a domain name"}}},
        {"bad client network",
         BASE "[relay]\nclient_networks = 192.0.2.0/33\n",
         {{13, "client_networks = 192.0.2.0/33: the prefix length"}}},
        {"client network that is a name",
         BASE "[relay]\nclient_networks = lan.example.test\n",
         {{13, "not a numeric IPv4 or IPv6 network"}}},

        /* addresses */
        {"host name as address",
         BASE "[listener b]\naddress = localhost:25\nrole = inbound\n",
         {{13, "address = localhost:25: not a numeric IPv4 address"}}},
        {"address without port",
         BASE "[listener b]\naddress = 127.0.0.2\nrole = inbound\n",
         {{13, "expected address:port"}}},
        {"IPv6 address without brackets",
         BASE "[listener b]\naddress = ::1:25\nrole = inbound\n",
         {{13, "brackets"}}},
        {"port out of range",
         BASE "[listener b]\naddress = [::1]:65536\nrole = inbound\n",
         {{13, "the port must be a number from 1 to 65535"}}},
        {"listener without address or role",
         BASE "[listener b]\n",
         {{12, "listener 'b' has no address"}, {12, "listener 'b' has no role"}}},
        {"no listener at all",
         "[relay]\nlocal_domains = example.test\n[server]\nworkers = 1\n",
         {{0, "no [listener NAME] section"}}},

        /* address clashes */
        {"two inbound listeners on one address",
         BASE "[listener mx2]\naddress = 127.0.0.1:2525\nrole = inbound\n",
         {{13, "listener 'mx2' (127.0.0.1:2525) and listener 'mx' (127.0.0.1:2525, line 9) "
               "would listen on the same address:port"}}},
        {"IPv4 wildcard and a specific address, same port",
         BASE "[listener out]\naddress = 0.0.0.0:2525\nrole = outbound\n",
         {{13, "would listen on the same address:port"}}},
        {"submission sharing an inbound address:port",
         BASE "[listener sub]\naddress = 127.0.0.1:2525\nrole = submission\n",
         {{13, "submission listener 'sub' (127.0.0.1:2525) and inbound listener 'mx' "
               "(127.0.0.1:2525) share an address:port; RFC 4954 / product rule: the "
               "authentication listener needs its own address:port"}}},
        {"submission on the IPv4 wildcard of an inbound port",
         BASE "[listener sub]\naddress = 0.0.0.0:2525\nrole = submission\n",
         {{13, "submission listener 'sub' (0.0.0.0:2525) and inbound listener 'mx' "
               "(127.0.0.1:2525) share an address:port; RFC 4954 / product rule"}}},
        {"submission on * (dual-stack wildcard) of an inbound port",
         BASE "[listener sub]\naddress = *:2525\nrole = submission\n",
         {{13, "submission listener 'sub' (*:2525) and inbound listener 'mx'"}}},
        {"submission on [::] of an inbound port",
         BASE "[listener sub]\naddress = [::]:2525\nrole = submission\n",
         {{13, "RFC 4954 / product rule: the authentication listener needs its own"}}},
        {"submission on the v4-mapped form of an inbound address",
         BASE "[listener sub]\naddress = [::ffff:127.0.0.1]:2525\nrole = submission\n",
         {{13, "RFC 4954 / product rule"}}},
        {"outbound on a submission port (submission first in the file)",
         "[relay]\nclient_networks = 10.0.0.0/8\n[users-file]\npath = u\n[tls]\n"
         "cert_file = c\nkey_file = k\n[listener sub]\naddress = 127.0.0.1:587\n"
         "role = submission\n[listener out]\naddress = *:587\nrole = outbound\n",
         {{12, "submission listener 'sub' (127.0.0.1:587) and outbound listener 'out' "
               "(*:587) share an address:port; RFC 4954 / product rule: the "
               "authentication listener needs its own address:port"}}},
        {"two submission listeners on one address",
         BASE "[listener s1]\naddress = 127.0.0.1:587\nrole = submission\n"
              "[listener s2]\naddress = 127.0.0.1:587\nrole = submission\n",
         {{16, "listener 's2' (127.0.0.1:587) and listener 's1' (127.0.0.1:587, line 12) "
               "would listen on the same address:port"}}},

        /* TLS */
        {"tls = required without a certificate",
         "[relay]\nlocal_domains = example.test\n[listener mx]\naddress = 127.0.0.1:25\n"
         "role = inbound\ntls = required\n",
         {{6, "listener 'mx': tls = required needs [tls] cert_file and key_file"}}},
        {"tls = optional without a certificate",
         "[relay]\nlocal_domains = example.test\n[listener mx]\naddress = 127.0.0.1:25\n"
         "role = inbound\ntls = optional\n",
         {{6, "tls = optional needs [tls] cert_file and key_file"}}},
        {"tls = implicit without a certificate",
         "[relay]\nlocal_domains = example.test\n[listener mx]\naddress = 127.0.0.1:25\n"
         "role = inbound\ntls = implicit\n",
         {{6, "tls = implicit needs [tls] cert_file and key_file"}}},
        {"submission defaults to tls = required, without a certificate",
         "[users-file]\npath = users\n[listener sub]\naddress = 127.0.0.1:587\n"
         "role = submission\n",
         {{3, "submission listener 'sub' defaults to tls = required, which needs [tls] "
              "cert_file and key_file"}}},
        {"submission with tls = none and no plaintext auth",
         BASE "[listener sub]\naddress = 127.0.0.1:587\nrole = submission\ntls = none\n",
         {{15, "submission listener 'sub' has tls = none and allow_plaintext_auth = no, so "
               "it could never offer AUTH"}}},

        /* what each role needs */
        {"inbound without local_domains",
         "[listener mx]\naddress = 127.0.0.1:25\nrole = inbound\n",
         {{3, "inbound listener 'mx' needs [relay] local_domains"}}},
        {"outbound without client_networks",
         "[listener out]\naddress = 127.0.0.1:10025\nrole = outbound\n",
         {{3, "outbound listener 'out' needs [relay] client_networks"}}},
        {"submission without an auth source",
         "[tls]\ncert_file = c\nkey_file = k\n[listener sub]\naddress = 127.0.0.1:587\n"
         "role = submission\n",
         {{6, "submission listener 'sub' needs an authentication source: set [users-file] "
              "path"}}},
        {"AUTH options on an inbound listener",
         BASE "allow_plaintext_auth = yes\nauth_legacy_advertise = true\ncram_md5 = on\n"
              "sender_login_match = yes\n",
         {{12, "listener 'mx': allow_plaintext_auth applies to submission listeners only; "
               "inbound listeners never offer AUTH"},
          {13, "auth_legacy_advertise applies to submission listeners only"},
          {14, "cram_md5 applies to submission listeners only"},
          {15, "sender_login_match applies to submission listeners only"}}},
};

static void
run_error_case(const struct error_case *c)
{
	char *errors = load_fail(c->conf);
	size_t n = 0;

	for (size_t i = 0; i < AR_NELEM(c->errors) && c->errors[i].text != NULL; i++, n++) {
		if (!has_error(errors, c->errors[i].line, c->errors[i].text))
			fail_msg("%s: no error at line %d with '%s' in:\n%s", c->name,
			         c->errors[i].line, c->errors[i].text, errors);
	}
	if (count_lines(errors) != n)
		fail_msg("%s: expected %zu error(s), got:\n%s", c->name, n, errors);
	free(errors);
}

static void
test_error_cases(void **state)
{
	for (size_t i = 0; i < AR_NELEM(error_cases); i++)
		run_error_case(&error_cases[i]);
}

/* A NUL cannot sit in the table's C strings. */
static void
test_nul_byte(void **state)
{
	static const char conf[] = BASE "[server]\nuser = a\0b\n";
	FILE *f = fopen(conf_path, "w");
	char *errors = NULL;

	assert_non_null(f);
	assert_int_equal(fwrite(conf, 1, sizeof(conf) - 1, f), sizeof(conf) - 1);
	fclose(f);
	assert_null(config_load(conf_path, &errors));
	assert_true(has_error(errors, 13, "NUL byte in the line"));
	assert_int_equal(count_lines(errors), 1);
	free(errors);
}

static void
test_tls_file_pairs(void **state)
{
	char *errors;

	errors = load_fail("[relay]\nlocal_domains = example.test\n[listener mx]\n"
	                   "address = 127.0.0.1:25\nrole = inbound\n[tls]\ncert_file = c\n");
	assert_true(has_error(errors, 7, "cert_file is set but key_file is not"));
	/* and the inbound listener, now tls = optional by default, lacks a key */
	assert_int_equal(count_lines(errors), 1);
	free(errors);

	errors = load_fail("[relay]\nlocal_domains = example.test\n[listener mx]\n"
	                   "address = 127.0.0.1:25\nrole = inbound\n[tls]\nkey_file = k\n");
	assert_true(has_error(errors, 7, "key_file is set but cert_file is not"));
	assert_int_equal(count_lines(errors), 1);
	free(errors);

	errors = load_fail("[relay]\nlocal_domains = example.test\n[listener mx]\n"
	                   "address = 127.0.0.1:25\nrole = inbound\n[tls]\nca_file = ca\n");
	assert_true(has_error(errors, 7, "ca_file (client certificates) needs cert_file"));
	assert_int_equal(count_lines(errors), 1);
	free(errors);
}

/* Several problems at once: all reported, sorted by line. */
static void
test_every_error_reported(void **state)
{
	char *errors = load_fail("[server]\nworkers = x\nchroot = perhaps\n"
	                         "[limits]\nmax_recipients = 10\n"
	                         "[listener a]\naddress = 127.0.0.1:25\nrole = submission\n"
	                         "tls = none\n"
	                         "[listener b]\naddress = 127.0.0.1:25\nrole = inbound\n");
	static const struct expected_error all[] = {
	        {2, "workers = x: not a whole number"},
	        {3, "chroot = perhaps: expected yes or no"},
	        {5, "max_recipients = 10: must be at least 100"},
	        {8, "submission listener 'a' needs an authentication source"},
	        {9, "submission listener 'a' has tls = none and allow_plaintext_auth = no"},
	        {11, "submission listener 'a' (127.0.0.1:25) and inbound listener 'b' "
	             "(127.0.0.1:25) share an address:port; RFC 4954 / product rule"},
	        {12, "inbound listener 'b' needs [relay] local_domains"},
	};
	for (size_t i = 0; i < AR_NELEM(all); i++)
		if (!has_error(errors, all[i].line, all[i].text))
			fail_msg("no error at line %d with '%s' in:\n%s", all[i].line, all[i].text,
			         errors);
	assert_int_equal(count_lines(errors), AR_NELEM(all));
	/* sorted by line */
	const char *p2 = strstr(errors, ":2: "), *p12 = strstr(errors, ":12: ");
	assert_non_null(p2);
	assert_non_null(p12);
	assert_true(p2 < p12);
	free(errors);
}

static void
test_missing_file(void **state)
{
	char *errors = NULL;
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/nonexistent.conf", tmpdir);
	assert_null(config_load(path, &errors));
	assert_non_null(errors);
	assert_non_null(strstr(errors, "nonexistent.conf:0: cannot open: No such file"));
	free(errors);
	/* a directory opens but cannot be read: one error, with the reason */
	assert_null(config_load(tmpdir, &errors));
	assert_non_null(errors);
	assert_non_null(strstr(errors, ":1: read error: Is a directory"));
	assert_int_equal(count_lines(errors), 1);
	free(errors);
	/* errors_r may be NULL */
	assert_null(config_load(path, NULL));
	write_file(conf_path, "[bogus]\n");
	assert_null(config_load(conf_path, NULL));
}

/* ---- what a valid file gives ---- */

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok("[relay]\nlocal_domains = example.test\n"
	                             "[listener mx]\naddress = 127.0.0.1:25\nrole = inbound\n");
	char host[256] = "";

	assert_string_equal(cfg->path, conf_path);
	assert_non_null(cfg->hostname);
	assert_true(cfg->hostname[0] != '\0');
	if (gethostname(host, sizeof(host) - 1) == 0 && strchr(host, '_') == NULL)
		assert_string_equal(cfg->hostname, host);
	assert_string_equal(cfg->user, "authrelay");
	/* Each process kind its own user (etc/authrelay.sysusers). */
	assert_string_equal(cfg->auth_user, "authrelay-auth");
	assert_string_equal(cfg->queue_user, "authrelay-queue");
	assert_true(cfg->sandbox);
	assert_false(cfg->core_dumps);
	assert_null(cfg->warnings);
	assert_int_equal(cfg->workers, 0);
	assert_string_equal(cfg->spool_dir, "/var/spool/authrelay");
	assert_true(cfg->chroot);
	assert_false(cfg->use_syslog);
	assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
	assert_null(cfg->pid_file);
	assert_null(cfg->tls_cert_file);
	assert_null(cfg->tls_key_file);
	assert_null(cfg->tls_ca_file);
	assert_null(cfg->tls_ciphers);
	assert_string_equal(cfg->tls_min_protocol, "TLSv1.2");

	const struct limits_cfg *lim = &cfg->limits;
	assert_int_equal(lim->max_connections, 2000);
	assert_int_equal(lim->max_connections_per_ip, 20);
	assert_int_equal(lim->ipv6_prefix, 64);
	assert_int_equal(lim->max_messages_per_session, 100);
	assert_int_equal(lim->max_recipients, 1024);
	assert_int_equal(lim->max_message_size, 10485760);
	assert_int_equal(lim->max_line_length, 512);
	assert_int_equal(lim->max_auth_line_length, 12288);
	assert_int_equal(lim->max_auth_failures, 3);
	assert_int_equal(lim->auth_failure_delay_ms, 1000);
	assert_int_equal(lim->command_timeout, 300);
	assert_int_equal(lim->data_timeout, 180);
	assert_int_equal(lim->max_errors, 20);

	assert_string_equal(cfg->local_domains[0], "example.test");
	assert_null(cfg->local_domains[1]);
	assert_int_equal(cfg->n_client_networks, 0);
	assert_int_equal(cfg->auth_threads, 2);
	assert_int_equal(cfg->auth_request_timeout, 30);
	assert_null(cfg->users_file);

	assert_int_equal(cfg->n_listeners, 1);
	const struct listener_cfg *l = &cfg->listeners[0];
	assert_string_equal(l->name, "mx");
	assert_string_equal(l->address_text, "127.0.0.1:25");
	assert_int_equal(l->addr.ss_family, AF_INET);
	assert_int_equal(l->addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&l->addr)->sin_port), 25);
	assert_int_equal(l->role, ROLE_INBOUND);
	assert_int_equal(l->tls, LTLS_NONE); /* no certificate */
	assert_false(l->allow_plaintext_auth);
	assert_false(l->auth_legacy_advertise);
	assert_false(l->cram_md5);
	assert_true(l->insert_received);
	assert_false(l->strip_received);
	assert_false(l->add_missing_headers);
	assert_null(l->default_domain);
	assert_null(l->banner);
	assert_memory_equal(&l->limits, lim, sizeof(*lim));
	assert_int_equal(l->line, 3);
	config_free(cfg);
}

static void
test_role_defaults(void **state)
{
	struct config *cfg = load_ok(BASE "[listener out]\naddress = 127.0.0.1:10025\n"
	                                  "role = outbound\n"
	                                  "[listener sub]\naddress = 127.0.0.1:587\n"
	                                  "role = submission\n");
	const struct listener_cfg *mx = config_listener(cfg, "mx");
	const struct listener_cfg *out = config_listener(cfg, "out");
	const struct listener_cfg *sub = config_listener(cfg, "sub");

	assert_non_null(mx);
	assert_non_null(out);
	assert_non_null(sub);
	/* a certificate exists: others default to optional, submission to required */
	assert_int_equal(mx->tls, LTLS_OPTIONAL);
	assert_int_equal(out->tls, LTLS_OPTIONAL);
	assert_int_equal(sub->tls, LTLS_REQUIRED);
	/* RFC 6409 8: the submission server may add Message-ID and Date */
	assert_false(mx->add_missing_headers);
	assert_false(out->add_missing_headers);
	assert_true(sub->add_missing_headers);
	assert_true(sub->insert_received);
	assert_false(sub->strip_received);
	assert_false(sub->allow_plaintext_auth);
	config_free(cfg);
}

/* A listener's own value wins wherever [limits] sits in the file; what it
 * does not set comes from [limits], and [limits] from the built-in defaults. */
static void
test_limits_override_precedence(void **state)
{
	struct config *cfg = load_ok("[listener early]\n"
	                             "address = 127.0.0.1:25\n"
	                             "role = inbound\n"
	                             "max_recipients = 200\n"
	                             "ipv6_prefix = 128\n"
	                             "max_message_size = 1k\n"
	                             "[limits]\n"
	                             "max_recipients = 500\n"
	                             "max_connections = 10\n"
	                             "max_message_size = 2M\n"
	                             "[listener late]\n"
	                             "address = 127.0.0.1:26\n"
	                             "role = inbound\n"
	                             "max_connections = 7\n"
	                             "[listener plain]\n"
	                             "address = 127.0.0.1:27\n"
	                             "role = inbound\n"
	                             "[relay]\n"
	                             "local_domains = example.test\n");
	const struct listener_cfg *early = config_listener(cfg, "early");
	const struct listener_cfg *late = config_listener(cfg, "late");
	const struct listener_cfg *plain = config_listener(cfg, "plain");

	assert_int_equal(cfg->limits.max_recipients, 500);
	assert_int_equal(cfg->limits.max_connections, 10);
	assert_int_equal(cfg->limits.ipv6_prefix, 64);

	assert_int_equal(early->limits.max_recipients, 200); /* own, before [limits] */
	assert_int_equal(early->limits.ipv6_prefix, 128);
	assert_int_equal(early->limits.max_message_size, 1024);
	assert_int_equal(early->limits.max_connections, 10); /* from [limits], later */
	assert_int_equal(early->limits.max_errors, 20);      /* built-in */

	assert_int_equal(late->limits.max_connections, 7);
	assert_int_equal(late->limits.max_recipients, 500);
	assert_int_equal(late->limits.max_message_size, 2 * 1024 * 1024);

	assert_memory_equal(&plain->limits, &cfg->limits, sizeof(cfg->limits));
	config_free(cfg);
}

static void
test_every_key(void **state)
{
	struct config *cfg = load_ok("[server]\n"
	                             "hostname = mx1.example.test\n"
	                             "user = relay\n"
	                             "auth_user = relayauth\n"
	                             "workers = 4\n"
	                             "spool_dir = spool\n"
	                             "chroot = no\n"
	                             "log = syslog\n"
	                             "log_level = debug\n"
	                             "pid_file = /run/ar.pid\n"
	                             "[tls]\n"
	                             "cert_file = /etc/ar/cert.pem\n"
	                             "key_file = tls/key.pem\n"
	                             "ca_file = ca.pem\n"
	                             "ciphers = ECDHE+AESGCM\n"
	                             "min_protocol = tlsv1.3\n"
	                             "[limits]\n"
	                             "max_connections = 1\n"
	                             "max_connections_per_ip = 2\n"
	                             "ipv6_prefix = 0\n"
	                             "max_messages_per_session = 0\n"
	                             "max_recipients = 100\n"
	                             "max_message_size = 1G\n"
	                             "max_line_length = 1000\n"
	                             "max_auth_line_length = 512\n"
	                             "max_auth_failures = 5\n"
	                             "auth_failure_delay_ms = 0\n"
	                             "command_timeout = 60\n"
	                             "data_timeout = 120\n"
	                             "max_errors = 3\n"
	                             "[auth]\n"
	                             "threads = 8\n"
	                             "request_timeout = 5\n"
	                             "[users-file]\n"
	                             "path = /etc/ar/users\n"
	                             "[relay]\n"
	                             "client_networks = 10.0.0.0/8\n"
	                             "[listener sub]\n"
	                             "address = [::1]:587\n"
	                             "role = Submission\n"
	                             "tls = IMPLICIT\n"
	                             "allow_plaintext_auth = yes\n"
	                             "auth_legacy_advertise = yes\n"
	                             "cram_md5 = yes\n"
	                             "insert_received = no\n"
	                             "strip_received = yes\n"
	                             "add_missing_headers = no\n"
	                             "default_domain = example.test\n"
	                             "banner = Welcome; authenticate first\n"
	                             "sender_login_match = yes\n");
	char want[PATH_MAX + 32];

	assert_string_equal(cfg->hostname, "mx1.example.test");
	assert_string_equal(cfg->user, "relay");
	assert_string_equal(cfg->auth_user, "relayauth");
	assert_int_equal(cfg->workers, 4);
	snprintf(want, sizeof(want), "%s/spool", tmpdir);
	assert_string_equal(cfg->spool_dir, want);
	assert_false(cfg->chroot);
	assert_true(cfg->use_syslog);
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(cfg->pid_file, "/run/ar.pid");
	assert_string_equal(cfg->tls_cert_file, "/etc/ar/cert.pem");
	snprintf(want, sizeof(want), "%s/tls/key.pem", tmpdir);
	assert_string_equal(cfg->tls_key_file, want);
	snprintf(want, sizeof(want), "%s/ca.pem", tmpdir);
	assert_string_equal(cfg->tls_ca_file, want);
	assert_string_equal(cfg->tls_ciphers, "ECDHE+AESGCM");
	assert_string_equal(cfg->tls_min_protocol, "TLSv1.3");

	assert_int_equal(cfg->limits.max_connections, 1);
	assert_int_equal(cfg->limits.max_connections_per_ip, 2);
	assert_int_equal(cfg->limits.ipv6_prefix, 0);
	assert_int_equal(cfg->limits.max_messages_per_session, 0);
	assert_int_equal(cfg->limits.max_recipients, 100);
	assert_int_equal(cfg->limits.max_message_size, 1024ULL * 1024 * 1024);
	assert_int_equal(cfg->limits.max_line_length, 1000);
	assert_int_equal(cfg->limits.max_auth_line_length, 512);
	assert_int_equal(cfg->limits.max_auth_failures, 5);
	assert_int_equal(cfg->limits.auth_failure_delay_ms, 0);
	assert_int_equal(cfg->limits.command_timeout, 60);
	assert_int_equal(cfg->limits.data_timeout, 120);
	assert_int_equal(cfg->limits.max_errors, 3);
	assert_int_equal(cfg->auth_threads, 8);
	assert_int_equal(cfg->auth_request_timeout, 5);
	assert_string_equal(cfg->users_file, "/etc/ar/users");

	const struct listener_cfg *l = config_listener(cfg, "sub");
	assert_non_null(l);
	assert_int_equal(l->addr.ss_family, AF_INET6);
	assert_int_equal(l->role, ROLE_SUBMISSION);
	assert_int_equal(l->tls, LTLS_IMPLICIT);
	assert_true(l->allow_plaintext_auth);
	assert_true(l->auth_legacy_advertise);
	assert_true(l->cram_md5);
	assert_false(l->insert_received);
	assert_true(l->strip_received);
	assert_false(l->add_missing_headers);
	assert_string_equal(l->default_domain, "example.test");
	/* " ;" would start a comment, ";" alone does not */
	assert_string_equal(l->banner, "Welcome; authenticate first");
	assert_true(l->sender_login_match);
	assert_memory_equal(&l->limits, &cfg->limits, sizeof(cfg->limits));
	config_free(cfg);
}

static void
test_booleans(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} cases[] = {
	        {"yes", true}, {"YES", true},    {"true", true}, {"On", true}, {"1", true},
	        {"no", false}, {"False", false}, {"off", false}, {"0", false}, {"NO", false},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		char conf[512];
		snprintf(conf, sizeof(conf), BASE "strip_received = %s\n", cases[i].text);
		struct config *cfg = load_ok(conf);
		assert_int_equal(cfg->listeners[0].strip_received, cases[i].value);
		config_free(cfg);
	}
}

static void
test_sizes(void **state)
{
	static const struct {
		const char *text;
		uint64_t value;
	} cases[] = {
	        {"1", 1},
	        {"10485760", 10485760},
	        {"10k", 10240},
	        {"10K", 10240},
	        {"3m", 3 * 1024 * 1024},
	        {"3M", 3 * 1024 * 1024},
	        {"2G", 2ULL * 1024 * 1024 * 1024},
	        {"18446744073709551615", UINT64_MAX},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		char conf[512];
		snprintf(conf, sizeof(conf), BASE "max_message_size = %s\n", cases[i].text);
		struct config *cfg = load_ok(conf);
		assert_true(cfg->listeners[0].limits.max_message_size == cases[i].value);
		config_free(cfg);
	}
}

static void
test_syntax_variants(void **state)
{
	/* BOM, CRLF, comments of both kinds, an inline comment, "key: value",
	 * blank lines, a long comment line, keys and sections in any case */
	struct config *cfg = load_ok(
	        "\xEF\xBB\xBF# sample\r\n"
	        "; another comment\r\n"
	        "\r\n"
	        "[Relay]\r\n"
	        "LOCAL_DOMAINS: example.test ; inline comment\r\n"
	        "# xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
	        "[listener mx]  ; the MX\r\n"
	        "address = 127.0.0.1:25\r\n"
	        "role = inbound\r\n"
	        "banner = hello # not a comment\r\n");

	assert_string_equal(cfg->local_domains[0], "example.test");
	assert_null(cfg->local_domains[1]);
	assert_string_equal(cfg->listeners[0].banner, "hello # not a comment");
	assert_int_equal(cfg->listeners[0].line, 7);
	config_free(cfg);
}

/* No line length limit a real value hits (libinih's was 197 characters):
 * a 300-character LDAP filter, a 2000-character banner, a long list. */
static void
test_long_lines(void **state)
{
	char *text = NULL, filter[301], banner[2001];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	memset(filter, 'x', sizeof(filter) - 1);
	memcpy(filter, "(&(objectClass=user)(", 21);
	filter[sizeof(filter) - 3] = ')';
	filter[sizeof(filter) - 2] = ')';
	filter[sizeof(filter) - 1] = '\0';
	memset(banner, 'b', sizeof(banner) - 1);
	banner[sizeof(banner) - 1] = '\0';
	fprintf(f, BASE "banner = %s\n[relay]\nlocal_domains =", banner);
	for (int i = 0; i < 200; i++)
		fprintf(f, " d%d.example.test", i);
	fprintf(f,
	        "\n[ldap ad]\nuri = ldaps://dc.example.test\nbase = dc=example,dc=test\n"
	        "filter = %s\n",
	        filter);
	fclose(f);
	struct config *cfg = load_ok(text);
	assert_string_equal(cfg->listeners[0].banner, banner);
	assert_string_equal(cfg->local_domains[200], "d199.example.test");
	assert_string_equal(
	        config_section_get(config_section_next(cfg, "ldap", NULL), "filter", NULL), filter);
	config_free(cfg);
	free(text);
}

/* The one duration syntax in [limits] and [auth]; plain numbers are still
 * seconds, and a listener's own value wins. */
static void
test_durations(void **state)
{
	struct config *cfg = load_ok(BASE "command_timeout = 90s\n[limits]\ncommand_timeout = 5m\n"
	                                  "data_timeout = 1h\nauth_failure_delay_ms = 2s\n"
	                                  "[auth]\nrequest_timeout = 45\n");

	assert_int_equal(cfg->limits.command_timeout, 300);
	assert_int_equal(cfg->limits.data_timeout, 3600);
	assert_int_equal(cfg->limits.auth_failure_delay_ms, 2000);
	assert_int_equal(cfg->listeners[0].limits.command_timeout, 90);
	assert_int_equal(cfg->listeners[0].limits.data_timeout, 3600);
	assert_int_equal(cfg->auth_request_timeout, 45);
	config_free(cfg);
}

static void
test_max_auth_failures_low_is_a_warning(void **state)
{
	struct config *cfg = load_ok(BASE "max_auth_failures = 1\n");
	char want[PATH_MAX + 256];

	assert_int_equal(cfg->listeners[0].limits.max_auth_failures, 1);
	/* warnings and errors share one format */
	snprintf(want, sizeof(want),
	         "%s:12: warning: max_auth_failures = 1: RFC 4954 9 and the product spec expect at "
	         "least 3 attempts before a client is dropped\n",
	         conf_path);
	assert_non_null(cfg->warnings);
	assert_string_equal(cfg->warnings, want);
	config_free(cfg);

	/* with an error, the warning comes with it, in line order */
	char *errors = load_fail(BASE "max_auth_failures = 2\nmax_errors = 0\n");
	assert_true(has_error(errors, 12, "warning: max_auth_failures = 2"));
	assert_true(has_error(errors, 13, "max_errors = 0: must be at least 1"));
	free(errors);

	cfg = load_ok(BASE);
	assert_null(cfg->warnings);
	config_free(cfg);
}

static void
test_plaintext_submission_for_tests(void **state)
{
	/* tls = none is accepted on submission only with allow_plaintext_auth */
	struct config *cfg = load_ok("[users-file]\npath = users\n[listener sub]\n"
	                             "address = 127.0.0.1:2587\nrole = submission\n"
	                             "tls = none\nallow_plaintext_auth = yes\n");
	char want[PATH_MAX + 16];

	snprintf(want, sizeof(want), "%s/users", tmpdir);
	assert_string_equal(cfg->users_file, want);
	assert_int_equal(cfg->listeners[0].tls, LTLS_NONE);
	config_free(cfg);
}

static void
test_no_clash(void **state)
{
	/* different ports; different specific addresses; the IPv4 wildcard and a
	 * specific IPv6 address (0.0.0.0 covers IPv4 only) */
	struct config *cfg = load_ok(BASE "[listener a]\naddress = 127.0.0.1:2526\nrole = inbound\n"
	                                  "[listener b]\naddress = 127.0.0.2:2525\nrole = inbound\n"
	                                  "[listener c]\naddress = 0.0.0.0:2600\nrole = inbound\n"
	                                  "[listener d]\naddress = [::1]:2600\nrole = inbound\n"
	                                  "[listener e]\naddress = [::1]:2601\nrole = submission\n"
	                                  "[listener f]\naddress = [::2]:2601\nrole = inbound\n");

	assert_int_equal(cfg->n_listeners, 7);
	config_free(cfg);
}

static void
test_lists(void **state)
{
	struct config *cfg = load_ok(BASE "[relay]\n"
	                                  "local_domains = Example.ORG, example.net.,,\n"
	                                  "\tsub.example.com   .Lists.Example.COM\n"
	                                  "local_domains = last.example\n"
	                                  "client_networks = 192.0.2.0/24,2001:db8::/32\n"
	                                  "    127.0.0.1\n");
	static const char *const domains[] = {"example.test",       "example.org",
	                                      "example.net",        "sub.example.com",
	                                      ".lists.example.com", "last.example"};

	for (size_t i = 0; i < AR_NELEM(domains); i++) {
		assert_non_null(cfg->local_domains[i]);
		assert_string_equal(cfg->local_domains[i], domains[i]);
	}
	assert_null(cfg->local_domains[AR_NELEM(domains)]);
	assert_int_equal(cfg->n_client_networks, 4);
	config_free(cfg);
}

static void
test_is_local_domain(void **state)
{
	struct config *cfg =
	        load_ok(BASE "[relay]\nlocal_domains = example.org .lists.example.com\n");
	static const struct {
		const char *domain;
		bool local;
	} cases[] = {
	        {"example.test", true},
	        {"EXAMPLE.Test", true},
	        {"example.test.", true},
	        {"example.org", true},
	        {"mail.example.test", false}, /* exact match only */
	        {"example.tes", false},
	        {"xexample.test", false},
	        {"example.test.evil", false},
	        {"a.lists.example.com", true}, /* leading dot: subdomains */
	        {"A.B.LISTS.example.com", true},
	        {"lists.example.com", false},
	        {"xlists.example.com", false},
	        {".lists.example.com", false}, /* not a domain */
	        {"", false},
	        {".", false},
	        {"[192.0.2.1]", false},
	        {NULL, false},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++)
		if (config_is_local_domain(cfg, cases[i].domain) != cases[i].local)
			fail_msg("%s: expected %s", cases[i].domain ? cases[i].domain : "NULL",
			         cases[i].local ? "local" : "not local");
	config_free(cfg);
}

static void
test_is_client_network(void **state)
{
	struct config *cfg =
	        load_ok(BASE "[relay]\nclient_networks = 192.0.2.0/24 2001:db8::/32\n");
	static const struct {
		const char *addr;
		bool inside;
	} cases[] = {
	        {"10.1.2.3", true},        {"192.0.2.200", true}, {"192.0.3.1", false},
	        {"::ffff:10.0.0.1", true}, {"2001:db8::5", true}, {"2001:db9::5", false},
	        {"127.0.0.1", false},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		if (strchr(cases[i].addr, ':') != NULL) {
			ss.ss_family = AF_INET6;
			inet_pton(AF_INET6, cases[i].addr,
			          &((struct sockaddr_in6 *)&ss)->sin6_addr);
		} else {
			ss.ss_family = AF_INET;
			inet_pton(AF_INET, cases[i].addr, &((struct sockaddr_in *)&ss)->sin_addr);
		}
		if (config_is_client_network(cfg, (struct sockaddr *)&ss) != cases[i].inside)
			fail_msg("%s: expected %s", cases[i].addr,
			         cases[i].inside ? "inside" : "outside");
	}
	config_free(cfg);
}

static void
test_listener_lookup_and_names(void **state)
{
	struct config *cfg = load_ok(BASE);

	assert_ptr_equal(config_listener(cfg, "mx"), &cfg->listeners[0]);
	assert_ptr_equal(config_listener(cfg, "MX"), &cfg->listeners[0]);
	assert_null(config_listener(cfg, "nope"));
	config_free(cfg);
	config_free(NULL);

	assert_string_equal(config_role_name(ROLE_INBOUND), "inbound");
	assert_string_equal(config_role_name(ROLE_OUTBOUND), "outbound");
	assert_string_equal(config_role_name(ROLE_SUBMISSION), "submission");
	assert_string_equal(config_role_name((enum listener_role)42), "?");
	assert_string_equal(config_tls_name(LTLS_NONE), "none");
	assert_string_equal(config_tls_name(LTLS_OPTIONAL), "optional");
	assert_string_equal(config_tls_name(LTLS_REQUIRED), "required");
	assert_string_equal(config_tls_name(LTLS_IMPLICIT), "implicit");
	assert_string_equal(config_tls_name((enum listener_tls)42), "?");
}

static void
test_relative_config_path(void **state)
{
	char cwd[PATH_MAX], *errors = NULL, want[PATH_MAX + 16];
	struct config *cfg;

	write_file(conf_path, BASE);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(tmpdir), 0);
	cfg = config_load("authrelay.conf", &errors);
	assert_int_equal(chdir(cwd), 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, conf_path);
	snprintf(want, sizeof(want), "%s/users", tmpdir);
	assert_string_equal(cfg->users_file, want);
	snprintf(want, sizeof(want), "%s/cert.pem", tmpdir);
	assert_string_equal(cfg->tls_cert_file, want);
	config_free(cfg);
}

/* Sections owned by other modules keep their keys, lines and order. */
static void
test_module_sections(void **state)
{
	char text[4096];
	snprintf(text, sizeof(text),
	         "%s\n[ldap corp]\nURI = ldap://a\n  ldap://b\nbase = dc=x\n"
	         "[ldap other]\nuri = ldap://c\nbase = dc=y\n[smtp-forward]\nupstreams = h:25\n",
	         BASE);
	struct config *cfg = load_ok(text);
	const struct config_section *s1 = config_section_next(cfg, "ldap", NULL);
	assert_non_null(s1);
	assert_string_equal(s1->name, "corp");
	int line = 0;
	assert_string_equal(config_section_get(s1, "uri", &line), "ldap://a ldap://b");
	assert_true(line > s1->line);
	assert_string_equal(config_section_get(s1, "base", NULL), "dc=x");
	assert_null(config_section_get(s1, "missing", NULL));
	const struct config_section *s2 = config_section_next(cfg, "ldap", s1);
	assert_non_null(s2);
	assert_string_equal(s2->name, "other");
	assert_null(config_section_next(cfg, "ldap", s2));
	const struct config_section *f = config_section_next(cfg, "smtp-forward", NULL);
	assert_non_null(f);
	assert_null(f->name);
	config_free(cfg);

	char *err;
	snprintf(text, sizeof(text), "%s\n[ldap]\nuri = x\n", BASE);
	err = load_fail(text);
	assert_non_null(strstr(err, "[ldap NAME]"));
	free(err);
	snprintf(text, sizeof(text), "%s\n[ldap a]\n[ldap A]\n", BASE);
	err = load_fail(text);
	assert_non_null(strstr(err, "duplicate section"));
	free(err);
	snprintf(text, sizeof(text), "%s\n[smtp-forward x]\n", BASE);
	err = load_fail(text);
	assert_non_null(strstr(err, "takes no name"));
	free(err);
}

/* The 1-based line of text where needle starts. */
static int
line_of(const char *text, const char *needle)
{
	const char *at = strstr(text, needle);
	int line = 1;
	assert_non_null(at);
	for (const char *p = text; p < at; p++)
		line += *p == '\n';
	return line;
}

/* config_key_line(): the line that sets a key, the section's when none
 * does, 0 without the section; a name picks one section of a kind, without
 * one the last section that sets the key wins. */
static void
test_key_line(void **state)
{
	char text[4096];
	snprintf(text, sizeof(text),
	         "%s\n[ldap corp]\nuri = ldap://a\nbase = dc=x\n"
	         "[ldap other]\nuri = ldap://c\nbase = dc=z\n",
	         BASE);
	struct config *cfg = load_ok(text);
	assert_int_equal(config_key_line(cfg, "ldap", "corp", "base"),
	                 line_of(text, "base = dc=x"));
	assert_int_equal(config_key_line(cfg, "ldap", "OTHER", "base"),
	                 line_of(text, "base = dc=z"));
	/* Any section of the kind: the last that sets it. */
	assert_int_equal(config_key_line(cfg, "ldap", NULL, "uri"),
	                 line_of(text, "uri = ldap://c"));
	assert_int_equal(config_key_line(cfg, "ldap", "corp", "ca_file"),
	                 line_of(text, "[ldap corp]"));
	assert_int_equal(config_key_line(cfg, "tls", NULL, "key_file"),
	                 line_of(text, "key_file = key.pem"));
	assert_int_equal(config_key_line(cfg, "tls", NULL, "ca_file"), line_of(text, "[tls]"));
	assert_int_equal(config_key_line(cfg, "ldap", "nope", "uri"), 0);
	assert_int_equal(config_key_line(cfg, "smtp-forward", NULL, "upstreams"), 0);
	config_free(cfg);
}

/* The shipped example must stay valid. */
static void
test_sample_config(void **state)
{
	char path[PATH_MAX], *errors = NULL;
	const char *self = __FILE__, *tail = strstr(self, "tests/unit/test_config.c");

	if (tail == NULL)
		skip();
	snprintf(path, sizeof(path), "%.*setc/authrelay.conf", (int)(tail - self), self);
	if (access(path, R_OK) != 0)
		skip();
	struct config *cfg = config_load(path, &errors);
	if (cfg == NULL)
		fail_msg("%s", errors);
	assert_int_equal(cfg->n_listeners, 4);
	const struct listener_cfg *sub = config_listener(cfg, "submission");
	const struct listener_cfg *subs = config_listener(cfg, "submissions");
	const struct listener_cfg *out = config_listener(cfg, "outbound");
	assert_non_null(sub);
	assert_non_null(subs);
	assert_non_null(out);
	assert_int_equal(sub->tls, LTLS_REQUIRED);
	assert_int_equal(subs->tls, LTLS_IMPLICIT);
	assert_int_equal(sub->role, ROLE_SUBMISSION);
	assert_int_equal(out->limits.max_message_size, 50 * 1024 * 1024);
	assert_int_equal(sub->limits.max_message_size, 10485760);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_error_cases),
	        cmocka_unit_test(test_nul_byte),
	        cmocka_unit_test(test_tls_file_pairs),
	        cmocka_unit_test(test_every_error_reported),
	        cmocka_unit_test(test_missing_file),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_role_defaults),
	        cmocka_unit_test(test_limits_override_precedence),
	        cmocka_unit_test(test_every_key),
	        cmocka_unit_test(test_booleans),
	        cmocka_unit_test(test_sizes),
	        cmocka_unit_test(test_syntax_variants),
	        cmocka_unit_test(test_max_auth_failures_low_is_a_warning),
	        cmocka_unit_test(test_long_lines),
	        cmocka_unit_test(test_durations),
	        cmocka_unit_test(test_plaintext_submission_for_tests),
	        cmocka_unit_test(test_no_clash),
	        cmocka_unit_test(test_lists),
	        cmocka_unit_test(test_is_local_domain),
	        cmocka_unit_test(test_is_client_network),
	        cmocka_unit_test(test_listener_lookup_and_names),
	        cmocka_unit_test(test_relative_config_path),
	        cmocka_unit_test(test_sample_config),
	        cmocka_unit_test(test_module_sections),
	        cmocka_unit_test(test_key_line),
	};

	log_init(false, LOG_LEVEL_ERR, "test");
	settings_registry_install(); /* every section kind for config_load() */
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
