/*
 * protection_config.c - parse [protection] and [alerts] (see
 * protection_config.h) from the keys config.c kept for them.
 *
 * One table lists every key with its section, its type and where it goes,
 * so the parser, the defaults and README.md's reference line up. Durations
 * are seconds with an optional unit (s, m, h, d); thresholds are
 * "COUNT/DURATION" ("10/5m") or "off"; lists are separated by commas or
 * spaces.
 */
#include "protection_config.h"
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pkey_type {
	PK_UINT,      /* decimal, min..max */
	PK_DURATION,  /* seconds, max */
	PK_REPLY,     /* 454 or 421 */
	PK_NETWORKS,  /* list of CIDR */
	PK_WORDS,     /* list of logins */
	PK_ADDRESSES, /* list of mail addresses */
	PK_ADDRESS,   /* one mail address */
	PK_THRESHOLD, /* COUNT/DURATION or off */
	PK_COMMAND,   /* free text */
};

struct pkey {
	const char *section; /* "protection" or "alerts" */
	const char *name;
	enum pkey_type type;
	size_t offset; /* in struct protection_config */
	unsigned min, max;
};

#define P(name, type, field, min, max)                                                             \
	{                                                                                          \
		"protection", name, type, offsetof(struct protection_config, field), min, max      \
	}
#define A(name, type, field, min, max)                                                             \
	{                                                                                          \
		"alerts", name, type, offsetof(struct protection_config, alerts.field), min, max   \
	}
#define DAY 86400u

static const struct pkey pkeys[] = {
        P("cache_positive_ttl", PK_DURATION, cache_positive_ttl, 0, 7 * DAY),
        P("cache_negative_ttl", PK_DURATION, cache_negative_ttl, 0, 7 * DAY),
        P("cache_size", PK_UINT, cache_size, 0, 10000000),
        P("cache_stale_ttl", PK_DURATION, cache_stale_ttl, 0, 30 * DAY),
        P("throttle_window", PK_DURATION, throttle_window, 1, 7 * DAY),
        P("throttle_size", PK_UINT, throttle_size, 16, 10000000),
        P("ipv6_prefix", PK_UINT, ipv6_prefix, 0, 128),
        P("delay_after", PK_UINT, delay_after, 0, 1000),
        P("delay_ms", PK_UINT, delay_ms, 0, 600000),
        P("delay_max_ms", PK_UINT, delay_max_ms, 0, 600000),
        P("lockout_client_failures", PK_UINT, lockout_client_failures, 0, 255),
        P("lockout_login_failures", PK_UINT, lockout_login_failures, 0, 255),
        P("lockout_client_login_failures", PK_UINT, lockout_client_login_failures, 0, 255),
        P("lockout_time", PK_DURATION, lockout_time, 1, 30 * DAY),
        P("lockout_reply", PK_REPLY, lockout_reply, 0, 0),
        P("allow_networks", PK_NETWORKS, allow_networks, 0, 0),
        P("sender_allow_users", PK_WORDS, sender_allow_users, 0, 0),
        P("messages_per_hour", PK_UINT, messages_per_hour, 0, UINT_MAX),
        P("recipients_per_hour", PK_UINT, recipients_per_hour, 0, UINT_MAX),
        P("send_limit_size", PK_UINT, send_limit_size, 16, 10000000),

        A("to", PK_ADDRESSES, to, 0, 0),
        A("from", PK_ADDRESS, from, 0, 0),
        A("login_failures_global", PK_THRESHOLD, login_failures_global, 0, 0),
        A("login_failures_per_login", PK_THRESHOLD, login_failures_per_login, 0, 0),
        A("login_failures_per_client", PK_THRESHOLD, login_failures_per_client, 0, 0),
        A("cooldown", PK_DURATION, cooldown, 0, 30 * DAY),
        A("multi_ip_threshold", PK_UINT, multi_ip_threshold, 0, 1000),
        A("multi_ip_window", PK_DURATION, multi_ip_window, 1, 7 * DAY),
        A("unreachable_after", PK_DURATION, unreachable_after, 0, 30 * DAY),
        A("hook", PK_COMMAND, hook, 0, 0),
};

