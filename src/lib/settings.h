/* SPDX-License-Identifier: ISC */
/*
 * settings.h - the one table-driven parser behind every section of
 * authrelay.conf.
 *
 * A module describes its section in a table (struct settings_section): for
 * each key its name, type, where it goes in the module's own record, its
 * default (as text, parsed like a written value), its range, flags and a
 * one-line meaning. From that one table this module
 *
 *   - fills the record from a section as read from the file (struct
 *     config_section), reporting each problem as "file:line: message";
 *   - prints a record's effective values (show-config, -n: only what
 *     differs from the default);
 *   - compares two records key by key (what a reload changed);
 *   - writes the key reference as mdoc (authrelay.conf(5)) or markdown.
 *
 * One syntax per type: booleans yes/no, true/false, on/off, 1/0; sizes in
 * bytes with k, M or G (powers of 1024); durations 300, 300s, 5m, 2h, 1d, 1w
 * (plain numbers are seconds, or milliseconds for a key in ms), "off" for 0
 * where the key allows it. Lists are separated by commas or blanks and may
 * continue on indented lines.
 *
 * Records are plain structs owned by their module (struct config,
 * struct queue_config, ...); this module only writes the fields a table
 * names and frees what it allocated there (settings_free()).
 */
#ifndef AUTHRELAY_SETTINGS_H
#define AUTHRELAY_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common.h"

struct config;
struct config_section;
struct settings_ctx;
struct settings_key;

enum settings_type {
	SETTINGS_STRING,      /* char *: text; .check may refuse or normalise it */
	SETTINGS_PATH,        /* char *: relative to the config file's directory, stored absolute */
	SETTINGS_BOOL,        /* bool */
	SETTINGS_UINT,        /* unsigned or uint64_t (by .size): decimal digits, .min...max */
	SETTINGS_SIZE,        /* uint64_t (or unsigned): bytes, optional k, M or G */
	SETTINGS_DURATION,    /* unsigned: seconds */
	SETTINGS_DURATION_MS, /* unsigned: milliseconds (a plain number is ms) */
	SETTINGS_ENUM,        /* int-sized enum or bool (by .size): one of .names */
	SETTINGS_KEYWORD,     /* char *: one of .names, stored as the table spells it */
	SETTINGS_LIST,        /* char **: NULL-terminated; .check runs on each item */
	SETTINGS_CIDRS,       /* struct cidr * with a size_t count (SETTINGS_COUNTED) */
	SETTINGS_HOSTPORT,    /* char *: numeric address:port, checked by net_parse_hostport() */
	SETTINGS_CUSTOM,      /* .parse, .format and .free hooks */
};

/* Key flags. */
enum {
	/* An empty value means "not set" (the field stays NULL), not an error. */
	SETTINGS_OPTIONAL = 1 << 0,
	/* A duration that takes "off" for 0. */
	SETTINGS_OFF = 1 << 1,
	/* Can never change without a restart (the reload names it in a
	 * warning and keeps the running value). Only the master pins it
	 * (settings_registry_keep_restart()): a process that reloads in place
	 * from the text reads such a key at its start only. */
	SETTINGS_RESTART = 1 << 2,
	/* A [limits] key that a listener may set for itself. */
	SETTINGS_PER_LISTENER = 1 << 3,
	/* A list whose item count (size_t) sits at .count_offset. */
	SETTINGS_COUNTED = 1 << 4,
};

/* One name of an enumeration; aliases are accepted but never printed. */
struct settings_name {
	const char *name;
	int value;
	bool alias;
};

/* Check (and possibly normalise in place, never longer) one string value or
 * list item. Returns NULL when good, else the reason shown after
 * "key = value: ". */
typedef const char *settings_check_cb(char *value);
/* SETTINGS_CUSTOM: parse value into rec (the section's record). Report
 * problems with settings_key_error() and return -1; 0 when set. */
typedef int settings_parse_cb(struct settings_ctx *, const struct settings_key *, void *rec,
                              const char *value);
/* SETTINGS_CUSTOM: write the value as it would be written in the file;
 * nothing when it is not set. */
typedef void settings_format_cb(const struct settings_key *, const void *rec, FILE *out);
/* SETTINGS_CUSTOM: free what parse allocated in rec (may be NULL). */
typedef void settings_free_cb(const struct settings_key *, void *rec);

