/* SPDX-License-Identifier: ISC */
/*
 * shared_config.h - the [shared] section: the Redis server that several
 * gateways behind one load balancer share their counters through (README
 * "Running several gateways").
 *
 * Without `redis` nothing is shared and nothing below is used. The auth
 * process owns the connection (the SMTP workers may not open network
 * sockets: sandbox.c); the master checks the section at load time.
 */
#ifndef AUTHRELAY_SHARED_CONFIG_H
#define AUTHRELAY_SHARED_CONFIG_H

#include "../lib/common.h"
#include "../lib/config.h"

struct settings_ctx;

struct shared_config {
	char *redis;           /* "127.0.0.1:6379", "[::1]:6379" or "unix:/path"; NULL = off */
	char *password_file;   /* first line is the AUTH password; NULL = none */
	unsigned database;     /* SELECT n */
	char *key_prefix;      /* before every key, "authrelay:" */
	unsigned timeout_ms;   /* connect and each command; then local counting */
	bool tls;              /* TLS to Redis, always verified */
	char *tls_ca_file;     /* trust anchors; NULL = the system's store */
	char *tls_server_name; /* the name to verify and send; NULL = redis's host */
	char *tls_cert_file;   /* client certificate (tls-auth-clients); NULL = none */
	char *tls_key_file;    /* its key, set with tls_cert_file */
	bool send_limits;      /* share messages_per_hour / recipients_per_hour */
	bool lockouts;         /* share the brute-force counters and lockouts */
	char *secret_file;     /* first line: the cluster's secret naming passwords; NULL = none */
};

/* [shared] with its check, for config_set_modules(). */
extern const struct config_module shared_config_module;

/* Fill sc from cfg's [shared] (defaults where absent). Returns 0, or -1 with
 * every problem as "file:line: message\n" in *errors_r (malloc'd). */
int shared_config_load(const struct config *cfg, struct shared_config *sc, char **errors_r);
void shared_config_clear(struct shared_config *);

#endif
