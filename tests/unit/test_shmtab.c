/* SPDX-License-Identifier: ISC */
/*
 * test_shmtab.c - the lock-free shared-memory table: fixed and keyed rows,
 * reservations under a limit, stale references, full windows and eviction
 * by rank, a randomized run against a model, what a dead owner leaves
 * half done and how the master undoes it, a stopped owner that blocks only
 * its own key, a table full of garbage, and several processes and threads
 * racing for the last place under one limit (it must never be passed).
 *
 * The module is included rather than linked so that the tests can read
 * the slots and leave them exactly as a process killed at a given step
 * would.
 */
#include "lib/shmtab.c"
#include "support/ut_proc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Rank: the value of cell 0, or SHMTAB_KEEP when it holds KEEP_MARK; rows
 * whose cells are all zero are idle whatever cell 0 says. */
#define KEEP_MARK 999

static uint64_t
rank_cell0(const struct shmtab *t, const struct shmtab_ref *ref, void *arg)
{
	uint64_t v = shmtab_get(t, ref, 0);

	if (shmtab_sum(t, ref) == 0)
		return 0;
	return v == KEEP_MARK ? SHMTAB_KEEP : v;
}

static uint64_t
rank_busy_keeps(const struct shmtab *t, const struct shmtab_ref *ref, void *arg)
{
	return shmtab_idle(t, ref) ? 0 : SHMTAB_KEEP;
}

static void
key_n(uint8_t key[20], uint32_t n)
{
	memset(key, 0x5a, 20);
	memcpy(key + 16, &n, sizeof(n));
}

/* The keyed slot holding key in a USED or DRAIN state, counted: a key
 * must never have more than one. */
static unsigned
rows_of(const struct shmtab *t, const uint8_t *key)
{
	uint64_t kw[KEY_WORDS_MAX] = {0};
	unsigned n = 0;

	memcpy(kw, key, t->key_len);
	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++) {
		uint64_t tag = atomic_load(st_tag(t, s));
		if ((tag_state(tag) == ST_USED || tag_state(tag) == ST_DRAIN) &&
		    st_key_cmp(t, s, kw, tag) == KEY_SAME)
			n++;
	}
	return n;
}

static unsigned
slots_in_state(const struct shmtab *t, unsigned state)
{
	unsigned n = 0;

	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++)
		n += tag_state(atomic_load(st_tag(t, s))) == state;
	return n;
}

static void
test_fixed_rows(void **state)
{
	struct shmtab *t = shmtab_new(3, 0, 8, 4, NULL);
	struct shmtab_ref r0 = shmtab_fixed(t, 0), r2 = shmtab_fixed(t, 2);
	uint8_t key[8] = {1};
	struct shmtab_ref ref;

	assert_int_equal(shmtab_capacity(t), 0);
	assert_int_equal(shmtab_reserve(t, &r0, 1, 2), SHMTAB_RESERVED);
	assert_int_equal(shmtab_reserve(t, &r0, 3, 2), SHMTAB_RESERVED);
	assert_int_equal(shmtab_reserve(t, &r0, 1, 2), SHMTAB_OVER);
	assert_int_equal(shmtab_sum(t, &r0), 2);
	assert_int_equal(shmtab_sum(t, &r2), 0);
	assert_true(shmtab_valid(t, &r0));
	/* Fixed rows are never freed, nor swept. */
	assert_false(shmtab_try_free(t, &r2, 0, NULL));
	shmtab_sweep(t, SHMTAB_MASTER, NULL);
	assert_true(shmtab_valid(t, &r2));
	/* No keyed room at all. */
	assert_int_equal(shmtab_find(t, key, SHMTAB_CREATE, 0, NULL, &ref), SHMTAB_FULL);
	assert_int_equal(shmtab_find(t, key, SHMTAB_LOOKUP, 0, NULL, &ref), SHMTAB_ABSENT);
	shmtab_clear_cell(t, 1);
	assert_int_equal(shmtab_sum(t, &r0), 1);
	shmtab_free(t);
}

