"""The Merkle core: RFC 9162 §2.1 trees, inclusion and consistency proofs.

Two halves share one description of which subtrees a proof needs (a *plan*):

* the list API of the guide's contract (``root``, ``inclusion_proof``, ``consistency_proof``,
  ``verify_inclusion``, ``verify_consistency``) for callers that hold every leaf hash;
* the store API (``CompactRange``, ``frontier_nodes``, ``*_proof_plan``, ``proof_from_plan``)
  for the ledger, which keeps the hash of every complete subtree and so answers any proof with
  O(log n) reads.

A node id is ``(level, index)``: node ``(l, i)`` is the complete subtree over leaves
``[i * 2**l, (i + 1) * 2**l)``; level 0 holds the leaf hashes.

Indexes are 0-based. Hashes are 32-byte ``bytes``. Every ``verify_*`` returns None or raises
``VerificationError``; a hash of any other length is refused, never "matched".

Size-0 rule (C2SP tlog-witness): a consistency proof from size 0 is valid only when it is empty
and the old root is SHA-256("") (the empty tree's root). RFC 9162 defines no proof from size 0;
transparency-dev/merkle refuses size 0 outright. We follow the witness rule so that a witness or
client starting from nothing can accept a first checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from ledger.errors import RootMismatchError, VerificationError
from ledger.tlog.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

__all__ = [
    "EMPTY_ROOT",
    "MAX_CONSISTENCY_HASHES",
    "MAX_PROOF_HASHES",
    "CompactRange",
    "NodeId",
    "consistency_proof",
    "consistency_proof_plan",
    "frontier_nodes",
    "inclusion_proof",
    "inclusion_paths",
    "inclusion_proof_plan",
    "leaf_hash",
    "node_hash",
    "plan_nodes",
    "proof_from_plan",
    "range_hash",
    "range_nodes",
    "root",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

NodeId = tuple[int, int]
Plan = list[list[NodeId]]

#: A tree of at most 2**64 leaves never needs a longer inclusion proof …
MAX_PROOF_HASHES = 64
#: … nor a longer consistency proof (ceil(log2(new_size)) + 1 hashes).
MAX_CONSISTENCY_HASHES = 65
_MAX_SIZE = 2**64

_sha256 = hashlib.sha256


# --------------------------------------------------------------------------------------------
# Roots


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree with these leaf hashes (RFC 9162 §2.1.1).

    Computed level by level: an odd node at the end of a level moves up unchanged, which gives
    exactly the RFC's split at the largest power of two below n.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256 = _sha256
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [sha256(b"\x01" + left + right).digest() for left, right in zip(level[::2], level[1::2])]
        if odd is not None:
            level.append(odd)
    return level[0]


# --------------------------------------------------------------------------------------------
# Plans: which complete subtrees make up each proof element


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The complete subtrees that make up leaves [start, end), biggest (leftmost) first.

    Requires an RFC subtree range: ``start`` aligned to the largest power of two >= end - start.
    """
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        assert start % (1 << level) == 0, "merkle: range is not an RFC subtree"
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def frontier_nodes(size: int) -> list[NodeId]:
    """The right edge of a tree of ``size`` leaves: one complete subtree per set bit of size."""
    return range_nodes(0, size)


