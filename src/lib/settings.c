/* SPDX-License-Identifier: ISC */
/*
 * settings.c - the table-driven parser (see settings.h): value syntaxes,
 * defaults, parsing a section into its record, messages, and the three
 * outputs of a table (effective values, differences, key reference).
 *
 * Every message about a value reads "key = value: reason" and carries the
 * line of the value (a list item on a continuation line names that line).
 * Messages are collected and sorted by line at the end, so one run shows
 * every problem of a file in order.
 */
#include "settings.h"
#include "config.h"
#include "log.h"
#include "net.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct settings_msg {
	int line;
	unsigned seq; /* keeps messages on one line in the order found */
	bool warning;
	char *text;
};

struct settings_ctx {
	char *shown_path;
	char *dir;
	int line;
	struct settings_msg *msgs;
	size_t n_msgs, n_errors;
	const struct settings_section *const *all;
	size_t n_all;
};

/* ---- messages ---- */

struct settings_ctx *
settings_ctx_new(const char *shown_path, const char *dir)
{
	struct settings_ctx *ctx = xcalloc(1, sizeof(*ctx));
	const char *slash = strrchr(shown_path, '/');

	ctx->shown_path = xstrdup(shown_path);
	if (dir != NULL)
		ctx->dir = xstrdup(dir);
	else if (slash == NULL)
		ctx->dir = xstrdup(".");
	else if (slash == shown_path)
		ctx->dir = xstrdup("/");
	else
		ctx->dir = xstrndup(shown_path, (size_t)(slash - shown_path));
	return ctx;
}

void
settings_ctx_free(struct settings_ctx *ctx)
{
	if (ctx == NULL)
		return;
	for (size_t i = 0; i < ctx->n_msgs; i++)
		free(ctx->msgs[i].text);
	free(ctx->msgs);
	free(ctx->shown_path);
	free(ctx->dir);
	free(ctx);
}

void
settings_ctx_set_sections(struct settings_ctx *ctx, const struct settings_section *const *all,
                          size_t n)
{
	ctx->all = all;
	ctx->n_all = n;
}

int
settings_ctx_line(const struct settings_ctx *ctx)
{
	return ctx->line;
}

size_t
settings_ctx_errors(const struct settings_ctx *ctx)
{
	return ctx->n_errors;
}

static void settings_vmsg(struct settings_ctx *ctx, int line, bool warning, const char *fmt,
                          va_list ap) AR_PRINTF(4, 0);

static void
settings_vmsg(struct settings_ctx *ctx, int line, bool warning, const char *fmt, va_list ap)
{
	struct settings_msg *m;

	ctx->msgs = xrealloc(ctx->msgs, (ctx->n_msgs + 1) * sizeof(*ctx->msgs));
	m = &ctx->msgs[ctx->n_msgs];
	if (vasprintf(&m->text, fmt, ap) < 0)
		fatal("out of memory formatting a config message");
	m->line = line;
	m->seq = (unsigned)ctx->n_msgs++;
	m->warning = warning;
	if (!warning)
		ctx->n_errors++;
}

void
settings_error(struct settings_ctx *ctx, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	settings_vmsg(ctx, line, false, fmt, ap);
	va_end(ap);
}

void
settings_warning(struct settings_ctx *ctx, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	settings_vmsg(ctx, line, true, fmt, ap);
	va_end(ap);
}

void
settings_key_error(struct settings_ctx *ctx, const struct settings_key *k, const char *value,
                   const char *fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) < 0)
		fatal("out of memory formatting a config message");
	va_end(ap);
	settings_error(ctx, ctx->line, "%s = %s: %s", k->name, value, reason);
	free(reason);
}

static int
compare_msgs(const void *a, const void *b)
{
	const struct settings_msg *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

char *
settings_ctx_report(const struct settings_ctx *ctx)
{
	struct settings_msg *sorted;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (ctx->n_msgs == 0)
		return NULL;
	sorted = xmalloc(ctx->n_msgs * sizeof(*sorted));
	memcpy(sorted, ctx->msgs, ctx->n_msgs * sizeof(*sorted));
	qsort(sorted, ctx->n_msgs, sizeof(*sorted), compare_msgs);
	f = open_memstream(&out, &len);
	if (f == NULL)
		fatal("out of memory formatting config messages");
	for (size_t i = 0; i < ctx->n_msgs; i++)
		fprintf(f, "%s:%d: %s%s\n", ctx->shown_path, sorted[i].line,
		        sorted[i].warning ? "warning: " : "", sorted[i].text);
	if (fclose(f) != 0)
		fatal("out of memory formatting config messages");
	free(sorted);
	return out;
}

/* ---- keys and fields ---- */

size_t
settings_n_keys(const struct settings_section *def)
{
	return def->n_keys + (def->inherits != NULL ? def->inherits->n_keys : 0);
}

const struct settings_key *
settings_key_at(const struct settings_section *def, size_t i, size_t *offset_r)
{
	if (i < def->n_keys) {
		*offset_r = 0;
		return &def->keys[i];
	}
	*offset_r = def->inherit_offset;
	return &def->inherits->keys[i - def->n_keys];
}

int
settings_key_index(const struct settings_section *def, const char *name)
{
	size_t n = settings_n_keys(def), off;

	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		if (i >= def->n_keys && !(k->flags & SETTINGS_PER_LISTENER))
			continue;
		if (ascii_strcasecmp(k->name, name) == 0)
			return (int)i;
	}
	return -1;
}

