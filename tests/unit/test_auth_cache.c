/* SPDX-License-Identifier: ISC */
/*
 * test_auth_cache.c - the auth process's credential cache: keys (source,
 * login and password each matter, a NUL in a password too), positive and
 * negative TTLs, the stale window used when a source is unreachable, what
 * is and is not stored, the size bound (least recently used goes first),
 * SIGHUP's clear, and that the key never contains the password.
 *
 * Table-driven: each row is one call at a given time (ms) and what it must
 * answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "auth/auth_cache.h"
#include "lib/keyhash.h"
#include "auth/protection_config.h"

enum op { STORE, LOOKUP, STALE, CLEAR, COUNT };

struct row {
	enum op op;
	uint64_t t; /* ms */
	const char *source;
	const char *login;
	const char *pw; /* NUL-terminated unless pw_len is set */
	size_t pw_len;
	enum auth_result result; /* STORE: what to store; LOOKUP/STALE: expected on a hit */
	enum auth_reason reason;
	int hit;              /* LOOKUP/STALE: 1 expected hit, 0 miss; COUNT: entries */
	const char *identity; /* expected (or stored) identity */
	const char *addresses;
};

/* Rows with every field, so -Wmissing-field-initializers stays quiet. */
#define ROW(op, t, src, login, pw, len, res, reason, hit, id, addrs)                               \
	{                                                                                          \
		op, t, src, login, pw, len, res, reason, hit, id, addrs                            \
	}
#define STORE_(t, src, login, pw, res, reason, id, addrs)                                          \
	ROW(STORE, t, src, login, pw, 0, res, reason, 0, id, addrs)
#define HIT(t, src, login, pw, res, reason, id, addrs)                                             \
	ROW(LOOKUP, t, src, login, pw, 0, res, reason, 1, id, addrs)
#define MISS(t, src, login, pw)                                                                    \
	ROW(LOOKUP, t, src, login, pw, 0, AUTH_OK, AUTH_REASON_OK, 0, NULL, NULL)
#define STALE_HIT(t, src, login, pw, id, addrs)                                                    \
	ROW(STALE, t, src, login, pw, 0, AUTH_OK, AUTH_REASON_OK, 1, id, addrs)
#define STALE_MISS(t, src, login, pw)                                                              \
	ROW(STALE, t, src, login, pw, 0, AUTH_OK, AUTH_REASON_OK, 0, NULL, NULL)
#define ENTRIES(n) ROW(COUNT, 0, NULL, NULL, NULL, 0, AUTH_OK, AUTH_REASON_OK, n, NULL, NULL)
#define CLEAR_ ROW(CLEAR, 0, NULL, NULL, NULL, 0, AUTH_OK, AUTH_REASON_OK, 0, NULL, NULL)

static struct protection_config pc;
static struct keyhash *kh;

static int
setup(void **state)
{
	memset(&pc, 0, sizeof(pc));
	pc.cache_positive_ttl = 10;
	pc.cache_negative_ttl = 5;
	pc.cache_stale_ttl = 20;
	pc.cache_size = 4;
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
run(struct auth_cache *c, const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		uint8_t key[KEYHASH_LEN];
		struct auth_cache_hit hit;
		size_t len = r->pw != NULL ? (r->pw_len ? r->pw_len : strlen(r->pw)) : 0;
		bool got;

		print_message("  row %zu\n", i);
		if (r->op == CLEAR) {
			auth_cache_clear(c);
			continue;
		}
		if (r->op == COUNT) {
			assert_int_equal(auth_cache_count(c), r->hit);
			continue;
		}
		auth_cache_key(c, r->source, r->login, r->pw, len, key);
		if (r->op == STORE) {
			auth_cache_store(c, key, r->t, r->result, r->identity, r->reason,
			                 r->addresses, NULL);
			continue;
		}
		got = r->op == LOOKUP ? auth_cache_lookup(c, key, r->t, &hit)
		                      : auth_cache_lookup_stale(c, key, r->t, &hit);
		assert_int_equal(got, r->hit);
		if (!got)
			continue;
		assert_int_equal(hit.result, r->result);
		assert_int_equal(hit.reason, r->reason);
		assert_string_equal(auth_reason_name(hit.reason), auth_reason_name(r->reason));
		assert_string_equal(hit.identity, r->identity != NULL ? r->identity : "");
		assert_string_equal(hit.addresses, r->addresses != NULL ? r->addresses : "");
	}
}

