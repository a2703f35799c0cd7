# SPDX-License-Identifier: ISC
"""The command line an administrator expects: --help, --version and `help`,
the default config path, one set of exit statuses for every command
(lib/build_info.h, authrelay(8) EXIT STATUS), and start-up errors on stderr
even when the config logs to syslog."""

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness import (HOST, REPO, SMTPConn, free_port, proc_alive, proc_children, run_tool,
                     wait_until)

EX_USAGE, EX_TEMPFAIL, EX_CONFIG = 64, 75, 78
DEFAULT_CONFIG = "/etc/authrelay/authrelay.conf"
COMMANDS = ["check-config", "show-config", "passwd", "queue", "test-auth", "test-query", "status",
            "lockouts", "unlock", "reload", "stop", "help", "version"]


def out(r) -> str:
    return r.stdout.decode(errors="replace")


def err(r) -> str:
    return r.stderr.decode(errors="replace")


# ---------------------------------------------------------------- help and version

@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_help_prints_every_command(bin_path, args):
    r = run_tool([bin_path, *args])
    assert r.returncode == 0, err(r)
    assert out(r).startswith("usage: authrelay"), out(r)
    for cmd in COMMANDS:
        assert re.search(rf"^\s+authrelay {cmd}\b", out(r), re.M), f"{cmd} missing:\n{out(r)}"
    assert DEFAULT_CONFIG in out(r)
    assert err(r) == ""


@pytest.mark.parametrize("cmd", ["check-config", "show-config", "passwd", "queue", "test-auth",
                                 "test-query", "status", "lockouts", "unlock", "reload", "stop"])
def test_help_command_prints_its_usage(bin_path, cmd):
    r = run_tool([bin_path, "help", cmd])
    assert r.returncode == 0, err(r)
    assert re.search(rf"authrelay {cmd}\b", out(r)), out(r)
    # The same text as the command's own -h.
    assert out(run_tool([bin_path, cmd, "-h"])) == out(r)


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["version"]])
def test_version(bin_path, args):
    r = run_tool([bin_path, *args])
    assert r.returncode == 0, err(r)
    m = re.fullmatch(r"authrelay (\d+\.\d+\.\d+)\n", out(r))
    assert m, out(r)
    # The package's version is the program's (debian/changelog, first line).
    first = (REPO / "debian" / "changelog").read_text().split("\n", 1)[0]
    assert re.match(rf"authrelay \({re.escape(m.group(1))}-\d+\)", first), first


@pytest.mark.parametrize("args", [["frobnicate"], ["-x"], ["help", "frobnicate"],
                                  ["version", "extra"], ["check-config", "-f"],
                                  ["check-config", "extra"], ["queue"], ["queue", "bogus"],
                                  ["test-auth"], ["passwd", "-q"], ["show-config", "extra"],
                                  ["show-config", "-c"]])
def test_usage_errors_exit_64(bin_path, args):
    r = run_tool([bin_path, *args], input="")
    assert r.returncode == EX_USAGE, f"{args}: exit {r.returncode}: {err(r)}"
    assert "usage: authrelay" in err(r), err(r)
    assert out(r) == ""


# ---------------------------------------------------------------- default config

@pytest.mark.parametrize("args", [["check-config"], ["show-config"], ["queue", "list"],
                                  ["test-query", "someone"]])
def test_config_defaults_to_etc(bin_path, args):
    """Without -c every command reads /etc/authrelay/authrelay.conf."""
    r = run_tool([bin_path, *args])
    if os.path.exists(DEFAULT_CONFIG):
        # Installed on this machine: it was read (whatever it says).
        assert r.returncode in (0, 1, EX_TEMPFAIL, EX_CONFIG), err(r)
        return
    assert r.returncode == EX_CONFIG, err(r)
    assert DEFAULT_CONFIG in err(r), err(r)


# ---------------------------------------------------------------- exit statuses

def test_check_config_invalid_exits_78(make_gateway):
    gw = make_gateway({"server": {"workers": "many"}}, start=False)
    r = run_tool([gw.binary, "check-config", "-c", gw.cfg_path])
    assert r.returncode == EX_CONFIG, err(r)


