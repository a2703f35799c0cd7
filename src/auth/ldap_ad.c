/* SPDX-License-Identifier: ISC */
/*
 * ldap_ad.c - Active Directory's bind sub-codes and logon names (see
 * ldap_ad.h). Pure string work: the source (auth_ldap.c), the connection
 * pool (ldap_conn.c) and the config (ldap_config.c) all use it.
 */
#include "ldap_ad.h"

#include <string.h>

struct ad_code {
	int code;
	enum auth_reason reason;
	const char *text;
	bool state; /* the password was right: the account's state refused it */
};

static const struct ad_code ad_codes[] = {
        {0x525, AUTH_REASON_UNKNOWN_USER, "no such user", false},
        {0x52e, AUTH_REASON_BAD_PASSWORD, "wrong password (or no such account)", false},
        {0x530, AUTH_REASON_LOGON_HOURS, "not permitted to log on at this time (logonHours)", true},
        {0x531, AUTH_REASON_WORKSTATION_REFUSED,
         "not permitted to log on from this workstation (userWorkstations)", true},
        {0x532, AUTH_REASON_PASSWORD_EXPIRED, "the password has expired", true},
        {0x533, AUTH_REASON_ACCOUNT_DISABLED, "the account is disabled", true},
        {0x701, AUTH_REASON_ACCOUNT_EXPIRED, "the account has expired (accountExpires)", true},
        {0x773, AUTH_REASON_PASSWORD_MUST_CHANGE,
         "the user must change the password before logging on", true},
        {0x775, AUTH_REASON_ACCOUNT_LOCKED,
         "the account is locked out (the directory's own lockout)", true},
};

static const struct ad_code *
find(int code)
{
	for (size_t i = 0; i < AR_NELEM(ad_codes); i++) {
		if (ad_codes[i].code == code)
			return &ad_codes[i];
	}
	return NULL;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
ldap_ad_bind_subcode(const char *diag)
{
	const char *p = diag;

	if (diag == NULL)
		return -1;
	/* "data " then hex digits ended by ',' or the end: "data 52e, v893". */
	while ((p = strstr(p, "data ")) != NULL) {
		const char *q = p + 5;
		int code = 0, n = 0;

		if (p == diag || p[-1] == ' ' || p[-1] == ',' || p[-1] == '(') {
			for (; hexval(*q) >= 0 && n < 8; q++, n++)
				code = code * 16 + hexval(*q);
			if (n > 0 && n < 8 && (*q == ',' || *q == '\0' || *q == ' ' || *q == ')'))
				return code;
		}
		p++;
	}
	return -1;
}

enum auth_reason
ldap_ad_reason(int subcode)
{
	const struct ad_code *c = find(subcode);

	return c != NULL ? c->reason : AUTH_REASON_BIND_REFUSED;
}

const char *
ldap_ad_describe(int subcode)
{
	const struct ad_code *c = find(subcode);

	return c != NULL ? c->text : "a sub-code this version does not know";
}

bool
ldap_ad_account_state(int subcode)
{
	const struct ad_code *c = find(subcode);

	return c != NULL && c->state;
}

bool
ldap_ad_netbios_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > LDAP_AD_NETBIOS_MAX)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c == 0x7f || strchr("\\/:*?\"<>|,", c) != NULL)
			return false;
	}
	return true;
}

bool
ldap_ad_split_downlevel(const char *login, char domain[LDAP_AD_NETBIOS_MAX + 1],
                        const char **user_r)
{
	const char *bs = strchr(login, '\\');
	size_t dlen;

	if (bs == NULL || strchr(bs + 1, '\\') != NULL || bs[1] == '\0')
		return false;
	dlen = (size_t)(bs - login);
	if (dlen == 0 || dlen > LDAP_AD_NETBIOS_MAX)
		return false;
	memcpy(domain, login, dlen);
	domain[dlen] = '\0';
	if (!ldap_ad_netbios_ok(domain))
		return false;
	*user_r = bs + 1;
	return true;
}

bool
ldap_ad_bind_name_ok(const char *name)
{
	char domain[LDAP_AD_NETBIOS_MAX + 1];
	const char *user, *at;

	if (strchr(name, '=') != NULL)
		return false; /* a DN, or a mistake: either way not this */
	if (ldap_ad_split_downlevel(name, domain, &user))
		return true;
	at = strchr(name, '@');
	if (at == NULL || at == name || at[1] == '\0' || strchr(at + 1, '@') != NULL)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}
