# SPDX-License-Identifier: ISC
"""
mta_fixture.py - real upstream SMTP servers for the smtp-forward tests (and
the bench), each on free loopback ports with its own config, directories and
logs under a temp dir; started and stopped by pid, never a system instance.

  Upstream users      the accounts every upstream knows (UPSTREAM_USERS),
                      including one whose login and password hold UTF-8,
                      spaces, quotes, ':' and '\\'
  DovecotAuth         `dovecot -F -c FILE`: a passwd-file passdb (plus a
                      checkpassword passdb for logins passwd-file cannot hold),
                      a SASL socket for Postfix (smtpd_sasl_type = dovecot),
                      and optionally Dovecot's own submission server, a second
                      SMTP implementation
  Postfix             `postfix -c DIR start-fg`: one master, one smtpd service
                      per port, each with -o overrides (plain, AUTH only after
                      STARTTLS, implicit TLS, a 421 greeting, LOGIN only)
  SilentServer        accepts TCP connections and never says a word: the one
                      behaviour no real server shows on demand
  refused_port()      a loopback port nobody listens on
  wait_greeting()     connect until a port answers with a reply line

Waits are on conditions (a socket that exists, a port that greets), never on
fixed sleeps. Run as root (the test suite does): Postfix and Dovecot drop to
their own users (postfix, dovecot, dovenull) from the Debian packages.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import harness

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
UPSTREAM_NAME = "upstream.test.example"


def available() -> str | None:
    """None if Postfix and Dovecot (with its submission server) are installed,
    else what is missing (scripts/deps/forward.txt installs them)."""
    missing = [p for p in (POSTFIX, DOVECOT, "/usr/lib/dovecot/submission",
                           "/usr/lib/dovecot/checkpassword-reply") if not os.path.exists(p)]
    if os.geteuid() != 0:
        missing.append("root (Postfix and Dovecot drop to their own users)")
    return ", ".join(missing) if missing else None


# The accounts every upstream knows: login -> password.
SPECIAL_LOGIN = "jösé o'neil:\"q\"\\x@exämple.test"
SPECIAL_PASSWORD = "pä ss:w\"o\\rd ü€ 'end'"
UPSTREAM_USERS = {
    "fwd-alice": "Alice-Fwd-Secret-1",
    "fwd-bob@example.test": "b0b fwd pass 2",
    SPECIAL_LOGIN: SPECIAL_PASSWORD,
}


def upstream_secrets() -> set[str]:
    """What must never reach the gateway's log for these users."""
    out = set()
    for user, pw in UPSTREAM_USERS.items():
        out |= {pw, harness.b64(pw), harness.plain_ir(user, pw)}
    return out


def wait_greeting(port: int, timeout: float = 30.0, host: str = harness.HOST,
                  tls: bool = False, proc: subprocess.Popen | None = None) -> bytes:
    """Connect until the port sends its first reply line; return that line."""
    def probe():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before greeting")
        try:
            s = socket.create_connection((host, port), timeout=2)
        except OSError:
            return None
        try:
            if tls:
                s = harness.client_tls_context().wrap_socket(s)
            s.settimeout(5)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    return None
                data += chunk
            return data.split(b"\n", 1)[0]
        except OSError:
            return None
        finally:
            s.close()
    return harness.wait_until(probe, timeout, f"port {port} to greet")


def refused_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    return harness.free_port()


def _kill(proc: subprocess.Popen | None, pid: int | None = None, timeout: float = 15):
    """SIGTERM pid (default proc.pid), wait for proc; SIGKILL if it lingers."""
    if proc is None:
        return
    target = pid or proc.pid
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for p in {target, proc.pid}:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)


def make_upstream_cert(directory: Path) -> tuple[Path, Path]:
    """Self-signed ECDSA certificate for UPSTREAM_NAME (also our CA file)."""
    cert, key = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", f"/CN={UPSTREAM_NAME}", "-addext",
         f"subjectAltName=DNS:{UPSTREAM_NAME}", "-days", "2", "-keyout", str(key),
         "-out", str(cert)], check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- Dovecot

_CHECKPASSWORD = r'''#!/usr/bin/python3
# checkpassword (qmail interface) for Dovecot: "login\0password\0..." on fd 3;
# exit 1 = wrong, else exec the reply helper given as argv[1].
import json, os, sys
data = b""
while True:
    chunk = os.read(3, 4096)
    if not chunk:
        break
    data += chunk
parts = data.split(b"\0")
users = json.load(open(sys.argv[0] + ".json", encoding="utf-8"))
login, password = parts[0].decode("utf-8", "surrogateescape"), parts[1]
want = users.get(login)
if want is None or want.encode("utf-8") != password:
    sys.exit(1)
os.execv(sys.argv[1], sys.argv[1:])
'''


