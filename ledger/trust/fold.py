"""The trust state as a fold over the log's entries, in index order (pure: no database, no web).

``leaf_facts`` recomputes, from one entry's leaf bytes, everything the store derives from it
(predicate type, subjects, edges, signers, the duplicate identity, the key event). ``TrustFold``
folds entries one by one: key events signed by the administrator key (the root of trust) and
committing to their predecessor (``prev``) change the trust state; every entry's integrated
time must not go backwards. The append path keeps one fold per ledger in memory and advances it
by the new entries only; ``audit`` folds from scratch; both are this code.

See FOLD_API.md for the contract the offline verifier builds on.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import ConflictError, LedgerError, MalformedError, NotFoundError
from ledger.records.keys import public_key_from_der
from ledger.trust.graph import edges_of
from ledger.trust.policy import GENESIS_PREV, KeyEvent, TrustState, parse_key_event
from ledger.trust.predicates import KEY_EVENT, validate_predicate
from ledger.records.leaf import LEAF_KIND_BUNDLE, Leaf, decode_leaf
from ledger.records.statement import parse_statement

__all__ = [
    "ARTIFACT_SIGNATURE",
    "GENESIS",
    "LeafFacts",
    "Prev",
    "TrustFold",
    "content_hash",
    "fold",
    "leaf_facts",
]

#: the predicate type the ledger records a Sigstore message-signature bundle under
ARTIFACT_SIGNATURE = "https://provenance-ledger.dev/artifact-signature/v1"

Prev = tuple[int, str]
#: the ``prev`` of a ledger's first key event
GENESIS: Prev = GENESIS_PREV

_CONTENT_DOMAIN = b"provledger-content/v1\n"


def content_hash(payload_type: str, payload: bytes, key_ids: Iterable[str]) -> bytes:
    """A submission's identity for duplicate detection: its signed content and the set of
    registered keys whose signatures verify (never keyid hints, never junk signatures)."""
    text = b"".join(
        (
            _CONTENT_DOMAIN,
            payload_type.encode("utf-8"),
            b"\n",
            hashlib.sha256(payload).hexdigest().encode("ascii"),
            b"\n",
            ",".join(sorted(set(key_ids))).encode("ascii"),
        )
    )
    return hashlib.sha256(text).digest()


@dataclass(frozen=True)
class LeafFacts:
    """What the store derives from one entry, recomputed from its leaf bytes."""

    index: int
    leaf_hash: bytes
    integrated_time: int
    kind: str
    predicate_type: str
    #: (algorithm, lowercase digest, name) of each subject digest
    subjects: tuple[tuple[str, str, str], ...]
    #: key ids of the keys the leaf lists as verified (a bundle: the key that signed it)
    signers: tuple[str, ...]
    edges: tuple[tuple[str, str, str], ...]
    content_hash: bytes
    statement: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    key_event: KeyEvent | None = None
    key_event_error: str | None = None
    #: a keyless bundle's certificate identity record (san, issuer, extensions)
    identity: dict[str, Any] | None = field(default=None, compare=False)
    #: what the chain shows beside the entry's verdict, read from its leaf (``leaf_notes``)
    notes: tuple[str, ...] = field(default=(), compare=False)


#: the reason a link shows for a Sigstore bundle whose Rekor entry had a SET but no inclusion proof
PROMISED_INCLUSION = "Rekor inclusion promised (SET), not proven"


def leaf_notes(signer: Any) -> tuple[str, ...]:
    """The notes a ``sigstore-bundle`` leaf's signer record carries for the chain: inclusion in
    Rekor promised (a v0.1 bundle's SET), not proven. The server and the offline verifier both
    read them from the leaf with this."""
    if isinstance(signer, dict) and signer.get("tlog_inclusion") == "promised":
        return (PROMISED_INCLUSION,)
    return ()


def _statement_parts(payload: bytes) -> tuple[dict[str, Any], str, tuple[tuple[str, str, str], ...], tuple[tuple[str, str, str], ...]]:
    statement = parse_statement(payload)
    subjects = tuple((alg, value, s.name) for s in statement.subjects for alg, value in s.digests())
    edges: tuple[tuple[str, str, str], ...] = ()
    if statement.predicate_type != KEY_EVENT:
        edges = tuple(edges_of(statement.predicate_type, statement.predicate, [(a, v) for a, v, _ in subjects]))
    return statement.document, statement.predicate_type, subjects, edges


def leaf_facts(index: int, data: bytes, leaf: Leaf | None = None) -> LeafFacts:
    """Everything derived from entry ``index`` (MalformedError if its bytes do not decode).

    ``leaf``: ``decode_leaf(data)`` when the caller has it already (the audit's shards decode
    each leaf once for its signature and its facts)."""
    data = bytes(data)
    if leaf is None:
        leaf = decode_leaf(data)
    leaf_hash = hashlib.sha256(b"\x00" + data).digest()
    if leaf.kind == LEAF_KIND_BUNDLE:
        assert leaf.bundle is not None and leaf.signer is not None
        from ledger.records.leaf import canonical_json  # noqa: PLC0415

        canonical = canonical_json(leaf.bundle)
        identity = leaf.signer.get("identity")
        signers = (str(leaf.signer["key_id"]),)
        if leaf.envelope is not None:
            doc, ptype, subjects, edges = _statement_parts(leaf.envelope.payload)
        else:
            message = leaf.bundle.get("messageSignature") or {}
            found = message.get("messageDigest") if isinstance(message, dict) else None
            digest = found.get("digest", "") if isinstance(found, dict) else None
            if not isinstance(digest, str):
                raise MalformedError(f"entry {index}: the bundle's messageSignature carries no message digest")
            try:
                value = base64.b64decode(digest, validate=True).hex()
            except (binascii.Error, ValueError) as exc:
                raise MalformedError(f"entry {index}: the bundle's message digest is not base64") from exc
            doc, ptype, subjects, edges = None, ARTIFACT_SIGNATURE, (("sha256", value, ""),), ()
        return LeafFacts(
            index, leaf_hash, leaf.integrated_time, leaf.kind, ptype, subjects, signers, edges,
            hashlib.sha256(canonical).digest(), doc, identity=identity if isinstance(identity, dict) else None,
            notes=leaf_notes(leaf.signer),
        )
    assert leaf.envelope is not None
    envelope = leaf.envelope
    signers = tuple(k.key_id for k in leaf.signers)
    doc, ptype, subjects, edges = _statement_parts(envelope.payload)
    event = None
    error = None
    if ptype == KEY_EVENT:
        try:
            validate_predicate(KEY_EVENT, doc.get("predicate"))
            event = parse_key_event(doc["predicate"], [(s.get("name", ""), s.get("digest") or {}) for s in doc.get("subject") or ()])
        except LedgerError as exc:
            error = exc.diagnostics() if hasattr(exc, "diagnostics") else str(exc)
    return LeafFacts(
        index, leaf_hash, leaf.integrated_time, leaf.kind, ptype, subjects, signers, edges,
        content_hash(envelope.payload_type, envelope.payload, signers), doc, event, error,
    )


def _signed_by_root(data: bytes, root_der: bytes) -> bool:
    leaf = decode_leaf(data)
    if leaf.envelope is None:
        return False
    root = public_key_from_der(root_der)
    message = leaf.envelope.pae()
    return any(root.verify(s.sig, message) for s in leaf.envelope.signatures)


class TrustFold:
    """The trust state after ``size`` entries, advanced one entry at a time."""

    def __init__(self, root_key: bytes | None) -> None:
        self.root_key = bytes(root_key) if root_key is not None else None
        self.size = 0
        self.last_time = 0
        self.last_key_event: Prev | None = None  # None: no key event applied yet
        self.chained = False  # a key event with prev has been applied: prev is required from now on
        self.state = TrustState(root_key_id=public_key_from_der(self.root_key).key_id if self.root_key else None)
        self.problems: list[tuple[int, str]] = []
        #: (index, integrated time, event) of every applied key event, for ``state_at``
        self.events: list[tuple[int, int, KeyEvent]] = []
        self._at_cache: dict[int, TrustState] = {}

    # ------------------------------------------------------------------ advancing

    def feed(self, index: int, data: bytes) -> LeafFacts:
        """Fold entry ``index`` (which must be the next one)."""
        if index != self.size:
            raise ValueError(f"the fold is at entry {self.size}, not {index}")
        try:
            facts = leaf_facts(index, data)
        except LedgerError as exc:
            self.problems.append((index, f"entry {index} does not decode: {exc}"))
            self.size = index + 1
            raise
        self.feed_facts(facts, data)
        return facts

    def feed_facts(self, facts: LeafFacts, data: bytes | None = None) -> None:
        """Fold an entry already decoded (``data``: its leaf bytes, needed for a key event)."""
        index = facts.index
        if index < self.size:
            raise ValueError(f"the fold is at entry {self.size}; entry {index} is folded already")
        if facts.integrated_time < self.last_time:
            self.problems.append(
                (index, f"entry {index}'s integrated time {facts.integrated_time} is before its predecessor's {self.last_time}")
            )
        self.last_time = max(self.last_time, facts.integrated_time)
        self.size = index + 1
        if facts.predicate_type != KEY_EVENT or facts.kind == LEAF_KIND_BUNDLE:
            return
        problem = self._key_event_problem(facts, data)
        if problem is not None:
            self.problems.append((index, f"key-event entry {index}: {problem}"))
            return
        assert facts.key_event is not None
        self.state.apply(facts.key_event, index, facts.integrated_time)
        self.last_key_event = (index, facts.leaf_hash.hex())
        self.chained = self.chained or facts.key_event.prev is not None
        self.events.append((index, facts.integrated_time, facts.key_event))
        self._at_cache.clear()

    def _key_event_problem(self, facts: LeafFacts, data: bytes | None) -> str | None:
        if facts.key_event is None:
            return facts.key_event_error or "it does not parse"
        if self.root_key is None:
            return "the ledger has no root of trust (administrator key)"
        if self.state.root_key_id not in facts.signers or (data is not None and not _signed_by_root(data, self.root_key)):
            return "it is not signed by the administrator key"
        why = self.prev_problem(facts.key_event)
        if why is not None:
            return why
        return self.state.check(facts.key_event)

    def prev_problem(self, event: KeyEvent) -> str | None:
        """Why ``event``'s predecessor commitment does not fit the fold, or None."""
        expected = self.last_key_event or GENESIS
        if event.prev is None:
            if self.chained:
                return f"it does not commit to its predecessor (prev); the last key event is entry {expected[0]}"
            return None
        if tuple(event.prev) != tuple(expected):
            if event.prev[0] < expected[0]:
                what = "replayed or forked (a later key event already follows the one it names)"
            elif event.prev[0] == expected[0]:
                what = "a fork"
            else:
                what = "out of order"
            return (
                f"{what}: it follows key event {event.prev[0]} (leaf hash {event.prev[1][:16]}…), "
                f"but the last key event is {expected[0]} (leaf hash {expected[1][:16]}…)"
            )
        return None

    def skip_to(self, size: int, last_time: int) -> None:
        """Advance over entries the caller vouches hold no key event (the incremental path reads
        only key-event entries and the last entry's time)."""
        if size < self.size:
            raise ValueError(f"the fold is at entry {self.size}, past {size}")
        self.size = size
        self.last_time = max(self.last_time, last_time)

    def extend(self, entries: Iterable[tuple[int, bytes]]) -> TrustFold:
        for index, data in entries:
            try:
                self.feed(index, data)
            except LedgerError:
                continue
        return self

    # ------------------------------------------------------------------ reading

    def admit(self, event: KeyEvent) -> None:
        """The append path's check of a new key event against the fold: ConflictError (409) for a
        missing, replayed, forked or out-of-order ``prev`` or an event that cannot apply,
        NotFoundError for an event about an unknown key."""
        if event.prev is None:
            raise ConflictError(
                "a key event must commit to its predecessor: give predicate.prev "
                f"{{index, leaf_hash}} of the last key event (entry {(self.last_key_event or GENESIS)[0]})"
            )
        problem = self.prev_problem(event)
        if problem is not None:
            raise ConflictError(f"key event refused: {problem}")
        problem = self.state.check(event)
        if problem is not None:
            raise (NotFoundError if problem.startswith("no key") else ConflictError)(problem)

    def state_at(self, index: int) -> TrustState:
        """The trust state as of entry ``index`` (inclusive): replays only the key events."""
        if index >= self.size - 1 and (not self.events or self.events[-1][0] <= index):
            return self.state
        # the state changes only at key events: the states of all indexes between two of them
        # are one, cached by how many events precede
        count = bisect.bisect_right(self.events, index, key=lambda e: e[0])
        cached = self._at_cache.get(count)
        if cached is not None:
            return cached
        state = TrustState(root_key_id=self.state.root_key_id)
        for i, time, event in self.events[:count]:
            state.apply(event, i, time)
        if len(self._at_cache) > 64:
            self._at_cache.clear()
        self._at_cache[count] = state
        return state

    def copy(self) -> TrustFold:
        other = TrustFold.__new__(TrustFold)
        other.root_key = self.root_key
        other.size, other.last_time, other.last_key_event, other.chained = self.size, self.last_time, self.last_key_event, self.chained
        other.state = self.state.copy()
        other.problems = list(self.problems)
        other.events = list(self.events)
        other._at_cache = {}
        return other


def fold(root_key: bytes | None, entries: Iterable[tuple[int, bytes]]) -> TrustFold:
    """The fold of ``entries`` ((index, leaf bytes) in index order, from 0) from scratch."""
    return TrustFold(root_key).extend(entries)
