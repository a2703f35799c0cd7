/* SPDX-License-Identifier: ISC */
/*
 * master_reload.c - reloading the configuration (SIGHUP; later also the
 * admin's `authrelay reload`), as nginx does:
 *
 *   1. read the file once and load it as every process will (settings
 *      registry: every module's sections); check the certificate. A file
 *      that does not load changes nothing: its errors go to the log and to
 *      systemd (STATUS=), and everything keeps running as it was;
 *   2. log what changed, one line per key (settings_registry_diff()); a key
 *      that cannot change without a restart is named in a warning and keeps
 *      its running value (settings_registry_keep_restart());
 *   3. bind the listeners that are new (the others keep their sockets:
 *      listen_set.h) and start a new generation of SMTP workers with the
 *      new configuration (master_gen.c);
 *   4. hand the very text loaded in 1 to the auth process and the queue,
 *      which reload in place (lib/ctlchan.h): no login and no delivery
 *      waits for a process to restart, and the auth process keeps its
 *      brute-force counters;
 *   5. once the new workers are all up and the auth process and the queue
 *      have answered, the new generation becomes the active one and the old
 *      one retires: it stops accepting and finishes its sessions, bounded by
 *      shutdown_timeout. Then READY=1, with what went wrong in STATUS=.
 *
 * Each reload counts as ok (from step 2 on, the new file is the one) or
 * refused in authrelay_reloads_total; one that took also sets the time in
 * authrelay_config_last_reload_success_timestamp_seconds.
 *
 * A reload that comes while another one's workers are still starting
 * replaces it: those workers retire at once (they have hardly any session).
 * The old active generation serves until the newest one is up, so clients
 * always find workers accepting.
 */
#include "master_internal.h"
#include "listen_set.h"
#include "settings_registry.h"
#include "../lib/config.h"
#include "../lib/ctlchan.h"
#include "../lib/log.h"
#include "../lib/sdnotify.h"
#include "../metrics/metric.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *
child_name(const struct child *c)
{
	return c->kind == CHILD_AUTH ? "auth" : "queue";
}

/* One log line per problem; the first also in systemd's STATUS=. */
static void
reload_refuse(struct master *m, const char *errors)
{
	if (errors == NULL)
		errors = "?\n";
	char first[512] = "";
	size_t n_lines = 0;

	for (const char *p = errors; p != NULL && *p != '\0';) {
		size_t n = strcspn(p, "\n");
		log_err("reload: %.*s", (int)n, p);
		if (n_lines++ == 0)
			snprintf(first, sizeof(first), "%.*s", (int)n, p);
		p += n + (p[n] == '\n');
	}
	log_err("reload refused: the running configuration stays");
	metrics_inc(M_RELOADS, MRL_REFUSED);
	if (m->ready)
		sdnotify("READY=1\nSTATUS=reload refused (config has errors): %s%s", first,
		         n_lines > 1 ? " (and more, see the log)" : "");
}

/* One change a reload makes, as settings_registry_diff() reports it. */
static void
reload_change_cb(void *arg, const struct settings_change *c)
{
	size_t *restart = arg;

	if (c->key == NULL)
		log_info("reload: [%s] %s", c->section, c->new_value != NULL ? "added" : "removed");
	else if (!c->restart)
		log_info("reload: [%s] %s %s -> %s", c->section, c->key, c->old_value,
		         c->new_value);
	else {
		log_warn("reload: [%s] %s %s -> %s needs a restart; still using %s", c->section,
		         c->key, c->old_value, c->new_value, c->old_value);
		(*restart)++;
	}
}

static bool
reload_need_tls(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (cfg->listeners[i].tls != LTLS_NONE)
			return true;
	return false;
}

/* The auth process or the queue answered a config. */
static void
reload_done_cb(void *arg, uint32_t generation, bool ok, const char *message)
{
	struct child *c = arg;
	struct master *m = c->m;

	if (generation != m->config_gen)
		return; /* a config a later reload replaced */
	c->config_gen = generation;
	free(c->config_error);
	c->config_error = ok ? NULL : xstrdup(message);
	if (ok)
		log_info("reload: %s runs generation=%u", child_name(c), generation);
	else
		log_err("reload: %s kept its running configuration: %s", child_name(c), message);
	master_reload_check(m);
}

int
master_reload_channel(struct child *c, int *child_fd_r)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		log_err("%s: control channel: socketpair: %s", child_name(c), strerror(errno));
		return -1;
	}
	ctlchan_free(c->ctl);
	c->ctl = ctlchan_master_new(c->m->base, sv[0], reload_done_cb, c);
	if (c->ctl == NULL) {
		log_err("%s: control channel: cannot watch it", child_name(c));
		close(sv[1]);
		return -1;
	}
	*child_fd_r = sv[1];
	return 0;
}

/* Hand the newest config to c; a child not running gets it at its start. */
static void
reload_push(struct master *m, struct child *c)
{
	uint32_t flags = m->set->cfg->use_syslog ? CTLCHAN_FORCE_SYSLOG : 0;

	if (c->pid == 0)
		return;
	if (c->ctl == NULL || ctlchan_send_config(c->ctl, m->config_gen, flags, m->set->cfg->path,
	                                          m->config_text, m->config_len) < 0) {
		/* Never a silent mismatch: restart it with the new config. */
		log_err("reload: cannot reach the %s process; restarting it", child_name(c));
		kill(c->pid, SIGTERM);
	}
}

