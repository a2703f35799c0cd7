/* SPDX-License-Identifier: ISC */
/*
 * sasl.h - server side of the SASL mechanisms we offer on SMTP AUTH:
 * PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and CRAM-MD5
 * (RFC 2195). A mechanism turns the client's base64 lines into a login and a
 * secret; checking them is the auth process's business, not ours.
 *
 * Usage: sasl_new(), then sasl_start() with the initial response (or NULL),
 * then sasl_step() for each client line while the result is SASL_CHALLENGE.
 * On SASL_DONE, sasl_login()/sasl_secret()/sasl_challenge() give what to verify.
 */
#ifndef AUTHRELAY_SASL_H
#define AUTHRELAY_SASL_H

#include <stddef.h>
#include "../lib/common.h"

enum sasl_result {
	SASL_CHALLENGE,   /* send "334 " + sasl_out() */
	SASL_DONE,        /* credentials ready */
	SASL_CANCELLED,   /* client sent "*": 501 5.7.0 */
	SASL_BAD_BASE64,  /* 501 5.5.2 */
	SASL_BAD_INITIAL, /* initial response for a server-first mech: 501 5.7.0 */
	SASL_MALFORMED,   /* decoded message is invalid (wrong field count, empty
	                     password, authzid != authcid...): 535 5.7.8 */
};

struct sasl;

/* Mechanism names we know, matched case-insensitively. NULL if unknown.
 * hostname is used in the CRAM-MD5 challenge. */
struct sasl *sasl_new(const char *mech, const char *hostname);
/* Canonical upper-case name ("PLAIN"). */
const char *sasl_mech(const struct sasl *);
/* ir: the initial response as sent (base64, or "=" for empty), NULL if none. */
enum sasl_result sasl_start(struct sasl *, const char *ir);
/* One client line (base64, or "*"), CRLF removed. */
enum sasl_result sasl_step(struct sasl *, const char *line, size_t len);
/* The base64 challenge text for the last SASL_CHALLENGE ("" for an empty one). */
const char *sasl_out(const struct sasl *);
const char *sasl_login(const struct sasl *);
const char *sasl_secret(const struct sasl *, size_t *len_r);
const char *sasl_challenge(const struct sasl *); /* CRAM-MD5 challenge, else "" */
/* Wipes the secret. NULL is fine. */
void sasl_free(struct sasl *);

#endif
