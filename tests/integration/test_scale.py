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
`authrelay status`); Redis back, the messages counted meanwhile reach it.

Lockouts across an outage: counting is shared again once Redis is back;
the failures a node counted meanwhile are sent to Redis (they count for the
other node afterwards); an unlock given meanwhile frees the login on the
node at once and on the other one when Redis answers. `authrelay lockouts`
on one node lists the lockouts the other one started (SCAN of Redis), and
says when the list is local only. With [shared] secret_file the same wrong
password sent to both nodes counts once; without it, once per node."""

import hashlib
import json
import os
import pwd
import re
import subprocess
import time
import urllib.request

import pytest

from harness import (AUTH_AS, HOST, SMTPConn, free_port, make_dir, make_message, plain_ir,
                     proxy_v1, wait_until)
from haproxy_fixture import HAProxy
from redis_fixture import Redis

PREFIX = "it:"

LB_LISTENER = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
               "default_domain": "example.test", "max_auth_failures": 20,
               "proxy_protocol": True, "proxy_trusted_networks": "127.0.0.1/32"}


def write_secret(directory) -> str:
    """A [shared] secret_file: one random line, the auth user's alone."""
    path = directory / "cluster-secret"
    path.write_text(os.urandom(32).hex() + "\n")
    pw = pwd.getpwnam(AUTH_AS)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o400)
    return str(path)


