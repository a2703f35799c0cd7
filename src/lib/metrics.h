/* SPDX-License-Identifier: ISC */
/*
 * metrics.h - counters, gauges and histograms shared by every process of the
 * gateway, exact across processes, and their exposition in the Prometheus
 * text format or OpenMetrics.
 *
 * The master makes one anonymous shared mapping before it forks anything
 * (metrics_new()). It holds one slot per process: a row of 64-bit atomic
 * cells, one per (family, label set, bucket). A process writes only its own
 * slot (metrics_attach()), with relaxed atomic adds: nobody waits for
 * anybody, and there is no lock that a stopped or hostile process could
 * hold against the master. The reader (the metrics process) sums the slots.
 * A counter is therefore exact however many workers count it, and never goes
 * back: when a process dies the master gives its slot to the next process it
 * starts, which goes on adding to the same cells (metrics_slot_release()
 * zeroes only the gauges). When every slot is taken (many generations of
 * workers at once) a child gets the shared slot: its adds are still atomic,
 * so counters stay exact, but its gauges outlive it.
 *
 * Families are a table the caller passes (src/metrics/metric.c is the
 * gateway's); a family has up to METRICS_MAX_LABELS labels, each with a
 * fixed set of values: either a static list (mechanisms, reasons), or names
 * that processes intern at run time (listeners, directories), kept in the
 * mapping so that every process sees them: at most `size - 1` of them, the
 * last value "(other)" counts the rest.
 *
 * Trust: sizes and offsets live in the private struct copied at fork, never
 * in the mapping, and the reader bounds and escapes every interned name. A
 * process that scribbles over the mapping can make numbers and names wrong,
 * never make the reader read outside it or loop. The metrics process maps
 * it read-only (metrics_readonly()).
 *
 * Call sites use the macros: metrics_inc(M_X, label, ...) and friends. They
 * do nothing in a process that attached no slot (metrics disabled, tools,
 * unit tests of other modules), at the cost of one test.
 */
#ifndef AUTHRELAY_METRICS_H
#define AUTHRELAY_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

struct evbuffer;
struct metrics;

#define METRICS_MAX_LABELS 4
/* Bytes of an interned label value (longer names are cut). */
#define METRICS_NAME_MAX 63
/* The slot the master writes (metrics_new() reserves it). */
#define METRICS_SLOT_MASTER 0u

enum metrics_type {
	METRICS_COUNTER,   /* name without "_total", which the samples get */
	METRICS_GAUGE,     /* summed over the processes */
	METRICS_HISTOGRAM, /* observed integers in fixed buckets */
	METRICS_UP,        /* a gauge 1 (up) or 0: the cell holds the CLOCK_MONOTONIC
	                    * ms until which the thing is down, 0 when up */
	METRICS_INFO,      /* value 1 for each label set; static labels only,
	                    * name without "_info" */
};

/* One label and its values. */
struct metrics_dim {
	const char *label;
	/* Static values: how many; interned names: room for size - 1 of them
	 * and "(other)". */
	unsigned size;
	/* Static: the text of value i (< size). NULL: interned names. */
	const char *(*value)(unsigned i);
};

struct metrics_family {
	const char *name; /* counters and infos without their suffix */
	const char *help;
	enum metrics_type type;
	const struct metrics_dim *dims[METRICS_MAX_LABELS];
	unsigned n_dims;
	/* Histograms: upper bounds of the buckets in the observed unit,
	 * ascending (a "+Inf" bucket follows), and the unit's decimals: an
	 * observed value v is shown as v / 10^decimals (6: microseconds
	 * shown as seconds). */
	const uint64_t *bounds;
	unsigned n_bounds;
	unsigned decimals;
	/* Show only label sets whose value is not 0 (whose count is not 0). */
	bool sparse;
};

enum metrics_op {
	METRICS_ADD,     /* counter, gauge (negative: down) */
	METRICS_SET,     /* gauge, up (the down-until time) */
	METRICS_OBSERVE, /* histogram */
};

