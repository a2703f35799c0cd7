/* SPDX-License-Identifier: ISC */
/*
 * listen_set.c - the master's listening sockets, shared across reloads (see
 * listen_set.h).
 *
 * A short array of (address, fd, references): a configuration has a handful
 * of listeners, so lookups are linear. Two listeners are the same socket
 * when their socket addresses are equal byte for byte after the parts that
 * do not matter (sin_zero, flow info, scope of a non-link-local address)
 * are cleared: "127.0.0.1:2525" in the old and the new file is one socket.
 */
#include "listen_set.h"
#include "../lib/config.h"
#include "../lib/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct listen_sock {
	struct sockaddr_storage addr; /* normalised (listen_key()) */
	socklen_t addrlen;
	int fd;
	unsigned refs;
};

struct listen_set {
	struct listen_sock *socks;
	size_t n, cap;
	bool closed; /* listen_set_close(): the fds are gone, the references stay */
};

static void
listen_key(const struct listener_cfg *l, struct sockaddr_storage *key, socklen_t *len_r)
{
	memset(key, 0, sizeof(*key));
	if (l->addr.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&l->addr;
		struct sockaddr_in *k = (struct sockaddr_in *)key;
		k->sin_family = AF_INET;
		k->sin_port = in->sin_port;
		k->sin_addr = in->sin_addr;
		*len_r = sizeof(*k);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&l->addr;
		struct sockaddr_in6 *k = (struct sockaddr_in6 *)key;
		k->sin6_family = AF_INET6;
		k->sin6_port = in6->sin6_port;
		k->sin6_addr = in6->sin6_addr;
		k->sin6_scope_id = in6->sin6_scope_id;
		*len_r = sizeof(*k);
	}
}

static int
listen_bind(const struct listener_cfg *l, const char **error_r)
{
	static char err[256];
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;

	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (l->addr.ss_family == AF_INET6) {
		/* "*:25" and "[::]:25" take IPv4 too (as v4-mapped addresses);
		 * a specific IPv6 address takes only IPv6. */
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0)
		goto fail;
	if (listen(fd, 1024) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "listener %s (%s): %s", l->name, l->address_text,
	         strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
}

struct listen_set *
listen_set_new(void)
{
	return xcalloc(1, sizeof(struct listen_set));
}

void
listen_set_free(struct listen_set *ls)
{
	if (ls == NULL)
		return;
	listen_set_close(ls);
	free(ls->socks);
	free(ls);
}

void
listen_set_close(struct listen_set *ls)
{
	if (ls->closed)
		return;
	for (size_t i = 0; i < ls->n; i++)
		close(ls->socks[i].fd);
	ls->closed = true;
}

static struct listen_sock *
listen_find(struct listen_set *ls, const struct sockaddr_storage *key, socklen_t len)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->socks[i].addrlen == len && memcmp(&ls->socks[i].addr, key, len) == 0)
			return &ls->socks[i];
	return NULL;
}

static struct listen_sock *
listen_find_fd(struct listen_set *ls, int fd)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->socks[i].fd == fd)
			return &ls->socks[i];
	return NULL;
}

/* Close and forget the sockets nobody references. */
static void
listen_sweep(struct listen_set *ls)
{
	size_t keep = 0;

	for (size_t i = 0; i < ls->n; i++) {
		if (ls->socks[i].refs > 0)
			ls->socks[keep++] = ls->socks[i];
		else if (!ls->closed)
			close(ls->socks[i].fd);
	}
	ls->n = keep;
}

int
listen_set_acquire(struct listen_set *ls, const struct config *cfg, int *fds_r,
                   const char **error_r)
{
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++) {
		const struct listener_cfg *l = &cfg->listeners[i];
		struct sockaddr_storage key;
		socklen_t len;
		struct listen_sock *s;

		listen_key(l, &key, &len);
		s = listen_find(ls, &key, len);
		if (s == NULL) {
			int fd = listen_bind(l, error_r);
			if (fd < 0)
				goto fail;
			if (ls->n == ls->cap) {
				ls->cap = ls->cap ? ls->cap * 2 : 8;
				ls->socks = xrealloc(ls->socks, ls->cap * sizeof(*ls->socks));
			}
			s = &ls->socks[ls->n++];
			*s = (struct listen_sock){.addr = key, .addrlen = len, .fd = fd};
		}
		s->refs++;
		fds_r[i] = s->fd;
	}
	return 0;
fail:
	listen_set_release(ls, fds_r, i);
	/* What this call bound has no reference left: closed here. */
	listen_sweep(ls);
	return -1;
}

void
listen_set_release(struct listen_set *ls, const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct listen_sock *s = listen_find_fd(ls, fds[i]);
		if (s == NULL || s->refs == 0)
			fatal("listen_set: release of a socket not held (fd %d)", fds[i]);
		s->refs--;
	}
	listen_sweep(ls);
}

void
listen_set_close_in_child(const struct listen_set *ls, const int *keep, size_t n)
{
	for (size_t i = 0; i < ls->n; i++) {
		bool kept = false;
		for (size_t j = 0; keep != NULL && j < n && !kept; j++)
			kept = keep[j] == ls->socks[i].fd;
		if (!kept)
			close(ls->socks[i].fd);
	}
}

size_t
listen_set_count(const struct listen_set *ls)
{
	return ls->n;
}
