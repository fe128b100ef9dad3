"""An RFC-literal Merkle tree, written from RFC 9162 §2.1 to check ``ledger.merkle`` against.

Nothing here is fast or clever on purpose: every function is the recursive definition from the
RFC (docs/tlog-formats.md §1) transcribed as directly as Python allows, so that a reader can hold it
next to the RFC text and see that it is right. ``ledger.merkle`` is then tested for agreeing with
it, instead of for agreeing with itself.

The one concession to speed is that a tree is a fixed list of leaf hashes and ``D[start:end]`` is
named by its bounds, which lets MTH of a sub-range be memoised. The recursion is unchanged.

The two ``rfc_verify_*`` functions are the verification algorithms of RFC 9162 §2.1.3.2 and
§2.1.4.2, step by step. They answer True/False and know nothing of the ledger's extra rules
(32-byte hashes, the size-0 rule), which the tests state separately.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def rfc_leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def rfc_node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """k: the largest power of two smaller than n (requires n > 1)."""
    assert n > 1
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """D[n] given by its leaf hashes; sub-lists D[start:end] are named by their bounds."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaves = list(leaf_hashes)
        self._mth: dict[tuple[int, int], bytes] = {}

    # -- MTH ---------------------------------------------------------------------------------

    def mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        key = (start, end)
        cached = self._mth.get(key)
        if cached is not None:
            return cached
        n = end - start
        if n == 0:
            value = EMPTY_ROOT
        elif n == 1:
            value = self.leaves[start]  # already SHA-256(0x00 || d)
        else:
            k = largest_power_of_two_below(n)
            value = rfc_node_hash(self.mth(start, start + k), self.mth(start + k, end))
        self._mth[key] = value
        return value

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def subtree(self, level: int, index: int) -> bytes:
        """The complete subtree (level, index): leaves [index * 2**level, (index+1) * 2**level)."""
        return self.mth(index << level, (index + 1) << level)

    # -- PATH --------------------------------------------------------------------------------

    def path(self, m: int, size: int) -> list[bytes]:
        """PATH(m, D[size])."""
        return self._path(m, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        # PATH(m, D[start:end]) with m relative to start.
        n = end - start
        if n == 1:
            return []  # PATH(0, {d0}) = {}
        k = largest_power_of_two_below(n)
        if m < k:
            return self._path(m, start, start + k) + [self.mth(start + k, end)]
        return self._path(m - k, start + k, end) + [self.mth(start, start + k)]

    # -- PROOF / SUBPROOF --------------------------------------------------------------------

    def proof(self, m: int, size: int) -> list[bytes]:
        """PROOF(m, D[size]) = SUBPROOF(m, D[size], true), for 0 < m <= size."""
        return self._subproof(m, 0, size, True)

    def _subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return self._subproof(m, start, start + k, b) + [self.mth(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.mth(start, start + k)]

    # -- which sub-ranges the recursion visits -----------------------------------------------

    def split_ranges(self, size: int) -> set[tuple[int, int]]:
        """Every D[start:end] that MTH(D[size]) recurses into (the RFC-aligned ranges)."""
        found: set[tuple[int, int]] = set()

        def visit(start: int, end: int) -> None:
            found.add((start, end))
            if end - start > 1:
                k = largest_power_of_two_below(end - start)
                visit(start, start + k)
                visit(start + k, end)

        if size:
            visit(0, size)
        return found


class UniformReferenceTree(ReferenceTree):
    """A tree whose leaves are all the same hash, of any size up to 2**64 and beyond.

    MTH of a range of such a tree depends only on the range's length, so the memo is keyed by
    length and PATH/PROOF of a 2**64-leaf tree cost O(log n). Used to test sizes that a real
    tree could never be built for.
    """

    def __init__(self, leaf: bytes) -> None:
        super().__init__([])
        self.leaf = leaf
        self._by_length: dict[int, bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        cached = self._by_length.get(n)
        if cached is not None:
            return cached
        if n == 0:
            value = EMPTY_ROOT
        elif n == 1:
            value = self.leaf
        else:
            k = largest_power_of_two_below(n)
            value = rfc_node_hash(self.mth(0, k), self.mth(0, n - k))
        self._by_length[n] = value
        return value


def rfc_verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    # 1. leaf_index >= tree_size: fail.
    if leaf_index >= tree_size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1, r = leaf_hash.
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    # 3. for each p in path:
    for p in path:
        # a. sn = 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set or fn = sn:
        if fn & 1 or fn == sn:
            r = rfc_node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        # c. otherwise:
        else:
            r = rfc_node_hash(r, p)
        # d. shift both.
        fn >>= 1
        sn >>= 1
    # 4. sn = 0 and r = root.
    return sn == 0 and r == root


def rfc_verify_consistency(
    first: int,
    second: int,
    consistency_path: Sequence[bytes],
    first_hash: bytes,
    second_hash: bytes,
) -> bool:
    """RFC 9162 §2.1.4.2, step by step (the RFC defines it for 0 < first <= second)."""
    if not 0 < first <= second:
        return False
    path = list(consistency_path)
    # 1. empty path: fail. (The RFC handles first == second separately.)
    if first == second:
        return not path and first_hash == second_hash
    if not path:
        return False
    # 2. first is an exact power of 2: prepend first_hash.
    if first & (first - 1) == 0:
        path = [first_hash] + path
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. while LSB(fn) is set, shift both.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = path[0].
    fr = sr = path[0]
    # 6. for each c after the first:
    for c in path[1:]:
        # a. sn = 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set or fn = sn:
        if fn & 1 or fn == sn:
            fr = rfc_node_hash(c, fr)
            sr = rfc_node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        # c. otherwise:
        else:
            sr = rfc_node_hash(sr, c)
        # d. shift both.
        fn >>= 1
        sn >>= 1
    # 7. sn = 0, fr = first_hash and sr = second_hash.
    return sn == 0 and fr == first_hash and sr == second_hash
