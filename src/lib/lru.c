/* SPDX-License-Identifier: ISC */
/*
 * lru.c - bounded key -> value table with least-recently-used eviction (see
 * lru.h): chained hash buckets (a power of two, about one per entry) and a
 * recency list, newest first, both sys/queue.h lists intrusive in the node.
 * Everything is O(1) except lru_clear().
 */
#include "lru.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct lru_node {
	LIST_ENTRY(lru_node) chain;   /* bucket */
	TAILQ_ENTRY(lru_node) recent; /* newest first */
	uint8_t key[LRU_KEY_LEN];
	void *value;
};

LIST_HEAD(lru_bucket, lru_node);

struct lru {
	struct lru_bucket *buckets;
	size_t mask;
	size_t count, max;
	TAILQ_HEAD(lru_recent, lru_node) recent;
	lru_free_cb *free_cb;
};

struct lru *
lru_new(size_t max_entries, lru_free_cb *free_cb)
{
	struct lru *t = xcalloc(1, sizeof(*t));
	size_t n = 16;

	while (n < max_entries && n < ((size_t)1 << 24))
		n *= 2;
	t->buckets = xcalloc(n, sizeof(*t->buckets));
	for (size_t i = 0; i < n; i++)
		LIST_INIT(&t->buckets[i]);
	TAILQ_INIT(&t->recent);
	t->mask = n - 1;
	t->max = max_entries;
	t->free_cb = free_cb;
	return t;
}

/* Keys are keyed hashes already (lru.h): their first bytes are the index. */
static struct lru_bucket *
lru_bucket(const struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return &t->buckets[(size_t)h & t->mask];
}

static struct lru_node *
lru_find(const struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node *n;

	LIST_FOREACH(n, lru_bucket(t, key), chain)
	{
		if (memcmp(n->key, key, LRU_KEY_LEN) == 0)
			return n;
	}
	return NULL;
}

/* Unlink n from both lists and free it with its value. */
static void
lru_remove(struct lru *t, struct lru_node *n)
{
	LIST_REMOVE(n, chain);
	TAILQ_REMOVE(&t->recent, n, recent);
	t->count--;
	if (t->free_cb != NULL)
		t->free_cb(n->value);
	free(n);
}

static void
lru_touch(struct lru *t, struct lru_node *n)
{
	if (TAILQ_FIRST(&t->recent) != n) {
		TAILQ_REMOVE(&t->recent, n, recent);
		TAILQ_INSERT_HEAD(&t->recent, n, recent);
	}
}

void *
lru_get(struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node *n = lru_find(t, key);

	if (n == NULL)
		return NULL;
	lru_touch(t, n);
	return n->value;
}

void
lru_put(struct lru *t, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct lru_node *n = lru_find(t, key);

	if (n != NULL) {
		if (t->free_cb != NULL && n->value != value)
			t->free_cb(n->value);
		n->value = value;
		lru_touch(t, n);
		return;
	}
	if (t->max == 0) {
		if (t->free_cb != NULL)
			t->free_cb(value);
		return;
	}
	if (t->count >= t->max)
		lru_remove(t, TAILQ_LAST(&t->recent, lru_recent));
	n = xcalloc(1, sizeof(*n));
	memcpy(n->key, key, LRU_KEY_LEN);
	n->value = value;
	LIST_INSERT_HEAD(lru_bucket(t, key), n, chain);
	TAILQ_INSERT_HEAD(&t->recent, n, recent);
	t->count++;
}

bool
lru_del(struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node *n = lru_find(t, key);

	if (n == NULL)
		return false;
	lru_remove(t, n);
	return true;
}

void
lru_clear(struct lru *t)
{
	struct lru_node *n;

	while ((n = TAILQ_LAST(&t->recent, lru_recent)) != NULL)
		lru_remove(t, n);
}

size_t
lru_count(const struct lru *t)
{
	return t->count;
}

void
lru_each(struct lru *t, lru_each_cb *cb, void *arg)
{
	struct lru_node *n, *next;

	for (n = TAILQ_FIRST(&t->recent); n != NULL; n = next) {
		next = TAILQ_NEXT(n, recent);
		if (cb(arg, n->key, n->value))
			lru_remove(t, n);
	}
}

void *
lru_oldest(const struct lru *t, const uint8_t **key_r)
{
	const struct lru_node *n = TAILQ_LAST(&t->recent, lru_recent);

	if (n == NULL)
		return NULL;
	if (key_r != NULL)
		*key_r = n->key;
	return n->value;
}

void
lru_free(struct lru *t)
{
	if (t == NULL)
		return;
	lru_clear(t);
	free(t->buckets);
	free(t);
}
