/* SPDX-License-Identifier: ISC */
/*
 * test_spool.c - spool files: ids, escaping, write + commit + read back,
 * cleanup of uncommitted messages, every commit and parse error path.
 *
 * Each test works in a fresh directory under $TMPDIR (or /tmp).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/spool.h"
#include "lib/log.h"
#include "support/ut_tmp.h"

struct fixture {
	char dir[256];
};

static const struct spool_owners no_owners = {.root = false};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	const char *error = NULL;

	ut_tmp_dir(fx->dir, sizeof(fx->dir), "test_spool.");
	if (spool_init_dirs(fx->dir, &no_owners, &error) < 0) {
		fprintf(stderr, "spool_init_dirs: %s\n", error);
		return -1;
	}
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	ut_tmp_remove(fx->dir);
	free(fx);
	return 0;
}

static void
fill_envelope(struct spool_envelope *env, char **rcpts, size_t n_rcpts)
{
	memset(env, 0, sizeof(*env));
	env->time = 1700000000;
	env->client = "192.0.2.7";
	env->helo = "client.example";
	env->listener = "submission";
	env->protocol = "ESMTPSA";
	env->tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
	env->auth = "alice";
	env->mail = "<alice@example.org> SIZE=100";
	env->rcpts = rcpts;
	env->n_rcpts = n_rcpts;
}

static char *
file_contents(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, len = 0, n;

	assert_non_null(f);
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	*len_r = len;
	return buf;
}

/* ---- ids ---- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_new_id(void **state)
{
	enum { N = 20000 };
	char **ids = calloc(N, sizeof(*ids));

	for (int i = 0; i < N; i++) {
		char id[SPOOL_ID_LEN + 1];
		spool_new_id(id);
		assert_int_equal(strlen(id), SPOOL_ID_LEN);
		assert_int_equal(strspn(id, "0123456789abcdef"), SPOOL_ID_LEN);
		ids[i] = strdup(id);
		/* The first 13 digits are the time: never go backwards here. */
		if (i > 0)
			assert_true(strncmp(ids[i - 1], ids[i], 13) <= 0);
	}
	qsort(ids, N, sizeof(*ids), cmp_str);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	for (int i = 0; i < N; i++)
		free(ids[i]);
	free(ids);
}

/* ---- escaping ---- */

static const struct {
	const char *raw;
	const char *escaped;
} escape_table[] = {
        {"", ""},
        {"alice", "alice"},
        {"a b", "a%20b"},
        {"100%", "100%25"},
        {"%41", "%2541"},
        {"evil\r\nrcpt <x@y>", "evil%0D%0Arcpt%20<x@y>"},
        {"\t\x01\x1f", "%09%01%1F"},
        {"\x7f", "%7F"},
        {"\x80\xfe\xff", "%80%FE%FF"},
        {"caf\xc3\xa9", "caf%C3%A9"},
        {"!~<>\"\\", "!~<>\"\\"},
        {"<alice@example.org> SIZE=100 AUTH=<>", "<alice@example.org>%20SIZE=100%20AUTH=<>"},
};

static void
test_escape_table(void **state)
{
	for (size_t i = 0; i < AR_NELEM(escape_table); i++) {
		char *esc = spool_escape(escape_table[i].raw);
		char *back = spool_unescape(esc);
		assert_string_equal(esc, escape_table[i].escaped);
		assert_non_null(back);
		assert_string_equal(back, escape_table[i].raw);
		free(esc);
		free(back);
	}
}

static void
test_escape_all_bytes(void **state)
{
	char raw[256];
	char *esc, *back;

	for (int i = 1; i < 256; i++)
		raw[i - 1] = (char)i;
	raw[255] = '\0';
	esc = spool_escape(raw);
	for (const char *p = esc; *p; p++)
		assert_true(*p >= 0x21 && *p <= 0x7e);
	back = spool_unescape(esc);
	assert_non_null(back);
	assert_memory_equal(back, raw, 256);
	free(esc);
	free(back);
}

static void
test_unescape_malformed(void **state)
{
	static const char *const bad[] = {
	        "%",           /* truncated */
	        "a%2",         /* truncated */
	        "%G0",         /* not hex */
	        "%0g",         /* not hex */
	        "%0d",         /* lower case: not what spool_escape writes */
	        "%00",         /* NUL */
	        "%41",         /* 'A' needs no escape: two spellings of one value */
	        "a b",         /* raw space */
	        "a\tb",        /* raw control */
	        "a\rb",        /* raw CR */
	        "\x7f",        /* raw DEL */
	        "caf\xc3\xa9", /* raw 8-bit */
	};

	for (size_t i = 0; i < AR_NELEM(bad); i++) {
		char *r = spool_unescape(bad[i]);
		if (r != NULL)
			fail_msg("accepted bad[%zu]", i);
	}
}

