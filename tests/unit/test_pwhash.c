/* SPDX-License-Identifier: ISC */
/*
 * test_pwhash.c - pwhash_verify() against fixtures made by other tools, so a
 * bug shared by our maker and our checker cannot hide:
 *   {SHA}/{MD5}/{SSHA}/{SMD5}: OpenLDAP's slappasswd;
 *   {SHA256}/{SHA512}/{SSHA256}/{SSHA512}: Python hashlib + base64;
 *   $1$ $5$ $6$: "openssl passwd"; $2a$ $2b$ $y$ $gy$ $7$ and the refused
 *   legacy formats: mkpasswd (whois); $2y$: Python's crypt module;
 *   $argon2*: the argon2 command-line tool of the reference implementation.
 * The password is "correct horse" unless a row says otherwise.
 * Also pwhash_cleartext(), pwhash_make() and pwhash_is_cheap().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <stdbool.h>

#include "lib/pwhash.h"

#define PW "correct horse"
#define PW_UTF8 "p\xc3\xa4sssw\xc3\xb6rd"

struct vector {
	const char *stored;
	const char *password;
};

static const struct vector good[] = {
        {"{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", PW},
        {"{sha}L55TUjtiq8FBorTWAZ0jy6g129A=", PW},
        {"{SHA256}QQTTb42iwlQ0n4WDZ5Pr4CngyVcGOjTJHC6SAxh7VjE=", PW},
        {"{SHA512}VraY3v7bWkNbY0r+MyC7rz/c2SC2xQOkRvx7endrKY1HnRumqLYXgI6wv1ec6aldZoNHvKtxSQhay"
         "TyyeZUZew==",
         PW},
        {"{MD5}PLTnMmMfR+brlh80VUt83g==", PW},
        {"{SSHA}+YQAsRCIvJdvIWRvF/AslPn4IMwGH/vq", PW},
        {"{SSHA}d9OQCuB7puui5BKQpJjCrafS0YAA/2Fi", PW},
        {"{Ssha}d9OQCuB7puui5BKQpJjCrafS0YAA/2Fi", PW},
        {"{SMD5}GFq9jBYW7fELiJqUqaNSdS3dxzs=", PW},
        {"{SSHA256}CFsq5JPfiBQ0W3uR5Dnao+9mknEq9a739V+FPkJ6yjABAgMEBQYHCA==", PW},
        {"{SSHA512}50rsRNBf8j3I5xE+QwaHdFyMhOzITssZ8BB3UxwQ+SI1JKygYm6ZeRYTDuUyFZIIqDonoTuXwB0Z"
         "/MAPhgQCFHNhbHRzYWx0",
         PW},
        {"{CLEARTEXT}" PW, PW},
        {"{PLAIN}" PW, PW},
        {"{plain}" PW, PW},
        {"$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", PW},
        {"$5$abcdefgh$ruMep1ijHnJPZbETDNiumskxcX3kN4lzZd5VlsqE7eB", PW},
        {"$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/GV3A8SkFxEPY0T56CcilGrHK"
         "LffBsp6dLMG.",
         PW},
        {"{CRYPT}$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/GV3A8SkFxEPY0T56C"
         "cilGrHKLffBsp6dLMG.",
         PW},
        {"{crypt}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", PW},
        {"$2b$05$0X9Ub9OUc71FPLver9Gc6OuJUIJYtf4W9WQc8LWZhc4zu6mqGu7QS", PW},
        {"$2a$05$FbMYqR5494cRe04o1OYnCOhH4xzv98a90/8rgUOEpnDkN4/dn8zBW", PW},
        {"$2y$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2", PW},
        {"$y$j9T$Vn50dtiRWUG8fnaZpo8.u.$6S.W3sl6Rw3tXKIHtzPDxpDs/WyO2EHZFzQ4WgTKbw9", PW},
        {"$gy$j9T$BTzIWA1.j4Q3XYteUuWUc1$lo1vQMKrl.z/OtDsWr59H3Jx7Sqle7ceMbBBf39CAp.", PW},
        {"$7$CU..../....V/0rDcKie/wFx4LF3xvqN/$HKKxDmSaBPAMk.b6gnMyU0gJASM9VKjUBUVUcDoCbJ7", PW},
        {"$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFyStdwKhoPL4mMfmfN/"
         "ImNPJY",
         PW},
        {"$argon2i$v=19$m=4096,t=2,p=2$c2FsdHlzYWx0c2FsdA$JxF6oZuNxZtrKnzsy/Ggb894CYY6LGob4j54Ob"
         "fMAZs",
         PW},
        {"$argon2d$v=19$m=1024,t=1,p=1$c2FsdHlzYWx0c2FsdA$8pZrXJbm98ZnHrFAf3ScEKuiiB04WkABzm6Jll"
         "Ov2O4",
         PW},
        {"{ARGON2}$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFyStdwKhoPL"
         "4mMfmfN/ImNPJY",
         PW},
        {"{argon2id}$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFyStdwKho"
         "PL4mMfmfN/ImNPJY",
         PW},
        /* The argon2 README's own example. */
        {"$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "password"},
        /* Non-ASCII passwords are bytes (UTF-8 here). */
        {"{SSHA512}dOhq/2HMM2pf9F0ib9YLp7XTHcYosZ/bisZZIBqER1EUpFSxq+RsGRY4Yspb6YpCUm7s9UDsKQ0FTDCX"
         "ApLkYTEyMzQ1Njc4",
         "p\xc3\xa4ssw\xc3\xb6rd"},
        {"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHlzYWx0c2FsdA$pjypa/E4X070Fn9O4pmiL+/L/8SKbi216oXsXT"
         "3HQiI",
         "p\xc3\xa4ssw\xc3\xb6rd"},
};

