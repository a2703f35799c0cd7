/* SPDX-License-Identifier: ISC */
/*
 * sasl.c - the mechanism-independent half of SMTP AUTH (RFC 4954 4): picks
 * the mechanism, decodes each client line with strict base64, handles the
 * "=" empty initial response, the "*" cancel and initial responses sent to
 * server-first mechanisms, and keeps the login and secret a mechanism
 * produces until the session hands them to the auth process.
 *
 * The mechanisms (sasl_plain.c, sasl_login.c, sasl_cram.c) only see decoded
 * bytes, through the table in sasl_mech.h.
 */
#include "sasl.h"
#include "sasl_mech.h"

#include <stdlib.h>
#include <string.h>

#include "../authwire/auth_proto.h"
#include "../lib/base64.h"
#include "../lib/log.h"

/* RFC 4954 4: 12288 octets is enough for every mechanism we offer; the
 * session refuses longer lines with 500 5.5.6 before they reach us. */
#define SASL_MAX_LINE 12288
#define SASL_MAX_DECODED BASE64_DECODED_MAX(SASL_MAX_LINE)

static const struct sasl_mech *const sasl_mechs[] = {
        &sasl_plain_mech,
        &sasl_login_mech,
        &sasl_cram_mech,
};

struct sasl *
sasl_new(const char *mech, const char *hostname)
{
	struct sasl *s;

	if (mech == NULL)
		return NULL;
	for (size_t i = 0; i < AR_NELEM(sasl_mechs); i++) {
		/* RFC 4954 8 (and RFC 4422 3.1): names are case-insensitive. */
		if (ascii_strcasecmp(mech, sasl_mechs[i]->name) != 0)
			continue;
		s = xcalloc(1, sizeof(*s));
		s->mech = sasl_mechs[i];
		s->state = SASL_STATE_NEW;
		s->hostname =
		        xstrdup(hostname != NULL && *hostname != '\0' ? hostname : "localhost");
		s->out = xstrdup("");
		return s;
	}
	return NULL;
}

const char *
sasl_mech(const struct sasl *s)
{
	return s->mech->name;
}

/* Every result but SASL_CHALLENGE ends the exchange (RFC 4954 4: the AUTH
 * command is answered and a new one is needed). */
static enum sasl_result
sasl_result(struct sasl *s, enum sasl_result r)
{
	if (r != SASL_CHALLENGE)
		s->state = SASL_STATE_FINISHED;
	return r;
}

/* Decode len characters of line and pass them to fn. Nothing decoded
 * outlives the call: the buffer is wiped whatever happens. */
static enum sasl_result
sasl_feed(struct sasl *s, const char *line, size_t len,
          enum sasl_result (*fn)(struct sasl *, const unsigned char *, size_t))
{
	unsigned char buf[SASL_MAX_DECODED];
	enum sasl_result r;
	long n;

	if (len > SASL_MAX_LINE)
		return SASL_BAD_BASE64;
	n = base64_decode(line, len, buf, sizeof(buf));
	if (n < 0) {
		/* A failed decode may have written part of the buffer. */
		explicit_bzero(buf, sizeof(buf));
		return SASL_BAD_BASE64;
	}
	r = fn(s, buf, (size_t)n);
	explicit_bzero(buf, (size_t)n);
	return r;
}

enum sasl_result
sasl_start(struct sasl *s, const char *ir)
{
	/* Called twice: the session's bug, never the client's doing. Refuse
	 * rather than restart an exchange that may hold credentials. */
	if (s->state != SASL_STATE_NEW)
		return SASL_MALFORMED;
	s->state = SASL_STATE_RUNNING;

	/* "AUTH PLAIN " with nothing after the space carries no initial
	 * response; "=" is how a client sends an empty one (RFC 4954 4). */
	if (ir == NULL || *ir == '\0')
		return sasl_result(s, s->mech->start(s, NULL, 0));
	/* RFC 4954 4: an initial response to a mechanism where the server
	 * speaks first is refused with 501, "=" included. */
	if (s->mech->server_first)
		return sasl_result(s, SASL_BAD_INITIAL);
	if (strcmp(ir, "=") == 0) {
		static const unsigned char empty[1];
		return sasl_result(s, s->mech->start(s, empty, 0));
	}
	return sasl_result(s, sasl_feed(s, ir, strlen(ir), s->mech->start));
}

enum sasl_result
sasl_step(struct sasl *s, const char *line, size_t len)
{
	if (s->state != SASL_STATE_RUNNING)
		return SASL_MALFORMED;
	/* RFC 4954 4: a line holding only "*" cancels the exchange. */
	if (len == 1 && line[0] == '*')
		return sasl_result(s, SASL_CANCELLED);
	/* A client response is plain base64: "=" is only meaningful as an
	 * initial response and fails to decode here. */
	return sasl_result(s, sasl_feed(s, line, len, s->mech->step));
}

const char *
sasl_out(const struct sasl *s)
{
	return s->out;
}

const char *
sasl_login(const struct sasl *s)
{
	return s->login != NULL ? s->login : "";
}

const char *
sasl_secret(const struct sasl *s, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = s->secret != NULL ? s->secret_len : 0;
	return s->secret != NULL ? s->secret : "";
}

const char *
sasl_challenge(const struct sasl *s)
{
	return s->challenge != NULL ? s->challenge : "";
}

void
sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	if (s->secret != NULL) {
		explicit_bzero(s->secret, s->secret_len);
		free(s->secret);
	}
	/* The login is not secret, but LOGIN users type passwords into the
	 * user name prompt often enough to wipe it too. */
	free_secret(s->login);
	free(s->challenge);
	free(s->hostname);
	free(s->out);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

void
sasl_set_challenge(struct sasl *s, const void *raw, size_t len)
{
	size_t size = BASE64_ENCODED_SIZE(len);
	char *out = xmalloc(size);

	if (base64_encode(raw, len, out, size) < 0)
		fatal("sasl: cannot encode a %zu-byte challenge", len);
	free(s->out);
	s->out = out;
}

void
sasl_set_login(struct sasl *s, const void *login, size_t len)
{
	free_secret(s->login);
	s->login = xmemdup(login, len);
}

void
sasl_set_secret(struct sasl *s, const void *secret, size_t len)
{
	if (s->secret != NULL) {
		explicit_bzero(s->secret, s->secret_len);
		free(s->secret);
	}
	s->secret = xmemdup(secret, len);
	s->secret_len = len;
}

bool
sasl_valid_login(const unsigned char *p, size_t len)
{
	if (len == 0 || len > AUTH_MAX_LOGIN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

bool
sasl_valid_secret(const unsigned char *p, size_t len)
{
	return len > 0 && len <= AUTH_MAX_SECRET && memchr(p, '\0', len) == NULL;
}
