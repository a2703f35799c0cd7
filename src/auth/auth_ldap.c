/* SPDX-License-Identifier: ISC */
/*
 * auth_ldap.c - the "ldap" auth source: logins checked against any number
 * of directories ([ldap NAME] sections), without ever blocking the auth
 * process's event loop (connections: ldap_conn.c; config: ldap_config.c;
 * filters: ldap_filter.c).
 *
 * One login, step by step:
 *   1. Refuse at once what no directory may see: an empty password
 *      (RFC 4513 5.1.2: it would be an unauthenticated bind, which servers
 *      answer with success), an unknown mechanism.
 *   2. Look the login up in every directory at once:
 *        - with a search (service account, or anonymous): the filter with
 *          %s/%u/%d escaped (RFC 4515), at most 2 entries asked for;
 *        - with a dn_template (no service account): bind as the expanded DN
 *          (RFC 4514 escaping) or, for AD, the UPN, then read the user's own
 *          entry on that connection. A refused bind counts as "not here".
 *   3. Decide (the uniqueness rule, product spec 5.1):
 *        - two entries in one directory, or entries in two directories:
 *          fail, reason=ambiguous, and a log line names the directories
 *          (a directory that did not answer could only add matches);
 *        - exactly one entry, and every directory answered: that
 *          directory checks the password;
 *        - exactly one entry among the directories that answered while
 *          another is down (or in its back-off after an outage): the rule
 *          cannot be checked, so tempfail, reason=directory_unavailable
 *          (fail closed: the user may be in the other one too, where the
 *          rule would refuse it). The auth server may still answer from a
 *          recent success in the cache's stale window. A directory with
 *          when_unavailable = trust_others is left out of this (weaker: the
 *          answering directory decides, and a warning says so);
 *        - no entry, and a directory down or too slow: tempfail,
 *          reason=directory_unavailable. The user may exist there, so
 *          "unknown" (535, or the next source) would be wrong;
 *        - no entry anywhere: fail, reason=unknown_user (the auth server
 *          then asks the next source).
 *      The entry found gives the canonical identity: its DN in LDAPv3
 *      string form, normalized (login_norm.h). In the daemon the auth
 *      server counts the attempt under it (auth_job_identified()) before
 *      the password is checked: logins that find one entry ("ann",
 *      "ann@example.org") share one brute-force budget, and a locked-out
 *      entry is not bound to at all.
 *   4. Check the password with the directory's method:
 *        - bind: a simple bind as the entry's DN on a connection kept for
 *          user binds (49 invalidCredentials: bad_password);
 *        - fetch: the password attribute's values, compared on the thread
 *          pool by lib/pwhash (constant time). A value without a {SCHEME}
 *          is cleartext, as in OpenLDAP, unless it looks like a crypt(3)
 *          string. CRAM-MD5 needs a cleartext value. An entry without the
 *          attribute is a user without a password (fail, no_password) once
 *          the directory has shown the attribute on some entry; while no
 *          entry has (since the start, or on the last few lookups in a
 *          row), the service account cannot read it: a configuration
 *          fault, tempfail reason=password_unreadable, logged and alerted
 *          (auth_env fault), never a failure counted against the user.
 *        - dn_template: the bind of step 2 was the check.
 *   5. Optional group gate: a base search of group_dn with group_filter
 *      (%D the user's DN) must return the group: else reason=not_in_group.
 *
 * The identity returned on success is the canonical identity (the entry's
 * normalized DN): what sending limits and logs know the user by. The
 * entry's mail_attributes values go to the sender policy as the user's own
 * addresses (auth_job_set_addresses()). "authrelay test-auth" shows both.
 *
 * Active Directory (type = ad or gc):
 *   - a down-level login "CORP\ann" is looked up as the account name "ann"
 *     (%s and %u become "ann", %d is empty) when CORP is the directory's
 *     NetBIOS domain: netbios_domain, or the forest's domains the pool read
 *     with the service account (ldap_conn_pool_domains()). A Global
 *     Catalog then searches that domain's naming context. Another domain
 *     is "not here";
 *   - a refused bind's sub-code (ldap_ad.h) becomes the reason: 52e
 *     bad_password, 533 account_disabled, 775 account_locked... With a
 *     dn_template, 52e stays "not here" (AD answers it for unknown users
 *     too) while a sub-code about the account's state means the account is
 *     here and refused.
 *
 * For "authrelay test-auth", the first step that failed is traced last as
 * "failed step: ...", with why (a certificate, the service bind, the DC
 * unreachable, the group gate).
 *
 * Reasons: ok, bad_password, unknown_user, ambiguous, directory_unavailable,
 * not_in_group, no_password, password_unreadable, unsupported_hash,
 * mech_unavailable, bind_refused, empty_password, internal; from AD's
 * sub-codes logon_hours, workstation_refused, password_expired,
 * account_disabled, account_expired, password_must_change, account_locked;
 * locked and busy when the auth server's throttle stops a check after the
 * lookup.
 */
#include "auth_ldap.h"
#include "auth_source.h"
#include "ldap_ad.h"
#include "ldap_config.h"
#include "ldap_conn.h"
#include "ldap_filter.h"
#include "login_norm.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/pwhash.h"
#include "../lib/threadpool.h"

#include <errno.h>
#include <event2/event.h>
#include <ldap.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#define LDAP_LOOKUP_MAX_ENTRIES 2 /* enough to tell "ambiguous" */
#define LDAP_QUERY_MAX_ENTRIES 20 /* test-query shows this many */
#define LDAP_CRAM_DIGEST_LEN 32
/* method = fetch: entries in a row without a readable password attribute
 * before the directory is taken for one whose service account cannot read
 * it (a configuration fault) even though it showed it before. */
#define LDAP_PW_MISSING_FAULT 3

struct ldap_dir {
	struct ldap_dir_cfg *cfg;
	struct ldap_conn_pool *pool;
	char **attrs; /* what a lookup asks for */
	/* method = fetch: has an entry shown the password attribute (and how
	 * many lookups in a row have not since)? */
	bool pw_seen;
	unsigned pw_missing_streak;
};

enum dir_state {
	DS_PENDING,
	DS_NOT_FOUND,
	DS_FOUND,
	DS_AMBIGUOUS,
	DS_UNAVAILABLE,
};

static const char *const dir_state_names[] = {
        [DS_PENDING] = "pending",     [DS_NOT_FOUND] = "not_found",     [DS_FOUND] = "found",
        [DS_AMBIGUOUS] = "ambiguous", [DS_UNAVAILABLE] = "unavailable",
};

struct ldap_req;

/* One request's view of one directory. */
struct req_dir {
	struct ldap_req *req;
	struct ldap_dir *dir;
	enum dir_state state;
	struct ldap_conn *conn; /* held (template mode: bound as the user) */
	char *bind_name;        /* template mode: the DN or UPN bound as */
	char *login;            /* AD down-level login: the account name; NULL: as typed */
	bool downlevel_pending; /* the domain is checked once the pool knows the forest's */
	char downlevel_domain[LDAP_AD_NETBIOS_MAX + 1];
	char *base;                   /* search base for this login; NULL: the configured one */
	enum auth_reason bind_reason; /* template mode: AD refused the account (its state);
	                               * AUTH_REASON_OK: it did not */
	char *dn;                     /* the entry found */
	struct berval *passwords;     /* fetch: the password attribute's values */
	size_t n_passwords;
	char *addresses; /* mail_attributes values, "a@x,b@y", or NULL */
	bool pw_missing; /* fetch: the entry came without the password attribute */
	unsigned n_entries;
	char *error;
};

enum req_phase { PH_LOOKUP, PH_VERIFY, PH_GROUP, PH_DONE };

struct ldap_req {
	LIST_ENTRY(ldap_req) entry;
	struct auth_ldap *src;
	enum req_phase phase;
	char *login;
	char *password; /* wiped */
	size_t password_len;
	bool cram;
	char *challenge;
	char *session;
	bool lookup_only;
	struct req_dir *dirs;
	size_t n_dirs, pending;
	struct req_dir *chosen;
	char *identity;       /* the chosen entry's canonical identity */
	struct auth_job *job; /* the daemon's job (auth_job_identified()), or NULL */
	struct timespec start;
	struct event *ev; /* deferred finish */
	enum auth_result result;
	enum auth_reason reason;
	char *fail_note; /* the first step that failed, for test-auth */
	auth_ldap_done_cb *cb;
	void *arg;
};