static void
test_find_and_create(void **state)
{
	struct shmtab *t = shmtab_new(1, 64, 20, 3, rank_busy_keeps);
	struct shmtab_ref a, a2, b;
	uint8_t ka[20], kb[20];

	key_n(ka, 1);
	key_n(kb, 1);
	kb[19] ^= 1; /* differs in the last byte of the last, partial word */
	assert_int_equal(shmtab_capacity(t), 64);
	assert_int_equal(shmtab_find(t, ka, SHMTAB_LOOKUP, 0, NULL, &a), SHMTAB_ABSENT);
	assert_int_equal(shmtab_find(t, ka, SHMTAB_HELD, 0, NULL, &a), SHMTAB_ABSENT);
	assert_int_equal(shmtab_find(t, ka, SHMTAB_CREATE, 0, NULL, &a), SHMTAB_OK);
	assert_true(a.slot >= 1); /* not the fixed row */
	assert_int_equal(shmtab_sum(t, &a), 0);
	assert_int_equal(shmtab_find(t, ka, SHMTAB_LOOKUP, 2, NULL, &a2), SHMTAB_OK);
	assert_int_equal(a2.slot, a.slot);
	assert_true(a2.tag == a.tag);
	assert_int_equal(shmtab_find(t, kb, SHMTAB_LOOKUP, 0, NULL, &b), SHMTAB_ABSENT);
	assert_int_equal(shmtab_find(t, kb, SHMTAB_CREATE, 1, NULL, &b), SHMTAB_OK);
	assert_int_not_equal(b.slot, a.slot);
	assert_int_equal(rows_of(t, ka), 1);
	assert_int_equal(rows_of(t, kb), 1);
	/* Cells: compare-and-swap and get. */
	uint64_t v = 0;
	assert_true(shmtab_cas(t, &a, 2, &v, 41));
	v = 0;
	assert_false(shmtab_cas(t, &a, 2, &v, 7));
	assert_int_equal(v, 41);
	assert_int_equal(shmtab_get(t, &a, 2), 41);
	assert_int_equal(shmtab_get(t, &b, 2), 0);
	shmtab_free(t);
}

static void
test_reserve_and_take(void **state)
{
	struct shmtab *t = shmtab_new(0, 16, 20, 3, rank_busy_keeps);
	struct shmtab_ref r;
	uint8_t k[20];

	key_n(k, 7);
	assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 0, NULL, &r), SHMTAB_OK);
	assert_int_equal(shmtab_reserve(t, &r, 0, 3), SHMTAB_RESERVED);
	assert_int_equal(shmtab_reserve(t, &r, 1, 3), SHMTAB_RESERVED);
	assert_int_equal(shmtab_reserve(t, &r, 2, 3), SHMTAB_RESERVED);
	assert_int_equal(shmtab_reserve(t, &r, 2, 3), SHMTAB_OVER);
	assert_int_equal(shmtab_sum(t, &r), 3);
	assert_int_equal(shmtab_count(t, &r, 2), 1); /* refused: nothing changed */
	assert_int_equal(shmtab_get(t, &r, 2), 1);   /* nothing left in flight */
	/* 0: no limit. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmtab_reserve(t, &r, 2, 0), SHMTAB_RESERVED);
	assert_int_equal(shmtab_count(t, &r, 2), 101);
	/* Take never goes below zero and says when it could not. */
	assert_true(shmtab_take(t, &r, 2, 100));
	assert_false(shmtab_take(t, &r, 2, 5));
	assert_int_equal(shmtab_count(t, &r, 2), 0);
	assert_false(shmtab_take(t, &r, 2, 1));
	assert_int_equal(shmtab_sum(t, &r), 2);
	/* A reservation in flight counts against the limit, not in the sum,
	 * and keeps the row from being freed even when the sum is 0. */
	atomic_fetch_add(&st_cells(t, r.slot)[1], IN_FLIGHT_UNIT);
	assert_int_equal(shmtab_sum(t, &r), 2);
	assert_int_equal(shmtab_reserve(t, &r, 0, 3), SHMTAB_OVER);
	assert_int_equal(shmtab_reserve(t, &r, 0, 4), SHMTAB_RESERVED);
	assert_true(shmtab_take(t, &r, 0, 1));
	atomic_fetch_sub(&st_cells(t, r.slot)[1], IN_FLIGHT_UNIT);
	assert_false(shmtab_idle(t, &r));
	/* A busy row is not freed; an idle one is. */
	assert_false(shmtab_try_free(t, &r, 0, NULL));
	assert_true(shmtab_valid(t, &r));
	assert_true(shmtab_take(t, &r, 0, 1));
	assert_true(shmtab_take(t, &r, 1, 1));
	atomic_fetch_add(&st_cells(t, r.slot)[2], IN_FLIGHT_UNIT);
	assert_int_equal(shmtab_sum(t, &r), 0);
	assert_false(shmtab_idle(t, &r));
	assert_false(shmtab_try_free(t, &r, 0, NULL));
	st_withdraw(&st_cells(t, r.slot)[2]);
	assert_true(shmtab_idle(t, &r));
	assert_true(shmtab_try_free(t, &r, 0, NULL));
	assert_false(shmtab_valid(t, &r));
	assert_int_equal(shmtab_find(t, k, SHMTAB_LOOKUP, 0, NULL, &r), SHMTAB_ABSENT);
	shmtab_free(t);
}

