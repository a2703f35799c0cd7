/* SPDX-License-Identifier: ISC */
/*
 * test_auth_throttle.c - brute-force counting in the auth process: distinct
 * wrong passwords (one stale password retried is one failure), the growing
 * delay and its cap, lockouts per client, per (client, login) and per login
 * (the lockout shield), their expiry, the sliding window, IPv6 grouping by
 * prefix, allow_networks (exempt per client and per pair, never from the
 * shield), a success clearing the pair, clients that are not addresses, and
 * the normalized login.
 *
 * Table-driven: each row is a failure (with the delay and lockout it must
 * cause), a check (with the lockout in force), or a success, at a time in ms.
 * Then attempts in flight: room taken before the check (parallel guesses
 * wait, and a lockout answers them), a password in flight twice, a success
 * or a dropped attempt giving the room back, and the canonical identity
 * counted beside the login.
 */
#include <setjmp.h>
#include <stdarg.h>
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

/* What an admission answered. */
struct admit {
	bool called;
	enum auth_throttle_admission a;
	enum auth_throttle_scope scope;
};

static void
on_admit(void *arg, enum auth_throttle_admission a, enum auth_throttle_scope scope)
{
	struct admit *ad = arg;

	assert_false(ad->called);
	ad->called = true;
	ad->a = a;
	ad->scope = scope;
}

static void
on_settle(void *arg, const struct auth_throttle_result *r)
{
	*(struct auth_throttle_result *)arg = *r;
}

/* An attempt admitted at once, or fail the test. */
static struct auth_throttle_ticket *
admitted(struct auth_throttle *t, const char *client, const char *login, const char *pw,
         uint64_t now)
{
	struct auth_throttle_ticket *tk =
	        auth_throttle_ticket_new(t, client, login, pw, strlen(pw));
	struct admit ad = {0};

	auth_throttle_admit(tk, now, on_admit, &ad);
	assert_true(ad.called);
	assert_int_equal(ad.a, THROTTLE_GO);
	return tk;
}

static void
settle(struct auth_throttle_ticket *tk, enum throttle_outcome o, uint64_t now,
       struct auth_throttle_result *r)
{
	struct auth_throttle_result dummy;

	memset(r != NULL ? r : &dummy, 0xff, sizeof(dummy));
	auth_throttle_settle(tk, o, now, on_settle, r != NULL ? r : &dummy);
	auth_throttle_ticket_free(tk);
}

/* The lockout a fresh attempt meets: NONE when admitted (the attempt is
 * then released), else the scope that refused or shielded it. */
static enum auth_throttle_scope
check(struct auth_throttle *t, const char *client, const char *login, uint64_t now)
{
	struct auth_throttle_ticket *tk = auth_throttle_ticket_new(t, client, login, "probe", 5);
	struct admit ad = {0};

	auth_throttle_admit(tk, now, on_admit, &ad);
	assert_true(ad.called);
	switch (ad.a) {
	case THROTTLE_GO:
		assert_int_equal(ad.scope, THROTTLE_NONE);
		settle(tk, THROTTLE_RELEASE, now, NULL);
		return THROTTLE_NONE;
	case THROTTLE_SHIELDED:
		assert_int_equal(ad.scope, THROTTLE_LOGIN);
		break;
	case THROTTLE_REFUSED:
		assert_true(ad.scope == THROTTLE_CLIENT || ad.scope == THROTTLE_CLIENT_LOGIN);
		break;
	case THROTTLE_BUSY:
		fail();
	}
	auth_throttle_ticket_free(tk);
	return ad.scope;
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
			settle(admitted(t, r->client, r->login, r->pw, r->t), THROTTLE_FAILURE,
			       r->t, &res);
			assert_int_equal(res.delay_ms, r->delay);
			assert_int_equal(res.locked, r->scope);
			break;
		case CHECK:
			assert_int_equal(check(t, r->client, r->login, r->t), r->scope);
			break;
		case OK:
			settle(admitted(t, r->client, r->login, "right", r->t), THROTTLE_SUCCESS,
			       r->t, NULL);
			break;
		}
	}
	assert_int_equal(auth_throttle_waiting(t), 0);
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

/* allow_networks: a webmail front end is not locked out per client or per
 * pair, but the client address is only what the worker says: the login's
 * shield and its delays hold for it too. */
