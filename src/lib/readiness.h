/* SPDX-License-Identifier: ISC */
/*
 * readiness.h - a child process tells the master it is up.
 *
 * The master creates one pipe before it starts any child; each child
 * inherits the write end, and once its set-up is done (sockets, sources,
 * event loop built) and it is about to serve, writes its pid there. The
 * master reads those pids and only then tells the service manager, or the
 * shell that started a daemon, that the gateway is ready: a process that
 * fails during its set-up never counts as up.
 */
#ifndef AUTHRELAY_READINESS_H
#define AUTHRELAY_READINESS_H

#include <sys/types.h>

/* In a new child, before its main runs: the pipe's write end (the child
 * closes its copy of the read end itself). Processes without one (the
 * master, the command-line tools, unit tests) leave it at -1. */
void readiness_set_fd(int fd);

/* Report this process as up: write its pid to the pipe, then close it.
 * Called by each process's main just before its event loop; later calls,
 * and calls without a pipe, do nothing. */
void readiness_report(void);

/* The master's side: read the pids waiting on the pipe's non-blocking read
 * end fd into pids (at most max). Returns how many were read (0 when none
 * is waiting), or -1 when the pipe is closed or broken. */
int readiness_read(int fd, pid_t *pids, int max);

#endif
