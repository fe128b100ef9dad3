"""The hash-level audit on several processes (complete subtrees re-measured in forked workers,
folded in order) must reach exactly the verdict of the entry-by-entry pass, on intact and on
damaged stores alike; and the subtree plan tiles the log with aligned complete subtrees."""

from __future__ import annotations

import pytest

from ledger.services import audit as audit_module
from ledger.services.audit_chunks import interior_position, plan_subtrees
from tests.services.test_tamper import BATCHES, CASES, SIZE


def _report(store, monkeypatch, *, chunk_level, min_level, workers):
    monkeypatch.setattr(audit_module, "CHUNK_LEVEL", chunk_level)
    monkeypatch.setattr(audit_module, "MIN_LEVEL", min_level)
    monkeypatch.setattr(audit_module, "PARALLEL_MIN_ENTRIES", 0)
    calls = {"fast": 0}
    original = audit_module._Auditor.fast_chunk

    def counting(self, result):
        ok = original(self, result)
        calls["fast"] += ok
        return ok

    monkeypatch.setattr(audit_module._Auditor, "fast_chunk", counting)
    with store.sessions() as session:
        return audit_module.audit(session, store.log, workers=workers).to_json(), calls["fast"]


@pytest.fixture
def ledger40(store):
    store.add_signer()  # its key event is entry 0 (as in test_tamper)
    store.fill(BATCHES)
    assert store.size() == 1 + SIZE
    return store


def test_plan_tiles_the_log_with_aligned_complete_subtrees():
    for size in (0, 1, 7, 8, 41, 1000, 40_001, 1 << 16):
        plan = plan_subtrees(size, 4, 1)
        start = 0
        for a, level in plan:
            assert a == start and a % (1 << level) == 0
            start += 1 << level
        assert size - start < 2  # only leaves below 2**min_level are left over
    # leaf j's appends create trailing_ones(j) interior hashes: positions are their running sum
    total = 0
    for j in range(300):
        assert interior_position(j) == total
        total += ((j ^ (j + 1)).bit_length() - 1)


def test_parallel_audit_of_an_intact_ledger_uses_every_subtree(ledger40, monkeypatch):
    report, fast = _report(ledger40, monkeypatch, chunk_level=3, min_level=1, workers=2)
    assert report["ok"] and report["tree_size"] == 1 + SIZE
    assert fast == len(plan_subtrees(1 + SIZE, 3, 1))


@pytest.mark.parametrize("case", list(CASES))
def test_parallel_and_slow_paths_agree_on_damage(ledger40, case, monkeypatch):
    CASES[case](ledger40)
    slow, fast_used = _report(ledger40, monkeypatch, chunk_level=30, min_level=30, workers=1)
    assert fast_used == 0
    for chunk_level, min_level in ((2, 1), (3, 2)):
        parallel, _ = _report(ledger40, monkeypatch, chunk_level=chunk_level, min_level=min_level, workers=2)
        assert parallel == slow, (chunk_level, parallel, slow)
    assert not slow["ok"]


def test_a_helper_that_dies_costs_time_never_a_check(ledger40, monkeypatch):
    """A forked helper that claims a subtree and dies without sending it: this process
    re-measures that subtree itself, and the report is the one of the single-process pass."""
    import os

    from ledger.services import audit_chunks

    def dying(send, counter, plan, *_rest):
        audit_chunks._claim(counter)
        os._exit(1)

    monkeypatch.setattr(audit_chunks, "_helper", dying)
    report, fast = _report(ledger40, monkeypatch, chunk_level=3, min_level=1, workers=3)
    assert report["ok"] and fast == len(plan_subtrees(1 + SIZE, 3, 1))
    CASES["edit-byte-entry-22"](ledger40)
    damaged, _ = _report(ledger40, monkeypatch, chunk_level=3, min_level=1, workers=3)
    slow, _ = _report(ledger40, monkeypatch, chunk_level=30, min_level=30, workers=1)
    assert damaged == slow and damaged["first_bad_index"] == 22


def test_an_entry_index_that_is_not_an_integer_is_named_on_every_path(sqlite_store, monkeypatch):
    """SQLite keeps a REAL in an INTEGER column: entry 5 renumbered 5.5 (everything else intact)
    leaves the subtree [0, 8) with the right count, first and last index. Neither path may take
    it as entry 5: both name entry 5."""
    from sqlalchemy import text

    sqlite_store.add_signer()
    sqlite_store.fill(BATCHES)
    with sqlite_store.tamper() as conn:
        for table in ("entry_subjects", "entry_signers", "entry_edges", "entry_contents"):
            conn.execute(text(f"DELETE FROM {table} WHERE entry_idx = 5"))
        conn.execute(text("UPDATE entries SET idx = 5.5 WHERE idx = 5"))
    # the hash lane only: the cache rebuild (ledger.services.derived) does not take such a row yet
    monkeypatch.setattr(audit_module, "audit_caches", lambda *_args: None)
    for chunk_level, min_level, workers in ((30, 30, 1), (3, 1, 1), (3, 1, 2)):
        report, _ = _report(sqlite_store, monkeypatch, chunk_level=chunk_level, min_level=min_level, workers=workers)
        assert report["first_bad_index"] == 5, (chunk_level, workers, report["problems"][:3])
        assert report["problems"][0] == {"index": 5, "kind": "missing_entry", "message": "a row's index 5.5 is not an entry index"}
