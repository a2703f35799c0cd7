/* SPDX-License-Identifier: ISC */
/*
 * login_norm.h - one spelling per login for everything that counts logins:
 * the throttle's per-login counters before a source has found the user, and
 * the canonical identities a source returns (auth_source.h).
 *
 * Directories match logins the way RFC 4518 prepares strings for
 * caseIgnoreMatch: "ann", "ann ", " ANN" and "  ann  " find one entry. A
 * counter keyed on the login as typed would give each spelling a budget of
 * its own, so counters key on this form instead:
 *   - Unicode case folding with NFKC (libunistring's u8_casefold(): full
 *     folding, compatibility forms such as full-width letters and the
 *     no-break space mapped to their plain ones);
 *   - white space (Unicode's White_Space property) trimmed at both ends and
 *     each inner run collapsed to one U+0020.
 * A login that is not UTF-8 is folded byte by byte (ASCII letters lowered,
 * ASCII blanks trimmed and collapsed, other bytes kept), so it still gets
 * one key for its ASCII case and spacing variants.
 */
#ifndef AUTHRELAY_LOGIN_NORM_H
#define AUTHRELAY_LOGIN_NORM_H

#include <stddef.h>

/* The normalized form of login (len bytes; NUL bytes are kept as bytes of
 * a non-UTF-8 login). Returns a malloc'd NUL-terminated string the caller
 * frees; never NULL (fatal() when out of memory). */
char *login_norm_fold(const char *login, size_t len);

#endif
