/* SPDX-License-Identifier: ISC */
/*
 * base64.h - strict base64 (RFC 4648 4) as RFC 4954 4 demands: any character
 * outside the alphabet, '=' anywhere but at the end, or a length that is not a
 * multiple of 4 is an error. No whitespace is skipped.
 */
#ifndef AUTHRELAY_BASE64_H
#define AUTHRELAY_BASE64_H

#include <stddef.h>

/* Bytes needed to decode len characters (upper bound). */
#define BASE64_DECODED_MAX(len) (((len) / 4) * 3 + 3)
/* Characters needed to encode n bytes, plus the NUL. */
#define BASE64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4 + 1)

/* Decode len characters into out (outsz bytes). Returns the decoded length,
 * or -1 if the input is not strict base64 or does not fit. */
long base64_decode(const char *in, size_t len, unsigned char *out, size_t outsz);
/* Encode n bytes into out (outsz >= BASE64_ENCODED_SIZE(n)), NUL-terminated.
 * Returns the encoded length, or -1 if out is too small. */
long base64_encode(const void *in, size_t n, char *out, size_t outsz);

#endif
