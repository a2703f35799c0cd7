/*
 * test_conn_limit.c - shared connection counts: per-client and total limits,
 * release, reset of a dead worker, a randomized run against a simple model,
 * and real processes: two counting at once, and workers killed with SIGKILL
 * while they hold the lock.
 *
 * Client keys are built by hand (net_client_key() lives in lib/net.c).
 *
 * The module is included rather than linked so that the crash tests can take
 * the lock and leave the table torn exactly as a worker killed at a given
 * instruction would, then check that the next locker repairs it.
 */
#include "smtpd/conn_limit.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

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

static void
test_table_full(void **state)
{
	struct conn_limit *cl = conn_limit_new(2, 1, 4);
	uint8_t k[16];

	for (int i = 0; i < 4; i++) {
		key_v6(k, (uint32_t)i);
		assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	/* A fifth client does not fit, a known one still does. */
	key_v6(k, 4);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	key_v6(k, 2);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 0), CONN_LIMIT_OK);
	/* Once a client is gone its slot is free again. */
	key_v6(k, 0);
	conn_limit_release(cl, 0, 0, k);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	key_v6(k, 4);
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
	/* Worker 2's slots are free: 206 new clients fit again (256 - 50). */
	for (int i = 0; i < 206; i++) {
		key_v6(k, (uint32_t)i);
		assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	key_v6(k, 1000);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	/* Resetting a worker with nothing counted changes nothing. */
	conn_limit_reset_worker(cl, 2);
	assert_int_equal(conn_limit_total(cl, 0), 231);
	conn_limit_free(cl);
}

/*
 * Randomized: many clients in a small, half-full table, so probe chains
 * collide and wrap, against a plain array of counts. Checks every client
 * after every step, which catches any entry lost by a backward shift.
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
				used += s > 0;
				if (ll == l)
					total += s;
			}
		}
		if (op < 55) {
			enum conn_limit_result want = CONN_LIMIT_OK;
			if (total >= 60 || (sum == 0 && used >= SLOTS))
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
			}
			if (conn_limit_total(cl, ll) != t)
				fail_msg("seed %u step %d: total", seed, step);
		}
	}
	conn_limit_free(cl);
}

/* ---- several processes ---- */

static pid_t
fork_or_die(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	return pid;
}

static int
wait_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return status;
}

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
		pids[w - 1] = fork_or_die();
		if (pids[w - 1] == 0)
			concurrent_child(cl, w);
	}
	for (int i = 0; i < 2; i++) {
		int status = wait_status(pids[i]);
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
 * The worker spends nearly all its time inside the lock: it opens many
 * connections, then has its own counts reset, which scans the whole table
 * and shifts entries around. It is killed at a random moment, again and
 * again; the survivor must get the lock, find its own counts intact, and
 * the repair must really have run (it logs a warning we count).
 */
static void
killed_child(struct conn_limit *cl, int ready_fd)
{
	uint8_t k[16];

	for (unsigned round = 0;; round++) {
		for (unsigned i = 0; i < 64; i++) {
			key_v6(k, (round * 64 + i) % 300);
			(void)conn_limit_acquire(cl, 1, i % 2, k, 0, 0);
		}
		conn_limit_reset_worker(cl, 1);
		if (round == 0 && write(ready_fd, "r", 1) != 1)
			_exit(1);
	}
}

static unsigned
count_in_file(int fd, const char *needle)
{
	char buf[65536];
	ssize_t n;
	unsigned count = 0;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, needle)) != NULL; p++)
		count++;
	return count;
}

