# SPDX-License-Identifier: ISC
"""Protection, driven by real clients through the daemon: the auth cache (hits,
expiry, SIGHUP; against slapd: binds counted in slapd's own log, a password
change taking effect after the positive TTL, stale answers while slapd is
stopped), the brute-force throttle (distinct wrong passwords, lockout per
(client, login), per client with 421, the lockout shield per login, expiry,
the growing delay, allow_networks exempt per client only, a tempfail never
counted), the sender
policy (553 5.7.1), per-user sending limits shared by the workers (450
4.7.1), and alerts: log lines, a hook run by the queue process, and alert
mails spooled and delivered by the queue to an aiosmtpd sink, also across a
restart of the queue process.

Clients connect from several loopback addresses (127.0.0.x) to be several
clients. Waits are on conditions (a reply, a log line, a file, a message
at the sink); TTLs and lockouts are a few seconds, waited out by polling."""

import os
import pwd
import re
import signal
import subprocess
import time

import pytest

import harness
import ldap_fixture as lf
from harness import (HOST, ConnectionClosed, SMTPConn, b64, make_dir, make_message, plain_ir,
                     wait_until)
from sink_fixture import Sink

# A plaintext submission listener: the throttle and cache tests make many
# logins, and a TLS handshake per login would only slow them down.
PLAIN = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
         "max_auth_failures": 20, "default_domain": "example.test"}

# Everything off but what a test turns on (the harness turns the throttle
# off for the other test files; here every key is explicit).
QUIET = {"cache_size": 10000, "cache_positive_ttl": 300, "cache_negative_ttl": 300,
         "cache_stale_ttl": 0, "delay_ms": 0, "delay_after": 100,
         "lockout_client_failures": 0, "lockout_login_failures": 0,
         "lockout_client_login_failures": 0, "lockout_time": 2, "throttle_window": 60}

AUTH_LINE = (r"auth\[\d+\] info: s=\S+ auth client={client} listener=\S+ "
             r"result=(?P<result>\w+) reason=(?P<reason>\w+) source=(?P<source>\w+) "
             r"ms=\d+(?P<extra>[^\n]*?) mech=PLAIN user=\"{user}\""
             r"(?P<identity> identity=\"(?:[^\"\\]|\\.)*\")?$")


def prot(**kw):
    out = dict(QUIET)
    out.update(kw)
    return out


def login(gw, user, password, source=HOST, listener="plain"):
    """One AUTH PLAIN in a fresh connection from source. Returns (reply,
    the auth process's log fields for it: result, reason, source, extra,
    identity). extra holds the protection's notes; the canonical identity
    (logged when it is not the login as typed) is split off into identity."""
    mark = gw.log_mark()
    c = SMTPConn.open(gw, listener, source=source)
    c.ehlo()
    r = c.auth_plain(user, password)
    m = gw.wait_for_log(AUTH_LINE.format(user=re.escape(user), client=re.escape(source)),
                        since=mark)
    try:
        c.cmd("QUIT")
    except (ConnectionClosed, OSError, TimeoutError):
        pass
    c.close()
    fields = m.groupdict()
    ident = re.search(r' identity="((?:[^"\\]|\\.)*)"', fields["identity"] or "")
    # Escaped as every value from outside the gateway ('=' is \x3d).
    fields["identity"] = (re.sub(r"\\x([0-9a-f]{2})", lambda e: chr(int(e[1], 16)),
                                 ident.group(1)) if ident else None)
    return r, fields


def code_and(gw, user, password, source=HOST):
    r, f = login(gw, user, password, source)
    return r.code, f["reason"], f["source"], f["extra"].strip()


# ---------------------------------------------------------------- cache (users file)

def test_cache_hit_and_expiry(make_gateway, users):
    alice = users["alice"]
    gw = make_gateway({"listener plain": PLAIN,
                       "protection": prot(cache_positive_ttl=2, cache_negative_ttl=2)})
    assert code_and(gw, alice.name, alice.password) == (235, "ok", "file", "")
    # Within the TTL the users file is not consulted: no hash is checked.
    for _ in range(3):
        assert code_and(gw, alice.name, alice.password) == (235, "ok", "file", "cache=hit")
    # A wrong password has an entry of its own, and never shadows the right one.
    assert code_and(gw, alice.name, "wrong") == (535, "bad_password", "file", "")
    assert code_and(gw, alice.name, "wrong") == (535, "bad_password", "file", "cache=hit")
    # CRAM-MD5 is never cached (its digest depends on the challenge); a
    # password is never logged (conftest checks the whole log at teardown).
    # After the positive TTL the source is asked again.
    wait_until(lambda: code_and(gw, alice.name, alice.password) == (235, "ok", "file", ""),
               15, "the positive entry to expire", interval=0.25)


