/* SPDX-License-Identifier: ISC */
/*
 * tls.c - OpenSSL server context for the SMTP workers. One context per worker,
 * shared by all of its sessions and listeners; each session gets its own SSL.
 *
 * The context holds the certificate chain and, as its private key, a
 * stand-in whose signatures the key process makes (keyproc_pkey.h): a worker
 * never reads [tls] key_file. The master and check-config read it once
 * (tls_server_check()) to refuse a bad pair before anything starts.
 */
#include "tls.h"
#include "../keyproc/keyproc_keys.h"
#include "../keyproc/keyproc_pkey.h"
#include "../lib/config.h"
#include "../lib/log.h"

#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

static const char *
tls_error(const char *what)
{
	static char buf[512];
	unsigned long e = ERR_get_error();
	char reason[256] = "";
	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(buf, sizeof(buf), "%s: %s", what, e ? reason : "unknown error");
	ERR_clear_error();
	return buf;
}

/* "key = value: reason" in a static buffer for a [tls] file or value that
 * will not do, the reason made readable from OpenSSL's error queue (which is
 * then cleared): a file that cannot be opened says why, a file without the
 * PEM block says so, anything else names OpenSSL's reason. what:
 * "certificate", "cipher list". */
static const char *
tls_key_error(const char *key, const char *value, const char *what)
{
	static char buf[1024];
	unsigned long e, first = 0, sys = 0, no_pem = 0;
	char reason[300];

	/* The queue holds the cause first, then what each caller made of
	 * it ("PEM lib"): look for the causes a person can act on. */
	while ((e = ERR_get_error()) != 0) {
		if (first == 0)
			first = e;
		if (ERR_SYSTEM_ERROR(e))
			sys = e;
		else if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
			no_pem = e;
	}
	if (sys != 0)
		snprintf(reason, sizeof(reason), "cannot open it (%s)",
		         strerror((int)ERR_GET_REASON(sys)));
	else if (no_pem != 0)
		snprintf(reason, sizeof(reason), "no PEM %s in it", what);
	else
		snprintf(reason, sizeof(reason), "not a usable %s (OpenSSL: %s)", what,
		         first != 0 && ERR_reason_error_string(first) != NULL
		                 ? ERR_reason_error_string(first)
		                 : "unknown error");
	snprintf(buf, sizeof(buf), "%s = %s: %s", key, value, reason);
	return buf;
}

/* TLS session ticket keys (name, HMAC and AES keys: 80 bytes for OpenSSL),
 * made once by the master before it forks the workers: a ticket one worker
 * issued then resumes on any of them. Without it every worker has random
 * keys of its own and a client resumes only when it lands on the same one. */
static unsigned char ticket_keys[80];
static bool ticket_keys_set;

void
tls_ticket_keys_init(void)
{
	ticket_keys_set = RAND_bytes(ticket_keys, sizeof(ticket_keys)) == 1;
}

/* What every server context has: protocols, options, ciphers and the
 * certificate chain; no private key. *key_r (when not NULL): the [tls] key
 * an error is about. */
static SSL_CTX *
tls_ctx_base(const struct config *cfg, const char **key_r, const char **error_r)
{
	const char *key = NULL;
	char ciphers[1024];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = tls_error("SSL_CTX_new");
		return NULL;
	}
	/* RFC 8314 4.1 / RFC 8997: TLS 1.2 or later. */
	int min = TLS1_2_VERSION;
	if (cfg->tls_min_protocol != NULL && strcmp(cfg->tls_min_protocol, "TLSv1.3") == 0)
		min = TLS1_3_VERSION;
	SSL_CTX_set_min_proto_version(ctx, min);
	/* No renegotiation: a client could otherwise make us spend CPU at will. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                                 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Never the RSA key exchange (TLS 1.2 suites "kRSA"): it has no forward
	 * secrecy, and it would need the key process to decrypt for a worker
	 * (keyproc_pkey.c). Every client of the last decade has ECDHE. */
	int n = snprintf(ciphers, sizeof(ciphers), "%s:!kRSA",
	                 cfg->tls_ciphers != NULL ? cfg->tls_ciphers : "DEFAULT");
	if (n < 0 || (size_t)n >= sizeof(ciphers) || SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		key = "ciphers";
		*error_r =
		        tls_key_error(key, cfg->tls_ciphers != NULL ? cfg->tls_ciphers : "DEFAULT",
		                      "cipher list");
		goto fail;
	}
	if (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL) {
		key = cfg->tls_cert_file == NULL ? "cert_file" : "key_file";
		*error_r = "cert_file and key_file are required";
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
		key = "cert_file";
		*error_r = tls_key_error(key, cfg->tls_cert_file, "certificate");
		goto fail;
	}
	return ctx;
