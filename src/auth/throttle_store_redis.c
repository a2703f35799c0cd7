/* SPDX-License-Identifier: ISC */
/*
 * throttle_store_redis.c - the throttle's counters shared by several
 * gateways through Redis (see throttle_store.h, shared_redis.h).
 *
 * The store wraps the local one (throttle_store_local.c). While Redis is
 * up, reservations are Redis's word (one Lua script over every key of an
 * attempt: atomic across the gateways); every settle is counted in both,
 * so that the local counts are ready when Redis goes away. Redis down or
 * slow (no answer within the [shared] timeout): the local store answers,
 * so a session is never stalled nor refused with a 5xx, and the door stays
 * as closed as one gateway alone keeps it. The failures counted meanwhile
 * are not sent to Redis afterwards: the local counts still hold this node,
 * and Redis's keys expire with the window anyway.
 *
 * Layout (PREFIX is [shared] key_prefix; NAME is "bf:" SCOPE ":" and 32 hex
 * digits of SHA-256 of the login, a zero byte and the client, so that every
 * gateway names a key alike; SCOPE is c (client), p (client and login) or
 * l (login)):
 *   PREFIX NAME ":f"  sorted set: distinct failed passwords of the window,
 *                     scored by their last failure (ms); expires with the
 *                     window;
 *   PREFIX NAME ":r"  sorted set: attempts in flight taking room, scored by
 *                     their start (forgotten after IN_FLIGHT_MS: a gateway
 *                     that died mid-attempt gives its room back);
 *   PREFIX NAME ":p"  sorted set: attempts in flight repeating a failure;
 *   PREFIX NAME ":l"  string: end of the lockout (ms), expiring with it;
 *   PREFIX NAME ":x"  set, on a login's and a client's name: the pair names
 *                     locked with it, for unlock.
 * A password is named by this gateway's keyed digest: the same wrong
 * password sent to two gateways counts twice (errs on the closed side).
 * The admin's listing (lockouts) shows this node's own lockouts; unlock
 * ends them in Redis too, which frees every gateway.
 */
#include "throttle_store.h"
#include "shared_redis.h"
#include "../lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define TR_NAME_MAX 256
#define TR_IN_FLIGHT_MS 120000
#define TR_SEEN_MAX 256
/* EVAL script n + per slot: key, limit, digest, state, forget, login, client */
#define TR_ARGS_MAX (8 + THROTTLE_MAX_SLOTS * 7)

/* Reply {0, state...}: admitted; {1, i, until}: slot i locked; {2}: wait. */
static const char reserve_script[] =
        "local now, win, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
        "for i = 1, #KEYS do\n"
        "  local lu = tonumber(redis.call('GET', KEYS[i] .. ':l') or '0')\n"
        "  if lu > now then return {1, i, lu} end\n"
        "end\n"
        "local rep = {}\n"
        "for i = 1, #KEYS do\n"
        "  local k, limit, d = KEYS[i], tonumber(ARGV[2 + 2 * i]), ARGV[3 + 2 * i]\n"
        "  redis.call('ZREMRANGEBYSCORE', k .. ':f', '-inf', now - win)\n"
        "  redis.call('ZREMRANGEBYSCORE', k .. ':r', '-inf', now - ttl)\n"
        "  redis.call('ZREMRANGEBYSCORE', k .. ':p', '-inf', now - ttl)\n"
        "  if redis.call('ZSCORE', k .. ':r', d) or redis.call('ZSCORE', k .. ':p', d) then\n"
        "    return {2}\n"
        "  end\n"
        "  rep[i] = redis.call('ZSCORE', k .. ':f', d) ~= false\n"
        "  if not rep[i] then\n"
        "    local fails = redis.call('ZCARD', k .. ':f')\n"
        "    local room = 1\n"
        "    if fails < limit then room = limit - fails end\n"
        "    if redis.call('ZCARD', k .. ':r') >= room then return {2} end\n"
        "  end\n"
        "end\n"
        "local out = {0}\n"
        "for i = 1, #KEYS do\n"
        "  local k, d = KEYS[i], ARGV[3 + 2 * i]\n"
        "  local set = ':r'\n"
        "  out[i + 1] = 1\n"
        "  if rep[i] then set = ':p'; out[i + 1] = 2 end\n"
        "  redis.call('ZADD', k .. set, now, d)\n"
        "  redis.call('PEXPIRE', k .. set, ttl)\n"
        "end\n"
        "return out\n";

