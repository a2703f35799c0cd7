/* SPDX-License-Identifier: ISC */
/*
 * ut_smtpd.h - unit-test helper: a scripted SMTP server on a loopback port.
 *
 * A thread with blocking sockets (and blocking OpenSSL for STARTTLS and
 * implicit TLS) follows a script: wait for a client line starting with a
 * prefix, send bytes, then maybe start TLS, read a message, hang or close.
 * What no real server does on demand (a malformed reply, a reply that never
 * comes, data injected after STARTTLS's 220) is one script away. The client
 * under test runs on the test's own event loop.
 */
#ifndef UT_SMTPD_H
#define UT_SMTPD_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

enum ut_smtpd_act {
	UT_SMTPD_NONE = 0,
	UT_SMTPD_TLS,     /* after sending: TLS handshake as the server */
	UT_SMTPD_CLOSE,   /* after sending: close */
	UT_SMTPD_HANG,    /* send nothing more; wait for the client to go */
	UT_SMTPD_MESSAGE, /* read up to CRLF.CRLF (ut_smtpd_message), then send */
	UT_SMTPD_BATCH,   /* expect names the first of n lines all read before sending */
	UT_SMTPD_ALONE,   /* check nothing else arrived with the line, then send */
};

/* One step; a script ends with an all-zero step. Scripts list only the
 * fields a step needs. */
struct ut_smtpd_step {
	const char *expect; /* prefix of the next client line; NULL: send at once */
	const char *send;   /* NULL: nothing */
	enum ut_smtpd_act act;
	int n; /* UT_SMTPD_BATCH: lines to read */
};

struct ut_smtpd;

/* Listen on a loopback port. With a script, a thread serves one connection
 * with it, then (unless that went wrong) a second one with again when not
 * NULL; without, nobody accepts (see ut_smtpd_contacted()). tls (kept by
 * the caller until ut_smtpd_free()) serves UT_SMTPD_TLS steps, and every
 * connection from its first byte when implicit_tls. */
struct ut_smtpd *ut_smtpd_new(const struct ut_smtpd_step *script, const struct ut_smtpd_step *again,
                              SSL_CTX *tls, bool implicit_tls);

/* The port it listens on. */
int ut_smtpd_port(const struct ut_smtpd *s);

/* Wait until the thread is done (a script ends by draining the connection
 * until the client closes it). Returns what went against the script ("EOF
 * waiting for RCPT", "expected DATA, got QUIT"), NULL when nothing did. */
const char *ut_smtpd_join(struct ut_smtpd *s);

/* The client's lines so far, each followed by '\n', without CRLF. Stable
 * once ut_smtpd_join() has returned. */
const char *ut_smtpd_got(const struct ut_smtpd *s);

/* The raw bytes a UT_SMTPD_MESSAGE step read, up to and with CRLF.CRLF;
 * NULL before. */
const char *ut_smtpd_message(const struct ut_smtpd *s, size_t *len_r);

/* True when a UT_SMTPD_ALONE line had company. */
bool ut_smtpd_alone_violated(const struct ut_smtpd *s);

/* Without a script: true when a connection waits in the backlog. */
bool ut_smtpd_contacted(const struct ut_smtpd *s);

/* Join the thread (its error is dropped: see ut_smtpd_join()), close the
 * port, free s. */
void ut_smtpd_free(struct ut_smtpd *s);

#endif
