/* SPDX-License-Identifier: ISC */
/*
 * bounce.c - RFC 3464 delivery status notifications (bounce.h).
 *
 * The text is 7-bit ASCII throughout: every value that came from elsewhere
 * (addresses, remote replies, the original header) has its other bytes
 * replaced, so the report is valid whatever the original looked like.
 */
#include "bounce.h"
#include "../lib/log.h"
#include "../spool/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The original's header we attach: at most this much. */
#define BOUNCE_MAX_HEADERS (64 * 1024)

/* RFC 5322 3.3 date-time, in UTC. */
#define RFC5322_DATE "%a, %d %b %Y %H:%M:%S +0000"

/* value with bytes outside printable ASCII (and CR/LF) replaced by '?'. */
static void
put_clean(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		fputc(c >= 0x20 && c < 0x7f ? c : '?', f);
	}
}

static void
put_relay_host(FILE *f, const char *relay)
{
	const char *b = strchr(relay, '[');
	size_t n = b != NULL ? (size_t)(b - relay) : strlen(relay);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)relay[i];
		fputc(c > 0x20 && c < 0x7f ? c : '?', f);
	}
}

char *
bounce_format(const struct bounce_params *p, const char *orig_headers, size_t orig_len,
              size_t *len_r)
{
	char *buf = NULL, date[64], arrival[64], boundary[200];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int64_t now = (int64_t)time(NULL);

	if (f == NULL)
		fatal("open_memstream: %s", strerror(errno));
	utc_strftime(now, RFC5322_DATE, date, sizeof(date));
	utc_strftime(p->arrival, RFC5322_DATE, arrival, sizeof(arrival));
	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", p->queue_id, (long long)now,
	         p->hostname);

	fprintf(f, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", p->hostname);
	fprintf(f, "To: <");
	put_clean(f, p->sender);
	fprintf(f, ">\r\n");
	fprintf(f, "Subject: %s\r\n",
	        p->delayed ? "Delayed Mail (still being retried)"
	                   : "Undelivered Mail Returned to Sender");
	fprintf(f, "Date: %s\r\n", date);
	fprintf(f, "Message-ID: <%s.%lld.%s@%s>\r\n", p->queue_id, (long long)now,
	        p->delayed ? "delay" : "bounce", p->hostname);
	/* RFC 3834 5: an automatic reply, not to be answered automatically. */
	fprintf(f, "Auto-Submitted: auto-replied\r\n");
	fprintf(f, "MIME-Version: 1.0\r\n");
	fprintf(f,
	        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	        "\tboundary=\"%s\"\r\n",
	        boundary);
	fprintf(f, "Content-Transfer-Encoding: 7bit\r\n\r\n");
	fprintf(f, "This is a MIME-encapsulated message.\r\n\r\n");

	/* 1: for people. */
	fprintf(f,
	        "--%s\r\nContent-Description: Notification\r\n"
	        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
	        boundary);
	fprintf(f, "This is the mail system at host %s.\r\n\r\n", p->hostname);
	if (p->delayed) {
		char until[64];
		utc_strftime(p->retry_until, RFC5322_DATE, until, sizeof(until));
		fprintf(f,
		        "Your message could not be delivered yet to the recipients\r\n"
		        "below. It is still in the queue and will be tried again until\r\n"
		        "%s. You do not need to send it again.\r\n\r\n",
		        until);
	} else {
		fprintf(f, "I'm sorry to have to inform you that your message could not\r\n"
		           "be delivered to one or more recipients. It's attached below.\r\n\r\n");
	}
	for (size_t i = 0; i < p->n_rcpts; i++) {
		const struct bounce_rcpt *r = &p->rcpts[i];
		fprintf(f, "<");
		put_clean(f, r->addr);
		fprintf(f, ">: ");
		if (r->remote) {
			fprintf(f, "host ");
			put_clean(f, r->relay);
			fprintf(f, " said: ");
		}
		put_clean(f, r->reason);
		fprintf(f, "\r\n\r\n");
	}

	/* 2: for programs (RFC 3464 2.1). */
	fprintf(f,
	        "--%s\r\nContent-Description: Delivery report\r\n"
	        "Content-Type: message/delivery-status\r\n\r\n",
	        boundary);
	fprintf(f, "Reporting-MTA: dns; %s\r\n", p->hostname);
	fprintf(f, "X-Authrelay-Queue-ID: %s\r\n", p->queue_id);
	fprintf(f, "X-Authrelay-Sender: rfc822; ");
	put_clean(f, p->sender);
	fprintf(f, "\r\nArrival-Date: %s\r\n", arrival);
	for (size_t i = 0; i < p->n_rcpts; i++) {
		const struct bounce_rcpt *r = &p->rcpts[i];
		fprintf(f, "\r\nFinal-Recipient: rfc822; ");
		put_clean(f, r->addr);
		fprintf(f, "\r\nAction: %s\r\n", p->delayed ? "delayed" : "failed");
		fprintf(f, "Status: ");
		put_clean(f, r->status);
		fprintf(f, "\r\n");
		if (r->remote && r->relay != NULL && strcmp(r->relay, "none") != 0) {
			fprintf(f, "Remote-MTA: dns; ");
			put_relay_host(f, r->relay);
			fprintf(f, "\r\nDiagnostic-Code: smtp; ");
		} else {
			fprintf(f, "Diagnostic-Code: X-Authrelay; ");
		}
		put_clean(f, r->reason);
		fprintf(f, "\r\nLast-Attempt-Date: %s\r\n", date);
		if (p->delayed) {
			char until[64];
			utc_strftime(p->retry_until, RFC5322_DATE, until, sizeof(until));
			fprintf(f, "Will-Retry-Until: %s\r\n", until);
		}
	}
	fprintf(f, "\r\n");

	/* 3: the original header (RFC 6522 3). */
	fprintf(f,
	        "--%s\r\nContent-Description: Undelivered Message Headers\r\n"
	        "Content-Type: text/rfc822-headers\r\n\r\n",
	        boundary);
	if (orig_headers != NULL) {
		bool line_start = true;
		for (size_t i = 0; i < orig_len; i++) {
			unsigned char c = (unsigned char)orig_headers[i];
			/* A line that looks like our boundary would end the part. */
			if (line_start && c == '-' && i + 1 < orig_len &&
			    orig_headers[i + 1] == '-')
				fputc(' ', f);
			if (c == '\n') {
				fputs("\r\n", f);
				line_start = true;
				continue;
			}
			line_start = false;
			if (c == '\r')
				continue;
			fputc(c == '\t' || (c >= 0x20 && c < 0x7f) ? c : '?', f);
		}
		if (!line_start)
			fputs("\r\n", f);
	}
	fprintf(f, "\r\n--%s--\r\n", boundary);
	fclose(f);
	*len_r = len;
	return buf;
}

