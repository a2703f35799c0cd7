/*
 * queue_config.c - parses [queue] and [route NAME] (see queue_config.h).
 *
 * config.c keeps these sections as written (struct config_section); this
 * file turns them into a struct queue_config and reports every problem as
 * "file:line: message", the way config.c does for its own sections, so
 * check-config and the daemon's start show the same errors.
 */
#include "queue_config.h"
#include "../lib/config.h"
#include "../lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX_RECIPIENTS_LIMIT 1024 /* the product's documented range 1-1024 */

struct qc_load {
	const struct config *cfg;
	struct queue_config *qc;
	char *errors;
	size_t errors_len;
};

static void qc_error(struct qc_load *st, int line, const char *fmt, ...) AR_PRINTF(3, 4);

static void
qc_error(struct qc_load *st, int line, const char *fmt, ...)
{
	char msg[512], full[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int n = snprintf(full, sizeof(full), "%s:%d: %s\n",
	                 st->cfg->path ? st->cfg->path : "config", line, msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(full))
		n = (int)sizeof(full) - 1;
	st->errors = xrealloc(st->errors, st->errors_len + (size_t)n + 1);
	memcpy(st->errors + st->errors_len, full, (size_t)n + 1);
	st->errors_len += (size_t)n;
}

int
queue_config_parse_duration(const char *text, bool allow_off, unsigned *seconds_r)
{
	char *end;
	unsigned long long v, mult = 1;

	if (allow_off &&
	    (ascii_strcasecmp(text, "off") == 0 || ascii_strcasecmp(text, "no") == 0)) {
		*seconds_r = 0;
		return 0;
	}
	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	if (*end != '\0') {
		switch (*end) {
		case 's':
			mult = 1;
			break;
		case 'm':
			mult = 60;
			break;
		case 'h':
			mult = 3600;
			break;
		case 'd':
			mult = 86400;
			break;
		case 'w':
			mult = 7 * 86400;
			break;
		default:
			return -1;
		}
		if (end[1] != '\0')
			return -1;
	}
	if (v > 0xffffffffull / mult)
		return -1;
	*seconds_r = (unsigned)(v * mult);
	return 0;
}

int
queue_config_parse_nexthop(const char *text, unsigned default_port, struct nexthop *r,
                           const char **error_r)
{
	const char *host = text, *host_end, *port_text = NULL;
	bool brackets = false;

	memset(r, 0, sizeof(*r));
	if (*text == '\0') {
		*error_r = "empty next hop";
		return -1;
	}
	if (*text == '[') {
		host = text + 1;
		host_end = strchr(host, ']');
		if (host_end == NULL) {
			*error_r = "missing ']'";
			return -1;
		}
		brackets = true;
		if (host_end[1] == ':')
			port_text = host_end + 2;
		else if (host_end[1] != '\0') {
			*error_r = "text after ']' must be :PORT";
			return -1;
		}
	} else {
		host_end = strrchr(text, ':');
		if (host_end != NULL && strchr(text, ':') != host_end) {
			*error_r = "write an IPv6 address as [ADDRESS]:PORT";
			return -1;
		}
		if (host_end != NULL)
			port_text = host_end + 1;
		else
			host_end = text + strlen(text);
	}
	if (host_end == host) {
		*error_r = "empty host name";
		return -1;
	}
	for (const char *p = host; p < host_end; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
		      (brackets && *p == ':'))) {
			*error_r = "bad character in host name";
			return -1;
		}
	}
	r->port = default_port;
	if (port_text != NULL) {
		char *end;
		unsigned long p = strtoul(port_text, &end, 10);
		if (*port_text < '0' || *port_text > '9' || *end != '\0' || p == 0 || p > 65535) {
			*error_r = "bad port";
			return -1;
		}
		r->port = (unsigned)p;
	}
	r->host = xstrndup(host, (size_t)(host_end - host));
	for (char *p = r->host; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + ('a' - 'A'));
	/* An IP address needs no MX lookup even without brackets. */
	unsigned char buf[16];
	r->no_mx = brackets || inet_pton(AF_INET, r->host, buf) == 1 ||
	           inet_pton(AF_INET6, r->host, buf) == 1;
	return 0;
}

static int
qc_parse_bool(const char *v, bool *r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < AR_NELEM(yes); i++) {
		if (ascii_strcasecmp(v, yes[i]) == 0) {
			*r = true;
			return 0;
		}
		if (ascii_strcasecmp(v, no[i]) == 0) {
			*r = false;
			return 0;
		}
	}
	return -1;
}

