/* SPDX-License-Identifier: ISC */
/*
 * test_ldap_filter.c - RFC 4515 / RFC 4514 escaping and %-token expansion
 * (src/auth/ldap_filter.c) against hostile logins: every special of both
 * RFCs, NUL, control bytes, UTF-8 and invalid UTF-8, classic filter
 * injections; plus template checks for the config.
 *
 * The property under test: whatever the login, the expanded filter parses
 * as the template's filter with one assertion value per token, i.e. the
 * result contains no raw '(' ')' '*' '\' NUL that the login brought in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ldap.h>

#include "auth/ldap_filter.h"

struct esc_case {
	const char *in;
	size_t len;
	const char *filter; /* RFC 4515 */
	const char *dn;     /* RFC 4514 */
};

#define S(x) x, sizeof(x) - 1

static const struct esc_case esc_cases[] = {
        {S("alice"), "alice", "alice"},
        {S(""), "", ""},
        {S("*"), "\\2a", "*"},
        {S("("), "\\28", "("},
        {S(")"), "\\29", ")"},
        {S("\\"), "\\5c", "\\5c"},
        {S("a\0b"), "a\\00b", "a\\00b"},
        {S("*)(uid=*))(|(uid=*"), "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a",
         "*)(uid\\3d*))(|(uid\\3d*"},
        {S("admin)(&)"), "admin\\29\\28&\\29", "admin)(&)"},
        {S("x*)(objectClass=*"), "x\\2a\\29\\28objectClass=\\2a", "x*)(objectClass\\3d*"},
        {S("\\2a"), "\\5c2a", "\\5c2a"},
        {S(" lead"), " lead", "\\20lead"},
        {S("trail "), "trail ", "trail\\20"},
        {S("#hash"), "#hash", "\\23hash"},
        {S("mid#dle"), "mid#dle", "mid#dle"},
        {S("a,b+c;d<e>f\"g=h"), "a,b+c;d<e>f\"g=h", "a\\2cb\\2bc\\3bd\\3ce\\3ef\\22g\\3dh"},
        {S("uid=x,ou=people"), "uid=x,ou=people", "uid\\3dx\\2cou\\3dpeople"},
        {S("tab\there"), "tab\\09here", "tab\\09here"},
        {S("nl\r\n"), "nl\\0d\\0a", "nl\\0d\\0a"},
        {S("del\x7f"), "del\\7f", "del\\7f"},
        {S("j\xc3\xb6rg"), "j\\c3\\b6rg", "j\\c3\\b6rg"}, /* UTF-8 */
        {S("\xff\xfe"), "\\ff\\fe", "\\ff\\fe"},          /* invalid UTF-8 */
        {S("\xe2\x80\xae"
           "evil"),
         "\\e2\\80\\aeevil", "\\e2\\80\\aeevil"}, /* RLO */
        {S("a b"), "a b", "a b"},
        {S("%s%u%d"), "%s%u%d", "%s%u%d"}, /* values are not templates */
};

static void
test_escape_table(void **state)
{
	for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		const struct esc_case *c = &esc_cases[i];
		char *f = ldap_filter_escape(c->in, c->len, LDAP_ESCAPE_FILTER);
		char *d = ldap_filter_escape(c->in, c->len, LDAP_ESCAPE_DN);
		char *n = ldap_filter_escape(c->in, c->len, LDAP_ESCAPE_NONE);

		if (strcmp(f, c->filter) != 0)
			fail_msg("case %zu filter: got \"%s\", want \"%s\"", i, f, c->filter);
		if (strcmp(d, c->dn) != 0)
			fail_msg("case %zu dn: got \"%s\", want \"%s\"", i, d, c->dn);
		assert_int_equal(strlen(n), strlen(c->in)); /* up to the first NUL */
		free(f);
		free(d);
		free(n);
	}
}

/* Every byte value, alone and between letters: the filter escape never lets
 * a special through, and the output is printable ASCII. */
static void
test_escape_every_byte(void **state)
{
	for (int b = 0; b < 256; b++) {
		char in[3] = {'a', (char)b, 'z'};
		char *f = ldap_filter_escape(in, 3, LDAP_ESCAPE_FILTER);
		char *d = ldap_filter_escape(in, 3, LDAP_ESCAPE_DN);

		for (const char *p = f; *p != '\0'; p++) {
			assert_true(*p >= 0x20 && *p < 0x7f);
			assert_true(*p != '(' && *p != ')' && *p != '*');
			if (*p == '\\') {
				assert_non_null(strchr("0123456789abcdef", p[1]));
				assert_non_null(strchr("0123456789abcdef", p[2]));
				p += 2;
			}
		}
		for (const char *p = d; *p != '\0'; p++) {
			assert_true(*p >= 0x20 && *p < 0x7f);
			assert_null(strchr("\"+,;<>=", *p));
			if (*p == '\\')
				p += 2;
		}
		free(f);
		free(d);
	}
}

/* The expanded filter is valid and has exactly the template's structure:
 * libldap's own parser (ldap_search_ext encodes the filter) accepts it, and
 * its parenthesis count equals the template's. */
static int
count_parens(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '(' || *s == ')';
	return n;
}

static const char *const hostile_logins[] = {
        "*",
        "*)(uid=*",
        "*)(|(objectClass=*",
        "admin)(!(userPassword=*))",
        ")(",
        "\\",
        "\\29",
        "alice@example.test)(mail=*",
        "@",
        "a@b@c",
        "(&)",
        "j\xc3\xb6rg@\xc3\xa9xample.test",
        "x\x01y",
};

