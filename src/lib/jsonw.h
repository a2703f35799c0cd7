/* SPDX-License-Identifier: ISC */
/*
 * jsonw.h - a small JSON writer (RFC 8259) for the admin commands' --json
 * output: objects, arrays, strings and integers appended to an evbuffer,
 * commas placed for the caller.
 *
 * Strings are untrusted (logins, addresses, replies): valid UTF-8 passes
 * through, '"', '\\' and control characters are escaped, and each byte of
 * an invalid UTF-8 sequence becomes U+FFFD, so the output is always valid
 * JSON whatever the input.
 */
#ifndef AUTHRELAY_JSONW_H
#define AUTHRELAY_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

struct evbuffer;

#define JSONW_MAX_DEPTH 16

struct jsonw {
	struct evbuffer *out;
	unsigned depth;
	bool need_comma[JSONW_MAX_DEPTH + 1];
	bool after_key; /* a key was written: the value needs no comma */
};

/* Start writing to out (borrowed). */
void jsonw_init(struct jsonw *, struct evbuffer *out);

/* Open and close an object or an array (as a value, or after jsonw_key()).
 * Nesting deeper than JSONW_MAX_DEPTH is a bug: fatal. */
void jsonw_object_begin(struct jsonw *);
void jsonw_object_end(struct jsonw *);
void jsonw_array_begin(struct jsonw *);
void jsonw_array_end(struct jsonw *);

/* Inside an object: the next member's name. */
void jsonw_key(struct jsonw *, const char *key);

/* Values. jsonw_str(NULL) writes null. */
void jsonw_str(struct jsonw *, const char *s);
void jsonw_strn(struct jsonw *, const char *s, size_t len);
void jsonw_int(struct jsonw *, int64_t v);
void jsonw_bool(struct jsonw *, bool v);
void jsonw_null(struct jsonw *);

/* A member: key and value at once. */
void jsonw_kv_str(struct jsonw *, const char *key, const char *s);
void jsonw_kv_int(struct jsonw *, const char *key, int64_t v);
void jsonw_kv_bool(struct jsonw *, const char *key, bool v);

/* Append s as a JSON string (with its quotes) to out: the escaping above. */
void jsonw_escape(struct evbuffer *out, const char *s, size_t len);

#endif
