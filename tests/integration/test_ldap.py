# SPDX-License-Identifier: ISC
"""The LDAP auth source against real OpenLDAP slapd servers the test starts
(ldap_fixture.py): every stored hash format with method = bind and
method = fetch, StartTLS and ldaps:// with certificate verification, the
uniqueness rule across two directories and inside one, unknown users, wrong
and empty passwords, filter injection and hostile logins, disabled entries,
the group gate, dn_template without a service account, failover to a second
URI, a directory stopped (454) or frozen with SIGSTOP (454 within the
timeout while other sessions, on other listeners too, are served at once),
check-config errors, and the test-auth / test-query tools.

All logins go through the daemon with real clients (raw SMTP sessions over
STARTTLS or implicit TLS, smtplib for CRAM-MD5)."""

import base64
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ldap_fixture as lf
from harness import (AUTH_AS, SMTPConn, auth_code, b64, plain_ir, run_tool, submission_conn,
                     wait_until)

pytestmark = pytest.mark.skipif(lf.available() is not None, reason=str(lf.available()))

# Schemes slapd itself can check on a bind ({CLEARTEXT} is not compiled in
# Debian's slapd); fetch covers them all.
BIND_SCHEMES = [s for s in lf.HASH_SCHEMES if s != "cleartext"]

HOSTILE_UIDS = {
    "weird": "we*rd(1)\\x",          # every RFC 4515 special
    "spaced": "sp ace user",
    "utf8": "j\u00f6rg.m\u00fcller",
}
# The auth cache and the brute-force throttle ([protection]) would answer
# from memory or delay the many failures these tests make on purpose.
PROTECTION_OFF = {"cache_size": 0, "delay_ms": 0, "lockout_client_failures": 0,
                  "lockout_login_failures": 0, "lockout_client_login_failures": 0}


def cfg(sections):
    sections.setdefault("protection", PROTECTION_OFF)
    return sections


INJECTIONS = ["*", "ann*", "*)(uid=*", "ann)(|(uid=*", "ann)(objectClass=*", "*)(|(mail=*",
              "ann\\2a", "(uid=ann)"]


class Dirs:
    """The two directories shared by the module's tests."""

    def __init__(self, base):
        tls_dir = lf.harness.make_dir(base, "ldap-tls-")
        self.cert, self.key = lf.make_ldap_cert(tls_dir)
        self.people = {}
        corp = []
        for s in lf.HASH_SCHEMES:
            corp.append(lf.Person(f"fmt-{s}", f"fmt-{s}", f"{s}-Pass-1", s))
        corp += [
            lf.Person("ann", "ann", "ann-Secret-1", "ssha", mail=["ann@corp.test"]),
            lf.Person("dup", "dup", "dup-corp-1", "ssha"),
            lf.Person("twin1", "twin1", "twin-1", "ssha", mail=["twins@corp.test"]),
            lf.Person("twin2", "twin2", "twin-2", "ssha", mail=["twins@corp.test"]),
            lf.Person("gone", "gone", "gone-Secret-1", "ssha", disabled=True),
            lf.Person("nopw", "nopw", None),
        ]
        corp += [lf.Person(rdn, uid, f"{rdn}-Secret-9", "ssha") for rdn, uid in
                 HOSTILE_UIDS.items()]
        partners = [lf.Person("dup", "dup", "dup-partners-1", "ssha"),
                    lf.Person("pat", "pat", "pat-Secret-1", "ssha", mail=["pat@partners.test"])]
        self.people = {p.uid: p for p in corp}
        self.partner_people = {p.uid: p for p in partners}
        self.corp = lf.Slapd(base, "corp", "dc=corp,dc=test", tls=(self.cert, self.key))
        group = lf.Group("smtp-users", [self.people["ann"].dn(self.corp.suffix)])
        self.corp.load(corp + [group]).start()
        self.partners = lf.Slapd(base, "partners", "dc=partners,dc=test").load(partners).start()
        self.pwfile = lf.write_password_file(base)
        self.group_dn = group.dn(self.corp.suffix)

    def secrets(self):
        out = set()
        for p in list(self.people.values()) + list(self.partner_people.values()):
            if p.password:
                out |= {p.password, b64(p.password), plain_ir(p.uid, p.password)}
        out.add(lf.SERVICE_PW)
        return out

    def stop(self):
        self.corp.stop()
        self.partners.stop()


