/* SPDX-License-Identifier: ISC */
/*
 * config.c - load authrelay.conf: config_reader.c splits the file into
 * sections of keys, the tables below (and the registered modules' tables)
 * say what each key means, and a second pass checks the file as a whole
 * once everything is read.
 *
 * Why two passes: a listener's limits inherit from [limits] wherever that
 * section sits in the file, and rules such as "a submission listener needs
 * its own address:port" or "tls = required needs a certificate" involve
 * several sections. So every key first remembers the line where it was set
 * (settings_parse()), then config_validate() fills in the defaults that
 * depend on other sections and reports every remaining problem. Last, each
 * registered module checks its own sections. Every message is collected,
 * sorted by line and returned together, so one run of check-config shows
 * them all.
 */
#include "config.h"
#include "config_reader.h"
#include "log.h"
#include "settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the core sections ---- */

static const struct settings_name log_names[] = {
        {"stderr", false, false},
        {"syslog", true, false},
        {0},
};

static const struct settings_name log_level_names[] = {
        {"error", LOG_LEVEL_ERR, false},
        {"warning", LOG_LEVEL_WARN, false},
        {"info", LOG_LEVEL_INFO, false},
        {"debug", LOG_LEVEL_DEBUG, false},
        {0},
};

/* RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 asks for 1.2 or later. */
static const struct settings_name min_protocol_names[] = {
        {"TLSv1.2", 0, false},
        {"TLSv1.3", 1, false},
        {0},
};

static const struct settings_name role_names[] = {
        {"inbound", ROLE_INBOUND, false},
        {"outbound", ROLE_OUTBOUND, false},
        {"submission", ROLE_SUBMISSION, false},
        {0},
};

static const struct settings_name tls_names[] = {
        {"none", LTLS_NONE, false},
        {"optional", LTLS_OPTIONAL, false},
        {"required", LTLS_REQUIRED, false},
        {"implicit", LTLS_IMPLICIT, false},
        {0},
};

#define CFG(f) SETTINGS_FIELD(struct config, f)
#define LIM(f) SETTINGS_FIELD(struct limits_cfg, f), .flags = SETTINGS_PER_LISTENER
#define LST(f) SETTINGS_FIELD(struct listener_cfg, f)

static const struct settings_key server_keys[] = {
        {"hostname", SETTINGS_STRING, CFG(hostname), .check = settings_check_host_name,
         .def_doc = "the system's host name, else localhost", .type_doc = "host name",
         .meaning = "Name in the 220 greeting, the EHLO reply and our Received headers."},
        {"user", SETTINGS_STRING, CFG(user), .def = "authrelay", .flags = SETTINGS_RESTART,
         .meaning = "The SMTP workers run as this user when started as root."},
        {"auth_user", SETTINGS_STRING, CFG(auth_user), .def = "authrelay-auth",
         .flags = SETTINGS_RESTART,
         .meaning = "User of the auth process, the only one that reads the credential "
                    "stores; not the same as user."},
        {"queue_user", SETTINGS_STRING, CFG(queue_user), .def = "authrelay-queue",
         .flags = SETTINGS_RESTART,
         .meaning = "User of the queue process, which owns the spool after the 250 and "
                    "writes Maildirs; not the same as user."},
        {"workers", SETTINGS_UINT, CFG(workers), .def = "0", .max = 1024,
         .meaning = "SMTP worker processes; 0 means one per CPU core."},
        {"spool_dir", SETTINGS_PATH, CFG(spool_dir), .def = "/var/spool/authrelay",
         .flags = SETTINGS_RESTART, .meaning = "Queue and spool files."},
        {"chroot", SETTINGS_BOOL, CFG(chroot), .def = "yes", .flags = SETTINGS_RESTART,
         .meaning = "When started as root, the SMTP workers chroot into spool_dir."},
        {"log", SETTINGS_ENUM, CFG(use_syslog), .def = "stderr", .names = log_names,
         .meaning = "Where log lines go; syslog uses the LOG_MAIL facility."},
        {"log_level", SETTINGS_ENUM, CFG(log_level), .def = "info", .names = log_level_names,
         .meaning = "The least severe level that is logged."},
        {"pid_file", SETTINGS_PATH, CFG(pid_file), .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "If set, the master writes its pid here."},
        {"sandbox", SETTINGS_BOOL, CFG(sandbox), .def = "yes", .flags = SETTINGS_RESTART,
         .meaning = "The workers, the auth process and the queue run under a seccomp "
                    "allow-list of system calls; a call outside it kills the process."},
        {"core_dumps", SETTINGS_BOOL, CFG(core_dumps), .def = "no", .flags = SETTINGS_RESTART,
         .meaning = "Allow core dumps (the master keeps RLIMIT_CORE); no sets it to 0 for "
                    "every process."},
        {"shutdown_timeout", SETTINGS_DURATION, CFG(shutdown_timeout), .def = "30", .min = 1,
         .max = 3600,
         .meaning = "How long sessions in DATA and deliveries in flight may take to finish "
                    "after SIGTERM, and old workers' sessions after a reload."},
};

