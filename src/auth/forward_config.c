/* SPDX-License-Identifier: ISC */
/*
 * forward_config.c - the [smtp-forward] section (forward_config.h): its
 * table, the rules between keys, and the upstreams resolved (once, at start,
 * never on the loop) with an upstream that is one of our own listeners
 * refused (a login would loop). Like ldap_config.c for the LDAP source: the
 * source, its sessions and the upstream health read the record this builds.
 */
#include "forward_config.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/settings.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FWD_MAX_ADDRS_PER_NAME 4

static const char *const fwd_mech_names[] = {"PLAIN", "LOGIN"};

static const struct settings_name tls_names[] = {
        {"starttls", FWD_TLS_STARTTLS, false},
        {"implicit", FWD_TLS_IMPLICIT, false},
        {"none", FWD_TLS_NONE, false},
        {0},
};

/* ---- value checks ---- */

/* Split "host:port", "[v6]:port", "host" into host and port text. */
static int
fwd_split_hostport(const char *tok, char *host, size_t hostsz, char *port, size_t portsz,
                   const char *default_port)
{
	const char *colon;
	size_t hlen;

	if (tok[0] == '[') {
		const char *close = strchr(tok, ']');
		if (close == NULL)
			return -1;
		hlen = (size_t)(close - tok - 1);
		if (hlen == 0 || hlen >= hostsz)
			return -1;
		memcpy(host, tok + 1, hlen);
		host[hlen] = '\0';
		if (close[1] == '\0') {
			snprintf(port, portsz, "%s", default_port);
			return 0;
		}
		if (close[1] != ':' || close[2] == '\0')
			return -1;
		snprintf(port, portsz, "%s", close + 2);
	} else {
		colon = strrchr(tok, ':');
		if (colon != NULL && strchr(tok, ':') != colon)
			return -1; /* a bare IPv6 address: needs brackets */
		hlen = colon != NULL ? (size_t)(colon - tok) : strlen(tok);
		if (hlen == 0 || hlen >= hostsz)
			return -1;
		memcpy(host, tok, hlen);
		host[hlen] = '\0';
		snprintf(port, portsz, "%s", colon != NULL ? colon + 1 : default_port);
	}
	if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) == 0 || atoi(port) > 65535)
		return -1;
	return 0;
}

static const char *
check_upstream(char *v)
{
	char host[256], port[16];

	if (fwd_split_hostport(v, host, sizeof(host), port, sizeof(port), "587") < 0)
		return "not host:port (IPv6 as [addr]:port)";
	return NULL;
}

/* One name, as a certificate carries it or as EHLO says it. */
static const char *
check_one_name(char *v)
{
	if (strpbrk(v, " \t") != NULL || strlen(v) > 255)
		return "expected one host name or address";
	return NULL;
}

