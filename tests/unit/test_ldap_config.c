/* SPDX-License-Identifier: ISC */
/*
 * test_ldap_config.c - the [ldap NAME] sections (src/auth/ldap_config.c):
 * defaults per directory type, every key, every error with its file:line as
 * config_load() reports it, the warnings, show-config's view, the service
 * password file; and the connection pool's failure paths without a server
 * (src/auth/ldap_conn.c): an unreachable directory answers
 * LDAP_SERVER_DOWN, callbacks never run inside the call, the directory then
 * stays "down" for its back-off, and freeing with waiters pending is clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <ldap.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/ldap_config.h"
#include "auth/ldap_conn.h"
#include "lib/config.h"
#include "lib/log.h"
#include "master/settings_registry.h"
#include "support/ut_tmp.h"
#include "support/ut_conf.h"

#define BASE                                                                                       \
	"[relay]\n"                                                                                \
	"local_domains = example.test\n"                                                           \
	"[listener sub]\n"                                                                         \
	"address = 127.0.0.1:2587\n"                                                               \
	"role = submission\n"                                                                      \
	"tls = none\n"                                                                             \
	"allow_plaintext_auth = yes\n"
#define BASE_LINES 7

static char dir[64];

/* config_load() of text: the config, or NULL with *errors_r. */
static struct config *
try_load(const char *text, char **path_r, char **errors_r)
{
	char *path;

	if (asprintf(&path, "%s/authrelay.conf", dir) < 0)
		fail();
	*path_r = path;
	return ut_conf_try(path, text, errors_r);
}

static struct config *
load(const char *text, char **path_r)
{
	char *errors;
	struct config *cfg = try_load(text, path_r, &errors);

	if (cfg == NULL)
		fail_msg("config_load: %s", errors);
	return cfg;
}

/* Every [ldap NAME] of cfg, which must load. */
static struct ldap_dir_cfg *
dirs_of(const struct config *cfg, size_t *n_r)
{
	char *errors = NULL;
	struct ldap_dir_cfg *d = ldap_config_load(cfg, n_r, &errors);

	if (d == NULL)
		fail_msg("ldap_config_load: %s", errors != NULL ? errors : "no section");
	return d;
}

static void
write_file(const char *name, const char *text, mode_t mode)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static int
setup(void **state)
{
	ut_tmp_dir(dir, sizeof(dir), "test_ldap_config.");
	write_file("pw", "s3cret\nsecond line ignored\n", 0644); /* any auth_user */
	write_file("empty-pw", "\n", 0644);
	log_init(false, LOG_LEVEL_ERR, "test");
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(dir);
	return 0;
}

static void
test_defaults(void **state)
{
	char *path;
	struct config *cfg = load(BASE "[ldap corp]\n"
	                               "uri = ldap://a.test ldaps://b.test:636\n"
	                               "base = dc=corp,dc=test\n"
	                               "[ldap ad]\n"
	                               "uri = ldaps://dc1.ad.test, ldaps://dc2.ad.test\n"
	                               "type = ad\n"
	                               "base = dc=ad,dc=test\n"
	                               "dn_template = %u@ad.test\n"
	                               "when_unavailable = trust_others\n"
	                               "group_dn = cn=mail,dc=ad,dc=test\n",
	                          &path);
	size_t n = 0;
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);

	assert_int_equal(n, 2);
	assert_string_equal(d[0].name, "corp");
	assert_int_equal(d[0].n_uris, 2);
	assert_string_equal(d[0].uris[1], "ldaps://b.test:636");
	assert_int_equal(d[0].type, LDAP_TYPE_GENERIC);
	assert_int_equal(d[0].method, LDAP_METHOD_BIND);
	assert_int_equal(d[0].scope, LDAP_CFG_SCOPE_SUB);
	assert_true(d[0].tls_verify);
	assert_false(d[0].starttls);
	assert_null(d[0].bind_dn);
	assert_string_equal(d[0].filter, "(&(objectClass=person)(|(uid=%s)(mail=%s)))");
	assert_int_equal(d[0].n_mail_attributes, 1);
	assert_string_equal(d[0].mail_attributes[0], "mail");
	assert_string_equal(d[0].password_attribute, "userPassword");
	assert_int_equal(d[0].network_timeout, 5);
	assert_int_equal(d[0].timeout, 5);
	assert_int_equal(d[0].pool_size, 4);
	/* A directory that cannot answer fails closed by default. */
	assert_int_equal(d[0].when_unavailable, LDAP_WHEN_UNAVAILABLE_TEMPFAIL);
	/* AD: its own filter (disabled accounts excluded), nested groups,
	 * a UPN bind name. */
	assert_int_equal(d[1].type, LDAP_TYPE_AD);
	assert_non_null(strstr(d[1].filter, "sAMAccountName=%s"));
	assert_non_null(strstr(d[1].filter, "userAccountControl:1.2.840.113556.1.4.803:=2"));
	assert_string_equal(d[1].group_filter, "(member:1.2.840.113556.1.4.1941:=%D)");
	assert_true(d[1].upn_bind);
	assert_int_equal(d[1].when_unavailable, LDAP_WHEN_UNAVAILABLE_TRUST_OTHERS);
	ldap_config_free(d, n);
	config_free(cfg);
	free(path);
}

