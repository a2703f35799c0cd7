/* SPDX-License-Identifier: ISC */
/*
 * control_cmd.h - `authrelay status | lockouts | unlock LOGIN|ADDRESS |
 * reload | stop [-c FILE] [--json]`: the command line's end of the master's
 * control socket (control.h). Root only.
 */
#ifndef AUTHRELAY_CONTROL_CMD_H
#define AUTHRELAY_CONTROL_CMD_H

/* argv[0] is the command's name. Returns the exit status: 0; 1 refused
 * (unlock: nothing was locked); EX_USAGE; EX_NOPERM (not root);
 * EX_TEMPFAIL (the gateway does not run or does not answer); EX_CONFIG
 * (reload: the new configuration has errors, the running one stays). */
int control_cmd_main(int argc, char **argv);

#endif
