# SPDX-License-Identifier: ISC
"""Stopping (RFC 5321 3.8): SIGTERM answers idle sessions 421 4.3.2 and
closes them, lets a session in DATA finish and get its 250 within
shutdown_timeout, lets the queue finish a delivery in flight (or leaves it
in the spool when shutdown_timeout runs out), and exits 0; a second SIGTERM,
or SIGQUIT, stops at once. Nothing that got a 250 is lost."""

import os
import re
import signal
import socket
import subprocess
import time

from harness import (HOST, SMTPConn, free_port, make_message, msgid_of, submission_conn,
                     wait_until)
from sink_fixture import Sink


def start_data(gw, listener="in"):
    """A session in DATA with the first half of a message sent."""
    c = SMTPConn.open(gw, listener, timeout=30)
    c.ehlo()
    c.cmd("MAIL FROM:<s@other.test>").check(250)
    c.cmd("RCPT TO:<user@example.test>").check(250)
    c.cmd("DATA").check(354)
    msg = make_message(body="first half\r\n" * 20 + "second half\r\n")
    head, tail = msg[:len(msg) // 2], msg[len(msg) // 2:]
    c.send(head)
    return c, tail, msgid_of(msg)


def stopping(gw, what=r"worker=\d+ stopping sessions="):
    gw.wait_for_log(what, timeout=10)


def test_idle_sessions_get_421_and_data_finishes(make_gateway):
    gw = make_gateway({"server": {"shutdown_timeout": 20}})
    idle = SMTPConn.open(gw, "in")
    idle.ehlo()
    in_auth = submission_conn(gw)            # idle over TLS
    data, tail, msgid = start_data(gw)
    t0 = time.monotonic()
    os.kill(gw.pid, signal.SIGTERM)
    stopping(gw)
    # Idle sessions: 421 4.3.2 right away, then the connection closes.
    idle.read_reply(timeout=10).check(421, "4.3.2")
    idle.wait_closed()
    in_auth.read_reply(timeout=10).check(421, "4.3.2")
    in_auth.wait_closed()
    # No new connection is accepted.
    wait_until(lambda: _refused(gw.port("in")), 10, "the listener to close")
    # The session in DATA finishes: its 250, then the 421.
    assert gw.running()
    data.send(tail + ".\r\n")
    qid = data.read_reply(timeout=10).queued_id()
    data.read_reply(timeout=10).check(421, "4.3.2")
    data.wait_closed()
    assert gw.proc.wait(20) == 0
    assert time.monotonic() - t0 < 20, "the stop waited for the whole shutdown_timeout"
    assert msgid.encode() in gw.spool_path(qid).read_bytes()
    assert re.search(r"master\[\d+\] info: stopped", gw.log_text())


def test_authrelay_stop_drains_as_sigterm_does(make_gateway):
    """The admin's `authrelay stop` (the control socket) is the same stop:
    an idle session gets 421 4.3.2, a session in DATA finishes with its 250,
    and the command returns once the master has exited."""
    gw = make_gateway({"server": {"shutdown_timeout": 20}})
    idle = SMTPConn.open(gw, "in")
    idle.ehlo()
    data, tail, msgid = start_data(gw)
    cmd = subprocess.Popen([gw.binary, "stop", "-c", str(gw.cfg_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stopping(gw)
        idle.read_reply(timeout=10).check(421, "4.3.2")
        idle.wait_closed()
        assert cmd.poll() is None, "stop returned while a session was in DATA"
        data.send(tail + ".\r\n")
        qid = data.read_reply(timeout=10).queued_id()
        data.read_reply(timeout=10).check(421, "4.3.2")
        data.wait_closed()
        out, err = cmd.communicate(timeout=30)
    finally:
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
    assert cmd.returncode == 0, (out, err)
    assert out.decode().split() == ["stopping", "stopped"], (out, err)
    assert gw.proc.wait(5) == 0
    assert msgid.encode() in gw.spool_path(qid).read_bytes()
    assert re.search(r"master\[\d+\] info: stopping \(authrelay stop\)", gw.log_text())


def _refused(port):
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_shutdown_timeout_bounds_a_session_in_data(make_gateway):
    gw = make_gateway({"server": {"shutdown_timeout": 2}})
    data, tail, _ = start_data(gw)
    t0 = time.monotonic()
    os.kill(gw.pid, signal.SIGTERM)
    r = data.read_reply(timeout=15)           # never finished by the client
    r.check(421, "4.3.2")
    data.wait_closed()
    assert gw.proc.wait(15) == 0
    took = time.monotonic() - t0
    assert 1.5 <= took < 10, f"stopped after {took:.1f} s with shutdown_timeout = 2"
    assert gw.incoming() == [], "an unfinished message was kept"


def test_second_sigterm_stops_at_once(make_gateway):
    gw = make_gateway({"server": {"shutdown_timeout": 60}})
    data, tail, _ = start_data(gw)
    os.kill(gw.pid, signal.SIGTERM)
    stopping(gw)
    t0 = time.monotonic()
    os.kill(gw.pid, signal.SIGTERM)
    data.read_reply(timeout=10).check(421, "4.3.2")
    data.wait_closed()
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert re.search(r"stopping at once \(signal 15\)", gw.log_text())


def test_sigquit_stops_at_once(make_gateway):
    gw = make_gateway({"server": {"shutdown_timeout": 60}})
    idle = SMTPConn.open(gw, "in")
    data, tail, _ = start_data(gw)
    t0 = time.monotonic()
    os.kill(gw.pid, signal.SIGQUIT)
    data.read_reply(timeout=10).check(421, "4.3.2")
    idle.read_reply(timeout=10).check(421, "4.3.2")
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5


def _queue_conf(sink, timeout):
    return {"server": {"shutdown_timeout": timeout},
            "queue": {"smarthost": f"[{HOST}]:{sink.port}", "retry_min": "1s",
                      "retry_max": "2s"}}


def _send(gw):
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    msg = make_message()
    qid = c.send_message("s@other.test", ["user@example.test"], msg).queued_id()
    c.cmd("QUIT")
    return qid, msgid_of(msg)


def _in_flight(sink):
    """The queue's delivery is under way: the sink holds back its reply."""
    wait_until(lambda: sink.data_started >= 1, 20, "a delivery to reach the sink's DATA")


def test_queue_finishes_a_delivery_in_flight(make_gateway):
    sink = Sink(HOST, free_port()).start()
    sink.data_delay = 3
    try:
        gw = make_gateway(_queue_conf(sink, 20))
        qid, msgid = _send(gw)
        _in_flight(sink)
        mark = gw.log_mark()
        os.kill(gw.pid, signal.SIGTERM)
        gw.wait_for_log(r"queue stopping \(signal 15\)", since=mark)
        assert gw.proc.wait(20) == 0
        got = [m.message_id for m in sink.snapshot()]
        assert got == [msgid], got
        assert qid not in gw.incoming(), "a delivered message stayed in the spool"
        assert re.search(r"queue stopping: no delivery in flight", gw.log_text()[mark:])
    finally:
        sink.stop()


def test_queue_leaves_a_slow_delivery_for_the_next_start(make_gateway):
    sink = Sink(HOST, free_port()).start()
    sink.data_delay = 30
    try:
        gw = make_gateway(_queue_conf(sink, 2))
        qid, msgid = _send(gw)
        _in_flight(sink)
        os.kill(gw.pid, signal.SIGTERM)
        assert gw.proc.wait(20) == 0
        assert re.search(r"queue stopping: shutdown_timeout=2 reached active=1",
                         gw.log_text()), "the delivery was not in flight at the stop"
        assert qid in gw.incoming(), "the message left the spool undelivered"
        sink.data_delay = 0
        gw.start()
        sink.wait_for(lambda ms: msgid in {m.message_id for m in ms}, timeout=30)
    finally:
        sink.stop()
