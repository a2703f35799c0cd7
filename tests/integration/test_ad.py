# SPDX-License-Identifier: ISC
"""The LDAP source against a real Active Directory: Samba's AD domain
controller (samba_fixture.py), provisioned once and cached, run with the
gateways and the clients in a network namespace of this module's own.

Covered: logins by sAMAccountName, UPN and down-level name (CORP\\ann, the
NetBIOS domain read from the directory or configured); a user in a sub-OU;
the nested-group gate (LDAP_MATCHING_RULE_IN_CHAIN); a service account bound
by UPN and by down-level name; a UPN dn_template without a service account;
the Global Catalog (default port, the forest as base); a disabled account; a
wrong password; every AD bind sub-code as a reason (530 531 532 533 701 773
775) and the alert for 775; LDAPS and StartTLS with the certificate verified
for tls_name; TLS failures that name their cause (unknown issuer, name
mismatch, expired); test-auth naming the step that failed (wrong CA, bad
service password, unreachable DC, group gate); check-config for type = ad;
the DC stopped (454) and back."""

import os
import re

import pytest

import harness
import samba_fixture as sf
from harness import auth_code, b64, plain_ir, run_tool, wait_until

pytestmark = pytest.mark.skipif(sf.available() is not None, reason=str(sf.available()))

# The auth cache and the throttle would answer from memory or delay the
# failures these tests make on purpose.
PROTECTION_OFF = {"cache_size": 0, "delay_ms": 0, "lockout_client_failures": 0,
                  "lockout_login_failures": 0, "lockout_client_login_failures": 0}
SERVICE_UPN = f"{sf.SERVICE}@{sf.DNS_DOMAIN}"
# Logins as users type them, all ann's.
ANN_FORMS = ["ann", "ann@corp.example", "CORP\\ann", "corp\\ann"]
EX_TEMPFAIL = os.EX_TEMPFAIL   # test-auth: 454, the directory could not answer


def pw(user: str) -> str:
    return sf.USERS[user][0]


def ad_secrets() -> set[str]:
    out = {sf.ADMIN_PW}
    for name, (password, _) in sf.USERS.items():
        out |= {password, b64(password), plain_ir(name, password)}
    return out


@pytest.fixture(scope="module")
def ad(base_dir):
    """The DC, in this module's own network namespace (entered for the
    module: the gateways and clients of its tests run there too)."""
    ns = sf.NetNS()
    dc = None
    ns.enter()
    try:
        d = harness.make_dir(base_dir, "ad-")
        ca = sf.make_ca(d)
        dc = sf.SambaDC(base_dir, ca)
        dc.ca = ca
        dc.pwfile = sf.write_password_file(d)
        dc.start()
        yield dc
    finally:
        if dc is not None:
            dc.stop()
        sf.stop_all()
        ns.delete()


def ad_section(ad, **kw) -> dict:
    """LDAPS by address, the certificate verified for its name (tls_name),
    the service account bound by its UPN, type = ad defaults."""
    sec = {"uri": ad.ldaps_uri, "tls_name": sf.DC_HOST, "ca_file": str(ad.ca_cert),
           "type": "ad", "base": sf.BASE, "bind_dn": SERVICE_UPN,
           "bind_password_file": str(ad.pwfile), "network_timeout": 2, "timeout": 3,
           "pool_size": 4}
    for k, v in kw.items():
        if v is None:
            sec.pop(k, None)
        else:
            sec[k] = v
    return sec


def cfg(sections: dict) -> dict:
    sections.setdefault("protection", PROTECTION_OFF)
    return sections


def auth_reason(gw, user, password, since=None):
    """(SMTP code, the auth process's reason) for one AUTH PLAIN."""
    mark = gw.log_mark() if since is None else since
    code = auth_code(gw, user, password)
    m = gw.wait_for_log(r"auth client=\S+ listener=\S+ result=\w+ reason=(\w+) source=(\w+) "
                        rf"[^\n]*mech=PLAIN user=\"{re.escape(log_escaped(user))}\""
                        r"( identity=\"(?:[^\"\\]|\\.)*\")?$",
                        since=mark)
    assert m.group(2) == "ldap", m.group(0)
    return code, m.group(1)


def log_escaped(user: str) -> str:
    """user as log_escape() writes it (these logins are ASCII)."""
    return user.replace("\\", "\\\\").replace('"', '\\"').replace("=", "\\x3d")


