/* SPDX-License-Identifier: ISC */
/*
 * test_conn_limit.c - shared connection counts: per-client and total limits,
 * release, reset of a dead worker, a full table, a randomized run against a
 * simple model, and real processes: two counting at once, many racing for
 * the last place (never passed), workers killed with SIGKILL at random and
 * at every step of an operation, and a stopped worker that blocks nobody.
 *
 * Client keys are built by hand (net_client_key() lives in lib/net.c).
 *
 * The modules are included rather than linked so that the tests can read
 * the table's slots and leave them exactly as a worker killed at a given
 * step would.
 */
#include "smtpd/conn_limit.c"
#include "lib/shmtab.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "support/ut_proc.h"

/* ::ffff:a.b.c.d, as net_client_key() gives for IPv4. */
static void
key_v4(uint8_t key[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	memset(key, 0, 16);
	key[10] = 0xff;
	key[11] = 0xff;
	key[12] = a;
	key[13] = b;
	key[14] = c;
	key[15] = d;
}

/* 2001:db8:<n>::/64, as for a /64 prefix. */
static void
key_v6(uint8_t key[16], uint32_t n)
{
	memset(key, 0, 16);
	key[0] = 0x20;
	key[1] = 0x01;
	key[2] = 0x0d;
	key[3] = 0xb8;
	key[4] = (uint8_t)(n >> 24);
	key[5] = (uint8_t)(n >> 16);
	key[6] = (uint8_t)(n >> 8);
	key[7] = (uint8_t)n;
}

/* Keyed rows in use (rows of clients with connections, or half-made). */
static unsigned
used_rows(const struct conn_limit *cl)
{
	const struct shmtab *t = cl->tab;
	unsigned n = 0;

	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++)
		n += tag_state(atomic_load(st_tag(t, s))) != ST_FREE;
	return n;
}

/* Slots owner left half done (what shmtab_recover gives back). */
static unsigned
half_done(const struct conn_limit *cl, unsigned owner)
{
	const struct shmtab *t = cl->tab;
	unsigned n = 0;

	for (size_t s = t->n_fixed; s < t->n_fixed + t->cap; s++) {
		uint64_t tag = atomic_load(st_tag(t, s));
		unsigned st = tag_state(tag);
		n += tag_owner(tag) == owner &&
		     (st == ST_CLAIM || st == ST_PENDING || st == ST_DRAIN);
	}
	return n;
}

/* Is the window where the client's row would live without a free slot? */
static bool
window_full(const struct conn_limit *cl, unsigned listener, const uint8_t key[16])
{
	const struct shmtab *t = cl->tab;
	uint8_t k[CL_KEY_LEN];
	size_t home;

	cl_key(listener, key, k);
	home = (size_t)keyhash_index(t->kh, k, CL_KEY_LEN) & t->mask;
	for (size_t j = 0; j < t->window; j++)
		if (tag_state(atomic_load(st_tag(t, t->n_fixed + ((home + j) & t->mask)))) ==
		    ST_FREE)
			return false;
	return true;
}

static void
test_per_ip_limit(void **state)
{
	struct conn_limit *cl = conn_limit_new(4, 2, 64);
	uint8_t a[16], b[16];

	key_v4(a, 192, 0, 2, 1);
	key_v4(b, 192, 0, 2, 2);
	for (int i = 0; i < 3; i++)
		assert_int_equal(conn_limit_acquire(cl, (unsigned)i % 2, 0, a, 100, 3),
		                 CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 2, 0, a, 100, 3), CONN_LIMIT_PER_IP);
	assert_int_equal(conn_limit_per_ip(cl, 0, a), 3);
	/* Another client, and the same client on another listener, are apart. */
	assert_int_equal(conn_limit_acquire(cl, 0, 0, b, 100, 3), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 1, a, 100, 3), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_per_ip(cl, 0, b), 1);
	assert_int_equal(conn_limit_per_ip(cl, 1, a), 1);
	assert_int_equal(conn_limit_total(cl, 0), 4);
	assert_int_equal(conn_limit_total(cl, 1), 1);
	/* Releasing one makes room for exactly one more. */
	conn_limit_release(cl, 1, 0, a);
	assert_int_equal(conn_limit_per_ip(cl, 0, a), 2);
	assert_int_equal(conn_limit_acquire(cl, 3, 0, a, 100, 3), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 3, 0, a, 100, 3), CONN_LIMIT_PER_IP);
	conn_limit_free(cl);
}

