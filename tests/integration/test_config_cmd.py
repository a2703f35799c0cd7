# SPDX-License-Identifier: ISC
"""`authrelay show-config` and the config file's syntax as an administrator meets
it: the effective configuration with every default (a file that loads back to
the same), `-n` for what differs from the defaults, the key reference
(markdown, which README.md must cover, and mdoc that lints clean), long lines,
one duration syntax, and warnings in the errors' `file:line:` format."""

import os
import re
import shutil
from pathlib import Path

import pytest

from harness import HOST, REPO, SMTPConn, auth_ids, run_tool


def show(gw, *args):
    return run_tool([gw.binary, "show-config", *args, "-c", gw.cfg_path])


def check_config(gw):
    return run_tool([gw.binary, "check-config", "-c", gw.cfg_path])


def sections(text: str) -> dict[str, dict[str, str]]:
    """show-config output as {section: {key: value}}; '# key = (not set)' as None."""
    out, cur = {}, None
    for line in text.split("\n"):
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        m = re.match(r"^# (\S+) = \(not set\)$", line)
        if m and cur is not None:
            cur[m.group(1)] = None
            continue
        m = re.match(r"^(\S+) =(?: (.*))?$", line)
        if m and cur is not None:
            cur[m.group(1)] = m.group(2) or ""
    return out


def test_show_config_prints_every_section_with_defaults(make_gateway):
    gw = make_gateway(start=False)
    r = show(gw)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""
    s = sections(r.stdout.decode())
    for name in ("server", "tls", "limits", "listener in", "listener sub", "listener subs",
                 "listener out", "relay", "auth", "users-file", "protection", "alerts", "queue"):
        assert name in s, f"[{name}] missing: {sorted(s)}"
    # as written, defaults, worked-out defaults and inherited limits
    assert s["server"]["hostname"] == "mx.test.example"
    assert s["server"]["pid_file"] is None
    assert s["limits"]["max_errors"] == "20"
    assert s["limits"]["command_timeout"] == "5m"
    assert s["tls"]["min_protocol"] == "TLSv1.2"
    assert s["listener sub"]["tls"] == "required"
    assert s["listener sub"]["add_missing_headers"] == "yes"
    assert s["listener in"]["add_missing_headers"] == "no"
    assert s["listener in"]["auth_failure_delay_ms"] == "0"  # from [limits]
    assert s["queue"]["group_commit"] == "yes"
    assert s["protection"]["cache_size"] == "10000"
    assert s["alerts"]["from"] == "postmaster@mx.test.example"


def test_show_config_output_loads_back_to_itself(make_gateway):
    gw = make_gateway({"relay": {"local_domains": "example.test, .sub.example.test"},
                       "limits": {"max_message_size": "20M"},
                       "route r": {"domains": "partner.test", "nexthop": f"[{HOST}]:2525"},
                       "ldap corp": {"uri": f"ldap://{HOST}:1/ ldaps://{HOST}:2/",
                                     "base": "dc=corp,dc=test", "type": "ad",
                                     "dn_template": "%u@corp.test"},
                       "smtp-forward": {"upstreams": f"{HOST}:1 [::1]:2",
                                        "mechanisms": "login"}},
                      start=False)
    first = show(gw)
    assert first.returncode == 0, first.stderr.decode()
    body = first.stdout.decode().split("\n", 1)[1]  # after the "# path" line
    again = gw.dir / "shown.conf"
    again.write_text(body)
    r = run_tool([gw.binary, "check-config", "-c", again])
    assert r.returncode == 0, r.stderr.decode()
    second = run_tool([gw.binary, "show-config", "-c", again])
    assert second.returncode == 0, second.stderr.decode()
    assert second.stdout.decode().split("\n", 1)[1] == body


def test_show_config_n_prints_only_what_differs(make_gateway):
    gw = make_gateway({"limits": {"max_errors": 20, "max_recipients": 500},
                       "queue": {"retry_min": "10m"}, "alerts": {"cooldown": "30m"}},
                      start=False)
    r = show(gw, "-n")
    assert r.returncode == 0, r.stderr.decode()
    s = sections(r.stdout.decode())
    assert s["limits"] == {"max_recipients": "500", "auth_failure_delay_ms": "0"}
    assert s["queue"]["retry_min"] == "10m"
    assert s["server"]["workers"] == "2"
    assert "max_errors" not in s["limits"]          # written, but the default
    assert "alerts" not in s                         # only defaults
    assert "min_protocol" not in s.get("tls", {})
    assert all(keys for keys in s.values()), s       # no empty section


