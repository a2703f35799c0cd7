/* SPDX-License-Identifier: ISC */
/*
 * master_gen.c - generations of SMTP workers (see master_internal.h).
 *
 * A generation is the workers of one configuration, with that
 * configuration's listening sockets (listen_set.h) and rows, and, when a
 * listener uses TLS, its own key process (src/keyproc/) on its own socket
 * (private/keyproc.N): it loaded that configuration's key pair as root, so
 * the sessions of an old generation keep their pair after a reload that
 * changed it (the file may well have been replaced in place), while the new
 * workers' handshakes use the new one. It is STARTING until every worker
 * (and its key process) reported itself up, then ACTIVE; when a reload's
 * generation becomes active, the one before RETIRES: its workers stop
 * accepting (SIGHUP), finish their sessions and exit, then its key
 * process is told to go; after its shutdown_timeout and a grace period the
 * master kills what is left. A retiring generation is freed with its last
 * process: memory does not grow with the number of reloads.
 *
 * The shared tables. conn_limit and send_limit (shmtab.h) have one cell or
 * owner id per worker, and conn_limit one fixed row per listener. Their
 * size is fixed when the master maps them before the first fork, so every
 * worker of every generation counts in the same tables: a client's
 * connections to the old and to the new workers add up under one
 * max_connections_per_ip. Hence:
 *   - worker slots: n_slots cells, each held by one live worker (and kept
 *     through its restarts); a generation's worker without a free slot
 *     waits for one (an old generation exits within its shutdown_timeout);
 *     a generation may not ask for more than half of them;
 *   - listener rows: a listener keeps its row from one generation to the
 *     next by its name; a new name takes a row no live generation uses.
 */
#include "master_internal.h"
#include "listen_set.h"
#include "settings_registry.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../smtpd/conn_limit.h"
#include "../smtpd/send_limit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

/* Worker slots: at least this many, else four generations' worth. */
#define GEN_MIN_SLOTS 16
#define GEN_SLOTS_PER_WORKER 4
/* Listener rows: at least this many, else four configurations' worth. */
#define GEN_MIN_ROWS 64
/* Past shutdown_timeout, what a retiring worker gets before SIGKILL. */
#define GEN_KILL_GRACE_SECONDS 10

void
master_gen_tables_init(struct master *m, const struct config *cfg)
{
	unsigned workers = master_worker_count(cfg);
	unsigned slots = workers * GEN_SLOTS_PER_WORKER;

	m->n_slots = slots > GEN_MIN_SLOTS ? slots : GEN_MIN_SLOTS;
	m->slot_used = xcalloc(m->n_slots, sizeof(*m->slot_used));
	m->n_rows = (unsigned)cfg->n_listeners * 4;
	if (m->n_rows < GEN_MIN_ROWS)
		m->n_rows = GEN_MIN_ROWS;
	m->conn_room = 64;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		m->conn_room += cfg->listeners[i].limits.max_connections;
	m->limits = conn_limit_new(m->n_slots, m->n_rows, m->conn_room);
	m->send_limits = send_limit_new(m->set->prot.send_limit_size, m->n_slots);
}

void
master_gen_tables_free(struct master *m)
{
	conn_limit_free(m->limits);
	send_limit_free(m->send_limits);
	free(m->slot_used);
}

/* ---- listener rows ---- */

static bool
row_used(const struct master *m, unsigned row, const struct worker_gen *except)
{
	const struct worker_gen *g;

	TAILQ_FOREACH(g, &m->gens, entry)
	{
		if (g == except)
			continue;
		for (size_t i = 0; i < g->n_listeners; i++)
			if (g->limit_ids[i] == row)
				return true;
	}
	return false;
}

/* The row a listener of this name has in a live generation, or -1. */
static long
row_of_name(const struct master *m, const char *name)
{
	const struct worker_gen *g;

	TAILQ_FOREACH_REVERSE(g, &m->gens, gen_head, entry)
	{
		for (size_t i = 0; i < g->n_listeners; i++)
			if (ascii_strcasecmp(g->listener_names[i], name) == 0)
				return g->limit_ids[i];
	}
	return -1;
}

/* Rows for every listener of gen (not yet in m->gens). -1 when there are
 * not enough free ones. */
