# SPDX-License-Identifier: ISC
"""
harness.py - start the real authrelay daemon on free loopback ports and talk
to it with real clients.

What is here, in the order a test uses it:
  free_port()            a loopback port nobody else in this run was given
  make_cert()            a self-signed certificate for mx.test.example (ECDSA P-256,
                         or RSA 2048 with key_type="rsa")
  hash_password()        users-file hashes made without the daemon (crypt, hashlib)
  Gateway                writes a config from a dict of sections, starts
                         `authrelay -f -c FILE` with its log in a file, waits until
                         every listener greets, knows its processes and its spool
  SMTPConn / Reply       a line-level SMTP client: exact bytes out, whole
                         (multi-line) replies in, STARTTLS, "did it close?"
  smtplib helpers        for ordinary flows (unverified TLS context)
  SpoolFile              parses <spool_dir>/incoming/<ID>

Every wait is on a condition with a deadline (wait_until), never a bare sleep.
The daemon runs as root and drops to a user per process kind, as the package
does (etc/authrelay.sysusers): the SMTP workers to `nobody` (RUN_AS), the auth
process to AUTH_AS, the queue to QUEUE_AS (made by ensure_users() when
missing). So every directory made here is 0755 and every file the daemon reads
after dropping privileges is 0644.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import pwd
import re
import secrets
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
HOSTNAME = "mx.test.example"
CLIENT_HELO = "client.test.example"
LOCAL_DOMAIN = "example.test"
FOREIGN_DOMAIN = "other.test"
RUN_AS = "nobody"  # the SMTP workers
AUTH_AS = "authrelay-it-auth"  # the auth process
QUEUE_AS = "authrelay-it-queue"  # the queue process

# One line of the daemon's log (see the brief's interface contract).
LOG_LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (master|smtpd|auth|queue|keyproc|metrics)\[(\d+)\] "
    r"(emerg|alert|crit|fatal|err|error|warn|warning|notice|info|debug): \S"
)
QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as ([A-Za-z0-9]+)$")


def authrelay_bin() -> str | None:
    """The daemon under test: $AUTHRELAY_BIN, else build/authrelay; None if absent."""
    path = os.environ.get("AUTHRELAY_BIN") or str(REPO / "build" / "authrelay")
    return os.path.abspath(path) if os.access(path, os.X_OK) else None


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll predicate until it returns something truthy; return that. Fails the
    test with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except AssertionError as e:  # a predicate may assert; keep the reason
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


_ports_given: set[int] = set()


def free_port(host: str = HOST) -> int:
    """A TCP port free on host right now and not handed out before in this run."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port")


def make_dir(parent: Path | str, prefix: str) -> Path:
    """A fresh directory under parent, mode 0755 so the dropped daemon can traverse it."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=str(parent)))
    os.chmod(d, 0o755)
    return d


def make_cert(directory: Path, key_type: str = "ec") -> tuple[Path, Path]:
    """Self-signed certificate for HOSTNAME, key_type "ec" (ECDSA P-256) or "rsa"
    (RSA 2048). Returns (cert, key). The key stays 0600 root: the daemon must
    read it before dropping privileges."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    newkey = (["rsa:2048"] if key_type == "rsa"
              else ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", *newkey,
         "-nodes", "-subj", f"/CN={HOSTNAME}", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- passwords

_CRYPT_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _salt(n: int) -> str:
    return "".join(secrets.choice(_CRYPT_SALT_CHARS) for _ in range(n))


