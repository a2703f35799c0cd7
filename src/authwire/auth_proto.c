/* SPDX-License-Identifier: ISC */
/*
 * auth_proto.c - encode and decode the messages SMTP workers and the auth
 * process exchange (HELLO, VERIFY, RESULT, NOTIFY; see auth_proto.h and
 * docs/auth-protocol.md). Pure functions over lib/ipc messages: no I/O.
 *
 * Decoders check what the receiver relies on: a known result and reason, the
 * AUTH_MAX_* bounds, and no NUL inside a text field. Fields added after the
 * last known one are ignored, so a later version can append fields without
 * breaking an older peer (the version in HELLO covers incompatible changes).
 */
#include "auth_proto.h"
#include "../lib/ipc.h"

#include <string.h>

struct ipc_msg *
auth_proto_hello(uint32_t caps)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_HELLO);

	ipc_msg_add_u32(m, AUTH_PROTO_VERSION);
	ipc_msg_add_u32(m, caps);
	return m;
}

struct ipc_msg *
auth_proto_verify(const struct auth_request *r)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_VERIFY);

	ipc_msg_add_u32(m, r->id);
	ipc_msg_add_str(m, r->mech);
	ipc_msg_add_str(m, r->login);
	ipc_msg_add_bytes(m, r->secret != NULL ? r->secret : "", r->secret_len);
	ipc_msg_add_str(m, r->challenge);
	ipc_msg_add_str(m, r->session);
	ipc_msg_add_str(m, r->client);
	ipc_msg_add_str(m, r->listener);
	return m;
}

struct ipc_msg *
auth_proto_result(const struct auth_reply *r)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_RESULT);

	ipc_msg_add_u32(m, r->id);
	ipc_msg_add_u32(m, (uint32_t)r->result);
	ipc_msg_add_str(m, r->identity);
	ipc_msg_add_u32(m, (uint32_t)r->reason);
	ipc_msg_add_u32(m, r->delay_ms);
	ipc_msg_add_str(m, r->addresses);
	return m;
}

struct ipc_msg *
auth_proto_notify(const struct auth_notify *n)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_NOTIFY);

	ipc_msg_add_str(m, n->event);
	ipc_msg_add_str(m, n->user);
	ipc_msg_add_str(m, n->client);
	ipc_msg_add_str(m, n->session);
	ipc_msg_add_str(m, n->limit);
	ipc_msg_add_u32(m, n->count);
	ipc_msg_add_u32(m, n->max);
	return m;
}

struct ipc_msg *
auth_proto_count(uint32_t id, const char *user)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_COUNT);

	ipc_msg_add_u32(m, id);
	ipc_msg_add_str(m, user);
	return m;
}

struct ipc_msg *
auth_proto_counts(const struct auth_counts *c)
{
	struct ipc_msg *m = ipc_msg_new(AUTH_MSG_COUNTS);

	ipc_msg_add_u32(m, c->id);
	ipc_msg_add_u32(m, c->shared ? 1 : 0);
	ipc_msg_add_u32(m, c->msgs);
	ipc_msg_add_u32(m, c->rcpts);
	return m;
}

int
auth_proto_parse_count(struct ipc_msg *m, uint32_t *id_r, const char **user_r)
{
	if (ipc_msg_type(m) != AUTH_MSG_COUNT)
		return -1;
	if (ipc_msg_get_u32(m, id_r) < 0 || ipc_msg_get_str(m, user_r) < 0 ||
	    strlen(*user_r) > AUTH_MAX_LOGIN)
		return -1;
	return 0;
}

int
auth_proto_parse_counts(struct ipc_msg *m, struct auth_counts *c)
{
	uint32_t shared;

	if (ipc_msg_type(m) != AUTH_MSG_COUNTS)
		return -1;
	if (ipc_msg_get_u32(m, &c->id) < 0 || ipc_msg_get_u32(m, &shared) < 0 ||
	    ipc_msg_get_u32(m, &c->msgs) < 0 || ipc_msg_get_u32(m, &c->rcpts) < 0 || shared > 1)
		return -1;
	c->shared = shared == 1;
	return 0;
}

int
auth_proto_parse_hello(struct ipc_msg *m, uint32_t *version_r, uint32_t *caps_r)
{
	if (ipc_msg_type(m) != AUTH_MSG_HELLO)
		return -1;
	if (ipc_msg_get_u32(m, version_r) < 0 || ipc_msg_get_u32(m, caps_r) < 0)
		return -1;
	return 0;
}

int
auth_proto_parse_verify(struct ipc_msg *m, struct auth_request *r)
{
	memset(r, 0, sizeof(*r));
	if (ipc_msg_type(m) != AUTH_MSG_VERIFY)
		return -1;
	/* The secret is bytes: a LOGIN password decoded from base64 may hold
	 * a NUL, and that is a wrong password, not a broken worker. */
	if (ipc_msg_get_u32(m, &r->id) < 0 || ipc_msg_get_str(m, &r->mech) < 0 ||
	    ipc_msg_get_str(m, &r->login) < 0 ||
	    ipc_msg_get_bytes(m, &r->secret, &r->secret_len) < 0 ||
	    ipc_msg_get_str(m, &r->challenge) < 0 || ipc_msg_get_str(m, &r->session) < 0 ||
	    ipc_msg_get_str(m, &r->client) < 0 || ipc_msg_get_str(m, &r->listener) < 0)
		return -1;
	/* Workers enforce these before sending (auth_proto.h). */
	if (strlen(r->login) > AUTH_MAX_LOGIN || r->secret_len > AUTH_MAX_SECRET)
		return -1;
	return 0;
}

int
auth_proto_parse_result(struct ipc_msg *m, struct auth_reply *r)
{
	uint32_t result, reason;

	memset(r, 0, sizeof(*r));
	if (ipc_msg_type(m) != AUTH_MSG_RESULT)
		return -1;
	if (ipc_msg_get_u32(m, &r->id) < 0 || ipc_msg_get_u32(m, &result) < 0 ||
	    ipc_msg_get_str(m, &r->identity) < 0 || ipc_msg_get_u32(m, &reason) < 0 ||
	    ipc_msg_get_u32(m, &r->delay_ms) < 0 || ipc_msg_get_str(m, &r->addresses) < 0)
		return -1;
	if (!auth_reason_valid(reason))
		return -1;
	r->reason = (enum auth_reason)reason;
	switch (result) {
	case AUTH_OK:
	case AUTH_FAIL:
	case AUTH_TEMPFAIL:
		r->result = (enum auth_result)result;
		return 0;
	}
	return -1;
}

int
auth_proto_parse_notify(struct ipc_msg *m, struct auth_notify *n)
{
	memset(n, 0, sizeof(*n));
	if (ipc_msg_type(m) != AUTH_MSG_NOTIFY)
		return -1;
	if (ipc_msg_get_str(m, &n->event) < 0 || ipc_msg_get_str(m, &n->user) < 0 ||
	    ipc_msg_get_str(m, &n->client) < 0 || ipc_msg_get_str(m, &n->session) < 0 ||
	    ipc_msg_get_str(m, &n->limit) < 0 || ipc_msg_get_u32(m, &n->count) < 0 ||
	    ipc_msg_get_u32(m, &n->max) < 0)
		return -1;
	if (strlen(n->user) > AUTH_MAX_LOGIN)
		return -1;
	return 0;
}

const char *
auth_result_name(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:
		return "ok";
	case AUTH_FAIL:
		return "fail";
	case AUTH_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}
