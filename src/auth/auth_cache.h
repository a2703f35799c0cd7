/* SPDX-License-Identifier: ISC */
/*
 * auth_cache.h - the auth process's credential cache, in front of every
 * source: a bounded table of recent answers keyed by
 * HMAC-SHA256(per-start random key, source || 0 || login || 0 || password).
 * No password, and no hash of one that could be checked offline, is ever
 * stored: the key is a keyed digest whose key lives only in this process.
 *
 * Positive entries (AUTH_OK, with the identity and the user's addresses) live
 * cache_positive_ttl, negative ones (bad_password, unknown_user)
 * cache_negative_ttl. A password change therefore takes effect at the
 * latest after cache_positive_ttl: the old password's entry simply expires,
 * and the new password has an entry of its own. When a source cannot answer
 * (AUTH_TEMPFAIL: directory or upstream unreachable), a positive entry up to
 * cache_stale_ttl past its expiry may still answer (off by default).
 *
 * Times are passed in (monotonic milliseconds) so tests can drive them.
 */
#ifndef AUTHRELAY_AUTH_CACHE_H
#define AUTHRELAY_AUTH_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "../authwire/auth_proto.h"
#include "../lib/keyhash.h"

struct protection_config;
struct auth_cache;

/* A cached answer; strings belong to the cache and stay valid until the next
 * call that changes it (store, clear, a lookup that expires an entry). */
struct auth_cache_hit {
	enum auth_result result; /* AUTH_OK or AUTH_FAIL */
	const char *identity;    /* AUTH_OK: canonical login */
	enum auth_reason reason; /* ok, bad_password, unknown_user */
	const char *addresses;   /* AUTH_OK: "a@x,b@y" or "" */
	const char *client;      /* AUTH_OK: the client address the source said yes to, or "" */
	uint64_t age_ms;
};

/* kh is borrowed and must outlive the cache. With cache_size 0 every lookup
 * misses and nothing is stored. */
struct auth_cache *auth_cache_new(const struct protection_config *, const struct keyhash *kh);
void auth_cache_free(struct auth_cache *);

/* May this request be cached? PLAIN and LOGIN only: a CRAM-MD5 digest
 * depends on the challenge and never repeats. */
bool auth_cache_cacheable(const struct auth_cache *, const char *mech);

/* The cache key of (source, login, secret). */
void auth_cache_key(const struct auth_cache *, const char *source, const char *login,
                    const char *secret, size_t secret_len, uint8_t key_r[KEYHASH_LEN]);

/* A fresh entry: true and *hit_r filled. An entry past every use is dropped. */
bool auth_cache_lookup(struct auth_cache *, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                       struct auth_cache_hit *hit_r);
/* A positive entry expired less than cache_stale_ttl ago (or still fresh):
 * for when the source is unreachable. */
bool auth_cache_lookup_stale(struct auth_cache *, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                             struct auth_cache_hit *hit_r);

/* Remember a source's answer. Only AUTH_OK and AUTH_FAIL with reason
 * bad_password or unknown_user are kept; anything else is ignored (and a
 * stored entry under key stays). identity, addresses and client (the
 * address the login came from, for the lockout shield's familiar-client
 * rule) may be NULL. */
void auth_cache_store(struct auth_cache *, const uint8_t key[KEYHASH_LEN], uint64_t now_ms,
                      enum auth_result result, const char *identity, enum auth_reason reason,
                      const char *addresses, const char *client);

/* SIGHUP: forget everything. */
void auth_cache_clear(struct auth_cache *);
size_t auth_cache_count(const struct auth_cache *);

#endif