def test_cache_emptied_by_sighup(make_gateway, users):
    alice = users["alice"]
    hashes = {u.name: u.hash for u in users.values()}
    gw = make_gateway({"listener plain": PLAIN, "protection": prot()}, users=hashes)
    assert code_and(gw, alice.name, alice.password)[0] == 235
    assert code_and(gw, alice.name, alice.password)[3] == "cache=hit"
    # A new password in the users file, then SIGHUP: the old one is refused
    # at once, not after cache_positive_ttl.
    gw.write_users({**hashes, alice.name: harness.hash_password("brand-New-9", "sha512-crypt")})
    mark = gw.log_mark()
    gw.hup()
    gw.wait_for_log(r"auth: cache cleared entries=\d+", since=mark)
    gw.wait_for_log(r"auth: reload source=file done", since=mark)
    assert code_and(gw, alice.name, alice.password)[:3] == (535, "bad_password", "file")
    assert code_and(gw, alice.name, "brand-New-9") == (235, "ok", "file", "")


# ---------------------------------------------------------------- cache (slapd)

def CountingSlapd(*args, **kw):
    """The fixture's slapd, run with "-d 256" (stats) so that its own log
    says which binds reached it (Slapd.binds())."""
    return lf.Slapd(*args, stats=True, **kw)


