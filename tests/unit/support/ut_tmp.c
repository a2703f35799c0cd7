/* SPDX-License-Identifier: ISC */
/*
 * ut_tmp.c - throwaway directories and small files for unit tests (ut_tmp.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ut_tmp.h"

void
ut_tmp_dir(char *buf, size_t sz, const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(buf, sz, "%s/%sXXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp",
	                 prefix);

	assert_true(n > 0 && (size_t)n < sz);
	assert_non_null(mkdtemp(buf));
}

void
ut_tmp_remove(const char *dir)
{
	char cmd[1100];
	/* chmod -R opens each directory up before it goes in. */
	int n = snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir,
	                 dir);

	/* Our own mkdtemp() names: no quote to escape. */
	assert_null(strchr(dir, '\''));
	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	assert_int_equal(system(cmd), 0);
}

int
ut_tmp_count(const char *dir, const char *sub)
{
	char path[1024];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s%s%s", dir, sub != NULL ? "/" : "", sub != NULL ? sub : "");
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

void
ut_tmp_write(const char *path, const char *text)
{
	char tmp[512];
	FILE *f;

	assert_true((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) < sizeof(tmp));
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fchmod(fileno(f), 0600), 0);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

char *
ut_tmp_read(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}