/* ARGV: now, window, lockout, outcome (0 failure, 1 success, 2 release),
 * track, then per key: limit, digest, state, forget, login name, client
 * name. Reply: per key failures, lock started. */
static const char settle_script[] =
        "local now, win, lock = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
        "local outcome, track = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
        "local out = {}\n"
        "for i = 1, #KEYS do\n"
        "  local b = 5 + 6 * (i - 1)\n"
        "  local k, limit, d = KEYS[i], tonumber(ARGV[b + 1]), ARGV[b + 2]\n"
        "  local st, forget = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])\n"
        "  if st == 1 then redis.call('ZREM', k .. ':r', d) end\n"
        "  if st == 2 then redis.call('ZREM', k .. ':p', d) end\n"
        "  local fails, started = 0, 0\n"
        "  if outcome == 0 then\n"
        "    redis.call('ZREMRANGEBYSCORE', k .. ':f', '-inf', now - win)\n"
        "    redis.call('ZADD', k .. ':f', now, d)\n"
        "    local n = redis.call('ZCARD', k .. ':f')\n"
        "    if n > track then redis.call('ZREMRANGEBYRANK', k .. ':f', 0, n - track - 1) end\n"
        "    redis.call('PEXPIRE', k .. ':f', win)\n"
        "    fails = redis.call('ZCARD', k .. ':f')\n"
        "    local lu = tonumber(redis.call('GET', k .. ':l') or '0')\n"
        "    if limit > 0 and fails >= limit and lu <= now then\n"
        "      redis.call('SET', k .. ':l', now + lock, 'PX', lock)\n"
        "      started = 1\n"
        "      for _, owner in ipairs({ARGV[b + 5], ARGV[b + 6]}) do\n"
        "        if owner ~= '' and owner ~= k then\n"
        "          redis.call('SADD', owner .. ':x', k)\n"
        "          redis.call('PEXPIRE', owner .. ':x', lock)\n"
        "        end\n"
        "      end\n"
        "    end\n"
        "  elseif outcome == 1 and forget == 1 then\n"
        "    redis.call('DEL', k .. ':f', k .. ':l')\n"
        "  end\n"
        "  out[#out + 1] = fails\n"
        "  out[#out + 1] = started\n"
        "end\n"
        "return out\n";

/* KEYS: the names to forget, with the pairs locked with them. */
static const char unlock_script[] =
        "local ended = 0\n"
        "local function forget(k)\n"
        "  if redis.call('DEL', k .. ':l') == 1 then ended = ended + 1 end\n"
        "  redis.call('DEL', k .. ':f', k .. ':r', k .. ':p')\n"
        "end\n"
        "for i = 1, #KEYS do\n"
        "  for _, pair in ipairs(redis.call('SMEMBERS', KEYS[i] .. ':x')) do forget(pair) end\n"
        "  redis.call('DEL', KEYS[i] .. ':x')\n"
        "  forget(KEYS[i])\n"
        "end\n"
        "return ended\n";

/* A shared lockout this node has seen (it started it, or Redis refused an
 * attempt with it): for the admin's listing and unlock here. */
struct tr_seen {
	char name[TR_NAME_MAX];
	struct throttle_label label; /* strings owned */
	uint64_t until_ms;
};

struct redis_store {
	struct shared_redis *sr;
	char *prefix;
	struct throttle_store local;
	unsigned track;
	struct tr_seen seen[TR_SEEN_MAX];
	size_t n_seen;
};

/* One call waiting for Redis. */
struct tr_call {
	struct redis_store *st;
	struct throttle_op *op;
	size_t from;
	size_t idx[THROTTLE_MAX_SLOTS]; /* the op's slot of each key sent */
	size_t n;
	throttle_store_cb *cb;
	void *arg;
};

