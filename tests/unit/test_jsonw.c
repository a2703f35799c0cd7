/* SPDX-License-Identifier: ISC */
/*
 * test_jsonw.c - the JSON writer: commas at every nesting, and strings from
 * hostile input (quotes, control characters, invalid and overlong UTF-8,
 * surrogates) always come out as valid JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "lib/jsonw.h"

static char *
take(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_nesting_and_commas(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct jsonw w;
	char *s;

	jsonw_init(&w, b);
	jsonw_object_begin(&w);
	jsonw_kv_str(&w, "a", "x");
	jsonw_kv_int(&w, "n", -42);
	jsonw_key(&w, "list");
	jsonw_array_begin(&w);
	jsonw_int(&w, 1);
	jsonw_object_begin(&w);
	jsonw_kv_bool(&w, "t", true);
	jsonw_object_end(&w);
	jsonw_array_begin(&w);
	jsonw_array_end(&w);
	jsonw_null(&w);
	jsonw_str(&w, NULL);
	jsonw_array_end(&w);
	jsonw_key(&w, "empty");
	jsonw_object_begin(&w);
	jsonw_object_end(&w);
	jsonw_object_end(&w);
	s = take(b);
	assert_string_equal(s, "{\"a\":\"x\",\"n\":-42,\"list\":[1,{\"t\":true},[],null,null],"
	                       "\"empty\":{}}");
	free(s);
	evbuffer_free(b);
}

static const struct {
	const char *in;
	size_t len;
	const char *out;
} strings[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\", 4, "\"q\\\"b\\\\\""},
        {"a\nb\x01\x7f", 5, "\"a\\u000ab\\u0001\\u007f\""},
        {"x\" , \"client\":\"6.6.6.6", 22, "\"x\\\" , \\\"client\\\":\\\"6.6.6.6\""},
        {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""}, /* valid UTF-8 kept */
        {"\xe2\x82\xac\xf0\x9f\x98\x80", 7, "\"\xe2\x82\xac\xf0\x9f\x98\x80\""},
        {"\xff", 1, "\"\\ufffd\""},                                  /* never valid */
        {"\xc3", 1, "\"\\ufffd\""},                                  /* truncated */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},            /* a surrogate */
        {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* past U+10FFFF */
        {"a\0b", 3, "\"a\\u0000b\""},
};

static void
test_hostile_strings(void **state)
{
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		struct jsonw w;
		char *s;

		jsonw_init(&w, b);
		jsonw_strn(&w, strings[i].in, strings[i].len);
		s = take(b);
		assert_string_equal(s, strings[i].out);
		free(s);
		evbuffer_free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_nesting_and_commas),
	        cmocka_unit_test(test_hostile_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
