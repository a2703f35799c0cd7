/* SPDX-License-Identifier: ISC */
/*
 * alert_proto.c - encode and decode the alert channel's two messages, MAIL
 * and HOOK (alert_proto.h). Pure functions over lib/ipc messages: no I/O.
 *
 * The decoders check what the queue process relies on: a kind it can put on
 * a log line and in an environment variable unescaped, at least one
 * recipient, and bounded texts.
 */
#include "alert_proto.h"
#include "../lib/ipc.h"

#include <string.h>

static size_t
alert_cap(size_t len)
{
	return len > ALERT_MAX_TEXT ? ALERT_MAX_TEXT : len;
}

struct ipc_msg *
alert_proto_mail(const struct alert_mail_msg *a)
{
	struct ipc_msg *m = ipc_msg_new(ALERT_MSG_MAIL);

	ipc_msg_add_str(m, a->kind);
	ipc_msg_add_str(m, a->to);
	ipc_msg_add_bytes(m, a->message, alert_cap(a->message_len));
	return m;
}

struct ipc_msg *
alert_proto_hook(const struct alert_hook_msg *h)
{
	struct ipc_msg *m = ipc_msg_new(ALERT_MSG_HOOK);

	ipc_msg_add_str(m, h->kind);
	ipc_msg_add_bytes(m, h->text, alert_cap(h->text_len));
	return m;
}

static bool
alert_kind_ok(const char *kind)
{
	size_t n = strlen(kind);

	return n > 0 && n <= ALERT_MAX_KIND && strspn(kind, "abcdefghijklmnopqrstuvwxyz_") == n;
}

int
alert_proto_parse_mail(struct ipc_msg *m, struct alert_mail_msg *r)
{
	memset(r, 0, sizeof(*r));
	if (ipc_msg_type(m) != ALERT_MSG_MAIL)
		return -1;
	if (ipc_msg_get_str(m, &r->kind) < 0 || ipc_msg_get_str(m, &r->to) < 0 ||
	    ipc_msg_get_bytes(m, &r->message, &r->message_len) < 0)
		return -1;
	if (!alert_kind_ok(r->kind) || r->to[0] == '\0' || r->message_len == 0 ||
	    r->message_len > ALERT_MAX_TEXT)
		return -1;
	return 0;
}

int
alert_proto_parse_hook(struct ipc_msg *m, struct alert_hook_msg *r)
{
	memset(r, 0, sizeof(*r));
	if (ipc_msg_type(m) != ALERT_MSG_HOOK)
		return -1;
	if (ipc_msg_get_str(m, &r->kind) < 0 || ipc_msg_get_bytes(m, &r->text, &r->text_len) < 0)
		return -1;
	if (!alert_kind_ok(r->kind) || r->text_len == 0 || r->text_len > ALERT_MAX_TEXT)
		return -1;
	return 0;
}