/* Values we refuse: PWHASH_UNSUPPORTED, and pwhash_supported() false. */
static const char *const unsupported[] = {
        "",
        "correct horse",
        "hsVOI5drn.tto",                                      /* DES crypt: legacy, refused */
        "$3$$cfc43211ba8dc470832267827cac1407",               /* NT hash */
        "$md5,rounds=95703$.6hkLvwC$$jvpK/qpBRhVW6VpBEoyZR1", /* SunMD5 */
        "{NTLM}cfc43211ba8dc470832267827cac1407",
        "{SHA", /* no closing brace */
        "{}abc",
        "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A",      /* bad base64 length */
        "{SHA}L55TUjtiq8FBorTWAZ0jy6g1 9A=",     /* blank inside */
        "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=AAAA", /* '=' not at the end */
        "{SHA}PLTnMmMfR+brlh80VUt83g==",         /* MD5-sized digest */
        "{SSHA}L55TUjtiq8FBorTWAZ0jy6g129A=",    /* no salt at all */
        "{SMD5}",
        "{CRYPT}",
        "{CRYPT}{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=",
        "{CRYPT}hsVOI5drn.tto",
        "$argon2id$garbage",
        "$argon2x$v=19$m=1024,t=1,p=1$c2FsdHlzYWx0c2FsdA$pjypa/E4X070Fn9O4pmiL+/L/"
        "8SKbi216oXsXT3HQiI",
        "$6$",
        "$y$",
        "$6$abcdefgh",
        "$6$abcdefgh$",
        "$6$abcdefgh$yIZAF3gQPvtKZO", /* truncated */
};

static void
test_good_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const struct vector *v = &good[i];
		print_message("  %s\n", v->stored);
		assert_true(pwhash_supported(v->stored));
		assert_int_equal(pwhash_verify(v->password, strlen(v->password), v->stored),
		                 PWHASH_MATCH);
	}
}

static void
test_wrong_passwords(void **state)
{
	static const char *const wrong[] = {"correct horsE", "correct hors", "correct horse ", "",
	                                    "x"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
			if (strcmp(good[i].password, wrong[w]) == 0)
				continue;
			assert_int_equal(pwhash_verify(wrong[w], strlen(wrong[w]), good[i].stored),
			                 PWHASH_MISMATCH);
		}
	}
}

