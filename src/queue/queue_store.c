/* SPDX-License-Identifier: ISC */
/*
 * queue_store.c - state/<ID> records and message removal (queue_store.h).
 *
 * Every write and removal runs on a one-thread pool: the thread takes jobs
 * in the order they were queued, so operations on one message can never
 * overtake each other, and fsync never blocks the queue's event loop.
 *
 * Files are opened from the folders' descriptors with O_NOFOLLOW, and a
 * state file must be ours with one link (safeopen.h): state/ is the
 * queue's alone, but nothing found there is followed, whoever put it.
 */
#include "queue_store.h"
#include "../lib/common.h"
#include "../lib/log.h"
#include "../lib/safeopen.h"
#include "../lib/threadpool.h"
#include "../spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC "AUTHRELAY-STATE 1"
#define STATE_MAX_SIZE (16 * 1024 * 1024)

struct queue_store {
	char *spool_dir;
	struct threadpool *pool;
	/* Jobs whose done has not run yet (loop thread only): the pool drops
	 * the done callbacks of what is still out when it is freed, so the
	 * store frees those jobs itself. */
	LIST_HEAD(, store_job) jobs;
};

enum store_op { STORE_WRITE, STORE_REMOVE, STORE_BARRIER };

struct store_job {
	struct queue_store *store;
	enum store_op op;
	char id[SPOOL_ID_LEN + 1];
	char *text;
	bool has_state; /* STORE_REMOVE: state/<id> may exist */
	queue_store_done_cb *done;
	void *arg;
	LIST_ENTRY(store_job) entry; /* on store->jobs, loop thread only */
};

static const char *const status_names[] = {
        [RCPT_PENDING] = "pending",
        [RCPT_DEFERRED] = "deferred",
        [RCPT_SENT] = "sent",
        [RCPT_BOUNCED] = "bounced",
};

struct queue_store *
queue_store_new(struct event_base *base, const char *spool_dir)
{
	struct queue_store *s = xcalloc(1, sizeof(*s));
	s->spool_dir = xstrdup(spool_dir);
	/* One thread: operations run in submission order. */
	s->pool = threadpool_new(base, 1);
	LIST_INIT(&s->jobs);
	return s;
}

static void
store_job_free(struct store_job *j)
{
	free(j->text);
	free(j);
}

void
queue_store_free(struct queue_store *s)
{
	if (s == NULL)
		return;
	/* Runs what is queued but drops the done callbacks: the jobs they
	 * would have freed are still on the list. */
	threadpool_free(s->pool);
	while (!LIST_EMPTY(&s->jobs)) {
		struct store_job *j = LIST_FIRST(&s->jobs);
		LIST_REMOVE(j, entry);
		store_job_free(j);
	}
	free(s->spool_dir);
	free(s);
}

unsigned
queue_store_pending(const struct queue_store *s)
{
	return threadpool_pending(s->pool);
}

void
queue_state_clear(struct queue_state *st)
{
	for (size_t i = 0; i < st->n_rcpts; i++)
		free(st->rcpts[i].reply);
	free(st->rcpts);
	memset(st, 0, sizeof(*st));
}

char *
queue_state_format(const struct queue_state *st)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		fatal("open_memstream: %s", strerror(errno));
	fprintf(f, STATE_MAGIC "\nattempts %u\nnext %" PRId64 "\n", st->attempts, st->next_attempt);
	if (st->hold)
		fprintf(f, "hold 1\n");
	if (st->warned)
		fprintf(f, "warned 1\n");
	for (size_t i = 0; i < st->n_rcpts; i++) {
		const struct queue_state_rcpt *r = &st->rcpts[i];
		if (r->status == RCPT_PENDING)
			continue;
		char *esc = spool_escape(r->reply != NULL && *r->reply ? r->reply : "-");
		fprintf(f, "rcpt %zu %s %s\n", i, status_names[r->status], esc);
		free(esc);
	}
	fprintf(f, "\n");
	fclose(f);
	return buf;
}