@pytest.fixture(scope="module")
def dirs(base_dir):
    d = Dirs(base_dir)
    yield d
    d.stop()
    lf.stop_all()


def corp_section(dirs, **kw):
    """corp over StartTLS, certificate verified against our CA."""
    kw.setdefault("starttls", "yes")
    kw.setdefault("ca_file", str(dirs.cert))
    return lf.ldap_section(dirs.corp, dirs.pwfile, **kw)


@pytest.fixture(scope="module")
def bindgw(module_gateway, dirs):
    """bind method, two directories (corp over StartTLS, partners plain)."""
    gw = module_gateway(cfg({"ldap corp": corp_section(dirs),
                         "ldap partners": lf.ldap_section(dirs.partners, dirs.pwfile)}))
    yield gw
    gw.assert_no_secrets(dirs.secrets())


@pytest.fixture(scope="module")
def fetchgw(module_gateway, dirs):
    """fetch method over ldaps://, CRAM-MD5 offered."""
    gw = module_gateway(cfg({
        "ldap corp": lf.ldap_section(dirs.corp, dirs.pwfile, uri=dirs.corp.ldaps_uri,
                                     ca_file=str(dirs.cert), method="fetch"),
        "listener sub": {"cram_md5": "yes"},
    }))
    yield gw
    gw.assert_no_secrets(dirs.secrets())


def auth_reason(gw, user, password, listener="sub", since=None):
    """(SMTP code, the auth process's reason) for one AUTH PLAIN."""
    mark = gw.log_mark() if since is None else since
    code = auth_code(gw, user, password, listener)
    m = gw.wait_for_log(r"auth client=\S+ listener=\S+ result=\w+ reason=(\w+) "
                        r"source=(\w+) [^\n]*mech=PLAIN user=", since=mark)
    return code, m.group(1), m.group(2)


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("scheme", BIND_SCHEMES)
def test_bind_every_hash_format(bindgw, dirs, scheme):
    p = dirs.people[f"fmt-{scheme}"]
    assert auth_reason(bindgw, p.uid, p.password) == (235, "ok", "ldap")


@pytest.mark.parametrize("scheme", lf.HASH_SCHEMES)
def test_fetch_every_hash_format(fetchgw, dirs, scheme):
    p = dirs.people[f"fmt-{scheme}"]
    assert auth_reason(fetchgw, p.uid, p.password) == (235, "ok", "ldap")
    assert auth_reason(fetchgw, p.uid, p.password + "x") == (535, "bad_password", "ldap")


def test_fetch_entry_without_password(fetchgw, dirs):
    assert auth_reason(fetchgw, "nopw", "whatever")[:2] == (535, "no_password")


def cram_response(user, secret, challenge_b64):
    challenge = base64.b64decode(challenge_b64, validate=True)
    return b64(f"{user} " + hmac.new(secret.encode(), challenge, "md5").hexdigest())


@pytest.mark.parametrize("scheme,code", [("plain", 235), ("cleartext", 235), ("ssha", 535)])
def test_fetch_cram_md5_needs_cleartext(fetchgw, dirs, scheme, code):
    p = dirs.people[f"fmt-{scheme}"]
    c = submission_conn(fetchgw)
    assert "CRAM-MD5" in c.ehlo().keywords()["AUTH"]
    r = c.cmd("AUTH CRAM-MD5").check(334)
    c.cmd(cram_response(p.uid, p.password, r.lines[0])).check(code)


# ---------------------------------------------------------------- outcomes

def test_wrong_password(bindgw, dirs):
    assert auth_reason(bindgw, "ann", "not-it") == (535, "bad_password", "ldap")


def test_login_by_mail_attribute(bindgw, dirs):
    assert auth_reason(bindgw, "ann@corp.test", "ann-Secret-1") == (235, "ok", "ldap")


def test_unknown_user(bindgw):
    assert auth_reason(bindgw, "nobody-here", "x-pass") == (535, "unknown_user", "ldap")


def test_users_file_still_first(bindgw, users):
    """The users file is consulted before the directories."""
    alice = users["alice"]
    assert auth_reason(bindgw, alice.name, alice.password) == (235, "ok", "file")


