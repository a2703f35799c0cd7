/* SPDX-License-Identifier: ISC */
/*
 * test_metrics.c - the shared counter storage (lib/metrics.h): counts from
 * several processes add up exactly, a slot given back keeps its counters
 * and loses its gauges, interned names (found again, cut, hostile bytes,
 * "(other)" when full), histograms, up families, sparse families, both
 * exposition formats, the read-only reader, and the programming errors
 * that are fatal.
 *
 * The table is a small one of its own; the gateway's (metric.c) has its
 * own test.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "lib/common.h"
#include "lib/metrics.h"

static const char *const kind_names[] = {"a", "b", "c"};
static const char *
kind_value(unsigned i)
{
	return kind_names[i];
}
static const char *
ver_value(unsigned i)
{
	return "1.2.3";
}

static const struct metrics_dim dim_kind = {.label = "kind", .size = 3, .value = kind_value};
static const struct metrics_dim dim_ver = {.label = "version", .size = 1, .value = ver_value};
/* Room for 2 names and "(other)". */
static const struct metrics_dim dim_name = {.label = "name", .size = 3};
static const uint64_t bounds[] = {1000, 5000};

enum { F_EVENTS, F_OPEN, F_LAT, F_UP, F_INFO, F_SPARSE, F_PLAIN, F_N };

static const struct metrics_family fams[F_N] = {
        [F_EVENTS] = {"t_events", "Events by kind.", METRICS_COUNTER, {&dim_kind}, 1},
        [F_OPEN] = {"t_open", "Open things by name.", METRICS_GAUGE, {&dim_name}, 1},
        [F_LAT] = {"t_latency_seconds",
                   "Latency.",
                   METRICS_HISTOGRAM,
                   {&dim_kind},
                   1,
                   .bounds = bounds,
                   .n_bounds = 2,
                   .decimals = 3},
        [F_UP] = {"t_up", "Up by name.", METRICS_UP, {&dim_name}, 1},
        [F_INFO] = {"t_build", "Build.", METRICS_INFO, {&dim_ver}, 1},
        [F_SPARSE] =
                {"t_sparse", "Only what counts.", METRICS_COUNTER, {&dim_kind}, 1, .sparse = true},
        [F_PLAIN] = {"t_plain", "No label, a \\ and\na newline.", METRICS_GAUGE},
};

static char *
render(struct metrics *m, enum metrics_format fmt)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	metrics_render(m, fmt, b);
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static void
assert_has(const char *text, const char *line)
{
	if (strstr(text, line) == NULL)
		fail_msg("missing \"%s\" in:\n%s", line, text);
}

static void
assert_lacks(const char *text, const char *part)
{
	if (strstr(text, part) != NULL)
		fail_msg("unexpected \"%s\" in:\n%s", part, text);
}

static int
wait_status(pid_t pid)
{
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

/* Processes each in a slot of their own, and the master, count at once:
 * the sum is exact. */
static void
test_exact_across_processes(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 8);
	enum { PROCS = 4, EACH = 20000 };
	pid_t pids[PROCS];

	for (int p = 0; p < PROCS; p++) {
		unsigned slot = metrics_slot_claim(m);
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			metrics_attach(m, slot);
			for (int i = 0; i < EACH; i++) {
				metrics_inc(F_EVENTS, 1);
				metrics_observe(F_LAT, 2000, 0);
			}
			_exit(0);
		}
	}
	for (int i = 0; i < EACH; i++)
		metrics_inc(F_EVENTS, 1);
	for (int p = 0; p < PROCS; p++)
		assert_int_equal(wait_status(pids[p]), 0);
	unsigned b = 1, a = 0;
	assert_int_equal(metrics_read(m, F_EVENTS, &b, 1), (PROCS + 1) * EACH);
	assert_int_equal(metrics_read(m, F_LAT, &a, 1), PROCS * EACH);
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "t_events_total{kind=\"b\"} 100000\n");
	assert_has(t, "t_latency_seconds_bucket{kind=\"a\",le=\"5.0\"} 80000\n");
	free(t);
	metrics_free(m);
}

/* All slots taken: children share one, and still count exactly. */
static void
test_shared_slot(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 3);
	unsigned s1 = metrics_slot_claim(m), s2 = metrics_slot_claim(m);
	unsigned k = 0;

	assert_int_not_equal(s1, METRICS_SLOT_MASTER);
	assert_int_equal(s2, 1); /* the shared one */
	unsigned s3 = metrics_slot_claim(m);
	assert_int_equal(s3, 1);
	pid_t a = fork();
	if (a == 0) {
		metrics_attach(m, s2);
		for (int i = 0; i < 10000; i++)
			metrics_inc(F_EVENTS, 0);
		_exit(0);
	}
	pid_t b = fork();
	if (b == 0) {
		metrics_attach(m, s3);
		for (int i = 0; i < 10000; i++)
			metrics_inc(F_EVENTS, 0);
		_exit(0);
	}
	assert_int_equal(wait_status(a), 0);
	assert_int_equal(wait_status(b), 0);
	assert_int_equal(metrics_read(m, F_EVENTS, &k, 1), 20000);
	metrics_free(m);
}

