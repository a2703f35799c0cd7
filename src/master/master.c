/* SPDX-License-Identifier: ISC */
/*
 * master.c - the supervisor. It reads and validates the config, prepares the
 * spool, binds every listening socket and the auth socket while still root,
 * then starts the unprivileged children:
 *
 *   auth     one process, user auth_user, holds the credential stores;
 *   smtpd    `workers` processes, user `user`, chrooted into the spool,
 *            each accepting on all listeners: one generation per
 *            configuration (master_gen.c);
 *   queue    one process, user queue_user, owns the spool after the 250
 *            and delivers (src/queue/);
 *   keyproc  one per generation of workers when a listener uses TLS, user
 *            auth_user, chrooted into an empty directory: the only one
 *            holding the TLS private key; it signs the workers' handshakes
 *            (src/keyproc/);
 *   metrics  one process when [metrics] address is set, user `user`,
 *            chrooted into the same empty directory: the HTTP endpoint
 *            (src/metrics/). Every process counts in a slot of a shared
 *            mapping made here before any fork (lib/metrics.h); the master
 *            gives each child a slot and takes it back when it dies, so
 *            counters survive restarts and reloads, and publishes which
 *            children run.
 *
 * Each child sets PR_SET_NO_NEW_PRIVS and its seccomp allow-list right
 * after the drop (src/lib/sandbox.h); a call outside it kills the child
 * with SIGSYS, which is logged by name like any other death.
 *
 * It restarts a child that dies (with back-off). SIGHUP reloads
 * (master_reload.c): a new generation of workers, the auth process and the
 * queue in place. SIGTERM stops: the workers stop accepting, answer idle
 * sessions 421 4.3.2 and let a message in DATA finish within
 * shutdown_timeout, the queue lets its deliveries finish, then the auth
 * process goes (it may still be needed by a session finishing its AUTH); a
 * second SIGTERM, or SIGQUIT, stops everything at once. Nothing that got a
 * 250 is lost either way: it is in the spool. The master itself never reads
 * a byte from the network. Root's admin commands (`authrelay status`,
 * `reload`, `stop`...) reach it on its control socket (control.c), which
 * calls master_reload() and master_stop() as the signals do.
 *
 * It is "ready" once every child has reported itself up (readiness.h):
 * only then does it tell systemd (READY=1, sdnotify.h), or let the shell
 * that started a daemon return. Start-up errors also go to stderr when the
 * log is syslog, so that `authrelay -f` and the journal show them.
 */
#include "master_internal.h"
#include "control.h"
#include "listen_set.h"
#include "privdrop.h"
#include "settings_registry.h"
#include "../auth/auth_server.h"
#include "../auth/protection_config.h"
#include "../keyproc/keyproc.h"
#include "../keyproc/keyproc_client.h"
#include "../keyproc/keyproc_keys.h"
#include "../lib/config.h"
#include "../lib/ctlchan.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/readiness.h"
#include "../lib/sandbox.h"
#include "../lib/sdnotify.h"
#include "../lib/spawner.h"
#include "../metrics/metric.h"
#include "../metrics/metrics_config.h"
#include "../metrics/metrics_http.h"
#include "../queue/queue.h"
#include "../queue/queue_config.h"
#include "../smtpd/conn_limit.h"
#include "../smtpd/smtpd.h"
#include "../smtpd/tls.h"
#include "../spool/spool.h"
#include "../spool/spool_fs.h"
#include "../spool/spool_gauge.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define AUTH_SOCKET_NAME "private/auth"
#define QUEUE_SOCKET_NAME "private/queue"
/* The key processes' chroot, in the spool: empty, owned by root. */
#define KEYPROC_ROOT_NAME "empty"
/* How long a worker's handshake waits for its signature. A restart of the
 * key process takes RESTART_MIN_MS; one that keeps failing is not waited for. */
#define KEYPROC_TIMEOUT_MS 5000
/* Pool threads of a key process for RSA signatures, at most. */
#define KEYPROC_MAX_THREADS 8
/* Back-off between restarts of a child that keeps dying. */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 30000
/* A child that ran this long is considered healthy again. */
#define STABLE_SECONDS 30
/* Past shutdown_timeout, what the children get before SIGKILL. */
#define STOP_GRACE_SECONDS 10
/* How long the shell that started a daemon waits for it to be ready. */
#define DAEMON_READY_SECONDS 60

/* A start-up error: to the log and, when the log is syslog, to stderr as
 * well, where the admin who ran the command (or the journal) sees it at
 * once. status is one of <sysexits.h> (see lib/build_info.h). */
static void master_fail(const struct master *m, int status, const char *fmt, ...)
        AR_PRINTF(3, 4) AR_NORETURN;

static void
master_fail(const struct master *m, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const struct config *cfg = m->set != NULL ? m->set->cfg : NULL;
	if (cfg == NULL || cfg->use_syslog)
		fprintf(stderr, "authrelay: %s\n", msg);
	if (cfg != NULL)
		log_err("%s", msg);
	sdnotify("STATUS=failed to start: %s", msg);
	exit(status);
}

/* The metrics endpoint's socket, bound like a listener's ([metrics]
 * address, numeric; "*:PORT" and "[::]:PORT" take IPv4 too). */