static void
test_total_limit(void **state)
{
	struct conn_limit *cl = conn_limit_new(2, 2, 64);
	uint8_t k[16];

	for (int i = 0; i < 5; i++) {
		key_v4(k, 10, 0, 0, (uint8_t)i);
		assert_int_equal(conn_limit_acquire(cl, (unsigned)i % 2, 0, k, 5, 10),
		                 CONN_LIMIT_OK);
	}
	key_v4(k, 10, 0, 0, 99);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 5, 10), CONN_LIMIT_TOTAL);
	/* A refused connection is not counted. */
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	assert_int_equal(conn_limit_total(cl, 0), 5);
	/* When both limits are hit the total one is reported. */
	key_v4(k, 10, 0, 0, 0);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 5, 1), CONN_LIMIT_TOTAL);
	/* The other listener has its own total. */
	assert_int_equal(conn_limit_acquire(cl, 0, 1, k, 5, 10), CONN_LIMIT_OK);
	conn_limit_release(cl, 0, 0, k);
	assert_int_equal(conn_limit_total(cl, 0), 4);
	key_v4(k, 10, 0, 0, 99);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 5, 10), CONN_LIMIT_OK);
	conn_limit_free(cl);
}

static void
test_zero_means_unlimited(void **state)
{
	struct conn_limit *cl = conn_limit_new(1, 1, 4);
	uint8_t k[16];

	key_v4(k, 127, 0, 0, 1);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_total(cl, 0), 1000);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 1000);
	conn_limit_free(cl);
}

/*
 * 4 slots make a table of 8 (twice the clients that can be connected),
 * which is also the window: exactly 8 clients fit.
 */
static void
test_table_full(void **state)
{
	struct conn_limit *cl = conn_limit_new(2, 1, 4);
	uint8_t k[16];

	assert_int_equal(shmtab_capacity(cl->tab), 8);
	for (int i = 0; i < 8; i++) {
		key_v6(k, (uint32_t)i);
		assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	/* A ninth client does not fit, a known one still does. */
	key_v6(k, 8);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	assert_int_equal(conn_limit_total(cl, 0), 8);
	key_v6(k, 2);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 0), CONN_LIMIT_OK);
	/* Once a client is gone its slot is free again. */
	key_v6(k, 0);
	conn_limit_release(cl, 0, 0, k);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	key_v6(k, 8);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);

	/* No slots at all: everything is refused, nothing breaks. */
	conn_limit_free(cl);
	cl = conn_limit_new(1, 1, 0);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	assert_int_equal(conn_limit_total(cl, 0), 0);
	conn_limit_free(cl);
}

static void
test_ipv6_keys(void **state)
{
	struct conn_limit *cl = conn_limit_new(1, 1, 16);
	uint8_t a[16], b[16], v4[16], v6low[16];

	/* Keys that differ in one byte anywhere are different clients. */
	key_v6(a, 1);
	memcpy(b, a, 16);
	b[15] = 1;
	key_v4(v4, 1, 2, 3, 4);
	memset(v6low, 0, 16); /* ::1.2.3.4, not v4-mapped */
	memcpy(v6low + 12, v4 + 12, 4);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, a, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, b, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, v4, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, v6low, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, a, 0, 1), CONN_LIMIT_PER_IP);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, v4, 0, 1), CONN_LIMIT_PER_IP);
	assert_int_equal(conn_limit_total(cl, 0), 4);
	conn_limit_free(cl);
}

static void
test_release_unknown(void **state)
{
	struct conn_limit *cl = conn_limit_new(2, 1, 8);
	uint8_t k[16];

	/* Logged and ignored: counts never go below zero. */
	key_v4(k, 198, 51, 100, 1);
	conn_limit_release(cl, 0, 0, k);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	conn_limit_release(cl, 1, 0, k); /* counted for worker 0, not 1 */
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 1);
	assert_int_equal(conn_limit_total(cl, 0), 1);
	conn_limit_release(cl, 0, 0, k);
	conn_limit_release(cl, 0, 0, k);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	assert_int_equal(conn_limit_total(cl, 0), 0);
	assert_int_equal(used_rows(cl), 0);
	conn_limit_free(cl);
}