int
master_reload(struct master *m, char **errors_r)
{
	struct settings_set *set;
	struct worker_gen *gen;
	char *errors = NULL, *text = NULL;
	const char *err;
	size_t len, changes, restart = 0;
	unsigned workers;

	if (errors_r != NULL)
		*errors_r = NULL;
	if (m->stopping) {
		if (errors_r != NULL)
			*errors_r = xstrdup("the gateway is stopping\n");
		return -1;
	}
	/* RELOADING=1, then READY=1 once the new workers are up. */
	if (m->ready)
		sdnotify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		         sdnotify_monotonic_usec());
	log_info("reload: reading %s", m->config_path);
	if (config_read_text(m->config_path, &text, &len, &errors) < 0 ||
	    (set = settings_registry_load_text(m->config_path, text, len, &errors)) == NULL)
		goto refuse;
	master_log_warnings(set->cfg);
	/* In a child: the master never holds a private key (master.c). */
	const char *tls_key;
	if (reload_need_tls(set->cfg) && master_check_tls(m, set->cfg, &tls_key, &err) != 0) {
		/* On the key's line, as check-config reports it. */
		int line = config_key_line(set->cfg, "tls", NULL,
		                           tls_key != NULL ? tls_key : "cert_file");
		if (asprintf(&errors, "%s:%d: [tls] %s\n", m->config_path, line, err) < 0)
			errors = NULL;
		settings_registry_free(set);
		goto refuse;
	}

	changes = settings_registry_diff(m->set, set, reload_change_cb, &restart);
	settings_registry_keep_restart(m->set, set);
	/* The daemon's own override (no terminal: syslog), as at start. */
	if (!m->foreground)
		set->cfg->use_syslog = true;
	workers = master_worker_count(set->cfg);
	if (workers > m->n_slots / 2) {
		unsigned running = m->active != NULL ? m->active->n_workers : m->n_slots / 2;
		log_warn(
		        "reload: [server] workers %u needs a restart (the shared tables were sized "
		        "at start for %u per generation); still using %u",
		        workers, m->n_slots / 2, running);
		workers = running;
	}
	m->config_gen++;
	gen = master_gen_new(m, set, workers, &err);
	if (gen == NULL) {
		m->config_gen--;
		settings_registry_free(set);
		if (asprintf(&errors, "%s:0: %s\n", m->config_path, err) < 0)
			errors = NULL;
		goto refuse;
	}

	/* From here on the new config is the one: the auth process and the
	 * queue take it now, and restart with it if they die. */
	struct worker_gen *replaced = m->starting;
	m->set = set;
	free(m->config_text);
	m->config_text = text;
	m->config_len = len;
	if (replaced != NULL) {
		log_info("reload: generation=%u replaces generation=%u before it was up",
		         gen->number, replaced->number);
		master_gen_retire(replaced);
	}
	log_init(set->cfg->use_syslog, (enum log_level)set->cfg->log_level, "master");
	log_info("reload: generation=%u changes=%zu needing_restart=%zu listeners=%zu workers=%u",
	         gen->number, changes, restart, set->cfg->n_listeners, workers);
	/* The new config is the one from now on, even if the auth process
	 * or the queue keeps its own (they say so in the log and STATUS=). */
	metrics_inc(M_RELOADS, MRL_OK);
	metrics_set(M_LAST_RELOAD_OK, time(NULL));
	reload_push(m, &m->auth);
	reload_push(m, &m->queue);
	m->starting = gen;
	master_gen_start(gen);
	sdnotify("STATUS=reloading: starting generation %u", gen->number);
	master_reload_check(m);
	return 0;
refuse:
	reload_refuse(m, errors);
	if (errors_r != NULL && errors != NULL)
		*errors_r = errors;
	else
		free(errors);
	free(text);
	return -1;
}

void
master_reload_check(struct master *m)
{
	struct worker_gen *gen = m->starting;
	char what[600];

	if (m->stopping || gen == NULL || !master_gen_up(gen) || !m->auth.up || !m->queue.up ||
	    (m->metrics != NULL && !m->metrics_child.up) || m->auth.config_gen != m->config_gen ||
	    m->queue.config_gen != m->config_gen)
		return;
	bool first = m->active == NULL && !m->ready;
	master_gen_activate(gen);
	if (first) {
		m->ready = true;
		/* A reload before the start was done: it is the one that is up. */
		if (gen->number > 1)
			log_info("reload: generation=%u active", gen->number);
		log_info("ready listeners=%zu workers=%u", m->set->cfg->n_listeners,
		         gen->n_workers);
		if (m->daemon_fd >= 0) {
			char ok = 0;
			if (write(m->daemon_fd, &ok, 1) != 1)
				log_warn("cannot tell the starting shell: %s", strerror(errno));
			close(m->daemon_fd);
			m->daemon_fd = -1;
		}
		master_notify_ready(m, "ready");
		return;
	}
	log_info("reload: generation=%u active", gen->number);
	if (m->auth.config_error != NULL || m->queue.config_error != NULL)
		snprintf(what, sizeof(what), "reloaded with errors (%s%s%s%s%s)",
		         m->auth.config_error ? "auth: " : "",
		         m->auth.config_error ? m->auth.config_error : "",
		         m->auth.config_error && m->queue.config_error ? "; " : "",
		         m->queue.config_error ? "queue: " : "",
		         m->queue.config_error ? m->queue.config_error : "");
	else
		snprintf(what, sizeof(what), "reloaded");
	master_notify_ready(m, what);
}
