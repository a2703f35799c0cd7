/*
 * auth_throttle.c - failure counting, delays and lockouts (see
 * auth_throttle.h).
 *
 * One LRU table (lib/lru.c, throttle_size entries) holds an entry per key;
 * keys are keyed digests of ("c", client), ("l", login) and ("p", client,
 * login), the login folded to lower case so that case games do not get an
 * attacker fresh counters. An entry keeps the distinct failures of the
 * window as (digest of login and password, last seen) pairs, at most one
 * more than the highest threshold, and the time its lockout ends.
 *
 * Memory is bounded by throttle_size; under a flood of new keys the least
 * recently touched are evicted first, and a locked client that keeps trying
 * keeps its entry fresh.
 */
#include "auth_throttle.h"
#include "protection_config.h"
#include "../lib/common.h"
#include "../lib/log.h"
#include "../lib/lru.h"
#include "../lib/net.h"
#include "../authwire/auth_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define THROTTLE_MAX_TRACK 256

struct throttle_fail {
	uint64_t digest; /* first bytes of the keyed digest of (login, password) */
	uint64_t at_ms;  /* last time this password failed */
};

/* Who a lockout is for, kept from its start for the admin's listing and
 * unlock (the table's keys are digests). */
struct throttle_label {
	enum auth_throttle_scope scope;
	char *client; /* NULL for a login lockout */
	char *login;  /* folded; NULL for a client lockout */
	uint8_t client_key[16];
	bool client_is_addr;
	unsigned failures;
};

struct throttle_entry {
	uint64_t locked_until_ms;
	struct throttle_label *label; /* set when a lockout starts */
	unsigned n;
	struct throttle_fail fails[]; /* oldest first, cap entries */
};

struct auth_throttle {
	const struct protection_config *pc;
	const struct keyhash *kh;
	struct lru *table;
	size_t size; /* throttle_size the table was made with */
	unsigned cap;
	uint64_t window_ms;
};

/* The per-client part of the keys: a 16-byte key masked like the connection
 * limits do (net_client_key), or the text itself when it is no address. */
struct client_id {
	uint8_t key[16];
	bool is_addr;
	bool allowed; /* inside allow_networks */
	const char *text;
};

static void
label_free(struct throttle_label *l)
{
	if (l == NULL)
		return;
	free(l->client);
	free(l->login);
	free(l);
}

static void
entry_free(void *value)
{
	struct throttle_entry *e = value;
	label_free(e->label);
	free(e);
}

/* Distinct failures an entry keeps: one more than the highest threshold. */
static unsigned
throttle_cap(const struct protection_config *pc)
{
	unsigned cap = pc->delay_after + 8;

	if (pc->lockout_client_failures + 1 > cap)
		cap = pc->lockout_client_failures + 1;
	if (pc->lockout_login_failures + 1 > cap)
		cap = pc->lockout_login_failures + 1;
	if (pc->lockout_client_login_failures + 1 > cap)
		cap = pc->lockout_client_login_failures + 1;
	return cap < THROTTLE_MAX_TRACK ? cap : THROTTLE_MAX_TRACK;
}

struct auth_throttle *
auth_throttle_new(const struct protection_config *pc, const struct keyhash *kh)
{
	struct auth_throttle *t = xcalloc(1, sizeof(*t));

	t->cap = throttle_cap(pc);
	t->pc = pc;
	t->kh = kh;
	t->size = pc->throttle_size;
	t->table = lru_new(t->size, entry_free);
	t->window_ms = (uint64_t)pc->throttle_window * 1000;
	return t;
}

void
auth_throttle_reconfigure(struct auth_throttle *t, const struct protection_config *pc)
{
	unsigned cap = throttle_cap(pc);
	struct throttle_entry *e;
	const uint8_t *key;
	struct lru *table;

	t->pc = pc;
	t->window_ms = (uint64_t)pc->throttle_window * 1000;
	if (cap == t->cap && pc->throttle_size == t->size)
		return;
	/* Entries are sized by cap and the table by throttle_size: move every
	 * entry into a new table, oldest first so that the order of use
	 * stays, each with its lockout, its label and its newest failures. */
	table = lru_new(pc->throttle_size, entry_free);
	while ((e = lru_oldest(t->table, &key)) != NULL) {
		unsigned keep = e->n < cap ? e->n : cap;
		struct throttle_entry *ne = xcalloc(1, sizeof(*ne) + cap * sizeof(ne->fails[0]));
		uint8_t k[LRU_KEY_LEN];

		ne->locked_until_ms = e->locked_until_ms;
		ne->label = e->label;
		e->label = NULL;
		ne->n = keep;
		memcpy(ne->fails, e->fails + (e->n - keep), keep * sizeof(ne->fails[0]));
		memcpy(k, key, sizeof(k));
		lru_del(t->table, k);
		lru_put(table, k, ne);
	}
	lru_free(t->table);
	t->table = table;
	t->cap = cap;
	t->size = pc->throttle_size;
}

