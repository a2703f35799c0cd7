/* SPDX-License-Identifier: ISC */
/*
 * test_auth_file.c - the users-file source through a real event_base and
 * thread pool: parsing (comments, extra fields, every kind of bad line),
 * lookup rules (exact local part, case-insensitive domain), every reason,
 * CRAM-MD5 (RFC 2195 2 example), caps, reload keeping the old table on error,
 * and freeing with checks still queued.
 *
 * The auth server is not linked: this file stands in for it with its own
 * struct auth_job, auth_job_request() and auth_job_done(), which is all a
 * source sees of the server (auth_source.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth_source.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/threadpool.h"
#include "support/ut_tmp.h"

#define SSHA_CH "{SSHA}+YQAsRCIvJdvIWRvF/AslPn4IMwGH/vq" /* "correct horse" */
#define SHA512C_CH                                                                                 \
	"$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/GV3A8SkFxEPY0T56CcilGrHK"   \
	"LffBsp6dLMG."
#define ARGON_CH                                                                                   \
	"$argon2id$v=19$m=4096,t=2,p=1$c2FsdHlzYWx0c2FsdA$0EDzCg712BDIk8YvAwFyStdwKhoPL4mMfmfN/"   \
	"ImNPJY"
#define MD5C_CH "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80"
#define RFC2195_CHALLENGE "<1896.697170952@postoffice.reston.mci.net>"
#define RFC2195_DIGEST "b913a602c7eda7a495b4e6e7334d3890"

static const char users_v1[] = "# users for the test\n"
                               "   # an indented comment\n"
                               "\n"
                               "  \t \n"
                               "alice@example.org:" SSHA_CH "\n"
                               "Bob:" SHA512C_CH ":1000:1000:Bob B.:/home/bob\n"
                               "tim:{PLAIN}tanstaaftanstaaf\n"
                               "carol@Example.COM:" ARGON_CH "\n"
                               "dave:{FOO}bar\n"
                               "nocolon\n"
                               ":nouser\n"
                               "emptyhash:\n"
                               "bad user:{PLAIN}x\n"
                               "alice@EXAMPLE.org:{PLAIN}duplicate\n"
                               "crlf:{PLAIN}pw\r\n"
                               "colon:{CLEARTEXT}pass:word\n"
                               "md5:" MD5C_CH ":md5@example.org,M.D5@Example.org,not one,x@\n"
                               "last-without-newline:{PLAIN}eof";

/* Reload: alice changes password, tim loses his cleartext. */
static const char users_v2[] = "alice@example.org:{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=\n"
                               "tim:" MD5C_CH "\n";

struct auth_job {
	struct auth_request req;
	struct harness *h;
	/* Filled by auth_job_done(). */
	bool *done;
	enum auth_result *result;
	char *identity;
	char *reason;
	char *addresses;
	size_t identity_sz, reason_sz, addresses_sz;
};

struct harness {
	char dir[64];
	char path[96];
	struct config *cfg;
	struct event_base *base;
	struct threadpool *pool;
	struct auth_env env;
	void *state;
	unsigned outstanding;
	unsigned done_calls;
};

const struct auth_request *
auth_job_request(const struct auth_job *job)
{
	return &job->req;
}

void
auth_job_done(struct auth_job *job, enum auth_result result, const char *identity,
              enum auth_reason reason)
{
	struct harness *h = job->h;

	assert_false(*job->done);
	*job->done = true;
	*job->result = result;
	snprintf(job->identity, job->identity_sz, "%s", identity != NULL ? identity : "(null)");
	/* The log word: what an admin greps for. */
	snprintf(job->reason, job->reason_sz, "%s", auth_reason_name(reason));
	free(job);
	h->done_calls++;
	if (--h->outstanding == 0)
		event_base_loopbreak(h->base);
}

/* The user's addresses (the file's third field), handed over before an
 * AUTH_OK. */
void
auth_job_set_addresses(struct auth_job *job, const char *addresses)
{
	snprintf(job->addresses, job->addresses_sz, "%s", addresses);
}

