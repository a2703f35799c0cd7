# SPDX-License-Identifier: ISC
"""The Debian package: `make deb` builds it, lintian finds no error, and it
installs, checks, removes and purges cleanly in a throwaway root.

The throwaway root is this machine's own file system under an overlay whose
writable layer is a tmpfs, in a private mount namespace (unshare -m): dpkg
runs chrooted there with the machine's tools and libraries, and every change
it makes (users, spool, dpkg's database) vanishes with the namespace. The
machine running the test is left as it was."""

import os
import re
import shutil
import subprocess
import textwrap

import pytest

from harness import REPO

TOOLS = ["dpkg-buildpackage", "dh", "dh_installsysusers", "unshare", "chroot"]

# Run as root inside the chroot; prints "KEY value..." lines for the test.
INSIDE = r"""
set -u
report() { echo "$@"; }
stat_of() { [ -e "$1" ] && report STAT "$1" $(stat -c '%a %U %G %F' "$1") || report STAT "$1" missing; }
rc() { name=$1; shift; "$@" >/tmp/out.txt 2>&1; r=$?; report RC "$name" $r; sed "s/^/OUT $name /" /tmp/out.txt; }

rc install dpkg -i /tmp/authrelay.deb
for u in authrelay authrelay-auth authrelay-queue; do
    report USER $u $(getent passwd $u | cut -d: -f3,7 | tr : ' ')
done
for p in /var/spool/authrelay /var/spool/authrelay/tmp /var/spool/authrelay/incoming \
         /var/spool/authrelay/state /var/spool/authrelay/private \
         /etc/authrelay /etc/authrelay/authrelay.conf /etc/authrelay/users \
         /etc/ssl/certs/ssl-cert-snakeoil.pem /etc/ssl/private/ssl-cert-snakeoil.key \
         /etc/systemd/system/multi-user.target.wants/authrelay.service \
         /etc/fail2ban/filter.d/authrelay.conf /etc/fail2ban/jail.d/authrelay.conf; do
    stat_of $p
done
report SIZE users $(stat -c %s /etc/authrelay/users)
rc check-config authrelay check-config
rc version authrelay --version
rc verify systemd-analyze verify /lib/systemd/system/authrelay.service
rc security systemd-analyze security --offline=yes /lib/systemd/system/authrelay.service
rc man8 sh -c 'MANWIDTH=80 man -l /usr/share/man/man8/authrelay.8.gz | grep -c "EXIT STATUS"'
rc man5 sh -c 'MANWIDTH=80 man -l /usr/share/man/man5/authrelay.conf.5.gz | grep -c "KEYS"'
if command -v mandoc >/dev/null; then
    rc lint8 sh -c 'zcat /usr/share/man/man8/authrelay.8.gz | mandoc -Tlint -Wwarning'
    rc lint5 sh -c 'zcat /usr/share/man/man5/authrelay.conf.5.gz | mandoc -Tlint -Wwarning'
fi

rc remove dpkg -r authrelay
report STATUS removed $(dpkg-query -W -f='${db:Status-Abbrev}' authrelay 2>/dev/null)
for p in /usr/sbin/authrelay /lib/systemd/system/authrelay.service /etc/authrelay/authrelay.conf \
         /etc/authrelay/users /var/spool/authrelay; do
    stat_of $p
done

rc purge dpkg --purge authrelay
report STATUS purged $(dpkg-query -W -f='${db:Status-Abbrev}' authrelay 2>/dev/null)
for p in /etc/authrelay /var/spool/authrelay \
         /etc/systemd/system/multi-user.target.wants/authrelay.service \
         /etc/fail2ban/filter.d/authrelay.conf; do
    stat_of $p
done
"""

# Builds the overlay and runs INSIDE chrooted in it; $1 = scratch dir.
OUTSIDE = r"""
set -eu
t=$1
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
mount -t proc proc "$t/root/proc"
mount --rbind /dev "$t/root/dev"
# No /run/systemd/system inside: dpkg's scripts see no running systemd and
# start nothing; /tmp is empty and private.
mount -t tmpfs tmpfs "$t/root/run"
mount -t tmpfs tmpfs "$t/root/tmp"
cp "$2" "$t/root/tmp/authrelay.deb"
cp "$3" "$t/root/tmp/inside.sh"
chroot "$t/root" /bin/sh /tmp/inside.sh
"""


def parse(out: str):
    rcs, outs, stats, users, status, size = {}, {}, {}, {}, {}, {}
    for line in out.split("\n"):
        kind, _, rest = line.partition(" ")
        if kind == "RC":
            name, code = rest.split()
            rcs[name] = int(code)
        elif kind == "OUT":
            name, _, text = rest.partition(" ")
            outs.setdefault(name, []).append(text)
        elif kind == "STAT":
            path, _, st = rest.partition(" ")
            stats.setdefault(path, []).append(st)
        elif kind == "USER":
            f = rest.split()
            users[f[0]] = f[1:]
        elif kind == "STATUS":
            name, _, st = rest.partition(" ")
            status[name] = st.strip()
        elif kind == "SIZE":
            name, value = rest.split()
            size[name] = int(value)
    return rcs, {k: "\n".join(v) for k, v in outs.items()}, stats, users, status, size


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"Debian build tools missing: {', '.join(missing)} "
                    "(scripts/deps/package.txt; `sh scripts/install-deps.sh`)")
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespace, chroot, dpkg -i)")
    out = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "DEB_BUILD_OPTIONS": "nocheck parallel=2"}
    r = subprocess.run(["make", "-s", "deb", f"DEB_DIR={out}"], cwd=REPO, env=env,
                       capture_output=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-4000:]
    debs = sorted(out.glob("authrelay_*_*.deb"))
    assert len(debs) == 1, list(out.iterdir())
    return debs[0]


