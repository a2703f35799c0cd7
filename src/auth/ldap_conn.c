/* SPDX-License-Identifier: ISC */
/*
 * ldap_conn.c - the connection pool of one directory (see ldap_conn.h).
 *
 * Why connections are opened on a thread: libldap cannot do a TLS handshake
 * without blocking. Its "asynchronous" connect (LDAP_OPT_CONNECT_ASYNC)
 * covers the TCP connect only; ldap_start_tls_s() and ldaps:// handshakes
 * then poll() on the socket until done, up to the network timeout. So the
 * whole setup of a connection (resolve, connect, StartTLS or the ldaps://
 * handshake, the service account's bind) runs on a one-thread pool of its
 * own, each step bounded by network_timeout (LDAP_OPT_NETWORK_TIMEOUT) or
 * timeout (LDAP_OPT_TIMEOUT). Its own thread, not the auth process's hash
 * pool: a directory that swallows packets must not hold the threads that
 * check users-file hashes. At most one setup per directory runs at a time.
 *
 * The setup makes the TCP connection itself (ldap_tls.c) and hands the
 * socket to libldap (ldap_init_fd) with a URI naming tls_name, if set: a
 * port that refuses or stays silent is told apart from a TLS failure, and
 * libldap verifies the certificate for that name. A certificate libldap
 * refuses is fetched again, unverified, to say why (unknown issuer,
 * expired, name mismatch). With Active Directory and no netbios_domain,
 * the first search connection also reads the forest's domains (crossRef
 * entries) for down-level logins.
 *
 * Once set up, the socket is made non-blocking and handed to the loop: a
 * libevent read event per connection, ldap_search_ext()/ldap_sasl_bind()
 * to send (a request is a few hundred bytes: it fits in the socket buffer),
 * and ldap_result() with a zero timeout to read whatever has arrived. A
 * read-ahead layer under libldap (liblber's own, the one libldap puts under
 * UDP) takes a burst of replies in one read(2): liblber alone reads each
 * message in two. libldap also poll()s before every read it was not told
 * is buffered, so conn_on_read() stops asking once the read-ahead buffer is
 * empty and lets the level-triggered event call it again. A
 * timer per operation enforces the directory's timeout; a connection that
 * has said nothing since an operation that timed out was sent is taken for
 * dead (a frozen server) and closed.
 *
 * A connection whose socket failed is never used again: libldap would
 * silently reconnect (blocking) on the next request. LDAP_OPT_KEEPCONN keeps
 * it from dropping the socket under us meanwhile.
 *
 * Failover: the URIs are tried in the configured order, skipping those that
 * failed recently (1 s back-off doubling to 30 s, per URI). When every URI
 * fails, the whole directory is "down" for the same kind of back-off: waiting
 * and new requests fail at once with LDAP_SERVER_DOWN instead of piling up.
 *
 * Freeing: callbacks that report a failure found while sending are deferred
 * through the object's own event, so no callback runs inside the call that
 * asked for it; dead connections are freed by a deferred reaper once no one
 * holds them, never inside their own read callback.
 */
#include "ldap_conn.h"
#include "ldap_ad.h"
#include "ldap_config.h"
#include "ldap_tls.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"
#include "../metrics/metric.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ldap.h>
#include <openldap.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

/* Searches pipelined on one search connection before another is opened. */
#define LDAP_CONN_MAX_PIPELINE 32
#define LDAP_CONN_BACKOFF_MIN_MS 1000
#define LDAP_CONN_BACKOFF_MAX_MS 30000

enum conn_state { CONN_READY, CONN_DEAD };

struct ldap_conn_op {
	TAILQ_ENTRY(ldap_conn_op) entry; /* conn->ops, then pool->finished_ops */
	struct ldap_conn_pool *pool;
	struct ldap_conn *conn; /* NULL once finished */
	int msgid;
	bool is_bind;
	bool finished;
	unsigned max_entries;
	struct timespec sent;
	struct event *ev; /* timeout, then deferred delivery */
	struct ldap_conn_result res;
	char *error;
	char *uri;
	ldap_conn_done_cb *cb;
	void *arg;
};
TAILQ_HEAD(op_list, ldap_conn_op);

struct ldap_conn {
	TAILQ_ENTRY(ldap_conn) entry;
	struct ldap_conn_pool *pool;
	enum ldap_conn_role role;
	enum conn_state state;
	LDAP *ld;
	Sockbuf *sb;      /* ld's socket, under the read-ahead layer */
	struct event *ev; /* read */
	char *uri;
	unsigned holders;
	struct op_list ops;
	unsigned n_ops;
	struct timespec last_rx;
};

struct ldap_conn_wait {
	TAILQ_ENTRY(ldap_conn_wait) entry;     /* pool->waits[role] while queued */
	TAILQ_ENTRY(ldap_conn_wait) all_entry; /* pool->all_waits */
	struct ldap_conn_pool *pool;
	enum ldap_conn_role role;
	bool queued;
	bool finished;
	struct event *ev; /* timeout, then deferred delivery */
	struct ldap_conn *granted;
	int rc;
	char *error;
	ldap_conn_acquire_cb *cb;
	void *arg;
};
TAILQ_HEAD(wait_list, ldap_conn_wait);

/* One connection attempt, run on the setup thread. Inputs are copies, so
 * nothing the thread reads changes under it. */
struct conn_setup {
	struct ldap_conn_pool *pool;
	enum ldap_conn_role role;
	char **uris;
	size_t n_uris;
	size_t *order;
	bool starttls, tls_verify;
	char *ca_file;
	char *tls_name; /* NULL: the URI's host */
	char *bind_dn;  /* NULL: no bind */
	char *bind_password;
	unsigned network_timeout, timeout;
	bool want_domains; /* AD: read the forest's domains after the bind */
	atomic_bool *stopping;
	/* Results. */
	LDAP *ld;
	size_t uri_index;
	int rc;
	bool *uri_failed;
	struct ldap_conn_domain *domains;
	size_t n_domains;
	bool domains_read;
	char error[1024];
	char trace[4096];
};