static void *
field_of(const struct settings_key *k, void *rec)
{
	return (char *)rec + k->offset;
}

static const void *
cfield_of(const struct settings_key *k, const void *rec)
{
	return (const char *)rec + k->offset;
}

static uint64_t
get_uint(const void *f, size_t size)
{
	if (size == sizeof(uint64_t))
		return *(const uint64_t *)f;
	if (size == sizeof(unsigned))
		return *(const unsigned *)f;
	if (size == sizeof(bool))
		return *(const bool *)f;
	fatal("settings: no integer field of %zu bytes", size);
}

static void
put_uint(void *f, size_t size, uint64_t v)
{
	if (size == sizeof(uint64_t))
		*(uint64_t *)f = v;
	else if (size == sizeof(unsigned))
		*(unsigned *)f = (unsigned)v;
	else if (size == sizeof(bool))
		*(bool *)f = v != 0;
	else
		fatal("settings: no integer field of %zu bytes", size);
}

/* The largest value the key's field holds. */
static uint64_t
type_max(const struct settings_key *k)
{
	return k->size == sizeof(uint64_t) ? UINT64_MAX : UINT_MAX;
}

/* The largest value the key takes: its table maximum, or the field's. */
static uint64_t
key_max(const struct settings_key *k)
{
	return k->max != 0 && k->max < type_max(k) ? k->max : type_max(k);
}

static char **
list_of(const struct settings_key *k, void *rec)
{
	return *(char ***)field_of(k, rec);
}

static size_t *
count_of(const struct settings_key *k, void *rec)
{
	return (k->flags & SETTINGS_COUNTED) ? (size_t *)((char *)rec + k->count_offset) : NULL;
}

static size_t
list_len(char *const *v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

static void
list_clear(const struct settings_key *k, void *rec)
{
	char ***f = field_of(k, rec);
	size_t *count = count_of(k, rec);

	if (k->type == SETTINGS_CIDRS) {
		free(*(struct cidr **)f);
		*(struct cidr **)f = NULL;
	} else {
		for (size_t i = 0; *f != NULL && (*f)[i] != NULL; i++)
			free((*f)[i]);
		free(*f);
		/* Always an array, so that readers can test v[0]. */
		*f = xcalloc(1, sizeof(char *));
	}
	if (count != NULL)
		*count = 0;
}

static void
list_append(const struct settings_key *k, void *rec, char *item)
{
	char ***f = field_of(k, rec);
	size_t n = list_len(*f);
	size_t *count = count_of(k, rec);

	*f = xrealloc(*f, (n + 2) * sizeof(char *));
	(*f)[n] = item;
	(*f)[n + 1] = NULL;
	if (count != NULL)
		*count = n + 1;
}

static void
cidrs_append(const struct settings_key *k, void *rec, const struct cidr *c)
{
	struct cidr **f = field_of(k, rec);
	size_t *count = count_of(k, rec);

	if (count == NULL)
		fatal("settings: %s: a CIDR list needs SETTINGS_COUNTED", k->name);
	*f = xrealloc(*f, (*count + 1) * sizeof(**f));
	(*f)[(*count)++] = *c;
}

static void
replace_string(char **f, char *v)
{
	free(*f);
	*f = v;
}

/* ---- value syntaxes ---- */

/* Decimal digits only: strtoull would also take signs, blanks and hex. */
static int
parse_digits(const char *s, const char **end_r, uint64_t *r)
{
	uint64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (p == s)
		return -1;
	*end_r = p;
	*r = v;
	return 0;
}

int
settings_parse_uint(const char *text, uint64_t *r)
{
	const char *end;

	return parse_digits(text, &end, r) < 0 || *end != '\0' ? -1 : 0;
}

/* 0, -1 when malformed, -2 when well-formed but too large. */
static int
parse_size(const char *text, uint64_t *r)
{
	const char *end;
	uint64_t v, mult;

	if (parse_digits(text, &end, &v) < 0)
		return -1;
	switch (*end) {
	case '\0':
		mult = 1;
		break;
	case 'k':
	case 'K':
		mult = 1024;
		break;
	case 'm':
	case 'M':
		mult = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -2;
	*r = v * mult;
	return 0;
}

int
settings_parse_size(const char *text, uint64_t *r)
{
	return parse_size(text, r) == 0 ? 0 : -1;
}

int
settings_parse_bool(const char *text, bool *r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < AR_NELEM(yes); i++) {
		if (ascii_strcasecmp(text, yes[i]) == 0) {
			*r = true;
			return 0;
		}
		if (ascii_strcasecmp(text, no[i]) == 0) {
			*r = false;
			return 0;
		}
	}
	return -1;
}

static const struct {
	const char *suffix;
	uint64_t seconds;
} duration_units[] = {
        {"w", 7 * 86400}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1},
};

int
settings_parse_duration(const char *text, bool ms, uint64_t *r)
{
	const char *end;
	uint64_t v, mult = 0;

	if (parse_digits(text, &end, &v) < 0)
		return -1;
	if (*end == '\0') {
		mult = 1; /* seconds, or ms for a key in ms */
	} else if (ms && strcmp(end, "ms") == 0) {
		mult = 1;
	} else {
		for (size_t i = 0; i < AR_NELEM(duration_units); i++)
			if (strcmp(end, duration_units[i].suffix) == 0)
				mult = duration_units[i].seconds * (ms ? 1000 : 1);
	}
	if (mult == 0 || v > UINT64_MAX / mult)
		return -1;
	*r = v * mult;
	return 0;
}

