/* SPDX-License-Identifier: ISC */
/*
 * queue_config.c - the tables of [queue] and [route NAME] (see
 * queue_config.h) and the checks that involve several keys or routes.
 *
 * Values take the one syntax of settings.h; a next hop ("[host]:port",
 * "host:port") is a type of its own here. Every problem is reported as
 * "file:line: message", through config_load() (queue_config_module) and
 * again by queue_config_load() for a reload.
 */
#include "queue_config.h"
#include "../lib/config.h"
#include "../lib/net.h"
#include "../lib/settings.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX_RECIPIENTS_LIMIT 1024 /* the product's documented range 1-1024 */

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
parse_nexthop_key(struct settings_ctx *ctx, const struct settings_key *k, void *rec,
                  const char *value)
{
	struct nexthop *nh = (struct nexthop *)((char *)rec + k->offset);
	struct nexthop fresh;
	const char *err;

	if (*value == '\0') {
		free(nh->host);
		memset(nh, 0, sizeof(*nh));
		return 0;
	}
	if (queue_config_parse_nexthop(value, 25, &fresh, &err) != 0) {
		settings_key_error(ctx, k, value, "%s", err);
		return -1;
	}
	free(nh->host);
	*nh = fresh;
	return 0;
}

static void
format_nexthop(const struct settings_key *k, const void *rec, FILE *out)
{
	const struct nexthop *nh = (const struct nexthop *)((const char *)rec + k->offset);

	if (nh->host == NULL)
		return;
	if (nh->no_mx)
		fprintf(out, "[%s]:%u", nh->host, nh->port);
	else
		fprintf(out, "%s:%u", nh->host, nh->port);
}

static void
free_nexthop(const struct settings_key *k, void *rec)
{
	struct nexthop *nh = (struct nexthop *)((char *)rec + k->offset);

	free(nh->host);
	memset(nh, 0, sizeof(*nh));
}

/* "ADDR[:PORT][,ADDR[:PORT]...]": checked by c-ares at start, and here for
 * what a typo most often breaks. */
static const char *
check_resolver(char *v)
{
	if (strspn(v, "0123456789abcdefABCDEF.:[],") != strlen(v))
		return "expected IP[:PORT] or [IPv6]:PORT, comma-separated";
	return NULL;
}

static const char *
check_helo_name(char *v)
{
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:") !=
	    strlen(v))
		return "expected a host name";
	return NULL;
}

static const char *
check_absolute(char *v)
{
	return v[0] == '/' ? NULL : "expected an absolute path";
}

static const struct settings_name tls_names[] = {
        {"opportunistic", ROUTE_TLS_OPPORTUNISTIC, false},
        {"required", ROUTE_TLS_REQUIRED, false},
        {"none", ROUTE_TLS_NONE, false},
        {"may", ROUTE_TLS_OPPORTUNISTIC, true},
        {"verify", ROUTE_TLS_REQUIRED, true},
        {"no", ROUTE_TLS_NONE, true},
        {0},
};

static const struct settings_name type_names[] = {
        {"smtp", ROUTE_SMTP, false},
        {"maildir", ROUTE_MAILDIR, false},
        {0},
};

#define Q(f) SETTINGS_FIELD(struct queue_config, f)
#define R(f) SETTINGS_FIELD(struct route_cfg, f)
#define NEXTHOP(f)                                                                                 \
	SETTINGS_CUSTOM, f, .parse = parse_nexthop_key, .format = format_nexthop,                  \
	                    .free = free_nexthop, .type_doc = "next hop"

