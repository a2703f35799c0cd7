/* SPDX-License-Identifier: ISC */
/*
 * auth_passwd.h - "authrelay passwd": print a users-file line for a user,
 * reading the password from the terminal without echo (or from stdin).
 */
#ifndef AUTHRELAY_AUTH_PASSWD_H
#define AUTHRELAY_AUTH_PASSWD_H

/* argv[0] is "passwd". Usage: passwd [-s scheme] [user]. Prints
 * "user:hash" (or just the hash without user). Returns the exit status. */
int auth_passwd_main(int argc, char **argv);

#endif
