/* SPDX-License-Identifier: ISC */
/*
 * test_queue_bounce.c - RFC 3464 DSNs (bounce.h): the multipart/report
 * structure, one delivery-status block per recipient, remote versus local
 * diagnostics, delay warnings, hostile bytes kept out, a DSN written into a
 * spool and read back; Maildir paths (maildir.h) with hostile local parts
 * and a real delivery; and group commit (spool_commit.h) committing a batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "lib/log.h"
#include "lib/threadpool.h"
#include "queue/bounce.h"
#include "queue/maildir.h"
#include "spool/spool.h"
#include "spool/spool_commit.h"
#include "support/ut_tmp.h"
#include "support/ut_spool.h"

static char dir[256];

static int
setup(void **state)
{
	ut_tmp_dir(dir, sizeof(dir), "test_queue_bounce.");
	const char *err;
	const struct spool_owners not_root = {.root = false};
	assert_int_equal(spool_init_dirs(dir, &not_root, &err), 0);
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(dir);
	return 0;
}

static const struct bounce_rcpt rcpts[] = {
        {"a@far.test", "5.1.1", "550 5.1.1 <a@far.test>: no such user", "mx.far.test[192.0.2.1]:25",
         true},
        {"b\x1b[31m@far.test", "5.1.10", "Domain far.test does not accept mail (nullMX)", "none",
         false},
};

static void
test_format_failure(void **state)
{
	const char hdr[] = "From: <s@x.test>\r\nSubject: hi\r\n--boundary-like: x\r\n"
	                   "Message-ID: <m1@x.test>\r\n";
	struct bounce_params p = {
	        .hostname = "mx.test.example",
	        .queue_id = "0123456789abcdef0123",
	        .arrival = 1700000000,
	        .sender = "s@x.test",
	        .rcpts = rcpts,
	        .n_rcpts = 2,
	};
	size_t len;
	char *t = bounce_format(&p, hdr, strlen(hdr), &len);
	assert_int_equal(strlen(t), len);
	assert_non_null(strstr(t, "Content-Type: multipart/report; report-type=delivery-status;"));
	assert_non_null(strstr(t, "Subject: Undelivered Mail Returned to Sender\r\n"));
	assert_non_null(strstr(t, "Auto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(t, "Content-Type: message/delivery-status\r\n"));
	assert_non_null(strstr(t, "Reporting-MTA: dns; mx.test.example\r\n"));
	assert_non_null(strstr(t,
	                       "Final-Recipient: rfc822; a@far.test\r\nAction: failed\r\n"
	                       "Status: 5.1.1\r\nRemote-MTA: dns; mx.far.test\r\n"
	                       "Diagnostic-Code: smtp; 550 5.1.1 <a@far.test>: no such user\r\n"));
	assert_non_null(strstr(t, "Status: 5.1.10\r\nDiagnostic-Code: X-Authrelay; Domain"));
	assert_non_null(strstr(t, "Content-Type: text/rfc822-headers\r\n"));
	assert_non_null(strstr(t, "Message-ID: <m1@x.test>\r\n"));
	/* A header line starting with "--" cannot end the MIME part. */
	assert_non_null(strstr(t, "\r\n --boundary-like: x\r\n"));
	/* 7-bit only, no raw escape sequence from the recipient. */
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)t[i] < 0x80 && t[i] != 0x1b);
	/* Every line ends in CRLF. */
	for (size_t i = 0; i < len; i++)
		if (t[i] == '\n')
			assert_true(i > 0 && t[i - 1] == '\r');
	free(t);
}

static void
test_format_delay(void **state)
{
	struct bounce_params p = {
	        .hostname = "mx.test.example",
	        .queue_id = "0123456789abcdef0123",
	        .arrival = 1700000000,
	        .sender = "s@x.test",
	        .rcpts = rcpts,
	        .n_rcpts = 1,
	        .delayed = true,
	        .retry_until = 1700432000,
	};
	size_t len;
	char *t = bounce_format(&p, NULL, 0, &len);
	assert_non_null(strstr(t, "Subject: Delayed Mail (still being retried)\r\n"));
	assert_non_null(strstr(t, "Action: delayed\r\n"));
	assert_non_null(strstr(t, "Will-Retry-Until: "));
	assert_null(strstr(t, "b@far.test"));
	free(t);
}

