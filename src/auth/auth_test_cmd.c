/* SPDX-License-Identifier: ISC */
/*
 * auth_test_cmd.c - the admin's view of a login (auth_test_cmd.h).
 *
 * test-auth runs every configured source in the daemon's order (the auth
 * server's registry: users file, LDAP, SMTP forwarding), each through the
 * very code the auth process runs, on an event loop of its own, with the
 * source's trace hook printing each step to stdout: the users file's entry
 * (its line and kind of hash); for LDAP which directory, URI and filter
 * (with the login escaped as sent), which entries matched (password values
 * hidden), which method ran, and when it fails the step that failed and why
 * ("failed step: ..."); the upstream dialogue of SMTP forwarding (the
 * credentials masked). As in the daemon, a source that does not know the
 * user passes the login on to the next; any other answer is final. Log
 * lines (connection failures) go to stderr.
 *
 * test-query looks the login up in the [ldap] directories only.
 *
 * CRAM-MD5 (-m CRAM-MD5): like a client, the command makes a challenge of
 * the daemon's shape (RFC 2195 2), computes HMAC-MD5 of it keyed with the
 * password typed, and hands the sources the challenge and the digest, as a
 * worker would.
 *
 * The password comes from the terminal with echo off, or from the first
 * line of stdin when stdin is not a terminal. It is wiped after use and
 * never printed.
 */
#include "auth_test_cmd.h"
#include "auth_file.h"
#include "auth_forward.h"
#include "auth_ldap.h"
#include "auth_server.h"
#include "ldap_config.h"
#include "../lib/build_info.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/secret_input.h"
#include "../lib/threadpool.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

struct test_run {
	struct event_base *base;
	bool done;
	enum auth_result result;
	enum auth_reason reason;
	char *addresses;
	char *identity; /* the canonical identity on AUTH_OK */
};

/* The CRAM-MD5 digest is 32 hex digits (RFC 2195 2). */
#define TEST_CRAM_DIGEST_LEN 32

static void
test_usage(FILE *to)
{
	fprintf(to, "usage: authrelay test-auth [-c FILE] [-m PLAIN|LOGIN|CRAM-MD5] USER\n"
	            "       authrelay test-query [-c FILE] USER\n"
	            "test-auth reads the password from the terminal (no echo) or from stdin.\n");
}

/* The password: from the terminal with echo off, else one line of stdin. */
static ssize_t
read_password(char *buf, size_t size)
{
	bool toolong;
	ssize_t n;
	int fd;

	if (!isatty(STDIN_FILENO))
		return secret_input_line(STDIN_FILENO, buf, size, &toolong);
	fd = secret_input_tty_open();
	if (fd < 0)
		return -1;
	n = secret_input_prompt(fd, "Password: ", buf, size, &toolong);
	secret_input_tty_close(fd);
	return n;
}

static void
test_trace(void *arg, const char *line)
{
	printf("  %s\n", line);
	fflush(stdout);
}

static void
test_done(void *arg, enum auth_result result, enum auth_reason reason, const char *identity,
          const char *addresses)
{
	struct test_run *run = arg;

	free(run->addresses);
	run->addresses = addresses != NULL ? xstrdup(addresses) : NULL;
	free(run->identity);
	run->identity = identity != NULL ? xstrdup(identity) : NULL;
	run->done = true;
	run->result = result;
	run->reason = reason;
	event_base_loopbreak(run->base);
}

static void
test_file_done(void *arg, enum auth_result result, enum auth_reason reason, const char *identity,
               const char *addresses)
{
	test_done(arg, result, reason, identity, addresses);
}

static void
test_forward_done(void *arg, enum auth_result result, enum auth_reason reason)
{
	test_done(arg, result, reason, NULL, NULL);
}

/* Run the loop until the check in progress calls back. */
static int
test_wait(struct test_run *run)
{
	while (!run->done && event_base_dispatch(run->base) == 0)
		;
	return run->done ? 0 : -1;
}