def test_empty_password_refused_before_any_directory(bindgw, dirs):
    mark = bindgw.log_mark()
    c = submission_conn(bindgw)
    c.cmd("AUTH PLAIN " + b64("\0ann\0")).check(535, "5.7.8")
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(b64("ann")).check(334)
    c.cmd("").check(535, "5.7.8")   # an empty password line
    # No lookup reached a directory (the log line comes before the reply).
    assert not re.search(r"ldap dir=\w+ lookup=[^\n]* user=\"ann\"", bindgw.log_text()[mark:])


def test_disabled_entry_is_unknown(bindgw, dirs):
    assert auth_reason(bindgw, "gone", "gone-Secret-1") == (535, "unknown_user", "ldap")


def test_ambiguous_across_directories(bindgw, dirs):
    mark = bindgw.log_mark()
    for pw in ("dup-corp-1", "dup-partners-1"):
        assert auth_reason(bindgw, "dup", pw, since=mark)[:2] == (535, "ambiguous")
        m = bindgw.wait_for_log(r"ldap ambiguous: matched in directories=(\S+) "
                                r"user=\"dup\"", since=mark)
        assert set(m.group(1).split(",")) == {"corp", "partners"}, m.group(0)
        mark = bindgw.log_mark()


def test_ambiguous_inside_one_directory(bindgw, dirs):
    mark = bindgw.log_mark()
    assert auth_reason(bindgw, "twins@corp.test", "twin-1")[:2] == (535, "ambiguous")
    bindgw.wait_for_log(r"ldap ambiguous: matched in directories=corp \(several entries "
                        r"in one directory\) user=\"twins@corp.test\"", since=mark)


# ---------------------------------------------------------------- hostile logins

@pytest.mark.parametrize("rdn", sorted(HOSTILE_UIDS))
def test_hostile_but_real_logins(bindgw, dirs, rdn):
    p = dirs.people[HOSTILE_UIDS[rdn]]
    assert auth_reason(bindgw, p.uid, p.password) == (235, "ok", "ldap")


@pytest.mark.parametrize("login", INJECTIONS)
def test_filter_injection(bindgw, dirs, login):
    """With ann's password, no login that is not ann's may get in, and a
    wildcard must not even match (it would be "ambiguous")."""
    code, reason, source = auth_reason(bindgw, login, "ann-Secret-1")
    assert (code, reason) == (535, "unknown_user"), (login, reason)


def test_nul_and_control_in_login(bindgw):
    c = submission_conn(bindgw)
    c.cmd("AUTH LOGIN").check(334)
    r = c.cmd(b64(b"ann\0x"))
    if r.code == 334:
        r = c.cmd(b64("ann-Secret-1"))
    assert r.code in (501, 535), str(r)


# ---------------------------------------------------------------- TLS

def test_certificate_not_trusted_is_tempfail(make_gateway, dirs, users, tls_files):
    """tls_verify is on by default: a directory whose certificate does not
    chain to ca_file is unavailable (454), never used."""
    gw = make_gateway(cfg({"ldap corp": corp_section(dirs, ca_file=str(tls_files[0]))}))
    mark = gw.log_mark()
    assert auth_reason(gw, "ann", "ann-Secret-1")[:2] == (454, "directory_unavailable")
    # The log says why: slapd's certificate is its own issuer, not in ca_file.
    gw.wait_for_log(r"ldap dir=corp: cannot connect \(.*StartTLS: certificate refused for "
                    r"\"127\.0\.0\.1\": unknown issuer: the certificate was issued by "
                    r"\"CN=localhost\", which is not among the CAs of ", since=mark)


# ---------------------------------------------------------------- modes

def test_group_gate(make_gateway, dirs):
    gw = make_gateway(cfg({"ldap corp": corp_section(dirs, group_dn=dirs.group_dn)}))
    assert auth_reason(gw, "ann", "ann-Secret-1") == (235, "ok", "ldap")
    p = dirs.people["fmt-ssha"]
    assert auth_reason(gw, p.uid, p.password)[:2] == (535, "not_in_group")
    assert auth_reason(gw, "ann", "wrong")[:2] == (535, "bad_password")


def test_dn_template_without_service_account(make_gateway, dirs):
    sec = corp_section(dirs, dn_template="cn=%u,ou=people,dc=corp,dc=test",
                       group_dn=dirs.group_dn)
    del sec["bind_dn"], sec["bind_password_file"]
    gw = make_gateway(cfg({"ldap corp": sec}))
    assert auth_reason(gw, "ann", "ann-Secret-1") == (235, "ok", "ldap")
    assert auth_reason(gw, "ann", "wrong")[:2] == (535, "unknown_user")
    p = dirs.people["fmt-ssha"]
    assert auth_reason(gw, p.uid, p.password)[:2] == (535, "not_in_group")
    # A DN-injection attempt binds as nobody.
    assert auth_reason(gw, "ann,ou=people", "ann-Secret-1")[:2] == (535, "unknown_user")


