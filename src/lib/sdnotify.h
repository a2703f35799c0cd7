/* SPDX-License-Identifier: ISC */
/*
 * sdnotify.h - tell the service manager how the daemon is doing: the
 * notification protocol of sd_notify(3), spoken directly.
 *
 * A service with Type=notify gets $NOTIFY_SOCKET, a UNIX datagram socket;
 * each datagram is newline-separated KEY=VALUE assignments ("READY=1",
 * "RELOADING=1", "STOPPING=1", "STATUS=one line for systemctl status").
 * The protocol is documented as stable, so a few lines here spare the
 * daemon a link to libsystemd and everything that library pulls in
 * (OpenSSH dropped it for the same reason).
 */
#ifndef AUTHRELAY_SDNOTIFY_H
#define AUTHRELAY_SDNOTIFY_H

#include "common.h"

/* Send one notification, built like printf. Returns 0 when it was sent, or
 * when there is nobody to tell ($NOTIFY_SOCKET unset: not started by a
 * service manager, or a child process); -1 when the send failed, with errno
 * set. Never blocks for long: the socket is a local datagram socket. */
int sdnotify(const char *fmt, ...) AR_PRINTF(1, 2);

/* CLOCK_MONOTONIC in microseconds, for "MONOTONIC_USEC=" next to
 * "RELOADING=1" (systemd 253 and later require it with Type=notify-reload). */
unsigned long long sdnotify_monotonic_usec(void);

#endif
