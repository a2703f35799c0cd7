/* SPDX-License-Identifier: ISC */
/*
 * shared_config.c - the table of [shared] (see shared_config.h).
 */
#include "shared_config.h"
#include "../lib/net.h"
#include "../lib/settings.h"

#include <stddef.h>
#include <string.h>

#define SC(f) SETTINGS_FIELD(struct shared_config, f)

/* "unix:/absolute/path" or a numeric address:port. */
static const char *
check_redis(char *v)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *error;

	if (strncmp(v, "unix:", 5) == 0)
		return v[5] == '/' ? NULL : "unix: needs an absolute path (unix:/run/redis.sock)";
	if (net_parse_hostport(v, &ss, &len, &error) < 0)
		return "expected address:port (numeric, like 127.0.0.1:6379) or unix:/path";
	return NULL;
}

static const struct settings_key shared_keys[] = {
        {"redis", SETTINGS_STRING, SC(redis), .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .check = check_redis, .type_doc = "address:port or unix:/path",
         .meaning = "The Redis server the gateways share their counters through; unset: "
                    "every gateway counts alone."},
        {"password_file", SETTINGS_PATH, SC(password_file),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "A file whose first line is the Redis password (AUTH), readable by "
                    "auth_user."},
        {"database", SETTINGS_UINT, SC(database), .def = "0", .max = 1000000,
         .flags = SETTINGS_RESTART, .meaning = "The Redis database number (SELECT)."},
        {"key_prefix", SETTINGS_STRING, SC(key_prefix),
         .def = "authrelay:", .flags = SETTINGS_RESTART, .check = settings_check_printable,
         .meaning = "Put before every key, so several clusters can share one Redis."},
        {"timeout", SETTINGS_DURATION_MS, SC(timeout_ms), .def = "200", .min = 1, .max = 10000,
         .flags = SETTINGS_RESTART,
         .meaning = "Wait for the connection and for each answer; longer and the gateway "
                    "counts locally until Redis answers again."},
        {"tls", SETTINGS_BOOL, SC(tls), .def = "no", .flags = SETTINGS_RESTART,
         .meaning = "Talk to Redis over TLS (its tls-port); the certificate and its name are "
                    "always verified, and a unix: address takes none."},
        {"tls_ca_file", SETTINGS_PATH, SC(tls_ca_file),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "The CA certificates (PEM) Redis's certificate must chain to, readable by "
                    "auth_user; unset: the system's store."},
        {"tls_server_name", SETTINGS_STRING, SC(tls_server_name),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART, .check = settings_check_printable,
         .type_doc = "host name or IP address",
         .meaning = "The name Redis's certificate must carry (and the SNI sent); unset: the "
                    "address of redis."},
        {"tls_cert_file", SETTINGS_PATH, SC(tls_cert_file),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "A client certificate chain (PEM) for a Redis with tls-auth-clients, "
                    "readable by auth_user; with tls_key_file."},
        {"tls_key_file", SETTINGS_PATH, SC(tls_key_file),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "The private key (PEM) of tls_cert_file, readable by auth_user."},
        {"send_limits", SETTINGS_BOOL, SC(send_limits), .def = "yes", .flags = SETTINGS_RESTART,
         .meaning = "Share [protection] messages_per_hour and recipients_per_hour counts."},
        {"lockouts", SETTINGS_BOOL, SC(lockouts), .def = "yes", .flags = SETTINGS_RESTART,
         .meaning = "Share the brute-force failure counts and lockouts ([protection] "
                    "lockout_*), so guesses spread over the gateways meet one budget."},
        /* the distinct-password key */
        {"secret_file", SETTINGS_PATH, SC(secret_file),
         .flags = SETTINGS_OPTIONAL | SETTINGS_RESTART,
         .meaning = "A file readable by auth_user whose first line is a random secret, the "
                    "same on every gateway: wrong passwords are then named alike everywhere "
                    "and the same one counts once in the cluster; unset: once per gateway."},
};

static const struct settings_section shared_section = {
        .kind = "shared",
        .meaning = "State shared by several gateways through Redis.",
        .keys = shared_keys,
        .n_keys = AR_NELEM(shared_keys),
};

static const struct settings_section *const sections[] = {&shared_section};

/* Where key was set (0: not set), for a message about a rule between keys. */
static int
line_of(const int *lines, const char *key)
{
	int i = settings_key_index(&shared_section, key);

	return i >= 0 && lines[i] > 0 ? lines[i] : 0;
}

static void
shared_config_parse(const struct config *cfg, struct shared_config *sc, struct settings_ctx *ctx)
{
	int lines[AR_NELEM(shared_keys)] = {0};

	memset(sc, 0, sizeof(*sc));
	settings_parse_all(ctx, &shared_section, cfg, sc, lines);
	if (sc->tls && sc->redis != NULL && strncmp(sc->redis, "unix:", 5) == 0)
		settings_error(ctx, line_of(lines, "tls"),
		               "[shared] tls = yes needs a TCP address in redis, not %s",
		               sc->redis);
	if ((sc->tls_cert_file != NULL) != (sc->tls_key_file != NULL))
		settings_error(ctx,
		               line_of(lines, sc->tls_cert_file != NULL ? "tls_cert_file"
		                                                        : "tls_key_file"),
		               "[shared] tls_cert_file and tls_key_file go together");
	if (!sc->tls) {
		/* A TLS key without tls = yes would be silently unused. */
		static const char *const tls_keys[] = {"tls_ca_file", "tls_server_name",
		                                       "tls_cert_file", "tls_key_file"};
		for (size_t i = 0; i < AR_NELEM(tls_keys); i++)
			if (line_of(lines, tls_keys[i]) > 0)
				settings_error(ctx, line_of(lines, tls_keys[i]),
				               "[shared] %s needs tls = yes", tls_keys[i]);
	}
}

static void
shared_config_check(const struct config *cfg, struct settings_ctx *ctx)
{
	struct shared_config sc;

	shared_config_parse(cfg, &sc, ctx);
	shared_config_clear(&sc);
}

const struct config_module shared_config_module = {
        .sections = sections,
        .n_sections = AR_NELEM(sections),
        .check = shared_config_check,
};

int
shared_config_load(const struct config *cfg, struct shared_config *sc, char **errors_r)
{
	struct settings_ctx *ctx = settings_ctx_new(cfg->path != NULL ? cfg->path : "config", NULL);

	*errors_r = NULL;
	shared_config_parse(cfg, sc, ctx);
	if (settings_ctx_errors(ctx) > 0) {
		*errors_r = settings_ctx_report(ctx);
		shared_config_clear(sc);
	}
	settings_ctx_free(ctx);
	return *errors_r != NULL ? -1 : 0;
}

void
shared_config_clear(struct shared_config *sc)
{
	settings_free(&shared_section, sc);
	memset(sc, 0, sizeof(*sc));
}
