# SPDX-License-Identifier: ISC
"""The queue process: delivery to a smarthost, per-domain routes, MX
hosts found through a real DNS server (dnsmasq) with fallback and null MX,
retries with back-off, bounces (RFC 3464 DSN), partial acceptance, splitting
by max_recipients_per_transaction, Maildir delivery, the queue commands, the
421 at max_queue_size, STARTTLS to the next hop, and a crash test with kill -9
during a load. Next hops are aiosmtpd servers on loopback (sink_fixture.py)."""

import email
import os
import random
import re
import signal
import ssl
import threading
import time

import pytest

from dns_fixture import DNSServer, dnsmasq_path
from harness import (HOST, ConnectionClosed, SMTPConn, free_port, make_dir, make_message,
                     msgid_of, queue_ids, run_tool, wait_until, _pids_holding)
from sink_fixture import Sink

pytestmark = pytest.mark.skipif(dnsmasq_path() is None, reason="dnsmasq not installed")

# One port for every MX-reached sink: they differ by loopback address.
MX_PORT = free_port()
MX1, MX2, NOMX, EQ_A, EQ_B, TLSHOST = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5",
                                       "127.0.0.6", "127.0.0.8")


@pytest.fixture(scope="module")
def dns(base_dir):
    d = DNSServer(make_dir(base_dir, "dns-"))
    d.mx("mx-order.test", "mx1.mx-order.test", 10)      # down
    d.mx("mx-order.test", "mx2.mx-order.test", 20)      # up
    d.a("mx1.mx-order.test", MX1)
    d.a("mx2.mx-order.test", MX2)
    d.a("nomx.test", NOMX)                              # implicit MX (A only)
    d.null_mx("nullmx.test")
    d.mx("equal.test", "a.equal.test", 10)
    d.mx("equal.test", "b.equal.test", 10)
    d.a("a.equal.test", EQ_A)
    d.a("b.equal.test", EQ_B)
    d.a("mx.test.example", TLSHOST)                     # the test certificate's name
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def mx_sinks():
    sinks = {h: Sink(h, MX_PORT).start() for h in (MX2, NOMX, EQ_A, EQ_B)}
    yield sinks
    for s in sinks.values():
        s.stop()


@pytest.fixture
def sink():
    s = Sink(HOST, free_port()).start()
    yield s
    s.stop()


def qconf(dns, queue=None, **sections):
    """Config overrides for a delivering gateway: our resolver, short retries."""
    q = {"resolver": dns.address, "smtp_port": MX_PORT, "retry_min": "1s",
         "retry_max": "2s", "connection_reuse_time": "1s", "connect_timeout": "5s"}
    q.update(queue or {})
    out = {"queue": q}
    out.update(sections)
    return out


def send(gw, rcpts, sender="sender@other.test", listener="out", msg=None):
    """One message through a fresh connection; returns (queue id, Message-ID)."""
    msg = msg or make_message(sender, rcpts[0])
    c = SMTPConn.open(gw, listener)
    c.ehlo()
    qid = c.send_message(sender, rcpts, msg).queued_id()
    c.cmd("QUIT")
    c.close()
    return qid, msgid_of(msg)


def queue_cmd(gw, *args):
    return run_tool([gw.binary, "queue", "-c", gw.cfg_path, *args], timeout=30)


class DeliveryLine:
    """A recipient's delivery log line; groups() is (relay, dsn, reply)."""

    def __init__(self, m):
        self.m = m

    def groups(self):
        return self.m["relay"], self.m["dsn"], self.m["reply"]


def delivery_line(gw, qid, rcpt, status, timeout=30):
    # The gateway's fields first; the next hop, the address and the reply
    # (not the gateway's) last, quoted.
    return DeliveryLine(gw.wait_for_log(
        rf"queue\[\d+\] info: id={qid} status={status} dsn=(?P<dsn>\S+) delay=[\d.]+ "
        rf"attempts=\d+ relay=\"(?P<relay>[^\"]*)\" to=\"<{re.escape(rcpt)}>\" "
        rf"reply=\"(?P<reply>(?:[^\"\\]|\\.)*)\"$", timeout=timeout))