/* A fetch comparison on the thread pool. */
struct fetch_check {
	LIST_ENTRY(fetch_check) entry;
	struct ldap_req *req;
	char **values; /* normalised stored values */
	size_t n_values;
	char *password;
	size_t password_len;
	bool cram;
	char *challenge;
	enum auth_result result;
	enum auth_reason reason;
};

struct auth_ldap {
	const struct config *cfg;
	struct event_base *base;
	struct threadpool *pool;
	struct ldap_dir_cfg *cfgs;
	size_t n_dirs;
	struct ldap_dir *dirs;
	bool any_fetch, any_template;
	LIST_HEAD(, ldap_req) reqs;
	LIST_HEAD(, fetch_check) checks;
	auth_ldap_trace_cb *trace;
	void *trace_arg;
	auth_env_fault_cb *fault;
	void *fault_arg;
};

static char ldap_init_error[8192];

static void group_start(struct req_dir *rd);
static bool downlevel_resolve(struct req_dir *rd);
static void req_finish(struct ldap_req *req, enum auth_result result, enum auth_reason reason);

static void AR_PRINTF(2, 3) trace(struct auth_ldap *src, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (src->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	src->trace(src->trace_arg, line);
}

static long
req_ms(const struct ldap_req *req)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - req->start.tv_sec) * 1000 +
	       (now.tv_nsec - req->start.tv_nsec) / 1000000;
}

/* Log-safe copies of untrusted strings (login, DNs from the directory). */
static const char *
esc(const char *s, char *buf, size_t size)
{
	return log_escape_str(s != NULL ? s : "", buf, size);
}

static int
scope_of(const struct ldap_dir_cfg *c)
{
	switch (c->scope) {
	case LDAP_CFG_SCOPE_BASE:
		return LDAP_SCOPE_BASE;
	case LDAP_CFG_SCOPE_ONE:
		return LDAP_SCOPE_ONELEVEL;
	default:
		return LDAP_SCOPE_SUBTREE;
	}
}

/* True for answers that say "the directory could not answer", as opposed
 * to a definite no. */
static bool
rc_unavailable(int rc)
{
	switch (rc) {
	case LDAP_SERVER_DOWN:
	case LDAP_TIMEOUT:
	case LDAP_CONNECT_ERROR:
	case LDAP_BUSY:
	case LDAP_UNAVAILABLE:
	case LDAP_TIMELIMIT_EXCEEDED:
	case LDAP_ADMINLIMIT_EXCEEDED:
	case LDAP_OTHER:
	case LDAP_LOCAL_ERROR:
	case LDAP_NO_MEMORY:
	case LDAP_PARAM_ERROR:
	case LDAP_DECODING_ERROR:
	case LDAP_ENCODING_ERROR:
	case LDAP_PROTOCOL_ERROR:
	case LDAP_OPERATIONS_ERROR:
	case LDAP_UNWILLING_TO_PERFORM:
	case LDAP_LOOP_DETECT:
		return true;
	default:
		return false;
	}
}

static void
rd_set_error(struct req_dir *rd, const char *error)
{
	free(rd->error);
	rd->error = xstrdup(error != NULL ? error : "unknown error");
}

static void
rd_release(struct req_dir *rd)
{
	if (rd->conn != NULL) {
		ldap_conn_release(rd->conn);
		rd->conn = NULL;
	}
}

static void
passwords_free(struct req_dir *rd)
{
	for (size_t i = 0; i < rd->n_passwords; i++) {
		explicit_bzero(rd->passwords[i].bv_val, rd->passwords[i].bv_len);
		free(rd->passwords[i].bv_val);
	}
	free(rd->passwords);
	rd->passwords = NULL;
	rd->n_passwords = 0;
}

static void
req_free(struct ldap_req *req)
{
	LIST_REMOVE(req, entry);
	for (size_t i = 0; i < req->n_dirs; i++) {
		struct req_dir *rd = &req->dirs[i];
		rd_release(rd);
		passwords_free(rd);
		free(rd->bind_name);
		free(rd->login);
		free(rd->base);
		free(rd->addresses);
		free(rd->dn);
		free(rd->error);
	}
	free(req->dirs);
	free(req->login);
	if (req->password != NULL) {
		explicit_bzero(req->password, req->password_len);
		free(req->password);
	}
	free(req->challenge);
	free(req->session);
	free(req->fail_note);
	free(req->identity);
	if (req->ev != NULL)
		event_free(req->ev);
	free(req);
}

static void
req_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_req *req = arg;
	auth_ldap_done_cb *cb = req->cb;
	void *cbarg = req->arg;
	enum auth_result result = req->result;
	enum auth_reason reason = req->reason;
	char *addresses = NULL, *identity = NULL;

	if (result == AUTH_OK && req->chosen != NULL && req->chosen->addresses != NULL)
		addresses = xstrdup(req->chosen->addresses);
	if (result == AUTH_OK && req->identity != NULL)
		identity = xstrdup(req->identity);
	req_free(req);
	cb(cbarg, result, reason, identity, addresses);
	free(addresses);
	free(identity);
}

/* Every answer goes through here: the callback runs on the next loop turn,
 * after all connections are given back. */
/* Note the first step that failed and why (traced when the request ends). */
static void AR_PRINTF(2, 3) req_fail_note(struct ldap_req *req, const char *fmt, ...)
{
	va_list ap;

	if (req->fail_note != NULL || req->src->trace == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(&req->fail_note, fmt, ap) < 0)
		req->fail_note = NULL;
	va_end(ap);
}

static void
req_finish(struct ldap_req *req, enum auth_result result, enum auth_reason reason)
{
	if (result != AUTH_OK && !req->lookup_only && req->fail_note != NULL)
		trace(req->src, "failed step: %s", req->fail_note);
	req->phase = PH_DONE;
	req->result = result;
	req->reason = reason;
	for (size_t i = 0; i < req->n_dirs; i++)
		rd_release(&req->dirs[i]);
	event_active(req->ev, EV_TIMEOUT, 1);
}

/* ------------------------------------------------------------ step 3 */

static void
dir_list(const struct ldap_req *req, enum dir_state want, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < req->n_dirs && used + 1 < size; i++) {
		if (req->dirs[i].state != want)
			continue;
		used += (size_t)snprintf(out + used, size - used, "%s%s", used > 0 ? "," : "",
		                         req->dirs[i].dir->cfg->name);
	}
}

static void verify_start(struct req_dir *rd);

/* Why the first unavailable directory was (for the log line). */
static const char *
first_error(const struct ldap_req *req)
{
	for (size_t i = 0; i < req->n_dirs; i++) {
		if (req->dirs[i].state == DS_UNAVAILABLE && req->dirs[i].error != NULL)
			return req->dirs[i].error;
	}
	return "unknown error";
}

/* The canonical identity of an entry: its DN in LDAPv3 string form
 * (RFC 4514), folded like logins (login_norm.h), so that the spellings a
 * server may use for one DN give one identity. */
static char *
dn_identity(const char *dn)
{
	char *v3 = NULL, *out;

	if (ldap_dn_normalize(dn, LDAP_DN_FORMAT_LDAP, &v3, LDAP_DN_FORMAT_LDAPV3) !=
	            LDAP_SUCCESS ||
	    v3 == NULL)
		return login_norm_fold(dn, strlen(dn));
	out = login_norm_fold(v3, strlen(v3));
	ldap_memfree(v3);
	return out;
}

/* The auth server's word after auth_job_identified(). */
static void
req_on_identified(void *arg, enum auth_reason refused)
{
	struct ldap_req *req = arg;

	if (refused != AUTH_REASON_OK) {
		trace(req->src, "the entry is locked out by the brute-force throttle: no bind");
		req_finish(req, AUTH_TEMPFAIL, refused);
		return;
	}
	verify_start(req->chosen);
}

