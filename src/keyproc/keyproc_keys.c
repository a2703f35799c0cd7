/* SPDX-License-Identifier: ISC */
/*
 * keyproc_keys.c - the key process's private keys and the checks that keep it
 * a TLS handshake signer and nothing more (keyproc_keys.h).
 *
 * A worker taken over by an attacker can send any request. What it can get:
 * signatures of TLS handshake inputs with our key, for as long as it is
 * taken over (the price of any design where the worker drives the handshake;
 * OpenSMTPD's ca process has it too). What it cannot get: the key itself, or
 * a decryption. The bare RSA operation that RSA-PSS needs (OpenSSL pads in
 * the worker and hands over the encoded block) would decrypt any RSA
 * ciphertext, for instance a premaster secret recorded from an old RSA key
 * exchange; so a block is signed only if it is a well-formed EMSA-PSS
 * encoding with a salt as long as its hash (RFC 8446 4.2.3), which a
 * ciphertext (or a blinded one) is with a probability of about 2^-1500.
 * PKCS #1 v1.5 signatures are padded here, over a DigestInfo only.
 */
#include "keyproc_keys.h"
#include "../lib/common.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

struct keyproc_key {
	uint8_t id[KEYPROC_KEY_ID_LEN];
	EVP_PKEY *pkey;
	int type; /* EVP_PKEY_RSA or EVP_PKEY_EC */
	int bits;
};

struct keyproc_keys {
	struct keyproc_key *keys;
	size_t n;
};

struct keyproc_keys *
keyproc_keys_new(void)
{
	return xcalloc(1, sizeof(struct keyproc_keys));
}

void
keyproc_keys_free(struct keyproc_keys *ks)
{
	if (ks == NULL)
		return;
	/* EVP_PKEY_free() clears the private components before freeing. */
	for (size_t i = 0; i < ks->n; i++)
		EVP_PKEY_free(ks->keys[i].pkey);
	free(ks->keys);
	free(ks);
}

size_t
keyproc_keys_count(const struct keyproc_keys *ks)
{
	return ks->n;
}

/* PEM password callback: an encrypted key is an error, never a prompt on
 * whatever terminal the daemon was started from. */
static int
keyproc_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static const char *
keyproc_error(const char *file, const char *what)
{
	static char buf[512];
	unsigned long e = ERR_get_error();
	char reason[256] = "";

	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(buf, sizeof(buf), "%s: %s%s%s", file, what, e != 0 ? ": " : "", reason);
	ERR_clear_error();
	return buf;
}

/* The PEM private key at path. Read with read(2) into a buffer wiped after
 * use, not through stdio, whose buffer would leave the PEM text in freed
 * memory. */
static EVP_PKEY *
keyproc_read_key(const char *path, const char **error_r)
{
	/* A PEM RSA-16384 key is under 13 KiB. */
	static unsigned char buf[32768];
	EVP_PKEY *pkey = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		*error_r = keyproc_error(path, strerror(errno));
		return NULL;
	}
	n = read_all(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		/* The failed read may have left part of the key. */
		len = sizeof(buf);
		*error_r = keyproc_error(path, strerror(errno));
		goto out;
	}
	len = (size_t)n;
	if (len == sizeof(buf)) {
		*error_r = keyproc_error(path, "too large for a private key");
		goto out;
	}
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, keyproc_no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		*error_r = keyproc_error(path, "no PEM private key (or one with a passphrase)");
out:
	explicit_bzero(buf, len);
	return pkey;
}

