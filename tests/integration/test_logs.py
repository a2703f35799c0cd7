# SPDX-License-Identifier: ISC
"""The log: one well-formed line per event, session ids, client strings
escaped, and never a password or an AUTH payload."""

import base64
import hmac
import re

import pytest

from harness import (LOG_LINE_RE, SMTPConn, auth_code, b64, hash_password, make_message,
                     plain_ir, submission_conn, wait_until)

SECRET_PW = "Sup3r-S3cret-Pw!"


@pytest.fixture(scope="module")
def exercised(module_gateway, users):
    """A gateway that has seen every kind of AUTH exchange, good and bad, plus
    hostile client strings. Returns (gateway, secrets that must not be logged)."""
    hashes = {n: u.hash for n, u in users.items()}
    hashes["sam"] = hash_password(SECRET_PW, "sha512-crypt")
    gw = module_gateway({"listener sub": {"cram_md5": "yes"}}, users=hashes)
    clara = users["clara"]
    secrets = {SECRET_PW, clara.password, "wrong-" + SECRET_PW}
    payloads = set()

    # PLAIN with initial response: good and bad
    for pw in (SECRET_PW, "wrong-" + SECRET_PW):
        c = submission_conn(gw)
        ir = plain_ir("sam", pw)
        payloads.add(ir)
        c.cmd(f"AUTH PLAIN {ir}")
    # PLAIN without initial response
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN").check(334)
    ir = plain_ir("sam", SECRET_PW, authzid="sam")
    payloads.add(ir)
    c.cmd(ir).check(235)
    # LOGIN, both steps
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(b64("sam")).check(334)
    payloads.add(b64(SECRET_PW))
    c.cmd(b64(SECRET_PW)).check(235)
    # LOGIN with the wrong password
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN " + b64("sam")).check(334)
    payloads.add(b64("wrong-" + SECRET_PW))
    c.cmd(b64("wrong-" + SECRET_PW)).check(535)
    # CRAM-MD5 for the cleartext user: the digest is derived from the secret
    c = submission_conn(gw)
    r = c.cmd("AUTH CRAM-MD5").check(334)
    digest = hmac.new(clara.password.encode(), base64.b64decode(r.lines[0]), "md5").hexdigest()
    payloads.add(b64(f"clara {digest}"))
    c.cmd(b64(f"clara {digest}")).check(235)
    # a password sent while TLS is required but missing
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    ir = plain_ir("sam", SECRET_PW)
    c.cmd(f"AUTH PLAIN {ir}").check(530)
    # a cancelled exchange and a bad base64 continuation
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd("*").check(501)
    # hostile strings: control characters and line breaks in names
    c = SMTPConn.open(gw, "in")
    c.cmd(b"EHLO evil\x01\x1b[31mname\xff")
    c.cmd("MAIL FROM:<\"a\\\"b\"@other.test>")
    c = submission_conn(gw)
    c.cmd("AUTH PLAIN " + b64("\0sam\nsmtpd[1] info: forged line\0nope"))
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(b64("sam\r\nauth[1] info: forged"))
    c.cmd(b64("whatever"))
    # an ordinary message so that session lines exist for every stage
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.send_message("s@other.test", ["user@example.test"], make_message()).queued_id()
    assert auth_code(gw, "sam", SECRET_PW) == 235
    return gw, secrets, payloads


# What AddressSanitizer prints once per process when OpenSSL switches to an
# async job's stack (the TLS handshake waiting for the key process,
# smtpd/tls_handshake.c): stderr, so the log, of a `make asan` daemon only.
# Its error reports ("==PID==ERROR: ...") are never skipped.
ASAN_STACK_SWITCH_NOTICE = re.compile(
    r"^==\d+==WARNING: ASan is ignoring requested __asan_handle_no_return: |"
    r"^False positive error reports may follow$|"
    r"^For details see https://github\.com/google/sanitizers/issues/189$")


def log_lines(gw):
    return [l for l in gw.log_text().split("\n") if l and not ASAN_STACK_SWITCH_NOTICE.match(l)]


def test_no_password_in_log(exercised):
    gw, secrets, _ = exercised
    text = gw.log_text()
    for s in secrets:
        assert s not in text, f"password {s!r} in the log"


