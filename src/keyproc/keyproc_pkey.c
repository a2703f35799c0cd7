/* SPDX-License-Identifier: ISC */
/*
 * keyproc_pkey.c - a worker's stand-in for the TLS private key (see
 * keyproc_pkey.h), the way OpenSMTPD's ca.c does it: an RSA key with an
 * RSA_METHOD and an EC key with an EC_KEY_METHOD whose private operations
 * ask the key process (keyproc_client_sign()). Such "foreign" keys stay on
 * OpenSSL 3's legacy path, where libssl's signing goes through them:
 *
 *   TLS 1.2 RSA PKCS #1 v1.5  RSA_sign() -> priv_enc(DigestInfo, PKCS1_PADDING)
 *   TLS 1.2/1.3 RSA-PSS       EMSA-PSS in libcrypto -> priv_enc(block, NO_PADDING)
 *   ECDSA (both)              ECDSA_sign() -> sign(digest)
 *
 * RSA decryption (priv_dec) always fails: it would serve only the RSA key
 * exchange, which tls.c turns off (no forward secrecy, and the key process
 * would become a decryption oracle).
 *
 * These methods are deprecated in OpenSSL 3 (an OpenSSL 3 provider with its
 * own key management is the successor); they are used here and nowhere else,
 * hence the one suppression below. Debian 12's OpenSSL 3.0 has them.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "keyproc_pkey.h"
#include "keyproc_client.h"
#include "keyproc_proto.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

/* What a stand-in key knows of the real one: where to ask, and its name. */
struct kp_pkey_data {
	struct keyproc_client *kc;
	uint8_t key_id[KEYPROC_KEY_ID_LEN];
};

static RSA_METHOD *kp_rsa_method;
static EC_KEY_METHOD *kp_ec_method;
static int kp_rsa_idx = -1, kp_ec_idx = -1;

static void
kp_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

static void
kp_no_signature(void)
{
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "no signature from the key process");
}

static int
kp_rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	const struct kp_pkey_data *d = RSA_get_ex_data(rsa, kp_rsa_idx);
	int size = RSA_size(rsa);
	enum keyproc_alg alg;

	if (padding == RSA_PKCS1_PADDING)
		alg = KEYPROC_ALG_RSA_PKCS1;
	else if (padding == RSA_NO_PADDING)
		alg = KEYPROC_ALG_RSA_PSS; /* libcrypto did the EMSA-PSS encoding */
	else
		alg = 0;
	if (d == NULL || alg == 0 || flen < 0 ||
	    keyproc_client_sign(d->kc, d->key_id, alg, from, (size_t)flen, to, (size_t)size) !=
	            size) {
		kp_no_signature();
		return -1;
	}
	return size;
}

static int
kp_rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "no RSA decryption in the workers");
	return -1;
}

static int
kp_ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig, unsigned int *siglen,
           const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
	const struct kp_pkey_data *d = EC_KEY_get_ex_data(eckey, kp_ec_idx);
	int n = -1;

	*siglen = 0;
	if (d != NULL && dlen >= 0)
		n = keyproc_client_sign(d->kc, d->key_id, KEYPROC_ALG_ECDSA, dgst, (size_t)dlen,
		                        sig, (size_t)ECDSA_size(eckey));
	if (n <= 0) {
		kp_no_signature();
		return 0;
	}
	*siglen = (unsigned int)n;
	return 1;
}

static ECDSA_SIG *
kp_ec_sign_sig(const unsigned char *dgst, int dgst_len, const BIGNUM *in_kinv, const BIGNUM *in_r,
               EC_KEY *eckey)
{
	unsigned char der[KEYPROC_MAX_SIG];
	const unsigned char *p = der;
	unsigned int len;

	if ((size_t)ECDSA_size(eckey) > sizeof(der) ||
	    !kp_ec_sign(0, dgst, dgst_len, der, &len, in_kinv, in_r, eckey))
		return NULL;
	return d2i_ECDSA_SIG(NULL, &p, (long)len);
}

/* The methods, made once per process. */
static void
kp_methods_init(void)
{
	if (kp_rsa_method != NULL)
		return;
	kp_rsa_method = RSA_meth_dup(RSA_PKCS1_OpenSSL());
	kp_ec_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
	if (kp_rsa_method == NULL || kp_ec_method == NULL)
		fatal("keyproc: cannot make the RSA and EC key methods");
	RSA_meth_set1_name(kp_rsa_method, "authrelay key process");
	/* No private parts to check: the key process checked the pair. */
	RSA_meth_set_flags(kp_rsa_method,
	                   RSA_meth_get_flags(kp_rsa_method) | RSA_METHOD_FLAG_NO_CHECK);
	RSA_meth_set_priv_enc(kp_rsa_method, kp_rsa_priv_enc);
	RSA_meth_set_priv_dec(kp_rsa_method, kp_rsa_priv_dec);
	EC_KEY_METHOD_set_sign(kp_ec_method, kp_ec_sign, NULL, kp_ec_sign_sig);
	kp_rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, kp_data_free);
	kp_ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, kp_data_free);
	if (kp_rsa_idx < 0 || kp_ec_idx < 0)
		fatal("keyproc: no ex_data index");
}

EVP_PKEY *
keyproc_pkey_new(struct keyproc_client *kc, EVP_PKEY *pub, const char **error_r)
{
	struct kp_pkey_data *d = xcalloc(1, sizeof(*d));
	EVP_PKEY *pk = EVP_PKEY_new();
	RSA *rsa = NULL;
	EC_KEY *ec = NULL;

	kp_methods_init();
	d->kc = kc;
	if (pk == NULL || keyproc_key_id(pub, d->key_id) < 0) {
		*error_r = "cannot encode the certificate's public key";
		goto fail;
	}
	/* Copies: the public key's own (cached) objects stay untouched. */
	switch (EVP_PKEY_get_base_id(pub)) {
	case EVP_PKEY_RSA:
		rsa = RSAPublicKey_dup(EVP_PKEY_get0_RSA(pub));
		if (rsa == NULL || RSA_set_method(rsa, kp_rsa_method) != 1 ||
		    RSA_set_ex_data(rsa, kp_rsa_idx, d) != 1) {
			*error_r = "cannot set up the RSA key";
			goto fail;
		}
		d = NULL; /* rsa owns it */
		if (EVP_PKEY_assign_RSA(pk, rsa) != 1) {
			*error_r = "cannot set up the RSA key";
			goto fail;
		}
		return pk;
	case EVP_PKEY_EC:
		ec = EC_KEY_dup(EVP_PKEY_get0_EC_KEY(pub));
		if (ec == NULL || EC_KEY_set_method(ec, kp_ec_method) != 1 ||
		    EC_KEY_set_ex_data(ec, kp_ec_idx, d) != 1) {
			*error_r = "cannot set up the EC key";
			goto fail;
		}
		d = NULL; /* ec owns it */
		if (EVP_PKEY_assign_EC_KEY(pk, ec) != 1) {
			*error_r = "cannot set up the EC key";
			goto fail;
		}
		return pk;
	default:
		*error_r = "unsupported key type (use RSA or ECDSA)";
		goto fail;
	}
fail:
	ERR_clear_error();
	RSA_free(rsa);
	EC_KEY_free(ec);
	EVP_PKEY_free(pk);
	free(d);
	return NULL;
}
