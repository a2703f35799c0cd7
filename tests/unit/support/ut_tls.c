/* SPDX-License-Identifier: ISC */
/*
 * ut_tls.c - throwaway certificates and TLS contexts for unit tests
 * (ut_tls.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>

#include "ut_tls.h"

/* Add one v3 extension given in openssl.cnf syntax. */
static void
ut_tls_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

X509 *
ut_tls_cert(EVP_PKEY *key, const char *host)
{
	X509 *cert = X509_new();
	X509_NAME *name;
	char san[300];

	assert_non_null(cert);
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	assert_int_equal(X509_set_pubkey(cert, key), 1);
	name = X509_get_subject_name(cert);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)host, -1, -1, 0),
	                 1);
	X509_set_issuer_name(cert, name);
	snprintf(san, sizeof(san), "DNS:%s", host);
	ut_tls_add_ext(cert, NID_subject_alt_name, san);
	ut_tls_add_ext(cert, NID_basic_constraints, "critical,CA:TRUE");
	/* Ed25519 and Ed448 sign the whole message: no digest of their own. */
	assert_true(X509_sign(cert, key,
	                      EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ||
	                                      EVP_PKEY_get_base_id(key) == EVP_PKEY_ED448
	                              ? NULL
	                              : EVP_sha256()) > 0);
	return cert;
}

void
ut_tls_write_pem(X509 *cert, const char *crt_path, EVP_PKEY *key, const char *key_path)
{
	FILE *f = fopen(crt_path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, cert), 1);
	assert_int_equal(fclose(f), 0);
	f = fopen(key_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	assert_int_equal(fclose(f), 0);
}

SSL_CTX *
ut_tls_server_ctx(X509 *cert, EVP_PKEY *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	return ctx;
}

SSL_CTX *
ut_tls_client_ctx(X509 *trusted)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trusted), 1);
	return ctx;
}
