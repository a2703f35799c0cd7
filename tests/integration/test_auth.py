# SPDX-License-Identifier: ISC
"""SMTP AUTH (RFC 4954) with PLAIN, LOGIN and CRAM-MD5 on the submission
listeners: raw exchanges, smtplib, swaks, curl, msmtp; failure limit and
delay; reload of the users file; temporary failure of the auth process."""

import base64
import hmac
import os
import re
import signal
import smtplib
import time

import pytest

from harness import (CLIENT_HELO, HOST, SMTPConn, auth_code, b64, expect_auth_lockout, hash_password,
                     make_message, msgid_of, new_msgid, plain_ir, run_tool, smtplib_auth, smtplib_client,
                     submission_conn, wait_until)

USERNAME_PROMPT = "VXNlcm5hbWU6"   # "Username:"
PASSWORD_PROMPT = "UGFzc3dvcmQ6"   # "Password:"


@pytest.fixture
def alice(users):
    return users["alice"]


# ---------------------------------------------------------------- PLAIN

@pytest.mark.parametrize("name", ["alice", "bob", "carol", "dave", "erin", "frank", "clara",
                                  "gina@example.test"])
def test_plain_every_hash_format(gw, users, name):
    u = users[name]
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN " + plain_ir(u.name, u.password)).check(235, "2.7.0",
                                                              "Authentication successful")


@pytest.mark.parametrize("name", ["alice", "carol", "dave", "frank", "clara"])
def test_plain_wrong_password_every_format(gw, users, name):
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN " + plain_ir(name, users[name].password + "x")).check(535, "5.7.8")


def test_plain_unknown_user_same_as_wrong_password(gw, alice):
    c = submission_conn(gw)
    wrong = c.auth_plain("alice", "not-it")
    unknown = c.auth_plain("no-such-user", "not-it")
    wrong.check(535, "5.7.8")
    unknown.check(535, "5.7.8")
    assert wrong.lines == unknown.lines, "the reply tells unknown users from bad passwords"


def test_plain_without_initial_response(gw, alice):
    c = submission_conn(gw)
    r = c.cmd("AUTH PLAIN")
    assert r.raw == [b"334 "], f"expected an empty challenge '334 ', got {r.raw!r}"
    c.cmd(plain_ir(alice.name, alice.password)).check(235, "2.7.0")


def test_plain_response_pipelined_with_command(gw, alice):
    """A client that sends its response right behind "AUTH PLAIN" (before the
    334 arrives) must still be understood: the response answers the 334."""
    c = submission_conn(gw)
    c.send(f"AUTH PLAIN\r\n{plain_ir(alice.name, alice.password)}\r\n")
    assert c.read_reply().raw == [b"334 "]
    c.read_reply().check(235, "2.7.0")


def test_null_sender_after_auth(gw, alice):
    # RFC 6409 3.2: a null return path is not by itself a reason to reject
    c = submission_conn(gw)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<>").check(250, "2.1.0")


def test_plain_mechanism_name_case_insensitive(gw, alice):
    c = submission_conn(gw)
    c.cmd("auth plain " + plain_ir(alice.name, alice.password)).check(235, "2.7.0")


def test_plain_authzid_equal_to_authcid(gw, alice):
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN " + plain_ir(alice.name, alice.password, authzid="alice")).check(235, "2.7.0")


@pytest.mark.parametrize("payload", [
    "bob\0alice\0{pw}",         # authzid differs from authcid: no proxy authorisation
    "alice\0{pw}",              # two fields
    "\0alice\0{pw}\0",          # four fields
    "\0alice\0",                # empty password
    "\0\0{pw}",                 # empty authcid
])
def test_plain_malformed_message(gw, alice, payload):
    c = submission_conn(gw)
    r = c.cmd("AUTH PLAIN " + b64(payload.format(pw=alice.password)))
    r.check(535, "5.7.8")


def test_plain_empty_initial_response(gw):
    # "=" is a present-but-empty response (RFC 4954 4); empty PLAIN is malformed
    submission_conn(gw).cmd("AUTH PLAIN =").check(535, "5.7.8")