fail:
	if (key_r != NULL)
		*key_r = key;
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_server_check(const struct config *cfg, const char **key_r, const char **error_r)
{
	static char buf[1024];
	SSL_CTX *ctx = tls_ctx_base(cfg, key_r, error_r);
	struct keyproc_keys *keys;
	const char *err;
	int r;

	if (ctx == NULL)
		return -1;
	SSL_CTX_free(ctx);
	/* What the key process will do at its start. The chain loaded just
	 * above: what fails now is about the key ("file: reason"). */
	keys = keyproc_keys_new();
	r = keyproc_keys_load(keys, cfg->tls_cert_file, cfg->tls_key_file, &err);
	keyproc_keys_free(keys);
	if (r < 0) {
		size_t n = strlen(cfg->tls_key_file);
		if (strncmp(err, cfg->tls_key_file, n) == 0 && strncmp(err + n, ": ", 2) == 0)
			err += n + 2;
		snprintf(buf, sizeof(buf), "key_file = %s: %s", cfg->tls_key_file, err);
		*error_r = buf;
		if (key_r != NULL)
			*key_r = "key_file";
	}
	return r;
}

SSL_CTX *
tls_server_ctx_new(const struct config *cfg, struct keyproc_client *kc, const char **error_r)
{
	SSL_CTX *ctx = tls_ctx_base(cfg, NULL, error_r);
	EVP_PKEY *pkey;

	if (ctx == NULL)
		return NULL;
	pkey = keyproc_pkey_new(kc, X509_get0_pubkey(SSL_CTX_get0_certificate(ctx)), error_r);
	if (pkey == NULL)
		goto fail;
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		EVP_PKEY_free(pkey);
		*error_r = tls_error("the key process's key");
		goto fail;
	}
	EVP_PKEY_free(pkey); /* the context holds its own reference */
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_error("certificate and key do not match");
		goto fail;
	}
	if (cfg->tls_ca_file != NULL) {
		/* Ask for a client certificate, never require one: the result is
		 * logged, and AUTH stays the way users prove who they are. */
		if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1) {
			*error_r = tls_key_error("ca_file", cfg->tls_ca_file, "certificate");
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	/* Resumption (session cache and tickets) makes reconnecting clients
	 * cheap: a full handshake costs far more CPU than the whole SMTP
	 * dialogue, and a resumed one needs no signature. */
	static const unsigned char sid_ctx[] = "authrelay";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (ticket_keys_set &&
	    SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_keys, sizeof(ticket_keys)) != 1)
		log_warn("tls: cannot set the shared session ticket keys");
	SSL_CTX_sess_set_cache_size(ctx, 20000);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

const char *
tls_describe(SSL *ssl, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return buf;
}

const char *
tls_received_clause(SSL *ssl, char *buf, size_t bufsz)
{
	int alg_bits = 0;
	int bits = SSL_get_cipher_bits(ssl, &alg_bits);
	snprintf(buf, bufsz, "(using %s with cipher %s (%d/%d bits))", SSL_get_version(ssl),
	         SSL_get_cipher_name(ssl), bits, alg_bits);
	return buf;
}
