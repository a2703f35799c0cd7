# SPDX-License-Identifier: ISC
"""
test_forward.py - the smtp-forward auth source ([smtp-forward])
against real upstream servers the fixture starts on loopback ports:
Postfix with Dovecot SASL (plain, AUTH only after STARTTLS, implicit TLS,
LOGIN only, a 421 greeting) and Dovecot's own submission server. The one
stub is a port that accepts connections and never answers.

Covers: right and wrong password on every kind of upstream; an upstream
offering only LOGIN; one requiring STARTTLS (verified, wrong name, unknown
CA, not verified); upstream down (454); an upstream that never answers (454
after the timeout, while other logins go on, then through the second
upstream); a 421 greeting; failover to the second upstream and the health
memory; credentials with UTF-8, spaces, quotes, ':' and '\\'; the bound on
sessions and the queue; pre-connected sessions; check-config refusing an
upstream that is one of our own listeners, and bad settings; a loop seen at
run time (an upstream greeting with our own banner). No password reaches a
gateway log.
"""

import os
import re
import shutil
import threading
import time

import pytest

import harness
import mta_fixture
from mta_fixture import SPECIAL_LOGIN, SPECIAL_PASSWORD, UPSTREAM_NAME, UPSTREAM_USERS

pytestmark = pytest.mark.skipif(mta_fixture.available() is not None,
                                reason=f"upstream MTAs missing: {mta_fixture.available()}")

ALICE, ALICE_PW = "fwd-alice", UPSTREAM_USERS["fwd-alice"]
BOB, BOB_PW = "fwd-bob@example.test", UPSTREAM_USERS["fwd-bob@example.test"]


@pytest.fixture(scope="module")
def up(base_dir):
    u = mta_fixture.Upstreams(base_dir).start()
    yield u
    u.stop()


@pytest.fixture
def fwd_gateway(make_gateway, up, request):
    """fwd_gateway(upstreams, **settings) -> a started gateway whose
    [smtp-forward] names the upstreams (names from up.ports, or host:port).
    The users file stays (standard users); upstream users are unknown there,
    so their logins reach the forward source. At teardown no upstream
    password may be in its log."""
    made = []

    def make(upstreams, start=True, **settings):
        sect = {"upstreams": " ".join(up.addr(u) if u in up.ports else u for u in upstreams),
                "tls": "none", "connect_timeout": 3, "timeout": 5}
        sect.update(settings)
        # No auth cache: each login must reach the source under test.
        gw = make_gateway({"smtp-forward": sect, "protection": {"cache_size": 0}},
                          start=start)
        made.append(gw)
        return gw

    yield make
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        up.dump_logs(20)
    for gw in made:
        gw.assert_no_secrets(mta_fixture.upstream_secrets())


def section_line(gw, section: str, key: str) -> int:
    """1-based line of key in [section] of the gateway's config file."""
    inside = False
    for i, line in enumerate(gw.cfg_path.read_text().split("\n"), 1):
        if line.startswith("["):
            inside = line.strip() == f"[{section}]"
        elif inside and re.match(rf"{re.escape(key)}\s*=", line):
            return i
    raise AssertionError(f"{key} not in [{section}] of {gw.cfg_path}")


def tls_settings(up, **kw):
    s = {"tls": "starttls", "ca_file": str(up.cert), "tls_name": UPSTREAM_NAME}
    s.update(kw)
    return s


def login(gw, user, password, mech="PLAIN") -> harness.Reply:
    """AUTH on a fresh submission session; the reply."""
    c = harness.submission_conn(gw)
    try:
        if mech == "PLAIN":
            r = c.auth_plain(user, password)
        else:
            c.cmd("AUTH LOGIN").check(334)
            c.cmd(harness.b64(user)).check(334)
            r = c.cmd(harness.b64(password))
        try:
            c.cmd("QUIT")
        except (harness.ConnectionClosed, OSError, TimeoutError):
            pass
        return r
    finally:
        c.close()


