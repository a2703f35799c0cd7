/* SPDX-License-Identifier: ISC */
/*
 * forward_pool.c - the forwarding source's sessions (forward_pool.h).
 *
 * Each session has a slot here: the count against max_sessions, whether it
 * was made ahead of need and not used yet (counted against preconnect),
 * and while it is ready and unused, its place in the ready list with the
 * time it got ready. A slot goes when its session is freed (the session's
 * closed callback), whoever closed it.
 *
 * Pre-connecting runs from an event on the next loop turn (fp_top_up_cb):
 * after a session is freed or taken, after a reload, and every
 * FP_CHECK_S seconds. After a pre-connect failure it waits FP_CHECK_S
 * seconds, whatever failure_memory says: no reconnect storm.
 */
#include "forward_pool.h"
#include "forward_upstream.h"
#include "../lib/log.h"

#include <event2/event.h>
#include <stdlib.h>
#include <sys/queue.h>

/* A ready pre-connected session older than this is replaced: servers drop
 * idle clients after a few minutes (RFC 5321 4.5.3.2.7 suggests 5). */
#define FP_MAX_IDLE_MS 60000
#define FP_CHECK_S 10

struct fp_slot {
	LIST_ENTRY(fp_slot) entry;        /* pool->slots */
	TAILQ_ENTRY(fp_slot) ready_entry; /* pool->ready while in_ready */
	struct forward_pool *pool;
	struct forward_session *s;
	bool pooled; /* made ahead of need, not used yet (in n_pooled) */
	bool in_ready;
	int64_t ready_at;
};

struct forward_pool {
	const struct forward_session_env *env;
	struct forward_pool_owner owner;
	LIST_HEAD(, fp_slot) slots;
	unsigned n_sessions;
	TAILQ_HEAD(, fp_slot) ready;
	unsigned n_pooled; /* pooled sessions: connecting or ready */
	struct event *top_up_ev;
	struct event *timer;
	bool started;
	int64_t retry_at; /* no pre-connecting before (after a failure) */
};

/* No longer a ready session of the pool: handed to a login, or closing. */
static void
fp_unpool(struct fp_slot *slot)
{
	struct forward_pool *pool = slot->pool;

	if (slot->in_ready) {
		TAILQ_REMOVE(&pool->ready, slot, ready_entry);
		slot->in_ready = false;
	}
	if (slot->pooled) {
		slot->pooled = false;
		pool->n_pooled--;
	}
}

static void
fp_close(struct fp_slot *slot, bool polite)
{
	fp_unpool(slot);
	forward_session_close(slot->s, polite);
}

static void
fp_closed_cb(void *arg)
{
	struct fp_slot *slot = arg;
	struct forward_pool *pool = slot->pool;

	fp_unpool(slot);
	LIST_REMOVE(slot, entry);
	pool->n_sessions--;
	free(slot);
	pool->owner.room(pool->owner.arg);
	forward_pool_kick(pool);
}

static struct fp_slot *
fp_slot_of(struct forward_pool *pool, const struct forward_session *s)
{
	struct fp_slot *slot;

	LIST_FOREACH(slot, &pool->slots, entry)
	{
		if (slot->s == s)
			return slot;
	}
	fatal("forward_pool: a session without a slot");
}

/* Events of the sessions made ahead of need. */
static void
fp_session_cb(struct forward_session *s, enum forward_session_event event,
              const struct forward_session_result *r, void *arg)
{
	struct forward_pool *pool = arg;
	struct fp_slot *slot;

	if (event != FORWARD_SESSION_READY) {
		/* FAILED: no AUTH goes on these. The session is closing. */
		pool->retry_at = forward_upstream_now() + FP_CHECK_S * 1000;
		return;
	}
	slot = fp_slot_of(pool, s);
	slot->ready_at = forward_upstream_now();
	slot->in_ready = true;
	TAILQ_INSERT_TAIL(&pool->ready, slot, ready_entry);
	log_debug("auth: forward upstream=%s pre-connected session ready (%u pooled)",
	          forward_session_upstream(s)->name, pool->n_pooled);
	pool->owner.room(pool->owner.arg);
}

/* A new session to up, or NULL if it could not even start. */
static struct fp_slot *
fp_open(struct forward_pool *pool, struct fwd_upstream *up, bool preconnect, forward_session_cb *cb,
        void *arg)
{
	struct fp_slot *slot = xcalloc(1, sizeof(*slot));

	slot->pool = pool;
	slot->s = forward_session_new(pool->env, up, preconnect, fp_closed_cb, slot, cb, arg);
	if (slot->s == NULL) {
		free(slot);
		if (preconnect)
			pool->retry_at = forward_upstream_now() + FP_CHECK_S * 1000;
		return NULL;
	}
	LIST_INSERT_HEAD(&pool->slots, slot, entry);
	pool->n_sessions++;
	if (preconnect) {
		slot->pooled = true;
		pool->n_pooled++;
	}
	return slot;
}

