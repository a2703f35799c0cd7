/*
 * master.c - the supervisor. It reads and validates the config, prepares the
 * spool, binds every listening socket and the auth socket while still root,
 * then starts the unprivileged children:
 *
 *   auth     one process, user auth_user, holds the credential stores;
 *   smtpd    `workers` processes, user `user`, chrooted into the spool,
 *            each accepting on all listeners;
 *   queue    one process, user queue_user, owns the spool after the 250
 *            and delivers (src/queue/);
 *   keyproc  one process when a listener uses TLS, user auth_user, chrooted
 *            into an empty directory: the only one holding the TLS private
 *            key; it signs the workers' handshakes (src/keyproc/);
 *   metrics  one process when [metrics] address is set, user `user`,
 *            chrooted into the same empty directory: the HTTP endpoint
 *            (src/metrics/). Every process counts in a slot of a shared
 *            mapping made here before any fork (lib/metrics.h); the master
 *            gives each child a slot and takes it back when it dies, so
 *            counters survive restarts, and publishes which children run.
 *
 * Each child sets PR_SET_NO_NEW_PRIVS and its seccomp allow-list right
 * after the drop (src/lib/sandbox.h); a call outside it kills the child
 * with SIGSYS, which is logged by name like any other death.
 *
 * It restarts a child that dies (with back-off), forwards SIGHUP (reload) to
 * the auth process, and on SIGTERM stops the children and exits. The master
 * itself never reads a byte from the network. Root's admin commands
 * (`authrelay status`, `reload`, `stop`...) reach it on its control socket
 * (control.c), which calls master_reload() and master_stop() as the
 * signals do.
 *
 * It is "ready" once every child has reported itself up (readiness.h):
 * only then does it tell systemd (READY=1, sdnotify.h), or let the shell
 * that started a daemon return. Start-up errors also go to stderr when the
 * log is syslog, so that `authrelay -f` and the journal show them.
 */
#include "master.h"
#include "control.h"
#include "privdrop.h"
#include "../auth/auth_server.h"
#include "../auth/protection_config.h"
#include "../keyproc/keyproc.h"
#include "../keyproc/keyproc_client.h"
#include "../keyproc/keyproc_keys.h"
#include "../lib/config.h"
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
#include "../smtpd/send_limit.h"
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
#define KEYPROC_SOCKET_NAME "private/keyproc"
/* The key process's chroot, in the spool: empty, owned by root. */
#define KEYPROC_ROOT_NAME "empty"
/* How long a worker's handshake waits for its signature. A restart of the
 * key process takes RESTART_MIN_MS; one that keeps failing is not waited for. */
#define KEYPROC_TIMEOUT_MS 5000
/* Pool threads of the key process for RSA signatures, at most. */
#define KEYPROC_MAX_THREADS 8
/* Back-off between restarts of a child that keeps dying. */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 30000
/* A child that ran this long is considered healthy again. */
#define STABLE_SECONDS 30
#define STOP_GRACE_SECONDS 10
/* How long the shell that started a daemon waits for it to be ready. */
#define DAEMON_READY_SECONDS 60

enum child_kind { CHILD_AUTH, CHILD_SMTPD, CHILD_QUEUE, CHILD_KEYPROC, CHILD_METRICS };

struct child {
	struct master *m;
	enum child_kind kind;
	unsigned idx; /* worker index */
	pid_t pid;    /* 0 while not running */
	bool up;      /* reported itself up since it started */
	time_t started;
	unsigned backoff_ms;
	unsigned restarts; /* `authrelay status` */
	struct event *restart;
	unsigned metrics_slot; /* its slot in m->metrics while it runs */
};

