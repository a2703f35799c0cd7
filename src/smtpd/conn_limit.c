/*
 * conn_limit.c - the connection counts behind max_connections and
 * max_connections_per_ip, shared by every SMTP worker (see conn_limit.h).
 *
 * The master maps one anonymous MAP_SHARED region before forking; workers
 * inherit it. It holds a robust process-shared mutex guarding everything,
 * totals[listener][worker], and an open-addressing hash table with one entry
 * per (listener, client key) that has connections, holding a count per worker
 * and their sum. Sizes live in the private struct conn_limit copied at fork,
 * never read back from shared memory, so a corrupt table cannot make a
 * process index outside the mapping.
 *
 * Table: linear probing over a power-of-two array at most half full (slots
 * live entries in >= 2 * slots places), keyed by SipHash with a random key so
 * clients cannot pick addresses that pile into one probe chain. An entry is
 * deleted as soon as its sum drops to zero, by backward-shift deletion: later
 * entries of the cluster that may legally sit in the hole move back into it,
 * so there are no tombstones and every live entry stays reachable from its
 * home slot through used slots only.
 *
 * Crashes: a worker can be killed (SIGKILL, OOM) inside the lock. The robust
 * mutex then hands EOWNERDEAD to the next locker, which repairs the table
 * before pthread_mutex_consistent(). Writes are ordered so a repair is always
 * possible: an entry's fields are written before its state word turns USED
 * (release store), and a move copies into the hole and marks it USED before
 * the source turns EMPTY. A kill at any point can therefore only leave
 *   - sums or totals out of step with the per-worker counts (the counts are
 *     the truth: a single aligned store each),
 *   - an entry unreachable behind a hole from an unfinished backward shift,
 *   - two identical copies of one entry from an unfinished move,
 *   - a used entry whose sum is zero,
 * and cl_recover() fixes exactly those. The dead worker's own counts are then
 * dropped by the master's conn_limit_reset_worker().
 */
#include "conn_limit.h"
#include "../lib/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define SLOT_EMPTY 0u
#define SLOT_USED 1u
#define NOT_FOUND ((size_t)-1)

/* Start of the shared region; totals and the table follow. */
struct cl_shared {
	pthread_mutex_t lock;
	uint32_t n_entries; /* used slots */
};

struct cl_entry {
	uint32_t state; /* SLOT_EMPTY or SLOT_USED; written last */
	uint32_t listener;
	uint32_t sum; /* connections from this client: sum of count[] */
	uint8_t key[16];
	uint32_t count[]; /* per worker */
};

struct conn_limit {
	struct cl_shared *shm;
	size_t map_len;
	uint32_t *totals;     /* [listener * max_workers + worker] */
	unsigned char *table; /* mask + 1 entries of entry_size bytes */
	size_t entry_size;
	size_t mask;
	unsigned max_workers;
	unsigned n_listeners;
	unsigned slots;
	uint64_t hash_key[2];
};

