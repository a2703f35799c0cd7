# SPDX-License-Identifier: ISC
"""Admin commands: the root-only control socket of the running
daemon (status, lockouts, unlock, reload, stop, each with --json where it
lists something, parsed here), refused to a client that is not root, and the
queue commands on many messages at once (ALL, by sender, recipient or
domain), the queue's summary by domain and age, and `queue list` reading the
spool of a stopped gateway; test-auth on the users file, in every mechanism
(its CRAM-MD5 mode against a login that works in the daemon). test-auth
through LDAP and SMTP forwarding is in test_ldap.py and test_forward.py,
whose module fixtures start those servers."""

import json
import os
import re
import socket
import stat
import smtplib
import subprocess

import pytest

from harness import (HOST, SMTPConn, make_message, nobody_ids, run_tool, smtplib_auth,
                     smtplib_client, wait_until)

EX_USAGE, EX_NOPERM, EX_TEMPFAIL, EX_CONFIG = 64, 77, 75, 78

PLAIN = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
         "max_auth_failures": 20, "default_domain": "example.test"}


def admin(gw, *args, user=None, timeout=60):
    cmd = [gw.binary, args[0], "-c", gw.cfg_path, *args[1:]]
    if user is None:
        return run_tool(cmd, timeout=timeout)
    uid, gid = user

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return subprocess.run([str(a) for a in cmd], capture_output=True, timeout=timeout,
                          preexec_fn=drop)


def out(r):
    return r.stdout.decode(errors="replace")


def err(r):
    return r.stderr.decode(errors="replace")


def status_json(gw):
    r = admin(gw, "status", "--json")
    assert r.returncode == 0, err(r)
    return json.loads(out(r))


def login(gw, user, password, source):
    c = SMTPConn.open(gw, "plain", source=source)
    c.ehlo()
    code = c.auth_plain(user, password).code
    c.close()
    return code


# ---------------------------------------------------------------- status

def test_status_text_and_json(make_gateway):
    gw = make_gateway()
    sock = gw.spool / "private" / "control"
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    # One open session on "in", counted by the shared connection table.
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    try:
        wait_until(lambda: {l["name"]: l["sessions"] for l in status_json(gw)["listeners"]}
                   .get("in") == 1, 10, "the open session in the status")
        s = status_json(gw)
    finally:
        c.close()
    assert s["pid"] == gw.pid and s["generation"] == 1 and s["uptime"] >= 0
    assert s["sessions"] == 1
    assert {l["name"] for l in s["listeners"]} == set(gw.listeners())
    by_name = {l["name"]: l for l in s["listeners"]}
    assert by_name["sub"]["tls"] == "required" and by_name["sub"]["role"] == "submission"
    assert by_name["in"]["address"] == f"{HOST}:{gw.port('in')}"
    assert len(s["workers"]) == 2 and all(w["up"] and w["pid"] > 0 for w in s["workers"])
    # The TLS listeners need the key process.
    assert s["keyproc"]["up"] and s["keyproc"]["pid"] > 0
    assert set(w["pid"] for w in s["workers"]) | \
        {s["auth"]["pid"], s["queue"]["pid"], s["keyproc"]["pid"]} == set(gw.children())
    assert s["auth"]["up"] and s["auth"]["answering"] and s["auth"]["pid"] == gw.auth_pid()
    assert [(x["name"], x["state"]) for x in s["auth"]["sources"]] == [("file", "up")]
    q = s["queue"]
    assert q["up"] and q["answering"] and q["messages"] == 0 and q["deferred"] == 0
    # The text form: one key=value line per thing.
    r = admin(gw, "status")
    assert r.returncode == 0, err(r)
    t = out(r)
    assert re.search(rf"^authrelay version=\S+ pid={gw.pid} started=\S+Z uptime=\d+s "
                     r"generation=1 sessions=\d+ workers=2 workers_up=2$", t, re.M), t
    assert re.search(rf"^listener name=in address={HOST}:{gw.port('in')} role=inbound "
                     r"tls=none sessions=\d+$", t, re.M), t
    assert re.search(r"^source name=file state=up for=\d+s$", t, re.M), t
    assert re.search(r"^queue messages=0 ready=0 active=0 deferred=0 hold=0 broken=0 "
                     r"oldest_age=0$", t, re.M), t
    assert len(re.findall(r"^worker index=\d pid=\d+ state=up restarts=0$", t, re.M)) == 2
    assert re.search(rf"^process name=auth pid={gw.auth_pid()} state=up restarts=0$", t, re.M), t


