/* SPDX-License-Identifier: ISC */
/*
 * test_spool_commit.c - group and single commit (spool_commit.h): every
 * message of a round lands in incoming/ with one sync call per round, a
 * message that cannot be written fails alone, a round without incoming/
 * fails whole and leaves no tmp file, and the profile adds up.
 *
 * Works in a fresh spool under $TMPDIR (or /tmp): run it with TMPDIR on a
 * journaled ext4, XFS, tmpfs... to see each sync method at work.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/log.h"
#include "lib/threadpool.h"
#include "spool/spool.h"
#include "spool/spool_commit.h"
#include "support/ut_tmp.h"
#include "support/ut_spool.h"

#define N_MSGS 40

struct fixture {
	char dir[256];
	struct event_base *base;
	struct threadpool *pool;
	int done, ok;
	int results[N_MSGS + 1];
	int expect;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	const char *error = NULL;

	ut_tmp_dir(fx->dir, sizeof(fx->dir), "test_spool_commit.");
	static const struct spool_owners no_owners = {.root = false};
	if (spool_init_dirs(fx->dir, &no_owners, &error) < 0)
		return -1;
	fx->base = event_base_new();
	fx->pool = threadpool_new(fx->base, 2);
	*state = fx;
	return 0;
}

static void
rm_dir(const char *dir, const char *sub)
{
	char path[512], f[800];
	struct dirent *de;
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			unlink(f);
		}
		closedir(d);
	}
	rmdir(path);
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	ut_tmp_remove(fx->dir);
	threadpool_free(fx->pool);
	event_base_free(fx->base);
	free(fx);
	return 0;
}

static void
commit_cb(struct spool_msg *msg, int result, void *arg)
{
	struct fixture *fx = arg;
	fx->results[fx->done++] = result;
	fx->ok += result == 0;
	spool_msg_free(msg);
	if (fx->done == fx->expect)
		event_base_loopbreak(fx->base);
}

static struct spool_msg *
new_msg(struct fixture *fx)
{
	return ut_spool_msg(fx->dir);
}

/* Submit n messages (the first `bad` of them broken by a write error) and
 * run the loop until every callback has run. */
static void
run_commits(struct fixture *fx, struct spool_committer *c, int n, int bad)
{
	fx->done = fx->ok = 0;
	fx->expect = n;
	for (int i = 0; i < n; i++) {
		struct spool_msg *m = new_msg(fx);
		if (i < bad) {
			/* A file size limit makes write(2) fail, like a full disk. */
			static char big[200000];
			struct rlimit old, small;
			void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
			assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
			small = old;
			small.rlim_cur = 16384;
			assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
			assert_int_equal(spool_msg_write(m, big, sizeof(big)), -1);
			assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
			signal(SIGXFSZ, old_handler);
		}
		spool_committer_submit(c, m, commit_cb, fx);
	}
	event_base_dispatch(fx->base);
	assert_int_equal(fx->done, n);
}

static void
test_group_one_sync_per_round(void **state)
{
	struct fixture *fx = *state;
	struct spool_committer *c = spool_committer_new(fx->base, true, fx->pool);
	struct spool_commit_profile p;

	run_commits(fx, c, N_MSGS, 0);
	assert_int_equal(fx->ok, N_MSGS);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), N_MSGS);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	spool_committer_profile(c, &p);
	assert_int_equal(p.messages, N_MSGS);
	assert_true(p.rounds >= 1 && p.rounds <= N_MSGS);
	if (strcmp(p.method, "file_fsync") == 0) {
		assert_int_equal(p.syncs, p.rounds + N_MSGS);
	} else {
		assert_true(strcmp(p.method, "dir_fsync") == 0 || strcmp(p.method, "syncfs") == 0);
		/* The point of it all: one sync call per round. */
		assert_int_equal(p.syncs, p.rounds);
	}
	unsigned long rounds, msgs;
	spool_committer_stats(c, &rounds, &msgs);
	assert_int_equal(rounds, p.rounds);
	assert_int_equal(msgs, N_MSGS);
	spool_committer_free(c);
}

/* The method set from outside (the master's choice, spool_fs.h) is used:
 * one call per round, or an fsync per file and one for incoming/. */
static void
test_group_set_sync(void **state)
{
	static const struct {
		enum spool_fs_sync sync;
		const char *name;
		bool per_file;
	} cases[] = {
	        {SPOOL_FS_SYNC_FS, "syncfs", false},
	        {SPOOL_FS_SYNC_FILES, "file_fsync", true},
	        {SPOOL_FS_SYNC_DIR, "dir_fsync", false},
	};
	struct fixture *fx = *state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spool_committer *c = spool_committer_new(fx->base, true, fx->pool);
		struct spool_commit_profile p;
		spool_committer_set_sync(c, cases[i].sync);
		run_commits(fx, c, 12, 0);
		assert_int_equal(fx->ok, 12);
		spool_committer_profile(c, &p);
		assert_string_equal(p.method, cases[i].name);
		assert_int_equal(p.syncs, p.rounds + (cases[i].per_file ? 12 : 0));
		spool_committer_free(c);
	}
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 36);
}

static void
test_group_bad_message_fails_alone(void **state)
{
	struct fixture *fx = *state;
	struct spool_committer *c = spool_committer_new(fx->base, true, fx->pool);

	run_commits(fx, c, 10, 3);
	assert_int_equal(fx->ok, 7);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 7);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	spool_committer_free(c);
}

static void
test_group_without_incoming_fails_whole(void **state)
{
	struct fixture *fx = *state;
	struct spool_committer *c = spool_committer_new(fx->base, true, fx->pool);

	rm_dir(fx->dir, "incoming");
	run_commits(fx, c, 5, 0);
	assert_int_equal(fx->ok, 0);
	/* spool_msg_free() took the tmp files back. */
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	struct spool_commit_profile p;
	spool_committer_profile(c, &p);
	assert_int_equal(p.syncs, 0);
	spool_committer_free(c);
}

static void
test_single_mode(void **state)
{
	struct fixture *fx = *state;
	struct spool_committer *c = spool_committer_new(fx->base, false, fx->pool);
	struct spool_commit_profile p;

	run_commits(fx, c, 6, 1);
	assert_int_equal(fx->ok, 5);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 5);
	spool_committer_profile(c, &p);
	assert_string_equal(p.method, "single");
	assert_int_equal(p.messages, 6);
	assert_int_equal(p.syncs, 12);
	spool_committer_free(c);
}

int
main(void)
{
	log_init(false, LOG_LEVEL_ERR, "test");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_group_one_sync_per_round, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_group_set_sync, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_group_bad_message_fails_alone, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_group_without_incoming_fails_whole, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_single_mode, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
