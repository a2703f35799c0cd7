/* SPDX-License-Identifier: ISC */
/*
 * queue_cmd.c - the `authrelay queue ...` command line (queue_cmd.h).
 *
 * Protocol on spool_dir/private/queue (queue_ctl.c): one line "[json]
 * COMMAND [ARGS]\n" from us; the queue process answers "ok [TEXT]" or
 * "error TEXT" on the first line, then data lines (list, show, summary), and
 * closes.
 *
 * When the queue process cannot be reached (the gateway is stopped), list
 * and summary read the spool themselves, read-only, with the queue's own
 * loader (queue_scan_read(), then what the delivery journal recorded) and
 * look (queue_view.c). A queue process that holds the journal's lock runs:
 * it is asked again, and read around only if it still does not answer.
 */
#include "queue_cmd.h"
#include "queue_internal.h"
#include "queue_journal.h"
#include "queue_view.h"
#include "../lib/build_info.h"
#include "../lib/config.h"
#include "../lib/ctlsock.h"
#include "../lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>

/* The request line's limit (queue_ctl.c reads at most 512 bytes). */
#define QUEUE_CMD_MAX_VALUE 320

static void
queue_cmd_usage(FILE *f)
{
	fprintf(f, "usage: authrelay queue [-c FILE] [--json] list|summary\n"
	           "       authrelay queue [-c FILE] [--json] show ID\n"
	           "       authrelay queue [-c FILE] delete|hold|release|flush "
	           "ID...|ALL|-s SENDER|-r RCPT|-d DOMAIN\n"
	           "       authrelay queue [-c FILE] flush\n");
}

/* One request on a new connection. The first answer line goes to stderr
 * when it is an error, to stdout (without "ok") when show_first; the data
 * lines to stdout. Returns the exit status, or -1 if the queue process
 * cannot be reached at all (errno kept). */
static int
queue_cmd_ask(const char *spool, const char *line, bool show_first)
{
	int fd = ctlsock_connect(spool, "private/queue");
	if (fd < 0 && errno == ENAMETOOLONG) {
		fprintf(stderr, "authrelay queue: spool_dir is too long\n");
		return EX_CONFIG;
	}
	if (fd < 0)
		return -1;
	size_t len = strlen(line);
	if (write_all(fd, line, len) < 0) {
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
	ssize_t got;
	int status = 1;
	bool first = true;
	while ((got = getline(&buf, &cap, in)) > 0) {
		if (first) {
			first = false;
			if (strncmp(buf, "ok", 2) == 0) {
				status = 0;
				const char *rest = buf[2] == ' ' ? buf + 3 : buf + 2;
				if (show_first)
					ctlsock_print(stdout, *rest ? rest : "\n",
					              *rest ? strlen(rest) : 1);
			} else {
				const char *msg = strncmp(buf, "error ", 6) == 0 ? buf + 6 : buf;
				fputs("authrelay queue: ", stderr);
				ctlsock_print(stderr, msg, strlen(msg));
			}
			continue;
		}
		ctlsock_print(stdout, buf, (size_t)got);
	}
	if (first)
		fprintf(stderr, "authrelay queue: no answer from the queue process\n");
	free(buf);
	fclose(in);
	return status;
}

/* Read the spool as the queue process does: as queue_user (its state files
 * are its own, and nothing else is believed), trusting in incoming/ only
 * the owners the queue trusts. Root only; anyone else reads as itself. */
static int
queue_cmd_become_queue(const struct config *cfg)
{
	struct passwd *worker, *queue;

	if (geteuid() != 0)
		return 0;
	worker = getpwnam(cfg->user);
	uid_t worker_uid = worker != NULL ? worker->pw_uid : (uid_t)-1;
	queue = getpwnam(cfg->queue_user);
	if (worker == NULL || queue == NULL) {
		fprintf(stderr, "authrelay queue: no such user: %s\n",
		        worker == NULL ? cfg->user : cfg->queue_user);
		return -1;
	}
	spool_set_owners(worker_uid, queue->pw_uid);
	if (setgroups(0, NULL) != 0 || setgid(queue->pw_gid) != 0 || setuid(queue->pw_uid) != 0) {
		fprintf(stderr, "authrelay queue: cannot become %s: %s\n", cfg->queue_user,
		        strerror(errno));
		return -1;
	}
	return 0;
}

/* Recipients of m still to go. */
static size_t
queue_cmd_left(const struct qmsg *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n_rcpts; i++)
		n += m->rcpts[i].status == RCPT_PENDING || m->rcpts[i].status == RCPT_DEFERRED;
	return n;
}

