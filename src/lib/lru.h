/* SPDX-License-Identifier: ISC */
/*
 * lru.h - a bounded table from 32-byte keys to values, evicting the least
 * recently used entry when full. The auth cache, the throttle counters and
 * the alert tables each keep one.
 *
 * Keys are expected to be keyed hashes (keyhash.h), so their first bytes
 * serve as the bucket index as they are: nobody outside the process can
 * aim many keys at one bucket. Values belong to the table: it frees them
 * with the free_cb given at creation when they are replaced, deleted,
 * evicted or cleared.
 */
#ifndef AUTHRELAY_LRU_H
#define AUTHRELAY_LRU_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define LRU_KEY_LEN 32

struct lru;

typedef void lru_free_cb(void *value);

/* At most max_entries entries (0: every put is dropped at once). */
struct lru *lru_new(size_t max_entries, lru_free_cb *free_cb);
void lru_free(struct lru *);

/* The value under key, made the most recently used; NULL if none. */
void *lru_get(struct lru *, const uint8_t key[LRU_KEY_LEN]);
/* Store value under key, replacing (and freeing) an older value, evicting
 * the least recently used entry when the table is full. */
void lru_put(struct lru *, const uint8_t key[LRU_KEY_LEN], void *value);
/* Delete (and free) the entry under key. True if there was one. */
bool lru_del(struct lru *, const uint8_t key[LRU_KEY_LEN]);
/* Delete everything. */
void lru_clear(struct lru *);
size_t lru_count(const struct lru *);
/* Call cb for every entry, most recently used first, without changing the
 * order; an entry for which cb returns true is deleted (and freed) at once.
 * O(entries): for the admin's listings, not for a request's path. */
typedef bool lru_each_cb(void *arg, const uint8_t key[LRU_KEY_LEN], void *value);
void lru_each(struct lru *, lru_each_cb *cb, void *arg);
/* The least recently used value (and its key through key_r), NULL when
 * empty; for sweeps that drop expired entries from the old end. */
void *lru_oldest(const struct lru *, const uint8_t **key_r);

#endif