def fwd_line(gw, since, result, reason=None, timeout=10):
    """The forward source's log line for a verification."""
    pat = rf"auth forward upstream=(\S+) mech=\S+ result={result}"
    if reason is not None:
        pat += rf" reason={reason}"
    return gw.wait_for_log(pat + r".* ms=\d+", since, timeout)


def test_test_auth_through_forwarding(fwd_gateway, up, bin_path):
    """test-auth asks the users file, then the upstream, as the daemon does,
    and shows the dialogue with the credentials masked."""
    gw = fwd_gateway(["plain"], start=False)
    r = harness.run_tool([bin_path, "test-auth", "-c", gw.cfg_path, ALICE], input=ALICE_PW + "\n")
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    for want in [r"sources in the daemon's order: file forward$",
                 r"^  -> fail reason=unknown_user$",
                 r"^source forward \(SMTP forwarding\):$",
                 r"C: AUTH PLAIN \*+",
                 r"^  -> ok reason=ok$",
                 r"^result: ok reason=ok \(SMTP 235 2\.7\.0\)$"]:
        assert re.search(want, out, re.M), f"/{want}/ not in:\n{out}"
    assert ALICE_PW not in out + r.stderr.decode()
    r = harness.run_tool([bin_path, "test-auth", "-c", gw.cfg_path, ALICE], input="wrong\n")
    out = r.stdout.decode()
    assert r.returncode == 1 and "result: fail reason=upstream_rejected" in out, out
    # CRAM-MD5 cannot be forwarded: the upstream would make its own challenge.
    r = harness.run_tool([bin_path, "test-auth", "-c", gw.cfg_path, "-m", "CRAM-MD5", ALICE],
                         input=ALICE_PW + "\n")
    assert r.returncode == 1 and "reason=mech_unavailable" in r.stdout.decode()


@pytest.mark.parametrize("kind", ["postfix", "postfix-starttls", "postfix-implicit", "dovecot"])
def test_right_and_wrong_password(fwd_gateway, up, kind):
    settings = {
        "postfix": ({}, "plain"),
        "postfix-starttls": (tls_settings(up), "plain"),
        "postfix-implicit": (tls_settings(up, tls="implicit"), "implicit"),
        "dovecot": ({}, "dovecot"),
    }[kind]
    gw = fwd_gateway([settings[1]], **settings[0])
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(235, "2.7.0")
    m = fwd_line(gw, mark, "ok", "ok")
    assert m.group(1) == up.addr(settings[1])
    line = gw.log_text()[m.start():].split("\n", 1)[0]
    assert "reply=235" in line
    if kind != "postfix" and kind != "dovecot":
        assert re.search(r"tls=TLSv1\.[23]", line), line
    gw.wait_for_log(r'auth client=\S+ listener=\S+ result=ok reason=ok source=forward '
                    r'.*mech=PLAIN user="fwd-alice"', mark)

    mark = gw.log_mark()
    login(gw, BOB, BOB_PW + "x").check(535, "5.7.8")
    line = fwd_line(gw, mark, "fail", "upstream_rejected")
    assert "reply=535" in gw.log_text()[line.start():].split("\n", 1)[0]
    login(gw, BOB, BOB_PW, mech="LOGIN").check(235)


def test_local_users_first(fwd_gateway, up, users):
    """A users-file user never reaches the upstream; an unknown one does."""
    gw = fwd_gateway(["plain"])
    mark = gw.log_mark()
    alice = users["alice"]
    login(gw, alice.name, alice.password).check(235)
    gw.wait_for_log(r'result=ok reason=ok source=file .*user="alice"', mark)
    assert "auth forward" not in gw.log_text()[mark:]


