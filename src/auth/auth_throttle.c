/* SPDX-License-Identifier: ISC */
/*
 * auth_throttle.c - failure counting, delays and lockouts (see
 * auth_throttle.h): the policy. The counters live behind throttle_store.h.
 *
 * A ticket is one attempt. Its slots are the keys it counts under, keyed
 * digests of ("c", client), ("p", login, client) and ("l", login), the login
 * normalized (login_norm.h); a canonical identity adds ("p", identity,
 * client) and ("l", identity). Each slot carries its limit and the digest of
 * (login, password) that tells distinct passwords apart. An allow-listed
 * client has no client and no pair slot.
 *
 * Waiting: a ticket the store has no room for joins a FIFO line. Whenever an
 * attempt settles (and on every tick) the line is tried again in order:
 * reservations are made first for the whole line, then the answers are
 * delivered one by one, because a callback may settle or free other tickets
 * (and settle again, which only asks for another round).
 */
#include "auth_throttle.h"
#include "login_norm.h"
#include "protection_config.h"
#include "../lib/common.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../authwire/auth_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define THROTTLE_MAX_TRACK 256
/* Attempts waiting for room at once, all workers together; more get BUSY. */
#define THROTTLE_MAX_WAITING 10000

TAILQ_HEAD(ticket_list, auth_throttle_ticket);

struct auth_throttle {
	const struct protection_config *pc;
	const struct keyhash *kh;
	const struct keyhash *pw_kh; /* names passwords: kh, or the cluster's */
	struct throttle_store store;
	size_t size;  /* throttle_size the store was made with */
	unsigned cap; /* distinct failures it keeps per key */
	uint64_t window_ms, lockout_ms;
	struct ticket_list waiting; /* no room yet, oldest first */
	struct ticket_list ready;   /* answered during a retry round, to deliver */
	size_t n_waiting;
	bool retrying, retry_again;
};

struct auth_throttle_ticket {
	TAILQ_ENTRY(auth_throttle_ticket) entry;
	struct ticket_list *list; /* waiting, ready, or NULL */
	struct auth_throttle *t;
	struct throttle_op op;
	enum auth_throttle_scope scope[THROTTLE_MAX_SLOTS];
	bool of_identity[THROTTLE_MAX_SLOTS];            /* the slot counts the identity */
	struct throttle_label label[THROTTLE_MAX_SLOTS]; /* who, should it lock */
	size_t from;         /* the admission in progress reserves from here */
	char *client;        /* as the worker sent it, for log lines */
	char *norm;          /* the normalized login */
	char *identity;      /* the canonical identity, NULL before */
	char *identity_norm; /* ...normalized */
	struct client_key {
		uint8_t key[16];
		bool is_addr;
		bool allowed;
	} ck;
	auth_throttle_admit_cb *admit_cb;
	void *admit_arg;
	enum auth_throttle_admission answer; /* in the ready line: to deliver */
	enum auth_throttle_scope answer_scope;
	auth_throttle_settle_cb *settle_cb;
	void *settle_arg;
	bool store_busy; /* a store call has not answered yet */
	bool dead;       /* freed while the store was busy: free on its answer */
	bool settled;
};

static void throttle_retry(struct auth_throttle *t, uint64_t now_ms);

/* Distinct failures an entry keeps: one more than the highest threshold. */
static unsigned
throttle_cap(const struct protection_config *pc)
{
	unsigned cap = pc->delay_after + 8;

	if (pc->lockout_client_failures + 1 > cap)
		cap = pc->lockout_client_failures + 1;
	if (pc->lockout_login_failures + 1 > cap)
		cap = pc->lockout_login_failures + 1;
	if (pc->lockout_client_login_failures + 1 > cap)
		cap = pc->lockout_client_login_failures + 1;
	return cap < THROTTLE_MAX_TRACK ? cap : THROTTLE_MAX_TRACK;
}

