/* SPDX-License-Identifier: ISC */
/*
 * tls_handshake.c - a TLS server handshake driven by the event loop, with
 * signatures from the key process (see tls_handshake.h).
 *
 * Each step calls SSL_do_handshake() between keyproc_wait_enter()/leave()
 * and waits for what OpenSSL asks: the socket readable (WANT_READ), writable
 * (WANT_WRITE), or the signature (WANT_ASYNC: the async job paused in
 * keyproc_client_sign(); the keyproc_wait's wake makes ev_resume active).
 * One timer bounds the whole handshake.
 *
 * A paused async job owns a stack of OpenSSL's and our signature request;
 * SSL_free() would leak both. So whenever the handshake ends early (timeout,
 * or the session frees it), the signature is cancelled and SSL_do_handshake()
 * is called once more: the job resumes, the signature fails, OpenSSL ends the
 * handshake with an alert and the job returns.
 *
 * Under AddressSanitizer, OpenSSL's switch to and from the job's stack
 * (_longjmp) makes ASan print once "ASan is ignoring requested
 * __asan_handle_no_return ... False positive error reports may follow": it
 * cannot tell a stack switch from a huge frame. Nothing of ours runs on that
 * stack but keyproc_client_sign(), which returns normally.
 */
#include "tls_handshake.h"
#include "../keyproc/keyproc_client.h"
#include "../lib/common.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <openssl/err.h>

#include <event2/event.h>

struct tls_handshake {
	SSL *ssl;
	struct keyproc_wait *wait;
	struct event *ev_read, *ev_write, *ev_resume, *ev_deadline;
	tls_handshake_cb *cb;
	void *arg;
	bool done;
};

static void tls_handshake_step(struct tls_handshake *hs);

/* The handshake's last act: cb may free hs. */
static void
tls_handshake_finish(struct tls_handshake *hs, enum tls_handshake_result result, const char *error)
{
	hs->done = true;
	event_del(hs->ev_read);
	event_del(hs->ev_write);
	event_del(hs->ev_resume);
	event_del(hs->ev_deadline);
	if (result == TLS_HANDSHAKE_OK)
		SSL_clear_mode(hs->ssl, SSL_MODE_ASYNC);
	hs->cb(result, error, hs->arg);
}

/* Resume a paused job with its signature cancelled, so that it ends. */
static void
tls_handshake_unwind(struct tls_handshake *hs)
{
	if (!keyproc_wait_pending(hs->wait))
		return;
	keyproc_wait_cancel(hs->wait);
	keyproc_wait_enter(hs->wait);
	(void)SSL_do_handshake(hs->ssl);
	keyproc_wait_leave(hs->wait);
	ERR_clear_error();
	if (keyproc_wait_pending(hs->wait))
		fatal("tls: a cancelled signature did not end its handshake");
}

static void
tls_handshake_step(struct tls_handshake *hs)
{
	static char error[256];
	int r, err;

	ERR_clear_error();
	keyproc_wait_enter(hs->wait);
	r = SSL_do_handshake(hs->ssl);
	keyproc_wait_leave(hs->wait);
	if (r == 1) {
		tls_handshake_finish(hs, TLS_HANDSHAKE_OK, "");
		return;
	}
	err = SSL_get_error(hs->ssl, r);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		event_add(hs->ev_read, NULL);
		return;
	case SSL_ERROR_WANT_WRITE:
		event_add(hs->ev_write, NULL);
		return;
	case SSL_ERROR_WANT_ASYNC:
		/* keyproc_wait's wake resumes us; anything else pausing the
		 * job would leave the handshake stuck until the deadline. */
		if (!keyproc_wait_pending(hs->wait))
			log_warn("tls: handshake paused without a signature in flight");
		return;
	case SSL_ERROR_ZERO_RETURN:
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			tls_handshake_finish(hs, TLS_HANDSHAKE_FAILED,
			                     r == 0 ? "connection closed by the client"
			                            : "connection error");
			return;
		}
		break;
	default:
		break;
	}
	unsigned long e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, error, sizeof(error));
	else
		snprintf(error, sizeof(error), "SSL_do_handshake error %d", err);
	ERR_clear_error();
	tls_handshake_finish(hs, TLS_HANDSHAKE_FAILED, error);
}

static void
tls_handshake_io_cb(evutil_socket_t fd, short what, void *arg)
{
	tls_handshake_step(arg);
}

static void
tls_handshake_wake(void *arg)
{
	struct tls_handshake *hs = arg;

	/* Not from inside the client's callback: from the loop. */
	event_active(hs->ev_resume, EV_TIMEOUT, 0);
}

static void
tls_handshake_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_handshake *hs = arg;

	tls_handshake_unwind(hs);
	tls_handshake_finish(hs, TLS_HANDSHAKE_TIMEOUT, "timeout");
}

struct tls_handshake *
tls_handshake_start(struct event_base *base, SSL *ssl, int fd, struct keyproc_client *kc,
                    unsigned timeout_s, tls_handshake_cb *cb, void *arg)
{
	struct tls_handshake *hs = xcalloc(1, sizeof(*hs));
	struct timeval tv = {timeout_s, 0};

	hs->ssl = ssl;
	hs->cb = cb;
	hs->arg = arg;
	hs->wait = keyproc_wait_new(kc, tls_handshake_wake, hs);
	hs->ev_read = event_new(base, fd, EV_READ, tls_handshake_io_cb, hs);
	hs->ev_write = event_new(base, fd, EV_WRITE, tls_handshake_io_cb, hs);
	hs->ev_resume = event_new(base, -1, 0, tls_handshake_io_cb, hs);
	hs->ev_deadline = evtimer_new(base, tls_handshake_deadline_cb, hs);
	if (hs->ev_read == NULL || hs->ev_write == NULL || hs->ev_resume == NULL ||
	    hs->ev_deadline == NULL)
		fatal("tls: event_new failed");
	/* The signature may have to wait for the key process (tls_handshake.h). */
	SSL_set_mode(ssl, SSL_MODE_ASYNC);
	evtimer_add(hs->ev_deadline, &tv);
	/* The client's hello is usually there already: the first step runs
	 * from the loop (cb never runs inside this call). */
	event_active(hs->ev_resume, EV_TIMEOUT, 0);
	return hs;
}

void
tls_handshake_free(struct tls_handshake *hs)
{
	if (hs == NULL)
		return;
	if (!hs->done)
		tls_handshake_unwind(hs);
	event_free(hs->ev_read);
	event_free(hs->ev_write);
	event_free(hs->ev_resume);
	event_free(hs->ev_deadline);
	keyproc_wait_free(hs->wait);
	free(hs);
}
