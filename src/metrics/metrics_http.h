/* SPDX-License-Identifier: ISC */
/*
 * metrics_http.h - the metrics process: a small HTTP/1.1 server (libevent's
 * evhttp) on the [metrics] address that the master bound. It answers
 *
 *   GET /metrics   every family of metric.h, in OpenMetrics when the client
 *                  asks for it (Accept: application/openmetrics-text, as
 *                  Prometheus does), else in the Prometheus text format;
 *   GET /healthz   200 when every child the configuration asks for runs and
 *                  has reported up, 503 otherwise (for load balancers);
 *
 * to the clients of the allow list only (others get 403). Requests are
 * bounded (headers, no body), and a connection that idles or dawdles longer
 * than [metrics] timeout is closed.
 *
 * It runs unprivileged, chrooted into an empty directory, under its own
 * system-call allow-list (sandbox.h), with the counters mapped read-only:
 * nothing it parses can reach a mail session or change a number.
 */
#ifndef AUTHRELAY_METRICS_HTTP_H
#define AUTHRELAY_METRICS_HTTP_H

#include <stddef.h>
#include "../lib/net.h"

struct metrics;

struct metrics_http_params {
	struct metrics *metrics; /* the table of metric.h */
	int listen_fd;           /* bound and listening, non-blocking */
	const struct cidr *allow;
	size_t n_allow;
	unsigned timeout; /* s */
};

/* Serve until SIGTERM. Returns the process exit status. */
int metrics_http_main(const struct metrics_http_params *);

/* The health of the gateway as the master published it: true when every
 * kind of child has as many up as expected. why gets "smtpd 1/2 up" lines
 * (one per kind, each "\n"-terminated). */
bool metrics_http_healthy(const struct metrics *, char *why, size_t why_size);

#endif
