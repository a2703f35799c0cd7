#!/bin/sh
# SPDX-License-Identifier: ISC
# Start a demo gateway in the foreground (what `make run` does):
#   inbound     127.0.0.1:2525  (local domain example.test)
#   submission  127.0.0.1:2587  STARTTLS required before AUTH
#   submissions 127.0.0.1:2465  implicit TLS
# user demo@example.test, password demo-password; spool under var/spool.
# Mail for example.test is delivered by the queue into var/maildir/<user>/.
set -eu
BIN=${1:-build/authrelay}
top=$(pwd)
demo=$top/var/demo
mkdir -p "$demo"
chmod 0755 "$top/var" "$demo"
mkdir -p "$top/var/maildir"

if [ ! -s "$demo/key.pem" ]; then
	# ECDSA P-256: small and fast handshakes.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$demo/key.pem" -out "$demo/cert.pem" -days 365 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
	chmod 0600 "$demo/key.pem"
fi

# One unprivileged user per process kind, as the package makes them
# (etc/authrelay.sysusers): the SMTP workers, the auth process (the only one
# that reads the users file), the queue (the only one that writes state/
# and the Maildirs). check-config warns when two of them are the same.
run_user=authrelay
auth_user=authrelay-auth
queue_user=authrelay-queue
if [ "$(id -u)" -eq 0 ]; then
	for u in "$run_user" "$auth_user" "$queue_user"; do
		id "$u" >/dev/null 2>&1 ||
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$u"
	done
fi

if [ ! -s "$demo/users" ]; then
	printf 'demo-password\n' | "$BIN" passwd demo@example.test > "$demo/users"
fi
chmod 0600 "$demo/users"
[ "$(id -u)" -eq 0 ] && chown "$auth_user" "$demo/users"
# The queue process writes the Maildirs as its own user.
[ "$(id -u)" -eq 0 ] && chown "$queue_user" "$top/var/maildir"

cat > "$demo/authrelay.conf" <<CONF
# Demo configuration written by scripts/demo.sh; see README.md for every key.
[server]
hostname = localhost
user = $run_user
auth_user = $auth_user
queue_user = $queue_user
spool_dir = ../spool
log_level = info

[tls]
cert_file = cert.pem
key_file = key.pem

[relay]
local_domains = example.test
client_networks = 127.0.0.0/8

[users-file]
path = users

[limits]
auth_failure_delay_ms = 1000

[queue]
# Short retries for a demo; see README "Queue".
retry_min = 30s
retry_max = 5m

# Local mail lands in Maildirs: var/maildir/<local part>/new/.
[route local]
domains = example.test
type = maildir
maildir = $top/var/maildir/%u

[listener inbound]
address = 127.0.0.1:2525
role = inbound

[listener submission]
address = 127.0.0.1:2587
role = submission
tls = required

[listener submissions]
address = 127.0.0.1:2465
role = submission
tls = implicit
CONF

"$BIN" check-config -c "$demo/authrelay.conf"
cat <<MSG
authrelay demo: inbound 127.0.0.1:2525, submission 127.0.0.1:2587 (STARTTLS),
submissions 127.0.0.1:2465 (implicit TLS); user demo@example.test / demo-password.
Try:  swaks --server 127.0.0.1:2587 -tls --auth PLAIN --auth-user demo@example.test \\
            --auth-password demo-password --from demo@example.test --to someone@example.org
Accepted mail is queued in var/spool/incoming/; mail for example.test is then
delivered into var/maildir/<user>/new/ (try --to someone@example.test), other
mail goes to its MX hosts. \`authrelay queue -c $demo/authrelay.conf list\`
shows the queue. Ctrl-C stops the gateway.
MSG
exec "$BIN" -f -c "$demo/authrelay.conf"
