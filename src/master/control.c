/* SPDX-License-Identifier: ISC */
/*
 * control.c - the master's control socket (control.h).
 *
 * The master runs as root, so this file trusts nothing it reads: a client
 * must be root (SO_PEERCRED) and sends one short line; the auth process's
 * answers are lib/ipc frames decoded strictly (admin_proto.h), the queue's
 * one line of "key=number" pairs; every string shown is escaped (log_escape
 * in text, jsonw in JSON); every wait has a deadline, after which the answer
 * goes out with what is missing marked as not answering.
 */
#include "control.h"
#include "../authwire/admin_proto.h"
#include "../lib/build_info.h"
#include "../lib/ipc.h"
#include "../lib/jsonw.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CONTROL_MAX_LINE 512
/* unlock's argument: a login (AUTH_MAX_LOGIN) fits in the request line. */
#define CONTROL_MAX_ARG 400
#define CONTROL_MAX_CONNS 16
/* How long the auth process and the queue get to answer. */
#define CONTROL_DEADLINE_S 5
/* How long a client gets to send its line. */
#define CONTROL_READ_S 10
#define CONTROL_MAX_SOURCES 16
#define CONTROL_MAX_QUEUE_KV 16
#define CONTROL_MAX_QUEUE_LINE 512

enum ctl_cmd { CMD_STATUS, CMD_LOCKOUTS, CMD_UNLOCK, CMD_RELOAD, CMD_STOP };

static const struct {
	const char *name;
	bool takes_arg;
} commands[] = {
        [CMD_STATUS] = {"status", false}, [CMD_LOCKOUTS] = {"lockouts", false},
        [CMD_UNLOCK] = {"unlock", true},  [CMD_RELOAD] = {"reload", false},
        [CMD_STOP] = {"stop", false},
};

struct ctl_source {
	char *name, *state;
	uint32_t seconds;
};

struct ctl_lock {
	char *scope, *client, *login;
	uint32_t failures, remaining_s;
};

struct ctl_kv {
	char key[24];
	unsigned long long value;
};

struct ctl_conn {
	LIST_ENTRY(ctl_conn) entry;
	struct control *c;
	struct bufferevent *bev;
	struct event *deadline;
	enum ctl_cmd cmd;
	bool json;
	bool stopping; /* answered "stop": kept until the master exits */
	char arg[CONTROL_MAX_ARG + 1];
	/* the auth process's part */
	uint32_t auth_id; /* the question waiting, 0 if none */
	bool auth_answered;
	uint32_t auth_count;
	bool auth_local_only; /* DONE's ADMIN_DONE_LOCAL_ONLY */
	struct ctl_source sources[CONTROL_MAX_SOURCES];
	size_t n_sources;
	struct ctl_lock *locks;
	size_t n_locks;
	/* the queue's part (status) */
	struct bufferevent *qbev;
	bool queue_answered;
	struct ctl_kv qkv[CONTROL_MAX_QUEUE_KV];
	size_t n_qkv;
};

struct control {
	struct event_base *base;
	struct evconnlistener *listener;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char queue_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const struct control_ops *ops;
	void *arg;
	struct bufferevent *auth; /* the admin channel, NULL while none */
	uint32_t next_id;
	LIST_HEAD(, ctl_conn) conns;
	unsigned n_conns;
};

static void conn_free(struct ctl_conn *);
static void conn_maybe_answer(struct ctl_conn *);

/* ------------------------------------------------------------- binding */

int
control_bind(const char *spool_dir, const char **error_r)
{
	static char err[300];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", spool_dir,
	                 CONTROL_SOCKET_NAME);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		*error_r = "spool_dir is too long for a UNIX socket path";
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	unlink(sun.sun_path);
	/* Never a moment with a wider mode: bind under a strict umask. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r != 0 || chmod(sun.sun_path, 0600) != 0 || listen(fd, 16) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "control socket %s: %s", sun.sun_path, strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* ------------------------------------------------------------ rendering */

