/* SPDX-License-Identifier: ISC */
/*
 * fuzz_proxy_header.c - libFuzzer target for the PROXY protocol parser: the
 * input is the first bytes of a connection, fed to proxy_header_parse()
 * whole and at every length up to the whole.
 *
 * Besides the sanitizers, it checks what proxy_accept.c relies on: a header
 * never claims more bytes than it was given nor more than PROXY_HEADER_MAX,
 * a prefix of an accepted header was PARSE_AGAIN (so every byte taken
 * before the end belonged to the header), an address is IPv4 or IPv6, and
 * a refusal always says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h;
	const char *error;
	enum parse_result r = proxy_header_parse(data, size, &h, &error);

	if (r == PARSE_INVALID) {
		CHECK(error != NULL);
		return 0;
	}
	if (r == PARSE_AGAIN) {
		CHECK(size < PROXY_HEADER_MAX);
		return 0;
	}
	CHECK(h.len > 0 && h.len <= size && h.len <= PROXY_HEADER_MAX);
	CHECK(h.version == 1 || h.version == 2);
	CHECK(h.version == 2 || h.len <= PROXY_V1_MAX);
	if (h.has_addr) {
		CHECK(h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
		CHECK(h.dst.ss_family == h.src.ss_family);
	}
	/* The same header alone parses the same; each prefix waits for more. */
	struct proxy_header again;
	CHECK(proxy_header_parse(data, h.len, &again, &error) == PARSE_OK);
	CHECK(again.len == h.len && again.has_addr == h.has_addr);
	CHECK(!h.has_addr || memcmp(&again.src, &h.src, sizeof(h.src)) == 0);
	for (size_t n = 0; n < h.len; n++)
		CHECK(proxy_header_parse(data, n, &again, &error) == PARSE_AGAIN);
	return 0;
}
