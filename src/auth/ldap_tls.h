/* SPDX-License-Identifier: ISC */
/*
 * ldap_tls.h - TLS to a directory beyond what libldap does by itself, for
 * the connection pool's setup thread (ldap_conn.c):
 *
 *   tls_name   libldap checks the certificate against the URI's host name.
 *              To check another name (a DC reached by address, or by a name
 *              its certificate lacks), the pool connects the TCP socket
 *              itself (ldap_tls_tcp_connect) and hands it to libldap with a
 *              URI whose host is that name (ldap_init_fd): the handshake,
 *              SNI and the name check then all use it, with libldap's own
 *              verification whatever its TLS library.
 *   diagnosis  when libldap refuses a certificate it says "(unknown error
 *              code)" or "Connect error". ldap_tls_diagnose() tells why
 *              from the certificate itself (fetched again over a second,
 *              unverified handshake): unknown issuer, expired, not yet
 *              valid, or a name mismatch with the name expected.
 *
 * Both block and are meant for the setup thread only.
 */
#ifndef AUTHRELAY_LDAP_TLS_H
#define AUTHRELAY_LDAP_TLS_H

#include <stddef.h>
#include "../lib/common.h"

/* A TCP connection to host:port (any of its addresses, in order), within
 * timeout_s seconds for each. Returns a blocking socket, or -1 with a
 * message in error. */
int ldap_tls_tcp_connect(const char *host, int port, unsigned timeout_s, char *error, size_t size);

/* Why the certificate der (DER, the server's own) fails verification for
 * expected_name (a host name or an IP address) against the CAs in ca_file
 * (NULL: the system's). Writes every cause found, "; "-separated, to out;
 * returns the number found (0: none, out then says so). */
int ldap_tls_diagnose(const unsigned char *der, size_t len, const char *expected_name,
                      const char *ca_file, char *out, size_t size);

#endif
