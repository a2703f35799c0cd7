# SPDX-License-Identifier: ISC
"""The fail2ban filter and jail shipped in etc/fail2ban/, on a log the
gateway wrote: the real fail2ban-regex finds the addresses that failed AUTH
(and the lockouts), and only those, also when logins are built to inject a
second client=; and a real fail2ban-server, run with its own socket, pid
file and configuration directory and an action that writes the banned
addresses to a file, bans the attackers and nobody else.

Clients come from several loopback addresses (127.0.0.x): 127.0.0.2 guesses
passwords until it is locked out and goes on; 127.0.0.4 fails with logins
that name 127.0.0.5-7 as the client; 127.0.0.8 sends a malformed PLAIN
message; 127.0.0.3 mistypes once, then logs in."""

import collections
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness import REPO, SMTPConn, b64, make_dir, plain_ir, run_tool, wait_until

FILTER = REPO / "etc" / "fail2ban" / "filter.d" / "authrelay.conf"
JAIL = REPO / "etc" / "fail2ban" / "jail.d" / "authrelay.conf"

pytestmark = pytest.mark.skipif(shutil.which("fail2ban-regex") is None or
                                shutil.which("fail2ban-server") is None,
                                reason="fail2ban not installed (scripts/deps/logs.txt)")

ATTACKER, LEGIT, INJECTOR, MALFORMED = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.8"
INJECTED = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
# Logins that would make a careless reader see another client.
INJECTIONS = [
    f'x" client={INJECTED[0]} listener=plain result=fail',
    f"y client={INJECTED[1]}",
    f"z\n2024-01-01T00:00:00.000Z auth[1] info: s=1 auth client={INJECTED[2]} "
    f"listener=plain result=fail",
]
MAXRETRY = 3


@pytest.fixture
def f2bgw(make_gateway):
    """A gateway of its own per test: the attack locks its attacker out."""
    return make_gateway({
        "listener plain": {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
                           "max_auth_failures": 50},
        "protection": {"delay_ms": 0, "lockout_client_failures": 4,
                       "lockout_login_failures": 0, "lockout_client_login_failures": 0,
                       "lockout_time": 600},
    })


def auth_codes(gw, source, attempts):
    """AUTH PLAIN (user, password) attempts in one connection from source."""
    c = SMTPConn.open(gw, "plain", source=source)
    c.ehlo()
    codes = []
    for user, pw in attempts:
        codes.append(c.cmd(f"AUTH PLAIN {plain_ir(user, pw)}").code)
    c.cmd("QUIT")
    c.close()
    return codes


def attack(gw, users, tag):
    """The traffic of the module docstring; returns once the auth process
    logged all of it."""
    mark = gw.log_mark()
    alice = users["alice"]
    codes = auth_codes(gw, ATTACKER, [("alice", f"guess-{tag}-{i}") for i in range(6)])
    assert codes == [535] * 4 + [454] * 2, codes   # locked out after 4, goes on
    for login in INJECTIONS:
        assert auth_codes(gw, INJECTOR, [(login, f"nope-{tag}")]) == [535]
    c = SMTPConn.open(gw, "plain", source=MALFORMED)
    c.ehlo()
    c.cmd("AUTH PLAIN " + b64("no-nul-here")).check(535)
    c.close()
    assert auth_codes(gw, LEGIT, [("alice", f"typo-{tag}"), ("alice", alice.password)]) == \
        [535, 235]
    wait_until(lambda: len(re.findall(r" info: s=\S+ auth ", gw.log_text()[mark:])) >=
               6 + 3 + 1 + 2, 15, "the AUTH lines of the attack")
    wait_until(lambda: re.search(rf"auth: lockout scope=client client={ATTACKER}",
                                 gw.log_text()), 10, "the lockout line")


def regex_ips(log: Path, failregex) -> collections.Counter:
    """The address of every failure fail2ban-regex finds in log."""
    r = run_tool(["fail2ban-regex", "-o", "ip", str(log), str(failregex)])
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return collections.Counter(l for l in r.stdout.decode().split("\n") if l)


def as_syslog(text: str) -> str:
    """The same lines as log = syslog writes them (through a syslog daemon)."""
    return re.sub(r"^\S+Z (\w+)\[(\d+)\] \w+: ", r"Dec  5 10:00:00 mx authrelay/\1[\2]: ",
                  text, flags=re.M)


