"""Re-measuring one shard, on its own (:func:`verify_shard`):

1. re-reads its entries and recomputes each leaf hash from the stored bytes;
2. re-verifies every DSSE signature with the signers its leaf records;
3. recomputes the hash chain, starting from the previous entry's stored chain hash;
4. recomputes every interior hash inside its subtree and compares the stored ones;
5. verifies every checkpoint of a size ``c`` with ``start < c <= end``: the log's signature, that
   the note agrees with its row, and the root at ``c``, computed from the stored right edge of the
   tree before the shard (``frontier_nodes(start)``) and the shard's own leaves;
6. recomputes each entry's derived rows from its leaf bytes and compares the stored ones
   (``ledger.services.derived``), from the same rows and the same decoded leaf as step 2.


The measure is the one of ``ledger.services.audit``, so both name the same first bad index: the
chain and the tree are re-measured from the STORED leaf hashes, each stored interior hash is
checked against its two stored children (and reported at its first leaf, once: not again at its
ancestors), a checkpoint is compared with the root of the stored right edge at its size (and
reported at size - 1). The shards add re-verifying every envelope's signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import open_checkpoint
from ledger.db import store
from ledger.db.models import Entry, TreeHash
from ledger.db.models import Checkpoint as CheckpointRow
from ledger.errors import LedgerError
from ledger.tlog.hashing import CHAIN_SEED, node_hash
from ledger.merkle import NodeId, frontier_nodes
from ledger.tlog.note import Verifier, parse_vkey
from ledger.records.leaf import Leaf, decode_leaf
from ledger.services.derived import ENTRY_COLUMNS, range_checker
from ledger.services.shards.leaf_signatures import check_decoded_signatures
from ledger.services.shards.plan import Shard
from ledger.services.shards.results import ShardResult, _Problems

__all__ = ["PROGRESS_EVERY", "verify_shard"]


#: A shard reports its progress every this many entries.
PROGRESS_EVERY = 4096
#: Entries read at a time: each page's derived rows are read and checked together.
DERIVED_CHUNK = 2000
#: what a shard reads of each entry: its bytes, stored hashes and derived columns
_COLUMNS = ("idx", "data", "leaf_hash", "chain_hash", *ENTRY_COLUMNS[2:])


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
    tree = _Subtree(session, start, end, problems)
    sha256 = hashlib.sha256
    expected = start
    # 6. the derived rows, from the same rows and the same decoded leaves (ledger.services.derived)
    derived = range_checker(session, start, problems.add)
    for chunk in store.stream_chunks(session, "entries", _COLUMNS, start=start, end=end, chunk=DERIVED_CHUNK):
        leaves: list[Leaf | LedgerError] = []
        for idx, data, stored_leaf, stored_chain, *_ in chunk:
            if idx != expected:
                problems.add(expected, "missing_entry", f"entries {expected}..{idx - 1} are missing")
                tree.edge = None
                head = None
            expected = idx + 1
            result.entries += 1
            # 1. the leaf hash, from the bytes
            if sha256(b"\x00" + data).digest() != stored_leaf:
                problems.add(idx, "leaf_hash", f"entry {idx}: its bytes do not hash to its stored leaf hash")
            # 2. the signatures
            try:
                leaf = decode_leaf(data)
            except LedgerError as exc:
                leaves.append(exc)
                bad: tuple[str, str] | None = ("leaf_data", exc.diagnostics())
            else:
                leaves.append(leaf)
                bad = check_decoded_signatures(leaf)
            if bad is None:
                result.signatures += 1
            else:
                problems.add(idx, bad[0], f"entry {idx}: {bad[1]}")
            # 3. the hash chain, over the stored leaf hashes (re-synchronised after a break)
            if head is not None and sha256(head + stored_leaf).digest() != stored_chain:
                problems.add(idx, "chain_hash", f"entry {idx}: the hash chain breaks here")
            head = stored_chain
            # 4. the interior hashes this leaf completes inside the shard
            tree.add_leaf(idx, stored_leaf)
            # 5. the checkpoints that end at this entry
            while cp is not None and cp.tree_size <= expected:
                result.checkpoints += 1
                edge = tree.edge
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
        derived.check_chunk([(row[0], row[1], *row[4:]) for row in chunk], leaves)

    if expected != end:
        problems.add(expected, "missing_entry", f"entries {expected}..{end - 1} are missing")
        tree.edge = None
    while cp is not None:  # checkpoints that end in missing entries
        result.checkpoints += 1
        if _check_signed_checkpoint(cp, verifier, origin, problems):
            problems.add(cp.tree_size - 1, "checkpoint", f"checkpoint of size {cp.tree_size} covers missing entries")
        cp = next(checkpoints, None)
    if tree.edge is not None:
        assert len(tree.edge) == 1, "shards: a shard is one complete subtree"
        result.root = tree.edge[0][0].hex()
        result.root_flagged = tree.edge[0][1]
    result.problems, result.truncated = problems.items, problems.truncated
    return result


class _Subtree:
    """Step 4 over the shard's subtree, one leaf at a time.

    ``edge`` is the shard's right edge as (stored hash, found inconsistent), biggest subtree
    first. As in ledger.services.audit, each stored interior hash is checked against its two
    STORED children, so damage is named where it is, and a parent of a damaged node is not
    reported again. None once entries are missing: the rest of the subtree cannot be placed.
    """

    def __init__(self, session: Session, start: int, end: int, problems: _Problems) -> None:
        self.start = start
        self.problems = problems
        self.edge: list[tuple[bytes, bool]] | None = []
        self.position = store.interior_count(start)
        self.hashes = store.iter_tree_hashes(session, start=self.position, end=store.interior_count(end))
        self.pending = next(self.hashes, None)

    def add_leaf(self, idx: int, stored_leaf: bytes) -> None:
        """Check the stored interior hashes leaf ``idx`` completes inside the shard."""
        edge = self.edge
        if edge is None:
            return
        acc, flagged, node_level, node_index, local = stored_leaf, False, 0, idx, idx - self.start
        while (local >> node_level) & 1:
            left, left_flagged = edge.pop()
            computed = hashlib.sha256(b"\x01" + left + acc).digest()
            node_level += 1
            node_index >>= 1
            while self.pending is not None and self.pending[0] < self.position:
                self.pending = next(self.hashes, None)
            first = node_index << node_level
            if self.pending is None or self.pending[0] != self.position:
                acc, flagged = computed, True
                self.problems.add(first, "interior_hash", f"interior hash ({node_level}, {node_index}) is missing")
            else:
                acc = self.pending[1]
                flagged, was = acc != computed, flagged or left_flagged
                if flagged and not was:
                    self.problems.add(
                        first,
                        "interior_hash",
                        f"interior hash ({node_level}, {node_index}) over entries {first}.."
                        f"{first + (1 << node_level) - 1} does not match the hashes below it",
                    )
            self.position += 1
        edge.append((acc, flagged))
        # the nodes above the shard that this leaf completes are the combiner's
        self.position += _trailing_ones(idx) - node_level


def _stored_interior(session: Session, nodes: list[NodeId]) -> dict[NodeId, bytes]:
    """Stored hashes of interior nodes (level >= 1) that exist; missing ones are left out."""
    found: dict[NodeId, bytes] = {}
    for i in range(0, len(nodes), 1000):
        by_position = {store.stored_position(level, index): (level, index) for level, index in nodes[i : i + 1000]}
        rows = session.execute(select(TreeHash.position, TreeHash.hash).where(TreeHash.position.in_(list(by_position))))
        for position, h in rows:
            found[by_position[position]] = h
    return found
