/* SPDX-License-Identifier: ISC */
/*
 * test_shared_redis.c - the Redis link's reply FIFO against a scripted peer
 * on loopback, in the test's own event loop: the handshake (AUTH, SELECT,
 * PING) in order, pipelined replies split anywhere answering their commands
 * in order and never inside shared_redis_command(), a reply to no command,
 * a malformed reply, an answer that does not come in time, and the peer
 * closing with commands pending: each an outage, every pending callback
 * answered NULL once, the link back after a second.
 *
 * A real redis-server is in the integration tests (test_scale*.py); a
 * script is used here for what no real server does on demand (a reply cut
 * in two, a reply to nothing, garbage).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "auth/shared_redis.h"
#include "support/ut_loop.h"

#define MAX_ANSWERS 16

/* The scripted peer: one connection at a time, what it read so far. */
struct peer {
	struct evconnlistener *listener;
	struct bufferevent *bev;
	struct evbuffer *got;
	unsigned accepted;
	int port;
};

struct answer {
	bool called;
	bool null;
	char text[32];
};

struct t {
	struct event_base *base;
	struct peer peer;
	struct shared_config sc;
	char redis[64];
	struct shared_redis *sr;
	struct answer answers[MAX_ANSWERS];
	unsigned n_called;
	bool in_command; /* inside shared_redis_command() */
	bool called_inside;
	unsigned ups;
};

static struct t *T;

static void
peer_read_cb(struct bufferevent *bev, void *arg)
{
	struct peer *p = arg;

	evbuffer_add_buffer(p->got, bufferevent_get_input(bev));
}

static void
peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct peer *p = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		p->bev = NULL;
	}
}