struct bad_case {
	const char *section; /* after BASE; its lines count from BASE_LINES + 1 */
	int line;            /* of the error, counted in section */
	const char *text;
};

static const struct bad_case bad_cases[] = {
        {"[ldap a]\nbase = dc=x\n", 1, "[ldap a] uri is required"},
        {"[ldap a]\nuri = ldap://h\n", 1, "[ldap a] base is required"},
        {"[ldap a]\nuri = http://h\nbase = dc=x\n", 2, "uri = http://h: not an LDAP URL"},
        {"[ldap a]\nuri = not a url\nbase = dc=x\n", 2, "uri = not: not an LDAP URL"},
        {"[ldap a]\nuri = ldap://h\n  ldap://[x\nbase = dc=x\n", 3,
         "uri = ldap://[x: not an LDAP URL"},
        {"[ldap a]\nuri = ldaps://h\nstarttls = yes\nbase = dc=x\n", 2,
         "[ldap a] starttls = yes needs ldap:// URIs, not 'ldaps://h'"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ncolour = blue\n", 4,
         "unknown key 'colour' in [ldap a]"},
        {"[ldap a]\nuri = ldap://h\nbase = not a dn\n", 3,
         "base = not a dn: not a valid DN (RFC 4514)"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nscope = deep\n", 4,
         "scope = deep: expected sub, one or base"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nmethod = guess\n", 4,
         "method = guess: expected bind or fetch"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = ad\nmethod = fetch\n", 5,
         "[ldap a] method = fetch is not possible with type = ad"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = gc\nmethod = fetch\n", 5,
         "[ldap a] method = fetch is not possible with type = gc"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = domino\nmethod = fetch\n", 5,
         "[ldap a] method = fetch is not possible with type = domino: Domino never returns"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = novell\n", 4,
         "type = novell: expected generic, openldap, ad, gc or domino"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nfilter = (uid=%x)\n", 4,
         "filter = (uid=%x): unknown %-token"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nfilter = uid=%s\n", 4,
         "filter = uid=%s: a filter must start with '('"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nfilter = (uid=%s\n", 4,
         "filter = (uid=%s: unbalanced '('"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nfilter = (&(uid=%s)\n  (mail=%s))\n", 5,
         "indented line continues 'filter', which takes one value"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_dn = cn=svc,dc=x\n", 4,
         "[ldap a] bind_dn needs bind_password_file"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_password_file = pw\n", 4,
         "[ldap a] bind_password_file without bind_dn"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_dn = cn=s\nbind_password_file = pw\n"
         "dn_template = uid=%u,dc=x\n",
         6, "[ldap a] dn_template and bind_dn exclude each other"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nmethod = fetch\ndn_template = uid=%u,dc=x\n", 5,
         "[ldap a] dn_template cannot be used with method = fetch"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ndn_template = %u@x.test\n", 4,
         "[ldap a] dn_template = %u@x.test: not a DN template"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ngroup_filter = (member=%D)\n", 4,
         "[ldap a] group_filter needs group_dn"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ngroup_dn = cn=g,dc=x\ngroup_filter = (m=%Q)\n", 5,
         "group_filter = (m=%Q): unknown %-token"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntimeout = 0\n", 4,
         "timeout = 0: must be at least 1s"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nnetwork_timeout = 5 s\n", 4,
         "network_timeout = 5 s: not a duration"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nnetwork_timeout = 10m\n", 4,
         "network_timeout = 10m: must be at most 5m"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\npool_size = 1\n", 4,
         "[ldap a] pool_size = 1: method = bind needs at least 2 connections"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\npool_size = 257\n", 4,
         "pool_size = 257: must be at most 256"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nstarttls = maybe\n", 4,
         "starttls = maybe: expected yes or no"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nwhen_unavailable = ignore\n", 4,
         "when_unavailable = ignore: expected tempfail or trust_others"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nmail_attributes = mail, bad*attr\n", 4,
         "mail_attributes = bad*attr: not an attribute name"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\n[ldap b]\nbase = dc=y\n", 4,
         "[ldap b] uri is required"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\n[ldap A]\n", 4, "duplicate section [ldap A]"},
        /* Active Directory refuses anonymous searches. */
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = ad\n", 1,
         "[ldap a] type = ad needs bind_dn (a service account that searches) or dn_template"},
        {"[ldap a]\nuri = ldap://h\ntype = gc\n", 1, "[ldap a] type = gc needs bind_dn"},
        /* A UPN bind name is AD's alone. */
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_dn = svc@x.test\nbind_password_file = pw\n",
         4,
         "[ldap a] bind_dn = svc@x.test: a UPN or a down-level name, which only Active "
         "Directory"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_dn = X\\svc\nbind_password_file = pw\n", 4,
         "[ldap a] bind_dn = X\\svc: a UPN or a down-level name, which only Active Directory "
         "takes as a bind name: set type = ad (or gc)"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = ad\nbind_dn = just words\n"
         "bind_password_file = pw\n",
         5,
         "[ldap a] bind_dn = just words: not a valid DN (RFC 4514), a UPN (svc@corp.example) "
         "or a down-level"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbind_dn = just words\nbind_password_file = pw\n",
         4, "[ldap a] bind_dn = just words: not a valid DN (RFC 4514)\n"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntls_name = dc1.x.test\n", 4,
         "[ldap a] tls_name: there is no TLS to check a name for"},
        {"[ldap a]\nuri = ldaps://h\nbase = dc=x\ntls_name = dc1 x\n", 4,
         "tls_name = dc1 x: not a host name or an address"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nnetbios_domain = CORP\n", 4,
         "[ldap a] netbios_domain: only Active Directory has one"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\ntype = ad\ndn_template = %u@x.test\n"
         "netbios_domain = MUCH-TOO-LONG-NAME\n",
         6, "netbios_domain = MUCH-TOO-LONG-NAME: not a NetBIOS domain name"},
        {"[ldap a]\nuri = ldap://h\nbase = dc=x\nbase = dc=y\n", 4, "base is already set at line"},
};

