/* SPDX-License-Identifier: ISC */
/*
 * test_alert_proto.c - the alert channel's MAIL and HOOK messages: round
 * trips through real records on a SOCK_SEQPACKET pair (as the auth and the
 * queue process exchange them), texts cut at ALERT_MAX_TEXT, and every
 * refusal: wrong type, fields missing, NUL in a text field, a kind that is
 * not a log-safe word, no recipient, an empty text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <unistd.h>

#include "authwire/alert_proto.h"
#include "lib/ipc.h"
#include "support/ut_ipc.h"

static void
test_mail(void **state)
{
	static const char text[] = "From: a@b\r\n\r\nhello\r\n";
	struct alert_mail_msg a = {"login_failures", "admin@example.org,sec@example.org", text,
	                           sizeof(text) - 1};
	struct alert_mail_msg g;
	struct alert_hook_msg h;
	struct ipc_msg *m;

	m = ut_ipc_record(alert_proto_mail(&a));
	assert_int_equal(ipc_msg_type(m), ALERT_MSG_MAIL);
	assert_int_equal(alert_proto_parse_mail(m, &g), 0);
	assert_string_equal(g.kind, "login_failures");
	assert_string_equal(g.to, a.to);
	assert_int_equal(g.message_len, a.message_len);
	assert_memory_equal(g.message, text, a.message_len);
	ipc_msg_free(m);

	m = ut_ipc_record(alert_proto_mail(&a));
	assert_int_equal(alert_proto_parse_hook(m, &h), -1); /* wrong type */
	ipc_msg_free(m);
}

static void
test_hook(void **state)
{
	static const char text[] = "kind=send_limit user=\"bob\"\nhost=mx\n\ntitle\nbody\n";
	struct alert_hook_msg a = {"send_limit", text, sizeof(text) - 1};
	struct alert_hook_msg g;
	struct alert_mail_msg ml;
	struct ipc_msg *m;

	m = ut_ipc_record(alert_proto_hook(&a));
	assert_int_equal(ipc_msg_type(m), ALERT_MSG_HOOK);
	assert_int_equal(alert_proto_parse_hook(m, &g), 0);
	assert_string_equal(g.kind, "send_limit");
	assert_int_equal(g.text_len, a.text_len);
	assert_memory_equal(g.text, text, a.text_len);
	ipc_msg_free(m);

	m = ut_ipc_record(alert_proto_hook(&a));
	assert_int_equal(alert_proto_parse_mail(m, &ml), -1); /* wrong type */
	ipc_msg_free(m);
}

/* Longer texts are cut at ALERT_MAX_TEXT, which still fits one frame. */
static void
test_cut(void **state)
{
	size_t big = ALERT_MAX_TEXT + 5000;
	char *text = malloc(big);
	struct alert_mail_msg g;
	struct alert_hook_msg h;
	struct ipc_msg *m;

	memset(text, 'a', big);
	m = ut_ipc_record(alert_proto_mail(&(struct alert_mail_msg){"multi_ip", "a@b", text, big}));
	assert_int_equal(alert_proto_parse_mail(m, &g), 0);
	assert_int_equal(g.message_len, ALERT_MAX_TEXT);
	ipc_msg_free(m);
	m = ut_ipc_record(alert_proto_hook(&(struct alert_hook_msg){"multi_ip", text, big}));
	assert_int_equal(alert_proto_parse_hook(m, &h), 0);
	assert_int_equal(h.text_len, ALERT_MAX_TEXT);
	ipc_msg_free(m);
	free(text);
}

/* Hand-built messages: s = "login_failures", t = "a@b", x = "text",
 * e = "", z = "a\0b", K = "Bad-Kind", L = a 65-letter kind, B = 60001
 * bytes, u = a u32. */
