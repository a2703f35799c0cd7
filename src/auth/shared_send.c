/* SPDX-License-Identifier: ISC */
/*
 * shared_send.c - sending counts in Redis (see shared_send.h).
 *
 * The scripts mirror send_limit.c's ring: a bucket belongs to a 5-minute
 * slot; counting in a bucket whose slot is older starts it afresh, and a
 * report for a slot older than the bucket's (a late resync) is dropped,
 * as it no longer counts in the hour anyway.
 */
#include "shared_send.h"
#include "shared_redis.h"
#include "../lib/log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define SS_SLOT_S 300
#define SS_BUCKETS 12
#define SS_EXPIRE_S (SS_BUCKETS * SS_SLOT_S + SS_SLOT_S)
#define SS_BACKLOG_MAX 10000
#define SS_KEY_MAX 256

static const char record_script[] =
        "local slot = tonumber(ARGV[1])\n"
        "local i = slot % 12\n"
        "local s = tonumber(redis.call('HGET', KEYS[1], 's' .. i) or '-1')\n"
        "if s > slot then return 0 end\n"
        "if s < slot then redis.call('HSET', KEYS[1], 's' .. i, slot, 'm' .. i, 0, 'r' .. i, 0) "
        "end\n"
        "redis.call('HINCRBY', KEYS[1], 'm' .. i, ARGV[2])\n"
        "redis.call('HINCRBY', KEYS[1], 'r' .. i, ARGV[3])\n"
        "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
        "return 1\n";

static const char counts_script[] =
        "local now = tonumber(ARGV[1])\n"
        "local m, r = 0, 0\n"
        "for i = 0, 11 do\n"
        "  local v = redis.call('HMGET', KEYS[1], 's' .. i, 'm' .. i, 'r' .. i)\n"
        "  local s = tonumber(v[1] or '-1')\n"
        "  if s >= 0 and s + 12 > now then\n"
        "    m = m + tonumber(v[2] or '0')\n"
        "    r = r + tonumber(v[3] or '0')\n"
        "  end\n"
        "end\n"
        "return {m, r}\n";

struct ss_report {
	char key[SS_KEY_MAX];
	uint64_t slot;
	unsigned rcpts;
};

struct shared_send {
	struct shared_redis *sr;
	char *prefix;
	struct ss_report *backlog;
	size_t n_backlog;
	bool backlog_full_logged;
};

struct ss_query {
	shared_send_cb *cb;
	void *arg;
};

struct shared_send *
shared_send_new(struct shared_redis *sr, const char *key_prefix)
{
	struct shared_send *ss = xcalloc(1, sizeof(*ss));

	ss->sr = sr;
	ss->prefix = xstrdup(key_prefix != NULL ? key_prefix : "");
	return ss;
}

void
shared_send_free(struct shared_send *ss)
{
	if (ss == NULL)
		return;
	free(ss->backlog);
	free(ss->prefix);
	free(ss);
}

size_t
shared_send_backlog(const struct shared_send *ss)
{
	return ss != NULL ? ss->n_backlog : 0;
}