static const struct settings_key tls_keys[] = {
        {"cert_file", SETTINGS_PATH, CFG(tls_cert_file),
         .meaning = "PEM certificate chain, leaf first, for every listener that uses TLS."},
        {"key_file", SETTINGS_PATH, CFG(tls_key_file),
         .meaning = "PEM private key (RSA or ECDSA), read as root by the key process only."},
        {"ca_file", SETTINGS_PATH, CFG(tls_ca_file), .flags = SETTINGS_OPTIONAL,
         .meaning = "CAs for client certificates; if set, clients are asked for one."},
        {"ciphers", SETTINGS_STRING, CFG(tls_ciphers), .flags = SETTINGS_OPTIONAL,
         .def_doc = "OpenSSL's default", .type_doc = "OpenSSL cipher list",
         .meaning = "Ciphers for TLS 1.2 handshakes; never the RSA key exchange."},
        {"min_protocol", SETTINGS_KEYWORD, CFG(tls_min_protocol), .def = "TLSv1.2",
         .names = min_protocol_names, .why = "RFC 8996: nothing older",
         .meaning = "The oldest TLS version accepted."},
};

static const struct settings_key limits_keys[] = {
        {"max_connections", SETTINGS_UINT, LIM(max_connections), .def = "2000", .min = 1,
         .meaning = "Simultaneous connections to a listener, across all workers."},
        {"max_connections_per_ip", SETTINGS_UINT, LIM(max_connections_per_ip), .def = "20",
         .min = 1,
         .meaning = "Simultaneous connections from one client (IPv6: per ipv6_prefix "
                    "network)."},
        {"ipv6_prefix", SETTINGS_UINT, LIM(ipv6_prefix), .def = "64", .max = 128,
         .meaning = "Prefix length that groups IPv6 clients for max_connections_per_ip."},
        {"max_messages_per_session", SETTINGS_UINT, LIM(max_messages_per_session), .def = "100",
         .meaning = "Messages in one connection; 0 means no limit."},
        {"max_recipients", SETTINGS_UINT, LIM(max_recipients), .def = "1024", .min = 100,
         .why = "RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients",
         .meaning = "RCPTs per message; further ones get 452 4.5.3."},
        {"max_message_size", SETTINGS_SIZE, LIM(max_message_size), .def = "10M", .min = 1,
         .meaning = "Largest message, advertised as SIZE (RFC 1870)."},
        {"max_line_length", SETTINGS_UINT, LIM(max_line_length), .def = "512", .min = 512,
         .max = 1048576, .why = "RFC 5321 4.5.3.1.4: command lines of 512 octets must be accepted",
         .meaning = "Longest SMTP command line, CRLF included."},
        {"max_auth_line_length", SETTINGS_UINT, LIM(max_auth_line_length), .def = "12288",
         .min = 512, .max = 1048576,
         .why = "an AUTH line must hold at least a command line; RFC 4954 4 advises 12288",
         .meaning = "Longest line in an AUTH exchange."},
        {"max_auth_failures", SETTINGS_UINT, LIM(max_auth_failures), .def = "3", .min = 1,
         .why = "0 would drop a client before its first attempt", .warn_below = 3,
         .warn_why = "RFC 4954 9 and the product spec expect at least 3 attempts before a "
                     "client is dropped",
         .meaning = "Failed AUTH attempts in one connection before 421 and closing."},
        {"auth_failure_delay_ms", SETTINGS_DURATION_MS, LIM(auth_failure_delay_ms), .def = "1000",
         .max = 600000, .meaning = "Pause before answering a failed AUTH (535)."},
        {"command_timeout", SETTINGS_DURATION, LIM(command_timeout), .def = "300", .min = 1,
         .max = 86400,
         .meaning = "Time for the whole next command, each AUTH reply and the TLS handshake, "
                    "from when the session is ready for it (RFC 5321 4.5.3.2.7: at least "
                    "5m)."},
        {"data_timeout", SETTINGS_DURATION, LIM(data_timeout), .def = "180", .min = 1, .max = 86400,
         .meaning = "Time for each 64 KiB block of message text (RFC 5321 4.5.3.2.6)."},
        {"max_errors", SETTINGS_UINT, LIM(max_errors), .def = "20", .min = 1,
         .meaning = "Bad or out-of-sequence commands in one connection before 421."},
};

