/*
 * ut_tmp.c - throwaway directories and small files for unit tests (ut_tmp.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
	char cmd[512];
	int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);

	/* Our own mkdtemp() names: no quote to escape. */
	assert_null(strchr(dir, '\''));
	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	assert_int_equal(system(cmd), 0);
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