void
settings_format_duration(uint64_t v, bool ms, char *buf, size_t size)
{
	if (ms && v % 1000 != 0) {
		snprintf(buf, size, "%llums", (unsigned long long)v);
		return;
	}
	if (ms)
		v /= 1000;
	for (size_t i = 0; v != 0 && i < AR_NELEM(duration_units); i++) {
		if (v % duration_units[i].seconds == 0) {
			snprintf(buf, size, "%llu%s",
			         (unsigned long long)(v / duration_units[i].seconds),
			         duration_units[i].suffix);
			return;
		}
	}
	snprintf(buf, size, "0");
}

static void
format_size(uint64_t v, char *buf, size_t size)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {{"G", 1024 * 1024 * 1024}, {"M", 1024 * 1024}, {"k", 1024}};

	for (size_t i = 0; v != 0 && i < AR_NELEM(units); i++) {
		if (v % units[i].mult == 0) {
			snprintf(buf, size, "%llu%s", (unsigned long long)(v / units[i].mult),
			         units[i].suffix);
			return;
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* A range limit as the key's values are written: 300 -> "5m" for a duration. */
static void
format_limit(const struct settings_key *k, uint64_t v, char *buf, size_t size)
{
	if (k->type == SETTINGS_DURATION || k->type == SETTINGS_DURATION_MS)
		settings_format_duration(v, k->type == SETTINGS_DURATION_MS, buf, size);
	else
		snprintf(buf, size, "%llu", (unsigned long long)v);
}

static int
check_range(struct settings_ctx *ctx, const struct settings_key *k, const char *value, uint64_t v)
{
	char limit[32];

	if (v < k->min) {
		format_limit(k, k->min, limit, sizeof(limit));
		if (k->why != NULL)
			settings_key_error(ctx, k, value, "must be at least %s (%s)", limit,
			                   k->why);
		else
			settings_key_error(ctx, k, value, "must be at least %s", limit);
		return -1;
	}
	if (v > key_max(k)) {
		format_limit(k, key_max(k), limit, sizeof(limit));
		settings_key_error(ctx, k, value, "must be at most %s", limit);
		return -1;
	}
	if (v < k->warn_below)
		settings_warning(ctx, ctx->line, "%s = %s: %s", k->name, value, k->warn_why);
	return 0;
}

/* "a, b or c" of an enumeration's names (aliases left out): sep between
 * two names, last_sep before the last. */
static void
names_text(const struct settings_name *names, const char *sep, const char *last_sep, FILE *f)
{
	size_t n = 0, i = 0;

	for (const struct settings_name *nm = names; nm->name != NULL; nm++)
		n += !nm->alias;
	for (const struct settings_name *nm = names; nm->name != NULL; nm++) {
		if (nm->alias)
			continue;
		if (i > 0)
			fputs(i + 1 == n ? last_sep : sep, f);
		fputs(nm->name, f);
		i++;
	}
}

static const struct settings_name *
lookup_name(const struct settings_name *names, const char *value)
{
	for (const struct settings_name *nm = names; nm->name != NULL; nm++)
		if (ascii_strcasecmp(nm->name, value) == 0)
			return nm;
	return NULL;
}

static void
names_error(struct settings_ctx *ctx, const struct settings_key *k, const char *value)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		fatal("out of memory formatting a config message");
	names_text(k->names, ", ", " or ", f);
	fclose(f);
	if (k->why != NULL)
		settings_key_error(ctx, k, value, "expected %s (%s)", text, k->why);
	else
		settings_key_error(ctx, k, value, "expected %s", text);
	free(text);
}

static bool
is_list_separator(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

static int
parse_list(struct settings_ctx *ctx, const struct settings_key *k, void *rec, const char *value)
{
	const char *p = value;
	int ret = 0;

	while (*p != '\0') {
		while (is_list_separator(*p))
			p++;
		size_t n = 0;
		while (p[n] != '\0' && !is_list_separator(p[n]))
			n++;
		if (n == 0)
			break;
		char *item = xstrndup(p, n);
		const char *why = NULL;
		if (k->type == SETTINGS_CIDRS) {
			struct cidr c;
			if (net_parse_cidr(item, &c, &why) == 0)
				cidrs_append(k, rec, &c);
		} else if (k->check == NULL || (why = k->check(item)) == NULL) {
			list_append(k, rec, item);
			item = NULL;
		}
		if (why != NULL) {
			/* The item as written, not as the check left it. */
			char *shown = xstrndup(p, n);
			settings_key_error(ctx, k, shown, "%s", why);
			free(shown);
			ret = -1;
		}
		free(item);
		p += n;
	}
	return ret;
}

static int
parse_string(struct settings_ctx *ctx, const struct settings_key *k, void *rec, const char *value)
{
	char **f = field_of(k, rec);
	const char *why = NULL;
	char *v;

	if (*value == '\0') {
		if (k->flags & SETTINGS_OPTIONAL) {
			replace_string(f, NULL);
			return 0;
		}
		settings_key_error(ctx, k, value, "must not be empty");
		return -1;
	}
	if (k->type == SETTINGS_PATH && value[0] != '/') {
		/* The daemon changes directory and may chroot after loading. */
		if (asprintf(&v, "%s/%s", ctx->dir, value) < 0)
			fatal("out of memory resolving a path");
	} else {
		v = xstrdup(value);
	}
	if (k->type == SETTINGS_HOSTPORT) {
		struct sockaddr_storage ss;
		socklen_t len;
		(void)net_parse_hostport(v, &ss, &len, &why);
	} else if (k->check != NULL) {
		why = k->check(v);
	}
	if (why != NULL) {
		settings_key_error(ctx, k, value, "%s", why);
		free(v);
		return -1;
	}
	replace_string(f, v);
	return 0;
}

static int
parse_number(struct settings_ctx *ctx, const struct settings_key *k, void *rec, const char *value)
{
	bool ms = k->type == SETTINGS_DURATION_MS;
	uint64_t v;

	switch (k->type) {
	case SETTINGS_UINT:
		if (settings_parse_uint(value, &v) < 0) {
			settings_key_error(ctx, k, value, "not a whole number");
			return -1;
		}
		break;
	case SETTINGS_SIZE:
		switch (parse_size(value, &v)) {
		case -2:
			settings_key_error(ctx, k, value, "too large");
			return -1;
		case -1:
			settings_key_error(ctx, k, value,
			                   "not a size in bytes (digits, then k, M or G)");
			return -1;
		}
		break;
	default:
		if ((k->flags & SETTINGS_OFF) && ascii_strcasecmp(value, "off") == 0) {
			v = 0;
			break;
		}
		if (settings_parse_duration(value, ms, &v) < 0) {
			settings_key_error(ctx, k, value,
			                   "not a duration (%s, or a number with %ss, m, h, d or "
			                   "w%s)",
			                   ms ? "milliseconds" : "seconds", ms ? "ms, " : "",
			                   (k->flags & SETTINGS_OFF) ? "; or off" : "");
			return -1;
		}
		break;
	}
	if (check_range(ctx, k, value, v) < 0)
		return -1;
	put_uint(field_of(k, rec), k->size, v);
	return 0;
}

/* Parse one value (or one line of a list) of key k into rec. first: the
 * first value the file gives this key, which replaces a list's default. */
static int
parse_value(struct settings_ctx *ctx, const struct settings_key *k, void *rec, const char *value,
            bool first)
{
	const struct settings_name *nm;
	bool b;

	switch (k->type) {
	case SETTINGS_STRING:
	case SETTINGS_PATH:
	case SETTINGS_HOSTPORT:
		return parse_string(ctx, k, rec, value);
	case SETTINGS_BOOL:
		if (settings_parse_bool(value, &b) < 0) {
			settings_key_error(ctx, k, value,
			                   "expected yes or no (also true/false, on/off, 1/0)");
			return -1;
		}
		*(bool *)field_of(k, rec) = b;
		return 0;
	case SETTINGS_UINT:
	case SETTINGS_SIZE:
	case SETTINGS_DURATION:
	case SETTINGS_DURATION_MS:
		return parse_number(ctx, k, rec, value);
	case SETTINGS_ENUM:
	case SETTINGS_KEYWORD:
		if ((nm = lookup_name(k->names, value)) == NULL) {
			names_error(ctx, k, value);
			return -1;
		}
		if (k->type == SETTINGS_KEYWORD)
			replace_string(field_of(k, rec), xstrdup(nm->name));
		else if (k->size == sizeof(bool))
			*(bool *)field_of(k, rec) = nm->value != 0;
		else
			*(int *)field_of(k, rec) = nm->value;
		return 0;
	case SETTINGS_LIST:
	case SETTINGS_CIDRS:
		if (first)
			list_clear(k, rec);
		return parse_list(ctx, k, rec, value);
	case SETTINGS_CUSTOM:
		return k->parse(ctx, k, rec, value);
	}
	fatal("settings: %s has no type", k->name);
}

void
settings_defaults(const struct settings_section *def, void *rec)
{
	struct settings_ctx ctx = {.shown_path = "(built-in default)", .dir = "/"};
	size_t n = settings_n_keys(def), off;

	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		void *r = (char *)rec + off;
		if (k->type == SETTINGS_LIST || k->type == SETTINGS_CIDRS)
			list_clear(k, r);
		if (k->def != NULL && parse_value(&ctx, k, r, k->def, true) < 0)
			fatal("settings: [%s] %s: bad default '%s': %s", def->kind, k->name, k->def,
			      ctx.msgs[0].text);
	}
	for (size_t i = 0; i < ctx.n_msgs; i++)
		free(ctx.msgs[i].text);
	free(ctx.msgs);
}

/* ---- parsing a section ---- */

static bool
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static void
section_label(const struct config_section *sec, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s", sec->kind, sec->name != NULL ? " " : "",
	         sec->name != NULL ? sec->name : "");
}