@pytest.fixture(scope="module")
def cluster(module_gateway, base_dir):
    redis = Redis(make_dir(base_dir, "redis-")).start()
    secret = write_secret(make_dir(base_dir, "secret-"))
    lb = None
    try:
        nodes = [module_gateway({
            "listener lb": dict(LB_LISTENER),
            "metrics": {"address": f"{HOST}:{free_port()}"},
            "shared": {"redis": redis.address, "key_prefix": PREFIX, "timeout": 300,
                       "secret_file": secret},
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


# ------------------------------------------------------ lockouts and outages

def auth_on_node(node, user, password, client):
    """One AUTH PLAIN straight to one node, as HAProxy would pass it (a
    PROXY header from the trusted 127.0.0.1 naming client); the reply code."""
    c = SMTPConn(node.host("lb"), node.port("lb"), source="127.0.0.1",
                 proxy=proxy_v1(client, 40000))
    c.greeting = c.read_reply()
    assert c.greeting.code == 220, c.greeting
    c.ehlo()
    code = c.auth_plain(user, password).code
    c.close()
    return code


def login_key(login: str) -> str:
    """A login's key name in Redis (PREFIX bf:l: and 32 hex digits of
    SHA-256 of "l", the login, a zero byte)."""
    return f"{PREFIX}bf:l:" + hashlib.sha256(b"l" + login.encode() + b"\0").hexdigest()[:32]


def redis_down(redis, nodes, how="kill"):
    """Kill (or stop) Redis and wait until both nodes count locally."""
    marks = [n.log_mark() for n in nodes]
    if how == "kill":
        redis.kill()
    else:
        redis.pause()
        # A stopped Redis is found out by a command without an answer.
        for i, n in enumerate(nodes):
            auth_on_node(n, "nobody-here", "x", f"198.51.100.{200 + i}")
    for n, mark in zip(nodes, marks):
        n.wait_for_log(r"shared: redis=\S+ unreachable", since=mark, timeout=15)
    return marks


def redis_back(redis, nodes, how="kill"):
    marks = [n.log_mark() for n in nodes]
    if how == "kill":
        redis.start()
    else:
        redis.resume()
    for n, mark in zip(nodes, marks):
        n.wait_for_log(r"shared: redis=\S+ connected: counting is shared again", since=mark,
                       timeout=15)


def lockouts_json(node):
    r = subprocess.run([node.binary, "lockouts", "-c", str(node.cfg_path), "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_lockout_sharing_resumes_after_outage(cluster):
    """Redis killed: both nodes serve on local counts; Redis back (same
    port, empty): wrong passwords for a new login spread over both nodes
    lock it at lockout_login_failures = 4, on both."""
    lb, nodes, redis = cluster
    redis_down(redis, nodes)
    try:
        for i in range(2):
            assert auth_on_node(nodes[i], "ghost-down", f"down-{i}", f"198.51.100.{10 + i}") \
                == 535
    finally:
        redis_back(redis, nodes)
    codes = [auth_on_node(nodes[i % 2], "ghost-after", f"after-{i}", f"198.51.100.{20 + i}")
             for i in range(4)]
    assert codes == [535] * 4
    # Each node counted two: only the shared count reaches four.
    assert [auth_on_node(n, "ghost-after", "after-x", f"198.51.100.{30 + i}")
            for i, n in enumerate(nodes)] == [454, 454]
    assert redis.cli("EXISTS", login_key("ghost-after") + ":l") == ["1"]


def test_failures_counted_during_outage_are_resynced(cluster, users):
    """Three wrong passwords for frank on node 0 while Redis is away (it
    comes back empty: no persistence); once back, node 0 sends them, so a
    fourth on node 1, which never saw frank, locks him on both nodes."""
    lb, nodes, redis = cluster
    frank = users["frank"]
    redis_down(redis, nodes)
    try:
        for i in range(3):
            assert auth_on_node(nodes[0], frank.name, f"guess-{i}", f"198.51.100.{40 + i}") \
                == 535
    finally:
        redis_back(redis, nodes)
    wait_until(lambda: redis.cli("ZCARD", login_key("frank") + ":f") == ["3"], 15,
               "the three failures counted on node 0 sent to Redis")
    assert auth_on_node(nodes[1], frank.name, "guess-3", "198.51.100.43") == 535
    for i, n in enumerate(nodes):
        assert auth_on_node(n, frank.name, frank.password, f"198.51.100.{44 + i}") == 454


def test_unlock_during_outage_reaches_redis_later(cluster, users):
    """clara locked by guesses on node 0 (locked there and in Redis, so on
    node 1 too); Redis stopped (its keys kept); `authrelay unlock clara` on
    node 0 frees her there at once and says the others follow; Redis
    answering again: node 0 sends the unlock, and node 1 serves her too.
    `authrelay lockouts` meanwhile says its list is local only."""
    lb, nodes, redis = cluster
    clara = users["clara"]
    codes = [auth_on_node(nodes[0], clara.name, f"guess-{i}", f"198.51.100.{50 + i}")
             for i in range(4)]
    assert codes == [535] * 4
    assert [auth_on_node(n, clara.name, clara.password, f"198.51.100.{54 + i}")
            for i, n in enumerate(nodes)] == [454, 454]
    redis_down(redis, nodes, how="pause")
    try:
        listing = lockouts_json(nodes[0])
        assert listing["local_only"] is True, listing
        assert "clara" in [x["login"] for x in listing["lockouts"]], listing
        r = subprocess.run([nodes[0].binary, "unlock", "-c", str(nodes[0].cfg_path),
                            clara.name], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "unlocked here; other gateways when Redis answers" in r.stdout, r.stdout
        assert auth_on_node(nodes[0], clara.name, clara.password, "198.51.100.56") == 235
    finally:
        redis_back(redis, nodes, how="pause")
    wait_until(lambda: redis.cli("EXISTS", login_key("clara") + ":l") == ["0"], 10,
               "the unlock sent to Redis once it answers")
    assert auth_on_node(nodes[1], clara.name, clara.password, "198.51.100.57") == 235


def test_lockouts_lists_the_whole_cluster(cluster, users):
    """gina locked by guesses on node 0 only; node 1, which never saw her,
    lists her lockout (read from Redis), and the list is not local only."""
    lb, nodes, redis = cluster
    gina = users["gina@example.test"]
    for i in range(4):
        assert auth_on_node(nodes[0], gina.name, f"guess-{i}", f"198.51.100.{60 + i}") == 535
    listing = lockouts_json(nodes[1])
    assert "local_only" not in listing, listing
    mine = [x for x in listing["lockouts"] if x["login"] == gina.name]
    assert len(mine) == 1, listing
    assert mine[0]["scope"] == "login" and mine[0]["client"] is None, mine
    assert mine[0]["failures"] == 4 and mine[0]["remaining"] > 0, mine
    # The text form as well, and unlock from the node that lists it.
    r = subprocess.run([nodes[1].binary, "lockouts", "-c", str(nodes[1].cfg_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and 'scope=login client=- user="gina@example.test"' in r.stdout, \
        r.stdout
    r = subprocess.run([nodes[1].binary, "unlock", "-c", str(nodes[1].cfg_path), gina.name],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: auth_on_node(nodes[0], gina.name, gina.password, "198.51.100.64") == 235,
               10, "gina unlocked on node 0")


def test_same_wrong_password_counts_once_with_secret_file(cluster):
    """secret_file set: two wrong passwords, each sent to both nodes again
    and again, are two distinct failures, not four: no lockout at 4."""
    lb, nodes, redis = cluster
    for rnd in range(3):
        for pw in ("same-1", "same-2"):
            for i, n in enumerate(nodes):
                assert auth_on_node(n, "ghost-same", pw, f"198.51.100.{70 + i}") == 535
    assert redis.cli("ZCARD", login_key("ghost-same") + ":f") == ["2"]
    assert redis.cli("EXISTS", login_key("ghost-same") + ":l") == ["0"]


def test_same_wrong_password_counts_per_node_without_secret_file(module_gateway, base_dir,
                                                                 cluster):
    """No secret_file: each node names a password under its own key, so the
    same two wrong passwords on both nodes are four failures, and lock."""
    _, _, redis = cluster
    prefix = "it-nosecret:"
    nodes = [module_gateway({
        "listener lb": dict(LB_LISTENER),
        "shared": {"redis": redis.address, "key_prefix": prefix, "timeout": 300},
        "protection": {"lockout_login_failures": 4, "delay_after": 100},
    }) for _ in range(2)]
    for pw in ("same-1", "same-2"):
        for i, n in enumerate(nodes):
            assert auth_on_node(n, "ghost-same", pw, f"198.51.100.{80 + i}") == 535
    key = f"{prefix}bf:l:" + hashlib.sha256(b"l" + b"ghost-same\0").hexdigest()[:32]
    assert redis.cli("ZCARD", key + ":f") == ["4"]
    assert redis.cli("EXISTS", key + ":l") == ["1"]
    assert auth_on_node(nodes[0], "ghost-same", "same-3", "198.51.100.82") == 454


def test_check_config_secret_file_as_auth_user(make_gateway, bin_path, base_dir):
    """[shared] secret_file only root can read is an error on its line (the
    auth process reads it after dropping privileges); one every user can
    read is a warning."""
    d = make_dir(base_dir, "secret-check-")
    secret = d / "root-only"
    secret.write_text("x" * 44 + "\n")
    os.chmod(secret, 0o600)
    gw = make_gateway({"shared": {"redis": f"{HOST}:6379", "secret_file": str(secret)}},
                      start=False)
    r = subprocess.run([bin_path, "check-config", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=30)
    path = re.escape(str(gw.cfg_path))
    line = gw.config_line("^secret_file = ")
    assert r.returncode == 78, r.stderr
    assert re.search(rf"^{path}:{line}: secret_file = {re.escape(str(secret))}: not readable "
                     rf"by user {AUTH_AS} \(Permission denied\)$", r.stderr, re.M), r.stderr
    os.chmod(secret, 0o644)
    r = subprocess.run([bin_path, "check-config", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{path}:{line}: warning: secret_file = {re.escape(str(secret))}: "
                     rf"readable by every user", r.stderr, re.M), r.stderr
