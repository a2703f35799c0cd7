#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""
bench.py - the `make bench` driver (bench/run.sh installs, builds, then runs this).

On loopback it starts, each in a temporary directory with its own config:
  slapd          10,000 users (uid=user00000..user09999, password pw-NNNNN,
                 {SSHA}), loaded with slapadd
  smtp-sink      Postfix's sink, where the peer relays
  authrelay      submission listeners: plaintext AUTH and STARTTLS; auth through
                 an [ldap] section with method = bind when this build has the LDAP
                 source, else through a users file with the same 10,000 {SSHA}
                 hashes (labelled so in every row)
  the peer       Postfix (`postfix -c DIR start`, its own main.cf/master.cf)
                 with Dovecot SASL (`dovecot -c FILE`), passdb ldap, auth_bind = yes,
                 against the same slapd
then runs bench/smtp_load (build/bench/smtp_load) on both at the same points,
several times each, and prints one table with the medians and the ratio
authrelay / peer. It also measures the ceilings (slapd's search+bind and bind
rates with build/bench/ldap_load, the disk's fsync rate) and the memory of each
system holding idle connections.

Every process it starts is stopped by pid at the end, also on Ctrl-C.

Environment:
  BENCH_QUICK=1       fewer points, one short run each (a smoke test, ~2 min)
  BENCH_RUNS=N        runs per point (default 3; the median is reported)
  BENCH_SECONDS=S     length of one run (default 4)
  BENCH_IDLE=N        idle connections for the memory figure (default 10000)
  BENCH_PEER_IDLE=N   idle connections for the peer (default BENCH_IDLE; Postfix
                      needs one smtpd process per connection)
  BENCH_OUT=DIR       where results.md / results.json go (default build/bench)
  BENCH_KEEP=1        keep the temporary directory
  BENCH_PROFILE=1     only the profile: perf record (cpu-clock, call graphs) of authrelay's
                      processes during a plaintext and a STARTTLS run at concurrency 64,
                      reports in BENCH_OUT/profile-*.txt, no comparison
  BENCH_SERVE=S       only bring everything up (warmed), write BENCH_OUT/serve.json with
                      the ports and pids, and keep it running for S seconds (or until
                      Ctrl-C / SIGTERM): for profiling one point by hand
  BENCH_DIR=DIR       where the temporary directory goes: the spool, Postfix's queue and
                      slapd's database live there, so this picks the file system whose
                      fsync both systems pay. Default: run as root with losetup and
                      mkfs.ext4 at hand, a journaled ext4 made for the run on a loop
                      device (a sparse 8 GiB file in $TMPDIR or /tmp, --direct-io=on),
                      removed at the end, as the published runs used; else $TMPDIR or /tmp
  BENCH_LOOP=0        no loop device: use $TMPDIR or /tmp itself

For the message acceptance points the report also gives what the disk did per
message, for both systems side by side: cache flushes (what an fsync costs a
disk) and journal commits of the spool's file system, from the block device's
counters (/sys/class/block/DEV/stat) and /proc/fs/jbd2, counted from the start
of each run until its queue has drained; and messages/s as a ratio to the
single-thread fsync rate measured on the same file system.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import platform
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
AUTHRELAY = Path(os.environ.get("AUTHRELAY_BIN", BUILD / "authrelay"))
SMTP_LOAD = BUILD / "bench" / "smtp_load"
LDAP_LOAD = BUILD / "bench" / "ldap_load"
HOST = "127.0.0.1"
N_USERS = 10000
SUFFIX = "dc=bench,dc=test"
PEOPLE = "ou=people," + SUFFIX
RUN_AS = "nobody"

QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2" if QUICK else "4"))
CONCURRENCY = [1, 16] if QUICK else [1, 16, 64, 256]
IDLE = int(os.environ.get("BENCH_IDLE", "1000" if QUICK else "10000"))
# Postfix holds each connection with a whole smtpd process (about 1.1 MiB
# PSS, 8.6 MiB RSS each here): 10,000 of them took 14 GiB and more than 300 s
# to greet on this 2-core machine, so the peer gets a smaller count and its
# per-connection figure is what compares.
PEER_IDLE = int(os.environ.get("BENCH_PEER_IDLE", str(min(IDLE, 2000))))
OUT = Path(os.environ.get("BENCH_OUT", BUILD / "bench"))
KEEP = os.environ.get("BENCH_KEEP") == "1"

started: list[tuple[str, int]] = []   # (what, pid) of everything we started


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_greets(port: int, expect: bytes = b"220") -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(512).startswith(expect)
    except OSError:
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_pid(what: str, pid: int, grace: float = 10.0):
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    log(f"{what} (pid {pid}) ignored SIGTERM; SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all():
    for what, pid in reversed(started):
        stop_pid(what, pid)
    started.clear()


# ------------------------------------------------------------------ /proc

def stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after the command name: fields[1] is the ppid, [11:15]
    utime, stime, cutime, cstime. None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields if len(fields) > 14 else None
    except OSError:
        return None


def all_stats() -> dict[int, list[str]]:
    """stat_fields() of every process on the machine."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (f := stat_fields(d)) is not None:
            out[int(d)] = f
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants (one pass over /proc)."""
    kids: dict[int, list[int]] = {}
    for p, f in all_stats().items():
        kids.setdefault(int(f[1]), []).append(p)
    result, todo = [], [pid]
    while todo:
        p = todo.pop()
        result.append(p)
        todo.extend(kids.get(p, []))
    return result


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB over pids."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def cpu_ticks(pids: list[int]) -> int:
    t = 0
    for p in pids:
        f = stat_fields(p)
        if f is not None:
            # utime + stime, and cutime + cstime: children that exited
            # (Postfix's smtpd processes) count in their parent.
            t += sum(int(x) for x in f[11:15])
    return t


def machine_ticks() -> tuple[dict[int, tuple[int, int, int]], list[int]]:
    """Every process's (ppid, utime+stime, cutime+cstime) and /proc/stat's
    cpu line: a whole-machine snapshot, so a run can say where all the CPU went."""
    procs = {p: (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
             for p, f in all_stats().items()}
    with open("/proc/stat") as f:
        total = [int(x) for x in f.readline().split()[1:]]
    return procs, total


def breakdown(before, after, sut: list[int], loadgen_s: float, roles: dict[int, str]) -> dict:
    """CPU seconds of the run by role: the system under test, the load
    generator, slapd, the sink, kernel threads, anything else; and idle."""
    hz = os.sysconf("SC_CLK_TCK")
    (pa, ta), (pb, tb) = before, after
    out = {"sut": 0.0, "loadgen": loadgen_s, "slapd": 0.0, "sink": 0.0, "kernel": 0.0,
           "other": 0.0}
    sut_set = set(sut)
    for pid, (ppid, t, ct) in pb.items():
        own = t - pa[pid][1] if pid in pa else t
        reaped = ct - pa[pid][2] if pid in pa else ct
        # Children a system reaped during the run (Postfix's smtpd
        # processes) are its own; anyone else's reaped children are not
        # counted again (this script's are the load generator, measured
        # with getrusage).
        d = (own + (reaped if pid in sut_set else 0)) / hz
        if d <= 0:
            continue
        if pid in sut_set:
            out["sut"] += d
        elif pid in roles:
            out[roles[pid]] += d
        elif ppid == 2 or pid == 2:
            out["kernel"] += d
        else:
            out["other"] += d
    dt = [b - a for a, b in zip(ta, tb)]
    out["idle_s"] = (dt[3] + dt[4]) / hz   # idle + iowait
    out["total_s"] = sum(dt[:8]) / hz
    return out


# ------------------------------------------------------------------ setup

def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest()
                                       + salt).decode()


def make_cert(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=bench.test",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o640)
    return cert, key


class Slapd:
    def __init__(self, base: Path):
        self.dir = base / "slapd"
        self.dir.mkdir()
        self.port = free_port()
        self.uri = f"ldap://{HOST}:{self.port}"
        self.pid: int | None = None

    def setup(self, hashes: list[str]):
        db = self.dir / "db"
        db.mkdir()
        conf = self.dir / "slapd.conf"
        conf.write_text(f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
loglevel 0
database mdb
maxsize 1073741824
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
rootpw bench-admin
directory {db}
index objectClass eq
index uid eq
index mail eq
access to attrs=userPassword by anonymous auth by * none
access to * by * read
""")
        ldif = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                f"dc: bench\no: bench\n",
                f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n"]
        for i, h in enumerate(hashes):
            u = f"user{i:05d}"
            ldif.append(f"dn: uid={u},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {u}\n"
                        f"cn: {u}\nsn: {u}\nmail: {u}@example.test\nuserPassword: {h}\n")
        (self.dir / "users.ldif").write_text("\n".join(ldif))
        self.conf = conf
        t = time.monotonic()
        subprocess.run(["slapadd", "-q", "-f", str(conf), "-l", str(self.dir / "users.ldif")],
                       check=True, capture_output=True, timeout=300)
        log(f"slapadd: {len(hashes)} users in {time.monotonic() - t:.1f}s")

    def start(self):
        # -d 0: stay in the foreground (a child we can stop by pid), log nothing.
        p = subprocess.Popen(["slapd", "-d", "0", "-f", str(self.conf), "-h", self.uri + "/"],
                             stdout=subprocess.DEVNULL, stderr=open(self.dir / "slapd.log", "w"))
        self.pid = p.pid
        ROLES[p.pid] = "slapd"
        started.append(("slapd", p.pid))
        wait_until(lambda: port_open(self.port), 30, "slapd")
        subprocess.run(["ldapwhoami", "-x", "-H", self.uri, "-D", f"uid=user00001,{PEOPLE}",
                        "-w", "pw-00001"], check=True, capture_output=True, timeout=10)


class Sink:
    def __init__(self, base: Path):
        self.port = free_port()
        self.dir = base / "sink"
        self.dir.mkdir()

    def start(self):
        # One process, event driven; -u: drops to nobody after binding.
        p = subprocess.Popen(["smtp-sink", "-u", RUN_AS, f"{HOST}:{self.port}", "1024"],
                             stdout=subprocess.DEVNULL,
                             stderr=open(self.dir / "sink.log", "w"))
        ROLES[p.pid] = "sink"
        started.append(("smtp-sink", p.pid))
        wait_until(lambda: port_greets(self.port), 30, "smtp-sink")


class Authrelay:
    name = "authrelay"

    def __init__(self, base: Path, cert: Path, key: Path, slapd: Slapd, hashes: list[str],
                 sink: Sink):
        self.sink = sink
        self.relays = False   # True once its queue process delivers to the sink
        self.queue_ok = False # the build takes [queue] smarthost
        self.dir = base / "authrelay"
        self.dir.mkdir()
        os.chmod(self.dir, 0o755)
        self.spool = self.dir / "spool"
        self.cert, self.key = cert, key
        self.slapd = slapd
        self.hashes = hashes
        self.port_plain, self.port_tls = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.auth_label = "?"
        self.cache = False

    def config(self, source: str, cache: bool | None = None, queue: str | None = None) -> str:
        """cache None: no [protection] section (a build without the cache).
        queue: the [queue] smarthost (a build with the queue process), or None."""
        prot = ""
        # Whenever the build takes a smarthost, mail goes to the sink only:
        # never to MX hosts looked up in DNS.
        if queue is None and getattr(self, "queue_ok", False):
            queue = f"[{HOST}]:{self.sink.port}"
        if queue is not None:
            prot += f"[queue]\nsmarthost = {queue}\ntls = none\n\n"
        if cache is not None:
            # cache_size 0 turns the cache off; 20000 holds all 10,000 users.
            # The per-user sending limits (500 messages an hour by default)
            # are off: the peer has none, and the bench reuses its users.
            prot += (f"[protection]\ncache_size = {20000 if cache else 0}\n"
                     "messages_per_hour = 0\nrecipients_per_hour = 0\n")
        if source == "ldap":
            src = f"""\
[ldap bench]
uri = {self.slapd.uri}
base = {PEOPLE}
method = bind
"""
        else:
            src = "[users-file]\npath = users\n"
        return f"""\
# written by bench/bench.py
[server]
hostname = authrelay.bench.test
user = {RUN_AS}
spool_dir = spool
log_level = info

[tls]
cert_file = {self.cert}
key_file = {self.key}

{src}
{prot}
[limits]
max_connections = 30000
max_connections_per_ip = 30000
auth_failure_delay_ms = 0

[listener plain]
address = {HOST}:{self.port_plain}
role = submission
tls = none
allow_plaintext_auth = yes

[listener starttls]
address = {HOST}:{self.port_tls}
role = submission
tls = required
"""

    def setup(self):
        self.spool.mkdir(exist_ok=True)
        users = self.dir / "users"
        users.write_text("".join(f"user{i:05d}:{h}\n" for i, h in enumerate(self.hashes)))
        os.chmod(users, 0o644)
        # The LDAP source when this build has it; the users file otherwise.
        cfg = self.dir / "authrelay.conf"
        cfg.write_text(self.config("ldap"))
        r = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        self.source = "ldap" if r.returncode == 0 else "file"
        if self.source == "ldap":
            self.start()
            ok = self.probe_auth()
            self.stop()
            if not ok:
                log("authrelay accepts [ldap] but AUTH through it failed: using the users file")
                self.source = "file"
        # The auth cache ([protection] cache_size) when this build has it: a
        # build that knows the key refuses a bad value for it (one that keeps
        # unknown sections for later modules would take anything).
        cfg.write_text(self.config(self.source, cache=False).replace(
            "cache_size = 0", "cache_size = not-a-number"))
        bad = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                             capture_output=True, text=True, timeout=30)
        cfg.write_text(self.config(self.source, cache=False))
        good = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        self.has_cache = bad.returncode != 0 and good.returncode == 0
        cfg.write_text(self.config(self.source, cache=False if self.has_cache else None))
        r = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("authrelay check-config:\n" + r.stdout + r.stderr)
        # The queue process, where this build has one: then authrelay relays
        # to the same sink as the peer; else its spool is emptied after runs.
        cache_arg = False if self.has_cache else None
        cfg.write_text(self.config(self.source, cache_arg, queue="[not a host"))
        bad = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                             capture_output=True, text=True, timeout=30)
        cfg.write_text(self.config(self.source, cache_arg, queue=f"[{HOST}]:{self.sink.port}"))
        good = subprocess.run([str(AUTHRELAY), "check-config", "-c", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        self.queue_ok = good.returncode == 0
        if bad.returncode != 0 and good.returncode == 0:
            self.relays = True
            self.start()
            r = subprocess.run([str(SMTP_LOAD), "-a", f"{HOST}:{self.port_plain}", "-n", "1",
                                "-t", "10", "-r", "1-1"], capture_output=True, text=True,
                               timeout=60)
            try:
                wait_until(lambda: self.spool_files() == 0, 20, "authrelay's queue to deliver")
            except RuntimeError:
                self.relays = False
            self.stop()
            if r.returncode != 0:
                self.relays = False
        cfg.write_text(self.config(self.source, cache_arg))
        self.auth_label = ("[ldap] method = bind" if self.source == "ldap"
                           else "users file {SSHA} (LDAP source not in this build)")
        log(f"authrelay auth: {self.auth_label}; auth cache: "
            f"{'yes' if self.has_cache else 'not in this build'}; "
            f"{'relays to the sink' if self.relays else 'spool only (no queue process)'}")

    def probe_auth(self) -> bool:
        # AUTH only (-m 0): nothing is queued by a probe.
        r = subprocess.run([str(SMTP_LOAD), "-a", f"{HOST}:{self.port_plain}", "-n", "1",
                            "-t", "10", "-r", "1-1", "-m", "0"], capture_output=True, text=True,
                           timeout=60)
        return r.returncode == 0

    def start(self):
        self.log = open(self.dir / "authrelay.log", "a")
        self.proc = subprocess.Popen([str(AUTHRELAY), "-f", "-c", str(self.dir / "authrelay.conf")],
                                     stdout=self.log, stderr=self.log)
        started.append(("authrelay", self.proc.pid))
        wait_until(lambda: port_greets(self.port_plain) and port_greets(self.port_tls), 30,
                   "authrelay listeners")

    def stop(self):
        if self.proc is not None:
            stop_pid("authrelay", self.proc.pid)
            started.remove(("authrelay", self.proc.pid))
            self.proc = None

    def port(self, tls: str) -> int:
        return self.port_tls if tls == "starttls" else self.port_plain

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc else []

    def set_cache(self, on: bool):
        """Restart with the cache on or off, where this build has one."""
        want = on and self.has_cache
        if want == self.cache:
            return
        self.stop()
        (self.dir / "authrelay.conf").write_text(self.config(self.source, cache=want))
        self.start()
        self.cache = want

    def spool_files(self) -> int:
        n = 0
        for sub in ("incoming", "tmp"):
            d = self.spool / sub
            if d.is_dir():
                n += sum(1 for _ in os.scandir(d))
        return n

    def after_run(self):
        if self.relays:
            return
        # Without a queue process, accepted mail piles up in the spool:
        # empty it so every run starts from the same directory size.
        for sub in ("incoming", "tmp"):
            d = self.spool / sub
            if d.is_dir():
                for f in os.scandir(d):
                    try:
                        os.unlink(f.path)
                    except OSError:
                        pass

    def wait_idle(self):
        """Let the queue deliver what was accepted before the next run."""
        if not self.relays:
            return
        try:
            wait_until(lambda: self.spool_files() == 0, 120, "authrelay's queue to drain",
                       interval=0.2)
        except RuntimeError as e:
            log(f"{e}: {self.spool_files()} files left")


class Peer:
    """Postfix smtpd + Dovecot SASL (passdb ldap, auth_bind = yes) relaying to smtp-sink."""
    name = "peer"

    def __init__(self, base: Path, cert: Path, key: Path, slapd: Slapd, sink: Sink):
        self.dir = base / "peer"
        self.dir.mkdir()
        os.chmod(self.dir, 0o755)
        self.cert, self.key, self.slapd, self.sink = cert, key, slapd, sink
        self.port_plain, self.port_tls = free_port(), free_port()
        self.pf = self.dir / "postfix"
        self.queue = self.dir / "queue"
        self.dv = self.dir / "dovecot"
        self.dv_pid: int | None = None
        self.pf_pid: int | None = None
        self.cache = False
        self.auth_label = "Dovecot passdb ldap auth_bind"

    def setup(self):
        for d in (self.pf, self.queue, self.dv, self.dir / "data", self.dv / "run",
                  self.dv / "state"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "data", 0o755)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        self.auth_sock = self.dv / "run" / "auth-postfix"
        (self.dv / "ldap.conf.ext").write_text(f"""\
hosts = {HOST}:{self.slapd.port}
ldap_version = 3
base = {PEOPLE}
scope = onelevel
auth_bind = yes
pass_filter = (&(objectClass=person)(uid=%u))
pass_attrs = uid=user
""")
        self.write_dovecot(cache=False)
        idle_max = max(PEER_IDLE + 100, 1000)
        (self.pf / "main.cf").write_text(f"""\
# written by bench/bench.py
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = peer.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.254/32
relayhost = [{HOST}]:{self.sink.port}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {self.dir}/maillog
maillog_file_prefixes = {self.dir}
smtpd_banner = $myhostname ESMTP
smtpd_peername_lookup = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.auth_sock}
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_auth_rate_limit = 0
default_process_limit = {idle_max}
smtpd_tls_chain_files = {self.key}, {self.cert}
smtpd_tls_session_cache_database = btree:{self.dir}/data/smtpd_scache
smtpd_tls_session_cache_timeout = 3600s
smtpd_tls_loglevel = 0
smtp_tls_security_level = none
default_destination_concurrency_limit = 50
""")
        (self.pf / "master.cf").write_text(f"""\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{HOST}:{self.port_plain} inet n - n - {idle_max} smtpd -o smtpd_tls_security_level=none
{HOST}:{self.port_tls} inet n - n - {idle_max} smtpd -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def write_dovecot(self, cache: bool):
        self.dv_conf = self.dv / "dovecot.conf"
        self.dv_conf.write_text(f"""\
# written by bench/bench.py: Dovecot as Postfix's SASL server only
base_dir = {self.dv}/run
state_dir = {self.dv}/state
instance_name = bench-{os.getpid()}
protocols =
log_path = {self.dv}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = {"10M" if cache else "0"}
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = ldap
  args = {self.dv}/ldap.conf.ext
}}
userdb {{
  driver = static
  args = uid={RUN_AS} gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {self.auth_sock} {{
    mode = 0666
  }}
  client_limit = {max(PEER_IDLE + 100, 1000)}
}}
service anvil {{
  client_limit = {max(PEER_IDLE + 200, 1000)}
}}
""")

    def start_dovecot(self):
        # It forks into the background: no pipes, or run() would wait for them.
        with open(self.dv / "start.log", "a") as err:
            subprocess.run(["dovecot", "-c", str(self.dv_conf)], check=True,
                           stdout=subprocess.DEVNULL, stderr=err, timeout=30)
        self.dv_pid = wait_until(lambda: read_pid(self.dv / "run" / "master.pid"), 30,
                                 "dovecot pid")
        started.append(("dovecot", self.dv_pid))
        wait_until(lambda: self.auth_sock.exists(), 30, "dovecot auth socket")

    def stop_dovecot(self):
        if self.dv_pid is not None:
            stop_pid("dovecot", self.dv_pid)
            started.remove(("dovecot", self.dv_pid))
            self.dv_pid = None
            wait_until(lambda: not (self.dv / "run" / "master.pid").exists() or
                       not pid_alive(read_pid(self.dv / "run" / "master.pid") or 0), 30,
                       "dovecot stop")

    def start(self):
        self.start_dovecot()
        with open(self.dir / "start.log", "a") as err:
            r = subprocess.run(["postfix", "-c", str(self.pf), "start"], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: " + (self.dir / "start.log").read_text())
        self.pf_pid = wait_until(lambda: read_pid(self.queue / "pid" / "master.pid"), 30,
                                 "postfix master.pid")
        started.append(("postfix", self.pf_pid))
        wait_until(lambda: port_greets(self.port_plain) and port_greets(self.port_tls), 60,
                   "postfix listeners")

    def stop(self):
        if self.pf_pid is not None:
            stop_pid("postfix", self.pf_pid)
            started.remove(("postfix", self.pf_pid))
            self.pf_pid = None
        self.stop_dovecot()

    def port(self, tls: str) -> int:
        return self.port_tls if tls == "starttls" else self.port_plain

    def pids(self) -> list[int]:
        out = []
        if self.pf_pid:
            out += tree(self.pf_pid)
        if self.dv_pid:
            out += tree(self.dv_pid)
        return out

    def set_cache(self, on: bool):
        if on != self.cache:
            self.stop_dovecot()
            self.write_dovecot(cache=on)
            self.start_dovecot()
            self.cache = on

    def queue_files(self) -> int:
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(self.queue / sub):
                n += len(files)
        return n

    def after_run(self):
        pass

    def wait_idle(self):
        """Let Postfix deliver what it accepted before the next run starts."""
        try:
            wait_until(lambda: self.queue_files() == 0, 120, "the peer's queue to drain",
                       interval=0.2)
        except RuntimeError as e:
            log(f"{e}: {self.queue_files()} files left")


# ------------------------------------------------------------------ measuring

ROLES: dict[int, str] = {}   # pid -> "slapd" / "sink", for breakdown()
DISK_DEV: str | None = None  # the block device of the run's directory


def smtp_load(port: int, tls: str, conc: int, seconds: float, extra: list[str] | None = None,
              messages: int = 1, sessions: int = 0, sut=None) -> dict:
    """sut: a function giving the pids of the system under test; with it the
    result has machine_cpu, where the whole machine's CPU went during the run."""
    cmd = [str(SMTP_LOAD), "-a", f"{HOST}:{port}", "-c", str(conc), "-n", str(sessions),
           "-t", str(seconds), "-T", tls, "-M", "PLAIN", "-m", str(messages), "-s", "4096",
           "-R", "1", "-r", f"0-{N_USERS - 1}"] + (extra or [])
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sut_pids = set(sut()) if sut is not None else set()
    snap0 = machine_ticks() if sut is not None else None
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    snap1 = machine_ticks() if sut is not None else None
    if sut is not None:
        # Processes the system started during the run (Postfix's smtpd) are its own.
        sut_pids |= set(sut())
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"smtp_load gave no result: {r.stderr}")
    res["cmd"] = " ".join(cmd)
    if sut is not None:
        gen = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        res["machine_cpu"] = breakdown(snap0, snap1, list(sut_pids), gen, ROLES)
    return res


def median_or_none(xs):
    return median(xs) if xs else None


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[dict]) -> dict:
    return {
        "sessions_per_s": median([r["sessions_per_s"] for r in runs]),
        "messages_per_s": median([r["messages_per_s"] for r in runs]),
        "auth_p50": median([r["auth_ms"]["p50"] for r in runs]),
        "auth_p90": median([r["auth_ms"]["p90"] for r in runs]),
        "auth_p99": median([r["auth_ms"]["p99"] for r in runs]),
        "auth_max": median([r["auth_ms"]["max"] for r in runs]),
        "session_p50": median([r["session_ms"]["p50"] for r in runs]),
        "session_p90": median([r["session_ms"]["p90"] for r in runs]),
        "session_p99": median([r["session_ms"]["p99"] for r in runs]),
        "session_max": median([r["session_ms"]["max"] for r in runs]),
        "failed": sum(r["sessions_failed"] for r in runs),
        "sessions": sum(r["sessions_ok"] for r in runs),
        "tls_resumed": sum(r["tls_resumed"] for r in runs),
        "tls_handshakes": sum(r["tls_handshakes"] for r in runs),
        "failures": {k: sum(r["failures"][k] for r in runs) for k in runs[0]["failures"]},
        "cpu_s": median([r.get("cpu_s", 0) for r in runs]),
        # What the disk did per message, from the run's start until the queue
        # had drained (medians; None where the counters are not available).
        **{f"{k}_per_msg": median_or_none([r["disk"][k] / r["messages"] for r in runs
                                           if r.get("disk") and r["disk"].get(k) is not None
                                           and r.get("messages")])
           for k in ("flushes", "commits", "writes")},
        # Microseconds of the machine's CPU per session, by role (medians).
        "machine_us": {k: median([r["machine_cpu"][k] * 1e6 / max(r["sessions_ok"], 1)
                                  for r in runs if "machine_cpu" in r])
                       for k in ("sut", "loadgen", "slapd", "sink", "kernel", "other",
                                 "idle_s", "total_s")},
        "runs": len(runs),
    }


def run_point(systems, tls: str, conc: int, cache: bool, messages: int = 1) -> dict:
    out = {}
    runs = {s.name: [] for s in systems}
    hz = os.sysconf("SC_CLK_TCK")
    for i in range(RUNS):
        for s in systems:   # interleaved: A P A P A P, so drift hits both alike
            pids = s.pids()
            t0 = cpu_ticks(pids)
            d0 = disk_counters(DISK_DEV)
            r = smtp_load(s.port(tls), tls, conc, SECONDS, messages=messages, sut=s.pids)
            r["cpu_s"] = (cpu_ticks(s.pids()) - t0) / hz
            runs[s.name].append(r)
            s.after_run()
            s.wait_idle()
            # Accepting and relaying: both systems' whole disk cost.
            r["disk"] = disk_delta(d0, disk_counters(DISK_DEV))
            if r["sessions_failed"]:
                log(f"  {s.name} run {i + 1}: {r['sessions_failed']} failed: {r['failures']}")
    for s in systems:
        out[s.name] = summarize(runs[s.name])
        out[s.name]["raw"] = runs[s.name]
    a, p = out["authrelay"], out["peer"]
    ratio = a["sessions_per_s"] / p["sessions_per_s"] if p["sessions_per_s"] else float("nan")
    log(f"tls={tls} cache={'on' if cache else 'off'} c={conc} m={messages}: authrelay "
        f"{a['sessions_per_s']:.0f}/s peer {p['sessions_per_s']:.0f}/s ratio {ratio:.2f}; "
        f"messages/s {a['messages_per_s']:.0f} / {p['messages_per_s']:.0f}")
    return out


def profile(system, tls: str, conc: int, messages: int):
    """perf record of system's processes during one run; text reports in OUT."""
    name = f"profile-{tls}-c{conc}-m{messages}"
    data = OUT / f"{name}.data"
    pids = ",".join(str(p) for p in system.pids())
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g",
                             "-o", str(data), "-p", pids],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(("perf", perf.pid))
    time.sleep(0.5)
    r = smtp_load(system.port(tls), tls, conc, SECONDS, messages=messages)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=60)
    started.remove(("perf", perf.pid))
    system.after_run()
    system.wait_idle()
    out = [f"# {r['cmd']}", f"# {r['sessions_per_s']:.0f} sessions/s, "
           f"{r['messages_per_s']:.0f} messages/s, failed {r['sessions_failed']}", ""]
    # Which process (smtpd workers, auth, queue) is named in the first report.
    names = {}
    for pid in system.pids():
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            pass
    out += ["## processes"] + [f"{p} {n}" for p, n in names.items()] + [""]
    for sort in ("pid", "comm,dso", "sym"):
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                              "-g", "none", "--percent-limit", "0.5", "--sort", sort],
                             capture_output=True, text=True, timeout=300)
        out += [f"## perf report --sort {sort}"] + [l for l in rep.stdout.splitlines()
                                                    if l and not l.startswith("#")][:60] + [""]
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                          "--percent-limit", "2", "--sort", "sym"],
                         capture_output=True, text=True, timeout=300)
    out += ["## call graphs of symbols over 2 %"] + [l for l in rep.stdout.splitlines()
                                                     if not l.startswith("#")][:500]
    (OUT / f"{name}.txt").write_text("\n".join(out) + "\n")
    data.unlink(missing_ok=True)
    log(f"profile {name}: {r['sessions_per_s']:.0f} sessions/s; {OUT / (name + '.txt')}")


