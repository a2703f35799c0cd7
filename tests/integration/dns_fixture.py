# SPDX-License-Identifier: ISC
"""
dns_fixture.py - a real DNS server (dnsmasq) on a free loopback port with a
test zone of our own, for the queue's MX tests.

    dns = DNSServer(directory)
    dns.mx("mx-order.test", "mx1.mx-order.test", 10)
    dns.a("mx1.mx-order.test", "127.0.0.2")
    dns.null_mx("nullmx.test")          # RFC 7505: MX 0 "."
    dns.start()                         # waits until it answers
    ... [queue] resolver = dns.address  ("127.0.0.1:PORT")
    dns.stop()

Every name under .test that is not defined gets NXDOMAIN (--local=/test/):
the server never forwards anything anywhere.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

from harness import HOST, free_port, wait_until


def dnsmasq_path() -> str | None:
    return shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None)


def query(port: int, name: str, qtype: int, timeout: float = 1.0) -> tuple[int, int]:
    """Ask 127.0.0.1:port; return (rcode, number of answers)."""
    hdr = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(hdr + qname + struct.pack(">HH", qtype, 1), (HOST, port))
        data = s.recv(4096)
    flags, _, an = struct.unpack(">HHH", data[2:8])
    return flags & 15, an


class DNSServer:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.port = free_port()
        self.args: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "dnsmasq.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def mx(self, domain: str, host: str, preference: int):
        self.args.append(f"--mx-host={domain},{host},{preference}")

    def a(self, name: str, address: str):
        self.args.append(f"--host-record={name},{address}")

    def null_mx(self, domain: str):
        # RFC 7505: preference 0, exchange "." (the root: one zero byte).
        self.args.append(f"--dns-rr={domain},15,000000")

    def start(self) -> "DNSServer":
        exe = dnsmasq_path()
        assert exe, "dnsmasq is not installed (Debian package dnsmasq-base)"
        cmd = [exe, "-k", f"--port={self.port}", f"--listen-address={HOST}",
               "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
               "--pid-file=", "--local=/test/", "--user=root", "--log-queries",
               f"--log-facility={self.log_path}"] + self.args
        self._errf = open(self.dir / "dnsmasq.err", "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._errf,
                                     stderr=subprocess.STDOUT)

        def answers():
            assert self.proc.poll() is None, (self.dir / "dnsmasq.err").read_text()
            try:
                return query(self.port, "nxdomain-probe.test", 1)[0] == 3
            except OSError:
                return False
        wait_until(answers, 10, "dnsmasq to answer")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_errf", None):
            self._errf.close()
            self._errf = None
