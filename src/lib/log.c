/* SPDX-License-Identifier: ISC */
/*
 * log.c - the logger behind log.h: a line per event with the process role and
 * pid, to stderr (foreground, tests) or syslog (daemon).
 *
 * Batching (log_batch()): a busy worker logs three lines per session, and a
 * write(2) each was a tenth of its system calls. With an event base attached,
 * lines logged on the loop's thread are kept in a buffer and written by one
 * event the loop runs after the callbacks of the current round, so a round
 * that served fifty sessions costs one write. Other threads, and processes
 * without a loop, still write each line at once.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

static bool log_syslog;
static bool log_plain;
static enum log_level log_level = LOG_LEVEL_INFO;
static char log_ident[32] = "authrelay";
/* getpid() is a system call (glibc no longer caches it); kept here, reset by
 * log_init() and in a forked child. */
static pid_t log_pid;

/* Lines waiting for the flush event; only the loop's thread touches them. */
static struct {
	struct event *ev;
	pthread_t owner;
	bool armed;
	size_t len;
	char buf[32768];
} log_batch_state;

void
log_flush(void)
{
	if (log_batch_state.len > 0 && pthread_equal(pthread_self(), log_batch_state.owner)) {
		/* A failed write has nowhere left to be reported. */
		(void)write_all(STDERR_FILENO, log_batch_state.buf, log_batch_state.len);
		log_batch_state.len = 0;
	}
}

static void
log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	log_batch_state.armed = false;
	log_flush();
}

/* A forked child starts with its parent's unwritten lines: the parent writes
 * them, the child forgets them, and it has no loop of its own yet. */
static void
log_atfork_child(void)
{
	log_pid = getpid();
	log_batch_state.len = 0;
	log_batch_state.ev = NULL;
	log_batch_state.armed = false;
}

void
log_batch(struct event_base *base)
{
	if (log_batch_state.ev != NULL) {
		log_flush();
		event_free(log_batch_state.ev);
		log_batch_state.ev = NULL;
		log_batch_state.armed = false;
	}
	if (base == NULL)
		return;
	log_batch_state.ev = event_new(base, -1, 0, log_flush_cb, NULL);
	if (log_batch_state.ev == NULL)
		return;
	log_batch_state.owner = pthread_self();
	static bool registered;
	if (!registered) {
		registered = true;
		atexit(log_flush);
	}
}

void
log_init(bool use_syslog, enum log_level level, const char *ident)
{
	static bool forked_hook;
	if (!forked_hook) {
		forked_hook = true;
		pthread_atfork(NULL, NULL, log_atfork_child);
	}
	log_pid = getpid();
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
	log_level = level;
	if (log_syslog)
		closelog();
	log_syslog = use_syslog;
	if (use_syslog) {
		static char syslog_ident[48];
		snprintf(syslog_ident, sizeof(syslog_ident), "authrelay/%s", ident);
		/* LOG_NDELAY: connect now, before a chroot hides /dev/log. */
		openlog(syslog_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

void
log_set_plain(bool plain)
{
	log_plain = plain;
}

bool
log_enabled(enum log_level level)
{
	return level <= log_level;
}

static void log_vemit(enum log_level level, const char *fmt, va_list ap) AR_PRINTF(2, 0);

static void
log_vemit(enum log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *name[] = {"error", "warning", "info", "debug"};
	char line[2048];

	if (!log_enabled(level))
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	if (log_syslog) {
		syslog(prio[level], "%s", line);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	char out[sizeof(line) + 128];
	int n = log_plain ? snprintf(out, sizeof(out), "%s\n", line)
	                  : snprintf(out, sizeof(out), "%s.%03ldZ %s[%d] %s: %s\n", when,
	                             ts.tv_nsec / 1000000L, log_ident,
	                             (int)(log_pid != 0 ? log_pid : getpid()), name[level], line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(out))
		n = (int)sizeof(out) - 1;
	if (log_batch_state.ev == NULL || !pthread_equal(pthread_self(), log_batch_state.owner) ||
	    level == LOG_LEVEL_ERR) {
		/* One write per line, so that lines from different processes
		 * do not interleave. Errors go out at once, in order. */
		log_flush();
		(void)write_all(STDERR_FILENO, out, (size_t)n);
		return;
	}
	if (log_batch_state.len + (size_t)n > sizeof(log_batch_state.buf))
		log_flush();
	memcpy(log_batch_state.buf + log_batch_state.len, out, (size_t)n);
	log_batch_state.len += (size_t)n;
	if (!log_batch_state.armed) {
		/* Active events run in the order they were activated: this one
		 * runs after every callback already due in this round. */
		event_active(log_batch_state.ev, EV_TIMEOUT, 0);
		log_batch_state.armed = true;
	}
}

#define LOG_FN(fn, lvl)                                                                            \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vemit(lvl, fmt, ap);                                                           \
		va_end(ap);                                                                        \
	}

LOG_FN(log_err, LOG_LEVEL_ERR)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

/* The length of the well-formed UTF-8 sequence at p (2 to 4 bytes, at most
 * len), or 0 if there is none (RFC 3629 4: no overlong forms, no surrogates,
 * nothing above U+10FFFF). *cp_r is its code point. */
static size_t
log_utf8_len(const unsigned char *p, size_t len, uint32_t *cp_r)
{
	size_t n;
	uint32_t cp, min;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1fu;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0fu;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07u;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

/* Characters kept out of a log line even when well-formed: C1 controls, the
 * Unicode line and paragraph separators (a line break to some readers), and
 * the bidirectional controls that make a terminal show text in another order
 * than it is written (CVE-2021-42574). */
static bool
log_unicode_hidden(uint32_t cp)
{
	return cp <= 0x9f || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
	       (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

char *
log_escape(const void *in, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = in;
	size_t o = 0;

	if (outsz == 0)
		return out;
	for (size_t i = 0; i < len;) {
		char tmp[16];
		size_t n = 0, used = 1;
		unsigned char c = p[i];
		uint32_t cp;
		if (c == '"' || c == '\\') {
			tmp[n++] = '\\';
			tmp[n++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f && c != '=') {
			tmp[n++] = (char)c;
		} else if (c >= 0x80 && (used = log_utf8_len(p + i, len - i, &cp)) > 0 &&
		           !log_unicode_hidden(cp)) {
			memcpy(tmp, p + i, used);
			n = used;
		} else {
			/* Controls, DEL, '=' (so that no value can hold a
			 * "key=" a log reader would take for a field), and
			 * bytes that are not UTF-8, one by one. */
			used = c >= 0x80 && used > 0 ? used : 1;
			for (size_t k = 0; k < used; k++) {
				tmp[n++] = '\\';
				tmp[n++] = 'x';
				tmp[n++] = hex[p[i + k] >> 4];
				tmp[n++] = hex[p[i + k] & 15];
			}
		}
		/* Keep room for "..." and the NUL; never cut a sequence. */
		if (o + n + 4 > outsz) {
			if (outsz >= 4) {
				if (o > outsz - 4)
					o = outsz - 4;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, n);
		o += n;
		i += used;
	}
	out[o < outsz ? o : outsz - 1] = '\0';
	return out;
}

char *
log_escape_str(const char *in, char *out, size_t outsz)
{
	return log_escape(in, strlen(in), out, outsz);
}
