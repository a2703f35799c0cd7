/* SPDX-License-Identifier: ISC */
/*
 * test_auth_client.c - the worker side of the auth protocol against a small
 * scripted auth process living in the same event loop. A fake, because what
 * is tested here is what a real auth process does not do on demand: answer
 * late or never, hold back HELLO, speak another protocol version, send a
 * malformed RESULT. (test_auth_server.c runs the client against the real one.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "authwire/auth_client.h"
#include "authwire/auth_proto.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "support/ut_loop.h"
#include "support/ut_tmp.h"

enum fake_answer { ANSWER_OK, ANSWER_NONE, ANSWER_GARBAGE, ANSWER_FULL };

struct fake {
	struct event_base *base;
	char dir[64];
	char path[96];
	struct evconnlistener *l;
	struct bufferevent *bev;
	unsigned accepts;
	bool send_hello;
	uint32_t hello_version;
	uint32_t hello_caps;
	enum fake_answer answer;
	unsigned n_verify;
	uint32_t ids[8192];
	char last_login[600];
	char last_secret[64];
	struct auth_client *ac;
	struct auth_reply full; /* ANSWER_FULL: this reply (id set per request) */
};

struct answer {
	bool returned;
	bool called;
	bool called_early;
	enum auth_result result;
	enum auth_reason reason_code;
	uint32_t id;
	uint32_t delay_ms;
	char identity[600];
	char reason[64];
	char addresses[256];
	struct fake *s;
	/* Also done from the callback: */
	bool free_client;
	bool verify_again;
	struct answer *again;
};

static void fake_send_hello(struct fake *s);

static void
fake_on_read(struct bufferevent *bev, void *arg)
{
	struct fake *s = arg;
	struct ipc_msg *m;

	while (ipc_msg_take(bufferevent_get_input(bev), &m) == PARSE_OK) {
		struct auth_request r;
		assert_int_equal(auth_proto_parse_verify(m, &r), 0);
		s->ids[s->n_verify++ % 8192] = r.id;
		snprintf(s->last_login, sizeof(s->last_login), "%s", r.login);
		snprintf(s->last_secret, sizeof(s->last_secret), "%s", r.secret);
		if (s->answer == ANSWER_OK || s->answer == ANSWER_FULL) {
			struct auth_reply rep = {r.id, AUTH_OK, AUTH_REASON_OK, r.login, 0, ""};
			struct ipc_msg *out;
			if (s->answer == ANSWER_FULL) {
				rep = s->full;
				rep.id = r.id;
			}
			out = auth_proto_result(&rep);
			ipc_msg_send(out, bufferevent_get_output(bev));
			ipc_msg_free(out);
		} else if (s->answer == ANSWER_GARBAGE) {
			/* A RESULT without its fields. */
			bufferevent_write(bev, "\0\0\0\x01\x03", 5);
		}
		ipc_msg_free(m);
	}
}

static void
fake_drop(struct fake *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->bev = NULL;
}

static void
fake_on_event(struct bufferevent *bev, short what, void *arg)
{
	fake_drop(arg);
}

static void
fake_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
               void *arg)
{
	struct fake *s = arg;

	fake_drop(s);
	s->accepts++;
	s->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, fake_on_read, NULL, fake_on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (s->send_hello)
		fake_send_hello(s);
}

static void
fake_send_hello(struct fake *s)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_HELLO);

	ipc_msg_add_u32(m, s->hello_version);
	ipc_msg_add_u32(m, s->hello_caps);
	ipc_msg_send(m, bufferevent_get_output(s->bev));
	ipc_msg_free(m);
}

static void
fake_send_result(struct fake *s, uint32_t id)
{
	struct auth_reply rep = {id, AUTH_OK, AUTH_REASON_OK, "late", 0, ""};
	struct ipc_msg *m = auth_proto_result(&rep);

	ipc_msg_send(m, bufferevent_get_output(s->bev));
	ipc_msg_free(m);
}

static void
fake_listen(struct fake *s)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", s->path);
	unlink(s->path);
	s->l = evconnlistener_new_bind(s->base, fake_on_accept, s,
	                               LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	                               (struct sockaddr *)&sun, sizeof(sun));
	assert_non_null(s->l);
}

static int
setup(void **state)
{
	struct fake *s = calloc(1, sizeof(*s));

	s->base = event_base_new();
	ut_tmp_dir(s->dir, sizeof(s->dir), "authrelay-cli-");
	snprintf(s->path, sizeof(s->path), "%s/auth.sock", s->dir);
	s->send_hello = true;
	s->hello_version = AUTH_PROTO_VERSION;
	s->hello_caps = AUTH_CAP_CRAM_MD5;
	s->answer = ANSWER_OK;
	*state = s;
	return 0;
}

