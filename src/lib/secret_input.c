/* SPDX-License-Identifier: ISC */
/*
 * secret_input.c - password entry for the admin commands (see the header).
 * One terminal at a time per process: the saved terminal state lives here so
 * that the signal handler can put echo back.
 */
#include "secret_input.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static const int secret_input_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
static struct sigaction secret_input_old[AR_NELEM(secret_input_sigs)];
/* Saved for the signal handler: restore echo, then die of the signal. */
static int secret_input_tty_fd = -1;
static struct termios secret_input_saved_tio;

static void
secret_input_on_signal(int sig)
{
	if (secret_input_tty_fd >= 0)
		tcsetattr(secret_input_tty_fd, TCSAFLUSH, &secret_input_saved_tio);
	signal(sig, SIG_DFL);
	raise(sig);
}

ssize_t
secret_input_line(int fd, char *buf, size_t bufsz, bool *toolong_r)
{
	size_t n = 0;
	bool overflow = false;

	*toolong_r = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			if (n == 0 && !overflow)
				return -1;
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 < bufsz)
			buf[n++] = c;
		else
			overflow = true;
		c = 0;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (overflow) {
		*toolong_r = true;
		explicit_bzero(buf, bufsz);
		return -1;
	}
	return (ssize_t)n;
}

int
secret_input_tty_open(void)
{
	struct sigaction sa;
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = secret_input_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < AR_NELEM(secret_input_sigs); i++)
		sigaction(secret_input_sigs[i], &sa, &secret_input_old[i]);
	return fd;
}

ssize_t
secret_input_prompt(int fd, const char *prompt, char *buf, size_t bufsz, bool *toolong_r)
{
	struct termios tio;
	ssize_t n;

	*toolong_r = false;
	if (tcgetattr(fd, &secret_input_saved_tio) < 0)
		return -1;
	tio = secret_input_saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	tio.c_lflag |= ICANON;
	secret_input_tty_fd = fd;
	if (tcsetattr(fd, TCSAFLUSH, &tio) < 0) {
		secret_input_tty_fd = -1;
		return -1;
	}
	/* The prompt only once echo is off: TCSAFLUSH drops typeahead, so a
	 * password typed as soon as the prompt shows must come after it. */
	if (write(fd, prompt, strlen(prompt)) < 0) {
		tcsetattr(fd, TCSANOW, &secret_input_saved_tio);
		secret_input_tty_fd = -1;
		return -1;
	}
	n = secret_input_line(fd, buf, bufsz, toolong_r);
	tcsetattr(fd, TCSAFLUSH, &secret_input_saved_tio);
	secret_input_tty_fd = -1;
	if (write(fd, "\n", 1) < 0) {
		/* Only cosmetic. */
	}
	return n;
}

void
secret_input_tty_close(int fd)
{
	for (size_t i = 0; i < AR_NELEM(secret_input_sigs); i++)
		sigaction(secret_input_sigs[i], &secret_input_old[i], NULL);
	close(fd);
}
