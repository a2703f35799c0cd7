/*
 * test_auth_throttle.c - brute-force counting in the auth process: distinct
 * wrong passwords (one stale password retried is one failure), the growing
 * delay and its cap, lockouts per client, per (client, login) and per login
 * (the lockout shield), their expiry, the sliding window, IPv6 grouping by
 * prefix, allow_networks, a success clearing the pair, and clients that are
 * not addresses.
 *
 * Table-driven: each row is a failure (with the delay and lockout it must
 * cause), a check (with the lockout in force), or a success, at a time in ms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "auth/auth_throttle.h"
#include "lib/keyhash.h"
#include "lib/net.h"
#include "auth/protection_config.h"

enum op { FAIL, CHECK, OK };

struct row {
	enum op op;
	uint64_t t;
	const char *client;
	const char *login;
	const char *pw;
	unsigned delay;                 /* FAIL: expected delay_ms */
	enum auth_throttle_scope scope; /* FAIL: lockout started; CHECK: in force */
};

#define F(t, c, l, pw, delay, scope)                                                               \
	{                                                                                          \
		FAIL, t, c, l, pw, delay, scope                                                    \
	}
#define C(t, c, l, scope)                                                                          \
	{                                                                                          \
		CHECK, t, c, l, NULL, 0, scope                                                     \
	}
#define S(t, c, l)                                                                                 \
	{                                                                                          \
		OK, t, c, l, NULL, 0, THROTTLE_NONE                                                \
	}
#define NONE THROTTLE_NONE
#define CLIENT THROTTLE_CLIENT
#define PAIR THROTTLE_CLIENT_LOGIN
#define LOGIN THROTTLE_LOGIN

static struct keyhash *kh;
static struct cidr allow;

/* window 60 s, delay from the 3rd distinct failure: 100, 200, then the cap
 * 350; lockouts: pair 3, login 4, client 6, for 10 s; allow 10.9.0.0/16. */
static void
base_config(struct protection_config *pc)
{
	const char *err;

	memset(pc, 0, sizeof(*pc));
	pc->throttle_window = 60;
	pc->throttle_size = 1000;
	pc->ipv6_prefix = 64;
	pc->delay_after = 2;
	pc->delay_ms = 100;
	pc->delay_max_ms = 350;
	pc->lockout_client_login_failures = 3;
	pc->lockout_login_failures = 4;
	pc->lockout_client_failures = 6;
	pc->lockout_time = 10;
	assert_int_equal(net_parse_cidr("10.9.0.0/16", &allow, &err), 0);
	pc->allow_networks = &allow;
	pc->n_allow_networks = 1;
}

static int
setup(void **state)
{
	kh = keyhash_new();
	return 0;
}

static int
teardown(void **state)
{
	keyhash_free(kh);
	return 0;
}

static void
run(const struct protection_config *pc, const struct row *rows, size_t n)
{
	struct auth_throttle *t = auth_throttle_new(pc, kh);

	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct auth_throttle_result res;

		print_message("  row %zu\n", i);
		switch (r->op) {
		case FAIL:
			auth_throttle_failure(t, r->client, r->login, r->pw, strlen(r->pw), r->t,
			                      &res);
			assert_int_equal(res.delay_ms, r->delay);
			assert_int_equal(res.locked, r->scope);
			break;
		case CHECK:
			assert_int_equal(auth_throttle_check(t, r->client, r->login, r->t, NULL),
			                 r->scope);
			break;
		case OK:
			auth_throttle_success(t, r->client, r->login);
			break;
		}
	}
	auth_throttle_free(t);
}