static void
req_decide(struct ldap_req *req)
{
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], found[512], amb[512], down[512],
	        error[LOG_VALUE_MAX];
	size_t n_found = 0, n_amb = 0, n_down = 0;
	struct req_dir *one = NULL;

	for (size_t i = 0; i < req->n_dirs; i++) {
		struct req_dir *rd = &req->dirs[i];
		if (rd->state == DS_FOUND) {
			n_found++;
			one = rd;
		} else if (rd->state == DS_AMBIGUOUS) {
			n_amb++;
		} else if (rd->state == DS_UNAVAILABLE) {
			n_down++;
		}
	}
	dir_list(req, DS_FOUND, found, sizeof(found));
	dir_list(req, DS_AMBIGUOUS, amb, sizeof(amb));
	dir_list(req, DS_UNAVAILABLE, down, sizeof(down));
	esc(req->login, user, sizeof(user));
	esc(req->session, sess, sizeof(sess));
	esc(first_error(req), error, sizeof(error));

	if (n_amb > 0 || n_found > 1) {
		/* Uniqueness rule: more unavailable directories could only add
		 * matches, so this is final. */
		log_warn("s=%s ldap ambiguous: matched in directories=%s%s%s%s user=\"%s\"", sess,
		         found, n_found > 0 && n_amb > 0 ? "," : "", amb,
		         n_amb > 0 ? " (several entries in one directory)" : "", user);
		trace(req->src, "decision: ambiguous: the login matches in %s%s%s; refused", found,
		      n_found > 0 && n_amb > 0 ? "," : "", amb);
		req_fail_note(req, "lookup: the login matches more than one entry (%s%s%s)", found,
		              n_found > 0 && n_amb > 0 ? "," : "", amb);
		req_finish(req, AUTH_FAIL, AUTH_REASON_AMBIGUOUS);
		return;
	}
	if (n_found == 0 && n_down > 0) {
		/* The user may exist there: neither 535 nor the next source. */
		log_warn("s=%s ldap no match elsewhere, but directories=%s unavailable: tempfail "
		         "error=\"%s\" user=\"%s\"",
		         sess, down, error, user);
		trace(req->src,
		      "decision: not found, but directory %s is unavailable and the user "
		      "may exist there: temporary failure (454)",
		      down);
		req_fail_note(req, "[%s] the directory could not be asked: %s", down,
		              first_error(req));
		req_finish(req, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
		return;
	}
	if (n_found == 0) {
		log_debug("s=%s ldap not found in any directory user=\"%s\"", sess, user);
		trace(req->src, "decision: not found in any directory");
		req_fail_note(req, "lookup: no entry matches the login in any directory (check "
		                   "filter and base; disabled accounts are left out)");
		req_finish(req, AUTH_FAIL, AUTH_REASON_UNKNOWN_USER);
		return;
	}
	if (n_down > 0) {
		/* Found in one directory, but another cannot be asked: the
		 * uniqueness rule cannot be checked, so fail closed, unless
		 * every directory that is down lets the others decide
		 * (when_unavailable = trust_others). */
		bool strict = false;
		for (size_t i = 0; i < req->n_dirs; i++)
			strict |= req->dirs[i].state == DS_UNAVAILABLE &&
			          req->dirs[i].dir->cfg->when_unavailable ==
			                  LDAP_WHEN_UNAVAILABLE_TEMPFAIL;
		if (strict) {
			log_warn("s=%s ldap found in directory=%s, but directories=%s unavailable: "
			         "uniqueness cannot be checked, tempfail error=\"%s\" user=\"%s\"",
			         sess, found, down, error, user);
			trace(req->src,
			      "decision: found in %s, but directory %s is unavailable and the user "
			      "may be there too (the uniqueness rule): temporary failure (454)",
			      found, down);
			req_fail_note(
			        req,
			        "[%s] the directory could not be asked, so the uniqueness rule "
			        "cannot be checked: %s",
			        down, first_error(req));
			req_finish(req, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
			return;
		}
		log_warn("s=%s ldap found in directory=%s; directories=%s unavailable, uniqueness "
		         "not checked there (when_unavailable = trust_others) error=\"%s\" "
		         "user=\"%s\"",
		         sess, found, down, error, user);
	}
	req->chosen = one;
	req->identity = dn_identity(one->dn);
	trace(req->src, "decision: found in exactly one directory: %s (identity %s)",
	      one->dir->cfg->name, req->identity);
	if (req->lookup_only) {
		if (one->pw_missing)
			trace(req->src,
			      "problem: [%s] method = fetch, but the entry came without %s: the "
			      "service account (bind_dn) may not read it, or this user has no "
			      "password. If no entry shows it, logins get 454 "
			      "reason=password_unreadable until an ACL lets the service account "
			      "read %s",
			      one->dir->cfg->name, one->dir->cfg->password_attribute,
			      one->dir->cfg->password_attribute);
		req_finish(req, AUTH_OK, AUTH_REASON_FOUND);
		return;
	}
	req->phase = PH_VERIFY;
	if (req->job != NULL) {
		/* The auth server counts the attempt under the entry too,
		 * and may stop it before the password is checked. */
		auth_job_identified(req->job, req->identity, req_on_identified, req);
		return;
	}
	verify_start(one);
}

static void
rd_done(struct req_dir *rd, enum dir_state state)
{
	struct ldap_req *req = rd->req;
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], dn[1024], error[LOG_VALUE_MAX];

	rd->state = state;
	log_debug("s=%s ldap dir=%s lookup=%s entries=%u ms=%ld error=\"%s\" dn=\"%s\" "
	          "user=\"%s\"",
	          esc(req->session, sess, sizeof(sess)), rd->dir->cfg->name, dir_state_names[state],
	          rd->n_entries, req_ms(req), esc(rd->error, error, sizeof(error)),
	          esc(rd->dn, dn, sizeof(dn)), esc(req->login, user, sizeof(user)));
	trace(req->src, "[%s] lookup result: %s%s%s", rd->dir->cfg->name, dir_state_names[state],
	      rd->error != NULL ? ": " : "", rd->error != NULL ? rd->error : "");
	/* Only a dn_template lookup keeps its connection: it is bound as the
	 * user, for the group check. */
	if (state != DS_FOUND || rd->dir->cfg->dn_template == NULL)
		rd_release(rd);
	if (--req->pending == 0)
		req_decide(req);
}

/* ------------------------------------------------------------ step 2 */

static void
trace_entries(struct req_dir *rd, const struct ldap_conn_result *res)
{
	struct ldap_req *req = rd->req;
	const struct ldap_dir_cfg *c = rd->dir->cfg;

	if (req->src->trace == NULL)
		return;
	trace(req->src, "[%s] %zu entr%s%s (answered by %s)", c->name, res->n_entries,
	      res->n_entries == 1 ? "y" : "ies", res->more ? " and more" : "",
	      res->uri != NULL ? res->uri : "?");
	for (size_t i = 0; i < res->n_entries; i++) {
		const struct ldap_conn_entry *e = &res->entries[i];
		trace(req->src, "[%s]   dn: %s", c->name, e->dn);
		for (size_t a = 0; a < e->n_attrs; a++) {
			const struct ldap_conn_attr *at = &e->attrs[a];
			bool secret = ascii_strcasecmp(at->name, c->password_attribute) == 0;
			for (size_t v = 0; v < at->n_vals; v++) {
				const struct berval *bv = &at->vals[v];
				char buf[512];
				if (secret) {
					/* Show the scheme only: a hash is a secret too. */
					const char *end =
					        bv->bv_len > 0 && bv->bv_val[0] == '{'
					                ? memchr(bv->bv_val, '}', bv->bv_len)
					                : NULL;
					trace(req->src, "[%s]     %s: %.*s... (%zu bytes, hidden)",
					      c->name, at->name,
					      end != NULL ? (int)(end - bv->bv_val + 1) : 0,
					      bv->bv_val, bv->bv_len);
					continue;
				}
				trace(req->src, "[%s]     %s: %s", c->name, at->name,
				      log_escape(bv->bv_val, bv->bv_len, buf, sizeof(buf)));
			}
		}
	}
}

static const struct ldap_conn_attr *
entry_attr(const struct ldap_conn_entry *e, const char *name)
{
	for (size_t a = 0; a < e->n_attrs; a++) {
		if (ascii_strcasecmp(e->attrs[a].name, name) == 0)
			return &e->attrs[a];
	}
	return NULL;
}

/* The entry's mail_attributes values joined by commas (for the sender
 * policy, auth_job_set_addresses()); values that are not a plain
 * local@domain are left out. NULL if none. */
static char *
entry_addresses(const struct ldap_dir_cfg *c, const struct ldap_conn_entry *e)
{
	char *out = NULL;
	size_t len = 0;

	for (size_t m = 0; m < c->n_mail_attributes; m++) {
		const struct ldap_conn_attr *at = entry_attr(e, c->mail_attributes[m]);
		for (size_t v = 0; at != NULL && v < at->n_vals; v++) {
			const struct berval *bv = &at->vals[v];
			const char *a = bv->bv_val;
			const char *atsign = memchr(a, '@', bv->bv_len);
			bool ok = bv->bv_len > 0 && bv->bv_len < 512 && atsign != NULL &&
			          atsign != a && atsign + 1 < a + bv->bv_len;
			for (size_t i = 0; ok && i < bv->bv_len; i++) {
				unsigned char ch = (unsigned char)a[i];
				ok = ch > ' ' && ch < 0x7f && ch != ',' && ch != '<' && ch != '>';
			}
			if (!ok || len + bv->bv_len + 2 > 8192)
				continue;
			out = xrealloc(out, len + bv->bv_len + 2);
			if (len > 0)
				out[len++] = ',';
			memcpy(out + len, a, bv->bv_len);
			len += bv->bv_len;
			out[len] = '\0';
		}
	}
	return out;
}

