/* SPDX-License-Identifier: ISC */
/*
 * sasl_plain.c - PLAIN (RFC 4616 2): one client message,
 * [authzid] NUL authcid NUL passwd. Client first: without an initial
 * response the server sends an empty challenge (RFC 4954 4, RFC 4422 5).
 *
 * Proxy authorisation is not offered, so an authzid must be empty or the
 * authcid itself. SASLprep is not applied: logins are compared as octets
 * by the auth process.
 */
#include "sasl_mech.h"

#include <string.h>

static enum sasl_result
sasl_plain_step(struct sasl *s, const unsigned char *in, size_t len)
{
	const unsigned char *authzid = in, *authcid, *passwd, *end = in + len;
	const unsigned char *nul;
	size_t authzid_len, authcid_len, passwd_len;

	/* Exactly three fields, so exactly two NULs (RFC 4616 2: NUL never
	 * appears inside a field). */
	nul = memchr(in, '\0', len);
	if (nul == NULL)
		return SASL_MALFORMED;
	authzid_len = (size_t)(nul - in);
	authcid = nul + 1;
	nul = memchr(authcid, '\0', (size_t)(end - authcid));
	if (nul == NULL)
		return SASL_MALFORMED;
	authcid_len = (size_t)(nul - authcid);
	passwd = nul + 1;
	passwd_len = (size_t)(end - passwd);
	if (memchr(passwd, '\0', passwd_len) != NULL)
		return SASL_MALFORMED;

	/* RFC 4616 2: authcid and passwd are 1*SAFE; each may be at least
	 * 255 octets (our limits are AUTH_MAX_LOGIN and AUTH_MAX_SECRET). */
	if (!sasl_valid_login(authcid, authcid_len) || !sasl_valid_secret(passwd, passwd_len))
		return SASL_MALFORMED;
	/* No proxy authorisation: an authzid other than the authcid is
	 * refused rather than ignored. */
	if (authzid_len != 0 &&
	    (authzid_len != authcid_len || memcmp(authzid, authcid, authcid_len) != 0))
		return SASL_MALFORMED;

	sasl_set_login(s, authcid, authcid_len);
	sasl_set_secret(s, passwd, passwd_len);
	return SASL_DONE;
}

static enum sasl_result
sasl_plain_start(struct sasl *s, const unsigned char *in, size_t len)
{
	if (in == NULL) {
		/* RFC 4954 4: no initial response for a client-first
		 * mechanism, so ask for it with an empty challenge. */
		sasl_set_challenge(s, "", 0);
		return SASL_CHALLENGE;
	}
	return sasl_plain_step(s, in, len);
}

const struct sasl_mech sasl_plain_mech = {
        .name = "PLAIN",
        .server_first = false,
        .start = sasl_plain_start,
        .step = sasl_plain_step,
};
