# SPDX-License-Identifier: ISC
"""
haproxy_fixture.py - a real HAProxy (Debian haproxy) in front of gateways, as
the README's "Running several gateways" sample runs it: TCP mode, round
robin, `send-proxy-v2` to every node and `option smtpchk` health checks
(which HAProxy sends with a PROXY v2 LOCAL header).

    lb = HAProxy(directory, [(host, port), ...]).start()
    lb.port                      the frontend clients connect to
    lb.wait_servers_up()         every node passed its health check
    lb.server_states()           {"n1": "UP", ...} from the stats socket
    lb.stop()

Runs in the foreground (-db) as a child of the test, stopped by pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from harness import HOST, free_port, wait_until


class HAProxy:
    def __init__(self, directory: Path, servers: list[tuple[str, int]],
                 send_proxy: str = "send-proxy-v2", check_inter_ms: int = 300):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.servers = servers
        self.cfg = self.dir / "haproxy.cfg"
        self.sock = self.dir / "haproxy.sock"
        self.log = self.dir / "haproxy.log"
        self.proc: subprocess.Popen | None = None
        lines = [
            "global",
            f"    stats socket {self.sock} mode 600 level admin",
            "    maxconn 2000",
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            "    timeout client 60s",
            "    timeout server 60s",
            "frontend smtp",
            f"    bind {HOST}:{self.port}",
            "    default_backend nodes",
            "backend nodes",
            "    balance roundrobin",
            "    option smtpchk HELO haproxy.test.example",
        ]
        for i, (h, p) in enumerate(servers, 1):
            lines.append(f"    server n{i} {h}:{p} {send_proxy} check inter {check_inter_ms}ms"
                         " fall 2 rise 1")
        self.cfg.write_text("\n".join(lines) + "\n")

    def start(self) -> "HAProxy":
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT)
        wait_until(lambda: self._check_running() and self.sock.exists(), 20,
                   "haproxy's stats socket")
        return self

    def _check_running(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited with {self.proc.returncode}: "
                                 + self.log.read_text(errors="replace"))
        return True

    def command(self, cmd: str) -> str:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(str(self.sock))
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                out += data
        finally:
            s.close()
        return out.decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """Each server's status (UP, DOWN, ...) from `show stat`."""
        out = self.command("show stat")
        header, *rows = [r for r in out.splitlines() if r.strip()]
        cols = header.lstrip("# ").split(",")
        states = {}
        for row in rows:
            f = dict(zip(cols, row.split(",")))
            if f.get("pxname") == "nodes" and f.get("svname", "").startswith("n"):
                states[f["svname"]] = f.get("status", "")
        return states

    def wait_servers_up(self, timeout: float = 20.0):
        want = {f"n{i}" for i in range(1, len(self.servers) + 1)}
        # "UP 1/2" is HAProxy's start-up assumption; plain "UP" means a
        # check has passed since.
        wait_until(lambda: self._check_running() and all(
            self.server_states().get(n, "") == "UP" for n in want), timeout,
            f"haproxy to see {sorted(want)} up (health checks)")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._logf.close()
        self.proc = None
