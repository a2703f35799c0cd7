/* SPDX-License-Identifier: ISC */
/*
 * spool_gauge.h - how full the queue is, shared between processes: the queue
 * process publishes its message count and whether it is over [queue]
 * max_queue_size; the SMTP workers read the flag at accept time and defer new
 * connections (421 4.3.2) while it is set. The master maps it once, before
 * forking, so it survives the restart of any child.
 */
#ifndef AUTHRELAY_SPOOL_GAUGE_H
#define AUTHRELAY_SPOOL_GAUGE_H

#include <stdbool.h>

struct spool_gauge;

/* An anonymous shared mapping (inherited across fork). fatal() on failure. */
struct spool_gauge *spool_gauge_new(void);
/* Queue process: publish the count and the "full" flag. */
void spool_gauge_set(struct spool_gauge *, unsigned long queued, bool full);
unsigned long spool_gauge_queued(const struct spool_gauge *);
/* Workers: true while new connections must be deferred. NULL: never full. */
bool spool_gauge_full(const struct spool_gauge *);
void spool_gauge_free(struct spool_gauge *);

#endif