#define ISO_TIME "%Y-%m-%dT%H:%M:%SZ"

static const char *
esc(const char *s, char *buf, size_t size)
{
	return log_escape_str(s != NULL ? s : "", buf, size);
}

static void
render_status(struct ctl_conn *conn, struct evbuffer *out)
{
	struct control *c = conn->c;
	struct control_status st;
	char started[32], b1[700], b2[700], b3[300];
	unsigned sessions = 0;
	int64_t now = (int64_t)time(NULL);

	memset(&st, 0, sizeof(st));
	c->ops->status(c->arg, &st);
	utc_strftime(st.started, ISO_TIME, started, sizeof(started));
	for (size_t i = 0; i < st.n_listeners; i++)
		sessions += st.listeners[i].sessions;
	const struct control_child *auth = NULL, *queue = NULL;
	unsigned workers_up = 0, workers = 0;
	for (size_t i = 0; i < st.n_children; i++) {
		const struct control_child *k = &st.children[i];
		if (strcmp(k->kind, "auth") == 0)
			auth = k;
		else if (strcmp(k->kind, "queue") == 0)
			queue = k;
		else if (strcmp(k->kind, "smtpd") == 0) {
			workers++;
			workers_up += k->pid != 0 && k->up;
		}
	}

	evbuffer_add_printf(out, "ok\n");
	if (!conn->json) {
		evbuffer_add_printf(out,
		                    "authrelay version=%s pid=%d started=%s uptime=%llds "
		                    "generation=%u sessions=%u workers=%u workers_up=%u\n",
		                    AUTHRELAY_VERSION, (int)st.pid, started,
		                    (long long)(now - st.started), st.generation, sessions, workers,
		                    workers_up);
		for (size_t i = 0; i < st.n_listeners; i++) {
			const struct control_listener *l = &st.listeners[i];
			evbuffer_add_printf(
			        out, "listener name=%s address=%s role=%s tls=%s sessions=%u\n",
			        esc(l->name, b1, sizeof(b1)), esc(l->address, b2, sizeof(b2)),
			        l->role, l->tls, l->sessions);
		}
		for (size_t i = 0; i < st.n_children; i++) {
			const struct control_child *k = &st.children[i];
			const char *state = k->pid == 0 ? "down" : k->up ? "up" : "starting";
			if (strcmp(k->kind, "smtpd") == 0)
				evbuffer_add_printf(out,
				                    "worker index=%u pid=%d state=%s restarts=%u\n",
				                    k->index, (int)k->pid, state, k->restarts);
			else
				evbuffer_add_printf(out,
				                    "process name=%s pid=%d state=%s restarts=%u\n",
				                    k->kind, (int)k->pid, state, k->restarts);
		}
		if (!conn->auth_answered)
			evbuffer_add_printf(out, "source state=not_answering\n");
		for (size_t i = 0; i < conn->n_sources; i++)
			evbuffer_add_printf(out, "source name=%s state=%s for=%us\n",
			                    esc(conn->sources[i].name, b1, sizeof(b1)),
			                    esc(conn->sources[i].state, b3, sizeof(b3)),
			                    conn->sources[i].seconds);
		evbuffer_add_printf(out, "queue");
		if (!conn->queue_answered)
			evbuffer_add_printf(out, " state=not_answering");
		for (size_t i = 0; i < conn->n_qkv; i++)
			evbuffer_add_printf(out, " %s=%llu", conn->qkv[i].key, conn->qkv[i].value);
		evbuffer_add_printf(out, "\n");
		goto out;
	}

	struct jsonw w;
	jsonw_init(&w, out);
	jsonw_object_begin(&w);
	jsonw_kv_str(&w, "version", AUTHRELAY_VERSION);
	jsonw_kv_int(&w, "pid", st.pid);
	jsonw_kv_str(&w, "started", started);
	jsonw_kv_int(&w, "uptime", now - st.started);
	jsonw_kv_int(&w, "generation", st.generation);
	jsonw_kv_int(&w, "sessions", sessions);
	jsonw_key(&w, "listeners");
	jsonw_array_begin(&w);
	for (size_t i = 0; i < st.n_listeners; i++) {
		const struct control_listener *l = &st.listeners[i];
		jsonw_object_begin(&w);
		jsonw_kv_str(&w, "name", l->name);
		jsonw_kv_str(&w, "address", l->address);
		jsonw_kv_str(&w, "role", l->role);
		jsonw_kv_str(&w, "tls", l->tls);
		jsonw_kv_int(&w, "sessions", l->sessions);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_key(&w, "workers");
	jsonw_array_begin(&w);
	for (size_t i = 0; i < st.n_children; i++) {
		const struct control_child *k = &st.children[i];
		if (strcmp(k->kind, "smtpd") != 0)
			continue;
		jsonw_object_begin(&w);
		jsonw_kv_int(&w, "index", k->index);
		jsonw_kv_int(&w, "pid", k->pid);
		jsonw_kv_bool(&w, "up", k->pid != 0 && k->up);
		jsonw_kv_int(&w, "restarts", k->restarts);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_key(&w, "auth");
	jsonw_object_begin(&w);
	jsonw_kv_int(&w, "pid", auth != NULL ? auth->pid : 0);
	jsonw_kv_bool(&w, "up", auth != NULL && auth->pid != 0 && auth->up);
	jsonw_kv_int(&w, "restarts", auth != NULL ? auth->restarts : 0);
	jsonw_kv_bool(&w, "answering", conn->auth_answered);
	jsonw_key(&w, "sources");
	jsonw_array_begin(&w);
	for (size_t i = 0; i < conn->n_sources; i++) {
		jsonw_object_begin(&w);
		jsonw_kv_str(&w, "name", conn->sources[i].name);
		jsonw_kv_str(&w, "state", conn->sources[i].state);
		jsonw_kv_int(&w, "seconds", conn->sources[i].seconds);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_object_end(&w);
	/* Other processes (the TLS key process) by their kind. */
	for (size_t i = 0; i < st.n_children; i++) {
		const struct control_child *k = &st.children[i];
		if (k == auth || k == queue || strcmp(k->kind, "smtpd") == 0)
			continue;
		jsonw_key(&w, k->kind);
		jsonw_object_begin(&w);
		jsonw_kv_int(&w, "pid", k->pid);
		jsonw_kv_bool(&w, "up", k->pid != 0 && k->up);
		jsonw_kv_int(&w, "restarts", k->restarts);
		jsonw_object_end(&w);
	}
	jsonw_key(&w, "queue");
	jsonw_object_begin(&w);
	jsonw_kv_int(&w, "pid", queue != NULL ? queue->pid : 0);
	jsonw_kv_bool(&w, "up", queue != NULL && queue->pid != 0 && queue->up);
	jsonw_kv_int(&w, "restarts", queue != NULL ? queue->restarts : 0);
	jsonw_kv_bool(&w, "answering", conn->queue_answered);
	for (size_t i = 0; i < conn->n_qkv; i++)
		jsonw_kv_int(&w, conn->qkv[i].key, (int64_t)conn->qkv[i].value);
	jsonw_object_end(&w);
	jsonw_object_end(&w);
	evbuffer_add(out, "\n", 1);
out:
	free(st.listeners);
	free(st.children);
}

static void
render_lockouts(struct ctl_conn *conn, struct evbuffer *out)
{
	char until[32], b1[300], b2[300], b3[ADMIN_MAX_TEXT * 4 + 8];
	int64_t now = (int64_t)time(NULL);
	struct jsonw w;

	if (!conn->auth_answered) {
		evbuffer_add_printf(out, "error %d the auth process did not answer\n", EX_TEMPFAIL);
		return;
	}
	evbuffer_add_printf(out, "ok lockouts=%u%s\n", conn->auth_count,
	                    conn->auth_local_only ? " local_only=yes" : "");
	if (conn->auth_local_only && !conn->json)
		evbuffer_add_printf(out, "note: local only: redis does not answer; the other "
		                         "gateways' lockouts are not listed\n");
	if (conn->json) {
		jsonw_init(&w, out);
		jsonw_object_begin(&w);
		jsonw_kv_int(&w, "count", conn->auth_count);
		/* Only then: the listing of a lone gateway keeps its shape. */
		if (conn->auth_local_only)
			jsonw_kv_bool(&w, "local_only", true);
		jsonw_key(&w, "lockouts");
		jsonw_array_begin(&w);
	}
	for (size_t i = 0; i < conn->n_locks; i++) {
		const struct ctl_lock *l = &conn->locks[i];
		utc_strftime(now + l->remaining_s, ISO_TIME, until, sizeof(until));
		if (!conn->json) {
			/* user=- for a client's lockout: any login. */
			evbuffer_add_printf(out,
			                    "lockout scope=%s client=%s user=%s%s%s failures=%u "
			                    "until=%s remaining=%us\n",
			                    esc(l->scope, b1, sizeof(b1)),
			                    l->client[0] ? esc(l->client, b2, sizeof(b2)) : "-",
			                    l->login[0] ? "\"" : "",
			                    l->login[0] ? esc(l->login, b3, sizeof(b3)) : "-",
			                    l->login[0] ? "\"" : "", l->failures, until,
			                    l->remaining_s);
			continue;
		}
		jsonw_object_begin(&w);
		jsonw_kv_str(&w, "scope", l->scope);
		jsonw_kv_str(&w, "client", l->client[0] ? l->client : NULL);
		jsonw_kv_str(&w, "login", l->login[0] ? l->login : NULL);
		jsonw_kv_int(&w, "failures", l->failures);
		jsonw_kv_str(&w, "until", until);
		jsonw_kv_int(&w, "remaining", l->remaining_s);
		jsonw_object_end(&w);
	}
	if (conn->json) {
		jsonw_array_end(&w);
		jsonw_object_end(&w);
		evbuffer_add(out, "\n", 1);
	}
}

/* ----------------------------------------------------------- connections */

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *conn = arg;

	if (!conn->stopping)
		conn_free(conn);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_free(arg);
}

/* The answer is complete: send it, then close (stop: stay open). */
static void
conn_send(struct ctl_conn *conn, struct evbuffer *out)
{
	if (conn->deadline != NULL)
		event_del(conn->deadline);
	bufferevent_disable(conn->bev, EV_READ);
	bufferevent_setcb(conn->bev, NULL, conn_write_cb, conn_event_cb, conn);
	bufferevent_write_buffer(conn->bev, out);
}

static void
conn_answer(struct ctl_conn *conn)
{
	struct evbuffer *out = evbuffer_new();

	switch (conn->cmd) {
	case CMD_STATUS:
		render_status(conn, out);
		break;
	case CMD_LOCKOUTS:
		render_lockouts(conn, out);
		break;
	case CMD_UNLOCK:
		if (!conn->auth_answered)
			evbuffer_add_printf(out, "error %d the auth process did not answer\n",
			                    EX_TEMPFAIL);
		else if (conn->auth_local_only)
			evbuffer_add_printf(out,
			                    "ok unlocked=%u note=\"unlocked here; other gateways "
			                    "when Redis answers\"\n",
			                    conn->auth_count);
		else if (conn->auth_count == 0)
			evbuffer_add_printf(
			        out, "error 1 nothing is locked for that login or address\n");
		else
			evbuffer_add_printf(out, "ok unlocked=%u\n", conn->auth_count);
		break;
	default:
		break;
	}
	conn_send(conn, out);
	evbuffer_free(out);
}

static void
conn_maybe_answer(struct ctl_conn *conn)
{
	if (conn->auth_id != 0 || conn->qbev != NULL)
		return;
	conn_answer(conn);
}

static void
conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_conn *conn = arg;

	if (conn->auth_id != 0)
		log_warn("control: the auth process did not answer in %d s", CONTROL_DEADLINE_S);
	if (conn->qbev != NULL)
		log_warn("control: the queue did not answer in %d s", CONTROL_DEADLINE_S);
	conn->auth_id = 0;
	if (conn->qbev != NULL) {
		bufferevent_free(conn->qbev);
		conn->qbev = NULL;
	}
	conn_answer(conn);
}

static void
conn_free(struct ctl_conn *conn)
{
	LIST_REMOVE(conn, entry);
	conn->c->n_conns--;
	if (conn->deadline != NULL)
		event_free(conn->deadline);
	if (conn->qbev != NULL)
		bufferevent_free(conn->qbev);
	for (size_t i = 0; i < conn->n_sources; i++) {
		free(conn->sources[i].name);
		free(conn->sources[i].state);
	}
	for (size_t i = 0; i < conn->n_locks; i++) {
		free(conn->locks[i].scope);
		free(conn->locks[i].client);
		free(conn->locks[i].login);
	}
	free(conn->locks);
	bufferevent_free(conn->bev);
	free(conn);
}

/* ------------------------------------------------------ the auth process */

static struct ctl_conn *
auth_waiter(struct control *c, uint32_t id)
{
	struct ctl_conn *conn;

	LIST_FOREACH(conn, &c->conns, entry)
	if (conn->auth_id != 0 && conn->auth_id == id)
		return conn;
	return NULL;
}

/* Questions waiting on a channel that is gone get no answer from it. */
static void
auth_forget(struct control *c)
{
	struct ctl_conn *conn, *next;

	for (conn = LIST_FIRST(&c->conns); conn != NULL; conn = next) {
		next = LIST_NEXT(conn, entry);
		if (conn->auth_id != 0) {
			conn->auth_id = 0;
			conn_maybe_answer(conn);
		}
	}
}

static void
auth_close(struct control *c)
{
	if (c->auth != NULL)
		bufferevent_free(c->auth);
	c->auth = NULL;
	auth_forget(c);
}

/* One message from the auth process; -1 if it is malformed. */
static int
auth_message(struct control *c, struct ipc_msg *msg)
{
	struct admin_source s;
	struct admin_lockout l;
	struct ctl_conn *conn;
	uint32_t id, count, flags;

	switch (ipc_msg_type(msg)) {
	case ADMIN_MSG_SOURCE:
		if (admin_proto_parse_source(msg, &s) < 0)
			return -1;
		conn = auth_waiter(c, s.id);
		if (conn == NULL)
			return 0; /* its client has gone */
		if (conn->cmd != CMD_STATUS || conn->n_sources == CONTROL_MAX_SOURCES)
			return -1;
		conn->sources[conn->n_sources++] =
		        (struct ctl_source){xstrdup(s.name), xstrdup(s.state), s.seconds};
		return 0;
	case ADMIN_MSG_LOCKOUT:
		if (admin_proto_parse_lockout(msg, &l) < 0)
			return -1;
		conn = auth_waiter(c, l.id);
		if (conn == NULL)
			return 0;
		if (conn->cmd != CMD_LOCKOUTS || conn->n_locks == ADMIN_MAX_LOCKOUTS)
			return -1;
		if ((conn->n_locks & (conn->n_locks - 1)) == 0)
			conn->locks =
			        xrealloc(conn->locks, (conn->n_locks ? conn->n_locks * 2 : 1) *
			                                      sizeof(*conn->locks));
		conn->locks[conn->n_locks++] =
		        (struct ctl_lock){xstrdup(l.scope), xstrdup(l.client), xstrdup(l.login),
		                          l.failures, l.remaining_s};
		return 0;
	case ADMIN_MSG_DONE:
		if (admin_proto_parse_done(msg, &id, &count, &flags) < 0)
			return -1;
		conn = auth_waiter(c, id);
		if (conn == NULL)
			return 0;
		conn->auth_id = 0;
		conn->auth_answered = true;
		conn->auth_count = count;
		conn->auth_local_only = (flags & ADMIN_DONE_LOCAL_ONLY) != 0;
		conn_maybe_answer(conn);
		return 0;
	default:
		return -1;
	}
}

static void
auth_read_cb(struct bufferevent *bev, void *arg)
{
	struct control *c = arg;
	struct ipc_msg *msg;
	enum parse_result pr;

	while ((pr = ipc_msg_take(bufferevent_get_input(bev), &msg)) == PARSE_OK) {
		int r = auth_message(c, msg);
		ipc_msg_free(msg);
		if (r < 0) {
			log_err("control: malformed message from the auth process; closing the "
			        "admin channel");
			auth_close(c);
			return;
		}
	}
	if (pr == PARSE_INVALID) {
		log_err("control: bad frame from the auth process; closing the admin channel");
		auth_close(c);
	}
}

static void
auth_event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* The auth process exited; its restart brings a new channel. */
	auth_close(arg);
}

