/* SPDX-License-Identifier: ISC */
/*
 * log.h - one line per event, key=value fields, to stderr or syslog.
 *
 * A line is "s=ID event", then the fields the gateway knows (client address,
 * listener, result, reason...), then the fields a client controls, each
 * through log_escape() and quoted: "s=4f2a1c auth client=192.0.2.7
 * listener=submission result=fail reason=bad_password ... user=\"alice\"".
 * Tools that read the log (fail2ban) rely on that order: a field they match
 * is never preceded by client text. Nothing here ever sees a password:
 * callers must not pass one.
 */
#ifndef AUTHRELAY_LOG_H
#define AUTHRELAY_LOG_H

#include <stddef.h>
#include "common.h"

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Set up logging. use_syslog selects syslog (LOG_MAIL) over stderr; ident is the
 * process role shown in each line ("master", "smtpd", "auth"). May be called again
 * (for example after fork) to change the role. */
void log_init(bool use_syslog, enum log_level level, const char *ident);
void log_set_level(enum log_level level);
/* Lines on stderr carry the message alone, without time, role and level:
 * for a command whose messages are read by a person, like check-config's
 * "file:line: warning: ..." (syslog is not affected). */
void log_set_plain(bool plain);

struct event_base;
/* Batch the lines this thread logs while base runs: they are written together
 * once the loop's current round of callbacks is done (stderr only; syslog and
 * error lines still go out one by one). log_batch(NULL) writes what is left
 * and stops batching; exit() writes it too. */
void log_batch(struct event_base *base);
/* Write the lines log_batch() holds (before an abort-free exit path). */
void log_flush(void);
bool log_enabled(enum log_level level);

void log_err(const char *fmt, ...) AR_PRINTF(1, 2);
void log_warn(const char *fmt, ...) AR_PRINTF(1, 2);
void log_info(const char *fmt, ...) AR_PRINTF(1, 2);
void log_debug(const char *fmt, ...) AR_PRINTF(1, 2);
/* Log at error level and exit(1): for broken invariants and start-up failures. */
void fatal(const char *fmt, ...) AR_PRINTF(1, 2) AR_NORETURN;

/* The one escaper for every value a client or a remote server controls (a
 * login, an address, a HELO name, a reply text), written between double
 * quotes at the end of a line: user="...". Kept as they are: printable ASCII
 * but '=', and well-formed UTF-8 other than C1 controls, line separators and
 * bidirectional controls. '"' and '\\' are backslashed; '=', controls, DEL,
 * those characters and bytes that are not UTF-8 become \xNN, so that no value
 * can close its quotes, start a line or hold a "key=" that a reader would take
 * for one of the gateway's own fields. The result is cut (never inside an
 * escape or a character, marked "...") to fit outsz, which is the length cap,
 * and always NUL-terminated. Returns out. */
char *log_escape(const void *in, size_t len, char *out, size_t outsz);
/* The usual buffer for one escaped value, so its cap: a login or an address
 * of up to 127 bytes of anything (4 bytes per escaped byte) fits whole. */
#define LOG_VALUE_MAX 512
/* Same for a NUL-terminated string. */
char *log_escape_str(const char *in, char *out, size_t outsz);

#endif
