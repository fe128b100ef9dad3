"""The audit, split into shards that workers re-measure in parallel, and combined again.

The tree of ``size`` leaves is cut into complete subtrees (RFC 9162 §2.1): the aligned ranges
``[k * 2**s, (k + 1) * 2**s)``, then the decomposition of the tail into smaller complete subtrees
(``ledger.merkle.range_nodes``). A shard is one such subtree, so it owns every interior hash
inside it and hands on exactly one root.

Each shard (:func:`verify_shard`), on its own:

1. re-reads its entries and recomputes each leaf hash from the stored bytes;
2. re-verifies every DSSE signature with the signers its leaf records;
3. recomputes the hash chain, starting from the previous entry's stored chain hash;
4. recomputes every interior hash inside its subtree and compares the stored ones;
5. verifies every checkpoint of a size ``c`` with ``start < c <= end``: the log's signature, that
   the note agrees with its row, and the root at ``c``, computed from the stored right edge of the
   tree before the shard (``frontier_nodes(start)``) and the shard's own leaves.

The combiner (:func:`combine_shards`) then merges the shard roots in order, which checks every
stored interior hash above the shards, and finishes the checkpoints of a shard that found a node
of the right edge before it missing. It adds the checks that need the whole picture: the
checkpoint of size 0, a checkpoint covering the audited size, the sequencer's size, stray rows,
the log's identity. Its report has the shape of ``provledger audit --json`` plus ``"shard"``.

The measure is the one of ``ledger.services.audit``, so both name the same first bad index: the
chain and the tree are re-measured from the STORED leaf hashes, each stored interior hash is
checked against its two stored children (and reported at its first leaf, once: not again at its
ancestors), a checkpoint is compared with the root of the stored right edge at its size (and
reported at size - 1). The shards add what the single-process audit does not do: re-verifying
every envelope's signatures.

Audit runs are recorded in ``audits`` and ``audit_shards`` (mutable, unlike the ledger): a shard
stores its result in its row, so re-running it is a no-op and the combiner reads the rows, not
the task results. Everything here takes a Session and plain values; callers commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.db import store
from ledger.db.models import AuditRun, AuditShard, Entry, TreeHash
from ledger.db.models import Checkpoint as CheckpointRow
from ledger.records.dsse import pae, parse_envelope, verify_envelope_result
from ledger.errors import LedgerError, MalformedError, NotFoundError
from ledger.tlog.hashing import CHAIN_SEED, EMPTY_ROOT, node_hash
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.merkle import NodeId, frontier_nodes, range_nodes
from ledger.tlog.note import Verifier, parse_vkey
from ledger.records.leaf import LEAF_KIND_BUNDLE, LEAF_KIND_DSSE, decode_leaf
from ledger.services.audit import MAX_PROBLEMS, Problem
from ledger.services.log import LogIdentity

__all__ = [
    "AUTO_MAX_LEVEL",
    "AUTO_MIN_LEVEL",
    "MAX_SHARD_LEVEL",
    "DistributedReport",
    "Shard",
    "ShardResult",
    "audit_json",
    "audit_progress",
    "check_leaf_signatures",
    "combine_shards",
    "create_audit",
    "fail_audit",
    "finish_audit",
    "get_audit",
    "has_active_audit",
    "list_audits",
    "plan_shards",
    "publish_checkpoint",
    "run_shard",
    "shard_level_for",
    "verify_shard",
]

#: Shards per audit the automatic choice aims at: enough to keep a few workers busy to the end.
TARGET_SHARDS = 64
#: The automatic shard size stays within 2**10 .. 2**16 entries.
AUTO_MIN_LEVEL = 10
AUTO_MAX_LEVEL = 16
#: A requested shard size may be at most 2**20 entries (one shard must fit a worker's time limit).
MAX_SHARD_LEVEL = 20
#: A shard reports its progress every this many entries.
PROGRESS_EVERY = 4096
#: Signer public keys decoded once per process (a ledger has few signers, many entries).
MAX_CACHED_KEYS = 4096

_LEAF_KEYS = frozenset({"kind", "envelope", "integrated_time", "signers"})
_SIGNER_KEYS = frozenset({"key_id", "public_key"})
_MAX_SAFE_INT = 2**53  # RFC 8785 numbers are IEEE doubles: beyond this the fast path gives way


# ------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Shard:
    """The complete subtree ``(level, start >> level)``: leaves ``[start, end)``."""

    number: int
    level: int
    start: int

    @property
    def end(self) -> int:
        return self.start + (1 << self.level)

    @property
    def node(self) -> NodeId:
        return (self.level, self.start >> self.level)


def shard_level_for(size: int, *, target_shards: int = TARGET_SHARDS) -> int:
    """The shard level (shards of 2**level entries) that cuts ``size`` into about ``target_shards``."""
    if size <= 0:
        return AUTO_MIN_LEVEL
    wanted = max(1, -(-size // target_shards))
    level = (wanted - 1).bit_length()
    return min(max(level, AUTO_MIN_LEVEL), AUTO_MAX_LEVEL)


def plan_shards(size: int, level: int) -> list[Shard]:
    """Full subtrees of 2**level leaves, then the tail's complete subtrees, left to right."""
    if size < 0:
        raise MalformedError(f"a tree size cannot be negative, got {size}")
    if not 0 <= level <= MAX_SHARD_LEVEL:
        raise MalformedError(f"a shard level must be between 0 and {MAX_SHARD_LEVEL}, got {level}")
    full = size >> level
    shards = [Shard(k, level, k << level) for k in range(full)]
    for node_level, node_index in range_nodes(full << level, size):
        shards.append(Shard(len(shards), node_level, node_index << node_level))
    return shards


