/* SPDX-License-Identifier: ISC */
/*
 * test_settings.c - settings.h, the table-driven parser: every type's good
 * and bad values with their messages and lines, ranges and their reasons,
 * the one duration syntax, lists over continuation lines, defaults,
 * inheritance, warnings, sorted reports, printing (all and -n), the diff
 * of two records and the key reference in both formats; then the registry
 * (settings_registry.h) on real files: show-config and the diff of two
 * loads.
 *
 * Sections are built here as config_load() keeps them (struct
 * config_section); a test table covers every type on one record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/config.h"
#include "lib/net.h"
#include "lib/settings.h"
#include "master/settings_registry.h"
#include "queue/queue_config.h"

/* ---- a record with one field of each type ---- */

enum color { RED, GREEN, BLUE };

struct inner {
	unsigned depth;
	bool deep;
};

struct rec {
	char *text;
	char *opt;
	char *host;
	char *path;
	bool flag;
	unsigned count;
	uint64_t big;
	uint64_t size;
	unsigned wait;
	unsigned wait_off;
	unsigned delay_ms;
	int color;
	bool mode;
	char *proto;
	char **words; /* NULL-terminated, no count */
	char **domains;
	size_t n_domains;
	struct cidr *nets;
	size_t n_nets;
	char *addr;
	unsigned pair_a, pair_b; /* custom "A+B" */
	struct inner inner;
};

static int
parse_pair(struct settings_ctx *ctx, const struct settings_key *k, void *rec, const char *value)
{
	struct rec *r = rec;
	unsigned a, b;
	char end;

	if (sscanf(value, "%u+%u%c", &a, &b, &end) != 2) {
		settings_key_error(ctx, k, value, "expected A+B");
		return -1;
	}
	r->pair_a = a;
	r->pair_b = b;
	return 0;
}

static void
format_pair(const struct settings_key *k, const void *rec, FILE *out)
{
	const struct rec *r = rec;

	if (r->pair_a != 0 || r->pair_b != 0)
		fprintf(out, "%u+%u", r->pair_a, r->pair_b);
}

static const char *
check_no_x(char *v)
{
	return strchr(v, 'x') != NULL ? "no x, please" : NULL;
}

static const struct settings_name color_names[] = {
        {"red", RED, false},
        {"green", GREEN, false},
        {"blue", BLUE, false},
        {"azure", BLUE, true},
        {0},
};
static const struct settings_name mode_names[] = {
        {"quiet", false, false},
        {"loud", true, false},
        {0},
};
static const struct settings_name proto_names[] = {
        {"TLSv1.2", 0, false},
        {"TLSv1.3", 1, false},
        {0},
};

#define F(f) SETTINGS_FIELD(struct rec, f)

static const struct settings_key inner_keys[] = {
        {"depth", SETTINGS_UINT, SETTINGS_FIELD(struct inner, depth), .def = "3", .max = 9,
         .flags = SETTINGS_PER_LISTENER, .meaning = "How deep."},
        {"deep", SETTINGS_BOOL, SETTINGS_FIELD(struct inner, deep), .def = "no",
         .meaning = "Not inherited."},
};

static const struct settings_section inner_section = {
        .kind = "inner",
        .keys = inner_keys,
        .n_keys = AR_NELEM(inner_keys),
};

static const struct settings_key keys[] = {
        {"text", SETTINGS_STRING, F(text), .def = "hello", .check = check_no_x,
         .meaning = "Some text."},
        {"opt", SETTINGS_STRING, F(opt), .flags = SETTINGS_OPTIONAL, .meaning = "Optional."},
        {"host", SETTINGS_STRING, F(host), .check = settings_check_host_name,
         .def_doc = "the machine's name", .type_doc = "host name", .meaning = "A host."},
        {"path", SETTINGS_PATH, F(path), .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "A file."},
        {"flag", SETTINGS_BOOL, F(flag), .def = "yes", .meaning = "A flag."},
        {"count", SETTINGS_UINT, F(count), .def = "10", .min = 2, .max = 100,
         .why = "RFC 0 says so", .warn_below = 5, .warn_why = "small counts are slow",
         .meaning = "A count."},
        {"big", SETTINGS_UINT, F(big), .def = "0", .meaning = "A 64-bit number."},
        {"size", SETTINGS_SIZE, F(size), .def = "1M", .min = 1, .meaning = "A size."},
        {"wait", SETTINGS_DURATION, F(wait), .def = "5m", .min = 1, .max = 86400,
         .meaning = "A duration."},
        {"wait_off", SETTINGS_DURATION, F(wait_off), .def = "off", .flags = SETTINGS_OFF,
         .meaning = "A duration that may be off."},
        {"delay_ms", SETTINGS_DURATION_MS, F(delay_ms), .def = "1500", .max = 600000,
         .meaning = "Milliseconds."},
        {"color", SETTINGS_ENUM, F(color), .def = "green", .names = color_names,
         .meaning = "A color."},
        {"mode", SETTINGS_ENUM, F(mode), .def = "quiet", .names = mode_names,
         .meaning = "An enum in a bool."},
        {"proto", SETTINGS_KEYWORD, F(proto), .def = "TLSv1.2", .names = proto_names,
         .why = "nothing older", .meaning = "A keyword."},
        {"words", SETTINGS_LIST, F(words), .meaning = "Words."},
        {"domains", SETTINGS_LIST, F(domains), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct rec, n_domains), .check = settings_check_domain_pattern,
         .meaning = "Domains."},
        {"nets", SETTINGS_CIDRS, F(nets), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct rec, n_nets), .meaning = "Networks."},
        {"addr", SETTINGS_HOSTPORT, F(addr), .meaning = "Where to listen."},
        {"pair", SETTINGS_CUSTOM, F(pair_a), .parse = parse_pair, .format = format_pair,
         .type_doc = "A+B", .def = "1+2", .meaning = "Two numbers | a pipe."},
};

static const struct settings_section test_section = {
        .kind = "test",
        .named = true,
        .meaning = "A section for tests.",
        .keys = keys,
        .n_keys = AR_NELEM(keys),
        .inherits = &inner_section,
        .inherit_offset = offsetof(struct rec, inner),
};

/* ---- building sections as the reader does ---- */

