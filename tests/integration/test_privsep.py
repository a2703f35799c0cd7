# SPDX-License-Identifier: ISC
"""A compromised process gains nothing.

The test plays a compromised SMTP worker: a child of the test that drops to
the workers' uid (as a worker does) and plants what it can in the spool:
symlinks and hard links pointing at a delivered Maildir message and at a
spool-looking file the test owns, a FIFO, a directory, in every folder it can
write (state/.tmp-ID, incoming/ID, ...). The queue, which runs as its own
user, must never follow one: the targets stay unchanged, nothing planted is
delivered, each refusal is logged and the planted name is set aside in
corrupt/. A symlink put in a Maildir path is not written through either.

Then the sandboxes: every child shows NoNewPrivs 1 and Seccomp 2 in
/proc/PID/status; a child that dies of SIGSYS (what a call outside its
allow-list gets, tests/unit/test_sandbox.c) is logged by name and restarted;
`sandbox = no` turns them off with a warning; RLIMIT_CORE is 0 unless
`core_dumps = yes`; check-config warns when the auth process or the queue
shares the workers' user.
"""

import errno
import hashlib
import json
import os
import re
import secrets
import signal
import stat

import pytest

from harness import (AUTH_AS, RUN_AS, SMTPConn, make_dir, make_message, nobody_ids, queue_ids,
                     run_tool, wait_until)


def spool_text(qid: str, rcpt: str, body: str) -> str:
    """A well-formed spool file (src/spool/spool.h) for rcpt."""
    return (f"AUTHRELAY-SPOOL 1\nid {qid}\ntime 1700000000\nclient 127.0.0.1\nhelo x\n"
            f"listener in\nprotocol SMTP\ntls none\nmail <s@other.test>\nrcpt <{rcpt}>\n\n"
            f"Subject: planted\r\n\r\n{body}\r\n")


def new_id() -> str:
    return secrets.token_hex(10)


def as_worker(ops: list[tuple]) -> dict:
    """Run ops in a child with the workers' uid and gid (as a compromised
    worker would), each ("symlink", target, path), ("link", target, path),
    ("mkfifo", path), ("mkdir", path), ("write", path, text) or
    ("rename", src, dst). Returns {path: "ok" or the errno's name}."""
    uid, gid = nobody_ids()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out = {}
            for op in ops:
                key = op[-1] if op[0] != "rename" else op[1]
                try:
                    if op[0] == "symlink":
                        os.symlink(op[1], op[2])
                    elif op[0] == "link":
                        os.link(op[1], op[2])
                    elif op[0] == "mkfifo":
                        os.mkfifo(op[1])
                    elif op[0] == "mkdir":
                        os.mkdir(op[1])
                    elif op[0] == "write":
                        with open(op[1], "x") as f:
                            f.write(op[2])
                        key = op[1]
                    elif op[0] == "rename":
                        os.rename(op[1], op[2])
                    out[str(key)] = "ok"
                except OSError as e:
                    out[str(key)] = errno.errorcode.get(e.errno, str(e.errno))
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def send(gw, rcpts, listener="out"):
    c = SMTPConn.open(gw, listener)
    c.ehlo()
    qid = c.send_message("sender@other.test", rcpts, make_message("sender@other.test", rcpts[0]))\
        .queued_id()
    c.cmd("QUIT")
    c.close()
    return qid


def maildir_files(d):
    new = d / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


@pytest.fixture
def mgw(make_gateway, base_dir):
    """A gateway whose queue delivers example.test into Maildirs and defers
    everything else (the harness's resolver answers nothing), retrying fast."""
    mdir = make_dir(base_dir, "maildir-")
    os.chown(mdir, *queue_ids())
    gw = make_gateway({"queue": {"retry_min": "1s", "retry_max": "2s"},
                       "route local": {"domains": "example.test", "type": "maildir",
                                       "maildir": f"{mdir}/%u"}})
    gw.maildir = mdir
    return gw