def wait_removed(gw, qid, timeout=30):
    wait_until(lambda: qid not in gw.incoming(), timeout, f"{qid} to leave incoming/")


def dsn_parts(msg_bytes):
    m = email.message_from_bytes(msg_bytes)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    parts = {p.get_content_type(): p for p in m.get_payload()}
    assert set(parts) >= {"text/plain", "message/delivery-status"}, list(parts)
    status = parts["message/delivery-status"].get_payload()
    blocks = [dict(b.items()) for b in status]
    return m, blocks


# ---------------------------------------------------------------- smarthost

def test_smarthost_one_transaction_for_all_recipients(make_gateway, dns, sink):
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}"}))
    rcpts = ["a@example.test", "b@far.test", "c@other.test"]
    qid, msgid = send(gw, rcpts)
    sink.wait_for(lambda ms: len(ms) >= 1)
    # Every recipient is logged as sent before we count the transactions.
    for r in rcpts:
        gw.wait_for_log(rf"id={qid} status=sent .*to=\"<{re.escape(r)}>\"")
    got = sink.snapshot()
    assert len(got) == 1, "all recipients of one destination go in one transaction"
    assert sorted(got[0].rcpt_tos) == sorted(rcpts)
    assert got[0].mail_from == "sender@other.test"
    assert got[0].message_id == msgid
    assert b"Received: from client.test.example" in got[0].data
    for r in rcpts:
        relay, dsn, reply = delivery_line(gw, qid, r, "sent").groups()
        assert relay == f"{HOST}[{HOST}]:{sink.port}" and dsn == "2.0.0", (relay, dsn)
        assert reply.startswith("250")
    wait_removed(gw, qid)
    gw.wait_for_log(rf"id={qid} removed")


def test_connection_reused_for_next_message(make_gateway, dns, sink):
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}",
                                  "connection_reuse_time": "30s"}))
    mark = gw.log_mark()
    for i in range(3):
        send(gw, [f"u{i}@far.test"])
        sink.wait_for(lambda ms, n=i + 1: len(ms) >= n)
    # one greeting for three transactions
    greetings = re.findall(r"dest=smarthost s< 220 ", gw.log_text()[mark:])
    assert len(greetings) == 1, greetings


def test_split_by_max_recipients_per_transaction(make_gateway, dns, sink):
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}",
                                  "max_recipients_per_transaction": 2}))
    rcpts = [f"r{i}@far.test" for i in range(5)]
    qid, msgid = send(gw, rcpts)
    sink.wait_for(lambda ms: sum(len(m.rcpt_tos) for m in ms) >= 5)
    got = sink.snapshot()
    assert sorted(len(m.rcpt_tos) for m in got) == [1, 2, 2]
    assert {m.message_id for m in got} == {msgid}
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(rcpts)
    wait_removed(gw, qid)


# ---------------------------------------------------------------- routes and MX

def test_route_per_domain_and_mx_order(make_gateway, dns, mx_sinks, sink):
    """example.test goes to its route's next hop; mx-order.test to its second
    MX host (the first is down); nomx.test to its A record."""
    gw = make_gateway(qconf(dns, **{
        "route internal": {"domains": "example.test", "nexthop": f"[{HOST}]:{sink.port}"}}))
    for s in mx_sinks.values():
        s.messages.clear()
    qid, msgid = send(gw, ["user@example.test", "x@mx-order.test", "y@nomx.test"])
    sink.wait_for(lambda ms: len(ms) == 1)
    assert sink.snapshot()[0].rcpt_tos == ["user@example.test"]
    mx_sinks[MX2].wait_for(lambda ms: len(ms) == 1)
    assert mx_sinks[MX2].snapshot()[0].rcpt_tos == ["x@mx-order.test"]
    mx_sinks[NOMX].wait_for(lambda ms: len(ms) == 1)
    assert mx_sinks[NOMX].snapshot()[0].rcpt_tos == ["y@nomx.test"]
    relay, _, _ = delivery_line(gw, qid, "x@mx-order.test", "sent").groups()
    assert relay.startswith(f"mx2.mx-order.test[{MX2}]"), relay
    gw.wait_for_log(rf"failed relay=\"mx1.mx-order.test\[{re.escape(MX1)}\]:{MX_PORT}\"")
    relay, _, _ = delivery_line(gw, qid, "y@nomx.test", "sent").groups()
    assert relay.startswith(f"nomx.test[{NOMX}]"), relay
    relay, _, _ = delivery_line(gw, qid, "user@example.test", "sent").groups()
    assert relay == f"{HOST}[{HOST}]:{sink.port}"
    wait_removed(gw, qid)