static struct config_kv kvs[32];
static struct config_line parts[32][4];
static struct config_section sec;
static size_t n_kvs;

static void
sec_reset(void)
{
	memset(kvs, 0, sizeof(kvs));
	memset(parts, 0, sizeof(parts));
	n_kvs = 0;
	sec = (struct config_section){.kind = "test", .name = "t1", .line = 1, .kv = kvs};
}

/* key = value at line; more continuation lines follow in parts. */
static void
add_kv(const char *key, const char *value, int line)
{
	struct config_kv *kv;

	assert_true(n_kvs < AR_NELEM(kvs));
	kv = &kvs[n_kvs];
	kv->key = (char *)key;
	kv->value = (char *)value;
	kv->line = line;
	sec.n_kv = ++n_kvs;
}

static void
add_continuation(const char *text, int line)
{
	struct config_kv *kv = &kvs[n_kvs - 1];

	assert_true(kv->n_parts < AR_NELEM(parts[0]));
	if (kv->n_parts == 0) {
		parts[n_kvs - 1][0] = (struct config_line){kv->value, kv->line};
		kv->parts = parts[n_kvs - 1];
		kv->n_parts = 1;
	}
	parts[n_kvs - 1][kv->n_parts++] = (struct config_line){(char *)text, line};
}

/* Parse sec into r (defaults first); returns the report (NULL: none). */
static char *
parse(struct rec *r, size_t *errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new("/etc/t.conf", NULL);
	static const struct settings_section *const known[] = {&test_section, &inner_section};
	int lines[64] = {0};
	char *report;

	assert_true(settings_n_keys(&test_section) <= AR_NELEM(lines));
	settings_ctx_set_sections(ctx, known, AR_NELEM(known));
	memset(r, 0, sizeof(*r));
	settings_defaults(&test_section, r);
	settings_parse(ctx, &test_section, &sec, r, lines);
	report = settings_ctx_report(ctx);
	*errors_r = settings_ctx_errors(ctx);
	settings_ctx_free(ctx);
	return report;
}

static void
parse_ok(struct rec *r)
{
	size_t errors;
	char *report = parse(r, &errors);

	if (errors != 0)
		fail_msg("refused: %s", report);
	free(report);
}

/* One key = value must be refused with want (line 5) and nothing else. */
static void
expect_error(const char *key, const char *value, const char *want)
{
	struct rec r;
	size_t errors;
	char full[512];

	sec_reset();
	add_kv(key, value, 5);
	char *report = parse(&r, &errors);
	snprintf(full, sizeof(full), "/etc/t.conf:5: %s\n", want);
	print_message("  %s = %s\n", key, value);
	if (errors != 1 || report == NULL || strcmp(report, full) != 0)
		fail_msg("%s = %s: want '%s', got '%s'", key, value, want, report);
	free(report);
	settings_free(&test_section, &r);
}

/* ---- parsing ---- */

static void
test_defaults(void **state)
{
	struct rec r;

	sec_reset();
	parse_ok(&r);
	assert_string_equal(r.text, "hello");
	assert_null(r.opt);
	assert_null(r.host);
	assert_true(r.flag);
	assert_int_equal(r.count, 10);
	assert_int_equal(r.size, 1024 * 1024);
	assert_int_equal(r.wait, 300);
	assert_int_equal(r.wait_off, 0);
	assert_int_equal(r.delay_ms, 1500);
	assert_int_equal(r.color, GREEN);
	assert_false(r.mode);
	assert_string_equal(r.proto, "TLSv1.2");
	/* lists are empty arrays, never NULL */
	assert_non_null(r.words);
	assert_null(r.words[0]);
	assert_int_equal(r.n_domains, 0);
	assert_int_equal(r.n_nets, 0);
	assert_int_equal(r.pair_a, 1);
	assert_int_equal(r.pair_b, 2);
	assert_int_equal(r.inner.depth, 3);
	settings_free(&test_section, &r);
	assert_null(r.text);
	assert_null(r.words);
}

static void
test_good_values(void **state)
{
	struct rec r;

	sec_reset();
	add_kv("TEXT", "a; b # c", 2); /* keys in any case */
	add_kv("opt", "", 3);
	add_kv("host", "mx1.example.test", 4);
	add_kv("path", "sub/file", 5);
	add_kv("flag", "Off", 6);
	add_kv("count", "100", 7);
	add_kv("big", "18446744073709551615", 8);
	add_kv("size", "3G", 9);
	add_kv("wait", "1d", 10);
	add_kv("wait_off", "OFF", 11);
	add_kv("delay_ms", "2s", 12);
	add_kv("color", "Azure", 13);
	add_kv("mode", "loud", 14);
	add_kv("proto", "tlsv1.3", 15);
	add_kv("addr", "[::1]:587", 16);
	add_kv("pair", "7+8", 17);
	add_kv("depth", "9", 18); /* inherited, SETTINGS_PER_LISTENER */
	parse_ok(&r);
	assert_string_equal(r.text, "a; b # c");
	assert_null(r.opt);
	assert_string_equal(r.host, "mx1.example.test");
	assert_string_equal(r.path, "/etc/sub/file"); /* from the file's directory */
	assert_false(r.flag);
	assert_int_equal(r.count, 100);
	assert_true(r.big == UINT64_MAX);
	assert_true(r.size == 3ULL << 30);
	assert_int_equal(r.wait, 86400);
	assert_int_equal(r.wait_off, 0);
	assert_int_equal(r.delay_ms, 2000);
	assert_int_equal(r.color, BLUE);
	assert_true(r.mode);
	assert_string_equal(r.proto, "TLSv1.3"); /* as the table spells it */
	assert_string_equal(r.addr, "[::1]:587");
	assert_int_equal(r.pair_a, 7);
	assert_int_equal(r.pair_b, 8);
	assert_int_equal(r.inner.depth, 9);
	settings_free(&test_section, &r);
}

