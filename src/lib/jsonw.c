/* SPDX-License-Identifier: ISC */
/*
 * jsonw.c - the JSON writer (jsonw.h). A stack of "a value was written at
 * this level" flags places the commas; strings go through one escaper that
 * checks UTF-8 as RFC 3629 3 defines it (no overlongs, no surrogates,
 * nothing past U+10FFFF).
 */
#include "jsonw.h"
#include "log.h"

#include <inttypes.h>
#include <string.h>

#include <event2/buffer.h>

void
jsonw_init(struct jsonw *w, struct evbuffer *out)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
}

/* Before any value: a comma when it is not the level's first. */
static void
jsonw_sep(struct jsonw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->need_comma[w->depth])
		evbuffer_add(w->out, ",", 1);
	w->need_comma[w->depth] = true;
}

static void
jsonw_open(struct jsonw *w, char c)
{
	jsonw_sep(w);
	if (w->depth == JSONW_MAX_DEPTH)
		fatal("jsonw: nesting deeper than %d", JSONW_MAX_DEPTH);
	evbuffer_add(w->out, &c, 1);
	w->depth++;
	w->need_comma[w->depth] = false;
}

static void
jsonw_close(struct jsonw *w, char c)
{
	if (w->depth == 0)
		fatal("jsonw: closing more than was opened");
	w->depth--;
	evbuffer_add(w->out, &c, 1);
}

void
jsonw_object_begin(struct jsonw *w)
{
	jsonw_open(w, '{');
}

void
jsonw_object_end(struct jsonw *w)
{
	jsonw_close(w, '}');
}

void
jsonw_array_begin(struct jsonw *w)
{
	jsonw_open(w, '[');
}

void
jsonw_array_end(struct jsonw *w)
{
	jsonw_close(w, ']');
}

void
jsonw_key(struct jsonw *w, const char *key)
{
	jsonw_sep(w);
	jsonw_escape(w->out, key, strlen(key));
	evbuffer_add(w->out, ":", 1);
	w->after_key = true;
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t
utf8_seq_len(const unsigned char *p, size_t n)
{
	uint32_t cp;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void
jsonw_escape(struct evbuffer *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	evbuffer_add(out, "\"", 1);
	while (i < len) {
		size_t n = utf8_seq_len(p + i, len - i);
		if (n == 0) {
			evbuffer_add(out, "\\ufffd", 6);
			i++;
		} else if (p[i] == '"' || p[i] == '\\') {
			char esc[2] = {'\\', (char)p[i]};
			evbuffer_add(out, esc, 2);
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			evbuffer_add_printf(out, "\\u%04x", p[i]);
			i++;
		} else {
			evbuffer_add(out, p + i, n);
			i += n;
		}
	}
	evbuffer_add(out, "\"", 1);
}

void
jsonw_strn(struct jsonw *w, const char *s, size_t len)
{
	jsonw_sep(w);
	jsonw_escape(w->out, s, len);
}

void
jsonw_str(struct jsonw *w, const char *s)
{
	if (s == NULL) {
		jsonw_null(w);
		return;
	}
	jsonw_strn(w, s, strlen(s));
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
	jsonw_sep(w);
	evbuffer_add_printf(w->out, "%" PRId64, v);
}

void
jsonw_bool(struct jsonw *w, bool v)
{
	jsonw_sep(w);
	evbuffer_add_printf(w->out, "%s", v ? "true" : "false");
}

void
jsonw_null(struct jsonw *w)
{
	jsonw_sep(w);
	evbuffer_add(w->out, "null", 4);
}

void
jsonw_kv_str(struct jsonw *w, const char *key, const char *s)
{
	jsonw_key(w, key);
	jsonw_str(w, s);
}

void
jsonw_kv_int(struct jsonw *w, const char *key, int64_t v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}

void
jsonw_kv_bool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	jsonw_bool(w, v);
}
