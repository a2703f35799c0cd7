/* SPDX-License-Identifier: ISC */
/*
 * protection_config.c - the tables of [protection] and [alerts] (see
 * protection_config.h) and the checks that involve several keys.
 *
 * Durations, lists and numbers take the one syntax of settings.h; the
 * alert thresholds are "COUNT/DURATION" ("10/5m": more than 10 within five
 * minutes) or "off", a type of their own here.
 */
#include "protection_config.h"
#include "../lib/log.h"
#include "../lib/settings.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400u

/* A mail address for [alerts]: local@domain, printable ASCII, no blanks,
 * brackets, quotes or commas (it goes into headers and envelopes as is). */
static const char *
check_address(char *a)
{
	const char *at = strrchr(a, '@');
	bool ok = at != NULL && at != a && at[1] != '\0' && strlen(a) <= 254;

	for (const unsigned char *p = (const unsigned char *)a; ok && *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("<>()[]\\,;:\"", *p) != NULL)
			ok = false;
	if (ok && strchr(at + 1, '.') == NULL && ascii_strcasecmp(at + 1, "localhost") != 0)
		ok = false;
	return ok ? NULL : "not a mail address (local@domain)";
}

/* COUNT/DURATION, or "off" (also "0") for no alert. */
static int
parse_threshold(struct settings_ctx *ctx, const struct settings_key *k, void *rec,
                const char *value)
{
	struct alert_threshold *t = (struct alert_threshold *)((char *)rec + k->offset);
	const char *slash = strchr(value, '/');
	uint64_t count, window;
	char num[24];

	if (ascii_strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0) {
		t->count = 0;
		return 0;
	}
	if (slash == NULL || (size_t)(slash - value) >= sizeof(num)) {
		settings_key_error(ctx, k, value, "expected COUNT/DURATION (like 10/5m) or off");
		return -1;
	}
	memcpy(num, value, (size_t)(slash - value));
	num[slash - value] = '\0';
	if (settings_parse_uint(num, &count) < 0 || count < 1 || count > 1000000 ||
	    settings_parse_duration(slash + 1, false, &window) < 0 || window == 0 ||
	    window > 7 * DAY) {
		settings_key_error(ctx, k, value,
		                   "expected COUNT/DURATION (like 10/5m: more than 10 within 5 "
		                   "minutes; COUNT 1 to 1000000, DURATION up to 7d) or off");
		return -1;
	}
	t->count = (unsigned)count;
	t->window = (unsigned)window;
	return 0;
}

static void
format_threshold(const struct settings_key *k, const void *rec, FILE *out)
{
	const struct alert_threshold *t =
	        (const struct alert_threshold *)((const char *)rec + k->offset);
	char window[32];

	if (t->count == 0) {
		fputs("off", out);
		return;
	}
	settings_format_duration(t->window, false, window, sizeof(window));
	fprintf(out, "%u/%s", t->count, window);
}

static const struct settings_name reply_names[] = {
        {"454", 454, false},
        {"421", 421, false},
        {0},
};

#define P(f) SETTINGS_FIELD(struct protection_config, f)
#define A(f) SETTINGS_FIELD(struct alerts_config, f)
#define THRESHOLD(f)                                                                               \
	SETTINGS_CUSTOM, A(f), .parse = parse_threshold, .format = format_threshold,               \
	                       .type_doc = "COUNT/DURATION | off"