void
auth_throttle_free(struct auth_throttle *t)
{
	if (t == NULL)
		return;
	lru_free(t->table);
	free(t);
}

static void
client_id_of(const struct auth_throttle *t, const char *client, struct client_id *id)
{
	struct sockaddr_storage ss;

	memset(id, 0, sizeof(*id));
	memset(&ss, 0, sizeof(ss));
	id->text = client;
	if (inet_pton(AF_INET, client, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, client, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
	} else {
		return;
	}
	id->is_addr = true;
	net_client_key((struct sockaddr *)&ss, t->pc->ipv6_prefix, id->key);
	id->allowed = protection_allowed(t->pc, (struct sockaddr *)&ss);
}

/* Lower-cased copy of login into buf (truncated to fit; logins are bounded
 * by AUTH_MAX_LOGIN anyway). */
static const char *
login_fold(const char *login, char *buf, size_t bufsz)
{
	size_t i;

	for (i = 0; login[i] != '\0' && i + 1 < bufsz; i++) {
		char c = login[i];
		buf[i] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
	}
	buf[i] = '\0';
	return buf;
}

static void
throttle_key(const struct auth_throttle *t, enum auth_throttle_scope scope,
             const struct client_id *id, const char *login, uint8_t key[KEYHASH_LEN])
{
	struct keyhash_part parts[3];
	size_t n = 0;

	switch (scope) {
	case THROTTLE_CLIENT:
		parts[n++] = (struct keyhash_part){"c", 1};
		break;
	case THROTTLE_CLIENT_LOGIN:
		parts[n++] = (struct keyhash_part){"p", 1};
		break;
	default:
		parts[n++] = (struct keyhash_part){"l", 1};
		break;
	}
	if (scope == THROTTLE_CLIENT_LOGIN)
		parts[n++] = (struct keyhash_part){login, strlen(login)};
	if (scope == THROTTLE_LOGIN)
		parts[n++] = (struct keyhash_part){login, strlen(login)};
	else if (id->is_addr)
		parts[n++] = (struct keyhash_part){id->key, sizeof(id->key)};
	else
		parts[n++] = (struct keyhash_part){id->text, strlen(id->text)};
	keyhash_digest(t->kh, key, parts, n);
}

/* Forget failures older than the window. */
static void
entry_prune(const struct auth_throttle *t, struct throttle_entry *e, uint64_t now_ms)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < e->n; i++) {
		if (e->fails[i].at_ms + t->window_ms > now_ms)
			e->fails[keep++] = e->fails[i];
	}
	e->n = keep;
}

static unsigned
scope_threshold(const struct protection_config *pc, enum auth_throttle_scope scope)
{
	switch (scope) {
	case THROTTLE_CLIENT:
		return pc->lockout_client_failures;
	case THROTTLE_CLIENT_LOGIN:
		return pc->lockout_client_login_failures;
	case THROTTLE_LOGIN:
		return pc->lockout_login_failures;
	default:
		return 0;
	}
}

enum auth_throttle_scope
auth_throttle_check(struct auth_throttle *t, const char *client, const char *login, uint64_t now_ms,
                    unsigned *remaining_s_r)
{
	static const enum auth_throttle_scope order[] = {THROTTLE_CLIENT, THROTTLE_CLIENT_LOGIN,
	                                                 THROTTLE_LOGIN};
	char folded[AUTH_MAX_LOGIN + 1];
	struct client_id id;
	uint8_t key[KEYHASH_LEN];

	if (lru_count(t->table) == 0)
		return THROTTLE_NONE; /* no failure on record: spare three digests */
	client_id_of(t, client, &id);
	if (id.allowed)
		return THROTTLE_NONE;
	login_fold(login, folded, sizeof(folded));
	for (size_t i = 0; i < AR_NELEM(order); i++) {
		struct throttle_entry *e;
		throttle_key(t, order[i], &id, folded, key);
		e = lru_get(t->table, key);
		if (e != NULL && e->locked_until_ms > now_ms) {
			if (remaining_s_r != NULL)
				*remaining_s_r =
				        (unsigned)((e->locked_until_ms - now_ms + 999) / 1000);
			return order[i];
		}
	}
	return THROTTLE_NONE;
}

