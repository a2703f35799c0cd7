/* SPDX-License-Identifier: ISC */
/*
 * config_reader.c - read authrelay.conf into sections of keys (see
 * config_reader.h). No meaning yet: settings.c parses the values.
 *
 * Why not libinih any more: Debian builds it with a fixed 200-byte line
 * buffer and without line numbers, so this file already read every line
 * itself (to count lines, follow section headers inih does not report and
 * report malformed lines inih would stop at) and only let inih split
 * "key = value". Its buffer then refused real values (a 264-character LDAP
 * filter). Splitting a line is a few lines here, with no length limit but
 * memory, and the syntax inih defined is kept: '=' or ':', " ;" inline
 * comments, indented continuation lines, a UTF-8 byte order mark.
 */
#include "config_reader.h"
#include "config.h"
#include "log.h"
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Section names: what a log line can show unquoted. */
#define CONFIG_NAME_MAX 64

struct reader {
	const struct settings_section *const *kinds;
	size_t n_kinds;
	struct settings_ctx *ctx;
	struct config_section *secs;
	size_t n_secs;
	int lineno;
	/* The section keys go to: -1 before any, -2 when skipped (an unknown
	 * or refused header, already reported). */
	long cur;
	bool in_key; /* a key was read in this section: indented lines continue it */
};

#define SEC_NONE (-1)
#define SEC_SKIP (-2)

static const char *
skip_space(const char *s)
{
	while (*s != '\0' && isspace((unsigned char)*s))
		s++;
	return s;
}

/* s without trailing blanks, as a new string of at most n bytes. */
static char *
trimmed(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return xstrndup(s, n);
}

/* The first of chars in s, or of an inline ';' comment (one that follows
 * a blank), or the end of s. */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
	bool was_space = false;

	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL) &&
	       !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static void
unknown_section(struct reader *r, const char *text)
{
	char *known = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&known, &len);

	if (f == NULL)
		fatal("out of memory formatting a config message");
	for (size_t i = 0; i < r->n_kinds; i++)
		fprintf(f, "%s%s%s", i > 0 ? ", " : "", r->kinds[i]->kind,
		        r->kinds[i]->named ? " NAME" : "");
	fclose(f);
	settings_error(r->ctx, r->lineno, "unknown section [%s] (known: %s)", text, known);
	free(known);
}

/* A "[...]" header; text is what lies between the brackets. */
static void
begin_section(struct reader *r, const char *text)
{
	char kind[32], name[CONFIG_NAME_MAX + 2], extra[2];
	const struct settings_section *def = NULL;
	int n;

	r->in_key = false;
	r->cur = SEC_SKIP;
	kind[0] = name[0] = '\0';
	n = sscanf(text, " %31s %65s", kind, name);
	if (n < 1) {
		settings_error(r->ctx, r->lineno, "empty section name []");
		return;
	}
	for (size_t i = 0; i < r->n_kinds && def == NULL; i++)
		if (ascii_strcasecmp(kind, r->kinds[i]->kind) == 0)
			def = r->kinds[i];
	if (def == NULL) {
		unknown_section(r, text);
		return;
	}
	/* Anything after the name ("[listener a b]") is a mistake. */
	bool more = sscanf(text, " %*s %*s %1s", extra) == 1;
	if (def->named && (n < 2 || more || !valid_name(name))) {
		settings_error(r->ctx, r->lineno,
		               "[%s]: write [%s NAME], NAME made of letters, digits, '-', '_' "
		               "and '.' (at most %d)",
		               text, def->kind, CONFIG_NAME_MAX);
		return;
	}
	if (!def->named && n > 1) {
		settings_error(r->ctx, r->lineno, "section [%s] takes no name", def->kind);
		return;
	}
	/* A section without a name may come back (its keys add up) unless it
	 * says once; a named one is one thing. */
	for (size_t i = 0; i < r->n_secs && (def->named || def->once); i++) {
		const struct config_section *o = &r->secs[i];
		if (strcmp(o->kind, def->kind) != 0 ||
		    (def->named && ascii_strcasecmp(o->name, name) != 0))
			continue;
		settings_error(r->ctx, r->lineno, "duplicate section [%s%s%s] (first at line %d)",
		               def->kind, def->named ? " " : "", def->named ? name : "", o->line);
		return;
	}
	r->secs = xrealloc(r->secs, (r->n_secs + 1) * sizeof(*r->secs));
	struct config_section *sec = &r->secs[r->n_secs];
	memset(sec, 0, sizeof(*sec));
	sec->kind = xstrdup(def->kind);
	sec->name = def->named ? xstrdup(name) : NULL;
	sec->line = r->lineno;
	r->cur = (long)r->n_secs++;
}

