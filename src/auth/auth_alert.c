/* SPDX-License-Identifier: ISC */
/*
 * auth_alert.c - alert detection, de-duplication and output for the auth
 * process (see auth_alert.h).
 *
 * Counting: each threshold ("more than N within M") is a ring of 60 buckets
 * spanning M, so memory per key is fixed whatever N is, and a count is exact
 * to within one bucket (M/60). Per-login and per-client counters live in an
 * LRU table keyed by keyed digests, bounded like everything else here. The
 * last ALERT_HISTORY failures are kept as (time, login, client) so that an
 * alert can list the top logins and top client addresses behind it.
 *
 * Output: one log line per alert, always. A mail when [alerts] to is set
 * (at most ALERT_MAX_MAILS_PER_HOUR, so that a spray over thousands of
 * logins cannot flood the administrators; the log still has every alert).
 * The hook's text when [alerts] hook is set. Mail and hook text leave as
 * MAIL and HOOK messages (alert_proto.h) through the send callback: the
 * queue process spools the one and runs the hook with the other
 * (src/queue/alert_intake.c), so this process never starts a shell.
 */
#include "auth_alert.h"
#include "protection_config.h"
#include "../authwire/alert_proto.h"
#include "../lib/common.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/lru.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define ALERT_HISTORY 2048
#define ALERT_BUCKETS 60
#define ALERT_TABLE_SIZE 20000
#define ALERT_MULTI_IP_SIZE 10000
#define ALERT_COOLDOWN_SIZE 20000
#define ALERT_TOP 5
#define ALERT_TOP_TRACK 64
#define ALERT_MAX_SOURCES 16
#define ALERT_MAX_MAILS_PER_HOUR 60
#define ALERT_CLIENT_MAX 64
/* An escaped login in alert text (longer ones end in "..."). */
#define AUTH_ALERT_ESC_MAX 600

/* "more than N within M": counts in ALERT_BUCKETS slots of M/60 each. */
struct bucket_counter {
	uint64_t slot; /* the slot of the newest bucket */
	uint32_t counts[ALERT_BUCKETS];
};

struct alert_event {
	uint64_t at_ms;
	char *login;
	char client[ALERT_CLIENT_MAX];
};

struct multi_ip {
	unsigned n;
	struct {
		char client[ALERT_CLIENT_MAX];
		uint64_t at_ms;
	} ips[];
};

struct alert_source {
	char *name;
	bool down;
	bool alerted;
	uint64_t down_since_ms;
};

struct auth_alert {
	const struct config *cfg;
	const struct protection_config *pc;
	const struct alerts_config *ac;
	const struct keyhash *kh;
	auth_alert_send_cb *send;
	void *arg;
	struct alert_event history[ALERT_HISTORY];
	unsigned hist_next;
	struct bucket_counter global;
	struct lru *counters;  /* per login, per client: struct bucket_counter */
	struct lru *multi;     /* per login: struct multi_ip */
	unsigned multi_cap;    /* addresses a struct multi_ip holds */
	struct lru *cooldowns; /* per subject: uint64_t time of the last alert */
	struct alert_source sources[ALERT_MAX_SOURCES];
	size_t n_sources;
	uint64_t mail_hour_start_ms;
	unsigned mails_this_hour;
	unsigned long seq;
};

/* ---------------------------------------------------------------- text */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...) AR_PRINTF(2, 3);

static void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n + 256;
		b->p = xrealloc(b->p, b->cap);
	}
}

/* ------------------------------------------------------------- counting */

static uint64_t
bucket_slot_ms(unsigned window_s)
{
	uint64_t ms = (uint64_t)window_s * 1000 / ALERT_BUCKETS;
	return ms > 0 ? ms : 1;
}

/* Count one event at now; returns the events within the window. */
static unsigned
bucket_add(struct bucket_counter *c, unsigned window_s, uint64_t now_ms)
{
	uint64_t slot = now_ms / bucket_slot_ms(window_s);
	unsigned sum = 0;

	if (slot > c->slot) {
		uint64_t gap = slot - c->slot;
		for (uint64_t i = 1; i <= gap && i <= ALERT_BUCKETS; i++)
			c->counts[(c->slot + i) % ALERT_BUCKETS] = 0;
		c->slot = slot;
	}
	/* slot < c->slot cannot happen with a monotonic clock. */
	c->counts[slot % ALERT_BUCKETS]++;
	for (unsigned i = 0; i < ALERT_BUCKETS; i++)
		sum += c->counts[i];
	return sum;
}