def test_plain_pipelined_after_initial_response(gw, alice):
    """RFC 4954 4: commands may follow AUTH PLAIN with an initial response in
    one pipelined group."""
    c = submission_conn(gw)
    c.send(f"AUTH PLAIN {plain_ir(alice.name, alice.password)}\r\n"
           "MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@other.test>\r\n")
    c.read_reply().check(235, "2.7.0")
    c.read_reply().check(250, "2.1.0")
    c.read_reply().check(250, "2.1.5")


# ---------------------------------------------------------------- LOGIN

def test_login_two_prompts(gw, alice):
    c = submission_conn(gw)
    r = c.cmd("AUTH LOGIN")
    assert r.raw == [f"334 {USERNAME_PROMPT}".encode()], r.raw
    r = c.cmd(b64(alice.name))
    assert r.raw == [f"334 {PASSWORD_PROMPT}".encode()], r.raw
    c.cmd(b64(alice.password)).check(235, "2.7.0")


def test_login_with_initial_username(gw, alice):
    c = submission_conn(gw)
    r = c.cmd("AUTH LOGIN " + b64(alice.name))
    assert r.raw == [f"334 {PASSWORD_PROMPT}".encode()], r.raw
    c.cmd(b64(alice.password)).check(235, "2.7.0")


def test_login_wrong_password(gw, alice):
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(b64(alice.name)).check(334)
    c.cmd(b64("wrong")).check(535, "5.7.8")


# ---------------------------------------------------------------- clients