/* The lookup's search answered (both modes). */
static void
lookup_on_search(void *arg, const struct ldap_conn_result *res)
{
	struct req_dir *rd = arg;
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	const struct ldap_conn_entry *e;
	const struct ldap_conn_attr *pw;

	trace_entries(rd, res);
	if (res->rc != LDAP_SUCCESS) {
		rd_set_error(rd, res->error);
		if (res->rc == LDAP_NO_SUCH_OBJECT && c->dn_template != NULL) {
			/* The bound DN has no entry we may read. */
			rd_done(rd, DS_NOT_FOUND);
			return;
		}
		if (res->rc == LDAP_NO_SUCH_OBJECT)
			log_err("ldap dir=%s: base \"%s\" does not exist (check base)", c->name,
			        c->base);
		else if (res->rc == LDAP_FILTER_ERROR)
			log_err("ldap dir=%s: the server refused the filter (check filter)",
			        c->name);
		rd_done(rd, DS_UNAVAILABLE);
		return;
	}
	rd->n_entries = (unsigned)res->n_entries;
	if (res->n_entries == 0) {
		rd_done(rd, DS_NOT_FOUND);
		return;
	}
	if (res->n_entries > 1 || res->more) {
		rd->n_entries = res->more ? (unsigned)res->n_entries + 1 : (unsigned)res->n_entries;
		rd_done(rd, DS_AMBIGUOUS);
		return;
	}
	e = &res->entries[0];
	rd->dn = xstrdup(e->dn);
	rd->addresses = entry_addresses(c, e);
	if (c->method == LDAP_METHOD_FETCH && (pw = entry_attr(e, c->password_attribute)) != NULL &&
	    pw->n_vals > 0) {
		rd->passwords = xcalloc(pw->n_vals, sizeof(*rd->passwords));
		for (size_t i = 0; i < pw->n_vals; i++) {
			rd->passwords[i].bv_len = pw->vals[i].bv_len;
			rd->passwords[i].bv_val = xmemdup(pw->vals[i].bv_val, pw->vals[i].bv_len);
		}
		rd->n_passwords = pw->n_vals;
		rd->dir->pw_seen = true;
		rd->dir->pw_missing_streak = 0;
	} else if (c->method == LDAP_METHOD_FETCH) {
		/* A user without a password, or an attribute the service
		 * account may not read: several in a row say the latter. */
		rd->pw_missing = true;
		if (++rd->dir->pw_missing_streak >= LDAP_PW_MISSING_FAULT)
			rd->dir->pw_seen = false;
	}
	rd_done(rd, DS_FOUND);
}

static void
lookup_search(struct req_dir *rd, const char *base, int scope, const char *filter)
{
	struct ldap_req *req = rd->req;
	static char *all_attrs[] = {"*", NULL};

	/* The filter is printable ASCII: every value in it is escaped. */
	trace(req->src, "[%s] search on %s: base=\"%s\" scope=%s filter=%s", rd->dir->cfg->name,
	      ldap_conn_uri(rd->conn), base,
	      scope == LDAP_SCOPE_BASE       ? "base"
	      : scope == LDAP_SCOPE_ONELEVEL ? "one"
	                                     : "sub",
	      filter);
	ldap_conn_search(rd->conn, base, scope, filter,
	                 req->lookup_only ? all_attrs : rd->dir->attrs,
	                 req->lookup_only ? LDAP_QUERY_MAX_ENTRIES : LDAP_LOOKUP_MAX_ENTRIES,
	                 lookup_on_search, rd);
}

/* tmpl with the login's tokens: the account name of a down-level login in
 * an AD directory, else the login as typed. */
static char *
expand(const char *tmpl, const struct req_dir *rd, const char *dn, enum ldap_escape how)
{
	const char *login = rd->login != NULL ? rd->login : rd->req->login;
	struct ldap_filter_vars v = {.login = login, .login_len = strlen(login), .user_dn = dn};
	const char *err;
	char *out = ldap_filter_expand(tmpl, &v, how, &err);

	if (out == NULL) /* templates are checked at load: cannot happen */
		fatal("ldap: template \"%s\": %s", tmpl, err);
	return out;
}

/* Search mode: a search connection is ours. */
static void
lookup_on_search_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct req_dir *rd = arg;
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	char *filter;

	if (conn == NULL) {
		rd_set_error(rd, error);
		rd_done(rd, DS_UNAVAILABLE);
		return;
	}
	rd->conn = conn;
	if (rd->downlevel_pending && !downlevel_resolve(rd)) {
		rd_done(rd, DS_NOT_FOUND);
		return;
	}
	filter = expand(c->filter, rd, NULL, LDAP_ESCAPE_FILTER);
	lookup_search(rd, rd->base != NULL ? rd->base : c->base, scope_of(c), filter);
	free(filter);
}

/* Template mode: the bind as the expanded name answered. */
static void
lookup_on_template_bind(void *arg, const struct ldap_conn_result *res)
{
	struct req_dir *rd = arg;
	struct ldap_req *req = rd->req;
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	char *filter, *upn_filter;

	trace(req->src, "[%s] bind as \"%s\": %s", c->name, rd->bind_name,
	      res->rc == LDAP_SUCCESS ? "ok" : res->error);
	if (res->rc != LDAP_SUCCESS) {
		int sub =
		        res->rc == LDAP_INVALID_CREDENTIALS ? ldap_ad_bind_subcode(res->error) : -1;
		rd_set_error(rd, res->error);
		if (ldap_ad_account_state(sub)) {
			/* AD checked the password first: the account is here,
			 * and its state refuses it (disabled, locked...). */
			trace(req->src, "[%s] Active Directory says: %s (data %x)", c->name,
			      ldap_ad_describe(sub), (unsigned)sub);
			rd->bind_reason = ldap_ad_reason(sub);
			rd->dn = xstrdup(rd->bind_name);
			rd->n_entries = 1;
			rd_done(rd, DS_FOUND);
			return;
		}
		/* A DN template cannot tell "no such user" from "wrong
		 * password": both are "not here" (RFC 4513 6.3.1 lets a
		 * server answer 49 for either; AD's 52e says either). */
		rd_done(rd, rc_unavailable(res->rc) ? DS_UNAVAILABLE : DS_NOT_FOUND);
		return;
	}
	/* Read our own entry as the user, through the configured filter, so
	 * that an entry the filter excludes (disabled) is "not here". */
	filter = expand(c->filter, rd, NULL, LDAP_ESCAPE_FILTER);
	if (!c->upn_bind) {
		lookup_search(rd, rd->bind_name, LDAP_SCOPE_BASE, filter);
	} else {
		/* The bind name is a UPN, or a down-level DOMAIN\name. */
		const char *bs = strchr(rd->bind_name, '\\');
		const char *name = bs != NULL ? bs + 1 : rd->bind_name;
		char *upn = ldap_filter_escape(name, strlen(name), LDAP_ESCAPE_FILTER);
		if (asprintf(&upn_filter, "(&%s(%s=%s))", filter,
		             bs != NULL ? "sAMAccountName" : "userPrincipalName", upn) < 0)
			fatal("out of memory");
		lookup_search(rd, c->base, scope_of(c), upn_filter);
		free(upn_filter);
		free(upn);
	}
	free(filter);
}

static void
lookup_on_bind_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct req_dir *rd = arg;

	if (conn == NULL) {
		rd_set_error(rd, error);
		rd_done(rd, DS_UNAVAILABLE);
		return;
	}
	rd->conn = conn;
	trace(rd->req->src, "[%s] bind on %s as \"%s\" (dn_template)", rd->dir->cfg->name,
	      ldap_conn_uri(conn), rd->bind_name);
	ldap_conn_bind(conn, rd->bind_name, rd->req->password, rd->req->password_len,
	               lookup_on_template_bind, rd);
}

/* True if dn is base or under it (DN strings compared without case, as
 * AD writes them in several cases). "" is the root: everything is under. */
static bool
dn_under(const char *dn, const char *base)
{
	size_t dl = strlen(dn), bl = strlen(base);

	if (bl == 0)
		return true;
	if (dl < bl || ascii_strcasecmp(dn + dl - bl, base) != 0)
		return false;
	return dl == bl || dn[dl - bl - 1] == ',';
}

