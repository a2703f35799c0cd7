/*
 * queue_cmd.h - `authrelay queue -c FILE list | show ID | flush | delete ID |
 * hold ID | release ID`: asks the running queue process over its control
 * socket (spool_dir/private/queue, bound by the master, reachable by root)
 * and prints the answer.
 */
#ifndef AUTHRELAY_QUEUE_CMD_H
#define AUTHRELAY_QUEUE_CMD_H

/* argv[0] is "queue". Returns the exit status: 0 ok, 1 refused or failed,
 * 2 usage. */
int queue_cmd_main(int argc, char **argv);

#endif
