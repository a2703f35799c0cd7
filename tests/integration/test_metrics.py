# SPDX-License-Identifier: ISC
"""
test_metrics.py - the metrics endpoint ([metrics], README "Metrics") against
the running daemon, with real clients: Prometheus itself, promtool, the
OpenMetrics parser of prometheus_client, curl-like HTTP from given source
addresses.

What is checked:
  - the exposition passes `promtool check metrics` (Prometheus text) and
    the strict OpenMetrics parser, and its numbers follow what happened
    (sessions, AUTH, TLS, messages, rejects, the queue and deliveries);
  - a real Prometheus on loopback scrapes it, and its HTTP API
    (/api/v1/query) sees the AUTH counter move after a login;
  - counts are exact across workers: N parallel sessions served by several
    workers count exactly N, and counters survive a worker's death;
  - /healthz: 200 while every child is up, 503 while one cannot start;
  - the allow list (403 from an address outside it), request bounds,
    timeouts, and check-config refusing a mail listener's address;
  - each directory's and upstream's up/down state, throttle lockouts;
  - the metrics process runs unprivileged, chrooted and sandboxed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import harness
from harness import HOST, free_port, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# ---------------------------------------------------------------- helpers

def metrics_config(port: int, **extra) -> dict:
    return {"metrics": {"address": f"{HOST}:{port}", **extra}}


def http_get(port: int, path: str, headers: dict | None = None, source: str | None = None,
             method: str = "GET", timeout: float = 10) -> tuple[int, dict, str]:
    """(status, headers, body) of one request to the endpoint."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def samples_of(text: str, openmetrics: bool = False) -> dict[tuple, float]:
    """{(sample name, ((label, value), ...)): value}, parsed by
    prometheus_client's parsers (which also validates the text)."""
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"sample twice: {key}"
            out[key] = s.value
    return out


def scrape(port: int, openmetrics: bool = False) -> dict[tuple, float]:
    status, hdrs, body = http_get(port, "/metrics",
                                  {"Accept": OPENMETRICS} if openmetrics else None)
    assert status == 200, body
    return samples_of(body, openmetrics)


def val(samples: dict, name: str, **labels) -> float:
    """The value of one sample (0 when absent: sparse families show only
    what counted), or the sum over the samples matching the given labels
    when some labels are left out."""
    total, found = 0.0, False
    for (n, lbls), v in samples.items():
        if n != name:
            continue
        d = dict(lbls)
        if all(d.get(k) == str(v2) for k, v2 in labels.items()):
            total += v
            found = True
    return total if found else 0.0


def started(gw, port: int, source: str | None = None):
    """gw once every child is up, as /healthz says: the listeners greet as
    soon as one worker runs, and the auth process (whose sources intern
    their names) may still be starting then."""
    wait_until(lambda: http_get(port, "/healthz", source=source)[0] == 200, 60,
               "every child to be up (/healthz 200)")
    return gw


def login(gw, user: str, password: str, listener: str = "sub") -> int:
    return harness.auth_code(gw, user, password, listener)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def mport():
    return free_port()


@pytest.fixture(scope="module")
def mgw(module_gateway, mport):
    """A gateway with the endpoint on, shared by the read-mostly tests."""
    return started(module_gateway(metrics_config(mport)), mport)


# ---------------------------------------------------------------- the exposition

