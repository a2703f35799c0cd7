/* SPDX-License-Identifier: ISC */
/*
 * test_base64.c - strict base64 (RFC 4648, as RFC 4954 4 requires): the
 * RFC 4648 10 vectors both ways, every rejection rule, buffer limits, and
 * a round trip over all byte values and lengths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib/base64.h"

static const struct {
	const char *plain;
	const char *b64;
} vectors[] = {
        /* RFC 4648 10 */
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        /* the LOGIN prompts */
        {"Username:", "VXNlcm5hbWU6"},
        {"Password:", "UGFzc3dvcmQ6"},
        /* both non-alphanumeric characters of the alphabet */
        {"\xfb\xff\xbf", "+/+/"},
};

static void
test_vectors_decode(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		unsigned char out[64];
		long n = base64_decode(vectors[i].b64, strlen(vectors[i].b64), out, sizeof(out));

		assert_int_equal(n, (long)strlen(vectors[i].plain));
		assert_memory_equal(out, vectors[i].plain, (size_t)n);
	}
}

static void
test_vectors_encode(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char out[64];
		size_t n = strlen(vectors[i].plain);
		long r = base64_encode(vectors[i].plain, n, out, sizeof(out));

		assert_int_equal(r, (long)strlen(vectors[i].b64));
		assert_string_equal(out, vectors[i].b64);
	}
}

static const char *const invalid[] = {
        /* RFC 4954 4: '=' only at the end */
        "=AAA",
        "A=AA",
        "AA=A",
        "AAA=BBBB",
        "AA==AAAA",
        "Zg==Zg==",
        "A===",
        "====",
        "=",
        "==",
        /* a length that is not a multiple of 4: no unpadded input */
        "A",
        "AA",
        "AAA",
        "Zg",
        "Zg=",
        "Zm9vYg",
        "AAAAA",
        /* characters outside the alphabet; no whitespace skipped */
        " AAA",
        "AAA ",
        "AA\nA",
        "AAAA\r\n",
        "AA\tA",
        "AA-A", /* base64url is another alphabet (RFC 4648 5) */
        "AA_A",
        "AA.A",
        "*",
        "AA*A",
        "\xc3\xa9\xc3\xa9",
        "AA\x80"
        "A",
        "AA\xff"
        "A",
        /* RFC 4648 3.5: non-zero pad bits, a second encoding of the same bytes */
        "Zh==",
        "Zm9=",
        "QR==",
        "AB==",
        "AAB=",
        "//==",
        "///=",
};

static void
test_invalid(void **state)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		unsigned char out[64];

		memset(out, 0, sizeof(out));
		if (base64_decode(invalid[i], strlen(invalid[i]), out, sizeof(out)) != -1)
			fail_msg("accepted \"%s\"", invalid[i]);
	}
}

static void
test_embedded_nul(void **state)
{
	unsigned char out[8];

	/* len covers a NUL the string functions would stop at */
	assert_int_equal(base64_decode("AA\0A", 4, out, sizeof(out)), -1);
	assert_int_equal(base64_decode("AAAA\0AAA", 8, out, sizeof(out)), -1);
	/* only len characters are read */
	assert_int_equal(base64_decode("Zm9vXXXX", 4, out, sizeof(out)), 3);
	assert_memory_equal(out, "foo", 3);
}

static void
test_decode_limits(void **state)
{
	unsigned char out[8];

	/* exactly fitting output is fine; one byte short is not */
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 6), 6);
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5), -1);
	assert_int_equal(base64_decode("Zm9vYg==", 8, out, 4), 4);
	assert_int_equal(base64_decode("Zm9vYg==", 8, out, 3), -1);
	assert_int_equal(base64_decode("", 0, out, 0), 0);
	assert_int_equal(base64_decode("Zg==", 4, NULL, 0), -1);
	/* the macro is an upper bound */
	assert_true(BASE64_DECODED_MAX(8) >= 6);
	assert_true(BASE64_DECODED_MAX(0) >= 0);
}

static void
test_encode_limits(void **state)
{
	char out[16];

	assert_int_equal(BASE64_ENCODED_SIZE(0), 1);
	assert_int_equal(BASE64_ENCODED_SIZE(1), 5);
	assert_int_equal(BASE64_ENCODED_SIZE(3), 5);
	assert_int_equal(BASE64_ENCODED_SIZE(4), 9);
	assert_int_equal(base64_encode("foo", 3, out, 5), 4);
	assert_string_equal(out, "Zm9v");
	/* no room for the NUL */
	assert_int_equal(base64_encode("foo", 3, out, 4), -1);
	assert_int_equal(base64_encode("", 0, out, 0), -1);
	assert_int_equal(base64_encode("", 0, out, 1), 0);
	assert_string_equal(out, "");
}

static void
test_roundtrip(void **state)
{
	unsigned char in[300], dec[300];
	char enc[BASE64_ENCODED_SIZE(300)];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(in); len++) {
		long e = base64_encode(in, len, enc, sizeof(enc));
		long d;

		assert_int_equal(e, (long)(BASE64_ENCODED_SIZE(len) - 1));
		d = base64_decode(enc, (size_t)e, dec, sizeof(dec));
		assert_int_equal(d, (long)len);
		assert_memory_equal(dec, in, len);
		assert_true((size_t)d <= BASE64_DECODED_MAX((size_t)e));
	}
}

/* Every byte value in every position of the first quad: exactly the 64
 * alphabet characters decode, anything else fails. */
static void
test_alphabet_exhaustive(void **state)
{
	static const char alphabet[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char out[8];

	for (int pos = 0; pos < 4; pos++) {
		for (int c = 0; c < 256; c++) {
			char q[4] = {'A', 'A', 'A', 'A'};
			bool in_alphabet = c != 0 && memchr(alphabet, c, 64) != NULL;
			long n;

			q[pos] = (char)c;
			n = base64_decode(q, 4, out, sizeof(out));
			if (in_alphabet)
				assert_int_equal(n, 3);
			else if (c == '=' && pos == 3)
				assert_int_equal(n, 2); /* "AAA=" */
			else
				assert_int_equal(n, -1);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_vectors_decode), cmocka_unit_test(test_vectors_encode),
	        cmocka_unit_test(test_invalid),        cmocka_unit_test(test_embedded_nul),
	        cmocka_unit_test(test_decode_limits),  cmocka_unit_test(test_encode_limits),
	        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_alphabet_exhaustive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