/* ---- write, commit, read back ---- */

static void
check_envelope(const struct spool_envelope *got, const struct spool_envelope *want)
{
	assert_string_equal(got->id, want->id);
	assert_int_equal(got->time, want->time);
	assert_string_equal(got->client, want->client);
	assert_string_equal(got->helo, want->helo);
	assert_string_equal(got->listener, want->listener);
	assert_string_equal(got->protocol, want->protocol);
	assert_string_equal(got->tls, want->tls);
	if (want->auth == NULL)
		assert_null(got->auth);
	else
		assert_string_equal(got->auth, want->auth);
	assert_string_equal(got->mail, want->mail);
	assert_int_equal(got->n_rcpts, want->n_rcpts);
	for (size_t i = 0; i < want->n_rcpts; i++)
		assert_string_equal(got->rcpts[i], want->rcpts[i]);
}

static void
test_commit_read_back(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>", "<\"odd user\"@example.net> NOTIFY=NEVER",
	                 "<x%y@example.com>"};
	struct spool_envelope env, got;
	struct spool_msg *msg;
	const char *error = NULL;
	unsigned char *body;
	size_t body_len = 300000, off = 0, file_len;
	char path[512];
	char *file;
	long body_off;
	struct stat st;

	fill_envelope(&env, rcpts, AR_NELEM(rcpts));
	/* Hostile bytes in every value: CR, LF, '%', spaces, 8-bit. */
	env.client = "2001:db8::1";
	env.helo = "evil\r\nrcpt <x@y>\r\n";
	env.auth = "al%41ice\x01\xff";
	env.tls = "none";
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	assert_string_equal(env.id, spool_msg_id(msg));
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 1);

	/* Every byte value, in chunks that cross and exceed the buffer. */
	body = malloc(body_len);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (unsigned char)(i * 7 + i / 251);
	static const size_t chunks[] = {1, 0, 1000, 65535, 2, 70000, 65536, 17, 12345};
	for (size_t c = 0; off < body_len; c++) {
		size_t n = chunks[c % AR_NELEM(chunks)];
		if (n > body_len - off)
			n = body_len - off;
		assert_int_equal(spool_msg_write(msg, body + off, n), 0);
		off += n;
		assert_int_equal(spool_msg_size(msg), off);
	}
	assert_int_equal(spool_msg_commit(msg), 0);
	assert_int_equal(spool_msg_size(msg), body_len);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 1);
	spool_msg_free(msg);
	/* Freeing a committed message leaves the file alone. */
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 1);

	snprintf(path, sizeof(path), "%s/incoming/%s", fx->dir, env.id);
	assert_int_equal(stat(path, &st), 0);
	/* Group-readable: the queue reads the workers' files by its group. */
	mode_t mask = umask(0);
	umask(mask);
	assert_int_equal(st.st_mode & 07777, 0640 & ~mask);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(spool_read_envelope(path, &got, &body_off, &error), 0);
	check_envelope(&got, &env);
	file = file_contents(path, &file_len);
	assert_int_equal(file_len - (size_t)body_off, body_len);
	assert_memory_equal(file + body_off, body, body_len);
	/* The header's record text, literally. */
	assert_non_null(strstr(file, "\nhelo evil%0D%0Arcpt%20<x@y>%0D%0A\n"));
	assert_non_null(strstr(file, "\nauth al%2541ice%01%FF\n"));
	assert_non_null(strstr(file, "\nmail <alice@example.org>%20SIZE=100\n"));
	assert_true(strncmp(file, "AUTHRELAY-SPOOL 1\nid ", 21) == 0);
	free(file);
	free(body);
	spool_envelope_clear(&got);
	assert_null(got.client);
}

static void
test_commit_no_auth_empty_body(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env, got;
	struct spool_msg *msg;
	const char *error = NULL;
	char path[512];
	long body_off;
	struct stat st;

	fill_envelope(&env, rcpts, 1);
	env.auth = NULL;
	env.time = 0; /* filled in with the current time */
	env.mail = "<>";
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	assert_true(env.time > 1600000000);
	assert_int_equal(spool_msg_commit(msg), 0);
	spool_msg_free(msg);

	snprintf(path, sizeof(path), "%s/incoming/%s", fx->dir, env.id);
	assert_int_equal(spool_read_envelope(path, &got, &body_off, &error), 0);
	check_envelope(&got, &env);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, body_off);
	spool_envelope_clear(&got);
}

