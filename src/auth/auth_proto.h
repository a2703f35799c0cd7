/*
 * auth_proto.h - the messages between SMTP workers and the auth process, on
 * top of lib/ipc framing. Documented in docs/ARCHITECTURE.md ("auth protocol").
 *
 *   HELLO  auth -> worker, on connect:   u32 version, u32 caps (AUTH_CAP_*)
 *   VERIFY worker -> auth:               u32 id, mech, login, secret, challenge,
 *                                        session, client address, listener
 *   RESULT auth -> worker:               u32 id, u32 result (enum auth_result),
 *                                        identity, reason
 *
 * For PLAIN and LOGIN, secret is the password and challenge is empty; for
 * CRAM-MD5, secret is the client's hex digest and challenge the one we sent.
 */
#ifndef AUTHRELAY_AUTH_PROTO_H
#define AUTHRELAY_AUTH_PROTO_H

#include <stdint.h>
#include "../lib/common.h"

struct ipc_msg;

#define AUTH_PROTO_VERSION 1

enum auth_msg_type { AUTH_MSG_HELLO = 1, AUTH_MSG_VERIFY = 2, AUTH_MSG_RESULT = 3 };

/* The three answers a credential check can have (235, 535, 454). */
enum auth_result { AUTH_OK = 0, AUTH_FAIL = 1, AUTH_TEMPFAIL = 2 };

#define AUTH_CAP_CRAM_MD5 0x1u

/* Upper bounds a worker enforces before it sends (RFC 4616 asks for 255). */
#define AUTH_MAX_LOGIN 512
#define AUTH_MAX_SECRET 1024

struct auth_request {
	uint32_t id;
	const char *mech;      /* "PLAIN", "LOGIN", "CRAM-MD5" */
	const char *login;
	const char *secret;
	size_t secret_len;
	const char *challenge; /* "" unless CRAM-MD5 */
	const char *session;   /* session id, for log lines */
	const char *client;    /* client address text */
	const char *listener;  /* listener name */
};

struct auth_reply {
	uint32_t id;
	enum auth_result result;
	const char *identity;  /* canonical login on AUTH_OK, else "" */
	const char *reason;    /* short, log-safe: "bad_password", "unknown_user"... */
};

struct ipc_msg *auth_proto_hello(uint32_t caps);
struct ipc_msg *auth_proto_verify(const struct auth_request *);
struct ipc_msg *auth_proto_result(const struct auth_reply *);

/* Decoders: fields point into msg. Return 0, or -1 if malformed. */
int auth_proto_parse_hello(struct ipc_msg *, uint32_t *version_r, uint32_t *caps_r);
int auth_proto_parse_verify(struct ipc_msg *, struct auth_request *r);
int auth_proto_parse_result(struct ipc_msg *, struct auth_reply *r);

const char *auth_result_name(enum auth_result);

#endif
