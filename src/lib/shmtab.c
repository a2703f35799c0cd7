/* SPDX-License-Identifier: ISC */
/*
 * shmtab.c - a lock-free table in shared memory (see shmtab.h for the
 * design: states of a slot, why a key never has two rows, why a limit is
 * never exceeded, what happens when a process stops or dies).
 *
 * Layout: one anonymous MAP_SHARED mapping of slots, the n_fixed fixed rows
 * first, then the keyed slots. A slot is 64-bit words: the tag, the key
 * (zero-padded to whole words), then the cells. All of them are C11 atomics
 * because other processes may write any of them at any time; the key is
 * read between two reads of the tag, as a seqlock reads, and counts only if
 * the tag did not change.
 */
#include "shmtab.h"
#include "keyhash.h"
#include "log.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Between processes only lock-free atomics work: a lock-based fallback
 * would keep its lock in this process's memory, not in the mapping. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef _Atomic uint64_t shmtab_word;

enum { ST_FREE = 0, ST_CLAIM, ST_PENDING, ST_USED, ST_DRAIN };

#define KEY_WORDS_MAX (SHMTAB_KEY_MAX / 8)
#define NONE ((size_t)-1)
/* Attempts of a find that met other processes half way, and of a cell
 * update that lost its compare-and-swap; each failure means another
 * process made progress, so these are never reached but by a stopped
 * process or a scribbler. */
#define FIND_TRIES 16
#define CAS_TRIES 64

/* A counter cell: what it counts in the low 40 bits, reservations in
 * flight (added, not yet checked against the limit) above. */
#define IN_FLIGHT_UNIT ((uint64_t)1 << 40)
#define COUNT_MASK (IN_FLIGHT_UNIT - 1)

struct shmtab {
	shmtab_word *map;
	size_t map_len;
	size_t n_fixed;
	size_t cap, mask, window; /* keyed slots */
	size_t key_len, key_words, n_cells, slot_words;
	struct keyhash *kh;
	shmtab_rank_cb *rank;
};

enum key_match { KEY_OTHER, KEY_SAME, KEY_UNSTABLE };

/* Tag: generation in the high half, then the owner, then the state. */
static uint64_t
tag_make(uint32_t gen, unsigned owner, unsigned state)
{
	return (uint64_t)gen << 32 | (uint64_t)(owner & 0xffffffu) << 8 | (state & 0xffu);
}

static unsigned
tag_state(uint64_t tag)
{
	return (unsigned)(tag & 0xffu);
}

static unsigned
tag_owner(uint64_t tag)
{
	return (unsigned)(tag >> 8) & 0xffffffu;
}

static uint32_t
tag_gen(uint64_t tag)
{
	return (uint32_t)(tag >> 32);
}

static shmtab_word *
st_tag(const struct shmtab *t, size_t slot)
{
	return t->map + slot * t->slot_words;
}

static shmtab_word *
st_key(const struct shmtab *t, size_t slot)
{
	return st_tag(t, slot) + 1;
}

static shmtab_word *
st_cells(const struct shmtab *t, size_t slot)
{
	return st_tag(t, slot) + 1 + t->key_words;
}

static void
st_check_ref(const struct shmtab *t, const struct shmtab_ref *ref)
{
	if (ref->slot >= t->n_fixed + t->cap)
		fatal("shmtab: slot %zu out of range (%zu)", ref->slot, t->n_fixed + t->cap);
}

static void
st_check_cell(const struct shmtab *t, size_t cell)
{
	if (cell >= t->n_cells)
		fatal("shmtab: cell %zu out of range (%zu)", cell, t->n_cells);
}

static void
st_check_owner(unsigned owner)
{
	if (owner > SHMTAB_OWNER_MAX && owner != SHMTAB_MASTER)
		fatal("shmtab: owner %u out of range", owner);
}

static bool
st_cas_tag(const struct shmtab *t, size_t slot, uint64_t from, uint64_t to)
{
	return atomic_compare_exchange_strong(st_tag(t, slot), &from, to);
}

