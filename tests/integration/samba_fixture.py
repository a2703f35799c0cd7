# SPDX-License-Identifier: ISC
"""
samba_fixture.py - a real Active Directory domain controller (Samba's AD DC)
for the AD tests (test_ad.py). No system instance is used or touched.

What is here:
  available()        None if Samba's AD DC, its provisioning data, iproute2
                     and network namespaces can be had, else what is missing
  NetNS              a network namespace of the test's own. The DC serves
                     LDAP on AD's fixed ports (389, 636, 3268, 3269), which
                     several test runs on one machine would fight over; so
                     the AD test module enters a namespace of its own (the
                     test thread only, through setns(2)), starts the DC, the
                     gateways and the clients there on its loopback, and
                     leaves it at the end. Nothing else of the machine changes.
  provisioned()      the provisioned domain: `samba-tool domain provision`,
                     then the users, groups, OUs and password policies below,
                     made once and kept as a tarball in a cache directory
                     ($AUTHRELAY_TEST_CACHE, else ~/.cache/authrelay-tests)
                     keyed by FIXTURE_VERSION, the setup script and Samba's
                     version: CI pays the ~15 s once, a test session then
                     unpacks it in well under a second
  make_ca() / make_dc_cert()
                     the test's own CA, and the DC's certificate it signs,
                     for DC_HOST only (no IP address: connecting by address
                     needs [ldap] tls_name, as at many real sites)
  SambaDC            unpacks the domain, writes an smb.conf that runs the
                     LDAP server only (`server services = ldap`, in the
                     foreground, single process, so its pid is ours), with
                     LDAPS and StartTLS on the certificate above; start(),
                     stop(), wait until it answers; ldap_modify() as the
                     domain administrator for the tests that change accounts

The domain (NetBIOS CORP, DNS corp.example, base DC=corp,DC=example):
  ann      CN=Ann Example,CN=Users       in smtp-users directly
  ben      CN=ben,CN=Users               in no group (the gate refuses him)
  dan      CN=dan,OU=Sales,OU=Staff      in sales, which is in smtp-users
                                         (the nested group)
  dis      disabled                      userAccountControl ACCOUNTDISABLE
  lou      a password settings object: locked out after 3 wrong passwords
  mia      must change her password      AD bind sub-code 773
  eve      account expired               701
  pat      password expired              532
  hal      no logon hours                530
  wes      may log on from WS1 only      531
  svc-smtp the service account (never expires), reads the directory

Every wait is on a condition (an ldapsearch that answers), never a sleep.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from pathlib import Path

import harness

SAMBA = shutil.which("samba") or "/usr/sbin/samba"
SAMBA_TOOL = shutil.which("samba-tool") or "/usr/bin/samba-tool"
LDAPSEARCH = shutil.which("ldapsearch") or "/usr/bin/ldapsearch"
LDAPMODIFY = shutil.which("ldapmodify") or "/usr/bin/ldapmodify"
IP = shutil.which("ip") or "/usr/sbin/ip"
SYSTEM_PYTHON = "/usr/bin/python3"   # the one python3-samba is built for
PROVISION_DATA = Path("/usr/share/samba/setup/ad-schema")

FIXTURE_VERSION = 1
REALM = "CORP.EXAMPLE"
DNS_DOMAIN = "corp.example"
NETBIOS = "CORP"
BASE = "DC=corp,DC=example"
DC_HOST = "dc1.corp.example"
ADMIN_PW = "Adm1n-Pass-7qx"
SERVICE = "svc-smtp"
SERVICE_PW = "Svc-Smtp-Pass-4kz"

# sAMAccountName -> (password, DN); see the module comment for what each is.
USERS = {
    "ann": ("Ann-Secret-1", f"CN=Ann Example,CN=Users,{BASE}"),
    "ben": ("Ben-Secret-1", f"CN=ben,CN=Users,{BASE}"),
    "dan": ("Dan-Secret-1", f"CN=dan,OU=Sales,OU=Staff,{BASE}"),
    "dis": ("Dis-Secret-1", f"CN=dis,CN=Users,{BASE}"),
    "lou": ("Lou-Secret-1", f"CN=lou,CN=Users,{BASE}"),
    "mia": ("Mia-Secret-1", f"CN=mia,CN=Users,{BASE}"),
    "eve": ("Eve-Secret-1", f"CN=eve,CN=Users,{BASE}"),
    "pat": ("Pat-Secret-1", f"CN=pat,CN=Users,{BASE}"),
    "hal": ("Hal-Secret-1", f"CN=hal,CN=Users,{BASE}"),
    "wes": ("Wes-Secret-1", f"CN=wes,CN=Users,{BASE}"),
    SERVICE: (SERVICE_PW, f"CN={SERVICE},CN=Users,{BASE}"),
}
GROUP_DN = f"CN=smtp-users,CN=Users,{BASE}"
LOCKOUT_THRESHOLD = 3

# Run by the system Python against the freshly provisioned sam.ldb, offline
# (the DC is not running): everything samba-tool would do, in one process.
SETUP_SCRIPT = r'''
import sys, ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

conf, sam, base = sys.argv[1], sys.argv[2], sys.argv[3]
users = eval(sys.argv[4])
lp = LoadParm()
lp.load(conf)
db = SamDB(url=sam, session_info=system_session(), lp=lp)

def add(ldif):
    db.add_ldif(ldif)

add(f"dn: OU=Staff,{base}\nobjectClass: organizationalUnit\nou: Staff\n")
add(f"dn: OU=Sales,OU=Staff,{base}\nobjectClass: organizationalUnit\nou: Sales\n")
for name, (pw, dn) in users.items():
    cn = dn.split(",", 1)[0][3:]
    ou = dn.split(",", 1)[1].replace("," + base, "")
    kw = {}
    if name == "ann":
        kw = dict(givenname="Ann", surname="Example")
    db.newuser(name, pw, userou=ou if ou.startswith("OU=") else None,
               mailaddress=f"{name}@corp.example",
               force_password_change_at_next_login_req=(name == "mia"), **kw)
db.newgroup("smtp-users")
db.newgroup("sales")
db.add_remove_group_members("sales", ["dan"], add_members_operation=True)
db.add_remove_group_members("smtp-users", ["ann", "sales"], add_members_operation=True)
db.disable_account("(sAMAccountName=dis)")
db.setexpiry("(sAMAccountName=svc-smtp)", 0, no_expiry_req=True)
db.setexpiry("(sAMAccountName=eve)", -86400, no_expiry_req=False)

def modify(dn, attr, value):
    m = ldb.Message()
    m.dn = ldb.Dn(db, dn)
    m[attr] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, attr)
    db.modify(m)

modify(users["hal"][1], "logonHours", bytes(21))      # no hour allowed: 530
modify(users["wes"][1], "userWorkstations", "WS1")     # elsewhere: 531
# lou alone gets a lockout threshold (a password settings object), so that
# the wrong passwords other tests send lock nobody else out.
pso = f"CN=lockout3,CN=Password Settings Container,CN=System,{base}"
add(f"""dn: {pso}
objectClass: msDS-PasswordSettings
msDS-PasswordSettingsPrecedence: 10
msDS-PasswordReversibleEncryptionEnabled: FALSE
msDS-PasswordHistoryLength: 0
msDS-PasswordComplexityEnabled: FALSE
msDS-MinimumPasswordLength: 1
msDS-MinimumPasswordAge: 0
msDS-MaximumPasswordAge: -36288000000000
msDS-LockoutThreshold: {sys.argv[5]}
msDS-LockoutObservationWindow: -600000000
msDS-LockoutDuration: -600000000
msDS-PSOAppliesTo: {users["lou"][1]}
""")
'''

# pwdLastSet can only be set to 0 or -1 through the directory; an expired
# password (532) needs an old date, written straight into the partition.
EXPIRE_SCRIPT = r'''
import sys, ldb
db = ldb.Ldb(sys.argv[1], options=["modules:"])
m = ldb.Message()
m.dn = ldb.Dn(db, sys.argv[2])
m["pwdLastSet"] = ldb.MessageElement("116444736000000000", ldb.FLAG_MOD_REPLACE, "pwdLastSet")
db.modify(m)
'''


def available() -> str | None:
    """None if the DC can be run here, else what is missing."""
    for tool in (SAMBA, SAMBA_TOOL, LDAPSEARCH, LDAPMODIFY, IP, SYSTEM_PYTHON):
        if not os.access(tool, os.X_OK):
            return f"{tool} not installed (scripts/deps/samba.txt)"
    if not PROVISION_DATA.is_dir():
        return "samba-ad-provision not installed (scripts/deps/samba.txt)"
    if os.geteuid() != 0:
        return "the Samba DC tests need root (a network namespace of their own)"
    return None


def samba_version() -> str:
    r = subprocess.run([SAMBA, "-V"], capture_output=True, timeout=30)
    return r.stdout.decode().strip()


def cache_dir() -> Path:
    d = os.environ.get("AUTHRELAY_TEST_CACHE")
    return Path(d) if d else Path.home() / ".cache" / "authrelay-tests"


def _run(cmd: list, what: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)
    assert r.returncode == 0, (f"{what} failed ({r.returncode}): "
                               + (r.stdout + r.stderr).decode(errors="replace")[-3000:])
    return r


# ---------------------------------------------------------------- namespace

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetNS:
    """A network namespace with its loopback up. enter() moves the calling
    thread (and what it starts from then on) into it; leave() moves it back."""

    def __init__(self):
        self.name = f"authrelay-ad-{os.getpid()}-{os.urandom(3).hex()}"
        _run([IP, "netns", "add", self.name], "ip netns add")
        self._home = None
        try:
            _run([IP, "-n", self.name, "link", "set", "lo", "up"], "ip link set lo up")
        except BaseException:
            self.delete()
            raise

    def enter(self):
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave(self):
        if self._home is not None:
            _setns(self._home)
            os.close(self._home)
            self._home = None

    def delete(self):
        self.leave()
        subprocess.run([IP, "netns", "del", self.name], capture_output=True, timeout=30)


# ---------------------------------------------------------------- TLS

def make_ca(directory: Path) -> tuple[Path, Path]:
    """The test's CA: (cert, key)."""
    cert, key = directory / "ca.pem", directory / "ca.key"
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-nodes", "-subj", "/CN=authrelay test CA", "-days", "3",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-keyout", key, "-out", cert], "openssl req (CA)")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


