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
 * as closed as one gateway alone keeps it.
 *
 * What was counted meanwhile is kept (the backlog: each failure with its
 * time, each lockout it started with its end; at most TR_BACKLOG_MAX) and
 * so are the unlocks given meanwhile (their key names); resync(), when
 * Redis answers again, sends the unlocks first, then the backlog in rounds
 * of TR_RESYNC_BATCH commands, dropping what has left its window: the
 * failures go through the settle script at their own time, so that they
 * count for the other gateways as if Redis had never left.
 *
 * Times in Redis are the wall clock's (ms): the policy's are monotonic,
 * and every gateway's monotonic clock starts at its own boot.
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
 *   PREFIX NAME ":i"  hash: who is locked (s scope, c client, l login, a
 *                     alias, n failures), expiring with the lockout: the
 *                     cluster's listing SCANs these;
 *   PREFIX NAME ":x"  set, on a login's and a client's name: the pair names
 *                     locked with it, for unlock.
 * A password is named by the throttle's keyed digest: alike on every
 * gateway with [shared] secret_file, else per gateway (the same wrong
 * password sent to two gateways then counts twice: errs on the closed
 * side). unlock ends the lockouts in Redis too, which frees every gateway.
 */
#include "throttle_store.h"
#include "shared_redis.h"
#include "../lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#define TR_NAME_MAX 256
#define TR_IN_FLIGHT_MS 120000
#define TR_SEEN_MAX 256
/* EVAL script n + 6 + per slot: key and 10 arguments (settle_script) */
#define TR_ARGS_MAX (9 + THROTTLE_MAX_SLOTS * 11)
/* Failures and lockouts counted while Redis was away, waiting for it: each
 * one under a thousand bytes; the local counts still hold this node
 * beyond. */
#define TR_BACKLOG_MAX 10000
/* Unlocks waiting for Redis (names). */
#define TR_UNLOCKS_MAX 256
/* Commands one resync round keeps in flight: a backlog of thousands goes
 * out in rounds, between which the loop serves logins. */
#define TR_RESYNC_BATCH 200
/* The cluster's listing: keys per SCAN and at most so many SCANs. */
#define TR_LIST_COUNT "500"
#define TR_LIST_PAGES_MAX 2000

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

/* ARGV: when (the failure's time), window, lockout, outcome (0 failure, 1
 * success, 2 release), track, clock (now), then per key: limit, digest,
 * state, forget, login name, client name, and who (scope, client, login,
 * alias: kept next to a lockout for the cluster's listing). when is older
 * than clock for a failure counted while Redis was away, sent afterwards:
 * it counts only if still in the window, and its lockout ends lockout after
 * it. Reply: per key failures, lock started. */
static const char settle_script[] =
        "local now, win, lock = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
        "local outcome, track, clock = tonumber(ARGV[4]), tonumber(ARGV[5]), "
        "tonumber(ARGV[6])\n"
        "local out = {}\n"
        "for i = 1, #KEYS do\n"
        "  local b = 6 + 10 * (i - 1)\n"
        "  local k, limit, d = KEYS[i], tonumber(ARGV[b + 1]), ARGV[b + 2]\n"
        "  local st, forget = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])\n"
        "  if st == 1 then redis.call('ZREM', k .. ':r', d) end\n"
        "  if st == 2 then redis.call('ZREM', k .. ':p', d) end\n"
        "  local fails, started = 0, 0\n"
        "  if outcome == 0 and now + win > clock then\n"
        "    redis.call('ZREMRANGEBYSCORE', k .. ':f', '-inf', clock - win)\n"
        "    local old = redis.call('ZSCORE', k .. ':f', d)\n"
        "    if not old or tonumber(old) < now then redis.call('ZADD', k .. ':f', now, d) end\n"
        "    local n = redis.call('ZCARD', k .. ':f')\n"
        "    if n > track then redis.call('ZREMRANGEBYRANK', k .. ':f', 0, n - track - 1) end\n"
        "    if redis.call('PTTL', k .. ':f') < now + win - clock then\n"
        "      redis.call('PEXPIRE', k .. ':f', now + win - clock)\n"
        "    end\n"
        "    fails = redis.call('ZCARD', k .. ':f')\n"
        "    local lu = tonumber(redis.call('GET', k .. ':l') or '0')\n"
        "    if limit > 0 and fails >= limit and lu <= now and now + lock > clock then\n"
        "      local ttl = now + lock - clock\n"
        "      redis.call('SET', k .. ':l', now + lock, 'PX', ttl)\n"
        "      redis.call('DEL', k .. ':i')\n"
        "      redis.call('HSET', k .. ':i', 's', ARGV[b + 7], 'c', ARGV[b + 8], 'l', "
        "ARGV[b + 9], 'a', ARGV[b + 10], 'n', fails)\n"
        "      redis.call('PEXPIRE', k .. ':i', ttl)\n"
        "      started = 1\n"
        "      for _, owner in ipairs({ARGV[b + 5], ARGV[b + 6]}) do\n"
        "        if owner ~= '' and owner ~= k then\n"
        "          redis.call('SADD', owner .. ':x', k)\n"
        "          if redis.call('PTTL', owner .. ':x') < ttl then\n"
        "            redis.call('PEXPIRE', owner .. ':x', ttl)\n"
        "          end\n"
        "        end\n"
        "      end\n"
        "    end\n"
        "  elseif outcome == 1 and forget == 1 then\n"
        "    redis.call('DEL', k .. ':f', k .. ':l', k .. ':i')\n"
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
        "  redis.call('DEL', k .. ':f', k .. ':r', k .. ':p', k .. ':i')\n"
        "end\n"
        "for i = 1, #KEYS do\n"
        "  for _, pair in ipairs(redis.call('SMEMBERS', KEYS[i] .. ':x')) do forget(pair) end\n"
        "  redis.call('DEL', KEYS[i] .. ':x')\n"
        "  forget(KEYS[i])\n"
        "end\n"
        "return ended\n";

