# SPDX-License-Identifier: ISC
"""Every limit of [limits] (and its per-listener override): connections in
total and per client address, messages per session, recipients, message size
(SIZE= and actual data), auth failures, bad commands, line lengths, timeouts."""

import base64
import ssl
import time

import pytest

from harness import (HOST, SMTPConn, expect_auth_lockout, free_port, make_message,
                     submission_conn, wait_until)

SENDER = "sender@other.test"
RCPT = "user@example.test"


def greeting_code(gw, listener, source=None):
    """Open a connection, return its greeting code and the connection."""
    c = SMTPConn(HOST, gw.port(listener), implicit_tls=gw.is_implicit(listener), source=source)
    return c.read_reply().code, c


def can_connect(gw, listener, source=None):
    code, c = greeting_code(gw, listener, source)
    if code != 220:
        c.close()
        return None
    return c


# ---------------------------------------------------------------- connections

def test_max_connections_total(make_gateway):
    gw = make_gateway({"listener in": {"max_connections": 3, "max_connections_per_ip": 20}})
    held = [SMTPConn.open(gw, "in") for _ in range(3)]
    extra = SMTPConn(HOST, gw.port("in"))
    extra.read_reply().check(421, "4.7.0")
    extra.wait_closed()
    # other listeners keep their own count
    SMTPConn.open(gw, "out").cmd("QUIT").check(221)
    # a slot comes back when a client leaves
    held[0].cmd("QUIT").check(221)
    held[0].wait_closed()
    wait_until(lambda: can_connect(gw, "in"), 10, "a free connection slot after QUIT")


def test_max_connections_from_limits_section(make_gateway):
    gw = make_gateway({"limits": {"max_connections": 2}})
    held = [SMTPConn.open(gw, "out") for _ in range(2)]
    extra = SMTPConn(HOST, gw.port("out"))
    extra.read_reply().check(421, "4.7.0")
    extra.wait_closed()
    assert held


def test_max_connections_per_ip(make_gateway):
    gw = make_gateway({"limits": {"max_connections_per_ip": 2}})
    held = [SMTPConn.open(gw, "in", source="127.0.0.1") for _ in range(2)]
    third = SMTPConn(HOST, gw.port("in"), source="127.0.0.1")
    third.read_reply().check(421, "4.7.0")
    third.wait_closed()
    # another client address is counted separately
    other = [SMTPConn.open(gw, "in", source="127.0.0.2") for _ in range(2)]
    assert len(held) == len(other) == 2
    held[1].cmd("QUIT").check(221)
    held[1].wait_closed()
    wait_until(lambda: can_connect(gw, "in", "127.0.0.1"), 10, "a per-IP slot after QUIT")


def test_max_connections_per_ip_on_implicit_tls(make_gateway):
    """RFC 8314 3.3: on an implicit-TLS port all SMTP runs inside TLS, so the
    refusal too must come after the handshake (a plaintext 421 reads as a TLS
    protocol error to every client)."""
    gw = make_gateway({"listener subs": {"max_connections_per_ip": 1}})
    held = SMTPConn.open(gw, "subs")
    assert held.greeting.code == 220
    try:
        second = SMTPConn(HOST, gw.port("subs"), implicit_tls=True)
    except ssl.SSLError as e:
        raw = SMTPConn(HOST, gw.port("subs"))
        got = raw.wait_closed()
        pytest.fail(f"TLS handshake failed ({e}); the listener sent {got[:60]!r} in plaintext")
    second.read_reply().check(421, "4.7.0")
    second.wait_closed()


def test_ipv6_listener_and_per_client_limit(make_gateway):
    port = free_port("::1")
    gw = make_gateway({"listener v6": {"role": "inbound", "tls": "none",
                                       "address": f"[::1]:{port}",
                                       "max_connections_per_ip": 1}})
    held = SMTPConn.open(gw, "v6")
    second = SMTPConn("::1", port)
    second.read_reply().check(421, "4.7.0")
    second.wait_closed()
    held.ehlo()
    qid = held.send_message(SENDER, [RCPT], make_message()).queued_id()
    assert "::1" in gw.spool_file(qid).get("client")


