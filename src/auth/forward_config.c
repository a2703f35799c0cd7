/*
 * forward_config.c - the [smtp-forward] section (forward_config.h): every
 * key checked, the upstreams resolved (once, here, never on the loop), and
 * an upstream that is one of our own listeners refused (a login would loop).
 * Like ldap_config.c for the LDAP source: the source, its sessions and the
 * upstream health read the record this builds.
 */
#include "forward_config.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/net.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FWD_MAX_ADDRS_PER_NAME 4

static const char *const fwd_tls_names[] = {"starttls", "implicit", "none"};
static const char *const fwd_mech_names[] = {"PLAIN", "LOGIN"};

/* forward_config_parse() errors; valid until the next call (loop thread
 * only). */
static char fwd_error[4096];

struct fwd_errors {
	const struct config *cfg;
	size_t len;
	int count;
};

static void AR_PRINTF(3, 4) fwd_config_error(struct fwd_errors *e, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Room is kept for the count line auth_forward_new() puts first. */
	const size_t cap = sizeof(fwd_error) - 64;

	if (e->len >= cap - 1)
		return;
	n = snprintf(fwd_error + e->len, cap - e->len, "%s%s:%d: [%s] ", e->count > 0 ? "\n" : "",
	             e->cfg->path, line, FWD_SECTION);
	if (n > 0)
		e->len += (size_t)n;
	if (e->len < cap - 1) {
		va_start(ap, fmt);
		n = vsnprintf(fwd_error + e->len, cap - e->len, fmt, ap);
		va_end(ap);
		if (n > 0)
			e->len += (size_t)n;
	}
	if (e->len >= cap)
		e->len = cap - 1;
	e->count++;
}

static int
fwd_parse_uint(struct fwd_errors *e, const struct config_section *sec, const char *key,
               unsigned min, unsigned max, unsigned def, unsigned *r)
{
	int line = 0;
	const char *v = config_section_get(sec, key, &line);
	unsigned long n = 0;

	*r = def;
	if (v == NULL)
		return 0;
	if (*v == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 9) {
		fwd_config_error(e, line, "%s: expected a number, got \"%s\"", key, v);
		return -1;
	}
	n = strtoul(v, NULL, 10);
	if (n < min || n > max) {
		fwd_config_error(e, line, "%s: %lu is out of range (%u..%u)", key, n, min, max);
		return -1;
	}
	*r = (unsigned)n;
	return 0;
}

static bool
fwd_parse_bool(struct fwd_errors *e, const struct config_section *sec, const char *key, bool def)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	int line = 0;
	const char *v = config_section_get(sec, key, &line);

	if (v == NULL)
		return def;
	for (size_t i = 0; i < AR_NELEM(yes); i++) {
		if (ascii_strcasecmp(v, yes[i]) == 0)
			return true;
		if (ascii_strcasecmp(v, no[i]) == 0)
			return false;
	}
	fwd_config_error(e, line, "%s: expected yes or no, got \"%s\"", key, v);
	return def;
}

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
		return 0;
	}
	colon = strrchr(tok, ':');
	if (colon != NULL && strchr(tok, ':') != colon)
		return -1; /* a bare IPv6 address: needs brackets */
	hlen = colon != NULL ? (size_t)(colon - tok) : strlen(tok);
	if (hlen == 0 || hlen >= hostsz)
		return -1;
	memcpy(host, tok, hlen);
	host[hlen] = '\0';
	snprintf(port, portsz, "%s", colon != NULL ? colon + 1 : default_port);
	return port[0] == '\0' || strspn(port, "0123456789") != strlen(port) ? -1 : 0;
}

static bool
fwd_same_addr(const struct sockaddr *a, const struct sockaddr *b, bool with_port)
{
	uint8_t ka[16], kb[16];

	/* Compare as 16-byte keys (IPv4 as ::ffff:a.b.c.d), then ports. */
	net_client_key(a, 128, ka);
	net_client_key(b, 128, kb);
	if (memcmp(ka, kb, 16) != 0)
		return false;
	if (!with_port)
		return true;
	return (a->sa_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
	                                : ((const struct sockaddr_in6 *)a)->sin6_port) ==
	       (b->sa_family == AF_INET ? ((const struct sockaddr_in *)b)->sin_port
	                                : ((const struct sockaddr_in6 *)b)->sin6_port);
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
		    fwd_same_addr(i->ifa_addr, sa, false))
			return true;
	}
	return false;
}