static void
alert_key(const struct auth_alert *a, const char *tag, const char *value, uint8_t key[KEYHASH_LEN])
{
	const char *strs[] = {tag, value};

	keyhash_strings(a->kh, key, strs, 2);
}

/* ------------------------------------------------------------- creation */

struct auth_alert *
auth_alert_new(const struct config *cfg, const struct protection_config *pc,
               const struct keyhash *kh, auth_alert_send_cb *send, void *arg)
{
	struct auth_alert *a = xcalloc(1, sizeof(*a));

	a->cfg = cfg;
	a->pc = pc;
	a->ac = &pc->alerts;
	a->kh = kh;
	a->send = send;
	a->arg = arg;
	a->counters = lru_new(ALERT_TABLE_SIZE, free);
	a->multi = lru_new(ALERT_MULTI_IP_SIZE, free);
	a->multi_cap = pc->alerts.multi_ip_threshold + 1;
	a->cooldowns = lru_new(ALERT_COOLDOWN_SIZE, free);
	return a;
}

void
auth_alert_reconfigure(struct auth_alert *a, const struct config *cfg,
                       const struct protection_config *pc)
{
	a->cfg = cfg;
	a->pc = pc;
	a->ac = &pc->alerts;
	/* Its entries are sized by the threshold. */
	if (pc->alerts.multi_ip_threshold + 1 != a->multi_cap) {
		lru_clear(a->multi);
		a->multi_cap = pc->alerts.multi_ip_threshold + 1;
	}
}

void
auth_alert_free(struct auth_alert *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < ALERT_HISTORY; i++)
		free(a->history[i].login);
	for (size_t i = 0; i < a->n_sources; i++)
		free(a->sources[i].name);
	lru_free(a->counters);
	lru_free(a->multi);
	lru_free(a->cooldowns);
	free(a);
}

/* --------------------------------------------------------------- output */

/* True if subject had no alert within the cooldown; then it is marked. */
static bool
alert_cooldown_pass(struct auth_alert *a, const char *subject, uint64_t now_ms)
{
	uint8_t key[KEYHASH_LEN];
	uint64_t *last;

	alert_key(a, "cooldown", subject, key);
	last = lru_get(a->cooldowns, key);
	if (last != NULL && a->ac->cooldown > 0 &&
	    now_ms - *last < (uint64_t)a->ac->cooldown * 1000)
		return false;
	if (last == NULL) {
		last = xmalloc(sizeof(*last));
		lru_put(a->cooldowns, key, last);
	}
	*last = now_ms;
	return true;
}

static bool
alert_mail_budget(struct auth_alert *a, uint64_t now_ms)
{
	if (a->mail_hour_start_ms == 0 || now_ms - a->mail_hour_start_ms >= 3600 * 1000) {
		a->mail_hour_start_ms = now_ms;
		a->mails_this_hour = 0;
	}
	if (a->mails_this_hour >= ALERT_MAX_MAILS_PER_HOUR)
		return false;
	a->mails_this_hour++;
	return true;
}

/* Raise an alert: fields is the log line's "key=value ..." part (the fields
 * a client controls at its end), title the
 * mail's subject (after "[authrelay] "), body the mail's text. */