def test_login_only_upstream(fwd_gateway, up):
    gw = fwd_gateway(["login_only"])
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(235)
    gw.wait_for_log(r"auth forward upstream=\S+ mech=LOGIN result=ok", mark)
    login(gw, ALICE, "nope").check(535, "5.7.8")
    # PLAIN only: nothing in common, a temporary failure, never 535.
    gw2 = fwd_gateway(["login_only"], mechanisms="PLAIN")
    mark = gw2.log_mark()
    login(gw2, ALICE, ALICE_PW).check(454, "4.7.0")
    fwd_line(gw2, mark, "tempfail", "upstream_no_auth")
    gw2.wait_for_log(r"no common mechanism \(upstream offers LOGIN\)", mark)


def test_mechanism_preference(fwd_gateway, up):
    gw = fwd_gateway(["plain"], mechanisms="LOGIN PLAIN")
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(235)
    gw.wait_for_log(r"auth forward upstream=\S+ mech=LOGIN result=ok", mark)


@pytest.mark.parametrize("case,settings,code,reason", [
    ("plaintext", {"tls": "none"}, 454, "upstream_no_auth"),
    ("verified", {}, 235, "ok"),
    ("wrong_name", {"tls_name": "other.test.example"}, 454, "upstream_tls"),
    ("unknown_ca", {"ca_file": None}, 454, "upstream_tls"),
    ("not_verified", {"ca_file": None, "tls_verify": "no", "tls_name": None}, 235, "ok"),
])
def test_upstream_requiring_starttls(fwd_gateway, up, case, settings, code, reason):
    s = tls_settings(up)
    for k, v in settings.items():
        if v is None:
            s.pop(k, None)
        else:
            s[k] = v
    gw = fwd_gateway(["tls_only"], **s)
    mark = gw.log_mark()
    r = login(gw, ALICE, ALICE_PW)
    r.check(code, "2.7.0" if code == 235 else "4.7.0")
    fwd_line(gw, mark, "ok" if code == 235 else "tempfail", reason)
    if reason == "upstream_tls":
        gw.wait_for_log(r"certificate", mark)


def test_upstream_down(fwd_gateway, up):
    gw = fwd_gateway(["refused"])
    mark = gw.log_mark()
    t0 = time.monotonic()
    login(gw, ALICE, ALICE_PW).check(454, "4.7.0")
    assert time.monotonic() - t0 < 3
    fwd_line(gw, mark, "tempfail", "upstream_unavailable")
    gw.wait_for_log(rf"upstream={re.escape(up.addr('refused'))} .*marked down", mark)
    # Still down (and remembered): 454 again, never 535.
    login(gw, ALICE, ALICE_PW).check(454, "4.7.0")


def test_upstream_never_answers(fwd_gateway, up, users):
    gw = fwd_gateway(["silent", "plain"], timeout=2, connect_timeout=2)
    mark = gw.log_mark()
    result = {}

    def slow_login():
        t0 = time.monotonic()
        result["reply"] = login(gw, ALICE, ALICE_PW)
        result["secs"] = time.monotonic() - t0

    th = threading.Thread(target=slow_login)
    th.start()
    gw.wait_for_log(rf"forward upstream={re.escape(up.addr('silent'))} .*connecting", mark)
    # Meanwhile the auth process keeps serving: a users-file login at once.
    t0 = time.monotonic()
    login(gw, users["bob"].name, users["bob"].password).check(235)
    assert time.monotonic() - t0 < 1.5
    th.join(30)
    assert not th.is_alive()
    result["reply"].check(454, "4.7.0")
    assert result["secs"] >= 1.8, result
    fwd_line(gw, mark, "tempfail", "upstream_timeout")
    # The silent upstream still accepts and says nothing; logins now go
    # through the second upstream without waiting on it.
    for user, pw in ((ALICE, ALICE_PW), (BOB, BOB_PW)):
        mark = gw.log_mark()
        t0 = time.monotonic()
        login(gw, user, pw).check(235)
        assert time.monotonic() - t0 < 1.5
        assert fwd_line(gw, mark, "ok").group(1) == up.addr("plain")