static int
rows_assign(struct master *m, struct worker_gen *gen)
{
	for (size_t i = 0; i < gen->n_listeners; i++) {
		long row = row_of_name(m, gen->listener_names[i]);
		if (row < 0) {
			for (unsigned r = 0; r < m->n_rows && row < 0; r++) {
				bool mine = false;
				for (size_t j = 0; j < i && !mine; j++)
					mine = gen->limit_ids[j] == r;
				if (!mine && !row_used(m, r, NULL))
					row = r;
			}
		}
		if (row < 0)
			return -1;
		gen->limit_ids[i] = (unsigned)row;
	}
	return 0;
}

/* ---- worker slots ---- */

static bool
slot_take(struct master *m, struct child *c)
{
	for (unsigned i = 0; i < m->n_slots; i++) {
		if (!m->slot_used[i]) {
			m->slot_used[i] = true;
			c->idx = i;
			return true;
		}
	}
	return false;
}

static void
slot_give_back(struct master *m, struct child *c)
{
	if (c->idx == MASTER_NO_SLOT)
		return;
	m->slot_used[c->idx] = false;
	c->idx = MASTER_NO_SLOT;
}

/* ---- generations ---- */

#define KEYPROC_SOCKET_PREFIX "private/keyproc"

static void gen_free(struct worker_gen *gen);
static void gen_fill_slots(struct master *m);

struct worker_gen *
master_gen_new(struct master *m, struct settings_set *set, unsigned n_workers, const char **error_r)
{
	struct worker_gen *gen = xcalloc(1, sizeof(*gen));
	const struct config *cfg = set->cfg;
	unsigned room = 64;

	gen->m = m;
	gen->number = m->config_gen;
	gen->state = GEN_STARTING;
	gen->keyproc_fd = -1;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		gen->need_tls |= cfg->listeners[i].tls != LTLS_NONE;
	gen->n_listeners = cfg->n_listeners;
	gen->listen_fds = xcalloc(gen->n_listeners, sizeof(int));
	gen->limit_ids = xcalloc(gen->n_listeners, sizeof(unsigned));
	gen->listener_names = xcalloc(gen->n_listeners, sizeof(char *));
	for (size_t i = 0; i < gen->n_listeners; i++) {
		gen->listener_names[i] = xstrdup(cfg->listeners[i].name);
		room += cfg->listeners[i].limits.max_connections;
	}
	if (rows_assign(m, gen) < 0) {
		*error_r = "too many listeners in use by the workers still running; retry once "
		           "the old ones have finished their sessions";
		goto fail;
	}
	if (gen->need_tls) {
		snprintf(gen->keyproc_name, sizeof(gen->keyproc_name), "%s.%u",
		         KEYPROC_SOCKET_PREFIX, gen->number);
		if (m->is_root && master_keyproc_root(m, error_r) < 0)
			goto fail;
		gen->keyproc_fd =
		        master_bind_unix(m, gen->keyproc_name, m->user.uid, m->user.gid,
		                         gen->keyproc_path, sizeof(gen->keyproc_path), error_r);
		if (gen->keyproc_fd < 0)
			goto fail;
	}
	if (listen_set_acquire(m->listeners, cfg, gen->listen_fds, error_r) < 0) {
		if (gen->keyproc_fd >= 0) {
			close(gen->keyproc_fd);
			unlink(gen->keyproc_path);
		}
		goto fail;
	}
	if (room > m->conn_room)
		log_warn("the max_connections of all listeners add up to %u, more than the %u the "
		         "connection table was sized for at start: clients may be refused early; "
		         "a restart sizes it anew",
		         room, m->conn_room);
	gen->set = set;
	gen->shutdown_timeout = cfg->shutdown_timeout;
	gen->n_workers = n_workers;
	gen->workers = xcalloc(n_workers, sizeof(*gen->workers));
	for (unsigned i = 0; i < n_workers; i++) {
		struct child *c = &gen->workers[i];
		*c = (struct child){.m = m, .kind = CHILD_SMTPD, .gen = gen, .idx = MASTER_NO_SLOT};
		c->restart = evtimer_new(m->base, master_restart_cb, c);
	}
	gen->keyproc =
	        (struct child){.m = m, .kind = CHILD_KEYPROC, .gen = gen, .idx = MASTER_NO_SLOT};
	gen->keyproc.restart = evtimer_new(m->base, master_restart_cb, &gen->keyproc);
	TAILQ_INSERT_TAIL(&m->gens, gen, entry);
	return gen;
fail:
	for (size_t i = 0; i < gen->n_listeners; i++)
		free(gen->listener_names[i]);
	free(gen->listener_names);
	free(gen->limit_ids);
	free(gen->listen_fds);
	free(gen);
	return NULL;
}

