/* SPDX-License-Identifier: ISC */
/*
 * smtp_parse.c - the SMTP command-line grammar (RFC 5321 4.1): splitting a
 * line into verb and argument, the MAIL/RCPT paths (4.1.2) with their ESMTP
 * parameters, and xtext (RFC 3461 4).
 *
 * Everything here is a pure function of one NUL-terminated line that the
 * session has already bounded in length. The path parser is deliberately
 * strict: an address that parses is one that the relay policy
 * (smtpd/relay_policy.c) and the queue can reason about without surprises,
 * so ambiguous forms ("user@domain@other", unbalanced quotes, bad UTF-8)
 * are refused here rather than interpreted.
 */
#include "smtp_parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define SMTP_MAX_LOCAL 64   /* RFC 5321 4.5.3.1.1 */
#define SMTP_MAX_DOMAIN 255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_MAX_LABEL 63   /* RFC 1035 2.3.4 */

static const char smtp_err_mail_path[] = "501 5.1.7 Bad sender address syntax";
static const char smtp_err_rcpt_path[] = "501 5.1.3 Bad recipient address syntax";
static const char smtp_err_mail_syntax[] = "501 5.5.2 Syntax: MAIL FROM:<address>";
static const char smtp_err_rcpt_syntax[] = "501 5.5.2 Syntax: RCPT TO:<address>";
static const char smtp_err_params[] = "501 5.5.4 Syntax error in parameters";
static const char smtp_err_too_many[] = "501 5.5.4 Too many parameters";

static const struct {
	enum smtp_verb verb;
	const char *name;
} smtp_verbs[] = {
        {SMTP_CMD_HELO, "HELO"}, {SMTP_CMD_EHLO, "EHLO"}, {SMTP_CMD_MAIL, "MAIL"},
        {SMTP_CMD_RCPT, "RCPT"}, {SMTP_CMD_DATA, "DATA"}, {SMTP_CMD_RSET, "RSET"},
        {SMTP_CMD_NOOP, "NOOP"}, {SMTP_CMD_QUIT, "QUIT"}, {SMTP_CMD_VRFY, "VRFY"},
        {SMTP_CMD_EXPN, "EXPN"}, {SMTP_CMD_HELP, "HELP"}, {SMTP_CMD_STARTTLS, "STARTTLS"},
        {SMTP_CMD_AUTH, "AUTH"}, {SMTP_CMD_BDAT, "BDAT"}, {SMTP_CMD_ETRN, "ETRN"},
};

static bool
smtp_is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
smtp_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char
smtp_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static unsigned char
smtp_upper(unsigned char c)
{
	return (c >= 'a' && c <= 'z') ? (unsigned char)(c - ('a' - 'A')) : c;
}

/* atext of RFC 5322 3.2.3, widened by RFC 6531 3.3 to UTF-8 (checked for
 * well-formedness separately). */
static bool
smtp_is_atext(unsigned char c)
{
	if (smtp_is_alpha(c) || smtp_is_digit(c) || c >= 0x80)
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* RFC 3629 4: shortest form, no surrogates, nothing above U+10FFFF. */
static bool
smtp_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static bool
smtp_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

enum parse_result
smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd_r)
{
	size_t vlen = 0;
	const char *p;

	cmd_r->verb = SMTP_CMD_UNKNOWN;
	cmd_r->name = "UNKNOWN";
	cmd_r->args = "";
	if (line == NULL || len == 0 || memchr(line, '\0', len) != NULL)
		return PARSE_INVALID;

	/* RFC 5321 4.1.1: the verb ends at SP or at the end of the line, so
	 * "MAILFROM:" and "NOOP\t" are unknown verbs, not MAIL and NOOP. */
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	for (size_t i = 0; i < AR_NELEM(smtp_verbs); i++) {
		if (strlen(smtp_verbs[i].name) == vlen &&
		    ascii_strncasecmp(line, smtp_verbs[i].name, vlen) == 0) {
			cmd_r->verb = smtp_verbs[i].verb;
			cmd_r->name = smtp_verbs[i].name;
			break;
		}
	}
	p = line + vlen;
	while (*p == ' ')
		p++;
	cmd_r->args = p;
	return PARSE_OK;
}