/* "unknown key 'x' in [server] (it belongs in [limits])". */
static void
report_unknown(struct settings_ctx *ctx, const struct config_section *sec, const char *key)
{
	char label[128];
	char *hint = NULL;
	size_t len = 0, found = 0;
	FILE *f = open_memstream(&hint, &len);

	if (f == NULL)
		fatal("out of memory formatting a config message");
	for (size_t i = 0; i < ctx->n_all; i++) {
		const struct settings_section *o = ctx->all[i];
		bool here = strcmp(o->kind, sec->kind) == 0;
		for (size_t j = 0; j < o->n_keys && !here; j++) {
			if (ascii_strcasecmp(o->keys[j].name, key) != 0)
				continue;
			fprintf(f, "%s[%s%s]", found == 0 ? " (it belongs in " : ", ", o->kind,
			        o->named ? " NAME" : "");
			found++;
			break;
		}
	}
	if (found > 0)
		fputc(')', f);
	fclose(f);
	section_label(sec, label, sizeof(label));
	settings_error(ctx, ctx->line, "unknown key '%s' in [%s]%s", key, label, hint);
	free(hint);
}

void
settings_parse(struct settings_ctx *ctx, const struct settings_section *def,
               const struct config_section *sec, void *rec, int *lines)
{
	for (size_t i = 0; i < sec->n_kv; i++) {
		const struct config_kv *kv = &sec->kv[i];
		/* A value written on one line, or as the reader kept it. */
		struct config_line one = {kv->value, kv->line};
		const struct config_line *parts = kv->n_parts > 0 ? kv->parts : &one;
		size_t n_parts = kv->n_parts > 0 ? kv->n_parts : 1;
		int idx = settings_key_index(def, kv->key);
		const struct settings_key *k;
		size_t off;
		bool ok = true, list;

		ctx->line = kv->line;
		if (idx < 0) {
			report_unknown(ctx, sec, kv->key);
			continue;
		}
		k = settings_key_at(def, (size_t)idx, &off);
		list = k->type == SETTINGS_LIST || k->type == SETTINGS_CIDRS;
		if (!list) {
			for (size_t p = 1; p < n_parts; p++)
				settings_error(ctx, parts[p].line,
				               "indented line continues '%s', which takes one "
				               "value; only list keys continue on indented lines",
				               k->name);
			n_parts = 1;
			if (lines[idx] != 0) {
				settings_error(ctx, kv->line, "%s is already set at line %d",
				               k->name, abs(lines[idx]));
				continue;
			}
		}
		for (size_t p = 0; p < n_parts; p++) {
			ctx->line = parts[p].line;
			if (has_control(parts[p].text)) {
				settings_error(ctx, parts[p].line,
				               "%s: control character in the value", k->name);
				ok = false;
				continue;
			}
			if (parse_value(ctx, k, (char *)rec + off, parts[p].text,
			                lines[idx] == 0 && p == 0) < 0)
				ok = false;
		}
		if (lines[idx] == 0) /* negative: written, but the value was refused */
			lines[idx] = ok ? kv->line : -kv->line;
	}
}