# ------------------------------------------------------------------------------ results


def _order(p: Problem) -> tuple[bool, int]:
    return (p.index is None, p.index or 0)


@dataclass
class _Problems:
    """At most MAX_PROBLEMS problems: the ones with the lowest indexes, whatever order they come in
    (an interior hash is found after the entries it covers, and must not be the one dropped)."""

    _items: list[Problem] = field(default_factory=list)
    truncated: bool = False

    def add(self, index: int | None, kind: str, message: str) -> None:
        self._items.append(Problem(index, kind, message))
        if len(self._items) > 2 * MAX_PROBLEMS:
            self._items = self.items
            self.truncated = True

    @property
    def items(self) -> list[Problem]:
        ordered = sorted(self._items, key=_order)
        if len(ordered) > MAX_PROBLEMS:
            self.truncated = True
        return ordered[:MAX_PROBLEMS]


@dataclass
class ShardResult:
    """What one shard found, and what the combiner needs from it (JSON in ``audit_shards``)."""

    shard: int
    level: int
    start: int
    end: int
    #: the subtree root's stored hash (hex); None when entries are missing
    root: str | None
    #: the stored right edge before ``start`` the checkpoints were checked against (hex);
    #: None when a node of it is missing
    frontier_before: list[str] | None
    #: whether the root's stored hash disagrees with its stored children
    root_flagged: bool = False
    #: [size, local root, signed root] of checkpoints left for the combiner (no right edge)
    deferred: list[list[Any]] = field(default_factory=list)
    entries: int = 0
    signatures: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "level": self.level,
            "start": self.start,
            "end": self.end,
            "root": self.root,
            "root_flagged": self.root_flagged,
            "frontier_before": self.frontier_before,
            "deferred": self.deferred,
            "entries": self.entries,
            "signatures": self.signatures,
            "checkpoints": self.checkpoints,
            "problems": [_problem_json(p) for p in self.problems],
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ShardResult:
        return cls(
            shard=doc["shard"],
            level=doc["level"],
            start=doc["start"],
            end=doc["end"],
            root=doc["root"],
            frontier_before=doc["frontier_before"],
            root_flagged=doc["root_flagged"],
            deferred=doc["deferred"],
            entries=doc["entries"],
            signatures=doc["signatures"],
            checkpoints=doc["checkpoints"],
            problems=[Problem(p["index"], p["kind"], p["message"]) for p in doc["problems"]],
            truncated=doc["truncated"],
        )


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"index": p.index, "kind": p.kind, "message": p.message}


# ------------------------------------------------------------------------------ one shard


