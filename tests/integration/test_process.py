# SPDX-License-Identifier: ISC
"""Processes and the command line: privilege separation, the master restarting
children, SIGTERM, `authrelay check-config` and `authrelay passwd`."""

import os
import re
import signal
import socket
import struct
import time

import pytest

import harness
from harness import (HOST, SMTPConn, auth_code, auth_ids, free_port, make_message, nobody_ids,
                     plain_ir, proc_alive, proc_ids, proc_status, queue_ids, run_tool,
                     submission_conn, verify_hash, wait_until)

# src/master/master.c: after SIGTERM, children get shutdown_timeout and then
# this long before they are killed.
STOP_GRACE_SECONDS = 10


# ---------------------------------------------------------------- privileges

def test_master_root_children_dropped(gw):
    muid, _, _ = proc_ids(gw.pid)
    assert muid == [0, 0, 0, 0], f"master Uid {muid}"
    kids = gw.children()
    assert len(kids) >= 4, f"expected 2 workers, auth and queue, children: {kids}"
    # Each kind of process has a user of its own: the workers cannot read
    # the users file nor write what the queue later opens.
    expect = {gw.auth_pid(): auth_ids(), gw.queue_pid(): queue_ids(),
              gw.keyproc_pid(): auth_ids()}
    for pid in kids:
        uid, gid = expect.get(pid, nobody_ids())
        uids, gids, groups = proc_ids(pid)
        assert uids == [uid] * 4, f"child {pid} Uid {uids}"
        assert gids == [gid] * 4, f"child {pid} Gid {gids}"
        assert set(groups) <= {gid}, f"child {pid} kept supplementary groups {groups}"
    assert len({auth_ids()[0], queue_ids()[0], nobody_ids()[0]}) == 3


def test_workers_are_children_of_master(make_gateway):
    gw = make_gateway({"server": {"workers": 3}})
    kids = set(gw.children())
    assert len(kids) >= 4, f"workers = 3 plus auth, children: {sorted(kids)}"
    serving = set()
    for _ in range(12):
        c = SMTPConn.open(gw, "in")
        serving.add(gw.pid_serving(c))
        c.close()
    assert serving <= kids, f"connections served by non-children {serving - kids}"
    assert gw.pid not in serving, "the master itself serves SMTP"
    assert gw.auth_pid() not in serving, "the auth process serves SMTP"


# ---------------------------------------------------------------- restarts

def test_killed_worker_is_replaced(make_gateway):
    gw = make_gateway()
    before = set(gw.children())
    c = SMTPConn.open(gw, "in")
    pid = gw.pid_serving(c)
    os.kill(pid, signal.SIGKILL)
    c.wait_closed()
    wait_until(lambda: pid not in gw.children() and len(gw.children()) == len(before), 15,
               "the master to replace the killed worker")
    new = set(gw.children()) - before
    assert new, "no new child after the worker died"
    uid, _ = nobody_ids()
    # A fresh child runs as root until it has set itself up and dropped its
    # privileges: wait for the drop (it must happen), then check every id.
    for p in new:
        wait_until(lambda: proc_ids(p)[0] == [uid] * 4, 15,
                   f"replacement {p} to drop to uid {uid}")
        assert proc_ids(p)[0] == [uid] * 4, f"replacement {p} runs as {proc_ids(p)[0]}"
    for _ in range(4):
        SMTPConn.open(gw, "in").cmd("QUIT").check(221)
    assert gw.running()


def test_dead_worker_releases_its_connection_slots(make_gateway):
    gw = make_gateway({"limits": {"max_connections_per_ip": 2}})
    a, b = SMTPConn.open(gw, "in"), SMTPConn.open(gw, "in")
    pa, pb = gw.pid_serving(a), gw.pid_serving(b)
    if pa != pb:
        b.cmd("QUIT").check(221)
        b.wait_closed()
    os.kill(pa, signal.SIGKILL)
    a.wait_closed()

    def two_fit():
        conns = [SMTPConn(HOST, gw.port("in")) for _ in range(2)]
        codes = [c.read_reply().code for c in conns]
        for c in conns:
            c.close()
        return codes == [220, 220]
    wait_until(two_fit, 15, "both per-IP slots to be free after the worker died")


