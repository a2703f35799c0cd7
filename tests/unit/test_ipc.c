/* SPDX-License-Identifier: ISC */
/*
 * test_ipc.c - lib/ipc framing: round trips, frames split at every byte,
 * several frames in one buffer, and every way a frame or a field can be bad;
 * and the record transport on a SOCK_SEQPACKET pair: one frame per record,
 * in order, the largest frame, a full socket, records that are not one frame
 * (dropped, the next one read afresh), end of file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/buffer.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/ipc.h"

/* A message with one field of each kind. */
static struct ipc_msg *
sample_msg(void)
{
	struct ipc_msg *m = ipc_msg_new(7);

	ipc_msg_add_u32(m, 0xdeadbeef);
	ipc_msg_add_str(m, "alice@example.org");
	ipc_msg_add_bytes(m, "se\0cret", 7);
	ipc_msg_add_str(m, NULL);
	ipc_msg_add_u32(m, 0);
	return m;
}

/* The sample, framed into a fresh buffer. */
static struct evbuffer *
sample_frame(void)
{
	struct evbuffer *b = evbuffer_new();
	struct ipc_msg *m = sample_msg();

	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_free(m);
	return b;
}

/* The sample's fields, in order. */
static void
check_sample_prefix(struct ipc_msg *m)
{
	uint32_t v;
	const char *p;
	size_t len;

	assert_int_equal(ipc_msg_type(m), 7);
	assert_int_equal(ipc_msg_get_u32(m, &v), 0);
	assert_int_equal(v, 0xdeadbeef);
	assert_int_equal(ipc_msg_get_str(m, &p), 0);
	assert_string_equal(p, "alice@example.org");
	assert_int_equal(ipc_msg_get_bytes(m, &p, &len), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(p, "se\0cret", 7);
	assert_int_equal(p[7], '\0');
	assert_int_equal(ipc_msg_get_str(m, &p), 0);
	assert_string_equal(p, "");
	assert_int_equal(ipc_msg_get_u32(m, &v), 0);
	assert_int_equal(v, 0);
}

static void
check_sample(struct ipc_msg *m)
{
	uint32_t v;
	const char *p;
	size_t len;

	check_sample_prefix(m);
	/* Nothing left. */
	assert_int_equal(ipc_msg_get_u32(m, &v), -1);
	assert_int_equal(ipc_msg_get_bytes(m, &p, &len), -1);
}

static void
test_round_trip(void **state)
{
	struct evbuffer *b = sample_frame();
	struct ipc_msg *m;

	/* 4 length + 1 type + 4 + (2+17) + (2+7) + 2 + 4 */
	assert_int_equal(evbuffer_get_length(b), 43);
	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	assert_int_equal(evbuffer_get_length(b), 0);
	check_sample(m);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_take(b, &m), PARSE_AGAIN);
	assert_null(m);
	evbuffer_free(b);
}

/* Feed the frame one byte at a time: AGAIN, nothing consumed, until whole. */
static void
test_byte_by_byte(void **state)
{
	struct evbuffer *src = sample_frame(), *in = evbuffer_new();
	size_t total = evbuffer_get_length(src);
	struct ipc_msg *m = NULL;

	for (size_t i = 0; i < total; i++) {
		char c;
		assert_int_equal(ipc_msg_take(in, &m), PARSE_AGAIN);
		assert_int_equal(evbuffer_get_length(in), i);
		assert_int_equal(evbuffer_remove(src, &c, 1), 1);
		evbuffer_add(in, &c, 1);
	}
	assert_int_equal(ipc_msg_take(in, &m), PARSE_OK);
	check_sample(m);
	ipc_msg_free(m);
	evbuffer_free(src);
	evbuffer_free(in);
}

static void
test_several_frames(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct ipc_msg *m;
	uint32_t v;

	for (uint32_t i = 0; i < 100; i++) {
		m = ipc_msg_new((uint8_t)i);
		ipc_msg_add_u32(m, i * 3);
		assert_int_equal(ipc_msg_send(m, b), 0);
		ipc_msg_free(m);
	}
	/* A partial 101st frame stays in the buffer. */
	evbuffer_add(b, "\0\0\0\x05\x01", 5);
	for (uint32_t i = 0; i < 100; i++) {
		assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
		assert_int_equal(ipc_msg_type(m), i);
		assert_int_equal(ipc_msg_get_u32(m, &v), 0);
		assert_int_equal(v, i * 3);
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_msg_take(b, &m), PARSE_AGAIN);
	assert_int_equal(evbuffer_get_length(b), 5);
	evbuffer_free(b);
}

