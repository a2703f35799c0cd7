/* SPDX-License-Identifier: ISC */
/*
 * tls.h - the server TLS context of the SMTP workers (STARTTLS and implicit
 * TLS, RFC 3207 / RFC 8314), and the descriptions of a TLS session we put in
 * logs, the spool envelope and the Received header.
 */
#ifndef AUTHRELAY_TLS_H
#define AUTHRELAY_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct config;
struct keyproc_client;

/* Build a worker's server context from [tls]: certificate chain, minimum
 * protocol, ciphers (never the RSA key exchange), session cache and tickets
 * for resumption, and as private key a stand-in whose signatures kc gets
 * from the key process (keyproc_pkey.h): key_file is not read. Runs before
 * privileges are dropped (the chain may be readable by root only). Returns
 * NULL with *error_r set (a static string; about a [tls] file or value as
 * "key = value: reason", see tls_server_check()). */
SSL_CTX *tls_server_ctx_new(const struct config *cfg, struct keyproc_client *kc,
                            const char **error_r);

/* Check [tls] as the workers and the key process will use it: the ciphers,
 * the chain, the key (readable, unencrypted, RSA or ECDSA) and that the two
 * match. For the master's start and check-config (as root). Returns 0, or
 * -1 with *error_r set to "key = value: reason" (a static string, the reason
 * in words: "cannot open it (No such file or directory)", "no PEM
 * certificate in it", "certificate and key do not match") and, when key_r
 * is not NULL, *key_r to the [tls] key at fault ("cert_file"; NULL when no
 * key is). */
int tls_server_check(const struct config *cfg, const char **key_r, const char **error_r);

/* Make the session ticket keys every later tls_server_ctx_new() uses. The
 * master calls it once before forking the workers, so a session resumes on
 * whichever worker the client reaches. */
void tls_ticket_keys_init(void);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" into buf. */
const char *tls_describe(SSL *ssl, char *buf, size_t bufsz);
/* Postfix-style Received clause: "(using TLSv1.3 with cipher X (256/256 bits))". */
const char *tls_received_clause(SSL *ssl, char *buf, size_t bufsz);

#endif
