# SPDX-License-Identifier: ISC
"""The TLS private key lives in the key process only.

The SMTP workers hold the certificate chain and the public key; every
signature their handshakes need comes from the key process, a child of the
master that never touches the network. Checked from outside: what the
workers' memory and descriptors hold, what the key process is (user,
chroot, not dumpable, no network socket), TLS 1.2 and 1.3 with RSA and
ECDSA keys through STARTTLS and implicit TLS, a key process that stops or
dies, and many handshakes at once.
"""

import concurrent.futures
import os
import re
import signal
import ssl
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from harness import (CLIENT_HELO, HOST, HOSTNAME, SMTPConn, client_tls_context, make_cert,
                     make_dir, make_message, auth_ids, nobody_ids, proc_alive, proc_ids, run_tool,
                     smtplib_auth, smtplib_client, smtplib_send, wait_until, _pids_holding)


@pytest.fixture(scope="module")
def rsa_files(base_dir):
    return make_cert(make_dir(base_dir, "tls-rsa-"), key_type="rsa")


@pytest.fixture(scope="module")
def rsa_gw(module_gateway, rsa_files):
    cert, key = rsa_files
    return module_gateway({"tls": {"cert_file": str(cert), "key_file": str(key)}})


def workers(gw) -> set[int]:
    return _pids_holding(set(gw.children()), gw.listening_inodes())


def key_secrets(key_path) -> list[bytes]:
    """Byte strings that only a holder of the private key has in memory: the
    private number(s), big-endian as in the file and little-endian as in an
    OpenSSL BIGNUM on this machine."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    nums = key.private_numbers()
    if hasattr(nums, "private_value"):          # EC
        values = [(nums.private_value, 32)]
    else:                                       # RSA: d and the primes
        values = [(nums.d, 256), (nums.p, 128), (nums.q, 128)]
    out = []
    for v, n in values:
        b = v.to_bytes(n, "big")
        out += [b, b[::-1]]
    return out


def memory_holds(pid: int, needles: list[bytes]) -> bool:
    """Whether any needle is in the process's writable memory (heap, stacks,
    anonymous mappings), read through /proc/PID/mem as root. Mappings over
    1 GiB are skipped: only an ASan build has them (its shadow memory, mostly
    never touched), and the data it shadows lives in the other mappings."""
    with open(f"/proc/{pid}/maps") as f:
        regions = [l.split() for l in f]
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for r in regions:
            start, end = (int(x, 16) for x in r[0].split("-"))
            path = r[5] if len(r) > 5 else ""
            if "r" not in r[1] or "w" not in r[1] or path in ("[vvar]", "[vsyscall]"):
                continue
            if end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            if any(n in data for n in needles):
                return True
    return False


def network_sockets_of(pid: int) -> set[str]:
    """Inodes of the TCP/UDP sockets pid holds."""
    inet = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{table}") as f:
            next(f)
            inet |= {line.split()[9] for line in f}
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m and m.group(1) in inet:
            held.add(m.group(1))
    return held


def starttls_session(gw, listener="sub", ctx=None):
    """A STARTTLS (or implicit TLS) session up to a TLS EHLO; returns the conn."""
    c = SMTPConn.open(gw, listener)
    if not gw.is_implicit(listener):
        c.ehlo()
        c.starttls()
    c.ehlo()
    return c


# ---------------------------------------------------------------- who holds the key

@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_only_the_key_process_holds_the_private_key(gw, rsa_gw, tls_files, rsa_files, kind):
    g, (cert, key) = (gw, tls_files) if kind == "ec" else (rsa_gw, rsa_files)
    # Root-only key: read before any privilege drop, by the key process.
    st = key.stat()
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0, oct(st.st_mode)
    # Every worker has served a full handshake (no resumption) since its start.
    served = set()
    for _ in range(40):
        c = starttls_session(g)
        served.add(g.pid_serving(c))
        c.cmd("QUIT")
        c.close()
        if served >= workers(g):
            break
    assert served >= workers(g), f"handshakes reached only {served} of {workers(g)}"

    secrets = key_secrets(key)
    # Not in a worker, nor in the master they were forked from...
    for pid in workers(g) | {g.pid}:
        assert not memory_holds(pid, secrets), f"pid {pid} holds the private key"
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert str(key) not in fds, f"pid {pid} has the key file open"
        with open(f"/proc/{pid}/maps") as f:
            assert str(key) not in f.read()
    # ...but where it is: the search would have found it.
    assert memory_holds(g.keyproc_pid(), secrets), "the key process does not hold the key?"


def test_key_process_is_unprivileged_chrooted_and_offline(gw):
    kp = gw.keyproc_pid()
    # auth_user: not the workers' user, whose processes must not be able to
    # signal or trace it.
    uid, gid = auth_ids()
    assert uid != nobody_ids()[0]
    uids, gids, groups = proc_ids(kp)
    assert uids == [uid] * 4 and gids == [gid] * 4 and set(groups) <= {gid}
    # Not dumpable: the kernel then gives its /proc files to root.
    assert os.stat(f"/proc/{kp}/environ").st_uid == 0
    assert os.readlink(f"/proc/{kp}/root") == str(gw.spool / "empty")
    assert os.listdir(gw.spool / "empty") == []
    assert network_sockets_of(kp) == set(), "the key process holds a network socket"
    assert kp not in workers(gw)


# ---------------------------------------------------------------- TLS versions and keys

def s_client(gw, listener, *args):
    port = gw.port(listener)
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", HOSTNAME,
           "-ign_eof", *args]
    if not gw.is_implicit(listener):
        cmd[2:2] = ["-starttls", "smtp"]
    return run_tool(cmd, input="QUIT\r\n", timeout=30)


@pytest.mark.parametrize("listener", ["sub", "subs"])
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_openssl_s_client(gw, rsa_gw, kind, version, listener):
    g = gw if kind == "ec" else rsa_gw
    r = s_client(g, listener, version)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    proto = "TLSv1.2" if version == "-tls1_2" else "TLSv1.3"
    assert re.search(rf"^New, {re.escape(proto)}, Cipher is ", out, re.M), out
    sig = "ECDSA" if kind == "ec" else "RSA-PSS"
    assert re.search(rf"^Peer signature type: {sig}$", out, re.M), out
    assert re.search(r"^221 ", out, re.M), out


def test_rsa_pkcs1_signature_tls12(rsa_gw):
    """A TLS 1.2 client that only takes PKCS #1 v1.5 RSA signatures."""
    r = s_client(rsa_gw, "sub", "-tls1_2", "-sigalgs", "RSA+SHA256")
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out
    assert re.search(r"^Peer signature type: RSA$", out, re.M), out