/* Keep `preconnect` sessions ready to the first healthy upstream. */
static void
fp_top_up_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward_pool *pool = arg;
	const struct fwd_settings *set = pool->env->set;
	struct fwd_upstream *up = forward_upstream_first_healthy(set);
	struct fp_slot *slot, *next;
	int64_t now = forward_upstream_now();

	/* Old ready sessions, and those to an upstream no longer first. */
	for (slot = TAILQ_FIRST(&pool->ready); slot != NULL; slot = next) {
		next = TAILQ_NEXT(slot, ready_entry);
		if (forward_session_upstream(slot->s) != up ||
		    now - slot->ready_at > FP_MAX_IDLE_MS || !forward_session_idle(slot->s))
			fp_close(slot, true);
	}
	if (up == NULL || pool->owner.waiting(pool->owner.arg) || now < pool->retry_at)
		return;
	while (pool->n_pooled < set->preconnect && pool->n_sessions < set->max_sessions) {
		if (fp_open(pool, up, true, fp_session_cb, pool) == NULL)
			break;
		if (forward_upstream_is_down(up, forward_upstream_now()))
			break;
	}
}

static void
fp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward_pool *pool = arg;
	struct timeval tv = {FP_CHECK_S, 0};

	fp_top_up_cb(-1, 0, pool);
	evtimer_add(pool->timer, &tv);
}

/* A ready pre-connected session to up, or NULL. Dead ones are dropped. */
static struct fp_slot *
fp_take(struct forward_pool *pool, struct fwd_upstream *up)
{
	struct fp_slot *slot, *next;

	for (slot = TAILQ_FIRST(&pool->ready); slot != NULL; slot = next) {
		next = TAILQ_NEXT(slot, ready_entry);
		if (!forward_session_idle(slot->s)) {
			fp_close(slot, false);
			continue;
		}
		if (forward_session_upstream(slot->s) != up)
			continue;
		fp_unpool(slot);
		forward_pool_kick(pool); /* top up */
		return slot;
	}
	return NULL;
}

enum forward_pool_got
forward_pool_get(struct forward_pool *pool, struct fwd_upstream *up, bool fresh,
                 forward_session_cb *cb, void *arg, struct forward_session **s_r)
{
	unsigned max = pool->env->set->max_sessions;
	struct fp_slot *slot;

	if (!fresh && (slot = fp_take(pool, up)) != NULL) {
		forward_session_take(slot->s, cb, arg);
		*s_r = slot->s;
		return FORWARD_POOL_READY;
	}
	/* Make room: close a ready session that waits for a login. */
	if (pool->n_sessions >= max && !TAILQ_EMPTY(&pool->ready))
		fp_close(TAILQ_FIRST(&pool->ready), false);
	if (pool->n_sessions >= max)
		return FORWARD_POOL_FULL;
	if ((slot = fp_open(pool, up, false, cb, arg)) == NULL)
		return FORWARD_POOL_FAILED;
	*s_r = slot->s;
	return FORWARD_POOL_OPENING;
}

bool
forward_pool_has_room(const struct forward_pool *pool)
{
	return pool->n_sessions < pool->env->set->max_sessions || !TAILQ_EMPTY(&pool->ready);
}

struct forward_pool *
forward_pool_new(const struct forward_session_env *env, const struct forward_pool_owner *owner)
{
	struct forward_pool *pool = xcalloc(1, sizeof(*pool));

	pool->env = env;
	pool->owner = *owner;
	LIST_INIT(&pool->slots);
	TAILQ_INIT(&pool->ready);
	pool->top_up_ev = event_new(env->base, -1, 0, fp_top_up_cb, pool);
	pool->timer = evtimer_new(env->base, fp_timer_cb, pool);
	return pool;
}

void
forward_pool_free(struct forward_pool *pool)
{
	struct fp_slot *slot;

	if (pool == NULL)
		return;
	while ((slot = LIST_FIRST(&pool->slots)) != NULL) {
		LIST_REMOVE(slot, entry);
		forward_session_destroy(slot->s);
		free(slot);
	}
	event_free(pool->top_up_ev);
	event_free(pool->timer);
	free(pool);
}

void
forward_pool_start(struct forward_pool *pool)
{
	struct timeval tv = {FP_CHECK_S, 0};

	pool->started = true;
	if (pool->env->set->preconnect == 0)
		return;
	event_active(pool->top_up_ev, EV_TIMEOUT, 1);
	evtimer_add(pool->timer, &tv);
}

void
forward_pool_kick(struct forward_pool *pool)
{
	if (pool->started && pool->env->set->preconnect > 0)
		event_active(pool->top_up_ev, EV_TIMEOUT, 1);
}