/* "PLAIN LOGIN", "login, plain": the preference order, each once. */
static int
parse_mechanisms(struct settings_ctx *ctx, const struct settings_key *k, void *rec,
                 const char *value)
{
	struct fwd_settings *set = rec;
	enum fwd_mech mechs[AR_NELEM(fwd_mech_names)];
	size_t n = 0;
	char *copy = xstrdup(value), *save = NULL;
	int ret = 0;

	for (char *tok = strtok_r(copy, " \t,", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t,", &save)) {
		size_t m = 0;
		bool dup = false;
		while (m < AR_NELEM(fwd_mech_names) &&
		       ascii_strcasecmp(tok, fwd_mech_names[m]) != 0)
			m++;
		if (m == AR_NELEM(fwd_mech_names)) {
			settings_key_error(ctx, k, value, "\"%s\" is not PLAIN or LOGIN", tok);
			ret = -1;
			continue;
		}
		for (size_t j = 0; j < n; j++)
			dup |= mechs[j] == (enum fwd_mech)m;
		if (!dup)
			mechs[n++] = (enum fwd_mech)m;
	}
	free(copy);
	if (ret == 0 && n == 0) {
		settings_key_error(ctx, k, value, "name PLAIN, LOGIN or both");
		ret = -1;
	}
	if (ret == 0) {
		memcpy(set->mechs, mechs, n * sizeof(mechs[0]));
		set->n_mechs = n;
	}
	return ret;
}

static void
format_mechanisms(const struct settings_key *k, const void *rec, FILE *out)
{
	const struct fwd_settings *set = rec;

	for (size_t i = 0; i < set->n_mechs; i++)
		fprintf(out, "%s%s", i > 0 ? ", " : "", fwd_mech_names[set->mechs[i]]);
}

/* ---- the table ---- */

#define F(f) SETTINGS_FIELD(struct fwd_settings, f)

static const struct settings_key forward_keys[] = {
        {"upstreams", SETTINGS_LIST, F(upstreams), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct fwd_settings, n_upstreams), .check = check_upstream,
         .def_doc = "required", .type_doc = "list of host:port",
         .meaning = "Upstream SMTP servers, tried in this order; without a port 587 (465 with "
                    "tls = implicit); IPv6 as [addr]:port."},
        {"tls", SETTINGS_ENUM, F(tls), .def = "starttls", .names = tls_names,
         .meaning = "starttls: STARTTLS is required; implicit: TLS from the first byte; none: "
                    "passwords in clear."},
        {"ca_file", SETTINGS_PATH, F(ca_file), .flags = SETTINGS_OPTIONAL,
         .def_doc = "the system's CAs",
         .meaning = "CA certificates the upstreams' certificates must chain to (read by "
                    "[server] auth_user)."},
        {"tls_verify", SETTINGS_BOOL, F(tls_verify), .def = "yes",
         .meaning = "Check the upstream's certificate and name."},
        {"tls_name", SETTINGS_STRING, F(tls_name), .flags = SETTINGS_OPTIONAL,
         .check = check_one_name, .def_doc = "the host as written in upstreams",
         .type_doc = "host name",
         .meaning = "The name the certificates must carry (and the SNI sent)."},
        {"mechanisms", SETTINGS_CUSTOM, F(mechs), .def = "PLAIN, LOGIN", .parse = parse_mechanisms,
         .format = format_mechanisms, .type_doc = "list of PLAIN, LOGIN",
         .meaning = "Preference order; the first one the upstream offers is used."},
        {"helo_name", SETTINGS_STRING, F(helo_name), .check = check_one_name,
         .def_doc = "[server] hostname", .type_doc = "host name", .meaning = "Our name in EHLO."},
        {"connect_timeout", SETTINGS_DURATION, F(connect_timeout), .def = "10", .min = 1,
         .max = 3600, .meaning = "TCP connect, and the TLS handshake."},
        {"timeout", SETTINGS_DURATION, F(timeout), .def = "15", .min = 1, .max = 3600,
         .meaning = "Each reply (greeting, EHLO, STARTTLS, AUTH)."},
        {"max_sessions", SETTINGS_UINT, F(max_sessions), .def = "32", .min = 1, .max = 10000,
         .meaning = "Connections open to the upstreams at once; beyond, logins wait."},
        {"queue_size", SETTINGS_UINT, F(queue_size), .def = "512", .max = 1000000,
         .meaning = "Logins that may wait for a session; one more gets 454."},
        {"failure_memory", SETTINGS_DURATION, F(failure_memory), .def = "30", .max = 86400,
         .flags = SETTINGS_OFF,
         .meaning = "How long an upstream that failed is skipped; 0: never."},
        {"preconnect", SETTINGS_UINT, F(preconnect), .def = "0", .max = 10000,
         .meaning = "Sessions kept ready to the first healthy upstream; at most max_sessions."},
};

static const struct settings_section forward_section = {
        .kind = FWD_SECTION,
        .once = true,
        .meaning = "SMTP forwarding: logins checked by AUTH against upstream servers.",
        .keys = forward_keys,
        .n_keys = AR_NELEM(forward_keys),
};

static const struct settings_section *const sections[] = {&forward_section};

static void
forward_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	struct fwd_settings set;

	if (!forward_config_present(cfg))
		return;
	forward_config_parse(cfg, &set, ctx);
	forward_config_free(&set);
}

const struct config_module forward_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = forward_config_check,
};

/* ---- parsing ---- */

bool
forward_config_present(const struct config *cfg)
{
	return config_section_next(cfg, FWD_SECTION, NULL) != NULL;
}

