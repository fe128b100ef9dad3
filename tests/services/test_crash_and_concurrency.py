"""Crashes lose no acknowledged entry; concurrent processes sequence through the database.

The submitter is a real process (tests/services/appender.py) that prints each receipt only after
its batch committed. Killing it with SIGKILL at random moments must leave a store that audits
clean, holds every acknowledged index with the acknowledged leaf, and keeps appending.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from ledger.db.models import Entry
from ledger.services.audit import audit
from ledger.verify import verify_receipt
from tests.fixtures import PYTHON, REPO

APPENDER = str(REPO / "tests" / "services" / "appender.py")
KILLS = 3


def _key_file(st, tmp_path: Path) -> str:
    key = st.add_signer(allow=["https://slsa.dev/*"])
    path = tmp_path / "signer.pem"
    path.write_bytes(key.to_pem())
    return str(path)


class Appender:
    """One appender process; its acknowledged lines are collected by a reader thread."""

    def __init__(self, st, key_file: str, batch_size: int, batches: int | None = None, *, receipts: bool = False):
        argv = [PYTHON, APPENDER, key_file, str(batch_size)]
        if batches is not None:
            argv.append(str(batches))
        if receipts:
            argv.append("--receipts")
        self.proc = subprocess.Popen(argv, env=st.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        self.acked: list[dict] = []
        self.enough = threading.Event()
        self.want = 1
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith(b"\n"):
                break  # cut short by the kill: never acknowledged
            self.acked.append(json.loads(line))
            if len(self.acked) >= self.want:
                self.enough.set()
        self.enough.set()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()

    def finish(self) -> None:
        self.proc.wait(timeout=600)
        self.reader.join(timeout=60)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        self.proc.stdout.close()
        assert self.proc.returncode == 0, err


def _check_acknowledged(st, acked: list[dict]) -> None:
    with st.sessions() as session:
        report = audit(session, st.log)
        assert report.ok, report.to_json()
        stored = dict(session.execute(select(Entry.idx, Entry.leaf_hash)).all())
    for line in acked:
        assert line["index"] in stored, f"acknowledged entry {line['index']} was lost"
        assert stored[line["index"]].hex() == line["leaf_hash"]


@pytest.mark.slow
def test_kill_9_mid_batch_loses_no_acknowledged_entry(store, tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    key_file = _key_file(store, tmp_path)
    acked: list[dict] = []
    for _ in range(KILLS):
        app = Appender(store, key_file, batch_size=rng.choice([20, 40, 60]))
        app.want = rng.randint(1, 3) * 20
        assert app.enough.wait(timeout=300), f"no receipts (seed {seed})"
        # a random moment after some batches were acknowledged: usually mid-batch
        threading.Event().wait(rng.uniform(0.0, 0.4))
        app.kill()
        assert app.acked, f"nothing acknowledged before the kill (seed {seed})"
        acked += app.acked
        _check_acknowledged(store, acked)
        assert store.size() >= len(acked)
    # indexes are never handed out twice
    assert len({a["index"] for a in acked}) == len(acked)
    # and the store carries on cleanly after the crashes
    before = store.size()
    results = store.fill([5])
    assert [r.receipt["index"] for r in results] == list(range(before, before + 5))
    _check_acknowledged(store, acked)


def _concurrent(st, tmp_path, processes: int = 4, batches: int = 5, batch_size: int = 8) -> None:
    key_file = _key_file(st, tmp_path)
    base, _, checkpoints_before, _ = st.state()  # the signer's key event: one entry, one checkpoint
    assert (base, checkpoints_before) == (1, 2)
    apps = [Appender(st, key_file, batch_size, batches, receipts=True) for _ in range(processes)]
    for app in apps:
        app.finish()
    acked = [line for app in apps for line in app.acked]
    total = processes * batches * batch_size
    assert len(acked) == total
    assert sorted(a["index"] for a in acked) == list(range(base, base + total))  # unique and contiguous
    assert st.size() == base + total
    for line in acked:
        verified = verify_receipt(line["receipt"], st.log.vkey)
        assert verified.index == line["index"]
    _check_acknowledged(st, acked)
    # every batch got its own checkpoint: one per batch, on top of the empty tree's and the key event's
    assert st.state()[2] == checkpoints_before + processes * batches


@pytest.mark.slow
def test_concurrent_processes_sequence_through_the_database(store, tmp_path):
    _concurrent(store, tmp_path)
