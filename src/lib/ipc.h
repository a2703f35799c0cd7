/* SPDX-License-Identifier: ISC */
/*
 * ipc.h - framing for messages between the gateway's processes over UNIX
 * sockets: each frame is a 4-byte big-endian length, then the body:
 *
 *   u8 type, then fields: u32 (big-endian) or bytes (u16 big-endian length + data)
 *
 * A frame longer than IPC_MAX_FRAME is a protocol error. Message bodies can
 * hold passwords: ipc_msg_free() wipes them. See docs/ARCHITECTURE.md.
 *
 * Two transports: a byte stream (a libevent evbuffer: ipc_msg_send(),
 * ipc_msg_take()) or a SOCK_SEQPACKET socket that carries one frame per
 * record (ipc_msg_send_record(), ipc_msg_recv_record()). On the second, a
 * reader that dies halfway through leaves no half frame for the next one, so
 * a channel can outlive the processes at either end.
 */
#ifndef AUTHRELAY_IPC_H
#define AUTHRELAY_IPC_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define IPC_MAX_FRAME 65536

struct evbuffer;
struct ipc_msg;

/* Building a message to send. */
struct ipc_msg *ipc_msg_new(uint8_t type);
void ipc_msg_add_u32(struct ipc_msg *, uint32_t v);
/* Adds a bytes field; len must be < 65536 (longer is fatal: callers bound input). */
void ipc_msg_add_bytes(struct ipc_msg *, const void *p, size_t len);
void ipc_msg_add_str(struct ipc_msg *, const char *s); /* NULL is sent as "" */
/* Append the framed message to out. Returns 0, or -1 if it exceeds IPC_MAX_FRAME.
 * The message is not freed. */
int ipc_msg_send(const struct ipc_msg *, struct evbuffer *out);

/* Take one whole frame from in: PARSE_OK (*msg_r set, caller frees),
 * PARSE_AGAIN (incomplete, nothing consumed), PARSE_INVALID (bad length). */
enum parse_result ipc_msg_take(struct evbuffer *in, struct ipc_msg **msg_r);
uint8_t ipc_msg_type(const struct ipc_msg *);
/* Read the next field; -1 if the message has no such field left. */
int ipc_msg_get_u32(struct ipc_msg *, uint32_t *v_r);
/* *p_r points into the message (valid until ipc_msg_free) and is followed by a NUL. */
int ipc_msg_get_bytes(struct ipc_msg *, const char **p_r, size_t *len_r);
/* Like get_bytes but fails if the value holds a NUL. */
int ipc_msg_get_str(struct ipc_msg *, const char **s_r);
/* Wipe and free. NULL is fine. */
void ipc_msg_free(struct ipc_msg *);

/* Send the framed message as one record on fd, a SOCK_SEQPACKET socket,
 * without blocking. Returns 0, or -1 with errno: EAGAIN when the peer's
 * buffer is full (try again on EV_WRITE), EMSGSIZE over IPC_MAX_FRAME, or a
 * socket error. The message is not freed. */
int ipc_msg_send_record(const struct ipc_msg *, int fd);

enum ipc_record {
	IPC_RECORD_MSG,   /* *msg_r holds one message; the caller frees it */
	IPC_RECORD_NONE,  /* no record waiting */
	IPC_RECORD_BAD,   /* a record that is not exactly one frame: dropped */
	IPC_RECORD_CLOSED /* end of file, or a socket error (errno; 0 at EOF) */
};
/* Take the next record from fd, a non-blocking SOCK_SEQPACKET socket. */
enum ipc_record ipc_msg_recv_record(int fd, struct ipc_msg **msg_r);

#endif
