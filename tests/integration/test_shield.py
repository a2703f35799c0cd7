# SPDX-License-Identifier: ISC
"""The brute-force shield under attack, driven through the real daemon
against real slapd servers:

  - 200 wrong passwords for one login sent at once from four addresses:
    slapd's own log (loglevel stats) shows at most lockout_login_failures
    binds for that entry; the users file checks at most as many hashes;
  - spelling variants of a login ("ann", "ann ", " ANN") and other logins
    that find the same entry ("ann@corp.test") share one counter, one
    lockout and one hourly sending limit; the session goes on as the entry's
    normalized DN;
  - a user found in one directory while another is down: 454
    directory_unavailable (the uniqueness rule cannot be checked), also
    while the directory is in its back-off after coming back; a recent
    success from the cache's stale window stands in;
  - method = fetch with a service account that may not read userPassword:
    454 password_unreadable, never counted, an alert, and test-query and
    check-config name the attribute;
  - a fake worker speaking the auth protocol on spool_dir/private/auth,
    claiming an allow-listed client: the login is shielded all the same,
    failures are held by the auth process for the delay, and the failed
    checks one worker connection causes are capped per second.

Waits are on conditions (a reply, a log line, slapd's log); clients connect
from several loopback addresses to be several clients."""

import re
import socket
from datetime import datetime
import struct
import threading
import time

import pytest

import harness
import ldap_fixture as lf
from harness import SMTPConn, make_message, run_tool, wait_until

pytestmark = pytest.mark.skipif(lf.available() is not None, reason=str(lf.available()))

PLAIN = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
         "max_auth_failures": 20, "default_domain": "example.test",
         "max_connections_per_ip": 200}

# The attack report's lockout settings; no growing delay and no rate cap unless a
# test turns them on (they would only slow these tests down).
SHIELD = {"cache_size": 10000, "cache_positive_ttl": 300, "cache_negative_ttl": 300,
          "cache_stale_ttl": 0, "delay_ms": 0, "delay_after": 100,
          "lockout_client_failures": 20, "lockout_login_failures": 10,
          "lockout_client_login_failures": 5, "lockout_time": 900, "throttle_window": 900,
          "worker_failure_rate": 100000}

AUTH_LINE = (r"auth\[\d+\] info: s=\S+ auth client={client} listener=\S+ "
             r"result=(?P<result>\w+) reason=(?P<reason>\w+) source=(?P<source>\w+) "
             r"ms=\d+(?P<extra>[^\n]*?) mech=PLAIN user=\"{user}\""
             r"(?P<identity> identity=\"[^\"]*\")?$")


def prot(**kw):
    out = dict(SHIELD)
    out.update(kw)
    return out


def login(gw, user, password, source=harness.HOST):
    """One AUTH PLAIN in a fresh connection: (code, reason, extra) with the
    auth process's log fields; extra without the identity, which is
    returned last (None when the identity is the login as typed)."""
    mark = gw.log_mark()
    c = SMTPConn.open(gw, "plain", source=source)
    c.ehlo()
    r = c.auth_plain(user, password)
    c.close()
    m = gw.wait_for_log(AUTH_LINE.format(user=re.escape(user), client=re.escape(source)),
                        since=mark)
    ident = re.search(r' identity="([^"]*)"', m["identity"] or "")
    extra = m["extra"].strip()
    return r.code, m["reason"], extra, ident.group(1) if ident else None


def parallel_auth(gw, user, n, sources, password=lambda i: f"wrong-{i}"):
    """n connections, each EHLO'd, then all send one AUTH PLAIN at once
    (source address i % len(sources)). Returns the reply codes."""
    conns = []
    for i in range(n):
        c = SMTPConn.open(gw, "plain", source=sources[i % len(sources)], timeout=120)
        c.ehlo()
        conns.append(c)
    codes = [None] * n
    barrier = threading.Barrier(n, timeout=60)

    def one(i):
        barrier.wait()
        codes[i] = conns[i].auth_plain(user, password(i)).code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for c in conns:
        c.close()
    return codes


SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


# ---------------------------------------------------------------- point 1

