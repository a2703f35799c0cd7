# SPDX-License-Identifier: ISC
"""What a 250 promises: the spool file's envelope and message, our Received
header and its protocol keyword (RFC 3848), Message-ID/Date added on
submission (RFC 6409 8.3), strip_received / insert_received, ownership, and
durability when the worker is killed right after the 250."""

import email.utils
import os
import re
import signal
import stat
import subprocess

import pytest

from harness import (CLIENT_HELO, HOSTNAME, SMTPConn, make_message, msgid_of, nobody_ids, queue_ids,
                     submission_conn, wait_until)


@pytest.fixture(scope="module")
def spgw(module_gateway):
    return module_gateway({
        "listener inopt": {"role": "inbound", "tls": "optional"},
        "listener subplain": {"role": "submission", "tls": "optional",
                              "allow_plaintext_auth": "yes"},
        "listener substrip": {"role": "submission", "tls": "required",
                              "strip_received": "yes"},
        "listener subnorecv": {"role": "submission", "tls": "required",
                               "insert_received": "no"},
        "listener subnoadd": {"role": "submission", "tls": "required",
                              "add_missing_headers": "no"},
        "listener subdom": {"role": "submission", "tls": "required",
                            "default_domain": "example.test"},
    })


def received_protocol(value):
    m = re.search(r"\bwith (ESMTPSA|ESMTPA|ESMTPS|ESMTP|LMTP|SMTP)\b", value)
    assert m, f"no 'with PROTOCOL' in Received: {value}"
    return m.group(1)


def our_received(sp):
    """The first header must be our Received; return its unfolded value."""
    name, value = sp.headers()[0]
    assert name.lower() == "received", f"first header is {name}, not our Received"
    assert re.search(rf"\bby {re.escape(HOSTNAME)}\b", value), value
    return value


def authed(gw, listener, users):
    c = submission_conn(gw, listener)
    c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
    return c


# ---------------------------------------------------------------- envelope

def test_spool_file_envelope_and_message(spgw):
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    msg = make_message("sender@other.test", "user@example.test")
    qid = c.send_message("sender@other.test", ["user@example.test", "second@example.test"],
                         msg, " SIZE=500").queued_id()
    sp = spgw.spool_file(qid)
    assert sp.magic == "AUTHRELAY-SPOOL 1"
    assert sp.get("id") == qid
    assert re.fullmatch(r"\d{10,}", sp.get("time")), sp.get("time")
    assert sp.get("client") == "127.0.0.1"
    assert sp.get("helo") == CLIENT_HELO
    assert sp.get("listener") == "in"
    assert sp.get("protocol") == "ESMTP"
    assert sp.get("tls") == "none"
    assert sp.get("auth") is None, "auth record on an unauthenticated message"
    assert sp.get("mail").startswith("<sender@other.test>"), sp.get("mail")
    assert sp.all("rcpt") == ["<user@example.test>", "<second@example.test>"]
    assert [k for k, _ in sp.records][:2] == ["id", "time"], sp.records
    assert sp.without_first_header() == msg.encode()


def test_envelope_order_of_records(spgw):
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    qid = c.send_message("s@other.test", ["a@example.test", "b@example.test"],
                         make_message()).queued_id()
    keys = [k for k, _ in spgw.spool_file(qid).records]
    assert keys.index("mail") < keys.index("rcpt")
    assert keys[-2:] == ["rcpt", "rcpt"], keys


