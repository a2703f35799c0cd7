/*
 * config.c - load authrelay.conf: libinih splits the file into keys, a table
 * (key_defs[]) says what each key means, and a second pass checks the file as
 * a whole once everything is read.
 *
 * Why two passes: a listener's limits inherit from [limits] wherever that
 * section sits in the file, and rules such as "a submission listener needs
 * its own address:port" or "tls = required needs a certificate" involve
 * several sections. So keys are first stored as written (each remembers its
 * line), then config_validate() fills in the defaults that depend on other
 * sections and reports every remaining problem. Every error is collected, sorted by line
 * and returned together, so one run of check-config shows them all.
 *
 * Line numbers: Debian's libinih is built without INI_HANDLER_LINENO, so we
 * feed it through ini_parse_stream() with our own reader (ini_read_line),
 * which counts lines, follows [section] headers itself (inih does not report
 * a section that has no keys) and reports malformed lines instead of letting
 * inih stop at the first one.
 */
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum section_kind {
	SEC_NONE, /* keys before the first [section] */
	SEC_SERVER,
	SEC_TLS,
	SEC_LIMITS,
	SEC_LISTENER,
	SEC_RELAY,
	SEC_AUTH,
	SEC_USERS_FILE,
	SEC_EXT,  /* owned by another module: keys kept as written */
	SEC_SKIP, /* an unknown or broken section, already reported */
};

/* Section kinds other modules parse themselves (struct config_section).
 * Adding one is one line here. */
static const struct ext_kind {
	const char *kind;
	bool named; /* [kind NAME] rather than [kind] */
} ext_kinds[] = {
        {"ldap", true},  {"smtp-forward", false}, {"queue", false},
        {"route", true}, {"alerts", false},       {"protection", false},
};

static const char *const section_names[] = {
        [SEC_NONE] = "",         [SEC_SERVER] = "server",         [SEC_TLS] = "tls",
        [SEC_LIMITS] = "limits", [SEC_LISTENER] = "listener",     [SEC_RELAY] = "relay",
        [SEC_AUTH] = "auth",     [SEC_USERS_FILE] = "users-file", [SEC_EXT] = "",
        [SEC_SKIP] = "",
};

static const char *const role_names[] = {
        [ROLE_INBOUND] = "inbound",
        [ROLE_OUTBOUND] = "outbound",
        [ROLE_SUBMISSION] = "submission",
};

static const char *const tls_names[] = {
        [LTLS_NONE] = "none",
        [LTLS_OPTIONAL] = "optional",
        [LTLS_REQUIRED] = "required",
        [LTLS_IMPLICIT] = "implicit",
};

