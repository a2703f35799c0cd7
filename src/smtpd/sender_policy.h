/* SPDX-License-Identifier: ISC */
/*
 * sender_policy.h - may this authenticated user use this MAIL FROM? On a
 * listener with sender_login_match = yes, the reverse-path must be one of
 * the user's own addresses, like Postfix's reject_sender_login_mismatch:
 *
 *   - an address the auth source gave for the user (the users file's third
 *     field, the directory's mail attributes);
 *   - the login itself when it is an address ("alice@example.org"), or the
 *     login at the listener's default_domain when it has no '@': the login
 *     as the client typed it (blanks around it dropped), since the
 *     canonical identity may be no address at all (an LDAP entry's DN);
 *
 * compared without regard to case. The null reverse-path <> is allowed
 * (bounces and notifications have no owner). Users in [protection]
 * sender_allow_users (matched against the identity and the login) may use
 * any address.
 */
#ifndef AUTHRELAY_SENDER_POLICY_H
#define AUTHRELAY_SENDER_POLICY_H

#include "../lib/common.h"

struct listener_cfg;
struct smtpd_protection;

/* NULL if user (the canonical identity the auth process returned), who
 * logged in as login (as typed; NULL: user), may send as mail_from ("" for
 * <>, else "local@domain"), given addresses ("a@x,b@y", may be NULL); else
 * the reply line: "553 5.7.1 ...". */
const char *sender_policy_check(const struct listener_cfg *, const struct smtpd_protection *,
                                const char *user, const char *login, const char *addresses,
                                const char *mail_from);

#endif