class _Signers:
    """Signer keys decoded from leaves, cached by their base64 DER (few signers, many entries)."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}

    def key(self, public_key: str, key_id: str) -> PublicKey:
        key = self._keys.get(public_key)
        if key is None:
            try:
                key = public_key_from_der(base64.b64decode(public_key, validate=True))
            except ValueError as exc:
                raise MalformedError("leaf signer public_key is not base64") from exc
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[public_key] = key
        if key.key_id != key_id:
            raise MalformedError("leaf signer key_id does not match its public key")
        return key


_SIGNERS = _Signers()


#: The shape ``ledger.records.leaf.encode_leaf`` writes for one signature by one recorded signer, with
#: strings that need no escaping: bytes that match are RFC 8785 canonical by construction.
_COMMON_LEAF = re.compile(
    rb'\{"envelope":\{"payload":"([A-Za-z0-9+/]*={0,2})","payloadType":"([ !#-\[\]-~]+)",'
    rb'"signatures":\[\{"keyid":"([ !#-\[\]-~]*)","sig":"([A-Za-z0-9+/]+={0,2})"\}\]\},'
    rb'"integrated_time":(0|[1-9][0-9]{0,15}),"kind":"dsse",'
    rb'"signers":\[\{"key_id":"([0-9a-f]{64})","public_key":"([A-Za-z0-9+/]+={0,2})"\}\]\}'
)


def check_leaf_signatures(data: bytes, signers: _Signers = _SIGNERS) -> tuple[str, str] | None:
    """Re-verify the DSSE envelope in leaf ``data`` with the signers the leaf records.

    Returns None when every recorded signer's signature verifies, else (problem kind, message).

    Three paths, one verdict. The common leaf (one signature, one signer, plain strings) is
    matched as bytes: its fields are sliced out without decoding JSON, and since they need no
    escaping the bytes are canonical by construction. Other leaves of the ``encode_leaf`` shape
    are decoded with Python's JSON, which for strings, nulls and small integers under ASCII keys
    is byte-identical to RFC 8785 (``ledger.records.leaf.canonical_strings``). Anything else takes the
    exact path, ``ledger.records.leaf.decode_leaf``. Tests hold the paths to the same verdicts.
    """
    match = _COMMON_LEAF.fullmatch(data)
    if match is not None:
        payload_b64, payload_type, _keyid, sig_b64, t, key_id, public_key = match.groups()
        try:
            # the pattern has checked the alphabet, which is all that validate=True adds
            payload = binascii.a2b_base64(payload_b64)
            sig = binascii.a2b_base64(sig_b64)
        except binascii.Error:
            pass  # padding the strict decoder refuses: let the exact path judge
        else:
            if sig and int(t) < _MAX_SAFE_INT:
                try:
                    key = signers.key(public_key.decode("ascii"), key_id.decode("ascii"))
                except LedgerError as exc:
                    return "leaf_data", exc.diagnostics()
                if key.verify(sig, pae(payload_type.decode("ascii"), payload)):
                    return None
                return "signature", f"no signature in its envelope verifies with its recorded signer {key.key_id}"
    try:
        keys, envelope = _decode_fast(data, signers)
    except _SlowPath:
        try:
            leaf = decode_leaf(data)
        except LedgerError as exc:
            return "leaf_data", exc.diagnostics()
        if leaf.kind == LEAF_KIND_BUNDLE:
            return _check_bundle_leaf(leaf)
        keys, envelope = list(leaf.signers), leaf.envelope
    except LedgerError as exc:
        return "leaf_data", exc.diagnostics()
    if not keys:
        return "signature", "its leaf records no signer"
    verified = {k.key_id for k in verify_envelope_result(envelope, keys).keys}
    for key in keys:
        if key.key_id not in verified:
            return "signature", f"no signature in its envelope verifies with its recorded signer {key.key_id}"
    return None


def _check_bundle_leaf(leaf: Any) -> tuple[str, str] | None:
    """A Sigstore-bundle leaf: its content signature by its recorded signer, as an offline
    verifier of its receipt checks it (``ledger.verify``). The certificate chain and transparency
    entries inside the bundle are Sigstore's to re-check (the ledger checked them on entry)."""
    from ledger.verify import verify_bundle_leaf_signature  # noqa: PLC0415

    try:
        verify_bundle_leaf_signature(leaf)
    except LedgerError as exc:
        return "signature", exc.diagnostics()
    return None


class _SlowPath(Exception):
    """The leaf is not in the common shape: decode it the exact (slow) way."""