def _crypt(password: str, setting: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11, still the libxcrypt binding we have
    h = crypt.crypt(password, setting)
    if not h or h.startswith("*"):
        raise RuntimeError(f"crypt() does not support {setting[:4]}")
    return h


def _ssha(password: str, algo: str, tag: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.new(algo, password.encode() + salt).digest()
    return tag + base64.b64encode(digest + salt).decode()


def hash_password(password: str, scheme: str) -> str:
    """A users-file hash of password in scheme, made without the daemon."""
    if scheme == "sha512-crypt":
        return _crypt(password, "$6$" + _salt(16))
    if scheme == "sha256-crypt":
        return _crypt(password, "$5$" + _salt(16))
    if scheme == "bcrypt":
        return _crypt(password, "$2b$04$" + _salt(22))
    if scheme == "yescrypt":
        return _crypt(password, "$y$j9T$" + _salt(16))
    if scheme == "ssha":
        return _ssha(password, "sha1", "{SSHA}")
    if scheme == "ssha512":
        return _ssha(password, "sha512", "{SSHA512}")
    if scheme == "cleartext":
        return "{CLEARTEXT}" + password
    raise ValueError(scheme)


def verify_hash(password: str, stored: str) -> bool:
    """Check a hash the way the daemon should (for testing `authrelay passwd`)."""
    if stored.startswith("$"):
        return _crypt(password, stored) == stored
    for tag, algo in (("{SSHA512}", "sha512"), ("{SSHA}", "sha1")):
        if stored.startswith(tag):
            raw = base64.b64decode(stored[len(tag):])
            n = hashlib.new(algo).digest_size
            return hashlib.new(algo, password.encode() + raw[n:]).digest() == raw[:n]
    if stored.startswith("{CLEARTEXT}"):
        return stored[len("{CLEARTEXT}"):] == password
    raise ValueError(stored)


class User:
    def __init__(self, name: str, password: str, scheme: str):
        self.name, self.password, self.scheme = name, password, scheme
        self.hash = hash_password(password, scheme)

    def __repr__(self):
        return f"User({self.name}, {self.scheme})"


# The standard users file: one user per stored-hash format of the contract.
STANDARD_USERS = [
    ("alice", "alice-Secret-1", "sha512-crypt"),
    ("bob", "b0b pass:word 2", "sha256-crypt"),      # space and colon in the password
    ("carol", "carol-Secret-3", "bcrypt"),
    ("dave", "dave-Secret-4", "yescrypt"),
    ("erin", "erin-Secret-5", "ssha"),
    ("frank", "frank-Secret-6", "ssha512"),
    ("clara", "clara-Secret-7", "cleartext"),         # cleartext-equivalent: CRAM-MD5
    ("gina@example.test", "gina-Secret-8", "sha512-crypt"),
]


def standard_users() -> dict[str, User]:
    return {name: User(name, pw, scheme) for name, pw, scheme in STANDARD_USERS}


def user_secrets(users: dict[str, "User"]) -> set[str]:
    """What must never reach a log for these users: each password, its base64
    (the LOGIN response) and the PLAIN initial responses the tests send."""
    out = set()
    for u in users.values():
        out |= {u.password, b64(u.password), plain_ir(u.name, u.password),
                plain_ir(u.name, u.password, u.name)}
    return out


def write_users_file(path: Path, users: dict[str, str]):
    """users: name -> stored hash. Written atomically, mode 0644."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{name}:{h}\n" for name, h in users.items()))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ---------------------------------------------------------------- base64 / SASL

def b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain_ir(user: str, password: str, authzid: str = "") -> str:
    """The PLAIN initial response (RFC 4616): authzid NUL authcid NUL passwd."""
    return b64(f"{authzid}\0{user}\0{password}")


# ---------------------------------------------------------------- TLS

def client_tls_context() -> ssl.SSLContext:
    """TLS client context that does not verify the self-signed test certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- SMTP client

class ConnectionClosed(Exception):
    """The server closed the connection while we expected data."""


class Reply:
    """One SMTP reply: code and the text of each line (after "NNN-" / "NNN ")."""

    ENH_RE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)")

    def __init__(self, code: int, lines: list[str], raw: list[bytes]):
        self.code, self.lines, self.raw = code, lines, raw

    @property
    def enh(self) -> str | None:
        """Enhanced status code of the first line, if any."""
        m = self.ENH_RE.match(self.lines[0]) if self.lines else None
        return m.group(1) if m else None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def keywords(self) -> dict[str, list[str]]:
        """EHLO keywords (upper-cased) and their parameters, first line skipped."""
        kw = {}
        for line in self.lines[1:]:
            parts = line.split()
            if parts:
                kw[parts[0].upper()] = parts[1:]
        return kw

    def check(self, code: int, enh: str | None = None, text: str | None = None) -> "Reply":
        """Assert the code (and enhanced code, and a regex on the first line)."""
        assert self.code == code, f"expected {code} {enh or ''}, got:\n{self}"
        if enh is not None:
            assert self.enh == enh, f"expected {code} {enh}, got:\n{self}"
        if text is not None:
            assert re.search(text, self.lines[0]), f"expected /{text}/ in:\n{self}"
        return self

    def queued_id(self) -> str:
        """The ID of a `250 2.0.0 Ok: queued as ID` reply."""
        self.check(250, "2.0.0")
        m = QUEUED_RE.match(self.lines[0])
        assert m, f"not a 'queued as ID' reply:\n{self}"
        return m.group(1)

    def __str__(self):
        return "\n".join(r.decode("utf-8", "replace") for r in self.raw)

    __repr__ = __str__


_open_conns: list["SMTPConn"] = []

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src: str, sport: int, dst: str = HOST, dport: int = 25) -> bytes:
    """A PROXY protocol v1 line for a TCP client src:sport (IPv4 or IPv6)."""
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src: str | None, sport: int = 0, dst: str = HOST, dport: int = 25,
             tlvs: bytes = b"") -> bytes:
    """A PROXY protocol v2 header: PROXY for a TCP client src:sport, or LOCAL
    (a load balancer's own health check) when src is None. tlvs are appended
    raw after the addresses."""
    if src is None:
        body = tlvs
        return PROXY_V2_SIG + bytes([0x20, 0x00]) + len(body).to_bytes(2, "big") + body
    if ":" in src:
        fam, af = 0x21, socket.AF_INET6
    else:
        fam, af = 0x11, socket.AF_INET
    body = (socket.inet_pton(af, src) + socket.inet_pton(af, dst)
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs)
    return PROXY_V2_SIG + bytes([0x21, fam]) + len(body).to_bytes(2, "big") + body


