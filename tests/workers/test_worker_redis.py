"""Real `celery worker` processes on Redis (127.0.0.1:6379) and PostgreSQL: distributed audits
of an intact and a tampered ledger, a worker killed in the middle of a shard, Redis down.

Skipped (failed under PROVLEDGER_REQUIRE_SERVICES=1) when Redis or PostgreSQL is unreachable.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from sqlalchemy import select

from ledger.cli.worker import audit_with_workers
from ledger.db.models import AuditRun, AuditShard
from ledger.services import audit, shards
from ledger.services.registry import create_token
from tests.services.test_tamper import BATCHES, CASES
from tests.workers.conftest import worker_env
from tests.workers.factory import bulk_ledger_into
from workers.app import make_celery
from workers.context import redis_lock
from workers.dispatch import close, enqueue_audit
from workers.tasks import publish_checkpoint  # noqa: F401 - registers the tasks with every app

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def cluster(postgres_store, redis_ns, celery_workers, monkeypatch):
    """The store, its settings with Redis, and workers configured for both."""
    env = worker_env(postgres_store, redis_ns)
    celery_workers.env = env
    for name in ("PROVLEDGER_REDIS_PREFIX", "PROVLEDGER_CELERY_VISIBILITY_TIMEOUT"):
        monkeypatch.setenv(name, env[name])
    settings = dataclasses.replace(postgres_store.settings, redis_url=redis_ns.url)
    return postgres_store, settings, celery_workers


def single(st) -> audit.AuditReport:
    with st.sessions() as session:
        return audit.audit(session, st.log)


def wait_for(predicate, timeout: float, what: str, workers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    logs = workers.log_text() if workers is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_distributed_audit_on_celery_workers(cluster):
    st, settings, workers = cluster
    st.fill(BATCHES)
    workers.start(concurrency=2)
    report = audit_with_workers(settings, shard_level=3, timeout=120)
    assert report.ok, report.to_json()
    assert report.signatures_checked == report.tree_size == st.size()  # every entry's envelope
    for case in ("swap-entries-10-25", "edit-interior-hash-(2,3)"):
        CASES[case](st)
        expected = single(st)
        doc = audit_with_workers(settings, shard_level=3, timeout=120).to_json()
        assert doc["ok"] is False
        assert doc["first_bad_index"] == expected.first_bad_index, doc
        assert doc["shard"]["start"] <= doc["first_bad_index"] < doc["shard"]["end"]


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_replaced_and_the_verdict_holds(cluster):
    st, settings, workers = cluster
    bulk_ledger_into(st, 8192, checkpoint_every=1000)
    CASES["edit-byte-entry-22"](st)  # a damaged ledger: the verdict must survive the crash
    expected = single(st)
    assert expected.first_bad_index == 22
    app = make_celery(settings)
    with st.sessions() as session, session.begin():
        audit_id = shards.create_audit(session, st.log, now=1, source="cli", shard_level=11).id
    first = workers.start(concurrency=1)
    enqueue_audit(app, st.sessions, audit_id)
    close(app)

    def started_shard():
        with st.sessions() as session:
            return session.execute(
                select(AuditShard.shard).where(
                    AuditShard.audit_id == audit_id, AuditShard.attempts == 1, AuditShard.state == "pending"
                )
            ).scalar_one_or_none()

    victim = wait_for(lambda: started_shard() is not None and started_shard() + 1, 60, "a shard to start", workers) - 1
    workers.kill(first)  # SIGKILL, pool and all, in the middle of the shard
    with st.sessions() as session:
        row = session.get(AuditShard, (audit_id, victim))
        assert row.state == "pending", "the shard finished before the kill; the test proves nothing"
    workers.start(concurrency=1)

    def finished():
        with st.sessions() as session:
            run = session.get(AuditRun, audit_id)
            return run.state in ("done", "failed") and run

    run = wait_for(finished, 120, "the audit to finish after redelivery", workers)
    assert run.state == "done", run.error
    import json  # noqa: PLC0415

    report = json.loads(run.result)["report"]
    assert report["ok"] is False and report["first_bad_index"] == expected.first_bad_index == 22
    with st.sessions() as session:
        assert session.get(AuditShard, (audit_id, victim)).attempts == 2  # redelivered once


def test_post_audits_runs_on_the_workers(cluster):
    from web.app import create_app  # noqa: PLC0415
    from web.api import audits  # noqa: PLC0415

    st, settings, workers = cluster
    st.fill([5, 6])
    workers.start(concurrency=1)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    if "api_audits" not in app.blueprints:
        app.register_blueprint(audits.bp)
    client = app.test_client()
    with st.sessions() as session, session.begin():
        admin = create_token(session, "admin", "admin", now=1)
        submit = create_token(session, "submit", "submit", now=1)
    assert client.post("/api/v1/audits").status_code == 401
    assert client.post("/api/v1/audits", headers={"Authorization": f"Bearer {submit}"}).status_code == 401
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    for body in (b"[", b'{"shard_size": 3}', b'{"shard_size": "8"}', b'{"shard_size": null}', b'{"shard_size": -4}', b'{"other": 1}', b"{" + b" " * 2000 + b"}"):
        response = client.post("/api/v1/audits", data=body, headers=headers)
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] == "malformed"
    response = client.post("/api/v1/audits", json={"shard_size": 4}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    location = response.headers["Location"]
    size = st.size()
    assert response.get_json()["progress"]["shards_total"] == len(shards.plan_shards(size, 2))

    def done():
        doc = client.get(location).get_json()
        return doc["state"] == "done" and doc

    doc = wait_for(done, 90, "the audit to finish", workers)
    assert doc["result"]["ok"] is True and doc["progress"]["entries_done"] == size
    assert doc["checked"]["signatures"] == size
    assert client.get("/api/v1/audits").get_json()["audits"][0]["id"] == doc["id"]
    assert client.get("/api/v1/audits/999999").status_code == 404
    close(app.extensions["provledger_workers"][0])
    app.extensions["provledger"].sequencer.stop()
    app.extensions["provledger"].engine.dispose()


def test_redis_down_audits_get_503_and_submissions_keep_working(postgres_store):
    from web.app import create_app  # noqa: PLC0415
    from web.api import audits  # noqa: PLC0415
    from tests.fixtures import envelope_bytes, sign  # noqa: PLC0415

    st = postgres_store
    key = st.add_signer()
    settings = dataclasses.replace(st.settings, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    app = create_app({"SETTINGS": settings, "TESTING": True})
    if "api_audits" not in app.blueprints:
        app.register_blueprint(audits.bp)
    client = app.test_client()
    with st.sessions() as session, session.begin():
        admin = create_token(session, "admin", "admin", now=1)
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    response = client.post("/api/v1/audits", headers=headers)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "unavailable" and "Redis" in error["message"]
    with st.sessions() as session:
        assert session.execute(select(AuditRun)).first() is None  # nothing recorded
    close(app.extensions["provledger_workers"][0])
    response = client.post("/api/v1/entries", data=envelope_bytes(sign(key)), headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    app.extensions["provledger"].sequencer.stop()
    app.extensions["provledger"].engine.dispose()


def test_checkpoint_publishing_takes_an_atomic_redis_lock(cluster):
    st, settings, _ = cluster
    bulk_ledger_into(st, 4)
    bulk_ledger_into(st, 9, final_checkpoint=False)
    app = make_celery(settings)
    publish = app.tasks["provledger.publish_checkpoint"]
    try:
        with redis_lock(app, "lock:publish-checkpoint", 10_000) as held:
            assert held
            with redis_lock(app, "lock:publish-checkpoint", 10_000) as again:
                assert not again  # SET NX: one holder at a time
            assert publish()["skipped"]  # another publisher backs off while the lock is held
        assert publish() == {"published": 9}
        assert publish() == {"published": None}
    finally:
        close(app)
    assert single(st).ok


def test_a_redis_that_answers_but_refuses_is_a_clear_503(redis_ns, tmp_path):
    """Redis reachable, but without the database the URL names: UnavailableError naming Redis's
    answer (it used to escape as redis.exceptions.ResponseError, a traceback from the CLI)."""
    from ledger.config import Settings  # noqa: PLC0415
    from ledger.errors import UnavailableError  # noqa: PLC0415
    from workers.dispatch import check_broker  # noqa: PLC0415

    base = redis_ns.url.rsplit("/", 1)[0]
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'l.db'}", redis_url=f"{base}/99999", origin="t/o")
    app = make_celery(settings)
    try:
        with pytest.raises(UnavailableError, match="refuses this ledger: DB index is out of range"):
            check_broker(app)
    finally:
        close(app)
