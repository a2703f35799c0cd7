/* SPDX-License-Identifier: ISC */
/*
 * forward_config.h - the [smtp-forward] section: the upstreams and how to
 * talk to them, parsed with its table (settings.h), and the upstreams'
 * addresses, resolved once when the source starts.
 *
 * Two steps, because every process and command loads the file but only the
 * auth process (and check-config) talks to the upstreams:
 *   - forward_config_parse() / _load(): every key with its default and the
 *     rules between keys, no DNS (config_load() runs it through
 *     forward_config_module, so a bad key stops the daemon at start);
 *   - forward_config_resolve(): each upstream's addresses, and the refusal
 *     of an upstream that is one of our own listeners (a login would loop).
 *
 * Like struct ldap_dir_cfg, the record is public and read by every part of
 * the forwarding source. Each resolved upstream also carries its health
 * (down_until, down_why), which only forward_upstream.c changes. Every key
 * is documented in README.md under "[smtp-forward]".
 */
#ifndef AUTHRELAY_FORWARD_CONFIG_H
#define AUTHRELAY_FORWARD_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "../lib/common.h"
#include "../lib/config.h"

struct settings_ctx;

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
	/* the table's keys */
	char **upstreams; /* as written: "host:port", "[v6]:port", "host" */
	size_t n_upstreams;
	enum fwd_tls tls;
	char *ca_file; /* NULL: the system's CAs */
	bool tls_verify;
	char *tls_name; /* NULL: each upstream's host as written */
	enum fwd_mech mechs[2];
	size_t n_mechs;
	char *helo_name; /* default: [server] hostname */
	unsigned connect_timeout, timeout, max_sessions, queue_size, failure_memory, preconnect;
	/* worked out */
	unsigned request_timeout; /* [auth] request_timeout: the worker's patience */
	/* forward_config_resolve(): every address of every upstream, in order */
	struct fwd_upstream *up;
	size_t n_up;
};

/* [smtp-forward] with its check (no DNS), for config_set_modules(). */
extern const struct config_module forward_config_module;

/* True if cfg has an [smtp-forward] section. */
bool forward_config_present(const struct config *cfg);

/* Parse [smtp-forward] of cfg (which must have one) into set: defaults,
 * every key, the rules between keys; no name is resolved. Problems go to
 * ctx; set is filled even then, and the caller frees it. */
void forward_config_parse(const struct config *cfg, struct fwd_settings *set,
                          struct settings_ctx *ctx);
/* The same on its own: 0, or -1 with every problem as "file:line: message\n"
 * in *errors_r (malloc'd, the caller frees); set is then empty. */
int forward_config_load(const struct config *cfg, struct fwd_settings *set, char **errors_r);
/* Resolve each upstream of set (DNS here, once, never on the loop) into
 * set->up, and refuse one that is a listener of cfg. 0, or -1 with every
 * problem as "file:line: [smtp-forward] message\n" in *errors_r (malloc'd);
 * set->up is then empty. */
int forward_config_resolve(const struct config *cfg, struct fwd_settings *set, char **errors_r);
/* Free what the functions above filled in; *set is zeroed. */
void forward_config_free(struct fwd_settings *set);

/* "file:line: key = value: msg\n" for a problem with key's value found
 * after parsing (ca_file: the CAs do not load), on the key's line (the
 * section's when the key is not written). malloc'd, the caller frees. */
char *forward_config_key_error(const struct config *cfg, const char *key, const char *value,
                               const char *msg);

/* The words of the config and of the logs: "starttls", "PLAIN". */
const char *forward_config_tls_name(enum fwd_tls);
const char *forward_config_mech_name(enum fwd_mech);

#endif