/* check-config refuses an upstream that is one of our own listeners. */
static void
fwd_check_loops(struct fwd_errors *e, const struct config *cfg, struct fwd_settings *set, int line)
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
			if (fwd_same_addr(la, ua, false) ||
			    (fwd_is_wildcard(la) && fwd_is_local(ua, ifs)))
				fwd_config_error(
				        e, line,
				        "upstreams: %s (%s) is our own listener \"%s\" (%s, "
				        "line %d): logins would loop",
				        set->up[u].name, set->up[u].addr_text, lc->name,
				        lc->address_text, lc->line);
		}
	}
	if (ifs != NULL)
		freeifaddrs(ifs);
}

static void
fwd_add_upstreams(struct fwd_errors *e, struct fwd_settings *set, const char *value, int line,
                  const char *tls_name)
{
	char *copy = xstrdup(value), *save = NULL;
	const char *default_port = set->tls == FWD_TLS_IMPLICIT ? "465" : "587";

	for (char *tok = strtok_r(copy, " \t,", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t,", &save)) {
		char host[256], port[16];
		struct addrinfo hints, *res = NULL;
		size_t added = 0;
		int rc;

		if (fwd_split_hostport(tok, host, sizeof(host), port, sizeof(port), default_port) <
		            0 ||
		    strtoul(port, NULL, 10) == 0 || strtoul(port, NULL, 10) > 65535) {
			fwd_config_error(e, line,
			                 "upstreams: \"%s\" is not host:port (IPv6 as [addr]:port)",
			                 tok);
			continue;
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		/* DNS here, at start, once: never on the loop. */
		rc = getaddrinfo(host, port, &hints, &res);
		if (rc != 0) {
			fwd_config_error(e, line, "upstreams: cannot resolve \"%s\": %s", host,
			                 gai_strerror(rc));
			continue;
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
				fwd_config_error(e, line, "upstreams: more than %d addresses",
				                 FWD_MAX_UPSTREAMS);
				break;
			}
			set->up = xrealloc(set->up, (set->n_up + 1) * sizeof(*set->up));
			u = &set->up[set->n_up++];
			memset(u, 0, sizeof(*u));
			u->name = xstrdup(tok);
			u->tls_name = xstrdup(tls_name != NULL ? tls_name : host);
			memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
			u->addrlen = (socklen_t)ai->ai_addrlen;
			net_addr_str(ai->ai_addr, a, sizeof(a));
			snprintf(u->addr_text, sizeof(u->addr_text),
			         ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", a, port);
			added++;
		}
		freeaddrinfo(res);
	}
	free(copy);
}

void
forward_config_free(struct fwd_settings *set)
{
	for (size_t i = 0; i < set->n_up; i++) {
		free(set->up[i].name);
		free(set->up[i].tls_name);
	}
	free(set->up);
	free(set->ca_file);
	free(set->helo_name);
	memset(set, 0, sizeof(*set));
}

int
forward_config_parse(const struct config *cfg, struct fwd_settings *set, const char **error_r)
{
	static const char *const keys[] = {
	        "upstreams",  "tls",          "ca_file",    "tls_verify",
	        "tls_name",   "mechanisms",   "helo_name",  "connect_timeout",
	        "timeout",    "max_sessions", "queue_size", "failure_memory",
	        "preconnect",
	};
	const struct config_section *sec = config_section_next(cfg, FWD_SECTION, NULL);
	struct fwd_errors e = {.cfg = cfg};
	const char *v, *tls_name;
	int line = 0, up_line = 0;

	memset(set, 0, sizeof(*set));
	fwd_error[0] = '\0';
	if (sec == NULL) {
		fwd_config_error(&e, 0, "section missing");
		*error_r = fwd_error;
		return -1;
	}
	for (size_t i = 0; i < sec->n_kv; i++) {
		bool known = false;
		for (size_t k = 0; k < AR_NELEM(keys); k++)
			known |= strcmp(sec->kv[i].key, keys[k]) == 0;
		if (!known)
			fwd_config_error(&e, sec->kv[i].line, "unknown key \"%s\"", sec->kv[i].key);
	}

	set->tls = FWD_TLS_STARTTLS;
	if ((v = config_section_get(sec, "tls", &line)) != NULL) {
		size_t t;
		for (t = 0; t < AR_NELEM(fwd_tls_names); t++)
			if (ascii_strcasecmp(v, fwd_tls_names[t]) == 0)
				break;
		if (t == AR_NELEM(fwd_tls_names))
			fwd_config_error(&e, line,
			                 "tls: expected starttls, implicit or none, got \"%s\"", v);
		else
			set->tls = (enum fwd_tls)t;
	}
	set->tls_verify = fwd_parse_bool(&e, sec, "tls_verify", true);
	if ((v = config_section_get(sec, "ca_file", &line)) != NULL && *v != '\0')
		set->ca_file = xstrdup(v);

	if ((v = config_section_get(sec, "mechanisms", &line)) != NULL) {
		char *copy = xstrdup(v), *save = NULL;
		for (char *tok = strtok_r(copy, " \t,", &save); tok != NULL;
		     tok = strtok_r(NULL, " \t,", &save)) {
			size_t m;
			for (m = 0; m < AR_NELEM(fwd_mech_names); m++)
				if (ascii_strcasecmp(tok, fwd_mech_names[m]) == 0)
					break;
			if (m == AR_NELEM(fwd_mech_names)) {
				fwd_config_error(&e, line,
				                 "mechanisms: \"%s\" is not PLAIN or LOGIN", tok);
				continue;
			}
			bool dup = false;
			for (size_t j = 0; j < set->n_mechs; j++)
				dup |= set->mechs[j] == (enum fwd_mech)m;
			if (!dup)
				set->mechs[set->n_mechs++] = (enum fwd_mech)m;
		}
		free(copy);
		if (set->n_mechs == 0)
			fwd_config_error(&e, line, "mechanisms: name PLAIN, LOGIN or both");
	} else {
		set->mechs[0] = FWD_MECH_PLAIN;
		set->mechs[1] = FWD_MECH_LOGIN;
		set->n_mechs = 2;
	}
	v = config_section_get(sec, "helo_name", &line);
	if (v != NULL && (*v == '\0' || strpbrk(v, " \t\r\n") != NULL || strlen(v) > 255))
		fwd_config_error(&e, line, "helo_name: expected a host name, got \"%s\"", v);
	set->helo_name = xstrdup(v != NULL && *v != '\0' ? v : cfg->hostname);

	fwd_parse_uint(&e, sec, "connect_timeout", 1, 3600, 10, &set->connect_timeout);
	fwd_parse_uint(&e, sec, "timeout", 1, 3600, 15, &set->timeout);
	fwd_parse_uint(&e, sec, "max_sessions", 1, 10000, 32, &set->max_sessions);
	fwd_parse_uint(&e, sec, "queue_size", 0, 1000000, 512, &set->queue_size);
	fwd_parse_uint(&e, sec, "failure_memory", 0, 86400, 30, &set->failure_memory);
	fwd_parse_uint(&e, sec, "preconnect", 0, 10000, 0, &set->preconnect);
	config_section_get(sec, "preconnect", &line);
	if (set->preconnect > set->max_sessions)
		fwd_config_error(&e, line, "preconnect (%u) is more than max_sessions (%u)",
		                 set->preconnect, set->max_sessions);
	set->request_timeout = cfg->auth_request_timeout > 0 ? cfg->auth_request_timeout : 30;

	tls_name = config_section_get(sec, "tls_name", &line);
	if (tls_name != NULL && (*tls_name == '\0' || strpbrk(tls_name, " \t") != NULL)) {
		fwd_config_error(&e, line, "tls_name: expected one host name or address");
		tls_name = NULL;
	}
	if ((v = config_section_get(sec, "upstreams", &up_line)) == NULL || *v == '\0')
		fwd_config_error(&e, up_line > 0 ? up_line : sec->line,
		                 "upstreams: at least one host:port is needed");
	else
		fwd_add_upstreams(&e, set, v, up_line, tls_name);
	fwd_check_loops(&e, cfg, set, up_line);
	if (e.count > 0) {
		/* One "file:line: ..." per line, after a line saying how many
		 * (the auth server prefixes the first line with the source). */
		char head[64];
		int hl = snprintf(head, sizeof(head), "%d problem%s in [%s]:\n", e.count,
		                  e.count > 1 ? "s" : "", FWD_SECTION);
		if (hl > 0 && e.len + (size_t)hl < sizeof(fwd_error)) {
			memmove(fwd_error + hl, fwd_error, e.len + 1);
			memcpy(fwd_error, head, (size_t)hl);
		}
		forward_config_free(set);
		*error_r = fwd_error;
		return -1;
	}
	return 0;
}

const char *
forward_config_error(const struct config *cfg, const char *key, const char *msg)
{
	int line = 0;
	const struct config_section *sec = config_section_next(cfg, FWD_SECTION, NULL);

	config_section_get(sec, key, &line);
	snprintf(fwd_error, sizeof(fwd_error), "%s:%d: [%s] %s", cfg->path,
	         line > 0 ? line : sec->line, FWD_SECTION, msg);
	return fwd_error;
}

const char *
forward_config_tls_name(enum fwd_tls tls)
{
	return fwd_tls_names[tls];
}

const char *
forward_config_mech_name(enum fwd_mech mech)
{
	return fwd_mech_names[mech];
}
