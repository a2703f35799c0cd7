/* SPDX-License-Identifier: ISC */
/*
 * ipc.c - message framing between the gateway's processes (see ipc.h).
 *
 * On the wire a frame is a 4-byte big-endian body length, then the body:
 * one type byte and the fields in the order both sides agree on (the field
 * types are not tagged; auth_proto.c and friends define the order). The length
 * counts the body only and must be 1..IPC_MAX_FRAME.
 *
 * Bodies can carry passwords, so every copy this module makes is wiped:
 * ipc_msg_free() wipes the message, ipc_msg_send() hands libevent a wiped-on-
 * release reference instead of letting it copy the bytes into its chains, and
 * ipc_msg_take() wipes the received bytes in the input buffer before draining
 * them. (Bytes the kernel or libevent copied before we saw them, such as
 * chains that evbuffer_pullup() merges, are beyond our reach.)
 *
 * On a SOCK_SEQPACKET socket a frame is one record, header included, so a
 * record's length must be the header's plus four: anything else is dropped
 * as a whole and the next record is read afresh (ipc_msg_recv_record()).
 *
 * Reading is in place: ipc_msg_get_bytes() slides the field's data two bytes
 * left over its own length prefix and writes a NUL after it, so the caller
 * gets a NUL-terminated pointer without another copy. Fields are read once, in
 * order, so the overwritten prefix is never needed again.
 */
#include "ipc.h"
#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define IPC_HDR_LEN 4

struct ipc_msg {
	unsigned char *buf; /* body: type byte, then fields */
	size_t len;         /* bytes used in buf */
	size_t cap;         /* bytes allocated (all wiped on free) */
	size_t rpos;        /* next field to read */
};

static void
ipc_msg_reserve(struct ipc_msg *m, size_t more)
{
	/* +1: keep a spare byte after the body (see ipc_msg_get_bytes()). */
	size_t need = m->len + more + 1;
	size_t ncap;
	unsigned char *nbuf;

	if (need <= m->cap)
		return;
	ncap = m->cap * 2;
	while (ncap < need)
		ncap *= 2;
	/* Not xrealloc: the old block may hold a password and must be wiped. */
	nbuf = xmalloc(ncap);
	memcpy(nbuf, m->buf, m->len);
	explicit_bzero(m->buf, m->cap);
	free(m->buf);
	m->buf = nbuf;
	m->cap = ncap;
}

struct ipc_msg *
ipc_msg_new(uint8_t type)
{
	struct ipc_msg *m = xcalloc(1, sizeof(*m));

	m->cap = 128;
	m->buf = xmalloc(m->cap);
	m->buf[0] = type;
	m->len = 1;
	m->rpos = 1;
	return m;
}

void
ipc_msg_add_u32(struct ipc_msg *m, uint32_t v)
{
	ipc_msg_reserve(m, 4);
	m->buf[m->len++] = (unsigned char)(v >> 24);
	m->buf[m->len++] = (unsigned char)(v >> 16);
	m->buf[m->len++] = (unsigned char)(v >> 8);
	m->buf[m->len++] = (unsigned char)v;
}

void
ipc_msg_add_bytes(struct ipc_msg *m, const void *p, size_t len)
{
	if (len > UINT16_MAX)
		fatal("ipc: field of %zu bytes does not fit a u16 length", len);
	ipc_msg_reserve(m, 2 + len);
	m->buf[m->len++] = (unsigned char)(len >> 8);
	m->buf[m->len++] = (unsigned char)len;
	if (len > 0)
		memcpy(m->buf + m->len, p, len);
	m->len += len;
}

void
ipc_msg_add_str(struct ipc_msg *m, const char *s)
{
	if (s == NULL)
		s = "";
	ipc_msg_add_bytes(m, s, strlen(s));
}

/* evbuffer_add_reference() cleanup: the frame may hold a password. */
static void
ipc_frame_release(const void *data, size_t len, void *arg)
{
	explicit_bzero(arg, len);
	free(arg);
}

/* The frame of m, header and body, in a new block of *len_r bytes; NULL
 * over IPC_MAX_FRAME. */
static unsigned char *
ipc_frame(const struct ipc_msg *m, size_t *len_r)
{
	unsigned char *frame;

	if (m->len > IPC_MAX_FRAME)
		return NULL;
	*len_r = IPC_HDR_LEN + m->len;
	frame = xmalloc(*len_r);
	frame[0] = (unsigned char)(m->len >> 24);
	frame[1] = (unsigned char)(m->len >> 16);
	frame[2] = (unsigned char)(m->len >> 8);
	frame[3] = (unsigned char)m->len;
	memcpy(frame + IPC_HDR_LEN, m->buf, m->len);
	return frame;
}

/* A message taking over body (blen bytes, allocated with one spare byte). */
static struct ipc_msg *
ipc_msg_adopt(unsigned char *body, size_t blen)
{
	struct ipc_msg *m = xcalloc(1, sizeof(*m));

	/* One spare byte: get_bytes() on a last field ending at len writes a
	 * NUL at len. */
	m->buf = body;
	m->cap = blen + 1;
	m->buf[blen] = '\0';
	m->len = blen;
	m->rpos = 1;
	return m;
}

int
ipc_msg_send(const struct ipc_msg *m, struct evbuffer *out)
{
	unsigned char *frame;
	size_t flen;

	frame = ipc_frame(m, &flen);
	if (frame == NULL)
		return -1;
	/* By reference, so that libevent writes from our block and gives it
	 * back to ipc_frame_release() to be wiped, rather than leaving a copy
	 * in a freed chain. */
	if (evbuffer_add_reference(out, frame, flen, ipc_frame_release, frame) < 0) {
		ipc_frame_release(frame, flen, frame);
		return -1;
	}
	return 0;
}

