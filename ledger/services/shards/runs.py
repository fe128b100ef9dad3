"""Audit runs recorded in ``audits`` and ``audit_shards`` (mutable, unlike the ledger): a shard
stores its result in its row, so re-running it is a no-op and the combiner reads the rows, not
the task results. Everything here takes a Session (or a session factory) and plain values."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.engine import begin_write
from ledger.db.models import AuditRun, AuditShard
from ledger.errors import LedgerError, MalformedError, NotFoundError
from ledger.services.log import LogIdentity
from ledger.services.shards.combine import combine_shards
from ledger.services.shards.plan import Shard, plan_shards, shard_level_for
from ledger.services.shards.results import ShardResult
from ledger.services.shards.verify import verify_shard

__all__ = [
    "SHARD_DONE",
    "SHARD_PENDING",
    "SOURCES",
    "STATE_DONE",
    "STATE_FAILED",
    "STATE_QUEUED",
    "STATE_RUNNING",
    "audit_json",
    "audit_progress",
    "create_audit",
    "fail_audit",
    "finish_audit",
    "get_audit",
    "has_active_audit",
    "list_audits",
    "run_shard",
    "withdraw_audit",
]


STATE_QUEUED, STATE_RUNNING, STATE_DONE, STATE_FAILED = "queued", "running", "done", "failed"
SHARD_PENDING, SHARD_DONE = "pending", "done"
SOURCES = ("api", "cli", "schedule")


def create_audit(
    session: Session,
    log: LogIdentity,
    *,
    now: int,
    source: str,
    shard_level: int | None = None,
) -> AuditRun:
    """Record an audit of the tree as it stands, and its shards (flushes; the caller commits,
    and enqueues only after the commit)."""
    if source not in SOURCES:
        raise MalformedError(f"an audit's source is one of {', '.join(SOURCES)}, got {source!r}")
    size = store.current_size(session)
    level = shard_level_for(size) if shard_level is None else shard_level
    shards = plan_shards(size, level)
    run = AuditRun(
        state=STATE_QUEUED,
        source=source,
        requested_at=now,
        tree_size=size,
        shard_level=level,
        shard_count=len(shards),
        progress=0,
        origin=log.origin,
        vkey=log.vkey,
    )
    session.add(run)
    session.flush()
    session.add_all(
        AuditShard(
            audit_id=run.id,
            shard=s.number,
            level=s.level,
            start_index=s.start,
            end_index=s.end,
            state=SHARD_PENDING,
            attempts=0,
            progress=0,
        )
        for s in shards
    )
    session.flush()
    return run


#: audit ids are 32-bit (``audits.id`` is an INTEGER): a larger one names no audit
MAX_AUDIT_ID = 2**31 - 1


def get_audit(session: Session, audit_id: int, *, lock: bool = False) -> AuditRun:
    if type(audit_id) is not int or audit_id < 1:
        raise MalformedError(f"an audit id is a positive integer, got {audit_id!r}")
    if audit_id > MAX_AUDIT_ID:  # PostgreSQL would refuse to compare it with the column
        raise NotFoundError(f"there is no audit {audit_id}")
    run = session.get(AuditRun, audit_id, with_for_update=lock or None)
    if run is None:
        raise NotFoundError(f"there is no audit {audit_id}")
    return run


def _shard_row(session: Session, audit_id: int, number: int) -> AuditShard:
    row = session.get(AuditShard, (audit_id, number))
    if row is None:
        raise NotFoundError(f"audit {audit_id} has no shard {number}")
    return row


def run_shard(
    sessions: Callable[[], Session],
    audit_id: int,
    number: int,
    start: int,
    end: int,
    *,
    max_attempts: int | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Re-measure one shard of an audit and store its result; idempotent (a done shard is not redone).

    ``start``/``end`` must be the shard's recorded range: a task whose arguments disagree with
    the database is refused (MalformedError), never guessed at. A shard already started
    ``max_attempts`` times without finishing (it keeps killing its worker) is refused too.
    Returns a short summary.
    """
    for name, value in (("audit id", audit_id), ("shard", number), ("start", start), ("end", end)):
        if type(value) is not int or value < 0:
            raise MalformedError(f"a shard task's {name} must be a non-negative integer, got {value!r}")
    with sessions() as session, session.begin():
        # the run's row first, locked: withdraw_audit takes the same lock, so a shard never
        # starts on an audit being withdrawn (SQLite: the database's write lock)
        begin_write(session)
        run = get_audit(session, audit_id, lock=True)
        row = _shard_row(session, audit_id, number)
        if (row.start_index, row.end_index) != (start, end):
            raise MalformedError(
                f"audit {audit_id} shard {number} covers entries [{row.start_index}, {row.end_index}), not [{start}, {end})"
            )
        if run.state in (STATE_DONE, STATE_FAILED) or row.state == SHARD_DONE:
            return _summary(row)
        if max_attempts is not None and row.attempts >= max_attempts:
            raise MalformedError(
                f"audit {audit_id} shard {number} was started {row.attempts} times without finishing; it is not tried again"
            )
        row.attempts += 1
        if run.state == STATE_QUEUED:
            session.execute(
                update(AuditRun).where(AuditRun.id == audit_id, AuditRun.state == STATE_QUEUED).values(state=STATE_RUNNING, started_at=int(clock()))
            )
        shard = Shard(number, row.level, start)
        vkey, origin = run.vkey, run.origin
        if shard.end != end:
            raise MalformedError(f"audit {audit_id} shard {number}: [{start}, {end}) is not a complete subtree")

    def progress(done: int) -> None:
        with sessions() as s, s.begin():
            begin_write(s)
            if s.get_bind().dialect.name == "postgresql":
                # progress is advisory: not worth waiting for the disk
                s.execute(text("SET LOCAL synchronous_commit = off"))
            s.execute(update(AuditShard).where(AuditShard.audit_id == audit_id, AuditShard.shard == number).values(progress=done))
            _refresh_progress(s, audit_id)

    with sessions() as session:
        result = verify_shard(session, shard, vkey=vkey, origin=origin, progress=progress)
        session.rollback()
    with sessions() as session, session.begin():
        begin_write(session)
        session.execute(
            update(AuditShard)
            .where(AuditShard.audit_id == audit_id, AuditShard.shard == number, AuditShard.state != SHARD_DONE)
            .values(state=SHARD_DONE, result=json.dumps(result.to_json()), progress=end - start, finished_at=int(clock()))
        )
        _refresh_progress(session, audit_id)
        return _summary(_shard_row(session, audit_id, number))


