/* SPDX-License-Identifier: ISC */
/*
 * test_keyproc_keys.c - the key process's wire format (keyproc_proto.h) and
 * its key table (keyproc_keys.h): loading and refusing key pairs, and the
 * checks that make it a TLS handshake signer and not an RSA oracle. Every
 * signature it makes is verified with the public key.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* RSA_padding_add_PKCS1_PSS_mgf1: a test input */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "keyproc/keyproc_keys.h"
#include "keyproc/keyproc_proto.h"
#include "lib/ipc.h"
#include "support/ut_tls.h"
#include "support/ut_tmp.h"

static char tmpdir[] = "/tmp/test_keyproc_keys.XXXXXX";
static EVP_PKEY *rsa_key, *ec_key, *ed_key;

/* Write cert (of cert_key) and key as PEM files NAME.crt, NAME.key. */
static void
write_pair(const char *name, EVP_PKEY *cert_key, EVP_PKEY *key, char *crt, char *keyf)
{
	X509 *x = ut_tls_cert(cert_key, "t.test");

	snprintf(crt, 256, "%s/%s.crt", tmpdir, name);
	snprintf(keyf, 256, "%s/%s.key", tmpdir, name);
	ut_tls_write_pem(x, crt, key, keyf);
	X509_free(x);
}

static int
setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	rsa_key = EVP_RSA_gen(2048);
	ec_key = EVP_EC_gen("P-256");
	ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(rsa_key);
	assert_non_null(ec_key);
	assert_non_null(ed_key);
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(tmpdir);
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(ed_key);
	return 0;
}

static struct keyproc_keys *
load(const char *name, EVP_PKEY *key)
{
	char crt[256], keyf[256];
	const char *err = NULL;
	struct keyproc_keys *ks = keyproc_keys_new();

	write_pair(name, key, key, crt, keyf);
	assert_int_equal(keyproc_keys_load(ks, crt, keyf, &err), 0);
	return ks;
}

static void
key_id(EVP_PKEY *key, uint8_t id[KEYPROC_KEY_ID_LEN])
{
	assert_int_equal(keyproc_key_id(key, id), 0);
}

/* ---------------------------------------------------------------- proto */

static void
test_proto_round_trip(void **state)
{
	unsigned char input[300];
	struct keyproc_sign_req req = {
	        .id = 77, .alg = KEYPROC_ALG_RSA_PSS, .input = input, .input_len = sizeof(input)};
	struct keyproc_sign_req got;
	struct keyproc_sign_reply rep = {
	        .id = 77, .status = KEYPROC_OK, .sig = input, .sig_len = 64};
	struct keyproc_sign_reply grep;
	struct evbuffer *b = evbuffer_new();
	struct ipc_msg *m;

	memset(req.key_id, 0xab, sizeof(req.key_id));
	for (size_t i = 0; i < sizeof(input); i++)
		input[i] = (unsigned char)i;
	m = keyproc_sign_req_encode(&req);
	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_free(m);
	m = keyproc_sign_reply_encode(&rep);
	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_free(m);

	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	assert_int_equal(ipc_msg_type(m), KEYPROC_MSG_SIGN);
	assert_int_equal(keyproc_sign_req_decode(m, &got), 0);
	assert_int_equal(got.id, 77);
	assert_int_equal(got.alg, KEYPROC_ALG_RSA_PSS);
	assert_memory_equal(got.key_id, req.key_id, KEYPROC_KEY_ID_LEN);
	assert_int_equal(got.input_len, sizeof(input));
	assert_memory_equal(got.input, input, sizeof(input));
	ipc_msg_free(m);

	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	assert_int_equal(ipc_msg_type(m), KEYPROC_MSG_SIGNATURE);
	assert_int_equal(keyproc_sign_reply_decode(m, &grep), 0);
	assert_int_equal(grep.id, 77);
	assert_int_equal(grep.status, KEYPROC_OK);
	assert_int_equal(grep.sig_len, 64);
	assert_memory_equal(grep.sig, input, 64);
	ipc_msg_free(m);
	evbuffer_free(b);
}

