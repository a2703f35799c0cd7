/* SPDX-License-Identifier: ISC */
/*
 * auth_test_cmd.h - "authrelay test-auth" and "authrelay test-query": try a
 * login (or only its lookup) against the [ldap NAME] directories of a
 * config, printing every step, without starting the daemon.
 */
#ifndef AUTHRELAY_AUTH_TEST_CMD_H
#define AUTHRELAY_AUTH_TEST_CMD_H

/* argv[0] is "test-auth" or "test-query". Usage:
 *   test-auth  -c FILE [-m PLAIN|LOGIN] USER   (password: terminal, no echo; or stdin)
 *   test-query -c FILE USER
 * Exit status: 0 authenticated (found), 1 refused (not found, ambiguous),
 * 2 usage or config error, 3 temporary failure (a directory unavailable). */
int auth_test_cmd_main(int argc, char **argv);

#endif
