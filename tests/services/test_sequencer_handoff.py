"""Several sequencers on one store (as several `serve` workers are): every submission lands once,
indexes are contiguous, receipts verify and the store audits clean. On SQLite the sequencers also
queue on the hand-off lock file next to the database (released at every commit)."""

from __future__ import annotations

import threading
from pathlib import Path

from ledger.db.engine import make_engine, make_session_factory
from ledger.services.append import prepare
from ledger.services.audit import audit
from ledger.services.sequencer import Sequencer
from ledger.verify import verify_receipt
from tests.fixtures import sign


def test_two_sequencers_on_one_store_interleave_correctly(store):
    key = store.add_signer()
    engines = [make_engine(store.settings.database_url) for _ in range(2)]
    sequencers = [Sequencer(make_session_factory(e), store.log) for e in engines]
    try:
        with store.sessions() as session:
            prepared = [prepare(session, sign(key), now=store.clock) for _ in range(24)]
        results: list = []
        lock = threading.Lock()

        def run(i: int) -> None:
            for k in range(i, len(prepared), 4):
                (r,) = sequencers[k % 2].submit([prepared[k]])
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in sequencers:
            s.stop()
        for e in engines:
            e.dispose()
    assert all(r.created for r in results) and len(results) == 24
    assert sorted(r.receipt["index"] for r in results) == list(range(1, 25))
    for r in results:
        verify_receipt(r.receipt, store.log.vkey, public_keys=[key.public_key])
    with store.sessions() as session:
        report = audit(session, store.log)
    assert report.ok, report.to_json()
    if store.backend == "sqlite":
        assert Path(engines[0].url.database + "-sequencer.lock").exists()
