/* SPDX-License-Identifier: ISC */
/*
 * test_sasl.c - the SASL server side: RFC 4954 4 framing ("=", "*",
 * strict base64, initial responses to server-first mechanisms, the line
 * limit), PLAIN (RFC 4616 2), LOGIN and CRAM-MD5 (RFC 2195 2), with every
 * refusal. Exchanges are tables of client lines and expected results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "authwire/auth_proto.h"
#include "lib/base64.h"
#include "sasl/sasl.h"

enum msg_kind { M_NONE, M_TEXT, M_B64 };

/* A client line: nothing (no initial response), literal text, or bytes
 * the test encodes to base64 before sending. */
struct msg {
	enum msg_kind kind;
	const char *s;
	size_t len;
};

#define NONE                                                                                       \
	{                                                                                          \
		M_NONE, NULL, 0                                                                    \
	}
#define TEXT(x)                                                                                    \
	{                                                                                          \
		M_TEXT, x, sizeof(x) - 1                                                           \
	}
#define B64(x)                                                                                     \
	{                                                                                          \
		M_B64, x, sizeof(x) - 1                                                            \
	}
#define NO_STEPS                                                                                   \
	{                                                                                          \
		{                                                                                  \
			NONE, SASL_DONE, NULL                                                      \
		}                                                                                  \
	}

#define USER_PROMPT "VXNlcm5hbWU6" /* "Username:" */
#define PASS_PROMPT "UGFzc3dvcmQ6" /* "Password:" */

struct step {
	struct msg line;
	enum sasl_result result;
	const char *out; /* sasl_out() after a SASL_CHALLENGE */
};

struct sasl_case {
	const char *name;
	const char *mech;
	struct msg ir;
	enum sasl_result start_result;
	const char *start_out;
	struct step steps[3];
	const char *login; /* on SASL_DONE */
	const char *secret;
	size_t secret_len;
};

static const char *
result_name(enum sasl_result r)
{
	switch (r) {
	case SASL_CHALLENGE:
		return "CHALLENGE";
	case SASL_DONE:
		return "DONE";
	case SASL_CANCELLED:
		return "CANCELLED";
	case SASL_BAD_BASE64:
		return "BAD_BASE64";
	case SASL_BAD_INITIAL:
		return "BAD_INITIAL";
	case SASL_MALFORMED:
		return "MALFORMED";
	}
	return "?";
}

/* Turn a msg into the line the client sends; returns a malloc'd string,
 * NULL for M_NONE. */
static char *
msg_line(const struct msg *m, size_t *len_r)
{
	char *out;

	switch (m->kind) {
	case M_NONE:
		*len_r = 0;
		return NULL;
	case M_TEXT:
		out = malloc(m->len + 1);
		memcpy(out, m->s, m->len);
		out[m->len] = '\0';
		*len_r = m->len;
		return out;
	case M_B64:
		out = malloc(BASE64_ENCODED_SIZE(m->len));
		*len_r = (size_t)base64_encode(m->s, m->len, out, BASE64_ENCODED_SIZE(m->len));
		return out;
	}
	return NULL;
}

#define SECRET(x) x, sizeof(x) - 1

