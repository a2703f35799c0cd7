/* SPDX-License-Identifier: ISC */
/*
 * ldap_conn.h - a bounded pool of libldap connections to one directory
 * ([ldap NAME]), driven from the auth process's event loop.
 *
 * A caller acquires a connection, runs searches or binds on it, and
 * releases it. Two roles:
 *   LDAP_CONN_SEARCH  bound as the service account (or anonymous); shared:
 *                     several holders pipeline their searches on it;
 *   LDAP_CONN_BIND    for user binds: one holder at a time, since a bind must
 *                     not share its connection with other operations in
 *                     flight (RFC 4511 4.2.1). The holder may search on it
 *                     afterwards, as the user it bound as.
 *
 * Every callback runs on the loop thread, exactly once, and never before
 * the call that asked for it has returned. Results (struct
 * ldap_conn_result) are valid during the callback only.
 *
 * Failures carry an LDAP result code: the server's, or LDAP_SERVER_DOWN
 * (could not connect, connection lost, directory in back-off) or
 * LDAP_TIMEOUT (no answer within the directory's timeout).
 */
#ifndef AUTHRELAY_LDAP_CONN_H
#define AUTHRELAY_LDAP_CONN_H

#include <stddef.h>
#include <lber.h>
#include "../lib/common.h"

struct event_base;
struct ldap_dir_cfg;
struct ldap_conn_pool;
struct ldap_conn;

enum ldap_conn_role { LDAP_CONN_SEARCH = 0, LDAP_CONN_BIND = 1 };

struct ldap_conn_attr {
	char *name;
	struct berval *vals; /* wiped when freed: may hold password hashes */
	size_t n_vals;
};

struct ldap_conn_entry {
	char *dn;
	struct ldap_conn_attr *attrs;
	size_t n_attrs;
};

struct ldap_conn_result {
	int rc;                          /* LDAP_SUCCESS or an LDAP result code */
	const char *error;               /* what went wrong, for logs; NULL on success */
	const char *uri;                 /* the server that answered, or NULL */
	struct ldap_conn_entry *entries; /* search: at most max_entries */
	size_t n_entries;
	bool more; /* the search matched more than max_entries entries */
};

/* An Active Directory domain of the forest (a crossRef entry). */
struct ldap_conn_domain {
	char *netbios; /* "CORP" */
	char *dn;      /* its naming context, "DC=corp,DC=example" */
};

typedef void ldap_conn_acquire_cb(void *arg, struct ldap_conn *conn, int rc, const char *error);
typedef void ldap_conn_done_cb(void *arg, const struct ldap_conn_result *res);
/* One line of trace (for "authrelay test-auth"). */
typedef void ldap_conn_trace_cb(void *arg, const char *line);

/* A pool for dir (which must outlive it). bind_password is copied (NULL
 * without a service account). Connections are opened on demand. */
struct ldap_conn_pool *ldap_conn_pool_new(struct event_base *base, const struct ldap_dir_cfg *dir,
                                          const char *bind_password);
/* New service password (SIGHUP): used by connections opened from now on. */
void ldap_conn_pool_set_password(struct ldap_conn_pool *, const char *bind_password);
void ldap_conn_pool_set_trace(struct ldap_conn_pool *, ldap_conn_trace_cb *cb, void *arg);
/* Close everything; no callback runs after this. Waits for a connection
 * attempt in progress (bounded by the directory's timeouts). */
void ldap_conn_pool_free(struct ldap_conn_pool *);

/* Get a connection of role: cb gets it (conn != NULL, rc LDAP_SUCCESS), or
 * NULL with the reason if none could be had within the directory's timeout.
 * The holder must call ldap_conn_release() once done. */
void ldap_conn_acquire(struct ldap_conn_pool *, enum ldap_conn_role role, ldap_conn_acquire_cb *cb,
                       void *arg);
void ldap_conn_release(struct ldap_conn *);
/* The URI the connection is open to. */
const char *ldap_conn_uri(const struct ldap_conn *);
/* type = ad or gc without netbios_domain: the forest's domains, read once
 * with the service account when the first search connection is set up.
 * False while not read (yet, or it failed: each new search connection
 * tries again); then *d_r and *n_r are the list (valid while the pool is). */
bool ldap_conn_pool_domains(const struct ldap_conn_pool *, const struct ldap_conn_domain **d_r,
                            size_t *n_r);

/* Search on conn (scope is LDAP_SCOPE_*); attrs NULL-terminated (NULL: all
 * user attributes). The server is asked for at most max_entries entries;
 * res->more tells that there were more. */
void ldap_conn_search(struct ldap_conn *conn, const char *base, int scope, const char *filter,
                      char *const *attrs, unsigned max_entries, ldap_conn_done_cb *cb, void *arg);
/* Simple bind on a LDAP_CONN_BIND connection (the password is copied and
 * wiped; len must be > 0: an empty one would be an unauthenticated bind,
 * RFC 4513 5.1.2, and is refused with LDAP_INAPPROPRIATE_AUTH). */
void ldap_conn_bind(struct ldap_conn *conn, const char *dn, const char *password, size_t len,
                    ldap_conn_done_cb *cb, void *arg);

#endif
