/* SPDX-License-Identifier: ISC */
/*
 * base64.c - strict base64 (RFC 4648 4) for SMTP AUTH. RFC 4954 4 asks the
 * server to reject anything that is not exactly base64: characters outside
 * the alphabet, '=' other than as final padding, a length that is not a
 * multiple of 4, and (RFC 4648 3.5) pad bits that are not zero, so that every
 * decoded value has exactly one accepted encoding. Nothing is skipped.
 */
#include "base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char base64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of one alphabet character, or -1 (this includes '='). */
static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
base64_decode(const char *in, size_t len, unsigned char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t pad = 0, n, o = 0;

	if (len % 4 != 0)
		return -1;
	if (len == 0)
		return 0;
	/* RFC 4648 3.3: '=' only as one or two final characters. */
	if (p[len - 1] == '=')
		pad = p[len - 2] == '=' ? 2 : 1;
	n = len / 4 * 3 - pad;
	if (n > outsz || n > (size_t)INT32_MAX)
		return -1;

	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];

		for (size_t k = 0; k < 4; k++) {
			/* The padding positions are checked below. */
			if (last && k >= 4 - pad) {
				v[k] = 0;
				continue;
			}
			v[k] = base64_value(p[i + k]);
			if (v[k] < 0)
				return -1;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		if (last && pad == 2) {
			/* RFC 4648 3.5: the 4 unused bits must be zero. */
			if (w & 0xffff)
				return -1;
			out[o++] = (unsigned char)(w >> 16);
		} else if (last && pad == 1) {
			if (w & 0xff)
				return -1;
			out[o++] = (unsigned char)(w >> 16);
			out[o++] = (unsigned char)(w >> 8);
		} else {
			out[o++] = (unsigned char)(w >> 16);
			out[o++] = (unsigned char)(w >> 8);
			out[o++] = (unsigned char)w;
		}
	}
	return (long)o;
}

long
base64_encode(const void *in, size_t n, char *out, size_t outsz)
{
	const unsigned char *p = in;
	size_t o = 0;

	if (n > ((size_t)INT32_MAX / 4) * 3 || outsz < BASE64_ENCODED_SIZE(n))
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		size_t left = n - i;
		uint32_t w = (uint32_t)p[i] << 16;

		if (left > 1)
			w |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			w |= p[i + 2];
		out[o++] = base64_alphabet[(w >> 18) & 63];
		out[o++] = base64_alphabet[(w >> 12) & 63];
		out[o++] = left > 1 ? base64_alphabet[(w >> 6) & 63] : '=';
		out[o++] = left > 2 ? base64_alphabet[w & 63] : '=';
	}
	out[o] = '\0';
	return (long)o;
}
