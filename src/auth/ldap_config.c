/* SPDX-License-Identifier: ISC */
/*
 * ldap_config.c - the [ldap NAME] sections (ldap_config.h): their table, the
 * defaults of each directory type, and the rules between keys, each problem
 * as "file:line: message" through the settings engine, so
 * "authrelay check-config" shows them all at once.
 *
 * Rules beyond single keys:
 *   - uri and base are required;
 *   - method = fetch is refused for type = ad, gc and domino: those
 *     directories never hand out password hashes (product spec 5.1);
 *   - dn_template replaces the search, so it excludes bind_dn (nothing to
 *     search with) and method = fetch (nothing to fetch with);
 *   - with type = ad or gc, a dn_template without '=' is a UPN or a
 *     down-level name ("%u@corp.example.com", "CORP\%u"): AD accepts it as
 *     the bind name;
 *   - bind_dn and bind_password_file go together;
 *   - group_filter needs group_dn (the entry it is evaluated on);
 *   - method = bind with a search needs pool_size >= 2: searches and user
 *     binds never share a connection (RFC 4511 4.2.1: a bind must not share
 *     the connection with other operations in flight);
 *   - starttls on an ldaps:// or ldapi:// URI makes no sense and is refused;
 *   - type = ad and gc need bind_dn or dn_template: Active Directory
 *     refuses anonymous searches ("Operation unavailable without
 *     authentication"), so without either every login would get 454;
 *   - with type = ad or gc, bind_dn may be a UPN or a down-level name
 *     (ldap_ad.h), as AD's simple bind takes them; otherwise it is a DN;
 *   - type = gc: URIs without a port get the Global Catalog's (3268, and
 *     3269 for ldaps://), and base defaults to "" (the whole forest);
 *   - tls_name needs TLS (an ldaps:// URI or starttls);
 *   - netbios_domain is Active Directory's alone.
 * Warnings: passwords over ldap:// without starttls (but to loopback),
 * tls_verify = no, and a timeout the worker would not wait for.
 */
#include "ldap_config.h"
#include "ldap_ad.h"
#include "ldap_filter.h"
#include "../lib/log.h"
#include "../lib/settings.h"

#include <errno.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LDAP_MAX_SECONDS 300
#define LDAP_MAX_POOL_SIZE 256
#define LDAP_GC_PORT "3268"
#define LDAP_GC_TLS_PORT "3269"

/* RFC 4515 filters per type: the login must equal an account name or a
 * mail address; AD also skips disabled accounts (userAccountControl bit 2,
 * through the bitwise-AND matching rule). */
#define LDAP_FILTER_DEFAULT "(&(objectClass=person)(|(uid=%s)(mail=%s)))"
#define LDAP_FILTER_AD                                                                             \
	"(&(objectClass=user)(objectCategory=person)"                                              \
	"(|(sAMAccountName=%s)(userPrincipalName=%s)(mail=%s))"                                    \
	"(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
#define LDAP_GROUP_FILTER_DEFAULT "(|(member=%D)(uniqueMember=%D))"
/* LDAP_MATCHING_RULE_IN_CHAIN: nested groups, evaluated by AD itself. */
#define LDAP_GROUP_FILTER_AD "(member:1.2.840.113556.1.4.1941:=%D)"

static const struct settings_name type_names[] = {
        {"generic", LDAP_TYPE_GENERIC, false}, {"openldap", LDAP_TYPE_OPENLDAP, false},
        {"ad", LDAP_TYPE_AD, false},           {"gc", LDAP_TYPE_GC, false},
        {"domino", LDAP_TYPE_DOMINO, false},   {0},
};

static const struct settings_name scope_names[] = {
        {"sub", LDAP_CFG_SCOPE_SUB, false},
        {"one", LDAP_CFG_SCOPE_ONE, false},
        {"base", LDAP_CFG_SCOPE_BASE, false},
        {0},
};

static const struct settings_name method_names[] = {
        {"bind", LDAP_METHOD_BIND, false},
        {"fetch", LDAP_METHOD_FETCH, false},
        {0},
};

static const struct settings_name when_unavailable_names[] = {
        {"tempfail", LDAP_WHEN_UNAVAILABLE_TEMPFAIL, false},
        {"trust_others", LDAP_WHEN_UNAVAILABLE_TRUST_OTHERS, false},
        {0},
};