static int
qc_parse_uint(const char *v, unsigned min, unsigned max, unsigned *r)
{
	char *end;
	unsigned long long n;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return -1;
	*r = (unsigned)n;
	return 0;
}

static int
qc_parse_tls(const char *v, enum route_tls *r)
{
	if (ascii_strcasecmp(v, "none") == 0 || ascii_strcasecmp(v, "no") == 0)
		*r = ROUTE_TLS_NONE;
	else if (ascii_strcasecmp(v, "opportunistic") == 0 || ascii_strcasecmp(v, "may") == 0)
		*r = ROUTE_TLS_OPPORTUNISTIC;
	else if (ascii_strcasecmp(v, "required") == 0 || ascii_strcasecmp(v, "verify") == 0)
		*r = ROUTE_TLS_REQUIRED;
	else
		return -1;
	return 0;
}

const char *
queue_config_tls_name(enum route_tls t)
{
	switch (t) {
	case ROUTE_TLS_NONE:
		return "none";
	case ROUTE_TLS_OPPORTUNISTIC:
		return "opportunistic";
	case ROUTE_TLS_REQUIRED:
		return "required";
	}
	return "?";
}

/* [queue]: unsigned keys with their range, durations, then the rest. */
static const struct {
	const char *key;
	size_t offset;
	unsigned min, max;
	bool duration;
	bool allow_off;
} qc_numbers[] = {
#define QN(k, lo, hi)                                                                              \
	{                                                                                          \
#k, offsetof(struct queue_config, k), lo, hi, false, false                         \
	}
#define QD(k, off)                                                                                 \
	{                                                                                          \
#k, offsetof(struct queue_config, k), 0, 0, true, off                              \
	}
        QN(smtp_port, 1, 65535),
        QN(max_connections, 1, 100000),
        QN(max_connections_per_destination, 1, 100000),
        QN(internal_max_connections, 1, 100000),
        QN(internal_max_connections_per_destination, 1, 100000),
        QN(max_recipients_per_transaction, 1, QUEUE_MAX_RECIPIENTS_LIMIT),
        QN(max_queue_size, 0, 100000000),
        QD(retry_min, false),
        QD(retry_max, false),
        QD(max_lifetime, false),
        QD(delay_warning, true),
        QD(connect_timeout, false),
        QD(command_timeout, false),
        QD(data_timeout, false),
        QD(connection_reuse_time, true),
#undef QN
#undef QD
};

static void
qc_load_queue(struct qc_load *st, const struct config_section *sec)
{
	struct queue_config *qc = st->qc;

	for (size_t i = 0; i < sec->n_kv; i++) {
		const struct config_kv *kv = &sec->kv[i];
		const char *k = kv->key, *v = kv->value, *err;
		bool done = false;

		for (size_t n = 0; n < AR_NELEM(qc_numbers) && !done; n++) {
			if (strcmp(k, qc_numbers[n].key) != 0)
				continue;
			done = true;
			unsigned *field = (unsigned *)((char *)qc + qc_numbers[n].offset);
			if (qc_numbers[n].duration) {
				if (queue_config_parse_duration(v, qc_numbers[n].allow_off,
				                                field) != 0)
					qc_error(st, kv->line,
					         "%s = %s: expected a duration such as 300, 300s, "
					         "5m, "
					         "2h or 5d%s",
					         k, v, qc_numbers[n].allow_off ? ", or off" : "");
			} else if (qc_parse_uint(v, qc_numbers[n].min, qc_numbers[n].max, field) !=
			           0) {
				qc_error(st, kv->line, "%s = %s: expected a number from %u to %u",
				         k, v, qc_numbers[n].min, qc_numbers[n].max);
			}
		}
		if (done)
			continue;
		if (strcmp(k, "resolver") == 0) {
			/* "ADDR[:PORT][,ADDR[:PORT]...]": checked by c-ares at start,
			 * and here for what a typo most often breaks. */
			if (*v == '\0' || strspn(v, "0123456789abcdefABCDEF.:[],") != strlen(v))
				qc_error(st, kv->line,
				         "resolver = %s: expected IP[:PORT] or [IPv6]:PORT, "
				         "comma-separated",
				         v);
			free(qc->resolver);
			qc->resolver = xstrdup(v);
		} else if (strcmp(k, "smarthost") == 0) {
			free(qc->smarthost.host);
			qc->smarthost.host = NULL;
			if (*v != '\0' &&
			    queue_config_parse_nexthop(v, 25, &qc->smarthost, &err) != 0)
				qc_error(st, kv->line, "smarthost = %s: %s", v, err);
		} else if (strcmp(k, "tls") == 0) {
			if (qc_parse_tls(v, &qc->tls) != 0)
				qc_error(st, kv->line,
				         "tls = %s: expected opportunistic, required or none", v);
		} else if (strcmp(k, "tls_ca_file") == 0) {
			free(qc->tls_ca_file);
			qc->tls_ca_file = xstrdup(v);
		} else if (strcmp(k, "helo_name") == 0) {
			free(qc->helo_name);
			qc->helo_name = xstrdup(v);
			if (*v == '\0' ||
			    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			              "0123456789.-[]:") != strlen(v))
				qc_error(st, kv->line, "helo_name = %s: expected a host name", v);
		} else if (strcmp(k, "group_commit") == 0) {
			if (qc_parse_bool(v, &qc->group_commit) != 0)
				qc_error(st, kv->line, "group_commit = %s: expected yes or no", v);
		} else {
			qc_error(st, kv->line, "unknown key '%s' in [queue]", k);
		}
	}
	if (qc->retry_min == 0)
		qc_error(st, sec->line, "[queue] retry_min must be at least 1s");
	if (qc->retry_max < qc->retry_min)
		qc_error(st, sec->line, "[queue] retry_max (%u s) is below retry_min (%u s)",
		         qc->retry_max, qc->retry_min);
}

