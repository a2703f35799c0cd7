/* SPDX-License-Identifier: ISC */
/*
 * ut_ipc.h - unit-test helper: send an IPC message through the framing and
 * take it back, as the peer process would, so that a protocol test checks
 * what crosses the wire and not the builder's memory.
 */
#ifndef UT_IPC_H
#define UT_IPC_H

struct ipc_msg;

/* Frame m onto a stream (ipc_msg_send), free it, take it back with
 * ipc_msg_take(); fails the test unless exactly one whole message comes
 * back. The caller frees the result. */
struct ipc_msg *ut_ipc_stream(struct ipc_msg *m);

/* The same through a SOCK_SEQPACKET pair as one record
 * (ipc_msg_send_record, ipc_msg_recv_record). */
struct ipc_msg *ut_ipc_record(struct ipc_msg *m);

#endif
