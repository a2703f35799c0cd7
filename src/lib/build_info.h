/* SPDX-License-Identifier: ISC */
/*
 * build_info.h - what the build decides: the version and where the
 * configuration lives. The Makefile passes AUTHRELAY_VERSION and
 * AUTHRELAY_SYSCONFDIR (`make SYSCONFDIR=...`); the defaults here serve a
 * compiler run by hand.
 *
 * Exit statuses are those of <sysexits.h>, the mail tradition (sendmail,
 * Postfix) that systemctl also names ("status=78/CONFIG"), and every
 * command uses them alike (authrelay(8), EXIT STATUS):
 *   0            success (test-auth: the login is accepted)
 *   1            the answer is no (test-auth: refused), or another failure
 *   EX_USAGE     64, the command line is wrong
 *   EX_NOPERM    77, the admin commands (status, stop, ...) need root
 *   EX_TEMPFAIL  75, try again later: a port in use, the queue process not
 *                running, a directory that does not answer
 *   EX_CONFIG    78, the configuration, or a file it names, is invalid
 */
#ifndef AUTHRELAY_BUILD_INFO_H
#define AUTHRELAY_BUILD_INFO_H

#include <sysexits.h>

#ifndef AUTHRELAY_VERSION
#define AUTHRELAY_VERSION "0.1.0"
#endif
#ifndef AUTHRELAY_SYSCONFDIR
#define AUTHRELAY_SYSCONFDIR "/etc"
#endif

/* The configuration every command reads when -c is not given. */
#define AUTHRELAY_CONFIG_FILE AUTHRELAY_SYSCONFDIR "/authrelay/authrelay.conf"

#endif