class DovecotAuth:
    """A Dovecot instance: passdbs for UPSTREAM_USERS, a SASL socket
    (self.auth_socket) for Postfix, and with submission_port a submission
    server (relaying to relay_port, which it contacts only after AUTH)."""

    def __init__(self, base: Path, name: str, mechanisms: str = "plain login",
                 submission_port: int | None = None, relay_port: int = 9,
                 extra_users: dict[str, str] | None = None):
        self.dir = harness.make_dir(base, f"dovecot-{name}-")
        self.name = name
        self.submission_port = submission_port
        self.run_dir = self.dir / "run"
        self.auth_socket = self.run_dir / "auth-client"
        self.log_path = self.dir / "dovecot.log"
        self.proc: subprocess.Popen | None = None
        users = self.dir / "users"
        table = dict(UPSTREAM_USERS, **(extra_users or {}))
        users.write_text("".join(f"{u}:{{PLAIN.b64}}{harness.b64(p)}\n"
                                 for u, p in table.items() if ":" not in u))
        os.chmod(users, 0o644)
        # Logins passwd-file cannot hold (a ':') go to checkpassword.
        cp = self.dir / "checkpassword"
        cp.write_text(_CHECKPASSWORD)
        os.chmod(cp, 0o755)
        Path(str(cp) + ".json").write_text(json.dumps(
            {u: p for u, p in UPSTREAM_USERS.items() if ":" in u}, ensure_ascii=False))
        os.chmod(str(cp) + ".json", 0o644)
        home = harness.make_dir(self.dir, "home-")
        os.chmod(home, 0o777)
        submission = ""
        if submission_port is not None:
            submission = f"""
service submission-login {{
  inet_listener submission {{
    address = {harness.HOST}
    port = {submission_port}
  }}
}}
submission_relay_host = {harness.HOST}
submission_relay_port = {relay_port}
hostname = dovecot-{name}.test.example
"""
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(f"""# authrelay test upstream {name}
base_dir = {self.run_dir}
state_dir = {self.dir}/state
instance_name = authrelay-test-{name}-{os.getpid()}
log_path = {self.log_path}
protocols = {"submission" if submission_port else "none"}
listen = {harness.HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_username_chars =
auth_username_format = %u
auth_cache_size = 0
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{home}/mail
passdb {{
  driver = passwd-file
  args = {users}
}}
passdb {{
  driver = checkpassword
  args = {cp}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={home}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
}}
# No auth penalty: every test client is 127.0.0.1, and failures are on
# purpose (without this socket Dovecot skips the penalty).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{submission}""")
        os.chmod(self.conf, 0o644)

    def start(self) -> "DovecotAuth":
        self._out = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot {self.name} exited: "
                                   + (self.dir / "stdout.log").read_text()
                                   + self.log_text())
            return self.auth_socket.exists() and stat.S_ISSOCK(os.stat(self.auth_socket).st_mode)
        harness.wait_until(ready, 30, f"dovecot {self.name} auth socket")
        if self.submission_port is not None:
            wait_greeting(self.submission_port, proc=self.proc)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        _kill(self.proc)
        self.proc = None
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None


# ---------------------------------------------------------------- Postfix

_POSTFIX_SERVICES = """\
anvil     unix  -       -       n       -       1       anvil
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
proxymap  unix  -       -       n       -       -       proxymap
rewrite   unix  -       -       n       -       -       trivial-rewrite
cleanup   unix  n       -       n       -       0       cleanup
"""


