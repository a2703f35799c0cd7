/* SPDX-License-Identifier: ISC */
/*
 * admin_proto.c - encoding and strict decoding of the admin channel's
 * messages (admin_proto.h) on lib/ipc frames.
 */
#include "admin_proto.h"
#include "../lib/ipc.h"

#include <string.h>

static void
add_text(struct ipc_msg *m, const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;
	ipc_msg_add_bytes(m, s != NULL ? s : "", len > ADMIN_MAX_TEXT ? ADMIN_MAX_TEXT : len);
}

static int
get_text(struct ipc_msg *m, const char **s_r)
{
	if (ipc_msg_get_str(m, s_r) < 0 || strlen(*s_r) > ADMIN_MAX_TEXT)
		return -1;
	return 0;
}

/* Nothing may follow the last field. */
static int
at_end(struct ipc_msg *m)
{
	uint32_t v;
	return ipc_msg_get_u32(m, &v) < 0 ? 0 : -1;
}

struct ipc_msg *
admin_proto_request(const struct admin_request *r)
{
	struct ipc_msg *m = ipc_msg_new((uint8_t)r->type);
	ipc_msg_add_u32(m, r->id);
	if (r->type == ADMIN_MSG_UNLOCK)
		add_text(m, r->what);
	return m;
}

struct ipc_msg *
admin_proto_source(const struct admin_source *s)
{
	struct ipc_msg *m = ipc_msg_new(ADMIN_MSG_SOURCE);
	ipc_msg_add_u32(m, s->id);
	add_text(m, s->name);
	add_text(m, s->state);
	ipc_msg_add_u32(m, s->seconds);
	return m;
}

struct ipc_msg *
admin_proto_lockout(const struct admin_lockout *l)
{
	struct ipc_msg *m = ipc_msg_new(ADMIN_MSG_LOCKOUT);
	ipc_msg_add_u32(m, l->id);
	add_text(m, l->scope);
	add_text(m, l->client);
	add_text(m, l->login);
	ipc_msg_add_u32(m, l->failures);
	ipc_msg_add_u32(m, l->remaining_s);
	return m;
}

struct ipc_msg *
admin_proto_done(uint32_t id, uint32_t count, uint32_t flags)
{
	struct ipc_msg *m = ipc_msg_new(ADMIN_MSG_DONE);
	ipc_msg_add_u32(m, id);
	ipc_msg_add_u32(m, count);
	ipc_msg_add_u32(m, flags);
	return m;
}

int
admin_proto_parse_request(struct ipc_msg *m, struct admin_request *r)
{
	memset(r, 0, sizeof(*r));
	r->type = (enum admin_msg_type)ipc_msg_type(m);
	r->what = "";
	if (r->type != ADMIN_MSG_STATUS && r->type != ADMIN_MSG_LOCKOUTS &&
	    r->type != ADMIN_MSG_UNLOCK)
		return -1;
	if (ipc_msg_get_u32(m, &r->id) < 0)
		return -1;
	if (r->type == ADMIN_MSG_UNLOCK && (get_text(m, &r->what) < 0 || r->what[0] == '\0'))
		return -1;
	return at_end(m);
}

int
admin_proto_parse_source(struct ipc_msg *m, struct admin_source *s)
{
	memset(s, 0, sizeof(*s));
	if (ipc_msg_type(m) != ADMIN_MSG_SOURCE || ipc_msg_get_u32(m, &s->id) < 0 ||
	    get_text(m, &s->name) < 0 || get_text(m, &s->state) < 0 ||
	    ipc_msg_get_u32(m, &s->seconds) < 0)
		return -1;
	return at_end(m);
}

int
admin_proto_parse_lockout(struct ipc_msg *m, struct admin_lockout *l)
{
	memset(l, 0, sizeof(*l));
	if (ipc_msg_type(m) != ADMIN_MSG_LOCKOUT || ipc_msg_get_u32(m, &l->id) < 0 ||
	    get_text(m, &l->scope) < 0 || get_text(m, &l->client) < 0 ||
	    get_text(m, &l->login) < 0 || ipc_msg_get_u32(m, &l->failures) < 0 ||
	    ipc_msg_get_u32(m, &l->remaining_s) < 0)
		return -1;
	return at_end(m);
}

int
admin_proto_parse_done(struct ipc_msg *m, uint32_t *id_r, uint32_t *count_r, uint32_t *flags_r)
{
	if (ipc_msg_type(m) != ADMIN_MSG_DONE || ipc_msg_get_u32(m, id_r) < 0 ||
	    ipc_msg_get_u32(m, count_r) < 0 || ipc_msg_get_u32(m, flags_r) < 0)
		return -1;
	return at_end(m);
}