def _shared_mappings(pid: int) -> list[tuple[int, int]]:
    """The anonymous MAP_SHARED mappings of a process: the tables the master
    maps before fork and shares with the workers."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "rw-s" and fields[5] == "/dev/zero":
                start, end = (int(x, 16) for x in fields[0].split("-"))
                out.append((start, end))
    return out


def _hold_every_lock(pid: int) -> int:
    """Do, from outside, what a compromised worker can do to the memory it
    shares with the master: take every lock it could find there. A futex
    lock is a 32-bit word that holds its owner's thread id, so the worker's
    id goes into every zero word of its shared mappings (a robust mutex
    whose owner is alive, if only stopped, is never given back). Returns the
    bytes written."""
    tid = struct.pack("<I", pid)
    written = 0
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        for start, end in _shared_mappings(pid):
            mem.seek(start)
            data = bytearray(mem.read(end - start))
            for i in range(0, len(data) - 3, 4):
                if data[i:i + 4] == b"\0\0\0\0":
                    data[i:i + 4] = tid
            mem.seek(start)
            written += mem.write(bytes(data))
    return written


def test_stopped_worker_holding_the_shared_tables_cannot_freeze_the_master(make_gateway):
    """A worker stopped while holding whatever it can hold in the tables it
    shares with the root master (the connection and sending counts) must not
    keep the master from replacing another worker that dies, nor from
    stopping on SIGTERM. Before, the connection table had a lock the master
    took to give back a dead worker's connections: it waited forever."""
    gw = make_gateway({"server": {"workers": 2, "shutdown_timeout": 5}})
    c = SMTPConn.open(gw, "in")            # a counted connection in the tables
    stopped = gw.pid_serving(c)
    workers = harness._pids_holding(set(gw.children()), gw.listening_inodes())
    assert stopped in workers and len(workers) == 2, f"workers {workers}"
    (other,) = workers - {stopped}

    os.kill(stopped, signal.SIGSTOP)
    wait_until(lambda: proc_status(stopped).get("State", "").startswith("T"), 10,
               f"worker {stopped} to stop")
    assert _hold_every_lock(stopped) > 0, "no shared mapping found in the worker"

    os.kill(other, signal.SIGKILL)
    wait_until(lambda: len(harness._pids_holding(set(gw.children()), gw.listening_inodes())
                           - {stopped, other}) == 1,
               15, "the master to replace the killed worker")
    gw.wait_for_log(rf"smtpd pid={other} killed by signal 9")

    # SIGTERM: the stopped worker cannot act on it; the master kills it after
    # shutdown_timeout and its grace period, and exits.
    rc = gw.stop(timeout=5 + STOP_GRACE_SECONDS + 20)
    assert rc == 0, f"exit status {rc} after SIGTERM"
    assert not proc_alive(stopped)


def test_killed_auth_process_is_replaced(make_gateway, users):
    gw = make_gateway()
    alice = users["alice"]
    assert auth_code(gw, alice.name, alice.password) == 235
    apid = gw.auth_pid()
    os.kill(apid, signal.SIGKILL)
    wait_until(lambda: not proc_alive(apid), 10, "the auth process to die")
    wait_until(lambda: auth_code(gw, alice.name, alice.password) == 235, 20,
               "authentication to work again")
    assert apid not in gw.children()
    uid, _ = auth_ids()
    assert proc_ids(gw.auth_pid())[0] == [uid] * 4


# ---------------------------------------------------------------- signals

def test_sigterm_stops_everything(make_gateway):
    gw = make_gateway()
    kids = gw.children()
    idle = SMTPConn.open(gw, "in")        # an open session must not block shutdown
    assert idle.greeting.code == 220
    rc = gw.stop(timeout=15)
    assert rc == 0, f"exit status {rc} after SIGTERM"
    wait_until(lambda: not any(proc_alive(p) for p in kids), 10, "all children to exit")
    for name in gw.listeners():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, gw.port(name)), timeout=5).close()


def test_sighup_keeps_serving(make_gateway):
    gw = make_gateway()
    master = gw.pid
    gw.hup()
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    assert c.send_message("s@other.test", ["user@example.test"], make_message()).queued_id()
    assert gw.running() and gw.pid == master


def test_start_fails_when_port_taken(make_gateway):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    busy.bind((HOST, port))
    busy.listen()
    try:
        gw = make_gateway({"listener in": {"address": f"{HOST}:{port}"}}, start=False)
        gw.start(wait=False)
        rc = gw.proc.wait(15)
        assert rc != 0
        assert f"{port}" in gw.log_text(), gw.log_text()
    finally:
        busy.close()