/* Each case fails config_load() with its message on its line (the files a
 * section names, ca_file and bind_password_file, are opened by check-config
 * as the auth process's user: test_ldap.py). */
static void
test_errors(void **state)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/authrelay.conf", dir);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		char text[2048];

		snprintf(text, sizeof(text), "%s%s", BASE, c->section);
		ut_conf_refused(path, text, BASE_LINES + c->line, c->text);
	}
}

/* AD's bind names, tls_name, netbios_domain, and a Global Catalog's
 * defaults: ports 3268/3269 where the URI has none, base "" (the forest). */
static void
test_active_directory(void **state)
{
	char *path, *errors = NULL, *out = NULL;
	size_t len = 0;
	/* A hostname with a dot: the alerts' worked-out From: must load back. */
	struct config *cfg = load(BASE "[server]\nhostname = mx.test.example\n"
	                               "[ldap upn]\n"
	                               "uri = ldaps://10.0.0.1\n"
	                               "tls_name = dc1.corp.test\n"
	                               "type = ad\n"
	                               "base = DC=corp,DC=test\n"
	                               "bind_dn = svc-smtp@corp.test\n"
	                               "bind_password_file = pw\n"
	                               "netbios_domain = CORP\n"
	                               "[ldap downlevel]\n"
	                               "uri = ldap://dc1.corp.test\n"
	                               "starttls = yes\n"
	                               "type = ad\n"
	                               "base = DC=corp,DC=test\n"
	                               "bind_dn = CORP\\svc-smtp\n"
	                               "bind_password_file = pw\n"
	                               "[ldap gc]\n"
	                               "uri = ldap://gc.corp.test ldaps://gc.corp.test "
	                               "ldap://gc2.corp.test:1234 ldap://[::1]\n"
	                               "type = gc\n"
	                               "bind_dn = CN=svc,DC=corp,DC=test\n"
	                               "bind_password_file = pw\n"
	                               "[ldap tmpl]\n"
	                               "uri = ldaps://dc1.corp.test\n"
	                               "type = ad\n"
	                               "base = DC=corp,DC=test\n"
	                               "dn_template = CORP\\%u\n",
	                          &path);
	size_t n = 0;
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);
	struct settings_set *set;
	FILE *f;

	assert_int_equal(n, 4);
	assert_string_equal(d[0].bind_dn, "svc-smtp@corp.test");
	assert_string_equal(d[0].tls_name, "dc1.corp.test");
	assert_string_equal(d[0].netbios_domain, "CORP");
	assert_string_equal(d[1].bind_dn, "CORP\\svc-smtp");
	assert_null(d[1].tls_name);
	assert_null(d[1].netbios_domain);
	assert_int_equal(d[2].type, LDAP_TYPE_GC);
	assert_string_equal(d[2].base, "");
	assert_int_equal(d[2].n_uris, 4);
	assert_string_equal(d[2].uris[0], "ldap://gc.corp.test:3268");
	assert_string_equal(d[2].uris[1], "ldaps://gc.corp.test:3269");
	assert_string_equal(d[2].uris[2], "ldap://gc2.corp.test:1234");
	assert_string_equal(d[2].uris[3], "ldap://[::1]:3268");
	assert_non_null(strstr(d[2].filter, "sAMAccountName=%s"));
	assert_true(d[3].upn_bind);
	ldap_config_free(d, n);
	config_free(cfg);

	/* show-config: the Global Catalog's ports and base as in effect; the
	 * output loads back to the same. */
	set = settings_registry_load(path, &errors);
	if (set == NULL)
		fail_msg("%s", errors);
	f = open_memstream(&out, &len);
	settings_registry_show(f, set, false);
	fclose(f);
	settings_registry_free(set);
	assert_non_null(strstr(out, "[ldap gc]\nuri = ldap://gc.corp.test:3268, "
	                            "ldaps://gc.corp.test:3269, ldap://gc2.corp.test:1234, "
	                            "ldap://[::1]:3268\n"));
	assert_non_null(strstr(out, "\nbase =\nscope = sub\n"));
	free(path);
	cfg = try_load(out, &path, &errors);
	if (cfg == NULL)
		fail_msg("%s\nin:\n%s", errors, out);
	d = dirs_of(cfg, &n);
	assert_string_equal(d[2].base, "");
	assert_string_equal(d[2].uris[3], "ldap://[::1]:3268");
	ldap_config_free(d, n);
	config_free(cfg);
	free(out);
	free(path);
}