static void
test_reset_worker(void **state)
{
	struct conn_limit *cl = conn_limit_new(3, 2, 256);
	uint8_t k[16];

	/* Worker 0 and 2 share clients 0..49; worker 2 alone has 50..99. */
	for (int i = 0; i < 100; i++) {
		key_v4(k, 203, 0, 113, (uint8_t)i);
		if (i < 50)
			assert_int_equal(conn_limit_acquire(cl, 0, (unsigned)i % 2, k, 0, 0),
			                 CONN_LIMIT_OK);
		assert_int_equal(conn_limit_acquire(cl, 2, (unsigned)i % 2, k, 0, 0),
		                 CONN_LIMIT_OK);
		assert_int_equal(conn_limit_acquire(cl, 2, (unsigned)i % 2, k, 0, 0),
		                 CONN_LIMIT_OK);
	}
	assert_int_equal(conn_limit_total(cl, 0) + conn_limit_total(cl, 1), 250);
	conn_limit_reset_worker(cl, 2);
	assert_int_equal(conn_limit_total(cl, 0), 25);
	assert_int_equal(conn_limit_total(cl, 1), 25);
	for (int i = 0; i < 100; i++) {
		key_v4(k, 203, 0, 113, (uint8_t)i);
		assert_int_equal(conn_limit_per_ip(cl, (unsigned)i % 2, k), i < 50 ? 1 : 0);
	}
	/* Worker 2's rows are free: only the 50 shared clients keep one, and
	 * 206 new clients fit again (256 - 50). */
	assert_int_equal(used_rows(cl), 50);
	for (int i = 0; i < 206; i++) {
		key_v6(k, (uint32_t)i);
		assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	assert_int_equal(used_rows(cl), 256);
	/* Resetting a worker with nothing counted changes nothing. */
	conn_limit_reset_worker(cl, 2);
	assert_int_equal(conn_limit_total(cl, 0), 231);
	conn_limit_free(cl);
}

/*
 * Randomized: many clients in a small table, so windows overlap, wrap and
 * fill, against a plain array of counts. Checks every client after every
 * step, which catches any row lost, doubled or left behind.
 */
static void
test_random_against_model(void **state)
{
	enum { WORKERS = 3, LISTENERS = 2, CLIENTS = 40, SLOTS = 24, STEPS = 20000 };
	static unsigned model[LISTENERS][CLIENTS][WORKERS];
	struct conn_limit *cl = conn_limit_new(WORKERS, LISTENERS, SLOTS);
	unsigned seed = (unsigned)time(NULL);
	uint8_t k[16];

	memset(model, 0, sizeof(model));
	srand(seed);
	for (int step = 0; step < STEPS; step++) {
		unsigned l = (unsigned)rand() % LISTENERS, c = (unsigned)rand() % CLIENTS;
		unsigned w = (unsigned)rand() % WORKERS, op = (unsigned)rand() % 100;
		unsigned sum = 0, total = 0, used = 0;

		key_v6(k, c * 2654435761u);
		for (unsigned x = 0; x < WORKERS; x++)
			sum += model[l][c][x];
		for (unsigned ll = 0; ll < LISTENERS; ll++) {
			for (unsigned cc = 0; cc < CLIENTS; cc++) {
				unsigned s = 0;
				for (unsigned x = 0; x < WORKERS; x++)
					s += model[ll][cc][x];
				if (ll == l)
					total += s;
			}
		}
		if (op < 55) {
			enum conn_limit_result want = CONN_LIMIT_OK;
			if (total >= 60 || (sum == 0 && window_full(cl, l, k)))
				want = CONN_LIMIT_TOTAL;
			else if (sum >= 4)
				want = CONN_LIMIT_PER_IP;
			if (conn_limit_acquire(cl, w, l, k, 60, 4) != want)
				fail_msg("seed %u step %d: acquire", seed, step);
			if (want == CONN_LIMIT_OK)
				model[l][c][w]++;
		} else if (op < 99) {
			if (model[l][c][w] > 0) {
				conn_limit_release(cl, w, l, k);
				model[l][c][w]--;
			}
		} else {
			conn_limit_reset_worker(cl, w);
			for (unsigned ll = 0; ll < LISTENERS; ll++)
				for (unsigned cc = 0; cc < CLIENTS; cc++)
					model[ll][cc][w] = 0;
		}
		for (unsigned ll = 0; ll < LISTENERS; ll++) {
			unsigned t = 0;
			for (unsigned cc = 0; cc < CLIENTS; cc++) {
				unsigned s = 0;
				for (unsigned x = 0; x < WORKERS; x++)
					s += model[ll][cc][x];
				key_v6(k, cc * 2654435761u);
				if (conn_limit_per_ip(cl, ll, k) != s)
					fail_msg("seed %u step %d: per_ip", seed, step);
				t += s;
				used += s > 0;
			}
			if (conn_limit_total(cl, ll) != t)
				fail_msg("seed %u step %d: total", seed, step);
		}
		/* A client's row goes with its last connection. */
		if (used_rows(cl) != used)
			fail_msg("seed %u step %d: %u rows for %u clients", seed, step,
			         used_rows(cl), used);
	}
	conn_limit_free(cl);
}

/* ---- several processes ---- */

/*
 * Two workers hammer the same few clients under tight limits; the limits
 * must hold at every moment, and what each holds at exit must add up.
 */
static void
concurrent_child(struct conn_limit *cl, unsigned worker)
{
	enum { ROUNDS = 20000, HOLD = 100 };
	unsigned held[8] = {0};
	uint8_t k[16];

	for (int i = 0; i < ROUNDS; i++) {
		unsigned c = (unsigned)i % 8;
		key_v4(k, 100, 64, 0, (uint8_t)c);
		if (conn_limit_acquire(cl, worker, 0, k, 20, 4) == CONN_LIMIT_OK) {
			held[c]++;
			if (conn_limit_per_ip(cl, 0, k) > 4 || conn_limit_total(cl, 0) > 20)
				_exit(2);
		}
		if ((i & 1) != 0) {
			c = (unsigned)(i * 5) % 8;
			key_v4(k, 100, 64, 0, (uint8_t)c);
			if (held[c] > 0) {
				conn_limit_release(cl, worker, 0, k);
				held[c]--;
			}
		}
	}
	for (unsigned c = 0; c < 8; c++) {
		key_v4(k, 100, 64, 0, (uint8_t)c);
		for (; held[c] > 0; held[c]--)
			conn_limit_release(cl, worker, 0, k);
	}
	/* Then each keeps HOLD connections of its own on listener 1. */
	for (unsigned i = 0; i < HOLD; i++) {
		key_v6(k, worker * 1000 + i);
		if (conn_limit_acquire(cl, worker, 1, k, 0, 0) != CONN_LIMIT_OK)
			_exit(3);
	}
	_exit(0);
}

static void
test_two_processes(void **state)
{
	struct conn_limit *cl = conn_limit_new(3, 2, 1024);
	pid_t pids[2];
	uint8_t k[16];

	for (unsigned w = 1; w <= 2; w++) {
		pids[w - 1] = ut_proc_fork();
		if (pids[w - 1] == 0)
			concurrent_child(cl, w);
	}
	for (int i = 0; i < 2; i++) {
		int status = ut_proc_wait(pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(conn_limit_total(cl, 0), 0);
	assert_int_equal(conn_limit_total(cl, 1), 200);
	key_v6(k, 1000 + 7);
	assert_int_equal(conn_limit_per_ip(cl, 1, k), 1);
	conn_limit_reset_worker(cl, 1);
	assert_int_equal(conn_limit_total(cl, 1), 100);
	assert_int_equal(conn_limit_per_ip(cl, 1, k), 0);
	key_v6(k, 2000 + 7);
	assert_int_equal(conn_limit_per_ip(cl, 1, k), 1);
	conn_limit_free(cl);
}

/*
 * Six workers race for the last places of two clients (max_connections_per_ip
 * 10) and of the listener (max_connections 15), each wanting up to 6
 * connections at once. A shared count of what they hold, bumped only after
 * a successful acquire and dropped before the release, must never pass a
 * limit.
 */
enum { RACE_WORKERS = 6, RACE_PER_IP = 10, RACE_TOTAL = 15, RACE_ROUNDS = 200000 };

struct race {
	_Atomic unsigned ready;
	_Atomic unsigned per_ip[2], total;
	_Atomic unsigned violations, granted, max_total, max_per_ip;
};

static void
race_worker(struct conn_limit *cl, struct race *rc, unsigned worker)
{
	unsigned held[2] = {0, 0};
	uint8_t k[2][16];

	key_v4(k[0], 192, 0, 2, 10);
	key_v4(k[1], 192, 0, 2, 11);
	rc->ready++;
	for (int spin = 0; rc->ready < RACE_WORKERS && spin < 1000000; spin++)
		sched_yield();
	for (unsigned i = 0; i < RACE_ROUNDS; i++) {
		unsigned c = (i + worker) % 2;
		if (held[0] + held[1] < 6 && conn_limit_acquire(cl, worker, 0, k[c], RACE_TOTAL,
		                                                RACE_PER_IP) == CONN_LIMIT_OK) {
			unsigned ip = ++rc->per_ip[c], tot = ++rc->total;
			if (ip > RACE_PER_IP || tot > RACE_TOTAL)
				rc->violations++;
			for (unsigned m = rc->max_total; tot > m;)
				if (atomic_compare_exchange_weak(&rc->max_total, &m, tot))
					break;
			for (unsigned m = rc->max_per_ip; ip > m;)
				if (atomic_compare_exchange_weak(&rc->max_per_ip, &m, ip))
					break;
			rc->granted++;
			held[c]++;
		}
		c = (i * 7 + worker) % 2;
		if (i % 3 == 0 && held[c] > 0) {
			rc->per_ip[c]--;
			rc->total--;
			conn_limit_release(cl, worker, 0, k[c]);
			held[c]--;
		}
	}
	for (unsigned c = 0; c < 2; c++) {
		for (; held[c] > 0; held[c]--) {
			rc->per_ip[c]--;
			rc->total--;
			conn_limit_release(cl, worker, 0, k[c]);
		}
	}
	_exit(0);
}

static void
test_race_for_the_last_place(void **state)
{
	struct conn_limit *cl = conn_limit_new(RACE_WORKERS, 1, 64);
	struct race *rc =
	        mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[RACE_WORKERS];

	assert_true(rc != MAP_FAILED);
	memset(rc, 0, sizeof(*rc));
	for (unsigned w = 0; w < RACE_WORKERS; w++) {
		pids[w] = ut_proc_fork();
		if (pids[w] == 0)
			race_worker(cl, rc, w);
	}
	for (unsigned w = 0; w < RACE_WORKERS; w++) {
		int status = ut_proc_wait(pids[w]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	print_message("granted %u, most held at once %u of %d, from one client %u of %d\n",
	              rc->granted, rc->max_total, RACE_TOTAL, rc->max_per_ip, RACE_PER_IP);
	assert_int_equal(rc->violations, 0);
	assert_true(rc->granted > 0);
	assert_int_equal(conn_limit_total(cl, 0), 0);
	assert_int_equal(used_rows(cl), 0);
	munmap(rc, sizeof(*rc));
	conn_limit_free(cl);
}

/*
 * Worker 1 opens and closes connections of 300 clients as fast as it can
 * (rows made and freed all the time) and is killed at a random moment,
 * again and again. After what the master does when a worker dies, this
 * process's own connections (worker 0) are intact and nothing of worker 1
 * is left: no count, no row, no slot half done.
 */
static void
killed_child(struct conn_limit *cl, int ready_fd)
{
	unsigned held[300] = {0};
	uint8_t k[16];

	for (unsigned round = 0;; round++) {
		for (unsigned i = 0; i < 64; i++) {
			unsigned c = (round * 64 + i) % 300;
			key_v6(k, c);
			if (conn_limit_acquire(cl, 1, c % 2, k, 0, 3) == CONN_LIMIT_OK)
				held[c]++;
		}
		for (unsigned i = 0; i < 64; i += 2) {
			unsigned c = (round * 64 + i) % 300;
			key_v6(k, c);
			if (held[c] > 0) {
				conn_limit_release(cl, 1, c % 2, k);
				held[c]--;
			}
		}
		if (round == 0 && write(ready_fd, "r", 1) != 1)
			_exit(1);
	}
}

static void
test_killed_worker(void **state)
{
	enum { KILLS = 60, MINE = 150 };
	struct conn_limit *cl = conn_limit_new(2, 2, 512);
	uint8_t k[16];
	unsigned caught_half_done = 0;
	char why[200] = "";

	/* Worker 0 (this process) holds connections among the child's. */
	for (unsigned i = 0; i < MINE; i++) {
		key_v6(k, i * 2);
		assert_int_equal(conn_limit_acquire(cl, 0, (i * 2) % 2, k, 0, 0), CONN_LIMIT_OK);
	}
	srand((unsigned)time(NULL));
	for (int kill_no = 0; kill_no < KILLS && why[0] == '\0'; kill_no++) {
		int ready[2], status;
		char c;
		pid_t pid;

		if (pipe(ready) < 0 || (pid = fork()) < 0) {
			snprintf(why, sizeof(why), "pipe/fork: %s", strerror(errno));
			break;
		}
		if (pid == 0) {
			close(ready[0]);
			killed_child(cl, ready[1]);
		}
		close(ready[1]);
		if (read(ready[0], &c, 1) != 1)
			snprintf(why, sizeof(why), "kill %d: child did not start", kill_no);
		close(ready[0]);
		usleep((useconds_t)(rand() % 2000));
		kill(pid, SIGKILL);
		status = ut_proc_wait(pid);
		if (!WIFSIGNALED(status))
			snprintf(why, sizeof(why), "kill %d: child status %d", kill_no, status);
		caught_half_done += half_done(cl, 1) > 0;

		/* What the master does when a worker dies. */
		conn_limit_reset_worker(cl, 1);
		for (unsigned l = 0; l < 2; l++) {
			if (conn_limit_total(cl, l) != (l == 0 ? MINE : 0))
				snprintf(why, sizeof(why), "kill %d: listener %u total %u", kill_no,
				         l, conn_limit_total(cl, l));
		}
		for (unsigned i = 0; i < 300; i++) {
			unsigned want = (i % 2 == 0 && i / 2 < MINE) ? 1 : 0, got;
			key_v6(k, i);
			got = conn_limit_per_ip(cl, i % 2, k);
			if (got != want)
				snprintf(why, sizeof(why), "kill %d: client %u counted %u", kill_no,
				         i, got);
		}
		if (used_rows(cl) != MINE || half_done(cl, 1) != 0)
			snprintf(why, sizeof(why), "kill %d: %u rows used, %u half done", kill_no,
			         used_rows(cl), half_done(cl, 1));
	}
	if (why[0] != '\0')
		fail_msg("%s", why);
	print_message("%u of %d kills left a slot half done\n", caught_half_done, KILLS);

	/* And the table still works normally. */
	key_v4(k, 192, 0, 2, 200);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 1), CONN_LIMIT_PER_IP);
	conn_limit_release(cl, 1, 0, k);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	conn_limit_free(cl);
}

/* ---- torn states: a worker killed after each step of an operation ---- */

/* The slot where a new row of key would go: the first free one of its
 * window. */
static size_t
free_slot_for(const struct conn_limit *cl, const uint8_t key[16], uint64_t *tag_r)
{
	const struct shmtab *t = cl->tab;
	uint8_t k[CL_KEY_LEN];
	size_t home;

	cl_key(0, key, k);
	home = (size_t)keyhash_index(t->kh, k, CL_KEY_LEN) & t->mask;
	for (size_t j = 0; j < t->window; j++) {
		size_t s = t->n_fixed + ((home + j) & t->mask);
		*tag_r = atomic_load(st_tag(t, s));
		if (tag_state(*tag_r) == ST_FREE)
			return s;
	}
	_exit(3);
}

/* conn_limit_acquire() by worker 1 of a new client F, stopped after `steps`
 * steps: all 8 are the whole acquire. */
static void
torn_acquire(struct conn_limit *cl, const uint8_t key[16], int steps)
{
	struct shmtab *t = cl->tab;
	struct shmtab_ref total = shmtab_fixed(t, 0);
	uint8_t k[CL_KEY_LEN];
	uint64_t kw[KEY_WORDS_MAX] = {0}, free_tag;
	size_t s = free_slot_for(cl, key, &free_tag);
	uint32_t gen = tag_gen(free_tag) + 1;

	cl_key(0, key, k);
	memcpy(kw, k, sizeof(k));
	if (steps-- > 0) /* the listener's place, in flight */
		atomic_fetch_add(&st_cells(t, total.slot)[1], IN_FLIGHT_UNIT);
	if (steps-- > 0) /* within max_connections: counted */
		atomic_fetch_sub(&st_cells(t, total.slot)[1], IN_FLIGHT_UNIT - 1);
	if (steps-- > 0)
		st_cas_tag(t, s, free_tag, tag_make(gen, 1, ST_CLAIM));
	if (steps-- > 0) {
		for (size_t w = 0; w < t->key_words; w++)
			atomic_store(&st_key(t, s)[w], kw[w]);
		for (size_t i = 0; i < t->n_cells; i++)
			atomic_store(&st_cells(t, s)[i], 0);
	}
	if (steps-- > 0)
		st_cas_tag(t, s, tag_make(gen, 1, ST_CLAIM), tag_make(gen, 1, ST_PENDING));
	if (steps-- > 0)
		st_cas_tag(t, s, tag_make(gen, 1, ST_PENDING), tag_make(gen, 0, ST_USED));
	if (steps-- > 0) /* the client's place, in flight */
		atomic_fetch_add(&st_cells(t, s)[1], IN_FLIGHT_UNIT);
	if (steps-- > 0)
		atomic_fetch_sub(&st_cells(t, s)[1], IN_FLIGHT_UNIT - 1);
}

/* conn_limit_release() by worker 1 of its only connection of A, stopped
 * likewise: all 4 are the whole release, the row freed. */
static void
torn_release(struct conn_limit *cl, const uint8_t key[16], int steps)
{
	struct shmtab *t = cl->tab;
	struct shmtab_ref total = shmtab_fixed(t, 0), row;
	uint8_t k[CL_KEY_LEN];

	cl_key(0, key, k);
	if (shmtab_find(t, k, SHMTAB_LOOKUP, 1, NULL, &row) != SHMTAB_OK)
		_exit(3);
	if (steps-- > 0)
		shmtab_take(t, &row, 1, 1);
	if (steps-- > 0)
		shmtab_take(t, &total, 1, 1);
	if (steps-- > 0)
		st_cas_tag(t, row.slot, row.tag, tag_make(tag_gen(row.tag), 1, ST_DRAIN));
	if (steps-- > 0)
		st_cas_tag(t, row.slot, tag_make(tag_gen(row.tag), 1, ST_DRAIN),
		           tag_make(tag_gen(row.tag), 0, ST_FREE));
}

#define EXPECT_COUNT(what, got, want)                                                              \
	do {                                                                                       \
		unsigned got_ = (got), want_ = (want);                                             \
		if (got_ != want_)                                                                 \
			fail_msg("%s after %d steps: %s is %u, want %u", op_name, steps, what,     \
			         got_, want_);                                                     \
	} while (0)

static void
run_torn(bool release, int steps)
{
	const char *op_name = release ? "release" : "acquire";
	struct conn_limit *cl = conn_limit_new(2, 1, 4); /* 8 slots */
	uint8_t a[16], b[16], e[16], c[16], f[16], k[16];
	unsigned want_a, want_f;
	int status;
	pid_t pid;

	key_v6(a, 1);
	key_v6(b, 2);
	key_v6(e, 3);
	key_v6(c, 4);
	key_v6(f, 5);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, a, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, b, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, e, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, c, 0, 0), CONN_LIMIT_OK);

	pid = ut_proc_fork();
	if (pid == 0) {
		if (release)
			torn_release(cl, a, steps);
		else
			torn_acquire(cl, f, steps);
		raise(SIGKILL);
		_exit(4);
	}
	status = ut_proc_wait(pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	/* Before the master notices: the others' counts are intact. */
	EXPECT_COUNT("B", conn_limit_per_ip(cl, 0, b), 1);
	EXPECT_COUNT("E", conn_limit_per_ip(cl, 0, e), 1);
	EXPECT_COUNT("C", conn_limit_per_ip(cl, 0, c), 1);
	want_a = release && steps >= 1 ? 0 : 1;
	want_f = !release && steps >= 8 ? 1 : 0;
	EXPECT_COUNT("A", conn_limit_per_ip(cl, 0, a), want_a);
	EXPECT_COUNT("F", conn_limit_per_ip(cl, 0, f), want_f);

	conn_limit_reset_worker(cl, 1);
	EXPECT_COUNT("A after reset", conn_limit_per_ip(cl, 0, a), 0);
	EXPECT_COUNT("F after reset", conn_limit_per_ip(cl, 0, f), 0);
	EXPECT_COUNT("total after reset", conn_limit_total(cl, 0), 3);
	EXPECT_COUNT("rows after reset", used_rows(cl), 3);
	/* Exactly 5 of the 8 slots are free: nothing leaked or doubled. */
	for (uint32_t i = 0; i < 5; i++) {
		key_v6(k, 100000 + i);
		EXPECT_COUNT("free slot", conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	key_v6(k, 200000);
	EXPECT_COUNT("full", conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	for (uint32_t i = 0; i < 5; i++) {
		key_v6(k, 100000 + i);
		conn_limit_release(cl, 0, 0, k);
	}
	conn_limit_release(cl, 0, 0, b);
	conn_limit_release(cl, 0, 0, e);
	conn_limit_release(cl, 0, 0, c);
	EXPECT_COUNT("total at the end", conn_limit_total(cl, 0), 0);
	EXPECT_COUNT("rows at the end", used_rows(cl), 0);
	conn_limit_free(cl);
}

static void
test_torn_states(void **state)
{
	for (int steps = 0; steps <= 4; steps++)
		run_torn(true, steps);
	for (int steps = 0; steps <= 8; steps++)
		run_torn(false, steps);
}

/*
 * A worker stopped (SIGSTOP) in the middle of freeing a client's row, the
 * one instant it leaves something half done: the master still gives back
 * another dead worker's connections at once, other clients are served
 * normally, the stopped client's connections can still be released, and
 * new ones for that client only are refused until the worker is gone.
 */
static void
test_stopped_worker(void **state)
{
	struct conn_limit *cl = conn_limit_new(3, 1, 64);
	uint8_t x[16], k[16], kk[CL_KEY_LEN];
	struct shmtab_ref row;
	struct timespec t0, t1;
	int status;
	pid_t pid;

	key_v4(x, 198, 51, 100, 7);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, x, 0, 0), CONN_LIMIT_OK);
	for (uint32_t i = 0; i < 10; i++) {
		key_v6(k, i);
		assert_int_equal(conn_limit_acquire(cl, 2, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	cl_key(0, x, kk);
	assert_int_equal(shmtab_find(cl->tab, kk, SHMTAB_LOOKUP, 1, NULL, &row), SHMTAB_OK);
	pid = ut_proc_fork();
	if (pid == 0) {
		st_cas_tag(cl->tab, row.slot, row.tag, tag_make(tag_gen(row.tag), 1, ST_DRAIN));
		raise(SIGSTOP);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	conn_limit_reset_worker(cl, 2); /* worker 2 died */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_int_equal(conn_limit_total(cl, 0), 1);
	for (uint32_t i = 0; i < 10; i++) {
		key_v6(k, i);
		assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 1), CONN_LIMIT_OK);
	}
	assert_int_equal(conn_limit_acquire(cl, 0, 0, x, 0, 0), CONN_LIMIT_TOTAL);
	conn_limit_release(cl, 0, 0, x);
	assert_int_equal(conn_limit_per_ip(cl, 0, x), 0);

	kill(pid, SIGKILL);
	status = ut_proc_wait(pid);
	assert_true(WIFSIGNALED(status));
	conn_limit_reset_worker(cl, 1);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, x, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, x, 0, 1), CONN_LIMIT_PER_IP);
	assert_int_equal(used_rows(cl), 11);
	conn_limit_free(cl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_per_ip_limit),
	        cmocka_unit_test(test_total_limit),
	        cmocka_unit_test(test_zero_means_unlimited),
	        cmocka_unit_test(test_table_full),
	        cmocka_unit_test(test_ipv6_keys),
	        cmocka_unit_test(test_release_unknown),
	        cmocka_unit_test(test_reset_worker),
	        cmocka_unit_test(test_random_against_model),
	        cmocka_unit_test(test_two_processes),
	        cmocka_unit_test(test_race_for_the_last_place),
	        cmocka_unit_test(test_torn_states),
	        cmocka_unit_test(test_killed_worker),
	        cmocka_unit_test(test_stopped_worker),
	};

	log_init(false, LOG_LEVEL_WARN, "test_conn_limit");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