def test_daemon_refuses_invalid_config(make_gateway):
    gw = make_gateway({"server": {"workers": "many"}}, start=False)
    gw.start(wait=False)
    assert gw.proc.wait(15) == 78  # EX_CONFIG
    assert f"{gw.cfg_path}:" in gw.log_text(), gw.log_text()


# ---------------------------------------------------------------- check-config

def check_config(gw):
    return run_tool([gw.binary, "check-config", "-c", gw.cfg_path])


def error_lines(gw, r):
    err = r.stderr.decode(errors="replace")
    lines = [l for l in err.split("\n") if l.strip()]
    rx = re.compile(rf"^{re.escape(str(gw.cfg_path))}:(\d+): \S")
    bad = [l for l in lines if not rx.match(l)]
    assert not bad, f"stderr lines not in FILE:LINE: message form: {bad}"
    return [(int(rx.match(l).group(1)), l) for l in lines]


def test_check_config_valid(make_gateway):
    gw = make_gateway(start=False)
    # readable by the auth process's group only: nothing to warn about
    os.chown(gw.users_path, 0, auth_ids()[1])
    os.chmod(gw.users_path, 0o640)
    r = check_config(gw)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout.strip() in (b"", b"ok"), r.stdout
    assert r.stderr.strip() == b"", r.stderr


def test_check_config_world_readable_users_file_is_valid(make_gateway):
    """A 0644 users file is legal (a warning is fine), the exit status is 0."""
    gw = make_gateway(start=False)
    r = check_config(gw)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def test_check_config_valid_with_every_key(make_gateway):
    every = {
        "limits": {"max_connections": 2000, "max_connections_per_ip": 20, "ipv6_prefix": 64,
                   "max_messages_per_session": 100, "max_recipients": 1024,
                   "max_message_size": 10485760, "max_line_length": 512,
                   "max_auth_line_length": 12288, "max_auth_failures": 3,
                   "auth_failure_delay_ms": 1000, "command_timeout": 300,
                   "data_timeout": 180, "max_errors": 20},
        "listener sub": {"tls": "required", "allow_plaintext_auth": "no",
                         "auth_legacy_advertise": "no", "cram_md5": "no",
                         "insert_received": "yes", "strip_received": "no",
                         "add_missing_headers": "yes", "default_domain": "example.test",
                         "max_recipients": 100},
    }
    r = check_config(make_gateway(every, start=False))
    assert r.returncode == 0, r.stderr.decode(errors="replace")


CONFIG_ERRORS = [
    ("bad-integer", {"server": {"workers": "abc"}}, [r"^workers = abc$"]),
    ("bad-bool", {"listener sub": {"allow_plaintext_auth": "maybe"}},
     [r"^allow_plaintext_auth = maybe$"]),
    ("bad-role", {"listener sub": {"role": "relay"}}, [r"^role = relay$", r"^\[listener sub\]$"]),
    ("bad-tls", {"listener sub": {"tls": "sometimes"}}, [r"^tls = sometimes$"]),
    ("unknown-key", {"server": {"no_such_key": "1"}}, [r"^no_such_key = 1$"]),
    ("unknown-section", {"bogus": {"a": "b"}}, [r"^\[bogus\]$", r"^a = b$"]),
    ("ipv6-prefix", {"limits": {"ipv6_prefix": 129}}, [r"^ipv6_prefix = 129$"]),
    ("bad-network", {"relay": {"client_networks": "300.0.0.0/8"}},
     [r"^client_networks = 300"]),
    ("address-without-port", {"listener sub": {"address": "127.0.0.1"}},
     [r"^address = 127\.0\.0\.1$", r"^\[listener sub\]$"]),
    ("bad-address", {"listener sub": {"address": "999.1.1.1:2525"}}, [r"^address = 999"]),
    ("negative-size", {"limits": {"max_message_size": -5}}, [r"^max_message_size = -5$"]),
    ("bad-listener-limit", {"listener in": {"max_recipients": "lots"}},
     [r"^max_recipients = lots$"]),
    ("bad-log-level", {"server": {"log_level": "chatty"}}, [r"^log_level = chatty$"]),
]


@pytest.mark.parametrize("overrides,patterns", [c[1:] for c in CONFIG_ERRORS],
                         ids=[c[0] for c in CONFIG_ERRORS])
def test_check_config_error(make_gateway, overrides, patterns):
    gw = make_gateway(overrides, start=False)
    r = check_config(gw)
    assert r.returncode == 78, f"exit {r.returncode}; stderr: {r.stderr!r}"
    errs = error_lines(gw, r)
    assert errs, "no error message"
    expected = {gw.config_line(p) for p in patterns}
    assert any(n in expected for n, _ in errs), f"no error on line(s) {expected}: {errs}"