static void
test_bad_values(void **state)
{
	static const struct {
		const char *key, *value, *error;
	} rows[] = {
	        {"text", "", "text = : must not be empty"},
	        {"text", "xyz", "text = xyz: no x, please"},
	        {"host", "mail_1.example.test",
	         "host = mail_1.example.test: not a host name (letters, digits, '-' and '.')"},
	        {"host", "a-.example",
	         "host = a-.example: not a host name (letters, digits, "
	         "'-' and '.')"},
	        {"path", "", NULL}, /* optional: empty is "not set" (checked below) */
	        {"flag", "maybe",
	         "flag = maybe: expected yes or no (also true/false, on/off, 1/0)"},
	        {"flag", "", "flag = : expected yes or no (also true/false, on/off, 1/0)"},
	        {"count", "x", "count = x: not a whole number"},
	        {"count", "-1", "count = -1: not a whole number"},
	        {"count", "0x10", "count = 0x10: not a whole number"},
	        {"count", " 5", "count =  5: not a whole number"},
	        {"count", "", "count = : not a whole number"},
	        {"count", "1", "count = 1: must be at least 2 (RFC 0 says so)"},
	        {"count", "101", "count = 101: must be at most 100"},
	        {"count", "99999999999999999999",
	         "count = 99999999999999999999: not a whole number"},
	        {"big", "18446744073709551616", "big = 18446744073709551616: not a whole number"},
	        {"size", "0", "size = 0: must be at least 1"},
	        {"size", "10X", "size = 10X: not a size in bytes (digits, then k, M or G)"},
	        {"size", "10MB", "size = 10MB: not a size in bytes (digits, then k, M or G)"},
	        {"size", "k", "size = k: not a size in bytes (digits, then k, M or G)"},
	        {"size", "99999999999999G", "size = 99999999999999G: too large"},
	        {"wait", "0", "wait = 0: must be at least 1s"},
	        {"wait", "2d", "wait = 2d: must be at most 1d"},
	        {"wait", "off",
	         "wait = off: not a duration (seconds, or a number with s, m, h, d "
	         "or w)"},
	        {"wait", "5ms",
	         "wait = 5ms: not a duration (seconds, or a number with s, m, h, d "
	         "or w)"},
	        {"wait", "5M",
	         "wait = 5M: not a duration (seconds, or a number with s, m, h, d or "
	         "w)"},
	        {"wait", "1 m",
	         "wait = 1 m: not a duration (seconds, or a number with s, m, h, d "
	         "or w)"},
	        {"wait", "4294967296", "wait = 4294967296: must be at most 1d"},
	        {"wait_off", "never",
	         "wait_off = never: not a duration (seconds, or a number with "
	         "s, m, h, d or w; or off)"},
	        {"wait_off", "99999999999", "wait_off = 99999999999: must be at most 4294967295s"},
	        {"delay_ms", "10m1",
	         "delay_ms = 10m1: not a duration (milliseconds, or a number "
	         "with ms, s, m, h, d or w)"},
	        {"delay_ms", "600001", "delay_ms = 600001: must be at most 10m"},
	        {"color", "purple", "color = purple: expected red, green or blue"},
	        {"mode", "on", "mode = on: expected quiet or loud"},
	        {"proto", "TLSv1.1",
	         "proto = TLSv1.1: expected TLSv1.2 or TLSv1.3 (nothing older)"},
	        {"domains", "good.test,bad_one.test",
	         "domains = bad_one.test: not a domain name "
	         "(write .example.test for subdomains)"},
	        {"nets", "10.0.0.0/33",
	         "nets = 10.0.0.0/33: the prefix length must be a number "
	         "from 0 to 32"},
	        {"nets", "lan.example", "nets = lan.example: not a numeric IPv4 or IPv6 network"},
	        {"addr", "localhost:25",
	         "addr = localhost:25: not a numeric IPv4 address (host "
	         "names are not resolved)"},
	        {"pair", "7", "pair = 7: expected A+B"},
	        {"depth", "10", "depth = 10: must be at most 9"},
	        {"text", "a\tb", "text: control character in the value"},
	        {"nope", "1", "unknown key 'nope' in [test t1]"},
	        /* a key of another section; "deep" is [inner]'s but not per listener */
	        {"deep", "yes", "unknown key 'deep' in [test t1] (it belongs in [inner])"},
	};

	for (size_t i = 0; i < AR_NELEM(rows); i++)
		if (rows[i].error != NULL)
			expect_error(rows[i].key, rows[i].value, rows[i].error);
}

/* The exact net.c wording of one hostport reason, whatever it is. */
static void
test_hostport_reason(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why = NULL;
	char want[256];

	assert_int_equal(net_parse_hostport("127.0.0.1", &ss, &len, &why), -1);
	snprintf(want, sizeof(want), "addr = 127.0.0.1: %s", why);
	expect_error("addr", "127.0.0.1", want);
}

static void
test_optional_and_replace(void **state)
{
	struct rec r;

	sec_reset();
	add_kv("opt", "set", 2);
	add_kv("path", "", 3);
	add_kv("text", "again", 4);
	parse_ok(&r);
	assert_string_equal(r.opt, "set");
	assert_null(r.path);
	assert_string_equal(r.text, "again"); /* the default was replaced */
	settings_free(&test_section, &r);
}

static void
test_lists_and_continuations(void **state)
{
	struct rec r;
	size_t errors;

	sec_reset();
	add_kv("words", "a, b,,c", 2);
	add_continuation("d  e", 3);
	add_kv("words", "f", 4); /* a list key again: adds */
	add_kv("domains", "Example.ORG, example.net.", 5);
	add_continuation(".Lists.Example.COM bad..one", 6);
	add_kv("nets", "192.0.2.0/24,2001:db8::/32", 7);
	add_continuation("127.0.0.1", 8);
	char *report = parse(&r, &errors);
	print_message("%s", report);
	assert_int_equal(errors, 1);
	/* the bad item is reported on its own (continuation) line */
	assert_string_equal(report, "/etc/t.conf:6: domains = bad..one: not a domain name (write "
	                            ".example.test for subdomains)\n");
	free(report);
	static const char *const words[] = {"a", "b", "c", "d", "e", "f"};
	for (size_t i = 0; i < AR_NELEM(words); i++)
		assert_string_equal(r.words[i], words[i]);
	assert_null(r.words[AR_NELEM(words)]);
	assert_int_equal(r.n_domains, 3);
	assert_string_equal(r.domains[0], "example.org");
	assert_string_equal(r.domains[1], "example.net");
	assert_string_equal(r.domains[2], ".lists.example.com");
	assert_null(r.domains[3]);
	assert_int_equal(r.n_nets, 3);
	char text[64];
	assert_string_equal(net_cidr_str(&r.nets[2], text, sizeof(text)), "127.0.0.1/32");
	settings_free(&test_section, &r);
	assert_null(r.domains);
	assert_int_equal(r.n_domains, 0);
	assert_null(r.nets);
}

