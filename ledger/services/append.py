"""Appending records: verify each submission, then integrate a batch in one transaction.

``prepare`` does everything that needs no lock (parse, verify signatures, apply the trust
policy) so that many submitters work in parallel. ``integrate`` runs under the sequencer lock:
it assigns indexes, extends the hash chain and the tree, stores the interior hashes and signs
a checkpoint for the batch — all in the caller's transaction, so a crash leaves the whole batch
or none of it (group commit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import store
from ledger.dsse import MAX_ENVELOPE_BYTES, Envelope, parse_envelope, verify_envelope_result
from ledger.errors import LedgerError, MalformedError, NotTrustedError, SignatureError, TooLargeError
from ledger.hashing import chain_hash, leaf_hash
from ledger.keys import PublicKey
from ledger.merkle import NodeId, frontier_nodes
from ledger.records import canonical_strings, encode_leaf_from_canonical
from ledger.services.log import LogIdentity
from ledger.services.receipts import receipts
from ledger.services.trust import RegisteredKey, load_keys
from ledger.statement import IN_TOTO_PAYLOAD_TYPE, Statement, parse_statement

__all__ = [
    "Appended",
    "Integration",
    "Prepared",
    "Signer",
    "append_batch",
    "integrate",
    "prepare",
    "prepare_batch",
    "prepare_envelopes",
]


@dataclass(frozen=True)
class Signer:
    """A key that signed a record, as the leaf records it."""

    key_id: str
    spki_der: bytes


@dataclass(frozen=True)
class Prepared:
    """A submission that parsed, verified and is trusted: ready to be sequenced.

    Plain values only, so that preparation can run in other processes (``ledger.services.bulk``).
    """

    #: the envelope's RFC 8785 bytes (its SHA-256 is the duplicate check)
    canonical: bytes
    envelope_hash: bytes
    predicate_type: str
    #: (algorithm, lowercase digest, name) of each subject digest
    subjects: tuple[tuple[str, str, str], ...]
    signers: tuple[Signer, ...]


def _decode(raw: bytes | str | Mapping[str, Any], limit: int) -> Envelope:
    envelope = parse_envelope(raw, limit=limit)
    if not isinstance(raw, bytes | str):
        # An already decoded object (a batch item): measure it the way it would arrive alone.
        size = len(json.dumps(raw, separators=(",", ":")))
        if size > limit:
            raise TooLargeError(f"envelope is {size} bytes, over the limit of {limit} bytes")
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedError(
            f"envelope payloadType is {envelope.payload_type!r}; the ledger accepts {IN_TOTO_PAYLOAD_TYPE!r}"
        )
    return envelope


def _judge(envelope: Envelope, statement: Statement, registry: Mapping[str, RegisteredKey], now: int) -> tuple[PublicKey, ...]:
    """The trusted keys that signed ``envelope``, or the reason there are none."""
    hinted = [registry[s.keyid] for s in envelope.signatures if s.keyid in registry]
    candidates = hinted or list(registry.values())
    result = verify_envelope_result(envelope, [r.key for r in candidates])
    if not result.keys:
        if hinted:
            raise SignatureError(
                f"the envelope's signature does not verify with key {hinted[0].key.key_id} ({hinted[0].name})"
            )
        raise NotTrustedError("the envelope is not signed by any registered key")
    for position, hint in result.unverified:
        if hint in registry:
            raise SignatureError(f"envelope signature {position} does not verify with key {hint} ({registry[hint].name})")
    trusted, refusals = [], []
    for key in result.keys:
        reg = registry[key.key_id]
        if not reg.active_at(now):
            refusals.append(f"key {key.key_id} ({reg.name}) is revoked")
        elif not reg.allows(statement.predicate_type):
            refusals.append(
                f"key {key.key_id} ({reg.name}) has no grant for predicate type {statement.predicate_type!r}"
                f" (it may sign: {', '.join(reg.allow) or 'nothing'})"
            )
        else:
            trusted.append(key)
    if not trusted:
        raise NotTrustedError("; ".join(refusals))
    return tuple(trusted)


def prepare_envelopes(
    raws: Sequence[bytes | str | Mapping[str, Any]],
    registry: Mapping[str, RegisteredKey],
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
    everything: Callable[[], Mapping[str, RegisteredKey]] | None = None,
) -> list[Prepared | LedgerError]:
    """Parse, verify and judge each submission against ``registry`` (pure: no database).

    A failure is returned in its place, not raised. ``registry`` must hold at least the keys the
    signatures' keyid hints name; ``everything`` supplies all registered keys for envelopes
    without a usable hint (keyid is only a hint).
    """
    out: list[Prepared | LedgerError] = []
    for raw in raws:
        try:
            envelope = _decode(raw, limit)
            statement = parse_statement(envelope.payload)
            keys = registry
            if everything is not None and not any(s.keyid in registry for s in envelope.signatures):
                keys = everything()
            signers = _judge(envelope, statement, keys, now)
            canonical = canonical_strings(envelope.document)
        except LedgerError as exc:
            out.append(exc)
            continue
        out.append(
            Prepared(
                canonical=canonical,
                envelope_hash=hashlib.sha256(canonical).digest(),
                predicate_type=statement.predicate_type,
                subjects=tuple((alg, value, s.name) for s in statement.subjects for alg, value in s.digests()),
                signers=tuple(Signer(k.key_id, k.spki_der) for k in signers),
            )
        )
    return out


def _hints(raws: Sequence[bytes | str | Mapping[str, Any]]) -> set[str]:
    """The keyid hints of the envelopes that parse (cheaply, to load only those keys)."""
    hints: set[str] = set()
    for raw in raws:
        try:
            doc = json.loads(raw) if isinstance(raw, bytes | str) else raw
            for sig in doc.get("signatures") or ():
                if isinstance(sig, dict) and isinstance(sig.get("keyid"), str):
                    hints.add(sig["keyid"])
        except (ValueError, TypeError, AttributeError):
            continue
    return hints


def prepare_batch(
    session: Session,
    raws: Sequence[bytes | str | Mapping[str, Any]],
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
) -> list[Prepared | LedgerError]:
    """Load the keys the submissions name, then ``prepare_envelopes``."""
    registry = load_keys(session, _hints(raws))
    cache: list[Mapping[str, RegisteredKey]] = []

    def everything() -> Mapping[str, RegisteredKey]:
        if not cache:
            cache.append(load_keys(session))
        return cache[0]

    return prepare_envelopes(raws, registry, now=now, limit=limit, everything=everything)


def prepare(session: Session, raw: bytes | str | Mapping[str, Any], *, now: int, limit: int = MAX_ENVELOPE_BYTES) -> Prepared:
    """One submission: returns it prepared or raises its error."""
    (result,) = prepare_batch(session, [raw], now=now, limit=limit)
    if isinstance(result, LedgerError):
        raise result
    return result


@dataclass
class Integration:
    """What a batch became: an index per submission and the checkpoint that covers them."""

    indexes: list[int]
    created: list[bool]
    tree_size: int
    checkpoint_note: str | None
    #: node hashes known in memory after the batch (old right edge, new leaves and nodes):
    #: enough to build the new entries' inclusion proofs without reading the store
    known_nodes: dict[NodeId, bytes] = field(default_factory=dict)
    new_data: dict[int, bytes] = field(default_factory=dict)


def integrate(session: Session, batch: Sequence[Prepared], log: LogIdentity, *, now: int) -> Integration:
    """Sequence a batch under the sequencer lock; the caller commits (or rolls back) once."""
    size = store.lock_sequencer(session)
    existing = store.entries_by_envelope_hash(session, [p.envelope_hash for p in batch])
    tree = store.read_frontier(session, size)
    known: dict[NodeId, bytes] = dict(zip(frontier_nodes(size), tree.hashes, strict=True))
    head = store.chain_head(session, size)

    rows: list[store.EntryRow] = []
    nodes: list[tuple[int, bytes]] = []
    new_data: dict[int, bytes] = {}
    indexes: list[int] = []
    created: list[bool] = []
    for p in batch:
        if p.envelope_hash in existing:
            indexes.append(existing[p.envelope_hash])
            created.append(False)
            continue
        index = size + len(rows)
        data = encode_leaf_from_canonical(p.canonical, now, p.signers)
        leaf = leaf_hash(data)
        head = chain_hash(head, leaf)
        known[(0, index)] = leaf
        for level, node_index, h in tree.append(leaf):
            nodes.append((store.stored_position(level, node_index), h))
            known[(level, node_index)] = h
        rows.append(
            store.EntryRow(
                idx=index,
                leaf_hash=leaf,
                chain_hash=head,
                data=data,
                envelope_hash=p.envelope_hash,
                integrated_time=now,
                predicate_type=p.predicate_type,
                key_id=p.signers[0].key_id,
                subjects=p.subjects,
            )
        )
        existing[p.envelope_hash] = index  # a duplicate later in the same batch
        new_data[index] = data
        indexes.append(index)
        created.append(True)

    note: str | None = None
    if rows:
        new_size = size + len(rows)
        store.insert_entries(session, rows, nodes)
        store.advance_sequencer(session, new_size)
        root = tree.root()
        note = sign_checkpoint(Checkpoint(origin=log.origin, size=new_size, root=root), log.signer).decode("utf-8")
        store.insert_checkpoint(session, new_size, root, note, now)
        size = new_size
    session.flush()
    return Integration(indexes, created, size, note, known, new_data)


@dataclass(frozen=True)
class Appended:
    """A submission's receipt, and whether it made a new entry (False: a duplicate)."""

    receipt: dict[str, Any]
    created: bool


def append_batch(
    sessions: Callable[[], Session],
    raws: Sequence[bytes | str | Mapping[str, Any]],
    log: LogIdentity,
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
) -> list[Appended | LedgerError]:
    """Prepare, integrate and commit one batch; a receipt (or the error) per submission, in order.

    Preparation reads in its own transaction; integration runs in a second one that takes the
    sequencer lock first, and commits once.
    """
    with sessions() as session:
        prepared = prepare_batch(session, raws, now=now, limit=limit)
        session.rollback()
    ready = [p for p in prepared if isinstance(p, Prepared)]
    results: list[Any] = [p if isinstance(p, LedgerError) else None for p in prepared]
    if not ready:
        return results
    with sessions() as session:
        with session.begin():
            integration = integrate(session, ready, log, now=now)
        issued = receipts(
            session,
            integration.indexes,
            tree_size=integration.tree_size if integration.checkpoint_note else None,
            checkpoint_note=integration.checkpoint_note,
            known=integration.known_nodes,
            data=integration.new_data,
        )
    it = iter(zip(issued, integration.created, strict=True))
    for position, item in enumerate(prepared):
        if isinstance(item, Prepared):
            receipt, created = next(it)
            results[position] = Appended(receipt, created)
    return results