static const struct sasl_case cases[] = {
        /* ---- PLAIN ---- */
        {"plain ir", "PLAIN", B64("\0alice\0s3cret"), SASL_DONE, NULL, NO_STEPS, "alice",
         SECRET("s3cret")},
        {"plain lower-case name", "plain", B64("\0alice\0s3cret"), SASL_DONE, NULL, NO_STEPS,
         "alice", SECRET("s3cret")},
        {"plain authzid = authcid", "PLAIN", B64("alice\0alice\0pw"), SASL_DONE, NULL, NO_STEPS,
         "alice", SECRET("pw")},
        {"plain authzid != authcid", "PLAIN", B64("root\0alice\0pw"), SASL_MALFORMED, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"plain authzid prefix of authcid", "PLAIN", B64("alic\0alice\0pw"), SASL_MALFORMED, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"plain authzid longer", "PLAIN", B64("alicex\0alice\0pw"), SASL_MALFORMED, NULL, NO_STEPS,
         NULL, NULL, 0},
        {"plain authzid differs by case", "PLAIN", B64("Alice\0alice\0pw"), SASL_MALFORMED, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"plain utf-8", "PLAIN", B64("\0j\xc3\xb6rg\0p\xc3\xa4ss word"), SASL_DONE, NULL, NO_STEPS,
         "j\xc3\xb6rg", SECRET("p\xc3\xa4ss word")},
        {"plain password with spaces and tab", "PLAIN", B64("\0a\0 x\ty "), SASL_DONE, NULL,
         NO_STEPS, "a", SECRET(" x\ty ")},
        {"plain two fields", "PLAIN", B64("alice\0pw"), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL,
         0},
        {"plain four fields", "PLAIN", B64("\0alice\0pw\0x"), SASL_MALFORMED, NULL, NO_STEPS, NULL,
         NULL, 0},
        {"plain trailing nul", "PLAIN", B64("\0alice\0pw\0"), SASL_MALFORMED, NULL, NO_STEPS, NULL,
         NULL, 0},
        {"plain no nul", "PLAIN", B64("alicepw"), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL, 0},
        {"plain only nuls", "PLAIN", B64("\0\0"), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL, 0},
        {"plain empty authcid", "PLAIN", B64("\0\0pw"), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL,
         0},
        {"plain empty authcid with authzid", "PLAIN", B64("alice\0\0pw"), SASL_MALFORMED, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"plain empty password", "PLAIN", B64("\0alice\0"), SASL_MALFORMED, NULL, NO_STEPS, NULL,
         NULL, 0},
        {"plain control char in authcid", "PLAIN", B64("\0ali\nce\0pw"), SASL_MALFORMED, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"plain DEL in authcid", "PLAIN", B64("\0alice\x7f\0pw"), SASL_MALFORMED, NULL, NO_STEPS,
         NULL, NULL, 0},
        /* RFC 4954 4: "=" is a present, empty response */
        {"plain ir =", "PLAIN", TEXT("="), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL, 0},
        /* no initial response: an empty challenge, then the message */
        {"plain no ir",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{B64("\0alice\0pw"), SASL_DONE, NULL}},
         "alice",
         SECRET("pw")},
        {"plain empty ir is none",
         "PLAIN",
         TEXT(""),
         SASL_CHALLENGE,
         "",
         {{B64("\0alice\0pw"), SASL_DONE, NULL}},
         "alice",
         SECRET("pw")},
        {"plain no ir, empty response",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT(""), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, = response",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT("="), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, cancel",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT("*"), SASL_CANCELLED, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, bad base64",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT("AGFsaWNlAHB3=="), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, malformed",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{B64("alice"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, ** is not a cancel",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT("**"), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        {"plain no ir, * with space",
         "PLAIN",
         NONE,
         SASL_CHALLENGE,
         "",
         {{TEXT("* "), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        /* strict base64 in the initial response (RFC 4954 4) */
        {"plain ir =AAA", "PLAIN", TEXT("=AAA"), SASL_BAD_BASE64, NULL, NO_STEPS, NULL, NULL, 0},
        {"plain ir AAA=BBBB", "PLAIN", TEXT("AAA=BBBB"), SASL_BAD_BASE64, NULL, NO_STEPS, NULL,
         NULL, 0},
        {"plain ir unpadded", "PLAIN", TEXT("AGFsaWNlAHB3"), SASL_DONE, NULL, NO_STEPS, "alice",
         SECRET("pw")},
        {"plain ir short", "PLAIN", TEXT("AGFsaWNlAHB"), SASL_BAD_BASE64, NULL, NO_STEPS, NULL,
         NULL, 0},
        {"plain ir with space", "PLAIN", TEXT("AGFsaWNl AHB3"), SASL_BAD_BASE64, NULL, NO_STEPS,
         NULL, NULL, 0},
        {"plain ir *", "PLAIN", TEXT("*"), SASL_BAD_BASE64, NULL, NO_STEPS, NULL, NULL, 0},
        {"plain ir ==", "PLAIN", TEXT("=="), SASL_BAD_BASE64, NULL, NO_STEPS, NULL, NULL, 0},

        /* ---- LOGIN ---- */
        {"login",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("alice"), SASL_CHALLENGE, PASS_PROMPT}, {B64("s3cret"), SASL_DONE, NULL}},
         "alice",
         SECRET("s3cret")},
        {"login lower-case name",
         "login",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("alice"), SASL_CHALLENGE, PASS_PROMPT}, {B64("pw"), SASL_DONE, NULL}},
         "alice",
         SECRET("pw")},
        /* MS-XLOGIN: the user name as initial response */
        {"login ir",
         "LOGIN",
         B64("alice"),
         SASL_CHALLENGE,
         PASS_PROMPT,
         {{B64("pw"), SASL_DONE, NULL}},
         "alice",
         SECRET("pw")},
        {"login ir =", "LOGIN", TEXT("="), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL, 0},
        {"login ir bad", "LOGIN", TEXT("YWxpY2U"), SASL_BAD_BASE64, NULL, NO_STEPS, NULL, NULL, 0},
        {"login ir control", "LOGIN", B64("al\rice"), SASL_MALFORMED, NULL, NO_STEPS, NULL, NULL,
         0},
        {"login empty user",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{TEXT(""), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"login empty password",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("alice"), SASL_CHALLENGE, PASS_PROMPT}, {TEXT(""), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"login nul in user",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("ali\0ce"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"login nul in password",
         "LOGIN",
         B64("alice"),
         SASL_CHALLENGE,
         PASS_PROMPT,
         {{B64("pw\0tail"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"login cancel at user",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{TEXT("*"), SASL_CANCELLED, NULL}},
         NULL,
         NULL,
         0},
        {"login cancel at password",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("alice"), SASL_CHALLENGE, PASS_PROMPT}, {TEXT("*"), SASL_CANCELLED, NULL}},
         NULL,
         NULL,
         0},
        {"login bad base64 at user",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{TEXT("YWxpY2U=\r"), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        {"login bad base64 at password",
         "LOGIN",
         NONE,
         SASL_CHALLENGE,
         USER_PROMPT,
         {{B64("alice"), SASL_CHALLENGE, PASS_PROMPT}, {TEXT("cHc=cHc="), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
        {"login = at password",
         "LOGIN",
         B64("alice"),
         SASL_CHALLENGE,
         PASS_PROMPT,
         {{TEXT("="), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},

        /* ---- CRAM-MD5: the server speaks first ---- */
        {"cram ir", "CRAM-MD5", B64("tim b913a602c7eda7a495b4e6e7334d3890"), SASL_BAD_INITIAL, NULL,
         NO_STEPS, NULL, NULL, 0},
        {"cram ir =", "CRAM-MD5", TEXT("="), SASL_BAD_INITIAL, NULL, NO_STEPS, NULL, NULL, 0},
        {"cram ir bad base64", "CRAM-MD5", TEXT("!!!!"), SASL_BAD_INITIAL, NULL, NO_STEPS, NULL,
         NULL, 0},
        /* RFC 2195 2's example response */
        {"cram rfc 2195",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{TEXT("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"), SASL_DONE, NULL}},
         "tim",
         SECRET("b913a602c7eda7a495b4e6e7334d3890")},
        {"cram user with space",
         "cram-md5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim smith 0123456789abcdef0123456789abcdef"), SASL_DONE, NULL}},
         "tim smith",
         SECRET("0123456789abcdef0123456789abcdef")},
        {"cram upper-case hex",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim B913A602C7EDA7A495B4E6E7334D3890"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram short digest",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim b913a602c7eda7a495b4e6e7334d389"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram long digest",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim b913a602c7eda7a495b4e6e7334d38900"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram non-hex digest",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim g913a602c7eda7a495b4e6e7334d3890"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram no space",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("timb913a602c7eda7a495b4e6e7334d3890"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram empty user",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64(" b913a602c7eda7a495b4e6e7334d3890"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram trailing space",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("tim b913a602c7eda7a495b4e6e7334d3890 "), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram nul in user",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{B64("t\0m b913a602c7eda7a495b4e6e7334d3890"), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram empty",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{TEXT(""), SASL_MALFORMED, NULL}},
         NULL,
         NULL,
         0},
        {"cram cancel",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{TEXT("*"), SASL_CANCELLED, NULL}},
         NULL,
         NULL,
         0},
        {"cram bad base64",
         "CRAM-MD5",
         NONE,
         SASL_CHALLENGE,
         NULL,
         {{TEXT("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw="), SASL_BAD_BASE64, NULL}},
         NULL,
         NULL,
         0},
};

static void
run_case(const struct sasl_case *c)
{
	struct sasl *s = sasl_new(c->mech, "mx.example.test");
	enum sasl_result r;
	char *line;
	size_t len;

	if (s == NULL)
		fail_msg("%s: sasl_new(%s) failed", c->name, c->mech);
	line = msg_line(&c->ir, &len);
	r = sasl_start(s, line);
	free(line);
	if (r != c->start_result)
		fail_msg("%s: start gave %s, want %s", c->name, result_name(r),
		         result_name(c->start_result));
	if (r == SASL_CHALLENGE && c->start_out != NULL)
		assert_string_equal(sasl_out(s), c->start_out);

	for (size_t i = 0; r == SASL_CHALLENGE && i < AR_NELEM(c->steps); i++) {
		const struct step *st = &c->steps[i];

		if (st->line.kind == M_NONE)
			fail_msg("%s: exchange not finished after %zu steps", c->name, i);
		line = msg_line(&st->line, &len);
		r = sasl_step(s, line, len);
		free(line);
		if (r != st->result)
			fail_msg("%s: step %zu gave %s, want %s", c->name, i, result_name(r),
			         result_name(st->result));
		if (r == SASL_CHALLENGE && st->out != NULL)
			assert_string_equal(sasl_out(s), st->out);
	}
	if (r == SASL_CHALLENGE)
		fail_msg("%s: still in a challenge", c->name);

	if (r == SASL_DONE) {
		size_t slen = 99;
		const char *secret = sasl_secret(s, &slen);

		assert_string_equal(sasl_login(s), c->login);
		assert_int_equal(slen, c->secret_len);
		assert_memory_equal(secret, c->secret, slen);
		assert_int_equal(secret[slen], '\0');
	} else {
		size_t slen = 99;

		assert_null(c->login);
		/* nothing is handed out after a refusal */
		assert_string_equal(sasl_secret(s, &slen), "");
		assert_int_equal(slen, 0);
	}
	/* every result but a challenge ends the exchange */
	assert_int_equal(sasl_step(s, "*", 1), SASL_MALFORMED);
	assert_int_equal(sasl_step(s, "", 0), SASL_MALFORMED);
	sasl_free(s);
}

static void
test_exchanges(void **state)
{
	for (size_t i = 0; i < AR_NELEM(cases); i++)
		run_case(&cases[i]);
}

static void
test_mech_names(void **state)
{
	static const struct {
		const char *name;
		const char *canonical; /* NULL: unknown */
	} names[] = {
	        {"PLAIN", "PLAIN"},       {"plain", "PLAIN"},   {"PlAiN", "PLAIN"},
	        {"LOGIN", "LOGIN"},       {"login", "LOGIN"},   {"CRAM-MD5", "CRAM-MD5"},
	        {"cram-md5", "CRAM-MD5"}, {"", NULL},           {"PLAIN ", NULL},
	        {" PLAIN", NULL},         {"PLAI", NULL},       {"PLAINX", NULL},
	        {"CRAM_MD5", NULL},       {"DIGEST-MD5", NULL}, {"XOAUTH2", NULL},
	        {"ANONYMOUS", NULL},      {"EXTERNAL", NULL},   {"GSSAPI", NULL},
	        {"SCRAM-SHA-256", NULL},  {"\xc3\xa9", NULL},
	};

	for (size_t i = 0; i < AR_NELEM(names); i++) {
		struct sasl *s = sasl_new(names[i].name, "mx.example.test");

		if (names[i].canonical == NULL) {
			if (s != NULL)
				fail_msg("mechanism \"%s\" accepted", names[i].name);
			continue;
		}
		assert_non_null(s);
		assert_string_equal(sasl_mech(s), names[i].canonical);
		assert_string_equal(sasl_out(s), "");
		assert_string_equal(sasl_login(s), "");
		assert_string_equal(sasl_challenge(s), "");
		sasl_free(s);
	}
	assert_null(sasl_new(NULL, "mx.example.test"));
	sasl_free(NULL);
}

static void
test_misuse(void **state)
{
	struct sasl *s = sasl_new("PLAIN", "mx.example.test");

	/* a step before the start */
	assert_int_equal(sasl_step(s, "AGEAYg==", 8), SASL_MALFORMED);
	sasl_free(s);

	s = sasl_new("LOGIN", "mx.example.test");
	assert_int_equal(sasl_start(s, NULL), SASL_CHALLENGE);
	assert_int_equal(sasl_start(s, "YWxpY2U="), SASL_MALFORMED);
	/* a refused second start does not end the running exchange */
	assert_int_equal(sasl_step(s, "YWxpY2U=", 8), SASL_CHALLENGE);
	assert_string_equal(sasl_out(s), PASS_PROMPT);
	assert_int_equal(sasl_step(s, "cHc=", 4), SASL_DONE);
	assert_int_equal(sasl_start(s, NULL), SASL_MALFORMED);
	sasl_free(s);
}

/* The session bounds lines at 12288 octets (RFC 4954 4); we still refuse
 * anything longer rather than overflow, and take the full 12288. */
static void
test_line_limits(void **state)
{
	size_t big = 12288;
	char *line = malloc(big + 8);
	struct sasl *s;

	/* 12288 characters: decodes (9216 octets), but the fields are too long */
	memset(line, 'A', big);
	line[big] = '\0';
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, line), SASL_MALFORMED);
	sasl_free(s);

	/* 12292: refused before decoding */
	memset(line, 'A', big + 4);
	line[big + 4] = '\0';
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, line), SASL_BAD_BASE64);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, line, big + 4), SASL_BAD_BASE64);
	sasl_free(s);
	free(line);
}

