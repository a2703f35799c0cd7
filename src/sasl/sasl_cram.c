/* SPDX-License-Identifier: ISC */
/*
 * sasl_cram.c - CRAM-MD5 (RFC 2195 2): the server sends a msg-id shaped
 * challenge "<random.timestamp@hostname>", the client answers
 * "user SP digest" with digest = HMAC-MD5(secret, challenge) as 32
 * lower-case hex digits. We only check the shape: the auth process, which
 * knows the secret, checks the digest against sasl_challenge().
 */
#include "sasl_mech.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../lib/log.h"

#define SASL_CRAM_DIGEST_LEN 32

/* The random part makes every challenge unique, so a captured response
 * cannot be replayed; the timestamp is what RFC 2195 2 shows. */
static uint64_t
sasl_cram_random(void)
{
	uint64_t v;
	size_t got = 0;

	while (got < sizeof(v)) {
		ssize_t n = getrandom((unsigned char *)&v + got, sizeof(v) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("sasl: getrandom: %s", strerror(errno));
		}
		got += (size_t)n;
	}
	return v;
}

static enum sasl_result
sasl_cram_start(struct sasl *s, const unsigned char *in, size_t len)
{
	uint64_t rnd;
	long long now;
	int n;

	/* sasl.c refuses initial responses for server-first mechanisms. */
	if (in != NULL)
		return SASL_BAD_INITIAL;
	rnd = sasl_cram_random();
	now = (long long)time(NULL);
	n = snprintf(NULL, 0, "<%" PRIu64 ".%lld@%s>", rnd, now, s->hostname);
	if (n < 0)
		fatal("sasl: cannot format the CRAM-MD5 challenge");
	free(s->challenge);
	s->challenge = xmalloc((size_t)n + 1);
	snprintf(s->challenge, (size_t)n + 1, "<%" PRIu64 ".%lld@%s>", rnd, now, s->hostname);
	sasl_set_challenge(s, s->challenge, (size_t)n);
	return SASL_CHALLENGE;
}

static enum sasl_result
sasl_cram_step(struct sasl *s, const unsigned char *in, size_t len)
{
	const unsigned char *sp = NULL, *digest;
	size_t user_len;

	/* The digest holds no space, so the last one separates it from a
	 * user name that may itself hold spaces. */
	for (size_t i = len; i > 0; i--) {
		if (in[i - 1] == ' ') {
			sp = in + i - 1;
			break;
		}
	}
	if (sp == NULL)
		return SASL_MALFORMED;
	user_len = (size_t)(sp - in);
	digest = sp + 1;
	if ((size_t)(in + len - digest) != SASL_CRAM_DIGEST_LEN)
		return SASL_MALFORMED;
	/* RFC 2195 2: the digest is lower-case hex. */
	for (size_t i = 0; i < SASL_CRAM_DIGEST_LEN; i++) {
		unsigned char c = digest[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return SASL_MALFORMED;
	}
	if (!sasl_valid_login(in, user_len))
		return SASL_MALFORMED;
	sasl_set_login(s, in, user_len);
	sasl_set_secret(s, digest, SASL_CRAM_DIGEST_LEN);
	return SASL_DONE;
}

const struct sasl_mech sasl_cram_mech = {
        .name = "CRAM-MD5",
        .server_first = true,
        .start = sasl_cram_start,
        .step = sasl_cram_step,
};