static void
test_killed_while_holding_lock(void **state)
{
	enum { KILLS = 60, MINE = 150 };
	struct conn_limit *cl = conn_limit_new(2, 2, 512);
	FILE *logf = tmpfile();
	int logfd = logf != NULL ? fileno(logf) : -1;
	int saved_stderr = dup(STDERR_FILENO);
	uint8_t k[16];
	unsigned repairs;
	char why[200] = "";

	assert_true(logfd >= 0);
	/* Worker 0 (this process) holds connections among the child's. */
	for (unsigned i = 0; i < MINE; i++) {
		key_v6(k, i * 2);
		assert_int_equal(conn_limit_acquire(cl, 0, i % 2, k, 0, 0), CONN_LIMIT_OK);
	}
	/* The repair logs to stderr: collect it. */
	fflush(stderr);
	dup2(logfd, STDERR_FILENO);
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
		status = wait_status(pid);
		if (!WIFSIGNALED(status))
			snprintf(why, sizeof(why), "kill %d: child status %d", kill_no, status);

		/* What the master does when a worker dies. */
		conn_limit_reset_worker(cl, 1);
		for (unsigned l = 0; l < 2; l++) {
			if (conn_limit_total(cl, l) != MINE / 2)
				snprintf(why, sizeof(why), "kill %d: listener %u total %u", kill_no,
				         l, conn_limit_total(cl, l));
		}
		for (unsigned i = 0; i < 300; i++) {
			unsigned want = (i % 2 == 0 && i / 2 < MINE) ? 1 : 0, got;
			key_v6(k, i);
			got = conn_limit_per_ip(cl, (i / 2) % 2, k);
			if (got != want)
				snprintf(why, sizeof(why), "kill %d: client %u counted %u", kill_no,
				         i, got);
		}
	}
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	if (why[0] != '\0')
		fail_msg("%s", why);
	repairs = count_in_file(logfd, "died holding the lock");
	fclose(logf);
	print_message("%u of %d kills hit the lock held\n", repairs, KILLS);
	assert_true(repairs > 0);

	/* And the table still works normally. */
	key_v4(k, 192, 0, 2, 200);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, k, 0, 1), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, k, 0, 1), CONN_LIMIT_PER_IP);
	conn_limit_release(cl, 1, 0, k);
	assert_int_equal(conn_limit_per_ip(cl, 0, k), 0);
	conn_limit_free(cl);
}

/* ---- torn states: a worker killed at each store of an operation ---- */

/* The next unused test key whose home slot on listener 0 is home. */
static void
key_with_home(const struct conn_limit *cl, size_t home, uint32_t *next, uint8_t key[16])
{
	for (;; (*next)++) {
		key_v6(key, *next);
		if (cl_home(cl, 0, key) == (home & cl->mask)) {
			(*next)++;
			return;
		}
	}
}

/* conn_limit_release() by worker 1 of A at slot h, with B (home h) at h+1
 * and E (home h+1) at h+2 behind it, stopped after `steps` stores. With all
 * 10 it is the whole release: B and E both shift back one slot. */
static void
torn_release(struct conn_limit *cl, size_t h, int steps)
{
	struct cl_entry *a = cl_slot(cl, h);
	struct cl_entry *b = cl_slot(cl, (h + 1) & cl->mask);
	struct cl_entry *e = cl_slot(cl, (h + 2) & cl->mask);

	if (steps-- > 0)
		a->count[1]--;
	if (steps-- > 0)
		a->sum--;
	if (steps-- > 0)
		cl->totals[1]--;
	if (steps-- > 0)
		cl_set_state(a, SLOT_EMPTY);
	if (steps-- > 0)
		cl->shm->n_entries--;
	if (steps-- > 0) { /* B's fields copied, state not yet USED */
		a->listener = b->listener;
		a->sum = b->sum;
		memcpy(a->key, b->key, sizeof(a->key));
		memcpy(a->count, b->count, cl->max_workers * sizeof(a->count[0]));
	}
	if (steps-- > 0)
		cl_set_state(a, SLOT_USED); /* B twice */
	if (steps-- > 0)
		cl_set_state(b, SLOT_EMPTY); /* E behind a hole */
	if (steps-- > 0)
		cl_copy_entry(cl, b, e); /* E twice */
	if (steps-- > 0)
		cl_set_state(e, SLOT_EMPTY);
}

