/* SPDX-License-Identifier: ISC */
/*
 * ut_proc.h - unit-test helper: child processes for tests of what several
 * processes share (shared-memory tables, locks).
 */
#ifndef UT_PROC_H
#define UT_PROC_H

#include <sys/types.h>

/* fork(); fails the test when it cannot. */
pid_t ut_proc_fork(void);

/* Wait for pid (through EINTR) and return its waitpid() status. */
int ut_proc_wait(pid_t pid);

#endif