static int
master_bind_metrics(const struct metrics_config *mc, const char **error_r)
{
	static char err[256];
	int on = 1, fd = socket(mc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (mc->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&mc->addr;
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	if (bind(fd, (const struct sockaddr *)&mc->addr, mc->addrlen) != 0 || listen(fd, 64) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "[metrics] address %s: %s", mc->address, strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* A listening UNIX socket at spool_dir/name (path_r), mode 0600, owned by
 * uid:gid when root. The master binds the spool's sockets in private/,
 * which is root's (spool.h): no child can put another socket in their
 * place. It keeps them open, so a restarted child takes over without its
 * clients noticing more than a reconnect. */
int
master_bind_unix(struct master *m, const char *name, uid_t uid, gid_t gid, char *path_r,
                 size_t path_size, const char **error_r)
{
	static char err[256];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(path_r, path_size, "%s/%s", m->set->cfg->spool_dir, name);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path) || (size_t)n >= path_size) {
		*error_r = "spool_dir is too long for a UNIX socket path";
		return -1;
	}
	memcpy(sun.sun_path, path_r, (size_t)n + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	unlink(path_r);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		goto fail;
	if (chmod(path_r, 0600) != 0)
		goto fail;
	if (m->is_root && chown(path_r, uid, gid) != 0)
		goto fail;
	if (listen(fd, 256) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "socket %s: %s", path_r, strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
}

int
master_check_tls(struct master *m, const struct config *cfg, const char **key_r,
                 const char **error_r)
{
	/* The child's report: the [tls] key at fault (or nothing), a newline,
	 * then the message. */
	static char buf[1024], key[64];
	int p[2], status = 1 << 8;
	ssize_t n;

	*key_r = NULL;
	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(buf, sizeof(buf), "pipe: %s", strerror(errno));
		*error_r = buf;
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(buf, sizeof(buf), "fork: %s", strerror(errno));
		*error_r = buf;
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		const char *k = NULL, *e = NULL;
		close(p[0]);
		if (tls_server_check(cfg, &k, &e) == 0)
			_exit(0);
		if (k != NULL)
			(void)write_all(p[1], k, strlen(k));
		(void)write_all(p[1], "\n", 1);
		(void)write_all(p[1], e, strlen(e));
		_exit(1);
	}
	close(p[1]);
	size_t len = 0;
	while (len < sizeof(buf) - 1 && ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0 ||
	                                 (n < 0 && errno == EINTR)))
		len += n > 0 ? (size_t)n : 0;
	buf[len] = '\0';
	close(p[0]);
	/* The master's SIGCHLD handler may not reap it: this pid is waited
	 * for here, and only here. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char *nl = strchr(buf, '\n');
	if (nl == NULL || nl[1] == '\0') {
		snprintf(buf, sizeof(buf), "the certificate check died");
		*error_r = buf;
		return -1;
	}
	*nl = '\0';
	size_t klen = (size_t)(nl - buf);
	if (klen > 0 && klen < sizeof(key)) {
		memcpy(key, buf, klen + 1);
		*key_r = key;
	}
	*error_r = nl + 1;
	return -1;
}

int
master_keyproc_root(struct master *m, const char **error_r)
{
	static char err[512];
	struct stat st;

	if (m->keyproc_root[0] != '\0')
		return 0;
	int n = snprintf(m->keyproc_root, sizeof(m->keyproc_root), "%s/%s", m->set->cfg->spool_dir,
	                 KEYPROC_ROOT_NAME);
	if (n < 0 || (size_t)n >= sizeof(m->keyproc_root)) {
		*error_r = "spool_dir is too long";
		goto fail_quiet;
	}
	if (mkdir(m->keyproc_root, 0555) != 0 && errno != EEXIST)
		goto fail;
	if (lstat(m->keyproc_root, &st) != 0)
		goto fail;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	if ((st.st_uid != 0 || st.st_gid != 0) && chown(m->keyproc_root, 0, 0) != 0)
		goto fail;
	if ((st.st_mode & 07777) != 0555 && chmod(m->keyproc_root, 0555) != 0)
		goto fail;
	return 0;
fail:
	snprintf(err, sizeof(err), "%s: %s", m->keyproc_root, strerror(errno));
	*error_r = err;
fail_quiet:
	m->keyproc_root[0] = '\0';
	return -1;
}

/* Install the child's system-call allow-list (sandbox.h), unless the
 * config turned it off. */
static void
child_sandbox(const struct master *m, enum sandbox_kind kind)
{
	const char *err;

	if (!m->set->cfg->sandbox)
		return;
	if (sandbox_apply(kind, &err) != 0)
		fatal("sandbox: %s", err);
}

/* The signals the master handles; blocked around fork() (see
 * master_start_child()). */
static const int master_sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT};

/* In a new child: forget the master's signal handling (libevent's handlers
 * would write into the master's signal pipe), take the signals that waited
 * for it, and die with the master. */
static void
child_setup_signals(void)
{
	for (size_t i = 0; i < AR_NELEM(master_sigs); i++)
		signal(master_sigs[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* After privdrop_apply(): changing uid or gid clears PR_SET_PDEATHSIG
 * (prctl(2)), so set it again, and leave now if the master died meanwhile.
 * Without this a child outlives a master killed with SIGKILL. */
static void
child_after_drop(const struct master *m)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(0);
}

static void
close_ctl(const struct child *c)
{
	if (c->ctl != NULL)
		close(ctlchan_fd(c->ctl));
}

void
master_child_close_fds(const struct master *m, const struct child *c)
{
	/* Only a worker keeps listening sockets, and only its generation's. */
	if (c->kind == CHILD_SMTPD)
		listen_set_close_in_child(m->listeners, c->gen->listen_fds, c->gen->n_listeners);
	else
		listen_set_close_in_child(m->listeners, NULL, 0);
	/* The control channels' master ends: a child writing there would be
	 * taken for the master. */
	close_ctl(&m->auth);
	close_ctl(&m->queue);
	if (c->kind != CHILD_AUTH) {
		close(m->auth_fd);
		close(m->alert_fds[0]);
	}
	if (c->kind != CHILD_QUEUE) {
		close(m->alert_fds[1]);
		close(m->queue_ctl_fd);
	}
	/* No child may hold the control socket, its clients or the master's
	 * end of the admin channel, nor another key process's socket. */
	control_close_in_child(m->control);
	master_gen_close_in_child(m, c);
}

static AR_NORETURN void
child_run_auth(struct master *m, int ctl_fd)
{
	struct config *cfg = m->set->cfg;
	char *workdir = NULL;

	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "auth");
	/* Work from the users file's directory: after the privilege drop the
	 * file (readable by auth_user) is still reachable for a reload even
	 * when a parent directory is closed to auth_user. */
	if (cfg->users_file != NULL) {
		char *slash = strrchr(cfg->users_file, '/');
		if (slash != NULL) {
			*slash = '\0';
			workdir = xstrdup(*cfg->users_file ? cfg->users_file : "/");
			if (chdir(workdir) != 0)
				fatal("chdir %s: %s", workdir, strerror(errno));
			memmove(cfg->users_file, slash + 1, strlen(slash + 1) + 1);
		}
	}
	if (m->is_root)
		privdrop_apply(&m->auth_user, NULL);
	child_after_drop(m);
	/* It holds secrets: no core dumps, no ptrace by the same uid. */
	prctl(PR_SET_DUMPABLE, 0);
	child_sandbox(m, SANDBOX_AUTH);
	exit(auth_server_main(cfg, m->auth_fd, m->alert_fds[0], m->admin_fd, ctl_fd, workdir));
}

static AR_NORETURN void
child_run_smtpd(struct master *m, const struct child *c)
{
	const struct worker_gen *gen = c->gen;
	const struct settings_set *set = gen->set;
	const struct config *cfg = set->cfg;
	SSL_CTX *tls = NULL;
	const char *err;

	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "smtpd");
	bool chrooted = m->is_root && cfg->chroot;
	struct keyproc_client *kc = NULL;
	if (gen->need_tls) {
		/* This generation's certificate chain, read while still root,
		 * for every session it serves; the private key stays with
		 * this generation's key process. */
		char kp_path[sizeof(gen->keyproc_path)];
		if (chrooted)
			snprintf(kp_path, sizeof(kp_path), "/%s", gen->keyproc_name);
		else
			snprintf(kp_path, sizeof(kp_path), "%s", gen->keyproc_path);
		kc = keyproc_client_new(kp_path, KEYPROC_TIMEOUT_MS);
		tls = tls_server_ctx_new(cfg, kc, &err);
		if (tls == NULL)
			fatal("tls: [tls] %s", err);
	}
	if (m->is_root)
		privdrop_apply(&m->user, chrooted ? cfg->spool_dir : NULL);
	child_after_drop(m);
	child_sandbox(m, SANDBOX_SMTPD);
	char auth_path[sizeof(m->auth_path)];
	snprintf(auth_path, sizeof(auth_path), "%s",
	         chrooted ? "/" AUTH_SOCKET_NAME : m->auth_path);
	struct smtpd_params p = {
	        .cfg = cfg,
	        .worker = c->idx,
	        .listen_fds = gen->listen_fds,
	        .limits = m->limits,
	        .limit_ids = gen->limit_ids,
	        .tls = tls,
	        .keyproc = kc,
	        .spool_dir = chrooted ? "/" : cfg->spool_dir,
	        .auth_socket = auth_path,
	        .queue_gauge = m->gauge,
	        .send_limits = m->send_limits,
	        .group_commit = set->qc->group_commit,
	        .spool_sync = m->spool_sync,
	        .protection =
	                {
	                        .sender_allow_users = set->prot.sender_allow_users,
	                        .n_sender_allow_users = set->prot.n_sender_allow_users,
	                        .messages_per_hour = set->prot.messages_per_hour,
	                        .recipients_per_hour = set->prot.recipients_per_hour,
	                        .lockout_reply = set->prot.lockout_reply,
	                },
	};
	exit(smtpd_main(&p));
}

/* The queue process, as queue_user. Not chrooted: maildir routes write
 * outside the spool. It holds no secret and reads nothing from untrusted
 * peers but SMTP replies, DNS answers and the files the workers made. */
static AR_NORETURN void
child_run_queue(struct master *m, int ctl_fd)
{
	const struct settings_set *set = m->set;
	const char *err;

	log_init(set->cfg->use_syslog, (enum log_level)set->cfg->log_level, "queue");
	if (m->is_root)
		privdrop_apply(&m->queue_user, NULL);
	child_after_drop(m);
	/* The alert hook's shell cannot run under the allow-list: a helper
	 * forked now runs it (spawner.h). */
	if (set->cfg->sandbox && set->prot.alerts.hook != NULL &&
	    spawner_start(set->prot.alerts.hook, &err) != 0)
		fatal("alert hook helper: %s", err);
	child_sandbox(m, SANDBOX_QUEUE);
	struct queue_params p = {
	        .cfg = set->cfg,
	        .qc = set->qc,
	        .spool_dir = set->cfg->spool_dir,
	        .gauge = m->gauge,
	        .alert_fd = m->alert_fds[1],
	        .alert_hook = set->prot.alerts.hook,
	        .worker_uid = m->is_root ? m->user.uid : geteuid(),
	        .ctl_fd = m->queue_ctl_fd,
	        .ctlchan_fd = ctl_fd,
	};
	exit(queue_main(&p));
}

/* The key process of a generation: loads that configuration's TLS key as
 * root, then holds it as auth_user in an empty chroot, not dumpable, with
 * no socket but its listening one. Like the auth process it holds a secret
 * the workers must never read; unlike it, it talks to nothing but the
 * workers of its generation. */
static AR_NORETURN void
child_run_keyproc(struct master *m, const struct child *c)
{
	const struct worker_gen *gen = c->gen;
	const struct config *cfg = gen->set->cfg;
	const char *err;

	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "keyproc");
	prctl(PR_SET_DUMPABLE, 0);
	struct keyproc_keys *keys = keyproc_keys_new();
	if (keyproc_keys_load(keys, cfg->tls_cert_file, cfg->tls_key_file, &err) != 0)
		fatal("keyproc: %s", err);
	if (m->is_root)
		privdrop_apply(&m->auth_user, m->keyproc_root);
	child_after_drop(m);
	prctl(PR_SET_DUMPABLE, 0);
	child_sandbox(m, SANDBOX_KEYPROC);
	unsigned threads =
	        gen->n_workers < KEYPROC_MAX_THREADS ? gen->n_workers : KEYPROC_MAX_THREADS;
	struct keyproc_params p = {
	        .keys = keys,
	        .listen_fd = gen->keyproc_fd,
	        .threads = threads > 0 ? threads : 1,
	};
	exit(keyproc_main(&p));
}

/* The metrics process: the HTTP endpoint, as `user` in the empty chroot,
 * not dumpable, with the counters mapped read-only. It holds no secret and
 * no mail; it reads the shared counters and answers allowed clients. */
static AR_NORETURN void
child_run_metrics(struct master *m)
{
	const struct config *cfg = m->set->cfg;

	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "metrics");
	if (m->is_root)
		privdrop_apply(&m->user, m->keyproc_root);
	child_after_drop(m);
	prctl(PR_SET_DUMPABLE, 0);
	if (metrics_readonly(m->metrics) != 0)
		fatal("metrics: mprotect: %s", strerror(errno));
	child_sandbox(m, SANDBOX_METRICS);
	struct metrics_http_params p = {
	        .metrics = m->metrics,
	        .listen_fd = m->metrics_fd,
	        .allow = m->mc.allow,
	        .n_allow = m->mc.n_allow,
	        .timeout = m->mc.timeout,
	};
	exit(metrics_http_main(&p));
}