/* A bind_dn refused as such is not reported missing a second time. */
static void
test_one_error_for_a_bad_bind_dn(void **state)
{
	char *path, *errors = NULL;
	struct config *cfg = try_load(BASE "[ldap a]\nuri = ldap://h\nbase = dc=x\n"
	                                   "bind_dn = svc@x.test\nbind_password_file = pw\n",
	                              &path, &errors);

	assert_null(cfg);
	assert_non_null(strstr(errors, "bind_dn = svc@x.test: "));
	assert_null(strstr(errors, "bind_password_file without bind_dn"));
	/* One error (the warning for ldap:// aside). */
	size_t n_errors = 0;
	for (const char *l = errors; *l != '\0'; l = strchr(l, '\n') + 1)
		n_errors += strstr(l, ": warning: ") == NULL ||
		            strstr(l, ": warning: ") > strchr(l, '\n');
	assert_int_equal(n_errors, 1);
	free(errors);
	free(path);
}

/* Files are not opened when the file loads: a missing one is
 * check-config's to report, as the user who will read it. */
static void
test_files_not_opened(void **state)
{
	char *path, want[512];
	struct config *cfg = load(BASE "[ldap a]\nuri = ldaps://h\nbase = dc=x\n"
	                               "bind_dn = cn=s\nbind_password_file = nope\n"
	                               "ca_file = missing.pem\n",
	                          &path);
	size_t n = 0;
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);

	snprintf(want, sizeof(want), "%s/nope", dir);
	assert_string_equal(d[0].bind_password_file, want);
	snprintf(want, sizeof(want), "%s/missing.pem", dir);
	assert_string_equal(d[0].ca_file, want);
	ldap_config_free(d, n);
	config_free(cfg);
	free(path);
}