/* Is the key in slot (whose tag was just read as tag) the caller's? */
static enum key_match
st_key_cmp(const struct shmtab *t, size_t slot, const uint64_t *kw, uint64_t tag)
{
	const shmtab_word *k = st_key(t, slot);
	bool same = true;

	for (size_t w = 0; w < t->key_words; w++)
		same &= atomic_load_explicit(&k[w], memory_order_relaxed) == kw[w];
	/* The key reads must not move past the second tag read. */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load(st_tag(t, slot)) != tag)
		return KEY_UNSTABLE;
	return same ? KEY_SAME : KEY_OTHER;
}

static uint64_t
st_rank(const struct shmtab *t, size_t slot, uint64_t tag, void *arg)
{
	struct shmtab_ref ref = {slot, tag};

	return t->rank != NULL ? t->rank(t, &ref, arg) : SHMTAB_KEEP;
}

/*
 * Free the USED keyed row at slot (tag as read) if its rank, read once it
 * is marked DRAIN, is at most max_rank. While it is marked, a writer that
 * adds to a cell sees the mark when it checks the tag and takes its
 * addition back; one that added before the mark is seen by the rank.
 */
static bool
st_drain_free(struct shmtab *t, size_t slot, uint64_t tag, unsigned owner, void *arg,
              uint64_t max_rank)
{
	uint64_t drain = tag_make(tag_gen(tag), owner, ST_DRAIN);

	if (slot < t->n_fixed || tag_state(tag) != ST_USED || !st_cas_tag(t, slot, tag, drain))
		return false;
	if (st_rank(t, slot, tag, arg) > max_rank) {
		/* The very tag it had: references taken before stay good. */
		st_cas_tag(t, slot, drain, tag);
		return false;
	}
	return st_cas_tag(t, slot, drain, tag_make(tag_gen(tag), 0, ST_FREE));
}

/* A slot of the window other than mine that holds the key, or may. */
static bool
st_other_row(const struct shmtab *t, size_t home, size_t mine, const uint64_t *kw)
{
	for (size_t j = 0; j < t->window; j++) {
		size_t s = t->n_fixed + ((home + j) & t->mask);
		uint64_t tag = atomic_load(st_tag(t, s));
		unsigned state = tag_state(tag);

		if (s == mine || (state != ST_PENDING && state != ST_USED && state != ST_DRAIN))
			continue;
		if (st_key_cmp(t, s, kw, tag) != KEY_OTHER)
			return true;
	}
	return false;
}

/* Make the FREE slot (tag as read) the key's row. False if another process
 * took the slot or is inserting the same key: the caller looks again. */
static bool
st_claim(struct shmtab *t, size_t slot, uint64_t free_tag, size_t home, const uint64_t *kw,
         unsigned owner, struct shmtab_ref *ref_r)
{
	uint32_t gen = tag_gen(free_tag) + 1;
	uint64_t claim = tag_make(gen, owner, ST_CLAIM);
	uint64_t pending = tag_make(gen, owner, ST_PENDING);
	uint64_t used = tag_make(gen, 0, ST_USED);
	shmtab_word *k = st_key(t, slot), *c = st_cells(t, slot);

	if (!st_cas_tag(t, slot, free_tag, claim))
		return false;
	for (size_t w = 0; w < t->key_words; w++)
		atomic_store_explicit(&k[w], kw[w], memory_order_relaxed);
	/* A writer that found the row under its former key may still add to a
	 * cell and take it back; it checks the tag and never goes below 0. */
	for (size_t i = 0; i < t->n_cells; i++)
		atomic_store(&c[i], 0);
	/* Announce, then look: see shmtab.h on why a key gets one row. */
	if (!st_cas_tag(t, slot, claim, pending))
		return false;
	if (st_other_row(t, home, slot, kw)) {
		st_cas_tag(t, slot, pending, tag_make(gen, 0, ST_FREE));
		return false;
	}
	if (!st_cas_tag(t, slot, pending, used))
		return false;
	*ref_r = (struct shmtab_ref){slot, used};
	return true;
}