static void
tr_hex_name(const struct redis_store *st, char scope, const char *login, const uint8_t *client,
            size_t client_len, char out[TR_NAME_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	static const uint8_t zero = 0;
	int off;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, &scope, 1) != 1 ||
	    EVP_DigestUpdate(ctx, login, strlen(login)) != 1 ||
	    EVP_DigestUpdate(ctx, &zero, 1) != 1 ||
	    EVP_DigestUpdate(ctx, client, client_len) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		fatal("shared: SHA-256 failed");
	EVP_MD_CTX_free(ctx);
	off = snprintf(out, TR_NAME_MAX, "%.200sbf:%c:", st->prefix, scope);
	for (unsigned i = 0; i < 16; i++)
		off += snprintf(out + off, (size_t)(TR_NAME_MAX - off), "%02x", md[i]);
}

static char
tr_scope_char(const struct throttle_label *l)
{
	if (l->client != NULL && l->login != NULL)
		return 'p';
	return l->client != NULL ? 'c' : 'l';
}

/* The name every gateway gives the key of label l, as scope (c, p, l). */
static void
tr_name(const struct redis_store *st, const struct throttle_label *l, char scope,
        char out[TR_NAME_MAX])
{
	const char *login = scope != 'c' && l->login != NULL ? l->login : "";
	const uint8_t *client = (const uint8_t *)"";
	size_t client_len = 0;

	if (scope != 'l' && l->client != NULL) {
		client = l->client_is_addr ? l->client_key : (const uint8_t *)l->client;
		client_len = l->client_is_addr ? sizeof(l->client_key) : strlen(l->client);
	}
	tr_hex_name(st, scope, login, client, client_len, out);
}

static void
tr_seen_drop(struct tr_seen *e)
{
	free((char *)e->label.client);
	free((char *)e->label.login);
	free((char *)e->label.alias);
	memset(e, 0, sizeof(*e));
}

/* Remember the shared lockout of name; the one ending first makes room. */
static void
tr_seen_add(struct redis_store *st, const char *name, const struct throttle_label *l,
            unsigned failures, uint64_t until_ms)
{
	struct tr_seen *e = NULL;

	for (size_t i = 0; i < st->n_seen && e == NULL; i++) {
		if (strcmp(st->seen[i].name, name) == 0)
			e = &st->seen[i];
	}
	if (e == NULL && st->n_seen < TR_SEEN_MAX)
		e = &st->seen[st->n_seen++];
	if (e == NULL) {
		e = &st->seen[0];
		for (size_t i = 1; i < st->n_seen; i++) {
			if (st->seen[i].until_ms < e->until_ms)
				e = &st->seen[i];
		}
	}
	tr_seen_drop(e);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->label = *l;
	e->label.client = l->client != NULL ? xstrdup(l->client) : NULL;
	e->label.login = l->login != NULL ? xstrdup(l->login) : NULL;
	e->label.alias = l->alias != NULL ? xstrdup(l->alias) : NULL;
	e->label.failures = failures;
	e->until_ms = until_ms;
}

static void
tr_seen_del(struct redis_store *st, size_t i)
{
	tr_seen_drop(&st->seen[i]);
	st->seen[i] = st->seen[--st->n_seen];
	memset(&st->seen[st->n_seen], 0, sizeof(st->seen[0]));
}

