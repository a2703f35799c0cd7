/* SPDX-License-Identifier: ISC */
/*
 * show_config.h - "authrelay show-config [-n] [-c FILE]" and
 * "authrelay show-config --reference=mdoc|markdown" (see show_config.c).
 */
#ifndef AUTHRELAY_SHOW_CONFIG_H
#define AUTHRELAY_SHOW_CONFIG_H

/* argv[0] is "show-config". Prints to stdout; returns the exit status: 0,
 * EX_CONFIG when the config does not load (its errors on stderr), EX_USAGE
 * on a usage error (-h: the usage on stdout, 0). */
int show_config_main(int argc, char **argv);

#endif