def test_parallel_guesses_ldap(make_gateway, base_dir):
    """200 wrong passwords for one LDAP login at once: at most
    lockout_login_failures (10) binds reach slapd; the rest are refused
    before any directory is asked."""
    ann = lf.Person("ann", "ann", "ann-Secret-1", "ssha")
    slapd = lf.Slapd(base_dir, "par", "dc=par,dc=test", stats=True).load([ann]).start()
    try:
        pwfile = lf.write_password_file(base_dir)
        gw = make_gateway({"users-file": None, "ldap corp": lf.ldap_section(slapd, pwfile),
                           "listener plain": PLAIN, "protection": prot()}, users={})
        dn = ann.dn(slapd.suffix)
        codes = parallel_auth(gw, "ann", 200, SOURCES)
        failed = codes.count(535)
        assert failed + codes.count(454) == 200, codes
        assert 1 <= failed <= 10, codes
        # Every 535 was a bind: slapd logs them all, and no more.
        wait_until(lambda: slapd.binds(dn) >= failed, 15, "slapd to log the binds")
        assert slapd.binds(dn) == failed <= 10
        gw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=10 .*user=\"ann\"")
        # The right password: shielded too (not in the cache), no bind.
        assert login(gw, "ann", "ann-Secret-1", "127.0.0.6")[:3] == (454, "locked", "lock=login")
        assert slapd.binds(dn) == failed
    finally:
        slapd.stop()


def test_parallel_guesses_users_file(make_gateway):
    """The same against the users file: at most 10 hash checks for alice
    (the file source logs each check it runs at debug level)."""
    alice = harness.User("alice", "alice-Secret-1", "sha512-crypt")
    gw = make_gateway({"listener plain": PLAIN, "protection": prot()},
                      users={"alice": alice.hash})
    codes = parallel_auth(gw, "alice", 200, SOURCES)
    failed = codes.count(535)
    assert failed + codes.count(454) == 200, codes
    assert 1 <= failed <= 10, codes
    checks = r"file check=hash result=bad_password user=\"alice\""
    wait_until(lambda: len(re.findall(checks, gw.log_text())) >= failed, 15,
               "the hash checks to be logged")
    assert len(re.findall(checks, gw.log_text())) == failed


# ---------------------------------------------------------------- point 2

def test_canonical_identity(make_gateway, base_dir):
    """Spellings slapd matches to one entry, and another login that finds
    it, share the login's counter and lockout, the pair's, and the hourly
    sending limit; the session goes on as the entry's normalized DN."""
    people = [lf.Person("ann", "ann", "ann-Secret-1", "ssha", mail=["ann@corp.test"]),
              lf.Person("cy", "cy", "cy-Secret-1", "ssha"),
              lf.Person("Bea", "bea", "bea-Secret-1", "ssha")]
    slapd = lf.Slapd(base_dir, "canon", "dc=canon,dc=test").load(people).start()
    try:
        pwfile = lf.write_password_file(base_dir)
        gw = make_gateway({"users-file": None, "ldap corp": lf.ldap_section(slapd, pwfile),
                           "listener plain": PLAIN,
                           "protection": prot(lockout_login_failures=4,
                                              lockout_client_login_failures=3,
                                              messages_per_hour=2)}, users={})
        ann_dn = people[0].dn(slapd.suffix).lower()
        # Four spellings, four clients: one login, locked at 4.
        for i, (spelling, src) in enumerate(zip(["ann", "ann ", " ANN", "  ann "], SOURCES)):
            code, reason, _, _ = login(gw, spelling, f"w{i}", src)
            assert (code, reason) == (535, "bad_password"), spelling
        gw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=4 .*user=\"ann\"")
        gw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=4 .*"
                        rf"user=\"{re.escape(ann_dn.replace('=', chr(92) + 'x3d'))}\"")
        assert login(gw, "ann", "ann-Secret-1", "127.0.0.6")[:3] == (454, "locked", "lock=login")
        # Another login for the same entry (the filter matches mail): its
        # own spelling is fresh, the entry is not.
        assert login(gw, "ann@corp.test", "ann-Secret-1", "127.0.0.7")[:3] == \
            (454, "locked", "lock=login")
        # One client, three spellings: the pair, locked at 3.
        for i, spelling in enumerate(["cy", "CY ", " cy"]):
            assert login(gw, spelling, f"w{i}", "127.0.0.8")[:2] == (535, "bad_password")
        gw.wait_for_log(r"auth: lockout scope=client_login client=127\.0\.0\.8 .*user=\"cy\"")
        assert login(gw, "cy", "cy-Secret-1", "127.0.0.8")[:3] == \
            (454, "locked", "lock=client_login")
        assert login(gw, "cy", "cy-Secret-1", "127.0.0.9")[:2] == (235, "ok")
        # Sending: three spellings, one identity, one limit of 2 an hour.
        bea_dn = people[2].dn(slapd.suffix).lower()
        for i, spelling in enumerate(["bea", " BEA", "bea "]):
            mark = gw.log_mark()
            c = SMTPConn.open(gw, "plain")
            c.ehlo()
            c.auth_plain(spelling, "bea-Secret-1").check(235)
            m = gw.wait_for_log(AUTH_LINE.format(user=re.escape(spelling), client=r"\S+"),
                                since=mark)
            assert m["identity"] == f' identity="{bea_dn.replace("=", chr(92) + "x3d")}"', \
                m.group(0)
            if i < 2:
                c.send_message("bea@corp.test", ["someone@example.test"],
                               make_message(to="someone@example.test")).check(250)
            else:
                c.cmd("MAIL FROM:<bea@corp.test>").check(450, "4.7.1")
                gw.wait_for_log(r"reject reason=messages_per_hour .*"
                                rf"user=\"{re.escape(bea_dn.replace('=', chr(92) + 'x3d'))}\"",
                                since=mark)
            c.close()
    finally:
        slapd.stop()


