"""Verify a verdict bundle offline and recompute its verdict (pure: no database, no network).

The format, the trust head and the order of the steps are described in ``ledger.trust.bundle``;
this module carries them out. Every step either passes or raises (``VerificationError`` and its
kinds, ``MalformedError`` for bytes that do not parse); the verdict itself is recomputed by the
trust fold from the bundle's leaf bytes alone.
"""

from __future__ import annotations

import base64
import json
import time as _time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ledger.tlog.checkpoint import open_checkpoint
from ledger.records.dsse import parse_envelope, verify_envelope_result
from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.tlog.hashing import leaf_hash
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.tlog.note import Verifier, parse_vkey
from ledger.trust.predicates import KEY_EVENT
from ledger.records.leaf import LEAF_KIND_BUNDLE, decode_leaf
from ledger.trust import offline as fold
from ledger.trust.bundle import (
    BundleEntry,
    Expectations,
    TrustHead,
    VerdictBundle,
    VerifiedBundle,
    _check_inclusion,
    _root_key,
    _witnesses,
    check_expectations,
    open_trust_head,
    parse_artifact_digest,
    parse_verdict_bundle,
)

__all__ = ["verify_verdict_bundle"]


@lru_cache(maxsize=1024)
def _key(der: bytes) -> PublicKey:
    return public_key_from_der(der)


def _verify_signatures(item: BundleEntry, root: PublicKey, is_key_event: bool) -> int:
    """Step 6 for one entry: every signer the leaf records signed it; returns how many.

    ``leaf_facts`` has already decoded the same bytes strictly (canonical form, key ids that
    match their keys), so the envelope and signer list are read here without doing it again.
    """
    from ledger.verify import verify_bundle_leaf_signature  # noqa: PLC0415 - the Sigstore bundle leaf check

    doc = json.loads(item.data)
    if doc.get("kind") == LEAF_KIND_BUNDLE:
        leaf = decode_leaf(item.data)
        verify_bundle_leaf_signature(leaf)
        signed = {leaf.signers[0].key_id}
    else:
        signers = [_key(base64.b64decode(s["public_key"])) for s in doc.get("signers") or ()]
        if not signers:
            raise VerificationError(f"bundle entry {item.index} records no signer")
        result = verify_envelope_result(parse_envelope(doc["envelope"]), signers)
        signed = {k.key_id for k in result.keys}
        unsigned = [k.key_id for k in signers if k.key_id not in signed]
        if unsigned:
            raise SignatureError(f"bundle entry {item.index} is not signed by its recorded signer {unsigned[0]}")
    if is_key_event and root.key_id not in signed:
        raise SignatureError(f"key-event entry {item.index} is not signed by the root of trust {root.key_id}")
    return len(signed)


def _check_key_history(head: TrustHead, events: Sequence[tuple[int, bytes, Any]]) -> None:
    """Step 7: the bundle holds every key event of the log up to the checkpoint.

    ``events`` are (index, leaf hash, predecessor or None) in ascending index order.
    """
    if len(events) != head.count:
        raise VerificationError(
            f"the bundle holds {len(events)} key events, but the log's signed trust head counts {head.count}: "
            "the key history is incomplete"
        )
    if events:
        last_index, last_hash, _ = events[-1]
        if (last_index, last_hash) != (head.head_index, head.head_leaf_hash):
            raise VerificationError(
                f"the bundle's last key event is entry {last_index}, but the log's signed trust head is entry "
                f"{head.head_index}: the key history is incomplete"
            )
    previous: tuple[int, bytes] = fold.GENESIS_PREV
    linked = False
    for index, hashed, prev in events:
        if prev is None:
            if linked:
                raise VerificationError(f"key-event entry {index} names no predecessor after events that do")
        else:
            linked = True
            if prev != previous:
                raise VerificationError(
                    f"key-event entry {index} names entry {prev[0]} as its predecessor, but the key event before "
                    f"it in the bundle is entry {previous[0]}: a key event is missing"
                )
        previous = (index, hashed)