struct auth_throttle *
auth_throttle_new(const struct protection_config *pc, const struct keyhash *kh)
{
	struct auth_throttle *t = xcalloc(1, sizeof(*t));

	t->pc = pc;
	t->kh = kh;
	t->pw_kh = kh;
	t->cap = throttle_cap(pc);
	t->size = pc->throttle_size;
	t->store = throttle_store_local_new(t->size, t->cap);
	t->window_ms = (uint64_t)pc->throttle_window * 1000;
	t->lockout_ms = (uint64_t)pc->lockout_time * 1000;
	TAILQ_INIT(&t->waiting);
	TAILQ_INIT(&t->ready);
	return t;
}

void
auth_throttle_share(struct auth_throttle *t, struct shared_redis *sr, const char *key_prefix,
                    const struct keyhash *pw_kh)
{
	t->store = throttle_store_redis_new(sr, key_prefix, t->store, t->cap);
	if (pw_kh != NULL)
		t->pw_kh = pw_kh;
}

void
auth_throttle_resync(struct auth_throttle *t)
{
	if (t->store.ops->resync != NULL)
		t->store.ops->resync(t->store.state);
}

static void
ticket_unlist(struct auth_throttle_ticket *tk)
{
	if (tk->list == NULL)
		return;
	TAILQ_REMOVE(tk->list, tk, entry);
	if (tk->list == &tk->t->waiting)
		tk->t->n_waiting--;
	tk->list = NULL;
}

static void
ticket_destroy(struct auth_throttle_ticket *tk)
{
	ticket_unlist(tk);
	explicit_bzero(&tk->op, sizeof(tk->op));
	free(tk->client);
	free(tk->norm);
	free(tk->identity);
	free(tk->identity_norm);
	free(tk);
}

void
auth_throttle_reconfigure(struct auth_throttle *t, const struct protection_config *pc)
{
	unsigned cap = throttle_cap(pc);

	t->pc = pc;
	t->window_ms = (uint64_t)pc->throttle_window * 1000;
	t->lockout_ms = (uint64_t)pc->lockout_time * 1000;
	if (cap == t->cap && pc->throttle_size == t->size)
		return;
	/* A higher threshold needs more failures kept per key, or the count
	 * would stop below it and never lock: the store resizes in place,
	 * keeping every lockout, label, attempt in flight and the newest
	 * failures. */
	t->store.ops->resize(t->store.state, pc->throttle_size, cap);
	t->cap = cap;
	t->size = pc->throttle_size;
}

void
auth_throttle_free(struct auth_throttle *t)
{
	struct auth_throttle_ticket *tk;

	if (t == NULL)
		return;
	/* Tickets stay their owners'; they only leave the lines here. */
	while ((tk = TAILQ_FIRST(&t->waiting)) != NULL)
		ticket_unlist(tk);
	while ((tk = TAILQ_FIRST(&t->ready)) != NULL)
		ticket_unlist(tk);
	t->store.ops->free(t->store.state);
	free(t);
}

/* The per-client part of the keys: a 16-byte key masked like the connection
 * limits do (net_client_key), or the text itself when it is no address. */
static void
client_key_of(const struct auth_throttle *t, const char *client, struct client_key *ck)
{
	struct sockaddr_storage ss;

	memset(ck, 0, sizeof(*ck));
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, client, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, client, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
	} else {
		return;
	}
	ck->is_addr = true;
	net_client_key((struct sockaddr *)&ss, t->pc->ipv6_prefix, ck->key);
	ck->allowed = protection_allowed(t->pc, (struct sockaddr *)&ss);
}

static unsigned
scope_limit(const struct protection_config *pc, enum auth_throttle_scope scope)
{
	switch (scope) {
	case THROTTLE_CLIENT:
		return pc->lockout_client_failures;
	case THROTTLE_CLIENT_LOGIN:
		return pc->lockout_client_login_failures;
	case THROTTLE_LOGIN:
		return pc->lockout_login_failures;
	default:
		return 0;
	}
}

