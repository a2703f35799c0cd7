/* SPDX-License-Identifier: ISC */
/*
 * sender_policy.c - the sender/login binding of a submission listener (see
 * sender_policy.h). Pure: no I/O, no state; session.c calls it at MAIL.
 */
#include "sender_policy.h"
#include "../lib/config.h"
#include "smtpd.h"

#include <string.h>

#define SENDER_MISMATCH "553 5.7.1 Sender address rejected: not owned by the authenticated user"

/* a (len bytes) equals b, ASCII case-insensitively. */
static bool
addr_equal(const char *a, size_t len, const char *b)
{
	return strlen(b) == len && ascii_strncasecmp(a, b, len) == 0;
}

static bool
in_list(const char *list, const char *addr)
{
	const char *p = list;

	while (p != NULL && *p != '\0') {
		size_t n = strcspn(p, ",");
		if (n > 0 && addr_equal(p, n, addr))
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

/* login is one of [protection] sender_allow_users (case-insensitively). */
static bool
allowed_user(const struct smtpd_protection *pc, const char *login)
{
	for (size_t i = 0; pc != NULL && i < pc->n_sender_allow_users; i++)
		if (ascii_strcasecmp(pc->sender_allow_users[i], login) == 0)
			return true;
	return false;
}

/* login without the blanks around it, into buf; NULL if it does not fit. */
static const char *
login_trim(const char *login, char *buf, size_t size)
{
	size_t len;

	while (*login == ' ' || *login == '\t')
		login++;
	len = strlen(login);
	while (len > 0 && (login[len - 1] == ' ' || login[len - 1] == '\t'))
		len--;
	if (len >= size)
		return NULL;
	memcpy(buf, login, len);
	buf[len] = '\0';
	return buf;
}

const char *
sender_policy_check(const struct listener_cfg *l, const struct smtpd_protection *pc,
                    const char *user, const char *login, const char *addresses,
                    const char *mail_from)
{
	char buf[1024];
	const char *at;

	if (!l->sender_login_match || mail_from[0] == '\0')
		return NULL;
	if (user == NULL || user[0] == '\0')
		return SENDER_MISMATCH;
	login = login_trim(login != NULL ? login : user, buf, sizeof(buf));
	if (login == NULL || login[0] == '\0')
		login = user;
	if (allowed_user(pc, user) || allowed_user(pc, login))
		return NULL;
	if (in_list(addresses, mail_from))
		return NULL;
	at = strrchr(login, '@');
	if (at != NULL)
		return ascii_strcasecmp(login, mail_from) == 0 ? NULL : SENDER_MISMATCH;
	if (l->default_domain != NULL) {
		/* "alice" on a listener whose default_domain is example.org. */
		const char *mat = strrchr(mail_from, '@');
		size_t ulen = strlen(login);
		if (mat != NULL && (size_t)(mat - mail_from) == ulen &&
		    ascii_strncasecmp(mail_from, login, ulen) == 0 &&
		    ascii_strcasecmp(mat + 1, l->default_domain) == 0)
			return NULL;
	}
	return SENDER_MISMATCH;
}