static void
print_dirs(const struct config *cfg)
{
	size_t n = 0;
	char *errors = NULL;
	struct ldap_dir_cfg *dirs = ldap_config_load(cfg, &n, &errors);

	free(errors);
	for (size_t i = 0; dirs != NULL && i < n; i++) {
		const struct ldap_dir_cfg *d = &dirs[i];
		printf("directory %s: type=%s method=%s%s uri=", d->name,
		       ldap_config_type_name(d->type),
		       d->dn_template != NULL           ? "bind, dn_template="
		       : d->method == LDAP_METHOD_FETCH ? "fetch"
		                                        : "bind",
		       d->dn_template != NULL ? d->dn_template : "");
		for (size_t u = 0; u < d->n_uris; u++)
			printf("%s%s", u > 0 ? "," : "", d->uris[u]);
		printf(" starttls=%s tls_verify=%s%s%s base=\"%s\" scope=%s%s%s%s%s%s\n",
		       d->starttls ? "yes" : "no", d->tls_verify ? "yes" : "no",
		       d->tls_name != NULL ? " tls_name=" : "",
		       d->tls_name != NULL ? d->tls_name : "", d->base,
		       ldap_config_scope_name(d->scope), d->bind_dn != NULL ? " bind_dn=\"" : "",
		       d->bind_dn != NULL ? d->bind_dn : "", d->bind_dn != NULL ? "\"" : "",
		       d->netbios_domain != NULL ? " netbios_domain=" : "",
		       d->netbios_domain != NULL ? d->netbios_domain : "");
		printf("  filter template: %s\n", d->filter);
		if (d->group_dn != NULL)
			printf("  group gate: %s on \"%s\"\n", d->group_filter, d->group_dn);
	}
	ldap_config_free(dirs, n);
}

/* One source's check, printed step by step. 0 with run filled, or -1 with
 * *error_r when the source cannot load. */
typedef int test_step_fn(const struct auth_env *env, const struct auth_request *req,
                         struct test_run *run, const char **error_r);

static int
test_step_file(const struct auth_env *env, const struct auth_request *req, struct test_run *run,
               const char **error_r)
{
	struct auth_file *src;

	if (auth_file_new(env, &src, error_r) < 0)
		return -1;
	auth_file_set_trace(src, test_trace, NULL);
	auth_file_check(src, req, test_file_done, run);
	int r = test_wait(run);
	auth_file_free(src);
	if (r < 0)
		*error_r = "the event loop stopped early";
	return r;
}

static int
test_step_ldap(const struct auth_env *env, const struct auth_request *req, struct test_run *run,
               const char **error_r)
{
	struct auth_ldap *src;

	if (auth_ldap_new(env, &src, error_r) < 0)
		return -1;
	print_dirs(env->cfg);
	auth_ldap_set_trace(src, test_trace, NULL);
	auth_ldap_check(src, req, false, test_done, run);
	int r = test_wait(run);
	auth_ldap_free(src);
	if (r < 0)
		*error_r = "the event loop stopped early";
	return r;
}

static int
test_step_forward(const struct auth_env *env, const struct auth_request *req, struct test_run *run,
                  const char **error_r)
{
	struct auth_forward *src;

	if (auth_forward_new(env, &src, error_r) < 0)
		return -1;
	auth_forward_set_trace(src, test_trace, NULL);
	auth_forward_check(src, req, test_forward_done, run);
	int r = test_wait(run);
	auth_forward_free(src);
	if (r < 0)
		*error_r = "the event loop stopped early";
	return r;
}

/* By the registry's names (auth_source_ops.name). */
static const struct {
	const char *name, *title;
	test_step_fn *run;
} test_steps[] = {
        {"file", "users file", test_step_file},
        {"ldap", "LDAP", test_step_ldap},
        {"forward", "SMTP forwarding", test_step_forward},
};

/* A challenge of the daemon's shape, "<random.time@hostname>" (RFC 2195 2,
 * sasl_cram.c), and HMAC-MD5(password, challenge) in lower-case hex: what a
 * client sends. 0, or -1 if MD5 is not available (FIPS mode). */