def test_lintian_reports_no_error(deb):
    if shutil.which("lintian") is None:
        pytest.skip("lintian missing (scripts/deps/package.txt)")
    r = subprocess.run(["lintian", "--pedantic", str(deb)], capture_output=True, timeout=300)
    text = (r.stdout + r.stderr).decode(errors="replace")
    errors = [l for l in text.split("\n") if l.startswith("E:")]
    assert not errors, text
    # The warnings README.md lists: any other one is news.
    known = {"initial-upload-closes-no-bugs"}
    warnings = {l.split()[2] for l in text.split("\n") if l.startswith("W:")}
    assert warnings <= known, text


def test_postinst_enables_but_does_not_start(deb, tmp_path):
    ctl = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(ctl)], check=True)
    postinst = (ctl / "postinst").read_text()
    assert "deb-systemd-helper enable 'authrelay.service'" in postinst
    # Started by nothing on a fresh install; an upgrade restarts a running
    # gateway only after check-config passed.
    starts = [l for l in postinst.split("\n")
              if re.search(r"deb-systemd-invoke .*(start|restart)", l)]
    assert starts == ["\t\t\tdeb-systemd-invoke try-restart authrelay.service >/dev/null || true"], \
        starts
    before = postinst[:postinst.index("deb-systemd-invoke try-restart")]
    assert "if authrelay check-config" in "\n".join(before.split("\n")[-3:]), before[-300:]


def test_install_check_remove_purge_in_throwaway_root(deb, tmp_path):
    scratch = tmp_path / "root"
    scratch.mkdir()
    inside = tmp_path / "inside.sh"
    inside.write_text(textwrap.dedent(INSIDE))
    outside = tmp_path / "outside.sh"
    outside.write_text(OUTSIDE)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", str(outside),
                        str(scratch), str(deb), str(inside)], capture_output=True, timeout=300)
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, text
    rcs, outs, stats, users, status, size = parse(text)

    assert rcs["install"] == 0, outs.get("install")
    assert "enabled, not started" in outs["install"], outs["install"]
    for u in ("authrelay", "authrelay-auth", "authrelay-queue"):
        assert u in users and len(users[u]) == 2, f"user {u}: {users.get(u)}\n{text}"
        uid, shell = users[u]
        assert int(uid) < 1000 and shell == "/usr/sbin/nologin", (u, uid, shell)
    first = {p: v[0] for p, v in stats.items()}
    # The spool is root's; each folder belongs to the process that writes it.
    assert first["/var/spool/authrelay"] == "711 root root directory"
    assert first["/var/spool/authrelay/tmp"] == "2700 authrelay authrelay-queue directory"
    assert first["/var/spool/authrelay/incoming"] == "1770 authrelay-queue authrelay directory"
    assert first["/var/spool/authrelay/state"] == "700 authrelay-queue authrelay-queue directory"
    assert first["/var/spool/authrelay/private"] == "710 root authrelay directory"
    assert first["/etc/authrelay/users"] == "640 root authrelay-auth regular empty file"
    assert size["users"] == 0
    assert first["/etc/authrelay/authrelay.conf"].startswith("644 root root regular")
    assert first["/etc/ssl/certs/ssl-cert-snakeoil.pem"] != "missing"
    assert first["/etc/ssl/private/ssl-cert-snakeoil.key"] != "missing"
    assert first["/etc/systemd/system/multi-user.target.wants/authrelay.service"] \
        .endswith("symbolic link"), "unit not enabled"
    # The fail2ban filter and jail (README.md "fail2ban"), conffiles.
    for f in ("filter.d", "jail.d"):
        assert first[f"/etc/fail2ban/{f}/authrelay.conf"].startswith("644 root root regular"), \
            first

    # The installed configuration is valid as it stands.
    assert rcs["check-config"] == 0, outs.get("check-config")
    assert re.fullmatch(r"authrelay \d+\.\d+\.\d+", outs["version"]), outs["version"]
    assert rcs["verify"] == 0 and not outs.get("verify"), outs.get("verify")
    assert rcs["security"] == 0, outs.get("security")
    assert re.search(r"Overall exposure level for authrelay.service: \d", outs["security"])
    assert rcs["man8"] == 0 and rcs["man5"] == 0, (outs.get("man8"), outs.get("man5"))
    for page in ("lint8", "lint5"):
        if page in rcs:
            assert rcs[page] == 0 and not outs.get(page), outs.get(page)

    # Removed: the program goes, the configuration and the spool stay.
    assert rcs["remove"] == 0, outs.get("remove")
    assert status["removed"] == "rc", status
    second = {p: v[-1] for p, v in stats.items()}
    assert second["/usr/sbin/authrelay"] == "missing"
    assert second["/lib/systemd/system/authrelay.service"] == "missing"
    assert second["/etc/authrelay/authrelay.conf"] != "missing"
    assert second["/etc/authrelay/users"] != "missing"

    # Purged: the configuration goes; the spool stays (it may hold mail).
    assert rcs["purge"] == 0, outs.get("purge")
    assert status["purged"] in ("", "un"), status
    assert second["/etc/authrelay"] == "missing"
    assert second["/var/spool/authrelay"].endswith("directory")
    assert second["/etc/systemd/system/multi-user.target.wants/authrelay.service"] == "missing"
    assert second["/etc/fail2ban/filter.d/authrelay.conf"] == "missing"