void
settings_parse_all(struct settings_ctx *ctx, const struct settings_section *def,
                   const struct config *cfg, void *rec, int *lines)
{
	const struct config_section *sec = NULL;

	settings_defaults(def, rec);
	while ((sec = config_section_next(cfg, def->kind, sec)) != NULL)
		settings_parse(ctx, def, sec, rec, lines);
}

void
settings_free(const struct settings_section *def, void *rec)
{
	size_t n = settings_n_keys(def), off;

	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		void *r = (char *)rec + off;
		switch (k->type) {
		case SETTINGS_STRING:
		case SETTINGS_PATH:
		case SETTINGS_HOSTPORT:
		case SETTINGS_KEYWORD:
			replace_string(field_of(k, r), NULL);
			break;
		case SETTINGS_LIST:
		case SETTINGS_CIDRS:
			list_clear(k, r);
			if (k->type == SETTINGS_LIST) {
				free(list_of(k, r));
				*(char ***)field_of(k, r) = NULL;
			}
			break;
		case SETTINGS_CUSTOM:
			if (k->free != NULL)
				k->free(k, r);
			break;
		default:
			break;
		}
	}
}

/* Copy one key's value from src to dst (records of the key's own section),
 * freeing what dst held. 0, or -1 for a type this cannot copy (dst
 * unchanged). */
static int
copy_key(const struct settings_key *k, void *dst, const void *src)
{
	const void *from = cfield_of(k, src);
	void *to = field_of(k, dst);

	switch (k->type) {
	case SETTINGS_STRING:
	case SETTINGS_PATH:
	case SETTINGS_HOSTPORT:
	case SETTINGS_KEYWORD: {
		const char *v = *(char *const *)from;
		replace_string(to, v != NULL ? xstrdup(v) : NULL);
		return 0;
	}
	case SETTINGS_LIST: {
		char *const *v = *(char **const *)from;
		list_clear(k, dst);
		for (size_t i = 0; v != NULL && v[i] != NULL; i++)
			list_append(k, dst, xstrdup(v[i]));
		return 0;
	}
	case SETTINGS_CIDRS: {
		const struct cidr *v = *(struct cidr *const *)from;
		size_t n = *(const size_t *)((const char *)src + k->count_offset);
		list_clear(k, dst);
		for (size_t i = 0; i < n; i++)
			cidrs_append(k, dst, &v[i]);
		return 0;
	}
	case SETTINGS_CUSTOM:
		return -1;
	default:
		memcpy(to, from, k->size);
		return 0;
	}
}

size_t
settings_keep_restart(const struct settings_section *def, void *new_rec, const void *old_rec,
                      const char **failed_r)
{
	size_t n = settings_n_keys(def), off, kept = 0;

	if (failed_r != NULL)
		*failed_r = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		if (!(k->flags & SETTINGS_RESTART))
			continue;
		if (copy_key(k, (char *)new_rec + off, (const char *)old_rec + off) < 0) {
			if (failed_r != NULL)
				*failed_r = k->name;
			continue;
		}
		kept++;
	}
	return kept;
}

