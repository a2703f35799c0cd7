/* SPDX-License-Identifier: ISC */
/*
 * auth_proto.h - the messages between SMTP workers and the auth process, on
 * top of lib/ipc framing. Documented in docs/auth-protocol.md.
 *
 *   HELLO  auth -> worker, on connect:   u32 version, u32 caps (AUTH_CAP_*)
 *   VERIFY worker -> auth:               u32 id, mech, login, secret, challenge,
 *                                        session, client address, listener
 *   RESULT auth -> worker:               u32 id, u32 result (enum auth_result),
 *                                        identity, u32 reason (enum auth_reason),
 *                                        u32 delay_ms, addresses
 *   NOTIFY worker -> auth, no answer:    event, user, client, session, limit,
 *                                        u32 count, u32 max
 *   COUNT  worker -> auth:               u32 id, user (AUTH_CAP_SHARED_SEND only)
 *   COUNTS auth -> worker:               u32 id, u32 shared (0/1), u32 messages,
 *                                        u32 recipients
 *
 * NOTIFY "sent" (count = recipients) reports a queued message of user, for
 * the counts shared between gateways (shared_send.h).
 *
 * Fields after the last one a receiver knows are ignored; an incompatible
 * change bumps AUTH_PROTO_VERSION, and a worker drops an auth process that
 * speaks another one.
 *
 * For PLAIN and LOGIN, secret is the password and challenge is empty; for
 * CRAM-MD5, secret is the client's hex digest and challenge the one we sent.
 */
#ifndef AUTHRELAY_AUTH_PROTO_H
#define AUTHRELAY_AUTH_PROTO_H

#include <stdint.h>
#include "auth_reason.h"
#include "../lib/common.h"

struct ipc_msg;

/* 2: RESULT carries the reason as a u32 (enum auth_reason), not a word, and
 * always has delay_ms and addresses; ALERT (type 5) is gone. */
#define AUTH_PROTO_VERSION 2

enum auth_msg_type {
	AUTH_MSG_HELLO = 1,
	AUTH_MSG_VERIFY = 2,
	AUTH_MSG_RESULT = 3,
	AUTH_MSG_NOTIFY = 4, /* worker -> auth: an event for the alerts */
	AUTH_MSG_COUNT = 6,  /* worker -> auth: a user's shared sending counts? */
	AUTH_MSG_COUNTS = 7, /* auth -> worker: the answer */
	                     /* 5 was ALERT (version 1): alert mails now go to the queue process
	                      * (alert_proto.h). */
};

/* The three answers a credential check can have (235, 535, 454). */
enum auth_result { AUTH_OK = 0, AUTH_FAIL = 1, AUTH_TEMPFAIL = 2 };

#define AUTH_CAP_CRAM_MD5 0x1u
/* Sending counts are shared with other gateways: ask (COUNT) at MAIL. */
#define AUTH_CAP_SHARED_SEND 0x2u

/* Upper bounds a worker enforces before it sends (RFC 4616 asks for 255). */
#define AUTH_MAX_LOGIN 512
#define AUTH_MAX_SECRET 1024

struct auth_request {
	uint32_t id;
	const char *mech; /* "PLAIN", "LOGIN", "CRAM-MD5" */
	const char *login;
	const char *secret;
	size_t secret_len;
	const char *challenge; /* "" unless CRAM-MD5 */
	const char *session;   /* session id, for log lines */
	const char *client;    /* client address text */
	const char *listener;  /* listener name */
};

/* The answer to one VERIFY: the RESULT message, and what a worker's
 * auth_result_cb gets (auth_client.h). */
struct auth_reply {
	uint32_t id;
	enum auth_result result;
	enum auth_reason reason;
	const char *identity;  /* canonical identity on AUTH_OK (maybe no address:
	                        * an LDAP DN), else "" */
	uint32_t delay_ms;     /* AUTH_FAIL: what is left of the throttle's delay
	                        * after the auth process held the RESULT (0 unless
	                        * longer than the worker waits); wait this long
	                        * before 535 if longer than the listener's
	                        * auth_failure_delay_ms; else 0 */
	const char *addresses; /* AUTH_OK: the user's own addresses, "a@x,b@y"; may be "" */
};

/* NOTIFY: something a worker saw that may raise an alert (auth_alert.h). */
struct auth_notify {
	const char *event;   /* "send_limit" */
	const char *user;    /* the authenticated user */
	const char *client;  /* client address */
	const char *session; /* session id */
	const char *limit;   /* "messages_per_hour", "recipients_per_hour" */
	uint32_t count;
	uint32_t max;
};

/* COUNTS: a user's sending counts across the gateways, or none. */
struct auth_counts {
	uint32_t id;
	bool shared; /* false: Redis away, the worker's own counts stand */
	uint32_t msgs;
	uint32_t rcpts;
};

/* Encoders: a new message for ipc_msg_send(), the caller frees it. Strings
 * are copied; NULL is sent as "". */
struct ipc_msg *auth_proto_hello(uint32_t caps);
struct ipc_msg *auth_proto_verify(const struct auth_request *);
struct ipc_msg *auth_proto_result(const struct auth_reply *);
struct ipc_msg *auth_proto_notify(const struct auth_notify *);
struct ipc_msg *auth_proto_count(uint32_t id, const char *user);
struct ipc_msg *auth_proto_counts(const struct auth_counts *);

/* Decoders: fields point into msg (valid until ipc_msg_free()). Return 0, or
 * -1 if malformed: a wrong type, a field missing, a NUL in a text field, a
 * login or secret over its bound, a result or reason this build does not
 * know. */
int auth_proto_parse_hello(struct ipc_msg *, uint32_t *version_r, uint32_t *caps_r);
int auth_proto_parse_verify(struct ipc_msg *, struct auth_request *r);
int auth_proto_parse_result(struct ipc_msg *, struct auth_reply *r);
int auth_proto_parse_notify(struct ipc_msg *, struct auth_notify *n);
int auth_proto_parse_count(struct ipc_msg *, uint32_t *id_r, const char **user_r);
int auth_proto_parse_counts(struct ipc_msg *, struct auth_counts *c);

/* The log word: "ok", "fail", "tempfail" ("unknown" out of range). */
const char *auth_result_name(enum auth_result);

#endif