static void
test_free_without_commit(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	struct spool_msg *msg;
	const char *error = NULL;

	fill_envelope(&env, rcpts, 1);
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	assert_int_equal(spool_msg_write(msg, "Subject: x\r\n\r\nhi\r\n", 18), 0);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 1);
	spool_msg_free(msg);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 0);
	spool_msg_free(NULL);
}

static void
test_commit_fails_without_incoming(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	struct spool_msg *msg;
	const char *error = NULL;
	char path[512];

	fill_envelope(&env, rcpts, 1);
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	assert_int_equal(spool_msg_write(msg, "hello\r\n", 7), 0);
	snprintf(path, sizeof(path), "%s/incoming", fx->dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(spool_msg_commit(msg), -1);
	/* The tmp file is gone at once, and writing more is refused. */
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	assert_int_equal(spool_msg_write(msg, "x", 1), -1);
	spool_msg_free(msg);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
}

static void
test_commit_fails_rename_target_exists(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	struct spool_msg *msg;
	const char *error = NULL;
	char path[512];
	int fd;

	fill_envelope(&env, rcpts, 1);
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	/* Someone else's committed message with our id is never replaced. */
	snprintf(path, sizeof(path), "%s/incoming/%s", fx->dir, spool_msg_id(msg));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "other", 5), 5);
	close(fd);
	assert_int_equal(spool_msg_commit(msg), -1);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	spool_msg_free(msg);
	{
		size_t len;
		char *c = file_contents(path, &len);
		assert_int_equal(len, 5);
		assert_memory_equal(c, "other", 5);
		free(c);
	}
}

static void
test_write_error_fails_commit(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	struct spool_msg *msg;
	const char *error = NULL;
	struct rlimit old, small;
	static char big[200000];
	void (*old_handler)(int);

	fill_envelope(&env, rcpts, 1);
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_non_null(msg);
	/* A file size limit makes write(2) fail with EFBIG, like a full disk. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 16384;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(spool_msg_write(msg, big, sizeof(big)), -1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	/* The message stays bad even though the disk has room again. */
	assert_int_equal(spool_msg_write(msg, "x", 1), -1);
	assert_int_equal(spool_msg_commit(msg), -1);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 0);
	spool_msg_free(msg);
}

static void
test_new_errors(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	const char *error = NULL;
	char path[512];

	/* Required fields. */
	fill_envelope(&env, rcpts, 0);
	assert_null(spool_msg_new(fx->dir, &env, &error));
	assert_non_null(strstr(error, "rcpt"));
	fill_envelope(&env, rcpts, 1);
	env.mail = NULL;
	error = NULL;
	assert_null(spool_msg_new(fx->dir, &env, &error));
	assert_non_null(strstr(error, "mail"));
	fill_envelope(&env, rcpts, 1);
	env.client = NULL;
	assert_null(spool_msg_new(fx->dir, &env, &error));
	/* No tmp/ directory. */
	fill_envelope(&env, rcpts, 1);
	snprintf(path, sizeof(path), "%s/tmp", fx->dir);
	assert_int_equal(rmdir(path), 0);
	error = NULL;
	assert_null(spool_msg_new(fx->dir, &env, &error));
	assert_non_null(error);
	assert_non_null(strstr(error, "No such file"));
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), 0);
}

static void
test_new_envelope_write_error(void **state)
{
	struct fixture *fx = *state;
	char *rcpts[] = {"<bob@example.net>"};
	struct spool_envelope env;
	const char *error = NULL;
	struct rlimit old, tiny;
	void (*old_handler)(int);
	struct spool_msg *msg;

	/* The envelope is written at once: a full disk shows at DATA. */
	fill_envelope(&env, rcpts, 1);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	tiny = old;
	tiny.rlim_cur = 10;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	msg = spool_msg_new(fx->dir, &env, &error);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_null(msg);
	assert_non_null(error);
	assert_non_null(strstr(error, "File too large"));
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
}

