/* SPDX-License-Identifier: ISC */
/*
 * test_safeopen.c - lib/safeopen: a symlink, a FIFO (without hanging), a
 * directory, a file of another owner and a file with a second link are
 * refused with their errno and a reason; a good file opens, for reading
 * (blocking again) and for creating. safeopen_mkdirs: creates what is
 * missing, follows symlinks in the trusted prefix only, refuses one below
 * it (whether it is the folder or a parent), and refuses "..".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/safeopen.h"
#include "support/ut_tmp.h"

static char base[64];

static int
setup(void **state)
{
	ut_tmp_dir(base, sizeof(base), "authrelay-safeopen-");
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(base);
	return 0;
}

static void
write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", base, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
base_fd(void)
{
	int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void
test_refusals(void **state)
{
	struct safeopen_expect mine = {.uids = {geteuid()}, .n_uids = 1, .single_link = true};
	struct safeopen_expect other = {.uids = {12345}, .n_uids = 1};
	const char *why = NULL;
	char path[256], target[256];
	int dfd = base_fd(), fd;

	write_file("good", "x");
	snprintf(target, sizeof(target), "%s/good", base);

	snprintf(path, sizeof(path), "%s/link", base);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(safeopen_file(dfd, "link", O_RDONLY, 0, &mine, &why), -1);
	assert_int_equal(errno, ELOOP);
	assert_string_equal(why, "a symlink (not followed)");

	snprintf(path, sizeof(path), "%s/fifo", base);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(safeopen_file(dfd, "fifo", O_RDONLY, 0, &mine, &why), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(why, "not a regular file");

	snprintf(path, sizeof(path), "%s/dir", base);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(safeopen_file(dfd, "dir", O_RDONLY, 0, NULL, &why), -1);
	assert_int_equal(errno, EINVAL);

	assert_int_equal(safeopen_file(dfd, "good", O_RDONLY, 0, &other, &why), -1);
	assert_int_equal(errno, EPERM);
	assert_non_null(strstr(why, "owned by uid"));

	snprintf(path, sizeof(path), "%s/second", base);
	assert_int_equal(link(target, path), 0);
	assert_int_equal(safeopen_file(dfd, "good", O_RDONLY, 0, &mine, &why), -1);
	assert_int_equal(errno, EMLINK);
	assert_string_equal(why, "2 hard links, not 1");
	/* Without single_link the same file is fine. */
	fd = safeopen_file(dfd, "good", O_RDONLY, 0, NULL, &why);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	assert_int_equal(unlink(path), 0);

	assert_int_equal(safeopen_file(dfd, "missing", O_RDONLY, 0, &mine, &why), -1);
	assert_int_equal(errno, ENOENT);

	/* The path form: the same checks, the folder opened first. */
	assert_true((fd = safeopen_path(target, O_RDONLY, &mine, &why)) >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/link", base);
	assert_int_equal(safeopen_path(path, O_RDONLY, &mine, &why), -1);
	assert_int_equal(errno, ELOOP);
	snprintf(path, sizeof(path), "%s/dirlink", base);
	assert_int_equal(symlink(base, path), 0);
	snprintf(path, sizeof(path), "%s/dirlink/good", base);
	assert_int_equal(safeopen_path(path, O_RDONLY, &mine, &why), -1);
	assert_int_equal(errno, ELOOP);

	/* Creating: a planted name is never written through. */
	assert_int_equal(safeopen_file(dfd, "link", O_WRONLY | O_CREAT | O_EXCL, 0600, &mine, &why),
	                 -1);
	assert_int_equal(errno, EEXIST);
	fd = safeopen_file(dfd, "new", O_WRONLY | O_CREAT | O_EXCL, 0600, &mine, &why);
	assert_true(fd >= 0);
	close(fd);
	close(dfd);
}

static void
test_mkdirs(void **state)
{
	const char *why = NULL;
	char path[256], target[256], link_path[256];
	struct stat st;
	int fd;

	/* Everything missing below the trusted prefix is made. */
	snprintf(path, sizeof(path), "%s/maildirs/alice/sub", base);
	fd = safeopen_mkdirs(path, strlen(base) + 1, 0700, &why);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	close(fd);
	/* Again: it exists (openat2's fast way, or the walk). */
	fd = safeopen_mkdirs(path, strlen(base) + 1, 0700, &why);
	assert_true(fd >= 0);
	close(fd);

	/* A symlink in the trusted prefix is the administrator's: followed. */
	snprintf(target, sizeof(target), "%s/maildirs", base);
	snprintf(link_path, sizeof(link_path), "%s/mail", base);
	assert_int_equal(symlink(target, link_path), 0);
	snprintf(path, sizeof(path), "%s/mail/bob", base);
	fd = safeopen_mkdirs(path, strlen(base) + strlen("/mail/"), 0700, &why);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/maildirs/bob", base);
	assert_int_equal(stat(path, &st), 0);

	/* Below it: refused, as the folder itself or as a parent. */
	snprintf(link_path, sizeof(link_path), "%s/maildirs/carol", base);
	assert_int_equal(symlink(target, link_path), 0);
	snprintf(path, sizeof(path), "%s/maildirs/carol", base);
	assert_int_equal(safeopen_mkdirs(path, strlen(base) + strlen("/maildirs/"), 0700, &why),
	                 -1);
	assert_int_equal(errno, ELOOP);
	assert_string_equal(why, "carol: a symlink (not followed)");
	snprintf(path, sizeof(path), "%s/maildirs/carol/x", base);
	assert_int_equal(safeopen_mkdirs(path, strlen(base) + strlen("/maildirs/"), 0700, &why),
	                 -1);
	assert_int_equal(errno, ELOOP);
	/* The whole path trusted (a template without %u): followed. */
	snprintf(path, sizeof(path), "%s/maildirs/carol", base);
	fd = safeopen_mkdirs(path, strlen(path), 0700, &why);
	assert_true(fd >= 0);
	close(fd);

	snprintf(path, sizeof(path), "%s/maildirs/../x", base);
	assert_int_equal(safeopen_mkdirs(path, strlen(base) + strlen("/maildirs/"), 0700, &why),
	                 -1);
	assert_int_equal(safeopen_mkdirs("relative/path", 0, 0700, &why), -1);
	assert_int_equal(errno, EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