static struct throttle_label *
label_new(enum auth_throttle_scope scope, const struct client_id *id, const char *folded,
          unsigned failures)
{
	struct throttle_label *l = xcalloc(1, sizeof(*l));

	l->scope = scope;
	l->failures = failures;
	if (scope != THROTTLE_LOGIN) {
		l->client = xstrdup(id->text);
		l->client_is_addr = id->is_addr;
		memcpy(l->client_key, id->key, sizeof(l->client_key));
	}
	if (scope != THROTTLE_CLIENT)
		l->login = xstrdup(folded);
	return l;
}

void
auth_throttle_failure(struct auth_throttle *t, const char *client, const char *login,
                      const char *secret, size_t secret_len, uint64_t now_ms,
                      struct auth_throttle_result *r)
{
	static const enum auth_throttle_scope order[] = {THROTTLE_CLIENT, THROTTLE_CLIENT_LOGIN,
	                                                 THROTTLE_LOGIN};
	char folded[AUTH_MAX_LOGIN + 1], user[AUTH_MAX_LOGIN * 4 + 8], addr[160];
	uint8_t key[KEYHASH_LEN], pw[KEYHASH_LEN];
	const struct protection_config *pc = t->pc;
	struct client_id id;
	uint64_t digest;

	memset(r, 0, sizeof(*r));
	client_id_of(t, client, &id);
	if (id.allowed)
		return;
	login_fold(login, folded, sizeof(folded));
	{
		const struct keyhash_part parts[] = {
		        {"w", 1}, {folded, strlen(folded)}, {secret, secret_len}};
		keyhash_digest(t->kh, pw, parts, AR_NELEM(parts));
	}
	memcpy(&digest, pw, sizeof(digest));

	for (size_t i = 0; i < AR_NELEM(order); i++) {
		enum auth_throttle_scope scope = order[i];
		unsigned threshold = scope_threshold(pc, scope), j;
		struct throttle_entry *e;

		throttle_key(t, scope, &id, folded, key);
		e = lru_get(t->table, key);
		if (e == NULL) {
			e = xcalloc(1, sizeof(*e) + t->cap * sizeof(e->fails[0]));
			lru_put(t->table, key, e);
		}
		entry_prune(t, e, now_ms);
		for (j = 0; j < e->n && e->fails[j].digest != digest; j++)
			;
		if (j < e->n) {
			/* The same wrong password again: not a new failure. */
			struct throttle_fail f = e->fails[j];
			memmove(&e->fails[j], &e->fails[j + 1], (e->n - j - 1) * sizeof(f));
			f.at_ms = now_ms;
			e->fails[e->n - 1] = f;
		} else {
			if (e->n == t->cap) {
				memmove(&e->fails[0], &e->fails[1],
				        (e->n - 1) * sizeof(e->fails[0]));
				e->n--;
			}
			e->fails[e->n++] = (struct throttle_fail){digest, now_ms};
		}
		if (e->n > r->failures)
			r->failures = e->n;
		if (threshold > 0 && e->n >= threshold && e->locked_until_ms <= now_ms) {
			e->locked_until_ms = now_ms + (uint64_t)pc->lockout_time * 1000;
			label_free(e->label);
			e->label = label_new(scope, &id, folded, e->n);
			if (r->locked == THROTTLE_NONE)
				r->locked = scope;
			log_info("auth: lockout scope=%s client=%s user=\"%s\" failures=%u "
			         "lockout_time=%u",
			         auth_throttle_scope_name(scope),
			         log_escape_str(client[0] != '\0' ? client : "-", addr,
			                        sizeof(addr)),
			         scope == THROTTLE_CLIENT
			                 ? "*"
			                 : log_escape_str(login, user, sizeof(user)),
			         e->n, pc->lockout_time);
		}
	}
	explicit_bzero(pw, sizeof(pw));
	if (r->failures > pc->delay_after && pc->delay_ms > 0) {
		unsigned steps = r->failures - pc->delay_after - 1;
		uint64_t d = steps >= 20 ? pc->delay_max_ms : (uint64_t)pc->delay_ms << steps;
		r->delay_ms = d > pc->delay_max_ms ? pc->delay_max_ms : (unsigned)d;
	}
}

