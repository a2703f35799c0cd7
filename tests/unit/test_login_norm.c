/* SPDX-License-Identifier: ISC */
/*
 * test_login_norm.c - the normalized login: the spellings a directory takes
 * for one entry (RFC 4518: case, insignificant spaces) give one string;
 * Unicode folding (sharp s, Greek final sigma, full-width letters, the
 * Kelvin sign) comes from libunistring; bytes that are not UTF-8 are folded
 * byte by byte; NUL bytes and empty input are handled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth/login_norm.h"

struct row {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *want;
};

static void
test_table(void **state)
{
	static const struct row rows[] = {
	        {"ann", 0, "ann"},
	        {"ann ", 0, "ann"},
	        {" ANN", 0, "ann"},
	        {"  ann  ", 0, "ann"},
	        {"\tAnn\r\n", 0, "ann"},
	        {"Ann  Lee", 0, "ann lee"},
	        {"Ann \t Lee", 0, "ann lee"},
	        {"ALICE@Example.ORG", 0, "alice@example.org"},
	        {"", 0, ""},
	        {"   ", 0, ""},
	        /* no-break space, ideographic space, en space: blanks */
	        {"\xc2\xa0"
	         "ann\xe3\x80\x80",
	         0, "ann"},
	        {"ann\xe2\x80\x82lee", 0, "ann lee"},
	        /* STRASSE with sharp s folds to "strasse" */
	        {"Stra\xc3\x9f"
	         "e",
	         0, "strasse"},
	        /* full-width ANN (NFKC) */
	        {"\xef\xbc\xa1\xef\xbc\xae\xef\xbc\xae", 0, "ann"},
	        /* KELVIN SIGN folds to k */
	        {"\xe2\x84\xaa", 0, "k"},
	        /* Greek: capital sigma and final sigma fold alike */
	        {"\xce\xa3\xce\xbf\xcf\x82", 0, "\xcf\x83\xce\xbf\xcf\x83"},
	        /* e + combining acute and precomposed e-acute: one form */
	        {"Ce\xcc\x81"
	         "cile",
	         0,
	         "c\xc3\xa9"
	         "cile"},
	        {"C\xc3\x89"
	         "CILE",
	         0,
	         "c\xc3\xa9"
	         "cile"},
	        /* not UTF-8: ASCII folded, other bytes kept */
	        {" AB\xff"
	         "C  D ",
	         0,
	         "ab\xff"
	         "c d"},
	        {"ab\0CD", 5, "ab\0cd"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		size_t len = r->len != 0 ? r->len : strlen(r->in);
		size_t wlen = r->len != 0 ? r->len : strlen(r->want);
		char *got = login_norm_fold(r->in, len);

		print_message("  row %zu\n", i);
		if (r->len == 0) {
			assert_string_equal(got, r->want);
		} else {
			/* NUL kept: compare the bytes */
			assert_memory_equal(got, r->want, wlen);
		}
		free(got);
	}
}

/* Folding twice changes nothing. */
static void
test_idempotent(void **state)
{
	static const char *const in[] = {"  Ann  Lee ",
	                                 "Stra\xc3\x9f"
	                                 "e",
	                                 "\xe2\x84\xaa"
	                                 "X",
	                                 "a\xff"
	                                 "B"};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char *once = login_norm_fold(in[i], strlen(in[i]));
		char *twice = login_norm_fold(once, strlen(once));
		assert_string_equal(once, twice);
		free(once);
		free(twice);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table),
	        cmocka_unit_test(test_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
