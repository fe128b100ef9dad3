"""Reading the ledger: entries, checkpoints, the tree size and the overview's figures.

The read side the web API and the auditor pages use (they reach the store only through here).
Every read is bounded (primary key, an index range with a LIMIT, or a binary search), so no page
gets slower as the ledger grows; the queries themselves are ``ledger.db.store`` and
``ledger.db.browse``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from ledger.db import browse as queries
from ledger.db import store
from ledger.db.browse import EntrySummary
from ledger.db.models import Checkpoint, Entry

__all__ = [
    "EntrySummary",
    "audit_runs",
    "checkpoint_roots",
    "entries_since",
    "entry_indexes_by_subject",
    "get_entry",
    "latest_checkpoint",
    "list_checkpoints",
    "recent_entries",
    "summaries",
    "tree_size",
]


def tree_size(session: Session) -> int:
    """The tree size the sequencer has reached (committed), without taking its lock."""
    return store.current_size(session)


def get_entry(session: Session, index: int) -> Entry:
    """The entry at ``index``. Raises NotFoundError when there is none."""
    return store.get_entry(session, index)


def entry_indexes_by_subject(session: Session, algorithm: str, digest: str, *, after: int = -1, limit: int = 100) -> list[int]:
    """Entry indexes with a subject of this digest, ascending, keyset-paged by ``after``."""
    return store.entry_indexes_by_subject(session, algorithm, digest, after=after, limit=limit)


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """The newest stored checkpoint, or None before the first."""
    return store.latest_checkpoint(session)


def list_checkpoints(session: Session, *, after: int = -1, limit: int = 100) -> list[Checkpoint]:
    """Stored checkpoints by ascending tree size, keyset-paged by ``after`` (a tree size)."""
    return store.list_checkpoints(session, after=after, limit=limit)


def checkpoint_roots(session: Session, sizes: Iterable[int]) -> dict[int, bytes]:
    """The root hash of each stored checkpoint among ``sizes``."""
    return queries.checkpoint_roots(session, sizes)


def summaries(session: Session, indexes: Sequence[int]) -> list[EntrySummary]:
    """One summary (time, predicate type, signer, subjects) per entry index, in order."""
    return queries.summaries(session, indexes)


def recent_entries(session: Session, limit: int = 10) -> list[EntrySummary]:
    """The newest ``limit`` entries, newest first."""
    return queries.recent_entries(session, limit)


def entries_since(session: Session, size: int, when: int) -> int:
    """How many of the first ``size`` entries were integrated at or after ``when`` (epoch seconds)."""
    return size - queries.first_index_at_or_after(session, size, when)


def audit_runs(session: Session, *, before: int | None = None, limit: int = 50) -> list[dict[str, Any]] | None:
    """Audit runs, newest first, keyset-paged by ``before``; None when the store has no audit table."""
    return queries.audit_runs(session, before=before, limit=limit)
