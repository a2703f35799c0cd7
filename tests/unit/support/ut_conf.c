/* SPDX-License-Identifier: ISC */
/*
 * ut_conf.c - configuration files written and loaded for unit tests
 * (ut_conf.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "ut_conf.h"

struct config *
ut_conf_try(const char *path, const char *text, char **errors_r)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	*errors_r = NULL;
	return config_load(path, errors_r);
}

struct config *
ut_conf_load(const char *path, const char *text)
{
	char *errors = NULL;
	struct config *cfg = ut_conf_try(path, text, &errors);

	if (cfg == NULL)
		fail_msg("config_load: %s", errors);
	return cfg;
}

void
ut_conf_refused(const char *path, const char *text, int line, const char *message)
{
	char *errors = NULL, want[1200];
	struct config *cfg = ut_conf_try(path, text, &errors);

	if (cfg != NULL)
		fail_msg("no error for:\n%s", text);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, message);
	if (errors == NULL || strstr(errors, want) == NULL)
		fail_msg("want \"%s\" in:\n%s\nfor:\n%s", want, errors, text);
	free(errors);
}