enum metrics_format {
	METRICS_TEXT,        /* Prometheus text format 0.0.4 */
	METRICS_OPENMETRICS, /* OpenMetrics 1.0.0 */
};

/* Master, before any fork: the mapping for the n families of fams (which
 * must outlive it) and n_slots slots (at least 3: the master's, the shared
 * one, one child's). The master is attached to METRICS_SLOT_MASTER.
 * fatal() if the mapping cannot be made or a family is malformed. */
struct metrics *metrics_new(const struct metrics_family *fams, size_t n, unsigned n_slots);
/* Unmap (this process only) and free; detaches the process if attached to
 * it. NULL is fine. */
void metrics_free(struct metrics *);

/* Master: a slot for a child about to be forked; the shared slot (and a
 * warning) when none is free. */
unsigned metrics_slot_claim(struct metrics *);
/* Master, once the child that had slot is gone: its gauges go to zero, its
 * counters and histograms stay for the next owner. */
void metrics_slot_release(struct metrics *, unsigned slot);

/* This process counts in slot of m from now on (a child right after fork). */
void metrics_attach(struct metrics *, unsigned slot);
/* Whether this process is attached: metrics are on. */
bool metrics_enabled(void);
/* Make the mapping read-only in this process (the reader). 0 or -1. */
int metrics_readonly(struct metrics *);

/* The index of the interned label value name (cut at METRICS_NAME_MAX) of
 * dim, which must be an interned dim of the attached table: found, or added.
 * The "(other)" index when the dim is full, 0 when not attached. */
unsigned metrics_intern(const struct metrics_dim *dim, const char *name);
/* The index of value name of a static dim (exact match), or def. */
unsigned metrics_value_index(const struct metrics_dim *dim, const char *name, unsigned def);

/* Update family (an index in the attached table) at the label set labels[1
 * .. n-1] (labels[0] is ignored: see the macros). fatal() when n - 1 is not
 * the family's label count or op does not fit its type; a label value out
 * of range is dropped with a warning. */
void metrics_update(unsigned family, enum metrics_op op, int64_t v, const unsigned *labels,
                    size_t n);

#define METRICS_CALL_(f, op, v, ...)                                                               \
	metrics_update((f), (op), (v), (const unsigned[]){0, ##__VA_ARGS__},                       \
	               sizeof((const unsigned[]){0, ##__VA_ARGS__}) / sizeof(unsigned))
/* Counter or gauge plus one, or plus n; gauge minus one. */
#define metrics_inc(f, ...) METRICS_CALL_(f, METRICS_ADD, 1, ##__VA_ARGS__)
#define metrics_add(f, n, ...) METRICS_CALL_(f, METRICS_ADD, (int64_t)(n), ##__VA_ARGS__)
#define metrics_dec(f, ...) METRICS_CALL_(f, METRICS_ADD, -1, ##__VA_ARGS__)
/* Gauge, or up family's down-until time, set to v in this process's slot. */
#define metrics_set(f, v, ...) METRICS_CALL_(f, METRICS_SET, (int64_t)(v), ##__VA_ARGS__)
/* One observation of v (>= 0) in a histogram. */
#define metrics_observe(f, v, ...) METRICS_CALL_(f, METRICS_OBSERVE, (int64_t)(v), ##__VA_ARGS__)

/* The reader: the sum over every slot of family's value at the label set
 * labels[0 .. n-1] (counters and gauges; the count of a histogram; 1 or 0
 * for an up family). 0 when out of range. */
int64_t metrics_read(const struct metrics *, unsigned family, const unsigned *labels, size_t n);

/* The reader: every family in the table's order, in fmt, appended to out.
 * OpenMetrics ends with "# EOF". */
void metrics_render(const struct metrics *, enum metrics_format fmt, struct evbuffer *out);

/* The content type of fmt. */
const char *metrics_content_type(enum metrics_format fmt);

/* CLOCK_MONOTONIC in ms, the clock of METRICS_UP cells. */
uint64_t metrics_now_ms(void);

#endif