static void
test_duplicates_and_continuations_of_one_value(void **state)
{
	struct rec r;
	size_t errors;

	sec_reset();
	add_kv("count", "50", 2);
	add_kv("count", "60", 3);
	add_kv("flag", "x", 4);  /* refused... */
	add_kv("flag", "no", 5); /* ...but still set: one line says so */
	add_kv("text", "one", 6);
	add_continuation("two", 7);
	add_kv("depth", "4", 8);
	add_kv("DEPTH", "5", 9);
	char *report = parse(&r, &errors);
	assert_int_equal(errors, 5);
	assert_string_equal(
	        report,
	        "/etc/t.conf:3: count is already set at line 2\n"
	        "/etc/t.conf:4: flag = x: expected yes or no (also true/false, on/off, 1/0)\n"
	        "/etc/t.conf:5: flag is already set at line 4\n"
	        "/etc/t.conf:7: indented line continues 'text', which takes one value; only list "
	        "keys continue on indented lines\n"
	        "/etc/t.conf:9: depth is already set at line 8\n");
	assert_int_equal(r.count, 50);
	assert_string_equal(r.text, "one");
	assert_int_equal(r.inner.depth, 4);
	free(report);
	settings_free(&test_section, &r);
}

/* A second section of the same kind shares the lines array. */
static void
test_lines_across_sections(void **state)
{
	struct settings_ctx *ctx = settings_ctx_new("t.conf", NULL);
	int lines[64] = {0};
	struct rec r;

	memset(&r, 0, sizeof(r));
	settings_defaults(&test_section, &r);
	sec_reset();
	add_kv("count", "50", 2);
	add_kv("path", "p", 3);
	settings_parse(ctx, &test_section, &sec, &r, lines);
	assert_int_equal(lines[settings_key_index(&test_section, "count")], 2);
	assert_int_equal(lines[settings_key_index(&test_section, "depth")], 0);
	sec_reset();
	add_kv("count", "60", 12);
	add_kv("depth", "x", 13);
	settings_parse(ctx, &test_section, &sec, &r, lines);
	assert_int_equal(lines[settings_key_index(&test_section, "depth")], -13);
	assert_string_equal(r.path, "./p"); /* "t.conf" lies in "." */
	char *report = settings_ctx_report(ctx);
	assert_string_equal(report, "t.conf:12: count is already set at line 2\n"
	                            "t.conf:13: depth = x: not a whole number\n");
	free(report);
	assert_int_equal(settings_key_index(&test_section, "DEPTH"), (int)AR_NELEM(keys));
	assert_int_equal(settings_key_index(&test_section, "deep"), -1);
	assert_int_equal(settings_key_index(&test_section, "nope"), -1);
	settings_ctx_free(ctx);
	settings_free(&test_section, &r);
}

static void
test_warnings_and_sorting(void **state)
{
	struct settings_ctx *ctx = settings_ctx_new("/x/t.conf", "/elsewhere");
	struct rec r;

	assert_null(settings_ctx_report(ctx));
	memset(&r, 0, sizeof(r));
	settings_defaults(&test_section, &r);
	sec_reset();
	add_kv("path", "rel", 9);
	add_kv("count", "3", 7);
	int lines[64] = {0};
	settings_parse(ctx, &test_section, &sec, &r, lines);
	settings_error(ctx, 8, "an error on %s", "eight");
	settings_error(ctx, 0, "about the whole file");
	settings_warning(ctx, 8, "then a warning");
	assert_int_equal(settings_ctx_errors(ctx), 2);
	char *report = settings_ctx_report(ctx);
	assert_string_equal(report, "/x/t.conf:0: about the whole file\n"
	                            "/x/t.conf:7: warning: count = 3: small counts are slow\n"
	                            "/x/t.conf:8: an error on eight\n"
	                            "/x/t.conf:8: warning: then a warning\n");
	assert_string_equal(r.path, "/elsewhere/rel");
	assert_int_equal(r.count, 3); /* a warning still loads */
	free(report);
	settings_ctx_free(ctx);
	settings_free(&test_section, &r);
}

