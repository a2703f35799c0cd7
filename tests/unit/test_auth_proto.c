/* SPDX-License-Identifier: ISC */
/*
 * test_auth_proto.c - HELLO / VERIFY / RESULT / NOTIFY / COUNT / COUNTS encode and decode
 * through real ipc frames, every reason across the wire, and the decoders'
 * refusals: wrong type, missing fields, bad result and reason values, a
 * version 1 RESULT, limits, NUL in text fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "authwire/auth_proto.h"
#include "lib/ipc.h"
#include "support/ut_ipc.h"

static void
test_hello(void **state)
{
	static const uint32_t caps[] = {0, AUTH_CAP_CRAM_MD5, 0xffffffffu};

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		struct ipc_msg *m = ut_ipc_stream(auth_proto_hello(caps[i]));
		uint32_t v, c;
		assert_int_equal(ipc_msg_type(m), AUTH_MSG_HELLO);
		assert_int_equal(auth_proto_parse_hello(m, &v, &c), 0);
		assert_int_equal(v, AUTH_PROTO_VERSION);
		assert_int_equal(c, caps[i]);
		ipc_msg_free(m);
	}
}

static void
test_verify(void **state)
{
	static char longlogin[AUTH_MAX_LOGIN + 1];
	static char longsecret[AUTH_MAX_SECRET];
	struct auth_request rows[] = {
	        {1, "PLAIN", "alice@example.org", "s3cret", 6, "", "4f2a1c", "127.0.0.1",
	         "submission"},
	        {0xffffffffu, "LOGIN", "bob", "with\0nul", 8, "", "", "", ""},
	        {7, "CRAM-MD5", "tim", "b913a602c7eda7a495b4e6e7334d3890", 32,
	         "<1896.697170952@postoffice.reston.mci.net>", "s1", "::1", "l"},
	        {8, "PLAIN", longlogin, longsecret, sizeof(longsecret), "", "s", "c", "l"},
	        {9, "PLAIN", "", NULL, 0, NULL, NULL, NULL, NULL},
	};

	memset(longlogin, 'a', AUTH_MAX_LOGIN);
	memset(longsecret, 'p', sizeof(longsecret));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct auth_request *w = &rows[i];
		struct ipc_msg *m = ut_ipc_stream(auth_proto_verify(w));
		struct auth_request r;

		assert_int_equal(auth_proto_parse_verify(m, &r), 0);
		assert_int_equal(r.id, w->id);
		assert_string_equal(r.mech, w->mech);
		assert_string_equal(r.login, w->login);
		assert_int_equal(r.secret_len, w->secret_len);
		if (w->secret_len > 0)
			assert_memory_equal(r.secret, w->secret, w->secret_len);
		assert_int_equal(r.secret[r.secret_len], '\0');
		assert_string_equal(r.challenge, w->challenge ? w->challenge : "");
		assert_string_equal(r.session, w->session ? w->session : "");
		assert_string_equal(r.client, w->client ? w->client : "");
		assert_string_equal(r.listener, w->listener ? w->listener : "");
		ipc_msg_free(m);
	}
}

static void
test_verify_limits(void **state)
{
	static char login[AUTH_MAX_LOGIN + 2];
	static char secret[AUTH_MAX_SECRET + 1];
	struct auth_request r1 = {1, "PLAIN", login, "x", 1, "", "", "", ""};
	struct auth_request r2 = {1, "PLAIN", "u", secret, sizeof(secret), "", "", "", ""};
	struct auth_request got;
	struct ipc_msg *m;

	memset(login, 'a', AUTH_MAX_LOGIN + 1);
	memset(secret, 'p', sizeof(secret));
	m = ut_ipc_stream(auth_proto_verify(&r1));
	assert_int_equal(auth_proto_parse_verify(m, &got), -1);
	ipc_msg_free(m);
	m = ut_ipc_stream(auth_proto_verify(&r2));
	assert_int_equal(auth_proto_parse_verify(m, &got), -1);
	ipc_msg_free(m);
}

static void
test_result(void **state)
{
	static const struct auth_reply rows[] = {
	        {1, AUTH_OK, AUTH_REASON_OK, "alice@example.org", 0,
	         "alice@example.org,a.b@example.org"},
	        {2, AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, "", 4000, NULL},
	        {3, AUTH_TEMPFAIL, AUTH_REASON_LOCKED, NULL, 0, NULL},
	        {0xffffffffu, AUTH_TEMPFAIL, AUTH_REASON_COUNT - 1, NULL, 0xffffffffu, ""},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct ipc_msg *m = ut_ipc_stream(auth_proto_result(&rows[i]));
		struct auth_reply r;
		assert_int_equal(auth_proto_parse_result(m, &r), 0);
		assert_int_equal(r.id, rows[i].id);
		assert_int_equal(r.result, rows[i].result);
		assert_string_equal(r.identity, rows[i].identity ? rows[i].identity : "");
		assert_int_equal(r.reason, rows[i].reason);
		assert_int_equal(r.delay_ms, rows[i].delay_ms);
		assert_string_equal(r.addresses, rows[i].addresses ? rows[i].addresses : "");
		ipc_msg_free(m);
	}
}

/* Every reason crosses the wire as itself, and with its result. */
static void
test_result_every_reason(void **state)
{
	static const enum auth_result results[] = {AUTH_OK, AUTH_FAIL, AUTH_TEMPFAIL};

	for (uint32_t v = 0; v < AUTH_REASON_COUNT; v++) {
		for (size_t k = 0; k < sizeof(results) / sizeof(results[0]); k++) {
			struct auth_reply w = {v + 1, results[k], (enum auth_reason)v,
			                       "u",   7,          "a@b"};
			struct ipc_msg *m = ut_ipc_stream(auth_proto_result(&w));
			struct auth_reply r;

			assert_int_equal(auth_proto_parse_result(m, &r), 0);
			assert_int_equal(r.id, v + 1);
			assert_int_equal(r.result, results[k]);
			assert_int_equal(r.reason, v);
			assert_string_equal(auth_reason_name(r.reason), auth_reason_name(v));
			ipc_msg_free(m);
		}
	}
}

