/* SPDX-License-Identifier: ISC */
/*
 * ut_conf.h - unit-test helper: a configuration file written and loaded as
 * the daemon loads it (config_load()), for the tests of each section's
 * keys and of the errors an admin sees ("FILE:LINE: what is wrong").
 */
#ifndef UT_CONF_H
#define UT_CONF_H

struct config;

/* Write text to path and config_load() it: the config, or NULL with
 * *errors_r (malloc'd, the caller frees it). */
struct config *ut_conf_try(const char *path, const char *text, char **errors_r);

/* The same for text that must load; fails the test with the errors. */
struct config *ut_conf_load(const char *path, const char *text);

/* Fail the test unless text is refused with "path:line: message" among
 * its errors. */
void ut_conf_refused(const char *path, const char *text, int line, const char *message);

#endif
