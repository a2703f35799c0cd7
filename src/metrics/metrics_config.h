/* SPDX-License-Identifier: ISC */
/*
 * metrics_config.h - the [metrics] section: where the metrics endpoint
 * listens (address; none: no endpoint, no counting), who may ask it (allow),
 * and how long a connection to it may take (timeout).
 *
 * Like the other modules' records it is public and read-only after load.
 * config_load() runs the check through metrics_config_module, so the master
 * and check-config refuse an address that is also a mail listener's.
 * Every key is documented in README.md under "Metrics".
 */
#ifndef AUTHRELAY_METRICS_CONFIG_H
#define AUTHRELAY_METRICS_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>
#include "../lib/common.h"
#include "../lib/config.h"
#include "../lib/net.h"

struct settings_ctx;

struct metrics_config {
	char *address; /* "127.0.0.1:9587" as written; NULL: metrics off */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct cidr *allow; /* clients that may ask; default loopback */
	size_t n_allow;
	unsigned timeout; /* s a connection may be idle or take for its request */
};

/* [metrics] with its check, for config_set_modules(). */
extern const struct config_module metrics_config_module;

/* Parse [metrics] of cfg into mc into ctx's messages (mc is always filled,
 * valid when ctx counted no error). */
void metrics_config_parse(const struct config *cfg, struct metrics_config *mc,
                          struct settings_ctx *ctx);
/* The same with its own messages: 0, or -1 with *errors_r (malloc'd
 * "file:line: message\n" lines, the caller frees) and mc cleared. */
int metrics_config_load(const struct config *cfg, struct metrics_config *mc, char **errors_r);
/* Free what parsing allocated; mc is zeroed. */
void metrics_config_clear(struct metrics_config *mc);

/* Would a socket bound to a take connections meant for b (same port, and
 * the same address or either one a wildcard)? */
bool metrics_config_same_socket(const struct sockaddr *a, const struct sockaddr *b);

#endif