static int
teardown(void **state)
{
	struct fake *s = *state;

	auth_client_free(s->ac);
	fake_drop(s);
	if (s->l != NULL)
		evconnlistener_free(s->l);
	event_base_free(s->base);
	unlink(s->path);
	rmdir(s->dir);
	free(s);
	return 0;
}

static bool
ready(void *arg)
{
	struct fake *s = arg;

	return auth_client_caps(s->ac) != 0;
}

static bool
accepted(void *arg)
{
	struct fake *s = arg;

	return s->bev != NULL;
}

static void
on_result(const struct auth_reply *rep, void *arg)
{
	struct answer *a = arg;

	if (!a->returned)
		a->called_early = true;
	assert_false(a->called);
	a->called = true;
	a->id = rep->id;
	a->result = rep->result;
	a->reason_code = rep->reason;
	a->delay_ms = rep->delay_ms;
	snprintf(a->identity, sizeof(a->identity), "%s", rep->identity);
	snprintf(a->reason, sizeof(a->reason), "%s", auth_reason_name(rep->reason));
	snprintf(a->addresses, sizeof(a->addresses), "%s", rep->addresses);
	if (a->free_client) {
		auth_client_free(a->s->ac);
		a->s->ac = NULL;
	}
	if (a->verify_again) {
		struct auth_request r = {
		        .mech = "PLAIN", .login = "again", .secret = "x", .secret_len = 1};
		auth_client_verify(a->s->ac, &r, on_result, a->again);
		a->again->returned = true;
	}
}

static uint32_t
verify(struct fake *s, const char *login, struct answer *a)
{
	char secret[] = "s3cret";
	struct auth_request r = {.mech = "PLAIN",
	                         .login = login,
	                         .secret = secret,
	                         .secret_len = strlen(secret),
	                         .challenge = "",
	                         .session = "t",
	                         .client = "127.0.0.1",
	                         .listener = "sub"};
	uint32_t h;

	a->s = s;
	h = auth_client_verify(s->ac, &r, on_result, a);
	/* Copied: wiping ours changes nothing. */
	explicit_bzero(secret, sizeof(secret));
	a->returned = true;
	assert_false(a->called);
	return h;
}

static bool
called(void *arg)
{
	struct answer *a = arg;

	return a->called;
}

static void
wait_answer(struct fake *s, struct answer *a)
{
	ut_loop_wait(s->base, called, a);
	assert_false(a->called_early);
}

static void
test_ok_and_caps(void **state)
{
	struct fake *s = *state;
	struct answer a = {0};

	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	assert_int_equal(auth_client_caps(s->ac), 0);
	ut_loop_wait(s->base, ready, s);
	assert_int_equal(auth_client_caps(s->ac), AUTH_CAP_CRAM_MD5);
	verify(s, "alice", &a);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_OK);
	assert_string_equal(a.identity, "alice");
	assert_string_equal(s->last_secret, "s3cret");
}

/* The callback gets the whole RESULT as a struct auth_reply: id (the
 * handle), result, reason, identity, delay_ms and addresses. */
static void
test_reply_fields(void **state)
{
	static const struct auth_reply rows[] = {
	        {0, AUTH_OK, AUTH_REASON_OK, "Alice@example.org", 0, "alice@example.org,a.b@x.org"},
	        {0, AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, "", 4000, ""},
	        {0, AUTH_FAIL, AUTH_REASON_UNKNOWN_USER, "", 0, ""},
	        {0, AUTH_TEMPFAIL, AUTH_REASON_LOCKED, "", 0, ""},
	        {0, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE, "", 0, ""},
	};
	struct fake *s = *state;

	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	s->answer = ANSWER_FULL;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct answer a = {0};
		uint32_t h;

		s->full = rows[i];
		h = verify(s, "alice", &a);
		wait_answer(s, &a);
		assert_int_equal(a.id, h);
		assert_int_equal(a.result, rows[i].result);
		assert_int_equal(a.reason_code, rows[i].reason);
		assert_string_equal(a.identity, rows[i].identity);
		assert_int_equal(a.delay_ms, rows[i].delay_ms);
		assert_string_equal(a.addresses, rows[i].addresses);
	}
}

static bool
caps_is_2(void *arg)
{
	struct fake *s = arg;

	return auth_client_caps(s->ac) == 0x2;
}

