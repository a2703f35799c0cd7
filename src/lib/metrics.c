/* SPDX-License-Identifier: ISC */
/*
 * metrics.c - the shared counter storage and its exposition (see metrics.h
 * for the design: one slot per process, no lock, the reader sums).
 *
 * The mapping: first the interned names, an array of entries per interned
 * dim (a state word and the text), then the slots. A slot is the cells of
 * every family in table order; a family's cells are its label sets in
 * mixed-radix order of its labels (the first label varies slowest), each
 * set one cell, or for a histogram one cell per bucket (the last the +Inf
 * bucket) and one for the sum. A histogram's count is the sum of its
 * buckets, so the reader never shows a count that disagrees with them.
 *
 * Interning: an entry goes FREE -> CLAIMED (compare-and-swap, then the text
 * is written) -> READY (a release store). Readers use READY entries only.
 * Two processes interning one new name at once may both add it; the reader
 * merges entries with equal text, so the exposition never shows a label set
 * twice.
 */
#include "metrics.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <event2/buffer.h>

/* Between processes only lock-free atomics work (see shmtab.c). */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef _Atomic uint64_t metrics_word;

enum { NAME_FREE = 0, NAME_CLAIMED, NAME_READY };

struct name_entry {
	metrics_word state;
	char text[METRICS_NAME_MAX + 1];
};

#define SLOT_SHARED 1u
#define OTHER_NAME "(other)"

struct metrics {
	const struct metrics_family *fams;
	size_t n_fams;
	size_t *off;  /* a family's first cell in a slot */
	size_t *cpc;  /* cells per label set */
	size_t *sets; /* label sets */
	size_t slot_words;
	unsigned n_slots;
	bool *used; /* the master's own record of which slot is whose */
	/* Interned dims: their entries start at names + name_off[i]. */
	const struct metrics_dim **idims;
	size_t n_idims;
	size_t *name_off;
	void *map;
	size_t map_len;
	struct name_entry *names;
	metrics_word *slots;
};

/* This process's slot: NULL while not attached. */
static struct metrics *cur;
static metrics_word *cur_slot;

static size_t
cells_per_set(const struct metrics_family *f)
{
	switch (f->type) {
	case METRICS_HISTOGRAM:
		return (size_t)f->n_bounds + 2;
	case METRICS_INFO:
		return 0;
	default:
		return 1;
	}
}

static bool
dim_interned(const struct metrics_dim *d)
{
	return d->value == NULL;
}

/* Index of an interned dim in m->idims, or -1. */
static long
idim_index(const struct metrics *m, const struct metrics_dim *d)
{
	for (size_t i = 0; i < m->n_idims; i++)
		if (m->idims[i] == d)
			return (long)i;
	return -1;
}

static void
check_family(const struct metrics_family *f)
{
	if (f->name == NULL || f->help == NULL || f->n_dims > METRICS_MAX_LABELS)
		fatal("metrics: malformed family %s", f->name != NULL ? f->name : "?");
	for (unsigned d = 0; d < f->n_dims; d++) {
		const struct metrics_dim *dim = f->dims[d];
		if (dim == NULL || dim->size == 0 || (dim_interned(dim) && dim->size < 2))
			fatal("metrics: %s: bad label %u", f->name, d);
		if (f->type == METRICS_INFO && dim_interned(dim))
			fatal("metrics: %s: an info family takes static labels only", f->name);
	}
	if (f->type == METRICS_HISTOGRAM) {
		if (f->n_bounds == 0 || f->bounds == NULL)
			fatal("metrics: %s: a histogram needs buckets", f->name);
		for (unsigned b = 1; b < f->n_bounds; b++)
			if (f->bounds[b] <= f->bounds[b - 1])
				fatal("metrics: %s: buckets not ascending", f->name);
	}
}