static const char *const log_level_names[] = {
        [LOG_LEVEL_ERR] = "error",
        [LOG_LEVEL_WARN] = "warning",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

/* Listener and section names: what a log line can show unquoted. */
#define CONFIG_NAME_MAX 64

struct load_state;
struct key_def;

/* Parse value into field; report problems with key_error() and return -1. */
typedef int key_parse_cb(struct load_state *, const struct key_def *, void *field,
                         const char *value);

struct key_def {
	const char *name;
	enum section_kind section; /* SEC_LIMITS keys are also valid in listeners */
	key_parse_cb *parse;
	size_t offset; /* of the field in struct config, limits_cfg or listener_cfg */
	size_t size;
	uint64_t min, max; /* numbers */
	const char *why;   /* the reason for min, shown when a value is below it */
	bool list;         /* repeats and continuation lines append */
};

static key_parse_cb parse_string, parse_opt_string, parse_path, parse_opt_path, parse_hostname,
        parse_opt_domain, parse_banner, parse_bool, parse_uint, parse_size, parse_log,
        parse_log_level, parse_min_protocol, parse_address, parse_role, parse_tls,
        parse_auth_failures, parse_domains, parse_networks;

/* The fields every entry has; numbers add .min, .max and maybe .why. */
#define KEY(sec, key, fn, type, f)                                                                 \
	.name = key, .section = sec, .parse = fn, .offset = offsetof(type, f),                     \
	.size = sizeof(((type *)0)->f)
#define SERVER_KEY(key, fn, f) KEY(SEC_SERVER, key, fn, struct config, f)
#define TLS_KEY(key, fn, f) KEY(SEC_TLS, key, fn, struct config, f)
#define LIMIT_KEY(key, fn, f) KEY(SEC_LIMITS, key, fn, struct limits_cfg, f)
#define LISTENER_KEY(key, fn, f) KEY(SEC_LISTENER, key, fn, struct listener_cfg, f)

static const struct key_def key_defs[] = {
        {SERVER_KEY("hostname", parse_hostname, hostname)},
        {SERVER_KEY("user", parse_string, user)},
        {SERVER_KEY("auth_user", parse_string, auth_user)},
        {SERVER_KEY("workers", parse_uint, workers), .min = 0, .max = 1024},
        {SERVER_KEY("spool_dir", parse_path, spool_dir)},
        {SERVER_KEY("chroot", parse_bool, chroot)},
        {SERVER_KEY("log", parse_log, use_syslog)},
        {SERVER_KEY("log_level", parse_log_level, log_level)},
        {SERVER_KEY("pid_file", parse_opt_path, pid_file)},

        {TLS_KEY("cert_file", parse_path, tls_cert_file)},
        {TLS_KEY("key_file", parse_path, tls_key_file)},
        {TLS_KEY("ca_file", parse_opt_path, tls_ca_file)},
        {TLS_KEY("ciphers", parse_opt_string, tls_ciphers)},
        {TLS_KEY("min_protocol", parse_min_protocol, tls_min_protocol)},

        {LIMIT_KEY("max_connections", parse_uint, max_connections), .min = 1, .max = UINT_MAX},
        {LIMIT_KEY("max_connections_per_ip", parse_uint, max_connections_per_ip), .min = 1,
         .max = UINT_MAX},
        {LIMIT_KEY("ipv6_prefix", parse_uint, ipv6_prefix), .min = 0, .max = 128},
        {LIMIT_KEY("max_messages_per_session", parse_uint, max_messages_per_session), .min = 0,
         .max = UINT_MAX},
        {LIMIT_KEY("max_recipients", parse_uint, max_recipients), .min = 100, .max = UINT_MAX,
         .why = "RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients"},
        {LIMIT_KEY("max_message_size", parse_size, max_message_size), .min = 1, .max = UINT64_MAX},
        {LIMIT_KEY("max_line_length", parse_uint, max_line_length), .min = 512, .max = 1048576,
         .why = "RFC 5321 4.5.3.1.4: command lines of 512 octets must be accepted"},
        {LIMIT_KEY("max_auth_line_length", parse_uint, max_auth_line_length), .min = 512,
         .max = 1048576,
         .why = "an AUTH line must hold at least a command line; RFC 4954 4 advises 12288"},
        {LIMIT_KEY("max_auth_failures", parse_auth_failures, max_auth_failures), .min = 1,
         .max = UINT_MAX, .why = "0 would drop a client before its first attempt"},
        {LIMIT_KEY("auth_failure_delay_ms", parse_uint, auth_failure_delay_ms), .min = 0,
         .max = 600000},
        {LIMIT_KEY("command_timeout", parse_uint, command_timeout), .min = 1, .max = 86400},
        {LIMIT_KEY("data_timeout", parse_uint, data_timeout), .min = 1, .max = 86400},
        {LIMIT_KEY("max_errors", parse_uint, max_errors), .min = 1, .max = UINT_MAX},

        {LISTENER_KEY("address", parse_address, address_text)},
        {LISTENER_KEY("role", parse_role, role)},
        {LISTENER_KEY("tls", parse_tls, tls)},
        {LISTENER_KEY("allow_plaintext_auth", parse_bool, allow_plaintext_auth)},
        {LISTENER_KEY("auth_legacy_advertise", parse_bool, auth_legacy_advertise)},
        {LISTENER_KEY("cram_md5", parse_bool, cram_md5)},
        {LISTENER_KEY("insert_received", parse_bool, insert_received)},
        {LISTENER_KEY("strip_received", parse_bool, strip_received)},
        {LISTENER_KEY("add_missing_headers", parse_bool, add_missing_headers)},
        {LISTENER_KEY("default_domain", parse_opt_domain, default_domain)},
        {LISTENER_KEY("banner", parse_banner, banner)},
        {LISTENER_KEY("sender_login_match", parse_bool, sender_login_match)},

        {KEY(SEC_RELAY, "local_domains", parse_domains, struct config, local_domains),
         .list = true},
        {KEY(SEC_RELAY, "client_networks", parse_networks, struct config, client_networks),
         .list = true},

        {KEY(SEC_AUTH, "threads", parse_uint, struct config, auth_threads), .min = 1, .max = 256},
        {KEY(SEC_AUTH, "request_timeout", parse_uint, struct config, auth_request_timeout),
         .min = 1, .max = 3600},

        {KEY(SEC_USERS_FILE, "path", parse_path, struct config, users_file)},
};

#define N_KEYS AR_NELEM(key_defs)

/* What we remember about a listener section while loading. */
struct listener_meta {
	/* Line of each key in this section: 0 = not written, negative = written
	 * with a value that was refused (and reported). */
	int key_line[N_KEYS];
};

struct config_error {
	int line;
	unsigned seq; /* keeps errors on one line in the order found */
	char *msg;
};

struct load_state {
	struct config *cfg;
	const char *shown_path; /* as the caller wrote it, for messages */
	char *dir;              /* absolute directory of the file, for relative paths */
	FILE *fp;
	char *linebuf;
	size_t linecap;
	int lineno;
	bool continuation; /* the current line continues the previous key's value */
	bool in_key;       /* a key was read in this section (inih's prev_name) */
	enum section_kind sec;
	size_t cur_listener;
	int global_key_line[N_KEYS]; /* same as listener_meta, for the other sections */
	struct listener_meta *meta;  /* parallel to cfg->listeners */
	size_t cap_listeners;
	size_t n_domains;
	struct config_error *errors;
	size_t n_errors, cap_errors;
};

static void config_error(struct load_state *st, int line, const char *fmt, ...) AR_PRINTF(3, 4);

static void
config_error(struct load_state *st, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatal("out of memory formatting a config error");
	va_end(ap);
	if (st->n_errors == st->cap_errors) {
		st->cap_errors = st->cap_errors ? st->cap_errors * 2 : 8;
		st->errors = xrealloc(st->errors, st->cap_errors * sizeof(*st->errors));
	}
	st->errors[st->n_errors] = (struct config_error){line, (unsigned)st->n_errors, msg};
	st->n_errors++;
}

/* An error about the key on the current line: "key = value: reason". */
static void key_error(struct load_state *st, const struct key_def *def, const char *value,
                      const char *fmt, ...) AR_PRINTF(4, 5);

static void
key_error(struct load_state *st, const struct key_def *def, const char *value, const char *fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) < 0)
		fatal("out of memory formatting a config error");
	va_end(ap);
	config_error(st, st->lineno, "%s = %s: %s", def->name, value, reason);
	free(reason);
}

static void config_warning(struct load_state *st, int line, const char *fmt, ...) AR_PRINTF(3, 4);

static void
config_warning(struct load_state *st, int line, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s:%d: %s", st->shown_path, line, msg);
}

static struct listener_cfg *
current_listener(struct load_state *st)
{
	return &st->cfg->listeners[st->cur_listener];
}

/* ---- value parsers (key_defs[].parse) ---- */

static int
lookup_name(const char *value, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] != NULL && ascii_strcasecmp(value, names[i]) == 0)
			return (int)i;
	return -1;
}

static void
replace_string(char **field, const char *value)
{
	free(*field);
	*field = value != NULL ? xstrdup(value) : NULL;
}

static int
parse_string(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	if (*value == '\0') {
		key_error(st, def, value, "must not be empty");
		return -1;
	}
	replace_string(field, value);
	return 0;
}

/* Empty means "not set": the built-in default applies. */
static int
parse_opt_string(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	replace_string(field, *value != '\0' ? value : NULL);
	return 0;
}

