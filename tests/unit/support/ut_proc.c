/* SPDX-License-Identifier: ISC */
/*
 * ut_proc.c - child processes for unit tests (ut_proc.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ut_proc.h"

pid_t
ut_proc_fork(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	return pid;
}

int
ut_proc_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return status;
}