static void
test_unsupported(void **state)
{
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		print_message("  \"%s\"\n", unsupported[i]);
		assert_false(pwhash_supported(unsupported[i]));
		assert_int_equal(pwhash_verify(PW, strlen(PW), unsupported[i]), PWHASH_UNSUPPORTED);
		assert_null(pwhash_cleartext(unsupported[i]));
	}
}

/* The length is what counts, not a NUL: a buffer without a terminator, and a
 * password that holds a NUL (never equal to anything we store). */
static void
test_length_not_nul(void **state)
{
	char buf[sizeof(PW) + 3];

	memcpy(buf, PW "XYZ", sizeof(buf));
	assert_int_equal(pwhash_verify(buf, strlen(PW), "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A="),
	                 PWHASH_MATCH);
	assert_int_equal(pwhash_verify(buf, strlen(PW), "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80"),
	                 PWHASH_MATCH);
	assert_int_equal(pwhash_verify(buf, strlen(PW), "{PLAIN}" PW), PWHASH_MATCH);
	assert_int_equal(pwhash_verify("correct\0horse", 13, "{PLAIN}correct"), PWHASH_MISMATCH);
	assert_int_equal(pwhash_verify("a\0", 2, "{PLAIN}a"), PWHASH_MISMATCH);
}

static void
test_cleartext(void **state)
{
	static const struct {
		const char *stored, *secret;
	} rows[] = {
	        {"{CLEARTEXT}abc", "abc"},
	        {"{PLAIN}abc", "abc"},
	        {"{cleartext}", ""},
	        {"{Plain}a:b", "a:b"},
	        {"{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", NULL},
	        {"$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", NULL},
	        {"abc", NULL},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *s = pwhash_cleartext(rows[i].stored);
		if (rows[i].secret == NULL)
			assert_null(s);
		else
			assert_string_equal(s, rows[i].secret);
	}
}

static void
test_make(void **state)
{
	static const struct {
		const char *scheme, *prefix;
	} rows[] = {
	        {NULL, "$y$"},
	        {"yescrypt", "$y$"},
	        {"SHA512-crypt", "$6$"},
	        {"bcrypt", "$2b$12$"},
	        {"ssha512", "{SSHA512}"},
	        {"argon2id", "$argon2id$v=19$m=65536,t=3,p=1$"},
	};
	const char *err = NULL;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *h = pwhash_make(PW, rows[i].scheme, &err);
		assert_non_null(h);
		print_message("  %s\n", h);
		assert_memory_equal(h, rows[i].prefix, strlen(rows[i].prefix));
		assert_true(pwhash_supported(h));
		assert_int_equal(pwhash_verify(PW, strlen(PW), h), PWHASH_MATCH);
		assert_int_equal(pwhash_verify("wrong", 5, h), PWHASH_MISMATCH);
		/* A fresh salt every time. */
		char *h2 = pwhash_make(PW, rows[i].scheme, &err);
		assert_non_null(h2);
		assert_string_not_equal(h, h2);
		free(h);
		free(h2);
	}
	assert_null(pwhash_make(PW, "des", &err));
	assert_non_null(err);
	assert_null(pwhash_make(PW, "", &err));
}

/* pwhash_is_cheap(): the scheme decides, not whether the value is valid (a
 * malformed {SHA} value is refused as fast as a good one is checked). */
