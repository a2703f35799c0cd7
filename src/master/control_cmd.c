/* SPDX-License-Identifier: ISC */
/*
 * control_cmd.c - the command line's end of the control socket
 * (control_cmd.h). It checks that the socket's owner is root before it
 * believes an answer (a socket of the same name put there by anyone else
 * is refused), sends one line, and prints the answer: listings to stdout,
 * errors to stderr with the exit status the master gives. Control
 * characters from the gateway never reach the terminal.
 */
#include "control_cmd.h"
#include "control.h"
#include "../lib/build_info.h"
#include "../lib/config.h"
#include "../lib/ctlsock.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A stop waits for the children: their shutdown_timeout, then the
 * master's grace before it kills them (master.c), then some slack for a
 * loaded machine; never less than CONTROL_CMD_STOP_WAIT_S. */
#define CONTROL_CMD_STOP_WAIT_S 180
#define CONTROL_CMD_STOP_SLACK_S 60
#define CONTROL_CMD_WAIT_S 30

static void
control_cmd_usage(FILE *f, const char *name)
{
	if (strcmp(name, "unlock") == 0)
		fprintf(f, "usage: authrelay unlock [-c FILE] LOGIN|ADDRESS\n");
	else if (strcmp(name, "status") == 0 || strcmp(name, "lockouts") == 0)
		fprintf(f, "usage: authrelay %s [-c FILE] [--json]\n", name);
	else
		fprintf(f, "usage: authrelay %s [-c FILE]\n", name);
}

/* Text from the gateway, without the control characters. */
static void
print_clean(FILE *to, const char *s)
{
	ctlsock_print(to, s, strlen(s));
}

/* Connect to the control socket and check who serves it. */
static int
control_cmd_connect(const char *spool, int *status_r)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = ctlsock_connect(spool, CONTROL_SOCKET_NAME);

	if (fd < 0 && errno == ENAMETOOLONG) {
		fprintf(stderr, "authrelay: spool_dir is too long\n");
		*status_r = EX_CONFIG;
		return -1;
	}
	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "authrelay: cannot reach the gateway at %s/%s: %s\n", spool,
		        CONTROL_SOCKET_NAME, strerror(e));
		if (e == EACCES || e == EPERM)
			fprintf(stderr, "authrelay: the control socket is root's\n");
		*status_r = e == EACCES || e == EPERM ? EX_NOPERM : EX_TEMPFAIL;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred) ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		fprintf(stderr, "authrelay: %s/%s is not served by root: not asking it\n", spool,
		        CONTROL_SOCKET_NAME);
		close(fd);
		*status_r = EX_NOPERM;
		return -1;
	}
	return fd;
}

int
control_cmd_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *name = argv[0], *config = AUTHRELAY_CONFIG_FILE;
	bool unlock = strcmp(name, "unlock") == 0;
	bool listing = strcmp(name, "status") == 0 || strcmp(name, "lockouts") == 0;
	bool json = false;
	char *errors = NULL, line[512];
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:jh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			control_cmd_usage(stdout, name);
			return 0;
		default:
			control_cmd_usage(stderr, name);
			return EX_USAGE;
		}
	}
	if (argc - optind != (unlock ? 1 : 0) || (json && !listing)) {
		control_cmd_usage(stderr, name);
		return EX_USAGE;
	}
	if (unlock) {
		const char *what = argv[optind];
		size_t len = strlen(what);
		bool ok = len > 0 && len <= 400;
		for (size_t i = 0; i < len && ok; i++)
			ok = (unsigned char)what[i] > 0x20 && what[i] != 0x7f;
		if (!ok) {
			fprintf(stderr, "authrelay unlock: a login or address without blanks, at "
			                "most 400 bytes\n");
			return EX_USAGE;
		}
	}
	/* The file tells where the socket is; for reload it is also what the
	 * master would refuse: nothing is asked then. */
	struct config *cfg = config_load(config, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors);
		if (strcmp(name, "reload") == 0)
			fprintf(stderr,
			        "authrelay reload: the configuration has errors; the running "
			        "one stays\n");
		free(errors);
		return EX_CONFIG;
	}
	int fd = control_cmd_connect(cfg->spool_dir, &status);
	/* The file's bound; a running one larger than it (the file lowered it
	 * since the last reload) is covered by the floor and the slack. */
	unsigned stop_wait = cfg->shutdown_timeout + CONTROL_CMD_STOP_SLACK_S;
	if (stop_wait < CONTROL_CMD_STOP_WAIT_S)
		stop_wait = CONTROL_CMD_STOP_WAIT_S;
	config_free(cfg);
	if (fd < 0)
		return status;
	snprintf(line, sizeof(line), "%s%s%s%s\n", json ? "json " : "", name, unlock ? " " : "",
	         unlock ? argv[optind] : "");
	struct timeval tv = {strcmp(name, "stop") == 0 ? (time_t)stop_wait : CONTROL_CMD_WAIT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write_all(fd, line, strlen(line)) < 0) {
		fprintf(stderr, "authrelay %s: write: %s\n", name, strerror(errno));
		close(fd);
		return EX_TEMPFAIL;
	}
	FILE *in = fdopen(fd, "r");
	if (in == NULL) {
		close(fd);
		return 1;
	}
	char *buf = NULL;
	size_t cap = 0;
	bool first = true;
	errno = 0;
	status = EX_TEMPFAIL;
	while (getline(&buf, &cap, in) > 0) {
		if (!first) {
			print_clean(stdout, buf);
			continue;
		}
		first = false;
		if (strncmp(buf, "ok", 2) == 0) {
			status = 0;
			/* The listings are what follows; a command says what it did. */
			if (!listing && buf[2] == ' ')
				print_clean(stdout, buf + 3);
		} else {
			char *text = NULL;
			long code = strncmp(buf, "error ", 6) == 0 ? strtol(buf + 6, &text, 10) : 0;
			status = code > 0 && code < 126 ? (int)code : 1;
			fprintf(stderr, "authrelay %s: ", name);
			print_clean(stderr, text != NULL && *text == ' ' ? text + 1 : buf);
		}
	}
	bool timed_out = ferror(in) && (errno == EAGAIN || errno == EWOULDBLOCK);
	if (first)
		fprintf(stderr, "authrelay %s: no answer from the gateway%s\n", name,
		        timed_out ? " in time" : "");
	else if (status == 0 && strcmp(name, "stop") == 0) {
		/* The master closes the socket as it exits: only then is it
		 * stopped, not when the wait ran out. */
		if (timed_out) {
			fprintf(stderr, "authrelay stop: still stopping after %u s\n", stop_wait);
			status = EX_TEMPFAIL;
		} else
			printf("stopped\n");
	}
	free(buf);
	fclose(in);
	return status;
}