/* Add a slot for scope, login being the normalized login or identity and
 * digest the password's digest under it. */
static void
ticket_add_slot(struct auth_throttle_ticket *tk, enum auth_throttle_scope scope, const char *login,
                uint64_t digest, bool of_identity)
{
	const struct auth_throttle *t = tk->t;
	struct throttle_slot *s = &tk->op.slots[tk->op.n_slots];
	struct keyhash_part parts[3];
	size_t n = 0;

	if (tk->op.n_slots == THROTTLE_MAX_SLOTS)
		fatal("auth_throttle: too many slots"); /* five at most, by construction */
	memset(s, 0, sizeof(*s));
	parts[n++] = (struct keyhash_part){scope == THROTTLE_CLIENT         ? "c"
	                                   : scope == THROTTLE_CLIENT_LOGIN ? "p"
	                                                                    : "l",
	                                   1};
	if (scope != THROTTLE_CLIENT)
		parts[n++] = (struct keyhash_part){login, strlen(login)};
	if (scope != THROTTLE_LOGIN)
		parts[n++] = tk->ck.is_addr ? (struct keyhash_part){tk->ck.key, sizeof(tk->ck.key)}
		                            : (struct keyhash_part){tk->client, strlen(tk->client)};
	keyhash_digest(t->kh, s->key, parts, n);
	s->digest = digest;
	/* login points into the ticket (norm or identity_norm): it lives as
	 * long as the slot. */
	tk->label[tk->op.n_slots] = (struct throttle_label){
	        .scope = scope,
	        .client = scope != THROTTLE_LOGIN ? tk->client : NULL,
	        .login = scope != THROTTLE_CLIENT ? login : NULL,
	        .alias = of_identity ? tk->norm : NULL,
	        .client_is_addr = tk->ck.is_addr,
	};
	memcpy(tk->label[tk->op.n_slots].client_key, tk->ck.key, sizeof(tk->ck.key));
	s->label = &tk->label[tk->op.n_slots];
	s->limit = scope_limit(t->pc, scope);
	s->forget_on_success = scope == THROTTLE_CLIENT_LOGIN;
	tk->scope[tk->op.n_slots] = scope;
	tk->of_identity[tk->op.n_slots] = of_identity;
	tk->op.n_slots++;
}

/* First bytes of the keyed digest of (login, password). */
static uint64_t
password_digest(const struct auth_throttle *t, const char *login, const char *secret,
                size_t secret_len)
{
	const struct keyhash_part parts[] = {
	        {"w", 1}, {login, strlen(login)}, {secret, secret_len}};
	uint8_t pw[KEYHASH_LEN];
	uint64_t d;

	keyhash_digest(t->pw_kh, pw, parts, AR_NELEM(parts));
	memcpy(&d, pw, sizeof(d));
	explicit_bzero(pw, sizeof(pw));
	return d;
}

struct auth_throttle_ticket *
auth_throttle_ticket_new(struct auth_throttle *t, const char *client, const char *login,
                         const char *secret, size_t secret_len)
{
	struct auth_throttle_ticket *tk = xcalloc(1, sizeof(*tk));
	uint64_t digest;

	tk->t = t;
	tk->client = xstrdup(client);
	tk->norm = login_norm_fold(login, strlen(login));
	client_key_of(t, client, &tk->ck);
	digest = password_digest(t, tk->norm, secret, secret_len);
	if (!tk->ck.allowed) {
		ticket_add_slot(tk, THROTTLE_CLIENT, tk->norm, digest, false);
		ticket_add_slot(tk, THROTTLE_CLIENT_LOGIN, tk->norm, digest, false);
	}
	ticket_add_slot(tk, THROTTLE_LOGIN, tk->norm, digest, false);
	return tk;
}

