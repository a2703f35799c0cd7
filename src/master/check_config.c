/* SPDX-License-Identifier: ISC */
/*
 * check_config.c - "authrelay check-config": everything the daemon would refuse
 * at start, reported at once, so an admin can fix a config before a restart.
 *
 * In this order, each as "file:line: message" (warnings "file:line: warning:
 * message"):
 *   1. the file itself, every section (config_load() through the registry);
 *   2. the users the processes run as ([server] user, auth_user);
 *   3. every file and directory the config names, opened as the process
 *      that will use it (file_probe.h): the TLS certificate, key and CAs by
 *      the master (root); the users file, the CA and password files of
 *      [ldap NAME] and the CAs of [smtp-forward] by the auth process
 *      (auth_user); the spool by the workers (user) and the queue
 *      (queue_user), the queue's CAs and Maildirs by the queue. A file root
 *      can read but auth_user cannot would otherwise pass here and then make
 *      the auth process restart in a loop, every login getting 454;
 *   4. the TLS certificate and key, checked as the master checks them;
 *   5. the auth sources, started as the auth process starts them (names
 *      resolved, files read), once the auth process's files are readable.
 */
#include "file_probe.h"
#include "master.h"
#include "privdrop.h"
#include "settings_registry.h"
#include "../auth/auth_server.h"
#include "../auth/ldap_config.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/settings.h"
#include "../queue/queue_config.h"
#include "../smtpd/tls.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

/* One thing to open, and where the config names it. */
struct probe_item {
	char *path;        /* what is opened: the value, or a directory above it */
	const char *key;   /* "path", "cert_file" */
	const char *value; /* as the config gives it (borrowed from the set) */
	int line;
	enum file_probe_need need;
	bool via_dir;
};

/* The probes of one process's user. */
struct probe_set {
	const char *user;              /* its name, for messages */
	const struct privdrop_user *u; /* NULL: as this process */
	bool known;                    /* false: the user does not exist, skip */
	struct probe_item *items;
	size_t n;
};

struct checker {
	struct settings_set *set;
	const struct config *cfg;
	struct settings_ctx *ctx;
	struct privdrop_user run_as, auth_as, queue_as;
	struct probe_set master, workers, auth, queue;
};

static void
want(struct probe_set *ps, enum file_probe_need need, const char *path, const char *key,
     const char *value, int line)
{
	struct probe_item *it;

	ps->items = xrealloc(ps->items, (ps->n + 1) * sizeof(*ps->items));
	it = &ps->items[ps->n++];
	memset(it, 0, sizeof(*it));
	it->path = xstrdup(path);
	it->key = key;
	it->value = value;
	it->line = line;
	it->need = need;
}

/* Run ps's probes; each failure becomes an error on its line. Returns the
 * number of failures. */
static size_t
run_probes(struct checker *c, struct probe_set *ps)
{
	struct file_probe *probes;
	const char *err;
	size_t failed = 0;

	if (!ps->known || ps->n == 0)
		return 0;
	probes = xcalloc(ps->n, sizeof(*probes));
	for (size_t i = 0; i < ps->n; i++) {
		probes[i].path = ps->items[i].path;
		probes[i].need = ps->items[i].need;
		probes[i].via_dir = ps->items[i].via_dir;
	}
	if (file_probe_run(ps->u, probes, ps->n, &err) < 0) {
		settings_error(c->ctx, 0, "cannot check the files as user %s: %s", ps->user, err);
		free(probes);
		return ps->n;
	}
	for (size_t i = 0; i < ps->n; i++) {
		const struct probe_item *it = &ps->items[i];
		if (probes[i].error == 0)
			continue;
		failed++;
		/* A directory above the value: name it. */
		bool above = strcmp(it->path, it->value) != 0;
		settings_error(c->ctx, it->line, "%s = %s: %s%s%s", it->key, it->value,
		               above ? it->path : "", above ? ": " : "",
		               file_probe_reason(&probes[i], ps->user));
	}
	free(probes);
	return failed;
}

static void
probe_set_clear(struct probe_set *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		free(ps->items[i].path);
	free(ps->items);
	ps->items = NULL;
	ps->n = 0;
}

