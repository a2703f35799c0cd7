/* SPDX-License-Identifier: ISC */
/*
 * ut_lines.h - unit-test helper: a bounded record of text lines, as a
 * scripted server or a trace callback keeps what it saw for the test to
 * compare with one assert_string_equal().
 */
#ifndef UT_LINES_H
#define UT_LINES_H

#include <stddef.h>

/* Append line and '\n' to buf (sz bytes, *len_r of them used, always
 * NUL-terminated); a line that does not fit whole is dropped, so what a
 * test finds is never cut mid-line. */
void ut_lines_add(char *buf, size_t sz, size_t *len_r, const char *line);

#endif
