# SPDX-License-Identifier: ISC
"""
redis_fixture.py - a real redis-server (Debian redis-server) on a free
loopback port, for the gateways' [shared] section: no persistence, run in
the foreground as a child of the test, stopped (or killed, to test an
outage) by pid, and started again on the same port.

    r = Redis(directory).start()
    r.address                  "127.0.0.1:PORT" for [shared] redis
    r.cli("HGETALL", key)      redis-cli's answer as text lines
    r.send_counts(prefix)      (messages, recipients) summed over every user
    r.kill(); r.start()        an outage and the way back
    r.pause(); r.resume()      a Redis that answers nothing, then again
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

from harness import HOST, free_port, wait_until


class Redis:
    def __init__(self, directory: Path, password: str | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> "Redis":
        args = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT)
        wait_until(lambda: self._alive() and self.cli("PING") == ["PONG"], 20,
                   "redis-server to answer PING")
        return self

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log.read_text(errors='replace')}")
        return True

    def cli(self, *args: str) -> list[str]:
        cmd = ["redis-cli", "-h", HOST, "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10)
        return r.stdout.splitlines()

    def send_counts(self, prefix: str, user: str | None = None) -> tuple[int, int]:
        """Messages and recipients of the current hour: of user (its key is
        the first 16 bytes of SHA-256 of the lower-cased login), or of every
        user together."""
        now_slot = int(time.time()) // 300
        msgs = rcpts = 0
        pattern = f"{prefix}send:" + (
            hashlib.sha256(user.lower().encode()).hexdigest()[:32] if user else "*")
        for key in self.cli("--scan", "--pattern", pattern):
            flat = self.cli("HGETALL", key)
            fields = dict(zip(flat[0::2], flat[1::2]))
            for i in range(12):
                slot = int(fields.get(f"s{i}", "-1"))
                if slot >= 0 and slot + 12 > now_slot:
                    msgs += int(fields.get(f"m{i}", "0"))
                    rcpts += int(fields.get(f"r{i}", "0"))
        return msgs, rcpts

    def pause(self):
        """SIGSTOP: Redis still accepts connections (the kernel does) but
        answers nothing, as a hung or overloaded server."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        """SIGKILL: an outage as abrupt as a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._logf.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self._logf.close()