static const struct settings_key listener_keys[] = {
        {"address", SETTINGS_HOSTPORT, LST(address_text), .def_doc = "required",
         .meaning = "Numeric address and port: 127.0.0.1:2587, [::1]:587, 0.0.0.0:25, *:25."},
        {"role", SETTINGS_ENUM, LST(role), .names = role_names, .def_doc = "required",
         .meaning = "inbound: local domains only; outbound: relay for client_networks; "
                    "submission: AUTH."},
        {"tls", SETTINGS_ENUM, LST(tls), .names = tls_names,
         .def_doc = "required on submission; else optional with a [tls] certificate, none "
                    "without",
         .meaning = "STARTTLS offered (optional), required before AUTH and MAIL (required), "
                    "or TLS at connect (implicit)."},
        {"allow_plaintext_auth", SETTINGS_BOOL, LST(allow_plaintext_auth), .def = "no",
         .meaning = "Submission only: offer PLAIN and LOGIN before TLS (tests only)."},
        {"auth_legacy_advertise", SETTINGS_BOOL, LST(auth_legacy_advertise), .def = "no",
         .meaning = "Submission only: also send the old \"AUTH=LOGIN PLAIN\" line."},
        {"cram_md5", SETTINGS_BOOL, LST(cram_md5), .def = "no",
         .meaning = "Submission only: offer CRAM-MD5 when the auth source can check it."},
        {"insert_received", SETTINGS_BOOL, LST(insert_received), .def = "yes",
         .meaning = "Add our Received header (RFC 5321 4.4)."},
        {"strip_received", SETTINGS_BOOL, LST(strip_received), .def = "no",
         .meaning = "Remove the client's Received headers from authenticated mail."},
        {"add_missing_headers", SETTINGS_BOOL, LST(add_missing_headers),
         .def_doc = "yes on submission, no otherwise",
         .meaning = "Add Message-ID and Date when missing (RFC 6409 8)."},
        {"default_domain", SETTINGS_STRING, LST(default_domain), .flags = SETTINGS_OPTIONAL,
         .check = settings_check_domain_name, .type_doc = "domain",
         .meaning = "Domain appended to a sender address that has none (RFC 6409 4.2)."},
        {"banner", SETTINGS_STRING, LST(banner), .flags = SETTINGS_OPTIONAL,
         .check = settings_check_printable,
         .meaning = "Printable ASCII shown after \"220 hostname ESMTP\"."},
        {"sender_login_match", SETTINGS_BOOL, LST(sender_login_match), .def = "no",
         .meaning = "Submission only: MAIL FROM must be one of the user's own addresses."},
        {"proxy_protocol", SETTINGS_BOOL, LST(proxy_protocol), .def = "no",
         .meaning = "Every connection starts with a PROXY protocol header (v1 or v2, as "
                    "HAProxy's send-proxy or send-proxy-v2 sends it) whose client address "
                    "is used for everything; connections without one are closed."},
        {"proxy_trusted_networks", SETTINGS_CIDRS, LST(proxy_trusted_networks),
         .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct listener_cfg, n_proxy_trusted_networks),
         .meaning = "With proxy_protocol: the load balancers allowed to send the header; "
                    "other peers are closed without a greeting."},
        {"proxy_timeout", SETTINGS_DURATION_MS, LST(proxy_timeout_ms), .def = "5000", .min = 1,
         .max = 600000,
         .meaning = "With proxy_protocol: the wait for the whole header before closing."},
};

static const struct settings_key relay_keys[] = {
        {"local_domains", SETTINGS_LIST, CFG(local_domains), .check = settings_check_domain_pattern,
         .type_doc = "list of domains",
         .meaning = "Domains whose mail inbound listeners accept; .example.test: every "
                    "subdomain."},
        {"client_networks", SETTINGS_CIDRS, CFG(client_networks), .flags = SETTINGS_COUNTED,
         .count_offset = offsetof(struct config, n_client_networks),
         .meaning = "Networks allowed to relay through outbound listeners."},
};

static const struct settings_key auth_keys[] = {
        {"threads", SETTINGS_UINT, CFG(auth_threads), .def = "2", .min = 1, .max = 256,
         .meaning = "Threads of the auth process that check password hashes."},
        {"request_timeout", SETTINGS_DURATION, CFG(auth_request_timeout), .def = "30", .min = 1,
         .max = 3600,
         .meaning = "A worker that waits longer for the auth process answers 454 4.7.0."},
};

static const struct settings_key users_file_keys[] = {
        {"path", SETTINGS_PATH, CFG(users_file),
         .meaning = "The users file: one login:hash line per user (authrelay passwd)."},
};

