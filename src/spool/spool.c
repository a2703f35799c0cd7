/* SPDX-License-Identifier: ISC */
/*
 * spool.c - writes accepted messages into the spool and reads their envelopes
 * back (file layout and record format: spool.h).
 *
 * The SMTP worker calls spool_msg_new() at DATA, spool_msg_write() as body
 * bytes arrive and spool_msg_commit() on a pool thread after the final dot.
 * Only when commit returns 0 may the session answer 250: the file was written,
 * fsynced, renamed from tmp/ into incoming/ and incoming/ itself was fsynced.
 * The queue process and the tests read files back with spool_read_envelope().
 *
 * Threads: a spool_msg belongs to one thread at a time (the loop, the pool
 * thread running commit, the loop again to free it). Nothing mutable is shared
 * between messages except the id counter, which is atomic, and the error text,
 * which is per thread. Directories are opened by path when needed, so there is
 * no directory fd cache to guard.
 */
#include "spool.h"
#include "../lib/log.h"
#include "../lib/safeopen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_MAGIC "AUTHRELAY-SPOOL 1"
/* Userspace write buffer: one write(2) per 64 KiB of message. */
#define SPOOL_BUF_SIZE (64 * 1024)
/* Longest envelope line spool_read_envelope() accepts. Values come from SMTP
 * lines of at most 1000 bytes (RFC 5321 4.5.3.1.4), tripled by escaping. */
#define SPOOL_MAX_LINE (64 * 1024)
/* How many fresh ids spool_msg_new() tries when tmp/<id> already exists. */
#define SPOOL_ID_TRIES 8

struct spool_msg {
	char id[SPOOL_ID_LEN + 1];
	char *tmp_path;      /* dir/tmp/<id>, for messages */
	char *incoming_path; /* dir/incoming, the directory commit renames into */
	int tmp_dfd;         /* dir/tmp: the file is made, renamed, removed from here */
	int fd;              /* open tmp file, -1 once closed */
	bool tmp_exists;     /* tmp_path is ours to unlink */
	bool committed;
	bool failed;     /* a write failed: this message can never commit */
	int write_errno; /* why it failed */
	uint64_t size;   /* message bytes, envelope not counted */
	size_t buf_len;
	unsigned char *buf; /* SPOOL_BUF_SIZE bytes */
};

/* *error_r points here: valid until the next spool call on the same thread. */
static _Thread_local char spool_error_buf[512];

static void spool_set_error(const char **error_r, const char *fmt, ...) AR_PRINTF(2, 3);

static void
spool_set_error(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(spool_error_buf, sizeof(spool_error_buf), fmt, ap);
	va_end(ap);
	if (error_r != NULL)
		*error_r = spool_error_buf;
}

/* "dir/sub" or "dir/sub/name" in a malloc'd string. */
static char *
spool_path(const char *dir, const char *sub, const char *name)
{
	size_t n = strlen(dir) + strlen(sub) + (name != NULL ? strlen(name) : 0) + 3;
	char *p = xmalloc(n);

	if (name != NULL)
		snprintf(p, n, "%s/%s/%s", dir, sub, name);
	else
		snprintf(p, n, "%s/%s", dir, sub);
	return p;
}

/* Make dir/name a directory of mode owned by uid:gid (-1: leave as is).
 * An existing symlink is refused rather than followed. */