void
master_gen_start(struct worker_gen *gen)
{
	struct master *m = gen->m;
	unsigned waiting = 0;

	if (gen->state == GEN_RETIRING || m->stopping)
		return;
	/* The key process first: the workers' handshakes ask it. */
	if (gen->need_tls && gen->keyproc.pid == 0 && !evtimer_pending(gen->keyproc.restart, NULL))
		master_start_child(&gen->keyproc);
	for (unsigned i = 0; i < gen->n_workers; i++) {
		struct child *c = &gen->workers[i];
		if (c->pid != 0 || evtimer_pending(c->restart, NULL))
			continue;
		if (c->idx == MASTER_NO_SLOT && !slot_take(m, c)) {
			waiting++;
			continue;
		}
		master_start_child(c);
	}
	if (waiting > 0)
		log_info("generation=%u: %u workers wait for old workers to exit (%u slots)",
		         gen->number, waiting, m->n_slots);
}

bool
master_gen_up(const struct worker_gen *gen)
{
	if (gen->need_tls && (gen->keyproc.pid == 0 || !gen->keyproc.up))
		return false;
	for (unsigned i = 0; i < gen->n_workers; i++)
		if (gen->workers[i].pid == 0 || !gen->workers[i].up)
			return false;
	return true;
}

void
master_gen_activate(struct worker_gen *gen)
{
	struct master *m = gen->m;
	struct worker_gen *old = m->active;

	gen->state = GEN_ACTIVE;
	m->active = gen;
	if (m->starting == gen)
		m->starting = NULL;
	if (old != NULL)
		master_gen_retire(old);
	master_metrics_processes(m);
}

static bool
gen_alive(const struct worker_gen *gen)
{
	for (unsigned i = 0; i < gen->n_workers; i++)
		if (gen->workers[i].pid != 0)
			return true;
	return false;
}

static void
gen_kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_gen *gen = arg;

	log_warn("generation=%u: workers still running %d s after shutdown_timeout: killing them",
	         gen->number, GEN_KILL_GRACE_SECONDS);
	for (unsigned i = 0; i < gen->n_workers; i++)
		if (gen->workers[i].pid != 0)
			kill(gen->workers[i].pid, SIGKILL);
	if (gen->keyproc.pid != 0)
		kill(gen->keyproc.pid, SIGKILL);
}

void
master_gen_retire(struct worker_gen *gen)
{
	struct master *m = gen->m;
	unsigned running = 0;

	if (gen->state == GEN_RETIRING)
		return;
	gen->state = GEN_RETIRING;
	if (m->active == gen)
		m->active = NULL;
	if (m->starting == gen)
		m->starting = NULL;
	for (unsigned i = 0; i < gen->n_workers; i++) {
		struct child *c = &gen->workers[i];
		evtimer_del(c->restart);
		if (c->pid != 0) {
			/* A worker not yet past its set-up dies of it (the
			 * default action): it has no session yet. */
			kill(c->pid, SIGHUP);
			running++;
		} else {
			slot_give_back(m, c);
		}
	}
	log_info("generation=%u retiring workers=%u shutdown_timeout=%u", gen->number, running,
	         gen->shutdown_timeout);
	evtimer_del(gen->keyproc.restart);
	/* Its configuration is in the workers' own memory. */
	if (gen->set != m->set)
		settings_registry_free(gen->set);
	gen->set = NULL;
	gen->kill_deadline = evtimer_new(m->base, gen_kill_cb, gen);
	struct timeval tv = {(time_t)gen->shutdown_timeout + GEN_KILL_GRACE_SECONDS, 0};
	evtimer_add(gen->kill_deadline, &tv);
	if (running == 0)
		master_gen_reap_idle(m);
}

void
master_gen_signal_all(struct master *m, int sig, bool keyprocs)
{
	struct worker_gen *gen;

	TAILQ_FOREACH(gen, &m->gens, entry)
	{
		for (unsigned i = 0; i < gen->n_workers; i++)
			if (gen->workers[i].pid != 0)
				kill(gen->workers[i].pid, sig);
		if (keyprocs && gen->keyproc.pid != 0)
			kill(gen->keyproc.pid, sig);
	}
}