struct perr {
	char *text;
	size_t len;
	const char *path;
};

static void perr_add(struct perr *e, int line, const char *fmt, ...) AR_PRINTF(3, 4);

static void
perr_add(struct perr *e, int line, const char *fmt, ...)
{
	char msg[512];
	char head[300];
	va_list ap;
	int a, b;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a = snprintf(head, sizeof(head), "%s:%d: ", e->path, line);
	b = (int)strlen(msg);
	e->text = xrealloc(e->text, e->len + (size_t)a + (size_t)b + 2);
	memcpy(e->text + e->len, head, (size_t)a);
	memcpy(e->text + e->len + a, msg, (size_t)b);
	e->len += (size_t)a + (size_t)b;
	e->text[e->len++] = '\n';
	e->text[e->len] = '\0';
}

static void
protection_defaults(struct protection_config *pc, const struct config *cfg)
{
	memset(pc, 0, sizeof(*pc));
	pc->cache_positive_ttl = 300;
	pc->cache_negative_ttl = 900;
	pc->cache_size = 10000;
	pc->cache_stale_ttl = 0;
	pc->throttle_window = 900;
	pc->throttle_size = 50000;
	pc->ipv6_prefix = 64;
	pc->delay_after = 3;
	pc->delay_ms = 1000;
	pc->delay_max_ms = 15000;
	pc->lockout_client_failures = 20;
	pc->lockout_login_failures = 10;
	pc->lockout_client_login_failures = 5;
	pc->lockout_time = 900;
	pc->lockout_reply = 454;
	pc->messages_per_hour = 500;
	pc->recipients_per_hour = 2000;
	pc->send_limit_size = 10000;
	pc->alerts.login_failures_global = (struct alert_threshold){100, 600};
	pc->alerts.login_failures_per_login = (struct alert_threshold){10, 600};
	pc->alerts.login_failures_per_client = (struct alert_threshold){20, 600};
	pc->alerts.cooldown = 1800;
	pc->alerts.multi_ip_threshold = 10;
	pc->alerts.multi_ip_window = 3600;
	pc->alerts.unreachable_after = 60;
	(void)cfg;
}

int
protection_parse_duration(const char *text, unsigned max, unsigned *r)
{
	unsigned long long v = 0, mult = 1;
	const char *p = text;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT_MAX)
			return -1;
	}
	switch (*p) {
	case '\0':
	case 's':
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = DAY;
		break;
	default:
		return -1;
	}
	if (*p != '\0' && p[1] != '\0')
		return -1;
	if (v * mult > max)
		return -1;
	*r = (unsigned)(v * mult);
	return 0;
}

static int
parse_uint_text(const char *text, unsigned min, unsigned max, unsigned *r)
{
	unsigned long long v = 0;

	if (*text == '\0')
		return -1;
	for (const char *p = text; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return -1;
	}
	if (v < min)
		return -1;
	*r = (unsigned)v;
	return 0;
}

/* A mail address for [alerts]: local@domain, printable ASCII, no blanks,
 * brackets, quotes or commas (it goes into headers and envelopes as is). */
static bool
valid_address(const char *a)
{
	const char *at = strrchr(a, '@');

	if (at == NULL || at == a || at[1] == '\0' || strlen(a) > 254)
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f || strchr("<>()[]\\,;:\"", *p) != NULL)
			return false;
	}
	return strchr(at + 1, '.') != NULL || ascii_strcasecmp(at + 1, "localhost") == 0;
}