def test_no_auth_payload_in_log(exercised):
    gw, _, payloads = exercised
    text = gw.log_text()
    for p in payloads:
        assert p not in text, f"AUTH payload {p!r} in the log"
        assert p.rstrip("=") not in text, f"AUTH payload {p!r} (unpadded) in the log"


def test_auth_events_are_logged(exercised):
    gw, _, _ = exercised
    text = gw.log_text()
    assert re.search(r"\bsam\b", text), "no log line names the user who authenticated"
    assert re.search(r"(?i)\bauth\b.*\b(fail|failed|failure)\b", text), "no failed-auth line"


def test_every_line_well_formed(exercised):
    gw, _, _ = exercised
    bad = [l for l in log_lines(gw) if not LOG_LINE_RE.match(l)]
    assert not bad, "malformed or forged log lines:\n" + "\n".join(bad[:20])


def test_no_forged_lines_from_client_strings(exercised):
    gw, _, _ = exercised
    for l in log_lines(gw):
        m = LOG_LINE_RE.match(l)
        assert m, l
        assert not l.startswith(("smtpd[1]", "auth[1]")), l
        assert "\x1b" not in l and "\x01" not in l, f"raw control byte logged: {l!r}"


def test_session_lines_carry_session_id(exercised):
    gw, _, _ = exercised
    smtpd = [l for l in log_lines(gw) if re.match(r"^\S+ smtpd\[\d+\] ", l)]
    assert smtpd, "the SMTP workers logged nothing"
    with_sid = [l for l in smtpd if re.search(r": s=[0-9A-Za-z]+ ", l)]
    assert with_sid, "no smtpd line starts its fields with s=<session id>"


def test_log_roles_and_pids(exercised):
    gw, _, _ = exercised
    roles = {}
    for l in log_lines(gw):
        m = LOG_LINE_RE.match(l)
        if m:
            roles.setdefault(m.group(1), set()).add(int(m.group(2)))
    assert gw.pid in roles.get("master", set()), f"no master[{gw.pid}] line"
    assert roles.get("smtpd"), "no smtpd lines"
    assert gw.pid not in roles.get("smtpd", set())


# ------------------------------------------------------------ field order

# One field: key=value, the value either a bare token or quoted and escaped.
FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?= |$)')


def test_quoted_values_are_escaped(exercised):
    """A quoted value holds no raw '=', no unescaped '"' and no control byte:
    it cannot end early or hold a field of its own."""
    gw, _, _ = exercised
    for l in log_lines(gw):
        for m in re.finditer(r'\w+="((?:[^"\\]|\\.)*)"', l):
            assert "=" not in m.group(1), l
            assert not re.search(r"[\x00-\x1f\x7f]", m.group(1)), l


INJECTED = ['x" client=6.6.6.6', "y client=6.6.6.7 listener=sub result=fail",
            "z\nauth[1] info: s=1 auth client=6.6.6.8 listener=sub result=fail"]


def test_client_first_then_client_strings(module_gateway):
    """Every line of an AUTH names the gateway's client= before any field a
    client chose; the injected logins are logged escaped, last."""
    gw = module_gateway()
    mark = gw.log_mark()
    for login in INJECTED:
        c = submission_conn(gw)
        c.cmd("AUTH PLAIN " + b64(f"\0{login}\0nope")).check(535, "5.7.8")
    wait_until(lambda: len(re.findall(r" auth client=\S+ listener=\S+ result=fail",
                                      gw.log_text()[mark:])) >= 3, 10, "three AUTH lines")
    lines = [l for l in gw.log_text()[mark:].split("\n") if " auth client=" in l]
    assert len(lines) == 3, lines
    for l in lines:
        keys = [m.group(1) for m in FIELD_RE.finditer(l.split(": ", 1)[1])]
        assert keys[:3] == ["s", "client", "listener"], l
        assert keys.count("client") == 1, l
        assert keys[-1] == "user", l
        assert "6.6.6." not in l.split(" user=")[0], l
    # The logins that are not malformed are there, escaped, at the end.
    assert lines[0].endswith(r' user="x\" client\x3d6.6.6.6"'), lines[0]
    assert lines[1].endswith(r' user="y client\x3d6.6.6.7 listener\x3dsub result\x3dfail"'), \
        lines[1]