struct ldap_conn_pool {
	struct event_base *base;
	const struct ldap_dir_cfg *dir;
	char *bind_password;
	struct threadpool *setup_pool;
	struct conn_setup *setup; /* in progress, or NULL */
	atomic_bool stopping;
	TAILQ_HEAD(, ldap_conn) conns;
	unsigned n_conns[2];   /* by role, READY ones */
	unsigned max_conns[2]; /* by role */
	struct wait_list waits[2];
	struct event *reaper;
	struct timespec down_until;
	unsigned down_backoff_ms;
	char down_error[1024];
	struct timespec *uri_down_until;
	unsigned *uri_backoff_ms;
	struct wait_list all_waits;  /* every live wait (for free) */
	struct op_list finished_ops; /* delivered on their event */
	ldap_conn_trace_cb *trace;
	void *trace_arg;
	struct ldap_conn_domain *domains; /* AD: read once from the directory */
	size_t n_domains;
	bool domains_known;
};

static void pool_dispatch(struct ldap_conn_pool *pool);
static void wait_finish(struct ldap_conn_wait *w, struct ldap_conn *conn, int rc,
                        const char *error);
static void conn_fail(struct ldap_conn *conn, int rc, const char *error);

static const char *const role_names[] = {"search", "bind"};

static void AR_PRINTF(2, 3) pool_trace(struct ldap_conn_pool *pool, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (pool->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pool->trace(pool->trace_arg, line);
}

static struct timespec
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

static struct timespec
add_ms(struct timespec t, unsigned ms)
{
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

static bool
before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* t in ms, the clock of the metrics' down-until times. */
static uint64_t
ts_ms(struct timespec t)
{
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static long
ms_until(struct timespec t)
{
	struct timespec n = now_mono();

	return (long)(t.tv_sec - n.tv_sec) * 1000 + (t.tv_nsec - n.tv_nsec) / 1000000;
}

static unsigned
next_backoff(unsigned cur)
{
	if (cur < LDAP_CONN_BACKOFF_MIN_MS)
		return LDAP_CONN_BACKOFF_MIN_MS;
	return cur * 2 > LDAP_CONN_BACKOFF_MAX_MS ? LDAP_CONN_BACKOFF_MAX_MS : cur * 2;
}

static struct timeval
op_timeval(const struct ldap_conn_pool *pool)
{
	struct timeval tv = {.tv_sec = pool->dir->timeout, .tv_usec = 0};

	return tv;
}

/* ------------------------------------------------------------ setup thread */

static void AR_PRINTF(2, 3) setup_note(struct conn_setup *s, const char *fmt, ...)
{
	size_t used = strlen(s->trace);
	va_list ap;

	if (used + 2 >= sizeof(s->trace))
		return;
	va_start(ap, fmt);
	vsnprintf(s->trace + used, sizeof(s->trace) - used - 1, fmt, ap);
	va_end(ap);
	used = strlen(s->trace);
	s->trace[used] = '\n';
	s->trace[used + 1] = '\0';
}

static const char *
diag(LDAP *ld, int rc, char *buf, size_t size)
{
	char *msg = NULL;

	if (ld != NULL)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg);
	snprintf(buf, size, "%s%s%s%s", ldap_err2string(rc),
	         msg != NULL && *msg != '\0' ? " (" : "", msg != NULL && *msg != '\0' ? msg : "",
	         msg != NULL && *msg != '\0' ? ")" : "");
	ldap_memfree(msg);
	return buf;
}

/* Options on a fresh handle. Per-handle TLS settings need a context of
 * their own (LDAP_OPT_X_TLS_NEWCTX), else the global one would be used. */
static int
setup_options(struct conn_setup *s, LDAP *ld, int reqcert)
{
	struct timeval net = {.tv_sec = s->network_timeout}, op = {.tv_sec = s->timeout};
	int version = LDAP_VERSION3;
	int zero = 0;

	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &net) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &op) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_KEEPCONN, LDAP_OPT_ON) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &reqcert) != LDAP_OPT_SUCCESS ||
	    (s->ca_file != NULL &&
	     ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, s->ca_file) != LDAP_OPT_SUCCESS) ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero) != LDAP_OPT_SUCCESS)
		return -1;
	return 0;
}

/* Where one URI leads: the address to connect to, the name its
 * certificate must carry. */
struct setup_target {
	bool ldapi, ldaps;
	char host[256]; /* connect here */
	int port;
	char name[256]; /* the certificate's name (tls_name, else host) */
	char url[600];  /* for libldap: scheme://name:port/ */
};

static int
setup_target(struct conn_setup *s, const char *uri, struct setup_target *t)
{
	LDAPURLDesc *lud = NULL;

	memset(t, 0, sizeof(*t));
	if (ldap_url_parse(uri, &lud) != LDAP_URL_SUCCESS)
		return -1;
	t->ldapi = strcmp(lud->lud_scheme, "ldapi") == 0;
	t->ldaps = strcmp(lud->lud_scheme, "ldaps") == 0;
	snprintf(t->host, sizeof(t->host), "%s",
	         lud->lud_host != NULL && *lud->lud_host != '\0' ? lud->lud_host : "localhost");
	t->port = lud->lud_port > 0 ? lud->lud_port : t->ldaps ? LDAPS_PORT : LDAP_PORT;
	snprintf(t->name, sizeof(t->name), "%s", s->tls_name != NULL ? s->tls_name : t->host);
	snprintf(t->url, sizeof(t->url), "%s://%s%s%s:%d/", lud->lud_scheme,
	         strchr(t->name, ':') != NULL ? "[" : "", t->name,
	         strchr(t->name, ':') != NULL ? "]" : "", t->port);
	ldap_free_urldesc(lud);
	return 0;
}

/* A handle on a TCP connection this thread made: a refused or silent
 * port is told apart from a TLS failure, and libldap checks the
 * certificate against t->name (tls_name) rather than the address.
 * ldapi:// is left to libldap. */
static int
setup_open(struct conn_setup *s, const char *uri, const struct setup_target *t, int reqcert,
           LDAP **ld_r, char *err, size_t errsize)
{
	LDAP *ld = NULL;
	int rc, fd;

	*ld_r = NULL;
	if (t->ldapi) {
		rc = ldap_initialize(&ld, uri);
		if (rc != LDAP_SUCCESS) {
			snprintf(err, errsize, "%s", ldap_err2string(rc));
			return rc;
		}
	} else {
		fd = ldap_tls_tcp_connect(t->host, t->port, s->network_timeout, err, errsize);
		if (fd < 0)
			return LDAP_SERVER_DOWN;
		rc = ldap_init_fd(fd, LDAP_PROTO_TCP, t->url, &ld);
		if (rc != LDAP_SUCCESS) {
			close(fd);
			snprintf(err, errsize, "%s", ldap_err2string(rc));
			return rc;
		}
	}
	if (setup_options(s, ld, reqcert) < 0) {
		ldap_unbind_ext(ld, NULL, NULL);
		snprintf(err, errsize,
		         "cannot set the connection options (TLS settings, ca_file?)");
		return LDAP_LOCAL_ERROR;
	}
	*ld_r = ld;
	return LDAP_SUCCESS;
}