def test_compromised_worker_plants_links_the_queue_never_follows(mgw, base_dir):
    gw, spool = mgw, mgw.spool
    # A delivered message: the target a planted link would overwrite.
    qid = send(gw, ["alice@example.test"])
    alice = gw.maildir / "alice"
    wait_until(lambda: maildir_files(alice), 20, "alice's message in her Maildir")
    target = maildir_files(alice)[0]
    target_sum = digest(target)
    # A file the test owns that reads as a spool file for bob: following a
    # link to it would deliver its text.
    secret_id = new_id()
    secret = base_dir / f"passwd-like-{secret_id}"
    secret.write_text(spool_text(secret_id, "bob@example.test", "root:x:0:0:secret"))
    os.chmod(secret, 0o644)
    secret_sum = digest(secret)
    # A message the queue keeps trying: it rewrites state/QID through
    # state/.tmp-QID after every attempt.
    deferred = send(gw, ["x@other.test"])
    wait_until(lambda: (spool / "state" / deferred).exists(), 30, "the deferred message's state")
    mark = gw.log_mark()

    ids = {k: new_id() for k in ("symlink", "hardlink", "hardlink_queue", "fifo", "dir")}
    worker_file = spool / "tmp" / f"mine-{ids['hardlink']}"
    inc = spool / "incoming"
    results = as_worker([
        ("symlink", str(target), str(spool / "state" / f".tmp-{deferred}")),
        ("symlink", str(target), str(spool / "state" / f"planted-{deferred}")),
        ("symlink", str(secret), str(inc / ids["symlink"])),
        ("write", str(worker_file), spool_text(ids["hardlink"], "bob@example.test", "mine")),
        ("link", str(worker_file), str(inc / ids["hardlink"])),
        ("link", str(target), str(inc / ids["hardlink_queue"])),
        ("mkfifo", str(inc / ids["fifo"])),
        ("mkdir", str(inc / ids["dir"])),
        ("symlink", str(target), str(spool / "corrupt" / "planted")),
        ("symlink", str(target), str(spool / "queue-tmp" / "planted")),
        ("symlink", str(target), str(spool / "planted")),
        ("rename", str(spool / "state"), str(spool / "state.old")),
    ])
    planted = [k for k in ids if results[str(inc / ids[k])] == "ok"]

    # Another attempt of the deferred message writes its state again.
    r = run_tool([gw.binary, "queue", "-c", gw.cfg_path, "flush"], timeout=30)
    assert r.returncode == 0, r.stderr
    gw.wait_for_log(rf"id={deferred} status=deferred .* attempts=[2-9] .*to=\"<x@other.test>\"",
                    since=mark, timeout=30)
    # Nothing was followed: the targets are as they were, nothing planted
    # was delivered.
    assert digest(target) == target_sum, "the delivered Maildir message was changed"
    assert digest(secret) == secret_sum
    assert not maildir_files(gw.maildir / "bob"), "a planted file was delivered"
    # What only the queue writes is closed to the workers.
    for folder in ("state", "corrupt", "queue-tmp"):
        for k, v in results.items():
            if f"/{folder}/" in k:
                assert v == "EACCES", (k, v)
    assert results[str(spool / "planted")] == "EACCES", results
    assert results[str(spool / "state")] in ("EACCES", "EPERM"), results
    # What the workers can plant, in incoming/, is refused and logged.
    for k in ("symlink", "hardlink", "fifo", "dir"):
        assert results[str(inc / ids[k])] == "ok", results
    reasons = {"symlink": "a symlink", "hardlink": "2 hard links",
               "hardlink_queue": "2 hard links", "fifo": "not a regular file",
               "dir": "not a regular file"}
    for k in planted:
        if k == "dir":
            # A worker's directory cannot be moved by another user: it is
            # reported as broken and left alone.
            gw.wait_for_log(rf"error: id={ids[k]} unreadable queue file \S+: refused: "
                            rf"{reasons[k]}; cannot move it to corrupt/", since=mark, timeout=20)
            continue
        gw.wait_for_log(rf"error: id={ids[k]} incoming/{ids[k]} refused: {reasons[k]}.*; "
                        rf"moved to corrupt/{ids[k]}", since=mark, timeout=20)
        assert not os.path.lexists(inc / ids[k]), f"{k} still in incoming/"
        assert os.path.lexists(spool / "corrupt" / ids[k]), f"{k} not in corrupt/"
    assert stat.S_ISLNK(os.lstat(spool / "corrupt" / ids["symlink"]).st_mode)

    # The queue is the same process, still delivering, and still has not
    # followed anything.
    qpid = gw.queue_pid()
    again = send(gw, ["alice@example.test"])
    wait_until(lambda: len(maildir_files(alice)) == 2, 20, "the next message for alice")
    assert digest(target) == target_sum, "the delivered Maildir message was changed"
    assert os.stat(target).st_nlink == (2 if "hardlink_queue" in planted else 1)
    assert digest(secret) == secret_sum
    assert not maildir_files(gw.maildir / "bob"), "a planted file was delivered"
    assert gw.queue_pid() == qpid
    state = (spool / "state" / deferred).read_text()
    assert state.startswith("AUTHRELAY-STATE 1\n"), state
    assert qid != again


