"""The audit's fast path (whole aligned chunks checked with list comparisons) must reach exactly
the verdict of the entry-by-entry slow path, on intact and on damaged stores alike."""

from __future__ import annotations

import pytest

from ledger.services import audit as audit_module
from tests.services.test_tamper import BATCHES, CASES, SIZE


def _report(store, chunk_level, monkeypatch):
    monkeypatch.setattr(audit_module, "CHUNK_LEVEL", chunk_level)
    calls = {"fast": 0}
    original = audit_module._Auditor.fast_chunk

    def counting(self, rows):
        ok = original(self, rows)
        calls["fast"] += ok
        return ok

    monkeypatch.setattr(audit_module._Auditor, "fast_chunk", counting)
    with store.sessions() as session:
        return audit_module.audit(session, store.log).to_json(), calls["fast"]


@pytest.fixture
def ledger40(store):
    store.add_signer()  # its key event is entry 0 (as in test_tamper)
    store.fill(BATCHES)
    assert store.size() == 1 + SIZE
    return store


@pytest.mark.parametrize("chunk_level", [1, 2, 3, 4])
def test_fast_path_is_taken_on_an_intact_ledger(ledger40, chunk_level, monkeypatch):
    report, fast = _report(ledger40, chunk_level, monkeypatch)
    size = ledger40.size()
    assert report["ok"] and report["tree_size"] == size == 1 + SIZE
    assert fast == size // (1 << chunk_level)  # every complete aligned chunk


@pytest.mark.parametrize("case", list(CASES))
def test_fast_and_slow_paths_agree_on_damage(ledger40, case, monkeypatch):
    CASES[case](ledger40)
    slow, fast_used = _report(ledger40, 30, monkeypatch)
    assert fast_used == 0
    for chunk_level in (2, 3):
        fast, _ = _report(ledger40, chunk_level, monkeypatch)
        assert fast == slow, (chunk_level, fast, slow)
    assert not slow["ok"]
