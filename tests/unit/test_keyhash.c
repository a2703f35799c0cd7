/* SPDX-License-Identifier: ISC */
/*
 * test_keyhash.c - the one keyed hash: HMAC-SHA256 and SipHash-2-4 checked
 * against published and independently computed vectors under known keys,
 * the part separators, and random keys that differ from object to object
 * but agree in a forked child (as the shared-memory tables need).
 *
 * The module is included to reach keyhash_with_keys().
 */
#include "lib/keyhash.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/wait.h>
#include <unistd.h>

static struct keyhash *
known_keys(void)
{
	unsigned char hk[KEYHASH_HMAC_KEY], sk[KEYHASH_SIP_KEY];

	for (size_t i = 0; i < sizeof(hk); i++)
		hk[i] = (unsigned char)i;
	for (size_t i = 0; i < sizeof(sk); i++)
		sk[i] = (unsigned char)i;
	return keyhash_with_keys(hk, sk);
}

static void
test_siphash_vectors(void **state)
{
	/* The SipHash paper's reference vectors (key 00..0f, message
	 * 00..len-1), read as little-endian words. */
	static const struct {
		size_t len;
		uint64_t want;
	} rows[] = {
	        {0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull},
	        {7, 0xab0200f58b01d137ull},  {8, 0x93f5f5799a932462ull},
	        {15, 0xa129ca6149be45e5ull}, {63, 0x958a324ceb064572ull},
	};
	struct keyhash *kh = known_keys();
	unsigned char msg[64];

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (unsigned char)i;
	for (size_t i = 0; i < AR_NELEM(rows); i++) {
		uint64_t got = keyhash_index(kh, msg, rows[i].len);
		if (got != rows[i].want)
			fail_msg("len %zu: %016llx, want %016llx", rows[i].len,
			         (unsigned long long)got, (unsigned long long)rows[i].want);
	}
	keyhash_free(kh);
}

static void
test_hmac_vector(void **state)
{
	/* Python: hmac.new(bytes(range(32)), b"source\0alice\0secret",
	 * hashlib.sha256). */
	static const uint8_t want[KEYHASH_LEN] = {
	        0xb6, 0xc0, 0xe0, 0x3b, 0x04, 0xcc, 0x2f, 0x4d, 0xfc, 0x03, 0xcc,
	        0xea, 0xa7, 0xd7, 0xc1, 0x69, 0x82, 0xf8, 0xb5, 0x10, 0x7d, 0xde,
	        0xe0, 0x09, 0xc3, 0xf8, 0xc6, 0x2a, 0x8a, 0x37, 0xc6, 0x04,
	};
	const char *const strs[] = {"source", "alice", "secret"};
	struct keyhash *kh = known_keys();
	uint8_t got[KEYHASH_LEN];

	keyhash_strings(kh, got, strs, 3);
	assert_memory_equal(got, want, KEYHASH_LEN);
	keyhash_free(kh);
}

static void
test_parts_are_separated(void **state)
{
	struct keyhash *kh = keyhash_new();
	const char *const ab_c[] = {"ab", "c"}, *const a_bc[] = {"a", "bc"};
	const char *const abc[] = {"abc"};
	uint8_t x[KEYHASH_LEN], y[KEYHASH_LEN], z[KEYHASH_LEN];

	keyhash_strings(kh, x, ab_c, 2);
	keyhash_strings(kh, y, a_bc, 2);
	keyhash_strings(kh, z, abc, 1);
	assert_memory_not_equal(x, y, KEYHASH_LEN);
	assert_memory_not_equal(x, z, KEYHASH_LEN);
	assert_memory_not_equal(y, z, KEYHASH_LEN);
	keyhash_free(kh);
}

static void
test_random_keys(void **state)
{
	struct keyhash *a = keyhash_new(), *b = keyhash_new();
	const char *const s[] = {"alice"};
	uint8_t da[KEYHASH_LEN], db[KEYHASH_LEN];
	uint64_t ia = keyhash_index(a, "alice", 5);
	int pipefd[2], status;
	uint64_t child = 0;
	pid_t pid;

	/* Stable for one object, different across objects. */
	assert_true(keyhash_index(a, "alice", 5) == ia);
	assert_true(keyhash_index(b, "alice", 5) != ia);
	keyhash_strings(a, da, s, 1);
	keyhash_strings(b, db, s, 1);
	assert_memory_not_equal(da, db, KEYHASH_LEN);

	/* A child made after the object hashes alike. */
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t h = keyhash_index(a, "alice", 5);
		_exit(write(pipefd[1], &h, sizeof(h)) == sizeof(h) ? 0 : 1);
	}
	assert_int_equal(read(pipefd[0], &child, sizeof(child)), sizeof(child));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(child == ia);
	close(pipefd[0]);
	close(pipefd[1]);
	keyhash_free(a);
	keyhash_free(b);
	keyhash_free(NULL);
}

/* Keys derived from one secret and label are alike in every object (every
 * gateway); another secret or another label gives other digests; the HMAC
 * key is HMAC-SHA256(secret, label), checked against OpenSSL's one-shot. */
static void
test_derived_keys(void **state)
{
	static const char secret[] = "cluster secret";
	struct keyhash *a = keyhash_derive(secret, strlen(secret), "label v1");
	struct keyhash *b = keyhash_derive(secret, strlen(secret), "label v1");
	struct keyhash *c = keyhash_derive(secret, strlen(secret), "label v2");
	struct keyhash *d = keyhash_derive("other secret", 12, "label v1");
	const char *const s[] = {"alice", "wrong password"};
	uint8_t da[KEYHASH_LEN], db[KEYHASH_LEN], dc[KEYHASH_LEN], dd[KEYHASH_LEN];
	unsigned char key[EVP_MAX_MD_SIZE], want[EVP_MAX_MD_SIZE];
	unsigned klen = 0, wlen = 0;

	keyhash_strings(a, da, s, 2);
	keyhash_strings(b, db, s, 2);
	keyhash_strings(c, dc, s, 2);
	keyhash_strings(d, dd, s, 2);
	assert_memory_equal(da, db, KEYHASH_LEN);
	assert_memory_not_equal(da, dc, KEYHASH_LEN);
	assert_memory_not_equal(da, dd, KEYHASH_LEN);
	assert_true(keyhash_index(a, "alice", 5) == keyhash_index(b, "alice", 5));
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
	                     (const unsigned char *)"label v1", 8, key, &klen));
	assert_non_null(HMAC(EVP_sha256(), key, (int)klen,
	                     (const unsigned char *)"alice\0wrong password", 20, want, &wlen));
	assert_memory_equal(da, want, KEYHASH_LEN);
	keyhash_free(a);
	keyhash_free(b);
	keyhash_free(c);
	keyhash_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_siphash_vectors),     cmocka_unit_test(test_hmac_vector),
	        cmocka_unit_test(test_parts_are_separated), cmocka_unit_test(test_random_keys),
	        cmocka_unit_test(test_derived_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