/* TLS on an open handle: StartTLS (RFC 4513 3: before any bind) or the
 * ldaps:// handshake; for ldap:// without StartTLS, the connection (made
 * now for ldapi://). */
static int
setup_secure(struct conn_setup *s, LDAP *ld, const struct setup_target *t)
{
	if (s->starttls)
		return ldap_start_tls_s(ld, NULL, NULL);
	if (t->ldaps)
		return ldap_install_tls(ld);
	return ldap_connect(ld);
}

/* libldap refused the certificate: fetch it over a second, unverified
 * handshake and say why (ldap_tls.h). The result never decides anything. */
static void
setup_diagnose(struct conn_setup *s, const char *uri, const struct setup_target *t, char *out,
               size_t size)
{
	struct berval der = {0, NULL};
	char err[256];
	LDAP *ld = NULL;

	out[0] = '\0';
	if (setup_open(s, uri, t, LDAP_OPT_X_TLS_NEVER, &ld, err, sizeof(err)) != LDAP_SUCCESS)
		return;
	if (setup_secure(s, ld, t) == LDAP_SUCCESS &&
	    ldap_get_option(ld, LDAP_OPT_X_TLS_PEERCERT, &der) == LDAP_OPT_SUCCESS &&
	    der.bv_val != NULL) {
		ldap_tls_diagnose((const unsigned char *)der.bv_val, der.bv_len, t->name,
		                  s->ca_file, out, size);
		ber_memfree(der.bv_val);
	}
	ldap_unbind_ext(ld, NULL, NULL);
}

/* AD: the forest's domains (crossRef entries in the configuration
 * partition: NetBIOS name and naming context), for down-level logins
 * CORP\ann when netbios_domain is not set. Read as the service account. */
static void
setup_read_domains(struct conn_setup *s, LDAP *ld, const char *uri)
{
	static char *root_attrs[] = {"configurationNamingContext", NULL};
	static char *xref_attrs[] = {"nETBIOSName", "nCName", NULL};
	struct timeval tv = {.tv_sec = s->timeout};
	LDAPMessage *res = NULL, *e;
	struct berval **vals = NULL;
	char base[600], buf[400];
	int rc;

	rc = ldap_search_ext_s(ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", root_attrs, 0, NULL,
	                       NULL, &tv, 1, &res);
	e = rc == LDAP_SUCCESS ? ldap_first_entry(ld, res) : NULL;
	if (e != NULL)
		vals = ldap_get_values_len(ld, e, "configurationNamingContext");
	if (vals == NULL || vals[0] == NULL || vals[0]->bv_len > 500) {
		setup_note(s,
		           "%s: cannot read the rootDSE's configurationNamingContext (%s): "
		           "down-level logins (DOMAIN\\user) need netbios_domain",
		           uri, rc == LDAP_SUCCESS ? "none" : diag(ld, rc, buf, sizeof(buf)));
		goto done;
	}
	snprintf(base, sizeof(base), "CN=Partitions,%.*s", (int)vals[0]->bv_len, vals[0]->bv_val);
	ldap_value_free_len(vals);
	vals = NULL;
	ldap_msgfree(res);
	res = NULL;
	rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_ONELEVEL,
	                       "(&(objectClass=crossRef)(nETBIOSName=*)(nCName=*))", xref_attrs, 0,
	                       NULL, NULL, &tv, 100, &res);
	if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
		setup_note(s, "%s: cannot read the domains under %s: %s", uri, base,
		           diag(ld, rc, buf, sizeof(buf)));
		goto done;
	}
	for (e = ldap_first_entry(ld, res); e != NULL; e = ldap_next_entry(ld, e)) {
		struct berval **nb = ldap_get_values_len(ld, e, "nETBIOSName");
		struct berval **nc = ldap_get_values_len(ld, e, "nCName");
		if (nb != NULL && nb[0] != NULL && nc != NULL && nc[0] != NULL &&
		    nb[0]->bv_len <= LDAP_AD_NETBIOS_MAX) {
			struct ldap_conn_domain *d;
			s->domains = xrealloc(s->domains, (s->n_domains + 1) * sizeof(*s->domains));
			d = &s->domains[s->n_domains++];
			d->netbios = xstrndup(nb[0]->bv_val, nb[0]->bv_len);
			d->dn = xstrndup(nc[0]->bv_val, nc[0]->bv_len);
			setup_note(s, "%s: domain %s is %s", uri, d->netbios, d->dn);
		}
		ldap_value_free_len(nb);
		ldap_value_free_len(nc);
	}
	s->domains_read = true;
	if (s->n_domains == 0)
		setup_note(s, "%s: no domain found under %s", uri, base);
done:
	ldap_value_free_len(vals);
	ldap_msgfree(res);
}

/* The service bind failed: say what AD said, in words. */
static void
setup_bind_error(struct conn_setup *s, LDAP *ld, const char *uri, int rc)
{
	char buf[600];
	int sub;

	diag(ld, rc, buf, sizeof(buf));
	sub = rc == LDAP_INVALID_CREDENTIALS ? ldap_ad_bind_subcode(buf) : -1;
	if (sub >= 0)
		snprintf(s->error, sizeof(s->error),
		         "%s: service bind as \"%s\": %s; Active Directory says: %s (data %x): "
		         "check "
		         "bind_dn and bind_password_file",
		         uri, s->bind_dn, buf, ldap_ad_describe(sub), (unsigned)sub);
	else if (rc == LDAP_INVALID_CREDENTIALS)
		snprintf(s->error, sizeof(s->error),
		         "%s: service bind as \"%s\": %s: check bind_dn and bind_password_file",
		         uri, s->bind_dn, buf);
	else
		snprintf(s->error, sizeof(s->error), "%s: service bind as \"%s\": %s", uri,
		         s->bind_dn, buf);
}