static char password_error[512];

/* ---- value checks ---- */

static const char *
check_uri(char *v)
{
	LDAPURLDesc *lud = NULL;
	const char *why = NULL;

	if (ldap_url_parse(v, &lud) != LDAP_URL_SUCCESS)
		return "not an LDAP URL (ldap://host[:port], ldaps://host[:port] or ldapi://)";
	if (strcmp(lud->lud_scheme, "ldap") != 0 && strcmp(lud->lud_scheme, "ldaps") != 0 &&
	    strcmp(lud->lud_scheme, "ldapi") != 0)
		why = "the scheme must be ldap, ldaps or ldapi";
	ldap_free_urldesc(lud);
	return why;
}

static const char *
check_dn(char *v)
{
	LDAPDN parsed = NULL;
	int rc = ldap_str2dn(v, &parsed, LDAP_DN_FORMAT_LDAPV3);

	ldap_dnfree(parsed);
	return rc == LDAP_SUCCESS ? NULL : "not a valid DN (RFC 4514)";
}

/* RFC 4512 1.4: an attribute description is a descr or a numericoid,
 * with options after ';'. */
static const char *
check_attr(char *a)
{
	for (const char *p = a; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == ';'))
			return "not an attribute name";
	}
	return NULL;
}

/* tls_name: a host name or an address, as a certificate carries them. */
static const char *
check_tls_name(char *v)
{
	bool ok = strlen(v) <= 253;

	for (const char *p = v; ok && *p != '\0'; p++) {
		char c = *p;
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '-' || c == '.' || c == ':';
	}
	return ok ? NULL
	          : "not a host name or an address (the name the directory's certificate "
	            "carries, e.g. dc1.corp.example)";
}

static const char *
check_netbios(char *v)
{
	static char why[128];

	if (ldap_ad_netbios_ok(v))
		return NULL;
	snprintf(why, sizeof(why),
	         "not a NetBIOS domain name (1 to %d characters, no blank and none of "
	         "\\/:*?\"<>|,)",
	         LDAP_AD_NETBIOS_MAX);
	return why;
}

static const char *
check_template(const char *v, const char *tokens, bool is_filter)
{
	const char *err = NULL;

	return ldap_filter_check_template(v, tokens, is_filter, &err) < 0 ? err : NULL;
}

static const char *
check_filter(char *v)
{
	return check_template(v, "sud", true);
}

static const char *
check_group_filter(char *v)
{
	return check_template(v, "sudD", true);
}

static const char *
check_dn_template(char *v)
{
	return check_template(v, "sud", false);
}

/* ---- the table ---- */

#define D(f) SETTINGS_FIELD(struct ldap_dir_cfg, f)

