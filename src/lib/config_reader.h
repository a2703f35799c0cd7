/* SPDX-License-Identifier: ISC */
/*
 * config_reader.h - the syntax of authrelay.conf: lines into sections of
 * keys, each remembering its line, before anything gives them a meaning.
 *
 * "[kind]" or "[kind NAME]" starts a section; "key = value" (or
 * "key: value") sets a key; '#' or ';' starts a comment line, and " ;"
 * (after a blank) the rest of a line; an indented line continues the
 * previous key's value. Section kinds and key names ignore case. The reader
 * knows which section kinds exist (and which take a name), refuses unknown,
 * misnamed or duplicate sections and malformed lines, and reports each
 * problem as "file:line: message" without stopping.
 */
#ifndef AUTHRELAY_CONFIG_READER_H
#define AUTHRELAY_CONFIG_READER_H

#include <stddef.h>
#include <stdio.h>

struct config_section;
struct settings_ctx;
struct settings_section;

/* Read fp into sections (file order, malloc'd array in *sections_r). kinds
 * lists every section kind the file may hold. Problems go to ctx. Returns
 * 0, or -1 when fp could not be read to its end (reported, and the
 * sections read so far are of no use: they are freed). */
int config_reader_read(FILE *fp, const struct settings_section *const *kinds, size_t n_kinds,
                       struct settings_ctx *ctx, struct config_section **sections_r, size_t *n_r);
/* Free sections as config_reader_read() returned them. */
void config_reader_free(struct config_section *sections, size_t n);

#endif
