/* SPDX-License-Identifier: ISC */
/*
 * keyproc_proto.c - encoding of the key process's messages (keyproc_proto.h).
 */
#include "keyproc_proto.h"
#include "../lib/ipc.h"
#include "../lib/log.h"

#include <string.h>
#include <openssl/x509.h>

struct ipc_msg *
keyproc_sign_req_encode(const struct keyproc_sign_req *r)
{
	struct ipc_msg *m;

	if (r->input_len > KEYPROC_MAX_INPUT)
		fatal("keyproc: input of %zu bytes", r->input_len);
	m = ipc_msg_new(KEYPROC_MSG_SIGN);
	ipc_msg_add_u32(m, r->id);
	ipc_msg_add_bytes(m, r->key_id, KEYPROC_KEY_ID_LEN);
	ipc_msg_add_u32(m, (uint32_t)r->alg);
	ipc_msg_add_bytes(m, r->input, r->input_len);
	return m;
}

struct ipc_msg *
keyproc_sign_reply_encode(const struct keyproc_sign_reply *r)
{
	struct ipc_msg *m;

	if (r->sig_len > KEYPROC_MAX_SIG)
		fatal("keyproc: signature of %zu bytes", r->sig_len);
	m = ipc_msg_new(KEYPROC_MSG_SIGNATURE);
	ipc_msg_add_u32(m, r->id);
	ipc_msg_add_u32(m, (uint32_t)r->status);
	ipc_msg_add_bytes(m, r->sig, r->sig_len);
	return m;
}

int
keyproc_sign_req_decode(struct ipc_msg *m, struct keyproc_sign_req *r)
{
	const char *key_id, *input, *extra;
	size_t key_id_len, extra_len;
	uint32_t alg;

	if (ipc_msg_get_u32(m, &r->id) < 0 || ipc_msg_get_bytes(m, &key_id, &key_id_len) < 0 ||
	    ipc_msg_get_u32(m, &alg) < 0 || ipc_msg_get_bytes(m, &input, &r->input_len) < 0)
		return -1;
	if (key_id_len != KEYPROC_KEY_ID_LEN || r->input_len > KEYPROC_MAX_INPUT)
		return -1;
	if (alg != KEYPROC_ALG_RSA_PKCS1 && alg != KEYPROC_ALG_RSA_PSS && alg != KEYPROC_ALG_ECDSA)
		return -1;
	/* Nothing may follow: a frame is one request. */
	if (ipc_msg_get_bytes(m, &extra, &extra_len) == 0)
		return -1;
	memcpy(r->key_id, key_id, KEYPROC_KEY_ID_LEN);
	r->alg = (enum keyproc_alg)alg;
	r->input = (const unsigned char *)input;
	return 0;
}

int
keyproc_sign_reply_decode(struct ipc_msg *m, struct keyproc_sign_reply *r)
{
	const char *sig, *extra;
	size_t extra_len;
	uint32_t status;

	if (ipc_msg_get_u32(m, &r->id) < 0 || ipc_msg_get_u32(m, &status) < 0 ||
	    ipc_msg_get_bytes(m, &sig, &r->sig_len) < 0)
		return -1;
	if (status > KEYPROC_FAILED || r->sig_len > KEYPROC_MAX_SIG)
		return -1;
	if (ipc_msg_get_bytes(m, &extra, &extra_len) == 0)
		return -1;
	r->status = (enum keyproc_status)status;
	r->sig = (const unsigned char *)sig;
	return 0;
}

int
keyproc_key_id(const EVP_PKEY *pkey, uint8_t id_r[KEYPROC_KEY_ID_LEN])
{
	unsigned char *der = NULL;
	unsigned int mdlen = 0;
	int len = i2d_PUBKEY(pkey, &der);
	int ok;

	if (len <= 0)
		return -1;
	ok = EVP_Digest(der, (size_t)len, id_r, &mdlen, EVP_sha256(), NULL) == 1 &&
	     mdlen == KEYPROC_KEY_ID_LEN;
	OPENSSL_free(der);
	return ok ? 0 : -1;
}

const char *
keyproc_status_name(enum keyproc_status st)
{
	switch (st) {
	case KEYPROC_OK:
		return "ok";
	case KEYPROC_NO_KEY:
		return "no_key";
	case KEYPROC_REFUSED:
		return "refused";
	case KEYPROC_FAILED:
		return "failed";
	}
	return "unknown";
}