static void
test_allow_networks(void **state)
{
	static const struct row rows[] = {
	        /* Seven logins from one allowed client: no client lockout (6). */
	        F(0, "10.9.1.1", "u1", "x", 0, NONE), F(1, "10.9.1.1", "u2", "x", 0, NONE),
	        F(2, "10.9.1.1", "u3", "x", 0, NONE), F(3, "10.9.1.1", "u4", "x", 0, NONE),
	        F(4, "10.9.1.1", "u5", "x", 0, NONE), F(5, "10.9.1.1", "u6", "x", 0, NONE),
	        F(6, "10.9.1.1", "u7", "x", 0, NONE), C(7, "10.9.1.1", "u8", NONE),
	        /* Three wrong passwords for bob: no pair lockout (3). */
	        F(8, "10.9.2.2", "bob", "a", 0, NONE), F(9, "10.9.2.2", "bob", "b", 0, NONE),
	        F(10, "10.9.2.2", "bob", "c", 100, NONE), C(11, "10.9.2.2", "bob", NONE),
	        /* The fourth locks the login (4), for every client. */
	        F(12, "10.9.2.2", "bob", "d", 200, LOGIN), C(13, "10.9.2.2", "bob", LOGIN),
	        C(13, "192.0.2.1", "bob", LOGIN),
	        F(14, "10.10.0.1", "alice", "a", 0, NONE), /* outside the /16 */
	};
	struct protection_config pc;

	base_config(&pc);
	run(&pc, rows, sizeof(rows) / sizeof(rows[0]));
}

/* " ANN", "ann " and "Ann" are one login (login_norm.h). */
static void
test_normalized_login(void **state)
{
	static const struct row rows[] = {
	        F(0, "192.0.2.1", "ann", "a", 0, NONE),
	        F(1, "192.0.2.2", " ANN", "b", 0, NONE),
	        F(2, "192.0.2.3", "ann ", "c", 100, NONE),
	        F(3, "192.0.2.4", "  Ann  ", "d", 200, LOGIN),
	        C(4, "198.51.100.1", "ANN", LOGIN),
	        /* The pair too. */
	        F(5, "192.0.2.5", "cy", "a", 0, NONE),
	        F(6, "192.0.2.5", "CY ", "b", 0, NONE),
	        F(7, "192.0.2.5", " cy", "c", 100, PAIR),
	        C(8, "192.0.2.5", "Cy", PAIR),
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
	char login[32];

	base_config(&pc);
	pc.throttle_size = 16;
	pc.lockout_client_failures = 0;
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 100; i++) {
		snprintf(login, sizeof(login), "user%d", i);
		settle(admitted(t, "", login, "x", (uint64_t)i), THROTTLE_FAILURE, (uint64_t)i,
		       NULL);
	}
	assert_true(auth_throttle_count(t) <= 16);
	auth_throttle_free(t);
}

/* Successes and released attempts leave nothing behind: the table holds
 * keys with failures, attempts in flight or lockouts only. */
static void
test_idle_keys_dropped(void **state)
{
	struct protection_config pc;
	struct auth_throttle *t;
	char login[32];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 50; i++) {
		snprintf(login, sizeof(login), "user%d", i);
		settle(admitted(t, "192.0.2.1", login, "right", (uint64_t)i), THROTTLE_SUCCESS,
		       (uint64_t)i, NULL);
		settle(admitted(t, "192.0.2.2", login, "x", (uint64_t)i), THROTTLE_RELEASE,
		       (uint64_t)i, NULL);
	}
	assert_int_equal(auth_throttle_count(t), 0);
	/* A failure stays (client, pair, login), until a success clears the
	 * pair; the client's and the login's are kept. */
	settle(admitted(t, "192.0.2.3", "eve", "x", 100), THROTTLE_FAILURE, 100, NULL);
	assert_int_equal(auth_throttle_count(t), 3);
	settle(admitted(t, "192.0.2.3", "eve", "right", 101), THROTTLE_SUCCESS, 101, NULL);
	assert_int_equal(auth_throttle_count(t), 2);
	auth_throttle_free(t);
}

/* Many wrong passwords for one login at once, from four clients: only as
 * many as the login's limit (4) are let through; the others wait, and the
 * lockout their failures start answers them all (shielded). */