@pytest.fixture(scope="module")
def gategw(ad, module_gateway):
    """LDAPS, service account by UPN, the nested-group gate, the NetBIOS
    domain read from the directory."""
    gw = module_gateway(cfg({"ldap corp": ad_section(ad, group_dn=sf.GROUP_DN)}))
    yield gw
    gw.assert_no_secrets(ad_secrets())


# Without "disabled excluded" in the filter and without a group gate, every
# account state reaches the bind, and AD says why it refuses.
STATE_FILTER = "(&(objectClass=user)(objectCategory=person)(|(sAMAccountName=%s)" \
               "(userPrincipalName=%s)))"


@pytest.fixture(scope="module")
def stategw(ad, module_gateway):
    """StartTLS verified for tls_name, service account by down-level name."""
    gw = module_gateway(cfg({"ldap corp": ad_section(
        ad, uri=ad.uri, starttls="yes", bind_dn=f"{sf.NETBIOS}\\{sf.SERVICE}",
        filter=STATE_FILTER)}))
    yield gw
    gw.assert_no_secrets(ad_secrets())


# ---------------------------------------------------------------- logins

@pytest.mark.parametrize("login", ANN_FORMS)
def test_login_forms(gategw, login):
    assert auth_reason(gategw, login, pw("ann")) == (235, "ok")


@pytest.mark.parametrize("login", ["dan", "CORP\\dan", "dan@corp.example"])
def test_sub_ou_user_in_nested_group(gategw, login):
    """dan lives in OU=Sales,OU=Staff and is in smtp-users through sales."""
    assert auth_reason(gategw, login, pw("dan")) == (235, "ok")


def test_group_gate_refuses(gategw):
    assert auth_reason(gategw, "ben", pw("ben")) == (535, "not_in_group")


def test_wrong_password(gategw):
    assert auth_reason(gategw, "ann", "not-her-password") == (535, "bad_password")
    assert auth_reason(gategw, "CORP\\ann", "not-her-password") == (535, "bad_password")


def test_disabled_account_is_not_found(gategw):
    """The type = ad filter leaves disabled accounts out."""
    assert auth_reason(gategw, "dis", pw("dis")) == (535, "unknown_user")


@pytest.mark.parametrize("login", ["OTHER\\ann", "nobody", "CORP\\nobody"])
def test_unknown(gategw, login):
    assert auth_reason(gategw, login, pw("ann")) == (535, "unknown_user")


def test_starttls_and_downlevel_service_account(stategw):
    """StartTLS on ldap://, the certificate verified for tls_name (the
    mismatch test below shows it is checked), the service account bound as
    CORP\\svc-smtp."""
    assert auth_reason(stategw, "CORP\\ann", pw("ann")) == (235, "ok")
    stategw.wait_for_log(r"ldap dir=corp connected uri=ldap://127\.0\.0\.1/ role=search")


@pytest.mark.parametrize("user,reason", [
    ("dis", "account_disabled"),      # data 533
    ("mia", "password_must_change"),  # 773
    ("eve", "account_expired"),       # 701
    ("pat", "password_expired"),      # 532
    ("hal", "logon_hours"),           # 530
    ("wes", "workstation_refused"),   # 531
])
def test_ad_bind_subcodes(stategw, user, reason):
    mark = stategw.log_mark()
    assert auth_reason(stategw, user, pw(user), since=mark) == (535, reason)
    stategw.wait_for_log(rf"ldap dir=corp bind refused: .* \(data [0-9a-f]+\) user=\"{user}\"",
                         since=mark)
    # A wrong password is a wrong password, whatever the account's state.
    assert auth_reason(stategw, user, "wrong-" + pw(user)) == (535, "bad_password")


def test_lockout_775_raises_an_alert(ad, make_gateway):
    """lou's password settings lock her out after 3 wrong passwords; the
    gateway's own shield is off here, so the directory's lockout is reached:
    reason account_locked, and an alert."""
    gw = make_gateway(cfg({"ldap corp": ad_section(ad, filter=STATE_FILTER)}))
    try:
        for i in range(sf.LOCKOUT_THRESHOLD):
            assert auth_reason(gw, "lou", f"guess-{i}") == (535, "bad_password")
        mark = gw.log_mark()
        assert auth_reason(gw, "lou", pw("lou"), since=mark) == (535, "account_locked")
        gw.wait_for_log(r"ldap dir=corp locked out by the directory itself .*user=\"lou\"",
                        since=mark)
        gw.wait_for_log(r"alert kind=directory_lockout mailed=\w+ hook=\w+ client=\S+ "
                        r"source=ldap user=\"lou\"",
                        since=mark)
    finally:
        ad.unlock("lou")
    assert auth_reason(gw, "lou", pw("lou")) == (235, "ok")
    gw.assert_no_secrets(ad_secrets())


