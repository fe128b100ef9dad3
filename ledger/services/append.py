"""Appending records: verify each submission, then integrate a batch in one transaction.

``prepare`` does everything that needs no lock (parse, verify signatures, apply the trust
policy) so that many submitters work in parallel. ``integrate`` runs under the sequencer lock:
it assigns indexes, extends the hash chain and the tree, stores the interior hashes and signs
a checkpoint for the batch — all in the caller's transaction, so a crash leaves the whole batch
or none of it (group commit).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import store
from ledger.records.dsse import MAX_ENVELOPE_BYTES, Envelope, parse_envelope, verify_envelope_result
from ledger.errors import (
    ConflictError,
    IntegrityError,
    LedgerError,
    MalformedError,
    NotFoundError,
    NotTrustedError,
    SignatureError,
    TooLargeError,
    shorten,
)
from ledger.tlog.hashing import chain_hash, leaf_hash
from ledger.records.keys import PublicKey
from ledger.merkle import CompactRange, NodeId, frontier_nodes
from ledger.records.leaf import canonical_strings, encode_bundle_leaf, encode_leaf_with_signers, signers_json
from ledger.services import bundles
from ledger.services.isolate import commit_isolating
from ledger.services.log import LogIdentity
from ledger.services.prepared import Prepared, Signer
from ledger.services.receipts import receipts
from ledger.trust.graph import edges_of
from ledger.trust.policy import KeyEvent, parse_key_event
from ledger.trust.fold import TrustFold, content_hash
from ledger.trust.judge import APPENDING, judge
from ledger.trust.deployment import parse_deployment
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, KEY_EVENT, validate_predicate
from ledger.services.deployment import complete_appraisals, insert_appraisals
from ledger.services.policy import apply_key_events
from ledger.services.trust import TrustRegistry, load_keys
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, Statement, check_plain_text, parse_statement

__all__ = [
    "Appended",
    "Integration",
    "Prepared",
    "RightEdge",
    "Signer",
    "append_batch",
    "check_right_edge",
    "dry_run",
    "integrate",
    "prepare",
    "prepare_batch",
    "prepare_envelopes",
]


@dataclass(frozen=True)
class _Decoded:
    """A submission that parsed as a DSSE envelope, with its RFC 8785 bytes (what the leaf keeps)."""

    envelope: Envelope
    canonical: bytes


def _decode(raw: bytes | str | Mapping[str, Any], limit: int, checked: bool = False) -> _Decoded:
    envelope = parse_envelope(raw, limit=limit, checked=checked)
    canonical = canonical_strings(envelope.document)
    # An already decoded object (a batch item): measure it the way it would arrive alone (as
    # compact JSON with ASCII escapes). That is at most 3 bytes per byte of its UTF-8 canonical
    # form (one character: at most 4 UTF-8 bytes, at most 12 as escapes), so the exact size is
    # needed only near the limit.
    if not isinstance(raw, bytes | str) and 3 * len(canonical) > limit:
        size = len(json.dumps(raw, separators=(",", ":")))
        if size > limit:
            raise TooLargeError(f"envelope is {size} bytes, over the limit of {limit} bytes")
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedError(
            f"envelope payloadType is {shorten(repr(envelope.payload_type), 100)}; the ledger accepts {IN_TOTO_PAYLOAD_TYPE!r}"
        )
    return _Decoded(envelope, canonical)


def _parse_submission(raw: Any, limit: int, checked: bool = False) -> Any:
    """A submission's first step: a DSSE envelope decoded (``_Decoded``) or the error that
    refuses it; anything else (a Sigstore bundle, a value of the wrong type) is returned as it
    is, for ``prepare_envelopes`` to take in full."""
    if not isinstance(raw, bytes | str | Mapping) or bundles.is_bundle(raw):
        return raw
    try:
        return _decode(raw, limit, checked)
    except LedgerError as exc:
        return exc


def _judge_key_event(envelope: Envelope, statement: Statement, registry: TrustRegistry) -> tuple[tuple[PublicKey, ...], KeyEvent]:
    """A key event must be signed by the ledger's administrator key (and only by it), commit to
    the last key event (``prev``) and apply to the trust state (``TrustFold.admit``)."""
    if registry.root is None:
        raise NotTrustedError("the ledger has no administrator key (root of trust): run `provledger init`")
    result = verify_envelope_result(envelope, [registry.root])
    if not result.keys:
        raise NotTrustedError(
            f"a key event must be signed by the ledger's administrator key {registry.root.key_id}; this one is not"
        )
    if result.unverified:
        position, _ = result.unverified[0]
        raise SignatureError(
            f"envelope signature {position} does not verify with the administrator key; a key event carries only its signature"
        )
    event = parse_key_event(statement.predicate, [(s.name, s.digest) for s in statement.subjects])
    for field_name in ("principal", "reason"):  # shown in `keys list`, `chain` and the UI
        value = getattr(event, field_name)
        if value is not None:
            check_plain_text(value, where=f"predicate.{field_name}")
    fold = registry.fold
    if fold is not None:
        fold.admit(event)
    else:
        if event.prev is None:
            raise ConflictError("a key event must commit to its predecessor: give predicate.prev {index, leaf_hash}")
        problem = registry.state().check(event)
        if problem is not None:
            raise (NotFoundError if problem.startswith("no key") else ConflictError)(problem)
    return (registry.root,), event


def _verified_keys(envelope: Envelope, registry: TrustRegistry, everything: Callable[[], TrustRegistry] | None) -> list[PublicKey]:
    """Every signature must verify under a registered key (hinted first, then any): one that
    verifies under none is refused (422) and never stored. Returns the distinct keys."""
    if len(envelope.signatures) == 1 and envelope.signatures[0].keyid in registry:
        # the common case, one signature naming its key: check it under that key first
        key = registry[envelope.signatures[0].keyid].key  # type: ignore[index]
        if key.verify(envelope.signatures[0].sig, envelope.pae()):
            return [key]
    hinted = [registry[s.keyid].key for s in envelope.signatures if s.keyid in registry]
    result = verify_envelope_result(envelope, hinted)
    if result.unverified and everything is not None:
        result = verify_envelope_result(envelope, [r.key for r in everything().values()])
    elif result.unverified:
        result = verify_envelope_result(envelope, [r.key for r in registry.values()])
    if result.unverified:
        position, hint = result.unverified[0]
        if hint in registry:
            raise SignatureError(f"envelope signature {position} does not verify with key {hint} ({registry[hint].name})")
        if not result.keys:
            named = f" (its signature names key id {hint[:80]})" if hint else " (its signature names no key id)"
            raise NotTrustedError(
                f"the envelope is not signed by any registered key{named}: register the signer's public key "
                "with `provledger keys add --name NAME --public-key KEY.pub --allow PREDICATE_TYPE`"
            )
        raise SignatureError(
            f"envelope signature {position} does not verify with any registered key; "
            "the ledger stores only signatures it can verify"
        )
    return result.keys


def _judge(envelope: Envelope, statement: Statement, registry: TrustRegistry, now: int,
           everything: Callable[[], TrustRegistry] | None = None) -> tuple[PublicKey, ...]:
    """The keys whose signatures verify, provided they make ``envelope`` trusted at ``now``.

    Signatures are checked first (a signature that verifies under no registered key is a 422),
    then the policy (``ledger.trust.judge``: grants, windows, review-by, revocation, threshold
    of distinct principals), which refuses with a 403 naming the grant a key lacks. Every
    verified key is returned (the leaf lists them; the duplicate identity is built from them).
    """
    keys = _verified_keys(envelope, registry, everything)
    state = registry.state() if everything is None or all(k.key_id in registry for k in keys) else everything().state()
    verdict = judge(
        state,
        predicate_type=statement.predicate_type,
        subject_names=[s.name for s in statement.subjects],
        key_ids=[k.key_id for k in keys],
        time=now,
        index=APPENDING,
        explain=False,  # only the verdict and its reasons are used
    )
    if not verdict.trusted:
        raise NotTrustedError(verdict.message())
    return tuple(keys)


def prepare_envelopes(
    raws: Sequence[bytes | str | Mapping[str, Any]],
    registry: TrustRegistry,
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
    everything: Callable[[], TrustRegistry] | None = None,
    pace: Callable[[], object] | None = None,
) -> list[Prepared | LedgerError]:
    """Parse, verify and judge each submission against ``registry`` (pure: no database).

    A failure is returned in its place, not raised. An item may also be what ``_parse_submission``
    made of a submission (``prepare_batch`` parses each one once). ``registry`` must hold at least the keys the
    signatures' keyid hints name; ``everything`` supplies all registered keys for envelopes
    without a usable hint (keyid is only a hint). ``pace`` is called before each submission
    (a serving process's ``Sequencer.pace``).
    """
    if not isinstance(registry, TrustRegistry):
        raise RuntimeError("prepare_envelopes needs a TrustRegistry (ledger.services.trust.load_keys / registry_from_rows)")
    out: list[Prepared | LedgerError] = []
    for raw in raws:
        if pace is not None:
            pace()
        if isinstance(raw, LedgerError):  # refused by ``_parse_submission`` (``prepare_batch``)
            out.append(raw)
            continue
        if not isinstance(raw, bytes | str | Mapping | _Decoded):
            out.append(MalformedError(f"a submission is a JSON object (a DSSE envelope or a Sigstore bundle), not {type(raw).__name__}"))
            continue
        if not isinstance(raw, _Decoded) and bundles.is_bundle(raw):  # a JSON object with a mediaType: a Sigstore bundle
            try:
                out.append(bundles.prepare_bundle(raw, everything() if everything is not None else registry, now=now, limit=limit))
            except LedgerError as exc:
                out.append(exc)
            continue
        try:
            decoded = raw if isinstance(raw, _Decoded) else _decode(raw, limit)
            envelope = decoded.envelope
            statement = parse_statement(envelope.payload)
            if statement.predicate_type != KEY_EVENT:
                statement.check_names()
            validate_predicate(statement.predicate_type, statement.predicate)
            subjects = tuple((alg, value, s.name) for s in statement.subjects for alg, value in s.digests())
            event = None
            if statement.predicate_type == KEY_EVENT:
                # the whole state: a key event is checked against every key, not only hinted ones
                keys = everything() if everything is not None else registry
                signers, event = _judge_key_event(envelope, statement, keys)  # type: ignore[arg-type]
                edges: tuple[tuple[str, str, str], ...] = ()
            else:
                signers = _judge(envelope, statement, registry, now, everything)
                edges = edges_of(statement.predicate_type, statement.predicate, [(a, v) for a, v, _ in subjects])
                if statement.predicate_type == DEPLOYMENT:
                    # decodes the evidence and checks the subject; the appraisal needs the store
                    parse_deployment(statement.predicate, subjects)
        except LedgerError as exc:
            out.append(exc)
            continue
        out.append(
            Prepared(
                canonical=decoded.canonical,
                envelope_hash=content_hash(envelope.payload_type, envelope.payload, [k.key_id for k in signers]),
                predicate_type=statement.predicate_type,
                subjects=subjects,
                signers=tuple(Signer(k.key_id, k.spki_der) for k in signers),
                edges=edges,
                key_event=event,
            )
        )
    return out


def _hints(parsed: Sequence[Any]) -> set[str]:
    """The keyid hints of the submissions that parsed as envelopes (to load only those keys)."""
    return {s.keyid for p in parsed if isinstance(p, _Decoded) for s in p.envelope.signatures if s.keyid}


def prepare_batch(
    session: Session,
    raws: Sequence[bytes | str | Mapping[str, Any]],
    *,
    now: int,
    limit: int = MAX_ENVELOPE_BYTES,
    checked: bool = False,
    pace: Callable[[], object] | None = None,
) -> list[Prepared | LedgerError]:
    """Load the keys the submissions name, then ``prepare_envelopes``, then appraise the
    deployment records' TEE evidence against the store (``ledger.services.deployment``).

    ``checked``: the submissions are values ``parse_json`` returned (a batch body's items),
    already held to the strict loader's rules. ``pace``: called before each submission is
    parsed and before it is checked (``Sequencer.pace``: a batch's preparation makes way for this
    process's group commit)."""
    # each submission is parsed once: its keyid hints come from the parsed envelope
    parsed: list[Any] = []
    for raw in raws:
        if pace is not None:
            pace()
        parsed.append(_parse_submission(raw, limit, checked))
    registry = load_keys(session, _hints(parsed))
    # End the read transaction before the CPU-bound checks: on SQLite an open reader pins the WAL
    # snapshot, and readers held through every batch's verification starve its checkpoints (the
    # WAL then grows without bound under load). Later reads begin a new transaction.
    session.rollback()
    cache: list[TrustRegistry] = []

    def everything() -> TrustRegistry:
        if not cache:
            cache.append(load_keys(session))
        return cache[0]

    prepared = prepare_envelopes(parsed, registry, now=now, limit=limit, everything=everything, pace=pace)
    return complete_appraisals(session, prepared, now=now)


def prepare(session: Session, raw: bytes | str | Mapping[str, Any], *, now: int, limit: int = MAX_ENVELOPE_BYTES) -> Prepared:
    """One submission: returns it prepared or raises its error."""
    (result,) = prepare_batch(session, [raw], now=now, limit=limit)
    if isinstance(result, LedgerError):
        raise result
    return result


@dataclass
class Integration:
    """What a batch became: an index per submission (-1: refused under the lock, see
    ``errors``) and the checkpoint that covers them."""

    indexes: list[int]
    created: list[bool]
    tree_size: int
    checkpoint_note: str | None
    #: node hashes known in memory after the batch (old right edge, new leaves and nodes):
    #: enough to build the new entries' inclusion proofs without reading the store
    known_nodes: dict[NodeId, bytes] = field(default_factory=dict)
    new_data: dict[int, bytes] = field(default_factory=dict)
    #: the log's end after this batch (valid once the caller has committed)
    edge: RightEdge | None = None
    #: batch position → why that submission was refused under the lock (a key event whose
    #: predecessor is no longer the last key event: replayed, forked or out of order)
    errors: dict[int, LedgerError] = field(default_factory=dict)

    def answers(self, session: Session) -> list[Appended | LedgerError]:
        """After the commit: each submission's receipt against the checkpoint this batch signed
        (built from the batch's hashes in memory; a batch that appended nothing: against the
        latest checkpoint, with its cosignatures), or why it was refused, in batch order."""
        issued = receipts(
            session,
            self.issued_indexes,
            tree_size=self.tree_size if self.checkpoint_note else None,
            checkpoint_note=self.checkpoint_note,
            known=self.known_nodes,
            data=self.new_data,
            # a fresh checkpoint: no witness has seen it yet
            cosignatures=self.checkpoint_note is None,
        )
        return self.results(issued)

    def results(self, issued: Sequence[dict[str, Any]]) -> list[Appended | LedgerError]:
        """Receipts (``issued``, for the non-refused positions in order) and errors, in batch order."""
        it = iter(issued)
        out: list[Appended | LedgerError] = []
        for position, (index, created) in enumerate(zip(self.indexes, self.created, strict=True)):
            out.append(self.errors[position] if index < 0 else Appended(next(it), created))
        return out

    @property
    def issued_indexes(self) -> list[int]:
        return [i for i in self.indexes if i >= 0]


@dataclass(frozen=True)
class RightEdge:
    """Where the log ends: its size, the hashes of its right-edge subtrees, its chain head and
    the integrated time of its last entry (integrated time never goes backwards)."""

    size: int
    frontier: tuple[bytes, ...]
    head: bytes
    time: int = 0

    @property
    def root(self) -> bytes:
        return CompactRange(self.size, self.frontier).root()


def _edge_error(message: str, first_bad: int) -> IntegrityError:
    return IntegrityError(f"{message} (first bad index {first_bad}); writes are stopped", first_bad_index=first_bad)


def check_right_edge(session: Session, size: int, edge: RightEdge | None, *, stored: CompactRange | None = None) -> None:
    """Compare the store's right edge with what this process holds; IntegrityError on a mismatch.

    The store must end where its sequencer says (the last entry is ``size - 1``) under a
    checkpoint of that size. With ``edge`` (what this process committed last), the last chain
    hash and root must be the ones it wrote, or, when another process appended since, the
    entry and checkpoint at ``edge.size`` must still be. Without it, ``stored`` (the frontier
    read from the store) must lead to the latest checkpoint's root.
    """
    last = store.last_entry(session)
    last_idx = last[0] if last is not None else -1
    if last_idx != size - 1:
        first_bad = last_idx + 1 if last_idx < size - 1 else size
        raise _edge_error(
            f"the store's right edge moved: the sequencer is at size {size} but the last stored entry is {last_idx}",
            first_bad,
        )
    latest = store.latest_checkpoint_root(session)  # (tree size, root hash)
    if size > 0 and (latest is None or latest[0] != size):
        raise _edge_error(
            f"the store's right edge moved: no checkpoint covers the tree of size {size}", size - 1
        )
    if stored is not None and size > 0 and latest is not None and stored.root() != latest[1]:
        raise _edge_error(
            f"the stored tree of size {size} does not lead to the latest checkpoint's root", size - 1
        )
    if edge is None:
        return
    if edge.size > size:
        raise _edge_error(
            f"the store's right edge moved back: this server committed {edge.size} entries but the store holds {size}",
            size,
        )
    if edge.size == 0:
        return
    if edge.size == size:
        head, root = last[1] if last is not None else None, latest[1] if latest is not None else None
    else:  # another process appended since: what this one wrote must still be there
        head, root = store.chain_head(session, edge.size), store.checkpoint_root(session, edge.size)
    if head != edge.head:
        raise _edge_error(
            f"the store's right edge moved: entry {edge.size - 1} no longer has the chain hash this server wrote",
            edge.size - 1,
        )
    if root != edge.root:
        raise _edge_error(
            f"the store's right edge moved: the checkpoint of size {edge.size} no longer has the root this server signed",
            edge.size - 1,
        )


def integrate(
    session: Session,
    batch: Sequence[Prepared],
    log: LogIdentity,
    *,
    now: int,
    edge: RightEdge | None = None,
    on_locked: Callable[[], object] | None = None,
) -> Integration:
    """Sequence a batch under the sequencer lock; the caller commits (or rolls back) once.
    ``on_locked`` is called once the lock is held (``Sequencer`` marks its locked section).

    ``edge`` is what this process committed last; it is used only when the locked size proves
    that nobody appended since (sizes only grow), and saves reading the right edge back. Either
    way the store's right edge is checked first (``check_right_edge``): a store cut or rewritten
    behind this process's back raises IntegrityError and nothing is appended over the gap.

    Under the lock: the batch's integrated time is at least the last entry's (two processes with
    different clocks cannot make time go backwards); duplicates (same content hash) return the
    first entry; each key event must commit to the last key event (``TrustFold.admit``), else it
    is refused with ConflictError and not appended.
    """
    size = store.lock_sequencer(session)
    if on_locked is not None:
        on_locked()
    existing = store.entries_by_content_hash(session, [p.envelope_hash for p in batch])
    if edge is not None and edge.size == size:
        check_right_edge(session, size, edge)
        tree = CompactRange(size, edge.frontier)
        head = edge.head
        last_time = edge.time
    else:
        tree = store.read_frontier(session, size)
        check_right_edge(session, size, edge, stored=tree)
        head, last_time = store.chain_head_and_time(session, size)
    now = max(now, last_time)
    known: dict[NodeId, bytes] = dict(zip(frontier_nodes(size), tree.hashes, strict=True))
    fold: TrustFold | None = None
    if any(p.key_event is not None for p in batch):
        from ledger.services.trust import trust_fold  # noqa: PLC0415

        fold = trust_fold(session).copy()

    rows: list[store.EntryRow] = []
    nodes: list[tuple[int, bytes]] = []
    new_data: dict[int, bytes] = {}
    indexes: list[int] = []
    created: list[bool] = []
    errors: dict[int, LedgerError] = {}
    provenance: list[tuple[int, Prepared]] = []
    # firmware records appended earlier in this batch: a deployment after them could match one
    # (its appraisal, made before they were stored, could not)
    batch_firmware: list[tuple[int, Prepared]] = []
    signer_parts: dict[tuple[Signer, ...], bytes] = {}
    for position, p in enumerate(batch):
        if p.envelope_hash in existing:
            indexes.append(existing[p.envelope_hash])
            created.append(False)
            continue
        index = size + len(rows)
        if p.appraise_in_sequence or p.appraisal is not None and (_appraised_at(p) != now or batch_firmware):
            appraised = _appraise_at(session, p, now, batch_firmware)
            if isinstance(appraised, LedgerError):
                errors[position] = appraised
                indexes.append(-1)
                created.append(False)
                continue
            p = appraised
        if p.key_event is not None:
            assert fold is not None
            try:
                fold.skip_to(index, fold.last_time)
                fold.admit(p.key_event)
            except LedgerError as exc:
                errors[position] = exc
                indexes.append(-1)
                created.append(False)
                continue
        if p.bundle_signer is None:
            signers = signer_parts.get(p.signers)
            if signers is None:
                signers = signer_parts[p.signers] = signers_json(p.signers)  # type: ignore[arg-type]
            data = encode_leaf_with_signers(p.canonical, now, signers)
        else:
            data = encode_bundle_leaf(p.canonical, now, p.bundle_signer)
        if p.key_event is not None:
            assert fold is not None
            fold.feed(index, data)
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
        provenance.append((index, p))
        if p.predicate_type == FIRMWARE_IMAGE:
            batch_firmware.append((index, p))
        new_data[index] = data
        indexes.append(index)
        created.append(True)

    note: str | None = None
    if rows:
        new_size = size + len(rows)
        store.insert_entries(session, rows, nodes)
        store.insert_contents(session, [(r.idx, r.envelope_hash) for r in rows])
        _insert_provenance(session, provenance)
        apply_key_events(session, [(i, now, p.key_event) for i, p in provenance if p.key_event is not None])
        store.advance_sequencer(session, new_size)
        root = tree.root()
        note = sign_checkpoint(Checkpoint(origin=log.origin, size=new_size, root=root), log.signer).decode("utf-8")
        store.insert_checkpoint(session, new_size, root, note, now)
        size = new_size
        last_time = now
    session.flush()
    return Integration(
        indexes, created, size, note, known, new_data, RightEdge(size, tuple(tree.hashes), head, last_time), errors
    )


def _appraised_at(p: Prepared) -> int | None:
    try:
        return int(json.loads(p.appraisal or "")["appraised_at"])
    except (ValueError, KeyError, TypeError):
        return None


def _appraise_at(session: Session, p: Prepared, now: int, batch_firmware: Sequence[tuple[int, Prepared]]) -> Prepared | LedgerError:
    """A deployment appraised again under the sequencer lock, as anyone recomputes it from the log
    (``judge_deployment`` at its leaf's time, against the firmware records before it): when it was
    appraised at another time than the one it is integrated at (the clock moved on between its
    preparation and the lock, or another process's clock is ahead), or when firmware records
    precede it in its batch (``appraise_in_sequence``: only they could match it). Its firmware
    edge is the new appraisal's; refused if that rejects."""
    base = replace(p, appraisal=None, appraise_in_sequence=False, edges=tuple(e for e in p.edges if e[0] != "firmware"))
    (result,) = complete_appraisals(session, [base], now=now, pending=batch_firmware)
    return result


def _insert_provenance(session: Session, created: Sequence[tuple[int, Prepared]]) -> None:
    """Each new entry's edges and signer keys, in the entry's transaction (append-only tables)."""
    signers = [(i, key_id) for i, p in created for key_id in dict.fromkeys(s.key_id for s in p.signers)]
    store.bulk_insert(session, "entry_signers", ("entry_idx", "key_id"), signers)
    edges = [(i, position, *edge) for i, p in created for position, edge in enumerate(p.edges)]
    store.bulk_insert(session, "entry_edges", ("entry_idx", "position", "kind", "algorithm", "digest"), edges)
    insert_appraisals(session, created)


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

    def commit(batch: Sequence[Prepared]) -> list[Appended | LedgerError]:
        with sessions() as session:
            with session.begin():
                integration = integrate(session, batch, log, now=now)
            return integration.answers(session)

    # a record the store refuses is refused alone (``ledger.services.isolate``)
    committed, kept, refused = commit_isolating(ready, commit, dry_run(sessions, log, now=now))
    outcome: list[Appended | LedgerError] = [refused.get(i) for i in range(len(ready))]  # type: ignore[misc]
    for position, appended in zip(kept, committed or (), strict=True):
        outcome[position] = appended
    it = iter(outcome)
    for position, item in enumerate(prepared):
        if isinstance(item, Prepared):
            results[position] = next(it)
    return results


class _DryRun(Exception):
    """Raised to roll a probe back after it succeeded."""


def dry_run(
    sessions: Callable[[], Session], log_identity: LogIdentity, *, now: int
) -> Callable[[Sequence[Prepared]], BaseException | None]:
    """A probe for ``ledger.services.isolate.commit_isolating``: integrate a batch in a
    transaction that is always rolled back; its error, or None."""

    def probe(batch: Sequence[Prepared]) -> BaseException | None:
        with sessions() as session:
            try:
                with session.begin():
                    integrate(session, batch, log_identity, now=now)
                    session.flush()
                    raise _DryRun
            except _DryRun:
                return None
            except Exception as exc:  # noqa: BLE001 - the probe reports it
                return exc

    return probe