/* list and summary of a stopped gateway: read incoming/, state/ and the
 * delivery journal as the queue's start would, changing nothing. line is
 * the request, for a queue process found running after all. */
static int
queue_cmd_offline(const struct config *cfg, const char *cmd, bool json, const char *line)
{
	char dir[4200];
	struct qmsg **all = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	const char *err;
	bool busy;

	if (queue_cmd_become_queue(cfg) < 0)
		return EX_CONFIG;
	/* A delivery recorded just before a crash is only in the journal
	 * until the queue starts again. The shared lock keeps a queue that
	 * starts now from changing the spool while we read it. */
	struct queue_journal *j = queue_journal_read(cfg->spool_dir, &busy, &err);
	if (j == NULL && busy) {
		/* A queue process holds journal/: it runs, and knows better. */
		int r = queue_cmd_ask(cfg->spool_dir, line, false);
		if (r >= 0)
			return r;
	}
	snprintf(dir, sizeof(dir), "%s/incoming", cfg->spool_dir);
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr,
		        "authrelay queue: cannot reach the queue process at %s/private/queue, "
		        "nor read %s: %s\n",
		        cfg->spool_dir, dir, strerror(errno));
		queue_journal_free(j);
		return EX_TEMPFAIL;
	}
	if (j == NULL && busy)
		fprintf(stderr,
		        "authrelay queue: a queue process holds %s/journal but does not answer at "
		        "%s/private/queue; read from %s without its delivery journal (read-only): "
		        "recipients it delivered lately may show as still to go\n",
		        cfg->spool_dir, cfg->spool_dir, cfg->spool_dir);
	else
		fprintf(stderr,
		        "authrelay queue: the queue process is not running; read from %s "
		        "(read-only)\n",
		        cfg->spool_dir);
	if (j == NULL && !busy)
		fprintf(stderr,
		        "authrelay queue: cannot read the delivery journal: %s; recipients "
		        "delivered just before the stop may show as still to go\n",
		        err);
	while ((de = readdir(d)) != NULL) {
		struct qmsg *m;
		if (!queue_scan_valid_id(de->d_name))
			continue;
		int r = queue_scan_read(cfg->spool_dir, de->d_name, cfg->hostname, false, &m, &err);
		if (r > 0)
			continue;
		if (r < 0) {
			/* Unreadable, or no plain file of ours (left for the
			 * queue to set aside). */
			m = xcalloc(1, sizeof(*m));
			memcpy(m->id, de->d_name, SPOOL_ID_LEN);
			m->where = QM_BROKEN;
			m->sender = xstrdup("");
			m->broken_reason = xstrdup(err);
		} else {
			/* What the scheduler would make of it at start: the
			 * journal after state/ID, and a message with nothing
			 * left to go is removed. */
			queue_scan_apply_journal(j, m);
			m->where = queue_cmd_left(m) == 0 ? QM_REMOVING
			           : m->hold              ? QM_HOLD
			           : m->attempts > 0      ? QM_WAITING
			                                  : QM_NONE;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			all = xrealloc(all, cap * sizeof(*all));
		}
		all[n++] = m;
	}
	closedir(d);
	queue_journal_free(j);
	struct evbuffer *out = evbuffer_new();
	if (strcmp(cmd, "list") == 0)
		queue_view_list(out, all, n, json);
	else
		queue_view_summary(out, all, n, (int64_t)time(NULL), json);
	size_t len = evbuffer_get_length(out);
	fwrite(evbuffer_pullup(out, -1), 1, len, stdout);
	evbuffer_free(out);
	for (size_t i = 0; i < n; i++)
		queue_sched_msg_free(all[i]);
	free(all);
	return 0;
}

