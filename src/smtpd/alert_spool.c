/*
 * alert_spool.c - write an alert mail from the auth process into the spool
 * (see alert_spool.h). The envelope says where it came from: client
 * "local", listener "alerts", protocol "LOCAL", no TLS, no auth, MAIL FROM
 * <> (RFC 3834 3.3: automatic messages go out with a null reverse-path, so
 * they can never bounce into a loop).
 */
#include "alert_spool.h"
#include "session.h"
#include "../authwire/auth_proto.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/threadpool.h"
#include "../spool/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALERT_MAX_RCPTS 64

struct alert_commit {
	struct spool_msg *msg;
	unsigned n_rcpts;
	int result;
};

static void
alert_commit_work(void *arg)
{
	struct alert_commit *ac = arg;

	ac->result = spool_msg_commit(ac->msg);
}

static void
alert_commit_done(void *arg)
{
	struct alert_commit *ac = arg;

	if (ac->result == 0)
		log_info("alert queued id=%s from=<> nrcpt=%u", spool_msg_id(ac->msg), ac->n_rcpts);
	else
		log_err("alert spool commit failed id=%s", spool_msg_id(ac->msg));
	spool_msg_free(ac->msg);
	free(ac);
}

void
alert_spool_write(const struct auth_alert_mail *mail, void *arg)
{
	const struct session_env *env = arg;
	char *rcpts[ALERT_MAX_RCPTS], date[64], hdr[512];
	struct spool_envelope envelope;
	struct alert_commit *ac;
	struct spool_msg *msg;
	const char *err = NULL, *p = mail->to;
	size_t n = 0;
	time_t now = time(NULL);
	struct tm tm;
	int hl;

	while (*p != '\0' && n < ALERT_MAX_RCPTS) {
		size_t len = strcspn(p, ",");
		if (len > 0 && len < 300) {
			rcpts[n] = xmalloc(len + 3);
			snprintf(rcpts[n], len + 3, "<%.*s>", (int)len, p);
			n++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (n == 0) {
		log_err("alert from the auth process has no recipient; dropped");
		return;
	}
	memset(&envelope, 0, sizeof(envelope));
	envelope.time = (int64_t)now;
	envelope.client = "local";
	envelope.helo = env->cfg->hostname;
	envelope.listener = "alerts";
	envelope.protocol = "LOCAL";
	envelope.tls = "none";
	envelope.mail = "<>";
	envelope.rcpts = rcpts;
	envelope.n_rcpts = n;
	msg = spool_msg_new(env->spool_dir, &envelope, &err);
	if (msg == NULL) {
		log_err("alert spool error: %s", err != NULL ? err : "unknown");
		goto out;
	}
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* RFC 5321 4.4: every message starts its trace here. */
	hl = snprintf(hdr, sizeof(hdr), "Received: by %s (authrelay alerts) id %s;\r\n\t%s\r\n",
	              env->cfg->hostname, spool_msg_id(msg), date);
	if (hl < 0 || (size_t)hl >= sizeof(hdr) || spool_msg_write(msg, hdr, (size_t)hl) != 0 ||
	    spool_msg_write(msg, mail->message, mail->message_len) != 0) {
		log_err("alert spool write failed id=%s", spool_msg_id(msg));
		spool_msg_free(msg);
		goto out;
	}
	ac = xcalloc(1, sizeof(*ac));
	ac->msg = msg;
	ac->n_rcpts = (unsigned)n;
	threadpool_submit(env->pool, alert_commit_work, alert_commit_done, ac);
out:
	for (size_t i = 0; i < n; i++)
		free(rcpts[i]);
}