void
control_set_auth(struct control *c, int fd)
{
	auth_close(c);
	c->auth = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->auth == NULL) {
		log_err("control: cannot set up the admin channel");
		close(fd);
		return;
	}
	bufferevent_setcb(c->auth, auth_read_cb, NULL, auth_event_cb, c);
	bufferevent_enable(c->auth, EV_READ);
}

/* Ask the auth process; 0, or -1 if there is no channel. */
static int
auth_ask(struct ctl_conn *conn, enum admin_msg_type type)
{
	struct control *c = conn->c;
	struct admin_request req = {.type = type, .what = conn->arg};

	if (c->auth == NULL)
		return -1;
	if (++c->next_id == 0)
		c->next_id = 1;
	req.id = c->next_id;
	struct ipc_msg *m = admin_proto_request(&req);
	int r = ipc_msg_send(m, bufferevent_get_output(c->auth));
	ipc_msg_free(m);
	if (r < 0)
		return -1;
	conn->auth_id = req.id;
	return 0;
}

/* ------------------------------------------------------------- the queue */

/* "ok key=N key=N ...": every pair checked, nothing else accepted. */
static int
queue_parse(struct ctl_conn *conn, char *line)
{
	char *save = NULL, *w;

	if (strncmp(line, "ok ", 3) != 0)
		return -1;
	for (w = strtok_r(line + 3, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		size_t klen = eq != NULL ? (size_t)(eq - w) : 0;
		if (klen == 0 || klen >= sizeof(conn->qkv[0].key) ||
		    strspn(w, "abcdefghijklmnopqrstuvwxyz_") != klen || eq[1] == '\0' ||
		    strspn(eq + 1, "0123456789") != strlen(eq + 1) || strlen(eq + 1) > 18 ||
		    conn->n_qkv == CONTROL_MAX_QUEUE_KV)
			return -1;
		struct ctl_kv *kv = &conn->qkv[conn->n_qkv++];
		memcpy(kv->key, w, klen);
		kv->key[klen] = '\0';
		kv->value = strtoull(eq + 1, NULL, 10);
	}
	return 0;
}

static void
queue_done(struct ctl_conn *conn)
{
	bufferevent_free(conn->qbev);
	conn->qbev = NULL;
	conn_maybe_answer(conn);
}

static void
queue_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_LF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_QUEUE_LINE)
			queue_done(conn);
		return;
	}
	if (strlen(line) <= CONTROL_MAX_QUEUE_LINE && queue_parse(conn, line) == 0)
		conn->queue_answered = true;
	else
		log_err("control: unexpected answer from the queue's control socket");
	free(line);
	queue_done(conn);
}