static const struct settings_key protection_keys[] = {
        {"cache_positive_ttl", SETTINGS_DURATION, P(cache_positive_ttl), .def = "300",
         .max = 7 * DAY, .flags = SETTINGS_OFF,
         .meaning = "How long a successful login is answered from the cache; 0: not cached."},
        {"cache_negative_ttl", SETTINGS_DURATION, P(cache_negative_ttl), .def = "900",
         .max = 7 * DAY, .flags = SETTINGS_OFF,
         .meaning = "How long a wrong password or unknown user is answered from the cache."},
        {"cache_size", SETTINGS_UINT, P(cache_size), .def = "10000", .max = 10000000,
         .meaning = "Cached answers at most; 0 turns the cache off."},
        {"cache_stale_ttl", SETTINGS_DURATION, P(cache_stale_ttl), .def = "0", .max = 30 * DAY,
         .flags = SETTINGS_OFF,
         .meaning = "While a source answers tempfail, cached successes this much past their "
                    "TTL still answer 235."},
        {"throttle_window", SETTINGS_DURATION, P(throttle_window), .def = "900", .min = 1,
         .max = 7 * DAY, .meaning = "The sliding window in which failures are counted."},
        {"throttle_size", SETTINGS_UINT, P(throttle_size), .def = "50000", .min = 16,
         .max = 10000000, .meaning = "Clients, logins and pairs tracked at most."},
        {"ipv6_prefix", SETTINGS_UINT, P(ipv6_prefix), .def = "64", .max = 128,
         .meaning = "IPv6 clients are counted per network of this many bits."},
        {"delay_after", SETTINGS_UINT, P(delay_after), .def = "3", .max = 1000,
         .meaning = "Distinct failures before the answer to a failed AUTH is delayed."},
        {"delay_ms", SETTINGS_DURATION_MS, P(delay_ms), .def = "1000", .max = 600000,
         .meaning = "The first extra delay, doubled for each further failure."},
        {"delay_max_ms", SETTINGS_DURATION_MS, P(delay_max_ms), .def = "15000", .max = 600000,
         .meaning = "Cap of the growing delay."},
        {"lockout_client_failures", SETTINGS_UINT, P(lockout_client_failures), .def = "20",
         .max = 255,
         .meaning = "Distinct failed (login, password) pairs from one client before it is "
                    "locked out; 0: off."},
        {"lockout_login_failures", SETTINGS_UINT, P(lockout_login_failures), .def = "10",
         .max = 255,
         .meaning = "Distinct wrong passwords for one login before no source is asked for it; "
                    "0: off."},
        {"lockout_client_login_failures", SETTINGS_UINT, P(lockout_client_login_failures),
         .def = "5", .max = 255,
         .meaning = "Distinct wrong passwords for one login from one client before the pair "
                    "is locked out; 0: off."},
        {"lockout_time", SETTINGS_DURATION, P(lockout_time), .def = "900", .min = 1,
         .max = 30 * DAY, .meaning = "How long a lockout lasts."},
        {"lockout_reply", SETTINGS_ENUM, P(lockout_reply), .def = "454", .names = reply_names,
         .why = "454: temporary failure, the session goes on; 421: the connection is closed",
         .meaning = "Answer to an AUTH while locked out."},
        {"worker_failure_rate", SETTINGS_UINT, P(worker_failure_rate), .def = "20", .min = 1,
         .max = 100000,
         .meaning = "Failed credential checks per second one SMTP worker may cause, all its "
                    "sessions together; further checks wait."},
        {"allow_networks", SETTINGS_CIDRS, P(allow_networks), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct protection_config, n_allow_networks),
         .meaning = "Clients exempt from the per-client and per-pair counting (never from the "
                    "per-login shield)."},
        {"sender_allow_users", SETTINGS_LIST, P(sender_allow_users), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct protection_config, n_sender_allow_users),
         .type_doc = "list of logins",
         .meaning = "Logins that may use any MAIL FROM on a sender_login_match listener."},
        {"messages_per_hour", SETTINGS_UINT, P(messages_per_hour), .def = "500",
         .meaning = "Messages one authenticated user may send in any hour; 0: no limit."},
        {"recipients_per_hour", SETTINGS_UINT, P(recipients_per_hour), .def = "2000",
         .meaning = "Recipients one authenticated user may send to in any hour; 0: no limit."},
        {"send_limit_size", SETTINGS_UINT, P(send_limit_size), .def = "10000", .min = 16,
         .max = 10000000, .flags = SETTINGS_RESTART,
         .meaning = "Users tracked at once by the sending limits (shared memory)."},
};

