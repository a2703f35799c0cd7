/* SPDX-License-Identifier: ISC */
/*
 * test_send_limit.c - the per-user sending counts shared by the workers:
 * messages and recipients per hour, the hour sliding in 5-minute steps,
 * users folded to lower case, limits of 0 meaning none, a full table giving
 * way to the longest idle user, counts made in a forked child (as a worker
 * is) seen by the parent, several workers counting for one user at once
 * without losing a count, and a worker killed half way through adding a
 * user.
 */
/* The modules are included to reach the rank and the table's slots. */
#include "smtpd/send_limit.c"
#include "lib/shmtab.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define T0 999900 /* a monotonic second, on a 5-minute boundary */

static void
counts(struct send_limit *sl, const char *user, uint64_t now, unsigned want_msgs,
       unsigned want_rcpts)
{
	unsigned m, r;

	send_limit_counts(sl, user, now, &m, &r);
	assert_int_equal(m, want_msgs);
	assert_int_equal(r, want_rcpts);
}

static void
test_counts_and_window(void **state)
{
	struct send_limit *sl = send_limit_new(100, 4);
	unsigned c = 0;

	counts(sl, "alice", T0, 0, 0);
	send_limit_record(sl, 0, "alice", 3, T0);
	send_limit_record(sl, 0, "Alice", 2, T0 + 60);
	counts(sl, "ALICE", T0 + 61, 2, 5);
	counts(sl, "bob", T0 + 61, 0, 0);
	send_limit_record(sl, 0, "alice", 1, T0 + 1800);
	counts(sl, "alice", T0 + 1800, 3, 6);
	/* The first two leave the hour with their 5-minute bucket. */
	counts(sl, "alice", T0 + 3599, 3, 6);
	counts(sl, "alice", T0 + 3600, 1, 1);
	counts(sl, "alice", T0 + 1800 + 3600, 0, 0);

	/* The session's questions. */
	send_limit_record(sl, 0, "carol", 10, T0);
	send_limit_record(sl, 0, "carol", 10, T0);
	assert_true(send_limit_allow_message(sl, "carol", 3, T0, &c));
	send_limit_record(sl, 0, "carol", 10, T0);
	assert_false(send_limit_allow_message(sl, "carol", 3, T0, &c));
	assert_int_equal(c, 3);
	assert_true(send_limit_allow_message(sl, "carol", 0, T0, &c)); /* no limit */
	assert_true(send_limit_allow_recipient(sl, "carol", 4, 35, T0, &c));
	assert_false(send_limit_allow_recipient(sl, "carol", 5, 35, T0, &c));
	assert_int_equal(c, 35);
	assert_true(send_limit_allow_recipient(sl, "carol", 500, 0, T0, &c));
	assert_true(send_limit_allow_message(NULL, "carol", 1, T0, &c));
	send_limit_free(sl);
}

static void
test_full_table(void **state)
{
	struct send_limit *sl = send_limit_new(16, 4);
	char user[32];

	/* Far more users than slots: old ones give way, recent ones stay. */
	for (int i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		send_limit_record(sl, 0, user, 1, T0 + (uint64_t)i * 10);
	}
	counts(sl, "user4999", T0 + 49990, 1, 1);
	send_limit_free(sl);
}

