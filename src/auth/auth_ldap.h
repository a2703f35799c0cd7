/* SPDX-License-Identifier: ISC */
/*
 * auth_ldap.h - the LDAP source outside the auth server: what the admin
 * tools ("authrelay test-auth", "test-query", auth_test_cmd.c) need to run
 * one check with a trace of every step. The daemon uses the source through
 * auth_source_ldap (auth_source.h) only.
 */
#ifndef AUTHRELAY_AUTH_LDAP_H
#define AUTHRELAY_AUTH_LDAP_H

#include "auth_source.h"

struct auth_ldap;

/* On AUTH_OK (and AUTH_REASON_FOUND), identity is the entry's canonical
 * identity (its normalized DN) and addresses its mail_attributes values
 * "a@x,b@y" (or NULL); both valid during the call. */
typedef void auth_ldap_done_cb(void *arg, enum auth_result result, enum auth_reason reason,
                               const char *identity, const char *addresses);
typedef void auth_ldap_trace_cb(void *arg, const char *line);

/* Load the [ldap NAME] sections (no connection is opened yet). 0, or -1
 * with *error_r (file:line lines; valid until the next call). */
int auth_ldap_new(const struct auth_env *env, struct auth_ldap **r, const char **error_r);
void auth_ldap_free(struct auth_ldap *);

/* Send a line per step (directory, URI, filter, entries, method, outcome)
 * to cb. */
void auth_ldap_set_trace(struct auth_ldap *, auth_ldap_trace_cb *cb, void *arg);

/* Check req (strings copied) in every directory; cb runs once on the loop,
 * never before this returns. lookup_only: search only, tracing the entries
 * and every attribute found; the result is AUTH_OK AUTH_REASON_FOUND when exactly one
 * entry matched in all directories. */
void auth_ldap_check(struct auth_ldap *, const struct auth_request *req, bool lookup_only,
                     auth_ldap_done_cb *cb, void *arg);

#endif