static void
test_stale_reference(void **state)
{
	struct shmtab *t = shmtab_new(0, 1, 20, 2, rank_busy_keeps);
	struct shmtab_ref old, now;
	uint8_t k1[20], k2[20];

	key_n(k1, 1);
	key_n(k2, 2);
	assert_int_equal(shmtab_find(t, k1, SHMTAB_CREATE, 0, NULL, &old), SHMTAB_OK);
	assert_true(shmtab_try_free(t, &old, 0, NULL));
	/* The one slot now holds another key: the old reference is stale and
	 * a reservation through it changes nothing. */
	assert_int_equal(shmtab_find(t, k2, SHMTAB_CREATE, 1, NULL, &now), SHMTAB_OK);
	assert_int_equal(now.slot, old.slot);
	assert_true(now.tag != old.tag);
	assert_false(shmtab_valid(t, &old));
	assert_int_equal(shmtab_reserve(t, &old, 0, 0), SHMTAB_STALE);
	assert_int_equal(shmtab_sum(t, &now), 0);
	assert_false(shmtab_try_free(t, &old, 0, NULL));
	assert_true(shmtab_valid(t, &now));
	/* A writer that added to a cell of the former row before it was
	 * reused finds its addition gone (the claim zeroes the cells), and
	 * its taking back stops at zero. */
	atomic_store(&st_cells(t, now.slot)[1], 0);
	assert_false(shmtab_take(t, &old, 1, 1));
	st_withdraw(&st_cells(t, now.slot)[1]);
	assert_int_equal(shmtab_get(t, &now, 1), 0);
	shmtab_free(t);
}

static void
test_full_window_and_eviction(void **state)
{
	/* 8 slots: the window is the whole table. */
	struct shmtab *t = shmtab_new(0, 8, 20, 2, rank_cell0);
	struct shmtab_ref r[10];
	uint8_t k[20];

	for (uint32_t i = 0; i < 8; i++) {
		uint64_t v = 0;
		key_n(k, i);
		assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 0, NULL, &r[i]), SHMTAB_OK);
		/* Ranks 10, 11, ... except row 3, kept whatever happens. */
		assert_true(shmtab_cas(t, &r[i], 0, &v, i == 3 ? KEEP_MARK : 10 + i));
	}
	/* Full: the lowest rank (row 0) gives way, then row 1. */
	key_n(k, 8);
	assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 1, NULL, &r[8]), SHMTAB_OK);
	assert_int_equal(r[8].slot, r[0].slot);
	key_n(k, 0);
	assert_int_equal(shmtab_find(t, k, SHMTAB_LOOKUP, 0, NULL, &r[0]), SHMTAB_ABSENT);
	uint64_t v = 0;
	assert_true(shmtab_cas(t, &r[8], 0, &v, 50));
	key_n(k, 9);
	assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 1, NULL, &r[9]), SHMTAB_OK);
	assert_int_equal(r[9].slot, r[1].slot);
	assert_false(shmtab_valid(t, &r[1]));
	/* Only rows that must be kept: the window is full. */
	for (uint32_t i = 2; i < 10; i++) {
		key_n(k, i);
		if (shmtab_find(t, k, SHMTAB_LOOKUP, 0, NULL, &r[i]) == SHMTAB_OK) {
			v = shmtab_get(t, &r[i], 0);
			assert_true(shmtab_cas(t, &r[i], 0, &v, KEEP_MARK));
		}
	}
	key_n(k, 100);
	assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 1, NULL, &r[0]), SHMTAB_FULL);
	/* An idle row (all zero) is freed by a sweep and makes room. */
	key_n(k, 5);
	assert_int_equal(shmtab_find(t, k, SHMTAB_LOOKUP, 0, NULL, &r[5]), SHMTAB_OK);
	v = KEEP_MARK;
	assert_true(shmtab_cas(t, &r[5], 0, &v, 0));
	shmtab_sweep(t, SHMTAB_MASTER, NULL);
	assert_false(shmtab_valid(t, &r[5]));
	assert_int_equal(slots_in_state(t, ST_FREE), 1);
	key_n(k, 100);
	assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 1, NULL, &r[0]), SHMTAB_OK);
	assert_int_equal(r[0].slot, r[5].slot);
	shmtab_free(t);
}