/* PREFIX "send:" and 32 hex digits of SHA-256(lower-cased user). */
static void
ss_key(const struct shared_send *ss, const char *user, char key[SS_KEY_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	size_t n = strlen(user);
	char *lower = xmalloc(n + 1);
	int off;

	for (size_t i = 0; i < n; i++)
		lower[i] = (char)tolower((unsigned char)user[i]);
	lower[n] = '\0';
	if (EVP_Digest(lower, n, md, &mdlen, EVP_sha256(), NULL) != 1)
		fatal("shared: SHA-256 failed");
	free(lower);
	off = snprintf(key, SS_KEY_MAX, "%.200ssend:", ss->prefix);
	for (unsigned i = 0; i < 16; i++)
		off += snprintf(key + off, (size_t)(SS_KEY_MAX - off), "%02x", md[i]);
}

static void
ss_on_counts(const redisReply *reply, void *arg)
{
	struct ss_query *q = arg;
	bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	          reply->element[0]->type == REDIS_REPLY_INTEGER &&
	          reply->element[1]->type == REDIS_REPLY_INTEGER;

	if (reply != NULL && !ok)
		log_warn("shared: unexpected answer to the counts script (type %d)", reply->type);
	if (ok)
		q->cb(true, (unsigned)reply->element[0]->integer,
		      (unsigned)reply->element[1]->integer, q->arg);
	else
		q->cb(false, 0, 0, q->arg);
	free(q);
}

void
shared_send_counts(struct shared_send *ss, const char *user, uint64_t now_s, shared_send_cb *cb,
                   void *arg)
{
	struct ss_query *q = xcalloc(1, sizeof(*q));
	char key[SS_KEY_MAX], slot[24];
	const char *argv[5] = {"EVAL", counts_script, "1", key, slot};
	size_t len[5];

	q->cb = cb;
	q->arg = arg;
	ss_key(ss, user, key);
	snprintf(slot, sizeof(slot), "%llu", (unsigned long long)(now_s / SS_SLOT_S));
	for (int i = 0; i < 5; i++)
		len[i] = strlen(argv[i]);
	shared_redis_command(ss->sr, 5, argv, len, ss_on_counts, q);
}

struct ss_record {
	struct shared_send *ss;
	struct ss_report rep;
};

static void ss_keep(struct shared_send *ss, const struct ss_report *rep);

static void
ss_on_record(const redisReply *reply, void *arg)
{
	struct ss_record *r = arg;

	/* Not counted in Redis: kept for the resync. */
	if (reply == NULL)
		ss_keep(r->ss, &r->rep);
	else if (reply->type == REDIS_REPLY_ERROR)
		log_warn("shared: the record script failed: %.*s", (int)reply->len, reply->str);
	free(r);
}

static void
ss_send(struct shared_send *ss, const struct ss_report *rep)
{
	struct ss_record *r = xcalloc(1, sizeof(*r));
	char slot[24], rcpts[16], expire[16];
	const char *argv[8] = {"EVAL", record_script, "1", r->rep.key, slot, "1", rcpts, expire};
	size_t len[8];

	r->ss = ss;
	r->rep = *rep;
	snprintf(slot, sizeof(slot), "%llu", (unsigned long long)rep->slot);
	snprintf(rcpts, sizeof(rcpts), "%u", rep->rcpts);
	snprintf(expire, sizeof(expire), "%u", SS_EXPIRE_S);
	for (int i = 0; i < 8; i++)
		len[i] = strlen(argv[i]);
	shared_redis_command(ss->sr, 8, argv, len, ss_on_record, r);
}

static void
ss_keep(struct shared_send *ss, const struct ss_report *rep)
{
	if (ss->n_backlog >= SS_BACKLOG_MAX) {
		/* The local count still holds this node to the limit. */
		if (!ss->backlog_full_logged)
			log_warn("shared: %d sending reports wait for redis; dropping further ones",
			         SS_BACKLOG_MAX);
		ss->backlog_full_logged = true;
		return;
	}
	ss->backlog = xrealloc(ss->backlog, (ss->n_backlog + 1) * sizeof(*ss->backlog));
	ss->backlog[ss->n_backlog++] = *rep;
}

void
shared_send_record(struct shared_send *ss, const char *user, unsigned rcpts, uint64_t now_s)
{
	struct ss_report rep = {.slot = now_s / SS_SLOT_S, .rcpts = rcpts};

	ss_key(ss, user, rep.key);
	if (!shared_redis_up(ss->sr)) {
		ss_keep(ss, &rep);
		return;
	}
	ss_send(ss, &rep);
}

void
shared_send_resync(struct shared_send *ss)
{
	struct ss_report *list = ss->backlog;
	size_t n = ss->n_backlog;

	ss->backlog = NULL;
	ss->n_backlog = 0;
	ss->backlog_full_logged = false;
	if (n > 0)
		log_info("shared: sending %zu sending reports counted while redis was away", n);
	for (size_t i = 0; i < n; i++)
		ss_send(ss, &list[i]);
	free(list);
}
