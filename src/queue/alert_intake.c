/* SPDX-License-Identifier: ISC */
/*
 * alert_intake.c - MAIL and HOOK records from the auth process (see
 * alert_intake.h).
 *
 * A MAIL becomes a spool file on the thread pool (create, write, fsync,
 * rename: spool_msg_commit()), like a DSN, and the queue's own inotify watch
 * then finds it in incoming/. The envelope says where it came from: client
 * "local", listener "alerts", protocol "LOCAL", no TLS, no auth, MAIL FROM
 * <> (RFC 3834 3.3: automatic messages go out with a null reverse-path, so
 * they can never bounce into a loop), one RCPT per address of [alerts] to.
 *
 * The channel is a SOCK_SEQPACKET socket: each readable event takes the
 * records that wait, at most ALERT_INTAKE_BURST, so a flood of alerts never
 * holds up the queue's loop.
 */
#include "alert_intake.h"
#include "alert_hook.h"
#include "../authwire/alert_proto.h"
#include "../lib/common.h"
#include "../lib/ipc.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"
#include "../spool/spool.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#define ALERT_INTAKE_BURST 32
#define ALERT_MAX_RCPTS 64
#define ALERT_MAX_ADDR 300

/* One alert mail on its way into the spool. */
struct intake_mail {
	LIST_ENTRY(intake_mail) entry;
	struct alert_intake *in;
	char kind[ALERT_MAX_KIND + 1];
	char *rcpts[ALERT_MAX_RCPTS]; /* "<a@x>" */
	size_t n_rcpts;
	char *message;
	size_t message_len;
	char *hostname; /* the intake's when it came: a reload may change that */
	/* Set on the pool thread. */
	char id[SPOOL_ID_LEN + 1];
	const char *error; /* static text, or NULL on success */
};

struct alert_intake {
	struct event_base *base;
	struct threadpool *pool;
	char *spool_dir;
	char *hostname;
	struct alert_hook *hook; /* NULL without [alerts] hook */
	int fd;
	struct event *readable;
	LIST_HEAD(, intake_mail) mails; /* on the pool */
};

static void
intake_mail_free(struct intake_mail *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i]);
	free(m->message);
	free(m->hostname);
	free(m);
}

/* Pool thread: the whole spool file, committed, or m->error. */
static void
intake_mail_work(void *arg)
{
	struct intake_mail *m = arg;
	struct alert_intake *in = m->in;
	struct spool_envelope env;
	struct spool_msg *msg;
	char date[64], hdr[512];
	time_t now = time(NULL);
	const char *err = NULL;
	int hl;

	memset(&env, 0, sizeof(env));
	env.time = (int64_t)now;
	env.client = "local";
	env.helo = m->hostname;
	env.listener = "alerts";
	env.protocol = "LOCAL";
	env.tls = "none";
	env.mail = "<>";
	env.rcpts = m->rcpts;
	env.n_rcpts = m->n_rcpts;
	/* Written where only the queue can enter, as DSNs are. */
	msg = spool_msg_new_in(in->spool_dir, "queue-tmp", &env, &err);
	if (msg == NULL) {
		m->error = err != NULL ? err : "cannot create the spool file";
		return;
	}
	snprintf(m->id, sizeof(m->id), "%s", spool_msg_id(msg));
	utc_strftime((int64_t)now, "%a, %d %b %Y %H:%M:%S +0000", date, sizeof(date));
	/* RFC 5321 4.4: every message starts its trace here. */
	hl = snprintf(hdr, sizeof(hdr), "Received: by %s (authrelay alerts) id %s;\r\n\t%s\r\n",
	              m->hostname, m->id, date);
	if (hl < 0 || (size_t)hl >= sizeof(hdr) || spool_msg_write(msg, hdr, (size_t)hl) != 0 ||
	    spool_msg_write(msg, m->message, m->message_len) != 0)
		m->error = "write failed";
	else if (spool_msg_commit(msg) != 0)
		m->error = "commit failed";
	spool_msg_free(msg);
}

/* Loop thread. */
static void
intake_mail_done(void *arg)
{
	struct intake_mail *m = arg;

	LIST_REMOVE(m, entry);
	if (m->error == NULL)
		log_info("alert queued id=%s kind=%s from=<> nrcpt=%zu", m->id, m->kind,
		         m->n_rcpts);
	else
		log_err("alert kind=%s not queued: spool error: %s", m->kind, m->error);
	intake_mail_free(m);
}