void
auth_throttle_success(struct auth_throttle *t, const char *client, const char *login)
{
	char folded[AUTH_MAX_LOGIN + 1];
	uint8_t key[KEYHASH_LEN];
	struct client_id id;

	if (lru_count(t->table) == 0)
		return;
	client_id_of(t, client, &id);
	login_fold(login, folded, sizeof(folded));
	throttle_key(t, THROTTLE_CLIENT_LOGIN, &id, folded, key);
	lru_del(t->table, key);
}

struct lockouts_walk {
	uint64_t now_ms;
	auth_throttle_lockout_cb *cb;
	void *arg;
};

static bool
lockouts_each(void *arg, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct lockouts_walk *w = arg;
	struct throttle_entry *e = value;

	if (e->label != NULL && e->locked_until_ms > w->now_ms) {
		struct auth_throttle_lockout l = {
		        .scope = e->label->scope,
		        .client = e->label->client,
		        .login = e->label->login,
		        .failures = e->label->failures,
		        .remaining_s = (unsigned)((e->locked_until_ms - w->now_ms + 999) / 1000),
		};
		w->cb(w->arg, &l);
	}
	return false;
}

void
auth_throttle_lockouts(struct auth_throttle *t, uint64_t now_ms, auth_throttle_lockout_cb *cb,
                       void *arg)
{
	struct lockouts_walk w = {now_ms, cb, arg};

	lru_each(t->table, lockouts_each, &w);
}

struct unlock_walk {
	uint64_t now_ms;
	struct client_id id; /* what, as a client */
	const char *folded;  /* what, as a login */
	unsigned ended;
};

static bool
unlock_each(void *arg, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct unlock_walk *w = arg;
	const struct throttle_entry *e = value;
	const struct throttle_label *l = e->label;
	bool client, login;

	if (l == NULL || e->locked_until_ms <= w->now_ms)
		return false;
	client = l->client != NULL &&
	         (l->client_is_addr && w->id.is_addr
	                  ? memcmp(l->client_key, w->id.key, sizeof(l->client_key)) == 0
	                  : strcmp(l->client, w->id.text) == 0);
	login = l->login != NULL && strcmp(l->login, w->folded) == 0;
	if (!client && !login)
		return false;
	w->ended++;
	return true;
}

unsigned
auth_throttle_unlock(struct auth_throttle *t, const char *what, uint64_t now_ms)
{
	char folded[AUTH_MAX_LOGIN + 1], esc[AUTH_MAX_LOGIN * 4 + 8];
	uint8_t key[KEYHASH_LEN];
	struct unlock_walk w = {.now_ms = now_ms, .folded = folded};

	login_fold(what, folded, sizeof(folded));
	client_id_of(t, what, &w.id);
	lru_each(t->table, unlock_each, &w);
	/* The counts that were not a lockout yet go too: the next login
	 * starts afresh, as after lockout_time. */
	throttle_key(t, THROTTLE_LOGIN, &w.id, folded, key);
	lru_del(t->table, key);
	throttle_key(t, THROTTLE_CLIENT, &w.id, folded, key);
	lru_del(t->table, key);
	log_info("auth: unlock by the admin what=\"%s\" lockouts=%u",
	         log_escape_str(what, esc, sizeof(esc)), w.ended);
	return w.ended;
}

const char *
auth_throttle_scope_name(enum auth_throttle_scope s)
{
	switch (s) {
	case THROTTLE_CLIENT:
		return "client";
	case THROTTLE_CLIENT_LOGIN:
		return "client_login";
	case THROTTLE_LOGIN:
		return "login";
	case THROTTLE_NONE:
		break;
	}
	return "none";
}

size_t
auth_throttle_count(const struct auth_throttle *t)
{
	return lru_count(t->table);
}

struct locked_walk {
	uint64_t now_ms;
	size_t n;
};

static bool
locked_each(void *arg, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct locked_walk *w = arg;
	const struct throttle_entry *e = value;

	w->n += e->locked_until_ms > w->now_ms;
	return false;
}

size_t
auth_throttle_locked(struct auth_throttle *t, uint64_t now_ms)
{
	struct locked_walk w = {.now_ms = now_ms};

	lru_each(t->table, locked_each, &w);
	return w.n;
}
