/* SPDX-License-Identifier: ISC */
/*
 * protection_config.h - the [protection] and [alerts] sections: auth cache,
 * brute-force throttle, sender policy, per-user sending limits and alerts.
 *
 * The auth process owns both sections: its tables (settings.h) turn them
 * into a plain record, with defaults for every key and errors as
 * "file:line: message". config_load() runs the check through
 * protection_config_module, so the master refuses a bad file at start and
 * check-config reports the same errors. The master and the auth process
 * load their own copy; the SMTP workers get what they need from the master
 * (struct smtpd_params). Every key is documented in README.md under the
 * same name.
 */
#ifndef AUTHRELAY_PROTECTION_CONFIG_H
#define AUTHRELAY_PROTECTION_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>
#include "../lib/common.h"
#include "../lib/config.h"
#include "../lib/net.h"

struct settings_ctx;

/* "more than count events within window seconds"; count 0 = off. */
struct alert_threshold {
	unsigned count;
	unsigned window; /* s */
};

struct alerts_config {
	char **to; /* administrator addresses; none: alerts are logged only */
	size_t n_to;
	char *from; /* header From:, default postmaster@hostname */
	struct alert_threshold login_failures_global;
	struct alert_threshold login_failures_per_login;
	struct alert_threshold login_failures_per_client;
	unsigned cooldown;           /* s between two alerts on one subject */
	unsigned multi_ip_threshold; /* more than this many client addresses... */
	unsigned multi_ip_window;    /* ...in this many seconds; 0 threshold = off */
	unsigned unreachable_after;  /* s a source may fail before an alert; 0 = off */
	char *hook;                  /* /bin/sh -c command fed the alert on stdin */
};

struct protection_config {
	/* auth cache (auth process) */
	unsigned cache_positive_ttl; /* s */
	unsigned cache_negative_ttl; /* s */
	unsigned cache_size;         /* entries; 0 = no cache */
	unsigned cache_stale_ttl;    /* s past the positive TTL; 0 = off */
	/* brute-force throttle (auth process) */
	unsigned throttle_window; /* s */
	unsigned throttle_size;   /* tracked keys */
	unsigned ipv6_prefix;
	unsigned delay_after; /* distinct failures before the delay grows */
	unsigned delay_ms;    /* first extra delay, doubling */
	unsigned delay_max_ms;
	unsigned lockout_client_failures;       /* 0 = off */
	unsigned lockout_login_failures;        /* 0 = off (the lockout shield) */
	unsigned lockout_client_login_failures; /* 0 = off */
	unsigned lockout_time;                  /* s */
	unsigned lockout_reply;                 /* 454, or 421 (and close) */
	unsigned worker_failure_rate;           /* failed checks/s per worker connection */
	struct cidr *allow_networks;
	size_t n_allow_networks;
	/* sender policy and sending limits (SMTP workers) */
	char **sender_allow_users; /* logins that may use any MAIL FROM */
	size_t n_sender_allow_users;
	unsigned messages_per_hour;   /* 0 = unlimited */
	unsigned recipients_per_hour; /* 0 = unlimited */
	unsigned send_limit_size;     /* users tracked at once */
	/* [alerts] */
	struct alerts_config alerts;
};

/* [protection] and [alerts] with their check, for config_set_modules(). */
extern const struct config_module protection_config_module;

/* Fill pc from cfg's [protection] and [alerts] (defaults where a key or the
 * section is absent). Returns 0, or -1 with every problem as
 * "file:line: message\n" in *errors_r (malloc'd, the caller frees); pc is
 * then cleared. */
int protection_config_load(const struct config *cfg, struct protection_config *pc, char **errors_r);
/* The same into ctx (config_load()'s messages): pc is filled even when
 * ctx counts errors, and the caller clears it. */
void protection_config_parse(const struct config *cfg, struct protection_config *pc,
                             struct settings_ctx *ctx);
void protection_config_clear(struct protection_config *);

/* True if sa is in allow_networks (exempt from per-client counting). */
bool protection_allowed(const struct protection_config *, const struct sockaddr *sa);

#endif