def test_check_config_reports_every_error(make_gateway):
    gw = make_gateway({"server": {"workers": "abc"}, "listener sub": {"tls": "sometimes"}},
                      start=False)
    r = check_config(gw)
    assert r.returncode == 78
    lines = {n for n, _ in error_lines(gw, r)}
    assert {gw.config_line(r"^workers = abc$"), gw.config_line(r"^tls = sometimes$")} <= lines


def test_check_config_tls_listener_without_certificate(make_gateway):
    gw = make_gateway({"tls": None}, start=False)
    r = check_config(gw)
    assert r.returncode == 78
    assert error_lines(gw, r)


def test_check_config_missing_file(bin_path, base_dir):
    path = base_dir / "does-not-exist.conf"
    r = run_tool([bin_path, "check-config", "-c", path])
    assert r.returncode == 78
    assert str(path).encode() in r.stderr


# ------------------------------------------- check-config: files, as their readers

def private_users_file(gw):
    """Readable by the auth user's group only: nothing to warn about."""
    os.chown(gw.users_path, 0, auth_ids()[1])
    os.chmod(gw.users_path, 0o640)


def test_check_config_opens_users_file_as_auth_user(make_gateway):
    """The auth process reads the users file after dropping to auth_user: a
    file only root can read passed check-config, then the auth process
    failed in a loop. check-config opens it as that user now."""
    gw = make_gateway(start=False)
    line = gw.config_line(r"^path = ")
    os.chown(gw.users_path, 0, 0)
    os.chmod(gw.users_path, 0o600)
    r = check_config(gw)
    assert r.returncode == 78, r.stderr
    assert r.stderr.decode() == (f"{gw.cfg_path}:{line}: path = {gw.users_path}: not readable "
                                 f"by user {harness.AUTH_AS} (Permission denied)\n")
    # Readable by the auth user's group: fine, and nothing to say.
    private_users_file(gw)
    r = check_config(gw)
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def test_check_config_users_file_directory_as_the_auth_process_enters_it(make_gateway):
    """The auth process enters the users file's directory as root, then
    opens the file by name: a closed parent above that directory is fine,
    a closed directory itself is not."""
    gw = make_gateway(start=False)
    closed = harness.make_dir(gw.dir, "closed-")
    inner = closed / "etc"
    inner.mkdir(mode=0o755)
    users = inner / "users"
    users.write_bytes(gw.users_path.read_bytes())
    os.chown(users, 0, auth_ids()[1])
    os.chmod(users, 0o640)
    os.chmod(closed, 0o700)
    gw.sections["users-file"]["path"] = str(users)
    gw.write_config()
    r = check_config(gw)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    os.chmod(inner, 0o700)
    r = check_config(gw)
    assert r.returncode == 78, r.stderr
    assert (f"{gw.cfg_path}:{gw.config_line('^path = ')}: path = {users}: not readable by user "
            f"{harness.AUTH_AS} (Permission denied)") in r.stderr.decode()


def test_check_config_tls_files_name_their_line(make_gateway, base_dir):
    """A missing certificate said "line 0" and a raw OpenSSL string; each TLS
    problem is now on the line of the key at fault, in words."""
    other_cert, other_key = harness.make_cert(harness.make_dir(base_dir, "other-cert-"))
    missing = base_dir / "no-such-cert.pem"
    gw = make_gateway({"tls": {"cert_file": str(missing)}}, start=False)
    private_users_file(gw)
    cert_line = gw.config_line(r"^cert_file = ")
    r = check_config(gw)
    assert r.returncode == 78
    assert r.stderr.decode() == f"{gw.cfg_path}:{cert_line}: cert_file = {missing}: does not exist\n"

    garbage = base_dir / "garbage.pem"
    garbage.write_text("not a certificate\n")
    gw.sections["tls"]["cert_file"] = str(garbage)
    gw.write_config()
    r = check_config(gw)
    assert r.returncode == 78
    assert r.stderr.decode() == (f"{gw.cfg_path}:{cert_line}: cert_file = {garbage}: no PEM "
                                 "certificate in it\n")

    gw.sections["tls"]["cert_file"] = str(other_cert)  # the key is another one's
    gw.write_config()
    r = check_config(gw)
    assert r.returncode == 78
    key = gw.sections["tls"]["key_file"]
    assert r.stderr.decode() == (f"{gw.cfg_path}:{gw.config_line('^key_file = ')}: key_file = "
                                 f"{key}: certificate and key do not match\n")
    gw.sections["tls"]["key_file"] = str(other_key)
    gw.write_config()
    r = check_config(gw)
    assert r.returncode == 0, r.stderr


