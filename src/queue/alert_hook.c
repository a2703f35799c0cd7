/* SPDX-License-Identifier: ISC */
/*
 * alert_hook.c - the [alerts] hook, run from the queue process (see
 * alert_hook.h).
 *
 * /bin/sh -c HOOK, its stdin a pipe holding the alert text, started through
 * spawner.h: a shell started from this sandboxed process would inherit its
 * allow-list, so a helper forked before the sandbox starts it.
 * An alert is a few kB, well under a pipe's buffer, so the text is one
 * non-blocking write and we never wait on the hook: one that does not read
 * its stdin simply loses it. Children are reaped by pid with WNOHANG from a
 * once-a-second timer that runs only while a hook does, so the queue
 * process's other children (none today) are not disturbed, and a hook past
 * its timeout gets SIGKILL.
 */
#include "alert_hook.h"
#include "../lib/common.h"
#include "../lib/log.h"
#include "../lib/spawner.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct hook_child {
	pid_t pid; /* 0: free slot */
	uint64_t started_ms;
	bool killed;
};

struct alert_hook {
	char *command;
	unsigned timeout_ms;
	struct event *reap;
	struct hook_child children[ALERT_HOOK_MAX];
	unsigned running;
};

static uint64_t
hook_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reap what has finished; kill what ran too long. */
static void
hook_reap(struct alert_hook *h)
{
	uint64_t now = hook_now_ms();

	for (size_t i = 0; i < ALERT_HOOK_MAX; i++) {
		struct hook_child *c = &h->children[i];
		int status;
		pid_t r;

		if (c->pid == 0)
			continue;
		r = spawner_wait(c->pid, &status);
		if (r == c->pid || (r < 0 && errno == ECHILD)) {
			if (r == c->pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
				log_warn("alert hook pid=%d exited status=%d", (int)c->pid,
				         WEXITSTATUS(status));
			else if (r == c->pid && WIFSIGNALED(status) && !c->killed)
				log_warn("alert hook pid=%d killed by signal %d", (int)c->pid,
				         WTERMSIG(status));
			else
				log_debug("alert hook pid=%d done", (int)c->pid);
			c->pid = 0;
			h->running--;
		} else if (!c->killed && now - c->started_ms >= h->timeout_ms) {
			log_warn("alert hook pid=%d still running after %u s; killing it",
			         (int)c->pid, h->timeout_ms / 1000);
			kill(c->pid, SIGKILL);
			c->killed = true;
		}
	}
	if (h->running == 0)
		evtimer_del(h->reap);
}

static void
hook_on_reap(evutil_socket_t fd, short what, void *arg)
{
	hook_reap(arg);
}

struct alert_hook *
alert_hook_new(struct event_base *base, const char *command, unsigned timeout_ms)
{
	struct alert_hook *h = xcalloc(1, sizeof(*h));

	h->command = xstrdup(command);
	h->timeout_ms = timeout_ms > 0 ? timeout_ms : ALERT_HOOK_TIMEOUT_MS;
	h->reap = event_new(base, -1, EV_PERSIST, hook_on_reap, h);
	if (h->reap == NULL)
		fatal("alert hook: cannot create a timer");
	return h;
}

void
alert_hook_free(struct alert_hook *h)
{
	if (h == NULL)
		return;
	event_free(h->reap);
	free(h->command);
	free(h);
}

unsigned
alert_hook_running(const struct alert_hook *h)
{
	return h->running;
}

bool
alert_hook_run(struct alert_hook *h, const char *kind, const char *text, size_t len)
{
	struct timeval second = {1, 0};
	struct hook_child *slot = NULL;
	char kind_env[96];
	int fds[2];
	pid_t pid;
	int err;

	if (h->running > 0)
		hook_reap(h);
	for (size_t i = 0; i < ALERT_HOOK_MAX && slot == NULL; i++) {
		if (h->children[i].pid == 0)
			slot = &h->children[i];
	}
	if (slot == NULL) {
		log_warn("alert hook not run kind=%s: %d hooks still running", kind,
		         ALERT_HOOK_MAX);
		return false;
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		log_err("alert hook: pipe: %s", strerror(errno));
		return false;
	}
	snprintf(kind_env, sizeof(kind_env), "AUTHRELAY_ALERT_KIND=%s", kind);
	err = spawner_spawn(h->command, kind_env, fds[0], &pid);
	close(fds[0]);
	if (err != 0) {
		log_err("alert hook: cannot run /bin/sh: %s", strerror(err));
		close(fds[1]);
		return false;
	}
	if (fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0 || write(fds[1], text, len) != (ssize_t)len)
		log_warn("alert hook pid=%d: could not write the whole alert to its stdin",
		         (int)pid);
	close(fds[1]);
	*slot = (struct hook_child){.pid = pid, .started_ms = hook_now_ms()};
	h->running++;
	evtimer_add(h->reap, &second);
	log_debug("alert hook pid=%d started kind=%s", (int)pid, kind);
	return true;
}
