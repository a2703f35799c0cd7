/* SPDX-License-Identifier: ISC */
/*
 * ldap_load.c - the directory's own ceiling for `make bench`: how many
 * search+bind pairs per second slapd answers alone, the work an SMTP AUTH
 * through an LDAP bind costs the directory (find the user's DN, then bind as
 * that DN with the password).
 *
 * Each of N threads holds two connections, as an auth server does: one for
 * searches (anonymous or bound as -D), one for the users' binds. The run is
 * bounded in time and targets loopback only; the result is one JSON line.
 *
 *   ldap_load -H ldap://127.0.0.1:PORT -b ou=people,dc=bench,dc=test \
 *             -c 16 -t 5 [-f '(uid=user%05lu)'] [-p 'pw-%05lu'] [-r 0-9999]
 *             [--bind-only -d 'uid=user%05lu,ou=people,dc=bench,dc=test']
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LDAP_DEPRECATED 0
#include <ldap.h>

struct opts {
	const char *uri;
	const char *base;
	const char *filter_fmt;
	const char *pass_fmt;
	const char *dn_fmt; /* --bind-only: no search, bind to this DN */
	unsigned long lo, hi;
	unsigned threads;
	double seconds;
};

struct worker {
	pthread_t tid;
	const struct opts *o;
	unsigned seed;
	unsigned long pairs, bind_ok, bind_fail, errors;
};

static volatile int stop;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The one "%[0][width]lu" of a template becomes n. */
static void
fmt_user(const char *fmt, unsigned long n, char *buf, size_t len)
{
	size_t o = 0;
	for (const char *p = fmt; *p != '\0' && o + 1 < len; p++) {
		if (*p != '%') {
			buf[o++] = *p;
			continue;
		}
		p++;
		bool zero = *p == '0';
		unsigned width = (unsigned)strtoul(p, (char **)&p, 10);
		while (*p == 'l')
			p++;
		char num[32];
		int w = snprintf(num, sizeof(num), zero ? "%0*lu" : "%*lu", (int)width, n);
		for (int i = 0; i < w && o + 1 < len; i++)
			buf[o++] = num[i];
	}
	buf[o] = '\0';
}

static LDAP *
connect_ldap(const char *uri)
{
	LDAP *ld;
	int v3 = LDAP_VERSION3;
	if (ldap_initialize(&ld, uri) != LDAP_SUCCESS)
		return NULL;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	return ld;
}

static int
simple_bind(LDAP *ld, const char *dn, const char *pw)
{
	struct berval cred = {.bv_val = (char *)pw, .bv_len = strlen(pw)};
	return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	const struct opts *o = w->o;
	LDAP *search = connect_ldap(o->uri), *bind = connect_ldap(o->uri);
	if (search == NULL || bind == NULL) {
		w->errors++;
		return NULL;
	}
	char filter[256], pw[256], dnbuf[512];
	char *attrs[] = {(char *)LDAP_NO_ATTRS, NULL};
	while (!stop) {
		unsigned long u = o->lo + (unsigned long)rand_r(&w->seed) % (o->hi - o->lo + 1);
		fmt_user(o->pass_fmt, u, pw, sizeof(pw));
		const char *dn = dnbuf;
		LDAPMessage *res = NULL;
		char *found = NULL;
		if (o->dn_fmt != NULL) {
			fmt_user(o->dn_fmt, u, dnbuf, sizeof(dnbuf));
		} else {
			fmt_user(o->filter_fmt, u, filter, sizeof(filter));
			int rc = ldap_search_ext_s(search, o->base, LDAP_SCOPE_SUBTREE, filter,
			                           attrs, 0, NULL, NULL, NULL, 2, &res);
			LDAPMessage *e = rc == LDAP_SUCCESS ? ldap_first_entry(search, res) : NULL;
			if (e == NULL || (found = ldap_get_dn(search, e)) == NULL) {
				w->errors++;
				ldap_msgfree(res);
				continue;
			}
			dn = found;
		}
		int rc = simple_bind(bind, dn, pw);
		if (rc == LDAP_SUCCESS)
			w->bind_ok++;
		else if (rc == LDAP_INVALID_CREDENTIALS)
			w->bind_fail++;
		else
			w->errors++;
		w->pairs++;
		if (found != NULL)
			ldap_memfree(found);
		ldap_msgfree(res);
	}
	ldap_unbind_ext_s(search, NULL, NULL);
	ldap_unbind_ext_s(bind, NULL, NULL);
	return NULL;
}