struct shmtab *
shmtab_new(size_t n_fixed, size_t capacity, size_t key_len, size_t n_cells, shmtab_rank_cb *rank)
{
	struct shmtab *t;
	size_t cap = 0, slots;

	if (key_len == 0 || key_len > SHMTAB_KEY_MAX)
		fatal("shmtab: key length %zu not in 1..%d", key_len, SHMTAB_KEY_MAX);
	if (capacity > 0) {
		cap = 1;
		while (cap < capacity) {
			if (cap > SIZE_MAX / 4)
				fatal("shmtab: capacity %zu is too large", capacity);
			cap *= 2;
		}
	}
	t = xcalloc(1, sizeof(*t));
	t->n_fixed = n_fixed;
	t->cap = cap;
	t->mask = cap > 0 ? cap - 1 : 0;
	t->window = cap < SHMTAB_WINDOW ? cap : SHMTAB_WINDOW;
	t->key_len = key_len;
	t->key_words = (key_len + 7) / 8;
	t->n_cells = n_cells;
	t->slot_words = 1 + t->key_words + n_cells;
	t->rank = rank;
	slots = n_fixed + cap;
	if (slots < n_fixed || slots > SIZE_MAX / sizeof(shmtab_word) / t->slot_words)
		fatal("shmtab: table too large");
	t->map_len = slots * t->slot_words * sizeof(shmtab_word);
	if (t->map_len == 0)
		t->map_len = sizeof(shmtab_word);
	/* Anonymous memory is zero-filled: every slot starts FREE, gen 0. */
	t->map = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t->map == MAP_FAILED)
		fatal("shmtab: mmap %zu bytes: %s", t->map_len, strerror(errno));
	for (size_t i = 0; i < n_fixed; i++)
		atomic_store(st_tag(t, i), tag_make(0, 0, ST_USED));
	t->kh = keyhash_new();
	return t;
}

void
shmtab_free(struct shmtab *t)
{
	if (t == NULL)
		return;
	munmap(t->map, t->map_len);
	keyhash_free(t->kh);
	free(t);
}

size_t
shmtab_capacity(const struct shmtab *t)
{
	return t->cap;
}

struct shmtab_ref
shmtab_fixed(const struct shmtab *t, size_t row)
{
	if (row >= t->n_fixed)
		fatal("shmtab: fixed row %zu out of range (%zu)", row, t->n_fixed);
	return (struct shmtab_ref){row, tag_make(0, 0, ST_USED)};
}