/* conn_limit_acquire() by worker 1 of a new client F, stopped likewise. */
static void
torn_acquire(struct conn_limit *cl, const uint8_t key[16], int steps)
{
	size_t empty;
	struct cl_entry *f;

	if (cl_find(cl, 0, key, &empty) != NOT_FOUND || empty == NOT_FOUND)
		_exit(3);
	f = cl_slot(cl, empty);
	if (steps-- > 0) {
		f->listener = 0;
		f->sum = 0;
		memcpy(f->key, key, sizeof(f->key));
		memset(f->count, 0, cl->max_workers * sizeof(f->count[0]));
	}
	if (steps-- > 0)
		cl_set_state(f, SLOT_USED);
	if (steps-- > 0)
		cl->shm->n_entries++;
	if (steps-- > 0)
		f->count[1]++;
	if (steps-- > 0)
		f->sum++;
	if (steps-- > 0)
		cl->totals[1]++;
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
	struct conn_limit *cl = conn_limit_new(2, 1, 8);
	const size_t h = 5;
	uint32_t next = 0;
	uint8_t a[16], b[16], e[16], c[16], f[16], k[16];
	size_t empty;
	unsigned want_a, want_f;
	int status;
	pid_t pid;

	key_with_home(cl, h, &next, a);
	key_with_home(cl, h, &next, b);
	key_with_home(cl, h + 1, &next, e);
	key_with_home(cl, h + 8, &next, c);
	key_with_home(cl, h, &next, f);
	assert_int_equal(conn_limit_acquire(cl, 1, 0, a, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, b, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, e, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(conn_limit_acquire(cl, 0, 0, c, 0, 0), CONN_LIMIT_OK);
	assert_int_equal(cl_find(cl, 0, a, &empty), h);
	assert_int_equal(cl_find(cl, 0, b, &empty), h + 1);
	assert_int_equal(cl_find(cl, 0, e, &empty), h + 2);

	pid = fork_or_die();
	if (pid == 0) {
		cl_lock(cl);
		if (release)
			torn_release(cl, h, steps);
		else
			torn_acquire(cl, f, steps);
		raise(SIGKILL);
		_exit(4);
	}
	status = wait_status(pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	/* The next locker repairs; the per-worker counts are the truth. */
	want_a = release && steps >= 1 ? 0 : 1;
	want_f = !release && steps >= 4 ? 1 : 0;
	EXPECT_COUNT("B", conn_limit_per_ip(cl, 0, b), 1);
	EXPECT_COUNT("E", conn_limit_per_ip(cl, 0, e), 1);
	EXPECT_COUNT("C", conn_limit_per_ip(cl, 0, c), 1);
	EXPECT_COUNT("A", conn_limit_per_ip(cl, 0, a), want_a);
	EXPECT_COUNT("F", conn_limit_per_ip(cl, 0, f), want_f);
	EXPECT_COUNT("total", conn_limit_total(cl, 0), 3 + want_a + want_f);

	conn_limit_reset_worker(cl, 1);
	EXPECT_COUNT("A after reset", conn_limit_per_ip(cl, 0, a), 0);
	EXPECT_COUNT("F after reset", conn_limit_per_ip(cl, 0, f), 0);
	EXPECT_COUNT("total after reset", conn_limit_total(cl, 0), 3);
	/* Exactly 5 of the 8 slots are free: nothing leaked or doubled. */
	for (uint32_t i = 0; i < 5; i++) {
		key_v6(k, 100000 + i);
		EXPECT_COUNT("free slot", conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_OK);
	}
	key_v6(k, 200000);
	EXPECT_COUNT("full", conn_limit_acquire(cl, 0, 0, k, 0, 0), CONN_LIMIT_TOTAL);
	/* Deleting everything still works (shifts over the repaired table). */
	for (uint32_t i = 0; i < 5; i++) {
		key_v6(k, 100000 + i);
		conn_limit_release(cl, 0, 0, k);
	}
	conn_limit_release(cl, 0, 0, b);
	conn_limit_release(cl, 0, 0, e);
	conn_limit_release(cl, 0, 0, c);
	EXPECT_COUNT("total at the end", conn_limit_total(cl, 0), 0);
	EXPECT_COUNT("entries at the end", cl->shm->n_entries, 0);
	conn_limit_free(cl);
}

static void
test_torn_states(void **state)
{
	/* The repair warns once per death; these deaths are on purpose. */
	log_set_level(LOG_LEVEL_ERR);
	for (int steps = 0; steps <= 10; steps++)
		run_torn(true, steps);
	for (int steps = 0; steps <= 6; steps++)
		run_torn(false, steps);
	log_set_level(LOG_LEVEL_WARN);
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
	        cmocka_unit_test(test_torn_states),
	        cmocka_unit_test(test_killed_while_holding_lock),
	};

	log_init(false, LOG_LEVEL_WARN, "test_conn_limit");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
