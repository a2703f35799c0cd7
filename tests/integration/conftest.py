# SPDX-License-Identifier: ISC
"""
conftest.py - fixtures for the authrelay integration tests.

  bin_path      the daemon (AUTHRELAY_BIN or build/authrelay); tests skip without it
  base_dir      one 0755 temp tree for the whole run, removed at the end
                unless AUTHRELAY_KEEP_TMP=1 (failing tests print their logs)
  tls_files     (cert, key) self-signed ECDSA P-256 for mx.test.example
  users         name -> harness.User, one per stored-hash format
  make_gateway  factory: make_gateway(config_overrides, users=..., start=True)
  gw            a default gateway shared by the tests of one module (tests that
                change config, kill processes or send signals use make_gateway)
  module_gateway  factory for gateways with special config shared by one module

When a test fails, the log lines its gateways wrote during the test are printed.
Every gateway's whole log is checked at teardown: no password of the standard
users, nor their base64 or PLAIN payloads, may appear in it.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def bin_path():
    path = harness.authrelay_bin()
    if path is None:
        pytest.skip("authrelay binary not built (build/authrelay or AUTHRELAY_BIN)")
    return path


@pytest.fixture(scope="session")
def base_dir():
    d = Path(tempfile.mkdtemp(prefix="authrelay-it-"))
    os.chmod(d, 0o755)
    yield d
    if os.environ.get("AUTHRELAY_KEEP_TMP"):
        print(f"\nauthrelay integration temp tree kept in {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_files(base_dir):
    d = harness.make_dir(base_dir, "tls-")
    return harness.make_cert(d)


@pytest.fixture(scope="session")
def users():
    return harness.standard_users()


def _hashes(users):
    return {u.name: u.hash for u in users.values()}


def _start(bin_path, base_dir, tls_files, users, config, user_hashes, start, name):
    cert, key = tls_files
    gw = harness.Gateway(bin_path, base_dir, cert, key,
                         user_hashes if user_hashes is not None else _hashes(users),
                         config=config, name=name)
    if start:
        try:
            gw.start()
        except BaseException:
            print("gateway failed to start; log:\n" + gw.log_tail())
            gw.stop()
            raise
    return gw


def _test_failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


def _dump_logs(gateways, marks):
    for g in gateways:
        print(f"--- log of {g.dir.name} during the test:")
        print(g.log_tail(marks.get(id(g), 0)))


@pytest.fixture
def make_gateway(request, bin_path, base_dir, tls_files, users):
    """make_gateway(config=None, users=None, start=True) -> harness.Gateway.
    users: name -> stored hash (default: the standard users)."""
    made = []
    std_users = users

    def make(config=None, users=None, start=True):
        gw = _start(bin_path, base_dir, tls_files, std_users, config, users, start,
                    request.node.name[:40].replace("/", "_").replace("[", "-").rstrip("]"))
        made.append(gw)
        return gw

    yield make
    harness.close_all_connections()
    if _test_failed(request):
        _dump_logs([g for g in made if g.proc is not None], {})
    errors = []
    for gw in made:
        try:
            gw.stop()
        except AssertionError as e:
            errors.append(str(e))
    for gw in made:
        try:
            gw.assert_no_secrets(harness.user_secrets(std_users))
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


@pytest.fixture(scope="module")
def module_gateway(request, bin_path, base_dir, tls_files, users):
    """Factory for gateways shared by the tests of one module:
    module_gateway(config=None, users=None)."""
    made = []

    def make(config=None, users=None):
        gw = _start(bin_path, base_dir, tls_files, std_users, config, users, True,
                    f"mod-{request.module.__name__}-{len(made)}")
        made.append(gw)
        return gw

    std_users = users
    yield make
    harness.close_all_connections()
    for gw in made:
        gw.stop()
    for gw in made:
        gw.assert_no_secrets(harness.user_secrets(std_users))


@pytest.fixture(scope="module")
def gw(request, bin_path, base_dir, tls_files, users):
    g = _start(bin_path, base_dir, tls_files, users, None, None, True,
               "shared-" + request.module.__name__)
    yield g
    harness.close_all_connections()
    g.stop()
    g.assert_no_secrets(harness.user_secrets(users))


@pytest.fixture(autouse=True)
def _per_test(request):
    """Close leftover connections; on failure print what the gateways logged."""
    marks = {id(g): g.log_mark() for g in harness.ACTIVE_GATEWAYS}
    yield
    harness.close_all_connections()
    if _test_failed(request):
        _dump_logs([g for g in harness.ACTIVE_GATEWAYS if id(g) in marks], marks)
