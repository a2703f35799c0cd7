/* SPDX-License-Identifier: ISC */
/*
 * queue_journal.c - the delivery journal (queue_journal.h): segments on
 * disk, the replay at start, and the thread that writes and syncs records
 * in batches.
 *
 * The loop appends records to a memory buffer under the mutex and wakes the
 * thread. The thread takes the whole buffer (and a pending rotation or
 * retirement), writes it at the segment's offset, fdatasyncs once, publishes
 * the sequence number it made durable and bumps an eventfd; the loop's read
 * event on it updates what queue_journal_durable() says and calls synced_cb.
 * While the thread syncs, new records gather for its next round.
 *
 * Files: every one is opened from the journal directory's descriptor with
 * O_NOFOLLOW (a segment read must be a regular file of ours with one link),
 * and removed with unlinkat() from it: nothing planted there is followed.
 *
 * Locking: the mutex guards the buffer, the pending rotation and
 * retirement, the thread's durable sequence number, the error count and the
 * stop flag. The segment's descriptor and offset are the thread's; the
 * replay and the loop's view of sequence numbers are the loop's. The
 * directory's descriptor does not change once open.
 */
#include "queue_journal.h"
#include "../lib/log.h"
#include "../lib/safeopen.h"
#include "../spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

/* A segment's preallocated size: about 25,000 records. */
#define JOURNAL_SEGMENT_SIZE (1024 * 1024)
/* Past this many bytes in the current segment a checkpoint is due, leaving
 * room for the records that arrive while it runs. */
#define JOURNAL_ROTATE_AT (JOURNAL_SEGMENT_SIZE / 2)
/* A segment bigger than this is not replayed whole (never written so). */
#define JOURNAL_READ_MAX (64 * 1024 * 1024)
/* "sent " + id + " " + index + "\n" */
#define JOURNAL_RECORD_MAX 64
/* Digits of a recipient index. */
#define JOURNAL_INDEX_DIGITS 9

struct replay_rec {
	char id[SPOOL_ID_LEN + 1];
	size_t index;
};

struct queue_journal {
	struct event_base *base;
	char *dir; /* spool_dir/journal, for the log */
	int dfd;   /* that directory */
	queue_journal_synced_cb *synced_cb;
	void *arg;

	/* The loop's. */
	struct replay_rec *recs;
	size_t *rec_idx; /* recs[i].index, contiguous per id */
	size_t n_recs, n_recs_cap, n_segments_read;
	uint64_t appended, durable;
	uint64_t loop_segment;
	size_t loop_bytes; /* appended to loop_segment so far */
	int notify_fd;
	struct event *notify_ev;

	/* Under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf;
	size_t len, cap;
	uint64_t buf_seq; /* sequence number of the last record in buf */
	bool rotate;
	size_t rotate_at; /* offset in buf where the new segment starts */
	uint64_t rotate_to;
	uint64_t retire_below;
	uint64_t thread_durable;
	unsigned long errors;
	bool stop;

	/* The thread's. */
	pthread_t thread;
	bool thread_started;
	int fd;
	uint64_t segment;
	off_t off;
	bool failing; /* the last write or sync failed: log only the change */
};

/* ------------------------------------------------------------ records */

