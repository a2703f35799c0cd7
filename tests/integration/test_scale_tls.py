# SPDX-License-Identifier: ISC
"""[shared] tls = yes: the gateways reach a real redis-server on its
tls-port only, its certificate made by a CA of the test.

Two nodes behind a real HAProxy share the lockout budget over TLS, Redis
asking for client certificates (tls-auth-clients yes): one node verifies
the name redis.test (tls_server_name, also the SNI), the other the IP
address of `redis`. A certificate from another CA, a wrong
tls_server_name or a missing client certificate is an outage: logged
with the verification error, counted locally, AUTH answered at once and
never with a 4xx/5xx of its own. check-config refuses tls with a unix:
address, a tls_* key without tls = yes, and a tls_ca_file that auth_user
cannot read."""

import os
import re
import time

import pytest

import harness
from harness import SMTPConn, make_dir
from haproxy_fixture import HAProxy
from redis_fixture import TLS_NAME, Redis, RedisTLS, make_ca
from test_scale import AUTH_LINE, LB_LISTENER, PREFIX, auth_through_lb, lock_keys, redis_state



REDIS_PASSWORD = "redis-tls-secret"


@pytest.fixture(scope="module")
def tls_redis(base_dir):
    d = make_dir(base_dir, "redis-tls-")
    redis = Redis(d, password=REDIS_PASSWORD, tls=RedisTLS(d, client_certs=True)).start()
    # Read by the auth process as auth_user.
    redis.password_file = d / "password"
    redis.password_file.write_text(REDIS_PASSWORD + "\n")
    os.chmod(redis.password_file, 0o644)
    yield redis
    redis.stop()


def shared_tls(redis, **extra):
    t = redis.tls
    keys = {"redis": redis.address, "key_prefix": PREFIX, "timeout": 300, "tls": True,
            "tls_ca_file": str(t.ca), "tls_cert_file": str(t.client_cert),
            "tls_key_file": str(t.client_key), "password_file": str(redis.password_file)}
    keys.update(extra)
    return {k: v for k, v in keys.items() if v is not None}


@pytest.fixture(scope="module")
def tls_cluster(module_gateway, base_dir, tls_redis):
    lb = None
    try:
        nodes = [module_gateway({
            "listener lb": dict(LB_LISTENER),
            "shared": shared_tls(tls_redis, tls_server_name=name),
            "protection": {"lockout_login_failures": 4, "delay_after": 100},
        }) for name in (TLS_NAME, None)]
        lb = HAProxy(make_dir(base_dir, "haproxy-"),
                     [(n.host("lb"), n.port("lb")) for n in nodes]).start()
        lb.wait_servers_up()
        yield lb, nodes
    finally:
        if lb is not None:
            lb.stop()


def test_lockout_counts_across_nodes_over_tls(tls_cluster, tls_redis, users):
    """lockout_login_failures = 4 over both nodes through TLS (client
    certificates given): locked at the fourth guess, on both nodes."""
    lb, nodes = tls_cluster
    for n in nodes:
        n.wait_for_log(r"shared: redis=\S+ connected over TLS: counting is shared")
    assert [redis_state(n) for n in nodes] == ["up", "up"]
    dave = users["dave"]
    codes = [auth_through_lb(lb, dave.name, f"tls-guess-{i}", f"127.0.0.{50 + i}")
             for i in range(4)]
    assert codes == [535] * 4
    marks = [n.log_mark() for n in nodes]
    codes = [auth_through_lb(lb, dave.name, dave.password, f"127.0.0.{60 + i}")
             for i in range(2)]
    assert codes == [454, 454]
    for n, mark in zip(nodes, marks):
        m = n.wait_for_log(AUTH_LINE.format(user="dave", client=r"127\.0\.0\.6\d"),
                           since=mark)
        assert m.group(1, 2) == ("tempfail", "locked"), m.group(0)
    assert len(lock_keys(tls_redis)) == 1
    # Nothing reached Redis's plaintext side: it has none.
    assert not any(re.search(r"unreachable", n.log_text()) for n in nodes)


PLAIN = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
         "default_domain": "example.test"}


def auth_direct(gw, user, password):
    """AUTH PLAIN on the node's plaintext listener: (code, seconds)."""
    c = SMTPConn(gw.host("plain"), gw.port("plain"))
    c.greeting = c.read_reply()
    c.ehlo()
    start = time.monotonic()
    code = c.auth_plain(user, password).code
    took = time.monotonic() - start
    c.close()
    return code, took


