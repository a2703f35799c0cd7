/* SPDX-License-Identifier: ISC */
/*
 * pwhash.h - verify a password against a stored value and make new hashes.
 *
 * Stored formats: crypt(3) strings from libxcrypt ($1$ $5$ $6$ $2a$ $2b$ $2y$ $y$
 * $7$ $gy$), the LDAP-style {SCHEME} prefixes {CLEARTEXT} {PLAIN} {SHA} {SSHA}
 * {SHA256} {SSHA256} {SHA512} {SSHA512} {MD5} {SMD5} {CRYPT} {ARGON2}, and
 * argon2 encoded strings ($argon2id$...). Comparisons are constant-time.
 * Verification can be slow (bcrypt, yescrypt, argon2): call it from a
 * threadpool, never from an event loop.
 */
#ifndef AUTHRELAY_PWHASH_H
#define AUTHRELAY_PWHASH_H

#include <stddef.h>
#include <stdbool.h>

enum pwhash_result { PWHASH_MISMATCH = 0, PWHASH_MATCH = 1, PWHASH_UNSUPPORTED = -1 };

/* Check password (len bytes; may hold any byte but NUL) against stored.
 * Thread-safe. */
enum pwhash_result pwhash_verify(const char *password, size_t len, const char *stored);
/* True if stored is a format pwhash_verify() understands. */
bool pwhash_supported(const char *stored);
/* True if checking stored costs about a microsecond (cleartext and the
 * single-digest {SHA}/{SSHA}/{MD5}... schemes), so that a thread hand-off
 * would cost more than the work; false for crypt(3) and argon2 values, which
 * are slow on purpose and must stay off the event loop. */
bool pwhash_is_cheap(const char *stored);
/* If stored is a cleartext-equivalent value ({CLEARTEXT}, {PLAIN}), return a
 * pointer to the secret inside it, else NULL. Used to serve CRAM-MD5. */
const char *pwhash_cleartext(const char *stored);
/* Hash password with scheme ("yescrypt" (default), "sha512-crypt", "bcrypt",
 * "ssha512", "argon2id"). Returns a malloc'd string or NULL with *error_r. */
char *pwhash_make(const char *password, const char *scheme, const char **error_r);

#endif
