/* SPDX-License-Identifier: ISC */
/*
 * secret_input.h - read a password for an admin command (passwd, test-auth):
 * from the terminal with echo off, or one line from stdin when it is not a
 * terminal. Reads go through read(2) into the caller's buffer, never stdio's,
 * and a signal during a prompt restores the terminal's echo before the
 * process dies of it.
 */
#ifndef AUTHRELAY_SECRET_INPUT_H
#define AUTHRELAY_SECRET_INPUT_H

#include <stddef.h>
#include <sys/types.h>
#include "common.h"

/* One line from fd into buf (bufsz bytes, NUL-terminated, the newline and a
 * CR before it removed). Returns its length; -1 at end of input with nothing
 * read, on a read error, or when the line does not fit (then *toolong_r is
 * set and buf wiped). */
ssize_t secret_input_line(int fd, char *buf, size_t bufsz, bool *toolong_r);

/* Open /dev/tty for prompting and arm the echo-restoring signal handlers.
 * Returns the fd, or -1 (errno set). */
int secret_input_tty_open(void);
/* Show prompt on the terminal fd with echo off and read one line (as
 * secret_input_line). Echo is turned off before the prompt shows, so that
 * nothing typed after it is flushed. */
ssize_t secret_input_prompt(int fd, const char *prompt, char *buf, size_t bufsz, bool *toolong_r);
/* Disarm the handlers and close fd. */
void secret_input_tty_close(int fd);

#endif