static const struct settings_key alerts_keys[] = {
        {"to", SETTINGS_LIST, A(to), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct alerts_config, n_to), .check = check_address,
         .type_doc = "list of addresses",
         .meaning = "Administrators who get alert mails; empty: alerts are only logged."},
        {"from", SETTINGS_STRING, A(from), .check = check_address,
         .def_doc = "postmaster@ and [server] hostname", .type_doc = "address",
         .meaning = "The alert mails' From: (the envelope sender is always <>)."},
        {"login_failures_global", THRESHOLD(login_failures_global), .def = "100/10m",
         .meaning = "Alert when more than COUNT logins fail within DURATION, all together."},
        {"login_failures_per_login", THRESHOLD(login_failures_per_login), .def = "10/10m",
         .meaning = "The same for one login."},
        {"login_failures_per_client", THRESHOLD(login_failures_per_client), .def = "20/10m",
         .meaning = "The same for one client address."},
        {"cooldown", SETTINGS_DURATION, A(cooldown), .def = "30m", .max = 30 * DAY,
         .meaning = "At most one alert per subject within this time."},
        {"multi_ip_threshold", SETTINGS_UINT, A(multi_ip_threshold), .def = "10", .max = 1000,
         .meaning = "Alert when one login authenticates from more client addresses than this "
                    "within multi_ip_window; 0: off."},
        {"multi_ip_window", SETTINGS_DURATION, A(multi_ip_window), .def = "60m", .min = 1,
         .max = 7 * DAY, .meaning = "See multi_ip_threshold."},
        {"unreachable_after", SETTINGS_DURATION, A(unreachable_after), .def = "60", .max = 30 * DAY,
         .flags = SETTINGS_OFF,
         .meaning = "Alert when a source has answered only tempfail for this long."},
        {"hook", SETTINGS_STRING, A(hook), .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .type_doc = "command",
         .meaning = "Run with /bin/sh -c for every alert by the queue process, as [server] "
                    "queue_user, the alert text on stdin."},
};

static const struct settings_section protection_section = {
        .kind = "protection",
        .meaning = "Auth cache, brute-force throttle, sender policy exceptions and sending "
                   "limits.",
        .keys = protection_keys,
        .n_keys = AR_NELEM(protection_keys),
};

static const struct settings_section alerts_section = {
        .kind = "alerts",
        .meaning = "Alert mails to the administrators, and a hook.",
        .keys = alerts_keys,
        .n_keys = AR_NELEM(alerts_keys),
};

static const struct settings_section *const sections[] = {&protection_section, &alerts_section};

static void
protection_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	struct protection_config pc;

	protection_config_parse(cfg, &pc, ctx);
	protection_config_clear(&pc);
}

const struct config_module protection_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = protection_config_check,
};

void
protection_config_parse(const struct config *cfg, struct protection_config *pc,
                        struct settings_ctx *ctx)
{
	int plines[AR_NELEM(protection_keys)] = {0}, alines[AR_NELEM(alerts_keys)] = {0};
	const char *host = cfg->hostname != NULL ? cfg->hostname : "localhost";

	memset(pc, 0, sizeof(*pc));
	settings_parse_all(ctx, &protection_section, cfg, pc, plines);
	settings_parse_all(ctx, &alerts_section, cfg, &pc->alerts, alines);
	if (pc->delay_max_ms < pc->delay_ms) {
		int max_line = plines[settings_key_index(&protection_section, "delay_max_ms")];
		int line = plines[settings_key_index(&protection_section, "delay_ms")];
		const struct config_section *sec = config_section_next(cfg, "protection", NULL);
		if (max_line != 0)
			line = max_line;
		if (line == 0 && sec != NULL)
			line = sec->line;
		settings_error(ctx, abs(line),
		               "[protection] delay_max_ms (%u) is below delay_ms (%u)",
		               pc->delay_max_ms, pc->delay_ms);
	}
	if (pc->alerts.from == NULL && asprintf(&pc->alerts.from, "postmaster@%s", host) < 0)
		fatal("out of memory");
}

int
protection_config_load(const struct config *cfg, struct protection_config *pc, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);

	*errors_r = NULL;
	protection_config_parse(cfg, pc, ctx);
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		protection_config_clear(pc);
	}
	settings_ctx_free(ctx);
	return *errors_r != NULL ? -1 : 0;
}

void
protection_config_clear(struct protection_config *pc)
{
	settings_free(&protection_section, pc);
	settings_free(&alerts_section, &pc->alerts);
	memset(pc, 0, sizeof(*pc));
}

bool
protection_allowed(const struct protection_config *pc, const struct sockaddr *sa)
{
	for (size_t i = 0; i < pc->n_allow_networks; i++) {
		if (net_cidr_match(&pc->allow_networks[i], sa))
			return true;
	}
	return false;
}
