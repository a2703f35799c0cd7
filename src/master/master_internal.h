/* SPDX-License-Identifier: ISC */
/*
 * master_internal.h - the supervisor's state, shared by its parts:
 *
 *   master.c         start-up, the children (fork, readiness, restart,
 *                    reaping), signals, stop, daemon mode;
 *   master_gen.c     generations of SMTP workers (and of the TLS key
 *                    process that signs for them): each runs one
 *                    configuration; a reload starts a new one and retires
 *                    the old one once the new one is up (as nginx does);
 *                    the worker slots and listener rows of the shared
 *                    tables they count in;
 *   master_reload.c  the reload: load and validate the file, log what
 *                    changed, keep what needs a restart, bind, start the
 *                    new generation, hand the text to the auth process and
 *                    the queue (lib/ctlchan.h), report to systemd;
 *   listen_set.c     the listening sockets, shared across generations;
 *   control.c        root's admin commands (status, reload, stop...).
 *
 * Everything here runs in the master's one thread, on its event loop.
 */
#ifndef AUTHRELAY_MASTER_INTERNAL_H
#define AUTHRELAY_MASTER_INTERNAL_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include "master.h"
#include "privdrop.h"
#include "../lib/common.h"
#include "../metrics/metrics_config.h"
#include "../spool/spool_fs.h"

#include <event2/util.h>

struct config;
struct conn_limit;
struct control;
struct ctlchan;
struct event;
struct event_base;
struct listen_set;
struct metrics;
struct send_limit;
struct settings_set;
struct spool_gauge;
struct worker_gen;

enum child_kind { CHILD_AUTH, CHILD_SMTPD, CHILD_QUEUE, CHILD_KEYPROC, CHILD_METRICS };

/* No worker slot yet (master_gen.c hands them out). */
#define MASTER_NO_SLOT UINT32_MAX

struct child {
	struct master *m;
	enum child_kind kind;
	struct worker_gen *gen; /* a worker's or key process's generation */
	unsigned idx;           /* a worker's slot in the shared tables, or MASTER_NO_SLOT */
	pid_t pid;              /* 0 while not running */
	bool up;                /* reported itself up since it started */
	time_t started;
	unsigned backoff_ms;
	unsigned restarts; /* `authrelay status` */
	struct event *restart;
	unsigned metrics_slot; /* its slot in m->metrics while it runs */
	/* The auth process and the queue: the control channel (master's end)
	 * and the generation of the config they run, pushed and answered, or
	 * the one they were started with. */
	struct ctlchan *ctl;
	uint32_t config_gen;
	char *config_error; /* their answer to config_gen when they refused it */
};

struct master {
	const char *config_path;
	bool foreground;
	bool is_root;
	struct privdrop_user user;
	struct privdrop_user auth_user;
	struct privdrop_user queue_user;
	/* The newest configuration: what the auth process and the queue run
	 * (and restart with), and the newest generation's. Its text is what
	 * they were handed. */
	struct settings_set *set;
	char *config_text;
	size_t config_len;
	uint32_t config_gen;
	struct listen_set *listeners;
	int auth_fd;
	int alert_fds[2]; /* the alert channel: [0] auth's end, [1] the queue's */
	char auth_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int queue_ctl_fd; /* `authrelay queue` commands, for the queue process */
	char queue_ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char keyproc_root[256]; /* the key processes' chroot (and the metrics
	                         * process's), made once */
	/* [metrics] as at start: its keys need a restart (the endpoint's
	 * socket is bound once, the shared mapping sized once). */
	struct metrics_config mc;
	struct metrics *metrics; /* NULL: [metrics] address not set */
	int metrics_fd;          /* the endpoint's listening socket, or -1 */
	int control_fd;          /* bound as root, served by control */
	struct control *control; /* `authrelay status`, `reload`, ... (control.h) */
	int admin_fd;            /* a starting auth child's end of the admin channel */
	time_t started;          /* for `authrelay status` */
	/* The shared tables: workers count in them by slot, listeners by row. */
	struct conn_limit *limits;
	struct send_limit *send_limits;
	unsigned n_slots;          /* worker slots, of every generation at once */
	bool *slot_used;           /* n_slots */
	unsigned n_rows;           /* listener rows of conn_limit */
	unsigned conn_room;        /* connections the conn_limit table was sized for */
	struct spool_gauge *gauge; /* queue size, shared with workers */
	/* How a group commit round ends on the spool's file system: chosen
	 * here, where /proc and /sys can be seen (workers are chrooted). */
	enum spool_fs_sync spool_sync;
	struct event_base *base;
	struct child auth;
	struct child queue;
	struct child metrics_child;
	/* Generations of workers, oldest first: retiring ones, the active
	 * one, and a reload's until its workers are all up. */
	TAILQ_HEAD(gen_head, worker_gen) gens;
	struct worker_gen *active;
	struct worker_gen *starting;
	bool stopping;
	bool stopping_now;
	bool auth_told; /* stopping: the auth process got its SIGTERM */
	pid_t pid;      /* the master's own, after daemonizing */
	struct event *ev_sig[5];
	struct event *ev_stop_deadline;
	int ready_pipe[2]; /* children report "up" here (readiness.h) */
	struct event *ev_ready;
	bool ready;    /* the gateway has been ready once */
	int daemon_fd; /* to the shell waiting for a daemon's start, or -1 */
};

/* ---- master.c ---- */

/* A listening UNIX socket at spool_dir/name (path_r, path_size bytes), mode
 * 0600, owned by uid:gid when root. The fd, or -1 with *error_r. */
int master_bind_unix(struct master *m, const char *name, uid_t uid, gid_t gid, char *path_r,
                     size_t path_size, const char **error_r);