/* A down-level login whose domain this directory serves: the account name
 * is what is looked up, under base (the domain's naming context when that
 * is deeper: a Global Catalog's forest). */
static bool
downlevel_accept(struct req_dir *rd, const char *user, const char *domain_dn)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;

	if (domain_dn != NULL && !dn_under(c->base, domain_dn)) {
		if (!dn_under(domain_dn, c->base))
			return false;
		rd->base = xstrdup(domain_dn);
	}
	rd->login = xstrdup(user);
	trace(rd->req->src, "[%s] down-level login: %s\\%s is the account \"%s\"%s%s", c->name,
	      rd->downlevel_domain, user, user, rd->base != NULL ? " under " : "",
	      rd->base != NULL ? rd->base : "");
	return true;
}

/* Search mode without netbios_domain: the forest's domains are known once
 * the pool has a search connection (read with the service account). */
static bool
downlevel_resolve(struct req_dir *rd)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	const struct ldap_conn_domain *doms;
	const char *user = strchr(rd->req->login, '\\') + 1;
	size_t n;

	rd->downlevel_pending = false;
	if (!ldap_conn_pool_domains(rd->dir->pool, &doms, &n)) {
		log_warn("ldap dir=%s: a down-level login (DOMAIN\\user) came in, but the domain "
		         "names could not be read from the directory: set netbios_domain",
		         c->name);
		trace(rd->req->src,
		      "[%s] down-level login: the domain names could not be read "
		      "from the directory (set netbios_domain): not here",
		      c->name);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (ascii_strcasecmp(doms[i].netbios, rd->downlevel_domain) == 0) {
			if (downlevel_accept(rd, user, doms[i].dn))
				return true;
			break;
		}
	}
	trace(rd->req->src, "[%s] down-level login: no domain %s under base \"%s\": not here",
	      c->name, rd->downlevel_domain, c->base);
	return false;
}

/* AD: a down-level login. False if this directory is not asked (done). */
static bool
downlevel_prepare(struct req_dir *rd)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	const char *user;

	if ((c->type != LDAP_TYPE_AD && c->type != LDAP_TYPE_GC) ||
	    !ldap_ad_split_downlevel(rd->req->login, rd->downlevel_domain, &user))
		return true;
	if (c->netbios_domain != NULL) {
		if (ascii_strcasecmp(rd->downlevel_domain, c->netbios_domain) == 0 &&
		    downlevel_accept(rd, user, NULL))
			return true;
		trace(rd->req->src,
		      "[%s] down-level login for domain %s: this directory is %s "
		      "(netbios_domain): not here",
		      c->name, rd->downlevel_domain, c->netbios_domain);
	} else if (c->dn_template == NULL) {
		rd->downlevel_pending = true;
		return true;
	} else {
		trace(rd->req->src,
		      "[%s] down-level login: with a dn_template the domain cannot be read from "
		      "the directory; set netbios_domain: not here",
		      c->name);
	}
	rd_done(rd, DS_NOT_FOUND);
	return false;
}

static void
lookup_start(struct req_dir *rd)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;

	if (!downlevel_prepare(rd))
		return;
	if (c->dn_template != NULL) {
		rd->bind_name = expand(c->dn_template, rd, NULL,
		                       c->upn_bind ? LDAP_ESCAPE_NONE : LDAP_ESCAPE_DN);
		ldap_conn_acquire(rd->dir->pool, LDAP_CONN_BIND, lookup_on_bind_conn, rd);
	} else {
		ldap_conn_acquire(rd->dir->pool, LDAP_CONN_SEARCH, lookup_on_search_conn, rd);
	}
}

/* ------------------------------------------------------------ step 4 */

static void
verify_done(struct req_dir *rd, enum auth_result result, enum auth_reason reason)
{
	struct ldap_req *req = rd->req;
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], error[LOG_VALUE_MAX];

	trace(req->src, "[%s] password check (method %s): %s", rd->dir->cfg->name,
	      rd->dir->cfg->dn_template != NULL           ? "dn_template bind"
	      : rd->dir->cfg->method == LDAP_METHOD_FETCH ? "fetch"
	                                                  : "bind",
	      auth_reason_name(reason));
	if (result == AUTH_OK && rd->dir->cfg->group_dn != NULL) {
		req->phase = PH_GROUP;
		group_start(rd);
		return;
	}
	if (result != AUTH_OK)
		req_fail_note(req, "[%s] password check as \"%s\": %s%s%s", rd->dir->cfg->name,
		              rd->dn != NULL ? rd->dn : "", auth_reason_name(reason),
		              rd->error != NULL ? ": " : "", rd->error != NULL ? rd->error : "");
	if (result == AUTH_TEMPFAIL)
		log_warn("s=%s ldap dir=%s check failed error=\"%s\" user=\"%s\"",
		         esc(req->session, sess, sizeof(sess)), rd->dir->cfg->name,
		         esc(rd->error != NULL ? rd->error : auth_reason_name(reason), error,
		             sizeof(error)),
		         esc(req->login, user, sizeof(user)));
	req_finish(req, result, reason);
}

/* invalidCredentials: a wrong password, or Active Directory's sub-code
 * (ldap_ad.h) says what else refused the account. */
static void
verify_refused(struct req_dir *rd, const struct ldap_conn_result *res)
{
	struct ldap_req *req = rd->req;
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64];
	int sub = ldap_ad_bind_subcode(res->error);
	enum auth_reason reason = sub >= 0 ? ldap_ad_reason(sub) : AUTH_REASON_BAD_PASSWORD;

	if (reason == AUTH_REASON_BAD_PASSWORD) {
		verify_done(rd, AUTH_FAIL, AUTH_REASON_BAD_PASSWORD);
		return;
	}
	rd_set_error(rd, res->error);
	trace(req->src, "[%s] Active Directory says: %s (data %x)", rd->dir->cfg->name,
	      ldap_ad_describe(sub), (unsigned)sub);
	esc(req->session, sess, sizeof(sess));
	esc(req->login, user, sizeof(user));
	if (reason == AUTH_REASON_ACCOUNT_LOCKED)
		/* The lockout shield ([protection]) exists to keep attackers
		 * from tripping this: someone got past it, or guesses
		 * elsewhere. auth_server raises the alert. */
		log_warn("s=%s ldap dir=%s locked out by the directory itself (Active Directory "
		         "data 775) user=\"%s\"",
		         sess, rd->dir->cfg->name, user);
	else
		log_info("s=%s ldap dir=%s bind refused: %s (data %x) user=\"%s\"", sess,
		         rd->dir->cfg->name, ldap_ad_describe(sub), (unsigned)sub, user);
	verify_done(rd, AUTH_FAIL, reason);
}

