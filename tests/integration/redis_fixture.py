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

TLS mode: Redis(directory, tls=RedisTLS(directory)) listens on tls-port
only (port 0), with a server certificate for 127.0.0.1 and redis.test
signed by a CA made here; client_certs=True sets tls-auth-clients yes
(the gateways must then present a certificate of that CA: tls.client_cert,
tls.client_key). tls.ca is the CA file for [shared] tls_ca_file, and
make_ca() makes another, unrelated CA.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from harness import HOST, free_port, wait_until


TLS_NAME = "redis.test"


def _openssl(*args: str):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A CA certificate and key (EC P-256), (cert, key), both world-readable
    (the auth process reads the certificate as auth_user; test keys only)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={name}", "-days", "2",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(key), "-out", str(cert))
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    return cert, key


def make_leaf(directory: Path, name: str, ca: tuple[Path, Path], cn: str,
              san: str | None, usage: str) -> tuple[Path, Path]:
    """A certificate signed by ca, (cert, key), readable by every user (the
    gateway's auth process reads its client key as auth_user)."""
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}-key.pem",
                      directory / f"{name}.csr")
    ext = directory / f"{name}.ext"
    ext.write_text(f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    return cert, key


class RedisTLS:
    """The certificates of a TLS Redis: a CA, a server certificate for
    127.0.0.1 and TLS_NAME, and a client certificate, all from that CA."""

    def __init__(self, directory: Path, client_certs: bool = False):
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.client_certs = client_certs
        self.ca, self.ca_key = make_ca(d, "redis-ca")
        self.cert, self.key = make_leaf(d, "redis-server", (self.ca, self.ca_key), TLS_NAME,
                                        f"DNS:{TLS_NAME},IP:{HOST}", "serverAuth")
        self.client_cert, self.client_key = make_leaf(d, "redis-client", (self.ca, self.ca_key),
                                                      "authrelay", None, "clientAuth")


class Redis:
    def __init__(self, directory: Path, password: str | None = None,
                 tls: RedisTLS | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> "Redis":
        if self.tls is None:
            args = ["redis-server", "--port", str(self.port)]
        else:
            t = self.tls
            args = ["redis-server", "--port", "0", "--tls-port", str(self.port),
                    "--tls-cert-file", str(t.cert), "--tls-key-file", str(t.key),
                    "--tls-ca-cert-file", str(t.ca),
                    "--tls-auth-clients", "yes" if t.client_certs else "no"]
        args += ["--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                 "--daemonize", "no"]
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
        if self.tls is not None:
            cmd += ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
                    "--key", str(self.tls.client_key)]
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
