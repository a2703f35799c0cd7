/* SPDX-License-Identifier: ISC */
/*
 * queue_cmd.h - `authrelay queue -c FILE [--json] list | summary | show ID`
 * and `delete | hold | release | flush ID... | ALL | -s SENDER | -r RCPT |
 * -d DOMAIN`: asks the running queue process over its control socket
 * (spool_dir/private/queue, bound by the master, reachable by root) and
 * prints the answer. list and summary read the spool itself when the queue
 * process is not running.
 */
#ifndef AUTHRELAY_QUEUE_CMD_H
#define AUTHRELAY_QUEUE_CMD_H

/* argv[0] is "queue". Returns the exit status: 0 ok, 1 refused or failed,
 * EX_USAGE, EX_TEMPFAIL (the queue process cannot be reached), EX_CONFIG. */
int queue_cmd_main(int argc, char **argv);

#endif
