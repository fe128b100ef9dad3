"""The tasks: thin, idempotent, JSON-only; they take ids and ranges and call ``ledger.services``.

Failure policy: a transient failure (the database or Redis unreachable) is retried with
exponential backoff, at most ``MAX_RETRIES`` times; anything else — bad arguments, a missing
audit, a store that is not initialised — fails at once, and the audit it belongs to is marked
failed with the reason (``ProvledgerTask.on_failure``). A shard that keeps killing its worker
is refused after ``MAX_SHARD_ATTEMPTS`` starts, so no task is retried forever.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.exceptions
from celery import Task, group, shared_task
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.db.engine import begin_write
from ledger.errors import LedgerError, NotFoundError, UnavailableError
from ledger.services import reappraisal, shards
from ledger.services.log import load_log_identity
from ledger.trust import tee_jobs
from workers.app import MAX_RETRIES, MAX_RETRY_DELAY, settings_of
from workers.context import redis_lock, sessions_for

__all__ = [
    "MAX_SHARD_ATTEMPTS",
    "TRANSIENT",
    "audit_combine",
    "appraise_deployments",
    "audit_shard",
    "reappraise_batch",
    "publish_checkpoint",
    "reevaluate_chain_verdicts",
    "scheduled_audit",
]

log = logging.getLogger(__name__)

#: Failures worth another try: the database or Redis is (for now) out of reach.
TRANSIENT = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, UnavailableError)
#: A shard started this many times without finishing is poisoned (it kills its worker).
MAX_SHARD_ATTEMPTS = 5
#: The combiner waits this long at most for straggling shard rows.
COMBINE_RETRY_DELAY = 2
#: An audit queued or running for longer than this no longer blocks the scheduled one.
STALE_AUDIT = 6 * 3600
#: Lock lifetimes (ms): longer than the work they guard, short enough to recover from a crash.
CHECKPOINT_LOCK_MS = 60_000
SCHEDULE_LOCK_MS = 300_000
REEVALUATE_LOCK_MS = 60_000


class ProvledgerTask(Task):
    """Records a final failure in the audit the task belongs to (retries are not failures)."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any) -> None:
        audit_id = kwargs.get("audit_id", args[0] if args and self.name == "provledger.audit_shard" else None)
        if type(audit_id) is not int:
            log.error("task %s (%s) failed: %s", self.name, task_id, exc)
            return
        reason = exc.diagnostics() if isinstance(exc, LedgerError) else f"{type(exc).__name__}: {exc}"
        try:
            shards.fail_audit(sessions_for(self.app), audit_id, f"{self.name} failed: {reason}")
        except (DBAPIError, LedgerError):
            log.exception("could not record the failure of audit %s", audit_id)


