/* SPDX-License-Identifier: ISC */
/*
 * test_sandbox.c - lib/sandbox: each kind's filter, installed in a forked
 * child, lets the calls of its process through and kills the child with
 * SIGSYS at the first call outside its list: a fork, a socket of a family
 * it may not use, ptrace, a new resource limit, a prctl it has no use for.
 * NoNewPrivs and the seccomp mode show in /proc/self/status. lib/spawner:
 * the helper forked before the filter runs the command for a sandboxed
 * process, and only that command.
 *
 * In a sanitizer build sandbox_available() is false and the filters are
 * not tested (the sanitizer's run time makes calls of its own).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/sandbox.h"
#include "lib/spawner.h"

typedef int child_fn(void);

/* Run fn in a child under kind's filter; its wait status. */
static int
run_sandboxed(enum sandbox_kind kind, child_fn *fn)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		const char *err;
		if (sandbox_install(kind, &err) != 0) {
			fprintf(stderr, "sandbox_install: %s\n", err);
			_exit(100);
		}
		_exit(fn());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void
assert_killed_by_sigsys(int status)
{
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
}

static void
assert_exit_ok(int status)
{
	if (WIFSIGNALED(status))
		fail_msg("killed by signal %d", WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* What every process does: memory, time, files, a thread, a UNIX socket. */
static void *
thread_main(void *arg)
{
	return arg;
}

static int
child_ordinary(void)
{
	struct timespec ts;
	pthread_t t;
	void *ret = NULL;
	char buf[64];
	int sv[2];

	void *p = malloc(1 << 20);
	if (p == NULL)
		return 1;
	free(p);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (getpid() <= 0)
		return 2;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0)
		return 3;
	close(fd);
	/* glibc tries clone3 first: the filter answers ENOSYS, it falls back
	 * to clone(CLONE_THREAD), which is allowed. */
	if (pthread_create(&t, NULL, thread_main, buf) != 0 || pthread_join(t, &ret) != 0 ||
	    ret != buf)
		return 4;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 5;
	if (write(sv[0], "x", 1) != 1 || read(sv[1], buf, 1) != 1)
		return 6;
	if (prctl(PR_SET_DUMPABLE, 0) != 0)
		return 7;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 8;
	return 0;
}

static int
child_fork(void)
{
	/* A process, not a thread: no kind may make one. */
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	return 0;
}

static int
child_inet_socket(void)
{
	socket(AF_INET, SOCK_STREAM, 0);
	return 0;
}

static int
child_inet6_socket(void)
{
	socket(AF_INET6, SOCK_DGRAM, 0);
	return 0;
}

static int
child_packet_socket(void)
{
	socket(AF_PACKET, SOCK_RAW, 0);
	return 0;
}

static int
child_ptrace(void)
{
	syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
	return 0;
}

static int
child_setrlimit(void)
{
	struct rlimit rl = {0, 0};
	setrlimit(RLIMIT_CORE, &rl);
	return 0;
}

static int
child_dumpable_again(void)
{
	prctl(PR_SET_DUMPABLE, 1);
	return 0;
}

static int
child_execve(void)
{
	char *argv[] = {"/bin/true", NULL};
	execve("/bin/true", argv, NULL);
	return 0;
}

static int
child_mkdir(void)
{
	syscall(SYS_mkdirat, AT_FDCWD, "/nonexistent-authrelay-test", 0700);
	return 0;
}

static int
child_status_fields(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	if (strstr(buf, "\nNoNewPrivs:\t1\n") == NULL)
		return 2;
	if (strstr(buf, "\nSeccomp:\t2\n") == NULL)
		return 3;
	return 0;
}

#define SKIP_WITHOUT_SANDBOX()                                                                     \
	do {                                                                                       \
		if (!sandbox_available())                                                          \
			skip();                                                                    \
	} while (0)

static void
test_every_kind_runs_the_ordinary(void **state)
{
	SKIP_WITHOUT_SANDBOX();
	assert_exit_ok(run_sandboxed(SANDBOX_SMTPD, child_ordinary));
	assert_exit_ok(run_sandboxed(SANDBOX_AUTH, child_ordinary));
	assert_exit_ok(run_sandboxed(SANDBOX_QUEUE, child_ordinary));
	assert_exit_ok(run_sandboxed(SANDBOX_KEYPROC, child_ordinary));
	assert_exit_ok(run_sandboxed(SANDBOX_METRICS, child_ordinary));
}

static void
test_status_shows_no_new_privs_and_filter(void **state)
{
	SKIP_WITHOUT_SANDBOX();
	assert_exit_ok(run_sandboxed(SANDBOX_SMTPD, child_status_fields));
	assert_exit_ok(run_sandboxed(SANDBOX_QUEUE, child_status_fields));
}

static void
test_no_kind_forks_or_execs(void **state)
{
	static const enum sandbox_kind kinds[] = {SANDBOX_SMTPD, SANDBOX_AUTH, SANDBOX_QUEUE,
	                                          SANDBOX_KEYPROC, SANDBOX_METRICS};
	SKIP_WITHOUT_SANDBOX();
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_fork));
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_execve));
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_ptrace));
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_setrlimit));
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_dumpable_again));
		assert_killed_by_sigsys(run_sandboxed(kinds[i], child_packet_socket));
	}
}