def test_421_greeting(fwd_gateway, up):
    gw = fwd_gateway(["greet421"])
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(454, "4.7.0")
    fwd_line(gw, mark, "tempfail", "upstream_unavailable")
    gw.wait_for_log(r"greeting 421 4\.3\.2", mark)
    # With a second upstream the login goes on there.
    gw2 = fwd_gateway(["greet421", "dovecot"])
    mark = gw2.log_mark()
    login(gw2, ALICE, ALICE_PW).check(235)
    assert fwd_line(gw2, mark, "ok").group(1) == up.addr("dovecot")


def test_failover_and_health_memory(fwd_gateway, up):
    gw = fwd_gateway(["refused", "plain"], failure_memory=60)
    mark = gw.log_mark()
    for i in range(3):
        login(gw, ALICE, ALICE_PW).check(235)
    text = gw.log_text()[mark:]
    assert len(re.findall(r"auth forward upstream=\S+ mech=PLAIN result=ok", text)) == 3
    assert all(u == up.addr("plain") for u in re.findall(
        r"auth forward upstream=(\S+) mech=\S+ result=ok", text))
    # The refused upstream was tried once, then skipped.
    refused = re.escape(up.addr("refused"))
    assert len(re.findall(rf"upstream={refused} .*marked down", text)) == 1, text
    assert len(re.findall(rf"upstream={refused} .*connect: Connection refused", text)) == 1
    # After a reload the memory is gone: tried (and failed over) again.
    mark = gw.log_mark()
    gw.hup()
    gw.wait_for_log(r"reload source=forward done", mark)
    login(gw, ALICE, ALICE_PW).check(235)
    gw.wait_for_log(rf"upstream={refused} .*marked down", mark)


@pytest.mark.parametrize("upstream", ["plain", "login_only", "dovecot"])
def test_special_characters(fwd_gateway, up, upstream):
    gw = fwd_gateway([upstream])
    for mech in ("PLAIN", "LOGIN"):
        login(gw, SPECIAL_LOGIN, SPECIAL_PASSWORD, mech).check(235)
    login(gw, SPECIAL_LOGIN, SPECIAL_PASSWORD[:-1], "PLAIN").check(535, "5.7.8")
    login(gw, SPECIAL_LOGIN.upper(), SPECIAL_PASSWORD, "PLAIN").check(535, "5.7.8")
    login(gw, SPECIAL_LOGIN, SPECIAL_PASSWORD.replace(":", ";"), "LOGIN").check(535)
    text = gw.log_text()
    assert SPECIAL_PASSWORD not in text


def test_sessions_bounded_and_queue(fwd_gateway, up):
    gw = fwd_gateway(["silent"], max_sessions=1, queue_size=1, timeout=2, connect_timeout=2,
                     failure_memory=0)
    mark = gw.log_mark()
    replies = []

    def one():
        replies.append(login(gw, ALICE, ALICE_PW))

    first = threading.Thread(target=one)
    first.start()
    gw.wait_for_log(r"forward upstream=\S+ .*connecting", mark)
    second = threading.Thread(target=one)
    second.start()
    gw.wait_for_log(r"auth: forward queued", mark)
    # The queue is full: the third gets 454 at once.
    t0 = time.monotonic()
    login(gw, BOB, BOB_PW).check(454, "4.7.0")
    assert time.monotonic() - t0 < 1.5
    fwd_line(gw, mark, "tempfail", "busy")
    first.join(30)
    second.join(30)
    assert [r.code for r in replies] == [454, 454]
    assert len(re.findall(r"auth forward .*reason=upstream_timeout",
                          gw.log_text()[mark:])) == 2


def test_preconnect(fwd_gateway, up):
    gw = fwd_gateway(["plain"], preconnect=2, **tls_settings(up))
    mark = 0
    harness.wait_until(lambda: len(re.findall(r"pre-connected session ready",
                                              gw.log_text())) >= 2, 10,
                       "two pre-connected sessions")
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(235)
    gw.wait_for_log(r"using a pre-connected session", mark)
    fwd_line(gw, mark, "ok", "ok")
    # The pool is topped up again.
    gw.wait_for_log(r"pre-connected session ready", mark)
    login(gw, BOB, BOB_PW + "x").check(535, "5.7.8")