static void
test_parallel_guesses(void **state)
{
	static const char *const clients[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"};
	struct auth_throttle_ticket *tk[40];
	struct admit ad[40];
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	unsigned go = 0, shielded = 0;
	char pw[24];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	memset(ad, 0, sizeof(ad));
	for (int i = 0; i < 40; i++) {
		snprintf(pw, sizeof(pw), "guess%d", i);
		tk[i] = auth_throttle_ticket_new(t, clients[i % 4], "bob", pw, strlen(pw));
		auth_throttle_admit(tk[i], 100, on_admit, &ad[i]);
	}
	for (int i = 0; i < 40; i++)
		go += ad[i].called && ad[i].a == THROTTLE_GO;
	assert_int_equal(go, 4);
	assert_int_equal(auth_throttle_waiting(t), 36);
	/* The four fail: the fourth failure locks the login, and every
	 * attempt still waiting is answered "shielded". */
	for (int i = 0; i < 40; i++) {
		if (ad[i].called && ad[i].a == THROTTLE_GO) {
			settle(tk[i], THROTTLE_FAILURE, 200, &r);
			tk[i] = NULL;
		}
	}
	assert_int_equal(r.locked, THROTTLE_LOGIN);
	assert_int_equal(auth_throttle_waiting(t), 0);
	for (int i = 0; i < 40; i++) {
		assert_true(ad[i].called);
		shielded += ad[i].a == THROTTLE_SHIELDED;
		auth_throttle_ticket_free(tk[i]);
	}
	assert_int_equal(shielded, 36);
	auth_throttle_free(t);
}

/* One client, 40 logins at once, client limit 6: six go, the rest wait;
 * the six fail, the client is locked out and everyone waiting is refused
 * without reaching a source. The same from an allow-listed client: it has
 * no per-client limit, so every login goes. */
static void
test_parallel_guesses_one_client(void **state)
{
	struct auth_throttle_ticket *tk[40];
	struct admit ad[40];
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	unsigned go = 0;
	char login[24];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	memset(ad, 0, sizeof(ad));
	for (int i = 0; i < 40; i++) {
		snprintf(login, sizeof(login), "user%d", i);
		tk[i] = auth_throttle_ticket_new(t, "192.0.2.20", login, "guess", 5);
		auth_throttle_admit(tk[i], 100, on_admit, &ad[i]);
	}
	for (int i = 0; i < 40; i++)
		go += ad[i].called && ad[i].a == THROTTLE_GO;
	assert_int_equal(go, 6);
	assert_int_equal(auth_throttle_waiting(t), 34);
	for (int i = 0; i < 40; i++) {
		if (ad[i].called && ad[i].a == THROTTLE_GO) {
			settle(tk[i], THROTTLE_FAILURE, 200, &r);
			tk[i] = NULL;
		}
	}
	assert_int_equal(r.locked, THROTTLE_CLIENT);
	assert_int_equal(auth_throttle_waiting(t), 0);
	for (int i = 0; i < 40; i++) {
		assert_true(ad[i].called);
		if (tk[i] == NULL)
			continue;
		assert_int_equal(ad[i].a, THROTTLE_REFUSED);
		assert_int_equal(ad[i].scope, THROTTLE_CLIENT);
		auth_throttle_ticket_free(tk[i]);
	}

	memset(ad, 0, sizeof(ad));
	go = 0;
	for (int i = 0; i < 40; i++) {
		snprintf(login, sizeof(login), "other%d", i);
		tk[i] = auth_throttle_ticket_new(t, "10.9.1.1", login, "guess", 5);
		auth_throttle_admit(tk[i], 300, on_admit, &ad[i]);
		go += ad[i].called && ad[i].a == THROTTLE_GO;
	}
	assert_int_equal(go, 40);
	for (int i = 0; i < 40; i++)
		settle(tk[i], THROTTLE_RELEASE, 400, NULL);
	auth_throttle_free(t);
}

/* One client, one login, pair limit 3: a success gives its room back at
 * once; an attempt dropped half way (freed unsettled) too, on the next
 * tick; the same password twice in flight waits for the first. */
static void
test_room_given_back(void **state)
{
	struct auth_throttle_ticket *a, *b, *c, *d, *e;
	struct admit ad_d = {0}, ad_e = {0};
	struct protection_config pc;
	struct auth_throttle *t;

	base_config(&pc);
	pc.lockout_login_failures = 0;
	t = auth_throttle_new(&pc, kh);
	a = admitted(t, "192.0.2.7", "carol", "p1", 0);
	b = admitted(t, "192.0.2.7", "carol", "p2", 0);
	c = admitted(t, "192.0.2.7", "carol", "p3", 0);
	d = auth_throttle_ticket_new(t, "192.0.2.7", "carol", "p4", 2);
	auth_throttle_admit(d, 1, on_admit, &ad_d);
	assert_false(ad_d.called); /* the pair is full */
	settle(a, THROTTLE_SUCCESS, 2, NULL);
	assert_true(ad_d.called);
	assert_int_equal(ad_d.a, THROTTLE_GO);
	/* p2 again, while p2 is in flight: it waits for it. */
	e = auth_throttle_ticket_new(t, "192.0.2.7", "carol", "p2", 2);
	auth_throttle_admit(e, 3, on_admit, &ad_e);
	assert_false(ad_e.called);
	/* b fails: p2 is a known failure now, which takes no room. */
	settle(b, THROTTLE_FAILURE, 4, NULL);
	assert_true(ad_e.called);
	assert_int_equal(ad_e.a, THROTTLE_GO);
	settle(e, THROTTLE_FAILURE, 5, NULL);
	/* c is dropped unsettled: its room comes back on the next tick. */
	memset(&ad_e, 0, sizeof(ad_e));
	e = auth_throttle_ticket_new(t, "192.0.2.7", "carol", "p5", 2);
	auth_throttle_admit(e, 6, on_admit, &ad_e);
	assert_false(ad_e.called);
	auth_throttle_ticket_free(c);
	auth_throttle_tick(t, 7);
	assert_true(ad_e.called);
	assert_int_equal(ad_e.a, THROTTLE_GO);
	settle(d, THROTTLE_RELEASE, 8, NULL);
	settle(e, THROTTLE_RELEASE, 8, NULL);
	auth_throttle_free(t);
}

/* A canonical identity (an LDAP DN) found through different logins is
 * counted as one: two failures as "ann", two as "ann@example.org" (from two
 * clients, each pair below its limit) lock the identity (4), so a fifth login that finds it is
 * shielded after the lookup, though its own spelling is fresh. */
static void
test_identity(void **state)
{
	static const char *const logins[] = {"ann", "ann@example.org", "Ann", "ANN@example.org"};
	static const char *const clients[] = {"192.0.2.11", "192.0.2.12", "192.0.2.11",
	                                      "192.0.2.12"};
	static const char dn[] = "cn=Ann,ou=people,dc=example,dc=org";
	struct auth_throttle_ticket *tk;
	struct protection_config pc;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	struct admit ad;
	char pw[24];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 4; i++) {
		snprintf(pw, sizeof(pw), "w%d", i);
		tk = admitted(t, clients[i], logins[i], pw, (uint64_t)i);
		memset(&ad, 0, sizeof(ad));
		auth_throttle_admit_identity(tk, dn, pw, strlen(pw), (uint64_t)i, on_admit, &ad);
		assert_true(ad.called);
		assert_int_equal(ad.a, THROTTLE_GO);
		settle(tk, THROTTLE_FAILURE, (uint64_t)i, &r);
	}
	/* No spelling had more than one failure from one client. */
	assert_int_equal(r.locked, THROTTLE_LOGIN);
	tk = admitted(t, "192.0.2.9", "ann@EXAMPLE.org ", "w9", 10);
	memset(&ad, 0, sizeof(ad));
	auth_throttle_admit_identity(tk, dn, "w9", 2, 10, on_admit, &ad);
	assert_true(ad.called);
	assert_int_equal(ad.a, THROTTLE_SHIELDED);
	assert_int_equal(ad.scope, THROTTLE_LOGIN);
	auth_throttle_ticket_free(tk);
	/* A login whose identity is its own spelling is not counted twice. */
	tk = admitted(t, "192.0.2.9", "dave", "x", 11);
	memset(&ad, 0, sizeof(ad));
	auth_throttle_admit_identity(tk, "Dave", "x", 1, 11, on_admit, &ad);
	assert_int_equal(ad.a, THROTTLE_GO);
	settle(tk, THROTTLE_FAILURE, 12, &r);
	assert_int_equal(r.failures, 1);
	auth_throttle_free(t);
}