static void
test_worker_has_no_network(void **state)
{
	SKIP_WITHOUT_SANDBOX();
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_SMTPD, child_inet_socket));
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_SMTPD, child_inet6_socket));
	/* The key process never touches the network. */
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_KEYPROC, child_inet_socket));
	/* Nor does the metrics process: it only accepts on its socket. */
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_METRICS, child_inet_socket));
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_METRICS, child_inet6_socket));
	/* Auth and queue speak to directories, upstreams and next hops. */
	assert_exit_ok(run_sandboxed(SANDBOX_AUTH, child_inet_socket));
	assert_exit_ok(run_sandboxed(SANDBOX_QUEUE, child_inet6_socket));
}

static void
test_only_the_queue_makes_directories(void **state)
{
	SKIP_WITHOUT_SANDBOX();
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_SMTPD, child_mkdir));
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_AUTH, child_mkdir));
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_KEYPROC, child_mkdir));
	assert_killed_by_sigsys(run_sandboxed(SANDBOX_METRICS, child_mkdir));
	assert_exit_ok(run_sandboxed(SANDBOX_QUEUE, child_mkdir));
}

static void
test_kind_names(void **state)
{
	assert_string_equal(sandbox_kind_name(SANDBOX_SMTPD), "smtpd");
	assert_string_equal(sandbox_kind_name(SANDBOX_AUTH), "auth");
	assert_string_equal(sandbox_kind_name(SANDBOX_QUEUE), "queue");
	assert_string_equal(sandbox_kind_name(SANDBOX_KEYPROC), "keyproc");
	assert_string_equal(sandbox_kind_name(SANDBOX_METRICS), "metrics");
}

/* The hook's helper: started before the filter, it runs its command for
 * the sandboxed child (stdin, the environment entry, the exit status), and
 * refuses any other command. */
static char spawn_out[64], spawn_cmd[256];

static int
child_uses_spawner(void)
{
	int fds[2], status = 0;
	pid_t pid, r = 0;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return 10;
	if (spawner_spawn("cat > /tmp/other", NULL, fds[0], &pid) != EPERM)
		return 11;
	if (spawner_spawn(spawn_cmd, "SPAWNER_TEST=kind", fds[0], &pid) != 0)
		return 12;
	close(fds[0]);
	if (write(fds[1], "hello\n", 6) != 6)
		return 13;
	close(fds[1]);
	for (int i = 0; i < 500 && (r = spawner_wait(pid, &status)) == 0; i++)
		usleep(10000);
	if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 3)
		return 14;
	return 0;
}

static void
test_spawner_runs_its_command_for_a_sandboxed_process(void **state)
{
	const char *err;
	char buf[64] = "";
	int status;
	pid_t pid;
	FILE *f;

	SKIP_WITHOUT_SANDBOX();
	snprintf(spawn_out, sizeof(spawn_out), "/tmp/authrelay-spawner-%d", (int)getpid());
	snprintf(spawn_cmd, sizeof(spawn_cmd),
	         "read x; echo \"$x $SPAWNER_TEST\" > %s.tmp; mv %s.tmp %s; exit 3", spawn_out,
	         spawn_out, spawn_out);
	unlink(spawn_out);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (spawner_start(spawn_cmd, &err) != 0)
			_exit(100);
		if (sandbox_install(SANDBOX_AUTH, &err) != 0)
			_exit(101);
		_exit(child_uses_spawner());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_exit_ok(status);
	f = fopen(spawn_out, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	unlink(spawn_out);
	assert_string_equal(buf, "hello kind\n");
}

/* Without a helper, spawner_spawn and spawner_wait work in the process. */
static void
test_spawner_without_helper(void **state)
{
	int fds[2], status = 0;
	pid_t pid, r = 0;

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	assert_int_equal(spawner_spawn("read x; test \"$x$E\" = ab", "E=b", fds[0], &pid), 0);
	close(fds[0]);
	assert_int_equal(write(fds[1], "a\n", 2), 2);
	close(fds[1]);
	for (int i = 0; i < 500 && (r = spawner_wait(pid, &status)) == 0; i++)
		usleep(10000);
	assert_int_equal(r, pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_kind_names),
	        cmocka_unit_test(test_every_kind_runs_the_ordinary),
	        cmocka_unit_test(test_status_shows_no_new_privs_and_filter),
	        cmocka_unit_test(test_no_kind_forks_or_execs),
	        cmocka_unit_test(test_worker_has_no_network),
	        cmocka_unit_test(test_only_the_queue_makes_directories),
	        cmocka_unit_test(test_spawner_runs_its_command_for_a_sandboxed_process),
	        cmocka_unit_test(test_spawner_without_helper),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
