/* SPDX-License-Identifier: ISC */
/*
 * ut_lines.c - a bounded record of text lines for unit tests (ut_lines.h).
 */
#include <string.h>

#include "ut_lines.h"

void
ut_lines_add(char *buf, size_t sz, size_t *len_r, const char *line)
{
	size_t l = strlen(line);

	if (*len_r + l + 2 > sz)
		return;
	memcpy(buf + *len_r, line, l);
	*len_r += l;
	buf[(*len_r)++] = '\n';
	buf[*len_r] = '\0';
}
