/* SPDX-License-Identifier: ISC */
/*
 * listen_set.h - the listening sockets the master holds for its SMTP
 * workers: bound once as root, shared by every generation of workers whose
 * configuration has a listener on that address, closed when no generation
 * uses them any more.
 *
 * How it fits: at start and at each reload the master asks for the sockets
 * of a configuration's listeners. A socket whose address (family, address,
 * port) is already bound is reused as it is, so a reload never closes a
 * port that stays in the configuration: connections waiting in its accept
 * queue are taken by the new workers. A new address is bound; an address
 * no longer configured closes once the last generation that listened on it
 * is gone (its workers close their copies when they stop accepting).
 */
#ifndef AUTHRELAY_LISTEN_SET_H
#define AUTHRELAY_LISTEN_SET_H

#include <stddef.h>
#include "../lib/common.h"

struct config;
struct listen_set;

struct listen_set *listen_set_new(void);
/* Closes every socket. NULL is fine. */
void listen_set_free(struct listen_set *);

/* The socket of each listener of cfg in fds_r[i] (cfg->n_listeners
 * entries), bound now or reused, each with one more reference. 0, or -1
 * with *error_r (a static string naming the listener) and nothing taken:
 * sockets this call bound are closed again. */
int listen_set_acquire(struct listen_set *, const struct config *cfg, int *fds_r,
                       const char **error_r);
/* Stopping: close every socket now, so that new connections are refused
 * rather than left in a backlog nobody accepts from any more. References
 * may still be dropped afterwards. */
void listen_set_close(struct listen_set *);
/* Drop the references fds took (n entries); a socket nobody references is
 * closed. */
void listen_set_release(struct listen_set *, const int *fds, size_t n);

/* In a child just forked: close every socket of the set except the n in
 * keep (NULL: close them all). */
void listen_set_close_in_child(const struct listen_set *, const int *keep, size_t n);

/* Sockets held (tests, logs). */
size_t listen_set_count(const struct listen_set *);

#endif
