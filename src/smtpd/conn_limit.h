/* SPDX-License-Identifier: ISC */
/*
 * conn_limit.h - connection counts shared by all SMTP workers: total per
 * listener and per client (IPv4 address, IPv6 prefix) per listener, behind
 * max_connections and max_connections_per_ip.
 *
 * A shared-memory table (shmtab.h) the master maps before forking workers.
 * No lock: a connection is a reservation in the accepting worker's own cell
 * of the listener's row and of the client's row, made with atomics, so two
 * workers taking the last place at once never both get it. When a worker
 * dies the master gives back all its connections at once without waiting
 * for anything a worker could hold.
 */
#ifndef AUTHRELAY_CONN_LIMIT_H
#define AUTHRELAY_CONN_LIMIT_H

#include <stdint.h>
#include "../lib/common.h"

struct conn_limit;

enum conn_limit_result { CONN_LIMIT_OK = 0, CONN_LIMIT_TOTAL, CONN_LIMIT_PER_IP };

/* In the master, before fork: room for max_workers workers, n_listeners
 * listeners and at least slots distinct (listener, client) pairs at a
 * time. */
struct conn_limit *conn_limit_new(unsigned max_workers, unsigned n_listeners, unsigned slots);
void conn_limit_free(struct conn_limit *);

/* Count one connection for worker on listener from key (net_client_key()),
 * unless it would pass max_total or max_per_ip (0: no limit). When the
 * table has no room for the client (or another worker is stopped half way
 * through this very client) the connection is refused as CONN_LIMIT_TOTAL. */
enum conn_limit_result conn_limit_acquire(struct conn_limit *, unsigned worker, unsigned listener,
                                          const uint8_t key[16], unsigned max_total,
                                          unsigned max_per_ip);
/* Give back a connection counted by acquire. A release without its acquire
 * is logged and ignored: counts never go below zero. */
void conn_limit_release(struct conn_limit *, unsigned worker, unsigned listener,
                        const uint8_t key[16]);
/* Master: worker died; drop every connection it held and undo what it left
 * half done. Never waits. */
void conn_limit_reset_worker(struct conn_limit *, unsigned worker);
/* Current counts (tests, logs). */
unsigned conn_limit_total(struct conn_limit *, unsigned listener);
unsigned conn_limit_per_ip(struct conn_limit *, unsigned listener, const uint8_t key[16]);

#endif