def test_show_config_ldap_and_forward(make_gateway):
    """[ldap NAME] and [smtp-forward] are on tables like every section: their
    defaults (by type for the LDAP filters) and, with -n, only what the file
    changes."""
    gw = make_gateway({"ldap corp": {"uri": f"ldap://{HOST}:1/", "base": "dc=corp,dc=test",
                                     "scope": "one", "timeout": 3, "pool_size": 4},
                       "ldap ad": {"uri": f"ldaps://{HOST}:2/", "base": "dc=ad,dc=test",
                                   "type": "ad", "dn_template": "%u@ad.test",
                                   "group_dn": "cn=mail,dc=ad,dc=test"},
                       "smtp-forward": {"upstreams": f"{HOST}:1", "timeout": 60}},
                      start=False)
    r = show(gw, "-n")
    assert r.returncode == 0, r.stderr.decode()
    s = sections(r.stdout.decode())
    assert s["ldap corp"] == {"uri": f"ldap://{HOST}:1/", "base": "dc=corp,dc=test",
                              "scope": "one", "timeout": "3s"}
    assert s["ldap ad"] == {"uri": f"ldaps://{HOST}:2/", "base": "dc=ad,dc=test",
                            "group_dn": "cn=mail,dc=ad,dc=test", "dn_template": "%u@ad.test",
                            "type": "ad"}
    assert s["smtp-forward"] == {"upstreams": f"{HOST}:1", "timeout": "1m"}
    full = sections(show(gw).stdout.decode())
    assert full["ldap corp"]["filter"] == "(&(objectClass=person)(|(uid=%s)(mail=%s)))"
    assert full["ldap ad"]["group_filter"] == "(member:1.2.840.113556.1.4.1941:=%D)"
    assert full["ldap corp"]["network_timeout"] == "5s"
    assert full["ldap corp"]["bind_dn"] is None
    assert full["ldap corp"]["group_filter"] is None  # no group_dn, no group gate
    assert full["smtp-forward"]["helo_name"] == "mx.test.example"
    assert full["smtp-forward"]["mechanisms"] == "PLAIN, LOGIN"
    assert full["smtp-forward"]["failure_memory"] == "30s"


def test_show_config_refuses_a_bad_file_and_bad_usage(make_gateway, bin_path):
    gw = make_gateway({"server": {"workers": "many"}}, start=False)
    r = show(gw)
    assert r.returncode == 78  # EX_CONFIG
    assert re.search(rf"^{re.escape(str(gw.cfg_path))}:{gw.config_line('^workers =')}: "
                     r"workers = many: not a whole number$", r.stderr.decode(), re.M)
    assert r.stdout == b""
    r = run_tool([bin_path, "show-config", "--reference=troff"])
    assert r.returncode == 64  # EX_USAGE
    assert b"usage:" in r.stderr
    r = run_tool([bin_path, "help", "show-config"])
    assert r.returncode == 0 and b"show-config --reference=mdoc|markdown" in r.stdout


def reference_sections(text: str) -> dict[str, list[str]]:
    out, cur = {}, None
    for line in text.split("\n"):
        if line.startswith("### "):
            cur = out.setdefault(line[4:].strip(), [])
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return out


def test_reference_markdown_and_readme_agree(bin_path):
    """Every key of every table is in README.md's section of the same name."""
    r = run_tool([bin_path, "show-config", "--reference=markdown"])
    assert r.returncode == 0, r.stderr.decode()
    ref = reference_sections(r.stdout.decode())
    assert len(ref) >= 13 and sum(len(k) for k in ref.values()) > 100, ref
    # Every section is on a table: the LDAP and forwarding ones list their
    # keys too, and README.md must cover them.
    assert len(ref.get("[ldap NAME]", [])) >= 19, ref.get("[ldap NAME]")
    assert len(ref.get("[smtp-forward]", [])) >= 13, ref.get("[smtp-forward]")
    readme = (REPO / "README.md").read_text()
    chunks = dict(re.findall(r"^### (\[[^\]]+\])\n(.*?)(?=^#{1,3} |\Z)", readme, re.M | re.S))
    for section, keys in ref.items():
        assert section in chunks, f"README.md has no '### {section}'"
        missing = [k for k in keys if f"`{k}`" not in chunks[section]]
        assert not missing, f"README.md {section} lacks {missing}"