static int
setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));
	const char *err = NULL;

	ut_tmp_dir(h->dir, sizeof(h->dir), "authrelay-test-");
	snprintf(h->path, sizeof(h->path), "%s/users", h->dir);
	ut_tmp_write(h->path, users_v1);
	h->cfg = calloc(1, sizeof(*h->cfg));
	h->cfg->users_file = h->path;
	h->cfg->auth_threads = 2;
	h->base = event_base_new();
	h->pool = threadpool_new(h->base, 2);
	h->env = (struct auth_env){.cfg = h->cfg, .base = h->base, .pool = h->pool};
	assert_true(auth_source_file.configured(h->cfg));
	assert_int_equal(auth_source_file.init(&h->env, &h->state, &err), 0);
	*state = h;
	return 0;
}

static int
teardown(void **state)
{
	struct harness *h = *state;
	char tmp[128];

	threadpool_free(h->pool);
	auth_source_file.free(h->state);
	event_base_free(h->base);
	unlink(h->path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", h->path);
	unlink(tmp);
	rmdir(h->dir);
	free(h->cfg);
	free(h);
	return 0;
}

struct row {
	const char *mech, *login, *secret;
	size_t secret_len; /* 0: strlen(secret) */
	const char *challenge;
	enum auth_result want;
	const char *reason;
	const char *identity; /* on AUTH_OK */
};

struct answer {
	bool done;
	enum auth_result result;
	char identity[600];
	char reason[64];
	char addresses[256];
};

static struct auth_job *
make_job(struct harness *h, const struct row *r, struct answer *a)
{
	struct auth_job *j = calloc(1, sizeof(*j));

	j->h = h;
	j->req.mech = r->mech;
	j->req.login = r->login;
	j->req.secret = r->secret;
	j->req.secret_len = r->secret_len ? r->secret_len : strlen(r->secret);
	j->req.challenge = r->challenge ? r->challenge : "";
	j->req.session = "t1";
	j->req.client = "127.0.0.1";
	j->req.listener = "submission";
	j->done = &a->done;
	j->result = &a->result;
	j->identity = a->identity;
	j->identity_sz = sizeof(a->identity);
	j->reason = a->reason;
	j->reason_sz = sizeof(a->reason);
	j->addresses = a->addresses;
	j->addresses_sz = sizeof(a->addresses);
	return j;
}

/* Run every row at once (they overlap on the pool), then check each. */
static void
run_rows(struct harness *h, const struct row *rows, size_t n)
{
	struct answer *ans = calloc(n, sizeof(*ans));
	struct timeval tv = {30, 0};

	for (size_t i = 0; i < n; i++) {
		h->outstanding++;
		auth_source_file.verify(h->state, make_job(h, &rows[i], &ans[i]));
	}
	if (h->outstanding > 0) {
		event_base_loopexit(h->base, &tv);
		assert_int_equal(event_base_dispatch(h->base), 0);
	}
	for (size_t i = 0; i < n; i++) {
		print_message("  %s %s -> %d %s\n", rows[i].mech, rows[i].login, ans[i].result,
		              ans[i].reason);
		assert_true(ans[i].done);
		assert_int_equal(ans[i].result, rows[i].want);
		assert_string_equal(ans[i].reason, rows[i].reason);
		if (rows[i].want == AUTH_OK)
			assert_string_equal(ans[i].identity, rows[i].identity);
	}
	assert_int_equal(h->outstanding, 0);
	free(ans);
}

#define PW "correct horse"

static void
test_verify_rows(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "alice@example.org", PW, 0, NULL, AUTH_OK, "ok", "alice@example.org"},
	        /* Domain: any case; identity is the file's spelling. */
	        {"PLAIN", "alice@EXAMPLE.ORG", PW, 0, NULL, AUTH_OK, "ok", "alice@example.org"},
	        {"LOGIN", "carol@example.com", PW, 0, NULL, AUTH_OK, "ok", "carol@Example.COM"},
	        /* Local part: exact. */
	        {"PLAIN", "Alice@example.org", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "alice", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "alice@example.org.", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "alice@example.org", "correct horsE", 0, NULL, AUTH_FAIL, "bad_password",
	         NULL},
	        {"plain", "alice@example.org", PW, 0, NULL, AUTH_OK, "ok", "alice@example.org"},
	        /* Extra fields after the hash are ignored. */
	        {"LOGIN", "Bob", PW, 0, NULL, AUTH_OK, "ok", "Bob"},
	        {"LOGIN", "bob", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "Bob", "wrong", 0, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "tim", "tanstaaftanstaaf", 0, NULL, AUTH_OK, "ok", "tim"},
	        {"PLAIN", "tim@example.org", "tanstaaftanstaaf", 0, NULL, AUTH_FAIL, "unknown_user",
	         NULL},
	        {"PLAIN", "tim", "tanstaaf\0tanstaaf", 17, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "dave", "bar", 0, NULL, AUTH_FAIL, "unsupported_hash", NULL},
	        {"PLAIN", "md5", PW, 0, NULL, AUTH_OK, "ok", "md5"},
	        {"PLAIN", "crlf", "pw", 0, NULL, AUTH_OK, "ok", "crlf"},
	        /* A second ':' ends the hash, even a cleartext one. */
	        {"PLAIN", "colon", "pass:word", 0, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "colon", "pass", 0, NULL, AUTH_OK, "ok", "colon"},
	        {"PLAIN", "last-without-newline", "eof", 0, NULL, AUTH_OK, "ok",
	         "last-without-newline"},
	        /* Skipped lines define nobody. */
	        {"PLAIN", "nocolon", "x", 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "emptyhash", "x", 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "bad user", "x", 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "bad", "x", 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"PLAIN", "", "x", 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        /* The duplicate did not replace the first entry. */
	        {"PLAIN", "alice@example.org", "duplicate", 0, NULL, AUTH_FAIL, "bad_password",
	         NULL},
	        {"PLAIN", "nobody", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"DIGEST-MD5", "tim", "x", 0, NULL, AUTH_FAIL, "mech_unavailable", NULL},
	        /* CRAM-MD5: RFC 2195 2's own example. */
	        {"CRAM-MD5", "tim", RFC2195_DIGEST, 0, RFC2195_CHALLENGE, AUTH_OK, "ok", "tim"},
	        {"CRAM-MD5", "tim", "B913A602C7EDA7A495B4E6E7334D3890", 0, RFC2195_CHALLENGE,
	         AUTH_OK, "ok", "tim"},
	        {"CRAM-MD5", "tim", "b913a602c7eda7a495b4e6e7334d3891", 0, RFC2195_CHALLENGE,
	         AUTH_FAIL, "bad_password", NULL},
	        {"CRAM-MD5", "tim", RFC2195_DIGEST, 0, "<other@challenge>", AUTH_FAIL,
	         "bad_password", NULL},
	        {"CRAM-MD5", "tim", "b913a602c7eda7a495b4e6e7334d389", 0, RFC2195_CHALLENGE,
	         AUTH_FAIL, "bad_password", NULL},
	        {"CRAM-MD5", "colon", "be112bc91736ae976eaf433774265bfd", 0, "<1.2@host>",
	         AUTH_FAIL, "bad_password", NULL},
	        {"CRAM-MD5", "alice@example.org", RFC2195_DIGEST, 0, RFC2195_CHALLENGE, AUTH_FAIL,
	         "mech_unavailable", NULL},
	        {"CRAM-MD5", "nobody", RFC2195_DIGEST, 0, RFC2195_CHALLENGE, AUTH_FAIL,
	         "unknown_user", NULL},
	};
	struct harness *h = *state;

	run_rows(h, rows, sizeof(rows) / sizeof(rows[0]));
}

