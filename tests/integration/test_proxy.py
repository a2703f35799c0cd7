# SPDX-License-Identifier: ISC
"""PROXY protocol listeners, driven by a client that
speaks as a load balancer would: the v1 line or the v2 header first, then
SMTP (or TLS on an implicit-TLS listener). The carried address must be the
client for the log, the Received header, per-IP limits, relay policy and
the auth process; peers outside proxy_trusted_networks, missing, malformed,
oversized and slow headers are closed without a greeting, within the
configured bound. The real-HAProxy test is in test_haproxy.py."""

import re
import time

import pytest

from harness import (HOST, ConnectionClosed, SMTPConn, make_message, plain_ir, proxy_v1,
                     proxy_v2)

TRUSTED = "127.0.0.1/32"
PROXIED = {"proxy_protocol": True, "proxy_trusted_networks": TRUSTED, "proxy_timeout": 700}


@pytest.fixture(scope="module")
def pgw(module_gateway):
    return module_gateway({
        "listener pin": dict(PROXIED, role="inbound", tls="none", max_connections_per_ip=1),
        "listener pout": dict(PROXIED, role="outbound", tls="none"),
        "listener psubs": dict(PROXIED, role="submission", tls="implicit"),
        "listener psub": dict(PROXIED, role="submission", tls="none",
                              allow_plaintext_auth=True),
        # Only 127.0.0.2 may send the header here.
        "listener pother": dict(PROXIED, role="inbound", tls="none",
                                proxy_trusted_networks="127.0.0.2/32"),
    })


def closed_without_greeting(c, timeout=5.0):
    got = c.wait_closed(timeout)
    assert got == b"", f"the server sent {got!r} before closing"


def test_v1_address_in_log_and_received(pgw):
    mark = pgw.log_mark()
    c = SMTPConn.open(pgw, "pin", proxy=proxy_v1("192.0.2.7", 40000, HOST, 25))
    c.ehlo()
    r = c.send_message("sender@other.test", ["user@example.test"], make_message())
    sp = pgw.spool_file(r.check(250).queued_id())
    received = sp.header_values("Received")[0]
    assert "[192.0.2.7]" in received, received
    assert "127.0.0.1" not in received, received
    pgw.wait_for_log(r"s=\S+ connect client=192\.0\.2\.7 listener=pin proxy=127\.0\.0\.1",
                     since=mark)
    c.cmd("QUIT").check(221)
    pgw.wait_for_log(r"s=\S+ disconnect client=192\.0\.2\.7 ", since=mark)


def test_v2_ipv6_client_and_tlvs(pgw):
    mark = pgw.log_mark()
    tlvs = b"\x01\x00\x04smtp" + b"\x04\x00\x00"  # ALPN, NOOP: skipped
    c = SMTPConn.open(pgw, "pin", proxy=proxy_v2("2001:db8::25", 1025, "::1", 25, tlvs))
    c.cmd("QUIT").check(221)
    pgw.wait_for_log(r"connect client=2001:db8::25 listener=pin proxy=127\.0\.0\.1", since=mark)


def test_per_ip_limit_counts_the_carried_address(pgw):
    """max_connections_per_ip = 1 on pin: one connection per real client,
    although every connection comes from the same proxy."""
    a = SMTPConn.open(pgw, "pin", proxy=proxy_v2("192.0.2.10", 1000))
    b = SMTPConn.open(pgw, "pin", proxy=proxy_v2("192.0.2.11", 1000))
    third = SMTPConn(HOST, pgw.port("pin"), proxy=proxy_v1("192.0.2.10", 1001))
    third.read_reply().check(421, "4.7.0")
    third.wait_closed()
    for c in (a, b):
        c.cmd("QUIT").check(221)


def test_relay_policy_uses_the_carried_address(pgw):
    """client_networks is 127.0.0.0/8: a proxied 192.0.2.x client may not
    relay on the outbound listener, a proxied 127.0.0.9 may."""
    c = SMTPConn.open(pgw, "pout", proxy=proxy_v2("192.0.2.20", 1000))
    c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250)
    assert c.cmd("RCPT TO:<user@other.test>").code == 550
    c.close()
    c = SMTPConn.open(pgw, "pout", proxy=proxy_v2("127.0.0.9", 1000))
    c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250)
    c.cmd("RCPT TO:<user@other.test>").check(250)
    c.close()


