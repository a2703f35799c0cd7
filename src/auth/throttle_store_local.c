/* SPDX-License-Identifier: ISC */
/*
 * throttle_store_local.c - the throttle's counters in this process's memory
 * (see throttle_store.h): one LRU table (lib/lru.c) of entries, one per key.
 *
 * An entry keeps its distinct failures oldest first (at most `track`, the
 * oldest dropped beyond), the attempts in flight (a small array grown on
 * demand: at most the limit's room plus one repeat per failure on record),
 * and the end of its lockout. An entry left with nothing (its attempt
 * succeeded or gave its room back, no failure in the window, no lockout)
 * is dropped at once. Memory is bounded by max_keys entries; under a flood
 * of new keys the least recently touched go first, and a locked client
 * that keeps trying keeps its entry fresh. An entry evicted with
 * attempts in flight forgets them: their settle finds nothing to release,
 * and a FAILURE starts a fresh entry.
 *
 * Every answer is given before the call returns.
 */
#include "throttle_store.h"
#include "../lib/lru.h"

#include <stdlib.h>
#include <string.h>

struct local_fail {
	uint64_t digest;
	uint64_t at_ms; /* last time this password failed */
};

struct local_flight {
	uint64_t digest;
	bool takes_room; /* RESERVED (a new password), not REPEAT */
};

struct local_entry {
	uint64_t locked_until_ms;
	struct throttle_label *label; /* who, from the start of a lockout */
	unsigned n_fails;
	unsigned n_flight, cap_flight;
	struct local_flight *flight;
	struct local_fail fails[]; /* oldest first, track entries */
};

struct local_store {
	struct lru *table;
	unsigned track;
};

static void
label_free(struct throttle_label *l)
{
	if (l == NULL)
		return;
	free((char *)l->client);
	free((char *)l->login);
	free((char *)l->alias);
	free(l);
}

static struct throttle_label *
label_copy(const struct throttle_label *from, unsigned failures)
{
	struct throttle_label *l = xmalloc(sizeof(*l));

	*l = *from;
	l->client = from->client != NULL ? xstrdup(from->client) : NULL;
	l->login = from->login != NULL ? xstrdup(from->login) : NULL;
	l->alias = from->alias != NULL ? xstrdup(from->alias) : NULL;
	l->failures = failures;
	return l;
}

static void
entry_free(void *p)
{
	struct local_entry *e = p;

	label_free(e->label);
	free(e->flight);
	free(e);
}

static struct local_entry *
entry_get(struct local_store *st, const uint8_t key[KEYHASH_LEN], bool create)
{
	struct local_entry *e = lru_get(st->table, key);

	if (e == NULL && create) {
		e = xcalloc(1, sizeof(*e) + st->track * sizeof(e->fails[0]));
		lru_put(st->table, key, e);
	}
	return e;
}

/* Forget failures older than the window. */
static void
entry_prune(struct local_entry *e, uint64_t now_ms, uint64_t window_ms)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < e->n_fails; i++) {
		if (e->fails[i].at_ms + window_ms > now_ms)
			e->fails[keep++] = e->fails[i];
	}
	e->n_fails = keep;
}

static int
entry_find_fail(const struct local_entry *e, uint64_t digest)
{
	for (unsigned i = 0; i < e->n_fails; i++) {
		if (e->fails[i].digest == digest)
			return (int)i;
	}
	return -1;
}

static bool
entry_in_flight(const struct local_entry *e, uint64_t digest)
{
	for (unsigned i = 0; i < e->n_flight; i++) {
		if (e->flight[i].digest == digest)
			return true;
	}
	return false;
}

static unsigned
entry_room_taken(const struct local_entry *e)
{
	unsigned n = 0;

	for (unsigned i = 0; i < e->n_flight; i++)
		n += e->flight[i].takes_room;
	return n;
}

/* Room for new passwords: what the limit leaves, and one attempt at a time
 * once a lockout has ended while its failures are still in the window (as
 * before reservations: each further failure locks again at once). */
static unsigned
entry_room(const struct local_entry *e, unsigned limit)
{
	return e->n_fails < limit ? limit - e->n_fails : 1;
}

static void
entry_flight_add(struct local_entry *e, uint64_t digest, bool takes_room)
{
	if (e->n_flight == e->cap_flight) {
		e->cap_flight = e->cap_flight > 0 ? e->cap_flight * 2 : 4;
		e->flight = xrealloc(e->flight, e->cap_flight * sizeof(*e->flight));
	}
	e->flight[e->n_flight++] = (struct local_flight){digest, takes_room};
}

