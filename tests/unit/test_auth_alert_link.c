/* SPDX-License-Identifier: ISC */
/*
 * test_auth_alert_link.c - the auth end of the alert channel on a real
 * SOCK_SEQPACKET pair: a message goes out as one record at once; while the
 * reader does not read, messages wait in the backlog (never blocking) and
 * leave in order once it reads; past AUTH_ALERT_LINK_BACKLOG they are
 * refused; without a channel every send is refused; freeing with a backlog
 * drops it (ASan sees no leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth_alert_link.h"
#include "authwire/alert_proto.h"
#include "lib/ipc.h"
#include "lib/log.h"

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
	                 0);
}

/* A message of about 60 kB carrying seq. */
static struct ipc_msg *
numbered(uint32_t seq)
{
	static char filler[50000];
	struct ipc_msg *m = ipc_msg_new(ALERT_MSG_HOOK);

	ipc_msg_add_u32(m, seq);
	ipc_msg_add_bytes(m, filler, sizeof(filler));
	return m;
}

static void
test_sends_at_once(void **state)
{
	struct event_base *base = event_base_new();
	static const char text[] = "From: a@b\r\n\r\nhi\r\n";
	struct alert_mail_msg got;
	struct auth_alert_link *l;
	struct ipc_msg *m;
	int sv[2];

	pair(sv);
	l = auth_alert_link_new(base, sv[0]);
	assert_true(auth_alert_link_send(alert_proto_mail(&(struct alert_mail_msg){
	                                         "multi_ip", "a@b", text, sizeof(text) - 1}),
	                                 l));
	/* No loop turn needed: the record is in the socket already. */
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
	assert_int_equal(alert_proto_parse_mail(m, &got), 0);
	assert_string_equal(got.kind, "multi_ip");
	assert_string_equal(got.to, "a@b");
	assert_memory_equal(got.message, text, sizeof(text) - 1);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	auth_alert_link_free(l); /* closes sv[0] */
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_CLOSED);
	close(sv[1]);
	event_base_free(base);
}

static void
test_no_channel(void **state)
{
	struct event_base *base = event_base_new();
	struct auth_alert_link *l = auth_alert_link_new(base, -1);

	assert_false(auth_alert_link_send(numbered(1), l));
	auth_alert_link_free(l);
	auth_alert_link_free(NULL);
	event_base_free(base);
}

/* The reader stalls: the socket fills, then the backlog, then sends are
 * refused. Once it reads, everything accepted arrives, in order. */
static void
test_backlog(void **state)
{
	struct event_base *base = event_base_new();
	struct auth_alert_link *l;
	uint32_t accepted = 0, next = 0;
	int sv[2];

	pair(sv);
	l = auth_alert_link_new(base, sv[0]);
	while (auth_alert_link_send(numbered(accepted), l))
		assert_true(++accepted < 10000);
	/* The socket holds some, the backlog exactly its size. */
	assert_true(accepted > AUTH_ALERT_LINK_BACKLOG);
	assert_false(auth_alert_link_send(numbered(accepted + 1), l));

	for (int turns = 0; next < accepted && turns < 100000; turns++) {
		struct ipc_msg *m;
		enum ipc_record r = ipc_msg_recv_record(sv[1], &m);
		if (r == IPC_RECORD_NONE) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			continue;
		}
		uint32_t seq;
		assert_int_equal(r, IPC_RECORD_MSG);
		assert_int_equal(ipc_msg_get_u32(m, &seq), 0);
		assert_int_equal(seq, next);
		next++;
		ipc_msg_free(m);
	}
	assert_int_equal(next, accepted);
	/* Drained: sending goes straight out again. */
	assert_true(auth_alert_link_send(numbered(7777), l));
	{
		struct ipc_msg *m;
		uint32_t seq;
		assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
		assert_int_equal(ipc_msg_get_u32(m, &seq), 0);
		assert_int_equal(seq, 7777);
		ipc_msg_free(m);
	}
	auth_alert_link_free(l);
	close(sv[1]);
	event_base_free(base);
}

/* Freed with messages waiting: they are dropped (and freed). */
static void
test_free_with_backlog(void **state)
{
	struct event_base *base = event_base_new();
	struct auth_alert_link *l;
	uint32_t n = 0;
	int sv[2];

	pair(sv);
	l = auth_alert_link_new(base, sv[0]);
	while (auth_alert_link_send(numbered(n), l))
		assert_true(++n < 10000);
	auth_alert_link_free(l);
	close(sv[1]);
	event_base_free(base);
}

/* The queue's end is gone for good: the send fails, is dropped, and does
 * not kill the process (no SIGPIPE). */
static void
test_peer_gone(void **state)
{
	struct event_base *base = event_base_new();
	struct auth_alert_link *l;
	int sv[2];

	pair(sv);
	close(sv[1]);
	l = auth_alert_link_new(base, sv[0]);
	assert_false(auth_alert_link_send(numbered(1), l));
	auth_alert_link_free(l);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sends_at_once), cmocka_unit_test(test_no_channel),
	        cmocka_unit_test(test_backlog),       cmocka_unit_test(test_free_with_backlog),
	        cmocka_unit_test(test_peer_gone),
	};

	log_init(false, LOG_LEVEL_ERR, "test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