struct seen {
	unsigned n;
	char text[8][160];
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
 * spelling), by address the client's and its pairs', and forgets the
 * counts. */
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
	/* 3 wrong passwords for Ann from 192.0.2.1 lock the pair (3), a
	 * fourth from 192.0.2.2 the login (4). */
	for (int i = 0; i < 4; i++) {
		snprintf(pw, sizeof(pw), "w%d", i);
		settle(admitted(t, i < 3 ? "192.0.2.1" : "192.0.2.2", " Ann", pw, 1000),
		       THROTTLE_FAILURE, 1000, &r);
	}
	/* 6 from 192.0.2.9 for six logins: the client (6). */
	for (int i = 0; i < 6; i++) {
		char login[16];
		snprintf(login, sizeof(login), "u%d", i);
		settle(admitted(t, "192.0.2.9", login, "x", 2000), THROTTLE_FAILURE, 2000, &r);
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

	/* Unlock by login, in another spelling: both of Ann's lockouts end. */
	assert_int_equal(auth_throttle_unlock(t, "ANN ", 3000), 2);
	assert_int_equal(check(t, "192.0.2.1", "ann", 3000), THROTTLE_NONE);
	assert_int_equal(check(t, "192.0.2.9", "u1", 3000), THROTTLE_CLIENT);
	/* Her count starts afresh: one more failure locks nothing. */
	settle(admitted(t, "192.0.2.3", "ann", "w9", 3000), THROTTLE_FAILURE, 3000, &r);
	assert_int_equal(r.locked, THROTTLE_NONE);
	/* By address. */
	assert_int_equal(auth_throttle_unlock(t, "nobody-locked", 3000), 0);
	assert_int_equal(auth_throttle_unlock(t, "192.0.2.9", 3000), 1);
	assert_int_equal(check(t, "192.0.2.9", "u1", 3000), THROTTLE_NONE);
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

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	for (int i = 0; i < 6; i++) {
		char login[16];
		snprintf(login, sizeof(login), "u%d", i);
		settle(admitted(t, "2001:db8:1:2::5", login, "x", 1000), THROTTLE_FAILURE, 1000,
		       NULL);
	}
	assert_int_equal(check(t, "2001:db8:1:2::77", "v", 1000), THROTTLE_CLIENT);
	assert_int_equal(auth_throttle_unlock(t, "2001:db8:1:2::99", 1000), 1);
	assert_int_equal(check(t, "2001:db8:1:2::5", "v", 1000), THROTTLE_NONE);
	auth_throttle_free(t);
}