/* Split a list value on commas and blanks; calls back for each item. */
static void
split_list(const char *value, void (*item)(const char *, size_t, void *), void *arg)
{
	const char *p = value;

	while (*p != '\0') {
		size_t n;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, ", \t");
		if (n > 0)
			item(p, n, arg);
		p += n;
	}
}

struct list_state {
	struct perr *err;
	int line;
	const struct pkey *key;
	char ***strs;
	size_t *n_strs;
	struct cidr **nets;
	size_t *n_nets;
};

static void
list_item(const char *p, size_t n, void *arg)
{
	struct list_state *ls = arg;
	char *s = xstrndup(p, n);
	const char *why = NULL;

	switch (ls->key->type) {
	case PK_NETWORKS: {
		struct cidr c;
		if (net_parse_cidr(s, &c, &why) != 0) {
			perr_add(ls->err, ls->line, "%s: '%s' is not a network (%s)", ls->key->name,
			         s, why != NULL ? why : "bad syntax");
			break;
		}
		*ls->nets = xrealloc(*ls->nets, (*ls->n_nets + 1) * sizeof(**ls->nets));
		(*ls->nets)[(*ls->n_nets)++] = c;
		break;
	}
	case PK_ADDRESSES:
		if (!valid_address(s)) {
			perr_add(ls->err, ls->line, "%s: '%s' is not a mail address (local@domain)",
			         ls->key->name, s);
			break;
		}
		/* fall through */
	default:
		*ls->strs = xrealloc(*ls->strs, (*ls->n_strs + 2) * sizeof(**ls->strs));
		(*ls->strs)[(*ls->n_strs)++] = s;
		(*ls->strs)[*ls->n_strs] = NULL;
		return;
	}
	free(s);
}

static void
parse_key(struct protection_config *pc, const struct pkey *k, const char *value, int line,
          struct perr *err)
{
	char *base = (char *)pc + k->offset;
	unsigned v;

	switch (k->type) {
	case PK_UINT:
		if (parse_uint_text(value, k->min, k->max, &v) < 0)
			perr_add(err, line, "%s = %s: expected a whole number from %u to %u",
			         k->name, value, k->min, k->max);
		else
			*(unsigned *)(void *)base = v;
		break;
	case PK_DURATION:
		if (protection_parse_duration(value, k->max, &v) < 0 || v < k->min)
			perr_add(err, line,
			         "%s = %s: expected a duration (seconds, or a number with s, m, h "
			         "or d) from %u to %u seconds",
			         k->name, value, k->min, k->max);
		else
			*(unsigned *)(void *)base = v;
		break;
	case PK_REPLY:
		if (strcmp(value, "454") == 0 || strcmp(value, "421") == 0)
			*(unsigned *)(void *)base = (unsigned)atoi(value);
		else
			perr_add(
			        err, line,
			        "%s = %s: expected 454 (temporary failure, the session goes on) or "
			        "421 (and the connection is closed)",
			        k->name, value);
		break;
	case PK_THRESHOLD: {
		struct alert_threshold *t = (struct alert_threshold *)(void *)base;
		const char *slash = strchr(value, '/');
		char num[16];
		if (ascii_strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0) {
			t->count = 0;
			break;
		}
		if (slash == NULL || (size_t)(slash - value) >= sizeof(num)) {
			perr_add(err, line, "%s = %s: expected COUNT/DURATION (like 10/5m) or off",
			         k->name, value);
			break;
		}
		memcpy(num, value, (size_t)(slash - value));
		num[slash - value] = '\0';
		if (parse_uint_text(num, 1, 1000000, &t->count) < 0 ||
		    protection_parse_duration(slash + 1, 7 * DAY, &t->window) < 0 || t->window == 0)
			perr_add(err, line,
			         "%s = %s: expected COUNT/DURATION (like 10/5m: more than 10 "
			         "within 5 "
			         "minutes; COUNT 1 to 1000000, DURATION up to 7d) or off",
			         k->name, value);
		break;
	}
	case PK_ADDRESS:
		if (!valid_address(value)) {
			perr_add(err, line, "%s = %s: not a mail address (local@domain)", k->name,
			         value);
			break;
		}
		free(*(char **)(void *)base);
		*(char **)(void *)base = xstrdup(value);
		break;
	case PK_COMMAND:
		free(*(char **)(void *)base);
		*(char **)(void *)base = value[0] != '\0' ? xstrdup(value) : NULL;
		break;
	case PK_NETWORKS:
	case PK_WORDS:
	case PK_ADDRESSES: {
		struct list_state ls = {.err = err, .line = line, .key = k};
		if (k->type == PK_NETWORKS) {
			ls.nets = (struct cidr **)(void *)base;
			ls.n_nets = (size_t *)(void *)(base + sizeof(struct cidr *));
		} else {
			ls.strs = (char ***)(void *)base;
			ls.n_strs = (size_t *)(void *)(base + sizeof(char **));
		}
		split_list(value, list_item, &ls);
		break;
	}
	}
}

