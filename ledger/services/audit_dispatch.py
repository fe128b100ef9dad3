"""What a dispatcher needs to send an audit to the workers: its planned shard ranges."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.db.models import AuditShard

__all__ = ["shard_ranges"]


def shard_ranges(sessions: Callable[[], Session], audit_id: int) -> list[tuple[int, int, int]]:
    """(shard number, start index, end index) of each shard of ``audit_id``, by shard number."""
    with sessions() as session:
        rows = session.execute(
            select(AuditShard.shard, AuditShard.start_index, AuditShard.end_index)
            .where(AuditShard.audit_id == audit_id)
            .order_by(AuditShard.shard)
        ).all()
    return [(int(n), int(start), int(end)) for n, start, end in rows]
