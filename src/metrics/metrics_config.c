/* SPDX-License-Identifier: ISC */
/*
 * metrics_config.c - the table of [metrics] (see metrics_config.h) and its
 * one check across sections: the endpoint never takes a mail listener's
 * address, where a client would get an HTTP answer to its EHLO, or the
 * start would fail on a port in use.
 */
#include "metrics_config.h"
#include "../lib/settings.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define M(f) SETTINGS_FIELD(struct metrics_config, f)

static const struct settings_key metrics_keys[] = {
        {"address", SETTINGS_HOSTPORT, M(address), .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .type_doc = "address:port",
         .meaning = "Where GET /metrics and /healthz are served over HTTP, never a mail "
                    "listener's address; not set: no endpoint and no counting."},
        {"allow", SETTINGS_CIDRS, M(allow), .flags = SETTINGS_COUNTED | SETTINGS_RESTART,
         .count_offset = offsetof(struct metrics_config, n_allow), .def = "127.0.0.0/8, ::1",
         .meaning = "Clients that may ask the endpoint; others get 403."},
        {"timeout", SETTINGS_DURATION, M(timeout), .def = "10", .min = 1, .max = 300,
         .flags = SETTINGS_RESTART,
         .meaning = "How long a connection to the endpoint may stay idle or take to send its "
                    "request."},
};

static const struct settings_section metrics_section = {
        .kind = "metrics",
        .meaning = "The metrics endpoint (Prometheus and OpenMetrics text) and its health "
                   "check.",
        .keys = metrics_keys,
        .n_keys = AR_NELEM(metrics_keys),
};

static const struct settings_section *const sections[] = {&metrics_section};

static void
metrics_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	struct metrics_config mc;

	metrics_config_parse(cfg, &mc, ctx);
	metrics_config_clear(&mc);
}

const struct config_module metrics_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = metrics_config_check,
};

/* The address and port of sa, the address as 16 bytes (IPv4 as
 * v4-mapped) and whether it is a wildcard. */
static unsigned
sock_parts(const struct sockaddr *sa, uint8_t addr[16], bool *any_r)
{
	static const uint8_t zero[16];

	memset(addr, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &sin->sin_addr, 4);
		*any_r = sin->sin_addr.s_addr == htonl(INADDR_ANY);
		return ntohs(sin->sin_port);
	}
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	memcpy(addr, &sin6->sin6_addr, 16);
	*any_r = memcmp(addr, zero, 16) == 0;
	return ntohs(sin6->sin6_port);
}

bool
metrics_config_same_socket(const struct sockaddr *a, const struct sockaddr *b)
{
	uint8_t aa[16], ba[16];
	bool a_any, b_any;

	if (sock_parts(a, aa, &a_any) != sock_parts(b, ba, &b_any))
		return false;
	return a_any || b_any || memcmp(aa, ba, 16) == 0;
}

void
metrics_config_parse(const struct config *cfg, struct metrics_config *mc, struct settings_ctx *ctx)
{
	int lines[AR_NELEM(metrics_keys)] = {0};
	const char *why;

	memset(mc, 0, sizeof(*mc));
	settings_parse_all(ctx, &metrics_section, cfg, mc, lines);
	if (mc->address == NULL)
		return;
	int line = abs(lines[settings_key_index(&metrics_section, "address")]);
	if (net_parse_hostport(mc->address, &mc->addr, &mc->addrlen, &why) != 0) {
		/* settings_parse_all() reported it already. */
		free(mc->address);
		mc->address = NULL;
		return;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_cfg *l = &cfg->listeners[i];
		if (metrics_config_same_socket((const struct sockaddr *)&mc->addr,
		                               (const struct sockaddr *)&l->addr))
			settings_error(ctx, line,
			               "[metrics] address = %s: listener %s (%s) takes it; the "
			               "metrics endpoint needs an address:port of its own, never a "
			               "mail port",
			               mc->address, l->name, l->address_text);
	}
}

int
metrics_config_load(const struct config *cfg, struct metrics_config *mc, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);

	*errors_r = NULL;
	metrics_config_parse(cfg, mc, ctx);
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		metrics_config_clear(mc);
	}
	settings_ctx_free(ctx);
	return *errors_r != NULL ? -1 : 0;
}

void
metrics_config_clear(struct metrics_config *mc)
{
	settings_free(&metrics_section, mc);
	memset(mc, 0, sizeof(*mc));
}
