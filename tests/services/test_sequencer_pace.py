"""``Sequencer.pace``: with ``pace_batches`` (``serve`` with several processes) and on SQLite, while
a process's sequencer holds the write lock, the batches that process is preparing wait between
their records; once the group has committed, or failed, they go on. On PostgreSQL (the server does
the writes), or without ``pace_batches`` (one process), they never wait."""

from __future__ import annotations

import threading
import time

import pytest

from ledger.errors import UnavailableError
from ledger.services import append, sequencer as sequencer_module
from ledger.services.append import prepare, prepare_batch
from ledger.services.sequencer import Sequencer
from ledger.verify import verify_receipt
from tests.fixtures import sign
from web.app import create_app


def _pacer_inside_the_lock(monkeypatch: pytest.MonkeyPatch, seq: Sequencer, hold: float, *, fail: bool = False) -> dict:
    """Make the sequencer's integration start a thread that calls ``seq.pace()`` while the lock
    is held, and keep the lock ``hold`` seconds longer; what the thread saw is returned."""
    seen: dict = {}
    real = append.integrate

    def integrate(*args, **kwargs):
        integration = real(*args, **kwargs)  # the lock is held from here on

        def pacer() -> None:
            start = time.monotonic()
            seq.pace()
            seen["waited"] = time.monotonic() - start

        thread = threading.Thread(target=pacer)
        thread.start()
        time.sleep(hold)
        seen["blocked_inside"] = thread.is_alive()
        seen["thread"] = thread
        if fail:
            raise UnavailableError("the test fails this group after its writes")
        return integration

    monkeypatch.setattr(sequencer_module, "integrate", integrate)
    return seen


@pytest.mark.parametrize("pace_batches", [True, False])
def test_pace_waits_while_the_lock_is_held_and_not_after(store, monkeypatch, pace_batches):
    """Without ``pace_batches`` (one ``serve`` process, and the default) nothing else would use the
    other cores while the sequencer writes: its preparers never wait."""
    key = store.add_signer()
    seq = Sequencer(store.sessions, store.log, pace_batches=pace_batches)
    monkeypatch.setattr(sequencer_module, "PACE_LIMIT", 10.0)  # a return at the limit would show
    seen = _pacer_inside_the_lock(monkeypatch, seq, 0.3)
    try:
        with store.sessions() as session:
            prepared = prepare(session, sign(key), now=store.clock)
        (result,) = seq.submit([prepared])
        seen["thread"].join(5)
        if pace_batches and store.backend == "sqlite":
            assert seen["blocked_inside"], "pace() returned while the sequencer still held the lock"
            assert 0.2 <= seen["waited"] < 5.0  # until the lock was let go, not the limit
        else:
            assert not seen["blocked_inside"] and seen["waited"] < 0.2
        verify_receipt(result.receipt, store.log.vkey, public_keys=[key.public_key])
        start = time.monotonic()
        seq.pace()  # nothing is being sequenced: no wait
        assert time.monotonic() - start < 0.1
    finally:
        seq.stop()


def test_pace_goes_on_after_a_group_that_failed(store, monkeypatch):
    key = store.add_signer()
    seq = Sequencer(store.sessions, store.log, pace_batches=True)
    seen = _pacer_inside_the_lock(monkeypatch, seq, 0.2, fail=True)
    try:
        with store.sessions() as session:
            prepared = prepare(session, sign(key), now=store.clock)
        size = store.size()
        with pytest.raises(UnavailableError):
            seq.submit([prepared])
        seen["thread"].join(5)
        assert seen["blocked_inside"] == (store.backend == "sqlite")
        assert store.size() == size  # the group was rolled back
        start = time.monotonic()
        seq.pace()
        assert time.monotonic() - start < 0.1, "a failed group left the preparers waiting"
    finally:
        seq.stop()


def test_pace_waits_no_longer_than_its_limit(store, monkeypatch):
    seq = Sequencer(store.sessions, store.log, pace_batches=True)
    monkeypatch.setattr(sequencer_module, "PACE_LIMIT", 0.05)
    seq._unlocked.clear()  # as if a group held the lock for ever
    start = time.monotonic()
    seq.pace()
    assert 0.04 <= time.monotonic() - start < 1.0


def test_the_app_paces_batches_only_when_told(store):
    """``serve`` sets PACE_BATCHES from PROVLEDGER_PACE_BATCHES (``web.server.pace_batches``); the app's default is off."""
    for config, expected in (({}, False), ({"PACE_BATCHES": True}, True)):
        app = create_app({"SETTINGS": store.settings, "TESTING": True, **config})
        ext = app.extensions["provledger"]
        try:
            assert ext.sequencer.pace_batches is expected
        finally:
            ext.sequencer.stop()
            ext.engine.dispose()


def test_prepare_batch_paces_before_parsing_and_before_checking_each_record(store):
    key = store.add_signer()
    raws = [sign(key) for _ in range(3)] + [{"payload": 1}]
    calls: list[int] = []
    with store.sessions() as session:
        paced = prepare_batch(session, raws, now=store.clock, pace=lambda: calls.append(1))
        plain = prepare_batch(session, raws, now=store.clock)
    assert len(calls) == 2 * len(raws)
    assert [type(p) for p in paced] == [type(p) for p in plain]
    assert [p.envelope_hash for p in paced[:3]] == [p.envelope_hash for p in plain[:3]]