/* A RESULT from a version 1 auth process (the reason as a word, no
 * delay_ms, no addresses) no longer parses: the HELLO version keeps such a
 * peer away, and this is the backstop. */
static void
test_result_old_peer(void **state)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_RESULT);
	struct auth_reply r;

	assert_int_equal(AUTH_PROTO_VERSION, 2);
	ipc_msg_add_u32(m, 7);
	ipc_msg_add_u32(m, AUTH_FAIL);
	ipc_msg_add_str(m, "");
	ipc_msg_add_str(m, "bad_password");
	m = ut_ipc_stream(m);
	assert_int_equal(auth_proto_parse_result(m, &r), -1);
	ipc_msg_free(m);
}

static void
test_notify(void **state)
{
	static const struct auth_notify n = {"send_limit",        "alice", "192.0.2.1", "4f2a1c",
	                                     "messages_per_hour", 501,     500};
	struct auth_notify gn;
	struct auth_reply gr;
	struct ipc_msg *m;

	m = ut_ipc_stream(auth_proto_notify(&n));
	assert_int_equal(ipc_msg_type(m), AUTH_MSG_NOTIFY);
	assert_int_equal(auth_proto_parse_notify(m, &gn), 0);
	assert_string_equal(gn.event, "send_limit");
	assert_string_equal(gn.user, "alice");
	assert_string_equal(gn.client, "192.0.2.1");
	assert_string_equal(gn.session, "4f2a1c");
	assert_string_equal(gn.limit, "messages_per_hour");
	assert_int_equal(gn.count, 501);
	assert_int_equal(gn.max, 500);
	assert_int_equal(auth_proto_parse_result(m, &gr), -1); /* wrong type */
	ipc_msg_free(m);
}

