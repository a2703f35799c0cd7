/* SPDX-License-Identifier: ISC */
/*
 * ut_tmp.h - unit-test helper: throwaway directories and small files.
 *
 * Each failing step fails the running test (cmocka), so a test that gets a
 * directory or a file back can use it without checking.
 */
#ifndef UT_TMP_H
#define UT_TMP_H

#include <stddef.h>

/* Make a fresh directory named prefix plus six random letters, under
 * $TMPDIR (or /tmp), mode 0700; its path goes into buf (sz bytes). */
void ut_tmp_dir(char *buf, size_t sz, const char *prefix);

/* Remove dir and everything below it, directories a test made unreadable
 * included. */
void ut_tmp_remove(const char *dir);

/* How many entries dir/sub (dir itself when sub is NULL) holds, "." and ".."
 * aside; -1 when it cannot be opened. */
int ut_tmp_count(const char *dir, const char *sub);

/* Replace path with text, mode 0600, atomically through path.tmp (as an
 * admin's editor or script would, so a reader sees the old or the new). */
void ut_tmp_write(const char *path, const char *text);

/* The contents of path as a string (up to 64 KiB) in a buffer that the next
 * call overwrites; NULL when path cannot be opened. */
char *ut_tmp_read(const char *path);

#endif