static char *
resolve_path(const struct load_state *st, const char *value)
{
	char *abs;

	if (value[0] == '/')
		return xstrdup(value);
	if (asprintf(&abs, "%s/%s", st->dir, value) < 0)
		fatal("out of memory resolving a path");
	return abs;
}

/* Relative paths are taken from the config file's directory and stored
 * absolute: the daemon chdirs and may chroot after loading. */
static int
parse_path(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	char **f = field;

	if (*value == '\0') {
		key_error(st, def, value, "must not be empty");
		return -1;
	}
	free(*f);
	*f = resolve_path(st, value);
	return 0;
}

static int
parse_opt_path(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	char **f = field;

	free(*f);
	*f = *value != '\0' ? resolve_path(st, value) : NULL;
	return 0;
}

/* Locale-independent: config text is ASCII whatever LC_CTYPE says. */
static bool
ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A domain name in LDH form (RFC 5321 4.1.2 "Domain"); with allow_dot a
 * leading '.' is accepted (local_domains: "every subdomain of"). */
static bool
valid_domain(const char *d, bool allow_dot)
{
	size_t len = strlen(d), label = 0;

	if (allow_dot && d[0] == '.') {
		d++;
		len--;
	}
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!ascii_alnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && d[len - 1] != '-';
}

static int
parse_hostname(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	if (!valid_domain(value, false)) {
		key_error(st, def, value, "not a host name (letters, digits, '-' and '.')");
		return -1;
	}
	replace_string(field, value);
	return 0;
}

static int
parse_opt_domain(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	if (*value != '\0' && !valid_domain(value, false)) {
		key_error(st, def, value, "not a domain name (letters, digits, '-' and '.')");
		return -1;
	}
	replace_string(field, *value != '\0' ? value : NULL);
	return 0;
}

/* The banner goes into the 220 greeting: printable ASCII only. */
static int
parse_banner(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	for (const char *p = value; *p != '\0'; p++) {
		if (*p < 0x20 || *p > 0x7e) {
			key_error(st, def, value,
			          "only printable ASCII may appear in an SMTP reply");
			return -1;
		}
	}
	replace_string(field, *value != '\0' ? value : NULL);
	return 0;
}

static int
parse_bool(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	bool *f = field;

	if (lookup_name(value, yes, AR_NELEM(yes)) >= 0) {
		*f = true;
	} else if (lookup_name(value, no, AR_NELEM(no)) >= 0) {
		*f = false;
	} else {
		key_error(st, def, value, "expected yes or no (also true/false, on/off, 1/0)");
		return -1;
	}
	return 0;
}

/* Decimal digits only; strtoull would also take signs, spaces and hex. */
static int
parse_digits(const char *s, const char **end_r, uint64_t *r)
{
	uint64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (p == s)
		return -1;
	*end_r = p;
	*r = v;
	return 0;
}

static int
check_range(struct load_state *st, const struct key_def *def, const char *value, uint64_t v)
{
	if (v < def->min) {
		if (def->why != NULL)
			key_error(st, def, value, "must be at least %llu (%s)",
			          (unsigned long long)def->min, def->why);
		else
			key_error(st, def, value, "must be at least %llu",
			          (unsigned long long)def->min);
		return -1;
	}
	if (v > def->max) {
		key_error(st, def, value, "must be at most %llu", (unsigned long long)def->max);
		return -1;
	}
	return 0;
}

static int
parse_uint(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	const char *end;
	uint64_t v;

	if (parse_digits(value, &end, &v) < 0 || *end != '\0') {
		key_error(st, def, value, "not a whole number");
		return -1;
	}
	if (check_range(st, def, value, v) < 0)
		return -1;
	*(unsigned *)field = (unsigned)v;
	return 0;
}

/* Bytes, with an optional k, M or G suffix (powers of 1024). */
static int
parse_size(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	const char *end;
	uint64_t v, mult = 1;

	if (parse_digits(value, &end, &v) < 0) {
		key_error(st, def, value, "not a size in bytes (digits, then k, M or G)");
		return -1;
	}
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1024;
		break;
	case 'm':
	case 'M':
		mult = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		mult = 0;
		break;
	}
	if (mult == 0 || (*end != '\0' && end[1] != '\0')) {
		key_error(st, def, value, "not a size in bytes (digits, then k, M or G)");
		return -1;
	}
	if (v > UINT64_MAX / mult) {
		key_error(st, def, value, "too large");
		return -1;
	}
	v *= mult;
	if (check_range(st, def, value, v) < 0)
		return -1;
	*(uint64_t *)field = v;
	return 0;
}

static int
parse_auth_failures(struct load_state *st, const struct key_def *def, void *field,
                    const char *value)
{
	if (parse_uint(st, def, field, value) < 0)
		return -1;
	if (*(unsigned *)field < 3)
		config_warning(st, st->lineno,
		               "max_auth_failures = %s: RFC 4954 9 and the product spec expect "
		               "at least 3 attempts before a client is dropped",
		               value);
	return 0;
}

static int
parse_log(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	static const char *const names[] = {"stderr", "syslog"};
	int i = lookup_name(value, names, AR_NELEM(names));

	if (i < 0) {
		key_error(st, def, value, "expected stderr or syslog");
		return -1;
	}
	*(bool *)field = i == 1;
	return 0;
}

static int
parse_log_level(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	int i = lookup_name(value, log_level_names, AR_NELEM(log_level_names));

	if (i < 0) {
		key_error(st, def, value, "expected error, warning, info or debug");
		return -1;
	}
	*(int *)field = i;
	return 0;
}

static int
parse_min_protocol(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	/* RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 asks for 1.2 or later. */
	static const char *const names[] = {"TLSv1.2", "TLSv1.3"};
	int i = lookup_name(value, names, AR_NELEM(names));

	if (i < 0) {
		key_error(st, def, value, "expected TLSv1.2 or TLSv1.3 (RFC 8996: nothing older)");
		return -1;
	}
	replace_string(field, names[i]);
	return 0;
}

static int
parse_address(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	struct listener_cfg *l = current_listener(st);
	const char *error;

	if (net_parse_hostport(value, &l->addr, &l->addrlen, &error) < 0) {
		key_error(st, def, value, "%s", error);
		return -1;
	}
	replace_string(&l->address_text, value);
	return 0;
}