static void
alert_fire(struct auth_alert *a, const char *kind, const char *subject, const char *fields,
           const char *title, const char *body, uint64_t now_ms)
{
	const struct alerts_config *ac = a->ac;
	bool mailed = false, hooked = false;
	char date[64], when[64], rnd[8];
	struct sbuf m = {0}, h = {0}, to = {0};
	time_t now = time(NULL);
	struct tm tm;

	if (!alert_cooldown_pass(a, subject, now_ms)) {
		log_debug("alert kind=%s suppressed=cooldown %s", kind, fields);
		return;
	}
	a->seq++;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);

	if (ac->n_to > 0 && a->send != NULL) {
		if (alert_mail_budget(a, now_ms)) {
			if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
				memset(rnd, 0, sizeof(rnd));
			sbuf_printf(&m, "From: %s\r\nTo: ", ac->from);
			for (size_t i = 0; i < ac->n_to; i++)
				sbuf_printf(&m, "%s%s", i > 0 ? ",\r\n " : "", ac->to[i]);
			sbuf_printf(&m,
			            "\r\nSubject: [authrelay] %s\r\n"
			            "Date: %s\r\n"
			            "Message-ID: <alert.%lld.%lu.%02x%02x%02x%02x@%s>\r\n"
			            "Auto-Submitted: auto-generated\r\n"
			            "X-Authrelay-Alert: %s\r\n"
			            "MIME-Version: 1.0\r\n"
			            "Content-Type: text/plain; charset=us-ascii\r\n"
			            "Content-Transfer-Encoding: 7bit\r\n"
			            "\r\n",
			            title, date, (long long)now, a->seq, (unsigned char)rnd[0],
			            (unsigned char)rnd[1], (unsigned char)rnd[2],
			            (unsigned char)rnd[3], a->cfg->hostname, kind);
			sbuf_printf(&m, "Alert: %s\r\nHost: %s\r\nTime: %s\r\n\r\n", title,
			            a->cfg->hostname, when);
			/* body uses \n; the mail uses CRLF. */
			for (const char *p = body; *p != '\0'; p++) {
				if (*p == '\n')
					sbuf_printf(&m, "\r\n");
				else
					sbuf_printf(&m, "%c", *p);
			}
			sbuf_printf(&m,
			            "\r\nNo further alert on this subject for %u seconds "
			            "([alerts] cooldown).\r\n",
			            ac->cooldown);
			for (size_t i = 0; i < ac->n_to; i++)
				sbuf_printf(&to, "%s%s", i > 0 ? "," : "", ac->to[i]);
			mailed = a->send(
			        alert_proto_mail(&(struct alert_mail_msg){kind, to.p, m.p, m.len}),
			        a->arg);
		} else {
			log_warn("alert kind=%s not mailed: more than %d alert mails this hour",
			         kind, ALERT_MAX_MAILS_PER_HOUR);
		}
	}
	if (ac->hook != NULL && a->send != NULL) {
		sbuf_printf(&h, "kind=%s %s\nhost=%s\ntime=%s\n\n%s\n%s", kind, fields,
		            a->cfg->hostname, when, title, body);
		hooked = a->send(alert_proto_hook(&(struct alert_hook_msg){kind, h.p, h.len}),
		                 a->arg);
	}
	/* fields last: they may end with a client's login. */
	log_info("alert kind=%s mailed=%s hook=%s %s", kind, mailed ? "yes" : "no",
	         hooked ? "yes" : "no", fields);
	free(m.p);
	free(h.p);
	free(to.p);
}

/* ------------------------------------------------------ login failures */

struct top_item {
	const char *s;
	unsigned n;
};

static void
top_count(struct top_item *items, size_t *n_items, const char *s)
{
	for (size_t i = 0; i < *n_items; i++) {
		if (strcmp(items[i].s, s) == 0) {
			items[i].n++;
			return;
		}
	}
	if (*n_items < ALERT_TOP_TRACK)
		items[(*n_items)++] = (struct top_item){s, 1};
}

static int
top_cmp(const void *x, const void *y)
{
	const struct top_item *a = x, *b = y;

	if (a->n != b->n)
		return a->n < b->n ? 1 : -1;
	return strcmp(a->s, b->s);
}

static void
top_print(struct sbuf *b, const char *title, struct top_item *items, size_t n)
{
	char esc[AUTH_ALERT_ESC_MAX];

	qsort(items, n, sizeof(*items), top_cmp);
	sbuf_printf(b, "%s:\n", title);
	for (size_t i = 0; i < n && i < ALERT_TOP; i++)
		sbuf_printf(b, "  %6u  %s\n", items[i].n,
		            log_escape_str(items[i].s, esc, sizeof(esc)));
	if (n == 0)
		sbuf_printf(b, "  (none)\n");
}

/* The body of a login_failures alert: top logins and clients among the
 * failures of the window that match (login or client NULL = any). */
static void
failures_body(struct auth_alert *a, struct sbuf *b, unsigned window, const char *login,
              const char *client, uint64_t now_ms)
{
	struct top_item logins[ALERT_TOP_TRACK], clients[ALERT_TOP_TRACK];
	size_t n_logins = 0, n_clients = 0;
	unsigned seen = 0;

	for (size_t i = 0; i < ALERT_HISTORY; i++) {
		const struct alert_event *e = &a->history[i];
		if (e->login == NULL || e->at_ms + (uint64_t)window * 1000 <= now_ms)
			continue;
		if (login != NULL && strcmp(e->login, login) != 0)
			continue;
		if (client != NULL && strcmp(e->client, client) != 0)
			continue;
		seen++;
		top_count(logins, &n_logins, e->login);
		top_count(clients, &n_clients, e->client);
	}
	top_print(b, "Top logins", logins, n_logins);
	sbuf_printf(b, "\n");
	top_print(b, "Top client addresses", clients, n_clients);
	sbuf_printf(b, "\n(from the last %u failures kept in memory: %u in the window)\n",
	            ALERT_HISTORY, seen);
}

