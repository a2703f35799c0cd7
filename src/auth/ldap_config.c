/*
 * ldap_config.c - parse and check the [ldap NAME] sections (ldap_config.h).
 *
 * config.c keeps these sections raw (struct config_section): this file turns
 * each into a struct ldap_dir_cfg, applies the defaults of the directory's
 * type, and reports every problem as "file:line: [ldap NAME] message", so
 * "authrelay check-config" shows them all at once.
 *
 * Rules beyond single keys:
 *   - method = fetch is refused for type = ad, gc and domino: those
 *     directories never hand out password hashes (product spec 5.1);
 *   - dn_template replaces the search, so it excludes bind_dn (nothing to
 *     search with) and method = fetch (nothing to fetch with);
 *   - with type = ad or gc, a dn_template without '=' is a UPN
 *     ("%u@corp.example.com"): AD accepts it as the bind name;
 *   - method = bind with a search needs pool_size >= 2: searches and user
 *     binds never share a connection (RFC 4511 4.2.1: a bind must not share
 *     the connection with other operations in flight);
 *   - starttls on an ldaps:// or ldapi:// URI makes no sense and is refused;
 *   - type = ad and gc need bind_dn or dn_template: Active Directory
 *     refuses anonymous searches ("Operation unavailable without
 *     authentication"), so without either every login would get 454;
 *   - with type = ad or gc, bind_dn may be a UPN or a down-level name
 *     (ldap_ad.h), as AD's simple bind takes them;
 *   - type = gc: URIs without a port get the Global Catalog's (3268, and
 *     3269 for ldaps://), and base defaults to "" (the whole forest);
 *   - tls_name needs TLS (an ldaps:// URI or starttls).
 */
#include "ldap_config.h"
#include "ldap_ad.h"
#include "ldap_filter.h"
#include "../lib/config.h"
#include "../lib/log.h"

#include <errno.h>
#include <grp.h>
#include <ldap.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LDAP_DEFAULT_NETWORK_TIMEOUT 5
#define LDAP_DEFAULT_TIMEOUT 5
#define LDAP_DEFAULT_POOL_SIZE 4
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

static const char *const known_keys[] = {
        "uri",
        "starttls",
        "ca_file",
        "tls_verify",
        "tls_name",
        "bind_dn",
        "bind_password_file",
        "base",
        "scope",
        "filter",
        "mail_attributes",
        "method",
        "password_attribute",
        "group_dn",
        "group_filter",
        "dn_template",
        "type",
        "netbios_domain",
        "network_timeout",
        "timeout",
        "pool_size",
};

static const char *const type_names[] = {
        [LDAP_TYPE_GENERIC] = "generic", [LDAP_TYPE_OPENLDAP] = "openldap", [LDAP_TYPE_AD] = "ad",
        [LDAP_TYPE_GC] = "gc",           [LDAP_TYPE_DOMINO] = "domino",
};

static const char *const scope_names[] = {
        [LDAP_CFG_SCOPE_BASE] = "base",
        [LDAP_CFG_SCOPE_ONE] = "one",
        [LDAP_CFG_SCOPE_SUB] = "sub",
};

struct parse_error {
	int line;
	unsigned seq; /* keeps the order of one line's errors */
	char *text;
};

struct parse_state {
	const struct config *cfg;
	const struct config_section *sec;
	struct parse_error *errors;
	unsigned n_errors;
	char *dir; /* the config file's directory, for relative paths */
};

static char password_error[512];

static void AR_PRINTF(3, 4) perr(struct parse_state *st, int line, const char *fmt, ...)
{
	char msg[1024];
	struct parse_error *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->errors = xrealloc(st->errors, (st->n_errors + 1) * sizeof(*st->errors));
	e = &st->errors[st->n_errors];
	e->line = line > 0 ? line : st->sec->line;
	e->seq = st->n_errors++;
	if (asprintf(&e->text, "%s:%d: [ldap %s] %s\n", st->cfg->path, e->line,
	             st->sec->name != NULL ? st->sec->name : "", msg) < 0)
		fatal("out of memory");
}

