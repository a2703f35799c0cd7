/* SPDX-License-Identifier: ISC */
/*
 * ut_spool.c - a small message in a test spool (ut_spool.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "spool/spool.h"
#include "ut_spool.h"

struct spool_msg *
ut_spool_msg(const char *spool_dir)
{
	static const char text[] = "Subject: x\r\n\r\nhi\r\n";
	char *rc[] = {"<r@x.test>"};
	struct spool_envelope env = {
	        .client = "127.0.0.1",
	        .helo = "h",
	        .listener = "l",
	        .protocol = "ESMTP",
	        .tls = "none",
	        .mail = "<s@x.test>",
	        .rcpts = rc,
	        .n_rcpts = 1,
	};
	const char *err = NULL;
	struct spool_msg *m = spool_msg_new(spool_dir, &env, &err);

	if (m == NULL)
		print_error("spool_msg_new: %s\n", err);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, text, sizeof(text) - 1), 0);
	return m;
}