static const struct settings_key queue_keys[] = {
        {"resolver", SETTINGS_STRING, Q(resolver), .check = check_resolver,
         .flags = SETTINGS_RESTART, .def_doc = "/etc/resolv.conf",
         .type_doc = "IP[:PORT], comma-separated",
         .meaning = "DNS servers for MX and address lookups."},
        {"smarthost", NEXTHOP(Q(smarthost)),
         .meaning = "Where mail goes that no route names: [host]:port that host, host:port "
                    "its MX hosts."},
        {"tls", SETTINGS_ENUM, Q(tls), .def = "opportunistic", .names = tls_names,
         .meaning = "TLS for the smarthost and MX deliveries."},
        {"tls_ca_file", SETTINGS_PATH, Q(tls_ca_file), .flags = SETTINGS_OPTIONAL,
         .def_doc = "the system's trust store", .meaning = "CA certificates for tls = required."},
        {"smtp_port", SETTINGS_UINT, Q(smtp_port), .def = "25", .min = 1, .max = 65535,
         .meaning = "Port for MX and implicit-MX deliveries."},
        {"max_connections", SETTINGS_UINT, Q(max_connections), .def = "100", .min = 1,
         .max = 100000, .meaning = "Connections to external hosts, in total."},
        {"max_connections_per_destination", SETTINGS_UINT, Q(max_connections_per_destination),
         .def = "50", .min = 1, .max = 100000, .meaning = "Connections to one external address."},
        {"internal_max_connections", SETTINGS_UINT, Q(internal_max_connections), .def = "100",
         .min = 1, .max = 100000,
         .meaning = "Connections to internal mail servers (internal routes), in total."},
        {"internal_max_connections_per_destination", SETTINGS_UINT,
         Q(internal_max_connections_per_destination), .def = "50", .min = 1, .max = 100000,
         .meaning = "Connections to one internal server address."},
        {"max_recipients_per_transaction", SETTINGS_UINT, Q(max_recipients_per_transaction),
         .def = "100", .min = 1, .max = QUEUE_MAX_RECIPIENTS_LIMIT,
         .meaning = "Recipients in one SMTP transaction; a message with more is split."},
        {"max_queue_size", SETTINGS_UINT, Q(max_queue_size), .def = "150000", .max = 100000000,
         .meaning = "Messages in the queue at which new connections get 421 4.3.2; 0: no "
                    "limit."},
        {"retry_min", SETTINGS_DURATION, Q(retry_min), .def = "300", .min = 1,
         .meaning = "First retry after a temporary failure; doubles each attempt."},
        {"retry_max", SETTINGS_DURATION, Q(retry_max), .def = "4000",
         .meaning = "Longest wait between two attempts."},
        {"max_lifetime", SETTINGS_DURATION, Q(max_lifetime), .def = "5d",
         .meaning = "A message still deferred after this bounces."},
        {"delay_warning", SETTINGS_DURATION, Q(delay_warning), .def = "off", .flags = SETTINGS_OFF,
         .meaning = "Send the sender one \"delayed\" DSN once a message has waited this long."},
        {"connect_timeout", SETTINGS_DURATION, Q(connect_timeout), .def = "30",
         .meaning = "TCP connect to a next hop."},
        {"command_timeout", SETTINGS_DURATION, Q(command_timeout), .def = "300",
         .meaning = "Greeting and each reply (RFC 5321 4.5.3.2)."},
        {"data_timeout", SETTINGS_DURATION, Q(data_timeout), .def = "600",
         .meaning = "The reply to the final dot (RFC 5321 4.5.3.2.6)."},
        {"connection_reuse_time", SETTINGS_DURATION, Q(connection_reuse_time), .def = "5",
         .flags = SETTINGS_OFF,
         .meaning = "How long an idle connection is kept for the next message."},
        {"helo_name", SETTINGS_STRING, Q(helo_name), .check = check_helo_name,
         .def_doc = "[server] hostname", .type_doc = "host name", .meaning = "Our name in EHLO."},
        {"group_commit", SETTINGS_BOOL, Q(group_commit), .def = "yes",
         .meaning = "SMTP workers: messages that finish DATA together share one commit "
                    "round, made durable by one sync call."},
};

static const struct settings_key route_keys[] = {
        {"domains", SETTINGS_LIST, R(domains), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct route_cfg, n_domains),
         .check = settings_check_domain_pattern, .def_doc = "required",
         .type_doc = "list of domains",
         .meaning = "Recipient domains of this route; .example.test: every subdomain."},
        {"type", SETTINGS_ENUM, R(type), .def = "smtp", .names = type_names,
         .meaning = "Relay over SMTP, or deliver into a local Maildir."},
        {"nexthop", NEXTHOP(R(nexthop)), .def_doc = "the domain's MX hosts",
         .meaning = "Where this route's mail goes, as for smarthost."},
        {"tls", SETTINGS_ENUM, R(tls), .def = "opportunistic", .names = tls_names,
         .meaning = "As in [queue], for this route."},
        {"tls_ca_file", SETTINGS_PATH, R(tls_ca_file), .flags = SETTINGS_OPTIONAL,
         .def_doc = "the system's trust store", .meaning = "As in [queue], for this route."},
        {"maildir", SETTINGS_STRING, R(maildir), .check = check_absolute,
         .def_doc = "required for type = maildir",
         .meaning = "Absolute path of the Maildir; %u: local part, %d: domain, %%: a %."},
        {"internal", SETTINGS_BOOL, R(internal),
         .def_doc = "yes if every domain is one of [relay] local_domains",
         .meaning = "Count this route's connections against the internal_* limits."},
};

