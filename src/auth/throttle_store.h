/* SPDX-License-Identifier: ISC */
/*
 * throttle_store.h - where the brute-force throttle keeps its counters: the
 * small interface between the policy (auth_throttle.c: which keys an attempt
 * touches, their limits, what a lockout means, the delays and log lines) and
 * the state itself. Today the state lives in the auth process's memory
 * (throttle_store_local.c). A store shared by several gateways (Redis)
 * implements the same two operations, each one atomic step over every key
 * of an attempt (one Lua script), and may answer later: the callback is how
 * both kinds answer.
 *
 * Per key (a keyed digest naming a client, a login or a pair) a store keeps:
 *   - the distinct failures of the window, as (password digest, last seen):
 *     one wrong password retried is one failure;
 *   - the attempts in flight: the password digests of attempts reserved and
 *     not yet settled;
 *   - the end of a lockout.
 *
 * reserve: an attempt may reach a source only once every limited key of it
 * has room: failures plus attempts in flight below the limit (after a
 * lockout has ended with failures still in the window: one attempt at a
 * time). That is what keeps parallel guesses under the limits: the room is
 * taken before the password is checked, not when the check has failed. A
 * password that already failed in the window takes no room (it is no new
 * guess); a password already in flight under a key waits for that attempt,
 * so that the same wrong password sent twenty times at once reaches the
 * directory once. The answer is all or nothing: every slot reserved
 * (ADMIT), or none (LOCKED, naming the first locked slot; WAIT).
 *
 * settle: the end of an attempt. FAILURE turns each reservation into a
 * failure (a repeat only refreshes its time) and starts a lockout where the
 * limit is reached; SUCCESS and RELEASE give the room back, SUCCESS also
 * clearing the failures of slots marked forget_on_success (the pair: its
 * owner got in). Slots with limit 0 are never reserved nor refused, but a
 * FAILURE still counts them (for the growing delay).
 */
#ifndef AUTHRELAY_THROTTLE_STORE_H
#define AUTHRELAY_THROTTLE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/common.h"
#include "../lib/keyhash.h"

/* client, pair, login; and the pair and login of the canonical identity */
#define THROTTLE_MAX_SLOTS 5

/* Who a key is, kept with a lockout from its start for the admin's listing
 * and unlock (the keys are digests). Strings are copied by the store. */
struct throttle_label {
	unsigned scope;         /* the policy's (enum auth_throttle_scope) */
	const char *client;     /* as the worker sent it; NULL for a login's key */
	const char *login;      /* normalized login or identity; NULL for a client's */
	const char *alias;      /* an identity's: the login that locked it; or NULL */
	uint8_t client_key[16]; /* client as an address (net_client_key) */
	bool client_is_addr;
	unsigned failures; /* set by the store: distinct failures at the start */
};

/* The admin's walks (synchronous: not on a login's path). */
typedef void throttle_store_lockout_cb(void *arg, const struct throttle_label *,
                                       uint64_t locked_until_ms);
typedef bool throttle_store_match_cb(void *arg, const struct throttle_label *);
/* The end of an asynchronous listing; local_only: the shared store did not
 * answer, what was listed is this node's own. */
typedef void throttle_store_list_done_cb(void *arg, bool local_only);
/* The shared part of an unlock: how many lockouts it ended there;
 * local_only: it could not be sent yet (it will be, when Redis answers). */
typedef void throttle_store_unlocked_cb(void *arg, unsigned shared_ended, bool local_only);

enum throttle_slot_state {
	THROTTLE_SLOT_NONE = 0, /* not reserved (limit 0, or not yet asked) */
	THROTTLE_SLOT_RESERVED, /* a new password: takes room until settled */
	THROTTLE_SLOT_REPEAT,   /* a password that failed in the window: no room taken */
};

struct throttle_slot {
	uint8_t key[KEYHASH_LEN];
	uint64_t digest;        /* which password: a keyed digest of (login, password) */
	unsigned limit;         /* distinct failures that lock the key out; 0: never */
	bool forget_on_success; /* SUCCESS clears the key's failures */
	const struct throttle_label *label; /* settle: kept if a lockout starts */
	/* Filled by the store. */
	enum throttle_slot_state state;
	unsigned failures;        /* settle: distinct failures in the window after it */
	bool lock_started;        /* settle: this attempt started a lockout */
	uint64_t locked_until_ms; /* reserve LOCKED: when the lockout ends */
};