static void
test_rehello(void **state)
{
	struct fake *s = *state;

	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	s->hello_caps = 0x2;
	fake_send_hello(s);
	ut_loop_wait(s->base, caps_is_2, s);
}

/* No auth process: tempfail, after verify() has returned. */
static void
test_disconnected(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};
	uint32_t h1, h2;

	s->ac = auth_client_new(s->base, s->path, 5);
	h1 = verify(s, "alice", &a);
	h2 = verify(s, "bob", &b);
	assert_int_not_equal(h1, 0);
	assert_int_not_equal(h1, h2);
	/* Cancelled before its turn: never called. */
	auth_client_cancel(s->ac, h2);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_TEMPFAIL);
	assert_string_equal(a.reason, "auth_unavailable");
	assert_int_equal(a.reason_code, AUTH_REASON_AUTH_UNAVAILABLE);
	assert_string_equal(a.identity, "");
	/* No RESULT came: the reply still has every field. */
	assert_int_equal(a.id, h1);
	assert_int_equal(a.delay_ms, 0);
	assert_string_equal(a.addresses, "");
	assert_false(b.called);
	assert_int_equal(auth_client_caps(s->ac), 0);
	/* Once a server appears, the back-off brings the client to it. */
	fake_listen(s);
	ut_loop_wait(s->base, ready, s);
}

static bool
got_verify(void *arg)
{
	struct fake *s = arg;

	return s->n_verify > 0;
}

/* Requests made before HELLO wait for it, then go out. */
static void
test_queued_until_hello(void **state)
{
	struct fake *s = *state;
	struct answer a = {0};

	s->send_hello = false;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, accepted, s);
	verify(s, "early", &a);
	/* Let the loop turn a few times: nothing may be sent yet. */
	for (int i = 0; i < 20; i++)
		event_base_loop(s->base, EVLOOP_NONBLOCK);
	assert_int_equal(s->n_verify, 0);
	fake_send_hello(s);
	ut_loop_wait(s->base, got_verify, s);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_OK);
	assert_string_equal(a.identity, "early");
}

/* No answer within the timeout: tempfail; the late RESULT is ignored. */
static void
test_timeout(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};

	s->answer = ANSWER_NONE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 1);
	ut_loop_wait(s->base, ready, s);
	verify(s, "slow", &a);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_TEMPFAIL);
	assert_string_equal(a.reason, "timeout");
	assert_int_equal(a.reason_code, AUTH_REASON_TIMEOUT);
	assert_string_equal(a.identity, "");
	assert_string_equal(a.addresses, "");
	assert_int_equal(s->n_verify, 1);
	fake_send_result(s, s->ids[0]);
	s->answer = ANSWER_OK;
	verify(s, "next", &b);
	wait_answer(s, &b);
	assert_int_equal(b.result, AUTH_OK);
	assert_string_equal(b.identity, "next");
}

/* A cancelled request's callback never runs, even when its RESULT comes. */
static void
test_cancel(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};
	uint32_t h;

	s->answer = ANSWER_NONE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	h = verify(s, "gone", &a);
	ut_loop_wait(s->base, got_verify, s);
	auth_client_cancel(s->ac, h);
	auth_client_cancel(s->ac, h);           /* twice: no-op */
	auth_client_cancel(s->ac, 0xfffffff0u); /* unknown: no-op */
	fake_send_result(s, s->ids[0]);
	s->answer = ANSWER_OK;
	verify(s, "next", &b);
	wait_answer(s, &b);
	assert_false(a.called);
}

static bool
got_all(void *arg)
{
	struct fake *s = arg;

	return s->n_verify == 4096;
}

/* Past 4096 requests in flight: tempfail at once for the extra one. */
static void
test_inflight_cap(void **state)
{
	enum { N = 4096 };
	struct fake *s = *state;
	struct answer *a = calloc(N + 1, sizeof(*a));
	uint32_t *h = calloc(N, sizeof(*h));

	s->answer = ANSWER_NONE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 30);
	ut_loop_wait(s->base, ready, s);
	for (int i = 0; i < N; i++)
		h[i] = verify(s, "u", &a[i]);
	verify(s, "one-too-many", &a[N]);
	wait_answer(s, &a[N]);
	assert_int_equal(a[N].result, AUTH_TEMPFAIL);
	assert_string_equal(a[N].reason, "too_many_requests");
	ut_loop_wait(s->base, got_all, s);
	for (int i = 0; i < N; i++) {
		assert_false(a[i].called);
		auth_client_cancel(s->ac, h[i]);
	}
	free(a);
	free(h);
}