def close_all_connections():
    while _open_conns:
        _open_conns.pop().close()


class SMTPConn:
    """A raw SMTP connection. send() writes exact bytes; read_reply() returns one
    whole reply; cmd() does both. Closed automatically at the end of each test."""

    def __init__(self, host: str, port: int, *, implicit_tls: bool = False,
                 source: str | None = None, timeout: float = 10.0,
                 proxy: bytes | None = None):
        """proxy: a PROXY protocol header (proxy_v1(), proxy_v2()) sent first,
        before any TLS, as a load balancer does."""
        self.timeout = timeout
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None)
        self.tls = False
        self.buf = b""
        _open_conns.append(self)
        if proxy is not None:
            self.sock.sendall(proxy)
        if implicit_tls:
            self._wrap_tls()

    @classmethod
    def open(cls, gw: "Gateway", listener: str, *, source: str | None = None,
             timeout: float = 10.0, expect_greeting: bool = True,
             proxy: bytes | None = None) -> "SMTPConn":
        """Connect to a gateway listener (TLS first when it is implicit) and read
        the greeting, which must be a 220 unless expect_greeting is False."""
        c = cls(gw.host(listener), gw.port(listener), implicit_tls=gw.is_implicit(listener),
                source=source, timeout=timeout, proxy=proxy)
        c.greeting = c.read_reply()
        if expect_greeting:
            assert c.greeting.code == 220, f"greeting from {listener}:\n{c.greeting}"
        return c

    def _wrap_tls(self):
        self.sock = client_tls_context().wrap_socket(self.sock)
        self.tls = True

    def tls_handshake(self):
        """Start TLS on the connection now (after a 220 to STARTTLS read by hand)."""
        assert not self.buf, f"unread plaintext before the handshake: {self.buf!r}"
        self._wrap_tls()

    # --- output
    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line: bytes | str, timeout: float | None = None) -> Reply:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply(timeout)

    # --- input
    def _recv(self, timeout: float) -> bytes:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            data = b""
        except socket.timeout:
            raise TimeoutError(f"no data from server within {timeout:.1f}s (have {self.buf!r})")
        return data

    def read_line(self, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            data = self._recv(deadline - time.monotonic())
            if not data:
                raise ConnectionClosed(f"connection closed (pending {self.buf!r})")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def read_reply(self, timeout: float | None = None) -> Reply:
        """Read one complete reply; fail on malformed lines or a code that
        changes between lines of a multi-line reply."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        raw, lines, code = [], [], None
        while True:
            line = self.read_line(deadline - time.monotonic())
            raw.append(line)
            m = re.match(rb"^(\d{3})([ -]|$)(.*)$", line)
            assert m, f"malformed reply line {line!r} (after {raw[:-1]!r})"
            c = int(m.group(1))
            assert code is None or c == code, f"reply code changed inside a reply: {raw!r}"
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def wait_closed(self, timeout: float = 10.0) -> bytes:
        """Wait until the server closes the connection; return whatever else it
        sent meanwhile. Fails if it is still open after timeout seconds."""
        deadline = time.monotonic() + timeout
        got = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s"
                                     f" (received {got!r})")
            try:
                data = self._recv(remaining)
            except TimeoutError:
                continue
            except OSError:
                return got
            if not data:
                return got
            got += data

    # --- conveniences
    def ehlo(self, name: str = CLIENT_HELO) -> Reply:
        return self.cmd(f"EHLO {name}").check(250)

    def starttls(self) -> Reply:
        """STARTTLS (must get 220 2.0.0) and the TLS handshake."""
        r = self.cmd("STARTTLS").check(220, "2.0.0")
        assert not self.buf, f"server sent data after 220 to STARTTLS: {self.buf!r}"
        self._wrap_tls()
        return r

    def auth_plain(self, user: str, password: str) -> Reply:
        return self.cmd(f"AUTH PLAIN {plain_ir(user, password)}")

    def send_message(self, mail_from: str, rcpts: list[str], message: bytes | str,
                     mail_params: str = "") -> Reply:
        """MAIL, RCPT..., DATA, the dot-stuffed message; returns the final reply
        (250 queued, or whatever the server says). Every RCPT must get 250."""
        self.cmd(f"MAIL FROM:<{mail_from}>{mail_params}").check(250, "2.1.0")
        for r in rcpts:
            self.cmd(f"RCPT TO:<{r}>").check(250, "2.1.5")
        self.cmd("DATA").check(354)
        self.send(dot_stuff(message) + b".\r\n")
        return self.read_reply(timeout=30)

    def peer_cert_der(self) -> bytes:
        return self.sock.getpeercert(binary_form=True)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(message: bytes | str) -> bytes:
    """CRLF-terminated, dot-stuffed DATA payload (without the final '.')."""
    if isinstance(message, str):
        message = message.encode()
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)


def new_msgid() -> str:
    return f"<{secrets.token_hex(12)}@{CLIENT_HELO}>"


def make_message(mail_from: str = "sender@other.test", to: str = "user@example.test",
                 subject: str = "test", msgid: str | None = "auto", date: bool = True,
                 headers: list[str] = (), body: str = "Hello.\r\n") -> str:
    """An RFC 5322 message with CRLF line ends. msgid=None leaves Message-ID out,
    date=False leaves Date out; extra header lines come first."""
    h = list(headers)
    h += [f"From: <{mail_from}>", f"To: <{to}>", f"Subject: {subject}"]
    if date:
        h.append("Date: " + email.utils.formatdate(localtime=False))
    if msgid is not None:
        h.append("Message-ID: " + (new_msgid() if msgid == "auto" else msgid))
    return "\r\n".join(h) + "\r\n\r\n" + body


def msgid_of(message: str) -> str:
    m = re.search(r"^Message-ID: (\S+)\r$", message, re.M | re.I)
    assert m
    return m.group(1)


# ---------------------------------------------------------------- smtplib

def smtplib_client(gw: "Gateway", listener: str = "sub", starttls: bool = True,
                   timeout: float = 20) -> smtplib.SMTP:
    """An smtplib client after EHLO (and STARTTLS + EHLO unless the listener is
    implicit TLS or starttls is False)."""
    port = gw.port(listener)
    if gw.is_implicit(listener):
        s = smtplib.SMTP_SSL(HOST, port, local_hostname=CLIENT_HELO, timeout=timeout,
                             context=client_tls_context())
        s.ehlo()
        return s
    s = smtplib.SMTP(HOST, port, local_hostname=CLIENT_HELO, timeout=timeout)
    s.ehlo()
    if starttls:
        s.starttls(context=client_tls_context())
        s.ehlo()
    return s


def smtplib_auth(s: smtplib.SMTP, mech: str, user: str, password: str,
                 initial_response: bool = True) -> tuple[int, bytes]:
    """AUTH with smtplib's own mechanism code. Returns (code, text); smtplib
    raises SMTPAuthenticationError for failures other than 503."""
    s.user, s.password = user, password
    return s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")),
                  initial_response_ok=initial_response)


def smtplib_send(s: smtplib.SMTP, mail_from: str, rcpts: list[str], message: str) -> str:
    """MAIL/RCPT/DATA through smtplib; returns the queue ID."""
    code, resp = s.mail(mail_from)
    assert code == 250, (code, resp)
    for r in rcpts:
        code, resp = s.rcpt(r)
        assert code == 250, (r, code, resp)
    code, resp = s.data(message.encode())
    assert code == 250, (code, resp)
    m = QUEUED_RE.match(resp.decode())
    assert m, resp
    return m.group(1)


# ---------------------------------------------------------------- spool

class SpoolFile:
    """<spool_dir>/incoming/<ID>: envelope records, blank line, message."""

    def __init__(self, path: Path):
        self.path = path
        data = path.read_bytes()
        self.raw = data
        pos = 0
        self.records: list[tuple[str, str]] = []
        first = True
        while True:
            nl = data.find(b"\n", pos)
            assert nl >= 0, f"{path}: no blank line after the envelope"
            line = data[pos:nl].rstrip(b"\r").decode("utf-8", "replace")
            pos = nl + 1
            if line == "":
                break
            if first:
                self.magic = line
                first = False
                continue
            key, _, value = line.partition(" ")
            self.records.append((key, value))
        self.message = data[pos:]

    def get(self, key: str) -> str | None:
        vals = self.all(key)
        assert len(vals) <= 1, f"{key} recorded {len(vals)} times in {self.path}"
        return vals[0] if vals else None

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.records if k == key]

    @property
    def header_block(self) -> bytes:
        end = self.message.find(b"\r\n\r\n")
        return self.message if end < 0 else self.message[:end + 2]

    @property
    def body(self) -> bytes:
        end = self.message.find(b"\r\n\r\n")
        return b"" if end < 0 else self.message[end + 4:]

    def headers(self) -> list[tuple[str, str]]:
        """(name, unfolded value) in order."""
        out = []
        for line in self.header_block.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            if line[0] in " \t" and out:
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            else:
                name, _, value = line.partition(":")
                out.append((name, value.strip()))
        return out

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers() if n.lower() == name.lower()]

    def without_first_header(self) -> bytes:
        """The message minus its first header field (with continuation lines):
        what the client sent, when the first header is our Received."""
        lines = self.message.split(b"\r\n")
        i = 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
        return b"\r\n".join(lines[i:])


# ---------------------------------------------------------------- /proc

def proc_children(ppid: int) -> list[int]:
    """Live (non-zombie) children of ppid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == ppid and rest[0] not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


def proc_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    """(Uid fields, Gid fields, supplementary groups) of a process."""
    st = proc_status(pid)
    return ([int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()],
            [int(x) for x in st.get("Groups", "").split()])


def _hex_addr(ip: str, port: int) -> str:
    return socket.inet_aton(ip)[::-1].hex().upper() + ":" + f"{port:04X}"


def _tcp_inodes(match) -> set[str]:
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if match(parts[1], parts[2], parts[3]):
                inodes.add(parts[9])
    return inodes


def _pids_holding(pids, inodes: set[str]) -> set[int]:
    wanted = {f"socket:[{i}]" for i in inodes if i != "0"}
    found = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    found.add(pid)
                    break
            except OSError:
                pass
    return found


def nobody_ids() -> tuple[int, int]:
    """uid and gid of the SMTP workers."""
    pw = pwd.getpwnam(RUN_AS)
    return pw.pw_uid, pw.pw_gid


_users_made = False


def ensure_users():
    """The system users of the auth process and the queue, made once if
    missing (useradd, as root; a gateway started as root needs them)."""
    global _users_made
    if _users_made or os.geteuid() != 0:
        return
    for name in (AUTH_AS, QUEUE_AS):
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                           check=True, capture_output=True, timeout=60)
    _users_made = True


