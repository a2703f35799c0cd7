/* SPDX-License-Identifier: ISC */
/*
 * settings_registry.c - the list of every section of authrelay.conf and the
 * whole-file operations built on it (see settings_registry.h).
 *
 * Each section kind maps to its records in a struct settings_set: the core
 * sections to struct config (or its limits, or a listener), [smtp-forward]
 * to struct fwd_settings (none when the file has no such section), [ldap
 * NAME] to a struct ldap_dir_cfg each,
 * [protection] and [alerts] to struct protection_config, [queue] and [route
 * NAME] to struct queue_config, [metrics] to struct metrics_config. Adding a
 * module's section is a line in modules[] and a case in set_records().
 */
#include "settings_registry.h"
#include "../auth/forward_config.h"
#include "../auth/ldap_config.h"
#include "../auth/protection_config.h"
#include "../auth/shared_config.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../metrics/metrics_config.h"
#include "../queue/queue_config.h"

#include <stdlib.h>
#include <string.h>

static const struct config_module *const modules[] = {
        &ldap_config_module,  &forward_config_module, &protection_config_module,
        &queue_config_module, &metrics_config_module, &shared_config_module,
};

static const struct settings_section *const core[] = {
        &config_server_section,     &config_tls_section,   &config_limits_section,
        &config_listener_section,   &config_relay_section, &config_auth_section,
        &config_users_file_section,
};

static const struct settings_section *all[AR_NELEM(core) + 12];
static size_t n_all;

void
settings_registry_install(void)
{
	if (n_all > 0)
		return;
	for (size_t i = 0; i < AR_NELEM(core); i++)
		all[n_all++] = core[i];
	for (size_t m = 0; m < AR_NELEM(modules); m++) {
		for (size_t s = 0; s < modules[m]->n_sections; s++) {
			if (n_all == AR_NELEM(all))
				fatal("settings_registry: too many sections");
			all[n_all++] = modules[m]->sections[s];
		}
	}
	config_set_modules(modules, AR_NELEM(modules));
}

const struct settings_section *const *
settings_registry_sections(size_t *n_r)
{
	settings_registry_install();
	*n_r = n_all;
	return all;
}

/* Fill set's module records from its config (loaded already). */
static struct settings_set *
registry_fill(struct settings_set *set, char **errors_r)
{
	if (set->cfg == NULL)
		goto fail;
	/* config_load() ran the modules' checks: these only fill records. */
	set->qc = queue_config_load(set->cfg, errors_r);
	if (set->qc == NULL)
		goto fail;
	if (protection_config_load(set->cfg, &set->prot, errors_r) < 0)
		goto fail;
	if (config_section_next(set->cfg, "ldap", NULL) != NULL &&
	    (set->ldap = ldap_config_load(set->cfg, &set->n_ldap, errors_r)) == NULL)
		goto fail;
	set->has_fwd = forward_config_present(set->cfg);
	if (set->has_fwd && forward_config_load(set->cfg, &set->fwd, errors_r) < 0) {
		set->has_fwd = false;
		goto fail;
	}
	if (metrics_config_load(set->cfg, &set->metrics, errors_r) < 0)
		goto fail;
	if (shared_config_load(set->cfg, &set->shared, errors_r) < 0)
		goto fail;
	return set;
fail:
	settings_registry_free(set);
	return NULL;
}

struct settings_set *
settings_registry_load(const char *path, char **errors_r)
{
	struct settings_set *set = xcalloc(1, sizeof(*set));

	settings_registry_install();
	set->cfg = config_load(path, errors_r);
	return registry_fill(set, errors_r);
}

struct settings_set *
settings_registry_load_text(const char *path, const char *text, size_t len, char **errors_r)
{
	struct settings_set *set = xcalloc(1, sizeof(*set));

	settings_registry_install();
	set->cfg = config_load_text(path, text, len, errors_r);
	return registry_fill(set, errors_r);
}