static void
entry_flight_del(struct local_entry *e, uint64_t digest)
{
	for (unsigned i = 0; i < e->n_flight; i++) {
		if (e->flight[i].digest == digest) {
			e->flight[i] = e->flight[--e->n_flight];
			return;
		}
	}
}

/* A failure of digest: a new one appended (the oldest dropped when full), a
 * repeat moved to the end with its new time. */
static void
entry_fail(struct local_store *st, struct local_entry *e, uint64_t digest, uint64_t now_ms)
{
	int j = entry_find_fail(e, digest);

	if (j >= 0) {
		memmove(&e->fails[j], &e->fails[j + 1],
		        (e->n_fails - (unsigned)j - 1) * sizeof(e->fails[0]));
		e->n_fails--;
	} else if (e->n_fails == st->track) {
		memmove(&e->fails[0], &e->fails[1], (e->n_fails - 1) * sizeof(e->fails[0]));
		e->n_fails--;
	}
	e->fails[e->n_fails++] = (struct local_fail){digest, now_ms};
}

static void
local_reserve(void *state, struct throttle_op *op, size_t from, throttle_store_cb *cb, void *arg)
{
	struct local_store *st = state;
	bool repeat[THROTTLE_MAX_SLOTS] = {false};

	op->verdict = THROTTLE_ADMIT;
	/* A lockout anywhere answers first, whatever else is in flight. */
	for (size_t i = from; i < op->n_slots; i++) {
		struct throttle_slot *s = &op->slots[i];
		struct local_entry *e;
		if (s->limit == 0 || (e = entry_get(st, s->key, false)) == NULL)
			continue;
		if (e->locked_until_ms > op->now_ms) {
			op->verdict = THROTTLE_LOCKED;
			op->locked_slot = i;
			s->locked_until_ms = e->locked_until_ms;
			cb(arg, op);
			return;
		}
	}
	for (size_t i = from; i < op->n_slots; i++) {
		struct throttle_slot *s = &op->slots[i];
		struct local_entry *e;
		if (s->limit == 0 || (e = entry_get(st, s->key, false)) == NULL)
			continue;
		entry_prune(e, op->now_ms, op->window_ms);
		if (entry_in_flight(e, s->digest)) {
			op->verdict = THROTTLE_WAIT;
			break;
		}
		repeat[i] = entry_find_fail(e, s->digest) >= 0;
		if (!repeat[i] && entry_room_taken(e) >= entry_room(e, s->limit)) {
			op->verdict = THROTTLE_WAIT;
			break;
		}
	}
	if (op->verdict == THROTTLE_ADMIT) {
		for (size_t i = from; i < op->n_slots; i++) {
			struct throttle_slot *s = &op->slots[i];
			if (s->limit == 0)
				continue;
			entry_flight_add(entry_get(st, s->key, true), s->digest, !repeat[i]);
			s->state = repeat[i] ? THROTTLE_SLOT_REPEAT : THROTTLE_SLOT_RESERVED;
		}
	}
	cb(arg, op);
}

static void
local_settle(void *state, struct throttle_op *op, throttle_store_cb *cb, void *arg)
{
	struct local_store *st = state;

	for (size_t i = 0; i < op->n_slots; i++) {
		struct throttle_slot *s = &op->slots[i];
		bool failure = op->outcome == THROTTLE_FAILURE;
		struct local_entry *e = entry_get(st, s->key, failure);

		s->failures = 0;
		s->lock_started = false;
		if (e != NULL && s->state != THROTTLE_SLOT_NONE)
			entry_flight_del(e, s->digest);
		s->state = THROTTLE_SLOT_NONE;
		if (e == NULL)
			continue;
		if (failure) {
			entry_prune(e, op->now_ms, op->window_ms);
			entry_fail(st, e, s->digest, op->now_ms);
			s->failures = e->n_fails;
			if (s->limit > 0 && e->n_fails >= s->limit &&
			    e->locked_until_ms <= op->now_ms) {
				e->locked_until_ms = op->now_ms + op->lockout_ms;
				s->lock_started = true;
				label_free(e->label);
				e->label =
				        s->label != NULL ? label_copy(s->label, e->n_fails) : NULL;
			}
		} else if (op->outcome == THROTTLE_SUCCESS && s->forget_on_success) {
			/* Attempts still in flight keep their room. */
			e->n_fails = 0;
			e->locked_until_ms = 0;
		}
		if (!failure) {
			/* An entry that holds nothing goes: the table keeps room
			 * for keys under attack, not for every login that
			 * ever succeeded. */
			entry_prune(e, op->now_ms, op->window_ms);
			if (e->n_fails == 0 && e->n_flight == 0 && e->locked_until_ms <= op->now_ms)
				lru_del(st->table, s->key);
		}
	}
	cb(arg, op);
}