def test_failover_to_second_uri(make_gateway, dirs):
    dead = lf.harness.free_port()   # nothing listens there
    gw = make_gateway(cfg({"ldap corp": corp_section(
        dirs, uri=f"ldap://127.0.0.1:{dead}/ {dirs.corp.uri}")}))
    mark = gw.log_mark()
    assert auth_reason(gw, "ann", "ann-Secret-1") == (235, "ok", "ldap")
    gw.wait_for_log(rf"ldap dir=corp connected uri={re.escape(dirs.corp.uri)}", since=mark)


# ---------------------------------------------------------------- outages

@pytest.fixture
def own_dirs(base_dir, dirs):
    """Two fresh directories this test may stop or freeze."""
    a = lf.Slapd(base_dir, "own-a", "dc=corp,dc=test")
    a.load([lf.Person("ann", "ann", "ann-Secret-1", "ssha"),
            lf.Person("amy", "amy", "amy-Secret-1", "ssha")]).start()
    b = lf.Slapd(base_dir, "own-b", "dc=partners,dc=test")
    b.load([lf.Person("pat", "pat", "pat-Secret-1", "ssha")]).start()
    yield a, b
    a.stop()
    b.stop()


def test_directory_stopped_then_back(make_gateway, dirs, own_dirs):
    a, _ = own_dirs
    gw = make_gateway(cfg({"ldap a": lf.ldap_section(a, dirs.pwfile)}))
    assert auth_reason(gw, "ann", "ann-Secret-1") == (235, "ok", "ldap")
    a.stop()
    assert auth_reason(gw, "ann", "ann-Secret-1")[:2] == (454, "directory_unavailable")
    assert auth_reason(gw, "nobody-here", "x-pass")[:2] == (454, "directory_unavailable")
    a.start()
    wait_until(lambda: auth_code(gw, "ann", "ann-Secret-1") == 235, 40,
               "logins to work again once slapd is back")


def test_one_of_two_directories_down(make_gateway, dirs, own_dirs):
    """A directory down: the uniqueness rule cannot be checked, so a user
    found in the other one gets 454 too (fail closed), unless the directory
    that is down says when_unavailable = trust_others (weaker: the one that
    answered decides, with a warning). Not found, with a directory down:
    454 either way, the user may exist there."""
    a, b = own_dirs
    gw = make_gateway(cfg({"ldap a": lf.ldap_section(a, dirs.pwfile),
                           "ldap b": lf.ldap_section(b, dirs.pwfile)}))
    trusting = make_gateway(cfg({"ldap a": lf.ldap_section(a, dirs.pwfile),
                                 "ldap b": lf.ldap_section(b, dirs.pwfile,
                                                           when_unavailable="trust_others")}))
    assert auth_reason(gw, "pat", "pat-Secret-1") == (235, "ok", "ldap")
    b.stop()
    mark = gw.log_mark()
    assert auth_reason(gw, "ann", "ann-Secret-1")[:2] == (454, "directory_unavailable")
    gw.wait_for_log(r"found in directory=a, but directories=b unavailable: uniqueness cannot "
                    r"be checked", since=mark)
    assert auth_reason(gw, "pat", "pat-Secret-1")[:2] == (454, "directory_unavailable")
    assert auth_reason(gw, "nobody-here", "x-pass")[:2] == (454, "directory_unavailable")
    mark = trusting.log_mark()
    assert auth_reason(trusting, "ann", "ann-Secret-1") == (235, "ok", "ldap")
    trusting.wait_for_log(r"found in directory=a; directories=b unavailable", since=mark)
    assert auth_reason(trusting, "pat", "pat-Secret-1")[:2] == (454, "directory_unavailable")
    assert auth_reason(trusting, "nobody-here", "x-pass")[:2] == (454, "directory_unavailable")