static void
queue_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *conn = arg;

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_write(bev, "counts\n", 7);
		return;
	}
	queue_done(conn);
}

static void
queue_ask(struct ctl_conn *conn)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", conn->c->queue_path);
	conn->qbev = bufferevent_socket_new(conn->c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (conn->qbev == NULL)
		return;
	bufferevent_setcb(conn->qbev, queue_read_cb, NULL, queue_event_cb, conn);
	bufferevent_enable(conn->qbev, EV_READ);
	if (bufferevent_socket_connect(conn->qbev, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		bufferevent_free(conn->qbev);
		conn->qbev = NULL;
	}
}

/* ------------------------------------------------------------- requests */

static void
conn_error(struct ctl_conn *conn, int status, const char *text)
{
	struct evbuffer *out = evbuffer_new();

	evbuffer_add_printf(out, "error %d %s\n", status, text);
	conn_send(conn, out);
	evbuffer_free(out);
}

/* One request line (at most CONTROL_MAX_LINE bytes). */
static void
conn_request(struct ctl_conn *conn, char *line)
{
	struct control *c = conn->c;
	char *words[4], *save = NULL;
	int n = 0;
	size_t k;

	for (char *w = strtok_r(line, " \t\r", &save); w != NULL && n < 4;
	     w = strtok_r(NULL, " \t\r", &save))
		words[n++] = w;
	if (n > 0 && strcmp(words[0], "json") == 0) {
		conn->json = true;
		memmove(words, words + 1, (size_t)--n * sizeof(words[0]));
	}
	for (k = 0; n > 0 && k < AR_NELEM(commands); k++)
		if (strcmp(words[0], commands[k].name) == 0)
			break;
	if (n == 0 || k == AR_NELEM(commands) || n != (commands[k].takes_arg ? 2 : 1) ||
	    (commands[k].takes_arg && strlen(words[1]) > CONTROL_MAX_ARG)) {
		conn_error(conn, EX_USAGE, "unknown command or wrong arguments");
		return;
	}
	conn->cmd = (enum ctl_cmd)k;
	if (commands[k].takes_arg)
		snprintf(conn->arg, sizeof(conn->arg), "%s", words[1]);
	char arg[CONTROL_MAX_ARG * 4 + 8];
	log_info("control: %s%s%s", commands[k].name, commands[k].takes_arg ? " " : "",
	         commands[k].takes_arg ? esc(conn->arg, arg, sizeof(arg)) : "");

	switch (conn->cmd) {
	case CMD_STATUS:
		(void)auth_ask(conn, ADMIN_MSG_STATUS);
		queue_ask(conn);
		break;
	case CMD_LOCKOUTS:
		(void)auth_ask(conn, ADMIN_MSG_LOCKOUTS);
		break;
	case CMD_UNLOCK:
		(void)auth_ask(conn, ADMIN_MSG_UNLOCK);
		break;
	case CMD_RELOAD: {
		char *errors = NULL;
		struct evbuffer *out = evbuffer_new();
		if (c->ops->reload(c->arg, &errors) == 0) {
			evbuffer_add_printf(out, "ok reloaded\n");
		} else {
			/* One line: the client prints it; the log has them all. */
			for (char *p = errors; p != NULL && *p; p++)
				if (*p == '\n' || (unsigned char)*p < 0x20)
					*p = ' ';
			evbuffer_add_printf(out,
			                    "error %d the configuration has errors, the "
			                    "running one stays: %.400s\n",
			                    EX_CONFIG, errors != NULL ? errors : "");
		}
		free(errors);
		conn_send(conn, out);
		evbuffer_free(out);
		return;
	}
	case CMD_STOP: {
		struct evbuffer *out = evbuffer_new();
		evbuffer_add_printf(out, "ok stopping\n");
		conn->stopping = true;
		conn_send(conn, out);
		evbuffer_free(out);
		c->ops->stop(c->arg);
		return;
	}
	}
	struct timeval tv = {CONTROL_DEADLINE_S, 0};
	event_add(conn->deadline, &tv);
	conn_maybe_answer(conn);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_LF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_LINE)
			conn_error(conn, EX_USAGE, "request too long");
		return;
	}
	bufferevent_disable(bev, EV_READ);
	if (strlen(line) > CONTROL_MAX_LINE)
		conn_error(conn, EX_USAGE, "request too long");
	else
		conn_request(conn, line);
	free(line);
}

