/* SPDX-License-Identifier: ISC */
/*
 * common.h - small definitions every module shares: parse results,
 * checked allocation, and a few attribute macros.
 *
 * Lower layers only: nothing here knows about SMTP, auth or the spool.
 */
#ifndef AUTHRELAY_COMMON_H
#define AUTHRELAY_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#define AR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define AR_NORETURN __attribute__((noreturn))
#define AR_UNUSED __attribute__((unused))
#define AR_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Result of a resumable parser (see STYLE.md, "Errors"). */
enum parse_result {
	PARSE_AGAIN = 0, /* need more input */
	PARSE_OK = 1,
	PARSE_INVALID = -1,
};

/* Allocation that never returns NULL: out of memory is fatal(). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Duplicate n bytes and add a NUL after them. */
void *xmemdup(const void *p, size_t n);
/* Wipe then free a string holding a secret (NULL is fine). */
void free_secret(char *s);

/* Constant-time comparison of two byte strings; lengths may differ
 * (the length difference itself is not hidden). Returns true when equal. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Case-insensitive ASCII comparison that ignores the locale. */
int ascii_strcasecmp(const char *a, const char *b);
int ascii_strncasecmp(const char *a, const char *b, size_t n);

/* Write all n bytes of buf to fd, across EINTR and short writes. Returns 0,
 * or -1 with errno (EIO when a write wrote nothing, so a full disk or a
 * closed pipe never makes it spin). */
int write_all(int fd, const void *buf, size_t n);

/* Read into buf until n bytes, end of file or an error, across EINTR and
 * short reads. Returns how many bytes were read (fewer than n only at end of
 * file), or -1 with errno on an error; what the failed call's earlier reads
 * left in buf is the caller's to wipe. */
ssize_t read_all(int fd, void *buf, size_t n);

/* t (unix seconds) as UTC through strftime(3)'s fmt into buf[size]. */
void utc_strftime(int64_t t, const char *fmt, char *buf, size_t size)
        __attribute__((format(strftime, 2, 0)));

#endif