/* A lockout this node started while Redis was away. KEYS[1]: its name;
 * ARGV: its end, clock, scope, client, login, alias, failures, login name,
 * client name. A longer one already there stays. */
static const char lock_script[] =
        "local k, lu, clock = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])\n"
        "if lu <= clock or tonumber(redis.call('GET', k .. ':l') or '0') >= lu then\n"
        "  return 0\n"
        "end\n"
        "redis.call('SET', k .. ':l', lu, 'PX', lu - clock)\n"
        "redis.call('DEL', k .. ':i')\n"
        "redis.call('HSET', k .. ':i', 's', ARGV[3], 'c', ARGV[4], 'l', ARGV[5], 'a', ARGV[6], "
        "'n', ARGV[7])\n"
        "redis.call('PEXPIRE', k .. ':i', lu - clock)\n"
        "for _, owner in ipairs({ARGV[8], ARGV[9]}) do\n"
        "  if owner ~= '' and owner ~= k then\n"
        "    redis.call('SADD', owner .. ':x', k)\n"
        "    if redis.call('PTTL', owner .. ':x') < lu - clock then\n"
        "      redis.call('PEXPIRE', owner .. ':x', lu - clock)\n"
        "    end\n"
        "  end\n"
        "end\n"
        "return 1\n";

/* KEYS: lockouts' ":i" names found by SCAN; ARGV: clock. Reply: per key
 * scope, client, login, alias, failures, end of the lockout (0: none). */
static const char list_script[] =
        "local clock = tonumber(ARGV[1])\n"
        "local out = {}\n"
        "for i = 1, #KEYS do\n"
        "  local v = redis.call('HMGET', KEYS[i], 's', 'c', 'l', 'a', 'n')\n"
        "  local lu = tonumber(redis.call('GET', string.sub(KEYS[i], 1, -3) .. ':l') or '0')\n"
        "  if lu <= clock or not v[1] then lu = 0 end\n"
        "  out[#out + 1] = v[1] or '0'\n"
        "  out[#out + 1] = v[2] or ''\n"
        "  out[#out + 1] = v[3] or ''\n"
        "  out[#out + 1] = v[4] or ''\n"
        "  out[#out + 1] = v[5] or '0'\n"
        "  out[#out + 1] = tostring(lu)\n"
        "end\n"
        "return out\n";

/* A shared lockout this node has seen (it started it, or Redis refused an
 * attempt with it): for the admin's listing and unlock here. */
struct tr_seen {
	char name[TR_NAME_MAX];
	struct throttle_label label; /* strings owned */
	uint64_t until_ms;
};

/* What was counted here while Redis was away, to send when it is back:
 * a failure (at its time) or the start of a lockout (until its end).
 * Times are the wall clock's (ms), as in Redis. */
struct tr_pending {
	struct throttle_label label; /* strings owned */
	bool lock;
	unsigned limit;
	unsigned failures;
	uint64_t digest;
	uint64_t at_ms; /* a failure's time, or the end of a lockout */
	uint64_t window_ms, lockout_ms;
};