/* ---- checks ---- */

/* Locale-independent: config text is ASCII whatever LC_CTYPE says. */
static bool
ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A domain name in LDH form (RFC 5321 4.1.2 "Domain"). */
static bool
valid_domain(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!ascii_alnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && d[len - 1] != '-';
}

const char *
settings_check_host_name(char *value)
{
	return valid_domain(value) ? NULL : "not a host name (letters, digits, '-' and '.')";
}

const char *
settings_check_domain_name(char *value)
{
	return valid_domain(value) ? NULL : "not a domain name (letters, digits, '-' and '.')";
}

const char *
settings_check_domain_pattern(char *value)
{
	size_t len = strlen(value);

	if (len > 1 && value[len - 1] == '.')
		value[len - 1] = '\0'; /* "example.test." is the same domain */
	for (char *p = value; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!valid_domain(value[0] == '.' ? value + 1 : value))
		return "not a domain name (write .example.test for subdomains)";
	return NULL;
}

const char *
settings_check_printable(char *value)
{
	for (const char *p = value; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			return "only printable ASCII may appear in an SMTP reply";
	return NULL;
}

/* ---- output ---- */

static const char *
enum_name(const struct settings_name *names, int value)
{
	for (const struct settings_name *nm = names; nm->name != NULL; nm++)
		if (!nm->alias && nm->value == value)
			return nm->name;
	return "?";
}

char *
settings_format(const struct settings_key *k, const void *rec)
{
	const void *f = cfield_of(k, rec);
	char buf[64];
	char *out = NULL;
	size_t len = 0;
	FILE *m;

	switch (k->type) {
	case SETTINGS_STRING:
	case SETTINGS_PATH:
	case SETTINGS_HOSTPORT:
	case SETTINGS_KEYWORD:
		return *(char *const *)f != NULL ? xstrdup(*(char *const *)f) : NULL;
	case SETTINGS_BOOL:
		return xstrdup(*(const bool *)f ? "yes" : "no");
	case SETTINGS_UINT:
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)get_uint(f, k->size));
		return xstrdup(buf);
	case SETTINGS_SIZE:
		format_size(get_uint(f, k->size), buf, sizeof(buf));
		return xstrdup(buf);
	case SETTINGS_DURATION:
	case SETTINGS_DURATION_MS:
		if ((k->flags & SETTINGS_OFF) && get_uint(f, k->size) == 0)
			return xstrdup("off");
		settings_format_duration(get_uint(f, k->size), k->type == SETTINGS_DURATION_MS, buf,
		                         sizeof(buf));
		return xstrdup(buf);
	case SETTINGS_ENUM:
		return xstrdup(enum_name(k->names, k->size == sizeof(bool) ? *(const bool *)f
		                                                           : *(const int *)f));
	default:
		break;
	}
	m = open_memstream(&out, &len);
	if (m == NULL)
		fatal("out of memory formatting a setting");
	if (k->type == SETTINGS_LIST) {
		char *const *v = *(char *const *const *)f;
		for (size_t i = 0; v != NULL && v[i] != NULL; i++)
			fprintf(m, "%s%s", i > 0 ? ", " : "", v[i]);
	} else if (k->type == SETTINGS_CIDRS) {
		const struct cidr *c = *(const struct cidr *const *)f;
		size_t n = *(const size_t *)((const char *)rec + k->count_offset);
		for (size_t i = 0; i < n; i++) {
			char text[64];
			fprintf(m, "%s%s", i > 0 ? ", " : "",
			        net_cidr_str(&c[i], text, sizeof(text)));
		}
	} else {
		k->format(k, rec, m);
	}
	if (fclose(m) != 0)
		fatal("out of memory formatting a setting");
	/* A custom key that wrote nothing is not set; an empty list is. */
	if (k->type == SETTINGS_CUSTOM && len == 0) {
		free(out);
		return NULL;
	}
	return out;
}

void
settings_written(const struct settings_section *def, const struct config *cfg, const char *name,
                 bool *written)
{
	const struct config_section *sec = NULL;

	memset(written, 0, settings_n_keys(def) * sizeof(*written));
	while ((sec = config_section_next(cfg, def->kind, sec)) != NULL) {
		if (def->named &&
		    (sec->name == NULL || name == NULL || ascii_strcasecmp(sec->name, name) != 0))
			continue;
		for (size_t i = 0; i < sec->n_kv; i++) {
			int idx = settings_key_index(def, sec->kv[i].key);
			if (idx >= 0)
				written[idx] = true;
		}
	}
}

static bool
same_text(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

size_t
settings_print(FILE *out, const struct settings_section *def, const char *name, const void *rec,
               const void *base, const bool *written)
{
	size_t n = settings_n_keys(def), printed = 0, off;

	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		char *v = settings_format(k, (const char *)rec + off);
		if (base != NULL) {
			char *b = settings_format(k, (const char *)base + off);
			bool worked_out = k->def == NULL && k->def_doc != NULL;
			bool skip = worked_out ? written == NULL || !written[i] : same_text(v, b);
			free(b);
			if (skip) {
				free(v);
				continue;
			}
		}
		if (printed++ == 0)
			fprintf(out, "[%s%s%s]\n", def->kind, name != NULL ? " " : "",
			        name != NULL ? name : "");
		if (v == NULL)
			fprintf(out, "# %s = (not set)\n", k->name);
		else
			fprintf(out, "%s =%s%s\n", k->name, *v != '\0' ? " " : "", v);
		free(v);
	}
	if (printed > 0)
		fputc('\n', out);
	return printed;
}