/* Requests built by hand, each wrong in one way: all refused by decode. */
static void
test_proto_malformed(void **state)
{
	static const struct {
		const char *what;
		size_t key_id_len;
		uint32_t alg;
		size_t input_len;
		bool extra;
		bool ok;
	} cases[] = {
	        {"valid", 32, KEYPROC_ALG_ECDSA, 32, false, true},
	        {"short key id", 31, KEYPROC_ALG_ECDSA, 32, false, false},
	        {"long key id", 33, KEYPROC_ALG_ECDSA, 32, false, false},
	        {"alg 0", 32, 0, 32, false, false},
	        {"alg 4", 32, 4, 32, false, false},
	        {"input over the limit", 32, KEYPROC_ALG_RSA_PSS, KEYPROC_MAX_INPUT + 1, false,
	         false},
	        {"trailing field", 32, KEYPROC_ALG_ECDSA, 32, true, false},
	};
	unsigned char buf[KEYPROC_MAX_INPUT + 1] = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ipc_msg *m = ipc_msg_new(KEYPROC_MSG_SIGN);
		struct keyproc_sign_req r;
		ipc_msg_add_u32(m, 1);
		ipc_msg_add_bytes(m, buf, cases[i].key_id_len);
		ipc_msg_add_u32(m, cases[i].alg);
		ipc_msg_add_bytes(m, buf, cases[i].input_len);
		if (cases[i].extra)
			ipc_msg_add_u32(m, 0);
		/* Through the wire, so that the reader sees a received message. */
		struct evbuffer *b = evbuffer_new();
		assert_int_equal(ipc_msg_send(m, b), 0);
		ipc_msg_free(m);
		assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
		if (cases[i].ok)
			assert_int_equal(keyproc_sign_req_decode(m, &r), 0);
		else if (keyproc_sign_req_decode(m, &r) != -1)
			fail_msg("accepted: %s", cases[i].what);
		ipc_msg_free(m);
		evbuffer_free(b);
	}
	/* A reply with an unknown status. */
	struct ipc_msg *m = ipc_msg_new(KEYPROC_MSG_SIGNATURE);
	struct keyproc_sign_reply rep;
	struct evbuffer *b = evbuffer_new();
	ipc_msg_add_u32(m, 1);
	ipc_msg_add_u32(m, 9);
	ipc_msg_add_bytes(m, "", 0);
	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	assert_int_equal(keyproc_sign_reply_decode(m, &rep), -1);
	ipc_msg_free(m);
	evbuffer_free(b);
}

/* ---------------------------------------------------------------- load */

static void
test_load_refusals(void **state)
{
	char crt[256], keyf[256], crt2[256], keyf2[256], missing[300];
	const char *err = NULL;
	struct keyproc_keys *ks = keyproc_keys_new();

	/* The RSA certificate with the EC key. */
	write_pair("mismatch", rsa_key, ec_key, crt, keyf);
	assert_int_equal(keyproc_keys_load(ks, crt, keyf, &err), -1);
	assert_non_null(strstr(err, "do not match"));
	/* Ed25519: neither RSA nor ECDSA. */
	write_pair("ed", ed_key, ed_key, crt2, keyf2);
	assert_int_equal(keyproc_keys_load(ks, crt2, keyf2, &err), -1);
	assert_non_null(strstr(err, "unsupported key type"));
	/* Missing files, and a certificate where the key should be. */
	snprintf(missing, sizeof(missing), "%s/missing.pem", tmpdir);
	assert_int_equal(keyproc_keys_load(ks, missing, keyf, &err), -1);
	assert_non_null(strstr(err, "missing.pem"));
	assert_int_equal(keyproc_keys_load(ks, crt, missing, &err), -1);
	assert_int_equal(keyproc_keys_load(ks, crt, crt, &err), -1);
	assert_non_null(strstr(err, "no PEM private key"));
	assert_int_equal(keyproc_keys_count(ks), 0);
	keyproc_keys_free(ks);
}