struct redis_store {
	struct shared_redis *sr;
	char *prefix;
	struct throttle_store local;
	unsigned track;
	struct tr_seen seen[TR_SEEN_MAX];
	size_t n_seen;
	struct tr_pending *backlog;
	size_t n_backlog, cap_backlog;
	bool backlog_full_logged;
	char (*unlocks)[TR_NAME_MAX];
	size_t n_unlocks;
	size_t resync_in_flight; /* commands of the resync round */
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

/* The wall clock's ms minus the monotonic clock's: the policy's times are
 * monotonic (immune to clock steps), but every gateway must read the times
 * in Redis alike, and their monotonic clocks count from their own boots. */
static int64_t
tr_wall_offset(void)
{
	struct timespec wall, mono;

	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)wall.tv_sec - (int64_t)mono.tv_sec) * 1000 +
	       ((int64_t)wall.tv_nsec - (int64_t)mono.tv_nsec) / 1000000;
}

/* The wall clock now, in ms. */
static uint64_t
tr_clock_ms(void)
{
	struct timespec wall;

	clock_gettime(CLOCK_REALTIME, &wall);
	return (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
}

static uint64_t
tr_wall(uint64_t mono_ms)
{
	return (uint64_t)((int64_t)mono_ms + tr_wall_offset());
}

static uint64_t
tr_mono(uint64_t wall_ms)
{
	int64_t m = (int64_t)wall_ms - tr_wall_offset();

	return m > 0 ? (uint64_t)m : 0;
}

static void
tr_label_copy(struct throttle_label *to, const struct throttle_label *from)
{
	*to = *from;
	to->client = from->client != NULL ? xstrdup(from->client) : NULL;
	to->login = from->login != NULL ? xstrdup(from->login) : NULL;
	to->alias = from->alias != NULL ? xstrdup(from->alias) : NULL;
}

static void
tr_label_drop(struct throttle_label *l)
{
	free((char *)l->client);
	free((char *)l->login);
	free((char *)l->alias);
	memset(l, 0, sizeof(*l));
}

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
	tr_label_drop(&e->label);
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
	tr_label_copy(&e->label, l);
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
			s->locked_until_ms = tr_mono((uint64_t)r->element[2]->integer);
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
	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)tr_wall(op->now_ms));
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

/* ------------------------------------------------------------- settle */

/* One key of a settle_script call. */
struct tr_key {
	const struct throttle_label *label;
	unsigned limit;
	uint64_t digest;
	int state; /* enum throttle_slot_state before the local settle */
	bool forget;
};

/* Send settle_script over keys[0..n): outcome (0, 1, 2) at when_ms (wall),
 * cb(reply, arg) with the answer. */
static void
tr_settle_send(struct redis_store *st, const struct tr_key *keys, size_t n, uint64_t when_ms,
               uint64_t window_ms, uint64_t lockout_ms, int outcome, shared_redis_cb *cb, void *arg)
{
	char names[THROTTLE_MAX_SLOTS][TR_NAME_MAX], owners[THROTTLE_MAX_SLOTS][2][TR_NAME_MAX];
	char per[THROTTLE_MAX_SLOTS][5][24], nums[6][24], nkeys[24];
	const char *argv[TR_ARGS_MAX];
	size_t len[TR_ARGS_MAX];
	int argc = 0;

	for (size_t i = 0; i < n; i++) {
		const struct throttle_label *l = keys[i].label;
		char scope = tr_scope_char(l);
		tr_name(st, l, scope, names[i]);
		owners[i][0][0] = owners[i][1][0] = '\0';
		if (scope == 'p') {
			tr_name(st, l, 'l', owners[i][0]);
			tr_name(st, l, 'c', owners[i][1]);
		}
		snprintf(per[i][0], sizeof(per[0][0]), "%u", keys[i].limit);
		snprintf(per[i][1], sizeof(per[0][0]), "%llu", (unsigned long long)keys[i].digest);
		snprintf(per[i][2], sizeof(per[0][0]), "%d", keys[i].state);
		snprintf(per[i][3], sizeof(per[0][0]), "%d", keys[i].forget ? 1 : 0);
		snprintf(per[i][4], sizeof(per[0][0]), "%u", l->scope);
	}
	snprintf(nkeys, sizeof(nkeys), "%zu", n);
	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)when_ms);
	snprintf(nums[1], sizeof(nums[1]), "%llu", (unsigned long long)window_ms);
	snprintf(nums[2], sizeof(nums[2]), "%llu", (unsigned long long)lockout_ms);
	snprintf(nums[3], sizeof(nums[3]), "%d", outcome);
	snprintf(nums[4], sizeof(nums[4]), "%u", st->track);
	snprintf(nums[5], sizeof(nums[5]), "%llu", (unsigned long long)tr_clock_ms());
	argv[argc++] = "EVAL";
	argv[argc++] = settle_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < n; i++)
		argv[argc++] = names[i];
	for (int i = 0; i < 6; i++)
		argv[argc++] = nums[i];
	for (size_t i = 0; i < n; i++) {
		const struct throttle_label *l = keys[i].label;
		for (int j = 0; j < 4; j++)
			argv[argc++] = per[i][j];
		argv[argc++] = owners[i][0];
		argv[argc++] = owners[i][1];
		argv[argc++] = per[i][4];
		argv[argc++] = l->client != NULL ? l->client : "";
		argv[argc++] = l->login != NULL ? l->login : "";
		argv[argc++] = l->alias != NULL ? l->alias : "";
	}
	tr_args_len(argc, argv, len);
	shared_redis_command(st->sr, argc, argv, len, cb, arg);
}

