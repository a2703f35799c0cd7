/* SPDX-License-Identifier: ISC */
/*
 * test_auth_reason.c - the reason table: every reason has a word of its own,
 * the words are the ones logs, tests and admins grep for (one row per
 * reason, so renaming one fails here first), and values off the wire are
 * checked against the table's end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "authwire/auth_reason.h"

static const struct {
	enum auth_reason reason;
	uint32_t wire;
	const char *word;
} rows[] = {
        {AUTH_REASON_OK, 0, "ok"},
        {AUTH_REASON_FOUND, 1, "found"},
        {AUTH_REASON_BAD_PASSWORD, 2, "bad_password"},
        {AUTH_REASON_UNKNOWN_USER, 3, "unknown_user"},
        {AUTH_REASON_UNSUPPORTED_HASH, 4, "unsupported_hash"},
        {AUTH_REASON_MECH_UNAVAILABLE, 5, "mech_unavailable"},
        {AUTH_REASON_EMPTY_PASSWORD, 6, "empty_password"},
        {AUTH_REASON_NO_PASSWORD, 7, "no_password"},
        {AUTH_REASON_NUL_IN_PASSWORD, 8, "nul_in_password"},
        {AUTH_REASON_AMBIGUOUS, 9, "ambiguous"},
        {AUTH_REASON_NOT_IN_GROUP, 10, "not_in_group"},
        {AUTH_REASON_BIND_REFUSED, 11, "bind_refused"},
        {AUTH_REASON_UPSTREAM_REJECTED, 12, "upstream_rejected"},
        {AUTH_REASON_INVALID_REQUEST, 13, "invalid_request"},
        {AUTH_REASON_MALFORMED, 14, "malformed"},
        {AUTH_REASON_INTERNAL, 15, "internal"},
        {AUTH_REASON_NO_SOURCE, 16, "no_source"},
        {AUTH_REASON_BUSY, 17, "busy"},
        {AUTH_REASON_LOCKED, 18, "locked"},
        {AUTH_REASON_DIRECTORY_UNAVAILABLE, 19, "directory_unavailable"},
        {AUTH_REASON_UPSTREAM_UNAVAILABLE, 20, "upstream_unavailable"},
        {AUTH_REASON_UPSTREAM_TIMEOUT, 21, "upstream_timeout"},
        {AUTH_REASON_UPSTREAM_TLS, 22, "upstream_tls"},
        {AUTH_REASON_UPSTREAM_PROTOCOL, 23, "upstream_protocol"},
        {AUTH_REASON_UPSTREAM_LOOP, 24, "upstream_loop"},
        {AUTH_REASON_UPSTREAM_NO_AUTH, 25, "upstream_no_auth"},
        {AUTH_REASON_UPSTREAM_TEMPFAIL, 26, "upstream_tempfail"},
        {AUTH_REASON_QUEUE_TIMEOUT, 27, "queue_timeout"},
        {AUTH_REASON_AUTH_UNAVAILABLE, 28, "auth_unavailable"},
        {AUTH_REASON_TIMEOUT, 29, "timeout"},
        {AUTH_REASON_TOO_MANY_REQUESTS, 30, "too_many_requests"},
        {AUTH_REASON_ACCOUNT_DISABLED, 31, "account_disabled"},
        {AUTH_REASON_ACCOUNT_LOCKED, 32, "account_locked"},
        {AUTH_REASON_ACCOUNT_EXPIRED, 33, "account_expired"},
        {AUTH_REASON_PASSWORD_EXPIRED, 34, "password_expired"},
        {AUTH_REASON_PASSWORD_MUST_CHANGE, 35, "password_must_change"},
        {AUTH_REASON_LOGON_HOURS, 36, "logon_hours"},
        {AUTH_REASON_WORKSTATION_REFUSED, 37, "workstation_refused"},
        {AUTH_REASON_PASSWORD_UNREADABLE, 38, "password_unreadable"},
};

/* The wire values are fixed, and each maps to its word. */
static void
test_words_and_values(void **state)
{
	assert_int_equal(sizeof(rows) / sizeof(rows[0]), AUTH_REASON_COUNT);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		print_message("  %s\n", rows[i].word);
		assert_int_equal((uint32_t)rows[i].reason, rows[i].wire);
		assert_string_equal(auth_reason_name(rows[i].reason), rows[i].word);
		assert_true(auth_reason_valid(rows[i].wire));
	}
}

/* No two reasons share a word, and none is left without one. */
static void
test_words_unique(void **state)
{
	for (uint32_t a = 0; a < AUTH_REASON_COUNT; a++) {
		const char *wa = auth_reason_name((enum auth_reason)a);

		assert_string_not_equal(wa, "unknown");
		assert_true(strlen(wa) > 0);
		/* Log-safe: a bare word, nothing to escape. */
		assert_int_equal(strspn(wa, "abcdefghijklmnopqrstuvwxyz_"), strlen(wa));
		for (uint32_t b = a + 1; b < AUTH_REASON_COUNT; b++)
			assert_string_not_equal(wa, auth_reason_name((enum auth_reason)b));
	}
}

static void
test_out_of_range(void **state)
{
	static const uint32_t bad[] = {AUTH_REASON_COUNT, AUTH_REASON_COUNT + 1, 99, 0x7fffffffu,
	                               0xffffffffu};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(auth_reason_valid(bad[i]));
		assert_string_equal(auth_reason_name((enum auth_reason)bad[i]), "unknown");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_words_and_values),
	        cmocka_unit_test(test_words_unique),
	        cmocka_unit_test(test_out_of_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
