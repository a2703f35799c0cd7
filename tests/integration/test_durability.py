# SPDX-License-Identifier: ISC
"""Crash tests of the delivery journal: authenticated submissions
relayed through a smarthost to an SMTP sink that records every message it
takes (aiosmtpd, sink_fixture.GatedSink), the whole process group killed with
SIGKILL at one point of the delivery, a restart on the same spool, and a
count: no accepted message lost, and a message arrives twice only if it was
in flight at the kill.

"In flight" is computed from what the sink saw, per connection: the last
message it took, unless a command (MAIL, RSET, QUIT) came after it on the
same connection. Such a command shows that the queue had read the message's
250 (it sends nothing on a connection before the previous reply is read),
and the journal must then have recorded the delivery before that command
went out. So duplicates <= one per connection open at the kill.

Kill points: during DATA (the sink has the whole message and holds its 250),
right after a 250 (the kill follows the reply within a millisecond), between
messages on a reused connection (the sink holds the next MAIL) while deferred
mail keeps the queue's store thread busy, and the operator's run of the
issue: 300 submissions, the kill right after the 100th 250 given to a
client, deliveries flowing meanwhile."""

import collections
import fcntl
import json
import os
import re
import signal
import threading
import time

import pytest

from harness import (HOST, ConnectionClosed, free_port, make_message, msgid_of, run_tool,
                     submission_conn, wait_until)
from sink_fixture import GatedSink, Sink

# Delivery connections to the smarthost: the most that may be in flight.
CONNS = 3


@pytest.fixture
def sink():
    s = GatedSink(HOST, free_port()).start()
    yield s
    s.release()
    s.stop()


def start_gateway(make_gateway, sink, **sections):
    gw = make_gateway({
        **sections,
        "queue": {"smarthost": f"[{HOST}]:{sink.port}",
                  "max_connections_per_destination": CONNS,
                  # Connections stay open between messages: reuse is the case.
                  "connection_reuse_time": "60s",
                  "retry_min": "1s", "retry_max": "2s", "connect_timeout": "5s"},
        "protection": {"messages_per_hour": 0, "recipients_per_hour": 0},
        "limits": {"max_messages_per_session": 0},
    }, start=False)
    return gw.start(new_group=True)


class Submitter:
    """Authenticated submissions (STARTTLS, AUTH PLAIN on the submission
    listener) on `clients` threads, one session each; records the
    Message-ID of every message that got its 250."""

    def __init__(self, gw, user, n: int, clients: int = 1, rcpt: str = "rcpt@far.test"):
        self.gw, self.user, self.rcpt = gw, user, rcpt
        self.accepted: list[str] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
        self.threads = [threading.Thread(target=self._run, args=(i, k), daemon=True)
                        for i, k in enumerate(per)]

    def start(self) -> "Submitter":
        for t in self.threads:
            t.start()
        return self

    def _run(self, idx: int, n: int):
        c = None
        for k in range(n):
            msg = make_message(f"{self.user.name}@example.test", self.rcpt,
                               subject=f"durability {idx}-{k}", body="x" * 300 + "\r\n")
            try:
                if c is None:
                    c = submission_conn(self.gw, "sub")
                    c.auth_plain(self.user.name, self.user.password).check(235, "2.7.0")
                r = c.send_message(f"{self.user.name}@example.test", [self.rcpt], msg)
            except (ConnectionClosed, OSError, TimeoutError, AssertionError) as e:
                # The gateway was killed under us: this one was not accepted.
                with self.lock:
                    self.errors.append(repr(e))
                return
            if r.code == 250:
                with self.cond:
                    self.accepted.append(msgid_of(msg))
                    self.cond.notify_all()

    def wait_accepted(self, n: int, timeout: float = 60):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.accepted) >= n, timeout):
                raise AssertionError(f"{len(self.accepted)} of {n} submissions accepted; "
                                     f"errors: {self.errors[:3]}")

    def join(self):
        for t in self.threads:
            t.join(60)


