"""Slow and stalled clients cannot starve a real `provledger serve` (issue 10, done-when 4).

100 connections stall — half in their headers, half mid-upload with a valid token — and the
server still answers /healthz and appends honest submissions (no thread or pool exhaustion);
the read timeout closes stalled connections. Timings are measured in
bench/bench_slow_clients.py, not asserted here.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.services.registry import create_token
from tests.fixtures import PREDICATE, PROVLEDGER, envelope_bytes, sign
from tests.web.slow_clients import closed_by_server, request, running_server, stalled_header, stalled_upload

pytestmark = pytest.mark.slow


def _token(store) -> str:
    with store.sessions() as session, session.begin():
        return create_token(session, "slow", "submit", now=store.clock)


def test_healthz_and_appends_hold_while_100_connections_stall(store, tmp_path):
    token = _token(store)
    key = store.add_signer(allow=[PREDICATE])
    env = {**store.env, "PROVLEDGER_READ_TIMEOUT": "120"}
    with running_server(PROVLEDGER, env, tmp_path / "serve.log", "--threads", "4") as port:
        stalled = [stalled_header(port) for _ in range(50)] + [stalled_upload(port, token) for _ in range(50)]
        try:
            status, body = request(port, "GET", "/healthz", timeout=10)
            assert status == 200 and body["integrity"] == "verified"
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

            def submit(_: int) -> int:
                return request(port, "POST", "/api/v1/entries", body=envelope_bytes(sign(key)), headers=auth, timeout=30)[0]

            # more submissions at once than the server has threads or pooled connections
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(submit, range(32)))
            assert statuses == [201] * 32, statuses
            status, body = request(port, "GET", "/healthz", timeout=10)
            assert status == 200 and body["tree_size"] == store.size()
            assert all(not closed_by_server(s, 0.01) for s in stalled[:3] + stalled[-3:])  # still stalled, still open
        finally:
            for s in stalled:
                s.close()
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log


def test_the_read_timeout_closes_stalled_headers_and_uploads(sqlite_store, tmp_path):
    token = _token(sqlite_store)
    env = {**sqlite_store.env, "PROVLEDGER_READ_TIMEOUT": "2"}
    with running_server(PROVLEDGER, env, tmp_path / "serve.log") as port:
        header, upload = stalled_header(port), stalled_upload(port, token)
        try:
            assert closed_by_server(header, 30)
            assert closed_by_server(upload, 30)
        finally:
            header.close()
            upload.close()
        assert sqlite_store.size() == 0  # the half upload stored nothing
        assert request(port, "GET", "/healthz")[0] == 200


def test_a_bad_read_timeout_setting_refuses_to_start(sqlite_store):
    import subprocess  # noqa: PLC0415

    bad_settings = [("PROVLEDGER_READ_TIMEOUT", bad) for bad in ("0", "abc", "١٢")] + [
        ("PROVLEDGER_MAX_CONNECTIONS", "-5"), ("PROVLEDGER_SECURE_COOKIES", "maybe"),
    ]
    for name, bad in bad_settings:
        proc = subprocess.run(
            [PROVLEDGER, "serve", "--port", "0"], env={**sqlite_store.env, name: bad},
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert "refusing to start" in proc.stderr and name in proc.stderr and "Traceback" not in proc.stderr


def test_a_setting_read_or_checked_at_start_refuses_to_start_in_one_line(sqlite_store, tmp_path):
    """Each of these used to let the server start and then fail later (a traceback, or every
    bundle or TPM deployment refused one request at a time), or was silently ignored."""
    import subprocess  # noqa: PLC0415

    not_a_root = tmp_path / "root.json"
    not_a_root.write_text('{"mediaType": "something else"}')
    tee = tmp_path / "tee"
    tee.mkdir()
    (tee / "vendor.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    bad_settings = [
        ("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", "lots", "PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT"),
        ("PROVLEDGER_SIGSTORE_TRUSTED_ROOTS", str(tmp_path / "missing.json"), "missing.json"),
        ("PROVLEDGER_SIGSTORE_TRUSTED_ROOTS", str(not_a_root), "root.json"),
        ("PROVLEDGER_TEE_TRUST_DIR", str(not_a_root), "TEE trust folder"),
        ("PROVLEDGER_TEE_TRUST_DIR", str(tee), "vendor.pem"),
        ("PROVLEDGER_WITNESSES", "witness.example+01234567+AQ==", "PROVLEDGER_WITNESS_URLS"),
    ]
    for name, bad, says in bad_settings:
        proc = subprocess.run(
            [PROVLEDGER, "serve", "--port", "0", "--workers", "1"], env={**sqlite_store.env, name: bad},
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 1, (name, proc.stderr)
        assert "refusing to start" in proc.stderr and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_several_processes_share_the_socket_and_the_sequencer_lock(sqlite_store, tmp_path):
    token = _token(sqlite_store)
    key = sqlite_store.add_signer(allow=[PREDICATE])
    start = sqlite_store.size()
    with running_server(PROVLEDGER, sqlite_store.env, tmp_path / "serve.log", "--workers", "2", "--threads", "4") as port:
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def submit(_: int) -> int:
            return request(port, "POST", "/api/v1/entries", body=envelope_bytes(sign(key)), headers=auth, timeout=60)[0]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(submit, range(24)))
        assert statuses == [201] * 24, statuses
        # the two processes' sequencers interleave: neither takes the other's appends for a cut store
        for _ in range(10):  # new connections: both processes answer
            status, body = request(port, "GET", "/healthz")
            assert status == 200 and body["integrity"] == "verified"
    assert sqlite_store.size() == start + 24
    assert "(waitress, 2 process(es)" in (tmp_path / "serve.log").read_text()


def test_serve_listens_on_an_ipv6_address(sqlite_store, tmp_path):
    """--host ::1 was an OSError traceback ('Address family for hostname not supported'): the
    listening socket was always IPv4."""
    import http.client  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback: {exc}")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PROVLEDGER, "serve", "--host", "::1", "--port", "0", "--workers", "1"],
                                env=sqlite_store.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        line = next(l for l in log.read_text().splitlines() if "serving" in l)
        port = int(line.split("http://[::1]:", 1)[1].split("/", 1)[0])
        while True:
            conn = http.client.HTTPConnection("::1", port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                assert conn.getresponse().status == 200
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            finally:
                conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
