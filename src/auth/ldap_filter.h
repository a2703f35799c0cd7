/* SPDX-License-Identifier: ISC */
/*
 * ldap_filter.h - put a login into an LDAP filter or DN template safely.
 *
 * Templates take %s (the login as typed), %u (its local part: before the
 * last '@', or all of it), %d (its domain: after the last '@', or empty),
 * %D (a user's DN, where the caller has one: group filters) and %% (a '%').
 * Every substituted value is escaped for where it lands, so no login can
 * change the structure of a filter or a DN:
 *   filter values  RFC 4515 3: '*' '(' ')' '\' NUL, and every byte that is
 *                  not printable ASCII, become \XX;
 *   DN values      RFC 4514 2.4: '"' '+' ',' ';' '<' '>' '\' '=' NUL, a
 *                  leading ' ' or '#', a trailing ' ', and every byte that
 *                  is not printable ASCII, become \XX;
 *   none           the value as is (an Active Directory UPN bind name,
 *                  which is never parsed as a filter).
 */
#ifndef AUTHRELAY_LDAP_FILTER_H
#define AUTHRELAY_LDAP_FILTER_H

#include <stddef.h>
#include "../lib/common.h"

enum ldap_escape { LDAP_ESCAPE_FILTER, LDAP_ESCAPE_DN, LDAP_ESCAPE_NONE };

/* Values for the tokens; a NULL field makes its token an error. */
struct ldap_filter_vars {
	const char *login;   /* %s, and the source of %u and %d */
	size_t login_len;    /* the login may hold any byte, NUL included */
	const char *user_dn; /* %D */
};

/* Escape len bytes of value into a new string (malloc'd). */
char *ldap_filter_escape(const char *value, size_t len, enum ldap_escape how);

/* Expand tmpl with vars, escaping each value as how says. Returns a
 * malloc'd string, or NULL with *error_r set when tmpl uses a token that is
 * unknown or has no value in vars. */
char *ldap_filter_expand(const char *tmpl, const struct ldap_filter_vars *vars,
                         enum ldap_escape how, const char **error_r);

/* Config check: tmpl uses only the tokens listed in allowed (e.g. "sud"),
 * and, if is_filter, is one parenthesised filter with balanced parentheses.
 * 0, or -1 with *error_r (a static string). */
int ldap_filter_check_template(const char *tmpl, const char *allowed, bool is_filter,
                               const char **error_r);

#endif