struct metrics *
metrics_new(const struct metrics_family *fams, size_t n, unsigned n_slots)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	size_t n_names = 0, names_len, cell = 0;

	if (n_slots < 3)
		fatal("metrics: %u slots (3 at least)", n_slots);
	m->fams = fams;
	m->n_fams = n;
	m->off = xcalloc(n, sizeof(*m->off));
	m->cpc = xcalloc(n, sizeof(*m->cpc));
	m->sets = xcalloc(n, sizeof(*m->sets));
	m->idims = xcalloc(n * METRICS_MAX_LABELS + 1, sizeof(*m->idims));
	m->name_off = xcalloc(n * METRICS_MAX_LABELS + 1, sizeof(*m->name_off));
	for (size_t i = 0; i < n; i++) {
		const struct metrics_family *f = &fams[i];
		size_t sets = 1;

		check_family(f);
		for (unsigned d = 0; d < f->n_dims; d++) {
			const struct metrics_dim *dim = f->dims[d];
			sets *= dim->size;
			if (dim_interned(dim) && idim_index(m, dim) < 0) {
				m->name_off[m->n_idims] = n_names;
				m->idims[m->n_idims++] = dim;
				n_names += dim->size;
			}
		}
		m->off[i] = cell;
		m->cpc[i] = cells_per_set(f);
		m->sets[i] = sets;
		cell += sets * m->cpc[i];
	}
	/* Whole cache lines per slot: two processes never write one line. */
	m->slot_words = (cell + 7) & ~(size_t)7;
	if (m->slot_words == 0)
		m->slot_words = 8;
	m->n_slots = n_slots;
	names_len = (n_names * sizeof(struct name_entry) + 63) & ~(size_t)63;
	m->map_len = names_len + (size_t)n_slots * m->slot_words * sizeof(metrics_word);
	m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m->map == MAP_FAILED)
		fatal("metrics: mmap of %zu bytes failed", m->map_len);
	m->names = (struct name_entry *)m->map;
	m->slots = (metrics_word *)((char *)m->map + names_len);
	m->used = xcalloc(n_slots, sizeof(*m->used));
	m->used[METRICS_SLOT_MASTER] = true;
	m->used[SLOT_SHARED] = true;
	metrics_attach(m, METRICS_SLOT_MASTER);
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	if (cur == m) {
		cur = NULL;
		cur_slot = NULL;
	}
	munmap(m->map, m->map_len);
	free(m->off);
	free(m->cpc);
	free(m->sets);
	free(m->idims);
	free(m->name_off);
	free(m->used);
	free(m);
}

static metrics_word *
slot_cells(const struct metrics *m, unsigned slot)
{
	return m->slots + (size_t)slot * m->slot_words;
}

unsigned
metrics_slot_claim(struct metrics *m)
{
	for (unsigned s = SLOT_SHARED + 1; s < m->n_slots; s++) {
		if (!m->used[s]) {
			m->used[s] = true;
			return s;
		}
	}
	log_warn("metrics: all %u slots in use; a child counts in the shared slot (its gauges "
	         "outlive it)",
	         m->n_slots);
	return SLOT_SHARED;
}

void
metrics_slot_release(struct metrics *m, unsigned slot)
{
	if (slot <= SLOT_SHARED || slot >= m->n_slots)
		return;
	metrics_word *c = slot_cells(m, slot);
	for (size_t i = 0; i < m->n_fams; i++) {
		enum metrics_type t = m->fams[i].type;
		if (t != METRICS_GAUGE && t != METRICS_UP)
			continue;
		for (size_t k = 0; k < m->sets[i] * m->cpc[i]; k++)
			atomic_store_explicit(&c[m->off[i] + k], 0, memory_order_relaxed);
	}
	m->used[slot] = false;
}

void
metrics_attach(struct metrics *m, unsigned slot)
{
	if (slot >= m->n_slots)
		fatal("metrics: slot %u out of range (%u)", slot, m->n_slots);
	cur = m;
	cur_slot = slot_cells(m, slot);
}

bool
metrics_enabled(void)
{
	return cur != NULL;
}

int
metrics_readonly(struct metrics *m)
{
	if (cur == m) {
		cur = NULL;
		cur_slot = NULL;
	}
	return mprotect(m->map, m->map_len, PROT_READ);
}

