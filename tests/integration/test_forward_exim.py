# SPDX-License-Identifier: ISC
"""
test_forward_exim.py - the smtp-forward auth source against a second real
MTA: Exim with plaintext authenticators (PLAIN and LOGIN), next to the
Postfix + Dovecot upstreams of test_forward.py.

Debian lets only one mail-transport-agent be installed, and Postfix is the
one the other tests and the benchmark need. So Exim's binary is taken from
Debian's own exim4-daemon-light package, unpacked (not installed) into
build/exim/ by `apt-get download` + `dpkg -x`, and run with its own config
(-C), spool and logs in a temp dir on a free loopback port. Exim's
compiled-in user Debian-exim is created if missing, as the package would.
The accounts are those of mta_fixture.UPSTREAM_USERS, special characters
included; Exim compares base64 forms, so no character needs quoting.
"""
import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import harness
import mta_fixture
from mta_fixture import SPECIAL_LOGIN, SPECIAL_PASSWORD, UPSTREAM_USERS

EXIM_NAME = "exim.test.example"
EXIM_ROOT = harness.REPO / "build" / "exim"
EXIM_BIN = EXIM_ROOT / "usr" / "sbin" / "exim4"


def _unpack_exim() -> str | None:
    """Unpack Debian's Exim into build/exim; None, or why it cannot be had."""
    if EXIM_BIN.exists():
        return None
    if os.geteuid() != 0:
        return "needs root (Exim runs as root with -C, drops to Debian-exim)"
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        return "not a Debian system"
    debs = EXIM_ROOT.parent / "exim-debs"
    debs.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "download", "exim4-daemon-light"], cwd=debs,
                       capture_output=True, text=True, timeout=300)
    files = sorted(debs.glob("exim4-daemon-light_*.deb"))
    if not files:
        return f"apt-get download exim4-daemon-light failed: {r.stderr.strip()[-200:]}"
    subprocess.run(["dpkg", "-x", str(files[-1]), str(EXIM_ROOT)], check=True, timeout=120)
    return None if EXIM_BIN.exists() else "exim4 not found in the package"


def _ensure_user():
    if subprocess.run(["id", "Debian-exim"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "Debian-exim"], check=True)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


