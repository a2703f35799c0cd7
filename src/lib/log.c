/*
 * log.c - the logger behind log.h: a line per event with the process role and
 * pid, to stderr (foreground, tests) or syslog (daemon).
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static bool log_syslog;
static enum log_level log_level = LOG_LEVEL_INFO;
static char log_ident[32] = "authrelay";

void
log_init(bool use_syslog, enum log_level level, const char *ident)
{
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
	/* One fprintf so that lines from different processes do not interleave. */
	fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s\n", when, ts.tv_nsec / 1000000L, log_ident,
	        (int)getpid(), name[level], line);
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

char *
log_escape(const void *in, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = in;
	size_t o = 0;

	if (outsz == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		char tmp[4];
		size_t n;
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			n = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			tmp[0] = (char)c;
			n = 1;
		} else {
			tmp[0] = '\\';
			tmp[1] = 'x';
			tmp[2] = hex[c >> 4];
			tmp[3] = hex[c & 15];
			n = 4;
		}
		/* Keep room for "..." and the NUL. */
		if (o + n + 4 > outsz) {
			if (outsz >= 4) {
				memcpy(out + (o < outsz - 4 ? o : outsz - 4), "...", 3);
				o = (o < outsz - 4 ? o : outsz - 4) + 3;
			}
			break;
		}
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o < outsz ? o : outsz - 1] = '\0';
	return out;
}

char *
log_escape_str(const char *in, char *out, size_t outsz)
{
	return log_escape(in, strlen(in), out, outsz);
}