static void
test_bad_lengths(void **state)
{
	static const struct {
		const char *hdr;
		enum parse_result want;
	} rows[] = {
	        {"\0\0\0\0", PARSE_INVALID},     /* no type byte */
	        {"\0\x01\0\x01", PARSE_INVALID}, /* 65537 > IPC_MAX_FRAME */
	        {"\xff\xff\xff\xff", PARSE_INVALID},
	        {"\0\x01\0\0", PARSE_AGAIN}, /* exactly IPC_MAX_FRAME: wait */
	        {"\0\0\0\x01", PARSE_AGAIN},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		struct ipc_msg *m = (struct ipc_msg *)1;
		evbuffer_add(b, rows[i].hdr, 4);
		assert_int_equal(ipc_msg_take(b, &m), rows[i].want);
		assert_null(m);
		/* Rejected before buffering anything more. */
		assert_int_equal(evbuffer_get_length(b), 4);
		evbuffer_free(b);
	}
}

/* The largest frame passes; one byte more is refused on both sides. */
static void
test_max_frame(void **state)
{
	static char big[65535];
	struct evbuffer *b = evbuffer_new();
	struct ipc_msg *m = ipc_msg_new(1);
	const char *p;
	size_t len;

	/* 1 type + 2 + 65533 = 65536 */
	ipc_msg_add_bytes(m, big, sizeof(big) - 2);
	assert_int_equal(ipc_msg_send(m, b), 0);
	ipc_msg_add_u32(m, 1);
	assert_int_equal(ipc_msg_send(m, b), -1);
	ipc_msg_free(m);
	assert_int_equal(evbuffer_get_length(b), 4 + IPC_MAX_FRAME);
	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	assert_int_equal(ipc_msg_get_bytes(m, &p, &len), 0);
	assert_int_equal(len, sizeof(big) - 2);
	assert_int_equal(p[len], '\0');
	ipc_msg_free(m);
	evbuffer_free(b);
}

/* Hand-made bodies whose fields run past the end or hold a NUL. */
static void
test_bad_fields(void **state)
{
	static const struct {
		const char *body;
		size_t len;
		const char *ops; /* u = u32, b = bytes, s = str; last one must fail */
	} rows[] = {
	        {"\x01", 1, "u"},
	        {"\x01\0\0\0", 4, "u"},
	        {"\x01\0\0\0\x01", 5, "ub"},
	        {"\x01\0", 2, "b"},
	        {"\x01\0\x03"
	         "ab",
	         5, "b"},
	        {"\x01\0\x03"
	         "ab",
	         5, "s"},
	        {"\x01\0\x03a\0b", 6, "s"},
	        {"\x01\0\x01\0", 4, "s"},
	        {"\x01\0\x02xy\0\0\0", 8, "bu"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		unsigned char hdr[4] = {0, 0, 0, (unsigned char)rows[i].len};
		struct ipc_msg *m;
		const char *ops = rows[i].ops;
		size_t n = strlen(ops);

		evbuffer_add(b, hdr, 4);
		evbuffer_add(b, rows[i].body, rows[i].len);
		assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
		for (size_t k = 0; k < n; k++) {
			uint32_t v;
			const char *p;
			size_t len;
			int r = ops[k] == 'u'   ? ipc_msg_get_u32(m, &v)
			        : ops[k] == 'b' ? ipc_msg_get_bytes(m, &p, &len)
			                        : ipc_msg_get_str(m, &p);
			assert_int_equal(r, k + 1 == n ? -1 : 0);
		}
		ipc_msg_free(m);
		evbuffer_free(b);
	}
}

/* The bytes of a taken frame are wiped in the input buffer: a second view
 * of the same memory (pulled up before take) reads zeros. */
static void
test_wipes_input(void **state)
{
	struct evbuffer *b = sample_frame();
	size_t n = evbuffer_get_length(b);
	struct ipc_msg *m;
	unsigned char *p;

	evbuffer_add(b, "\0\0\0\x01", 4); /* keep the chain alive after drain */
	p = evbuffer_pullup(b, -1);
	assert_non_null(p);
	assert_int_equal(ipc_msg_take(b, &m), PARSE_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i], 0);
	ipc_msg_free(m);
	evbuffer_free(b);
}

/* A non-blocking SOCK_SEQPACKET pair: [0] sends, [1] receives. */
static void
record_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
	                 0);
}

