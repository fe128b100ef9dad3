"""A record that passes verification but that the database refuses at insert fails alone.

The refusal is real: the test store gets a database-level rule (a CHECK constraint on
PostgreSQL, a RAISE(ABORT) trigger on SQLite) that refuses any subject named ``poison/…``.
The ledger's own checks all pass for such a record; only the database says no, inside the
group commit, next to honest submitters.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from sqlalchemy import text

from ledger.db import store as dbstore
from ledger.errors import LedgerError, MalformedError
from ledger.services import append
from ledger.services.audit import audit
from ledger.services.bulk import import_envelopes
from ledger.services.sequencer import Sequencer, _Job
from ledger.verify import verify_receipt
from tests.fixtures import envelope_bytes, sign

POISON = "poison/app"


def refuse_poison(store) -> None:
    """The database itself refuses subjects named poison/… (not the ledger's code)."""
    with store.engine.begin() as conn:
        if store.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER test_refuse_poison BEFORE INSERT ON entry_subjects "
                    "WHEN NEW.name LIKE 'poison/%' BEGIN SELECT RAISE(ABORT, 'poisoned subject refused'); END"
                )
            )
        else:
            conn.execute(text("ALTER TABLE entry_subjects ADD CONSTRAINT test_refuse_poison CHECK (name NOT LIKE 'poison/%')"))


def _prepare(store, raws):
    with store.sessions() as session:
        out = append.prepare_batch(session, raws, now=store.clock)
        session.rollback()
    assert all(isinstance(p, append.Prepared) for p in out), out  # every record passes verification
    return out


def _check_ledger(store, receipts) -> None:
    for receipt in receipts:
        verify_receipt(receipt, store.log.vkey)
    with store.sessions() as session:
        report = audit(session, store.log)
    assert report.ok, report.to_json()


def test_the_poison_rule_is_the_database_s(store):
    """Guards the tests below: without isolation the poisoned record fails its whole batch."""
    key = store.add_signer()
    refuse_poison(store)
    batch = _prepare(store, [envelope_bytes(sign(key)), envelope_bytes(sign(key, name=POISON))])
    before = store.size()
    with pytest.raises(Exception) as info, store.sessions() as session, session.begin():
        append.integrate(session, batch, store.log, now=store.tick())
    assert "poison" in str(info.value)
    assert store.size() == before


def test_one_group_commit_with_a_poisoned_record(store):
    key = store.add_signer()
    refuse_poison(store)
    honest = [envelope_bytes(sign(key)) for _ in range(12)]
    poisoned = envelope_bytes(sign(key, name=POISON))
    batch_job = [envelope_bytes(sign(key)) for _ in range(5)] + [envelope_bytes(sign(key, name=POISON + "/2"))]
    before = store.size()
    sequencer = Sequencer(store.sessions, store.log, clock=lambda: store.clock)
    # Every job is queued before the sequencer thread starts: they are one group commit.
    jobs = [_Job(_prepare(store, [raw])) for raw in honest[:6]]
    jobs.append(_Job(_prepare(store, [poisoned])))
    jobs += [_Job(_prepare(store, [raw])) for raw in honest[6:]]
    jobs.append(_Job(_prepare(store, batch_job)))
    for job in jobs:
        sequencer._queue.put(job)
    try:
        sequencer._ensure_started()
        results = [job.done.result(timeout=60) for job in jobs]
    finally:
        sequencer.stop()
    assert sequencer.batches == 1  # one transaction committed the honest records
    flat = [r for rs in results for r in rs]
    refused = [r for r in flat if isinstance(r, LedgerError)]
    assert len(refused) == 2 and all(isinstance(r, MalformedError) and r.http_status == 400 for r in refused)
    assert all("database refused this record" in str(r) for r in refused)
    assert results[6] == [refused[0]] and results[-1][-1] is refused[1]
    receipts = [r.receipt for r in flat if isinstance(r, append.Appended)]
    assert len(receipts) == 12 + 5
    assert store.size() == before + 17
    _check_ledger(store, receipts)


def test_concurrent_submitters_beside_a_poisoned_one(store):
    key = store.add_signer()
    refuse_poison(store)
    sequencer = Sequencer(store.sessions, store.log, clock=lambda: store.clock)
    records = [_prepare(store, [envelope_bytes(sign(key, name=POISON if i % 8 == 3 else None))]) for i in range(40)]
    outcomes: list[Future] = [Future() for _ in records]
    start = threading.Barrier(len(records))

    def submit(i: int) -> None:
        start.wait()
        try:
            outcomes[i].set_result(sequencer.submit(records[i], timeout=60)[0])
        except BaseException as exc:  # noqa: BLE001 - the assertion below names it
            outcomes[i].set_exception(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(records))]
    before = store.size()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sequencer.stop()
    results = [f.result() for f in outcomes]  # no submitter got an exception (no 503)
    for i, r in enumerate(results):
        if i % 8 == 3:
            assert isinstance(r, MalformedError), r
        else:
            assert isinstance(r, append.Appended) and r.created, r
    assert store.size() == before + 35
    _check_ledger(store, [r.receipt for r in results if isinstance(r, append.Appended)])


def test_append_batch_refuses_only_the_poisoned_record(store):
    key = store.add_signer()
    refuse_poison(store)
    raws = [envelope_bytes(sign(key)) for _ in range(3)] + [envelope_bytes(sign(key, name=POISON))] + [envelope_bytes(sign(key))]
    before = store.size()
    results = store.append(raws)
    assert [type(r).__name__ for r in results] == ["Appended"] * 3 + ["MalformedError", "Appended"]
    assert store.size() == before + 4
    _check_ledger(store, [r.receipt for r in results if isinstance(r, append.Appended)])


@pytest.mark.parametrize("workers", [1, 2])
def test_bulk_import_lists_the_poisoned_record_and_goes_on(store, workers):
    key = store.add_signer()
    refuse_poison(store)
    raws = [envelope_bytes(sign(key, name=POISON if i in (2, 9) else None)) for i in range(12)]
    before = store.size()
    summary = import_envelopes(store.sessions, raws, store.log, workers=workers, batch_size=5, clock=lambda: store.tick())
    assert summary.created == 10 and summary.refused == 2
    assert sorted(p for p, _ in summary.errors) == [2, 9]
    assert all(isinstance(e, MalformedError) for _, e in summary.errors)
    assert store.size() == before + 10
    with store.sessions() as session:
        assert dbstore.current_size(session) == before + 10
        assert audit(session, store.log).ok


def test_a_batch_where_every_record_is_poisoned_commits_nothing(store):
    key = store.add_signer()
    refuse_poison(store)
    before = store.state()
    results = store.append([envelope_bytes(sign(key, name=f"poison/{i}")) for i in range(3)])
    assert all(isinstance(r, MalformedError) for r in results)
    assert store.state() == before
