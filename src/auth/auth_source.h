/* SPDX-License-Identifier: ISC */
/*
 * auth_source.h - how a credential store plugs into the auth process.
 *
 * A source is a table of functions. Adding one (LDAP, SMTP forwarding) means
 * one new file and one line in auth_sources[] in auth_server.c. Every verify
 * is asynchronous: the source calls auth_job_done() exactly once, from the
 * auth process's event loop, possibly before verify() returns.
 */
#ifndef AUTHRELAY_AUTH_SOURCE_H
#define AUTHRELAY_AUTH_SOURCE_H

#include "../authwire/auth_proto.h"

struct config;
struct event_base;
struct threadpool;
struct auth_job;

/* A source found its configuration at fault while answering (say, a
 * password attribute its service account may not read): detail is a
 * sentence for the administrator. The auth process raises an alert. */
typedef void auth_env_fault_cb(void *arg, const char *source, const char *detail);

/* What a source gets to work with. */
struct auth_env {
	const struct config *cfg;
	struct event_base *base;
	struct threadpool *pool;  /* for slow hash checks */
	auth_env_fault_cb *fault; /* NULL outside the daemon */
	void *fault_arg;
};

struct auth_source_ops {
	const char *name; /* "file", later "ldap", "forward" */
	/* True if the config enables this source. */
	bool (*configured)(const struct config *);
	/* Load; returns 0 or -1 with *error_r. *state_r is the source's own. */
	int (*init)(const struct auth_env *, void **state_r, const char **error_r);
	/* Check the job's credentials; finish with auth_job_done(). */
	void (*verify)(void *state, struct auth_job *job);
	/* AUTH_CAP_* this source can serve (CRAM-MD5 needs cleartext secrets). */
	uint32_t (*caps)(void *state);
	/* SIGHUP: re-read what can change (a users file). 0 or -1 (old data kept). */
	int (*reload)(void *state, const char **error_r);
	void (*free)(void *state);
	/* check-config, after init: ask the servers what only they can tell
	 * (an LDAP password attribute the service account may not read),
	 * running env's event loop until done. Problems go to stderr as
	 * "[section] ..." lines; returns -1 if one is an error. An
	 * unreachable server is only a warning. NULL: nothing to ask. */
	int (*probe)(void *state, struct event_base *base);
};

/* The request a job carries (strings valid until auth_job_done()). */
const struct auth_request *auth_job_request(const struct auth_job *);
/* Before auth_job_done() with AUTH_OK: the user's own mail addresses,
 * "a@x,b@y" (copied), for the sender policy ([listener] sender_login_match).
 * A source that knows none sets nothing: the login itself then counts. */
void auth_job_set_addresses(struct auth_job *, const char *addresses);
/* After auth_job_identified(): AUTH_REASON_OK to go on and check the
 * password; anything else (AUTH_REASON_LOCKED: the identity is locked out;
 * AUTH_REASON_BUSY) ends the job: the source finishes it with
 * auth_job_done(job, AUTH_TEMPFAIL, NULL, reason) and asks nothing more. */
typedef void auth_job_resume_cb(void *arg, enum auth_reason reason);
/* A source that has found the user names its canonical identity before it
 * checks the password (an LDAP entry's DN), so that the brute-force
 * throttle counts the attempt under that identity too: logins spelled
 * differently that find one entry share one budget. resume runs once,
 * possibly before this returns. A source whose identity is the login
 * itself (normalized) need not call it. */
void auth_job_identified(struct auth_job *, const char *identity, auth_job_resume_cb *resume,
                         void *arg);
/* Finish a job: identity is the canonical identity on AUTH_OK, what
 * throttling, sending limits, the cache and the logs know the user as (NULL:
 * the login normalized, login_norm.h); reason says why (auth_reason.h:
 * AUTH_REASON_UNKNOWN_USER passes the job on to the next source). The job is
 * freed; do not touch it after. */
void auth_job_done(struct auth_job *, enum auth_result result, const char *identity,
                   enum auth_reason reason);

extern const struct auth_source_ops auth_source_file;
extern const struct auth_source_ops auth_source_ldap;
extern const struct auth_source_ops auth_source_forward;

#endif