static void
test_write_into_spool(void **state)
{
	char orig[400], id[32];
	snprintf(orig, sizeof(orig), "%s/orig", dir);
	FILE *f = fopen(orig, "w");
	fputs("AUTHRELAY-SPOOL 1\n\nSubject: x\r\nMessage-ID: <o@x.test>\r\n\r\nbody\r\n", f);
	fclose(f);
	struct bounce_params p = {
	        .spool_dir = dir,
	        .hostname = "mx.test.example",
	        .queue_id = "0123456789abcdef0123",
	        .arrival = 1700000000,
	        .sender = "s@x.test",
	        .rcpts = rcpts,
	        .n_rcpts = 1,
	        .orig_path = orig,
	        .body_offset = 19,
	};
	const char *err;
	struct spool_msg *m = bounce_write(&p, id, &err);
	assert_non_null(m);
	assert_int_equal(spool_msg_commit(m), 0);
	spool_msg_free(m);
	char path[400];
	snprintf(path, sizeof(path), "%s/incoming/%s", dir, id);
	struct spool_envelope env;
	long off;
	assert_int_equal(spool_read_envelope(path, &env, &off, &err), 0);
	assert_string_equal(env.mail, "<>");
	assert_int_equal(env.n_rcpts, 1);
	assert_string_equal(env.rcpts[0], "<s@x.test>");
	spool_envelope_clear(&env);
	f = fopen(path, "r");
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_non_null(strstr(buf, "Message-ID: <o@x.test>\r\n"));
	assert_null(strstr(buf, "body"));
}

static void
test_maildir_expand(void **state)
{
	static const struct {
		const char *tmpl, *addr, *want;
	} c[] = {
	        {"/m/%d/%u", "Alice@Example.TEST", "/m/example.test/Alice"},
	        {"/m/%u/Maildir", "bob@x.test", "/m/bob/Maildir"},
	        {"/m/100%%/%u", "c@x.test", "/m/100%/c"},
	        {"/m/%u", "../etc@x.test", NULL},
	        {"/m/%u", "a/b@x.test", NULL},
	        {"/m/%u", ".hidden@x.test", NULL},
	        {"/m/%u", "sp ace@x.test", NULL},
	        {"/m/%u", "@x.test", NULL},
	        {"/m/%d/%u", "a@../x", NULL},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *got = maildir_expand(c[i].tmpl, c[i].addr);
		if (c[i].want == NULL) {
			if (got != NULL)
				fail_msg("%s accepted as %s", c[i].addr, got);
		} else {
			assert_non_null(got);
			assert_string_equal(got, c[i].want);
		}
		free(got);
	}
}

static void
test_maildir_deliver(void **state)
{
	char orig[400], tmpl[400], err[256], newdir[500];
	bool permanent;
	snprintf(orig, sizeof(orig), "%s/orig", dir);
	FILE *f = fopen(orig, "w");
	fputs("AUTHRELAY-SPOOL 1\n\nSubject: x\r\n\r\nline\r\n", f);
	fclose(f);
	snprintf(tmpl, sizeof(tmpl), "%s/mail/%%d/%%u", dir);
	assert_int_equal(maildir_deliver(tmpl, "u@x.test", "s@y.test", "0123456789abcdef0123",
	                                 "mx.test", orig, 19, err, sizeof(err), &permanent),
	                 0);
	snprintf(newdir, sizeof(newdir), "%s/mail/x.test/u/new", dir);
	DIR *d = opendir(newdir);
	assert_non_null(d);
	struct dirent *de;
	int files = 0;
	char content[256] = "";
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		files++;
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", newdir, de->d_name);
		FILE *g = fopen(p, "r");
		size_t n = fread(content, 1, sizeof(content) - 1, g);
		content[n] = '\0';
		fclose(g);
	}
	closedir(d);
	assert_int_equal(files, 1);
	assert_string_equal(content, "Return-Path: <s@y.test>\nDelivered-To: u@x.test\n"
	                             "Subject: x\n\nline\n");
	assert_int_equal(maildir_deliver(tmpl, "../x@x.test", "s@y.test", "0123456789abcdef0123",
	                                 "mx.test", orig, 19, err, sizeof(err), &permanent),
	                 -1);
	assert_true(permanent);
}

static int commits_done, commits_ok;
static void
commit_cb(struct spool_msg *msg, int result, void *arg)
{
	commits_done++;
	commits_ok += result == 0;
	spool_msg_free(msg);
	if (commits_done == 20)
		event_base_loopbreak(arg);
}

static void
test_group_commit(void **state)
{
	for (int group = 0; group < 2; group++) {
		struct event_base *base = event_base_new();
		struct threadpool *pool = threadpool_new(base, 2);
		struct spool_committer *c = spool_committer_new(base, group, pool);
		commits_done = commits_ok = 0;
		for (int i = 0; i < 20; i++)
			spool_committer_submit(c, ut_spool_msg(dir), commit_cb, base);
		event_base_dispatch(base);
		assert_int_equal(commits_ok, 20);
		unsigned long rounds, msgs;
		spool_committer_stats(c, &rounds, &msgs);
		assert_int_equal(msgs, 20);
		if (group)
			assert_true(rounds >= 1 && rounds <= 20);
		spool_committer_free(c);
		threadpool_free(pool);
		event_base_free(base);
	}
	assert_int_equal(ut_tmp_count(dir, "incoming"), 40);
}

int
main(void)
{
	log_init(false, LOG_LEVEL_ERR, "test");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_format_failure),
	        cmocka_unit_test(test_format_delay),
	        cmocka_unit_test_setup_teardown(test_write_into_spool, setup, teardown),
	        cmocka_unit_test(test_maildir_expand),
	        cmocka_unit_test_setup_teardown(test_maildir_deliver, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
