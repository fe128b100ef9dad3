"""`provledger serve` as real processes: several servers on one PostgreSQL sequence correctly
(they coordinate only through the database's sequencer lock), serve uses every core by default
(one worker process per core), a worker that dies is started again, and workers that fail to
start stop the server with their reason."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.db.models import Entry
from ledger.services.audit import audit
from ledger.services.registry import create_token
from ledger.verify import verify_receipt
from tests.fixtures import PYTHON, REPO, sign

PROVLEDGER = str(Path(PYTHON).with_name("provledger"))


def _submitter(st) -> tuple[Any, str]:  # type: ignore[no-untyped-def]
    """A signer allowed SLSA provenance and a submit token, in store ``st``."""
    key = st.add_signer(allow=["https://slsa.dev/*"])
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=st.clock)
    return key, token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Serve:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = _free_port()
        self.stderr_text = ""
        self.proc = subprocess.Popen(
            [PROVLEDGER, "serve", "--port", str(self.port), *args], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("serve exited: " + self.proc.stderr.read().decode())  # type: ignore[union-attr]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("serve did not answer /healthz within 90 s")

    def post(self, body: bytes, token: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("POST", "/api/v1/entries", body=body,
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def wait_for_workers(self, n: int, *, settle: float = 0.0) -> list[int]:
        """The worker pids once ``n`` are running (within 30 s); ``settle`` seconds more lets the
        last one forked reach its event loop, so that new connections spread over all of them."""
        deadline = time.monotonic() + 30
        while len(self.workers()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(settle)
        return self.workers()

    def workers(self) -> list[int]:
        found: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return found

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.stderr_text = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()


def test_two_serve_processes_on_one_postgresql_sequence_correctly(postgres_store):
    st = postgres_store
    key = st.add_signer(allow=["https://slsa.dev/*"])
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=st.clock)
    servers = [_Serve(st.env, "--workers", "1", "--threads", "8") for _ in range(2)]
    try:
        bodies = [json.dumps(sign(key)).encode() for _ in range(40)]
        results: list[tuple[int, dict]] = []
        lock = threading.Lock()

        def client(c: int) -> None:
            for i in range(c, len(bodies), 8):
                out = servers[i % 2].post(bodies[i], token)
                with lock:
                    results.append(out)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in servers:
            s.stop()
    assert [status for status, _ in results] == [201] * len(bodies), results[:3]
    indexes = sorted(r["index"] for _, r in results)
    assert indexes == list(range(1, 1 + len(bodies)))  # entry 0 is the signer's key event
    for _, receipt in results:
        verify_receipt(receipt, st.log.vkey, public_keys=[key.public_key])
    with st.sessions() as session:
        report = audit(session, st.log)
        assert report.ok, report.to_json()
        stored = dict(session.execute(select(Entry.idx, Entry.data)).all())
    import base64  # noqa: PLC0415

    for _, receipt in results:
        assert stored[receipt["index"]] == base64.b64decode(receipt["entry"])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs at least two cores to tell the default from 1")
def test_serve_runs_one_worker_per_core_by_default(sqlite_store):
    server = _Serve(sqlite_store.env, "--threads", "2")
    try:
        assert len(server.wait_for_workers(os.cpu_count() or 1)) == os.cpu_count()
    finally:
        server.stop()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two worker processes")
def test_a_worker_that_dies_is_reported_and_started_again(sqlite_store):
    """A worker killed while serving (the OOM killer, say) is not silently lost: the supervisor
    says so and starts another, so the server keeps its cores; submissions go on landing."""
    from web.server import BOOT_SECONDS  # noqa: PLC0415

    key, token = _submitter(sqlite_store)
    server = _Serve(sqlite_store.env, "--workers", "2", "--threads", "2")
    try:
        first = server.wait_for_workers(2)
        assert len(first) == 2
        time.sleep(BOOT_SECONDS + 1)  # past start-up: a death now is not a failure to start
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (len(server.workers()) < 2 or first[0] in server.workers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        now = server.workers()
        assert len(now) == 2 and first[0] not in now and first[1] in now
        for _ in range(6):  # a connection each: whichever worker takes it appends
            status, body = server.post(json.dumps(sign(key)).encode(), token)
            assert status == 201, body
    finally:
        server.stop()
    err = server.stderr_text
    assert re.search(rf"worker \d+ \(pid {first[0]}\) ended on signal 9; starting it again", err), err


def test_workers_that_fail_to_start_stop_the_server_and_say_why(sqlite_store):
    """A worker that ends as it starts stops the server (exit 1) with its reason on stderr,
    rather than leaving a server that runs on fewer processes than it says."""
    (sqlite_store.settings.home / "secret.key").write_text("short\n")
    env = {k: v for k, v in sqlite_store.env.items() if k != "PROVLEDGER_SECRET_KEY"}
    proc = subprocess.run([PROVLEDGER, "serve", "--port", str(_free_port()), "--workers", "2", "--threads", "2"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "is too short; delete it to make a new one" in proc.stderr
    assert "as it started; stopping the server" in proc.stderr


def test_default_workers_are_one_per_core_within_the_option_s_range(monkeypatch):
    import os  # noqa: PLC0415

    from ledger.config import MAX_PROCESSES  # noqa: PLC0415
    from web.server import default_workers  # noqa: PLC0415

    for cores, expected in ((None, 1), (1, 1), (2, 2), (64, 64), (1024, MAX_PROCESSES)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers() == expected, cores


def test_pace_batches_setting_defaults_to_several_processes_and_refuses_other_values():
    from ledger.errors import ConfigurationError  # noqa: PLC0415
    from web.server import pace_batches  # noqa: PLC0415

    for env, workers, expected in (({}, 1, False), ({}, 2, True), ({"PROVLEDGER_PACE_BATCHES": ""}, 4, True),
                                   ({"PROVLEDGER_PACE_BATCHES": "auto"}, 1, False), ({"PROVLEDGER_PACE_BATCHES": "on"}, 1, True),
                                   ({"PROVLEDGER_PACE_BATCHES": "off"}, 2, False)):
        assert pace_batches(workers, env) is expected, (env, workers)
    for bad in ("yes", "ON", "1", "off\x00"):
        with pytest.raises(ConfigurationError, match="PROVLEDGER_PACE_BATCHES must be one of auto, on, off"):
            pace_batches(2, {"PROVLEDGER_PACE_BATCHES": bad})


def test_serve_refuses_a_bad_pace_batches_setting_before_it_listens(sqlite_store):
    env = {**sqlite_store.env, "PROVLEDGER_PACE_BATCHES": "sometimes"}
    proc = subprocess.run([PROVLEDGER, "serve", "--port", str(_free_port()), "--workers", "2"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to start: PROVLEDGER_PACE_BATCHES must be one of auto, on, off, not 'sometimes'" in proc.stderr
    assert "serving" not in proc.stderr