static bool
valid_id(const char *s, size_t n)
{
	if (n != SPOOL_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* One line without its '\n': "sent <id> <index>". */
static bool
parse_line(const char *p, size_t n, char id_r[SPOOL_ID_LEN + 1], size_t *index_r)
{
	size_t digits = 0, index = 0;

	if (n < 5 || memcmp(p, "sent ", 5) != 0)
		return false;
	p += 5;
	n -= 5;
	if (n < SPOOL_ID_LEN + 2 || !valid_id(p, SPOOL_ID_LEN) || p[SPOOL_ID_LEN] != ' ')
		return false;
	memcpy(id_r, p, SPOOL_ID_LEN);
	id_r[SPOOL_ID_LEN] = '\0';
	p += SPOOL_ID_LEN + 1;
	n -= SPOOL_ID_LEN + 1;
	for (; digits < n; digits++) {
		if (p[digits] < '0' || p[digits] > '9' || digits >= JOURNAL_INDEX_DIGITS)
			return false;
		index = index * 10 + (size_t)(p[digits] - '0');
	}
	if (digits == 0)
		return false;
	*index_r = index;
	return true;
}

size_t
queue_journal_parse(const char *buf, size_t len, queue_journal_record_cb *cb, void *arg)
{
	/* A segment is zeros past its last record: the first NUL ends it, and
	 * with it any record a torn write left half done. */
	const char *end = memchr(buf, '\0', len);
	const char *p = buf;
	size_t n = 0;

	if (end == NULL)
		end = buf + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char id[SPOOL_ID_LEN + 1];
		size_t index;
		if (nl == NULL)
			break;
		if (parse_line(p, (size_t)(nl - p), id, &index)) {
			cb(id, index, arg);
			n++;
		}
		p = nl + 1;
	}
	return n;
}

/* ------------------------------------------------------------ replay */

static void
replay_add(const char *id, size_t index, void *arg)
{
	struct queue_journal *j = arg;
	if (j->n_recs == j->n_recs_cap) {
		j->n_recs_cap = j->n_recs_cap ? j->n_recs_cap * 2 : 256;
		j->recs = xrealloc(j->recs, j->n_recs_cap * sizeof(*j->recs));
	}
	memcpy(j->recs[j->n_recs].id, id, SPOOL_ID_LEN + 1);
	j->recs[j->n_recs].index = index;
	j->n_recs++;
}

static int
rec_cmp(const void *a, const void *b)
{
	const struct replay_rec *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c != 0)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static bool
segment_name(const char *name, uint64_t *n_r)
{
	uint64_t n = 0;
	size_t i;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];
		if (i >= 16 || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		n = n << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	if (i != 16)
		return false;
	*n_r = n;
	return true;
}

static void
segment_name_of(uint64_t n, char name[17])
{
	snprintf(name, 17, "%016" PRIx64, n);
}

/* The journal directory, for readdir(): a descriptor of its own, so that
 * its offset is not the one of j->dfd. NULL if it cannot be opened. */
static DIR *
journal_opendir(const struct queue_journal *j)
{
	int fd = openat(j->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL && fd >= 0)
		close(fd);
	return d;
}

/* Read one segment's records into the replay. */
static void
replay_segment(struct queue_journal *j, uint64_t n)
{
	char name[17];
	const char *why = NULL;
	struct stat st;
	/* Ours, regular, one link: anything planted is not read. */
	struct safeopen_expect exp = {.uids = {geteuid()}, .n_uids = 1, .single_link = true};

	segment_name_of(n, name);
	int fd = safeopen_file(j->dfd, name, O_RDONLY, 0, &exp, &why);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > JOURNAL_READ_MAX) {
		log_err("journal: cannot read %s/%s: %s", j->dir, name,
		        fd < 0 ? (why != NULL ? why : strerror(errno)) : "unreadable or too large");
		if (fd >= 0)
			close(fd);
		return;
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	queue_journal_parse(buf, got, replay_add, j);
	free(buf);
	j->n_segments_read++;
}

/* Every segment in the directory, in order; the highest number in *last_r
 * (0 if none). Sorted and without repeats afterwards. */
static void
replay_load(struct queue_journal *j, uint64_t *last_r)
{
	uint64_t *nums = NULL, last = 0;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = journal_opendir(j);

	*last_r = 0;
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		uint64_t num;
		if (!segment_name(de->d_name, &num))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nums = xrealloc(nums, cap * sizeof(*nums));
		}
		nums[n++] = num;
		if (num > last)
			last = num;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		replay_segment(j, nums[i]);
	free(nums);
	if (j->n_recs > 0) {
		qsort(j->recs, j->n_recs, sizeof(*j->recs), rec_cmp);
		size_t w = 0;
		for (size_t i = 0; i < j->n_recs; i++)
			if (w == 0 || rec_cmp(&j->recs[w - 1], &j->recs[i]) != 0)
				j->recs[w++] = j->recs[i];
		j->n_recs = w;
		j->rec_idx = xcalloc(j->n_recs, sizeof(*j->rec_idx));
		for (size_t i = 0; i < j->n_recs; i++)
			j->rec_idx[i] = j->recs[i].index;
	}
	*last_r = last;
}

void
queue_journal_replay_counts(const struct queue_journal *j, size_t *records_r, size_t *segments_r)
{
	*records_r = j->n_recs;
	*segments_r = j->n_segments_read;
}