/*
 * Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2), copied as
 * written into out (quotes and backslashes kept). Advances *pp.
 */
static int
smtp_parse_local(const char **pp, char *out, size_t outsz, bool *quoted_r)
{
	const unsigned char *start = (const unsigned char *)*pp;
	const unsigned char *p = start;
	size_t len;

	*quoted_r = false;
	if (*p == '"') {
		p++;
		for (;;) {
			unsigned char c = *p;

			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				if (p[1] < 32 || p[1] > 126)
					return -1;
				p += 2;
			} else if (c == 32 || c == 33 || (c >= 35 && c <= 91) ||
			           (c >= 93 && c <= 126) || c >= 0x80) {
				/* qtextSMTP, plus UTF-8 (RFC 6531 3.3) */
				p++;
			} else {
				/* control characters, and the end of the line
				 * before the closing quote */
				return -1;
			}
		}
		p++;
		*quoted_r = true;
	} else {
		/* Dot-string = Atom *("." Atom): no empty atom, so no
		 * leading, trailing or doubled dot. */
		for (;;) {
			const unsigned char *atom = p;

			while (smtp_is_atext(*p))
				p++;
			if (p == atom)
				return -1;
			if (*p != '.')
				break;
			p++;
		}
	}
	len = (size_t)(p - start);
	if (len > SMTP_MAX_LOCAL || len >= outsz || !smtp_utf8_valid(start, len))
		return -1;
	memcpy(out, start, len);
	out[len] = '\0';
	*pp = (const char *)p;
	return 0;
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]"
 * (RFC 5321 4.1.3); a General-address-literal has no registered tag we
 * could route on, so it is refused. inet_pton() does the address syntax.
 */
static int
smtp_parse_literal(const char **pp, char *out, size_t outsz)
{
	const char *p = *pp + 1;
	const char *end = strchr(p, ']');
	char buf[SMTP_MAX_DOMAIN + 1];
	unsigned char addr[16];
	size_t len;
	int ok;

	if (end == NULL)
		return -1;
	len = (size_t)(end - p);
	if (len == 0 || len + 2 > SMTP_MAX_DOMAIN || len + 3 > outsz)
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	if (ascii_strncasecmp(buf, "IPv6:", 5) == 0)
		ok = inet_pton(AF_INET6, buf + 5, addr);
	else
		ok = inet_pton(AF_INET, buf, addr);
	if (ok != 1)
		return -1;
	out[0] = '[';
	for (size_t i = 0; i < len; i++)
		out[i + 1] = (char)smtp_lower((unsigned char)buf[i]);
	out[len + 1] = ']';
	out[len + 2] = '\0';
	*pp = end + 1;
	return 0;
}

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
 * (RFC 5321 4.1.2), with U-labels allowed (RFC 6531 3.3). Lower-cased into
 * out. Advances *pp past the domain; the caller checks what follows.
 */
static int
smtp_parse_domain(const char **pp, char *out, size_t outsz, bool allow_literal, bool *literal_r)
{
	const unsigned char *start = (const unsigned char *)*pp;
	const unsigned char *p = start, *label = start;
	size_t len;

	*literal_r = false;
	if (*p == '[') {
		if (!allow_literal)
			return -1;
		*literal_r = true;
		return smtp_parse_literal(pp, out, outsz);
	}
	for (;;) {
		bool ascii = true, all_digits = true;

		label = p;
		while (smtp_is_alpha(*p) || smtp_is_digit(*p) || *p == '-' || *p >= 0x80) {
			if (*p >= 0x80)
				ascii = false;
			if (!smtp_is_digit(*p))
				all_digits = false;
			p++;
		}
		if (p == label || *label == '-' || p[-1] == '-')
			return -1;
		/* The 63-octet limit is on the A-label; a U-label's UTF-8
		 * form may be longer and is bounded by the total below. */
		if (ascii && (size_t)(p - label) > SMTP_MAX_LABEL)
			return -1;
		if (*p != '.') {
			/* RFC 1123 2.1: the top-level label is never all
			 * digits, so "user@10.0.0.1" is not a host name
			 * sneaking past the address-literal rules. */
			if (all_digits)
				return -1;
			break;
		}
		p++;
	}
	len = (size_t)(p - start);
	if (len > SMTP_MAX_DOMAIN || len >= outsz || !smtp_utf8_valid(start, len))
		return -1;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)smtp_lower(start[i]);
	out[len] = '\0';
	*pp = (const char *)p;
	return 0;
}

