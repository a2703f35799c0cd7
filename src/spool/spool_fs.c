/* SPDX-License-Identifier: ISC */
/*
 * spool_fs.c - which single call makes a group commit round durable on the
 * spool's file system (spool_fs.h).
 *
 * The file system is recognised by statfs(2)'s magic number; an ext4's mount
 * options are read from /proc/fs/ext4/DEV/options, DEV being the name the
 * kernel gives the block device (/sys/dev/block/MAJ:MIN). Whatever cannot be
 * read or recognised gets syncfs(), which is correct everywhere.
 */
#include "spool_fs.h"
#include "../lib/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* linux/magic.h: ext2, ext3 and ext4 share it. */
#define SPOOL_FS_EXT4_MAGIC 0xEF53
#define SPOOL_FS_XFS_MAGIC 0x58465342

const char *
spool_fs_sync_name(enum spool_fs_sync m)
{
	switch (m) {
	case SPOOL_FS_SYNC_DIR:
		return "dir_fsync";
	case SPOOL_FS_SYNC_FS:
		return "syncfs";
	case SPOOL_FS_SYNC_FILES:
		return "file_fsync";
	}
	return "?";
}

/* Is name one whole line of text? */
static bool
has_line(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; (p = strstr(p, name)) != NULL; p += n) {
		bool starts = p == text || p[-1] == '\n';
		bool ends = p[n] == '\0' || p[n] == '\n';
		if (starts && ends)
			return true;
	}
	return false;
}

/*
 * A "data=" line is there only when the file system has a journal (ext4
 * without one, and ext2, show none). Why data=ordered and data=journal are
 * enough for one fsync of incoming/ per round, in the order the round does
 * things (spool_commit.c):
 *
 *  1. Each file's write-back is waited for (sync_file_range WAIT_AFTER).
 *     Block allocation, the new on-disk size and, with dioread_nolock, the
 *     conversion of unwritten extents are journalled before the page
 *     write-back ends: in the running transaction or an earlier one.
 *  2. The renames into incoming/ join the running transaction, which is
 *     therefore the same as, or later than, every transaction of step 1:
 *     jbd2 has one running transaction for the whole file system and
 *     commits them strictly in order.
 *  3. fsync(incoming/) (ext4_sync_file -> ext4_fsync_journal) forces the
 *     commit of the transaction holding the directory's last change and
 *     waits for it, and so for every transaction before it.
 *  4. With barriers (the default), jbd2 writes the commit block with a
 *     cache flush before it (REQ_PREFLUSH) and FUA: the file data that
 *     step 1 put on the device is on stable storage when the commit is.
 *
 * Fast commits (the fast_commit option) replace the full commit of step 3
 * by a log of the tracked inodes; we do not rely on what that covers and
 * use syncfs() there. data=writeback is left out too: step 1 makes it
 * safe for our files, but that mode is not what the reasoning above was
 * checked against.
 */
bool
spool_fs_ext4_orders_data(const char *options)
{
	if (has_line(options, "fast_commit"))
		return false;
	return has_line(options, "data=ordered") || has_line(options, "data=journal");
}

/* The kernel's name of the block device dev ("loop0", "sda1", "dm-0"): the
 * name /proc/fs/ext4/ uses. -1 if unknown. */
static int
block_dev_name(dev_t dev, char *name, size_t size)
{
	char link[64], target[PATH_MAX];
	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return -1;
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	base = base != NULL ? base + 1 : target;
	size_t len = strlen(base);
	if (len == 0 || len >= size)
		return -1;
	memcpy(name, base, len + 1);
	return 0;
}

/* Read a small text file into buf[size]; -1 if unreadable. */
static int
read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;
	if (fd < 0)
		return -1;
	got = read_all(fd, buf, size - 1);
	close(fd);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0 ? 0 : -1;
}

/* syncfs() where the kernel or a system call filter refuses it: every file
 * gets its own fsync. */
static enum spool_fs_sync
sync_fs_or_files(int dir_fd)
{
	if (syncfs(dir_fd) < 0 && (errno == ENOSYS || errno == EPERM || errno == EINVAL))
		return SPOOL_FS_SYNC_FILES;
	return SPOOL_FS_SYNC_FS;
}

enum spool_fs_sync
spool_fs_sync_method(int dir_fd, char *desc, size_t size)
{
	struct statfs sfs;
	struct stat st;
	char dev[64], path[128], options[4096];

	if (fstatfs(dir_fd, &sfs) < 0 || fstat(dir_fd, &st) < 0) {
		snprintf(desc, size, "unknown file system (%s)", strerror(errno));
		return sync_fs_or_files(dir_fd);
	}
	if ((unsigned long)sfs.f_type == SPOOL_FS_XFS_MAGIC) {
		/* XFS logs all metadata too, but a directory's fsync forces
		 * only the log, and with an external log device that does not
		 * flush the data device: syncfs() covers both. */
		snprintf(desc, size, "xfs");
		return sync_fs_or_files(dir_fd);
	}
	if ((unsigned long)sfs.f_type != SPOOL_FS_EXT4_MAGIC) {
		snprintf(desc, size, "file system type 0x%lx", (unsigned long)sfs.f_type);
		return sync_fs_or_files(dir_fd);
	}
	if (block_dev_name(st.st_dev, dev, sizeof(dev)) < 0) {
		snprintf(desc, size, "ext4 on device %u:%u (name unknown)", major(st.st_dev),
		         minor(st.st_dev));
		return sync_fs_or_files(dir_fd);
	}
	snprintf(path, sizeof(path), "/proc/fs/ext4/%s/options", dev);
	if (read_text(path, options, sizeof(options)) < 0) {
		snprintf(desc, size, "ext4 %s (options unreadable)", dev);
		return sync_fs_or_files(dir_fd);
	}
	if (!spool_fs_ext4_orders_data(options)) {
		snprintf(desc, size, "ext4 %s without an ordered-data journal", dev);
		return sync_fs_or_files(dir_fd);
	}
	snprintf(desc, size, "ext4 %s %s", dev,
	         has_line(options, "data=journal") ? "data=journal" : "data=ordered");
	return SPOOL_FS_SYNC_DIR;
}