static int
state_parse_uint64(const char *s, uint64_t *r)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*r = v;
	return 0;
}

int
queue_state_parse(const char *text, size_t n_rcpts, struct queue_state *r, const char **error_r)
{
	static _Thread_local char err[128];
	char *copy = xstrdup(text), *save = NULL, *line;
	unsigned lineno = 0;
	bool ended = false;

	memset(r, 0, sizeof(*r));
	r->n_rcpts = n_rcpts;
	r->rcpts = xcalloc(n_rcpts ? n_rcpts : 1, sizeof(*r->rcpts));
	/* strtok_r would merge the final blank line away: walk by hand. */
	for (line = copy; line != NULL && *line != '\0'; line = save) {
		char *nl = strchr(line, '\n');
		if (nl == NULL) {
			snprintf(err, sizeof(err), "line %u: no end of line", lineno + 1);
			goto fail;
		}
		*nl = '\0';
		save = nl + 1;
		lineno++;
		if (lineno == 1) {
			if (strcmp(line, STATE_MAGIC) != 0) {
				snprintf(err, sizeof(err), "not a state file (version 1)");
				goto fail;
			}
			continue;
		}
		if (*line == '\0') {
			ended = true;
			break;
		}
		char *sp = strchr(line, ' ');
		if (sp == NULL) {
			snprintf(err, sizeof(err), "line %u: no value", lineno);
			goto fail;
		}
		*sp++ = '\0';
		uint64_t v;
		if (strcmp(line, "attempts") == 0 && state_parse_uint64(sp, &v) == 0 &&
		    v < 1000000) {
			r->attempts = (unsigned)v;
		} else if (strcmp(line, "next") == 0 && state_parse_uint64(sp, &v) == 0 &&
		           v < INT64_MAX) {
			r->next_attempt = (int64_t)v;
		} else if (strcmp(line, "hold") == 0 && strcmp(sp, "1") == 0) {
			r->hold = true;
		} else if (strcmp(line, "warned") == 0 && strcmp(sp, "1") == 0) {
			r->warned = true;
		} else if (strcmp(line, "rcpt") == 0) {
			char *st = strchr(sp, ' ');
			char *reply = st ? strchr(st + 1, ' ') : NULL;
			if (st == NULL || reply == NULL)
				goto bad;
			*st++ = '\0';
			*reply++ = '\0';
			if (state_parse_uint64(sp, &v) != 0 || v >= n_rcpts)
				goto bad;
			enum rcpt_status status = RCPT_PENDING;
			for (size_t i = RCPT_DEFERRED; i < AR_NELEM(status_names); i++)
				if (strcmp(st, status_names[i]) == 0)
					status = (enum rcpt_status)i;
			if (status == RCPT_PENDING)
				goto bad;
			char *text_v = spool_unescape(reply);
			if (text_v == NULL)
				goto bad;
			r->rcpts[v].status = status;
			free(r->rcpts[v].reply);
			r->rcpts[v].reply = text_v;
		} else {
			goto bad;
		}
		continue;
	bad:
		snprintf(err, sizeof(err), "line %u: bad %s record", lineno, line);
		goto fail;
	}
	if (!ended) {
		snprintf(err, sizeof(err), "truncated (no blank line at the end)");
		goto fail;
	}
	free(copy);
	return 0;
fail:
	free(copy);
	queue_state_clear(r);
	*error_r = err;
	return -1;
}

void
queue_state_init(struct queue_state *r, size_t n_rcpts)
{
	memset(r, 0, sizeof(*r));
	r->n_rcpts = n_rcpts;
	r->rcpts = xcalloc(n_rcpts ? n_rcpts : 1, sizeof(*r->rcpts));
}