/* Hand the admission's answer to its owner (once). */
static void
ticket_deliver(struct auth_throttle_ticket *tk, enum auth_throttle_admission a,
               enum auth_throttle_scope scope)
{
	auth_throttle_admit_cb *cb = tk->admit_cb;

	tk->admit_cb = NULL;
	if (cb != NULL)
		cb(tk->admit_arg, a, scope);
}

/* The store answered a reservation. */
static void
ticket_on_reserved(void *arg, struct throttle_op *op)
{
	struct auth_throttle_ticket *tk = arg;
	struct auth_throttle *t = tk->t;
	enum auth_throttle_admission a = THROTTLE_GO;
	enum auth_throttle_scope scope = THROTTLE_NONE;

	tk->store_busy = false;
	if (tk->dead) {
		ticket_destroy(tk);
		return;
	}
	switch (op->verdict) {
	case THROTTLE_WAIT:
		if (tk->list == &t->waiting)
			return; /* a retry round: stays in line */
		if (t->n_waiting >= THROTTLE_MAX_WAITING) {
			a = THROTTLE_BUSY;
			break;
		}
		TAILQ_INSERT_TAIL(&t->waiting, tk, entry);
		tk->list = &t->waiting;
		t->n_waiting++;
		return;
	case THROTTLE_LOCKED:
		scope = tk->scope[op->locked_slot];
		a = scope == THROTTLE_LOGIN ? THROTTLE_SHIELDED : THROTTLE_REFUSED;
		break;
	case THROTTLE_ADMIT:
		break;
	}
	if (t->retrying) {
		/* Delivered by the retry round, after every reservation. */
		ticket_unlist(tk);
		tk->answer = a;
		tk->answer_scope = scope;
		TAILQ_INSERT_TAIL(&t->ready, tk, entry);
		tk->list = &t->ready;
		return;
	}
	ticket_unlist(tk);
	ticket_deliver(tk, a, scope);
}

static void
ticket_reserve(struct auth_throttle_ticket *tk, uint64_t now_ms)
{
	struct auth_throttle *t = tk->t;

	tk->op.now_ms = now_ms;
	tk->op.window_ms = t->window_ms;
	tk->op.lockout_ms = t->lockout_ms;
	tk->store_busy = true;
	t->store.ops->reserve(t->store.state, &tk->op, tk->from, ticket_on_reserved, tk);
}

void
auth_throttle_admit(struct auth_throttle_ticket *tk, uint64_t now_ms, auth_throttle_admit_cb *cb,
                    void *arg)
{
	tk->admit_cb = cb;
	tk->admit_arg = arg;
	tk->from = 0;
	ticket_reserve(tk, now_ms);
}

void
auth_throttle_admit_identity(struct auth_throttle_ticket *tk, const char *identity,
                             const char *secret, size_t secret_len, uint64_t now_ms,
                             auth_throttle_admit_cb *cb, void *arg)
{
	char *norm = login_norm_fold(identity, strlen(identity));
	uint64_t digest;

	if (tk->identity != NULL || strcmp(norm, tk->norm) == 0) {
		/* Counted under this name already. */
		free(norm);
		cb(arg, THROTTLE_GO, THROTTLE_NONE);
		return;
	}
	tk->identity = xstrdup(identity);
	tk->identity_norm = norm;
	digest = password_digest(tk->t, norm, secret, secret_len);
	tk->from = tk->op.n_slots;
	if (!tk->ck.allowed)
		ticket_add_slot(tk, THROTTLE_CLIENT_LOGIN, norm, digest, true);
	ticket_add_slot(tk, THROTTLE_LOGIN, norm, digest, true);
	tk->admit_cb = cb;
	tk->admit_arg = arg;
	ticket_reserve(tk, now_ms);
}

