/* SPDX-License-Identifier: ISC */
/*
 * test_queue_journal.c - the delivery journal (queue_journal.h): the record
 * parser against torn and hostile input, segments preallocated and written
 * in place, group commit to durable with the loop told, replay after a
 * restart (sorted, without repeats), rotation and retirement (never of the
 * segment being written), records written at free, open's errors, and the
 * read-only reading of a stopped queue's journal.
 *
 * Each test works in a fresh spool directory under $TMPDIR (or /tmp).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/log.h"
#include "queue/queue_journal.h"
#include "support/ut_tmp.h"

#define ID1 "0123456789abcdef0123"
#define ID2 "fedcba98765432100000"

struct fixture {
	char dir[256];
	char jdir[300];
	struct event_base *base;
	unsigned synced;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	ut_tmp_dir(fx->dir, sizeof(fx->dir), "test_queue_journal.");
	snprintf(fx->jdir, sizeof(fx->jdir), "%s/journal", fx->dir);
	fx->base = event_base_new();
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	ut_tmp_remove(fx->dir);
	event_base_free(fx->base);
	free(fx);
	return 0;
}

/* ---- the parser ---- */

struct seen {
	char ids[16][32];
	size_t idx[16];
	size_t n;
};

static void
collect(const char *id, size_t index, void *arg)
{
	struct seen *s = arg;
	assert_true(s->n < 16);
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", id);
	s->idx[s->n++] = index;
}

