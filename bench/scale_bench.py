#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
scale_bench.py - several gateways (README "Running several gateways"): the
cost of the PROXY hop and of the sending counts shared in Redis.

On loopback it starts a redis-server, two authrelay nodes (their own spools,
a plaintext submission listener each: a direct one, and one with
proxy_protocol for HAProxy), and HAProxy (send-proxy-v2, option smtpchk),
then runs build/bench/smtp_load (AUTH PLAIN and one message per session,
messages_per_hour set high enough never to refuse, so every MAIL asks for
the shared counts when Redis sharing is on) against:

    one node direct | one node through HAProxy | two nodes through HAProxy
    each with [shared] redis off and on

and prints sessions/s, CPU milliseconds per session (every authrelay
process, HAProxy and Redis, from /proc), and the session latency p50/p99.
The difference of the session latency with Redis on and off is what the
shared count at MAIL adds (one round trip worker -> auth process -> Redis).

It reuses the integration tests' harness (tests/integration: Gateway,
HAProxy, Redis) to start everything, and stops every process by pid.

Environment: BENCH_SECONDS (default 5 per point), BENCH_CONCURRENCY (16).
The machine may be shared: figures from a busy machine want a quiet re-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from haproxy_fixture import HAProxy  # noqa: E402
from redis_fixture import Redis  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONC = int(os.environ.get("BENCH_CONCURRENCY", "16"))
USERS = 100
LOAD = REPO / "build" / "bench" / "smtp_load"


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return total


def run_point(addr: str, pids: list[int]) -> dict:
    before = cpu_ticks(pids)
    r = subprocess.run([str(LOAD), "-a", addr, "-c", str(CONC), "-n", "0", "-t", str(SECONDS),
                        "-M", "PLAIN", "-u", "user%05lu", "-p", "pw-%05lu",
                        "-r", f"0-{USERS - 1}", "-m", "1", "-s", "1024",
                        "-D", harness.LOCAL_DOMAIN, "--sources", "0"],
                       capture_output=True, text=True, timeout=SECONDS * 4 + 60)
    after = cpu_ticks(pids)
    line = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError(f"smtp_load: {r.stdout}\n{r.stderr}")
    res = json.loads(line[-1])
    sessions = max(res["sessions_ok"], 1)
    hz = os.sysconf("SC_CLK_TCK")
    return {"sessions_per_s": res["sessions_per_s"],
            "cpu_ms_per_session": (after - before) * 1000.0 / hz / sessions,
            "p50_ms": res["session_ms"].get("p50"), "p99_ms": res["session_ms"].get("p99"),
            "failed": res["sessions_failed"]}


def main():
    binary = harness.authrelay_bin()
    if binary is None or not LOAD.exists():
        sys.exit("build authrelay (make) and the load generator (make -C bench) first")
    base = Path(tempfile.mkdtemp(prefix="authrelay-scale-bench-"))
    os.chmod(base, 0o755)
    cert, key = harness.make_cert(harness.make_dir(base, "tls-"))
    users = {f"user{i:05d}": harness.hash_password(f"pw-{i:05d}", "ssha") for i in range(USERS)}
    redis = Redis(harness.make_dir(base, "redis-")).start()
    rows = []
    try:
        for shared in (False, True):
            nodes = []
            for i in range(2):
                cfg = {
                    "server": {"log_level": "info"},
                    "listener direct": {"role": "submission", "tls": "none",
                                        "allow_plaintext_auth": True,
                                        "max_connections_per_ip": 10000},
                    "listener lb": {"role": "submission", "tls": "none",
                                    "allow_plaintext_auth": True, "proxy_protocol": True,
                                    "proxy_trusted_networks": "127.0.0.1/32",
                                    "max_connections_per_ip": 10000},
                    "protection": {"messages_per_hour": 1000000,
                                   "recipients_per_hour": 1000000},
                }
                if shared:
                    cfg["shared"] = {"redis": redis.address, "key_prefix": "bench:"}
                gw = harness.Gateway(binary, base, cert, key, users, config=cfg,
                                     name=f"node{i}-{'on' if shared else 'off'}")
                nodes.append(gw.start())
            lb1 = HAProxy(harness.make_dir(base, "lb1-"), [(nodes[0].host("lb"),
                                                             nodes[0].port("lb"))]).start()
            lb2 = HAProxy(harness.make_dir(base, "lb2-"),
                          [(n.host("lb"), n.port("lb")) for n in nodes]).start()
            try:
                lb1.wait_servers_up()
                lb2.wait_servers_up()
                pids = [redis.proc.pid, lb1.proc.pid, lb2.proc.pid]
                for n in nodes:
                    pids += [n.pid] + n.children()
                points = [("one node direct", f"{harness.HOST}:{nodes[0].port('direct')}"),
                          ("one node via HAProxy", f"{harness.HOST}:{lb1.port}"),
                          ("two nodes via HAProxy", f"{harness.HOST}:{lb2.port}")]
                for name, addr in points:
                    r = run_point(addr, pids)
                    r.update(point=name, redis="on" if shared else "off")
                    rows.append(r)
                    print(json.dumps(r), flush=True)
            finally:
                lb1.stop()
                lb2.stop()
                for n in nodes:
                    n.stop()
    finally:
        redis.stop()
    print()
    print("| point | Redis | sessions/s | CPU ms/session | session p50 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['point']} | {r['redis']} | {r['sessions_per_s']:.0f} | "
              f"{r['cpu_ms_per_session']:.2f} | {r['p50_ms']} | {r['p99_ms']} | {r['failed']} |")
    if not os.environ.get("BENCH_KEEP"):
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()
