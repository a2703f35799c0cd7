/* SPDX-License-Identifier: ISC */
/*
 * test_wbatch.c - lib/wbatch on a socket bufferevent over a UNIX socketpair:
 * what a round adds leaves together after the round's callbacks, in one write
 * and with no EV_WRITE registration; a backlog hands over to the bufferevent
 * and arrives intact; the write and event callbacks still fire; freeing the
 * wbatch with a flush due writes nothing more.
 *
 * A "round" is one event_base_loop(EVLOOP_NONBLOCK): it never blocks, so a
 * broken flush fails an assertion instead of hanging the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/wbatch.h"

/* Rounds a test may run while waiting for a condition. */
#define MAX_ROUNDS 100000
#define BACKLOG_LEN (1024 * 1024)

struct fx {
	struct event_base *base;
	struct bufferevent *bev;
	struct wbatch *wb;
	int peer;
	/* Counted by the bufferevent callbacks. */
	unsigned write_cbs;
	size_t out_len_in_write_cb;
	const char *refill; /* added once by the write callback */
	unsigned event_cbs;
	short events;
	int event_errno;
	/* Backlog test data, freed by the teardown even when a test fails. */
	unsigned char *want, *got;
};

static void
fx_on_write(struct bufferevent *bev, void *arg)
{
	struct fx *f = arg;

	f->write_cbs++;
	f->out_len_in_write_cb = evbuffer_get_length(bufferevent_get_output(bev));
	if (f->refill != NULL) {
		const char *s = f->refill;
		f->refill = NULL;
		assert_int_equal(evbuffer_add(bufferevent_get_output(bev), s, strlen(s)), 0);
	}
}

static void
fx_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct fx *f = arg;

	f->event_cbs++;
	f->events |= what;
	f->event_errno = EVUTIL_SOCKET_ERROR();
}

/* type: SOCK_STREAM, or SOCK_SEQPACKET to count the writes at the peer.
 * with_wbatch false leaves the wbatch to the test. */
static struct fx *
fx_new(int type, bool with_wbatch)
{
	struct fx *f = calloc(1, sizeof(*f));
	int sv[2];

	assert_non_null(f);
	f->peer = -1;
	f->base = event_base_new();
	assert_non_null(f->base);
	assert_int_equal(socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	f->peer = sv[1];
	f->bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f->bev);
	bufferevent_setcb(f->bev, NULL, fx_on_write, fx_on_event, f);
	if (with_wbatch) {
		f->wb = wbatch_new(f->bev);
		assert_non_null(f->wb);
	}
	return f;
}

static int
setup_stream(void **state)
{
	*state = fx_new(SOCK_STREAM, true);
	return 0;
}

static int
setup_seqpacket(void **state)
{
	*state = fx_new(SOCK_SEQPACKET, true);
	return 0;
}

static int
setup_bare(void **state)
{
	*state = fx_new(SOCK_STREAM, false);
	return 0;
}

/* Runs after a failed test too, so LeakSanitizer only reports real leaks. */
static int
teardown(void **state)
{
	struct fx *f = *state;

	wbatch_free(f->wb);
	bufferevent_free(f->bev);
	if (f->peer >= 0)
		close(f->peer);
	event_base_free(f->base);
	free(f->want);
	free(f->got);
	free(f);
	return 0;
}

static void
round_once(struct fx *f)
{
	assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
}

static size_t
out_len(const struct fx *f)
{
	return evbuffer_get_length(bufferevent_get_output(f->bev));
}

static bool
write_enabled(const struct fx *f)
{
	return (bufferevent_get_enabled(f->bev) & EV_WRITE) != 0;
}

/* Events added (registered with epoll) or active, not counting libevent's
 * own. Between rounds nothing is active, so this is the registered ones. */
static int
registered(const struct fx *f)
{
	return event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED);
}

static void
add_str(struct fx *f, const char *s)
{
	assert_int_equal(evbuffer_add(bufferevent_get_output(f->bev), s, strlen(s)), 0);
}

