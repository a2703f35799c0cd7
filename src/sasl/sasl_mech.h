/* SPDX-License-Identifier: ISC */
/*
 * sasl_mech.h - inside the SASL module only: the state every mechanism
 * shares, the table of functions a mechanism provides, and the helpers
 * sasl.c offers them. Nothing outside src/sasl/ includes this; the rest of
 * the tree sees the opaque struct sasl of sasl.h.
 *
 * sasl.c does what RFC 4954 4 says for every mechanism (base64, "=", "*",
 * initial responses to server-first mechanisms, the line limit); a
 * mechanism only ever sees decoded bytes.
 */
#ifndef AUTHRELAY_SASL_MECH_H
#define AUTHRELAY_SASL_MECH_H

#include <stddef.h>
#include "sasl.h"

struct sasl_mech {
	const char *name;  /* canonical upper case, as advertised in EHLO */
	bool server_first; /* RFC 4954 4: an initial response is refused */
	/* in is the decoded initial response, NULL when none was sent (never
	 * non-NULL for a server-first mechanism). */
	enum sasl_result (*start)(struct sasl *, const unsigned char *in, size_t len);
	/* One decoded client response, after a SASL_CHALLENGE. */
	enum sasl_result (*step)(struct sasl *, const unsigned char *in, size_t len);
};

enum sasl_state { SASL_STATE_NEW, SASL_STATE_RUNNING, SASL_STATE_FINISHED };

struct sasl {
	const struct sasl_mech *mech;
	enum sasl_state state;
	unsigned step;  /* the mechanism's own place in its exchange */
	char *hostname; /* for the CRAM-MD5 challenge */
	char *out;      /* base64 of the last challenge, "" for an empty one */
	char *login;    /* NULL until set */
	char *secret;   /* NULL until set; wiped by sasl_free() */
	size_t secret_len;
	char *challenge; /* CRAM-MD5 challenge as sent, NULL otherwise */
};

extern const struct sasl_mech sasl_plain_mech;
extern const struct sasl_mech sasl_login_mech;
extern const struct sasl_mech sasl_cram_mech;

/* Make raw (len bytes) the next challenge; sasl_out() returns its base64. */
void sasl_set_challenge(struct sasl *, const void *raw, size_t len);
/* Copy the login / the secret (NUL added). The secret is wiped on free. */
void sasl_set_login(struct sasl *, const void *login, size_t len);
void sasl_set_secret(struct sasl *, const void *secret, size_t len);
/* A login we pass on to the auth process: 1..AUTH_MAX_LOGIN octets, no NUL,
 * no control characters (they have no place in a user name and would only
 * reach log lines and directory filters). */
bool sasl_valid_login(const unsigned char *s, size_t len);
/* A secret: 1..AUTH_MAX_SECRET octets, no NUL (back ends take C strings, so
 * "abc\0xyz" must not quietly become "abc"). */
bool sasl_valid_secret(const unsigned char *s, size_t len);

#endif