static int
setup_one(struct conn_setup *s, const char *uri, LDAP **ld_r)
{
	struct setup_target t;
	char buf[600], why[700];
	LDAP *ld = NULL;
	int rc, fd = -1;

	if (setup_target(s, uri, &t) < 0) {
		snprintf(s->error, sizeof(s->error), "%s: not an LDAP URL", uri);
		return LDAP_PARAM_ERROR;
	}
	rc = setup_open(s, uri, &t, s->tls_verify ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER,
	                &ld, buf, sizeof(buf));
	if (rc != LDAP_SUCCESS) {
		snprintf(s->error, sizeof(s->error), "%s: connect: %s", uri, buf);
		setup_note(s, "%s", s->error);
		return rc;
	}
	rc = setup_secure(s, ld, &t);
	if (rc != LDAP_SUCCESS) {
		const char *step = s->starttls ? "StartTLS" : t.ldaps ? "TLS" : "connect";
		diag(ld, rc, buf, sizeof(buf));
		why[0] = '\0';
		/* LDAP_CONNECT_ERROR: the TLS handshake or the certificate check
		 * failed (a refused StartTLS is the server's own result code). */
		if (rc == LDAP_CONNECT_ERROR && (s->starttls || t.ldaps) && s->tls_verify)
			setup_diagnose(s, uri, &t, why, sizeof(why));
		if (why[0] != '\0')
			snprintf(s->error, sizeof(s->error),
			         "%s: %s: certificate refused for \"%s\": %s", uri, step, t.name,
			         why);
		else
			snprintf(s->error, sizeof(s->error), "%s: %s: %s", uri, step, buf);
		goto fail;
	}
	if (s->starttls || t.ldaps)
		setup_note(s, "%s: connected, %s done%s%s%s", uri, s->starttls ? "StartTLS" : "TLS",
		           s->tls_verify ? ", certificate verified for \""
		                         : ", certificate NOT checked",
		           s->tls_verify ? t.name : "", s->tls_verify ? "\"" : "");
	else
		setup_note(s, "%s: connected", uri);
	if (s->bind_dn != NULL) {
		struct berval cred = {.bv_val = s->bind_password,
		                      .bv_len = strlen(s->bind_password)};
		rc = ldap_sasl_bind_s(ld, s->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			setup_bind_error(s, ld, uri, rc);
			goto fail;
		}
		setup_note(s, "%s: bound as the service account \"%s\"", uri, s->bind_dn);
		if (s->want_domains && !s->domains_read)
			setup_read_domains(s, ld, uri);
	}
	if (ldap_get_option(ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = LDAP_LOCAL_ERROR;
		snprintf(s->error, sizeof(s->error), "%s: no usable socket", uri);
		goto fail;
	}
	*ld_r = ld;
	return LDAP_SUCCESS;
fail:
	setup_note(s, "%s", s->error);
	ldap_unbind_ext(ld, NULL, NULL);
	return rc;
}

/* Setup thread: try the URIs in the order the loop chose. */
static void
setup_work(void *arg)
{
	struct conn_setup *s = arg;

	s->rc = LDAP_SERVER_DOWN;
	for (size_t k = 0; k < s->n_uris; k++) {
		size_t i = s->order[k];
		if (atomic_load(s->stopping))
			break;
		s->rc = setup_one(s, s->uris[i], &s->ld);
		if (s->rc == LDAP_SUCCESS) {
			s->uri_index = i;
			return;
		}
		s->uri_failed[i] = true;
	}
}

static void
domains_free(struct ldap_conn_domain *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(d[i].netbios);
		free(d[i].dn);
	}
	free(d);
}

static void
setup_free(struct conn_setup *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n_uris; i++)
		free(s->uris[i]);
	free(s->uris);
	free(s->order);
	free(s->uri_failed);
	free(s->ca_file);
	free(s->tls_name);
	free(s->bind_dn);
	free_secret(s->bind_password);
	domains_free(s->domains, s->n_domains);
	if (s->ld != NULL)
		ldap_unbind_ext(s->ld, NULL, NULL);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

/* ------------------------------------------------------------ connections */

static void conn_on_read(evutil_socket_t fd, short what, void *arg);

static void
emit_trace_lines(struct ldap_conn_pool *pool, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		pool_trace(pool, "%.*s", (int)n, p);
		p += n;
		if (*p == '\n')
			p++;
	}
}

static void
setup_done(void *arg)
{
	struct conn_setup *s = arg;
	struct ldap_conn_pool *pool = s->pool;
	const struct ldap_dir_cfg *dir = pool->dir;
	struct ldap_conn *conn;
	struct ldap_conn_wait *w;
	int fd = -1;

	pool->setup = NULL;
	emit_trace_lines(pool, s->trace);
	if (s->domains_read && !pool->domains_known) {
		pool->domains = s->domains;
		pool->n_domains = s->n_domains;
		pool->domains_known = true;
		s->domains = NULL;
		s->n_domains = 0;
	}
	for (size_t i = 0; i < s->n_uris; i++) {
		if (s->uri_failed[i]) {
			pool->uri_backoff_ms[i] = next_backoff(pool->uri_backoff_ms[i]);
			pool->uri_down_until[i] = add_ms(now_mono(), pool->uri_backoff_ms[i]);
		}
	}
	if (s->rc != LDAP_SUCCESS) {
		pool->down_backoff_ms = next_backoff(pool->down_backoff_ms);
		pool->down_until = add_ms(now_mono(), pool->down_backoff_ms);
		snprintf(pool->down_error, sizeof(pool->down_error), "%s", s->error);
		metrics_set(M_LDAP_UP, ts_ms(pool->down_until), metric_directory(dir->name));
		log_err("ldap dir=%s: cannot connect (%s); directory unavailable, next try in %u "
		        "ms",
		        dir->name, s->error, pool->down_backoff_ms);
		/* Those who waited for this very attempt get its own words;
		 * later ones hear that the directory is down (pool_dispatch). */
		while ((w = TAILQ_FIRST(&pool->waits[s->role])) != NULL)
			wait_finish(w, NULL, LDAP_SERVER_DOWN, s->error);
		setup_free(s);
		pool_dispatch(pool);
		return;
	}
	pool->down_backoff_ms = 0;
	metrics_set(M_LDAP_UP, 0, metric_directory(dir->name));
	pool->uri_backoff_ms[s->uri_index] = 0;
	pool->uri_down_until[s->uri_index] = (struct timespec){0, 0};

	conn = xcalloc(1, sizeof(*conn));
	conn->pool = pool;
	conn->role = s->role;
	conn->state = CONN_READY;
	conn->ld = s->ld;
	s->ld = NULL;
	conn->uri = xstrdup(s->uris[s->uri_index]);
	conn->last_rx = now_mono();
	TAILQ_INIT(&conn->ops);
	ldap_get_option(conn->ld, LDAP_OPT_DESC, &fd);
	/* Below the TLS layer, if any (LBER_SBIOD_LEVEL_TRANSPORT). */
	if (ldap_get_option(conn->ld, LDAP_OPT_SOCKBUF, &conn->sb) != LDAP_OPT_SUCCESS ||
	    conn->sb == NULL ||
	    ber_sockbuf_add_io(conn->sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_PROVIDER,
	                       NULL) != 0)
		conn->sb = NULL; /* still works, one poll() and two reads a reply */
	conn->ev = event_new(pool->base, fd, EV_READ | EV_PERSIST, conn_on_read, conn);
	if (conn->ev == NULL || event_add(conn->ev, NULL) < 0)
		fatal("ldap: cannot watch a connection");
	TAILQ_INSERT_TAIL(&pool->conns, conn, entry);
	pool->n_conns[conn->role]++;
	log_info("ldap dir=%s connected uri=%s role=%s", dir->name, conn->uri,
	         role_names[conn->role]);
	setup_free(s);
	pool_dispatch(pool);
}