@pytest.mark.skipif(shutil.which("groff") is None and shutil.which("mandoc") is None,
                    reason="neither groff nor mandoc installed")
def test_reference_mdoc_lints_clean(bin_path, base_dir):
    """The key list of authrelay.conf(5), in the page's own template
    (scripts/man-keys.sh), lints clean: no warning from mandoc, not even a
    style one but the cross-reference to a page not installed here."""
    r = run_tool([bin_path, "show-config", "--reference=mdoc"])
    assert r.returncode == 0, r.stderr.decode()
    page = Path(base_dir) / "authrelay.conf.5"
    made = run_tool(["sh", REPO / "scripts/man-keys.sh", "--strict", bin_path,
                     REPO / "man/authrelay.conf.5.in", page])
    assert made.returncode == 0, made.stderr.decode()
    assert r.stdout in page.read_bytes()
    if shutil.which("mandoc"):
        lint = run_tool(["mandoc", "-Tlint", "-Wstyle", page])
        problems = [l for l in lint.stdout.decode().split("\n")
                    if l and "referenced manual not found" not in l]
        assert not problems, problems
    if shutil.which("groff"):
        lint = run_tool(["groff", "-mdoc", "-ww", "-z", page])
        assert lint.returncode == 0 and lint.stderr == b"", lint.stderr.decode()
    assert r.stdout.count(b".Bl -tag") == r.stdout.count(b".El")
    assert b".It Cm max_recipients\n" in r.stdout


def test_long_line_is_accepted(make_gateway):
    """No line length limit a real value hits (libinih stopped at 197)."""
    banner = "Welcome " + "x" * 300
    gw = make_gateway({"listener in": {"banner": banner}})
    c = SMTPConn.open(gw, "in")
    assert banner in c.greeting.text, c.greeting
    c.close()


def test_one_duration_syntax(make_gateway):
    gw = make_gateway({"limits": {"command_timeout": "5m", "data_timeout": "180s"},
                       "auth": {"request_timeout": "1m"},
                       "queue": {"retry_min": "2m", "connect_timeout": "30"},
                       "protection": {"lockout_time": "1h", "delay_max_ms": "15s"}},
                      start=False)
    r = check_config(gw)
    assert r.returncode == 0, r.stderr.decode()
    s = sections(show(gw, "-n").stdout.decode())
    assert s["auth"] == {"request_timeout": "1m"}
    assert s["queue"]["retry_min"] == "2m"
    assert s["protection"]["lockout_time"] == "1h"
    assert "delay_max_ms" not in s["protection"]  # 15s is the default 15000 ms
    assert "command_timeout" not in s.get("limits", {})  # 5m is the default
    gw = make_gateway({"limits": {"command_timeout": "5 min"}}, start=False)
    r = check_config(gw)
    assert r.returncode == 78
    assert b"command_timeout = 5 min: not a duration" in r.stderr


def test_warnings_share_the_error_format(make_gateway):
    gw = make_gateway({"limits": {"max_auth_failures": 2}}, start=False)
    # readable by the auth process's group only: the users file has nothing to warn about
    os.chown(gw.users_path, 0, auth_ids()[1])
    os.chmod(gw.users_path, 0o640)
    r = check_config(gw)
    assert r.returncode == 0, r.stderr.decode()
    line = gw.config_line(r"^max_auth_failures = 2$")
    assert r.stderr.decode() == (
        f"{gw.cfg_path}:{line}: warning: max_auth_failures = 2: RFC 4954 9 and the product "
        "spec expect at least 3 attempts before a client is dropped\n")
    gw.start()
    gw.wait_for_log(rf"master\[\d+\] warning: {re.escape(str(gw.cfg_path))}:{line}: warning: "
                    r"max_auth_failures = 2: ")


def test_unknown_key_in_a_listener_names_the_listener(make_gateway):
    gw = make_gateway({"listener sub": {"hostname": "x.test"}}, start=False)
    r = check_config(gw)
    assert r.returncode == 78
    line = gw.config_line(r"^hostname = x\.test$")
    assert (f"{gw.cfg_path}:{line}: unknown key 'hostname' in [listener sub] "
            "(it belongs in [server])") in r.stderr.decode()
