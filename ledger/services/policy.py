"""Key events: applying them to the materialised trust state, recomputing it, auditing it.

Key events are entries (predicate type ``key-event/v1``, signed by the administrator key).
``apply_key_events`` runs inside ``integrate``'s transaction, so an entry and its effect on the
trust state commit together. ``state_at`` folds the key-event entries up to an index (what the
ledger trusted then); ``verify_trust_state`` is the audit's check that the materialised tables
are exactly that fold.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.db.models import Entry, TrustKey, TrustRoot, TrustThreshold
from ledger.errors import LedgerError
from ledger.records.keys import public_key_from_der
from ledger.trust.policy import KeyEvent, KeyState, TrustState, parse_key_event
from ledger.trust.predicates import KEY_EVENT, validate_predicate
from ledger.services.log import LogIdentity
from ledger.services.trust import key_state_of, row_of, trust_fold
from ledger.trust.fold import TrustFold

__all__ = ["TrustProblem", "apply_key_events", "fold_key_events", "key_event_entries", "state_at", "verify_trust_state"]


@dataclass(frozen=True)
class TrustProblem:
    """A problem the audit reports: the fields of ``ledger.services.audit.Problem``."""

    index: int | None
    kind: str
    message: str


Problem = TrustProblem


def event_from_statement(statement: dict[str, Any]) -> KeyEvent:
    """A key event from a decoded statement (schema-checked)."""
    predicate = statement.get("predicate")
    validate_predicate(KEY_EVENT, predicate)
    subjects = [(s.get("name", ""), s.get("digest") or {}) for s in statement.get("subject") or ()]
    return parse_key_event(predicate, subjects)


def apply_key_events(session: Session, events: Sequence[tuple[int, int, KeyEvent]]) -> list[str | None]:
    """Apply (index, integrated time, event) in order to the materialised tables; flushes.

    Returns, per event, None or why it changed nothing (it was valid when prepared, but an
    earlier event in the meantime made it moot; the fold in ``state_at`` agrees).
    """
    if not events:
        return []
    wanted = {k for _, _, e in events for k in (e.key_id, e.replaces) if k}
    if any(e.action == "reaffirm" for _, _, e in events):
        # a re-affirmation covers the key's rotation history: load every key it may reach
        rows = {r.key_id: r for r in session.execute(select(TrustKey)).scalars()}
    else:
        rows = {r.key_id: r for r in session.execute(select(TrustKey).where(TrustKey.key_id.in_(sorted(wanted)))).scalars()} if wanted else {}
    state = TrustState(keys={k: key_state_of(r) for k, r in rows.items()})
    before = dict(state.keys)
    outcomes = [state.apply(event, index, time) for index, time, event in events]
    for key_id, key_state in state.keys.items():
        if before.get(key_id) != key_state:
            row = rows.get(key_id)
            if row is None:
                session.add(row_of(key_state))
            else:
                row_of(key_state, row)
    for pattern, (n, index) in state.thresholds.items():
        existing = session.get(TrustThreshold, pattern)
        if existing is None:
            session.add(TrustThreshold(pattern=pattern, threshold=n, set_index=index))
        else:
            existing.threshold, existing.set_index = n, index
    session.flush()
    return outcomes


def key_event_entries(session: Session, *, at: int | None = None, chunk: int = 500):  # type: ignore[no-untyped-def]
    """(index, integrated_time, leaf data) of the key-event entries up to ``at`` (inclusive), in order."""
    after = -1
    while True:
        q = select(Entry.idx, Entry.integrated_time, Entry.data).where(Entry.predicate_type == KEY_EVENT, Entry.idx > after)
        if at is not None:
            q = q.where(Entry.idx <= at)
        rows = session.execute(q.order_by(Entry.idx).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _root_key_id(session: Session) -> str | None:
    row = session.get(TrustRoot, 1)
    return row.key_id if row is not None else None


def fold_key_events(session: Session, *, at: int | None = None) -> TrustFold:
    """A from-scratch fold of the key-event entries up to ``at`` (inclusive; None: all), from
    their leaf bytes (``ledger.trust.fold``)."""
    root = session.get(TrustRoot, 1)
    fold = TrustFold(bytes(root.public_key) if root is not None else None)
    for index, _time, data in key_event_entries(session, at=at):
        fold.skip_to(index, fold.last_time)
        try:
            fold.feed(index, bytes(data))
        except LedgerError:
            continue
    return fold


def state_at(session: Session, at: int | None = None) -> TrustState:
    """The trust state as the key-event entries up to index ``at`` (inclusive; None: all) build it
    (the process's incremental fold, ``ledger.services.trust.trust_fold``)."""
    fold = trust_fold(session)
    return fold.state if at is None else fold.state_at(at)


def _materialised(session: Session) -> tuple[dict[str, KeyState], dict[str, tuple[int, int]]]:
    keys = {r.key_id: key_state_of(r) for r in session.execute(select(TrustKey)).scalars()}
    thresholds = {t.pattern: (t.threshold, t.set_index) for t in session.execute(select(TrustThreshold)).scalars()}
    return keys, thresholds


def root_der(session: Session) -> bytes | None:
    """The administrator key's DER SPKI (the fold's root of trust), if the store has one."""
    root = session.get(TrustRoot, 1)
    return bytes(root.public_key) if root is not None else None


def verify_trust_state(session: Session, log: LogIdentity | None = None, *, fold: TrustFold | None = None) -> list[Problem]:
    """Recompute the trust state from the key-event entries and compare it with the tables.

    Problems: a key-event entry that does not decode, is not signed by the root of trust or does
    not follow the last key event (``key_event``, at its index; only when ``fold`` is not given:
    a whole-log fold reports those itself), and every difference between the fold and the
    materialised tables (``trust_state``, at the index of the key's last key event: the first
    index whose derived rows differ).
    """
    problems: list[Problem] = []
    root = session.get(TrustRoot, 1)
    der = bytes(root.public_key) if root is not None else None
    if root is not None and public_key_from_der(der).key_id != root.key_id:  # type: ignore[arg-type]
        problems.append(Problem(0, "trust_state", "the root of trust's key id does not match its public key"))
    if fold is None:
        fold = fold_key_events(session)
        for index, message in fold.problems:
            problems.append(Problem(index, "key_event", message))
    folded = fold.state
    keys, thresholds = _materialised(session)
    for key_id in sorted(set(keys) | set(folded.keys)):
        stored, expected = keys.get(key_id), folded.keys.get(key_id)
        if stored == expected:
            continue
        if stored is None:
            assert expected is not None
            problems.append(Problem(expected.registered_index, "trust_state", f"key {key_id} is registered by entry {expected.registered_index} but missing from trust_keys"))
        elif expected is None:
            problems.append(Problem(max(stored.registered_index, 0), "trust_state", f"key {key_id} ({stored.principal}) is in trust_keys but no key-event entry registers it"))
        else:
            fields = [f for f in KeyState.__dataclass_fields__ if getattr(stored, f) != getattr(expected, f)]
            problems.append(
                Problem(max(expected.last_event_index, stored.last_event_index), "trust_state", f"key {key_id} ({expected.principal}) differs from its key-event entries in: {', '.join(fields)} (last event: entry {expected.last_event_index})")
            )
    for pattern in sorted(set(thresholds) | set(folded.thresholds)):
        if thresholds.get(pattern) != folded.thresholds.get(pattern):
            at = (folded.thresholds.get(pattern) or thresholds.get(pattern) or (0, 0))[1]
            problems.append(
                Problem(at, "trust_state", f"threshold for {pattern!r} is {thresholds.get(pattern)} in trust_thresholds, but the key events say {folded.thresholds.get(pattern)}")
            )
    problems.sort(key=lambda p: p.index if p.index is not None else -1)
    return problems


def root_fingerprint(session: Session) -> str | None:
    """The administrator key id (the root of trust), if the store has one."""
    return _root_key_id(session)


def encode_public_key(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")