/* Records come out one message each, in order, then NONE. */
static void
test_record_round_trip(void **state)
{
	struct ipc_msg *m;
	int sv[2];

	record_pair(sv);
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	assert_null(m);
	for (uint32_t i = 0; i < 3; i++) {
		m = sample_msg();
		ipc_msg_add_u32(m, i);
		assert_int_equal(ipc_msg_send_record(m, sv[0]), 0);
		ipc_msg_free(m);
	}
	for (uint32_t i = 0; i < 3; i++) {
		uint32_t v;
		assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
		check_sample_prefix(m);
		assert_int_equal(ipc_msg_get_u32(m, &v), 0);
		assert_int_equal(v, i);
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	close(sv[0]);
	close(sv[1]);
}

/* The largest frame is one record; one byte more is refused. */
static void
test_record_max(void **state)
{
	static char big[65535];
	struct ipc_msg *m = ipc_msg_new(1);
	const char *p;
	size_t len;
	int sv[2];

	record_pair(sv);
	memset(big, 'x', sizeof(big));
	ipc_msg_add_bytes(m, big, sizeof(big) - 2);
	assert_int_equal(ipc_msg_send_record(m, sv[0]), 0);
	ipc_msg_add_u32(m, 1);
	assert_int_equal(ipc_msg_send_record(m, sv[0]), -1);
	assert_int_equal(errno, EMSGSIZE);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
	assert_int_equal(ipc_msg_get_bytes(m, &p, &len), 0);
	assert_int_equal(len, sizeof(big) - 2);
	assert_int_equal(p[len], '\0');
	assert_int_equal(p[len - 1], 'x');
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	close(sv[0]);
	close(sv[1]);
}

/* Nobody reads: the sender gets EAGAIN, never blocks; what was sent
 * comes out whole once the reader reads. */
static void
test_record_full(void **state)
{
	static char chunk[60000];
	unsigned sent = 0;
	struct ipc_msg *m = ipc_msg_new(2);
	int sv[2];

	record_pair(sv);
	ipc_msg_add_bytes(m, chunk, sizeof(chunk));
	while (ipc_msg_send_record(m, sv[0]) == 0)
		assert_true(++sent < 1000);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	assert_true(sent > 0);
	ipc_msg_free(m);
	for (unsigned i = 0; i < sent; i++) {
		const char *p;
		size_t len;
		assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
		assert_int_equal(ipc_msg_get_bytes(m, &p, &len), 0);
		assert_int_equal(len, sizeof(chunk));
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	close(sv[0]);
	close(sv[1]);
}

/* Records that are not exactly one frame are dropped whole; the record
 * after each is read as if nothing had happened. */
static void
test_record_bad(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"\x07", 1},                          /* shorter than a header */
	        {"\0\0\0", 3},                        /* the same */
	        {"\0\0\0\0", 4},                      /* empty body */
	        {"\0\0\0\x02\x07", 5},                /* body shorter than said */
	        {"\0\0\0\x01\x07\x07", 6},            /* longer: two bodies' worth */
	        {"\0\0\0\x01\x07\0\0\0\x01\x07", 10}, /* two frames in one record */
	        {"\xff\xff\xff\xff\x07", 5},          /* over IPC_MAX_FRAME */
	};
	struct ipc_msg *m;
	int sv[2];

	record_pair(sv);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("  row %zu\n", i);
		assert_int_equal(send(sv[0], bad[i].bytes, bad[i].len, 0), (ssize_t)bad[i].len);
		m = sample_msg();
		assert_int_equal(ipc_msg_send_record(m, sv[0]), 0);
		ipc_msg_free(m);
		assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_BAD);
		assert_null(m);
		assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
		check_sample(m);
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_NONE);
	close(sv[0]);
	close(sv[1]);
}

/* The other end gone: CLOSED on receipt, an error (no SIGPIPE) on send. */
static void
test_record_closed(void **state)
{
	struct ipc_msg *m = sample_msg();
	int sv[2];

	record_pair(sv);
	assert_int_equal(ipc_msg_send_record(m, sv[0]), 0);
	ipc_msg_free(m);
	close(sv[0]);
	/* What was sent before the close is still read. */
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_MSG);
	ipc_msg_free(m);
	assert_int_equal(ipc_msg_recv_record(sv[1], &m), IPC_RECORD_CLOSED);
	assert_null(m);
	close(sv[1]);

	record_pair(sv);
	close(sv[1]);
	m = sample_msg();
	assert_int_equal(ipc_msg_send_record(m, sv[0]), -1);
	assert_int_equal(errno, EPIPE);
	ipc_msg_free(m);
	close(sv[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_byte_by_byte),
	        cmocka_unit_test(test_several_frames), cmocka_unit_test(test_bad_lengths),
	        cmocka_unit_test(test_max_frame),      cmocka_unit_test(test_bad_fields),
	        cmocka_unit_test(test_wipes_input),    cmocka_unit_test(test_record_round_trip),
	        cmocka_unit_test(test_record_max),     cmocka_unit_test(test_record_full),
	        cmocka_unit_test(test_record_bad),     cmocka_unit_test(test_record_closed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