enum throttle_verdict {
	THROTTLE_ADMIT,  /* every limited slot from `from` on is reserved */
	THROTTLE_LOCKED, /* slots[locked_slot] is locked out; nothing reserved */
	THROTTLE_WAIT,   /* no room now (attempts in flight); nothing reserved */
};

enum throttle_outcome {
	THROTTLE_FAILURE, /* a counted failure: wrong password, unknown user */
	THROTTLE_SUCCESS,
	THROTTLE_RELEASE, /* neither: a tempfail, an answer that is nobody's fault */
};

/* One attempt's keys and what the store said. Owned by the caller, which
 * keeps it alive and unchanged until the callback. */
struct throttle_op {
	struct throttle_slot slots[THROTTLE_MAX_SLOTS];
	size_t n_slots;
	uint64_t now_ms;
	uint64_t window_ms;            /* failures older than this are forgotten */
	uint64_t lockout_ms;           /* length of a lockout */
	enum throttle_outcome outcome; /* settle: in */
	enum throttle_verdict verdict; /* reserve: out */
	size_t locked_slot;            /* reserve LOCKED: out */
};

/* The store's answer; runs exactly once, possibly before the call returns. */
typedef void throttle_store_cb(void *arg, struct throttle_op *op);

struct throttle_store_ops {
	const char *name;
	/* Reserve slots[from .. n_slots) (the ones before are this attempt's
	 * earlier reservation, left alone). */
	void (*reserve)(void *state, struct throttle_op *op, size_t from, throttle_store_cb *cb,
	                void *arg);
	/* Settle every slot not in state NONE with op->outcome; the slots are
	 * back in state NONE afterwards. */
	void (*settle)(void *state, struct throttle_op *op, throttle_store_cb *cb, void *arg);
	/* Every lockout in force at now_ms, with its label. */
	void (*lockouts)(void *state, uint64_t now_ms, throttle_store_lockout_cb *cb, void *arg);
	/* End every lockout in force whose label match() accepts, and forget
	 * the n_forget keys (their counts), named by their digests and their
	 * labels (a shared store names keys by label: the digests are this
	 * process's); returns the lockouts ended here. done (if not NULL)
	 * runs once with the shared part's answer, possibly before this
	 * returns. */
	unsigned (*unlock)(void *state, uint64_t now_ms, throttle_store_match_cb *match, void *arg,
	                   const uint8_t (*forget)[KEYHASH_LEN],
	                   const struct throttle_label *forget_labels, size_t n_forget,
	                   throttle_store_unlocked_cb *done, void *done_arg);
	/* Every lockout in force in the whole cluster (a shared store asks it
	 * in the background; NULL: lockouts() is the whole story): each runs
	 * once per lockout, then done once (local_only when the shared part
	 * did not answer all of it), possibly before this returns. */
	void (*list)(void *state, uint64_t now_ms, throttle_store_lockout_cb *each,
	             throttle_store_list_done_cb *done, void *arg);
	/* The shared store answers again: send what was counted and unlocked
	 * here meanwhile. NULL for a store that shares nothing. */
	void (*resync)(void *state);
	/* A reload: at most max_keys keys (least recently used go first) and
	 * track distinct failures per key, keeping every lockout, label and
	 * attempt in flight and the newest failures. */
	void (*resize)(void *state, size_t max_keys, unsigned track);
	/* Keys tracked (tests, status). */
	size_t (*count)(void *state);
	void (*free)(void *state);
};

struct throttle_store {
	const struct throttle_store_ops *ops;
	void *state;
};

/* The auth process's own memory: at most max_keys keys, the least recently
 * touched evicted first; each keeps at most track failures. */
struct throttle_store throttle_store_local_new(size_t max_keys, unsigned track);

struct shared_redis;
/* Shared by the gateways through Redis (throttle_store_redis.c): the keys
 * under key_prefix, each keeping at most track failures; local (which the
 * new store owns) answers while Redis is down or slow, and counts every
 * settled attempt meanwhile; resync() sends those failures and the unlocks
 * made meanwhile once Redis is back. */
struct throttle_store throttle_store_redis_new(struct shared_redis *sr, const char *key_prefix,
                                               struct throttle_store local, unsigned track);

#endif