/* The user of key (auth_user, queue_user) into u and ps; [server] user's
 * when it is the same (config_load() warned about that), so that a user
 * that does not exist is reported once. */
static void
lookup_user(struct checker *c, const char *key, const char *name, struct privdrop_user *u,
            struct probe_set *ps)
{
	const char *err;

	if (strcmp(name, c->cfg->user) == 0) {
		*u = c->run_as;
		ps->known = c->workers.known;
	} else if (privdrop_lookup(name, u, &err) != 0) {
		settings_error(c->ctx, config_key_line(c->cfg, "server", NULL, key), "%s = %s: %s",
		               key, name, err);
		return;
	} else {
		ps->known = true;
	}
	ps->user = u->name;
	ps->u = u;
}

/* The users the processes run as: looked up when root (the daemon drops to
 * them); otherwise every process runs as this one. */
static void
check_users(struct checker *c)
{
	const struct config *cfg = c->cfg;
	const char *err;

	if (geteuid() != 0) {
		static char self[64];
		struct passwd *pw = getpwuid(geteuid());
		if (pw != NULL)
			snprintf(self, sizeof(self), "%s", pw->pw_name);
		else
			snprintf(self, sizeof(self), "%u", (unsigned)geteuid());
		c->master.user = c->workers.user = c->auth.user = c->queue.user = self;
		c->master.known = c->workers.known = c->auth.known = c->queue.known = true;
		return;
	}
	c->master.user = "root";
	c->master.known = true;
	if (privdrop_lookup(cfg->user, &c->run_as, &err) != 0) {
		settings_error(c->ctx, config_key_line(cfg, "server", NULL, "user"),
		               "user = %s: %s", cfg->user, err);
	} else {
		c->workers.user = c->run_as.name;
		c->workers.u = &c->run_as;
		c->workers.known = true;
	}
	lookup_user(c, "auth_user", cfg->auth_user, &c->auth_as, &c->auth);
	lookup_user(c, "queue_user", cfg->queue_user, &c->queue_as, &c->queue);
}

static bool
need_tls(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (cfg->listeners[i].tls != LTLS_NONE)
			return true;
	return false;
}

