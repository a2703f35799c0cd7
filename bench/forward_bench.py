#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
forward_bench.py - a figure (not a test) for the smtp-forward auth source:
SMTP AUTH throughput and latency through authrelay forwarding to a real
Postfix (with Dovecot SASL) at concurrency 1, 16 and 64, next to the rate at
which that same Postfix answers the same sessions directly, measured in the
same run.

    /usr/bin/python3 bench/forward_bench.py            (about 2 minutes)
    FWD_BENCH_SECONDS=10 /usr/bin/python3 bench/forward_bench.py

Everything runs on loopback in a temporary directory, started by
tests/integration/mta_fixture.py: Dovecot (passwd-file with FWD_BENCH_USERS
users user00000.., no auth penalty), Postfix (one smtpd service, STARTTLS
offered), and authrelay (one plaintext submission listener with plaintext
AUTH allowed, the [protection] cache and throttle off so that every login
reaches the upstream, no users file). Load: build/bench/smtp_load (bench/
Makefile), sessions of EHLO, AUTH PLAIN (random user), QUIT:
  direct     smtp_load -> Postfix, plaintext
  direct-tls smtp_load -> Postfix with STARTTLS (what a forwarding session
             with tls = starttls costs the upstream)
  fwd-none   smtp_load -> authrelay -> Postfix, tls = none
  fwd-tls    smtp_load -> authrelay -> Postfix, tls = starttls (verified)
  fwd-tls-pc the same with preconnect = 16 (sessions greeted and EHLO'd
             ahead of the logins)
authrelay runs with max_sessions = 64. CPU time: utime+stime from /proc of
the authrelay process tree, per login.

Results: a table on stdout and build/bench/forward_bench.json. Every process
started here is stopped by pid at the end.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration"))
import harness  # noqa: E402
import mta_fixture as mf  # noqa: E402

USERS = int(os.environ.get("FWD_BENCH_USERS", "1000"))
SECONDS = float(os.environ.get("FWD_BENCH_SECONDS", "5"))
CONCURRENCY = [int(c) for c in os.environ.get("FWD_BENCH_CONCURRENCY", "1 16 64").split()]
OUT = TOP / "build" / "bench"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])   # utime, stime
        except OSError:
            pass
    return total / TICK


def smtp_load(port, c, seconds, tls="none"):
    cmd = [str(OUT / "smtp_load"), "-a", f"127.0.0.1:{port}", "-c", str(c), "-n", "0",
           "-t", str(seconds), "-T", tls, "-M", "PLAIN", "-m", "0", "-u", "user%05lu",
           "-p", "pw-%05lu", "-r", f"0-{USERS - 1}", "--timeout", "30"]
    r = subprocess.run(cmd, capture_output=True, timeout=seconds + 90)
    if r.returncode != 0:
        raise RuntimeError(f"smtp_load failed: {r.stderr.decode(errors='replace')}")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def gateway(base, up_port, cert, key, ca, **fwd):
    sect = {"upstreams": f"127.0.0.1:{up_port}", "tls": "none", "max_sessions": 64,
            "queue_size": 4096, "timeout": 30, "connect_timeout": 10}
    sect.update(fwd)
    cfg = {
        "server": {"workers": 2, "log_level": "info"},
        "auth": {"threads": 2, "request_timeout": 60},
        "users-file": None,
        "listener in": None, "listener out": None, "listener subs": None,
        "listener sub": {"role": "submission", "tls": "none", "allow_plaintext_auth": "yes",
                         "max_connections_per_ip": 1000, "max_connections": 5000},
        "limits": {"auth_failure_delay_ms": 0, "max_connections_per_ip": 1000},
        "protection": {"cache_size": 0, "delay_ms": 0, "lockout_client_failures": 0,
                       "lockout_login_failures": 0, "lockout_client_login_failures": 0},
        "smtp-forward": sect,
    }
    return harness.Gateway(str(TOP / "build" / "authrelay"), base, cert, key, {}, config=cfg,
                           name="gw-fwd").start()


def fmt_row(cols, widths):
    return "| " + " | ".join(str(c).rjust(w) for c, w in zip(cols, widths)) + " |"