int
keyproc_keys_load(struct keyproc_keys *ks, const char *cert_file, const char *key_file,
                  const char **error_r)
{
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	struct keyproc_key k = {0};
	FILE *f;

	if ((f = fopen(cert_file, "r")) == NULL) {
		*error_r = keyproc_error(cert_file, strerror(errno));
		goto fail;
	}
	cert = PEM_read_X509(f, NULL, keyproc_no_passphrase, NULL);
	fclose(f);
	if (cert == NULL) {
		*error_r = keyproc_error(cert_file, "no PEM certificate");
		goto fail;
	}
	pkey = keyproc_read_key(key_file, error_r);
	if (pkey == NULL)
		goto fail;
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), pkey) != 1) {
		*error_r = keyproc_error(key_file, "certificate and key do not match");
		goto fail;
	}
	k.type = EVP_PKEY_get_base_id(pkey);
	if (k.type != EVP_PKEY_RSA && k.type != EVP_PKEY_EC) {
		/* The workers sign through RSA and ECDSA hooks only (keyproc_pkey.c). */
		*error_r = keyproc_error(key_file, "unsupported key type (use RSA or ECDSA)");
		goto fail;
	}
	k.bits = EVP_PKEY_get_bits(pkey);
	if (keyproc_key_id(pkey, k.id) < 0) {
		*error_r = keyproc_error(key_file, "cannot encode the public key");
		goto fail;
	}
	X509_free(cert);
	for (size_t i = 0; i < ks->n; i++) {
		if (memcmp(ks->keys[i].id, k.id, sizeof(k.id)) == 0) {
			EVP_PKEY_free(pkey); /* the same key again */
			return 0;
		}
	}
	k.pkey = pkey;
	ks->keys = xrealloc(ks->keys, (ks->n + 1) * sizeof(*ks->keys));
	ks->keys[ks->n++] = k;
	return 0;
fail:
	EVP_PKEY_free(pkey);
	X509_free(cert);
	return -1;
}

static const struct keyproc_key *
keyproc_keys_find(const struct keyproc_keys *ks, const uint8_t id[KEYPROC_KEY_ID_LEN])
{
	for (size_t i = 0; i < ks->n; i++) {
		if (memcmp(ks->keys[i].id, id, KEYPROC_KEY_ID_LEN) == 0)
			return &ks->keys[i];
	}
	return NULL;
}

bool
keyproc_keys_slow(const struct keyproc_keys *ks, const uint8_t key_id[KEYPROC_KEY_ID_LEN])
{
	const struct keyproc_key *k = keyproc_keys_find(ks, key_id);

	return k != NULL && k->type == EVP_PKEY_RSA;
}

/* RFC 8017 9.2 note 1: the DER prefix of a DigestInfo, by hash. SHA-1 is
 * left out: OpenSSL 3 does not sign TLS handshakes with it. */
static const struct {
	unsigned char prefix[19];
	size_t hash_len;
} digest_infos[] = {
        {{0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04,
          0x05, 0x00, 0x04, 0x1c},
         28},
        {{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
          0x05, 0x00, 0x04, 0x20},
         32},
        {{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
          0x05, 0x00, 0x04, 0x30},
         48},
        {{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
          0x05, 0x00, 0x04, 0x40},
         64},
};

static bool
keyproc_is_digest_info(const unsigned char *in, size_t len)
{
	for (size_t i = 0; i < AR_NELEM(digest_infos); i++) {
		size_t plen = sizeof(digest_infos[i].prefix);
		if (len == plen + digest_infos[i].hash_len &&
		    memcmp(in, digest_infos[i].prefix, plen) == 0)
			return true;
	}
	return false;
}

/* RFC 8017 B.2.1: MGF1 with md, mask_len bytes of mask from seed. */
static bool
keyproc_mgf1(unsigned char *mask, size_t mask_len, const unsigned char *seed, size_t seed_len,
             const EVP_MD *md)
{
	unsigned char in[EVP_MAX_MD_SIZE + 4], out[EVP_MAX_MD_SIZE];
	size_t hlen = (size_t)EVP_MD_get_size(md);
	uint32_t counter = 0;

	memcpy(in, seed, seed_len);
	for (size_t done = 0; done < mask_len; counter++) {
		in[seed_len] = (unsigned char)(counter >> 24);
		in[seed_len + 1] = (unsigned char)(counter >> 16);
		in[seed_len + 2] = (unsigned char)(counter >> 8);
		in[seed_len + 3] = (unsigned char)counter;
		if (EVP_Digest(in, seed_len + 4, out, NULL, md, NULL) != 1)
			return false;
		size_t n = mask_len - done < hlen ? mask_len - done : hlen;
		memcpy(mask + done, out, n);
		done += n;
	}
	return true;
}

