/* SPDX-License-Identifier: ISC */
/*
 * test_lru.c - the bounded table behind the auth cache, the throttle and the
 * alerts: get/put/replace/delete, eviction of the least recently used (a get
 * refreshes), every value freed exactly once (replaced, deleted, evicted,
 * cleared, freed with the table), a table of size 0, and many keys sharing
 * buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/lru.h"

static int freed[64];

struct val {
	int id;
};

static void
val_free(void *p)
{
	struct val *v = p;

	freed[v->id]++;
	free(v);
}

static struct val *
val(int id)
{
	struct val *v = malloc(sizeof(*v));

	v->id = id;
	return v;
}

/* Keys that differ in their last byte only: they share a bucket. */
static const uint8_t *
key(int n)
{
	static uint8_t k[64][LRU_KEY_LEN];

	memset(k[n], 0xab, LRU_KEY_LEN);
	k[n][LRU_KEY_LEN - 1] = (uint8_t)n;
	return k[n];
}

static int
id_of(void *p)
{
	return p != NULL ? ((struct val *)p)->id : -1;
}

enum op { PUT, GET, DEL, COUNT, OLDEST, CLEAR };

static void
test_rows(void **state)
{
	static const struct {
		enum op op;
		int key, val; /* PUT: value id; GET/OLDEST: expected id (-1 none); DEL: 1 found;
		               * COUNT: entries */
	} rows[] = {
	        {PUT, 1, 1},    {PUT, 2, 2},   {PUT, 3, 3},     {COUNT, 0, 3}, {GET, 1, 1},
	        {OLDEST, 0, 2}, {PUT, 4, 4}, /* full (3): 2 goes */
	        {GET, 2, -1},   {COUNT, 0, 3}, {GET, 3, 3},     {GET, 4, 4},   {GET, 1, 1},
	        {PUT, 1, 11}, /* replace: 1 freed */
	        {GET, 1, 11},   {DEL, 3, 1},   {DEL, 3, 0},     {COUNT, 0, 2}, {OLDEST, 0, 4},
	        {CLEAR, 0, 0},  {COUNT, 0, 0}, {OLDEST, 0, -1}, {GET, 4, -1},  {PUT, 5, 5},
	};
	struct lru *t = lru_new(3, val_free);

	memset(freed, 0, sizeof(freed));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		print_message("  row %zu\n", i);
		switch (rows[i].op) {
		case PUT:
			lru_put(t, key(rows[i].key), val(rows[i].val));
			break;
		case GET:
			assert_int_equal(id_of(lru_get(t, key(rows[i].key))), rows[i].val);
			break;
		case DEL:
			assert_int_equal(lru_del(t, key(rows[i].key)), rows[i].val);
			break;
		case COUNT:
			assert_int_equal(lru_count(t), rows[i].val);
			break;
		case OLDEST:
			assert_int_equal(id_of(lru_oldest(t, NULL)), rows[i].val);
			break;
		case CLEAR:
			lru_clear(t);
			break;
		}
	}
	lru_free(t);
	/* Each value freed exactly once. */
	assert_int_equal(freed[1], 1);
	assert_int_equal(freed[2], 1);
	assert_int_equal(freed[3], 1);
	assert_int_equal(freed[4], 1);
	assert_int_equal(freed[5], 1);
	assert_int_equal(freed[11], 1);
}

static void
test_size_zero(void **state)
{
	struct lru *t = lru_new(0, val_free);

	memset(freed, 0, sizeof(freed));
	lru_put(t, key(1), val(1));
	assert_int_equal(freed[1], 1);
	assert_null(lru_get(t, key(1)));
	assert_int_equal(lru_count(t), 0);
	lru_free(t);
}

static void
test_many(void **state)
{
	struct lru *t = lru_new(1000, free);
	uint8_t k[LRU_KEY_LEN];

	for (uint32_t i = 0; i < 5000; i++) {
		memset(k, 0, sizeof(k));
		memcpy(k, &i, sizeof(i));
		lru_put(t, k, malloc(8));
	}
	assert_int_equal(lru_count(t), 1000);
	for (uint32_t i = 0; i < 5000; i++) {
		memset(k, 0, sizeof(k));
		memcpy(k, &i, sizeof(i));
		if (i < 4000)
			assert_null(lru_get(t, k));
		else
			assert_non_null(lru_get(t, k));
	}
	lru_free(t);
}

static bool
drop_odd(void *arg, const uint8_t k[LRU_KEY_LEN], void *value)
{
	int *order = arg;
	struct val *v = value;

	order[order[0] + 1] = v->id;
	order[0]++;
	return v->id % 2 == 1;
}

/* lru_each: newest first, order unchanged, what the callback asks deleted
 * (and freed once). */
static void
test_each(void **state)
{
	struct lru *t = lru_new(8, val_free);
	int order[8] = {0};

	memset(freed, 0, sizeof(freed));
	for (int i = 1; i <= 4; i++)
		lru_put(t, key(i), val(i));
	lru_each(t, drop_odd, order);
	assert_int_equal(order[0], 4);
	assert_int_equal(order[1], 4);
	assert_int_equal(order[4], 1);
	assert_int_equal(lru_count(t), 2);
	assert_int_equal(freed[1], 1);
	assert_int_equal(freed[3], 1);
	assert_null(lru_get(t, key(1)));
	assert_non_null(lru_get(t, key(2)));
	lru_free(t);
	assert_int_equal(freed[2], 1);
	assert_int_equal(freed[4], 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rows),
	        cmocka_unit_test(test_size_zero),
	        cmocka_unit_test(test_many),
	        cmocka_unit_test(test_each),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
