/* SPDX-License-Identifier: ISC */
/*
 * queue_view.c - the queue as the admin sees it (queue_view.h): text lines
 * that grep and awk take, JSON for scripts. Every string that came from a
 * client (addresses, replies) is escaped: log_escape in text, jsonw in JSON.
 */
#include "queue_view.h"
#include "queue_internal.h"
#include "../lib/jsonw.h"
#include "../lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

const unsigned queue_view_ages[QUEUE_VIEW_N_AGES] = {5, 10, 20, 40, 80, 160, 320, 640, 1280};

static const char *const where_names[] = {
        [QM_NONE] = "new",          [QM_READY] = "ready",   [QM_WAITING] = "deferred",
        [QM_ACTIVE] = "active",     [QM_HOLD] = "hold",     [QM_SETTLING] = "active",
        [QM_REMOVING] = "removing", [QM_BROKEN] = "broken",
};

static const char *const status_names[] = {
        [RCPT_PENDING] = "pending",
        [RCPT_DEFERRED] = "deferred",
        [RCPT_SENT] = "sent",
        [RCPT_BOUNCED] = "bounced",
};

/* RFC 3339, in UTC. */
#define ISO_TIME "%Y-%m-%dT%H:%M:%SZ"

const char *
queue_view_where(const struct qmsg *m)
{
	return where_names[m->where];
}

static bool
rcpt_to_go(const struct qrcpt *r)
{
	return r->status == RCPT_PENDING || r->status == RCPT_DEFERRED;
}

static size_t
msg_pending(const struct qmsg *m)
{
	size_t pending = 0;
	for (size_t i = 0; i < m->n_rcpts; i++)
		pending += rcpt_to_go(&m->rcpts[i]);
	return pending;
}

static void
view_line(struct evbuffer *out, const struct qmsg *m)
{
	char arrival[32], next[32], from[1100];
	utc_strftime(m->arrival, ISO_TIME, arrival, sizeof(arrival));
	if (m->where == QM_WAITING)
		utc_strftime(m->next_attempt, ISO_TIME, next, sizeof(next));
	else
		snprintf(next, sizeof(next), "-");
	evbuffer_add_printf(out,
	                    "%s status=%s size=%llu arrival=%s from=<%s> nrcpt=%zu pending=%zu "
	                    "attempts=%u next=%s\n",
	                    m->id, queue_view_where(m), (unsigned long long)m->size, arrival,
	                    log_escape_str(m->sender, from, sizeof(from)), m->n_rcpts,
	                    msg_pending(m), m->attempts, next);
}

/* The list line's fields as JSON members. */
static void
view_json_fields(struct jsonw *w, const struct qmsg *m)
{
	char arrival[32], next[32];
	utc_strftime(m->arrival, ISO_TIME, arrival, sizeof(arrival));
	jsonw_kv_str(w, "id", m->id);
	jsonw_kv_str(w, "status", queue_view_where(m));
	jsonw_kv_int(w, "size", (int64_t)m->size);
	jsonw_kv_str(w, "arrival", arrival);
	jsonw_kv_int(w, "arrival_time", m->arrival);
	jsonw_kv_str(w, "sender", m->sender);
	jsonw_kv_int(w, "nrcpt", (int64_t)m->n_rcpts);
	jsonw_kv_int(w, "pending", (int64_t)msg_pending(m));
	jsonw_kv_int(w, "attempts", m->attempts);
	if (m->where == QM_WAITING) {
		utc_strftime(m->next_attempt, ISO_TIME, next, sizeof(next));
		jsonw_kv_str(w, "next_attempt", next);
	} else {
		jsonw_kv_str(w, "next_attempt", NULL);
	}
}

static int
view_cmp(const void *a, const void *b)
{
	return strcmp((*(struct qmsg *const *)a)->id, (*(struct qmsg *const *)b)->id);
}

void
queue_view_list(struct evbuffer *out, struct qmsg **all, size_t n, bool json)
{
	struct jsonw w;

	qsort(all, n, sizeof(*all), view_cmp);
	if (!json) {
		for (size_t i = 0; i < n; i++)
			view_line(out, all[i]);
		return;
	}
	jsonw_init(&w, out);
	jsonw_object_begin(&w);
	jsonw_key(&w, "messages");
	jsonw_array_begin(&w);
	for (size_t i = 0; i < n; i++) {
		jsonw_object_begin(&w);
		view_json_fields(&w, all[i]);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_object_end(&w);
	evbuffer_add(out, "\n", 1);
}

void
queue_view_show(struct evbuffer *out, const struct qmsg *m, bool json)
{
	char reply[700], addr[1100];
	struct jsonw w;

	if (!json) {
		view_line(out, m);
		if (m->broken_reason != NULL)
			evbuffer_add_printf(out, "broken reason=\"%s\"\n",
			                    log_escape_str(m->broken_reason, reply, sizeof(reply)));
		for (size_t i = 0; i < m->n_rcpts; i++) {
			const struct qrcpt *r = &m->rcpts[i];
			evbuffer_add_printf(
			        out, "rcpt=<%s> status=%s dsn=%s relay=%s reply=\"%s\"\n",
			        log_escape_str(r->addr, addr, sizeof(addr)),
			        status_names[r->status], r->dsn[0] ? r->dsn : "-",
			        r->relay[0] ? r->relay : "-",
			        log_escape_str(r->reply ? r->reply : "", reply, sizeof(reply)));
		}
		return;
	}
	jsonw_init(&w, out);
	jsonw_object_begin(&w);
	view_json_fields(&w, m);
	if (m->broken_reason != NULL)
		jsonw_kv_str(&w, "broken_reason", m->broken_reason);
	jsonw_key(&w, "recipients");
	jsonw_array_begin(&w);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct qrcpt *r = &m->rcpts[i];
		jsonw_object_begin(&w);
		jsonw_kv_str(&w, "address", r->addr);
		jsonw_kv_str(&w, "status", status_names[r->status]);
		jsonw_kv_str(&w, "dsn", r->dsn[0] ? r->dsn : NULL);
		jsonw_kv_str(&w, "relay", r->relay[0] ? r->relay : NULL);
		jsonw_kv_str(&w, "reply", r->reply);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_object_end(&w);
	evbuffer_add(out, "\n", 1);
}

/* ------------------------------------------------------------- summary */

struct view_row {
	const char *domain; /* borrowed from a message */
	unsigned long total;
	unsigned long ages[QUEUE_VIEW_N_AGES + 1];
};

static unsigned
view_age_column(int64_t arrival, int64_t now)
{
	int64_t minutes = now > arrival ? (now - arrival) / 60 : 0;
	unsigned i;
	for (i = 0; i < QUEUE_VIEW_N_AGES; i++)
		if (minutes < (int64_t)queue_view_ages[i])
			break;
	return i;
}

static int
view_row_cmp(const void *a, const void *b)
{
	const struct view_row *x = a, *y = b;
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->domain, y->domain);
}