static void
failures_alert(struct auth_alert *a, const char *scope, const struct alert_threshold *t,
               unsigned count, const char *login, const char *client, uint64_t now_ms)
{
	char subject[AUTH_ALERT_ESC_MAX + 64], fields[AUTH_ALERT_ESC_MAX + 200],
	        title[AUTH_ALERT_ESC_MAX + 120], esc[AUTH_ALERT_ESC_MAX];
	const char *key = login != NULL ? login : client != NULL ? client : "";
	struct sbuf body = {0};

	log_escape_str(key, esc, sizeof(esc));
	snprintf(subject, sizeof(subject), "login_failures %s %s", scope, key);
	if (login != NULL)
		snprintf(fields, sizeof(fields), "scope=login failures=%u window=%u user=\"%s\"",
		         count, t->window, esc);
	else if (client != NULL)
		snprintf(fields, sizeof(fields), "scope=client client=%s failures=%u window=%u",
		         esc, count, t->window);
	else
		snprintf(fields, sizeof(fields), "scope=global failures=%u window=%u", count,
		         t->window);
	snprintf(title, sizeof(title), "SMTP authentication login failures: %u %s%s in %u s", count,
	         login != NULL    ? "for login "
	         : client != NULL ? "from "
	                          : "in total",
	         login != NULL || client != NULL ? esc : "", t->window);
	sbuf_printf(&body,
	            "Failed SMTP AUTH logins: %u within the last %u seconds (%s; the threshold "
	            "is more than %u).\n\n",
	            count, t->window,
	            login != NULL    ? "for this login"
	            : client != NULL ? "from this client address"
	                             : "all logins, all clients",
	            t->count);
	failures_body(a, &body, t->window, login, client, now_ms);
	alert_fire(a, "login_failures", subject, fields, title, body.p, now_ms);
	free(body.p);
}

static unsigned
keyed_count(struct auth_alert *a, const char *tag, const char *value,
            const struct alert_threshold *t, uint64_t now_ms)
{
	uint8_t key[KEYHASH_LEN];
	struct bucket_counter *c;

	alert_key(a, tag, value, key);
	c = lru_get(a->counters, key);
	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		lru_put(a->counters, key, c);
	}
	return bucket_add(c, t->window, now_ms);
}

void
auth_alert_failure(struct auth_alert *a, const char *login, const char *client, uint64_t now_ms)
{
	const struct alerts_config *ac = a->ac;
	struct alert_event *e = &a->history[a->hist_next];
	unsigned n;

	a->hist_next = (a->hist_next + 1) % ALERT_HISTORY;
	free(e->login);
	e->login = xstrdup(login);
	snprintf(e->client, sizeof(e->client), "%s", client[0] != '\0' ? client : "-");
	e->at_ms = now_ms;

	if (ac->login_failures_global.count > 0) {
		n = bucket_add(&a->global, ac->login_failures_global.window, now_ms);
		if (n > ac->login_failures_global.count)
			failures_alert(a, "global", &ac->login_failures_global, n, NULL, NULL,
			               now_ms);
	}
	if (ac->login_failures_per_login.count > 0) {
		n = keyed_count(a, "login", login, &ac->login_failures_per_login, now_ms);
		if (n > ac->login_failures_per_login.count)
			failures_alert(a, "login", &ac->login_failures_per_login, n, login, NULL,
			               now_ms);
	}
	if (ac->login_failures_per_client.count > 0) {
		n = keyed_count(a, "client", e->client, &ac->login_failures_per_client, now_ms);
		if (n > ac->login_failures_per_client.count)
			failures_alert(a, "client", &ac->login_failures_per_client, n, NULL,
			               e->client, now_ms);
	}
}

/* ------------------------------------------------------------ multi_ip */