/*
 * Randomized, single process: reservations, takes, frees and sweeps over
 * more keys than a small table holds, against a plain array of counts.
 * After every step every key has the count of the model, no key has two
 * rows, and a key is refused room only when its window holds no free slot
 * and no idle row.
 */
static void
test_random_against_model(void **state)
{
	enum { KEYS = 48, CELLS = 3, STEPS = 20000, LIMIT = 5 };
	static unsigned model[KEYS][CELLS];
	struct shmtab *t = shmtab_new(0, 40, 20, CELLS, rank_busy_keeps);
	unsigned seed = (unsigned)time(NULL);
	struct shmtab_ref r;
	uint8_t k[20];

	memset(model, 0, sizeof(model));
	srand(seed);
	for (int step = 0; step < STEPS; step++) {
		unsigned key = (unsigned)rand() % KEYS, cell = (unsigned)rand() % CELLS;
		unsigned op = (unsigned)rand() % 100, sum = 0;

		key_n(k, key);
		for (unsigned c = 0; c < CELLS; c++)
			sum += model[key][c];
		if (op < 50) {
			enum shmtab_status st = shmtab_find(t, k, SHMTAB_CREATE, cell, NULL, &r);
			if (st == SHMTAB_FULL) {
				/* Only with no free slot and no idle row in the
				 * window. */
				size_t home = (size_t)keyhash_index(t->kh, k, 20) & t->mask;
				if (sum != 0)
					fail_msg("seed %u step %d: FULL for a key with a row", seed,
					         step);
				for (size_t j = 0; j < t->window; j++) {
					struct shmtab_ref o = {(home + j) & t->mask, 0};
					o.tag = atomic_load(st_tag(t, o.slot));
					if (tag_state(o.tag) != ST_USED || shmtab_sum(t, &o) == 0)
						fail_msg("seed %u step %d: FULL with room", seed,
						         step);
				}
				continue;
			}
			if (st != SHMTAB_OK)
				fail_msg("seed %u step %d: find %d", seed, step, st);
			enum shmtab_reserve res = shmtab_reserve(t, &r, cell, LIMIT);
			if (res != (sum >= LIMIT ? SHMTAB_OVER : SHMTAB_RESERVED))
				fail_msg("seed %u step %d: reserve %d with %u", seed, step, res,
				         sum);
			if (res == SHMTAB_RESERVED)
				model[key][cell]++;
			else if (sum == 0)
				fail_msg("seed %u step %d: over with nothing", seed, step);
		} else if (op < 95) {
			if (model[key][cell] == 0)
				continue;
			if (shmtab_find(t, k, SHMTAB_HELD, cell, NULL, &r) != SHMTAB_OK ||
			    !shmtab_take(t, &r, cell, 1))
				fail_msg("seed %u step %d: take", seed, step);
			model[key][cell]--;
			if (sum == 1 && !shmtab_try_free(t, &r, cell, NULL))
				fail_msg("seed %u step %d: idle row not freed", seed, step);
		} else {
			/* A worker dies: its cells go, idle rows are swept. */
			shmtab_recover(t, cell);
			shmtab_clear_cell(t, cell);
			shmtab_sweep(t, SHMTAB_MASTER, NULL);
			for (unsigned x = 0; x < KEYS; x++)
				model[x][cell] = 0;
		}
		unsigned rows = 0;
		for (unsigned x = 0; x < KEYS; x++) {
			unsigned s = 0, got = 0;
			for (unsigned c = 0; c < CELLS; c++)
				s += model[x][c];
			key_n(k, x);
			if (shmtab_find(t, k, SHMTAB_LOOKUP, 0, NULL, &r) == SHMTAB_OK)
				got = (unsigned)shmtab_sum(t, &r);
			if (got != s || rows_of(t, k) > 1)
				fail_msg("seed %u step %d: key %u has %u, want %u", seed, step, x,
				         got, s);
			rows += s > 0;
		}
		/* Rows without connections are freed at once: none linger. */
		if (slots_in_state(t, ST_USED) != rows)
			fail_msg("seed %u step %d: %u rows used, %u keys counted", seed, step,
			         slots_in_state(t, ST_USED), rows);
	}
	shmtab_free(t);
}

