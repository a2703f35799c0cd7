/* SPDX-License-Identifier: ISC */
/*
 * test_file_probe.c - opening files as another user (src/master/file_probe.c):
 * readable, closed, missing, the wrong kind, a directory entered as root
 * first (via_dir), directories to enter or to write in, and the reasons
 * check-config prints. The probes as "nobody" need root (skipped without).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/file_probe.h"
#include "support/ut_tmp.h"

static char dir[64];

static void
make_file(const char *name, mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("x\n", f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void
make_subdir(const char *name, mode_t mode)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(mkdir(path, mode), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static int
setup(void **state)
{
	ut_tmp_dir(dir, sizeof(dir), "test_file_probe.");
	assert_int_equal(chmod(dir, 0755), 0);
	make_file("open", 0644);
	make_file("closed", 0600);
	make_subdir("d755", 0755);
	make_subdir("d700", 0700);
	make_subdir("d777", 0777);
	make_subdir("shut", 0700);
	make_subdir("shut/in", 0755);
	make_file("shut/in/file", 0644);
	make_subdir("shut/in/closed-dir", 0700);
	make_file("shut/in/closed-dir/file", 0644);
	log_init(false, LOG_LEVEL_ERR, "test");
	return 0;
}

static int
teardown(void **state)
{
	ut_tmp_remove(dir);
	return 0;
}

struct row {
	const char *name; /* under dir */
	enum file_probe_need need;
	bool via_dir;
	int as_nobody; /* the error as nobody */
	int as_root;   /* as this process (root) */
};

static const struct row rows[] = {
        {"open", FILE_PROBE_READ, false, 0, 0},
        {"closed", FILE_PROBE_READ, false, EACCES, 0},
        {"missing", FILE_PROBE_READ, false, ENOENT, ENOENT},
        {"d755", FILE_PROBE_READ, false, FILE_PROBE_WRONG_KIND, FILE_PROBE_WRONG_KIND},
        {"d755", FILE_PROBE_SEARCH, false, 0, 0},
        {"d755", FILE_PROBE_WRITE, false, EACCES, 0},
        {"d777", FILE_PROBE_WRITE, false, 0, 0},
        {"d700", FILE_PROBE_SEARCH, false, EACCES, 0},
        {"open", FILE_PROBE_SEARCH, false, FILE_PROBE_WRONG_KIND, FILE_PROBE_WRONG_KIND},
        {"open/x", FILE_PROBE_READ, false, ENOTDIR, ENOTDIR},
        /* Above the file, "shut" is closed: by path the user cannot reach
         * it, from its directory entered as root it can. */
        {"shut/in/file", FILE_PROBE_READ, false, EACCES, 0},
        {"shut/in/file", FILE_PROBE_READ, true, 0, 0},
        /* ...but the directory itself must be open to the user. */
        {"shut/in/closed-dir/file", FILE_PROBE_READ, true, EACCES, 0},
        {"shut/missing/file", FILE_PROBE_READ, true, ENOENT, ENOENT},
};

static void
run_rows(const struct privdrop_user *u)
{
	struct file_probe probes[AR_NELEM(rows)];
	char paths[AR_NELEM(rows)][256];
	const char *err = NULL;

	memset(probes, 0, sizeof(probes));
	for (size_t i = 0; i < AR_NELEM(rows); i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, rows[i].name);
		probes[i].path = paths[i];
		probes[i].need = rows[i].need;
		probes[i].via_dir = rows[i].via_dir;
		probes[i].error = 12345;
	}
	assert_int_equal(file_probe_run(u, probes, AR_NELEM(rows), &err), 0);
	for (size_t i = 0; i < AR_NELEM(rows); i++) {
		int want = u != NULL ? rows[i].as_nobody : rows[i].as_root;
		if (probes[i].error != want)
			fail_msg("%s (need %d%s) as %s: want %d, got %d", rows[i].name,
			         (int)rows[i].need, rows[i].via_dir ? ", via its dir" : "",
			         u != NULL ? u->name : "root", want, probes[i].error);
	}
}

static void
test_as_nobody(void **state)
{
	struct privdrop_user u;
	const char *err;

	if (geteuid() != 0)
		skip();
	assert_int_equal(privdrop_lookup("nobody", &u, &err), 0);
	run_rows(&u);
	/* The probing process is gone; this one is still root. */
	assert_int_equal(geteuid(), 0);
}

static void
test_as_this_process(void **state)
{
	if (geteuid() != 0)
		skip();
	run_rows(NULL);
}

static void
test_nothing_to_probe(void **state)
{
	const char *err = NULL;

	assert_int_equal(file_probe_run(NULL, NULL, 0, &err), 0);
}

static void
test_reasons(void **state)
{
	struct file_probe p = {.path = "/x", .need = FILE_PROBE_READ};

	p.error = ENOENT;
	assert_string_equal(file_probe_reason(&p, "nobody"), "does not exist");
	p.error = EACCES;
	assert_string_equal(file_probe_reason(&p, "nobody"),
	                    "not readable by user nobody (Permission denied)");
	p.error = FILE_PROBE_WRONG_KIND;
	assert_string_equal(file_probe_reason(&p, "nobody"), "is not a regular file");
	p.need = FILE_PROBE_SEARCH;
	assert_string_equal(file_probe_reason(&p, "nobody"), "is not a directory");
	p.error = EACCES;
	assert_string_equal(file_probe_reason(&p, "authrelay"),
	                    "not searchable by user authrelay (Permission denied)");
	p.need = FILE_PROBE_WRITE;
	assert_string_equal(file_probe_reason(&p, "authrelay"),
	                    "not writable by user authrelay (Permission denied)");
	p.error = ENOTDIR;
	assert_string_equal(file_probe_reason(&p, "x"),
	                    "a component of the path is not a directory");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_as_nobody),
	        cmocka_unit_test(test_as_this_process),
	        cmocka_unit_test(test_nothing_to_probe),
	        cmocka_unit_test(test_reasons),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
