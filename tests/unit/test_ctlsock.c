/* SPDX-License-Identifier: ISC */
/*
 * test_ctlsock.c - the command line's end of a local control socket: a
 * path too long for a socket address is ENAMETOOLONG (not a cut name
 * reaching some other socket), nobody listening is the connect's errno, a
 * listener is reached, and a daemon's answer reaches the terminal without
 * its control characters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/ctlsock.h"
#include "support/ut_tmp.h"

static void
test_connect(void **state)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dir[64], longdir[200];
	int lfd, fd;

	ut_tmp_dir(dir, sizeof(dir), "test_ctlsock.");
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[sizeof(longdir) - 1] = '\0';
	errno = 0;
	assert_int_equal(ctlsock_connect(longdir, "sock"), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	errno = 0;
	assert_int_equal(ctlsock_connect(dir, "sock"), -1);
	assert_int_equal(errno, ENOENT);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	fd = ctlsock_connect(dir, "sock");
	assert_true(fd >= 0);
	close(fd);
	close(lfd);
	ut_tmp_remove(dir);
}

static void
test_print(void **state)
{
	static const char answer[] = "ok\tdone\n\x1b]0;pwned\x07\x1b[31mred\r\nlast";
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	ctlsock_print(f, answer, sizeof(answer) - 1);
	assert_int_equal(fclose(f), 0);
	assert_string_equal(out, "ok\tdone\n]0;pwned[31mred\nlast");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_connect),
	        cmocka_unit_test(test_print),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
