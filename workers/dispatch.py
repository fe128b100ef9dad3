"""Enqueueing: what the web app and the command line call, always after their commit.

Only ids and ranges travel: the shard tasks of an audit are a chord whose callback combines
the shard rows into the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, chord, group
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import allow_join_result
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.orm import Session

from ledger.errors import UnavailableError
from ledger.services import shards
from ledger.services.audit_dispatch import shard_ranges
from workers.app import is_embedded
from workers.context import redis_client

__all__ = ["appraisal_runner", "check_broker", "close", "enqueue_audit"]


def check_broker(app: Celery) -> None:
    """Raise UnavailableError (HTTP 503, exit 3) unless the broker answers; a no-op when embedded."""
    if is_embedded(app):
        return
    client = redis_client(app)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise UnavailableError(f"the task queue (Redis) cannot be reached: {exc}") from exc
    except redis.exceptions.RedisError as exc:  # it answers, but refuses (a database index it lacks, a password)
        raise UnavailableError(f"the task queue (Redis) refuses this ledger: {exc}") from exc
    finally:
        client.close()


def enqueue_audit(app: Celery, sessions: Callable[[], Session], audit_id: int) -> None:
    """Send a committed audit's shards to the workers, with the combiner as the chord's callback.

    If the broker refuses, the audit is marked failed (so nothing waits on it) and
    UnavailableError is raised.
    """
    rows = shard_ranges(sessions, audit_id)
    header = [app.signature("provledger.audit_shard", args=(audit_id, n, start, end)) for n, start, end in rows]
    body = app.signature("provledger.audit_combine", kwargs={"audit_id": audit_id})
    try:
        if header:
            chord(header, app=app)(body)
        else:
            body.apply_async(args=([],))
    except (KombuOperationalError, redis.exceptions.RedisError, OSError) as exc:
        shards.fail_audit(sessions, audit_id, f"the task queue refused the audit: {exc}")
        raise UnavailableError(f"the task queue (Redis) cannot be reached: {exc}") from exc


#: appraisal jobs per worker task, and how long a submission waits for the workers
APPRAISAL_CHUNK = 8
APPRAISAL_TIMEOUT = 120.0


def appraisal_runner(app: Celery, *, chunk: int = APPRAISAL_CHUNK, timeout: float = APPRAISAL_TIMEOUT) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A job runner for ``ledger.services.deployment.register_job_runner``: a large batch's TEE
    appraisals as one ``appraise_deployments`` task per ``chunk`` jobs, results in order.
    Raises UnavailableError when the queue or the workers do not answer in time (the caller then
    appraises in process)."""

    def run(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
        try:
            check_broker(app)
            result = group(app.signature("provledger.appraise_deployments", args=(c,)) for c in chunks).apply_async()
            with allow_join_result():
                parts = result.get(timeout=timeout, propagate=True)
        except (KombuOperationalError, redis.exceptions.RedisError, OSError, CeleryTimeoutError) as exc:
            raise UnavailableError(f"the workers did not appraise the batch: {exc}") from exc
        return [r for part in parts for r in part]

    return run


def close(app: Celery) -> None:
    """Close the app's broker and result-backend connections (an enqueuer that is done)."""
    backend = app._backend  # only if this thread made one: never create it to close it
    app.close()
    if backend is None:
        return
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        # Celery subscribes to the result of each task it sends; we read results from the
        # database, so drop the subscription, and forget it, or a result object collected
        # later would reconnect to unsubscribe
        consumer.stop()
        consumer._pubsub = None
        consumer.subscribed_to.clear()
    client = getattr(backend, "client", None)
    if isinstance(client, redis.Redis):
        client.close()
        client.connection_pool.disconnect()
