/*
 * alert_spool.h - an SMTP worker's part in alerts: the auth process raises
 * them (auth_alert.h) but cannot write the spool, which belongs to the
 * worker user (and a chrooted worker sees nothing else); so it sends each
 * alert mail to a worker as an ALERT message and the worker puts it into
 * incoming/ like a received message, from the null sender <>, for the queue
 * to deliver.
 */
#ifndef AUTHRELAY_ALERT_SPOOL_H
#define AUTHRELAY_ALERT_SPOOL_H

struct session_env;
struct auth_alert_mail;

/* auth_client's ALERT callback; arg is the worker's struct session_env. The
 * commit (fsyncs) runs on the env's thread pool; the result is logged as
 * "alert queued id=..." or an error. */
void alert_spool_write(const struct auth_alert_mail *mail, void *arg);

#endif