/* A dead child's slot: its counters stay (the next owner goes on), its
 * gauges and up times go. */
static void
test_release(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned slot = metrics_slot_claim(m), k = 2, n;
	pid_t pid = fork();

	if (pid == 0) {
		metrics_attach(m, slot);
		metrics_add(F_EVENTS, 5, 2);
		metrics_inc(F_OPEN, metrics_intern(&dim_name, "x"));
		metrics_set(F_UP, metrics_now_ms() + 3600000, metrics_intern(&dim_name, "x"));
		metrics_observe(F_LAT, 10, 2);
		_exit(0);
	}
	assert_int_equal(wait_status(pid), 0);
	n = metrics_intern(&dim_name, "x");
	assert_int_equal(n, 0);
	assert_int_equal(metrics_read(m, F_OPEN, &n, 1), 1);
	assert_int_equal(metrics_read(m, F_UP, &n, 1), 0);
	metrics_slot_release(m, slot);
	assert_int_equal(metrics_read(m, F_OPEN, &n, 1), 0);
	assert_int_equal(metrics_read(m, F_UP, &n, 1), 1);
	assert_int_equal(metrics_read(m, F_EVENTS, &k, 1), 5);
	assert_int_equal(metrics_read(m, F_LAT, &k, 1), 1);
	/* The next child gets the same slot and adds on. */
	assert_int_equal(metrics_slot_claim(m), slot);
	metrics_free(m);
}

/* Gauges go up and down; their sum over processes is signed. */
static void
test_gauge(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned n = metrics_intern(&dim_name, "g");

	metrics_inc(F_OPEN, n);
	metrics_inc(F_OPEN, n);
	metrics_dec(F_OPEN, n);
	metrics_set(F_PLAIN, -7);
	assert_int_equal(metrics_read(m, F_OPEN, &n, 1), 1);
	assert_int_equal(metrics_read(m, F_PLAIN, NULL, 0), -7);
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "t_open{name=\"g\"} 1\n");
	assert_has(t, "t_plain -7\n");
	free(t);
	metrics_free(m);
}

/* Names: found again, cut at METRICS_NAME_MAX, shown escaped and printable;
 * past the room, "(other)", shown once something counts there. */
static void
test_intern(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	char longname[200];

	memset(longname, 'n', sizeof(longname));
	longname[sizeof(longname) - 1] = '\0';
	unsigned a = metrics_intern(&dim_name, "q\"u\\o\nte");
	unsigned b = metrics_intern(&dim_name, longname);
	unsigned c = metrics_intern(&dim_name, "third");
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(c, 2); /* "(other)" */
	assert_int_equal(metrics_intern(&dim_name, "q\"u\\o\nte"), 0);
	assert_int_equal(metrics_intern(&dim_name, longname), 1);
	metrics_inc(F_OPEN, a);
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "t_open{name=\"q\\\"u\\\\o?te\"} 1\n");
	char want[128];
	snprintf(want, sizeof(want), "t_open{name=\"%.*s\"} 0\n", METRICS_NAME_MAX, longname);
	assert_has(t, want);
	assert_lacks(t, "(other)");
	free(t);
	metrics_inc(F_OPEN, c);
	t = render(m, METRICS_TEXT);
	assert_has(t, "t_open{name=\"(other)\"} 1\n");
	free(t);
	/* A static dim by name. */
	assert_int_equal(metrics_value_index(&dim_kind, "c", 9), 2);
	assert_int_equal(metrics_value_index(&dim_kind, "zz", 9), 9);
	assert_int_equal(metrics_value_index(&dim_kind, NULL, 9), 9);
	metrics_free(m);
}

static void
test_histogram(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);

	metrics_observe(F_LAT, 500, 1);
	metrics_observe(F_LAT, 1000, 1); /* le: on the bound counts in it */
	metrics_observe(F_LAT, 3000, 1);
	metrics_observe(F_LAT, 9000, 1);
	metrics_observe(F_LAT, -5, 1); /* below zero: as zero */
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "# TYPE t_latency_seconds histogram\n");
	assert_has(t, "t_latency_seconds_bucket{kind=\"b\",le=\"1.0\"} 3\n");
	assert_has(t, "t_latency_seconds_bucket{kind=\"b\",le=\"5.0\"} 4\n");
	assert_has(t, "t_latency_seconds_bucket{kind=\"b\",le=\"+Inf\"} 5\n");
	assert_has(t, "t_latency_seconds_sum{kind=\"b\"} 13.5\n");
	assert_has(t, "t_latency_seconds_count{kind=\"b\"} 5\n");
	/* Not sparse: the other kinds show with 0. */
	assert_has(t, "t_latency_seconds_count{kind=\"a\"} 0\n");
	free(t);
	metrics_free(m);
}