static const struct settings_key ldap_keys[] = {
        {"uri", SETTINGS_LIST, D(uris), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct ldap_dir_cfg, n_uris), .check = check_uri,
         .def_doc = "required", .type_doc = "list of LDAP URLs",
         .meaning = "ldap://host[:port], ldaps://host[:port] or ldapi://, tried in this order "
                    "for failover."},
        {"starttls", SETTINGS_BOOL, D(starttls), .def = "no",
         .meaning = "StartTLS on ldap:// URIs before anything else (RFC 4513 3)."},
        {"ca_file", SETTINGS_PATH, D(ca_file), .flags = SETTINGS_OPTIONAL,
         .def_doc = "the system's CAs",
         .meaning = "CA certificates the directory's certificate must chain to (read by "
                    "[server] auth_user)."},
        {"tls_verify", SETTINGS_BOOL, D(tls_verify), .def = "yes",
         .meaning = "Check the directory's certificate and host name."},
        {"tls_name", SETTINGS_STRING, D(tls_name), .flags = SETTINGS_OPTIONAL,
         .check = check_tls_name, .def_doc = "the URI's host", .type_doc = "host name",
         .meaning = "The name the directory's certificate must carry (a DC reached by "
                    "address)."},
        {"bind_dn", SETTINGS_STRING, D(bind_dn), .flags = SETTINGS_OPTIONAL,
         .type_doc = "DN (AD: or UPN, DOMAIN\\user)",
         .meaning = "The service account that searches; none: anonymous searches, or "
                    "dn_template."},
        {"bind_password_file", SETTINGS_PATH, D(bind_password_file), .flags = SETTINGS_OPTIONAL,
         .meaning = "The service account's password: the file's first line (read by [server] "
                    "auth_user)."},
        {"base", SETTINGS_STRING, D(base), .flags = SETTINGS_OPTIONAL, .check = check_dn,
         .def_doc = "required; type = gc: the whole forest", .type_doc = "DN",
         .meaning = "Where users are searched."},
        {"scope", SETTINGS_ENUM, D(scope), .def = "sub", .names = scope_names,
         .meaning = "Search scope under base."},
        {"filter", SETTINGS_STRING, D(filter), .check = check_filter,
         .def_doc = "by type (README.md)", .type_doc = "filter template",
         .meaning = "The user query (RFC 4515); %s the login, %u its local part, %d its "
                    "domain, each escaped."},
        {"mail_attributes", SETTINGS_LIST, D(mail_attributes), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct ldap_dir_cfg, n_mail_attributes), .check = check_attr,
         .def = "mail", .type_doc = "list of attributes",
         .meaning = "The attributes holding the user's own addresses (sender policy)."},
        {"method", SETTINGS_ENUM, D(method), .def = "bind", .names = method_names,
         .meaning = "bind: as the user's DN with the password; fetch: read password_attribute "
                    "and compare."},
        {"password_attribute", SETTINGS_STRING, D(password_attribute), .check = check_attr,
         .def = "userPassword", .type_doc = "attribute",
         .meaning = "For method = fetch: where the password hash is."},
        {"group_dn", SETTINGS_STRING, D(group_dn), .flags = SETTINGS_OPTIONAL, .check = check_dn,
         .type_doc = "DN",
         .meaning = "Group gate: this entry must match group_filter, else the login fails."},
        {"group_filter", SETTINGS_STRING, D(group_filter), .check = check_group_filter,
         .def_doc = "by type (README.md), with group_dn", .type_doc = "filter template",
         .meaning = "Evaluated on group_dn; %D the user's DN, and %s %u %d."},
        {"dn_template", SETTINGS_STRING, D(dn_template), .flags = SETTINGS_OPTIONAL,
         .check = check_dn_template, .type_doc = "DN template",
         .meaning = "Bind as this DN (or, with type = ad or gc, this UPN or DOMAIN\\%u) "
                    "instead of searching; %s %u %d."},
        {"type", SETTINGS_ENUM, D(type), .def = "generic", .names = type_names,
         .meaning = "Picks the default filters; ad, gc and domino refuse method = fetch."},
        {"netbios_domain", SETTINGS_STRING, D(netbios_domain), .flags = SETTINGS_OPTIONAL,
         .check = check_netbios, .def_doc = "read from the directory", .type_doc = "NetBIOS name",
         .meaning = "Active Directory: the CORP of CORP\\ann logins."},
        {"network_timeout", SETTINGS_DURATION, D(network_timeout), .def = "5", .min = 1,
         .max = LDAP_MAX_SECONDS, .meaning = "Connect timeout per URI."},
        {"timeout", SETTINGS_DURATION, D(timeout), .def = "5", .min = 1, .max = LDAP_MAX_SECONDS,
         .meaning = "Each step: a connection, a search, a bind, the group check."},
        {"pool_size", SETTINGS_UINT, D(pool_size), .def = "4", .min = 1, .max = LDAP_MAX_POOL_SIZE,
         .meaning = "Most connections to this directory; method = bind with a search needs "
                    "2."},
        {"when_unavailable", SETTINGS_ENUM, D(when_unavailable), .def = "tempfail",
         .names = when_unavailable_names,
         .meaning = "While this directory cannot answer, a user found only elsewhere gets "
                    "tempfail (454: the uniqueness rule cannot be checked) or, weaker, "
                    "trust_others (that directory's verdict)."},
};

static const struct settings_section ldap_section = {
        .kind = "ldap",
        .named = true,
        .meaning = "An LDAP directory, asked after the users file.",
        .keys = ldap_keys,
        .n_keys = AR_NELEM(ldap_keys),
};

static const struct settings_section *const sections[] = {&ldap_section};