/*
 * Reverse-path / Forward-path (RFC 5321 4.1.2):
 *   Path = "<" [ A-d-l ":" ] Mailbox ">"
 * plus "<>" for MAIL and "<Postmaster>" for RCPT. A bare local part is
 * accepted for MAIL only, for the session to qualify with default_domain
 * (RFC 6409 4.2 has the MSA make envelope domains fully qualified).
 */
static int
smtp_parse_path(const char **pp, enum smtp_param_kind kind, struct smtp_path *path)
{
	const char *p = *pp;
	char route[SMTP_MAX_DOMAIN + 1];
	bool literal, has_domain = false;

	if (*p != '<')
		return -1;
	p++;
	if (*p == '>') {
		/* RFC 5321 4.5.5: the null reverse-path; never a recipient. */
		if (kind != SMTP_PARAMS_MAIL)
			return -1;
		path->null = true;
		*pp = p + 1;
		return 0;
	}
	if (*p == '@') {
		/* A-d-l = At-domain *( "," At-domain ); RFC 5321 4.1.1.3 and
		 * C: the route SHOULD be ignored, so it is checked and dropped. */
		for (;;) {
			if (*p != '@')
				return -1;
			p++;
			if (smtp_parse_domain(&p, route, sizeof(route), false, &literal) < 0)
				return -1;
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p != ':')
				return -1;
			p++;
			break;
		}
		path->source_route = true;
	}
	if (smtp_parse_local(&p, path->local, sizeof(path->local), &path->quoted_local) < 0)
		return -1;
	if (*p == '@') {
		p++;
		if (smtp_parse_domain(&p, path->domain, sizeof(path->domain), true,
		                      &path->ip_literal) < 0)
			return -1;
		has_domain = true;
	} else if (path->source_route) {
		return -1;
	} else if (kind == SMTP_PARAMS_RCPT) {
		/* RFC 5321 4.1.1.3: "<Postmaster>" is the only recipient
		 * without a domain; the name is case-insensitive (4.5.1). */
		if (path->quoted_local || ascii_strcasecmp(path->local, "postmaster") != 0)
			return -1;
		path->postmaster = true;
	}
	/* Anything but '>' here ("user@domain@other", "a@b c") is refused. */
	if (*p != '>')
		return -1;
	p++;

	path->utf8 = smtp_has_8bit(path->local, strlen(path->local)) ||
	             smtp_has_8bit(path->domain, strlen(path->domain));
	if (has_domain)
		snprintf(path->addr, sizeof(path->addr), "%s@%s", path->local, path->domain);
	else
		snprintf(path->addr, sizeof(path->addr), "%s", path->local);
	*pp = p;
	return 0;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531 3.3). */
static bool
smtp_is_value_char(unsigned char c)
{
	return (c >= 33 && c <= 60) || (c >= 62 && c <= 126) || c >= 0x80;
}

/*
 * Mail-parameters = esmtp-param *(SP esmtp-param) (RFC 5321 4.1.2),
 * esmtp-param = esmtp-keyword ["=" esmtp-value]. Several spaces between
 * parameters and trailing spaces are tolerated.
 */
