#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
tls_point.py - the STARTTLS point of `make bench` alone, for comparing two
builds: before/after figures of the TLS handshake's cost per session.

    python3 bench/tls_point.py BINARY LABEL [--conc N] [--seconds S]
                               [--no-resume] [--rsa] [--messages N]

Starts BINARY (an authrelay) as root on a loopback STARTTLS submission
listener (2 workers, a users file of 200 {SSHA} users, no LDAP: only the TLS
and SMTP path differ between builds), warms it up, runs build/bench/smtp_load
(STARTTLS, AUTH PLAIN, --messages messages of 4 KiB, default 0) at --conc
sessions for --seconds, and prints one JSON line: sessions per second and the
CPU of authrelay's whole process tree (master and every child) per session,
in microseconds, from /proc. --no-resume: every handshake is a full one (the
bench's clients resume, as real ones do); --rsa: an RSA-2048 certificate
instead of ECDSA P-256.

Run two builds in turn, several times (A B A B ...), and compare the medians:
the machine's speed drifts. bench/RESULTS.md has the figures of the key process.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import harness  # noqa: E402  (free_port, wait_until)

LOAD = REPO / "build" / "bench" / "smtp_load"
N_USERS = 200


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest()
                                       + salt).decode()


def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(st[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def ticks(pids: list[int]) -> int:
    t = 0
    for p in pids:
        try:
            st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        t += sum(int(x) for x in st[11:15])
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("label")
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--rsa", action="store_true")
    ap.add_argument("--messages", type=int, default=0)
    a = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="authrelay-tls-point-"))
    os.chmod(base, 0o755)
    proc = None
    try:
        users = base / "users"
        users.write_text("".join(f"user{i:05d}:{ssha(f'pw-{i:05d}')}\n" for i in range(N_USERS)))
        os.chmod(users, 0o644)
        cert, key = base / "cert.pem", base / "key.pem"
        newkey = ["rsa:2048"] if a.rsa else ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        subprocess.run(["openssl", "req", "-x509", "-newkey", *newkey, "-nodes", "-subj",
                        "/CN=bench.test", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        os.chmod(cert, 0o644)
        os.chmod(key, 0o600)
        port = harness.free_port()
        (base / "authrelay.conf").write_text(f"""\
[server]
hostname = bench.test
user = nobody
spool_dir = {base}/spool
log_level = info
workers = 2
[tls]
cert_file = {cert}
key_file = {key}
[users-file]
path = {users}
[protection]
cache_size = 0
messages_per_hour = 0
recipients_per_hour = 0
[limits]
max_connections = 30000
max_connections_per_ip = 30000
auth_failure_delay_ms = 0
[listener starttls]
address = 127.0.0.1:{port}
role = submission
tls = required
""")
        log = open(base / "authrelay.log", "w")
        proc = subprocess.Popen([a.binary, "-f", "-c", str(base / "authrelay.conf")],
                                stdout=log, stderr=log)

        def greets():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    return s.recv(10).startswith(b"220")
            except OSError:
                return False
        harness.wait_until(greets, 30, "the greeting")
        cmd = [str(LOAD), "-a", f"127.0.0.1:{port}", "-c", str(a.conc), "-t", "1",
               "-n", "1000000", "-T", "starttls", "-M", "PLAIN", "-m", str(a.messages),
               "-s", "4096", "-R", "1", "-r", f"0-{N_USERS - 1}", "-D", "example.test"]
        if a.no_resume:
            cmd.append("--no-resume")
        subprocess.run(cmd, capture_output=True, timeout=120)   # warm-up
        time.sleep(0.5)
        t0 = ticks(tree(proc.pid))
        cmd[cmd.index("-t") + 1] = str(a.seconds)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.seconds + 120)
        t1 = ticks(tree(proc.pid))
        res = json.loads(r.stdout.strip().splitlines()[-1])
        n = res.get("sessions_ok", 0)
        hz = os.sysconf("SC_CLK_TCK")
        print(json.dumps({
            "label": a.label, "conc": a.conc, "resume": not a.no_resume,
            "key": "rsa2048" if a.rsa else "p256", "sessions_ok": n,
            "sessions_per_s": round(res.get("sessions_per_s", 0)),
            "failed": res.get("sessions_failed"),
            "cpu_us_per_session": round((t1 - t0) / hz * 1e6 / n, 1) if n else None}))
        return 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
