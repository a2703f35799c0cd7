/* SPDX-License-Identifier: ISC */
/*
 * keyproc.h - the key process: the only process that holds the TLS private
 * keys. As OpenSMTPD's ca process does, it never touches the network; the
 * SMTP workers hold the certificate chain and the public key only, and send
 * each signature their TLS handshakes need over the UNIX socket
 * private/keyproc (keyproc_proto.h, keyproc_client.h).
 *
 * The master starts it (and restarts it when it dies, keeping the listening
 * socket, so requests wait in the backlog meanwhile). It loads the keys as
 * root, then runs unprivileged, chrooted into an empty directory and not
 * dumpable. Its loop is one accept, one read and one write path; RSA
 * signatures (a millisecond each) go to a few pool threads so that one
 * process keeps up with every worker, ECDSA ones (tens of microseconds) are
 * made on the loop.
 */
#ifndef AUTHRELAY_KEYPROC_H
#define AUTHRELAY_KEYPROC_H

struct keyproc_keys;

struct keyproc_params {
	struct keyproc_keys *keys; /* loaded (as root); freed by keyproc_main() */
	int listen_fd;             /* the listening socket private/keyproc */
	unsigned threads;          /* pool threads for RSA signatures (at least 1) */
};

/* Serve sign requests until SIGTERM. Returns the process exit status. */
int keyproc_main(const struct keyproc_params *);

#endif