/* The lockout line, once per slot that started one. */
static void
log_lockout(const struct auth_throttle_ticket *tk, size_t i)
{
	char user[AUTH_MAX_LOGIN * 4 + 8], addr[160];
	const char *who = tk->of_identity[i] ? tk->identity : tk->norm;

	/* The login (or the identity a directory gave) is the client's: last. */
	log_info("auth: lockout scope=%s client=%s failures=%u lockout_time=%u user=\"%s\"",
	         auth_throttle_scope_name(tk->scope[i]),
	         log_escape_str(tk->client[0] != '\0' ? tk->client : "-", addr, sizeof(addr)),
	         tk->op.slots[i].failures, tk->t->pc->lockout_time,
	         tk->scope[i] == THROTTLE_CLIENT ? "*" : log_escape_str(who, user, sizeof(user)));
}

static void
ticket_on_settled(void *arg, struct throttle_op *op)
{
	struct auth_throttle_ticket *tk = arg;
	struct auth_throttle *t = tk->t;
	const struct protection_config *pc = t->pc;
	auth_throttle_settle_cb *cb = tk->settle_cb;
	void *cbarg = tk->settle_arg;
	uint64_t now = op->now_ms;
	struct auth_throttle_result r;

	tk->store_busy = false;
	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i < op->n_slots; i++) {
		const struct throttle_slot *s = &op->slots[i];
		if (s->failures > r.failures)
			r.failures = s->failures;
		if (s->lock_started) {
			if (r.locked == THROTTLE_NONE)
				r.locked = tk->scope[i];
			log_lockout(tk, i);
		}
	}
	if (op->outcome == THROTTLE_FAILURE && r.failures > pc->delay_after && pc->delay_ms > 0) {
		unsigned steps = r.failures - pc->delay_after - 1;
		uint64_t d = steps >= 20 ? pc->delay_max_ms : (uint64_t)pc->delay_ms << steps;
		r.delay_ms = d > pc->delay_max_ms ? pc->delay_max_ms : (unsigned)d;
	}
	if (tk->dead)
		ticket_destroy(tk);
	else if (cb != NULL)
		cb(cbarg, &r); /* may free the ticket: not touched after */
	throttle_retry(t, now);
}

static void
ticket_settle(struct auth_throttle_ticket *tk, enum throttle_outcome outcome, uint64_t now_ms)
{
	struct auth_throttle *t = tk->t;

	ticket_unlist(tk);
	tk->settled = true;
	tk->op.outcome = outcome;
	tk->op.now_ms = now_ms;
	tk->op.window_ms = t->window_ms;
	tk->op.lockout_ms = t->lockout_ms;
	tk->store_busy = true;
	t->store.ops->settle(t->store.state, &tk->op, ticket_on_settled, tk);
}

void
auth_throttle_settle(struct auth_throttle_ticket *tk, enum throttle_outcome outcome,
                     uint64_t now_ms, auth_throttle_settle_cb *cb, void *arg)
{
	if (tk->settled)
		fatal("auth_throttle: a ticket settled twice");
	tk->admit_cb = NULL;
	tk->settle_cb = cb;
	tk->settle_arg = arg;
	ticket_settle(tk, outcome, now_ms);
}

static bool
ticket_holds_room(const struct auth_throttle_ticket *tk)
{
	for (size_t i = 0; i < tk->op.n_slots; i++) {
		if (tk->op.slots[i].state != THROTTLE_SLOT_NONE)
			return true;
	}
	return false;
}

void
auth_throttle_ticket_free(struct auth_throttle_ticket *tk)
{
	if (tk == NULL)
		return;
	ticket_unlist(tk);
	tk->admit_cb = NULL;
	tk->settle_cb = NULL;
	if (tk->store_busy) {
		tk->dead = true; /* the store's answer frees it */
		return;
	}
	if (!tk->settled && ticket_holds_room(tk)) {
		/* An attempt dropped half way (the auth process stopping):
		 * give its room back. Waiting ones are retried on the next
		 * settle or tick, not from inside the owner's free. */
		struct auth_throttle *t = tk->t;
		bool retrying = t->retrying;
		tk->dead = true;
		t->retrying = true; /* no retry round from here */
		ticket_settle(tk, THROTTLE_RELEASE, tk->op.now_ms);
		t->retrying = retrying;
		return;
	}
	ticket_destroy(tk);
}