/* The original's header block (up to the blank line), malloc'd. */
static char *
bounce_read_headers(const char *path, long offset, size_t *len_r)
{
	const char *why;
	int fd = spool_open_message(path, &why);
	char *buf;
	ssize_t n;

	*len_r = 0;
	if (fd < 0)
		return NULL;
	buf = xmalloc(BOUNCE_MAX_HEADERS + 1);
	n = pread(fd, buf, BOUNCE_MAX_HEADERS, offset);
	close(fd);
	if (n <= 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	char *end = strstr(buf, "\r\n\r\n");
	size_t len = end != NULL ? (size_t)(end - buf) + 2 : (size_t)n;
	*len_r = len;
	return buf;
}

struct spool_msg *
bounce_write(const struct bounce_params *p, char id_r[32], const char **error_r)
{
	char rcpt[1100];
	char *rcpts[1] = {rcpt};
	size_t hlen = 0, len;
	char *headers, *text;

	snprintf(rcpt, sizeof(rcpt), "<%s>", p->sender);
	struct spool_envelope env = {
	        .client = (char *)"127.0.0.1",
	        .helo = (char *)p->hostname,
	        .listener = (char *)"bounce",
	        .protocol = (char *)"LOCAL",
	        .tls = (char *)"none",
	        .mail = (char *)"<>",
	        .rcpts = rcpts,
	        .n_rcpts = 1,
	};
	/* Written where only the queue can enter, then renamed into
	 * incoming/ like the workers' messages. */
	struct spool_msg *msg = spool_msg_new_in(p->spool_dir, "queue-tmp", &env, error_r);
	if (msg == NULL)
		return NULL;
	snprintf(id_r, 32, "%s", env.id);
	headers = bounce_read_headers(p->orig_path, p->body_offset, &hlen);
	text = bounce_format(p, headers, hlen, &len);
	free(headers);
	if (spool_msg_write(msg, text, len) != 0) {
		free(text);
		*error_r = "write failed";
		spool_msg_free(msg);
		return NULL;
	}
	free(text);
	return msg;
}
