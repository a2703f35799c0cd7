/* SPDX-License-Identifier: ISC */
/*
 * control.h - the master's control socket, behind `authrelay status`,
 * `lockouts`, `unlock`, `reload` and `stop` (control_cmd.h is the command
 * line's end).
 *
 * spool_dir/private/control, mode 0600, bound by the master as root; a
 * connection whose peer is not root (nor, when the gateway runs without
 * root, its own uid: SO_PEERCRED) is refused. The master answers without
 * ever blocking its loop: what the auth process owns (sources, lockouts)
 * it asks over the admin channel (authwire/admin_proto.h), the queue's
 * counts over the queue's control socket; every question has a deadline.
 *
 * Protocol: one line "[json] COMMAND [ARG]\n" per connection; the answer's
 * first line is "ok [TEXT]" or "error STATUS TEXT" (STATUS: the command's
 * exit status, lib/build_info.h), then the listing (text or JSON), then
 * the master closes. "stop" answers "ok stopping" and keeps the
 * connection until the master exits, so the command returns once the
 * gateway has stopped.
 */
#ifndef AUTHRELAY_CONTROL_H
#define AUTHRELAY_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../lib/common.h"

struct event_base;
struct control;

#define CONTROL_SOCKET_NAME "private/control"

/* What the master tells of itself for `authrelay status`. */
struct control_listener {
	const char *name, *address, *role, *tls;
	unsigned sessions; /* open connections */
};

struct control_child {
	const char *kind; /* "smtpd", "auth", "queue", "keyproc", "metrics" */
	unsigned index;   /* smtpd: the worker's */
	pid_t pid;        /* 0 while not running */
	bool up;          /* reported itself up since its start */
	unsigned restarts;
};

struct control_status {
	pid_t pid;
	int64_t started; /* unix time */
	unsigned generation;
	size_t n_listeners;
	struct control_listener *listeners; /* malloc'd by the master */
	size_t n_children;
	struct control_child *children; /* malloc'd by the master */
};

/* The master's side. Each runs on the master's loop and must not block. */
struct control_ops {
	/* Fill st (the arrays are freed by the control; strings are the
	 * master's and stay valid until the next loop round). */
	void (*status)(void *arg, struct control_status *st);
	/* As SIGHUP: 0, or -1 with *error_r (the config's errors: the
	 * running configuration stays). */
	int (*reload)(void *arg, char **error_r);
	/* As SIGTERM. */
	void (*stop)(void *arg);
};

/* As root, before the privilege drop of any child: bind spool_dir's
 * control socket (mode 0600, owner root). Returns the listening fd, or -1
 * with *error_r. */
int control_bind(const char *spool_dir, const char **error_r);

/* Serve listen_fd (taken over) on base. spool_dir is where the queue's
 * socket is; ops and arg are the master's and are borrowed. */
struct control *control_new(struct event_base *base, int listen_fd, const char *spool_dir,
                            const struct control_ops *ops, void *arg);
/* Write what is left to the clients (a stop's answer), close them and the
 * socket, and remove it. NULL is fine. */
void control_free(struct control *);

/* The master's end of a new admin channel to a just started auth process
 * (taken over); the old one is closed and questions still waiting on it
 * get no answer from the auth process. */
void control_set_auth(struct control *, int fd);

/* In a new child of the master: close every descriptor of the control (the
 * socket, the clients, the admin channel), which a child must never hold;
 * nothing else is touched. */
void control_close_in_child(struct control *);

#endif