static void
qc_add_domains(struct route_cfg *r, const char *list)
{
	char *copy = xstrdup(list), *save = NULL;
	for (char *tok = strtok_r(copy, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save)) {
		r->domains = xrealloc(r->domains, (r->n_domains + 1) * sizeof(*r->domains));
		char *d = xstrdup(tok);
		for (char *p = d; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p + ('a' - 'A'));
		r->domains[r->n_domains++] = d;
	}
	free(copy);
}

static bool
qc_valid_domain(const char *d)
{
	if (*d == '.')
		d++;
	if (*d == '\0' || strlen(d) > 253)
		return false;
	return strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == strlen(d) && d[0] != '.' &&
	       d[strlen(d) - 1] != '.' && strstr(d, "..") == NULL;
}

static void
qc_load_route(struct qc_load *st, const struct config_section *sec)
{
	struct queue_config *qc = st->qc;
	const char *type = config_section_get(sec, "type", NULL);
	const char *internal = NULL;
	int internal_line = 0;

	qc->routes = xrealloc(qc->routes, (qc->n_routes + 1) * sizeof(*qc->routes));
	struct route_cfg *r = &qc->routes[qc->n_routes++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(sec->name);
	r->line = sec->line;
	r->tls = ROUTE_TLS_OPPORTUNISTIC;
	r->type = ROUTE_SMTP;
	if (type != NULL && ascii_strcasecmp(type, "maildir") == 0)
		r->type = ROUTE_MAILDIR;

	for (size_t i = 0; i < sec->n_kv; i++) {
		const struct config_kv *kv = &sec->kv[i];
		const char *k = kv->key, *v = kv->value, *err;

		if (strcmp(k, "domains") == 0) {
			qc_add_domains(r, v);
		} else if (strcmp(k, "type") == 0) {
			if (ascii_strcasecmp(v, "smtp") != 0 && ascii_strcasecmp(v, "maildir") != 0)
				qc_error(st, kv->line, "type = %s: expected smtp or maildir", v);
		} else if (strcmp(k, "nexthop") == 0) {
			free(r->nexthop.host);
			if (queue_config_parse_nexthop(v, 25, &r->nexthop, &err) != 0)
				qc_error(st, kv->line, "nexthop = %s: %s", v, err);
		} else if (strcmp(k, "tls") == 0) {
			if (qc_parse_tls(v, &r->tls) != 0)
				qc_error(st, kv->line,
				         "tls = %s: expected opportunistic, required or none", v);
		} else if (strcmp(k, "tls_ca_file") == 0) {
			free(r->tls_ca_file);
			r->tls_ca_file = xstrdup(v);
		} else if (strcmp(k, "maildir") == 0) {
			free(r->maildir);
			r->maildir = xstrdup(v);
			if (*v != '/')
				qc_error(st, kv->line, "maildir = %s: expected an absolute path",
				         v);
		} else if (strcmp(k, "internal") == 0) {
			internal = v;
			internal_line = kv->line;
		} else {
			qc_error(st, kv->line, "unknown key '%s' in [route %s]", k, sec->name);
		}
	}
	if (r->n_domains == 0)
		qc_error(st, sec->line, "[route %s] needs domains = ...", sec->name);
	for (size_t i = 0; i < r->n_domains; i++)
		if (!qc_valid_domain(r->domains[i]))
			qc_error(st, sec->line, "[route %s] domains: '%s' is not a domain",
			         sec->name, r->domains[i]);
	if (r->type == ROUTE_MAILDIR && r->maildir == NULL)
		qc_error(st, sec->line, "[route %s] type = maildir needs maildir = PATH",
		         sec->name);
	if (r->type == ROUTE_MAILDIR && r->nexthop.host != NULL)
		qc_error(st, sec->line, "[route %s] type = maildir takes no nexthop", sec->name);
	if (r->type == ROUTE_SMTP && r->maildir != NULL)
		qc_error(st, sec->line, "[route %s] maildir = needs type = maildir", sec->name);
	/* Default: a route for our own domains leads to our own servers. */
	r->internal = r->n_domains > 0;
	for (size_t i = 0; i < r->n_domains; i++)
		if (!config_is_local_domain(st->cfg, r->domains[i]))
			r->internal = false;
	if (internal != NULL && qc_parse_bool(internal, &r->internal) != 0)
		qc_error(st, internal_line, "internal = %s: expected yes or no", internal);
	/* A domain in two routes would make the choice depend on file order. */
	for (size_t j = 0; j + 1 < qc->n_routes; j++)
		for (size_t a = 0; a < qc->routes[j].n_domains; a++)
			for (size_t b = 0; b < r->n_domains; b++)
				if (strcmp(qc->routes[j].domains[a], r->domains[b]) == 0)
					qc_error(st, sec->line,
					         "[route %s] domain %s is already routed by [route "
					         "%s]",
					         sec->name, r->domains[b], qc->routes[j].name);
}

struct queue_config *
queue_config_load(const struct config *cfg, char **errors_r)
{
	struct qc_load st = {.cfg = cfg};
	struct queue_config *qc = xcalloc(1, sizeof(*qc));
	const struct config_section *sec;

	st.qc = qc;
	qc->tls = ROUTE_TLS_OPPORTUNISTIC;
	qc->smtp_port = 25;
	qc->max_connections = 100;
	qc->max_connections_per_destination = 50;
	qc->internal_max_connections = 100;
	qc->internal_max_connections_per_destination = 50;
	qc->max_recipients_per_transaction = 100;
	qc->max_queue_size = 150000;
	qc->retry_min = 300;
	qc->retry_max = 4000;
	qc->max_lifetime = 5 * 86400;
	qc->delay_warning = 0;
	qc->connect_timeout = 30;
	qc->command_timeout = 300;
	qc->data_timeout = 600;
	qc->connection_reuse_time = 5;
	qc->group_commit = true;

	sec = config_section_next(cfg, "queue", NULL);
	if (sec != NULL)
		qc_load_queue(&st, sec);
	for (sec = config_section_next(cfg, "route", NULL); sec != NULL;
	     sec = config_section_next(cfg, "route", sec))
		qc_load_route(&st, sec);
	if (st.errors != NULL) {
		*errors_r = st.errors;
		queue_config_free(qc);
		return NULL;
	}
	return qc;
}

void
queue_config_free(struct queue_config *qc)
{
	if (qc == NULL)
		return;
	free(qc->resolver);
	free(qc->smarthost.host);
	free(qc->tls_ca_file);
	free(qc->helo_name);
	for (size_t i = 0; i < qc->n_routes; i++) {
		struct route_cfg *r = &qc->routes[i];
		free(r->name);
		for (size_t d = 0; d < r->n_domains; d++)
			free(r->domains[d]);
		free(r->domains);
		free(r->nexthop.host);
		free(r->tls_ca_file);
		free(r->maildir);
	}
	free(qc->routes);
	free(qc);
}

const struct route_cfg *
queue_config_route(const struct queue_config *qc, const char *domain)
{
	const struct route_cfg *best = NULL;
	size_t best_len = 0, dlen = strlen(domain);

	for (size_t i = 0; i < qc->n_routes; i++) {
		const struct route_cfg *r = &qc->routes[i];
		for (size_t j = 0; j < r->n_domains; j++) {
			const char *d = r->domains[j];
			size_t len = strlen(d);
			if (d[0] != '.') {
				if (ascii_strcasecmp(d, domain) == 0)
					return r;
				continue;
			}
			/* ".example.com": any subdomain, not example.com itself. */
			if (dlen > len && ascii_strcasecmp(domain + dlen - len, d) == 0 &&
			    len > best_len) {
				best = r;
				best_len = len;
			}
		}
	}
	return best;
}
