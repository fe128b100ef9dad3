"""Free-text search over the ledger: what the auditor's search box and ``provledger search QUERY``
both answer, so the two always give the same entries.

A query is read every way it can mean something, and the answer is the union, ascending by
entry index and keyset-paged by ``after`` (never OFFSET):

- ``signer:NAME`` — only records signed by keys of principals whose name contains NAME (or a
  key id starting with it);
- a digest — ``alg:hex`` or bare hex of at least ``MIN_DIGEST_PREFIX`` digits — subject digests
  starting with it (a full SHA-256 is also read as a signer key id);
- anything else — subject names containing it (prefixes included), predicate types containing it,
  deployments whose host id contains it, and records signed by principals whose name contains it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ledger.db import browse
from ledger.errors import MalformedError
from ledger.trust.graph import normalise_algorithm

__all__ = ["MAX_QUERY_CHARS", "MIN_DIGEST_PREFIX", "Found", "find", "summaries"]

MAX_QUERY_CHARS = 1024
#: a shorter hex string is read as words, not as a digest prefix
MIN_DIGEST_PREFIX = 8
_DIGEST = re.compile(r"(?:([A-Za-z][A-Za-z0-9_-]{0,31}):)?([0-9A-Fa-f]{8,128})")


@dataclass(frozen=True)
class Found:
    indexes: list[int]
    #: the ``after`` of the next page, or None on the last page
    next_after: int | None
    #: how the query was read, one phrase per reading
    meaning: list[str] = field(default_factory=list)
    #: (algorithm, hex) when the query is a whole digest (the UI links its chain of trust)
    digest: tuple[str, str] | None = None


def _sources(session: Session, q: str) -> tuple[list[Callable[[int, int], list[int]]], list[str], tuple[str, str] | None]:
    if q.lower().startswith("signer:"):
        who = q[len("signer:") :].strip()
        if not who:
            raise MalformedError("signer: needs a principal name or a key id after it")
        key_ids = browse.key_ids_matching(session, who)
        return [lambda a, n: browse.entries_by_key_ids(session, key_ids, a, n)], [f"records signed by {who!r}"], None
    m = _DIGEST.fullmatch(q)
    algorithm = normalise_algorithm(m.group(1)) if m is not None and m.group(1) else None
    if m is not None and (algorithm is not None or not m.group(1)):
        value = m.group(2).lower()
        sources = [lambda a, n: browse.entries_by_digest_prefix(session, algorithm, value, a, n)]
        meaning = [f"subject digest starting {(algorithm + ':') if algorithm else ''}{value}"]
        whole = (algorithm or "sha256", value) if len(value) == 64 and algorithm in (None, "sha256") else None
        if whole is not None:
            sources.append(lambda a, n: browse.entries_by_key_ids(session, [value], a, n))
            meaning.append(f"signer key id {value}")
        return sources, meaning, whole
    key_ids = browse.key_ids_matching(session, q)
    sources = [
        lambda a, n: browse.entries_by_name_text(session, q, a, n),
        lambda a, n: browse.entries_by_predicate_text(session, q, a, n),
        lambda a, n: browse.entries_by_host(session, q, a, n),
    ]
    meaning = [f"subject name containing {q!r}", f"predicate type containing {q!r}", f"host id containing {q!r}"]
    if key_ids:
        sources.append(lambda a, n: browse.entries_by_key_ids(session, key_ids, a, n))
        meaning.append(f"signer named like {q!r}")
    return sources, meaning, None


def find(session: Session, q: str, *, after: int = -1, limit: int = 25) -> Found:
    """Entries matching the free-text query ``q`` (see the module docstring), one keyset page."""
    q = q.strip()
    if not q:
        raise MalformedError("the search is empty: give a name, a digest (8+ hex digits), a host id, a signer or a predicate type")
    if len(q) > MAX_QUERY_CHARS:
        raise MalformedError(f"a search is at most {MAX_QUERY_CHARS} characters")
    if any(ord(c) < 0x20 for c in q):
        raise MalformedError("a search may not contain control characters")
    if not 1 <= limit <= 1000:
        raise MalformedError("limit must be between 1 and 1000")
    sources, meaning, digest = _sources(session, q)
    page, next_after = browse.merge_pages(sources, after, limit)
    return Found(page, next_after, meaning, digest)


def summaries(session: Session, indexes: list[int]) -> list[browse.EntrySummary]:
    """One display summary per found index (subjects, predicate type, signer names)."""
    return browse.summaries(session, indexes)