def test_check_config_refuses_self_loop(fwd_gateway, up, bin_path):
    gw = fwd_gateway(["plain"], start=False)
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    assert r.returncode == 0, r.stderr

    own = gw.sections["listener sub"]["address"]
    gw.sections["smtp-forward"]["upstreams"] = f"{up.addr('plain')}, {own}"
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 78, err
    line = section_line(gw, "smtp-forward", "upstreams")
    assert re.search(rf"{re.escape(str(gw.cfg_path))}:{line}: \[smtp-forward\] upstreams: "
                     rf".*{re.escape(own)}.* our own listener \"sub\"", err), err

    # A wildcard listener: any local address with its port is us.
    port = gw.port("in")
    gw.sections["listener in"]["address"] = f"0.0.0.0:{port}"
    gw.sections["smtp-forward"]["upstreams"] = f"127.0.0.1:{port}"
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    assert r.returncode == 78 and b"our own listener \"in\"" in r.stderr, r.stderr


def test_check_config_errors(fwd_gateway, up, bin_path):
    gw = fwd_gateway(["plain"], start=False, tls="bogus", mechanisms="PLAIN CRAM-MD5",
                     max_sessions=0, preconnect=3, colour="blue", failure_memory="soon")
    gw.sections["smtp-forward"]["upstreams"] = "127.0.0.1:notaport"
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 78, err
    # Each value's error in the one format of every section (settings.h),
    # on its line; the unknown key names the section.
    for key, what in (("tls", "tls = bogus: expected starttls, implicit or none"),
                      ("mechanisms", "mechanisms = PLAIN CRAM-MD5: \"CRAM-MD5\" is not PLAIN "
                                     "or LOGIN"),
                      ("max_sessions", "max_sessions = 0: must be at least 1"),
                      ("colour", "unknown key 'colour' in [smtp-forward]"),
                      ("failure_memory", "failure_memory = soon: not a duration"),
                      ("upstreams", "upstreams = 127.0.0.1:notaport: not host:port")):
        line = section_line(gw, "smtp-forward", key)
        assert re.search(rf"^{re.escape(str(gw.cfg_path))}:{line}: {re.escape(what)}", err,
                         re.M), (key, err)
    # The daemon refuses the same file at start, with the same messages.
    gw.start(wait=False)
    assert gw.proc.wait(15) == 78
    assert "tls = bogus: expected starttls" in gw.log_text()


def test_check_config_opens_ca_file_as_auth_user(fwd_gateway, up, bin_path):
    """The auth process loads ca_file after its privilege drop: check-config
    opens it as [server] auth_user, not as root."""
    gw = fwd_gateway(["plain"], start=False, **tls_settings(up))
    ca = gw.dir / "upstream-ca.pem"
    shutil.copyfile(up.cert, ca)
    os.chmod(ca, 0o600)
    gw.sections["smtp-forward"]["ca_file"] = str(ca)
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 78, err
    line = section_line(gw, "smtp-forward", "ca_file")
    assert (f"{gw.cfg_path}:{line}: ca_file = {ca}: not readable by user {harness.AUTH_AS} "
            "(Permission denied)\n") in err, err
    os.chmod(ca, 0o644)
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    assert r.returncode == 0, r.stderr


def test_loop_at_run_time(fwd_gateway, make_gateway, up):
    """An upstream that greets with our own banner (another path to this very
    gateway, here a second instance with the same hostname): 454, logged."""
    other = make_gateway()
    gw = fwd_gateway([f"{other.host('in')}:{other.port('in')}"])
    mark = gw.log_mark()
    login(gw, ALICE, ALICE_PW).check(454, "4.7.0")
    fwd_line(gw, mark, "tempfail", "upstream_loop")
    gw.wait_for_log(r"greets with our own banner.*loop", mark)
