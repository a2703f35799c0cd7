/* SPDX-License-Identifier: ISC */
/*
 * keyproc_proto.h - the messages between the SMTP workers and the key process
 * (keyproc.h), in lib/ipc.h frames over the UNIX socket private/keyproc.
 *
 *   worker -> keyproc  SIGN       u32 id, bytes key_id (32), u32 alg, bytes input
 *   keyproc -> worker  SIGNATURE  u32 id, u32 status, bytes signature ("" unless OK)
 *
 * A key is named by its key id, the SHA-256 of its DER SubjectPublicKeyInfo:
 * both sides compute it from what they hold (the worker from the certificate,
 * the key process from the private key), so a worker never signs with a key
 * that does not match the certificate it sent, even across a restart of the
 * key process or, later, a reload that brings a new key pair while sessions of
 * the old one are still in their handshake. Replies may come in any order;
 * the id ties each to its request.
 */
#ifndef AUTHRELAY_KEYPROC_PROTO_H
#define AUTHRELAY_KEYPROC_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define KEYPROC_KEY_ID_LEN 32
/* The largest input and signature: one block of an RSA-8192 key. */
#define KEYPROC_MAX_INPUT 1024
#define KEYPROC_MAX_SIG 1024

struct ipc_msg;

enum keyproc_msg_type { KEYPROC_MSG_SIGN = 1, KEYPROC_MSG_SIGNATURE = 2 };

/* What the key process does with the input. Only what a TLS server needs to
 * sign its handshake: there is no decryption (the workers offer no RSA key
 * exchange), and each input is checked to be what TLS signs, so that the key
 * process is no raw RSA oracle for a worker that was taken over. */
enum keyproc_alg {
	/* A DigestInfo (SHA-224..SHA-512): PKCS #1 v1.5 signature (RFC 8017 8.2). */
	KEYPROC_ALG_RSA_PKCS1 = 1,
	/* An EMSA-PSS encoded block as long as the modulus (RFC 8017 9.1.1),
	 * salt as long as the hash, as TLS uses it (RFC 8446 4.2.3): the bare
	 * RSA private operation on it. */
	KEYPROC_ALG_RSA_PSS = 2,
	/* A message digest: a DER ECDSA-Sig-Value (RFC 3279 2.2.3). */
	KEYPROC_ALG_ECDSA = 3,
};

enum keyproc_status {
	KEYPROC_OK = 0,
	KEYPROC_NO_KEY = 1,  /* no key with that id */
	KEYPROC_REFUSED = 2, /* not an input a TLS handshake signs */
	KEYPROC_FAILED = 3,  /* the signature itself failed */
};

struct keyproc_sign_req {
	uint32_t id;
	uint8_t key_id[KEYPROC_KEY_ID_LEN];
	enum keyproc_alg alg;
	const unsigned char *input; /* decode: points into the message */
	size_t input_len;
};

struct keyproc_sign_reply {
	uint32_t id;
	enum keyproc_status status;
	const unsigned char *sig; /* decode: points into the message */
	size_t sig_len;
};

/* Encode a request or a reply into a new message (the caller sends and frees
 * it). Inputs and signatures longer than KEYPROC_MAX_* are fatal: the callers
 * bound them first. */
struct ipc_msg *keyproc_sign_req_encode(const struct keyproc_sign_req *);
struct ipc_msg *keyproc_sign_reply_encode(const struct keyproc_sign_reply *);

/* Decode a SIGN or a SIGNATURE message (its type already checked). Pointers
 * in the result point into msg. Returns 0, or -1 for a malformed message
 * (missing fields, a key id of the wrong size, an unknown alg or status,
 * data over the limits, trailing bytes). */
int keyproc_sign_req_decode(struct ipc_msg *msg, struct keyproc_sign_req *r);
int keyproc_sign_reply_decode(struct ipc_msg *msg, struct keyproc_sign_reply *r);

/* The key id of pkey (public or private): SHA-256 of its DER
 * SubjectPublicKeyInfo. Returns 0, or -1 when OpenSSL cannot encode it. */
int keyproc_key_id(const EVP_PKEY *pkey, uint8_t id_r[KEYPROC_KEY_ID_LEN]);

/* "ok", "no_key", "refused", "failed": for log lines. */
const char *keyproc_status_name(enum keyproc_status);

#endif
