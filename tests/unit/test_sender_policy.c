/* SPDX-License-Identifier: ISC */
/*
 * test_sender_policy.c - sender_login_match: the user's own addresses (from
 * the source), the login as an address, the login at default_domain, case,
 * the null sender, sender_allow_users, listeners without the check,
 * look-alikes that must not pass (prefixes, suffixes, list neighbours), and
 * an identity that is no address (an LDAP DN) with the login as typed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/config.h"
#include "smtpd/smtpd.h"
#include "smtpd/sender_policy.h"

#define MISMATCH "553 5.7.1 Sender address rejected: not owned by the authenticated user"

static void
test_rows(void **state)
{
	static char *allow[] = {"webmail", "Relay@Example.org", NULL};
	static const struct {
		bool check;         /* listener's sender_login_match */
		const char *domain; /* listener's default_domain */
		const char *user, *addresses, *from;
		bool ok;
		const char *login; /* as typed; NULL: the user */
	} rows[] = {
	        /* The listener does not check. */
	        {false, NULL, "alice", NULL, "anyone@else.test", true, NULL},
	        /* Addresses from the source, any case. */
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org",
	         "a.smith@example.org", true, NULL},
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org",
	         "A.Smith@EXAMPLE.org", true, NULL},
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org", "smith@example.org",
	         false, NULL},
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org", "a.smith@example.or",
	         false, NULL},
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org",
	         "a.smith@example.org.evil", false, NULL},
	        {true, NULL, "alice", "alice@example.org,a.smith@example.org",
	         "alice@example.org,a.smith@example.org", false, NULL},
	        {true, NULL, "alice", "", "alice@example.org", false, NULL},
	        /* The login itself, when it is an address. */
	        {true, NULL, "bob@example.org", NULL, "bob@example.org", true, NULL},
	        {true, NULL, "bob@example.org", NULL, "BOB@example.ORG", true, NULL},
	        {true, NULL, "bob@example.org", NULL, "bob2@example.org", false, NULL},
	        {true, NULL, "bob@example.org", "b@example.org", "b@example.org", true, NULL},
	        {true, NULL, "bob@example.org", "b@example.org", "bob@example.org", true, NULL},
	        /* A bare login at the listener's default_domain. */
	        {true, "example.org", "carol", NULL, "carol@example.org", true, NULL},
	        {true, "example.org", "carol", NULL, "carol@Example.Org", true, NULL},
	        {true, "example.org", "carol", NULL, "carol@example.net", false, NULL},
	        {true, "example.org", "carol", NULL, "caro@example.org", false, NULL},
	        {true, "example.org", "carol", NULL, "carolx@example.org", false, NULL},
	        {true, NULL, "carol", NULL, "carol@example.org", false, NULL},
	        /* The null sender has no owner. */
	        {true, NULL, "dave", NULL, "", true, NULL},
	        /* sender_allow_users. */
	        {true, NULL, "webmail", NULL, "anyone@example.org", true, NULL},
	        {true, NULL, "WEBMAIL", NULL, "anyone@example.org", true, NULL},
	        {true, NULL, "relay@example.org", NULL, "x@y.test", true, NULL},
	        {true, NULL, "webmail2", NULL, "x@y.test", false, NULL},
	        /* No user at all (cannot happen after AUTH): refused. */
	        {true, NULL, "", NULL, "x@y.test", false, NULL},
	        {true, NULL, NULL, NULL, "x@y.test", false, NULL},
	        /* An LDAP identity: the login as typed, blanks dropped. */
	        {true, "example.org", "cn=erin,ou=people,dc=example,dc=org", NULL,
	         "erin@example.org", true, " Erin "},
	        {true, NULL, "cn=erin,ou=people,dc=example,dc=org", NULL, "erin@example.org", true,
	         "erin@example.org "},
	        {true, "example.org", "cn=erin,ou=people,dc=example,dc=org", NULL,
	         "cn=erin@example.org", false, "erin"},
	        {true, "example.org", "cn=erin,ou=people,dc=example,dc=org", NULL,
	         "boss@example.org", false, "erin"},
	        /* sender_allow_users matches the identity or the login. */
	        {true, NULL, "cn=webmail,dc=example,dc=org", NULL, "x@y.test", true, "webmail"},
	        {true, NULL, "cn=x,dc=example,dc=org", NULL, "x@y.test", false, "  "},
	};
	struct smtpd_protection pc;

	memset(&pc, 0, sizeof(pc));
	pc.sender_allow_users = allow;
	pc.n_sender_allow_users = 2;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct listener_cfg l;
		const char *got;

		memset(&l, 0, sizeof(l));
		l.sender_login_match = rows[i].check;
		l.default_domain = (char *)rows[i].domain;
		got = sender_policy_check(&l, &pc, rows[i].user, rows[i].login, rows[i].addresses,
		                          rows[i].from);
		print_message("  row %zu: %s as %s -> %s\n", i,
		              rows[i].user ? rows[i].user : "(null)", rows[i].from,
		              got ? got : "ok");
		if (rows[i].ok)
			assert_null(got);
		else
			assert_string_equal(got, MISMATCH);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