/* Every key written, and what -n prints of it. */
static void
test_every_key(void **state)
{
	char *path, *errors = NULL, *out = NULL;
	size_t len = 0;
	struct config *cfg = load(BASE "[auth]\nrequest_timeout = 1m\n"
	                               "[ldap corp]\n"
	                               "uri = ldap://a.test\n"
	                               "    ldap://b.test:3389\n"
	                               "starttls = yes\n"
	                               "ca_file = /etc/ssl/ca.pem\n"
	                               "tls_verify = yes\n"
	                               "bind_dn = cn=svc,dc=corp,dc=test\n"
	                               "bind_password_file = pw\n"
	                               "base = dc=corp,dc=test\n"
	                               "scope = ONE\n"
	                               "filter = (uid=%u)\n"
	                               "mail_attributes = mail mailAlternateAddress\n"
	                               "method = fetch\n"
	                               "password_attribute = userPassword;binary\n"
	                               "group_dn = cn=mail,dc=corp,dc=test\n"
	                               "group_filter = (member=%D)\n"
	                               "type = openldap\n"
	                               "network_timeout = 2\n"
	                               "timeout = 10s\n"
	                               "pool_size = 8\n",
	                          &path);
	size_t n = 0;
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);
	struct settings_set *set;
	FILE *f;

	assert_int_equal(n, 1);
	assert_int_equal(d[0].n_uris, 2);
	assert_string_equal(d[0].uris[1], "ldap://b.test:3389");
	assert_true(d[0].starttls);
	assert_string_equal(d[0].ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(d[0].bind_dn, "cn=svc,dc=corp,dc=test");
	assert_int_equal(d[0].scope, LDAP_CFG_SCOPE_ONE);
	assert_string_equal(d[0].filter, "(uid=%u)");
	assert_int_equal(d[0].n_mail_attributes, 2);
	assert_string_equal(d[0].mail_attributes[1], "mailAlternateAddress");
	assert_int_equal(d[0].method, LDAP_METHOD_FETCH);
	assert_string_equal(d[0].password_attribute, "userPassword;binary");
	assert_string_equal(d[0].group_filter, "(member=%D)");
	assert_int_equal(d[0].type, LDAP_TYPE_OPENLDAP);
	assert_int_equal(d[0].network_timeout, 2);
	assert_int_equal(d[0].timeout, 10);
	assert_int_equal(d[0].pool_size, 8);
	assert_null(cfg->warnings);
	ldap_config_free(d, n);
	config_free(cfg);

	set = settings_registry_load(path, &errors);
	if (set == NULL)
		fail_msg("%s", errors);
	f = open_memstream(&out, &len);
	settings_registry_show(f, set, true);
	fclose(f);
	assert_non_null(strstr(out, "\n[ldap corp]\n"
	                            "uri = ldap://a.test, ldap://b.test:3389\n"
	                            "starttls = yes\n"
	                            "ca_file = /etc/ssl/ca.pem\n"
	                            "bind_dn = cn=svc,dc=corp,dc=test\n"));
	assert_non_null(strstr(out, "\nscope = one\nfilter = (uid=%u)\n"
	                            "mail_attributes = mail, mailAlternateAddress\n"
	                            "method = fetch\n"
	                            "password_attribute = userPassword;binary\n"
	                            "group_dn = cn=mail,dc=corp,dc=test\n"
	                            "group_filter = (member=%D)\n"
	                            "type = openldap\n"
	                            "network_timeout = 2s\n"
	                            "timeout = 10s\n"
	                            "pool_size = 8\n\n"));
	assert_null(strstr(out, "tls_verify")); /* written, but the default */
	free(out);
	settings_registry_free(set);
	free(path);
}

