/* SPDX-License-Identifier: ISC */
/*
 * spool.h - the on-disk queue of accepted messages.
 *
 * Layout under spool_dir (made by the master at every start, as root; the
 * owners and modes are what keeps a compromised worker from touching
 * anything the queue later opens with its own rights):
 *   .          root, 0711
 *   tmp/       worker user, group of the queue, 2700: messages being
 *              received. Files get the queue's group (set-group-ID) and
 *              mode 0640, so the queue reads them by group.
 *   incoming/  queue user, group of the workers, 1770: committed messages.
 *              A file here was fsynced, then renamed here, then the
 *              directory was fsynced: this is what 250 promises. Workers
 *              may add names (and open the folder to fsync it), and the
 *              sticky bit keeps them from removing or renaming what they
 *              do not own: the queue's DSNs.
 *              A message file stays here, unchanged, until the queue process
 *              has finished with every recipient (src/queue/queue_store.h).
 *   state/     queue user, 0700: the delivery state of messages it has
 *              tried: which recipients are done, the next retry, hold
 *              (queue_store.h)
 *   journal/   queue user, 0700: the delivery journal: each recipient a
 *              next hop accepted, on disk before the connection carries
 *              another message (queue_journal.h)
 *   queue-tmp/ queue user, 0700: the messages the queue writes (DSNs)
 *              while they are written, then renamed into incoming/
 *   corrupt/   queue user, 0700: what the queue found in incoming/ and
 *              would not open (a symlink, a hard link, a FIFO, a file of
 *              another owner), set aside for the administrator
 *   private/   root, group of the workers, 0710: the auth socket (the
 *              workers connect) and the queue's control socket, both bound
 *              by the master
 * Started as another user than root, every process runs as that user and
 * only the modes apply.
 *
 * A spool file is text envelope records, a blank line, then the message:
 *   AUTHRELAY-SPOOL 1
 *   id <id>
 *   time <unix seconds>
 *   client <address>
 *   helo <name>
 *   listener <name>
 *   protocol <ESMTP|ESMTPS|ESMTPA|ESMTPSA|SMTP>
 *   tls <version cipher | none>
 *   auth <identity>           (only if authenticated)
 *   mail <<reverse-path>> [params]
 *   rcpt <<forward-path>> [params]   (one per recipient)
 *   <blank line>
 *   <message exactly as received, dot-unstuffed, CRLF line ends>
 * Values are %-escaped: bytes < 0x21, > 0x7e and '%' become %XX.
 */
#ifndef AUTHRELAY_SPOOL_H
#define AUTHRELAY_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../lib/common.h"

#define SPOOL_ID_LEN 20

struct spool_envelope {
	char id[SPOOL_ID_LEN + 1];
	int64_t time;
	char *client;
	char *helo;
	char *listener;
	char *protocol;
	char *tls;
	char *auth;   /* NULL if not authenticated */
	char *mail;   /* "<a@b> SIZE=10" */
	char **rcpts; /* "<x@y>" ... */
	size_t n_rcpts;
};

struct spool_msg;

/* Who the spool's folders belong to (see the layout above). */
struct spool_owners {
	bool root; /* set owners (else only modes) */
	uid_t worker_uid;
	gid_t worker_gid;
	uid_t queue_uid;
	gid_t queue_gid;
};

/* Create the layout above under dir, or repair its owners and modes. A
 * symlink in place of a folder is refused. Returns 0 or -1 with *error_r. */
int spool_init_dirs(const char *dir, const struct spool_owners *owners, const char **error_r);

/* Make a fresh message id (time + counter + random, hex). */
void spool_new_id(char id_r[SPOOL_ID_LEN + 1]);

/* Start a message under dir/tmp with env (copied into the file at once; env->id
 * is filled in). Returns NULL with *error_r and errno on failure. */
struct spool_msg *spool_msg_new(const char *dir, struct spool_envelope *env, const char **error_r);
/* The same, written in dir/tmp_sub instead of dir/tmp (the queue writes in
 * queue-tmp/, which only it can enter). */
struct spool_msg *spool_msg_new_in(const char *dir, const char *tmp_sub, struct spool_envelope *env,
                                   const char **error_r);
const char *spool_msg_id(const struct spool_msg *);
/* The errno of the first write or commit step that failed, 0 if none: ENOSPC
 * or EDQUOT is a full disk (452 4.3.1 to the client). spool_msg_new() leaves
 * its failure's errno in errno. */
int spool_msg_errno(const struct spool_msg *);
/* Append message bytes (buffered). 0 or -1 (write error; the message is bad). */
int spool_msg_write(struct spool_msg *, const void *data, size_t len);
/* Bytes of message written so far. */
uint64_t spool_msg_size(const struct spool_msg *);
/* Flush, fsync the file, rename into incoming/, fsync incoming/. BLOCKS:
 * run it on a threadpool. Returns 0 or -1 (then the tmp file is removed). */
int spool_msg_commit(struct spool_msg *);
/* The same commit in steps, for group commit (spool_commit.c): one thread
 * runs _write for a batch of messages (starts their write-back), then _wait
 * (waits for it and closes the file; no cache flush) or _sync (fsync and
 * close), _link for each into the open incoming/ directory, makes the round
 * durable with one call (spool_fs.h) and calls _finish for each with 0 or
 * that call's errno. Each returns 0 or -1 (the message has failed, its tmp
 * file is gone, later steps return -1 at once). BLOCKING. */
int spool_msg_commit_write(struct spool_msg *);
int spool_msg_commit_wait(struct spool_msg *);
int spool_msg_commit_sync(struct spool_msg *);
int spool_msg_commit_link(struct spool_msg *, int incoming_fd);
int spool_msg_commit_finish(struct spool_msg *, int incoming_fd, int dir_errno);
/* dir/incoming as given to spool_msg_new(). */
const char *spool_msg_incoming_dir(const struct spool_msg *);
/* Free; removes the tmp file unless committed. */
void spool_msg_free(struct spool_msg *);

/* The owners a message file in incoming/ may have: the workers (what they
 * received) and the queue (its DSNs). Set once, before threads start, by
 * the queue; until then any owner is accepted. */
void spool_set_owners(uid_t worker_uid, uid_t queue_uid);
/* Open the message file at path (spool_dir/incoming/ID), or dirfd/name,
 * for reading, never following a link (safeopen.h): it must be a regular
 * file of one of those owners with a single link. Returns the descriptor,
 * or -1 with errno (ELOOP, EINVAL, EPERM, EMLINK for a file refused, ENOENT
 * when gone) and *why_r. */
int spool_open_message(const char *path, const char **why_r);
int spool_open_message_at(int dirfd, const char *name, const char **why_r);

/* Read the envelope of the spool file at path (opened with
 * spool_open_message()). On success returns 0 and
 * *body_offset_r is where the message starts. The caller frees with
 * spool_envelope_clear(). */
int spool_read_envelope(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                        const char **error_r);
/* The same, and *file_size_r (if not NULL) is the file's size when read. */
int spool_read_envelope_sized(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                              uint64_t *file_size_r, const char **error_r);
/* The same from a descriptor (read with pread: its offset is left alone);
 * path only names it in errors. */
int spool_read_envelope_fd(int fd, const char *path, struct spool_envelope *env_r,
                           long *body_offset_r, uint64_t *file_size_r, const char **error_r);
void spool_envelope_clear(struct spool_envelope *);

/* %-escape for envelope values (see above). Returns a malloc'd string. */
char *spool_escape(const char *s);
/* Undo spool_escape into a malloc'd string; NULL if malformed. */
char *spool_unescape(const char *s);

#endif
