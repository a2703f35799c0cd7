/* SPDX-License-Identifier: ISC */
/*
 * test_listen_set.c - the master's listening sockets across reloads
 * (master/listen_set.h): an address kept by the next configuration keeps
 * its socket (same fd, still listening), a new one is bound, a socket
 * closes with its last reference; a configuration that cannot bind takes
 * nothing; listen_set_close() closes every socket at once and references
 * may still be dropped after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/config.h"
#include "master/listen_set.h"

/* A port free on 127.0.0.1 right now. */
static unsigned
free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void
listener(struct listener_cfg *l, const char *name, unsigned port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
	static char text[8][32];
	static int n;

	memset(l, 0, sizeof(*l));
	l->name = (char *)name;
	snprintf(text[n % 8], sizeof(text[0]), "127.0.0.1:%u", port);
	l->address_text = text[n++ % 8];
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->addrlen = sizeof(*sin);
}

static bool
is_listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static void
test_kept_new_and_gone(void **state)
{
	struct listen_set *ls = listen_set_new();
	struct listener_cfg a[2], b[2];
	struct config ca = {.listeners = a, .n_listeners = 2};
	struct config cb = {.listeners = b, .n_listeners = 2};
	unsigned p1 = free_port(), p2 = free_port(), p3 = free_port();
	int fa[2], fb[2];
	const char *err;

	listener(&a[0], "in", p1);
	listener(&a[1], "out", p2);
	assert_int_equal(listen_set_acquire(ls, &ca, fa, &err), 0);
	assert_int_equal(listen_set_count(ls), 2);
	/* The next configuration: "in" on the same address under another
	 * name, "extra" new; "out" gone. */
	listener(&b[0], "renamed", p1);
	listener(&b[1], "extra", p3);
	assert_int_equal(listen_set_acquire(ls, &cb, fb, &err), 0);
	assert_int_equal(fb[0], fa[0]);
	assert_true(is_listening(fb[1]));
	assert_int_equal(listen_set_count(ls), 3);
	/* The old configuration goes: its own socket closes, the shared one
	 * stays. */
	listen_set_release(ls, fa, 2);
	assert_int_equal(listen_set_count(ls), 2);
	assert_true(is_listening(fb[0]));
	assert_int_equal(fcntl(fa[1], F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	listen_set_release(ls, fb, 2);
	assert_int_equal(listen_set_count(ls), 0);
	listen_set_free(ls);
}

static void
test_bind_failure_takes_nothing(void **state)
{
	struct listen_set *ls = listen_set_new();
	struct listener_cfg a[1], b[2];
	struct config ca = {.listeners = a, .n_listeners = 1};
	struct config cb = {.listeners = b, .n_listeners = 2};
	unsigned p1 = free_port();
	int fa[1], fb[2], busy = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	const char *err = NULL;

	assert_int_equal(bind(busy, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(busy, 1), 0);
	assert_int_equal(getsockname(busy, (struct sockaddr *)&sin, &len), 0);
	listener(&a[0], "in", p1);
	assert_int_equal(listen_set_acquire(ls, &ca, fa, &err), 0);
	listener(&b[0], "new", free_port());
	listener(&b[1], "taken", ntohs(sin.sin_port));
	assert_int_equal(listen_set_acquire(ls, &cb, fb, &err), -1);
	assert_non_null(strstr(err, "listener taken (127.0.0.1:"));
	assert_non_null(strstr(err, "Address already in use"));
	/* The socket bound for "new" was closed again; "in" is as it was. */
	assert_int_equal(listen_set_count(ls), 1);
	assert_true(is_listening(fa[0]));
	listen_set_release(ls, fa, 1);
	assert_int_equal(listen_set_count(ls), 0);
	close(busy);
	listen_set_free(ls);
}

static void
test_close_all_then_release(void **state)
{
	struct listen_set *ls = listen_set_new();
	struct listener_cfg a[1];
	struct config ca = {.listeners = a, .n_listeners = 1};
	int fa[1];
	const char *err;

	listener(&a[0], "in", free_port());
	assert_int_equal(listen_set_acquire(ls, &ca, fa, &err), 0);
	listen_set_close(ls);
	assert_int_equal(fcntl(fa[0], F_GETFD), -1);
	listen_set_release(ls, fa, 1);
	assert_int_equal(listen_set_count(ls), 0);
	listen_set_free(ls);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_kept_new_and_gone),
	        cmocka_unit_test(test_bind_failure_takes_nothing),
	        cmocka_unit_test(test_close_all_then_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