static int
test_cram(const char *hostname, const char *password, size_t len, char *challenge,
          size_t challenge_size, char digest[TEST_CRAM_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	uint64_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)getpid() ^ (uint64_t)time(NULL);
	snprintf(challenge, challenge_size, "<%" PRIu64 ".%lld@%s>", rnd, (long long)time(NULL),
	         hostname);
	if (HMAC(EVP_md5(), password, (int)len, (const unsigned char *)challenge, strlen(challenge),
	         mac, &maclen) == NULL ||
	    maclen != TEST_CRAM_DIGEST_LEN / 2)
		return -1;
	for (unsigned i = 0; i < maclen; i++) {
		digest[2 * i] = hex[mac[i] >> 4];
		digest[2 * i + 1] = hex[mac[i] & 15];
	}
	digest[TEST_CRAM_DIGEST_LEN] = '\0';
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

/* test-query: the [ldap] directories only. */
static int
test_query(const struct config *cfg, const char *path, const char *user)
{
	struct auth_request req;
	struct auth_env env;
	struct test_run run;
	struct auth_ldap *src = NULL;
	const char *err = NULL;
	int status = 1;

	if (config_section_next(cfg, "ldap", NULL) == NULL) {
		fprintf(stderr,
		        "authrelay test-query: %s has no [ldap NAME] section; this tool looks "
		        "logins up in LDAP directories only\n",
		        path);
		return EX_CONFIG;
	}
	memset(&run, 0, sizeof(run));
	memset(&env, 0, sizeof(env));
	env.cfg = cfg;
	env.base = run.base = event_base_new();
	if (env.base == NULL) {
		fprintf(stderr, "authrelay test-query: cannot create an event base\n");
		return 1;
	}
	env.pool = threadpool_new(env.base, 1);
	if (auth_ldap_new(&env, &src, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		status = EX_CONFIG;
		goto out;
	}
	print_dirs(cfg);
	auth_ldap_set_trace(src, test_trace, NULL);
	memset(&req, 0, sizeof(req));
	req.mech = "PLAIN";
	req.login = user;
	req.secret = "";
	req.challenge = "";
	req.session = "test-query";
	req.client = "";
	req.listener = "";
	printf("looking up \"%s\":\n", user);
	fflush(stdout);
	auth_ldap_check(src, &req, true, test_done, &run);
	if (test_wait(&run) < 0) {
		fprintf(stderr, "authrelay test-query: the event loop stopped early\n");
		goto out;
	}
	printf("result: %s (%s)\n",
	       run.result == AUTH_OK     ? "found in exactly one directory"
	       : run.result == AUTH_FAIL ? "not usable for a login"
	                                 : "temporary failure",
	       auth_reason_name(run.reason));
	if (run.identity != NULL)
		printf("identity (for throttling, sending limits and logs): %s\n", run.identity);
	if (run.addresses != NULL)
		printf("addresses (for the sender policy): %s\n", run.addresses);
	status = run.result == AUTH_OK ? 0 : run.result == AUTH_FAIL ? 1 : EX_TEMPFAIL;
out:
	/* The hash pool first: the source frees checks it never finished. */
	threadpool_free(env.pool);
	auth_ldap_free(src);
	free(run.addresses);
	free(run.identity);
	event_base_free(run.base);
	return status;
}

int
auth_test_cmd_main(int argc, char **argv)
{
	bool query = strcmp(argv[0], "test-query") == 0;
	const char *path = AUTHRELAY_CONFIG_FILE, *mech = "PLAIN", *user;
	char password[AUTH_MAX_SECRET + 2], challenge[300], digest[TEST_CRAM_DIGEST_LEN + 1];
	const struct auth_source_ops *order[8];
	size_t n_order = 0;
	struct auth_request req;
	struct auth_env env;
	struct test_run run;
	struct config *cfg;
	char *errors = NULL;
	ssize_t pwlen = 0;
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt(argc, argv, query ? "c:h" : "c:m:h")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'm':
			mech = optarg;
			break;
		case 'h':
			test_usage(stdout);
			return 0;
		default:
			test_usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind + 1 != argc) {
		test_usage(stderr);
		return EX_USAGE;
	}
	bool cram = ascii_strcasecmp(mech, "CRAM-MD5") == 0;
	if (!cram && ascii_strcasecmp(mech, "PLAIN") != 0 && ascii_strcasecmp(mech, "LOGIN") != 0) {
		fprintf(stderr, "authrelay test-auth: -m takes PLAIN, LOGIN or CRAM-MD5\n");
		return EX_USAGE;
	}
	user = argv[optind];
	if (strlen(user) == 0 || strlen(user) > AUTH_MAX_LOGIN) {
		fprintf(stderr, "authrelay %s: the user must be 1 to %d bytes\n", argv[0],
		        AUTH_MAX_LOGIN);
		return EX_USAGE;
	}
	log_init(false, LOG_LEVEL_WARN, argv[0]);
	cfg = config_load(path, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	if (query) {
		status = test_query(cfg, path, user);
		config_free(cfg);
		return status;
	}
	for (size_t i = 0; auth_server_source(i) != NULL && n_order < AR_NELEM(order); i++)
		if (auth_server_source(i)->configured(cfg))
			order[n_order++] = auth_server_source(i);
	if (n_order == 0) {
		fprintf(stderr,
		        "authrelay test-auth: %s configures no auth source ([users-file], [ldap "
		        "NAME], [smtp-forward])\n",
		        path);
		config_free(cfg);
		return EX_CONFIG;
	}
	pwlen = read_password(password, sizeof(password));
	if (pwlen < 0 || (size_t)pwlen > AUTH_MAX_SECRET) {
		fprintf(stderr, "authrelay test-auth: no password read (at most %d bytes)\n",
		        AUTH_MAX_SECRET);
		explicit_bzero(password, sizeof(password));
		config_free(cfg);
		return 1;
	}

	memset(&req, 0, sizeof(req));
	req.mech = cram ? "CRAM-MD5" : ascii_strcasecmp(mech, "LOGIN") == 0 ? "LOGIN" : "PLAIN";
	req.login = user;
	req.secret = password;
	req.secret_len = (size_t)pwlen;
	req.challenge = "";
	req.session = argv[0];
	req.client = "";
	req.listener = "";
	if (cram) {
		if (test_cram(cfg->hostname, password, (size_t)pwlen, challenge, sizeof(challenge),
		              digest) < 0) {
			fprintf(stderr, "authrelay test-auth: HMAC-MD5 is not available here\n");
			explicit_bzero(password, sizeof(password));
			config_free(cfg);
			return 1;
		}
		req.secret = digest;
		req.secret_len = TEST_CRAM_DIGEST_LEN;
		req.challenge = challenge;
	}
	printf("checking \"%s\" %s, mechanism %s; sources in the daemon's order:", user,
	       pwlen == 0 ? "with an empty password" : "with the password given", req.mech);
	for (size_t i = 0; i < n_order; i++)
		printf(" %s", order[i]->name);
	printf("\n");
	if (cram)
		printf("CRAM-MD5 challenge %s: the digest of the password given is checked, as a "
		       "client would send it\n",
		       challenge);
	fflush(stdout);

	memset(&run, 0, sizeof(run));
	memset(&env, 0, sizeof(env));
	env.cfg = cfg;
	env.base = run.base = event_base_new();
	if (env.base == NULL) {
		fprintf(stderr, "authrelay test-auth: cannot create an event base\n");
		goto out;
	}
	for (size_t i = 0; i < n_order; i++) {
		const char *err = NULL;
		size_t k;
		for (k = 0; k < AR_NELEM(test_steps); k++)
			if (strcmp(test_steps[k].name, order[i]->name) == 0)
				break;
		if (k == AR_NELEM(test_steps)) {
			printf("source %s: not known to test-auth\n", order[i]->name);
			continue;
		}
		printf("source %s (%s):\n", order[i]->name, test_steps[k].title);
		fflush(stdout);
		run.done = false;
		/* A pool per source: freeing it first lets the source drop
		 * what it never finished. */
		env.pool = threadpool_new(env.base, 1);
		int r = test_steps[k].run(&env, &req, &run, &err);
		threadpool_free(env.pool);
		if (r < 0) {
			fprintf(stderr, "authrelay test-auth: source %s: %s\n", order[i]->name,
			        err != NULL ? err : "cannot load");
			status = EX_CONFIG;
			goto out;
		}
		printf("  -> %s reason=%s\n", auth_result_name(run.result),
		       auth_reason_name(run.reason));
		if (!auth_server_passes_on(run.result, run.reason))
			break;
		if (i + 1 < n_order)
			printf("  unknown to %s: the daemon asks the next source\n",
			       order[i]->name);
	}
	printf("result: %s reason=%s (SMTP %s)\n", auth_result_name(run.result),
	       auth_reason_name(run.reason),
	       run.result == AUTH_OK     ? "235 2.7.0"
	       : run.result == AUTH_FAIL ? "535 5.7.8"
	                                 : "454 4.7.0");
	if (run.result == AUTH_OK && run.identity != NULL)
		printf("identity (for throttling, sending limits and logs): %s\n", run.identity);
	if (run.result == AUTH_OK && run.addresses != NULL)
		printf("addresses (for the sender policy): %s\n", run.addresses);
	status = run.result == AUTH_OK ? 0 : run.result == AUTH_FAIL ? 1 : EX_TEMPFAIL;
out:
	free(run.addresses);
	free(run.identity);
	if (run.base != NULL)
		event_base_free(run.base);
	explicit_bzero(password, sizeof(password));
	explicit_bzero(digest, sizeof(digest));
	config_free(cfg);
	return status;
}