def test_check_config_spool_maildir_and_cas_as_user(make_gateway):
    """The workers (user) and the queue (queue_user) enter the spool; a
    Maildir route's directory and the queue's CA file are opened as the
    queue's user."""
    gw = make_gateway(start=False)
    private_users_file(gw)
    closed = harness.make_dir(gw.dir, "closed-")
    os.chmod(closed, 0o700)
    ca = gw.dir / "ca.pem"
    ca.write_bytes(open(gw.sections["tls"]["cert_file"], "rb").read())
    os.chmod(ca, 0o600)
    gw.sections["server"]["spool_dir"] = str(closed / "spool")
    gw.sections["route box"] = {"domains": "box.test", "type": "maildir",
                                "maildir": f"{closed}/mail/%d/%u"}
    gw.sections["queue"]["tls_ca_file"] = str(ca)
    gw.write_config()
    r = check_config(gw)
    assert r.returncode == 78
    err = r.stderr.decode()
    queue = harness.QUEUE_AS
    for key, text in [("spool_dir", f"spool_dir = {closed}/spool: {closed}: not searchable by "
                                    "user nobody (Permission denied)"),
                      ("spool_dir", f"spool_dir = {closed}/spool: {closed}: not searchable by "
                                    f"user {queue} (Permission denied)"),
                      ("maildir", f"maildir = {closed}/mail/%d/%u: {closed}: not writable by "
                                  f"user {queue} (Permission denied)"),
                      ("tls_ca_file", f"tls_ca_file = {ca}: not readable by user {queue} "
                                      "(Permission denied)")]:
        line = gw.config_line(rf"^{key} = ")
        assert f"{gw.cfg_path}:{line}: {text}\n" in err, err
    # Open to the users: nothing to say.
    os.chown(closed, queue_ids()[0], queue_ids()[1])
    os.chmod(closed, 0o711)
    os.chmod(ca, 0o644)
    r = check_config(gw)
    assert r.returncode == 0 and r.stderr == b"", r.stderr


@pytest.mark.parametrize("roles", [("inbound", "submission"), ("outbound", "submission"),
                                   ("inbound", "outbound"), ("submission", "submission")])
def test_check_config_address_clash(make_gateway, roles):
    addr = f"{HOST}:{free_port()}"
    gw = make_gateway({"listener in": None, "listener out": None,
                       "listener mx-public": {"role": roles[0], "tls": "none", "address": addr},
                       "listener msa-clash": {"role": roles[1], "address": addr}}, start=False)
    r = check_config(gw)
    assert r.returncode == 78, r.stderr
    errs = error_lines(gw, r)
    assert any("mx-public" in l and "msa-clash" in l for _, l in errs), \
        f"no message naming both listeners: {errs}"


def test_check_config_wildcard_clash(make_gateway):
    """0.0.0.0:P and 127.0.0.1:P cannot both be bound either."""
    port = free_port()
    gw = make_gateway({"listener in": None,
                       "listener wild-any": {"role": "inbound", "tls": "none",
                                             "address": f"0.0.0.0:{port}"},
                       "listener lo-specific": {"role": "submission",
                                                "address": f"{HOST}:{port}"}}, start=False)
    r = check_config(gw)
    assert r.returncode == 78, r.stderr
    assert any("wild-any" in l and "lo-specific" in l for _, l in error_lines(gw, r))


# ---------------------------------------------------------------- passwd

PASSWD_SCHEMES = [(None, r"\$y\$"), ("yescrypt", r"\$y\$"), ("sha512-crypt", r"\$6\$"),
                  ("bcrypt", r"\$2[aby]\$"), ("ssha512", r"\{SSHA512\}")]


def passwd(bin_path, password, user=None, scheme=None):
    args = [bin_path, "passwd"] + (["-s", scheme] if scheme else []) + ([user] if user else [])
    return run_tool(args, input=password + "\n")