void
settings_registry_free(struct settings_set *set)
{
	if (set == NULL)
		return;
	if (set->has_fwd)
		forward_config_free(&set->fwd);
	ldap_config_free(set->ldap, set->n_ldap);
	metrics_config_clear(&set->metrics);
	protection_config_clear(&set->prot);
	shared_config_clear(&set->shared);
	queue_config_free(set->qc);
	config_free(set->cfg);
	free(set);
}

/* ---- the records of each section kind ---- */

struct records {
	size_t n;
	const void **rec;
	const char **name; /* NULL for an unnamed kind */
};

static void
records_add(struct records *r, const void *rec, const char *name)
{
	r->rec = xrealloc(r->rec, (r->n + 1) * sizeof(*r->rec));
	r->name = xrealloc(r->name, (r->n + 1) * sizeof(*r->name));
	r->rec[r->n] = rec;
	r->name[r->n++] = name;
}

static void
records_clear(struct records *r)
{
	free(r->rec);
	free(r->name);
	memset(r, 0, sizeof(*r));
}

/* The records of def's kind in set. */
static void
set_records(const struct settings_set *set, const struct settings_section *def, struct records *r)
{
	const struct config *cfg = set->cfg;

	records_clear(r);
	if (def == &config_limits_section) {
		records_add(r, &cfg->limits, NULL);
	} else if (def == &config_listener_section) {
		for (size_t i = 0; i < cfg->n_listeners; i++)
			records_add(r, &cfg->listeners[i], cfg->listeners[i].name);
	} else if (strcmp(def->kind, "protection") == 0) {
		records_add(r, &set->prot, NULL);
	} else if (strcmp(def->kind, "alerts") == 0) {
		records_add(r, &set->prot.alerts, NULL);
	} else if (strcmp(def->kind, "shared") == 0) {
		records_add(r, &set->shared, NULL);
	} else if (strcmp(def->kind, "queue") == 0) {
		records_add(r, set->qc, NULL);
	} else if (strcmp(def->kind, "ldap") == 0) {
		for (size_t i = 0; i < set->n_ldap; i++)
			records_add(r, &set->ldap[i], set->ldap[i].name);
	} else if (strcmp(def->kind, FWD_SECTION) == 0) {
		if (set->has_fwd)
			records_add(r, &set->fwd, NULL);
	} else if (strcmp(def->kind, "metrics") == 0) {
		records_add(r, &set->metrics, NULL);
	} else if (strcmp(def->kind, "route") == 0) {
		for (size_t i = 0; i < set->qc->n_routes; i++)
			records_add(r, &set->qc->routes[i], set->qc->routes[i].name);
	} else {
		for (size_t i = 0; i < AR_NELEM(core); i++) {
			if (core[i] == def) {
				records_add(r, cfg, NULL);
				return;
			}
		}
		fatal("settings_registry: no records for [%s]", def->kind);
	}
}

/* Room for a record of defaults of any kind. */
union base_record {
	struct config cfg;
	struct limits_cfg limits;
	struct listener_cfg listener;
	struct protection_config prot;
	struct alerts_config alerts;
	struct shared_config shared;
	struct queue_config qc;
	struct route_cfg route;
	struct fwd_settings fwd;
	struct ldap_dir_cfg ldap;
	struct metrics_config metrics;
};

/* The defaults of def: what a key that is not written would hold. A
 * listener's limits default to [limits]. */
static void
base_new(const struct settings_set *set, const struct settings_section *def, union base_record *b)
{
	memset(b, 0, sizeof(*b));
	settings_defaults(def, b);
	if (def == &config_listener_section)
		b->listener.limits = set->cfg->limits;
}

/* ---- show-config ---- */

void
settings_registry_show(FILE *out, const struct settings_set *set, bool only_changed)
{
	struct records r = {0};

	settings_registry_install();
	for (size_t s = 0; s < n_all; s++) {
		const struct settings_section *def = all[s];
		bool written[256];
		if (settings_n_keys(def) > AR_NELEM(written))
			fatal("settings_registry: [%s] has too many keys", def->kind);
		set_records(set, def, &r);
		for (size_t i = 0; i < r.n; i++) {
			union base_record base;
			if (!only_changed) {
				settings_print(out, def, r.name[i], r.rec[i], NULL, NULL);
				continue;
			}
			base_new(set, def, &base);
			settings_written(def, set->cfg, r.name[i], written);
			settings_print(out, def, r.name[i], r.rec[i], &base, written);
			settings_free(def, &base);
		}
	}
	records_clear(&r);
}