unsigned
metrics_intern(const struct metrics_dim *dim, const char *name)
{
	char text[METRICS_NAME_MAX + 1];

	if (cur == NULL)
		return 0;
	long k = idim_index(cur, dim);
	if (k < 0)
		fatal("metrics: label %s is not interned in this table", dim->label);
	struct name_entry *e = cur->names + cur->name_off[k];
	unsigned cap = dim->size - 1;
	snprintf(text, sizeof(text), "%s", name);
	for (unsigned i = 0; i < cap; i++) {
		uint64_t st = atomic_load_explicit(&e[i].state, memory_order_acquire);
		if (st == NAME_FREE) {
			uint64_t expected = NAME_FREE;
			if (!atomic_compare_exchange_strong(&e[i].state, &expected, NAME_CLAIMED))
				st = expected; /* another process took it: look at it */
			else {
				memcpy(e[i].text, text, sizeof(text));
				atomic_store_explicit(&e[i].state, NAME_READY,
				                      memory_order_release);
				return i;
			}
		}
		/* A claimed entry may become this very name: the reader merges
		 * the duplicate if it does. */
		if (st == NAME_READY && strncmp(e[i].text, text, sizeof(text)) == 0)
			return i;
	}
	return cap;
}

unsigned
metrics_value_index(const struct metrics_dim *dim, const char *name, unsigned def)
{
	if (dim->value == NULL || name == NULL)
		return def;
	for (unsigned i = 0; i < dim->size; i++)
		if (strcmp(dim->value(i), name) == 0)
			return i;
	return def;
}

static bool
op_fits(enum metrics_type t, enum metrics_op op)
{
	switch (op) {
	case METRICS_ADD:
		return t == METRICS_COUNTER || t == METRICS_GAUGE;
	case METRICS_SET:
		return t == METRICS_GAUGE || t == METRICS_UP;
	case METRICS_OBSERVE:
		return t == METRICS_HISTOGRAM;
	}
	return false;
}

void
metrics_update(unsigned family, enum metrics_op op, int64_t v, const unsigned *labels, size_t n)
{
	static bool warned;
	const struct metrics_family *f;
	size_t set = 0;

	if (cur == NULL)
		return;
	if (family >= cur->n_fams)
		fatal("metrics: family %u out of range", family);
	f = &cur->fams[family];
	if (n != (size_t)f->n_dims + 1 || !op_fits(f->type, op))
		fatal("metrics: %s: %zu labels or operation %d does not fit", f->name, n - 1,
		      (int)op);
	for (unsigned d = 0; d < f->n_dims; d++) {
		if (labels[d + 1] >= f->dims[d]->size) {
			if (!warned)
				log_warn("metrics: %s: %s %u out of range, not counted", f->name,
				         f->dims[d]->label, labels[d + 1]);
			warned = true;
			return;
		}
		set = set * f->dims[d]->size + labels[d + 1];
	}
	metrics_word *c = cur_slot + cur->off[family] + set * cur->cpc[family];
	switch (op) {
	case METRICS_ADD:
		atomic_fetch_add_explicit(c, (uint64_t)v, memory_order_relaxed);
		break;
	case METRICS_SET:
		atomic_store_explicit(c, (uint64_t)v, memory_order_relaxed);
		break;
	case METRICS_OBSERVE: {
		uint64_t u = v > 0 ? (uint64_t)v : 0;
		unsigned b = 0;
		while (b < f->n_bounds && u > f->bounds[b])
			b++;
		atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c[f->n_bounds + 1], u, memory_order_relaxed);
		break;
	}
	}
}

uint64_t
metrics_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the reader ---- */

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

