/* SPDX-License-Identifier: ISC */
/*
 * auth_reason.c - the log words of enum auth_reason (auth_reason.h). One
 * table, indexed by the enum, so that a reason added without its word is a
 * NULL the unit test finds, and the words tests and admins grep for stay the
 * ones the README and docs/auth-protocol.md list.
 */
#include "auth_reason.h"

#include <stddef.h>

static const char *const auth_reason_names[AUTH_REASON_COUNT] = {
        [AUTH_REASON_OK] = "ok",
        [AUTH_REASON_FOUND] = "found",
        [AUTH_REASON_BAD_PASSWORD] = "bad_password",
        [AUTH_REASON_UNKNOWN_USER] = "unknown_user",
        [AUTH_REASON_UNSUPPORTED_HASH] = "unsupported_hash",
        [AUTH_REASON_MECH_UNAVAILABLE] = "mech_unavailable",
        [AUTH_REASON_EMPTY_PASSWORD] = "empty_password",
        [AUTH_REASON_NO_PASSWORD] = "no_password",
        [AUTH_REASON_NUL_IN_PASSWORD] = "nul_in_password",
        [AUTH_REASON_AMBIGUOUS] = "ambiguous",
        [AUTH_REASON_NOT_IN_GROUP] = "not_in_group",
        [AUTH_REASON_BIND_REFUSED] = "bind_refused",
        [AUTH_REASON_UPSTREAM_REJECTED] = "upstream_rejected",
        [AUTH_REASON_INVALID_REQUEST] = "invalid_request",
        [AUTH_REASON_MALFORMED] = "malformed",
        [AUTH_REASON_INTERNAL] = "internal",
        [AUTH_REASON_NO_SOURCE] = "no_source",
        [AUTH_REASON_BUSY] = "busy",
        [AUTH_REASON_LOCKED] = "locked",
        [AUTH_REASON_DIRECTORY_UNAVAILABLE] = "directory_unavailable",
        [AUTH_REASON_UPSTREAM_UNAVAILABLE] = "upstream_unavailable",
        [AUTH_REASON_UPSTREAM_TIMEOUT] = "upstream_timeout",
        [AUTH_REASON_UPSTREAM_TLS] = "upstream_tls",
        [AUTH_REASON_UPSTREAM_PROTOCOL] = "upstream_protocol",
        [AUTH_REASON_UPSTREAM_LOOP] = "upstream_loop",
        [AUTH_REASON_UPSTREAM_NO_AUTH] = "upstream_no_auth",
        [AUTH_REASON_UPSTREAM_TEMPFAIL] = "upstream_tempfail",
        [AUTH_REASON_QUEUE_TIMEOUT] = "queue_timeout",
        [AUTH_REASON_AUTH_UNAVAILABLE] = "auth_unavailable",
        [AUTH_REASON_TIMEOUT] = "timeout",
        [AUTH_REASON_TOO_MANY_REQUESTS] = "too_many_requests",
        [AUTH_REASON_ACCOUNT_DISABLED] = "account_disabled",
        [AUTH_REASON_ACCOUNT_LOCKED] = "account_locked",
        [AUTH_REASON_ACCOUNT_EXPIRED] = "account_expired",
        [AUTH_REASON_PASSWORD_EXPIRED] = "password_expired",
        [AUTH_REASON_PASSWORD_MUST_CHANGE] = "password_must_change",
        [AUTH_REASON_LOGON_HOURS] = "logon_hours",
        [AUTH_REASON_WORKSTATION_REFUSED] = "workstation_refused",
        [AUTH_REASON_PASSWORD_UNREADABLE] = "password_unreadable",
};

const char *
auth_reason_name(enum auth_reason r)
{
	if ((unsigned)r >= AUTH_REASON_COUNT || auth_reason_names[r] == NULL)
		return "unknown";
	return auth_reason_names[r];
}

bool
auth_reason_valid(uint32_t v)
{
	return v < AUTH_REASON_COUNT;
}