def test_directory_frozen(make_gateway, dirs, own_dirs, users):
    """SIGSTOP: the kernel still accepts the TCP connection but nothing
    answers. The LDAP login gets 454 within the directory's timeout, and
    meanwhile other sessions, on other listeners too, are served at once."""
    a, _ = own_dirs
    timeout = 3
    gw = make_gateway(cfg({"ldap a": lf.ldap_section(a, dirs.pwfile, timeout=timeout)}))
    assert auth_code(gw, "ann", "ann-Secret-1") == 235      # a pooled connection exists
    alice = users["alice"]
    a.freeze()
    try:
        for attempt in range(2):   # pooled connection, then a fresh one
            slow = submission_conn(gw, "sub")
            t0 = time.monotonic()
            slow.send(f"AUTH PLAIN {plain_ir('ann', 'ann-Secret-1')}\r\n")
            # Other sessions, other listener: served promptly meanwhile.
            for listener in ("subs", "sub"):
                t1 = time.monotonic()
                c = submission_conn(gw, listener)
                c.auth_plain(alice.name, alice.password).check(235, "2.7.0")
                c.cmd("NOOP").check(250)
                # Well under the directory's timeout: nothing waited on it.
                assert time.monotonic() - t1 < timeout - 1, f"{listener} slow while frozen"
            r = slow.read_reply(timeout=timeout * 3 + 5)
            elapsed = time.monotonic() - t0
            r.check(454, "4.7.0")
            assert elapsed < timeout * 2 + 1.5, f"454 after {elapsed:.1f}s (attempt {attempt})"
    finally:
        a.thaw()
    wait_until(lambda: auth_code(gw, "ann", "ann-Secret-1") == 235, 40,
               "logins to work again once slapd is thawed")


# ---------------------------------------------------------------- config

def test_check_config_errors(make_gateway, dirs, bin_path):
    gw = make_gateway(cfg({"ldap ad": {"uri": "ldap://127.0.0.1:1/", "base": "dc=x",
                                   "type": "ad", "method": "fetch", "colour": "blue",
                                   "scope": "deep", "filter": "(uid=%x)"}}), start=False)
    r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode != 0, err
    # Each in the one format of every section (settings.h), on its line;
    # the rules between keys and the unknown key name the section.
    for key, text in [("method", "[ldap ad] method = fetch is not possible with type = ad"),
                      ("colour", "unknown key 'colour' in [ldap ad]"),
                      ("scope", "scope = deep: expected sub, one or base"),
                      ("filter", "filter = (uid=%x): unknown %-token")]:
        line = gw.config_line(rf"^{key} = ")
        assert re.search(rf"^{re.escape(str(gw.cfg_path))}:{line}: {re.escape(text)}",
                         err, re.M), err
    # The daemon refuses the same file at start (the auth process no
    # longer finds out in a loop).
    gw.start(wait=False)
    assert gw.proc.wait(15) == 78
    assert "scope = deep: expected sub, one or base" in gw.log_text()


def test_check_config_unreadable_password_file(make_gateway, dirs, bin_path, base_dir):
    pwfile = lf.write_password_file(base_dir, owner="root")
    gw = make_gateway(cfg({"ldap corp": lf.ldap_section(dirs.corp, pwfile)}), start=False)
    r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    line = gw.config_line(r"^bind_password_file = ")
    assert r.returncode != 0
    # Opened as [server] auth_user, as the auth process will.
    assert re.search(rf":{line}: bind_password_file = {re.escape(str(pwfile))}: not readable by "
                     rf"user {AUTH_AS} \(Permission denied\)$", r.stderr.decode(), re.M), \
        r.stderr.decode()


def test_check_config_ldap_files_as_auth_user(make_gateway, dirs, bin_path, base_dir):
    """A missing password file and a CA file only root can read are
    reported on their lines; a password file readable by everyone is a
    warning."""
    ca = Path(base_dir) / "ldap-ca-root-only.pem"
    shutil.copyfile(dirs.cert, ca)
    os.chmod(ca, 0o600)
    missing = Path(base_dir) / "no-such-password-file"
    section = corp_section(dirs, ca_file=str(ca))
    section["bind_password_file"] = str(missing)
    gw = make_gateway(cfg({"ldap corp": section}), start=False)
    r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 78, err
    path = re.escape(str(gw.cfg_path))
    assert re.search(rf"^{path}:{gw.config_line('^bind_password_file = ')}: bind_password_file = "
                     rf"{re.escape(str(missing))}: does not exist$", err, re.M), err
    assert re.search(rf"^{path}:{gw.config_line('^ca_file = ')}: ca_file = {re.escape(str(ca))}: "
                     rf"not readable by user {AUTH_AS} \(Permission denied\)$", err, re.M), err

    pwfile = lf.write_password_file(base_dir, owner=AUTH_AS)
    os.chmod(pwfile, 0o644)
    os.chmod(ca, 0o644)
    gw.sections["ldap corp"]["bind_password_file"] = str(pwfile)
    gw.write_config()
    r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert re.search(rf"^{path}:{gw.config_line('^bind_password_file = ')}: warning: "
                     rf"bind_password_file = {re.escape(str(pwfile))}: readable by every user",
                     err, re.M), err