def test_abrupt_disconnects_release_slots(make_gateway):
    gw = make_gateway({"limits": {"max_connections_per_ip": 3}})
    for _ in range(3):
        # The slots of the previous round are released asynchronously, so
        # wait until all 3 can be held at once, then drop them without QUIT:
        # the worker must still release every slot.
        held = wait_until(lambda: _hold(gw, 3), 10, "3 slots free after abrupt closes")
        for c in held:
            c.close()
    wait_until(lambda: _release(_hold(gw, 3)), 10, "3 slots free after the last round")


def _hold(gw, n):
    """n connections held open at once, or None (and none held)."""
    conns = [can_connect(gw, "in") for _ in range(n)]
    if all(conns):
        return conns
    _release(conns)
    return None


def _release(conns):
    for c in conns or []:
        if c:
            c.close()
    return conns is not None


# ---------------------------------------------------------------- messages and recipients

def test_max_messages_per_session(make_gateway):
    gw = make_gateway({"listener in": {"max_messages_per_session": 2}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    for _ in range(2):
        c.send_message(SENDER, [RCPT], make_message()).queued_id()
    c.cmd(f"MAIL FROM:<{SENDER}>").check(421, "4.7.0")
    c.wait_closed()


def test_max_messages_per_session_zero_is_unlimited(make_gateway):
    gw = make_gateway({"listener in": {"max_messages_per_session": 0}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    for _ in range(5):
        c.send_message(SENDER, [RCPT], make_message()).queued_id()


def test_max_recipients(make_gateway):
    gw = make_gateway({"listener in": {"max_recipients": 100}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.send("".join(f"RCPT TO:<u{i}@example.test>\r\n" for i in range(102)))
    for i in range(100):
        c.read_reply().check(250, "2.1.5")
    c.read_reply().check(452, "4.5.3")
    c.read_reply().check(452, "4.5.3")
    c.cmd("DATA").check(354)
    c.send(make_message() + ".\r\n")
    sp = gw.spool_file(c.read_reply().queued_id())
    assert len(sp.all("rcpt")) == 100


def test_max_recipients_counts_per_message(make_gateway, users):
    gw = make_gateway({"listener sub": {"max_recipients": 100}})
    c = submission_conn(gw)
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    for _ in range(2):
        c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
        c.send("".join(f"RCPT TO:<r{i}@other.test>\r\n" for i in range(100)))
        for i in range(100):
            c.read_reply().check(250, "2.1.5")
        c.cmd("RCPT TO:<one-more@other.test>").check(452, "4.5.3")
        c.cmd("RSET").check(250, "2.0.0")


# ---------------------------------------------------------------- size

@pytest.fixture(scope="module")
def sizegw(module_gateway):
    return module_gateway({"listener in": {"max_message_size": 10000}})


def test_size_parameter_over_limit(sizegw):
    c = SMTPConn.open(sizegw, "in")
    assert c.ehlo().keywords()["SIZE"] == ["10000"]
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=10001").check(552, "5.3.4")
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=5000").check(250, "2.1.0")


def test_data_over_limit_rejected_after_dot(sizegw):
    c = SMTPConn.open(sizegw, "in")
    c.ehlo()
    before = sizegw.incoming()
    big = make_message(body=("z" * 70 + "\r\n") * 300)        # ~21 KB
    r = c.send_message(SENDER, [RCPT], big)
    r.check(552, "5.3.4")
    assert sizegw.incoming() == before, "an oversized message reached incoming/"
    wait_until(lambda: not list((sizegw.spool / "tmp").iterdir()), 10,
               "the rejected message's temporary file to be removed")
    # the session goes on
    small = make_message(body="small\r\n")
    assert sizegw.spool_path(c.send_message(SENDER, [RCPT], small).queued_id()).is_file()


def test_data_under_limit_accepted(sizegw):
    c = SMTPConn.open(sizegw, "in")
    c.ehlo()
    msg = make_message(body=("z" * 70 + "\r\n") * 100)         # ~7.5 KB
    assert sizegw.spool_path(c.send_message(SENDER, [RCPT], msg).queued_id()).is_file()


def test_data_over_limit_with_lying_size(sizegw):
    c = SMTPConn.open(sizegw, "in")
    c.ehlo()
    big = make_message(body=("z" * 70 + "\r\n") * 300)
    c.send_message(SENDER, [RCPT], big, " SIZE=100").check(552, "5.3.4")


# ---------------------------------------------------------------- auth failures

def test_max_auth_failures_override(make_gateway, users):
    gw = make_gateway({"listener sub": {"max_auth_failures": 4}})
    c = submission_conn(gw)
    for i in range(3):
        c.auth_plain("alice", f"wrong-{i}").check(535, "5.7.8")
    c.cmd("NOOP").check(250, "2.0.0")
    expect_auth_lockout(c, c.auth_plain("alice", "wrong-4"))


def test_max_auth_failures_default_three(gw):
    c = submission_conn(gw)
    c.auth_plain("alice", "wrong-1").check(535, "5.7.8")
    c.auth_plain("alice", "wrong-2").check(535, "5.7.8")
    expect_auth_lockout(c, c.auth_plain("alice", "wrong-3"))


def test_auth_failure_limit_is_per_connection(gw, users):
    c1 = submission_conn(gw)
    c1.auth_plain("alice", "wrong-1").check(535, "5.7.8")
    c1.auth_plain("alice", "wrong-2").check(535, "5.7.8")
    c2 = submission_conn(gw)
    c2.auth_plain("alice", users["alice"].password).check(235, "2.7.0")


# ---------------------------------------------------------------- bad commands

def test_max_errors(make_gateway):
    gw = make_gateway({"limits": {"max_errors": 3}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    for _ in range(3):
        c.cmd("FROB").check(500, "5.5.1")
    # max_errors bad commands are tolerated; the next one ends the session
    c.cmd("NOOP").check(250, "2.0.0")
    r = c.cmd("FROB")
    if r.code == 500:           # the error itself may be answered before the 421
        r = c.read_reply()
    r.check(421, "4.7.0")
    c.wait_closed()


def test_max_errors_counts_syntax_errors(make_gateway):
    gw = make_gateway({"listener in": {"max_errors": 2}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<a b@other.test>").check(501, "5.1.7")
    c.cmd("MAIL FROM:<a@b@other.test>").check(501, "5.1.7")
    r = c.cmd("BOGUS")
    if r.code == 500:
        r = c.read_reply()
    r.check(421, "4.7.0")
    c.wait_closed()


def test_good_commands_do_not_count_as_errors(make_gateway):
    gw = make_gateway({"limits": {"max_errors": 2}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    for _ in range(10):
        c.cmd("NOOP").check(250, "2.0.0")
    c.cmd("FROB").check(500, "5.5.1")
    c.cmd("NOOP").check(250, "2.0.0")


# ---------------------------------------------------------------- line length

def test_max_line_length_override(make_gateway):
    # 512 is the RFC 5321 minimum, so the override raises the limit
    gw = make_gateway({"listener in": {"max_line_length": 1000}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("NOOP " + "x" * 900).check(250, "2.0.0")
    c.cmd("NOOP " + "x" * 1100).check(500, "5.5.2")
    c.cmd("NOOP").check(250, "2.0.0")


def test_default_max_line_length(gw):
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("NOOP " + "x" * 505).check(250, "2.0.0")
    c.cmd("NOOP " + "x" * 520).check(500, "5.5.2")


# ---------------------------------------------------------------- timeouts

def test_command_timeout(make_gateway):
    gw = make_gateway({"listener in": {"command_timeout": 2}})
    c = SMTPConn.open(gw, "in")
    t0 = time.monotonic()
    r = c.read_reply(timeout=20)
    elapsed = time.monotonic() - t0
    r.check(421, "4.4.2")
    assert 1.5 <= elapsed <= 12, f"421 after {elapsed:.1f}s with command_timeout = 2"
    c.wait_closed()


def test_command_timeout_after_ehlo(make_gateway):
    gw = make_gateway({"limits": {"command_timeout": 2}})
    c = SMTPConn.open(gw, "out")
    c.ehlo()
    c.cmd("MAIL FROM:<alice@example.test>").check(250, "2.1.0")
    t0 = time.monotonic()
    c.read_reply(timeout=20).check(421, "4.4.2")
    assert time.monotonic() - t0 >= 1.5
    c.wait_closed()


def test_command_timeout_inside_auth_exchange(make_gateway):
    gw = make_gateway({"listener sub": {"command_timeout": 2}})
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    t0 = time.monotonic()
    c.read_reply(timeout=20).check(421, "4.4.2")
    assert time.monotonic() - t0 >= 1.5
    c.wait_closed()


def test_data_timeout(make_gateway):
    gw = make_gateway({"listener in": {"data_timeout": 2}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{RCPT}>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send("Subject: half a message\r\n\r\nand then nothing")
    t0 = time.monotonic()
    r = c.read_reply(timeout=20)
    elapsed = time.monotonic() - t0
    r.check(421, "4.4.2")
    assert 1.5 <= elapsed <= 12, f"421 after {elapsed:.1f}s with data_timeout = 2"
    c.wait_closed()
    assert gw.incoming() == []


def _trickle(c, data: bytes, limit: float) -> tuple[float, "Reply"]:
    """Send data a byte at a time, each after a second without a reply,
    until the server answers; return (seconds, the reply). Fails if no reply
    came within limit seconds."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        if i < len(data):
            try:
                c.send(data[i:i + 1])
            except OSError:
                break
            i += 1
        try:
            r = c.read_reply(timeout=1.0)
        except TimeoutError:
            continue
        return time.monotonic() - t0, r
    raise AssertionError(f"no reply after {limit}s of trickled input ({i} bytes sent)")


def test_command_timeout_bounds_a_trickled_command(make_gateway):
    """One byte a second never completes a command: the session still ends
    command_timeout after the server started waiting, not after the last
    byte (each byte restarted the timer before)."""
    gw = make_gateway({"listener in": {"command_timeout": 3}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    took, r = _trickle(c, b"NOOP " + b"x" * 200, 30)
    r.check(421, "4.4.2")
    assert 2.5 <= took <= 15, f"421 after {took:.1f}s of trickle with command_timeout = 3"
    c.wait_closed()


def test_command_timeout_bounds_a_trickled_auth_response(make_gateway):
    gw = make_gateway({"listener sub": {"command_timeout": 3}})
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    took, r = _trickle(c, b"YWxpY2U" * 40, 30)
    r.check(421, "4.4.2")
    assert 2.5 <= took <= 15, f"421 after {took:.1f}s"
    c.wait_closed()


def test_complete_commands_keep_the_session(make_gateway):
    """Commands that come in time each start a new wait."""
    gw = make_gateway({"listener in": {"command_timeout": 3}})
    c = SMTPConn.open(gw, "in")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        c.cmd("NOOP").check(250, "2.0.0")
        with pytest.raises(TimeoutError):
            c.read_reply(timeout=1.0)
    c.cmd("QUIT").check(221)


def test_data_timeout_bounds_a_trickled_message(make_gateway):
    """A line a second of message text: data_timeout counts per block of
    64 KiB, not per read, so the trickle is cut after data_timeout."""
    gw = make_gateway({"listener in": {"data_timeout": 3}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{RCPT}>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    t0 = time.monotonic()
    r = None
    while time.monotonic() - t0 < 30:
        c.send(b"x\r\n")
        try:
            r = c.read_reply(timeout=1.0)
            break
        except TimeoutError:
            pass
    took = time.monotonic() - t0
    assert r is not None, "the trickle was never cut off"
    r.check(421, "4.4.2")
    assert 2.5 <= took <= 15, f"421 after {took:.1f}s with data_timeout = 3"
    c.wait_closed()
    assert gw.incoming() == []


def test_data_timeout_spares_a_slow_big_message(make_gateway):
    """A client that moves a block of 64 KiB within data_timeout is never cut
    off, however long the whole message takes."""
    gw = make_gateway({"listener in": {"data_timeout": 3}})
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{RCPT}>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message(SENDER, RCPT).split("\r\n\r\n")[0].encode() + b"\r\n\r\n")
    line = b"y" * 78 + b"\r\n"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        c.send(line * 1000)  # 80000 octets: more than a block a second
        with pytest.raises(TimeoutError):
            c.read_reply(timeout=1.0)
    c.send(b".\r\n")
    c.read_reply(timeout=30).queued_id()


def test_silent_client_on_implicit_tls_is_dropped(make_gateway):
    """A client that connects to an implicit-TLS port and never starts the
    handshake must not hold the connection forever."""
    gw = make_gateway({"listener subs": {"command_timeout": 2}})
    raw = SMTPConn(HOST, gw.port("subs"))
    t0 = time.monotonic()
    raw.wait_closed(20)
    assert time.monotonic() - t0 >= 1.5


def test_silent_client_after_starttls_is_dropped(make_gateway):
    gw = make_gateway({"listener sub": {"command_timeout": 2}})
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.cmd("STARTTLS").check(220, "2.0.0")
    t0 = time.monotonic()
    c.wait_closed(20)
    assert time.monotonic() - t0 >= 1.5


def test_failed_tls_handshake_releases_slot(make_gateway):
    gw = make_gateway({"listener subs": {"max_connections_per_ip": 1}})
    raw = SMTPConn(HOST, gw.port("subs"))
    raw.send(b"EHLO not-tls\r\n")
    raw.wait_closed()
    wait_until(lambda: can_connect(gw, "subs"), 10, "the slot of the failed handshake")


def test_mail_line_may_grow_by_auth_parameter(gw):
    """RFC 4954 3: AUTH= adds up to 500 octets to the MAIL line limit."""
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    # xtext: "+61" is "a"; " AUTH=<value>" stays under the 500 extra octets
    value = "+61" * 64 + "@" + "+62" * 60 + "." + "+62" * 30 + ".test"
    line = f"MAIL FROM:<{'s' * 64}@other.test> AUTH={value}"
    assert len(line) > 512 and len(" AUTH=" + value) <= 500
    c.cmd(line).check(250, "2.1.0")


def test_command_after_overlong_auth_response_is_answered(make_gateway):
    """An AUTH response over max_auth_line_length ends the exchange (500
    5.5.6); a command pipelined behind it gets its reply, in command mode."""
    gw = make_gateway()
    c = submission_conn(gw)
    c.cmd("AUTH LOGIN").check(334)
    c.send("QUFB" * 4000 + "\r\nNOOP\r\n")
    c.read_reply().check(500, "5.5.6")
    c.read_reply().check(250, "2.0.0")
    # The same when the long line comes in pieces, the command behind the last.
    c.cmd("AUTH LOGIN").check(334)
    c.send("QUFB" * 4000)
    c.read_reply().check(500, "5.5.6")
    c.send("QUFB" * 100 + "\r\nNOOP\r\n")
    c.read_reply().check(250, "2.0.0")
    # And behind an over-long AUTH command line.
    c.send("AUTH PLAIN " + "QUFB" * 4000 + "\r\nNOOP\r\n")
    c.read_reply().check(500, "5.5.2")
    c.read_reply().check(250, "2.0.0")


# ---------------------------------------------------------------- bounded memory

def _workers_rss_kib(gw):
    total = 0
    for pid in gw.logged_pids("smtpd") & set(gw.children()):
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total


def _flood(c, seconds):
    """Send NOOP lines without reading a reply until the server stops taking
    them (or seconds pass); return the bytes the socket took."""
    chunk = b"NOOP\r\n" * 10922  # 64 KiB
    sent = 0
    c.sock.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end and sent < 256 << 20:
        try:
            sent += c.sock.send(chunk)
        except (TimeoutError, BlockingIOError):
            pass
        except ssl.SSLWantWriteError:
            pass
    return sent


@pytest.mark.parametrize("case", ["plaintext-noop-flood", "tls-flood-while-auth-delayed"])
def test_client_that_does_not_read_cannot_grow_worker_memory(make_gateway, case):
    """A client that pipelines without reading replies, or while its session
    waits (here: the AUTH failure delay), is held back by TCP: the worker
    stops reading once a bounded amount of input waits and stops running
    commands once a bounded amount of output waits."""
    gw = make_gateway({"limits": {"auth_failure_delay_ms": 4000}})
    before = _workers_rss_kib(gw)
    if case == "plaintext-noop-flood":
        c = SMTPConn.open(gw, "in")
        c.cmd("EHLO flood.test").check(250)
    else:
        c = submission_conn(gw)
        c.send(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong") + b"\r\n")
    sent = _flood(c, 4)
    grown = _workers_rss_kib(gw) - before
    # Bounded, only the kernel's socket buffers fill (tcp_rmem + tcp_wmem,
    # at most 10 MiB here). Unbounded, the worker took 31 MB of NOOPs in 4 s
    # and grew by 82 MiB (25-byte replies to each 6-byte NOOP), and 256 MiB
    # while the AUTH failure delay ran. RSS has slack for ASan's quarantine.
    assert sent < 16 << 20, f"the worker took {sent} bytes without reading a reply"
    assert grown < 48 << 10, f"workers grew by {grown} KiB after {sent} bytes"
    mark = gw.log_mark()
    c.close()
    # The reset connection ends the session at once, though the worker had
    # stopped reading it and its replies wait: its slot is given back.
    gw.wait_for_log(r"s=\w+ disconnect client=", since=mark)
    # The worker goes on serving others.
    d = SMTPConn.open(gw, "in")
    d.cmd("NOOP").check(250)