def fsync_rate(directory: Path, seconds: float = 2.0) -> float:
    """fsync()s per second of a 4 KiB rewrite on the spool's file system."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    data = b"x" * 4096
    n, t0 = 0, time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / (time.monotonic() - t0)


def block_dev(path: Path) -> str | None:
    """The kernel's name of the block device holding path ("loop0", "sda2")."""
    st = os.stat(path)
    try:
        link = os.readlink(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    except OSError:
        return None
    return os.path.basename(link)


def disk_counters(dev: str | None) -> dict | None:
    """Write requests and cache flushes the device completed, and journal
    commits of its jbd2 journal (ext4), so far."""
    if dev is None:
        return None
    try:
        f = open(f"/sys/class/block/{dev}/stat").read().split()
    except OSError:
        return None
    out = {"writes": int(f[4]), "flushes": int(f[15]) if len(f) > 15 else None,
           "commits": None}
    try:
        out["commits"] = int(open(f"/proc/fs/jbd2/{dev}-8/info").read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def disk_delta(d0: dict | None, d1: dict | None) -> dict | None:
    if d0 is None or d1 is None:
        return None
    return {k: (d1[k] - d0[k]) if d0[k] is not None and d1[k] is not None else None
            for k in d0}


def loop_fs() -> dict | None:
    """A journaled ext4 on a loop device for the run's directory (see
    BENCH_DIR): {"mnt", "dev", "img"}, or None when it cannot be made."""
    if (os.environ.get("BENCH_DIR") or os.environ.get("BENCH_LOOP") == "0" or
            os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4")):
        return None
    img = Path(tempfile.gettempdir()) / f"authrelay-bench-{os.getpid()}.img"
    # A short mount point: UNIX socket paths below it must stay under 108 bytes.
    mnt = Path(tempfile.mkdtemp(prefix="arb-", dir="/tmp"))
    dev = None
    try:
        with open(img, "wb") as f:
            f.truncate(8 << 30)
        dev = subprocess.run(["losetup", "--direct-io=on", "--show", "-f", str(img)],
                             capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
        subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
        os.chmod(mnt, 0o755)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"no loop device ({e}); using {tempfile.gettempdir()}")
        loop_fs_remove({"mnt": mnt, "dev": dev, "img": img, "mounted": False})
        return None
    log(f"journaled ext4 on {dev} ({img}, --direct-io=on) mounted on {mnt}")
    return {"mnt": mnt, "dev": dev, "img": img, "mounted": True}


def loop_fs_remove(lf: dict):
    if lf.get("mounted"):
        # Processes stopped a moment ago may still hold files there.
        try:
            wait_until(lambda: subprocess.run(["umount", str(lf["mnt"])],
                                              capture_output=True).returncode == 0,
                       30, f"umount {lf['mnt']}", interval=0.2)
        except RuntimeError as e:
            log(f"{e}: detaching it lazily")
            subprocess.run(["umount", "-l", str(lf["mnt"])], capture_output=True)
    if lf.get("dev"):
        subprocess.run(["losetup", "-d", lf["dev"]], capture_output=True)
    for p in (lf["img"],):
        try:
            os.unlink(p)
        except OSError:
            pass
    try:
        os.rmdir(lf["mnt"])
    except OSError:
        pass


def ldap_load(slapd: Slapd, threads: int, seconds: float, bind_only: bool) -> dict:
    cmd = [str(LDAP_LOAD), "-H", slapd.uri, "-b", PEOPLE, "-c", str(threads), "-t", str(seconds),
           "-f", "(&(objectClass=person)(uid=user%05lu))", "-p", "pw-%05lu",
           "-r", f"0-{N_USERS - 1}"]
    if bind_only:
        cmd += ["--bind-only", "-d", f"uid=user%05lu,{PEOPLE}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["cmd"] = " ".join(cmd)
    return res


def idle_memory(system, n: int) -> dict:
    pids = system.pids()
    base_rss, base_pss = memory_kib(pids)
    cmd = [str(SMTP_LOAD), "-a", f"{HOST}:{system.port('none')}", "--idle", str(n),
           "-c", "200", "-t", "300", "--hold", "600"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(("smtp_load --idle", p.pid))
    try:
        line = p.stdout.readline()
        info = json.loads(line) if line else {"idle_open": 0, "failed": n}
        time.sleep(2)   # let the last accepted sessions settle
        pids = system.pids()
        rss, pss = memory_kib(pids)
    finally:
        stop_pid("smtp_load --idle", p.pid)
        started.remove(("smtp_load --idle", p.pid))
        p.communicate(timeout=30)
    opened = info.get("idle_open", 0)
    res = {
        "requested": n, "open": opened, "failed": info.get("failed"),
        "open_s": info.get("open_s"), "processes": len(pids),
        "base_rss_kib": base_rss, "base_pss_kib": base_pss,
        "rss_kib": rss, "pss_kib": pss,
        "rss_per_conn_kib": (rss - base_rss) / opened if opened else None,
        "pss_per_conn_kib": (pss - base_pss) / opened if opened else None,
        "cmd": " ".join(cmd),
    }
    log(f"idle {system.name}: {opened}/{n} open, RSS {rss / 1024:.0f} MiB "
        f"(+{res['rss_per_conn_kib'] or 0:.1f} KiB/conn), PSS {pss / 1024:.0f} MiB "
        f"(+{res['pss_per_conn_kib'] or 0:.1f} KiB/conn), {len(pids)} processes")
    return res


# ------------------------------------------------------------------ report

def machine(base: Path | None = None) -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  shell=True).stdout.strip().splitlines()[0]
        except Exception:
            return "?"
    fs = "?"
    try:
        fs = subprocess.run(["df", "-T", str(base or os.environ.get("BENCH_DIR") or
                                         tempfile.gettempdir())],
                            capture_output=True, text=True, timeout=10).stdout.splitlines()[1]
        fs = " ".join(fs.split()[:2])
    except Exception:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "spool_fs": fs,
        "disk_dev": block_dev(base) if base else None,
        "jbd2": bool(base and block_dev(base) and
                     os.path.exists(f"/proc/fs/jbd2/{block_dev(base)}-8")),
        "cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "os": ver("grep PRETTY_NAME /etc/os-release | cut -d= -f2"),
        "postfix": ver("postconf -d -h mail_version"),
        "dovecot": ver("dovecot --version"),
        "slapd": ver("dpkg-query -W -f='${Version}' slapd"),
        "openssl": ver("openssl version"),
        "authrelay_bin": str(AUTHRELAY),
        "authrelay_commit": os.environ.get("BENCH_AUTHRELAY_LABEL") or
        ver(f"git -C {REPO} rev-parse --short HEAD") +
        (" (+ uncommitted changes)" if subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", "HEAD"]).returncode else ""),
    }


def fmt(x, digits=0):
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def cpu_ms(x: dict, seconds: float, per: str = "sessions_per_s") -> float | None:
    """CPU milliseconds per session (or message) of a system's own processes."""
    n = x[per] * seconds
    return x["cpu_s"] * 1000 / n if n else None


def machine_table(results: dict) -> list[str]:
    """Where the whole machine's CPU went per session, and what that leaves:
    'ceiling' is the sessions/s the machine would give if authrelay's own
    processes cost nothing and everything else (the load generator, slapd,
    the sink, the kernel's threads) cost what it did per session in this run;
    'best ratio' is that ceiling over the peer's measured rate, the highest
    ratio this machine can show at that point."""
    cores = results["machine"].get("cores") or os.cpu_count() or 1
    rows = []
    for kind in ("points", "auth_only"):
        for pt in results.get(kind, []):
            a, p = pt["authrelay"], pt["peer"]
            ma, mp = a.get("machine_us"), p.get("machine_us")
            if not ma or not mp or ma.get("total_s") is None:
                continue
            rest = sum(ma[k] for k in ("loadgen", "slapd", "sink", "kernel", "other"))
            ceiling = cores * 1e6 / rest if rest else None
            best = ceiling / p["sessions_per_s"] if ceiling and p["sessions_per_s"] else None
            what = "AUTH only" if kind == "auth_only" else \
                ("cache on" if pt["cache"] else "cache off")

            def cells(m):
                idle = 100 * m["idle_s"] / m["total_s"] if m["total_s"] else 0
                return (f"{fmt(m['sut'])} | {fmt(m['loadgen'])} | {fmt(m['slapd'])} | "
                        f"{fmt(m['sink'])} | {fmt(m['kernel'])} | {fmt(m['other'])} | "
                        f"{idle:.0f} %")
            rows.append(f"| {pt['tls']} | {what} | {pt['concurrency']} | authrelay | {cells(ma)} | "
                        f"{fmt(ceiling)} | {fmt(best, 2)} |")
            rows.append(f"| | | | peer | {cells(mp)} | | |")
    if not rows:
        return []
    return ["", "Where the machine's CPU went, microseconds per session (medians; the system "
            "under test, the load generator, slapd, smtp-sink, kernel threads such as jbd2 and "
            "the loop device's workers, everything else; idle share of the run). Ceiling: "
            "sessions/s if authrelay's own processes cost nothing and the rest cost what it did; "
            "best ratio: that ceiling over the peer's rate, the most this machine can show:", "",
            "| TLS | point | conc | system | system us | load gen us | slapd us | sink us | "
            "kernel us | other us | idle | ceiling sess/s | best ratio |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"] + rows


FSYNC_CEILING = "disk fsyncs (4 KiB rewrite, 1 thread)"


def fsync_table(results: dict) -> list[str]:
    """Acceptance against the disk: messages/s over the single-thread fsync
    rate of the same file system (the goal: >= 2x at c >= 16, every 250
    durable), and what the disk did per message, both systems."""
    rate = results["ceilings"].get(FSYNC_CEILING, {}).get("median")
    rows = []
    for pt in results["acceptance"]:
        a, p = pt["authrelay"], pt["peer"]
        ra = a["messages_per_s"] / rate if rate else None
        rp = p["messages_per_s"] / rate if rate else None
        goal = "n/a" if ra is None or pt["concurrency"] < 16 else (
            "**yes**" if ra >= 2 else "no")
        rows.append(f"| {pt['concurrency']} | {fmt(rate)} | {fmt(ra, 2)} / {fmt(rp, 2)} | {goal} | "
                    f"{fmt(a.get('flushes_per_msg'), 2)} / {fmt(p.get('flushes_per_msg'), 2)} | "
                    f"{fmt(a.get('commits_per_msg'), 2)} / {fmt(p.get('commits_per_msg'), 2)} | "
                    f"{fmt(a.get('writes_per_msg'), 1)} / {fmt(p.get('writes_per_msg'), 1)} |")
    if not rows:
        return []
    dev = results["machine"].get("disk_dev") or "?"
    return ["", f"Acceptance against the disk ({dev}): messages/s over the single-thread fsync "
            "rate of the same file system (the goal: at least 2x at c >= 16, with every 250 "
            "after the message and its directory entry are durable), and per accepted message "
            "the device's cache flushes (what an fsync costs the disk), the file system's "
            "journal commits and its write requests, from the run's start until its queue had "
            "relayed everything (authrelay / peer):", "",
            "| conc | fsyncs/s (1 thread) | msg/s per fsync/s a / p | >= 2x? | "
            "flushes/msg a / p | journal commits/msg a / p | writes/msg a / p |",
            "|---:|---:|---:|---|---:|---:|---:|"] + rows


def report(results: dict) -> str:
    m = results["machine"]
    sec = results["seconds"]
    lines = [f"Run {m['date']} on {m['cores']} x {m['cpu']}, {m['memory_gib']} GiB, "
             f"{m['os']}, kernel {m['kernel']}; Postfix {m['postfix']}, {m['dovecot']}, "
             f"slapd {m['slapd']}, {m['openssl']}; authrelay {m['authrelay_commit']}; "
             f"spool and queue on {m.get('spool_fs', '?')}.",
             f"{results['runs']} run(s) of {results['seconds']} s per point, medians; "
             "load: AUTH PLAIN + 1 message of 4 KiB to 1 recipient per session, "
             "users drawn from 10,000, no wrong passwords.",
             f"authrelay auth: {results['authrelay_auth']}. Peer: Postfix smtpd + Dovecot "
             "passdb ldap auth_bind=yes, relaying to smtp-sink. authrelay: " +
             ("relaying to the same smtp-sink through its queue process (each run waits for "
              "both queues to drain)." if results.get("authrelay_relays") else
              "accepted into its spool (fsynced), not relayed (no queue process in this build)."),
             ""]
    lines.append("| TLS | cache | conc | authrelay sess/s | peer sess/s | ratio | "
                 "authrelay AUTH p50/p90/p99/max ms | peer AUTH p50/p90/p99/max ms | "
                 "authrelay session p50/p99 ms | peer session p50/p99 ms | "
                 "CPU ms/session a / p | failed a / p |")
    lines.append("|---|---|---:|---:|---:|---:|---|---|---|---|---|---|")
    for pt in results["points"]:
        a, p = pt["authrelay"], pt["peer"]
        ratio = a["sessions_per_s"] / p["sessions_per_s"] if p["sessions_per_s"] else None
        cache = "on" if pt["cache"] else "off"
        if pt["cache"] and not pt.get("authrelay_cache"):
            cache = "peer on (authrelay has none)"
        lines.append(
            f"| {pt['tls']} | {cache} | {pt['concurrency']} | {fmt(a['sessions_per_s'])} | "
            f"{fmt(p['sessions_per_s'])} | {fmt(ratio, 2)} | "
            f"{fmt(a['auth_p50'], 2)}/{fmt(a['auth_p90'], 2)}/{fmt(a['auth_p99'], 2)}/"
            f"{fmt(a['auth_max'], 1)} | "
            f"{fmt(p['auth_p50'], 2)}/{fmt(p['auth_p90'], 2)}/{fmt(p['auth_p99'], 2)}/"
            f"{fmt(p['auth_max'], 1)} | "
            f"{fmt(a['session_p50'], 2)}/{fmt(a['session_p99'], 2)} | "
            f"{fmt(p['session_p50'], 2)}/{fmt(p['session_p99'], 2)} | "
            f"{fmt(cpu_ms(a, sec), 2)} / {fmt(cpu_ms(p, sec), 2)} | "
            f"{a['failed']} / {p['failed']} |")
    if results.get("auth_only"):
        lines += ["", "AUTH only (no message: greeting, EHLO, [STARTTLS, EHLO], AUTH PLAIN, QUIT):",
                  "", "| TLS | conc | authrelay sess/s | peer sess/s | ratio | "
                  "authrelay AUTH p50/p99 ms | peer AUTH p50/p99 ms | CPU ms/session a / p | "
                  "failed a / p |", "|---|---:|---:|---:|---:|---|---|---|---|"]
        for pt in results["auth_only"]:
            a, p = pt["authrelay"], pt["peer"]
            ratio = a["sessions_per_s"] / p["sessions_per_s"] if p["sessions_per_s"] else None
            lines.append(f"| {pt['tls']} | {pt['concurrency']} | {fmt(a['sessions_per_s'])} | "
                         f"{fmt(p['sessions_per_s'])} | {fmt(ratio, 2)} | "
                         f"{fmt(a['auth_p50'], 2)}/{fmt(a['auth_p99'], 2)} | "
                         f"{fmt(p['auth_p50'], 2)}/{fmt(p['auth_p99'], 2)} | "
                         f"{fmt(cpu_ms(a, sec), 2)} / {fmt(cpu_ms(p, sec), 2)} | "
                         f"{a['failed']} / {p['failed']} |")
    if results.get("acceptance"):
        lines += ["", "Message acceptance (plaintext AUTH, 20 messages of 4 KiB per session):",
                  "", "| conc | authrelay msg/s | peer msg/s | ratio | authrelay session p50/p99 ms "
                  "| peer session p50/p99 ms | CPU ms/message a / p | failed a / p |",
                  "|---:|---:|---:|---:|---|---|---|---|"]
        for pt in results["acceptance"]:
            a, p = pt["authrelay"], pt["peer"]
            ratio = a["messages_per_s"] / p["messages_per_s"] if p["messages_per_s"] else None
            lines.append(f"| {pt['concurrency']} | {fmt(a['messages_per_s'])} | "
                         f"{fmt(p['messages_per_s'])} | {fmt(ratio, 2)} | "
                         f"{fmt(a['session_p50'], 1)}/{fmt(a['session_p99'], 1)} | "
                         f"{fmt(p['session_p50'], 1)}/{fmt(p['session_p99'], 1)} | "
                         f"{fmt(cpu_ms(a, sec, 'messages_per_s'), 2)} / "
                         f"{fmt(cpu_ms(p, sec, 'messages_per_s'), 2)} | "
                         f"{a['failed']} / {p['failed']} |")
        lines += fsync_table(results)
    lines += machine_table(results)
    c = results["ceilings"]
    lines += ["", "Ceilings (same run, same machine):", "",
              "| what | rate/s (median) |", "|---|---:|"]
    for k, v in c.items():
        lines.append(f"| {k} | {fmt(v['median'])} |")
    lines += ["", "Idle connections (greeting read, then nothing; memory of the whole system: "
              "authrelay master + workers + auth; peer Postfix master + children + Dovecot):", "",
              "| system | open / asked | processes | RSS total MiB | RSS per conn KiB | "
              "PSS total MiB | PSS per conn KiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in results["idle"].items():
        lines.append(f"| {name} | {v['open']:,} / {v['requested']:,} | {v['processes']} | "
                     f"{fmt(v['rss_kib'] / 1024)} | {fmt(v['rss_per_conn_kib'], 1)} | "
                     f"{fmt(v['pss_kib'] / 1024)} | {fmt(v['pss_per_conn_kib'], 1)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main

def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Render the table again from a results.json.
        print(report(json.loads(Path(sys.argv[2]).read_text())), end="")
        return 0
    for b in (AUTHRELAY, SMTP_LOAD, LDAP_LOAD):
        if not os.access(b, os.X_OK):
            print(f"bench: {b} missing (bench/run.sh builds it)", file=sys.stderr)
            return 2
    global DISK_DEV
    lf = loop_fs()
    base = Path(tempfile.mkdtemp(prefix="authrelay-bench-", dir=lf["mnt"] if lf else
                                 os.environ.get("BENCH_DIR")))
    os.chmod(base, 0o755)
    DISK_DEV = block_dev(base)
    log(f"work directory {base} (device {DISK_DEV})")
    t_start = time.monotonic()
    results: dict = {"machine": machine(base), "runs": RUNS, "seconds": SECONDS,
                     "quick": QUICK, "points": [], "auth_only": [], "acceptance": [],
                     "ceilings": {},
                     "idle": {}}

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cert, key = make_cert(base)
        shutil.chown(key, group="nogroup")
        hashes = [ssha(f"pw-{i:05d}") for i in range(N_USERS)]
        slapd = Slapd(base)
        slapd.setup(hashes)
        slapd.start()
        sink = Sink(base)
        sink.start()
        ar = Authrelay(base, cert, key, slapd, hashes, sink)
        ar.setup()
        ar.start()
        peer = Peer(base, cert, key, slapd, sink)
        peer.setup()
        peer.start()
        results["authrelay_auth"] = ar.auth_label
        results["authrelay_relays"] = ar.relays
        systems = [ar, peer]

        # Warm both up (TLS tickets, LDAP connections, page cache).
        for s in systems:
            for tls in ("none", "starttls"):
                r = smtp_load(s.port(tls), tls, 4, 1.0)
                if r["sessions_ok"] == 0:
                    raise RuntimeError(f"{s.name} {tls}: no session succeeded: {r}")
                s.after_run()
                s.wait_idle()

        if os.environ.get("BENCH_SERVE"):
            OUT.mkdir(parents=True, exist_ok=True)
            info = {"authrelay": {"plain": ar.port_plain, "starttls": ar.port_tls,
                                  "pids": ar.pids(), "dir": str(ar.dir)},
                    "peer": {"plain": peer.port_plain, "starttls": peer.port_tls,
                             "pids": peer.pids()},
                    "slapd": {"uri": slapd.uri, "pid": slapd.pid}, "sink": sink.port}
            (OUT / "serve.json").write_text(json.dumps(info, indent=1))
            log(f"serving for {os.environ['BENCH_SERVE']} s: {OUT / 'serve.json'}")
            time.sleep(float(os.environ["BENCH_SERVE"]))
            return 0

        if os.environ.get("BENCH_PROFILE") == "1":
            OUT.mkdir(parents=True, exist_ok=True)
            peer.stop()
            for tls in ("none", "starttls"):
                profile(ar, tls, 64, 1)
            return 0

        # Ceilings first, while nothing else runs.
        for label, fn in (
                ("slapd search+bind pairs (16 threads)",
                 lambda: ldap_load(slapd, 16, SECONDS, False)["pairs_per_s"]),
                ("slapd simple binds (16 threads)",
                 lambda: ldap_load(slapd, 16, SECONDS, True)["pairs_per_s"]),
                ("disk fsyncs (4 KiB rewrite, 1 thread)",
                 lambda: fsync_rate(ar.dir, min(SECONDS, 3.0)))):
            vals = [fn() for _ in range(RUNS)]
            results["ceilings"][label] = {"median": median(vals), "runs": vals}
            log(f"ceiling {label}: {median(vals):.0f}/s")

        for cache in (False, True):
            for s in systems:
                s.set_cache(cache)
            if cache:
                # Fill both caches: every user once, AUTH only.
                for s in systems:
                    r = smtp_load(s.port("none"), "none", 64, 120, messages=0,
                                  sessions=N_USERS, extra=["--sequential"])
                    log(f"cache warm-up {s.name}: {r['sessions_ok']} sessions, "
                        f"{r['sessions_per_s']:.0f}/s")
            for tls in ("none", "starttls"):
                for conc in CONCURRENCY:
                    pt = run_point(systems, tls, conc, cache)
                    pt.update(tls=tls, concurrency=conc, cache=cache, messages=1,
                              authrelay_cache=ar.cache)
                    results["points"].append(pt)
        for s in systems:
            s.set_cache(False)

        # AUTH alone (greeting, EHLO, [STARTTLS, EHLO], AUTH, QUIT): the
        # auth path without the spool's fsync.
        for tls in ("none", "starttls"):
            for conc in ([16] if QUICK else [16, 64]):
                pt = run_point(systems, tls, conc, False, messages=0)
                pt.update(tls=tls, concurrency=conc, cache=False, messages=0,
                          authrelay_cache=False)
                results["auth_only"].append(pt)

        # Message acceptance: many messages per session, so AUTH and the
        # handshake weigh little and the commit path (fsync) shows.
        for conc in ([64] if QUICK else [16, 64]):
            pt = run_point(systems, "none", conc, False, messages=20)
            pt.update(tls="none", concurrency=conc, cache=False, messages=20,
                      authrelay_cache=False)
            results["acceptance"].append(pt)

        # A fresh start, so the baseline is not the memory the load left.
        ar.stop()
        ar.start()
        results["idle"]["authrelay"] = idle_memory(ar, IDLE)
        # Postfix holds a connection with a whole smtpd process: measure a
        # tenth first and go on only if the projection fits in memory.
        step = idle_memory(peer, max(PEER_IDLE // 10, 100))
        per_conn = step["pss_per_conn_kib"] or 0
        avail_kib = int(next(l.split()[1] for l in open("/proc/meminfo")
                             if l.startswith("MemAvailable:")))
        if per_conn * PEER_IDLE < 0.6 * avail_kib:
            results["idle"]["peer"] = idle_memory(peer, PEER_IDLE)
        else:
            log(f"peer: {PEER_IDLE} idle connections would need about "
                f"{per_conn * PEER_IDLE / 2**20:.1f} GiB; keeping the {step['open']} figure")
            results["idle"]["peer"] = step
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop_all()
        results["elapsed_s"] = round(time.monotonic() - t_start, 1)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
        if results["points"] and results["idle"]:
            text = report(results)
            (OUT / "results.md").write_text(text)
            print(text)
        if not KEEP:
            shutil.rmtree(base, ignore_errors=True)
            if lf:
                loop_fs_remove(lf)
        else:
            log(f"kept {base}" + (f" (on {lf['dev']}, mounted on {lf['mnt']})" if lf else ""))
    log(f"done in {results['elapsed_s']} s; {OUT / 'results.md'}, {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