def _decode_fast(data: bytes, signers: _Signers) -> tuple[list[PublicKey], Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"leaf data is not JSON: {exc}") from exc
    if type(doc) is not dict or doc.keys() != _LEAF_KEYS or doc["kind"] != LEAF_KIND_DSSE:
        raise _SlowPath
    t, recorded = doc["integrated_time"], doc["signers"]
    if type(t) is not int or not 0 <= t < _MAX_SAFE_INT or type(recorded) is not list:
        raise _SlowPath
    for s in recorded:
        if type(s) is not dict or s.keys() != _SIGNER_KEYS or type(s["public_key"]) is not str or type(s["key_id"]) is not str:
            raise _SlowPath
    try:
        compact = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _SlowPath from None
    if compact != data:
        raise _SlowPath
    envelope = parse_envelope(doc["envelope"])
    return [signers.key(s["public_key"], s["key_id"]) for s in recorded], envelope


def _entry_rows(session: Session, start: int, end: int, chunk: int = 5000) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """(idx, data, leaf_hash, chain_hash) for start <= idx < end, in order, in chunks.

    On PostgreSQL through psycopg the rows come in binary format: bytea in text format is hex,
    which doubles the bytes on the wire and costs both sides a hex conversion per entry (half the
    cost of reading an entry, measured). Elsewhere: ``store.iter_entries``.
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.driver != "psycopg":
        yield from store.iter_entries(session, start, end, chunk)
        return
    raw = session.connection().connection.dbapi_connection
    after = start - 1
    with raw.cursor(binary=True) as cursor:  # type: ignore[union-attr]
        while True:
            cursor.execute(
                "SELECT idx, data, leaf_hash, chain_hash FROM entries WHERE idx > %s AND idx < %s ORDER BY idx LIMIT %s",
                (after, end, chunk),
            )
            rows = cursor.fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]


def _trailing_ones(j: int) -> int:
    return (j ^ (j + 1)).bit_length() - 1


def _fold(left_edge: list[bytes], right: bytes) -> bytes:
    """MTH of the subtrees ``left_edge`` (biggest first) followed by a subtree of hash ``right``."""
    acc = right
    for h in reversed(left_edge):
        acc = node_hash(h, acc)
    return acc


def _iter_checkpoints(session: Session, after: int, upto: int) -> Iterator[CheckpointRow]:
    """Checkpoints with ``after < tree_size <= upto``, in order, paged."""
    while True:
        page = store.list_checkpoints(session, after=after, limit=1000)
        for cp in page:
            if cp.tree_size > upto:
                return
            yield cp
        if len(page) < 1000:
            return
        after = page[-1].tree_size


def _check_signed_checkpoint(cp: CheckpointRow, verifier: Verifier, origin: str, problems: _Problems) -> bool:
    """The log's signature on ``cp`` and its note/row agreement; False when either fails."""
    index = max(cp.tree_size - 1, 0)
    try:
        signed = open_checkpoint(cp.note.encode("utf-8"), verifier, origin=origin)
    except LedgerError as exc:
        problems.add(index, "checkpoint", f"checkpoint of size {cp.tree_size}: {exc.diagnostics()}")
        return False
    if signed.size != cp.tree_size or signed.root != cp.root_hash:
        problems.add(index, "checkpoint", f"checkpoint of size {cp.tree_size}: its note and its row disagree")
        return False
    return True


