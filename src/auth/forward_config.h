/*
 * forward_config.h - the [smtp-forward] section: the upstreams (names
 * resolved when the section is parsed) and how to talk to them.
 *
 * Like struct ldap_dir_cfg, the record is public and read by every part of
 * the forwarding source. Each upstream also carries its health (down_until,
 * down_why), which only forward_upstream.c changes. Every key is documented
 * in README.md under "[smtp-forward]".
 */
#ifndef AUTHRELAY_FORWARD_CONFIG_H
#define AUTHRELAY_FORWARD_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "../lib/common.h"

struct config;

#define FWD_SECTION "smtp-forward"
#define FWD_MAX_UPSTREAMS 32

enum fwd_tls { FWD_TLS_STARTTLS, FWD_TLS_IMPLICIT, FWD_TLS_NONE };
enum fwd_mech { FWD_MECH_PLAIN, FWD_MECH_LOGIN };

struct fwd_upstream {
	char *name;     /* as written: "mail.example.org:587" */
	char *tls_name; /* expected certificate name */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[INET6_ADDRSTRLEN + 8];
	int64_t down_until; /* monotonic ms; 0 = healthy */
	char down_why[96];
};

struct fwd_settings {
	struct fwd_upstream *up;
	size_t n_up;
	enum fwd_tls tls;
	char *ca_file;
	bool tls_verify;
	enum fwd_mech mechs[2];
	size_t n_mechs;
	char *helo_name;
	unsigned connect_timeout, timeout, max_sessions, queue_size, failure_memory, preconnect;
	unsigned request_timeout; /* [auth] request_timeout: the worker's patience */
};

/* Parse and check [smtp-forward] of cfg into *set (every name resolved
 * here). 0, or -1 with *error_r: a line saying how many problems, then one
 * "file:line: [smtp-forward] message" per problem, newline-separated (a
 * static buffer, valid until the next call); *set is then empty. */
int forward_config_parse(const struct config *cfg, struct fwd_settings *set, const char **error_r);
/* Free what forward_config_parse() filled in; *set is zeroed. */
void forward_config_free(struct fwd_settings *set);

/* "file:line: [smtp-forward] msg" for a problem found after parsing, on the
 * line of key (the section's line if key is not set). Same static buffer as
 * forward_config_parse()'s errors. */
const char *forward_config_error(const struct config *cfg, const char *key, const char *msg);

/* The words of the config and of the logs: "starttls", "PLAIN". */
const char *forward_config_tls_name(enum fwd_tls);
const char *forward_config_mech_name(enum fwd_mech);

#endif