static int
error_cmp(const void *a, const void *b)
{
	const struct parse_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every error, in file order, as one string. */
static char *
errors_text(struct parse_state *st)
{
	size_t len = 0;
	char *out;

	qsort(st->errors, st->n_errors, sizeof(*st->errors), error_cmp);
	for (unsigned i = 0; i < st->n_errors; i++)
		len += strlen(st->errors[i].text);
	out = xmalloc(len + 1);
	out[0] = '\0';
	len = 0;
	for (unsigned i = 0; i < st->n_errors; i++) {
		size_t n = strlen(st->errors[i].text);
		memcpy(out + len, st->errors[i].text, n + 1);
		len += n;
		free(st->errors[i].text);
	}
	free(st->errors);
	return out;
}

static void AR_PRINTF(3, 4) pwarn(struct parse_state *st, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s:%d: [ldap %s] %s", st->cfg->path, line > 0 ? line : st->sec->line,
	         st->sec->name != NULL ? st->sec->name : "", msg);
}

static const char *
get(struct parse_state *st, const char *key, int *line_r)
{
	*line_r = 0;
	return config_section_get(st->sec, key, line_r);
}

static int
lookup(const char *value, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (names[i] != NULL && ascii_strcasecmp(value, names[i]) == 0)
			return (int)i;
	}
	return -1;
}

static bool
parse_bool(struct parse_state *st, const char *key, bool def)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	int line;
	const char *v = get(st, key, &line);

	if (v == NULL)
		return def;
	if (lookup(v, yes, AR_NELEM(yes)) >= 0)
		return true;
	if (lookup(v, no, AR_NELEM(no)) >= 0)
		return false;
	perr(st, line, "%s: expected yes or no, not '%s'", key, v);
	return def;
}

static unsigned
parse_uint(struct parse_state *st, const char *key, unsigned def, unsigned min, unsigned max)
{
	int line;
	const char *v = get(st, key, &line);
	unsigned long n = 0;
	const char *p;

	if (v == NULL)
		return def;
	for (p = v; *p >= '0' && *p <= '9' && n <= max; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (p == v || *p != '\0' || n < min || n > max) {
		perr(st, line, "%s: expected a whole number from %u to %u, not '%s'", key, min, max,
		     v);
		return def;
	}
	return (unsigned)n;
}

static char *
resolve_path(struct parse_state *st, const char *v)
{
	char *abs;

	if (v[0] == '/')
		return xstrdup(v);
	if (asprintf(&abs, "%s/%s", st->dir, v) < 0)
		fatal("out of memory");
	return abs;
}

/* Split a list at commas and blanks. */
static char **
split_list(const char *v, size_t *n_r)
{
	char **out = NULL;
	size_t n = 0;
	const char *p = v;

	while (*p != '\0') {
		size_t len;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		len = strcspn(p, ", \t");
		if (len == 0)
			break;
		out = xrealloc(out, (n + 2) * sizeof(*out));
		out[n++] = xstrndup(p, len);
		out[n] = NULL;
		p += len;
	}
	*n_r = n;
	return out;
}

static void
free_list(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

/* RFC 4512 1.4: an attribute description is a descr or a numericoid,
 * with options after ';'. */
static bool
valid_attr(const char *a)
{
	if (*a == '\0')
		return false;
	for (; *a != '\0'; a++) {
		char c = *a;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == ';'))
			return false;
	}
	return true;
}

static bool
valid_dn(const char *dn)
{
	LDAPDN parsed = NULL;
	int rc = ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAPV3);

	ldap_dnfree(parsed);
	return rc == LDAP_SUCCESS;
}

static char *
dn_key(struct parse_state *st, const char *key, bool required)
{
	int line;
	const char *v = get(st, key, &line);

	if (v == NULL || *v == '\0') {
		if (required)
			perr(st, 0, "%s is required", key);
		return NULL;
	}
	if (!valid_dn(v)) {
		perr(st, line, "%s: '%s' is not a valid DN (RFC 4514)", key, v);
		return NULL;
	}
	return xstrdup(v);
}

/* bind_dn: a DN, or with Active Directory also a UPN or a down-level name
 * (AD's simple bind takes all three). *given_r tells that the key was set,
 * even to something refused, so no second error says it was missing. */