def verify_shard(
    session: Session,
    shard: Shard,
    *,
    vkey: str,
    origin: str,
    progress: Callable[[int], None] | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> ShardResult:
    """Re-measure one shard (steps 1-5 of the module docstring); never raises for what it finds.

    ``progress(n)`` is called with the number of the shard's entries done so far.
    """
    verifier = parse_vkey(vkey)
    start, end, level = shard.start, shard.end, shard.level
    problems = _Problems()
    result = ShardResult(shard.number, level, start, end, root=None, frontier_before=None)

    # The right edge before the shard, as stored: the checkpoints inside are checked against it.
    # If a node of it is missing, the combiner (which recomputes it) checks them instead.
    before = frontier_nodes(start)
    stored_before = _stored_interior(session, [n for n in before if n[0] > 0])
    leaves_before = [n[1] for n in before if n[0] == 0]
    if leaves_before:
        stored_before.update(
            ((0, i), h) for i, h in session.execute(select(Entry.idx, Entry.leaf_hash).where(Entry.idx.in_(leaves_before)))
        )
    edge_before = [stored_before[n] for n in before] if all(n in stored_before for n in before) else None
    result.frontier_before = None if edge_before is None else [h.hex() for h in edge_before]
    # The chain hash before the shard, as stored (the previous shard checks that one).
    head: bytes | None = CHAIN_SEED
    if start > 0:
        head = session.execute(select(Entry.chain_hash).where(Entry.idx == start - 1)).scalar_one_or_none()

    checkpoints = _iter_checkpoints(session, start, end)
    cp = next(checkpoints, None)
    hashes = store.iter_tree_hashes(session, start=store.interior_count(start), end=store.interior_count(end))
    pending = next(hashes, None)
    position = store.interior_count(start)

    sha256 = hashlib.sha256
    # The shard's right edge as (stored hash, found inconsistent), biggest subtree first. As in
    # ledger.services.audit, each stored interior hash is checked against its two STORED
    # children, so damage is named where it is, and a parent of a damaged node is not reported
    # again. None once entries are missing: the rest of the subtree cannot be placed.
    edge: list[tuple[bytes, bool]] | None = []
    expected = start
    for idx, data, stored_leaf, stored_chain in _entry_rows(session, start, end):
        if idx != expected:
            problems.add(expected, "missing_entry", f"entries {expected}..{idx - 1} are missing")
            edge = None
            head = None
        expected = idx + 1
        result.entries += 1
        # 1. the leaf hash, from the bytes
        if sha256(b"\x00" + data).digest() != stored_leaf:
            problems.add(idx, "leaf_hash", f"entry {idx}: its bytes do not hash to its stored leaf hash")
        # 2. the signatures
        bad = check_leaf_signatures(data)
        if bad is None:
            result.signatures += 1
        else:
            problems.add(idx, bad[0], f"entry {idx}: {bad[1]}")
        # 3. the hash chain, over the stored leaf hashes (re-synchronised after a break)
        if head is not None and sha256(head + stored_leaf).digest() != stored_chain:
            problems.add(idx, "chain_hash", f"entry {idx}: the hash chain breaks here")
        head = stored_chain
        # 4. the interior hashes this leaf completes inside the shard
        if edge is not None:
            acc, flagged, node_level, node_index, local = stored_leaf, False, 0, idx, idx - start
            while (local >> node_level) & 1:
                left, left_flagged = edge.pop()
                computed = sha256(b"\x01" + left + acc).digest()
                node_level += 1
                node_index >>= 1
                while pending is not None and pending[0] < position:
                    pending = next(hashes, None)
                first = node_index << node_level
                if pending is None or pending[0] != position:
                    acc, flagged = computed, True
                    problems.add(first, "interior_hash", f"interior hash ({node_level}, {node_index}) is missing")
                else:
                    acc = pending[1]
                    flagged, was = acc != computed, flagged or left_flagged
                    if flagged and not was:
                        problems.add(
                            first,
                            "interior_hash",
                            f"interior hash ({node_level}, {node_index}) over entries {first}.."
                            f"{first + (1 << node_level) - 1} does not match the hashes below it",
                        )
                position += 1
            edge.append((acc, flagged))
            # the nodes above the shard that this leaf completes are the combiner's
            position += _trailing_ones(idx) - node_level
        # 5. the checkpoints that end at this entry
        while cp is not None and cp.tree_size <= expected:
            result.checkpoints += 1
            if _check_signed_checkpoint(cp, verifier, origin, problems) and edge is not None and cp.tree_size == expected:
                local_root = _fold([h for h, _ in edge[:-1]], edge[-1][0])
                if edge_before is None:
                    result.deferred.append([cp.tree_size, local_root.hex(), cp.root_hash.hex()])
                elif _fold(edge_before, local_root) != cp.root_hash:
                    problems.add(
                        cp.tree_size - 1,
                        "checkpoint",
                        f"checkpoint of size {cp.tree_size}: its root does not match the entries",
                    )
            cp = next(checkpoints, None)
        if progress is not None and (expected - start) % progress_every == 0:
            progress(expected - start)

    if expected != end:
        problems.add(expected, "missing_entry", f"entries {expected}..{end - 1} are missing")
        edge = None
    while cp is not None:  # checkpoints that end in missing entries
        result.checkpoints += 1
        if _check_signed_checkpoint(cp, verifier, origin, problems):
            problems.add(cp.tree_size - 1, "checkpoint", f"checkpoint of size {cp.tree_size} covers missing entries")
        cp = next(checkpoints, None)
    if edge is not None:
        assert len(edge) == 1, "shards: a shard is one complete subtree"
        result.root = edge[0][0].hex()
        result.root_flagged = edge[0][1]
    # 6. the shard's derived rows, recomputed from its leaf bytes (ledger.services.derived)
    from ledger.services.derived import check_derived_range  # noqa: PLC0415

    check_derived_range(session, start, end, problems.add)
    result.problems, result.truncated = problems.items, problems.truncated
    return result


# ------------------------------------------------------------------------------ combining


@dataclass
class DistributedReport:
    """The combined verdict: ``provledger audit --json``'s shape plus the shard of the first bad index."""

    tree_size: int
    problems: list[Problem]
    checkpoints_checked: int
    shards: list[Shard]
    truncated: bool = False
    signatures_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        indexes = [p.index for p in self.problems if p.index is not None]
        return min(indexes) if indexes else None

    def shard_of(self, index: int | None) -> Shard | None:
        if index is None:
            return None
        for shard in self.shards:
            if shard.start <= index < shard.end:
                return shard
        return None

    def to_json(self) -> dict[str, Any]:
        shard = self.shard_of(self.first_bad_index)
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "first_bad_index": self.first_bad_index,
            "problems": [_problem_json(p) for p in self.problems],
            "shard": None if shard is None else {"number": shard.number, "start": shard.start, "end": shard.end},
        }

    def checked(self) -> dict[str, Any]:
        """How much was re-measured (shown beside the report, not in it)."""
        return {
            "shards": len(self.shards),
            "entries": self.tree_size,
            "signatures": self.signatures_checked,
            "checkpoints": self.checkpoints_checked,
            "problems_truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, report: dict[str, Any], checked: dict[str, Any], shards: list[Shard]) -> DistributedReport:
        return cls(
            tree_size=report["tree_size"],
            problems=[Problem(p["index"], p["kind"], p["message"]) for p in report["problems"]],
            checkpoints_checked=checked["checkpoints"],
            shards=shards,
            truncated=checked["problems_truncated"],
            signatures_checked=checked["signatures"],
        )


def _stored_interior(session: Session, nodes: list[NodeId]) -> dict[NodeId, bytes]:
    """Stored hashes of interior nodes (level >= 1) that exist; missing ones are left out."""
    found: dict[NodeId, bytes] = {}
    for i in range(0, len(nodes), 1000):
        by_position = {store.stored_position(level, index): (level, index) for level, index in nodes[i : i + 1000]}
        rows = session.execute(select(TreeHash.position, TreeHash.hash).where(TreeHash.position.in_(list(by_position))))
        for position, h in rows:
            found[by_position[position]] = h
    return found


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
    # the trust state folded from the key-event entries' leaf bytes, against the trust tables
    from ledger.services.policy import verify_trust_state  # noqa: PLC0415

    for p in verify_trust_state(session):
        problems.add(p.index, p.kind, p.message)
    ordered = problems.items
    return DistributedReport(
        tree_size=tree_size,
        problems=ordered,
        checkpoints_checked=checkpoints,
        shards=shards,
        truncated=truncated or problems.truncated,
        signatures_checked=sum(r.signatures for r in results),
    )


# ------------------------------------------------------------------------------ audit runs

STATE_QUEUED, STATE_RUNNING, STATE_DONE, STATE_FAILED = "queued", "running", "done", "failed"
SHARD_PENDING, SHARD_DONE = "pending", "done"
SOURCES = ("api", "cli", "schedule")


def create_audit(
    session: Session,
    log: LogIdentity,
    *,
    now: int,
    source: str,
    shard_level: int | None = None,
) -> AuditRun:
    """Record an audit of the tree as it stands, and its shards (flushes; the caller commits,
    and enqueues only after the commit)."""
    if source not in SOURCES:
        raise MalformedError(f"an audit's source is one of {', '.join(SOURCES)}, got {source!r}")
    size = store.current_size(session)
    level = shard_level_for(size) if shard_level is None else shard_level
    shards = plan_shards(size, level)
    run = AuditRun(
        state=STATE_QUEUED,
        source=source,
        requested_at=now,
        tree_size=size,
        shard_level=level,
        shard_count=len(shards),
        progress=0,
        origin=log.origin,
        vkey=log.vkey,
    )
    session.add(run)
    session.flush()
    session.add_all(
        AuditShard(
            audit_id=run.id,
            shard=s.number,
            level=s.level,
            start_index=s.start,
            end_index=s.end,
            state=SHARD_PENDING,
            attempts=0,
            progress=0,
        )
        for s in shards
    )
    session.flush()
    return run


def get_audit(session: Session, audit_id: int) -> AuditRun:
    if type(audit_id) is not int or audit_id < 1:
        raise MalformedError(f"an audit id is a positive integer, got {audit_id!r}")
    run = session.get(AuditRun, audit_id)
    if run is None:
        raise NotFoundError(f"there is no audit {audit_id}")
    return run


def _shard_row(session: Session, audit_id: int, number: int) -> AuditShard:
    row = session.get(AuditShard, (audit_id, number))
    if row is None:
        raise NotFoundError(f"audit {audit_id} has no shard {number}")
    return row


def run_shard(
    sessions: Callable[[], Session],
    audit_id: int,
    number: int,
    start: int,
    end: int,
    *,
    max_attempts: int | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Re-measure one shard of an audit and store its result; idempotent (a done shard is not redone).

    ``start``/``end`` must be the shard's recorded range: a task whose arguments disagree with
    the database is refused (MalformedError), never guessed at. A shard already started
    ``max_attempts`` times without finishing (it keeps killing its worker) is refused too.
    Returns a short summary.
    """
    for name, value in (("audit id", audit_id), ("shard", number), ("start", start), ("end", end)):
        if type(value) is not int or value < 0:
            raise MalformedError(f"a shard task's {name} must be a non-negative integer, got {value!r}")
    with sessions() as session, session.begin():
        run = get_audit(session, audit_id)
        row = _shard_row(session, audit_id, number)
        if (row.start_index, row.end_index) != (start, end):
            raise MalformedError(
                f"audit {audit_id} shard {number} covers entries [{row.start_index}, {row.end_index}), not [{start}, {end})"
            )
        if run.state in (STATE_DONE, STATE_FAILED) or row.state == SHARD_DONE:
            return _summary(row)
        if max_attempts is not None and row.attempts >= max_attempts:
            raise MalformedError(
                f"audit {audit_id} shard {number} was started {row.attempts} times without finishing; it is not tried again"
            )
        row.attempts += 1
        if run.state == STATE_QUEUED:
            session.execute(
                update(AuditRun).where(AuditRun.id == audit_id, AuditRun.state == STATE_QUEUED).values(state=STATE_RUNNING, started_at=int(clock()))
            )
        shard = Shard(number, row.level, start)
        vkey, origin = run.vkey, run.origin
        if shard.end != end:
            raise MalformedError(f"audit {audit_id} shard {number}: [{start}, {end}) is not a complete subtree")

    def progress(done: int) -> None:
        with sessions() as s, s.begin():
            if s.get_bind().dialect.name == "postgresql":
                # progress is advisory: not worth waiting for the disk
                s.execute(text("SET LOCAL synchronous_commit = off"))
            s.execute(update(AuditShard).where(AuditShard.audit_id == audit_id, AuditShard.shard == number).values(progress=done))
            _refresh_progress(s, audit_id)

    with sessions() as session:
        result = verify_shard(session, shard, vkey=vkey, origin=origin, progress=progress)
        session.rollback()
    with sessions() as session, session.begin():
        session.execute(
            update(AuditShard)
            .where(AuditShard.audit_id == audit_id, AuditShard.shard == number, AuditShard.state != SHARD_DONE)
            .values(state=SHARD_DONE, result=json.dumps(result.to_json()), progress=end - start, finished_at=int(clock()))
        )
        _refresh_progress(session, audit_id)
        return _summary(_shard_row(session, audit_id, number))


def _refresh_progress(session: Session, audit_id: int) -> None:
    # Recomputed from the shards rather than incremented: a redelivered shard never counts twice.
    total = select(func.coalesce(func.sum(AuditShard.progress), 0)).where(AuditShard.audit_id == audit_id).scalar_subquery()
    session.execute(update(AuditRun).where(AuditRun.id == audit_id, AuditRun.state != STATE_DONE).values(progress=total))


def _summary(row: AuditShard) -> dict[str, Any]:
    doc = json.loads(row.result) if row.result else {}
    return {
        "audit": row.audit_id,
        "shard": row.shard,
        "state": row.state,
        "problems": len(doc.get("problems", [])),
    }


def finish_audit(sessions: Callable[[], Session], audit_id: int, *, clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """Combine a run's shards into its report and record it; idempotent.

    The run's ``result`` column holds ``{"report": …, "checked": …}``. Returns the report, or
    None when some shard is not done yet (the caller tries again later).
    """
    with sessions() as session, session.begin():
        run = get_audit(session, audit_id)
        if run.state == STATE_DONE and run.result:
            return json.loads(run.result)["report"]
        if run.state == STATE_FAILED:
            raise LedgerError(f"audit {audit_id} failed: {run.error}")
        rows = list(session.execute(select(AuditShard).where(AuditShard.audit_id == audit_id).order_by(AuditShard.shard)).scalars())
        if any(r.state != SHARD_DONE or not r.result for r in rows):
            return None
        results = [ShardResult.from_json(json.loads(r.result)) for r in rows]  # type: ignore[arg-type]
        combined = combine_shards(session, run.tree_size, results, vkey=run.vkey, origin=run.origin)
        report = combined.to_json()
        stored = json.dumps({"report": report, "checked": combined.checked()})
        session.execute(
            update(AuditRun)
            .where(AuditRun.id == audit_id, AuditRun.state != STATE_DONE)
            .values(state=STATE_DONE, result=stored, finished_at=int(clock()), progress=run.tree_size)
        )
        return report


def fail_audit(sessions: Callable[[], Session], audit_id: int, reason: str, *, clock: Callable[[], float] = time.time) -> None:
    """Record that a run could not complete (not what it found: that is a done run's report)."""
    with sessions() as session, session.begin():
        session.execute(
            update(AuditRun)
            .where(AuditRun.id == audit_id, AuditRun.state.in_([STATE_QUEUED, STATE_RUNNING]))
            .values(state=STATE_FAILED, error=reason[:2000], finished_at=int(clock()))
        )


def audit_progress(session: Session, audit_id: int) -> dict[str, int]:
    run = get_audit(session, audit_id)
    done = session.execute(
        select(func.count()).select_from(AuditShard).where(AuditShard.audit_id == audit_id, AuditShard.state == SHARD_DONE)
    ).scalar_one()
    entries = run.tree_size if run.state == STATE_DONE else int(run.progress or 0)
    return {"entries_done": entries, "entries_total": run.tree_size, "shards_done": done, "shards_total": run.shard_count}


def audit_json(session: Session, audit_id: int) -> dict[str, Any]:
    """An audit run as the API shows it (``GET /api/v1/audits/<id>``)."""
    run = get_audit(session, audit_id)
    stored = json.loads(run.result) if run.result else {"report": None, "checked": None}
    return {
        "id": run.id,
        "state": run.state,
        "source": run.source,
        "requested_at": run.requested_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "tree_size": run.tree_size,
        "shard_size": 1 << run.shard_level,
        "progress": audit_progress(session, audit_id),
        "result": stored["report"],
        "checked": stored["checked"],
        "error": run.error,
    }


def list_audits(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    ids = session.execute(select(AuditRun.id).order_by(AuditRun.id.desc()).limit(limit)).scalars()
    return [audit_json(session, i) for i in ids]


def has_active_audit(session: Session, *, now: int, stale_after: int) -> bool:
    """True when an audit is queued or running and younger than ``stale_after`` seconds."""
    found = session.execute(
        select(AuditRun.id)
        .where(AuditRun.state.in_([STATE_QUEUED, STATE_RUNNING]), AuditRun.requested_at > now - stale_after)
        .limit(1)
    ).scalar_one_or_none()
    return found is not None


# ------------------------------------------------------------------------------ periodic duty


def publish_checkpoint(session: Session, log: LogIdentity, *, now: int) -> int | None:
    """Sign a checkpoint for the tree if the latest one does not cover it; return its size or None.

    Runs under the sequencer lock (the database-level guard): appenders and other publishers
    wait, so the tree cannot move between reading it and signing it, and a second publisher finds
    the checkpoint already there. The caller's transaction must start here (SQLite) and commit.
    """
    size = store.lock_sequencer(session)
    latest = store.latest_checkpoint(session)
    if latest is not None and latest.tree_size >= size:
        return None
    root = store.read_frontier(session, size).root()
    note = sign_checkpoint(Checkpoint(origin=log.origin, size=size, root=root), log.signer).decode("utf-8")
    store.insert_checkpoint(session, size, root, note, now)
    session.flush()
    return size