static int
parse_role(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	int i = lookup_name(value, role_names, AR_NELEM(role_names));

	if (i < 0) {
		key_error(st, def, value, "expected inbound, outbound or submission");
		return -1;
	}
	*(enum listener_role *)field = (enum listener_role)i;
	return 0;
}

static int
parse_tls(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	int i = lookup_name(value, tls_names, AR_NELEM(tls_names));

	if (i < 0) {
		key_error(st, def, value, "expected none, optional, required or implicit");
		return -1;
	}
	*(enum listener_tls *)field = (enum listener_tls)i;
	return 0;
}

static bool
is_list_separator(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

/* Call fn on each item of a comma- or space-separated list. */
static int
for_each_item(struct load_state *st, const struct key_def *def, const char *value,
              int (*fn)(struct load_state *, const struct key_def *, const char *item))
{
	int ret = 0;
	const char *p = value;

	while (*p != '\0') {
		while (is_list_separator(*p))
			p++;
		size_t n = 0;
		while (p[n] != '\0' && !is_list_separator(p[n]))
			n++;
		if (n == 0)
			break;
		char *item = xstrndup(p, n);
		if (fn(st, def, item) < 0)
			ret = -1;
		free(item);
		p += n;
	}
	return ret;
}

static int
add_domain(struct load_state *st, const struct key_def *def, const char *item)
{
	struct config *cfg = st->cfg;
	char *d = xstrdup(item);
	size_t len = strlen(d);

	if (len > 1 && d[len - 1] == '.')
		d[len - 1] = '\0'; /* "example.test." is the same domain */
	for (char *p = d; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!valid_domain(d, true)) {
		key_error(st, def, item, "not a domain name (write .example.test for subdomains)");
		free(d);
		return -1;
	}
	cfg->local_domains =
	        xrealloc(cfg->local_domains, (st->n_domains + 2) * sizeof(*cfg->local_domains));
	cfg->local_domains[st->n_domains++] = d;
	cfg->local_domains[st->n_domains] = NULL;
	return 0;
}

static int
parse_domains(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	return for_each_item(st, def, value, add_domain);
}

static int
add_network(struct load_state *st, const struct key_def *def, const char *item)
{
	struct config *cfg = st->cfg;
	struct cidr c;
	const char *error;

	if (net_parse_cidr(item, &c, &error) < 0) {
		key_error(st, def, item, "%s", error);
		return -1;
	}
	cfg->client_networks =
	        xrealloc(cfg->client_networks, (cfg->n_client_networks + 1) * sizeof(c));
	cfg->client_networks[cfg->n_client_networks++] = c;
	return 0;
}

static int
parse_networks(struct load_state *st, const struct key_def *def, void *field, const char *value)
{
	return for_each_item(st, def, value, add_network);
}

/* ---- reading the file ---- */

static const char *
skip_space(const char *s)
{
	while (*s != '\0' && isspace((unsigned char)*s))
		s++;
	return s;
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!ascii_alnum(*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static const struct listener_cfg *
find_listener(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (ascii_strcasecmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}

static void
add_listener(struct load_state *st, const char *name)
{
	struct config *cfg = st->cfg;

	if (cfg->n_listeners == st->cap_listeners) {
		st->cap_listeners = st->cap_listeners ? st->cap_listeners * 2 : 4;
		cfg->listeners =
		        xrealloc(cfg->listeners, st->cap_listeners * sizeof(*cfg->listeners));
		st->meta = xrealloc(st->meta, st->cap_listeners * sizeof(*st->meta));
	}
	struct listener_cfg *l = &cfg->listeners[cfg->n_listeners];
	memset(l, 0, sizeof(*l));
	memset(&st->meta[cfg->n_listeners], 0, sizeof(st->meta[0]));
	l->name = xstrdup(name);
	l->line = st->lineno;
	l->insert_received = true;
	st->cur_listener = cfg->n_listeners++;
}

/* A module-owned section: check its header, keep its keys for the module. */
static void
begin_ext_section(struct load_state *st, const struct ext_kind *ek, const char *text,
                  const char *name)
{
	struct config *cfg = st->cfg;
	char extra[2];
	bool more = sscanf(text, " %*s %*s %1s", extra) == 1;

	if (ek->named && (name == NULL || more || !valid_name(name))) {
		config_error(st, st->lineno,
		             "[%s]: write [%s NAME], NAME made of letters, digits, '-', '_' and "
		             "'.' (at most %d)",
		             text, ek->kind, CONFIG_NAME_MAX);
		return;
	}
	if (!ek->named && name != NULL) {
		config_error(st, st->lineno, "section [%s] takes no name", ek->kind);
		return;
	}
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const struct config_section *o = &cfg->sections[i];
		if (strcmp(o->kind, ek->kind) == 0 &&
		    (name == NULL || ascii_strcasecmp(o->name, name) == 0)) {
			config_error(st, st->lineno,
			             "duplicate section [%s%s%s] (first at line %d)", ek->kind,
			             name ? " " : "", name ? name : "", o->line);
			return;
		}
	}
	cfg->sections = xrealloc(cfg->sections, (cfg->n_sections + 1) * sizeof(*cfg->sections));
	struct config_section *sec = &cfg->sections[cfg->n_sections++];
	memset(sec, 0, sizeof(*sec));
	sec->kind = xstrdup(ek->kind);
	sec->name = name ? xstrdup(name) : NULL;
	sec->line = st->lineno;
	st->sec = SEC_EXT;
}

static void
ext_add_key(struct load_state *st, const char *name, const char *value)
{
	struct config_section *sec = &st->cfg->sections[st->cfg->n_sections - 1];
	if (st->continuation && sec->n_kv > 0) {
		struct config_kv *kv = &sec->kv[sec->n_kv - 1];
		size_t a = strlen(kv->value), b = strlen(value);
		kv->value = xrealloc(kv->value, a + b + 2);
		kv->value[a] = ' ';
		memcpy(kv->value + a + 1, value, b + 1);
		return;
	}
	sec->kv = xrealloc(sec->kv, (sec->n_kv + 1) * sizeof(*sec->kv));
	struct config_kv *kv = &sec->kv[sec->n_kv++];
	kv->key = xstrdup(name);
	for (char *p = kv->key; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + ('a' - 'A'));
	kv->value = xstrdup(value);
	kv->line = st->lineno;
}

const struct config_section *
config_section_next(const struct config *cfg, const char *kind, const struct config_section *prev)
{
	size_t i = prev == NULL ? 0 : (size_t)(prev - cfg->sections) + 1;
	for (; i < cfg->n_sections; i++)
		if (strcmp(cfg->sections[i].kind, kind) == 0)
			return &cfg->sections[i];
	return NULL;
}

const char *
config_section_get(const struct config_section *sec, const char *key, int *line_r)
{
	for (size_t i = sec->n_kv; i-- > 0;) {
		if (ascii_strcasecmp(sec->kv[i].key, key) == 0) {
			if (line_r != NULL)
				*line_r = sec->kv[i].line;
			return sec->kv[i].value;
		}
	}
	return NULL;
}

/* A "[...]" header: text is what lies between the brackets. */
static void
begin_section(struct load_state *st, const char *text)
{
	char kind[32], name[CONFIG_NAME_MAX + 2];
	int n;

	st->in_key = false;
	st->sec = SEC_SKIP;
	kind[0] = name[0] = '\0';
	n = sscanf(text, " %31s %65s", kind, name);
	if (n < 1) {
		config_error(st, st->lineno, "empty section name []");
		return;
	}
	for (int k = SEC_SERVER; k < SEC_EXT; k++) {
		if (ascii_strcasecmp(kind, section_names[k]) == 0)
			st->sec = (enum section_kind)k;
	}
	for (size_t e = 0; st->sec == SEC_SKIP && e < AR_NELEM(ext_kinds); e++) {
		if (ascii_strcasecmp(kind, ext_kinds[e].kind) == 0) {
			begin_ext_section(st, &ext_kinds[e], text, n > 1 ? name : NULL);
			return;
		}
	}
	if (st->sec == SEC_SKIP) {
		config_error(st, st->lineno,
		             "unknown section [%s] (known: server, tls, limits, listener NAME, "
		             "relay, auth, users-file, ldap NAME, smtp-forward, queue, route NAME, "
		             "alerts, protection)",
		             text);
		return;
	}
	/* Anything after the name ("[listener a b]") is a mistake. */
	char extra[2];
	bool more = sscanf(text, " %*s %*s %1s", extra) == 1;
	if (st->sec != SEC_LISTENER) {
		if (n > 1) {
			config_error(st, st->lineno, "section [%s] takes no name", kind);
			st->sec = SEC_SKIP;
		}
		return;
	}
	if (n < 2 || more || !valid_name(name)) {
		config_error(st, st->lineno,
		             "[%s]: write [listener NAME], NAME made of letters, digits, '-', "
		             "'_' and '.' (at most %d)",
		             text, CONFIG_NAME_MAX);
		st->sec = SEC_SKIP;
		return;
	}
	const struct listener_cfg *dup = find_listener(st->cfg, name);
	if (dup != NULL) {
		config_error(st, st->lineno, "duplicate listener name '%s' (first at line %d)",
		             name, dup->line);
		st->sec = SEC_SKIP;
		return;
	}
	add_listener(st, name);
}

/* Mirror of inih's find_chars_or_comment(): the first of chars, or of an
 * inline ';' comment (one that follows whitespace). */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
	bool was_space = false;

	while (*s != '\0' && !strchr(chars, *s) && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

/* Look at a line before inih does, following inih's own rules, so that we
 * know the section, can report malformed lines, and know when inih will
 * treat an indented line as a continuation. Returns false for a line inih
 * must not see (it is reported). */
static bool
check_line(struct load_state *st, const char *line)
{
	const char *s;

	if (st->lineno == 1 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
		line += 3; /* UTF-8 byte order mark */
	s = skip_space(line);
	if (*s == '\0' || *s == ';' || *s == '#')
		return true;
	if (s > line && st->in_key) {
		st->continuation = true;
		return true;
	}
	if (*s == '[') {
		const char *end = find_chars_or_comment(s + 1, "]");
		if (*end != ']') {
			config_error(st, st->lineno, "section header without a closing ']'");
			st->sec = SEC_SKIP;
			return false;
		}
		char *text = xstrndup(s + 1, (size_t)(end - s - 1));
		begin_section(st, text);
		free(text);
		const char *after = skip_space(end + 1);
		if (*after != '\0' && *after != ';' && *after != '#')
			config_error(st, st->lineno, "text after the section header: %s", after);
		return true;
	}
	const char *eq = find_chars_or_comment(s, "=:");
	if (*eq != '=' && *eq != ':') {
		config_error(st, st->lineno, "expected 'key = value', '[section]' or a comment");
		return false;
	}
	if (eq == s) {
		config_error(st, st->lineno, "missing key name before '%c'", *eq);
		return false;
	}
	st->in_key = true;
	return true;
}

/* inih's line reader (fgets-like): one line per call, so st->lineno is the
 * line inih is about to hand to config_ini_handler(). */
static char *
ini_read_line(char *str, int num, void *stream)
{
	struct load_state *st = stream;
	ssize_t n = getline(&st->linebuf, &st->linecap, st->fp);
	size_t len;

	if (n < 0)
		return NULL;
	st->lineno++;
	st->continuation = false;
	len = (size_t)n;
	while (len > 0 && (st->linebuf[len - 1] == '\n' || st->linebuf[len - 1] == '\r'))
		len--;
	st->linebuf[len] = '\0';

	const char *s = skip_space(st->linebuf);
	bool comment = *s == '\0' || *s == ';' || *s == '#';
	str[0] = '\n';
	str[1] = '\0';
	if (strlen(st->linebuf) != len) {
		config_error(st, st->lineno, "NUL byte in the line");
		return str;
	}
	/* inih's line buffer holds num bytes with "\r\n\0"; a longer line would
	 * reach it in pieces that look like separate lines. */
	if (!comment && len > (size_t)num - 3) {
		config_error(st, st->lineno,
		             "line longer than %d characters; split a list over indented "
		             "continuation lines",
		             num - 3);
		if (*s == '[')
			st->sec = SEC_SKIP;
		return str;
	}
	if (comment || !check_line(st, st->linebuf))
		return str;
	memcpy(str, st->linebuf, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
}

static const struct key_def *
find_key(enum section_kind sec, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		enum section_kind ks = key_defs[i].section;
		if (ks != sec && !(sec == SEC_LISTENER && ks == SEC_LIMITS))
			continue;
		if (ascii_strcasecmp(key_defs[i].name, name) == 0)
			return &key_defs[i];
	}
	return NULL;
}

static void
report_unknown_key(struct load_state *st, const char *name)
{
	const char *sec = st->sec == SEC_LISTENER ? "listener NAME" : section_names[st->sec];

	for (size_t i = 0; i < N_KEYS; i++) {
		if (ascii_strcasecmp(key_defs[i].name, name) == 0) {
			config_error(st, st->lineno,
			             "unknown key '%s' in [%s] (it belongs in [%s])", name, sec,
			             section_names[key_defs[i].section]);
			return;
		}
	}
	config_error(st, st->lineno, "unknown key '%s' in [%s]", name, sec);
}

static int
config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct load_state *st = user;
	const struct key_def *def;
	int *key_line;
	void *base;

	if (st->sec == SEC_SKIP)
		return 1;
	if (st->sec == SEC_EXT) {
		ext_add_key(st, name, value);
		return 1;
	}
	if (st->sec == SEC_NONE) {
		if (!st->continuation)
			config_error(st, st->lineno, "'%s' comes before any [section]", name);
		return 1;
	}
	def = find_key(st->sec, name);
	if (def == NULL) {
		if (!st->continuation) /* the key's own line was reported */
			report_unknown_key(st, name);
		return 1;
	}
	for (const char *p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			config_error(st, st->lineno, "%s: control character in the value",
			             def->name);
			return 1;
		}
	}
	if (st->continuation && !def->list) {
		config_error(st, st->lineno,
		             "indented line continues '%s', which takes one value; only lists "
		             "(local_domains, client_networks) continue on indented lines",
		             def->name);
		return 1;
	}

	key_line =
	        st->sec == SEC_LISTENER ? st->meta[st->cur_listener].key_line : st->global_key_line;
	size_t k = (size_t)(def - key_defs);
	if (key_line[k] != 0 && !def->list) {
		config_error(st, st->lineno, "%s is already set at line %d", def->name,
		             abs(key_line[k]));
		return 1;
	}

	if (def->section == SEC_LIMITS)
		base = st->sec == SEC_LISTENER ? &current_listener(st)->limits : &st->cfg->limits;
	else if (def->section == SEC_LISTENER)
		base = current_listener(st);
	else
		base = st->cfg;
	int ok = def->parse(st, def, (char *)base + def->offset, value) == 0;
	if (key_line[k] == 0) /* negative: written, but the value was refused */
		key_line[k] = ok ? st->lineno : -st->lineno;
	return 1; /* errors are collected in st, never returned to inih */
}

/* ---- after reading: defaults and whole-file checks ---- */

/* A listener's limits: [limits] (or its defaults) except for what the
 * listener section sets itself, whichever section comes first. */
static void
resolve_limits(struct load_state *st, size_t li)
{
	struct listener_cfg *l = &st->cfg->listeners[li];
	struct limits_cfg merged = st->cfg->limits;

	for (size_t k = 0; k < N_KEYS; k++) {
		const struct key_def *def = &key_defs[k];
		if (def->section != SEC_LIMITS || st->meta[li].key_line[k] <= 0)
			continue;
		memcpy((char *)&merged + def->offset, (char *)&l->limits + def->offset, def->size);
	}
	l->limits = merged;
}

static const struct key_def *
key_by_name(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(key_defs[i].name, name) == 0)
			return &key_defs[i];
	fatal("config: no key named %s", name);
}

/* Line where a listener key was set (see struct listener_meta). */
static int
listener_key_line(const struct load_state *st, size_t li, const char *name)
{
	return st->meta[li].key_line[key_by_name(name) - key_defs];
}

/* Line where a key of the other sections was written, for messages. */
static int
global_key_line(const struct load_state *st, const char *name)
{
	return abs(st->global_key_line[key_by_name(name) - key_defs]);
}

static void
resolve_server(struct load_state *st)
{
	struct config *cfg = st->cfg;

	if (cfg->hostname == NULL) {
		char host[256] = "";
		if (gethostname(host, sizeof(host) - 1) < 0 || !valid_domain(host, false))
			snprintf(host, sizeof(host), "localhost");
		cfg->hostname = xstrdup(host);
	}
	if (cfg->auth_user == NULL)
		cfg->auth_user = xstrdup(cfg->user);
}

static void
check_tls_files(struct load_state *st)
{
	const struct config *cfg = st->cfg;

	if (cfg->tls_cert_file != NULL && cfg->tls_key_file == NULL)
		config_error(st, global_key_line(st, "cert_file"),
		             "cert_file is set but key_file is not");
	if (cfg->tls_key_file != NULL && cfg->tls_cert_file == NULL)
		config_error(st, global_key_line(st, "key_file"),
		             "key_file is set but cert_file is not");
	if (cfg->tls_ca_file != NULL && cfg->tls_cert_file == NULL)
		config_error(st, global_key_line(st, "ca_file"),
		             "ca_file (client certificates) needs cert_file and key_file");
}

static void
check_listener(struct load_state *st, size_t li)
{
	const struct config *cfg = st->cfg;
	struct listener_cfg *l = &cfg->listeners[li];
	bool have_cert = cfg->tls_cert_file != NULL && cfg->tls_key_file != NULL;
	int role_line = listener_key_line(st, li, "role");
	int tls_line = listener_key_line(st, li, "tls");

	if (listener_key_line(st, li, "address") == 0)
		config_error(st, l->line,
		             "listener '%s' has no address (for example address = 127.0.0.1:25)",
		             l->name);
	if (role_line == 0)
		config_error(st, l->line,
		             "listener '%s' has no role (inbound, outbound or submission)",
		             l->name);
	/* Everything below depends on the role and the TLS mode; a refused
	 * value was reported already. */
	if (role_line <= 0 || tls_line < 0)
		return;

	if (tls_line == 0)
		l->tls = l->role == ROLE_SUBMISSION ? LTLS_REQUIRED
		         : have_cert                ? LTLS_OPTIONAL
		                                    : LTLS_NONE;
	if (listener_key_line(st, li, "add_missing_headers") == 0)
		l->add_missing_headers = l->role == ROLE_SUBMISSION; /* RFC 6409 8 */

	if (l->tls != LTLS_NONE && !have_cert) {
		if (tls_line != 0)
			config_error(st, tls_line,
			             "listener '%s': tls = %s needs [tls] cert_file and key_file",
			             l->name, tls_names[l->tls]);
		else
			config_error(st, l->line,
			             "submission listener '%s' defaults to tls = required, which "
			             "needs [tls] cert_file and key_file (or set tls = none and "
			             "allow_plaintext_auth = yes, for tests only)",
			             l->name);
	}

	if (l->role != ROLE_SUBMISSION) {
		/* Spec 2: AUTH exists only on the dedicated submission socket. */
		static const char *const auth_only[] = {"allow_plaintext_auth",
		                                        "auth_legacy_advertise", "cram_md5",
		                                        "sender_login_match"};
		for (size_t i = 0; i < AR_NELEM(auth_only); i++) {
			int line = listener_key_line(st, li, auth_only[i]);
			const struct key_def *def = key_by_name(auth_only[i]);
			if (line > 0 && *(bool *)((char *)l + def->offset))
				config_error(st, line,
				             "listener '%s': %s applies to submission listeners "
				             "only; %s listeners never offer AUTH",
				             l->name, auth_only[i], role_names[l->role]);
		}
	}

	switch (l->role) {
	case ROLE_INBOUND:
		if (cfg->local_domains[0] == NULL)
			config_error(st, role_line,
			             "inbound listener '%s' needs [relay] local_domains: it "
			             "accepts mail only for local domains",
			             l->name);
		break;
	case ROLE_OUTBOUND:
		if (cfg->n_client_networks == 0)
			config_error(st, role_line,
			             "outbound listener '%s' needs [relay] client_networks: it "
			             "relays only for clients in those networks",
			             l->name);
		break;
	case ROLE_SUBMISSION:
		if (l->tls == LTLS_NONE && !l->allow_plaintext_auth)
			config_error(st, tls_line != 0 ? tls_line : role_line,
			             "submission listener '%s' has tls = none and "
			             "allow_plaintext_auth = no, so it could never offer AUTH "
			             "(RFC 4954 4: plaintext mechanisms only under TLS)",
			             l->name);
		if (cfg->users_file == NULL && config_section_next(cfg, "ldap", NULL) == NULL &&
		    config_section_next(cfg, "smtp-forward", NULL) == NULL)
			config_error(st, role_line,
			             "submission listener '%s' needs an authentication source: "
			             "set [users-file] path, an [ldap NAME] or [smtp-forward]",
			             l->name);
		break;
	}
}

/* IPv4-mapped IPv6 is compared as the IPv4 address it carries. */
struct bind_addr {
	int family;
	uint8_t addr[16];
	uint16_t port;
	bool any;
};

static struct bind_addr
bind_addr_of(const struct listener_cfg *l)
{
	struct bind_addr b = {0};
	uint8_t zero[16] = {0};

	if (l->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addr;
		b.family = AF_INET;
		memcpy(b.addr, &sin->sin_addr, 4);
		b.port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;
		const uint8_t *a = sin6->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		b.port = ntohs(sin6->sin6_port);
		if (memcmp(a, mapped, 12) == 0) {
			b.family = AF_INET;
			memcpy(b.addr, a + 12, 4);
		} else {
			b.family = AF_INET6;
			memcpy(b.addr, a, 16);
		}
	}
	b.any = memcmp(b.addr, zero, b.family == AF_INET ? 4 : 16) == 0;
	return b;
}

/* Would the two sockets fight over connections? The same address and port,
 * or a wildcard and anything on the same port: 0.0.0.0 covers every IPv4
 * address, and :: (bound dual-stack) every address of both families. */
static bool
addresses_clash(const struct listener_cfg *a, const struct listener_cfg *b)
{
	struct bind_addr x = bind_addr_of(a), y = bind_addr_of(b);

	if (x.port != y.port)
		return false;
	if ((x.any && x.family == AF_INET6) || (y.any && y.family == AF_INET6))
		return true;
	if (x.family != y.family)
		return false;
	return x.any || y.any || memcmp(x.addr, y.addr, 16) == 0;
}

static void
check_clashes(struct load_state *st)
{
	const struct config *cfg = st->cfg;

	for (size_t j = 0; j < cfg->n_listeners; j++) {
		const struct listener_cfg *b = &cfg->listeners[j];
		int b_line = listener_key_line(st, j, "address");
		if (b_line <= 0)
			continue;
		for (size_t i = 0; i < j; i++) {
			const struct listener_cfg *a = &cfg->listeners[i];
			if (listener_key_line(st, i, "address") <= 0 || !addresses_clash(a, b))
				continue;
			bool roles = listener_key_line(st, i, "role") > 0 &&
			             listener_key_line(st, j, "role") > 0;
			if (roles && (a->role == ROLE_SUBMISSION) != (b->role == ROLE_SUBMISSION)) {
				const struct listener_cfg *sub = a->role == ROLE_SUBMISSION ? a : b;
				const struct listener_cfg *other = sub == a ? b : a;
				config_error(
				        st, b_line,
				        "submission listener '%s' (%s) and %s listener '%s' "
				        "(%s) share an address:port; RFC 4954 / product rule: "
				        "the authentication listener needs its own address:port",
				        sub->name, sub->address_text, role_names[other->role],
				        other->name, other->address_text);
			} else {
				config_error(st, b_line,
				             "listener '%s' (%s) and listener '%s' (%s, line %d) "
				             "would listen on the same address:port",
				             b->name, b->address_text, a->name, a->address_text,
				             a->line);
			}
		}
	}
}

static void
config_validate(struct load_state *st)
{
	struct config *cfg = st->cfg;

	resolve_server(st);
	check_tls_files(st);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		resolve_limits(st, i);
		check_listener(st, i);
	}
	check_clashes(st);
	/* Line 0: about the whole file, as check-config reports such problems. */
	if (cfg->n_listeners == 0)
		config_error(st, 0, "no [listener NAME] section: nothing to listen on");
}

/* ---- load and free ---- */

static struct config *
config_new(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->user = xstrdup("authrelay");
	cfg->spool_dir = xstrdup("/var/spool/authrelay");
	cfg->chroot = true;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->tls_min_protocol = xstrdup("TLSv1.2");
	cfg->limits = (struct limits_cfg){
	        .max_connections = 2000,
	        .max_connections_per_ip = 20,
	        .ipv6_prefix = 64,
	        .max_messages_per_session = 100,
	        .max_recipients = 1024,
	        .max_message_size = 10485760,
	        .max_line_length = 512,
	        .max_auth_line_length = 12288,
	        .max_auth_failures = 3,
	        .auth_failure_delay_ms = 1000,
	        .command_timeout = 300,
	        .data_timeout = 180,
	        .max_errors = 20,
	};
	cfg->local_domains = xcalloc(1, sizeof(*cfg->local_domains));
	cfg->auth_threads = 2;
	cfg->auth_request_timeout = 30;
	return cfg;
}

static int
compare_errors(const void *a, const void *b)
{
	const struct config_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *
format_errors(struct load_state *st)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);

	if (f == NULL)
		fatal("out of memory formatting config errors");
	qsort(st->errors, st->n_errors, sizeof(*st->errors), compare_errors);
	for (size_t i = 0; i < st->n_errors; i++)
		fprintf(f, "%s:%d: %s\n", st->shown_path, st->errors[i].line, st->errors[i].msg);
	if (fclose(f) != 0)
		fatal("out of memory formatting config errors");
	return out;
}