static void
test_expand_hostile(void **state)
{
	const char *tmpl = "(&(objectClass=person)(|(uid=%s)(mail=%s)(cn=%u)(o=%d)))";

	for (size_t i = 0; i < sizeof(hostile_logins) / sizeof(hostile_logins[0]); i++) {
		struct ldap_filter_vars v = {.login = hostile_logins[i],
		                             .login_len = strlen(hostile_logins[i])};
		const char *err = NULL;
		char *f = ldap_filter_expand(tmpl, &v, LDAP_ESCAPE_FILTER, &err);
		LDAP *ld = NULL;
		int msgid;

		assert_non_null(f);
		assert_int_equal(count_parens(f), count_parens(tmpl));
		assert_null(strchr(f, '*'));
		assert_int_equal(ldap_filter_check_template(f, "", true, &err), 0);
		/* libldap must encode it (LDAP_FILTER_ERROR otherwise); the
		 * search itself then fails for want of a server. */
		assert_int_equal(ldap_initialize(&ld, "ldap://127.0.0.1:1/"), LDAP_SUCCESS);
		int rc = ldap_search_ext(ld, "dc=x", LDAP_SCOPE_SUBTREE, f, NULL, 0, NULL, NULL,
		                         NULL, 0, &msgid);
		assert_int_not_equal(rc, LDAP_FILTER_ERROR);
		ldap_unbind_ext(ld, NULL, NULL);
		free(f);
	}
}

static void
test_expand_tokens(void **state)
{
	struct ldap_filter_vars v = {
	        .login = "Al*ce@Ex(a)mple.test", .login_len = 20, .user_dn = "uid=a\\2cb,dc=x"};
	const char *err = NULL;
	char *f;

	f = ldap_filter_expand("s=%s u=%u d=%d D=%D %%", &v, LDAP_ESCAPE_FILTER, &err);
	assert_string_equal(f, "s=Al\\2ace@Ex\\28a\\29mple.test u=Al\\2ace d=Ex\\28a\\29mple.test "
	                       "D=uid=a\\5c2cb,dc=x %");
	free(f);
	/* No '@': %u is the login, %d empty; the last '@' splits. */
	v.login = "bob";
	v.login_len = 3;
	f = ldap_filter_expand("[%u][%d]", &v, LDAP_ESCAPE_FILTER, &err);
	assert_string_equal(f, "[bob][]");
	free(f);
	v.login = "a@b@c";
	v.login_len = 5;
	f = ldap_filter_expand("[%u][%d]", &v, LDAP_ESCAPE_DN, &err);
	assert_string_equal(f, "[a@b][c]");
	free(f);
	/* A NUL inside the login is escaped, not a terminator. */
	v.login = "a\0b@c";
	v.login_len = 5;
	f = ldap_filter_expand("(uid=%s)", &v, LDAP_ESCAPE_FILTER, &err);
	assert_string_equal(f, "(uid=a\\00b@c)");
	free(f);
	/* DN template. */
	v.login = " x,y@d ";
	v.login_len = 7;
	f = ldap_filter_expand("uid=%u,ou=%d,dc=x", &v, LDAP_ESCAPE_DN, &err);
	assert_string_equal(f, "uid=\\20x\\2cy,ou=d\\20,dc=x");
	free(f);
	/* Unknown token, and %D without a DN. */
	v.user_dn = NULL;
	assert_null(ldap_filter_expand("(uid=%x)", &v, LDAP_ESCAPE_FILTER, &err));
	assert_non_null(err);
	assert_null(ldap_filter_expand("(member=%D)", &v, LDAP_ESCAPE_FILTER, &err));
	assert_null(ldap_filter_expand("(uid=%", &v, LDAP_ESCAPE_FILTER, &err));
}

struct tmpl_case {
	const char *tmpl;
	const char *allowed;
	bool is_filter;
	bool ok;
};

static const struct tmpl_case tmpl_cases[] = {
        {"(uid=%s)", "sud", true, true},
        {"(&(objectClass=person)(|(uid=%u)(mail=%s)))", "sud", true, true},
        {"(member=%D)", "sudD", true, true},
        {"(member=%D)", "sud", true, false},
        {"(uid=%x)", "sud", true, false},
        {"(uid=%)", "sud", true, false},
        {"uid=%s", "sud", true, false},
        {"(uid=%s", "sud", true, false},
        {"(uid=%s))", "sud", true, false},
        {"(uid=%s)(cn=x)", "sud", true, false},
        {"(cn=a\\28b\\29)", "sud", true, true},
        {"(cn=a\\2)", "sud", true, false},
        {"(cn=100%%)", "sud", true, true},
        {"", "sud", true, false},
        {"(uid=\x01)", "sud", true, false},
        {"uid=%u,ou=people,dc=example,dc=test", "sud", false, true},
        {"%u@corp.example.com", "sud", false, true},
        {"uid=%D,dc=x", "sud", false, false},
};

static void
test_check_template(void **state)
{
	for (size_t i = 0; i < sizeof(tmpl_cases) / sizeof(tmpl_cases[0]); i++) {
		const struct tmpl_case *c = &tmpl_cases[i];
		const char *err = NULL;
		int r = ldap_filter_check_template(c->tmpl, c->allowed, c->is_filter, &err);
		if ((r == 0) != c->ok)
			fail_msg("case %zu \"%s\": got %d (%s)", i, c->tmpl, r, err ? err : "");
		if (r < 0)
			assert_non_null(err);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_escape_table),   cmocka_unit_test(test_escape_every_byte),
	        cmocka_unit_test(test_expand_hostile), cmocka_unit_test(test_expand_tokens),
	        cmocka_unit_test(test_check_template),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
