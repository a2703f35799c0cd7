/* SPDX-License-Identifier: ISC */
/*
 * auth_reason.h - why a credential check ended the way it did: one enum for
 * every reason a source, the auth process or a worker gives, and one table of
 * the words the logs print (`reason=bad_password`). Code decides on the enum,
 * never on the word; the RESULT message carries the enum as a u32.
 *
 * The values are the wire's: append new reasons before AUTH_REASON_COUNT and
 * never renumber (docs/auth-protocol.md lists them).
 */
#ifndef AUTHRELAY_AUTH_REASON_H
#define AUTHRELAY_AUTH_REASON_H

#include <stdbool.h>
#include <stdint.h>

enum auth_reason {
	/* The credentials match (any source), or the entry was found
	 * (test-query's lookup only). */
	AUTH_REASON_OK = 0,
	AUTH_REASON_FOUND = 1,
	/* AUTH_FAIL: definite answers about these credentials. */
	AUTH_REASON_BAD_PASSWORD = 2,
	AUTH_REASON_UNKNOWN_USER = 3,
	AUTH_REASON_UNSUPPORTED_HASH = 4,
	AUTH_REASON_MECH_UNAVAILABLE = 5,
	AUTH_REASON_EMPTY_PASSWORD = 6,
	AUTH_REASON_NO_PASSWORD = 7,     /* ldap fetch: no password attribute */
	AUTH_REASON_NUL_IN_PASSWORD = 8, /* forward: cannot go upstream */
	AUTH_REASON_AMBIGUOUS = 9,       /* ldap: the login matches twice */
	AUTH_REASON_NOT_IN_GROUP = 10,   /* ldap: group_dn */
	AUTH_REASON_BIND_REFUSED = 11,   /* ldap: locked, expired (policy) */
	AUTH_REASON_UPSTREAM_REJECTED = 12,
	AUTH_REASON_INVALID_REQUEST = 13, /* worker: a field over its limit */
	AUTH_REASON_MALFORMED = 14,       /* worker: a malformed SASL message */
	/* AUTH_TEMPFAIL: nobody could answer. */
	AUTH_REASON_INTERNAL = 15,
	AUTH_REASON_NO_SOURCE = 16,
	AUTH_REASON_BUSY = 17,
	AUTH_REASON_LOCKED = 18, /* the throttle's lockout */
	AUTH_REASON_DIRECTORY_UNAVAILABLE = 19,
	AUTH_REASON_UPSTREAM_UNAVAILABLE = 20,
	AUTH_REASON_UPSTREAM_TIMEOUT = 21,
	AUTH_REASON_UPSTREAM_TLS = 22,
	AUTH_REASON_UPSTREAM_PROTOCOL = 23,
	AUTH_REASON_UPSTREAM_LOOP = 24,
	AUTH_REASON_UPSTREAM_NO_AUTH = 25,
	AUTH_REASON_UPSTREAM_TEMPFAIL = 26,
	AUTH_REASON_QUEUE_TIMEOUT = 27,    /* forward: no upstream session in time */
	AUTH_REASON_AUTH_UNAVAILABLE = 28, /* worker: not connected */
	AUTH_REASON_TIMEOUT = 29,          /* worker: no RESULT in time */
	AUTH_REASON_TOO_MANY_REQUESTS = 30,
	/* AUTH_FAIL from Active Directory's bind sub-codes (ldap_ad.h): the
	 * password was right, the account's state refuses it. */
	AUTH_REASON_ACCOUNT_DISABLED = 31,     /* data 533 */
	AUTH_REASON_ACCOUNT_LOCKED = 32,       /* data 775: the directory's own lockout */
	AUTH_REASON_ACCOUNT_EXPIRED = 33,      /* data 701 */
	AUTH_REASON_PASSWORD_EXPIRED = 34,     /* data 532 */
	AUTH_REASON_PASSWORD_MUST_CHANGE = 35, /* data 773 */
	AUTH_REASON_LOGON_HOURS = 36,          /* data 530 */
	AUTH_REASON_WORKSTATION_REFUSED = 37,  /* data 531 */
	/* ldap fetch: no entry shows the password attribute to the service
	 * account, a configuration fault (tempfail, never counted) */
	AUTH_REASON_PASSWORD_UNREADABLE = 38,
	AUTH_REASON_COUNT /* not a reason: the number of them */
};

/* The log word ("bad_password"); "unknown" for a value out of range. */
const char *auth_reason_name(enum auth_reason);

/* True if v (off the wire) is a reason this build knows. */
bool auth_reason_valid(uint32_t v);

#endif