/* A formatted value as a change shows it. */
static const char *
shown_value(const char *v)
{
	return v == NULL ? "(not set)" : *v == '\0' ? "(empty)" : v;
}

size_t
settings_diff(const struct settings_section *def, const char *label, const void *old_rec,
              const void *new_rec, settings_change_cb *cb, void *arg)
{
	size_t n = settings_n_keys(def), changes = 0, off;

	for (size_t i = 0; i < n; i++) {
		const struct settings_key *k = settings_key_at(def, i, &off);
		char *a = settings_format(k, (const char *)old_rec + off);
		char *b = settings_format(k, (const char *)new_rec + off);
		if (!same_text(a, b)) {
			struct settings_change c = {
			        .section = label,
			        .key = k->name,
			        .old_value = shown_value(a),
			        .new_value = shown_value(b),
			        .restart = (k->flags & SETTINGS_RESTART) != 0,
			};
			cb(arg, &c);
			changes++;
		}
		free(a);
		free(b);
	}
	return changes;
}

char *
settings_change_text(const struct settings_change *c)
{
	char *text;
	int r;

	if (c->key == NULL)
		r = asprintf(&text, "%s: %s", c->section,
		             c->new_value != NULL ? "added" : "removed");
	else
		r = asprintf(&text, "%s: %s %s -> %s%s", c->section, c->key, c->old_value,
		             c->new_value, c->restart ? " (needs a restart)" : "");
	if (r < 0)
		fatal("out of memory formatting a change");
	return text;
}

/* ---- the key reference ---- */

static void
type_text(const struct settings_key *k, FILE *f)
{
	static const char *const names[] = {
	        [SETTINGS_STRING] = "text",
	        [SETTINGS_PATH] = "path",
	        [SETTINGS_BOOL] = "yes | no",
	        [SETTINGS_UINT] = "number",
	        [SETTINGS_SIZE] = "size",
	        [SETTINGS_DURATION] = "duration",
	        [SETTINGS_DURATION_MS] = "duration in ms",
	        [SETTINGS_LIST] = "list",
	        [SETTINGS_CIDRS] = "list of networks",
	        [SETTINGS_HOSTPORT] = "address:port",
	        [SETTINGS_CUSTOM] = "text",
	};

	if (k->type_doc != NULL)
		fputs(k->type_doc, f);
	else if (k->type == SETTINGS_ENUM || k->type == SETTINGS_KEYWORD)
		names_text(k->names, " | ", " | ", f);
	else
		fputs(names[k->type], f);
	if (k->flags & SETTINGS_OFF)
		fputs(" | off", f);
}

static void
range_text(const struct settings_key *k, FILE *f)
{
	char lo[32], hi[32];
	bool numeric = k->type == SETTINGS_UINT || k->type == SETTINGS_SIZE ||
	               k->type == SETTINGS_DURATION || k->type == SETTINGS_DURATION_MS;

	if (!numeric)
		return;
	format_limit(k, k->min, lo, sizeof(lo));
	format_limit(k, key_max(k), hi, sizeof(hi));
	if (key_max(k) < type_max(k))
		fprintf(f, "%s to %s", lo, hi);
	else if (k->min > 0)
		fprintf(f, "at least %s", lo);
}

static void
default_text(const struct settings_key *k, FILE *f)
{
	if (k->def_doc != NULL)
		fputs(k->def_doc, f);
	else if (k->def != NULL)
		fputs(k->def, f);
	else if (k->type == SETTINGS_LIST || k->type == SETTINGS_CIDRS)
		fputs("empty", f);
	else
		fputs("none", f);
}

/* Sentences after the meaning, each after sep (mdoc: a new line). */
static void
notes_text(const struct settings_key *k, const char *sep, FILE *f)
{
	if (k->flags & SETTINGS_PER_LISTENER)
		fprintf(f, "%sA listener may set its own value.", sep);
	if (k->warn_below != 0)
		fprintf(f, "%sValues below %llu load with a warning.", sep,
		        (unsigned long long)k->warn_below);
	if (k->flags & SETTINGS_RESTART)
		fprintf(f, "%sA change needs a restart.", sep);
}

static void
notes_inline(const struct settings_key *k, FILE *f)
{
	notes_text(k, " ", f);
}

static void
notes_lines(const struct settings_key *k, FILE *f)
{
	notes_text(k, "\n", f);
}

/* Text of fn(k) into a malloc'd string. */
static char *
text_of(void (*fn)(const struct settings_key *, FILE *), const struct settings_key *k)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (f == NULL)
		fatal("out of memory writing the reference");
	fn(k, f);
	if (fclose(f) != 0)
		fatal("out of memory writing the reference");
	return s;
}

/* Text as mdoc text lines of at most 78 characters, broken at blanks:
 * backslashes escaped, no line starting with '.' or '\'' (a request). */
