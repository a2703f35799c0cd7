/* SPDX-License-Identifier: ISC */
/*
 * shmtab.h - a table in shared memory that the master maps before it forks
 * the SMTP workers and that every process then reads and writes without a
 * lock. The connection counts (conn_limit.h) and the hourly sending counts
 * (send_limit.h) are two such tables.
 *
 * Rows. n_fixed rows addressed by number, then room for about `capacity`
 * rows found by a key of key_len bytes. A row holds n_cells 64-bit cells,
 * used in one of two ways by a table: as counters (shmtab_reserve, _take,
 * _count, _sum: conn_limit, one cell per worker) or as raw words whose
 * meaning belongs to the caller (shmtab_get, _cas: send_limit). A
 * reference to a row (struct shmtab_ref) is its slot and the tag the slot
 * had when it was found; a write through a stale reference is noticed
 * (shmtab_valid, shmtab_reserve) and undone by the caller.
 *
 * Why no lock: the root master and the unprivileged workers share this
 * memory. A lock in it could be held by a worker that is stopped, stuck or
 * compromised, and the master, which must give back the share of a worker
 * that died, would wait for it forever: no more restarts, SIGTERM ignored.
 * So nothing here ever waits. Every change is one C11 atomic operation
 * (sequentially consistent) on the shared mapping, every loop is bounded,
 * and a process that cannot finish because of another one says so
 * (SHMTAB_BUSY) instead of waiting.
 *
 * Slots. Each slot starts with a tag word: a state, the owner (who is in
 * the middle of changing the slot) and a generation, bumped each time the
 * slot is claimed. Tags change only by compare-and-swap:
 *
 *     FREE --claim--> CLAIM --key written, cells zeroed--> PENDING
 *     PENDING --no other row has the key--> USED     (else back to FREE)
 *     USED --drain--> DRAIN --still idle--> FREE     (else back to USED)
 *
 * A key lives in one of SHMTAB_WINDOW slots from its home, which is
 * keyhash_index() of the key: SipHash under a key drawn before fork, so
 * clients cannot aim at one window. A key never has two rows: an inserter
 * announces PENDING before it looks through the window again, so of two
 * processes inserting one key at once at least one sees the other and backs
 * out. A row is freed only through DRAIN: the freer announces DRAIN, then
 * asks the caller's rank callback again on fresh cells; a writer adds to a
 * cell, then checks the tag. Again at least one of the two sees the other,
 * so a row is never freed under a count that stays.
 *
 * Reservations (shmtab_reserve) add one in flight to the caller's own
 * counter cell, then sum the row, and take it back if the sum passes the
 * limit, else make it count. Since every process adds before it reads, of
 * two processes taking the last place at the same moment at least one sees
 * the other: a limit is never exceeded. (Both may see each other and both
 * back out: at the very edge a place can stay empty for an instant; it is
 * never taken twice.) Reservations in flight count against limits but not
 * in shmtab_sum(), so no reader ever sees a row over its limit.
 *
 * Dead and stopped processes. A stopped worker blocks no one: what it left
 * half done (a CLAIM, PENDING or DRAIN slot) makes other workers answer
 * SHMTAB_BUSY for that one key. When a worker dies the master undoes its
 * half-done changes (shmtab_recover), clears its cells (shmtab_clear_cell)
 * and frees rows left idle (shmtab_sweep): one bounded pass each, no
 * waiting.
 *
 * Trust. The sizes live in the private struct copied at fork, never in
 * shared memory; no index is ever read from shared memory; sums saturate.
 * A worker that scribbles over the table makes counts wrong, which can
 * hurt the workers' limits, but cannot make another process read outside
 * the mapping, loop or wait.
 */
#ifndef AUTHRELAY_SHMTAB_H
#define AUTHRELAY_SHMTAB_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define SHMTAB_KEY_MAX 32
#define SHMTAB_WINDOW 32 /* slots a key may live in */
/* Owners are small numbers (worker indexes); the master has its own. */
#define SHMTAB_OWNER_MAX 0xfffffeu
#define SHMTAB_MASTER 0xffffffu
/* A rank that keeps a row whatever happens (see shmtab_rank_cb). */
#define SHMTAB_KEEP UINT64_MAX

struct shmtab;

/* A row: its slot and the tag the slot had when the row was found. */
struct shmtab_ref {
	size_t slot;
	uint64_t tag;
};

/*
 * How much a keyed row is worth keeping, read from its cells. SHMTAB_KEEP:
 * never evict it. Otherwise, when a window is full the row of lowest rank
 * gives way to a new key, and rank 0 means idle: shmtab_sweep() and
 * shmtab_try_free() free it. arg is the rank_arg of the call that asks.
 * A counter table calls a row idle only if shmtab_idle() says so (a row
 * whose sum is 0 may have a reservation in flight, lost if it is freed).
 */