/* An empty secret fails at once even where "{PLAIN}" would match it. */
static void
test_empty_secret(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "tim", "", 0, NULL, AUTH_FAIL, "bad_password", NULL},
	};
	struct harness *h = *state;
	struct answer a = {0};
	struct auth_job *j = make_job(h, &rows[0], &a);

	j->req.secret_len = 0;
	h->outstanding++;
	auth_source_file.verify(h->state, j);
	assert_true(a.done);
	assert_int_equal(a.result, AUTH_FAIL);
	assert_string_equal(a.reason, "bad_password");
}

static void
test_caps_and_reload(void **state)
{
	static const struct row after[] = {
	        {"PLAIN", "alice@example.org", PW, 0, NULL, AUTH_OK, "ok", "alice@example.org"},
	        {"PLAIN", "tim", PW, 0, NULL, AUTH_OK, "ok", "tim"},
	        {"PLAIN", "tim", "tanstaaftanstaaf", 0, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"CRAM-MD5", "tim", RFC2195_DIGEST, 0, RFC2195_CHALLENGE, AUTH_FAIL,
	         "mech_unavailable", NULL},
	        {"PLAIN", "Bob", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	};
	struct harness *h = *state;
	const char *err = NULL;

	assert_int_equal(auth_source_file.caps(h->state), AUTH_CAP_CRAM_MD5);
	ut_tmp_write(h->path, users_v2);
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	assert_int_equal(auth_source_file.caps(h->state), 0);
	run_rows(h, after, sizeof(after) / sizeof(after[0]));

	/* A reload that fails keeps the table it had. */
	unlink(h->path);
	assert_int_equal(auth_source_file.reload(h->state, &err), -1);
	assert_non_null(strstr(err, h->path));
	run_rows(h, after, sizeof(after) / sizeof(after[0]));
	/* A directory reads as an I/O error. */
	assert_int_equal(mkdir(h->path, 0700), 0);
	assert_int_equal(auth_source_file.reload(h->state, &err), -1);
	assert_int_equal(rmdir(h->path), 0);
	run_rows(h, after, sizeof(after) / sizeof(after[0]));
	ut_tmp_write(h->path, users_v1);
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	assert_int_equal(auth_source_file.caps(h->state), AUTH_CAP_CRAM_MD5);
}

/* Reload while checks are queued: they finish against the data they
 * started with. */
static void
test_reload_during_checks(void **state)
{
	enum { N = 40 };
	static const struct row r = {"PLAIN", "Bob", PW, 0, NULL, AUTH_OK, "ok", "Bob"};
	struct harness *h = *state;
	struct answer ans[N];
	struct timeval tv = {30, 0};
	const char *err = NULL;

	memset(ans, 0, sizeof(ans));
	for (int i = 0; i < N; i++) {
		h->outstanding++;
		auth_source_file.verify(h->state, make_job(h, &r, &ans[i]));
	}
	ut_tmp_write(h->path, users_v2);
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	event_base_loopexit(h->base, &tv);
	assert_int_equal(event_base_dispatch(h->base), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(ans[i].result, AUTH_OK);
		assert_string_equal(ans[i].identity, "Bob");
	}
}

static void
test_init_errors(void **state)
{
	struct config cfg;
	struct event_base *base = event_base_new();
	struct threadpool *pool = threadpool_new(base, 1);
	struct auth_env env = {.cfg = &cfg, .base = base, .pool = pool};
	const char *err = NULL;
	void *st = NULL;

	memset(&cfg, 0, sizeof(cfg));
	assert_false(auth_source_file.configured(&cfg));
	cfg.users_file = "";
	assert_false(auth_source_file.configured(&cfg));
	cfg.users_file = "/nonexistent/authrelay/users";
	assert_true(auth_source_file.configured(&cfg));
	assert_int_equal(auth_source_file.init(&env, &st, &err), -1);
	assert_non_null(strstr(err, "/nonexistent/authrelay/users"));
	assert_null(st);
	threadpool_free(pool);
	event_base_free(base);
}

/* An empty file loads (nobody can log in) and still burns time on the
 * fallback dummy hash. */
static void
test_empty_file(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "anyone", PW, 0, NULL, AUTH_FAIL, "unknown_user", NULL},
	        {"CRAM-MD5", "anyone", RFC2195_DIGEST, 0, RFC2195_CHALLENGE, AUTH_FAIL,
	         "unknown_user", NULL},
	};
	struct harness *h = *state;
	const char *err = NULL;

	ut_tmp_write(h->path, "# nobody yet\n");
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	assert_int_equal(auth_source_file.caps(h->state), 0);
	run_rows(h, rows, sizeof(rows) / sizeof(rows[0]));
}