def range_hash(nodes: Sequence[NodeId], hashes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of a range from its complete subtrees: a right fold of node_hash."""
    acc = hashes[nodes[-1]]
    for node in reversed(nodes[:-1]):
        acc = node_hash(hashes[node], acc)
    return acc


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose subtree hashes make PATH(index, D[size]), leaf to root
    (the RFC 9162 §2.1.3.1 recursion)."""
    if not 0 <= index < size:
        raise ValueError(f"inclusion proof needs 0 <= index < size, got index {index}, size {size}")
    top_down: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
    top_down.reverse()
    return top_down


def inclusion_proof_plan(index: int, size: int) -> Plan:
    """The subtrees behind PATH(index, D[size]), leaf to root (RFC 9162 §2.1.3.1)."""
    return [range_nodes(start, end) for start, end in _inclusion_ranges(index, size)]


def consistency_proof_plan(old_size: int, new_size: int) -> Plan:
    """The subtrees behind PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

    Empty when old_size is 0 or equal to new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"consistency proof needs 0 <= old <= new, got {old_size}, {new_size}")
    if old_size in (0, new_size):
        return []
    top_down: Plan = []
    m, lo, hi, whole = old_size, 0, new_size, True
    while True:
        if m == hi - lo:
            if not whole:
                top_down.append(range_nodes(lo, hi))
            break
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            top_down.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            top_down.append(range_nodes(lo, lo + k))
            m -= k
            lo += k
            whole = False
    top_down.reverse()
    return top_down


def proof_from_plan(plan: Plan, hashes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Turn a plan into proof hashes, given the hash of every node the plan names."""
    return [range_hash(nodes, hashes) for nodes in plan]


def inclusion_paths(indexes: Iterable[int], size: int, hashes: Mapping[NodeId, bytes]) -> list[list[bytes]]:
    """PATH(index, D[size]) for each index, leaf to root, given the hash of every complete
    subtree the paths read (KeyError names one that is missing).

    The ranges of ``inclusion_proof_plan`` (``_inclusion_ranges``), with each subtree's hash
    computed once for all the paths: the proofs of a batch of neighbouring entries share
    most of their hashes (and the same ``bytes`` objects, so callers may cache by hash).
    """
    memo: dict[tuple[int, int], bytes] = {}

    def mth(start: int, end: int) -> bytes:
        h = memo.get((start, end))
        if h is None:
            h = memo[(start, end)] = range_hash(range_nodes(start, end), hashes)
        return h

    return [[mth(start, end) for start, end in _inclusion_ranges(index, size)] for index in indexes]


def plan_nodes(plan: Plan) -> set[NodeId]:
    """Every node a plan reads."""
    return {node for nodes in plan for node in nodes}


class _SubtreesOfLeaves(Mapping[NodeId, bytes]):
    """Node hashes computed on demand from a list of leaf hashes (for the list API)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = leaf_hashes

    def __getitem__(self, node: NodeId) -> bytes:
        level, index = node
        return root(self._leaves[index << level : (index + 1) << level])

    def __iter__(self):  # pragma: no cover - Mapping protocol only
        raise TypeError("not iterable")

    def __len__(self) -> int:  # pragma: no cover - Mapping protocol only
        raise TypeError("no length")


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) for the tree of these leaf hashes."""
    plan = inclusion_proof_plan(index, len(leaf_hashes))
    return proof_from_plan(plan, _SubtreesOfLeaves(leaf_hashes))


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) for the tree of these leaf hashes."""
    plan = consistency_proof_plan(old_size, len(leaf_hashes))
    return proof_from_plan(plan, _SubtreesOfLeaves(leaf_hashes))


# --------------------------------------------------------------------------------------------
# The growing right edge, for the append path


class CompactRange:
    """The complete subtrees along a tree's right edge: enough to append and to compute the root.

    ``hashes[i]`` is the hash of ``frontier_nodes(size)[i]``.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int, hashes: Iterable[bytes]) -> None:
        self.size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} frontier nodes")

    @classmethod
    def empty(cls) -> CompactRange:
        return cls(0, [])

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the interior nodes (level >= 1) it completes."""
        completed: list[tuple[int, int, bytes]] = []
        acc, level, index, size = leaf, 0, self.size, self.size
        while (size >> level) & 1:
            acc = node_hash(self._hashes.pop(), acc)
            level += 1
            index >>= 1
            completed.append((level, index, acc))
        self._hashes.append(acc)
        self.size = size + 1
        return completed

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)


def _check_size(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_SIZE:
        raise VerificationError(f"{what} must be an integer in [0, 2**64], got {value!r}")
    return value


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise VerificationError(f"{what} must be {HASH_SIZE} bytes, got {got}")
    return value


def _check_proof(proof: object, limit: int = MAX_PROOF_HASHES) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise VerificationError(f"proof must be a list of hashes, got {type(proof).__name__}")
    if len(proof) > limit:
        raise VerificationError(f"proof has {len(proof)} hashes, more than {limit}")
    return [_check_hash(p, f"proof hash {i}") for i, p in enumerate(proof)]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``."""
    index = _check_size(index, "index")
    size = _check_size(size, "tree size")
    leaf = _check_hash(leaf, "leaf hash")
    hashes = _check_proof(proof)
    # 1. Reject if the index is outside the tree.
    if index >= size:
        raise VerificationError(f"index {index} is outside a tree of size {size}")
    # 2. fn walks the leaf's path, sn the right edge.
    fn, sn, r = index, size - 1, leaf
    # 3. Fold in each proof hash from the left or the right.
    for p in hashes:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 4. The proof must have reached the root.
    if sn != 0:
        raise VerificationError("inclusion proof is too short for the tree size")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` is at ``index`` of the tree of ``size`` with this ``root``."""
    expected = _check_hash(root, "root")
    calculated = root_from_inclusion_proof(index, size, leaf, proof)
    if calculated != expected:
        raise RootMismatchError(
            f"inclusion proof leads to root {calculated.hex()}, expected {expected.hex()}",
            expected=expected,
            calculated=calculated,
        )


def root_from_consistency_proof(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes
) -> bytes:
    """The new root that ``proof`` leads to, after checking that it reproduces ``old_root``."""
    old_size = _check_size(old_size, "old size")
    new_size = _check_size(new_size, "new size")
    old_root = _check_hash(old_root, "old root")
    hashes = _check_proof(proof, MAX_CONSISTENCY_HASHES)
    if old_size > new_size:
        raise VerificationError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise VerificationError("no new root follows from an empty tree (use verify_consistency)")
    if old_size == new_size:
        if hashes:
            raise VerificationError("a consistency proof between equal sizes must be empty")
        return old_root
    if not hashes:
        raise VerificationError("consistency proof is empty")
    # RFC 9162 §2.1.4.2 step 2: a power-of-two old tree is a node of the new one.
    if old_size & (old_size - 1) == 0:
        hashes = [old_root, *hashes]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short for the new size")
    if fr != old_root:
        raise RootMismatchError(
            f"consistency proof leads to old root {fr.hex()}, expected {old_root.hex()}",
            expected=old_root,
            calculated=fr,
        )
    return sr


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size``."""
    expected = _check_hash(new_root, "new root")
    if _check_size(old_size, "old size") == 0:
        _check_size(new_size, "new size")
        # The size-0 rule (module docstring): empty proof, and the empty tree's root.
        if _check_proof(proof, MAX_CONSISTENCY_HASHES):
            raise VerificationError("a consistency proof from size 0 must be empty")
        if _check_hash(old_root, "old root") != EMPTY_ROOT:
            raise RootMismatchError("the root of an empty tree must be SHA-256(\"\")")
        if new_size == 0 and expected != EMPTY_ROOT:
            raise RootMismatchError("the root of an empty tree must be SHA-256(\"\")")
        return
    calculated = root_from_consistency_proof(old_size, new_size, proof, old_root)
    if calculated != expected:
        raise RootMismatchError(
            f"consistency proof leads to new root {calculated.hex()}, expected {expected.hex()}",
            expected=expected,
            calculated=calculated,
        )