/* Only root, or the gateway's own uid when it runs without root. */
static bool
conn_peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg)
{
	struct control *c = arg;

	if (!conn_peer_allowed(fd)) {
		static const char msg[] = "error 77 permission denied\n";
		log_warn("control: connection refused: the peer is not root");
		(void)!write(fd, msg, sizeof(msg) - 1);
		close(fd);
		return;
	}
	if (c->n_conns >= CONTROL_MAX_CONNS) {
		static const char msg[] = "error 75 busy\n";
		(void)!write(fd, msg, sizeof(msg) - 1);
		close(fd);
		return;
	}
	struct ctl_conn *conn = xcalloc(1, sizeof(*conn));
	conn->c = c;
	conn->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	conn->deadline = evtimer_new(c->base, conn_deadline_cb, conn);
	if (conn->bev == NULL || conn->deadline == NULL) {
		if (conn->bev != NULL)
			bufferevent_free(conn->bev);
		else
			close(fd);
		if (conn->deadline != NULL)
			event_free(conn->deadline);
		free(conn);
		return;
	}
	LIST_INSERT_HEAD(&c->conns, conn, entry);
	c->n_conns++;
	bufferevent_setcb(conn->bev, conn_read_cb, NULL, conn_event_cb, conn);
	bufferevent_set_timeouts(conn->bev, &(struct timeval){CONTROL_READ_S, 0},
	                         &(struct timeval){30, 0});
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
}

