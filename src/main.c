/* SPDX-License-Identifier: ISC */
/*
 * main.c - the authrelay command line: run the gateway, or one of its
 * sub-commands. Each sub-command lives in its module; this file only
 * dispatches (the manual is authrelay(8)).
 *
 *   authrelay [-f] [-c FILE]             run the gateway (-f: foreground)
 *   authrelay check-config [-c FILE]     validate a config, print file:line errors
 *   authrelay show-config [-n] [-c FILE] the effective config (-n: only what differs
 *                                        from the defaults); --reference=mdoc|markdown
 *   authrelay passwd [-s SCHEME] [USER]  print a users-file line
 *   authrelay status|lockouts [-c FILE] [--json]  the running gateway (root only)
 *   authrelay unlock [-c FILE] LOGIN|ADDRESS      end a lockout
 *   authrelay reload|stop [-c FILE]               as SIGHUP, SIGTERM
 *   authrelay queue [-c FILE] [--json] list|summary|show ID
 *   authrelay queue [-c FILE] delete|hold|release|flush ID...|ALL|-s|-r|-d ARG
 *   authrelay test-auth [-c FILE] USER   try a login against every auth source
 *   authrelay test-query [-c FILE] USER  look a login up in the [ldap] directories
 *   authrelay help [COMMAND]             the usage of all commands, or of one
 *   authrelay version                    also --version
 *
 * -c defaults to AUTHRELAY_CONFIG_FILE (/etc/authrelay/authrelay.conf);
 * exit statuses are listed in lib/build_info.h.
 */
#include "auth/auth_passwd.h"
#include "auth/auth_test_cmd.h"
#include "lib/build_info.h"
#include "lib/common.h"
#include "master/control_cmd.h"
#include "master/master.h"
#include "master/settings_registry.h"
#include "master/show_config.h"
#include "queue/queue_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int check_config_main(int argc, char **argv);

/* The sub-commands. Each main() takes its name as argv[0] and answers -h
 * with its usage on stdout and exit status 0 (`authrelay help NAME`). */
static const struct command {
	const char *name;
	int (*main)(int argc, char **argv);
} commands[] = {
        {"check-config", check_config_main}, {"passwd", auth_passwd_main},
        {"queue", queue_cmd_main},           {"show-config", show_config_main},
        {"test-auth", auth_test_cmd_main},   {"test-query", auth_test_cmd_main},
        {"status", control_cmd_main},        {"lockouts", control_cmd_main},
        {"unlock", control_cmd_main},        {"reload", control_cmd_main},
        {"stop", control_cmd_main},
};

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: authrelay [-f] [-c FILE]\n"
	        "       authrelay check-config [-c FILE]\n"
	        "       authrelay show-config [-n] [-c FILE]\n"
	        "       authrelay show-config --reference=mdoc|markdown\n"
	        "       authrelay passwd [-s yescrypt|sha512-crypt|bcrypt|ssha512|argon2id] "
	        "[USER]\n"
	        "       authrelay test-auth [-c FILE] [-m PLAIN|LOGIN|CRAM-MD5] USER\n"
	        "       authrelay test-query [-c FILE] USER\n"
	        "       authrelay status [-c FILE] [--json]\n"
	        "       authrelay lockouts [-c FILE] [--json]\n"
	        "       authrelay unlock [-c FILE] LOGIN|ADDRESS\n"
	        "       authrelay reload [-c FILE]\n"
	        "       authrelay stop [-c FILE]\n"
	        "       authrelay queue [-c FILE] [--json] list|summary|show ID\n"
	        "       authrelay queue [-c FILE] delete|hold|release|flush "
	        "ID...|ALL|-s SENDER|-r RCPT|-d DOMAIN\n"
	        "       authrelay help [COMMAND]\n"
	        "       authrelay version\n"
	        "FILE defaults to %s; see authrelay(8).\n",
	        AUTHRELAY_CONFIG_FILE);
}

static int
version(void)
{
	printf("authrelay %s\n", AUTHRELAY_VERSION);
	return 0;
}

/* Options of the gateway itself and of check-config: "-c FILE", "-f" when
 * allow_f. Returns -1 to go on, else the exit status (after --help, or a
 * usage error). */
static int
parse_common(int argc, char **argv, bool allow_f, const char **config_r, bool *foreground_r)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"foreground", no_argument, NULL, 'f'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {NULL, 0, NULL, 0},
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, allow_f ? "c:fhV" : "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			*config_r = optarg;
			break;
		case 'f':
			if (!allow_f)
				goto bad;
			*foreground_r = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			return version();
		default:
			goto bad;
		}
	}
	if (optind == argc)
		return -1;
	fprintf(stderr, "authrelay: unknown command or argument %s\n", argv[optind]);
bad:
	usage(stderr);
	return EX_USAGE;
}

static int
check_config_main(int argc, char **argv)
{
	const char *config = AUTHRELAY_CONFIG_FILE;
	bool foreground = false;
	int r = parse_common(argc, argv, false, &config, &foreground);
	return r >= 0 ? r : master_check_config(config);
}

static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < AR_NELEM(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* "authrelay help [COMMAND]": everything, or the sub-command's own -h. */
static int
help_main(int argc, char **argv)
{
	if (argc == 1) {
		usage(stdout);
		return 0;
	}
	const struct command *c = argc == 2 ? find_command(argv[1]) : NULL;
	if (c == NULL) {
		if (argc == 2)
			fprintf(stderr, "authrelay: unknown command %s\n", argv[1]);
		usage(stderr);
		return EX_USAGE;
	}
	char *args[] = {(char *)c->name, (char *)"-h", NULL};
	return c->main(2, args);
}

int
main(int argc, char **argv)
{
	const char *config = AUTHRELAY_CONFIG_FILE;
	bool foreground = false;

	/* Every command reads the same file: every module's sections first. */
	settings_registry_install();
	if (argc >= 2) {
		const struct command *c = find_command(argv[1]);
		if (c != NULL)
			return c->main(argc - 1, argv + 1);
		if (strcmp(argv[1], "help") == 0)
			return help_main(argc - 1, argv + 1);
		if (strcmp(argv[1], "version") == 0)
			return argc == 2 ? version() : (usage(stderr), EX_USAGE);
	}
	int r = parse_common(argc, argv, true, &config, &foreground);
	return r >= 0 ? r : master_main(config, foreground);
}
