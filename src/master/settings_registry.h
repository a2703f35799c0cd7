/* SPDX-License-Identifier: ISC */
/*
 * settings_registry.h - every section of authrelay.conf in one list: the
 * core sections (lib/config.c), [ldap NAME], [smtp-forward], [protection]
 * and [alerts] (auth), [queue] and [route NAME] (queue), [metrics].
 *
 * The master may include every module, so the list lives here:
 * settings_registry_install() hands it to config_load() (every process and
 * command calls it first), and the functions below use it to load the whole
 * file into typed records, print the effective configuration, list what
 * changed between two loads and write the key reference.
 */
#ifndef AUTHRELAY_SETTINGS_REGISTRY_H
#define AUTHRELAY_SETTINGS_REGISTRY_H

#include <stdio.h>
#include "../auth/forward_config.h"
#include "../auth/ldap_config.h"
#include "../auth/protection_config.h"
#include "../auth/shared_config.h"
#include "../lib/settings.h"
#include "../metrics/metrics_config.h"

struct config;
struct queue_config;

/* The file as every module sees it, each part in its typed record. */
struct settings_set {
	struct config *cfg;
	struct queue_config *qc;
	struct protection_config prot;
	struct fwd_settings fwd; /* when has_fwd: the file has [smtp-forward] */
	bool has_fwd;
	struct ldap_dir_cfg *ldap; /* one per [ldap NAME] */
	size_t n_ldap;
	struct metrics_config metrics;
	struct shared_config shared;
};

/* Make every module's sections known to config_load(). Call once, before
 * any load (main() does). */
void settings_registry_install(void);
/* Every section kind in reference order; *n_r gets their number. */
const struct settings_section *const *settings_registry_sections(size_t *n_r);

/* Load path and every module's records. NULL on failure, with each problem
 * as "file:line: message\n" in *errors_r (malloc'd, the caller frees). */
struct settings_set *settings_registry_load(const char *path, char **errors_r);
/* The same on text as read from path (config_load_text()). */
struct settings_set *settings_registry_load_text(const char *path, const char *text, size_t len,
                                                 char **errors_r);
void settings_registry_free(struct settings_set *);

/* Print set as a config file: every section with every key's effective
 * value, defaults included (only_changed: only the keys the file sets to
 * something else than their default, like postconf -n). */
void settings_registry_show(FILE *out, const struct settings_set *, bool only_changed);

/* Call cb for each key that differs from old to fresh, and for each named
 * section added or removed. The change's strings are valid during the call
 * only. Returns the number of changes. */
size_t settings_registry_diff(const struct settings_set *old, const struct settings_set *fresh,
                              settings_change_cb *cb, void *arg);

/* A reload: fresh keeps old's value of every key that can only change
 * with a restart (SETTINGS_RESTART), so that every process goes on with
 * what it started with. Call after settings_registry_diff(), which names
 * those keys. Returns the number of values copied. */
size_t settings_registry_keep_restart(const struct settings_set *old, struct settings_set *fresh);

/* The key reference of every section (settings_reference()). */
void settings_registry_reference(FILE *out, enum settings_ref_format);

#endif
