"""Verdict bundles built from the store (``GET /api/v1/artifacts/<digest>/bundle``, ``verify``).

Not to be confused with ``ledger.services.bundles`` (Sigstore bundles submitted to the ledger).
The format and why it proves what it proves are in ``ledger.trust.bundle``. Building one:

1. the checkpoint: the latest (with its stored cosignatures), or, with a witness policy, the
   latest one its witnesses cosigned, if it covers what is asked;
2. the entries: every record reachable from the artifact up to the index judged at (the same
   recursive query as ``chain``), every key-event entry of the tree, and the entry ``at``;
3. their inclusion proofs against that checkpoint (each stored hash read once);
4. the trust head for that tree, signed now with the log key (deterministic: Ed25519), and the
   root of trust (the administrator key).

The bundle carries no verdict: whoever reads it recomputes one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import merkle
from ledger.tlog.checkpoint import parse_checkpoint_text
from ledger.db import store
from ledger.db.models import Entry, TrustRoot
from ledger.errors import ConfigurationError, NotFoundError
from ledger.trust.predicates import KEY_EVENT
from ledger.tlog.note import parse_note
from ledger.services.chain import reachable
from ledger.services.cosign import cosigned_note, latest_witnessed_checkpoint
from ledger.services.deployment import firmware_candidate_indexes
from ledger.services.log import LogIdentity
from ledger.trust.bundle import (
    BundleEntry,
    TrustHead,
    VerdictBundle,
    format_verdict_bundle,
    parse_artifact_digest,
    sign_trust_head,
)
from ledger.tlog.witness_policy import WitnessPolicy

__all__ = ["build_verdict_bundle", "verdict_bundle_json"]

_CHUNK = 900


def _checkpoint(session: Session, at: int | None, policy: WitnessPolicy | None) -> tuple[int, str]:
    if policy is not None:
        witnessed = latest_witnessed_checkpoint(session, policy)
        if witnessed is not None and witnessed[0] > 0 and (at is None or at < witnessed[0]):
            return witnessed
    cp = store.latest_checkpoint(session)
    if cp is None or cp.tree_size == 0:
        raise NotFoundError("the log has no entries yet")
    return cp.tree_size, cosigned_note(session, cp.tree_size, cp.note)


def _key_events(session: Session, size: int) -> list[tuple[int, bytes]]:
    rows = session.execute(
        select(Entry.idx, Entry.leaf_hash).where(Entry.predicate_type == KEY_EVENT, Entry.idx < size).order_by(Entry.idx)
    )
    return [(idx, bytes(h)) for idx, h in rows]


def build_verdict_bundle(
    session: Session,
    log: LogIdentity,
    digest: str,
    *,
    at: int | None = None,
    witness_policy: WitnessPolicy | None = None,
) -> VerdictBundle:
    """The verdict bundle of ``digest`` (``sha256:<hex>``) as of entry ``at`` (None: the checkpoint).

    Raises:
        MalformedError: a bad digest. NotFoundError: no entry ``at``, or no record about the
        artifact up to it. ConfigurationError: the store has no root of trust.
    """
    subject = parse_artifact_digest(digest)
    algorithm, value = subject.split(":", 1)
    size, note = _checkpoint(session, at, witness_policy)
    if at is not None and not 0 <= at < size:
        raise NotFoundError(f"there is no entry at index {at} in the checkpoint of {size} entries")
    last = size - 1 if at is None else at
    records = reachable(session, algorithm, value, at=last)
    if not records:
        raise NotFoundError(f"the ledger holds no record about {subject} (up to entry {last})")
    root = session.get(TrustRoot, 1)
    if root is None:
        raise ConfigurationError("the store has no root of trust (administrator key): run `provledger init`")
    events = _key_events(session, size)
    # the firmware records a deployment in the chain could be matched to, beside the one it was:
    # the offline verifier re-matches a re-judged deployment among them, as the server does
    candidates = firmware_candidate_indexes(session, sorted(records))
    indexes = sorted(set(records) | candidates | {i for i, _ in events} | ({at} if at is not None else set()))
    plans = {i: merkle.inclusion_proof_plan(i, size) for i in indexes}
    needed = sorted(set().union(*(merkle.plan_nodes(p) for p in plans.values())))
    hashes: dict[Any, bytes] = {}
    for start in range(0, len(needed), _CHUNK * 4):
        hashes.update(store.read_nodes(session, needed[start : start + _CHUNK * 4]))
    data: dict[int, bytes] = {}
    for start in range(0, len(indexes), _CHUNK):
        chunk = indexes[start : start + _CHUNK]
        data.update((i, bytes(d)) for i, d in session.execute(select(Entry.idx, Entry.data).where(Entry.idx.in_(chunk))))
    cp_root = parse_checkpoint_text(parse_note(note).text).root
    head = TrustHead(
        origin=log.origin,
        size=size,
        root=cp_root,
        admin_key_id=root.key_id,
        count=len(events),
        head_index=events[-1][0] if events else None,
        head_leaf_hash=events[-1][1] if events else None,
    )
    entries = tuple(BundleEntry(i, data[i], tuple(merkle.proof_from_plan(plans[i], hashes))) for i in indexes)
    return VerdictBundle(
        subject=subject,
        checkpoint=note.encode("utf-8"),
        trust_head=sign_trust_head(head, log.signer),
        root_of_trust=bytes(root.public_key),
        entries=entries,
        at=at,
    )


def verdict_bundle_json(
    session: Session, log: LogIdentity, digest: str, *, at: int | None = None, witness_policy: WitnessPolicy | None = None
) -> dict[str, Any]:
    """:func:`build_verdict_bundle` as its JSON value."""
    return format_verdict_bundle(build_verdict_bundle(session, log, digest, at=at, witness_policy=witness_policy))