/* PLAIN fields: at least 255 octets each (RFC 4616 2), up to
 * AUTH_MAX_LOGIN / AUTH_MAX_SECRET, not one more. */
static void
test_plain_field_limits(void **state)
{
	static const struct {
		size_t authzid, authcid, passwd;
		enum sasl_result result;
	} cases_[] = {
	        {0, 255, 255, SASL_DONE},
	        {255, 255, 255, SASL_DONE},
	        {0, AUTH_MAX_LOGIN, AUTH_MAX_SECRET, SASL_DONE},
	        {AUTH_MAX_LOGIN, AUTH_MAX_LOGIN, 1, SASL_DONE},
	        {0, AUTH_MAX_LOGIN + 1, 8, SASL_MALFORMED},
	        {0, 8, AUTH_MAX_SECRET + 1, SASL_MALFORMED},
	        {AUTH_MAX_LOGIN + 1, AUTH_MAX_LOGIN + 1, 8, SASL_MALFORMED},
	        {0, 1, 1, SASL_DONE},
	};

	for (size_t i = 0; i < AR_NELEM(cases_); i++) {
		size_t n = cases_[i].authzid + cases_[i].authcid + cases_[i].passwd + 2, o = 0;
		unsigned char *msg = malloc(n);
		char *b64 = malloc(BASE64_ENCODED_SIZE(n));
		struct sasl *s = sasl_new("PLAIN", NULL);
		size_t slen;

		memset(msg + o, 'u', cases_[i].authzid);
		o += cases_[i].authzid;
		msg[o++] = '\0';
		memset(msg + o, 'u', cases_[i].authcid);
		o += cases_[i].authcid;
		msg[o++] = '\0';
		memset(msg + o, 'p', cases_[i].passwd);
		base64_encode(msg, n, b64, BASE64_ENCODED_SIZE(n));
		assert_int_equal(sasl_start(s, b64), cases_[i].result);
		if (cases_[i].result == SASL_DONE) {
			assert_int_equal(strlen(sasl_login(s)), cases_[i].authcid);
			sasl_secret(s, &slen);
			assert_int_equal(slen, cases_[i].passwd);
		}
		sasl_free(s);
		free(msg);
		free(b64);
	}
}