static void
test_init_dirs(void **state)
{
	struct fixture *fx = *state;
	const char *error = NULL;
	char path[512], target[512];
	struct stat st;
	/* Not root: every process has one uid, only the modes apply. */
	static const struct {
		const char *name;
		mode_t mode;
	} subs[] = {
	        {"tmp", 02700},    {"incoming", 01700}, {"state", 0700},
	        {"corrupt", 0700}, {"queue-tmp", 0700}, {"private", 0700},
	};

	/* Fresh nested directory, then again: idempotent, modes repaired. */
	snprintf(path, sizeof(path), "%s/fresh", fx->dir);
	assert_int_equal(spool_init_dirs(path, &no_owners, &error), 0);
	snprintf(target, sizeof(target), "%s/fresh/tmp", fx->dir);
	assert_int_equal(chmod(target, 0755), 0);
	assert_int_equal(spool_init_dirs(path, &no_owners, &error), 0);
	for (size_t i = 0; i < AR_NELEM(subs); i++) {
		snprintf(target, sizeof(target), "%s/fresh/%s", fx->dir, subs[i].name);
		assert_int_equal(lstat(target, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 07777, subs[i].mode);
	}

	/* A symlink in place of a subdirectory is refused. */
	snprintf(path, sizeof(path), "%s/linked", fx->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(target, sizeof(target), "%s/linked/tmp", fx->dir);
	assert_int_equal(symlink(fx->dir, target), 0);
	error = NULL;
	assert_int_equal(spool_init_dirs(path, &no_owners, &error), -1);
	assert_non_null(error);

	/* The spool path is a file. */
	snprintf(path, sizeof(path), "%s/plainfile", fx->dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	error = NULL;
	assert_int_equal(spool_init_dirs(path, &no_owners, &error), -1);
	assert_non_null(error);

	/* Parent missing. */
	snprintf(path, sizeof(path), "%s/no/such/dir", fx->dir);
	assert_int_equal(spool_init_dirs(path, &no_owners, &error), -1);
}

/* As root: each folder's owner, group and mode (spool.h), the spool
 * itself root's, and a spool the workers owned before taken back. */
static void
test_init_dirs_owners(void **state)
{
	struct fixture *fx = *state;
	const struct spool_owners o = {
	        .root = true,
	        .worker_uid = 12345,
	        .worker_gid = 12346,
	        .queue_uid = 23456,
	        .queue_gid = 23457,
	};
	static const struct {
		const char *name;
		uid_t uid;
		gid_t gid;
		mode_t mode;
	} want[] = {
	        {"", 0, 0, 0711},
	        {"/tmp", 12345, 23457, 02700},
	        {"/incoming", 23456, 12346, 01770},
	        {"/state", 23456, 23457, 0700},
	        {"/corrupt", 23456, 23457, 0700},
	        {"/queue-tmp", 23456, 23457, 0700},
	        {"/private", 0, 12346, 0710},
	};
	const char *error = NULL;
	char path[512], target[600];
	struct stat st;

	if (geteuid() != 0)
		skip();
	snprintf(path, sizeof(path), "%s/owned", fx->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chown(path, 12345, 12346), 0);
	assert_int_equal(spool_init_dirs(path, &o, &error), 0);
	for (size_t i = 0; i < AR_NELEM(want); i++) {
		snprintf(target, sizeof(target), "%s%s", path, want[i].name);
		assert_int_equal(lstat(target, &st), 0);
		assert_int_equal(st.st_uid, want[i].uid);
		assert_int_equal(st.st_gid, want[i].gid);
		assert_int_equal(st.st_mode & 07777, want[i].mode);
	}
}

/* ---- strict reader ---- */

#define GOOD_HEAD "AUTHRELAY-SPOOL 1\nid 0123456789abcdef0123\ntime 1700000000\n"
#define GOOD_MID                                                                                   \
	"client 192.0.2.1\nhelo h\nlistener submission\nprotocol ESMTPA\ntls none\n"               \
	"auth alice\nmail <a@b>\n"
#define GOOD_TAIL "rcpt <c@d>\n\nbody\r\n"

static const struct {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	bool ok;
} read_table[] = {
        {"valid", GOOD_HEAD GOOD_MID GOOD_TAIL, 0, true},
        {"valid, records in another order",
         "AUTHRELAY-SPOOL 1\nrcpt <c@d>\nmail <a@b>\ntls none\nprotocol SMTP\nlistener l\n"
         "helo h\nclient c\ntime 0\nid 0123456789abcdef0123\nrcpt <e@f>\n\n",
         0, true},
        {"valid, empty value", GOOD_HEAD GOOD_MID "rcpt \n\n", 0, true},
        {"empty file", "", 0, false},
        {"bad magic", "AUTHRELAY-SPOOL\n", 0, false},
        {"version 2", "AUTHRELAY-SPOOL 2\nid 0123456789abcdef0123\n\n", 0, false},
        {"magic with CRLF", "AUTHRELAY-SPOOL 1\r\n", 0, false},
        {"unknown record", GOOD_HEAD GOOD_MID "xclient foo\n" GOOD_TAIL, 0, false},
        {"record name case", GOOD_HEAD GOOD_MID "RCPT <c@d>\n\n", 0, false},
        {"no value", GOOD_HEAD GOOD_MID "rcpt\n\n", 0, false},
        {"raw space in value", GOOD_HEAD GOOD_MID "rcpt <c@d> NOTIFY=NEVER\n\n", 0, false},
        {"CR in record", GOOD_HEAD GOOD_MID "rcpt <c@d>\r\n\n", 0, false},
        {"bad escape", GOOD_HEAD GOOD_MID "rcpt <c%2@d>\n\n", 0, false},
        {"escaped NUL", GOOD_HEAD GOOD_MID "rcpt <c%00@d>\n\n", 0, false},
        {"NUL byte", GOOD_HEAD GOOD_MID "rcpt <c\0@d>\n\n", sizeof(GOOD_HEAD GOOD_MID) + 12, false},
        {"missing rcpt", GOOD_HEAD GOOD_MID "\nbody", 0, false},
        {"missing client",
         GOOD_HEAD "helo h\nlistener l\nprotocol SMTP\ntls none\nmail <>\n" GOOD_TAIL, 0, false},
        {"missing id",
         "AUTHRELAY-SPOOL 1\ntime 1\nclient c\nhelo h\nlistener l\nprotocol SMTP\n"
         "tls none\nmail <>\n" GOOD_TAIL,
         0, false},
        {"duplicate helo", GOOD_HEAD GOOD_MID "helo again\n" GOOD_TAIL, 0, false},
        {"duplicate auth", GOOD_HEAD GOOD_MID "auth bob\n" GOOD_TAIL, 0, false},
        {"duplicate id", GOOD_HEAD "id 0123456789abcdef0123\n" GOOD_MID GOOD_TAIL, 0, false},
        {"short id", "AUTHRELAY-SPOOL 1\nid 0123\n", 0, false},
        {"upper-case id", "AUTHRELAY-SPOOL 1\nid 0123456789ABCDEF0123\n", 0, false},
        {"escaped id", "AUTHRELAY-SPOOL 1\nid 0123456789abcdef012%33\n", 0, false},
        {"negative time", "AUTHRELAY-SPOOL 1\ntime -1\n", 0, false},
        {"time with junk", "AUTHRELAY-SPOOL 1\ntime 12x\n", 0, false},
        {"empty time", "AUTHRELAY-SPOOL 1\ntime \n", 0, false},
        {"time overflow", "AUTHRELAY-SPOOL 1\ntime 9223372036854775808\n", 0, false},
        {"no blank line", GOOD_HEAD GOOD_MID "rcpt <c@d>\n", 0, false},
        {"no final newline", GOOD_HEAD GOOD_MID "rcpt <c@d>", 0, false},
};

static void
test_read_table(void **state)
{
	struct fixture *fx = *state;
	char path[512];

	snprintf(path, sizeof(path), "%s/incoming/case", fx->dir);
	for (size_t i = 0; i < AR_NELEM(read_table); i++) {
		struct spool_envelope env;
		const char *error = NULL;
		size_t len = read_table[i].len ? read_table[i].len : strlen(read_table[i].text);
		long off = -1;
		FILE *f = fopen(path, "wb");
		int r;

		assert_non_null(f);
		assert_int_equal(fwrite(read_table[i].text, 1, len, f), len);
		fclose(f);
		r = spool_read_envelope(path, &env, &off, &error);
		if (read_table[i].ok) {
			if (r != 0)
				fail_msg("%s: rejected: %s", read_table[i].name, error);
			assert_true(off > 0 && (size_t)off <= len);
			assert_int_equal(read_table[i].text[off - 1], '\n');
			assert_int_equal(read_table[i].text[off - 2], '\n');
			assert_true(env.n_rcpts >= 1);
		} else {
			if (r != -1)
				fail_msg("%s: accepted", read_table[i].name);
			assert_non_null(error);
			/* Nothing half-filled is left to free. */
			assert_null(env.client);
			assert_null(env.rcpts);
			assert_int_equal(env.n_rcpts, 0);
		}
		spool_envelope_clear(&env);
	}
}

static void
test_read_many_rcpts_and_long_line(void **state)
{
	struct fixture *fx = *state;
	char path[512];
	struct spool_envelope env;
	const char *error = NULL;
	long off;
	FILE *f;

	snprintf(path, sizeof(path), "%s/incoming/many", fx->dir);
	f = fopen(path, "wb");
	fputs(GOOD_HEAD GOOD_MID, f);
	for (int i = 0; i < 1000; i++)
		fprintf(f, "rcpt <u%d@example.com>\n", i);
	fputs("\nSubject: x\r\n\r\nbody\r\n", f);
	fclose(f);
	uint64_t size = 0;
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	/* Longer than the reader's one-read head: read through stdio. */
	assert_true(st.st_size > 16384);
	assert_int_equal(spool_read_envelope_sized(path, &env, &off, &size, &error), 0);
	assert_int_equal(env.n_rcpts, 1000);
	assert_string_equal(env.rcpts[999], "<u999@example.com>");
	assert_int_equal(size, (uint64_t)st.st_size);
	assert_int_equal(st.st_size - off, strlen("Subject: x\r\n\r\nbody\r\n"));
	spool_envelope_clear(&env);

	/* Envelopes ending on each side of the head's end, and a body with
	 * blank lines of its own: the offset is always the body's start. */
	for (int n = 615; n < 640; n++) {
		f = fopen(path, "wb");
		fputs(GOOD_HEAD GOOD_MID, f);
		for (int i = 0; i < n; i++)
			fprintf(f, "rcpt <u%05d@example.com>\n", i);
		fputs("\n\n\nbody\n\n", f);
		fclose(f);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(spool_read_envelope_sized(path, &env, &off, &size, &error), 0);
		assert_int_equal(env.n_rcpts, (size_t)n);
		assert_int_equal(st.st_size - off, strlen("\n\nbody\n\n"));
		assert_int_equal(size, (uint64_t)st.st_size);
		spool_envelope_clear(&env);
	}

	/* A line past the reader's limit is refused, not buffered forever. */
	f = fopen(path, "wb");
	fputs(GOOD_HEAD GOOD_MID "rcpt <", f);
	for (int i = 0; i < 70000; i++)
		fputc('a', f);
	fputs(">\n\n", f);
	fclose(f);
	error = NULL;
	assert_int_equal(spool_read_envelope(path, &env, &off, &error), -1);
	assert_non_null(strstr(error, "longer"));

	error = NULL;
	snprintf(path, sizeof(path), "%s/incoming/absent", fx->dir);
	assert_int_equal(spool_read_envelope(path, &env, &off, &error), -1);
	assert_non_null(error);
}

/* ---- threads: commits on pool threads while others create messages ---- */

struct thread_arg {
	const char *dir;
	int n;
	int failures;
};

static void *
commit_thread(void *p)
{
	struct thread_arg *a = p;
	char *rcpts[] = {"<bob@example.net>"};

	for (int i = 0; i < a->n; i++) {
		struct spool_envelope env;
		const char *error;
		struct spool_msg *msg;
		char line[64];
		int len = snprintf(line, sizeof(line), "message %d\r\n", i);

		fill_envelope(&env, rcpts, 1);
		msg = spool_msg_new(a->dir, &env, &error);
		if (msg == NULL || spool_msg_write(msg, line, (size_t)len) < 0 ||
		    spool_msg_commit(msg) < 0)
			a->failures++;
		spool_msg_free(msg);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	struct fixture *fx = *state;
	enum { THREADS = 4, EACH = 25 };
	pthread_t th[THREADS];
	struct thread_arg args[THREADS];

	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct thread_arg){fx->dir, EACH, 0};
		assert_int_equal(pthread_create(&th[i], NULL, commit_thread, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	assert_int_equal(ut_tmp_count(fx->dir, "incoming"), THREADS * EACH);
	assert_int_equal(ut_tmp_count(fx->dir, "tmp"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_new_id),
	        cmocka_unit_test(test_escape_table),
	        cmocka_unit_test(test_escape_all_bytes),
	        cmocka_unit_test(test_unescape_malformed),
	        cmocka_unit_test_setup_teardown(test_commit_read_back, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_no_auth_empty_body, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_free_without_commit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_fails_without_incoming, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_commit_fails_rename_target_exists, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_write_error_fails_commit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_new_envelope_write_error, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_init_dirs, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_init_dirs_owners, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_read_table, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_read_many_rcpts_and_long_line, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};

	/* The error paths under test log lines of their own; that is expected. */
	log_init(false, LOG_LEVEL_ERR, "test_spool");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
