/* SPDX-License-Identifier: ISC */
/*
 * fuzz_sasl.c - libFuzzer target for the SASL server side. The first input
 * byte picks the exchange: bits 0-1 the mechanism (PLAIN, LOGIN, CRAM-MD5,
 * and PLAIN again), bit 2 whether the first line is an initial response,
 * bit 3 whether lines are raw bytes for the harness to base64-encode (so
 * the fuzzer reaches the mechanisms, not only the decoder). The rest is
 * split at '\n' into client lines, sent until the exchange ends.
 *
 * Checked beyond the sanitizers: challenges are valid base64, credentials
 * are handed out only on SASL_DONE and within the limits, and a finished
 * exchange takes no more lines.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authwire/auth_proto.h"
#include "lib/base64.h"
#include "sasl/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static const char *const fuzz_mechs[] = {"PLAIN", "login", "CRAM-MD5", "plain"};

/* The line to send: raw bytes, or their base64 (except a lone "*"). */
static char *
fuzz_line(const uint8_t *p, size_t len, bool encode, size_t *len_r)
{
	char *out;

	if (encode && !(len == 1 && p[0] == '*')) {
		size_t sz = BASE64_ENCODED_SIZE(len);
		out = malloc(sz);
		CHECK(base64_encode(p, len, out, sz) >= 0);
		*len_r = strlen(out);
		return out;
	}
	out = malloc(len + 1);
	memcpy(out, p, len);
	out[len] = '\0';
	*len_r = len;
	return out;
}

static void
fuzz_check_challenge(const struct sasl *s)
{
	const char *out = sasl_out(s);
	size_t len = strlen(out);
	unsigned char *buf = malloc(BASE64_DECODED_MAX(len) + 1);

	CHECK(base64_decode(out, len, buf, BASE64_DECODED_MAX(len) + 1) >= 0);
	free(buf);
}

static void
fuzz_check_done(const struct sasl *s)
{
	size_t slen;
	const char *secret = sasl_secret(s, &slen);
	const char *login = sasl_login(s);

	CHECK(login[0] != '\0' && strlen(login) <= AUTH_MAX_LOGIN);
	CHECK(slen > 0 && slen <= AUTH_MAX_SECRET && secret[slen] == '\0');
	CHECK(memchr(secret, '\0', slen) == NULL);
	if (strcmp(sasl_mech(s), "CRAM-MD5") == 0) {
		CHECK(slen == 32);
		CHECK(sasl_challenge(s)[0] == '<');
	} else {
		CHECK(sasl_challenge(s)[0] == '\0');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p, *end = data + size;
	struct sasl *s;
	enum sasl_result r;
	bool has_ir, encode;
	char *line;
	size_t len;

	if (size == 0)
		return 0;
	s = sasl_new(fuzz_mechs[data[0] & 3], "mx.example.test");
	CHECK(s != NULL);
	has_ir = data[0] & 4;
	encode = data[0] & 8;
	p = data + 1;

	if (has_ir) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);

		line = fuzz_line(p, n, encode, &len);
		r = sasl_start(s, line);
		free(line);
		p = nl != NULL ? nl + 1 : end;
	} else {
		r = sasl_start(s, NULL);
	}

	while (r == SASL_CHALLENGE) {
		const uint8_t *nl;
		size_t n;

		fuzz_check_challenge(s);
		CHECK(sasl_secret(s, &len)[0] == '\0' && len == 0);
		if (p >= end)
			break;
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl : end) - p);
		line = fuzz_line(p, n, encode, &len);
		r = sasl_step(s, line, len);
		free(line);
		p = nl != NULL ? nl + 1 : end;
	}

	if (r == SASL_DONE) {
		fuzz_check_done(s);
	} else if (r != SASL_CHALLENGE) {
		CHECK(sasl_secret(s, &len)[0] == '\0' && len == 0);
	}
	if (r != SASL_CHALLENGE)
		CHECK(sasl_step(s, "*", 1) == SASL_MALFORMED);
	sasl_free(s);
	return 0;
}