/* Start a setup of role, unless one is running. */
static void
setup_start(struct ldap_conn_pool *pool, enum ldap_conn_role role)
{
	const struct ldap_dir_cfg *dir = pool->dir;
	struct conn_setup *s;
	struct timespec now = now_mono();
	size_t k = 0;

	if (pool->setup != NULL)
		return;
	s = xcalloc(1, sizeof(*s));
	s->pool = pool;
	s->role = role;
	s->n_uris = dir->n_uris;
	s->uris = xcalloc(dir->n_uris, sizeof(*s->uris));
	s->order = xcalloc(dir->n_uris, sizeof(*s->order));
	s->uri_failed = xcalloc(dir->n_uris, sizeof(*s->uri_failed));
	for (size_t i = 0; i < dir->n_uris; i++)
		s->uris[i] = xstrdup(dir->uris[i]);
	/* URIs that did not fail lately first, in config order; then the rest. */
	for (size_t i = 0; i < dir->n_uris; i++)
		if (!before(now, pool->uri_down_until[i]))
			s->order[k++] = i;
	for (size_t i = 0; i < dir->n_uris; i++)
		if (before(now, pool->uri_down_until[i]))
			s->order[k++] = i;
	s->starttls = dir->starttls;
	s->tls_verify = dir->tls_verify;
	s->ca_file = dir->ca_file != NULL ? xstrdup(dir->ca_file) : NULL;
	s->tls_name = dir->tls_name != NULL ? xstrdup(dir->tls_name) : NULL;
	if (role == LDAP_CONN_SEARCH && dir->bind_dn != NULL && pool->bind_password != NULL) {
		s->bind_dn = xstrdup(dir->bind_dn);
		s->bind_password = xstrdup(pool->bind_password);
		s->want_domains = (dir->type == LDAP_TYPE_AD || dir->type == LDAP_TYPE_GC) &&
		                  dir->netbios_domain == NULL && !pool->domains_known;
	}
	s->network_timeout = dir->network_timeout;
	s->timeout = dir->timeout;
	s->stopping = &pool->stopping;
	pool->setup = s;
	pool_trace(pool, "opening a %s connection (uri order: %s%s)", role_names[role],
	           dir->uris[s->order[0]], dir->n_uris > 1 ? ", then the others" : "");
	threadpool_submit(pool->setup_pool, setup_work, setup_done, s);
}

static void
reaper_run(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_conn_pool *pool = arg;
	struct ldap_conn *conn, *next;

	for (conn = TAILQ_FIRST(&pool->conns); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		if (conn->state != CONN_DEAD || conn->holders > 0 || conn->n_ops > 0)
			continue;
		TAILQ_REMOVE(&pool->conns, conn, entry);
		free(conn->uri);
		free(conn);
	}
}

/* ------------------------------------------------------------ operations */

static void
result_free(struct ldap_conn_result *res)
{
	for (size_t i = 0; i < res->n_entries; i++) {
		struct ldap_conn_entry *e = &res->entries[i];
		for (size_t a = 0; a < e->n_attrs; a++) {
			struct ldap_conn_attr *at = &e->attrs[a];
			for (size_t v = 0; v < at->n_vals; v++) {
				explicit_bzero(at->vals[v].bv_val, at->vals[v].bv_len);
				free(at->vals[v].bv_val);
			}
			free(at->vals);
			free(at->name);
		}
		free(e->attrs);
		free(e->dn);
	}
	free(res->entries);
	memset(res, 0, sizeof(*res));
}

static void
op_free(struct ldap_conn_op *op)
{
	result_free(&op->res);
	if (op->ev != NULL)
		event_free(op->ev);
	free(op->error);
	free(op->uri);
	free(op);
}

/* The op has its result: take it off its connection and deliver it on its
 * event (never inside the caller's frame). */
static void
op_finish(struct ldap_conn_op *op, int rc, const char *error)
{
	struct ldap_conn *conn = op->conn;

	if (op->finished)
		return;
	op->finished = true;
	op->res.rc = rc;
	if (error != NULL) {
		free(op->error);
		op->error = xstrdup(error);
	}
	if (conn != NULL) {
		TAILQ_REMOVE(&conn->ops, op, entry);
		conn->n_ops--;
		op->conn = NULL;
		if (conn->state == CONN_DEAD)
			event_active(conn->pool->reaper, EV_TIMEOUT, 1);
	}
	TAILQ_INSERT_TAIL(&op->pool->finished_ops, op, entry);
	event_del(op->ev);
	event_active(op->ev, EV_TIMEOUT, 1);
}

static void op_on_event(evutil_socket_t fd, short what, void *arg);

static struct ldap_conn_op *
op_new(struct ldap_conn *conn, bool is_bind, ldap_conn_done_cb *cb, void *arg)
{
	struct ldap_conn_pool *pool = conn->pool;
	struct ldap_conn_op *op = xcalloc(1, sizeof(*op));
	struct timeval tv = op_timeval(pool);

	op->pool = pool;
	op->conn = conn;
	op->is_bind = is_bind;
	op->msgid = -1;
	op->cb = cb;
	op->arg = arg;
	op->uri = xstrdup(conn->uri);
	op->sent = now_mono();
	op->ev = event_new(pool->base, -1, 0, op_on_event, op);
	if (op->ev == NULL)
		fatal("ldap: cannot create a timer");
	TAILQ_INSERT_TAIL(&conn->ops, op, entry);
	conn->n_ops++;
	event_add(op->ev, &tv);
	return op;
}

