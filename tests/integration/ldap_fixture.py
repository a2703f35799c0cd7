# SPDX-License-Identifier: ISC
"""
ldap_fixture.py - throwaway OpenLDAP slapd servers for the LDAP tests and the
benchmark. No system instance is used or touched: each Slapd has its own
slapd.conf, mdb directory, loopback port and (optionally) TLS certificate.

What is here:
  ldap_hash(password, scheme)   userPassword values in every format the
                                source must read ({SSHA}, {CRYPT}$y$, ...)
  make_ldap_cert(dir)           self-signed cert for 127.0.0.1/localhost
                                (its own CA file), for StartTLS and ldaps://
  Person / Group                entries, rendered as LDIF (base64 where needed)
  Slapd                         writes the config, loads the LDIF with slapadd,
                                starts `slapd -d 0` in the foreground (so its
                                pid is ours), waits until a search answers;
                                stop(), freeze() (SIGSTOP), thaw(), restart();
                                stats=True logs every operation ("-d 256")
                                and binds(dn) counts the binds slapd saw;
                                service_reads_password=False hides
                                userPassword from the service account
  write_password_file()         the service account's password file, readable
                                by the user the auth process runs as only

Every wait is on a condition (an ldapsearch that answers), never a sleep.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import harness

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
LDAPSEARCH = shutil.which("ldapsearch") or "/usr/bin/ldapsearch"
SLAPPASSWD = shutil.which("slappasswd") or "/usr/sbin/slappasswd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
ROOT_PW = "root-" + secrets.token_hex(8)
SERVICE_PW = "svc-" + secrets.token_hex(8)

# Every stored format the fetch method must read, by a short name.
HASH_SCHEMES = [
    "plain", "cleartext", "sha", "ssha", "sha256", "ssha256", "sha512", "ssha512",
    "md5", "smd5", "crypt-md5", "crypt-sha256", "crypt-sha512", "crypt-bcrypt",
    "crypt-yescrypt", "argon2",
]


def available() -> str | None:
    """None if slapd and the client tools are installed, else what is missing."""
    for tool in (SLAPD, SLAPADD, LDAPSEARCH, SLAPPASSWD):
        if not os.access(tool, os.X_OK):
            return f"{tool} not installed (scripts/deps/ldap.txt)"
    if not (MODULE_DIR / "back_mdb.so").exists():
        return "slapd's back_mdb module not found"
    return None


# ---------------------------------------------------------------- hashes

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _digest(algo: str, password: str, salt: bytes = b"") -> bytes:
    return hashlib.new(algo, password.encode() + salt).digest()


def ldap_hash(password: str, scheme: str) -> str:
    """A userPassword value for password in scheme (see HASH_SCHEMES)."""
    salt = secrets.token_bytes(8)
    simple = {"sha": ("sha1", "{SHA}"), "sha256": ("sha256", "{SHA256}"),
              "sha512": ("sha512", "{SHA512}"), "md5": ("md5", "{MD5}")}
    salted = {"ssha": ("sha1", "{SSHA}"), "ssha256": ("sha256", "{SSHA256}"),
              "ssha512": ("sha512", "{SSHA512}"), "smd5": ("md5", "{SMD5}")}
    if scheme == "plain":
        return password
    if scheme == "cleartext":
        return "{CLEARTEXT}" + password
    if scheme in simple:
        algo, tag = simple[scheme]
        return tag + _b64(_digest(algo, password))
    if scheme in salted:
        algo, tag = salted[scheme]
        return tag + _b64(_digest(algo, password, salt) + salt)
    crypt_settings = {"crypt-md5": "$1$" + harness._salt(8),
                      "crypt-sha256": "$5$" + harness._salt(16),
                      "crypt-sha512": "$6$" + harness._salt(16),
                      "crypt-bcrypt": "$2b$04$" + harness._salt(22),
                      "crypt-yescrypt": "$y$j9T$" + harness._salt(16)}
    if scheme in crypt_settings:
        return "{CRYPT}" + harness._crypt(password, crypt_settings[scheme])
    if scheme == "argon2":
        out = subprocess.run([SLAPPASSWD, "-o", f"module-path={MODULE_DIR}",
                              "-o", "module-load=argon2.so", "-h", "{ARGON2}", "-T", "/dev/stdin"],
                             input=password.encode(), capture_output=True, check=True, timeout=30)
        return out.stdout.decode().strip()
    raise ValueError(scheme)


# ---------------------------------------------------------------- TLS

def make_ldap_cert(directory: Path) -> tuple[Path, Path]:
    """Self-signed certificate for 127.0.0.1 and localhost (it is its own CA:
    point ca_file at it). Returns (cert, key); the key stays 0600 root, as
    slapd runs as root here."""
    cert, key = directory / "ldap-cert.pem", directory / "ldap-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=localhost", "-days", "2",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- entries

def _ldif_line(attr: str, value: str) -> str:
    raw = value.encode()
    safe = (raw and all(0x20 < b < 0x7f for b in raw[:1]) and all(0x20 <= b < 0x7f for b in raw)
            and not value.startswith((":", "<", " ")) and not value.endswith(" "))
    return f"{attr}: {value}" if safe else f"{attr}:: {_b64(raw)}"


class Person:
    """An inetOrgPerson under ou=people. rdn is the cn (a safe name); uid may
    be anything (the hostile logins live there)."""

    def __init__(self, rdn: str, uid: str, password: str | None, scheme: str = "ssha",
                 mail: list[str] | None = None, disabled: bool = False,
                 stored: list[str] | None = None):
        self.rdn, self.uid, self.password, self.scheme = rdn, uid, password, scheme
        self.mail = mail if mail is not None else []
        self.disabled = disabled
        if stored is not None:
            self.stored = stored
        else:
            self.stored = [ldap_hash(password, scheme)] if password is not None else []

    def dn(self, suffix: str) -> str:
        return f"cn={self.rdn},ou=people,{suffix}"

    def ldif(self, suffix: str) -> str:
        lines = [f"dn: {self.dn(suffix)}", "objectClass: inetOrgPerson", f"cn: {self.rdn}",
                 f"sn: {self.rdn}", _ldif_line("uid", self.uid)]
        lines += [_ldif_line("mail", m) for m in self.mail]
        lines += [_ldif_line("userPassword", s) for s in self.stored]
        if self.disabled:
            lines.append("employeeType: disabled")
        return "\n".join(lines) + "\n"


class Group:
    def __init__(self, cn: str, members: list[str]):
        self.cn, self.members = cn, members   # members: full DNs

    def dn(self, suffix: str) -> str:
        return f"cn={self.cn},ou=groups,{suffix}"

    def ldif(self, suffix: str) -> str:
        lines = [f"dn: {self.dn(suffix)}", "objectClass: groupOfNames", f"cn: {self.cn}"]
        lines += [f"member: {m}" for m in self.members]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- slapd

_running: list["Slapd"] = []


def stop_all():
    """Safety net for teardown: stop every slapd still running (by pid)."""
    for s in list(_running):
        s.stop()


class Slapd:
    """One slapd with one mdb database. The service account
    cn=svc,<suffix> may read userPassword (for method = fetch); anonymous may
    bind and read everything else."""

    def __init__(self, base: Path, name: str, suffix: str,
                 tls: tuple[Path, Path] | None = None, port: int | None = None,
                 ldaps_port: int | None = None, stats: bool = False,
                 service_reads_password: bool = True):
        self.dir = harness.make_dir(base, f"slapd-{name}-")
        self.stats = stats
        self.service_reads_password = service_reads_password
        self.name, self.suffix, self.tls = name, suffix, tls
        self.port = port or harness.free_port()
        self.ldaps_port = ldaps_port if ldaps_port is not None else (
            harness.free_port() if tls else None)
        self.rootdn = f"cn=admin,{suffix}"
        self.service_dn = f"cn=svc,{suffix}"
        self.proc: subprocess.Popen | None = None
        self.frozen = False
        self._log = None
        self.conf = self.dir / "slapd.conf"
        self.db = self.dir / "db"
        self.db.mkdir()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}/"

    def write_config(self):
        rc = "\n".join([
            *(f"include {SCHEMA_DIR / s}.schema" for s in ("core", "cosine", "inetorgperson")),
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            "moduleload pw-sha2",
            "moduleload argon2",
            f"pidfile {self.dir}/slapd.pid",
            f"argsfile {self.dir}/slapd.args",
            "loglevel none",
            *( [f"TLSCertificateFile {self.tls[0]}", f"TLSCertificateKeyFile {self.tls[1]}"]
               if self.tls else []),
            "database mdb",
            "maxsize 1073741824",
            f'suffix "{self.suffix}"',
            f'rootdn "{self.rootdn}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.db}",
            "index objectClass eq",
            "index uid,mail,cn eq",
            "index member eq",
            "access to attrs=userPassword",
            *([f'  by dn.exact="{self.service_dn}" read'] if self.service_reads_password
              else []),
            "  by anonymous auth",
            "  by self read",
            "  by * none",
            "access to *",
            "  by * read",
            "",
        ])
        self.conf.write_text(rc)

    def base_ldif(self) -> str:
        dc = self.suffix.split(",")[0].split("=")[1]
        svc = ldap_hash(SERVICE_PW, "ssha")
        return (f"dn: {self.suffix}\nobjectClass: dcObject\nobjectClass: organization\n"
                f"dc: {dc}\no: {dc}\n\n"
                f"dn: ou=people,{self.suffix}\nobjectClass: organizationalUnit\nou: people\n\n"
                f"dn: ou=groups,{self.suffix}\nobjectClass: organizationalUnit\nou: groups\n\n"
                f"dn: {self.service_dn}\nobjectClass: person\ncn: svc\nsn: svc\n"
                f"userPassword: {svc}\n\n")

    def load(self, entries: list, extra_ldif: str = ""):
        """slapadd the base entries and entries (Person/Group) before start."""
        self.write_config()
        ldif = self.base_ldif() + "\n".join(e.ldif(self.suffix) for e in entries) + "\n" + extra_ldif
        path = self.dir / "data.ldif"
        path.write_text(ldif)
        r = subprocess.run([SLAPADD, "-q", "-f", str(self.conf), "-l", str(path)],
                           capture_output=True, timeout=600)
        assert r.returncode == 0, f"slapadd: {r.stderr.decode(errors='replace')}"
        return self

    def listen_urls(self) -> str:
        urls = [self.uri]
        if self.tls and self.ldaps_port:
            urls.append(self.ldaps_uri)
        return " ".join(urls)

    def start(self, timeout: float = 30) -> "Slapd":
        self._log = open(self.dir / "slapd.log", "ab")
        self.proc = subprocess.Popen([SLAPD, "-h", self.listen_urls(), "-f", str(self.conf),
                                      "-d", "256" if self.stats else "0"],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        _running.append(self)
        harness.wait_until(self._answers, timeout, f"slapd {self.name} to answer on {self.uri}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"slapd {self.name} exited with {self.proc.returncode}: "
                                 + (self.dir / "slapd.log").read_text(errors="replace")[-2000:])
        r = subprocess.run([LDAPSEARCH, "-x", "-H", self.uri, "-o", "nettimeout=2", "-l", "2",
                            "-b", "", "-s", "base", "namingContexts"],
                           capture_output=True, timeout=10)
        return r.returncode == 0

    def binds(self, dn: str) -> int:
        """Simple binds as dn that slapd logged (stats=True only)."""
        assert self.stats, "binds() needs Slapd(..., stats=True)"
        text = (self.dir / "slapd.log").read_text(errors="replace")
        return len(re.findall(rf'BIND dn="{re.escape(dn)}" method=128', text, re.I))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def freeze(self):
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.frozen and self.running():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout: float = 15):
        if self.proc is None:
            return
        if self.running():
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.frozen = False
        if self in _running:
            _running.remove(self)
        if self._log:
            self._log.close()
            self._log = None
        # The port must be free before a restart binds it again.
        harness.wait_until(lambda: not _port_open(self.port), 10,
                           f"port {self.port} to close after slapd {self.name} stopped")

    def restart(self):
        self.stop()
        return self.start()

    def search(self, filt: str, *attrs: str, bind_dn: str | None = None,
               password: str | None = None) -> str:
        """ldapsearch output (LDIF) for filt under the suffix."""
        cmd = [LDAPSEARCH, "-x", "-LLL", "-H", self.uri, "-b", self.suffix, filt, *attrs]
        if bind_dn:
            cmd[2:2] = ["-D", bind_dn, "-w", password]
        r = subprocess.run(cmd, capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return r.stdout.decode(errors="replace")


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((harness.HOST, port)) == 0


def write_password_file(directory: Path, password: str = SERVICE_PW,
                        owner: str = harness.AUTH_AS) -> Path:
    """The service account's password, mode 0400, owned by the auth user."""
    path = directory / f"bind-password-{secrets.token_hex(4)}"
    path.write_text(password + "\n")
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o400)
    return path


def ldap_section(slapd: Slapd, password_file: Path | None, **overrides) -> dict:
    """A [ldap NAME] section for slapd: service account, base, the default
    filter plus "not disabled"; overrides win (None removes a key)."""
    sec = {
        "uri": slapd.uri,
        "base": slapd.suffix,
        "filter": "(&(objectClass=inetOrgPerson)(!(employeeType=disabled))"
                  "(|(uid=%s)(mail=%s)))",
        "network_timeout": 2,
        "timeout": 3,
        "pool_size": 4,
    }
    if password_file is not None:
        sec["bind_dn"] = slapd.service_dn
        sec["bind_password_file"] = str(password_file)
    for k, v in overrides.items():
        if v is None:
            sec.pop(k, None)
        else:
            sec[k] = v
    return sec


def wait_for(predicate, timeout: float, what: str):
    return harness.wait_until(predicate, timeout, what)


def monotonic() -> float:
    return time.monotonic()
