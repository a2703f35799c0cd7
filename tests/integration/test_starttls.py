# SPDX-License-Identifier: ISC
"""STARTTLS (RFC 3207), implicit TLS (RFC 8314), and AUTH before TLS."""

import ssl

import pytest

from harness import (CLIENT_HELO, HOST, HOSTNAME, SMTPConn, expect_auth_lockout,
                     make_message, plain_ir, smtplib_auth, smtplib_client, smtplib_send,
                     submission_conn)


@pytest.fixture(scope="module")
def tlsgw(module_gateway):
    """Extra listeners: inbound with tls=optional, submission with tls=optional
    (plaintext auth refused), submission with tls=optional and plaintext auth."""
    return module_gateway({
        "listener inopt": {"role": "inbound", "tls": "optional"},
        "listener subopt": {"role": "submission", "tls": "optional",
                            "allow_plaintext_auth": "no"},
        "listener subplain": {"role": "submission", "tls": "optional",
                              "allow_plaintext_auth": "yes"},
    })


def our_cert_der(tls_files):
    return ssl.PEM_cert_to_DER_cert(tls_files[0].read_text())


# ---------------------------------------------------------------- STARTTLS

def test_starttls_then_new_capabilities(gw, tls_files):
    c = SMTPConn.open(gw, "sub")
    before = c.ehlo().keywords()
    assert "STARTTLS" in before and "AUTH" not in before
    c.starttls()
    assert c.peer_cert_der() == our_cert_der(tls_files), "not our certificate"
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    r = c.ehlo()
    assert r.lines[0].split()[0] == HOSTNAME
    kw = r.keywords()
    assert "STARTTLS" not in kw, f"STARTTLS offered after TLS:\n{r}"
    assert {"PLAIN", "LOGIN"} <= {m.upper() for m in kw.get("AUTH", [])}, str(r)
    assert "CRAM-MD5" not in kw["AUTH"], "cram_md5 = no, yet CRAM-MD5 offered"
    assert not any(k.startswith("AUTH=") for k in kw), "legacy AUTH= without auth_legacy_advertise"
    for k in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE"):
        assert k in kw, f"{k} missing after TLS:\n{r}"


def test_starttls_with_argument(gw):
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.cmd("STARTTLS now").check(501, "5.5.4")
    c.starttls()
    c.ehlo()


def test_starttls_twice(gw):
    c = submission_conn(gw)
    c.cmd("STARTTLS").check(503, "5.5.1")


def test_starttls_on_implicit_tls_listener(gw):
    c = SMTPConn.open(gw, "subs")
    assert "STARTTLS" not in c.ehlo().keywords()
    c.cmd("STARTTLS").check(503, "5.5.1")


@pytest.mark.parametrize("listener", ["in", "out"])
def test_starttls_not_offered(gw, listener):
    c = SMTPConn.open(gw, listener)
    c.ehlo()
    c.cmd("STARTTLS").check(502, "5.5.1")


def test_starttls_offered_on_optional_inbound(tlsgw):
    c = SMTPConn.open(tlsgw, "inopt")
    kw = c.ehlo().keywords()
    assert "STARTTLS" in kw and "AUTH" not in kw
    c.starttls()
    kw = c.ehlo().keywords()
    assert "STARTTLS" not in kw and "AUTH" not in kw
    c.cmd("AUTH PLAIN " + plain_ir("alice", "x")).check(502, "5.5.1")


def test_optional_inbound_works_without_tls(tlsgw):
    c = SMTPConn.open(tlsgw, "inopt")
    c.ehlo()
    qid = c.send_message("s@other.test", ["user@example.test"], make_message()).queued_id()
    assert tlsgw.spool_path(qid).is_file()


# ---------------------------------------------------------------- injection and reset

def test_plaintext_pipelined_after_starttls_is_discarded(gw):
    """CVE-2011-0411: the NOOP sent in the same packet as STARTTLS must never be
    answered, neither in plaintext nor over TLS."""
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.send("STARTTLS\r\nNOOP\r\n")
    c.read_reply().check(220, "2.0.0")
    assert not c.buf, f"server answered the injected command in plaintext: {c.buf!r}"
    try:
        c.tls_handshake()
    except ssl.SSLError as e:
        pytest.fail(f"TLS handshake failed after pipelined plaintext: {e}")
    r = c.cmd(f"EHLO {CLIENT_HELO}")
    assert r.code == 250 and len(r.lines) > 1 and r.lines[0].split()[0] == HOSTNAME, (
        f"first reply over TLS is not the EHLO answer (injected NOOP answered?):\n{r}")
    c.cmd("NOOP").check(250, "2.0.0")
    c.cmd("QUIT").check(221, "2.0.0")


def test_injected_envelope_does_not_survive_starttls(tlsgw):
    c = SMTPConn.open(tlsgw, "inopt")
    c.ehlo()
    c.send("STARTTLS\r\nMAIL FROM:<evil@other.test>\r\nRCPT TO:<user@example.test>\r\n")
    c.read_reply().check(220, "2.0.0")
    c.tls_handshake()
    r = c.cmd(f"EHLO {CLIENT_HELO}")
    assert r.code == 250 and len(r.lines) > 1, f"not the EHLO answer:\n{r}"
    c.cmd("RCPT TO:<user@example.test>").check(503, "5.5.1")
    assert c.cmd("DATA").code == 503