struct child *
master_gen_find(struct master *m, pid_t pid)
{
	struct worker_gen *gen;

	TAILQ_FOREACH(gen, &m->gens, entry)
	{
		for (unsigned i = 0; i < gen->n_workers; i++)
			if (gen->workers[i].pid == pid)
				return &gen->workers[i];
		if (gen->keyproc.pid == pid)
			return &gen->keyproc;
	}
	return NULL;
}

bool
master_gen_any_alive(const struct master *m, bool keyprocs)
{
	const struct worker_gen *gen;

	TAILQ_FOREACH(gen, &m->gens, entry)
	{
		if (gen_alive(gen) || (keyprocs && gen->keyproc.pid != 0))
			return true;
	}
	return false;
}

/* Workers that waited for a slot may have one now. */
static void
gen_fill_slots(struct master *m)
{
	if (m->active != NULL)
		master_gen_start(m->active);
	if (m->starting != NULL)
		master_gen_start(m->starting);
}

/* Retiring generations (every one when stopping) whose workers have all
 * exited: their key process goes, then they are freed. */
void
master_gen_reap_idle(struct master *m)
{
	struct worker_gen *gen, *next;
	bool freed = false;

	for (gen = TAILQ_FIRST(&m->gens); gen != NULL; gen = next) {
		next = TAILQ_NEXT(gen, entry);
		if ((gen->state != GEN_RETIRING && !m->stopping) || gen_alive(gen))
			continue;
		if (gen->keyproc.pid != 0) {
			if (!gen->keyproc_told) {
				gen->keyproc_told = true;
				kill(gen->keyproc.pid, SIGTERM);
			}
			continue;
		}
		log_info("generation=%u: every worker has exited", gen->number);
		gen_free(gen);
		freed = true;
	}
	if (freed && !m->stopping)
		gen_fill_slots(m);
}

bool
master_gen_child_exited(struct child *c)
{
	struct master *m = c->m;
	struct worker_gen *gen = c->gen;

	/* Gives back what the worker held in the shared tables; never
	 * waits for another worker (shmtab.h). */
	if (c->kind == CHILD_SMTPD && c->idx != MASTER_NO_SLOT) {
		conn_limit_reset_worker(m->limits, c->idx);
		send_limit_reset_worker(m->send_limits, c->idx);
	}
	if (gen->state != GEN_RETIRING && !m->stopping)
		return true;
	slot_give_back(m, c);
	master_gen_reap_idle(m);
	return false;
}

void
master_gen_close_in_child(const struct master *m, const struct child *c)
{
	const struct worker_gen *gen;

	TAILQ_FOREACH(gen, &m->gens, entry)
	{
		if (gen->keyproc_fd >= 0 && c != &gen->keyproc)
			close(gen->keyproc_fd);
	}
}

void
master_gen_each(struct master *m, void (*cb)(void *arg, const struct child *c), void *arg)
{
	struct worker_gen *gen;

	TAILQ_FOREACH(gen, &m->gens, entry)
	{
		if (gen->need_tls)
			cb(arg, &gen->keyproc);
		for (unsigned i = 0; i < gen->n_workers; i++)
			cb(arg, &gen->workers[i]);
	}
}

static void
gen_free(struct worker_gen *gen)
{
	struct master *m = gen->m;

	TAILQ_REMOVE(&m->gens, gen, entry);
	if (m->active == gen)
		m->active = NULL;
	if (m->starting == gen)
		m->starting = NULL;
	listen_set_release(m->listeners, gen->listen_fds, gen->n_listeners);
	for (unsigned i = 0; i < gen->n_workers; i++) {
		slot_give_back(m, &gen->workers[i]);
		event_free(gen->workers[i].restart);
	}
	event_free(gen->keyproc.restart);
	if (gen->keyproc_fd >= 0) {
		close(gen->keyproc_fd);
		unlink(gen->keyproc_path);
	}
	for (size_t i = 0; i < gen->n_listeners; i++)
		free(gen->listener_names[i]);
	if (gen->kill_deadline != NULL)
		event_free(gen->kill_deadline);
	if (gen->set != NULL && gen->set != m->set)
		settings_registry_free(gen->set);
	free(gen->listener_names);
	free(gen->limit_ids);
	free(gen->listen_fds);
	free(gen->workers);
	free(gen);
}

void
master_gen_free_all(struct master *m)
{
	struct worker_gen *gen;

	while ((gen = TAILQ_FIRST(&m->gens)) != NULL) {
		/* At exit m->set is the newest generation's: free it with it. */
		if (gen->set == m->set)
			m->set = NULL;
		gen_free(gen);
	}
}
