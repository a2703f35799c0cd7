/* SPDX-License-Identifier: ISC */
/*
 * fuzz_spool.c - the spool record reader (spool_read_envelope) and the
 * envelope value unescaper on arbitrary files: the queue process reads every
 * spool file with them, and a torn or hostile file must only be refused.
 */
#include "spool/spool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/fuzz_spool.%d", (int)getpid());
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);

	struct spool_envelope env;
	long body = 0;
	const char *err = NULL;
	if (spool_read_envelope(path, &env, &body, &err) == 0) {
		/* Whatever was accepted must round-trip through the escaper. */
		char *e = spool_escape(env.client);
		char *u = spool_unescape(e);
		if (u == NULL || strcmp(u, env.client) != 0)
			abort();
		free(e);
		free(u);
		if (body < 0 || (size_t)body > size)
			abort();
		spool_envelope_clear(&env);
	}
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';
	free(spool_unescape(line));
	free(line);
	return 0;
}
