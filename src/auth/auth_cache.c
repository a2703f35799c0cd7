/* SPDX-License-Identifier: ISC */
/*
 * auth_cache.c - credential cache of the auth process (see auth_cache.h).
 *
 * An entry holds the answer, when it was stored and until when it is good;
 * positive entries also hold the canonical login and the user's addresses,
 * which the sender policy needs on a cache hit as much as on a fresh check.
 * Entries live in an LRU table (lib/lru.c) of cache_size entries, so memory
 * is bounded whatever clients send; an entry past its TTL (and, if positive,
 * past the stale window) is dropped when it is next looked at, and the
 * oldest entries are swept on every store.
 *
 * Negative entries are keyed by the wrong password too, so they never
 * shadow the right one: a stale phone retrying an old password is answered
 * from the cache (and stops reaching the directory) while its owner logs in
 * with the new one.
 */
#include "auth_cache.h"
#include "protection_config.h"
#include "../lib/common.h"
#include "../lib/lru.h"

#include <stdlib.h>
#include <string.h>

struct cache_entry {
	enum auth_result result;
	char *identity;
	char *addresses;
	char *client; /* AUTH_OK: where the source said yes from */
	enum auth_reason reason;
	uint64_t stored_ms;
	uint64_t expires_ms;
	uint64_t stale_until_ms; /* == expires_ms for negative entries */
};

struct auth_cache {
	const struct keyhash *kh;
	struct lru *table;
	uint64_t positive_ms, negative_ms, stale_ms;
	bool enabled;
};

static void
cache_entry_free(void *p)
{
	struct cache_entry *e = p;

	free(e->identity);
	free(e->addresses);
	free(e->client);
	free(e);
}

struct auth_cache *
auth_cache_new(const struct protection_config *pc, const struct keyhash *kh)
{
	struct auth_cache *c = xcalloc(1, sizeof(*c));

	c->kh = kh;
	c->enabled = pc->cache_size > 0;
	c->table = lru_new(pc->cache_size, cache_entry_free);
	c->positive_ms = (uint64_t)pc->cache_positive_ttl * 1000;
	c->negative_ms = (uint64_t)pc->cache_negative_ttl * 1000;
	c->stale_ms = (uint64_t)pc->cache_stale_ttl * 1000;
	return c;
}

void
auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	lru_free(c->table);
	free(c);
}

bool
auth_cache_cacheable(const struct auth_cache *c, const char *mech)
{
	return c->enabled &&
	       (ascii_strcasecmp(mech, "PLAIN") == 0 || ascii_strcasecmp(mech, "LOGIN") == 0);
}

void
auth_cache_key(const struct auth_cache *c, const char *source, const char *login,
               const char *secret, size_t secret_len, uint8_t key_r[KEYHASH_LEN])
{
	/* The password goes last: it alone may hold a NUL (keyhash.h). */
	const struct keyhash_part parts[] = {
	        {source, strlen(source)},
	        {login, strlen(login)},
	        {secret, secret_len},
	};

	keyhash_digest(c->kh, key_r, parts, AR_NELEM(parts));
}

static void
cache_fill(const struct cache_entry *e, uint64_t now_ms, struct auth_cache_hit *hit)
{
	hit->result = e->result;
	hit->identity = e->identity != NULL ? e->identity : "";
	hit->addresses = e->addresses != NULL ? e->addresses : "";
	hit->client = e->client != NULL ? e->client : "";
	hit->reason = e->reason;
	hit->age_ms = now_ms - e->stored_ms;
}

/* The entry under key, dropped (NULL) once it is of no use any more. */
static struct cache_entry *
cache_get(struct auth_cache *c, const uint8_t key[KEYHASH_LEN], uint64_t now_ms)
{
	struct cache_entry *e = lru_get(c->table, key);

	if (e != NULL && now_ms >= e->stale_until_ms) {
		lru_del(c->table, key);
		e = NULL;
	}
	return e;
}

bool
auth_cache_lookup(struct auth_cache *c, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                  struct auth_cache_hit *hit_r)
{
	struct cache_entry *e = cache_get(c, key, now_ms);

	if (e == NULL || now_ms >= e->expires_ms)
		return false;
	cache_fill(e, now_ms, hit_r);
	return true;
}

bool
auth_cache_lookup_stale(struct auth_cache *c, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                        struct auth_cache_hit *hit_r)
{
	struct cache_entry *e = cache_get(c, key, now_ms);

	if (e == NULL || e->result != AUTH_OK)
		return false;
	cache_fill(e, now_ms, hit_r);
	return true;
}

/* Drop expired entries from the old end, a few per call: the table never
 * fills with dead entries that would push out live ones. */
static void
cache_sweep(struct auth_cache *c, uint64_t now_ms)
{
	const uint8_t *key;
	struct cache_entry *e;

	for (int i = 0; i < 8 && (e = lru_oldest(c->table, &key)) != NULL; i++) {
		if (now_ms < e->stale_until_ms)
			break;
		lru_del(c->table, key);
	}
}

void
auth_cache_store(struct auth_cache *c, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                 enum auth_result result, const char *identity, enum auth_reason reason,
                 const char *addresses, const char *client)
{
	struct cache_entry *e;
	uint64_t ttl;

	if (!c->enabled)
		return;
	if (result == AUTH_OK) {
		reason = AUTH_REASON_OK;
		ttl = c->positive_ms;
	} else if (result == AUTH_FAIL &&
	           (reason == AUTH_REASON_BAD_PASSWORD || reason == AUTH_REASON_UNKNOWN_USER)) {
		ttl = c->negative_ms;
	} else {
		return;
	}
	cache_sweep(c, now_ms);
	if (ttl == 0) {
		/* Not cached; an older answer under this key is outdated now. */
		lru_del(c->table, key);
		return;
	}
	e = xcalloc(1, sizeof(*e));
	e->result = result;
	e->reason = reason;
	e->identity = result == AUTH_OK && identity != NULL ? xstrdup(identity) : NULL;
	e->addresses = result == AUTH_OK && addresses != NULL ? xstrdup(addresses) : NULL;
	e->client = result == AUTH_OK && client != NULL ? xstrdup(client) : NULL;
	e->stored_ms = now_ms;
	e->expires_ms = now_ms + ttl;
	e->stale_until_ms = e->expires_ms + (result == AUTH_OK ? c->stale_ms : 0);
	lru_put(c->table, key, e);
}

void
auth_cache_clear(struct auth_cache *c)
{
	lru_clear(c->table);
}

size_t
auth_cache_count(const struct auth_cache *c)
{
	return lru_count(c->table);
}