/* Keep p (its label's strings are taken) for the resync. */
static void
tr_keep(struct redis_store *st, struct tr_pending *p)
{
	if (st->n_backlog >= TR_BACKLOG_MAX) {
		/* The local counts still hold this node. */
		if (!st->backlog_full_logged)
			log_warn("shared: %d failures wait for redis; dropping further ones",
			         TR_BACKLOG_MAX);
		st->backlog_full_logged = true;
		tr_label_drop(&p->label);
		return;
	}
	if (st->n_backlog == st->cap_backlog) {
		st->cap_backlog = st->cap_backlog > 0 ? st->cap_backlog * 2 : 16;
		st->backlog = xrealloc(st->backlog, st->cap_backlog * sizeof(*st->backlog));
	}
	st->backlog[st->n_backlog++] = *p;
}

/* The failures (and the lockouts they started here) of a settle that did
 * not reach Redis, for the resync. */
static void
tr_keep_settle(struct redis_store *st, const struct throttle_op *op)
{
	if (op->outcome != THROTTLE_FAILURE)
		return;
	for (size_t i = 0; i < op->n_slots; i++) {
		const struct throttle_slot *s = &op->slots[i];
		struct tr_pending p = {
		        .limit = s->limit,
		        .failures = s->failures,
		        .digest = s->digest,
		        .at_ms = tr_wall(op->now_ms),
		        .window_ms = op->window_ms,
		        .lockout_ms = op->lockout_ms,
		};
		if (s->label == NULL)
			continue;
		tr_label_copy(&p.label, s->label);
		tr_keep(st, &p);
		if (s->lock_started) {
			p.lock = true;
			p.at_ms = tr_wall(op->now_ms + op->lockout_ms);
			tr_label_copy(&p.label, s->label);
			tr_keep(st, &p);
		}
	}
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
	} else {
		/* Lost on the way (Redis went away): sent again when back. */
		tr_keep_settle(c->st, op);
	}
	c->cb(c->arg, op);
	free(c);
}

