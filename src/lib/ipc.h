/*
 * ipc.h - framing for messages between the gateway's processes over UNIX
 * sockets: each frame is a 4-byte big-endian length, then the body:
 *
 *   u8 type, then fields: u32 (big-endian) or bytes (u16 big-endian length + data)
 *
 * A frame longer than IPC_MAX_FRAME is a protocol error. Message bodies can
 * hold passwords: ipc_msg_free() wipes them. See docs/ARCHITECTURE.md.
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

#endif