def test_null_sender_recorded(spgw):
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<>").check(250, "2.1.0")
    c.cmd("RCPT TO:<user@example.test>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message() + ".\r\n")
    assert spgw.spool_file(c.read_reply().queued_id()).get("mail").startswith("<>")


def test_dot_unstuffing_and_crlf(spgw):
    body = ".\r\n..\r\n.starts with a dot\r\nnormal\r\n\r\n"
    msg = make_message(body=body)
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    qid = c.send_message("s@other.test", ["user@example.test"], msg).queued_id()
    sp = spgw.spool_file(qid)
    assert sp.body == body.encode()
    assert b"\n" not in sp.message.replace(b"\r\n", b""), "bare LF in the stored message"


# ---------------------------------------------------------------- Received

def test_received_header_inbound(spgw):
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    qid = c.send_message("s@other.test", ["user@example.test"], make_message()).queued_id()
    value = our_received(spgw.spool_file(qid))
    assert re.search(rf"\bfrom {re.escape(CLIENT_HELO)}\b", value), value
    assert "[127.0.0.1]" in value, value
    assert received_protocol(value) == "ESMTP"
    date = value.rsplit(";", 1)[1].strip()
    assert email.utils.parsedate_to_datetime(date) is not None, value


def send_via(gw, listener, users, how):
    """how: helo | ehlo | starttls | auth (over STARTTLS or implicit TLS) | plainauth"""
    if how in ("helo", "ehlo", "starttls"):
        c = SMTPConn.open(gw, listener)
        if how == "helo":
            c.cmd(f"HELO {CLIENT_HELO}").check(250)
        else:
            c.ehlo()
        if how == "starttls":
            c.starttls()
            c.ehlo()
        sender, rcpt = "s@other.test", "user@example.test"
    elif how == "plainauth":
        c = SMTPConn.open(gw, listener)
        c.ehlo()
        c.auth_plain("alice", users["alice"].password).check(235, "2.7.0")
        sender, rcpt = "alice@example.test", "x@other.test"
    else:
        c = authed(gw, listener, users)
        sender, rcpt = "alice@example.test", "x@other.test"
    qid = c.send_message(sender, [rcpt], make_message(sender, rcpt)).queued_id()
    return gw.spool_file(qid)


@pytest.mark.parametrize("listener,how,proto", [
    ("in", "helo", "SMTP"),
    ("in", "ehlo", "ESMTP"),
    ("inopt", "starttls", "ESMTPS"),
    ("subplain", "plainauth", "ESMTPA"),
    ("sub", "auth", "ESMTPSA"),
    ("subs", "auth", "ESMTPSA"),
])
def test_protocol_keyword(spgw, users, listener, how, proto):
    sp = send_via(spgw, listener, users, how)
    assert received_protocol(our_received(sp)) == proto
    assert sp.get("protocol") == proto
    assert sp.get("listener") == listener
    if proto in ("ESMTPS", "ESMTPSA"):
        assert sp.get("tls") not in (None, "none") and "TLS" in sp.get("tls"), sp.get("tls")
    else:
        assert sp.get("tls") == "none"
    if proto.endswith("A"):
        assert sp.get("auth") == "alice"
    else:
        assert sp.get("auth") is None


def test_strip_received_keeps_ours(spgw, users):
    c = authed(spgw, "substrip", users)
    msg = make_message("alice@example.test", "x@other.test",
                       headers=["Received: from laptop by relay1; Mon, 1 Jan 2024 00:00:00 +0000",
                                "Received: from a (b [10.0.0.1])\r\n\tby relay0; Mon, 1 Jan 2024"],
                       body="Received: this body line is not a header\r\n")
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    recv = sp.header_values("Received")
    assert len(recv) == 1, recv
    our_received(sp)
    assert b"Received: this body line is not a header" in sp.body
    assert msgid_of(msg) in sp.header_values("Message-ID")


def test_received_kept_without_strip(spgw, users):
    c = authed(spgw, "sub", users)
    old = ["Received: from laptop by relay1; Mon, 1 Jan 2024 00:00:00 +0000",
           "Received: from a by relay0; Mon, 1 Jan 2024 00:00:00 +0000"]
    msg = make_message("alice@example.test", "x@other.test", headers=old)
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    recv = sp.header_values("Received")
    assert len(recv) == 3, recv
    assert recv[1:] == [h.split(": ", 1)[1] for h in old]
    assert sp.without_first_header() == msg.encode()


def test_insert_received_no(spgw, users):
    c = authed(spgw, "subnorecv", users)
    msg = make_message("alice@example.test", "x@other.test")
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    assert sp.header_values("Received") == []
    assert sp.message == msg.encode()


# ---------------------------------------------------------------- missing headers

def test_missing_message_id_and_date_added(spgw, users):
    c = authed(spgw, "sub", users)
    msg = make_message("alice@example.test", "x@other.test", msgid=None, date=False)
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    mids = sp.header_values("Message-ID")
    assert len(mids) == 1 and re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", mids[0]), mids
    dates = sp.header_values("Date")
    assert len(dates) == 1 and email.utils.parsedate_to_datetime(dates[0]) is not None, dates
    assert b"Hello." in sp.body


def test_existing_message_id_and_date_kept(spgw, users):
    c = authed(spgw, "sub", users)
    msg = make_message("alice@example.test", "x@other.test")
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    assert sp.header_values("Message-ID") == [msgid_of(msg)]
    assert len(sp.header_values("Date")) == 1
    assert sp.without_first_header() == msg.encode()


def test_only_missing_header_added(spgw, users):
    c = authed(spgw, "sub", users)
    msg = make_message("alice@example.test", "x@other.test", date=False)
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    assert sp.header_values("Message-ID") == [msgid_of(msg)]
    assert len(sp.header_values("Date")) == 1


def test_add_missing_headers_no(spgw, users):
    c = authed(spgw, "subnoadd", users)
    msg = make_message("alice@example.test", "x@other.test", msgid=None, date=False)
    sp = spgw.spool_file(c.send_message("alice@example.test", ["x@other.test"], msg).queued_id())
    assert sp.header_values("Message-ID") == [] and sp.header_values("Date") == []


def test_default_domain_qualifies_bare_sender(spgw, users):
    c = authed(spgw, "subdom", users)
    c.cmd("MAIL FROM:<alice>").check(250, "2.1.0")
    c.cmd("RCPT TO:<x@other.test>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message("alice@example.test", "x@other.test") + ".\r\n")
    sp = spgw.spool_file(c.read_reply().queued_id())
    assert sp.get("mail").startswith("<alice@example.test>"), sp.get("mail")


# ---------------------------------------------------------------- ownership

def test_spool_layout_owners_and_modes(spgw):
    """Each folder belongs to the process that must write it (spool.h): the
    workers create only in tmp/ and add names to incoming/; the queue owns
    incoming/, state/, queue-tmp/ and corrupt/; the spool itself and
    private/ are root's. A message file is the worker's, readable by the
    queue's group, by no one else."""
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    qid = c.send_message("s@other.test", ["user@example.test"], make_message()).queued_id()
    wuid, wgid = nobody_ids()
    quid, qgid = queue_ids()
    expect = {
        ".": (0, 0, 0o711),
        "tmp": (wuid, qgid, 0o2700),
        "incoming": (quid, wgid, 0o1770),
        "state": (quid, qgid, 0o700),
        "queue-tmp": (quid, qgid, 0o700),
        "corrupt": (quid, qgid, 0o700),
        "private": (0, wgid, 0o710),
    }
    for d, (uid, gid, mode) in expect.items():
        st = os.lstat(spgw.spool / d)
        got = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        assert stat.S_ISDIR(st.st_mode) and got == (uid, gid, mode), \
            f"{d}/: uid {got[0]} gid {got[1]} mode {oct(got[2])}, want {uid} {gid} {oct(mode)}"
    st = os.stat(spgw.spool_path(qid))
    assert (st.st_uid, st.st_gid) == (wuid, qgid), (st.st_uid, st.st_gid)
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
    assert st.st_nlink == 1


def test_no_partial_file_after_aborted_data(spgw):
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    before = spgw.incoming()
    c.cmd("MAIL FROM:<s@other.test>").check(250, "2.1.0")
    c.cmd("RCPT TO:<user@example.test>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send("Subject: cut off\r\n\r\nhalf")
    c.close()
    wait_until(lambda: not list((spgw.spool / "tmp").iterdir()), 10,
               "the aborted message's temporary file to go")
    assert spgw.incoming() == before


# ---------------------------------------------------------------- durability

def test_accepted_message_survives_worker_kill(make_gateway):
    gw = make_gateway()
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    pid = gw.pid_serving(c)
    assert pid in gw.children() and pid != gw.pid
    msg = make_message(body="durable\r\n" * 50)
    qid = c.send_message("s@other.test", ["user@example.test"], msg).queued_id()
    os.kill(pid, signal.SIGKILL)
    path = gw.spool_path(qid)
    assert path.is_file(), f"{path} missing after the worker was killed"
    data = path.read_bytes()
    assert msgid_of(msg).encode() in data
    assert data.endswith(msg.encode().split(b"\r\n\r\n", 1)[1]), "message body truncated"
    # the log names the killed worker as the one that served the session
    assert re.search(rf"\bsmtpd\[{pid}\]", gw.log_text()), "the worker never logged"


def test_large_message_stored_exactly(spgw):
    line = "0123456789abcdefghijklmnopqrstuvwxyz" * 2 + "\r\n"
    msg = make_message(body=line * 40000)            # about 3 MB
    c = SMTPConn.open(spgw, "in")
    c.ehlo()
    sp = spgw.spool_file(c.send_message("s@other.test", ["user@example.test"], msg).queued_id())
    assert sp.without_first_header() == msg.encode()


def test_parallel_sessions_all_spooled(make_gateway):
    import concurrent.futures
    gw = make_gateway({"limits": {"max_connections_per_ip": 100}})

    def one(i):
        c = SMTPConn.open(gw, "in", timeout=30)
        c.ehlo()
        msg = make_message(subject=f"parallel {i}")
        qid = c.send_message("s@other.test", ["user@example.test"], msg).queued_id()
        c.cmd("QUIT")
        c.close()
        return qid, msgid_of(msg)

    with concurrent.futures.ThreadPoolExecutor(40) as ex:
        results = list(ex.map(one, range(40)))
    assert len({q for q, _ in results}) == 40, "queue ids are not unique"
    for qid, mid in results:
        assert mid.encode() in gw.spool_path(qid).read_bytes()


# ---------------------------------------------------------------- disk full

@pytest.fixture
def small_spool(make_gateway):
    """A gateway whose spool is a 2 MiB tmpfs (needs root and mount(2))."""
    gw = make_gateway(start=False)
    gw.spool.mkdir(mode=0o755)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs",
                        str(gw.spool)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()
        subprocess.run(["umount", "-l", str(gw.spool)], check=False)


def _fill(path, leave=0):
    """Fill the file system of path's directory, then give back leave bytes."""
    with open(path, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    with open(path, "r+b") as f:
        f.truncate(max(0, os.path.getsize(path) - leave))


def test_disk_full_is_452_4_3_1(small_spool):
    """ENOSPC is 452 4.3.1 (RFC 5321 4.2.2 "insufficient system storage",
    RFC 3463 X.3.1 "mail system full"): at DATA when not even the envelope
    fits, after the message when its text does not; nothing is left behind,
    and mail flows again once there is room."""
    gw = small_spool
    filler = gw.spool / "filler"
    _fill(filler)
    c = SMTPConn.open(gw, "in")
    c.ehlo()
    c.cmd("MAIL FROM:<s@other.test>").check(250, "2.1.0")
    c.cmd("RCPT TO:<user@example.test>").check(250, "2.1.5")
    c.cmd("DATA").check(452, "4.3.1")
    c.cmd("RSET").check(250)

    _fill(filler, leave=256 * 1024)
    msg = make_message(body="x" * 76 + "\r\n" * 1 + ("y" * 998 + "\r\n") * 1024)
    c.cmd("MAIL FROM:<s@other.test>").check(250, "2.1.0")
    c.cmd("RCPT TO:<user@example.test>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(msg.encode() + b".\r\n")
    c.read_reply(timeout=30).check(452, "4.3.1")
    assert gw.incoming() == []
    wait_until(lambda: not list((gw.spool / "tmp").iterdir()), 10, "tmp/ to be empty")

    filler.unlink()
    qid = c.send_message("s@other.test", ["user@example.test"], msg).queued_id()
    assert gw.spool_path(qid).is_file()
    gw.wait_for_log(r"spool id=\w+ write failed: No space left on device")