static void
test_parse_table(void **state)
{
	static const struct {
		const char *text;
		size_t len; /* 0: strlen */
		size_t records;
		size_t first_index;
	} cases[] = {
	        {"sent " ID1 " 0\n", 0, 1, 0},
	        {"sent " ID1 " 0\nsent " ID2 " 17\n", 0, 2, 0},
	        /* A torn last record: no '\n'. */
	        {"sent " ID1 " 3\nsent " ID2 " 1", 0, 1, 3},
	        {"sent " ID1 " 3", 0, 0, 0},
	        /* The zeros of the segment end it, even if bytes follow. */
	        {"sent " ID1 " 4\n\0sent " ID2 " 1\n", 40, 1, 4},
	        {"\0sent " ID1 " 4\n", 27, 0, 0},
	        /* Malformed lines are skipped, the next one still counts. */
	        {"sent " ID1 "\nsent " ID2 " 2\n", 0, 1, 2},
	        {"sent 0123 1\nsent " ID1 " 5\n", 0, 1, 5},
	        {"SENT " ID1 " 1\n", 0, 0, 0},
	        {"sent " ID1 "  1\n", 0, 0, 0},
	        {"sent " ID1 " 1 \n", 0, 0, 0},
	        {"sent " ID1 " -1\n", 0, 0, 0},
	        {"sent " ID1 " x\n", 0, 0, 0},
	        {"sent 0123456789ABCDEF0123 1\n", 0, 0, 0},
	        {"sent " ID1 "0 1\n", 0, 0, 0},
	        {"sent " ID1 " 1234567890\n", 0, 0, 0},
	        {"sent " ID1 " 123456789\n", 0, 1, 123456789},
	        {"\n\n\nsent " ID1 " 8\n", 0, 1, 8},
	        {"", 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct seen s = {0};
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		size_t n = queue_journal_parse(cases[i].text, len, collect, &s);
		if (n != cases[i].records || s.n != n)
			fail_msg("case %zu: %zu records, expected %zu", i, n, cases[i].records);
		if (n > 0 && s.idx[0] != cases[i].first_index)
			fail_msg("case %zu: index %zu, expected %zu", i, s.idx[0],
			         cases[i].first_index);
	}
}

/* ---- on disk ---- */

static void
synced_cb(void *arg)
{
	struct fixture *fx = arg;
	fx->synced++;
	event_base_loopbreak(fx->base);
}

/* Run the loop until every record appended is durable. */
static void
wait_durable(struct fixture *fx, struct queue_journal *j)
{
	while (queue_journal_durable(j) < queue_journal_appended(j))
		event_base_dispatch(fx->base);
}

static char *
segment_bytes(struct fixture *fx, uint64_t n, size_t *len_r)
{
	char p[600];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%016llx", fx->jdir, (unsigned long long)n);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return NULL;
	assert_int_equal(fstat(fd, &st), 0);
	char *buf = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len_r = (size_t)st.st_size;
	return buf;
}

static struct queue_journal *
open_journal(struct fixture *fx)
{
	const char *err = NULL;
	struct queue_journal *j = queue_journal_open(fx->base, fx->dir, synced_cb, fx, &err);
	if (j == NULL)
		fail_msg("queue_journal_open: %s", err);
	return j;
}

static void
test_append_sync_replay(void **state)
{
	struct fixture *fx = *state;
	struct queue_journal *j = open_journal(fx);
	size_t len, recs, segs;
	const size_t *idx;

	/* An empty directory: nothing replayed, segment 1 made. */
	queue_journal_replay_counts(j, &recs, &segs);
	assert_int_equal(recs, 0);
	assert_int_equal(segs, 0);
	assert_int_equal(queue_journal_segment(j), 1);
	char *b = segment_bytes(fx, 1, &len);
	assert_non_null(b);
	/* Preallocated: written in place, never grown by a record. */
	assert_int_equal(len, 1024 * 1024);
	assert_int_equal(b[0], 0);
	free(b);

	assert_int_equal(queue_journal_sent(j, ID2, 3), 1);
	assert_int_equal(queue_journal_sent(j, ID1, 1), 2);
	assert_int_equal(queue_journal_sent(j, ID2, 0), 3);
	assert_int_equal(queue_journal_appended(j), 3);
	wait_durable(fx, j);
	assert_true(fx->synced >= 1);
	assert_int_equal(queue_journal_durable(j), 3);
	assert_int_equal(queue_journal_errors(j), 0);
	b = segment_bytes(fx, 1, &len);
	assert_int_equal(len, 1024 * 1024);
	const char *want = "sent " ID2 " 3\nsent " ID1 " 1\nsent " ID2 " 0\n";
	assert_memory_equal(b, want, strlen(want));
	assert_int_equal(b[strlen(want)], 0);
	free(b);
	/* The same fact twice (a checkpoint appends it again). */
	queue_journal_sent(j, ID1, 1);
	wait_durable(fx, j);
	queue_journal_free(j);

	/* A restart replays both segments' records, sorted, each once. */
	j = open_journal(fx);
	queue_journal_replay_counts(j, &recs, &segs);
	assert_int_equal(recs, 3);
	assert_int_equal(segs, 1);
	assert_int_equal(queue_journal_segment(j), 2);
	assert_int_equal(queue_journal_replayed(j, ID2, &idx), 2);
	assert_int_equal(idx[0], 0);
	assert_int_equal(idx[1], 3);
	assert_int_equal(queue_journal_replayed(j, ID1, &idx), 1);
	assert_int_equal(idx[0], 1);
	assert_int_equal(queue_journal_replayed(j, "00000000000000000000", &idx), 0);
	assert_null(idx);
	queue_journal_replay_done(j);
	assert_int_equal(queue_journal_replayed(j, ID2, &idx), 0);
	queue_journal_free(j);
}

/* The names in journal/, sorted, joined by spaces. */
static void
dir_names(struct fixture *fx, char *buf, size_t size)
{
	struct dirent **names;
	int n = scandir(fx->jdir, &names, NULL, alphasort);
	buf[0] = '\0';
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			strncat(buf, names[i]->d_name, size - strlen(buf) - 1);
			strncat(buf, " ", size - strlen(buf) - 1);
		}
		free(names[i]);
	}
	free(names);
}

/* queue_journal_read(): what `queue list` of a stopped gateway sees. It
 * reads every segment and changes nothing (no directory made, no segment
 * created or retired); while a queue holds the lock it is busy, and while
 * it reads, a queue could not take the lock. */