static void
test_value_syntaxes(void **state)
{
	static const struct {
		const char *text;
		bool ms;
		int ret;
		uint64_t want;
	} d[] = {
	        {"0", false, 0, 0},       {"59", false, 0, 59},
	        {"59s", false, 0, 59},    {"2m", false, 0, 120},
	        {"3h", false, 0, 10800},  {"1d", false, 0, 86400},
	        {"1w", false, 0, 604800}, {"", false, -1, 0},
	        {"s", false, -1, 0},      {"-1", false, -1, 0},
	        {"1 m", false, -1, 0},    {"5mm", false, -1, 0},
	        {"1ms", false, -1, 0},    {"250", true, 0, 250},
	        {"250ms", true, 0, 250},  {"2s", true, 0, 2000},
	        {"1m", true, 0, 60000},   {"1w", true, 0, 604800000},
	        {"off", true, -1, 0},     {"99999999999999999999", false, -1, 0},
	};
	for (size_t i = 0; i < AR_NELEM(d); i++) {
		uint64_t v = 12345;
		if (settings_parse_duration(d[i].text, d[i].ms, &v) != d[i].ret)
			fail_msg("duration '%s' (ms %d)", d[i].text, d[i].ms);
		if (d[i].ret == 0)
			assert_true(v == d[i].want);
	}
	static const struct {
		uint64_t v;
		bool ms;
		const char *text;
	} f[] = {
	        {0, false, "0"},        {59, false, "59s"},     {300, false, "5m"},
	        {4000, false, "4000s"}, {86400, false, "1d"},   {432000, false, "5d"},
	        {604800, false, "1w"},  {1500, true, "1500ms"}, {2000, true, "2s"},
	        {0, true, "0"},
	};
	for (size_t i = 0; i < AR_NELEM(f); i++) {
		char buf[32];
		settings_format_duration(f[i].v, f[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, f[i].text);
	}
	uint64_t v;
	bool b;
	assert_int_equal(settings_parse_size("10k", &v), 0);
	assert_true(v == 10240);
	assert_int_equal(settings_parse_size("10K", &v), 0);
	assert_int_equal(settings_parse_size("3m", &v), 0);
	assert_true(v == 3 * 1024 * 1024);
	assert_int_equal(settings_parse_size("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(settings_parse_size("99999999999999G", &v), -1);
	assert_int_equal(settings_parse_uint("007", &v), 0);
	assert_true(v == 7);
	assert_int_equal(settings_parse_uint("7 ", &v), -1);
	static const struct {
		const char *text;
		int ret;
		bool value;
	} bools[] = {
	        {"yes", 0, true}, {"YES", 0, true}, {"true", 0, true},   {"On", 0, true},
	        {"1", 0, true},   {"no", 0, false}, {"False", 0, false}, {"off", 0, false},
	        {"0", 0, false},  {"NO", 0, false}, {"2", -1, false},    {"", -1, false},
	        {"y", -1, false},
	};
	for (size_t i = 0; i < AR_NELEM(bools); i++) {
		b = !bools[i].value;
		assert_int_equal(settings_parse_bool(bools[i].text, &b), bools[i].ret);
		if (bools[i].ret == 0)
			assert_int_equal(b, bools[i].value);
	}
}

static void
test_checks(void **state)
{
	char a[] = "Example.TEST.", b[] = ".Sub.Example.Test", c[] = "-x.test", d[] = "ok",
	     e[] = "caf\xc3\xa9";

	assert_null(settings_check_domain_pattern(a));
	assert_string_equal(a, "example.test");
	assert_null(settings_check_domain_pattern(b));
	assert_string_equal(b, ".sub.example.test");
	assert_non_null(settings_check_domain_pattern(c));
	assert_null(settings_check_host_name(d));
	assert_non_null(settings_check_domain_name(c));
	assert_null(settings_check_printable(d));
	assert_string_equal(settings_check_printable(e),
	                    "only printable ASCII may appear in an SMTP reply");
}

/* ---- output ---- */

static char *
print_to_string(const void *rec, const void *base, const bool *written)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	settings_print(f, &test_section, "t1", rec, base, written);
	fclose(f);
	return out;
}

static void
test_print(void **state)
{
	struct rec r, base;
	bool written[64] = {false};

	sec_reset();
	add_kv("count", "50", 2);
	add_kv("size", "10240", 3);
	add_kv("domains", "b.test a.test", 4);
	add_kv("nets", "10.1.0.0/16", 5);
	add_kv("host", "h.test", 6);
	add_kv("delay_ms", "250", 7);
	add_kv("wait", "300", 8); /* the default, written out */
	add_kv("depth", "4", 9);
	parse_ok(&r);
	char *all = print_to_string(&r, NULL, NULL);
	assert_string_equal(all, "[test t1]\n"
	                         "text = hello\n"
	                         "# opt = (not set)\n"
	                         "host = h.test\n"
	                         "# path = (not set)\n"
	                         "flag = yes\n"
	                         "count = 50\n"
	                         "big = 0\n"
	                         "size = 10k\n"
	                         "wait = 5m\n"
	                         "wait_off = off\n"
	                         "delay_ms = 250ms\n"
	                         "color = green\n"
	                         "mode = quiet\n"
	                         "proto = TLSv1.2\n"
	                         "words =\n"
	                         "domains = b.test, a.test\n"
	                         "nets = 10.1.0.0/16\n"
	                         "# addr = (not set)\n"
	                         "pair = 1+2\n"
	                         "depth = 4\n"
	                         "deep = no\n"
	                         "\n");
	free(all);

	/* -n: what differs from the defaults; a worked-out default (host)
	 * only when the file writes it */
	memset(&base, 0, sizeof(base));
	settings_defaults(&test_section, &base);
	char *changed = print_to_string(&r, &base, written);
	assert_string_equal(changed, "[test t1]\n"
	                             "count = 50\n"
	                             "size = 10k\n"
	                             "delay_ms = 250ms\n"
	                             "domains = b.test, a.test\n"
	                             "nets = 10.1.0.0/16\n"
	                             "depth = 4\n"
	                             "\n");
	free(changed);
	written[settings_key_index(&test_section, "host")] = true;
	changed = print_to_string(&r, &base, written);
	assert_non_null(strstr(changed, "\nhost = h.test\n"));
	free(changed);
	/* nothing differs: not even the header */
	memset(written, 0, sizeof(written));
	changed = print_to_string(&base, &base, written);
	assert_string_equal(changed, "");
	free(changed);

	/* settings_written(): from the sections as written */
	struct config cfg = {.sections = &sec, .n_sections = 1};
	settings_written(&test_section, &cfg, "T1", written);
	assert_true(written[settings_key_index(&test_section, "host")]);
	assert_true(written[settings_key_index(&test_section, "depth")]);
	assert_false(written[settings_key_index(&test_section, "text")]);
	settings_written(&test_section, &cfg, "other", written);
	assert_false(written[settings_key_index(&test_section, "host")]);
	settings_free(&test_section, &base);
	settings_free(&test_section, &r);
}

struct changes {
	size_t n;
	char *text[16];
};

static void
collect(void *arg, const struct settings_change *c)
{
	struct changes *ch = arg;

	assert_true(ch->n < AR_NELEM(ch->text));
	ch->text[ch->n++] = settings_change_text(c);
}

static void
free_changes(struct changes *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		free(ch->text[i]);
	ch->n = 0;
}

static void
test_diff(void **state)
{
	struct rec a, b;
	struct changes ch = {0};

	sec_reset();
	parse_ok(&a);
	add_kv("count", "20", 2);
	add_kv("path", "/p", 3);
	add_kv("nets", "10.0.0.0/8", 4);
	add_kv("depth", "5", 5);
	add_kv("pair", "3+4", 6);
	parse_ok(&b);
	assert_int_equal(settings_diff(&test_section, "test t1", &a, &b, collect, &ch), 5);
	assert_int_equal(ch.n, 5);
	assert_string_equal(ch.text[0], "test t1: path (not set) -> /p (needs a restart)");
	assert_string_equal(ch.text[1], "test t1: count 10 -> 20");
	assert_string_equal(ch.text[2], "test t1: nets (empty) -> 10.0.0.0/8");
	assert_string_equal(ch.text[3], "test t1: pair 1+2 -> 3+4");
	assert_string_equal(ch.text[4], "test t1: depth 3 -> 5");
	free_changes(&ch);
	assert_int_equal(settings_diff(&test_section, "test t1", &b, &b, collect, &ch), 0);

	struct settings_change added = {.section = "listener new", .new_value = "added"};
	struct settings_change removed = {.section = "route old"};
	char *t = settings_change_text(&added);
	assert_string_equal(t, "listener new: added");
	free(t);
	t = settings_change_text(&removed);
	assert_string_equal(t, "route old: removed");
	free(t);
	settings_free(&test_section, &a);
	settings_free(&test_section, &b);
}

/* ---- keeping what needs a restart ---- */

struct keep {
	char *name;
	char **list;
	struct cidr *nets;
	size_t n_nets;
	unsigned number;
	unsigned pair_a, pair_b;
	unsigned free_to_change;
};

#define K(f) SETTINGS_FIELD(struct keep, f)

static const struct settings_key keep_keys[] = {
        {"name", SETTINGS_STRING, K(name), .flags = SETTINGS_RESTART, .meaning = "A name."},
        {"list", SETTINGS_LIST, K(list), .flags = SETTINGS_RESTART, .meaning = "Words."},
        {"nets", SETTINGS_CIDRS, K(nets), .flags = SETTINGS_COUNTED | SETTINGS_RESTART,
         .count_offset = offsetof(struct keep, n_nets), .meaning = "Networks."},
        {"number", SETTINGS_UINT, K(number), .flags = SETTINGS_RESTART, .def = "1",
         .meaning = "A number."},
        {"free", SETTINGS_UINT, K(free_to_change), .def = "1", .meaning = "Reloads."},
};

static const struct settings_section keep_section = {
        .kind = "keep",
        .keys = keep_keys,
        .n_keys = AR_NELEM(keep_keys),
};

static const struct settings_key keep_custom_keys[] = {
        {"pair", SETTINGS_CUSTOM, SETTINGS_FIELD(struct keep, pair_a), .parse = parse_pair,
         .format = format_pair, .flags = SETTINGS_RESTART, .meaning = "Cannot be kept."},
};

static const struct settings_section keep_custom_section = {
        .kind = "keep",
        .keys = keep_custom_keys,
        .n_keys = AR_NELEM(keep_custom_keys),
};

static void
keep_parse(struct keep *r, const char *name, const char *list, const char *nets, const char *number,
           const char *free_to_change)
{
	struct settings_ctx *ctx = settings_ctx_new("t.conf", "/etc");

	sec_reset();
	sec.kind = "keep";
	sec.name = NULL;
	add_kv("name", name, 2);
	add_kv("list", list, 3);
	add_kv("nets", nets, 4);
	add_kv("number", number, 5);
	add_kv("free", free_to_change, 6);
	memset(r, 0, sizeof(*r));
	settings_defaults(&keep_section, r);
	int lines[8] = {0};
	settings_parse(ctx, &keep_section, &sec, r, lines);
	assert_int_equal(settings_ctx_errors(ctx), 0);
	settings_ctx_free(ctx);
}

static void
test_keep_restart(void **state)
{
	struct keep a, b;
	const char *failed = "x";
	struct changes ch = {0};

	keep_parse(&a, "old", "a b", "10.0.0.0/8 192.168.0.0/16", "5", "1");
	keep_parse(&b, "new", "c", "172.16.0.0/12", "6", "2");
	assert_int_equal(settings_keep_restart(&keep_section, &b, &a, &failed), 4);
	assert_null(failed);
	assert_string_equal(b.name, "old");
	assert_string_equal(b.list[0], "a");
	assert_string_equal(b.list[1], "b");
	assert_null(b.list[2]);
	assert_int_equal(b.n_nets, 2);
	assert_memory_equal(b.nets, a.nets, 2 * sizeof(*a.nets));
	assert_int_equal(b.number, 5);
	/* What may change did. */
	assert_int_equal(b.free_to_change, 2);
	assert_int_equal(settings_diff(&keep_section, "keep", &a, &b, collect, &ch), 1);
	assert_string_equal(ch.text[0], "keep: free 1 -> 2");
	free_changes(&ch);
	/* Copies, not shared: each record frees its own. */
	assert_ptr_not_equal(b.name, a.name);
	settings_free(&keep_section, &a);
	settings_free(&keep_section, &b);

	/* A custom type cannot be copied: named, and left alone. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.pair_a = 1;
	b.pair_a = 2;
	assert_int_equal(settings_keep_restart(&keep_custom_section, &b, &a, &failed), 0);
	assert_string_equal(failed, "pair");
	assert_int_equal(b.pair_a, 2);
}

static char *
reference(enum settings_ref_format fmt)
{
	static const struct settings_section *const one[] = {&test_section};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	settings_reference(f, fmt, one, 1);
	fclose(f);
	return out;
}

static void
test_reference(void **state)
{
	char *md = reference(SETTINGS_REF_MARKDOWN);

	print_message("%s", md);
	/* the types first, then each section */
	assert_non_null(strstr(md, "- *duration*: Seconds (300), or a number with a unit: s, m, "
	                           "h, d or w"));
	assert_true(strstr(md, "- *list*: ") < strstr(md, "### [test NAME]\n\nA section for "
	                                                  "tests.\n\n"));
	assert_non_null(strstr(md, "Any key of `[inner]` may also be set here"));
	assert_non_null(strstr(md, "| Key | Type | Default | Range | Meaning |\n"));
	assert_non_null(strstr(md, "| `count` | number | 10 | 2 to 100 | A count. Values below 5 "
	                           "load with a warning. |\n"));
	assert_non_null(strstr(md, "| `host` | host name | the machine's name |  | A host. |\n"));
	assert_non_null(strstr(md, "| `path` | path | none |  | A file. A change needs a "
	                           "restart. |\n"));
	assert_non_null(strstr(md, "| `wait` | duration | 5m | 1s to 1d | A duration. |\n"));
	assert_non_null(strstr(md, "| `wait_off` | duration \\| off | off |  |"));
	assert_non_null(strstr(md, "| `size` | size | 1M | at least 1 | A size. |\n"));
	assert_non_null(strstr(md, "| `color` | red \\| green \\| blue | green |"));
	assert_non_null(strstr(md, "| `words` | list | empty |  | Words. |\n"));
	assert_non_null(strstr(md, "| `pair` | A+B | 1+2 |  | Two numbers \\| a pipe. |\n"));
	free(md);

	char *mdoc = reference(SETTINGS_REF_MDOC);
	print_message("%s", mdoc);
	assert_non_null(strstr(mdoc, ".Bl -tag -width Ds\n.It yes | no\nyes, true, on or 1;"));
	/* "\&": no trailing delimiter */
	assert_non_null(strstr(mdoc, "\n.El\n.Ss [test NAME]\\&\nA section for tests.\n"));
	assert_non_null(strstr(mdoc, "\n.Bl -tag -width Ds\n.It Cm text\nSome text.\nType: "
	                             "text.\nDefault: hello.\n.It Cm opt\n"));
	/* one sentence per line, as mdoc wants */
	assert_non_null(strstr(mdoc, "\n.It Cm count\nA count.\nValues below 5 load with a "
	                             "warning.\nType: number.\nDefault: 10.\nRange: 2 to 100.\n"));
	assert_true(strlen(mdoc) > 4 && strcmp(mdoc + strlen(mdoc) - 4, ".El\n") == 0);
	free(mdoc);
}

/* ---- the registry, on real files ---- */

static char *
write_conf(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/test_settings.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static struct settings_set *
load_set(const char *text)
{
	char *path = write_conf(text), *errors = NULL;
	struct settings_set *set = settings_registry_load(path, &errors);

	unlink(path);
	if (set == NULL)
		fail_msg("%s", errors);
	return set;
}

#define GW                                                                                         \
	"[relay]\nlocal_domains = example.test\n[users-file]\npath = /etc/u\n"                     \
	"[listener mx]\naddress = 127.0.0.1:2525\nrole = inbound\n"

static void
test_registry_show(void **state)
{
	struct settings_set *set = load_set(
	        GW "max_connections = 7\n[limits]\ncommand_timeout = 60\n"
	           "[queue]\nretry_min = 10m\n[route r]\ndomains = other.test\n"
	           "[protection]\ncache_size = 5\n[ldap corp]\nuri = ldap://a\nbase = dc=x\n"
	           "[alerts]\ncooldown = 30m\n");
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	settings_registry_show(f, set, true);
	fclose(f);
	print_message("%s", out);
	assert_string_equal(out, "[limits]\n"
	                         "command_timeout = 1m\n"
	                         "\n"
	                         "[listener mx]\n"
	                         "address = 127.0.0.1:2525\n"
	                         "role = inbound\n"
	                         "max_connections = 7\n"
	                         "\n"
	                         "[relay]\n"
	                         "local_domains = example.test\n"
	                         "\n"
	                         "[users-file]\n"
	                         "path = /etc/u\n"
	                         "\n"
	                         "[ldap corp]\n"
	                         "uri = ldap://a\n"
	                         "base = dc=x\n"
	                         "\n"
	                         "[protection]\n"
	                         "cache_size = 5\n"
	                         "\n"
	                         "[queue]\n"
	                         "retry_min = 10m\n"
	                         "\n"
	                         "[route r]\n"
	                         "domains = other.test\n"
	                         "\n");
	free(out);

	/* Everything: the listener inherits [limits], defaults are shown. */
	f = open_memstream(&out, &len);
	settings_registry_show(f, set, false);
	fclose(f);
	assert_non_null(strstr(out, "[server]\nhostname = "));
	assert_non_null(strstr(out, "\nuser = authrelay\n"));
	assert_non_null(strstr(out, "[listener mx]\naddress = 127.0.0.1:2525\nrole = inbound\n"
	                            "tls = none\n"));
	assert_non_null(strstr(out, "\nmax_connections = 7\n"));
	assert_non_null(strstr(out, "\ncommand_timeout = 1m\ndata_timeout = 3m\n"));
	assert_non_null(strstr(out, "[tls]\n# cert_file = (not set)\n"));
	assert_non_null(strstr(out, "[alerts]\nto =\nfrom = postmaster@"));
	assert_non_null(strstr(out, "[route r]\ndomains = other.test\ntype = smtp\n"
	                            "# nexthop = (not set)\n"));
	free(out);
	settings_registry_free(set);
}

static void
test_registry_diff(void **state)
{
	struct settings_set *a = load_set(GW "[listener sub]\naddress = 127.0.0.1:2587\n"
	                                     "role = submission\ntls = none\n"
	                                     "allow_plaintext_auth = yes\n"
	                                     "[route old]\ndomains = old.test\n"
	                                     "[ldap corp]\nuri = ldap://a\nbase = dc=x\n");
	struct settings_set *b = load_set(GW "max_connections = 200\n[server]\nuser = other\n"
	                                     "[route new]\ndomains = new.test\n"
	                                     "[queue]\ngroup_commit = no\n"
	                                     "[ldap corp]\nuri = ldap://b\nbase = dc=y\n"
	                                     "filter = (uid=%u)\n"
	                                     "[smtp-forward]\nupstreams = [10.0.0.1]:587\n");
	struct changes ch = {0};

	/* auth_user and queue_user have defaults of their own: they do not
	 * follow user. */
	assert_int_equal(settings_registry_diff(a, b, collect, &ch), 10);
	static const char *const want[] = {
	        "server: user authrelay -> other (needs a restart)",
	        "listener mx: max_connections 2000 -> 200",
	        "listener sub: removed",
	        "ldap corp: uri ldap://a -> ldap://b",
	        "ldap corp: base dc=x -> dc=y",
	        "ldap corp: filter (&(objectClass=person)(|(uid=%s)(mail=%s))) -> (uid=%u)",
	        "smtp-forward: added",
	        "queue: group_commit yes -> no",
	        "route old: removed",
	        "route new: added",
	};
	for (size_t i = 0; i < AR_NELEM(want); i++) {
		if (i >= ch.n || strcmp(ch.text[i], want[i]) != 0)
			fail_msg("change %zu: want '%s', got '%s'", i, want[i],
			         i < ch.n ? ch.text[i] : "nothing");
	}
	free_changes(&ch);
	assert_int_equal(settings_registry_diff(b, a, collect, &ch), 10);
	assert_string_equal(ch.text[ch.n - 2], "route new: removed");
	assert_string_equal(ch.text[ch.n - 1], "route old: added");
	free_changes(&ch);
	assert_int_equal(settings_registry_diff(a, a, collect, &ch), 0);
	settings_registry_free(a);
	settings_registry_free(b);
}

static void
test_registry_keep_restart(void **state)
{
	struct settings_set *a = load_set(GW "[server]\nspool_dir = /var/a\n"
	                                     "[protection]\nsend_limit_size = 100\n");
	struct settings_set *b = load_set(GW "max_connections = 9\n[server]\nspool_dir = /var/b\n"
	                                     "user = other\n[queue]\nresolver = 127.0.0.1:53\n"
	                                     "[protection]\nsend_limit_size = 200\n");
	struct changes ch = {0};

	assert_int_equal(settings_registry_diff(a, b, collect, &ch), 5);
	free_changes(&ch);
	/* user, auth_user, queue_user, spool_dir, chroot, pid_file, sandbox,
	 * core_dumps, resolver, send_limit_size, hook, [metrics] address,
	 * allow and timeout, [shared] redis, password_file, database,
	 * key_prefix, tls, tls_ca_file, tls_server_name, tls_cert_file,
	 * tls_key_file, secret_file, timeout, send_limits and lockouts: every
	 * restart-only key is copied. */
	assert_int_equal(settings_registry_keep_restart(a, b), 27);
	assert_string_equal(b->cfg->spool_dir, "/var/a");
	assert_string_equal(b->cfg->user, "authrelay");
	assert_null(b->qc->resolver);
	assert_int_equal(b->prot.send_limit_size, 100);
	/* Only what may change is left to change. */
	assert_int_equal(settings_registry_diff(a, b, collect, &ch), 1);
	assert_string_equal(ch.text[0], "listener mx: max_connections 2000 -> 9");
	free_changes(&ch);
	settings_registry_free(a);
	settings_registry_free(b);
}

/* A reload would fatal() on a restart-only key it cannot copy: none of the
 * registry's is of such a type. */
static void
test_registry_restart_keys_copyable(void **state)
{
	size_t n, off;
	const struct settings_section *const *all = settings_registry_sections(&n);

	for (size_t s = 0; s < n; s++) {
		for (size_t k = 0; k < settings_n_keys(all[s]); k++) {
			const struct settings_key *key = settings_key_at(all[s], k, &off);
			if ((key->flags & SETTINGS_RESTART) && key->type == SETTINGS_CUSTOM)
				fail_msg("[%s] %s: a restart-only key of a custom type",
				         all[s]->kind, key->name);
		}
	}
}

/* The master hands the text it validated; the file need not be readable
 * (nor exist) where it is loaded, and relative paths are the file's. */
static void
test_registry_load_text(void **state)
{
	static const char text[] = GW "[server]\npid_file = run/a.pid\n";
	char *errors = NULL;
	struct settings_set *set =
	        settings_registry_load_text("/nonexistent/etc/a.conf", text, strlen(text), &errors);

	if (set == NULL)
		fail_msg("%s", errors);
	assert_string_equal(set->cfg->pid_file, "/nonexistent/etc/run/a.pid");
	assert_string_equal(set->cfg->path, "/nonexistent/etc/a.conf");
	settings_registry_free(set);

	static const char bad[] = GW "[server]\nworkers = many\n";
	set = settings_registry_load_text("/nonexistent/etc/a.conf", bad, strlen(bad), &errors);
	assert_null(set);
	assert_non_null(strstr(errors, "/nonexistent/etc/a.conf:9: "));
	free(errors);

	set = settings_registry_load_text("/nonexistent/etc/a.conf", "", 0, &errors);
	assert_null(set);
	assert_non_null(strstr(errors, "nothing to listen on"));
	free(errors);
}

static void
test_registry_reference(void **state)
{
	char *out = NULL;
	size_t len = 0, n;
	FILE *f = open_memstream(&out, &len);
	const struct settings_section *const *all = settings_registry_sections(&n);

	settings_registry_reference(f, SETTINGS_REF_MARKDOWN);
	fclose(f);
	/* every section and every key of every table */
	for (size_t s = 0; s < n; s++) {
		char head[64];
		snprintf(head, sizeof(head), "### [%s%s]\n", all[s]->kind,
		         all[s]->named ? " NAME" : "");
		assert_non_null(strstr(out, head));
		for (size_t k = 0; k < all[s]->n_keys; k++) {
			char key[80];
			snprintf(key, sizeof(key), "| `%s` |", all[s]->keys[k].name);
			if (strstr(out, key) == NULL)
				fail_msg("[%s] %s missing", all[s]->kind, all[s]->keys[k].name);
			if (all[s]->keys[k].meaning == NULL)
				fail_msg("[%s] %s has no meaning", all[s]->kind,
				         all[s]->keys[k].name);
		}
	}
	assert_true(n >= 13);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_good_values),
	        cmocka_unit_test(test_bad_values),
	        cmocka_unit_test(test_hostport_reason),
	        cmocka_unit_test(test_optional_and_replace),
	        cmocka_unit_test(test_lists_and_continuations),
	        cmocka_unit_test(test_duplicates_and_continuations_of_one_value),
	        cmocka_unit_test(test_lines_across_sections),
	        cmocka_unit_test(test_warnings_and_sorting),
	        cmocka_unit_test(test_value_syntaxes),
	        cmocka_unit_test(test_checks),
	        cmocka_unit_test(test_print),
	        cmocka_unit_test(test_diff),
	        cmocka_unit_test(test_reference),
	        cmocka_unit_test(test_registry_show),
	        cmocka_unit_test(test_registry_diff),
	        cmocka_unit_test(test_keep_restart),
	        cmocka_unit_test(test_registry_keep_restart),
	        cmocka_unit_test(test_registry_restart_keys_copyable),
	        cmocka_unit_test(test_registry_load_text),
	        cmocka_unit_test(test_registry_reference),
	};

	settings_registry_install();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