static void
verify_on_bind(void *arg, const struct ldap_conn_result *res)
{
	struct req_dir *rd = arg;

	rd_release(rd);
	switch (res->rc) {
	case LDAP_SUCCESS:
		verify_done(rd, AUTH_OK, AUTH_REASON_OK);
		return;
	case LDAP_INVALID_CREDENTIALS:
		verify_refused(rd, res);
		return;
	case LDAP_INAPPROPRIATE_AUTH:
		verify_done(rd, AUTH_FAIL, AUTH_REASON_BAD_PASSWORD);
		return;
	case LDAP_NO_SUCH_OBJECT:
		/* Deleted between the search and the bind. */
		verify_done(rd, AUTH_FAIL, AUTH_REASON_UNKNOWN_USER);
		return;
	default:
		rd_set_error(rd, res->error);
		if (rc_unavailable(res->rc)) {
			verify_done(rd, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
		} else {
			/* Locked, disabled, expired (password policy):
			 * definite, but not a wrong password. */
			char user[AUTH_MAX_LOGIN * 4 + 8], sess[64], error[LOG_VALUE_MAX];
			log_info("s=%s ldap dir=%s bind refused error=\"%s\" user=\"%s\"",
			         esc(rd->req->session, sess, sizeof(sess)), rd->dir->cfg->name,
			         esc(res->error, error, sizeof(error)),
			         esc(rd->req->login, user, sizeof(user)));
			verify_done(rd, AUTH_FAIL, AUTH_REASON_BIND_REFUSED);
		}
		return;
	}
}

static void
verify_on_bind_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct req_dir *rd = arg;

	if (conn == NULL) {
		rd_set_error(rd, error);
		verify_done(rd, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
		return;
	}
	rd->conn = conn;
	trace(rd->req->src, "[%s] bind on %s as \"%s\"", rd->dir->cfg->name, ldap_conn_uri(conn),
	      rd->dn);
	ldap_conn_bind(conn, rd->dn, rd->req->password, rd->req->password_len, verify_on_bind, rd);
}

/* RFC 2195 2: HMAC-MD5(secret, challenge) as 32 lower-case hex digits. */
static int
cram_digest(const char *secret, size_t len, const char *challenge,
            char hex[LDAP_CRAM_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(EVP_md5(), secret, (int)len, (const unsigned char *)challenge, strlen(challenge),
	         mac, &maclen) == NULL ||
	    maclen != LDAP_CRAM_DIGEST_LEN / 2)
		return -1;
	for (unsigned i = 0; i < maclen; i++) {
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 15];
	}
	hex[LDAP_CRAM_DIGEST_LEN] = '\0';
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

/* Pool thread: touches only c. */
static void
fetch_work(void *arg)
{
	struct fetch_check *c = arg;
	bool match = false, supported = false, cleartext = false;

	if (c->cram) {
		for (size_t i = 0; i < c->password_len; i++) {
			if (c->password[i] >= 'A' && c->password[i] <= 'F')
				c->password[i] += 'a' - 'A';
		}
	}
	for (size_t i = 0; i < c->n_values; i++) {
		const char *v = c->values[i];
		if (c->cram) {
			const char *secret = pwhash_cleartext(v);
			char mine[LDAP_CRAM_DIGEST_LEN + 1];
			if (secret == NULL || *secret == '\0')
				continue;
			cleartext = true;
			if (cram_digest(secret, strlen(secret), c->challenge, mine) < 0) {
				c->result = AUTH_TEMPFAIL;
				c->reason = AUTH_REASON_INTERNAL;
				return;
			}
			match |= ct_equal(mine, LDAP_CRAM_DIGEST_LEN, c->password, c->password_len);
			explicit_bzero(mine, sizeof(mine));
			continue;
		}
		/* An empty {CLEARTEXT} must not match anything. */
		if (pwhash_cleartext(v) != NULL && *pwhash_cleartext(v) == '\0')
			continue;
		switch (pwhash_verify(c->password, c->password_len, v)) {
		case PWHASH_MATCH:
			match = true;
			supported = true;
			break;
		case PWHASH_MISMATCH:
			supported = true;
			break;
		default:
			break;
		}
	}
	if (c->cram && !cleartext) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_MECH_UNAVAILABLE;
	} else if (match) {
		c->result = AUTH_OK;
		c->reason = AUTH_REASON_OK;
	} else if (!c->cram && !supported) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_UNSUPPORTED_HASH;
	} else {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_BAD_PASSWORD;
	}
}

static void
fetch_check_free(struct fetch_check *c)
{
	for (size_t i = 0; i < c->n_values; i++)
		free_secret(c->values[i]);
	free(c->values);
	if (c->password != NULL) {
		explicit_bzero(c->password, c->password_len);
		free(c->password);
	}
	free(c->challenge);
	free(c);
}

static void
fetch_done(void *arg)
{
	struct fetch_check *c = arg;
	struct ldap_req *req = c->req;

	LIST_REMOVE(c, entry);
	verify_done(req->chosen, c->result, c->reason);
	fetch_check_free(c);
}

/* A stored value as pwhash reads it. OpenLDAP takes a value without a
 * {SCHEME} as cleartext; a bare "$id$..." crypt string is taken as a hash
 * rather than as a password that happens to look like one. */
static char *
fetch_normalise(const struct berval *bv)
{
	char *out;

	if (bv->bv_len == 0 || memchr(bv->bv_val, '\0', bv->bv_len) != NULL)
		return NULL;
	if (bv->bv_val[0] == '{' || bv->bv_val[0] == '$')
		return xmemdup(bv->bv_val, bv->bv_len);
	out = xmalloc(bv->bv_len + sizeof("{CLEARTEXT}"));
	memcpy(out, "{CLEARTEXT}", sizeof("{CLEARTEXT}") - 1);
	memcpy(out + sizeof("{CLEARTEXT}") - 1, bv->bv_val, bv->bv_len);
	out[bv->bv_len + sizeof("{CLEARTEXT}") - 1] = '\0';
	return out;
}

static void
fetch_start(struct req_dir *rd)
{
	struct ldap_req *req = rd->req;
	struct fetch_check *c;
	char user[AUTH_MAX_LOGIN * 4 + 8];

	if (rd->n_passwords == 0 && !rd->dir->pw_seen) {
		/* No entry shows the attribute: the service account may not
		 * read it. Not the user's doing: 454, never counted. */
		const struct ldap_dir_cfg *dc = rd->dir->cfg;
		char detail[512];
		snprintf(detail, sizeof(detail),
		         "ldap dir=%s: method = fetch, but no entry shows %s to the service "
		         "account %s: it may not read it (a directory ACL); every login gets 454",
		         dc->name, dc->password_attribute,
		         dc->bind_dn != NULL ? dc->bind_dn : "(anonymous)");
		log_err("%s", detail);
		rd_set_error(rd, "the service account may not read the password attribute");
		req_fail_note(req,
		              "[%s] %s may not be read by the service account (method = fetch)",
		              dc->name, dc->password_attribute);
		if (req->src->fault != NULL)
			req->src->fault(req->src->fault_arg, "ldap", detail);
		verify_done(rd, AUTH_TEMPFAIL, AUTH_REASON_PASSWORD_UNREADABLE);
		return;
	}
	if (rd->n_passwords == 0) {
		/* Other entries show it: this user has none. */
		log_warn("ldap dir=%s: the entry has no %s (method = fetch): the user has no "
		         "password user=\"%s\"",
		         rd->dir->cfg->name, rd->dir->cfg->password_attribute,
		         esc(req->login, user, sizeof(user)));
		verify_done(rd, AUTH_FAIL, AUTH_REASON_NO_PASSWORD);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->req = req;
	c->values = xcalloc(rd->n_passwords, sizeof(*c->values));
	for (size_t i = 0; i < rd->n_passwords; i++) {
		char *v = fetch_normalise(&rd->passwords[i]);
		if (v != NULL)
			c->values[c->n_values++] = v;
	}
	c->password = xmemdup(req->password, req->password_len);
	c->password_len = req->password_len;
	c->cram = req->cram;
	c->challenge = xstrdup(req->challenge != NULL ? req->challenge : "");
	c->result = AUTH_TEMPFAIL;
	c->reason = AUTH_REASON_INTERNAL;
	trace(req->src, "[%s] comparing with %zu stored value%s of %s (method fetch)",
	      rd->dir->cfg->name, c->n_values, c->n_values == 1 ? "" : "s",
	      rd->dir->cfg->password_attribute);
	LIST_INSERT_HEAD(&req->src->checks, c, entry);
	bool cheap = true;
	for (size_t i = 0; i < c->n_values && cheap; i++)
		cheap = pwhash_is_cheap(c->values[i]);
	if (cheap) /* {SSHA} and friends, CRAM-MD5's HMAC: microseconds */
		threadpool_run_inline(req->src->pool, fetch_work, fetch_done, c);
	else
		threadpool_submit(req->src->pool, fetch_work, fetch_done, c);
}

static void
verify_start(struct req_dir *rd)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;

	if (rd->req->cram && (c->method != LDAP_METHOD_FETCH || c->dn_template != NULL)) {
		/* The server never sees a CRAM-MD5 password (spec 5.3). */
		verify_done(rd, AUTH_FAIL, AUTH_REASON_MECH_UNAVAILABLE);
		return;
	}
	if (rd->bind_reason != AUTH_REASON_OK) {
		verify_done(rd, AUTH_FAIL, rd->bind_reason); /* the lookup's bind, refused */
		return;
	}
	if (c->dn_template != NULL) {
		verify_done(rd, AUTH_OK, AUTH_REASON_OK); /* the lookup's bind */
		return;
	}
	if (c->method == LDAP_METHOD_FETCH) {
		fetch_start(rd);
		return;
	}
	ldap_conn_acquire(rd->dir->pool, LDAP_CONN_BIND, verify_on_bind_conn, rd);
}

/* ------------------------------------------------------------ step 5 */

