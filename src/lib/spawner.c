/* SPDX-License-Identifier: ISC */
/*
 * spawner.c - the helper that runs the administrator's command for a
 * sandboxed process (spawner.h).
 *
 * The two talk over a SOCK_SEQPACKET socket pair, one record per request,
 * one per answer, in turn (a mutex keeps the caller's threads in turn):
 *   'S' <env entry>   with the stdin descriptor as SCM_RIGHTS
 *                     -> struct spawner_reply {err, pid}
 *   'W' <pid>         -> struct spawner_reply {err, pid (0: running), status}
 * The helper closes every descriptor it inherited but its end of the pair
 * and the standard ones, and leaves when the pair closes (its parent is
 * gone) or with PR_SET_PDEATHSIG.
 */
#include "spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SPAWNER_MAX_REQUEST 512

struct spawner_reply {
	int err;
	pid_t pid;
	int status;
};

static int spawner_fd = -1;   /* the caller's end; -1: no helper */
static char *spawner_command; /* the helper's: another is refused here already */
static pthread_mutex_t spawner_mu = PTHREAD_MUTEX_INITIALIZER;

/* posix_spawn of /bin/sh -c command, stdin from stdin_fd, with env_entry. */
static int
spawner_run(const char *command, const char *env_entry, int stdin_fd, pid_t *pid_r)
{
	char *argv[] = {"/bin/sh", "-c", (char *)command, NULL};
	posix_spawn_file_actions_t fa;
	size_t n_env = 0;
	char **envp;
	int err;

	while (environ[n_env] != NULL)
		n_env++;
	envp = xcalloc(n_env + 2, sizeof(*envp));
	memcpy(envp, environ, n_env * sizeof(*envp));
	envp[n_env] = (char *)env_entry;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
	err = posix_spawn(pid_r, "/bin/sh", &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	return err;
}

/* Receive one request: its bytes into buf (NUL-terminated), a descriptor
 * passed with it into *fd_r (or -1). Returns the length, 0 at the end,
 * -1 on error. */
static ssize_t
spawner_recv(int sock, char *buf, size_t size, int *fd_r)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, size - 1};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = ctl.buf,
	                    .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;

	*fd_r = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd_r, CMSG_DATA(c), sizeof(int));
	}
	return n;
}

static AR_NORETURN void
spawner_helper(int sock, const char *command)
{
	char buf[SPAWNER_MAX_REQUEST];

	/* Nothing of the parent's but the pair and stdout/stderr (the log). */
	if (dup2(sock, 3) < 0)
		_exit(1);
	sock = 3;
	for (int fd = 4; fd < 1024; fd++)
		close(fd);
	for (;;) {
		struct spawner_reply rep = {0};
		int fd;
		ssize_t n = spawner_recv(sock, buf, sizeof(buf), &fd);
		if (n <= 0)
			_exit(0);
		if (buf[0] == 'S' && fd >= 0) {
			rep.err =
			        spawner_run(command, buf[1] != '\0' ? buf + 1 : NULL, fd, &rep.pid);
		} else if (buf[0] == 'W' && (size_t)n == 1 + sizeof(pid_t)) {
			pid_t pid;
			memcpy(&pid, buf + 1, sizeof(pid));
			rep.pid = waitpid(pid, &rep.status, WNOHANG);
			rep.err = rep.pid < 0 ? errno : 0;
		} else {
			rep.err = EINVAL;
		}
		if (fd >= 0)
			close(fd);
		if (send(sock, &rep, sizeof(rep), 0) < 0)
			_exit(0);
	}
}

int
spawner_start(const char *command, const char **error_r)
{
	static char err[128];
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, sizeof(err), "socketpair: %s", strerror(errno));
		*error_r = err;
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, sizeof(err), "fork: %s", strerror(errno));
		*error_r = err;
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		spawner_helper(sv[1], command);
	}
	close(sv[1]);
	spawner_fd = sv[0];
	spawner_command = xstrdup(command);
	return 0;
}

/* One request and its answer. Returns 0, or an errno value. */
static int
spawner_call(const void *req, size_t len, int fd, struct spawner_reply *rep)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {(void *)req, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;
	int err = 0;

	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	pthread_mutex_lock(&spawner_mu);
	do
		n = sendmsg(spawner_fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		err = errno;
	} else {
		do
			n = recv(spawner_fd, rep, sizeof(*rep), 0);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(*rep))
			err = n < 0 ? errno : EPIPE;
	}
	pthread_mutex_unlock(&spawner_mu);
	return err;
}

int
spawner_spawn(const char *command, const char *env_entry, int stdin_fd, pid_t *pid_r)
{
	char req[SPAWNER_MAX_REQUEST];
	struct spawner_reply rep;
	int err;

	if (spawner_fd < 0)
		return spawner_run(command, env_entry, stdin_fd, pid_r);
	if (spawner_command != NULL && strcmp(command, spawner_command) != 0)
		return EPERM;
	if (snprintf(req, sizeof(req), "S%s", env_entry ? env_entry : "") >= (int)sizeof(req))
		return E2BIG;
	err = spawner_call(req, strlen(req), stdin_fd, &rep);
	if (err == 0)
		err = rep.err;
	if (err == 0)
		*pid_r = rep.pid;
	return err;
}

pid_t
spawner_wait(pid_t pid, int *status_r)
{
	char req[1 + sizeof(pid_t)];
	struct spawner_reply rep;
	int err;

	if (spawner_fd < 0)
		return waitpid(pid, status_r, WNOHANG);
	req[0] = 'W';
	memcpy(req + 1, &pid, sizeof(pid));
	err = spawner_call(req, sizeof(req), -1, &rep);
	if (err == 0)
		err = rep.err;
	if (err != 0) {
		errno = err;
		return -1;
	}
	if (rep.pid > 0)
		*status_r = rep.status;
	return rep.pid;
}