def crash_and_count(gw, sink, sub: Submitter, kill, after_kill=None):
    """kill() the process group at the chosen point, work out what was in
    flight, restart, wait for every accepted message at the sink, and check
    the duplicates. Returns (in_flight, duplicates)."""
    kill()
    sub.join()
    if after_kill:
        after_kill()
    # Held replies go out to the dead connections; then every connection of
    # the killed queue is closed and nothing more can arrive on them.
    sink.release()
    wait_until(lambda: not sink.open_connections(), 15,
               "the sink to see every connection of the killed queue close")
    in_flight = sink.in_flight()
    conns = len(sink.connections())
    assert len(in_flight) <= CONNS, (in_flight, conns)
    before = len(sink.snapshot())

    gw.start(new_group=True)
    want = set(sub.accepted)
    sink.wait_for(lambda ms: want <= {m.message_id for m in ms}, timeout=120,
                  what=f"all {len(want)} accepted messages at the sink")
    wait_until(lambda: not gw.incoming(), 60, "the queue to drain")
    got = collections.Counter(m.message_id for m in sink.snapshot())
    dups = {m: n - 1 for m, n in got.items() if n > 1}
    print(f"\n{len(want)} accepted, {before} delivered before the kill on {conns} "
          f"connections, in flight {len(in_flight)}, duplicates {sum(dups.values())}")
    # Nothing accepted is lost.
    assert want <= set(got)
    # A message is repeated only if it was in flight, and only once.
    assert set(dups) <= in_flight, (
        f"repeated although their 250 had been read: {sorted(set(dups) - in_flight)}; "
        f"in flight: {sorted(in_flight)}")
    assert all(n == 1 for n in dups.values()), dups
    return in_flight, dups


def test_kill_during_data(make_gateway, users, sink):
    """Every connection has handed over a whole message and waits for its
    250: those messages, and only they, may arrive twice."""
    gw = start_gateway(make_gateway, sink)
    sink.hold_data_after = 0
    sub = Submitter(gw, users["clara"], 8).start()
    sink.wait_held("data", CONNS)
    in_flight, dups = crash_and_count(gw, sink, sub, gw.kill_group)
    assert len(in_flight) == CONNS


def test_kill_right_after_250(make_gateway, users, sink):
    """The kill follows the sink's 4th 250 at once: the queue may or may not
    have read it. The three messages delivered before it on the same or
    other connections, each followed by more work, must not come again."""
    gw = start_gateway(make_gateway, sink)
    sink.hold_data_after = 4
    sub = Submitter(gw, users["clara"], 10).start()

    def kill():
        sink.wait_replied(4, timeout=60)
        gw.kill_group()
    in_flight, dups = crash_and_count(gw, sink, sub, kill)
    # Whether anything is still in flight depends on who wins the race
    # between the kill and the queue reading that 250 and moving on (under
    # ASan the queue often wins), so in_flight may be empty; the bound on
    # duplicates, which crash_and_count checks, holds either way.
    assert len(sink.snapshot()) >= 4


def test_kill_between_messages_on_a_reused_connection(make_gateway, users, sink):
    """Each connection delivered a message, read its 250 and started the next
    one (MAIL, held by the sink): nothing is in flight, nothing may repeat.
    Meanwhile a slow destination answers 451 to everything: the state writes
    of its deferred messages (two fsyncs each) keep the store thread busy,
    and the removal of a delivered message waits behind them. Without the
    journal, the delivery was on disk only once that removal was done."""
    slow = Sink(HOST, free_port()).start()
    slow.data_reply = "451 4.3.0 try again later"
    try:
        gw = start_gateway(make_gateway, sink, **{
            "route slow": {"domains": "slow.test", "nexthop": f"[{HOST}]:{slow.port}"}})
        deferred = Submitter(gw, users["clara"], 60, clients=2, rcpt="user@slow.test").start()
        deferred.wait_accepted(20)
        sink.hold_mail_on_reuse = True
        sub = Submitter(gw, users["clara"], 9).start()
        # The kill follows the last of those MAILs within a millisecond.
        sink.wait_held("mail", CONNS)

        def after_kill():
            deferred.join()
            # The slow destination takes mail again: the queue can drain.
            slow.data_reply = None
        in_flight, dups = crash_and_count(gw, sink, sub, gw.kill_group, after_kill)
        # The deferred ones were not lost either.
        want = set(deferred.accepted)
        slow.wait_for(lambda ms: want <= {m.message_id for m in ms}, timeout=60,
                      what=f"the {len(want)} deferred messages at the slow sink")
    finally:
        slow.stop()
    assert in_flight == set()
    assert not dups