static void
intake_on_mail(struct alert_intake *in, const struct alert_mail_msg *a)
{
	struct intake_mail *m = xcalloc(1, sizeof(*m));
	const char *p = a->to;

	m->in = in;
	snprintf(m->kind, sizeof(m->kind), "%s", a->kind);
	while (*p != '\0' && m->n_rcpts < ALERT_MAX_RCPTS) {
		size_t len = strcspn(p, ",");
		if (len > 0 && len < ALERT_MAX_ADDR) {
			m->rcpts[m->n_rcpts] = xmalloc(len + 3);
			snprintf(m->rcpts[m->n_rcpts], len + 3, "<%.*s>", (int)len, p);
			m->n_rcpts++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (m->n_rcpts == 0) {
		log_err("alert kind=%s from the auth process has no usable recipient; dropped",
		        a->kind);
		intake_mail_free(m);
		return;
	}
	m->message = xmemdup(a->message, a->message_len);
	m->message_len = a->message_len;
	m->hostname = xstrdup(in->hostname);
	LIST_INSERT_HEAD(&in->mails, m, entry);
	threadpool_submit(in->pool, intake_mail_work, intake_mail_done, m);
}

static void
intake_on_record(struct alert_intake *in, struct ipc_msg *msg)
{
	struct alert_mail_msg mail;
	struct alert_hook_msg hook;

	switch (ipc_msg_type(msg)) {
	case ALERT_MSG_MAIL:
		if (alert_proto_parse_mail(msg, &mail) == 0) {
			intake_on_mail(in, &mail);
			return;
		}
		break;
	case ALERT_MSG_HOOK:
		if (alert_proto_parse_hook(msg, &hook) == 0) {
			if (in->hook != NULL)
				alert_hook_run(in->hook, hook.kind, hook.text, hook.text_len);
			else
				log_warn("alert kind=%s: a hook run asked for, but [alerts] hook "
				         "is not set for the queue process",
				         hook.kind);
			return;
		}
		break;
	}
	log_err("alert channel: malformed message type %u from the auth process; dropped",
	        (unsigned)ipc_msg_type(msg));
}

static void
intake_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct alert_intake *in = arg;
	struct ipc_msg *msg;

	for (int i = 0; i < ALERT_INTAKE_BURST; i++) {
		switch (ipc_msg_recv_record(in->fd, &msg)) {
		case IPC_RECORD_MSG:
			intake_on_record(in, msg);
			ipc_msg_free(msg);
			break;
		case IPC_RECORD_BAD:
			log_err("alert channel: a record that is not one frame; dropped");
			break;
		case IPC_RECORD_NONE:
			return;
		case IPC_RECORD_CLOSED:
			/* The master holds the other end: only its death gets
			 * here, and then we are told to stop anyway. */
			log_err("alert channel closed (%s); alerts are no longer mailed",
			        errno != 0 ? strerror(errno) : "end of file");
			event_del(in->readable);
			return;
		}
	}
}

struct alert_intake *
alert_intake_new(const struct alert_intake_params *p)
{
	struct alert_intake *in = xcalloc(1, sizeof(*in));

	in->base = p->base;
	in->pool = p->pool;
	in->spool_dir = xstrdup(p->spool_dir);
	in->hostname = xstrdup(p->hostname);
	in->fd = p->fd;
	LIST_INIT(&in->mails);
	if (p->hook != NULL)
		in->hook = alert_hook_new(p->base, p->hook, p->hook_timeout_ms);
	if (in->fd >= 0) {
		in->readable =
		        event_new(p->base, in->fd, EV_READ | EV_PERSIST, intake_on_readable, in);
		if (in->readable == NULL || event_add(in->readable, NULL) < 0)
			fatal("queue: cannot watch the alert channel");
	}
	return in;
}

void
alert_intake_set_hostname(struct alert_intake *in, const char *hostname)
{
	free(in->hostname);
	in->hostname = xstrdup(hostname);
}

void
alert_intake_free(struct alert_intake *in)
{
	struct intake_mail *m;

	if (in == NULL)
		return;
	/* The pool is gone: what it had queued has run, without its done. */
	while ((m = LIST_FIRST(&in->mails)) != NULL) {
		LIST_REMOVE(m, entry);
		intake_mail_free(m);
	}
	if (in->readable != NULL)
		event_free(in->readable);
	if (in->fd >= 0)
		close(in->fd);
	alert_hook_free(in->hook);
	free(in->spool_dir);
	free(in->hostname);
	free(in);
}