static void
test_is_cheap(void **state)
{
	static const struct {
		const char *stored;
		bool cheap;
	} rows[] = {
	        {"{CLEARTEXT}x", true},
	        {"{cleartext}x", true},
	        {"{CLEARTEXT}", true},
	        {"{PLAIN}x", true},
	        {"{Plain}x", true},
	        {"{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", true},
	        {"{sha}L55TUjtiq8FBorTWAZ0jy6g129A=", true},
	        {"{SHA1}L55TUjtiq8FBorTWAZ0jy6g129A=", true},
	        {"{SSHA}d9OQCuB7puui5BKQpJjCrafS0YAA/2Fi", true},
	        {"{Ssha}d9OQCuB7puui5BKQpJjCrafS0YAA/2Fi", true},
	        {"{SHA256}QQTTb42iwlQ0n4WDZ5Pr4CngyVcGOjTJHC6SAxh7VjE=", true},
	        {"{SSHA256}CFsq5JPfiBQ0W3uR5Dnao+9mknEq9a739V+FPkJ6yjABAgMEBQYHCA==", true},
	        {"{SHA512}VraY3v7bWkNbY0r+MyC7rz/"
	         "c2SC2xQOkRvx7endrKY1HnRumqLYXgI6wv1ec6aldZoNHvKtxSQ"
	         "hayTyyeZUZew==",
	         true},
	        {"{SSHA512}50rsRNBf8j3I5xE+QwaHdFyMhOzITssZ8BB3UxwQ+"
	         "SI1JKygYm6ZeRYTDuUyFZIIqDonoTuXwB"
	         "0Z/MAPhgQCFHNhbHRzYWx0",
	         true},
	        {"{ssha512}x", true},
	        {"{MD5}PLTnMmMfR+brlh80VUt83g==", true},
	        {"{md5}x", true},
	        {"{SMD5}GFq9jBYW7fELiJqUqaNSdS3dxzs=", true},
	        {"{sMd5}GFq9jBYW7fELiJqUqaNSdS3dxzs=", true},
	        {"{SHA}not base64", true},
	        /* crypt(3) and argon2, bare or braced: slow on purpose. */
	        {"{CRYPT}$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/"
	         "GV3A8SkFxEPY0T5"
	         "6CcilGrHKLffBsp6dLMG.",
	         false},
	        {"{crypt}$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", false},
	        {"{CRYPT}", false},
	        {"$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/"
	         "GV3A8SkFxEPY0T56CcilGr"
	         "HKLffBsp6dLMG.",
	         false},
	        {"$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", false},
	        {"$y$j9T$Vn50dtiRWUG8fnaZpo8.u.$6S.W3sl6Rw3tXKIHtzPDxpDs/WyO2EHZFzQ4WgTKbw9",
	         false},
	        {"$2b$05$0X9Ub9OUc71FPLver9Gc6OuJUIJYtf4W9WQc8LWZhc4zu6mqGu7QS", false},
	        {"$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$"
	         "0EDzCg712BDIk8YvAwFyStdwKhoPL4mMf"
	         "mfN/ImNPJY",
	         false},
	        {"{ARGON2}$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$"
	         "0EDzCg712BDIk8YvAwFyStdwK"
	         "hoPL4mMfmfN/ImNPJY",
	         false},
	        {"{argon2id}$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFySt"
	         "dwKhoPL4mMfmfN/ImNPJY",
	         false},
	        {"{ARGON2I}$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+"
	         "dWRWJTmaaJObG",
	         false},
	        /* Unknown schemes and values without one. */
	        {"{FOO}x", false},
	        {"{NTLM}cfc43211ba8dc470832267827cac1407", false},
	        {"{}x", false},
	        {"{SHA", false},
	        {"{ SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", false},
	        {"{SHAX}L55TUjtiq8FBorTWAZ0jy6g129A=", false},
	        {"{PLAINTEXT}x", false},
	        {"x", false},
	        {"correct horse", false},
	        {"", false},
	        {"hsVOI5drn.tto", false},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		print_message("  %s %s\n", rows[i].cheap ? "cheap" : "slow ", rows[i].stored);
		if (rows[i].cheap)
			assert_true(pwhash_is_cheap(rows[i].stored));
		else
			assert_false(pwhash_is_cheap(rows[i].stored));
	}
	/* Every fixture: cheap exactly when it is no crypt(3) or argon2 value. */
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *st = good[i].stored;
		const char *rest = st[0] == '{' ? strchr(st, '}') + 1 : st;
		bool slow = rest[0] == '$';

		assert_true(pwhash_is_cheap(st) == !slow);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_good_vectors), cmocka_unit_test(test_wrong_passwords),
	        cmocka_unit_test(test_unsupported),  cmocka_unit_test(test_length_not_nul),
	        cmocka_unit_test(test_cleartext),    cmocka_unit_test(test_make),
	        cmocka_unit_test(test_is_cheap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