static void
test_load_two_keys_and_the_same_twice(void **state)
{
	char crt[256], keyf[256], crt2[256], keyf2[256];
	const char *err = NULL;
	struct keyproc_keys *ks = keyproc_keys_new();
	uint8_t id[KEYPROC_KEY_ID_LEN];

	write_pair("two-rsa", rsa_key, rsa_key, crt, keyf);
	write_pair("two-ec", ec_key, ec_key, crt2, keyf2);
	assert_int_equal(keyproc_keys_load(ks, crt, keyf, &err), 0);
	assert_int_equal(keyproc_keys_load(ks, crt2, keyf2, &err), 0);
	assert_int_equal(keyproc_keys_load(ks, crt, keyf, &err), 0);
	assert_int_equal(keyproc_keys_count(ks), 2);
	key_id(rsa_key, id);
	assert_true(keyproc_keys_slow(ks, id));
	key_id(ec_key, id);
	assert_false(keyproc_keys_slow(ks, id));
	id[0] ^= 1;
	assert_false(keyproc_keys_slow(ks, id));
	keyproc_keys_free(ks);
}

/* ---------------------------------------------------------------- sign */

static enum keyproc_status
sign(struct keyproc_keys *ks, EVP_PKEY *key, enum keyproc_alg alg, const unsigned char *in,
     size_t len, unsigned char *sig, size_t *sig_len)
{
	uint8_t id[KEYPROC_KEY_ID_LEN];
	key_id(key, id);
	return keyproc_keys_sign(ks, id, alg, in, len, sig, KEYPROC_MAX_SIG, sig_len);
}

/* Verify sig over hash (SHA-256) with key's public part. */
static void
verify(EVP_PKEY *key, int padding, const unsigned char *hash, const unsigned char *sig,
       size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
	if (padding != 0) {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, padding) > 0);
		if (padding == RSA_PKCS1_PSS_PADDING)
			assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) > 0);
	}
	assert_int_equal(EVP_PKEY_verify(ctx, sig, sig_len, hash, 32), 1);
	EVP_PKEY_CTX_free(ctx);
}

static const unsigned char sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                              0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                              0x01, 0x05, 0x00, 0x04, 0x20};

static void
test_sign_rsa_pkcs1(void **state)
{
	struct keyproc_keys *ks = load("pkcs1", rsa_key);
	unsigned char hash[32], in[64], sig[KEYPROC_MAX_SIG];
	size_t sig_len;

	RAND_bytes(hash, sizeof(hash));
	memcpy(in, sha256_prefix, sizeof(sha256_prefix));
	memcpy(in + sizeof(sha256_prefix), hash, 32);
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PKCS1, in, 19 + 32, sig, &sig_len),
	                 KEYPROC_OK);
	assert_int_equal(sig_len, 256);
	verify(rsa_key, RSA_PKCS1_PADDING, hash, sig, sig_len);

	/* Not a DigestInfo: a bare hash, a prefix with the wrong length, junk. */
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PKCS1, hash, 32, sig, &sig_len),
	                 KEYPROC_REFUSED);
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PKCS1, in, 19 + 31, sig, &sig_len),
	                 KEYPROC_REFUSED);
	in[5] ^= 0x40;
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PKCS1, in, 19 + 32, sig, &sig_len),
	                 KEYPROC_REFUSED);
	assert_int_equal(sig_len, 0);
	keyproc_keys_free(ks);
}