static int
spool_make_dir(int parent_fd, const char *dir, const char *name, mode_t mode, uid_t uid, gid_t gid,
               const char **error_r)
{
	int fd;

	if (mkdirat(parent_fd, name, 0700) < 0 && errno != EEXIST) {
		spool_set_error(error_r, "mkdir %s/%s: %s", dir, name, strerror(errno));
		return -1;
	}
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		spool_set_error(error_r, "open %s/%s: %s", dir, name, strerror(errno));
		return -1;
	}
	/* Owner first: chown clears the set-group-ID bit. */
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0) {
		spool_set_error(error_r, "chown %s/%s: %s", dir, name, strerror(errno));
		goto fail;
	}
	/* mkdir's mode went through the umask, and an old directory keeps its
	 * mode: set it explicitly. */
	if (fchmod(fd, mode) < 0) {
		spool_set_error(error_r, "chmod %s/%s: %s", dir, name, strerror(errno));
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

int
spool_init_dirs(const char *dir, const struct spool_owners *o, const char **error_r)
{
	/* Who may do what (spool.h): the workers create in tmp/ (files get
	 * the queue's group from the set-group-ID bit) and rename into
	 * incoming/, where the sticky bit keeps them from removing or
	 * renaming what they do not own; state/, journal/, corrupt/ and
	 * queue-tmp/ are the queue's alone; private/ holds the sockets the
	 * master binds. */
	const struct {
		const char *name;
		mode_t mode;
		uid_t uid;
		gid_t gid;
	} subdirs[] = {
	        {"tmp", 02700, o->worker_uid, o->queue_gid},
	        {"incoming", 01770, o->queue_uid, o->worker_gid},
	        {"state", 0700, o->queue_uid, o->queue_gid},
	        {"journal", 0700, o->queue_uid, o->queue_gid},
	        {"corrupt", 0700, o->queue_uid, o->queue_gid},
	        {"queue-tmp", 0700, o->queue_uid, o->queue_gid},
	        {"private", 0710, o->root ? 0 : (uid_t)-1, o->worker_gid},
	};
	int dfd;

	if (mkdir(dir, 0711) < 0 && errno != EEXIST) {
		spool_set_error(error_r, "mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		spool_set_error(error_r, "open %s: %s", dir, strerror(errno));
		return -1;
	}
	/* The spool itself is root's: whoever may write it could put another
	 * directory in place of state/ or incoming/. */
	if (o->root && (fchown(dfd, 0, 0) < 0 || fchmod(dfd, 0711) < 0)) {
		spool_set_error(error_r, "chown/chmod %s: %s", dir, strerror(errno));
		close(dfd);
		return -1;
	}
	for (size_t i = 0; i < AR_NELEM(subdirs); i++) {
		/* Not root: one uid for every process, modes only. */
		mode_t mode = o->root ? subdirs[i].mode : (subdirs[i].mode & 07700) | 0700;
		if (spool_make_dir(dfd, dir, subdirs[i].name, mode,
		                   o->root ? subdirs[i].uid : (uid_t)-1,
		                   o->root ? subdirs[i].gid : (gid_t)-1, error_r) < 0) {
			close(dfd);
			return -1;
		}
	}
	close(dfd);
	return 0;
}

/*
 * 20 hex digits: 32 bits of seconds and 20 of microseconds (so ids sort by
 * time until 2106), an 8-bit per-process counter (ids made in the same
 * microsecond by one process differ) and 20 random bits (processes differ).
 * spool_msg_new() creates tmp/<id> with O_EXCL and commit renames without
 * replacing, so a collision costs a retry or a 4xx, never a lost message.
 */
void
spool_new_id(char id_r[SPOOL_ID_LEN + 1])
{
	static atomic_uint counter;
	struct timespec ts;
	uint32_t rnd;
	uint64_t when;
	uint32_t tail;

	clock_gettime(CLOCK_REALTIME, &ts);
	when = ((uint64_t)(uint32_t)ts.tv_sec << 20) | (uint64_t)(ts.tv_nsec / 1000);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
		/* Entropy pool not ready (early boot) or no getrandom: the pid
		 * still tells processes apart. */
		rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)ts.tv_nsec;
	}
	tail = ((atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed) & 0xffu) << 20) |
	       (rnd & 0xfffffu);
	snprintf(id_r, SPOOL_ID_LEN + 1, "%013" PRIx64 "%07" PRIx32, when, tail);
}

/* Remember the first write error: the file is now incomplete for good. */
static int
spool_msg_fail_write(struct spool_msg *msg, int err)
{
	if (!msg->failed) {
		msg->failed = true;
		msg->write_errno = err;
		log_err("spool id=%s write failed: %s", msg->id, strerror(err));
	}
	errno = err;
	return -1;
}

static int
spool_msg_flush(struct spool_msg *msg)
{
	if (msg->failed)
		return spool_msg_fail_write(msg, msg->write_errno);
	if (msg->buf_len == 0)
		return 0;
	if (write_all(msg->fd, msg->buf, msg->buf_len) < 0)
		return spool_msg_fail_write(msg, errno);
	msg->buf_len = 0;
	return 0;
}