def test_mx_random_order_among_equal_preferences(make_gateway, dns, mx_sinks):
    gw = make_gateway(qconf(dns, {"connection_reuse_time": "off"}))
    for s in mx_sinks.values():
        s.messages.clear()
    n = 14
    for i in range(n):
        send(gw, [f"u{i}@equal.test"])
        wait_until(lambda i=i: len(mx_sinks[EQ_A].snapshot()) + len(mx_sinks[EQ_B].snapshot())
                   >= i + 1, 20, "delivery to equal.test")
    a, b = len(mx_sinks[EQ_A].snapshot()), len(mx_sinks[EQ_B].snapshot())
    assert a + b == n
    assert a > 0 and b > 0, f"equal preferences must be tried in random order (a={a}, b={b})"


def test_null_mx_and_nxdomain_bounce_at_once(make_gateway, dns, mx_sinks):
    """RFC 7505: a null MX bounces without any retry; so does NXDOMAIN. The DSN
    goes back to the sender (at nomx.test, whose sink we read)."""
    gw = make_gateway(qconf(dns))
    mx_sinks[NOMX].messages.clear()
    qid, msgid = send(gw, ["nobody@nullmx.test", "ghost@nosuch.test"],
                      sender="author@nomx.test")
    _, dsn, reply = delivery_line(gw, qid, "nobody@nullmx.test", "bounced").groups()
    assert dsn == "5.1.10", (dsn, reply)
    _, dsn, _ = delivery_line(gw, qid, "ghost@nosuch.test", "bounced").groups()
    assert dsn == "5.1.2"
    got = mx_sinks[NOMX].wait_for(lambda ms: [m for m in ms if m.mail_from in ("", "<>")],
                                  what="the DSN")
    assert len(got) == 1, "one DSN for both recipients"
    d = got[0]
    assert d.rcpt_tos == ["author@nomx.test"]
    m, blocks = dsn_parts(d.data)
    assert m["Auto-Submitted"] == "auto-replied"
    per_rcpt = {b["Final-Recipient"]: b for b in blocks if "Final-Recipient" in b}
    assert per_rcpt["rfc822; nobody@nullmx.test"]["Status"] == "5.1.10"
    assert per_rcpt["rfc822; ghost@nosuch.test"]["Status"] == "5.1.2"
    assert all(b["Action"] == "failed" for b in per_rcpt.values())
    assert msgid.encode() in d.data, "the original header is attached"
    wait_removed(gw, qid)
    assert not re.search(rf"id={qid} .*status=deferred", gw.log_text())


# ---------------------------------------------------------------- outcomes