def test_commands_need_a_running_gateway(make_gateway):
    gw = make_gateway(start=False)
    for cmd in (["status"], ["lockouts"], ["unlock", "someone"], ["reload"], ["stop"]):
        r = admin(gw, *cmd)
        assert r.returncode == EX_TEMPFAIL, (cmd, err(r))
        assert "cannot reach the gateway" in err(r), err(r)


def test_usage_errors(make_gateway):
    gw = make_gateway(start=False)
    for cmd in (["unlock"], ["unlock", "a", "b"], ["status", "extra"], ["reload", "--json"],
                ["unlock", "has space"]):
        r = admin(gw, *cmd)
        assert r.returncode == EX_USAGE, (cmd, err(r))


# ---------------------------------------------------------------- who may ask

def test_not_root_is_refused(make_gateway):
    """As nobody: the socket (0600 root) cannot be opened; and were it
    opened, the master asks the kernel who the peer is and refuses."""
    gw = make_gateway()
    nobody = nobody_ids()
    for cmd in (["status"], ["stop"], ["unlock", "alice"], ["lockouts", "--json"]):
        r = admin(gw, *cmd, user=nobody)
        assert r.returncode == EX_NOPERM, (cmd, r.returncode, err(r))
        assert "root" in err(r), err(r)
    assert gw.running()
    # Loosen the mode by hand: the master's own check still refuses.
    sock = gw.spool / "private" / "control"
    os.chmod(sock, 0o666)
    os.chmod(gw.spool / "private", 0o755)
    os.chmod(gw.spool, 0o755)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(nobody[1])
            os.setuid(nobody[0])
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(str(sock))
            # The master answers at once, before any request.
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            code = 0 if data == b"error 77 permission denied\n" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the master answered a client that is not root"
    gw.wait_for_log(r"control: connection refused: the peer is not root")
    assert gw.running() and admin(gw, "status").returncode == 0


# ---------------------------------------------------------------- lockouts and unlock

def test_lockouts_and_unlock(make_gateway, users):
    alice, bob = users["alice"], users["bob"]
    gw = make_gateway({"listener plain": PLAIN,
                       "protection": {"lockout_client_login_failures": 3, "lockout_time": 600,
                                      "lockout_client_failures": 5,
                                      "lockout_login_failures": 0, "delay_ms": 0,
                                      "cache_negative_ttl": 0}})
    r = admin(gw, "lockouts", "--json")
    assert r.returncode == 0 and json.loads(out(r)) == {"count": 0, "lockouts": []}, out(r)
    # alice from 127.0.0.2: three wrong passwords lock the pair.
    assert [login(gw, alice.name, f"wrong{i}", "127.0.0.2") for i in range(3)] == [535] * 3
    assert login(gw, alice.name, alice.password, "127.0.0.2") == 454
    # 127.0.0.3 tries five logins: the client is locked.
    assert [login(gw, f"nobody{i}", "x", "127.0.0.3") for i in range(5)] == [535] * 5
    assert login(gw, bob.name, bob.password, "127.0.0.3") == 454

    r = admin(gw, "lockouts", "--json")
    assert r.returncode == 0, err(r)
    doc = json.loads(out(r))
    got = {(l["scope"], l["client"], l["login"], l["failures"]) for l in doc["lockouts"]}
    assert got == {("client_login", "127.0.0.2", "alice", 3), ("client", "127.0.0.3", None, 5)}, doc
    assert doc["count"] == 2
    assert all(500 < l["remaining"] <= 600 and l["until"].endswith("Z") for l in doc["lockouts"])
    t = out(admin(gw, "lockouts"))
    assert re.search(r"^lockout scope=client_login client=127\.0\.0\.2 user=\"alice\" "
                     r"failures=3 until=\S+Z remaining=\d+s$", t, re.M), t
    assert re.search(r"^lockout scope=client client=127\.0\.0\.3 user=- failures=5 until=\S+Z "
                     r"remaining=\d+s$", t, re.M), t

    # Unlock the login: AUTH works again at once, from the same client.
    r = admin(gw, "unlock", alice.name)
    assert r.returncode == 0 and out(r).strip() == "unlocked=1", (out(r), err(r))
    gw.wait_for_log(r"auth: unlock by the admin lockouts=1 what=\"alice\"")
    assert login(gw, alice.name, alice.password, "127.0.0.2") == 235
    # Nothing left for alice: exit 1.
    r = admin(gw, "unlock", alice.name)
    assert r.returncode == 1 and "nothing is locked" in err(r), err(r)
    # By address.
    assert admin(gw, "unlock", "127.0.0.3").returncode == 0
    assert login(gw, bob.name, bob.password, "127.0.0.3") == 235
    r = admin(gw, "lockouts", "--json")
    assert json.loads(out(r))["lockouts"] == []


