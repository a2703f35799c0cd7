/* SPDX-License-Identifier: ISC */
/*
 * master.h - the supervisor process (see master.c) and check-config.
 */
#ifndef AUTHRELAY_MASTER_H
#define AUTHRELAY_MASTER_H

#include <stdbool.h>

/* Run the gateway with the config at path: in the foreground (logging to
 * stderr unless the config says syslog) or as a daemon. Returns the exit
 * status, or exits with it on a start-up error: EX_CONFIG for an invalid
 * config or certificate, EX_TEMPFAIL for a port in use (lib/build_info.h). */
int master_main(const char *config_path, bool foreground);

/* Validate the config at path as the daemon would at start: syntax and
 * semantics, TLS certificate and key, users, auth sources. Prints each error
 * to stderr as "file:line: message"; returns 0 when valid, else EX_CONFIG. */
int master_check_config(const char *config_path);

#endif
