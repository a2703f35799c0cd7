/* SPDX-License-Identifier: ISC */
/*
 * fuzz_smtp_parse.c - libFuzzer target for the SMTP command grammar: the
 * input is one command line (CRLF removed) fed to smtp_parse_command(), its
 * argument and the raw line to smtp_parse_mail_args() as MAIL and as RCPT,
 * each parameter value and the line itself to smtp_xtext_decode().
 *
 * Besides the sanitizers, it checks what callers rely on: reply lines are
 * 501s, limits hold, and an accepted path printed as "<addr>" parses again
 * to the same address (nothing is lost or invented between parse and use).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static void
fuzz_xtext(const char *in)
{
	char out[600];
	size_t sizes[] = {sizeof(out), 1, 2, 5};

	for (size_t i = 0; i < AR_NELEM(sizes); i++) {
		if (smtp_xtext_decode(in, out, sizes[i]) == 0) {
			CHECK(strlen(out) < sizes[i]);
			CHECK(strlen(out) <= strlen(in));
		} else {
			CHECK(out[0] == '\0');
		}
	}
}

static void
fuzz_mail_args(const char *args, enum smtp_param_kind kind)
{
	struct smtp_mail_args r, again;
	const char *error = NULL;
	const struct smtp_path *p = &r.path;
	char line[sizeof(r.path.addr) + 8];

	if (smtp_parse_mail_args(args, kind, &r, &error) != 0) {
		CHECK(error != NULL && strncmp(error, "501 5.", 6) == 0);
		return;
	}
	CHECK(error == NULL);
	CHECK(strlen(p->local) <= 64);
	CHECK(strlen(p->domain) <= 255);
	CHECK(r.n_params <= SMTP_MAX_PARAMS);
	CHECK(!(p->null && kind == SMTP_PARAMS_RCPT));
	CHECK(!(p->postmaster && kind == SMTP_PARAMS_MAIL));
	CHECK(p->domain[0] != '\0' || p->null || p->postmaster || kind == SMTP_PARAMS_MAIL);
	for (const char *d = p->domain; *d != '\0'; d++)
		CHECK(!(*d >= 'A' && *d <= 'Z'));
	if (p->ip_literal)
		CHECK(p->domain[0] == '[');
	/* the policy never sees '@' outside the domain unless it is quoted */
	if (!p->quoted_local)
		CHECK(strchr(p->local, '@') == NULL);
	(void)smtp_path_has_routing(p);

	for (size_t i = 0; i < r.n_params; i++) {
		CHECK(r.params[i].key[0] != '\0');
		CHECK(r.params[i].has_value == (r.params[i].value[0] != '\0'));
		for (const char *k = r.params[i].key; *k != '\0'; k++)
			CHECK(!(*k >= 'a' && *k <= 'z'));
		fuzz_xtext(r.params[i].value);
	}

	if (p->null)
		return;
	strcpy(line, kind == SMTP_PARAMS_MAIL ? "FROM:<" : "TO:<");
	strcat(line, p->addr);
	strcat(line, ">");
	CHECK(smtp_parse_mail_args(line, kind, &again, &error) == 0);
	CHECK(strcmp(again.path.addr, p->addr) == 0);
	CHECK(strcmp(again.path.local, p->local) == 0);
	CHECK(strcmp(again.path.domain, p->domain) == 0);
	CHECK(again.path.postmaster == p->postmaster);
	CHECK(again.path.ip_literal == p->ip_literal);
	CHECK(again.path.quoted_local == p->quoted_local);
	CHECK(again.path.utf8 == p->utf8);
	CHECK(!again.path.source_route);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	struct smtp_cmd cmd;

	memcpy(line, data, size);
	line[size] = '\0';

	if (smtp_parse_command(line, size, &cmd) == PARSE_OK) {
		CHECK(cmd.name != NULL && cmd.args != NULL);
		CHECK(cmd.args >= line && cmd.args <= line + size);
		CHECK(cmd.verb < SMTP_CMD_COUNT);
		fuzz_mail_args(cmd.args, SMTP_PARAMS_MAIL);
		fuzz_mail_args(cmd.args, SMTP_PARAMS_RCPT);
	} else {
		CHECK(size == 0 || memchr(line, '\0', size) != NULL);
	}
	/* the raw line too, so the fuzzer need not find a verb first */
	fuzz_mail_args(line, SMTP_PARAMS_MAIL);
	fuzz_mail_args(line, SMTP_PARAMS_RCPT);
	fuzz_xtext(line);
	free(line);
	return 0;
}
