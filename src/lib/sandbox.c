/* SPDX-License-Identifier: ISC */
/*
 * sandbox.c - seccomp allow-lists per process kind (sandbox.h), built with
 * libseccomp so that the lists are names, not numbers of one architecture.
 *
 * Each list holds what the process does after its privilege drop, found
 * with `strace -f` over the whole test suite (tests/integration), per
 * process: the calls every process makes (memory, threads, the event loop,
 * logging), then each kind's own. Some calls are narrowed by argument,
 * where that takes a capability away:
 *
 *   socket()  an SMTP worker may only make UNIX sockets (the auth socket,
 *             syslog): a compromised worker cannot open a connection to
 *             anywhere. The auth process and the queue also get IPv4, IPv6
 *             and netlink (getaddrinfo's address check).
 *   clone()   only threads (CLONE_THREAD): no process forks another.
 *             clone3() passes its flags in memory, which a filter cannot
 *             read, so it fails with ENOSYS and the C library falls back to
 *             clone(), as it does on kernels older than 5.3.
 *   ioctl(), prctl(), prlimit64()  only the requests the code makes: the
 *             kernel's largest attack surface stays closed.
 *
 * Anything else kills the process (SECCOMP_RET_KILL_PROCESS): the master
 * logs the SIGSYS and restarts it.
 */
#include "sandbox.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

/* Every process: memory, threads, signals, time, the event loop (epoll,
 * eventfd and pipes of libevent and the thread pools), its sockets' I/O,
 * opening files (its config's, the spool's) and the log. */
static const char *const sandbox_common[] = {
        "read",          "write",          "readv",
        "writev",        "pread64",        "pwrite64",
        "close",         "lseek",          "fstat",
        "newfstatat",    "statx",          "fcntl",
        "dup",           "dup2",           "dup3",
        "openat",        "mmap",           "munmap",
        "mprotect",      "mremap",         "madvise",
        "brk",           "futex",          "set_robust_list",
        "rseq",          "sched_yield",    "sched_getaffinity",
        "exit",          "exit_group",     "restart_syscall",
        "rt_sigaction",  "rt_sigprocmask", "rt_sigreturn",
        "sigaltstack",   "tgkill",         "getpid",
        "gettid",        "getppid",        "getuid",
        "geteuid",       "getgid",         "getegid",
        "clock_gettime", "clock_getres",   "gettimeofday",
        "time",          "nanosleep",      "clock_nanosleep",
        "getrandom",     "uname",          "sysinfo",
        "epoll_create1", "epoll_ctl",      "epoll_wait",
        "epoll_pwait",   "poll",           "ppoll",
        "eventfd2",      "pipe2",          "connect",
        "sendto",        "sendmsg",        "recvfrom",
        "recvmsg",       "shutdown",       "socketpair",
        "getsockopt",    "setsockopt",     "getsockname",
        "getpeername",   "accept4",
};

/* SMTP workers: the spool's tmp/ and incoming/ (spool.c, spool_commit.c)
 * and accepting on the listeners the master bound. */
static const char *const sandbox_smtpd[] = {
        "unlinkat",  "renameat",        "renameat2", "fsync",
        "fdatasync", "sync_file_range", "syncfs",    "listen",
};

/* The auth process: its sources (the users file re-read on SIGHUP, CA
 * files and directories, LDAP and SMTP upstreams, getaddrinfo's netlink
 * socket). It starts no program: alerts go to the queue. */
static const char *const sandbox_auth[] = {
        "bind", "getdents64", "access", "faccessat", "faccessat2",
};

/* The queue: the spool and the state files, Maildirs, inotify on
 * incoming/, DNS (c-ares), SMTP delivery, its own messages (DSNs and
 * alerts), and stopping an alert hook that ran too long. */
static const char *const sandbox_queue[] = {
        "getdents64",       "unlinkat",  "renameat",  "renameat2",     "mkdirat",
        "openat2",          "fsync",     "fdatasync", "syncfs",        "sync_file_range",
        "ftruncate",        "fallocate", "readlink",  "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "kill",      "flock",
};

/* The TLS key process: it only accepts the workers' connections on the
 * socket the master bound and answers them; its pool threads sign. It
 * makes no network socket (see sandbox_allow_sockets()), opens no file
 * once its keys are loaded, and everything else it needs is in
 * sandbox_common. */
static const char *const sandbox_keyproc[] = {
        "listen",
};

/* The metrics process: it accepts on the socket the master bound and
 * answers over HTTP from memory; it opens no file and makes no network
 * socket. Everything it needs is in sandbox_common. */

/* ioctl() requests any process makes: libevent's FIONREAD, non-blocking
 * mode, isatty(). */
static const unsigned long sandbox_ioctls[] = {FIONREAD, FIONBIO, TCGETS};

/* prctl() options: thread names, and making a process non-dumpable (never
 * the reverse). */
