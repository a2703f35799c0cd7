/* SPDX-License-Identifier: ISC */
/*
 * config.h - the gateway's configuration: an INI file (config_reader.h)
 * whose core sections are parsed with their tables (settings.h), validated
 * as a whole, and handed read-only to every process.
 *
 * Unlike most modules the structs are public: they are plain records that
 * every process reads after load and nobody changes, and accessor functions
 * for sixty settings would hide nothing worth hiding.
 *
 * Core sections: [server] [tls] [limits] [relay] [auth] [users-file]
 * [listener NAME]. A listener inherits every limit from [limits] and may
 * override it. The other sections belong to modules, which register their
 * tables with config_set_modules() (src/master/settings_registry.c does it
 * for the daemon and every command) so that config_load() knows every
 * section kind and reports every problem of the file at once. Each key is
 * documented in README.md under the same name.
 */
#ifndef AUTHRELAY_CONFIG_H
#define AUTHRELAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "common.h"
#include "net.h"

enum listener_role { ROLE_INBOUND, ROLE_OUTBOUND, ROLE_SUBMISSION };
enum listener_tls { LTLS_NONE, LTLS_OPTIONAL, LTLS_REQUIRED, LTLS_IMPLICIT };

/* Limits and per-listener behaviour; [limits] gives the defaults. */
struct limits_cfg {
	unsigned max_connections;          /* 2000 */
	unsigned max_connections_per_ip;   /* 20 */
	unsigned ipv6_prefix;              /* 64, 0..128 */
	unsigned max_messages_per_session; /* 100, 0 = unlimited */
	unsigned max_recipients;           /* 1024 */
	uint64_t max_message_size;         /* 10485760 */
	unsigned max_line_length;          /* 512 (RFC 5321 4.5.3.1.4) */
	unsigned max_auth_line_length;     /* 12288 (RFC 4954 4) */
	unsigned max_auth_failures;        /* 3 (RFC 4954 9) */
	unsigned auth_failure_delay_ms;    /* 1000 */
	unsigned command_timeout;          /* s, 300 (RFC 5321 4.5.3.2.7) */
	unsigned data_timeout;             /* s, 180 per data block (4.5.3.2.6) */
	unsigned max_errors;               /* 20 bad commands, then 421 */
};

struct listener_cfg {
	char *name;
	char *address_text; /* as written: "127.0.0.1:2587" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum listener_role role;
	enum listener_tls tls;
	bool allow_plaintext_auth;  /* submission: offer AUTH before TLS */
	bool auth_legacy_advertise; /* also send "AUTH=LOGIN PLAIN" */
	bool cram_md5;              /* offer CRAM-MD5 when the source can */
	bool insert_received;       /* default yes */
	bool strip_received;        /* authenticated mail only; default no */
	bool add_missing_headers;   /* Message-ID/Date (RFC 6409 8); default yes on submission */
	char *default_domain;       /* for bare sender addresses; NULL = none */
	char *banner;               /* text after "220 hostname ESMTP" */
	bool sender_login_match;    /* submission: MAIL FROM must be the user's own */
	/* A load balancer in front: each connection starts with a PROXY
	 * protocol header (v1 or v2) naming the real client. */
	bool proxy_protocol;
	struct cidr *proxy_trusted_networks; /* who may send it; required with it */
	size_t n_proxy_trusted_networks;
	unsigned proxy_timeout_ms; /* wait for the whole header, default 5000 */
	struct limits_cfg limits;
	int line; /* where the section starts, for messages */
};

/* A section as written in the file. config_load() keeps every one, in
 * file order; a module parses its own with settings_parse(), reporting
 * errors as "file:line: message" with the lines kept here. */
struct config_line {
	char *text;
	int line;
};

struct config_kv {
	char *key;   /* lower-cased */
	char *value; /* indented continuation lines are appended after a space */
	int line;
	/* Each line of the value apart, the key's own first, so that a list
	 * item is reported on its line; none: the value is one line. */
	struct config_line *parts;
	size_t n_parts;
};

struct config_section {
	char *kind; /* lower-cased section kind, "ldap" */
	char *name; /* "corp", or NULL for an unnamed section */
	int line;
	struct config_kv *kv;
	size_t n_kv;
};

