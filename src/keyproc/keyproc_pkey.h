/* SPDX-License-Identifier: ISC */
/*
 * keyproc_pkey.h - the private key of an SMTP worker's SSL_CTX, which holds
 * no private key: the certificate's public key, with RSA and ECDSA methods
 * whose private operations are signatures made by the key process
 * (keyproc_client.h). The SSL_CTX takes it as its private key; OpenSSL signs
 * the handshake through it as through any key.
 */
#ifndef AUTHRELAY_KEYPROC_PKEY_H
#define AUTHRELAY_KEYPROC_PKEY_H

#include <openssl/evp.h>

struct keyproc_client;

/* A key for pub (an RSA or EC public key, not consumed) whose signatures go
 * through kc, which must outlive it. Returns a new EVP_PKEY (the caller frees
 * it; SSL_CTX_use_PrivateKey() takes a reference), or NULL with *error_r set
 * for a key type the key process cannot sign with. */
EVP_PKEY *keyproc_pkey_new(struct keyproc_client *kc, EVP_PKEY *pub, const char **error_r);

#endif