const struct settings_section config_server_section = {
        .kind = "server",
        .meaning = "The processes, their users, the spool and the log.",
        .keys = server_keys,
        .n_keys = AR_NELEM(server_keys),
};
const struct settings_section config_tls_section = {
        .kind = "tls",
        .meaning = "The one certificate every listener that uses TLS serves.",
        .keys = tls_keys,
        .n_keys = AR_NELEM(tls_keys),
};
const struct settings_section config_limits_section = {
        .kind = "limits",
        .meaning = "Limits of every listener; a listener may set its own.",
        .keys = limits_keys,
        .n_keys = AR_NELEM(limits_keys),
};
const struct settings_section config_listener_section = {
        .kind = "listener",
        .named = true,
        .meaning = "One listening socket with its role.",
        .keys = listener_keys,
        .n_keys = AR_NELEM(listener_keys),
        .inherits = &config_limits_section,
        .inherit_offset = offsetof(struct listener_cfg, limits),
};
const struct settings_section config_relay_section = {
        .kind = "relay",
        .meaning = "What inbound listeners accept and who may relay through outbound ones.",
        .keys = relay_keys,
        .n_keys = AR_NELEM(relay_keys),
};
const struct settings_section config_auth_section = {
        .kind = "auth",
        .meaning = "The auth process.",
        .keys = auth_keys,
        .n_keys = AR_NELEM(auth_keys),
};
const struct settings_section config_users_file_section = {
        .kind = "users-file",
        .meaning = "The users file, the first auth source.",
        .keys = users_file_keys,
        .n_keys = AR_NELEM(users_file_keys),
};

/* In file-reference order; listener is the only named one. */
static const struct settings_section *const core_sections[] = {
        &config_server_section,     &config_tls_section,   &config_limits_section,
        &config_listener_section,   &config_relay_section, &config_auth_section,
        &config_users_file_section,
};
#define N_CORE AR_NELEM(core_sections)

static const struct config_module *const *modules;
static size_t n_modules;

void
config_set_modules(const struct config_module *const *m, size_t n)
{
	modules = m;
	n_modules = n;
}

/* ---- loading ---- */

struct load_state {
	struct config *cfg;
	struct settings_ctx *ctx;
	/* Line of each key of the unnamed core sections and of each listener
	 * (settings_parse()): 0 = not written, negative = refused. */
	int *lines[N_CORE];
	int **listener_lines;
};

/* The record of an unnamed core section in cfg. */
static void *
core_record(struct config *cfg, const struct settings_section *def)
{
	return def == &config_limits_section ? (void *)&cfg->limits : (void *)cfg;
}

static size_t
core_index(const struct settings_section *def)
{
	for (size_t i = 0; i < N_CORE; i++)
		if (core_sections[i] == def)
			return i;
	fatal("config: [%s] is not a core section", def->kind);
}

static const struct settings_section *
core_section(const char *kind)
{
	for (size_t i = 0; i < N_CORE; i++)
		if (strcmp(core_sections[i]->kind, kind) == 0)
			return core_sections[i];
	return NULL;
}

static void
parse_listener(struct load_state *st, const struct config_section *sec)
{
	struct config *cfg = st->cfg;
	size_t i = cfg->n_listeners++;

	cfg->listeners = xrealloc(cfg->listeners, cfg->n_listeners * sizeof(*cfg->listeners));
	st->listener_lines =
	        xrealloc(st->listener_lines, cfg->n_listeners * sizeof(*st->listener_lines));
	struct listener_cfg *l = &cfg->listeners[i];
	memset(l, 0, sizeof(*l));
	l->name = xstrdup(sec->name);
	l->line = sec->line;
	settings_defaults(&config_listener_section, l);
	st->listener_lines[i] = xcalloc(settings_n_keys(&config_listener_section), sizeof(int));
	settings_parse(st->ctx, &config_listener_section, sec, l, st->listener_lines[i]);
}

/* Defaults, then every core section in file order. */
static void
parse_core(struct load_state *st)
{
	struct config *cfg = st->cfg;

	for (size_t i = 0; i < N_CORE; i++) {
		if (core_sections[i]->named)
			continue;
		settings_defaults(core_sections[i], core_record(cfg, core_sections[i]));
		st->lines[i] = xcalloc(core_sections[i]->n_keys, sizeof(int));
	}
	for (size_t s = 0; s < cfg->n_sections; s++) {
		const struct config_section *sec = &cfg->sections[s];
		const struct settings_section *def = core_section(sec->kind);
		if (def == NULL)
			continue; /* a module's */
		if (def == &config_listener_section)
			parse_listener(st, sec);
		else
			settings_parse(st->ctx, def, sec, core_record(cfg, def),
			               st->lines[core_index(def)]);
	}
}

/* ---- after reading: defaults and whole-file checks ---- */

static int
key_index(const struct settings_section *def, const char *name)
{
	int i = settings_key_index(def, name);

	if (i < 0)
		fatal("config: [%s] has no key %s", def->kind, name);
	return i;
}

/* Line where a listener key was set (see struct load_state). */
static int
listener_key_line(const struct load_state *st, size_t li, const char *name)
{
	return st->listener_lines[li][key_index(&config_listener_section, name)];
}

/* Line where a key of an unnamed core section was written, for messages. */
static int
global_key_line(const struct load_state *st, const struct settings_section *def, const char *name)
{
	return abs(st->lines[core_index(def)][key_index(def, name)]);
}

