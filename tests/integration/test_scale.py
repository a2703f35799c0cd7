"""Several gateways behind a real HAProxy (issue 14): two authrelay nodes
with their own spools, HAProxy in front with `send-proxy-v2` and `option
smtpchk`, clients from several loopback source addresses. Both nodes must
serve and log the real client addresses; HAProxy's health checks (PROXY v2
LOCAL) must keep both nodes up; a direct client that is not a trusted proxy
is refused, and so is the trusted proxy's address without a header."""

import re

import pytest

from harness import HOST, SMTPConn, make_dir, proxy_v1, wait_until
from haproxy_fixture import HAProxy

LB_LISTENER = {"role": "submission", "tls": "none", "allow_plaintext_auth": True,
               "default_domain": "example.test", "max_auth_failures": 20,
               "proxy_protocol": True, "proxy_trusted_networks": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def cluster(module_gateway, base_dir):
    nodes = [module_gateway({"listener lb": dict(LB_LISTENER)}) for _ in range(2)]
    lb = HAProxy(make_dir(base_dir, "haproxy-"),
                 [(n.host("lb"), n.port("lb")) for n in nodes]).start()
    try:
        lb.wait_servers_up()
        yield lb, nodes
    finally:
        lb.stop()


def through_lb(lb, source):
    c = SMTPConn(HOST, lb.port, source=source)
    c.greeting = c.read_reply()
    assert c.greeting.code == 220, c.greeting
    return c


def test_health_checks_keep_both_nodes_up(cluster):
    lb, nodes = cluster
    assert set(lb.server_states().values()) == {"UP"}
    for n in nodes:
        # option smtpchk: the LOCAL header, then HELO, served as the proxy.
        n.wait_for_log(r"connect client=127\.0\.0\.1 listener=lb proxy=127\.0\.0\.1")


def test_real_client_addresses_on_both_nodes(cluster):
    lb, nodes = cluster
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
    lb, nodes = cluster
    n = nodes[0]
    # Not a trusted proxy, with a header: closed without a greeting.
    mark = n.log_mark()
    c = SMTPConn(n.host("lb"), n.port("lb"), source="127.0.0.3",
                 proxy=proxy_v1("192.0.2.1", 1))
    assert c.wait_closed() == b""
    n.wait_for_log(r"refuse client=127\.0\.0\.3 listener=lb reason=proxy_trusted_networks",
                   since=mark)
    # The trusted proxy's address without a header: closed as well.
    c = SMTPConn(n.host("lb"), n.port("lb"), source="127.0.0.1")
    c.send("EHLO client.test.example\r\n")
    assert c.wait_closed() == b""
    n.wait_for_log(r"refuse proxy=127\.0\.0\.1 listener=lb reason=proxy_protocol", since=mark)
