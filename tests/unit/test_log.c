/* SPDX-License-Identifier: ISC */
/*
 * test_log.c - log_escape(), the one escaper for client-controlled values:
 * hostile input (quotes, backslashes, '=', controls, line breaks, bytes that
 * are not UTF-8, overlong and surrogate forms, bidirectional controls), the
 * characters it keeps, and the length cap, which never cuts an escape or a
 * character in two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib/log.h"

static const struct {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *out;
} cases[] = {
        {"alice", 0, "alice"},
        {"", 0, ""},
        {"ann smith", 0, "ann smith"},
        /* the injection of the fail2ban finding: no quote closes the value,
         * no "client=" survives */
        {"x\" client=6.6.6.6", 0, "x\\\" client\\x3d6.6.6.6"},
        {"a\\b", 0, "a\\\\b"},
        {"k=v=w", 0, "k\\x3dv\\x3dw"},
        /* a forged line: CR, LF, TAB, ESC, DEL, NUL */
        {"u\r\nauth[1] info: s=x", 0, "u\\x0d\\x0aauth[1] info: s\\x3dx"},
        {"\t\x1b[31m\x7f", 0, "\\x09\\x1b[31m\\x7f"},
        {"a\0b", 3, "a\\x00b"},
        /* well-formed UTF-8 is kept */
        {"j\xc3\xbcrgen", 0, "j\xc3\xbcrgen"},
        {"\xe4\xbe\x8b\xe3\x81\x88", 0, "\xe4\xbe\x8b\xe3\x81\x88"},
        {"\xf0\x9f\x98\x80", 0, "\xf0\x9f\x98\x80"},
        /* not UTF-8: each byte escaped */
        {"\xff\xfe", 0, "\\xff\\xfe"},
        {"\xc3", 0, "\\xc3"},          /* truncated sequence */
        {"\xc3(", 0, "\\xc3("},        /* bad continuation */
        {"\xc0\xaf", 0, "\\xc0\\xaf"}, /* overlong '/' */
        {"\xe0\x80\xaf", 0, "\\xe0\\x80\\xaf"},
        {"\xed\xa0\x80", 0, "\\xed\\xa0\\x80"},          /* surrogate */
        {"\xf4\x90\x80\x80", 0, "\\xf4\\x90\\x80\\x80"}, /* above U+10FFFF */
        {"\x80", 0, "\\x80"},
        /* well-formed but hidden: C1 NEL, LINE SEPARATOR, RLO, BOM */
        {"\xc2\x85", 0, "\\xc2\\x85"},
        {"a\xe2\x80\xa8z", 0, "a\\xe2\\x80\\xa8z"},
        {"\xe2\x80\xae"
         "gpj.exe",
         0, "\\xe2\\x80\\xaegpj.exe"},
        {"\xef\xbb\xbf", 0, "\\xef\\xbb\\xbf"},
        /* the first non-hidden neighbours stay */
        {"\xc2\xa0", 0, "\xc2\xa0"},
        {"\xe2\x80\xa7", 0, "\xe2\x80\xa7"},
};

static void
test_cases(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].in);
		char *r = log_escape(cases[i].in, len, out, sizeof(out));

		assert_ptr_equal(r, out);
		assert_string_equal(out, cases[i].out);
	}
}

static void
test_str(void **state)
{
	char out[64];

	assert_string_equal(log_escape_str("a\"b=c", out, sizeof(out)), "a\\\"b\\x3dc");
}

/* Every byte value alone: the result has no raw control, quote, '=' or
 * byte >= 0x80 except inside well-formed kept UTF-8 (none for one byte). */
static void
test_every_byte(void **state)
{
	for (unsigned c = 0; c < 256; c++) {
		char in[1] = {(char)c}, out[16];

		log_escape(in, 1, out, sizeof(out));
		for (const unsigned char *p = (const unsigned char *)out; *p != '\0'; p++) {
			assert_true(*p >= 0x20 && *p < 0x7f);
			assert_true(*p != '=');
		}
		if (c == '"' || c == '\\')
			assert_int_equal(strlen(out), 2);
		else if (c >= 0x20 && c < 0x7f && c != '=')
			assert_int_equal(strlen(out), 1);
		else
			assert_int_equal(strlen(out), 4);
	}
}

/* The cap: output always fits and is terminated; a cut value ends in "...",
 * never in half an escape or half a character. */
static void
test_cap(void **state)
{
	char out[12];

	log_escape_str("abcdefghijklmnop", out, sizeof(out));
	assert_string_equal(out, "abcdefgh...");
	log_escape_str("abcdefgh", out, sizeof(out));
	assert_string_equal(out, "abcdefgh");
	/* "ab" + \x3d would need 10 + "..." */
	log_escape_str("abcde====", out, sizeof(out));
	assert_string_equal(out, "abcde...");
	log_escape_str("abcdef\xe4\xbe\x8b\xe4\xbe\x8b", out, sizeof(out));
	assert_string_equal(out, "abcdef...");
	log_escape_str("\"\"\"\"\"\"", out, sizeof(out));
	assert_string_equal(out, "\\\"\\\"\\\"\\\"...");

	char tiny[3];
	log_escape_str("abcdef", tiny, sizeof(tiny));
	assert_true(strlen(tiny) < sizeof(tiny));
	char one[1] = {'x'};
	log_escape_str("abc", one, sizeof(one));
	assert_string_equal(one, "");
	/* outsz 0 writes nothing */
	char none[1] = {'x'};
	log_escape_str("abc", none, 0);
	assert_int_equal(none[0], 'x');
}

/* Long hostile input into every buffer size: always terminated, within
 * the buffer, and nothing raw leaks. */
static void
test_sizes(void **state)
{
	char in[300];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 37 + 11);
	for (size_t sz = 1; sz < 200; sz++) {
		char out[200];
		memset(out, 'Z', sizeof(out));
		log_escape(in, sizeof(in), out, sz);
		size_t n = strlen(out);
		assert_true(n < sz);
		for (size_t k = sz; k < sizeof(out); k++)
			assert_int_equal(out[k], 'Z');
		for (size_t k = 0; k < n; k++)
			assert_true(out[k] != '\n' && out[k] != '\r' && out[k] != '=');
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cases),      cmocka_unit_test(test_str),
	        cmocka_unit_test(test_every_byte), cmocka_unit_test(test_cap),
	        cmocka_unit_test(test_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
