"""Receipts (offline proofs of inclusion) and proofs served from the store.

A receipt is ``{"index", "tree_size", "entry": base64(leaf data), "proof": <tlog-proof@v1>}``.
Every proof reads O(log n) stored hashes, never a scan.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import merkle
from ledger.db import store
from ledger.db.models import Entry
from ledger.errors import ConfigurationError, MalformedError, NotFoundError
from ledger.merkle import NodeId
from ledger.services.cosign import cosigned_note, latest_witnessed_checkpoint
from ledger.tlog.proof import format_tlog_proofs
from ledger.tlog.witness_policy import WitnessPolicy

__all__ = ["consistency_proof", "inclusion_proof", "receipt", "receipts"]

#: Read node hashes in chunks so an IN list never exceeds a driver's parameter limit.
_READ_CHUNK = 4000


def _read_nodes(session: Session, nodes: set[NodeId], known: Mapping[NodeId, bytes]) -> dict[NodeId, bytes]:
    hashes = {n: known[n] for n in nodes if n in known}
    missing = sorted(nodes - hashes.keys())
    for i in range(0, len(missing), _READ_CHUNK):
        hashes.update(store.read_nodes(session, missing[i : i + _READ_CHUNK]))
    return hashes


def _check_tree_size(session: Session, tree_size: int | None) -> tuple[int, str]:
    """The checkpoint (size, note) proofs are made against: the latest, or the one of ``tree_size``."""
    if tree_size is None:
        cp = store.latest_checkpoint(session)
        if cp is None:
            raise ConfigurationError("the store has no checkpoint: run `provledger init`")
    else:
        cp = store.checkpoint_of_size(session, tree_size)
        if cp is None:
            raise NotFoundError(f"no checkpoint was issued at tree size {tree_size}")
    return cp.tree_size, cp.note


def receipts(
    session: Session,
    indexes: Sequence[int],
    *,
    tree_size: int | None = None,
    checkpoint_note: str | None = None,
    known: Mapping[NodeId, bytes] | None = None,
    data: Mapping[int, bytes] | None = None,
    cosignatures: bool = True,
) -> list[dict[str, Any]]:
    """Receipts for several entries against one checkpoint, reading each stored hash once.

    ``cosignatures=False``: the checkpoint was signed by the batch these receipts are for, so no
    witness has cosigned it yet; its note is used as it is (the sequencer's hot path: with
    ``known`` and ``data`` from the batch, no query at all).
    """
    # the sequencer's batch: the checkpoint it has just formatted and signed
    fresh = not cosignatures and checkpoint_note is not None and tree_size is not None
    if checkpoint_note is None or tree_size is None:
        tree_size, checkpoint_note = _check_tree_size(session, tree_size)
    for index in indexes:
        if not 0 <= index < tree_size:
            raise NotFoundError(f"there is no entry at index {index} (the tree has {tree_size} entries)")
    known = known or {}
    data = dict(data or {})
    paths: list[list[bytes]] | None = None
    if known:
        try:  # the sequencer's batch: every hash its proofs read is in memory
            paths = merkle.inclusion_paths(indexes, tree_size, known)
        except KeyError:
            paths = None
    if paths is None:
        plans = {i: merkle.inclusion_proof_plan(i, tree_size) for i in set(indexes)}
        needed = set().union(*(merkle.plan_nodes(p) for p in plans.values())) if plans else set()
        hashes = _read_nodes(session, needed, known)
        paths = [merkle.proof_from_plan(plans[index], hashes) for index in indexes]
    missing = sorted(set(indexes) - data.keys())
    for i in range(0, len(missing), _READ_CHUNK):
        chunk = missing[i : i + _READ_CHUNK]
        data.update((i, d) for i, d in session.execute(select(Entry.idx, Entry.data).where(Entry.idx.in_(chunk))))
    if cosignatures:
        checkpoint_note = cosigned_note(session, tree_size, checkpoint_note)
    texts = format_tlog_proofs(list(zip(indexes, paths, strict=True)), checkpoint_note.encode("utf-8"), signed_here=fresh)
    return [
        {
            "index": index,
            "tree_size": tree_size,
            "entry": base64.b64encode(data[index]).decode("ascii"),
            "proof": text,
        }
        for index, text in zip(indexes, texts, strict=True)
    ]


def receipt(
    session: Session, index: int, *, tree_size: int | None = None, witness_policy: WitnessPolicy | None = None
) -> dict[str, Any]:
    """A receipt against ``tree_size``; by default the latest checkpoint that ``witness_policy``'s
    witnesses cosigned if it covers ``index``, else the latest checkpoint."""
    if tree_size is None and witness_policy is not None:
        witnessed = latest_witnessed_checkpoint(session, witness_policy)
        if witnessed is not None and index < witnessed[0]:
            return receipts(session, [index], tree_size=witnessed[0], checkpoint_note=witnessed[1])[0]
    return receipts(session, [index], tree_size=tree_size)[0]


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[bytes]:
    if not 0 <= index < tree_size:
        raise MalformedError(f"an inclusion proof needs 0 <= index < tree_size, got {index} and {tree_size}")
    _require_size(session, tree_size)
    plan = merkle.inclusion_proof_plan(index, tree_size)
    return merkle.proof_from_plan(plan, _read_nodes(session, merkle.plan_nodes(plan), {}))


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    if not 0 <= old_size <= new_size:
        raise MalformedError(f"a consistency proof needs 0 <= old <= new, got {old_size} and {new_size}")
    _require_size(session, new_size)
    plan = merkle.consistency_proof_plan(old_size, new_size)
    return merkle.proof_from_plan(plan, _read_nodes(session, merkle.plan_nodes(plan), {}))


def _require_size(session: Session, tree_size: int) -> None:
    size = store.current_size(session)
    if tree_size > size:
        raise NotFoundError(f"tree size {tree_size} is larger than the tree ({size} entries)")