static void
op_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_conn_op *op = arg;
	struct ldap_conn *conn = op->conn;

	if (!op->finished) {
		/* The directory's timeout. */
		bool silent = conn != NULL && !before(op->sent, conn->last_rx);
		char msg[128];

		snprintf(msg, sizeof(msg), "no answer within %u s", conn->pool->dir->timeout);
		if (conn->state == CONN_READY && op->msgid >= 0)
			ldap_abandon_ext(conn->ld, op->msgid, NULL, NULL);
		op_finish(op, LDAP_TIMEOUT, msg);
		/* Nothing heard since this was sent: the server is stuck. A
		 * bind abandoned midway leaves the identity unknown: close. */
		if (conn->state == CONN_READY && (silent || op->is_bind))
			conn_fail(conn, LDAP_TIMEOUT, msg);
		return;
	}
	/* Deferred delivery. */
	TAILQ_REMOVE(&op->pool->finished_ops, op, entry);
	op->res.error = op->res.rc == LDAP_SUCCESS ? NULL
	                : op->error != NULL        ? op->error
	                                           : ldap_err2string(op->res.rc);
	op->res.uri = op->uri;
	op->cb(op->arg, &op->res);
	op_free(op);
}

/* Copy an entry out of a message. */
static void
entry_take(LDAP *ld, LDAPMessage *msg, struct ldap_conn_entry *e)
{
	BerElement *ber = NULL;
	char *dn = ldap_get_dn(ld, msg);

	e->dn = xstrdup(dn != NULL ? dn : "");
	ldap_memfree(dn);
	for (char *a = ldap_first_attribute(ld, msg, &ber); a != NULL;
	     a = ldap_next_attribute(ld, msg, ber)) {
		struct berval **vals = ldap_get_values_len(ld, msg, a);
		struct ldap_conn_attr *at;
		size_t n = vals != NULL ? (size_t)ldap_count_values_len(vals) : 0;

		e->attrs = xrealloc(e->attrs, (e->n_attrs + 1) * sizeof(*e->attrs));
		at = &e->attrs[e->n_attrs++];
		at->name = xstrdup(a);
		at->n_vals = n;
		at->vals = xcalloc(n > 0 ? n : 1, sizeof(*at->vals));
		for (size_t i = 0; i < n; i++) {
			at->vals[i].bv_len = vals[i]->bv_len;
			at->vals[i].bv_val = xmemdup(vals[i]->bv_val, vals[i]->bv_len);
			explicit_bzero(vals[i]->bv_val, vals[i]->bv_len);
		}
		ldap_value_free_len(vals);
		ldap_memfree(a);
	}
	if (ber != NULL)
		ber_free(ber, 0);
}

static struct ldap_conn_op *
conn_find_op(struct ldap_conn *conn, int msgid)
{
	struct ldap_conn_op *op;

	TAILQ_FOREACH(op, &conn->ops, entry)
	{
		if (op->msgid == msgid)
			return op;
	}
	return NULL;
}

/* One message for op. */
static void
conn_handle(struct ldap_conn *conn, struct ldap_conn_op *op, LDAPMessage *msg)
{
	char *errmsg = NULL;
	char text[512];
	int rc = LDAP_OTHER;

	switch (ldap_msgtype(msg)) {
	case LDAP_RES_SEARCH_ENTRY:
		if (op->res.n_entries < op->max_entries) {
			op->res.entries = xrealloc(op->res.entries, (op->res.n_entries +
			                                             1) * sizeof(*op->res.entries));
			memset(&op->res.entries[op->res.n_entries], 0, sizeof(*op->res.entries));
			entry_take(conn->ld, msg, &op->res.entries[op->res.n_entries++]);
		} else {
			op->res.more = true;
		}
		return;
	case LDAP_RES_SEARCH_REFERENCE:
		/* Referrals are not chased (AD answers searches at a domain root
		 * with references to its DNS partitions). */
		return;
	case LDAP_RES_SEARCH_RESULT:
	case LDAP_RES_BIND:
		if (ldap_parse_result(conn->ld, msg, &rc, NULL, &errmsg, NULL, NULL, 0) !=
		    LDAP_SUCCESS)
			rc = LDAP_DECODING_ERROR;
		/* We asked for at most max_entries: more is an answer. */
		if (rc == LDAP_SIZELIMIT_EXCEEDED && op->res.n_entries >= op->max_entries) {
			op->res.more = true;
			rc = LDAP_SUCCESS;
		}
		if (rc != LDAP_SUCCESS)
			snprintf(text, sizeof(text), "%s%s%s%s", ldap_err2string(rc),
			         errmsg != NULL && *errmsg != '\0' ? " (" : "",
			         errmsg != NULL ? errmsg : "",
			         errmsg != NULL && *errmsg != '\0' ? ")" : "");
		ldap_memfree(errmsg);
		op_finish(op, rc, rc != LDAP_SUCCESS ? text : NULL);
		return;
	default:
		op_finish(op, LDAP_PROTOCOL_ERROR, "unexpected message type");
		return;
	}
}

static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_conn *conn = arg;

	for (;;) {
		struct timeval zero = {0, 0};
		LDAPMessage *msg = NULL;
		struct ldap_conn_op *op;
		int t = ldap_result(conn->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);

		if (t == 0)
			return;
		if (t < 0) {
			int err = LDAP_SERVER_DOWN;
			char buf[300];
			ldap_get_option(conn->ld, LDAP_OPT_RESULT_CODE, &err);
			conn_fail(conn, LDAP_SERVER_DOWN,
			          diag(conn->ld, err != LDAP_SUCCESS ? err : LDAP_SERVER_DOWN, buf,
			               sizeof(buf)));
			return;
		}
		conn->last_rx = now_mono();
		if (ldap_msgid(msg) == 0) {
			/* RFC 4511 4.4.1: Notice of Disconnection. */
			ldap_msgfree(msg);
			conn_fail(conn, LDAP_SERVER_DOWN, "the server closed the connection");
			return;
		}
		op = conn_find_op(conn, ldap_msgid(msg));
		if (op != NULL)
			conn_handle(conn, op, msg);
		ldap_msgfree(msg);
		/* Nothing buffered: whatever is still in the socket wakes
		 * us again, without the poll() a further ldap_result() makes. */
		if (conn->state != CONN_READY ||
		    (conn->sb != NULL && !ber_sockbuf_ctrl(conn->sb, LBER_SB_OPT_DATA_READY, NULL)))
			return;
	}
}