static void
peer_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
               void *arg)
{
	struct peer *p = arg;

	if (p->bev != NULL)
		bufferevent_free(p->bev);
	p->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(p->bev);
	evbuffer_drain(p->got, evbuffer_get_length(p->got));
	bufferevent_setcb(p->bev, peer_read_cb, NULL, peer_event_cb, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	p->accepted++;
}

static void
peer_send(struct t *t, const char *text)
{
	assert_non_null(t->peer.bev);
	bufferevent_write(t->peer.bev, text, strlen(text));
}

/* The peer received exactly want since its last accept. */
struct want {
	struct t *t;
	const char *text;
};

static bool
peer_got_cond(void *arg)
{
	struct want *w = arg;
	struct evbuffer *got = w->t->peer.got;
	size_t n = strlen(w->text);

	return evbuffer_get_length(got) >= n;
}

static void
peer_expect(struct t *t, const char *text)
{
	struct want w = {t, text};
	size_t n = strlen(text);

	ut_loop_wait(t->base, peer_got_cond, &w);
	assert_int_equal(evbuffer_get_length(t->peer.got), n);
	assert_memory_equal(evbuffer_pullup(t->peer.got, -1), text, n);
	evbuffer_drain(t->peer.got, n);
}

static void
on_up(void *arg)
{
	struct t *t = arg;

	t->ups++;
}

static void
on_answer(const redisReply *reply, void *arg)
{
	struct answer *a = arg;

	assert_false(a->called); /* exactly once */
	if (T->in_command)
		T->called_inside = true;
	a->called = true;
	a->null = reply == NULL;
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
		snprintf(a->text, sizeof(a->text), ":%lld", reply->integer);
	else if (reply != NULL && reply->str != NULL)
		snprintf(a->text, sizeof(a->text), "%.*s", (int)reply->len, reply->str);
	T->n_called++;
}

static void
command(struct t *t, unsigned i, const char *verb, const char *key)
{
	const char *argv[2] = {verb, key};
	size_t len[2] = {strlen(verb), key != NULL ? strlen(key) : 0};

	t->in_command = true;
	shared_redis_command(t->sr, key != NULL ? 2 : 1, argv, len, on_answer, &t->answers[i]);
	t->in_command = false;
}

struct count {
	struct t *t;
	unsigned n;
};

static bool
n_called_cond(void *arg)
{
	struct count *c = arg;

	return c->t->n_called >= c->n;
}

static void
wait_called(struct t *t, unsigned n)
{
	struct count c = {t, n};

	ut_loop_wait(t->base, n_called_cond, &c);
	assert_int_equal(t->n_called, n);
}

static bool
up_cond(void *arg)
{
	struct t *t = arg;

	return shared_redis_up(t->sr);
}

static bool
down_cond(void *arg)
{
	struct t *t = arg;

	return !shared_redis_up(t->sr);
}

/* A peer listening, a link to it, the handshake answered. */
static int
setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	T = t;
	t->base = event_base_new();
	t->peer.got = evbuffer_new();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->peer.listener = evconnlistener_new_bind(t->base, peer_accept_cb, &t->peer,
	                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	                                           (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(t->peer.listener);
	getsockname(evconnlistener_get_fd(t->peer.listener), (struct sockaddr *)&sin, &len);
	t->peer.port = ntohs(sin.sin_port);
	snprintf(t->redis, sizeof(t->redis), "127.0.0.1:%d", t->peer.port);
	t->sc.redis = t->redis;
	t->sc.database = 3;
	t->sc.timeout_ms = 3000;
	t->sr = shared_redis_new(t->base, &t->sc, on_up, t);
	assert_non_null(t->sr);
	assert_false(shared_redis_up(t->sr));
	/* SELECT before PING, pipelined: the PING's answer is the signal. */
	peer_expect(t, "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n");
	peer_send(t, "+OK\r\n+PONG\r\n");
	ut_loop_wait(t->base, up_cond, t);
	assert_int_equal(t->ups, 1);
	assert_int_equal(shared_redis_outages(t->sr), 0);
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	struct t *t = *state;

	shared_redis_free(t->sr);
	if (t->peer.bev != NULL)
		bufferevent_free(t->peer.bev);
	evconnlistener_free(t->peer.listener);
	evbuffer_free(t->peer.got);
	event_base_free(t->base);
	free(t);
	return 0;
}

/* Three commands pipelined; the replies come cut mid-reply: each answers
 * its own command, in order, after shared_redis_command() returned. */
static void
test_pipelined_replies_in_order(void **state)
{
	struct t *t = *state;

	command(t, 0, "GET", "a");
	command(t, 1, "GET", "b");
	command(t, 2, "INCR", "c");
	assert_int_equal(t->n_called, 0);
	peer_expect(t, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
	               "*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n");
	peer_send(t, "$5\r\nalpha\r\n$5\r\nbr");
	wait_called(t, 1);
	assert_string_equal(t->answers[0].text, "alpha");
	assert_false(t->answers[1].called);
	peer_send(t, "avo\r\n:4");
	wait_called(t, 2);
	assert_string_equal(t->answers[1].text, "bravo");
	peer_send(t, "2\r\n");
	wait_called(t, 3);
	assert_string_equal(t->answers[2].text, ":42");
	assert_false(t->called_inside);
	assert_true(shared_redis_up(t->sr));
	assert_int_equal(shared_redis_outages(t->sr), 0);
}

/* The link back after an outage: a new connection, the handshake again. */
static void
expect_reconnect(struct t *t, unsigned ups)
{
	peer_expect(t, "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n");
	assert_int_equal(t->peer.accepted, 2);
	peer_send(t, "+OK\r\n+PONG\r\n");
	ut_loop_wait(t->base, up_cond, t);
	assert_int_equal(t->ups, ups);
}

static bool
reaccepted_cond(void *arg)
{
	struct t *t = arg;

	return t->peer.accepted >= 2;
}

/* A reply with no command waiting: the stream is out of step, the link is
 * dropped (one outage) and made again. */
static void
test_reply_to_nothing(void **state)
{
	struct t *t = *state;

	peer_send(t, "+SURPRISE\r\n");
	ut_loop_wait(t->base, down_cond, t);
	assert_int_equal(shared_redis_outages(t->sr), 1);
	/* Down: answered NULL, but on a later turn. */
	command(t, 0, "GET", "a");
	assert_false(t->answers[0].called);
	wait_called(t, 1);
	assert_true(t->answers[0].null);
	ut_loop_wait(t->base, reaccepted_cond, t);
	expect_reconnect(t, 2);
	assert_false(t->called_inside);
}

/* Garbage where a reply should be: pending commands answered NULL, in
 * order, once. */
static void
test_malformed_reply(void **state)
{
	struct t *t = *state;

	command(t, 0, "GET", "a");
	command(t, 1, "GET", "b");
	peer_expect(t, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
	peer_send(t, "?what\r\n");
	wait_called(t, 2);
	assert_true(t->answers[0].null && t->answers[1].null);
	assert_false(shared_redis_up(t->sr));
	assert_int_equal(shared_redis_outages(t->sr), 1);
	ut_loop_wait(t->base, reaccepted_cond, t);
	expect_reconnect(t, 2);
}

/* No answer within the timeout: NULL for the slow command and for the one
 * behind it; one outage. */
static void
test_timeout(void **state)
{
	struct t *t = *state;

	t->sc.timeout_ms = 50; /* read at each command */
	command(t, 0, "GET", "slow");
	command(t, 1, "GET", "behind");
	wait_called(t, 2);
	assert_true(t->answers[0].null && t->answers[1].null);
	assert_false(shared_redis_up(t->sr));
	assert_int_equal(shared_redis_outages(t->sr), 1);
	t->sc.timeout_ms = 3000;
	/* A new connection starts the peer's buffer afresh. */
	ut_loop_wait(t->base, reaccepted_cond, t);
	expect_reconnect(t, 2);
}

/* The peer closes with a command pending. */
static void
test_peer_closes(void **state)
{
	struct t *t = *state;

	command(t, 0, "GET", "a");
	peer_expect(t, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
	bufferevent_free(t->peer.bev);
	t->peer.bev = NULL;
	wait_called(t, 1);
	assert_true(t->answers[0].null);
	assert_int_equal(shared_redis_outages(t->sr), 1);
	ut_loop_wait(t->base, reaccepted_cond, t);
	expect_reconnect(t, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_pipelined_replies_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reply_to_nothing, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_malformed_reply, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_peer_closes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