/* Read what the peer has now, up to cap bytes; never blocks. */
static size_t
peer_read(struct fx *f, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(f->peer, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
			break;
		}
		assert_true(n > 0);
		got += (size_t)n;
	}
	return got;
}

static void
assert_peer_empty(struct fx *f)
{
	char c;

	errno = 0;
	assert_int_equal(read(f->peer, &c, 1), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void
assert_peer_got(struct fx *f, const char *want)
{
	char buf[256];
	size_t n = peer_read(f, buf, sizeof(buf));

	assert_true(strlen(want) < sizeof(buf));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, n);
}

static void
assert_direct_mode(struct fx *f)
{
	assert_false(write_enabled(f));
	assert_int_equal(registered(f), 0);
}

/* Two callbacks due in the same round; each adds, and the peer has seen
 * nothing yet when they return. */
struct burst {
	struct fx *f;
	const char *parts[3];
};

static void
burst_cb(evutil_socket_t fd, short what, void *arg)
{
	struct burst *b = arg;

	for (size_t i = 0; i < 3 && b->parts[i] != NULL; i++) {
		add_str(b->f, b->parts[i]);
		/* Written after the round's callbacks, never from inside add. */
		assert_peer_empty(b->f);
	}
}

static void
run_two_bursts(struct fx *f)
{
	struct burst b1 = {f, {"250-first\r\n", "250-second\r\n", NULL}};
	struct burst b2 = {f, {"250 third\r\n", NULL, NULL}};
	struct event *e1 = event_new(f->base, -1, 0, burst_cb, &b1);
	struct event *e2 = event_new(f->base, -1, 0, burst_cb, &b2);

	event_active(e1, EV_TIMEOUT, 0);
	event_active(e2, EV_TIMEOUT, 0);
	round_once(f);
	event_free(e1);
	event_free(e2);
}

static void
test_new_leaves_write_disabled(void **state)
{
	struct fx *f = *state;

	/* bufferevent_socket_new() enables EV_WRITE; wbatch_new() takes over. */
	assert_direct_mode(f);
	round_once(f);
	assert_direct_mode(f);
	assert_int_equal(f->write_cbs, 0);
	assert_peer_empty(f);
	wbatch_free(NULL);
}

static void
test_one_round_delivers_all(void **state)
{
	struct fx *f = *state;

	run_two_bursts(f);
	assert_peer_got(f, "250-first\r\n250-second\r\n250 third\r\n");
	assert_int_equal(out_len(f), 0);
	/* No EV_WRITE left enabled or registered in the usual case. */
	assert_direct_mode(f);
	assert_int_equal(f->event_cbs, 0);

	/* And again: the wbatch re-arms for the next round. */
	run_two_bursts(f);
	assert_peer_got(f, "250-first\r\n250-second\r\n250 third\r\n");
	assert_direct_mode(f);
}

/* SOCK_SEQPACKET keeps write boundaries: one record at the peer is one
 * write, so this shows the round's three adds left in a single writev. */
static void
test_one_write_per_round(void **state)
{
	static const char want[] = "250-first\r\n250-second\r\n250 third\r\n";
	struct fx *f = *state;
	char buf[256];

	run_two_bursts(f);
	assert_int_equal(recv(f->peer, buf, sizeof(buf), 0), strlen(want));
	assert_memory_equal(buf, want, strlen(want));
	assert_peer_empty(f);
	assert_direct_mode(f);
}

static void
test_nothing_before_loop(void **state)
{
	struct fx *f = *state;

	add_str(f, "AUTH ");
	add_str(f, "PLAIN\r\n");
	assert_peer_empty(f);
	assert_int_equal(out_len(f), 12);
	assert_int_equal(f->write_cbs, 0);
	round_once(f);
	assert_peer_got(f, "AUTH PLAIN\r\n");
	assert_direct_mode(f);
}

/* Output already queued when the wbatch is attached goes out on the first
 * round too. */
static void
test_new_with_pending_output(void **state)
{
	struct fx *f = *state;

	/* Queued while the bufferevent's own EV_WRITE is still enabled. */
	add_str(f, "220 ready\r\n");
	f->wb = wbatch_new(f->bev);
	assert_non_null(f->wb);
	assert_false(write_enabled(f));
	assert_peer_empty(f);
	round_once(f);
	assert_peer_got(f, "220 ready\r\n");
	assert_direct_mode(f);
}

static void
fill_pattern(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + i / 251);
}