@pytest.mark.parametrize("case", ["other_ca", "wrong_name", "no_client_cert"])
def test_refused_certificate_is_an_outage(make_gateway, base_dir, tls_redis, users, case):
    """Each node refuses what it cannot verify: the outage is logged once
    with the reason, and log_err names the verification error; AUTH is
    answered at once on local counts (235, and 535 for a wrong password)."""
    if case == "other_ca":
        other, _ = make_ca(make_dir(base_dir, "other-ca-"), "other-ca")
        shared = shared_tls(tls_redis, tls_ca_file=str(other))
        # Redis sends its CA along: the chain ends in a root we do not trust.
        err = (r"TLS handshake failed: certificate: (unable to get local issuer certificate|"
               r"self-signed certificate in certificate chain)")
    elif case == "wrong_name":
        shared = shared_tls(tls_redis, tls_server_name="other.test")
        err = r"TLS handshake failed: certificate: hostname mismatch"
    else:
        shared = shared_tls(tls_redis, tls_cert_file=None, tls_key_file=None)
        # TLS 1.3: the client finishes its handshake before the server
        # reads its (missing) certificate; the alert comes after.
        err = r"certificate required"
    nodes = [make_gateway({"listener plain": dict(PLAIN), "shared": shared})
             for _ in range(2)]
    for n in nodes:
        n.wait_for_log(r"auth\[\d+\] error: shared: redis=\S+ .*" + err)
        n.wait_for_log(r"shared: redis=\S+ unreachable \(.*" + err)
        assert redis_state(n) == "down"
        alice = users["alice"]
        code, took = auth_direct(n, alice.name, alice.password)
        assert code == 235 and took < 1.5, (code, took)
        code, took = auth_direct(n, alice.name, "wrong")
        assert code == 535 and took < 1.5, (code, took)
    # Retried every second, the outage is still told once.
    for n in nodes:
        harness.wait_until(lambda: n.log_text().count("still unreachable") >= 2, 10,
                           "two retries of the link")
        assert len(re.findall(r"shared: redis=\S+ unreachable", n.log_text())) == 1


def test_handshake_over_tls(make_gateway, base_dir, tls_redis, users):
    """AUTH and SELECT go first on the TLS link, in order: with database = 2
    the brute-force keys land there; a wrong password is refused by Redis,
    logged as an error, and an outage like any other."""
    gw = make_gateway({"listener plain": dict(PLAIN),
                       "shared": shared_tls(tls_redis, database=2),
                       "protection": {"lockout_login_failures": 4}})
    gw.wait_for_log(r"shared: redis=\S+ connected over TLS: counting is shared")
    assert auth_direct(gw, "erin", "wrong-over-tls")[0] == 535
    harness.wait_until(lambda: [k for k in tls_redis.cli("-n", "2", "KEYS", f"{PREFIX}bf:*")
                                if k], 10, "erin's failure in database 2")
    wrong = make_dir(base_dir, "wrong-pw-") / "password"
    wrong.write_text("not-the-password\n")
    os.chmod(wrong, 0o644)
    bad = make_gateway({"listener plain": dict(PLAIN),
                        "shared": shared_tls(tls_redis, password_file=str(wrong))})
    bad.wait_for_log(r"auth\[\d+\] error: shared: redis=\S+ refused the handshake: WRONGPASS")
    bad.wait_for_log(r"shared: redis=\S+ unreachable \(handshake refused\)")
    alice = users["alice"]
    code, took = auth_direct(bad, alice.name, alice.password)
    assert code == 235 and took < 1.5, (code, took)
    assert redis_state(bad) == "down"


def check_config(bin_path, gw):
    r = harness.run_tool([bin_path, "check-config", "-c", gw.cfg_path])
    return r.returncode, r.stderr.decode()


def test_check_config_refuses_tls_with_unix(make_gateway, bin_path):
    gw = make_gateway({"shared": {"redis": "unix:/run/redis/redis.sock", "tls": True}},
                      start=False)
    code, err = check_config(bin_path, gw)
    assert code == 78, err
    line = gw.config_line(r"^tls = yes")
    assert f"{gw.cfg_path}:{line}: [shared] tls = yes needs a TCP address in redis" in err, err


def test_check_config_tls_key_needs_tls(make_gateway, bin_path, tls_redis):
    gw = make_gateway({"shared": {"redis": tls_redis.address,
                                  "tls_ca_file": str(tls_redis.tls.ca)}}, start=False)
    code, err = check_config(bin_path, gw)
    assert code == 78, err
    line = gw.config_line(r"^tls_ca_file = ")
    assert f"{gw.cfg_path}:{line}: [shared] tls_ca_file needs tls = yes" in err, err


def test_check_config_tls_ca_file_readable_by_auth_user(make_gateway, bin_path, base_dir,
                                                         tls_redis):
    """The auth process reads tls_ca_file at start as auth_user: a missing
    file and one only root can read are refused, naming the key's line."""
    ca = make_dir(base_dir, "ca-") / "ca.pem"
    gw = make_gateway({"shared": shared_tls(tls_redis, tls_ca_file=str(ca))}, start=False)
    line = gw.config_line(r"^tls_ca_file = ")
    code, err = check_config(bin_path, gw)
    assert code == 78, err
    assert re.search(rf"^{re.escape(str(gw.cfg_path))}:{line}: tls_ca_file = "
                     rf"{re.escape(str(ca))}: ", err, re.M), err
    ca.write_bytes(tls_redis.tls.ca.read_bytes())
    os.chmod(ca, 0o600)
    code, err = check_config(bin_path, gw)
    assert code == 78, err
    assert (f"{gw.cfg_path}:{line}: tls_ca_file = {ca}: not readable by user "
            f"{harness.AUTH_AS} (Permission denied)\n") in err, err
    os.chmod(ca, 0o644)
    code, err = check_config(bin_path, gw)
    assert code == 0, err
    # The daemon starts with it, over TLS.
    gw.start()
    gw.wait_for_log(r"shared: redis=\S+ connected over TLS")
