/*
 * check_config.c - "authrelay check-config": everything the daemon would refuse
 * at start, reported at once, so an admin can fix a config before a restart.
 */
#include "master.h"
#include "privdrop.h"
#include "../auth/auth_server.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../smtpd/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/ssl.h>

int
master_check_config(const char *path)
{
	char *errors = NULL;
	const char *err;
	int status = 0;

	/* Every section, the modules' ones included (settings_registry.c). */
	struct config *cfg = config_load(path, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	if (cfg->warnings != NULL)
		fputs(cfg->warnings, stderr);
	/* Semantic errors beyond the file's syntax carry line 0: they concern
	 * the whole file or files it names. */
	bool need_tls = false;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		need_tls |= cfg->listeners[i].tls != LTLS_NONE;
	if (need_tls) {
		if (tls_server_check(cfg, &err) != 0) {
			fprintf(stderr, "%s:0: [tls] %s\n", path, err);
			status = 1;
		}
	}
	if (geteuid() == 0) {
		struct privdrop_user u;
		if (privdrop_lookup(cfg->user, &u, &err) != 0) {
			fprintf(stderr, "%s:0: [server] user: %s\n", path, err);
			status = 1;
		}
		if (cfg->auth_user != NULL && privdrop_lookup(cfg->auth_user, &u, &err) != 0) {
			fprintf(stderr, "%s:0: [server] auth_user: %s\n", path, err);
			status = 1;
		}
		if (privdrop_lookup(cfg->queue_user, &u, &err) != 0) {
			fprintf(stderr, "%s:0: [server] queue_user: %s\n", path, err);
			status = 1;
		}
	}
	/* Quiet logging: only the sources' own errors are of interest here. */
	log_init(false, LOG_LEVEL_WARN, "check-config");
	if (auth_server_check(cfg) != 0)
		status = 1;
	config_free(cfg);
	return status == 0 ? 0 : EX_CONFIG;
}