def test_canonical_identity_users_file(make_gateway):
    """The users file matches its logins exactly, so " alice" is unknown
    there; it still counts for alice, whose login normalizes alike."""
    alice = harness.User("alice", "alice-Secret-1", "sha512-crypt")
    gw = make_gateway({"listener plain": PLAIN, "protection": prot(lockout_login_failures=4)},
                      users={"alice": alice.hash})
    for i, (spelling, src) in enumerate(zip(["alice", " alice", "ALICE ", "Alice"], SOURCES)):
        assert login(gw, spelling, f"w{i}", src)[0] == 535
    gw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=4 .*user=\"alice\"")
    assert login(gw, "alice", alice.password, "127.0.0.6")[:3] == (454, "locked", "lock=login")


# ---------------------------------------------------------------- point 3

def test_ambiguous_user_while_a_directory_is_down(make_gateway, base_dir):
    """mallory is in both directories (refused: ambiguous). With one
    stopped, and in its back-off after it restarts, nobody found in the
    other gets 235 from a directory: 454 directory_unavailable, never
    counted, until both answer again; solo's recent success stands in from
    the cache's stale window."""
    a = lf.Slapd(base_dir, "amb-a", "dc=a,dc=test").load(
        [lf.Person("mallory", "mallory", "mallory-A-1", "ssha"),
         lf.Person("solo", "solo", "solo-Secret-1", "ssha")]).start()
    b = lf.Slapd(base_dir, "amb-b", "dc=b,dc=test").load(
        [lf.Person("mallory", "mallory", "mallory-B-1", "ssha")]).start()
    try:
        pwfile = lf.write_password_file(base_dir)
        gw = make_gateway({"users-file": None, "ldap a": lf.ldap_section(a, pwfile),
                           "ldap b": lf.ldap_section(b, pwfile), "listener plain": PLAIN,
                           "protection": prot(cache_positive_ttl=1, cache_stale_ttl=300,
                                              lockout_client_login_failures=3)}, users={})
        assert login(gw, "mallory", "mallory-A-1")[:2] == (535, "ambiguous")
        assert login(gw, "solo", "solo-Secret-1")[:2] == (235, "ok")
        b.stop()
        # Five tries, over the pair's limit of 3: a tempfail is no failure.
        for _ in range(5):
            assert login(gw, "mallory", "mallory-A-1")[:2] == (454, "directory_unavailable")
        gw.wait_for_log(r"ldap found in directory=a, but directories=b unavailable: "
                        r"uniqueness cannot be checked.* user=\"mallory\"")
        # solo is found in a only, yet b could hold a solo too: 454, but
        # the success of a moment ago stands in once its TTL is over.
        assert login(gw, "solo", "wrong-password")[:2] == (454, "directory_unavailable")
        wait_until(lambda: login(gw, "solo", "solo-Secret-1")[:3] ==
                   (235, "ok", "cache=stale"), 20, "a stale answer for solo", interval=0.2)
        # b comes back: until it answers again (its back-off), still 454.
        b.start()
        seen = []

        def settled():
            code, reason = login(gw, "mallory", "mallory-A-1")[:2]
            seen.append((code, reason))
            return (code, reason) == (535, "ambiguous")
        wait_until(settled, 60, "b to answer again", interval=0.2)
        assert set(seen) <= {(454, "directory_unavailable"), (535, "ambiguous")}, seen
    finally:
        a.stop()
        b.stop()