static void
ldap_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	size_t n = 0;
	/* Apart: the order in which arguments are evaluated is unspecified. */
	struct ldap_dir_cfg *dirs = ldap_config_parse(cfg, &n, ctx);

	ldap_config_free(dirs, n);
}

const struct config_module ldap_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = ldap_config_check,
};

/* ---- the rules between keys ---- */

/* One section being checked: where its keys are. */
struct dir_state {
	struct settings_ctx *ctx;
	const struct config *cfg;
	const struct config_section *sec;
	struct ldap_dir_cfg *d;
	int lines[AR_NELEM(ldap_keys)];
};

/* The line key was written on (negative: its value was refused), 0 when it
 * was not. */
static int
written(const struct dir_state *st, const char *key)
{
	return st->lines[settings_key_index(&ldap_section, key)];
}

/* Where a message about key goes: its line, or the section's. */
static int
where(const struct dir_state *st, const char *key)
{
	int line = abs(written(st, key));

	return line != 0 ? line : st->sec->line;
}

static void AR_PRINTF(3, 4) dir_error(struct dir_state *st, const char *key, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	settings_error(st->ctx, key != NULL ? where(st, key) : st->sec->line, "[ldap %s] %s",
	               st->d->name, msg);
}

static void AR_PRINTF(3, 4) dir_warning(struct dir_state *st, const char *key, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	settings_warning(st->ctx, key != NULL ? where(st, key) : st->sec->line, "[ldap %s] %s",
	                 st->d->name, msg);
}

static bool
loopback_uri(const LDAPURLDesc *lud)
{
	return strcmp(lud->lud_scheme, "ldapi") == 0 ||
	       (lud->lud_host != NULL &&
	        (strcmp(lud->lud_host, "127.0.0.1") == 0 || strcmp(lud->lud_host, "::1") == 0 ||
	         strcmp(lud->lud_host, "localhost") == 0));
}

/* uri with the default port put in when it has none (type = gc). */
static char *
uri_with_port(const char *uri, const char *port)
{
	const char *hp = strstr(uri, "://"), *end, *colon;
	char *out;
	size_t hlen;

	if (hp == NULL)
		return xstrdup(uri);
	hp += 3;
	hlen = strcspn(hp, "/?");
	end = hp + hlen;
	if (hlen == 0)
		return xstrdup(uri); /* no host: libldap's default, left alone */
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', hlen);
		colon = rb != NULL && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(hp, ':', hlen);
	}
	if (colon != NULL)
		return xstrdup(uri);
	if (asprintf(&out, "%.*s:%s%s", (int)(end - uri), uri, port, end) < 0)
		fatal("out of memory");
	return out;
}

static void
check_uris(struct dir_state *st)
{
	struct ldap_dir_cfg *d = st->d;
	bool secrets_travel = d->bind_dn != NULL || d->method == LDAP_METHOD_BIND;
	bool any_ldaps = false;

	if (d->n_uris == 0) {
		if (written(st, "uri") >= 0)
			dir_error(st, NULL,
			          "uri is required (ldap://host[:port] or ldaps://host[:port], "
			          "several for failover)");
		return;
	}
	for (size_t i = 0; i < d->n_uris; i++) {
		LDAPURLDesc *lud = NULL;
		if (d->type == LDAP_TYPE_GC) {
			bool tls = strncmp(d->uris[i], "ldaps:", 6) == 0;
			char *u = uri_with_port(d->uris[i], tls ? LDAP_GC_TLS_PORT : LDAP_GC_PORT);
			free(d->uris[i]);
			d->uris[i] = u;
		}
		if (ldap_url_parse(d->uris[i], &lud) != LDAP_URL_SUCCESS)
			continue; /* refused by check_uri() */
		any_ldaps |= strcmp(lud->lud_scheme, "ldaps") == 0;
		if (strcmp(lud->lud_scheme, "ldap") != 0) {
			if (d->starttls)
				dir_error(
				        st, "uri",
				        "starttls = yes needs ldap:// URIs, not '%s' (ldaps:// is "
				        "TLS from the first byte, ldapi:// a local socket)",
				        d->uris[i]);
		} else if (!d->starttls && secrets_travel && !loopback_uri(lud)) {
			dir_warning(
			        st, "uri",
			        "uri: '%s' without starttls sends passwords in clear; use ldaps:// "
			        "or starttls = yes",
			        d->uris[i]);
		}
		ldap_free_urldesc(lud);
	}
	if (d->tls_name != NULL && !d->starttls && !any_ldaps)
		dir_error(st, "tls_name",
		          "tls_name: there is no TLS to check a name for: use ldaps:// URIs or "
		          "starttls = yes");
}