static void
test_ttls(void **state)
{
	static const struct row rows[] = {
	        MISS(0, "file", "alice", "pw1"),
	        STORE_(1000, "file", "alice", "pw1", AUTH_OK, AUTH_REASON_OK, "Alice", "a@x,b@y"),
	        HIT(1000, "file", "alice", "pw1", AUTH_OK, AUTH_REASON_OK, "Alice", "a@x,b@y"),
	        HIT(10999, "file", "alice", "pw1", AUTH_OK, AUTH_REASON_OK, "Alice", "a@x,b@y"),
	        /* Positive TTL over: a fresh lookup misses... */
	        MISS(11000, "file", "alice", "pw1"),
	        /* ...but a source that is down may still lean on it... */
	        STALE_HIT(11000, "file", "alice", "pw1", "Alice", "a@x,b@y"),
	        STALE_HIT(30999, "file", "alice", "pw1", "Alice", "a@x,b@y"),
	        /* ...for cache_stale_ttl, no longer. */
	        STALE_MISS(31000, "file", "alice", "pw1"),
	        ENTRIES(0),
	        /* Negative entries: their own TTL, never stale. */
	        STORE_(40000, "file", "alice", "wrong", AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, NULL,
	               NULL),
	        HIT(44999, "file", "alice", "wrong", AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, NULL,
	            NULL),
	        STALE_MISS(44999, "file", "alice", "wrong"),
	        MISS(45000, "file", "alice", "wrong"),
	        STORE_(50000, "ldap", "nobody", "x", AUTH_FAIL, AUTH_REASON_UNKNOWN_USER, NULL,
	               NULL),
	        HIT(50001, "ldap", "nobody", "x", AUTH_FAIL, AUTH_REASON_UNKNOWN_USER, NULL, NULL),
	        /* The right password is never shadowed by a wrong one. */
	        STORE_(60000, "file", "bob", "old", AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, NULL,
	               NULL),
	        MISS(60001, "file", "bob", "new"),
	        /* A changed password: the old one's positive entry is replaced
	         * as soon as the source says it is wrong. */
	        STORE_(70000, "file", "carol", "p", AUTH_OK, AUTH_REASON_OK, "carol", NULL),
	        STORE_(71000, "file", "carol", "p", AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, NULL,
	               NULL),
	        HIT(71001, "file", "carol", "p", AUTH_FAIL, AUTH_REASON_BAD_PASSWORD, NULL, NULL),
	        STALE_MISS(71001, "file", "carol", "p"),
	};
	struct auth_cache *c = auth_cache_new(&pc, kh);

	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	auth_cache_free(c);
}

static void
test_keys(void **state)
{
	static const struct row rows[] = {
	        STORE_(0, "file", "alice", "pw", AUTH_OK, AUTH_REASON_OK, "alice", NULL),
	        HIT(1, "file", "alice", "pw", AUTH_OK, AUTH_REASON_OK, "alice", NULL),
	        MISS(1, "ldap", "alice", "pw"),
	        MISS(1, "file", "Alice", "pw"),
	        MISS(1, "file", "alice", "pw "),
	        MISS(1, "file", "alic", "epw"),
	        MISS(1, "file", "alice", "PW"),
	        /* A NUL inside a password is part of it. */
	        ROW(STORE, 0, "file", "dave", "a\0b", 3, AUTH_OK, AUTH_REASON_OK, 0, "dave", NULL),
	        ROW(LOOKUP, 1, "file", "dave", "a\0b", 3, AUTH_OK, AUTH_REASON_OK, 1, "dave", NULL),
	        ROW(LOOKUP, 1, "file", "dave", "a\0c", 3, AUTH_OK, AUTH_REASON_OK, 0, NULL, NULL),
	        MISS(1, "file", "dave", "a"),
	};
	struct auth_cache *c = auth_cache_new(&pc, kh);
	uint8_t k1[KEYHASH_LEN], k2[KEYHASH_LEN];
	struct keyhash *other = keyhash_new();
	struct auth_cache *c2 = auth_cache_new(&pc, other);

	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	/* Another start, another key: the same inputs give another digest. */
	auth_cache_key(c, "file", "alice", "pw", 2, k1);
	auth_cache_key(c2, "file", "alice", "pw", 2, k2);
	assert_memory_not_equal(k1, k2, KEYHASH_LEN);
	auth_cache_free(c);
	auth_cache_free(c2);
	keyhash_free(other);
}