def test_5xx_bounce_partial_acceptance_and_deferral(make_gateway, dns, sink):
    """One transaction, three recipients: 250, 550 and 450. The 250 is
    delivered, the 550 bounces (DSN to the sender), the 450 stays deferred."""
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}", "retry_min": "60s",
                                  "retry_max": "60s"}))
    qid, msgid = send(gw, ["ok@far.test", "reject-a@far.test", "defer-b@far.test"],
                      sender="author@origin.test")
    delivery_line(gw, qid, "ok@far.test", "sent")
    relay, dsn, reply = delivery_line(gw, qid, "reject-a@far.test", "bounced").groups()
    assert dsn == "5.1.1" and reply.startswith("550 5.1.1"), (dsn, reply)
    _, dsn, reply = delivery_line(gw, qid, "defer-b@far.test", "deferred").groups()
    assert dsn == "4.2.1" and reply.startswith("450"), reply
    msgs = sink.wait_for(lambda ms: len(ms) >= 2)
    orig = [m for m in msgs if m.mail_from not in ("", "<>")]
    dsns = [m for m in msgs if m.mail_from in ("", "<>")]
    assert len(orig) == 1 and orig[0].rcpt_tos == ["ok@far.test"]
    assert len(dsns) == 1 and dsns[0].rcpt_tos == ["author@origin.test"]
    _, blocks = dsn_parts(dsns[0].data)
    (b,) = [b for b in blocks if "Final-Recipient" in b]
    assert b["Final-Recipient"] == "rfc822; reject-a@far.test"
    assert b["Status"] == "5.1.1" and b["Remote-MTA"] == f"dns; {HOST}"
    assert b["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    gw.wait_for_log(rf"id={qid} bounce=\w+ nrcpt=1 to=\"<author@origin.test>\"")
    # still queued for the deferred recipient, with its state on disk
    r = queue_cmd(gw, "show", qid)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "status=deferred" in out.split("\n")[0], out
    assert re.search(r"rcpt=<ok@far.test> status=sent", out), out
    assert re.search(r"rcpt=<reject-a@far.test> status=bounced", out), out
    assert re.search(r"rcpt=<defer-b@far.test> status=deferred dsn=4.2.1", out), out
    assert (gw.spool / "state" / qid).is_file()
    # delete: the message and its state are gone
    r = queue_cmd(gw, "delete", qid)
    assert r.returncode == 0, r.stderr
    wait_removed(gw, qid)
    wait_until(lambda: not (gw.spool / "state" / qid).exists(), 10, "state file removed")


def test_data_5xx_bounces_every_recipient(make_gateway, dns, sink):
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}"}))
    sink.data_reply = "554 5.7.1 Message refused by policy"
    qid, _ = send(gw, ["a@far.test", "b@far.test"], sender="author@origin.test")
    for r in ("a@far.test", "b@far.test"):
        _, dsn, reply = delivery_line(gw, qid, r, "bounced").groups()
        assert dsn == "5.7.1" and reply.startswith("554 5.7.1")
    gw.wait_for_log(rf"id={qid} bounce=\w+ nrcpt=2 to=\"<author@origin.test>\"")
    wait_removed(gw, qid)


def test_bounce_of_a_bounce_is_not_sent(make_gateway, dns, sink):
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}"}))
    qid, _ = send(gw, ["reject-x@far.test"], sender="")
    delivery_line(gw, qid, "reject-x@far.test", "bounced")
    gw.wait_for_log(rf"id={qid} bounce not sent: the sender is the null sender")
    wait_removed(gw, qid)
    assert sink.snapshot() == []


def test_next_hop_down_then_back(make_gateway, dns):
    """Deferred while the next hop is down (retried with back-off), delivered
    once it is up; the queue commands show the deferral."""
    port = free_port()
    gw = make_gateway(qconf(dns, **{"route down": {"domains": "down.test",
                                                   "nexthop": f"[{HOST}]:{port}"}}))
    qid, msgid = send(gw, ["user@down.test"])
    _, dsn, reply = delivery_line(gw, qid, "user@down.test", "deferred").groups()
    assert dsn.startswith("4.") and "connect" in reply, reply
    r = queue_cmd(gw, "list")
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.decode().split("\n") if l.startswith(qid)]
    assert line and "status=deferred" in line[0] or "status=active" in line[0], r.stdout
    assert "nrcpt=1 pending=1" in line[0]
    # a second attempt after the back-off, still down
    gw.wait_for_log(rf"id={qid} status=deferred .* attempts=2 .*to=\"<user@down.test>\"",
                    timeout=20)
    s = Sink(HOST, port).start()
    try:
        got = s.wait_for(lambda ms: len(ms) >= 1, timeout=30)
        assert got[0].message_id == msgid
        delivery_line(gw, qid, "user@down.test", "sent")
        wait_removed(gw, qid)
    finally:
        s.stop()