/* An identity's lockout (an LDAP DN) is listed under the identity and ends
 * when the admin names it, or the login that locked it. */
static void
test_unlock_identity(void **state)
{
	static const char dn[] = "cn=Zed,ou=people,dc=example,dc=org";
	struct protection_config pc;
	struct auth_throttle *t;
	struct admit ad;
	struct seen s;
	char pw[16];

	base_config(&pc);
	pc.lockout_login_failures = 2;
	t = auth_throttle_new(&pc, kh);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 2; i++) {
			const char *login = i == 0 ? "zed" : "zed@example.org";
			struct auth_throttle_ticket *tk;
			snprintf(pw, sizeof(pw), "r%dw%d", round, i);
			tk = admitted(t, i == 0 ? "192.0.2.41" : "192.0.2.42", login, pw, 100);
			memset(&ad, 0, sizeof(ad));
			auth_throttle_admit_identity(tk, dn, pw, strlen(pw), 100, on_admit, &ad);
			assert_int_equal(ad.a, THROTTLE_GO);
			settle(tk, THROTTLE_FAILURE, 100, NULL);
		}
		memset(&s, 0, sizeof(s));
		auth_throttle_lockouts(t, 200, collect, &s);
		assert_true(seen_has(&s, "login - cn=zed,ou=people,dc=example,dc=org 2 10"));
		/* By the DN the first time. The second, each spelling has two
		 * failures too: by the login that locked the DN, which ends its
		 * own lockout and the DN's; "zed"'s stays. */
		assert_int_equal(auth_throttle_unlock(t, round == 0 ? dn : "Zed@Example.org", 300),
		                 round == 0 ? 1 : 2);
		memset(&s, 0, sizeof(s));
		auth_throttle_lockouts(t, 300, collect, &s);
		assert_int_equal(s.n, round == 0 ? 0 : 1);
		if (round == 1)
			assert_true(seen_has(&s, "login - zed 2 10"));
	}
	auth_throttle_free(t);
}