static void
tr_args_len(int argc, const char **argv, size_t *len)
{
	for (int i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
}

static void
tr_on_reserve(const redisReply *r, void *arg)
{
	struct tr_call *c = arg;
	struct throttle_op *op = c->op;
	bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
	          r->element[0]->type == REDIS_REPLY_INTEGER;

	if (ok) {
		long long v = r->element[0]->integer;
		if (v == 0 && r->elements == c->n + 1) {
			op->verdict = THROTTLE_ADMIT;
			for (size_t i = 0; i < c->n; i++)
				op->slots[c->idx[i]].state = r->element[i + 1]->integer == 2
				                                     ? THROTTLE_SLOT_REPEAT
				                                     : THROTTLE_SLOT_RESERVED;
		} else if (v == 1 && r->elements == 3 && r->element[1]->integer >= 1 &&
		           (size_t)r->element[1]->integer <= c->n) {
			op->verdict = THROTTLE_LOCKED;
			struct throttle_slot *s;
			char name[TR_NAME_MAX];
			op->locked_slot = c->idx[r->element[1]->integer - 1];
			s = &op->slots[op->locked_slot];
			s->locked_until_ms = (uint64_t)r->element[2]->integer;
			tr_name(c->st, s->label, tr_scope_char(s->label), name);
			tr_seen_add(c->st, name, s->label, s->limit, s->locked_until_ms);
		} else if (v == 2) {
			op->verdict = THROTTLE_WAIT;
		} else {
			ok = false;
		}
	}
	if (!ok) {
		if (r != NULL)
			log_warn("shared: unexpected answer to the lockout script (type %d)",
			         r->type);
		/* Down, slow or confused: this node's own counts decide. */
		c->st->local.ops->reserve(c->st->local.state, op, c->from, c->cb, c->arg);
	} else {
		c->cb(c->arg, op);
	}
	free(c);
}

static void
tr_reserve(void *state, struct throttle_op *op, size_t from, throttle_store_cb *cb, void *arg)
{
	struct redis_store *st = state;
	struct tr_call *c;
	char names[THROTTLE_MAX_SLOTS][TR_NAME_MAX], nums[3][24];
	char lims[THROTTLE_MAX_SLOTS][16], digs[THROTTLE_MAX_SLOTS][24], nkeys[24];
	const char *argv[TR_ARGS_MAX];
	size_t len[TR_ARGS_MAX];
	int argc = 0;

	if (!shared_redis_up(st->sr)) {
		st->local.ops->reserve(st->local.state, op, from, cb, arg);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	*c = (struct tr_call){.st = st, .op = op, .from = from, .cb = cb, .arg = arg};
	op->verdict = THROTTLE_ADMIT;
	for (size_t i = from; i < op->n_slots; i++) {
		const struct throttle_slot *s = &op->slots[i];
		if (s->limit == 0 || s->label == NULL)
			continue;
		tr_name(st, s->label, tr_scope_char(s->label), names[c->n]);
		snprintf(lims[c->n], sizeof(lims[0]), "%u", s->limit);
		snprintf(digs[c->n], sizeof(digs[0]), "%llu", (unsigned long long)s->digest);
		c->idx[c->n++] = i;
	}
	if (c->n == 0) {
		free(c);
		cb(arg, op);
		return;
	}
	snprintf(nkeys, sizeof(nkeys), "%zu", c->n);
	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)op->now_ms);
	snprintf(nums[1], sizeof(nums[1]), "%llu", (unsigned long long)op->window_ms);
	snprintf(nums[2], sizeof(nums[2]), "%d", TR_IN_FLIGHT_MS);
	argv[argc++] = "EVAL";
	argv[argc++] = reserve_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < c->n; i++)
		argv[argc++] = names[i];
	for (int i = 0; i < 3; i++)
		argv[argc++] = nums[i];
	for (size_t i = 0; i < c->n; i++) {
		argv[argc++] = lims[i];
		argv[argc++] = digs[i];
	}
	tr_args_len(argc, argv, len);
	shared_redis_command(st->sr, argc, argv, len, tr_on_reserve, c);
}

static void
tr_ignore(void *arg, struct throttle_op *op)
{
	(void)arg;
	(void)op;
}

static void
tr_on_settle(const redisReply *r, void *arg)
{
	struct tr_call *c = arg;
	struct throttle_op *op = c->op;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 * c->n) {
		for (size_t i = 0; i < c->n; i++) {
			struct throttle_slot *s = &op->slots[c->idx[i]];
			/* The cluster's count; a lockout this node alone
			 * started (counted while Redis was away) still shows. */
			if ((unsigned)r->element[2 * i]->integer > s->failures)
				s->failures = (unsigned)r->element[2 * i]->integer;
			if (r->element[2 * i + 1]->integer == 1) {
				char name[TR_NAME_MAX];
				tr_name(c->st, s->label, tr_scope_char(s->label), name);
				tr_seen_add(c->st, name, s->label, s->failures,
				            op->now_ms + op->lockout_ms);
				s->lock_started = true;
			}
		}
	} else if (r != NULL) {
		log_warn("shared: unexpected answer to the settle script (type %d)", r->type);
	}
	c->cb(c->arg, op);
	free(c);
}