static void
test_count_and_counts(void **state)
{
	static char longlogin[AUTH_MAX_LOGIN + 2];
	struct auth_counts c = {.id = 42, .shared = true, .msgs = 7, .rcpts = 19}, gc;
	struct auth_notify gn;
	const char *user;
	uint32_t id;
	struct ipc_msg *m;

	m = ut_ipc_stream(auth_proto_count(9, "Alice"));
	assert_int_equal(ipc_msg_type(m), AUTH_MSG_COUNT);
	assert_int_equal(auth_proto_parse_count(m, &id, &user), 0);
	assert_int_equal(id, 9);
	assert_string_equal(user, "Alice");
	assert_int_equal(auth_proto_parse_notify(m, &gn), -1); /* wrong type */
	ipc_msg_free(m);

	memset(longlogin, 'a', sizeof(longlogin) - 1);
	m = ut_ipc_stream(auth_proto_count(1, longlogin));
	assert_int_equal(auth_proto_parse_count(m, &id, &user), -1);
	ipc_msg_free(m);

	for (int shared = 0; shared < 2; shared++) {
		c.shared = shared == 1;
		m = ut_ipc_stream(auth_proto_counts(&c));
		assert_int_equal(ipc_msg_type(m), AUTH_MSG_COUNTS);
		assert_int_equal(auth_proto_parse_counts(m, &gc), 0);
		assert_int_equal(gc.id, 42);
		assert_int_equal(gc.shared, c.shared);
		assert_int_equal(gc.msgs, 7);
		assert_int_equal(gc.rcpts, 19);
		ipc_msg_free(m);
	}
	/* shared is 0 or 1; a field missing is malformed */
	m = ipc_msg_new(AUTH_MSG_COUNTS);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 2);
	ipc_msg_add_u32(m, 0);
	ipc_msg_add_u32(m, 0);
	m = ut_ipc_stream(m);
	assert_int_equal(auth_proto_parse_counts(m, &gc), -1);
	ipc_msg_free(m);
	m = ipc_msg_new(AUTH_MSG_COUNTS);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 0);
	m = ut_ipc_stream(m);
	assert_int_equal(auth_proto_parse_counts(m, &gc), -1);
	ipc_msg_free(m);
}

/* Hand-built messages each decoder must refuse. */
static struct ipc_msg *
build(uint8_t type, const char *fields)
{
	struct ipc_msg *m = ipc_msg_new(type);

	/* u = u32 1, U = u32 99, s = "x", z = "a\0b", B = 600 bytes */
	for (const char *f = fields; *f != '\0'; f++) {
		static char big[600];
		switch (*f) {
		case 'u':
			ipc_msg_add_u32(m, 1);
			break;
		case 'U':
			ipc_msg_add_u32(m, 99);
			break;
		case 's':
			ipc_msg_add_str(m, "x");
			break;
		case 'z':
			ipc_msg_add_bytes(m, "a\0b", 3);
			break;
		case 'B':
			memset(big, 'a', sizeof(big));
			ipc_msg_add_bytes(m, big, sizeof(big));
			break;
		}
	}
	return ut_ipc_stream(m);
}