struct master {
	struct config *cfg;
	const char *config_path;
	bool foreground;
	bool is_root;
	struct privdrop_user user;
	struct privdrop_user auth_user;
	struct privdrop_user queue_user;
	int *listen_fds;
	int auth_fd;
	int alert_fds[2]; /* the alert channel: [0] auth's end, [1] the queue's */
	char auth_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int queue_ctl_fd; /* `authrelay queue` commands, for the queue process */
	char queue_ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool need_tls;  /* a listener uses TLS: the key process runs */
	int keyproc_fd; /* the key process's listening socket, or -1 */
	char keyproc_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char keyproc_root[256]; /* its chroot, and the metrics process's */
	struct metrics_config mc;
	struct metrics *metrics; /* NULL: [metrics] address not set */
	int metrics_fd;          /* the endpoint's listening socket, or -1 */
	struct conn_limit *limits;
	struct send_limit *send_limits; /* issue 6: per-user sending limits */
	struct protection_config prot;  /* what the workers need of it */
	struct event_base *base;
	struct child auth;
	struct child queue; /* issue 5 */
	struct child keyproc;
	struct child metrics_child;
	struct queue_config *qc;
	struct spool_gauge *gauge; /* queue size, shared with workers */
	/* How a group commit round ends on the spool's file system: chosen
	 * here, where /proc and /sys can be seen (workers are chrooted). */
	enum spool_fs_sync spool_sync;
	struct child *workers;
	unsigned n_workers;
	bool stopping;
	pid_t pid; /* the master's own, after daemonizing */
	struct event *ev_sig[4];
	struct event *ev_stop_deadline;
	int ready_pipe[2]; /* children report "up" here (readiness.h) */
	struct event *ev_ready;
	bool ready;          /* every child has been up at least once */
	int daemon_fd;       /* to the shell waiting for a daemon's start, or -1 */
	int control_fd;      /* bound as root, served by ctl */
	struct control *ctl; /* `authrelay status`, `reload`, ... (control.h) */
	time_t started;      /* for `authrelay status` */
	unsigned generation; /* configurations loaded: 1, then one per reload */
	int admin_fd;        /* a starting auth child's end of the admin channel */
};

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
	if (m->cfg == NULL || m->cfg->use_syslog)
		fprintf(stderr, "authrelay: %s\n", msg);
	if (m->cfg != NULL)
		log_err("%s", msg);
	sdnotify("STATUS=failed to start: %s", msg);
	exit(status);
}

