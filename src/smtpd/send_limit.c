/*
 * send_limit.c - the shared table behind messages_per_hour and
 * recipients_per_hour (see send_limit.h).
 *
 * Layout: one anonymous MAP_SHARED region: a robust process-shared mutex,
 * then a power-of-two array of entries. An entry is a 16-byte key (salted
 * SHA-256 of the lower-cased login, salt chosen in the master before fork),
 * the 5-minute slot of its newest bucket, and twelve buckets of message and
 * recipient counts. Lookup probes SL_PROBES slots from the key's home slot;
 * a user not found takes the first empty or expired slot of the run, else
 * the run's longest-idle entry. Nothing is ever deleted (entries simply
 * expire), so probe runs never break.
 *
 * Crashes: a worker killed inside the lock leaves at worst one count half
 * updated, which only shifts one user's count by one; the next locker gets
 * EOWNERDEAD and marks the mutex consistent. Sizes live in the private
 * struct copied at fork, never read back from shared memory.
 */
#include "send_limit.h"
#include "../lib/log.h"

#include <errno.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define SL_BUCKETS 12 /* of SL_SLOT_S each: one hour */
#define SL_SLOT_S 300
#define SL_PROBES 32

struct sl_entry {
	uint32_t used;
	uint8_t key[16];
	uint64_t slot; /* slot of the newest bucket */
	uint32_t msgs[SL_BUCKETS];
	uint32_t rcpts[SL_BUCKETS];
};

struct sl_shared {
	pthread_mutex_t lock;
};

struct send_limit {
	struct sl_shared *shm;
	struct sl_entry *table;
	size_t map_len;
	size_t mask;
	uint8_t salt[16];
};

struct send_limit *
send_limit_new(unsigned users)
{
	struct send_limit *sl = xcalloc(1, sizeof(*sl));
	pthread_mutexattr_t attr;
	size_t n = 64, head;

	while (n < (size_t)users * 2 && n < ((size_t)1 << 24))
		n *= 2;
	head = (sizeof(struct sl_shared) + 63) & ~(size_t)63;
	sl->map_len = head + n * sizeof(struct sl_entry);
	sl->shm =
	        mmap(NULL, sl->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sl->shm == MAP_FAILED)
		fatal("send_limit: mmap %zu bytes: %s", sl->map_len, strerror(errno));
	sl->table = (struct sl_entry *)(void *)((char *)sl->shm + head);
	sl->mask = n - 1;
	if (getrandom(sl->salt, sizeof(sl->salt), 0) != sizeof(sl->salt))
		fatal("send_limit: getrandom failed");
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (pthread_mutex_init(&sl->shm->lock, &attr) != 0)
		fatal("send_limit: cannot create the shared lock");
	pthread_mutexattr_destroy(&attr);
	return sl;
}

void
send_limit_free(struct send_limit *sl)
{
	if (sl == NULL)
		return;
	munmap(sl->shm, sl->map_len);
	free(sl);
}

uint64_t
send_limit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static void
sl_lock(struct send_limit *sl)
{
	int r = pthread_mutex_lock(&sl->shm->lock);

	if (r == EOWNERDEAD) {
		/* A worker died holding it; counts are at worst off by one. */
		pthread_mutex_consistent(&sl->shm->lock);
	} else if (r != 0) {
		fatal("send_limit: lock: %s", strerror(r));
	}
}

static void
sl_unlock(struct send_limit *sl)
{
	pthread_mutex_unlock(&sl->shm->lock);
}

