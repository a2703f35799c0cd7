/* SPDX-License-Identifier: ISC */
/*
 * test_ctlchan.c - lib/ctlchan: the master hands a child the config text
 * over a socketpair, in several frames when it is long, and gets the
 * child's answer; answers come in order; a refusal carries its reason; a
 * text over the limit is refused at once; frames out of order close the
 * channel without a callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/ctlchan.h"
#include "lib/ipc.h"

struct peer {
	struct event_base *base;
	/* child side */
	unsigned applied;
	uint32_t last_gen, last_flags;
	char *last_path, *last_text;
	size_t last_len;
	bool refuse;
	/* master side */
	unsigned answers;
	uint32_t answer_gen[8];
	bool answer_ok[8];
	char answer_msg[8][128];
};

static int
apply_cb(void *arg, const struct ctlchan_config *c, char *err, size_t errsz)
{
	struct peer *p = arg;

	p->applied++;
	p->last_gen = c->generation;
	p->last_flags = c->flags;
	free(p->last_path);
	free(p->last_text);
	p->last_path = strdup(c->path);
	p->last_text = malloc(c->len + 1);
	memcpy(p->last_text, c->text, c->len + 1);
	p->last_len = c->len;
	if (p->refuse) {
		snprintf(err, errsz, "a.conf:3: no such key");
		return -1;
	}
	return 0;
}

static void
done_cb(void *arg, uint32_t generation, bool ok, const char *message)
{
	struct peer *p = arg;

	assert_true(p->answers < 8);
	p->answer_gen[p->answers] = generation;
	p->answer_ok[p->answers] = ok;
	snprintf(p->answer_msg[p->answers], sizeof(p->answer_msg[0]), "%s", message);
	p->answers++;
	if (p->answers == 2 || !ok)
		event_base_loopbreak(p->base);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("no answer within the time limit");
}

static void
run(struct peer *p)
{
	struct event *t = evtimer_new(p->base, timeout_cb, NULL);
	struct timeval tv = {10, 0};

	evtimer_add(t, &tv);
	event_base_dispatch(p->base);
	event_free(t);
}

static void
test_round_trip(void **state)
{
	struct peer p = {.base = event_base_new()};
	int sv[2];
	size_t big_len = 200000; /* several DATA frames */
	char *big = malloc(big_len + 1);

	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)('a' + i % 26);
	big[big_len] = '\0';
	big[1000] = '\0'; /* a NUL inside travels as any byte */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct ctlchan *m = ctlchan_master_new(p.base, sv[0], done_cb, &p);
	struct ctlchan *c = ctlchan_child_new(p.base, sv[1], apply_cb, &p);
	assert_non_null(m);
	assert_non_null(c);
	assert_int_equal(
	        ctlchan_send_config(m, 7, CTLCHAN_FORCE_SYSLOG, "/etc/a.conf", big, big_len), 0);
	assert_int_equal(ctlchan_send_config(m, 8, 0, "/etc/b.conf", "", 0), 0);
	run(&p);
	assert_int_equal(p.applied, 2);
	assert_int_equal(p.answers, 2);
	assert_int_equal(p.answer_gen[0], 7);
	assert_int_equal(p.answer_gen[1], 8);
	assert_true(p.answer_ok[0] && p.answer_ok[1]);
	assert_string_equal(p.answer_msg[0], "");
	/* the last one applied: the empty text */
	assert_int_equal(p.last_gen, 8);
	assert_int_equal(p.last_flags, 0);
	assert_string_equal(p.last_path, "/etc/b.conf");
	assert_int_equal(p.last_len, 0);
	assert_string_equal(p.last_text, "");
	free(big);
	free(p.last_path);
	free(p.last_text);
	ctlchan_free(m);
	ctlchan_free(c);
	event_base_free(p.base);
}

static void
test_big_text_arrives_whole(void **state)
{
	struct peer p = {.base = event_base_new()};
	int sv[2];
	size_t len = 150001;
	char *text = malloc(len);

	for (size_t i = 0; i < len; i++)
		text[i] = (char)(i * 7);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct ctlchan *m = ctlchan_master_new(p.base, sv[0], done_cb, &p);
	struct ctlchan *c = ctlchan_child_new(p.base, sv[1], apply_cb, &p);
	p.refuse = true;
	assert_int_equal(ctlchan_send_config(m, 1, 0, "/x", text, len), 0);
	run(&p);
	assert_int_equal(p.last_len, len);
	assert_memory_equal(p.last_text, text, len);
	assert_int_equal(p.answers, 1);
	assert_false(p.answer_ok[0]);
	assert_string_equal(p.answer_msg[0], "a.conf:3: no such key");
	/* Over the limit: refused before anything is sent. */
	assert_int_equal(ctlchan_send_config(m, 2, 0, "/x", text, CONFIG_TEXT_MAX + 1), -1);
	free(text);
	free(p.last_path);
	free(p.last_text);
	ctlchan_free(m);
	ctlchan_free(c);
	event_base_free(p.base);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* DATA before CONFIG: the child drops the channel and applies nothing;
 * the master's next send then finds it closed. */
static void
test_out_of_order(void **state)
{
	struct peer p = {.base = event_base_new()};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct ctlchan *c = ctlchan_child_new(p.base, sv[1], apply_cb, &p);
	struct evbuffer *out = evbuffer_new();
	struct ipc_msg *msg = ipc_msg_new(2 /* DATA */);
	ipc_msg_add_bytes(msg, "abc", 3);
	assert_int_equal(ipc_msg_send(msg, out), 0);
	ipc_msg_free(msg);
	assert_true(evbuffer_write(out, sv[0]) > 0);
	evbuffer_free(out);
	struct event *t = evtimer_new(p.base, stop_cb, p.base);
	struct timeval tv = {0, 200000};
	evtimer_add(t, &tv);
	event_base_dispatch(p.base);
	event_free(t);
	assert_int_equal(p.applied, 0);
	close(sv[0]);
	ctlchan_free(c);
	event_base_free(p.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_round_trip),
	        cmocka_unit_test(test_big_text_arrives_whole),
	        cmocka_unit_test(test_out_of_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