def _refresh_progress(session: Session, audit_id: int) -> None:
    # Recomputed from the shards rather than incremented: a redelivered shard never counts twice.
    total = select(func.coalesce(func.sum(AuditShard.progress), 0)).where(AuditShard.audit_id == audit_id).scalar_subquery()
    session.execute(update(AuditRun).where(AuditRun.id == audit_id, AuditRun.state != STATE_DONE).values(progress=total))


def _summary(row: AuditShard) -> dict[str, Any]:
    doc = json.loads(row.result) if row.result else {}
    return {
        "audit": row.audit_id,
        "shard": row.shard,
        "state": row.state,
        "problems": len(doc.get("problems", [])),
    }


def finish_audit(sessions: Callable[[], Session], audit_id: int, *, clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """Combine a run's shards into its report and record it; idempotent.

    The run's ``result`` column holds ``{"report": …, "checked": …}``. Returns the report, or
    None when some shard is not done yet (the caller tries again later).
    """
    with sessions() as session, session.begin():
        begin_write(session)
        run = get_audit(session, audit_id)
        if run.state == STATE_DONE and run.result:
            return json.loads(run.result)["report"]
        if run.state == STATE_FAILED:
            raise LedgerError(f"audit {audit_id} failed: {run.error}")
        rows = list(session.execute(select(AuditShard).where(AuditShard.audit_id == audit_id).order_by(AuditShard.shard)).scalars())
        if any(r.state != SHARD_DONE or not r.result for r in rows):
            return None
        results = [ShardResult.from_json(json.loads(r.result)) for r in rows]  # type: ignore[arg-type]
        combined = combine_shards(session, run.tree_size, results, vkey=run.vkey, origin=run.origin)
        report = combined.to_json()
        stored = json.dumps({"report": report, "checked": combined.checked()})
        session.execute(
            update(AuditRun)
            .where(AuditRun.id == audit_id, AuditRun.state != STATE_DONE)
            .values(state=STATE_DONE, result=stored, finished_at=int(clock()), progress=run.tree_size)
        )
        return report


def fail_audit(sessions: Callable[[], Session], audit_id: int, reason: str, *, clock: Callable[[], float] = time.time) -> None:
    """Record that a run could not complete (not what it found: that is a done run's report)."""
    with sessions() as session, session.begin():
        session.execute(
            update(AuditRun)
            .where(AuditRun.id == audit_id, AuditRun.state.in_([STATE_QUEUED, STATE_RUNNING]))
            .values(state=STATE_FAILED, error=reason[:2000], finished_at=int(clock()))
        )


def withdraw_audit(sessions: Callable[[], Session], audit_id: int) -> bool:
    """Delete a run that no worker has started (its row and its shards' rows); True if it was.

    For a caller that gives up waiting: nothing half-written stays behind. A run some worker has
    started (a shard attempted, or the run no longer queued) is left alone and False returned.
    Shard tasks still queued for a withdrawn run find no audit and do nothing.
    """
    with sessions() as session, session.begin():
        begin_write(session)
        run = session.get(AuditRun, audit_id, with_for_update=True)
        if run is None or run.state != STATE_QUEUED:
            return False
        started = session.execute(
            select(func.count()).select_from(AuditShard).where(AuditShard.audit_id == audit_id, AuditShard.attempts > 0)
        ).scalar_one()
        if started:
            return False
        session.execute(delete(AuditShard).where(AuditShard.audit_id == audit_id))
        session.execute(delete(AuditRun).where(AuditRun.id == audit_id))
        return True


def audit_progress(session: Session, audit_id: int) -> dict[str, int]:
    run = get_audit(session, audit_id)
    done = session.execute(
        select(func.count()).select_from(AuditShard).where(AuditShard.audit_id == audit_id, AuditShard.state == SHARD_DONE)
    ).scalar_one()
    entries = run.tree_size if run.state == STATE_DONE else int(run.progress or 0)
    return {"entries_done": entries, "entries_total": run.tree_size, "shards_done": done, "shards_total": run.shard_count}


def audit_json(session: Session, audit_id: int) -> dict[str, Any]:
    """An audit run as the API shows it (``GET /api/v1/audits/<id>``)."""
    run = get_audit(session, audit_id)
    stored = json.loads(run.result) if run.result else {"report": None, "checked": None}
    return {
        "id": run.id,
        "state": run.state,
        "source": run.source,
        "requested_at": run.requested_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "tree_size": run.tree_size,
        "shard_size": 1 << run.shard_level,
        "progress": audit_progress(session, audit_id),
        "result": stored["report"],
        "checked": stored["checked"],
        "error": run.error,
    }


def list_audits(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    ids = session.execute(select(AuditRun.id).order_by(AuditRun.id.desc()).limit(limit)).scalars()
    return [audit_json(session, i) for i in ids]


def has_active_audit(session: Session, *, now: int, stale_after: int) -> bool:
    """True when an audit is queued or running and younger than ``stale_after`` seconds."""
    found = session.execute(
        select(AuditRun.id)
        .where(AuditRun.state.in_([STATE_QUEUED, STATE_RUNNING]), AuditRun.requested_at > now - stale_after)
        .limit(1)
    ).scalar_one_or_none()
    return found is not None