/* The connection is unusable: fail what is in flight, close the socket, and
 * leave the struct to the reaper once nobody holds it. */
static void
conn_fail(struct ldap_conn *conn, int rc, const char *error)
{
	struct ldap_conn_pool *pool = conn->pool;
	struct ldap_conn_op *op;
	char msg[1200];

	if (conn->state == CONN_DEAD)
		return;
	snprintf(msg, sizeof(msg), "%s: %s", conn->uri, error);
	log_warn("ldap dir=%s connection lost uri=%s role=%s: %s", pool->dir->name, conn->uri,
	         role_names[conn->role], error);
	pool_trace(pool, "%s: connection lost: %s", conn->uri, error);
	conn->state = CONN_DEAD;
	pool->n_conns[conn->role]--;
	while ((op = TAILQ_FIRST(&conn->ops)) != NULL)
		op_finish(op, rc, msg);
	event_free(conn->ev);
	conn->ev = NULL;
	ldap_unbind_ext(conn->ld, NULL, NULL);
	conn->ld = NULL;
	event_active(pool->reaper, EV_TIMEOUT, 1);
	/* Capacity freed: waiters may get a new connection. */
	pool_dispatch(pool);
}

void
ldap_conn_search(struct ldap_conn *conn, const char *base, int scope, const char *filter,
                 char *const *attrs, unsigned max_entries, ldap_conn_done_cb *cb, void *arg)
{
	struct ldap_conn_op *op = op_new(conn, false, cb, arg);
	struct timeval limit = op_timeval(conn->pool);
	char buf[300];
	int rc;

	op->max_entries = max_entries;
	if (conn->state != CONN_READY) {
		op_finish(op, LDAP_SERVER_DOWN, "connection lost");
		return;
	}
	/* The size limit makes the server stop at max_entries (then answer
	 * sizeLimitExceeded); the time limit mirrors our own timer. */
	rc = ldap_search_ext(conn->ld, base, scope, filter, (char **)attrs, 0, NULL, NULL, &limit,
	                     (int)max_entries, &op->msgid);
	if (rc != LDAP_SUCCESS) {
		op->msgid = -1;
		op_finish(op, rc, diag(conn->ld, rc, buf, sizeof(buf)));
		if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)
			conn_fail(conn, rc, buf);
	}
}

void
ldap_conn_bind(struct ldap_conn *conn, const char *dn, const char *password, size_t len,
               ldap_conn_done_cb *cb, void *arg)
{
	struct ldap_conn_op *op = op_new(conn, true, cb, arg);
	char *pw;
	struct berval cred;
	char buf[300];
	int rc;

	if (conn->state != CONN_READY) {
		op_finish(op, LDAP_SERVER_DOWN, "connection lost");
		return;
	}
	if (len == 0) {
		/* RFC 4513 5.1.2: that would be an unauthenticated bind. */
		op_finish(op, LDAP_INAPPROPRIATE_AUTH, "empty password refused");
		return;
	}
	pw = xmemdup(password, len);
	cred.bv_val = pw;
	cred.bv_len = len;
	/* libldap keeps its own encoded copy of the request until the
	 * answer; the process is not dumpable (auth_server.c). */
	rc = ldap_sasl_bind(conn->ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &op->msgid);
	explicit_bzero(pw, len);
	free(pw);
	if (rc != LDAP_SUCCESS) {
		op->msgid = -1;
		op_finish(op, rc, diag(conn->ld, rc, buf, sizeof(buf)));
		conn_fail(conn, rc, buf);
	}
}

/* ------------------------------------------------------------ acquire */

static void wait_on_event(evutil_socket_t fd, short what, void *arg);

static void
wait_finish(struct ldap_conn_wait *w, struct ldap_conn *conn, int rc, const char *error)
{
	struct ldap_conn_pool *pool = w->pool;

	if (w->queued) {
		TAILQ_REMOVE(&pool->waits[w->role], w, entry);
		w->queued = false;
	}
	w->granted = conn;
	w->rc = rc;
	if (error != NULL)
		w->error = xstrdup(error);
	if (conn != NULL)
		conn->holders++;
	w->finished = true;
	event_del(w->ev);
	event_active(w->ev, EV_TIMEOUT, 1);
}

static void
wait_free(struct ldap_conn_wait *w)
{
	if (w->queued)
		TAILQ_REMOVE(&w->pool->waits[w->role], w, entry);
	TAILQ_REMOVE(&w->pool->all_waits, w, all_entry);
	event_free(w->ev);
	free(w->error);
	free(w);
}

static void
wait_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_conn_wait *w = arg;
	struct ldap_conn_pool *pool = w->pool;
	ldap_conn_acquire_cb *cb = w->cb;
	void *cbarg = w->arg;
	struct ldap_conn *conn;
	char *error;
	int rc;

	if (!w->finished) {
		/* The directory's timeout. */
		char msg[1200];
		if (before(now_mono(), pool->down_until))
			snprintf(msg, sizeof(msg), "directory unavailable: %s", pool->down_error);
		else
			snprintf(msg, sizeof(msg), "no connection within %u s", pool->dir->timeout);
		wait_finish(w, NULL, LDAP_TIMEOUT, msg);
		return;
	}
	conn = w->granted;
	rc = w->rc;
	error = w->error;
	w->error = NULL;
	wait_free(w);
	cb(cbarg, conn, rc, error);
	free(error);
}

static struct ldap_conn *
pool_pick(struct ldap_conn_pool *pool, enum ldap_conn_role role)
{
	struct ldap_conn *conn, *best = NULL;

	TAILQ_FOREACH(conn, &pool->conns, entry)
	{
		if (conn->state != CONN_READY || conn->role != role)
			continue;
		if (role == LDAP_CONN_BIND) {
			if (conn->holders == 0)
				return conn;
			continue;
		}
		if (conn->n_ops + conn->holders < LDAP_CONN_MAX_PIPELINE &&
		    (best == NULL || conn->n_ops + conn->holders < best->n_ops + best->holders))
			best = conn;
	}
	return best;
}