static void
tr_settle(void *state, struct throttle_op *op, throttle_store_cb *cb, void *arg)
{
	struct redis_store *st = state;
	enum throttle_slot_state was[THROTTLE_MAX_SLOTS];
	struct tr_key keys[THROTTLE_MAX_SLOTS];
	struct tr_call *c;

	for (size_t i = 0; i < op->n_slots; i++)
		was[i] = op->slots[i].state;
	/* Counted here too: the fallback's counts are ready when Redis goes. */
	st->local.ops->settle(st->local.state, op, tr_ignore, NULL);
	if (!shared_redis_up(st->sr)) {
		tr_keep_settle(st, op);
		cb(arg, op);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	*c = (struct tr_call){.st = st, .op = op, .cb = cb, .arg = arg};
	for (size_t i = 0; i < op->n_slots; i++) {
		const struct throttle_slot *s = &op->slots[i];
		if (s->label == NULL)
			continue;
		keys[c->n] = (struct tr_key){s->label, s->limit, s->digest, (int)was[i],
		                             s->forget_on_success};
		c->idx[c->n++] = i;
	}
	tr_settle_send(st, keys, c->n, tr_wall(op->now_ms), op->window_ms, op->lockout_ms,
	               op->outcome == THROTTLE_FAILURE   ? 0
	               : op->outcome == THROTTLE_SUCCESS ? 1
	                                                 : 2,
	               tr_on_settle, c);
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

/* ------------------------------------------------------------- unlock */

/* An unlock on its way to Redis: its names, queued again if it is lost. */
struct tr_unlock_call {
	struct redis_store *st;
	throttle_store_unlocked_cb *done; /* or NULL */
	void *done_arg;
	size_t n;
	char names[][TR_NAME_MAX];
};

static void
tr_queue_unlock(struct redis_store *st, const char *name)
{
	for (size_t i = 0; i < st->n_unlocks; i++) {
		if (strcmp(st->unlocks[i], name) == 0)
			return;
	}
	if (st->n_unlocks == TR_UNLOCKS_MAX) {
		log_warn("shared: %d unlocks wait for redis; this one reaches the other "
		         "gateways only when their lockouts end",
		         TR_UNLOCKS_MAX);
		return;
	}
	if (st->unlocks == NULL)
		st->unlocks = xcalloc(TR_UNLOCKS_MAX, sizeof(*st->unlocks));
	snprintf(st->unlocks[st->n_unlocks++], TR_NAME_MAX, "%s", name);
}

static void
tr_on_unlock(const redisReply *r, void *arg)
{
	struct tr_unlock_call *u = arg;

	unsigned ended = 0;

	if (r == NULL) {
		log_warn("shared: the unlock did not reach redis; sent again when it answers");
		for (size_t i = 0; i < u->n; i++)
			tr_queue_unlock(u->st, u->names[i]);
	} else if (r->type == REDIS_REPLY_ERROR) {
		log_warn("shared: the unlock script failed: %.*s", (int)r->len, r->str);
	} else if (r->type == REDIS_REPLY_INTEGER) {
		log_info("shared: unlock ended %lld shared lockouts", r->integer);
		ended = r->integer > 0 ? (unsigned)r->integer : 0;
	}
	if (u->done != NULL)
		u->done(u->done_arg, ended, r == NULL);
	free(u);
}

/* Send the unlock of names[0..n) (at most TR_UNLOCKS_MAX). */
static void
tr_unlock_send(struct redis_store *st, const char (*names)[TR_NAME_MAX], size_t n,
               throttle_store_unlocked_cb *done, void *done_arg)
{
	struct tr_unlock_call *u = xcalloc(1, sizeof(*u) + n * sizeof(u->names[0]));
	const char *argv[3 + TR_UNLOCKS_MAX];
	size_t len[3 + TR_UNLOCKS_MAX];
	char nkeys[24];
	int argc = 0;

	u->st = st;
	u->done = done;
	u->done_arg = done_arg;
	u->n = n;
	memcpy(u->names, names, n * sizeof(u->names[0]));
	snprintf(nkeys, sizeof(nkeys), "%zu", n);
	argv[argc++] = "EVAL";
	argv[argc++] = unlock_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < n; i++)
		argv[argc++] = u->names[i];
	tr_args_len(argc, argv, len);
	shared_redis_command(st->sr, argc, argv, len, tr_on_unlock, u);
}

static unsigned
tr_unlock(void *state, uint64_t now_ms, throttle_store_match_cb *match, void *arg,
          const uint8_t (*forget)[KEYHASH_LEN], const struct throttle_label *forget_labels,
          size_t n_forget, throttle_store_unlocked_cb *done, void *done_arg)
{
	struct redis_store *st = state;
	char names[THROTTLE_MAX_SLOTS][TR_NAME_MAX];
	size_t n = 0, keep = 0;
	unsigned ended = st->local.ops->unlock(st->local.state, now_ms, match, arg, forget,
	                                       forget_labels, n_forget, NULL, NULL);

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
	/* What was counted here for it while Redis was away is forgiven
	 * too: sent afterwards, it would lock again. */
	for (size_t i = 0; i < st->n_backlog; i++) {
		if (match(arg, &st->backlog[i].label))
			tr_label_drop(&st->backlog[i].label);
		else
			st->backlog[keep++] = st->backlog[i];
	}
	st->n_backlog = keep;
	for (size_t i = 0; i < n_forget && n < THROTTLE_MAX_SLOTS; i++) {
		if (forget_labels == NULL)
			break;
		tr_name(st, &forget_labels[i], tr_scope_char(&forget_labels[i]), names[n++]);
	}
	if (n == 0) {
		if (done != NULL)
			done(done_arg, 0, false);
		return ended;
	}
	if (!shared_redis_up(st->sr)) {
		/* Freed here at once; the other gateways when Redis answers. */
		for (size_t i = 0; i < n; i++)
			tr_queue_unlock(st, names[i]);
		if (done != NULL)
			done(done_arg, 0, true);
		return ended;
	}
	tr_unlock_send(st, (const char(*)[TR_NAME_MAX])names, n, done, done_arg);
	return ended;
}

/* ------------------------------------------------------------- resync */

static void tr_resync_round(struct redis_store *st);

/* A failure or a lockout of the backlog on its way. */
struct tr_replay {
	struct redis_store *st;
	struct tr_pending p;
};

static void
tr_on_replay(const redisReply *r, void *arg)
{
	struct tr_replay *rp = arg;
	struct redis_store *st = rp->st;

	if (r == NULL)
		tr_keep(st, &rp->p); /* away again: the next resync */
	else {
		if (r->type == REDIS_REPLY_ERROR)
			log_warn("shared: resync script failed: %.*s", (int)r->len, r->str);
		tr_label_drop(&rp->p.label);
	}
	free(rp);
	if (--st->resync_in_flight == 0)
		tr_resync_round(st);
}

static void
tr_replay_lock(struct redis_store *st, struct tr_replay *rp, uint64_t clock_ms)
{
	const struct throttle_label *l = &rp->p.label;
	char scope = tr_scope_char(l);
	char name[TR_NAME_MAX], owners[2][TR_NAME_MAX], nums[4][24];
	const char *argv[13];
	size_t len[13];
	int argc = 0;

	tr_name(st, l, scope, name);
	owners[0][0] = owners[1][0] = '\0';
	if (scope == 'p') {
		tr_name(st, l, 'l', owners[0]);
		tr_name(st, l, 'c', owners[1]);
	}
	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)rp->p.at_ms);
	snprintf(nums[1], sizeof(nums[1]), "%llu", (unsigned long long)clock_ms);
	snprintf(nums[2], sizeof(nums[2]), "%u", l->scope);
	snprintf(nums[3], sizeof(nums[3]), "%u", rp->p.failures);
	argv[argc++] = "EVAL";
	argv[argc++] = lock_script;
	argv[argc++] = "1";
	argv[argc++] = name;
	argv[argc++] = nums[0];
	argv[argc++] = nums[1];
	argv[argc++] = nums[2];
	argv[argc++] = l->client != NULL ? l->client : "";
	argv[argc++] = l->login != NULL ? l->login : "";
	argv[argc++] = l->alias != NULL ? l->alias : "";
	argv[argc++] = nums[3];
	argv[argc++] = owners[0];
	argv[argc++] = owners[1];
	tr_args_len(argc, argv, len);
	shared_redis_command(st->sr, argc, argv, len, tr_on_replay, rp);
}

