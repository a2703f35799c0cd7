/* SPDX-License-Identifier: ISC */
/*
 * auth_admin.c - the master's questions to the auth process (auth_admin.h):
 * each request is answered from what this process holds, a frame per
 * record, on a bufferevent so that a long lockout list never blocks the
 * loop; LOCKOUTS of shared lockouts is answered as Redis gives them, page
 * by page (other requests meanwhile are answered at once: the master tells
 * the answers apart by id). A malformed request ends the channel: only the
 * master writes to it.
 */
#include "auth_admin.h"
#include "auth_throttle.h"
#include "../authwire/admin_proto.h"
#include "../lib/common.h"
#include "../lib/ipc.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* More than the registry holds (auth_server.c). */
#define AUTH_ADMIN_MAX_SOURCES 16

struct auth_admin {
	struct bufferevent *bev;
	struct auth_throttle *throttle;
	auth_admin_sources_cb *sources;
	void *arg;
	unsigned waiting; /* LOCKOUTS and UNLOCK waiting for Redis */
	bool dead;        /* freed by its owner: the last answer frees it */
};

/* One LOCKOUTS or UNLOCK being answered. */
struct admin_listing {
	struct auth_admin *a;
	uint32_t id;
	uint32_t count;
};

static uint64_t
admin_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static void
admin_send(struct auth_admin *a, struct ipc_msg *m)
{
	if (a->bev == NULL) {
		/* The channel closed under a listing: nobody to tell. */
		ipc_msg_free(m);
		return;
	}
	if (ipc_msg_send(m, bufferevent_get_output(a->bev)) < 0)
		fatal("auth: admin frame too big"); /* bounded texts: cannot happen */
	ipc_msg_free(m);
}

static void
admin_lockout_cb(void *arg, const struct auth_throttle_lockout *l)
{
	struct admin_listing *ls = arg;
	struct admin_lockout w = {
	        .id = ls->id,
	        .scope = auth_throttle_scope_name(l->scope),
	        .client = l->client,
	        .login = l->login,
	        .failures = l->failures,
	        .remaining_s = l->remaining_s,
	};

	if (ls->count++ < ADMIN_MAX_LOCKOUTS)
		admin_send(ls->a, admin_proto_lockout(&w));
}

static void
admin_lockouts_done(void *arg, bool local_only)
{
	struct admin_listing *ls = arg;

	struct auth_admin *a = ls->a;

	admin_send(a, admin_proto_done(ls->id, ls->count, local_only ? ADMIN_DONE_LOCAL_ONLY : 0));
	free(ls);
	if (--a->waiting == 0 && a->dead)
		free(a);
}

static void
admin_unlocked_cb(void *arg, unsigned ended, bool local_only)
{
	struct admin_listing *ls = arg;

	ls->count = ended;
	admin_lockouts_done(ls, local_only);
}

static void
admin_status(struct auth_admin *a, uint32_t id)
{
	struct auth_admin_source src[AUTH_ADMIN_MAX_SOURCES];
	size_t n = a->sources(a->arg, src, AR_NELEM(src));

	for (size_t i = 0; i < n; i++) {
		struct admin_source w = {id, src[i].name, src[i].state, src[i].seconds};
		admin_send(a, admin_proto_source(&w));
	}
	admin_send(a, admin_proto_done(id, (uint32_t)n, 0));
}

/* One request; -1 if it is malformed. */
static int
admin_request(struct auth_admin *a, struct ipc_msg *msg)
{
	struct admin_request req;
	struct admin_listing *ls;

	if (admin_proto_parse_request(msg, &req) < 0)
		return -1;
	switch (req.type) {
	case ADMIN_MSG_STATUS:
		admin_status(a, req.id);
		break;
	case ADMIN_MSG_LOCKOUTS:
		ls = xcalloc(1, sizeof(*ls));
		ls->a = a;
		ls->id = req.id;
		a->waiting++;
		auth_throttle_lockouts_all(a->throttle, admin_now_ms(), admin_lockout_cb,
		                           admin_lockouts_done, ls);
		break;
	default: /* UNLOCK */
		ls = xcalloc(1, sizeof(*ls));
		ls->a = a;
		ls->id = req.id;
		a->waiting++;
		/* Redis down: freed here, queued for the other gateways. */
		auth_throttle_unlock_all(a->throttle, req.what, admin_now_ms(), admin_unlocked_cb,
		                         ls);
		break;
	}
	return 0;
}

static void
admin_close(struct auth_admin *a)
{
	bufferevent_free(a->bev);
	a->bev = NULL;
}

static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct auth_admin *a = arg;
	struct ipc_msg *msg;
	enum parse_result pr;

	while ((pr = ipc_msg_take(bufferevent_get_input(bev), &msg)) == PARSE_OK) {
		int r = admin_request(a, msg);
		ipc_msg_free(msg);
		if (r < 0) {
			log_err("auth: malformed request on the admin channel; closing it");
			admin_close(a);
			return;
		}
	}
	if (pr == PARSE_INVALID) {
		log_err("auth: bad frame on the admin channel; closing it");
		admin_close(a);
	}
}

static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* The master went away: it restarts us with a new channel. */
	admin_close(arg);
}

struct auth_admin *
auth_admin_new(struct event_base *base, int fd, struct auth_throttle *throttle,
               auth_admin_sources_cb *sources, void *arg)
{
	struct auth_admin *a;

	if (fd < 0)
		return NULL;
	evutil_make_socket_nonblocking(fd);
	a = xcalloc(1, sizeof(*a));
	a->throttle = throttle;
	a->sources = sources;
	a->arg = arg;
	a->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (a->bev == NULL) {
		log_err("auth: cannot set up the admin channel");
		close(fd);
		free(a);
		return NULL;
	}
	bufferevent_setcb(a->bev, admin_read_cb, NULL, admin_event_cb, a);
	bufferevent_enable(a->bev, EV_READ);
	return a;
}

void
auth_admin_free(struct auth_admin *a)
{
	if (a == NULL)
		return;
	if (a->bev != NULL)
		bufferevent_free(a->bev);
	a->bev = NULL;
	if (a->waiting > 0) {
		a->dead = true; /* an answer still refers to it */
		return;
	}
	free(a);
}