def test_upn_dn_template_without_service_account(ad, make_gateway):
    """No service account: bind as ann@corp.example, read her entry as her.
    A down-level login needs netbios_domain then."""
    gw = make_gateway(cfg({"ldap corp": ad_section(
        ad, bind_dn=None, bind_password_file=None, dn_template="%u@corp.example",
        netbios_domain="CORP", group_dn=sf.GROUP_DN)}))
    for login in ANN_FORMS:
        assert auth_reason(gw, login, pw("ann")) == (235, "ok"), login
    assert auth_reason(gw, "dan", pw("dan")) == (235, "ok")
    # A template cannot tell a wrong password from no such user (52e).
    assert auth_reason(gw, "ann", "wrong") == (535, "unknown_user")
    # AD checks the password first: 533 says the account is here, disabled.
    assert auth_reason(gw, "dis", pw("dis")) == (535, "account_disabled")
    assert auth_reason(gw, "ben", pw("ben")) == (535, "not_in_group")
    assert auth_reason(gw, "OTHER\\ann", pw("ann")) == (535, "unknown_user")
    gw.assert_no_secrets(ad_secrets())


def test_global_catalog(ad, make_gateway):
    """type = gc: no port in the URI means 3268, no base means the forest;
    down-level logins search their domain's naming context."""
    gw = make_gateway(cfg({"ldap forest": ad_section(
        ad, type="gc", uri=f"ldap://{ad.host}", tls_name=None, base=None)}))
    mark = gw.log_mark()
    assert auth_reason(gw, "ann", pw("ann")) == (235, "ok")
    gw.wait_for_log(r"ldap dir=forest connected uri=ldap://127\.0\.0\.1:3268 role=search",
                    since=mark)
    assert auth_reason(gw, "CORP\\dan", pw("dan")) == (235, "ok")
    assert auth_reason(gw, "dan@corp.example", "wrong") == (535, "bad_password")
    gw.assert_no_secrets(ad_secrets())


# ---------------------------------------------------------------- outages

def test_dc_stopped_then_back(ad, make_gateway):
    gw = make_gateway(cfg({"ldap corp": ad_section(ad)}))
    assert auth_reason(gw, "ann", pw("ann")) == (235, "ok")
    ad.stop()
    try:
        assert auth_reason(gw, "ann", pw("ann")) == (454, "directory_unavailable")
        assert auth_reason(gw, "CORP\\ben", pw("ben")) == (454, "directory_unavailable")
    finally:
        ad.start()
    wait_until(lambda: auth_code(gw, "ann", pw("ann")) == 235, 40,
               "logins to work again once the DC is back")


# ---------------------------------------------------------------- test-auth

def run_test_auth(bin_path, gw_path, user, password):
    r = run_tool([bin_path, "test-auth", "-c", gw_path, user], input=password + "\n")
    out = r.stdout.decode() + r.stderr.decode()
    for s in ad_secrets():
        assert s not in out
    return r.returncode, out


@pytest.fixture
def tool_config(ad, make_gateway):
    """tool_config(**section overrides) -> the config path (not started)."""
    def make(**kw):
        return make_gateway(cfg({"ldap corp": ad_section(ad, **kw)}), start=False).cfg_path
    return make


def test_tool_success_shows_each_step(bin_path, tool_config):
    rc, out = run_test_auth(bin_path, tool_config(group_dn=sf.GROUP_DN), "CORP\\dan", pw("dan"))
    assert rc == 0, out
    for want in [r"connected, TLS done, certificate verified for \"dc1\.corp\.example\"",
                 r"bound as the service account \"svc-smtp@corp\.example\"",
                 r"domain CORP is DC=corp,DC=example",
                 r"down-level login: CORP\\dan is the account \"dan\"",
                 r"\(sAMAccountName=dan\)",
                 r"dn: CN=dan,OU=Sales,OU=Staff,DC=corp,DC=example",
                 r"group check: member",
                 r"^result: ok reason=ok"]:
        assert re.search(want, out, re.M), f"/{want}/ not in:\n{out}"
    assert "failed step" not in out


def test_tool_wrong_ca(bin_path, tool_config, tls_files):
    rc, out = run_test_auth(bin_path, tool_config(ca_file=str(tls_files[0])), "ann", pw("ann"))
    assert rc == EX_TEMPFAIL, out
    assert re.search(r"^  failed step: \[corp\] .*ldaps://127\.0\.0\.1/: TLS: certificate "
                     r"refused for \"dc1\.corp\.example\": unknown issuer: the certificate was "
                     r"issued by \"CN=authrelay test CA\"", out, re.M), out
    assert "result: tempfail reason=directory_unavailable" in out, out


