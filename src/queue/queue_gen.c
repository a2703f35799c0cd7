/* SPDX-License-Identifier: ISC */
/*
 * queue_gen.c - reference-counted configuration generations (queue_gen.h).
 */
#include "queue_gen.h"
#include "queue_config.h"
#include "../lib/config.h"
#include "../lib/log.h"

#include <stdlib.h>

struct queue_gen {
	const struct config *cfg;
	const struct queue_config *qc;
	/* The same two when the generation owns them, else NULL. */
	struct config *owned_cfg;
	struct queue_config *owned_qc;
	unsigned refs;
	unsigned long number;
};

static unsigned long queue_gen_last_number;
static unsigned queue_gen_n_live;

static struct queue_gen *
queue_gen_new(const struct config *cfg, const struct queue_config *qc)
{
	struct queue_gen *g = xcalloc(1, sizeof(*g));
	g->cfg = cfg;
	g->qc = qc;
	g->refs = 1;
	g->number = ++queue_gen_last_number;
	queue_gen_n_live++;
	return g;
}

struct queue_gen *
queue_gen_borrow(const struct config *cfg, const struct queue_config *qc)
{
	return queue_gen_new(cfg, qc);
}

static struct queue_gen *
queue_gen_own(struct config *cfg, char **errors_r)
{
	if (cfg == NULL)
		return NULL;
	struct queue_config *qc = queue_config_load(cfg, errors_r);
	if (qc == NULL) {
		config_free(cfg);
		return NULL;
	}
	struct queue_gen *g = queue_gen_new(cfg, qc);
	g->owned_cfg = cfg;
	g->owned_qc = qc;
	return g;
}

struct queue_gen *
queue_gen_load(const char *path, char **errors_r)
{
	return queue_gen_own(config_load(path, errors_r), errors_r);
}

struct queue_gen *
queue_gen_load_text(const char *path, const char *text, size_t len, char **errors_r)
{
	return queue_gen_own(config_load_text(path, text, len, errors_r), errors_r);
}

struct config *
queue_gen_config_rw(struct queue_gen *g)
{
	return g->owned_cfg;
}

struct queue_gen *
queue_gen_ref(struct queue_gen *g)
{
	g->refs++;
	return g;
}

void
queue_gen_unref(struct queue_gen *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	log_debug("queue config generation=%lu released", g->number);
	queue_config_free(g->owned_qc);
	config_free(g->owned_cfg);
	queue_gen_n_live--;
	free(g);
}

const struct config *
queue_gen_config(const struct queue_gen *g)
{
	return g->cfg;
}

const struct queue_config *
queue_gen_qc(const struct queue_gen *g)
{
	return g->qc;
}

unsigned long
queue_gen_number(const struct queue_gen *g)
{
	return g->number;
}

unsigned
queue_gen_live(void)
{
	return queue_gen_n_live;
}