enum shmtab_status
shmtab_find(struct shmtab *t, const void *key, enum shmtab_mode mode, unsigned owner,
            void *rank_arg, struct shmtab_ref *ref_r)
{
	uint64_t kw[KEY_WORDS_MAX] = {0};
	size_t home;

	st_check_owner(owner);
	if (t->cap == 0)
		return mode == SHMTAB_CREATE ? SHMTAB_FULL : SHMTAB_ABSENT;
	memcpy(kw, key, t->key_len);
	home = (size_t)keyhash_index(t->kh, key, t->key_len) & t->mask;
	for (int attempt = 0; attempt < FIND_TRIES; attempt++) {
		size_t free_slot = NONE, victim = NONE;
		uint64_t free_tag = 0, victim_tag = 0, victim_rank = SHMTAB_KEEP;
		bool busy = false;

		for (size_t j = 0; j < t->window; j++) {
			size_t s = t->n_fixed + ((home + j) & t->mask);
			uint64_t tag = atomic_load(st_tag(t, s));
			unsigned state = tag_state(tag);
			enum key_match m;

			if (state == ST_FREE && free_slot == NONE) {
				free_slot = s;
				free_tag = tag;
			}
			/* CLAIM has no key yet; anything else is no state. */
			if (state != ST_PENDING && state != ST_USED && state != ST_DRAIN)
				continue;
			m = st_key_cmp(t, s, kw, tag);
			if (m == KEY_SAME &&
			    (state == ST_USED || (state == ST_DRAIN && mode == SHMTAB_HELD))) {
				*ref_r = (struct shmtab_ref){s, tag};
				return SHMTAB_OK;
			}
			/* Being inserted or freed by another, or changing as we
			 * read it: look again. */
			if (m != KEY_OTHER)
				busy = true;
		}
		if (busy) {
			/* Most often the other process was preempted half
			 * way: let it run rather than give up at once. */
			if (attempt >= 2)
				sched_yield();
			continue;
		}
		if (mode != SHMTAB_CREATE)
			return SHMTAB_ABSENT;
		if (free_slot == NONE) {
			/* Full window: the row of lowest rank gives way. */
			for (size_t j = 0; j < t->window; j++) {
				size_t s = t->n_fixed + ((home + j) & t->mask);
				uint64_t tag = atomic_load(st_tag(t, s)), r;
				if (tag_state(tag) != ST_USED)
					continue;
				r = st_rank(t, s, tag, rank_arg);
				if (r < victim_rank) {
					victim = s;
					victim_tag = tag;
					victim_rank = r;
				}
			}
			if (victim == NONE)
				return SHMTAB_FULL;
			if (!st_drain_free(t, victim, victim_tag, owner, rank_arg, SHMTAB_KEEP - 1))
				continue;
			free_slot = victim;
			free_tag = tag_make(tag_gen(victim_tag), 0, ST_FREE);
		}
		if (st_claim(t, free_slot, free_tag, home, kw, owner, ref_r))
			return SHMTAB_OK;
	}
	return SHMTAB_BUSY;
}

bool
shmtab_valid(const struct shmtab *t, const struct shmtab_ref *ref)
{
	st_check_ref(t, ref);
	return atomic_load(st_tag(t, ref->slot)) == ref->tag;
}

uint64_t
shmtab_get(const struct shmtab *t, const struct shmtab_ref *ref, size_t cell)
{
	st_check_ref(t, ref);
	st_check_cell(t, cell);
	return atomic_load(&st_cells(t, ref->slot)[cell]);
}

bool
shmtab_cas(struct shmtab *t, const struct shmtab_ref *ref, size_t cell, uint64_t *expected,
           uint64_t desired)
{
	st_check_ref(t, ref);
	st_check_cell(t, cell);
	return atomic_compare_exchange_strong(&st_cells(t, ref->slot)[cell], expected, desired);
}

uint64_t
shmtab_count(const struct shmtab *t, const struct shmtab_ref *ref, size_t cell)
{
	return shmtab_get(t, ref, cell) & COUNT_MASK;
}

uint64_t
shmtab_sum(const struct shmtab *t, const struct shmtab_ref *ref)
{
	const shmtab_word *c;
	uint64_t sum = 0;

	st_check_ref(t, ref);
	c = st_cells(t, ref->slot);
	for (size_t i = 0; i < t->n_cells; i++) {
		uint64_t v = atomic_load(&c[i]) & COUNT_MASK;
		sum = v > UINT64_MAX - sum ? UINT64_MAX : sum + v;
	}
	return sum;
}

bool
shmtab_idle(const struct shmtab *t, const struct shmtab_ref *ref)
{
	const shmtab_word *c;

	st_check_ref(t, ref);
	c = st_cells(t, ref->slot);
	/* One read per cell: a reservation going from in flight to counted
	 * between two passes would be missed by both. */
	for (size_t i = 0; i < t->n_cells; i++)
		if (atomic_load(&c[i]) != 0)
			return false;
	return true;
}

/* Counts and reservations in flight: what a limit is checked against. */
static uint64_t
st_sum_reserved(const struct shmtab *t, size_t slot)
{
	const shmtab_word *c = st_cells(t, slot);
	uint64_t sum = 0;

	for (size_t i = 0; i < t->n_cells; i++) {
		uint64_t v = atomic_load(&c[i]);
		v = (v & COUNT_MASK) + (v >> 40);
		sum = v > UINT64_MAX - sum ? UINT64_MAX : sum + v;
	}
	return sum;
}

