/* SPDX-License-Identifier: ISC */
/*
 * metrics_http.c - the metrics process (see metrics_http.h): evhttp on the
 * socket the master bound, one request callback, and the health check.
 *
 * The allow list is checked on the peer address of each request's
 * connection before anything is rendered; a refused client gets 403 and
 * the connection is closed. /metrics renders the whole table on every
 * request: a few thousand cells summed over the slots, well under a
 * millisecond, and never a stale number.
 */
#include "metrics_http.h"
#include "metric.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/readiness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* A scrape request is one line and a few headers. */
#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY 0

struct metrics_http {
	const struct metrics_http_params *p;
	struct event_base *base;
	struct evhttp *http;
};

bool
metrics_http_healthy(const struct metrics *m, char *why, size_t why_size)
{
	static const char *const names[MP_COUNT] = {"smtpd", "auth", "queue", "keyproc", "metrics"};
	bool ok = true;
	size_t len = 0;

	if (why_size > 0)
		why[0] = '\0';
	for (unsigned p = 0; p < MP_COUNT; p++) {
		int64_t up = metrics_read(m, M_PROCESSES_UP, &p, 1);
		int64_t want = metrics_read(m, M_PROCESSES_EXPECTED, &p, 1);
		/* Before the master has said what it expects, nothing is. */
		if ((p == MP_SMTPD && want <= 0) || up < want)
			ok = false;
		if (want <= 0 && up <= 0)
			continue;
		int n = snprintf(why + len, why_size > len ? why_size - len : 0,
		                 "%s %lld/%lld up\n", names[p], (long long)up, (long long)want);
		if (n > 0 && len + (size_t)n < why_size)
			len += (size_t)n;
	}
	return ok;
}

/* Is the peer of req's connection on the allow list? addr_r gets its text. */
static bool
metrics_http_allowed(const struct metrics_http *h, struct evhttp_request *req, char *addr_r,
                     size_t addr_size)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	snprintf(addr_r, addr_size, "?");
	if (bev == NULL || getpeername(bufferevent_getfd(bev), (struct sockaddr *)&ss, &len) != 0)
		return false;
	net_addr_str((struct sockaddr *)&ss, addr_r, addr_size);
	for (size_t i = 0; i < h->p->n_allow; i++)
		if (net_cidr_match(&h->p->allow[i], (struct sockaddr *)&ss))
			return true;
	return false;
}

static void
metrics_http_reply(struct evhttp_request *req, int code, const char *reason,
                   const char *content_type, struct evbuffer *body)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", content_type);
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void
metrics_http_request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *body = evbuffer_new();
	char addr[64], why[256];
	int code = 200;

	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (!metrics_http_allowed(h, req, addr, sizeof(addr))) {
		log_info("metrics: refused client=%s (not in [metrics] allow)", addr);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		evbuffer_add_printf(body, "forbidden\n");
		metrics_http_reply(req, code = 403, "Forbidden", "text/plain; charset=utf-8", body);
	} else if (path != NULL && strcmp(path, "/metrics") == 0) {
		const char *accept =
		        evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
		enum metrics_format fmt =
		        accept != NULL && strstr(accept, "application/openmetrics-text") != NULL
		                ? METRICS_OPENMETRICS
		                : METRICS_TEXT;
		metrics_render(h->p->metrics, fmt, body);
		metrics_http_reply(req, code, "OK", metrics_content_type(fmt), body);
	} else if (path != NULL && strcmp(path, "/healthz") == 0) {
		bool ok = metrics_http_healthy(h->p->metrics, why, sizeof(why));
		evbuffer_add_printf(body, "%s\n%s", ok ? "ok" : "unavailable", why);
		code = ok ? 200 : 503;
		metrics_http_reply(req, code, ok ? "OK" : "Service Unavailable",
		                   "text/plain; charset=utf-8", body);
	} else if (path != NULL && strcmp(path, "/") == 0) {
		evbuffer_add_printf(body, "authrelay: /metrics /healthz\n");
		metrics_http_reply(req, code, "OK", "text/plain; charset=utf-8", body);
	} else {
		evbuffer_add_printf(body, "not found\n");
		metrics_http_reply(req, code = 404, "Not Found", "text/plain; charset=utf-8", body);
	}
	log_debug("metrics: client=%s path=%s status=%d", addr, path != NULL ? path : "-", code);
	evbuffer_free(body);
}

static void
metrics_http_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct metrics_http *h = arg;

	log_info("metrics: exiting on signal %d", (int)sig);
	event_base_loopbreak(h->base);
}

int
metrics_http_main(const struct metrics_http_params *p)
{
	struct metrics_http h = {.p = p};
	struct event *ev_term = NULL, *ev_int = NULL;
	int status = 1;

	signal(SIGPIPE, SIG_IGN);
	h.base = event_base_new();
	if (h.base == NULL) {
		log_err("metrics: cannot create an event base");
		return 1;
	}
	log_batch(h.base);
	h.http = evhttp_new(h.base);
	if (h.http == NULL) {
		log_err("metrics: evhttp_new failed");
		goto fail;
	}
	evhttp_set_max_headers_size(h.http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(h.http, METRICS_MAX_BODY);
	evhttp_set_allowed_methods(h.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(h.http, (int)p->timeout);
	evhttp_set_gencb(h.http, metrics_http_request_cb, &h);
	/* The master called listen(); evhttp only accepts. */
	if (evhttp_accept_socket_with_handle(h.http, p->listen_fd) == NULL) {
		log_err("metrics: cannot accept on the metrics socket");
		goto fail;
	}
	ev_term = evsignal_new(h.base, SIGTERM, metrics_http_signal_cb, &h);
	ev_int = evsignal_new(h.base, SIGINT, metrics_http_signal_cb, &h);
	if (ev_term == NULL || ev_int == NULL || event_add(ev_term, NULL) < 0 ||
	    event_add(ev_int, NULL) < 0) {
		log_err("metrics: cannot install signal events");
		goto fail;
	}
	log_info("metrics: ready timeout=%us allow=%zu", p->timeout, p->n_allow);
	readiness_report();
	if (event_base_dispatch(h.base) < 0) {
		log_err("metrics: event loop failed");
		goto fail;
	}
	status = 0;
fail:
	log_batch(NULL);
	if (ev_term != NULL)
		event_free(ev_term);
	if (ev_int != NULL)
		event_free(ev_int);
	if (h.http != NULL)
		evhttp_free(h.http);
	event_base_free(h.base);
	return status;
}