static void
tr_settle(void *state, struct throttle_op *op, throttle_store_cb *cb, void *arg)
{
	struct redis_store *st = state;
	enum throttle_slot_state was[THROTTLE_MAX_SLOTS];
	struct tr_call *c;
	char names[THROTTLE_MAX_SLOTS][TR_NAME_MAX], owners[THROTTLE_MAX_SLOTS][2][TR_NAME_MAX];
	char per[THROTTLE_MAX_SLOTS][4][24], nums[5][24], nkeys[24];
	const char *argv[TR_ARGS_MAX];
	size_t len[TR_ARGS_MAX];
	int argc = 0;

	for (size_t i = 0; i < op->n_slots; i++)
		was[i] = op->slots[i].state;
	/* Counted here too: the fallback's counts are ready when Redis goes. */
	st->local.ops->settle(st->local.state, op, tr_ignore, NULL);
	if (!shared_redis_up(st->sr)) {
		cb(arg, op);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	*c = (struct tr_call){.st = st, .op = op, .cb = cb, .arg = arg};
	for (size_t i = 0; i < op->n_slots; i++) {
		const struct throttle_slot *s = &op->slots[i];
		char scope;
		if (s->label == NULL)
			continue;
		scope = tr_scope_char(s->label);
		tr_name(st, s->label, scope, names[c->n]);
		owners[c->n][0][0] = owners[c->n][1][0] = '\0';
		if (scope == 'p') {
			tr_name(st, s->label, 'l', owners[c->n][0]);
			tr_name(st, s->label, 'c', owners[c->n][1]);
		}
		snprintf(per[c->n][0], sizeof(per[0][0]), "%u", s->limit);
		snprintf(per[c->n][1], sizeof(per[0][0]), "%llu", (unsigned long long)s->digest);
		snprintf(per[c->n][2], sizeof(per[0][0]), "%d", (int)was[i]);
		snprintf(per[c->n][3], sizeof(per[0][0]), "%d", s->forget_on_success ? 1 : 0);
		c->idx[c->n++] = i;
	}
	snprintf(nkeys, sizeof(nkeys), "%zu", c->n);
	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)op->now_ms);
	snprintf(nums[1], sizeof(nums[1]), "%llu", (unsigned long long)op->window_ms);
	snprintf(nums[2], sizeof(nums[2]), "%llu", (unsigned long long)op->lockout_ms);
	snprintf(nums[3], sizeof(nums[3]), "%d",
	         op->outcome == THROTTLE_FAILURE   ? 0
	         : op->outcome == THROTTLE_SUCCESS ? 1
	                                           : 2);
	snprintf(nums[4], sizeof(nums[4]), "%u", st->track);
	argv[argc++] = "EVAL";
	argv[argc++] = settle_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < c->n; i++)
		argv[argc++] = names[i];
	for (int i = 0; i < 5; i++)
		argv[argc++] = nums[i];
	for (size_t i = 0; i < c->n; i++) {
		for (int j = 0; j < 4; j++)
			argv[argc++] = per[i][j];
		argv[argc++] = owners[i][0];
		argv[argc++] = owners[i][1];
	}
	tr_args_len(argc, argv, len);
	shared_redis_command(st->sr, argc, argv, len, tr_on_settle, c);
}

struct tr_listing {
	struct redis_store *st;
	uint64_t now_ms;
	throttle_store_lockout_cb *cb;
	void *arg;
	bool shown[TR_SEEN_MAX]; /* listed by the local store already */
};

static void
tr_lockouts_local(void *arg, const struct throttle_label *l, uint64_t until_ms)
{
	struct tr_listing *w = arg;
	char name[TR_NAME_MAX];

	tr_name(w->st, l, tr_scope_char(l), name);
	for (size_t i = 0; i < w->st->n_seen; i++) {
		if (strcmp(w->st->seen[i].name, name) == 0)
			w->shown[i] = true;
	}
	w->cb(w->arg, l, until_ms);
}

