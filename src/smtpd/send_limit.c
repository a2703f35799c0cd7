/* SPDX-License-Identifier: ISC */
/*
 * send_limit.c - the shared table behind messages_per_hour and
 * recipients_per_hour (see send_limit.h).
 *
 * One shmtab keyed by the first 16 bytes of HMAC-SHA256(lower-cased login)
 * under a key drawn in the master before fork: the digest stands for the
 * user, so the table never holds a login, and nobody outside can aim logins
 * at one window. A row has twelve message buckets and twelve recipient
 * buckets; a bucket is one 64-bit word, the 5-minute slot it counts in the
 * high half and the count in the low half, so that starting a new slot and
 * counting in it is one compare-and-swap: two workers counting for one user
 * at once never lose a count, and no lock is needed. A bucket whose slot
 * left the hour counts for nothing.
 *
 * A user not in the table takes a free slot of its window, else the row of
 * the user idle longest (rank: the newest slot counted in, 0 when nothing
 * is left in the hour).
 */
#include "send_limit.h"
#include "../lib/keyhash.h"
#include "../lib/log.h"
#include "../lib/shmtab.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SL_BUCKETS 12 /* of SL_SLOT_S each: one hour */
#define SL_SLOT_S 300
#define SL_KEY_LEN 16
#define SL_CELLS (2 * SL_BUCKETS) /* messages, then recipients */
#define SL_TRIES 8
#define SL_CAS_TRIES 64

struct send_limit {
	struct shmtab *tab;
	struct keyhash *kh;
	unsigned max_workers;
};

static uint64_t
sl_bucket_slot(uint64_t word)
{
	return word >> 32;
}

static uint64_t
sl_bucket_count(uint64_t word)
{
	return word & 0xffffffffu;
}

/* Does a bucket of slot count at now_slot? */
static bool
sl_in_hour(uint64_t slot, uint64_t now_slot)
{
	return slot + SL_BUCKETS > now_slot;
}

static uint64_t
sl_rank(const struct shmtab *tab, const struct shmtab_ref *ref, void *arg)
{
	uint64_t now_slot = *(const uint64_t *)arg, newest = 0;
	bool any = false;

	for (size_t i = 0; i < SL_CELLS; i++) {
		uint64_t w = shmtab_get(tab, ref, i);
		if (sl_bucket_count(w) == 0 || !sl_in_hour(sl_bucket_slot(w), now_slot))
			continue;
		any = true;
		if (sl_bucket_slot(w) > newest)
			newest = sl_bucket_slot(w);
	}
	/* Idle: nothing left in the hour. Else the longest idle goes first. */
	return any ? newest + 1 : 0;
}

struct send_limit *
send_limit_new(unsigned users, unsigned max_workers)
{
	struct send_limit *sl = xcalloc(1, sizeof(*sl));
	size_t n = 64;

	if (max_workers == 0 || max_workers > SHMTAB_OWNER_MAX)
		fatal("send_limit: %u workers is out of range", max_workers);
	while (n < (size_t)users * 2 && n < ((size_t)1 << 24))
		n *= 2;
	sl->tab = shmtab_new(0, n, SL_KEY_LEN, SL_CELLS, sl_rank);
	sl->kh = keyhash_new();
	sl->max_workers = max_workers;
	return sl;
}