def verify_verdict_bundle(
    data: bytes | str | Mapping[str, Any] | VerdictBundle,
    artifact: str,
    log_vkey: str | Verifier,
    *,
    witness_verifiers: Sequence[Verifier] = (),
    threshold: int = 0,
    expectations: Expectations = Expectations(),
    at: int | None = None,
    max_age: int | None = None,
    now: int | None = None,
) -> VerifiedBundle:
    """Verify a verdict bundle for ``artifact`` against the log key and recompute its verdict.

    Args:
        data: the bundle (bytes, text, decoded JSON or parsed).
        artifact: ``sha256:<hex>`` the caller holds (the bundle must be about it).
        log_vkey: the log's C2SP verifier key (string or parsed).
        witness_verifiers, threshold: a k-of-n witness policy on the checkpoint (0: none).
        expectations: what a deploy gate demands beyond a trusted chain.
        at: judge as of this entry index (None: as of the checkpoint); the bundle must have been
            made for exactly that.
        max_age: with a witness policy, ``threshold`` witnesses must have cosigned the
            checkpoint within this many seconds of ``now`` (rules out replayed old bundles).
        now: the evaluation time (staleness when ``at`` is None, checkpoint age); default: the clock.

    Returns:
        The recomputed chain and what was checked; ``.ok`` is what a deploy gate passes on.

    Raises:
        MalformedError: the bundle or an entry does not parse (exit 2).
        VerificationError: any check fails (exit 1): see ``ledger.trust.bundle``, steps 2-7.
    """
    # (1) Parse.
    bundle = data if isinstance(data, VerdictBundle) else parse_verdict_bundle(data)
    # (2) The subject is the artifact asked about, judged at the index asked about.
    wanted = parse_artifact_digest(artifact)
    if bundle.subject != wanted:
        raise VerificationError(f"the verdict bundle is about {bundle.subject}, not {wanted}")
    if bundle.at != at:  # a bundle "as of" an earlier index must never pass for a current one
        asked = "the checkpoint (no --at)" if at is None else f"entry {at}"
        made = "its checkpoint" if bundle.at is None else f"entry {bundle.at}"
        raise VerificationError(f"the verdict bundle judges as of {made}, not as of {asked}")
    # (3) The checkpoint and the witness policy.
    verifier = parse_vkey(log_vkey) if isinstance(log_vkey, str) else log_vkey
    cp = open_checkpoint(bundle.checkpoint, verifier)
    clock = int(_time.time()) if now is None else now
    witnesses = _witnesses(bundle.checkpoint, witness_verifiers, threshold, max_age=max_age, now=clock)
    # (4) The trust head speaks of the same tree, and names the root of trust.
    head = open_trust_head(bundle.trust_head, verifier)
    if (head.size, head.root) != (cp.size, cp.root):
        raise VerificationError(
            f"the trust head is for a tree of {head.size} entries, the checkpoint for {cp.size} (or their roots differ)"
        )
    root = _root_key(bundle, head)
    # (5) Every entry is in the checkpoint's tree.
    _check_inclusion(bundle, cp)
    # (6) Every entry decodes and is signed by the keys it records.
    facts: dict[int, Any] = {}
    events: list[tuple[int, bytes, Any]] = []
    signatures = 0
    for item in bundle.entries:
        try:
            fact = fold.leaf_facts(item.index, item.data)
            is_key_event = fact.predicate_type == KEY_EVENT
            signatures += _verify_signatures(item, root, is_key_event)
        except RecursionError as exc:  # JSON nested past the interpreter's limit
            raise MalformedError(f"bundle entry {item.index} is nested too deeply to parse") from exc
        facts[item.index] = fact
        if is_key_event:
            events.append((item.index, leaf_hash(item.data), fold.prev_of(fact)))
    # (7) The key history is complete.
    _check_key_history(head, events)
    # (8) The trust state and the verdict, recomputed by the fold.
    last = cp.size - 1 if bundle.at is None else bundle.at
    if bundle.at is not None:
        if bundle.at not in facts:
            raise VerificationError(f"the verdict bundle judges as of entry {bundle.at} but does not hold it")
        as_of_time = facts[bundle.at].integrated_time
    else:
        as_of_time = clock
    if cp.size == 0:
        raise VerificationError("the bundle's checkpoint is of an empty log")
    chain, predicate_types = fold.recompute_chain(
        wanted, [facts[i] for i in sorted(facts) if i <= last], root, as_of_time=as_of_time
    )
    result = VerifiedBundle(
        subject=wanted,
        checkpoint=cp,
        head=head,
        witnesses=witnesses,
        chain=chain,
        as_of_time=as_of_time,
        key_events=tuple(i for i, _, _ in events),
        entries=len(bundle.entries),
        signatures=signatures,
        at=bundle.at,
    )
    if expectations:
        result.expectations = check_expectations(chain, predicate_types, expectations)
    return result
