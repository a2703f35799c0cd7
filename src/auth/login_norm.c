/* SPDX-License-Identifier: ISC */
/*
 * login_norm.c - the normalized spelling of a login (see login_norm.h).
 *
 * Folding comes first, then the white space: NFKC turns U+00A0, U+2000 to
 * U+200A, U+3000 and friends into U+0020, so the space pass sees them as
 * blanks without a table of its own here.
 */
#include "login_norm.h"
#include "../lib/common.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

/* Copy s (n bytes, valid UTF-8) into out without blanks at either end and
 * with each inner run of White_Space as one U+0020. out holds n + 1. */
static size_t
collapse_utf8(const uint8_t *s, size_t n, char *out)
{
	size_t i = 0, len = 0;
	bool blank = false;

	while (i < n) {
		ucs4_t uc;
		int k = u8_mbtouc(&uc, s + i, n - i);
		if (k <= 0) /* cannot happen on valid input: keep the byte */
			k = 1;
		if (uc_is_property_white_space(uc)) {
			blank = len > 0;
		} else {
			if (blank)
				out[len++] = ' ';
			blank = false;
			memcpy(out + len, s + i, (size_t)k);
			len += (size_t)k;
		}
		i += (size_t)k;
	}
	out[len] = '\0';
	return len;
}

/* The fallback for bytes that are not UTF-8. */
static char *
fold_bytes(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t len = 0;
	bool blank = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || (c >= '\t' && c <= '\r')) {
			blank = len > 0;
			continue;
		}
		if (blank)
			out[len++] = ' ';
		blank = false;
		out[len++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	out[len] = '\0';
	return out;
}

char *
login_norm_fold(const char *login, size_t len)
{
	const uint8_t *s = (const uint8_t *)login;
	size_t flen = 0;
	uint8_t *folded;
	char *out;

	if (u8_check(s, len) != NULL)
		return fold_bytes(login, len);
	folded = u8_casefold(s, len, NULL, UNINORM_NFKC, NULL, &flen);
	if (folded == NULL) {
		if (errno == ENOMEM)
			fatal("out of memory");
		return fold_bytes(login, len);
	}
	out = xmalloc(flen + 1);
	collapse_utf8(folded, flen, out);
	free(folded);
	return out;
}