static const int sandbox_prctls[] = {PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE};

const char *
sandbox_kind_name(enum sandbox_kind kind)
{
	switch (kind) {
	case SANDBOX_SMTPD:
		return "smtpd";
	case SANDBOX_AUTH:
		return "auth";
	case SANDBOX_QUEUE:
		return "queue";
	case SANDBOX_KEYPROC:
		return "keyproc";
	case SANDBOX_METRICS:
		return "metrics";
	}
	return "?";
}

bool
sandbox_available(void)
{
#ifdef SANDBOX_SANITIZER
	return false;
#else
	return true;
#endif
}

/* Allow each named call; a name this architecture does not have is
 * skipped (the lists are written for every Linux architecture). */
static int
sandbox_allow(scmp_filter_ctx ctx, const char *const *names, size_t n, const char **bad_r)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0) {
			*bad_r = names[i];
			return -1;
		}
	}
	return 0;
}

/* The calls narrowed by argument (see the top). */
static int
sandbox_allow_args(scmp_filter_ctx ctx, const char **bad_r)
{
	*bad_r = "ioctl";
	for (size_t i = 0; i < AR_NELEM(sandbox_ioctls); i++) {
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		                     SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)sandbox_ioctls[i])) < 0)
			return -1;
	}
	*bad_r = "prctl";
	for (size_t i = 0; i < AR_NELEM(sandbox_prctls); i++) {
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
		                     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)sandbox_prctls[i])) < 0)
			return -1;
	}
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2,
	                     SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE), SCMP_A1(SCMP_CMP_EQ, 0)) < 0)
		return -1;
	/* getrlimit() only: a new limit (the third argument) is refused. */
	*bad_r = "prlimit64";
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A2(SCMP_CMP_EQ, 0)) <
	    0)
		return -1;
	/* Threads only; clone3 falls back to clone (see the top). */
	*bad_r = "clone";
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	                     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) < 0)
		return -1;
	*bad_r = "clone3";
	if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
		return -1;
	return 0;
}

/* socket(domain, ...) for the domains kind may use. */
static int
sandbox_allow_sockets(scmp_filter_ctx ctx, enum sandbox_kind kind)
{
	static const int unix_only[] = {AF_UNIX};
	static const int network[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
	/* The key process and the metrics process make no socket of their
	 * own, but syslog(3) opens a new AF_UNIX datagram socket whenever
	 * /dev/log was unreachable. */
	bool local = kind == SANDBOX_SMTPD || kind == SANDBOX_KEYPROC || kind == SANDBOX_METRICS;
	const int *domains = local ? unix_only : network;
	size_t n = local ? AR_NELEM(unix_only) : AR_NELEM(network);

	for (size_t i = 0; i < n; i++) {
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		                     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i])) < 0)
			return -1;
	}
	return 0;
}

int
sandbox_install(enum sandbox_kind kind, const char **error_r)
{
	static char err[160];
	const char *bad = "?";
	scmp_filter_ctx ctx;
	const char *const *own;
	size_t n_own;
	int r;

	switch (kind) {
	case SANDBOX_SMTPD:
		own = sandbox_smtpd, n_own = AR_NELEM(sandbox_smtpd);
		break;
	case SANDBOX_AUTH:
		own = sandbox_auth, n_own = AR_NELEM(sandbox_auth);
		break;
	case SANDBOX_KEYPROC:
		own = sandbox_keyproc, n_own = AR_NELEM(sandbox_keyproc);
		break;
	case SANDBOX_METRICS:
		own = NULL, n_own = 0;
		break;
	default:
		own = sandbox_queue, n_own = AR_NELEM(sandbox_queue);
		break;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, sizeof(err), "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		*error_r = err;
		return -1;
	}
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL) {
		*error_r = "seccomp_init failed";
		return -1;
	}
	r = sandbox_allow(ctx, sandbox_common, AR_NELEM(sandbox_common), &bad);
	if (r == 0)
		r = sandbox_allow(ctx, own, n_own, &bad);
	if (r == 0 && (r = sandbox_allow_sockets(ctx, kind)) < 0)
		bad = "socket";
	if (r == 0)
		r = sandbox_allow_args(ctx, &bad);
	if (r < 0) {
		snprintf(err, sizeof(err), "seccomp rule for %s failed", bad);
		goto fail;
	}
	r = seccomp_load(ctx);
	if (r < 0) {
		snprintf(err, sizeof(err), "seccomp_load: %s", strerror(-r));
		goto fail;
	}
	seccomp_release(ctx);
	return 0;
fail:
	seccomp_release(ctx);
	*error_r = err;
	return -1;
}

int
sandbox_apply(enum sandbox_kind kind, const char **error_r)
{
	if (!sandbox_available())
		return 0;
	return sandbox_install(kind, error_r);
}