def test_hold_release_flush_delete(make_gateway, dns):
    port = free_port()
    gw = make_gateway(qconf(dns, {"retry_min": "1h", "retry_max": "1h"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    qid, msgid = send(gw, ["user@down.test"])
    delivery_line(gw, qid, "user@down.test", "deferred")
    wait_until(lambda: f"{qid} status=deferred" in queue_cmd(gw, "list").stdout.decode(), 10,
               "deferred in the list")
    assert queue_cmd(gw, "hold", qid).returncode == 0
    assert f"{qid} status=hold" in queue_cmd(gw, "list").stdout.decode()
    wait_until(lambda: "hold 1" in (gw.spool / "state" / qid).read_text(), 10, "hold on disk")
    # flush does not touch held mail
    assert queue_cmd(gw, "flush").returncode == 0
    assert f"{qid} status=hold" in queue_cmd(gw, "list").stdout.decode()
    s = Sink(HOST, port).start()
    try:
        assert queue_cmd(gw, "release", qid).returncode == 0
        s.wait_for(lambda ms: len(ms) >= 1, timeout=20)
        wait_removed(gw, qid)
        # flush: a message waiting an hour goes now
        s.stop()
        qid2, _ = send(gw, ["second@down.test"])
        delivery_line(gw, qid2, "second@down.test", "deferred")
        s = Sink(HOST, port).start()
        r = queue_cmd(gw, "flush")
        assert r.returncode == 0 and b"flushed=" in r.stdout, r
        s.wait_for(lambda ms: len(ms) >= 1, timeout=20)
        wait_removed(gw, qid2)
    finally:
        s.stop()
    # delete of an unknown id fails cleanly
    r = queue_cmd(gw, "delete", "0" * 20)
    assert r.returncode == 1 and b"no such message" in r.stderr


def test_queue_survives_restart(make_gateway, dns):
    """A deferred message is recovered from the spool after a restart."""
    port = free_port()
    gw = make_gateway(qconf(dns, {"retry_min": "1h", "retry_max": "1h"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    qid, msgid = send(gw, ["user@down.test"])
    delivery_line(gw, qid, "user@down.test", "deferred")
    wait_until(lambda: (gw.spool / "state" / qid).is_file(), 10, "the state file")
    gw.stop()
    assert qid in gw.incoming()
    s = Sink(HOST, port).start()
    try:
        gw.start()
        gw.wait_for_log(r"queue ready messages=1 ")
        # it waits for its retry time (1h); flush sends it now
        assert queue_cmd(gw, "flush").returncode == 0
        got = s.wait_for(lambda ms: len(ms) >= 1, timeout=20)
        assert got[0].message_id == msgid
        wait_removed(gw, qid)
    finally:
        s.stop()


def test_max_lifetime_expires_into_a_bounce(make_gateway, dns, sink):
    port = free_port()
    gw = make_gateway(qconf(dns, {"max_lifetime": "2s", "smarthost": f"[{HOST}]:{sink.port}"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    qid, _ = send(gw, ["user@down.test"], sender="author@origin.test")
    _, dsn, reply = delivery_line(gw, qid, "user@down.test", "expired", timeout=20).groups()
    assert dsn.startswith("4.") and "expired" in reply
    got = sink.wait_for(lambda ms: [m for m in ms if m.mail_from in ("", "<>")])
    _, blocks = dsn_parts(got[0].data)
    (b,) = [b for b in blocks if "Final-Recipient" in b]
    assert b["Action"] == "failed"
    wait_removed(gw, qid)


def test_delay_warning(make_gateway, dns, sink):
    port = free_port()
    gw = make_gateway(qconf(dns, {"delay_warning": "1s", "smarthost": f"[{HOST}]:{sink.port}"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    qid, _ = send(gw, ["user@down.test"], sender="author@origin.test")
    gw.wait_for_log(rf"id={qid} delay_warning=\w+ nrcpt=\d+ to=\"<author@origin.test>\"",
                    timeout=20)
    got = sink.wait_for(lambda ms: [m for m in ms if m.mail_from in ("", "<>")])
    m, blocks = dsn_parts(got[0].data)
    assert "Delayed" in m["Subject"]
    (b,) = [b for b in blocks if "Final-Recipient" in b]
    assert b["Action"] == "delayed" and b["Status"].startswith("4.")
    assert queue_cmd(gw, "delete", qid).returncode == 0


# ---------------------------------------------------------------- Maildir, TLS, limits

def test_maildir_route(make_gateway, dns, base_dir):
    mdir = make_dir(base_dir, "maildir-")
    os.chown(mdir, *queue_ids())
    gw = make_gateway(qconf(dns, **{"route local": {"domains": "example.test",
                                                    "type": "maildir",
                                                    "maildir": f"{mdir}/%d/%u"}}))
    qid, msgid = send(gw, ["alice@example.test", "bob@example.test"])
    for user in ("alice", "bob"):
        new = mdir / "example.test" / user / "new"
        wait_until(lambda new=new: new.is_dir() and os.listdir(new), 15, f"{new}")
        data = (new / os.listdir(new)[0]).read_bytes()
        assert data.startswith(b"Return-Path: <sender@other.test>\nDelivered-To: ")
        assert msgid.encode() in data and b"\r\n" not in data
        relay, _, _ = delivery_line(gw, qid, f"{user}@example.test", "sent").groups()
        assert relay == "maildir:local"
    wait_removed(gw, qid)


def _server_tls_context(tls_files):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    return ctx


def test_starttls_opportunistic_and_required(make_gateway, dns, tls_files):
    """Opportunistic STARTTLS by default; tls = required with tls_ca_file
    verifies the next hop's certificate; without the CA it is deferred."""
    port = free_port()
    s = Sink(TLSHOST, port, tls_context=_server_tls_context(tls_files)).start()
    cert = tls_files[0]
    try:
        gw = make_gateway(qconf(dns, **{
            "route opp": {"domains": "opp.test", "nexthop": f"[{HOST}]:{port}"},
            "route req": {"domains": "req.test", "nexthop": f"[mx.test.example]:{port}",
                          "tls": "required", "tls_ca_file": str(cert)},
            "route bad": {"domains": "bad.test", "nexthop": f"[mx.test.example]:{port}",
                          "tls": "required"},
        }))
        s2 = Sink(HOST, port, tls_context=_server_tls_context(tls_files)).start()
        try:
            q1, _ = send(gw, ["u@opp.test"])
            s2.wait_for(lambda ms: len(ms) >= 1)
            assert s2.snapshot()[0].tls, "opportunistic STARTTLS was not used"
        finally:
            s2.stop()
        q2, _ = send(gw, ["u@req.test"])
        got = s.wait_for(lambda ms: len(ms) >= 1)
        assert got[0].tls and got[0].rcpt_tos == ["u@req.test"]
        q3, _ = send(gw, ["u@bad.test"])
        _, dsn, reply = delivery_line(gw, q3, "u@bad.test", "deferred").groups()
        assert "STARTTLS" in reply or "TLS" in reply, reply
        assert len(s.snapshot()) == 1
    finally:
        s.stop()


def test_queue_full_defers_new_connections(make_gateway, dns):
    port = free_port()
    gw = make_gateway(qconf(dns, {"max_queue_size": 2, "retry_min": "1h", "retry_max": "1h"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    q1, _ = send(gw, ["a@down.test"])
    q2, _ = send(gw, ["b@down.test"])
    gw.wait_for_log(r"alert=queue_full queued=2 max_queue_size=2")
    c = SMTPConn(HOST, gw.port("in"))
    r = c.read_reply()
    r.check(421, "4.3.2")
    c.wait_closed()
    gw.wait_for_log(r"refuse client=127\.0\.0\.1 listener=in reason=max_queue_size")
    assert queue_cmd(gw, "delete", q1).returncode == 0
    gw.wait_for_log(r"alert=queue_full cleared")
    send(gw, ["c@down.test"])


def test_check_config_reports_queue_errors(make_gateway):
    gw = make_gateway({"queue": {"retry_min": "soon", "smarthost": "[1.2.3.4"},
                       "route r1": {"domains": "x.test", "type": "maildir"}}, start=False)
    r = run_tool([gw.binary, "check-config", "-c", gw.cfg_path])
    assert r.returncode == 78  # EX_CONFIG
    err = r.stderr.decode()
    assert re.search(rf":{gw.config_line(r'^retry_min = soon$')}: retry_min = soon", err), err
    assert "smarthost = [1.2.3.4: missing ']'" in err
    assert "[route r1] type = maildir needs maildir = PATH" in err


# ---------------------------------------------------------------- crash test

def _load(gw, stop, accepted, errors, idx):
    n = 0
    while not stop.is_set():
        n += 1
        msg = make_message("load@other.test", f"sink{idx}@far.test",
                           subject=f"load {idx}-{n}", body="x" * 400 + "\r\n")
        try:
            c = SMTPConn.open(gw, "out", timeout=10)
            c.ehlo()
            r = c.send_message("load@other.test", [f"sink{idx}@far.test"], msg)
            if r.code == 250:
                accepted.append(msgid_of(msg))
            c.close()
        except (ConnectionClosed, OSError, TimeoutError, AssertionError) as e:
            errors.append(repr(e))
            time.sleep(0.05)


def test_kill9_during_load_loses_nothing(make_gateway, dns, sink):
    """Every message that got 250 reaches the sink although SMTP workers, the
    queue process, the auth process and finally the master are killed with
    SIGKILL while the load runs."""
    gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{sink.port}",
                                  "max_connections_per_destination": 8},
                            server={"workers": 2}))
    accepted, errors = [], []
    stop = threading.Event()
    senders = [threading.Thread(target=_load, args=(gw, stop, accepted, errors, i))
               for i in range(6)]
    for t in senders:
        t.start()
    kills = 0
    rnd = random.Random(5)
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.3, 0.8))
            kids = gw.children()
            if kids:
                os.kill(rnd.choice(kids), signal.SIGKILL)
                kills += 1
        # the master itself, under load; then a restart
        old_kids = gw.children()
        os.kill(gw.pid, signal.SIGKILL)
        gw.proc.wait(10)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in senders:
            t.join(30)
    # They die with the master (PR_SET_PDEATHSIG); wait until none of them
    # holds a listening socket, so the new master can bind.
    wait_until(lambda: not _pids_holding(old_kids, gw.listening_inodes()), 15,
               "the old workers to release the listeners")
    gw.start()
    want = set(accepted)
    assert len(want) > 20, f"too few messages accepted ({len(want)}); errors: {errors[:5]}"
    sink.wait_for(lambda ms: want <= {m.message_id for m in ms}, timeout=90,
                  what=f"all {len(want)} accepted messages at the sink")
    got = [m.message_id for m in sink.snapshot()]
    assert want <= set(got)
    # Only deliveries cut by the death of the queue process may repeat: at
    # most the transactions in flight (max_connections_per_destination) and
    # the removals not yet done at each death.
    dups = len(got) - len(set(got))
    deaths = len(re.findall(r"queue pid=\d+ killed by signal 9", gw.log_text())) + 1
    assert dups <= deaths * 20, f"{dups} duplicates for {deaths} deaths of the queue"
    wait_until(lambda: not gw.incoming(), 60, "the queue to drain")
    print(f"\ncrash test: {len(want)} accepted, {len(got)} delivered, {dups} duplicates, "
          f"{kills} child kills ({deaths - 1} of the queue) + master kill, "
          f"{len(errors)} client errors")


def test_sighup_reloads_routes(make_gateway, dns, sink):
    """SIGHUP to the master: the queue re-reads [queue] and [route]."""
    port = free_port()
    gw = make_gateway(qconf(dns, {"retry_min": "1h", "retry_max": "1h"},
                            **{"route down": {"domains": "down.test",
                                              "nexthop": f"[{HOST}]:{port}"}}))
    qid, msgid = send(gw, ["user@down.test"])
    delivery_line(gw, qid, "user@down.test", "deferred")
    gw.sections["route down"]["nexthop"] = f"[{HOST}]:{sink.port}"
    gw.write_config()
    mark = gw.log_mark()
    gw.hup()
    gw.wait_for_log(r"queue\[\d+\] info: reload: queue config reloaded routes=1", since=mark)
    assert queue_cmd(gw, "flush").returncode == 0
    got = sink.wait_for(lambda ms: len(ms) >= 1)
    assert got[0].message_id == msgid
    wait_removed(gw, qid)


def test_hundred_reloads_while_mail_flows(make_gateway, dns):
    """SIGHUP to the master 101 times while messages flow, the smarthost moving
    between two sinks at every reload: each reload makes a new config
    generation (there is no limit on their number), every accepted message
    arrives, the queue process never dies, and every old generation is freed
    once its jobs are back. Then a changed smarthost takes effect at once even
    while a connection to the old one waits idle for reuse. Built with ASan
    (make asan), the queue process must also exit without a leak report."""
    a = Sink(HOST, free_port()).start()
    b = Sink(HOST, free_port()).start()
    generation = 1  # the one of the start

    def reload(sink, **queue):
        nonlocal generation
        gw.sections["queue"]["smarthost"] = f"[{HOST}]:{sink.port}"
        gw.sections["queue"].update(queue)
        gw.write_config()
        mark = gw.log_mark()
        gw.hup()
        generation += 1
        # One at a time: signals sent faster than they are handled would
        # merge into one.
        return gw.wait_for_log(rf"queue\[\d+\] info: reload: queue config reloaded routes=0 "
                               rf"generation={generation} generations_in_use=(\d+)$", since=mark)

    try:
        gw = make_gateway(qconf(dns, {"smarthost": f"[{HOST}]:{a.port}",
                                      "max_connections_per_destination": 4}))
        accepted, errors = [], []
        stop = threading.Event()
        senders = [threading.Thread(target=_load, args=(gw, stop, accepted, errors, i))
                   for i in range(3)]
        for t in senders:
            t.start()
        try:
            for i in range(1, 102):
                reload(b if i % 2 else a)
        finally:
            stop.set()
            for t in senders:
                t.join(30)
        assert generation == 102
        assert len(accepted) >= 20, (f"too few messages flowed during the reloads "
                                     f"({len(accepted)}); errors: {errors[:5]}")
        # Nothing accepted is lost, whichever generation it was sent under.
        want = set(accepted)
        got = lambda: {m.message_id for m in a.snapshot() + b.snapshot()}  # noqa: E731
        wait_until(lambda: want <= got(), 90, f"all {len(want)} accepted messages at a sink")
        wait_until(lambda: not gw.incoming(), 60, "the queue to drain")

        # A connection to a stays open for reuse; the smarthost moves to b:
        # new mail must not take the old connection.
        reload(a, connection_reuse_time="60s")
        first = send(gw, ["idle@far.test"])[1]
        a.wait_for(lambda ms: first in {m.message_id for m in ms})
        reload(b)
        probes = [send(gw, [f"probe{n}@far.test"])[1] for n in range(3)]
        b.wait_for(lambda ms: set(probes) <= {m.message_id for m in ms},
                   what="the probes at the new smarthost")
        assert not set(probes) & {m.message_id for m in a.snapshot()}
        wait_until(lambda: not gw.incoming(), 30, "the probes to leave the queue")

        # Every job is back: only the current generation is left, every
        # other one was freed.
        assert reload(b).group(1) == "1"
        released = {int(n) for n in
                    re.findall(r"queue config generation=(\d+) released", gw.log_text())}
        assert released == set(range(1, generation)), sorted(set(range(1, generation))
                                                              - released)
        queue_pids = gw.logged_pids("queue")
        assert len(queue_pids) == 1, f"the queue process was restarted: {queue_pids}"
        gw.stop()
        qpid = queue_pids.pop()
        log = gw.log_text()
        assert not re.search(rf"^=={qpid}==ERROR: \w+Sanitizer", log, re.M), \
            gw.log_tail(lines=60)
        assert re.search(rf"queue pid={qpid} exited status=0$", log, re.M), gw.log_tail(lines=30)
        print(f"\nreload test: {generation - 1} reloads, {len(want)} messages accepted, "
              f"{len(a.snapshot())} + {len(b.snapshot())} delivered, {len(errors)} client "
              f"errors")
    finally:
        a.stop()
        b.stop()