def main():
    missing = mf.available()
    if missing:
        sys.exit(f"forward_bench: {missing}")
    if not (TOP / "build" / "authrelay").exists():
        subprocess.run(["make", "-C", str(TOP), "all"], check=True)
    if not (OUT / "smtp_load").exists():
        subprocess.run(["make", "-C", str(TOP), "-f", "bench/Makefile"], check=True)

    base = Path(tempfile.mkdtemp(prefix="authrelay-fwdbench-"))
    os.chmod(base, 0o755)
    cert, key = harness.make_cert(harness.make_dir(base, "tls-"))
    ucert, ukey = mf.make_upstream_cert(harness.make_dir(base, "upstream-tls-"))
    users = {f"user{i:05d}": f"pw-{i:05d}" for i in range(USERS)}
    port = harness.free_port()
    dove = mf.DovecotAuth(base, "bench", "plain login", extra_users=users)
    postfix = mf.Postfix(base, dove.auth_socket, ucert, ukey, {"plain": port})
    results = {"users": USERS, "seconds_per_run": SECONDS, "cpus": os.cpu_count(),
               "runs": []}
    configs = [
        ("fwd-none", {}),
        ("fwd-tls", {"tls": "starttls", "ca_file": str(ucert), "tls_name": mf.UPSTREAM_NAME}),
        ("fwd-tls-pc", {"tls": "starttls", "ca_file": str(ucert),
                        "tls_name": mf.UPSTREAM_NAME, "preconnect": 16}),
    ]
    gw = None
    try:
        dove.start()
        postfix.start()
        smtp_load(port, 16, 2)                                 # spawn smtpd processes
        for name, tls in (("direct", "none"), ("direct-tls", "starttls")):
            for c in CONCURRENCY:
                r = smtp_load(port, c, SECONDS, tls)
                r.update(config=name, concurrency=c)
                results["runs"].append(r)
                print(f"{name} c={c}: sessions/s={r['sessions_per_s']} auth "
                      f"p50={r['auth_ms'].get('p50')} p99={r['auth_ms'].get('p99')} "
                      f"failed={r['sessions_failed']}", flush=True)
        for name, fwd in configs:
            gw = gateway(base, port, cert, key, ucert, **fwd)
            gport = gw.port("sub")
            smtp_load(gport, 16, 2)                            # warm up
            for c in CONCURRENCY:
                pids = [gw.pid] + harness.proc_children(gw.pid)
                before = cpu_seconds(pids)
                r = smtp_load(gport, c, SECONDS)
                r["authrelay_cpu_s"] = cpu_seconds(pids) - before
                r.update(config=name, concurrency=c)
                results["runs"].append(r)
                print(f"{name} c={c}: sessions/s={r['sessions_per_s']} auth "
                      f"p50={r['auth_ms'].get('p50')} p99={r['auth_ms'].get('p99')} "
                      f"failed={r['sessions_failed']}", flush=True)
            gw.stop()
            gw = None
    finally:
        if gw is not None:
            gw.stop()
        postfix.stop()
        dove.stop()

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "forward_bench.json").write_text(json.dumps(results, indent=1))

    print()
    print(f"smtp-forward AUTH benchmark: Postfix 3.7 + Dovecot SASL upstream, {USERS} users, "
          f"{SECONDS:g} s per run, {os.cpu_count()} CPUs, loopback")
    w = [10, 3, 9, 7, 7, 7, 14]
    print(fmt_row(["config", "c", "logins/s", "p50 ms", "p99 ms", "failed", "authrelay CPU"], w))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in results["runs"]:
        n = max(r["sessions_ok"] + r.get("sessions_auth_rejected", 0), 1)
        cpu = (f"{1e6 * r['authrelay_cpu_s'] / n:.0f} us/login" if "authrelay_cpu_s" in r
               else "-")
        print(fmt_row([r["config"], r["concurrency"], f"{r['sessions_per_s']:.0f}",
                       r["auth_ms"].get("p50"), r["auth_ms"].get("p99"), r["sessions_failed"],
                       cpu], w))
    print("(logins/s: whole client sessions, EHLO + AUTH PLAIN + QUIT; p50/p99: the AUTH "
          "reply's latency; direct: the same sessions straight to Postfix)")
    print(f"\n(json: {OUT / 'forward_bench.json'})")


if __name__ == "__main__":
    main()