def test_promtool_and_openmetrics_parse(mgw, mport, users, tmp_path):
    """Both formats of a scrape taken after real traffic: promtool finds no
    problem in the text format, the OpenMetrics parser takes the other, and
    they carry the same numbers."""
    alice = users["alice"]
    assert login(mgw, alice.name, alice.password) == 235
    assert login(mgw, alice.name, "wrong") == 535
    # The worker counts a session when it frees it, after the client has
    # its 221: wait for that, so that nothing moves between the scrapes.
    wait_until(lambda: val(scrape(mport), "authrelay_connections_open") == 0, 30,
               "every session to be closed and counted")
    status, hdrs, text = http_get(mport, "/metrics")
    assert status == 200
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    (tmp_path / "metrics.txt").write_text(text)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        r.stdout.decode() + r.stderr.decode())
    # promtool must be able to fail: a counter without _total is refused.
    bad = text.replace("authrelay_auth_attempts_total", "authrelay_auth_attempts")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=bad.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode != 0
    status, hdrs, om = http_get(mport, "/metrics", {"Accept": OPENMETRICS})
    assert hdrs["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.endswith("# EOF\n")
    assert "# TYPE authrelay_auth_attempts counter" in om
    prom, omv = samples_of(text), samples_of(om, openmetrics=True)
    # The parsers name counters alike; a scrape in between may have moved
    # nothing here (no traffic), so every counter agrees.
    for key in ("authrelay_auth_attempts_total", "authrelay_sessions_total"):
        assert val(prom, key) == val(omv, key) > 0
    assert val(prom, "authrelay_build_info", version="0.1.0") == 1
    assert val(omv, "authrelay_build_info", version="0.1.0") == 1


def test_counts_follow_traffic(mgw, mport, users):
    """Sessions, TLS, AUTH by mech/source/result/reason with its latency,
    the cache, messages queued and their bytes, rejects, the queue's
    gauges and the deliveries, each as the log tells it."""
    before = scrape(mport)
    alice, clara = users["alice"], users["clara"]
    # A good and a bad PLAIN, a LOGIN, from the file source.
    assert login(mgw, alice.name, alice.password) == 235
    assert login(mgw, alice.name, "nope") == 535
    c = harness.submission_conn(mgw)
    c.cmd("AUTH LOGIN").check(334)
    c.cmd(harness.b64(clara.name)).check(334)
    c.cmd(harness.b64(clara.password)).check(235)
    # A message queued, and a relay refused on the inbound listener.
    msg = harness.make_message(mail_from="alice@example.test", to="x@other.test")
    qid = c.send_message("alice@example.test", ["x@other.test"], msg).queued_id()
    c.cmd("QUIT").check(221)
    c.wait_closed()
    i = harness.SMTPConn.open(mgw, "in")
    i.ehlo()
    i.cmd("MAIL FROM:<a@other.test>").check(250)
    i.cmd("RCPT TO:<b@elsewhere.test>").check(550, "5.7.1")
    i.cmd("QUIT")
    i.wait_closed()
    size = mgw.spool_file(qid).path.stat().st_size

    def moved():
        now = scrape(mport)
        d = lambda n, **l: val(now, n, **l) - val(before, n, **l)  # noqa: E731
        assert d("authrelay_auth_attempts_total", mech="PLAIN", source="file", result="ok",
                 reason="ok") == 1
        assert d("authrelay_auth_attempts_total", mech="PLAIN", source="file",
                 result="fail", reason="bad_password") == 1
        assert d("authrelay_auth_attempts_total", mech="LOGIN", result="ok") == 1
        assert d("authrelay_auth_duration_seconds_count", source="file") == 3
        # Other tests of the module may have cached alice's answers.
        assert d("authrelay_auth_cache_lookups_total", result="miss") + d(
            "authrelay_auth_cache_lookups_total", result="hit") == 3
        assert d("authrelay_sessions_total", listener="sub", outcome="quit") == 3
        assert d("authrelay_sessions_total", listener="in", outcome="quit") == 1
        assert d("authrelay_connections_accepted_total", listener="sub") == 3
        assert d("authrelay_tls_handshakes_total", listener="sub", version="TLSv1.3") == 3
        assert d("authrelay_messages_queued_total", listener="sub") == 1
        # The spool file holds our envelope records too: the counted
        # size (the message as stored, with our Received) is less.
        assert 0 < d("authrelay_messages_queued_bytes_total", listener="sub") < size
        assert d("authrelay_messages_rejected_total", listener="in",
                 reason="relay_denied") == 1
        assert val(now, "authrelay_connections_open", listener="sub") == 0
        # The queue: the test resolver answers nothing, so the message is
        # deferred, and its attempt counted with its delay.
        assert d("authrelay_deliveries_total", status="deferred") >= 1
        assert d("authrelay_delivery_delay_seconds_count", status="deferred") >= 1
        assert val(now, "authrelay_queue_messages") >= 1
        assert val(now, "authrelay_queue_messages_older_than", age="1d") == 0
        return True
    wait_until(moved, 30, "the counters to follow the traffic")


def test_tls_failure_and_timeout_outcomes(make_gateway):
    """A client that breaks the implicit TLS handshake, and one that says
    nothing past command_timeout."""
    port = free_port()
    gw = started(make_gateway({**metrics_config(port), "limits": {"command_timeout": 1}}), port)
    s = socket.create_connection((HOST, gw.port("subs")), timeout=10)
    s.sendall(b"EHLO not-tls\r\n")  # not a TLS ClientHello
    try:
        s.recv(100)
    except ConnectionResetError:
        pass
    s.close()
    quiet = harness.SMTPConn.open(gw, "in")
    quiet.wait_closed(timeout=15)

    def counted():
        now = scrape(port)
        assert val(now, "authrelay_tls_handshake_failures_total", listener="subs",
                   reason="error") == 1
        assert val(now, "authrelay_sessions_total", listener="subs", outcome="tls_failed") == 1
        assert val(now, "authrelay_sessions_total", listener="in", outcome="timeout") == 1
        return True
    wait_until(counted, 15, "the failed handshake and the timeout")


# ---------------------------------------------------------------- Prometheus

def test_prometheus_scrapes_and_sees_auth(make_gateway, users, base_dir):
    """A real Prometheus on loopback (its own config, a free port, storage in
    a temp directory) scrapes the endpoint; through its HTTP API the AUTH
    counter is seen to move after a login."""
    port, prom_port = free_port(), free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    pdir = harness.make_dir(base_dir, "prometheus-")
    (pdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: authrelay\n"
        f"    static_configs:\n      - targets: ['{HOST}:{port}']\n")
    log = open(pdir / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={pdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={pdir / 'data'}", f"--web.listen-address={HOST}:{prom_port}",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(pdir))
    try:
        def api(path: str) -> dict:
            status, _, body = http_get(prom_port, path)
            assert status == 200, body
            return json.loads(body)

        def query(expr: str) -> float | None:
            q = urllib.parse.quote(expr)
            res = api(f"/api/v1/query?query={q}")["data"]["result"]
            return float(res[0]["value"][1]) if res else None

        def ready():
            assert prom.poll() is None, (pdir / "prometheus.log").read_text()
            try:
                return http_get(prom_port, "/-/ready")[0] == 200
            except OSError:
                return False
        wait_until(ready, 60, "Prometheus to be ready")
        # Scraped and up (OpenMetrics negotiated: Prometheus asks for it).
        wait_until(lambda: query('up{job="authrelay"}') == 1, 60,
                   "Prometheus to scrape the endpoint")
        ok = 'sum(authrelay_auth_attempts_total{result="ok"}) or vector(0)'
        before = query(ok)
        assert before == 0
        alice = users["alice"]
        assert login(gw, alice.name, alice.password) == 235
        wait_until(lambda: query(ok) == before + 1, 60,
                   "Prometheus to see the AUTH counter move")
        assert query('authrelay_auth_attempts_total{mech="PLAIN",source="file",'
                     'result="ok",reason="ok"}') == 1
        # The rest is there too, with its type: a histogram's buckets.
        assert query('sum(authrelay_auth_duration_seconds_count{source="file"})') == 1
        assert query('authrelay_processes_up{process="smtpd"}') == 2
        # Every query of the sample Grafana dashboard is valid PromQL over
        # names the endpoint has.
        dash = json.loads((harness.REPO / "contrib/grafana/authrelay.json").read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        assert len(exprs) > 20
        names = {n for (n, _) in scrape(port)} | {
            l.split()[2] for l in http_get(port, "/metrics")[2].splitlines()
            if l.startswith("# TYPE")}
        for e in exprs:
            for n in re.findall(r"authrelay_[a-z_]+", e):
                assert n in names or re.sub(r"_(bucket|count|sum)$", "", n) in names, (n, e)
            e = e.replace("$instance", ".*").replace("$__rate_interval", "1m")
            status, _, body = http_get(prom_port, "/api/v1/query?query="
                                       + urllib.parse.quote(e))
            assert status == 200 and json.loads(body)["status"] == "success", (e, body)
    finally:
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(10)
        log.close()


# ---------------------------------------------------------------- exactness

def test_exact_across_workers(make_gateway, users):
    """N sessions at once, spread over 4 workers, then N with one AUTH
    each: exactly N in every counter, whatever worker counted it."""
    port = free_port()
    gw = started(make_gateway({**metrics_config(port), "server": {"workers": 4},
                               "limits": {"max_connections_per_ip": 100}}), port)
    alice = users["alice"]
    n = 40
    before = scrape(port)
    mark = gw.log_mark()
    barrier = threading.Barrier(n)
    codes, errors = [], []

    def one():
        try:
            c = harness.SMTPConn.open(gw, "out")
            c.ehlo()
            barrier.wait(30)  # all connected at once: the workers share them
            c.cmd("QUIT").check(221)
            c.wait_closed()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    after = scrape(port)
    d = lambda name, **l: val(after, name, **l) - val(before, name, **l)  # noqa: E731
    assert d("authrelay_connections_accepted_total", listener="out") == n
    assert d("authrelay_sessions_total", listener="out", outcome="quit") == n
    assert val(after, "authrelay_connections_open", listener="out") == 0
    pids = set(re.findall(r"smtpd\[(\d+)\] info: s=\w+ connect client=\S+ listener=out",
                          gw.log_text()[mark:]))
    assert len(pids) >= 2, f"all {n} sessions went to one worker: {pids}"

    # The same with AUTH, on the submission listener, for the auth counter.
    codes.clear()
    before = after
    barrier = threading.Barrier(n)

    def one_auth():
        try:
            c = harness.submission_conn(gw)
            codes.append(c.auth_plain(alice.name, alice.password).code)
            c.cmd("QUIT")
            c.wait_closed()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    threads = [threading.Thread(target=one_auth) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert codes == [235] * n
    after = scrape(port)
    assert d("authrelay_auth_attempts_total", result="ok") == n
    assert d("authrelay_sessions_total", listener="sub", outcome="quit") == n


def test_counters_survive_a_worker_death(make_gateway, users):
    """A worker killed with SIGKILL: the master restarts it, the counts it
    made stay (its slot goes to the new worker), the restart is counted."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    alice = users["alice"]
    for _ in range(4):
        assert login(gw, alice.name, alice.password) == 235
    before = scrape(port)
    assert val(before, "authrelay_sessions_total", listener="sub") >= 4
    c = harness.submission_conn(gw)
    victim = gw.pid_serving(c)
    os.kill(victim, signal.SIGKILL)
    c.close()

    def back():
        now = scrape(port)
        assert val(now, "authrelay_process_restarts_total", process="smtpd") == 1
        assert val(now, "authrelay_processes_up", process="smtpd") == 2
        return now
    now = wait_until(back, 30, "the worker to be restarted")
    for name in ("authrelay_sessions_total", "authrelay_connections_accepted_total",
                 "authrelay_tls_handshakes_total"):
        assert val(now, name) >= val(before, name), name
    # The killed worker held one open session: its gauge went with it.
    assert val(now, "authrelay_connections_open") == 0


def test_counters_go_on_across_reloads(make_gateway, users):
    """A reload replaces every worker and key process (a new generation):
    the counts the old ones made stay, the gauges follow the generation that
    serves, /healthz stays 200, nothing counts as a restart, and a
    [metrics] key changed is named as needing a restart."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    alice = users["alice"]
    for _ in range(3):
        assert login(gw, alice.name, alice.password) == 235
    before = scrape(port)
    assert val(before, "authrelay_sessions_total", listener="sub") >= 3
    for n in (2, 3):
        if n == 3:
            gw.sections["metrics"]["timeout"] = "20"
            gw.write_config()
        mark = gw.log_mark()
        gw.hup()
        gw.wait_for_log(rf"reload: generation={n} active", since=mark, timeout=30)
        gw.wait_for_log(rf"generation={n - 1}: every worker has exited", since=mark, timeout=30)
    assert re.search(r"reload: \[metrics\] timeout 10s -> 20s needs a restart; still using 10s",
                     gw.log_text()), "\n".join(re.findall(r"reload: .*", gw.log_text()))
    assert login(gw, alice.name, alice.password) == 235

    def settled():
        now = scrape(port)
        assert val(now, "authrelay_sessions_total", listener="sub") >= \
            val(before, "authrelay_sessions_total", listener="sub") + 1
        for proc, n in (("smtpd", 2), ("keyproc", 1), ("auth", 1), ("queue", 1)):
            assert val(now, "authrelay_processes_up", process=proc) == n, proc
            assert val(now, "authrelay_processes_expected", process=proc) == n, proc
        return now
    now = wait_until(settled, 30, "the counts after the reloads")
    assert val(now, "authrelay_process_restarts_total") == 0
    for name in ("authrelay_connections_accepted_total", "authrelay_tls_handshakes_total"):
        assert val(now, name) >= val(before, name), name
    assert http_get(port, "/healthz")[0] == 200


def test_reloads_counted_and_last_success_time(make_gateway, tmp_path):
    """authrelay_reloads_total{result} counts reloads that took and reloads
    refused; authrelay_config_last_reload_success_timestamp_seconds is the
    start's time, moves with a reload that took, stays with one refused
    (as Prometheus's own metrics); promtool still finds nothing wrong."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    first = scrape(port)
    for result in ("ok", "refused"):
        assert ("authrelay_reloads_total", (("result", result),)) in first, result
        assert val(first, "authrelay_reloads_total", result=result) == 0, result
    loaded = val(first, "authrelay_config_last_reload_success_timestamp_seconds")
    assert abs(loaded - val(first, "authrelay_start_time_seconds")) <= 1
    # The timestamp has whole seconds: let the clock pass the start's.
    wait_until(lambda: time.time() >= loaded + 1.5, 5, "the clock to pass the start")
    asked = int(time.time())
    mark = gw.log_mark()
    gw.hup()
    gw.wait_for_log(r"reload: generation=2 active", since=mark, timeout=30)
    now = scrape(port)
    assert val(now, "authrelay_reloads_total", result="ok") == 1
    assert val(now, "authrelay_reloads_total", result="refused") == 0
    ok_time = val(now, "authrelay_config_last_reload_success_timestamp_seconds")
    assert ok_time >= asked > loaded, (ok_time, asked, loaded)

    gw.sections["limits"]["max_connections"] = "lots"
    gw.write_config()
    mark = gw.log_mark()
    gw.hup()
    gw.wait_for_log(r"reload refused: the running configuration stays", since=mark,
                    timeout=30)
    now = scrape(port)
    assert val(now, "authrelay_reloads_total", result="ok") == 1
    assert val(now, "authrelay_reloads_total", result="refused") == 1
    assert val(now, "authrelay_config_last_reload_success_timestamp_seconds") == ok_time
    _, _, text = http_get(port, "/metrics")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        r.stdout.decode() + r.stderr.decode())
    assert "# TYPE authrelay_config_last_reload_success_timestamp_seconds gauge" in text


# ---------------------------------------------------------------- /healthz

def test_healthz(make_gateway, users):
    """200 while every child runs; 503 naming the child while one cannot
    start (the auth process, its users file gone); 200 again after."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    status, hdrs, body = http_get(port, "/healthz")
    assert status == 200, body
    assert body.startswith("ok\n") and "smtpd 2/2 up" in body and "auth 1/1 up" in body
    assert http_get(port, "/healthz", method="HEAD")[0] == 200
    # `authrelay status` lists the metrics process with the others.
    r = harness.run_tool([gw.binary, "status", "--json", "-c", gw.cfg_path])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["metrics"]["up"] and st["metrics"]["pid"] in gw.children(), st
    r = harness.run_tool([gw.binary, "status", "-c", gw.cfg_path])
    assert re.search(rf"^process name=metrics pid={st['metrics']['pid']} state=up restarts=0$",
                     r.stdout.decode(), re.M), r.stdout
    hidden = gw.users_path.with_name("users.hidden")
    os.rename(gw.users_path, hidden)
    os.kill(gw.auth_pid(), signal.SIGKILL)

    def down():
        st, _, b = http_get(port, "/healthz")
        return (st, b) if st == 503 else None
    st, b = wait_until(down, 30, "/healthz to say 503")
    assert b.startswith("unavailable\n") and "auth 0/1 up" in b, b
    os.rename(hidden, gw.users_path)
    wait_until(lambda: http_get(port, "/healthz")[0] == 200, 60, "/healthz to be 200 again")


# ---------------------------------------------------------------- access and bounds

def test_allow_list(make_gateway):
    """Only the allow list's clients get an answer: 127.0.0.2 is allowed,
    127.0.0.1 gets 403 on every path, and the refusal is logged."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port, allow="127.0.0.2/32")), port,
                 source="127.0.0.2")
    mark = gw.log_mark()
    for path in ("/metrics", "/healthz"):
        status, _, body = http_get(port, path, source="127.0.0.1")
        assert status == 403 and "authrelay_" not in body, (status, body)
    status, _, body = http_get(port, "/metrics", source="127.0.0.2")
    assert status == 200 and "authrelay_processes_up" in body
    gw.wait_for_log(r"metrics\[\d+\] info: metrics: refused client=127\.0\.0\.1", mark)


def test_request_bounds_and_timeout(make_gateway):
    """Only GET and HEAD, no body, bounded headers, unknown paths 404, and a
    connection that says nothing is closed after [metrics] timeout."""
    port = free_port()
    started(make_gateway(metrics_config(port, timeout=1)), port)
    assert http_get(port, "/nothing")[0] == 404
    assert http_get(port, "/metrics", method="POST")[0] in (405, 501)
    assert http_get(port, "/metrics", headers={"X-Big": "a" * 20000})[0] in (400, 413, 431)
    status, hdrs, body = http_get(port, "/metrics", method="HEAD")
    assert status == 200 and body == ""
    s = socket.create_connection((HOST, port), timeout=10)
    t0 = time.monotonic()
    try:
        s.settimeout(10)
        assert s.recv(100) == b""  # closed by the server, idle past 1 s
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert time.monotonic() - t0 < 8


def test_check_config_refuses_a_mail_port(make_gateway, bin_path):
    """[metrics] address on a listener's address:port: check-config names
    the listener on the key's line; the daemon refuses to start."""
    gw = make_gateway(start=False)
    sub = gw.sections["listener sub"]["address"]
    gw.sections["metrics"] = {"address": sub}
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    err = r.stderr.decode()
    # The listener's own address line comes first; the [metrics] one last.
    line = max(i for i, l in enumerate(gw.cfg_path.read_text().split("\n"), 1)
               if l == f"address = {sub}")
    assert r.returncode == 78, err
    assert re.search(rf"{re.escape(str(gw.cfg_path))}:{line}: \[metrics\] address = "
                     rf"{re.escape(sub)}: listener sub \({re.escape(sub)}\) takes it", err), err
    r = harness.run_tool([bin_path, "-f", "-c", gw.cfg_path], timeout=30)
    assert r.returncode == 78, r.stderr
    # A wildcard listener takes every address of its port.
    port = gw.port("in")
    gw.sections["listener in"]["address"] = f"0.0.0.0:{port}"
    gw.sections["metrics"] = {"address": f"127.0.0.1:{port}"}
    gw.write_config()
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    assert r.returncode == 78 and b"listener in (0.0.0.0:" in r.stderr, r.stderr


def test_readme_lists_every_metric(mgw, mport):
    """README's table of metrics and the endpoint name the same families."""
    readme = (harness.REPO / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(authrelay_[a-z_]+)`", section, re.M))
    _, _, text = http_get(mport, "/metrics")
    served = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert listed == served, (listed - served, served - listed)


def test_show_config_and_off_by_default(gw, bin_path):
    """Without [metrics] address nothing listens and no metrics process
    runs; show-config prints the section's defaults."""
    assert not gw.logged_pids("metrics")
    r = harness.run_tool([bin_path, "show-config", "-c", gw.cfg_path])
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "[metrics]" in out and "allow = 127.0.0.0/8, ::1" in out, out


# ---------------------------------------------------------------- sources, throttle

def test_directory_and_upstream_down(make_gateway, users):
    """An [ldap NAME] directory and an [smtp-forward] upstream nobody
    answers for: up (1) until a login needs them, then down (0)."""
    dead = free_port()
    port = free_port()
    gw = started(make_gateway({**metrics_config(port),
                               "ldap corp": {"uri": f"ldap://{HOST}:{dead}",
                                             "base": "dc=example,dc=test", "filter": "(uid=%s)",
                                             "network_timeout": 1, "timeout": 1}}), port)
    assert scrape(port)[("authrelay_ldap_directory_up", (("directory", "corp"),))] == 1
    assert login(gw, "nobody-here", "x-Secret-1") == 454

    def ldap_down():
        now = scrape(port)
        assert now[("authrelay_ldap_directory_up", (("directory", "corp"),))] == 0
        assert val(now, "authrelay_auth_attempts_total", source="ldap", result="tempfail",
                   reason="directory_unavailable") == 1
        return True
    wait_until(ldap_down, 15, "the directory to show down")

    port2 = free_port()
    up = f"{HOST}:{free_port()}"
    gw2 = started(make_gateway({**metrics_config(port2),
                                "smtp-forward": {"upstreams": up, "tls": "none",
                                                 "connect_timeout": 1, "timeout": 2}}), port2)
    assert scrape(port2)[("authrelay_forward_upstream_up", (("upstream", up),))] == 1
    assert login(gw2, "nobody-here", "x-Secret-1") == 454
    wait_until(lambda: scrape(port2)[("authrelay_forward_upstream_up", (("upstream", up),))] == 0,
               15, "the upstream to show down")


def test_throttle_lockouts_and_delays(make_gateway, users):
    """Failures past delay_after are delayed (the histogram), the pair's
    lockout starts (counted by scope) and is in force (the gauge)."""
    port = free_port()
    gw = started(make_gateway({**metrics_config(port),
                               "protection": {"delay_after": 1, "delay_ms": 100,
                                              "delay_max_ms": 200,
                                              "lockout_client_login_failures": 3,
                                              "cache_size": 0}}), port)
    alice = users["alice"]
    for i in range(3):
        assert login(gw, alice.name, f"wrong-{i}") == 535
    assert login(gw, alice.name, alice.password) == 454  # locked

    def counted():
        now = scrape(port)
        assert val(now, "authrelay_auth_lockouts_started_total", scope="client_login") == 1
        assert val(now, "authrelay_auth_lockouts") == 1
        assert val(now, "authrelay_auth_throttle_delay_seconds_count") >= 1
        assert val(now, "authrelay_auth_attempts_total", result="tempfail",
                   reason="locked") == 1
        return True
    wait_until(counted, 15, "the lockout and the delays to be counted")


# ---------------------------------------------------------------- the process

def test_metrics_process_is_confined(make_gateway):
    """The metrics process: user nobody, chrooted into the empty directory,
    no new privileges, a seccomp filter, not dumpable, and none of the
    mail listeners or private sockets; no other child holds its socket."""
    port = free_port()
    gw = started(make_gateway(metrics_config(port)), port)
    pid = wait_until(lambda: next(iter(set(gw.children()) & gw.logged_pids("metrics")), None),
                     10, "the metrics process")
    uids, gids, _ = harness.proc_ids(pid)
    assert uids == [harness.nobody_ids()[0]] * 4
    if "sandbox off: a sanitizer build" not in gw.log_text():
        st = harness.proc_status(pid)
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert os.readlink(f"/proc/{pid}/root") == str(gw.spool / "empty")
    # Not dumpable: the kernel then gives its /proc files to root.
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0
    mine = harness._tcp_inodes(
        lambda local, rem, s: s == "0A" and local == harness._hex_addr(HOST, port))
    holders = harness._pids_holding(gw.children(), mine)
    assert holders == {pid}, holders
    assert not harness._pids_holding([pid], gw.listening_inodes())
