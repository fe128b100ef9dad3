"""The trust fold as the offline verifier calls it (one seam, so the verifier has no fold of its own).

Until ``ledger.trust.fold`` / ``ledger.trust.verdict`` (issue 12) land, this calls the pure code
the server's ``chain`` runs today: ``TrustState.apply`` over the key events in index order (what
``ledger.services.policy.state_at`` folds) and ``ledger.trust.chain.evaluate_chain``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError, MalformedError
from ledger.records.keys import PublicKey
from ledger.trust.chain import RecordInfo, evaluate_chain, parse_digest
from ledger.trust.graph import edges_of
from ledger.trust.policy import KeyEvent, TrustState, parse_key_event
from ledger.trust.predicates import KEY_EVENT, validate_predicate
from ledger.records.leaf import decode_leaf
from ledger.records.statement import parse_statement

__all__ = ["GENESIS", "leaf_facts", "prev_of", "recompute_chain"]

GENESIS: tuple[int, bytes] = (-1, b"\0" * 32)


@dataclass(frozen=True)
class LeafFacts:
    index: int
    integrated_time: int
    predicate_type: str
    subjects: tuple[tuple[str, str, str], ...]
    signers: tuple[str, ...]
    edges: tuple[tuple[str, str, str], ...]
    statement: dict[str, Any] | None
    key_event: KeyEvent | None
    key_event_error: str | None = None


def leaf_facts(index: int, data: bytes) -> LeafFacts:
    leaf = decode_leaf(data)
    if leaf.envelope is None:
        raise MalformedError(f"entry {index} carries no in-toto statement")
    statement = parse_statement(leaf.envelope.payload)
    subjects = tuple((alg, value, s.name) for s in statement.subjects for alg, value in s.digests())
    event, error, edges = None, None, ()
    if statement.predicate_type == KEY_EVENT:
        try:
            validate_predicate(KEY_EVENT, statement.predicate)
            event = parse_key_event(statement.predicate, [(s.name, s.digest) for s in statement.subjects])
        except LedgerError as exc:
            error = exc.diagnostics()
    else:
        edges = edges_of(statement.predicate_type, statement.predicate, [(a, v) for a, v, _ in subjects])
    return LeafFacts(
        index=index,
        integrated_time=leaf.integrated_time,
        predicate_type=statement.predicate_type,
        subjects=subjects,
        signers=tuple(sorted(k.key_id for k in leaf.signers)),
        edges=tuple(edges),
        statement=json.loads(leaf.envelope.payload),
        key_event=event,
        key_event_error=error,
    )


def prev_of(facts: LeafFacts) -> tuple[int, bytes] | None:
    """The predecessor a key event names (None: a legacy event that names none)."""
    prev = ((facts.statement or {}).get("predicate") or {}).get("prev")
    if not isinstance(prev, dict):
        return None
    try:
        return int(prev["index"]), bytes.fromhex(prev["leaf_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedError(f"key-event entry {facts.index} has a malformed prev") from exc


def recompute_chain(
    artifact: str, facts: Sequence[LeafFacts], root: PublicKey, *, as_of_time: int
) -> tuple[dict[str, Any], dict[int, str]]:
    """The chain JSON of ``artifact`` from ``facts`` (ascending, up to the index judged at)."""
    state = TrustState(root_key_id=root.key_id)
    records: dict[int, RecordInfo] = {}
    for f in facts:
        if f.key_event is not None:
            state.apply(f.key_event, f.index, f.integrated_time)
        records[f.index] = RecordInfo(
            index=f.index,
            integrated_time=f.integrated_time,
            predicate_type=f.predicate_type,
            subjects=f.subjects,
            signers=f.signers,
            edges=f.edges,
        )
    chain = evaluate_chain(parse_digest(artifact), records, state, as_of_time=as_of_time)
    return chain, {i: r.predicate_type for i, r in records.items()}