/* Many users: the table grows and every one is found. */
static void
test_many_users(void **state)
{
	enum { N = 3000 };
	struct harness *h = *state;
	size_t cap = (size_t)N * 64, len = 0;
	char *text = malloc(cap);
	struct row *rows = calloc(N, sizeof(*rows));
	char(*names)[32] = calloc(N, sizeof(*names));
	const char *err = NULL;

	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "user%d@Dom%d.example", i, i % 7);
		len += (size_t)snprintf(text + len, cap - len, "%s:{PLAIN}pw%d\n", names[i], i);
	}
	ut_tmp_write(h->path, text);
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	for (int i = 0; i < N; i++) {
		static char pws[N][16];
		snprintf(pws[i], sizeof(pws[i]), "pw%d", i);
		rows[i] = (struct row){"PLAIN", names[i], pws[i], 0, NULL, AUTH_OK, "ok", names[i]};
	}
	run_rows(h, rows, N);
	free(names);
	free(rows);
	free(text);
}

/* Freeing with checks still queued: the pool goes first (as the auth server
 * does it), no done callback runs, nothing leaks (ASan checks that). */
static void
test_free_with_checks_queued(void **state)
{
	static const struct row r = {"PLAIN", "carol@example.com", PW, 0, NULL, AUTH_OK, "ok", ""};
	struct harness *h = *state;
	struct answer ans[8];
	struct auth_job *jobs[8];

	memset(ans, 0, sizeof(ans));
	for (int i = 0; i < 8; i++) {
		jobs[i] = make_job(h, &r, &ans[i]);
		auth_source_file.verify(h->state, jobs[i]);
	}
	threadpool_free(h->pool);
	h->pool = threadpool_new(h->base, 1); /* for teardown */
	auth_source_file.free(h->state);
	h->state = NULL;
	for (int i = 0; i < 8; i++) {
		assert_false(ans[i].done);
		free(jobs[i]); /* the server frees its own jobs */
	}
	assert_int_equal(h->done_calls, 0);
}