static void
throttle_retry(struct auth_throttle *t, uint64_t now_ms)
{
	struct auth_throttle_ticket *tk, *next;

	if (t->retrying) {
		t->retry_again = true;
		return;
	}
	t->retrying = true;
	do {
		t->retry_again = false;
		/* Oldest first: they get the room before later ones. */
		for (tk = TAILQ_FIRST(&t->waiting); tk != NULL; tk = next) {
			next = TAILQ_NEXT(tk, entry);
			if (!tk->store_busy)
				ticket_reserve(tk, now_ms);
		}
		while ((tk = TAILQ_FIRST(&t->ready)) != NULL) {
			ticket_unlist(tk);
			ticket_deliver(tk, tk->answer, tk->answer_scope);
		}
	} while (t->retry_again);
	t->retrying = false;
}

void
auth_throttle_tick(struct auth_throttle *t, uint64_t now_ms)
{
	throttle_retry(t, now_ms);
}

struct lockouts_walk {
	uint64_t now_ms;
	auth_throttle_lockout_cb *cb;
	void *arg;
};

static void
lockouts_each(void *arg, const struct throttle_label *l, uint64_t locked_until_ms)
{
	struct lockouts_walk *w = arg;
	struct auth_throttle_lockout out = {
	        .scope = (enum auth_throttle_scope)l->scope,
	        .client = l->client,
	        .login = l->login,
	        .failures = l->failures,
	        .remaining_s = (unsigned)((locked_until_ms - w->now_ms + 999) / 1000),
	};

	w->cb(w->arg, &out);
}

void
auth_throttle_lockouts(struct auth_throttle *t, uint64_t now_ms, auth_throttle_lockout_cb *cb,
                       void *arg)
{
	struct lockouts_walk w = {now_ms, cb, arg};

	t->store.ops->lockouts(t->store.state, now_ms, lockouts_each, &w);
}

struct lockouts_all {
	struct lockouts_walk w;
	auth_throttle_lockouts_done_cb *done;
};

static void
lockouts_all_done(void *arg, bool local_only)
{
	struct lockouts_all *a = arg;

	a->done(a->w.arg, local_only);
	free(a);
}