# ---------------------------------------------------------------- point 4

def test_fetch_password_unreadable(make_gateway, base_dir, bin_path):
    """method = fetch, and slapd's ACL hides userPassword from the service
    account: a configuration fault. Every login gets 454
    password_unreadable, none is counted (no lockout after more than the
    limits), an alert names it, and test-query and check-config say which
    attribute cannot be read. The same directory with the ACL fixed passes
    check-config."""
    ann = lf.Person("ann", "ann", "ann-Secret-1", "ssha")
    hidden = lf.Slapd(base_dir, "acl", "dc=acl,dc=test",
                      service_reads_password=False).load([ann]).start()
    shown = lf.Slapd(base_dir, "noacl", "dc=noacl,dc=test").load([ann]).start()
    try:
        pwfile = lf.write_password_file(base_dir)
        gw = make_gateway({"users-file": None,
                           "ldap corp": lf.ldap_section(hidden, pwfile, method="fetch"),
                           "listener plain": PLAIN,
                           "protection": prot(lockout_login_failures=4,
                                              lockout_client_login_failures=3,
                                              cache_negative_ttl=0)}, users={})
        for pw in ["ann-Secret-1", "w1", "w2", "w3", "w4", "w5", "ann-Secret-1"]:
            assert login(gw, "ann", pw)[:2] == (454, "password_unreadable")
        gw.wait_for_log(r"alert kind=source_config mailed=\w+ hook=\w+ source=ldap "
                        r"detail=\"ldap dir\\x3dcorp: "
                        r"method \\x3d fetch, but no entry shows userPassword to the service "
                        r"account")
        assert "auth: lockout" not in gw.log_text()

        r = run_tool([bin_path, "test-query", "-c", gw.cfg_path, "ann"])
        out = r.stdout.decode()
        assert re.search(r"problem: \[corp\] method = fetch, but the entry came without "
                         r"userPassword", out), out
        r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
        err = r.stderr.decode()
        assert r.returncode != 0, err
        assert re.search(r"\[ldap corp\] method = fetch: no entry under base \"dc=acl,dc=test\" "
                         r"shows userPassword to the service account", err), err

        ok = make_gateway({"users-file": None,
                           "ldap corp": lf.ldap_section(shown, pwfile, method="fetch")},
                          users={}, start=False)
        r = run_tool([bin_path, "check-config", "-c", ok.cfg_path])
        assert r.returncode == 0, r.stderr.decode()
        assert "userPassword" not in r.stderr.decode()
    finally:
        hidden.stop()
        shown.stop()


# ---------------------------------------------------------------- point 8