/* bind_dn: a DN, or with Active Directory also a UPN or a down-level name
 * (AD's simple bind takes all three). A refused one stays "written", so
 * no second error says it is missing. */
static void
check_bind_dn(struct dir_state *st, bool is_ad)
{
	struct ldap_dir_cfg *d = st->d;

	if (d->bind_dn == NULL || check_dn(d->bind_dn) == NULL)
		return;
	if (!ldap_ad_bind_name_ok(d->bind_dn))
		dir_error(st, "bind_dn", "bind_dn = %s: not a valid DN (RFC 4514)%s", d->bind_dn,
		          is_ad ? ", a UPN (svc@corp.example) or a down-level name (CORP\\svc)"
		                : "");
	else if (!is_ad)
		dir_error(st, "bind_dn",
		          "bind_dn = %s: a UPN or a down-level name, which only Active Directory "
		          "takes as a bind name: set type = ad (or gc), or give the account's DN",
		          d->bind_dn);
	else
		return;
	free(d->bind_dn);
	d->bind_dn = NULL;
}

static void
check_dir(struct dir_state *st)
{
	struct ldap_dir_cfg *d = st->d;
	bool is_ad = d->type == LDAP_TYPE_AD || d->type == LDAP_TYPE_GC;

	if (d->method == LDAP_METHOD_FETCH && (is_ad || d->type == LDAP_TYPE_DOMINO))
		dir_error(st, "method",
		          "method = fetch is not possible with type = %s: %s never returns "
		          "password hashes; use method = bind",
		          ldap_config_type_name(d->type),
		          d->type == LDAP_TYPE_DOMINO ? "Domino" : "Active Directory");
	if (!d->tls_verify)
		dir_warning(st, "tls_verify",
		            "tls_verify = no: the directory's certificate is not checked, anyone "
		            "on the path can read the passwords");
	check_bind_dn(st, is_ad);
	if (d->bind_password_file != NULL && written(st, "bind_dn") == 0)
		dir_error(st, "bind_password_file", "bind_password_file without bind_dn");
	else if (d->bind_dn != NULL && written(st, "bind_password_file") == 0)
		dir_error(
		        st, "bind_dn",
		        "bind_dn needs bind_password_file (a file only the auth process can read)");
	if (d->base == NULL && written(st, "base") >= 0) {
		if (d->type == LDAP_TYPE_GC)
			d->base = xstrdup(""); /* the whole forest */
		else
			dir_error(st, NULL, "base is required");
	}
	if (d->filter == NULL && written(st, "filter") == 0)
		d->filter = xstrdup(is_ad ? LDAP_FILTER_AD : LDAP_FILTER_DEFAULT);
	/* Only with a group: shown, a default would then need a group_dn. */
	if (d->group_filter == NULL && written(st, "group_filter") == 0 && d->group_dn != NULL)
		d->group_filter = xstrdup(is_ad ? LDAP_GROUP_FILTER_AD : LDAP_GROUP_FILTER_DEFAULT);
	if (written(st, "group_filter") != 0 && written(st, "group_dn") == 0)
		dir_error(st, "group_filter",
		          "group_filter needs group_dn (the group entry it is evaluated on)");
	if (d->dn_template != NULL) {
		d->upn_bind = is_ad && strchr(d->dn_template, '=') == NULL;
		if (!d->upn_bind && strchr(d->dn_template, '=') == NULL)
			dir_error(st, "dn_template",
			          "dn_template = %s: not a DN template (a UPN like %%u@example.com "
			          "or CORP\\%%u needs type = ad)",
			          d->dn_template);
	}
	if (written(st, "dn_template") != 0) {
		if (written(st, "bind_dn") != 0)
			dir_error(st, "dn_template",
			          "dn_template and bind_dn exclude each other: with a template "
			          "there is no search for a service account to run");
		if (d->method == LDAP_METHOD_FETCH)
			dir_error(st, "dn_template",
			          "dn_template cannot be used with method = fetch (there is no "
			          "search to fetch the password with)");
	}
	if (is_ad && written(st, "bind_dn") == 0 && written(st, "dn_template") == 0)
		dir_error(st, NULL,
		          "type = %s needs bind_dn (a service account that searches) or "
		          "dn_template (bind as the user): Active Directory refuses anonymous "
		          "searches, every login would fail with \"Operation unavailable without "
		          "authentication\"",
		          ldap_config_type_name(d->type));
	if (written(st, "netbios_domain") != 0 && !is_ad)
		dir_error(st, "netbios_domain",
		          "netbios_domain: only Active Directory has one (type = ad or gc)");
	if (d->method == LDAP_METHOD_BIND && d->dn_template == NULL && d->pool_size < 2)
		dir_error(st, "pool_size",
		          "pool_size = %u: method = bind needs at least 2 connections (searches "
		          "and user binds never share one)",
		          d->pool_size);
	if (st->cfg->auth_request_timeout > 0 && 3 * d->timeout >= st->cfg->auth_request_timeout)
		dir_warning(st, "timeout",
		            "timeout: a login takes up to 3 operations (search, bind, group "
		            "check); 3 x %u s is not below [auth] request_timeout = %u s, so "
		            "workers may give up first",
		            d->timeout, st->cfg->auth_request_timeout);
	check_uris(st);
}