/* ---- dead, stopped and scribbling processes ---- */

/*
 * What owner 1 leaves when killed at each step of inserting key P (CLAIM,
 * key written, PENDING) and of freeing row D (DRAIN): the other workers
 * get SHMTAB_BUSY for those keys only, the master's recover gives every
 * slot back, and row D comes back with its very tag and counts.
 */
static void
test_dead_owner_left_half_done(void **state)
{
	for (int steps = 1; steps <= 4; steps++) {
		struct shmtab *t = shmtab_new(0, 32, 20, 2, rank_busy_keeps);
		struct shmtab_ref d, other, r;
		uint8_t kp[20], kd[20], ko[20];
		int status;
		pid_t pid;

		key_n(kp, 1);
		key_n(kd, 2);
		key_n(ko, 3);
		assert_int_equal(shmtab_find(t, kd, SHMTAB_CREATE, 0, NULL, &d), SHMTAB_OK);
		assert_int_equal(shmtab_reserve(t, &d, 0, 0), SHMTAB_RESERVED);
		assert_int_equal(shmtab_find(t, ko, SHMTAB_CREATE, 0, NULL, &other), SHMTAB_OK);
		pid = ut_proc_fork();
		if (pid == 0) {
			/* The steps of st_claim() for P, then of draining D. */
			size_t s = NONE, home = (size_t)keyhash_index(t->kh, kp, 20) & t->mask;
			uint64_t kw[KEY_WORDS_MAX] = {0}, ft = 0;
			memcpy(kw, kp, 20);
			for (size_t j = 0; j < t->window && s == NONE; j++) {
				ft = atomic_load(st_tag(t, (home + j) & t->mask));
				if (tag_state(ft) == ST_FREE)
					s = (home + j) & t->mask;
			}
			if (s == NONE)
				_exit(3);
			if (steps >= 1)
				st_cas_tag(t, s, ft, tag_make(tag_gen(ft) + 1, 1, ST_CLAIM));
			if (steps >= 2)
				for (size_t w = 0; w < t->key_words; w++)
					atomic_store(&st_key(t, s)[w], kw[w]);
			if (steps >= 3)
				st_cas_tag(t, s, tag_make(tag_gen(ft) + 1, 1, ST_CLAIM),
				           tag_make(tag_gen(ft) + 1, 1, ST_PENDING));
			if (steps >= 4)
				st_cas_tag(t, d.slot, d.tag, tag_make(tag_gen(d.tag), 1, ST_DRAIN));
			raise(SIGKILL);
			_exit(4);
		}
		status = ut_proc_wait(pid);
		assert_true(WIFSIGNALED(status));

		/* Before the master notices: only P and D are affected. */
		enum shmtab_status want_p = steps >= 3 ? SHMTAB_BUSY : SHMTAB_OK;
		assert_int_equal(shmtab_find(t, kp, SHMTAB_CREATE, 0, NULL, &r), want_p);
		if (want_p == SHMTAB_OK)
			assert_true(shmtab_try_free(t, &r, 0, NULL));
		assert_int_equal(shmtab_find(t, kd, SHMTAB_LOOKUP, 0, NULL, &r),
		                 steps >= 4 ? SHMTAB_BUSY : SHMTAB_OK);
		/* Giving back what one holds works even while it is drained. */
		assert_int_equal(shmtab_find(t, kd, SHMTAB_HELD, 0, NULL, &r), SHMTAB_OK);
		assert_int_equal(shmtab_find(t, ko, SHMTAB_LOOKUP, 0, NULL, &r), SHMTAB_OK);

		shmtab_recover(t, 0); /* another owner: nothing of owner 1 moves */
		assert_int_equal(shmtab_find(t, kd, SHMTAB_LOOKUP, 0, NULL, &r),
		                 steps >= 4 ? SHMTAB_BUSY : SHMTAB_OK);
		shmtab_recover(t, 1);
		assert_int_equal(slots_in_state(t, ST_CLAIM) + slots_in_state(t, ST_PENDING) +
		                         slots_in_state(t, ST_DRAIN),
		                 0);
		assert_int_equal(slots_in_state(t, ST_USED), 2);
		assert_true(shmtab_valid(t, &d)); /* the very tag it had */
		assert_int_equal(shmtab_sum(t, &d), 1);
		assert_int_equal(shmtab_find(t, kp, SHMTAB_CREATE, 0, NULL, &r), SHMTAB_OK);
		assert_int_equal(rows_of(t, kp), 1);
		shmtab_free(t);
	}
}

