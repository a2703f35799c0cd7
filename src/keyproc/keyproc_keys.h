/* SPDX-License-Identifier: ISC */
/*
 * keyproc_keys.h - the private keys the key process holds, and the one thing
 * it does with them: sign what a TLS handshake signs (keyproc_proto.h).
 *
 * Keys are found by key id (the SHA-256 of the public key), so the table can
 * hold several: today the one of [tls] key_file; on a reload of the
 * certificate, the new pair beside the old one until no handshake needs it.
 */
#ifndef AUTHRELAY_KEYPROC_KEYS_H
#define AUTHRELAY_KEYPROC_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include "keyproc_proto.h"

struct keyproc_keys;

struct keyproc_keys *keyproc_keys_new(void);
/* Wipes and frees every key. NULL is fine. */
void keyproc_keys_free(struct keyproc_keys *);

/* Read the PEM private key at key_file and the certificate (chain) at
 * cert_file, check that the key belongs to the first certificate and is of a
 * kind the workers can use (RSA of 2048 bits or more, or ECDSA), and add it.
 * Must run where the key is readable (as root, before the privilege drop).
 * Returns 0, or -1 with *error_r (a static string: "file: reason"). */
int keyproc_keys_load(struct keyproc_keys *, const char *cert_file, const char *key_file,
                      const char **error_r);
size_t keyproc_keys_count(const struct keyproc_keys *);

/* Whether signing with key_id costs long enough (RSA: about a millisecond) to
 * be worth a pool thread; ECDSA takes tens of microseconds. False for an
 * unknown id. */
bool keyproc_keys_slow(const struct keyproc_keys *, const uint8_t key_id[KEYPROC_KEY_ID_LEN]);

/* Sign input with the key named key_id as alg says, after checking that the
 * input is what a TLS handshake signs with it (keyproc_proto.h). sig gets at
 * most sig_size bytes; *sig_len_r its length. Safe to call from several
 * threads at once. */
enum keyproc_status keyproc_keys_sign(const struct keyproc_keys *,
                                      const uint8_t key_id[KEYPROC_KEY_ID_LEN],
                                      enum keyproc_alg alg, const unsigned char *input,
                                      size_t input_len, unsigned char *sig, size_t sig_size,
                                      size_t *sig_len_r);

#endif
