/* SPDX-License-Identifier: ISC */
/*
 * wbatch.h - write a socket bufferevent's output once per loop round.
 *
 * A socket bufferevent writes by registering EV_WRITE (epoll_ctl), waiting a
 * loop round for writability, writing, and unregistering (epoll_ctl again).
 * For the auth protocol's small frames on a UNIX socket that is practically
 * never full, that is two system calls and a round of latency per burst.
 * With a wbatch attached, whatever is added to the output during a round is
 * written directly, in one writev, by an event that runs after the round's
 * callbacks. Only if the socket cannot take it all does the bufferevent's
 * own EV_WRITE machinery take over, so its write callback (watermarks) and
 * its error reporting keep working.
 */
#ifndef AUTHRELAY_WBATCH_H
#define AUTHRELAY_WBATCH_H

struct bufferevent;
struct wbatch;

/* Attach to bev (a socket bufferevent, connected). Leaves EV_WRITE disabled
 * until a write falls behind. bev's write callback, if any, is also called
 * after a direct write, as the last thing the flush does: it may free bev
 * (after wbatch_free()). */
struct wbatch *wbatch_new(struct bufferevent *bev);
/* Detach; call before freeing bev. Output not yet written is left in bev. */
void wbatch_free(struct wbatch *);

#endif