def auth_ids() -> tuple[int, int]:
    """uid and gid of the auth process."""
    ensure_users()
    pw = pwd.getpwnam(AUTH_AS)
    return pw.pw_uid, pw.pw_gid


def queue_ids() -> tuple[int, int]:
    """uid and gid of the queue process."""
    ensure_users()
    pw = pwd.getpwnam(QUEUE_AS)
    return pw.pw_uid, pw.pw_gid


# ---------------------------------------------------------------- the gateway

ACTIVE_GATEWAYS: list["Gateway"] = []


def _fmt(v) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "no"
    return str(v)


class DaemonExited(Exception):
    """The daemon exited while a test waited for it (not retried by wait_until)."""


class Gateway:
    """One authrelay daemon with its own directory, config, users file, spool
    and log. `config` overrides the default sections: {"section": {key: value}};
    a value of None deletes that key, a section of None deletes the section.
    Listener sections ("listener NAME") without an address get a free port."""

    def __init__(self, binary: str, base: Path, cert: Path, key: Path,
                 users: dict[str, str], config: dict | None = None, name: str = "gw"):
        ensure_users()
        self.binary = binary
        self.dir = make_dir(base, name + "-")
        self.spool = self.dir / "spool"
        self.users_path = self.dir / "users"
        self.cfg_path = self.dir / "authrelay.conf"
        self.log_path = self.dir / "authrelay.log"
        self.proc: subprocess.Popen | None = None
        self._logf = None
        self.known_children: set[int] = set()
        self.sections = {
            "server": {"hostname": HOSTNAME, "user": RUN_AS, "auth_user": AUTH_AS,
                       "queue_user": QUEUE_AS, "workers": 2, "spool_dir": str(self.spool),
                       "log_level": "debug"},
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "limits": {"auth_failure_delay_ms": 0},
            "relay": {"local_domains": LOCAL_DOMAIN, "client_networks": "127.0.0.0/8"},
            "auth": {"threads": 2, "request_timeout": 30},
            "users-file": {"path": str(self.users_path)},
            "listener in": {"role": "inbound", "tls": "none"},
            "listener sub": {"role": "submission", "tls": "required"},
            "listener subs": {"role": "submission", "tls": "implicit"},
            "listener out": {"role": "outbound", "tls": "none"},
            # The queue process delivers what was accepted. Tests that
            # do not test delivery get a resolver that answers nothing (a
            # closed port), so their messages stay deferred in incoming/.
            "queue": {"resolver": f"{HOST}:{free_port()}"},
            # The brute-force throttle delays and locks out after
            # repeated failures, which many tests make on purpose against
            # one shared gateway; test_protection.py turns it on. (The auth
            # cache stays on: it answers as the source did.)
            "protection": {"delay_ms": 0, "lockout_client_failures": 0,
                           "lockout_login_failures": 0,
                           "lockout_client_login_failures": 0},
        }
        for sect, vals in (config or {}).items():
            if vals is None:
                self.sections.pop(sect, None)
                continue
            target = self.sections.setdefault(sect, {})
            for k, v in vals.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = v
        for sect, vals in self.sections.items():
            if sect.startswith("listener ") and "address" not in vals:
                vals["address"] = f"{HOST}:{free_port()}"
        write_users_file(self.users_path, users)
        self.write_config()

    # --- config
    def render_config(self) -> str:
        out = []
        for sect, vals in self.sections.items():
            out.append(f"[{sect}]")
            out += [f"{k} = {_fmt(v)}" for k, v in vals.items()]
            out.append("")
        return "\n".join(out)

    def write_config(self):
        self.cfg_path.write_text(self.render_config())
        os.chmod(self.cfg_path, 0o644)

    def config_line(self, pattern: str) -> int:
        """1-based line number of the first config line matching regex pattern."""
        for i, line in enumerate(self.cfg_path.read_text().split("\n"), 1):
            if re.search(pattern, line):
                return i
        raise AssertionError(f"/{pattern}/ not in {self.cfg_path}")

    def listeners(self) -> list[str]:
        return [s.split(" ", 1)[1] for s in self.sections if s.startswith("listener ")]

    def port(self, listener: str) -> int:
        return int(self.sections[f"listener {listener}"]["address"].rsplit(":", 1)[1])

    def host(self, listener: str) -> str:
        """The address to connect to ("[::1]:25" -> "::1"; 0.0.0.0 -> 127.0.0.1)."""
        h = self.sections[f"listener {listener}"]["address"].rsplit(":", 1)[0].strip("[]")
        return {"0.0.0.0": HOST, "::": "::1"}.get(h, h)

    def is_implicit(self, listener: str) -> bool:
        return self.sections[f"listener {listener}"].get("tls") == "implicit"

    def proxy_source(self, listener: str) -> str:
        """A loopback address inside the listener's proxy_trusted_networks
        (its first network's first host)."""
        net = _fmt(self.sections[f"listener {listener}"]["proxy_trusted_networks"])
        addr = net.split(",")[0].split()[0].split("/")[0]
        return addr[:-2] + ".1" if addr.endswith(".0") else addr

    def is_proxied(self, listener: str) -> bool:
        """The listener expects a PROXY protocol header first."""
        return _fmt(self.sections[f"listener {listener}"].get("proxy_protocol", "no")) == "yes"

    # --- lifecycle
    def start(self, wait: bool = True, timeout: float = 30.0,
              env: dict[str, str] | None = None, new_group: bool = False) -> "Gateway":
        """Run `authrelay -f -c FILE`; env adds variables to its environment.
        new_group: in a process group of its own, for kill_group()."""
        self._start_mark = self.log_mark()
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", "-c", str(self.cfg_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, cwd=str(self.dir),
                                     env={**os.environ, **env} if env else None,
                                     start_new_session=new_group)
        ACTIVE_GATEWAYS.append(self)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_running(self):
        if self.proc.poll() is not None:
            raise DaemonExited(f"authrelay exited with {self.proc.returncode}; log:\n"
                               + self.log_tail())

    def probe(self, listener: str, timeout: float) -> bool:
        """One connection that must get a 220 greeting; then QUIT and wait for
        the close, so the connection is no longer counted when this returns."""
        # Behind a load balancer: a health check's header (v2 LOCAL), from
        # an address the listener trusts.
        proxy = proxy_v2(None) if self.is_proxied(listener) else None
        source = self.proxy_source(listener) if proxy else None
        try:
            c = SMTPConn(self.host(listener), self.port(listener),
                         implicit_tls=self.is_implicit(listener), timeout=timeout,
                         proxy=proxy, source=source)
        except (ConnectionRefusedError, ssl.SSLError, ConnectionResetError, socket.timeout):
            return False
        try:
            g = c.read_reply(timeout)
            assert g.code == 220, f"greeting on {listener}: {g}"
            c.cmd("QUIT", timeout).check(221)
            c.wait_closed(timeout)
            return True
        except (ConnectionClosed, TimeoutError, OSError) as e:
            raise AssertionError(f"probe of {listener}: {e!r}")
        finally:
            c.close()
            if c in _open_conns:
                _open_conns.remove(c)

    def wait_ready(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        for name in self.listeners():
            def ready():
                self._check_running()
                return self.probe(name, max(deadline - time.monotonic(), 0.5))
            wait_until(ready, max(deadline - time.monotonic(), 0.5),
                       f"listener {name} to greet")
        # Listeners greet as soon as one worker runs; the master says "ready"
        # once every child (all workers, auth, queue, the key process) has set
        # itself up and dropped its privileges, which is what tests about
        # children expect.
        since = getattr(self, "_start_mark", 0)
        rx = re.compile(r"\bmaster\[\d+\] \w+: ready listeners=")
        def master_ready():
            self._check_running()
            return rx.search(self.log_text(), since)
        wait_until(master_ready, max(deadline - time.monotonic(), 0.5),
                   "the master to report every child up")
        self.known_children = set(self.children())

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the master and wait for it. Returns its exit status. If it is
        still running after timeout, kill it and its children (by pid) and fail."""
        if self.proc is None:
            return None
        kids = set(self.children()) if self.proc.poll() is None else set()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in kids | {self.proc.pid}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
            self._close_log()
            raise AssertionError(f"authrelay did not exit within {timeout}s of SIGTERM")
        # Children must not outlive the master; clean up any that do.
        try:
            wait_until(lambda: not any(proc_alive(p) for p in kids), 10,
                       "the children to exit after the master")
        finally:
            for pid in kids:
                if proc_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self._close_log()
        return rc

    def kill_group(self, timeout: float = 15.0):
        """SIGKILL the whole process group at once (started with new_group):
        the master and every child die in the same instant, as in a crash.
        Returns when none of them is left."""
        pids = set(self.children()) | {self.proc.pid}
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout)
        wait_until(lambda: not any(proc_alive(p) for p in pids), timeout,
                   "every process of the group to die")
        self._close_log()

    def _close_log(self):
        if self in ACTIVE_GATEWAYS:
            ACTIVE_GATEWAYS.remove(self)
        if self._logf:
            self._logf.close()
            self._logf = None

    def hup(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    # --- users
    def write_users(self, users: dict[str, str]):
        write_users_file(self.users_path, users)

    # --- log
    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        return len(self.log_text())

    def log_tail(self, since: int = 0, lines: int = 150) -> str:
        return "\n".join(self.log_text()[since:].split("\n")[-lines:])

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log_text(), since), timeout,
                          f"log line /{pattern}/")

    # --- processes
    def children(self) -> list[int]:
        return proc_children(self.proc.pid)

    def listening_inodes(self) -> set[str]:
        wanted = {_hex_addr(HOST, self.port(n)) for n in self.listeners()}
        return _tcp_inodes(lambda local, rem, st: st == "0A" and local in wanted)

    def pid_serving(self, conn: SMTPConn, timeout: float = 5.0) -> int:
        """The child process holding the server end of conn (from /proc)."""
        cip, cport = conn.sock.getsockname()[:2]
        sip, sport = conn.sock.getpeername()[:2]
        local, remote = _hex_addr(sip, sport), _hex_addr(cip, cport)

        def find():
            inodes = _tcp_inodes(lambda l, r, st: l == local and r == remote)
            pids = _pids_holding(self.children(), inodes)
            assert len(pids) <= 1, f"several processes hold one connection: {pids}"
            return next(iter(pids), None)
        return wait_until(find, timeout, "the worker that holds the connection")

    def assert_no_secrets(self, secrets):
        """Fail if any of the given strings (passwords, AUTH payloads) was logged."""
        text = self.log_text()
        found = [s for s in secrets if s and s in text]
        assert not found, f"secrets in the log of {self.dir}: {found}"

    def logged_pids(self, role: str) -> set[int]:
        return {int(p) for p in re.findall(rf"\b{role}\[(\d+)\]", self.log_text())}

    def queue_pid(self, timeout: float = 10.0) -> int:
        """The queue process: the child that logged as queue[PID]."""
        def find():
            pids = set(self.children()) & self.logged_pids("queue")
            assert len(pids) <= 1, f"several queue processes: {sorted(pids)}"
            return next(iter(pids), None)
        return wait_until(find, timeout, "the queue process")

    def auth_pid(self) -> int:
        """The auth process: a child that logged as auth[PID]; failing that, the
        only child that does not hold the listening sockets."""
        kids = set(self.children())
        by_log = kids & self.logged_pids("auth")
        if len(by_log) == 1:
            return by_log.pop()
        non_workers = kids - _pids_holding(kids, self.listening_inodes())
        non_workers -= self.logged_pids("smtpd") | self.logged_pids("queue")
        non_workers -= self.logged_pids("keyproc") | self.logged_pids("metrics")
        assert len(non_workers) == 1, (
            f"cannot tell the auth process among children {sorted(kids)} "
            f"(auth[] in log: {sorted(by_log)}, not holding listeners: {sorted(non_workers)})")
        return non_workers.pop()

    def keyproc_pid(self) -> int:
        """The key process: the child that logged as keyproc[PID]."""
        pids = set(self.children()) & self.logged_pids("keyproc")
        assert len(pids) == 1, f"key process among children: {sorted(pids)}"
        return pids.pop()

    def queue_pid(self) -> int:
        """The queue process: the one child that logged as queue[PID]."""
        found = set(self.children()) & self.logged_pids("queue")
        assert len(found) == 1, f"cannot tell the queue process: {sorted(found)}"
        return found.pop()

    def worker_pids(self) -> set[int]:
        """The workers accepting connections now: the children holding the
        listening sockets (a worker that stops accepting closes them)."""
        return _pids_holding(set(self.children()), self.listening_inodes())

    # --- spool
    def spool_path(self, qid: str) -> Path:
        return self.spool / "incoming" / qid

    def spool_file(self, qid: str) -> SpoolFile:
        p = self.spool_path(qid)
        assert p.is_file(), f"{p} does not exist (incoming: {self.incoming()})"
        return SpoolFile(p)

    def incoming(self) -> list[str]:
        try:
            return sorted(os.listdir(self.spool / "incoming"))
        except FileNotFoundError:
            return []

    def find_spool_by_msgid(self, msgid: str) -> SpoolFile | None:
        for name in self.incoming():
            p = self.spool / "incoming" / name
            try:
                if msgid.encode() in p.read_bytes():
                    return SpoolFile(p)
            except FileNotFoundError:
                pass
        return None


# ---------------------------------------------------------------- small flows

def submission_conn(gw: Gateway, listener: str = "sub", ehlo: bool = True) -> SMTPConn:
    """Connected to a submission listener, TLS up (STARTTLS unless implicit),
    and EHLO sent over TLS unless ehlo is False."""
    c = SMTPConn.open(gw, listener)
    if not gw.is_implicit(listener):
        c.ehlo()
        c.starttls()
    if ehlo:
        c.ehlo()
    return c


def expect_auth_lockout(c: SMTPConn, reply: Reply):
    """reply answered the AUTH failure that reached max_auth_failures: the
    server must say 421 4.7.0 (as that reply, or right after a 535, or as the
    answer to the next command) and close the connection."""
    if reply.code != 421:
        reply.check(535, "5.7.8")
        try:
            reply = c.read_reply(timeout=3)
        except TimeoutError:
            reply = c.cmd("NOOP")
    reply.check(421, "4.7.0")
    c.wait_closed()


def auth_code(gw: Gateway, user: str, password: str, listener: str = "sub") -> int:
    """A fresh session's AUTH PLAIN result code (QUIT afterwards)."""
    c = submission_conn(gw, listener)
    try:
        code = c.auth_plain(user, password).code
        try:
            c.cmd("QUIT")
        except (ConnectionClosed, OSError, TimeoutError):
            pass
        return code
    finally:
        c.close()


def run_tool(args: list[str], input: bytes | str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run([str(a) for a in args], input=input, capture_output=True,
                          timeout=timeout)
