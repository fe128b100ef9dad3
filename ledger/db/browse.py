"""Read-only queries behind the auditor pages.

Every query here is bounded: by primary key, by an index range with a LIMIT, or by a binary
search over the primary key. None counts or scans ``entries``, so no page gets slower as the
ledger grows (keyset pagination everywhere, never OFFSET).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from ledger.db import models
from ledger.db.models import Checkpoint, Entry, EntrySigner, EntrySubject, TrustKey, TrustRoot

__all__ = [
    "EntrySummary",
    "audit_runs",
    "entries_by_digest_prefix",
    "entries_by_host",
    "entries_by_key_ids",
    "entries_by_name_text",
    "entries_by_predicate_text",
    "key_ids_matching",
    "like_escape",
    "entries_by_predicate_type",
    "entries_by_subject_digest",
    "entries_by_subject_name",
    "first_index_at_or_after",
    "key_ids_named",
    "merge_pages",
    "recent_entries",
    "signer_names",
    "summaries",
]

#: A page source: (after, limit) -> ascending entry indexes greater than ``after``.
PageSource = Callable[[int, int], list[int]]


@dataclass(frozen=True)
class EntrySummary:
    index: int
    integrated_time: int
    predicate_type: str
    key_id: str
    signer: str | None
    #: (algorithm, digest, name) of each subject digest
    subjects: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def subject_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, _, name in self.subjects:
            seen.setdefault(name, None)
        return list(seen)


def signer_names(session: Session, key_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(key_ids))
    if not ids:
        return {}
    names = dict(session.execute(select(TrustKey.key_id, TrustKey.principal).where(TrustKey.key_id.in_(ids))).all())
    root = session.execute(select(TrustRoot.key_id).where(TrustRoot.id == 1)).scalar_one_or_none()
    if root in ids and root not in names:
        names[root] = "administrator (root of trust)"
    return names


def key_ids_named(session: Session, name: str) -> list[str]:
    """The keys of a principal."""
    return list(session.execute(select(TrustKey.key_id).where(TrustKey.principal == name)).scalars())


def summaries(session: Session, indexes: Sequence[int]) -> list[EntrySummary]:
    """One summary per index (in the order given), with subjects and signer names: three queries."""
    if not indexes:
        return []
    rows = session.execute(
        select(Entry.idx, Entry.integrated_time, Entry.predicate_type, Entry.key_id).where(Entry.idx.in_(list(indexes)))
    ).all()
    subjects: dict[int, list[tuple[str, str, str]]] = {}
    for idx, alg, digest, name in session.execute(
        select(EntrySubject.entry_idx, EntrySubject.algorithm, EntrySubject.digest, EntrySubject.name)
        .where(EntrySubject.entry_idx.in_(list(indexes)))
        .order_by(EntrySubject.entry_idx, EntrySubject.position)
    ):
        subjects.setdefault(idx, []).append((alg, digest, name))
    names = signer_names(session, (r.key_id for r in rows))
    by_index = {
        r.idx: EntrySummary(r.idx, r.integrated_time, r.predicate_type, r.key_id, names.get(r.key_id), subjects.get(r.idx, []))
        for r in rows
    }
    return [by_index[i] for i in indexes if i in by_index]


def recent_entries(session: Session, limit: int = 10) -> list[EntrySummary]:
    """The newest entries, newest first (a walk down the primary key)."""
    indexes = list(session.execute(select(Entry.idx).order_by(Entry.idx.desc()).limit(limit)).scalars())
    return summaries(session, indexes)


def first_index_at_or_after(session: Session, size: int, when: int) -> int:
    """The first index whose integrated_time is >= ``when`` (``size`` if none), by binary search.

    The ledger's clock is read under the sequencer lock, so integrated_time does not decrease
    along the log; a clock stepped backwards only blurs the ingestion-rate figure this feeds,
    never a proof. About log2(size) primary-key reads.
    """
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        t = session.execute(select(Entry.integrated_time).where(Entry.idx == mid)).scalar_one_or_none()
        if t is not None and t >= when:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ------------------------------------------------------------------------------ search sources
# Each returns ascending indexes > after, at most ``limit``: keyset pagination on entry index.


def entries_by_subject_digest(session: Session, algorithm: str, digest: str, after: int, limit: int) -> list[int]:
    return list(
        session.execute(
            select(EntrySubject.entry_idx)
            .where(EntrySubject.algorithm == algorithm, EntrySubject.digest == digest, EntrySubject.entry_idx > after)
            .group_by(EntrySubject.entry_idx)
            .order_by(EntrySubject.entry_idx)
            .limit(limit)
        ).scalars()
    )


def entries_by_subject_name(session: Session, name: str, after: int, limit: int) -> list[int]:
    return list(
        session.execute(
            select(EntrySubject.entry_idx)
            .where(EntrySubject.name == name, EntrySubject.entry_idx > after)
            .group_by(EntrySubject.entry_idx)
            .order_by(EntrySubject.entry_idx)
            .limit(limit)
        ).scalars()
    )


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def entries_by_name_text(session: Session, text: str, after: int, limit: int) -> list[int]:
    """Entries with a subject name that contains ``text`` (prefixes included)."""
    return list(
        session.execute(
            select(EntrySubject.entry_idx)
            .where(EntrySubject.name.like(f"%{like_escape(text)}%", escape="\\"), EntrySubject.entry_idx > after)
            .group_by(EntrySubject.entry_idx)
            .order_by(EntrySubject.entry_idx)
            .limit(limit)
        ).scalars()
    )


def entries_by_digest_prefix(session: Session, algorithm: str | None, prefix: str, after: int, limit: int) -> list[int]:
    """Entries with a subject digest starting with ``prefix`` (lowercase hex), any algorithm if None."""
    q = select(EntrySubject.entry_idx).where(
        EntrySubject.digest.like(f"{like_escape(prefix)}%", escape="\\"), EntrySubject.entry_idx > after
    )
    if algorithm is not None:
        q = q.where(EntrySubject.algorithm == algorithm)
    return list(session.execute(q.group_by(EntrySubject.entry_idx).order_by(EntrySubject.entry_idx).limit(limit)).scalars())


def key_ids_matching(session: Session, text: str) -> list[str]:
    """Keys whose principal name contains ``text``, or whose key id starts with it."""
    pattern = like_escape(text)
    return list(
        session.execute(
            select(TrustKey.key_id).where(
                TrustKey.principal.like(f"%{pattern}%", escape="\\") | TrustKey.key_id.like(f"{pattern.lower()}%", escape="\\")
            )
        ).scalars()
    )


def entries_by_host(session: Session, text: str, after: int, limit: int) -> list[int]:
    """Deployments whose appraised host id contains ``text``."""
    model = models.DeploymentAppraisal
    if session.get_bind().dialect.name == "postgresql":
        host = func.cast(model.document, JSONB)["host_id"].astext
    else:
        host = func.json_extract(model.document, "$.host_id")
    return list(
        session.execute(
            select(model.entry_idx)
            .where(host.like(f"%{like_escape(text)}%", escape="\\"), model.entry_idx > after)
            .order_by(model.entry_idx)
            .limit(limit)
        ).scalars()
    )


def entries_by_predicate_text(session: Session, text: str, after: int, limit: int) -> list[int]:
    """Entries whose predicate type contains ``text``."""
    return list(
        session.execute(
            select(Entry.idx)
            .where(Entry.predicate_type.like(f"%{like_escape(text)}%", escape="\\"), Entry.idx > after)
            .order_by(Entry.idx)
            .limit(limit)
        ).scalars()
    )


def entries_by_key_ids(session: Session, key_ids: Sequence[str], after: int, limit: int) -> list[int]:
    """Entries signed by any of these keys (every verified signer, through ix_entry_signers_key_id)."""
    if not key_ids:
        return []
    return list(
        session.execute(
            select(EntrySigner.entry_idx)
            .where(EntrySigner.key_id.in_(list(key_ids)), EntrySigner.entry_idx > after)
            .group_by(EntrySigner.entry_idx)
            .order_by(EntrySigner.entry_idx)
            .limit(limit)
        ).scalars()
    )


def entries_by_predicate_type(session: Session, predicate_type: str, after: int, limit: int) -> list[int]:
    return list(
        session.execute(
            select(Entry.idx)
            .where(Entry.predicate_type == predicate_type, Entry.idx > after)
            .order_by(Entry.idx)
            .limit(limit)
        ).scalars()
    )


def merge_pages(sources: Sequence[PageSource], after: int, limit: int) -> tuple[list[int], int | None]:
    """One keyset page over several sources: the ``limit`` smallest indexes > ``after`` of their
    union, and the ``after`` of the next page (None on the last page)."""
    pages = [source(after, limit + 1) for source in sources]
    merged: list[int] = []
    for index in heapq.merge(*pages):
        if not merged or merged[-1] != index:
            merged.append(index)
    page = merged[:limit]
    return page, (page[-1] if len(merged) > limit else None)


# ------------------------------------------------------------------------------ checkpoints, audits


def checkpoint_roots(session: Session, sizes: Iterable[int]) -> dict[int, bytes]:
    wanted = sorted(set(sizes))
    if not wanted:
        return {}
    return dict(session.execute(select(Checkpoint.tree_size, Checkpoint.root_hash).where(Checkpoint.tree_size.in_(wanted))).all())


def audit_runs(session: Session, *, before: int | None = None, limit: int = 50) -> list[dict[str, Any]] | None:
    """Audit runs, newest first, keyset-paged by ``before`` (an audit id); None when this store
    has no audit table (the workers' audits are not installed)."""
    model = getattr(models, "AuditRun", None)
    if model is None:
        return None
    q = select(model).order_by(model.id.desc()).limit(limit)
    if before is not None:
        q = q.where(model.id < before)
    runs = []
    for run in session.execute(q).scalars():
        result = None
        if run.result:
            try:
                result = json.loads(run.result)
            except ValueError:
                result = None
        if isinstance(result, dict) and isinstance(result.get("report"), dict):
            result = result["report"]  # a finished run stores {"report": …, "checked": …}
        runs.append(
            {
                "id": run.id,
                "state": run.state,
                "source": run.source,
                "requested_at": run.requested_at,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "tree_size": run.tree_size,
                "progress": run.progress,
                "shard_count": run.shard_count,
                "percent": (100 * run.progress // run.tree_size) if run.tree_size else 100,
                "ok": result.get("ok") if isinstance(result, dict) else None,
                "first_bad_index": result.get("first_bad_index") if isinstance(result, dict) else None,
                "problems": (result.get("problems") or [])[:20] if isinstance(result, dict) else [],
                "error": run.error,
            }
        )
    return runs