static char *
bind_name_key(struct parse_state *st, bool is_ad, bool *given_r)
{
	int line;
	const char *v = get(st, "bind_dn", &line);

	*given_r = v != NULL && *v != '\0';
	if (!*given_r)
		return NULL;
	if (valid_dn(v))
		return xstrdup(v);
	if (ldap_ad_bind_name_ok(v)) {
		if (is_ad)
			return xstrdup(v);
		perr(st, line,
		     "bind_dn: '%s' is a UPN or a down-level name, which only Active Directory "
		     "takes as a bind name: set type = ad (or gc), or give the account's DN",
		     v);
		return NULL;
	}
	perr(st, line, "bind_dn: '%s' is not a valid DN (RFC 4514)%s", v,
	     is_ad ? ", a UPN (svc@corp.example) or a down-level name (CORP\\svc)" : "");
	return NULL;
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

/* tls_name: a host name or an address, as a certificate carries them. */
static bool
valid_tls_name(const char *v)
{
	if (*v == '\0' || strlen(v) > 253)
		return false;
	for (; *v != '\0'; v++) {
		char c = *v;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == ':'))
			return false;
	}
	return true;
}

static char *
template_key(struct parse_state *st, const char *key, const char *def, const char *tokens,
             bool is_filter)
{
	int line;
	const char *v = get(st, key, &line);
	const char *err;

	if (v == NULL)
		return def != NULL ? xstrdup(def) : NULL;
	if (ldap_filter_check_template(v, tokens, is_filter, &err) < 0) {
		perr(st, line, "%s: %s", key, err);
		return NULL;
	}
	return xstrdup(v);
}

static bool
loopback_uri(const LDAPURLDesc *lud)
{
	return strcmp(lud->lud_scheme, "ldapi") == 0 ||
	       (lud->lud_host != NULL &&
	        (strcmp(lud->lud_host, "127.0.0.1") == 0 || strcmp(lud->lud_host, "::1") == 0 ||
	         strcmp(lud->lud_host, "localhost") == 0));
}

static void
parse_uris(struct parse_state *st, struct ldap_dir_cfg *d)
{
	int line;
	const char *v = get(st, "uri", &line);
	bool secrets_travel = d->bind_dn != NULL || d->method == LDAP_METHOD_BIND;
	bool any_ldaps = false;

	if (v == NULL || *v == '\0') {
		perr(st, 0,
		     "uri is required (ldap://host[:port] or ldaps://host[:port], "
		     "several for failover)");
		return;
	}
	d->uris = split_list(v, &d->n_uris);
	for (size_t i = 0; i < d->n_uris; i++) {
		LDAPURLDesc *lud = NULL;
		if (d->type == LDAP_TYPE_GC) {
			bool tls = strncmp(d->uris[i], "ldaps:", 6) == 0;
			char *u = uri_with_port(d->uris[i], tls ? LDAP_GC_TLS_PORT : LDAP_GC_PORT);
			free(d->uris[i]);
			d->uris[i] = u;
		}
		if (ldap_url_parse(d->uris[i], &lud) != LDAP_URL_SUCCESS) {
			perr(st, line, "uri: '%s' is not an LDAP URL", d->uris[i]);
			continue;
		}
		if (strcmp(lud->lud_scheme, "ldaps") == 0)
			any_ldaps = true;
		if (strcmp(lud->lud_scheme, "ldaps") == 0 ||
		    strcmp(lud->lud_scheme, "ldapi") == 0) {
			if (d->starttls)
				perr(st, line,
				     "uri: starttls = yes needs ldap:// URIs, not '%s' (ldaps:// "
				     "is "
				     "TLS from the first byte, ldapi:// a local socket)",
				     d->uris[i]);
		} else if (strcmp(lud->lud_scheme, "ldap") == 0) {
			if (!d->starttls && secrets_travel && !loopback_uri(lud))
				pwarn(st, line,
				      "uri: '%s' without starttls sends passwords in clear; use "
				      "ldaps:// or starttls = yes",
				      d->uris[i]);
		} else {
			perr(st, line, "uri: '%s': scheme must be ldap, ldaps or ldapi",
			     d->uris[i]);
		}
		ldap_free_urldesc(lud);
	}
	if (d->tls_name != NULL && !d->starttls && !any_ldaps) {
		get(st, "tls_name", &line);
		perr(st, line,
		     "tls_name: there is no TLS to check a name for: use ldaps:// URIs or "
		     "starttls = yes");
	}
}

