"""Chain-of-trust evaluation and provenance search over the store.

The reachable part of the graph is found in ONE recursive query over the indexed
``entry_edges`` → ``entry_subjects`` join (no scans, whatever the depth), then loaded in
batches; the walk and the verdicts are ``ledger.trust.chain`` (pure).
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, exists, select, text
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.models import Entry, EntrySigner, EntrySubject, TrustKey
from ledger.errors import MalformedError, NotFoundError
from ledger.trust.chain import MAX_LINKS, RecordInfo, TeeInfo, parse_digest
from ledger.trust.fold import leaf_notes
from ledger.trust.verdict import chain_verdict
from ledger.trust.graph import WALKED_KINDS
from ledger.trust.policy import matches_subject
from ledger.trust.predicates import DEPLOYMENT, kind_of
from ledger.services.reappraisal import chain_appraisals
from ledger.services.policy import state_at
from ledger.services.trust import load_state

__all__ = ["MAX_SEARCH_PAGE", "chain", "load_records", "reachable", "search"]

MAX_SEARCH_PAGE = 1000
#: IN lists are cut into chunks of this many values (SQLite's bound-parameter limit)
CHUNK = 900

_REACH = text(
    """
    WITH RECURSIVE reach(idx) AS (
        SELECT entry_idx FROM entry_subjects
        WHERE algorithm = :algorithm AND digest = :digest AND entry_idx <= :at
        UNION
        SELECT s.entry_idx FROM reach r
        JOIN entry_edges e ON e.entry_idx = r.idx
        JOIN entry_subjects s ON s.algorithm = e.algorithm AND s.digest = e.digest
        WHERE s.entry_idx <= :at AND e.kind IN ({kinds})
    )
    SELECT idx FROM reach LIMIT :cap
    """.format(kinds=", ".join(f"'{k}'" for k in sorted(WALKED_KINDS)))
)


def reachable(session: Session, algorithm: str, digest: str, *, at: int, cap: int = MAX_LINKS) -> list[int]:
    """Entry indexes (<= ``at``) reachable from the artifact's records through walked edges."""
    rows = session.execute(_REACH, {"algorithm": algorithm, "digest": digest, "at": at, "cap": cap})
    return sorted({r[0] for r in rows})


def _chunks(values: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(values), CHUNK):
        yield list(values[i : i + CHUNK])


def load_records(
    session: Session, indexes: Sequence[int], *, at: int | None = None, appraisals: bool = True
) -> dict[int, RecordInfo]:
    """What the chain evaluation needs of each entry, in four batched queries per chunk, as the
    ledger stood at entry ``at`` (None: now): a deployment's appraisal is the one judged under
    the trust state then (``reappraisal.chain_appraisals``; ``appraisals=False`` leaves it out,
    for listings that show no verdict)."""
    meta: dict[int, tuple[int, str]] = {}
    subjects: dict[int, list[tuple[str, str, str]]] = {}
    signers: dict[int, list[str]] = {}
    edges: dict[int, list[tuple[int, tuple[str, str, str]]]] = {}
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for chunk in _chunks(indexes):
        # Plain DBAPI queries: this is the hot path of every chain walk (no ORM, no IN expansion).
        marks = ", ".join([mark] * len(chunk))
        params = tuple(chunk)
        for idx, t, ptype in conn.exec_driver_sql(
            f"SELECT idx, integrated_time, predicate_type FROM entries WHERE idx IN ({marks})", params
        ).fetchall():
            meta[idx] = (t, ptype)
        for idx, alg, dig, name in conn.exec_driver_sql(
            f"SELECT entry_idx, algorithm, digest, name FROM entry_subjects WHERE entry_idx IN ({marks}) ORDER BY entry_idx, position",
            params,
        ).fetchall():
            subjects.setdefault(idx, []).append((alg, dig, name))
        for idx, key_id in conn.exec_driver_sql(
            f"SELECT entry_idx, key_id FROM entry_signers WHERE entry_idx IN ({marks})", params
        ).fetchall():
            signers.setdefault(idx, []).append(key_id)
        for idx, pos, kind, alg, dig in conn.exec_driver_sql(
            f"SELECT entry_idx, position, kind, algorithm, digest FROM entry_edges WHERE entry_idx IN ({marks})", params
        ).fetchall():
            edges.setdefault(idx, []).append((pos, (kind, alg, dig)))
    notes = _leaf_notes(conn, mark, indexes)
    deployments = [idx for idx, (_, ptype) in meta.items() if ptype == DEPLOYMENT]
    appraised = {}
    if deployments and appraisals:
        appraised = chain_appraisals(session, deployments, at=store.current_size(session) - 1 if at is None else at)
    return {
        idx: RecordInfo(
            index=idx,
            integrated_time=t,
            predicate_type=ptype,
            subjects=tuple(subjects.get(idx, ())),
            signers=tuple(sorted(signers.get(idx, ()))),
            edges=tuple(e for _, e in sorted(edges.get(idx, ()))),
            tee=TeeInfo.from_document(appraised[idx]) if idx in appraised else None,
            notes=notes.get(idx, ()),
        )
        for idx, (t, ptype) in meta.items()
    }