def test_queue_without_gateway_exits_75(make_gateway):
    gw = make_gateway(start=False)
    r = run_tool([gw.binary, "queue", "-c", gw.cfg_path, "list"])
    assert r.returncode == EX_TEMPFAIL, err(r)
    assert "cannot reach the queue process" in err(r), err(r)


def test_queue_bad_id_exits_64(make_gateway):
    gw = make_gateway(start=False)
    r = run_tool([gw.binary, "queue", "-c", gw.cfg_path, "show", "not-an-id"])
    assert r.returncode == EX_USAGE, err(r)


def start_failure(gw, extra_env=None) -> tuple[int, str]:
    """Start gw in the foreground, wait for it to give up; (status, output)."""
    gw.start(wait=False, env=extra_env)
    rc = gw.proc.wait(15)
    gw.stop()
    return rc, gw.log_text()


@pytest.mark.parametrize("log", ["stderr", "syslog"])
def test_busy_port_exits_75_with_message(make_gateway, log):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    busy.bind((HOST, port))
    busy.listen()
    try:
        gw = make_gateway({"server": {"log": log},
                           "listener in": {"address": f"{HOST}:{port}"}}, start=False)
        rc, text = start_failure(gw)
    finally:
        busy.close()
    assert rc == EX_TEMPFAIL, text
    # On stderr (the harness's log file) even when the log goes to syslog.
    assert re.search(rf"listener in \({HOST}:{port}\): Address already in use", text), text


@pytest.mark.parametrize("log", ["stderr", "syslog"])
def test_missing_certificate_exits_78_with_message(make_gateway, base_dir, log):
    missing = base_dir / "no-such-cert.pem"
    gw = make_gateway({"server": {"log": log}, "tls": {"cert_file": str(missing)}},
                      start=False)
    rc, text = start_failure(gw)
    assert rc == EX_CONFIG, text
    assert "[tls]" in text and str(missing) in text, text
    # Refused by the master before any child started.
    assert "started smtpd" not in text, text


def test_invalid_config_exits_78(make_gateway):
    gw = make_gateway({"server": {"workers": "many"}}, start=False)
    rc, text = start_failure(gw)
    assert rc == EX_CONFIG
    assert f"{gw.cfg_path}:" in text, text


# ---------------------------------------------------------------- daemon mode

def _kill_tree(pid: int):
    for p in proc_children(pid) + [pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_daemon_ready_with_pid_file_when_the_command_returns(make_gateway):
    """Without -f the command returns 0 once the gateway is ready: the pid
    file names the running master, and every listener greets at once."""
    gw = make_gateway(start=False)
    pid_file = Path(gw.dir) / "authrelay.pid"
    gw.sections["server"]["pid_file"] = str(pid_file)
    gw.write_config()
    r = subprocess.run([gw.binary, "-c", str(gw.cfg_path)], capture_output=True, timeout=60)
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        assert r.returncode == 0, err(r)
        assert pid is not None, "no pid file when the starting command returned"
        assert proc_alive(pid), f"pid file names {pid}, which is not running"
        assert len(proc_children(pid)) == 2 + 3, "2 workers, auth, queue and the key process"
        for name in gw.listeners():
            c = SMTPConn.open(gw, name, timeout=5)
            c.cmd("QUIT").check(221)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not proc_alive(pid), 15, "the daemon to stop")
        assert not pid_file.exists(), "pid file left behind"
    finally:
        if pid is not None and proc_alive(pid):
            _kill_tree(pid)


def test_daemon_start_failure_is_reported(make_gateway):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    busy.bind((HOST, port))
    busy.listen()
    try:
        gw = make_gateway({"listener in": {"address": f"{HOST}:{port}"}}, start=False)
        r = subprocess.run([gw.binary, "-c", str(gw.cfg_path)], capture_output=True,
                           timeout=60)
    finally:
        busy.close()
    assert r.returncode == EX_TEMPFAIL, err(r)
    assert "Address already in use" in err(r), err(r)
