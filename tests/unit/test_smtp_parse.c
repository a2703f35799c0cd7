/* SPDX-License-Identifier: ISC */
/*
 * test_smtp_parse.c - the SMTP command grammar: verb splitting, MAIL/RCPT
 * paths (RFC 5321 4.1.2) with every rejection and its reply line, ESMTP
 * parameters, xtext (RFC 3461 4) and the routing-character test the relay
 * policy depends on. Hostile inputs are in the tables next to valid ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "smtp/smtp_parse.h"

#define MAIL SMTP_PARAMS_MAIL
#define RCPT SMTP_PARAMS_RCPT

static const char err_mail_path[] = "501 5.1.7 Bad sender address syntax";
static const char err_rcpt_path[] = "501 5.1.3 Bad recipient address syntax";
static const char err_mail_syntax[] = "501 5.5.2 Syntax: MAIL FROM:<address>";
static const char err_rcpt_syntax[] = "501 5.5.2 Syntax: RCPT TO:<address>";
static const char err_params[] = "501 5.5.4 Syntax error in parameters";
static const char err_too_many[] = "501 5.5.4 Too many parameters";

/* ---- commands ---- */

static const struct {
	const char *line;
	enum smtp_verb verb;
	const char *name;
	const char *args;
} commands[] = {
        {"HELO client.example", SMTP_CMD_HELO, "HELO", "client.example"},
        {"EHLO client.example", SMTP_CMD_EHLO, "EHLO", "client.example"},
        {"ehlo client.example", SMTP_CMD_EHLO, "EHLO", "client.example"},
        {"eHlO   x", SMTP_CMD_EHLO, "EHLO", "x"},
        {"MAIL FROM:<a@b.example>", SMTP_CMD_MAIL, "MAIL", "FROM:<a@b.example>"},
        {"mail from:<>", SMTP_CMD_MAIL, "MAIL", "from:<>"},
        {"RCPT TO:<a@b.example>", SMTP_CMD_RCPT, "RCPT", "TO:<a@b.example>"},
        {"DATA", SMTP_CMD_DATA, "DATA", ""},
        {"data ", SMTP_CMD_DATA, "DATA", ""},
        {"RSET", SMTP_CMD_RSET, "RSET", ""},
        {"NOOP anything at all", SMTP_CMD_NOOP, "NOOP", "anything at all"},
        {"QUIT", SMTP_CMD_QUIT, "QUIT", ""},
        {"VRFY postmaster", SMTP_CMD_VRFY, "VRFY", "postmaster"},
        {"EXPN list", SMTP_CMD_EXPN, "EXPN", "list"},
        {"HELP", SMTP_CMD_HELP, "HELP", ""},
        {"STARTTLS", SMTP_CMD_STARTTLS, "STARTTLS", ""},
        {"starttls extra", SMTP_CMD_STARTTLS, "STARTTLS", "extra"},
        {"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", SMTP_CMD_AUTH, "AUTH", "PLAIN dGVzdAB0ZXN0AHRlc3Q="},
        {"BDAT 100 LAST", SMTP_CMD_BDAT, "BDAT", "100 LAST"},
        {"ETRN example.com", SMTP_CMD_ETRN, "ETRN", "example.com"},
        /* the verb ends at SP or the end of the line, nothing else */
        {"MAILFROM:<a@b>", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"MAIL:", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"NOOP\t", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"QUITX", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"QUI", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"STARTTL", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"GET / HTTP/1.1", SMTP_CMD_UNKNOWN, "UNKNOWN", "/ HTTP/1.1"},
        {" MAIL FROM:<a@b>", SMTP_CMD_UNKNOWN, "UNKNOWN", "MAIL FROM:<a@b>"},
        {"   ", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
        {"\xc3\x89HLO x", SMTP_CMD_UNKNOWN, "UNKNOWN", "x"},
        {"X", SMTP_CMD_UNKNOWN, "UNKNOWN", ""},
};

static void
test_commands(void **state)
{
	for (size_t i = 0; i < AR_NELEM(commands); i++) {
		struct smtp_cmd cmd;
		const char *line = commands[i].line;

		if (smtp_parse_command(line, strlen(line), &cmd) != PARSE_OK)
			fail_msg("\"%s\" not parsed", line);
		if (cmd.verb != commands[i].verb)
			fail_msg("\"%s\": verb %d", line, (int)cmd.verb);
		assert_string_equal(cmd.name, commands[i].name);
		assert_string_equal(cmd.args, commands[i].args);
		/* args point into the line */
		assert_true(cmd.args >= line && cmd.args <= line + strlen(line));
	}
}

static void
test_command_invalid(void **state)
{
	struct smtp_cmd cmd;

	assert_int_equal(smtp_parse_command("", 0, &cmd), PARSE_INVALID);
	assert_int_equal(cmd.verb, SMTP_CMD_UNKNOWN);
	assert_int_equal(smtp_parse_command(NULL, 0, &cmd), PARSE_INVALID);
	/* a NUL inside the line: "MAIL\0..." must not be read as MAIL */
	assert_int_equal(smtp_parse_command("MAIL\0FROM:<a@b>", 15, &cmd), PARSE_INVALID);
	assert_int_equal(smtp_parse_command("\0", 1, &cmd), PARSE_INVALID);
	assert_int_equal(smtp_parse_command("QUIT\0", 5, &cmd), PARSE_INVALID);
	assert_int_equal(cmd.verb, SMTP_CMD_UNKNOWN);
	assert_string_equal(cmd.args, "");
}

/* ---- MAIL / RCPT paths ---- */

enum {
	F_NULL = 1 << 0,
	F_PM = 1 << 1,
	F_ROUTE = 1 << 2,
	F_QUOTED = 1 << 3,
	F_LITERAL = 1 << 4,
	F_UTF8 = 1 << 5,
	F_ROUTING = 1 << 6, /* smtp_path_has_routing() */
};

struct path_case {
	enum smtp_param_kind kind;
	const char *args;
	const char *error; /* NULL: accepted */
	const char *local, *domain, *addr;
	unsigned flags;
};

#define L64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LBL63 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
/* 4 * 63 + 3 dots = 255 */
#define D255 LBL63 "." LBL63 "." LBL63 "." LBL63
#define D255_UP                                                                                    \
	"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB." LBL63 "." LBL63 "." LBL63

static const struct path_case paths[] = {
        /* the ordinary cases */
        {MAIL, "FROM:<alice@example.test>", NULL, "alice", "example.test", "alice@example.test", 0},
        {RCPT, "TO:<bob@example.test>", NULL, "bob", "example.test", "bob@example.test", 0},
        {MAIL, "from:<alice@example.test>", NULL, "alice", "example.test", "alice@example.test", 0},
        {RCPT, "tO:<bob@example.test>", NULL, "bob", "example.test", "bob@example.test", 0},
        /* the local part keeps its case, the domain is lower-cased */
        {RCPT, "TO:<Bob.Smith@Example.TEST>", NULL, "Bob.Smith", "example.test",
         "Bob.Smith@example.test", 0},
        /* a space after the colon is tolerated, several too */
        {MAIL, "FROM: <alice@example.test>", NULL, "alice", "example.test", "alice@example.test",
         0},
        {RCPT, "TO:   <bob@example.test>", NULL, "bob", "example.test", "bob@example.test", 0},
        {RCPT, "TO:<bob@example.test>   ", NULL, "bob", "example.test", "bob@example.test", 0},
        /* every atext character */
        {RCPT, "TO:<!#$%&'*+-/=?^_`{|}~@example.test>", NULL, "!#$%&'*+-/=?^_`{|}~", "example.test",
         "!#$%&'*+-/=?^_`{|}~@example.test", F_ROUTING},
        {RCPT, "TO:<a.b.c@x-y.example>", NULL, "a.b.c", "x-y.example", "a.b.c@x-y.example", 0},
        {RCPT, "TO:<a@b>", NULL, "a", "b", "a@b", 0},
        {RCPT, "TO:<a@x1.example>", NULL, "a", "x1.example", "a@x1.example", 0},
        {RCPT, "TO:<a@123.example>", NULL, "a", "123.example", "a@123.example", 0},
        {RCPT, "TO:<a@example.x1>", NULL, "a", "example.x1", "a@example.x1", 0},
        /* null reverse-path: MAIL only (RFC 5321 4.5.5) */
        {MAIL, "FROM:<>", NULL, "", "", "", F_NULL},
        {MAIL, "FROM: <>", NULL, "", "", "", F_NULL},
        {RCPT, "TO:<>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* <Postmaster>: RCPT only, any case, never quoted */
        {RCPT, "TO:<Postmaster>", NULL, "Postmaster", "", "Postmaster", F_PM},
        {RCPT, "TO:<postmaster>", NULL, "postmaster", "", "postmaster", F_PM},
        {RCPT, "TO:<POSTMASTER>", NULL, "POSTMASTER", "", "POSTMASTER", F_PM},
        {RCPT, "TO:<\"Postmaster\">", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<Postmaster@example.test>", NULL, "Postmaster", "example.test",
         "Postmaster@example.test", 0},
        {RCPT, "TO:<postmistress>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* a bare sender is left for the session to qualify (default_domain) */
        {MAIL, "FROM:<alice>", NULL, "alice", "", "alice", 0},
        {MAIL, "FROM:<Postmaster>", NULL, "Postmaster", "", "Postmaster", 0},
        /* quoted local parts (RFC 5321 4.1.2 Quoted-string) */
        {RCPT, "TO:<\"john doe\"@example.test>", NULL, "\"john doe\"", "example.test",
         "\"john doe\"@example.test", F_QUOTED},
        {RCPT, "TO:<\"user@other.test\"@example.test>", NULL, "\"user@other.test\"", "example.test",
         "\"user@other.test\"@example.test", F_QUOTED | F_ROUTING},
        {RCPT, "TO:<\"a\\\"b\"@example.test>", NULL, "\"a\\\"b\"", "example.test",
         "\"a\\\"b\"@example.test", F_QUOTED},
        {RCPT, "TO:<\"a\\\\b\"@example.test>", NULL, "\"a\\\\b\"", "example.test",
         "\"a\\\\b\"@example.test", F_QUOTED},
        {RCPT, "TO:<\"a>b\"@example.test>", NULL, "\"a>b\"", "example.test", "\"a>b\"@example.test",
         F_QUOTED},
        {RCPT, "TO:<\"\"@example.test>", NULL, "\"\"", "example.test", "\"\"@example.test",
         F_QUOTED},
        {RCPT, "TO:<\"a\\@b\"@example.test>", NULL, "\"a\\@b\"", "example.test",
         "\"a\\@b\"@example.test", F_QUOTED | F_ROUTING},
        {RCPT, "TO:<\"unterminated@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\"b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a\"b\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\tb\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\rb\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\\\tb\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\x7f\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"a\\", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"", err_rcpt_path, NULL, NULL, NULL, 0},
        /* percent hack and bang path are syntactically fine, but flagged */
        {RCPT, "TO:<user%other.test@example.test>", NULL, "user%other.test", "example.test",
         "user%other.test@example.test", F_ROUTING},
        {RCPT, "TO:<other.test!user@example.test>", NULL, "other.test!user", "example.test",
         "other.test!user@example.test", F_ROUTING},
        /* source routes are checked, dropped and flagged (RFC 5321 4.1.1.3, C) */
        {RCPT, "TO:<@example.test:user@other.test>", NULL, "user", "other.test", "user@other.test",
         F_ROUTE},
        {RCPT, "TO:<@a.example,@b.example:user@other.test>", NULL, "user", "other.test",
         "user@other.test", F_ROUTE},
        {MAIL, "FROM:<@a.example:alice@example.test>", NULL, "alice", "example.test",
         "alice@example.test", F_ROUTE},
        {RCPT, "TO:<@example.test:user>", err_rcpt_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<@example.test:alice>", err_mail_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@example.test:Postmaster>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@example.test:>", err_rcpt_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<@example.test:>", err_mail_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@example.test user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@example.test,user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@:user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@a,:user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@[192.0.2.1]:user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@-a:user@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* address literals (RFC 5321 4.1.3) */
        {RCPT, "TO:<user@[192.0.2.1]>", NULL, "user", "[192.0.2.1]", "user@[192.0.2.1]", F_LITERAL},
        {RCPT, "TO:<user@[IPv6:2001:db8::1]>", NULL, "user", "[ipv6:2001:db8::1]",
         "user@[ipv6:2001:db8::1]", F_LITERAL},
        {RCPT, "TO:<user@[ipv6:2001:DB8::1]>", NULL, "user", "[ipv6:2001:db8::1]",
         "user@[ipv6:2001:db8::1]", F_LITERAL},
        {RCPT, "TO:<user@[IPv6:::ffff:192.0.2.1]>", NULL, "user", "[ipv6:::ffff:192.0.2.1]",
         "user@[ipv6:::ffff:192.0.2.1]", F_LITERAL},
        {RCPT, "TO:<user@[2001:db8::1]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[IPv6:192.0.2.1]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.256]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.01]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[0x7f.0.0.1]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[2130706433]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[ 192.0.2.1]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.1>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.1]x>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.1].example>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[IPv6:fe80::1%eth0]>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[x-tag:whatever]>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* a dotted quad without brackets is not a host name (RFC 1123 2.1) */
        {RCPT, "TO:<user@192.0.2.1>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@127>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* UTF-8 (RFC 6531 3.3) */
        {RCPT, "TO:<j\xc3\xb6rg@example.test>", NULL, "j\xc3\xb6rg", "example.test",
         "j\xc3\xb6rg@example.test", F_UTF8},
        {RCPT,
         "TO:<user@b\xc3\xbc"
         "cher.example>",
         NULL, "user",
         "b\xc3\xbc"
         "cher.example",
         "user@b\xc3\xbc"
         "cher.example",
         F_UTF8},
        {RCPT, "TO:<\"j\xc3\xb6rg m\"@example.test>", NULL, "\"j\xc3\xb6rg m\"", "example.test",
         "\"j\xc3\xb6rg m\"@example.test", F_UTF8 | F_QUOTED},
        {RCPT, "TO:<\xe2\x82\xac@example.test>", NULL, "\xe2\x82\xac", "example.test",
         "\xe2\x82\xac@example.test", F_UTF8},
        {RCPT, "TO:<\xf0\x9f\x93\xa7@example.test>", NULL, "\xf0\x9f\x93\xa7", "example.test",
         "\xf0\x9f\x93\xa7@example.test", F_UTF8},
        /* ... but only well-formed UTF-8 */
        {RCPT, "TO:<j\xf6rg@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT,
         "TO:<user@b\xfc"
         "cher.example>",
         err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xc0\xaf@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xe0\x80\xaf@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xed\xa0\x80@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xf4\x90\x80\x80@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xf8\x88\x80\x80\x80@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\xc3@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a\xe2\x82@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"\xff\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* length limits: local 64, domain 255, label 63 (RFC 5321 4.5.3.1) */
        {RCPT, "TO:<" L64 "@example.test>", NULL, L64, "example.test", L64 "@example.test", 0},
        {RCPT, "TO:<" L64 "a@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<\"" L64 "\"@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@" D255 ">", NULL, "a", D255, "a@" D255, 0},
        {RCPT, "TO:<a@" D255_UP ">", NULL, "a", D255, "a@" D255, 0},
        {RCPT, "TO:<a@" D255 "b>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@b" D255 ">", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@" LBL63 ".example>", NULL, "a", LBL63 ".example", "a@" LBL63 ".example", 0},
        {RCPT, "TO:<a@b" LBL63 ".example>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* dot-atom rules */
        {RCPT, "TO:<.a@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a.@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a..b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a,b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a(b)@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a:b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a;b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a<b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a[b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a\\b@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a\x01@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* domain rules */
        {RCPT, "TO:<a@>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@.example>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@example.>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@example..test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@-example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@example-.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@exa_mple.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@exa mple.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@example.test.>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<a@example.test\r>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* one mailbox only: "user@domain@other" is refused */
        {RCPT, "TO:<user@example.test@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<user@example.test@other.test>", err_mail_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@[192.0.2.1]@other.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<user@@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        /* angle brackets, and what may follow them */
        {RCPT, "TO:bob@example.test", err_rcpt_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:alice@example.test", err_mail_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:bob@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<<bob@example.test>>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test>>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test>x", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test><eve@evil.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test>,<eve@evil.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:\"Bob\" <bob@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:< bob@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:<bob@example.test >", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:\t<bob@example.test>", err_rcpt_path, NULL, NULL, NULL, 0},
        {RCPT, "TO:", err_rcpt_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:", err_mail_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<", err_mail_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<>x", err_mail_path, NULL, NULL, NULL, 0},
        {MAIL, "FROM:<<>>", err_mail_path, NULL, NULL, NULL, 0},
        /* missing or misspelled FROM: / TO: */
        {MAIL, "", err_mail_syntax, NULL, NULL, NULL, 0},
        {RCPT, "", err_rcpt_syntax, NULL, NULL, NULL, 0},
        {MAIL, "<alice@example.test>", err_mail_syntax, NULL, NULL, NULL, 0},
        {MAIL, "FROM <alice@example.test>", err_mail_syntax, NULL, NULL, NULL, 0},
        {MAIL, "FROM :<alice@example.test>", err_mail_syntax, NULL, NULL, NULL, 0},
        {MAIL, "FRM:<alice@example.test>", err_mail_syntax, NULL, NULL, NULL, 0},
        {MAIL, "TO:<alice@example.test>", err_mail_syntax, NULL, NULL, NULL, 0},
        {RCPT, "FROM:<bob@example.test>", err_rcpt_syntax, NULL, NULL, NULL, 0},
        {RCPT, "T:<bob@example.test>", err_rcpt_syntax, NULL, NULL, NULL, 0},
        {RCPT, "TO", err_rcpt_syntax, NULL, NULL, NULL, 0},
};

static unsigned
path_flags(const struct smtp_path *p)
{
	return (p->null ? F_NULL : 0) | (p->postmaster ? F_PM : 0) |
	       (p->source_route ? F_ROUTE : 0) | (p->quoted_local ? F_QUOTED : 0) |
	       (p->ip_literal ? F_LITERAL : 0) | (p->utf8 ? F_UTF8 : 0) |
	       (smtp_path_has_routing(p) ? F_ROUTING : 0);
}

static void
test_paths(void **state)
{
	for (size_t i = 0; i < AR_NELEM(paths); i++) {
		const struct path_case *c = &paths[i];
		struct smtp_mail_args r;
		const char *error = "unset";
		int rc;

		memset(&r, 0xa5, sizeof(r));
		rc = smtp_parse_mail_args(c->args, c->kind, &r, &error);
		if (c->error != NULL) {
			if (rc != -1)
				fail_msg("#%zu \"%s\": accepted as \"%s\"", i, c->args,
				         r.path.addr);
			if (error == NULL || strcmp(error, c->error) != 0)
				fail_msg("#%zu \"%s\": error \"%s\"", i, c->args,
				         error ? error : "(null)");
			continue;
		}
		if (rc != 0)
			fail_msg("#%zu \"%s\": refused: %s", i, c->args, error ? error : "(null)");
		assert_null(error);
		assert_string_equal(r.path.local, c->local);
		assert_string_equal(r.path.domain, c->domain);
		assert_string_equal(r.path.addr, c->addr);
		if (path_flags(&r.path) != c->flags)
			fail_msg("#%zu \"%s\": flags %#x, want %#x", i, c->args,
			         path_flags(&r.path), c->flags);
		assert_int_equal(r.n_params, 0);
	}
}

/* ---- ESMTP parameters ---- */

static void
test_params(void **state)
{
	struct smtp_mail_args r;
	const char *error;

	assert_int_equal(smtp_parse_mail_args("FROM:<a@example.test> SIZE=1000 body=8BITMIME "
	                                      "smtputf8 AUTH=<> ret=HDRS envid=QQ+2Bx",
	                                      MAIL, &r, &error),
	                 0);
	assert_int_equal(r.n_params, 6);
	assert_string_equal(r.params[0].key, "SIZE");
	assert_string_equal(r.params[0].value, "1000");
	assert_true(r.params[0].has_value);
	assert_string_equal(r.params[1].key, "BODY");
	assert_string_equal(r.params[1].value, "8BITMIME");
	assert_string_equal(r.params[2].key, "SMTPUTF8");
	assert_string_equal(r.params[2].value, "");
	assert_false(r.params[2].has_value);
	assert_string_equal(r.params[3].key, "AUTH");
	assert_string_equal(r.params[3].value, "<>");
	assert_string_equal(r.params[4].key, "RET");
	assert_string_equal(r.params[4].value, "HDRS");
	assert_string_equal(r.params[5].key, "ENVID");
	assert_string_equal(r.params[5].value, "QQ+2Bx");

	/* several spaces and trailing spaces */
	assert_int_equal(smtp_parse_mail_args("TO:<b@example.test>   NOTIFY=NEVER   "
	                                      "ORCPT=rfc822;b@example.test  ",
	                                      RCPT, &r, &error),
	                 0);
	assert_int_equal(r.n_params, 2);
	assert_string_equal(r.params[0].key, "NOTIFY");
	assert_string_equal(r.params[1].key, "ORCPT");
	assert_string_equal(r.params[1].value, "rfc822;b@example.test");

	/* keyword with digits and hyphen; the null path with params */
	assert_int_equal(smtp_parse_mail_args("FROM:<> X-Foo-1=bar 8BIT", MAIL, &r, &error), 0);
	assert_true(r.path.null);
	assert_int_equal(r.n_params, 2);
	assert_string_equal(r.params[0].key, "X-FOO-1");
	assert_string_equal(r.params[1].key, "8BIT");

	/* UTF-8 values (RFC 6531 3.3) */
	assert_int_equal(smtp_parse_mail_args("FROM:<a@example.test> X=\xc3\xa9", MAIL, &r, &error),
	                 0);
	assert_string_equal(r.params[0].value, "\xc3\xa9");

	/* exactly SMTP_MAX_PARAMS, then one more */
	char line[1024] = "FROM:<a@example.test>";
	for (int i = 0; i < SMTP_MAX_PARAMS; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " P%d=%d", i, i);
	assert_int_equal(smtp_parse_mail_args(line, MAIL, &r, &error), 0);
	assert_int_equal(r.n_params, SMTP_MAX_PARAMS);
	assert_string_equal(r.params[SMTP_MAX_PARAMS - 1].key, "P15");
	strcat(line, " ONEMORE");
	assert_int_equal(smtp_parse_mail_args(line, MAIL, &r, &error), -1);
	assert_string_equal(error, err_too_many);
}

static void
test_params_invalid(void **state)
{
	static const char *const bad[] = {
	        "FROM:<a@example.test> =x",
	        "FROM:<a@example.test> -X=1",
	        "FROM:<a@example.test> X=",
	        "FROM:<a@example.test> X==1",
	        "FROM:<a@example.test> X=a=b",
	        "FROM:<a@example.test> X_Y=1",
	        "FROM:<a@example.test> X.Y",
	        "FROM:<a@example.test> X:1",
	        "FROM:<a@example.test> X=1\tY=2",
	        "FROM:<a@example.test> X=\x01",
	        "FROM:<a@example.test> X=a\x7f",
	        "FROM:<a@example.test> X=\xc3",
	        "FROM:<a@example.test> X=\xff\xfe",
	        "FROM:<a@example.test> \xc3\xa9=1",
	        "FROM:<a@example.test> SIZE =1",
	        "FROM:<a@example.test> SIZE= 1",
	        "FROM:<a@example.test> <b@example.test>",
	        "FROM:<a@example.test> \"X\"",
	        /* key of 32 characters does not fit key[32] */
	        "FROM:<a@example.test> ABCDEFGHIJKLMNOPQRSTUVWXYZ012345=1",
	};

	for (size_t i = 0; i < AR_NELEM(bad); i++) {
		struct smtp_mail_args r;
		const char *error = NULL;

		if (smtp_parse_mail_args(bad[i], MAIL, &r, &error) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		if (error == NULL || strcmp(error, err_params) != 0)
			fail_msg("\"%s\": error \"%s\"", bad[i], error ? error : "(null)");
	}
}

static void
test_params_lengths(void **state)
{
	struct smtp_mail_args r;
	const char *error;
	char line[2048], key[40], value[600];

	/* 31-character key fits, 511-character value fits */
	memset(key, 'K', 31);
	key[31] = '\0';
	memset(value, 'v', 511);
	value[511] = '\0';
	snprintf(line, sizeof(line), "TO:<b@example.test> %s=%s", key, value);
	assert_int_equal(smtp_parse_mail_args(line, RCPT, &r, &error), 0);
	assert_int_equal(strlen(r.params[0].key), 31);
	assert_int_equal(strlen(r.params[0].value), 511);

	memset(value, 'v', 512);
	value[512] = '\0';
	snprintf(line, sizeof(line), "TO:<b@example.test> %s=%s", key, value);
	assert_int_equal(smtp_parse_mail_args(line, RCPT, &r, &error), -1);
	assert_string_equal(error, err_params);
}

/* ---- xtext ---- */

static const struct {
	const char *in;
	const char *out; /* NULL: rejected */
} xtexts[] = {
        {"", ""},
        {"alice@example.test", "alice@example.test"},
        {"<>", "<>"},
        {"a+2Bb", "a+b"},
        {"a+3Db", "a=b"},
        {"+20", " "},
        {"+2b", "+"}, /* lower case read too */
        {"+C3+A9", "\xc3\xa9"},
        {"!~", "!~"},
        {"+", NULL},
        {"+2", NULL},
        {"+G0", NULL},
        {"+0G", NULL},
        {"+00", NULL},
        {"a=b", NULL},
        {"a b", NULL},
        {"a\tb", NULL},
        {"a\x7f", NULL},
        {"\xc3\xa9", NULL},
        {"+ 2B", NULL},
        {"++2B", NULL},
};

static void
test_xtext(void **state)
{
	for (size_t i = 0; i < AR_NELEM(xtexts); i++) {
		char out[64];
		int rc = smtp_xtext_decode(xtexts[i].in, out, sizeof(out));

		if (xtexts[i].out == NULL) {
			if (rc != -1)
				fail_msg("xtext \"%s\" accepted", xtexts[i].in);
			assert_string_equal(out, "");
		} else {
			if (rc != 0)
				fail_msg("xtext \"%s\" refused", xtexts[i].in);
			assert_string_equal(out, xtexts[i].out);
		}
	}
}

static void
test_xtext_limits(void **state)
{
	char out[4];

	assert_int_equal(smtp_xtext_decode("abc", out, 4), 0);
	assert_string_equal(out, "abc");
	assert_int_equal(smtp_xtext_decode("abcd", out, 4), -1);
	assert_int_equal(smtp_xtext_decode("ab+2B", out, 4), 0);
	assert_string_equal(out, "ab+");
	assert_int_equal(smtp_xtext_decode("ab+2B+2B", out, 4), -1);
	assert_int_equal(smtp_xtext_decode("", out, 1), 0);
	assert_int_equal(smtp_xtext_decode("a", out, 1), -1);
	assert_int_equal(smtp_xtext_decode("", out, 0), -1);
}

/* ---- routing characters ---- */

static void
test_has_routing(void **state)
{
	static const struct {
		const char *local;
		bool routing;
	} cases[] = {
	        {"user", false},
	        {"user.name", false},
	        {"user+tag", false},
	        {"user%other", true},
	        {"other!user", true},
	        {"\"user@other\"", true},
	        {"\"a\\@b\"", true},
	        {"%", true},
	        {"!", true},
	        {"", false},
	        {"\"john doe\"", false},
	        {"Postmaster", false},
	};

	for (size_t i = 0; i < AR_NELEM(cases); i++) {
		struct smtp_path p;

		memset(&p, 0, sizeof(p));
		snprintf(p.local, sizeof(p.local), "%s", cases[i].local);
		assert_int_equal(smtp_path_has_routing(&p), cases[i].routing);
	}
}

/* The parse of a full command line, as the session does it. */
static void
test_command_then_args(void **state)
{
	const char line[] = "mail FROM:<Alice@Example.TEST> size=12 auth=alice+40example.test";
	struct smtp_cmd cmd;
	struct smtp_mail_args r;
	const char *error;
	char auth[128];

	assert_int_equal(smtp_parse_command(line, strlen(line), &cmd), PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_CMD_MAIL);
	assert_int_equal(smtp_parse_mail_args(cmd.args, MAIL, &r, &error), 0);
	assert_string_equal(r.path.addr, "Alice@example.test");
	assert_int_equal(r.n_params, 2);
	assert_string_equal(r.params[1].key, "AUTH");
	assert_int_equal(smtp_xtext_decode(r.params[1].value, auth, sizeof(auth)), 0);
	assert_string_equal(auth, "alice@example.test");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_commands),       cmocka_unit_test(test_command_invalid),
	        cmocka_unit_test(test_paths),          cmocka_unit_test(test_params),
	        cmocka_unit_test(test_params_invalid), cmocka_unit_test(test_params_lengths),
	        cmocka_unit_test(test_xtext),          cmocka_unit_test(test_xtext_limits),
	        cmocka_unit_test(test_has_routing),    cmocka_unit_test(test_command_then_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