static void
test_what_is_stored(void **state)
{
	static const struct row rows[] = {
	        /* Tempfails and other failures are never cached. */
	        STORE_(0, "ldap", "a", "p", AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE, NULL,
	               NULL),
	        STORE_(0, "file", "b", "p", AUTH_FAIL, AUTH_REASON_UNSUPPORTED_HASH, NULL, NULL),
	        STORE_(0, "file", "c", "p", AUTH_FAIL, AUTH_REASON_MECH_UNAVAILABLE, NULL, NULL),
	        STORE_(0, "ldap", "d", "p", AUTH_FAIL, AUTH_REASON_NOT_IN_GROUP, NULL, NULL),
	        ENTRIES(0),
	        MISS(1, "ldap", "a", "p"),
	        /* A tempfail leaves an entry in place. */
	        STORE_(0, "ldap", "e", "p", AUTH_OK, AUTH_REASON_OK, "e", NULL),
	        STORE_(1, "ldap", "e", "p", AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE, NULL,
	               NULL),
	        HIT(2, "ldap", "e", "p", AUTH_OK, AUTH_REASON_OK, "e", NULL),
	        ENTRIES(1),
	        CLEAR_,
	        ENTRIES(0),
	        MISS(3, "ldap", "e", "p"),
	};
	struct auth_cache *c = auth_cache_new(&pc, kh);

	assert_true(auth_cache_cacheable(c, "PLAIN"));
	assert_true(auth_cache_cacheable(c, "login"));
	assert_false(auth_cache_cacheable(c, "CRAM-MD5"));
	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	auth_cache_free(c);
}

static void
test_size_bound(void **state)
{
	static const struct row rows[] = {
	        STORE_(0, "file", "u1", "p", AUTH_OK, AUTH_REASON_OK, "u1", NULL),
	        STORE_(0, "file", "u2", "p", AUTH_OK, AUTH_REASON_OK, "u2", NULL),
	        STORE_(0, "file", "u3", "p", AUTH_OK, AUTH_REASON_OK, "u3", NULL),
	        STORE_(0, "file", "u4", "p", AUTH_OK, AUTH_REASON_OK, "u4", NULL),
	        /* u1 used again: u2 is now the least recently used. */
	        HIT(1, "file", "u1", "p", AUTH_OK, AUTH_REASON_OK, "u1", NULL),
	        STORE_(2, "file", "u5", "p", AUTH_OK, AUTH_REASON_OK, "u5", NULL),
	        ENTRIES(4),
	        MISS(3, "file", "u2", "p"),
	        HIT(3, "file", "u1", "p", AUTH_OK, AUTH_REASON_OK, "u1", NULL),
	        HIT(3, "file", "u5", "p", AUTH_OK, AUTH_REASON_OK, "u5", NULL),
	};
	struct auth_cache *c = auth_cache_new(&pc, kh);

	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	auth_cache_free(c);
}

static void
test_disabled(void **state)
{
	static const struct row rows[] = {
	        STORE_(0, "file", "u1", "p", AUTH_OK, AUTH_REASON_OK, "u1", NULL),
	        MISS(1, "file", "u1", "p"),
	        ENTRIES(0),
	};
	struct protection_config off = pc;
	struct auth_cache *c;

	off.cache_size = 0;
	c = auth_cache_new(&off, kh);
	assert_false(auth_cache_cacheable(c, "PLAIN"));
	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	auth_cache_free(c);
	/* A zero TTL keeps nothing either. */
	off = pc;
	off.cache_positive_ttl = 0;
	c = auth_cache_new(&off, kh);
	run(c, rows, sizeof(rows) / sizeof(rows[0]));
	auth_cache_free(c);
}

/* The key is a keyed digest: the password never shows in it. */
static void
test_no_password_in_key(void **state)
{
	static const char pw[] = "pppppppppppppppppppppppppppppppppppppppp";
	struct auth_cache *c = auth_cache_new(&pc, kh);
	uint8_t key[KEYHASH_LEN];

	auth_cache_key(c, "file", "alice", pw, sizeof(pw) - 1, key);
	assert_null(memmem(key, sizeof(key), "ppp", 3));
	auth_cache_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ttls),           cmocka_unit_test(test_keys),
	        cmocka_unit_test(test_what_is_stored), cmocka_unit_test(test_size_bound),
	        cmocka_unit_test(test_disabled),       cmocka_unit_test(test_no_password_in_key),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