def ldappasswd(slapd, dn, new):
    r = subprocess.run(["ldappasswd", "-x", "-H", slapd.uri, "-D", slapd.rootdn, "-w",
                        lf.ROOT_PW, "-s", new, dn], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(lf.available() is not None, reason=str(lf.available()))
def test_ldap_cache_binds_password_change_and_stale(make_gateway, base_dir):
    ann = lf.Person("ann", "ann", "ann-Secret-1", "ssha", mail=["ann@corp.test"])
    ben = lf.Person("ben", "ben", "ben-Secret-1", "ssha")
    slapd = CountingSlapd(base_dir, "prot", "dc=prot,dc=test").load([ann, ben]).start()
    try:
        pwfile = lf.write_password_file(base_dir)
        gw = make_gateway({
            "users-file": None,
            "ldap corp": lf.ldap_section(slapd, pwfile),
            "listener plain": dict(PLAIN, sender_login_match=True),
            # 454s must not count: three would lock (client, login) out.
            "protection": prot(cache_positive_ttl=2, cache_negative_ttl=2,
                               cache_stale_ttl=60, lockout_client_login_failures=3),
            "alerts": {"unreachable_after": "1s"},
        }, users={})
        dn = ann.dn(slapd.suffix)
        r, f = login(gw, "ann", "ann-Secret-1")
        r.check(235)
        # The session goes on as the entry's DN (normalized), logged.
        assert (f["reason"], f["source"], f["extra"], f["identity"]) == \
            ("ok", "ldap", "", dn.lower())
        wait_until(lambda: slapd.binds(dn) == 1, 10, "slapd to log ann's bind")
        # Cache hits: no bind reaches slapd.
        for _ in range(4):
            assert code_and(gw, "ann", "ann-Secret-1") == (235, "ok", "ldap", "cache=hit")
        assert slapd.binds(dn) == 1
        # The directory's mail attribute is ann's own address for the sender
        # policy, on a cache hit too.
        for sender, code in [("ann@corp.test", 250), ("ANN@corp.test", 250),
                             ("boss@corp.test", 553), ("ann@other.test", 553)]:
            c = SMTPConn.open(gw, "plain")
            c.ehlo()
            c.auth_plain("ann", "ann-Secret-1").check(235)
            c.cmd(f"MAIL FROM:<{sender}>").check(code)
            c.close()
        assert slapd.binds(dn) == 1

        # The password changes in the directory: the old one still works
        # from the cache, at the latest until the positive TTL is over.
        ldappasswd(slapd, dn, "ann-Changed-2")
        wait_until(lambda: code_and(gw, "ann", "ann-Secret-1")[:2] == (535, "bad_password"),
                   15, "the old password to be refused once its entry expired",
                   interval=0.25)
        assert code_and(gw, "ann", "ann-Changed-2") == (235, "ok", "ldap", "")
        binds = slapd.binds(dn)

        # slapd stops. Once the entry is past its TTL, a login with the
        # cached password is answered from the stale entry (logged as such);
        # anything else gets 454, and 454s are never counted as failures.
        slapd.stop()
        wait_until(lambda: code_and(gw, "ann", "ann-Changed-2") ==
                   (235, "ok", "ldap", "cache=stale"), 20, "a stale answer", interval=0.25)
        for _ in range(4):
            assert code_and(gw, "ann", "ann-Wrong-3")[:2] == (454, "directory_unavailable")
        assert code_and(gw, "ben", "ben-Secret-1")[:2] == (454, "directory_unavailable")
        gw.wait_for_log(r"alert kind=source_unreachable mailed=\w+ hook=\w+ source=ldap "
                        r"down_for=\d+")
        assert slapd.binds(dn) == binds
    finally:
        slapd.stop()


# ---------------------------------------------------------------- throttle

@pytest.fixture(scope="module")
def throttlegw(module_gateway):
    """Lockouts: (client, login) at 3, login at 4, client at 6, for 2 s;
    127.0.0.12 is allow-listed."""
    return module_gateway({
        "listener plain": PLAIN,
        "protection": prot(lockout_client_login_failures=3, lockout_login_failures=4,
                           lockout_client_failures=6, lockout_time=2,
                           allow_networks="127.0.0.12/32"),
    })


def fail_n(gw, user, passwords, source):
    """Wrong passwords in one connection; returns the reply codes."""
    c = SMTPConn.open(gw, "plain", source=source)
    c.ehlo()
    codes = [c.auth_plain(user, pw).code for pw in passwords]
    c.close()
    return codes


def test_lockout_and_expiry(throttlegw, users):
    alice = users["alice"]
    assert fail_n(throttlegw, alice.name, ["w1", "w2", "w3"], "127.0.0.2") == [535] * 3
    throttlegw.wait_for_log(r"auth: lockout scope=client_login client=127\.0\.0\.2 "
                            r"failures=3 lockout_time=2 user=\"alice\"")
    # Locked: the right password too, without asking the users file.
    r, f = login(throttlegw, alice.name, alice.password, "127.0.0.2")
    r.check(454, "4.7.0")
    assert (f["result"], f["reason"], f["source"], f["extra"].strip()) == \
        ("tempfail", "locked", "none", "lock=client_login")
    # Only that pair: alice from elsewhere is fine.
    assert code_and(throttlegw, alice.name, alice.password, "127.0.0.3")[0] == 235
    # The lockout ends.
    wait_until(lambda: code_and(throttlegw, alice.name, alice.password, "127.0.0.2")[0] == 235,
               15, "the lockout to expire", interval=0.25)


def test_one_stale_password_never_locks(throttlegw, users):
    """A phone retrying one stale password is one failure, however often."""
    bob = users["bob"]
    assert fail_n(throttlegw, bob.name, ["old-password"] * 10, "127.0.0.4") == [535] * 10
    assert code_and(throttlegw, bob.name, bob.password, "127.0.0.4")[0] == 235


def test_lockout_shield(throttlegw, users):
    """Many clients, one login: past lockout_login_failures the users file
    (standing for the directory) is no longer asked for that login; a
    password already in the cache still gets in, but only from the client
    address the source said yes to: from anywhere else the cache would
    answer an attacker's guesses without limit during the lockout."""
    carol, dave = users["carol"], users["dave"]
    assert code_and(throttlegw, carol.name, carol.password, "127.0.0.5")[0] == 235
    for i, src in enumerate(["127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"]):
        assert fail_n(throttlegw, carol.name, [f"spray-{i}"], src) == [535]
        assert fail_n(throttlegw, dave.name, [f"spray-{i}"], src) == [535]
    throttlegw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=4 .*user=\"dave\"")
    throttlegw.wait_for_log(r"auth: lockout scope=login client=\S+ failures=4 .*user=\"carol\"")
    # The right password from another address: locked, like any guess.
    assert code_and(throttlegw, carol.name, carol.password, "127.0.0.10") == \
        (454, "locked", "none", "lock=login")
    assert code_and(throttlegw, carol.name, "spray-0", "127.0.0.10") == \
        (454, "locked", "none", "lock=login")
    # From the address where it worked: the owner gets in.
    assert code_and(throttlegw, carol.name, carol.password, "127.0.0.5") == \
        (235, "ok", "file", "cache=hit")
    assert code_and(throttlegw, dave.name, dave.password, "127.0.0.10") == \
        (454, "locked", "none", "lock=login")


