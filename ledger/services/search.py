"""Searching the ledger: one query string → the entries it names, a page at a time.

A query is ``signer:<name or key id>``, a digest (``alg:hex`` or a bare 64-hex SHA-256, which also
matches a signer key id), or else a subject name, a predicate type or a signer name. Every source
is an index range, merged by entry index (keyset-paged, never OFFSET).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ledger.db import browse as queries
from ledger.db.browse import EntrySummary
from ledger.errors import MalformedError
from ledger.trust.graph import normalise_algorithm

__all__ = ["MAX_QUERY_CHARS", "SearchResult", "normalise_digest", "search"]

#: longest query accepted
MAX_QUERY_CHARS = 1024

_DIGEST = re.compile(r"([A-Za-z][A-Za-z0-9_-]{0,31}):([0-9A-Fa-f]{8,128})")
_BARE_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")

PageSource = Callable[[int, int], list[int]]


@dataclass(frozen=True)
class SearchResult:
    results: list[EntrySummary] = field(default_factory=list)
    #: the ``after`` of the next page, or None on the last
    next_after: int | None = None
    #: what the query was taken to mean, one phrase per source
    meaning: list[str] = field(default_factory=list)
    #: (algorithm, hex) when the query is a digest
    digest: tuple[str, str] | None = None


def normalise_digest(text: str) -> tuple[str, str] | None:
    """(algorithm, lowercase hex) of ``alg:hex`` or a bare 64-hex SHA-256, else None."""
    text = text.strip()
    if _BARE_SHA256.fullmatch(text):
        return "sha256", text.lower()
    m = _DIGEST.fullmatch(text)
    algorithm = normalise_algorithm(m.group(1)) if m is not None else None
    if m is None or algorithm is None:  # e.g. "key:<key id>", a key event's subject name
        return None
    return algorithm, m.group(2).lower()


def _sources(session: Session, q: str) -> tuple[list[PageSource], list[str], tuple[str, str] | None]:
    """The page sources a query stands for, a description of each, and its digest if it is one."""
    sources: list[PageSource] = []
    meaning: list[str] = []
    if q.lower().startswith("signer:"):
        who = q[len("signer:") :].strip()
        key_ids = [who.lower()] if _BARE_SHA256.fullmatch(who) else queries.key_ids_named(session, who)
        sources.append(lambda a, n: queries.entries_by_key_ids(session, key_ids, a, n))
        meaning.append(f"records signed by {who!r}")
        return sources, meaning, None
    digest = normalise_digest(q)
    if digest is not None:
        algorithm, value = digest
        sources.append(lambda a, n: queries.entries_by_subject_digest(session, algorithm, value, a, n))
        meaning.append(f"subject digest {algorithm}:{value}")
        if algorithm == "sha256" and len(value) == 64:  # a key id has the same shape
            sources.append(lambda a, n: queries.entries_by_key_ids(session, [value], a, n))
            meaning.append(f"signer key id {value}")
        return sources, meaning, digest
    sources.append(lambda a, n: queries.entries_by_subject_name(session, q, a, n))
    meaning.append(f"subject name {q!r}")
    sources.append(lambda a, n: queries.entries_by_predicate_type(session, q, a, n))
    meaning.append(f"predicate type {q!r}")
    key_ids = queries.key_ids_named(session, q)
    if key_ids:
        sources.append(lambda a, n: queries.entries_by_key_ids(session, key_ids, a, n))
        meaning.append(f"signer {q!r}")
    return sources, meaning, None


def search(session: Session, q: str, *, after: int | None, limit: int) -> SearchResult:
    """One page of the entries ``q`` names, ascending by index after ``after``.

    Raises:
        MalformedError: the query is longer than :data:`MAX_QUERY_CHARS`.
    """
    q = q.strip()
    if len(q) > MAX_QUERY_CHARS:
        raise MalformedError(f"a search is at most {MAX_QUERY_CHARS} characters")
    if not q:
        return SearchResult()
    sources, meaning, digest = _sources(session, q)
    page, next_after = queries.merge_pages(sources, -1 if after is None else after, limit)
    return SearchResult(queries.summaries(session, page), next_after, meaning, digest)