static size_t
cl_align(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

static struct cl_entry *
cl_slot(const struct conn_limit *cl, size_t i)
{
	return (struct cl_entry *)(void *)(cl->table + i * cl->entry_size);
}

static bool
cl_used(const struct cl_entry *e)
{
	return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == SLOT_USED;
}

static void
cl_set_state(struct cl_entry *e, uint32_t state)
{
	/* Release: everything written to the entry before is in place before a
	 * reader (or a repair after a crash) sees the new state. */
	__atomic_store_n(&e->state, state, __ATOMIC_RELEASE);
}

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void
cl_sipround(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ROTL64(v[1], 13);
	v[1] ^= v[0];
	v[0] = ROTL64(v[0], 32);
	v[2] += v[3];
	v[3] = ROTL64(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = ROTL64(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = ROTL64(v[1], 17);
	v[1] ^= v[2];
	v[2] = ROTL64(v[2], 32);
}

static uint64_t
cl_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* SipHash-1-3 of (key, listener): 20 bytes, two full blocks and a tail. */
static uint64_t
cl_hash(const struct conn_limit *cl, unsigned listener, const uint8_t key[16])
{
	uint64_t v[4] = {
	        cl->hash_key[0] ^ 0x736f6d6570736575ull,
	        cl->hash_key[1] ^ 0x646f72616e646f6dull,
	        cl->hash_key[0] ^ 0x6c7967656e657261ull,
	        cl->hash_key[1] ^ 0x7465646279746573ull,
	};
	uint64_t m[3] = {cl_le64(key), cl_le64(key + 8), (20ull << 56) | (uint32_t)listener};

	for (int i = 0; i < 3; i++) {
		v[3] ^= m[i];
		cl_sipround(v);
		v[0] ^= m[i];
	}
	v[2] ^= 0xff;
	for (int i = 0; i < 3; i++)
		cl_sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static size_t
cl_home(const struct conn_limit *cl, unsigned listener, const uint8_t key[16])
{
	return (size_t)cl_hash(cl, listener, key) & cl->mask;
}

static bool
cl_same(const struct cl_entry *e, unsigned listener, const uint8_t key[16])
{
	return e->listener == listener && memcmp(e->key, key, 16) == 0;
}

/* Copy src's fields into the empty slot dst, then publish it. */
static void
cl_copy_entry(const struct conn_limit *cl, struct cl_entry *dst, const struct cl_entry *src)
{
	dst->listener = src->listener;
	dst->sum = src->sum;
	memcpy(dst->key, src->key, sizeof(dst->key));
	memcpy(dst->count, src->count, cl->max_workers * sizeof(dst->count[0]));
	cl_set_state(dst, SLOT_USED);
}

/* Slot of (listener, key), or NOT_FOUND; then *empty_r is the empty slot
 * that ends its probe chain (where it would be inserted). */
static size_t
cl_find(const struct conn_limit *cl, unsigned listener, const uint8_t key[16], size_t *empty_r)
{
	size_t i = cl_home(cl, listener, key);

	*empty_r = NOT_FOUND;
	for (size_t n = 0; n <= cl->mask; n++, i = (i + 1) & cl->mask) {
		const struct cl_entry *e = cl_slot(cl, i);
		if (!cl_used(e)) {
			*empty_r = i;
			return NOT_FOUND;
		}
		if (cl_same(e, listener, key))
			return i;
	}
	return NOT_FOUND;
}

/* Backward-shift deletion of the entry at slot hole. */
static void
cl_delete(struct conn_limit *cl, size_t hole)
{
	size_t j = hole;

	cl_set_state(cl_slot(cl, hole), SLOT_EMPTY);
	cl->shm->n_entries--;
	for (size_t n = 0; n < cl->mask; n++) {
		struct cl_entry *e;
		size_t home;

		j = (j + 1) & cl->mask;
		e = cl_slot(cl, j);
		if (!cl_used(e))
			return;
		/* e may fill the hole only if the hole lies on its probe path,
		 * cyclically in [home, j). */
		home = cl_home(cl, e->listener, e->key);
		if (((j - home) & cl->mask) >= ((j - hole) & cl->mask)) {
			cl_copy_entry(cl, cl_slot(cl, hole), e);
			cl_set_state(e, SLOT_EMPTY);
			hole = j;
		}
	}
}

/*
 * Delete every used entry whose sum is zero, in one pass. A deletion at i
 * only moves entries from later in the cluster into i and into holes after
 * it, never back before i (except clean entries moving around a cluster
 * that wraps past the end, which were already checked), so rechecking slot
 * i until it is clean is enough.
 */
static void
cl_sweep(struct conn_limit *cl)
{
	for (size_t i = 0; i <= cl->mask; i++) {
		struct cl_entry *e = cl_slot(cl, i);
		while (cl_used(e) && e->sum == 0)
			cl_delete(cl, i);
	}
}

/*
 * After a process died holding the lock (see the top of the file). Each
 * change below either drops an entry or moves one strictly closer to its
 * home slot, so the repair loop ends.
 */
static void
cl_recover(struct conn_limit *cl)
{
	bool changed;
	size_t used = 0;

	log_warn("conn_limit: a process died holding the lock; repairing the table");
	for (size_t i = 0; i <= cl->mask; i++) {
		struct cl_entry *e = cl_slot(cl, i);
		uint32_t sum = 0;
		if (!cl_used(e))
			continue;
		if (e->listener >= cl->n_listeners) {
			cl_set_state(e, SLOT_EMPTY);
			continue;
		}
		for (unsigned w = 0; w < cl->max_workers; w++)
			sum += e->count[w];
		e->sum = sum;
	}
	/* Make every entry reachable and unique: walk its probe path from
	 * home; a hole before it means it is unreachable (move it into the
	 * hole), a copy of it before it means it is a duplicate (drop it). */
	do {
		changed = false;
		for (size_t i = 0; i <= cl->mask; i++) {
			struct cl_entry *e = cl_slot(cl, i);
			size_t p;
			if (!cl_used(e))
				continue;
			for (p = cl_home(cl, e->listener, e->key); p != i; p = (p + 1) & cl->mask) {
				const struct cl_entry *o = cl_slot(cl, p);
				if (!cl_used(o) || cl_same(o, e->listener, e->key))
					break;
			}
			if (p == i)
				continue;
			if (!cl_used(cl_slot(cl, p)))
				cl_copy_entry(cl, cl_slot(cl, p), e);
			cl_set_state(e, SLOT_EMPTY);
			changed = true;
		}
	} while (changed);

	for (size_t i = 0; i <= cl->mask; i++)
		used += cl_used(cl_slot(cl, i));
	cl->shm->n_entries = (uint32_t)used;
	cl_sweep(cl);

	memset(cl->totals, 0, (size_t)cl->n_listeners * cl->max_workers * sizeof(uint32_t));
	for (size_t i = 0; i <= cl->mask; i++) {
		const struct cl_entry *e = cl_slot(cl, i);
		if (!cl_used(e))
			continue;
		for (unsigned w = 0; w < cl->max_workers; w++)
			cl->totals[(size_t)e->listener * cl->max_workers + w] += e->count[w];
	}
}

static void
cl_lock(struct conn_limit *cl)
{
	int rc = pthread_mutex_lock(&cl->shm->lock);

	if (rc == EOWNERDEAD) {
		/* If we die in here too, the next locker gets EOWNERDEAD
		 * again and starts the repair over: it is idempotent. */
		cl_recover(cl);
		rc = pthread_mutex_consistent(&cl->shm->lock);
		if (rc != 0)
			fatal("conn_limit: pthread_mutex_consistent: %s", strerror(rc));
		return;
	}
	if (rc != 0)
		fatal("conn_limit: pthread_mutex_lock: %s", strerror(rc));
}

static void
cl_unlock(struct conn_limit *cl)
{
	int rc = pthread_mutex_unlock(&cl->shm->lock);

	if (rc != 0)
		fatal("conn_limit: pthread_mutex_unlock: %s", strerror(rc));
}

static void
cl_check_ids(const struct conn_limit *cl, unsigned worker, unsigned listener)
{
	if (worker >= cl->max_workers || listener >= cl->n_listeners)
		fatal("conn_limit: worker %u / listener %u out of range (%u / %u)", worker,
		      listener, cl->max_workers, cl->n_listeners);
}

struct conn_limit *
conn_limit_new(unsigned max_workers, unsigned n_listeners, unsigned slots)
{
	struct conn_limit *cl;
	pthread_mutexattr_t attr;
	size_t cap = 2, totals_off, table_off, n_totals;
	void *map;
	int rc;

	if (max_workers == 0 || n_listeners == 0)
		fatal("conn_limit: needs at least one worker and one listener");
	/* Half full at most keeps probe chains short and the shift loop sure
	 * to meet an empty slot. */
	while (cap < (size_t)slots * 2) {
		if (cap > SIZE_MAX / 4)
			fatal("conn_limit: %u slots is too many", slots);
		cap *= 2;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->max_workers = max_workers;
	cl->n_listeners = n_listeners;
	cl->slots = slots;
	cl->mask = cap - 1;
	cl->entry_size = cl_align(sizeof(struct cl_entry) + (size_t)max_workers * sizeof(uint32_t),
	                          _Alignof(struct cl_entry));
	n_totals = (size_t)n_listeners * max_workers;
	totals_off = cl_align(sizeof(struct cl_shared), 64);
	table_off = cl_align(totals_off + n_totals * sizeof(uint32_t), 64);
	if (cl->entry_size > (SIZE_MAX - table_off) / cap)
		fatal("conn_limit: table too large");
	cl->map_len = table_off + cap * cl->entry_size;

	if (getrandom(cl->hash_key, sizeof(cl->hash_key), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(cl->hash_key)) {
		/* Only hash flooding resistance depends on this. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		cl->hash_key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
		cl->hash_key[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4full ^ (uintptr_t)cl;
	}

	/* Anonymous memory is zero-filled: every slot starts SLOT_EMPTY. */
	map = mmap(NULL, cl->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		fatal("conn_limit: mmap %zu bytes: %s", cl->map_len, strerror(errno));
	cl->shm = map;
	cl->totals = (uint32_t *)(void *)((unsigned char *)map + totals_off);
	cl->table = (unsigned char *)map + table_off;

	if ((rc = pthread_mutexattr_init(&attr)) != 0 ||
	    (rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) != 0 ||
	    (rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0 ||
	    (rc = pthread_mutex_init(&cl->shm->lock, &attr)) != 0)
		fatal("conn_limit: mutex setup: %s", strerror(rc));
	pthread_mutexattr_destroy(&attr);
	return cl;
}

void
conn_limit_free(struct conn_limit *cl)
{
	if (cl == NULL)
		return;
	/* The mutex is not destroyed: other processes may still use it. */
	munmap(cl->shm, cl->map_len);
	free(cl);
}

static unsigned
cl_listener_total(const struct conn_limit *cl, unsigned listener)
{
	const uint32_t *t = cl->totals + (size_t)listener * cl->max_workers;
	unsigned sum = 0;

	for (unsigned w = 0; w < cl->max_workers; w++)
		sum += t[w];
	return sum;
}

/* max_total and max_per_ip of 0 mean no limit. */
enum conn_limit_result
conn_limit_acquire(struct conn_limit *cl, unsigned worker, unsigned listener, const uint8_t key[16],
                   unsigned max_total, unsigned max_per_ip)
{
	enum conn_limit_result res = CONN_LIMIT_OK;
	struct cl_entry *e;
	size_t i, empty;

	cl_check_ids(cl, worker, listener);
	cl_lock(cl);
	if (max_total != 0 && cl_listener_total(cl, listener) >= max_total) {
		res = CONN_LIMIT_TOTAL;
		goto out;
	}
	i = cl_find(cl, listener, key, &empty);
	if (i != NOT_FOUND) {
		e = cl_slot(cl, i);
		if (max_per_ip != 0 && e->sum >= max_per_ip) {
			res = CONN_LIMIT_PER_IP;
			goto out;
		}
	} else {
		if (cl->shm->n_entries >= cl->slots || empty == NOT_FOUND) {
			res = CONN_LIMIT_TOTAL;
			goto out;
		}
		e = cl_slot(cl, empty);
		e->listener = listener;
		e->sum = 0;
		memcpy(e->key, key, sizeof(e->key));
		memset(e->count, 0, cl->max_workers * sizeof(e->count[0]));
		cl_set_state(e, SLOT_USED);
		cl->shm->n_entries++;
	}
	e->count[worker]++;
	e->sum++;
	cl->totals[(size_t)listener * cl->max_workers + worker]++;
out:
	cl_unlock(cl);
	return res;
}

void
conn_limit_release(struct conn_limit *cl, unsigned worker, unsigned listener, const uint8_t key[16])
{
	uint32_t *total;
	struct cl_entry *e;
	size_t i, empty;

	cl_check_ids(cl, worker, listener);
	cl_lock(cl);
	i = cl_find(cl, listener, key, &empty);
	total = &cl->totals[(size_t)listener * cl->max_workers + worker];
	if (i == NOT_FOUND || cl_slot(cl, i)->count[worker] == 0 || *total == 0) {
		/* A release without its acquire is a bug, but not one worth
		 * killing every session of this worker for: counts only
		 * never go negative. */
		cl_unlock(cl);
		log_err("conn_limit: release of a connection not counted (worker=%u listener=%u)",
		        worker, listener);
		return;
	}
	e = cl_slot(cl, i);
	e->count[worker]--;
	e->sum--;
	(*total)--;
	if (e->sum == 0)
		cl_delete(cl, i);
	cl_unlock(cl);
}

void
conn_limit_reset_worker(struct conn_limit *cl, unsigned worker)
{
	cl_check_ids(cl, worker, 0);
	cl_lock(cl);
	for (size_t i = 0; i <= cl->mask; i++) {
		struct cl_entry *e = cl_slot(cl, i);
		if (!cl_used(e) || e->count[worker] == 0)
			continue;
		e->sum -= e->count[worker];
		e->count[worker] = 0;
	}
	for (unsigned l = 0; l < cl->n_listeners; l++)
		cl->totals[(size_t)l * cl->max_workers + worker] = 0;
	cl_sweep(cl);
	cl_unlock(cl);
}

unsigned
conn_limit_total(struct conn_limit *cl, unsigned listener)
{
	unsigned n;

	cl_check_ids(cl, 0, listener);
	cl_lock(cl);
	n = cl_listener_total(cl, listener);
	cl_unlock(cl);
	return n;
}

unsigned
conn_limit_per_ip(struct conn_limit *cl, unsigned listener, const uint8_t key[16])
{
	unsigned n = 0;
	size_t i, empty;

	cl_check_ids(cl, 0, listener);
	cl_lock(cl);
	i = cl_find(cl, listener, key, &empty);
	if (i != NOT_FOUND)
		n = cl_slot(cl, i)->sum;
	cl_unlock(cl);
	return n;
}
