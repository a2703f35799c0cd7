/* SPDX-License-Identifier: ISC */
/*
 * relay_policy.h - may this recipient be accepted on this listener? The one
 * place that decides relaying: nothing relays without a ground (local domain
 * on inbound, client network on outbound, successful AUTH on submission).
 */
#ifndef AUTHRELAY_RELAY_POLICY_H
#define AUTHRELAY_RELAY_POLICY_H

#include <sys/socket.h>
#include "../lib/config.h"
#include "../smtp/smtp_parse.h"

struct relay_ctx {
	const struct config *cfg;
	const struct listener_cfg *listener;
	const struct sockaddr *client;
	bool authenticated;
};

/* NULL if the recipient is accepted, else the full reply line to send
 * ("550 5.7.1 Relay access denied", "530 5.7.0 Authentication required", ...). */
const char *relay_policy_check(const struct relay_ctx *, const struct smtp_path *rcpt);

#endif