/* check-config runs as root: tell whether the auth process, which reads the
 * file after dropping privileges, will be able to. */
static void
check_password_file(struct parse_state *st, const char *path, int line)
{
	const char *user = st->cfg->auth_user != NULL ? st->cfg->auth_user : st->cfg->user;
	struct passwd *pw;
	struct stat sb;
	bool readable;

	if (stat(path, &sb) < 0) {
		perr(st, line, "bind_password_file: %s: %s", path, strerror(errno));
		return;
	}
	if (!S_ISREG(sb.st_mode)) {
		perr(st, line, "bind_password_file: %s is not a regular file", path);
		return;
	}
	if (sb.st_mode & S_IROTH)
		pwarn(st, line, "bind_password_file: %s is readable by every user", path);
	if (geteuid() != 0 || user == NULL || (pw = getpwnam(user)) == NULL)
		return;
	readable = (sb.st_mode & S_IROTH) || (sb.st_uid == pw->pw_uid && (sb.st_mode & S_IRUSR)) ||
	           (sb.st_gid == pw->pw_gid && (sb.st_mode & S_IRGRP));
	if (!readable)
		perr(st, line,
		     "bind_password_file: %s is not readable by '%s', the user the auth process "
		     "runs as ([server] auth_user); e.g. chown %s and chmod 0400",
		     path, user, user);
}

