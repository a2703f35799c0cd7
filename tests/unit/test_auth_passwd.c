/* SPDX-License-Identifier: ISC */
/*
 * test_auth_passwd.c - "authrelay passwd" in a child process: the password
 * from a pipe (one line) or from a pseudo-terminal (twice, no echo), the
 * output line read back and checked with pwhash_verify(), and every usage
 * error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "auth/auth_passwd.h"
#include "lib/pwhash.h"

struct run {
	int status;
	char out[4096];
	char err[4096];
};

static void
slurp(int fd, char *buf, size_t sz)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < sz && (r = read(fd, buf + n, sz - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
}

/* Run auth_passwd_main(argv) with input on a pipe as stdin. */
static void
run_pipe(char *const argv[], const char *input, size_t inlen, struct run *r)
{
	int in[2], out[2], err[2], st, argc = 0;
	pid_t pid;

	while (argv[argc] != NULL)
		argc++;
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(err), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(in[1]);
		close(out[0]);
		close(err[0]);
		exit(auth_passwd_main(argc, (char **)argv));
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	assert_int_equal(write(in[1], input, inlen), (ssize_t)inlen);
	close(in[1]);
	slurp(out[0], r->out, sizeof(r->out));
	slurp(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_from_pipe(void **state)
{
	static const struct {
		char *argv[6];
		const char *input;
		const char *prefix; /* of the output */
		const char *password;
	} rows[] = {
	        {{"passwd", "-s", "ssha512", "alice@example.org", NULL},
	         "correct horse\n",
	         "alice@example.org:{SSHA512}",
	         "correct horse"},
	        {{"passwd", "-sSSHA512", NULL}, "no newline", "{SSHA512}", "no newline"},
	        {{"passwd", "bob", NULL}, "pw\r\n", "bob:$y$", "pw"},
	        {{"passwd", "-s", "sha512-crypt", "--", "carol", NULL},
	         "x y z\nignored\n",
	         "carol:$6$",
	         "x y z"},
	        {{"passwd", "-s", "argon2id", NULL}, "p\xc3\xa4ss\n", "$argon2id$", "p\xc3\xa4ss"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct run r;
		char *nl, *hash;

		run_pipe(rows[i].argv, rows[i].input, strlen(rows[i].input), &r);
		print_message("  %s", r.out);
		assert_int_equal(r.status, 0);
		assert_memory_equal(r.out, rows[i].prefix, strlen(rows[i].prefix));
		nl = strchr(r.out, '\n');
		assert_non_null(nl);
		assert_string_equal(nl, "\n");
		*nl = '\0';
		hash = strchr(r.out, '$') == r.out || r.out[0] == '{' ? r.out
		                                                      : strchr(r.out, ':') + 1;
		assert_int_equal(pwhash_verify(rows[i].password, strlen(rows[i].password), hash),
		                 PWHASH_MATCH);
		assert_string_equal(r.err, "");
	}
}

static void
test_errors(void **state)
{
	static char toolong[1100];
	static const struct {
		char *argv[6];
		const char *input;
		int status;
		const char *err;
	} rows[] = {
	        {{"passwd", "-s", "des", NULL}, "pw\n", 1, "unknown scheme"},
	        {{"passwd", "-x", NULL}, "pw\n", EX_USAGE, "unknown option -x"},
	        {{"passwd", "-s", NULL}, "pw\n", EX_USAGE, "usage:"},
	        {{"passwd", "a", "b", NULL}, "pw\n", EX_USAGE, "usage:"},
	        {{"passwd", "a:b", NULL}, "pw\n", EX_USAGE, "without ':'"},
	        {{"passwd", "a b", NULL}, "pw\n", EX_USAGE, "without ':'"},
	        {{"passwd", "#x", NULL}, "pw\n", EX_USAGE, "not starting with '#'"},
	        {{"passwd", "", NULL}, "pw\n", EX_USAGE, "user must be"},
	        {{"passwd", "u", NULL}, "\n", 1, "empty password"},
	        {{"passwd", "u", NULL}, "", 1, "no password read"},
	        {{"passwd", "u", NULL}, toolong, 1, "longer than 1024"},
	};
	struct run r;
	char *help[] = {"passwd", "--help", NULL};

	memset(toolong, 'p', sizeof(toolong) - 2);
	toolong[sizeof(toolong) - 2] = '\n';
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		run_pipe(rows[i].argv, rows[i].input, strlen(rows[i].input), &r);
		print_message("  %d %s", r.status, r.err);
		assert_int_equal(r.status, rows[i].status);
		assert_non_null(strstr(r.err, rows[i].err));
		assert_string_equal(r.out, "");
	}
	/* Asked for, the usage goes to stdout. */
	run_pipe(help, "", 0, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage:"));
}

/* Read from the pty master until want shows up (or 10 s pass). */
static void
expect(int master, const char *want, char *seen, size_t seensz)
{
	size_t n = strlen(seen);

	while (strstr(seen, want) == NULL) {
		struct pollfd p = {master, POLLIN, 0};
		ssize_t r;
		assert_int_equal(poll(&p, 1, 10000), 1);
		r = read(master, seen + n, seensz - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		seen[n] = '\0';
	}
	assert_non_null(strstr(seen, want));
}

/* On a terminal: two prompts, no echo, and the two entries must agree. */
static void
run_tty(const char *first, const char *second, int want_status, char *seen, size_t seensz)
{
	char *argv[] = {"passwd", "-s", "ssha512", "tty-user", NULL};
	int master, st;
	pid_t pid = forkpty(&master, NULL, NULL, NULL);

	assert_true(pid >= 0);
	if (pid == 0)
		exit(auth_passwd_main(4, argv));
	seen[0] = '\0';
	expect(master, "Password: ", seen, seensz);
	assert_int_equal(write(master, first, strlen(first)), (ssize_t)strlen(first));
	expect(master, "Retype password: ", seen, seensz);
	assert_int_equal(write(master, second, strlen(second)), (ssize_t)strlen(second));
	expect(master, want_status == 0 ? "tty-user:{SSHA512}" : "differ", seen, seensz);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(master);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), want_status);
}

static void
test_tty(void **state)
{
	char seen[4096];
	char *line, *nl;

	run_tty("tty secret\n", "tty secret\n", 0, seen, sizeof(seen));
	/* No echo: the password never appears on the terminal. */
	assert_null(strstr(seen, "tty secret"));
	line = strstr(seen, "tty-user:");
	nl = strpbrk(line, "\r\n");
	if (nl != NULL)
		*nl = '\0';
	assert_int_equal(pwhash_verify("tty secret", 10, line + strlen("tty-user:")), PWHASH_MATCH);

	run_tty("one\n", "two\n", 1, seen, sizeof(seen));
	assert_null(strstr(seen, "one"));
	assert_null(strstr(seen, "two"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_from_pipe),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_tty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