static struct ipc_msg *
build(uint8_t type, const char *fields)
{
	static char big[ALERT_MAX_TEXT + 1], longkind[ALERT_MAX_KIND + 2];
	struct ipc_msg *m = ipc_msg_new(type);

	memset(big, 'x', sizeof(big));
	memset(longkind, 'k', sizeof(longkind) - 1);
	for (const char *f = fields; *f != '\0'; f++) {
		switch (*f) {
		case 's':
			ipc_msg_add_str(m, "login_failures");
			break;
		case 't':
			ipc_msg_add_str(m, "a@b");
			break;
		case 'x':
			ipc_msg_add_str(m, "text");
			break;
		case 'e':
			ipc_msg_add_str(m, "");
			break;
		case 'z':
			ipc_msg_add_bytes(m, "a\0b", 3);
			break;
		case 'K':
			ipc_msg_add_str(m, "Bad-Kind");
			break;
		case 'L':
			ipc_msg_add_str(m, longkind);
			break;
		case 'B':
			ipc_msg_add_bytes(m, big, sizeof(big));
			break;
		case 'u':
			ipc_msg_add_u32(m, 1);
			break;
		}
	}
	return ut_ipc_record(m);
}

static void
test_malformed(void **state)
{
	static const struct {
		uint8_t type;
		const char *fields;
		char which; /* m (mail), h (hook) */
		int want;
	} rows[] = {
	        {ALERT_MSG_MAIL, "stx", 'm', 0},
	        {ALERT_MSG_MAIL, "stxu", 'm', 0}, /* later fields are ignored */
	        {ALERT_MSG_MAIL, "stz", 'm', 0},  /* the message is bytes */
	        {ALERT_MSG_MAIL, "st", 'm', -1},
	        {ALERT_MSG_MAIL, "s", 'm', -1},
	        {ALERT_MSG_MAIL, "", 'm', -1},
	        {ALERT_MSG_MAIL, "sex", 'm', -1}, /* no recipient */
	        {ALERT_MSG_MAIL, "ste", 'm', -1}, /* empty message */
	        {ALERT_MSG_MAIL, "stB", 'm', -1}, /* over ALERT_MAX_TEXT */
	        {ALERT_MSG_MAIL, "etx", 'm', -1}, /* no kind */
	        {ALERT_MSG_MAIL, "Ktx", 'm', -1}, /* not a log-safe word */
	        {ALERT_MSG_MAIL, "Ltx", 'm', -1}, /* over ALERT_MAX_KIND */
	        {ALERT_MSG_MAIL, "zsx", 'm', -1}, /* NUL in kind */
	        {ALERT_MSG_MAIL, "szx", 'm', -1}, /* NUL in to */
	        {ALERT_MSG_MAIL, "stx", 'h', -1},
	        {ALERT_MSG_HOOK, "sx", 'h', 0},
	        {ALERT_MSG_HOOK, "sxu", 'h', 0},
	        {ALERT_MSG_HOOK, "sz", 'h', 0}, /* the text is bytes */
	        {ALERT_MSG_HOOK, "s", 'h', -1},
	        {ALERT_MSG_HOOK, "se", 'h', -1}, /* empty text */
	        {ALERT_MSG_HOOK, "sB", 'h', -1},
	        {ALERT_MSG_HOOK, "Kx", 'h', -1},
	        {ALERT_MSG_HOOK, "ex", 'h', -1},
	        {ALERT_MSG_HOOK, "ux", 'h', -1},
	        {ALERT_MSG_HOOK, "sx", 'm', -1},
	        {99, "stx", 'm', -1},
	        {99, "sx", 'h', -1},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct ipc_msg *m = build(rows[i].type, rows[i].fields);
		struct alert_mail_msg ml;
		struct alert_hook_msg hk;
		int got = rows[i].which == 'm' ? alert_proto_parse_mail(m, &ml)
		                               : alert_proto_parse_hook(m, &hk);
		print_message("  row %zu\n", i);
		assert_int_equal(got, rows[i].want);
		ipc_msg_free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_mail),
	        cmocka_unit_test(test_hook),
	        cmocka_unit_test(test_cut),
	        cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