/* The third field: the user's addresses, the bad ones left out; none for a
 * user without the field, nor for a failed login. */
static void
test_addresses(void **state)
{
	static const struct row rows[] = {
	        {"PLAIN", "md5", PW, 0, NULL, AUTH_OK, "ok", "md5"},
	        {"PLAIN", "tim", "tanstaaftanstaaf", 0, NULL, AUTH_OK, "ok", "tim"},
	        {"PLAIN", "md5", "wrong", 0, NULL, AUTH_FAIL, "bad_password", NULL},
	        {"PLAIN", "Bob", PW, 0, NULL, AUTH_OK, "ok", "Bob"}, /* "1000": no address */
	};
	static const char *const want[] = {"md5@example.org,M.D5@Example.org", "", "", ""};
	struct harness *h = *state;
	struct answer ans[4];

	memset(ans, 0, sizeof(ans));
	for (size_t i = 0; i < 4; i++) {
		h->outstanding++;
		auth_source_file.verify(h->state, make_job(h, &rows[i], &ans[i]));
	}
	event_base_dispatch(h->base);
	for (size_t i = 0; i < 4; i++) {
		assert_true(ans[i].done);
		assert_int_equal(ans[i].result, rows[i].want);
		assert_string_equal(ans[i].addresses, want[i]);
	}
}

/* Bad lines are warned about with file:line; a world-readable file too. */
static void
test_warnings(void **state)
{
	static const char *const want[] = {
	        "users:9: warning: hash format not supported",
	        "users:10: warning: no ':' between user and hash",
	        "users:11: warning: empty user",
	        "users:12: warning: empty hash",
	        "users:13: warning: empty user, or a blank",
	        "users:14: warning: user already defined at line 5",
	        "users:17: warning: an item of the addresses field (the third) is not an address",
	        "users:0: warning: readable by every user",
	        "users=9 skipped=5 cram_md5=yes",
	};
	struct harness *h = *state;
	char logpath[128], buf[8192];
	const char *err = NULL;
	int saved = dup(2), fd;
	ssize_t n;

	snprintf(logpath, sizeof(logpath), "%s/log", h->dir);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(chmod(h->path, 0644), 0);
	log_set_level(LOG_LEVEL_INFO);
	dup2(fd, 2);
	assert_int_equal(auth_source_file.reload(h->state, &err), 0);
	dup2(saved, 2);
	close(saved);
	log_set_level(LOG_LEVEL_ERR);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	close(fd);
	unlink(logpath);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		print_message("  %s\n", want[i]);
		assert_non_null(strstr(buf, want[i]));
	}
	/* Hashes and cleartext never reach the log. */
	assert_null(strstr(buf, "tanstaaf"));
	assert_null(strstr(buf, "duplicate"));
	assert_null(strstr(buf, "{FOO}"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_verify_rows, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_empty_secret, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_caps_and_reload, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reload_during_checks, setup, teardown),
	        cmocka_unit_test(test_init_errors),
	        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_many_users, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_free_with_checks_queued, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_warnings, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
	};

	/* Quiet; test_warnings looks at what the source logs. */
	log_init(false, LOG_LEVEL_ERR, "test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