void
auth_alert_success(struct auth_alert *a, const char *login, const char *client, uint64_t now_ms)
{
	const struct alerts_config *ac = a->ac;
	uint64_t window_ms = (uint64_t)ac->multi_ip_window * 1000;
	unsigned cap = ac->multi_ip_threshold + 1, keep = 0, i;
	uint8_t key[KEYHASH_LEN];
	struct multi_ip *m;

	if (ac->multi_ip_threshold == 0 || client[0] == '\0')
		return;
	alert_key(a, "multi_ip", login, key);
	m = lru_get(a->multi, key);
	if (m == NULL) {
		m = xcalloc(1, sizeof(*m) + cap * sizeof(m->ips[0]));
		lru_put(a->multi, key, m);
	}
	for (i = 0; i < m->n; i++) {
		if (m->ips[i].at_ms + window_ms > now_ms)
			m->ips[keep++] = m->ips[i];
	}
	m->n = keep;
	for (i = 0; i < m->n && strcmp(m->ips[i].client, client) != 0; i++)
		;
	if (i < m->n) {
		m->ips[i].at_ms = now_ms;
		return;
	}
	if (m->n == cap) {
		/* Cannot happen: an alert fired at cap; keep the newest. */
		memmove(&m->ips[0], &m->ips[1], (cap - 1) * sizeof(m->ips[0]));
		m->n--;
	}
	snprintf(m->ips[m->n].client, sizeof(m->ips[0].client), "%s", client);
	m->ips[m->n].at_ms = now_ms;
	m->n++;
	if (m->n > ac->multi_ip_threshold) {
		char subject[AUTH_ALERT_ESC_MAX + 64], fields[AUTH_ALERT_ESC_MAX + 120],
		        title[AUTH_ALERT_ESC_MAX + 120], esc[AUTH_ALERT_ESC_MAX];
		struct sbuf body = {0};

		log_escape_str(login, esc, sizeof(esc));
		snprintf(subject, sizeof(subject), "multi_ip %s", login);
		snprintf(fields, sizeof(fields), "clients=%u window=%u user=\"%s\"", m->n,
		         ac->multi_ip_window, esc);
		snprintf(title, sizeof(title), "login %s used from %u client addresses in %u s",
		         esc, m->n, ac->multi_ip_window);
		sbuf_printf(&body,
		            "The login %s authenticated from %u different client addresses within "
		            "%u seconds (the threshold is more than %u). Shared or stolen "
		            "credentials?\n\nClient addresses:\n",
		            esc, m->n, ac->multi_ip_window, ac->multi_ip_threshold);
		for (i = 0; i < m->n; i++)
			sbuf_printf(&body, "  %s\n",
			            log_escape_str(m->ips[i].client, esc, sizeof(esc)));
		alert_fire(a, "multi_ip", subject, fields, title, body.p, now_ms);
		free(body.p);
		/* Start over: the next alert needs as many new addresses. */
		m->n = 0;
	}
}

/* ---------------------------------------------------------- send_limit */

void
auth_alert_send_limit(struct auth_alert *a, const char *user, const char *client, const char *limit,
                      unsigned count, unsigned max, uint64_t now_ms)
{
	char subject[AUTH_ALERT_ESC_MAX + 64], fields[AUTH_ALERT_ESC_MAX * 2 + 160],
	        title[AUTH_ALERT_ESC_MAX + 120], esc[AUTH_ALERT_ESC_MAX], cesc[128], lesc[64],
	        body[AUTH_ALERT_ESC_MAX * 2 + 400];

	log_escape_str(user, esc, sizeof(esc));
	log_escape_str(client[0] != '\0' ? client : "-", cesc, sizeof(cesc));
	log_escape_str(limit, lesc, sizeof(lesc));
	snprintf(subject, sizeof(subject), "send_limit %s", user);
	snprintf(fields, sizeof(fields), "client=%s limit=%s count=%u max=%u user=\"%s\"", cesc,
	         lesc, count, max, esc);
	snprintf(title, sizeof(title), "sending limit hit by %s (%s %u)", esc, lesc, max);
	snprintf(body, sizeof(body),
	         "The authenticated user %s reached %s = %u (count %u) and gets 450 4.7.1\n"
	         "until the hour's count drops below the limit. The last attempt came from %s.\n"
	         "A burst of mail from one account is the mark of stolen credentials.\n",
	         esc, lesc, max, count, cesc);
	alert_fire(a, "send_limit", subject, fields, title, body, now_ms);
}

/* ---------------------------------------------------- directory_lockout */