static void
tr_lockouts(void *state, uint64_t now_ms, throttle_store_lockout_cb *cb, void *arg)
{
	struct redis_store *st = state;
	struct tr_listing w = {.st = st, .now_ms = now_ms, .cb = cb, .arg = arg};

	st->local.ops->lockouts(st->local.state, now_ms, tr_lockouts_local, &w);
	for (size_t i = 0; i < st->n_seen; i++) {
		if (st->seen[i].until_ms > now_ms && !w.shown[i])
			cb(arg, &st->seen[i].label, st->seen[i].until_ms);
	}
}

static void
tr_on_unlock(const redisReply *r, void *arg)
{
	(void)arg;
	if (r == NULL)
		log_warn("shared: the unlock did not reach redis; other gateways keep their "
		         "lockouts until they end");
	else if (r->type == REDIS_REPLY_ERROR)
		log_warn("shared: the unlock script failed: %.*s", (int)r->len, r->str);
	else if (r->type == REDIS_REPLY_INTEGER)
		log_info("shared: unlock ended %lld shared lockouts", r->integer);
}

static unsigned
tr_unlock(void *state, uint64_t now_ms, throttle_store_match_cb *match, void *arg,
          const uint8_t (*forget)[KEYHASH_LEN], const struct throttle_label *forget_labels,
          size_t n_forget)
{
	struct redis_store *st = state;
	char names[THROTTLE_MAX_SLOTS][TR_NAME_MAX], nkeys[24];
	const char *argv[3 + THROTTLE_MAX_SLOTS];
	size_t len[3 + THROTTLE_MAX_SLOTS];
	int argc = 0;
	size_t n = 0;
	unsigned ended = st->local.ops->unlock(st->local.state, now_ms, match, arg, forget,
	                                       forget_labels, n_forget);

	/* The shared lockouts seen here end too (in Redis by the script). */
	for (size_t i = 0; i < st->n_seen;) {
		if (st->seen[i].until_ms > now_ms && match(arg, &st->seen[i].label)) {
			ended++;
			tr_seen_del(st, i);
		} else if (st->seen[i].until_ms <= now_ms) {
			tr_seen_del(st, i);
		} else {
			i++;
		}
	}
	for (size_t i = 0; i < n_forget && n < THROTTLE_MAX_SLOTS; i++) {
		if (forget_labels == NULL)
			break;
		tr_name(st, &forget_labels[i], tr_scope_char(&forget_labels[i]), names[n++]);
	}
	if (n == 0)
		return ended;
	snprintf(nkeys, sizeof(nkeys), "%zu", n);
	argv[argc++] = "EVAL";
	argv[argc++] = unlock_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < n; i++)
		argv[argc++] = names[i];
	tr_args_len(argc, argv, len);
	/* Down: the other gateways' lockouts end with their time. */
	shared_redis_command(st->sr, argc, argv, len, tr_on_unlock, NULL);
	return ended;
}

/* A reload: the local store resizes; the shared keys keep the newest
 * `track` failures from the next settle on. */
static void
tr_resize(void *state, size_t max_keys, unsigned track)
{
	struct redis_store *st = state;

	st->local.ops->resize(st->local.state, max_keys, track);
	st->track = track;
}

static size_t
tr_count(void *state)
{
	struct redis_store *st = state;

	return st->local.ops->count(st->local.state);
}

static void
tr_free(void *state)
{
	struct redis_store *st = state;

	if (st == NULL)
		return;
	st->local.ops->free(st->local.state);
	for (size_t i = 0; i < st->n_seen; i++)
		tr_seen_drop(&st->seen[i]);
	free(st->prefix);
	free(st);
}

static const struct throttle_store_ops redis_ops = {
        .name = "redis",
        .reserve = tr_reserve,
        .settle = tr_settle,
        .lockouts = tr_lockouts,
        .unlock = tr_unlock,
        .resize = tr_resize,
        .count = tr_count,
        .free = tr_free,
};

struct throttle_store
throttle_store_redis_new(struct shared_redis *sr, const char *key_prefix,
                         struct throttle_store local, unsigned track)
{
	struct redis_store *st = xcalloc(1, sizeof(*st));

	st->sr = sr;
	st->prefix = xstrdup(key_prefix != NULL ? key_prefix : "");
	st->local = local;
	st->track = track > 0 ? track : 1;
	return (struct throttle_store){&redis_ops, st};
}
