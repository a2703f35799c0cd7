/* SPDX-License-Identifier: ISC */
/*
 * queue_scan.c - how the queue finds its messages (queue_internal.h):
 * inotify on incoming/ for what the SMTP workers commit, a rescan every
 * minute (and after an inotify overflow) for anything missed, and the scan
 * at start that recovers the whole spool after a crash.
 *
 * Loading reads incoming/ID's envelope and, for a message tried before, its
 * state/ID (queue_store.h), then hands it to the scheduler. An unreadable
 * file is kept in the table as QM_BROKEN: reported by `queue list`, left
 * alone until the admin deletes it.
 *
 * incoming/ is writable by the SMTP workers, so a name there is opened
 * without following it and must be a regular file of a worker or of ours
 * with one link (spool_open_message()). Anything else (a symlink, a hard
 * link, a FIFO, another owner's file: what a compromised worker could plant
 * to make us read or write with our rights) is logged and moved to
 * corrupt/, never opened.
 */
#include "queue_internal.h"
#include "queue_journal.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../smtp/smtp_parse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#define QUEUE_RESCAN_SECONDS 60

/* The address of an envelope record ("<a@b> PARAMS") with its parameters. */
static int
parse_path(const char *record, bool mail, struct smtp_mail_args *r)
{
	char buf[2200];
	const char *err;
	snprintf(buf, sizeof(buf), "%s%s", mail ? "FROM:" : "TO:", record);
	return smtp_parse_mail_args(buf, mail ? SMTP_PARAMS_MAIL : SMTP_PARAMS_RCPT, r, &err);
}

static void
msg_broken(struct queue *q, const char *id, const char *path, const char *why)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));
	m->q = q;
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xstrdup(path);
	m->where = QM_BROKEN;
	m->sender = xstrdup("");
	m->broken_reason = xstrdup(why);
	log_err("id=%s unreadable queue file %s: %s (left alone; `authrelay queue delete %s` "
	        "removes it)",
	        id, path, why, id);
	queue_sched_add(q, m);
}

bool
queue_scan_valid_id(const char *s)
{
	size_t i;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == SPOOL_ID_LEN;
}

/* incoming/<id> is not a file we may open: move it to corrupt/, under a
 * free name, without following it. */
static void
scan_set_aside(struct queue *q, const char *id, const char *why)
{
	char dir[4200], name[SPOOL_ID_LEN + 16];
	int ifd, cfd, r = -1;

	snprintf(dir, sizeof(dir), "%s/incoming", q->spool);
	ifd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	snprintf(dir, sizeof(dir), "%s/corrupt", q->spool);
	cfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	snprintf(name, sizeof(name), "%s", id);
	for (unsigned i = 1; ifd >= 0 && cfd >= 0 && i < 100; i++) {
		r = renameat2(ifd, id, cfd, name, RENAME_NOREPLACE);
		if (r == 0 || errno != EEXIST)
			break;
		snprintf(name, sizeof(name), "%s.%u", id, i);
	}
	if (r == 0) {
		log_err("id=%s incoming/%s refused: %s; moved to corrupt/%s", id, id, why, name);
	} else {
		/* A directory of a worker's cannot be renamed by us (its ".."
		 * would change): keep it in the table as broken, so that it is
		 * reported once and by `queue list`, never opened. */
		char reason[300];
		snprintf(reason, sizeof(reason), "refused: %s; cannot move it to corrupt/: %s", why,
		         strerror(errno));
		snprintf(dir, sizeof(dir), "%s/incoming/%s", q->spool, id);
		msg_broken(q, id, dir, reason);
	}
	if (ifd >= 0)
		close(ifd);
	if (cfd >= 0)
		close(cfd);
}

