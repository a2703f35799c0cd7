/* SPDX-License-Identifier: ISC */
/*
 * fuzz_queue_journal.c - the delivery journal's record parser
 * (queue_journal_parse) on arbitrary segment bytes: the queue replays every
 * segment at start, and a torn or damaged one must only lose records, never
 * yield a malformed one.
 */
#include "queue/queue_journal.h"
#include "spool/spool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
	size_t n;
};

static void
check_record(const char *id, size_t index, void *arg)
{
	struct check *c = arg;
	if (strlen(id) != SPOOL_ID_LEN || strspn(id, "0123456789abcdef") != SPOOL_ID_LEN)
		abort();
	if (index >= 1000000000)
		abort();
	c->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct check c = {0};
	size_t lines = 0;
	size_t n = queue_journal_parse((const char *)data, size, check_record, &c);
	for (size_t i = 0; i < size && data[i] != '\0'; i++)
		lines += data[i] == '\n';
	/* One record per complete line at most, each reported once. */
	if (n != c.n || n > lines)
		abort();
	return 0;
}
