/* SPDX-License-Identifier: ISC */
/*
 * ctlchan.h - the master's control channel to a child that reloads in
 * place (the auth process, the queue): the master sends the configuration
 * text it has just loaded and validated, the child answers whether it took
 * it.
 *
 * Why the text and not "re-read the file": the child may not be able to
 * open the file (a chdir, a privilege drop, a sandbox), and the file may
 * have changed again since the master checked it; with the text every
 * process runs the very configuration the master validated and logged.
 *
 * One SOCK_STREAM socketpair per child, made by the master before the fork;
 * frames of lib/ipc.h. Down: CONFIG (generation, flags, path, length), the
 * text in DATA frames, END. Up: DONE (generation, ok, a one-line message).
 * A child answers every END, in order.
 */
#ifndef AUTHRELAY_CTLCHAN_H
#define AUTHRELAY_CTLCHAN_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

struct event_base;
struct ctlchan;

/* Flags of a config. */
enum {
	/* The daemon logs to syslog whatever the file says (it has no
	 * terminal): the master's override, which the text does not carry. */
	CTLCHAN_FORCE_SYSLOG = 1 << 0,
};

/* A config as the child receives it; valid during the callback only. */
struct ctlchan_config {
	uint32_t generation; /* the master's reload number */
	uint32_t flags;
	const char *path; /* the file the text was read from (absolute) */
	const char *text; /* NUL-terminated; len bytes before the NUL */
	size_t len;
};

/* Child: apply c. Returns 0 when applied; else -1 with a one-line reason
 * in err (errsz bytes): the running configuration stays. */
typedef int ctlchan_apply_cb(void *arg, const struct ctlchan_config *c, char *err, size_t errsz);
/* Master: the child answered generation (ok, or message says why not). */
typedef void ctlchan_done_cb(void *arg, uint32_t generation, bool ok, const char *message);

/* Child: serve fd (its end of the pair, taken over) on base; apply runs on
 * base's loop for each config received. NULL if fd cannot be watched. */
struct ctlchan *ctlchan_child_new(struct event_base *base, int fd, ctlchan_apply_cb *apply,
                                  void *arg);
/* Master: its end, taken over; done runs for each answer. */
struct ctlchan *ctlchan_master_new(struct event_base *base, int fd, ctlchan_done_cb *done,
                                   void *arg);
/* Master: queue text (len bytes, at most CONFIG_TEXT_MAX) for the child.
 * Never blocks. -1 if the channel is closed or text too long. */
int ctlchan_send_config(struct ctlchan *, uint32_t generation, uint32_t flags, const char *path,
                        const char *text, size_t len);
/* The channel's socket (a child just forked closes the master's ends). */
int ctlchan_fd(const struct ctlchan *);
/* Closes the fd. NULL is fine. */
void ctlchan_free(struct ctlchan *);

#endif
