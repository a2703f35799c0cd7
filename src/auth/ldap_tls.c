/* SPDX-License-Identifier: ISC */
/*
 * ldap_tls.c - connecting for tls_name, and telling why a directory's
 * certificate was refused (see ldap_tls.h).
 *
 * The diagnosis never decides anything: libldap (GnuTLS on Debian, OpenSSL
 * elsewhere) has already refused the certificate. It re-checks the
 * certificate with OpenSSL, which the gateway links anyway, to name the
 * cause: the validity dates first, then the name (RFC 6125: the subject
 * alternative names, or the CN when there is none), then the chain to the
 * configured CAs. Only the server's own certificate is at hand (libldap's
 * LDAP_OPT_X_TLS_PEERCERT), so an issuer is looked for in ca_file alone:
 * the message names it, which is what an admin needs to fix ca_file.
 */
#include "ldap_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
connect_one(const struct addrinfo *ai, unsigned timeout_s, int *err_r)
{
	struct pollfd pfd;
	socklen_t len = sizeof(*err_r);
	int fd, flags, r;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*err_r = errno;
		return -1;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		goto fail_errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto fail_errno;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		do
			r = poll(&pfd, 1, (int)(timeout_s * 1000));
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			*err_r = ETIMEDOUT;
			goto fail;
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, err_r, &len) < 0)
			goto fail_errno;
		if (*err_r != 0)
			goto fail;
	}
	/* libldap takes a blocking socket and applies its own timeouts. */
	if (fcntl(fd, F_SETFL, flags) < 0)
		goto fail_errno;
	return fd;
fail_errno:
	*err_r = errno;
fail:
	close(fd);
	return -1;
}

int
ldap_tls_tcp_connect(const char *host, int port, unsigned timeout_s, char *error, size_t size)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	char service[16];
	int rc, fd = -1, err = 0;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		snprintf(error, size, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = connect_one(ai, timeout_s, &err);
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(error, size, "cannot connect to %s port %d: %s", host, port,
		         strerror(err != 0 ? err : EHOSTUNREACH));
	return fd;
}

/* ------------------------------------------------------------ diagnosis */

struct out {
	char *p;
	size_t size, used;
	int n;
};

static void AR_PRINTF(2, 3) cause(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (o->used + 3 >= o->size)
		return;
	if (o->n++ > 0) {
		memcpy(o->p + o->used, "; ", 3);
		o->used += 2;
	}
	va_start(ap, fmt);
	w = vsnprintf(o->p + o->used, o->size - o->used, fmt, ap);
	va_end(ap);
	if (w > 0)
		o->used += (size_t)w < o->size - o->used ? (size_t)w : o->size - o->used - 1;
}

static void
asn1_time_text(const ASN1_TIME *t, char *buf, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;

	buf[0] = '\0';
	if (b == NULL)
		return;
	if (ASN1_TIME_print(b, t) == 1)
		n = BIO_read(b, buf, (int)size - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

static void
name_text(const X509_NAME *name, char *buf, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;

	buf[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(b, buf, (int)size - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

/* The names the certificate is for: its DNS and IP subject alternative
 * names, else its CN. */
static void
cert_names(X509 *x, char *buf, size_t size)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		char ip[64] = "";
		const char *v = NULL;

		if (g->type == GEN_DNS) {
			v = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
		} else if (g->type == GEN_IPADD) {
			const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
			int alen = ASN1_STRING_length(g->d.iPAddress);
			if (alen == 4)
				snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
			else
				snprintf(ip, sizeof(ip), "an IPv6 address");
			v = ip;
		}
		if (v != NULL && used + strlen(v) + 3 < size)
			used += (size_t)snprintf(buf + used, size - used, "%s%s",
			                         used > 0 ? ", " : "", v);
	}
	if (sans != NULL)
		GENERAL_NAMES_free(sans);
	if (used == 0) {
		int idx = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, -1);
		X509_NAME_ENTRY *e =
		        idx >= 0 ? X509_NAME_get_entry(X509_get_subject_name(x), idx) : NULL;
		if (e != NULL)
			snprintf(buf, size, "CN=%s",
			         (const char *)ASN1_STRING_get0_data(X509_NAME_ENTRY_get_data(e)));
		else
			snprintf(buf, size, "no name at all");
	}
}

static bool
is_ip(const char *name)
{
	unsigned char tmp[16];

	return inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
}

/* The chain, checked without dates or names (those are reported apart). */
static void
check_chain(struct out *o, X509 *x, const char *ca_file)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char issuer[512];
	int err;

	if (store == NULL || ctx == NULL)
		goto done;
	if (ca_file != NULL ? X509_STORE_load_file(store, ca_file) != 1
	                    : X509_STORE_set_default_paths(store) != 1) {
		cause(o, "ca_file %s holds no usable CA certificate",
		      ca_file != NULL ? ca_file : "");
		goto done;
	}
	if (X509_STORE_CTX_init(ctx, store, x, NULL) != 1)
		goto done;
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
	if (X509_verify_cert(ctx) == 1)
		goto done;
	err = X509_STORE_CTX_get_error(ctx);
	name_text(X509_get_issuer_name(x), issuer, sizeof(issuer));
	switch (err) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		cause(o,
		      "unknown issuer: the certificate was issued by \"%s\", which is not among "
		      "the CAs of %s",
		      issuer, ca_file != NULL ? ca_file : "the system (set ca_file)");
		break;
	default:
		cause(o, "certificate chain: %s (issuer \"%s\")",
		      X509_verify_cert_error_string(err), issuer);
		break;
	}
done:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
}

int
ldap_tls_diagnose(const unsigned char *der, size_t len, const char *expected_name,
                  const char *ca_file, char *out, size_t size)
{
	struct out o = {.p = out, .size = size};
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	char when[64], names[512];

	out[0] = '\0';
	if (x == NULL) {
		snprintf(out, size, "the server's certificate cannot be read");
		return 0;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		asn1_time_text(X509_get0_notAfter(x), when, sizeof(when));
		cause(&o, "expired: the certificate was valid until %s", when);
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
		asn1_time_text(X509_get0_notBefore(x), when, sizeof(when));
		cause(&o, "not yet valid: the certificate is valid from %s", when);
	}
	if (expected_name != NULL && *expected_name != '\0' &&
	    (is_ip(expected_name) ? X509_check_ip_asc(x, expected_name, 0)
	                          : X509_check_host(x, expected_name, 0, 0, NULL)) != 1) {
		cert_names(x, names, sizeof(names));
		cause(&o,
		      "name mismatch: the certificate is for %s, not \"%s\" (set tls_name to the "
		      "name it carries, or use that name in uri)",
		      names, expected_name);
	}
	check_chain(&o, x, ca_file);
	X509_free(x);
	if (o.n == 0)
		snprintf(out, size, "no cause found in the certificate itself");
	return o.n;
}