static void
usage(void)
{
	fputs("usage: ldap_load -H ldap://127.0.0.1:PORT -b BASE [-c THREADS] [-t SECONDS]\n"
	      "       [-f FILTER_FMT] [-p PASSWORD_FMT] [-r LO-HI] [--bind-only -d DN_FMT]\n",
	      stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"bind-only", no_argument, NULL, 1},
	        {NULL, 0, NULL, 0},
	};
	struct opts o = {
	        .filter_fmt = "(uid=user%05lu)",
	        .pass_fmt = "pw-%05lu",
	        .lo = 0,
	        .hi = 9999,
	        .threads = 16,
	        .seconds = 5,
	};
	bool bind_only = false;
	const char *dn_fmt = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "H:b:f:p:d:r:c:t:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			o.uri = optarg;
			break;
		case 'b':
			o.base = optarg;
			break;
		case 'f':
			o.filter_fmt = optarg;
			break;
		case 'p':
			o.pass_fmt = optarg;
			break;
		case 'd':
			dn_fmt = optarg;
			break;
		case 'r':
			if (sscanf(optarg, "%lu-%lu", &o.lo, &o.hi) != 2 || o.hi < o.lo)
				usage();
			break;
		case 'c':
			o.threads = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			o.seconds = strtod(optarg, NULL);
			break;
		case 1:
			bind_only = true;
			break;
		default:
			usage();
		}
	}
	if (o.uri == NULL || (o.base == NULL && !bind_only) || o.threads == 0 || o.threads > 1024)
		usage();
	if (bind_only) {
		if (dn_fmt == NULL)
			usage();
		o.dn_fmt = dn_fmt;
	}
	/* Loopback only: this is a load test. */
	if (strncmp(o.uri, "ldap://127.", 11) != 0 && strncmp(o.uri, "ldap://[::1]", 12) != 0 &&
	    strncmp(o.uri, "ldapi://", 8) != 0) {
		fprintf(stderr, "ldap_load: %s is not a loopback URI\n", o.uri);
		return 2;
	}

	struct worker *w = calloc(o.threads, sizeof(*w));
	if (w == NULL)
		return 2;
	double t0 = now_s();
	for (unsigned i = 0; i < o.threads; i++) {
		w[i].o = &o;
		w[i].seed = 0x9e3779b9u * (i + 1);
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "ldap_load: pthread_create: %s\n", strerror(errno));
			return 2;
		}
	}
	struct timespec ts = {(time_t)o.seconds,
	                      (long)((o.seconds - (double)(time_t)o.seconds) * 1e9)};
	nanosleep(&ts, NULL);
	stop = 1;
	unsigned long pairs = 0, ok = 0, fail = 0, errors = 0;
	for (unsigned i = 0; i < o.threads; i++) {
		pthread_join(w[i].tid, NULL);
		pairs += w[i].pairs;
		ok += w[i].bind_ok;
		fail += w[i].bind_fail;
		errors += w[i].errors;
	}
	double elapsed = now_s() - t0;
	printf("{\"tool\":\"ldap_load\",\"mode\":\"%s\",\"threads\":%u,\"elapsed_s\":%.3f,"
	       "\"pairs\":%lu,\"bind_ok\":%lu,\"bind_fail\":%lu,\"errors\":%lu,"
	       "\"pairs_per_s\":%.1f}\n",
	       bind_only ? "bind" : "search+bind", o.threads, elapsed, pairs, ok, fail, errors,
	       (double)pairs / elapsed);
	free(w);
	return errors == 0 ? 0 : 1;
}