static void
test_invalid_request(void **state)
{
	struct fake *s = *state;
	static char longlogin[AUTH_MAX_LOGIN + 2];
	static char longsecret[AUTH_MAX_SECRET + 1];
	struct answer a = {0}, b = {0};
	struct auth_request r = {.mech = "PLAIN",
	                         .login = "u",
	                         .secret = longsecret,
	                         .secret_len = sizeof(longsecret)};

	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	memset(longlogin, 'a', sizeof(longlogin) - 1);
	verify(s, longlogin, &a);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_FAIL);
	assert_string_equal(a.reason, "invalid_request");
	b.s = s;
	auth_client_verify(s->ac, &r, on_result, &b);
	b.returned = true;
	wait_answer(s, &b);
	assert_int_equal(b.result, AUTH_FAIL);
	assert_string_equal(b.reason, "invalid_request");
	assert_int_equal(s->n_verify, 0);
}

static bool
accepted_twice(void *arg)
{
	struct fake *s = arg;

	return s->accepts >= 2;
}

/* Another protocol version: never ready, and retried with back-off. */
static void
version_mismatch(struct fake *s, uint32_t version)
{
	struct answer a = {0};

	s->hello_version = version;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, accepted_twice, s);
	assert_int_equal(auth_client_caps(s->ac), 0);
	s->hello_version = AUTH_PROTO_VERSION;
	ut_loop_wait(s->base, ready, s);
	verify(s, "fine", &a);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_OK);
}

static void
test_version_mismatch(void **state)
{
	version_mismatch(*state, AUTH_PROTO_VERSION + 1);
}

/* An auth process of version 1 (reasons as words) is not spoken to. */
static void
test_version_older(void **state)
{
	assert_int_equal(AUTH_PROTO_VERSION, 2);
	version_mismatch(*state, 1);
}

/* A malformed RESULT: drop the connection, tempfail what was in flight,
 * reconnect. */
static void
test_malformed_result(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};

	s->answer = ANSWER_GARBAGE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	verify(s, "x", &a);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_TEMPFAIL);
	assert_string_equal(a.reason, "auth_unavailable");
	s->answer = ANSWER_OK;
	ut_loop_wait(s->base, accepted_twice, s);
	ut_loop_wait(s->base, ready, s);
	verify(s, "y", &b);
	wait_answer(s, &b);
	assert_int_equal(b.result, AUTH_OK);
}

/* The auth process closes the connection with requests in flight. */
static void
test_server_closes(void **state)
{
	struct fake *s = *state;
	struct answer a = {0};

	s->answer = ANSWER_NONE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	verify(s, "x", &a);
	ut_loop_wait(s->base, got_verify, s);
	fake_drop(s);
	wait_answer(s, &a);
	assert_int_equal(a.result, AUTH_TEMPFAIL);
	assert_string_equal(a.reason, "auth_unavailable");
	ut_loop_wait(s->base, accepted, s);
	ut_loop_wait(s->base, ready, s);
}

static bool
got_all_two(void *arg)
{
	struct fake *s = arg;

	return s->n_verify == 2;
}

static bool
client_gone(void *arg)
{
	struct fake *s = arg;

	return s->ac == NULL;
}

/* Freeing the client from a callback while more RESULTs wait in the same
 * read: the rest are dropped, nothing is touched after the free (ASan). */
static void
test_free_in_callback(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};

	s->answer = ANSWER_NONE;
	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	a.free_client = true;
	verify(s, "a", &a);
	verify(s, "b", &b);
	ut_loop_wait(s->base, got_all_two, s);
	/* Both answers in one write, so one read sees them together. */
	fake_send_result(s, s->ids[0]);
	fake_send_result(s, s->ids[1]);
	ut_loop_wait(s->base, client_gone, s);
	assert_true(a.called);
	assert_false(b.called);
}

/* A callback may start the next request. */
static void
test_verify_from_callback(void **state)
{
	struct fake *s = *state;
	struct answer a = {0}, b = {0};

	fake_listen(s);
	s->ac = auth_client_new(s->base, s->path, 5);
	ut_loop_wait(s->base, ready, s);
	a.verify_again = true;
	a.again = &b;
	b.s = s;
	verify(s, "first", &a);
	wait_answer(s, &b);
	assert_true(a.called);
	assert_int_equal(b.result, AUTH_OK);
	assert_string_equal(b.identity, "again");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_ok_and_caps, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reply_fields, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rehello, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_disconnected, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_queued_until_hello, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_inflight_cap, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_invalid_request, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_version_older, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_malformed_result, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_server_closes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_verify_from_callback, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init(false, LOG_LEVEL_ERR, "test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