_COMMON: dict[str, Any] = {
    "base": ProvledgerTask,
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": MAX_RETRY_DELAY,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


def _audit_exists(app: Any, audit_id: int) -> bool:
    with sessions_for(app)() as session:
        try:
            shards.get_audit(session, audit_id)
        except NotFoundError:
            return False
    return True


def _withdrawn(audit_id: int) -> dict[str, Any]:
    """A task of an audit its requester withdrew (no worker picked it up in time): nothing to do."""
    log.info("audit %s was withdrawn by its requester; its task does nothing", audit_id)
    return {"audit": audit_id, "skipped": "the audit was withdrawn"}


@shared_task(name="provledger.audit_shard", **_COMMON)
def audit_shard(self: Task, audit_id: int, shard: int, start: int, end: int) -> dict[str, Any]:
    """Re-measure one shard of an audit (a complete subtree, leaves [start, end))."""
    try:
        return shards.run_shard(sessions_for(self.app), audit_id, shard, start, end, max_attempts=MAX_SHARD_ATTEMPTS)
    except NotFoundError:
        if not _audit_exists(self.app, audit_id):
            return _withdrawn(audit_id)
        raise


@shared_task(name="provledger.audit_combine", **_COMMON)
def audit_combine(self: Task, results: list[Any], *, audit_id: int) -> dict[str, Any]:
    """The chord's callback: combine the shards (read from the database) into the report."""
    try:
        report = shards.finish_audit(sessions_for(self.app), audit_id)
    except NotFoundError:
        if not _audit_exists(self.app, audit_id):
            return _withdrawn(audit_id)
        raise
    if report is None:
        # The chord fired before every shard row was committed (cannot happen with a result
        # backend that deduplicates chord parts; cheap to guard against).
        raise self.retry(countdown=COMBINE_RETRY_DELAY, max_retries=30)
    return {"audit": audit_id, "ok": report["ok"], "first_bad_index": report["first_bad_index"]}


@shared_task(name="provledger.publish_checkpoint", **_COMMON)
def publish_checkpoint(self: Task) -> dict[str, Any]:
    """Sign a checkpoint if the tree grew past the latest one (a no-op otherwise).

    Two guards: a Redis lock (SET NX PX) so that concurrent publishers do not even queue on the
    database, and the sequencer's row lock, which is the one that makes it correct (and the only
    one in the embedded mode).
    """
    settings = settings_of(self.app)
    identity = load_log_identity(settings)
    with redis_lock(self.app, "lock:publish-checkpoint", CHECKPOINT_LOCK_MS) as held:
        if not held:
            return {"published": None, "skipped": "another worker holds the lock"}
        with sessions_for(self.app)() as session, session.begin():
            size = shards.publish_checkpoint(session, identity, now=int(time.time()))
    return {"published": size}


@shared_task(name="provledger.scheduled_audit", **_COMMON)
def scheduled_audit(self: Task) -> dict[str, Any]:
    """Start a full audit unless one is already under way."""
    from workers.dispatch import enqueue_audit  # noqa: PLC0415 - dispatch imports this module

    settings = settings_of(self.app)
    identity = load_log_identity(settings)
    sessions = sessions_for(self.app)
    with redis_lock(self.app, "lock:scheduled-audit", SCHEDULE_LOCK_MS) as held:
        if not held:
            return {"audit": None, "skipped": "another worker holds the lock"}
        now = int(time.time())
        with sessions() as session, session.begin():
            begin_write(session)
            if shards.has_active_audit(session, now=now, stale_after=STALE_AUDIT):
                return {"audit": None, "skipped": "an audit is already under way"}
            run = shards.create_audit(session, identity, now=now, source="schedule")
            audit_id = run.id
        # enqueued only once the audit is committed
        enqueue_audit(self.app, sessions, audit_id)
    return {"audit": audit_id}


@shared_task(name="provledger.appraise_deployments", **_COMMON)
def appraise_deployments(self: Task, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TEE appraisal of a chunk of a large submission (pure: no database); one result per job."""
    return [tee_jobs.run_appraisal_job(job) for job in jobs]


@shared_task(name="provledger.reappraise_batch", **_COMMON)
def reappraise_batch(self: Task, indexes: list[int], trust_index: int) -> dict[str, Any]:
    """Re-judge these deployments under the trust state after key event ``trust_index`` (idempotent)."""
    with sessions_for(self.app)() as session, session.begin():
        begin_write(session)
        rows = reappraisal.reappraise(session, [int(i) for i in indexes], at=int(trust_index))
    changed = [r.index for r in rows if r.previous is not None and r.previous != r.verdict]
    return {"trust_index": trust_index, "reappraised": len(rows), "changed": changed}


@shared_task(name="provledger.reevaluate_chain_verdicts", **_COMMON)
def reevaluate_chain_verdicts(self: Task, batch: int = reappraisal.BATCH) -> dict[str, Any]:
    """Re-judge every deployment when the trust state moved past the last re-judging (a
    revocation, new TDX collateral, a policy change): one ``reappraise_batch`` per ``batch``
    deployments, on the workers. A no-op when nothing changed; scheduled by beat."""
    if type(batch) is not int or batch < 1:
        raise ValueError("batch must be a positive integer")
    with redis_lock(self.app, "lock:reevaluate-verdicts", REEVALUATE_LOCK_MS) as held:
        if not held:
            return {"trust_index": None, "skipped": "another worker holds the lock"}
        with sessions_for(self.app)() as session:
            index = reappraisal.trust_index(session)
            if not reappraisal.pending(session):
                return {"trust_index": index, "skipped": "every deployment is judged under the current trust state"}
            deployments = reappraisal.deployment_indexes(session, before=index)
        batches = [deployments[i : i + batch] for i in range(0, len(deployments), batch)]
        group(self.app.signature("provledger.reappraise_batch", args=(b, index)) for b in batches).apply_async()
    return {"trust_index": index, "deployments": len(deployments), "batches": len(batches)}