static void
group_on_search(void *arg, const struct ldap_conn_result *res)
{
	struct req_dir *rd = arg;
	struct ldap_req *req = rd->req;
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	char user[AUTH_MAX_LOGIN * 4 + 8], sess[64];

	rd_release(rd);
	if (res->rc == LDAP_SUCCESS) {
		bool member = res->n_entries > 0 || res->more;
		trace(req->src, "[%s] group check: %s", c->name,
		      member ? "member" : "not a member");
		if (!member) {
			log_info("s=%s ldap dir=%s not in group \"%s\" user=\"%s\"",
			         esc(req->session, sess, sizeof(sess)), c->name, c->group_dn,
			         esc(req->login, user, sizeof(user)));
			req_fail_note(req,
			              "[%s] group check: \"%s\" is not a member of \"%s\" "
			              "(group_filter %s)",
			              c->name, rd->dn, c->group_dn, c->group_filter);
		}
		req_finish(req, member ? AUTH_OK : AUTH_FAIL,
		           member ? AUTH_REASON_OK : AUTH_REASON_NOT_IN_GROUP);
		return;
	}
	trace(req->src, "[%s] group check failed: %s", c->name, res->error);
	req_fail_note(req, "[%s] group check on \"%s\": %s", c->name, c->group_dn, res->error);
	if (res->rc == LDAP_NO_SUCH_OBJECT)
		log_err("ldap dir=%s: group_dn \"%s\" does not exist (or may not be read)", c->name,
		        c->group_dn);
	else
		log_warn("ldap dir=%s: group check failed: %s", c->name, res->error);
	req_finish(req, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
}

static void
group_search(struct req_dir *rd)
{
	const struct ldap_dir_cfg *c = rd->dir->cfg;
	static char *no_attrs[] = {LDAP_NO_ATTRS, NULL};
	char *filter = expand(c->group_filter, rd, rd->dn, LDAP_ESCAPE_FILTER);

	trace(rd->req->src, "[%s] group check on %s: base=\"%s\" scope=base filter=%s", c->name,
	      ldap_conn_uri(rd->conn), c->group_dn, filter);
	ldap_conn_search(rd->conn, c->group_dn, LDAP_SCOPE_BASE, filter, no_attrs, 1,
	                 group_on_search, rd);
	free(filter);
}

static void
group_on_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct req_dir *rd = arg;

	if (conn == NULL) {
		trace(rd->req->src, "[%s] group check: %s", rd->dir->cfg->name, error);
		req_fail_note(rd->req, "[%s] group check: no connection: %s", rd->dir->cfg->name,
		              error);
		log_warn("ldap dir=%s: group check: %s", rd->dir->cfg->name, error);
		req_finish(rd->req, AUTH_TEMPFAIL, AUTH_REASON_DIRECTORY_UNAVAILABLE);
		return;
	}
	rd->conn = conn;
	group_search(rd);
}

static void
group_start(struct req_dir *rd)
{
	/* dn_template: ask as the user, on the connection bound as them;
	 * otherwise as the service account. */
	if (rd->conn != NULL) {
		group_search(rd);
		return;
	}
	ldap_conn_acquire(rd->dir->pool, LDAP_CONN_SEARCH, group_on_conn, rd);
}

/* ------------------------------------------------------------ entry points */

/* auth_ldap_check(), and for the daemon's jobs (job != NULL) the attempt
 * is named to the auth server once the entry is found. */
static void
ldap_check(struct auth_ldap *src, const struct auth_request *r, bool lookup_only,
           struct auth_job *job, auth_ldap_done_cb *cb, void *arg)
{
	struct ldap_req *req = xcalloc(1, sizeof(*req));
	bool cram = ascii_strcasecmp(r->mech, "CRAM-MD5") == 0;

	clock_gettime(CLOCK_MONOTONIC, &req->start);
	req->src = src;
	req->job = job;
	req->cb = cb;
	req->arg = arg;
	req->lookup_only = lookup_only;
	req->login = xstrdup(r->login);
	req->password = xmemdup(r->secret != NULL ? r->secret : "", r->secret_len);
	req->password_len = r->secret_len;
	req->cram = cram;
	req->challenge = xstrdup(r->challenge != NULL ? r->challenge : "");
	req->session = xstrdup(r->session != NULL && r->session[0] != '\0' ? r->session : "-");
	req->ev = event_new(src->base, -1, 0, req_on_event, req);
	if (req->ev == NULL)
		fatal("ldap: cannot create an event");
	LIST_INSERT_HEAD(&src->reqs, req, entry);

	if (!lookup_only) {
		if (!cram && ascii_strcasecmp(r->mech, "PLAIN") != 0 &&
		    ascii_strcasecmp(r->mech, "LOGIN") != 0) {
			req_finish(req, AUTH_FAIL, AUTH_REASON_MECH_UNAVAILABLE);
			return;
		}
		if (req->password_len == 0) {
			/* RFC 4513 5.1.2; the auth server refuses these first,
			 * a source never relies on that. */
			trace(src, "empty password: refused before any directory is asked");
			req_finish(req, AUTH_FAIL, AUTH_REASON_EMPTY_PASSWORD);
			return;
		}
		if (cram && (!src->any_fetch || src->any_template)) {
			trace(src, "CRAM-MD5 needs method = fetch and a search in every directory");
			req_finish(req, AUTH_FAIL, AUTH_REASON_MECH_UNAVAILABLE);
			return;
		}
	}
	if (lookup_only && src->any_template) {
		trace(src, "note: directories with a dn_template can only be looked up with the "
		           "password (use test-auth)");
	}
	req->n_dirs = src->n_dirs;
	req->dirs = xcalloc(src->n_dirs, sizeof(*req->dirs));
	req->pending = src->n_dirs;
	for (size_t i = 0; i < src->n_dirs; i++) {
		req->dirs[i].req = req;
		req->dirs[i].dir = &src->dirs[i];
		req->dirs[i].state = DS_PENDING;
	}
	for (size_t i = 0; i < src->n_dirs; i++) {
		struct req_dir *rd = &req->dirs[i];
		if (lookup_only && rd->dir->cfg->dn_template != NULL && req->password_len == 0) {
			rd_set_error(rd, "dn_template: cannot look up without a password");
			rd_done(rd, DS_NOT_FOUND);
			continue;
		}
		lookup_start(rd);
	}
}

void
auth_ldap_check(struct auth_ldap *src, const struct auth_request *r, bool lookup_only,
                auth_ldap_done_cb *cb, void *arg)
{
	ldap_check(src, r, lookup_only, NULL, cb, arg);
}

void
auth_ldap_set_trace(struct auth_ldap *src, auth_ldap_trace_cb *cb, void *arg)
{
	src->trace = cb;
	src->trace_arg = arg;
	for (size_t i = 0; i < src->n_dirs; i++)
		ldap_conn_pool_set_trace(src->dirs[i].pool, cb, arg);
}

/* Read each service password and make the pools. */
static int
dirs_start(struct auth_ldap *src, const char **error_r)
{
	src->dirs = xcalloc(src->n_dirs, sizeof(*src->dirs));
	for (size_t i = 0; i < src->n_dirs; i++) {
		struct ldap_dir *d = &src->dirs[i];
		struct ldap_dir_cfg *c = &src->cfgs[i];
		char *pw = NULL;
		size_t n = 0;

		d->cfg = c;
		/* libldap would only fail each TLS handshake: say it now. */
		if (c->ca_file != NULL && access(c->ca_file, R_OK) < 0) {
			snprintf(ldap_init_error, sizeof(ldap_init_error),
			         "[ldap %s] ca_file = %s: %s", c->name, c->ca_file,
			         strerror(errno));
			*error_r = ldap_init_error;
			return -1;
		}
		if (c->bind_password_file != NULL &&
		    (pw = ldap_config_read_password(c, error_r)) == NULL)
			return -1;
		d->pool = ldap_conn_pool_new(src->base, c, pw);
		free_secret(pw);
		d->attrs = xcalloc(c->n_mail_attributes + 2, sizeof(*d->attrs));
		for (size_t a = 0; a < c->n_mail_attributes; a++)
			d->attrs[n++] = c->mail_attributes[a];
		if (c->method == LDAP_METHOD_FETCH)
			d->attrs[n++] = c->password_attribute;
		if (n == 0)
			d->attrs[n++] = LDAP_NO_ATTRS;
		d->attrs[n] = NULL;
		src->any_fetch |= c->method == LDAP_METHOD_FETCH;
		src->any_template |= c->dn_template != NULL;
		log_info("auth: ldap dir=%s type=%s method=%s%s uris=%zu pool_size=%u", c->name,
		         ldap_config_type_name(c->type),
		         c->dn_template != NULL           ? "bind (dn_template)"
		         : c->method == LDAP_METHOD_FETCH ? "fetch"
		                                          : "bind",
		         c->group_dn != NULL ? " group=yes" : "", c->n_uris, c->pool_size);
	}
	return 0;
}

