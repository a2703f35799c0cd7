# SPDX-License-Identifier: ISC
"""The open-relay battery, run on every role: inbound (local domains only),
outbound from inside and outside client_networks, submission before and
after AUTH (plain and implicit TLS)."""

import pytest

from harness import SMTPConn, make_message, submission_conn

# Addresses that try to route through a local domain to somewhere else.
ROUTING_HACKS = [
    "user%other.test@example.test",          # percent hack
    "other.test!user@example.test",          # bang path
    '"user@other.test"@example.test',        # quoted local part holding an @
    "@example.test:user@other.test",         # source route (RFC 5321 4.1.1.3)
    "user@[127.0.0.1]",                      # IP literal
    "user@[IPv6:::1]",
]
FOREIGN = ["user@other.test", "user@sub.example.test", "user@example.test.other.test",
           "user@EXAMPLE.TEST.evil.test"]
LOCAL = ["user@example.test", "User.Name@EXAMPLE.TEST", "postmaster@example.test"]
DOUBLE_AT = "user@example.test@other.test"
BATTERY = FOREIGN + ROUTING_HACKS


def rcpt(c, addr):
    return c.cmd(f"RCPT TO:<{addr}>")


def assert_refused(r, addr):
    """Relay refused: 550 5.7.1 (a routing hack may instead be a 501 5.1.3)."""
    ok = (r.code, r.enh) == (550, "5.7.1") or (
        addr in ROUTING_HACKS and (r.code, r.enh) in ((501, "5.1.3"), (553, "5.1.3")))
    assert ok, f"RCPT TO:<{addr}> not refused as a relay attempt:\n{r}"


# ---------------------------------------------------------------- inbound

@pytest.fixture
def inbound(gw):
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<sender@other.test>").check(250, "2.1.0")
    return c


@pytest.mark.parametrize("addr", LOCAL + ["Postmaster"])
def test_inbound_accepts_local(inbound, addr):
    rcpt(inbound, addr).check(250, "2.1.5")


@pytest.mark.parametrize("addr", BATTERY)
def test_inbound_refuses_relay(inbound, addr):
    assert_refused(rcpt(inbound, addr), addr)


def test_inbound_ignores_client_networks(gw):
    """127.0.0.1 is in client_networks, which must not open the inbound listener."""
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    rcpt(c, "user@other.test").check(550, "5.7.1")


def test_inbound_refused_recipient_not_delivered(gw):
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<sender@other.test>").check(250, "2.1.0")
    rcpt(c, "user@other.test").check(550, "5.7.1")
    rcpt(c, "user@example.test").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message() + ".\r\n")
    sp = gw.spool_file(c.read_reply().queued_id())
    assert sp.all("rcpt") == ["<user@example.test>"]


# ---------------------------------------------------------------- outbound

def test_outbound_relays_for_client_networks(gw):
    c = SMTPConn.open(gw, "out")
    c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    for addr in ["user@other.test", "someone@another.test", "user@example.test"]:
        rcpt(c, addr).check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message() + ".\r\n")
    sp = gw.spool_file(c.read_reply().queued_id())
    assert sp.get("listener") == "out"


@pytest.fixture(scope="module")
def denied_gw(module_gateway):
    """127.0.0.1 is outside client_networks here."""
    return module_gateway({"relay": {"client_networks": "192.0.2.0/24"}})


@pytest.mark.parametrize("addr", BATTERY + LOCAL)
def test_outbound_refuses_other_networks(denied_gw, addr):
    c = SMTPConn.open(denied_gw, "out")
    c.ehlo()
    r = c.cmd("MAIL FROM:<alice@example.test>")
    if r.code == 550:       # refusing already at MAIL is fine
        r.check(550, "5.7.1")
        return
    r.check(250, "2.1.0")
    rcpt(c, addr).check(550, "5.7.1")


def test_outbound_denied_client_still_gets_inbound(denied_gw):
    c = SMTPConn.open(denied_gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<sender@other.test>").check(250, "2.1.0")
    rcpt(c, "user@example.test").check(250, "2.1.5")
    rcpt(c, "user@other.test").check(550, "5.7.1")


# ---------------------------------------------------------------- submission

@pytest.mark.parametrize("listener", ["sub", "subs"])
@pytest.mark.parametrize("addr", BATTERY + LOCAL)
def test_submission_refuses_everything_before_auth(gw, listener, addr):
    c = submission_conn(gw, listener)
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")
    r = rcpt(c, addr)
    assert (r.code, r.enh) in ((530, "5.7.0"), (503, "5.5.1")), str(r)
    assert c.cmd("DATA").code in (530, 503)


@pytest.mark.parametrize("listener", ["sub", "subs"])
def test_submission_auth_parameter_does_not_authenticate(gw, listener):
    c = submission_conn(gw, listener)
    c.cmd("MAIL FROM:<alice@example.test> AUTH=alice@example.test").check(530, "5.7.0")


@pytest.mark.parametrize("listener", ["sub", "subs"])
def test_submission_relays_after_auth(gw, users, listener):
    alice = users["alice"]
    c = submission_conn(gw, listener)
    c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    for addr in ["user@other.test", "someone@another.test", "user@example.test"]:
        rcpt(c, addr).check(250, "2.1.5")


def test_failed_auth_grants_nothing(gw, users):
    c = submission_conn(gw)
    c.auth_plain("alice", "wrong").check(535, "5.7.8")
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")


# ---------------------------------------------------------------- syntax on every role

@pytest.mark.parametrize("listener", ["in", "out", "sub"])
def test_double_at_is_a_syntax_error(gw, users, listener):
    if listener == "sub":
        c = submission_conn(gw)
        c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    else:
        c = SMTPConn.open(gw, listener)
        c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    rcpt(c, DOUBLE_AT).check(501, "5.1.3")
