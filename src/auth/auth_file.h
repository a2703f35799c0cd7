/* SPDX-License-Identifier: ISC */
/*
 * auth_file.h - the users-file source outside the auth server: what
 * "authrelay test-auth" (auth_test_cmd.c) needs to run one check with a
 * trace of its steps. The daemon uses the source through auth_source_file
 * (auth_source.h) only.
 */
#ifndef AUTHRELAY_AUTH_FILE_H
#define AUTHRELAY_AUTH_FILE_H

#include "auth_source.h"

struct auth_file;

/* identity and addresses: on AUTH_OK, the file's login and its addresses
 * (or NULL); valid during the call. */
typedef void auth_file_done_cb(void *arg, enum auth_result result, enum auth_reason reason,
                               const char *identity, const char *addresses);
/* One step: the file, the entry found (its line and the kind of hash, never
 * the hash), what CRAM-MD5 can do with it. */
typedef void auth_file_trace_cb(void *arg, const char *line);

/* Load [users-file] path. 0, or -1 with *error_r. */
int auth_file_new(const struct auth_env *env, struct auth_file **r, const char **error_r);
/* Free the thread pool first: checks it never finished are dropped. */
void auth_file_free(struct auth_file *);
void auth_file_set_trace(struct auth_file *, auth_file_trace_cb *cb, void *arg);
/* Check req (copied) as the daemon would; cb runs once, on the loop or
 * before this returns. */
void auth_file_check(struct auth_file *, const struct auth_request *req, auth_file_done_cb *cb,
                     void *arg);

#endif