static const struct settings_section queue_section = {
        .kind = "queue",
        .meaning = "The queue process: DNS, the default next hop, delivery limits, retries.",
        .keys = queue_keys,
        .n_keys = AR_NELEM(queue_keys),
};

static const struct settings_section route_section = {
        .kind = "route",
        .named = true,
        .meaning = "A destination that does not take the default path.",
        .keys = route_keys,
        .n_keys = AR_NELEM(route_keys),
};

static const struct settings_section *const sections[] = {&queue_section, &route_section};

static void
queue_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	queue_config_free(queue_config_parse(cfg, ctx));
}

const struct config_module queue_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = queue_config_check,
};

const char *
queue_config_tls_name(enum route_tls t)
{
	for (const struct settings_name *n = tls_names; n->name != NULL; n++)
		if (!n->alias && n->value == (int)t)
			return n->name;
	return "?";
}

static void
check_queue(struct settings_ctx *ctx, const struct config *cfg, const struct queue_config *qc)
{
	const struct config_section *sec = config_section_next(cfg, "queue", NULL);
	int line = sec != NULL ? sec->line : 0;

	if (qc->retry_max < qc->retry_min)
		settings_error(ctx, line, "[queue] retry_max (%u s) is below retry_min (%u s)",
		               qc->retry_max, qc->retry_min);
}

static void
parse_route(struct settings_ctx *ctx, const struct config *cfg, struct queue_config *qc,
            const struct config_section *sec)
{
	int lines[AR_NELEM(route_keys)] = {0};

	qc->routes = xrealloc(qc->routes, (qc->n_routes + 1) * sizeof(*qc->routes));
	struct route_cfg *r = &qc->routes[qc->n_routes++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(sec->name);
	r->line = sec->line;
	settings_defaults(&route_section, r);
	settings_parse(ctx, &route_section, sec, r, lines);

	if (r->n_domains == 0 && lines[settings_key_index(&route_section, "domains")] >= 0)
		settings_error(ctx, sec->line, "[route %s] needs domains = ...", sec->name);
	if (r->type == ROUTE_MAILDIR && r->maildir == NULL)
		settings_error(ctx, sec->line, "[route %s] type = maildir needs maildir = PATH",
		               sec->name);
	if (r->type == ROUTE_MAILDIR && r->nexthop.host != NULL)
		settings_error(ctx, sec->line, "[route %s] type = maildir takes no nexthop",
		               sec->name);
	if (r->type == ROUTE_SMTP && r->maildir != NULL)
		settings_error(ctx, sec->line, "[route %s] maildir = needs type = maildir",
		               sec->name);
	/* Default: a route for our own domains leads to our own servers. */
	if (lines[settings_key_index(&route_section, "internal")] == 0) {
		r->internal = r->n_domains > 0;
		for (size_t i = 0; i < r->n_domains; i++)
			if (!config_is_local_domain(cfg, r->domains[i]))
				r->internal = false;
	}
	/* A domain in two routes would make the choice depend on file order. */
	for (size_t j = 0; j + 1 < qc->n_routes; j++)
		for (size_t a = 0; a < qc->routes[j].n_domains; a++)
			for (size_t b = 0; b < r->n_domains; b++)
				if (strcmp(qc->routes[j].domains[a], r->domains[b]) == 0)
					settings_error(ctx, sec->line,
					               "[route %s] domain %s is already routed by "
					               "[route %s]",
					               sec->name, r->domains[b],
					               qc->routes[j].name);
}

struct queue_config *
queue_config_parse(const struct config *cfg, struct settings_ctx *ctx)
{
	struct queue_config *qc = xcalloc(1, sizeof(*qc));
	int lines[AR_NELEM(queue_keys)] = {0};
	const struct config_section *sec = NULL;

	settings_parse_all(ctx, &queue_section, cfg, qc, lines);
	check_queue(ctx, cfg, qc);
	while ((sec = config_section_next(cfg, "route", sec)) != NULL)
		parse_route(ctx, cfg, qc, sec);
	return qc;
}

struct queue_config *
queue_config_load(const struct config *cfg, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);
	struct queue_config *qc = queue_config_parse(cfg, ctx);

	*errors_r = NULL;
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		queue_config_free(qc);
		qc = NULL;
	}
	settings_ctx_free(ctx);
	return qc;
}

void
queue_config_free(struct queue_config *qc)
{
	if (qc == NULL)
		return;
	settings_free(&queue_section, qc);
	for (size_t i = 0; i < qc->n_routes; i++) {
		free(qc->routes[i].name);
		settings_free(&route_section, &qc->routes[i]);
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
