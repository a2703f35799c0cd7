/* SPDX-License-Identifier: ISC */
/*
 * ctlchan.c - the master's control channel to a child that reloads in place
 * (see ctlchan.h).
 *
 * Both ends are socket bufferevents with lib/ipc.h frames. The text goes in
 * DATA frames of at most CTLCHAN_CHUNK bytes (a frame holds less than
 * IPC_MAX_FRAME); the child collects them and runs its callback on END.
 * Anything out of order (DATA without CONFIG, more bytes than announced, a
 * frame the side does not expect) is a broken invariant between two
 * processes of ours: logged, and the channel closes; the master then still
 * sees the child through SIGCHLD and readiness.
 */
#include "ctlchan.h"
#include "config.h"
#include "ipc.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define CTLCHAN_CHUNK 60000
#define CTLCHAN_MSG_MAX 1000

enum ctl_msg {
	CTL_CONFIG = 1, /* u32 generation, u32 flags, str path, u32 length */
	CTL_DATA,       /* bytes */
	CTL_END,        /* u32 generation */
	CTL_DONE,       /* u32 generation, u32 ok, str message */
};

struct ctlchan {
	struct bufferevent *bev;
	bool master;
	ctlchan_apply_cb *apply;
	ctlchan_done_cb *done;
	void *arg;
	/* Child: the config being received. */
	bool receiving;
	uint32_t generation, flags;
	char *path;
	char *text;
	size_t len, expected;
};

static void
ctl_reset(struct ctlchan *ch)
{
	free(ch->path);
	free(ch->text);
	ch->path = ch->text = NULL;
	ch->len = ch->expected = 0;
	ch->receiving = false;
}

static void
ctl_send(struct ctlchan *ch, struct ipc_msg *m)
{
	if (ipc_msg_send(m, bufferevent_get_output(ch->bev)) < 0)
		fatal("ctlchan: frame too big"); /* chunks and messages are bounded */
	ipc_msg_free(m);
}

/* Child: a whole config is here; apply it and answer. */
static void
ctl_apply(struct ctlchan *ch)
{
	char err[CTLCHAN_MSG_MAX] = "";
	struct ctlchan_config c = {
	        .generation = ch->generation,
	        .flags = ch->flags,
	        .path = ch->path,
	        .text = ch->text != NULL ? ch->text : "",
	        .len = ch->len,
	};
	int r = ch->apply(ch->arg, &c, err, sizeof(err));
	struct ipc_msg *m = ipc_msg_new(CTL_DONE);

	ipc_msg_add_u32(m, ch->generation);
	ipc_msg_add_u32(m, r == 0);
	ipc_msg_add_str(m, r == 0 ? "" : err);
	ctl_send(ch, m);
	ctl_reset(ch);
}

/* Child: one frame. 0, or -1 when out of order. */
static int
ctl_child_msg(struct ctlchan *ch, struct ipc_msg *msg)
{
	const char *p;
	size_t n;
	uint32_t u;

	switch (ipc_msg_type(msg)) {
	case CTL_CONFIG:
		ctl_reset(ch);
		if (ipc_msg_get_u32(msg, &ch->generation) < 0 ||
		    ipc_msg_get_u32(msg, &ch->flags) < 0 || ipc_msg_get_str(msg, &p) < 0 ||
		    ipc_msg_get_u32(msg, &u) < 0 || u > CONFIG_TEXT_MAX)
			return -1;
		ch->path = xstrdup(p);
		ch->expected = u;
		ch->text = xmalloc(ch->expected + 1);
		ch->text[0] = '\0';
		ch->receiving = true;
		return 0;
	case CTL_DATA:
		if (!ch->receiving || ipc_msg_get_bytes(msg, &p, &n) < 0 ||
		    n > ch->expected - ch->len)
			return -1;
		memcpy(ch->text + ch->len, p, n);
		ch->len += n;
		ch->text[ch->len] = '\0';
		return 0;
	case CTL_END:
		if (!ch->receiving || ipc_msg_get_u32(msg, &u) < 0 || u != ch->generation ||
		    ch->len != ch->expected)
			return -1;
		ctl_apply(ch);
		return 0;
	default:
		return -1;
	}
}