/* A value the request line can carry: no blank, no control character. */
static bool
queue_cmd_word_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > QUEUE_CMD_MAX_VALUE)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool
queue_cmd_is_id(const char *s)
{
	if (queue_scan_valid_id(s))
		return true;
	fprintf(stderr, "authrelay queue: %s is not a queue id\n", s);
	return false;
}

/* delete, hold, release, flush with their selection (args[0..n)). */
static int
queue_cmd_bulk(const char *spool, const char *cmd, char **args, int n)
{
	static const struct {
		const char *opt, *word;
	} sels[] = {{"-s", "sender"}, {"-r", "rcpt"}, {"-d", "domain"}};
	char line[512];

	if (n == 0 && strcmp(cmd, "flush") == 0) {
		snprintf(line, sizeof(line), "flush\n");
		return queue_cmd_ask(spool, line, true);
	}
	if (n == 1 && strcmp(args[0], "ALL") == 0) {
		snprintf(line, sizeof(line), "%s ALL\n", cmd);
		return queue_cmd_ask(spool, line, true);
	}
	for (size_t i = 0; i < AR_NELEM(sels); i++) {
		if (n < 1 || strcmp(args[0], sels[i].opt) != 0)
			continue;
		if (n != 2) {
			queue_cmd_usage(stderr);
			return EX_USAGE;
		}
		/* The null sender: -s '' or -s '<>'. */
		const char *v = args[1][0] == '\0' && i == 0 ? "<>" : args[1];
		if (!queue_cmd_word_ok(v)) {
			fprintf(stderr,
			        "authrelay queue: %s: a value without blanks, at most %d "
			        "bytes\n",
			        sels[i].opt, QUEUE_CMD_MAX_VALUE);
			return EX_USAGE;
		}
		snprintf(line, sizeof(line), "%s %s %s\n", cmd, sels[i].word, v);
		return queue_cmd_ask(spool, line, true);
	}
	if (n == 0) {
		queue_cmd_usage(stderr);
		return EX_USAGE;
	}
	for (int i = 0; i < n; i++)
		if (!queue_cmd_is_id(args[i]))
			return EX_USAGE;
	int status = 0;
	for (int i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "%s id %s\n", cmd, args[i]);
		int r = queue_cmd_ask(spool, line, true);
		if (r < 0)
			return r;
		if (r != 0)
			status = r;
	}
	return status;
}

int
queue_cmd_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *config = AUTHRELAY_CONFIG_FILE;
	char *errors = NULL, line[512];
	bool json = false;
	int opt, status;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+c:jh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'j':
			json = true;
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
	char **args = argv + optind + 1;
	int n = argc - optind - 1;
	bool listing = strcmp(cmd, "list") == 0 || strcmp(cmd, "summary") == 0;
	bool bulk = strcmp(cmd, "delete") == 0 || strcmp(cmd, "hold") == 0 ||
	            strcmp(cmd, "release") == 0 || strcmp(cmd, "flush") == 0;
	if ((listing && n != 0) || (strcmp(cmd, "show") == 0 && n != 1) ||
	    (!listing && !bulk && strcmp(cmd, "show") != 0) || (bulk && json)) {
		queue_cmd_usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(cmd, "show") == 0 && !queue_cmd_is_id(args[0]))
		return EX_USAGE;
	log_init(false, LOG_LEVEL_WARN, "queue");
	struct config *cfg = config_load(config, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	if (bulk) {
		status = queue_cmd_bulk(cfg->spool_dir, cmd, args, n);
	} else {
		snprintf(line, sizeof(line), "%s%s%s%s\n", json ? "json " : "", cmd,
		         n > 0 ? " " : "", n > 0 ? args[0] : "");
		status = queue_cmd_ask(cfg->spool_dir, line, false);
		if (status < 0 && listing && (errno == ENOENT || errno == ECONNREFUSED))
			status = queue_cmd_offline(cfg, cmd, json, line);
	}
	if (status < 0) {
		fprintf(stderr,
		        "authrelay queue: cannot reach the queue process at %s/private/queue: %s\n",
		        cfg->spool_dir, strerror(errno));
		/* Most likely the gateway is not running (yet). */
		status = EX_TEMPFAIL;
	}
	config_free(cfg);
	return status;
}