void
send_limit_free(struct send_limit *sl)
{
	if (sl == NULL)
		return;
	shmtab_free(sl->tab);
	keyhash_free(sl->kh);
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
sl_key(const struct send_limit *sl, const char *user, uint8_t key[SL_KEY_LEN])
{
	uint8_t md[KEYHASH_LEN];
	size_t n = strlen(user);
	char *lower = xmalloc(n + 1);

	for (size_t i = 0; i <= n; i++) {
		char c = user[i];
		lower[i] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
	}
	keyhash_digest(sl->kh, md, &(struct keyhash_part){lower, n}, 1);
	free(lower);
	memcpy(key, md, SL_KEY_LEN);
}

/* Count n in the bucket of now_slot (cell), starting the slot if the bucket
 * still holds an older one. */
static void
sl_add(struct send_limit *sl, const struct shmtab_ref *ref, size_t cell, uint64_t now_slot,
       uint64_t n)
{
	uint64_t w = shmtab_get(sl->tab, ref, cell);

	for (int i = 0; i < SL_CAS_TRIES; i++) {
		uint64_t slot = sl_bucket_slot(w), count = sl_bucket_count(w), nw;
		if (slot < now_slot)
			count = 0, slot = now_slot;
		count = count + n > 0xffffffffu ? 0xffffffffu : count + n;
		nw = slot << 32 | count;
		if (shmtab_cas(sl->tab, ref, cell, &w, nw))
			return;
	}
}

/* Take back what sl_add() counted in a row that was given to another user
 * meanwhile: at worst that user loses a count it had just made. */
static void
sl_sub(struct send_limit *sl, const struct shmtab_ref *ref, size_t cell, uint64_t now_slot,
       uint64_t n)
{
	uint64_t w = shmtab_get(sl->tab, ref, cell);

	for (int i = 0; i < SL_CAS_TRIES; i++) {
		uint64_t count = sl_bucket_count(w);
		if (sl_bucket_slot(w) != now_slot || count == 0)
			return;
		if (shmtab_cas(sl->tab, ref, cell, &w,
		               now_slot << 32 | (count > n ? count - n : 0)))
			return;
	}
}

void
send_limit_counts(struct send_limit *sl, const char *user, uint64_t now_s, unsigned *msgs_r,
                  unsigned *rcpts_r)
{
	uint64_t now_slot = now_s / SL_SLOT_S;
	uint8_t key[SL_KEY_LEN];

	*msgs_r = 0;
	*rcpts_r = 0;
	sl_key(sl, user, key);
	for (int attempt = 0; attempt < SL_TRIES; attempt++) {
		uint64_t sums[2] = {0, 0};
		struct shmtab_ref ref;

		if (shmtab_find(sl->tab, key, SHMTAB_HELD, 0, &now_slot, &ref) != SHMTAB_OK)
			return;
		for (size_t i = 0; i < SL_CELLS; i++) {
			uint64_t w = shmtab_get(sl->tab, &ref, i);
			if (sl_in_hour(sl_bucket_slot(w), now_slot))
				sums[i / SL_BUCKETS] += sl_bucket_count(w);
		}
		/* The row was given to another user while we read: again. */
		if (!shmtab_valid(sl->tab, &ref))
			continue;
		*msgs_r = sums[0] > UINT32_MAX ? UINT32_MAX : (unsigned)sums[0];
		*rcpts_r = sums[1] > UINT32_MAX ? UINT32_MAX : (unsigned)sums[1];
		return;
	}
}

void
send_limit_record(struct send_limit *sl, unsigned worker, const char *user, unsigned rcpts,
                  uint64_t now_s)
{
	uint64_t now_slot = now_s / SL_SLOT_S;
	size_t b = (size_t)(now_slot % SL_BUCKETS);
	uint8_t key[SL_KEY_LEN];

	if (worker >= sl->max_workers)
		fatal("send_limit: worker %u out of range (%u)", worker, sl->max_workers);
	sl_key(sl, user, key);
	for (int attempt = 0; attempt < SL_TRIES; attempt++) {
		struct shmtab_ref ref;

		if (shmtab_find(sl->tab, key, SHMTAB_CREATE, worker, &now_slot, &ref) != SHMTAB_OK)
			break;
		sl_add(sl, &ref, b, now_slot, 1);
		sl_add(sl, &ref, SL_BUCKETS + b, now_slot, rcpts);
		if (shmtab_valid(sl->tab, &ref))
			return;
		sl_sub(sl, &ref, b, now_slot, 1);
		sl_sub(sl, &ref, SL_BUCKETS + b, now_slot, rcpts);
	}
	/* Another worker stopped half way through this very user: the one
	 * case a message goes uncounted. */
	log_warn("send_limit: message not counted: the user's row is busy");
}

void
send_limit_reset_worker(struct send_limit *sl, unsigned worker)
{
	if (worker >= sl->max_workers)
		fatal("send_limit: worker %u out of range (%u)", worker, sl->max_workers);
	shmtab_recover(sl->tab, worker);
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