/* Send the next TR_RESYNC_BATCH of the backlog, the ones out of their time
 * dropped; the last answer of a round starts the next one. */
static void
tr_resync_round(struct redis_store *st)
{
	uint64_t clock_ms = tr_clock_ms();
	size_t taken = 0;

	if (st->resync_in_flight > 0 || !shared_redis_up(st->sr))
		return;
	while (taken < st->n_backlog && st->resync_in_flight < TR_RESYNC_BATCH) {
		struct tr_pending *p = &st->backlog[taken++];
		struct tr_replay *rp;
		if (p->lock ? p->at_ms <= clock_ms : p->at_ms + p->window_ms <= clock_ms) {
			tr_label_drop(&p->label);
			continue;
		}
		rp = xcalloc(1, sizeof(*rp));
		rp->st = st;
		rp->p = *p;
		st->resync_in_flight++;
		if (p->lock) {
			tr_replay_lock(st, rp, clock_ms);
		} else {
			struct tr_key k = {&rp->p.label, p->limit, p->digest, 0, false};
			tr_settle_send(st, &k, 1, p->at_ms, p->window_ms, p->lockout_ms, 0,
			               tr_on_replay, rp);
		}
	}
	if (taken == 0)
		return;
	memmove(st->backlog, st->backlog + taken, (st->n_backlog - taken) * sizeof(*st->backlog));
	st->n_backlog -= taken;
	if (st->n_backlog == 0)
		st->backlog_full_logged = false;
}