/* ---- parsing ---- */

struct ldap_dir_cfg *
ldap_config_parse(const struct config *cfg, size_t *n_r, struct settings_ctx *ctx)
{
	const struct config_section *sec = NULL;
	struct ldap_dir_cfg *dirs = NULL;
	size_t n = 0;

	while ((sec = config_section_next(cfg, "ldap", sec)) != NULL) {
		struct dir_state st = {.ctx = ctx, .cfg = cfg, .sec = sec};
		dirs = xrealloc(dirs, (n + 1) * sizeof(*dirs));
		st.d = &dirs[n++];
		memset(st.d, 0, sizeof(*st.d));
		st.d->name = xstrdup(sec->name != NULL ? sec->name : "");
		st.d->line = sec->line;
		settings_defaults(&ldap_section, st.d);
		settings_parse(ctx, &ldap_section, sec, st.d, st.lines);
		check_dir(&st);
	}
	*n_r = n;
	return dirs;
}

struct ldap_dir_cfg *
ldap_config_load(const struct config *cfg, size_t *n_r, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);
	struct ldap_dir_cfg *dirs = ldap_config_parse(cfg, n_r, ctx);

	*errors_r = NULL;
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		ldap_config_free(dirs, *n_r);
		dirs = NULL;
		*n_r = 0;
	}
	settings_ctx_free(ctx);
	return dirs;
}

void
ldap_config_free(struct ldap_dir_cfg *dirs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(dirs[i].name);
		settings_free(&ldap_section, &dirs[i]);
	}
	free(dirs);
}

char *
ldap_config_read_password(const struct ldap_dir_cfg *dir, const char **error_r)
{
	char buf[1024];
	size_t len;
	FILE *f;

	f = fopen(dir->bind_password_file, "re");
	if (f == NULL) {
		snprintf(password_error, sizeof(password_error),
		         "[ldap %s] bind_password_file = %s: %s", dir->name,
		         dir->bind_password_file, strerror(errno));
		*error_r = password_error;
		return NULL;
	}
	setvbuf(f, NULL, _IONBF, 0); /* no stdio copy of the secret */
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	if (len == 0) {
		explicit_bzero(buf, sizeof(buf));
		/* An empty password would be an unauthenticated bind (RFC 4513
		 * 5.1.2): the server would say yes and grant nothing. */
		snprintf(password_error, sizeof(password_error),
		         "[ldap %s] bind_password_file = %s: the first line is empty", dir->name,
		         dir->bind_password_file);
		*error_r = password_error;
		return NULL;
	}
	char *pw = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return pw;
}

static const char *
name_of(const struct settings_name *names, int value)
{
	for (; names->name != NULL; names++)
		if (!names->alias && names->value == value)
			return names->name;
	return "?";
}

const char *
ldap_config_type_name(enum ldap_dir_type t)
{
	return name_of(type_names, (int)t);
}

const char *
ldap_config_scope_name(enum ldap_scope_cfg s)
{
	return name_of(scope_names, (int)s);
}