def test_auth_process_sees_the_carried_address(pgw, users):
    alice = users["alice"]
    mark = pgw.log_mark()
    c = SMTPConn.open(pgw, "psub", proxy=proxy_v1("198.51.100.77", 3333))
    c.ehlo()
    c.cmd(f"AUTH PLAIN {plain_ir(alice.name, alice.password)}").check(235)
    pgw.wait_for_log(r"auth\[\d+\] info: s=\S+ auth client=198\.51\.100\.77 .*"
                     r"mech=PLAIN user=\"alice\"", since=mark)
    c.cmd("QUIT").check(221)


def test_implicit_tls_header_before_handshake(pgw):
    """The header comes before the ClientHello, as HAProxy sends it."""
    mark = pgw.log_mark()
    c = SMTPConn.open(pgw, "psubs", proxy=proxy_v2("203.0.113.5", 465))
    assert c.tls
    c.ehlo()
    c.cmd("QUIT").check(221)
    pgw.wait_for_log(r"connect client=203\.0\.113\.5 listener=psubs", since=mark)


def test_local_command_health_check(pgw):
    """v2 LOCAL and v1 UNKNOWN (HAProxy's checks): served as the proxy."""
    for header in (proxy_v2(None), b"PROXY UNKNOWN\r\n"):
        mark = pgw.log_mark()
        c = SMTPConn.open(pgw, "pin", proxy=header)
        c.cmd("HELO localhost").check(250)
        c.cmd("QUIT").check(221)
        pgw.wait_for_log(r"connect client=127\.0\.0\.1 listener=pin proxy=127\.0\.0\.1",
                         since=mark)


def test_untrusted_peer_refused(pgw):
    mark = pgw.log_mark()
    c = SMTPConn(HOST, pgw.port("pother"), proxy=proxy_v1("192.0.2.7", 1))
    closed_without_greeting(c)
    pgw.wait_for_log(r"refuse client=127\.0\.0\.1 listener=pother "
                     r"reason=proxy_trusted_networks", since=mark)
    # The trusted one is served.
    c = SMTPConn.open(pgw, "pother", source="127.0.0.2", proxy=proxy_v1("192.0.2.7", 1))
    c.cmd("QUIT").check(221)


@pytest.mark.parametrize("what,data", [
    ("smtp", b"EHLO client.test.example\r\n"),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ("bad v1", b"PROXY TCP4 192.0.2.7 nowhere 1 2\r\n"),
    ("v1 too long", b"PROXY TCP4 " + b"1" * 200),
    ("v2 too long", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + b"\x00" * 100),
])
def test_trusted_peer_without_valid_header_refused(pgw, what, data):
    mark = pgw.log_mark()
    c = SMTPConn(HOST, pgw.port("pin"))
    c.send(data)
    closed_without_greeting(c)
    pgw.wait_for_log(r"refuse proxy=127\.0\.0\.1 listener=pin reason=proxy_protocol error=",
                     since=mark)


@pytest.mark.parametrize("data", [b"", b"PROXY TCP4 192.0", proxy_v2("192.0.2.7", 1)[:20]])
def test_slow_or_truncated_header_bounded(pgw, data):
    """Nothing or part of a header, then silence: closed after proxy_timeout
    (700 ms here), not after command_timeout, and never greeted."""
    c = SMTPConn(HOST, pgw.port("pin"))
    start = time.monotonic()
    if data:
        c.send(data)
    closed_without_greeting(c, timeout=10)
    assert time.monotonic() - start < 5


def test_trickled_header_bounded_as_a_whole(pgw):
    """A byte at a time, each before proxy_timeout: the deadline is for the
    whole header, not per byte."""
    c = SMTPConn(HOST, pgw.port("pin"))
    start = time.monotonic()
    line = proxy_v1("192.0.2.7", 1)
    try:
        for i in range(len(line) - 2):
            c.send(line[i:i + 1])
            time.sleep(0.1)
    except OSError:
        pass
    closed_without_greeting(c, timeout=10)
    assert time.monotonic() - start < 5


def test_config_requires_trusted_networks(make_gateway):
    gw = make_gateway({"listener pin": {"role": "inbound", "tls": "none",
                                        "proxy_protocol": True}}, start=False)
    import subprocess
    r = subprocess.run([gw.binary, "check-config", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert re.search(r"proxy_protocol = yes needs proxy_trusted_networks", r.stderr + r.stdout)
