/*
 * main.c - the authrelay command line: run the gateway, or one of its
 * sub-commands. Each sub-command lives in its module; this file only
 * dispatches.
 *
 *   authrelay [-f] -c FILE              run the gateway (-f: foreground)
 *   authrelay check-config -c FILE      validate a config, print file:line errors
 *   authrelay passwd [-s SCHEME] [USER] print a users-file line
 *   authrelay queue -c FILE list|show ID|flush|delete ID|hold ID|release ID
 *   authrelay test-auth -c FILE USER    try a login against the [ldap] directories
 *   authrelay test-query -c FILE USER   look a login up in the [ldap] directories
 *   authrelay version
 */
#include "auth/auth_passwd.h"
#include "auth/auth_test_cmd.h"
#include "master/master.h"
#include "queue/queue_cmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define AUTHRELAY_VERSION "0.1.0"

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: authrelay [-f] -c FILE\n"
	        "       authrelay check-config -c FILE\n"
	        "       authrelay passwd [-s yescrypt|sha512-crypt|bcrypt|ssha512|argon2id] "
	        "[USER]\n"
	        "       authrelay test-auth -c FILE [-m PLAIN|LOGIN|CRAM-MD5] USER\n"
	        "       authrelay test-query -c FILE USER\n"
	        "       authrelay queue -c FILE list|show ID|flush|delete ID|hold ID|release ID\n"
	        "       authrelay version\n");
}

/* Parse "-c FILE" (and "-f" when allowed) from argv. */
static int
parse_common(int argc, char **argv, bool allow_f, const char **config_r, bool *foreground_r)
{
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, allow_f ? "c:fh" : "c:h")) != -1) {
		switch (opt) {
		case 'c':
			*config_r = optarg;
			break;
		case 'f':
			*foreground_r = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc || *config_r == NULL) {
		usage(stderr);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *config = NULL;
	bool foreground = false;
	int r;

	if (argc >= 2 && strcmp(argv[1], "check-config") == 0) {
		r = parse_common(argc - 1, argv + 1, false, &config, &foreground);
		return r != 0 ? (r > 0 ? 0 : 2) : master_check_config(config);
	}
	if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
		return auth_passwd_main(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "test-auth") == 0 || strcmp(argv[1], "test-query") == 0))
		return auth_test_cmd_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "queue") == 0)
		return queue_cmd_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "version") == 0) {
		printf("authrelay %s\n", AUTHRELAY_VERSION);
		return 0;
	}
	r = parse_common(argc, argv, true, &config, &foreground);
	if (r != 0)
		return r > 0 ? 0 : 2;
	return master_main(config, foreground);
}
