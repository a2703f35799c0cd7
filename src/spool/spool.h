/*
 * spool.h - the on-disk queue of accepted messages.
 *
 * Layout under spool_dir (created by the master, owned by the worker user):
 *   tmp/       messages being received; never read by anyone else
 *   incoming/  committed messages: a file here was fsynced, then renamed here,
 *              then the directory was fsynced. This is what 250 promises.
 *              A message file stays here, unchanged, until the queue process
 *              has finished with every recipient (src/queue/queue_store.h).
 *   state/     the queue's delivery state of messages it has tried: which
 *              recipients are done, the next retry, hold (queue_store.h)
 *   private/   the auth socket
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

/* Create tmp/ incoming/ private/ under dir (mode 0700, owned by uid:gid when
 * not -1). Returns 0 or -1 with *error_r. */
int spool_init_dirs(const char *dir, uid_t uid, gid_t gid, const char **error_r);

/* Make a fresh message id (time + counter + random, hex). */
void spool_new_id(char id_r[SPOOL_ID_LEN + 1]);

/* Start a message under dir/tmp with env (copied into the file at once; env->id
 * is filled in). Returns NULL with *error_r on failure (disk full: 452 4.3.1). */
struct spool_msg *spool_msg_new(const char *dir, struct spool_envelope *env, const char **error_r);
const char *spool_msg_id(const struct spool_msg *);
/* Append message bytes (buffered). 0 or -1 (write error; the message is bad). */
int spool_msg_write(struct spool_msg *, const void *data, size_t len);
/* Bytes of message written so far. */
uint64_t spool_msg_size(const struct spool_msg *);
/* Flush, fsync the file, rename into incoming/, fsync incoming/. BLOCKS:
 * run it on a threadpool. Returns 0 or -1 (then the tmp file is removed). */
int spool_msg_commit(struct spool_msg *);
/* The same commit in steps, for group commit (spool_commit.c): one thread
 * runs _write and then _sync for a batch of messages, _link for each into the
 * open incoming/ directory, fsyncs that directory once and calls _finish for
 * each with 0 or the fsync's errno. Each returns 0 or -1 (the message has
 * failed, its tmp file is gone, later steps return -1 at once). BLOCKING. */
int spool_msg_commit_write(struct spool_msg *);
int spool_msg_commit_sync(struct spool_msg *);
int spool_msg_commit_link(struct spool_msg *, int incoming_fd);
int spool_msg_commit_finish(struct spool_msg *, int incoming_fd, int dir_errno);
/* dir/incoming as given to spool_msg_new(). */
const char *spool_msg_incoming_dir(const struct spool_msg *);
/* Free; removes the tmp file unless committed. */
void spool_msg_free(struct spool_msg *);

/* Read the envelope of the spool file at path. On success returns 0 and
 * *body_offset_r is where the message starts. The caller frees with
 * spool_envelope_clear(). */
int spool_read_envelope(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                        const char **error_r);
/* The same, and *file_size_r (if not NULL) is the file's size when read. */
int spool_read_envelope_sized(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                              uint64_t *file_size_r, const char **error_r);
void spool_envelope_clear(struct spool_envelope *);

/* %-escape for envelope values (see above). Returns a malloc'd string. */
char *spool_escape(const char *s);
/* Undo spool_escape into a malloc'd string; NULL if malformed. */
char *spool_unescape(const char *s);

#endif