def test_kill_after_100th_submission_while_delivering(make_gateway, users, sink):
    """The issue's run: 300 submissions from 6 clients, the process group
    killed right after the 100th 250 to a client while the queue delivers.
    Before the journal 10 to 20 messages came twice, most of them delivered
    long before the kill."""
    gw = start_gateway(make_gateway, sink)
    sub = Submitter(gw, users["clara"], 300, clients=6).start()

    def kill():
        sub.wait_accepted(100)
        gw.kill_group()
    t0 = time.monotonic()
    in_flight, dups = crash_and_count(gw, sink, sub, kill)
    print(f"run took {time.monotonic() - t0:.1f}s")


def test_commit_sync_method_logged(make_gateway, users):
    """The master says how a group commit round ends on the spool's file
    system: one fsync of incoming/ on an ext4 whose journal orders data,
    syncfs() anywhere else."""
    gw = make_gateway()
    m = gw.wait_for_log(r"master\[\d+\] info: spool dir=(\S+) fs=\"([^\"]*)\" "
                        r"commit_sync=(\w+)")
    st = os.stat(gw.spool / "incoming")
    try:
        dev = os.path.basename(os.readlink(f"/sys/dev/block/{os.major(st.st_dev)}:"
                                           f"{os.minor(st.st_dev)}"))
        options = open(f"/proc/fs/ext4/{dev}/options").read().split("\n")
    except OSError:
        options = []
    ordered = ("data=ordered" in options or "data=journal" in options) and \
        "fast_commit" not in options
    assert m.group(3) == ("dir_fsync" if ordered else "syncfs"), m.group(0)
    # The workers use it: their rounds end with that call (logged at exit).
    c = submission_conn(gw)
    c.auth_plain("clara", users["clara"].password).check(235, "2.7.0")
    c.send_message("clara@example.test", ["x@far.test"], make_message()).check(250)
    c.cmd("QUIT")
    gw.stop()
    assert re.search(rf"spool commits messages=\d+ rounds=\d+ syncs=\d+ method={m.group(3)} ",
                     gw.log_text()), gw.log_tail()