static void
sl_key(const struct send_limit *sl, const char *user, uint8_t key[16])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t n = strlen(user);
	unsigned char *buf = xmalloc(sizeof(sl->salt) + n + 1);

	memcpy(buf, sl->salt, sizeof(sl->salt));
	for (size_t i = 0; i < n; i++) {
		char c = user[i];
		buf[sizeof(sl->salt) + i] =
		        (unsigned char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	SHA256(buf, sizeof(sl->salt) + n, md);
	free(buf);
	memcpy(key, md, 16);
}

/* Move e's buckets forward to now's slot, zeroing the ones that left the
 * hour. */
static void
sl_advance(struct sl_entry *e, uint64_t slot)
{
	if (slot <= e->slot)
		return;
	for (uint64_t s = e->slot + 1; s <= slot && s <= e->slot + SL_BUCKETS; s++) {
		e->msgs[s % SL_BUCKETS] = 0;
		e->rcpts[s % SL_BUCKETS] = 0;
	}
	e->slot = slot;
}

static bool
sl_expired(const struct sl_entry *e, uint64_t slot)
{
	return !e->used || e->slot + SL_BUCKETS <= slot;
}

/* The entry of key under the lock; create says whether to make one. */
static struct sl_entry *
sl_find(struct send_limit *sl, const uint8_t key[16], uint64_t slot, bool create)
{
	uint64_t h;
	struct sl_entry *free_e = NULL, *oldest = NULL;

	memcpy(&h, key, sizeof(h));
	for (size_t i = 0; i < SL_PROBES; i++) {
		struct sl_entry *e = &sl->table[(h + i) & sl->mask];
		if (e->used && memcmp(e->key, key, 16) == 0) {
			sl_advance(e, slot);
			return e;
		}
		if (free_e == NULL && sl_expired(e, slot))
			free_e = e;
		if (oldest == NULL || e->slot < oldest->slot)
			oldest = e;
	}
	if (!create)
		return NULL;
	if (free_e == NULL)
		free_e = oldest;
	memset(free_e, 0, sizeof(*free_e));
	memcpy(free_e->key, key, 16);
	free_e->slot = slot;
	free_e->used = 1;
	return free_e;
}

static void
sl_sum(const struct sl_entry *e, unsigned *msgs_r, unsigned *rcpts_r)
{
	uint64_t m = 0, r = 0;

	for (size_t i = 0; i < SL_BUCKETS; i++) {
		m += e->msgs[i];
		r += e->rcpts[i];
	}
	*msgs_r = m > UINT32_MAX ? UINT32_MAX : (unsigned)m;
	*rcpts_r = r > UINT32_MAX ? UINT32_MAX : (unsigned)r;
}

void
send_limit_counts(struct send_limit *sl, const char *user, uint64_t now_s, unsigned *msgs_r,
                  unsigned *rcpts_r)
{
	uint64_t slot = now_s / SL_SLOT_S;
	uint8_t key[16];
	struct sl_entry *e;

	sl_key(sl, user, key);
	sl_lock(sl);
	e = sl_find(sl, key, slot, false);
	if (e != NULL) {
		sl_sum(e, msgs_r, rcpts_r);
	} else {
		*msgs_r = 0;
		*rcpts_r = 0;
	}
	sl_unlock(sl);
}

void
send_limit_record(struct send_limit *sl, const char *user, unsigned rcpts, uint64_t now_s)
{
	uint64_t slot = now_s / SL_SLOT_S;
	uint8_t key[16];
	struct sl_entry *e;

	sl_key(sl, user, key);
	sl_lock(sl);
	e = sl_find(sl, key, slot, true);
	e->msgs[slot % SL_BUCKETS]++;
	e->rcpts[slot % SL_BUCKETS] += rcpts;
	sl_unlock(sl);
}

bool
send_limit_allow_message(struct send_limit *sl, const char *user, unsigned max_msgs, uint64_t now_s,
                         unsigned *count_r)
{
	unsigned msgs, rcpts;

	if (max_msgs == 0 || sl == NULL)
		return true;
	send_limit_counts(sl, user, now_s, &msgs, &rcpts);
	*count_r = msgs;
	return msgs < max_msgs;
}

bool
send_limit_allow_recipient(struct send_limit *sl, const char *user, unsigned in_txn,
                           unsigned max_rcpts, uint64_t now_s, unsigned *count_r)
{
	unsigned msgs, rcpts;

	if (max_rcpts == 0 || sl == NULL)
		return true;
	send_limit_counts(sl, user, now_s, &msgs, &rcpts);
	*count_r = rcpts + in_txn;
	return (uint64_t)rcpts + in_txn < max_rcpts;
}