/* The sender and the body's parameters from the envelope's MAIL record. */
static void
load_sender(struct qmsg *m, const char *record, struct smtp_mail_args *ma)
{
	if (parse_path(record, true, ma) == 0) {
		m->sender = xstrdup(ma->path.null ? "" : ma->path.addr);
		for (size_t i = 0; i < ma->n_params; i++) {
			if (strcmp(ma->params[i].key, "BODY") == 0 &&
			    ascii_strcasecmp(ma->params[i].value, "8BITMIME") == 0)
				m->body_8bit = true;
			if (strcmp(ma->params[i].key, "SMTPUTF8") == 0)
				m->smtputf8 = true;
		}
	} else {
		/* Written by us, so this should not happen: take what is
		 * between the brackets. */
		const char *a = strchr(record, '<'), *b = a ? strchr(a, '>') : NULL;
		m->sender = a && b ? xstrndup(a + 1, (size_t)(b - a - 1)) : xstrdup("");
	}
}

/* A recipient from the envelope's RCPT record; a bare address gets the
 * hostname as its domain. */
static void
load_rcpt(struct qrcpt *r, const char *record, const char *hostname, struct smtp_mail_args *ma)
{
	if (parse_path(record, false, ma) == 0 && ma->path.addr[0] != '\0') {
		r->addr = xstrdup(ma->path.addr);
		r->domain = xstrdup(ma->path.domain[0] ? ma->path.domain : hostname);
		return;
	}
	const char *a = strchr(record, '<'), *b = a ? strchr(a, '>') : NULL;
	r->addr = a && b ? xstrndup(a + 1, (size_t)(b - a - 1)) : xstrdup(record);
	const char *at = strrchr(r->addr, '@');
	r->domain = xstrdup(at ? at + 1 : hostname);
	for (char *p = r->domain; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + ('a' - 'A'));
}

size_t
queue_scan_apply_journal(const struct queue_journal *j, struct qmsg *m)
{
	const size_t *idx;
	size_t n = j != NULL ? queue_journal_replayed(j, m->id, &idx) : 0, done = 0;

	for (size_t k = 0; k < n; k++) {
		if (idx[k] >= m->n_rcpts)
			continue;
		struct qrcpt *r = &m->rcpts[idx[k]];
		/* Only what is still to do; a recipient done either way is. */
		if (r->status != RCPT_PENDING && r->status != RCPT_DEFERRED)
			continue;
		r->status = RCPT_SENT;
		queue_set_str(&r->reply, "delivered before a restart (delivery journal)");
		m->journal_only = true;
		done++;
		/* The address is the client's: escaped, quoted and last. */
		char addr[600];
		log_info("id=%s status=sent replayed=journal to=\"<%s>\"", m->id,
		         log_escape_str(r->addr, addr, sizeof(addr)));
	}
	return done;
}

/* What state/<id> says (or the empty state when fresh) into m. */
static void
load_state(const char *spool, struct qmsg *m, bool fresh)
{
	struct queue_state st;
	const char *err;
	int r = 0;

	if (fresh)
		queue_state_init(&st, m->n_rcpts);
	else
		r = queue_store_read_state(spool, m->id, m->n_rcpts, &st, &err);
	if (r < 0) {
		/* A damaged state file costs at most a repeated delivery. */
		log_warn("id=%s state file ignored: %s", m->id, err);
		m->has_state = true;
		return;
	}
	m->has_state = st.exists;
	m->attempts = st.attempts;
	m->next_attempt = st.next_attempt;
	m->hold = st.hold;
	m->warned = st.warned;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		m->rcpts[i].status = st.rcpts[i].status;
		m->rcpts[i].reply = st.rcpts[i].reply;
		st.rcpts[i].reply = NULL;
	}
	queue_state_clear(&st);
}

int
queue_scan_read(const char *spool, const char *id, const char *hostname, bool fresh,
                struct qmsg **m_r, const char **error_r)
{
	struct spool_envelope env;
	long off;
	char path[4200];
	uint64_t file_size = 0;
	int fd, r;