def test_no_rsa_key_exchange(rsa_gw):
    """The workers offer no RSA key exchange (it would need the key process to
    decrypt, and has no forward secrecy): a client with nothing else fails."""
    r = s_client(rsa_gw, "sub", "-tls1_2", "-cipher", "AES128-GCM-SHA256")
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode != 0, out
    assert "Cipher is (NONE)" in out or "handshake failure" in out, out
    # ECDHE with the same key works.
    r = s_client(rsa_gw, "sub", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert r.returncode == 0, r.stdout.decode(errors="replace")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_smtplib_message_over_starttls_and_implicit_tls(gw, rsa_gw, users, kind, version):
    g = gw if kind == "ec" else rsa_gw
    alice = users["alice"]
    for listener in ("sub", "subs"):
        ctx = client_tls_context()
        ctx.minimum_version = ctx.maximum_version = version
        port = g.port(listener)
        if g.is_implicit(listener):
            import smtplib
            s = smtplib.SMTP_SSL(HOST, port, local_hostname=CLIENT_HELO, timeout=20, context=ctx)
        else:
            import smtplib
            s = smtplib.SMTP(HOST, port, local_hostname=CLIENT_HELO, timeout=20)
            s.ehlo()
            s.starttls(context=ctx)
        with s:
            s.ehlo()
            assert s.sock.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2
                                        else "TLSv1.3")
            smtplib_auth(s, "PLAIN", alice.name, alice.password)
            qid = smtplib_send(s, "alice@example.test", ["rcpt@other.test"], make_message())
            assert g.spool_file(qid)


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_swaks(gw, rsa_gw, users, kind):
    g = gw if kind == "ec" else rsa_gw
    alice = users["alice"]
    for tls in ("--tls", "--tlsc"):
        listener = "sub" if tls == "--tls" else "subs"
        r = run_tool(["swaks", "--server", HOST, "--port", str(g.port(listener)),
                      "--helo", CLIENT_HELO, tls, "--auth", "PLAIN", "--auth-user", alice.name,
                      "--auth-password", alice.password, "--from", "alice@example.test",
                      "--to", "rcpt@other.test", "--timeout", "30"])
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, out
        assert re.search(r"^<[~*\- ]+ 250 2\.0\.0 Ok: queued as \w+", out, re.M), out