struct settings_key {
	const char *name;
	enum settings_type type;
	size_t offset; /* of the field in the section's record */
	size_t size;   /* of the field */
	size_t count_offset;
	unsigned flags;
	/* The default, written as in the file and parsed the same way. NULL:
	 * not set, or worked out from other keys (def_doc then says how). */
	const char *def;
	const char *def_doc;
	/* Numbers, sizes, durations (in the key's unit); max 0 = the field's
	 * largest value. why: the reason for the minimum (or for the names),
	 * shown in the error. */
	uint64_t min, max;
	const char *why;
	/* Values below warn_below load with a warning giving warn_why. */
	uint64_t warn_below;
	const char *warn_why;
	const struct settings_name *names; /* ENUM, KEYWORD: ends with {0} */
	settings_check_cb *check;          /* STRING, LIST */
	settings_parse_cb *parse;          /* CUSTOM */
	settings_format_cb *format;        /* CUSTOM */
	settings_free_cb *free;            /* CUSTOM, optional */
	const char *type_doc; /* the type in the reference, when the default will not do */
	const char *meaning;  /* one line, for the reference */
};

/* Where a key goes: the field's offset and size in struct type. */
#define SETTINGS_FIELD(type, f) .offset = offsetof(type, f), .size = sizeof(((type *)0)->f)

struct settings_section {
	const char *kind; /* "queue": the name between the brackets */
	bool named;       /* [kind NAME] */
	/* A section without a name may appear several times, its keys adding
	 * up ([limits]), unless once is set ([smtp-forward]: one set of
	 * upstreams). A named one appears once per name. */
	bool once;
	const char *meaning; /* one line, for the reference */
	const struct settings_key *keys;
	size_t n_keys;
	/* Keys of another section this one may also set (with
	 * SETTINGS_PER_LISTENER), held in a record at inherit_offset inside
	 * this one's: a listener's own struct limits_cfg. */
	const struct settings_section *inherits;
	size_t inherit_offset;
};

/* ---- messages: "file:line: message", collected and sorted ---- */

/* A parse context: where messages go and where relative paths start.
 * shown_path is the file's name in messages; dir (absolute) is the base of
 * relative paths, NULL for shown_path's own directory. */
struct settings_ctx *settings_ctx_new(const char *shown_path, const char *dir);
void settings_ctx_free(struct settings_ctx *);
/* Every section kind of the file, so that "unknown key" can say where the
 * key belongs. Not copied: it must outlive the context. */
void settings_ctx_set_sections(struct settings_ctx *, const struct settings_section *const *all,
                               size_t n);
/* The line the parser is at (for custom hooks' own messages). */
int settings_ctx_line(const struct settings_ctx *);
/* Number of errors so far (warnings do not count). */
size_t settings_ctx_errors(const struct settings_ctx *);
/* Every message so far sorted by line (then in the order found), each as
 * "file:line: message\n" or "file:line: warning: message\n"; NULL when
 * there is none. The caller frees it. */
char *settings_ctx_report(const struct settings_ctx *);

void settings_error(struct settings_ctx *, int line, const char *fmt, ...) AR_PRINTF(3, 4);
void settings_warning(struct settings_ctx *, int line, const char *fmt, ...) AR_PRINTF(3, 4);
/* "key = value: reason" at the line being parsed. */
void settings_key_error(struct settings_ctx *, const struct settings_key *, const char *value,
                        const char *fmt, ...) AR_PRINTF(4, 5);

/* ---- parsing ---- */

/* Number of keys of def, its inherited ones included: the size of the
 * lines array settings_parse() fills. */
size_t settings_n_keys(const struct settings_section *def);
/* Key number i of def (inherited keys follow its own); *offset_r gets the
 * offset of the record that holds it inside def's record. */
const struct settings_key *settings_key_at(const struct settings_section *def, size_t i,
                                           size_t *offset_r);
/* The number of the key called name in def (any case), or -1. */
int settings_key_index(const struct settings_section *def, const char *name);

/* Set every key of def (inherited ones too) in rec to its default. */
void settings_defaults(const struct settings_section *def, void *rec);
/* Parse the keys of sec (a section of kind def->kind as read from the file)
 * into rec. lines has settings_n_keys(def) entries, zero before the first
 * section of a kind: it gets the line where each key was set (negative when
 * the value was refused) and catches a key set twice, also across two
 * sections of one kind. Problems go to ctx. */