static void
test_warnings(void **state)
{
	char *path, want[2048];
	struct config *cfg = load(BASE "[auth]\nrequest_timeout = 15\n"
	                               "[ldap a]\n"
	                               "uri = ldap://dir.test ldap://127.0.0.1 ldaps://dir.test\n"
	                               "base = dc=x\n"
	                               "tls_verify = no\n"
	                               "timeout = 5\n",
	                          &path);

	snprintf(want, sizeof(want),
	         "%s:%d: warning: [ldap a] uri: 'ldap://dir.test' without starttls sends "
	         "passwords in clear; use ldaps:// or starttls = yes\n"
	         "%s:%d: warning: [ldap a] tls_verify = no: the directory's certificate is not "
	         "checked, anyone on the path can read the passwords\n"
	         "%s:%d: warning: [ldap a] timeout: a login takes up to 3 operations (search, "
	         "bind, group check); 3 x 5 s is not below [auth] request_timeout = 15 s, so "
	         "workers may give up first\n",
	         path, BASE_LINES + 4, path, BASE_LINES + 6, path, BASE_LINES + 7);
	assert_non_null(cfg->warnings);
	assert_string_equal(cfg->warnings, want);
	config_free(cfg);
	free(path);
}

static void
test_password_file(void **state)
{
	char *path, *pw;
	const char *err = NULL;
	size_t n = 0;
	struct config *cfg = load(BASE "[ldap a]\nuri = ldap://h\nbase = dc=x\n"
	                               "bind_dn = cn=svc,dc=x\nbind_password_file = pw\n"
	                               "[ldap b]\nuri = ldap://h\nbase = dc=x\n"
	                               "bind_dn = cn=svc,dc=x\nbind_password_file = empty-pw\n",
	                          &path);
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);

	pw = ldap_config_read_password(&d[0], &err);
	assert_non_null(pw);
	assert_string_equal(pw, "s3cret");
	free_secret(pw);
	/* An empty password would be an unauthenticated bind. */
	assert_null(ldap_config_read_password(&d[1], &err));
	assert_non_null(strstr(err, "the first line is empty"));
	ldap_config_free(d, n);
	config_free(cfg);
	free(path);
}

/* ---- the pool against nothing ---- */

struct got {
	int calls;
	int rc;
	bool returned; /* the asking call had returned when cb ran */
	struct event_base *base;
};

static void
on_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct got *g = arg;

	g->calls++;
	g->rc = rc;
	assert_null(conn);
	assert_non_null(error);
	assert_true(g->returned);
	event_base_loopbreak(g->base);
}

static void
test_pool_unreachable(void **state)
{
	char *path;
	size_t n = 0;
	/* Port 1 on loopback: connection refused at once. */
	struct config *cfg = load(BASE "[ldap a]\nuri = ldap://127.0.0.1:1/ ldap://127.0.0.1:2/\n"
	                               "base = dc=x\nnetwork_timeout = 1\ntimeout = 2\n",
	                          &path);
	struct ldap_dir_cfg *d = dirs_of(cfg, &n);
	struct event_base *base = event_base_new();
	struct ldap_conn_pool *pool;
	struct got g = {.base = base};

	assert_non_null(d);
	pool = ldap_conn_pool_new(base, &d[0], NULL);
	ldap_conn_acquire(pool, LDAP_CONN_SEARCH, on_conn, &g);
	g.returned = true;
	assert_int_equal(g.calls, 0);
	event_base_dispatch(base);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.rc, LDAP_SERVER_DOWN);

	/* Now in back-off: the next one fails without a new attempt, still
	 * never inside the call. */
	g.returned = false;
	ldap_conn_acquire(pool, LDAP_CONN_BIND, on_conn, &g);
	g.returned = true;
	assert_int_equal(g.calls, 1);
	event_base_dispatch(base);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.rc, LDAP_SERVER_DOWN);

	/* Freed with a waiter pending: no callback, no leak (ASan). */
	ldap_conn_acquire(pool, LDAP_CONN_SEARCH, on_conn, &g);
	ldap_conn_pool_free(pool);
	assert_int_equal(g.calls, 2);
	event_base_free(base);
	ldap_config_free(d, n);
	config_free(cfg);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_files_not_opened),
	        cmocka_unit_test(test_every_key),
	        cmocka_unit_test(test_warnings),
	        cmocka_unit_test(test_active_directory),
	        cmocka_unit_test(test_one_error_for_a_bad_bind_dn),
	        cmocka_unit_test(test_password_file),
	        cmocka_unit_test(test_pool_unreachable),
	};
	settings_registry_install(); /* every section kind for config_load() */
	return cmocka_run_group_tests(tests, setup, teardown);
}
