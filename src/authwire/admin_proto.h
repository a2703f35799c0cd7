/* SPDX-License-Identifier: ISC */
/*
 * admin_proto.h - the admin channel between the master and the auth
 * process: what `authrelay status`, `lockouts` and `unlock` need of the auth
 * process, which owns the sources and the throttle. Only the master holds
 * the other end (a SOCK_STREAM socket pair made at each start of the auth
 * process, lib/ipc frames); no worker ever sees it. Documented in
 * docs/auth-protocol.md.
 *
 *   STATUS    master -> auth: id
 *             auth -> master: SOURCE per configured source, in order, DONE
 *   LOCKOUTS  master -> auth: id
 *             auth -> master: LOCKOUT per lockout in force (at most
 *             ADMIN_MAX_LOCKOUTS), DONE with their count
 *   UNLOCK    master -> auth: id, what (a login or a client address)
 *             auth -> master: DONE with the number of lockouts ended
 *
 *   SOURCE    id, name, state ("up", "down", "unknown"), seconds in it
 *   LOCKOUT   id, scope ("client", "client_login", "login"), client ("" for
 *             a login lockout), login ("" for a client lockout), failures,
 *             seconds left
 *   DONE      id, count, flags (ADMIN_DONE_LOCAL_ONLY: the lockouts are
 *             shared but Redis did not answer: LOCKOUTS listed this node's,
 *             UNLOCK freed here, the other gateways when Redis answers)
 *
 * Both ends run the same binary: no version handshake.
 */
#ifndef AUTHRELAY_ADMIN_PROTO_H
#define AUTHRELAY_ADMIN_PROTO_H

#include <stdint.h>

struct ipc_msg;

enum admin_msg_type {
	ADMIN_MSG_STATUS = 1,
	ADMIN_MSG_LOCKOUTS = 2,
	ADMIN_MSG_UNLOCK = 3,
	ADMIN_MSG_SOURCE = 16,
	ADMIN_MSG_LOCKOUT = 17,
	ADMIN_MSG_DONE = 18,
};

/* DONE's flags. */
#define ADMIN_DONE_LOCAL_ONLY 1u

/* The longest list LOCKOUTS sends (DONE still counts them all). */
#define ADMIN_MAX_LOCKOUTS 10000
/* The longest name, state, scope, client or login on the wire. */
#define ADMIN_MAX_TEXT 600

/* A request from the master. what is "" but for UNLOCK. */
struct admin_request {
	enum admin_msg_type type;
	uint32_t id;
	const char *what;
};

struct admin_source {
	uint32_t id;
	const char *name;
	const char *state;
	uint32_t seconds;
};

struct admin_lockout {
	uint32_t id;
	const char *scope;
	const char *client;
	const char *login;
	uint32_t failures;
	uint32_t remaining_s;
};

/* Encoders: a new message, the caller sends and frees it. Text longer than
 * ADMIN_MAX_TEXT is cut there. */
struct ipc_msg *admin_proto_request(const struct admin_request *);
struct ipc_msg *admin_proto_source(const struct admin_source *);
struct ipc_msg *admin_proto_lockout(const struct admin_lockout *);
struct ipc_msg *admin_proto_done(uint32_t id, uint32_t count, uint32_t flags);

/* Decoders: strings point into msg (valid until ipc_msg_free()). Return 0,
 * or -1 if malformed (a wrong type, a field missing or left over, a NUL, a
 * text over ADMIN_MAX_TEXT, an UNLOCK without what). */
int admin_proto_parse_request(struct ipc_msg *, struct admin_request *r);
int admin_proto_parse_source(struct ipc_msg *, struct admin_source *r);
int admin_proto_parse_lockout(struct ipc_msg *, struct admin_lockout *r);
int admin_proto_parse_done(struct ipc_msg *, uint32_t *id_r, uint32_t *count_r, uint32_t *flags_r);

#endif