static void
pool_dispatch(struct ldap_conn_pool *pool)
{
	for (int role = 0; role < 2; role++) {
		struct ldap_conn_wait *w;

		while ((w = TAILQ_FIRST(&pool->waits[role])) != NULL) {
			struct ldap_conn *conn = pool_pick(pool, (enum ldap_conn_role)role);
			if (pool->max_conns[role] == 0) {
				wait_finish(w, NULL, LDAP_PARAM_ERROR,
				            "this directory's mode opens no such connection");
				continue;
			}
			if (conn != NULL) {
				wait_finish(w, conn, LDAP_SUCCESS, NULL);
				continue;
			}
			if (before(now_mono(), pool->down_until)) {
				char msg[1200];
				snprintf(msg, sizeof(msg),
				         "directory unavailable for %ld ms more: %s",
				         ms_until(pool->down_until), pool->down_error);
				wait_finish(w, NULL, LDAP_SERVER_DOWN, msg);
				continue;
			}
			if (pool->n_conns[role] < pool->max_conns[role])
				setup_start(pool, (enum ldap_conn_role)role);
			break;
		}
	}
}

void
ldap_conn_acquire(struct ldap_conn_pool *pool, enum ldap_conn_role role, ldap_conn_acquire_cb *cb,
                  void *arg)
{
	struct ldap_conn_wait *w = xcalloc(1, sizeof(*w));
	struct timeval tv = op_timeval(pool);

	w->pool = pool;
	w->role = role;
	w->cb = cb;
	w->arg = arg;
	w->ev = event_new(pool->base, -1, 0, wait_on_event, w);
	if (w->ev == NULL)
		fatal("ldap: cannot create a timer");
	TAILQ_INSERT_TAIL(&pool->all_waits, w, all_entry);
	event_add(w->ev, &tv);
	w->queued = true;
	TAILQ_INSERT_TAIL(&pool->waits[role], w, entry);
	pool_dispatch(pool);
}

void
ldap_conn_release(struct ldap_conn *conn)
{
	struct ldap_conn_pool *pool = conn->pool;

	if (conn->holders == 0)
		fatal("ldap: connection released more often than acquired");
	conn->holders--;
	if (conn->state == CONN_DEAD)
		event_active(pool->reaper, EV_TIMEOUT, 1);
	else
		pool_dispatch(pool);
}

const char *
ldap_conn_uri(const struct ldap_conn *conn)
{
	return conn->uri;
}

bool
ldap_conn_pool_domains(const struct ldap_conn_pool *pool, const struct ldap_conn_domain **d_r,
                       size_t *n_r)
{
	*d_r = pool->domains;
	*n_r = pool->n_domains;
	return pool->domains_known;
}

/* ------------------------------------------------------------ pool */

struct ldap_conn_pool *
ldap_conn_pool_new(struct event_base *base, const struct ldap_dir_cfg *dir,
                   const char *bind_password)
{
	struct ldap_conn_pool *pool = xcalloc(1, sizeof(*pool));

	pool->base = base;
	pool->dir = dir;
	pool->bind_password = bind_password != NULL ? xstrdup(bind_password) : NULL;
	atomic_init(&pool->stopping, false);
	TAILQ_INIT(&pool->conns);
	TAILQ_INIT(&pool->waits[0]);
	TAILQ_INIT(&pool->waits[1]);
	TAILQ_INIT(&pool->all_waits);
	TAILQ_INIT(&pool->finished_ops);
	pool->uri_down_until = xcalloc(dir->n_uris, sizeof(*pool->uri_down_until));
	metrics_set(M_LDAP_UP, 0, metric_directory(dir->name));
	pool->uri_backoff_ms = xcalloc(dir->n_uris, sizeof(*pool->uri_backoff_ms));
	/* How pool_size is split (README "[ldap NAME]"): fetch only searches;
	 * a dn_template only binds (and reads as the user); bind with a
	 * search gives a quarter, at least one, to pipelined searches. */
	if (dir->dn_template != NULL) {
		pool->max_conns[LDAP_CONN_SEARCH] = 0;
		pool->max_conns[LDAP_CONN_BIND] = dir->pool_size;
	} else if (dir->method == LDAP_METHOD_FETCH) {
		pool->max_conns[LDAP_CONN_SEARCH] = dir->pool_size;
		pool->max_conns[LDAP_CONN_BIND] = 0;
	} else {
		unsigned s = dir->pool_size / 4 > 0 ? dir->pool_size / 4 : 1;
		pool->max_conns[LDAP_CONN_SEARCH] = s;
		pool->max_conns[LDAP_CONN_BIND] = dir->pool_size > s ? dir->pool_size - s : 1;
	}
	/* Group checks with a fetch-only pool still search; a template pool
	 * never opens search connections (it has no identity for them). */
	pool->setup_pool = threadpool_new(base, 1);
	pool->reaper = event_new(base, -1, 0, reaper_run, pool);
	if (pool->reaper == NULL)
		fatal("ldap: cannot create an event");
	return pool;
}

void
ldap_conn_pool_set_password(struct ldap_conn_pool *pool, const char *bind_password)
{
	free_secret(pool->bind_password);
	pool->bind_password = bind_password != NULL ? xstrdup(bind_password) : NULL;
}

void
ldap_conn_pool_set_trace(struct ldap_conn_pool *pool, ldap_conn_trace_cb *cb, void *arg)
{
	pool->trace = cb;
	pool->trace_arg = arg;
}

void
ldap_conn_pool_free(struct ldap_conn_pool *pool)
{
	struct ldap_conn *conn;
	struct ldap_conn_op *op;
	struct ldap_conn_wait *w;

	if (pool == NULL)
		return;
	atomic_store(&pool->stopping, true);
	/* Waits for a setup in progress; its done callback does not run. */
	threadpool_free(pool->setup_pool);
	setup_free(pool->setup);
	while ((conn = TAILQ_FIRST(&pool->conns)) != NULL) {
		TAILQ_REMOVE(&pool->conns, conn, entry);
		while ((op = TAILQ_FIRST(&conn->ops)) != NULL) {
			TAILQ_REMOVE(&conn->ops, op, entry);
			op_free(op);
		}
		if (conn->ev != NULL)
			event_free(conn->ev);
		if (conn->ld != NULL)
			ldap_unbind_ext(conn->ld, NULL, NULL);
		free(conn->uri);
		free(conn);
	}
	while ((op = TAILQ_FIRST(&pool->finished_ops)) != NULL) {
		TAILQ_REMOVE(&pool->finished_ops, op, entry);
		op_free(op);
	}
	while ((w = TAILQ_FIRST(&pool->all_waits)) != NULL)
		wait_free(w);
	event_free(pool->reaper);
	free(pool->uri_down_until);
	free(pool->uri_backoff_ms);
	free_secret(pool->bind_password);
	domains_free(pool->domains, pool->n_domains);
	free(pool);
}