class FakeWorker:
    """A compromised SMTP worker: the auth protocol (docs/auth-protocol.md)
    spoken directly on spool_dir/private/auth."""

    def __init__(self, gw):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(gw.spool / "private" / "auth"))
        self.buf = b""
        typ, body = self.read_frame()
        assert typ == 1, typ                       # HELLO
        self.version = struct.unpack(">I", body[:4])[0]
        self.next_id = 1

    def read_frame(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return body[0], body[1:]
            chunk = self.sock.recv(65536)
            assert chunk, "the auth process closed the connection"
            self.buf += chunk

    @staticmethod
    def _field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    def send_verify(self, login, password, client):
        rid = self.next_id
        self.next_id += 1
        body = bytes([2]) + struct.pack(">I", rid) + b"".join(
            self._field(x.encode()) for x in ["PLAIN", login, password, "", f"fake{rid}",
                                               client, "submission"])
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        return rid

    def read_result(self):
        """(id, result, reason, delay_ms): result 0 ok, 1 fail, 2 tempfail."""
        while True:
            typ, body = self.read_frame()
            if typ != 3:
                continue                         # a new HELLO after a reload
            rid, result = struct.unpack(">II", body[:8])
            n = struct.unpack(">H", body[8:10])[0]
            reason, delay = struct.unpack(">II", body[10 + n:18 + n])
            return rid, result, reason, delay

    def close(self):
        self.sock.close()


LOCKED, FAIL, TEMPFAIL = 18, 1, 2


def test_fake_worker(make_gateway):
    """A worker claiming an allow-listed client address: the per-login
    shield holds (at most lockout_login_failures failures, then locked),
    the auth process holds each failure for the throttle's delay itself
    (the RESULT leaves late and asks the worker for nothing more), and the
    failed checks of one worker connection are capped per second."""
    frank = harness.User("frank", "frank-Secret-6", "ssha")
    gw = make_gateway({"listener plain": PLAIN,
                       "protection": prot(allow_networks="10.0.0.0/8", delay_after=3,
                                          delay_ms=200, delay_max_ms=400,
                                          worker_failure_rate=50)},
                      users={"frank": frank.hash})
    w = FakeWorker(gw)
    try:
        # One at a time: failures 4 and on are held 200, then 400 ms.
        took = []
        for i in range(10):
            t0 = time.monotonic()
            rid = w.send_verify("frank", f"guess-{i}", "10.1.2.3")
            got = w.read_result()
            took.append(time.monotonic() - t0)
            assert got[:3] == (rid, FAIL, 2), got          # bad_password
            assert got[3] == 0, got                         # nothing left to the worker
        assert all(t >= 0.19 for t in took[3:4]) and all(t >= 0.38 for t in took[4:]), took
        gw.wait_for_log(r"auth: lockout scope=login client=10\.1\.2\.3 failures=10 "
                        r".*user=\"frank\"")
        gw.wait_for_log(r"client=10\.1\.2\.3 .*result=fail reason=bad_password .* "
                        r"delay_ms=400 mech=PLAIN user=\"frank\"")
        # 290 more at once: the login is shielded, allow-listed or not.
        ids = {w.send_verify("frank", f"more-{i}", "10.1.2.3") for i in range(290)}
        answers = [w.read_result() for _ in range(290)]
        assert {a[0] for a in answers} == ids
        assert all(a[1:3] == (TEMPFAIL, LOCKED) for a in answers), answers[:5]

        # The rate: 300 unknown logins (each a failure, none locked) at
        # once from one connection: 50 a second after a burst of 50.
        t0 = time.monotonic()
        ids = {w.send_verify(f"nobody{i}", "x", "10.9.9.9") for i in range(300)}
        done_at = []
        for _ in range(300):
            rid, result, reason, _ = w.read_result()
            assert rid in ids and (result, reason) == (FAIL, 3), (rid, result, reason)
            done_at.append(time.monotonic() - t0)
        assert done_at[-1] >= (300 - 50) / 50 * 0.9, done_at[-1]
        # The auth process's own clock (its log lines, stamped when each
        # check is answered): never more than the burst plus what a second
        # adds, in any second.
        stamps = sorted(
            datetime.strptime(m[0], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            for m in re.findall(r"^(\S+)Z auth\[\d+\] info: s=fake\d+ auth "
                                r"client=10\.9\.9\.9 .*result=(fail) .*mech=PLAIN "
                                r"user=\"nobody\d+\"",
                                gw.log_text(), re.M))
        assert len(stamps) == 300
        for i, t in enumerate(stamps):
            within = sum(1 for u in stamps[i:] if u < t + 1.0)
            assert within <= 50 + 50 + 2, (i, within)
    finally:
        w.close()
