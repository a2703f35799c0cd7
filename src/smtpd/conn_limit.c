/* SPDX-License-Identifier: ISC */
/*
 * conn_limit.c - the connection counts behind max_connections and
 * max_connections_per_ip, shared by every SMTP worker (see conn_limit.h).
 *
 * One shmtab: a fixed row per listener (its total) and a keyed row per
 * (listener, client) that has connections. Every row has one cell per
 * worker: the connections that worker holds. A worker only ever adds to or
 * takes from its own cells, so what a dead worker held is exactly its
 * cells, which the master zeroes (shmtab_clear_cell) after undoing the
 * steps it left half done (shmtab_recover).
 *
 * Acquire reserves in the listener's row under max_connections, then in
 * the client's row under max_connections_per_ip, and gives the first back
 * if the second fails. A client row is freed as soon as its last
 * connection goes; one freed or reused under a worker's feet (the
 * reservation comes back SHMTAB_STALE) is simply looked up again.
 */
#include "conn_limit.h"
#include "../lib/log.h"
#include "../lib/shmtab.h"

#include <stdlib.h>
#include <string.h>

/* Lookups and reservations that raced with another worker freeing the
 * same client's row; each retry follows real progress elsewhere. */
#define CL_TRIES 8

/* Table key: the listener, then the client. */
#define CL_KEY_LEN 20

struct conn_limit {
	struct shmtab *tab;
	unsigned max_workers;
	unsigned n_listeners;
};

static uint64_t
cl_rank(const struct shmtab *tab, const struct shmtab_ref *ref, void *arg)
{
	/* A row without connections (nor one being counted) is idle; one
	 * with some is never evicted. */
	return shmtab_idle(tab, ref) ? 0 : SHMTAB_KEEP;
}

static void
cl_key(unsigned listener, const uint8_t key[16], uint8_t out[CL_KEY_LEN])
{
	uint32_t l = listener;

	memcpy(out, &l, sizeof(l));
	memcpy(out + sizeof(l), key, 16);
}

static void
cl_check_ids(const struct conn_limit *cl, unsigned worker, unsigned listener)
{
	if (worker >= cl->max_workers || listener >= cl->n_listeners)
		fatal("conn_limit: worker %u / listener %u out of range (%u / %u)", worker,
		      listener, cl->max_workers, cl->n_listeners);
}

struct conn_limit *
conn_limit_new(unsigned max_workers, unsigned n_listeners, unsigned slots)
{
	struct conn_limit *cl;

	if (max_workers == 0 || n_listeners == 0)
		fatal("conn_limit: needs at least one worker and one listener");
	if (max_workers > SHMTAB_OWNER_MAX)
		fatal("conn_limit: %u workers is too many", max_workers);
	cl = xcalloc(1, sizeof(*cl));
	cl->max_workers = max_workers;
	cl->n_listeners = n_listeners;
	/* Twice the clients that can be connected at once (each holds a
	 * connection under some listener's max_connections), so that the
	 * window where a client's row may live is practically never full. */
	cl->tab = shmtab_new(n_listeners, (size_t)slots * 2, CL_KEY_LEN, max_workers, cl_rank);
	return cl;
}

void
conn_limit_free(struct conn_limit *cl)
{
	if (cl == NULL)
		return;
	shmtab_free(cl->tab);
	free(cl);
}

enum conn_limit_result
conn_limit_acquire(struct conn_limit *cl, unsigned worker, unsigned listener, const uint8_t key[16],
                   unsigned max_total, unsigned max_per_ip)
{
	struct shmtab_ref total, row;
	uint8_t k[CL_KEY_LEN];

	cl_check_ids(cl, worker, listener);
	total = shmtab_fixed(cl->tab, listener);
	cl_key(listener, key, k);
	for (int attempt = 0; attempt < CL_TRIES; attempt++) {
		enum shmtab_reserve r;

		if (shmtab_reserve(cl->tab, &total, worker, max_total) != SHMTAB_RESERVED)
			return CONN_LIMIT_TOTAL;
		if (shmtab_find(cl->tab, k, SHMTAB_CREATE, worker, NULL, &row) != SHMTAB_OK) {
			shmtab_take(cl->tab, &total, worker, 1);
			return CONN_LIMIT_TOTAL;
		}
		r = shmtab_reserve(cl->tab, &row, worker, max_per_ip);
		if (r == SHMTAB_RESERVED)
			return CONN_LIMIT_OK;
		shmtab_take(cl->tab, &total, worker, 1);
		if (r == SHMTAB_OVER)
			return CONN_LIMIT_PER_IP;
	}
	return CONN_LIMIT_TOTAL;
}

void
conn_limit_release(struct conn_limit *cl, unsigned worker, unsigned listener, const uint8_t key[16])
{
	struct shmtab_ref total, row;
	uint8_t k[CL_KEY_LEN];

	cl_check_ids(cl, worker, listener);
	total = shmtab_fixed(cl->tab, listener);
	cl_key(listener, key, k);
	/* HELD: the row may be in the middle of being drained by a worker
	 * that saw it empty for an instant; our count keeps it. */
	if (shmtab_find(cl->tab, k, SHMTAB_HELD, worker, NULL, &row) != SHMTAB_OK ||
	    shmtab_count(cl->tab, &row, worker) == 0 ||
	    shmtab_count(cl->tab, &total, worker) == 0) {
		/* A release without its acquire is a bug, but not one worth
		 * killing every session of this worker for: counts only
		 * never go negative. */
		log_err("conn_limit: release of a connection not counted (worker=%u listener=%u)",
		        worker, listener);
		return;
	}
	shmtab_take(cl->tab, &row, worker, 1);
	shmtab_take(cl->tab, &total, worker, 1);
	if (shmtab_sum(cl->tab, &row) == 0)
		shmtab_try_free(cl->tab, &row, worker, NULL);
}

void
conn_limit_reset_worker(struct conn_limit *cl, unsigned worker)
{
	cl_check_ids(cl, worker, 0);
	shmtab_recover(cl->tab, worker);
	shmtab_clear_cell(cl->tab, worker);
	shmtab_sweep(cl->tab, SHMTAB_MASTER, NULL);
}

unsigned
conn_limit_total(struct conn_limit *cl, unsigned listener)
{
	struct shmtab_ref total;
	uint64_t n;

	cl_check_ids(cl, 0, listener);
	total = shmtab_fixed(cl->tab, listener);
	n = shmtab_sum(cl->tab, &total);
	return n > UINT32_MAX ? UINT32_MAX : (unsigned)n;
}

unsigned
conn_limit_per_ip(struct conn_limit *cl, unsigned listener, const uint8_t key[16])
{
	struct shmtab_ref row;
	uint8_t k[CL_KEY_LEN];
	uint64_t n;

	cl_check_ids(cl, 0, listener);
	cl_key(listener, key, k);
	if (shmtab_find(cl->tab, k, SHMTAB_HELD, 0, NULL, &row) != SHMTAB_OK)
		return 0;
	n = shmtab_sum(cl->tab, &row);
	return n > UINT32_MAX ? UINT32_MAX : (unsigned)n;
}
