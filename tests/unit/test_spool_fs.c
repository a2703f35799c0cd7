/* SPDX-License-Identifier: ISC */
/*
 * test_spool_fs.c - which sync call ends a group commit round: the ext4
 * options that allow one fsync of incoming/, and the method picked for a
 * real directory (whatever file system $TMPDIR is on, it must be one of the
 * three, with a description for the log).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/spool_fs.h"

static void
test_ext4_options_table(void **state)
{
	static const struct {
		const char *options;
		bool orders;
	} cases[] = {
	        /* A journaled ext4 as /proc/fs/ext4/DEV/options shows it. */
	        {"rw\nbsddf\ndelalloc\nbarrier\ndata=ordered\ncommit=5\n", true},
	        {"rw\ndata=journal\n", true},
	        {"data=ordered", true},
	        /* No journal: no data= line at all. */
	        {"rw\nbsddf\ndelalloc\nbarrier\ncommit=5\n", false},
	        {"", false},
	        /* Metadata journal only. */
	        {"rw\ndata=writeback\n", false},
	        /* Fast commits: not relied upon. */
	        {"rw\nfast_commit\ndata=ordered\n", false},
	        {"rw\ndata=ordered\nfast_commit", false},
	        /* Only whole lines count. */
	        {"rw\nxdata=ordered\n", false},
	        {"rw\ndata=ordered2\n", false},
	        {"rw\nno_fast_commit_x\ndata=ordered\n", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (spool_fs_ext4_orders_data(cases[i].options) != cases[i].orders)
			fail_msg("case %zu (%s): expected %d", i, cases[i].options,
			         cases[i].orders);
	}
}

static void
test_names(void **state)
{
	assert_string_equal(spool_fs_sync_name(SPOOL_FS_SYNC_DIR), "dir_fsync");
	assert_string_equal(spool_fs_sync_name(SPOOL_FS_SYNC_FS), "syncfs");
	assert_string_equal(spool_fs_sync_name(SPOOL_FS_SYNC_FILES), "file_fsync");
}

static void
test_method_for_tmpdir(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char desc[160] = "";
	int fd = open(tmp ? tmp : "/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	enum spool_fs_sync m = spool_fs_sync_method(fd, desc, sizeof(desc));
	close(fd);
	assert_true(m == SPOOL_FS_SYNC_DIR || m == SPOOL_FS_SYNC_FS || m == SPOOL_FS_SYNC_FILES);
	assert_true(desc[0] != '\0');
	/* Only a journaled ext4 may get the directory fsync. */
	if (m == SPOOL_FS_SYNC_DIR)
		assert_non_null(strstr(desc, "ext4"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ext4_options_table),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_method_for_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
