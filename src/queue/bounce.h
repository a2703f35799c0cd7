/* SPDX-License-Identifier: ISC */
/*
 * bounce.h - delivery status notifications (RFC 3464): a multipart/report
 * with a human-readable part, a message/delivery-status part (one block per
 * recipient) and the original message's header (text/rfc822-headers,
 * RFC 6522). Failures and, when [queue] delay_warning is set, delay warnings.
 *
 * A DSN is an ordinary message from the null sender to the original envelope
 * sender, written into the spool like any other and delivered by the same
 * queue. Nobody sends a DSN about a message from the null sender (RFC 3464
 * 2.2, RFC 5321 6.1): the caller checks that.
 */
#ifndef AUTHRELAY_BOUNCE_H
#define AUTHRELAY_BOUNCE_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/common.h"

struct spool_msg;

struct bounce_rcpt {
	const char *addr;   /* "user@domain" */
	const char *status; /* "5.1.1", "4.4.1" */
	const char *reason; /* the reply ("550 5.1.1 No such user") or our reason */
	const char *relay;  /* "mx.example[192.0.2.1]:25", "none" */
	bool remote;        /* reason is the remote server's reply */
};

struct bounce_params {
	const char *spool_dir;
	const char *hostname; /* Reporting-MTA and the From: domain */
	const char *queue_id; /* of the original message */
	int64_t arrival;      /* unix time the original was accepted */
	const char *sender;   /* the original envelope sender: the DSN's recipient */
	bool delayed;         /* a delay warning (Action: delayed) */
	int64_t retry_until;  /* delayed: Will-Retry-Until */
	const struct bounce_rcpt *rcpts;
	size_t n_rcpts;
	const char *orig_path; /* the original spool file */
	long body_offset;
};

/* The DSN's message text (CRLF line ends), with orig_headers (the original
 * header block, may be NULL) attached. malloc'd; *len_r its length. */
char *bounce_format(const struct bounce_params *p, const char *orig_headers, size_t orig_len,
                    size_t *len_r);

/* Write a DSN for p into spool_dir/tmp (envelope: MAIL <>, RCPT <sender>) and
 * return it, ready for spool_msg_commit(). BLOCKS (reads the original's
 * header). NULL with *error_r on failure. *id_r gets the new id. */
struct spool_msg *bounce_write(const struct bounce_params *p, char id_r[32], const char **error_r);

#endif