static void
test_malformed(void **state)
{
	static const struct {
		uint8_t type;
		const char *fields;
		char which; /* h, v, r, n (notify) */
		int want;
	} rows[] = {
	        {AUTH_MSG_HELLO, "uu", 'h', 0},
	        {AUTH_MSG_HELLO, "uuss", 'h', 0}, /* later fields are ignored */
	        {AUTH_MSG_HELLO, "u", 'h', -1},
	        {AUTH_MSG_HELLO, "", 'h', -1},
	        {AUTH_MSG_VERIFY, "uu", 'h', -1},
	        {AUTH_MSG_VERIFY, "usssssss", 'v', 0},
	        {AUTH_MSG_VERIFY, "usszsssss", 'v', 0}, /* secret may hold NUL */
	        {AUTH_MSG_VERIFY, "usssssss", 'r', -1},
	        {AUTH_MSG_VERIFY, "ussssss", 'v', -1},
	        {AUTH_MSG_VERIFY, "sssssss", 'v', -1},
	        {AUTH_MSG_VERIFY, "uzssssss", 'v', -1}, /* NUL in mech */
	        {AUTH_MSG_VERIFY, "uszsssss", 'v', -1}, /* NUL in login */
	        {AUTH_MSG_VERIFY, "ussszsss", 'v', -1}, /* NUL in challenge */
	        {AUTH_MSG_VERIFY, "usssssz", 'v', -1},
	        {AUTH_MSG_VERIFY, "usBsssss", 'v', -1}, /* login > AUTH_MAX_LOGIN */
	        {AUTH_MSG_RESULT, "uusuus", 'r', 0},
	        {AUTH_MSG_RESULT, "uusuuss", 'r', 0}, /* later fields are ignored */
	        {AUTH_MSG_RESULT, "uUsuus", 'r', -1}, /* unknown result */
	        {AUTH_MSG_RESULT, "uusUus", 'r', -1}, /* unknown reason */
	        {AUTH_MSG_RESULT, "uus", 'r', -1},
	        {AUTH_MSG_RESULT, "uuzuus", 'r', -1}, /* NUL in identity */
	        {AUTH_MSG_RESULT, "uusuus", 'v', -1},
	        {AUTH_MSG_RESULT, "uuss", 'r', -1},   /* version 1: reason a word */
	        {AUTH_MSG_RESULT, "uusu", 'r', -1},   /* delay_ms missing */
	        {AUTH_MSG_RESULT, "uusuu", 'r', -1},  /* addresses missing */
	        {AUTH_MSG_RESULT, "uusuuz", 'r', -1}, /* NUL in addresses */
	        {AUTH_MSG_NOTIFY, "sssssuu", 'n', 0},
	        {AUTH_MSG_NOTIFY, "sssssu", 'n', -1},
	        {AUTH_MSG_NOTIFY, "ssssssu", 'n', -1},
	        {AUTH_MSG_NOTIFY, "sBsssuu", 'n', -1}, /* user > AUTH_MAX_LOGIN */
	        {AUTH_MSG_NOTIFY, "szsssuu", 'n', -1}, /* NUL in user */
	        {AUTH_MSG_NOTIFY, "sssssuu", 'r', -1},
	        {AUTH_MSG_NOTIFY, "ussssuu", 'n', -1}, /* a u32 where event goes */
	        {99, "uu", 'h', -1},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct ipc_msg *m = build(rows[i].type, rows[i].fields);
		struct auth_request rq;
		struct auth_reply rp;
		struct auth_notify rn;
		uint32_t a, b;
		int got = rows[i].which == 'h'   ? auth_proto_parse_hello(m, &a, &b)
		          : rows[i].which == 'v' ? auth_proto_parse_verify(m, &rq)
		          : rows[i].which == 'n' ? auth_proto_parse_notify(m, &rn)
		                                 : auth_proto_parse_result(m, &rp);
		print_message("  row %zu\n", i);
		assert_int_equal(got, rows[i].want);
		ipc_msg_free(m);
	}
}

/* Type 5 was ALERT in version 1: alert mails go to the queue process now
 * (test_alert_proto.c), and a worker drops a peer that sends one. */
static void
test_no_alert_type(void **state)
{
	struct ipc_msg *m = build(5, "ss");
	struct auth_reply r;
	struct auth_notify n;
	uint32_t a, b;

	assert_int_not_equal(AUTH_MSG_HELLO, 5);
	assert_int_not_equal(AUTH_MSG_VERIFY, 5);
	assert_int_not_equal(AUTH_MSG_RESULT, 5);
	assert_int_not_equal(AUTH_MSG_NOTIFY, 5);
	assert_int_equal(auth_proto_parse_hello(m, &a, &b), -1);
	assert_int_equal(auth_proto_parse_result(m, &r), -1);
	assert_int_equal(auth_proto_parse_notify(m, &n), -1);
	ipc_msg_free(m);
}

static void
test_result_names(void **state)
{
	assert_string_equal(auth_result_name(AUTH_OK), "ok");
	assert_string_equal(auth_result_name(AUTH_FAIL), "fail");
	assert_string_equal(auth_result_name(AUTH_TEMPFAIL), "tempfail");
	assert_string_equal(auth_result_name((enum auth_result)42), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_hello),
	        cmocka_unit_test(test_verify),
	        cmocka_unit_test(test_verify_limits),
	        cmocka_unit_test(test_result),
	        cmocka_unit_test(test_malformed),
	        cmocka_unit_test(test_result_names),
	        cmocka_unit_test(test_result_old_peer),
	        cmocka_unit_test(test_notify),
	        cmocka_unit_test(test_count_and_counts),
	        cmocka_unit_test(test_result_every_reason),
	        cmocka_unit_test(test_no_alert_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