static const char *
child_name(const struct child *c)
{
	switch (c->kind) {
	case CHILD_AUTH:
		return "auth";
	case CHILD_QUEUE:
		return "queue";
	case CHILD_KEYPROC:
		return "keyproc";
	case CHILD_METRICS:
		return "metrics";
	case CHILD_SMTPD:
		break;
	}
	return "smtpd";
}

static enum metric_process
child_metric_process(const struct child *c)
{
	static const enum metric_process kinds[] = {
	        [CHILD_AUTH] = MP_AUTH,       [CHILD_SMTPD] = MP_SMTPD,
	        [CHILD_QUEUE] = MP_QUEUE,     [CHILD_KEYPROC] = MP_KEYPROC,
	        [CHILD_METRICS] = MP_METRICS,
	};
	return kinds[c->kind];
}

void
master_metrics_processes(const struct master *m)
{
	unsigned up[MP_COUNT] = {0}, want[MP_COUNT] = {0};
	const struct child *one[] = {&m->auth, &m->queue, &m->metrics_child};
	/* The generation that serves: the active one (the first while it
	 * starts); retiring ones are on their way out. */
	const struct worker_gen *gen = m->active != NULL ? m->active : m->starting;

	if (m->metrics == NULL)
		return;
	want[MP_AUTH] = want[MP_QUEUE] = want[MP_METRICS] = 1;
	for (size_t i = 0; i < AR_NELEM(one); i++)
		up[child_metric_process(one[i])] += one[i]->pid != 0 && one[i]->up;
	if (gen != NULL) {
		want[MP_SMTPD] = gen->n_workers;
		want[MP_KEYPROC] = gen->need_tls;
		for (unsigned i = 0; i < gen->n_workers; i++)
			up[MP_SMTPD] += gen->workers[i].pid != 0 && gen->workers[i].up;
		up[MP_KEYPROC] += gen->need_tls && gen->keyproc.pid != 0 && gen->keyproc.up;
	}
	for (unsigned p = 0; p < MP_COUNT; p++) {
		metrics_set(M_PROCESSES_UP, up[p], p);
		metrics_set(M_PROCESSES_EXPECTED, want[p], p);
	}
}