# ---------------------------------------------------- AUTH exchanges at debug

@pytest.fixture(scope="module")
def debuggw(module_gateway):
    return module_gateway({"server": {"log_level": "debug"}})


def _end_mark(gw, c, tag):
    """A NOOP the trace shows once everything before it was logged."""
    c.cmd(f"NOOP {tag}").check(250)
    gw.wait_for_log(rf"< NOOP {tag}$")


def _assert_masked(gw, password):
    text = gw.log_text()
    for s in (password, b64(password), b64(password).rstrip("=")):
        assert s not in text, f"AUTH payload {s!r} in the debug log"
    assert "a line of an AUTH exchange" in text


def test_auth_lines_masked_after_530_before_starttls(debuggw):
    """AUTH LOGIN pipelined before STARTTLS where TLS is required: the AUTH
    gets 530, and the base64 lines the client sends anyway are no command."""
    pw = "Pipelined-Before-TLS-1"
    c = SMTPConn.open(debuggw, "sub")
    c.ehlo()
    c.send(f"AUTH LOGIN\r\n{b64('sam')}\r\n{b64(pw)}\r\n")
    c.read_reply().check(530, "5.7.0")
    c.read_reply().check(500)
    c.read_reply().check(500)
    _end_mark(debuggw, c, "m530")
    _assert_masked(debuggw, pw)


def test_auth_lines_masked_after_503_when_authenticated(debuggw, users):
    alice = users["alice"]
    pw = "Pipelined-After-503-2"
    c = submission_conn(debuggw)
    c.auth_plain(alice.name, alice.password).check(235)
    c.send(f"AUTH LOGIN\r\n{b64('sam')}\r\n{b64(pw)}\r\n")
    c.read_reply().check(503, "5.5.1")
    c.read_reply().check(500)
    c.read_reply().check(500)
    _end_mark(debuggw, c, "m503")
    _assert_masked(debuggw, pw)


def test_auth_lines_masked_after_overlong_auth_line(debuggw):
    """An AUTH line over every limit is dropped unseen; the line after it is
    still part of the exchange. The same for a line of the exchange itself."""
    pw = "After-Overlong-3"
    c = submission_conn(debuggw)
    c.send("AUTH LOGIN " + "QUFB" * 5000 + f"\r\n{b64(pw)}\r\n")
    c.read_reply().check(500, "5.5.2")
    c.read_reply().check(500)
    pw2 = "After-Overlong-Response-4"
    c.cmd("AUTH LOGIN").check(334)
    c.send("QUFB" * 5000 + f"\r\n{b64(pw2)}\r\n")
    c.read_reply().check(500, "5.5.6")
    c.read_reply().check(500)
    _end_mark(debuggw, c, "mlong")
    _assert_masked(debuggw, pw)
    _assert_masked(debuggw, pw2)


@pytest.mark.parametrize("prefix", [" ", "  ", "\t", "\x01"],
                         ids=["space", "two-spaces", "tab", "control"])
def test_auth_line_masked_with_leading_blank(debuggw, prefix):
    pw = f"Leading-Blank-5-{len(prefix)}-{ord(prefix[0])}"
    c = submission_conn(debuggw)
    ir = plain_ir("sam", pw)
    c.cmd(f"{prefix}AUTH PLAIN {ir}").check(500)
    c.cmd(f"AUTH\tPLAIN {ir}").check(500)
    _end_mark(debuggw, c, f"mblank{len(prefix)}-{ord(prefix[0])}")
    text = debuggw.log_text()
    assert ir not in text and ir.rstrip("=") not in text
    assert pw not in text


def test_mechanism_shown_payload_not(debuggw):
    """The trace still says which mechanism was tried."""
    c = submission_conn(debuggw)
    ir = plain_ir("sam", "Shown-Mech-6")
    c.cmd(f"AUTH PLAIN {ir}").check(535)
    _end_mark(debuggw, c, "mmech")
    assert re.search(r"s=\w+ < AUTH PLAIN \.\.\.$", debuggw.log_text(), re.M)
    assert ir not in debuggw.log_text()