/* path's directory into buf ("/" for "/x"). */
static void
dir_of(const char *path, char *buf, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(buf, size, ".");
	else if (slash == path)
		snprintf(buf, size, "/");
	else
		snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

/* The spool: the workers (user; chrooted into it, or not) and the queue
 * (queue_user) enter it. The master makes it when it is missing (root,
 * 0711), not its parents, and its subdirectories at every start. */
static void
want_spool(struct checker *c)
{
	const struct config *cfg = c->cfg;
	int line = config_key_line(cfg, "server", NULL, "spool_dir");
	char parent[4096];
	struct stat st;

	/* There, or not for us to see (the probe says why). */
	if (stat(cfg->spool_dir, &st) == 0 || errno != ENOENT) {
		want(&c->workers, FILE_PROBE_SEARCH, cfg->spool_dir, "spool_dir", cfg->spool_dir,
		     line);
		want(&c->queue, FILE_PROBE_SEARCH, cfg->spool_dir, "spool_dir", cfg->spool_dir,
		     line);
		return;
	}
	dir_of(cfg->spool_dir, parent, sizeof(parent));
	if (stat(parent, &st) < 0 && errno == ENOENT)
		settings_error(c->ctx, line,
		               "spool_dir = %s: its parent directory does not exist (the daemon "
		               "makes the spool directory, not its parents)",
		               cfg->spool_dir);
	else {
		want(&c->workers, FILE_PROBE_SEARCH, parent, "spool_dir", cfg->spool_dir, line);
		want(&c->queue, FILE_PROBE_SEARCH, parent, "spool_dir", cfg->spool_dir, line);
	}
}

/* A Maildir route: the queue makes what is missing below the part of the
 * path that holds no %u or %d, so the deepest directory of that part that
 * exists must take new entries; when the whole part exists, per-user
 * directories may be made in advance, and the queue need only reach it. */
static void
want_maildir(struct checker *c, const struct route_cfg *r)
{
	int line = config_key_line(c->cfg, "route", r->name, "maildir");
	const char *pct = strchr(r->maildir, '%');
	char fixed[4096];
	struct stat st;

	if (pct != NULL) {
		/* Up to the last '/' before the first token: "/var/mail/%d/%u"
		 * -> /var/mail. */
		snprintf(fixed, sizeof(fixed), "%.*s", (int)(pct - r->maildir), r->maildir);
		char *slash = strrchr(fixed, '/');
		if (slash != NULL)
			*(slash == fixed ? slash + 1 : slash) = '\0';
	} else {
		snprintf(fixed, sizeof(fixed), "%s", r->maildir);
	}
	if (stat(fixed, &st) == 0 || errno != ENOENT) {
		want(&c->queue, pct != NULL ? FILE_PROBE_SEARCH : FILE_PROBE_WRITE, fixed,
		     "maildir", r->maildir, line);
		return;
	}
	while (strlen(fixed) > 1 && stat(fixed, &st) < 0 && errno == ENOENT) {
		char up[4096];
		dir_of(fixed, up, sizeof(up));
		snprintf(fixed, sizeof(fixed), "%s", up);
	}
	want(&c->queue, FILE_PROBE_WRITE, fixed, "maildir", r->maildir, line);
}

/* [shared] tls: the auth process reads the CA file and the client
 * certificate and key at start, as auth_user. */
static void
want_shared(struct checker *c, const struct shared_config *sc)
{
	const struct {
		const char *key, *path;
	} files[] = {
	        {"tls_ca_file", sc->tls_ca_file},
	        {"tls_cert_file", sc->tls_cert_file},
	        {"tls_key_file", sc->tls_key_file},
	};

	if (sc->redis == NULL || !sc->tls)
		return;
	for (size_t i = 0; i < AR_NELEM(files); i++)
		if (files[i].path != NULL)
			want(&c->auth, FILE_PROBE_READ, files[i].path, files[i].key, files[i].path,
			     config_key_line(c->cfg, "shared", NULL, files[i].key));
}

/* A directory's CA and password files, read by the auth process. The
 * password file should be the auth process's alone. */
static void
want_ldap(struct checker *c, const struct ldap_dir_cfg *d)
{
	struct stat st;

	if (d->ca_file != NULL)
		want(&c->auth, FILE_PROBE_READ, d->ca_file, "ca_file", d->ca_file,
		     config_key_line(c->cfg, "ldap", d->name, "ca_file"));
	if (d->bind_password_file == NULL)
		return;
	int line = config_key_line(c->cfg, "ldap", d->name, "bind_password_file");
	want(&c->auth, FILE_PROBE_READ, d->bind_password_file, "bind_password_file",
	     d->bind_password_file, line);
	if (stat(d->bind_password_file, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
		settings_warning(
		        c->ctx, line,
		        "bind_password_file = %s: readable by every user, and it holds the "
		        "service account's password",
		        d->bind_password_file);
}

/* [shared] secret_file, read by the auth process at start. Whoever reads
 * it can name the cluster's wrong passwords in Redis: the auth user's
 * alone. */
static void
want_shared_secret(struct checker *c)
{
	const char *path = c->set->shared.secret_file;
	struct stat st;
	int line;

	if (path == NULL || c->set->shared.redis == NULL)
		return;
	line = config_key_line(c->cfg, "shared", NULL, "secret_file");
	want(&c->auth, FILE_PROBE_READ, path, "secret_file", path, line);
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
		settings_warning(c->ctx, line,
		                 "secret_file = %s: readable by every user, and it keys the "
		                 "password digests shared in Redis",
		                 path);
}

static void
want_files(struct checker *c)
{
	const struct settings_set *set = c->set;
	const struct config *cfg = c->cfg;

	if (need_tls(cfg)) {
		int l;
		if (cfg->tls_cert_file != NULL) {
			l = config_key_line(cfg, "tls", NULL, "cert_file");
			want(&c->master, FILE_PROBE_READ, cfg->tls_cert_file, "cert_file",
			     cfg->tls_cert_file, l);
		}
		if (cfg->tls_key_file != NULL) {
			l = config_key_line(cfg, "tls", NULL, "key_file");
			want(&c->master, FILE_PROBE_READ, cfg->tls_key_file, "key_file",
			     cfg->tls_key_file, l);
		}
		if (cfg->tls_ca_file != NULL) {
			l = config_key_line(cfg, "tls", NULL, "ca_file");
			want(&c->master, FILE_PROBE_READ, cfg->tls_ca_file, "ca_file",
			     cfg->tls_ca_file, l);
		}
	}
	if (cfg->users_file != NULL) {
		want(&c->auth, FILE_PROBE_READ, cfg->users_file, "path", cfg->users_file,
		     config_key_line(cfg, "users-file", NULL, "path"));
		/* Opened by name from its directory, entered as root. */
		c->auth.items[c->auth.n - 1].via_dir = true;
	}
	for (size_t i = 0; i < set->n_ldap; i++)
		want_ldap(c, &set->ldap[i]);
	if (set->has_fwd && set->fwd.ca_file != NULL)
		want(&c->auth, FILE_PROBE_READ, set->fwd.ca_file, "ca_file", set->fwd.ca_file,
		     config_key_line(cfg, "smtp-forward", NULL, "ca_file"));
	want_shared(c, &set->shared);
	want_shared_secret(c);
	want_spool(c);
	if (set->qc->tls_ca_file != NULL)
		want(&c->queue, FILE_PROBE_READ, set->qc->tls_ca_file, "tls_ca_file",
		     set->qc->tls_ca_file, config_key_line(cfg, "queue", NULL, "tls_ca_file"));
	for (size_t i = 0; i < set->qc->n_routes; i++) {
		const struct route_cfg *r = &set->qc->routes[i];
		if (r->tls_ca_file != NULL)
			want(&c->queue, FILE_PROBE_READ, r->tls_ca_file, "tls_ca_file",
			     r->tls_ca_file, config_key_line(cfg, "route", r->name, "tls_ca_file"));
		if (r->type == ROUTE_MAILDIR && r->maildir != NULL)
			want_maildir(c, r);
	}
}

/* The certificate and key as the master checks them at start (the workers
 * load the chain, the key process the key); the error on the key at fault. */
static void
check_tls(struct checker *c)
{
	const char *key = NULL, *err = NULL;

	if (tls_server_check(c->cfg, &key, &err) != 0)
		settings_error(
		        c->ctx,
		        config_key_line(c->cfg, "tls", NULL, key != NULL ? key : "cert_file"), "%s",
		        err);
}

int
master_check_config(const char *path)
{
	struct checker c;
	char *errors = NULL, *report;
	size_t tls_failed, auth_failed;
	int status;

	memset(&c, 0, sizeof(c));
	/* Every section, the modules' ones included (settings_registry.c). */
	c.set = settings_registry_load(path, &errors);
	if (c.set == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	c.cfg = c.set->cfg;
	if (c.cfg->warnings != NULL)
		fputs(c.cfg->warnings, stderr);
	c.ctx = settings_ctx_new(path, NULL);
	check_users(&c);
	want_files(&c);
	tls_failed = run_probes(&c, &c.master);
	run_probes(&c, &c.workers);
	run_probes(&c, &c.queue);
	auth_failed = run_probes(&c, &c.auth);
	if (need_tls(c.cfg) && tls_failed == 0)
		check_tls(&c);
	report = settings_ctx_report(c.ctx);
	if (report != NULL)
		fputs(report, stderr);
	status = settings_ctx_errors(c.ctx) > 0 ? EX_CONFIG : 0;
	free(report);
	/* The sources as the auth process starts them: names resolved, files
	 * read. Only when it could read its files: otherwise each source
	 * would only repeat what the probes said. Their messages are for a
	 * person: plain lines, as the ones above. */
	if (auth_failed == 0) {
		log_init(false, LOG_LEVEL_WARN, "check-config");
		log_set_plain(true);
		if (auth_server_check(c.cfg) != 0)
			status = EX_CONFIG;
	}
	probe_set_clear(&c.master);
	probe_set_clear(&c.workers);
	probe_set_clear(&c.auth);
	probe_set_clear(&c.queue);
	settings_ctx_free(c.ctx);
	settings_registry_free(c.set);
	return status;
}
