# SPDX-License-Identifier: ISC
"""Several gateways behind a real HAProxy: two authrelay nodes
with their own spools, HAProxy in front with `send-proxy-v2` and `option
smtpchk`, clients from several loopback source addresses. Both nodes must
serve and log the real client addresses; HAProxy's health checks (PROXY v2
LOCAL) must keep both nodes up; a direct client that is not a trusted proxy
is refused, and so is the trusted proxy's address without a header.

Both nodes share a real redis-server ([shared]): messages_per_hour counts
across them; wrong passwords spread over both nodes meet one
lockout_login_failures budget, and `authrelay unlock` on one node frees the
login on both; Redis killed, or stopped so that it answers nothing, never
stalls a session (local counts meanwhile, the outage logged once, shown by
`authrelay status`); Redis back, the messages counted meanwhile reach it."""

import json
import re
import subprocess
import time
import urllib.request

import pytest

from harness import (HOST, SMTPConn, free_port, make_dir, make_message, plain_ir, proxy_v1,
                     wait_until)
from haproxy_fixture import HAProxy
from redis_fixture import Redis

PREFIX = "it:"

LB_LISTENER = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
               "default_domain": "example.test", "max_auth_failures": 20,
               "proxy_protocol": True, "proxy_trusted_networks": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def cluster(module_gateway, base_dir):
    redis = Redis(make_dir(base_dir, "redis-")).start()
    lb = None
    try:
        nodes = [module_gateway({
            "listener lb": dict(LB_LISTENER),
            "metrics": {"address": f"{HOST}:{free_port()}"},
            "shared": {"redis": redis.address, "key_prefix": PREFIX, "timeout": 300},
            # Each guess from its own source, so only the login's
            # budget (4) is spent; no growing delay to wait through.
            "protection": {"messages_per_hour": 3, "lockout_login_failures": 4,
                           "delay_after": 100},
        }) for _ in range(2)]
        lb = HAProxy(make_dir(base_dir, "haproxy-"),
                     [(n.host("lb"), n.port("lb")) for n in nodes]).start()
        lb.wait_servers_up()
        yield lb, nodes, redis
    finally:
        if lb is not None:
            lb.stop()
        redis.stop()


def through_lb(lb, source):
    c = SMTPConn(HOST, lb.port, source=source)
    c.greeting = c.read_reply()
    assert c.greeting.code == 220, c.greeting
    return c


def test_health_checks_keep_both_nodes_up(cluster):
    lb, nodes, _ = cluster
    assert set(lb.server_states().values()) == {"UP"}
    for n in nodes:
        # option smtpchk: the LOCAL header, then HELO, served as the proxy.
        n.wait_for_log(r"connect client=127\.0\.0\.1 listener=lb proxy=127\.0\.0\.1")


def test_real_client_addresses_on_both_nodes(cluster):
    lb, nodes, _ = cluster
    marks = [n.log_mark() for n in nodes]
    sources = [f"127.0.0.{i}" for i in range(21, 29)]
    for src in sources:
        c = through_lb(lb, src)
        c.ehlo()
        c.cmd("QUIT").check(221)
        c.wait_closed()
    seen = []
    for n, mark in zip(nodes, marks):
        text = n.log_text()[mark:]
        seen.append(set(re.findall(r"connect client=(127\.0\.0\.\d+) listener=lb "
                                   r"proxy=127\.0\.0\.1", text)) - {"127.0.0.1"})
    # Round robin: both nodes served some of them, under their own address.
    assert seen[0] and seen[1], seen
    assert seen[0] | seen[1] == set(sources), seen


def test_direct_clients_refused(cluster):
    lb, nodes, _ = cluster
    n = nodes[0]
    # Not a trusted proxy, with a header: closed without a greeting.
    mark = n.log_mark()
    c = SMTPConn(n.host("lb"), n.port("lb"), source="127.0.0.3",
                 proxy=proxy_v1("192.0.2.1", 1))
    assert c.wait_closed() == b""
    n.wait_for_log(r"refuse client=127\.0\.0\.3 listener=lb reason=proxy_trusted_networks",
                   since=mark)
    wait_until(lambda: re.search(
        r'^authrelay_connections_refused_total\{listener="lb",reason="proxy_trusted_networks"\} '
        r'[1-9]', urllib.request.urlopen(
            f"http://{n.sections['metrics']['address']}/metrics", timeout=10).read().decode(),
        re.M), 10, "the refusal counted in /metrics")
    # The trusted proxy's address without a header: closed as well.
    c = SMTPConn(n.host("lb"), n.port("lb"), source="127.0.0.1")
    c.send("EHLO client.test.example\r\n")
    assert c.wait_closed() == b""
    n.wait_for_log(r"refuse proxy=127\.0\.0\.1 listener=lb reason=proxy_protocol", since=mark)