/* A reload: the same throttle goes on with new settings. Lockouts and the
 * failures counted stay; a larger cap (higher thresholds) makes room for
 * more failures; a smaller throttle_size keeps the most recently used. */
/* A reload (auth_throttle_reconfigure()): new thresholds and lockout time
 * apply to the counts so far; a larger cap and a smaller table move the
 * entries, the newest kept, each with its lockout and its label. */
static void
test_reconfigure_keeps_counts(void **state)
{
	struct protection_config pc, pc2;
	struct auth_throttle *t;
	struct auth_throttle_result r;
	char pw[32];

	base_config(&pc);
	t = auth_throttle_new(&pc, kh);
	/* alice: the pair locked at its 3rd failure. */
	settle(admitted(t, "192.0.2.1", "alice", "a", 0), THROTTLE_FAILURE, 0, &r);
	settle(admitted(t, "192.0.2.1", "alice", "b", 1), THROTTLE_FAILURE, 1, &r);
	settle(admitted(t, "192.0.2.1", "alice", "c", 2), THROTTLE_FAILURE, 2, &r);
	assert_int_equal(r.locked, PAIR);
	/* bob: two failures from elsewhere. */
	settle(admitted(t, "192.0.2.9", "bob", "a", 3), THROTTLE_FAILURE, 3, &r);
	settle(admitted(t, "192.0.2.9", "bob", "b", 4), THROTTLE_FAILURE, 4, &r);

	/* Same sizes, other thresholds and a longer lockout: in place. */
	pc2 = pc;
	pc2.lockout_login_failures = 3;
	pc2.lockout_time = 100;
	pc = pc2;
	auth_throttle_reconfigure(t, &pc);
	assert_int_equal(check(t, "192.0.2.1", "alice", 5), PAIR);
	/* bob's third failure locks the pair and now also shields his login
	 * (new threshold 3): from anywhere else too. */
	settle(admitted(t, "192.0.2.9", "bob", "c", 6), THROTTLE_FAILURE, 6, &r);
	assert_int_equal(r.locked, PAIR);
	assert_int_equal(r.failures, 3);
	assert_int_equal(check(t, "198.51.100.1", "bob", 7), LOGIN);

	/* A larger cap and a smaller table: entries move, newest kept. */
	pc2.lockout_client_failures = 200;
	pc2.lockout_client_login_failures = 0;
	pc2.lockout_login_failures = 0;
	pc2.throttle_size = 5;
	pc = pc2;
	auth_throttle_reconfigure(t, &pc);
	assert_true(auth_throttle_count(t) <= 5);
	/* The moved entries kept who they lock out, for the admin's listing. */
	struct seen sn;
	memset(&sn, 0, sizeof(sn));
	auth_throttle_lockouts(t, 8, collect, &sn);
	bool login_listed = false;
	for (unsigned i = 0; i < sn.n && i < 8; i++)
		login_listed |= strncmp(sn.text[i], "login - bob ", 12) == 0;
	assert_true(login_listed);
	/* The client's entry keeps its failures and now counts beyond the old
	 * cap (12 here): a threshold raised by a reload can still be reached. */
	for (int i = 0; i < 30; i++) {
		snprintf(pw, sizeof(pw), "p%d", i);
		settle(admitted(t, "192.0.2.9", "carl", pw, 10 + (uint64_t)i), THROTTLE_FAILURE,
		       10 + (uint64_t)i, &r);
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
	        cmocka_unit_test(test_normalized_login),
	        cmocka_unit_test(test_idle_keys_dropped),
	        cmocka_unit_test(test_parallel_guesses),
	        cmocka_unit_test(test_parallel_guesses_one_client),
	        cmocka_unit_test(test_room_given_back),
	        cmocka_unit_test(test_identity),
	        cmocka_unit_test(test_lockouts_and_unlock),
	        cmocka_unit_test(test_unlock_ipv6_network),
	        cmocka_unit_test(test_unlock_identity),
	        cmocka_unit_test(test_reconfigure_keeps_counts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