def test_tool_name_mismatch(bin_path, tool_config):
    rc, out = run_test_auth(bin_path, tool_config(tls_name=None), "ann", pw("ann"))
    assert rc == EX_TEMPFAIL, out
    assert re.search(r"failed step: .*certificate refused for \"127\.0\.0\.1\": name mismatch: "
                     r"the certificate is for dc1\.corp\.example, not \"127\.0\.0\.1\"", out), out
    # StartTLS says the same.
    rc, out = run_test_auth(bin_path, tool_config(uri="ldap://127.0.0.1/", starttls="yes",
                                              tls_name="dc2.corp.example"), "ann", pw("ann"))
    assert rc == EX_TEMPFAIL, out
    assert re.search(r"StartTLS: certificate refused for \"dc2\.corp\.example\": name mismatch: "
                     r"the certificate is for dc1\.corp\.example", out), out


def test_tool_expired_certificate(ad, bin_path, tool_config, base_dir):
    good = (ad.cert, ad.key)
    ad.stop()
    try:
        ad.use_cert(*sf.make_expired_cert(base_dir, ad.ca))
        ad.start()
        rc, out = run_test_auth(bin_path, tool_config(), "ann", pw("ann"))
        assert rc == EX_TEMPFAIL, out
        assert re.search(r"certificate refused for \"dc1\.corp\.example\": expired: the "
                         r"certificate was valid until Jan  2 00:00:00 2020 GMT", out), out
    finally:
        ad.stop()
        ad.use_cert(*good)
        ad.start()


def test_tool_bad_service_password(bin_path, tool_config, base_dir):
    wrong = sf.write_password_file(base_dir, "not-the-service-password")
    rc, out = run_test_auth(bin_path, tool_config(bind_password_file=str(wrong)), "ann", pw("ann"))
    assert rc == EX_TEMPFAIL, out
    assert re.search(r"failed step: .*service bind as \"svc-smtp@corp\.example\": Invalid "
                     r"credentials .*Active Directory says: wrong password \(or no such "
                     r"account\) \(data 52e\): check bind_dn and bind_password_file", out), out


def test_tool_unreachable_dc(bin_path, tool_config):
    port = harness.free_port()   # nothing listens there
    rc, out = run_test_auth(bin_path, tool_config(uri=f"ldaps://127.0.0.1:{port}/"), "ann",
                        pw("ann"))
    assert rc == EX_TEMPFAIL, out
    assert re.search(rf"failed step: .*ldaps://127\.0\.0\.1:{port}/: connect: cannot connect "
                     rf"to 127\.0\.0\.1 port {port}: Connection refused", out), out


def test_tool_group_gate(bin_path, tool_config):
    rc, out = run_test_auth(bin_path, tool_config(group_dn=sf.GROUP_DN), "ben", pw("ben"))
    assert rc == 1, out
    assert re.search(r"^  failed step: \[corp\] group check: \"CN=ben,CN=Users,DC=corp,"
                     r"DC=example\" is not a member of \"CN=smtp-users,CN=Users,DC=corp,"
                     r"DC=example\" \(group_filter \(member:1\.2\.840\.113556\.1\.4\.1941:=%D\)\)",
                     out, re.M), out
    assert "result: fail reason=not_in_group" in out, out


def test_tool_account_state(bin_path, tool_config):
    rc, out = run_test_auth(bin_path, tool_config(filter=STATE_FILTER), "mia", pw("mia"))
    assert rc == 1, out
    assert "Active Directory says: the user must change the password before logging on " \
           "(data 773)" in out, out
    assert "result: fail reason=password_must_change" in out, out


# ---------------------------------------------------------------- config

def test_check_config(ad, bin_path, make_gateway):
    gw = make_gateway(cfg({"ldap corp": ad_section(ad, group_dn=sf.GROUP_DN),
                           "ldap anon": ad_section(ad, bind_dn=None,
                                                   bind_password_file=None)}), start=False)
    r = run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    assert r.returncode != 0
    line = gw.config_line(r"^\[ldap anon\]")
    assert re.search(rf":{line}: \[ldap anon\] type = ad needs bind_dn \(a service account "
                     r"that searches\) or dn_template", err), err
    # The UPN bind_dn of [ldap corp] is fine.
    assert "[ldap corp]" not in err, err