size_t
queue_journal_replayed(const struct queue_journal *j, const char *id, const size_t **idx_r)
{
	size_t lo = 0, hi = j->n_recs;

	/* The first record of id, if any (records are sorted by id). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(j->recs[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t end = lo;
	while (end < j->n_recs && strcmp(j->recs[end].id, id) == 0)
		end++;
	*idx_r = end > lo ? &j->rec_idx[lo] : NULL;
	return end - lo;
}

void
queue_journal_replay_done(struct queue_journal *j)
{
	free(j->recs);
	free(j->rec_idx);
	j->recs = NULL;
	j->rec_idx = NULL;
	j->n_recs = j->n_recs_cap = 0;
}

/* ------------------------------------------------------------ segments */

/* Create segment n full of zeros, durable with its directory entry, and
 * make it the one written to. The zeros are written, not fallocate()d: an
 * unwritten extent would turn every later overwrite into a metadata change
 * (and an fdatasync into a journal commit). 0 or -1 (logged). */
static int
segment_create(struct queue_journal *j, uint64_t n)
{
	static const char zeros[64 * 1024];
	char name[17];
	int fd;

	segment_name_of(n, name);
	/* O_EXCL: a name already there, ours or planted, is never written. */
	fd = openat(j->dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
	            0600);
	if (fd < 0) {
		log_err("journal: create %s/%s: %s", j->dir, name, strerror(errno));
		return -1;
	}
	for (size_t done = 0; done < JOURNAL_SEGMENT_SIZE; done += sizeof(zeros)) {
		if (write_all(fd, zeros, sizeof(zeros)) < 0)
			goto fail;
	}
	/* The file and then its name in the directory. */
	if (fsync(fd) < 0 || fsync(j->dfd) < 0)
		goto fail;
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->segment = n;
	j->off = 0;
	return 0;
fail:
	log_err("journal: prepare %s/%s: %s", j->dir, name, strerror(errno));
	close(fd);
	unlinkat(j->dfd, name, 0);
	return -1;
}

/* The thread: append n bytes at the segment's offset. 0 or -1. */
static int
segment_write(struct queue_journal *j, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (j->fd < 0) {
		errno = EBADF;
		return -1;
	}
	while (n > 0) {
		ssize_t w = pwrite(j->fd, p, n, j->off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		j->off += w;
	}
	return 0;
}

/* Remove the segments below `below` other than the one written to. Their
 * facts are durable elsewhere, and a segment that survives a crash anyway
 * (this unlink is not synced) only repeats facts: no directory fsync. */
static void
segment_retire(struct queue_journal *j, uint64_t below)
{
	struct dirent *de;
	DIR *d = journal_opendir(j);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		uint64_t num;
		if (!segment_name(de->d_name, &num) || num >= below || num == j->segment)
			continue;
		if (unlinkat(j->dfd, de->d_name, 0) < 0 && errno != ENOENT)
			log_err("journal: unlink %s/%s: %s", j->dir, de->d_name, strerror(errno));
	}
	closedir(d);
}

/* ------------------------------------------------------------ thread */

static void
journal_round_failed(struct queue_journal *j, const char *what, int err, unsigned long *errors)
{
	(*errors)++;
	if (!j->failing)
		log_err("alert=journal_write %s segment %016" PRIx64 ": %s: deliveries may be "
		        "repeated after a crash until it works again",
		        what, j->segment, strerror(err));
	j->failing = true;
}

static void *
journal_thread(void *arg)
{
	struct queue_journal *j = arg;
	char *spare = NULL;
	size_t spare_cap = 0;

	pthread_mutex_lock(&j->mu);
	for (;;) {
		while (!j->stop && j->len == 0 && !j->rotate && j->retire_below == 0)
			pthread_cond_wait(&j->cv, &j->mu);
		if (j->stop && j->len == 0 && !j->rotate && j->retire_below == 0)
			break;
		/* Take everything gathered; the loop appends to the spare. */
		char *buf = j->buf;
		size_t buf_cap = j->cap;
		size_t len = j->len, rotate_at = j->rotate ? j->rotate_at : len;
		bool rotate = j->rotate;
		uint64_t rotate_to = j->rotate_to, retire = j->retire_below, seq = j->buf_seq;
		j->buf = spare;
		j->cap = spare_cap;
		j->len = 0;
		j->rotate = false;
		j->retire_below = 0;
		pthread_mutex_unlock(&j->mu);

		unsigned long errors = 0;
		bool ok = true;
		if (segment_write(j, buf, rotate_at) < 0) {
			journal_round_failed(j, "write", errno, &errors);
			ok = false;
		}
		if (rotate) {
			/* The old segment's tail first, then the new one. */
			if (rotate_at > 0 && fdatasync(j->fd) < 0) {
				journal_round_failed(j, "fdatasync", errno, &errors);
				ok = false;
			}
			/* On failure we stay on the old segment, which retire
			 * never removes: only the checkpoint's space is lost. */
			if (segment_create(j, rotate_to) < 0)
				errors++;
			if (segment_write(j, buf + rotate_at, len - rotate_at) < 0) {
				journal_round_failed(j, "write", errno, &errors);
				ok = false;
			}
		}
		if (len > rotate_at || (!rotate && len > 0)) {
			/* The one sync of the round: data only, the blocks are
			 * allocated (segment_create). */
			if (fdatasync(j->fd) < 0) {
				journal_round_failed(j, "fdatasync", errno, &errors);
				ok = false;
			}
		}
		if (ok && errors == 0 && j->failing) {
			log_info("journal segment %016" PRIx64 " written again", j->segment);
			j->failing = false;
		}
		if (retire != 0)
			segment_retire(j, retire);
		spare = buf;
		spare_cap = buf_cap;

		pthread_mutex_lock(&j->mu);
		/* Durable or failed: either way the loop goes on. A journal
		 * that cannot be written costs duplicates after a crash, and
		 * must not stall delivery. */
		if (len > 0)
			j->thread_durable = seq;
		j->errors += errors;
		uint64_t one = 1;
		ssize_t w = write(j->notify_fd, &one, sizeof(one));
		(void)w; /* eventfd: only fails if the counter would overflow */
	}
	pthread_mutex_unlock(&j->mu);
	free(spare);
	return NULL;
}

static void
journal_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue_journal *j = arg;
	uint64_t v;
	ssize_t r = read(j->notify_fd, &v, sizeof(v));
	(void)r;

	pthread_mutex_lock(&j->mu);
	uint64_t durable = j->thread_durable;
	pthread_mutex_unlock(&j->mu);
	if (durable > j->durable) {
		j->durable = durable;
		j->synced_cb(j->arg);
	}
}

