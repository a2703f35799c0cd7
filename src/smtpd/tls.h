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

/* Build the server context from [tls]: certificate chain, key, minimum
 * protocol, ciphers, session cache and tickets for resumption. Must run before
 * privileges are dropped (the key is readable by root only). Returns NULL with
 * *error_r set (a static string or one from OpenSSL's error queue). */
SSL_CTX *tls_server_ctx_new(const struct config *cfg, const char **error_r);

/* Make the session ticket keys every later tls_server_ctx_new() uses. The
 * master calls it once before forking the workers, so a session resumes on
 * whichever worker the client reaches. */
void tls_ticket_keys_init(void);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" into buf. */
const char *tls_describe(SSL *ssl, char *buf, size_t bufsz);
/* Postfix-style Received clause: "(using TLSv1.3 with cipher X (256/256 bits))". */
const char *tls_received_clause(SSL *ssl, char *buf, size_t bufsz);

#endif