/*
 * A stopped process in the middle of draining a row (what a compromised
 * worker may leave on purpose): the others get BUSY for that key after a
 * bounded number of looks and carry on with every other key, and the
 * master's whole pass over the table does not wait for it.
 */
static void
test_stopped_owner_blocks_nobody(void **state)
{
	struct shmtab *t = shmtab_new(1, 64, 20, 2, rank_busy_keeps);
	struct shmtab_ref d, r, fixed = shmtab_fixed(t, 0);
	uint8_t kd[20], k[20];
	struct timespec t0, t1;
	int status;
	pid_t pid;

	key_n(kd, 42);
	assert_int_equal(shmtab_find(t, kd, SHMTAB_CREATE, 0, NULL, &d), SHMTAB_OK);
	pid = ut_proc_fork();
	if (pid == 0) {
		st_cas_tag(t, d.slot, d.tag, tag_make(tag_gen(d.tag), 1, ST_DRAIN));
		raise(SIGSTOP);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(shmtab_find(t, kd, SHMTAB_CREATE, 0, NULL, &r), SHMTAB_BUSY);
	for (uint32_t i = 0; i < 20; i++) {
		key_n(k, i);
		assert_int_equal(shmtab_find(t, k, SHMTAB_CREATE, 0, NULL, &r), SHMTAB_OK);
		assert_int_equal(shmtab_reserve(t, &r, 0, 1), SHMTAB_RESERVED);
	}
	assert_int_equal(shmtab_reserve(t, &fixed, 0, 1), SHMTAB_RESERVED);
	/* The master's pass for another worker that died. */
	shmtab_recover(t, 0);
	shmtab_clear_cell(t, 0);
	shmtab_sweep(t, SHMTAB_MASTER, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_int_equal(slots_in_state(t, ST_USED), 0);
	assert_int_equal(slots_in_state(t, ST_DRAIN), 1);
	assert_int_equal(shmtab_sum(t, &fixed), 0);

	/* Once it is gone the master gives the row back as it was. */
	kill(pid, SIGCONT);
	status = ut_proc_wait(pid);
	assert_true(WIFEXITED(status));
	shmtab_recover(t, 1);
	assert_int_equal(shmtab_find(t, kd, SHMTAB_LOOKUP, 0, NULL, &r), SHMTAB_OK);
	shmtab_free(t);
}

/*
 * A worker that scribbles over the whole table: the master's passes still
 * end (bounded, never out of the mapping: ASan watches) and the workers'
 * calls answer something without crashing or hanging.
 */
static void
test_garbage_table(void **state)
{
	static const uint8_t fills[] = {0xff, 0x03, 0x04, 0x02, 0x01, 0x00};
	uint8_t k[20];

	for (size_t f = 0; f < sizeof(fills) + 1; f++) {
		struct shmtab *t = shmtab_new(2, 64, 20, 3, rank_busy_keeps);
		struct shmtab_ref r, fixed = shmtab_fixed(t, 1);

		if (f < sizeof(fills)) {
			memset((void *)t->map, fills[f], t->map_len);
		} else {
			srand(1234);
			for (size_t i = 0; i < t->map_len; i++)
				((unsigned char *)t->map)[i] = (unsigned char)rand();
		}
		shmtab_recover(t, 1);
		shmtab_recover(t, f < sizeof(fills) ? fills[f] : 7);
		shmtab_clear_cell(t, 1);
		shmtab_sweep(t, SHMTAB_MASTER, NULL);
		for (uint32_t i = 0; i < 100; i++) {
			key_n(k, i);
			if (shmtab_find(t, k, SHMTAB_CREATE, 2, NULL, &r) == SHMTAB_OK) {
				(void)shmtab_reserve(t, &r, 2, 5);
				(void)shmtab_sum(t, &r);
				(void)shmtab_take(t, &r, 2, 1);
				(void)shmtab_try_free(t, &r, 2, NULL);
			}
			(void)shmtab_find(t, k, SHMTAB_HELD, 2, NULL, &r);
		}
		(void)shmtab_reserve(t, &fixed, 0, 3);
		(void)shmtab_sum(t, &fixed);
		shmtab_free(t);
	}
}

/* ---- racing for the last place ---- */

/*
 * Every participant loops: find (or make) the row of one of two keys,
 * reserve under the limit, and while holding its place bump a shared
 * "inside" count that must never pass the limit, nor may the row's sum; then give the place back
 * and free the row when it is empty, so rows are made and freed under each
 * other's feet all the time (which would show a key with two rows as a
 * limit passed).
 */
enum { RACE_ROUNDS = 30000, RACE_KEYS = 2 };

struct race {
	struct shmtab *t;
	_Atomic unsigned ready;
	unsigned n, limit;
	_Atomic unsigned inside[RACE_KEYS];
	_Atomic unsigned max_inside[RACE_KEYS];
	_Atomic unsigned violations, granted, refused, busy;
};

static void
race_run(struct race *rc, unsigned owner)
{
	uint8_t k[20];

	/* Start together, or the first would be done before the last is
	 * forked. */
	rc->ready++;
	for (int spin = 0; rc->ready < rc->n && spin < 1000000; spin++)
		sched_yield();
	for (unsigned i = 0; i < RACE_ROUNDS; i++) {
		unsigned key = (i / 7 + owner) % RACE_KEYS, now;
		struct shmtab_ref r;
		enum shmtab_reserve res = SHMTAB_STALE;

		key_n(k, key);
		for (int a = 0; a < 8 && res == SHMTAB_STALE; a++) {
			if (shmtab_find(rc->t, k, SHMTAB_CREATE, owner, NULL, &r) != SHMTAB_OK) {
				rc->busy++;
				break;
			}
			res = shmtab_reserve(rc->t, &r, owner, rc->limit);
		}
		if (res != SHMTAB_RESERVED) {
			rc->refused += res == SHMTAB_OVER;
			continue;
		}
		rc->granted++;
		now = ++rc->inside[key];
		/* Nor may any reader see the row over its limit. */
		if (now > rc->limit || shmtab_sum(rc->t, &r) > rc->limit)
			rc->violations++;
		for (unsigned m = rc->max_inside[key]; now > m;)
			if (atomic_compare_exchange_weak(&rc->max_inside[key], &m, now))
				break;
		/* Hold the place a little while the others try. */
		for (volatile unsigned spin = 0; spin < 100 + (i % 5) * 50; spin++)
			;
		if (i % 64 == 0)
			sched_yield();
		rc->inside[key]--;
		if (shmtab_find(rc->t, k, SHMTAB_HELD, owner, NULL, &r) != SHMTAB_OK ||
		    !shmtab_take(rc->t, &r, owner, 1)) {
			rc->violations++;
			continue;
		}
		if (shmtab_sum(rc->t, &r) == 0)
			shmtab_try_free(rc->t, &r, owner, NULL);
	}
}

static struct race *
race_new(unsigned owners, unsigned limit)
{
	struct race *rc =
	        mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(rc != MAP_FAILED);
	memset(rc, 0, sizeof(*rc));
	rc->n = owners;
	rc->limit = limit;
	/* A small table: the two keys' windows overlap. */
	rc->t = shmtab_new(0, 8, 20, owners, rank_busy_keeps);
	return rc;
}

static void
race_check(struct race *rc, const char *what)
{
	uint8_t k[20];
	struct shmtab_ref r;

	print_message("%s, limit %u: granted %u refused %u busy %u, most inside at once %u/%u\n",
	              what, rc->limit, rc->granted, rc->refused, rc->busy, rc->max_inside[0],
	              rc->max_inside[1]);
	assert_int_equal(rc->violations, 0);
	assert_true(rc->granted > 0);
	for (unsigned key = 0; key < RACE_KEYS; key++) {
		key_n(k, key);
		assert_true(rc->max_inside[key] <= rc->limit);
		if (shmtab_find(rc->t, k, SHMTAB_LOOKUP, 0, NULL, &r) == SHMTAB_OK)
			assert_int_equal(shmtab_sum(rc->t, &r), 0);
		assert_true(rows_of(rc->t, k) <= 1);
	}
	shmtab_free(rc->t);
	munmap(rc, sizeof(*rc));
}

/* Limit 1: every place given back empties the row, which is freed and made
 * again at once, so rows are made by several processes at the same moment
 * all the time. Limit 3: places are held while others try. */
static void
test_race_processes(void **state)
{
	enum { PROCS = 6 };
	static const unsigned limits[] = {1, 3};

	for (size_t l = 0; l < AR_NELEM(limits); l++) {
		struct race *rc = race_new(PROCS, limits[l]);
		pid_t pids[PROCS];

		for (unsigned p = 0; p < PROCS; p++) {
			pids[p] = ut_proc_fork();
			if (pids[p] == 0) {
				race_run(rc, p);
				_exit(0);
			}
		}
		for (unsigned p = 0; p < PROCS; p++) {
			int status = ut_proc_wait(pids[p]);
			assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
		race_check(rc, "processes");
	}
}

struct race_thread {
	struct race *rc;
	unsigned owner;
};

static void *
race_thread(void *arg)
{
	struct race_thread *rt = arg;

	race_run(rt->rc, rt->owner);
	return NULL;
}

static void
test_race_threads(void **state)
{
	enum { THREADS = 6 };
	static const unsigned limits[] = {1, 3};

	for (size_t l = 0; l < AR_NELEM(limits); l++) {
		struct race *rc = race_new(THREADS, limits[l]);
		struct race_thread rt[THREADS];
		pthread_t th[THREADS];

		for (unsigned i = 0; i < THREADS; i++) {
			rt[i] = (struct race_thread){rc, i};
			assert_int_equal(pthread_create(&th[i], NULL, race_thread, &rt[i]), 0);
		}
		for (unsigned i = 0; i < THREADS; i++)
			assert_int_equal(pthread_join(th[i], NULL), 0);
		race_check(rc, "threads");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fixed_rows),
	        cmocka_unit_test(test_find_and_create),
	        cmocka_unit_test(test_reserve_and_take),
	        cmocka_unit_test(test_stale_reference),
	        cmocka_unit_test(test_full_window_and_eviction),
	        cmocka_unit_test(test_random_against_model),
	        cmocka_unit_test(test_dead_owner_left_half_done),
	        cmocka_unit_test(test_stopped_owner_blocks_nobody),
	        cmocka_unit_test(test_garbage_table),
	        cmocka_unit_test(test_race_processes),
	        cmocka_unit_test(test_race_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