static void
tr_resync(void *state)
{
	struct redis_store *st = state;
	size_t n = st->n_unlocks;

	if (n > 0 || st->n_backlog > 0)
		log_info("shared: sending %zu failures and lockouts and %zu unlocks counted while "
		         "redis was away",
		         st->n_backlog, n);
	/* The unlocks first: Redis runs one connection's commands in order,
	 * and the backlog holds nothing they forgave. */
	st->n_unlocks = 0;
	if (n > 0)
		tr_unlock_send(st, (const char(*)[TR_NAME_MAX])st->unlocks, n, NULL, NULL);
	tr_resync_round(st);
}

/* ------------------------------------------------------------ listing */

/* A lockout of the local store, for the merge with Redis's. */
struct tr_local_lock {
	char name[TR_NAME_MAX];
	struct throttle_label label; /* strings owned */
	uint64_t until_ms;
	bool shown;
};

struct tr_list {
	struct redis_store *st;
	uint64_t now_ms;
	throttle_store_lockout_cb *each;
	throttle_store_list_done_cb *done;
	void *arg;
	struct tr_local_lock *local; /* sorted by name */
	size_t n_local, cap_local;
	char cursor[32];
	char pattern[2 * TR_NAME_MAX];
	unsigned pages;
};

static void
tr_list_collect(void *arg, const struct throttle_label *l, uint64_t until_ms)
{
	struct tr_list *w = arg;
	struct tr_local_lock *e;

	if (w->n_local == w->cap_local) {
		w->cap_local = w->cap_local > 0 ? w->cap_local * 2 : 16;
		w->local = xrealloc(w->local, w->cap_local * sizeof(*w->local));
	}
	e = &w->local[w->n_local++];
	memset(e, 0, sizeof(*e));
	tr_name(w->st, l, tr_scope_char(l), e->name);
	tr_label_copy(&e->label, l);
	e->until_ms = until_ms;
}

static int
tr_local_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tr_local_lock *)a)->name,
	              ((const struct tr_local_lock *)b)->name);
}

/* A lockout started here while Redis was away and not sent yet. */
static bool
tr_backlog_has_lock(const struct redis_store *st, const char *name)
{
	char n[TR_NAME_MAX];

	for (size_t i = 0; i < st->n_backlog; i++) {
		if (!st->backlog[i].lock)
			continue;
		tr_name(st, &st->backlog[i].label, tr_scope_char(&st->backlog[i].label), n);
		if (strcmp(n, name) == 0)
			return true;
	}
	return false;
}

/* Redis answered every page: its lockouts are the cluster's, and a local
 * one it does not have ended elsewhere (an unlock on another gateway)
 * unless it is still on its way there. Otherwise the local ones all count. */
static void
tr_list_finish(struct tr_list *w, bool local_only)
{
	for (size_t i = 0; i < w->n_local; i++) {
		struct tr_local_lock *e = &w->local[i];
		if (!e->shown && e->until_ms > w->now_ms &&
		    (local_only || tr_backlog_has_lock(w->st, e->name)))
			w->each(w->arg, &e->label, e->until_ms);
		tr_label_drop(&e->label);
	}
	w->done(w->arg, local_only);
	free(w->local);
	free(w);
}

static void tr_list_scan(struct tr_list *w);

static void
tr_list_next(struct tr_list *w)
{
	if (strcmp(w->cursor, "0") == 0 || w->pages >= TR_LIST_PAGES_MAX)
		tr_list_finish(w, false);
	else
		tr_list_scan(w);
}

static const char *
tr_reply_str(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? r->str : "";
}

static void
tr_on_list_page(const redisReply *r, void *arg)
{
	struct tr_list *w = arg;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 6 != 0) {
		tr_list_finish(w, true);
		return;
	}
	for (size_t i = 0; i + 6 <= r->elements; i += 6) {
		const redisReply *const *v = (const redisReply *const *)&r->element[i];
		uint64_t until = strtoull(tr_reply_str(v[5]), NULL, 10);
		struct throttle_label l = {0};
		struct tr_local_lock key, *hit;
		if (until == 0 || tr_mono(until) <= w->now_ms)
			continue;
		l.scope = (unsigned)strtoul(tr_reply_str(v[0]), NULL, 10);
		l.client = tr_reply_str(v[1])[0] != '\0' ? tr_reply_str(v[1]) : NULL;
		l.login = tr_reply_str(v[2])[0] != '\0' ? tr_reply_str(v[2]) : NULL;
		l.alias = tr_reply_str(v[3])[0] != '\0' ? tr_reply_str(v[3]) : NULL;
		l.failures = (unsigned)strtoul(tr_reply_str(v[4]), NULL, 10);
		/* The same lockout known here: listed once, as Redis has it. */
		tr_name(w->st, &l, tr_scope_char(&l), key.name);
		hit = w->n_local > 0
		              ? bsearch(&key, w->local, w->n_local, sizeof(*w->local), tr_local_cmp)
		              : NULL;
		if (hit != NULL)
			hit->shown = true;
		if (l.client != NULL && hit != NULL) {
			/* Its address key, as unlock compares it. */
			l.client_is_addr = hit->label.client_is_addr;
			memcpy(l.client_key, hit->label.client_key, sizeof(l.client_key));
		}
		w->each(w->arg, &l, tr_mono(until));
	}
	tr_list_next(w);
}