def test_fail2ban_regex_finds_the_true_clients(f2bgw, users, tmp_path):
    attack(f2bgw, users, "regex")
    ips = regex_ips(f2bgw.log_path, FILTER)
    assert ips[ATTACKER] >= 6, ips   # 4 failures, 2 while locked out, the lockout
    assert ips[INJECTOR] == len(INJECTIONS), ips
    assert ips[MALFORMED] == 1, ips
    assert ips[LEGIT] == 1, ips
    assert set(ips) == {ATTACKER, INJECTOR, MALFORMED, LEGIT}, ips
    # log = syslog: the same lines, the same addresses
    syslog = tmp_path / "mail.log"
    syslog.write_text(as_syslog(f2bgw.log_text()))
    assert regex_ips(syslog, FILTER) == ips


def test_plain_client_filter_cannot_be_steered(f2bgw, users, tmp_path):
    """Even the plainest filter an admin could write, client=<HOST> on any
    line, finds only addresses that really connected."""
    attack(f2bgw, users, "plain")
    plain = tmp_path / "plain.conf"
    plain.write_text("[Definition]\nfailregex = client=<HOST>\n")
    ips = regex_ips(f2bgw.log_path, plain)
    assert ips, "the plain filter matched nothing"
    assert not set(ips) & set(INJECTED), ips
    assert set(ips) <= {"127.0.0.1", ATTACKER, INJECTOR, MALFORMED, LEGIT}, ips
    # The same with a greedy prefix, which takes the last client= of a line.
    plain.write_text("[Definition]\nfailregex = ^.*client=<HOST>\n")
    ips = regex_ips(f2bgw.log_path, plain)
    assert not set(ips) & set(INJECTED), ips


def write_f2b_config(d: Path, gw, banned: Path):
    """A fail2ban configuration directory with the shipped filter and jail,
    turned on by a .local for the gateway's log file, and an action that
    writes each banned address to `banned`."""
    for sub in ("filter.d", "jail.d", "action.d"):
        (d / sub).mkdir(parents=True)
    shutil.copy(FILTER, d / "filter.d" / "authrelay.conf")
    shutil.copy(JAIL, d / "jail.d" / "authrelay.conf")
    (d / "fail2ban.conf").write_text(
        "[Definition]\nloglevel = INFO\n"
        f"logtarget = {d / 'fail2ban.log'}\nsocket = {d / 'fail2ban.sock'}\n"
        f"pidfile = {d / 'fail2ban.pid'}\ndbfile = :memory:\n")
    (d / "jail.conf").write_text("[DEFAULT]\naction = record\n")
    (d / "action.d" / "record.conf").write_text(
        "[Definition]\nactionstart =\nactionstop =\nactioncheck =\n"
        f"actionban = echo <ip> >> {banned}\nactionunban =\n")
    (d / "jail.d" / "authrelay.local").write_text(
        "[authrelay]\nenabled = true\nbackend = polling\n"
        f"logpath = {gw.log_path}\nmaxretry = {MAXRETRY}\n")


def test_fail2ban_server_bans_the_attackers_only(f2bgw, users, base_dir):
    """The shipped jail, turned on, on the log of a gateway under attack."""
    d = make_dir(base_dir, "fail2ban-")
    banned = d / "banned"
    write_f2b_config(d / "etc", f2bgw, banned)
    sock, pid = d / "etc" / "fail2ban.sock", d / "etc" / "fail2ban.pid"
    server = subprocess.Popen(["fail2ban-server", "-f", "-x", "-c", str(d / "etc"),
                               "-s", str(sock), "-p", str(pid)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(d / "server.err", "wb"))
    try:
        def jail_up():
            assert server.poll() is None, (d / "server.err").read_text()
            r = run_tool(["fail2ban-client", "-s", str(sock), "status", "authrelay"],
                         timeout=10)
            return r.returncode == 0
        wait_until(jail_up, 30, "fail2ban-server and its authrelay jail")
        attack(f2bgw, users, "server")
        wait_until(lambda: banned.exists() and
                   {ATTACKER, INJECTOR} <= set(banned.read_text().split()), 30,
                   "fail2ban to ban the attackers")
        r = run_tool(["fail2ban-client", "-s", str(sock), "status", "authrelay"])
        status = r.stdout.decode()
        assert re.search(r"Banned IP list:\s+.*" + re.escape(ATTACKER), status), status
        # Whatever fail2ban has read by now: never an innocent address.
        assert set(banned.read_text().split()) == {ATTACKER, INJECTOR}, \
            banned.read_text() + (d / "etc" / "fail2ban.log").read_text()
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(5)
