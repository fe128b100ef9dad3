"""Searching the ledger: one query string → the entries it names, a page at a time. The auditor's
search box and ``provledger search QUERY`` both call :func:`search`, so they always agree.

A query is read every way it can mean something, and the answer is the union, ascending by
entry index and keyset-paged by ``after`` (never OFFSET):

- ``signer:NAME`` — records signed by keys of principals whose name contains NAME (or whose key
  id starts with it);
- a digest — ``alg:hex`` or bare hex of at least 8 digits — subject digests starting with it (a
  whole SHA-256 is also read as a signer key id);
- anything else — subject names containing it (prefixes included), predicate types containing it,
  deployments whose host id contains it, and records signed by principals whose name contains it.
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
_DIGEST_PREFIX = re.compile(r"(?:([A-Za-z][A-Za-z0-9_-]{0,31}):)?([0-9A-Fa-f]{8,128})")
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
    if q.lower().startswith("signer:"):
        who = q[len("signer:") :].strip()
        if not who:
            raise MalformedError("signer: needs a principal name or a key id after it")
        key_ids = queries.key_ids_matching(session, who)
        return [lambda a, n: queries.entries_by_key_ids(session, key_ids, a, n)], [f"records signed by {who!r}"], None
    if q.lower().startswith("key:") and _BARE_SHA256.fullmatch(q[4:].strip()):
        # the key events about one key, identity or TEE root: their subject digest is its id
        value = q[4:].strip().lower()
        return [lambda a, n: queries.entries_by_digest_prefix(session, "sha256", value, a, n)], [f"key events about key {value}"], None
    m = _DIGEST_PREFIX.fullmatch(q)
    algorithm = normalise_algorithm(m.group(1)) if m is not None and m.group(1) else None
    if m is not None and (algorithm is not None or not m.group(1)):
        value = m.group(2).lower()
        sources = [lambda a, n: queries.entries_by_digest_prefix(session, algorithm, value, a, n)]
        meaning = [f"subject digest starting {(algorithm + ':') if algorithm else ''}{value}"]
        whole = (algorithm or "sha256", value) if len(value) == 64 and algorithm in (None, "sha256") else None
        if whole is not None:
            sources.append(lambda a, n: queries.entries_by_key_ids(session, [value], a, n))
            meaning.append(f"signer key id {value}")
        return sources, meaning, whole
    key_ids = queries.key_ids_matching(session, q)
    sources = [
        lambda a, n: queries.entries_by_name_text(session, q, a, n),
        lambda a, n: queries.entries_by_predicate_text(session, q, a, n),
        lambda a, n: queries.entries_by_host(session, q, a, n),
    ]
    meaning = [f"subject name containing {q!r}", f"predicate type containing {q!r}", f"host id containing {q!r}"]
    if key_ids:
        sources.append(lambda a, n: queries.entries_by_key_ids(session, key_ids, a, n))
        meaning.append(f"signer named like {q!r}")
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
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in q):
        raise MalformedError("a search may not contain control characters")
    sources, meaning, digest = _sources(session, q)
    page, next_after = queries.merge_pages(sources, -1 if after is None else after, limit)
    return SearchResult(queries.summaries(session, page), next_after, meaning, digest)