static void
shrink_buffers(struct fx *f)
{
	int sz = 4096;

	assert_int_equal(
	        setsockopt(bufferevent_getfd(f->bev), SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	assert_int_equal(setsockopt(f->peer, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

/* Add BACKLOG_LEN bytes the socket cannot take at once, check the hand-over
 * to the bufferevent after one round, then drain the peer while running the
 * base until everything has arrived. */
static void
run_backlog(struct fx *f)
{
	unsigned char *want, *got;
	size_t have = 0;
	unsigned rounds = 0;

	want = f->want = malloc(BACKLOG_LEN);
	got = f->got = malloc(BACKLOG_LEN);
	assert_non_null(want);
	assert_non_null(got);
	fill_pattern(want, BACKLOG_LEN);
	shrink_buffers(f);
	assert_int_equal(evbuffer_add(bufferevent_get_output(f->bev), want, BACKLOG_LEN), 0);
	round_once(f);
	/* Part went out directly; the bufferevent's own EV_WRITE has the rest. */
	assert_true(write_enabled(f));
	assert_true(out_len(f) > 0);
	assert_true(out_len(f) < BACKLOG_LEN);
	assert_int_equal(f->write_cbs, 0);

	while (have < BACKLOG_LEN) {
		assert_true(++rounds < MAX_ROUNDS);
		have += peer_read(f, (char *)got + have, BACKLOG_LEN - have);
		round_once(f);
	}
	assert_int_equal(have, BACKLOG_LEN);
	assert_memory_equal(got, want, BACKLOG_LEN);
	assert_int_equal(out_len(f), 0);
	assert_peer_empty(f);
	/* The bufferevent reported the drained output like without a wbatch. */
	assert_true(f->write_cbs > 0);
	assert_int_equal(f->out_len_in_write_cb, 0);
	assert_int_equal(f->event_cbs, 0);
}

static void
test_backlog_arrives_intact(void **state)
{
	struct fx *f = *state;

	run_backlog(f);
	/* Small writes still arrive after the backlog, whichever path. */
	add_str(f, "250 after\r\n");
	for (unsigned i = 0; i < 3; i++)
		round_once(f);
	assert_peer_got(f, "250 after\r\n");
	assert_int_equal(out_len(f), 0);
}

/* Once the backlog is gone, the next small add is written directly again by
 * the flush of its round, and EV_WRITE is neither enabled nor registered any
 * more (wbatch.h: "Leaves EV_WRITE disabled until a write falls behind"). */
static void
test_direct_again_after_backlog(void **state)
{
	struct fx *f = *state;

	run_backlog(f);
	add_str(f, "250 after\r\n");
	assert_peer_empty(f);
	round_once(f);
	assert_peer_got(f, "250 after\r\n");
	assert_false(write_enabled(f));
	assert_int_equal(registered(f), 0);
	/* And stays so for the next burst. */
	add_str(f, "250 again\r\n");
	round_once(f);
	assert_peer_got(f, "250 again\r\n");
	assert_direct_mode(f);
}

static void
test_write_cb_after_direct_flush(void **state)
{
	struct fx *f = *state;

	add_str(f, "235 ok\r\n");
	assert_int_equal(f->write_cbs, 0);
	round_once(f);
	assert_int_equal(f->write_cbs, 1);
	assert_int_equal(f->out_len_in_write_cb, 0);
	assert_peer_got(f, "235 ok\r\n");

	/* A write callback that refills the output: the refill goes out too
	 * (in the same round, as it arms a new flush), and calls back again. */
	f->refill = "250 more\r\n";
	add_str(f, "250 one\r\n");
	round_once(f);
	assert_peer_got(f, "250 one\r\n250 more\r\n");
	assert_int_equal(f->write_cbs, 3);
	assert_int_equal(out_len(f), 0);
	assert_direct_mode(f);
	assert_int_equal(f->event_cbs, 0);
}

static void
test_peer_closed_reports_error(void **state)
{
	struct fx *f = *state;
	unsigned rounds = 0;

	signal(SIGPIPE, SIG_IGN);
	close(f->peer);
	f->peer = -1;
	add_str(f, "250 lost\r\n");
	while (f->event_cbs == 0 && ++rounds < 10)
		round_once(f);
	assert_int_equal(f->event_cbs, 1);
	assert_true(f->events & (BEV_EVENT_ERROR | BEV_EVENT_EOF));
	assert_true(f->events & BEV_EVENT_WRITING);
	if (f->events & BEV_EVENT_ERROR)
		assert_int_equal(f->event_errno, EPIPE);
	assert_int_equal(f->write_cbs, 0);
	/* Nothing was silently dropped: the bytes are still queued. */
	assert_int_equal(out_len(f), strlen("250 lost\r\n"));
	/* The error is reported once, not on every round. */
	for (unsigned i = 0; i < 3; i++)
		round_once(f);
	assert_int_equal(f->event_cbs, 1);
}

/* wbatch_free() with the flush event active and bytes queued: the event is
 * gone (ASan would see a use after free otherwise) and nothing more goes out;
 * the bytes stay in the bufferevent. */
static void
test_free_with_flush_armed(void **state)
{
	struct fx *f = *state;

	add_str(f, "250 never\r\n");
	wbatch_free(f->wb);
	f->wb = NULL;
	for (unsigned i = 0; i < 3; i++)
		round_once(f);
	assert_peer_empty(f);
	assert_int_equal(out_len(f), strlen("250 never\r\n"));
	assert_int_equal(f->write_cbs, 0);
	assert_int_equal(f->event_cbs, 0);
	/* Later adds are not watched any more either. */
	add_str(f, "x");
	round_once(f);
	assert_peer_empty(f);
}

/* The same, freed from a callback of the round that armed the flush, before
 * the flush gets its turn. */
struct add_then_free {
	struct fx *f;
};

static void
add_then_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct add_then_free *a = arg;

	add_str(a->f, "250 never\r\n");
	wbatch_free(a->f->wb);
	a->f->wb = NULL;
}

static void
test_free_in_round_before_flush(void **state)
{
	struct fx *f = *state;
	struct add_then_free a = {f};
	struct event *ev;

	ev = event_new(f->base, -1, 0, add_then_free_cb, &a);
	event_active(ev, EV_TIMEOUT, 0);
	round_once(f);
	round_once(f);
	assert_null(f->wb);
	assert_peer_empty(f);
	assert_int_equal(out_len(f), strlen("250 never\r\n"));
	assert_int_equal(f->write_cbs, 0);
	event_free(ev);
}

#define T(test, setup) cmocka_unit_test_setup_teardown(test, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_new_leaves_write_disabled, setup_stream),
	        T(test_one_round_delivers_all, setup_stream),
	        T(test_one_write_per_round, setup_seqpacket),
	        T(test_nothing_before_loop, setup_stream),
	        T(test_new_with_pending_output, setup_bare),
	        T(test_backlog_arrives_intact, setup_stream),
	        T(test_direct_again_after_backlog, setup_stream),
	        T(test_write_cb_after_direct_flush, setup_stream),
	        T(test_peer_closed_reports_error, setup_stream),
	        T(test_free_with_flush_armed, setup_stream),
	        T(test_free_in_round_before_flush, setup_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
