/* SPDX-License-Identifier: ISC */
/*
 * smtp_parse.h - parsing of SMTP command lines (RFC 5321 4.1), paths and
 * ESMTP parameters. Pure functions on one line of input: no I/O, no state.
 * Shared by the SMTP worker and (later) the SMTP client's reply reader.
 */
#ifndef AUTHRELAY_SMTP_PARSE_H
#define AUTHRELAY_SMTP_PARSE_H

#include <stddef.h>
#include "../lib/common.h"

enum smtp_verb {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
	SMTP_CMD_BDAT,
	SMTP_CMD_ETRN,
	SMTP_CMD_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *name; /* canonical upper-case verb, or "UNKNOWN" */
	const char *args; /* after the verb and spaces; "" if none; points into the line */
};

/* Split a command line (CRLF already removed, NUL-terminated, len bytes).
 * Verbs match case-insensitively; the verb must be followed by SP or the end.
 * PARSE_INVALID for a NUL inside the line or an empty line (reply 500 5.5.2).
 * An unknown verb is PARSE_OK with SMTP_CMD_UNKNOWN (reply 500 5.5.1). */
enum parse_result smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd_r);

/* A reverse-path or forward-path. */
struct smtp_path {
	bool null;          /* "<>" */
	bool postmaster;    /* "<Postmaster>" without domain (RCPT only) */
	bool source_route;  /* "<@a,@b:user@dom>": the route was dropped (RFC 5321 4.1.1.3) */
	bool quoted_local;  /* local part was a quoted-string */
	bool ip_literal;    /* domain is "[...]" */
	bool utf8;          /* non-ASCII bytes present (needs SMTPUTF8) */
	char local[65 * 4]; /* local part as written (quotes kept); 64 octets max (4.5.3.1.1) */
	char domain[256];   /* domain, lower-cased ASCII; "" for null/postmaster/bare */
	char addr[65 * 4 + 256 + 2]; /* "local@domain", or "local" if bare; "" for <> */
};

enum smtp_param_kind { SMTP_PARAMS_MAIL, SMTP_PARAMS_RCPT };

#define SMTP_MAX_PARAMS 16
struct smtp_param {
	char key[32];    /* upper-cased */
	char value[512]; /* raw value, "" if none */
	bool has_value;
};

struct smtp_mail_args {
	struct smtp_path path;
	struct smtp_param params[SMTP_MAX_PARAMS];
	size_t n_params;
};

/* Parse the argument of MAIL ("FROM:<path> [params]") or RCPT ("TO:<path>
 * [params]"). A space after the colon is tolerated (common client bug).
 * Returns 0, or -1 with *error_r set to a reply line such as
 * "501 5.1.7 Bad sender address syntax" / "501 5.1.3 Bad recipient address syntax"
 * / "501 5.5.4 Syntax error in parameters". Checks: angle brackets required,
 * local part <= 64 octets, domain <= 255, valid dot-atom or quoted-string,
 * domain syntax or address literal, no "user@domain@other". */
int smtp_parse_mail_args(const char *args, enum smtp_param_kind kind, struct smtp_mail_args *r,
                         const char **error_r);

/* Decode xtext (RFC 3461 4) such as the value of AUTH=. Returns 0 or -1. */
int smtp_xtext_decode(const char *in, char *out, size_t outsz);

/* The part of the local part a mail server could route on: true when it holds
 * '%', '!' or '@' (percent hack, bang path, quoted "user@other"), i.e. an
 * address that must not be accepted for a local domain from an untrusted
 * client (relay through the internal server). */
bool smtp_path_has_routing(const struct smtp_path *);

#endif
