#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
ldap_auth_bench.py - a figure (not a test) for the LDAP auth source: SMTP AUTH
throughput and latency through authrelay with method = bind and method = fetch,
at concurrency 1, 16 and 64, against one slapd holding 10,000 users, next to
that slapd's raw search+bind rate measured in the same run, and the CPU time
per login spent by authrelay's processes and by slapd.

    /usr/bin/python3 bench/ldap_auth_bench.py            (about 1.5 minutes)
    LDAP_BENCH_SECONDS=10 /usr/bin/python3 bench/ldap_auth_bench.py

Everything runs on loopback in a temporary directory: slapd (its own config,
10,000 inetOrgPerson entries uid=user00000..user09999 with {SSHA} passwords,
loaded with slapadd), authrelay (one plaintext submission listener, the
[protection] cache and throttle off so that every login reaches the
directory, no users file) and the load generators of bench/Makefile:
  build/bench/smtp_load  sessions of EHLO, AUTH PLAIN (random user), QUIT
  build/bench/ldap_load  the same users' search + bind straight to slapd
CPU time: utime+stime from /proc before and after each run, divided by the
logins in that run, for slapd and for authrelay, split into the auth process
(the LDAP source: the work a login asks of us next to what it asks of slapd)
and the SMTP workers (accept, EHLO, AUTH, QUIT, the same for every source).
Each point is run LDAP_BENCH_RUNS times (3) and the medians are reported.

Results: a table on stdout and build/bench/ldap_auth_bench.json. Every
process started here is stopped by pid at the end.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration"))
import harness  # noqa: E402
import ldap_fixture as lf  # noqa: E402

USERS = int(os.environ.get("LDAP_BENCH_USERS", "10000"))
SECONDS = float(os.environ.get("LDAP_BENCH_SECONDS", "6"))
RUNS = int(os.environ.get("LDAP_BENCH_RUNS", "3"))
CONCURRENCY = [int(c) for c in os.environ.get("LDAP_BENCH_CONCURRENCY", "1 16 64").split()]
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


def tree(pid):
    return [pid] + harness.proc_children(pid)


def bench_users():
    people = []
    for i in range(USERS):
        uid = f"user{i:05d}"
        people.append(lf.Person(uid, uid, f"pw-{i:05d}", "ssha", mail=[f"{uid}@bench.test"]))
    return people


def run_json(cmd, timeout, check=True):
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr.decode(errors='replace')}")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def smtp_load(port, c, seconds, sessions=0, check=True):
    return run_json([str(OUT / "smtp_load"), "-a", f"127.0.0.1:{port}", "-c", str(c),
                     "-n", str(sessions), "-t", str(seconds), "-T", "none", "-M", "PLAIN",
                     "-m", "0", "-u", "user%05lu", "-p", "pw-%05lu", "-r", f"0-{USERS - 1}"],
                    seconds + 60, check)


def ldap_load(slapd, c, seconds):
    return run_json([str(OUT / "ldap_load"), "-H", slapd.uri, "-b", f"ou=people,{slapd.suffix}",
                     "-c", str(c), "-t", str(seconds), "-f", "(uid=user%05lu)",
                     "-p", "pw-%05lu", "-r", f"0-{USERS - 1}"], seconds + 60)


def sink_floor(c, seconds):
    """The same sessions against Postfix's smtp-sink, a single-process C SMTP
    server that checks, logs and asks nothing (it answers AUTH with 250, so
    smtp_load counts each session as failed at AUTH; the work is the same):
    its CPU per session is the floor of the SMTP session around a login."""
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = harness.free_port()
    p = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def greets():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as so:
                    return so.recv(64).startswith(b"220")
            except OSError:
                return False
        harness.wait_until(greets, 10, "smtp-sink")
        before = cpu_seconds([p.pid])
        r = smtp_load(port, c, seconds, check=False)
        r["sink_cpu_s"] = cpu_seconds([p.pid]) - before
    finally:
        p.terminate()
        p.wait(timeout=10)
    return r