def test_symlink_in_a_maildir_path_is_not_followed(mgw, base_dir):
    gw = mgw
    elsewhere = make_dir(base_dir, "elsewhere-")
    os.chown(elsewhere, *queue_ids())
    # Someone who can write the Maildir tree (not the workers: the test)
    # points carol's folder, and dave's new/, somewhere else.
    os.symlink(elsewhere, gw.maildir / "carol")
    dave = gw.maildir / "dave"
    os.mkdir(dave)
    os.symlink(elsewhere, dave / "new")
    shutil_chown_tree(dave, *queue_ids())
    mark = gw.log_mark()
    qid = send(gw, ["carol@example.test", "dave@example.test"])
    gw.wait_for_log(rf"id={qid} status=deferred .*to=\"<carol@example.test>\" reply=\"[^\"]*"
                    rf"carol: a symlink \(not followed\)", since=mark, timeout=30)
    gw.wait_for_log(rf"id={qid} status=deferred .*to=\"<dave@example.test>\" reply=\"[^\"]*"
                    rf"new: not a directory \(not followed\)", since=mark, timeout=30)
    assert os.listdir(elsewhere) == [], os.listdir(elsewhere)


def shutil_chown_tree(path, uid, gid):
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


# ---------------------------------------------------------------- sandboxes

def proc_status_fields(pid: int) -> dict:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def sandbox_off_in_this_build(gw) -> bool:
    return "sandbox off: a sanitizer build" in gw.log_text()


def test_every_child_runs_sandboxed(gw):
    if sandbox_off_in_this_build(gw):
        pytest.skip("a sanitizer build runs without the sandbox (src/lib/sandbox.h)")
    kids = gw.children()
    assert len(kids) >= 4, kids
    for pid in kids:
        f = proc_status_fields(pid)
        assert f["NoNewPrivs"] == "1", (pid, f["NoNewPrivs"])
        assert f["Seccomp"] == "2", (pid, f["Seccomp"])
    master = proc_status_fields(gw.pid)
    assert master["Seccomp"] == "0" and master["NoNewPrivs"] == "0", master


def test_child_killed_by_sigsys_is_logged_and_restarted(make_gateway):
    gw = make_gateway()
    c = SMTPConn.open(gw, "in")
    pid = gw.pid_serving(c)
    mark = gw.log_mark()
    # What the kernel sends a child that made a call outside its list.
    os.kill(pid, signal.SIGSYS)
    c.wait_closed()
    gw.wait_for_log(rf"error: smtpd pid={pid} killed by signal 31 \(SIGSYS\): a system call "
                    rf"outside its sandbox", since=mark)
    gw.wait_for_log(r"restarting smtpd in \d+ ms", since=mark)
    wait_until(lambda: pid not in gw.children() and len(gw.children()) == 4, 15,
               "the replacement worker")
    for _ in range(3):
        SMTPConn.open(gw, "in").cmd("QUIT").check(221)
    apid = gw.auth_pid()
    os.kill(apid, signal.SIGSYS)
    gw.wait_for_log(rf"error: auth pid={apid} killed by signal 31 \(SIGSYS\)", since=mark)


def test_sandbox_off_by_config(make_gateway):
    gw = make_gateway({"server": {"sandbox": False}})
    gw.wait_for_log(r"warning: \[server\] sandbox = no: the children run without")
    for pid in gw.children():
        f = proc_status_fields(pid)
        assert f["Seccomp"] == "0", (pid, f["Seccomp"])


def core_limit(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                soft, hard = line.split()[4:6]
                return soft, hard
    raise AssertionError("no core limit line")


def test_no_core_files_unless_allowed(make_gateway):
    gw = make_gateway()
    for pid in [gw.pid] + gw.children():
        assert core_limit(pid) == ("0", "0"), (pid, core_limit(pid))
    before = core_limit(os.getpid())
    gw2 = make_gateway({"server": {"core_dumps": True}})
    assert core_limit(gw2.pid) == before


def test_check_config_warns_when_users_are_shared(make_gateway):
    gw = make_gateway({"server": {"auth_user": RUN_AS, "queue_user": RUN_AS}}, start=False)
    r = run_tool([gw.binary, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 0, err
    line = gw.config_line(r"^auth_user = ")
    assert re.search(rf":{line}: warning: \[server\] auth_user is the same as user \({RUN_AS}\): "
                     r"the SMTP workers could read the users file", err), err
    line = gw.config_line(r"^queue_user = ")
    assert re.search(rf":{line}: warning: \[server\] queue_user is the same as user", err), err
    # The harness's own users are apart: no warning.
    gw2 = make_gateway(start=False)
    r = run_tool([gw2.binary, "check-config", "-c", gw2.cfg_path])
    assert "is the same as user" not in r.stderr.decode(), r.stderr
    assert AUTH_AS in gw2.cfg_path.read_text()