def make_dc_cert(directory: Path, ca: tuple[Path, Path], name: str = DC_HOST,
                 prefix: str = "dc") -> tuple[Path, Path]:
    """A server certificate for name alone (SAN DNS:name), signed by ca."""
    cert, key, csr = directory / f"{prefix}.pem", directory / f"{prefix}.key", directory / f"{prefix}.csr"
    ext = directory / f"{prefix}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=critical,CA:FALSE\n")
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-subj", f"/CN={name}", "-keyout", key, "-out", csr], "openssl req (DC)")
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
          "-CAcreateserial", "-days", "3", "-extfile", ext, "-out", cert], "openssl x509 (DC)")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


def make_expired_cert(directory: Path, ca: tuple[Path, Path], name: str = DC_HOST
                      ) -> tuple[Path, Path]:
    """A certificate for name, signed by ca, that expired in 2020 (`openssl
    ca` is the CLI that takes explicit dates)."""
    d = harness.make_dir(directory, "expired-ca-")
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text("\n".join([
        "[ca]", "default_ca = test", "[test]", f"dir = {d}", f"database = {d}/index.txt",
        f"new_certs_dir = {d}", f"serial = {d}/serial", "default_md = sha256",
        "policy = any", "copy_extensions = copy", "unique_subject = no",
        "[any]", "commonName = supplied", "",
    ]))
    key, csr, cert = d / "expired.key", d / "expired.csr", d / "expired.pem"
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
          "-keyout", key, "-out", csr], "openssl req (expired)")
    _run(["openssl", "ca", "-batch", "-config", conf, "-cert", ca[0], "-keyfile", ca[1],
          "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext",
          "-in", csr, "-out", cert], "openssl ca (expired)")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- the domain