/* ------------------------------------------------------------ loop side */

/* One queue process per spool. A master killed with SIGKILL leaves its
 * queue process a SIGTERM (PR_SET_PDEATHSIG), and that one finishes the
 * deliveries in flight for up to shutdown_timeout; a new master started
 * meanwhile must not start a second queue on the same spool, which would
 * deliver the same messages and replay a journal still being written. The
 * lock is an flock() on the journal directory: the kernel drops it when the
 * process that holds it exits, however it exits. Waiting here blocks the
 * start only (no event loop runs yet), and is bounded. */
#define JOURNAL_LOCK_WAIT_MS (15 * 60 * 1000)

static int
journal_lock(struct queue_journal *j, char *err, size_t errsz)
{
	struct timespec step = {0, 50 * 1000 * 1000};
	unsigned waited_ms = 0;

	while (flock(j->dfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(err, errsz, "lock %s: %s", j->dir, strerror(errno));
			return -1;
		}
		if (waited_ms == 0)
			log_warn(
			        "queue: %s is locked by a queue process still finishing its "
			        "deliveries (or `authrelay queue list` reading it); waiting for it",
			        j->dir);
		if (waited_ms == 0)
			log_flush(); /* no loop runs to write batched lines yet */
		if (waited_ms >= JOURNAL_LOCK_WAIT_MS) {
			snprintf(err, errsz, "%s still locked after %u s by another queue process",
			         j->dir, waited_ms / 1000);
			return -1;
		}
		nanosleep(&step, NULL);
		waited_ms += 50;
	}
	if (waited_ms > 0)
		log_info("queue: %s unlocked after %u ms; going on", j->dir, waited_ms);
	return 0;
}

/* A journal of spool_dir/journal with nothing open yet, as
 * queue_journal_free() expects it. */
static struct queue_journal *
journal_alloc(const char *spool_dir)
{
	struct queue_journal *j = xcalloc(1, sizeof(*j));
	size_t n = strlen(spool_dir) + sizeof("/journal");

	j->fd = -1;
	j->dfd = -1;
	j->notify_fd = -1;
	j->dir = xmalloc(n);
	snprintf(j->dir, n, "%s/journal", spool_dir);
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	return j;
}

struct queue_journal *
queue_journal_open(struct event_base *base, const char *spool_dir,
                   queue_journal_synced_cb *synced_cb, void *arg, const char **error_r)
{
	static _Thread_local char err[4400];
	struct queue_journal *j = journal_alloc(spool_dir);
	uint64_t last;

	j->base = base;
	j->synced_cb = synced_cb;
	j->arg = arg;
	/* The master makes journal/ (the spool itself is root's, 0711: we may
	 * only pass through it); a queue started as another user makes it
	 * here. O_NOFOLLOW: a symlink planted in its place is refused. */
	if (mkdirat(AT_FDCWD, j->dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, sizeof(err), "mkdir %s: %s", j->dir, strerror(errno));
		goto fail;
	}
	j->dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->dfd < 0) {
		snprintf(err, sizeof(err), "open %s: %s", j->dir, strerror(errno));
		goto fail;
	}
	if (journal_lock(j, err, sizeof(err)) < 0)
		goto fail;
	replay_load(j, &last);
	if (segment_create(j, last + 1) < 0) {
		snprintf(err, sizeof(err), "cannot create a segment in %s (logged)", j->dir);
		goto fail;
	}
	j->loop_segment = j->segment;
	j->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (j->notify_fd < 0) {
		snprintf(err, sizeof(err), "eventfd: %s", strerror(errno));
		goto fail;
	}
	j->notify_ev = event_new(base, j->notify_fd, EV_READ | EV_PERSIST, journal_notify_cb, j);
	event_add(j->notify_ev, NULL);
	if (pthread_create(&j->thread, NULL, journal_thread, j) != 0) {
		snprintf(err, sizeof(err), "cannot start the journal thread");
		goto fail;
	}
	j->thread_started = true;
	return j;
