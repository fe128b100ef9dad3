"""Names for the links of a chain of trust: what a person calls an artifact, not only its digest.

A chain link names a digest and the entry it rests on; the subject *name* (``acme/bios/2.14.1``)
and, where the record states one, its version live in that entry. They are read here from the
browse cache (``entry_subjects``) and the leaf, for display only: they never change a verdict.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from ledger.db import browse, store
from ledger.errors import LedgerError

__all__ = ["name_links"]

#: predicate fields that state a version, in the order they are looked for
_VERSION_FIELDS = ("version", "release", "firmware_version")
MAX_NAMED = 500


def _version_of(session: Session, index: int) -> str | None:
    """A record's own version string (firmware and part predicates state one), if any."""
    from ledger.records.leaf import decode_leaf  # noqa: PLC0415 - only when a page asks

    try:
        leaf = decode_leaf(store.get_entry(session, index).data)
        statement = json.loads(leaf.envelope.payload) if leaf.envelope is not None else None
    except (LedgerError, ValueError):
        return None
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    if not isinstance(predicate, dict):
        return None
    for name in _VERSION_FIELDS:
        value = predicate.get(name)
        if isinstance(value, str) and value:
            return value[:64]
    return None


def name_links(session: Session, links: Sequence[MutableMapping[str, Any]]) -> None:
    """Set ``name`` (the subject name the entry gives the link's digest) and ``version`` on each
    link that rests on an entry; links without an entry keep what they have."""
    wanted = [l for l in links[:MAX_NAMED] if isinstance(l.get("index"), int)]
    found = {s.index: s for s in browse.summaries(session, sorted({l["index"] for l in wanted}))}
    for link in wanted:
        summary = found.get(link["index"])
        if summary is None:
            continue
        digest = str(link.get("subject") or "")
        names = [n for alg, d, n in summary.subjects if f"{alg}:{d}" == digest and n]
        link.setdefault("name", names[0] if names else (summary.subject_names[0] if summary.subject_names else None))
        if "version" not in link:
            link["version"] = _version_of(session, link["index"])