static void
header_line(struct reader *r, const char *s)
{
	const char *end = find_chars_or_comment(s + 1, "]");

	if (*end != ']') {
		settings_error(r->ctx, r->lineno, "section header without a closing ']'");
		r->cur = SEC_SKIP;
		r->in_key = false;
		return;
	}
	char *text = xstrndup(s + 1, (size_t)(end - s - 1));
	begin_section(r, text);
	free(text);
	const char *after = skip_space(end + 1);
	if (*after != '\0' && *after != ';' && *after != '#')
		settings_error(r->ctx, r->lineno, "text after the section header: %s", after);
}

static void
add_part(struct config_kv *kv, char *text, int line)
{
	kv->parts = xrealloc(kv->parts, (kv->n_parts + 1) * sizeof(*kv->parts));
	kv->parts[kv->n_parts++] = (struct config_line){text, line};
}

/* An indented line: more of the previous key's value. */
static void
continuation_line(struct reader *r, const char *s)
{
	struct config_section *sec;
	struct config_kv *kv;

	if (r->cur < 0)
		return; /* the key itself was reported or skipped */
	sec = &r->secs[r->cur];
	if (sec->n_kv == 0)
		return;
	kv = &sec->kv[sec->n_kv - 1];
	char *text = trimmed(s, (size_t)(find_chars_or_comment(s, NULL) - s));
	size_t a = strlen(kv->value), b = strlen(text);
	kv->value = xrealloc(kv->value, a + b + 2);
	kv->value[a] = ' ';
	memcpy(kv->value + a + 1, text, b + 1);
	add_part(kv, text, r->lineno);
}

static void
key_line(struct reader *r, const char *s)
{
	const char *eq = find_chars_or_comment(s, "=:");

	if (*eq != '=' && *eq != ':') {
		settings_error(r->ctx, r->lineno,
		               "expected 'key = value', '[section]' or a comment");
		return;
	}
	if (eq == s) {
		settings_error(r->ctx, r->lineno, "missing key name before '%c'", *eq);
		return;
	}
	r->in_key = true;
	char *key = trimmed(s, (size_t)(eq - s));
	if (r->cur == SEC_NONE) {
		settings_error(r->ctx, r->lineno, "'%s' comes before any [section]", key);
		free(key);
		return;
	}
	if (r->cur == SEC_SKIP) {
		free(key);
		return;
	}
	for (char *p = key; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + ('a' - 'A'));
	const char *v = skip_space(eq + 1);
	struct config_section *sec = &r->secs[r->cur];
	sec->kv = xrealloc(sec->kv, (sec->n_kv + 1) * sizeof(*sec->kv));
	struct config_kv *kv = &sec->kv[sec->n_kv++];
	memset(kv, 0, sizeof(*kv));
	kv->key = key;
	kv->value = trimmed(v, (size_t)(find_chars_or_comment(v, NULL) - v));
	kv->line = r->lineno;
	add_part(kv, xstrdup(kv->value), r->lineno);
}

static void
read_line(struct reader *r, char *line, size_t len)
{
	const char *s;

	if (strlen(line) != len) {
		settings_error(r->ctx, r->lineno, "NUL byte in the line");
		return;
	}
	if (r->lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
		line += 3; /* UTF-8 byte order mark */
	s = skip_space(line);
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (s > line && r->in_key)
		continuation_line(r, s);
	else if (*s == '[')
		header_line(r, s);
	else
		key_line(r, s);
}

void
config_reader_free(struct config_section *secs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct config_section *sec = &secs[i];
		for (size_t k = 0; k < sec->n_kv; k++) {
			struct config_kv *kv = &sec->kv[k];
			for (size_t p = 0; p < kv->n_parts; p++)
				free(kv->parts[p].text);
			free(kv->parts);
			free(kv->key);
			free(kv->value);
		}
		free(sec->kv);
		free(sec->kind);
		free(sec->name);
	}
	free(secs);
}

int
config_reader_read(FILE *fp, const struct settings_section *const *kinds, size_t n_kinds,
                   struct settings_ctx *ctx, struct config_section **sections_r, size_t *n_r)
{
	struct reader r = {.kinds = kinds, .n_kinds = n_kinds, .ctx = ctx, .cur = SEC_NONE};
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;

	while ((n = getline(&buf, &cap, fp)) >= 0) {
		size_t len = (size_t)n;
		r.lineno++;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		buf[len] = '\0';
		read_line(&r, buf, len);
	}
	int err = errno;
	free(buf);
	if (ferror(fp)) {
		/* A half-read file would only add misleading errors. */
		settings_error(ctx, r.lineno + 1, "read error: %s", strerror(err));
		config_reader_free(r.secs, r.n_secs);
		*sections_r = NULL;
		*n_r = 0;
		return -1;
	}
	*sections_r = r.secs;
	*n_r = r.n_secs;
	return 0;
}