static void
parse_section(struct protection_config *pc, const struct config_section *sec, struct perr *err)
{
	for (size_t i = 0; i < sec->n_kv; i++) {
		const struct config_kv *kv = &sec->kv[i];
		const struct pkey *k = NULL;

		for (size_t j = 0; j < AR_NELEM(pkeys); j++) {
			if (strcmp(pkeys[j].section, sec->kind) == 0 &&
			    strcmp(pkeys[j].name, kv->key) == 0)
				k = &pkeys[j];
		}
		if (k == NULL) {
			perr_add(err, kv->line, "unknown key '%s' in [%s]", kv->key, sec->kind);
			continue;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(sec->kv[j].key, kv->key) == 0) {
				perr_add(err, kv->line,
				         "%s is set twice in [%s] (first at line %d)", kv->key,
				         sec->kind, sec->kv[j].line);
				k = NULL;
				break;
			}
		}
		if (k != NULL)
			parse_key(pc, k, kv->value, kv->line, err);
	}
}

int
protection_config_load(const struct config *cfg, struct protection_config *pc, char **errors_r)
{
	struct perr err = {.path = cfg->path != NULL ? cfg->path : "config"};
	const struct config_section *sec;
	int line = 0;

	protection_defaults(pc, cfg);
	*errors_r = NULL;
	if ((sec = config_section_next(cfg, "protection", NULL)) != NULL)
		parse_section(pc, sec, &err);
	if ((sec = config_section_next(cfg, "alerts", NULL)) != NULL) {
		parse_section(pc, sec, &err);
		line = sec->line;
	}
	if (pc->delay_max_ms < pc->delay_ms)
		perr_add(&err, line, "[protection] delay_max_ms (%u) is below delay_ms (%u)",
		         pc->delay_max_ms, pc->delay_ms);
	if (pc->alerts.from == NULL) {
		size_t n = strlen(cfg->hostname != NULL ? cfg->hostname : "localhost") + 12;
		pc->alerts.from = xmalloc(n);
		snprintf(pc->alerts.from, n, "postmaster@%s",
		         cfg->hostname != NULL ? cfg->hostname : "localhost");
	}
	if (err.text != NULL) {
		protection_config_clear(pc);
		*errors_r = err.text;
		return -1;
	}
	return 0;
}

static void
free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
protection_config_clear(struct protection_config *pc)
{
	free(pc->allow_networks);
	free_strs(pc->sender_allow_users, pc->n_sender_allow_users);
	free_strs(pc->alerts.to, pc->alerts.n_to);
	free(pc->alerts.from);
	free(pc->alerts.hook);
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

bool
protection_sender_allowed(const struct protection_config *pc, const char *login)
{
	for (size_t i = 0; i < pc->n_sender_allow_users; i++) {
		if (ascii_strcasecmp(pc->sender_allow_users[i], login) == 0)
			return true;
	}
	return false;
}