static char *
absolute_dir(const char *abs_path)
{
	const char *slash = strrchr(abs_path, '/');

	if (slash == abs_path)
		return xstrdup("/");
	return xstrndup(abs_path, (size_t)(slash - abs_path));
}

struct config *
config_load(const char *path, char **errors_r)
{
	struct load_state st = {.shown_path = path, .sec = SEC_NONE};
	struct config *cfg = NULL;
	char *abs = NULL;
	int ret;

	if (errors_r != NULL)
		*errors_r = NULL;
	st.fp = fopen(path, "re");
	if (st.fp == NULL || (abs = realpath(path, NULL)) == NULL) {
		if (errors_r != NULL &&
		    asprintf(errors_r, "%s:0: cannot open: %s\n", path, strerror(errno)) < 0)
			*errors_r = NULL;
		goto fail;
	}
	cfg = st.cfg = config_new();
	cfg->path = abs;
	st.dir = absolute_dir(abs);

	ret = ini_parse_stream(ini_read_line, &st, config_ini_handler, &st);
	if (ferror(st.fp)) {
		/* A half-read file would only add misleading errors. */
		config_error(&st, st.lineno + 1, "read error: %s", strerror(errno));
	} else {
		if (ret > 0 && st.n_errors == 0) /* our reader should have caught it */
			config_error(&st, ret, "syntax error");
		else if (ret < 0)
			config_error(&st, st.lineno, "parser failure (%d)", ret);
		config_validate(&st);
	}

	if (st.n_errors > 0) {
		if (errors_r != NULL)
			*errors_r = format_errors(&st);
		config_free(cfg);
		cfg = NULL;
	}
fail:
	if (st.fp != NULL)
		fclose(st.fp);
	for (size_t i = 0; i < st.n_errors; i++)
		free(st.errors[i].msg);
	free(st.errors);
	free(st.meta);
	free(st.linebuf);
	free(st.dir);
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->user);
	free(cfg->auth_user);
	free(cfg->spool_dir);
	free(cfg->pid_file);
	free(cfg->tls_cert_file);
	free(cfg->tls_key_file);
	free(cfg->tls_ca_file);
	free(cfg->tls_ciphers);
	free(cfg->tls_min_protocol);
	if (cfg->local_domains != NULL) {
		for (char **d = cfg->local_domains; *d != NULL; d++)
			free(*d);
		free(cfg->local_domains);
	}
	free(cfg->client_networks);
	free(cfg->users_file);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		free(cfg->listeners[i].name);
		free(cfg->listeners[i].address_text);
		free(cfg->listeners[i].default_domain);
		free(cfg->listeners[i].banner);
	}
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->n_sections; i++) {
		struct config_section *sec = &cfg->sections[i];
		for (size_t k = 0; k < sec->n_kv; k++) {
			free(sec->kv[k].key);
			free(sec->kv[k].value);
		}
		free(sec->kv);
		free(sec->kind);
		free(sec->name);
	}
	free(cfg->sections);
	free(cfg);
}

