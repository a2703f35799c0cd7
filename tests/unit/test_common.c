/* SPDX-License-Identifier: ISC */
/*
 * test_common.c - lib/common's whole writes and reads and UTC dates: a write
 * larger than a pipe holds arrives whole, a read stops at its size or the
 * end of file, a bad descriptor fails with its errno,
 * and dates come out in UTC whatever TZ says, empty when they do not fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/common.h"

#define BIG (1024 * 1024)

struct reader {
	int fd;
	size_t got;
	bool intact;
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned char buf[4096];
	ssize_t n;
	r->intact = true;
	while ((n = read(r->fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != (unsigned char)((r->got + (size_t)i) % 251))
				r->intact = false;
		r->got += (size_t)n;
	}
	return NULL;
}

/* A pipe takes 64 KiB at a time: write_all() must go on after each
 * short write until all of it is through. */
static void
test_write_all_whole(void **state)
{
	int fds[2];
	struct reader r = {0};
	pthread_t t;
	unsigned char *data = malloc(BIG);
	assert_non_null(data);
	for (size_t i = 0; i < BIG; i++)
		data[i] = (unsigned char)(i % 251);
	assert_int_equal(pipe(fds), 0);
	r.fd = fds[0];
	assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
	assert_int_equal(write_all(fds[1], data, BIG), 0);
	close(fds[1]);
	pthread_join(t, NULL);
	close(fds[0]);
	assert_int_equal(r.got, BIG);
	assert_true(r.intact);
	assert_int_equal(write_all(-1, data, 0), 0); /* nothing to write */
	free(data);
}

static void
test_write_all_errors(void **state)
{
	int fds[2];
	errno = 0;
	assert_int_equal(write_all(-1, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	/* The reader is gone (SIGPIPE ignored, as every process does). */
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	signal(SIGPIPE, SIG_IGN);
	errno = 0;
	assert_int_equal(write_all(fds[1], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(fds[1]);
}

#define ISO "%Y-%m-%dT%H:%M:%SZ"
#define RFC5322 "%a, %d %b %Y %H:%M:%S +0000"

/* read_all() reads up to its size, stops at the end of file with what
 * there was, and fails with the errno. */
static void
test_read_all(void **state)
{
	char buf[16];
	int fds[2];

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], "abcd", 4), 4);
	assert_int_equal(write(fds[1], "efghij", 6), 6);
	assert_int_equal(read_all(fds[0], buf, 8), 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	close(fds[1]);
	assert_int_equal(read_all(fds[0], buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "ij", 2);
	assert_int_equal(read_all(fds[0], buf, sizeof(buf)), 0);
	close(fds[0]);
	errno = 0;
	assert_int_equal(read_all(-1, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EBADF);
}

static void
test_utc_strftime(void **state)
{
	static const struct {
		int64_t t;
		bool rfc5322;
		const char *want;
	} cases[] = {
	        {0, false, "1970-01-01T00:00:00Z"},
	        {1700000000, false, "2023-11-14T22:13:20Z"},
	        {1700000000, true, "Tue, 14 Nov 2023 22:13:20 +0000"},
	        {951782400, true, "Tue, 29 Feb 2000 00:00:00 +0000"},
	};
	char buf[64];

	/* UTC whatever the local zone. */
	setenv("TZ", "America/New_York", 1);
	tzset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].rfc5322)
			utc_strftime(cases[i].t, RFC5322, buf, sizeof(buf));
		else
			utc_strftime(cases[i].t, ISO, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
	/* Too small: empty, never a cut date. */
	char small[8] = "garbage";
	utc_strftime(1700000000, ISO, small, sizeof(small));
	assert_string_equal(small, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_write_all_whole),
	        cmocka_unit_test(test_write_all_errors),
	        cmocka_unit_test(test_read_all),
	        cmocka_unit_test(test_utc_strftime),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