class Postfix:
    """One Postfix (its own config_directory, queue and data directories),
    with an smtpd service per entry of services: name -> port. Service names:
      plain       AUTH (PLAIN LOGIN) with or without STARTTLS
      tls_only    AUTH offered only after STARTTLS (smtpd_tls_auth_only)
      implicit    TLS from the first byte (smtpd_tls_wrappermode)
      greet421    every client gets a 421 greeting and is disconnected
      login_only  SASL from login_socket, whose Dovecot offers LOGIN only
    """

    def __init__(self, base: Path, sasl_socket: Path, cert: Path, key: Path,
                 services: dict[str, int], login_socket: Path | None = None):
        self.dir = harness.make_dir(base, "postfix-")
        self.ports = dict(services)
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        self.queue.mkdir(mode=0o755)
        self.data.mkdir(mode=0o700)
        shutil.chown(self.data, "postfix")
        self.log_path = self.dir / "postfix.log"
        self.proc: subprocess.Popen | None = None
        (self.dir / "main.cf").write_text(f"""# authrelay test upstream
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {UPSTREAM_NAME}
mydomain = test.example
mydestination =
inet_interfaces = {harness.HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = /dev/stdout
notify_classes =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_banner = $myhostname ESMTP Postfix
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_socket}
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
# Failed AUTHs must not slow the tests down.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_count_limit = 0
smtpd_client_auth_rate_limit = 0
greet421_restrictions = check_client_access inline:{{ {{ {harness.HOST} = 421 4.3.2 Service shutting down }} }}
""")
        overrides = {
            "plain": "",
            "tls_only": "-o smtpd_tls_auth_only=yes",
            "implicit": "-o smtpd_tls_wrappermode=yes",
            "greet421": "-o smtpd_delay_reject=no -o smtpd_client_restrictions=$greet421_restrictions",
            "login_only": f"-o smtpd_sasl_path={login_socket}",
        }
        lines = [f"{harness.HOST}:{port} inet n - n - - smtpd {overrides[name]}\n"
                 for name, port in services.items()]
        (self.dir / "master.cf").write_text("".join(lines) + _POSTFIX_SERVICES)

    def start(self) -> "Postfix":
        self._out = open(self.log_path, "ab")
        # start-fg: the master stays in the foreground and logs to stdout.
        self.proc = subprocess.Popen([POSTFIX, "-c", str(self.dir), "start-fg"],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        for name, port in self.ports.items():
            wait_greeting(port, tls=name == "implicit", proc=self.proc)
        return self

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None:
            # The master (start-fg execs it, so it is usually proc itself).
            _kill(self.proc, self.master_pid() or self.proc.pid)
        self.proc = None
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None


# ---------------------------------------------------------------- stub

class SilentServer:
    """Listens; the kernel completes every TCP handshake, nobody ever speaks."""

    def __init__(self, port: int | None = None):
        self.port = port or harness.free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.HOST, self.port))
        self.sock.listen(512)

    def stop(self):
        self.sock.close()


# ---------------------------------------------------------------- all of them

class Upstreams:
    """Every upstream the tests use, started together:
    ports: plain, tls_only, implicit, greet421, login_only (Postfix),
    dovecot (Dovecot's submission server), silent (stub), refused (nothing)."""

    def __init__(self, base: Path):
        self.dir = harness.make_dir(base, "upstreams-")
        self.cert, self.key = make_upstream_cert(self.dir)
        self.ports = {name: harness.free_port() for name in
                      ("plain", "tls_only", "implicit", "greet421", "login_only", "dovecot")}
        self.dove_main = DovecotAuth(self.dir, "main", "plain login",
                                     submission_port=self.ports["dovecot"],
                                     relay_port=self.ports["plain"])
        self.dove_login = DovecotAuth(self.dir, "login", "login")
        self.postfix = Postfix(self.dir, self.dove_main.auth_socket, self.cert, self.key,
                               {n: self.ports[n] for n in
                                ("plain", "tls_only", "implicit", "greet421", "login_only")},
                               login_socket=self.dove_login.auth_socket)
        self.silent = None
        self.ports["refused"] = refused_port()

    def start(self) -> "Upstreams":
        try:
            self.dove_main.start()
            self.dove_login.start()
            self.postfix.start()
            self.silent = SilentServer()
            self.ports["silent"] = self.silent.port
        except BaseException:
            self.dump_logs()
            self.stop()
            raise
        return self

    def addr(self, name: str) -> str:
        return f"{harness.HOST}:{self.ports[name]}"

    def dump_logs(self, lines: int = 40):
        for what, text in (("postfix", self.postfix.log_text()),
                           ("dovecot main", self.dove_main.log_text()),
                           ("dovecot login", self.dove_login.log_text())):
            print(f"--- {what} log (last {lines} lines):", file=sys.stderr)
            print("\n".join(text.splitlines()[-lines:]), file=sys.stderr)

    def stop(self):
        for part in (self.postfix, self.dove_login, self.dove_main, self.silent):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:  # keep stopping the others
                    print(f"stopping {part}: {e!r}", file=sys.stderr)


def direct_auth(port: int, login: str, password: str, mech: str = "PLAIN",
                starttls: bool = False, timeout: float = 10) -> int:
    """AUTH straight at an upstream (no gateway): the reply code."""
    c = harness.SMTPConn(harness.HOST, port, timeout=timeout)
    try:
        c.read_reply()
        c.ehlo()
        if starttls:
            c.cmd("STARTTLS").check(220)
            c.tls_handshake()
            c.ehlo()
        if mech == "PLAIN":
            code = c.cmd(f"AUTH PLAIN {harness.plain_ir(login, password)}").code
        else:
            c.cmd("AUTH LOGIN").check(334)
            c.cmd(harness.b64(login)).check(334)
            code = c.cmd(harness.b64(password)).code
        try:
            c.cmd("QUIT")
        except (harness.ConnectionClosed, OSError, TimeoutError):
            pass
        return code
    finally:
        c.close()
        if c in harness._open_conns:
            harness._open_conns.remove(c)