def test_client_lockout(throttlegw, users):
    names = ["u1", "u2", "u3", "u4", "u5", "u6"]
    c = SMTPConn.open(throttlegw, "plain", source="127.0.0.11")
    c.ehlo()
    assert [c.auth_plain(n, "x").code for n in names] == [535] * 6
    throttlegw.wait_for_log(r"auth: lockout scope=client client=127\.0\.0\.11 failures=6 "
                            r".*user=\"\*\"")
    c.auth_plain(users["erin"].name, users["erin"].password).check(454, "4.7.0")


def test_allow_networks_exempt_per_client_only(throttlegw, users):
    """127.0.0.12 is allow-listed: never locked out per client (6) nor per
    pair (3); but the address is only what a worker says, so the login's
    shield (4) holds for it too."""
    frank = users["frank"]
    assert fail_n(throttlegw, frank.name, ["w0", "w1", "w2"], "127.0.0.12") == [535] * 3
    assert code_and(throttlegw, frank.name, frank.password, "127.0.0.12")[0] == 235
    c = SMTPConn.open(throttlegw, "plain", source="127.0.0.12")
    c.ehlo()
    assert [c.auth_plain(f"stranger{i}", "x").code for i in range(7)] == [535] * 7
    c.close()
    assert code_and(throttlegw, frank.name, frank.password, "127.0.0.12")[0] == 235
    # A fourth distinct wrong password shields the login, allow-listed or
    # not; frank's own password still gets in from the cache.
    assert fail_n(throttlegw, frank.name, ["w3", "w4"], "127.0.0.12") == [535, 454]
    throttlegw.wait_for_log(r"auth: lockout scope=login client=127\.0\.0\.12 .*user=\"frank\"")
    assert code_and(throttlegw, frank.name, "w5", "127.0.0.12") == \
        (454, "locked", "none", "lock=login")
    assert code_and(throttlegw, frank.name, frank.password, "127.0.0.12") == \
        (235, "ok", "file", "cache=hit")


def test_client_lockout_421_and_growing_delay(make_gateway, users):
    gw = make_gateway({"listener plain": PLAIN,
                       "protection": prot(lockout_client_failures=4, lockout_reply=421,
                                          delay_after=1, delay_ms=300, delay_max_ms=600)})
    c = SMTPConn.open(gw, "plain", source="127.0.0.13")
    c.ehlo()
    took = []
    for i in range(4):
        t0 = time.monotonic()
        c.auth_plain(f"nobody{i}", "x").check(535, "5.7.8")
        took.append(time.monotonic() - t0)
    # No delay, then 300 ms, then the 600 ms cap.
    assert took[0] < 0.25 and 0.3 <= took[1] < 1.5 and 0.6 <= took[2] < 1.8 \
        and 0.6 <= took[3] < 1.8, took
    gw.wait_for_log(r"result=fail reason=unknown_user .* delay_ms=600 .*user=\"nobody2\"")
    r = c.auth_plain(users["alice"].name, users["alice"].password)
    r.check(421, "4.7.0")
    c.wait_closed()


# ---------------------------------------------------------------- sender, limits, alerts

