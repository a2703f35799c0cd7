/*
 * queue_cmd.c - the `authrelay queue ...` command line (queue_cmd.h).
 *
 * Protocol on spool_dir/private/queue: one line "COMMAND [ID]\n" from us;
 * the queue process answers "ok [TEXT]" or "error TEXT" on the first line,
 * then data lines (list, show), and closes.
 */
#include "queue_cmd.h"
#include "../lib/build_info.h"
#include "../lib/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void
queue_cmd_usage(FILE *f)
{
	fprintf(f, "usage: authrelay queue [-c FILE] list\n"
	           "       authrelay queue [-c FILE] show|delete|hold|release ID\n"
	           "       authrelay queue [-c FILE] flush\n");
}

int
queue_cmd_main(int argc, char **argv)
{
	const char *config = AUTHRELAY_CONFIG_FILE;
	char *errors = NULL;
	int opt;

	optind = 1;
	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			queue_cmd_usage(stdout);
			return 0;
		default:
			queue_cmd_usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind >= argc) {
		queue_cmd_usage(stderr);
		return EX_USAGE;
	}
	const char *cmd = argv[optind];
	const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
	bool needs_id = strcmp(cmd, "show") == 0 || strcmp(cmd, "delete") == 0 ||
	                strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0;
	bool no_id = strcmp(cmd, "list") == 0 || strcmp(cmd, "flush") == 0;
	if ((!needs_id && !no_id) || (needs_id && id == NULL) || (no_id && id != NULL) ||
	    optind + (needs_id ? 2 : 1) != argc) {
		queue_cmd_usage(stderr);
		return EX_USAGE;
	}
	if (id != NULL && strspn(id, "0123456789abcdef") != strlen(id)) {
		fprintf(stderr, "authrelay queue: %s is not a queue id\n", id);
		return EX_USAGE;
	}
	struct config *cfg = config_load(config, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/private/queue", cfg->spool_dir);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		fprintf(stderr, "authrelay queue: spool_dir is too long\n");
		config_free(cfg);
		return EX_CONFIG;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "authrelay queue: cannot reach the queue process at %s: %s\n",
		        sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		config_free(cfg);
		/* Most likely the gateway is not running (yet). */
		return EX_TEMPFAIL;
	}
	config_free(cfg);
	char line[200];
	n = snprintf(line, sizeof(line), "%s%s%s\n", cmd, id ? " " : "", id ? id : "");
	if (write(fd, line, (size_t)n) != n) {
		fprintf(stderr, "authrelay queue: write: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	FILE *in = fdopen(fd, "r");
	if (in == NULL) {
		close(fd);
		return 1;
	}
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	int status = 1;
	bool first = true;
	while ((len = getline(&buf, &cap, in)) > 0) {
		if (first) {
			first = false;
			if (strncmp(buf, "ok", 2) == 0) {
				status = 0;
				const char *rest = buf[2] == ' ' ? buf + 3 : buf + 2;
				if (strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0)
					fputs(*rest ? rest : "\n", stdout);
			} else {
				fprintf(stderr, "authrelay queue: %s",
				        strncmp(buf, "error ", 6) == 0 ? buf + 6 : buf);
			}
			continue;
		}
		fputs(buf, stdout);
	}
	if (first)
		fprintf(stderr, "authrelay queue: no answer from the queue process\n");
	free(buf);
	fclose(in);
	return status;
}
