/* SPDX-License-Identifier: ISC */
/*
 * ut_tls.h - unit-test helper: throwaway certificates and TLS contexts.
 *
 * A test makes its key (EVP_EC_gen, EVP_RSA_gen, ...), gets a self-signed
 * certificate for a name, and then either the contexts for a loopback
 * server and a client that trusts it, or PEM files for code that loads its
 * own. Each failing step fails the running test.
 */
#ifndef UT_TLS_H
#define UT_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A self-signed certificate for key naming host (subject CN and a DNS
 * subjectAltName), valid from an hour ago for a day, and its own CA so that
 * a client can take it as its trust anchor. The caller frees it. */
X509 *ut_tls_cert(EVP_PKEY *key, const char *host);

/* Write cert to crt_path and key to key_path, both PEM, key unencrypted. */
void ut_tls_write_pem(X509 *cert, const char *crt_path, EVP_PKEY *key, const char *key_path);

/* A server context presenting cert and key. The caller frees it. */
SSL_CTX *ut_tls_server_ctx(X509 *cert, EVP_PKEY *key);

/* A client context whose only trust anchor is trusted; it verifies nothing
 * by itself (the code under test asks for verification). The caller frees
 * it. */
SSL_CTX *ut_tls_client_ctx(X509 *trusted);

#endif