void settings_parse(struct settings_ctx *, const struct settings_section *def,
                    const struct config_section *sec, void *rec, int *lines);
/* Parse every section of def's kind in cfg into rec (unnamed kinds):
 * defaults first, then each section in file order. */
void settings_parse_all(struct settings_ctx *, const struct settings_section *def,
                        const struct config *cfg, void *rec, int *lines);
/* Free what parsing allocated in rec (strings, lists), not rec itself. */
void settings_free(const struct settings_section *def, void *rec);

/* A reload keeps what cannot change without a restart: copy the value of
 * every SETTINGS_RESTART key of def (inherited ones too) from old_rec into
 * new_rec, freeing what new_rec held there. Returns how many were copied;
 * a key of a type that cannot be copied (SETTINGS_CUSTOM) is skipped and
 * named in *failed_r (if not NULL; else NULL). */
size_t settings_keep_restart(const struct settings_section *def, void *new_rec, const void *old_rec,
                             const char **failed_r);

/* The value syntaxes, for hooks and tests. Each returns 0, or -1 when text
 * is malformed or does not fit in 64 bits. */
int settings_parse_uint(const char *text, uint64_t *r);
int settings_parse_size(const char *text, uint64_t *r);
int settings_parse_bool(const char *text, bool *r);
/* Seconds, or milliseconds when ms; "off" is not handled here. */
int settings_parse_duration(const char *text, bool ms, uint64_t *r);

/* Checks for SETTINGS_STRING and SETTINGS_LIST (settings_check_cb). */
const char *settings_check_host_name(char *value);   /* LDH host name, as written */
const char *settings_check_domain_name(char *value); /* the same, "not a domain name" */
/* A domain in lower case, without a trailing dot; a leading dot (".example
 * .test": every subdomain of) is kept. */
const char *settings_check_domain_pattern(char *value);
const char *settings_check_printable(char *value); /* printable ASCII (SMTP replies) */

/* ---- output ---- */

/* The value of key in rec (the record of the key's own section) as written
 * in the file; NULL when it is not set. The caller frees it. */
char *settings_format(const struct settings_key *, const void *rec);
void settings_format_duration(uint64_t v, bool ms, char *buf, size_t size);

/* Print "[kind name]" and one "key = value" line per key of def in rec
 * (inherited keys too); a key not set as "# key = (not set)". With base
 * (a record of defaults), only keys whose value differs from base's, and
 * for keys whose default is worked out (def NULL, def_doc set) only those
 * marked in written (one bool per key, may be NULL). Prints nothing, not
 * even the header, when no key qualifies. Returns the number of keys
 * printed. */
size_t settings_print(FILE *out, const struct settings_section *def, const char *name,
                      const void *rec, const void *base, const bool *written);
/* Mark in written (settings_n_keys(def) entries) the keys the file sets in
 * the sections of def's kind (of that name, for named kinds). */
void settings_written(const struct settings_section *def, const struct config *cfg,
                      const char *name, bool *written);

/* A difference between two records (or a section added or removed). */
struct settings_change {
	const char *section;   /* "listener sub", "queue" */
	const char *key;       /* NULL: the whole section was added or removed */
	const char *old_value; /* "(not set)" when unset; NULL: the section is new */
	const char *new_value; /* NULL: the section is gone */
	bool restart;          /* the key has SETTINGS_RESTART */
};
typedef void settings_change_cb(void *arg, const struct settings_change *);
/* Call cb for each key whose value differs between old_rec and new_rec
 * (records of def; label names the section in the change). Returns the
 * number of changes. */
size_t settings_diff(const struct settings_section *def, const char *label, const void *old_rec,
                     const void *new_rec, settings_change_cb *cb, void *arg);
/* "listener sub: max_connections 100 -> 200", "... (needs a restart)",
 * "route new: added", "route old: removed". The caller frees it. */
char *settings_change_text(const struct settings_change *);

enum settings_ref_format { SETTINGS_REF_MDOC, SETTINGS_REF_MARKDOWN };
/* The key reference of sections in order: section, key, type, default,
 * range, meaning. mdoc is a fragment for authrelay.conf(5) (one .Ss per
 * section, a tagged list of keys), markdown a heading and a table per
 * section. */
void settings_reference(FILE *out, enum settings_ref_format, const struct settings_section *const *,
                        size_t n);

#endif