/* Fold cell k of family f over every slot into acc (sum, or max for up). */
static uint64_t
fold_cell(const struct metrics *m, size_t f, size_t k)
{
	enum metrics_type t = m->fams[f].type;
	uint64_t acc = 0;

	for (unsigned s = 0; s < m->n_slots; s++) {
		uint64_t v = atomic_load_explicit(&slot_cells(m, s)[m->off[f] + k],
		                                  memory_order_relaxed);
		if (t == METRICS_UP)
			acc = v > acc ? v : acc;
		else if (t == METRICS_GAUGE)
			acc += v; /* two's complement: the sum of signed values */
		else
			acc = sat_add(acc, v);
	}
	return acc;
}

int64_t
metrics_read(const struct metrics *m, unsigned family, const unsigned *labels, size_t n)
{
	const struct metrics_family *f;
	size_t set = 0;

	if (family >= m->n_fams)
		return 0;
	f = &m->fams[family];
	if (n != f->n_dims)
		return 0;
	for (unsigned d = 0; d < f->n_dims; d++) {
		if (labels[d] >= f->dims[d]->size)
			return 0;
		set = set * f->dims[d]->size + labels[d];
	}
	size_t k = set * m->cpc[family];
	switch (f->type) {
	case METRICS_INFO:
		return 1;
	case METRICS_UP:
		return fold_cell(m, family, k) <= metrics_now_ms() ? 1 : 0;
	case METRICS_HISTOGRAM: {
		uint64_t count = 0;
		for (unsigned b = 0; b <= f->n_bounds; b++)
			count = sat_add(count, fold_cell(m, family, k + b));
		return (int64_t)count;
	}
	default:
		return (int64_t)fold_cell(m, family, k);
	}
}

/* An interned dim as the reader sees it: each value's text, and which
 * value it merges into (itself, an earlier entry with the same text, or -1
 * while it is not ready). */
struct seen_dim {
	char (*text)[METRICS_NAME_MAX + 1];
	long *canon;
};

