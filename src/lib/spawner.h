/* SPDX-License-Identifier: ISC */
/*
 * spawner.h - running the administrator's command ([alerts] hook) from a
 * process that is sandboxed (sandbox.h).
 *
 * A seccomp filter is inherited across fork and exec: a shell started by a
 * sandboxed process would run under that process's allow-list and die at
 * its first call outside it. So such a process forks a helper *before* it
 * installs its filter (spawner_start()); the helper, same uid, unsandboxed,
 * does nothing but run the one command it was given at that moment, when
 * asked over a socket pair, and report when it ends. The sandboxed process
 * cannot make it run anything else: a compromised one gains, at most, more
 * runs of the administrator's own command.
 *
 * Without spawner_start() (tests, `sandbox = no`), spawner_spawn() and
 * spawner_wait() are posix_spawn() and waitpid() in the calling process.
 */
#ifndef AUTHRELAY_SPAWNER_H
#define AUTHRELAY_SPAWNER_H

#include <sys/types.h>
#include "common.h"

/* Fork the helper for command (copied). Call single-threaded, before the
 * sandbox. Returns 0, or -1 with *error_r. */
int spawner_start(const char *command, const char **error_r);

/* Start `/bin/sh -c command` with stdin_fd as its standard input and
 * env_entry ("NAME=value", or NULL) added to this process's environment.
 * With a helper, command must be the one it was started with. Returns 0
 * and *pid_r, or an errno value (EPERM: another command). */
int spawner_spawn(const char *command, const char *env_entry, int stdin_fd, pid_t *pid_r);

/* waitpid(pid, status_r, WNOHANG) for a pid spawner_spawn() gave: pid once
 * it has ended (*status_r set), 0 while it runs, -1 with errno. */
pid_t spawner_wait(pid_t pid, int *status_r);

#endif