@pytest.mark.parametrize("scheme,prefix", PASSWD_SCHEMES, ids=[str(s[0]) for s in PASSWD_SCHEMES])
def test_passwd_prints_user_and_hash(bin_path, scheme, prefix):
    r = passwd(bin_path, "pw-Pat-1", "pat", scheme)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().strip()
    assert "\n" not in out, out
    m = re.fullmatch(rf"pat:({prefix}\S+)", out)
    assert m, out
    assert verify_hash("pw-Pat-1", m.group(1)), "hash does not verify the password"
    assert not verify_hash("pw-Pat-1\n", m.group(1)), "the newline became part of the password"


def test_passwd_without_user_prints_hash(bin_path):
    r = passwd(bin_path, "pw-Solo-1", scheme="sha512-crypt")
    assert r.returncode == 0
    out = r.stdout.decode().strip()
    assert out.startswith("$6$") and verify_hash("pw-Solo-1", out), out


def test_passwd_salts_differ(bin_path):
    a = passwd(bin_path, "same", "u", "sha512-crypt").stdout
    b = passwd(bin_path, "same", "u", "sha512-crypt").stdout
    assert a != b


def test_passwd_bad_scheme(bin_path):
    r = passwd(bin_path, "x", "u", "rot13")
    assert r.returncode != 0 and r.stdout.strip() == b""


def test_passwd_hashes_authenticate(bin_path, make_gateway):
    users, pws = {}, {}
    for scheme, _ in PASSWD_SCHEMES:
        name = f"u-{scheme or 'default'}"
        pws[name] = f"Pw {scheme}!"
        out = passwd(bin_path, pws[name], name, scheme).stdout.decode().strip()
        n, _, h = out.partition(":")
        assert n == name
        users[name] = h
    gw = make_gateway(users=users)
    for name, pw in pws.items():
        assert auth_code(gw, name, pw) == 235, name
        assert auth_code(gw, name, pw + "x") == 535, name


# ---------------------------------------------------------------- robustness

def test_failure_delay_does_not_block_other_sessions(make_gateway):
    """The delay before a 535 is a timer, not a sleep in the worker's loop."""
    gw = make_gateway({"server": {"workers": 1}, "limits": {"auth_failure_delay_ms": 2000}})
    a = submission_conn(gw)
    t_auth = time.monotonic()
    a.send("AUTH PLAIN " + plain_ir("alice", "wrong") + "\r\n")
    t0 = time.monotonic()
    b = SMTPConn.open(gw, "in")
    b.ehlo()
    b.cmd("NOOP").check(250, "2.0.0")
    assert time.monotonic() - t0 < 1.0, "a second session waited for another's auth delay"
    a.read_reply().check(535, "5.7.8")
    assert time.monotonic() - t_auth >= 1.9


def test_worker_survives_clients_leaving_mid_auth(make_gateway, users):
    """Clients that vanish while their 535 is delayed, or while the auth process
    has not answered yet, must not crash the worker (no restart, same pid)."""
    gw = make_gateway({"server": {"workers": 1}, "limits": {"auth_failure_delay_ms": 300}})
    alice = users["alice"]
    assert auth_code(gw, alice.name, alice.password) == 235
    kids = set(gw.children())
    for _ in range(10):
        c = submission_conn(gw)
        c.send("AUTH PLAIN " + plain_ir("alice", "wrong") + "\r\n")
        c.close()
    apid = gw.auth_pid()
    os.kill(apid, signal.SIGSTOP)
    try:
        for _ in range(10):
            c = submission_conn(gw)
            c.send("AUTH PLAIN " + plain_ir(alice.name, alice.password) + "\r\n")
            c.close()
    finally:
        os.kill(apid, signal.SIGCONT)
    # a full failure cycle outlasts the delayed replies of the vanished clients
    c = submission_conn(gw)
    c.auth_plain(alice.name, "wrong").check(535, "5.7.8")
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    assert set(gw.children()) == kids, "a worker or the auth process was restarted"
    assert not re.search(r"killed by signal|exited status", gw.log_text()), gw.log_tail()


def test_worker_survives_tls_garbage(make_gateway):
    gw = make_gateway()
    kids = set(gw.children())
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.cmd("STARTTLS").check(220, "2.0.0")
    c.send(b"\x16\x03\x01\x00\x05hello this is not TLS\r\n" * 20)
    c.wait_closed()
    raw = SMTPConn(HOST, gw.port("subs"))
    raw.send(b"\x16\x03\x03\xff\xff" + b"\x00" * 4096)
    raw.wait_closed()
    for _ in range(3):
        SMTPConn.open(gw, "subs").cmd("QUIT").check(221)
    assert set(gw.children()) == kids, "a child died on bad TLS input"