def _cache_key() -> str:
    h = hashlib.sha256()
    for part in (str(FIXTURE_VERSION), SETUP_SCRIPT, EXPIRE_SCRIPT, repr(sorted(USERS.items())),
                 ADMIN_PW, str(LOCKOUT_THRESHOLD), samba_version()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _provision(target: Path):
    """samba-tool domain provision into target, then the accounts."""
    _run([SAMBA_TOOL, "domain", "provision", f"--targetdir={target}", f"--realm={REALM}",
          f"--domain={NETBIOS}", "--server-role=dc", "--dns-backend=NONE",
          "--host-name=dc1", "--host-ip=127.0.0.1", f"--adminpass={ADMIN_PW}",
          "--option=interfaces=127.0.0.1", "--option=bind interfaces only=yes"],
         "samba-tool domain provision")
    _run([SYSTEM_PYTHON, "-c", SETUP_SCRIPT, target / "etc" / "smb.conf",
          target / "private" / "sam.ldb", BASE, repr(USERS), str(LOCKOUT_THRESHOLD)],
         "the accounts")
    part = target / "private" / "sam.ldb.d" / f"{BASE.upper()}.ldb"
    _run([SYSTEM_PYTHON, "-c", EXPIRE_SCRIPT, part, USERS["pat"][1]], "pwdLastSet for pat")


def provisioned() -> Path:
    """The cached tarball of the provisioned domain (made if missing)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"samba-dc-{_cache_key()}.tar"
    if tarball.exists():
        return tarball
    work = Path(tempfile.mkdtemp(prefix="samba-provision-", dir=str(cache)))
    try:
        _provision(work / "dc")
        tmp = cache / f".{tarball.name}.{os.getpid()}"
        with tarfile.open(tmp, "w") as tf:
            tf.add(work / "dc", arcname="dc")
        os.replace(tmp, tarball)   # atomic: concurrent runs may race here
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Domains of older fixture or Samba versions are never used again.
    for old in cache.glob("samba-dc-*.tar"):
        if old != tarball:
            old.unlink(missing_ok=True)
    return tarball


# ---------------------------------------------------------------- the DC

_running: list["SambaDC"] = []


def stop_all():
    for dc in list(_running):
        dc.stop()


class SambaDC:
    """The provisioned domain, unpacked under base, served on 127.0.0.1 of
    the current network namespace (LDAP 389, LDAPS 636, GC 3268/3269)."""

    host = "127.0.0.1"

    def __init__(self, base: Path, ca: tuple[Path, Path]):
        self.dir = harness.make_dir(base, "samba-dc-")
        with tarfile.open(provisioned()) as tf:
            tf.extractall(self.dir)
        self.root = self.dir / "dc"
        (self.root / "cache").mkdir(exist_ok=True)
        self.cert, self.key = make_dc_cert(self.dir, ca)
        self.ca_cert = ca[0]
        self.conf = self.root / "etc" / "authrelay-dc.conf"
        self.log = self.dir / "samba.log"
        self.proc: subprocess.Popen | None = None
        self._out = None
        self.write_config()

    def use_cert(self, cert: Path, key: Path):
        """Serve another certificate from the next start on."""
        self.cert, self.key = cert, key
        self.write_config()

    def write_config(self):
        r = self.root
        self.conf.write_text("\n".join([
            "[global]",
            "\tnetbios name = DC1",
            f"\trealm = {REALM}",
            f"\tworkgroup = {NETBIOS}",
            "\tserver role = active directory domain controller",
            # The LDAP server alone: no SMB, RPC, NetBIOS, DNS or Kerberos
            # (simple binds are checked by the directory itself).
            "\tserver services = ldap",
            "\tdisable netbios = yes",
            f"\tinterfaces = {self.host}",
            "\tbind interfaces only = yes",
            f"\tprivate dir = {r}/private",
            f"\tstate directory = {r}/state",
            f"\tcache directory = {r}/cache",
            f"\tlock directory = {r}",
            f"\tpid directory = {r}",
            f"\tbinddns dir = {r}/bind-dns",
            f"\tlog file = {self.log}",
            "\tlogging = file",
            "\tlog level = 1",
            # As many sites have it: simple binds also without TLS (the
            # tests use LDAPS and StartTLS where it matters).
            "\tldap server require strong auth = no",
            "\ttls enabled = yes",
            f"\ttls keyfile = {self.key}",
            f"\ttls certfile = {self.cert}",
            f"\ttls cafile = {self.ca_cert}",
            "",
        ]))

    # URIs by address (the certificate carries DC_HOST only)
    @property
    def uri(self) -> str:
        return f"ldap://{self.host}/"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://{self.host}/"

    def start(self, timeout: float = 60) -> "SambaDC":
        self._out = open(self.dir / "samba.out", "ab")
        self.proc = subprocess.Popen([SAMBA, "-i", "-M", "single", "-s", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        _running.append(self)
        harness.wait_until(self._answers, timeout, "the Samba DC to answer LDAP")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"samba exited with {self.proc.returncode}: "
                                 + self.output_tail())
        r = subprocess.run([LDAPSEARCH, "-x", "-H", self.uri, "-o", "nettimeout=2", "-l", "2",
                            "-b", "", "-s", "base", "defaultNamingContext"],
                           capture_output=True, timeout=10)
        return r.returncode == 0 and b"defaultNamingContext" in r.stdout

    def output_tail(self) -> str:
        out = ""
        for f in (self.dir / "samba.out", self.log):
            if f.exists():
                out += f.read_text(errors="replace")[-2000:]
        return out

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20):
        if self.proc is None:
            return
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self in _running:
            _running.remove(self)
        if self._out:
            self._out.close()
            self._out = None
        harness.wait_until(lambda: not _port_open(self.host, 389), 10,
                           "port 389 to close after the DC stopped")

    def ldap_modify(self, ldif: str):
        """Apply ldif as the domain administrator."""
        _run([LDAPMODIFY, "-x", "-H", self.uri, "-D", f"Administrator@{DNS_DOMAIN}",
              "-w", ADMIN_PW], "ldapmodify", input=ldif.encode())

    def search(self, base: str, filt: str, *attrs: str, scope: str = "sub") -> str:
        r = _run([LDAPSEARCH, "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.uri,
                  "-D", f"Administrator@{DNS_DOMAIN}", "-w", ADMIN_PW, "-b", base,
                  "-s", scope, filt, *attrs], "ldapsearch")
        return r.stdout.decode(errors="replace")

    def unlock(self, user: str):
        """Clear a lockout (lockoutTime = 0, as Active Directory Users and
        Computers does)."""
        self.ldap_modify(f"dn: {USERS[user][1]}\nchangetype: modify\n"
                         "replace: lockoutTime\nlockoutTime: 0\n")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def write_password_file(directory: Path, password: str = SERVICE_PW,
                        owner: str = harness.AUTH_AS) -> Path:
    """The service account's password, mode 0400, owned by the auth user."""
    import pwd
    path = directory / f"ad-bind-password-{os.urandom(4).hex()}"
    path.write_text(password + "\n")
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o400)
    return path
