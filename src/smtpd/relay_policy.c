/* SPDX-License-Identifier: ISC */
/*
 * relay_policy.c - the one place that decides whether a recipient may be
 * accepted, so that no listener can turn into an open relay by accident.
 * Each role has exactly one ground for accepting mail:
 *
 *   submission  a successful AUTH (RFC 6409 4.3); then any recipient goes
 *   inbound     the recipient is in one of [relay] local_domains
 *   outbound    the client is inside [relay] client_networks
 *
 * On inbound the local part must not carry routing ('%', '!', a quoted
 * '@') nor a source route: an internal server could otherwise be made to
 * forward "user%victim@example.test" to victim. Address literals are never
 * local. Syntax has already been checked by smtp_parse_mail_args().
 */
#include "relay_policy.h"

#include "../lib/log.h"

static const char relay_err_denied[] = "550 5.7.1 Relay access denied";
static const char relay_err_auth[] = "530 5.7.0 Authentication required";
static const char relay_err_routing[] = "550 5.7.1 Routing characters in local part not accepted";
static const char relay_err_source_route[] = "550 5.7.1 Source routes not accepted";
static const char relay_err_syntax[] = "501 5.1.3 Bad recipient address syntax";

static const char *
relay_policy_inbound(const struct relay_ctx *ctx, const struct smtp_path *rcpt)
{
	/* RFC 5321 4.5.1: "<Postmaster>" must be accepted without a domain. */
	if (rcpt->postmaster)
		return NULL;
	/* An address literal may name any host, this one included only by
	 * accident of configuration; it is never one of our domains. */
	if (rcpt->ip_literal || rcpt->domain[0] == '\0' ||
	    !config_is_local_domain(ctx->cfg, rcpt->domain))
		return relay_err_denied;
	/* RFC 5321 3.6.1 and 4.1.1.3: a source route asks us to relay. */
	if (rcpt->source_route)
		return relay_err_source_route;
	if (smtp_path_has_routing(rcpt))
		return relay_err_routing;
	return NULL;
}

const char *
relay_policy_check(const struct relay_ctx *ctx, const struct smtp_path *rcpt)
{
	if (ctx == NULL || ctx->cfg == NULL || ctx->listener == NULL || rcpt == NULL)
		fatal("relay_policy_check: missing context");
	/* RFC 5321 4.5.5: the null path is a sender, never a recipient. */
	if (rcpt->null)
		return relay_err_syntax;

	switch (ctx->listener->role) {
	case ROLE_SUBMISSION:
		/* RFC 6409 4.3: nothing without authentication; with it the
		 * user may write to anyone, routing characters included. */
		return ctx->authenticated ? NULL : relay_err_auth;
	case ROLE_INBOUND:
		/* AUTH is no ground for relaying here: the inbound listener
		 * only takes mail for our own domains. */
		return relay_policy_inbound(ctx, rcpt);
	case ROLE_OUTBOUND:
		/* The outbound listener serves the internal servers only;
		 * from anywhere else it takes nothing, not even local mail. */
		if (ctx->client != NULL && config_is_client_network(ctx->cfg, ctx->client))
			return NULL;
		return relay_err_denied;
	}
	fatal("relay_policy_check: listener %s has unknown role %d",
	      ctx->listener->name != NULL ? ctx->listener->name : "?", (int)ctx->listener->role);
}