/* Master: one frame. 0, or -1 when out of order. */
static int
ctl_master_msg(struct ctlchan *ch, struct ipc_msg *msg)
{
	uint32_t generation, ok;
	const char *text;

	if (ipc_msg_type(msg) != CTL_DONE || ipc_msg_get_u32(msg, &generation) < 0 ||
	    ipc_msg_get_u32(msg, &ok) < 0 || ipc_msg_get_str(msg, &text) < 0)
		return -1;
	ch->done(ch->arg, generation, ok != 0, text);
	return 0;
}

static void
ctl_close(struct ctlchan *ch, const char *why)
{
	if (why != NULL)
		log_err("ctlchan: %s; closing the control channel", why);
	bufferevent_disable(ch->bev, EV_READ | EV_WRITE);
	ctl_reset(ch);
}

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct ctlchan *ch = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct ipc_msg *msg;
	enum parse_result pr;

	while ((pr = ipc_msg_take(in, &msg)) == PARSE_OK) {
		int r = ch->master ? ctl_master_msg(ch, msg) : ctl_child_msg(ch, msg);
		ipc_msg_free(msg);
		if (r < 0) {
			ctl_close(ch, "a frame out of order");
			return;
		}
	}
	if (pr == PARSE_INVALID)
		ctl_close(ch, "a bad frame length");
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctlchan *ch = arg;

	/* The other end is gone: a child that died (the master restarts it
	 * with the current config), or a master that did (we follow it). */
	ctl_close(ch, (what & BEV_EVENT_ERROR) ? "socket error" : NULL);
}

static struct ctlchan *
ctl_new(struct event_base *base, int fd, bool master)
{
	struct ctlchan *ch = xcalloc(1, sizeof(*ch));

	ch->master = master;
	ch->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ch->bev == NULL) {
		close(fd);
		free(ch);
		return NULL;
	}
	bufferevent_setcb(ch->bev, ctl_on_read, NULL, ctl_on_event, ch);
	bufferevent_enable(ch->bev, EV_READ | EV_WRITE);
	return ch;
}

struct ctlchan *
ctlchan_child_new(struct event_base *base, int fd, ctlchan_apply_cb *apply, void *arg)
{
	struct ctlchan *ch = ctl_new(base, fd, false);

	if (ch != NULL) {
		ch->apply = apply;
		ch->arg = arg;
	}
	return ch;
}

struct ctlchan *
ctlchan_master_new(struct event_base *base, int fd, ctlchan_done_cb *done, void *arg)
{
	struct ctlchan *ch = ctl_new(base, fd, true);

	if (ch != NULL) {
		ch->done = done;
		ch->arg = arg;
	}
	return ch;
}

int
ctlchan_send_config(struct ctlchan *ch, uint32_t generation, uint32_t flags, const char *path,
                    const char *text, size_t len)
{
	struct ipc_msg *m;

	if (len > CONFIG_TEXT_MAX || !(bufferevent_get_enabled(ch->bev) & EV_WRITE))
		return -1;
	m = ipc_msg_new(CTL_CONFIG);
	ipc_msg_add_u32(m, generation);
	ipc_msg_add_u32(m, flags);
	ipc_msg_add_str(m, path);
	ipc_msg_add_u32(m, (uint32_t)len);
	ctl_send(ch, m);
	for (size_t off = 0; off < len; off += CTLCHAN_CHUNK) {
		size_t n = len - off < CTLCHAN_CHUNK ? len - off : CTLCHAN_CHUNK;
		m = ipc_msg_new(CTL_DATA);
		ipc_msg_add_bytes(m, text + off, n);
		ctl_send(ch, m);
	}
	m = ipc_msg_new(CTL_END);
	ipc_msg_add_u32(m, generation);
	ctl_send(ch, m);
	return 0;
}

int
ctlchan_fd(const struct ctlchan *ch)
{
	return (int)bufferevent_getfd(ch->bev);
}

void
ctlchan_free(struct ctlchan *ch)
{
	if (ch == NULL)
		return;
	ctl_reset(ch);
	bufferevent_free(ch->bev);
	free(ch);
}