static void
parse_section(struct parse_state *st, struct ldap_dir_cfg *d)
{
	const struct config_section *sec = st->sec;
	const char *v;
	int line, t;
	bool is_ad, bind_dn_given;

	d->name = xstrdup(sec->name != NULL ? sec->name : "");
	d->line = sec->line;
	for (size_t i = 0; i < sec->n_kv; i++) {
		if (lookup(sec->kv[i].key, known_keys, AR_NELEM(known_keys)) < 0)
			perr(st, sec->kv[i].line, "unknown key '%s'", sec->kv[i].key);
	}

	d->type = LDAP_TYPE_GENERIC;
	if ((v = get(st, "type", &line)) != NULL) {
		if ((t = lookup(v, type_names, AR_NELEM(type_names))) < 0)
			perr(st, line,
			     "type: expected openldap, ad, gc, domino or generic, not '%s'", v);
		else
			d->type = (enum ldap_dir_type)t;
	}
	is_ad = d->type == LDAP_TYPE_AD || d->type == LDAP_TYPE_GC;

	d->method = LDAP_METHOD_BIND;
	if ((v = get(st, "method", &line)) != NULL) {
		if (ascii_strcasecmp(v, "bind") == 0) {
			d->method = LDAP_METHOD_BIND;
		} else if (ascii_strcasecmp(v, "fetch") == 0) {
			d->method = LDAP_METHOD_FETCH;
			if (is_ad || d->type == LDAP_TYPE_DOMINO)
				perr(st, line,
				     "method = fetch is not possible with type = %s: %s never "
				     "returns password hashes; use method = bind",
				     type_names[d->type],
				     d->type == LDAP_TYPE_DOMINO ? "Domino" : "Active Directory");
		} else {
			perr(st, line, "method: expected bind or fetch, not '%s'", v);
		}
	}

	d->starttls = parse_bool(st, "starttls", false);
	d->tls_verify = parse_bool(st, "tls_verify", true);
	if (!d->tls_verify)
		pwarn(st, 0,
		      "tls_verify = no: the directory's certificate is not checked, "
		      "anyone on the path can read the passwords");
	if ((v = get(st, "ca_file", &line)) != NULL && *v != '\0') {
		d->ca_file = resolve_path(st, v);
		if (access(d->ca_file, R_OK) < 0)
			perr(st, line, "ca_file: %s: %s", d->ca_file, strerror(errno));
	}
	if ((v = get(st, "tls_name", &line)) != NULL) {
		if (!valid_tls_name(v))
			perr(st, line,
			     "tls_name: '%s' is not a host name or an address (the name the "
			     "directory's certificate carries, e.g. dc1.corp.example)",
			     v);
		else
			d->tls_name = xstrdup(v);
	}

	d->bind_dn = bind_name_key(st, is_ad, &bind_dn_given);
	if ((v = get(st, "bind_password_file", &line)) != NULL && *v != '\0') {
		d->bind_password_file = resolve_path(st, v);
		if (!bind_dn_given)
			perr(st, line, "bind_password_file without bind_dn");
		else
			check_password_file(st, d->bind_password_file, line);
	} else if (bind_dn_given) {
		config_section_get(sec, "bind_dn", &line);
		perr(st, line,
		     "bind_dn needs bind_password_file (a file only the auth process can read)");
	}

	if (d->type == LDAP_TYPE_GC && ((v = get(st, "base", &line)) == NULL || *v == '\0'))
		d->base = xstrdup(""); /* the whole forest */
	else
		d->base = dn_key(st, "base", true);
	d->scope = LDAP_CFG_SCOPE_SUB;
	if ((v = get(st, "scope", &line)) != NULL) {
		if ((t = lookup(v, scope_names, AR_NELEM(scope_names))) < 0)
			perr(st, line, "scope: expected sub, one or base, not '%s'", v);
		else
			d->scope = (enum ldap_scope_cfg)t;
	}
	d->filter = template_key(st, "filter", is_ad ? LDAP_FILTER_AD : LDAP_FILTER_DEFAULT, "sud",
	                         true);

	if ((v = get(st, "mail_attributes", &line)) == NULL)
		v = "mail";
	d->mail_attributes = split_list(v, &d->n_mail_attributes);
	for (size_t i = 0; i < d->n_mail_attributes; i++) {
		if (!valid_attr(d->mail_attributes[i]))
			perr(st, line, "mail_attributes: '%s' is not an attribute name",
			     d->mail_attributes[i]);
	}
	if ((v = get(st, "password_attribute", &line)) == NULL)
		v = "userPassword";
	if (!valid_attr(v))
		perr(st, line, "password_attribute: '%s' is not an attribute name", v);
	d->password_attribute = xstrdup(v);

	d->group_dn = dn_key(st, "group_dn", false);
	d->group_filter = template_key(st, "group_filter",
	                               is_ad ? LDAP_GROUP_FILTER_AD : LDAP_GROUP_FILTER_DEFAULT,
	                               "sudD", true);
	if (get(st, "group_filter", &line) != NULL && get(st, "group_dn", &t) == NULL)
		perr(st, line, "group_filter needs group_dn (the group entry it is evaluated on)");

	if ((v = get(st, "dn_template", &line)) != NULL) {
		const char *err;
		if (ldap_filter_check_template(v, "sud", false, &err) < 0) {
			perr(st, line, "dn_template: %s", err);
		} else {
			d->dn_template = xstrdup(v);
			d->upn_bind = is_ad && strchr(v, '=') == NULL;
			if (!d->upn_bind && strchr(v, '=') == NULL)
				perr(st, line,
				     "dn_template: '%s' is not a DN template (a UPN like "
				     "%%u@example.com or CORP\\%%u needs type = ad)",
				     v);
		}
		if (bind_dn_given)
			perr(st, line,
			     "dn_template and bind_dn exclude each other: with a "
			     "template there is no search for a service account to run");
		if (d->method == LDAP_METHOD_FETCH)
			perr(st, line,
			     "dn_template cannot be used with method = fetch (there is "
			     "no search to fetch the password with)");
	}

	if (is_ad && !bind_dn_given && get(st, "dn_template", &line) == NULL)
		perr(st, 0,
		     "type = %s needs bind_dn (a service account that searches) or dn_template "
		     "(bind as the user): Active Directory refuses anonymous searches, every "
		     "login would fail with \"Operation unavailable without authentication\"",
		     type_names[d->type]);
	if ((v = get(st, "netbios_domain", &line)) != NULL) {
		if (!is_ad)
			perr(st, line,
			     "netbios_domain: only Active Directory has one (type = ad or gc)");
		else if (!ldap_ad_netbios_ok(v))
			perr(st, line,
			     "netbios_domain: '%s' is not a NetBIOS domain name (1 to %d "
			     "characters, no blank and none of \\/:*?\"<>|,)",
			     v, LDAP_AD_NETBIOS_MAX);
		else
			d->netbios_domain = xstrdup(v);
	}

	d->network_timeout = parse_uint(st, "network_timeout", LDAP_DEFAULT_NETWORK_TIMEOUT, 1,
	                                LDAP_MAX_SECONDS);
	d->timeout = parse_uint(st, "timeout", LDAP_DEFAULT_TIMEOUT, 1, LDAP_MAX_SECONDS);
	d->pool_size = parse_uint(st, "pool_size", LDAP_DEFAULT_POOL_SIZE, 1, LDAP_MAX_POOL_SIZE);
	if (d->method == LDAP_METHOD_BIND && d->dn_template == NULL && d->pool_size < 2) {
		get(st, "pool_size", &line);
		perr(st, line,
		     "pool_size: method = bind needs at least 2 connections (searches "
		     "and user binds never share one)");
	}
	if (st->cfg->auth_request_timeout > 0 && 3 * d->timeout >= st->cfg->auth_request_timeout) {
		get(st, "timeout", &line);
		pwarn(st, line,
		      "timeout: a login takes up to 3 operations (search, bind, group check); "
		      "3 x %u s is not below [auth] request_timeout = %u s, so workers may give "
		      "up first",
		      d->timeout, st->cfg->auth_request_timeout);
	}
	parse_uris(st, d);
}

