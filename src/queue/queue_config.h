/* SPDX-License-Identifier: ISC */
/*
 * queue_config.h - the settings of the queue process: the [queue] section and
 * every [route NAME] section, parsed with their tables (settings.h) from
 * the sections config_load() read.
 *
 * Like config.h the structs are public: they are plain records, read by the
 * queue process, the master (which hands group_commit to the SMTP workers)
 * and check-config after load, and changed by nobody. Each key is
 * documented in README.md under the same name.
 */
#ifndef AUTHRELAY_QUEUE_CONFIG_H
#define AUTHRELAY_QUEUE_CONFIG_H

#include <stddef.h>
#include "../lib/common.h"
#include "../lib/config.h"

struct settings_ctx;

enum route_type { ROUTE_SMTP, ROUTE_MAILDIR };
enum route_tls { ROUTE_TLS_NONE, ROUTE_TLS_OPPORTUNISTIC, ROUTE_TLS_REQUIRED };

/* Where SMTP delivery goes. "[host]:port" (or a bare IP literal) means
 * exactly that host (A/AAAA only); "host:port" means the MX hosts of host,
 * like Postfix's relayhost. */
struct nexthop {
	char *host;    /* NULL: the recipient domain's MX hosts */
	unsigned port; /* 25 unless written */
	bool no_mx;
};

struct route_cfg {
	char *name;
	char **domains; /* lower case; ".example.com" matches every subdomain */
	size_t n_domains;
	enum route_type type;
	struct nexthop nexthop; /* smtp: host NULL = MX of the recipient domain */
	enum route_tls tls;
	char *tls_ca_file; /* NULL: the system's trust store */
	char *maildir;     /* maildir: path, %u local part, %d domain */
	bool internal;     /* counts against the internal_* limits */
	int line;
};

struct queue_config {
	char *resolver;           /* "127.0.0.1:5353,..." or NULL: /etc/resolv.conf */
	struct nexthop smarthost; /* host NULL: no smarthost */
	enum route_tls tls;       /* smarthost and MX delivery: opportunistic */
	char *tls_ca_file;
	unsigned smtp_port;                                /* MX and A deliveries: 25 */
	unsigned max_connections;                          /* 100 */
	unsigned max_connections_per_destination;          /* 50, per address */
	unsigned internal_max_connections;                 /* 100 */
	unsigned internal_max_connections_per_destination; /* 50, per address */
	unsigned max_recipients_per_transaction;           /* 100 */
	unsigned max_queue_size;                           /* 150000; 0 = no limit */
	unsigned retry_min;                                /* s, 300 */
	unsigned retry_max;                                /* s, 4000 */
	unsigned max_lifetime;                             /* s, 5 days */
	unsigned delay_warning;                            /* s, 0 = off */
	unsigned connect_timeout;                          /* s, 30 */
	unsigned command_timeout;                          /* s, 300 (RFC 5321 4.5.3.2) */
	unsigned data_timeout;                             /* s, 600 (RFC 5321 4.5.3.2.6) */
	unsigned connection_reuse_time;                    /* s an idle connection is kept, 5 */
	char *helo_name;                                   /* NULL: [server] hostname */
	bool group_commit;                                 /* SMTP workers: share fsyncs; yes */
	struct route_cfg *routes;
	size_t n_routes;
};

/* [queue] and [route NAME] with their check, for config_set_modules(). */
extern const struct config_module queue_config_module;

/* Parse [queue] and [route NAME] of cfg (both optional). On success returns
 * a queue_config; on failure NULL and *errors_r gets one "file:line: message\n"
 * per problem (malloc'd, the caller frees). */
struct queue_config *queue_config_load(const struct config *cfg, char **errors_r);
/* The same into ctx (config_load()'s messages): always returns a record,
 * valid only when ctx counted no error; the caller frees it. */
struct queue_config *queue_config_parse(const struct config *cfg, struct settings_ctx *ctx);
void queue_config_free(struct queue_config *);

/* The route for domain (lower case): an exact domain first, then the longest
 * ".suffix" entry. NULL when no route names it. */
const struct route_cfg *queue_config_route(const struct queue_config *, const char *domain);

/* "host:port", "[host]:port", "host" or "[host]"; port defaults to
 * default_port. Returns 0 or -1 with *error_r. */
int queue_config_parse_nexthop(const char *text, unsigned default_port, struct nexthop *r,
                               const char **error_r);

const char *queue_config_tls_name(enum route_tls);

#endif
