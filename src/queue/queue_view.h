/* SPDX-License-Identifier: ISC */
/*
 * queue_view.h - how `authrelay queue` shows messages: the list, one
 * message in detail, and the summary by destination domain and age (as
 * Postfix's qshape), each as text or as JSON. The queue process renders
 * them for its control socket (queue_ctl.c); the command line renders the
 * list itself from a stopped gateway's spool (queue_cmd.c).
 */
#ifndef AUTHRELAY_QUEUE_VIEW_H
#define AUTHRELAY_QUEUE_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/common.h"

struct evbuffer;
struct qmsg;

/* The age columns of the summary, in minutes: a message younger than
 * QUEUE_VIEW_AGES[i] minutes (and not younger than the one before) counts
 * in column i; older than the last, in the "+" column after it. */
#define QUEUE_VIEW_N_AGES 9
extern const unsigned queue_view_ages[QUEUE_VIEW_N_AGES];

/* "deferred", "hold", ... as the list shows a message's state. */
const char *queue_view_where(const struct qmsg *m);

/* The list: one line per message, "ID status=... size=... arrival=...
 * from=<...> nrcpt=N pending=N attempts=N next=...", or as JSON
 * {"messages":[{...}, ...]}. all (n entries) is sorted by ID in place. */
void queue_view_list(struct evbuffer *out, struct qmsg **all, size_t n, bool json);
/* One message: its list line, "broken reason=..." when unreadable, then a
 * line per recipient (status, DSN code, relay, last reply); or one JSON
 * object with a "recipients" array. */
void queue_view_show(struct evbuffer *out, const struct qmsg *m, bool json);
/* Messages with a recipient still to go, per destination domain and age at
 * now (unix seconds): a message counts once per domain. Text as qshape
 * prints it, or JSON {"ages":[...],"total":{...},"domains":[...]}. */
void queue_view_summary(struct evbuffer *out, struct qmsg *const *all, size_t n, int64_t now,
                        bool json);

#endif