def test_journal_record_survives_the_next_crash(make_gateway, users, sink):
    """A delivery known only to the journal (its message still has another
    recipient in flight) is not repeated after a crash, nor after a second
    crash once the restarted queue has retired the old journal segments: the
    start-up checkpoint wrote the record again into the new one."""
    slow = GatedSink(HOST, free_port()).start()
    try:
        gw = start_gateway(make_gateway, sink, **{
            "route slow": {"domains": "slow.test", "nexthop": f"[{HOST}]:{slow.port}"}})
        slow.hold_data_after = 0           # b@slow.test stays in flight
        sink.hold_mail_on_reuse = True     # far.test's next MAIL shows the 250 was recorded
        c = submission_conn(gw)
        c.auth_plain("clara", users["clara"].password).check(235, "2.7.0")
        m = make_message("clara@example.test", "a@far.test", subject="two destinations")
        qid = c.send_message("clara@example.test", ["a@far.test", "b@slow.test"], m).queued_id()
        # The next one only once a@far.test is delivered, so that it takes
        # the same (idle) connection.
        sink.wait_for(lambda ms: msgid_of(m) in {x.message_id for x in ms},
                      what="a@far.test at its sink")
        n = make_message("clara@example.test", "x@far.test", subject="the next one")
        c.send_message("clara@example.test", ["x@far.test"], n).check(250)
        c.cmd("QUIT")
        sink.wait_held("mail", 1)
        slow.wait_held("data", 1)
        gw.kill_group()

        for crash in (1, 2):
            mark = gw.log_mark()
            gw.start(new_group=True)
            gw.wait_for_log(rf"id={qid} status=sent replayed=journal "
                            rf'to="<a@far\.test>"', since=mark)
            ready = gw.wait_for_log(r"queue ready .*journal_records=(\d+) "
                                    r"journal_segments=(\d+)", since=mark)
            assert int(ready.group(1)) >= 1, ready.group(0)
            # The old segments go once the store's barrier and the record
            # written again are durable: one segment is left.
            gw.wait_for_log(r"journal checkpoint done", since=mark)
            wait_until(lambda: len(os.listdir(gw.spool / "journal")) == 1, 10,
                       "the old journal segments to be retired")
            # b@slow.test is in flight again (held once more by its sink).
            slow.wait_holds("data", 1 + crash)
            if crash == 1:
                gw.kill_group()
        slow.release()
        want = msgid_of(m)
        wait_until(lambda: not gw.incoming(), 60, "the queue to drain")
        assert want in {x.message_id for x in slow.snapshot()}
        got = [x.message_id for x in sink.snapshot()]
        # a@far.test: delivered once, through two crashes.
        assert got.count(want) == 1, got
    finally:
        slow.release()
        slow.stop()


def _spool_files(gw) -> dict:
    """incoming/, state/ and journal/ as (size, mtime, bytes) per file."""
    files = {}
    for sub in ("incoming", "state", "journal"):
        d = gw.spool / sub
        for name in sorted(os.listdir(d)):
            st = os.stat(d / name)
            files[f"{sub}/{name}"] = (st.st_size, st.st_mtime_ns, (d / name).read_bytes())
    return files