def test_starttls_forgets_ehlo(tlsgw):
    c = SMTPConn.open(tlsgw, "inopt")
    c.ehlo()
    c.starttls()
    c.cmd("MAIL FROM:<s@other.test>").check(503, "5.5.1")


def test_starttls_forgets_ehlo_on_submission(gw, users):
    c = submission_conn(gw, ehlo=False)
    alice = users["alice"]
    c.cmd("AUTH PLAIN " + plain_ir(alice.name, alice.password)).check(503, "5.5.1")
    c.ehlo()
    c.cmd("AUTH PLAIN " + plain_ir(alice.name, alice.password)).check(235, "2.7.0")


# ---------------------------------------------------------------- implicit TLS

def test_implicit_tls_session(gw, users, tls_files):
    c = SMTPConn.open(gw, "subs")
    assert c.tls and c.peer_cert_der() == our_cert_der(tls_files)
    assert c.greeting.lines[0].startswith(HOSTNAME + " ESMTP")
    kw = c.ehlo().keywords()
    assert "STARTTLS" not in kw
    assert {"PLAIN", "LOGIN"} <= set(kw.get("AUTH", []))
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    msg = make_message("alice@example.test", "rcpt@other.test")
    qid = c.send_message("alice@example.test", ["rcpt@other.test"], msg).queued_id()
    assert gw.spool_path(qid).is_file()


def test_implicit_tls_listener_gives_no_plaintext_greeting(gw):
    raw = SMTPConn(HOST, gw.port("subs"), implicit_tls=False)
    raw.send(f"EHLO {CLIENT_HELO}\r\n")
    got = raw.wait_closed(15)
    assert not got.startswith(b"220") and b"250" not in got, got


def test_smtplib_starttls(gw, users):
    with smtplib_client(gw, "sub") as s:
        assert s.has_extn("auth") and not s.has_extn("starttls")
        code, _ = smtplib_auth(s, "PLAIN", "alice", users["alice"].password)
        assert code == 235
        qid = smtplib_send(s, "alice@example.test", ["x@other.test"],
                           make_message("alice@example.test", "x@other.test"))
    assert gw.spool_path(qid).is_file()


def test_smtplib_implicit_tls(gw, users):
    with smtplib_client(gw, "subs") as s:
        code, _ = smtplib_auth(s, "LOGIN", "alice", users["alice"].password)
        assert code == 235
        qid = smtplib_send(s, "alice@example.test", ["x@other.test"],
                           make_message("alice@example.test", "x@other.test"))
    assert gw.spool_path(qid).is_file()


# ---------------------------------------------------------------- AUTH and TLS

def test_auth_refused_before_tls_when_required(gw, users):
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.cmd("AUTH PLAIN " + plain_ir("alice", users["alice"].password)).check(530, "5.7.0")
    c.cmd("AUTH LOGIN").check(530, "5.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")


def test_optional_tls_refuses_plaintext_auth_with_538(tlsgw, users):
    c = SMTPConn.open(tlsgw, "subopt")
    kw = c.ehlo().keywords()
    assert "STARTTLS" in kw and "AUTH" not in kw, kw
    c.cmd("AUTH PLAIN " + plain_ir("alice", users["alice"].password)).check(538, "5.7.11")
    r = c.cmd("AUTH LOGIN")
    assert (r.code, r.enh) in ((538, "5.7.11"), (504, "5.5.4")), str(r)
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")
    c.starttls()
    kw = c.ehlo().keywords()
    assert {"PLAIN", "LOGIN"} <= set(kw.get("AUTH", [])), kw
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")


def test_plaintext_auth_when_allowed(tlsgw, users):
    c = SMTPConn.open(tlsgw, "subplain")
    kw = c.ehlo().keywords()
    assert "STARTTLS" in kw and {"PLAIN", "LOGIN"} <= set(kw.get("AUTH", [])), kw
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    c.cmd("RCPT TO:<x@other.test>").check(250, "2.1.5")


def test_auth_failures_survive_starttls(tlsgw, users):
    """Spec 12: STARTTLS must not reset the brute-force counter (max 3)."""
    c = SMTPConn.open(tlsgw, "subplain")
    c.ehlo()
    c.auth_plain("alice", "wrong-1").check(535, "5.7.8")
    c.auth_plain("alice", "wrong-2").check(535, "5.7.8")
    c.starttls()
    c.ehlo()
    expect_auth_lockout(c, c.auth_plain("alice", "wrong-3"))


def test_submission_without_tls_but_plaintext_auth(make_gateway, users):
    gw = make_gateway({"listener subnone": {"role": "submission", "tls": "none",
                                            "allow_plaintext_auth": "yes"}})
    c = SMTPConn.open(gw, "subnone")
    kw = c.ehlo().keywords()
    assert "STARTTLS" not in kw and "PLAIN" in kw.get("AUTH", []), kw
    c.cmd("STARTTLS").check(502, "5.5.1")
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