void
master_start_child(struct child *c)
{
	struct master *m = c->m;
	int ctl_fd = -1, admin[2] = {-1, -1};
	sigset_t all, old;

	if ((c->kind == CHILD_AUTH || c->kind == CHILD_QUEUE) &&
	    master_reload_channel(c, &ctl_fd) < 0)
		return;
	/* The auth process gets a new admin channel at each start; its other
	 * end is the master's alone (control.h). */
	if (c->kind == CHILD_AUTH &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, admin) < 0)
		log_err("admin channel: socketpair: %s", strerror(errno));
	if (m->metrics != NULL)
		c->metrics_slot = metrics_slot_claim(m->metrics);
	/* Signals wait until the child has let go of the master's handlers:
	 * a SIGHUP meant for it must not reach the master's signal pipe. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		child_setup_signals();
		close(m->ready_pipe[0]);
		readiness_set_fd(m->ready_pipe[1]);
		if (m->daemon_fd >= 0)
			close(m->daemon_fd);
		master_child_close_fds(m, c);
		if (m->metrics != NULL)
			metrics_attach(m->metrics, c->metrics_slot);
		if (m->metrics_fd >= 0 && c->kind != CHILD_METRICS)
			close(m->metrics_fd);
		if (admin[0] >= 0)
			close(admin[0]);
		m->admin_fd = admin[1];
		if (c->kind == CHILD_AUTH)
			child_run_auth(m, ctl_fd);
		if (c->kind == CHILD_QUEUE)
			child_run_queue(m, ctl_fd);
		if (c->kind == CHILD_KEYPROC)
			child_run_keyproc(m, c);
		if (c->kind == CHILD_METRICS)
			child_run_metrics(m);
		child_run_smtpd(m, c);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (ctl_fd >= 0)
		close(ctl_fd);
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		if (admin[0] >= 0) {
			close(admin[0]);
			close(admin[1]);
		}
		if (m->metrics != NULL)
			metrics_slot_release(m->metrics, c->metrics_slot);
		return;
	}
	if (admin[0] >= 0) {
		close(admin[1]);
		control_set_auth(m->control, admin[0]);
	}
	c->pid = pid;
	c->up = false;
	c->started = time(NULL);
	if (c->kind == CHILD_SMTPD) {
		log_info("started smtpd worker=%u generation=%u pid=%d", c->idx, c->gen->number,
		         (int)pid);
		return;
	}
	if (c->kind == CHILD_KEYPROC) {
		log_info("started keyproc pid=%d generation=%u", (int)pid, c->gen->number);
		return;
	}
	if (c->kind == CHILD_METRICS) {
		log_info("started metrics pid=%d", (int)pid);
		return;
	}
	/* It runs the newest config from its start. */
	c->config_gen = m->config_gen;
	free(c->config_error);
	c->config_error = NULL;
	log_info("started %s pid=%d", child_name(c), (int)pid);
}