def test_unlock_hostile_login_is_escaped(make_gateway):
    """A login built to look like more fields stays one value, in the text
    and in the JSON."""
    gw = make_gateway({"listener plain": PLAIN,
                       "protection": {"lockout_client_login_failures": 2, "lockout_time": 600,
                                      "lockout_client_failures": 0,
                                      "lockout_login_failures": 0, "delay_ms": 0}})
    evil = 'x"_client=6.6.6.6_\\'
    assert [login(gw, evil, f"w{i}", "127.0.0.4") for i in range(2)] == [535, 535]
    doc = json.loads(out(admin(gw, "lockouts", "--json")))
    assert [l["login"] for l in doc["lockouts"]] == [evil]
    t = out(admin(gw, "lockouts"))
    # log_escape(): no '=' survives, so no second client= either.
    assert 'user="x\\"_client\\x3d6.6.6.6_\\\\"' in t, t
    assert t.count("client=") == 1, t
    # A plain client=<HOST> filter sees only the true client first.
    assert re.search(r"^lockout scope=client_login client=(\S+)", t, re.M).group(1) == \
        "127.0.0.4", t


# ---------------------------------------------------------------- reload and stop

def test_reload_and_stop(make_gateway):
    gw = make_gateway()
    r = admin(gw, "reload")
    assert r.returncode == 0 and out(r).strip() == "reloaded", (out(r), err(r))
    gw.wait_for_log(r"master\[\d+\] info: reload: generation=2 active")
    gw.wait_for_log(r"auth: reload source=file done")
    assert status_json(gw)["generation"] == 2
    # A broken file: refused with EX_CONFIG, the running configuration stays.
    good = gw.cfg_path.read_text()
    gw.cfg_path.write_text(good + "\n[server]\nworkers = many\n")
    r = admin(gw, "reload")
    assert r.returncode == EX_CONFIG, (r.returncode, err(r))
    assert "configuration has errors" in err(r) and "workers" in err(r), err(r)
    # The command checked the file itself; the master checks it again.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(gw.spool / "private" / "control"))
    s.sendall(b"reload\n")
    answer = s.makefile("rb").read().decode()
    s.close()
    assert re.fullmatch(r"error 78 the configuration has errors, the running one stays: "
                        r".*workers is already set.*\n", answer), answer
    gw.wait_for_log(r"reload refused: the running configuration stays")
    gw.cfg_path.write_text(good)
    assert status_json(gw)["generation"] == 2
    # stop returns once the gateway has gone.
    pid, kids = gw.pid, gw.children()
    r = admin(gw, "stop")
    assert r.returncode == 0 and "stopping" in out(r) and "stopped" in out(r), (out(r), err(r))
    assert gw.proc.wait(5) == 0
    assert not os.path.exists(gw.spool / "private" / "control")
    gw.wait_for_log(r"master\[\d+\] info: stopping \(authrelay stop\)")
    del pid, kids


# ---------------------------------------------------------------- the queue

def send(gw, sender, rcpts):
    c = SMTPConn.open(gw, "out")
    c.ehlo()
    qid = c.send_message(sender, rcpts, make_message(sender, rcpts[0])).queued_id()
    c.cmd("QUIT")
    c.close()
    return qid