/* RFC 8017 9.1.2 steps 4-10 (all but the comparison with the message,
 * which we do not have): is em, the block for a key of mod_bits, an EMSA-PSS
 * encoding with SHA-256, -384 or -512, MGF1 with the same hash, and a salt
 * as long as the hash? */
static bool
keyproc_is_pss_block(const unsigned char *em, size_t len, int mod_bits)
{
	size_t em_bits = (size_t)mod_bits - 1;
	size_t em_len = (em_bits + 7) / 8;
	unsigned top_bits = (unsigned)(8 * em_len - em_bits);
	unsigned char db[KEYPROC_MAX_INPUT];
	const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};

	if (len != ((size_t)mod_bits + 7) / 8 || len > sizeof(db))
		return false;
	/* The block is as long as the modulus; the encoding one byte shorter
	 * when the modulus has 8k+1 bits (OpenSSL puts a 0 in front). */
	if (em_len < len) {
		if (em[0] != 0)
			return false;
		em++;
	}
	if (em[em_len - 1] != 0xbc || (em[0] & (0xff00u >> top_bits)) != 0)
		return false;
	for (size_t i = 0; i < AR_NELEM(mds); i++) {
		size_t hlen = (size_t)EVP_MD_get_size(mds[i]);
		if (em_len < 2 * hlen + 2)
			continue;
		size_t db_len = em_len - hlen - 1;
		if (!keyproc_mgf1(db, db_len, em + db_len, hlen, mds[i]))
			return false;
		for (size_t j = 0; j < db_len; j++)
			db[j] ^= em[j];
		db[0] &= (unsigned char)(0xffu >> top_bits);
		/* DB = PS (zeros) || 0x01 || salt (hlen bytes) */
		size_t ps_len = db_len - hlen - 1;
		bool ok = db[ps_len] == 0x01;
		for (size_t j = 0; j < ps_len && ok; j++)
			ok = db[j] == 0;
		explicit_bzero(db, db_len);
		if (ok)
			return true;
	}
	return false;
}

enum keyproc_status
keyproc_keys_sign(const struct keyproc_keys *ks, const uint8_t key_id[KEYPROC_KEY_ID_LEN],
                  enum keyproc_alg alg, const unsigned char *input, size_t input_len,
                  unsigned char *sig, size_t sig_size, size_t *sig_len_r)
{
	const struct keyproc_key *k = keyproc_keys_find(ks, key_id);
	EVP_PKEY_CTX *ctx = NULL;
	enum keyproc_status st = KEYPROC_FAILED;
	int padding = 0;

	*sig_len_r = 0;
	if (k == NULL)
		return KEYPROC_NO_KEY;
	switch (alg) {
	case KEYPROC_ALG_RSA_PKCS1:
		if (k->type != EVP_PKEY_RSA || !keyproc_is_digest_info(input, input_len))
			return KEYPROC_REFUSED;
		padding = RSA_PKCS1_PADDING;
		break;
	case KEYPROC_ALG_RSA_PSS:
		if (k->type != EVP_PKEY_RSA || !keyproc_is_pss_block(input, input_len, k->bits))
			return KEYPROC_REFUSED;
		padding = RSA_NO_PADDING;
		break;
	case KEYPROC_ALG_ECDSA:
		/* A digest: SHA-224 to SHA-512. */
		if (k->type != EVP_PKEY_EC || input_len < 28 || input_len > 64)
			return KEYPROC_REFUSED;
		break;
	default:
		return KEYPROC_REFUSED;
	}
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
	if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0)
		goto out;
	if (padding != 0 && EVP_PKEY_CTX_set_rsa_padding(ctx, padding) <= 0)
		goto out;
	*sig_len_r = sig_size;
	if (EVP_PKEY_sign(ctx, sig, sig_len_r, input, input_len) <= 0) {
		*sig_len_r = 0;
		goto out;
	}
	st = KEYPROC_OK;
out:
	if (st != KEYPROC_OK)
		ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	return st;
}
