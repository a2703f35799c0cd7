/* SPDX-License-Identifier: ISC */
/*
 * ldap_ad.h - what Active Directory says and accepts beyond plain LDAP:
 * the sub-code in a refused bind's diagnostic message, and the names a
 * user or a service account may log in with.
 *
 * A refused simple bind is always resultCode 49 (invalidCredentials); AD
 * says why in the diagnostic message, as a Windows error in hex after
 * "data ": "80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext
 * error, data 52e, v893". Samba's AD DC says the same. The sub-codes
 * (MS-ADTS 3.1.1.3.4.1, "winerror.h"):
 *   525  no such user              unknown_user
 *   52e  wrong password            bad_password (AD also says 52e for an
 *                                  unknown user, not to tell them apart)
 *   530  outside the logon hours   logon_hours
 *   531  not from this workstation workstation_refused
 *   532  password expired          password_expired
 *   533  account disabled          account_disabled
 *   701  account expired           account_expired
 *   773  must change password      password_must_change
 *   775  account locked out        account_locked
 * AD checks the password first: every code but 52e and 525 means the
 * password was right (or is not checked any more: 775).
 *
 * Names: AD's simple bind takes a DN, a userPrincipalName ("ann@corp.example")
 * or a down-level logon name ("CORP\ann", the NetBIOS domain, a backslash,
 * the sAMAccountName).
 */
#ifndef AUTHRELAY_LDAP_AD_H
#define AUTHRELAY_LDAP_AD_H

#include <stddef.h>
#include "../authwire/auth_reason.h"
#include "../lib/common.h"

/* NetBIOS names are at most 15 characters (MS-NBTE). */
#define LDAP_AD_NETBIOS_MAX 15

/* The sub-code in diag ("... data 52e, ..."), or -1 if it has none. */
int ldap_ad_bind_subcode(const char *diag);

/* The auth reason for a sub-code (AUTH_REASON_ACCOUNT_LOCKED for 775);
 * AUTH_REASON_BIND_REFUSED for one this table does not know. */
enum auth_reason ldap_ad_reason(int subcode);

/* What the sub-code means, for admins ("the account is locked out"); a
 * generic text for an unknown one. */
const char *ldap_ad_describe(int subcode);

/* True if subcode says the account exists and the password was right (or
 * no longer matters), so the refusal is about the account's state. */
bool ldap_ad_account_state(int subcode);

/* Split a down-level logon name "DOMAIN\user": true with the domain copied
 * into domain (NUL-terminated) and *user_r pointing into login, if login
 * has exactly one backslash, a domain of 1 to LDAP_AD_NETBIOS_MAX
 * characters that NetBIOS allows, and a non-empty user part. */
bool ldap_ad_split_downlevel(const char *login, char domain[LDAP_AD_NETBIOS_MAX + 1],
                             const char **user_r);

/* True if name is a valid NetBIOS domain name (1 to 15 characters, none of
 * \ / : * ? " < > | , and no blank or control character). */
bool ldap_ad_netbios_ok(const char *name);

/* True if name is a bind name AD accepts that is not a DN: a UPN
 * ("svc@corp.example": one '@', something on both sides, no blank) or a
 * down-level name ("CORP\svc"). */
bool ldap_ad_bind_name_ok(const char *name);

#endif