def queue(gw, *args):
    return run_tool([gw.binary, "queue", "-c", gw.cfg_path, *args], timeout=30)


def listed(gw):
    r = queue(gw, "--json", "list")
    assert r.returncode == 0, err(r)
    return {m["id"]: m for m in json.loads(out(r))["messages"]}


def test_queue_bulk_summary_and_offline_list(make_gateway):
    # The harness's resolver answers nothing: every message stays deferred.
    gw = make_gateway({"queue": {"retry_min": "1h", "retry_max": "1h"}})
    m1 = send(gw, "spam@x.test", ["a@one.test"])
    m2 = send(gw, "SPAM@x.test", ["b@two.test"])
    m3 = send(gw, "good@y.test", ["c@one.test", "d@two.test"])
    m4 = send(gw, "good@y.test", ["e@three.test"])
    every = {m1, m2, m3, m4}
    wait_until(lambda: {i for i, m in listed(gw).items() if m["status"] == "deferred"} == every,
               30, "four deferred messages")
    msgs = listed(gw)
    assert msgs[m3]["sender"] == "good@y.test" and msgs[m3]["nrcpt"] == 2
    assert msgs[m3]["pending"] == 2 and msgs[m3]["next_attempt"].endswith("Z")
    # show --json: one message with its recipients.
    r = queue(gw, "--json", "show", m3)
    doc = json.loads(out(r))
    assert [x["address"] for x in doc["recipients"]] == ["c@one.test", "d@two.test"]
    assert {x["status"] for x in doc["recipients"]} == {"deferred"}

    # summary: messages per destination domain and age (qshape).
    r = queue(gw, "--json", "summary")
    s = json.loads(out(r))
    assert s["ages"] == [5, 10, 20, 40, 80, 160, 320, 640, 1280]
    assert s["total"]["messages"] == 4 and s["total"]["ages"][0] == 4
    assert {d["domain"]: d["messages"] for d in s["domains"]} == \
        {"one.test": 2, "two.test": 2, "three.test": 1}
    t = out(queue(gw, "summary")).splitlines()
    assert t[0].split() == ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280",
                            "1280+"], t
    assert t[1].split()[:3] == ["TOTAL", "4", "4"], t
    assert {l.split()[0] for l in t[2:]} == {"one.test", "two.test", "three.test"}

    # hold and release by domain.
    r = queue(gw, "hold", "-d", "ONE.test")
    assert r.returncode == 0 and out(r).strip() == "held=2", (out(r), err(r))
    assert {i for i, m in listed(gw).items() if m["status"] == "hold"} == {m1, m3}
    assert out(queue(gw, "release", "-d", "one.test")).strip() == "released=2"
    assert not any(m["status"] == "hold" for m in listed(gw).values())
    # flush by recipient.
    r = queue(gw, "flush", "-r", "e@three.test")
    assert r.returncode == 0 and out(r).strip() == "flushed=1", out(r)
    gw.wait_for_log(rf"id={m4} status=deferred .*attempts=2 .*to=\"<e@three.test>\"")
    # delete by sender (any case): m1 and m2.
    r = queue(gw, "delete", "-s", "spam@X.test")
    assert r.returncode == 0 and out(r).strip() == "deleted=2", out(r)
    wait_until(lambda: set(gw.incoming()) == {m3, m4}, 10, "m1 and m2 removed")
    # several IDs at once; then ALL.
    r = queue(gw, "hold", m3, m4)
    assert r.returncode == 0 and out(r).split() == [f"held", m3, "held", m4], out(r)
    assert queue(gw, "hold", "-d", "nowhere.test").stdout.strip() == b"held=0"
    gw.stop()

    # Stopped: list and summary read the spool.
    r = queue(gw, "list")
    assert r.returncode == 0, err(r)
    assert "not running" in err(r) and "read-only" in err(r), err(r)
    lines = out(r).splitlines()
    assert [l.split()[0] for l in lines] == sorted([m3, m4]), lines
    assert all(" status=hold " in l for l in lines), lines
    offline = json.loads(out(queue(gw, "--json", "list")))
    assert {m["id"]: m["status"] for m in offline["messages"]} == {m3: "hold", m4: "hold"}
    assert json.loads(out(queue(gw, "--json", "summary")))["total"]["messages"] == 2
    # The commands that change the queue still need the queue process.
    assert queue(gw, "delete", "ALL").returncode == EX_TEMPFAIL
    assert set(gw.incoming()) == {m3, m4}

    gw.start()
    r = queue(gw, "delete", "ALL")
    assert r.returncode == 0 and out(r).strip() == "deleted=2", out(r)
    wait_until(lambda: gw.incoming() == [], 10, "the queue to be empty")