/* A listener's limits: [limits] (or its defaults) except for what the
 * listener section sets itself, whichever section comes first. */
static void
resolve_limits(struct load_state *st, size_t li)
{
	const struct settings_section *def = &config_listener_section;
	struct listener_cfg *l = &st->cfg->listeners[li];
	struct limits_cfg merged = st->cfg->limits;
	size_t off;

	for (size_t k = def->n_keys; k < settings_n_keys(def); k++) {
		const struct settings_key *key = settings_key_at(def, k, &off);
		if (st->listener_lines[li][k] <= 0)
			continue;
		memcpy((char *)&merged + key->offset, (char *)&l->limits + key->offset, key->size);
	}
	l->limits = merged;
}

static void
resolve_server(struct load_state *st)
{
	struct config *cfg = st->cfg;

	if (cfg->hostname == NULL) {
		char host[256] = "";
		if (gethostname(host, sizeof(host) - 1) < 0 ||
		    settings_check_host_name(host) != NULL)
			snprintf(host, sizeof(host), "localhost");
		cfg->hostname = xstrdup(host);
	}
	/* One uid for two processes gives each the other's rights: the
	 * workers could read the credential stores, or write what the queue
	 * later opens with its own. */
	if (strcmp(cfg->auth_user, cfg->user) == 0)
		settings_warning(st->ctx, global_key_line(st, &config_server_section, "auth_user"),
		                 "[server] auth_user is the same as user (%s): the SMTP workers "
		                 "could read the users file and the directory passwords",
		                 cfg->user);
	if (strcmp(cfg->queue_user, cfg->user) == 0)
		settings_warning(st->ctx, global_key_line(st, &config_server_section, "queue_user"),
		                 "[server] queue_user is the same as user (%s): the SMTP workers "
		                 "could write the queue's state files",
		                 cfg->user);
}

static void
check_tls_files(struct load_state *st)
{
	const struct config *cfg = st->cfg;
	const struct settings_section *tls = &config_tls_section;

	if (cfg->tls_cert_file != NULL && cfg->tls_key_file == NULL)
		settings_error(st->ctx, global_key_line(st, tls, "cert_file"),
		               "cert_file is set but key_file is not");
	if (cfg->tls_key_file != NULL && cfg->tls_cert_file == NULL)
		settings_error(st->ctx, global_key_line(st, tls, "key_file"),
		               "key_file is set but cert_file is not");
	if (cfg->tls_ca_file != NULL && cfg->tls_cert_file == NULL)
		settings_error(st->ctx, global_key_line(st, tls, "ca_file"),
		               "ca_file (client certificates) needs cert_file and key_file");
}

