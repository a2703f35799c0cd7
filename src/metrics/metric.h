/* SPDX-License-Identifier: ISC */
/*
 * metric.h - the gateway's metrics: every family the endpoint shows, its
 * labels and their values, in one table (metric.c) that the storage
 * (lib/metrics.h) is made from. Names follow the log fields: the line
 * `auth mech=PLAIN ... result=fail reason=bad_password source=ldap` is
 * counted in authrelay_auth_attempts_total{mech, source, result, reason}.
 *
 * A call site bumps a family where the event happens, in one line:
 *
 *     metrics_inc(M_AUTH_ATTEMPTS, metric_mech(mech), metric_source(src),
 *                 result, reason);
 *
 * passing each label as the index of its value: an enum below, an enum of
 * the wire (auth_result, auth_reason), or a metric_*() lookup. The README's
 * "Metrics" section lists every family; keep it in step with the table.
 */
#ifndef AUTHRELAY_METRIC_H
#define AUTHRELAY_METRIC_H

#include <stddef.h>
#include "../lib/metrics.h"

/* The families, in the table's (and the exposition's) order. */
enum metric {
	/* master */
	M_BUILD,              /* info{version} */
	M_START_TIME,         /* gauge */
	M_PROCESSES_UP,       /* gauge{process} */
	M_PROCESSES_EXPECTED, /* gauge{process} */
	M_PROCESS_RESTARTS,   /* counter{process} */
	M_RELOADS,            /* counter{result} */
	M_LAST_RELOAD_OK,     /* gauge: Unix time */
	/* SMTP workers */
	M_CONNECTIONS_ACCEPTED, /* counter{listener} */
	M_CONNECTIONS_REFUSED,  /* counter{listener, reason} */
	M_CONNECTIONS_OPEN,     /* gauge{listener} */
	M_SESSIONS,             /* counter{listener, outcome} */
	M_TLS_HANDSHAKES,       /* counter{listener, version} */
	M_TLS_FAILURES,         /* counter{listener, reason} */
	M_MESSAGES_QUEUED,      /* counter{listener} */
	M_MESSAGES_BYTES,       /* counter{listener} */
	M_MESSAGES_REJECTED,    /* counter{listener, reason} */
	/* auth process (and the workers' own AUTH failures) */
	M_AUTH_ATTEMPTS,         /* counter{mech, source, result, reason} */
	M_AUTH_DURATION,         /* histogram{source}, microseconds */
	M_AUTH_CACHE,            /* counter{result} */
	M_AUTH_CACHE_ENTRIES,    /* gauge */
	M_AUTH_LOCKOUTS,         /* gauge: in force */
	M_AUTH_LOCKOUTS_STARTED, /* counter{scope} */
	M_AUTH_DELAYS,           /* histogram, milliseconds */
	M_LDAP_UP,               /* up{directory} */
	M_FORWARD_UP,            /* up{upstream} */
	M_SHARED_REDIS_UP,       /* up: the [shared] Redis link */
	/* queue */
	M_QUEUE_MESSAGES,   /* gauge{state} */
	M_QUEUE_OLDER_THAN, /* gauge{state, age} */
	M_DELIVERIES,       /* counter{status} */
	M_DELIVERY_DELAY,   /* histogram{status}, milliseconds */
	M_COUNT
};

/* process: the children of the master. */
enum metric_process { MP_SMTPD, MP_AUTH, MP_QUEUE, MP_KEYPROC, MP_METRICS, MP_COUNT };

/* result of a reload (log: reload: generation= ..., reload refused). */
enum metric_reload { MRL_OK, MRL_REFUSED };

/* reason of a refused connection (log: refuse reason=). */
enum metric_refuse {
	MR_MAX_CONNECTIONS,
	MR_MAX_CONNECTIONS_PER_IP,
	MR_MAX_QUEUE_SIZE,
	MR_PROXY_TRUSTED_NETWORKS, /* a PROXY header from an untrusted peer */
	MR_PROXY_PROTOCOL,         /* no valid PROXY header in time */
};

/* How a session ended. */
enum metric_outcome {
	MO_QUIT,          /* QUIT, 221 */
	MO_LOST,          /* the client closed or the connection broke */
	MO_TIMEOUT,       /* command, data or handshake timeout: 421 */
	MO_ERRORS,        /* max_errors: 421 */
	MO_AUTH_FAILURES, /* max_auth_failures: 421 */
	MO_MAX_MESSAGES,  /* max_messages_per_session: 421 */
	MO_LOCKED,        /* lockout_reply 421 */
	MO_REFUSED,       /* over a connection limit on an implicit TLS listener */
	MO_TLS_FAILED,    /* the TLS handshake failed */
	MO_INTERNAL,      /* TLS could not be started here */
};

/* reason of a failed TLS handshake. */
enum metric_tls_failure { MT_ERROR, MT_TIMEOUT };

/* reason of a refused message or recipient (log: reject reason=). */
enum metric_reject {
	MJ_MAX_MESSAGE_SIZE,
	MJ_LINE_TOO_LONG,
	MJ_SENDER_LOGIN_MISMATCH,
	MJ_MESSAGES_PER_HOUR,
	MJ_RECIPIENTS_PER_HOUR,
	MJ_RELAY_DENIED,
	MJ_SPOOL_ERROR,
	MJ_OTHER,
};

/* result of an auth cache lookup (log: cache=hit, cache=stale). */
enum metric_cache { MC_HIT, MC_MISS, MC_STALE };

/* state of a queued message. */
enum metric_queue_state { MQ_READY, MQ_ACTIVE, MQ_DEFERRED, MQ_HOLD, MQ_BROKEN, MQ_COUNT };

/* The age thresholds of M_QUEUE_OLDER_THAN, in seconds. */
#define METRIC_N_AGES 5
extern const unsigned metric_ages[METRIC_N_AGES];

/* The table, M_COUNT families. */
const struct metrics_family *metric_families(void);

/* Index of a label value from the text the code has. */
unsigned metric_mech(const char *mech);           /* PLAIN, LOGIN, CRAM-MD5, other */
unsigned metric_source(const char *source);       /* file, ldap, forward, none */
unsigned metric_tls_version(const char *version); /* SSL_get_version(), or other */
unsigned metric_reject(const char *reason);       /* the log's reason= word */
unsigned metric_scope(const char *scope);         /* auth_throttle_scope_name() */
unsigned metric_delivery_status(const char *st);  /* sent, deferred, bounced, expired */
/* Interned names: a listener's, an [ldap NAME]'s, an upstream's. */
unsigned metric_listener(const char *name);
unsigned metric_directory(const char *name);
unsigned metric_upstream(const char *name);

#endif