# ---------------------------------------------------------------- tools

def test_test_auth_prints_each_step(make_gateway, dirs, bin_path):
    gw = make_gateway(cfg({"ldap corp": corp_section(dirs),
                       "ldap partners": lf.ldap_section(dirs.partners, dirs.pwfile)}),
                      start=False)
    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, "ann"], input="ann-Secret-1\n")
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    for want in [rf"{re.escape(dirs.corp.uri)}: connected, StartTLS done, certificate verified",
                 r"\[corp\] search on .* filter=\(&\(objectClass=inetOrgPerson\).*\(uid=ann\)",
                 r"\[corp\]   dn: cn=ann,ou=people,dc=corp,dc=test",
                 r"\[corp\]     mail: ann@corp.test",
                 r"\[partners\] lookup result: not_found",
                 r"decision: found in exactly one directory: corp",
                 r"\[corp\] bind on .* as \"cn=ann,ou=people,dc=corp,dc=test\"",
                 r"password check \(method bind\): ok",
                 r"^result: ok reason=ok \(SMTP 235 2\.7\.0\)",
                 r"^addresses \(for the sender policy\): ann@corp.test$"]:
        assert re.search(want, out, re.M), f"/{want}/ not in:\n{out}"
    assert "ann-Secret-1" not in out + r.stderr.decode()

    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, "*)(uid=*"], input="x\n")
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert r"(uid=\2a\29\28uid=\2a)" in out, out

    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, "dup"], input="dup-corp-1\n")
    assert r.returncode == 1 and "decision: ambiguous" in r.stdout.decode(), r.stdout.decode()


def test_test_auth_follows_the_daemons_order(make_gateway, dirs, bin_path, users):
    """Users file first, then LDAP: a login the file does not know goes on
    to the directory, as in the daemon; one the file knows never reaches it."""
    gw = make_gateway(cfg({"ldap corp": corp_section(dirs)}), start=False)
    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, "ann"], input="ann-Secret-1\n")
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    steps = [r"sources in the daemon's order: file ldap$",
             r"^source file \(users file\):$",
             r"^  no entry for \"ann\"",
             r"^  -> fail reason=unknown_user$",
             r"^  unknown to file: the daemon asks the next source$",
             r"^source ldap \(LDAP\):$",
             r"^directory corp: ",
             r"password check \(method bind\): ok",
             r"^  -> ok reason=ok$",
             r"^result: ok reason=ok \(SMTP 235 2\.7\.0\)$"]
    pos = 0
    for want in steps:
        m = re.compile(want, re.M).search(out, pos)
        assert m, f"/{want}/ not in order in:\n{out}"
        pos = m.end()
    alice = users["alice"]
    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, alice.name],
                 input=alice.password + "\n")
    out = r.stdout.decode()
    assert r.returncode == 0 and "source ldap" not in out, out
    # A wrong password in the file is final: the directory is not asked.
    r = run_tool([bin_path, "test-auth", "-c", gw.cfg_path, alice.name], input="wrong\n")
    assert r.returncode == 1 and "source ldap" not in r.stdout.decode(), r.stdout.decode()


def test_test_query_prints_entries(make_gateway, dirs, bin_path):
    gw = make_gateway(cfg({"ldap corp": corp_section(dirs)}), start=False)
    r = run_tool([bin_path, "test-query", "-c", gw.cfg_path, "ann@corp.test"])
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert re.search(r"\[corp\]     uid: ann$", out, re.M), out
    assert re.search(r"\[corp\]     userPassword: \{SSHA\}\.\.\. \(\d+ bytes, hidden\)", out), out
    r = run_tool([bin_path, "test-query", "-c", gw.cfg_path, "nobody-here"])
    assert r.returncode == 1, r.stdout.decode()
