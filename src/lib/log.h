/*
 * log.h - one line per event, key=value fields, to stderr or syslog.
 *
 * Callers put the session id first ("s=4f2a1c auth mech=PLAIN ...") and pass
 * every client-supplied string through log_escape(). Nothing here ever sees a
 * password: callers must not pass one.
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

/* Escape len bytes of untrusted input for a log field: printable ASCII is kept,
 * '"' and '\\' are backslashed, anything else becomes \xNN. The result is
 * truncated (with "...") to fit outsz, always NUL-terminated. Returns out. */
char *log_escape(const void *in, size_t len, char *out, size_t outsz);
/* Same for a NUL-terminated string. */
char *log_escape_str(const char *in, char *out, size_t outsz);

#endif
