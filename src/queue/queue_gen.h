/* SPDX-License-Identifier: ISC */
/*
 * queue_gen.h - one generation of the queue process's configuration: the
 * config and the queue_config read together at start or by one SIGHUP,
 * shared by everything that points into them and freed by the last user.
 *
 * How it fits: the queue holds a reference on the current generation; every
 * delivery job and every DSN being written takes one on the generation it
 * was made from (its route decision and hostname point into it). A reload
 * makes a new current generation and drops the queue's reference on the old
 * one, which lives on until its last job is back. So any number of reloads
 * cost nothing but the configs still in use.
 *
 * The counts are changed on the queue's loop thread only (jobs are freed
 * there, even those whose work ran on the thread pool).
 */
#ifndef AUTHRELAY_QUEUE_GEN_H
#define AUTHRELAY_QUEUE_GEN_H

#include <stddef.h>
#include "../lib/common.h"

struct config;
struct queue_config;
struct queue_gen;

/* A generation around cfg and qc, which stay the caller's and must outlive
 * it (the master's config, loaded before the fork). One reference, the
 * caller's. */
struct queue_gen *queue_gen_borrow(const struct config *cfg, const struct queue_config *qc);

/* Read the config file at path and its [queue] and [route] sections into a
 * new generation that owns them (its last unref frees them). One
 * reference, the caller's. NULL on failure, with *errors_r (malloc'd, one
 * "file:line: message\n" per problem). */
struct queue_gen *queue_gen_load(const char *path, char **errors_r);

/* The same on text as read from path (config_load_text()): the master's
 * reload hands the queue the text it validated. */
struct queue_gen *queue_gen_load_text(const char *path, const char *text, size_t len,
                                      char **errors_r);
/* A loaded generation's own config, to adjust before anyone uses it (the
 * master's overrides); NULL for a borrowed one. */
struct config *queue_gen_config_rw(struct queue_gen *g);

/* Take one more reference on g. Returns g. */
struct queue_gen *queue_gen_ref(struct queue_gen *g);
/* Drop one reference; the last one frees g (and, when owned, its
 * configs). NULL is fine. */
void queue_gen_unref(struct queue_gen *g);

const struct config *queue_gen_config(const struct queue_gen *g);
const struct queue_config *queue_gen_qc(const struct queue_gen *g);
/* 1 for the first generation of this process, then one more per load. */
unsigned long queue_gen_number(const struct queue_gen *g);
/* Generations of this process not freed yet (the current one included). */
unsigned queue_gen_live(void);

#endif