bool
shmtab_take(struct shmtab *t, const struct shmtab_ref *ref, size_t cell, uint64_t n)
{
	shmtab_word *c;
	uint64_t v;

	st_check_ref(t, ref);
	st_check_cell(t, cell);
	c = &st_cells(t, ref->slot)[cell];
	v = atomic_load(c);
	for (int i = 0; i < CAS_TRIES; i++) {
		uint64_t count = v & COUNT_MASK;
		if (atomic_compare_exchange_strong(c, &v, v - (count >= n ? n : count)))
			return count >= n;
	}
	return false;
}

/* Withdraw one reservation in flight from c, unless the cell was zeroed
 * meanwhile (the row was claimed again under a stale reference). */
static void
st_withdraw(shmtab_word *c)
{
	uint64_t v = atomic_load(c);

	for (int i = 0; i < CAS_TRIES && v >= IN_FLIGHT_UNIT; i++)
		if (atomic_compare_exchange_strong(c, &v, v - IN_FLIGHT_UNIT))
			return;
}

enum shmtab_reserve
shmtab_reserve(struct shmtab *t, const struct shmtab_ref *ref, size_t cell, uint64_t limit)
{
	shmtab_word *c;

	st_check_ref(t, ref);
	st_check_cell(t, cell);
	if (tag_state(ref->tag) != ST_USED)
		return SHMTAB_STALE;
	c = &st_cells(t, ref->slot)[cell];
	/* Add first, then look (see shmtab.h): sequentially consistent, so
	 * of two processes doing this at once one sees the other's addition
	 * in its sum, or the drainer's mark in its tag read. The addition is
	 * in flight until checked: counted against the limit, not yet in the
	 * row's sum, so that no reader ever sees more than the limit. */
	atomic_fetch_add(c, IN_FLIGHT_UNIT);
	if (atomic_load(st_tag(t, ref->slot)) != ref->tag) {
		st_withdraw(c);
		return SHMTAB_STALE;
	}
	if (limit != 0 && st_sum_reserved(t, ref->slot) > limit) {
		st_withdraw(c);
		return SHMTAB_OVER;
	}
	/* The row cannot be freed under a reservation in flight (the rank
	 * callbacks of counter tables check shmtab_idle()): commit. */
	atomic_fetch_sub(c, IN_FLIGHT_UNIT - 1);
	return SHMTAB_RESERVED;
}

bool
shmtab_try_free(struct shmtab *t, const struct shmtab_ref *ref, unsigned owner, void *rank_arg)
{
	st_check_ref(t, ref);
	st_check_owner(owner);
	return st_drain_free(t, ref->slot, ref->tag, owner, rank_arg, 0);
}

void
shmtab_recover(struct shmtab *t, unsigned owner)
{
	st_check_owner(owner);
	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++) {
		uint64_t tag = atomic_load(st_tag(t, s));
		unsigned state = tag_state(tag);

		if (tag_owner(tag) != (owner & 0xffffffu))
			continue;
		/* A claim never published: free. A drain cut short: the row
		 * as it was, with the very tag references hold. */
		if (state == ST_CLAIM || state == ST_PENDING)
			st_cas_tag(t, s, tag, tag_make(tag_gen(tag), 0, ST_FREE));
		else if (state == ST_DRAIN)
			st_cas_tag(t, s, tag, tag_make(tag_gen(tag), 0, ST_USED));
	}
}

void
shmtab_clear_cell(struct shmtab *t, size_t cell)
{
	st_check_cell(t, cell);
	for (size_t s = 0; s < t->n_fixed + t->cap; s++)
		atomic_store(&st_cells(t, s)[cell], 0);
}

void
shmtab_sweep(struct shmtab *t, unsigned owner, void *rank_arg)
{
	st_check_owner(owner);
	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++) {
		uint64_t tag = atomic_load(st_tag(t, s));

		if (tag_state(tag) == ST_USED)
			st_drain_free(t, s, tag, owner, rank_arg, 0);
	}
}
