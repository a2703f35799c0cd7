/* SPDX-License-Identifier: ISC */
/*
 * sasl_login.c - LOGIN (draft-murchison-sasl-login-00, MS-XLOGIN): the
 * server prompts "Username:" then "Password:", the client answers each.
 * The prompts use the colon forms deployed clients expect rather than the
 * draft's "User Name". MS-XLOGIN 3.1.5.1 lets the client send the user
 * name as an initial response, in which case we go straight to the
 * password prompt.
 */
#include "sasl_mech.h"

#include <string.h>

enum sasl_login_step { SASL_LOGIN_USER, SASL_LOGIN_PASSWORD };

static enum sasl_result
sasl_login_user(struct sasl *s, const unsigned char *in, size_t len)
{
	static const char prompt[] = "Password:"; /* "UGFzc3dvcmQ6" */

	if (!sasl_valid_login(in, len))
		return SASL_MALFORMED;
	sasl_set_login(s, in, len);
	s->step = SASL_LOGIN_PASSWORD;
	sasl_set_challenge(s, prompt, strlen(prompt));
	return SASL_CHALLENGE;
}

static enum sasl_result
sasl_login_step(struct sasl *s, const unsigned char *in, size_t len)
{
	if (s->step == SASL_LOGIN_USER)
		return sasl_login_user(s, in, len);
	if (!sasl_valid_secret(in, len))
		return SASL_MALFORMED;
	sasl_set_secret(s, in, len);
	return SASL_DONE;
}

static enum sasl_result
sasl_login_start(struct sasl *s, const unsigned char *in, size_t len)
{
	static const char prompt[] = "Username:"; /* "VXNlcm5hbWU6" */

	s->step = SASL_LOGIN_USER;
	if (in != NULL)
		return sasl_login_user(s, in, len);
	sasl_set_challenge(s, prompt, strlen(prompt));
	return SASL_CHALLENGE;
}

const struct sasl_mech sasl_login_mech = {
        .name = "LOGIN",
        .server_first = false,
        .start = sasl_login_start,
        .step = sasl_login_step,
};
