/* SPDX-License-Identifier: ISC */
/*
 * alert_proto.h - the alert channel: the auth process decides alerts
 * (src/auth/auth_alert.h) but neither writes the spool nor starts a shell,
 * since it holds the secrets; it hands both jobs to the queue process, which
 * spools alert mails as it spools DSNs and runs [alerts] hook as [server]
 * user (src/queue/alert_intake.h). Documented in docs/auth-protocol.md.
 *
 *   MAIL  auth -> queue, no answer:  kind, to (comma-separated), bytes message
 *   HOOK  auth -> queue, no answer:  kind, bytes text (the hook's stdin)
 *
 * Transport: a SOCK_SEQPACKET socket pair the master makes before it forks
 * and keeps open, one lib/ipc frame per record (ipc_msg_send_record()). Since
 * the master holds both ends, records wait in the socket while the queue
 * process restarts, and both ends always run the same binary: there is no
 * version handshake. The hook's command is not on the wire: the queue
 * process takes it from its own parameters, so the auth process can only ask
 * for the command the admin configured.
 */
#ifndef AUTHRELAY_ALERT_PROTO_H
#define AUTHRELAY_ALERT_PROTO_H

#include <stddef.h>

struct ipc_msg;

enum alert_msg_type {
	ALERT_MSG_MAIL = 1, /* put this alert mail into the spool, from <> */
	ALERT_MSG_HOOK = 2, /* run [alerts] hook with this text on its stdin */
};

/* The largest message or hook text (alerts are a few kB). */
#define ALERT_MAX_TEXT 60000
/* An alert's kind: a log-safe word ("login_failures"). */
#define ALERT_MAX_KIND 64

struct alert_mail_msg {
	const char *kind;    /* "login_failures", "send_limit", ... */
	const char *to;      /* "a@x,b@y" */
	const char *message; /* RFC 5322 text, CRLF line ends */
	size_t message_len;
};

struct alert_hook_msg {
	const char *kind; /* also AUTHRELAY_ALERT_KIND in the hook's environment */
	const char *text; /* the hook's stdin */
	size_t text_len;
};

/* Encoders: a new message for ipc_msg_send_record(), the caller frees it.
 * message_len and text_len must be at most ALERT_MAX_TEXT (longer is cut
 * there). */
struct ipc_msg *alert_proto_mail(const struct alert_mail_msg *);
struct ipc_msg *alert_proto_hook(const struct alert_hook_msg *);

/* Decoders: fields point into msg (valid until ipc_msg_free()). Return 0,
 * or -1 if malformed: a wrong type, a field missing, a NUL in a text field,
 * a kind that is not a word of [a-z_] up to ALERT_MAX_KIND, no recipient, an
 * empty or oversized message or text. */
int alert_proto_parse_mail(struct ipc_msg *, struct alert_mail_msg *r);
int alert_proto_parse_hook(struct ipc_msg *, struct alert_hook_msg *r);

#endif