# ---------------------------------------------------------------- shared in Redis

def metric(gw, name: str) -> float | None:
    """One unlabelled sample of gw's /metrics (Prometheus text), or None."""
    port = int(gw.sections["metrics"]["address"].rsplit(":", 1)[1])
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def redis_state(gw) -> str:
    """The Redis link as `authrelay status --json` shows it (a row of the
    auth process's sources)."""
    r = subprocess.run([gw.binary, "status", "-c", str(gw.cfg_path), "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = {x["name"]: x["state"] for x in json.loads(r.stdout)["auth"]["sources"]}
    return rows.get("shared-redis", "absent")


def send_through_lb(lb, user, source="127.0.0.40", rcpts=("user@example.test",)):
    """One session through HAProxy: AUTH, one message; returns the final
    reply to MAIL (a 450 when a limit stops it) or the reply to DATA."""
    c = through_lb(lb, source)
    c.ehlo()
    c.cmd(f"AUTH PLAIN {plain_ir(user.name, user.password)}").check(235)
    start = time.monotonic()
    r = c.cmd(f"MAIL FROM:<{user.name}@example.test>")
    mail_s = time.monotonic() - start
    if r.code == 250:
        for rc in rcpts:
            c.cmd(f"RCPT TO:<{rc}>").check(250)
        c.cmd("DATA").check(354)
        c.send(make_message(f"{user.name}@example.test", rcpts[0]) + ".\r\n")
        r = c.read_reply(timeout=30)
    c.cmd("QUIT")
    c.close()
    return r, mail_s


def test_send_limit_counts_across_nodes(cluster, users):
    """messages_per_hour = 3: three messages spread by round robin over both
    nodes, then the fourth is refused, whichever node takes it."""
    lb, nodes, redis = cluster
    alice = users["alice"]
    marks = [n.log_mark() for n in nodes]
    for i in range(1, 4):
        r, _ = send_through_lb(lb, alice)
        r.check(250)
        # The report travels worker -> auth -> Redis after the 250.
        wait_until(lambda: redis.send_counts(PREFIX, "alice")[0] >= i, 10,
                   f"{i} messages of alice counted in Redis")
    for _ in range(2):  # both nodes refuse
        r, _ = send_through_lb(lb, alice)
        r.check(450, "4.7.1")
    assert redis.send_counts(PREFIX, "alice") == (3, 3)
    for n, mark in zip(nodes, marks):
        text = n.log_text()[mark:]
        assert re.search(r"auth client=127\.0\.0\.40 .*mech=PLAIN user=\"alice\"", text), (
            "round robin should have sent alice to both nodes")
    assert any(re.search(r"messages_per_hour", n.log_text()[m:]) for n, m in zip(nodes, marks))


AUTH_LINE = (r"auth\[\d+\] info: s=\S+ auth client={client} listener=lb result=(\w+) "
             r"reason=(\w+)(?=[^\n]* mech=PLAIN user=\"{user}\")")


def lock_keys(redis):
    """The logins' lockouts in Redis (PREFIX bf:l:HEX:l)."""
    return [k for k in redis.cli("KEYS", f"{PREFIX}bf:l:*:l") if k]


def auth_through_lb(lb, user, password, source):
    """One AUTH PLAIN in a fresh session through HAProxy; the reply code."""
    c = through_lb(lb, source)
    c.ehlo()
    code = c.auth_plain(user, password).code
    c.close()
    return code


def test_lockout_counts_across_nodes(cluster, users):
    """lockout_login_failures = 4: four wrong passwords for dave, spread by
    round robin over both nodes (each from its own source: neither the
    client's nor the pair's budget is touched), lock dave out on both nodes
    at the fourth, not the eighth; `authrelay unlock` on one node frees him
    on both."""
    lb, nodes, redis = cluster
    dave = users["dave"]
    marks = [n.log_mark() for n in nodes]
    codes = [auth_through_lb(lb, dave.name, f"guess-{i}", f"127.0.0.{50 + i}")
             for i in range(4)]
    assert codes == [535] * 4
    for n, mark in zip(nodes, marks):
        # Round robin: both nodes checked some of the guesses.
        assert re.search(AUTH_LINE.format(user="dave", client=r"127\.0\.0\.5\d") +
                         " source=file", n.log_text()[mark:]), "a node got no guess"
    # Locked on both nodes, the right password too (never cached).
    marks = [n.log_mark() for n in nodes]
    codes = [auth_through_lb(lb, dave.name, dave.password, f"127.0.0.{60 + i}")
             for i in range(2)]
    assert codes == [454, 454]
    for n, mark in zip(nodes, marks):
        m = n.wait_for_log(AUTH_LINE.format(user="dave", client=r"127\.0\.0\.6\d"),
                           since=mark)
        assert m.group(1, 2) == ("tempfail", "locked"), m.group(0)
    # One login's lockout in Redis, under the documented layout.
    assert len(lock_keys(redis)) == 1
    # Unlock on the first node: both serve dave again.
    r = subprocess.run([nodes[0].binary, "unlock", "-c", str(nodes[0].cfg_path), dave.name],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: [auth_through_lb(lb, dave.name, dave.password, f"127.0.0.{70 + i}")
                        for i in range(2)] == [235, 235], 10, "dave unlocked on both nodes")
    assert lock_keys(redis) == []


def test_redis_killed_then_back(cluster, users):
    """Redis dies: sessions are served at once on local counts, each node
    says so once; Redis back: both nodes say so, and what was sent meanwhile
    is counted in Redis."""
    lb, nodes, redis = cluster
    bob = users["bob"]
    marks = [n.log_mark() for n in nodes]
    assert [redis_state(n) for n in nodes] == ["up", "up"]
    redis.kill()
    for n, mark in zip(nodes, marks):
        n.wait_for_log(r"shared: redis=\S+ unreachable", since=mark)
    assert [redis_state(n) for n in nodes] == ["down", "down"]
    assert [metric(n, "authrelay_shared_redis_up") for n in nodes] == [0, 0]
    for _ in range(4):
        r, mail_s = send_through_lb(lb, bob)
        r.check(250)
        assert mail_s < 1.5, f"MAIL took {mail_s:.2f}s with Redis down"
    # The brute-force check too: answered at once on the node's own counts.
    for i in range(2):
        start = time.monotonic()
        assert auth_through_lb(lb, "erin", f"down-{i}", f"127.0.0.{80 + i}") == 535
        assert time.monotonic() - start < 1.5, "AUTH stalled with Redis down"
    for n, mark in zip(nodes, marks):
        assert len(re.findall(r"shared: redis=\S+ unreachable", n.log_text()[mark:])) == 1
    # messages_per_hour = 3 still holds per node on local counts (two each).
    redis.start()
    for n, mark in zip(nodes, marks):
        n.wait_for_log(r"shared: redis=\S+ connected: counting is shared again", since=mark,
                       timeout=15)
    assert [redis_state(n) for n in nodes] == ["up", "up"]
    assert [metric(n, "authrelay_shared_redis_up") for n in nodes] == [1, 1]
    # The restarted Redis kept nothing (no persistence): the four messages
    # counted locally meanwhile are sent to it.
    wait_until(lambda: redis.send_counts(PREFIX, "bob") == (4, 4), 15,
               "bob's four messages resynced to Redis")
    r, _ = send_through_lb(lb, bob)
    r.check(450, "4.7.1")


def test_slow_redis_never_stalls_a_session(cluster, users):
    """Redis stopped (SIGSTOP: connections hang, nothing answers): MAIL is
    answered after [shared] timeout (300 ms) on local counts, not after the
    client's patience; Redis answering again: shared again."""
    lb, nodes, redis = cluster
    carol = users["carol"]
    marks = [n.log_mark() for n in nodes]
    redis.pause()
    try:
        for _ in range(2):
            r, mail_s = send_through_lb(lb, carol)
            r.check(250)
            assert mail_s < 1.5, f"MAIL took {mail_s:.2f}s with Redis hung"
        # At least the node that asked first gave up on it and said so.
        assert any(re.search(r"shared: redis=\S+ unreachable \(no answer within the timeout\)",
                             n.log_text()[m:]) for n, m in zip(nodes, marks))
    finally:
        redis.resume()
    for n, mark in zip(nodes, marks):
        wait_until(lambda: redis_state(n) == "up", 15, "the Redis link up again")
    wait_until(lambda: redis.send_counts(PREFIX, "carol") == (2, 2), 15,
               "carol's two messages counted in Redis")