void
master_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;

	if (c->m->stopping || c->pid != 0)
		return;
	if (c->kind == CHILD_SMTPD || c->kind == CHILD_KEYPROC)
		master_gen_start(c->gen);
	else
		master_start_child(c);
}

static struct child *
master_find_child(struct master *m, pid_t pid)
{
	if (m->auth.pid == pid)
		return &m->auth;
	if (m->queue.pid == pid)
		return &m->queue;
	if (m->metrics_child.pid == pid)
		return &m->metrics_child;
	return master_gen_find(m, pid);
}

static bool
master_children_alive(const struct master *m)
{
	return m->auth.pid != 0 || m->queue.pid != 0 || m->metrics_child.pid != 0 ||
	       master_gen_any_alive(m, true);
}

/* Stopping: once no worker is left, no session needs the auth process nor
 * a key process. */
static void
master_stop_helpers(struct master *m)
{
	if (!m->stopping)
		return;
	master_gen_reap_idle(m);
	if (m->auth.pid != 0 && !master_gen_any_alive(m, false) && !m->auth_told) {
		log_info("stopping auth: every worker has exited");
		m->auth_told = true;
		kill(m->auth.pid, SIGTERM);
	}
}

static void
master_reap(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *c = master_find_child(m, pid);
		if (c == NULL)
			continue;
		const char *name = child_name(c);
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
			/* The kernel killed it for a call outside its sandbox
			 * (sandbox.h): a bug, or an attack on it. */
			log_err("%s pid=%d killed by signal %d (SIGSYS): a system call outside "
			        "its sandbox",
			        name, (int)pid, SIGSYS);
		else if (WIFSIGNALED(status))
			log_info("%s pid=%d killed by signal %d (SIG%s)", name, (int)pid,
			         WTERMSIG(status),
			         sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status))
			                                        : "?");
		else
			log_info("%s pid=%d exited status=%d", name, (int)pid, WEXITSTATUS(status));
		c->pid = 0;
		c->up = false;
		/* Its gauges go; its counters stay for the next one. */
		if (m->metrics != NULL)
			metrics_slot_release(m->metrics, c->metrics_slot);
		if (c->kind == CHILD_AUTH || c->kind == CHILD_QUEUE || c->kind == CHILD_METRICS) {
			ctlchan_free(c->ctl);
			c->ctl = NULL;
		} else if (!master_gen_child_exited(c)) {
			/* A retiring generation's process: done (c may be gone). */
			master_metrics_processes(m);
			master_stop_helpers(m);
			continue;
		}
		master_metrics_processes(m);
		if (m->stopping) {
			master_stop_helpers(m);
			continue;
		}
		/* Back-off: a child that dies right after its start waits longer
		 * each time; one that ran for a while restarts at once. */
		if (time(NULL) - c->started >= STABLE_SECONDS)
			c->backoff_ms = RESTART_MIN_MS;
		else
			c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : RESTART_MIN_MS;
		if (c->backoff_ms > RESTART_MAX_MS)
			c->backoff_ms = RESTART_MAX_MS;
		struct timeval tv = {c->backoff_ms / 1000, (long)(c->backoff_ms % 1000) * 1000};
		log_info("restarting %s in %u ms", name, c->backoff_ms);
		c->restarts++;
		metrics_inc(M_PROCESS_RESTARTS, child_metric_process(c));
		sdnotify("STATUS=%s pid=%d %s %d, restarting in %u ms", name, (int)pid,
		         WIFSIGNALED(status) ? "killed by signal" : "exited status",
		         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
		         c->backoff_ms);
		evtimer_add(c->restart, &tv);
	}
	if (m->stopping && !master_children_alive(m))
		event_base_loopexit(m->base, NULL);
}

void
master_notify_ready(const struct master *m, const char *what)
{
	if (!m->ready)
		return;
	sdnotify("READY=1\nSTATUS=%s: %zu listeners, %u workers, auth and queue up", what,
	         m->set->cfg->n_listeners, m->active != NULL ? m->active->n_workers : 0);
}

/* Children report themselves up on the readiness pipe; each report may
 * finish the start or a reload (master_reload_check()). */
static void
master_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	pid_t pids[16];
	int n;
	while ((n = readiness_read(fd, pids, (int)AR_NELEM(pids))) > 0) {
		for (int i = 0; i < n; i++) {
			struct child *c = master_find_child(m, pids[i]);
			if (c != NULL)
				c->up = true;
		}
	}
	master_reload_check(m);
	master_metrics_processes(m);
}