void
auth_alert_directory_lockout(struct auth_alert *a, const char *login, const char *client,
                             const char *source, uint64_t now_ms)
{
	char subject[AUTH_ALERT_ESC_MAX + 64], fields[AUTH_ALERT_ESC_MAX + 200],
	        title[AUTH_ALERT_ESC_MAX + 120], esc[AUTH_ALERT_ESC_MAX], cesc[128],
	        body[AUTH_ALERT_ESC_MAX * 2 + 900];
	const struct protection_config *pc = a->pc;

	log_escape_str(login, esc, sizeof(esc));
	log_escape_str(client[0] != '\0' ? client : "-", cesc, sizeof(cesc));
	snprintf(subject, sizeof(subject), "directory_lockout %s", login);
	snprintf(fields, sizeof(fields), "client=%s source=%s user=\"%s\"", cesc, source, esc);
	snprintf(title, sizeof(title), "%s locked out by the directory", esc);
	snprintf(body, sizeof(body),
	         "The directory behind the %s source refused the login %s because the account\n"
	         "is locked out by the directory's own lockout policy (Active Directory: bind\n"
	         "sub-code 775). The last attempt came from %s.\n\n"
	         "The lockout shield ([protection] lockout_login_failures = %u) stops asking\n"
	         "the directory for a login after that many distinct wrong passwords, so that\n"
	         "attackers cannot lock accounts out through this gateway. Either the\n"
	         "directory's threshold is lower than that (lower lockout_login_failures\n"
	         "below it), the shield is off, or the wrong passwords came from elsewhere\n"
	         "(other servers that check passwords against the same directory).\n",
	         source, esc, cesc, pc->lockout_login_failures);
	alert_fire(a, "directory_lockout", subject, fields, title, body, now_ms);
}

/* --------------------------------------------------- source_unreachable */

void
auth_alert_source(struct auth_alert *a, const char *source, bool reachable, uint64_t now_ms)
{
	struct alert_source *s = NULL;

	for (size_t i = 0; i < a->n_sources && s == NULL; i++) {
		if (strcmp(a->sources[i].name, source) == 0)
			s = &a->sources[i];
	}
	if (s == NULL) {
		if (a->n_sources == ALERT_MAX_SOURCES)
			return;
		s = &a->sources[a->n_sources++];
		s->name = xstrdup(source);
	}
	if (!reachable && !s->down) {
		s->down = true;
		s->alerted = false;
		s->down_since_ms = now_ms;
	} else if (reachable && s->down) {
		if (s->alerted)
			log_info("alert_resolved kind=source_unreachable source=%s down_for=%llu",
			         s->name, (unsigned long long)((now_ms - s->down_since_ms) / 1000));
		s->down = false;
	}
}

void
auth_alert_source_config(struct auth_alert *a, const char *source, const char *detail,
                         uint64_t now_ms)
{
	char subject[600], fields[700], title[160], body[1200], esc[560];

	log_escape_str(detail, esc, sizeof(esc));
	snprintf(subject, sizeof(subject), "source_config %s %s", source, detail);
	snprintf(fields, sizeof(fields), "source=%s detail=\"%s\"", source, esc);
	snprintf(title, sizeof(title), "auth source %s misconfigured", source);
	snprintf(body, sizeof(body),
	         "The auth source %s cannot check passwords as configured:\n\n  %s\n\n"
	         "Logins it would check get a temporary failure (454 4.7.0), which\n"
	         "is not counted towards lockouts, until this is fixed. \"authrelay\n"
	         "test-query\" and \"authrelay check-config\" show the problem too.\n",
	         source, esc);
	alert_fire(a, "source_config", subject, fields, title, body, now_ms);
}

void
auth_alert_tick(struct auth_alert *a, uint64_t now_ms)
{
	unsigned after = a->ac->unreachable_after;

	for (size_t i = 0; after > 0 && i < a->n_sources; i++) {
		struct alert_source *s = &a->sources[i];
		char subject[128], fields[160], title[160], body[400];
		unsigned long long down_s;

		if (!s->down || s->alerted || now_ms - s->down_since_ms < (uint64_t)after * 1000)
			continue;
		s->alerted = true;
		down_s = (now_ms - s->down_since_ms) / 1000;
		snprintf(subject, sizeof(subject), "source_unreachable %s", s->name);
		snprintf(fields, sizeof(fields), "source=%s down_for=%llu", s->name, down_s);
		snprintf(title, sizeof(title), "auth source %s unreachable for %llu s", s->name,
		         down_s);
		snprintf(body, sizeof(body),
		         "The auth source %s has answered every login with a temporary failure\n"
		         "(454 4.7.0) for %llu seconds ([alerts] unreachable_after = %u).\n"
		         "Users without a cached login cannot send mail.\n",
		         s->name, down_s, after);
		alert_fire(a, "source_unreachable", subject, fields, title, body, now_ms);
	}
}