fail:
	*error_r = err;
	queue_journal_free(j);
	return NULL;
}

struct queue_journal *
queue_journal_read(const char *spool_dir, bool *busy_r, const char **error_r)
{
	static _Thread_local char err[4400];
	struct queue_journal *j = journal_alloc(spool_dir);
	uint64_t last;

	*busy_r = false;
	/* Never made here: no journal/ is no record. */
	j->dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->dfd < 0 && errno == ENOENT)
		return j;
	if (j->dfd < 0) {
		snprintf(err, sizeof(err), "open %s: %s", j->dir, strerror(errno));
		goto fail;
	}
	while (flock(j->dfd, LOCK_SH | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK) {
			*busy_r = true;
			snprintf(err, sizeof(err), "%s is locked by a running queue process",
			         j->dir);
		} else {
			snprintf(err, sizeof(err), "lock %s: %s", j->dir, strerror(errno));
		}
		goto fail;
	}
	replay_load(j, &last);
	return j;
fail:
	*error_r = err;
	queue_journal_free(j);
	return NULL;
}

void
queue_journal_free(struct queue_journal *j)
{
	if (j == NULL)
		return;
	if (j->thread_started) {
		pthread_mutex_lock(&j->mu);
		j->stop = true;
		pthread_cond_signal(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->thread, NULL);
	}
	if (j->notify_ev != NULL)
		event_free(j->notify_ev);
	if (j->notify_fd >= 0)
		close(j->notify_fd);
	if (j->fd >= 0)
		close(j->fd);
	if (j->dfd >= 0)
		close(j->dfd);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	queue_journal_replay_done(j);
	free(j->buf);
	free(j->dir);
	free(j);
}

uint64_t
queue_journal_sent(struct queue_journal *j, const char *id, size_t index)
{
	char rec[JOURNAL_RECORD_MAX];
	int n = snprintf(rec, sizeof(rec), "sent %s %zu\n", id, index);
	if (n < 0 || (size_t)n >= sizeof(rec))
		fatal("journal: record for id=%s does not fit", id);

	pthread_mutex_lock(&j->mu);
	if (j->len + (size_t)n > j->cap) {
		j->cap = j->cap ? j->cap * 2 : 4096;
		while (j->len + (size_t)n > j->cap)
			j->cap *= 2;
		j->buf = xrealloc(j->buf, j->cap);
	}
	memcpy(j->buf + j->len, rec, (size_t)n);
	j->len += (size_t)n;
	j->buf_seq = ++j->appended;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	j->loop_bytes += (size_t)n;
	return j->appended;
}

uint64_t
queue_journal_appended(const struct queue_journal *j)
{
	return j->appended;
}

uint64_t
queue_journal_durable(const struct queue_journal *j)
{
	return j->durable;
}

bool
queue_journal_wants_rotation(const struct queue_journal *j)
{
	return j->loop_bytes >= JOURNAL_ROTATE_AT;
}

uint64_t
queue_journal_rotate(struct queue_journal *j)
{
	pthread_mutex_lock(&j->mu);
	if (j->rotate)
		fatal("journal: a rotation is already pending");
	j->rotate = true;
	j->rotate_at = j->len;
	j->rotate_to = ++j->loop_segment;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	j->loop_bytes = 0;
	return j->loop_segment;
}

void
queue_journal_retire(struct queue_journal *j, uint64_t segment)
{
	pthread_mutex_lock(&j->mu);
	j->retire_below = segment;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

uint64_t
queue_journal_segment(const struct queue_journal *j)
{
	return j->loop_segment;
}

unsigned long
queue_journal_errors(const struct queue_journal *j)
{
	struct queue_journal *mj = (struct queue_journal *)j;
	pthread_mutex_lock(&mj->mu);
	unsigned long e = mj->errors;
	pthread_mutex_unlock(&mj->mu);
	return e;
}