static int
smtp_parse_params(const char *p, struct smtp_mail_args *r, const char **error_r)
{
	while (*p == ' ')
		p++;
	while (*p != '\0') {
		struct smtp_param *param;
		const char *key = p, *value;
		size_t klen, vlen;

		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		if (!smtp_is_alpha((unsigned char)*p) && !smtp_is_digit((unsigned char)*p))
			goto fail;
		while (smtp_is_alpha((unsigned char)*p) || smtp_is_digit((unsigned char)*p) ||
		       *p == '-')
			p++;
		klen = (size_t)(p - key);
		if (klen >= sizeof(r->params[0].key))
			goto fail;
		if (r->n_params == SMTP_MAX_PARAMS) {
			*error_r = smtp_err_too_many;
			return -1;
		}
		param = &r->params[r->n_params];
		for (size_t i = 0; i < klen; i++)
			param->key[i] = (char)smtp_upper((unsigned char)key[i]);
		param->key[klen] = '\0';
		param->value[0] = '\0';
		param->has_value = false;
		if (*p == '=') {
			p++;
			value = p;
			while (smtp_is_value_char((unsigned char)*p))
				p++;
			vlen = (size_t)(p - value);
			if (vlen == 0 || vlen >= sizeof(param->value) ||
			    !smtp_utf8_valid((const unsigned char *)value, vlen))
				goto fail;
			memcpy(param->value, value, vlen);
			param->value[vlen] = '\0';
			param->has_value = true;
		}
		if (*p != ' ' && *p != '\0')
			goto fail;
		r->n_params++;
		while (*p == ' ')
			p++;
	}
	return 0;
fail:
	*error_r = smtp_err_params;
	return -1;
}

int
smtp_parse_mail_args(const char *args, enum smtp_param_kind kind, struct smtp_mail_args *r,
                     const char **error_r)
{
	bool mail = kind == SMTP_PARAMS_MAIL;
	const char *keyword = mail ? "FROM:" : "TO:";
	size_t klen = strlen(keyword);
	const char *p = args;

	memset(r, 0, sizeof(*r));
	*error_r = NULL;
	if (ascii_strncasecmp(p, keyword, klen) != 0) {
		*error_r = mail ? smtp_err_mail_syntax : smtp_err_rcpt_syntax;
		return -1;
	}
	p += klen;
	/* Not in RFC 5321 4.1.2, but many clients send "MAIL FROM: <a@b>". */
	while (*p == ' ')
		p++;
	if (smtp_parse_path(&p, kind, &r->path) < 0)
		goto fail;
	if (*p != '\0' && *p != ' ')
		goto fail;
	return smtp_parse_params(p, r, error_r);
fail:
	memset(&r->path, 0, sizeof(r->path));
	*error_r = mail ? smtp_err_mail_path : smtp_err_rcpt_path;
	return -1;
}

static int
smtp_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	/* RFC 3461 4 asks for upper case; lower case is read too, since the
	 * value is only logged and refusing it would refuse the message. */
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
smtp_xtext_decode(const char *in, char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;

	if (outsz == 0)
		return -1;
	for (; *p != '\0'; p++) {
		unsigned char c = *p;

		if (c == '+') {
			/* hexchar = "+" 2HEXDIG */
			int hi = smtp_hex_value(p[1]), lo;

			if (hi < 0)
				goto fail;
			lo = smtp_hex_value(p[2]);
			if (lo < 0)
				goto fail;
			c = (unsigned char)(hi << 4 | lo);
			/* A NUL would cut the decoded C string short. */
			if (c == 0)
				goto fail;
			p += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			/* xchar = "!".."~" except "+" and "=" */
			goto fail;
		}
		if (o + 1 >= outsz)
			goto fail;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
fail:
	out[0] = '\0';
	return -1;
}

bool
smtp_path_has_routing(const struct smtp_path *path)
{
	/* '%' (percent hack), '!' (UUCP bang path) and '@' (a quoted
	 * "user@other" or a quoted-pair "\@") let a downstream server pick a
	 * next hop from the local part. */
	return strpbrk(path->local, "%!@") != NULL;
}
