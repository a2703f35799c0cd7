/* SPDX-License-Identifier: ISC */
/*
 * keyhash.h - the one keyed hash of the gateway: two functions under random
 * keys made when a keyhash object is created.
 *
 *   keyhash_digest()  HMAC-SHA256, 32 bytes, where the digest itself is
 *                     stored as the key of something: the auth cache names
 *                     a (source, login, password) by it without storing the
 *                     password, the throttle and the alerts name logins and
 *                     clients by it, send_limit names users by it in shared
 *                     memory. A collision there would merge two identities
 *                     (let a wrong password hit a cached success), so the
 *                     output must be a full-size MAC.
 *   keyhash_index()   SipHash-2-4, 64 bits, to place a key in a hash table
 *                     whose entries hold the whole key and compare it: only
 *                     the spread matters, and it costs a tenth of a digest.
 *
 * Both come from OpenSSL 3's EVP_MAC (HMAC, SIPHASH): no hand-written
 * crypto. Since nobody outside the process knows the keys, nobody can choose
 * inputs that pile into one bucket or predict a digest. Keys are drawn by
 * keyhash_new(); an object made before fork() gives the same answers in
 * every child, which is how the shared-memory tables (shmtab.h) agree on
 * where a key lives. A restart makes new keys, which simply empties whatever
 * was keyed with the old ones.
 *
 * Thread safety: every call only reads the object; several threads may hash
 * with one object at once.
 */
#ifndef AUTHRELAY_KEYHASH_H
#define AUTHRELAY_KEYHASH_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define KEYHASH_LEN 32

struct keyhash;

/* One input of a digest: len bytes at p (may hold NUL bytes). */
struct keyhash_part {
	const void *p;
	size_t len;
};

/* Fresh random keys (getrandom(2)); fatal() if the kernel has none or
 * OpenSSL lacks HMAC or SIPHASH. */
struct keyhash *keyhash_new(void);
/* Keys derived from a secret several processes (gateways) share, so that
 * they all give the same digests: the HMAC key is HMAC-SHA256(secret,
 * label), the SipHash key HMAC-SHA256(secret, label " index"); a different
 * label gives unrelated keys. */
struct keyhash *keyhash_derive(const void *secret, size_t secret_len, const char *label);
/* Wipe the keys and free. NULL is fine. */
void keyhash_free(struct keyhash *);

/* out = HMAC-SHA256(key, part[0] 0x00 part[1] 0x00 ... part[n-1]). The NUL
 * separators keep ("ab","c") and ("a","bc") apart as long as only the last
 * part may contain a NUL byte (a password); callers keep it that way. */
void keyhash_digest(const struct keyhash *, uint8_t out[KEYHASH_LEN],
                    const struct keyhash_part *parts, size_t n);

/* Shorthand for NUL-terminated strings: n strings, separated as above. */
void keyhash_strings(const struct keyhash *, uint8_t out[KEYHASH_LEN], const char *const *strs,
                     size_t n);

/* SipHash-2-4 of len bytes at p, under the object's own SipHash key (not
 * the HMAC key): a bucket or probe index. */
uint64_t keyhash_index(const struct keyhash *, const void *p, size_t len);

#endif