/* ---- lookups ---- */

const struct listener_cfg *
config_listener(const struct config *cfg, const char *name)
{
	return find_listener(cfg, name);
}

bool
config_is_local_domain(const struct config *cfg, const char *domain)
{
	size_t len;

	if (domain == NULL)
		return false;
	len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		len--; /* the root label: "example.test." */
	if (len == 0)
		return false;
	for (char **d = cfg->local_domains; *d != NULL; d++) {
		size_t dlen = strlen(*d);
		if ((*d)[0] == '.') {
			/* ".example.test": strict subdomains only */
			if (len > dlen && ascii_strncasecmp(domain + len - dlen, *d, dlen) == 0)
				return true;
		} else if (len == dlen && ascii_strncasecmp(domain, *d, len) == 0) {
			return true;
		}
	}
	return false;
}

bool
config_is_client_network(const struct config *cfg, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cfg->n_client_networks; i++)
		if (net_cidr_match(&cfg->client_networks[i], sa))
			return true;
	return false;
}

const char *
config_role_name(enum listener_role role)
{
	return (size_t)role < AR_NELEM(role_names) ? role_names[role] : "?";
}

const char *
config_tls_name(enum listener_tls tls)
{
	return (size_t)tls < AR_NELEM(tls_names) ? tls_names[tls] : "?";
}