	snprintf(path, sizeof(path), "%s/incoming/%s", spool, id);
	fd = spool_open_message(path, error_r);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		if (errno == ELOOP || errno == EINVAL || errno == EPERM || errno == EMLINK)
			return -2;
		return -1;
	}
	r = spool_read_envelope_fd(fd, path, &env, &off, &file_size, error_r);
	close(fd);
	if (r != 0)
		return -1;
	struct qmsg *m = xcalloc(1, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xstrdup(path);
	m->arrival = env.time;
	m->body_offset = off;
	m->size = file_size > (uint64_t)off ? file_size - (uint64_t)off : 0;
	struct smtp_mail_args *ma = xcalloc(1, sizeof(*ma));
	load_sender(m, env.mail, ma);
	m->n_rcpts = env.n_rcpts;
	m->rcpts = xcalloc(env.n_rcpts ? env.n_rcpts : 1, sizeof(*m->rcpts));
	for (size_t i = 0; i < env.n_rcpts; i++)
		load_rcpt(&m->rcpts[i], env.rcpts[i], hostname, ma);
	free(ma);
	spool_envelope_clear(&env);
	load_state(spool, m, fresh);
	*m_r = m;
	return 0;
}

/* Load incoming/<id> if it is new to us. fresh: inotify has just seen it
 * arrive, so no state file can exist for it yet (one is written only after a
 * try); the start and the rescans look for one. */
static void
scan_load(struct queue *q, const char *id, bool at_start, bool fresh)
{
	struct qmsg *m;
	const char *err;
	char path[4200];

	if (!queue_scan_valid_id(id) || queue_sched_find(q, id) != NULL)
		return;
	int r = queue_scan_read(q->spool, id, queue_cfg(q)->hostname, fresh, &m, &err);
	if (r > 0)
		return;
	if (r == -2) {
		/* Not a plain file of ours: a link or a worker's planting. */
		scan_set_aside(q, id, err);
		return;
	}
	if (r < 0) {
		snprintf(path, sizeof(path), "%s/incoming/%s", q->spool, id);
		msg_broken(q, id, path, err);
		return;
	}
	m->q = q;
	/* After state/ID: what the journal adds is newer. */
	queue_scan_apply_journal(q->journal, m);
	queue_sched_add(q, m);
	if (!at_start) {
		q->n_received++;
		char from[LOG_VALUE_MAX];
		/* The sender is the client's: escaped, and last. */
		log_info("id=%s queued nrcpt=%zu size=%llu from=\"<%s>\"", m->id, m->n_rcpts,
		         (unsigned long long)m->size,
		         log_escape_str(m->sender, from, sizeof(from)));
	}
	queue_sched_place(q, m);
}

static void
scan_dir(struct queue *q, bool at_start)
{
	char dir[4200];
	DIR *d;
	struct dirent *de;

	snprintf(dir, sizeof(dir), "%s/incoming", q->spool);
	d = opendir(dir);
	if (d == NULL) {
		log_err("opendir %s: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL)
		scan_load(q, de->d_name, at_start, false);
	closedir(d);
}

static void
inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	bool overflow = false;

	while ((n = read(q->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				overflow = true;
			else if (ev->len > 0)
				scan_load(q, ev->name, false, true);
			p += sizeof(*ev) + ev->len;
		}
	}
	if (overflow)
		scan_dir(q, false);
}

static void
rescan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	scan_dir(q, false);
}

void
queue_scan_start(struct queue *q)
{
	q->rescan_ev = event_new(q->base, -1, EV_PERSIST, rescan_cb, q);
	event_add(q->rescan_ev, &(struct timeval){QUEUE_RESCAN_SECONDS, 0});

	/* Watch first, then scan: a message arriving in between is seen by
	 * both, and the table makes the second sighting a no-op. */
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/incoming", q->spool);
	q->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (q->inotify_fd < 0 ||
	    inotify_add_watch(q->inotify_fd, dir, IN_MOVED_TO | IN_CREATE) < 0) {
		log_warn("inotify on %s: %s; new messages are found by the rescan every %d s", dir,
		         strerror(errno), QUEUE_RESCAN_SECONDS);
	} else {
		q->inotify_ev =
		        event_new(q->base, q->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, q);
		event_add(q->inotify_ev, NULL);
	}
	scan_dir(q, true);
}

void
queue_scan_stop(struct queue *q)
{
	if (q->inotify_ev != NULL)
		event_free(q->inotify_ev);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	if (q->rescan_ev != NULL)
		event_free(q->rescan_ev);
}