static void
check_listener(struct load_state *st, size_t li)
{
	const struct config *cfg = st->cfg;
	struct listener_cfg *l = &cfg->listeners[li];
	bool have_cert = cfg->tls_cert_file != NULL && cfg->tls_key_file != NULL;
	int role_line = listener_key_line(st, li, "role");
	int tls_line = listener_key_line(st, li, "tls");

	if (listener_key_line(st, li, "address") == 0)
		settings_error(st->ctx, l->line,
		               "listener '%s' has no address (for example address = 127.0.0.1:25)",
		               l->name);
	if (role_line == 0)
		settings_error(st->ctx, l->line,
		               "listener '%s' has no role (inbound, outbound or submission)",
		               l->name);
	/* Everything below depends on the role and the TLS mode; a refused
	 * value was reported already. */
	if (role_line <= 0 || tls_line < 0)
		return;

	if (tls_line == 0)
		l->tls = l->role == ROLE_SUBMISSION ? LTLS_REQUIRED
		         : have_cert                ? LTLS_OPTIONAL
		                                    : LTLS_NONE;
	if (listener_key_line(st, li, "add_missing_headers") == 0)
		l->add_missing_headers = l->role == ROLE_SUBMISSION; /* RFC 6409 8 */

	if (l->tls != LTLS_NONE && !have_cert) {
		if (tls_line != 0)
			settings_error(st->ctx, tls_line,
			               "listener '%s': tls = %s needs [tls] cert_file and key_file",
			               l->name, config_tls_name(l->tls));
		else
			settings_error(st->ctx, l->line,
			               "submission listener '%s' defaults to tls = required, which "
			               "needs [tls] cert_file and key_file (or set tls = none and "
			               "allow_plaintext_auth = yes, for tests only)",
			               l->name);
	}

	if (l->role != ROLE_SUBMISSION) {
		/* Spec 2: AUTH exists only on the dedicated submission socket. */
		static const char *const auth_only[] = {"allow_plaintext_auth",
		                                        "auth_legacy_advertise", "cram_md5",
		                                        "sender_login_match"};
		for (size_t i = 0; i < AR_NELEM(auth_only); i++) {
			int line = listener_key_line(st, li, auth_only[i]);
			size_t off;
			const struct settings_key *k = settings_key_at(
			        &config_listener_section,
			        (size_t)key_index(&config_listener_section, auth_only[i]), &off);
			if (line > 0 && *(bool *)((char *)l + k->offset))
				settings_error(st->ctx, line,
				               "listener '%s': %s applies to submission listeners "
				               "only; %s listeners never offer AUTH",
				               l->name, auth_only[i], config_role_name(l->role));
		}
	}

	int proxy_line = listener_key_line(st, li, "proxy_protocol");
	int trusted_line = listener_key_line(st, li, "proxy_trusted_networks");
	if (l->proxy_protocol && l->n_proxy_trusted_networks == 0)
		settings_error(st->ctx, proxy_line,
		               "listener '%s': proxy_protocol = yes needs proxy_trusted_networks "
		               "(the load balancers' addresses): anybody else could claim any "
		               "client address",
		               l->name);
	if (!l->proxy_protocol && trusted_line > 0)
		settings_warning(st->ctx, trusted_line,
		                 "listener '%s': proxy_trusted_networks has no effect without "
		                 "proxy_protocol = yes",
		                 l->name);

	switch (l->role) {
	case ROLE_INBOUND:
		if (cfg->local_domains[0] == NULL)
			settings_error(st->ctx, role_line,
			               "inbound listener '%s' needs [relay] local_domains: it "
			               "accepts mail only for local domains",
			               l->name);
		break;
	case ROLE_OUTBOUND:
		if (cfg->n_client_networks == 0)
			settings_error(st->ctx, role_line,
			               "outbound listener '%s' needs [relay] client_networks: it "
			               "relays only for clients in those networks",
			               l->name);
		break;
	case ROLE_SUBMISSION:
		if (l->tls == LTLS_NONE && !l->allow_plaintext_auth)
			settings_error(st->ctx, tls_line != 0 ? tls_line : role_line,
			               "submission listener '%s' has tls = none and "
			               "allow_plaintext_auth = no, so it could never offer AUTH "
			               "(RFC 4954 4: plaintext mechanisms only under TLS)",
			               l->name);
		if (cfg->users_file == NULL && config_section_next(cfg, "ldap", NULL) == NULL &&
		    config_section_next(cfg, "smtp-forward", NULL) == NULL)
			settings_error(st->ctx, role_line,
			               "submission listener '%s' needs an authentication source: "
			               "set [users-file] path, an [ldap NAME] or [smtp-forward]",
			               l->name);
		break;
	}
}

/* IPv4-mapped IPv6 is compared as the IPv4 address it carries. */
struct bind_addr {
	int family;
	uint8_t addr[16];
	uint16_t port;
	bool any;
};

static struct bind_addr
bind_addr_of(const struct listener_cfg *l)
{
	struct bind_addr b = {0};
	uint8_t zero[16] = {0};

	if (l->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addr;
		b.family = AF_INET;
		memcpy(b.addr, &sin->sin_addr, 4);
		b.port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;
		const uint8_t *a = sin6->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		b.port = ntohs(sin6->sin6_port);
		if (memcmp(a, mapped, 12) == 0) {
			b.family = AF_INET;
			memcpy(b.addr, a + 12, 4);
		} else {
			b.family = AF_INET6;
			memcpy(b.addr, a, 16);
		}
	}
	b.any = memcmp(b.addr, zero, b.family == AF_INET ? 4 : 16) == 0;
	return b;
}

/* Would the two sockets fight over connections? The same address and port,
 * or a wildcard and anything on the same port: 0.0.0.0 covers every IPv4
 * address, and :: (bound dual-stack) every address of both families. */
static bool
addresses_clash(const struct listener_cfg *a, const struct listener_cfg *b)
{
	struct bind_addr x = bind_addr_of(a), y = bind_addr_of(b);

	if (x.port != y.port)
		return false;
	if ((x.any && x.family == AF_INET6) || (y.any && y.family == AF_INET6))
		return true;
	if (x.family != y.family)
		return false;
	return x.any || y.any || memcmp(x.addr, y.addr, 16) == 0;
}

static void
check_clashes(struct load_state *st)
{
	const struct config *cfg = st->cfg;

	for (size_t j = 0; j < cfg->n_listeners; j++) {
		const struct listener_cfg *b = &cfg->listeners[j];
		int b_line = listener_key_line(st, j, "address");
		if (b_line <= 0)
			continue;
		for (size_t i = 0; i < j; i++) {
			const struct listener_cfg *a = &cfg->listeners[i];
			if (listener_key_line(st, i, "address") <= 0 || !addresses_clash(a, b))
				continue;
			bool roles = listener_key_line(st, i, "role") > 0 &&
			             listener_key_line(st, j, "role") > 0;
			if (roles && (a->role == ROLE_SUBMISSION) != (b->role == ROLE_SUBMISSION)) {
				const struct listener_cfg *sub = a->role == ROLE_SUBMISSION ? a : b;
				const struct listener_cfg *other = sub == a ? b : a;
				settings_error(
				        st->ctx, b_line,
				        "submission listener '%s' (%s) and %s listener '%s' "
				        "(%s) share an address:port; RFC 4954 / product rule: "
				        "the authentication listener needs its own address:port",
				        sub->name, sub->address_text, config_role_name(other->role),
				        other->name, other->address_text);
			} else {
				settings_error(st->ctx, b_line,
				               "listener '%s' (%s) and listener '%s' (%s, line %d) "
				               "would listen on the same address:port",
				               b->name, b->address_text, a->name, a->address_text,
				               a->line);
			}
		}
	}
}

