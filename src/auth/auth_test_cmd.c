/*
 * auth_test_cmd.c - the admin's view of an LDAP login (auth_test_cmd.h).
 *
 * Runs the very code the auth process runs (auth_ldap.c, ldap_conn.c) on an
 * event loop of its own, with the source's trace hook printing each step to
 * stdout: which directory, which URI, which filter (with the login escaped
 * as sent), which entries matched (password values hidden), which method
 * ran, the decision and its reason; when the login fails, the step that
 * failed and why ("failed step: ..."): a certificate refused (unknown issuer,
 * expired, name mismatch), the service bind refused, the directory
 * unreachable, the group gate. Log lines (connection failures) go to
 * stderr.
 *
 * The password comes from the terminal with echo off, or from the first
 * line of stdin when stdin is not a terminal. It is wiped after use and
 * never printed.
 */
#include "auth_test_cmd.h"
#include "auth_ldap.h"
#include "ldap_config.h"
#include "../lib/build_info.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/secret_input.h"
#include "../lib/threadpool.h"

#include <errno.h>
#include <event2/event.h>
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
};

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
test_done(void *arg, enum auth_result result, enum auth_reason reason, const char *addresses)
{
	struct test_run *run = arg;

	run->addresses = addresses != NULL ? xstrdup(addresses) : NULL;
	run->done = true;
	run->result = result;
	run->reason = reason;
	event_base_loopbreak(run->base);
}

static void
print_dirs(const struct config *cfg)
{
	size_t n = 0;
	char *errors = NULL;
	struct ldap_dir_cfg *dirs = ldap_config_parse(cfg, &n, &errors);

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

int
auth_test_cmd_main(int argc, char **argv)
{
	bool query = strcmp(argv[0], "test-query") == 0;
	const char *path = AUTHRELAY_CONFIG_FILE, *mech = "PLAIN", *user;
	char password[AUTH_MAX_SECRET + 2];
	struct auth_request req;
	struct auth_env env;
	struct test_run run;
	struct auth_ldap *src = NULL;
	struct config *cfg;
	char *errors = NULL;
	const char *err = NULL;
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
	if (config_section_next(cfg, "ldap", NULL) == NULL) {
		fprintf(stderr,
		        "authrelay %s: %s has no [ldap NAME] section; this tool checks "
		        "LDAP directories only\n",
		        argv[0], path);
		config_free(cfg);
		return EX_CONFIG;
	}
	if (!query) {
		pwlen = read_password(password, sizeof(password));
		if (pwlen < 0 || (size_t)pwlen > AUTH_MAX_SECRET) {
			fprintf(stderr,
			        "authrelay test-auth: no password read (at most %d bytes)\n",
			        AUTH_MAX_SECRET);
			explicit_bzero(password, sizeof(password));
			config_free(cfg);
			return 1;
		}
	} else {
		password[0] = '\0';
	}

	memset(&run, 0, sizeof(run));
	env.cfg = cfg;
	env.base = run.base = event_base_new();
	if (env.base == NULL) {
		fprintf(stderr, "authrelay %s: cannot create an event base\n", argv[0]);
		goto out;
	}
	env.pool = threadpool_new(env.base, 1);
	if (auth_ldap_new(&env, &src, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		status = EX_CONFIG;
		goto out_pool;
	}
	print_dirs(cfg);
	auth_ldap_set_trace(src, test_trace, NULL);
	memset(&req, 0, sizeof(req));
	req.mech = mech;
	req.login = user;
	req.secret = password;
	req.secret_len = (size_t)pwlen;
	req.challenge = "";
	req.session = argv[0];
	req.client = "";
	req.listener = "";
	printf("%s \"%s\"%s:\n", query ? "looking up" : "checking", user,
	       query ? "" : (pwlen == 0 ? " with an empty password" : " with the password given"));
	fflush(stdout);
	auth_ldap_check(src, &req, query, test_done, &run);
	while (!run.done && event_base_dispatch(run.base) == 0)
		;
	if (!run.done) {
		fprintf(stderr, "authrelay %s: the event loop stopped early\n", argv[0]);
		goto out_src;
	}
	if (query)
		printf("result: %s (%s)\n",
		       run.result == AUTH_OK     ? "found in exactly one directory"
		       : run.result == AUTH_FAIL ? "not usable for a login"
		                                 : "temporary failure",
		       auth_reason_name(run.reason));
	else
		printf("result: %s reason=%s (SMTP %s)\n", auth_result_name(run.result),
		       auth_reason_name(run.reason),
		       run.result == AUTH_OK     ? "235 2.7.0"
		       : run.result == AUTH_FAIL ? "535 5.7.8"
		                                 : "454 4.7.0");
	if (run.addresses != NULL)
		printf("addresses (for the sender policy): %s\n", run.addresses);
	free(run.addresses);
	status = run.result == AUTH_OK ? 0 : run.result == AUTH_FAIL ? 1 : EX_TEMPFAIL;
out_src:
	/* The hash pool first: the source frees checks it never finished. */
	threadpool_free(env.pool);
	env.pool = NULL;
	auth_ldap_free(src);
out_pool:
	if (env.pool != NULL)
		threadpool_free(env.pool);
out:
	if (run.base != NULL)
		event_base_free(run.base);
	explicit_bzero(password, sizeof(password));
	config_free(cfg);
	return status;
}