/* The certificate and key of cfg checked in a child that exits at once:
 * the master never has the private key in its own memory, which every
 * child it forks would inherit. 0, or -1 with *error_r and *key_r, the
 * [tls] key at fault ("cert_file", "key_file", ...; NULL when none is, as
 * tls_server_check() says): static strings, until the next call. */
int master_check_tls(struct master *m, const struct config *cfg, const char **key_r,
                     const char **error_r);
/* The key processes' chroot (spool_dir/empty, root's), made when first
 * needed. 0, or -1 with *error_r. */
int master_keyproc_root(struct master *m, const char **error_r);
/* SIGTERM, SIGINT and `authrelay stop`: stop gracefully, or at once (a
 * second one, SIGQUIT). why names it in the log. */
void master_stop(struct master *m, const char *why, bool now);

/* Fork c (a worker needs its slot) and run it. */
void master_start_child(struct child *c);
/* c->restart's callback: the back-off is over. */
void master_restart_cb(evutil_socket_t fd, short what, void *arg);
/* The one-line summary systemctl status shows, with READY=1. */
void master_notify_ready(const struct master *m, const char *what);
/* Close what a new child must not keep of the master's (the control
 * channels' master ends, the other children's ends). */
void master_child_close_fds(const struct master *m, const struct child *c);
/* What the config loaded with a warning, one log line each. */
void master_log_warnings(const struct config *cfg);
/* Worker processes a config asks for. */
unsigned master_worker_count(const struct config *cfg);
/* Publish how many children of each kind run and have reported up, and how
 * many should (the active generation's): what /healthz answers from. */
void master_metrics_processes(const struct master *m);

/* ---- master_gen.c ---- */

enum gen_state { GEN_STARTING, GEN_ACTIVE, GEN_RETIRING };

struct worker_gen {
	TAILQ_ENTRY(worker_gen) entry;
	struct master *m;
	uint32_t number;
	enum gen_state state;
	struct settings_set *set; /* its config; freed when it retires */
	/* A listener uses TLS: the generation's key process holds its key
	 * pair and signs for its workers, on its own socket. */
	bool need_tls;
	struct child keyproc;
	bool keyproc_told; /* SIGTERM sent: its workers are all gone */
	int keyproc_fd;
	char keyproc_name[32]; /* "private/keyproc.N", in spool_dir */
	char keyproc_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t n_listeners;
	int *listen_fds;     /* per listener, held in m->listeners */
	unsigned *limit_ids; /* per listener: its row in m->limits */
	char **listener_names;
	struct child *workers;
	unsigned n_workers;
	unsigned shutdown_timeout;
	struct event *kill_deadline; /* retiring: SIGKILL what is left */
};

/* Size the shared tables for the first configuration (before any fork). */
void master_gen_tables_init(struct master *m, const struct config *cfg);
void master_gen_tables_free(struct master *m);
/* A generation for set (taken over on success): binds or reuses its
 * listeners, gives each a row. NULL with *error_r (nothing taken). Its
 * workers are not started yet. */
struct worker_gen *master_gen_new(struct master *m, struct settings_set *set, unsigned n_workers,
                                  const char **error_r);
/* Start the workers of gen that have no process (as slots allow). */
void master_gen_start(struct worker_gen *gen);
/* Is every worker of gen up? */
bool master_gen_up(const struct worker_gen *gen);
/* gen becomes the active one; the active one before it retires. */
void master_gen_activate(struct worker_gen *gen);
/* Stop accepting and finish the sessions (a reload's old generation, or a
 * starting one that another reload replaced). */
void master_gen_retire(struct worker_gen *gen);
/* Send sig to every worker of every generation (with keyprocs: to their
 * key processes too). */
void master_gen_signal_all(struct master *m, int sig, bool keyprocs);
/* The worker or key process with this pid, or NULL. */
struct child *master_gen_find(struct master *m, pid_t pid);
/* A worker or key process exited: give back a worker's share of the
 * shared tables; restart it (return true: the caller schedules it) or,
 * when its generation retires or the master stops, forget it: a key
 * process is told to go once its generation's last worker has gone, and
 * the generation is freed with its last process (false; c may be gone). */
bool master_gen_child_exited(struct child *c);
/* Key processes of retiring generations (of all, when stopping) whose
 * workers have all exited are told to go; generations with no process
 * left are freed. */
void master_gen_reap_idle(struct master *m);
/* Any worker (with keyprocs: or key process) running? */
bool master_gen_any_alive(const struct master *m, bool keyprocs);
/* In a new child: close every generation's key process socket but the
 * child's own (a key process's). */
void master_gen_close_in_child(const struct master *m, const struct child *c);
/* Each child of every generation, for `authrelay status`. */
void master_gen_each(struct master *m, void (*cb)(void *arg, const struct child *c), void *arg);
/* Free every generation (at exit). */
void master_gen_free_all(struct master *m);

/* ---- master_reload.c ---- */

/* Reload: SIGHUP and `authrelay reload` call this. Reads and validates the
 * file; on success starts a new generation of workers and hands the
 * configuration to the auth process and the queue, and returns 0; on
 * failure the running configuration stays, the errors go to the log and
 * to systemd's STATUS=, and -1 is returned with them in *errors_r (if not
 * NULL; malloc'd). */
int master_reload(struct master *m, char **errors_r);
/* Called as children report: once the starting generation, the auth
 * process and the queue are all up with the newest config, finish the
 * start or the reload (READY=1). */
void master_reload_check(struct master *m);
/* The control channel to c (auth or queue), made before its fork: the
 * child's end in *child_fd_r. -1 on failure (logged). */
int master_reload_channel(struct child *c, int *child_fd_r);

#endif