def test_queue_usage_errors(make_gateway):
    gw = make_gateway(start=False)
    for args in (["delete"], ["delete", "-s"], ["delete", "-s", "a b"], ["hold", "not-an-id"],
                 ["--json", "delete", "ALL"], ["summary", "x"], ["delete", "-x", "y"]):
        r = queue(gw, *args)
        assert r.returncode == EX_USAGE, (args, r.returncode, err(r))


# ---------------------------------------------------------------- test-auth

def run_test_auth(gw, user, password, *opts):
    r = run_tool([gw.binary, "test-auth", "-c", gw.cfg_path, *opts, user], input=password + "\n")
    text = out(r) + err(r)
    assert len(password) < 4 or password not in text, text
    return r.returncode, out(r)


def test_test_auth_users_file(make_gateway, users):
    alice = users["alice"]
    gw = make_gateway(start=False)
    rc, t = run_test_auth(gw, alice.name, alice.password)
    assert rc == 0, t
    for want in [r"^checking \"alice\" with the password given, mechanism PLAIN; sources in "
                 r"the daemon's order: file$",
                 r"^source file \(users file\):$",
                 rf"^  users file \S+: {len(users)} users$",
                 r"^  entry \"alice\" at line 1: hash \$6\$$",
                 r"^  -> ok reason=ok$",
                 r"^result: ok reason=ok \(SMTP 235 2\.7\.0\)$"]:
        assert re.search(want, t, re.M), f"/{want}/ not in:\n{t}"
    rc, t = run_test_auth(gw, alice.name, "wrong", "-m", "LOGIN")
    assert rc == 1 and "result: fail reason=bad_password (SMTP 535 5.7.8)" in t, t
    rc, t = run_test_auth(gw, "nobody-here", "x")
    assert rc == 1 and "no entry for \"nobody-here\"" in t, t
    assert "result: fail reason=unknown_user" in t, t
    rc, t = run_test_auth(gw, alice.name, "x", "-m", "DIGEST-MD5")
    assert rc == EX_USAGE


def test_test_auth_cram_md5(make_gateway, users):
    """The password typed is turned into a CRAM-MD5 response to a challenge
    the command makes, as a client would: the right one passes, as the
    same login does through the daemon."""
    clara, alice = users["clara"], users["alice"]
    gw = make_gateway({"listener sub": {"cram_md5": "yes"}})
    s = smtplib_client(gw)
    smtplib_auth(s, "CRAM-MD5", clara.name, clara.password)
    s.quit()
    rc, t = run_test_auth(gw, clara.name, clara.password, "-m", "CRAM-MD5")
    assert rc == 0, t
    assert re.search(r"^CRAM-MD5 challenge <\d+\.\d+@mx\.test\.example>: ", t, re.M), t
    assert "the entry holds the cleartext it needs" in t, t
    assert "result: ok reason=ok" in t, t
    rc, t = run_test_auth(gw, clara.name, "not-her-password", "-m", "cram-md5")
    assert rc == 1 and "result: fail reason=bad_password" in t, t
    # A hashed entry cannot serve CRAM-MD5, in the daemon or here.
    rc, t = run_test_auth(gw, alice.name, alice.password, "-m", "CRAM-MD5")
    assert rc == 1 and "result: fail reason=mech_unavailable" in t, t
    s = smtplib_client(gw)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtplib_auth(s, "CRAM-MD5", alice.name, alice.password)
    s.close()


def test_test_auth_without_sources(make_gateway):
    gw = make_gateway({"users-file": None, "listener sub": None, "listener subs": None},
                      start=False)
    r = run_tool([gw.binary, "test-auth", "-c", gw.cfg_path, "someone"], input="x\n")
    assert r.returncode == EX_CONFIG and "configures no auth source" in err(r), err(r)