static void
test_shared_across_fork(void **state)
{
	struct send_limit *sl = send_limit_new(100, 4);
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		send_limit_record(sl, 3, "dave", 7, T0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	counts(sl, "dave", T0, 1, 7);
	send_limit_free(sl);
}

/* The eviction rank: 0 once nothing is left in the hour (idle, freed
 * first), else one more than the newest 5-minute slot counted in, so the
 * user idle longest gives way first. */
static void
test_rank(void **state)
{
	struct send_limit *sl = send_limit_new(100, 4);
	const uint64_t s0 = T0 / SL_SLOT_S;
	struct shmtab_ref ref;
	uint8_t key[SL_KEY_LEN];
	uint64_t now;

	send_limit_record(sl, 0, "gina", 1, T0);
	send_limit_record(sl, 0, "gina", 1, T0 + 900);
	sl_key(sl, "GINA", key);
	assert_int_equal(shmtab_find(sl->tab, key, SHMTAB_LOOKUP, 0, NULL, &ref), SHMTAB_OK);
	now = s0 + 3;
	assert_int_equal(sl_rank(sl->tab, &ref, &now), s0 + 3 + 1);
	now = s0 + 12; /* the first bucket left the hour, the second not */
	assert_int_equal(sl_rank(sl->tab, &ref, &now), s0 + 3 + 1);
	now = s0 + 15;
	assert_int_equal(sl_rank(sl->tab, &ref, &now), 0);
	send_limit_free(sl);
}

/* Four workers count 5000 messages each for one user (and one each for
 * others, so rows come and go around it) in the same 5 minutes: not one is
 * lost. */
static void
test_concurrent_workers(void **state)
{
	enum { WORKERS = 4, MSGS = 5000 };
	struct send_limit *sl = send_limit_new(1000, WORKERS);
	pid_t pids[WORKERS];

	for (unsigned w = 0; w < WORKERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			char user[32];
			for (int i = 0; i < MSGS; i++) {
				send_limit_record(sl, w, i % 2 ? "Erin" : "erin", 3, T0 + 10);
				snprintf(user, sizeof(user), "u%u-%d", w, i % 50);
				send_limit_record(sl, w, user, 1, T0 + 10);
			}
			_exit(0);
		}
	}
	for (unsigned w = 0; w < WORKERS; w++) {
		int status;
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	counts(sl, "erin", T0 + 20, WORKERS * MSGS, WORKERS * MSGS * 3);
	send_limit_free(sl);
}

/* A worker killed after announcing a new user's row (PENDING, the step
 * before it is published) leaves that user uncountable by the others until
 * the master undoes it; nothing else is affected. */
static void
test_dead_worker_half_done(void **state)
{
	struct send_limit *sl = send_limit_new(100, 4);
	uint8_t key[SL_KEY_LEN];
	int status;
	pid_t pid;

	sl_key(sl, "frank", key);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct shmtab *t = sl->tab;
		size_t home = (size_t)keyhash_index(t->kh, key, SL_KEY_LEN) & t->mask;
		uint64_t kw[KEY_WORDS_MAX] = {0}, ft = atomic_load(st_tag(t, home));
		memcpy(kw, key, SL_KEY_LEN);
		if (tag_state(ft) != ST_FREE ||
		    !st_cas_tag(t, home, ft, tag_make(tag_gen(ft) + 1, 2, ST_CLAIM)))
			_exit(3);
		for (size_t w = 0; w < t->key_words; w++)
			atomic_store(&st_key(t, home)[w], kw[w]);
		st_cas_tag(t, home, tag_make(tag_gen(ft) + 1, 2, ST_CLAIM),
		           tag_make(tag_gen(ft) + 1, 2, ST_PENDING));
		raise(SIGKILL);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	log_set_level(LOG_LEVEL_ERR); /* the uncounted messages are warned about */
	send_limit_record(sl, 1, "frank", 1, T0);
	counts(sl, "frank", T0, 0, 0);
	send_limit_record(sl, 1, "grace", 4, T0);
	counts(sl, "grace", T0, 1, 4);
	/* What the master does when the worker has died. */
	send_limit_reset_worker(sl, 0); /* another worker: nothing changes */
	send_limit_record(sl, 1, "frank", 1, T0);
	counts(sl, "frank", T0, 0, 0);
	log_set_level(LOG_LEVEL_WARN);
	send_limit_reset_worker(sl, 2);
	send_limit_record(sl, 1, "frank", 1, T0);
	counts(sl, "frank", T0, 1, 1);
	counts(sl, "grace", T0, 1, 4);
	send_limit_free(sl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_counts_and_window),
	        cmocka_unit_test(test_full_table),
	        cmocka_unit_test(test_shared_across_fork),
	        cmocka_unit_test(test_rank),
	        cmocka_unit_test(test_concurrent_workers),
	        cmocka_unit_test(test_dead_worker_half_done),
	};

	log_init(false, LOG_LEVEL_WARN, "test_send_limit");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