# ---------------------------------------------------------------- the key process down

def test_stopped_key_process_fails_the_handshake_cleanly(make_gateway):
    """A key process that does not answer: the handshake fails within the
    signature timeout (the client sees a TLS failure, the session ends), other
    sessions go on, and once it answers again TLS works."""
    gw = make_gateway()
    kp = gw.keyproc_pid()
    mark = gw.log_mark()
    os.kill(kp, signal.SIGSTOP)
    try:
        plain = SMTPConn.open(gw, "in")       # the worker's loop is not stuck
        c = SMTPConn.open(gw, "sub", timeout=30)
        c.ehlo()
        c.send("STARTTLS\r\n")
        c.read_reply().check(220)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            c.tls_handshake()
        plain.ehlo()
        plain.cmd("QUIT").check(221)
        gw.wait_for_log(r"keyproc: no signature after \d+ ms", since=mark)
        gw.wait_for_log(r"s=\w+ tls error: ", since=mark)
        gw.wait_for_log(r"s=\w+ disconnect client=", since=mark)
    finally:
        os.kill(kp, signal.SIGCONT)
    c = starttls_session(gw)
    c.cmd("QUIT").check(221)
    assert gw.keyproc_pid() == kp


def test_killed_key_process_is_restarted(make_gateway):
    gw = make_gateway()
    old = gw.keyproc_pid()
    mark = gw.log_mark()
    os.kill(old, signal.SIGKILL)
    gw.wait_for_log(rf"keyproc pid={old} killed by signal 9", since=mark)
    gw.wait_for_log(r"started keyproc pid=\d+", since=mark)
    wait_until(lambda: not proc_alive(old) and gw.keyproc_pid() != old, 10,
               "a new key process")
    # Handshakes work again (the first may have been the one that found the
    # old process gone: it fails, cleanly; the workers reconnect by themselves).
    def tls_ok():
        try:
            c = starttls_session(gw)
        except (ssl.SSLError, OSError):
            return False
        c.cmd("QUIT").check(221)
        return True
    wait_until(tls_ok, 15, "a TLS session with the new key process")
    for _ in range(4):
        assert tls_ok()


def test_many_parallel_handshakes(rsa_gw, users):
    """60 full handshakes (no resumption) at once, RSA: all served."""
    alice = users["alice"]

    def one(i):
        listener = "sub" if i % 2 else "subs"
        with smtplib_client(rsa_gw, listener) as s:
            assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
            code, _ = s.login(alice.name, alice.password)
            return code

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as ex:
        codes = list(ex.map(one, range(60)))
    assert codes == [235] * 60


# ---------------------------------------------------------------- configuration

def test_check_config_refuses_keys_it_cannot_use(make_gateway, base_dir, tls_files, rsa_files):
    d = make_dir(base_dir, "tls-ed-")
    ed_key = d / "ed.key"
    ed_cert = d / "ed.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-subj",
                    f"/CN={HOSTNAME}", "-days", "2", "-keyout", str(ed_key), "-out",
                    str(ed_cert)], check=True, capture_output=True, timeout=60)
    cases = [
        ({"cert_file": str(ed_cert), "key_file": str(ed_key)}, "unsupported key type"),
        ({"cert_file": str(rsa_files[0]), "key_file": str(tls_files[1])}, "do not match"),
    ]
    for tls, why in cases:
        gw = make_gateway({"tls": tls}, start=False)
        r = run_tool([gw.binary, "check-config", "-c", str(gw.cfg_path)])
        assert r.returncode == 78, r
        assert why in r.stderr.decode(), r.stderr.decode()
        gw.start(wait=False)
        assert gw.proc.wait(30) == 78
        assert why in gw.log_text()
