/* SPDX-License-Identifier: ISC */
/*
 * maildir.h - delivery into a local Maildir (the `maildir` route type, for
 * the demo and small sites): tmp/ -> fsync -> new/ -> fsync new/, so a
 * message counts as delivered only once it is durable, like the spool.
 */
#ifndef AUTHRELAY_MAILDIR_H
#define AUTHRELAY_MAILDIR_H

#include <stddef.h>
#include "../lib/common.h"

/* The Maildir path for addr ("user@domain") from tmpl: %u is the local part,
 * %d the domain (lower case), %% a '%'. NULL if the local part could escape
 * the directory ('/', a leading '.', control bytes) or is empty. malloc'd. */
char *maildir_expand(const char *tmpl, const char *addr);

/* Deliver the message in the spool file path (from body_offset) to addr's
 * Maildir, with Return-Path and Delivered-To added and CRLF turned into LF.
 * Creates the Maildir (and missing parents) with mode 0700. BLOCKS: run it
 * on a pool thread. Returns 0, or -1 with a reason in err and *permanent_r
 * (true: bounce, false: try again later). */
int maildir_deliver(const char *tmpl, const char *addr, const char *sender, const char *queue_id,
                    const char *hostname, const char *path, long body_offset, char *err,
                    size_t errsz, bool *permanent_r);

#endif