struct local_walk {
	uint64_t now_ms;
	throttle_store_lockout_cb *each;
	throttle_store_match_cb *match;
	void *arg;
	unsigned ended;
};

static bool
lockouts_each(void *arg, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct local_walk *w = arg;
	const struct local_entry *e = value;

	if (e->label != NULL && e->locked_until_ms > w->now_ms)
		w->each(w->arg, e->label, e->locked_until_ms);
	return false;
}

static void
local_lockouts(void *state, uint64_t now_ms, throttle_store_lockout_cb *cb, void *arg)
{
	struct local_store *st = state;
	struct local_walk w = {.now_ms = now_ms, .each = cb, .arg = arg};

	lru_each(st->table, lockouts_each, &w);
}

static bool
unlock_each(void *arg, const uint8_t key[LRU_KEY_LEN], void *value)
{
	struct local_walk *w = arg;
	const struct local_entry *e = value;

	if (e->label == NULL || e->locked_until_ms <= w->now_ms || !w->match(w->arg, e->label))
		return false;
	w->ended++;
	return true; /* the entry goes, counts and attempts in flight with it */
}

static unsigned
local_unlock(void *state, uint64_t now_ms, throttle_store_match_cb *match, void *arg,
             const uint8_t (*forget)[KEYHASH_LEN], const struct throttle_label *forget_labels,
             size_t n_forget, throttle_store_unlocked_cb *done, void *done_arg)
{
	struct local_store *st = state;
	struct local_walk w = {.now_ms = now_ms, .match = match, .arg = arg};

	(void)forget_labels; /* the digests name this process's keys */
	lru_each(st->table, unlock_each, &w);
	for (size_t i = 0; i < n_forget; i++)
		lru_del(st->table, forget[i]);
	if (done != NULL)
		done(done_arg, 0, false); /* nothing shared */
	return w.ended;
}

static void
local_resize(void *state, size_t max_keys, unsigned track)
{
	struct local_store *st = state;
	struct lru *table;
	struct local_entry *e;
	const uint8_t *key;

	track = track > 0 ? track : 1;
	table = lru_new(max_keys, entry_free);
	/* Oldest first, so that the new table keeps the order of use (and
	 * drops the least recently used when it is smaller). */
	while ((e = lru_oldest(st->table, &key)) != NULL) {
		unsigned keep = e->n_fails < track ? e->n_fails : track;
		struct local_entry *ne = xcalloc(1, sizeof(*ne) + track * sizeof(ne->fails[0]));
		uint8_t k[LRU_KEY_LEN];

		ne->locked_until_ms = e->locked_until_ms;
		ne->label = e->label;
		e->label = NULL;
		ne->n_flight = e->n_flight;
		ne->cap_flight = e->cap_flight;
		ne->flight = e->flight;
		e->flight = NULL;
		ne->n_fails = keep;
		memcpy(ne->fails, e->fails + (e->n_fails - keep), keep * sizeof(ne->fails[0]));
		memcpy(k, key, sizeof(k));
		lru_del(st->table, k);
		lru_put(table, k, ne);
	}
	lru_free(st->table);
	st->table = table;
	st->track = track;
}

static size_t
local_count(void *state)
{
	struct local_store *st = state;

	return lru_count(st->table);
}

static void
local_free(void *state)
{
	struct local_store *st = state;

	if (st == NULL)
		return;
	lru_free(st->table);
	free(st);
}

static const struct throttle_store_ops local_ops = {
        .name = "local",
        .reserve = local_reserve,
        .settle = local_settle,
        .lockouts = local_lockouts,
        .unlock = local_unlock,
        .resize = local_resize,
        .count = local_count,
        .free = local_free,
};

struct throttle_store
throttle_store_local_new(size_t max_keys, unsigned track)
{
	struct local_store *st = xcalloc(1, sizeof(*st));

	st->table = lru_new(max_keys, entry_free);
	st->track = track > 0 ? track : 1;
	return (struct throttle_store){&local_ops, st};
}