enum parse_result
ipc_msg_take(struct evbuffer *in, struct ipc_msg **msg_r)
{
	unsigned char hdr[IPC_HDR_LEN];
	unsigned char *p;
	struct ipc_msg *m;
	size_t blen;

	*msg_r = NULL;
	if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
		return PARSE_AGAIN;
	blen = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	/* Check the limit before waiting for (and buffering) the body. */
	if (blen == 0 || blen > IPC_MAX_FRAME)
		return PARSE_INVALID;
	if (evbuffer_get_length(in) < IPC_HDR_LEN + blen)
		return PARSE_AGAIN;

	p = evbuffer_pullup(in, (ev_ssize_t)(IPC_HDR_LEN + blen));
	if (p == NULL)
		fatal("ipc: evbuffer_pullup of %zu bytes failed", blen);
	m = ipc_msg_adopt(xmalloc(blen + 1), blen);
	memcpy(m->buf, p + IPC_HDR_LEN, blen);
	explicit_bzero(p, IPC_HDR_LEN + blen);
	evbuffer_drain(in, IPC_HDR_LEN + blen);
	*msg_r = m;
	return PARSE_OK;
}

uint8_t
ipc_msg_type(const struct ipc_msg *m)
{
	return m->buf[0];
}

int
ipc_msg_get_u32(struct ipc_msg *m, uint32_t *v_r)
{
	const unsigned char *p;

	if (m->len - m->rpos < 4)
		return -1;
	p = m->buf + m->rpos;
	*v_r = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	m->rpos += 4;
	return 0;
}

int
ipc_msg_get_bytes(struct ipc_msg *m, const char **p_r, size_t *len_r)
{
	unsigned char *p;
	size_t flen;

	if (m->len - m->rpos < 2)
		return -1;
	p = m->buf + m->rpos;
	flen = (size_t)p[0] << 8 | p[1];
	if (m->len - m->rpos - 2 < flen)
		return -1;
	/* In place (see the top of the file): data over its length prefix,
	 * then a NUL. For the last field that NUL lands on the spare byte
	 * every message keeps after its body. */
	memmove(p, p + 2, flen);
	p[flen] = '\0';
	m->rpos += 2 + flen;
	*p_r = (const char *)p;
	*len_r = flen;
	return 0;
}

int
ipc_msg_get_str(struct ipc_msg *m, const char **s_r)
{
	const char *p;
	size_t len;

	if (ipc_msg_get_bytes(m, &p, &len) < 0)
		return -1;
	if (memchr(p, '\0', len) != NULL)
		return -1;
	*s_r = p;
	return 0;
}

void
ipc_msg_free(struct ipc_msg *m)
{
	if (m == NULL)
		return;
	explicit_bzero(m->buf, m->cap);
	free(m->buf);
	free(m);
}

int
ipc_msg_send_record(const struct ipc_msg *m, int fd)
{
	unsigned char *frame;
	size_t flen;
	ssize_t n;
	int e;

	frame = ipc_frame(m, &flen);
	if (frame == NULL) {
		errno = EMSGSIZE;
		return -1;
	}
	/* A SOCK_SEQPACKET send is all or nothing: the whole record or
	 * EAGAIN. MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE. */
	n = send(fd, frame, flen, MSG_DONTWAIT | MSG_NOSIGNAL);
	e = errno;
	explicit_bzero(frame, flen);
	free(frame);
	if (n < 0) {
		errno = e;
		return -1;
	}
	if ((size_t)n != flen) {
		errno = EMSGSIZE; /* not a SOCK_SEQPACKET socket */
		return -1;
	}
	return 0;
}

enum ipc_record
ipc_msg_recv_record(int fd, struct ipc_msg **msg_r)
{
	unsigned char hdr[IPC_HDR_LEN], *rec;
	ssize_t n, rlen;
	size_t blen;

	*msg_r = NULL;
	/* MSG_TRUNC with MSG_PEEK: the record's whole length (Linux 3.4 and
	 * later for UNIX sockets), so that exactly that much is read. */
	rlen = recv(fd, hdr, sizeof(hdr), MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
	if (rlen < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
		               ? IPC_RECORD_NONE
		               : IPC_RECORD_CLOSED;
	if (rlen == 0) {
		errno = 0;
		return IPC_RECORD_CLOSED;
	}
	blen = rlen >= IPC_HDR_LEN
	               ? (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]
	               : 0;
	if (rlen < IPC_HDR_LEN || blen == 0 || blen > IPC_MAX_FRAME ||
	    (size_t)rlen != IPC_HDR_LEN + blen) {
		/* Drop it: the next record starts clean. */
		if (recv(fd, hdr, sizeof(hdr), MSG_DONTWAIT) < 0 && errno != EAGAIN)
			return IPC_RECORD_CLOSED;
		return IPC_RECORD_BAD;
	}
	rec = xmalloc((size_t)rlen + 1);
	n = recv(fd, rec, (size_t)rlen, MSG_DONTWAIT);
	if (n != rlen) {
		int e = errno;
		explicit_bzero(rec, (size_t)rlen + 1);
		free(rec);
		errno = e;
		return n < 0 && (e == EAGAIN || e == EINTR) ? IPC_RECORD_NONE : IPC_RECORD_CLOSED;
	}
	/* The body in place of the header: one block, no second copy. */
	memmove(rec, rec + IPC_HDR_LEN, blen);
	explicit_bzero(rec + blen, IPC_HDR_LEN);
	*msg_r = ipc_msg_adopt(rec, blen);
	return IPC_RECORD_MSG;
}