/* Buffered append of file bytes (envelope or message). */
static int
spool_msg_put(struct spool_msg *msg, const void *data, size_t len)
{
	if (msg->fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (msg->failed)
		return spool_msg_fail_write(msg, msg->write_errno);
	if (len > SPOOL_BUF_SIZE - msg->buf_len) {
		if (spool_msg_flush(msg) < 0)
			return -1;
		/* A chunk at least as big as the buffer goes straight out. */
		if (len >= SPOOL_BUF_SIZE) {
			if (write_all(msg->fd, data, len) < 0)
				return spool_msg_fail_write(msg, errno);
			return 0;
		}
	}
	memcpy(msg->buf + msg->buf_len, data, len);
	msg->buf_len += len;
	return 0;
}

static void
spool_msg_put_record(struct spool_msg *msg, const char *name, const char *value)
{
	char *esc = spool_escape(value);

	/* Errors stick in msg->failed; spool_msg_new() checks once at the end. */
	(void)spool_msg_put(msg, name, strlen(name));
	(void)spool_msg_put(msg, " ", 1);
	(void)spool_msg_put(msg, esc, strlen(esc));
	(void)spool_msg_put(msg, "\n", 1);
	free(esc);
}

static const char *
spool_envelope_missing(const struct spool_envelope *env)
{
	if (env->client == NULL)
		return "client";
	if (env->helo == NULL)
		return "helo";
	if (env->listener == NULL)
		return "listener";
	if (env->protocol == NULL)
		return "protocol";
	if (env->tls == NULL)
		return "tls";
	if (env->mail == NULL)
		return "mail";
	/* RFC 5321 3.3: no DATA without at least one accepted recipient. */
	if (env->n_rcpts == 0 || env->rcpts == NULL)
		return "rcpt";
	for (size_t i = 0; i < env->n_rcpts; i++) {
		if (env->rcpts[i] == NULL)
			return "rcpt";
	}
	return NULL;
}

struct spool_msg *
spool_msg_new(const char *dir, struct spool_envelope *env, const char **error_r)
{
	return spool_msg_new_in(dir, "tmp", env, error_r);
}

struct spool_msg *
spool_msg_new_in(const char *dir, const char *tmp_sub, struct spool_envelope *env,
                 const char **error_r)
{
	struct spool_msg *msg;
	const char *missing = spool_envelope_missing(env);
	char num[32];
	int err;

	if (missing != NULL) {
		spool_set_error(error_r, "spool envelope has no %s", missing);
		errno = EINVAL;
		return NULL;
	}
	msg = xcalloc(1, sizeof(*msg));
	msg->fd = -1;
	msg->incoming_path = spool_path(dir, "incoming", NULL);
	msg->tmp_path = spool_path(dir, tmp_sub, NULL);
	msg->tmp_dfd = open(msg->tmp_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (msg->tmp_dfd < 0) {
		spool_set_error(error_r, "open %s: %s", msg->tmp_path, strerror(errno));
		goto fail;
	}
	for (int try = 0; try < SPOOL_ID_TRIES && msg->fd < 0; try++) {
		spool_new_id(msg->id);
		free(msg->tmp_path);
		msg->tmp_path = spool_path(dir, tmp_sub, msg->id);
		/* Group-readable: the queue reads it by its group (tmp/ is
		 * set-group-ID to the queue's group, spool_init_dirs()). */
		msg->fd = openat(msg->tmp_dfd, msg->id,
		                 O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
		                 0640);
		if (msg->fd < 0 && errno != EEXIST) {
			spool_set_error(error_r, "create %s: %s", msg->tmp_path, strerror(errno));
			goto fail;
		}
	}
	if (msg->fd < 0) {
		spool_set_error(error_r, "create %s: no unused id after %d tries", msg->tmp_path,
		                SPOOL_ID_TRIES);
		goto fail;
	}
	msg->tmp_exists = true;
	msg->buf = xmalloc(SPOOL_BUF_SIZE);

	memcpy(env->id, msg->id, sizeof(env->id));
	if (env->time <= 0)
		env->time = (int64_t)time(NULL);
	(void)spool_msg_put(msg, SPOOL_MAGIC "\n", strlen(SPOOL_MAGIC) + 1);
	spool_msg_put_record(msg, "id", msg->id);
	snprintf(num, sizeof(num), "%" PRId64, env->time);
	spool_msg_put_record(msg, "time", num);
	spool_msg_put_record(msg, "client", env->client);
	spool_msg_put_record(msg, "helo", env->helo);
	spool_msg_put_record(msg, "listener", env->listener);
	spool_msg_put_record(msg, "protocol", env->protocol);
	spool_msg_put_record(msg, "tls", env->tls);
	if (env->auth != NULL)
		spool_msg_put_record(msg, "auth", env->auth);
	spool_msg_put_record(msg, "mail", env->mail);
	for (size_t i = 0; i < env->n_rcpts; i++)
		spool_msg_put_record(msg, "rcpt", env->rcpts[i]);
	(void)spool_msg_put(msg, "\n", 1);
	/* Write the envelope now: a full disk is then refused at DATA (452)
	 * rather than after the client has sent the whole message. */
	(void)spool_msg_flush(msg);
	if (msg->failed) {
		spool_set_error(error_r, "write %s: %s", msg->tmp_path, strerror(msg->write_errno));
		goto fail;
	}
	return msg;
fail:
	err = msg->write_errno != 0 ? msg->write_errno : errno;
	spool_msg_free(msg);
	errno = err;
	return NULL;
}

const char *
spool_msg_id(const struct spool_msg *msg)
{
	return msg->id;
}

int
spool_msg_errno(const struct spool_msg *msg)
{
	return msg->write_errno;
}

int
spool_msg_write(struct spool_msg *msg, const void *data, size_t len)
{
	if (spool_msg_put(msg, data, len) < 0)
		return -1;
	msg->size += len;
	return 0;
}

uint64_t
spool_msg_size(const struct spool_msg *msg)
{
	return msg->size;
}

/* rename(2) that never replaces an existing incoming/<id>. */
static int
spool_rename_noreplace(int from_dir_fd, const char *from, int to_dir_fd, const char *to_name)
{
	if (renameat2(from_dir_fd, from, to_dir_fd, to_name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* The file system cannot refuse to replace; tmp/ was created with
	 * O_EXCL, which is then the only guard against a reused id. */
	return renameat(from_dir_fd, from, to_dir_fd, to_name);
}

/* A commit step failed: log it, clean up the tmp file, remember the error.
 * Always returns -1. */
static int
spool_msg_commit_fail(struct spool_msg *msg, const char *step, int err)
{
	log_err("spool id=%s commit failed: %s: %s", msg->id, step, strerror(err));
	if (msg->fd >= 0) {
		close(msg->fd);
		msg->fd = -1;
	}
	if (msg->tmp_exists) {
		if (unlinkat(msg->tmp_dfd, msg->id, 0) < 0 && errno != ENOENT)
			log_err("spool id=%s unlink %s: %s", msg->id, msg->tmp_path,
			        strerror(errno));
		msg->tmp_exists = false;
	}
	msg->failed = true;
	if (msg->write_errno == 0)
		msg->write_errno = err;
	return -1;
}

/* Phase 1 of a commit: write out the buffer and start the disk write
 * without waiting, so the fsyncs of a batch overlap. */
int
spool_msg_commit_write(struct spool_msg *msg)
{
	if (msg->committed || (msg->fd < 0 && !msg->failed))
		fatal("spool id=%s commit of a message that is not open", msg->id);
	if (msg->failed)
		return spool_msg_commit_fail(msg, "write", msg->write_errno);
	if (spool_msg_flush(msg) < 0)
		return spool_msg_commit_fail(msg, "write", errno);
	/* Only a hint: fsync below is what counts. */
	(void)sync_file_range(msg->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return 0;
}

/* Phase 2 where every file gets its own fsync: fsync and close it. */
int
spool_msg_commit_sync(struct spool_msg *msg)
{
	int err;

	if (msg->failed || msg->fd < 0)
		return -1;
	/* fsync is not retried after an error: the kernel may have dropped the
	 * dirty pages, and a second fsync would wrongly report success. */
	if (fsync(msg->fd) < 0)
		return spool_msg_commit_fail(msg, "fsync", errno);
	err = close(msg->fd);
	msg->fd = -1;
	/* On Linux the descriptor is gone even after EINTR, and the data is
	 * already on disk: only a real error counts. */
	if (err < 0 && errno != EINTR)
		return spool_msg_commit_fail(msg, "close", errno);
	return 0;
}

/* Phase 2 of a group commit whose round ends in one sync for all its files
 * (spool_commit.c): wait until the file's pages have reached the device,
 * then close it. This issues no cache flush and no journal commit of its
 * own; what it buys is order: the file's data, its block allocation and its
 * size are on their way to disk (and journalled, on ext4 and XFS) before
 * the rename that makes its name visible in incoming/. */
int
spool_msg_commit_wait(struct spool_msg *msg)
{
	int err;

	if (msg->failed || msg->fd < 0)
		return -1;
	/* A write-back error on this file is reported here (the kernel's
	 * errseq for the mapping), as fsync would report it. */
	if (sync_file_range(msg->fd, 0, 0,
	                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
	                            SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		return spool_msg_commit_fail(msg, "sync_file_range", errno);
	err = close(msg->fd);
	msg->fd = -1;
	if (err < 0 && errno != EINTR)
		return spool_msg_commit_fail(msg, "close", errno);
	return 0;
}

/* Phase 3: rename tmp/ID into incoming/ (incoming_fd), not yet durable. */
int
spool_msg_commit_link(struct spool_msg *msg, int incoming_fd)
{
	if (msg->failed || !msg->tmp_exists)
		return -1;
	if (spool_rename_noreplace(msg->tmp_dfd, msg->id, incoming_fd, msg->id) < 0)
		return spool_msg_commit_fail(msg, "rename", errno);
	msg->tmp_exists = false;
	return 0;
}

/* Phase 4: incoming/ was fsynced (dir_errno 0) or that failed. */
int
spool_msg_commit_finish(struct spool_msg *msg, int incoming_fd, int dir_errno)
{
	if (msg->failed)
		return -1;
	if (dir_errno != 0) {
		/* We are going to answer 4xx: take the file back so the retry
		 * does not become a duplicate. If the queue already picked it
		 * up this fails, and the worst case is a duplicate, not a loss. */
		(void)unlinkat(incoming_fd, msg->id, 0);
		return spool_msg_commit_fail(msg, "fsync incoming", dir_errno);
	}
	msg->committed = true;
	return 0;
}

const char *
spool_msg_incoming_dir(const struct spool_msg *msg)
{
	return msg->incoming_path;
}

int
spool_msg_commit(struct spool_msg *msg)
{
	int dfd, r;

	if (spool_msg_commit_write(msg) < 0 || spool_msg_commit_sync(msg) < 0)
		return -1;
	dfd = open(msg->incoming_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return spool_msg_commit_fail(msg, "open incoming", errno);
	if (spool_msg_commit_link(msg, dfd) < 0) {
		close(dfd);
		return -1;
	}
	/* The new name is durable only once its directory is. */
	r = spool_msg_commit_finish(msg, dfd, fsync(dfd) < 0 ? errno : 0);
	close(dfd);
	return r;
}

void
spool_msg_free(struct spool_msg *msg)
{
	if (msg == NULL)
		return;
	if (msg->fd >= 0)
		close(msg->fd);
	if (msg->tmp_exists && unlinkat(msg->tmp_dfd, msg->id, 0) < 0 && errno != ENOENT)
		log_err("spool id=%s unlink %s: %s", msg->id, msg->tmp_path, strerror(errno));
	if (msg->tmp_dfd >= 0)
		close(msg->tmp_dfd);
	free(msg->tmp_path);
	free(msg->incoming_path);
	free(msg->buf);
	free(msg);
}

/* Bytes that stand for themselves in a value; the rest are %XX. */
static bool
spool_char_plain(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != '%';
}

char *
spool_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0, o = 0;
	char *out;

	for (size_t i = 0; p[i] != '\0'; i++)
		n += spool_char_plain(p[i]) ? 1 : 3;
	out = xmalloc(n + 1);
	for (size_t i = 0; p[i] != '\0'; i++) {
		if (spool_char_plain(p[i])) {
			out[o++] = (char)p[i];
		} else {
			out[o++] = '%';
			out[o++] = hex[p[i] >> 4];
			out[o++] = hex[p[i] & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static int
spool_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Only what spool_escape() writes is accepted: upper-case %XX, used for
 * exactly the bytes that need it, never %00 (it would cut the C string). So
 * every accepted value has one spelling, and escape(unescape(v)) == v. */
char *
spool_unescape(const char *s)
{
	size_t len = strlen(s), o = 0;
	char *out = xmalloc(len + 1);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			int hi = spool_hex_digit(s[i + 1]);
			int lo = hi < 0 ? -1 : spool_hex_digit(s[i + 2]);
			if (lo < 0)
				goto fail;
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0 || spool_char_plain(c))
				goto fail;
			i += 2;
		} else if (!spool_char_plain(c)) {
			goto fail;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

void
spool_envelope_clear(struct spool_envelope *env)
{
	free(env->client);
	free(env->helo);
	free(env->listener);
	free(env->protocol);
	free(env->tls);
	free(env->auth);
	free(env->mail);
	for (size_t i = 0; i < env->n_rcpts; i++)
		free(env->rcpts[i]);
	free(env->rcpts);
	memset(env, 0, sizeof(*env));
}

/* One '\n'-terminated line without its '\n' into *line_r. Returns 1, 0 at a
 * clean end of file, -1 with *error_r for a NUL byte, an overlong line or a
 * last line without '\n'. */
static int
spool_read_line(FILE *f, char **line_r, size_t *cap_r, size_t *len_r, unsigned lineno,
                const char **error_r)
{
	size_t len = 0;
	int c;

	while ((c = getc_unlocked(f)) != EOF && c != '\n') {
		if (c == '\0') {
			spool_set_error(error_r, "line %u: NUL byte", lineno);
			return -1;
		}
		if (len >= SPOOL_MAX_LINE) {
			spool_set_error(error_r, "line %u: longer than %d bytes", lineno,
			                SPOOL_MAX_LINE);
			return -1;
		}
		if (len + 1 >= *cap_r) {
			*cap_r = *cap_r == 0 ? 256 : *cap_r * 2;
			*line_r = xrealloc(*line_r, *cap_r);
		}
		(*line_r)[len++] = (char)c;
	}
	if (c == EOF) {
		if (ferror(f)) {
			spool_set_error(error_r, "read: %s", strerror(errno));
			return -1;
		}
		if (len == 0)
			return 0;
		spool_set_error(error_r, "line %u: no end of line", lineno);
		return -1;
	}
	if (*cap_r == 0) {
		*cap_r = 256;
		*line_r = xmalloc(*cap_r);
	}
	(*line_r)[len] = '\0';
	*len_r = len;
	return 1;
}

enum spool_record {
	REC_ID = 1 << 0,
	REC_TIME = 1 << 1,
	REC_CLIENT = 1 << 2,
	REC_HELO = 1 << 3,
	REC_LISTENER = 1 << 4,
	REC_PROTOCOL = 1 << 5,
	REC_TLS = 1 << 6,
	REC_AUTH = 1 << 7,
	REC_MAIL = 1 << 8,
	REC_RCPT = 1 << 9,
};

static const struct {
	const char *name;
	enum spool_record rec;
} spool_records[] = {
        {"id", REC_ID},     {"time", REC_TIME},         {"client", REC_CLIENT},
        {"helo", REC_HELO}, {"listener", REC_LISTENER}, {"protocol", REC_PROTOCOL},
        {"tls", REC_TLS},   {"auth", REC_AUTH},         {"mail", REC_MAIL},
        {"rcpt", REC_RCPT},
};

#define REC_REQUIRED                                                                               \
	(REC_ID | REC_TIME | REC_CLIENT | REC_HELO | REC_LISTENER | REC_PROTOCOL | REC_TLS |       \
	 REC_MAIL | REC_RCPT)

static bool
spool_valid_id(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return i == SPOOL_ID_LEN;
}

/* Unix seconds: decimal digits only, no sign, no overflow. */
static bool
spool_parse_time(const char *s, int64_t *time_r)
{
	int64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*time_r = v;
	return true;
}

/* Store one record's value into env; -1 with *error_r if it is invalid. */
static int
spool_store_record(struct spool_envelope *env, enum spool_record rec, const char *value,
                   unsigned lineno, const char **error_r)
{
	char **field = NULL;
	char *v;

	switch (rec) {
	case REC_ID:
		if (!spool_valid_id(value)) {
			spool_set_error(error_r, "line %u: bad id", lineno);
			return -1;
		}
		memcpy(env->id, value, SPOOL_ID_LEN + 1);
		return 0;
	case REC_TIME:
		if (!spool_parse_time(value, &env->time)) {
			spool_set_error(error_r, "line %u: bad time", lineno);
			return -1;
		}
		return 0;
	case REC_CLIENT:
		field = &env->client;
		break;
	case REC_HELO:
		field = &env->helo;
		break;
	case REC_LISTENER:
		field = &env->listener;
		break;
	case REC_PROTOCOL:
		field = &env->protocol;
		break;
	case REC_TLS:
		field = &env->tls;
		break;
	case REC_AUTH:
		field = &env->auth;
		break;
	case REC_MAIL:
		field = &env->mail;
		break;
	case REC_RCPT:
		break;
	}
	v = spool_unescape(value);
	if (v == NULL) {
		spool_set_error(error_r, "line %u: bad escaping", lineno);
		return -1;
	}
	if (field != NULL) {
		*field = v;
	} else {
		/* Grow by powers of two: n_rcpts is a power of two when full. */
		if ((env->n_rcpts & (env->n_rcpts - 1)) == 0)
			env->rcpts = xrealloc(env->rcpts, (env->n_rcpts ? env->n_rcpts * 2 : 1) *
			                                          sizeof(*env->rcpts));
		env->rcpts[env->n_rcpts++] = v;
	}
	return 0;
}

/* Parse the envelope from f (a file, or the head of one in memory that holds
 * the whole envelope). Returns 0 or -1 with *error_r. */
static int
spool_parse_envelope(FILE *f, const char *path, struct spool_envelope *env_r, long *body_offset_r,
                     const char **error_r)
{
	char *line = NULL;
	size_t cap = 0, len = 0;
	unsigned lineno = 1, seen = 0;
	long off;
	int r;

	r = spool_read_line(f, &line, &cap, &len, lineno, error_r);
	if (r < 0)
		goto fail;
	if (r == 0 || strcmp(line, SPOOL_MAGIC) != 0) {
		spool_set_error(error_r, "not a spool file (version 1)");
		goto fail;
	}
	for (;;) {
		enum spool_record rec = 0;
		char *sp;

		lineno++;
		r = spool_read_line(f, &line, &cap, &len, lineno, error_r);
		if (r < 0)
			goto fail;
		if (r == 0) {
			spool_set_error(error_r, "envelope not terminated by a blank line");
			goto fail;
		}
		if (len == 0)
			break;
		sp = strchr(line, ' ');
		if (sp == NULL) {
			spool_set_error(error_r, "line %u: no value", lineno);
			goto fail;
		}
		*sp = '\0';
		for (size_t i = 0; i < AR_NELEM(spool_records); i++) {
			if (strcmp(line, spool_records[i].name) == 0)
				rec = spool_records[i].rec;
		}
		if (rec == 0) {
			spool_set_error(error_r, "line %u: unknown record", lineno);
			goto fail;
		}
		if ((seen & rec) != 0 && rec != REC_RCPT) {
			spool_set_error(error_r, "line %u: repeated %s record", lineno, line);
			goto fail;
		}
		seen |= rec;
		if (spool_store_record(env_r, rec, sp + 1, lineno, error_r) < 0)
			goto fail;
	}
	if ((seen & REC_REQUIRED) != REC_REQUIRED) {
		for (size_t i = 0; i < AR_NELEM(spool_records); i++) {
			if ((REC_REQUIRED & spool_records[i].rec) &&
			    !(seen & spool_records[i].rec)) {
				spool_set_error(error_r, "no %s record", spool_records[i].name);
				break;
			}
		}
		goto fail;
	}
	off = ftell(f);
	if (off < 0) {
		spool_set_error(error_r, "ftell %s: %s", path, strerror(errno));
		goto fail;
	}
	*body_offset_r = off;
	free(line);
	return 0;
fail:
	free(line);
	spool_envelope_clear(env_r);
	return -1;
}

/* Envelopes are short: one read of this much takes all of almost every one. */
#define SPOOL_HEAD_READ 16384

/* Owners a message file in incoming/ may have (spool_set_owners()). */
static struct safeopen_expect spool_owners_expect = {.single_link = true};

void
spool_set_owners(uid_t worker_uid, uid_t queue_uid)
{
	spool_owners_expect.uids[0] = worker_uid;
	spool_owners_expect.uids[1] = queue_uid;
	spool_owners_expect.n_uids = 2;
}

int
spool_open_message(const char *path, const char **why_r)
{
	return safeopen_path(path, O_RDONLY, &spool_owners_expect, why_r);
}

int
spool_open_message_at(int dirfd, const char *name, const char **why_r)
{
	return safeopen_file(dirfd, name, O_RDONLY, 0, &spool_owners_expect, why_r);
}

int
spool_read_envelope_fd(int fd, const char *path, struct spool_envelope *env_r, long *body_offset_r,
                       uint64_t *file_size_r, const char **error_r)
{
	static _Thread_local char head[SPOOL_HEAD_READ];
	struct stat st;
	size_t n = 0;
	bool complete = false; /* the blank line ending the envelope is in head */
	FILE *f;
	int r;

	memset(env_r, 0, sizeof(*env_r));
	/* fstat, one read: the queue reads every message's envelope once,
	 * and stdio would add an lseek and reads of its own. */
	if (fstat(fd, &st) < 0) {
		spool_set_error(error_r, "fstat %s: %s", path, strerror(errno));
		return -1;
	}
	while (n < sizeof(head)) {
		ssize_t got = pread(fd, head + n, sizeof(head) - n, (off_t)n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			spool_set_error(error_r, "read %s: %s", path, strerror(errno));
			return -1;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		/* The whole envelope is in: no second read to see the end. */
		if ((complete = memmem(head, n, "\n\n", 2) != NULL))
			break;
	}
	if (file_size_r != NULL)
		*file_size_r = (uint64_t)st.st_size;
	if (n == 0) {
		spool_set_error(error_r, "not a spool file (version 1)");
		return -1;
	}
	/* The blank line that ends the envelope is in the head, or the head
	 * is the whole file: parse it in memory. Else (an envelope longer
	 * than the head: many recipients) read the same file through stdio. */
	if (complete || n < sizeof(head)) {
		f = fmemopen(head, n, "r");
	} else {
		int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		f = dup_fd < 0 || lseek(dup_fd, 0, SEEK_SET) < 0 ? NULL : fdopen(dup_fd, "r");
		if (f == NULL && dup_fd >= 0)
			close(dup_fd);
	}
	if (f == NULL) {
		spool_set_error(error_r, "open %s: %s", path, strerror(errno));
		return -1;
	}
	r = spool_parse_envelope(f, path, env_r, body_offset_r, error_r);
	fclose(f);
	return r;
}

int
spool_read_envelope_sized(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                          uint64_t *file_size_r, const char **error_r)
{
	const char *why;
	int fd, r;

	memset(env_r, 0, sizeof(*env_r));
	fd = spool_open_message(path, &why);
	if (fd < 0) {
		spool_set_error(error_r, "open %s: %s", path, why);
		return -1;
	}
	r = spool_read_envelope_fd(fd, path, env_r, body_offset_r, file_size_r, error_r);
	close(fd);
	return r;
}

int
spool_read_envelope(const char *path, struct spool_envelope *env_r, long *body_offset_r,
                    const char **error_r)
{
	return spool_read_envelope_sized(path, env_r, body_offset_r, NULL, error_r);
}