static void
seen_dim_load(const struct metrics *m, size_t k, struct seen_dim *sd)
{
	const struct metrics_dim *dim = m->idims[k];
	const struct name_entry *e = m->names + m->name_off[k];
	unsigned cap = dim->size - 1;

	sd->text = xcalloc(dim->size, sizeof(*sd->text));
	sd->canon = xcalloc(dim->size, sizeof(*sd->canon));
	for (unsigned i = 0; i < cap; i++) {
		sd->canon[i] = -1;
		if (atomic_load_explicit(&((struct name_entry *)e)[i].state,
		                         memory_order_acquire) != NAME_READY)
			continue;
		/* Untrusted bytes: printable ASCII only, bounded. */
		char *t = sd->text[i];
		size_t len = 0;
		while (len < METRICS_NAME_MAX && e[i].text[len] != '\0') {
			unsigned char c = (unsigned char)e[i].text[len];
			t[len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		t[len] = '\0';
		if (len == 0)
			snprintf(t, sizeof(sd->text[i]), "?");
		sd->canon[i] = i;
		for (unsigned j = 0; j < i; j++) {
			if (sd->canon[j] == (long)j && strcmp(sd->text[j], t) == 0) {
				sd->canon[i] = j;
				break;
			}
		}
	}
	snprintf(sd->text[cap], sizeof(sd->text[cap]), "%s", OTHER_NAME);
	sd->canon[cap] = cap;
}

static void
seen_dim_clear(struct seen_dim *sd)
{
	free(sd->text);
	free(sd->canon);
}

static void
put_escaped(struct evbuffer *out, const char *s, bool quote_too)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*s == '"' && quote_too)
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* v / 10^decimals into buf, in its shortest exact form and always with a
 * decimal point ("1.0", "0.005"). */
static void
fmt_fixed(char *buf, size_t size, uint64_t v, unsigned decimals)
{
	uint64_t p = 1;
	char frac[24];

	for (unsigned i = 0; i < decimals && i < 19; i++)
		p *= 10;
	snprintf(frac, sizeof(frac), "%0*llu", (int)(decimals > 0 ? decimals : 1),
	         (unsigned long long)(decimals > 0 ? v % p : 0));
	size_t n = strlen(frac);
	while (n > 1 && frac[n - 1] == '0')
		n--;
	snprintf(buf, size, "%llu.%.*s", (unsigned long long)(v / p), (int)n, frac);
}

struct render {
	const struct metrics *m;
	enum metrics_format fmt;
	struct evbuffer *out;
	struct seen_dim *seen; /* per interned dim */
};

/* The labels of set (raw values in vals) between braces, with extra (a
 * `le="..."` or NULL) last; nothing when there is no label at all. */
static void
put_labels(struct render *r, const struct metrics_family *f, const unsigned *vals,
           const char *extra)
{
	struct evbuffer *out = r->out;

	if (f->n_dims == 0 && extra == NULL)
		return;
	evbuffer_add(out, "{", 1);
	for (unsigned d = 0; d < f->n_dims; d++) {
		const struct metrics_dim *dim = f->dims[d];
		const char *text = dim_interned(dim) ? r->seen[idim_index(r->m, dim)].text[vals[d]]
		                                     : dim->value(vals[d]);
		evbuffer_add_printf(out, "%s%s=\"", d > 0 ? "," : "", dim->label);
		put_escaped(out, text, true);
		evbuffer_add(out, "\"", 1);
	}
	if (extra != NULL)
		evbuffer_add_printf(out, "%s%s", f->n_dims > 0 ? "," : "", extra);
	evbuffer_add(out, "}", 1);
}

static void
put_header(struct render *r, const struct metrics_family *f)
{
	bool om = r->fmt == METRICS_OPENMETRICS;
	const char *type = "gauge", *suffix = "";

	switch (f->type) {
	case METRICS_COUNTER:
		type = "counter";
		suffix = om ? "" : "_total";
		break;
	case METRICS_HISTOGRAM:
		type = "histogram";
		break;
	case METRICS_INFO:
		type = om ? "info" : "gauge";
		suffix = om ? "" : "_info";
		break;
	default:
		break;
	}
	evbuffer_add_printf(r->out, "# HELP %s%s ", f->name, suffix);
	put_escaped(r->out, f->help, om);
	evbuffer_add_printf(r->out, "\n# TYPE %s%s %s\n", f->name, suffix, type);
}

static void
put_set(struct render *r, size_t fi, const unsigned *vals, const uint64_t *acc, uint64_t now)
{
	const struct metrics_family *f = &r->m->fams[fi];
	struct evbuffer *out = r->out;
	char le[64];

	switch (f->type) {
	case METRICS_COUNTER:
		evbuffer_add_printf(out, "%s_total", f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add_printf(out, " %llu\n", (unsigned long long)acc[0]);
		break;
	case METRICS_GAUGE:
		evbuffer_add_printf(out, "%s", f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add_printf(out, " %lld\n", (long long)(int64_t)acc[0]);
		break;
	case METRICS_UP:
		evbuffer_add_printf(out, "%s", f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add_printf(out, " %d\n", acc[0] <= now ? 1 : 0);
		break;
	case METRICS_INFO:
		evbuffer_add_printf(out, "%s_info", f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add(out, " 1\n", 3);
		break;
	case METRICS_HISTOGRAM: {
		uint64_t cum = 0;
		char num[48];
		for (unsigned b = 0; b <= f->n_bounds; b++) {
			cum = sat_add(cum, acc[b]);
			if (b < f->n_bounds) {
				fmt_fixed(num, sizeof(num), f->bounds[b], f->decimals);
				snprintf(le, sizeof(le), "le=\"%s\"", num);
			} else {
				snprintf(le, sizeof(le), "le=\"+Inf\"");
			}
			evbuffer_add_printf(out, "%s_bucket", f->name);
			put_labels(r, f, vals, le);
			evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
		}
		fmt_fixed(num, sizeof(num), acc[f->n_bounds + 1], f->decimals);
		evbuffer_add_printf(out, "%s_sum", f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add_printf(out, " %s\n%s_count", num, f->name);
		put_labels(r, f, vals, NULL);
		evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
		break;
	}
	}
}

/* Label values of set number set of f into vals. */
static void
set_values(const struct metrics_family *f, size_t set, unsigned *vals)
{
	for (unsigned d = f->n_dims; d-- > 0;) {
		vals[d] = (unsigned)(set % f->dims[d]->size);
		set /= f->dims[d]->size;
	}
}

static bool
set_is_zero(const struct metrics_family *f, const uint64_t *acc, size_t cpc)
{
	/* A histogram's sum is not looked at: its count (the buckets) is. */
	size_t n = f->type == METRICS_HISTOGRAM ? cpc - 1 : cpc;
	for (size_t k = 0; k < n; k++)
		if (acc[k] != 0)
			return false;
	return true;
}

static void
render_family(struct render *r, size_t fi, uint64_t now)
{
	const struct metrics *m = r->m;
	const struct metrics_family *f = &m->fams[fi];
	size_t sets = m->sets[fi], cpc = m->cpc[fi];
	uint64_t *acc = xcalloc(sets * (cpc > 0 ? cpc : 1), sizeof(*acc));
	bool *shown = xcalloc(sets, sizeof(*shown));
	unsigned vals[METRICS_MAX_LABELS];

	put_header(r, f);
	for (size_t k = 0; k < sets * cpc; k++)
		acc[k] = fold_cell(m, fi, k);
	/* Merge duplicate names into their first entry; drop names not
	 * ready yet. A set is shown only under canonical values. */
	for (size_t s = 0; s < sets; s++) {
		size_t to = 0;
		bool keep = true;
		set_values(f, s, vals);
		for (unsigned d = 0; d < f->n_dims; d++) {
			const struct metrics_dim *dim = f->dims[d];
			long c = (long)vals[d];
			if (dim_interned(dim))
				c = r->seen[idim_index(m, dim)].canon[vals[d]];
			if (c < 0) {
				keep = false;
				break;
			}
			to = to * dim->size + (size_t)c;
		}
		if (!keep)
			continue;
		if (to == s) {
			shown[s] = true;
			continue;
		}
		for (size_t k = 0; k < cpc; k++) {
			uint64_t *dst = &acc[to * cpc + k], v = acc[s * cpc + k];
			if (f->type == METRICS_UP)
				*dst = v > *dst ? v : *dst;
			else if (f->type == METRICS_GAUGE)
				*dst += v;
			else
				*dst = sat_add(*dst, v);
		}
	}
	for (size_t s = 0; s < sets; s++) {
		if (!shown[s])
			continue;
		set_values(f, s, vals);
		bool zero = cpc > 0 && set_is_zero(f, &acc[s * cpc], cpc);
		bool other = false;
		for (unsigned d = 0; d < f->n_dims; d++)
			other |= dim_interned(f->dims[d]) && vals[d] == f->dims[d]->size - 1;
		/* "(other)" only once something counts there (for an up
		 * family, once something is down); sparse families only what
		 * is not 0. */
		if (zero && (other || (f->sparse && f->type != METRICS_UP)))
			continue;
		put_set(r, fi, vals, &acc[s * cpc], now);
	}
	free(shown);
	free(acc);
}

void
metrics_render(const struct metrics *m, enum metrics_format fmt, struct evbuffer *out)
{
	struct render r = {.m = m, .fmt = fmt, .out = out};
	uint64_t now = metrics_now_ms();

	r.seen = xcalloc(m->n_idims + 1, sizeof(*r.seen));
	for (size_t k = 0; k < m->n_idims; k++)
		seen_dim_load(m, k, &r.seen[k]);
	for (size_t fi = 0; fi < m->n_fams; fi++)
		render_family(&r, fi, now);
	if (fmt == METRICS_OPENMETRICS)
		evbuffer_add(out, "# EOF\n", 6);
	for (size_t k = 0; k < m->n_idims; k++)
		seen_dim_clear(&r.seen[k]);
	free(r.seen);
}

const char *
metrics_content_type(enum metrics_format fmt)
{
	return fmt == METRICS_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; "
	                                    "charset=utf-8"
	                                  : "text/plain; version=0.0.4; charset=utf-8";
}