/* The line of key in [smtp-forward], or the section's. */
static int
key_line(const struct config *cfg, const char *key)
{
	const struct config_section *sec = config_section_next(cfg, FWD_SECTION, NULL);
	int line = 0;

	if (sec == NULL)
		return 0;
	if (config_section_get(sec, key, &line) == NULL)
		line = sec->line;
	return line;
}

void
forward_config_parse(const struct config *cfg, struct fwd_settings *set, struct settings_ctx *ctx)
{
	const struct config_section *sec = config_section_next(cfg, FWD_SECTION, NULL);
	int lines[AR_NELEM(forward_keys)] = {0};

	memset(set, 0, sizeof(*set));
	settings_defaults(&forward_section, set);
	settings_parse(ctx, &forward_section, sec, set, lines);

	if (set->n_upstreams == 0 && lines[settings_key_index(&forward_section, "upstreams")] >= 0)
		settings_error(ctx, key_line(cfg, "upstreams"),
		               "[smtp-forward] needs upstreams = HOST:PORT, ... (at least one)");
	if (set->preconnect > set->max_sessions)
		settings_error(ctx, key_line(cfg, "preconnect"),
		               "[smtp-forward] preconnect (%u) is more than max_sessions (%u)",
		               set->preconnect, set->max_sessions);
	if (set->tls == FWD_TLS_NONE && lines[settings_key_index(&forward_section, "tls")] > 0)
		settings_warning(ctx, key_line(cfg, "tls"),
		                 "tls = none: passwords go to the upstreams in cleartext");
	if (set->helo_name == NULL)
		set->helo_name = xstrdup(cfg->hostname != NULL ? cfg->hostname : "localhost");
	set->request_timeout = cfg->auth_request_timeout > 0 ? cfg->auth_request_timeout : 30;
}

int
forward_config_load(const struct config *cfg, struct fwd_settings *set, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);

	*errors_r = NULL;
	forward_config_parse(cfg, set, ctx);
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		forward_config_free(set);
	}
	settings_ctx_free(ctx);
	return *errors_r != NULL ? -1 : 0;
}

void
forward_config_free(struct fwd_settings *set)
{
	for (size_t i = 0; i < set->n_up; i++) {
		free(set->up[i].name);
		free(set->up[i].tls_name);
	}
	free(set->up);
	settings_free(&forward_section, set);
	memset(set, 0, sizeof(*set));
}

char *
forward_config_key_error(const struct config *cfg, const char *key, const char *value,
                         const char *msg)
{
	char *text;

	if (asprintf(&text, "%s:%d: %s = %s: %s\n", cfg->path, key_line(cfg, key), key, value,
	             msg) < 0)
		fatal("out of memory");
	return text;
}

/* ---- resolving, and loops ---- */

static bool
fwd_same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	uint8_t ka[16], kb[16];

	/* Compare as 16-byte keys (IPv4 as ::ffff:a.b.c.d). */
	net_client_key(a, 128, ka);
	net_client_key(b, 128, kb);
	return memcmp(ka, kb, 16) == 0;
}

static uint16_t
fwd_port(const struct sockaddr *sa)
{
	return ntohs(sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
	                                      : ((const struct sockaddr_in6 *)sa)->sin6_port);
}

static bool
fwd_is_wildcard(const struct sockaddr *sa)
{
	static const uint8_t zero[16];

	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, zero, 16) == 0;
}

/* True if sa is an address of this host: loopback or on an interface. */
static bool
fwd_is_local(const struct sockaddr *sa, struct ifaddrs *ifs)
{
	uint8_t k[16];

	net_client_key(sa, 128, k);
	/* ::ffff:127.0.0.0/104 and ::1 */
	if ((memcmp(k, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && k[12] == 127) ||
	    memcmp(k, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0)
		return true;
	for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr != NULL &&
		    (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6) &&
		    fwd_same_addr(i->ifa_addr, sa))
			return true;
	}
	return false;
}

