#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
queue_bench.py - throughput of the durable accept path and of the whole relay.

For 4 KiB messages over plain SMTP on loopback, at client concurrency 1, 16,
64 and 256, with [queue] group_commit = no and yes:
  accepted/s   messages that got "250 ... queued as" per second (every one
               fsynced and its directory fsynced before the 250)
Then, with group commit, the end-to-end rate: N messages injected at
concurrency 64, timed until the last one has left the queue, delivered to
Postfix's smtp-sink (or an aiosmtpd sink when smtp-sink is missing).

A figure, not a test: it prints a table and exits 0. Usage:
    bench/queue_bench.py [--seconds 5] [--levels 1,16,64,256] [--e2e 5000]
Needs build/authrelay (or $AUTHRELAY_BIN), run as root like the tests.
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import harness  # noqa: E402

BODY = ("X" * 76 + "\r\n") * 50          # 3.9 KiB of body ...
HEADER = ("From: <bench@other.test>\r\nTo: <sink@far.test>\r\nSubject: bench\r\n"
          "Message-ID: <{}@bench>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n")


def message(n: int) -> bytes:
    return (HEADER.format(n) + BODY).encode()   # ... 4 KiB with the header


async def read_reply(r: asyncio.StreamReader) -> int:
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def client(port: int, stop_at: float, counter: list, seq: list, limit: int | None):
    """One connection after another; pipelined MAIL/RCPT/DATA (RFC 2920)."""
    while time.monotonic() < stop_at and (limit is None or seq[0] < limit):
        try:
            r, w = await asyncio.open_connection(harness.HOST, port)
            await read_reply(r)
            w.write(b"EHLO bench.test\r\n")
            await w.drain()
            await read_reply(r)
            for _ in range(90):          # under max_messages_per_session
                if time.monotonic() >= stop_at or (limit is not None and seq[0] >= limit):
                    break
                seq[0] += 1
                w.write(b"MAIL FROM:<bench@other.test>\r\nRCPT TO:<sink@far.test>\r\nDATA\r\n")
                await w.drain()
                codes = [await read_reply(r) for _ in range(3)]
                if codes[2] != 354:
                    continue
                w.write(message(seq[0]) + b".\r\n")
                await w.drain()
                if await read_reply(r) == 250:
                    counter[0] += 1
            w.write(b"QUIT\r\n")
            w.close()
        except (ConnectionError, OSError):
            await asyncio.sleep(0.01)


async def load(port: int, conc: int, seconds: float | None, limit: int | None = None):
    counter, seq = [0], [0]
    stop_at = time.monotonic() + (seconds if seconds else 3600)
    t0 = time.monotonic()
    await asyncio.gather(*(client(port, stop_at, counter, seq, limit) for _ in range(conc)))
    return counter[0], time.monotonic() - t0


class SmtpSink:
    def __init__(self):
        self.port = harness.free_port()
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        self.proc = None
        if os.path.exists(exe):
            self.proc = subprocess.Popen([exe, "-u", "nobody", f"{harness.HOST}:{self.port}",
                                          "1024"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.kind = "smtp-sink"
        else:
            from sink_fixture import Sink
            self.sink = Sink(harness.HOST, self.port).start()
            self.kind = "aiosmtpd"
        harness.wait_until(lambda: self._up(), 10, "the sink")

    def _up(self):
        import socket
        try:
            socket.create_connection((harness.HOST, self.port), 1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(5)
        else:
            self.sink.stop()


def disk_sync_rate(directory: Path, seconds: float = 2.0) -> float:
    """What one message costs alone: write 4 KiB, fsync, rename, fsync the
    directory, in a loop on one thread. Messages per second."""
    d = directory / "syncrate"
    d.mkdir()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    data = message(0)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        p = d / f"t{n}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(p, d / f"m{n}")
        os.fsync(dfd)
        n += 1
    os.close(dfd)
    return n / (time.monotonic() - t0)


def gateway(base: Path, cert, key, group: bool, smarthost: str | None, hold: bool):
    queue = {"group_commit": "yes" if group else "no"}
    if smarthost:
        queue["smarthost"] = smarthost
    if hold:
        # Measure the accept path alone: nothing is delivered meanwhile (the
        # next hop is a closed port, retried only after an hour).
        queue.update({"smarthost": f"[{harness.HOST}]:{harness.free_port()}",
                      "retry_min": "1h", "retry_max": "1h"})
    cfg = {"server": {"log_level": "info", "workers": os.cpu_count() or 2},
           "limits": {"max_connections_per_ip": 1000, "max_connections": 2000,
                      "max_messages_per_session": 100},
           "queue": queue}
    gw = harness.Gateway(harness.authrelay_bin(), base, cert, key, {}, config=cfg,
                         name="bench-" + ("group" if group else "single"))
    gw.start()
    return gw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--levels", default="1,16,64,256")
    ap.add_argument("--e2e", type=int, default=5000)
    args = ap.parse_args()
    if harness.authrelay_bin() is None:
        sys.exit("build/authrelay is missing: run make")
    levels = [int(x) for x in args.levels.split(",")]
    base = Path(tempfile.mkdtemp(prefix="authrelay-bench-"))
    os.chmod(base, 0o755)
    cert, key = harness.make_cert(harness.make_dir(base, "tls-"))
    results = {}
    rate = disk_sync_rate(base)
    print(f"disk: {rate:.0f} single-message commits/s (write, fsync, rename, fsync dir)",
          flush=True)
    try:
        for group in (False, True):
            gw = gateway(base, cert, key, group, None, hold=True)
            try:
                for conc in levels:
                    n, dt = asyncio.run(load(gw.port("out"), conc, args.seconds))
                    results[(group, conc)] = n / dt
                    print(f"group_commit={'yes' if group else 'no ':3} concurrency={conc:4} "
                          f"accepted={n:6} in {dt:5.2f}s = {n / dt:8.0f} msg/s", flush=True)
            finally:
                gw.stop()
        sink = SmtpSink()
        gw = gateway(base, cert, key, True, f"[{harness.HOST}]:{sink.port}", hold=False)
        try:
            t0 = time.monotonic()
            n, dt = asyncio.run(load(gw.port("out"), 64, None, limit=args.e2e))
            harness.wait_until(lambda: not gw.incoming(), 600, "the queue to drain", 0.02)
            e2e = time.monotonic() - t0
        finally:
            gw.stop()
            sink.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"disk alone: {rate:.0f} single-message commits/s on one thread")
    print("4 KiB messages, fsync before every 250 (accepted msg/s):")
    print(f"{'concurrency':>12} {'single':>10} {'group':>10} {'speed-up':>9}")
    for conc in levels:
        a, b = results[(False, conc)], results[(True, conc)]
        print(f"{conc:>12} {a:>10.0f} {b:>10.0f} {b / a:>8.1f}x")
    print(f"\nend to end ({sink.kind}, group commit, concurrency 64): {n} messages accepted "
          f"in {dt:.2f}s, all delivered after {e2e:.2f}s = {n / e2e:.0f} msg/s")


if __name__ == "__main__":
    main()