static void
dir_free(struct ldap_dir_cfg *d)
{
	free(d->name);
	free_list(d->uris, d->n_uris);
	free(d->ca_file);
	free(d->tls_name);
	free(d->bind_dn);
	free(d->bind_password_file);
	free(d->base);
	free(d->filter);
	free_list(d->mail_attributes, d->n_mail_attributes);
	free(d->password_attribute);
	free(d->group_dn);
	free(d->group_filter);
	free(d->dn_template);
	free(d->netbios_domain);
}

void
ldap_config_free(struct ldap_dir_cfg *dirs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dir_free(&dirs[i]);
	free(dirs);
}

struct ldap_dir_cfg *
ldap_config_parse(const struct config *cfg, size_t *n_r, char **errors_r)
{
	struct parse_state st = {.cfg = cfg};
	struct ldap_dir_cfg *dirs = NULL;
	const struct config_section *sec = NULL;
	size_t n = 0;
	char *slash;

	st.dir = xstrdup(cfg->path != NULL ? cfg->path : ".");
	slash = strrchr(st.dir, '/');
	if (slash != NULL)
		*(slash == st.dir ? slash + 1 : slash) = '\0';
	else
		strcpy(st.dir, ".");

	while ((sec = config_section_next(cfg, "ldap", sec)) != NULL) {
		dirs = xrealloc(dirs, (n + 1) * sizeof(*dirs));
		memset(&dirs[n], 0, sizeof(dirs[n]));
		st.sec = sec;
		parse_section(&st, &dirs[n]);
		n++;
	}
	free(st.dir);
	if (st.n_errors > 0) {
		ldap_config_free(dirs, n);
		*errors_r = errors_text(&st);
		*n_r = 0;
		return NULL;
	}
	*n_r = n;
	return dirs;
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
		         "[ldap %s] bind_password_file: %s: %s", dir->name, dir->bind_password_file,
		         strerror(errno));
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
		         "[ldap %s] bind_password_file: %s: the first line is empty", dir->name,
		         dir->bind_password_file);
		*error_r = password_error;
		return NULL;
	}
	char *pw = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return pw;
}

const char *
ldap_config_type_name(enum ldap_dir_type t)
{
	return type_names[t];
}

const char *
ldap_config_scope_name(enum ldap_scope_cfg s)
{
	return scope_names[s];
}