typedef uint64_t shmtab_rank_cb(const struct shmtab *, const struct shmtab_ref *, void *arg);

enum shmtab_status {
	SHMTAB_OK = 0,
	SHMTAB_ABSENT, /* no row with this key */
	SHMTAB_FULL,   /* no room in the key's window, nothing to evict */
	SHMTAB_BUSY,   /* another process is half way through this key */
};

enum shmtab_mode {
	SHMTAB_LOOKUP, /* a USED row */
	SHMTAB_HELD,   /* a USED row, or one being drained: to give back what
	                * the caller holds in it */
	SHMTAB_CREATE, /* a USED row, made if there is none */
};

enum shmtab_reserve {
	SHMTAB_RESERVED = 0,
	SHMTAB_OVER,  /* the row would pass the limit: nothing changed */
	SHMTAB_STALE, /* the row was freed or reused: find it again */
};

/* In the master, before fork: one anonymous shared mapping. key_len is 1 to
 * SHMTAB_KEY_MAX; capacity 0 makes a table of fixed rows only. rank decides
 * eviction and idleness (NULL: rows are never evicted nor idle). fatal() if
 * the mapping cannot be made. */
struct shmtab *shmtab_new(size_t n_fixed, size_t capacity, size_t key_len, size_t n_cells,
                          shmtab_rank_cb *rank);
/* Unmap (this process only) and free. NULL is fine. */
void shmtab_free(struct shmtab *);
/* Keyed slots (capacity rounded up to a power of two). */
size_t shmtab_capacity(const struct shmtab *);

/* Fixed row number row (< n_fixed, else fatal()). */
struct shmtab_ref shmtab_fixed(const struct shmtab *, size_t row);

/* The row of key (key_len bytes) in *ref_r. owner (<= SHMTAB_OWNER_MAX, or
 * SHMTAB_MASTER) marks the slots this call changes half way, for
 * shmtab_recover(); rank_arg goes to the rank callback when a full window
 * must evict. Returns SHMTAB_OK or why not. */
enum shmtab_status shmtab_find(struct shmtab *, const void *key, enum shmtab_mode mode,
                               unsigned owner, void *rank_arg, struct shmtab_ref *ref_r);

/* Does the row still hold what ref found? */
bool shmtab_valid(const struct shmtab *, const struct shmtab_ref *);

/* Raw cells. Cell cell of the row. */
uint64_t shmtab_get(const struct shmtab *, const struct shmtab_ref *, size_t cell);
/* Compare-and-swap of cell cell: true if it held *expected and now holds
 * desired; else false and *expected is what it held. */
bool shmtab_cas(struct shmtab *, const struct shmtab_ref *, size_t cell, uint64_t *expected,
                uint64_t desired);

/* Counter cells. Add one to cell cell (the caller's own) if the row's sum,
 * reservations in flight included, stays within limit (0: no limit). See
 * the top of the file for why this is exact. */
enum shmtab_reserve shmtab_reserve(struct shmtab *, const struct shmtab_ref *, size_t cell,
                                   uint64_t limit);
/* Take n from counter cell, never below zero. False (and the count left
 * at zero) if it held less than n. */
bool shmtab_take(struct shmtab *, const struct shmtab_ref *, size_t cell, uint64_t n);
/* What counter cell counts. */
uint64_t shmtab_count(const struct shmtab *, const struct shmtab_ref *, size_t cell);
/* Sum of the row's counts, saturating at UINT64_MAX; reservations in
 * flight are left out. */
uint64_t shmtab_sum(const struct shmtab *, const struct shmtab_ref *);
/* No count and no reservation in flight in any counter cell of the row,
 * each cell read once. */
bool shmtab_idle(const struct shmtab *, const struct shmtab_ref *);

/* Free the keyed row if the rank callback calls it idle (rank 0) on its
 * cells as they are once no one can add to them. True if freed. */
bool shmtab_try_free(struct shmtab *, const struct shmtab_ref *, unsigned owner, void *rank_arg);

/* Master, after the process that used owner died: free the slots it was
 * claiming, restore the rows it was draining. */
void shmtab_recover(struct shmtab *, unsigned owner);
/* Master: zero cell cell of every row (a dead worker's own cells). */
void shmtab_clear_cell(struct shmtab *, size_t cell);
/* Free every keyed row the rank callback calls idle. */
void shmtab_sweep(struct shmtab *, unsigned owner, void *rank_arg);

#endif