int
queue_store_read_state(const char *spool_dir, const char *id, size_t n_rcpts, struct queue_state *r,
                       const char **error_r)
{
	static _Thread_local char err[4400];
	char path[4096];
	struct stat st;
	int fd;

	struct safeopen_expect ours = {.uids = {geteuid()}, .n_uids = 1, .single_link = true};
	const char *why;

	snprintf(path, sizeof(path), "%s/state/%s", spool_dir, id);
	fd = safeopen_path(path, O_RDONLY, &ours, &why);
	if (fd < 0) {
		int open_errno = errno;
		queue_state_init(r, n_rcpts);
		errno = open_errno;
		if (errno == ENOENT)
			return 0;
		snprintf(err, sizeof(err), "open %s: %s", path, why);
		*error_r = err;
		queue_state_clear(r);
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_size > STATE_MAX_SIZE) {
		snprintf(err, sizeof(err), "%s: unreadable or too large", path);
		close(fd);
		*error_r = err;
		return -1;
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	ssize_t got = read_all(fd, buf, (size_t)st.st_size);
	close(fd);
	if (got < 0) {
		snprintf(err, sizeof(err), "read %s: %s", path, strerror(errno));
		free(buf);
		*error_r = err;
		return -1;
	}
	buf[got] = '\0';
	int ret = queue_state_parse(buf, n_rcpts, r, error_r);
	free(buf);
	r->exists = true;
	return ret;
}

/* Create state/.tmp-ID for writing. Something already there (a crash's
 * leftover, or anything planted) is removed, never opened: O_EXCL and
 * O_NOFOLLOW make sure of that. */
static int
store_create_tmp(int sdfd, const char *id, const char *tmp)
{
	for (int try = 0; try < 2; try++) {
		int fd = openat(sdfd, tmp,
		                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
		                0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
		struct stat st;
		if (fstatat(sdfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISLNK(st.st_mode))
				log_err("id=%s state/%s is a symlink: removed, not followed", id,
				        tmp);
			else if (!S_ISREG(st.st_mode))
				log_err("id=%s state/%s is not a regular file: removed", id, tmp);
			else if (st.st_nlink > 1)
				log_err("id=%s state/%s has %lu links: removed, not written "
				        "through",
				        id, tmp, (unsigned long)st.st_nlink);
		}
		if (unlinkat(sdfd, tmp, 0) < 0 && errno != ENOENT)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* On the store thread. */
static void
store_work(void *arg)
{
	struct store_job *j = arg;
	const char *dir = j->store->spool_dir;
	char sdir[4096], idir[4096], tmp[64];
	int fd, sdfd, idfd;

	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	sdfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sdfd < 0) {
		log_err("id=%s state: open %s: %s", j->id, sdir, strerror(errno));
		return;
	}
	if (j->op == STORE_BARRIER) {
		/* Everything asked before is done: make its renames and
		 * removals durable (errors cost at most a repeated delivery
		 * after a crash). */
		snprintf(idir, sizeof(idir), "%s/incoming", dir);
		idfd = open(idir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (idfd < 0 || fsync(idfd) < 0)
			log_err("store barrier: fsync %s: %s", idir, strerror(errno));
		if (idfd >= 0)
			close(idfd);
		if (fsync(sdfd) < 0)
			log_err("store barrier: fsync %s: %s", sdir, strerror(errno));
		close(sdfd);
		return;
	}
	if (j->op == STORE_REMOVE) {
		snprintf(idir, sizeof(idir), "%s/incoming", dir);
		idfd = open(idir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* The message first: a crash in between leaves a state file
		 * without a message, which the next start removes. */
		if (idfd < 0 || (unlinkat(idfd, j->id, 0) < 0 && errno != ENOENT))
			log_err("id=%s unlink %s/%s: %s", j->id, idir, j->id, strerror(errno));
		if (idfd >= 0)
			close(idfd);
		/* A message delivered at its first try never had one. */
		if (j->has_state && unlinkat(sdfd, j->id, 0) < 0 && errno != ENOENT)
			log_err("id=%s unlink %s/%s: %s", j->id, sdir, j->id, strerror(errno));
		close(sdfd);
		return;
	}
	snprintf(tmp, sizeof(tmp), ".tmp-%s", j->id);
	fd = store_create_tmp(sdfd, j->id, tmp);
	if (fd < 0) {
		log_err("id=%s state: create %s/%s: %s", j->id, sdir, tmp, strerror(errno));
		close(sdfd);
		return;
	}
	if (write_all(fd, j->text, strlen(j->text)) < 0 || fsync(fd) < 0) {
		log_err("id=%s state: write %s/%s: %s", j->id, sdir, tmp, strerror(errno));
		close(fd);
		unlinkat(sdfd, tmp, 0);
		close(sdfd);
		return;
	}
	close(fd);
	if (renameat(sdfd, tmp, sdfd, j->id) < 0) {
		log_err("id=%s state: rename %s/%s: %s", j->id, sdir, tmp, strerror(errno));
		unlinkat(sdfd, tmp, 0);
		close(sdfd);
		return;
	}
	if (fsync(sdfd) < 0)
		log_err("id=%s state: fsync %s: %s", j->id, sdir, strerror(errno));
	close(sdfd);
}

static void
store_done(void *arg)
{
	struct store_job *j = arg;
	/* Off the list first: done may free the store. */
	LIST_REMOVE(j, entry);
	if (j->done != NULL)
		j->done(j->arg);
	store_job_free(j);
}

static struct store_job *
store_job_new(struct queue_store *s, enum store_op op, const char *id, char *text,
              queue_store_done_cb *done, void *arg)
{
	struct store_job *j = xcalloc(1, sizeof(*j));
	j->store = s;
	j->op = op;
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->text = text;
	j->done = done;
	j->arg = arg;
	LIST_INSERT_HEAD(&s->jobs, j, entry);
	return j;
}

void
queue_store_write_state(struct queue_store *s, const char *id, char *text)
{
	threadpool_submit(s->pool, store_work, store_done,
	                  store_job_new(s, STORE_WRITE, id, text, NULL, NULL));
}

void
queue_store_remove(struct queue_store *s, const char *id, bool has_state, queue_store_done_cb *done,
                   void *arg)
{
	struct store_job *j = store_job_new(s, STORE_REMOVE, id, NULL, done, arg);
	j->has_state = has_state;
	threadpool_submit(s->pool, store_work, store_done, j);
}

void
queue_store_barrier(struct queue_store *s, queue_store_done_cb *done, void *arg)
{
	threadpool_submit(s->pool, store_work, store_done,
	                  store_job_new(s, STORE_BARRIER, "", NULL, done, arg));
}

unsigned
queue_store_remove_orphans(const char *spool_dir)
{
	char path[4096];
	unsigned n = 0;
	int sdfd, idfd;
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/incoming", spool_dir);
	idfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/state", spool_dir);
	sdfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = sdfd < 0 || idfd < 0 ? NULL : fdopendir(sdfd);
	if (d == NULL) {
		if (sdfd >= 0)
			close(sdfd);
		if (idfd >= 0)
			close(idfd);
		return 0;
	}
	/* DSNs the queue was writing when it stopped: their recipients are
	 * still marked as owed one (queue_bounce.c writes it again). */
	snprintf(path, sizeof(path), "%s/queue-tmp", spool_dir);
	int qfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *qd = qfd < 0 ? NULL : fdopendir(qfd);
	if (qd == NULL && qfd >= 0)
		close(qfd);
	while (qd != NULL && (de = readdir(qd)) != NULL) {
		if (de->d_name[0] != '.' && unlinkat(qfd, de->d_name, 0) == 0)
			n++;
	}
	if (qd != NULL)
		closedir(qd);
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (de->d_name[0] == '.' && strncmp(de->d_name, ".tmp-", 5) != 0)
			continue;
		/* A half-written state file from a crash. */
		if (strncmp(de->d_name, ".tmp-", 5) == 0) {
			if (unlinkat(sdfd, de->d_name, 0) == 0)
				n++;
			continue;
		}
		if (fstatat(idfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
		    unlinkat(sdfd, de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	close(idfd);
	return n;
}