static void
master_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	log_warn("children did not stop in time: killing them");
	master_gen_signal_all(m, SIGKILL, true);
	if (m->auth.pid != 0)
		kill(m->auth.pid, SIGKILL);
	if (m->queue.pid != 0)
		kill(m->queue.pid, SIGKILL);
	if (m->metrics_child.pid != 0)
		kill(m->metrics_child.pid, SIGKILL);
}

void
master_log_warnings(const struct config *cfg)
{
	for (const char *p = cfg->warnings; p != NULL && *p != '\0';) {
		size_t n = strcspn(p, "\n");
		log_warn("%.*s", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

void
master_stop(struct master *m, const char *why, bool now)
{
	now |= m->stopping;
	if (!m->stopping) {
		struct worker_gen *gen;
		unsigned timeout = m->set->cfg->shutdown_timeout;
		TAILQ_FOREACH(gen, &m->gens, entry)
		{
			if (gen->shutdown_timeout > timeout)
				timeout = gen->shutdown_timeout;
		}
		log_info("stopping (%s) shutdown_timeout=%u", why, timeout);
		sdnotify("STOPPING=1\nSTATUS=stopping (%s)", why);
		m->stopping = true;
		/* The ports close as soon as the workers let go of them: a
		 * connection is refused rather than left waiting in a backlog
		 * nobody accepts from any more. */
		listen_set_close(m->listeners);
		struct timeval grace = {(time_t)timeout + STOP_GRACE_SECONDS, 0};
		evtimer_add(m->ev_stop_deadline, &grace);
	}
	/* Nothing to finish there: the endpoint goes at once. */
	if (m->metrics_child.pid != 0)
		kill(m->metrics_child.pid, SIGTERM);
	if (now) {
		if (m->stopping_now)
			return;
		m->stopping_now = true;
		log_info("stopping at once (%s)", why);
		master_gen_signal_all(m, SIGQUIT, false);
		if (m->queue.pid != 0)
			kill(m->queue.pid, SIGQUIT);
	} else {
		master_gen_signal_all(m, SIGTERM, false);
		if (m->queue.pid != 0)
			kill(m->queue.pid, SIGTERM);
	}
	master_reap(m);
	master_stop_helpers(m);
	if (!master_children_alive(m))
		event_base_loopexit(m->base, NULL);
}

static void
master_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	char why[32];

	switch (sig) {
	case SIGCHLD:
		master_reap(m);
		break;
	case SIGHUP:
		(void)master_reload(m, NULL);
		break;
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
		snprintf(why, sizeof(why), "signal %d", (int)sig);
		master_stop(m, why, sig == SIGQUIT);
		break;
	}
}

/* ------------------------------------------------ the control socket's hooks */

struct status_walk {
	struct control_status *st;
	size_t cap;
};

static void
status_child(void *arg, const struct child *c)
{
	struct status_walk *w = arg;

	if (w->st->n_children == w->cap) {
		w->cap *= 2;
		w->st->children = xrealloc(w->st->children, w->cap * sizeof(*w->st->children));
	}
	w->st->children[w->st->n_children++] = (struct control_child){
	        .kind = child_name(c),
	        .index = c->kind == CHILD_SMTPD ? c->idx : 0,
	        .pid = c->pid,
	        .up = c->up,
	        .restarts = c->restarts,
	};
}

static void
master_ctl_status(void *arg, struct control_status *st)
{
	struct master *m = arg;
	const struct config *cfg = m->set->cfg;
	/* The listeners the gateway answers on now: the active generation's
	 * (the newest while it starts). */
	const struct worker_gen *gen = m->active != NULL ? m->active : m->starting;

	st->pid = m->pid;
	st->started = (int64_t)m->started;
	st->generation = m->config_gen;
	st->n_listeners = cfg->n_listeners;
	st->listeners = xcalloc(cfg->n_listeners + 1, sizeof(*st->listeners));
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_cfg *l = &cfg->listeners[i];
		unsigned sessions = 0;
		for (size_t j = 0; gen != NULL && j < gen->n_listeners; j++)
			if (ascii_strcasecmp(gen->listener_names[j], l->name) == 0)
				sessions = conn_limit_total(m->limits, gen->limit_ids[j]);
		st->listeners[i] = (struct control_listener){
		        .name = l->name,
		        .address = l->address_text,
		        .role = config_role_name(l->role),
		        .tls = config_tls_name(l->tls),
		        .sessions = sessions,
		};
	}
	struct status_walk w = {.st = st, .cap = 8};
	st->children = xcalloc(w.cap, sizeof(*st->children));
	st->n_children = 0;
	status_child(&w, &m->auth);
	status_child(&w, &m->queue);
	if (m->metrics != NULL)
		status_child(&w, &m->metrics_child);
	master_gen_each(m, status_child, &w);
}

static int
master_ctl_reload(void *arg, char **error_r)
{
	return master_reload(arg, error_r);
}

static void
master_ctl_stop(void *arg)
{
	master_stop(arg, "authrelay stop", false);
}

static const struct control_ops master_ctl_ops = {
        .status = master_ctl_status,
        .reload = master_ctl_reload,
        .stop = master_ctl_stop,
};

/* The shell's side of a daemon's start: wait until the daemon is ready
 * (exit 0), died first (its exit status), or is still not ready after
 * DAEMON_READY_SECONDS (EX_TEMPFAIL: it goes on trying, the log says why).
 * By then the daemon has written its pid file. */
static AR_NORETURN void
master_wait_daemon(pid_t pid, int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int r, status;
	char ok;
	do
		r = poll(&pfd, 1, DAEMON_READY_SECONDS * 1000);
	while (r < 0 && errno == EINTR);
	if (r > 0 && read(fd, &ok, 1) == 1)
		_exit(0);
	if (r == 0) {
		fprintf(stderr,
		        "authrelay: not ready after %d s; pid %d goes on trying (see the log)\n",
		        DAEMON_READY_SECONDS, (int)pid);
		_exit(EX_TEMPFAIL);
	}
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		_exit(WEXITSTATUS(status));
	fprintf(stderr, "authrelay: the daemon stopped before it was ready (see the log)\n");
	_exit(1);
}

/* Which call ends a group commit round on the spool's file system
 * (spool_fs.h); logged once for all workers. */
static void
master_spool_sync(struct master *m)
{
	char desc[160], path[4200];
	snprintf(path, sizeof(path), "%s/incoming", m->set->cfg->spool_dir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		/* spool_init_dirs() just made it; the workers will fail on it. */
		m->spool_sync = SPOOL_FS_SYNC_FS;
		return;
	}
	m->spool_sync = spool_fs_sync_method(fd, desc, sizeof(desc));
	close(fd);
	log_info("spool dir=%s fs=\"%s\" commit_sync=%s", m->set->cfg->spool_dir, desc,
	         spool_fs_sync_name(m->spool_sync));
}

static void
master_daemonize(struct master *m)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		master_fail(m, EX_TEMPFAIL, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		master_fail(m, EX_TEMPFAIL, "fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		master_wait_daemon(pid, p[0]);
	}
	close(p[0]);
	m->daemon_fd = p[1];
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

static void
master_write_pid(const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		log_warn("pid_file %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

/* libevent's own messages go through our logger. Children inherit the
 * master's event_base and never use it; the warning that their new base now
 * owns signal handling says just that, so it is only debug. */
static void
master_libevent_log(int severity, const char *msg)
{
	if (strncmp(msg, "Added a signal to event base", 28) == 0)
		log_debug("libevent: %s", msg);
	else if (severity >= EVENT_LOG_ERR)
		log_err("libevent: %s", msg);
	else if (severity >= EVENT_LOG_WARN)
		log_warn("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

unsigned
master_worker_count(const struct config *cfg)
{
	if (cfg->workers > 0)
		return cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void
master_child_init(struct master *m, struct child *c, enum child_kind kind)
{
	*c = (struct child){.m = m, .kind = kind, .idx = MASTER_NO_SLOT};
	c->restart = evtimer_new(m->base, master_restart_cb, c);
}

static void
master_child_free(struct child *c)
{
	event_free(c->restart);
	ctlchan_free(c->ctl);
	free(c->config_error);
}

int
master_main(const char *config_path, bool foreground)
{
	struct master m = {.config_path = config_path,
	                   .foreground = foreground,
	                   .daemon_fd = -1,
	                   .admin_fd = -1,
	                   .control_fd = -1,
	                   .metrics_fd = -1};
	char *errors = NULL;
	const char *err;
	size_t len;

	TAILQ_INIT(&m.gens);
	/* The text is read once and loaded as a reload would load it. */
	if (config_read_text(config_path, &m.config_text, &len, &errors) < 0 ||
	    (m.set = settings_registry_load_text(config_path, m.config_text, len, &errors)) ==
	            NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		free(m.config_text);
		return EX_CONFIG;
	}
	m.config_len = len;
	struct config *cfg = m.set->cfg;
	/* The master's own copy: a reload's sets come and go, [metrics] stays
	 * as it started. */
	if (metrics_config_load(cfg, &m.mc, &errors) < 0) {
		fprintf(stderr, "%s", errors);
		free(errors);
		settings_registry_free(m.set);
		free(m.config_text);
		return EX_CONFIG;
	}
	/* Without a terminal, stderr goes nowhere: log to syslog instead. */
	if (!foreground)
		cfg->use_syslog = true;
	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, "master");
	master_log_warnings(cfg);

	event_set_log_callback(master_libevent_log);
	m.is_root = geteuid() == 0;
	/* No process leaves a core file with what it held (message text,
	 * a password being checked) unless the admin asked for them. */
	if (!cfg->core_dumps && setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) != 0)
		log_warn("setrlimit RLIMIT_CORE 0: %s", strerror(errno));
	if (m.is_root) {
		if (privdrop_lookup(cfg->user, &m.user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] user: %s", err);
		if (privdrop_lookup(cfg->auth_user, &m.auth_user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] auth_user: %s", err);
		if (privdrop_lookup(cfg->queue_user, &m.queue_user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] queue_user: %s", err);
	} else {
		log_info("not started as root: every process runs as uid %u, without chroot",
		         (unsigned)geteuid());
	}
	if (!cfg->sandbox)
		log_warn("[server] sandbox = no: the children run without their system-call "
		         "allow-lists");
	else if (!sandbox_available())
		log_warn("sandbox off: a sanitizer build (the allow-lists are for production "
		         "builds)");
	struct spool_owners owners = {
	        .root = m.is_root,
	        .worker_uid = m.user.uid,
	        .worker_gid = m.user.gid,
	        .queue_uid = m.queue_user.uid,
	        .queue_gid = m.queue_user.gid,
	};
	if (spool_init_dirs(cfg->spool_dir, &owners, &err) != 0)
		master_fail(&m, EX_CONFIG, "spool_dir %s: %s", cfg->spool_dir, err);
	master_spool_sync(&m);
	/* Each worker loads the certificate for itself, the key process the
	 * key; a missing or mismatched one stops the start here, not in a
	 * child restarting in a loop. */
	bool need_tls = false;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		need_tls |= cfg->listeners[i].tls != LTLS_NONE;
	const char *tls_key;
	if (need_tls && master_check_tls(&m, cfg, &tls_key, &err) != 0)
		master_fail(
		        &m, EX_CONFIG, "%s:%d: [tls] %s", m.config_path,
		        config_key_line(cfg, "tls", NULL, tls_key != NULL ? tls_key : "cert_file"),
		        err);
	if ((need_tls || m.mc.address != NULL) && m.is_root && master_keyproc_root(&m, &err) != 0)
		master_fail(&m, EX_CONFIG, "%s", err);

	/* Bound now, while the shell that started us can still see a busy
	 * port; the first generation takes them over (listen_set.h). */
	m.listeners = listen_set_new();
	int *first_fds = xcalloc(cfg->n_listeners, sizeof(int));
	/* A port in use is often a previous instance still stopping: worth a
	 * retry (Restart=on-failure), unlike a config error. */
	if (listen_set_acquire(m.listeners, cfg, first_fds, &err) < 0)
		master_fail(&m, EX_TEMPFAIL, "%s", err);
	if (m.mc.address != NULL && (m.metrics_fd = master_bind_metrics(&m.mc, &err)) < 0)
		master_fail(&m, EX_TEMPFAIL, "%s", err);
	m.auth_fd = master_bind_unix(&m, AUTH_SOCKET_NAME, m.user.uid, m.user.gid, m.auth_path,
	                             sizeof(m.auth_path), &err);
	if (m.auth_fd < 0)
		master_fail(&m, EX_TEMPFAIL, "auth %s", err);
	m.queue_ctl_fd = master_bind_unix(&m, QUEUE_SOCKET_NAME, m.queue_user.uid, m.queue_user.gid,
	                                  m.queue_ctl_path, sizeof(m.queue_ctl_path), &err);
	if (m.queue_ctl_fd < 0)
		master_fail(&m, EX_TEMPFAIL, "queue control %s", err);
	m.control_fd = control_bind(cfg->spool_dir, &err);
	if (m.control_fd < 0)
		master_fail(&m, EX_TEMPFAIL, "%s", err);
	/* The alert channel: records, so a restarted queue process never reads
	 * half a message; held open here, so neither end's restart loses what
	 * waits in it (alert_proto.h). */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, m.alert_fds) < 0)
		master_fail(&m, EX_TEMPFAIL, "alert channel: socketpair: %s", strerror(errno));
	/* Before any fork: one ticket key for all workers (tls.c), of every
	 * generation. */
	tls_ticket_keys_init();
	master_gen_tables_init(&m, cfg);
	m.gauge = spool_gauge_new();
	if (m.mc.address != NULL) {
		/* A slot for the master, the shared one, the auth process, the
		 * queue, the metrics process, every worker slot of every
		 * generation at once, their key processes, and room for those
		 * that replace the ones that die. */
		m.metrics = metrics_new(metric_families(), M_COUNT, 8 + 2 * m.n_slots);
		metrics_set(M_START_TIME, time(NULL));
		/* As Prometheus does: the start's load is the first success. */
		metrics_set(M_LAST_RELOAD_OK, time(NULL));
	}

	if (!foreground)
		master_daemonize(&m);
	if (cfg->pid_file != NULL)
		master_write_pid(cfg->pid_file);
	m.pid = getpid();
	m.started = time(NULL);

	m.base = event_base_new();
	if (m.base == NULL)
		master_fail(&m, EX_TEMPFAIL, "event_base_new failed");
	if (pipe2(m.ready_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		master_fail(&m, EX_TEMPFAIL, "pipe: %s", strerror(errno));
	m.ev_ready = event_new(m.base, m.ready_pipe[0], EV_READ | EV_PERSIST, master_ready_cb, &m);
	event_add(m.ev_ready, NULL);
	for (size_t i = 0; i < AR_NELEM(master_sigs); i++) {
		m.ev_sig[i] = evsignal_new(m.base, master_sigs[i], master_signal_cb, &m);
		event_add(m.ev_sig[i], NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	m.ev_stop_deadline = evtimer_new(m.base, master_stop_deadline_cb, &m);
	m.control = control_new(m.base, m.control_fd, cfg->spool_dir, &master_ctl_ops, &m);

	m.config_gen = 1;
	master_child_init(&m, &m.auth, CHILD_AUTH);
	master_child_init(&m, &m.queue, CHILD_QUEUE);
	master_child_init(&m, &m.metrics_child, CHILD_METRICS);
	unsigned workers = master_worker_count(cfg);
	m.starting = master_gen_new(&m, m.set, workers, &err);
	if (m.starting == NULL)
		master_fail(&m, EX_TEMPFAIL, "%s", err);
	listen_set_release(m.listeners, first_fds, cfg->n_listeners);
	free(first_fds);
	master_start_child(&m.auth);
	master_start_child(&m.queue);
	if (m.metrics != NULL)
		master_start_child(&m.metrics_child);
	master_gen_start(m.starting);
	master_metrics_processes(&m);
	sdnotify("STATUS=starting %u workers, auth and queue", workers);

	event_base_dispatch(m.base);

	unlink(m.auth_path);
	unlink(m.queue_ctl_path);
	if (m.set->cfg->pid_file != NULL)
		unlink(m.set->cfg->pid_file);
	log_info("stopped");
	control_free(m.control);
	for (size_t i = 0; i < AR_NELEM(m.ev_sig); i++)
		event_free(m.ev_sig[i]);
	event_free(m.ev_stop_deadline);
	event_free(m.ev_ready);
	close(m.ready_pipe[0]);
	close(m.ready_pipe[1]);
	master_child_free(&m.auth);
	master_child_free(&m.queue);
	master_child_free(&m.metrics_child);
	master_gen_free_all(&m);
	listen_set_free(m.listeners);
	close(m.auth_fd);
	close(m.alert_fds[0]);
	close(m.alert_fds[1]);
	close(m.queue_ctl_fd);
	if (m.metrics_fd >= 0)
		close(m.metrics_fd);
	metrics_free(m.metrics);
	metrics_config_clear(&m.mc);
	master_gen_tables_free(&m);
	spool_gauge_free(m.gauge);
	settings_registry_free(m.set);
	free(m.config_text);
	event_base_free(m.base);
	return 0;
}
