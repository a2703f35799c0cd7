/* SPDX-License-Identifier: ISC */
/*
 * ut_spool.h - unit-test helper: a small message in a test spool, for the
 * tests of what commits, journals or bounces messages rather than of how
 * the spool writes them (test_spool.c does that with envelopes of its own).
 */
#ifndef UT_SPOOL_H
#define UT_SPOOL_H

struct spool_msg;

/* A message from <s@x.test> to <r@x.test> (client 127.0.0.1, ESMTP, no
 * TLS) in spool_dir, made by spool_init_dirs(), with a short header and
 * body written and nothing committed. The caller commits or frees it. */
struct spool_msg *ut_spool_msg(const char *spool_dir);

#endif