static void
test_read_only(void **state)
{
	struct fixture *fx = *state;
	const char *err = NULL;
	const size_t *idx;
	size_t recs, segs;
	char names[256], after[256];
	bool busy = true;

	/* No journal/ yet: empty, and not made. */
	struct queue_journal *r = queue_journal_read(fx->dir, &busy, &err);
	assert_non_null(r);
	assert_false(busy);
	queue_journal_replay_counts(r, &recs, &segs);
	assert_int_equal(recs, 0);
	assert_int_equal(queue_journal_replayed(r, ID1, &idx), 0);
	queue_journal_free(r);
	assert_int_equal(access(fx->jdir, F_OK), -1);

	struct queue_journal *j = open_journal(fx);
	queue_journal_sent(j, ID1, 2);
	queue_journal_sent(j, ID1, 0);
	wait_durable(fx, j);
	/* The queue runs: busy, nothing read. */
	assert_null(queue_journal_read(fx->dir, &busy, &err));
	assert_true(busy);
	assert_non_null(strstr(err, "locked"));
	queue_journal_free(j); /* a kill -9 would leave the same files */

	dir_names(fx, names, sizeof(names));
	r = queue_journal_read(fx->dir, &busy, &err);
	assert_non_null(r);
	assert_false(busy);
	queue_journal_replay_counts(r, &recs, &segs);
	assert_int_equal(recs, 2);
	assert_int_equal(segs, 1);
	assert_int_equal(queue_journal_replayed(r, ID1, &idx), 2);
	assert_int_equal(idx[0], 0);
	assert_int_equal(idx[1], 2);
	/* Held while reading: a queue starting now would wait. */
	int fd = open(fx->jdir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	/* Two readers at once are fine. */
	struct queue_journal *r2 = queue_journal_read(fx->dir, &busy, &err);
	assert_non_null(r2);
	queue_journal_free(r2);
	queue_journal_free(r);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	close(fd);
	dir_names(fx, after, sizeof(after));
	assert_string_equal(names, after);
	assert_string_equal(names, "0000000000000001 ");

	/* A symlink planted as journal/: an error, not busy, not followed. */
	char seg[600];
	snprintf(seg, sizeof(seg), "%s/0000000000000001", fx->jdir);
	assert_int_equal(unlink(seg), 0);
	assert_int_equal(rmdir(fx->jdir), 0);
	assert_int_equal(symlink(fx->dir, fx->jdir), 0);
	assert_null(queue_journal_read(fx->dir, &busy, &err));
	assert_false(busy);
	assert_non_null(strstr(err, "open"));
	unlink(fx->jdir);
}

static void
test_rotate_retire(void **state)
{
	struct fixture *fx = *state;
	struct queue_journal *j = open_journal(fx);
	size_t len;

	assert_false(queue_journal_wants_rotation(j));
	queue_journal_sent(j, ID1, 0);
	assert_int_equal(queue_journal_rotate(j), 2);
	queue_journal_sent(j, ID1, 1);
	wait_durable(fx, j);
	assert_int_equal(ut_tmp_count(fx->jdir, NULL), 2);
	char *b = segment_bytes(fx, 1, &len);
	assert_memory_equal(b, "sent " ID1 " 0\n\0", 28);
	free(b);
	b = segment_bytes(fx, 2, &len);
	assert_memory_equal(b, "sent " ID1 " 1\n\0", 28);
	free(b);

	/* Retiring below a segment never written to keeps the current one. */
	queue_journal_retire(j, 100);
	queue_journal_sent(j, ID1, 2); /* a round trip through the thread */
	wait_durable(fx, j);
	assert_int_equal(ut_tmp_count(fx->jdir, NULL), 1);
	assert_non_null(b = segment_bytes(fx, 2, &len));
	free(b);

	/* Half a segment of records asks for a checkpoint. */
	while (!queue_journal_wants_rotation(j))
		queue_journal_sent(j, ID2, 7);
	assert_int_equal(queue_journal_rotate(j), 3);
	assert_false(queue_journal_wants_rotation(j));
	wait_durable(fx, j);
	queue_journal_retire(j, 3);
	queue_journal_sent(j, ID1, 3);
	wait_durable(fx, j);
	assert_int_equal(ut_tmp_count(fx->jdir, NULL), 1);
	queue_journal_free(j);
}

static void
test_free_writes_pending(void **state)
{
	struct fixture *fx = *state;
	struct queue_journal *j = open_journal(fx);
	const size_t *idx;

	queue_journal_sent(j, ID1, 9);
	queue_journal_free(j); /* without waiting */
	j = open_journal(fx);
	assert_int_equal(queue_journal_replayed(j, ID1, &idx), 1);
	assert_int_equal(idx[0], 9);
	queue_journal_free(j);
}

/* A segment that is a symlink, or has a second link, is not read. */
static void
test_planted_segments_not_read(void **state)
{
	struct fixture *fx = *state;
	const size_t *idx;
	char p[600], target[600], link2[600];

	assert_int_equal(mkdir(fx->jdir, 0700), 0);
	snprintf(target, sizeof(target), "%s/outside", fx->dir);
	FILE *f = fopen(target, "w");
	fputs("sent " ID1 " 1\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/0000000000000001", fx->jdir);
	assert_int_equal(symlink(target, p), 0);
	snprintf(p, sizeof(p), "%s/0000000000000002", fx->jdir);
	assert_int_equal(link(target, p), 0);
	snprintf(link2, sizeof(link2), "%s", p);
	struct queue_journal *j = open_journal(fx);
	assert_int_equal(queue_journal_replayed(j, ID1, &idx), 0);
	assert_int_equal(queue_journal_segment(j), 3);
	queue_journal_free(j);
	unlink(target);
	unlink(link2);
	snprintf(p, sizeof(p), "%s/0000000000000001", fx->jdir);
	unlink(p);
}

static void
test_foreign_files_and_torn_segment(void **state)
{
	struct fixture *fx = *state;
	const size_t *idx;
	char p[600];

	assert_int_equal(mkdir(fx->jdir, 0700), 0);
	/* Not segment names: ignored. */
	snprintf(p, sizeof(p), "%s/README", fx->jdir);
	FILE *f = fopen(p, "w");
	fputs("sent " ID1 " 1\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/00000000000000zz", fx->jdir);
	f = fopen(p, "w");
	fputs("sent " ID1 " 2\n", f);
	fclose(f);
	/* A segment cut by a crash in the middle of a record. */
	snprintf(p, sizeof(p), "%s/0000000000000007", fx->jdir);
	f = fopen(p, "w");
	fputs("sent " ID1 " 3\nsent " ID2 " 4", f);
	fclose(f);
	struct queue_journal *j = open_journal(fx);
	assert_int_equal(queue_journal_replayed(j, ID1, &idx), 1);
	assert_int_equal(idx[0], 3);
	assert_int_equal(queue_journal_replayed(j, ID2, &idx), 0);
	/* After the highest segment found. */
	assert_int_equal(queue_journal_segment(j), 8);
	queue_journal_free(j);
	snprintf(p, sizeof(p), "%s/README", fx->jdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/00000000000000zz", fx->jdir);
	unlink(p);
}

static void
test_open_errors(void **state)
{
	struct fixture *fx = *state;
	const char *err = NULL;
	char p[600];

	/* The spool is a file: no journal directory can be made. */
	snprintf(p, sizeof(p), "%s/file", fx->dir);
	FILE *f = fopen(p, "w");
	fclose(f);
	assert_null(queue_journal_open(fx->base, p, synced_cb, fx, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "mkdir"));
	unlink(p);
	/* journal/ is a symlink (planted): refused, not followed. */
	char target[600];
	snprintf(target, sizeof(target), "%s/elsewhere", fx->dir);
	assert_int_equal(mkdir(target, 0700), 0);
	assert_int_equal(symlink(target, fx->jdir), 0);
	err = NULL;
	assert_null(queue_journal_open(fx->base, fx->dir, synced_cb, fx, &err));
	assert_non_null(err);
	unlink(fx->jdir);
	rmdir(target);
	/* A journal directory we may not write in (root may anyway). */
	if (geteuid() != 0) {
		assert_int_equal(mkdir(fx->jdir, 0500), 0);
		err = NULL;
		assert_null(queue_journal_open(fx->base, fx->dir, synced_cb, fx, &err));
		assert_non_null(err);
		chmod(fx->jdir, 0700);
	}
}

int
main(void)
{
	log_init(false, LOG_LEVEL_ERR, "test");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_table),
	        cmocka_unit_test_setup_teardown(test_append_sync_replay, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rotate_retire, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_free_writes_pending, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_foreign_files_and_torn_segment, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_planted_segments_not_read, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
