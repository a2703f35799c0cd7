/* SPDX-License-Identifier: ISC */
/*
 * spool_gauge.c - the shared queue-size gauge (spool_gauge.h): two lock-free
 * atomics in a page mapped MAP_SHARED | MAP_ANONYMOUS. One writer (the queue
 * process), any number of readers; a reader may see a value one update old,
 * which is fine for a threshold.
 */
#include "spool_gauge.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

struct spool_gauge {
	atomic_ulong queued;
	atomic_bool full;
};

struct spool_gauge *
spool_gauge_new(void)
{
	void *p = mmap(NULL, sizeof(struct spool_gauge), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("spool gauge: mmap: %s", strerror(errno));
	struct spool_gauge *g = p;
	atomic_init(&g->queued, 0);
	atomic_init(&g->full, false);
	return g;
}

void
spool_gauge_set(struct spool_gauge *g, unsigned long queued, bool full)
{
	if (g == NULL)
		return;
	atomic_store_explicit(&g->queued, queued, memory_order_relaxed);
	atomic_store_explicit(&g->full, full, memory_order_relaxed);
}

unsigned long
spool_gauge_queued(const struct spool_gauge *g)
{
	return g == NULL ? 0 : atomic_load_explicit(&g->queued, memory_order_relaxed);
}

bool
spool_gauge_full(const struct spool_gauge *g)
{
	return g != NULL && atomic_load_explicit(&g->full, memory_order_relaxed);
}

void
spool_gauge_free(struct spool_gauge *g)
{
	if (g != NULL)
		munmap(g, sizeof(*g));
}