/* Refuse an upstream that is one of our own listeners. */
static void
fwd_check_loops(struct settings_ctx *ctx, const struct config *cfg, struct fwd_settings *set,
                int line)
{
	struct ifaddrs *ifs = NULL;

	if (getifaddrs(&ifs) < 0)
		ifs = NULL;
	for (size_t u = 0; u < set->n_up; u++) {
		const struct sockaddr *ua = (const struct sockaddr *)&set->up[u].addr;
		for (size_t l = 0; l < cfg->n_listeners; l++) {
			const struct listener_cfg *lc = &cfg->listeners[l];
			const struct sockaddr *la = (const struct sockaddr *)&lc->addr;
			if (fwd_port(la) != fwd_port(ua))
				continue;
			if (fwd_same_addr(la, ua) || (fwd_is_wildcard(la) && fwd_is_local(ua, ifs)))
				settings_error(
				        ctx, line,
				        "[smtp-forward] upstreams: %s (%s) is our own listener "
				        "\"%s\" (%s, line %d): logins would loop",
				        set->up[u].name, set->up[u].addr_text, lc->name,
				        lc->address_text, lc->line);
		}
	}
	if (ifs != NULL)
		freeifaddrs(ifs);
}

static void
fwd_add_upstream(struct settings_ctx *ctx, struct fwd_settings *set, const char *tok, int line)
{
	const char *default_port = set->tls == FWD_TLS_IMPLICIT ? "465" : "587";
	char host[256], port[16];
	struct addrinfo hints, *res = NULL;
	size_t added = 0;
	int rc;

	if (fwd_split_hostport(tok, host, sizeof(host), port, sizeof(port), default_port) < 0)
		fatal("forward_config: upstream \"%s\" passed its check", tok);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	/* DNS here, at start, once: never on the loop. */
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		settings_error(ctx, line, "[smtp-forward] upstreams: cannot resolve \"%s\": %s",
		               host, gai_strerror(rc));
		return;
	}
	for (struct addrinfo *ai = res; ai != NULL && added < FWD_MAX_ADDRS_PER_NAME;
	     ai = ai->ai_next) {
		struct fwd_upstream *u;
		bool dup = false;
		char a[INET6_ADDRSTRLEN];

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		for (size_t i = 0; i < set->n_up; i++)
			dup |= set->up[i].addrlen == ai->ai_addrlen &&
			       memcmp(&set->up[i].addr, ai->ai_addr, ai->ai_addrlen) == 0;
		if (dup)
			continue;
		if (set->n_up == FWD_MAX_UPSTREAMS) {
			settings_error(ctx, line,
			               "[smtp-forward] upstreams: more than %d addresses",
			               FWD_MAX_UPSTREAMS);
			break;
		}
		set->up = xrealloc(set->up, (set->n_up + 1) * sizeof(*set->up));
		u = &set->up[set->n_up++];
		memset(u, 0, sizeof(*u));
		u->name = xstrdup(tok);
		u->tls_name = xstrdup(set->tls_name != NULL ? set->tls_name : host);
		memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
		u->addrlen = (socklen_t)ai->ai_addrlen;
		net_addr_str(ai->ai_addr, a, sizeof(a));
		snprintf(u->addr_text, sizeof(u->addr_text),
		         ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", a, port);
		added++;
	}
	freeaddrinfo(res);
}

int
forward_config_resolve(const struct config *cfg, struct fwd_settings *set, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);
	int line = key_line(cfg, "upstreams");

	*errors_r = NULL;
	for (size_t i = 0; i < set->n_upstreams; i++)
		fwd_add_upstream(ctx, set, set->upstreams[i], line);
	fwd_check_loops(ctx, cfg, set, line);
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		for (size_t i = 0; i < set->n_up; i++) {
			free(set->up[i].name);
			free(set->up[i].tls_name);
		}
		free(set->up);
		set->up = NULL;
		set->n_up = 0;
	}
	settings_ctx_free(ctx);
	return *errors_r != NULL ? -1 : 0;
}

const char *
forward_config_tls_name(enum fwd_tls tls)
{
	for (const struct settings_name *n = tls_names; n->name != NULL; n++)
		if (n->value == (int)tls)
			return n->name;
	return "?";
}

const char *
forward_config_mech_name(enum fwd_mech mech)
{
	return fwd_mech_names[mech];
}
