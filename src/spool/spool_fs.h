/* SPDX-License-Identifier: ISC */
/*
 * spool_fs.h - what the spool's file system promises about durability, and
 * so which single system call ends a group commit round (spool_commit.c).
 *
 * A round first writes every message out and waits for that write-back
 * (sync_file_range), then renames each into incoming/, then makes the whole
 * round durable with ONE call instead of one fsync per file:
 *
 *   SPOOL_FS_SYNC_DIR    fsync(incoming/): enough on ext4 with a journal in
 *                        data=ordered or data=journal mode (the rename's
 *                        journal commit carries, and is ordered after, every
 *                        earlier metadata change of the file system)
 *   SPOOL_FS_SYNC_FS     syncfs(): on Linux the same guarantee as an fsync
 *                        of every file of that file system (XFS, ext4
 *                        without a journal, btrfs, anything unknown)
 *   SPOOL_FS_SYNC_FILES  syncfs() was refused (a seccomp filter, an old
 *                        kernel): an fsync per file, then incoming/
 *
 * The reasoning per file system is in spool_fs.c and spool_commit.c.
 */
#ifndef AUTHRELAY_SPOOL_FS_H
#define AUTHRELAY_SPOOL_FS_H

#include <stdbool.h>
#include <stddef.h>

enum spool_fs_sync {
	SPOOL_FS_SYNC_DIR,
	SPOOL_FS_SYNC_FS,
	SPOOL_FS_SYNC_FILES,
};

/* The method for the file system holding dir_fd (an open directory). It may
 * call syncfs(dir_fd) once, to see that the call is allowed. desc[size] gets
 * a short text for the log ("ext4 loop0 data=ordered"). Never fails: when in
 * doubt it answers SPOOL_FS_SYNC_FS or SPOOL_FS_SYNC_FILES. */
enum spool_fs_sync spool_fs_sync_method(int dir_fd, char *desc, size_t size);

/* The method's name as logged: "dir_fsync", "syncfs" or "file_fsync". */
const char *spool_fs_sync_name(enum spool_fs_sync);

/* Given the text of /proc/fs/ext4/DEV/options (one option per line), true
 * when that ext4 has a journal that orders data (data=ordered or
 * data=journal) and no fast commits: the case SPOOL_FS_SYNC_DIR is for. */
bool spool_fs_ext4_orders_data(const char *options);

#endif