class Exim:
    """Exim on a free loopback port, STARTTLS offered, AUTH PLAIN and LOGIN
    (mechanisms restricts what it offers)."""

    def __init__(self, base: Path, mechanisms=("PLAIN", "LOGIN")):
        self.dir = harness.make_dir(base, "exim-")
        self.port = harness.free_port()
        self.cert, self.key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", f"/CN={EXIM_NAME}", "-addext", f"subjectAltName=DNS:{EXIM_NAME}",
             "-days", "2", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60)
        os.chmod(self.cert, 0o644)
        (self.dir / "spool").mkdir()
        users = self.dir / "users"
        users.write_text("".join(f"{_b64(u)}: {_b64(p)}\n" for u, p in UPSTREAM_USERS.items()))
        check = "{${str2b64:%s}}{${lookup{${str2b64:%s}}lsearch{%s}{$value}fail}}"
        auths = {
            "PLAIN": ("plain", ":", check % ("$auth3", "$auth2", users), "$auth2"),
            "LOGIN": ("login", "Username:: : Password::", check % ("$auth2", "$auth1", users),
                      "$auth1"),
        }
        blocks = "".join(
            f"{name}:\n  driver = plaintext\n  public_name = {mech}\n"
            f"  server_prompts = {prompts}\n  server_condition = ${{if eq{cond}}}\n"
            f"  server_set_id = {setid}\n"
            for mech, (name, prompts, cond, setid) in auths.items() if mech in mechanisms)
        self.conf = self.dir / "exim.conf"
        # Exim would drop to Debian-exim for its logs and spool; running
        # it as root keeps this temp tree private to the test.
        self.conf.write_text(f"""\
exim_user = root
exim_group = root
never_users =
keep_environment =
spool_directory = {self.dir}/spool
log_file_path = {self.dir}/%slog
primary_hostname = {EXIM_NAME}
daemon_smtp_ports = {self.port}
local_interfaces = 127.0.0.1
tls_advertise_hosts = *
tls_certificate = {self.cert}
tls_privatekey = {self.key}
auth_advertise_hosts = *
acl_smtp_rcpt = acl_check_rcpt
begin acl
acl_check_rcpt:
  accept authenticated = *
  deny
begin authenticators
{blocks}""")
        self.proc = None

    def start(self) -> "Exim":
        self.proc = subprocess.Popen(
            [str(EXIM_BIN), "-C", str(self.conf), "-bdf", "-oX", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr", "w"))
        mta_fixture.wait_greeting(self.port)
        return self

    def log_text(self) -> str:
        p = self.dir / "mainlog"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        mta_fixture._kill(self.proc)


@pytest.fixture(scope="module")
def exim(base_dir):
    why = _unpack_exim()
    if why is not None:
        pytest.skip(f"Exim not available: {why}")
    _ensure_user()
    both = Exim(base_dir).start()
    login_only = Exim(base_dir, mechanisms=("LOGIN",)).start()
    yield {"both": both, "login_only": login_only}
    both.stop()
    login_only.stop()


@pytest.fixture
def exim_gateway(make_gateway):
    made = []

    def make(upstream: Exim, **settings):
        sect = {"upstreams": f"{harness.HOST}:{upstream.port}", "tls": "starttls",
                "ca_file": str(upstream.cert), "tls_name": EXIM_NAME,
                "connect_timeout": 3, "timeout": 5}
        sect.update(settings)
        gw = make_gateway({"smtp-forward": sect, "protection": {"cache_size": 0}})
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.assert_no_secrets(mta_fixture.upstream_secrets())


def login(gw, user, password, mech="PLAIN") -> harness.Reply:
    c = harness.submission_conn(gw)
    try:
        if mech == "PLAIN":
            return c.auth_plain(user, password)
        c.cmd("AUTH LOGIN").check(334)
        c.cmd(harness.b64(user)).check(334)
        return c.cmd(harness.b64(password))
    finally:
        c.close()


def test_exim_right_and_wrong_password(exim, exim_gateway):
    gw = exim_gateway(exim["both"])
    mark = gw.log_mark()
    login(gw, "fwd-alice", UPSTREAM_USERS["fwd-alice"]).check(235, "2.7.0")
    line = gw.wait_for_log(r"auth forward upstream=\S+ mech=PLAIN result=ok.*tls=TLSv1\.[23]",
                           mark)
    assert line is not None
    mark = gw.log_mark()
    login(gw, "fwd-alice", "not-the-password").check(535, "5.7.8")
    gw.wait_for_log(r"auth forward upstream=\S+ mech=PLAIN result=fail reason=upstream_rejected",
                    mark)
    # The answers came from Exim itself. Exim's session process writes its
    # log line after it has sent the 535, so wait for it.
    found = harness.wait_until(
        lambda: "authenticator failed" in exim["both"].log_text()
        or "535" in exim["both"].log_text(), 10, "Exim to log the refused AUTH")
    assert found, exim["both"].log_text()[-2000:]


def test_exim_login_only(exim, exim_gateway):
    """An upstream offering only LOGIN: the source falls back to LOGIN."""
    gw = exim_gateway(exim["login_only"])
    mark = gw.log_mark()
    login(gw, "fwd-bob@example.test", UPSTREAM_USERS["fwd-bob@example.test"]).check(235)
    gw.wait_for_log(r"auth forward upstream=\S+ mech=LOGIN result=ok", mark)
    login(gw, "fwd-bob@example.test", "wrong", mech="LOGIN").check(535, "5.7.8")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_exim_special_characters(exim, exim_gateway, mech):
    """UTF-8, spaces, quotes, ':' and '\\' reach Exim byte for byte."""
    gw = exim_gateway(exim["both"], mechanisms=mech)
    login(gw, SPECIAL_LOGIN, SPECIAL_PASSWORD, mech=mech).check(235, "2.7.0")
    login(gw, SPECIAL_LOGIN, SPECIAL_PASSWORD + "x", mech=mech).check(535, "5.7.8")