static void
view_row_text(struct evbuffer *out, int width, const char *name, const struct view_row *r)
{
	char dom[300];
	evbuffer_add_printf(out, "%*s %5lu", width, log_escape_str(name, dom, sizeof(dom)),
	                    r->total);
	for (unsigned i = 0; i <= QUEUE_VIEW_N_AGES; i++)
		evbuffer_add_printf(out, " %5lu", r->ages[i]);
	evbuffer_add(out, "\n", 1);
}

static void
view_row_json(struct jsonw *w, const struct view_row *r)
{
	jsonw_kv_int(w, "messages", (int64_t)r->total);
	jsonw_key(w, "ages");
	jsonw_array_begin(w);
	for (unsigned i = 0; i <= QUEUE_VIEW_N_AGES; i++)
		jsonw_int(w, (int64_t)r->ages[i]);
	jsonw_array_end(w);
}

void
queue_view_summary(struct evbuffer *out, struct qmsg *const *all, size_t n, int64_t now, bool json)
{
	struct view_row total = {.domain = "TOTAL"}, *rows = NULL;
	size_t n_rows = 0, cap = 0;
	int width = 5;

	for (size_t i = 0; i < n; i++) {
		const struct qmsg *m = all[i];
		unsigned col = view_age_column(m->arrival, now);
		bool counted = false;
		for (size_t j = 0; j < m->n_rcpts; j++) {
			const struct qrcpt *r = &m->rcpts[j];
			bool seen = false;
			if (!rcpt_to_go(r))
				continue;
			/* Once per domain: an earlier recipient may have it. */
			for (size_t k = 0; k < j && !seen; k++)
				seen = rcpt_to_go(&m->rcpts[k]) &&
				       strcmp(m->rcpts[k].domain, r->domain) == 0;
			if (seen)
				continue;
			size_t d;
			for (d = 0; d < n_rows && strcmp(rows[d].domain, r->domain) != 0; d++)
				;
			if (d == n_rows) {
				if (n_rows == cap) {
					cap = cap ? cap * 2 : 16;
					rows = xrealloc(rows, cap * sizeof(*rows));
				}
				rows[n_rows++] = (struct view_row){.domain = r->domain};
			}
			rows[d].total++;
			rows[d].ages[col]++;
			counted = true;
		}
		if (counted) {
			total.total++;
			total.ages[col]++;
		}
	}
	if (rows != NULL)
		qsort(rows, n_rows, sizeof(*rows), view_row_cmp);
	if (!json) {
		for (size_t d = 0; d < n_rows; d++) {
			int len = (int)strlen(rows[d].domain);
			if (len > width)
				width = len < 60 ? len : 60;
		}
		evbuffer_add_printf(out, "%*s %5s", width, "", "T");
		for (unsigned i = 0; i < QUEUE_VIEW_N_AGES; i++)
			evbuffer_add_printf(out, " %5u", queue_view_ages[i]);
		evbuffer_add_printf(out, " %4u+\n", queue_view_ages[QUEUE_VIEW_N_AGES - 1]);
		view_row_text(out, width, "TOTAL", &total);
		for (size_t d = 0; d < n_rows; d++)
			view_row_text(out, width, rows[d].domain, &rows[d]);
		free(rows);
		return;
	}
	struct jsonw w;
	jsonw_init(&w, out);
	jsonw_object_begin(&w);
	jsonw_key(&w, "ages");
	jsonw_array_begin(&w);
	for (unsigned i = 0; i < QUEUE_VIEW_N_AGES; i++)
		jsonw_int(&w, queue_view_ages[i]);
	jsonw_array_end(&w);
	jsonw_key(&w, "total");
	jsonw_object_begin(&w);
	view_row_json(&w, &total);
	jsonw_object_end(&w);
	jsonw_key(&w, "domains");
	jsonw_array_begin(&w);
	for (size_t d = 0; d < n_rows; d++) {
		jsonw_object_begin(&w);
		jsonw_kv_str(&w, "domain", rows[d].domain);
		view_row_json(&w, &rows[d]);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_object_end(&w);
	evbuffer_add(out, "\n", 1);
	free(rows);
}