@pytest.mark.parametrize("listener", ["sub", "subs"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial", [True, False], ids=["ir", "no-ir"])
def test_smtplib_auth_ok(gw, alice, listener, mech, initial):
    with smtplib_client(gw, listener) as s:
        code, resp = smtplib_auth(s, mech, alice.name, alice.password, initial)
        assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib_auth_wrong(gw, alice, mech):
    with smtplib_client(gw, "sub") as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            smtplib_auth(s, mech, alice.name, "wrong-password")
        assert ei.value.smtp_code == 535 and ei.value.smtp_error.startswith(b"5.7.8")


def test_smtplib_login_picks_a_mechanism(gw, users):
    bob = users["bob"]   # space and colon in the password
    with smtplib_client(gw, "sub") as s:
        code, _ = s.login(bob.name, bob.password)
        assert code == 235


def swaks(gw, listener, user, password, mech, msgid):
    tls = ["--tlsc"] if gw.is_implicit(listener) else ["--tls"]
    return run_tool(["swaks", "--server", HOST, "--port", str(gw.port(listener)),
                     "--helo", CLIENT_HELO, *tls, "--auth", mech, "--auth-user", user,
                     "--auth-password", password, "--from", "alice@example.test",
                     "--to", "rcpt@other.test", "--header", f"Message-Id: {msgid}",
                     "--timeout", "30"])


@pytest.mark.parametrize("listener", ["sub", "subs"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth_ok(gw, alice, listener, mech):
    mid = new_msgid()
    r = swaks(gw, listener, alice.name, alice.password, mech, mid)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert re.search(r"^<[~*\- ]+ 235 2\.7\.0", out, re.M), out
    m = re.search(r"^<[~*\- ]+ 250 2\.0\.0 Ok: queued as (\w+)", out, re.M)
    assert m, out
    assert mid.encode() in gw.spool_file(m.group(1)).message


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth_wrong(gw, alice, mech):
    r = swaks(gw, "sub", alice.name, "wrong-password", mech, "<x@y>")
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 28, f"swaks exit {r.returncode}\n{out}"   # 28: AUTH failed
    assert re.search(r"^<[~*\- ]+ 535 5\.7\.8", out, re.M), out


def curl(gw, listener, user, password, msgfile, *extra):
    scheme = "smtps" if gw.is_implicit(listener) else "smtp"
    return run_tool(["curl", "-sS", "-v", "-k", "--ssl-reqd", "--max-time", "30",
                     "--url", f"{scheme}://{HOST}:{gw.port(listener)}/{CLIENT_HELO}",
                     "--mail-from", "alice@example.test", "--mail-rcpt", "rcpt@other.test",
                     "--user", f"{user}:{password}", "-T", str(msgfile), *extra])


@pytest.mark.parametrize("listener", ["sub", "subs"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl_auth_ok(gw, alice, listener, mech, tmp_path):
    msg = make_message("alice@example.test", "rcpt@other.test")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg.encode())
    r = curl(gw, listener, alice.name, alice.password, f, "--login-options", f"AUTH={mech}")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    assert re.search(r"^< 235 2\.7\.0", err, re.M), err
    m = re.search(r"^< 250 2\.0\.0 Ok: queued as (\w+)", err, re.M)
    assert m, err
    assert msgid_of(msg).encode() in gw.spool_file(m.group(1)).message


def test_curl_auth_wrong(gw, alice, tmp_path):
    f = tmp_path / "msg.eml"
    f.write_bytes(make_message().encode())
    r = curl(gw, "sub", alice.name, "wrong-password", f, "--login-options", "AUTH=PLAIN")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 67, f"curl exit {r.returncode}\n{err}"   # 67: login denied
    assert re.search(r"^< 535 5\.7\.8", err, re.M), err


def test_msmtp_submission(gw, alice, tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text(alice.password)
    msg = make_message("alice@example.test", "rcpt@other.test")
    r = run_tool(["msmtp", f"--host={HOST}", f"--port={gw.port('sub')}",
                  f"--domain={CLIENT_HELO}", "--tls=on", "--tls-starttls=on",
                  "--tls-certcheck=off", "--auth=plain", f"--user={alice.name}",
                  f"--passwordeval=cat {pwfile}", "--from=alice@example.test",
                  "rcpt@other.test"], input=msg.replace("\r\n", "\n"))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    sp = gw.find_spool_by_msgid(msgid_of(msg))
    assert sp is not None and sp.get("auth") == "alice"


# ---------------------------------------------------------------- protocol errors

@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_cancel_with_star(gw, mech):
    c = submission_conn(gw)
    c.cmd(f"AUTH {mech}").check(334)
    c.cmd("*").check(501, "5.7.0")
    c.cmd("NOOP").check(250, "2.0.0")


def test_cancel_at_login_password_prompt(gw):
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(b64("alice")).check(334)
    c.cmd("*").check(501, "5.7.0")


@pytest.mark.parametrize("ir", ["!!!!", "=AAA", "AAA=BBB", "YW=x", "YWxp*2U="])
def test_bad_base64_initial_response(gw, ir):
    submission_conn(gw).cmd(f"AUTH PLAIN {ir}").check(501, "5.5.2")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_bad_base64_continuation(gw, mech):
    c = submission_conn(gw)
    c.cmd(f"AUTH {mech}").check(334)
    c.cmd("%%%not-base64%%%").check(501, "5.5.2")
    c.cmd("NOOP").check(250, "2.0.0")


def test_oversized_auth_response_line(gw):
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN").check(334)
    c.cmd("A" * 13000).check(500, "5.5.6")


def test_auth_response_within_limit_is_read(gw, alice):
    """A response longer than a command line but under max_auth_line_length
    (12288) is read and decoded, not refused as too long."""
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN").check(334)
    c.cmd(b64(f"\0{alice.name}\0" + "p" * 5000)).check(535, "5.7.8")


def test_oversized_auth_command_line(gw):
    r = submission_conn(gw).cmd("AUTH PLAIN " + "A" * 13000)
    assert r.code == 500 and r.enh in ("5.5.2", "5.5.6"), str(r)


def test_auth_line_limit_override(make_gateway):
    gw = make_gateway({"listener sub": {"max_auth_line_length": 1000}})
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN").check(334)
    c.cmd("A" * 800).check(535, "5.7.8")      # read and decoded: 600 NULs, malformed PLAIN
    c.cmd("AUTH PLAIN").check(334)
    c.cmd("A" * 1500).check(500, "5.5.6")


def test_unknown_mechanism(gw):
    c = submission_conn(gw)
    c.cmd("AUTH FOOBAR").check(504, "5.5.4")
    c.cmd("AUTH DIGEST-MD5").check(504, "5.5.4")
    c.cmd("NOOP").check(250, "2.0.0")


def test_auth_without_mechanism(gw):
    r = submission_conn(gw).cmd("AUTH")
    assert r.code == 501, str(r)


def test_second_auth_after_success(gw, alice):
    c = submission_conn(gw)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    c.auth_plain(alice.name, alice.password).check(503, "5.5.1")


def test_auth_during_transaction(gw, alice):
    c = submission_conn(gw)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    c.cmd("AUTH LOGIN").check(503, "5.5.1")


def test_auth_before_ehlo(gw, alice):
    c = submission_conn(gw, ehlo=False)
    c.auth_plain(alice.name, alice.password).check(503, "5.5.1")


def test_auth_after_helo(gw, alice):
    c = submission_conn(gw, ehlo=False)
    c.cmd(f"HELO {CLIENT_HELO}").check(250)
    c.auth_plain(alice.name, alice.password).check(503, "5.5.1")


@pytest.mark.parametrize("listener", ["in", "out"])
def test_auth_on_relay_listeners(gw, alice, listener):
    c = SMTPConn.open(gw, listener)
    c.ehlo()
    c.auth_plain(alice.name, alice.password).check(502, "5.5.1")


def test_mail_before_auth_on_submission(gw):
    c = submission_conn(gw)
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")
    c.cmd("MAIL FROM:<alice@example.test> AUTH=<>").check(530, "5.7.0")


def test_auth_parameter_after_auth(gw, alice):
    c = submission_conn(gw)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test> AUTH=alice@example.test").check(250, "2.1.0")
    c.cmd("RCPT TO:<x@other.test>").check(250, "2.1.5")


def test_authenticated_session_can_send(gw, alice):
    c = submission_conn(gw)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    msg = make_message("alice@example.test", "x@other.test")
    sp = gw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    assert sp.get("auth") == "alice"


# ---------------------------------------------------------------- failure limit and delay

def test_failure_delay_and_limit(make_gateway, alice):
    delay = 0.5
    gw = make_gateway({"limits": {"auth_failure_delay_ms": int(delay * 1000)}})
    c = submission_conn(gw)
    for i in range(3):
        t0 = time.monotonic()
        r = c.auth_plain(alice.name, f"wrong-{i}")
        elapsed = time.monotonic() - t0
        assert elapsed >= delay * 0.95, f"failure {i + 1} answered after {elapsed:.3f}s < {delay}s"
        assert elapsed < delay + 5, f"failure {i + 1} answered after {elapsed:.3f}s"
        if i < 2:
            r.check(535, "5.7.8")
    expect_auth_lockout(c, r)


def test_unknown_user_is_delayed_too(make_gateway):
    gw = make_gateway({"limits": {"auth_failure_delay_ms": 500}})
    c = submission_conn(gw)
    t0 = time.monotonic()
    c.auth_plain("no-such-user", "whatever").check(535, "5.7.8")
    assert time.monotonic() - t0 >= 0.475


def test_success_is_not_delayed(make_gateway, alice):
    gw = make_gateway({"limits": {"auth_failure_delay_ms": 3000}})
    c = submission_conn(gw)
    t0 = time.monotonic()
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    assert time.monotonic() - t0 < 2.5


def test_two_failures_then_success(gw, alice):
    c = submission_conn(gw)
    c.auth_plain(alice.name, "wrong-1").check(535, "5.7.8")
    c.auth_plain(alice.name, "wrong-2").check(535, "5.7.8")
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")


# ---------------------------------------------------------------- CRAM-MD5

def cram_response(user, secret, challenge_b64):
    challenge = base64.b64decode(challenge_b64, validate=True)
    return b64(f"{user} " + hmac.new(secret.encode(), challenge, "md5").hexdigest())


@pytest.fixture(scope="module")
def cramgw(module_gateway):
    return module_gateway({"listener sub": {"cram_md5": "yes"}})


def test_cram_md5_advertised_and_works(cramgw, users):
    clara = users["clara"]
    c = submission_conn(cramgw)
    assert "CRAM-MD5" in c.ehlo().keywords()["AUTH"]
    r = c.cmd("AUTH CRAM-MD5")
    assert r.code == 334 and len(r.lines) == 1, str(r)
    challenge = base64.b64decode(r.lines[0], validate=True)
    assert re.fullmatch(rb"<[^<>\s@]+@[^<>\s@]+>", challenge), challenge   # RFC 2195 msg-id form
    c.cmd(cram_response(clara.name, clara.password, r.lines[0])).check(235, "2.7.0")


def test_cram_md5_challenges_differ(cramgw):
    seen = set()
    for _ in range(3):
        c = submission_conn(cramgw)
        r = c.cmd("AUTH CRAM-MD5").check(334)
        seen.add(r.lines[0])
    assert len(seen) == 3, seen


def test_cram_md5_wrong_digest(cramgw, users):
    c = submission_conn(cramgw)
    r = c.cmd("AUTH CRAM-MD5").check(334)
    c.cmd(cram_response("clara", "not-the-secret", r.lines[0])).check(535, "5.7.8")


def test_cram_md5_for_hashed_user_fails(cramgw, users):
    alice = users["alice"]
    c = submission_conn(cramgw)
    r = c.cmd("AUTH CRAM-MD5").check(334)
    c.cmd(cram_response(alice.name, alice.password, r.lines[0])).check(535, "5.7.8")


def test_cram_md5_initial_response_refused(cramgw):
    # server-first mechanism (RFC 4954 4)
    submission_conn(cramgw).cmd("AUTH CRAM-MD5 " + b64("clara 0123")).check(501, "5.7.0")


def test_cram_md5_with_smtplib(cramgw, users):
    clara = users["clara"]
    with smtplib_client(cramgw, "sub") as s:
        code, _ = smtplib_auth(s, "CRAM-MD5", clara.name, clara.password)
        assert code == 235


def test_cram_md5_not_offered_when_disabled(gw):
    # default gw has a {CLEARTEXT} user but cram_md5 = no
    c = submission_conn(gw)
    assert "CRAM-MD5" not in c.ehlo().keywords()["AUTH"]
    c.cmd("AUTH CRAM-MD5").check(504, "5.5.4")


def test_cram_md5_not_offered_without_cleartext_users(make_gateway, users):
    hashed = {n: u.hash for n, u in users.items() if u.scheme != "cleartext"}
    gw = make_gateway({"listener sub": {"cram_md5": "yes"}}, users=hashed)
    c = submission_conn(gw)
    assert "CRAM-MD5" not in c.ehlo().keywords()["AUTH"]
    c.cmd("AUTH CRAM-MD5").check(504, "5.5.4")


# ---------------------------------------------------------------- legacy advert

def test_legacy_auth_advertisement(make_gateway):
    gw = make_gateway({"listener sub": {"auth_legacy_advertise": "yes"}})
    r = submission_conn(gw, ehlo=False).ehlo()
    legacy = [l for l in r.lines[1:] if l.upper().startswith("AUTH=")]
    assert len(legacy) == 1, str(r)
    assert {"PLAIN", "LOGIN"} <= set(legacy[0][5:].split()), str(r)
    assert {"PLAIN", "LOGIN"} <= set(r.keywords()["AUTH"]), str(r)


def test_no_legacy_advertisement_by_default(gw):
    r = submission_conn(gw, ehlo=False).ehlo()
    assert not [l for l in r.lines if l.upper().startswith("AUTH=")], str(r)


# ---------------------------------------------------------------- reload and back end

def test_sighup_reloads_users_file(make_gateway, users):
    gw = make_gateway()
    zoe_pw = "zoe-New-Secret-9"
    assert auth_code(gw, "zoe", zoe_pw) == 535
    alice = users["alice"]
    assert auth_code(gw, alice.name, alice.password) == 235
    new = {n: u.hash for n, u in users.items() if n != "alice"}
    new["zoe"] = hash_password(zoe_pw, "sha512-crypt")
    gw.write_users(new)
    gw.hup()
    wait_until(lambda: auth_code(gw, "zoe", zoe_pw) == 235, 20, "zoe to authenticate after SIGHUP")
    assert auth_code(gw, alice.name, alice.password) == 535, "removed user still authenticates"
    assert gw.running(), "SIGHUP stopped the daemon"


def test_stalled_auth_process_gives_454(make_gateway, alice):
    gw = make_gateway({"auth": {"request_timeout": 2}})
    assert auth_code(gw, alice.name, alice.password) == 235
    apid = gw.auth_pid()
    c = submission_conn(gw)
    os.kill(apid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = c.auth_plain(alice.name, alice.password)
        elapsed = time.monotonic() - t0
    finally:
        os.kill(apid, signal.SIGCONT)
    r.check(454, "4.7.0")
    assert elapsed < 15, f"454 after {elapsed:.1f}s with request_timeout = 2"
    # the session survives a temporary failure
    c.cmd("NOOP").check(250, "2.0.0")
    wait_until(lambda: auth_code(gw, alice.name, alice.password) == 235, 20,
               "authentication to work again after SIGCONT")
