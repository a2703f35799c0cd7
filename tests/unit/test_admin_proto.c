/* SPDX-License-Identifier: ISC */
/*
 * test_admin_proto.c - the admin channel between the master and the auth
 * process: each message's round trip through a real stream (the master
 * decodes what an unprivileged process sends, so every refusal counts too):
 * wrong type, a field missing or left over, a NUL in a text, an UNLOCK
 * without what, texts cut at ADMIN_MAX_TEXT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "authwire/admin_proto.h"
#include "lib/ipc.h"
#include "support/ut_ipc.h"

static void
test_requests(void **state)
{
	struct admin_request in = {ADMIN_MSG_UNLOCK, 7, "Alice@Example.org"}, out;
	struct ipc_msg *m = ut_ipc_stream(admin_proto_request(&in));

	assert_int_equal(admin_proto_parse_request(m, &out), 0);
	assert_int_equal(out.type, ADMIN_MSG_UNLOCK);
	assert_int_equal(out.id, 7);
	assert_string_equal(out.what, "Alice@Example.org");
	ipc_msg_free(m);

	for (int t = ADMIN_MSG_STATUS; t <= ADMIN_MSG_LOCKOUTS; t++) {
		struct admin_request r = {(enum admin_msg_type)t, 9, NULL};
		m = ut_ipc_stream(admin_proto_request(&r));
		assert_int_equal(admin_proto_parse_request(m, &out), 0);
		assert_int_equal(out.type, t);
		assert_string_equal(out.what, "");
		ipc_msg_free(m);
	}
	/* UNLOCK of nothing. */
	struct admin_request empty = {ADMIN_MSG_UNLOCK, 1, ""};
	m = ut_ipc_stream(admin_proto_request(&empty));
	assert_int_equal(admin_proto_parse_request(m, &out), -1);
	ipc_msg_free(m);
	/* An answer is no request. */
	m = ut_ipc_stream(admin_proto_done(1, 2, 0));
	assert_int_equal(admin_proto_parse_request(m, &out), -1);
	ipc_msg_free(m);
	/* A field left over. */
	m = ipc_msg_new(ADMIN_MSG_STATUS);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 2);
	m = ut_ipc_stream(m);
	assert_int_equal(admin_proto_parse_request(m, &out), -1);
	ipc_msg_free(m);
}

static void
test_answers(void **state)
{
	struct admin_source s = {3, "ldap", "down", 42}, gs;
	struct admin_lockout l = {4, "client_login", "192.0.2.7", "x\"y", 5, 300}, gl;
	struct ipc_msg *m;
	uint32_t id, count, flags;

	m = ut_ipc_stream(admin_proto_source(&s));
	assert_int_equal(admin_proto_parse_source(m, &gs), 0);
	assert_int_equal(gs.id, 3);
	assert_string_equal(gs.name, "ldap");
	assert_string_equal(gs.state, "down");
	assert_int_equal(gs.seconds, 42);
	assert_int_equal(admin_proto_parse_lockout(m, &gl), -1); /* wrong type */
	ipc_msg_free(m);

	m = ut_ipc_stream(admin_proto_lockout(&l));
	assert_int_equal(admin_proto_parse_lockout(m, &gl), 0);
	assert_string_equal(gl.scope, "client_login");
	assert_string_equal(gl.client, "192.0.2.7");
	assert_string_equal(gl.login, "x\"y");
	assert_int_equal(gl.failures, 5);
	assert_int_equal(gl.remaining_s, 300);
	ipc_msg_free(m);

	m = ut_ipc_stream(admin_proto_done(8, 2, ADMIN_DONE_LOCAL_ONLY));
	assert_int_equal(admin_proto_parse_done(m, &id, &count, &flags), 0);
	assert_int_equal(id, 8);
	assert_int_equal(count, 2);
	assert_int_equal(flags, ADMIN_DONE_LOCAL_ONLY);
	ipc_msg_free(m);

	/* A field missing. */
	m = ipc_msg_new(ADMIN_MSG_SOURCE);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_str(m, "file");
	m = ut_ipc_stream(m);
	assert_int_equal(admin_proto_parse_source(m, &gs), -1);
	ipc_msg_free(m);
	/* A NUL inside a text. */
	m = ipc_msg_new(ADMIN_MSG_LOCKOUT);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_str(m, "login");
	ipc_msg_add_str(m, "");
	ipc_msg_add_bytes(m, "ann\0x", 5);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 1);
	m = ut_ipc_stream(m);
	assert_int_equal(admin_proto_parse_lockout(m, &gl), -1);
	ipc_msg_free(m);
	/* Too long a text on the wire. */
	char *big = malloc(ADMIN_MAX_TEXT + 2);
	memset(big, 'a', ADMIN_MAX_TEXT + 1);
	big[ADMIN_MAX_TEXT + 1] = '\0';
	m = ipc_msg_new(ADMIN_MSG_SOURCE);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_str(m, big);
	ipc_msg_add_str(m, "up");
	ipc_msg_add_u32(m, 0);
	m = ut_ipc_stream(m);
	assert_int_equal(admin_proto_parse_source(m, &gs), -1);
	ipc_msg_free(m);
	/* The encoder cuts it instead. */
	struct admin_source longname = {1, big, "up", 0};
	m = ut_ipc_stream(admin_proto_source(&longname));
	assert_int_equal(admin_proto_parse_source(m, &gs), 0);
	assert_int_equal(strlen(gs.name), ADMIN_MAX_TEXT);
	ipc_msg_free(m);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_requests),
	        cmocka_unit_test(test_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