_BUNDLE_LEAF_PREFIX = b'{"bundle":'


def _leaf_notes(conn: Any, mark: str, indexes: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Notes read from the leaves themselves: only ``sigstore-bundle`` leaves are read (the
    prefix is the canonical leaf's first key), and only their signer record is looked at."""
    out: dict[int, tuple[str, ...]] = {}
    for chunk in _chunks(indexes):
        marks = ", ".join([mark] * len(chunk))
        rows = conn.exec_driver_sql(
            f"SELECT idx, data FROM entries WHERE idx IN ({marks}) AND substr(data, 1, {len(_BUNDLE_LEAF_PREFIX)}) = {mark}",
            (*chunk, _BUNDLE_LEAF_PREFIX),
        ).fetchall()
        for idx, data in rows:
            try:
                signer = json.loads(bytes(data)).get("signer")
            except (UnicodeDecodeError, ValueError, AttributeError):
                continue
            notes = leaf_notes(signer)
            if notes:
                out[idx] = notes
    return out


def chain(session: Session, digest: str, *, at: int | None = None, now: int | None = None) -> dict[str, Any]:
    """The chain of trust of ``digest`` (``sha256:<hex>``) as the ledger stood at index ``at``
    (inclusive; None: now). The GUIDE's JSON shape."""
    algorithm, value = parse_digest(digest)
    size = store.current_size(session)
    if at is None:
        as_of_time = int(_time.time()) if now is None else now
        state = load_state(session)
        last = size - 1
    else:
        if at < 0 or at >= size:
            raise NotFoundError(f"there is no entry at index {at} (the ledger has {size} entries)")
        as_of_time = store.get_entry(session, at).integrated_time
        state = state_at(session, at)
        last = at
    indexes = reachable(session, algorithm, value, at=last) if last >= 0 else []
    records = load_records(session, indexes, at=last)
    return chain_verdict((algorithm, value), records, state, as_of_time=as_of_time)


# ------------------------------------------------------------------------------ search

_GLOB = set("*?[")


def _like_escape(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob_to_like(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(_like_escape(ch))
    return "".join(out)


def search(
    session: Session,
    *,
    digest: str | None = None,
    name: str | None = None,
    signer: str | None = None,
    predicate_type: str | None = None,
    since: int | None = None,
    until: int | None = None,
    after: int = -1,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """Entries matching every given filter, ascending by index, keyset-paged by ``after``.

    ``name`` is a prefix, or a glob matched per ``/`` segment when it holds ``*``, ``?`` or
    ``[``; ``signer`` is a key id or a principal name; ``predicate_type`` is exact or a glob.
    Returns (entries, next ``after`` or None).
    """
    if not 1 <= limit <= MAX_SEARCH_PAGE:
        raise MalformedError(f"limit must be between 1 and {MAX_SEARCH_PAGE}")
    if not any(v is not None for v in (digest, name, signer, predicate_type, since, until)):
        raise MalformedError("give at least one of digest, name, signer, predicate_type, since, until")
    conditions: list[Any] = []
    if digest is not None:
        alg, value = parse_digest(digest)
        conditions.append(
            exists().where(EntrySubject.entry_idx == Entry.idx, EntrySubject.algorithm == alg, EntrySubject.digest == value)
        )
    glob = None
    if name is not None:
        if not name:
            raise MalformedError("name must not be empty")
        if _GLOB & set(name):
            glob = name
            prefix = name[: min(name.index(c) for c in _GLOB if c in name)]
        else:
            prefix = name
        conditions.append(
            exists().where(EntrySubject.entry_idx == Entry.idx, EntrySubject.name.like(_like_escape(prefix) + "%", escape="\\"))
        )
    if signer is not None:
        key_ids = [signer] if len(signer) == 64 and all(c in "0123456789abcdef" for c in signer) else list(
            session.execute(select(TrustKey.key_id).where(TrustKey.principal == signer)).scalars()
        )
        if not key_ids:
            return [], None
        conditions.append(exists().where(EntrySigner.entry_idx == Entry.idx, EntrySigner.key_id.in_(key_ids)))
    if predicate_type is not None:
        if _GLOB & set(predicate_type):
            conditions.append(Entry.predicate_type.like(_glob_to_like(predicate_type), escape="\\"))
        else:
            conditions.append(Entry.predicate_type == predicate_type)
    if since is not None:
        conditions.append(Entry.integrated_time >= since)
    if until is not None:
        conditions.append(Entry.integrated_time <= until)

    found: list[int] = []
    cursor = after
    exhausted = False
    while len(found) < limit and not exhausted:
        page = limit * (4 if glob else 1)
        rows = list(
            session.execute(
                select(Entry.idx).where(Entry.idx > cursor, and_(*conditions)).order_by(Entry.idx).limit(page)
            ).scalars()
        )
        exhausted = len(rows) < page
        if not rows:
            break
        if glob is not None:
            names = _names(session, rows)
            for idx in rows:
                if any(matches_subject(glob, n) for n in names.get(idx, ())):
                    found.append(idx)
                    if len(found) == limit:
                        cursor = idx
                        break
            else:
                cursor = rows[-1]
        else:
            found.extend(rows)
            cursor = rows[-1]
    found = found[:limit]
    return _describe(session, found), (found[-1] if len(found) == limit else None)


def _names(session: Session, indexes: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for chunk in _chunks(indexes):
        for idx, n in session.execute(select(EntrySubject.entry_idx, EntrySubject.name).where(EntrySubject.entry_idx.in_(chunk))):
            out.setdefault(idx, []).append(n)
    return out


def _describe(session: Session, indexes: Sequence[int]) -> list[dict[str, Any]]:
    records = load_records(session, indexes, appraisals=False)  # a listing: no verdict, no appraisal
    principals: dict[str, str] = {}
    key_ids = sorted({k for r in records.values() for k in r.signers})
    for chunk in range(0, len(key_ids), CHUNK):
        for key_id, principal in session.execute(
            select(TrustKey.key_id, TrustKey.principal).where(TrustKey.key_id.in_(key_ids[chunk : chunk + CHUNK]))
        ):
            principals[key_id] = principal
    out = []
    for idx in indexes:
        r = records[idx]
        out.append(
            {
                "index": idx,
                "integrated_time": r.integrated_time,
                "predicate_type": r.predicate_type,
                "kind": kind_of(r.predicate_type),
                "subjects": [{"name": n, "digest": f"{a}:{d}"} for a, d, n in r.subjects],
                "signers": [{"key_id": k, "principal": principals.get(k)} for k in r.signers],
                "edges": len(r.edges),
            }
        )
    return out