struct config {
	char *path;
	/* [server] */
	char *hostname;
	char *user;       /* workers run as this user when started as root */
	char *auth_user;  /* the auth process */
	char *queue_user; /* the queue process */
	unsigned workers; /* 0 = one per core */
	char *spool_dir;
	bool chroot; /* workers chroot into spool_dir when root */
	bool use_syslog;
	int log_level; /* enum log_level */
	char *pid_file;
	bool sandbox;              /* seccomp allow-lists for the children (sandbox.h) */
	bool core_dumps;           /* false: RLIMIT_CORE 0 */
	unsigned shutdown_timeout; /* s: sessions in DATA and deliveries finish within */
	/* [tls] */
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_ca_file;      /* for client certificates; NULL = none requested */
	char *tls_ciphers;      /* TLS <= 1.2 cipher list; NULL = OpenSSL default */
	char *tls_min_protocol; /* "TLSv1.2" */
	/* [limits] defaults for all listeners */
	struct limits_cfg limits;
	/* [relay] */
	char **local_domains; /* NULL-terminated, lower case */
	struct cidr *client_networks;
	size_t n_client_networks;
	/* [auth] */
	unsigned auth_threads;         /* hash-check thread pool, default 2 */
	unsigned auth_request_timeout; /* s, worker gives up with 454; default 30 */
	/* [users-file] */
	char *users_file;
	/* [listener NAME] */
	struct listener_cfg *listeners;
	size_t n_listeners;
	/* Every section as written, in file order (see struct config_section). */
	struct config_section *sections;
	size_t n_sections;
	/* What loaded with a warning: "file:line: warning: message\n" lines,
	 * or NULL. The daemon logs them, check-config prints them. */
	char *warnings;
};

struct settings_ctx;
struct settings_section;

/* A module's part of the file: its section kinds and a check that parses
 * them from cfg and reports every problem into ctx. config_load() runs the
 * checks once the core sections are read, so that one load reports every
 * problem of the file, sorted by line. The checks touch no file and ask
 * no DNS: every process and command loads the file (check-config looks at
 * the files and names the file gives, as the processes that use them). */
struct config_module {
	const struct settings_section *const *sections;
	size_t n_sections;
	void (*check)(const struct config *cfg, struct settings_ctx *ctx);
};

/* Make the modules' sections known to config_load() (process-wide; the
 * array must outlive every load). Without it only the core sections
 * exist. */
void config_set_modules(const struct config_module *const *modules, size_t n);

/* The core sections' tables (records: struct config, and struct
 * limits_cfg for [limits], struct listener_cfg for [listener NAME]). */
extern const struct settings_section config_server_section;
extern const struct settings_section config_tls_section;
extern const struct settings_section config_limits_section;
extern const struct settings_section config_listener_section;
extern const struct settings_section config_relay_section;
extern const struct settings_section config_auth_section;
extern const struct settings_section config_users_file_section;

/* The largest config file read whole (config_read_text()). */
#define CONFIG_TEXT_MAX (4 * 1024 * 1024)

/* Read and validate path, with every registered module's sections. On
 * success returns a config (warnings in cfg->warnings); on failure returns
 * NULL and writes each problem, warnings included, as "file:line: message\n"
 * to errors_r (a malloc'd string the caller frees). */
struct config *config_load(const char *path, char **errors_r);
void config_free(struct config *);
/* Read the whole file at path (at most CONFIG_TEXT_MAX bytes) into *text_r
 * (malloc'd, NUL-terminated; *len_r bytes before the NUL). 0, or -1 with
 * "path:0: message\n" in *errors_r (malloc'd). */
int config_read_text(const char *path, char **text_r, size_t *len_r, char **errors_r);
/* config_load() on text as read from path: the master validates a file
 * once and hands the very same bytes to the processes that reload in place,
 * which may not be able to open the file (or would see a later version of
 * it). path names the file in messages and is the base of relative paths;
 * an absolute path is never looked up. */
struct config *config_load_text(const char *path, const char *text, size_t len, char **errors_r);

/* The listener named name, or NULL. */
const struct listener_cfg *config_listener(const struct config *, const char *name);
/* True if domain (any case) is one of [relay] local_domains. */
bool config_is_local_domain(const struct config *, const char *domain);
/* True if the address is inside [relay] client_networks. */
bool config_is_client_network(const struct config *, const struct sockaddr *sa);

/* Sections as written: the next section of kind after prev (NULL: the
 * first), or NULL when there is none. */
const struct config_section *config_section_next(const struct config *, const char *kind,
                                                 const struct config_section *prev);
/* The value of key in sec (the last one if written twice), or NULL; *line_r
 * (if not NULL) gets its line. */
const char *config_section_get(const struct config_section *sec, const char *key, int *line_r);
/* The line of key in the sections of kind (named name, any when NULL): the
 * last one that sets it; else the first such section's line; 0 when there
 * is no such section. For "file:line:" in messages about a value that is
 * checked after the load (a certificate, a path). */
int config_key_line(const struct config *, const char *kind, const char *name, const char *key);

const char *config_role_name(enum listener_role);
const char *config_tls_name(enum listener_tls);

#endif