def test_offline_list_applies_the_journal_read_only(make_gateway, users, sink, bin_path):
    """kill -9 right after a delivery that only the journal knows (its
    message has another recipient in flight): `authrelay queue list` of the
    stopped gateway counts it delivered, as the queue's start will, and
    changes nothing in the spool. While a queue process holds journal/'s lock
    the list does not wait for it nor read the journal under it."""
    slow = GatedSink(HOST, free_port()).start()
    try:
        gw = start_gateway(make_gateway, sink, **{
            "route slow": {"domains": "slow.test", "nexthop": f"[{HOST}]:{slow.port}"}})
        slow.hold_data_after = 0           # b@slow.test stays in flight
        sink.hold_mail_on_reuse = True     # far.test's next MAIL shows the 250 was recorded
        c = submission_conn(gw)
        c.auth_plain("clara", users["clara"].password).check(235, "2.7.0")
        m = make_message("clara@example.test", "a@far.test", subject="two destinations")
        qid = c.send_message("clara@example.test", ["a@far.test", "b@slow.test"], m).queued_id()
        sink.wait_for(lambda ms: msgid_of(m) in {x.message_id for x in ms},
                      what="a@far.test at its sink")
        n = make_message("clara@example.test", "x@far.test", subject="the next one")
        nid = c.send_message("clara@example.test", ["x@far.test"], n).queued_id()
        c.cmd("QUIT")
        sink.wait_held("mail", 1)
        slow.wait_held("data", 1)
        gw.kill_group()
        # Nothing but the journal knows a@far.test was delivered.
        assert not (gw.spool / "state" / qid).exists()
        before = _spool_files(gw)

        def queue(*args):
            return run_tool([bin_path, "queue", "-c", gw.cfg_path, *args], timeout=30)

        r = queue("list")
        assert r.returncode == 0, r.stderr.decode()
        assert "not running" in r.stderr.decode(), r.stderr.decode()
        lines = {l.split()[0]: l for l in r.stdout.decode().splitlines()}
        assert " nrcpt=2 pending=1 " in lines[qid], lines
        assert " nrcpt=1 pending=1 " in lines[nid], lines
        listed = {x["id"]: x for x in json.loads(queue("--json", "list").stdout)["messages"]}
        assert (listed[qid]["pending"], listed[nid]["pending"]) == (1, 1), listed
        summary = json.loads(queue("--json", "summary").stdout)
        assert summary["total"]["messages"] == 2, summary
        assert _spool_files(gw) == before, "the offline list changed the spool"

        # A queue process holding the lock (one still finishing its
        # deliveries): not waited for, its journal not read.
        fd = os.open(gw.spool / "journal", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            r = queue("list")
        finally:
            os.close(fd)
        assert r.returncode == 0, r.stderr.decode()
        assert "holds" in r.stderr.decode() and "without its delivery journal" in \
            r.stderr.decode(), r.stderr.decode()
        lines = {l.split()[0]: l for l in r.stdout.decode().splitlines()}
        assert " nrcpt=2 pending=2 " in lines[qid], lines
        assert _spool_files(gw) == before

        # The start agrees with the offline list.
        mark = gw.log_mark()
        gw.start(new_group=True)
        gw.wait_for_log(rf"id={qid} status=sent replayed=journal to=\"<a@far\.test>\"",
                        since=mark)
        sink.release()
        slow.release()
        wait_until(lambda: not gw.incoming(), 60, "the queue to drain")
        assert [x.message_id for x in sink.snapshot()].count(msgid_of(m)) == 1
    finally:
        slow.release()
        slow.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for us.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_new_queue_waits_for_the_old_one(make_gateway, users, sink):
    """The master alone is killed with SIGKILL: its queue process gets
    SIGTERM (PR_SET_PDEATHSIG) and goes on finishing the deliveries in
    flight. A new master started on the same spool meanwhile must not run a
    second queue beside it (both would deliver the same messages): the new
    queue waits for the old one's lock on the journal, then delivers the
    rest. Nothing is lost and nothing that was not in flight repeats."""
    gw = start_gateway(make_gateway, sink)
    sink.hold_data_after = 0
    sub = Submitter(gw, users["clara"], 8).start()
    sub.wait_accepted(8)
    sink.wait_held("data", CONNS)
    queue_pid = int(re.findall(r"started queue pid=(\d+)", gw.log_text())[-1])
    others = [p for p in gw.children() if p != queue_pid]

    os.kill(gw.pid, signal.SIGKILL)
    gw.proc.wait(10)
    sub.join()
    # Workers and the auth process stop at once; the queue waits for its
    # held replies.
    wait_until(lambda: not any(_alive(p) for p in others), 30,
               "the old workers and auth process to exit")
    assert _alive(queue_pid), "the old queue process stopped without finishing"
    held = sink.in_flight()
    assert len(held) == CONNS, held

    mark = gw.log_mark()
    gw.start(wait=False, new_group=True)
    gw.wait_for_log(r"started queue pid=\d+", since=mark, timeout=30)
    # The new queue takes the journal's lock before it reads the spool or
    # opens any delivery: once it says it waits for the lock, it is held
    # there, and no second delivery connection can have been opened.
    gw.wait_for_log(r"is locked by a queue process still finishing", since=mark, timeout=30)
    assert _alive(queue_pid)
    assert len(sink.connections()) == CONNS, [c.peer for c in sink.connections()]

    sink.release()
    wait_until(lambda: not _alive(queue_pid), 30, "the old queue to finish and exit")
    gw.wait_ready()
    want = set(sub.accepted)
    sink.wait_for(lambda ms: want <= {m.message_id for m in ms}, timeout=60,
                  what=f"all {len(want)} accepted messages at the sink")
    wait_until(lambda: not gw.incoming(), 60, "the queue to drain")
    got = collections.Counter(m.message_id for m in sink.snapshot())
    dups = {m for m, n in got.items() if n > 1}
    assert want <= set(got)
    assert dups <= held, (dups, held)
    assert re.search(r"unlocked after \d+ ms", gw.log_text()[mark:])
