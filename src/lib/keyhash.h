/*
 * keyhash.h - HMAC-SHA256 under a random key made when a process starts.
 *
 * The auth process keys its cache, its throttle counters and its alert
 * tables with these digests: a digest names a (source, login, password)
 * without storing the password, the key never leaves the process, and
 * since nobody outside can compute a digest, nobody can choose inputs that
 * pile into one hash-table bucket. A restart makes a new key, which simply
 * empties whatever was keyed with the old one.
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

/* A fresh random key (getrandom(2)); fatal() if the kernel has none. */
struct keyhash *keyhash_new(void);
/* Wipe the key and free. NULL is fine. */
void keyhash_free(struct keyhash *);

/* out = HMAC-SHA256(key, part[0] 0x00 part[1] 0x00 ... part[n-1]). The NUL
 * separators keep ("ab","c") and ("a","bc") apart as long as only the last
 * part may contain a NUL byte (a password); callers keep it that way. */
void keyhash_digest(const struct keyhash *, uint8_t out[KEYHASH_LEN],
                    const struct keyhash_part *parts, size_t n);

/* Shorthand for NUL-terminated strings: n strings, separated as above. */
void keyhash_strings(const struct keyhash *, uint8_t out[KEYHASH_LEN], const char *const *strs,
                     size_t n);

#endif
