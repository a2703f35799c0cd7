/*
 * lru.c - bounded key -> value table with least-recently-used eviction (see
 * lru.h): chained hash buckets (a power of two, about one per entry) and a
 * doubly-linked recency list, both intrusive in the node. Everything is
 * O(1) except lru_clear().
 */
#include "lru.h"

#include <stdlib.h>
#include <string.h>

struct lru_node {
	struct lru_node *hnext;         /* bucket chain */
	struct lru_node *newer, *older; /* recency list */
	uint8_t key[LRU_KEY_LEN];
	void *value;
};

struct lru {
	struct lru_node **buckets;
	size_t mask;
	size_t count, max;
	struct lru_node *newest, *oldest;
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
	t->mask = n - 1;
	t->max = max_entries;
	t->free_cb = free_cb;
	return t;
}

static size_t
lru_bucket(const struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return (size_t)h & t->mask;
}

static struct lru_node **
lru_find(const struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node **pp = &t->buckets[lru_bucket(t, key)];

	while (*pp != NULL && memcmp((*pp)->key, key, LRU_KEY_LEN) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void
lru_unlink(struct lru *t, struct lru_node *n)
{
	if (n->newer != NULL)
		n->newer->older = n->older;
	else
		t->newest = n->older;
	if (n->older != NULL)
		n->older->newer = n->newer;
	else
		t->oldest = n->newer;
	n->newer = n->older = NULL;
}

static void
lru_link_newest(struct lru *t, struct lru_node *n)
{
	n->older = t->newest;
	n->newer = NULL;
	if (t->newest != NULL)
		t->newest->newer = n;
	t->newest = n;
	if (t->oldest == NULL)
		t->oldest = n;
}

/* Remove the node *pp points to from both structures and free it. */
static void
lru_remove(struct lru *t, struct lru_node **pp)
{
	struct lru_node *n = *pp;

	*pp = n->hnext;
	lru_unlink(t, n);
	t->count--;
	if (t->free_cb != NULL)
		t->free_cb(n->value);
	free(n);
}

void *
lru_get(struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node *n = *lru_find(t, key);

	if (n == NULL)
		return NULL;
	if (t->newest != n) {
		lru_unlink(t, n);
		lru_link_newest(t, n);
	}
	return n->value;
}

void
lru_put(struct lru *t, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct lru_node **pp = lru_find(t, key), *n;

	if (*pp != NULL) {
		n = *pp;
		if (t->free_cb != NULL && n->value != value)
			t->free_cb(n->value);
		n->value = value;
		lru_unlink(t, n);
		lru_link_newest(t, n);
		return;
	}
	if (t->max == 0) {
		if (t->free_cb != NULL)
			t->free_cb(value);
		return;
	}
	if (t->count >= t->max) {
		lru_remove(t, lru_find(t, t->oldest->key));
		pp = lru_find(t, key); /* the chain may have changed */
	}
	n = xcalloc(1, sizeof(*n));
	memcpy(n->key, key, LRU_KEY_LEN);
	n->value = value;
	*pp = n;
	lru_link_newest(t, n);
	t->count++;
}

bool
lru_del(struct lru *t, const uint8_t key[LRU_KEY_LEN])
{
	struct lru_node **pp = lru_find(t, key);

	if (*pp == NULL)
		return false;
	lru_remove(t, pp);
	return true;
}

void
lru_clear(struct lru *t)
{
	while (t->oldest != NULL)
		lru_remove(t, lru_find(t, t->oldest->key));
}

size_t
lru_count(const struct lru *t)
{
	return t->count;
}

void *
lru_oldest(const struct lru *t, const uint8_t **key_r)
{
	if (t->oldest == NULL)
		return NULL;
	if (key_r != NULL)
		*key_r = t->oldest->key;
	return t->oldest->value;
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