static void
mdoc_text(FILE *f, const char *s)
{
	size_t col = 0;

	while (*s != '\0') {
		size_t n = strcspn(s, " ");
		if (col > 0 && col + 1 + n > 78) {
			fputc('\n', f);
			col = 0;
		} else if (col > 0) {
			fputc(' ', f);
			col++;
		}
		if (col == 0 && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		for (size_t i = 0; i < n; i++)
			fputs(s[i] == '\\' ? "\\e" : (char[2]){s[i], '\0'}, f);
		col += n;
		s += n;
		while (*s == ' ')
			s++;
	}
}

/* A markdown table cell: '|' escaped. */
static void
md_cell(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '|')
			fputs("\\|", f);
		else
			fputc(*s, f);
	}
}

static void
reference_key(FILE *out, enum settings_ref_format fmt, const struct settings_key *k)
{
	char *type = text_of(type_text, k), *def = text_of(default_text, k);
	char *range = text_of(range_text, k);
	char *notes = text_of(fmt == SETTINGS_REF_MDOC ? notes_lines : notes_inline, k);
	const char *meaning = k->meaning != NULL ? k->meaning : "";

	if (fmt == SETTINGS_REF_MDOC) {
		char *line;
		fprintf(out, ".It Cm %s\n", k->name);
		mdoc_text(out, meaning);
		fputs(notes, out);
		fputc('\n', out);
		if (asprintf(&line, "Type: %s.", type) < 0)
			fatal("out of memory writing the reference");
		mdoc_text(out, line);
		free(line);
		if (asprintf(&line, "Default: %s.", def) < 0)
			fatal("out of memory writing the reference");
		fputc('\n', out);
		mdoc_text(out, line);
		free(line);
		fputc('\n', out);
		if (*range != '\0')
			fprintf(out, "Range: %s.\n", range);
	} else {
		fprintf(out, "| `%s` | ", k->name);
		md_cell(out, type);
		fputs(" | ", out);
		md_cell(out, def);
		fputs(" | ", out);
		md_cell(out, range);
		fputs(" | ", out);
		md_cell(out, meaning);
		md_cell(out, notes);
		fputs(" |\n", out);
	}
	free(type);
	free(def);
	free(range);
	free(notes);
}

/* What a type in the reference means: one syntax for every key. */
static const struct {
	const char *type, *meaning;
} type_meanings[] = {
        {"yes | no", "yes, true, on or 1; no, false, off or 0; in any case."},
        {"number", "Decimal digits only: no sign, no 0x, no blanks."},
        {"size", "Bytes; a suffix k, M or G (either case) multiplies by 1024, 1024^2 or 1024^3."},
        {"duration", "Seconds (300), or a number with a unit: s, m, h, d or w (300s, 5m, 2h, "
                     "1d, 1w). Where the type adds \"| off\", off means 0."},
        {"duration in ms", "Milliseconds (1500), or a number with a unit: ms, s, m, h, d or w "
                           "(250ms, 2s)."},
        {"path", "A file or directory; a relative path is taken from the directory of the "
                 "configuration file."},
        {"list", "Items separated by commas or blanks; the key may be repeated and the list "
                 "continued on indented lines, each adding to it."},
};

void
settings_reference(FILE *out, enum settings_ref_format fmt,
                   const struct settings_section *const *sections, size_t n)
{
	if (fmt == SETTINGS_REF_MDOC) {
		fputs("Each key is listed with its type, its default and, for numbers, its "
		      "range.\nThe types have one syntax in every section:\n.Bl -tag -width Ds\n",
		      out);
		for (size_t i = 0; i < AR_NELEM(type_meanings); i++) {
			fprintf(out, ".It %s\n", type_meanings[i].type);
			mdoc_text(out, type_meanings[i].meaning);
			fputc('\n', out);
		}
		fputs(".El\n", out);
	} else {
		fputs("Each key is listed with its type, its default and, for numbers, its range. "
		      "The types have one syntax in every section:\n\n",
		      out);
		for (size_t i = 0; i < AR_NELEM(type_meanings); i++)
			fprintf(out, "- *%s*: %s\n", type_meanings[i].type,
			        type_meanings[i].meaning);
		fputc('\n', out);
	}
	for (size_t s = 0; s < n; s++) {
		const struct settings_section *def = sections[s];
		const char *name = def->named ? " NAME" : "";
		const char *meaning = def->meaning != NULL ? def->meaning : "";

		if (fmt == SETTINGS_REF_MDOC) {
			/* "\&": a trailing "]" would be a closing delimiter. */
			fprintf(out, ".Ss [%s%s]\\&\n", def->kind, name);
			if (*meaning != '\0') {
				mdoc_text(out, meaning);
				fputc('\n', out);
			}
			if (def->inherits != NULL)
				fprintf(out,
				        "Any key of\n.Sy [%s]\nwith a value for this section "
				        "alone.\n",
				        def->inherits->kind);
			if (def->n_keys == 0)
				continue;
			fputs(".Bl -tag -width Ds\n", out);
		} else {
			fprintf(out, "### [%s%s]\n\n", def->kind, name);
			if (*meaning != '\0')
				fprintf(out, "%s\n\n", meaning);
			if (def->inherits != NULL)
				fprintf(out,
				        "Any key of `[%s]` may also be set here, for this "
				        "section alone.\n\n",
				        def->inherits->kind);
			if (def->n_keys == 0)
				continue;
			fputs("| Key | Type | Default | Range | Meaning |\n|---|---|---|---|---|\n",
			      out);
		}
		for (size_t i = 0; i < def->n_keys; i++)
			reference_key(out, fmt, &def->keys[i]);
		fputs(fmt == SETTINGS_REF_MDOC ? ".El\n" : "\n", out);
	}
}
