"""Combining the shards (:func:`combine_shards`).

The combiner (:func:`combine_shards`) then merges the shard roots in order, which checks every
stored interior hash above the shards, and finishes the checkpoints of a shard that found a node
of the right edge before it missing. It adds the checks that need the whole picture: the
checkpoint of size 0, a checkpoint covering the audited size, the sequencer's size, stray rows,
the log's identity, the trust state (keys, grants, thresholds recomputed from the key-event
entries, as ``ledger.services.audit`` does). Its report has the shape of ``provledger audit --json`` plus ``"shard"``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.models import Entry, TreeHash
from ledger.db.models import Checkpoint as CheckpointRow
from ledger.tlog.hashing import EMPTY_ROOT, node_hash
from ledger.tlog.note import parse_vkey
from ledger.services.shards.plan import Shard
from ledger.services.shards.results import DistributedReport, ShardResult, _Problems
from ledger.services.shards.verify import _check_signed_checkpoint, _fold, _stored_interior

__all__ = ["combine_shards"]


def combine_shards(
    session: Session,
    tree_size: int,
    results: list[ShardResult],
    *,
    vkey: str,
    origin: str,
) -> DistributedReport:
    """Merge the shards' roots and findings into one report (see the module docstring)."""
    shards = [Shard(r.shard, r.level, r.start) for r in results]
    problems = _Problems()
    verifier = parse_vkey(vkey)
    checkpoints = 0
    truncated = False

    info = store.log_info(session)
    if info.origin != origin or info.vkey != vkey:
        problems.add(None, "log_identity", f"the store belongs to log {info.vkey}, not to {vkey}")

    # Merge the shard roots left to right. Every node this completes lies above the shards: its
    # stored hash is checked against its two stored children, as inside a shard.
    edge: list[tuple[int, bytes, bool]] = []  # (level, stored hash, found inconsistent)
    intact = True
    for result in results:
        checkpoints += result.checkpoints
        truncated = truncated or result.truncated
        for item in result.problems:
            problems.add(item.index, item.kind, item.message)
        if intact and result.deferred:
            # the shard could not read the right edge before it: finish its checkpoints here
            left = [h for _, h, _ in edge]
            for size, local_root, signed_root in result.deferred:
                if _fold(left, bytes.fromhex(local_root)).hex() != signed_root:
                    problems.add(size - 1, "checkpoint", f"checkpoint of size {size}: its root does not match the entries")
        if result.root is None:
            intact = False
        if not intact:
            continue
        level, acc, flagged = result.level, bytes.fromhex(result.root), result.root_flagged
        while edge and edge[-1][0] == level:
            _, left_hash, left_flagged = edge.pop()
            computed = node_hash(left_hash, acc)
            level += 1
            index = result.start >> level
            first = index << level
            stored = _stored_interior(session, [(level, index)]).get((level, index))
            if stored is None:
                acc, was, flagged = computed, True, True
                problems.add(first, "interior_hash", f"interior hash ({level}, {index}) is missing")
            else:
                was = flagged or left_flagged
                acc, flagged = stored, stored != computed
                if flagged and not was:
                    problems.add(
                        first,
                        "interior_hash",
                        f"interior hash ({level}, {index}) over entries {first}..{first + (1 << level) - 1}"
                        " does not match the hashes below it",
                    )
        edge.append((level, acc, flagged))

    # The checkpoint of size 0 belongs to no shard.
    empty = store.checkpoint_of_size(session, 0)
    if empty is not None:
        checkpoints += 1
        if _check_signed_checkpoint(empty, verifier, origin, problems) and empty.root_hash != EMPTY_ROOT:
            problems.add(0, "checkpoint", "checkpoint of size 0: its root is not the empty tree's root")
    # The audited size needs a checkpoint; nothing may lie beyond what the sequencer declares.
    declared = store.current_size(session)
    if store.checkpoint_of_size(session, tree_size) is None:
        problems.add(max(tree_size - 1, 0), "checkpoint", f"no checkpoint covers the tree of size {tree_size}")
    horizon = max(declared, tree_size)
    beyond = session.execute(
        select(func.min(CheckpointRow.tree_size)).where(CheckpointRow.tree_size > horizon)
    ).scalar_one_or_none()
    if beyond is not None:
        problems.add(max(beyond - 1, 0), "checkpoint", f"checkpoint of size {beyond} covers entries the store does not hold")
    last = session.execute(select(func.max(Entry.idx))).scalar_one_or_none()
    if last is not None and last >= horizon:
        problems.add(declared, "size", f"the sequencer says {declared} entries but the store holds entry {last}")
    stray = session.execute(
        select(func.min(TreeHash.position)).where(TreeHash.position >= store.interior_count(horizon))
    ).scalar_one_or_none()
    if stray is not None:
        problems.add(None, "interior_hash", f"interior hash at position {stray} belongs to no entry")
    # The trust state (keys, grants, thresholds), recomputed from the key-event entries, as the
    # hash-level audit does: so the signature-level report is a superset of it.
    from ledger.services.policy import verify_trust_state  # noqa: PLC0415 - as ledger.services.audit does

    for p in verify_trust_state(session):
        problems.add(p.index, p.kind, p.message)
    # The caches that belong to no shard, as every audit mode checks them: the cosignature index
    # and the TEE appraisals re-run from the leaves.
    from ledger.services.audit import audit_appraisals  # noqa: PLC0415 - as above
    from ledger.services.derived import check_cosignatures  # noqa: PLC0415

    check_cosignatures(session, problems.add)
    audit_appraisals(session, problems.add)

    ordered = problems.items
    return DistributedReport(
        tree_size=tree_size,
        problems=ordered,
        checkpoints_checked=checkpoints,
        shards=shards,
        truncated=truncated or problems.truncated,
        signatures_checked=sum(r.signatures for r in results),
    )
