/* SPDX-License-Identifier: ISC */
/*
 * test_ldap_ad.c - Active Directory's bind sub-codes and logon names
 * (src/auth/ldap_ad.c): the diagnostic messages AD and Samba really send,
 * every sub-code's reason, and hostile or malformed text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "auth/ldap_ad.h"

struct subcode_case {
	const char *diag;
	int code;
};

static const struct subcode_case subcode_cases[] = {
        /* Windows Server */
        {"80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 52e, v893",
         0x52e},
        {"80090308: LdapErr: DSID-0C090447, comment: AcceptSecurityContext error, data 775, "
         "v3839",
         0x775},
        /* Samba's AD DC */
        {"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1",
         0x533},
        /* As ldap_conn.c passes it on: the result text first. */
        {"Invalid credentials (80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext "
         "error, data 701, v1db1)",
         0x701},
        {"data 773", 0x773},
        {"data 530)", 0x530},
        {"DATA 52e, v1", -1}, /* AD writes it in lower case */
        {"metadata 52e, v1", -1},
        {"data , v1", -1},
        {"data zz, v1", -1},
        {"data 123456789, v1", -1},
        {"data 52ex, v1", -1},
        {"Invalid credentials", -1},
        {"", -1},
        {"data ", -1},
        {"data data 532, v1", 0x532},
};

static void
test_subcode(void **state)
{
	for (size_t i = 0; i < sizeof(subcode_cases) / sizeof(subcode_cases[0]); i++) {
		int got = ldap_ad_bind_subcode(subcode_cases[i].diag);
		if (got != subcode_cases[i].code)
			fail_msg("case %zu \"%s\": %x, want %x", i, subcode_cases[i].diag, got,
			         subcode_cases[i].code);
	}
	assert_int_equal(ldap_ad_bind_subcode(NULL), -1);
}

static void
test_reasons(void **state)
{
	static const struct {
		int code;
		const char *reason;
		bool state;
	} cases[] = {
	        {0x525, "unknown_user", false},    {0x52e, "bad_password", false},
	        {0x530, "logon_hours", true},      {0x531, "workstation_refused", true},
	        {0x532, "password_expired", true}, {0x533, "account_disabled", true},
	        {0x701, "account_expired", true},  {0x773, "password_must_change", true},
	        {0x775, "account_locked", true},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(auth_reason_name(ldap_ad_reason(cases[i].code)),
		                    cases[i].reason);
		assert_int_equal(ldap_ad_account_state(cases[i].code), cases[i].state);
		assert_non_null(ldap_ad_describe(cases[i].code));
	}
	assert_int_equal(ldap_ad_reason(0x568), AUTH_REASON_BIND_REFUSED);
	assert_false(ldap_ad_account_state(0x568));
	assert_false(ldap_ad_account_state(-1));
	assert_string_equal(ldap_ad_describe(-1), "a sub-code this version does not know");
}

static void
test_downlevel(void **state)
{
	static const struct {
		const char *login, *domain, *user; /* domain NULL: not down-level */
	} cases[] = {
	        {"CORP\\ann", "CORP", "ann"},
	        {"corp\\ann", "corp", "ann"},
	        {"CORP-2.X\\a b", "CORP-2.X", "a b"},
	        {"FIFTEEN-CHARS-X\\ann", "FIFTEEN-CHARS-X", "ann"},
	        {"SIXTEEN-CHARS-XY\\ann", NULL, NULL},
	        {"\\ann", NULL, NULL},
	        {"CORP\\", NULL, NULL},
	        {"CORP\\ann\\x", NULL, NULL},
	        {"ann", NULL, NULL},
	        {"ann@corp.example", NULL, NULL},
	        {"CO RP\\ann", NULL, NULL},
	        {"CO*RP\\ann", NULL, NULL},
	        {"CO,RP\\ann", NULL, NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char domain[LDAP_AD_NETBIOS_MAX + 1];
		const char *user = NULL;
		bool ok = ldap_ad_split_downlevel(cases[i].login, domain, &user);

		if (ok != (cases[i].domain != NULL))
			fail_msg("case %zu \"%s\": %d", i, cases[i].login, ok);
		if (ok) {
			assert_string_equal(domain, cases[i].domain);
			assert_string_equal(user, cases[i].user);
		}
	}
}

static void
test_bind_names(void **state)
{
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
	        {"svc-smtp@corp.example", true},
	        {"CORP\\svc-smtp", true},
	        {"svc@", false},
	        {"@corp.example", false},
	        {"svc@corp@example", false},
	        {"svc smtp@corp.example", false},
	        {"cn=svc,dc=corp", false}, /* a DN is checked as a DN */
	        {"svc", false},
	        {"", false},
	        {"CORP\\", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (ldap_ad_bind_name_ok(cases[i].name) != cases[i].ok)
			fail_msg("case %zu \"%s\"", i, cases[i].name);
	}
	assert_true(ldap_ad_netbios_ok("CORP"));
	assert_false(ldap_ad_netbios_ok(""));
	assert_false(ldap_ad_netbios_ok("A|B"));
	assert_false(ldap_ad_netbios_ok("A\tB"));
	assert_false(ldap_ad_netbios_ok("SIXTEEN-CHARS-XY"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_subcode),
	        cmocka_unit_test(test_reasons),
	        cmocka_unit_test(test_downlevel),
	        cmocka_unit_test(test_bind_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