/* ------------------------------------------------------------------ life */

struct control *
control_new(struct event_base *base, int listen_fd, const char *spool_dir,
            const struct control_ops *ops, void *arg)
{
	struct control *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->ops = ops;
	c->arg = arg;
	LIST_INIT(&c->conns);
	snprintf(c->path, sizeof(c->path), "%s/%s", spool_dir, CONTROL_SOCKET_NAME);
	snprintf(c->queue_path, sizeof(c->queue_path), "%s/private/queue", spool_dir);
	/* backlog 0: control_bind() called listen(). */
	c->listener =
	        evconnlistener_new(base, control_accept_cb, c,
	                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (c->listener == NULL) {
		log_err("control: cannot listen on %s", c->path);
		close(listen_fd);
	}
	return c;
}

void
control_free(struct control *c)
{
	struct ctl_conn *conn;

	if (c == NULL)
		return;
	if (c->listener != NULL) {
		evconnlistener_free(c->listener);
		unlink(c->path);
	}
	if (c->auth != NULL)
		bufferevent_free(c->auth);
	c->auth = NULL;
	while ((conn = LIST_FIRST(&c->conns)) != NULL) {
		/* A stop's "ok stopping" may still wait: the client must
		 * see it before the end of file that tells it we are gone. */
		evbuffer_write(bufferevent_get_output(conn->bev), bufferevent_getfd(conn->bev));
		conn_free(conn);
	}
	free(c);
}

void
control_close_in_child(struct control *c)
{
	struct ctl_conn *conn;

	if (c == NULL)
		return;
	if (c->listener != NULL)
		close(evconnlistener_get_fd(c->listener));
	if (c->auth != NULL)
		close(bufferevent_getfd(c->auth));
	LIST_FOREACH(conn, &c->conns, entry)
	{
		close(bufferevent_getfd(conn->bev));
		if (conn->qbev != NULL)
			close(bufferevent_getfd(conn->qbev));
	}
}