static bool
is_digits(const char *p, const char *end)
{
	if (p == end)
		return false;
	for (; p < end; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/* RFC 2195 2: "<random.timestamp@hostname>", base64 on the wire, fresh
 * every time, and sasl_challenge() is exactly what was sent. */
static void
test_cram_challenge(void **state)
{
	static const char *const hosts[] = {"mx.example.test", NULL, ""};
	static const char *const want_host[] = {"mx.example.test", "localhost", "localhost"};
	char first[256] = "";

	for (size_t i = 0; i < AR_NELEM(hosts); i++) {
		struct sasl *s = sasl_new("CRAM-MD5", hosts[i]);
		unsigned char raw[256];
		const char *ch, *dot, *at;
		long n;

		assert_string_equal(sasl_challenge(s), "");
		assert_int_equal(sasl_start(s, NULL), SASL_CHALLENGE);
		ch = sasl_challenge(s);
		n = base64_decode(sasl_out(s), strlen(sasl_out(s)), raw, sizeof(raw));
		assert_int_equal(n, (long)strlen(ch));
		assert_memory_equal(raw, ch, (size_t)n);

		assert_int_equal(ch[0], '<');
		assert_int_equal(ch[strlen(ch) - 1], '>');
		dot = strchr(ch, '.');
		at = strchr(ch, '@');
		assert_non_null(dot);
		assert_non_null(at);
		assert_true(is_digits(ch + 1, dot));
		assert_true(is_digits(dot + 1, at));
		assert_int_equal(strlen(at + 1) - 1, strlen(want_host[i]));
		assert_memory_equal(at + 1, want_host[i], strlen(want_host[i]));

		if (i == 0) {
			snprintf(first, sizeof(first), "%s", ch);
		} else {
			/* the random part differs from one exchange to the next */
			assert_string_not_equal(ch, first);
		}
		/* the challenge stays available after SASL_DONE, for the
		 * auth process to verify the digest against */
		assert_int_equal(
		        sasl_step(s, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw", 48),
		        SASL_DONE);
		assert_string_equal(sasl_challenge(s), (const char *)ch);
		sasl_free(s);
	}
}

/* Each mechanism name has its challenge, and only CRAM-MD5 a msg-id. */
static void
test_challenge_only_cram(void **state)
{
	struct sasl *s = sasl_new("PLAIN", "mx.example.test");

	assert_int_equal(sasl_start(s, "AGFsaWNlAHB3"), SASL_DONE);
	assert_string_equal(sasl_challenge(s), "");
	sasl_free(s);
	s = sasl_new("LOGIN", "mx.example.test");
	assert_int_equal(sasl_start(s, NULL), SASL_CHALLENGE);
	assert_string_equal(sasl_challenge(s), "");
	sasl_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_exchanges),
	        cmocka_unit_test(test_mech_names),
	        cmocka_unit_test(test_misuse),
	        cmocka_unit_test(test_line_limits),
	        cmocka_unit_test(test_plain_field_limits),
	        cmocka_unit_test(test_cram_challenge),
	        cmocka_unit_test(test_challenge_only_cram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