@pytest.fixture(scope="module")
def sink():
    s = Sink(HOST, harness.free_port()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hook_dir(base_dir):
    """Where the alert hook (a script here, run as the queue's user) leaves
    each alert, and who ran it: its kind, uid, parent, grandparent and
    great-grandparent pids (/bin/sh -c may or may not fork once more before
    the script, and the queue starts it through its hook helper)."""
    d = make_dir(base_dir, "hook-")
    os.chmod(d, 0o777)
    script = d / "hook.sh"
    script.write_text('cd "$(dirname "$0")" && cat > alert.$$.tmp && '
                      'echo "$AUTHRELAY_ALERT_KIND $(id -u) $PPID '
                      '$(cut -d" " -f4 /proc/$PPID/stat) '
                      '$(cut -d" " -f4 /proc/$(cut -d" " -f4 /proc/$PPID/stat)/stat)" '
                      '> who.$$.tmp && '
                      'mv who.$$.tmp who.$$.txt && mv alert.$$.tmp alert.$$.txt\n')
    os.chmod(script, 0o755)
    return d


@pytest.fixture(scope="module")
def mailgw(module_gateway, users, sink, hook_dir):
    hashes = {u.name: u.hash for u in users.values()}
    hashes["alice"] += ":alice@example.test,a.lias@example.test"
    return module_gateway({
        "listener plain": dict(PLAIN, sender_login_match=True),
        "protection": prot(messages_per_hour=2, recipients_per_hour=5,
                           sender_allow_users="bob"),
        "alerts": {"to": "admin@example.test, sec@example.test",
                   "from": "authrelay@example.test",
                   "login_failures_per_login": "2/60s", "login_failures_global": "off",
                   "login_failures_per_client": "off", "multi_ip_threshold": 2,
                   "multi_ip_window": "60s", "cooldown": "1h",
                   "hook": f"/bin/sh {hook_dir}/hook.sh"},
        "queue": {"smarthost": f"[{HOST}]:{sink.port}", "retry_min": "1s", "retry_max": "2s"},
    }, users=hashes)


def authed(gw, user, source=HOST):
    c = SMTPConn.open(gw, "plain", source=source)
    c.ehlo()
    c.auth_plain(user.name, user.password).check(235)
    return c


@pytest.mark.parametrize("who,sender,code", [
    ("alice", "a.lias@example.test", 250),       # the users file's third field
    ("alice", "ALICE@Example.TEST", 250),        # any case
    ("alice", "alice@other.test", 553),
    ("alice", "bob@example.test", 553),
    ("gina@example.test", "gina@example.test", 250),  # the login is an address
    ("gina@example.test", "gina2@example.test", 553),
    ("carol", "carol@example.test", 250),        # login at the listener's default_domain
    ("carol", "", 250),                          # the null sender
    ("bob", "anyone@else.test", 250),            # sender_allow_users
])
def test_sender_login_match(mailgw, users, who, sender, code):
    c = authed(mailgw, users[who])
    r = c.cmd(f"MAIL FROM:<{sender}>")
    if code == 553:
        r.check(553, "5.7.1")
        mailgw.wait_for_log(rf"reject reason=sender_login_mismatch user=\"{re.escape(who)}\" "
                            rf"from=\"<{re.escape(sender)}>\"")
    else:
        r.check(250, "2.1.0")


def test_sender_addresses_from_the_cache(mailgw, users):
    """A cached login carries the user's addresses too."""
    alice = users["alice"]
    for _ in range(2):
        mark = mailgw.log_mark()
        c = authed(mailgw, alice)
        c.cmd("MAIL FROM:<a.lias@example.test>").check(250)
        c.close()
    assert "cache=hit" in mailgw.wait_for_log(r"result=ok[^\n]* user=\"alice\"",
                                               since=mark).group(0)


def test_sender_policy_only_where_configured(mailgw, users):
    c = harness.submission_conn(mailgw, "sub")
    c.auth_plain(users["alice"].name, users["alice"].password).check(235)
    c.cmd("MAIL FROM:<someone@else.test>").check(250)


def test_messages_per_hour_shared_by_workers(mailgw, users, sink):
    dave = users["dave"]
    pids = set()
    for i in range(2):
        c = authed(mailgw, dave)
        pids.add(mailgw.pid_serving(c))
        c.send_message("dave@example.test", ["x@other.test"],
                       make_message("dave@example.test", "x@other.test")).queued_id()
        c.close()
    # Two messages this hour, from whichever workers: the third MAIL gets 450.
    for _ in range(3):
        c = authed(mailgw, dave)
        pids.add(mailgw.pid_serving(c))
        c.cmd("MAIL FROM:<dave@example.test>").check(450, "4.7.1")
        c.close()
    assert len(pids) >= 1
    mailgw.wait_for_log(r"reject reason=messages_per_hour count=2 limit=2 user=\"dave\"")
    mailgw.wait_for_log(r"alert kind=send_limit mailed=yes hook=yes client=127\.0\.0\.1 "
                        r"limit=messages_per_hour count=2 max=2 user=\"dave\"")
    got = sink.wait_for(lambda ms: [m for m in ms if b"sending limit hit by dave" in m.data],
                        30, "the send_limit alert at the sink")
    m = got[0]
    assert m.mail_from == "<>" or m.mail_from == ""
    assert sorted(m.rcpt_tos) == ["admin@example.test", "sec@example.test"]
    msg = m.parsed()
    assert msg["From"] == "authrelay@example.test"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "messages_per_hour" in msg.get_payload()


def test_recipients_per_hour(mailgw, users):
    erin = users["erin"]
    c = authed(mailgw, erin)
    rcpts = [f"r{i}@other.test" for i in range(5)]
    c.send_message("erin@example.test", rcpts,
                   make_message("erin@example.test", rcpts[0])).queued_id()
    c.cmd("MAIL FROM:<erin@example.test>").check(250)
    c.cmd("RCPT TO:<r6@other.test>").check(450, "4.7.1")
    mailgw.wait_for_log(r"reject reason=recipients_per_hour count=5 limit=5 user=\"erin\"")


def test_login_failure_alert_arrives(mailgw, users, sink, hook_dir):
    """More than 2 failures for one login within 60 s: one alert mail, with
    the counts, the top logins and the top client addresses; once per
    cooldown; and the hook gets it on stdin."""
    for i, src in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.3"]):
        assert fail_n(mailgw, "frank", [f"guess-{i}"], src) == [535]
    mailgw.wait_for_log(r"alert kind=login_failures mailed=yes hook=yes scope=login "
                        r"failures=3 window=60 user=\"frank\"")
    got = sink.wait_for(lambda ms: [m for m in ms
                                    if b"login failures: 3 for login frank" in m.data],
                        30, "the login_failures alert at the sink")
    assert len(got) == 1, "one alert per cooldown"
    msg = got[0].parsed()
    assert msg["Subject"] == \
        "[authrelay] SMTP authentication login failures: 3 for login frank in 60 s"
    body = msg.get_payload()
    assert re.search(r"Top logins:\s+3  frank", body), body
    assert re.search(r"Top client addresses:\s+2  127\.0\.0\.3\s+1  127\.0\.0\.2", body), body
    texts = wait_until(lambda: [p.read_text() for p in hook_dir.glob("alert.*.txt")
                                if "login_failures" in p.read_text()],
                       15, "the hook's copy of the alert")
    assert texts[0].startswith('kind=login_failures scope=login failures=3 window=60 '
                               'user="frank"\n')
    # The hook ran from the queue process (through the helper it forked
    # before its sandbox), as [server] queue_user: the auth process, which
    # holds the secrets, starts no shell.
    who = [p.read_text().split() for p in hook_dir.glob("who.*.txt")]
    who = [w for w in who if w[0] == "login_failures"]
    assert len(who) == 1, who
    _, uid, *ancestors = who[0]
    assert int(uid) == pwd.getpwnam(harness.QUEUE_AS).pw_uid
    queue_pids = mailgw.logged_pids("queue")
    assert {int(p) for p in ancestors} & queue_pids, (who[0], queue_pids)
    assert not {int(p) for p in ancestors} & mailgw.logged_pids("auth"), who[0]
    # The 4th failure was past the threshold too, but within the cooldown.
    assert len([m for m in sink.snapshot() if b"for login frank" in m.data]) == 1


def test_alert_waits_for_a_queue_restart(mailgw, sink):
    """An alert raised while the queue process does not read waits in the
    channel the master holds open, and the next queue process spools it."""
    alive = set(mailgw.children())
    old = [p for p in mailgw.logged_pids("queue") if p in alive]
    assert len(old) == 1, old
    os.kill(old[0], signal.SIGSTOP)
    try:
        assert fail_n(mailgw, "ivan-gone", ["g1", "g2", "g3"], "127.0.0.40") == [535] * 3
        mailgw.wait_for_log(r"alert kind=login_failures mailed=yes hook=yes scope=login "
                            r"failures=3 window=60 user=\"ivan-gone\"")
    finally:
        os.kill(old[0], signal.SIGKILL)
    got = sink.wait_for(lambda ms: [m for m in ms if b"for login ivan-gone" in m.data],
                        30, "the alert mail after the queue's restart")
    assert len(got) == 1
    qid = re.search(rb"Received: by \S+ \(authrelay alerts\) id (\w+);", got[0].data).group(1)
    line = mailgw.wait_for_log(rf"queue\[(\d+)\] info: alert queued id={qid.decode()} "
                               r"kind=login_failures from=<> nrcpt=2")
    assert int(line.group(1)) != old[0], "spooled by the queue process that was stopped"


def test_multi_ip_alert(mailgw, users):
    gina = users["gina@example.test"]
    for src in ["127.0.0.20", "127.0.0.21", "127.0.0.22"]:
        authed(mailgw, gina, src).close()
    mailgw.wait_for_log(r"alert kind=multi_ip mailed=\w+ hook=\w+ clients=3 window=60 "
                        r"user=\"gina@example\.test\"")