int
auth_ldap_new(const struct auth_env *env, struct auth_ldap **r, const char **error_r)
{
	struct auth_ldap *src = xcalloc(1, sizeof(*src));
	char *errors = NULL;

	src->cfg = env->cfg;
	src->base = env->base;
	src->pool = env->pool;
	src->fault = env->fault;
	src->fault_arg = env->fault_arg;
	LIST_INIT(&src->reqs);
	LIST_INIT(&src->checks);
	/* config_load() refused a bad [ldap NAME]; this is a backstop. */
	src->cfgs = ldap_config_load(env->cfg, &src->n_dirs, &errors);
	if (src->cfgs == NULL && errors != NULL) {
		size_t len = strlen(errors);
		/* One "file:line: ..." per line, without the last newline. */
		while (len > 0 && errors[len - 1] == '\n')
			errors[--len] = '\0';
		snprintf(ldap_init_error, sizeof(ldap_init_error), "%s", errors);
		free(errors);
		*error_r = ldap_init_error;
		free(src);
		return -1;
	}
	if (src->n_dirs == 0) {
		*error_r = "no [ldap NAME] section";
		free(src);
		return -1;
	}
	if (dirs_start(src, error_r) < 0) {
		auth_ldap_free(src);
		return -1;
	}
	*r = src;
	return 0;
}

/* The auth server frees the hash pool first: checks still listed never got
 * their done callback. */
void
auth_ldap_free(struct auth_ldap *src)
{
	struct ldap_req *req;
	struct fetch_check *c;

	if (src == NULL)
		return;
	while ((c = LIST_FIRST(&src->checks)) != NULL) {
		LIST_REMOVE(c, entry);
		fetch_check_free(c);
	}
	/* Requests first (they hold connections), then the pools. */
	while ((req = LIST_FIRST(&src->reqs)) != NULL)
		req_free(req);
	for (size_t i = 0; src->dirs != NULL && i < src->n_dirs; i++) {
		ldap_conn_pool_free(src->dirs[i].pool);
		free(src->dirs[i].attrs);
	}
	free(src->dirs);
	ldap_config_free(src->cfgs, src->n_dirs);
	free(src);
}

/* ------------------------------------------------------------ auth_source */

static bool
ldap_configured(const struct config *cfg)
{
	return config_section_next(cfg, "ldap", NULL) != NULL;
}

static int
ldap_init(const struct auth_env *env, void **state_r, const char **error_r)
{
	struct auth_ldap *src;

	if (auth_ldap_new(env, &src, error_r) < 0)
		return -1;
	*state_r = src;
	return 0;
}

static void
ldap_job_done(void *arg, enum auth_result result, enum auth_reason reason, const char *identity,
              const char *addresses)
{
	if (result == AUTH_OK && addresses != NULL)
		auth_job_set_addresses(arg, addresses);
	auth_job_done(arg, result, result == AUTH_OK ? identity : NULL, reason);
}

static void
ldap_verify(void *state, struct auth_job *job)
{
	ldap_check(state, auth_job_request(job), false, job, ldap_job_done, job);
}

static uint32_t
ldap_caps(void *state)
{
	struct auth_ldap *src = state;

	/* Whether a fetched value is cleartext is known per user only; the
	 * listener's cram_md5 switch is the admin's say. */
	return src->any_fetch && !src->any_template ? AUTH_CAP_CRAM_MD5 : 0;
}

/* SIGHUP: re-read the service passwords (rotated secrets); connections
 * opened from now on use them. Other changes need a restart. */
static int
ldap_reload(void *state, const char **error_r)
{
	struct auth_ldap *src = state;

	for (size_t i = 0; i < src->n_dirs; i++) {
		const struct ldap_dir_cfg *c = src->dirs[i].cfg;
		char *pw;
		if (c->bind_password_file == NULL)
			continue;
		if ((pw = ldap_config_read_password(c, error_r)) == NULL)
			return -1;
		ldap_conn_pool_set_password(src->dirs[i].pool, pw);
		free_secret(pw);
	}
	return 0;
}

/* ------------------------------------------------------------ check-config */

/* One directory's probe: is the password attribute readable at all? */
struct probe {
	struct ldap_dir *dir;
	struct ldap_conn *conn;
	unsigned *pending;
	int *status;
	struct event_base *base;
};

static void
probe_done(struct probe *p)
{
	if (p->conn != NULL)
		ldap_conn_release(p->conn);
	if (--*p->pending == 0)
		event_base_loopbreak(p->base);
	free(p);
}

/* The first entry found that is not the service account's own: an ACL
 * commonly lets an account read its own password ("by self read"). */
static const struct ldap_conn_entry *
probe_entry(const struct ldap_conn_result *res, const struct ldap_dir_cfg *c)
{
	char *own = c->bind_dn != NULL ? dn_identity(c->bind_dn) : NULL;
	const struct ldap_conn_entry *found = NULL;

	for (size_t i = 0; i < res->n_entries && found == NULL; i++) {
		char *dn = dn_identity(res->entries[i].dn);
		if (own == NULL || strcmp(dn, own) != 0)
			found = &res->entries[i];
		free(dn);
	}
	free(own);
	return found;
}

static void
probe_on_search(void *arg, const struct ldap_conn_result *res)
{
	struct probe *p = arg;
	const struct ldap_dir_cfg *c = p->dir->cfg;
	const char *who = c->bind_dn != NULL ? c->bind_dn : "anonymous";
	const struct ldap_conn_entry *e;

	if (res->rc != LDAP_SUCCESS && rc_unavailable(res->rc)) {
		fprintf(stderr, "[ldap %s] warning: could not check %s: %s\n", c->name,
		        c->password_attribute, res->error);
	} else if (res->rc != LDAP_SUCCESS && res->rc != LDAP_NO_SUCH_OBJECT) {
		fprintf(stderr, "[ldap %s] warning: could not check %s: %s\n", c->name,
		        c->password_attribute, res->error);
	} else if ((e = probe_entry(res, c)) == NULL) {
		fprintf(stderr,
		        "[ldap %s] method = fetch: no entry under base \"%s\" shows %s to the "
		        "service account (%s): it may not read it; every login would get 454 "
		        "reason=password_unreadable (give it read access to %s, or use method = "
		        "bind)\n",
		        c->name, c->base, c->password_attribute, who, c->password_attribute);
		*p->status = -1;
	} else {
		const struct ldap_conn_attr *at = entry_attr(e, c->password_attribute);
		if (at == NULL || at->n_vals == 0) {
			fprintf(stderr,
			        "[ldap %s] method = fetch: the service account (%s) may search "
			        "but not read %s (\"%s\" came without it); every login would get "
			        "454 reason=password_unreadable\n",
			        c->name, who, c->password_attribute, e->dn);
			*p->status = -1;
		}
	}
	probe_done(p);
}

static void
probe_on_conn(void *arg, struct ldap_conn *conn, int rc, const char *error)
{
	struct probe *p = arg;
	const struct ldap_dir_cfg *c = p->dir->cfg;
	char filter[300];
	char *attrs[] = {c->password_attribute, NULL};

	if (conn == NULL) {
		fprintf(stderr, "[ldap %s] warning: could not check %s: %s\n", c->name,
		        c->password_attribute, error);
		probe_done(p);
		return;
	}
	p->conn = conn;
	/* Presence: an attribute the account may not read is not matched
	 * either (it cannot "search" it), so no entry comes back but maybe
	 * its own. Two entries: one may be that. */
	snprintf(filter, sizeof(filter), "(%s=*)", c->password_attribute);
	ldap_conn_search(conn, c->base, scope_of(c), filter, attrs, 2, probe_on_search, p);
}

/* check-config: for each method = fetch directory, one search for an entry
 * that shows the password attribute to the service account. */
static int
ldap_probe(void *state, struct event_base *base)
{
	struct auth_ldap *src = state;
	unsigned pending = 1;
	int status = 0;

	for (size_t i = 0; i < src->n_dirs; i++) {
		struct probe *p;
		if (src->dirs[i].cfg->method != LDAP_METHOD_FETCH)
			continue;
		p = xcalloc(1, sizeof(*p));
		p->dir = &src->dirs[i];
		p->pending = &pending;
		p->status = &status;
		p->base = base;
		pending++;
		ldap_conn_acquire(p->dir->pool, LDAP_CONN_SEARCH, probe_on_conn, p);
	}
	if (--pending > 0)
		event_base_dispatch(base);
	return status;
}

static void
ldap_free(void *state)
{
	auth_ldap_free(state);
}

const struct auth_source_ops auth_source_ldap = {
        .name = "ldap",
        .configured = ldap_configured,
        .init = ldap_init,
        .verify = ldap_verify,
        .caps = ldap_caps,
        .reload = ldap_reload,
        .free = ldap_free,
        .probe = ldap_probe,
};
