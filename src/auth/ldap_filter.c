/* SPDX-License-Identifier: ISC */
/*
 * ldap_filter.c - token expansion and RFC 4515 / RFC 4514 escaping for the
 * LDAP source (see ldap_filter.h). Pure string work, no libldap: the unit
 * test feeds it hostile logins.
 *
 * Escaping every byte outside printable ASCII as \XX is allowed by both RFCs
 * (RFC 4515 3 "valueencoding" and RFC 4514 2.4 "hexpair") and makes the
 * result plain ASCII: a UTF-8 login still matches, since the server decodes
 * the escapes before comparing, and invalid UTF-8 cannot confuse a parser.
 */
#include "ldap_filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbuf {
	char *p;
	size_t len, cap;
};

static void
sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 64;
		while (b->len + n + 1 > cap)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sbuf_hex(struct sbuf *b, unsigned char c)
{
	static const char digits[] = "0123456789abcdef";
	char e[3] = {'\\', digits[c >> 4], digits[c & 15]};

	sbuf_add(b, e, 3);
}

static bool
printable_ascii(unsigned char c)
{
	return c >= 0x20 && c < 0x7f;
}

static void
escape_into(struct sbuf *b, const char *value, size_t len, enum ldap_escape how)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		bool esc;

		switch (how) {
		case LDAP_ESCAPE_FILTER:
			/* RFC 4515 3: NUL, '(', ')', '*' and '\' must be escaped. */
			esc = !printable_ascii(c) || c == '*' || c == '(' || c == ')' || c == '\\';
			break;
		case LDAP_ESCAPE_DN:
			/* RFC 4514 2.4, plus '=' which some servers misparse. */
			esc = !printable_ascii(c) || strchr("\"+,;<>\\=", c) != NULL ||
			      (i == 0 && (c == ' ' || c == '#')) || (i == len - 1 && c == ' ');
			break;
		default:
			esc = false;
			break;
		}
		if (esc)
			sbuf_hex(b, c);
		else
			sbuf_add(b, (const char *)&value[i], 1);
	}
	if (b->p == NULL)
		sbuf_add(b, "", 0);
}

char *
ldap_filter_escape(const char *value, size_t len, enum ldap_escape how)
{
	struct sbuf b = {0};

	escape_into(&b, value, len, how);
	return b.p;
}

/* The login's local part and domain, split at the last '@'. */
static void
split_login(const struct ldap_filter_vars *v, size_t *local_len_r, const char **domain_r,
            size_t *domain_len_r)
{
	const char *at = NULL;

	for (size_t i = v->login_len; i-- > 0;) {
		if (v->login[i] == '@') {
			at = v->login + i;
			break;
		}
	}
	*local_len_r = at != NULL ? (size_t)(at - v->login) : v->login_len;
	*domain_r = at != NULL ? at + 1 : "";
	*domain_len_r = at != NULL ? v->login_len - (size_t)(at + 1 - v->login) : 0;
}

char *
ldap_filter_expand(const char *tmpl, const struct ldap_filter_vars *vars, enum ldap_escape how,
                   const char **error_r)
{
	struct sbuf b = {0};
	const char *domain = "";
	size_t local_len = 0, domain_len = 0;

	if (vars->login != NULL)
		split_login(vars, &local_len, &domain, &domain_len);
	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p != '%') {
			sbuf_add(&b, p, 1);
			continue;
		}
		p++;
		switch (*p) {
		case '%':
			sbuf_add(&b, "%", 1);
			break;
		case 's':
		case 'u':
		case 'd':
			if (vars->login == NULL)
				goto fail;
			if (*p == 's')
				escape_into(&b, vars->login, vars->login_len, how);
			else if (*p == 'u')
				escape_into(&b, vars->login, local_len, how);
			else
				escape_into(&b, domain, domain_len, how);
			break;
		case 'D':
			if (vars->user_dn == NULL)
				goto fail;
			escape_into(&b, vars->user_dn, strlen(vars->user_dn), how);
			break;
		default:
			goto fail;
		}
	}
	if (b.p == NULL)
		sbuf_add(&b, "", 0);
	return b.p;
fail:
	*error_r = "unknown or unavailable %-token in the template";
	free(b.p);
	return NULL;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int
ldap_filter_check_template(const char *tmpl, const char *allowed, bool is_filter,
                           const char **error_r)
{
	int depth = 0;

	if (*tmpl == '\0') {
		*error_r = "must not be empty";
		return -1;
	}
	if (is_filter && tmpl[0] != '(') {
		*error_r = "a filter must start with '(' (RFC 4515 3)";
		return -1;
	}
	for (const char *p = tmpl; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*error_r = "control character in the template";
			return -1;
		}
		if (*p == '%') {
			if (p[1] == '%') {
				p++;
				continue;
			}
			if (p[1] == '\0' || strchr(allowed, p[1]) == NULL) {
				*error_r = "unknown %-token (this key takes %% and the ones "
				           "documented for it)";
				return -1;
			}
			p++;
			continue;
		}
		if (!is_filter)
			continue;
		if (*p == '\\') {
			if (!is_hex(p[1]) || !is_hex(p[2])) {
				*error_r = "'\\' must be followed by two hex digits (RFC 4515 3)";
				return -1;
			}
			p += 2;
		} else if (*p == '(') {
			depth++;
		} else if (*p == ')') {
			if (--depth < 0) {
				*error_r = "unbalanced ')'";
				return -1;
			}
			if (depth == 0 && p[1] != '\0') {
				*error_r = "text after the filter's closing ')'";
				return -1;
			}
		}
	}
	if (is_filter && depth != 0) {
		*error_r = "unbalanced '('";
		return -1;
	}
	return 0;
}