static void
config_validate(struct load_state *st)
{
	struct config *cfg = st->cfg;

	resolve_server(st);
	check_tls_files(st);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct listener_cfg *l = &cfg->listeners[i];
		const char *err;
		/* The text was checked when read; the socket address is what
		 * the master binds. */
		if (l->address_text != NULL &&
		    net_parse_hostport(l->address_text, &l->addr, &l->addrlen, &err) < 0)
			fatal("config: listener %s: %s", l->name, err);
		resolve_limits(st, i);
		check_listener(st, i);
	}
	check_clashes(st);
	/* Line 0: about the whole file, as check-config reports such problems. */
	if (cfg->n_listeners == 0)
		settings_error(st->ctx, 0, "no [listener NAME] section: nothing to listen on");
}

/* ---- load and free ---- */

static char *
absolute_dir(const char *abs_path)
{
	const char *slash = strrchr(abs_path, '/');

	if (slash == abs_path)
		return xstrdup("/");
	return xstrndup(abs_path, (size_t)(slash - abs_path));
}

/* The core sections, then each module's: every kind the file may hold. */
static const struct settings_section **
all_sections(size_t *n_r)
{
	size_t n = N_CORE;
	const struct settings_section **all;

	for (size_t m = 0; m < n_modules; m++)
		n += modules[m]->n_sections;
	all = xmalloc(n * sizeof(*all));
	memcpy(all, core_sections, sizeof(core_sections));
	n = N_CORE;
	for (size_t m = 0; m < n_modules; m++)
		for (size_t s = 0; s < modules[m]->n_sections; s++)
			all[n++] = modules[m]->sections[s];
	*n_r = n;
	return all;
}

/* Read fp (the text of the file abs_path, shown as path in messages) into
 * a config; takes abs_path (malloc'd) and closes fp. */
static struct config *
config_load_fp(const char *path, char *abs, FILE *fp, char **errors_r)
{
	struct load_state st = {0};
	const struct settings_section **all = NULL;
	struct config *cfg = NULL;
	char *dir, *report;
	size_t n_all;

	dir = absolute_dir(abs);
	st.ctx = settings_ctx_new(path, dir);
	all = all_sections(&n_all);
	settings_ctx_set_sections(st.ctx, all, n_all);
	cfg = st.cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = abs;

	if (config_reader_read(fp, all, n_all, st.ctx, &cfg->sections, &cfg->n_sections) == 0) {
		parse_core(&st);
		config_validate(&st);
		for (size_t m = 0; m < n_modules; m++)
			if (modules[m]->check != NULL)
				modules[m]->check(cfg, st.ctx);
	}

	for (size_t i = 0; i < N_CORE; i++)
		free(st.lines[i]);
	for (size_t i = 0; st.listener_lines != NULL && i < cfg->n_listeners; i++)
		free(st.listener_lines[i]);
	free(st.listener_lines);
	report = settings_ctx_report(st.ctx);
	if (settings_ctx_errors(st.ctx) > 0) {
		if (errors_r != NULL)
			*errors_r = report;
		else
			free(report);
		config_free(cfg);
		cfg = NULL;
	} else {
		cfg->warnings = report;
	}
	fclose(fp);
	settings_ctx_free(st.ctx);
	free(all);
	free(dir);
	return cfg;
}

static void
config_open_error(const char *path, const char *what, char **errors_r)
{
	if (errors_r != NULL &&
	    asprintf(errors_r, "%s:0: %s: %s\n", path, what, strerror(errno)) < 0)
		*errors_r = NULL;
}

struct config *
config_load(const char *path, char **errors_r)
{
	FILE *fp;
	char *abs;

	if (errors_r != NULL)
		*errors_r = NULL;
	fp = fopen(path, "re");
	if (fp == NULL || (abs = realpath(path, NULL)) == NULL) {
		config_open_error(path, "cannot open", errors_r);
		if (fp != NULL)
			fclose(fp);
		return NULL;
	}
	return config_load_fp(path, abs, fp, errors_r);
}

