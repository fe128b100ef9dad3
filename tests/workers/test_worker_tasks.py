"""The tasks called directly, and the embedded mode (no Redis: a real Celery worker thread on the
in-memory transport, so every message still goes through JSON)."""

from __future__ import annotations

import json

import pytest
from celery.result import allow_join_result
from kombu.utils.json import dumps as kombu_dumps
from sqlalchemy import select

from ledger.cli.worker import audit_with_workers, progress_bar
from ledger.db import store as dbstore
from ledger.db.models import AuditRun
from ledger.services import shards
from tests.services.test_tamper import BATCHES, CASES, SIZE
from tests.workers.factory import bulk_ledger_into, ledger_like_batches
from workers.app import is_embedded, make_celery


@pytest.fixture
def embedded_app(sqlite_store):
    app = make_celery(sqlite_store.settings)
    assert is_embedded(app)
    return app


def test_the_app_is_json_only_and_acknowledges_late(embedded_app, sqlite_store):
    conf = embedded_app.conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    redis_app = make_celery(sqlite_store.settings.__class__(**{**sqlite_store.settings.__dict__, "redis_url": "redis://127.0.0.1:1/0"}))
    options = redis_app.conf.broker_transport_options
    assert options["visibility_timeout"] >= 60 and options["global_keyprefix"] == "provledger:"
    for name in ("provledger.audit_shard", "provledger.audit_combine", "provledger.publish_checkpoint"):
        task = redis_app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost and task.max_retries == 5


def test_tasks_called_directly(embedded_app, sqlite_store):
    bulk_ledger_into(sqlite_store, 3)
    bulk_ledger_into(sqlite_store, 7)
    with sqlite_store.sessions() as session, session.begin():
        run = shards.create_audit(session, sqlite_store.log, now=1, source="api", shard_level=2)
    shard_task = embedded_app.tasks["provledger.audit_shard"]
    summaries = [shard_task(run.id, n, start, end) for n, start, end in [(0, 0, 4), (1, 4, 6), (2, 6, 7)]]
    json.loads(kombu_dumps(summaries))  # what travels is JSON
    assert [s["state"] for s in summaries] == ["done"] * 3
    result = embedded_app.tasks["provledger.audit_combine"](summaries, audit_id=run.id)
    assert result == {"audit": run.id, "ok": True, "first_bad_index": None}
    # the periodic duty: a no-op while the latest checkpoint covers the tree
    assert embedded_app.tasks["provledger.publish_checkpoint"]() == {"published": None}
    bulk_ledger_into(sqlite_store, 9, final_checkpoint=False)
    assert embedded_app.tasks["provledger.publish_checkpoint"]() == {"published": 9}
    # re-judging: nothing to do on a ledger without key events (tests/workers/test_worker_reappraisal.py)
    assert embedded_app.tasks["provledger.reevaluate_chain_verdicts"]()["skipped"]


def test_a_poisoned_shard_task_fails_its_audit_without_retrying(embedded_app, sqlite_store):
    bulk_ledger_into(sqlite_store, 5)
    with sqlite_store.sessions() as session, session.begin():
        run = shards.create_audit(session, sqlite_store.log, now=1, source="api", shard_level=1)
    # a range that is not the shard's, through the real worker: recorded as failed, not retried
    result = embedded_app.signature("provledger.audit_shard", args=(run.id, 0, 0, 4)).apply_async()
    from workers.embedded import EmbeddedWorker  # noqa: PLC0415

    worker = EmbeddedWorker(embedded_app, concurrency=1)
    worker.start()
    try:
        with allow_join_result(), pytest.raises(Exception, match=r"covers entries \[0, 2\)"):
            result.get(timeout=20, propagate=True)
    finally:
        worker.stop()
    assert result.state == "FAILURE"
    with sqlite_store.sessions() as session:
        row = session.execute(select(AuditRun).where(AuditRun.id == run.id)).scalar_one()
        assert row.state == "failed" and "covers entries [0, 2)" in row.error


def test_embedded_audit_intact_then_tampered(sqlite_store, capsys):
    ledger_like_batches(sqlite_store, BATCHES)
    report = audit_with_workers(sqlite_store.settings, progress_bar(), shard_level=3, timeout=60)
    assert report.ok and report.tree_size == SIZE and report.first_bad_index is None
    assert "40/40 entries" in capsys.readouterr().err
    first_bad = CASES["edit-byte-entry-22"](sqlite_store)
    report = audit_with_workers(sqlite_store.settings, shard_level=3, timeout=60)
    doc = report.to_json()
    assert doc["ok"] is False and doc["first_bad_index"] == first_bad == 22
    assert doc["shard"] == {"number": 2, "start": 16, "end": 24}
    with sqlite_store.sessions() as session:
        assert dbstore.current_size(session) == SIZE  # an audit changes nothing in the ledger
