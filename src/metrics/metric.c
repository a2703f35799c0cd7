/* SPDX-License-Identifier: ISC */
/*
 * metric.c - the table of the gateway's metric families and their label
 * values (see metric.h). HELP texts say what is counted and where; units
 * are in the names (seconds, bytes). Histograms observe integers: the
 * auth duration in microseconds, delays in milliseconds, shown in seconds.
 */
#include "metric.h"
#include "../authwire/auth_proto.h"
#include "../authwire/auth_reason.h"
#include "../lib/build_info.h"
#include "../lib/common.h"

#include <string.h>

#define VALUES(fn, ...)                                                                            \
	static const char *const fn##_names[] = {__VA_ARGS__};                                     \
	static const char *fn(unsigned i)                                                          \
	{                                                                                          \
		return i < AR_NELEM(fn##_names) ? fn##_names[i] : "?";                             \
	}
#define STATIC_DIM(var, lbl, fn)                                                                   \
	static const struct metrics_dim var = {                                                    \
	        .label = lbl, .size = AR_NELEM(fn##_names), .value = fn}

VALUES(version_value, AUTHRELAY_VERSION)
VALUES(process_value, "smtpd", "auth", "queue", "keyproc", "metrics")
VALUES(reload_value, "ok", "refused")
VALUES(refuse_value, "max_connections", "max_connections_per_ip", "max_queue_size",
       "proxy_trusted_networks", "proxy_protocol")
VALUES(outcome_value, "quit", "lost", "timeout", "max_errors", "max_auth_failures",
       "max_messages_per_session", "locked", "refused", "tls_failed", "internal")
VALUES(tls_version_value, "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other")
VALUES(tls_failure_value, "error", "timeout")
VALUES(reject_value, "max_message_size", "line_too_long", "sender_login_mismatch",
       "messages_per_hour", "recipients_per_hour", "relay_denied", "spool_error", "other")
VALUES(mech_value, "PLAIN", "LOGIN", "CRAM-MD5", "other")
VALUES(source_value, "file", "ldap", "forward", "none")
VALUES(cache_value, "hit", "miss", "stale")
VALUES(scope_value, "client", "client_login", "login")
VALUES(queue_state_value, "ready", "active", "deferred", "hold", "broken")
VALUES(age_value, "5m", "1h", "4h", "1d", "5d")
VALUES(delivery_value, "sent", "deferred", "bounced", "expired")

const unsigned metric_ages[METRIC_N_AGES] = {300, 3600, 4 * 3600, 86400, 5 * 86400};

static const char *
result_value(unsigned i)
{
	return auth_result_name((enum auth_result)i);
}

static const char *
reason_value(unsigned i)
{
	return auth_reason_name((enum auth_reason)i);
}

STATIC_DIM(dim_version, "version", version_value);
STATIC_DIM(dim_process, "process", process_value);
STATIC_DIM(dim_reload, "result", reload_value);
STATIC_DIM(dim_refuse, "reason", refuse_value);
STATIC_DIM(dim_outcome, "outcome", outcome_value);
STATIC_DIM(dim_tls_version, "version", tls_version_value);
STATIC_DIM(dim_tls_failure, "reason", tls_failure_value);
STATIC_DIM(dim_reject, "reason", reject_value);
STATIC_DIM(dim_mech, "mech", mech_value);
STATIC_DIM(dim_source, "source", source_value);
STATIC_DIM(dim_cache, "result", cache_value);
STATIC_DIM(dim_scope, "scope", scope_value);
STATIC_DIM(dim_queue_state, "state", queue_state_value);
STATIC_DIM(dim_age, "age", age_value);
STATIC_DIM(dim_delivery, "status", delivery_value);
static const struct metrics_dim dim_result = {.label = "result", .size = 3, .value = result_value};
static const struct metrics_dim dim_reason = {
        .label = "reason", .size = AUTH_REASON_COUNT, .value = reason_value};
/* Interned: room for 64 listeners, 32 directories, 32 upstreams (the
 * most [smtp-forward] takes), and "(other)". */
static const struct metrics_dim dim_listener = {.label = "listener", .size = 65};
static const struct metrics_dim dim_directory = {.label = "directory", .size = 33};
static const struct metrics_dim dim_upstream = {.label = "upstream", .size = 33};

/* Microseconds, for the auth duration: 1 ms to 30 s. */
static const uint64_t auth_bounds[] = {1000,    2500,    5000,     10000,   25000,
                                       50000,   100000,  250000,   500000,  1000000,
                                       2500000, 5000000, 10000000, 30000000};
/* Milliseconds, for the throttle's delays (delay_ms doubling to delay_max_ms). */
static const uint64_t delay_bounds[] = {500, 1000, 2000, 4000, 8000, 15000, 30000, 60000, 600000};
/* Milliseconds since arrival, for deliveries: 1 s to 5 days. */
static const uint64_t delivery_bounds[] = {1000,   5000,    10000,    30000,    60000,    300000,
                                           900000, 3600000, 14400000, 86400000, 432000000};

#define DIMS(...)                                                                                  \
	.dims = {__VA_ARGS__}, .n_dims = AR_NELEM(((const struct metrics_dim *[]){__VA_ARGS__}))
#define BOUNDS(b, dec) .bounds = b, .n_bounds = AR_NELEM(b), .decimals = dec

static const struct metrics_family families[M_COUNT] = {
        [M_BUILD] = {"authrelay_build", "The version running (always 1).", METRICS_INFO,
                     DIMS(&dim_version)},
        [M_START_TIME] = {"authrelay_start_time_seconds",
                          "When the master started, in seconds since the epoch.", METRICS_GAUGE},
        [M_PROCESSES_UP] = {"authrelay_processes_up", "Children running and reported up, per kind.",
                            METRICS_GAUGE, DIMS(&dim_process)},
        [M_PROCESSES_EXPECTED] = {"authrelay_processes_expected",
                                  "Children the configuration asks for, per kind.", METRICS_GAUGE,
                                  DIMS(&dim_process)},
        [M_PROCESS_RESTARTS] = {"authrelay_process_restarts",
                                "Children that died and were started again, per kind.",
                                METRICS_COUNTER, DIMS(&dim_process)},
        [M_RELOADS] = {"authrelay_reloads",
                       "Configuration reloads (SIGHUP, authrelay reload): ok, or refused "
                       "(the running configuration stays).",
                       METRICS_COUNTER, DIMS(&dim_reload)},
        [M_LAST_RELOAD_OK] = {"authrelay_config_last_reload_success_timestamp_seconds",
                              "When the running configuration was loaded (the start or the "
                              "last reload that was not refused), in seconds since the epoch.",
                              METRICS_GAUGE},
        [M_CONNECTIONS_ACCEPTED] = {"authrelay_connections_accepted",
                                    "TCP connections accepted on each listener (refused ones "
                                    "included).",
                                    METRICS_COUNTER, DIMS(&dim_listener)},
        [M_CONNECTIONS_REFUSED] = {"authrelay_connections_refused",
                                   "Connections refused at once over a limit (log: refuse "
                                   "reason=).",
                                   METRICS_COUNTER, DIMS(&dim_listener, &dim_refuse)},
        [M_CONNECTIONS_OPEN] = {"authrelay_connections_open",
                                "SMTP sessions open now on each listener.", METRICS_GAUGE,
                                DIMS(&dim_listener)},
        [M_SESSIONS] = {"authrelay_sessions", "Sessions ended, by how they ended.", METRICS_COUNTER,
                        DIMS(&dim_listener, &dim_outcome), .sparse = true},
        [M_TLS_HANDSHAKES] = {"authrelay_tls_handshakes",
                              "TLS handshakes completed (STARTTLS and implicit TLS), by "
                              "protocol version.",
                              METRICS_COUNTER, DIMS(&dim_listener, &dim_tls_version),
                              .sparse = true},
        [M_TLS_FAILURES] = {"authrelay_tls_handshake_failures", "TLS handshakes that failed.",
                            METRICS_COUNTER, DIMS(&dim_listener, &dim_tls_failure)},
        [M_MESSAGES_QUEUED] = {"authrelay_messages_queued",
                               "Messages accepted with 250 (log: queued).", METRICS_COUNTER,
                               DIMS(&dim_listener)},
        [M_MESSAGES_BYTES] = {"authrelay_messages_queued_bytes",
                              "Bytes of the messages accepted (log: size=).", METRICS_COUNTER,
                              DIMS(&dim_listener)},
        [M_MESSAGES_REJECTED] = {"authrelay_messages_rejected",
                                 "Messages or recipients refused (log: reject reason=); "
                                 "relay_denied and the per-hour limits count one recipient "
                                 "or MAIL each.",
                                 METRICS_COUNTER, DIMS(&dim_listener, &dim_reject), .sparse = true},
        [M_AUTH_ATTEMPTS] = {"authrelay_auth_attempts",
                             "AUTH attempts answered (log: auth mech= result= reason= "
                             "source=); source none: answered without a source.",
                             METRICS_COUNTER,
                             DIMS(&dim_mech, &dim_source, &dim_result, &dim_reason),
                             .sparse = true},
        [M_AUTH_DURATION] = {"authrelay_auth_duration_seconds",
                             "Time from an AUTH request to its answer in the auth process, "
                             "per source.",
                             METRICS_HISTOGRAM, DIMS(&dim_source), BOUNDS(auth_bounds, 6),
                             .sparse = true},
        [M_AUTH_CACHE] = {"authrelay_auth_cache_lookups",
                          "Auth cache lookups: hit, miss, and stale (a cached success "
                          "answering while the source cannot).",
                          METRICS_COUNTER, DIMS(&dim_cache)},
        [M_AUTH_CACHE_ENTRIES] = {"authrelay_auth_cache_entries", "Answers in the auth cache now.",
                                  METRICS_GAUGE},
        [M_AUTH_LOCKOUTS] = {"authrelay_auth_lockouts",
                             "Lockouts of the brute-force throttle in force now.", METRICS_GAUGE},
        [M_AUTH_LOCKOUTS_STARTED] = {"authrelay_auth_lockouts_started",
                                     "Lockouts started (log: auth: lockout scope=).",
                                     METRICS_COUNTER, DIMS(&dim_scope)},
        [M_AUTH_DELAYS] = {"authrelay_auth_throttle_delay_seconds",
                           "Delays the throttle put on failed AUTH answers (log: delay_ms=).",
                           METRICS_HISTOGRAM, BOUNDS(delay_bounds, 3)},
        [M_LDAP_UP] = {"authrelay_ldap_directory_up",
                       "1 while an [ldap NAME] directory is usable, 0 while it is in back-off "
                       "after a failure.",
                       METRICS_UP, DIMS(&dim_directory)},
        [M_FORWARD_UP] = {"authrelay_forward_upstream_up",
                          "1 while an [smtp-forward] upstream is usable, 0 while it is marked "
                          "down.",
                          METRICS_UP, DIMS(&dim_upstream)},
        [M_SHARED_REDIS_UP] = {"authrelay_shared_redis_up",
                               "1 while the [shared] Redis answers, 0 while the gateway "
                               "counts alone.",
                               METRICS_UP},
        [M_QUEUE_MESSAGES] = {"authrelay_queue_messages",
                              "Messages in the queue, by state (held: by the admin; broken: "
                              "unreadable).",
                              METRICS_GAUGE, DIMS(&dim_queue_state)},
        [M_QUEUE_OLDER_THAN] = {"authrelay_queue_messages_older_than",
                                "Messages in the queue that arrived more than age ago.",
                                METRICS_GAUGE, DIMS(&dim_queue_state, &dim_age)},
        [M_DELIVERIES] = {"authrelay_deliveries",
                          "Delivery results, one per recipient and attempt (log: status=).",
                          METRICS_COUNTER, DIMS(&dim_delivery)},
        [M_DELIVERY_DELAY] = {"authrelay_delivery_delay_seconds",
                              "Time from arrival to each delivery result (log: delay=).",
                              METRICS_HISTOGRAM, DIMS(&dim_delivery), BOUNDS(delivery_bounds, 3),
                              .sparse = true},
};

const struct metrics_family *
metric_families(void)
{
	return families;
}

unsigned
metric_mech(const char *mech)
{
	for (unsigned i = 0; i + 1 < AR_NELEM(mech_value_names); i++)
		if (mech != NULL && ascii_strcasecmp(mech, mech_value_names[i]) == 0)
			return i;
	return AR_NELEM(mech_value_names) - 1;
}

unsigned
metric_source(const char *source)
{
	return metrics_value_index(&dim_source, source, AR_NELEM(source_value_names) - 1);
}

unsigned
metric_tls_version(const char *version)
{
	return metrics_value_index(&dim_tls_version, version,
	                           AR_NELEM(tls_version_value_names) - 1);
}

unsigned
metric_reject(const char *reason)
{
	return metrics_value_index(&dim_reject, reason, MJ_OTHER);
}

unsigned
metric_scope(const char *scope)
{
	return metrics_value_index(&dim_scope, scope, 0);
}

unsigned
metric_delivery_status(const char *st)
{
	/* The queue logs these four; anything else would be a retry. */
	return metrics_value_index(&dim_delivery, st, 1);
}

unsigned
metric_listener(const char *name)
{
	return metrics_intern(&dim_listener, name);
}

unsigned
metric_directory(const char *name)
{
	return metrics_intern(&dim_directory, name);
}

unsigned
metric_upstream(const char *name)
{
	return metrics_intern(&dim_upstream, name);
}