static void
tr_on_list_scan(const redisReply *r, void *arg)
{
	struct tr_list *w = arg;
	const redisReply *keys;
	const char **argv;
	size_t *len;
	char nkeys[24], clock[24];
	int argc = 0;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
		if (r != NULL)
			log_warn("shared: unexpected answer to SCAN (type %d)", r->type);
		tr_list_finish(w, true);
		return;
	}
	w->pages++;
	snprintf(w->cursor, sizeof(w->cursor), "%s", r->element[0]->str);
	keys = r->element[1];
	if (keys->elements == 0) {
		tr_list_next(w);
		return;
	}
	argv = xcalloc(keys->elements + 4, sizeof(*argv));
	len = xcalloc(keys->elements + 4, sizeof(*len));
	snprintf(nkeys, sizeof(nkeys), "%zu", keys->elements);
	snprintf(clock, sizeof(clock), "%llu", (unsigned long long)tr_wall(w->now_ms));
	argv[argc++] = "EVAL";
	argv[argc++] = list_script;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < keys->elements; i++)
		argv[argc++] = tr_reply_str(keys->element[i]);
	argv[argc++] = clock;
	tr_args_len(argc, argv, len);
	shared_redis_command(w->st->sr, argc, argv, len, tr_on_list_page, w);
	free(argv);
	free(len);
}

static void
tr_list_scan(struct tr_list *w)
{
	const char *argv[6] = {"SCAN", w->cursor, "MATCH", w->pattern, "COUNT", TR_LIST_COUNT};
	size_t len[6];

	tr_args_len(6, argv, len);
	shared_redis_command(w->st->sr, 6, argv, len, tr_on_list_scan, w);
}

/* The cluster's lockouts: the ":i" keys under the prefix, SCANned page by
 * page (each page one script reading them with their ends), merged with
 * this node's own; Redis down: this node's own and the shared ones seen. */
static void
tr_list(void *state, uint64_t now_ms, throttle_store_lockout_cb *each,
        throttle_store_list_done_cb *done, void *arg)
{
	struct redis_store *st = state;
	struct tr_list *w;
	size_t off = 0;

	if (!shared_redis_up(st->sr)) {
		tr_lockouts(st, now_ms, each, arg);
		done(arg, true);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	*w = (struct tr_list){.st = st, .now_ms = now_ms, .each = each, .done = done, .arg = arg};
	snprintf(w->cursor, sizeof(w->cursor), "0");
	st->local.ops->lockouts(st->local.state, now_ms, tr_list_collect, w);
	if (w->n_local > 1)
		qsort(w->local, w->n_local, sizeof(*w->local), tr_local_cmp);
	/* The prefix is the admin's text: its glob characters are literal. */
	for (const char *p = st->prefix; *p != '\0' && off + 16 < sizeof(w->pattern); p++) {
		if (strchr("*?[]\\", *p) != NULL)
			w->pattern[off++] = '\\';
		w->pattern[off++] = *p;
	}
	snprintf(w->pattern + off, sizeof(w->pattern) - off, "bf:*:i");
	tr_list_scan(w);
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
	for (size_t i = 0; i < st->n_backlog; i++)
		tr_label_drop(&st->backlog[i].label);
	free(st->backlog);
	free(st->unlocks);
	free(st->prefix);
	free(st);
}

static const struct throttle_store_ops redis_ops = {
        .name = "redis",
        .reserve = tr_reserve,
        .settle = tr_settle,
        .lockouts = tr_lockouts,
        .unlock = tr_unlock,
        .list = tr_list,
        .resync = tr_resync,
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