/* The stale phone: one old password, retried all day, is one failure. */
static void
test_same_password(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "alice", "old", 0, NONE),
	        F(1000, "192.0.2.1", "alice", "old", 0, NONE),
	        F(2000, "192.0.2.1", "alice", "old", 0, NONE),
	        F(3000, "192.0.2.1", "alice", "old", 0, NONE),
	        F(4000, "192.0.2.1", "Alice", "old", 0, NONE), /* case folded */
	        F(5000, "192.0.2.1", "alice", "old", 0, NONE),
	        F(6000, "192.0.2.1", "alice", "old", 0, NONE),
	        C(7000, "192.0.2.1", "alice", NONE),
	        /* Its owner, with the new password, is never locked out. */
	        S(7000, "192.0.2.1", "alice"),
	        C(7001, "192.0.2.1", "alice", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_pair_lockout_and_expiry(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "alice", "p1", 0, NONE),
	        F(1, "192.0.2.1", "alice", "p2", 0, NONE),
	        F(2, "192.0.2.1", "alice", "p3", 100, PAIR),
	        C(3, "192.0.2.1", "alice", PAIR),
	        C(3, "192.0.2.1", "ALICE", PAIR),
	        /* Only the pair: another login from there, alice from elsewhere. */
	        C(3, "192.0.2.1", "bob", NONE),
	        C(3, "192.0.2.2", "alice", NONE),
	        C(10001, "192.0.2.1", "alice", PAIR),
	        C(10002, "192.0.2.1", "alice", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

/* Many clients, one login: the shield stops it reaching the directory. */
static void
test_login_shield(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "bob", "a", 0, NONE),   F(1, "192.0.2.2", "bob", "b", 0, NONE),
	        F(2, "192.0.2.3", "bob", "c", 100, NONE), F(3, "192.0.2.4", "bob", "d", 200, LOGIN),
	        C(4, "198.51.100.7", "bob", LOGIN),       C(4, "198.51.100.7", "carol", NONE),
	        C(10004, "198.51.100.7", "bob", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

/* One client, many logins. */
static void
test_client_lockout(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.9", "u1", "x", 0, NONE),   F(1, "192.0.2.9", "u2", "x", 0, NONE),
	        F(2, "192.0.2.9", "u3", "x", 100, NONE), F(3, "192.0.2.9", "u4", "x", 200, NONE),
	        F(4, "192.0.2.9", "u5", "x", 350, NONE), F(5, "192.0.2.9", "u6", "x", 350, CLIENT),
	        C(6, "192.0.2.9", "anyone", CLIENT),     C(6, "192.0.2.10", "anyone", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_ipv6_prefix(void **state)
{
	static const struct row rows[] = {
	        F(0, "2001:db8:1:2::1", "u1", "x", 0, NONE),
	        F(1, "2001:db8:1:2::99", "u2", "x", 0, NONE),
	        F(2, "2001:db8:1:2:aaaa::5", "u3", "x", 100, NONE),
	        F(3, "2001:db8:1:3::1", "u4", "x", 0, NONE), /* another /64 */
	        F(4, "2001:db8:1:2::7", "u5", "x", 200, NONE),
	        F(5, "2001:db8:1:2::8", "u6", "x", 350, NONE),
	        F(6, "2001:db8:1:2::9", "u7", "x", 350, CLIENT),
	        C(7, "2001:db8:1:2:ffff::1", "u9", CLIENT),
	        C(7, "2001:db8:1:3::1", "u9", NONE),
	        /* An IPv4 client through a dual-stack socket is the IPv4 client. */
	        F(8, "::ffff:192.0.2.50", "v1", "x", 0, NONE),
	        F(9, "192.0.2.50", "v1", "y", 0, NONE),
	        F(10, "192.0.2.50", "v1", "z", 100, PAIR),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_allow_networks(void **state)
{
	static const struct row rows[] = {
	        F(0, "10.9.1.1", "alice", "a", 0, NONE), F(1, "10.9.1.1", "alice", "b", 0, NONE),
	        F(2, "10.9.1.1", "alice", "c", 0, NONE), F(3, "10.9.1.1", "alice", "d", 0, NONE),
	        F(4, "10.9.1.1", "alice", "e", 0, NONE), F(5, "10.9.1.1", "alice", "f", 0, NONE),
	        F(6, "10.9.1.1", "alice", "g", 0, NONE), C(7, "10.9.1.1", "alice", NONE),
	        /* Not counted for the login either. */
	        C(7, "192.0.2.1", "alice", NONE),
	        F(8, "10.10.0.1", "alice", "a", 0, NONE), /* outside the /16 */
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_window_slides(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "alice", "p1", 0, NONE),
	        F(30000, "192.0.2.1", "alice", "p2", 0, NONE),
	        /* p1 left the window: p3 is the second failure, not the third. */
	        F(60000, "192.0.2.1", "alice", "p3", 0, NONE),
	        F(60001, "192.0.2.1", "alice", "p4", 100, PAIR),
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_success_clears_pair(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "alice", "typo1", 0, NONE),
	        F(1, "192.0.2.1", "alice", "typo2", 0, NONE),
	        S(2, "192.0.2.1", "alice"),
	        F(3, "192.0.2.1", "alice", "typo3", 0, NONE),
	        F(4, "192.0.2.1", "alice", "typo4", 0, NONE),
	        C(5, "192.0.2.1", "alice", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	/* Only the pair counts here: no login or client limit, no delay. */
	pc.lockout_login_failures = 0;
	pc.lockout_client_failures = 0;
	pc.delay_after = 100;
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

/* A client field that is no address (a test harness, an old worker) is
 * keyed by its text. Lockouts off: nothing ever locks. */
static void
test_odd_clients_and_off(void **state)
{
	static const struct row rows[] = {
	        F(0, "", "alice", "a", 0, NONE),   F(1, "", "alice", "b", 0, NONE),
	        F(2, "", "alice", "c", 0, NONE),   F(3, "", "alice", "d", 0, NONE),
	        F(4, "-", "alice", "e", 0, NONE),  F(5, "-", "alice", "f", 0, NONE),
	        F(6, "xx", "alice", "g", 0, NONE), C(7, "", "alice", NONE),
	};
	struct protection_config pc;

	base_config(&pc);
	pc.lockout_login_failures = 0;
	pc.lockout_client_failures = 0;
	pc.lockout_client_login_failures = 0;
	pc.delay_ms = 0;
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
	assert_string_equal(auth_throttle_scope_name(THROTTLE_CLIENT), "client");
	assert_string_equal(auth_throttle_scope_name(THROTTLE_CLIENT_LOGIN), "client_login");
	assert_string_equal(auth_throttle_scope_name(THROTTLE_LOGIN), "login");
	assert_string_equal(auth_throttle_scope_name(THROTTLE_NONE), "none");
}

/* throttle_size bounds memory: old keys are evicted. */
static void
test_size_bound(void **state)
{
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	char login[32];

	base_config(&pc);
	pc.throttle_size = 16;
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 100; i++) {
		snprintf(login, sizeof(login), "user%d", i);
		auth_throttle_failure(t, "", login, "x", 1, (uint64_t)i, &r);
	}
	assert_true(auth_throttle_count(t) <= 16);
	auth_throttle_free(t);
}

struct seen {
	unsigned n;
	char text[8][128];
};

static void
collect(void *arg, const struct auth_throttle_lockout *l)
{
	struct seen *s = arg;

	if (s->n < 8)
		snprintf(s->text[s->n], sizeof(s->text[0]), "%s %s %s %u %u",
		         auth_throttle_scope_name(l->scope), l->client ? l->client : "-",
		         l->login ? l->login : "-", l->failures, l->remaining_s);
	s->n++;
}

static bool
seen_has(const struct seen *s, const char *text)
{
	for (unsigned i = 0; i < s->n && i < 8; i++)
		if (strcmp(s->text[i], text) == 0)
			return true;
	return false;
}

/* The admin's view: every lockout in force with who it is for, none once
 * expired; unlock by login ends the login's and its pairs' lockouts (any
 * case), by address the client's and its pairs', and forgets the counts. */
static void
test_lockouts_and_unlock(void **state)
{
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	struct seen s;
	char pw[16];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	memset(&s, 0, sizeof(s));
	auth_throttle_lockouts(t, 0, collect, &s);
	assert_int_equal(s.n, 0);
	/* 4 wrong passwords for Ann from 192.0.2.1: pair (3) and login (4). */
	for (int i = 0; i < 4; i++) {
		snprintf(pw, sizeof(pw), "w%d", i);
		auth_throttle_failure(t, "192.0.2.1", "Ann", pw, strlen(pw), 1000, &r);
	}
	/* 6 from 192.0.2.9 for six logins: the client (6). */
	for (int i = 0; i < 6; i++) {
		char login[16];
		snprintf(login, sizeof(login), "u%d", i);
		auth_throttle_failure(t, "192.0.2.9", login, "x", 1, 2000, &r);
	}
	memset(&s, 0, sizeof(s));
	auth_throttle_lockouts(t, 2500, collect, &s);
	assert_int_equal(s.n, 3);
	assert_true(seen_has(&s, "client_login 192.0.2.1 ann 3 9"));
	assert_true(seen_has(&s, "login - ann 4 9"));
	assert_true(seen_has(&s, "client 192.0.2.9 - 6 10"));
	/* Expired: nothing listed. */
	memset(&s, 0, sizeof(s));
	auth_throttle_lockouts(t, 60000, collect, &s);
	assert_int_equal(s.n, 0);

	/* Unlock by login, in another case: both of Ann's lockouts end. */
	assert_int_equal(auth_throttle_unlock(t, "ANN", 3000), 2);
	assert_int_equal(auth_throttle_check(t, "192.0.2.1", "ann", 3000, NULL), THROTTLE_NONE);
	assert_int_equal(auth_throttle_check(t, "192.0.2.9", "u1", 3000, NULL), THROTTLE_CLIENT);
	/* Her count starts afresh: one more failure locks nothing. */
	auth_throttle_failure(t, "192.0.2.3", "ann", "w9", 2, 3000, &r);
	assert_int_equal(r.locked, THROTTLE_NONE);
	/* By address. */
	assert_int_equal(auth_throttle_unlock(t, "nobody-locked", 3000), 0);
	assert_int_equal(auth_throttle_unlock(t, "192.0.2.9", 3000), 1);
	assert_int_equal(auth_throttle_check(t, "192.0.2.9", "u1", 3000, NULL), THROTTLE_NONE);
	memset(&s, 0, sizeof(s));
	auth_throttle_lockouts(t, 3000, collect, &s);
	assert_int_equal(s.n, 0);
	auth_throttle_free(t);
}

/* An IPv6 client is locked as its network: unlocking any address in it
 * ends the lockout. */
static void
test_unlock_ipv6_network(void **state)
{
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 6; i++) {
		char login[16];
		snprintf(login, sizeof(login), "u%d", i);
		auth_throttle_failure(t, "2001:db8:1:2::5", login, "x", 1, 1000, &r);
	}
	assert_int_equal(auth_throttle_check(t, "2001:db8:1:2::77", "v", 1000, NULL),
	                 THROTTLE_CLIENT);
	assert_int_equal(auth_throttle_unlock(t, "2001:db8:1:2::99", 1000), 1);
	assert_int_equal(auth_throttle_check(t, "2001:db8:1:2::5", "v", 1000, NULL), THROTTLE_NONE);
	auth_throttle_free(t);
}

/* A reload: the same throttle goes on with new settings. Lockouts and the
 * failures counted stay; a larger cap (higher thresholds) makes room for
 * more failures; a smaller throttle_size keeps the most recently used. */
static void
test_reconfigure_keeps_counts(void **state)
{
	struct protection_config pc, pc2;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	char login[32];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	/* alice: the pair locked at its 3rd failure. */
	auth_throttle_failure(t, "192.0.2.1", "alice", "a", 1, 0, &r);
	auth_throttle_failure(t, "192.0.2.1", "alice", "b", 1, 1, &r);
	auth_throttle_failure(t, "192.0.2.1", "alice", "c", 1, 2, &r);
	assert_int_equal(r.locked, PAIR);
	/* bob: two failures from elsewhere. */
	auth_throttle_failure(t, "192.0.2.9", "bob", "a", 1, 3, &r);
	auth_throttle_failure(t, "192.0.2.9", "bob", "b", 1, 4, &r);

	/* Same sizes, other thresholds and a longer lockout: in place. */
	pc2 = pc;
	pc2.lockout_login_failures = 3;
	pc2.lockout_time = 100;
	pc = pc2;
	auth_throttle_reconfigure(t, &pc);
	assert_int_equal(auth_throttle_check(t, "192.0.2.1", "alice", 5, NULL), PAIR);
	/* bob's third failure locks the pair and now also shields his login
	 * (new threshold 3): from anywhere else too. */
	auth_throttle_failure(t, "192.0.2.9", "bob", "c", 1, 6, &r);
	assert_int_equal(r.locked, PAIR);
	assert_int_equal(r.failures, 3);
	assert_int_equal(auth_throttle_check(t, "198.51.100.1", "bob", 7, NULL), LOGIN);

	/* A larger cap and a smaller table: entries move, newest kept. */
	pc2.lockout_client_failures = 200;
	pc2.throttle_size = 5;
	pc = pc2;
	auth_throttle_reconfigure(t, &pc);
	assert_true(auth_throttle_count(t) <= 5);
	assert_int_equal(auth_throttle_check(t, "198.51.100.1", "bob", 8, NULL), LOGIN);
	/* The moved entries kept who they lock out, for the admin's listing. */
	struct seen sn;
	memset(&sn, 0, sizeof(sn));
	auth_throttle_lockouts(t, 8, collect, &sn);
	bool login_listed = false;
	for (unsigned i = 0; i < sn.n && i < 8; i++)
		login_listed |= strncmp(sn.text[i], "login - bob ", 12) == 0;
	assert_true(login_listed);
	/* The client entry kept its failures and takes more than the old cap. */
	for (int i = 0; i < 30; i++) {
		snprintf(login, sizeof(login), "%d", i);
		auth_throttle_failure(t, "192.0.2.9", "bob", login, strlen(login), 10 + i, &r);
	}
	assert_int_equal(r.failures, 33);
	assert_true(auth_throttle_count(t) <= 5);
	auth_throttle_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_same_password),
	        cmocka_unit_test(test_pair_lockout_and_expiry),
	        cmocka_unit_test(test_login_shield),
	        cmocka_unit_test(test_client_lockout),
	        cmocka_unit_test(test_ipv6_prefix),
	        cmocka_unit_test(test_allow_networks),
	        cmocka_unit_test(test_window_slides),
	        cmocka_unit_test(test_success_clears_pair),
	        cmocka_unit_test(test_odd_clients_and_off),
	        cmocka_unit_test(test_size_bound),
	        cmocka_unit_test(test_lockouts_and_unlock),
	        cmocka_unit_test(test_unlock_ipv6_network),
	        cmocka_unit_test(test_reconfigure_keeps_counts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
