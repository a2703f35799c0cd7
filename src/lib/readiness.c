/* SPDX-License-Identifier: ISC */
/*
 * readiness.c - the child's "I am up" on the master's pipe (readiness.h).
 * A record is a pid_t: far below PIPE_BUF, so each write is atomic and the
 * records of several children never mix.
 */
#include "readiness.h"

#include <errno.h>
#include <unistd.h>

static int readiness_fd = -1;

void
readiness_set_fd(int fd)
{
	readiness_fd = fd;
}

void
readiness_report(void)
{
	if (readiness_fd < 0)
		return;
	pid_t pid = getpid();
	ssize_t w;
	do
		w = write(readiness_fd, &pid, sizeof(pid));
	while (w < 0 && errno == EINTR);
	/* A failed write leaves the master waiting, which is what it should
	 * do for a child it cannot hear from. */
	close(readiness_fd);
	readiness_fd = -1;
}

int
readiness_read(int fd, pid_t *pids, int max)
{
	int n = 0;
	while (n < max) {
		ssize_t r = read(fd, &pids[n], sizeof(pids[n]));
		if (r == (ssize_t)sizeof(pids[n])) {
			n++;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* EOF, an error, or a short record: nobody writes those. */
		return n > 0 ? n : -1;
	}
	return n;
}