static void
test_sign_rsa_pss(void **state)
{
	struct keyproc_keys *ks = load("pss", rsa_key);
	const RSA *rsa = EVP_PKEY_get0_RSA(rsa_key);
	unsigned char hash[32], em[256], sig[KEYPROC_MAX_SIG];
	size_t sig_len;

	RAND_bytes(hash, sizeof(hash));
	/* What libcrypto hands the worker's key in a TLS handshake: salt as
	 * long as the hash. */
	assert_int_equal(RSA_padding_add_PKCS1_PSS_mgf1((RSA *)rsa, em, hash, EVP_sha256(),
	                                                EVP_sha256(), RSA_PSS_SALTLEN_DIGEST),
	                 1);
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PSS, em, sizeof(em), sig, &sig_len),
	                 KEYPROC_OK);
	verify(rsa_key, RSA_PKCS1_PSS_PADDING, hash, sig, sig_len);

	/* A salt as long as it can be makes a short padding string, which a
	 * blinded ciphertext could hit by chance: refused. */
	assert_int_equal(RSA_padding_add_PKCS1_PSS_mgf1((RSA *)rsa, em, hash, EVP_sha256(),
	                                                EVP_sha256(), RSA_PSS_SALTLEN_MAX),
	                 1);
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PSS, em, sizeof(em), sig, &sig_len),
	                 KEYPROC_REFUSED);
	/* A ciphertext (any block that is not an encoding): refused, whatever
	 * its last byte. */
	for (int i = 0; i < 64; i++) {
		RAND_bytes(em, sizeof(em));
		em[0] &= 0x7f;
		if (i % 2)
			em[255] = 0xbc;
		assert_int_equal(
		        sign(ks, rsa_key, KEYPROC_ALG_RSA_PSS, em, sizeof(em), sig, &sig_len),
		        KEYPROC_REFUSED);
	}
	/* Shorter than the modulus. */
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_RSA_PSS, em, 255, sig, &sig_len),
	                 KEYPROC_REFUSED);
	keyproc_keys_free(ks);
}

static void
test_sign_ecdsa(void **state)
{
	struct keyproc_keys *ks = load("ecdsa", ec_key);
	unsigned char hash[32], sig[KEYPROC_MAX_SIG];
	size_t sig_len;

	RAND_bytes(hash, sizeof(hash));
	assert_int_equal(sign(ks, ec_key, KEYPROC_ALG_ECDSA, hash, 32, sig, &sig_len), KEYPROC_OK);
	verify(ec_key, 0, hash, sig, sig_len);
	/* Not a digest's length. */
	assert_int_equal(sign(ks, ec_key, KEYPROC_ALG_ECDSA, hash, 16, sig, &sig_len),
	                 KEYPROC_REFUSED);
	assert_int_equal(sign(ks, ec_key, KEYPROC_ALG_ECDSA, sig, 65, sig, &sig_len),
	                 KEYPROC_REFUSED);
	/* RSA operations on an EC key, and the other way round. */
	assert_int_equal(sign(ks, ec_key, KEYPROC_ALG_RSA_PSS, hash, 32, sig, &sig_len),
	                 KEYPROC_REFUSED);
	keyproc_keys_free(ks);

	ks = load("ecdsa-rsa", rsa_key);
	assert_int_equal(sign(ks, rsa_key, KEYPROC_ALG_ECDSA, hash, 32, sig, &sig_len),
	                 KEYPROC_REFUSED);
	/* A key it does not hold. */
	assert_int_equal(sign(ks, ec_key, KEYPROC_ALG_ECDSA, hash, 32, sig, &sig_len),
	                 KEYPROC_NO_KEY);
	keyproc_keys_free(ks);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_proto_round_trip),
	        cmocka_unit_test(test_proto_malformed),
	        cmocka_unit_test(test_load_refusals),
	        cmocka_unit_test(test_load_two_keys_and_the_same_twice),
	        cmocka_unit_test(test_sign_rsa_pkcs1),
	        cmocka_unit_test(test_sign_rsa_pss),
	        cmocka_unit_test(test_sign_ecdsa),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
