/* SPDX-License-Identifier: ISC */
/*
 * auth_server.h - the auth process: the only process that holds credential
 * stores and their secrets. It accepts SMTP workers on a UNIX socket, answers
 * VERIFY requests through the configured sources (auth_source.h), and runs
 * slow hash checks on a thread pool so its event loop never blocks.
 */
#ifndef AUTHRELAY_AUTH_SERVER_H
#define AUTHRELAY_AUTH_SERVER_H

#include <stddef.h>
#include "../authwire/auth_proto.h"

struct config;
struct auth_source_ops;

/* Run the auth process on listen_fd (a listening SOCK_STREAM UNIX socket the
 * master bound; privileges are already dropped by the caller). Sends
 * AUTH_MSG_HELLO to each worker that connects. alert_fd is the auth end of
 * the alert channel to the queue process (alert_proto.h), or -1: alerts are
 * then only logged. admin_fd is the auth end of the master's admin channel
 * (admin_proto.h, auth_admin.h), or -1. ctl_fd is the master's control
 * channel (ctlchan.h): a reload arrives there as the new configuration's
 * text, or -1. The fds are the process's from here on. workdir is the
 * directory the process works from (the users file's, its name relative to
 * it in cfg), or NULL. SIGHUP re-reads the sources' files (the users file),
 * SIGTERM exits. Returns the process exit status. */
int auth_server_main(const struct config *cfg, int listen_fd, int alert_fd, int admin_fd,
                     int ctl_fd, const char *workdir);

/* The registry, in the order the daemon asks the sources: the i-th, or
 * NULL past the last (test-auth follows the same order). */
const struct auth_source_ops *auth_server_source(size_t i);
/* Whether an answer sends a login on to the next configured source: only
 * a user this one does not know. */
bool auth_server_passes_on(enum auth_result result, enum auth_reason reason);

/* Load the configured sources once, for check-config, and let each probe
 * its servers for what only they can tell (auth_source.h probe): 0 or -1
 * with the reasons printed to stderr. */
int auth_server_check(const struct config *cfg);

#endif
