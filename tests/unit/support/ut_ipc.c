/* SPDX-License-Identifier: ISC */
/*
 * ut_ipc.c - IPC messages through the framing and back, for unit tests
 * (ut_ipc.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/ipc.h"
#include "ut_ipc.h"

struct ipc_msg *
ut_ipc_stream(struct ipc_msg *m)
{
	struct evbuffer *b = evbuffer_new();
	struct ipc_msg *got = NULL;

	assert_non_null(b);
	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_take(b, &got), PARSE_OK);
	assert_int_equal(evbuffer_get_length(b), 0);
	evbuffer_free(b);
	return got;
}

struct ipc_msg *
ut_ipc_record(struct ipc_msg *m)
{
	struct ipc_msg *got = NULL;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(ipc_msg_send_record(m, sv[0]), 0);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_recv_record(sv[1], &got), IPC_RECORD_MSG);
	close(sv[0]);
	close(sv[1]);
	return got;
}