static int
master_bind_listener(const struct listener_cfg *l, const char **error_r)
{
	static char err[256];
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (l->addr.ss_family == AF_INET6) {
		/* "*:25" and "[::]:25" take IPv4 too (as v4-mapped addresses);
		 * a specific IPv6 address takes only IPv6. */
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0)
		goto fail;
	if (listen(fd, 1024) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "listener %s (%s): %s", l->name, l->address_text,
	         strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
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
static int
master_bind_unix(struct master *m, const char *name, uid_t uid, gid_t gid, char *path_r,
                 size_t path_size, const char **error_r)
{
	static char err[256];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(path_r, path_size, "%s/%s", m->cfg->spool_dir, name);
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

/* Install the child's system-call allow-list (sandbox.h), unless the
 * config turned it off. */
static void
child_sandbox(const struct master *m, enum sandbox_kind kind)
{
	const char *err;

	if (!m->cfg->sandbox)
		return;
	if (sandbox_apply(kind, &err) != 0)
		fatal("sandbox: %s", err);
}

/* tls_server_check() in a child that exits at once: the master refuses a
 * bad certificate or key before anything starts, yet never has the private
 * key in its own memory, which every child it forks would inherit (the PEM
 * text in freed buffers, for one). Returns 0, or -1 with *error_r. */
static int
master_check_tls(struct master *m, const char **error_r)
{
	static char err[1024];
	int p[2], status;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
		*error_r = err;
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, sizeof(err), "fork: %s", strerror(errno));
		*error_r = err;
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		const char *e = NULL;
		close(p[0]);
		if (tls_server_check(m->cfg, NULL, &e) == 0)
			_exit(0);
		(void)write_all(p[1], e, strlen(e));
		_exit(1);
	}
	close(p[1]);
	size_t len = 0;
	while (len < sizeof(err) - 1 && ((n = read(p[0], err + len, sizeof(err) - 1 - len)) > 0 ||
	                                 (n < 0 && errno == EINTR)))
		len += n > 0 ? (size_t)n : 0;
	err[len] = '\0';
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (len == 0)
		snprintf(err, sizeof(err), "the certificate check died");
	*error_r = err;
	return -1;
}

/* The key process's chroot (and the metrics process's): <spool_dir>/empty,
 * a directory owned by root that nobody can write to. Only when started as
 * root. */
static int
master_keyproc_root(struct master *m, const char **error_r)
{
	static char err[512];
	struct stat st;
	int n = snprintf(m->keyproc_root, sizeof(m->keyproc_root), "%s/%s", m->cfg->spool_dir,
	                 KEYPROC_ROOT_NAME);
	if (n < 0 || (size_t)n >= sizeof(m->keyproc_root)) {
		*error_r = "spool_dir is too long";
		return -1;
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
	return -1;
}

/* In a new child: forget the master's signal handling (libevent's handlers
 * would write into the master's signal pipe) and die with the master. */
static void
child_setup_signals(void)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
	for (size_t i = 0; i < AR_NELEM(sigs); i++)
		signal(sigs[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* After privdrop_apply(): changing uid or gid clears PR_SET_PDEATHSIG
 * (prctl(2)), so set it again, and leave now if the master died meanwhile.
 * Without this a child outlives a master killed with SIGKILL (issue 5). */
static void
child_after_drop(const struct master *m)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(0);
}

static AR_NORETURN void
child_run_auth(struct master *m)
{
	log_init(m->cfg->use_syslog, (enum log_level)m->cfg->log_level, "auth");
	for (size_t i = 0; i < m->cfg->n_listeners; i++)
		close(m->listen_fds[i]);
	if (m->keyproc_fd >= 0)
		close(m->keyproc_fd);
	/* Work from the users file's directory: after the privilege drop the
	 * file (readable by auth_user) is still reachable for a reload even
	 * when a parent directory is closed to auth_user. */
	if (m->cfg->users_file != NULL) {
		char *slash = strrchr(m->cfg->users_file, '/');
		if (slash != NULL) {
			*slash = '\0';
			if (chdir(*m->cfg->users_file ? m->cfg->users_file : "/") != 0)
				fatal("chdir %s: %s", m->cfg->users_file, strerror(errno));
			memmove(m->cfg->users_file, slash + 1, strlen(slash + 1) + 1);
		}
	}
	if (m->is_root)
		privdrop_apply(&m->auth_user, NULL);
	child_after_drop(m);
	close(m->queue_ctl_fd);
	/* It holds secrets: no core dumps, no ptrace by the same uid. */
	prctl(PR_SET_DUMPABLE, 0);
	close(m->alert_fds[1]);
	child_sandbox(m, SANDBOX_AUTH);
	exit(auth_server_main(m->cfg, m->auth_fd, m->alert_fds[0], m->admin_fd));
}

static AR_NORETURN void
child_run_smtpd(struct master *m, unsigned idx)
{
	const struct config *cfg = m->cfg;
	SSL_CTX *tls = NULL;
	const char *err;
	char role[16];

	snprintf(role, sizeof(role), "smtpd");
	log_init(cfg->use_syslog, (enum log_level)cfg->log_level, role);
	close(m->auth_fd);
	close(m->alert_fds[0]);
	close(m->alert_fds[1]);
	close(m->queue_ctl_fd);
	if (m->keyproc_fd >= 0)
		close(m->keyproc_fd);
	bool chrooted = m->is_root && cfg->chroot;
	struct keyproc_client *kc = NULL;
	if (m->need_tls) {
		/* The certificate chain while still root; the private key
		 * stays with the key process. */
		char kp_path[sizeof(m->keyproc_path)];
		snprintf(kp_path, sizeof(kp_path), "%s",
		         chrooted ? "/" KEYPROC_SOCKET_NAME : m->keyproc_path);
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
	        .worker = idx,
	        .listen_fds = m->listen_fds,
	        .limits = m->limits,
	        .tls = tls,
	        .keyproc = kc,
	        .spool_dir = chrooted ? "/" : cfg->spool_dir,
	        .auth_socket = auth_path,
	        .queue_gauge = m->gauge,
	        .send_limits = m->send_limits,
	        .group_commit = m->qc->group_commit,
	        .spool_sync = m->spool_sync,
	        .protection =
	                {
	                        .sender_allow_users = m->prot.sender_allow_users,
	                        .n_sender_allow_users = m->prot.n_sender_allow_users,
	                        .messages_per_hour = m->prot.messages_per_hour,
	                        .recipients_per_hour = m->prot.recipients_per_hour,
	                        .lockout_reply = m->prot.lockout_reply,
	                },
	};
	exit(smtpd_main(&p));
}

/* The queue process, as queue_user. Not chrooted: maildir routes write
 * outside the spool. It holds no secret and reads nothing from untrusted
 * peers but SMTP replies, DNS answers and the files the workers made. */
static AR_NORETURN void
child_run_queue(struct master *m)
{
	log_init(m->cfg->use_syslog, (enum log_level)m->cfg->log_level, "queue");
	for (size_t i = 0; i < m->cfg->n_listeners; i++)
		close(m->listen_fds[i]);
	close(m->auth_fd);
	close(m->alert_fds[0]);
	if (m->keyproc_fd >= 0)
		close(m->keyproc_fd);
	if (m->is_root)
		privdrop_apply(&m->queue_user, NULL);
	child_after_drop(m);
	/* The alert hook's shell cannot run under the allow-list: a helper
	 * forked now runs it (spawner.h). */
	const char *err;
	if (m->cfg->sandbox && m->prot.alerts.hook != NULL &&
	    spawner_start(m->prot.alerts.hook, &err) != 0)
		fatal("alert hook helper: %s", err);
	child_sandbox(m, SANDBOX_QUEUE);
	struct queue_params p = {
	        .cfg = m->cfg,
	        .qc = m->qc,
	        .spool_dir = m->cfg->spool_dir,
	        .gauge = m->gauge,
	        .alert_fd = m->alert_fds[1],
	        .alert_hook = m->prot.alerts.hook,
	        .worker_uid = m->is_root ? m->user.uid : geteuid(),
	        .ctl_fd = m->queue_ctl_fd,
	};
	exit(queue_main(&p));
}

/* The key process: loads the TLS key as root, then holds it as auth_user in
 * an empty chroot, not dumpable, with no socket but its listening one. Like
 * the auth process it holds a secret the workers must never read; unlike
 * it, it talks to nothing but the workers. */
static AR_NORETURN void
child_run_keyproc(struct master *m)
{
	const char *err;

	log_init(m->cfg->use_syslog, (enum log_level)m->cfg->log_level, "keyproc");
	for (size_t i = 0; i < m->cfg->n_listeners; i++)
		close(m->listen_fds[i]);
	close(m->auth_fd);
	close(m->alert_fds[0]);
	close(m->alert_fds[1]);
	close(m->queue_ctl_fd);
	prctl(PR_SET_DUMPABLE, 0);
	struct keyproc_keys *keys = keyproc_keys_new();
	if (keyproc_keys_load(keys, m->cfg->tls_cert_file, m->cfg->tls_key_file, &err) != 0)
		fatal("keyproc: %s", err);
	if (m->is_root)
		privdrop_apply(&m->auth_user, m->keyproc_root);
	child_after_drop(m);
	prctl(PR_SET_DUMPABLE, 0);
	child_sandbox(m, SANDBOX_KEYPROC);
	unsigned threads = m->n_workers < KEYPROC_MAX_THREADS ? m->n_workers : KEYPROC_MAX_THREADS;
	struct keyproc_params p = {
	        .keys = keys,
	        .listen_fd = m->keyproc_fd,
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
	log_init(m->cfg->use_syslog, (enum log_level)m->cfg->log_level, "metrics");
	for (size_t i = 0; i < m->cfg->n_listeners; i++)
		close(m->listen_fds[i]);
	close(m->auth_fd);
	close(m->alert_fds[0]);
	close(m->alert_fds[1]);
	close(m->queue_ctl_fd);
	if (m->keyproc_fd >= 0)
		close(m->keyproc_fd);
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

/* Publish how many children of each kind run and have reported up, and how
 * many should: what /healthz answers from. */
static void
master_metrics_processes(const struct master *m)
{
	unsigned up[MP_COUNT] = {0}, want[MP_COUNT] = {0};
	const struct child *one[] = {&m->auth, &m->queue, &m->keyproc, &m->metrics_child};

	if (m->metrics == NULL)
		return;
	want[MP_SMTPD] = m->n_workers;
	want[MP_AUTH] = want[MP_QUEUE] = want[MP_METRICS] = 1;
	want[MP_KEYPROC] = m->need_tls;
	for (size_t i = 0; i < AR_NELEM(one); i++)
		up[child_metric_process(one[i])] += one[i]->pid != 0 && one[i]->up;
	for (unsigned i = 0; i < m->n_workers; i++)
		up[MP_SMTPD] += m->workers[i].pid != 0 && m->workers[i].up;
	for (unsigned p = 0; p < MP_COUNT; p++) {
		metrics_set(M_PROCESSES_UP, up[p], p);
		metrics_set(M_PROCESSES_EXPECTED, want[p], p);
	}
}

static void
master_start_child(struct child *c)
{
	struct master *m = c->m;
	int admin[2] = {-1, -1};
	/* The auth process gets a new admin channel at each start; its other
	 * end is the master's alone (control.h). */
	if (c->kind == CHILD_AUTH &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, admin) < 0)
		log_err("admin channel: socketpair: %s", strerror(errno));
	if (m->metrics != NULL)
		c->metrics_slot = metrics_slot_claim(m->metrics);
	pid_t pid = fork();
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
	if (pid == 0) {
		child_setup_signals();
		/* No child may hold the control socket, its clients or the
		 * master's end of the admin channel. */
		control_close_in_child(m->ctl);
		if (admin[0] >= 0)
			close(admin[0]);
		m->admin_fd = admin[1];
		close(m->ready_pipe[0]);
		readiness_set_fd(m->ready_pipe[1]);
		if (m->daemon_fd >= 0)
			close(m->daemon_fd);
		if (m->metrics != NULL)
			metrics_attach(m->metrics, c->metrics_slot);
		if (m->metrics_fd >= 0 && c->kind != CHILD_METRICS)
			close(m->metrics_fd);
		if (c->kind == CHILD_AUTH)
			child_run_auth(m);
		if (c->kind == CHILD_QUEUE)
			child_run_queue(m);
		if (c->kind == CHILD_KEYPROC)
			child_run_keyproc(m);
		if (c->kind == CHILD_METRICS)
			child_run_metrics(m);
		child_run_smtpd(m, c->idx);
	}
	if (admin[0] >= 0) {
		close(admin[1]);
		control_set_auth(m->ctl, admin[0]);
	}
	c->pid = pid;
	c->up = false;
	c->started = time(NULL);
	if (c->kind == CHILD_SMTPD)
		log_info("started smtpd worker=%u pid=%d", c->idx, (int)pid);
	else
		log_info("started %s pid=%d", child_name(c), (int)pid);
}

static void
master_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;
	if (!c->m->stopping && c->pid == 0)
		master_start_child(c);
}

static struct child *
master_find_child(struct master *m, pid_t pid)
{
	if (m->auth.pid == pid)
		return &m->auth;
	if (m->queue.pid == pid)
		return &m->queue;
	if (m->keyproc.pid == pid)
		return &m->keyproc;
	if (m->metrics_child.pid == pid)
		return &m->metrics_child;
	for (unsigned i = 0; i < m->n_workers; i++)
		if (m->workers[i].pid == pid)
			return &m->workers[i];
	return NULL;
}

static bool
master_children_alive(const struct master *m)
{
	if (m->auth.pid != 0 || m->queue.pid != 0 || m->keyproc.pid != 0 ||
	    m->metrics_child.pid != 0)
		return true;
	for (unsigned i = 0; i < m->n_workers; i++)
		if (m->workers[i].pid != 0)
			return true;
	return false;
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
			log_err("%s pid=%d killed by signal %d (SIGSYS): a system call "
			        "outside "
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
		/* Its gauges go; its counters stay for the next one. */
		if (m->metrics != NULL)
			metrics_slot_release(m->metrics, c->metrics_slot);
		master_metrics_processes(m);
		/* Gives back what the worker held in the shared tables;
		 * never waits for another worker (shmtab.h). */
		if (c->kind == CHILD_SMTPD) {
			conn_limit_reset_worker(m->limits, c->idx);
			send_limit_reset_worker(m->send_limits, c->idx);
		}
		if (m->stopping)
			continue;
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

static bool
master_children_up(const struct master *m)
{
	if (!m->auth.up || !m->queue.up || (m->need_tls && !m->keyproc.up) ||
	    (m->metrics != NULL && !m->metrics_child.up))
		return false;
	for (unsigned i = 0; i < m->n_workers; i++)
		if (!m->workers[i].up)
			return false;
	return true;
}

/* The one-line summary systemctl status shows. */
static void
master_notify_ready(const struct master *m, const char *what)
{
	if (!m->ready)
		return;
	sdnotify("READY=1\nSTATUS=%s: %zu listeners, %u workers, auth and queue up", what,
	         m->cfg->n_listeners, m->n_workers);
}

/* Children report themselves up on the readiness pipe. The first time all
 * are up, the gateway is ready: tell systemd, and the shell that started a
 * daemon (master_daemonize()), which then exits 0. */
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
	master_metrics_processes(m);
	if (m->stopping || !master_children_up(m))
		return;
	if (!m->ready) {
		m->ready = true;
		log_info("ready listeners=%zu workers=%u", m->cfg->n_listeners, m->n_workers);
		if (m->daemon_fd >= 0) {
			char ok = 0;
			if (write(m->daemon_fd, &ok, 1) != 1)
				log_warn("cannot tell the starting shell: %s", strerror(errno));
			close(m->daemon_fd);
			m->daemon_fd = -1;
		}
	}
	master_notify_ready(m, "ready");
}

static void
master_signal_child(struct master *m, int sig)
{
	if (m->auth.pid != 0)
		kill(m->auth.pid, sig);
	if (m->queue.pid != 0)
		kill(m->queue.pid, sig);
	if (m->keyproc.pid != 0)
		kill(m->keyproc.pid, sig);
	if (m->metrics_child.pid != 0)
		kill(m->metrics_child.pid, sig);
	for (unsigned i = 0; i < m->n_workers; i++)
		if (m->workers[i].pid != 0)
			kill(m->workers[i].pid, sig);
}

static void
master_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	log_warn("children did not stop in %d s: killing them", STOP_GRACE_SECONDS);
	master_signal_child(m, SIGKILL);
}

/* What the config loaded with a warning, one log line each. */
static void
master_log_warnings(const struct config *cfg)
{
	for (const char *p = cfg->warnings; p != NULL && *p != '\0';) {
		size_t n = strcspn(p, "\n");
		log_warn("%.*s", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* SIGHUP and `authrelay reload`. Returns 0, or -1 with *errors_r (malloc'd)
 * when the config has errors and the running one stays. */
static int
master_reload(struct master *m, char **errors_r)
{
	char *errors = NULL;
	/* RELOADING=1, then READY=1 once the master's part is done: the
	 * children re-read their sources on their own after the signal. */
	if (m->ready)
		sdnotify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		         sdnotify_monotonic_usec());
	struct config *fresh = config_load(m->config_path, &errors);
	if (fresh == NULL) {
		log_err("reload: config has errors, keeping the running one: %s", errors);
		if (errors_r != NULL)
			*errors_r = errors;
		else
			free(errors);
		master_notify_ready(m, "reload refused (config has errors, see the log)");
		return -1;
	}
	m->generation++;
	master_log_warnings(fresh);
	config_free(fresh);
	/* The auth process re-reads its sources (users file). Listener and limit
	 * changes need a restart: the sockets are bound once, as root. */
	if (m->auth.pid != 0)
		kill(m->auth.pid, SIGHUP);
	/* issue 5: the queue re-reads [queue] and [route] and retries now. */
	if (m->queue.pid != 0)
		kill(m->queue.pid, SIGHUP);
	log_info("reload: auth sources reloading");
	master_notify_ready(m, "reloaded");
	return 0;
}

/* SIGTERM, SIGINT and `authrelay stop`. */
static void
master_stop(struct master *m, const char *why)
{
	if (m->stopping)
		return;
	log_info("stopping (%s)", why);
	sdnotify("STOPPING=1\nSTATUS=stopping (%s)", why);
	m->stopping = true;
	master_signal_child(m, SIGTERM);
	struct timeval grace = {STOP_GRACE_SECONDS, 0};
	evtimer_add(m->ev_stop_deadline, &grace);
	master_reap(m);
	if (!master_children_alive(m))
		event_base_loopexit(m->base, NULL);
}

static void
master_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	switch (sig) {
	case SIGCHLD:
		master_reap(m);
		break;
	case SIGHUP:
		(void)master_reload(m, NULL);
		break;
	case SIGTERM:
	case SIGINT: {
		char why[32];
		snprintf(why, sizeof(why), "signal %d", (int)sig);
		master_stop(m, why);
		break;
	}
	}
}

/* ------------------------------------------------ the control socket's hooks */

static void
master_ctl_status(void *arg, struct control_status *st)
{
	struct master *m = arg;
	size_t k = 0;

	st->pid = m->pid;
	st->started = (int64_t)m->started;
	st->generation = m->generation;
	st->n_listeners = m->cfg->n_listeners;
	st->listeners = xcalloc(m->cfg->n_listeners + 1, sizeof(*st->listeners));
	for (size_t i = 0; i < m->cfg->n_listeners; i++) {
		const struct listener_cfg *l = &m->cfg->listeners[i];
		st->listeners[i] = (struct control_listener){
		        .name = l->name,
		        .address = l->address_text,
		        .role = config_role_name(l->role),
		        .tls = config_tls_name(l->tls),
		        .sessions = conn_limit_total(m->limits, (unsigned)i),
		};
	}
	const struct child *all[] = {&m->auth, &m->queue, &m->keyproc, &m->metrics_child};
	st->children = xcalloc(m->n_workers + AR_NELEM(all), sizeof(*st->children));
	for (size_t i = 0; i < AR_NELEM(all); i++) {
		if ((all[i]->kind == CHILD_KEYPROC && !m->need_tls) ||
		    (all[i]->kind == CHILD_METRICS && m->metrics == NULL))
			continue;
		st->children[k++] = (struct control_child){
		        .kind = child_name(all[i]),
		        .pid = all[i]->pid,
		        .up = all[i]->up,
		        .restarts = all[i]->restarts,
		};
	}
	for (unsigned i = 0; i < m->n_workers; i++)
		st->children[k++] = (struct control_child){
		        .kind = "smtpd",
		        .index = i,
		        .pid = m->workers[i].pid,
		        .up = m->workers[i].up,
		        .restarts = m->workers[i].restarts,
		};
	st->n_children = k;
}

static int
master_ctl_reload(void *arg, char **error_r)
{
	return master_reload(arg, error_r);
}

static void
master_ctl_stop(void *arg)
{
	master_stop(arg, "authrelay stop");
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
		        "authrelay: not ready after %d s; pid %d goes on trying (see the "
		        "log)\n",
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
	snprintf(path, sizeof(path), "%s/incoming", m->cfg->spool_dir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		/* spool_init_dirs() just made it; the workers will fail on it. */
		m->spool_sync = SPOOL_FS_SYNC_FS;
		return;
	}
	m->spool_sync = spool_fs_sync_method(fd, desc, sizeof(desc));
	close(fd);
	log_info("spool dir=%s fs=\"%s\" commit_sync=%s", m->cfg->spool_dir, desc,
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

static unsigned
master_worker_count(const struct config *cfg)
{
	if (cfg->workers > 0)
		return cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int
master_main(const char *config_path, bool foreground)
{
	struct master m = {.config_path = config_path,
	                   .foreground = foreground,
	                   .daemon_fd = -1,
	                   .keyproc_fd = -1,
	                   .admin_fd = -1,
	                   .metrics_fd = -1,
	                   .generation = 1};
	char *errors = NULL;
	const char *err;

	m.cfg = config_load(config_path, &errors);
	if (m.cfg == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return EX_CONFIG;
	}
	/* config_load() checked every module's sections (settings_registry.c):
	 * these only fill the records the master hands on. [queue] and [route
	 * NAME] are the queue's, [protection] and [alerts] the auth
	 * process's, which loads its own copy. */
	m.qc = queue_config_load(m.cfg, &errors);
	if (m.qc == NULL || protection_config_load(m.cfg, &m.prot, &errors) < 0 ||
	    metrics_config_load(m.cfg, &m.mc, &errors) < 0) {
		fprintf(stderr, "%s", errors);
		free(errors);
		queue_config_free(m.qc);
		config_free(m.cfg);
		return EX_CONFIG;
	}
	/* Without a terminal, stderr goes nowhere: log to syslog instead. */
	if (!foreground)
		m.cfg->use_syslog = true;
	log_init(m.cfg->use_syslog, (enum log_level)m.cfg->log_level, "master");
	master_log_warnings(m.cfg);

	event_set_log_callback(master_libevent_log);
	m.is_root = geteuid() == 0;
	/* No process leaves a core file with what it held (message text,
	 * a password being checked) unless the admin asked for them. */
	if (!m.cfg->core_dumps && setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) != 0)
		log_warn("setrlimit RLIMIT_CORE 0: %s", strerror(errno));
	if (m.is_root) {
		if (privdrop_lookup(m.cfg->user, &m.user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] user: %s", err);
		if (privdrop_lookup(m.cfg->auth_user, &m.auth_user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] auth_user: %s", err);
		if (privdrop_lookup(m.cfg->queue_user, &m.queue_user, &err) != 0)
			master_fail(&m, EX_CONFIG, "[server] queue_user: %s", err);
	} else {
		log_info("not started as root: every process runs as uid %u, without chroot",
		         (unsigned)geteuid());
	}
	if (!m.cfg->sandbox)
		log_warn("[server] sandbox = no: the children run without their system-call "
		         "allow-lists");
	else if (!sandbox_available())
		log_warn("sandbox off: a sanitizer build (the allow-lists are for "
		         "production "
		         "builds)");
	struct spool_owners owners = {
	        .root = m.is_root,
	        .worker_uid = m.user.uid,
	        .worker_gid = m.user.gid,
	        .queue_uid = m.queue_user.uid,
	        .queue_gid = m.queue_user.gid,
	};
	if (spool_init_dirs(m.cfg->spool_dir, &owners, &err) != 0)
		master_fail(&m, EX_CONFIG, "spool_dir %s: %s", m.cfg->spool_dir, err);
	master_spool_sync(&m);
	/* Each worker loads the certificate for itself, the key process the
	 * key; a missing or mismatched one stops the start here, not in a
	 * child restarting in a loop. */
	for (size_t i = 0; i < m.cfg->n_listeners; i++)
		m.need_tls |= m.cfg->listeners[i].tls != LTLS_NONE;
	if (m.need_tls && master_check_tls(&m, &err) != 0)
		master_fail(&m, EX_CONFIG, "[tls] %s", err);
	if ((m.need_tls || m.mc.address != NULL) && m.is_root && master_keyproc_root(&m, &err) != 0)
		master_fail(&m, EX_CONFIG, "%s", err);

	m.listen_fds = xcalloc(m.cfg->n_listeners, sizeof(int));
	for (size_t i = 0; i < m.cfg->n_listeners; i++) {
		m.listen_fds[i] = master_bind_listener(&m.cfg->listeners[i], &err);
		/* A port in use is often a previous instance still stopping:
		 * worth a retry (Restart=on-failure), unlike a config error. */
		if (m.listen_fds[i] < 0)
			master_fail(&m, EX_TEMPFAIL, "%s", err);
	}
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
	m.control_fd = control_bind(m.cfg->spool_dir, &err);
	if (m.control_fd < 0)
		master_fail(&m, EX_TEMPFAIL, "%s", err);
	/* The alert channel: records, so a restarted queue process never reads
	 * half a message; held open here, so neither end's restart loses what
	 * waits in it (alert_proto.h). */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, m.alert_fds) < 0)
		master_fail(&m, EX_TEMPFAIL, "alert channel: socketpair: %s", strerror(errno));
	if (m.need_tls) {
		m.keyproc_fd = master_bind_unix(&m, KEYPROC_SOCKET_NAME, m.user.uid, m.user.gid,
		                                m.keyproc_path, sizeof(m.keyproc_path), &err);
		if (m.keyproc_fd < 0)
			master_fail(&m, EX_TEMPFAIL, "%s", err);
	}
	/* Before any fork: one ticket key for all workers (tls.c). */
	tls_ticket_keys_init();

	m.n_workers = master_worker_count(m.cfg);
	unsigned slots = 64;
	for (size_t i = 0; i < m.cfg->n_listeners; i++)
		slots += m.cfg->listeners[i].limits.max_connections;
	m.limits = conn_limit_new(m.n_workers, (unsigned)m.cfg->n_listeners, slots);
	m.send_limits = send_limit_new(m.prot.send_limit_size, m.n_workers);
	m.gauge = spool_gauge_new();
	if (m.mc.address != NULL) {
		/* A slot for the master, the shared one, each child, and room
		 * for the workers that replace those that die. */
		m.metrics = metrics_new(metric_families(), M_COUNT, 8 + 3 * m.n_workers);
		metrics_set(M_START_TIME, time(NULL));
	}

	if (!foreground)
		master_daemonize(&m);
	if (m.cfg->pid_file != NULL)
		master_write_pid(m.cfg->pid_file);
	m.pid = getpid();
	m.started = time(NULL);

	m.base = event_base_new();
	if (m.base == NULL)
		master_fail(&m, EX_TEMPFAIL, "event_base_new failed");
	if (pipe2(m.ready_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		master_fail(&m, EX_TEMPFAIL, "pipe: %s", strerror(errno));
	m.ev_ready = event_new(m.base, m.ready_pipe[0], EV_READ | EV_PERSIST, master_ready_cb, &m);
	event_add(m.ev_ready, NULL);
	static const int sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT};
	for (size_t i = 0; i < AR_NELEM(sigs); i++) {
		m.ev_sig[i] = evsignal_new(m.base, sigs[i], master_signal_cb, &m);
		event_add(m.ev_sig[i], NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	m.ev_stop_deadline = evtimer_new(m.base, master_stop_deadline_cb, &m);
	m.ctl = control_new(m.base, m.control_fd, m.cfg->spool_dir, &master_ctl_ops, &m);

	m.auth = (struct child){.m = &m, .kind = CHILD_AUTH};
	m.auth.restart = evtimer_new(m.base, master_restart_cb, &m.auth);
	m.workers = xcalloc(m.n_workers, sizeof(*m.workers));
	master_start_child(&m.auth);
	m.queue = (struct child){.m = &m, .kind = CHILD_QUEUE};
	m.queue.restart = evtimer_new(m.base, master_restart_cb, &m.queue);
	master_start_child(&m.queue);
	m.keyproc = (struct child){.m = &m, .kind = CHILD_KEYPROC};
	m.keyproc.restart = evtimer_new(m.base, master_restart_cb, &m.keyproc);
	if (m.need_tls)
		master_start_child(&m.keyproc);
	m.metrics_child = (struct child){.m = &m, .kind = CHILD_METRICS};
	m.metrics_child.restart = evtimer_new(m.base, master_restart_cb, &m.metrics_child);
	if (m.metrics != NULL)
		master_start_child(&m.metrics_child);
	for (unsigned i = 0; i < m.n_workers; i++) {
		m.workers[i] = (struct child){.m = &m, .kind = CHILD_SMTPD, .idx = i};
		m.workers[i].restart = evtimer_new(m.base, master_restart_cb, &m.workers[i]);
		master_start_child(&m.workers[i]);
	}
	master_metrics_processes(&m);
	sdnotify("STATUS=starting %u workers, auth and queue", m.n_workers);

	event_base_dispatch(m.base);

	unlink(m.auth_path);
	unlink(m.queue_ctl_path);
	if (m.keyproc_fd >= 0)
		unlink(m.keyproc_path);
	if (m.cfg->pid_file != NULL)
		unlink(m.cfg->pid_file);
	log_info("stopped");
	for (size_t i = 0; i < AR_NELEM(m.ev_sig); i++)
		event_free(m.ev_sig[i]);
	event_free(m.ev_stop_deadline);
	event_free(m.ev_ready);
	close(m.ready_pipe[0]);
	close(m.ready_pipe[1]);
	event_free(m.auth.restart);
	event_free(m.queue.restart);
	event_free(m.keyproc.restart);
	event_free(m.metrics_child.restart);
	for (unsigned i = 0; i < m.n_workers; i++)
		event_free(m.workers[i].restart);
	free(m.workers);
	/* A waiting `authrelay stop` returns when this closes: the children
	 * are gone by now. */
	control_free(m.ctl);
	event_base_free(m.base);
	for (size_t i = 0; i < m.cfg->n_listeners; i++)
		close(m.listen_fds[i]);
	free(m.listen_fds);
	close(m.auth_fd);
	close(m.alert_fds[0]);
	close(m.alert_fds[1]);
	close(m.queue_ctl_fd);
	if (m.keyproc_fd >= 0)
		close(m.keyproc_fd);
	if (m.metrics_fd >= 0)
		close(m.metrics_fd);
	metrics_free(m.metrics);
	metrics_config_clear(&m.mc);
	conn_limit_free(m.limits);
	send_limit_free(m.send_limits);
	spool_gauge_free(m.gauge);
	queue_config_free(m.qc);
	protection_config_clear(&m.prot);
	config_free(m.cfg);
	return 0;
}