/* ---- what changed ---- */

static size_t
diff_named(const struct settings_section *def, const struct records *a, const struct records *b,
           settings_change_cb *cb, void *arg)
{
	size_t changes = 0;
	char label[128];

	for (size_t i = 0; i < a->n; i++) {
		size_t j = 0;
		while (j < b->n && ascii_strcasecmp(a->name[i], b->name[j]) != 0)
			j++;
		snprintf(label, sizeof(label), "%s %s", def->kind, a->name[i]);
		if (j < b->n) {
			changes += settings_diff(def, label, a->rec[i], b->rec[j], cb, arg);
		} else {
			struct settings_change c = {.section = label};
			cb(arg, &c);
			changes++;
		}
	}
	for (size_t j = 0; j < b->n; j++) {
		size_t i = 0;
		while (i < a->n && ascii_strcasecmp(a->name[i], b->name[j]) != 0)
			i++;
		if (i == a->n) {
			snprintf(label, sizeof(label), "%s %s", def->kind, b->name[j]);
			struct settings_change c = {.section = label, .new_value = "added"};
			cb(arg, &c);
			changes++;
		}
	}
	return changes;
}

/* An unnamed section: one record each, or none for an optional section
 * ([smtp-forward]) the file does not have. */
static size_t
diff_unnamed(const struct settings_section *def, const struct records *a, const struct records *b,
             settings_change_cb *cb, void *arg)
{
	struct settings_change c = {.section = def->kind};

	if (a->n > 0 && b->n > 0)
		return settings_diff(def, def->kind, a->rec[0], b->rec[0], cb, arg);
	if (a->n == b->n)
		return 0;
	c.new_value = b->n > 0 ? "added" : NULL;
	cb(arg, &c);
	return 1;
}

size_t
settings_registry_diff(const struct settings_set *old, const struct settings_set *fresh,
                       settings_change_cb *cb, void *arg)
{
	struct records a = {0}, b = {0};
	size_t changes = 0;

	settings_registry_install();
	for (size_t s = 0; s < n_all; s++) {
		const struct settings_section *def = all[s];
		set_records(old, def, &a);
		set_records(fresh, def, &b);
		if (def->named)
			changes += diff_named(def, &a, &b, cb, arg);
		else
			changes += diff_unnamed(def, &a, &b, cb, arg);
	}
	records_clear(&a);
	records_clear(&b);
	return changes;
}

size_t
settings_registry_keep_restart(const struct settings_set *old, struct settings_set *fresh)
{
	struct records a = {0}, b = {0};
	size_t kept = 0;

	settings_registry_install();
	for (size_t s = 0; s < n_all; s++) {
		const struct settings_section *def = all[s];
		set_records(old, def, &a);
		set_records(fresh, def, &b);
		for (size_t j = 0; j < b.n; j++) {
			size_t i = 0;
			const char *failed;
			while (i < a.n && b.name[j] != NULL &&
			       ascii_strcasecmp(a.name[i], b.name[j]) != 0)
				i++;
			if (i == a.n)
				continue; /* a new named section: nothing to keep */
			/* Records are only read through the set; the copy is
			 * the one place a loaded set changes. */
			kept += settings_keep_restart(def, (void *)b.rec[j], a.rec[i], &failed);
			if (failed != NULL)
				fatal("settings_registry: [%s] %s needs a restart but cannot be "
				      "kept over a reload",
				      def->kind, failed);
		}
	}
	records_clear(&a);
	records_clear(&b);
	return kept;
}

void
settings_registry_reference(FILE *out, enum settings_ref_format fmt)
{
	settings_registry_install();
	settings_reference(out, fmt, all, n_all);
}
