/* SPDX-License-Identifier: ISC */
/*
 * show_config.c - "authrelay show-config": the effective configuration, every
 * key with its value after defaults and inheritance (like postconf or
 * doveconf), or with -n only what the file sets to something else than
 * the default (postconf -n); and with --reference=mdoc|markdown the key
 * reference of every section, which the manual page is built from.
 *
 * The output is itself a valid config file: a key that is not set is
 * printed as a comment.
 */
#include "show_config.h"
#include "settings_registry.h"
#include "../lib/build_info.h"
#include "../lib/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: authrelay show-config [-n] [-c FILE]\n"
	           "       authrelay show-config --reference=mdoc|markdown\n");
}

int
show_config_main(int argc, char **argv)
{
	const char *path = AUTHRELAY_CONFIG_FILE;
	bool only_changed = false;
	char *errors = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0) {
			only_changed = true;
		} else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
		           i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(argv[i], "--reference=mdoc") == 0 && argc == 2) {
			settings_registry_reference(stdout, SETTINGS_REF_MDOC);
			return 0;
		} else if (strcmp(argv[i], "--reference=markdown") == 0 && argc == 2) {
			settings_registry_reference(stdout, SETTINGS_REF_MARKDOWN);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	struct settings_set *set = settings_registry_load(path, &errors);
	if (set == NULL) {
		fprintf(stderr, "%s", errors != NULL ? errors : "cannot load the config\n");
		free(errors);
		return EX_CONFIG;
	}
	if (set->cfg->warnings != NULL)
		fputs(set->cfg->warnings, stderr);
	printf("# %s%s\n\n", set->cfg->path,
	       only_changed ? " (only what differs from the defaults)" : "");
	settings_registry_show(stdout, set, only_changed);
	settings_registry_free(set);
	return fflush(stdout) == 0 ? 0 : 1;
}