def gateway(base, slapd, pwfile, method, cert, key):
    cfg = {
        "server": {"workers": 2, "log_level": "info"},
        "auth": {"threads": 2, "request_timeout": 30},
        "users-file": None,
        "listener in": None, "listener out": None, "listener subs": None,
        "listener sub": {"role": "submission", "tls": "none", "allow_plaintext_auth": "yes",
                         "max_connections_per_ip": 1000, "max_connections": 5000},
        "limits": {"auth_failure_delay_ms": 0, "max_connections_per_ip": 1000},
        "protection": {"cache_size": 0, "delay_ms": 0, "lockout_client_failures": 0,
                       "lockout_login_failures": 0, "lockout_client_login_failures": 0},
        "ldap bench": lf.ldap_section(slapd, pwfile, method=method, filter="(uid=%s)",
                                      pool_size=16, timeout=10, network_timeout=5),
    }
    return harness.Gateway(str(TOP / "build" / "authrelay"), base, cert, key, {}, config=cfg,
                           name=f"gw-{method}").start()


def fmt_row(cols, widths):
    return "| " + " | ".join(str(c).rjust(w) for c, w in zip(cols, widths)) + " |"


def main():
    missing = lf.available()
    if missing:
        sys.exit(f"ldap_auth_bench: {missing}")
    if not (TOP / "build" / "authrelay").exists():
        subprocess.run(["make", "-C", str(TOP), "all"], check=True)
    if not (OUT / "smtp_load").exists() or not (OUT / "ldap_load").exists():
        subprocess.run(["make", "-C", str(TOP), "-f", "bench/Makefile"], check=True)

    base = Path(tempfile.mkdtemp(prefix="authrelay-ldapbench-"))
    os.chmod(base, 0o755)
    cert, key = harness.make_cert(harness.make_dir(base, "tls-"))
    slapd = lf.Slapd(base, "bench", "dc=bench,dc=test")
    gw = None
    results = {"users": USERS, "seconds_per_run": SECONDS, "cpus": os.cpu_count(),
               "raw_slapd": [], "authrelay": []}
    try:
        t0 = time.monotonic()
        slapd.load(bench_users()).start()
        print(f"slapd: {USERS} users loaded in {time.monotonic() - t0:.1f}s ({slapd.uri})",
              flush=True)
        pwfile = lf.write_password_file(base)

        for c in CONCURRENCY:
            for run in range(RUNS):
                before = cpu_seconds([slapd.pid])
                r = ldap_load(slapd, c, SECONDS)
                r["slapd_cpu_s"] = cpu_seconds([slapd.pid]) - before
                r["concurrency"] = c
                r["run"] = run
                results["raw_slapd"].append(r)
                print(f"raw slapd c={c}: {json.dumps(r)}", flush=True)

        results["sink_floor"] = []
        for c in CONCURRENCY:
            for run in range(RUNS):
                r = sink_floor(c, SECONDS)
                r["concurrency"] = c
                r["run"] = run
                results["sink_floor"].append(r)
                print(f"smtp-sink floor c={c}: sessions/s={r['sessions_started'] / SECONDS:.0f} "
                      f"cpu={1e6 * r['sink_cpu_s'] / max(r['sessions_started'], 1):.0f} us",
                      flush=True)

        for method in ("bind", "fetch"):
            gw = gateway(base, slapd, pwfile, method, cert, key)
            port = gw.port("sub")
            smtp_load(port, 16, 3)                               # warm the pools
            auth = gw.auth_pid()
            for c in CONCURRENCY:
                for run in range(RUNS):
                    pids = tree(gw.pid)
                    workers = [p for p in pids if p not in (gw.pid, auth)]
                    b_auth, b_wk = cpu_seconds([auth]), cpu_seconds(workers)
                    b_gw, b_sl = cpu_seconds(pids), cpu_seconds([slapd.pid])
                    r = smtp_load(port, c, SECONDS)
                    r["authrelay_cpu_s"] = cpu_seconds(pids) - b_gw
                    r["auth_cpu_s"] = cpu_seconds([auth]) - b_auth
                    r["workers_cpu_s"] = cpu_seconds(workers) - b_wk
                    r["slapd_cpu_s"] = cpu_seconds([slapd.pid]) - b_sl
                    r["method"] = method
                    r["run"] = run
                    results["authrelay"].append(r)
                    print(f"authrelay {method} c={c}: sessions/s={r['sessions_per_s']} "
                          f"auth p50={r['auth_ms'].get('p50')} "
                          f"p99={r['auth_ms'].get('p99')} "
                          f"failed={r['sessions_failed']}", flush=True)
            gw.stop()
            gw = None
    finally:
        if gw is not None:
            gw.stop()
        slapd.stop()
        lf.stop_all()

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ldap_auth_bench.json").write_text(json.dumps(results, indent=1))

    print()
    print(f"LDAP AUTH benchmark: {USERS} users, {SECONDS:g} s per run, "
          f"{os.cpu_count()} CPUs, loopback, no TLS, cache and throttle off")
    def med(rows, f):
        return statistics.median(f(r) for r in rows)

    def per_login(key):
        return lambda r: 1e6 * r[key] / max(r["sessions_ok"] + r["sessions_auth_rejected"], 1)

    w = [7, 4, 10, 8, 8, 7, 12, 12, 12, 12]
    print(fmt_row(["method", "c", "logins/s", "p50 ms", "p99 ms", "failed", "auth proc",
                   "workers", "all of us", "slapd"], w))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for method in ("bind", "fetch"):
        for c in CONCURRENCY:
            rows = [r for r in results["authrelay"]
                    if r["method"] == method and r["concurrency"] == c]
            print(fmt_row([method, c, f"{med(rows, lambda r: r['sessions_per_s']):.0f}",
                           f"{med(rows, lambda r: r['auth_ms'].get('p50') or 0):.2f}",
                           f"{med(rows, lambda r: r['auth_ms'].get('p99') or 0):.2f}",
                           sum(r["sessions_failed"] for r in rows),
                           f"{med(rows, per_login('auth_cpu_s')):.0f} us",
                           f"{med(rows, per_login('workers_cpu_s')):.0f} us",
                           f"{med(rows, per_login('authrelay_cpu_s')):.0f} us",
                           f"{med(rows, per_login('slapd_cpu_s')):.0f} us"], w))
    for c in CONCURRENCY:
        rows = [r for r in results["raw_slapd"] if r["concurrency"] == c]
        print(fmt_row(["raw", c, f"{med(rows, lambda r: r['pairs_per_s']):.0f}", "-", "-",
                       sum(r["errors"] + r["bind_fail"] for r in rows), "-", "-", "-",
                       f"{med(rows, lambda r: 1e6 * r['slapd_cpu_s'] / max(r['pairs'], 1)):.0f}"
                       " us"], w))
    for c in CONCURRENCY:
        rows = [r for r in results.get("sink_floor", []) if r["concurrency"] == c]
        if rows:
            print(fmt_row(["sink", c, f"{med(rows, lambda r: r['sessions_started']) / SECONDS:.0f}",
                           "-", "-", "-", "-",
                           f"{med(rows, lambda r: 1e6 * r['sink_cpu_s'] / max(r['sessions_started'], 1)):.0f} us",
                           "-", "-"], w))
    print("(sink: the same sessions against Postfix's smtp-sink, which checks, logs and asks "
          "nothing: the CPU of the SMTP session alone, the floor under any gateway's "
          "'workers' column)")
    print(f"(medians of {RUNS} runs; CPU per login: the auth process, the SMTP workers, "
          "every authrelay process, and slapd; raw: slapd's own search+bind pairs per "
          "second, build/bench/ldap_load with c threads, each with a search and a bind "
          "connection, CPU per pair; logins/s: whole SMTP sessions, EHLO + AUTH PLAIN + "
          "QUIT)")
    print(f"\n(json: {OUT / 'ldap_auth_bench.json'})")


if __name__ == "__main__":
    main()
