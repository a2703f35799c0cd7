# SPDX-License-Identifier: ISC
"""systemd integration: the notification protocol (Type=notify) spoken to a
NOTIFY_SOCKET the test creates, in order against the ports opening and the
children coming up; the unit file as `systemd-analyze verify` sees it."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import REPO, SMTPConn, proc_alive, wait_until


class NotifySocket:
    """A datagram socket standing in for systemd's: collects every message."""

    def __init__(self, directory):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def _recv(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return False
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(fields)
        return True

    def drain(self):
        while self._recv(0.001):
            pass

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30,
                 after: int = 0) -> int:
        """Index of the first message from index `after` on that sets key
        (to value); waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.messages[after:], after):
                if key in m and (value is None or m[key] == value):
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value or '*'} within {timeout}s; "
                                     f"got {self.messages}")
            self._recv(left)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(base_dir, request):
    d = base_dir / f"notify-{os.getpid()}-{request.node.name[:40]}"
    d.mkdir()
    s = NotifySocket(d)
    yield s
    s.close()


def test_ready_after_ports_and_children_then_reload_and_stop(make_gateway, notify):
    gw = make_gateway(start=False)
    gw.start(wait=False, env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait_for("READY", "1")
    # READY=1 is the first state change, and when it arrives every
    # listener is bound and served, and every child is running.
    assert not any("READY" in m or "RELOADING" in m or "STOPPING" in m
                   for m in notify.messages[:ready]), notify.messages
    kids = gw.children()
    assert len(kids) == 2 + 3, f"2 workers, auth, queue and the key process: {kids}"
    for name in gw.listeners():
        c = SMTPConn.open(gw, name, timeout=5)
        c.cmd("QUIT").check(221)
    assert re.match(r"ready: 4 listeners, 2 workers", notify.messages[ready].get("STATUS", "")), \
        notify.messages[ready]
    gw.wait_ready()

    notify.drain()
    mark = len(notify.messages)
    gw.hup()
    reloading = notify.wait_for("RELOADING", "1", after=mark)
    assert int(notify.messages[reloading]["MONOTONIC_USEC"]) > 0, notify.messages[reloading]
    done = notify.wait_for("READY", "1", after=reloading + 1)
    assert notify.messages[done]["STATUS"].startswith("reloaded"), notify.messages[done]
    # The auth process and the queue reload in place; the workers are a new
    # generation, up before READY=1, and the old one goes once idle.
    auth, queue = gw.auth_pid(), gw.queue_pid()
    assert {auth, queue} <= set(kids), "a reload restarted the auth process or the queue"
    # Up at READY=1: the new generation's two workers and key process.
    started = set(gw.children()) - set(kids)
    assert len(started) == 3, (kids, started)
    # The old workers stop accepting as each takes the master's word.
    new_workers = wait_until(
        lambda: w if len(w := gw.worker_pids()) == 2 and not w & set(kids) else None, 15,
        "only the new workers to accept")
    assert new_workers <= started, (started, new_workers)
    # The new generation has its own key process; the old one goes with
    # the old workers.
    old_keyproc = set(kids) & gw.logged_pids("keyproc")

    def settled():
        now = set(gw.children())
        keyprocs = now & gw.logged_pids("keyproc")
        return (len(keyprocs) == 1 and not keyprocs & old_keyproc
                and now == new_workers | {auth, queue} | keyprocs)
    wait_until(settled, 15, "the old workers and key process to exit")

    mark = len(notify.messages)
    os.kill(gw.pid, signal.SIGTERM)
    stopping = notify.wait_for("STOPPING", "1", after=mark)
    assert "READY" not in notify.messages[stopping]
    assert gw.proc.wait(15) == 0
    gw.stop()


def test_reload_of_a_broken_config_says_so(make_gateway, notify):
    gw = make_gateway(start=False)
    gw.start(env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY", "1")
    gw.sections["server"]["workers"] = "many"
    gw.write_config()
    mark = len(notify.messages)
    gw.hup()
    reloading = notify.wait_for("RELOADING", "1", after=mark)
    done = notify.wait_for("READY", "1", after=reloading + 1)
    assert notify.messages[done]["STATUS"].startswith("reload refused"), notify.messages[done]
    assert gw.running()


def test_no_ready_while_a_child_keeps_failing(make_gateway, notify):
    """The auth process cannot read the users file: it fails and is
    restarted, the workers serve, and the gateway is not ready; once the file
    is readable again the auth process comes up, and then READY=1 comes."""
    gw = make_gateway(start=False)
    os.chmod(gw.users_path, 0o600)  # root's only: the auth process cannot read it
    gw.start(wait=False, env={"NOTIFY_SOCKET": notify.path})
    gw.wait_for_log(r"auth pid=\d+ exited status=\d+", timeout=20)
    gw.wait_for_log(r"auth pid=\d+ exited status=\d+(?s:.*)auth pid=\d+ exited status=\d+",
                    timeout=20)
    gw.wait_for_log(r"queue ready", timeout=20)
    wait_until(lambda: len(re.findall(r"worker=\d+ ready", gw.log_text())) >= 2, 20,
               "both workers up")
    notify.drain()
    assert not any("READY" in m for m in notify.messages), notify.messages
    assert any("restarting" in m.get("STATUS", "") for m in notify.messages), notify.messages
    os.chmod(gw.users_path, 0o644)
    notify.wait_for("READY", "1", timeout=60)
    assert proc_alive(gw.auth_pid())
    gw.stop()


def test_start_failure_status(make_gateway, base_dir, notify):
    gw = make_gateway({"tls": {"cert_file": str(base_dir / "missing.pem")}}, start=False)
    gw.start(wait=False, env={"NOTIFY_SOCKET": notify.path})
    assert gw.proc.wait(15) == 78
    i = notify.wait_for("STATUS", timeout=5)
    # On cert_file's line, as check-config and a reload report it.
    want = f"failed to start: {gw.cfg_path}:{gw.config_line('^cert_file = ')}: [tls] cert_file = "
    assert notify.messages[i]["STATUS"].startswith(want), notify.messages
    assert not any("READY" in m for m in notify.messages)
    gw.stop()


# ---------------------------------------------------------------- the unit file

def test_unit_file_verifies(tmp_path):
    """`systemd-analyze verify` on the unit as `make install` writes it, with
    the binary and both manual pages where the unit says they are. It runs
    without a booted systemd (it only loads the unit)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (package systemd)")
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                       cwd=REPO, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    unit = dest / "usr/lib/systemd/system/authrelay.service"
    text = unit.read_text()
    assert "ExecStart=/usr/sbin/authrelay -f -c /etc/authrelay/authrelay.conf" in text
    # verify resolves ExecStart= and Documentation= against the real root:
    # point them at the DESTDIR copies.
    local = tmp_path / "authrelay.service"
    local.write_text(text.replace("/usr/sbin/authrelay", str(dest / "usr/sbin/authrelay"))
                     .replace("man:authrelay(8) man:authrelay.conf(5)",
                              f"file://{dest}/usr/share/man/man8/authrelay.8"))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                       timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    msgs = [l for l in (r.stdout + r.stderr).decode().split("\n")
            if l.strip() and "authrelay" in l]
    assert r.returncode == 0 and not msgs, "\n".join(msgs)
