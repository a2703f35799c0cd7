/* SPDX-License-Identifier: ISC */
/*
 * ctlsock.h - the command line's end of a daemon's local stream socket:
 * `authrelay stop|status|unlock|...` asking the master, `authrelay queue`
 * asking the queue process. Each command speaks its own lines; what they
 * share is reaching the socket under a directory and showing the answer on
 * an admin's terminal without letting the daemon drive it.
 */
#ifndef AUTHRELAY_CTLSOCK_H
#define AUTHRELAY_CTLSOCK_H

#include <stddef.h>
#include <stdio.h>

/* Connect to the UNIX stream socket dir/name (close-on-exec). Returns the
 * descriptor, or -1 with errno: ENAMETOOLONG when the path does not fit a
 * socket address, else socket(2)'s or connect(2)'s. */
int ctlsock_connect(const char *dir, const char *name);

/* Write len bytes of text from a daemon to `to`, dropping every control
 * character but newline and tab: an answer can show anything, never move
 * the cursor, retitle the window or set a colour. */
void ctlsock_print(FILE *to, const char *text, size_t len);

#endif
