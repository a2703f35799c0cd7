/* SPDX-License-Identifier: ISC */
/*
 * fuzz_config.c - the config loader on arbitrary files: whatever an admin (or
 * a broken editor) writes must be loaded or refused with messages, never
 * crash or leak.
 */
#include "lib/config.h"
#include "master/settings_registry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/fuzz_config.%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);

	char *errors = NULL;
	settings_registry_install(); /* every section on a table */
	struct config *cfg = config_load(path, &errors);
	if (cfg == NULL && errors == NULL)
		abort(); /* a refusal always says why */
	config_free(cfg);
	free(errors);
	return 0;
}
