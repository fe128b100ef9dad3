"""`provledger serve` as real processes: several servers on one PostgreSQL sequence correctly
(they coordinate only through the database's sequencer lock), and serve uses every core by
default (one gunicorn worker per core)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ledger.db.models import Entry
from ledger.services.audit import audit
from ledger.services.registry import create_token
from ledger.verify import verify_receipt
from tests.fixtures import PYTHON, REPO, sign

PROVLEDGER = str(Path(PYTHON).with_name("provledger"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Serve:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = _free_port()
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
        deadline = time.monotonic() + 30
        while len(server.workers()) < (os.cpu_count() or 1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(server.workers()) == os.cpu_count()
    finally:
        server.stop()
