/* SPDX-License-Identifier: ISC */
/*
 * auth_alert_link.h - the auth process's end of the alert channel to the
 * queue process (src/authwire/alert_proto.h): it sends MAIL and HOOK
 * messages, one record each, without ever blocking the loop. While the
 * queue process does not read (busy, or restarting: the records wait in the
 * socket the master keeps open), up to AUTH_ALERT_LINK_BACKLOG messages
 * wait here for the socket to drain; beyond that an alert's mail or hook is
 * dropped, and its log line says so.
 */
#ifndef AUTHRELAY_AUTH_ALERT_LINK_H
#define AUTHRELAY_AUTH_ALERT_LINK_H

#include <stdbool.h>

struct event_base;
struct ipc_msg;
struct auth_alert_link;

#define AUTH_ALERT_LINK_BACKLOG 64

/* fd: the auth end of the master's SOCK_SEQPACKET pair, owned from here on
 * (closed by _free); -1 when there is none (a test, or no queue process):
 * every send is then refused. */
struct auth_alert_link *auth_alert_link_new(struct event_base *base, int fd);
/* Messages still waiting are dropped, with a warning. NULL is fine. */
void auth_alert_link_free(struct auth_alert_link *);

/* An auth_alert_send_cb (auth_alert.h); arg is the link. Takes msg. True if
 * it was sent or waits in the backlog, false if it was dropped (no channel,
 * backlog full, too big, the socket failed). */
bool auth_alert_link_send(struct ipc_msg *msg, void *arg);

#endif