int
config_read_text(const char *path, char **text_r, size_t *len_r, char **errors_r)
{
	FILE *fp;
	char *text = NULL;
	size_t len = 0, cap = 0, n;

	if (errors_r != NULL)
		*errors_r = NULL;
	fp = fopen(path, "re");
	if (fp == NULL) {
		config_open_error(path, "cannot open", errors_r);
		return -1;
	}
	do {
		if (cap - len < 8192) {
			cap = cap ? cap * 2 : 16384;
			text = xrealloc(text, cap + 1);
		}
		n = fread(text + len, 1, cap - len, fp);
		len += n;
	} while (n > 0 && len <= CONFIG_TEXT_MAX);
	if (ferror(fp) || len > CONFIG_TEXT_MAX) {
		if (len > CONFIG_TEXT_MAX)
			errno = EFBIG;
		config_open_error(path, "cannot read", errors_r);
		fclose(fp);
		free(text);
		return -1;
	}
	fclose(fp);
	text[len] = '\0';
	*text_r = text;
	*len_r = len;
	return 0;
}

struct config *
config_load_text(const char *path, const char *text, size_t len, char **errors_r)
{
	FILE *fp;
	char *abs;

	if (errors_r != NULL)
		*errors_r = NULL;
	/* An absolute path is taken as it is: the caller may no longer be
	 * able to reach the file (a chdir, a privilege drop). */
	abs = path[0] == '/' ? xstrdup(path) : realpath(path, NULL);
	if (abs == NULL) {
		config_open_error(path, "cannot resolve", errors_r);
		return NULL;
	}
	/* fmemopen() refuses an empty buffer on older C libraries. */
	fp = len > 0 ? fmemopen((void *)text, len, "r") : fopen("/dev/null", "re");
	if (fp == NULL) {
		config_open_error(path, "cannot read", errors_r);
		free(abs);
		return NULL;
	}
	return config_load_fp(path, abs, fp, errors_r);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < N_CORE; i++)
		if (!core_sections[i]->named)
			settings_free(core_sections[i], core_record(cfg, core_sections[i]));
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		free(cfg->listeners[i].name);
		settings_free(&config_listener_section, &cfg->listeners[i]);
	}
	free(cfg->listeners);
	config_reader_free(cfg->sections, cfg->n_sections);
	free(cfg->warnings);
	free(cfg->path);
	free(cfg);
}

/* ---- lookups ---- */

const struct listener_cfg *
config_listener(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (ascii_strcasecmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}

bool
config_is_local_domain(const struct config *cfg, const char *domain)
{
	size_t len;

	if (domain == NULL)
		return false;
	len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		len--; /* the root label: "example.test." */
	if (len == 0)
		return false;
	for (char **d = cfg->local_domains; *d != NULL; d++) {
		size_t dlen = strlen(*d);
		if ((*d)[0] == '.') {
			/* ".example.test": strict subdomains only */
			if (len > dlen && ascii_strncasecmp(domain + len - dlen, *d, dlen) == 0)
				return true;
		} else if (len == dlen && ascii_strncasecmp(domain, *d, len) == 0) {
			return true;
		}
	}
	return false;
}

bool
config_is_client_network(const struct config *cfg, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cfg->n_client_networks; i++)
		if (net_cidr_match(&cfg->client_networks[i], sa))
			return true;
	return false;
}

static const char *
name_of(const struct settings_name *names, int value)
{
	for (; names->name != NULL; names++)
		if (names->value == value)
			return names->name;
	return "?";
}

const char *
config_role_name(enum listener_role role)
{
	return name_of(role_names, (int)role);
}

const char *
config_tls_name(enum listener_tls tls)
{
	return name_of(tls_names, (int)tls);
}

const struct config_section *
config_section_next(const struct config *cfg, const char *kind, const struct config_section *prev)
{
	size_t i = prev == NULL ? 0 : (size_t)(prev - cfg->sections) + 1;

	for (; i < cfg->n_sections; i++)
		if (strcmp(cfg->sections[i].kind, kind) == 0)
			return &cfg->sections[i];
	return NULL;
}

const char *
config_section_get(const struct config_section *sec, const char *key, int *line_r)
{
	for (size_t i = sec->n_kv; i-- > 0;) {
		if (ascii_strcasecmp(sec->kv[i].key, key) == 0) {
			if (line_r != NULL)
				*line_r = sec->kv[i].line;
			return sec->kv[i].value;
		}
	}
	return NULL;
}

int
config_key_line(const struct config *cfg, const char *kind, const char *name, const char *key)
{
	const struct config_section *sec = NULL;
	int line = 0, first = 0, l;

	while ((sec = config_section_next(cfg, kind, sec)) != NULL) {
		if (name != NULL && (sec->name == NULL || ascii_strcasecmp(sec->name, name) != 0))
			continue;
		if (first == 0)
			first = sec->line;
		if (config_section_get(sec, key, &l) != NULL)
			line = l;
	}
	return line != 0 ? line : first;
}
