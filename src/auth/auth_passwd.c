/* SPDX-License-Identifier: ISC */
/*
 * auth_passwd.c - "authrelay passwd [-s scheme] [user]": make a users-file
 * line (see auth_file.c) for the admin to paste.
 *
 * On a terminal the password is read twice from /dev/tty with echo off, so
 * it never shows on screen nor in the shell history; otherwise (a pipe, a
 * script) one line is read from stdin. Reads go through read(2) into our own
 * buffers, which are wiped, instead of stdio's. If a signal interrupts the
 * prompt, the terminal gets its echo back before the process dies.
 */
#include "auth_passwd.h"
#include "../authwire/auth_proto.h"
#include "../lib/build_info.h"
#include "../lib/common.h"
#include "../lib/pwhash.h"
#include "../lib/secret_input.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static void
passwd_usage(FILE *to)
{
	fprintf(to, "usage: authrelay passwd [-s scheme] [user]\n"
	            "schemes: yescrypt (default), sha512-crypt, bcrypt, ssha512, argon2id\n");
}

/* The password into pw (pwsz bytes). 0, or -1 with a message printed. */
static int
passwd_get(char *pw, size_t pwsz)
{
	char again[AUTH_MAX_SECRET + 1];
	bool toolong = false;
	ssize_t n, n2;
	int fd, ret = -1;

	if (!isatty(STDIN_FILENO)) {
		n = secret_input_line(STDIN_FILENO, pw, pwsz, &toolong);
		goto check;
	}
	fd = secret_input_tty_open();
	if (fd < 0) {
		fprintf(stderr, "authrelay passwd: /dev/tty: %s\n", strerror(errno));
		return -1;
	}
	n = secret_input_prompt(fd, "Password: ", pw, pwsz, &toolong);
	if (n > 0) {
		n2 = secret_input_prompt(fd, "Retype password: ", again, sizeof(again), &toolong);
		if (n2 >= 0 && !ct_equal(pw, (size_t)n, again, (size_t)n2)) {
			fprintf(stderr, "authrelay passwd: the passwords differ\n");
			n = -2;
		} else if (n2 < 0) {
			n = -1;
		}
	}
	explicit_bzero(again, sizeof(again));
	secret_input_tty_close(fd);
check:
	if (toolong)
		fprintf(stderr, "authrelay passwd: password longer than %d bytes\n",
		        AUTH_MAX_SECRET);
	else if (n == 0)
		fprintf(stderr, "authrelay passwd: empty password\n");
	else if (n == -1)
		fprintf(stderr, "authrelay passwd: no password read\n");
	else if (n > 0)
		ret = 0;
	return ret;
}

int
auth_passwd_main(int argc, char **argv)
{
	const char *scheme = NULL, *user = NULL, *err = NULL;
	char pw[AUTH_MAX_SECRET + 1];
	char *hash;
	int i;

	/* By hand rather than getopt(): main() may have used getopt's state. */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			passwd_usage(stdout);
			return 0;
		}
		if (strcmp(a, "-s") == 0) {
			if (++i == argc) {
				passwd_usage(stderr);
				return EX_USAGE;
			}
			scheme = argv[i];
		} else if (strncmp(a, "-s", 2) == 0) {
			scheme = a + 2;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "authrelay passwd: unknown option %s\n", a);
			passwd_usage(stderr);
			return EX_USAGE;
		} else {
			break;
		}
	}
	if (i < argc)
		user = argv[i++];
	if (i < argc) {
		passwd_usage(stderr);
		return EX_USAGE;
	}
	if (user != NULL && (user[0] == '\0' || user[0] == '#' || strlen(user) > AUTH_MAX_LOGIN ||
	                     strpbrk(user, ": \t\r\n") != NULL)) {
		/* What auth_file.c would skip, or would not read back. */
		fprintf(stderr,
		        "authrelay passwd: user must be 1 to %d bytes, without ':' or "
		        "blanks, not starting with '#'\n",
		        AUTH_MAX_LOGIN);
		return EX_USAGE;
	}

	if (passwd_get(pw, sizeof(pw)) < 0) {
		explicit_bzero(pw, sizeof(pw));
		return 1;
	}
	hash = pwhash_make(pw, scheme, &err);
	explicit_bzero(pw, sizeof(pw));
	if (hash == NULL) {
		fprintf(stderr, "authrelay passwd: %s\n", err);
		return 1;
	}
	if (user != NULL)
		printf("%s:%s\n", user, hash);
	else
		printf("%s\n", hash);
	free(hash);
	return fflush(stdout) == 0 ? 0 : 1;
}