void
auth_throttle_lockouts_all(struct auth_throttle *t, uint64_t now_ms, auth_throttle_lockout_cb *cb,
                           auth_throttle_lockouts_done_cb *done, void *arg)
{
	struct lockouts_all *a;

	if (t->store.ops->list == NULL) {
		/* Nothing shared: this node's list is the whole story. */
		auth_throttle_lockouts(t, now_ms, cb, arg);
		done(arg, false);
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->w = (struct lockouts_walk){now_ms, cb, arg};
	a->done = done;
	t->store.ops->list(t->store.state, now_ms, lockouts_each, lockouts_all_done, a);
}

/* What `unlock` names, as a client and as a login. */
struct unlock_what {
	const char *text;
	struct client_key ck;
	const char *norm;
};

static bool
unlock_match(void *arg, const struct throttle_label *l)
{
	const struct unlock_what *w = arg;
	bool client = l->client != NULL &&
	              (l->client_is_addr && w->ck.is_addr
	                       ? memcmp(l->client_key, w->ck.key, sizeof(l->client_key)) == 0
	                       : strcmp(l->client, w->text) == 0);

	return client || (l->login != NULL && strcmp(l->login, w->norm) == 0) ||
	       (l->alias != NULL && strcmp(l->alias, w->norm) == 0);
}

/* An unlock waiting for the shared store's answer, which may come before
 * the store's unlock returns the local count: both are awaited. */
struct unlock_wait {
	unsigned ended, shared_ended;
	bool local_only;
	bool answered, returned;
	auth_throttle_unlocked_cb *cb;
	void *arg;
};

static void
unlock_deliver(struct unlock_wait *u)
{
	u->cb(u->arg, u->shared_ended > u->ended ? u->shared_ended : u->ended, u->local_only);
	free(u);
}

static void
unlock_done(void *arg, unsigned shared_ended, bool local_only)
{
	struct unlock_wait *u = arg;

	u->shared_ended = shared_ended;
	u->local_only = local_only;
	u->answered = true;
	if (u->returned)
		unlock_deliver(u);
}

static unsigned
throttle_unlock(struct auth_throttle *t, const char *what, uint64_t now_ms, struct unlock_wait *u)
{
	struct auth_throttle_ticket tk; /* only to name the keys */
	uint8_t forget[2][KEYHASH_LEN];
	char esc[AUTH_MAX_LOGIN * 4 + 8];
	struct unlock_what w;
	unsigned ended;

	memset(&tk, 0, sizeof(tk));
	tk.t = t;
	tk.client = (char *)what;
	tk.norm = login_norm_fold(what, strlen(what));
	client_key_of(t, what, &tk.ck);
	w = (struct unlock_what){what, tk.ck, tk.norm};
	/* The counts that were no lockout yet go too (the login's, the
	 * client's): the next login starts afresh, as after lockout_time. */
	ticket_add_slot(&tk, THROTTLE_LOGIN, tk.norm, 0, false);
	ticket_add_slot(&tk, THROTTLE_CLIENT, tk.norm, 0, false);
	memcpy(forget[0], tk.op.slots[0].key, KEYHASH_LEN);
	memcpy(forget[1], tk.op.slots[1].key, KEYHASH_LEN);
	ended = t->store.ops->unlock(t->store.state, now_ms, unlock_match, &w, forget, tk.label, 2,
	                             u != NULL ? unlock_done : NULL, u);
	log_info("auth: unlock by the admin lockouts=%u what=\"%s\"", ended,
	         log_escape_str(what, esc, sizeof(esc)));
	free(tk.norm);
	if (u != NULL) {
		u->ended = ended;
		u->returned = true;
		if (u->answered)
			unlock_deliver(u);
	}
	return ended;
}

unsigned
auth_throttle_unlock(struct auth_throttle *t, const char *what, uint64_t now_ms)
{
	return throttle_unlock(t, what, now_ms, NULL);
}

void
auth_throttle_unlock_all(struct auth_throttle *t, const char *what, uint64_t now_ms,
                         auth_throttle_unlocked_cb *cb, void *arg)
{
	struct unlock_wait *u = xcalloc(1, sizeof(*u));

	u->cb = cb;
	u->arg = arg;
	(void)throttle_unlock(t, what, now_ms, u);
}

const char *
auth_throttle_scope_name(enum auth_throttle_scope s)
{
	switch (s) {
	case THROTTLE_CLIENT:
		return "client";
	case THROTTLE_CLIENT_LOGIN:
		return "client_login";
	case THROTTLE_LOGIN:
		return "login";
	case THROTTLE_NONE:
		break;
	}
	return "none";
}

size_t
auth_throttle_count(const struct auth_throttle *t)
{
	return t->store.ops->count(t->store.state);
}

size_t
auth_throttle_waiting(const struct auth_throttle *t)
{
	return t->n_waiting;
}

static void
locked_each(void *arg, const struct throttle_label *label, uint64_t locked_until_ms)
{
	size_t *n = arg;

	(*n)++;
}

size_t
auth_throttle_locked(struct auth_throttle *t, uint64_t now_ms)
{
	size_t n = 0;

	/* The store's walk of the lockouts in force, as the admin's listing. */
	t->store.ops->lockouts(t->store.state, now_ms, locked_each, &n);
	return n;
}