static void
test_up(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned x = metrics_intern(&dim_name, "x"), y = metrics_intern(&dim_name, "y");

	metrics_set(F_UP, metrics_now_ms() + 60000, x);
	metrics_set(F_UP, 0, y);
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "# TYPE t_up gauge\n");
	assert_has(t, "t_up{name=\"x\"} 0\n");
	assert_has(t, "t_up{name=\"y\"} 1\n");
	free(t);
	/* A time already past: up again, without anybody saying so. */
	metrics_set(F_UP, metrics_now_ms() - 1, x);
	assert_int_equal(metrics_read(m, F_UP, &x, 1), 1);
	metrics_free(m);
}

static void
test_formats(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);

	metrics_inc(F_SPARSE, 2);
	char *t = render(m, METRICS_TEXT);
	assert_has(t, "# HELP t_events_total Events by kind.\n# TYPE t_events_total counter\n");
	assert_has(t, "t_events_total{kind=\"a\"} 0\n");
	assert_has(t, "# TYPE t_build_info gauge\nt_build_info{version=\"1.2.3\"} 1\n");
	assert_has(t, "t_sparse_total{kind=\"c\"} 1\n");
	assert_lacks(t, "t_sparse_total{kind=\"a\"}");
	assert_has(t, "# HELP t_plain No label, a \\\\ and\\na newline.\n");
	assert_lacks(t, "# EOF");
	/* No interned name yet: the family has no sample at all. */
	assert_lacks(t, "t_open{");
	free(t);
	t = render(m, METRICS_OPENMETRICS);
	assert_has(t, "# TYPE t_events counter\n");
	assert_has(t, "t_events_total{kind=\"a\"} 0\n");
	assert_has(t, "# TYPE t_build info\nt_build_info{version=\"1.2.3\"} 1\n");
	size_t n = strlen(t);
	assert_true(n > 6);
	assert_string_equal(t + n - 6, "# EOF\n");
	free(t);
	assert_non_null(strstr(metrics_content_type(METRICS_OPENMETRICS), "openmetrics-text"));
	assert_non_null(strstr(metrics_content_type(METRICS_TEXT), "version=0.0.4"));
	metrics_free(m);
}

/* Without metrics_attach() (metrics off, tools, other modules' tests)
 * every call does nothing. */
static void
test_detached(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned k = 0;

	metrics_free(m);
	assert_false(metrics_enabled());
	metrics_inc(F_EVENTS, 0);
	metrics_inc(F_EVENTS, 99, 99, 99); /* even a wrong call: never looked at */
	assert_int_equal(metrics_intern(&dim_name, "x"), 0);
	m = metrics_new(fams, F_N, 4);
	assert_true(metrics_enabled());
	assert_int_equal(metrics_read(m, F_EVENTS, &k, 1), 0);
	metrics_free(m);
}

/* A label out of range is dropped (with a warning), not counted elsewhere;
 * out-of-range reads are 0. */
static void
test_out_of_range(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned k = 3;

	metrics_inc(F_EVENTS, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(metrics_read(m, F_EVENTS, &i, 1), 0);
	assert_int_equal(metrics_read(m, F_EVENTS, &k, 1), 0);
	assert_int_equal(metrics_read(m, F_N, &k, 1), 0);
	assert_int_equal(metrics_read(m, F_EVENTS, NULL, 0), 0);
	metrics_free(m);
}

/* Calls that do not fit the family are bugs: fatal, in a child here. */
static void
test_fatal_misuse(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	static const int cases = 4;

	for (int c = 0; c < cases; c++) {
		pid_t pid = fork();
		if (pid == 0) {
			fclose(stderr);
			if (c == 0)
				metrics_inc(F_EVENTS); /* a label missing */
			else if (c == 1)
				metrics_inc(F_EVENTS, 0, 0); /* one too many */
			else if (c == 2)
				metrics_observe(F_EVENTS, 1, 0); /* a counter observed */
			else
				metrics_intern(&dim_kind, "x"); /* a static dim */
			_exit(0);
		}
		int st = wait_status(pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 1);
	}
	metrics_free(m);
}

/* The reader's mapping is read-only: a write there kills it. */
static void
test_readonly(void **state)
{
	struct metrics *m = metrics_new(fams, F_N, 4);
	unsigned slot = metrics_slot_claim(m);
	pid_t pid = fork();

	if (pid == 0) {
		/* cmocka catches SIGSEGV to report a test: not in this child. */
		signal(SIGSEGV, SIG_DFL);
		if (metrics_readonly(m) != 0 || metrics_enabled())
			_exit(2);
		metrics_attach(m, slot);
		metrics_inc(F_EVENTS, 0);
		_exit(0);
	}
	int st = wait_status(pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	metrics_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_exact_across_processes),
	        cmocka_unit_test(test_shared_slot),
	        cmocka_unit_test(test_release),
	        cmocka_unit_test(test_gauge),
	        cmocka_unit_test(test_intern),
	        cmocka_unit_test(test_histogram),
	        cmocka_unit_test(test_up),
	        cmocka_unit_test(test_formats),
	        cmocka_unit_test(test_detached),
	        cmocka_unit_test(test_out_of_range),
	        cmocka_unit_test(test_fatal_misuse),
	        cmocka_unit_test(test_readonly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
